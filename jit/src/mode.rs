//! The mode key: everything about the processor's mode that a translated block was specialised
//! for, so that a block is only ever entered in the mode it was made for.
//!
//! Follows Intel SDM Vol. 3A §3.4.5 (segment descriptors: type, present, D/B, expand-down),
//! §5.3 (limit checking) and §2.5 (CR0.PE, CR0.PG), Vol. 1 §3.6 (operand- and address-size
//! attributes from CS.D). A block is looked up by (guest physical address, EIP, mode id), where
//! the mode id interns a [`ModeKey`]:
//!
//! - code size (CS.D, and never in virtual-8086 mode), stack size (SS.B), CPL, CR0.PE, CR0.PG,
//!   EFLAGS.VM, the A20 gate: these change how instructions decode, which TLB rights an access
//!   needs, and whether a linear address is a physical one;
//! - CS base and limit: EIP values (branch targets, return addresses) are offsets in CS, and a
//!   block never runs past the limit;
//! - a [`SegClass`] for each segment register, which decides how the block's memory accesses
//!   through it are checked inline.
//!
//! The key is recomputed at every dispatch; translated code only chains to blocks of its own
//! key, and any instruction that can change the key (segment loads, far transfers, interrupts,
//! control-register writes: everything that is not innocuous) ends its block with a return to
//! the dispatcher.

use emu_core::state::{CpuState, SegReg, Segment};

/// How the translator accesses memory through one segment register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SegClass {
    /// Base 0, limit 4 GiB, expand-up, readable and writable: the offset is the linear address
    /// and no check can fail, so none is made.
    Flat = 0,
    /// Expand-up, readable and writable: the limit is checked inline against the descriptor
    /// cache and the base added from it (both read at run time).
    Simple = 1,
    /// Anything else (expand-down, read-only, code, not present, null): every access takes the
    /// slow path, where emu-core makes every check.
    Slow = 2,
}

impl SegClass {
    fn of(s: &CpuState, seg: &Segment) -> SegClass {
        let expand_down = seg.attrs & (Segment::ATTR_S | Segment::ATTR_CODE | Segment::ATTR_DC)
            == (Segment::ATTR_S | Segment::ATTR_DC);
        if expand_down {
            return SegClass::Slow;
        }
        if s.protected() && !s.v86() {
            let need = Segment::ATTR_P | Segment::ATTR_S | Segment::ATTR_RW;
            if seg.attrs & need != need || seg.attrs & Segment::ATTR_CODE != 0 {
                return SegClass::Slow;
            }
        }
        if seg.base == 0 && seg.limit == u32::MAX {
            SegClass::Flat
        } else {
            SegClass::Simple
        }
    }

    fn from_bits(b: u32) -> SegClass {
        match b & 3 {
            0 => SegClass::Flat,
            1 => SegClass::Simple,
            _ => SegClass::Slow,
        }
    }
}

/// Bits of [`ModeKey::bits`].
mod bit {
    pub const CODE32: u32 = 1 << 0;
    pub const STACK32: u32 = 1 << 1;
    pub const CPL_SHIFT: u32 = 2;
    pub const PROTECTED: u32 = 1 << 4;
    pub const PAGING: u32 = 1 << 5;
    pub const V86: u32 = 1 << 6;
    pub const A20: u32 = 1 << 7;
    pub const SEG_SHIFT: u32 = 8;
}

/// The processor mode a block is translated for (see the module header).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ModeKey {
    /// CS base.
    pub cs_base: u32,
    /// CS limit (byte-granular).
    pub cs_limit: u32,
    /// Code size, stack size, CPL, PE, PG, VM and the segment classes.
    pub bits: u32,
}

