//! The 80-bit double extended-precision format and the one rounding step every x87 result goes
//! through (Intel SDM Vol. 1 §4.2, §4.8 "Real Numbers and Floating-Point Formats", §8.2
//! "x87 FPU Data Types", §4.9 and §8.5 for the exceptions a rounding raises).
//!
//! An [`F80`] is the raw register image: sign and 15-bit biased exponent, and a 64-bit
//! significand with an *explicit* integer bit (bit 63). Every encoding is classified as a P6
//! classifies it ([`Class`]): pseudo-denormals (exponent 0, integer bit 1) are valid denormal
//! operands; unnormals, pseudo-NaNs and pseudo-infinities (integer bit 0 with a non-zero
//! exponent) are *unsupported* and raise the invalid-operation exception (SDM Vol. 1 §8.2.2,
//! Table 8-3).
//!
//! [`round`] takes an exact result (a 128-bit significand: 64 bits and 64 bits of guard/sticky,
//! and an unbounded exponent) and rounds it once to a target [`Format`] — the register format
//! at 24-, 53- or 64-bit precision (precision control keeps the 15-bit exponent range, SDM Vol.
//! 1 §8.1.5.2), or the single/double formats of memory stores — in any rounding mode, raising
//! overflow, underflow and precision as the SDM says. Tininess is detected after rounding, as
//! x86 processors do (the choice glibc's `sysdeps/x86/tininess.h` records for x87 hardware).

/// Status-word exception bits (SDM Vol. 1 §8.1.3.3), used as flag sets throughout the FPU.
pub mod exc {
    /// Invalid operation.
    pub const IE: u16 = 1 << 0;
    /// Denormal operand.
    pub const DE: u16 = 1 << 1;
    /// Zero divide.
    pub const ZE: u16 = 1 << 2;
    /// Overflow.
    pub const OE: u16 = 1 << 3;
    /// Underflow.
    pub const UE: u16 = 1 << 4;
    /// Precision (inexact result).
    pub const PE: u16 = 1 << 5;
    /// Stack fault (with IE).
    pub const SF: u16 = 1 << 6;
    /// All six exception flags.
    pub const ALL: u16 = 0x3F;
}

/// Exponent bias of the extended format.
pub const BIAS: i32 = 16383;
/// The all-ones exponent (infinities and NaNs).
pub const EXP_MAX: u16 = 0x7FFF;
/// Integer bit of the significand.
pub const INT_BIT: u64 = 1 << 63;
/// Most significant fraction bit: set in a quiet NaN.
pub const QUIET_BIT: u64 = 1 << 62;
/// Exponent adjustment applied to results of unmasked overflow and underflow (SDM Vol. 1
/// §4.9.1.4, §4.9.1.5: 24576 for the double extended format).
pub const WRAP_ADJUST: i32 = 24576;

/// An 80-bit register image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct F80 {
    /// Sign (bit 15) and biased exponent (bits 0–14).
    pub se: u16,
    /// Significand with its explicit integer bit.
    pub sig: u64,
}

/// What an encoding is, as a P6 sees it (SDM Vol. 1 Table 8-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// ±0.
    Zero,
    /// Exponent 0, integer bit 0 (true denormal) or 1 (pseudo-denormal).
    Denormal,
    /// A normalized finite number.
    Normal,
    /// ±∞.
    Infinity,
    /// Quiet NaN.
    QNaN,
    /// Signaling NaN.
    SNaN,
    /// Unnormal, pseudo-NaN or pseudo-infinity: an invalid operand.
    Unsupported,
}

impl F80 {
    /// +0.
    pub const ZERO: F80 = F80 { se: 0, sig: 0 };
    /// +1.
    pub const ONE: F80 = F80 { se: 0x3FFF, sig: INT_BIT };
    /// The real indefinite: the QNaN every masked invalid operation without a NaN operand
    /// returns (SDM Vol. 1 §4.8.3.7).
    pub const INDEFINITE: F80 = F80 { se: 0xFFFF, sig: 0xC000_0000_0000_0000 };

    /// Builds a value from its fields.
    pub const fn new(sign: bool, exp: u16, sig: u64) -> F80 {
        F80 { se: ((sign as u16) << 15) | (exp & EXP_MAX), sig }
    }

    /// ±∞.
    pub const fn infinity(sign: bool) -> F80 {
        F80::new(sign, EXP_MAX, INT_BIT)
    }

