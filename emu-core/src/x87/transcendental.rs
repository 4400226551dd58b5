//! The x87 transcendental instructions: FSIN, FCOS, FSINCOS, FPTAN, FPATAN, F2XM1, FYL2X and
//! FYL2XP1 (Intel SDM Vol. 2, the page of each; Vol. 1 §8.3.10 "Transcendental Instruction
//! Accuracy").
//!
//! Results are computed in a 128-bit binary floating-point format ([`W`]: a 128-bit
//! significand, truncating arithmetic, about 120 correct bits after a series) and rounded once
//! to the destination, so they are within one unit in the last place of the 64-bit significand
//! — correctly rounded except where the exact value lies within about 2^-56 ulp of a rounding
//! boundary. The series are the textbook ones (Taylor series for sine, cosine and e^x − 1; the
//! arctangent series after argument halving; 2·artanh((x−1)/(x+1)) for logarithms).
//!
//! As on every Intel processor since the Pentium, FSIN, FCOS, FSINCOS and FPTAN reduce their
//! argument modulo π/2 with a 66-bit approximation of π (SDM Vol. 1 §8.3.10), so results near
//! multiples of π follow the hardware, not the exact function: `fsin` of the 64-bit value of π
//! is −2^-64, where sin gives −5.0165…·10^-20. Arguments of magnitude 2^63 or more are out of
//! range: C2 is set and ST(0) is left alone.

use super::arith::{self, Env, Out};
use super::float80::{self, exc, Class, BIAS, F80};

/// A 128-bit-significand float: `sig` × 2^(exp − 127), `sig` normalized (bit 127 set) or zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct W {
    neg: bool,
    exp: i32,
    sig: u128,
}

/// π to 128 bits (mpmath, 400-bit precision): 1.921fb54442d18469898cc51701b839a2 × 2^1.
const PI: W = W { neg: false, exp: 1, sig: 0xC90F_DAA2_2168_C234_C4C6_628B_80DC_1CD1 };
/// ln 2 to 128 bits (mpmath): 0.b17217f7d1cf79abc9e3b39803f2f6af.
const LN2: W = W { neg: false, exp: -1, sig: 0xB172_17F7_D1CF_79AB_C9E3_B398_03F2_F6AF };
/// The 66-bit π of the x87 argument reduction, as the integer π66 × 2^64 (π × 2^64 rounded to
/// 66 bits; mpmath).
const PI66_X64: u128 = 0x3_243F_6A88_85A3_08D3;

const ZERO: W = W { neg: false, exp: 0, sig: 0 };
const ONE: W = W { neg: false, exp: 0, sig: 1 << 127 };

impl W {
    fn is_zero(self) -> bool {
        self.sig == 0
    }

    fn norm(neg: bool, exp: i32, sig: u128) -> W {
        if sig == 0 {
            return ZERO;
        }
        let lz = sig.leading_zeros();
        W { neg, exp: exp - lz as i32, sig: sig << lz }
    }

    /// From a finite register value.
    fn from_f80(v: F80) -> W {
        if v.class() == Class::Zero {
            return W { neg: v.sign(), ..ZERO };
        }
        let u = v.unpack();
        W { neg: u.sign, exp: u.exp - BIAS, sig: u128::from(u.sig) << 64 }
    }

    fn from_int(v: i64) -> W {
        W::norm(v < 0, 127, u128::from(v.unsigned_abs()))
    }

    fn neg(self) -> W {
        W { neg: !self.neg, ..self }
    }

    fn abs(self) -> W {
        W { neg: false, ..self }
    }

    fn scale(self, n: i32) -> W {
        if self.is_zero() {
            self
        } else {
            W { exp: self.exp + n, ..self }
        }
    }

    fn mul(self, o: W) -> W {
        if self.is_zero() || o.is_zero() {
            return ZERO;
        }
        let (hi, lo) = mul_128(self.sig, o.sig);
        let neg = self.neg != o.neg;
        if hi >> 127 != 0 {
            W { neg, exp: self.exp + o.exp + 1, sig: hi | u128::from(lo != 0) }
        } else {
            let sig = (hi << 1) | (lo >> 127);
            W { neg, exp: self.exp + o.exp, sig }
        }
    }

    fn add(self, o: W) -> W {
        if self.is_zero() {
            return o;
        }
        if o.is_zero() {
            return self;
        }
        let (a, b) = if (self.exp, self.sig) >= (o.exp, o.sig) { (self, o) } else { (o, self) };
        let d = (a.exp - b.exp) as u32;
        // One guard bit at the bottom: work with the significands shifted right by one.
        let sa = a.sig >> 1;
        let sb = float80::shr_jam(b.sig >> 1, d);
        if a.neg == b.neg {
            W::norm(a.neg, a.exp + 1, sa + sb)
        } else {
            W::norm(a.neg, a.exp + 1, sa - sb)
        }
    }