impl ModeKey {
    /// The key of the processor's current mode.
    pub fn of(s: &CpuState) -> ModeKey {
        let mut bits = 0;
        if s.code32() {
            bits |= bit::CODE32;
        }
        if s.stack32() {
            bits |= bit::STACK32;
        }
        bits |= u32::from(s.cpl & 3) << bit::CPL_SHIFT;
        if s.protected() {
            bits |= bit::PROTECTED;
        }
        if s.cr[0] & emu_core::state::cr0::PG != 0 {
            bits |= bit::PAGING;
        }
        if s.v86() {
            bits |= bit::V86;
        }
        if s.a20 {
            bits |= bit::A20;
        }
        for seg in SegReg::ALL {
            bits |= (SegClass::of(s, s.seg(seg)) as u32) << (bit::SEG_SHIFT + 2 * seg as u32);
        }
        let cs = s.seg(SegReg::Cs);
        ModeKey { cs_base: cs.base, cs_limit: cs.limit, bits }
    }

    /// Instructions decode with 32-bit defaults.
    pub fn code32(&self) -> bool {
        self.bits & bit::CODE32 != 0
    }

    /// The stack pointer is ESP (else SP).
    pub fn stack32(&self) -> bool {
        self.bits & bit::STACK32 != 0
    }

    /// The current privilege level.
    pub fn cpl(&self) -> u8 {
        ((self.bits >> bit::CPL_SHIFT) & 3) as u8
    }

    /// Memory accesses are user-level (CPL 3) for paging.
    pub fn user(&self) -> bool {
        self.cpl() == 3
    }

    /// Paging is on.
    pub fn paging(&self) -> bool {
        self.bits & bit::PAGING != 0
    }

    /// Linear addresses are physical addresses (paging off, A20 on): reads of RAM need no TLB.
    pub fn identity(&self) -> bool {
        self.bits & (bit::PAGING | bit::A20) == bit::A20
    }

    /// How accesses through `seg` are made.
    pub fn seg_class(&self, seg: SegReg) -> SegClass {
        SegClass::from_bits(self.bits >> (bit::SEG_SHIFT + 2 * seg as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emu_core::state::cr0;

    #[test]
    fn real_mode_after_reset_is_sixteen_bit_with_simple_segments() {
        let s = CpuState::reset();
        let k = ModeKey::of(&s);
        assert!(!k.code32() && !k.stack32() && !k.paging());
        assert_eq!(k.cpl(), 0);
        assert_eq!((k.cs_base, k.cs_limit), (0xFFFF_0000, 0xFFFF));
        for seg in SegReg::ALL {
            assert_eq!(k.seg_class(seg), SegClass::Simple, "{seg:?}");
        }
    }

    #[test]
    fn flat_protected_mode_segments_are_flat_and_code_is_slow() {
        let mut s = CpuState::reset();
        s.cr[0] |= cr0::PE;
        let data = Segment { selector: 0x10, attrs: 0xC093, base: 0, limit: u32::MAX };
        let code = Segment { selector: 0x08, attrs: 0xC09B, base: 0, limit: u32::MAX };
        for seg in SegReg::ALL {
            *s.seg_mut(seg) = data;
        }
        *s.seg_mut(SegReg::Cs) = code;
        let k = ModeKey::of(&s);
        assert!(k.code32() && k.stack32());
        assert_eq!(k.seg_class(SegReg::Ds), SegClass::Flat);
        assert_eq!(k.seg_class(SegReg::Cs), SegClass::Slow, "code segments are read through the slow path");
        // Expand-down and read-only data are slow; a based segment is simple.
        s.seg_mut(SegReg::Es).attrs = 0xC097;
        s.seg_mut(SegReg::Fs).attrs = 0xC091;
        s.seg_mut(SegReg::Gs).base = 0x1000;
        let k = ModeKey::of(&s);
        assert_eq!(k.seg_class(SegReg::Es), SegClass::Slow);
        assert_eq!(k.seg_class(SegReg::Fs), SegClass::Slow);
        assert_eq!(k.seg_class(SegReg::Gs), SegClass::Simple);
    }
}