    /// ±0.
    pub const fn zero(sign: bool) -> F80 {
        F80::new(sign, 0, 0)
    }

    /// The sign bit.
    pub const fn sign(self) -> bool {
        self.se & 0x8000 != 0
    }

    /// The biased exponent.
    pub const fn exp(self) -> u16 {
        self.se & EXP_MAX
    }

    /// The same value with the sign `sign`.
    pub const fn with_sign(self, sign: bool) -> F80 {
        F80 { se: (self.se & EXP_MAX) | ((sign as u16) << 15), sig: self.sig }
    }

    /// Classifies the encoding.
    pub const fn class(self) -> Class {
        let e = self.exp();
        let int = self.sig & INT_BIT != 0;
        if e == 0 {
            if self.sig == 0 {
                Class::Zero
            } else {
                Class::Denormal
            }
        } else if !int {
            Class::Unsupported
        } else if e == EXP_MAX {
            if self.sig << 1 == 0 {
                Class::Infinity
            } else if self.sig & QUIET_BIT != 0 {
                Class::QNaN
            } else {
                Class::SNaN
            }
        } else {
            Class::Normal
        }
    }

    /// A NaN of either kind.
    pub const fn is_nan(self) -> bool {
        matches!(self.class(), Class::QNaN | Class::SNaN)
    }

    /// A NaN made quiet.
    pub const fn quiet(self) -> F80 {
        F80 { se: self.se, sig: self.sig | QUIET_BIT }
    }

    /// The ten bytes of the memory image, little-endian.
    pub fn to_bytes(self) -> [u8; 10] {
        let mut b = [0u8; 10];
        b[..8].copy_from_slice(&self.sig.to_le_bytes());
        b[8..].copy_from_slice(&self.se.to_le_bytes());
        b
    }

    /// From the ten bytes of a memory image.
    pub fn from_bytes(b: [u8; 10]) -> F80 {
        let mut sig = [0u8; 8];
        sig.copy_from_slice(&b[..8]);
        F80 { sig: u64::from_le_bytes(sig), se: u16::from_le_bytes([b[8], b[9]]) }
    }

    /// Unpacks a finite non-zero value (normal, denormal or pseudo-denormal) into a
    /// normalized significand and an unbounded biased exponent.
    pub fn unpack(self) -> Unpacked {
        let sign = self.sign();
        let e = i32::from(self.exp());
        if e == 0 {
            // Denormals and pseudo-denormals have the exponent of the smallest normal (1).
            let lz = self.sig.leading_zeros();
            return Unpacked { sign, exp: 1 - lz as i32, sig: self.sig << lz };
        }
        Unpacked { sign, exp: e, sig: self.sig }
    }
}

/// A finite non-zero value: `sig` (bit 63 set) × 2^(exp − BIAS − 63).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unpacked {
    /// Sign.
    pub sign: bool,
    /// Biased exponent, not limited to the format's range.
    pub exp: i32,
    /// Normalized significand.
    pub sig: u64,
}

/// Rounding control (control word bits 10–11, SDM Vol. 1 §4.8.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rc {
    /// Round to nearest, ties to even.
    Nearest,
    /// Round down, toward −∞.
    Down,
    /// Round up, toward +∞.
    Up,
    /// Round toward zero (truncate).
    Zero,
}

impl Rc {
    /// From the two RC bits.
    pub fn from_bits(b: u16) -> Rc {
        match b & 3 {
            0 => Rc::Nearest,
            1 => Rc::Down,
            2 => Rc::Up,
            _ => Rc::Zero,
        }
    }
}

/// A rounding target: significand precision and the exponent range (biased as in the extended
/// format).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Format {
    /// Significand bits kept (24, 53 or 64).
    pub prec: u32,
    /// Smallest normal biased exponent.
    pub emin: i32,
    /// Largest finite biased exponent.
    pub emax: i32,
}

impl Format {
    /// The register format at 64-bit precision.
    pub const EXTENDED: Format = Format { prec: 64, emin: 1, emax: 0x7FFE };
    /// Single precision (memory m32fp).
    pub const SINGLE: Format = Format { prec: 24, emin: BIAS - 126, emax: BIAS + 127 };
    /// Double precision (memory m64fp).
    pub const DOUBLE: Format = Format { prec: 53, emin: BIAS - 1022, emax: BIAS + 1023 };