    fn sub(self, o: W) -> W {
        self.add(o.neg())
    }

    fn div(self, o: W) -> W {
        if self.is_zero() || o.is_zero() {
            return ZERO;
        }
        let (a, b) = (self.sig, o.sig);
        let mut rem = a;
        let mut q: u128 = 0;
        if rem >= b {
            q = 1;
            rem -= b;
        }
        for _ in 0..127 {
            let carry = rem >> 127;
            rem <<= 1;
            q <<= 1;
            if carry != 0 || rem >= b {
                rem = rem.wrapping_sub(b);
                q |= 1;
            }
        }
        // q ≈ (a / b) × 2^127.
        let q = q | u128::from(rem != 0);
        W::norm(self.neg != o.neg, self.exp - o.exp, q)
    }

    /// Division by a small positive integer (the series' denominators): a 192-bit quotient cut
    /// to 128 bits, much cheaper than [`W::div`].
    fn div_int(self, n: u64) -> W {
        if self.is_zero() || n == 0 {
            return ZERO;
        }
        let n = u128::from(n);
        let (hi, r) = (self.sig / n, self.sig % n);
        let lo = (r << 64) / n; // r < n < 2^64
        if hi == 0 {
            // n = 1 cannot happen with hi = 0 (sig ≥ 2^127); kept total anyway.
            return W::norm(self.neg, self.exp - 64, lo);
        }
        let lz = hi.leading_zeros().min(64);
        let sig = (hi << lz) | (lo >> (64 - lz));
        W { neg: self.neg, exp: self.exp - lz as i32, sig }
    }

    fn sqrt(self) -> W {
        if self.is_zero() {
            return ZERO;
        }
        // value = sig × 2^t with t = exp − 127; make t even, take the integer square root of
        // the significand as a 64-bit first guess, then two Newton steps g ← (g + x/g)/2.
        let t = self.exp - 127;
        let (s, t) = if t.rem_euclid(2) == 1 { (self.sig >> 1, t + 1) } else { (self.sig, t) };
        let mut g = W::norm(false, 127 + t / 2, s.isqrt());
        for _ in 0..2 {
            g = g.add(self.div(g)).scale(-1);
        }
        g
    }

    /// Rounds to a register value.
    fn round(self, env: Env) -> Out {
        if self.is_zero() {
            return Out::exact(F80::zero(self.neg));
        }
        // The computed value is never exact: keep a sticky bit so the rounding sees that.
        arith::finish(self.neg, self.exp + BIAS, self.sig | 1, env)
    }
}

/// The full 256-bit product of two 128-bit numbers as (high, low).
fn mul_128(a: u128, b: u128) -> (u128, u128) {
    let (a1, a0) = (a >> 64, a & u128::from(u64::MAX));
    let (b1, b0) = (b >> 64, b & u128::from(u64::MAX));
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 64) + (p01 & u128::from(u64::MAX)) + (p10 & u128::from(u64::MAX));
    let lo = (p00 & u128::from(u64::MAX)) | (mid << 64);
    let hi = p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
    (hi, lo)
}

// ---------------------------------------------------------------------------------------------
// Series.

/// Terms are added until they fall this far below the first one.
const SERIES_BITS: i32 = 132;

/// More terms than any series here needs for the arguments it gets (about 40 at most): a
/// bound, so that no operand can keep the emulator in a loop.
const MAX_TERMS: u64 = 120;

/// sin r and cos r for |r| ≤ π/4 (Taylor series).
fn sin_cos(r: W) -> (W, W) {
    let r2 = r.mul(r);
    let mut s = r;
    let mut term = r;
    let mut n = 1u64;
    while !term.is_zero() && term.exp > r.exp - SERIES_BITS && n < 2 * MAX_TERMS {
        term = term.mul(r2).div_int((n + 1) * (n + 2)).neg();
        s = s.add(term);
        n += 2;
    }
    let mut c = ONE;
    let mut term = ONE;
    let mut n = 0u64;
    while !term.is_zero() && term.exp > -SERIES_BITS && n < 2 * MAX_TERMS {
        term = term.mul(r2).div_int((n + 1) * (n + 2)).neg();
        c = c.add(term);
        n += 2;
    }
    (s, c)
}

/// arctan z for any finite z.
fn atan(z: W) -> W {
    if z.is_zero() {
        return z;
    }
    if z.exp >= 0 && !(z.exp == 0 && z.sig == 1 << 127) {
        // |z| > 1: atan z = ±π/2 − atan(1/z).
        let half_pi = PI.scale(-1);
        let r = atan(ONE.div(z.abs()));
        let v = half_pi.sub(r);
        return if z.neg { v.neg() } else { v };
    }
    // Halve the angle three times: atan z = 2 atan(z / (1 + √(1 + z²))).
    let mut t = z;
    for _ in 0..3 {
        t = t.div(ONE.add(ONE.add(t.mul(t)).sqrt()));
    }
    let t2 = t.mul(t);
    let mut s = t;
    let mut p = t;
    for k in 1..MAX_TERMS {
        p = p.mul(t2).neg();
        let term = p.div_int(2 * k + 1);
        if term.is_zero() || term.exp <= t.exp - SERIES_BITS {
            break;
        }
        s = s.add(term);
    }
    s.scale(3)
}

