//! The x87 floating-point unit: its registers and the machinery its instructions share (Intel
//! SDM Vol. 1 chapter 8 "Programming with the x87 FPU"; Vol. 3A §2.5 for CR0.MP/EM/TS/NE,
//! §6.15 for #NM and #MF, §9.1 Table 9-1 for the state after RESET and FINIT).
//!
//! - [`float80`]: the 80-bit format, its classes and the single rounding step;
//! - [`arith`]: exact arithmetic, comparison, FPREM/FPREM1, FRNDINT, FSCALE, FXTRACT;
//! - [`transcendental`]: FSIN, FCOS, FSINCOS, FPTAN, FPATAN, F2XM1, FYL2X, FYL2XP1,
//!   computed in 128-bit fixed point and rounded once;
//! - [`env`]: the FSTENV/FLDENV and FSAVE/FRSTOR memory images.
//!
//! The instructions themselves are in `isa/x87.rs`. The state is what a P6 keeps: eight
//! physical registers, TOP, control, status and tag words (the tag word as one "empty" bit per
//! register: P6 processors recompute the other tag values from the contents), and the last
//! instruction and data pointers with the last opcode (FIP/FCS/FOP, FDP/FDS; SDM §8.1.8).
//!
//! Deviations from a P6, on purpose:
//! - With CR0.NE = 0 an unmasked exception asserts FERR# at the next waiting instruction and
//!   that instruction goes on (as QEMU does); the P6 instead stops before it until the IRQ 13
//!   handler has run or IGNNE# is asserted (SDM Vol. 1 Appendix D). The guest-visible effect
//!   is only where the interrupt lands.
//! - FRSTPM (DB E5, 80287XL only) is #UD, like every reserved x87 encoding bt86 rejects.

pub mod arith;
pub mod env;
pub mod float80;
pub mod transcendental;

use float80::{exc, Class, F80};

/// Status word bits (SDM Vol. 1 §8.1.3, Figure 8-4).
pub mod sw {
    /// Exception summary status.
    pub const ES: u16 = 1 << 7;
    /// Condition code C0.
    pub const C0: u16 = 1 << 8;
    /// Condition code C1.
    pub const C1: u16 = 1 << 9;
    /// Condition code C2.
    pub const C2: u16 = 1 << 10;
    /// TOP, bits 11–13.
    pub const TOP_SHIFT: u16 = 11;
    /// The TOP field.
    pub const TOP: u16 = 7 << TOP_SHIFT;
    /// Condition code C3.
    pub const C3: u16 = 1 << 14;
    /// FPU busy (mirrors ES on the 387 and later).
    pub const B: u16 = 1 << 15;
    /// All four condition codes.
    pub const CC: u16 = C0 | C1 | C2 | C3;
}

/// Control word bits (SDM Vol. 1 §8.1.5, Figure 8-6).
pub mod cw {
    /// The exception masks, bits 0–5.
    pub const MASKS: u16 = 0x3F;
    /// Bit 6 is reserved and reads as 1.
    pub const RESERVED1: u16 = 1 << 6;
    /// Bits software can write: masks, precision control (8–9), rounding control (10–11)
    /// and the infinity control bit (12, kept but without effect since the 387).
    pub const WRITABLE: u16 = MASKS | 0x1F00;
    /// Value after FINIT/FNINIT: all exceptions masked, 64-bit precision, round to nearest.
    pub const INIT: u16 = 0x037F;
    /// Value after RESET (SDM Vol. 3A Table 9-1).
    pub const RESET: u16 = 0x0040;
}

/// Tag values (SDM Vol. 1 §8.1.7).
pub mod tag {
    /// Valid (a normal finite number).
    pub const VALID: u16 = 0;
    /// Zero.
    pub const ZERO: u16 = 1;
    /// Special: NaN, infinity, denormal or unsupported.
    pub const SPECIAL: u16 = 2;
    /// Empty.
    pub const EMPTY: u16 = 3;
}

/// The x87 FPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fpu {
    /// The physical registers R0–R7 (ST(i) is R((TOP + i) mod 8)).
    regs: [F80; 8],
    /// Top-of-stack pointer.
    top: u8,
    /// Bit n set: Rn is empty.
    empty: u8,
    /// Control word.
    pub cw: u16,
    /// Status word without TOP (kept in `top`).
    sw: u16,
    /// Last instruction pointer (offset; a 20-bit linear address after a real-mode FLDENV).
    pub fip: u32,
    /// Last instruction's CS selector.
    pub fcs: u16,
    /// Last opcode: low three bits of the first opcode byte and the ModR/M byte (11 bits).
    pub fop: u16,
    /// Last data pointer (offset).
    pub fdp: u32,
    /// Last data pointer's segment selector.
    pub fds: u16,
    /// FERR# is asserted (CR0.NE = 0 reporting; see the module header).
    ferr: bool,
}

impl Default for Fpu {
    fn default() -> Fpu {
        Fpu::reset()
    }
}