    /// The register format under precision control `pc` (control word bits 8–9): 24, 53 or
    /// 64 bits with the full 15-bit exponent range. The reserved setting (01b) rounds to 64
    /// bits.
    pub fn register(pc: u16) -> Format {
        let prec = match pc & 3 {
            0 => 24,
            2 => 53,
            _ => 64,
        };
        Format { prec, ..Format::EXTENDED }
    }
}

/// The outcome of rounding: the value in unpacked form, and the exceptions raised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rounded {
    /// Sign.
    pub sign: bool,
    /// Biased exponent; for a denormal or zero result this is the format's `emin` and `sig`
    /// has its integer bit clear. Infinity: `emax + 1`.
    pub exp: i32,
    /// Significand, with the bits below the precision cleared.
    pub sig: u64,
    /// OE, UE and PE as raised.
    pub flags: u16,
    /// The magnitude was rounded up (the C1 condition code of an inexact result).
    pub up: bool,
}

impl Rounded {
    /// The result as a register value (exponent 0 for denormals and zero).
    pub fn to_f80(self) -> F80 {
        if self.sig & INT_BIT == 0 {
            F80::new(self.sign, 0, self.sig)
        } else {
            F80::new(self.sign, self.exp.clamp(0, i32::from(EXP_MAX)) as u16, self.sig)
        }
    }
}

/// Shifts a 128-bit value right by `n`, ORing every bit shifted out into bit 0 (sticky).
pub fn shr_jam(v: u128, n: u32) -> u128 {
    if n == 0 {
        v
    } else if n >= 128 {
        u128::from(v != 0)
    } else {
        (v >> n) | u128::from(v & ((1u128 << n) - 1) != 0)
    }
}

/// Rounds `sig:extra` (a 128-bit significand, `sig` normalized unless the value is zero) ×
/// 2^(exp − BIAS − 63) at the precision `prec` bits, unbounded exponent. Returns the
/// significand (as a u128 of `prec` bits shifted back to the top of 64), exponent, inexact,
/// rounded up.
fn round_bits(sign: bool, exp: i32, v: u128, prec: u32, rc: Rc) -> (u64, i32, bool, bool) {
    let k = 64 + (64 - prec); // bit position of the last kept bit, in v
    let rem = v & ((1u128 << k) - 1);
    let half = 1u128 << (k - 1);
    let kept = v >> k;
    let inc = match rc {
        Rc::Nearest => rem > half || (rem == half && kept & 1 == 1),
        Rc::Zero => false,
        Rc::Up => rem != 0 && !sign,
        Rc::Down => rem != 0 && sign,
    };
    let mut kept = kept + u128::from(inc);
    let mut exp = exp;
    if kept >> prec != 0 {
        kept >>= 1;
        exp += 1;
    }
    ((kept << (64 - prec)) as u64, exp, rem != 0, inc)
}

