//! Exact x87 arithmetic on [`F80`] values: add, subtract, multiply, divide, square root,
//! compare, round to integer, partial remainder, scale and extract (Intel SDM Vol. 1 §8.3,
//! §4.8.3 and §8.5 for special operands and exceptions; Vol. 2 pages FADD, FSUB, FMUL, FDIV,
//! FSQRT, FCOM, FUCOM, FRNDINT, FPREM, FPREM1, FSCALE, FXTRACT).
//!
//! Every operation computes its result exactly (128-bit significands with a sticky bit) and
//! rounds once through [`float80::round`]. Operands are screened in the priority order of SDM
//! Vol. 1 §4.9.2 and §8.5: unsupported encodings and signaling NaNs (invalid operation), NaN
//! propagation (Table 4-7: the QNaN of a QNaN/SNaN pair, else the NaN with the larger
//! significand), invalid combinations (∞ − ∞, 0 × ∞, 0/0, ∞/∞, √−x), denormal operand, zero
//! divide; then the post-computation exceptions overflow, underflow and precision. An unmasked
//! pre-computation exception leaves no result ([`Out::val`] is `None`), so the destination is
//! not written; unmasked overflow and underflow deliver the exponent-wrapped result.

use core::cmp::Ordering;

use super::float80::{self, exc, shr_jam, Class, Format, Rc, BIAS, F80, INT_BIT};

/// What an operation needs from the control word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Env {
    /// Target format (precision control applied where the instruction honours it).
    pub fmt: Format,
    /// Rounding control.
    pub rc: Rc,
    /// Exception masks (control word bits 0–5: set = masked).
    pub masks: u16,
}

impl Env {
    /// The environment of control word `cw`, with precision control applied.
    pub fn from_cw(cw: u16) -> Env {
        Env { fmt: Format::register(cw >> 8), rc: Rc::from_bits(cw >> 10), masks: cw & exc::ALL }
    }

    /// The same environment at full 64-bit precision (instructions precision control does not
    /// affect).
    pub fn full(self) -> Env {
        Env { fmt: Format::EXTENDED, ..self }
    }

    /// Exceptions that are not masked.
    pub fn unmasked(self) -> u16 {
        !self.masks & exc::ALL
    }

    /// `flag` is unmasked.
    pub fn traps(self, flag: u16) -> bool {
        self.unmasked() & flag != 0
    }
}

/// An operation's outcome: the value to store (`None` after an unmasked pre-computation
/// exception), the exception flags raised, and whether the result was rounded up (C1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Out {
    /// The result, if one is delivered.
    pub val: Option<F80>,
    /// Exception flags (status-word bits 0–5).
    pub flags: u16,
    /// Rounded up in magnitude.
    pub up: bool,
}

impl Out {
    /// An exact result with no exception.
    pub fn exact(v: F80) -> Out {
        Out { val: Some(v), flags: 0, up: false }
    }

    /// Invalid operation: the indefinite when masked, nothing when unmasked.
    pub fn invalid(env: Env) -> Out {
        Out::fault(exc::IE, F80::INDEFINITE, env)
    }

    /// A pre-computation exception `flag` with masked response `masked`.
    pub fn fault(flag: u16, masked: F80, env: Env) -> Out {
        let val = if env.traps(flag) { None } else { Some(masked) };
        Out { val, flags: flag, up: false }
    }

    /// Adds `flags` (raised earlier, e.g. DE) to the outcome.
    pub fn with(mut self, flags: u16) -> Out {
        self.flags |= flags;
        self
    }
}

/// Rounds an exact value and wraps it as an [`Out`].
pub fn finish(sign: bool, exp: i32, v: u128, env: Env) -> Out {
    let r = float80::round(sign, exp, v, env.fmt, env.rc, env.unmasked());
    Out { val: Some(r.to_f80()), flags: r.flags, up: r.up }
}

/// Rounds a finite value (possibly denormal, possibly needing fewer bits) to the environment's
/// format.
pub fn round_value(v: F80, env: Env) -> Out {
    if v.class() == Class::Zero {
        return Out::exact(v);
    }
    let (s, e, w) = float80::wide(v.unpack());
    finish(s, e, w, env)
}

