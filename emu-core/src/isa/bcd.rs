//! Decimal arithmetic: DAA DAS AAA AAS AAM AAD, and SALC (Intel SDM Vol. 2A, the instruction
//! pages of each; SALC is undocumented but present on every Intel IA-32 processor).
//!
//! Undefined flags, bt86's choices (matching the 80286 captures where they tell): DAA/DAS leave OF as the SDM's add/subtract of the
//! correction would set it (computed from the change of AL's sign); AAA/AAS set SF ZF PF from AL
//! after the adjustment and clear OF; AAM/AAD clear OF, AF and CF.

use iced_x86::{Code, Instruction};

use super::Res;
use crate::cpu::Cpu;
use crate::exception::Exception;
use crate::flags::{szp, Size};
use crate::io::PortIo;
use crate::state::{fl, gpr};

/// DAA and DAS.
pub fn daa_das(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let sub = i.code() == Code::Das;
    let f = cpu.state.eflags();
    let old_al = cpu.state.reg8(0);
    let old_cf = f & fl::CF != 0;
    let mut al = old_al;
    let mut cf = false;
    let mut af = false;
    if (al & 0x0F) > 9 || f & fl::AF != 0 {
        let (v, carry) = if sub { al.overflowing_sub(6) } else { al.overflowing_add(6) };
        al = v;
        cf = old_cf || carry;
        af = true;
    }
    if old_al > 0x99 || old_cf {
        al = if sub { al.wrapping_sub(0x60) } else { al.wrapping_add(0x60) };
        cf = true;
    } else if !sub {
        cf = false;
    }
    cpu.state.set_reg8(0, al);
    let mut nf = szp(u32::from(al), Size::B);
    if cf {
        nf |= fl::CF;
    }
    if af {
        nf |= fl::AF;
    }
    // OF: the signed overflow of the combined correction.
    let of = if sub { (old_al & !al) & 0x80 != 0 } else { (!old_al & al) & 0x80 != 0 };
    if of {
        nf |= fl::OF;
    }
    cpu.state.set_arith(nf);
    Ok(())
}

/// AAA and AAS (P6 semantics: AX ± 0x106 / AX − 6 and AH − 1).
pub fn aaa_aas(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let sub = i.code() == Code::Aas;
    let f = cpu.state.eflags();
    let ax = cpu.state.regs[gpr::EAX] as u16;
    let adjust = (ax & 0x0F) > 9 || f & fl::AF != 0;
    let mut nax = ax;
    if adjust {
        nax = if sub {
            // AX − 6 borrows from AH when AL < 6, then AH − 1 (SDM AAS "Operation").
            ax.wrapping_sub(6).wrapping_sub(0x100)
        } else {
            ax.wrapping_add(0x106)
        };
    }
    nax &= 0xFF0F;
    cpu.state.set_reg16(gpr::EAX, nax);
    let mut nf = szp(u32::from(nax as u8), Size::B);
    if adjust {
        nf |= fl::AF | fl::CF;
    }
    cpu.state.set_arith(nf);
    Ok(())
}

/// AAM imm8: AH = AL / imm8, AL = AL % imm8; #DE when imm8 is 0.
pub fn aam(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let base = i.immediate8();
    if base == 0 {
        return Err(Exception::DivideError);
    }
    let al = cpu.state.reg8(0);
    let (q, r) = (al / base, al % base);
    cpu.state.set_reg16(gpr::EAX, (u16::from(q) << 8) | u16::from(r));
    cpu.state.set_arith(szp(u32::from(r), Size::B));
    Ok(())
}

/// AAD imm8: AL = AL + AH × imm8, AH = 0.
pub fn aad(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let base = i.immediate8();
    let al = cpu.state.reg8(0);
    let ah = cpu.state.reg8(4);
    let v = al.wrapping_add(ah.wrapping_mul(base));
    cpu.state.set_reg16(gpr::EAX, u16::from(v));
    cpu.state.set_arith(szp(u32::from(v), Size::B));
    Ok(())
}

/// SALC: AL = CF ? 0xFF : 0x00.
pub fn salc(cpu: &mut Cpu, _io: &mut dyn PortIo, _i: &Instruction) -> Res {
    let v = if cpu.state.cf() { 0xFF } else { 0 };
    cpu.state.set_reg8(0, v);
    Ok(())
}
