//! The interpreter benchmark guest: CRC-32 (IEEE 802.3, reflected, bit by bit and without
//! data-dependent branches) and FNV-1 over a 64-byte buffer, `iterations` times, in 32-bit
//! registers (operand-size prefixes) from real mode. Each pass stores its CRC over the first
//! four bytes of the buffer, so every pass sees new data. The mix per byte: a MOVZX load, an
//! IMUL by the FNV prime, XORs, and per bit AND/NEG/SHR/XOR with a DEC/JNZ loop; per byte a
//! LOOP; per pass a store and a DEC/JNZ. At the end the guest prints
//! `bench: crc32 XXXXXXXX fnv1 XXXXXXXX` and halts.
//!
//! Because no branch depends on the data, the number of instructions executed is an exact
//! function of `iterations`: [`bench_loop_instructions`].

use iced_x86::code_asm::*;

use crate::asm::{build_image, print_instructions, Asm, Program, HALT_INSTRUCTIONS, PRINT_HEX_INSTRUCTIONS};
use crate::boot::FAST_PATH_INSTRUCTIONS;
use crate::Image;

/// The buffer the loop runs over.
const BUFFER: u32 = 0x1000;
/// Its length in bytes.
const LENGTH: u32 = 64;
/// Reflected CRC-32 polynomial.
const CRC32_POLY: u32 = 0xEDB8_8320;
/// FNV-1 32-bit offset basis and prime.
const FNV_BASIS: u32 = 0x811C_9DC5;
const FNV_PRIME: u32 = 0x0100_0193;

/// The three strings the guest prints at the end.
const PREFIX: &str = "bench: crc32 ";
const MIDDLE: &str = " fnv1 ";
const SUFFIX: &str = "\n";

/// Instructions per part of the program, counted from `build` below.
const FILL_SETUP: u64 = 3;
const FILL_PER_BYTE: u64 = 3;
const LOOP_SETUP: u64 = 2;
const PASS_SETUP: u64 = 3;
const PER_BIT: u64 = 8;
const PER_BYTE: u64 = 5 + 8 * PER_BIT + 2;
const PASS_END: u64 = 4;

/// The benchmark guest running `iterations` passes (at least one: 0 is taken as 1).
pub fn bench_loop(iterations: u32) -> Image {
    let iterations = iterations.max(1);
    build_image(
        "bench",
        "CRC-32 and FNV-1 over a 64-byte buffer in a loop, for the interpreter benchmark",
        |p| body(p, iterations),
    )
    .expect("the benchmark loop assembles")
}

/// Exactly how many instructions [`bench_loop`]`(iterations)` executes from its first
/// instruction up to and including the final HLT (the boot sector's fast path included).
pub fn bench_loop_instructions(iterations: u32) -> u64 {
    let passes = u64::from(iterations.max(1));
    let length = u64::from(LENGTH);
    FAST_PATH_INSTRUCTIONS
        + FILL_SETUP
        + length * FILL_PER_BYTE
        + LOOP_SETUP
        + passes * (PASS_SETUP + length * PER_BYTE + PASS_END)
        + print_instructions(PREFIX)
        + PRINT_HEX_INSTRUCTIONS
        + print_instructions(MIDDLE)
        + 1
        + PRINT_HEX_INSTRUCTIONS
        + print_instructions(SUFFIX)
        + HALT_INSTRUCTIONS
}

fn body(p: &mut Program, iterations: u32) -> Asm {
    let mut fill = p.label();
    let mut pass = p.label();
    let mut byte = p.label();
    let mut bit = p.label();
    let a = &mut p.a;

    // buffer[i] = 11 + 37 * i (mod 256)
    a.mov(di, BUFFER)?;
    a.mov(cx, LENGTH)?;
    a.mov(al, 11)?;
    a.set_label(&mut fill)?;
    a.stosb()?;
    a.add(al, 37)?;
    a.loop_(fill)?;

    // EDI = FNV-1 hash (runs across passes), EBP = passes left.
    a.mov(edi, FNV_BASIS)?;
    a.mov(ebp, iterations)?;

    // One pass: EAX = CRC-32 of the buffer.
    a.set_label(&mut pass)?;
    a.mov(eax, 0xFFFF_FFFFu32)?;
    a.mov(si, BUFFER)?;
    a.mov(cx, LENGTH)?;
    a.set_label(&mut byte)?;
    a.movzx(edx, byte_ptr(si))?;
    a.imul_3(edi, edi, FNV_PRIME)?;
    a.xor(edi, edx)?;
    a.xor(eax, edx)?;
    a.mov(bl, 8)?;
    // crc = (crc >> 1) ^ (POLY & -(crc & 1))
    a.set_label(&mut bit)?;
    a.mov(edx, eax)?;
    a.and(edx, 1)?;
    a.neg(edx)?;
    a.and(edx, CRC32_POLY)?;
    a.shr(eax, 1)?;
    a.xor(eax, edx)?;
    a.dec(bl)?;
    a.jnz(bit)?;
    a.inc(si)?;
    a.loop_(byte)?;
    a.not(eax)?;
    a.mov(dword_ptr(BUFFER), eax)?;
    a.dec(ebp)?;
    a.jnz(pass)?;

    p.print(PREFIX)?;
    p.call_print_hex()?;
    p.print(MIDDLE)?;
    p.a.mov(eax, edi)?;
    p.call_print_hex()?;
    p.print(SUFFIX)?;
    p.halt()
}
