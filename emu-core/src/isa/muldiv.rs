//! Multiplication and division: MUL, IMUL (one-, two- and three-operand forms), DIV, IDIV
//! (Intel SDM Vol. 2A/2B, the instruction pages of each).
//!
//! Undefined flags: after MUL/IMUL the SDM leaves SF ZF AF PF undefined; bt86 sets SF, ZF and PF
//! from the low half of the result and clears AF. After DIV/IDIV all six are undefined; bt86
//! leaves them unchanged. The silicon vectors mask these bits, so the choice is ours to document.

use iced_x86::Instruction;

use super::operand::{self, read, write};
use super::Res;
use crate::cpu::Cpu;
use crate::exception::Exception;
use crate::flags::{szp, Size};
use crate::io::PortIo;
use crate::state::{fl, gpr};

/// Sets flags after a multiplication: CF = OF = `overflow`, SZP from the low half.
fn mul_flags(cpu: &mut Cpu, low: u32, size: Size, overflow: bool) {
    let mut f = szp(low, size);
    if overflow {
        f |= fl::CF | fl::OF;
    }
    cpu.state.set_arith(f);
}

/// Writes a double-width result to AX, DX:AX or EDX:EAX.
fn store_wide(cpu: &mut Cpu, size: Size, v: u64) {
    let s = &mut cpu.state;
    match size {
        Size::B => s.set_reg16(gpr::EAX, v as u16),
        Size::W => {
            s.set_reg16(gpr::EAX, v as u16);
            s.set_reg16(gpr::EDX, (v >> 16) as u16);
        }
        Size::D => {
            s.regs[gpr::EAX] = v as u32;
            s.regs[gpr::EDX] = (v >> 32) as u32;
        }
    }
}

/// Reads the accumulator of the given size (AL, AX, EAX).
fn acc(cpu: &Cpu, size: Size) -> u32 {
    cpu.state.regs[gpr::EAX] & size.mask()
}

/// MUL r/m: unsigned AL/AX/EAX × r/m into AX, DX:AX, EDX:EAX; CF = OF = (upper half ≠ 0).
pub fn mul(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let size = operand::osize(i);
    let src = read(cpu, i, 0)?;
    let r = u64::from(acc(cpu, size)) * u64::from(src);
    store_wide(cpu, size, r);
    mul_flags(cpu, r as u32, size, r >> size.bits() != 0);
    Ok(())
}

/// IMUL r/m (one operand): signed, double-width; CF = OF = (result ≠ sign-extended low half).
pub fn imul1(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let size = operand::osize(i);
    let src = i64::from(size.sext(read(cpu, i, 0)?) as i32);
    let a = i64::from(size.sext(acc(cpu, size)) as i32);
    let r = a * src;
    store_wide(cpu, size, r as u64);
    let low = r as u32 & size.mask();
    mul_flags(cpu, low, size, i64::from(size.sext(low) as i32) != r);
    Ok(())
}

/// IMUL r, r/m and IMUL r, r/m, imm: truncated product; CF = OF = (truncation lost bits).
pub fn imul_n(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let size = operand::osize(i);
    let (a, b) = if i.op_count() == 3 {
        (read(cpu, i, 1)?, read(cpu, i, 2)?)
    } else {
        (read(cpu, i, 0)?, read(cpu, i, 1)?)
    };
    let r = i64::from(size.sext(a) as i32) * i64::from(size.sext(b & size.mask()) as i32);
    let low = r as u32 & size.mask();
    write(cpu, i, 0, low)?;
    mul_flags(cpu, low, size, i64::from(size.sext(low) as i32) != r);
    Ok(())
}

/// The double-width dividend: AX, DX:AX or EDX:EAX.
fn dividend(cpu: &Cpu, size: Size) -> u64 {
    let s = &cpu.state;
    match size {
        Size::B => u64::from(s.regs[gpr::EAX] & 0xFFFF),
        Size::W => u64::from(((s.regs[gpr::EDX] & 0xFFFF) << 16) | (s.regs[gpr::EAX] & 0xFFFF)),
        Size::D => (u64::from(s.regs[gpr::EDX]) << 32) | u64::from(s.regs[gpr::EAX]),
    }
}

/// Stores quotient and remainder: AL/AH, AX/DX, EAX/EDX.
fn store_divide(cpu: &mut Cpu, size: Size, q: u32, r: u32) {
    let s = &mut cpu.state;
    match size {
        Size::B => s.set_reg16(gpr::EAX, ((r as u16 & 0xFF) << 8) | (q as u16 & 0xFF)),
        Size::W => {
            s.set_reg16(gpr::EAX, q as u16);
            s.set_reg16(gpr::EDX, r as u16);
        }
        Size::D => {
            s.regs[gpr::EAX] = q;
            s.regs[gpr::EDX] = r;
        }
    }
}

/// DIV r/m: unsigned; #DE on a zero divisor or a quotient that does not fit.
pub fn div(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let size = operand::osize(i);
    let d = u64::from(read(cpu, i, 0)?);
    if d == 0 {
        return Err(Exception::DivideError);
    }
    let n = dividend(cpu, size);
    let q = n / d;
    if q > u64::from(size.mask()) {
        return Err(Exception::DivideError);
    }
    store_divide(cpu, size, q as u32, (n % d) as u32);
    Ok(())
}

/// IDIV r/m: signed, quotient truncated toward zero, remainder has the dividend's sign; #DE on
/// a zero divisor or a quotient outside the signed range of the operand size.
pub fn idiv(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let size = operand::osize(i);
    let d = i64::from(size.sext(read(cpu, i, 0)?) as i32);
    if d == 0 {
        return Err(Exception::DivideError);
    }
    let raw = dividend(cpu, size);
    let n: i64 = match size {
        Size::B => i64::from(raw as u16 as i16),
        Size::W => i64::from(raw as u32 as i32),
        Size::D => raw as i64,
    };
    // i64::MIN / -1 cannot occur: the dividend is at most 64 bits and d fits in 32, but the
    // quotient of -2^63 / -1 would overflow, so use checked division.
    let q = n.checked_div(d).ok_or(Exception::DivideError)?;
    let r = n.checked_rem(d).ok_or(Exception::DivideError)?;
    let half = 1i64 << (size.bits() - 1);
    if q < -half || q >= half {
        return Err(Exception::DivideError);
    }
    store_divide(cpu, size, q as u32, r as u32);
    Ok(())
}
