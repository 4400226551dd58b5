//! Kernel "pm-fpu": the x87 FPU (Intel SDM Vol. 1 chapter 8 and §4.8–4.9; Vol. 2, the page of
//! each F… instruction; Vol. 3A §2.5 for CR0.NE/TS/MP and §6.15 for #MF and #NM).
//!
//! - Arithmetic in every rounding mode (RC) and precision (PC): FADD, FSUB, FSUBR, FMUL,
//!   FDIV, FDIVR in register, popping and memory forms and FSQRT, from a table of exact
//!   results (`fpu_vectors.rs`, generated with exact rational arithmetic by
//!   `guest-images/tools/fpu_vectors.py`); the result, PE, and C1 (set when the result was
//!   rounded up).
//! - Loads, stores and conversions: FIST in each RC, integer overflow (the integer indefinite),
//!   FST to single and double with rounding, overflow and denormals, FLD of a single denormal
//!   (DE) and of a signaling NaN (IE), FBLD/FBSTP.
//! - Comparisons (C3 C2 C0 and ZF PF CF), ordered and unordered, FTST, FXAM.
//! - The register stack: overflow and underflow (IE and SF, C1), FXCH, FFREE, FINCSTP,
//!   FDECSTP, FCMOVcc.
//! - FNSTENV (28- and 14-byte protected-mode layouts, then all exceptions masked),
//!   FSAVE/FRSTOR round trip, FNINIT.
//! - Exceptions: unmasked ones raise #MF (CR0.NE = 1) at the next waiting instruction, not
//!   at the one that caused them; non-waiting instructions never do; pre-computation
//!   exceptions leave the destination alone, PE stores the result.
//! - FPREM/FPREM1 (quotient bits, incomplete reduction), FSCALE, FXTRACT, FRNDINT, the
//!   constants in each rounding mode, FCHS/FABS.
//! - Transcendentals against values computed at high precision with mpmath
//!   (`emu-core/tools/x87_vectors.py`), within one unit in the last place of the 64-bit
//!   significand for FPATAN, F2XM1, FYL2X and FYL2XP1. FSIN, FCOS, FSINCOS and FPTAN are
//!   checked within 2^12 units only: QEMU computes them through the host's double-precision
//!   libm (53 bits), which a real x87 does not; the 1-ulp checks for them are in bt86's unit
//!   tests. The out-of-range rule (|x| ≥ 2^63: C2 = 1, ST(0) unchanged) is checked exactly.

use iced_x86::code_asm::*;

use super::fpu_vectors::ARITH;
use super::rt::*;
use crate::asm::{flags, Asm, Mem32};

/// Where results are stored and read back from.
const OUT: u32 = TEST_VARS;
/// A second result area.
const OUT2: u32 = TEST_VARS + 0x10;
/// A scratch word for FNSTSW / FLDCW.
const WORD: u32 = TEST_VARS + 0x20;
/// The FNSTENV/FNSAVE image (108 bytes).
const IMAGE: u32 = SCRATCH;

/// Status word bits.
const IE: u32 = 1 << 0;
const ZE: u32 = 1 << 2;
const OE: u32 = 1 << 3;
const UE: u32 = 1 << 4;
const PE: u32 = 1 << 5;
const ES: u32 = 1 << 7;
const C0: u32 = 1 << 8;
const C1: u32 = 1 << 9;
const C2: u32 = 1 << 10;
const C3: u32 = 1 << 14;
const B: u32 = 1 << 15;
const CC: u32 = C0 | C1 | C2 | C3;

/// Control word with every exception masked, 64-bit precision, and rounding control `rc`.
const fn cw(rc: u32) -> u32 {
    0x037F | (rc << 10)
}

/// The two-operand operations of the arithmetic table (and FSQRT, which uses only a).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    Add,
    Sub,
    SubR,
    Mul,
    Div,
    DivR,
    Sqrt,
}