/// 2·artanh t = ln((1 + t)/(1 − t)), for |t| small.
fn two_atanh(t: W) -> W {
    let t2 = t.mul(t);
    let mut s = t;
    let mut p = t;
    for k in 1..MAX_TERMS {
        p = p.mul(t2);
        let term = p.div_int(2 * k + 1);
        if term.is_zero() || term.exp <= t.exp - SERIES_BITS {
            break;
        }
        s = s.add(term);
    }
    s.scale(1)
}

/// ln x for x > 0.
fn ln(x: W) -> W {
    // x = m × 2^e with m in [√½, √2).
    let mut e = x.exp;
    let mut m = W { exp: 0, ..x };
    // m in [1, 2); above √2 (B504F333… × 2^-127·2) take m/2.
    if m.sig > 0xB504_F333_F9DE_6484_597D_89B3_754A_BE9F {
        m.exp = -1;
        e += 1;
    }
    let t = m.sub(ONE).div(m.add(ONE));
    two_atanh(t).add(LN2.mul(W::from_int(i64::from(e))))
}

/// e^z − 1 (Taylor series, relative accuracy for small z).
fn expm1(z: W) -> W {
    let mut s = z;
    let mut term = z;
    for n in 2..MAX_TERMS {
        if term.is_zero() || term.exp <= z.exp - SERIES_BITS {
            break;
        }
        term = term.mul(z).div_int(n);
        s = s.add(term);
    }
    s
}

// ---------------------------------------------------------------------------------------------
// The instructions.

/// The outcome of a one-operand transcendental: the new ST(0), a value to push (FPTAN,
/// FSINCOS), the flags, the rounding direction of the (last) result, and whether the operand
/// was out of range (C2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trans {
    /// New ST(0) (`None`: unchanged).
    pub st0: Option<F80>,
    /// Pushed after ST(0) is replaced.
    pub push: Option<F80>,
    /// Exception flags.
    pub flags: u16,
    /// C1: rounded up.
    pub up: bool,
    /// |x| ≥ 2^63: nothing done, C2 = 1.
    pub out_of_range: bool,
}

impl Trans {
    fn from_out(o: Out) -> Trans {
        Trans {
            st0: o.val,
            push: None,
            flags: o.flags,
            up: o.up && o.flags & exc::PE != 0,
            out_of_range: false,
        }
    }

    fn pair(a: Out, b: Out) -> Trans {
        let flags = a.flags | b.flags;
        match (a.val, b.val) {
            (Some(x), Some(y)) => Trans {
                st0: Some(x),
                push: Some(y),
                flags,
                up: b.up && b.flags & exc::PE != 0,
                out_of_range: false,
            },
            _ => Trans { st0: None, push: None, flags, up: false, out_of_range: false },
        }
    }
}

/// Screening common to FSIN, FCOS, FSINCOS and FPTAN: NaNs, unsupported and infinite operands,
/// denormals and the range. `Err` when the outcome is decided.
fn trig_screen(x: F80, env: Env, pair: bool) -> Result<u16, Trans> {
    let decided = |o: Out| {
        if pair {
            Trans::pair(o, o)
        } else {
            Trans::from_out(o)
        }
    };
    if let Some(o) = arith::screen_nan1(x, env) {
        return Err(decided(o));
    }
    if x.class() == Class::Infinity {
        return Err(decided(Out::invalid(env)));
    }
    if x.class() != Class::Zero && x.unpack().exp >= BIAS + 63 {
        return Err(Trans { st0: None, push: None, flags: 0, up: false, out_of_range: true });
    }
    match arith::denormal_check(&[x], env) {
        Ok(f) => Ok(f),
        Err(o) => Err(decided(o)),
    }
}

/// Reduces x modulo π66/2: r = x − k·π66/2 with k the nearest integer, exact. Returns r and
/// k mod 4.
fn reduce(x: F80) -> (W, u32) {
    let u = x.unpack();
    // |x| = sig × 2^(e − 63) with e = exp − BIAS; reduce only when |x| ≥ 1/4 (below π/4
    // there is nothing to do, and k = 0 anyway).
    let e = u.exp - BIAS;
    if e < -2 {
        return (W::from_f80(x), 0);
    }
    // A = |x| × 2^65 = sig × 2^(e + 2), an integer below 2^128.
    let a = u128::from(u.sig) << (e + 2);
    let q = PI66_X64; // π66/2 = q / 2^65
    let mut k = a / q;
    let rem = a % q;
    if rem > q / 2 {
        k += 1;
    }
    let r = (a as i128).wrapping_sub((k.wrapping_mul(q)) as i128);
    let mut w = W::norm(r < 0, 127 - 65, r.unsigned_abs());
    if u.sign {
        w = w.neg();
    }
    let k = (k & 3) as u32;
    let k = if u.sign { (4 - k) & 3 } else { k };
    (w, k)
}

