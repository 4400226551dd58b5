//! Stack instructions: PUSH/POP (registers, memory, immediates, segment registers), PUSHA/POPA,
//! PUSHF/POPF, ENTER/LEAVE (Intel SDM Vol. 2B, the instruction pages of each).
//!
//! Multi-push instructions save the stack pointer and restore it if any access faults, so a
//! fault leaves the registers as they were.

use iced_x86::{Code, Instruction, OpKind};

use super::operand::{self, ea, mem_seg, read, sreg, write};
use super::Res;
use crate::cpu::Cpu;
use crate::exception::Exception;
use crate::flags::Size;
use crate::io::PortIo;
use crate::state::{fl, gpr, SegReg};

/// PUSH r/m, r, imm. PUSH SP pushes the value SP had before the instruction (80286 and later).
pub fn push(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let size = match i.code() {
        Code::Pushw_imm8 | Code::Push_imm16 => Size::W,
        Code::Pushd_imm8 | Code::Pushd_imm32 => Size::D,
        _ => operand::osize(i),
    };
    let v = read(cpu, i, 0)?;
    cpu.push(size, v)
}

/// PUSH Sreg. With a 32-bit operand size a P6 moves only the 16-bit selector into the 4-byte
/// slot, leaving its upper half unchanged (SDM PUSH, "Operation" note on segment registers).
pub fn push_sreg(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let sel = u32::from(cpu.state.seg(sreg(i.op0_register())).selector);
    let size = if matches!(
        i.code(),
        Code::Pushd_ES | Code::Pushd_CS | Code::Pushd_SS | Code::Pushd_DS | Code::Pushd_FS | Code::Pushd_GS
    ) {
        Size::D
    } else {
        Size::W
    };
    let sp = cpu.sp_plus(-(size.bytes() as i32));
    cpu.check_write(SegReg::Ss, sp, size)?;
    cpu.write(SegReg::Ss, sp, Size::W, sel)?;
    cpu.set_sp(sp);
    Ok(())
}

/// POP r, POP r/m. For a memory destination addressed through ESP, the address is computed with
/// the already-incremented stack pointer (SDM POP).
pub fn pop(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let size = operand::osize(i);
    let old = cpu.state.regs[gpr::ESP];
    let v = cpu.pop(size)?;
    if i.op0_kind() == OpKind::Register {
        operand::set_reg(&mut cpu.state, i.op0_register(), v);
        return Ok(());
    }
    if let Err(e) = write(cpu, i, 0, v) {
        cpu.state.regs[gpr::ESP] = old;
        return Err(e);
    }
    Ok(())
}

/// POP Sreg (not CS). POP SS inhibits interrupts for one instruction.
pub fn pop_sreg(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let seg = sreg(i.op0_register());
    let size = if matches!(
        i.code(),
        Code::Popd_ES | Code::Popd_SS | Code::Popd_DS | Code::Popd_FS | Code::Popd_GS
    ) {
        Size::D
    } else {
        Size::W
    };
    let v = cpu.peek(0, size)?;
    cpu.load_seg(seg, v as u16)?;
    cpu.set_sp(cpu.sp_plus(size.bytes() as i32));
    if seg == SegReg::Ss {
        cpu.state.int_shadow = true;
        cpu.state.ss_shadow = true;
    }
    Ok(())
}

/// PUSHA/PUSHAD: AX CX DX BX (original) SP BP SI DI.
pub fn pusha(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let size = if i.code() == Code::Pushad { Size::D } else { Size::W };
    let old = cpu.state.regs[gpr::ESP];
    let regs = cpu.state.regs;
    for v in regs {
        if let Err(e) = cpu.push(size, v) {
            cpu.state.regs[gpr::ESP] = old;
            return Err(e);
        }
    }
    Ok(())
}

/// POPA/POPAD: DI SI BP (skip SP) BX DX CX AX.
pub fn popa(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let size = if i.code() == Code::Popad { Size::D } else { Size::W };
    let n = size.bytes() as u32;
    let mut vals = [0u32; 8];
    for (k, v) in vals.iter_mut().enumerate() {
        *v = cpu.peek(n * k as u32, size)?;
    }
    for (k, v) in vals.iter().enumerate() {
        let r = 7 - k;
        if r == gpr::ESP {
            continue;
        }
        match size {
            Size::D => cpu.state.regs[r] = *v,
            _ => cpu.state.set_reg16(r, *v as u16),
        }
    }
    cpu.set_sp(cpu.sp_plus(8 * n as i32));
    Ok(())
}

/// PUSHF/PUSHFD. The image has VM and RF cleared. In virtual-8086 mode with IOPL < 3 it is #GP.
pub fn pushf(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    if cpu.state.v86() && (cpu.state.eflags & fl::IOPL) != fl::IOPL {
        return Err(Exception::GeneralProtection(0));
    }
    let f = cpu.state.eflags() & !(fl::VM | fl::RF);
    if i.code() == Code::Pushfd {
        cpu.push(Size::D, f)
    } else {
        cpu.push(Size::W, f & 0xFFFF)
    }
}