/// Rounds an exact result to `fmt` in rounding mode `rc` (SDM Vol. 1 §4.8.4, §4.9.1.4–6).
///
/// The value is `v` (a 128-bit significand whose bit 127 is set, or zero) × 2^(exp − BIAS −
/// 127). `unmasked` holds the OE/UE mask state inverted: an unmasked overflow or underflow
/// returns the rounded result with its exponent wrapped by [`WRAP_ADJUST`] (the register
/// response; stores to memory discard it).
pub fn round(sign: bool, exp: i32, v: u128, fmt: Format, rc: Rc, unmasked: u16) -> Rounded {
    if v == 0 {
        return Rounded { sign, exp: fmt.emin, sig: 0, flags: 0, up: false };
    }
    // Normalize (callers usually pass normalized values).
    let lz = v.leading_zeros();
    let v = v << lz;
    let exp = exp - lz as i32;
    let (sig, e, inexact, up) = round_bits(sign, exp, v, fmt.prec, rc);
    if e > fmt.emax {
        // Overflow (SDM Vol. 1 §4.9.1.4).
        if unmasked & exc::OE != 0 {
            let flags = exc::OE | if inexact { exc::PE } else { 0 };
            return Rounded { sign, exp: e - WRAP_ADJUST, sig, flags, up };
        }
        let to_inf = match rc {
            Rc::Nearest => true,
            Rc::Zero => false,
            Rc::Up => !sign,
            Rc::Down => sign,
        };
        let flags = exc::OE | exc::PE;
        return if to_inf {
            Rounded { sign, exp: fmt.emax + 1, sig: INT_BIT, flags, up: true }
        } else {
            let max = !0u64 << (64 - fmt.prec);
            Rounded { sign, exp: fmt.emax, sig: max, flags, up: false }
        };
    }
    // Tininess after rounding: the result rounded with an unbounded exponent is below the
    // smallest normal.
    let tiny = e < fmt.emin;
    if !tiny {
        let flags = if inexact { exc::PE } else { 0 };
        return Rounded { sign, exp: e, sig, flags, up };
    }
    if unmasked & exc::UE != 0 {
        let flags = exc::UE | if inexact { exc::PE } else { 0 };
        return Rounded { sign, exp: e + WRAP_ADJUST, sig, flags, up };
    }
    // Denormalize, then round at the same precision position.
    let shift = (fmt.emin - exp) as u32;
    let d = shr_jam(v, shift);
    let (dsig, de, dinexact, dup) = round_bits(sign, fmt.emin, d, fmt.prec, rc);
    // Rounding a denormal up may carry into the integer bit: the smallest normal.
    let (dsig, de) = if de > fmt.emin { (INT_BIT, fmt.emin) } else { (dsig, de) };
    let mut flags = 0;
    if dinexact {
        flags |= exc::UE | exc::PE;
    }
    Rounded { sign, exp: de, sig: dsig, flags, up: dup }
}

/// A finite non-zero unpacked value as the 128-bit form [`round`] takes.
pub fn wide(u: Unpacked) -> (bool, i32, u128) {
    (u.sign, u.exp, u128::from(u.sig) << 64)
}

// ---------------------------------------------------------------------------------------------
// Memory formats: single and double precision (SDM Vol. 1 §4.2.2, Table 4-3).

/// Single precision bits → extended (exact). Returns the value and DE if it was a denormal;
/// a signaling NaN is returned as is (the caller raises IE and quiets it).
pub fn from_f32_bits(b: u32) -> (F80, u16) {
    let sign = b >> 31 != 0;
    let e = (b >> 23) & 0xFF;
    let frac = u64::from(b & 0x7F_FFFF);
    match e {
        0 if frac == 0 => (F80::zero(sign), 0),
        0 => {
            // Denormal: value = frac × 2^-149.
            let lz = frac.leading_zeros();
            let sig = frac << lz;
            // frac × 2^-149 = sig × 2^(-149 - lz); sig × 2^(E − BIAS − 63) → E = BIAS − 86 − lz.
            let exp = BIAS - 86 - lz as i32;
            (F80::new(sign, exp as u16, sig), exc::DE)
        }
        0xFF => (F80::new(sign, EXP_MAX, INT_BIT | (frac << 40)), 0),
        _ => (F80::new(sign, (e as i32 - 127 + BIAS) as u16, INT_BIT | (frac << 40)), 0),
    }
}

/// Double precision bits → extended (exact), as [`from_f32_bits`].
pub fn from_f64_bits(b: u64) -> (F80, u16) {
    let sign = b >> 63 != 0;
    let e = ((b >> 52) & 0x7FF) as i32;
    let frac = b & 0x000F_FFFF_FFFF_FFFF;
    match e {
        0 if frac == 0 => (F80::zero(sign), 0),
        0 => {
            // frac × 2^-1074 = sig × 2^(-1074 - lz) → E = BIAS − 1011 − lz.
            let lz = frac.leading_zeros();
            let exp = BIAS - 1011 - lz as i32;
            (F80::new(sign, exp as u16, frac << lz), exc::DE)
        }
        0x7FF => (F80::new(sign, EXP_MAX, INT_BIT | (frac << 11)), 0),
        _ => (F80::new(sign, (e - 1023 + BIAS) as u16, INT_BIT | (frac << 11)), 0),
    }
}

/// Packs a rounded single-precision result into its bits.
pub fn pack_f32(r: Rounded) -> u32 {
    let s = u32::from(r.sign) << 31;
    if r.sig & INT_BIT == 0 {
        return s | (r.sig >> 40) as u32;
    }
    if r.exp > Format::SINGLE.emax {
        return s | 0x7F80_0000;
    }
    let e = (r.exp - BIAS + 127) as u32;
    s | (e << 23) | ((r.sig >> 40) as u32 & 0x7F_FFFF)
}