/// The NaN a pair of operands propagates (SDM Vol. 1 Table 4-7), quieted.
pub fn propagate(a: F80, b: F80) -> F80 {
    match (a.is_nan(), b.is_nan()) {
        (true, false) => a.quiet(),
        (false, true) => b.quiet(),
        _ => {
            let (qa, qb) = (a.class() == Class::QNaN, b.class() == Class::QNaN);
            if qa != qb {
                return if qa { a } else { b };
            }
            let (ma, mb) = (a.sig & !INT_BIT, b.sig & !INT_BIT);
            let pick = match ma.cmp(&mb) {
                Ordering::Greater => a,
                Ordering::Less => b,
                Ordering::Equal if a.sign() && !b.sign() => b,
                Ordering::Equal => a,
            };
            pick.quiet()
        }
    }
}

/// Screens two operands for unsupported encodings and NaNs. `Some` when the outcome is decided.
fn screen_nan2(a: F80, b: F80, env: Env) -> Option<Out> {
    let (ca, cb) = (a.class(), b.class());
    if ca == Class::Unsupported || cb == Class::Unsupported {
        return Some(Out::invalid(env));
    }
    if a.is_nan() || b.is_nan() {
        let nan = propagate(a, b);
        if ca == Class::SNaN || cb == Class::SNaN {
            return Some(Out::fault(exc::IE, nan, env));
        }
        return Some(Out::exact(nan));
    }
    None
}

/// Screens one operand. `Some` when the outcome is decided.
pub fn screen_nan1(a: F80, env: Env) -> Option<Out> {
    match a.class() {
        Class::Unsupported => Some(Out::invalid(env)),
        Class::SNaN => Some(Out::fault(exc::IE, a.quiet(), env)),
        Class::QNaN => Some(Out::exact(a)),
        _ => None,
    }
}

/// DE for denormal operands; `Err` when it is unmasked (the operation stops).
pub fn denormal_check(ops: &[F80], env: Env) -> Result<u16, Out> {
    if ops.iter().any(|v| v.class() == Class::Denormal) {
        if env.traps(exc::DE) {
            return Err(Out { val: None, flags: exc::DE, up: false });
        }
        return Ok(exc::DE);
    }
    Ok(0)
}

/// a + b, or a − b when `sub`.
pub fn add(a: F80, b: F80, sub: bool, env: Env) -> Out {
    if let Some(o) = screen_nan2(a, b, env) {
        return o;
    }
    let b = if sub { b.with_sign(!b.sign()) } else { b };
    let (ca, cb) = (a.class(), b.class());
    if ca == Class::Infinity || cb == Class::Infinity {
        if ca == Class::Infinity && cb == Class::Infinity && a.sign() != b.sign() {
            return Out::invalid(env);
        }
        let de = match denormal_check(&[a, b], env) {
            Ok(f) => f,
            Err(o) => return o,
        };
        return Out::exact(if ca == Class::Infinity { a } else { b }).with(de);
    }
    let de = match denormal_check(&[a, b], env) {
        Ok(f) => f,
        Err(o) => return o,
    };
    match (ca == Class::Zero, cb == Class::Zero) {
        (true, true) => {
            let sign = if a.sign() == b.sign() { a.sign() } else { env.rc == Rc::Down };
            return Out::exact(F80::zero(sign)).with(de);
        }
        (true, false) => return round_value(b, env).with(de),
        (false, true) => return round_value(a, env).with(de),
        _ => {}
    }
    let (mut x, mut y) = (a.unpack(), b.unpack());
    if y.exp > x.exp || (y.exp == x.exp && y.sig > x.sig) {
        core::mem::swap(&mut x, &mut y);
    }
    let d = (x.exp - y.exp) as u32;
    let vx = u128::from(x.sig) << 63;
    let vy = shr_jam(u128::from(y.sig) << 63, d);
    let exp = x.exp + 1;
    if x.sign == y.sign {
        finish(x.sign, exp, vx + vy, env).with(de)
    } else {
        let v = vx - vy;
        if v == 0 {
            return Out::exact(F80::zero(env.rc == Rc::Down)).with(de);
        }
        finish(x.sign, exp, v, env).with(de)
    }
}

