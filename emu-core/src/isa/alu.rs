//! Integer arithmetic and logic: ADD ADC SUB SBB CMP AND OR XOR TEST INC DEC NEG NOT, and the
//! atomic-style XADD, CMPXCHG, CMPXCHG8B (Intel SDM Vol. 2A/2B, the instruction pages of each;
//! flags per Vol. 1 Appendix A). LOCK is accepted where the decoder allows it: a single CPU needs
//! no bus lock.

use iced_x86::{Instruction, OpKind};

use super::operand::{self, check_write, ea, mem_seg, read, write};
use super::Res;
use crate::cpu::Cpu;
use crate::exception::Exception;
use crate::flags::{FlagOp, LazyFlags, Size};
use crate::io::PortIo;
use crate::state::{fl, gpr};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Or,
    Adc,
    Sbb,
    And,
    Sub,
    Xor,
    Cmp,
    Test,
}

#[inline]
fn binop(cpu: &mut Cpu, i: &Instruction, op: Op) -> Res {
    let size = operand::osize(i);
    let m = size.mask();
    let dst = read(cpu, i, 0)?;
    let src = read(cpu, i, 1)? & m;
    let (kind, res) = match op {
        Op::Add => (FlagOp::Add, dst.wrapping_add(src)),
        Op::Adc => (FlagOp::Add, dst.wrapping_add(src).wrapping_add(u32::from(cpu.state.cf()))),
        Op::Sub | Op::Cmp => (FlagOp::Sub, dst.wrapping_sub(src)),
        Op::Sbb => (FlagOp::Sub, dst.wrapping_sub(src).wrapping_sub(u32::from(cpu.state.cf()))),
        Op::And | Op::Test => (FlagOp::Logic, dst & src),
        Op::Or => (FlagOp::Logic, dst | src),
        Op::Xor => (FlagOp::Logic, dst ^ src),
    };
    if !matches!(op, Op::Cmp | Op::Test) {
        write(cpu, i, 0, res & m)?;
    }
    cpu.state.lazy = LazyFlags::set(kind, size, dst, src, res);
    if op == Op::Adc && cpu.injection == Some(crate::cpu::Injection::AdcCarry) {
        // The deliberate bug: CF as if the carry-in had been 0.
        let cf = dst.wrapping_add(src) & m < dst & m;
        let f = cpu.state.eflags() & !fl::CF;
        cpu.state.set_arith(if cf { f | fl::CF } else { f });
    }
    Ok(())
}

macro_rules! binops {
    ($($name:ident => $op:ident),* $(,)?) => {$(
        #[doc = concat!("`", stringify!($name), "` in all its forms.")]
        pub fn $name(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
            binop(cpu, i, Op::$op)
        }
    )*};
}
binops!(add => Add, or => Or, adc => Adc, sbb => Sbb, and => And, sub => Sub, xor => Xor, cmp => Cmp, test => Test);

/// Keeps CF in `eflags` before INC/DEC overwrite the lazy state (they do not change CF).
#[inline]
fn pin_cf(cpu: &mut Cpu) {
    let cf = if cpu.state.cf() { fl::CF } else { 0 };
    cpu.state.eflags = (cpu.state.eflags & !fl::CF) | cf;
}

/// INC r/m and INC r16/r32.
pub fn inc(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let size = operand::osize(i);
    let dst = read(cpu, i, 0)?;
    let res = dst.wrapping_add(1);
    write(cpu, i, 0, res & size.mask())?;
    pin_cf(cpu);
    cpu.state.lazy = LazyFlags::set(FlagOp::Inc, size, dst, 1, res);
    Ok(())
}

/// DEC r/m and DEC r16/r32.
pub fn dec(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let size = operand::osize(i);
    let dst = read(cpu, i, 0)?;
    let res = dst.wrapping_sub(1);
    write(cpu, i, 0, res & size.mask())?;
    pin_cf(cpu);
    cpu.state.lazy = LazyFlags::set(FlagOp::Dec, size, dst, 1, res);
    Ok(())
}

/// NEG r/m: two's complement; CF = (operand != 0).
pub fn neg(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let size = operand::osize(i);
    let src = read(cpu, i, 0)?;
    let res = 0u32.wrapping_sub(src);
    write(cpu, i, 0, res & size.mask())?;
    cpu.state.lazy = LazyFlags::set(FlagOp::Sub, size, 0, src, res);
    Ok(())
}

/// NOT r/m: no flags.
pub fn not(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let size = operand::osize(i);
    let v = read(cpu, i, 0)?;
    write(cpu, i, 0, !v & size.mask())
}

/// XADD r/m, r: exchange and add. The order is the SDM's — SRC ← DEST, then DEST ← sum — so
/// `xadd eax, eax` leaves the sum in EAX.
pub fn xadd(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let size = operand::osize(i);
    let dst = read(cpu, i, 0)?;
    let src = read(cpu, i, 1)?;
    let res = dst.wrapping_add(src);
    check_write(cpu, i, 0)?;
    write(cpu, i, 1, dst)?;
    write(cpu, i, 0, res & size.mask())?;
    cpu.state.lazy = LazyFlags::set(FlagOp::Add, size, dst, src, res);
    Ok(())
}

/// CMPXCHG r/m, r: compare the accumulator with r/m; equal → r/m = r, else accumulator = r/m.
/// The destination is always written (with its old value on mismatch), as the SDM specifies.
pub fn cmpxchg(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let size = operand::osize(i);
    let dst = read(cpu, i, 0)?;
    let src = read(cpu, i, 1)?;
    let acc = cpu.state.regs[gpr::EAX] & size.mask();
    let res = acc.wrapping_sub(dst);
    if acc == dst {
        write(cpu, i, 0, src)?;
    } else {
        check_write(cpu, i, 0)?;
        write(cpu, i, 0, dst)?;
        match size {
            Size::B => cpu.state.set_reg8(0, dst as u8),
            Size::W => cpu.state.set_reg16(gpr::EAX, dst as u16),
            Size::D => cpu.state.regs[gpr::EAX] = dst,
        }
    }
    cpu.state.lazy = LazyFlags::set(FlagOp::Sub, size, acc, dst, res);
    Ok(())
}

/// CMPXCHG8B m64: compare EDX:EAX with m64; equal → m64 = ECX:EBX and ZF = 1, else
/// EDX:EAX = m64 and ZF = 0. Other flags are unchanged.
pub fn cmpxchg8b(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    if i.op0_kind() != OpKind::Memory {
        return Err(Exception::InvalidOpcode);
    }
    let seg = mem_seg(i);
    let off = ea(&cpu.state, i);
    let lo = cpu.read(seg, off, Size::D)?;
    let hi = cpu.read(seg, off.wrapping_add(4), Size::D)?;
    cpu.check_write(seg, off, Size::D)?;
    cpu.check_write(seg, off.wrapping_add(4), Size::D)?;
    let r = &cpu.state.regs;
    let equal = lo == r[gpr::EAX] && hi == r[gpr::EDX];
    let (new_lo, new_hi) = if equal { (r[gpr::EBX], r[gpr::ECX]) } else { (lo, hi) };
    cpu.write(seg, off, Size::D, new_lo)?;
    cpu.write(seg, off.wrapping_add(4), Size::D, new_hi)?;
    let mut f = cpu.state.eflags();
    if equal {
        f |= fl::ZF;
    } else {
        f &= !fl::ZF;
        cpu.state.regs[gpr::EAX] = lo;
        cpu.state.regs[gpr::EDX] = hi;
    }
    cpu.state.set_eflags(f);
    Ok(())
}
