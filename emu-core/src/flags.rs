//! Lazy arithmetic flags: the last flag-producing operation is remembered with its operands and
//! CF PF AF ZF SF OF are computed only when something reads them.
//!
//! Definitions follow Intel SDM Vol. 1 §3.4.3.1 and Appendix A (EFLAGS cross-reference). Where
//! the SDM calls a flag *undefined*, bt86 makes one fixed choice, recorded next to the producer
//! that makes it, and checked against silicon-captured vectors (`bt86 conformance sst`).
//!
//! Encoding: `op` is a [`FlagOp`] times 4 plus the operand size index (0 = 8, 1 = 16, 2 = 32
//! bits), so the translator can store one constant. `Eager` means the arithmetic bits of
//! `CpuState::eflags` are authoritative. INC and DEC keep CF: they store it in `eflags` first and
//! their `op` takes CF from there.

use crate::state::fl;

/// The kinds of flag-producing operations kept lazily.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum FlagOp {
    /// The flags were computed eagerly and live in `eflags`.
    Eager = 0,
    /// ADD/ADC/XADD (carry in, if any, folded into `res`).
    Add = 1,
    /// SUB/SBB/CMP/NEG/CMPXCHG (`res = dst - src - borrow`).
    Sub = 2,
    /// AND/OR/XOR/TEST: CF = OF = 0, AF = 0 (undefined; bt86 clears it as P6 does).
    Logic = 3,
    /// INC: like ADD with src = 1, CF taken from `eflags`.
    Inc = 4,
    /// DEC: like SUB with src = 1, CF taken from `eflags`.
    Dec = 5,
    /// SHL/SAL by `src` (1–31) of `dst`: CF is the last bit shifted out, OF = MSB(res) XOR CF,
    /// AF = 0 (isa/shift.rs).
    Shl = 6,
    /// SHR by `src` (1–31) of `dst`: CF is the last bit shifted out, OF = the XOR of the two top
    /// bits of the result, AF = 0.
    Shr = 7,
    /// SAR by `src` (1–31) of `dst`: CF is the last bit shifted out, OF = 0, AF = 0.
    Sar = 8,
    /// MUL/IMUL: CF = OF = `src` (1 when the product overflowed the low half), SZP from `res`
    /// (the low half), AF = 0 (isa/muldiv.rs).
    Mul = 9,
}

/// Operand size of a flag-producing operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// 8 bits.
    B = 0,
    /// 16 bits.
    W = 1,
    /// 32 bits.
    D = 2,
}

impl Size {
    /// From a byte count (1, 2 or 4).
    #[inline]
    pub fn from_bytes(n: usize) -> Size {
        match n {
            1 => Size::B,
            2 => Size::W,
            _ => Size::D,
        }
    }

    /// Size in bytes.
    #[inline]
    pub fn bytes(self) -> usize {
        1 << (self as usize)
    }

    /// Size in bits.
    #[inline]
    pub fn bits(self) -> u32 {
        8 << (self as u32)
    }

    /// All-ones of this size.
    #[inline]
    pub fn mask(self) -> u32 {
        match self {
            Size::B => 0xFF,
            Size::W => 0xFFFF,
            Size::D => 0xFFFF_FFFF,
        }
    }

    /// The sign bit of this size.
    #[inline]
    pub fn sign(self) -> u32 {
        1 << (self.bits() - 1)
    }

    /// Sign-extends a value of this size to 32 bits.
    #[inline]
    pub fn sext(self, v: u32) -> u32 {
        match self {
            Size::B => i32::from(v as u8 as i8) as u32,
            Size::W => i32::from(v as u16 as i16) as u32,
            Size::D => v,
        }
    }
}

/// The remembered operation (16 bytes, `#[repr(C)]`: the translator writes it directly).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct LazyFlags {
    /// `FlagOp as u32 * 4 + Size as u32`.
    pub op: u32,
    /// The result, masked to the operand size.
    pub res: u32,
    /// The source operand.
    pub src: u32,
    /// The destination operand before the operation.
    pub dst: u32,
}

/// Parity flag of the low byte: set when it has an even number of ones.
#[inline]
pub fn parity(v: u32) -> u32 {
    if (v as u8).count_ones() % 2 == 0 {
        fl::PF
    } else {
        0
    }
}