/// a × b.
pub fn mul(a: F80, b: F80, env: Env) -> Out {
    if let Some(o) = screen_nan2(a, b, env) {
        return o;
    }
    let sign = a.sign() != b.sign();
    let (ca, cb) = (a.class(), b.class());
    let inf = ca == Class::Infinity || cb == Class::Infinity;
    let zero = ca == Class::Zero || cb == Class::Zero;
    if inf && zero {
        return Out::invalid(env);
    }
    let de = match denormal_check(&[a, b], env) {
        Ok(f) => f,
        Err(o) => return o,
    };
    if inf {
        return Out::exact(F80::infinity(sign)).with(de);
    }
    if zero {
        return Out::exact(F80::zero(sign)).with(de);
    }
    let (x, y) = (a.unpack(), b.unpack());
    let v = u128::from(x.sig) * u128::from(y.sig);
    finish(sign, x.exp + y.exp - BIAS + 1, v, env).with(de)
}

/// a ÷ b.
pub fn div(a: F80, b: F80, env: Env) -> Out {
    if let Some(o) = screen_nan2(a, b, env) {
        return o;
    }
    let sign = a.sign() != b.sign();
    let (ca, cb) = (a.class(), b.class());
    if (ca == Class::Infinity && cb == Class::Infinity) || (ca == Class::Zero && cb == Class::Zero) {
        return Out::invalid(env);
    }
    let de = match denormal_check(&[a, b], env) {
        Ok(f) => f,
        Err(o) => return o,
    };
    if ca == Class::Infinity {
        return Out::exact(F80::infinity(sign)).with(de);
    }
    if cb == Class::Infinity || ca == Class::Zero {
        return Out::exact(F80::zero(sign)).with(de);
    }
    if cb == Class::Zero {
        return Out::fault(exc::ZE, F80::infinity(sign), env).with(de);
    }
    let (x, y) = (a.unpack(), b.unpack());
    finish(sign, x.exp - y.exp + BIAS, div_sig(x.sig, y.sig), env).with(de)
}

/// (x × 2^127) / y for normalized 64-bit significands, as a 128-bit quotient with a sticky bit
/// (in (2^126, 2^128)).
pub fn div_sig(x: u64, y: u64) -> u128 {
    let n = u128::from(x) << 63;
    let y = u128::from(y);
    let (q1, r1) = (n / y, n % y);
    let n2 = r1 << 64;
    let (q2, r2) = (n2 / y, n2 % y);
    (q1 << 64) | q2 | u128::from(r2 != 0)
}

/// √a.
pub fn sqrt(a: F80, env: Env) -> Out {
    if let Some(o) = screen_nan1(a, env) {
        return o;
    }
    match a.class() {
        Class::Zero => return Out::exact(a),
        Class::Infinity if !a.sign() => return Out::exact(a),
        _ if a.sign() => return Out::invalid(env),
        _ => {}
    }
    let de = match denormal_check(&[a], env) {
        Ok(f) => f,
        Err(o) => return o,
    };
    let u = a.unpack();
    let t = u.exp - BIAS - 63;
    let s: u32 = if t.rem_euclid(2) == 1 { 63 } else { 64 };
    // value = n × 2^(t − s) with t − s even.
    let n = u128::from(u.sig) << s;
    let r = n.isqrt();
    let rem = n - r * r;
    let extra: u128 = if rem > r { (1 << 63) | 1 } else { u128::from(rem != 0) };
    let half = (t - s as i32) / 2;
    let v = (r << 64) | extra;
    finish(false, BIAS + 63 + half, v, env).with(de)
}

/// The outcome of a comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    /// a < b.
    Less,
    /// a = b.
    Equal,
    /// a > b.
    Greater,
    /// A NaN or unsupported operand.
    Unordered,
}

/// Compares a with b. `quiet` (FUCOM, FUCOMI) raises IE only for signaling NaNs and
/// unsupported encodings; otherwise any NaN raises it. Returns the result and the flags; with
/// an unmasked IE or DE the instruction leaves the condition codes alone (`None`).
pub fn compare(a: F80, b: F80, quiet: bool, env: Env) -> (Option<Cmp>, u16) {
    let (ca, cb) = (a.class(), b.class());
    if matches!(ca, Class::Unsupported | Class::SNaN | Class::QNaN)
        || matches!(cb, Class::Unsupported | Class::SNaN | Class::QNaN)
    {
        let signal = !quiet
            || matches!(ca, Class::Unsupported | Class::SNaN)
            || matches!(cb, Class::Unsupported | Class::SNaN);
        if signal {
            return (if env.traps(exc::IE) { None } else { Some(Cmp::Unordered) }, exc::IE);
        }
        return (Some(Cmp::Unordered), 0);
    }
    let de = match denormal_check(&[a, b], env) {
        Ok(f) => f,
        Err(_) => return (None, exc::DE),
    };
    (Some(order(a, b)), de)
}

