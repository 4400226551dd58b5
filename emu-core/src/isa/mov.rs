//! Data movement and conversion: MOV (all forms, including segment registers and moffs), MOVZX,
//! MOVSX, XCHG, LEA, LDS/LES/LFS/LGS/LSS, XLAT, CBW/CWDE/CWD/CDQ, BSWAP, CMOVcc, SETcc,
//! LAHF/SAHF, NOP (Intel SDM Vol. 2, the instruction pages of each; condition codes per
//! Vol. 1 Appendix B).

use iced_x86::{ConditionCode, Instruction, OpKind, Register};

use super::operand::{self, ea, get_reg, mem_seg, op_size, read, set_reg, sreg, write};
use super::Res;
use crate::cpu::Cpu;
use crate::exception::Exception;
use crate::flags::Size;
use crate::io::PortIo;
use crate::state::{fl, gpr, CpuState, SegReg};

/// Evaluates a condition code against EFLAGS.
#[inline]
pub fn cond(s: &CpuState, cc: ConditionCode) -> bool {
    if matches!(cc, ConditionCode::b | ConditionCode::ae) {
        return s.cf() == (cc == ConditionCode::b);
    }
    let f = s.eflags();
    let bit = |m: u32| f & m != 0;
    match cc {
        ConditionCode::o => bit(fl::OF),
        ConditionCode::no => !bit(fl::OF),
        ConditionCode::e => bit(fl::ZF),
        ConditionCode::ne => !bit(fl::ZF),
        ConditionCode::be => bit(fl::CF) || bit(fl::ZF),
        ConditionCode::a => !bit(fl::CF) && !bit(fl::ZF),
        ConditionCode::s => bit(fl::SF),
        ConditionCode::ns => !bit(fl::SF),
        ConditionCode::p => bit(fl::PF),
        ConditionCode::np => !bit(fl::PF),
        ConditionCode::l => bit(fl::SF) != bit(fl::OF),
        ConditionCode::ge => bit(fl::SF) == bit(fl::OF),
        ConditionCode::le => bit(fl::ZF) || bit(fl::SF) != bit(fl::OF),
        ConditionCode::g => !bit(fl::ZF) && bit(fl::SF) == bit(fl::OF),
        _ => false,
    }
}

/// MOV r/m, r / r, r/m / r, imm / r/m, imm / moffs forms.
pub fn mov(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let v = read(cpu, i, 1)?;
    write(cpu, i, 0, v)
}

/// MOV Sreg, r/m16. Loading CS this way is #UD; loading SS inhibits interrupts for one
/// instruction (SDM Vol. 3A §6.8.3).
pub fn mov_to_sreg(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let seg = sreg(i.op0_register());
    if seg == SegReg::Cs {
        return Err(Exception::InvalidOpcode);
    }
    let v = read(cpu, i, 1)? as u16;
    cpu.load_seg(seg, v)?;
    if seg == SegReg::Ss {
        cpu.state.int_shadow = true;
        cpu.state.ss_shadow = true;
    }
    Ok(())
}

/// MOV r/m16, Sreg and MOV r32, Sreg. A 32-bit register destination is zero-extended (the
/// P6 behaviour; earlier CPUs left the upper half undefined); a memory destination gets 16 bits.
pub fn mov_from_sreg(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let v = get_reg(&cpu.state, i.op1_register());
    if i.op0_kind() == OpKind::Register {
        let r = i.op0_register();
        set_reg(&mut cpu.state, r, v);
        Ok(())
    } else {
        cpu.write(mem_seg(i), ea(&cpu.state, i), Size::W, v)
    }
}

/// MOVZX r, r/m8 or r/m16.
pub fn movzx(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let v = read(cpu, i, 1)?;
    write(cpu, i, 0, v)
}

/// MOVSX r, r/m8 or r/m16.
pub fn movsx(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let v = op_size(i, 1).sext(read(cpu, i, 1)?);
    write(cpu, i, 0, v)
}

/// XCHG r/m, r and XCHG r, AX/EAX (reads both before writing either).
pub fn xchg(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let a = read(cpu, i, 0)?;
    let b = read(cpu, i, 1)?;
    write(cpu, i, 0, b)?;
    write(cpu, i, 1, a)
}

/// LEA r, m: the effective address truncated to the operand size.
pub fn lea(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let a = ea(&cpu.state, i);
    set_reg(&mut cpu.state, i.op0_register(), a);
    Ok(())
}