/// ZF, SF and PF of a result of the given size.
#[inline]
pub fn szp(res: u32, size: Size) -> u32 {
    let res = res & size.mask();
    let mut f = parity(res);
    if res == 0 {
        f |= fl::ZF;
    }
    if res & size.sign() != 0 {
        f |= fl::SF;
    }
    f
}

impl LazyFlags {
    /// Records an operation.
    #[inline]
    pub fn set(op: FlagOp, size: Size, dst: u32, src: u32, res: u32) -> LazyFlags {
        LazyFlags { op: (op as u32) << 2 | size as u32, res: res & size.mask(), src, dst }
    }

    fn size(&self) -> Size {
        match self.op & 3 {
            0 => Size::B,
            1 => Size::W,
            _ => Size::D,
        }
    }

    fn kind(&self) -> u32 {
        self.op >> 2
    }

    /// CF alone.
    #[inline]
    pub fn cf(&self, eflags: u32) -> bool {
        let size = self.size();
        let top = size.bits() - 1;
        match self.kind() {
            k if k == FlagOp::Add as u32 => {
                let (d, s, r) = (self.dst, self.src, self.res);
                (((d & s) | ((d | s) & !r)) >> top) & 1 != 0
            }
            k if k == FlagOp::Sub as u32 => {
                let (d, s, r) = (self.dst, self.src, self.res);
                (((!d & s) | (!(d ^ s) & r)) >> top) & 1 != 0
            }
            k if k == FlagOp::Logic as u32 => false,
            k if k == FlagOp::Shl as u32 => {
                let wide = u64::from(self.dst & size.mask()) << (self.src & 0x1F);
                (wide >> size.bits()) & 1 != 0
            }
            k if k == FlagOp::Shr as u32 => {
                (u64::from(self.dst & size.mask()) >> ((self.src & 0x1F).max(1) - 1)) & 1 != 0
            }
            k if k == FlagOp::Sar as u32 => {
                let s = size.sext(self.dst) as i32;
                (s >> ((self.src & 0x1F).max(1) - 1).min(31)) & 1 != 0
            }
            k if k == FlagOp::Mul as u32 => self.src & 1 != 0,
            _ => eflags & fl::CF != 0,
        }
    }