/// sin and cos of x (finite, in range).
fn sin_cos_x(x: F80) -> (W, W) {
    let (r, k) = reduce(x);
    let (s, c) = sin_cos(r);
    match k {
        0 => (s, c),
        1 => (c, s.neg()),
        2 => (s.neg(), c.neg()),
        _ => (c.neg(), s),
    }
}

/// FSIN.
pub fn fsin(x: F80, env: Env) -> Trans {
    let de = match trig_screen(x, env, false) {
        Ok(f) => f,
        Err(t) => return t,
    };
    if x.class() == Class::Zero {
        return Trans::from_out(Out::exact(x));
    }
    let (s, _) = sin_cos_x(x);
    Trans::from_out(s.round(env).with(de))
}

/// FCOS.
pub fn fcos(x: F80, env: Env) -> Trans {
    let de = match trig_screen(x, env, false) {
        Ok(f) => f,
        Err(t) => return t,
    };
    if x.class() == Class::Zero {
        return Trans::from_out(Out::exact(F80::ONE));
    }
    let (_, c) = sin_cos_x(x);
    Trans::from_out(c.round(env).with(de))
}

/// FSINCOS: ST(0) ← sin x, then push cos x.
pub fn fsincos(x: F80, env: Env) -> Trans {
    let de = match trig_screen(x, env, true) {
        Ok(f) => f,
        Err(t) => return t,
    };
    if x.class() == Class::Zero {
        return Trans::pair(Out::exact(x), Out::exact(F80::ONE));
    }
    let (s, c) = sin_cos_x(x);
    Trans::pair(s.round(env).with(de), c.round(env).with(de))
}

/// FPTAN: ST(0) ← tan x, then push 1.0.
pub fn fptan(x: F80, env: Env) -> Trans {
    let de = match trig_screen(x, env, true) {
        Ok(f) => f,
        Err(t) => return t,
    };
    if x.class() == Class::Zero {
        return Trans::pair(Out::exact(x), Out::exact(F80::ONE));
    }
    let (s, c) = sin_cos_x(x);
    let t = s.div(c).round(env).with(de);
    let mut r = Trans::pair(t, Out::exact(F80::ONE));
    r.up = t.up && t.flags & exc::PE != 0;
    r
}

/// F2XM1: 2^x − 1 (the SDM defines it for −1 ≤ x ≤ 1; bt86 computes it for any x).
pub fn f2xm1(x: F80, env: Env) -> Trans {
    if let Some(o) = arith::screen_nan1(x, env) {
        return Trans::from_out(o);
    }
    match x.class() {
        Class::Zero => return Trans::from_out(Out::exact(x)),
        Class::Infinity if x.sign() => return Trans::from_out(Out::exact(F80::ONE.with_sign(true))),
        Class::Infinity => return Trans::from_out(Out::exact(x)),
        _ => {}
    }
    let de = match arith::denormal_check(&[x], env) {
        Ok(f) => f,
        Err(o) => return Trans::from_out(o),
    };
    if x == F80::ONE {
        return Trans::from_out(Out::exact(F80::ONE).with(de));
    }
    if x == F80::ONE.with_sign(true) {
        return Trans::from_out(Out::exact(F80 { se: 0xBFFE, sig: float80::INT_BIT }).with(de));
    }
    let u = x.unpack();
    let e = u.exp - BIAS;
    let w = if e < 0 {
        expm1(W::from_f80(x).mul(LN2))
    } else if e > 15 {
        // |x| ≥ 65536: overflows, or is −1 to any precision.
        if x.sign() {
            W::from_int(-1).add(W { neg: false, exp: -200, sig: 1 << 127 })
        } else {
            W { neg: false, exp: 70_000, sig: 1 << 127 }
        }
    } else {
        // x = n + f with n = trunc(x), 2^x − 1 = 2^n·(e^(f ln 2) − 1) + 2^n − 1.
        let n = (u.sig >> (63 - e)) as i64;
        let n = if u.sign { -n } else { n };
        let f = W::from_f80(x).sub(W::from_int(n));
        let em = expm1(f.mul(LN2));
        let p = ONE.scale(n as i32);
        em.mul(p).add(p.sub(ONE))
    };
    Trans::from_out(w.round(env).with(de))
}