impl Fpu {
    /// The state after RESET: control word 0040h, every register +0.0 and tagged zero
    /// (SDM Vol. 3A Table 9-1).
    pub fn reset() -> Fpu {
        Fpu {
            regs: [F80::ZERO; 8],
            top: 0,
            empty: 0,
            cw: cw::RESET,
            sw: 0,
            fip: 0,
            fcs: 0,
            fop: 0,
            fdp: 0,
            fds: 0,
            ferr: false,
        }
    }

    /// FNINIT: default control word, status cleared, every register empty, pointers cleared;
    /// the register contents stay.
    pub fn init(&mut self) {
        self.cw = cw::INIT;
        self.sw = 0;
        self.top = 0;
        self.empty = 0xFF;
        self.fip = 0;
        self.fcs = 0;
        self.fop = 0;
        self.fdp = 0;
        self.fds = 0;
        self.ferr = false;
    }

    /// The status word with TOP.
    pub fn status(&self) -> u16 {
        (self.sw & !sw::TOP) | (u16::from(self.top) << sw::TOP_SHIFT)
    }

    /// Replaces the status word (TOP included). ES and B are recomputed from the exception
    /// flags and the masks, as a P6 does after FLDENV and FRSTOR.
    pub fn set_status(&mut self, v: u16) {
        self.top = ((v & sw::TOP) >> sw::TOP_SHIFT) as u8;
        self.sw = v & !sw::TOP;
        self.update_summary();
    }

    /// Replaces the control word (reserved bits as the hardware keeps them); ES and B follow.
    pub fn set_control(&mut self, v: u16) {
        self.cw = (v & cw::WRITABLE) | cw::RESERVED1;
        self.update_summary();
    }

    /// ES (and B) set exactly when an exception flag is set whose mask is clear; FERR# drops
    /// with ES.
    fn update_summary(&mut self) {
        if self.sw & !self.cw & exc::ALL != 0 {
            self.sw |= sw::ES | sw::B;
        } else {
            self.sw &= !(sw::ES | sw::B);
            self.ferr = false;
        }
    }

    /// Clears the exception flags, SF, ES and B (FNCLEX).
    pub fn clear_exceptions(&mut self) {
        self.sw &= !(exc::ALL | exc::SF | sw::ES | sw::B);
        self.ferr = false;
    }

    /// An unmasked exception is pending (ES).
    pub fn pending(&self) -> bool {
        self.sw & sw::ES != 0
    }

    /// FERR#: an unmasked exception was found pending by a waiting instruction while CR0.NE
    /// was clear, and FNCLEX/FNINIT (or a load of a clean status) has not cleared it. A PC
    /// routes it to IRQ 13.
    pub fn ferr(&self) -> bool {
        self.ferr
    }

    /// Asserts FERR# (a waiting instruction found an exception pending with CR0.NE clear).
    pub fn assert_ferr(&mut self) {
        self.ferr = true;
    }

    /// Raises exception flags: sets them in the status word, and ES and B when one of them is
    /// unmasked.
    pub fn raise(&mut self, flags: u16) {
        self.sw |= flags & (exc::ALL | exc::SF);
        if flags & !self.cw & exc::ALL != 0 {
            self.sw |= sw::ES | sw::B;
        }
    }

    /// Sets the condition codes in `mask` to `bits`.
    pub fn set_cc(&mut self, mask: u16, bits: u16) {
        self.sw = (self.sw & !mask) | (bits & mask);
    }

    /// The C1 condition code.
    pub fn c1(&self) -> bool {
        self.sw & sw::C1 != 0
    }

    /// TOP.
    pub fn top(&self) -> u8 {
        self.top
    }

    /// The physical register number of ST(i).
    pub fn phys(&self, i: u8) -> usize {
        usize::from((self.top + i) & 7)
    }

    /// ST(i) is empty.
    pub fn is_empty(&self, i: u8) -> bool {
        self.empty & (1 << self.phys(i)) != 0
    }

    /// ST(i) (whatever it holds, empty or not).
    pub fn st(&self, i: u8) -> F80 {
        self.regs[self.phys(i)]
    }

    /// Writes ST(i) and tags it non-empty.
    pub fn set_st(&mut self, i: u8, v: F80) {
        let p = self.phys(i);
        self.regs[p] = v;
        self.empty &= !(1 << p);
    }

    /// Physical register n (for FSAVE images and debuggers).
    pub fn reg(&self, n: usize) -> F80 {
        self.regs[n & 7]
    }

    /// Writes physical register n without changing its tag.
    pub fn set_reg(&mut self, n: usize, v: F80) {
        self.regs[n & 7] = v;
    }

    /// Tags ST(i) empty (FFREE).
    pub fn free(&mut self, i: u8) {
        let p = self.phys(i);
        self.empty |= 1 << p;
    }

    /// Marks ST(0) empty and increments TOP.
    pub fn pop(&mut self) {
        self.free(0);
        self.top = (self.top + 1) & 7;
    }