    /// The six arithmetic flags as EFLAGS bits (`eflags` supplies them when eager).
    #[inline]
    pub fn arith_flags(&self, eflags: u32) -> u32 {
        let size = self.size();
        let top = size.bits() - 1;
        let (d, s, r) = (self.dst, self.src, self.res);
        let kind = self.kind();
        if kind == FlagOp::Eager as u32 {
            return eflags & fl::ARITH;
        }
        let mut f = szp(r, size);
        if self.cf(eflags) {
            f |= fl::CF;
        }
        match kind {
            k if k == FlagOp::Add as u32 || k == FlagOp::Inc as u32 => {
                f |= (d ^ s ^ r) & fl::AF;
                if ((d ^ r) & (s ^ r)) >> top & 1 != 0 {
                    f |= fl::OF;
                }
            }
            k if k == FlagOp::Sub as u32 || k == FlagOp::Dec as u32 => {
                f |= (d ^ s ^ r) & fl::AF;
                if ((d ^ s) & (d ^ r)) >> top & 1 != 0 {
                    f |= fl::OF;
                }
            }
            k if k == FlagOp::Shl as u32 && ((r >> top) & 1 != 0) != (f & fl::CF != 0) => f |= fl::OF,
            k if k == FlagOp::Shr as u32 && (r >> top) & 1 != (r >> (top - 1)) & 1 => f |= fl::OF,
            k if k == FlagOp::Mul as u32 && s & 1 != 0 => f |= fl::OF,
            _ => {}
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(op: FlagOp, size: Size, d: u32, s: u32, r: u32) -> u32 {
        LazyFlags::set(op, size, d, s, r).arith_flags(0)
    }

    #[test]
    fn add_carry_and_overflow() {
        // 0x7F + 1 = 0x80: OF, SF, AF, no CF.
        assert_eq!(flags(FlagOp::Add, Size::B, 0x7F, 1, 0x80), fl::OF | fl::SF | fl::AF);
        // 0xFF + 1 = 0x00: CF, ZF, PF, AF.
        assert_eq!(flags(FlagOp::Add, Size::B, 0xFF, 1, 0x100), fl::CF | fl::ZF | fl::PF | fl::AF);
        // 32-bit: 0xFFFFFFFF + 0xFFFFFFFF = 0xFFFFFFFE with carry.
        let f = flags(FlagOp::Add, Size::D, u32::MAX, u32::MAX, 0xFFFF_FFFE);
        assert_eq!(f & (fl::CF | fl::OF | fl::SF), fl::CF | fl::SF);
    }

    #[test]
    fn adc_with_carry_in_that_wraps_exactly() {
        // 0xFF + 0xFF + 1 = 0x1FF: result 0xFF equals dst, carry out set.
        assert_eq!(flags(FlagOp::Add, Size::B, 0xFF, 0xFF, 0x1FF) & fl::CF, fl::CF);
        // 0 + 0xFF + 1 = 0x100: result 0 with carry.
        assert_eq!(flags(FlagOp::Add, Size::B, 0, 0xFF, 0x100) & (fl::CF | fl::ZF), fl::CF | fl::ZF);
    }

    #[test]
    fn sub_borrow_and_overflow() {
        // 0 - 1 = 0xFF: CF, SF, AF.
        assert_eq!(flags(FlagOp::Sub, Size::B, 0, 1, 0xFF), fl::CF | fl::SF | fl::AF | fl::PF);
        // 0x80 - 1 = 0x7F: OF, AF.
        assert_eq!(flags(FlagOp::Sub, Size::B, 0x80, 1, 0x7F), fl::OF | fl::AF);
        // sbb 0 - 0xFF - 1 = 0: borrow out set.
        assert_eq!(flags(FlagOp::Sub, Size::B, 0, 0xFF, 0) & fl::CF, fl::CF);
    }

    #[test]
    fn lazy_shifts_and_multiplies_match_the_eager_choices() {
        // SHL 0x81 by 1 (8-bit): CF = 1, result 0x02, OF = MSB(res) ^ CF = 1.
        assert_eq!(flags(FlagOp::Shl, Size::B, 0x81, 1, 0x02), fl::CF | fl::OF);
        // SHR 0x8000_0001 by 1: CF = 1, result 0x4000_0000, OF = top two bits differ = 1.
        assert_eq!(flags(FlagOp::Shr, Size::D, 0x8000_0001, 1, 0x4000_0000), fl::CF | fl::OF | fl::PF);
        // SHR 0xF0 by 4 (8-bit): CF = bit 3 = 0, result 0x0F: OF from bits 7 and 6 = 0.
        assert_eq!(flags(FlagOp::Shr, Size::B, 0xF0, 4, 0x0F), fl::PF);
        // SAR 0x8000 by 15 (16-bit): result 0xFFFF, CF = bit 14 of the sign-extended value = 0.
        assert_eq!(flags(FlagOp::Sar, Size::W, 0x8000, 15, 0xFFFF), fl::SF | fl::PF);
        // SAR 0xC0 by 7: result 0xFF, CF = bit 6 = 1, OF = 0.
        assert_eq!(flags(FlagOp::Sar, Size::B, 0xC0, 7, 0xFF), fl::CF | fl::SF | fl::PF);
        // MUL overflow: CF = OF = 1, SZP of the low half.
        assert_eq!(flags(FlagOp::Mul, Size::D, 0, 1, 0), fl::CF | fl::OF | fl::ZF | fl::PF);
        assert_eq!(flags(FlagOp::Mul, Size::W, 0, 0, 0x8001), fl::SF);
    }

    #[test]
    fn inc_dec_keep_carry_from_eflags() {
        let l = LazyFlags::set(FlagOp::Inc, Size::W, 0xFFFF, 1, 0);
        assert_eq!(l.arith_flags(fl::CF) & fl::CF, fl::CF);
        assert_eq!(l.arith_flags(0) & fl::CF, 0);
        assert_eq!(l.arith_flags(0) & fl::ZF, fl::ZF);
    }
}
