//! Shifts and rotates: ROL ROR RCL RCR SHL/SAL SHR SAR, SHLD SHRD (Intel SDM Vol. 2B, "RCL/RCR/
//! ROL/ROR", "SAL/SAR/SHL/SHR", "SHLD", "SHRD").
//!
//! The count is masked to 5 bits (80286 and later). A masked count of zero changes nothing.
//! Undefined results, bt86's fixed choices (those the 80286 captures show, where they show one):
//! OF after a multi-bit shift or rotate is computed from the final result with the formula that
//! gives the defined one-bit value — SHL/ROL/RCL: MSB(result) XOR CF; SHR/ROR/RCR: the XOR of
//! the two top bits of the result; SAR: 0; AF after SHL/SHR/SAR/SHLD/SHRD is cleared; CF after SHL/SHR by the operand
//! width or more is the last bit shifted out of a zero-extended operand (0 once past it);
//! SHLD/SHRD of 16-bit operands with counts 17–31 shift through `dst:src:dst`.

use iced_x86::{Instruction, Mnemonic};

use super::operand::{self, read, write};
use super::Res;
use crate::cpu::Cpu;
use crate::flags::{szp, Size};
use crate::io::PortIo;
use crate::state::fl;

fn msb(v: u32, size: Size) -> bool {
    v & size.sign() != 0
}

/// Rotations through CF turn over every `bits + 1` positions (SDM RCL/RCR "tempCOUNT").
fn through_carry_count(cnt: u32, size: Size) -> u32 {
    match size {
        Size::B => cnt % 9,
        Size::W => cnt % 17,
        Size::D => cnt,
    }
}

/// The two most significant bits of `v` differ (OF of a right shift or rotate).
fn top2_differ(v: u32, size: Size) -> bool {
    msb(v, size) != (v & (size.sign() >> 1) != 0)
}

/// Applies CF and OF (only those) on top of the current flags.
fn set_cf_of(cpu: &mut Cpu, cf: bool, of: bool) {
    let mut f = cpu.state.eflags() & !(fl::CF | fl::OF);
    if cf {
        f |= fl::CF;
    }
    if of {
        f |= fl::OF;
    }
    cpu.state.set_arith(f);
}

/// Sets every arithmetic flag after a shift: SZP from the result, AF = 0.
fn set_shift_flags(cpu: &mut Cpu, res: u32, size: Size, cf: bool, of: bool) {
    let mut f = szp(res, size);
    if cf {
        f |= fl::CF;
    }
    if of {
        f |= fl::OF;
    }
    cpu.state.set_arith(f);
}

/// ROL, ROR, RCL, RCR, SHL/SAL, SHR, SAR with a count of 1, CL or imm8.
pub fn shift(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let size = operand::osize(i);
    let bits = size.bits();
    let m = size.mask();
    let dst = read(cpu, i, 0)?;
    let cnt = read(cpu, i, 1)? & 0x1F;
    if cnt == 0 {
        return Ok(());
    }
    match i.mnemonic() {
        Mnemonic::Rol => {
            let c = cnt % bits;
            let res = if c == 0 { dst } else { ((dst << c) | (dst >> (bits - c))) & m };
            write(cpu, i, 0, res)?;
            let cf = res & 1 != 0;
            set_cf_of(cpu, cf, msb(res, size) ^ cf);
        }
        Mnemonic::Ror => {
            let c = cnt % bits;
            let res = if c == 0 { dst } else { ((dst >> c) | (dst << (bits - c))) & m };
            write(cpu, i, 0, res)?;
            let cf = msb(res, size);
            set_cf_of(cpu, cf, top2_differ(res, size));
        }
        Mnemonic::Rcl => {
            let c = through_carry_count(cnt, size);
            let mut cf = cpu.state.cf();
            let mut v = dst;
            for _ in 0..c {
                let out = msb(v, size);
                v = ((v << 1) | u32::from(cf)) & m;
                cf = out;
            }
            write(cpu, i, 0, v)?;
            set_cf_of(cpu, cf, msb(v, size) ^ cf);
        }
        Mnemonic::Rcr => {
            let c = through_carry_count(cnt, size);
            let mut cf = cpu.state.cf();
            let mut v = dst;
            for _ in 0..c {
                let out = v & 1 != 0;
                v = (v >> 1) | (u32::from(cf) << (bits - 1));
                cf = out;
            }
            write(cpu, i, 0, v)?;
            set_cf_of(cpu, cf, top2_differ(v, size));
        }
        Mnemonic::Shl | Mnemonic::Sal => {
            let wide = u64::from(dst) << cnt;
            let res = wide as u32 & m;
            let cf = (wide >> bits) & 1 != 0;
            write(cpu, i, 0, res)?;
            set_shift_flags(cpu, res, size, cf, msb(res, size) ^ cf);
        }
        Mnemonic::Shr => {
            let res = dst >> cnt;
            let cf = (u64::from(dst) >> (cnt - 1)) & 1 != 0;
            write(cpu, i, 0, res)?;
            set_shift_flags(cpu, res, size, cf, top2_differ(res, size));
        }
        _ => {
            // SAR
            let s = size.sext(dst) as i32;
            let res = (s >> cnt.min(31)) as u32 & m;
            let cf = (s >> (cnt - 1).min(31)) & 1 != 0;
            write(cpu, i, 0, res)?;
            set_shift_flags(cpu, res, size, cf, false);
        }
    }
    Ok(())
}

/// SHLD r/m, r, imm8/CL and SHRD r/m, r, imm8/CL.
pub fn double_shift(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let size = operand::osize(i);
    let m = size.mask();
    let dst = read(cpu, i, 0)?;
    let src = read(cpu, i, 1)?;
    let cnt = read(cpu, i, 2)? & 0x1F;
    if cnt == 0 {
        return Ok(());
    }
    let left = i.mnemonic() == Mnemonic::Shld;
    let (res, cf) = if size == Size::D {
        if left {
            let wide = (u64::from(dst) << 32) | u64::from(src);
            ((wide << cnt >> 32) as u32, (wide >> (64 - cnt)) & 1 != 0)
        } else {
            let wide = (u64::from(src) << 32) | u64::from(dst);
            ((wide >> cnt) as u32, (wide >> (cnt - 1)) & 1 != 0)
        }
    } else if left {
        // dst:src:dst, 48 bits; the result is the top 16 after the shift.
        let wide = (u64::from(dst) << 32) | (u64::from(src) << 16) | u64::from(dst);
        (((wide << cnt) >> 32) as u32 & m, (wide >> (48 - cnt)) & 1 != 0)
    } else {
        let wide = (u64::from(dst) << 32) | (u64::from(src) << 16) | u64::from(dst);
        ((wide >> cnt) as u32 & m, (wide >> (cnt - 1)) & 1 != 0)
    };
    write(cpu, i, 0, res)?;
    set_shift_flags(cpu, res, size, cf, msb(res, size) != msb(dst, size));
    Ok(())
}