/// One row of the arithmetic table: operation, control word, a, b, result (sign/exponent and
/// significand), the expected C1 and PE bits, name.
pub(super) type ArithCase = (Op, u16, (u16, u64), (u16, u64), (u16, u64), u16, &'static str);

/// The ten bytes of an extended value.
fn ext(se: u16, sig: u64) -> Vec<u8> {
    let mut v = sig.to_le_bytes().to_vec();
    v.extend_from_slice(&se.to_le_bytes());
    v
}

/// The address of a 10-byte extended constant emitted after the code.
fn ext_at(p: &mut Program, se: u16, sig: u64) -> u32 {
    let l = p.blob(ext(se, sig));
    p.addr(l)
}

/// The address of arbitrary constant bytes emitted after the code.
fn bytes_at(p: &mut Program, bytes: &[u8]) -> u32 {
    let l = p.blob(bytes.to_vec());
    p.addr(l)
}

/// FNINIT and FLDCW `control`.
fn init(p: &mut Program, control: u32) -> Asm {
    p.a.fninit()?;
    p.a.mov(word_ptr(WORD), control)?;
    p.a.fldcw(word_ptr(WORD))
}

/// FLD of the extended constant (se, sig).
fn load(p: &mut Program, se: u16, sig: u64) -> Asm {
    let at = ext_at(p, se, sig);
    p.a.fld(tword_ptr(at))
}

/// FLD of a small integer (through FILD).
fn load_int(p: &mut Program, v: i32) -> Asm {
    let at = bytes_at(p, &v.to_le_bytes());
    p.a.fild(dword_ptr(at))
}

/// Checks the status word bits in `mask` (FNSTSW to memory, so that no general register
/// ever holds the bits left out: `bt86 diff` compares the general registers with QEMU's).
fn check_sw(p: &mut Program, mask: u32, want: u32, name: &str) -> Asm {
    p.a.fnstsw(word_ptr(WORD))?;
    check_bits(p, WORD, mask, want, name)
}

/// Checks `(dword at addr) & mask == want`, loading only the masked bits into EAX.
fn check_bits(p: &mut Program, addr: u32, mask: u32, want: u32, name: &str) -> Asm {
    p.a.mov(eax, mask)?;
    p.a.and(eax, dword_ptr(addr))?;
    p.check_eax(want, name)
}

/// FSTP ST(0) to [`OUT`] as an extended value and checks it (significand, then sign and
/// exponent).
fn check_st0(p: &mut Program, se: u16, sig: u64, name: &str) -> Asm {
    p.a.fstp(tword_ptr(OUT))?;
    check_out(p, OUT, se, sig, name)
}

/// Checks the extended value at `at`.
fn check_out(p: &mut Program, at: u32, se: u16, sig: u64, name: &str) -> Asm {
    p.check(Mem32(at), sig as u32, &format!("{name}: significand low"))?;
    p.check(Mem32(at + 4), (sig >> 32) as u32, &format!("{name}: significand high"))?;
    check_bits(p, at + 8, 0xFFFF, u32::from(se), &format!("{name}: sign and exponent"))
}

/// Checks that ST(0) is within `ulps` (a power of two) units in the last place of (se, sig),
/// and pops it. The comparison runs on the FPU (|ST(0) − want| against the tolerance, FCOMIP)
/// so that the value itself never reaches a general register, where `bt86 diff` would see the
/// two implementations' different last bits.
fn check_near(p: &mut Program, se: u16, sig: u64, ulps: u32, name: &str) -> Asm {
    let want = ext_at(p, se, sig);
    let tol_exp = (se & 0x7FFF) - 63 + ulps.trailing_zeros() as u16;
    let tol = ext_at(p, tol_exp, 0x8000_0000_0000_0000);
    p.a.fld(tword_ptr(want))?;
    p.a.fsubp(st1, st0)?;
    p.a.fabs()?;
    p.a.fld(tword_ptr(tol))?;
    p.a.fcomip(st0, st1)?; // CF = tolerance < |difference|; ZF PF CF all set: a NaN
    p.a.fstp(st0)?;
    p.a.mov(eax, 0)?;
    p.a.setae(al)?;
    p.check_eax(1, &format!("{name}: within {ulps} ulp of {se:04x}:{sig:016x}"))
}

pub(super) fn run(p: &mut Program) -> Asm {
    p.section("arithmetic in every rounding and precision mode", arithmetic)?;
    p.section("loads, stores and conversions", conversions)?;
    p.section("comparisons and fxam", comparisons)?;
    p.section("the register stack", stack)?;
    p.section("fnstenv, fsave and frstor", environment)?;
    p.section("exceptions: #MF with cr0.ne = 1, #NM", exceptions)?;
    p.section("fprem, fprem1, fscale, fxtract, frndint, constants", misc)?;
    p.section("transcendentals", transcendentals)
}

// ---------------------------------------------------------------------------------------------

fn arithmetic(p: &mut Program) -> Asm {
    for (n, &(op, control, a, b, want, sw, name)) in ARITH.iter().enumerate() {
        init(p, u32::from(control))?;
        let a_at = ext_at(p, a.0, a.1);
        let b_at = ext_at(p, b.0, b.1);
        if op == Op::Sqrt {
            p.a.fld(tword_ptr(a_at))?;
            p.a.fsqrt()?;
        } else {
            // QEMU 7.2 rounds a double operand to the precision control's precision before
            // the operation (the SDM has it converted exactly): the memory form is used
            // only where that makes no difference.
            let pc24 = control & 0x0300 == 0;
            let form = if n % 3 == 2 && pc24 && b.1 << 24 != 0 { n % 2 } else { n % 3 };
            match form {
                // ST(0) = a, ST(1) = b; op ST(0), ST(1).
                0 => {
                    p.a.fld(tword_ptr(b_at))?;
                    p.a.fld(tword_ptr(a_at))?;
                    match op {
                        Op::Add => p.a.fadd_2(st0, st1)?,
                        Op::Sub => p.a.fsub_2(st0, st1)?,
                        Op::SubR => p.a.fsubr_2(st0, st1)?,
                        Op::Mul => p.a.fmul_2(st0, st1)?,
                        Op::Div => p.a.fdiv_2(st0, st1)?,
                        _ => p.a.fdivr_2(st0, st1)?,
                    }
                }
                // ST(1) = a, ST(0) = b; opP ST(1), ST(0) (ST(1) ← ST(1) op ST(0), pop).
                1 => {
                    p.a.fld(tword_ptr(a_at))?;
                    p.a.fld(tword_ptr(b_at))?;
                    match op {
                        Op::Add => p.a.faddp(st1, st0)?,
                        Op::Sub => p.a.fsubp(st1, st0)?,
                        Op::SubR => p.a.fsubrp(st1, st0)?,
                        Op::Mul => p.a.fmulp(st1, st0)?,
                        Op::Div => p.a.fdivp(st1, st0)?,
                        _ => p.a.fdivrp(st1, st0)?,
                    }
                }
                // ST(0) = a; op m64fp (b is exact in double precision).
                _ => {
                    let bits = double_bits(b);
                    let m = bytes_at(p, &bits.to_le_bytes());
                    p.a.fld(tword_ptr(a_at))?;
                    match op {
                        Op::Add => p.a.fadd(qword_ptr(m))?,
                        Op::Sub => p.a.fsub(qword_ptr(m))?,
                        Op::SubR => p.a.fsubr(qword_ptr(m))?,
                        Op::Mul => p.a.fmul(qword_ptr(m))?,
                        Op::Div => p.a.fdiv(qword_ptr(m))?,
                        _ => p.a.fdivr(qword_ptr(m))?,
                    }
                }
            }
        }
        check_sw(p, PE, u32::from(sw) & PE, &format!("{name}: pe"))?;
        check_st0(p, want.0, want.1, name)?;
    }
    Ok(())
}

/// The double-precision encoding of an extended value known to be exact in double.
fn double_bits((se, sig): (u16, u64)) -> u64 {
    let sign = u64::from(se >> 15) << 63;
    let e = i64::from(se & 0x7FFF) - 16383 + 1023;
    assert!(sig << 53 == 0 && (1..2047).contains(&e), "not a double: {se:04x}:{sig:016x}");
    sign | ((e as u64) << 52) | ((sig >> 11) & 0x000F_FFFF_FFFF_FFFF)
}

// ---------------------------------------------------------------------------------------------

fn conversions(p: &mut Program) -> Asm {
    // FISTP m32 of ±2.5 in each rounding mode (SDM Vol. 1 Table 4-8).
    for (rc, pos, neg) in [(0, 2, -2), (1, 2, -3), (2, 3, -2), (3, 2, -2)] {
        for (value, want) in [(0x4000u16, pos), (0xC000, neg)] {
            init(p, cw(rc))?;
            load(p, value, 0xA000_0000_0000_0000)?;
            p.a.fistp(dword_ptr(OUT))?;
            let sign = if value & 0x8000 != 0 { "-" } else { "" };
            p.check(Mem32(OUT), want as u32, &format!("fistp {sign}2.5 rc{rc}"))?;
            check_sw(p, PE, PE, &format!("fistp {sign}2.5 rc{rc}: pe"))?;
        }
    }
    // FIST m16 of 40000: out of range → the integer indefinite 8000h and IE.
    init(p, cw(0))?;
    load_int(p, 40000)?;
    p.a.mov(dword_ptr(OUT), 0x1234_5678)?;
    p.a.fist(word_ptr(OUT))?;
    p.check(Mem32(OUT), 0x1234_8000, "fist m16 of 40000: integer indefinite")?;
    check_sw(p, IE | PE, IE, "fist m16 of 40000: ie")?;
    // FISTP m64 of −2^63 exactly.
    init(p, cw(0))?;
    load(p, 0xC03E, 0x8000_0000_0000_0000)?;
    p.a.fistp(qword_ptr(OUT))?;
    p.check(Mem32(OUT), 0, "fistp m64 of -2^63: low")?;
    p.check(Mem32(OUT + 4), 0x8000_0000, "fistp m64 of -2^63: high")?;
    check_sw(p, IE, 0, "fistp m64 of -2^63: no ie")?;
    // FILD m64 of −1 and of 2^63 − 1 (exact: 64 significand bits).
    init(p, cw(0))?;
    let m = bytes_at(p, &i64::MAX.to_le_bytes());
    p.a.fild(qword_ptr(m))?;
    check_st0(p, 0x403D, 0xFFFF_FFFF_FFFF_FFFE, "fild m64 of 2^63-1")?;
    let m = bytes_at(p, &(-1i16).to_le_bytes());
    p.a.fild(word_ptr(m))?;
    check_st0(p, 0xBFFF, 0x8000_0000_0000_0000, "fild m16 of -1")?;

    // FST m32/m64 of 1/3 in nearest and toward zero.
    for (rc, single, double) in
        [(0u32, 0x3EAA_AAABu32, 0x3FD5_5555_5555_5555u64), (3, 0x3EAA_AAAA, 0x3FD5_5555_5555_5555)]
    {
        init(p, cw(rc))?;
        p.a.fld1()?;
        load_int(p, 3)?;
        p.a.fdivp(st1, st0)?;
        p.a.fst(dword_ptr(OUT))?;
        p.check(Mem32(OUT), single, &format!("fst m32 of 1/3 rc{rc}"))?;
        p.a.fstp(qword_ptr(OUT))?;
        p.check(Mem32(OUT), double as u32, &format!("fst m64 of 1/3 rc{rc}: low"))?;
        p.check(Mem32(OUT + 4), (double >> 32) as u32, &format!("fst m64 of 1/3 rc{rc}: high"))?;
    }
    // FST m32 of 2^200: overflow → +∞, OE and PE (masked).
    init(p, cw(0))?;
    load(p, 0x3FFF + 200, 0x8000_0000_0000_0000)?;
    p.a.fstp(dword_ptr(OUT))?;
    p.check(Mem32(OUT), 0x7F80_0000, "fst m32 of 2^200: +inf")?;
    check_sw(p, OE | PE | UE, OE | PE, "fst m32 of 2^200: oe pe")?;
    // ... toward zero: the largest single.
    init(p, cw(3))?;
    load(p, 0x3FFF + 200, 0x8000_0000_0000_0000)?;
    p.a.fstp(dword_ptr(OUT))?;
    p.check(Mem32(OUT), 0x7F7F_FFFF, "fst m32 of 2^200 rc3: largest single")?;
    // FST m32 of 2^-140: an exact single denormal, no underflow (masked, exact).
    init(p, cw(0))?;
    load(p, 0x3FFF - 140, 0x8000_0000_0000_0000)?;
    p.a.fstp(dword_ptr(OUT))?;
    p.check(Mem32(OUT), 0x0000_0200, "fst m32 of 2^-140: denormal")?;
    check_sw(p, UE | PE, 0, "fst m32 of 2^-140: exact")?;
    // FST m32 of 3·2^-151: rounds to 2^-149·1 (nearest: 0.75 → 1), inexact: UE and PE.
    init(p, cw(0))?;
    load(p, 0x3FFF - 150, 0xC000_0000_0000_0000)?;
    p.a.fstp(dword_ptr(OUT))?;
    p.check(Mem32(OUT), 1, "fst m32 of 3*2^-151: smallest denormal")?;
    check_sw(p, UE | PE, UE | PE, "fst m32 of 3*2^-151: ue pe")?;
    // FLD m32 of the smallest denormal: DE, exact value 2^-149.
    init(p, cw(0))?;
    let m = bytes_at(p, &1u32.to_le_bytes());
    p.a.fld(dword_ptr(m))?;
    check_sw(p, IE, 0, "fld m32 denormal: no ie")?;
    check_st0(p, 0x3FFF - 149, 0x8000_0000_0000_0000, "fld m32 denormal")?;
    // FLD m64 of a signaling NaN: IE, the quiet NaN.
    init(p, cw(0))?;
    let m = bytes_at(p, &0x7FF4_0000_0000_0000u64.to_le_bytes());
    p.a.fld(qword_ptr(m))?;
    check_sw(p, IE, IE, "fld m64 snan: ie")?;
    check_st0(p, 0x7FFF, 0xE000_0000_0000_0000, "fld m64 snan: quieted")?;
    // FLD m80 of a signaling NaN: no exception, loaded as is.
    init(p, cw(0))?;
    load(p, 0x7FFF, 0xA000_0000_0000_0000)?;
    check_sw(p, IE, 0, "fld m80 snan: no ie")?;
    check_st0(p, 0x7FFF, 0xA000_0000_0000_0000, "fld m80 snan")?;
    // FBLD / FBSTP.
    init(p, cw(0))?;
    let bcd = [0x78, 0x56, 0x34, 0x12, 0x90, 0x78, 0x56, 0x34, 0x12, 0x80];
    let m = bytes_at(p, &bcd);
    p.a.fbld(tword_ptr(m))?;
    p.a.fld(st0)?;
    p.a.fbstp(tword_ptr(OUT2))?;
    p.check(Mem32(OUT2), 0x1234_5678, "fbstp: digits 0-7")?;
    p.check(Mem32(OUT2 + 4), 0x3456_7890, "fbstp: digits 8-15")?;
    check_bits(p, OUT2 + 8, 0xFFFF, 0x8012, "fbstp: digits 16-17 and sign")?;
    check_st0(p, 0xC037, 0xDB4D_A5D3_1879_A700, "fbld -123456789012345678")?;
    // FBSTP of 2.5 in nearest: 2, PE.
    init(p, cw(0))?;
    load(p, 0x4000, 0xA000_0000_0000_0000)?;
    p.a.fbstp(tword_ptr(OUT2))?;
    p.check(Mem32(OUT2), 2, "fbstp 2.5: 2")?;
    check_sw(p, PE, PE, "fbstp 2.5: pe")?;
    // FBSTP of 10^18: out of range → BCD indefinite, IE.
    init(p, cw(0))?;
    let m = bytes_at(p, &1_000_000_000_000_000_000i64.to_le_bytes());
    p.a.fild(qword_ptr(m))?;
    p.a.fbstp(tword_ptr(OUT2))?;
    check_bits(p, OUT2 + 4, 0xFF00_0000, 0xC000_0000, "fbstp 10^18: indefinite byte 7")?;
    check_bits(p, OUT2 + 8, 0xFFFF, 0xFFFF, "fbstp 10^18: indefinite bytes 8-9")?;
    check_sw(p, IE, IE, "fbstp 10^18: ie")
}

// ---------------------------------------------------------------------------------------------

fn comparisons(p: &mut Program) -> Asm {
    // FCOM ST(1): (ST(0), ST(1)) → C3 C2 C0.
    for (a, b, want, what) in
        [(1, 2, C0, "1 < 2"), (2, 1, 0, "2 > 1"), (5, 5, C3, "5 = 5"), (-3, 2, C0, "-3 < 2")]
    {
        init(p, cw(0))?;
        load_int(p, b)?;
        load_int(p, a)?;
        p.a.fcom_2(st0, st1)?;
        check_sw(p, C3 | C2 | C0 | IE, want, &format!("fcom {what}"))?;
        // FCOMI: ZF PF CF.
        p.a.fcomi(st0, st1)?;
        let f = match want {
            C0 => flags::CF,
            C3 => flags::ZF,
            _ => 0,
        };
        p.check_flags(
            flags::ZF | flags::PF | flags::CF | flags::OF | flags::SF | flags::AF,
            f,
            &format!("fcomi {what}"),
        )?;
    }
    // With a quiet NaN: unordered; FCOM raises IE, FUCOM does not.
    init(p, cw(0))?;
    load(p, 0x7FFF, 0xC000_0000_0000_0001)?;
    p.a.fld1()?;
    p.a.fucom(st0, st1)?;
    check_sw(p, C3 | C2 | C0 | IE, C3 | C2 | C0, "fucom 1, qnan: unordered, no ie")?;
    p.a.fcom_2(st0, st1)?;
    check_sw(p, C3 | C2 | C0 | IE, C3 | C2 | C0 | IE, "fcom 1, qnan: unordered, ie")?;
    p.a.fucomip(st0, st1)?;
    p.check_flags(flags::ZF | flags::PF | flags::CF, flags::ZF | flags::PF | flags::CF, "fucomip qnan")?;
    check_sw(p, 0x3800, 7 << 11, "fucomip pops: top 6 -> 7")?;
    // FCOMPP pops twice; FICOM m16.
    init(p, cw(0))?;
    load_int(p, 7)?;
    load_int(p, 7)?;
    p.a.fcompp()?;
    check_sw(p, C3 | C2 | C0 | 0x3800, C3, "fcompp 7 = 7, pops both")?;
    load_int(p, 9)?;
    let m = bytes_at(p, &10i16.to_le_bytes());
    p.a.ficom(word_ptr(m))?;
    check_sw(p, C3 | C2 | C0, C0, "ficom 9 < 10")?;
    // FTST.
    init(p, cw(0))?;
    load(p, 0xBFFE, 0x8000_0000_0000_0000)?;
    p.a.ftst()?;
    check_sw(p, C3 | C2 | C0, C0, "ftst -0.5")?;
    p.a.fldz()?;
    p.a.ftst()?;
    check_sw(p, C3 | C2 | C0, C3, "ftst 0")?;
    // FXAM (Vol. 2 FXAM, Table 3-43).
    let classes: [(&str, u16, u64, u32); 7] = [
        ("+normal", 0x3FFF, 0x8000_0000_0000_0000, C2),
        ("-normal", 0xBFFF, 0x8000_0000_0000_0000, C2 | C1),
        ("+0", 0, 0, C3),
        ("-inf", 0xFFFF, 0x8000_0000_0000_0000, C2 | C0 | C1),
        ("qnan", 0x7FFF, 0xC000_0000_0000_0000, C0),
        ("denormal", 0, 1, C3 | C2),
        ("unnormal (unsupported)", 0x3FFF, 0x4000_0000_0000_0000, 0),
    ];
    for (name, se, sig, want) in classes {
        init(p, cw(0))?;
        load(p, se, sig)?;
        p.a.fxam()?;
        check_sw(p, CC, want, &format!("fxam {name}"))?;
    }
    init(p, cw(0))?;
    p.a.fxam()?;
    check_sw(p, C3 | C2 | C0, C3 | C0, "fxam empty")
}

// ---------------------------------------------------------------------------------------------

fn stack(p: &mut Program) -> Asm {
    // FXCH, FINCSTP/FDECSTP, FFREE.
    init(p, cw(0))?;
    load_int(p, 1)?;
    load_int(p, 2)?;
    p.a.fxch(st0, st1)?;
    p.a.fist(dword_ptr(OUT))?;
    p.check(Mem32(OUT), 1, "fxch: st0 = old st1")?;
    p.a.fincstp()?;
    check_sw(p, 0x3800, 7 << 11, "fincstp: top 6 -> 7")?;
    p.a.fist(dword_ptr(OUT))?;
    p.check(Mem32(OUT), 2, "fincstp: st0 = the register above")?;
    p.a.fdecstp()?;
    p.a.ffree(st1)?;
    p.a.fnstenv(ptr(IMAGE))?;
    check_bits(p, IMAGE + 8, 0xFFFF, 0xCFFF, "ffree st1: tag word (r6 valid, r7 empty)")?;
    // FCMOVcc.
    init(p, cw(0))?;
    load_int(p, 5)?;
    load_int(p, 6)?;
    p.a.stc()?;
    p.a.fcmovb(st0, st1)?;
    p.a.fist(dword_ptr(OUT))?;
    p.check(Mem32(OUT), 5, "fcmovb with cf: moved")?;
    load_int(p, 8)?;
    p.a.xor(eax, eax)?; // ZF = 1
    p.a.fcmovne(st0, st1)?;
    p.a.fist(dword_ptr(OUT))?;
    p.check(Mem32(OUT), 8, "fcmovne with zf: not moved")
}

// ---------------------------------------------------------------------------------------------

fn environment(p: &mut Program) -> Asm {
    // A non-control instruction with a memory operand, then FNSTENV (28 bytes, protected).
    let mut at = p.label();
    let at_addr = p.addr(at);
    init(p, cw(0))?;
    p.a.fld1()?;
    p.a.mov(dword_ptr(OUT2), 3)?;
    p.bind(&mut at)?;
    p.a.fidiv(dword_ptr(OUT2))?; // DA 35 disp32: opcode 235h; PE
    p.a.fnstenv(ptr(IMAGE))?;
    check_bits(p, IMAGE, 0xFFFF, 0x037F, "fnstenv: control word")?;
    check_bits(p, IMAGE + 4, 0xFFFF & !C1, (7 << 11) | PE, "fnstenv: status word (top 7, pe)")?;
    check_bits(p, IMAGE + 8, 0xFFFF, 0x3FFF, "fnstenv: tag word (r7 valid)")?;
    p.check(Mem32(IMAGE + 12), at_addr, "fnstenv: fpu instruction pointer")?;
    check_bits(p, IMAGE + 16, 0xFFFF, u32::from(KCODE), "fnstenv: fpu cs")?;
    p.check(Mem32(IMAGE + 20), OUT2, "fnstenv: fpu data pointer")?;
    check_bits(p, IMAGE + 24, 0xFFFF, u32::from(KDATA), "fnstenv: fpu ds")?;
    init(p, 0x0360)?;
    p.a.fnstenv(ptr(IMAGE))?;
    check_bits(p, IMAGE, 0xFFFF, 0x0360, "fnstenv stores the control word with all unmasked")?;
    // 14-byte protected-mode layout (operand-size prefix): cw, sw, tw, ip, cs, dp, ds.
    init(p, cw(0))?;
    p.a.fld1()?;
    p.a.db(&[0x66, 0xD9, 0x35])?; // fnstenv m14byte [disp32]
    p.a.dd(&[IMAGE])?;
    p.check(Mem32(IMAGE), ((7 << 11) << 16) | 0x037F, "fnstenv m14: control and status words")?;
    check_bits(p, IMAGE + 4, 0xFFFF, 0x3FFF, "fnstenv m14: tag word")?;
    check_bits(p, IMAGE + 8, 0xFFFF, u32::from(KCODE), "fnstenv m14: fpu cs")?;

    // FNSAVE / FRSTOR: the image, FNINIT after the save, and the round trip.
    init(p, cw(2))?;
    p.a.fldpi()?; // rounded up: C90FDAA22168C235
    load_int(p, -5)?;
    p.a.fnsave(ptr(IMAGE))?;
    p.a.fnstcw(word_ptr(WORD))?;
    check_bits(p, WORD, 0xFFFF, 0x037F, "after fnsave: fninit's control word")?;
    check_sw(p, 0xFFFF, 0, "after fnsave: status cleared")?;
    check_bits(p, IMAGE, 0xFFFF, cw(2), "fnsave: control word")?;
    check_bits(p, IMAGE + 8, 0xFFFF, 0x0FFF, "fnsave: tag word")?;
    check_out(p, IMAGE + 28, 0xC001, 0xA000_0000_0000_0000, "fnsave: st0 = -5")?;
    check_out(p, IMAGE + 38, 0x4000, 0xC90F_DAA2_2168_C235, "fnsave: st1 = pi rounded up")?;
    p.a.fld1()?;
    p.a.frstor(ptr(IMAGE))?;
    p.a.fnstcw(word_ptr(WORD))?;
    check_bits(p, WORD, 0xFFFF, cw(2), "frstor: control word back")?;
    check_sw(p, 0x3800, 6 << 11, "frstor: top back")?;
    p.a.fstp(st0)?;
    check_st0(p, 0x4000, 0xC90F_DAA2_2168_C235, "frstor: st1 back")
}

// ---------------------------------------------------------------------------------------------

fn exceptions(p: &mut Program) -> Asm {
    // CR0.NE = 1: numeric errors are reported through #MF.
    p.a.mov(eax, cr0)?;
    p.a.or(eax, 1 << 5)?;
    p.a.mov(cr0, eax)?;
    // Division by zero with ZE unmasked: no fault at the FDIVP, #MF at the next waiting one.
    p.case(
        "fdivp by zero, ze unmasked",
        Expect::Nothing,
        |p| {
            init(p, 0x037B)?;
            p.a.fld1()?;
            p.a.fldz()
        },
        |p| p.a.fdivp(st1, st0),
    )?;
    p.case(
        "fnstsw after it: non-waiting, no #MF",
        Expect::Nothing,
        |_| Ok(()),
        |p| p.a.fnstsw(word_ptr(WORD)),
    )?;
    check_bits(p, WORD, ZE | ES | B, ZE | ES | B, "status: ze es b")?;
    p.case("fwait: #MF", Expect::Fault(16, None), |_| Ok(()), |p| p.a.wait())?;
    p.case("fwait again: #MF (still pending)", Expect::Fault(16, None), |_| Ok(()), |p| p.a.wait())?;
    p.case("fnclex: no #MF", Expect::Nothing, |_| Ok(()), |p| p.a.fnclex())?;
    p.case("fwait after fnclex", Expect::Nothing, |_| Ok(()), |p| p.a.wait())?;
    // PE unmasked is post-computation: the result is stored, then #MF at the next FWAIT.
    p.case(
        "1/3 with pe unmasked",
        Expect::Nothing,
        |p| {
            init(p, 0x035F)?;
            p.a.fld1()?;
            load_int(p, 3)
        },
        |p| p.a.fdivp(st1, st0),
    )?;
    p.case("fwait after 1/3: #MF", Expect::Fault(16, None), |_| Ok(()), |p| p.a.wait())?;
    p.a.fnclex()?;
    check_st0(p, 0x3FFD, 0xAAAA_AAAA_AAAA_AAAB, "pe unmasked: result stored")?;
    p.case("fninit: no #MF", Expect::Nothing, |_| Ok(()), |p| p.a.fninit())?;
    p.case("fwait after fninit", Expect::Nothing, |_| Ok(()), |p| p.a.wait())?;
    // Unmasked invalid operation (0/0): IE and #MF.
    p.case(
        "0/0 with ie unmasked",
        Expect::Nothing,
        |p| {
            init(p, 0x037E)?;
            p.a.fldz()?;
            p.a.fldz()
        },
        |p| p.a.fdivp(st1, st0),
    )?;
    p.case("fwait after 0/0: #MF", Expect::Fault(16, None), |_| Ok(()), |p| p.a.wait())?;
    check_sw(p, IE | ZE | ES, IE | ES, "0/0: ie es")?;
    p.a.fninit()?;
    // #NM: CR0.TS with an x87 instruction; WAIT only with MP as well.
    p.a.mov(eax, cr0)?;
    p.a.or(eax, CR0_TS)?;
    p.a.mov(cr0, eax)?;
    p.case("fld1 with cr0.ts: #NM", Expect::Fault(7, None), |_| Ok(()), |p| p.a.fld1())?;
    p.case("wait with cr0.ts, mp clear", Expect::Nothing, |_| Ok(()), |p| p.a.wait())?;
    p.a.mov(eax, cr0)?;
    p.a.or(eax, CR0_MP)?;
    p.a.mov(cr0, eax)?;
    p.case("wait with cr0.ts and mp: #NM", Expect::Fault(7, None), |_| Ok(()), |p| p.a.wait())?;
    p.a.clts()?;
    p.a.mov(eax, cr0)?;
    p.a.and(eax, !(CR0_MP | (1 << 5)))?;
    p.a.mov(cr0, eax)
}

// ---------------------------------------------------------------------------------------------

fn misc(p: &mut Program) -> Asm {
    // FPREM: 17 rem 5 = 2, quotient 3 (q2 q1 q0 = 011 → C0 = 0, C3 = 1, C1 = 1).
    init(p, cw(0))?;
    load_int(p, 5)?;
    load_int(p, 17)?;
    p.a.fprem()?;
    check_sw(p, CC, C3 | C1, "fprem 17, 5: quotient bits 011, complete")?;
    check_st0(p, 0x4000, 0x8000_0000_0000_0000, "fprem 17, 5 = 2")?;
    // FPREM1: 18 rem1 5 = −2, quotient 4 (C0 = 1).
    init(p, cw(0))?;
    load_int(p, 5)?;
    load_int(p, 18)?;
    p.a.fprem1()?;
    check_sw(p, C2, 0, "fprem1 18, 5: complete")?;
    check_st0(p, 0xC000, 0x8000_0000_0000_0000, "fprem1 18, 5 = -2")?;
    // FPREM of 2^100 by 3 needs more than one step: C2 set until done; 2^100 mod 3 = 1 and
    // the quotient (2^100 − 1)/3 ends in bits 101.
    init(p, cw(0))?;
    load_int(p, 3)?;
    load(p, 0x3FFF + 100, 0x8000_0000_0000_0000)?;
    p.a.fprem()?;
    check_sw(p, C2, C2, "fprem 2^100, 3: first step incomplete")?;
    let mut again = p.label();
    p.bind(&mut again)?;
    p.a.fprem()?;
    p.a.fnstsw(word_ptr(WORD))?;
    p.a.test(word_ptr(WORD), C2)?;
    p.a.jnz(again)?;
    check_bits(p, WORD, C0 | C3 | C1, C0 | C1, "fprem 2^100, 3: quotient bits 101")?;
    check_st0(p, 0x3FFF, 0x8000_0000_0000_0000, "fprem 2^100, 3 = 1")?;
    // FSCALE, FXTRACT.
    init(p, cw(0))?;
    load_int(p, 3)?;
    load(p, 0x3FFF, 0xC000_0000_0000_0000)?;
    p.a.fscale()?;
    check_st0(p, 0x4002, 0xC000_0000_0000_0000, "fscale 1.5 * 2^3 = 12")?;
    init(p, cw(0))?;
    load_int(p, -12)?;
    p.a.fxtract()?;
    check_st0(p, 0xBFFF, 0xC000_0000_0000_0000, "fxtract -12: significand -1.5")?;
    check_st0(p, 0x4000, 0xC000_0000_0000_0000, "fxtract -12: exponent 3")?;
    init(p, cw(0))?;
    p.a.fldz()?;
    p.a.fxtract()?;
    check_sw(p, ZE, ZE, "fxtract 0: ze")?;
    check_st0(p, 0, 0, "fxtract 0: significand 0")?;
    check_st0(p, 0xFFFF, 0x8000_0000_0000_0000, "fxtract 0: exponent -inf")?;
    // FRNDINT of 2.5 and −0.5 in each rounding mode.
    for (rc, pos, neg) in [(0u32, 2i32, 0x8000u16), (1, 2, 0xBFFF), (2, 3, 0x8000), (3, 2, 0x8000)] {
        init(p, cw(rc))?;
        load(p, 0x4000, 0xA000_0000_0000_0000)?;
        p.a.frndint()?;
        p.a.fistp(dword_ptr(OUT))?;
        p.check(Mem32(OUT), pos as u32, &format!("frndint 2.5 rc{rc}"))?;
        load(p, 0xBFFE, 0x8000_0000_0000_0000)?;
        p.a.frndint()?;
        let sig = if neg == 0x8000 { 0 } else { 0x8000_0000_0000_0000 };
        check_st0(p, neg, sig, &format!("frndint -0.5 rc{rc}"))?;
    }
    // FCHS, FABS.
    init(p, cw(0))?;
    p.a.fldz()?;
    p.a.fchs()?;
    check_st0(p, 0x8000, 0, "fchs 0 = -0")?;
    load_int(p, -4)?;
    p.a.fabs()?;
    check_st0(p, 0x4001, 0x8000_0000_0000_0000, "fabs -4")?;
    // The constants in each rounding mode (SDM Vol. 1 §8.3.8): nearest, down, up, zero.
    type Emit = fn(&mut CodeAssembler) -> Asm;
    let consts: [(&str, Emit, u16, [u64; 4]); 5] = [
        (
            "fldpi",
            CodeAssembler::fldpi,
            0x4000,
            [0xC90F_DAA2_2168_C235, 0xC90F_DAA2_2168_C234, 0xC90F_DAA2_2168_C235, 0xC90F_DAA2_2168_C234],
        ),
        (
            "fldl2t",
            CodeAssembler::fldl2t,
            0x4000,
            [0xD49A_784B_CD1B_8AFE, 0xD49A_784B_CD1B_8AFE, 0xD49A_784B_CD1B_8AFF, 0xD49A_784B_CD1B_8AFE],
        ),
        (
            "fldl2e",
            CodeAssembler::fldl2e,
            0x3FFF,
            [0xB8AA_3B29_5C17_F0BC, 0xB8AA_3B29_5C17_F0BB, 0xB8AA_3B29_5C17_F0BC, 0xB8AA_3B29_5C17_F0BB],
        ),
        (
            "fldlg2",
            CodeAssembler::fldlg2,
            0x3FFD,
            [0x9A20_9A84_FBCF_F799, 0x9A20_9A84_FBCF_F798, 0x9A20_9A84_FBCF_F799, 0x9A20_9A84_FBCF_F798],
        ),
        (
            "fldln2",
            CodeAssembler::fldln2,
            0x3FFE,
            [0xB172_17F7_D1CF_79AC, 0xB172_17F7_D1CF_79AB, 0xB172_17F7_D1CF_79AC, 0xB172_17F7_D1CF_79AB],
        ),
    ];
    for (name, emit, se, sigs) in consts {
        for (rc, sig) in sigs.into_iter().enumerate() {
            init(p, cw(rc as u32))?;
            emit(&mut p.a)?;
            check_st0(p, se, sig, &format!("{name} rc{rc}"))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

/// Tolerance for FSIN, FCOS, FSINCOS, FPTAN (see the module header).
const TRIG_ULPS: u32 = 1 << 12;

fn transcendentals(p: &mut Program) -> Asm {
    // Expected values: mpmath at 600 bits rounded to 64 bits (emu-core/tools/x87_vectors.py).
    init(p, cw(0))?;
    load(p, 0x3FFE, 0x8000_0000_0000_0000)?;
    p.a.fsin()?;
    check_sw(p, C2, 0, "fsin 0.5: c2 clear")?;
    check_near(p, 0x3FFD, 0xF577_43A2_582F_7F44, TRIG_ULPS, "fsin 0.5")?;
    load(p, 0x3FFE, 0x8000_0000_0000_0000)?;
    p.a.fcos()?;
    check_near(p, 0x3FFE, 0xE0A9_4032_DBEA_7CEE, TRIG_ULPS, "fcos 0.5")?;
    load(p, 0x3FFE, 0x8000_0000_0000_0000)?;
    p.a.fptan()?;
    check_st0(p, 0x3FFF, 0x8000_0000_0000_0000, "fptan pushes 1.0")?;
    check_near(p, 0x3FFE, 0x8BDA_7ADF_9A3A_5219, TRIG_ULPS, "fptan 0.5")?;
    p.a.fld1()?;
    p.a.fsincos()?;
    check_near(p, 0x3FFE, 0x8A51_407D_A834_5C92, TRIG_ULPS, "fsincos 1: cos in st0")?;
    check_near(p, 0x3FFE, 0xD76A_A478_4867_7021, TRIG_ULPS, "fsincos 1: sin in st1")?;
    // |x| ≥ 2^63: C2 = 1, ST(0) unchanged (2^64 here: QEMU takes 2^63 itself as in range).
    init(p, cw(0))?;
    load(p, 0x3FFF + 64, 0x8000_0000_0000_0000)?;
    p.a.fsin()?;
    check_sw(p, C2, C2, "fsin 2^64: c2 set")?;
    check_st0(p, 0x3FFF + 64, 0x8000_0000_0000_0000, "fsin 2^64: st0 unchanged")?;
    // FPATAN: atan(ST(1)/ST(0)).
    init(p, cw(0))?;
    load_int(p, 1)?;
    load_int(p, 2)?;
    p.a.fpatan()?;
    check_near(p, 0x3FFD, 0xED63_382B_0DDA_7B45, 1, "fpatan 1, 2")?;
    load_int(p, -3)?;
    load_int(p, -4)?;
    p.a.fpatan()?;
    check_near(p, 0xC000, 0x9FE0_BB5B_D42A_FFEC, 1, "fpatan -3, -4")?;
    // F2XM1.
    load(p, 0x3FFE, 0x8000_0000_0000_0000)?;
    p.a.f2xm1()?;
    check_near(p, 0x3FFD, 0xD413_CCCF_E779_9211, 1, "f2xm1 0.5")?;
    load(p, 0xBFFE, 0x8000_0000_0000_0000)?;
    p.a.f2xm1()?;
    check_near(p, 0xBFFD, 0x95F6_1998_0C43_36F7, 1, "f2xm1 -0.5")?;
    // FYL2X: ST(1) · log2 ST(0).
    load(p, 0x4000, 0xA000_0000_0000_0000)?;
    load(p, 0x3FFD, 0x9999_9999_9999_999A)?;
    p.a.fyl2x()?;
    check_near(p, 0xC001, 0x8AF5_0E2C_A1AF_635C, 1, "fyl2x 2.5, 0.3")?;
    p.a.fld1()?;
    load_int(p, 8)?;
    p.a.fyl2x()?;
    check_st0(p, 0x4000, 0xC000_0000_0000_0000, "fyl2x 1, 8 = 3 exactly")?;
    // FYL2XP1: ST(1) · log2(1 + ST(0)).
    p.a.fld1()?;
    load(p, 0x3FFD, 0x8000_0000_0000_0000)?;
    p.a.fyl2xp1()?;
    check_near(p, 0x3FFD, 0xA4D3_C25E_68DC_57F2, 1, "fyl2xp1 1, 0.25")?;
    check_sw(p, 0x3800, 0, "stack balanced")
}