/// Orders two ordered (non-NaN, supported) values.
pub fn order(a: F80, b: F80) -> Cmp {
    let key = |v: F80| -> (i8, i32, u64) {
        match v.class() {
            Class::Zero => (0, 0, 0),
            Class::Infinity => (if v.sign() { -2 } else { 2 }, 0, 0),
            _ => {
                let u = v.unpack();
                (if u.sign { -1 } else { 1 }, u.exp, u.sig)
            }
        }
    };
    let (ka, kb) = (key(a), key(b));
    let ord = match ka.0.cmp(&kb.0) {
        Ordering::Equal if ka.0 == 1 => (ka.1, ka.2).cmp(&(kb.1, kb.2)),
        Ordering::Equal if ka.0 == -1 => (kb.1, kb.2).cmp(&(ka.1, ka.2)),
        o => o,
    };
    match ord {
        Ordering::Less => Cmp::Less,
        Ordering::Equal => Cmp::Equal,
        Ordering::Greater => Cmp::Greater,
    }
}

/// FRNDINT: rounds to an integral value in the rounding mode (precision control does not
/// apply).
pub fn round_int(a: F80, env: Env) -> Out {
    if let Some(o) = screen_nan1(a, env) {
        return o;
    }
    if matches!(a.class(), Class::Zero | Class::Infinity) {
        return Out::exact(a);
    }
    let de = match denormal_check(&[a], env) {
        Ok(f) => f,
        Err(o) => return o,
    };
    let u = a.unpack();
    if u.exp >= BIAS + 63 {
        return Out::exact(F80::new(u.sign, u.exp as u16, u.sig)).with(de);
    }
    match float80::round_to_u64(a, env.rc) {
        Some((mag, inexact, up)) => {
            let mut v = float80::from_i64(mag as i64);
            if mag >> 63 != 0 {
                v = F80::new(false, (BIAS + 63) as u16, mag);
            }
            let v = v.with_sign(u.sign);
            Out { val: Some(v), flags: de | if inexact { exc::PE } else { 0 }, up }
        }
        // Unreachable for exponents below 63, kept total: the value is already integral.
        None => Out::exact(a).with(de),
    }
}

/// The outcome of FPREM/FPREM1: the new ST(0) and the low three quotient bits, and whether
/// the reduction is complete (C2 clear).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rem {
    /// The outcome for ST(0).
    pub out: Out,
    /// Quotient bits q2 q1 q0 (to C0, C3, C1); zero for a partial reduction.
    pub q: u8,
    /// The reduction is not finished (C2 = 1).
    pub partial: bool,
}

/// FPREM (`ieee` false: quotient truncated toward zero) and FPREM1 (`ieee` true: quotient
/// rounded to nearest-even), SDM Vol. 2 FPREM/FPREM1. When the exponents differ by 64 or more
/// the instruction only reduces the exponent, by an implementation-dependent N between 32 and
/// 63, with a truncated quotient, sets C2 and clears C0, C3 and C1; bt86 takes
/// N = 32 + (d mod 32), the choice AMD documents and Intel processors follow, which makes the
/// last step of a reduction loop yield the correct low quotient bits.
pub fn rem(a: F80, b: F80, ieee: bool, env: Env) -> Rem {
    let env = env.full();
    let done = |out: Out| Rem { out, q: 0, partial: false };
    if let Some(o) = screen_nan2(a, b, env) {
        return done(o);
    }
    let (ca, cb) = (a.class(), b.class());
    if ca == Class::Infinity || cb == Class::Zero {
        return done(Out::invalid(env));
    }
    let de = match denormal_check(&[a, b], env) {
        Ok(f) => f,
        Err(o) => return done(o),
    };
    if cb == Class::Infinity || ca == Class::Zero {
        return done(round_value(a, env).with(de));
    }
    let (x, y) = (a.unpack(), b.unpack());
    let d = x.exp - y.exp;
    // |a| = num × 2^(unit − BIAS − 63) and the divisor den in the same unit.
    let (num, den, unit, nearest, partial) = if d >= 64 {
        let n = 32 + (d % 32);
        (u128::from(x.sig) << n, u128::from(y.sig), x.exp - n, false, true)
    } else if d >= 0 {
        (u128::from(x.sig) << d, u128::from(y.sig), y.exp, ieee, false)
    } else if d == -1 && ieee {
        (u128::from(x.sig), u128::from(y.sig) << 1, x.exp, true, false)
    } else {
        // |a| < |b| / 2 (or FPREM with |a| < |b|): the quotient is 0 and the remainder a.
        return done(round_value(a, env).with(de));
    };
    let (q, mut r) = (num / den, num % den);
    let mut q = q;
    let mut sign = x.sign;
    if nearest {
        let twice = r << 1;
        if twice > den || (twice == den && q & 1 == 1) {
            q += 1;
            r = den - r;
            sign = !sign;
        }
    }
    let out = if r == 0 {
        Out::exact(F80::zero(x.sign))
    } else {
        // r < 2^65: r × 2^(unit − BIAS − 63) = (r × 2^62) × 2^((unit + 2) − BIAS − 127).
        finish(sign, unit + 2, r << 62, env)
    };
    let q = if partial { 0 } else { (q & 7) as u8 };
    Rem { out: out.with(de), q, partial }
}

