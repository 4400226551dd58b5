//! Control transfer: JMP, Jcc, CALL, RET, RETF, LOOP/LOOPE/LOOPNE, JCXZ/JECXZ, INT n, INT3,
//! INTO, IRET, BOUND, HLT and the flag instructions CLC STC CMC CLD STD CLI STI (Intel SDM
//! Vol. 2, the instruction pages of each; real-address-mode interrupts per Vol. 3A §20.1.4).
//!
//! Every near target is checked against the CS limit before EIP changes (#GP(0)); far
//! transfers load CS first and commit the stack only after every access succeeded. In protected
//! mode far transfers, returns and IRET go through `Cpu::far_jump`, `far_call`, `far_return` and
//! `iret_protected` (privilege checks, call gates, stack switches, task switches).

use iced_x86::{Code, Instruction, OpKind};

use super::mov::cond;
use super::operand::{self, read};
use super::stack::{mem_operand, popf_value};
use super::Res;
use crate::cpu::{Cpu, IntKind};
use crate::exception::Exception;
use crate::flags::Size;
use crate::io::PortIo;
use crate::state::{fl, gpr, SegReg};

/// Sets EIP to `target` after checking it against the CS limit.
#[inline]
fn go(cpu: &mut Cpu, target: u32) -> Res {
    if target > cpu.state.seg(SegReg::Cs).limit {
        return Err(Exception::GeneralProtection(0));
    }
    cpu.state.eip = target;
    Ok(())
}

/// Operand size of a branch, from the code (the `_16`/`_32`/`w`/`d` forms).
#[inline]
fn branch_size(i: &Instruction) -> Size {
    match i.op_kind(0) {
        OpKind::NearBranch16 | OpKind::FarBranch16 => Size::W,
        OpKind::NearBranch32 | OpKind::FarBranch32 => Size::D,
        _ => operand::osize(i),
    }
}

/// JMP rel8/rel16/rel32.
pub fn jmp_rel(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    go(cpu, i.near_branch_target() as u32)
}

/// JMP r/m16, r/m32.
pub fn jmp_near_indirect(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let t = read(cpu, i, 0)?;
    go(cpu, t)
}

/// Whether far transfers follow the protected-mode rules (protected mode, not virtual-8086).
fn pm(cpu: &Cpu) -> bool {
    cpu.state.protected() && !cpu.state.v86()
}

/// Loads CS:EIP for a far JMP/CALL/RET/IRET in real or virtual-8086 mode (CS limit checked
/// against the new segment).
fn far_go(cpu: &mut Cpu, selector: u16, offset: u32) -> Res {
    let saved = *cpu.state.seg(SegReg::Cs);
    let saved_cpl = cpu.state.cpl;
    cpu.load_seg(SegReg::Cs, selector)?;
    if let Err(e) = go(cpu, offset) {
        *cpu.state.seg_mut(SegReg::Cs) = saved;
        cpu.state.cpl = saved_cpl;
        return Err(e);
    }
    Ok(())
}

/// Reads a far pointer (offset, then selector) from memory.
fn read_far_ptr(cpu: &mut Cpu, i: &Instruction, size: Size) -> Result<(u16, u32), Exception> {
    let (seg, off) = mem_operand(cpu, i)?;
    let offset = cpu.read(seg, off, size)?;
    let sel = cpu.read(seg, off.wrapping_add(size.bytes() as u32), Size::W)? as u16;
    Ok((sel, offset))
}

/// JMP ptr16:16/ptr16:32.
pub fn jmp_far(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let size = if i.code() == Code::Jmp_ptr1632 { Size::D } else { Size::W };
    if pm(cpu) {
        return cpu.far_jump(i.far_branch_selector(), i.far_branch32(), size);
    }
    far_go(cpu, i.far_branch_selector(), i.far_branch32())
}

/// JMP m16:16/m16:32.
pub fn jmp_far_indirect(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let size = if i.code() == Code::Jmp_m1632 { Size::D } else { Size::W };
    let (sel, off) = read_far_ptr(cpu, i, size)?;
    if pm(cpu) {
        return cpu.far_jump(sel, off, size);
    }
    far_go(cpu, sel, off)
}

/// Jcc rel8/rel16/rel32.
pub fn jcc(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    if cond(&cpu.state, i.condition_code()) {
        go(cpu, i.near_branch_target() as u32)?;
    }
    Ok(())
}

/// The counter register of LOOP/JCXZ: CX or ECX by address size (the `_CX`/`_ECX` codes).
fn counter32(i: &Instruction) -> bool {
    matches!(
        i.code(),
        Code::Loop_rel8_16_ECX
            | Code::Loop_rel8_32_ECX
            | Code::Loope_rel8_16_ECX
            | Code::Loope_rel8_32_ECX
            | Code::Loopne_rel8_16_ECX
            | Code::Loopne_rel8_32_ECX
            | Code::Jecxz_rel8_16
            | Code::Jecxz_rel8_32
    )
}