/// FPATAN: arctan(y / x) in the quadrant of (x, y), for ST(1) = y and ST(0) = x.
pub fn fpatan(y: F80, x: F80, env: Env) -> Out {
    if let Some(o) = screen2(y, x, env) {
        return o;
    }
    let de = match arith::denormal_check(&[x, y], env) {
        Ok(f) => f,
        Err(o) => return o,
    };
    let (cx, cy) = (x.class(), y.class());
    let signed = |w: W| if y.sign() { w.neg() } else { w };
    let pi = PI;
    let result = if cy == Class::Zero {
        if x.sign() {
            signed(pi)
        } else {
            return Out::exact(y).with(de);
        }
    } else if cy == Class::Infinity {
        match (cx, x.sign()) {
            (Class::Infinity, false) => signed(pi.scale(-2)),
            (Class::Infinity, true) => signed(pi.scale(-2).mul(W::from_int(3))),
            _ => signed(pi.scale(-1)),
        }
    } else if cx == Class::Zero {
        signed(pi.scale(-1))
    } else if cx == Class::Infinity {
        if x.sign() {
            signed(pi)
        } else {
            return Out::exact(F80::zero(y.sign())).with(de);
        }
    } else {
        let (wy, wx) = (W::from_f80(y), W::from_f80(x));
        let a = atan(wy.abs().div(wx.abs()));
        let v = if x.sign() { pi.sub(a) } else { a };
        signed(v)
    };
    result.round(env).with(de)
}

/// NaN and unsupported screening for two operands.
fn screen2(a: F80, b: F80, env: Env) -> Option<Out> {
    let (ca, cb) = (a.class(), b.class());
    if ca == Class::Unsupported || cb == Class::Unsupported {
        return Some(Out::invalid(env));
    }
    if a.is_nan() || b.is_nan() {
        let nan = arith::propagate(a, b);
        if ca == Class::SNaN || cb == Class::SNaN {
            return Some(Out::fault(exc::IE, nan, env));
        }
        return Some(Out::exact(nan));
    }
    None
}

/// FYL2X: y × log2 x, for ST(1) = y and ST(0) = x.
pub fn fyl2x(y: F80, x: F80, env: Env) -> Out {
    if let Some(o) = screen2(y, x, env) {
        return o;
    }
    let (cx, cy) = (x.class(), y.class());
    if x.sign() && cx != Class::Zero {
        return Out::invalid(env);
    }
    let de = match arith::denormal_check(&[x, y], env) {
        Ok(f) => f,
        Err(o) => return o,
    };
    if cx == Class::Zero {
        // log2 0 = −∞.
        return match cy {
            Class::Zero => Out::invalid(env),
            Class::Infinity => Out::exact(F80::infinity(!y.sign())).with(de),
            _ => Out::fault(exc::ZE, F80::infinity(!y.sign()), env).with(de),
        };
    }
    if cx == Class::Infinity {
        return if cy == Class::Zero {
            Out::invalid(env)
        } else {
            Out::exact(F80::infinity(y.sign())).with(de)
        };
    }
    let u = x.unpack();
    if u.sig == float80::INT_BIT {
        // x = 2^n: the logarithm is exact and the product is rounded once.
        let n = float80::from_i64(i64::from(u.exp - BIAS));
        return arith::mul(y, n, env).with(de);
    }
    let l = ln(W::from_f80(x)).div(LN2);
    match cy {
        Class::Infinity => Out::exact(F80::infinity(y.sign() != l.neg)).with(de),
        Class::Zero => Out::exact(F80::zero(y.sign() != l.neg)).with(de),
        _ => W::from_f80(y).mul(l).round(env).with(de),
    }
}