/// FSCALE: a × 2^trunc(b) (SDM Vol. 2 FSCALE, Table 3-48 for the special operands). The
/// scale is clamped to ±2^17, far beyond what any finite result needs.
pub fn scale(a: F80, b: F80, env: Env) -> Out {
    if let Some(o) = screen_nan2(a, b, env) {
        return o;
    }
    let (ca, cb) = (a.class(), b.class());
    if cb == Class::Infinity {
        return match (ca, b.sign()) {
            (Class::Zero, false) | (Class::Infinity, true) => Out::invalid(env),
            (Class::Zero | Class::Infinity, _) => Out::exact(a),
            _ => match denormal_check(&[a], env) {
                Err(o) => o,
                Ok(de) if b.sign() => Out::exact(F80::zero(a.sign())).with(de),
                Ok(de) => Out::exact(F80::infinity(a.sign())).with(de),
            },
        };
    }
    let de = match denormal_check(&[a, b], env) {
        Ok(f) => f,
        Err(o) => return o,
    };
    if matches!(ca, Class::Zero | Class::Infinity) {
        return Out::exact(a).with(de);
    }
    const LIMIT: u64 = 1 << 17;
    let n = match float80::round_to_u64(b, Rc::Zero) {
        Some((m, _, _)) => m.min(LIMIT) as i32,
        None => LIMIT as i32,
    };
    let n = if b.sign() { -n } else { n };
    let u = a.unpack();
    finish(u.sign, u.exp + n, u128::from(u.sig) << 64, env).with(de)
}