/// Packs a rounded double-precision result into its bits.
pub fn pack_f64(r: Rounded) -> u64 {
    let s = u64::from(r.sign) << 63;
    if r.sig & INT_BIT == 0 {
        return s | (r.sig >> 11);
    }
    if r.exp > Format::DOUBLE.emax {
        return s | 0x7FF0_0000_0000_0000;
    }
    let e = (r.exp - BIAS + 1023) as u64;
    s | (e << 52) | ((r.sig >> 11) & 0x000F_FFFF_FFFF_FFFF)
}

/// A NaN as single-precision bits: the top fraction bits are kept (SDM Vol. 1 §4.8.3.5).
pub fn nan_to_f32(v: F80) -> u32 {
    (u32::from(v.sign()) << 31) | 0x7F80_0000 | ((v.sig >> 40) as u32 & 0x7F_FFFF)
}

/// A NaN as double-precision bits.
pub fn nan_to_f64(v: F80) -> u64 {
    (u64::from(v.sign()) << 63) | 0x7FF0_0000_0000_0000 | ((v.sig >> 11) & 0x000F_FFFF_FFFF_FFFF)
}

// ---------------------------------------------------------------------------------------------
// Integers (SDM Vol. 1 §4.2.1, §8.2.2 "Integer indefinite").

/// Converts a signed integer to extended (exact: 64 significand bits hold any i64).
pub fn from_i64(v: i64) -> F80 {
    if v == 0 {
        return F80::ZERO;
    }
    let mag = v.unsigned_abs();
    let lz = mag.leading_zeros();
    F80::new(v < 0, (BIAS + 63 - lz as i32) as u16, mag << lz)
}

/// Rounds a finite value to an integer magnitude in mode `rc`. Returns `None` when the
/// magnitude does not fit in 64 bits, else (magnitude, inexact, rounded up).
pub fn round_to_u64(v: F80, rc: Rc) -> Option<(u64, bool, bool)> {
    if v.class() == Class::Zero {
        return Some((0, false, false));
    }
    let u = v.unpack();
    // value = sig × 2^(exp − BIAS − 63); integer part = sig >> shift.
    let shift = BIAS + 63 - u.exp;
    if shift <= 0 {
        return if shift == 0 { Some((u.sig, false, false)) } else { None };
    }
    let x = shr_jam(u128::from(u.sig) << 64, shift.min(200) as u32);
    let int = (x >> 64) as u64;
    let rem = x as u64;
    let half = 1u64 << 63;
    let inc = match rc {
        Rc::Nearest => rem > half || (rem == half && int & 1 == 1),
        Rc::Zero => false,
        Rc::Up => rem != 0 && !u.sign,
        Rc::Down => rem != 0 && u.sign,
    };
    let r = int.checked_add(u64::from(inc))?;
    Some((r, rem != 0, inc))
}

/// Rounds a finite value to a signed integer of `bits` (16, 32 or 64) bits. `None` when out of
/// range (the caller raises IE), else (value, inexact, rounded up).
pub fn to_int(v: F80, rc: Rc, bits: u32) -> Option<(i64, bool, bool)> {
    let (mag, inexact, up) = round_to_u64(v, rc)?;
    let limit = 1u64 << (bits - 1);
    let neg = v.sign();
    if mag > limit || (mag == limit && !neg) {
        return None;
    }
    let val = if neg { (mag as i64).wrapping_neg() } else { mag as i64 };
    Some((val, inexact, up))
}

// ---------------------------------------------------------------------------------------------
// Packed BCD (SDM Vol. 1 §4.7, Table 4-4).

/// The packed BCD indefinite: sign byte FFh, byte 8 FFh, byte 7 C0h.
pub const BCD_INDEFINITE: [u8; 10] = [0, 0, 0, 0, 0, 0, 0, 0xC0, 0xFF, 0xFF];

/// Converts 18-digit packed BCD to extended (exact: 10^18 < 2^64). Digits above 9 are not
/// checked (the SDM leaves the result undefined); they count with their binary value.
pub fn from_bcd(b: [u8; 10]) -> F80 {
    let mut v: u64 = 0;
    for &byte in b[..9].iter().rev() {
        v = v.wrapping_mul(10).wrapping_add(u64::from(byte >> 4));
        v = v.wrapping_mul(10).wrapping_add(u64::from(byte & 0xF));
    }
    let neg = b[9] & 0x80 != 0;
    if v == 0 {
        return F80::zero(neg);
    }
    let lz = v.leading_zeros();
    F80::new(neg, (BIAS + 63 - lz as i32) as u16, v << lz)
}

