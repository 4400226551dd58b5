//! The primes image: a real-mode guest that finds the primes below 1000 with a sieve of
//! Eratosthenes (REP STOSB to initialise it, MUL for the squares), checks every number
//! against trial division (DIV), prints the primes ten per line through a recursive
//! print-decimal routine (CALL/RET), and halts. Output goes to the debug console (port 0xE9).

use iced_x86::code_asm::*;

use crate::asm::{build_image, Asm, Program};
use crate::Image;

/// Numbers examined: 0 .. LIMIT.
const LIMIT: u32 = 1000;
/// The sieve: one byte per number, 1 = prime.
const SIEVE: u32 = 0x1000;
/// Numbers on which the sieve and trial division disagree (word).
const MISMATCHES: u32 = 0x0600;
/// Primes printed per line.
const PER_LINE: u32 = 10;

/// The primes image (see the module header), named "primes".
pub fn primes() -> Image {
    build_image("primes", "prints the primes below 1000 (sieve checked by trial division), then halts", body)
        .expect("the primes image assembles")
}

fn body(p: &mut Program) -> Asm {
    let trial_division = p.label();
    p.print("bt86 demo: a real-mode guest computing the primes below 1000\n")?;
    p.print("(sieve of Eratosthenes, each number checked again by trial division)\n\n")?;
    sieve(p)?;
    print_primes(p, trial_division)?;
    p.halt()?;
    emit_trial_division(p, trial_division)
}

/// Fills the sieve: `SIEVE[n]` = 1 if n is prime, for n < LIMIT.
fn sieve(p: &mut Program) -> Asm {
    let mut outer = p.label();
    let mut mark = p.label();
    let mut next = p.label();
    let mut done = p.label();
    let a = &mut p.a;
    a.mov(di, SIEVE)?;
    a.mov(cx, LIMIT)?;
    a.mov(al, 1)?;
    a.rep().stosb()?;
    a.mov(word_ptr(SIEVE), 0)?; // 0 and 1 are not prime
    a.mov(bx, 2)?;
    a.set_label(&mut outer)?;
    a.mov(ax, bx)?;
    a.mul(bx)?; // DX:AX = BX * BX
    a.cmp(ax, LIMIT)?;
    a.jae(done)?;
    a.cmp(byte_ptr(bx + SIEVE), 0)?;
    a.je(next)?;
    a.mov(di, ax)?; // strike BX*BX, BX*BX + BX, ...
    a.set_label(&mut mark)?;
    a.mov(byte_ptr(di + SIEVE), 0)?;
    a.add(di, bx)?;
    a.cmp(di, LIMIT)?;
    a.jb(mark)?;
    a.set_label(&mut next)?;
    a.inc(bx)?;
    a.jmp(outer)?;
    a.set_label(&mut done)?;
    Ok(())
}

/// Walks 2 .. LIMIT: compares the sieve with trial division, prints the primes right-aligned
/// ten per line, then the count. BP counts primes, CX the numbers left (LOOP).
fn print_primes(p: &mut Program, trial_division: CodeLabel) -> Asm {
    let mut scan = p.label();
    let mut agree = p.label();
    let mut wide = p.label();
    let mut space = p.label();
    let mut skip = p.label();
    let mut last_line_done = p.label();
    let mut report = p.label();
    p.a.mov(word_ptr(MISMATCHES), 0)?;
    p.a.xor(bp, bp)?;
    p.a.mov(si, 2)?;
    p.a.mov(cx, LIMIT - 2)?;

    p.bind(&mut scan)?;
    p.a.call(trial_division)?;
    p.a.cmp(al, byte_ptr(si + SIEVE))?;
    p.a.je(agree)?;
    p.a.inc(word_ptr(MISMATCHES))?;
    p.bind(&mut agree)?;
    p.a.cmp(byte_ptr(si + SIEVE), 0)?;
    p.a.je(skip)?;
    p.a.inc(bp)?;
    // Right-align in three columns.
    p.a.cmp(si, 100)?;
    p.a.jae(wide)?;
    p.print(" ")?;
    p.a.cmp(si, 10)?;
    p.a.jae(wide)?;
    p.print(" ")?;
    p.bind(&mut wide)?;
    p.a.movzx(eax, si)?;
    p.call_print_dec()?;
    // A line break after every tenth prime, a space otherwise.
    p.a.mov(ax, bp)?;
    p.a.xor(dx, dx)?;
    p.a.mov(bx, PER_LINE)?;
    p.a.div(bx)?;
    p.a.test(dx, dx)?;
    p.a.jnz(space)?;
    p.print("\n")?;
    p.a.jmp(skip)?;
    p.bind(&mut space)?;
    p.print(" ")?;
    p.bind(&mut skip)?;
    p.a.inc(si)?;
    p.a.loop_(scan)?;

    // Finish a partial last line.
    p.a.test(dx, dx)?;
    p.a.jz(last_line_done)?;
    p.print("\n")?;
    p.bind(&mut last_line_done)?;
    p.print("\ndone: ")?;
    p.a.movzx(eax, bp)?;
    p.call_print_dec()?;
    p.print(" primes")?;
    p.a.cmp(word_ptr(MISMATCHES), 0)?;
    p.a.jne(report)?;
    p.print(" (sieve and trial division agree)\n")?;
    let mut end = p.label();
    p.a.jmp(end)?;
    p.bind(&mut report)?;
    p.print("; sieve and trial division DISAGREE on ")?;
    p.a.movzx(eax, word_ptr(MISMATCHES))?;
    p.call_print_dec()?;
    p.print(" numbers\n")?;
    p.bind(&mut end)?;
    Ok(())
}

/// trial_division: AL = 1 if SI is prime, else 0, by dividing by 2, 3, ... while d*d <= SI.
/// Preserves every other register.
fn emit_trial_division(p: &mut Program, mut entry: CodeLabel) -> Asm {
    let mut next_divisor = p.label();
    let mut prime = p.label();
    let mut composite = p.label();
    let mut out = p.label();
    let a = &mut p.a;
    a.set_label(&mut entry)?;
    a.push(bx)?;
    a.push(dx)?;
    a.cmp(si, 2)?;
    a.jb(composite)?;
    a.mov(bx, 2)?;
    a.set_label(&mut next_divisor)?;
    a.mov(ax, bx)?;
    a.mul(bx)?;
    a.cmp(ax, si)?;
    a.ja(prime)?;
    a.mov(ax, si)?;
    a.xor(dx, dx)?;
    a.div(bx)?;
    a.test(dx, dx)?;
    a.jz(composite)?;
    a.inc(bx)?;
    a.jmp(next_divisor)?;
    a.set_label(&mut prime)?;
    a.mov(al, 1)?;
    a.jmp(out)?;
    a.set_label(&mut composite)?;
    a.mov(al, 0)?;
    a.set_label(&mut out)?;
    a.pop(dx)?;
    a.pop(bx)?;
    a.ret()
}