    /// Decrements TOP and writes the new ST(0). The caller has checked for overflow.
    pub fn push(&mut self, v: F80) {
        self.top = (self.top + 7) & 7;
        self.set_st(0, v);
    }

    /// Increments TOP without touching tags (FINCSTP).
    pub fn inc_top(&mut self) {
        self.top = (self.top + 1) & 7;
    }

    /// Decrements TOP without touching tags (FDECSTP).
    pub fn dec_top(&mut self) {
        self.top = (self.top + 7) & 7;
    }

    /// The full tag word (two bits per physical register, computed from the contents).
    pub fn tag_word(&self) -> u16 {
        let mut tw = 0;
        for (n, v) in self.regs.iter().enumerate() {
            let t = if self.empty & (1 << n) != 0 {
                tag::EMPTY
            } else {
                match v.class() {
                    Class::Zero => tag::ZERO,
                    Class::Normal => tag::VALID,
                    _ => tag::SPECIAL,
                }
            };
            tw |= t << (2 * n);
        }
        tw
    }

    /// Loads the tag word: a register is empty when its tag is 11b; the other tag values are
    /// recomputed from the contents whenever the tag word is read.
    pub fn set_tag_word(&mut self, tw: u16) {
        let mut empty = 0u8;
        for n in 0..8 {
            if (tw >> (2 * n)) & 3 == tag::EMPTY {
                empty |= 1 << n;
            }
        }
        self.empty = empty;
    }

    /// Stack overflow on a push: IE and SF with C1 = 1 (SDM Vol. 1 §8.5.1.1). Returns true
    /// when the masked response (pushing the indefinite) applies.
    pub fn stack_overflow(&mut self) -> bool {
        self.raise(exc::IE | exc::SF);
        self.set_cc(sw::C1, sw::C1);
        self.cw & exc::IE != 0
    }

    /// Stack underflow (an empty register read): IE and SF with C1 = 0. Returns true when the
    /// masked response applies.
    pub fn stack_underflow(&mut self) -> bool {
        self.raise(exc::IE | exc::SF);
        self.set_cc(sw::C1, 0);
        self.cw & exc::IE != 0
    }
}

#[cfg(test)]
mod tests {
    use super::arith::{self, Env};
    use super::float80::{self, Format, Rc, F80};
    use super::transcendental as t;

    /// Random register images biased toward the interesting exponents and significands.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn f80(&mut self) -> F80 {
            let r = self.next();
            let exp = match r % 8 {
                0 => 0,
                1 => 0x7FFF,
                2 => 1,
                3 => 0x7FFE,
                4 => 0x3FFF + (r >> 8) as u16 % 130,
                _ => (r >> 16) as u16 & 0x7FFF,
            };
            let sig = match (r >> 3) % 6 {
                0 => 0,
                1 => 1 << 63,
                2 => self.next() >> 1,
                3 => (1 << 63) | (1 << 62),
                _ => self.next(),
            };
            F80::new(r & (1 << 40) != 0, exp, sig)
        }
    }

    /// Every operation on every kind of encoding, in every control-word setting: results are
    /// produced without panicking, and masked operations always deliver a value.
    #[test]
    fn random_operands_never_panic_and_masked_results_always_come() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for n in 0..40_000u32 {
            let cw = ((n % 4) << 10) as u16 | ((n / 4 % 4) << 8) as u16 | if n % 7 == 0 { 0 } else { 0x3F };
            let env = Env::from_cw(cw);
            let masked = cw & 0x3F == 0x3F;
            let (a, b) = (rng.f80(), rng.f80());
            let outs = [
                arith::add(a, b, n % 2 == 0, env),
                arith::mul(a, b, env),
                arith::div(a, b, env),
                arith::sqrt(a, env),
                arith::round_int(a, env),
                arith::scale(a, b, env),
                arith::rem(a, b, n % 3 == 0, env).out,
                t::fpatan(a, b, env),
                t::fyl2x(a, b, env),
                t::fyl2xp1(a, b, env),
            ];
            for o in outs {
                assert!(!masked || o.val.is_some(), "{a:?} {b:?} {cw:#x}");
            }
            let _ = arith::compare(a, b, n % 2 == 0, env);
            let _ = arith::xtract(a, env);
            for tr in
                [t::fsin(a, env), t::fcos(a, env), t::fsincos(a, env), t::fptan(a, env), t::f2xm1(a, env)]
            {
                assert!(!masked || tr.out_of_range || tr.st0.is_some(), "{a:?} {cw:#x}");
            }
            let _ = float80::to_int(a, Rc::from_bits(cw >> 10), 64);
            if matches!(a.class(), float80::Class::Normal | float80::Class::Denormal) {
                let (s, e, w) = float80::wide(a.unpack());
                let _ = float80::pack_f32(float80::round(s, e, w, Format::SINGLE, env.rc, 0));
                let _ = float80::pack_f64(float80::round(s, e, w, Format::DOUBLE, env.rc, 0x18));
            }
        }
    }
}