/// LOOP, LOOPE, LOOPNE: decrement the counter (no flags) and branch.
pub fn loop_(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let c32 = counter32(i);
    let count = operand::mask_addr(cpu.state.regs[gpr::ECX].wrapping_sub(1), c32);
    let zf = cpu.state.eflags() & fl::ZF != 0;
    let taken = count != 0
        && match i.mnemonic() {
            iced_x86::Mnemonic::Loope => zf,
            iced_x86::Mnemonic::Loopne => !zf,
            _ => true,
        };
    if taken {
        go(cpu, i.near_branch_target() as u32)?;
    }
    if c32 {
        cpu.state.regs[gpr::ECX] = count;
    } else {
        cpu.state.set_reg16(gpr::ECX, count as u16);
    }
    Ok(())
}

/// JCXZ, JECXZ.
pub fn jcxz(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    if operand::mask_addr(cpu.state.regs[gpr::ECX], counter32(i)) == 0 {
        go(cpu, i.near_branch_target() as u32)?;
    }
    Ok(())
}

/// Pushes a near return address, then branches; the stack pointer is restored on a fault.
fn call_near(cpu: &mut Cpu, size: Size, target: u32) -> Res {
    let ret = cpu.state.eip;
    if target > cpu.state.seg(SegReg::Cs).limit {
        return Err(Exception::GeneralProtection(0));
    }
    cpu.push(size, ret)?;
    cpu.state.eip = target;
    Ok(())
}

/// CALL rel16/rel32.
pub fn call_rel(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    call_near(cpu, branch_size(i), i.near_branch_target() as u32)
}

/// CALL r/m16, r/m32.
pub fn call_near_indirect(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let t = read(cpu, i, 0)?;
    call_near(cpu, operand::osize(i), t)
}

/// Pushes CS and the return offset, then transfers to `selector:offset`.
fn call_far(cpu: &mut Cpu, size: Size, selector: u16, offset: u32) -> Res {
    if pm(cpu) {
        let ret = cpu.state.eip;
        return cpu.far_call(selector, offset, size, ret);
    }
    let old_esp = cpu.state.regs[gpr::ESP];
    let cs = u32::from(cpu.state.seg(SegReg::Cs).selector);
    let ret = cpu.state.eip;
    let r =
        cpu.push(size, cs).and_then(|()| cpu.push(size, ret)).and_then(|()| far_go(cpu, selector, offset));
    if r.is_err() {
        cpu.state.regs[gpr::ESP] = old_esp;
    }
    r
}

/// CALL ptr16:16/ptr16:32.
pub fn call_far_direct(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let size = if i.code() == Code::Call_ptr1632 { Size::D } else { Size::W };
    call_far(cpu, size, i.far_branch_selector(), i.far_branch32())
}

/// CALL m16:16/m16:32.
pub fn call_far_indirect(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let size = if i.code() == Code::Call_m1632 { Size::D } else { Size::W };
    let (sel, off) = read_far_ptr(cpu, i, size)?;
    call_far(cpu, size, sel, off)
}

/// RET and RET imm16 (near).
pub fn ret_near(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let size = if matches!(i.code(), Code::Retnd | Code::Retnd_imm16) { Size::D } else { Size::W };
    let target = cpu.peek(0, size)?;
    go(cpu, target)?;
    let extra = if i.op_count() > 0 { u32::from(i.immediate16()) } else { 0 };
    cpu.set_sp(cpu.sp_plus((size.bytes() as u32 + extra) as i32));
    Ok(())
}

/// RETF and RETF imm16 (same privilege).
pub fn ret_far(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let size = if matches!(i.code(), Code::Retfd | Code::Retfd_imm16) { Size::D } else { Size::W };
    if pm(cpu) {
        let extra = if i.op_count() > 0 { u32::from(i.immediate16()) } else { 0 };
        return cpu.far_return(size, extra);
    }
    let n = size.bytes() as u32;
    let offset = cpu.peek(0, size)?;
    let sel = cpu.peek(n, size)? as u16;
    far_go(cpu, sel, offset)?;
    let extra = if i.op_count() > 0 { u32::from(i.immediate16()) } else { 0 };
    cpu.set_sp(cpu.sp_plus((2 * n + extra) as i32));
    Ok(())
}

/// INT imm8. In virtual-8086 mode with IOPL < 3 it is #GP(0).
pub fn int_n(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    if cpu.state.v86() && (cpu.state.eflags & fl::IOPL) != fl::IOPL {
        return Err(Exception::GeneralProtection(0));
    }
    cpu.stats.soft_ints += 1;
    cpu.interrupt(i.immediate8(), IntKind::Software, cpu.state.eip)
}

/// INT3: breakpoint trap (vector 3, return address after the instruction).
pub fn int3(cpu: &mut Cpu, _io: &mut dyn PortIo, _i: &Instruction) -> Res {
    cpu.stats.soft_ints += 1;
    cpu.interrupt(3, IntKind::Software, cpu.state.eip)
}