/// The EFLAGS image POPF or IRET may load at the current privilege (SDM POPF, Table 4-? of
/// "Operation"): at CPL > 0 IOPL is kept, at CPL > IOPL IF is kept; VM, VIP and VIF are never
/// changed by POPF; RF is cleared.
pub fn popf_value(cpu: &Cpu, new: u32, size: Size) -> u32 {
    let old = cpu.state.eflags();
    let mut writable = fl::WRITABLE & !(fl::VM | fl::VIP | fl::VIF | fl::RF);
    if cpu.state.protected() {
        let iopl = (old & fl::IOPL) >> 12;
        if cpu.state.cpl > 0 {
            writable &= !fl::IOPL;
        }
        if u32::from(cpu.state.cpl) > iopl {
            writable &= !fl::IF;
        }
    }
    if size == Size::W {
        writable &= 0xFFFF;
    }
    (old & !writable & !fl::RF) | (new & writable)
}

/// The EFLAGS image a protected-mode IRET (not to virtual-8086 mode) loads at the current
/// privilege (SDM IRET "Operation"): the arithmetic flags, TF, DF and NT always; RF, AC and ID
/// with a 32-bit operand; IF when CPL ≤ IOPL; IOPL at CPL 0; VIF and VIP at CPL 0 with a 32-bit
/// operand. VM is never loaded here.
pub fn iret_flags(cpu: &Cpu, new: u32, size: Size) -> u32 {
    let old = cpu.state.eflags();
    let cpl = u32::from(cpu.state.cpl);
    let iopl = (old & fl::IOPL) >> 12;
    let mut writable = fl::ARITH | fl::TF | fl::DF | fl::NT;
    if size == Size::D {
        writable |= fl::RF | fl::AC | fl::ID;
        if cpl == 0 {
            writable |= fl::VIF | fl::VIP;
        }
    }
    if cpl <= iopl {
        writable |= fl::IF;
    }
    if cpl == 0 {
        writable |= fl::IOPL;
    }
    (old & !writable) | (new & writable)
}

/// POPF/POPFD. In virtual-8086 mode with IOPL < 3 it is #GP.
pub fn popf(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    if cpu.state.v86() && (cpu.state.eflags & fl::IOPL) != fl::IOPL {
        return Err(Exception::GeneralProtection(0));
    }
    let size = if i.code() == Code::Popfd { Size::D } else { Size::W };
    let v = cpu.pop(size)?;
    let f = popf_value(cpu, v, size);
    cpu.state.set_eflags(f);
    Ok(())
}

/// ENTER imm16, imm8: builds a stack frame with `level % 32` saved frame pointers.
pub fn enter(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let size = if i.code() == Code::Enterd_imm16_imm8 { Size::D } else { Size::W };
    let n = size.bytes() as u32;
    let alloc = u32::from(i.immediate16());
    let level = u32::from(i.immediate8_2nd()) % 32;
    let old_esp = cpu.state.regs[gpr::ESP];
    let old_ebp = cpu.state.regs[gpr::EBP];
    let s32 = cpu.state.stack32();
    let result = (|| {
        cpu.push(size, old_ebp & size.mask())?;
        let frame = cpu.sp();
        let mut bp = operand::mask_addr(old_ebp, s32);
        if level > 0 {
            for _ in 1..level {
                bp = operand::mask_addr(bp.wrapping_sub(n), s32);
                let v = cpu.read(SegReg::Ss, bp, size)?;
                cpu.push(size, v)?;
            }
            cpu.push(size, frame)?;
        }
        let new_sp = operand::mask_addr(cpu.sp().wrapping_sub(alloc), s32);
        // The final stack pointer must be inside the stack segment (SDM ENTER: #SS).
        cpu.check_write(SegReg::Ss, new_sp, Size::B)?;
        Ok((frame, new_sp))
    })();
    match result {
        Ok((frame, new_sp)) => {
            match size {
                Size::D => cpu.state.regs[gpr::EBP] = frame,
                _ => cpu.state.set_reg16(gpr::EBP, frame as u16),
            }
            cpu.set_sp(new_sp);
            Ok(())
        }
        Err(e) => {
            cpu.state.regs[gpr::ESP] = old_esp;
            Err(e)
        }
    }
}

/// LEAVE: (E)SP = (E)BP, then pop (E)BP.
pub fn leave(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let size = if i.code() == Code::Leaved { Size::D } else { Size::W };
    let old = cpu.state.regs[gpr::ESP];
    let bp = cpu.state.regs[gpr::EBP];
    cpu.set_sp(bp);
    match cpu.pop(size) {
        Ok(v) => {
            match size {
                Size::D => cpu.state.regs[gpr::EBP] = v,
                _ => cpu.state.set_reg16(gpr::EBP, v as u16),
            }
            Ok(())
        }
        Err(e) => {
            cpu.state.regs[gpr::ESP] = old;
            Err(e)
        }
    }
}

/// Used by handlers that need a memory operand's segment and offset (far pointers).
pub fn mem_operand(cpu: &Cpu, i: &Instruction) -> Result<(SegReg, u32), Exception> {
    if i.op0_kind() != OpKind::Memory && i.op1_kind() != OpKind::Memory {
        return Err(Exception::InvalidOpcode);
    }
    Ok((mem_seg(i), ea(&cpu.state, i)))
}