/// LDS/LES/LFS/LGS/LSS r, m16:16 or m16:32: loads the segment first (it may fault), then the
/// register.
pub fn load_far_pointer(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    if i.op1_kind() != OpKind::Memory {
        return Err(Exception::InvalidOpcode);
    }
    let r = i.op0_register();
    let size = operand::reg_size(r);
    let seg = mem_seg(i);
    let off = ea(&cpu.state, i);
    let offset = cpu.read(seg, off, size)?;
    let selector = cpu.read(seg, off.wrapping_add(size.bytes() as u32), Size::W)? as u16;
    let target = match i.mnemonic() {
        iced_x86::Mnemonic::Lds => SegReg::Ds,
        iced_x86::Mnemonic::Les => SegReg::Es,
        iced_x86::Mnemonic::Lfs => SegReg::Fs,
        iced_x86::Mnemonic::Lgs => SegReg::Gs,
        _ => SegReg::Ss,
    };
    cpu.load_seg(target, selector)?;
    set_reg(&mut cpu.state, r, offset);
    Ok(())
}

/// XLAT: AL = [seg:(E)BX + zero-extended AL].
pub fn xlat(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let a32 = i.memory_base() == Register::EBX;
    let off = operand::mask_addr(cpu.state.regs[gpr::EBX].wrapping_add(u32::from(cpu.state.reg8(0))), a32);
    let v = cpu.read(mem_seg(i), off, Size::B)?;
    cpu.state.set_reg8(0, v as u8);
    Ok(())
}

/// CBW (AX = sext AL) and CWDE (EAX = sext AX).
pub fn cbw(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let s = &mut cpu.state;
    if i.code() == iced_x86::Code::Cbw {
        let v = Size::B.sext(s.regs[gpr::EAX]);
        s.set_reg16(gpr::EAX, v as u16);
    } else {
        s.regs[gpr::EAX] = Size::W.sext(s.regs[gpr::EAX]);
    }
    Ok(())
}

/// CWD (DX:AX = sext AX) and CDQ (EDX:EAX = sext EAX).
pub fn cwd(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let s = &mut cpu.state;
    if i.code() == iced_x86::Code::Cwd {
        let hi = if s.regs[gpr::EAX] & 0x8000 != 0 { 0xFFFF } else { 0 };
        s.set_reg16(gpr::EDX, hi);
    } else {
        s.regs[gpr::EDX] = if s.regs[gpr::EAX] & 0x8000_0000 != 0 { u32::MAX } else { 0 };
    }
    Ok(())
}

/// BSWAP r32. With a 16-bit operand the result is undefined in the SDM; bt86 clears the low
/// word, as Intel processors do.
pub fn bswap(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let r = i.op0_register();
    if r.is_gpr16() {
        set_reg(&mut cpu.state, r, 0);
    } else {
        let v = get_reg(&cpu.state, r).swap_bytes();
        set_reg(&mut cpu.state, r, v);
    }
    Ok(())
}

/// CMOVcc r, r/m: the source is read (and may fault) whatever the condition.
pub fn cmov(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let v = read(cpu, i, 1)?;
    if cond(&cpu.state, i.condition_code()) {
        write(cpu, i, 0, v)?;
    }
    Ok(())
}

/// SETcc r/m8.
pub fn setcc(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let v = u32::from(cond(&cpu.state, i.condition_code()));
    write(cpu, i, 0, v)
}

/// LAHF: AH = SF:ZF:0:AF:0:PF:1:CF.
pub fn lahf(cpu: &mut Cpu, _io: &mut dyn PortIo, _i: &Instruction) -> Res {
    let f = cpu.state.eflags() as u8;
    cpu.state.set_reg8(4, f);
    Ok(())
}

/// SAHF: SF ZF AF PF CF = AH.
pub fn sahf(cpu: &mut Cpu, _io: &mut dyn PortIo, _i: &Instruction) -> Res {
    let ah = u32::from(cpu.state.reg8(4));
    let keep = cpu.state.eflags() & fl::OF;
    cpu.state.set_arith(keep | (ah & (fl::SF | fl::ZF | fl::AF | fl::PF | fl::CF)));
    Ok(())
}

/// NOP in all its encodings (0x90, 0F 1F /0, the reserved-NOP hints 0F 19–1F, PAUSE). The
/// memory operand of a multi-byte NOP is not accessed.
pub fn nop(_cpu: &mut Cpu, _io: &mut dyn PortIo, _i: &Instruction) -> Res {
    Ok(())
}