/// FXTRACT: splits a into its exponent (as a value) and its significand (with exponent 0),
/// returned as (exponent, significand, flags); `None` after an unmasked pre-computation
/// exception. A zero operand raises the zero-divide exception and gives −∞ and the zero.
pub fn xtract(a: F80, env: Env) -> (Option<F80>, Option<F80>, u16) {
    if let Some(o) = screen_nan1(a, env) {
        return (o.val, o.val, o.flags);
    }
    match a.class() {
        Class::Zero => {
            let o = Out::fault(exc::ZE, F80::infinity(true), env);
            return (o.val, o.val.map(|_| a), o.flags);
        }
        Class::Infinity => return (Some(F80::infinity(false)), Some(a), 0),
        _ => {}
    }
    let de = match denormal_check(&[a], env) {
        Ok(f) => f,
        Err(o) => return (None, None, o.flags),
    };
    let u = a.unpack();
    let e = float80::from_i64(i64::from(u.exp - BIAS));
    (Some(e), Some(F80::new(u.sign, BIAS as u16, u.sig)), de)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEAR: Env = Env { fmt: Format::EXTENDED, rc: Rc::Nearest, masks: 0x3F };

    fn f(v: i64) -> F80 {
        float80::from_i64(v)
    }

    fn val(o: Out) -> F80 {
        o.val.expect("a result")
    }

    #[test]
    fn basic_exact() {
        assert_eq!(val(add(f(1), f(2), false, NEAR)), f(3));
        assert_eq!(val(add(f(1), f(2), true, NEAR)), f(-1));
        assert_eq!(val(mul(f(-6), f(7), NEAR)), f(-42));
        assert_eq!(val(div(f(42), f(-6), NEAR)), f(-7));
        assert_eq!(val(sqrt(f(144), NEAR)), f(12));
        assert_eq!(val(add(f(5), f(-5), false, NEAR)), F80::ZERO);
        let down = Env { rc: Rc::Down, ..NEAR };
        assert_eq!(val(add(f(5), f(-5), false, down)), F80::zero(true));
    }

    #[test]
    fn division_rounds_in_each_mode() {
        // 1/3 = 0.AAAA…AA|AA… ×2^-1: nearest and up round the last bit up, down and zero not.
        let third = |rc| val(div(f(1), f(3), Env { rc, ..NEAR }));
        assert_eq!(third(Rc::Nearest), F80::new(false, 0x3FFD, 0xAAAA_AAAA_AAAA_AAAB));
        assert_eq!(third(Rc::Up), F80::new(false, 0x3FFD, 0xAAAA_AAAA_AAAA_AAAB));
        assert_eq!(third(Rc::Down), F80::new(false, 0x3FFD, 0xAAAA_AAAA_AAAA_AAAA));
        assert_eq!(third(Rc::Zero), F80::new(false, 0x3FFD, 0xAAAA_AAAA_AAAA_AAAA));
        // 24-bit and 53-bit precision.
        let p24 = Env { fmt: Format::register(0), ..NEAR };
        assert_eq!(val(div(f(1), f(3), p24)), F80::new(false, 0x3FFD, 0xAAAA_AB00_0000_0000));
        let p53 = Env { fmt: Format::register(2), ..NEAR };
        assert_eq!(val(div(f(1), f(3), p53)), F80::new(false, 0x3FFD, 0xAAAA_AAAA_AAAA_A800));
        let o = div(f(1), f(3), NEAR);
        assert_eq!((o.flags, o.up), (exc::PE, true));
    }

    #[test]
    fn special_operands() {
        let inf = F80::infinity(false);
        assert_eq!(val(add(inf, inf, true, NEAR)), F80::INDEFINITE);
        assert_eq!(add(inf, inf, true, NEAR).flags, exc::IE);
        assert_eq!(val(mul(inf, F80::ZERO, NEAR)), F80::INDEFINITE);
        let z = div(f(1), F80::ZERO, NEAR);
        assert_eq!((val(z), z.flags), (inf, exc::ZE));
        let unmasked = Env { masks: 0, ..NEAR };
        assert_eq!(div(f(1), F80::ZERO, unmasked).val, None);
        assert_eq!(val(sqrt(f(-1), NEAR)), F80::INDEFINITE);
        assert_eq!(val(sqrt(F80::zero(true), NEAR)), F80::zero(true));
        let snan = F80::new(false, 0x7FFF, INT_BIT | 1);
        let q = add(snan, f(1), false, NEAR);
        assert_eq!((val(q), q.flags), (snan.quiet(), exc::IE));
        let qnan = F80::new(true, 0x7FFF, 0xC000_0000_0000_0005);
        assert_eq!(add(qnan, f(1), false, NEAR), Out::exact(qnan));
        let unnormal = F80::new(false, 0x3FFF, 1);
        assert_eq!(val(add(unnormal, f(1), false, NEAR)), F80::INDEFINITE);
        let den = F80::new(false, 0, 1);
        let o = add(den, den, false, NEAR);
        assert_eq!((val(o), o.flags), (F80::new(false, 0, 2), exc::DE));
        let pseudo = F80::new(false, 0, INT_BIT);
        let o = add(pseudo, F80::ZERO, false, NEAR);
        assert_eq!((val(o), o.flags), (F80::new(false, 1, INT_BIT), exc::DE));
        assert_eq!(add(den, f(1), false, Env { masks: 0x3D, ..NEAR }).val, None);
    }

    #[test]
    fn comparisons() {
        assert_eq!(compare(f(1), f(2), false, NEAR), (Some(Cmp::Less), 0));
        assert_eq!(compare(f(-1), f(-2), false, NEAR), (Some(Cmp::Greater), 0));
        assert_eq!(compare(F80::zero(true), F80::ZERO, false, NEAR), (Some(Cmp::Equal), 0));
        let qnan = F80::INDEFINITE;
        assert_eq!(compare(qnan, f(1), false, NEAR), (Some(Cmp::Unordered), exc::IE));
        assert_eq!(compare(qnan, f(1), true, NEAR), (Some(Cmp::Unordered), 0));
        let inf = F80::infinity(true);
        assert_eq!(compare(inf, f(-7), true, NEAR), (Some(Cmp::Less), 0));
    }

    #[test]
    fn round_to_integral() {
        let x = val(div(f(7), f(2), NEAR)); // 3.5
        assert_eq!(val(round_int(x, NEAR)), f(4));
        assert_eq!(val(round_int(x, Env { rc: Rc::Zero, ..NEAR })), f(3));
        assert_eq!(val(round_int(x.with_sign(true), Env { rc: Rc::Up, ..NEAR })), f(-3));
        let small = val(div(f(1), f(4), NEAR));
        assert_eq!(val(round_int(small.with_sign(true), NEAR)), F80::zero(true));
    }

    #[test]
    fn partial_remainders() {
        // 17 rem 5: q = 3, r = 2. FPREM1: q = 3 (17/5 = 3.4), r = 2.
        let r = rem(f(17), f(5), false, NEAR);
        assert_eq!((val(r.out), r.q, r.partial), (f(2), 3, false));
        // 18 rem 5: FPREM q = 3 r = 3; FPREM1 q = 4 r = −2.
        let r = rem(f(18), f(5), true, NEAR);
        assert_eq!((val(r.out), r.q), (f(-2), 4));
        let r = rem(f(-18), f(5), false, NEAR);
        assert_eq!((val(r.out), r.q), (f(-3), 3));
        // A huge exponent difference: partial.
        let big = F80::new(false, 0x3FFF + 100, INT_BIT | 12345);
        let r = rem(big, f(3), false, NEAR);
        assert!(r.partial);
        // FPREM1 with |a| just above |b|/2: 3 rem1 5 → −2, q = 1.
        let r = rem(f(3), f(5), true, NEAR);
        assert_eq!((val(r.out), r.q), (f(-2), 1));
        let r = rem(f(2), f(5), true, NEAR);
        assert_eq!((val(r.out), r.q), (f(2), 0));
    }

    #[test]
    fn scale_and_extract() {
        let x = val(div(f(3), f(2), NEAR)); // 1.5
        assert_eq!(val(scale(x, f(3), NEAR)), f(12));
        assert_eq!(val(scale(f(12), f(-3), NEAR)), x);
        // 2.9 truncates to 2.
        let s = val(div(f(29), f(10), NEAR));
        assert_eq!(val(scale(f(1), s, NEAR)), f(4));
        // Far below the normal range: a denormal with underflow.
        // 3 × 2^-16446 = 1.5 units of the smallest denormal: ties to even, 2 units.
        let d = scale(f(3), f(-16446), NEAR);
        assert_eq!((val(d), d.flags), (F80::new(false, 0, 2), exc::UE | exc::PE));
        let d = scale(f(3), f(-16445), NEAR);
        assert_eq!((val(d), d.flags), (F80::new(false, 0, 3), 0));
        let o = scale(f(1), f(20000), NEAR);
        assert_eq!((val(o), o.flags), (F80::infinity(false), exc::OE | exc::PE));
        assert_eq!(val(scale(F80::ZERO, F80::infinity(false), NEAR)), F80::INDEFINITE);
        assert_eq!(val(scale(f(-5), F80::infinity(true), NEAR)), F80::zero(true));
        assert_eq!(xtract(f(12), NEAR), (Some(f(3)), Some(x.with_sign(false)), 0));
        assert_eq!(xtract(f(-12), NEAR).1, Some(x.with_sign(true)));
        let (e, m, flags) = xtract(F80::zero(true), NEAR);
        assert_eq!((e, m, flags), (Some(F80::infinity(true)), Some(F80::zero(true)), exc::ZE));
        // A denormal's exponent is that of its normalized value.
        let (e, _, flags) = xtract(F80::new(false, 0, 1), NEAR);
        assert_eq!((e, flags), (Some(f(-16445)), exc::DE));
    }

    #[test]
    fn square_root_rounds_once() {
        assert_eq!(val(sqrt(f(2), NEAR)), F80::new(false, 0x3FFF, 0xB504_F333_F9DE_6484));
        let up = Env { rc: Rc::Up, ..NEAR };
        assert_eq!(val(sqrt(f(2), up)), F80::new(false, 0x3FFF, 0xB504_F333_F9DE_6485));
        let p24 = Env { fmt: Format::register(0), ..NEAR };
        assert_eq!(val(sqrt(f(2), p24)), F80::new(false, 0x3FFF, 0xB504_F300_0000_0000));
    }
}