/// INTO: overflow trap (vector 4) when OF is set.
pub fn into(cpu: &mut Cpu, _io: &mut dyn PortIo, _i: &Instruction) -> Res {
    if cpu.state.eflags() & fl::OF != 0 {
        cpu.stats.soft_ints += 1;
        cpu.interrupt(4, IntKind::Software, cpu.state.eip)?;
    }
    Ok(())
}

/// IRET/IRETD in real mode (and at the same privilege in protected mode without NT): pops
/// EIP, CS, EFLAGS. The 16-bit form changes only the low word of EFLAGS.
pub fn iret(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    if cpu.state.v86() && (cpu.state.eflags & fl::IOPL) != fl::IOPL {
        return Err(Exception::GeneralProtection(0));
    }
    let size = if i.code() == Code::Iretd { Size::D } else { Size::W };
    if pm(cpu) {
        cpu.iret_protected(size)?;
        cpu.state.nmi_blocked = false;
        return Ok(());
    }
    let n = size.bytes() as u32;
    let offset = cpu.peek(0, size)?;
    let sel = cpu.peek(n, size)? as u16;
    let flags = cpu.peek(2 * n, size)?;
    far_go(cpu, sel, offset)?;
    cpu.set_sp(cpu.sp_plus(3 * n as i32));
    let f = if cpu.state.v86() {
        // Virtual-8086 mode with IOPL 3: IOPL and VM cannot change (SDM IRET, V86 case).
        popf_value(cpu, flags, size)
    } else {
        // Real mode: every flag the operand size covers, except VM/VIP/VIF (SDM IRET).
        let keep = if size == Size::W { !0xFFFF } else { fl::VM | fl::VIP | fl::VIF };
        (cpu.state.eflags() & keep) | (flags & !keep)
    };
    cpu.state.set_eflags(f);
    // Any IRET ends the NMI-blocking period (SDM Vol. 3A §6.7.1).
    cpu.state.nmi_blocked = false;
    Ok(())
}

/// BOUND r, m: #BR unless lower ≤ index ≤ upper (signed).
pub fn bound(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let size = operand::osize(i);
    let (seg, off) = mem_operand(cpu, i)?;
    let lower = size.sext(cpu.read(seg, off, size)?) as i32;
    let upper = size.sext(cpu.read(seg, off.wrapping_add(size.bytes() as u32), size)?) as i32;
    let index = size.sext(operand::get_reg(&cpu.state, i.op0_register())) as i32;
    if index < lower || index > upper {
        return Err(Exception::BoundRange);
    }
    Ok(())
}

/// HLT: privileged; the CPU stops until an interrupt.
pub fn hlt(cpu: &mut Cpu, _io: &mut dyn PortIo, _i: &Instruction) -> Res {
    if cpu.state.protected() && cpu.state.cpl != 0 {
        return Err(Exception::GeneralProtection(0));
    }
    cpu.state.halted = true;
    Ok(())
}

fn set_flag(cpu: &mut Cpu, bit: u32, on: bool) {
    if bit & fl::ARITH != 0 {
        let f = cpu.state.eflags();
        cpu.state.set_arith(if on { f | bit } else { f & !bit });
    } else if on {
        cpu.state.eflags |= bit;
    } else {
        cpu.state.eflags &= !bit;
    }
}

/// CLC, STC, CMC, CLD, STD.
pub fn flag_op(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    match i.code() {
        Code::Clc => set_flag(cpu, fl::CF, false),
        Code::Stc => set_flag(cpu, fl::CF, true),
        Code::Cmc => {
            let cf = cpu.state.cf();
            set_flag(cpu, fl::CF, !cf);
        }
        Code::Cld => set_flag(cpu, fl::DF, false),
        _ => set_flag(cpu, fl::DF, true),
    }
    Ok(())
}

/// True when IF may be changed directly (CLI/STI): real mode, or CPL ≤ IOPL.
fn if_allowed(cpu: &Cpu) -> bool {
    !cpu.state.protected() || u32::from(cpu.state.cpl) <= (cpu.state.eflags & fl::IOPL) >> 12
}

/// CLI: IOPL-sensitive (#GP(0) when CPL > IOPL).
pub fn cli(cpu: &mut Cpu, _io: &mut dyn PortIo, _i: &Instruction) -> Res {
    if !if_allowed(cpu) {
        return Err(Exception::GeneralProtection(0));
    }
    cpu.state.eflags &= !fl::IF;
    Ok(())
}

/// STI: IOPL-sensitive; when it sets IF, interrupts stay inhibited for one more instruction.
pub fn sti(cpu: &mut Cpu, _io: &mut dyn PortIo, _i: &Instruction) -> Res {
    if !if_allowed(cpu) {
        return Err(Exception::GeneralProtection(0));
    }
    if cpu.state.eflags & fl::IF == 0 {
        cpu.state.int_shadow = true;
    }
    cpu.state.eflags |= fl::IF;
    Ok(())
}