/// FYL2XP1: y × log2(x + 1), for ST(1) = y and ST(0) = x (the SDM defines it for
/// |x| < 1 − √2/2; bt86 computes it for any x > −1).
pub fn fyl2xp1(y: F80, x: F80, env: Env) -> Out {
    if let Some(o) = screen2(y, x, env) {
        return o;
    }
    let (cx, cy) = (x.class(), y.class());
    let de = match arith::denormal_check(&[x, y], env) {
        Ok(f) => f,
        Err(o) => return o,
    };
    if cx == Class::Zero {
        return if cy == Class::Infinity {
            Out::invalid(env)
        } else {
            Out::exact(F80::zero(x.sign() != y.sign())).with(de)
        };
    }
    if cx == Class::Infinity {
        return if x.sign() || cy == Class::Zero {
            Out::invalid(env)
        } else {
            Out::exact(F80::infinity(y.sign())).with(de)
        };
    }
    let wx = W::from_f80(x);
    let one_plus = ONE.add(wx);
    if one_plus.neg || one_plus.is_zero() {
        return Out::invalid(env);
    }
    // ln(1 + x) = 2 artanh(x / (2 + x)) keeps its relative accuracy for small x; beyond
    // |x| = 1/2 (outside the SDM's domain) 1 + x is formed exactly enough and [`ln`] applies.
    let l = if wx.exp < -1 { two_atanh(wx.div(ONE.scale(1).add(wx))) } else { ln(one_plus) }.div(LN2);
    match cy {
        Class::Infinity => Out::exact(F80::infinity(y.sign() != l.neg)).with(de),
        Class::Zero => Out::exact(F80::zero(y.sign() != l.neg)).with(de),
        _ => W::from_f80(y).mul(l).round(env).with(de),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x87::float80::{Format, Rc};

    const NEAR: Env = Env { fmt: Format::EXTENDED, rc: Rc::Nearest, masks: 0x3F };

    // Expected values: Python mpmath at 600 bits, rounded to nearest-even to 64 bits, printed
    // by emu-core/tools/x87_vectors.py (x = the input's exact value; FSIN/FCOS/FPTAN of the reduced
    // argument r = x − k·π66/2, k = nint(x / (π66/2)), π66 = 0x3243F6A8885A308D3 / 2^64, as the
    // x87 reduces; F2XM1 = 2^x − 1; FPATAN = atan2(y, x); FYL2X = y·log2 x; FYL2XP1 =
    // y·log2(1 + x)).

    const SIN: &[(F80, F80)] = &[
        (F80 { se: 0x3FFE, sig: 0x8000000000000000 }, F80 { se: 0x3FFD, sig: 0xF57743A2582F7F44 }), // sin(half)
        (F80 { se: 0x3FFF, sig: 0x8000000000000000 }, F80 { se: 0x3FFE, sig: 0xD76AA47848677021 }), // sin(one)
        (F80 { se: 0x4000, sig: 0x8000000000000000 }, F80 { se: 0x3FFE, sig: 0xE8C7B7568DA22EFD }), // sin(two)
        (F80 { se: 0x4000, sig: 0xC000000000000000 }, F80 { se: 0x3FFC, sig: 0x9081C36DB6AADA79 }), // sin(three)
        (F80 { se: 0x4005, sig: 0xC800000000000000 }, F80 { se: 0xBFFE, sig: 0x81A12DBC626DC036 }), // sin(hundred)
        (F80 { se: 0xBFFE, sig: 0xC000000000000000 }, F80 { se: 0xBFFE, sig: 0xAE7FE0B5FC786B2E }), // sin(neg075)
        (F80 { se: 0x4030, sig: 0xE35FA931A0000000 }, F80 { se: 0x3FFE, sig: 0xDBB7B8F40DE0426E }), // sin(big)
        (F80 { se: 0x3FD7, sig: 0x8000000000000000 }, F80 { se: 0x3FD7, sig: 0x8000000000000000 }), // sin(tiny)
        (F80 { se: 0x4000, sig: 0xC90FDAA22168C235 }, F80 { se: 0xBFBF, sig: 0x8000000000000000 }), // sin(fldpi)
    ];
    const COS: &[(F80, F80)] = &[
        (F80 { se: 0x3FFE, sig: 0x8000000000000000 }, F80 { se: 0x3FFE, sig: 0xE0A94032DBEA7CEE }), // cos(half)
        (F80 { se: 0x3FFF, sig: 0x8000000000000000 }, F80 { se: 0x3FFE, sig: 0x8A51407DA8345C92 }), // cos(one)
        (F80 { se: 0x4000, sig: 0xC000000000000000 }, F80 { se: 0xBFFE, sig: 0xFD7025F42F2E9308 }), // cos(three)
        (F80 { se: 0x4005, sig: 0xC800000000000000 }, F80 { se: 0x3FFE, sig: 0xDCC0EDFB32FEFB21 }), // cos(hundred)
        (F80 { se: 0xBFFE, sig: 0xC000000000000000 }, F80 { se: 0x3FFE, sig: 0xBB4FF632A908F73F }), // cos(neg075)
        (F80 { se: 0x4030, sig: 0xE35FA931A0000000 }, F80 { se: 0xBFFE, sig: 0x8360BCBA0ACC128F }), // cos(big)
    ];
    const TAN: &[(F80, F80)] = &[
        (F80 { se: 0x3FFE, sig: 0x8000000000000000 }, F80 { se: 0x3FFE, sig: 0x8BDA7ADF9A3A5219 }), // tan(half)
        (F80 { se: 0x3FFF, sig: 0x8000000000000000 }, F80 { se: 0x3FFF, sig: 0xC75922E5F71D2DC5 }), // tan(one)
        (F80 { se: 0xBFFE, sig: 0xC000000000000000 }, F80 { se: 0xBFFE, sig: 0xEE7D1B0887775F06 }), // tan(neg075)
        (F80 { se: 0x4000, sig: 0xC000000000000000 }, F80 { se: 0xBFFC, sig: 0x91F7B892A5C37866 }), // tan(three)
    ];
    const F2XM1: &[(F80, F80)] = &[
        (F80 { se: 0x3FFE, sig: 0x8000000000000000 }, F80 { se: 0x3FFD, sig: 0xD413CCCFE7799211 }), // 2^0.5 - 1
        (F80 { se: 0xBFFE, sig: 0x8000000000000000 }, F80 { se: 0xBFFD, sig: 0x95F619980C4336F7 }), // 2^-0.5 - 1
        (F80 { se: 0x3FF5, sig: 0x83126E978D4FDF3B }, F80 { se: 0x3FF4, sig: 0xB5C471E6A560AAF7 }), // 2^0.001 - 1
        (F80 { se: 0x3FDD, sig: 0xDBE6FECEBDEDD5BF }, F80 { se: 0x3FDD, sig: 0x986CB7A12110919D }), // 2^1e-10 - 1
        (F80 { se: 0xBFFE, sig: 0xFFF972474538EF35 }, F80 { se: 0xBFFD, sig: 0xFFFB750D3C245AFF }), // 2^-0.9999 - 1
        (F80 { se: 0x3FFE, sig: 0xC000000000000000 }, F80 { se: 0x3FFE, sig: 0xAE89F995AD3AD5E8 }), // 2^0.75 - 1
    ];
    const PATAN: &[(F80, F80, F80)] = &[
        (
            F80 { se: 0x3FFF, sig: 0x8000000000000000 },
            F80 { se: 0x3FFF, sig: 0x8000000000000000 },
            F80 { se: 0x3FFE, sig: 0xC90FDAA22168C235 },
        ), // atan2(1, 1)
        (
            F80 { se: 0x3FFF, sig: 0x8000000000000000 },
            F80 { se: 0x4000, sig: 0x8000000000000000 },
            F80 { se: 0x3FFD, sig: 0xED63382B0DDA7B45 },
        ), // atan2(1, 2)
        (
            F80 { se: 0xC000, sig: 0xC000000000000000 },
            F80 { se: 0xC001, sig: 0x8000000000000000 },
            F80 { se: 0xC000, sig: 0x9FE0BB5BD42AFFEC },
        ), // atan2(-3, -4)
        (
            F80 { se: 0x3FF5, sig: 0x83126E978D4FDF3B },
            F80 { se: 0xBFFF, sig: 0x8000000000000000 },
            F80 { se: 0x4000, sig: 0xC8FF7854AA17541F },
        ), // atan2(0.001, -1)
        (
            F80 { se: 0x4001, sig: 0xA000000000000000 },
            F80 { se: 0x3FFE, sig: 0x8000000000000000 },
            F80 { se: 0x3FFF, sig: 0xBC4DE960B0029C17 },
        ), // atan2(5, 0.5)
    ];
    const YL2X: &[(F80, F80, F80)] = &[
        (
            F80 { se: 0x3FFF, sig: 0x8000000000000000 },
            F80 { se: 0x4002, sig: 0xA000000000000000 },
            F80 { se: 0x4000, sig: 0xD49A784BCD1B8AFE },
        ), // 1 * log2(10)
        (
            F80 { se: 0x4000, sig: 0xA000000000000000 },
            F80 { se: 0x3FFD, sig: 0x999999999999999A },
            F80 { se: 0xC001, sig: 0x8AF50E2CA1AF635C },
        ), // 2.5 * log2(0.3)
        (
            F80 { se: 0xBFFF, sig: 0x8000000000000000 },
            F80 { se: 0x4000, sig: 0xC000000000000000 },
            F80 { se: 0xBFFF, sig: 0xCAE00D1CFDEB43D0 },
        ), // -1 * log2(3)
        (
            F80 { se: 0x3FFF, sig: 0x8000000000000000 },
            F80 { se: 0x3FFF, sig: 0x800000D6BF94D5E5 },
            F80 { se: 0x3FE8, sig: 0x9AE87F5179975212 },
        ), // 1 * log2(1.0000001)
    ];
    const YL2XP1: &[(F80, F80, F80)] = &[
        (
            F80 { se: 0x3FFF, sig: 0x8000000000000000 },
            F80 { se: 0x3FFD, sig: 0x8000000000000000 },
            F80 { se: 0x3FFD, sig: 0xA4D3C25E68DC57F2 },
        ), // 1 * log2(1 + 0.25)
        (
            F80 { se: 0x3FFF, sig: 0x8000000000000000 },
            F80 { se: 0x3FEB, sig: 0x8637BD05AF6C69B6 },
            F80 { se: 0x3FEB, sig: 0xC1A2996FF303585B },
        ), // 1 * log2(1 + 1e-6)
        (
            F80 { se: 0x4000, sig: 0xC000000000000000 },
            F80 { se: 0xBFFC, sig: 0xCCCCCCCCCCCCCCCD },
            F80 { se: 0xBFFE, sig: 0xF73DA38D9D4A83EC },
        ), // 3 * log2(1 + -0.2)
    ];

    fn one(t: Trans) -> F80 {
        assert!(!t.out_of_range);
        assert_eq!(t.flags & exc::PE, exc::PE);
        t.st0.expect("a result")
    }

    #[test]
    fn sine_cosine_tangent() {
        for &(x, want) in SIN {
            assert_eq!(one(fsin(x, NEAR)), want, "sin {x:?}");
        }
        for &(x, want) in COS {
            assert_eq!(one(fcos(x, NEAR)), want, "cos {x:?}");
        }
        for &(x, want) in TAN {
            let t = fptan(x, NEAR);
            assert_eq!(t.push, Some(F80::ONE));
            assert_eq!(one(t), want, "tan {x:?}");
        }
        let sc = fsincos(SIN[0].0, NEAR);
        assert_eq!((sc.st0, sc.push), (Some(SIN[0].1), Some(COS[0].1)));
    }

    #[test]
    fn sine_of_the_fldpi_constant_shows_the_66_bit_pi() {
        // sin(π64) is −5.0166e-20 exactly; the x87's 66-bit π gives π64 − π66 = −2^-64.
        let pi64 = F80 { se: 0x4000, sig: 0xC90F_DAA2_2168_C235 };
        assert_eq!(one(fsin(pi64, NEAR)), F80 { se: 0xBFBF, sig: float80::INT_BIT });
    }

    #[test]
    fn fyl2xp1_far_outside_its_domain_ends() {
        // Regression: 2·artanh(x/(2+x)) with x = 2^100 has t ≈ 1 − 2^-99 and its series does
        // not converge; bt86 once looped there. log2(1 + 2^100) rounds to 100.
        let x = F80::new(false, (BIAS + 100) as u16, float80::INT_BIT);
        let o = fyl2xp1(F80::ONE, x, NEAR);
        assert_eq!((o.val, o.flags), (Some(float80::from_i64(100)), exc::PE));
    }

    #[test]
    fn trig_special_operands() {
        let big = F80::new(false, (BIAS + 63) as u16, float80::INT_BIT);
        let t = fsin(big, NEAR);
        assert!(t.out_of_range && t.st0.is_none());
        assert_eq!(fcos(F80::infinity(true), NEAR).st0, Some(F80::INDEFINITE));
        assert_eq!(fsin(F80::zero(true), NEAR).st0, Some(F80::zero(true)));
        assert_eq!(fcos(F80::ZERO, NEAR).st0, Some(F80::ONE));
        // Directed rounding: cos(0.5) truncated is one unit below nearest (which rounded up
        // or down as the table says; both neighbours differ by one unit at most).
        let down = Env { rc: Rc::Zero, ..NEAR };
        let d = one(fcos(COS[0].0, down));
        assert!(d.sig == COS[0].1.sig || d.sig + 1 == COS[0].1.sig);
    }

    #[test]
    fn exponential_and_logarithms() {
        for &(x, want) in F2XM1 {
            assert_eq!(one(f2xm1(x, NEAR)), want, "f2xm1 {x:?}");
        }
        for &(y, x, want) in PATAN {
            assert_eq!(fpatan(y, x, NEAR).val, Some(want), "fpatan {y:?} {x:?}");
        }
        for &(y, x, want) in YL2X {
            assert_eq!(fyl2x(y, x, NEAR).val, Some(want), "fyl2x {y:?} {x:?}");
        }
        for &(y, x, want) in YL2XP1 {
            assert_eq!(fyl2xp1(y, x, NEAR).val, Some(want), "fyl2xp1 {y:?} {x:?}");
        }
        // Exact cases: 2^1 − 1 = 1, log2 8 = 3, and no PE.
        let t = f2xm1(F80::ONE, NEAR);
        assert_eq!((t.st0, t.flags), (Some(F80::ONE), 0));
        let eight = float80::from_i64(8);
        assert_eq!(fyl2x(F80::ONE, eight, NEAR), Out::exact(float80::from_i64(3)));
        // log2 0 = −∞: zero divide; log of a negative number: invalid.
        let z = fyl2x(F80::ONE, F80::ZERO, NEAR);
        assert_eq!((z.val, z.flags), (Some(F80::infinity(true)), exc::ZE));
        assert_eq!(fyl2x(F80::ONE, float80::from_i64(-2), NEAR).val, Some(F80::INDEFINITE));
        // atan2(±0, −0) = ±π, atan2(+∞, −∞) = 3π/4.
        let pi = fpatan(F80::ZERO, F80::zero(true), NEAR).val;
        assert_eq!(pi, Some(F80 { se: 0x4000, sig: 0xC90F_DAA2_2168_C235 }));
        let r = fpatan(F80::infinity(false), F80::infinity(true), NEAR).val.map(|v| v.se);
        assert_eq!(r, Some(0x4000));
    }
}