/// Encodes a magnitude below 10^18 as packed BCD with sign `neg`.
pub fn to_bcd(mag: u64, neg: bool) -> [u8; 10] {
    let mut b = [0u8; 10];
    let mut m = mag;
    for byte in b[..9].iter_mut() {
        let lo = (m % 10) as u8;
        m /= 10;
        let hi = (m % 10) as u8;
        m /= 10;
        *byte = (hi << 4) | lo;
    }
    b[9] = if neg { 0x80 } else { 0 };
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(sign: bool, exp: i32, sig: u64, extra: u64, fmt: Format, rc: Rc) -> Rounded {
        round(sign, exp, (u128::from(sig) << 64) | u128::from(extra), fmt, rc, 0)
    }

    #[test]
    fn classes() {
        assert_eq!(F80::ZERO.class(), Class::Zero);
        assert_eq!(F80::ONE.class(), Class::Normal);
        assert_eq!(F80::new(false, 0, 1).class(), Class::Denormal);
        assert_eq!(F80::new(false, 0, INT_BIT | 5).class(), Class::Denormal); // pseudo-denormal
        assert_eq!(F80::new(false, 1, 5).class(), Class::Unsupported); // unnormal
        assert_eq!(F80::new(false, EXP_MAX, 0).class(), Class::Unsupported); // pseudo-infinity
        assert_eq!(F80::new(false, EXP_MAX, 1).class(), Class::Unsupported); // pseudo-NaN
        assert_eq!(F80::infinity(true).class(), Class::Infinity);
        assert_eq!(F80::INDEFINITE.class(), Class::QNaN);
        assert_eq!(F80::new(false, EXP_MAX, INT_BIT | 1).class(), Class::SNaN);
    }

    #[test]
    fn rounding_each_mode_and_precision() {
        // 1 + 2^-64 + tiny: the bit just below 64-bit precision set, sticky set.
        let sig = INT_BIT;
        let extra = (1u64 << 63) | 1;
        let e = Format::EXTENDED;
        assert_eq!(r(false, BIAS, sig, extra, e, Rc::Nearest).sig, INT_BIT | 1);
        assert_eq!(r(false, BIAS, sig, extra, e, Rc::Zero).sig, INT_BIT);
        assert_eq!(r(false, BIAS, sig, extra, e, Rc::Up).sig, INT_BIT | 1);
        assert_eq!(r(false, BIAS, sig, extra, e, Rc::Down).sig, INT_BIT);
        assert_eq!(r(true, BIAS, sig, extra, e, Rc::Down).sig, INT_BIT | 1);
        let x = r(false, BIAS, sig, extra, e, Rc::Nearest);
        assert_eq!((x.flags, x.up), (exc::PE, true));
        // Exact tie at 24 bits: 1 + 2^-24 → ties to even (1.0); 1 + 3·2^-24 → up.
        let p24 = Format::register(0);
        let tie = INT_BIT | (1 << 39);
        assert_eq!(r(false, BIAS, tie, 0, p24, Rc::Nearest).sig, INT_BIT);
        let tie_odd = INT_BIT | (3 << 39);
        assert_eq!(r(false, BIAS, tie_odd, 0, p24, Rc::Nearest).sig, INT_BIT | (1 << 41));
        // 53 bits, carry out of the significand.
        let p53 = Format::register(2);
        let all = !0u64;
        let c = r(false, BIAS, all, 0, p53, Rc::Nearest);
        assert_eq!((c.sig, c.exp), (INT_BIT, BIAS + 1));
    }

    #[test]
    fn overflow_and_underflow() {
        let e = Format::EXTENDED;
        let o = r(false, 0x7FFF, INT_BIT, 0, e, Rc::Nearest);
        assert_eq!(o.to_f80(), F80::infinity(false));
        assert_eq!(o.flags, exc::OE | exc::PE);
        let z = r(false, 0x7FFF, INT_BIT, 0, e, Rc::Zero);
        assert_eq!(z.to_f80(), F80::new(false, 0x7FFE, !0));
        let p24 = r(true, 0x7FFF, INT_BIT, 0, Format::register(0), Rc::Up);
        assert_eq!(p24.to_f80(), F80::new(true, 0x7FFE, 0xFFFF_FF00_0000_0000));
        // Unmasked overflow wraps the exponent.
        let w = round(false, 0x8000, u128::from(INT_BIT) << 64, e, Rc::Nearest, exc::OE);
        assert_eq!((w.exp, w.flags), (0x8000 - WRAP_ADJUST, exc::OE));
        // 2^-16383 exactly: a denormal, exact → no UE when masked.
        let d = r(false, 0, INT_BIT, 0, e, Rc::Nearest);
        assert_eq!((d.to_f80(), d.flags), (F80::new(false, 0, 1 << 62), 0));
        // Tiny and inexact.
        let d = r(false, -70, INT_BIT, 0, e, Rc::Nearest);
        assert_eq!((d.to_f80(), d.flags), (F80::ZERO, exc::UE | exc::PE));
        let d = r(false, -70, INT_BIT, 0, e, Rc::Up);
        assert_eq!((d.to_f80(), d.up), (F80::new(false, 0, 1), true));
        // Rounds up to the smallest normal: not tiny after rounding, so no UE.
        let d = r(false, 0, !0, !0, e, Rc::Nearest);
        assert_eq!((d.to_f80(), d.flags), (F80::new(false, 1, INT_BIT), exc::PE));
    }

    #[test]
    fn memory_formats() {
        assert_eq!(from_f32_bits(0x3F80_0000).0, F80::ONE);
        assert_eq!(from_f32_bits(1), (F80::new(false, (BIAS - 149) as u16, INT_BIT), exc::DE));
        assert_eq!(from_f64_bits(1), (F80::new(false, (BIAS - 1074) as u16, INT_BIT), exc::DE));
        assert_eq!(from_f64_bits(0x3FF0_0000_0000_0000).0, F80::ONE);
        // 1/3 in double: extended 1/3 rounded to 53 bits.
        let third = F80::new(false, 0x3FFD, 0xAAAA_AAAA_AAAA_AAAB);
        let rd =
            round(false, i32::from(third.exp()), u128::from(third.sig) << 64, Format::DOUBLE, Rc::Nearest, 0);
        assert_eq!(pack_f64(rd), 0x3FD5_5555_5555_5555);
        // Smallest single denormal from a tiny extended value.
        let tiny = round(false, BIAS - 149, u128::from(INT_BIT) << 64, Format::SINGLE, Rc::Nearest, 0);
        assert_eq!((pack_f32(tiny), tiny.flags), (1, 0));
        let over = round(false, BIAS + 128, u128::from(INT_BIT) << 64, Format::SINGLE, Rc::Nearest, 0);
        assert_eq!((pack_f32(over), over.flags), (0x7F80_0000, exc::OE | exc::PE));
    }

    #[test]
    fn integers_and_bcd() {
        assert_eq!(from_i64(-1), F80::new(true, 0x3FFF, INT_BIT));
        assert_eq!(from_i64(i64::MIN), F80::new(true, 0x403E, INT_BIT));
        let two_and_half = F80::new(false, 0x4000, 0xA000_0000_0000_0000);
        assert_eq!(to_int(two_and_half, Rc::Nearest, 16), Some((2, true, false)));
        assert_eq!(to_int(two_and_half, Rc::Up, 16), Some((3, true, true)));
        assert_eq!(to_int(two_and_half.with_sign(true), Rc::Down, 16), Some((-3, true, true)));
        assert_eq!(to_int(from_i64(32768), Rc::Nearest, 16), None);
        assert_eq!(to_int(from_i64(-32768), Rc::Nearest, 16), Some((-32768, false, false)));
        assert_eq!(to_int(from_i64(i64::MIN), Rc::Nearest, 64), Some((i64::MIN, false, false)));
        let bcd = to_bcd(123_456_789_012_345_678, true);
        assert_eq!(bcd, [0x78, 0x56, 0x34, 0x12, 0x90, 0x78, 0x56, 0x34, 0x12, 0x80]);
        assert_eq!(from_bcd(bcd), from_i64(-123_456_789_012_345_678));
        assert_eq!(from_bcd([0; 10]), F80::ZERO);
    }
}
