//! Integer workloads for measuring guest speed (`bt86 bench`): sieve, CRC-32, quicksort, matrix
//! multiply and string search, each a flat 32-bit Multiboot kernel that runs its workload `N`
//! times (`N` from the command line, `FILE N`, or a default), prints one line with a checksum
//! on the debug console and exits through isa-debug-exit with 0 (exit status 1).
//!
//! The same bytes run under bt86 (`--kernel`, `--append N`) and under QEMU (`-kernel`,
//! `-append N`). Interrupts stay off and nothing depends on time, so the instructions executed
//! are a pure function of `N`: the benchmark counts them once in bt86 and divides by each
//! emulator's time. Code and data live in different pages (data from [`DATA`] up), as a
//! compiler and linker would lay them out.
//!
//! The loader enters with flat CS/DS/ES/SS (Multiboot Specification 0.6.96, 3.2), EBX pointing
//! at the information structure; the kernel sets up its own stack.

use iced_x86::code_asm::*;

use crate::asm::{Asm, DEBUGCON, DEBUG_EXIT};
use crate::multiboot::{elf, FLAT_KERNEL_CODE};
use crate::Kernel;

/// Top of the kernel's stack.
const STACK_TOP: u32 = 0x0018_0000;
/// The iteration count.
const COUNT: u32 = 0x0018_0000;
/// The running checksum.
const SUM: u32 = 0x0018_0004;
/// The workloads' data.
const DATA: u32 = 0x0020_0000;
/// End of the memory the kernel uses (zeroed by the loader).
const BSS_END: u32 = 0x0060_0000;

/// Sieve size: the primes below 2^20.
const SIEVE_N: u32 = 1 << 20;
/// CRC-32 buffer length and its table.
const CRC_LEN: u32 = 64 << 10;
const CRC_TABLE: u32 = DATA + 0x0010_0000;
/// Quicksort: 32,768 unsigned dwords.
const SORT_N: u32 = 32 << 10;
/// Matrix multiply: 48 × 48 dwords, A, B and C.
const MAT_N: u32 = 48;
/// String search: 128 KiB of text over a 4-letter alphabet, a 6-byte pattern.
const TEXT_LEN: u32 = 128 << 10;
const PATTERN_LEN: u32 = 6;

/// A benchmark workload.
#[derive(Clone, Debug)]
pub struct Workload {
    /// The kernel (its `name` is the workload's).
    pub kernel: Kernel,
    /// Iterations when the command line gives none.
    pub default_iterations: u32,
}

/// Every workload, in report order.
pub fn workloads() -> Vec<Workload> {
    vec![
        build("sieve", "sieve of Eratosthenes below 2^20 (byte array), prime count", 7, sieve),
        build("crc32", "table-driven CRC-32 (IEEE) over 64 KiB", 240, crc32),
        build(
            "quicksort",
            "recursive quicksort of 32,768 pseudo-random dwords, then a sortedness check",
            16,
            quicksort,
        ),
        build("matmul", "48 x 48 dword matrix multiply (IMUL), checksum of the product", 120, matmul),
        build("strsearch", "naive search of a 6-byte pattern in 128 KiB of 4-letter text", 60, strsearch),
    ]
}

/// A workload body: emits a routine (ending in RET) that runs the workload once and leaves its
/// checksum in EAX; may emit one-time setup before `body` via `setup`.
type Body = fn(&mut CodeAssembler, &mut CodeLabel) -> Asm;

fn build(name: &'static str, description: &'static str, default_iterations: u32, body: Body) -> Workload {
    let code = assemble(name, default_iterations, body).expect("workload assembles");
    let end = FLAT_KERNEL_CODE + code.len() as u32;
    assert!(end < COUNT, "{name}: code overlaps the variables");
    Workload {
        kernel: Kernel {
            name,
            description,
            elf: elf(0x0010_0000, FLAT_KERNEL_CODE, &code, FLAT_KERNEL_CODE, BSS_END),
        },
        default_iterations,
    }
}

/// Where the workload routine goes: the page after the start-up code.
const ROUTINE: u32 = FLAT_KERNEL_CODE + 0x1000;

fn assemble(name: &str, default_iterations: u32, body: Body) -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(32)?;
    let mut run = a.create_label();
    let mut outer = a.create_label();
    let mut print_hex = a.create_label();
    let mut use_default = a.create_label();
    let mut skip_name = a.create_label();
    let mut digits = a.create_label();
    let mut parsed = a.create_label();

    // Entry: own stack, iteration count from the command line ("FILE N").
    a.mov(esp, STACK_TOP)?;
    a.test(dword_ptr(ebx), 4)?;
    a.jz(use_default)?;
    a.mov(esi, dword_ptr(ebx + 16))?;
    a.set_label(&mut skip_name)?;
    a.movzx(ecx, byte_ptr(esi))?;
    a.test(ecx, ecx)?;
    a.jz(use_default)?;
    a.inc(esi)?;
    a.cmp(ecx, u32::from(b' '))?;
    a.jne(skip_name)?;
    a.xor(eax, eax)?;
    a.set_label(&mut digits)?;
    a.movzx(ecx, byte_ptr(esi))?;
    a.sub(ecx, u32::from(b'0'))?;
    a.cmp(ecx, 9)?;
    a.ja(parsed)?;
    a.imul_3(eax, eax, 10)?;
    a.add(eax, ecx)?;
    a.inc(esi)?;
    a.jmp(digits)?;
    a.set_label(&mut parsed)?;
    a.test(eax, eax)?;
    a.jnz(run)?;
    a.set_label(&mut use_default)?;
    a.mov(eax, default_iterations)?;
    a.set_label(&mut run)?;
    a.mov(dword_ptr(COUNT), eax)?;
    a.mov(dword_ptr(SUM), 0u32)?;
    a.set_label(&mut outer)?;
    a.call(u64::from(ROUTINE))?;
    a.add(dword_ptr(SUM), eax)?;
    a.dec(dword_ptr(COUNT))?;
    a.jnz(outer)?;
    // "<name>: XXXXXXXX\n", then exit 0.
    for &c in name.as_bytes().iter().chain(b": ") {
        a.mov(al, u32::from(c))?;
        a.out(DEBUGCON, al)?;
    }
    a.mov(eax, dword_ptr(SUM))?;
    a.call(print_hex)?;
    a.mov(al, u32::from(b'\n'))?;
    a.out(DEBUGCON, al)?;
    a.xor(eax, eax)?;
    a.out(DEBUG_EXIT, eax)?;
    a.cli()?;
    a.hlt()?;

    // print_hex: EAX as 8 hex digits.
    let mut ph_loop = a.create_label();
    let mut ph_digit = a.create_label();
    a.set_label(&mut print_hex)?;
    a.mov(edx, eax)?;
    a.mov(ecx, 8)?;
    a.set_label(&mut ph_loop)?;
    a.rol(edx, 4)?;
    a.mov(eax, edx)?;
    a.and(eax, 0xF)?;
    a.add(eax, u32::from(b'0'))?;
    a.cmp(eax, u32::from(b'9'))?;
    a.jbe(ph_digit)?;
    a.add(eax, 7)?;
    a.set_label(&mut ph_digit)?;
    a.out(DEBUGCON, al)?;
    a.dec(ecx)?;
    a.jnz(ph_loop)?;
    a.ret()?;

    let mut code = a.assemble(u64::from(FLAT_KERNEL_CODE))?;
    assert!(code.len() <= 0x1000, "the start-up code fits its page");
    code.resize(0x1000, 0x90);
    // The workload, on a page of its own.
    let mut b = CodeAssembler::new(32)?;
    let mut routine = b.create_label();
    body(&mut b, &mut routine)?;
    code.extend(b.assemble(u64::from(ROUTINE))?);
    Ok(code)
}

/// Fills `len` bytes at `addr` with a linear congruential sequence (dwords), from `seed`.
fn lcg_fill(a: &mut CodeAssembler, addr: u32, len: u32, seed: u32) -> Asm {
    let mut l = a.create_label();
    a.mov(edi, addr)?;
    a.mov(ecx, len / 4)?;
    a.mov(eax, seed)?;
    a.set_label(&mut l)?;
    a.imul_3(eax, eax, 1_103_515_245)?;
    a.add(eax, 12345)?;
    a.mov(dword_ptr(edi), eax)?;
    a.add(edi, 4)?;
    a.dec(ecx)?;
    a.jnz(l)
}

fn sieve(a: &mut CodeAssembler, routine: &mut CodeLabel) -> Asm {
    let (mut clear, mut outer, mut inner, mut next, mut count, mut c) = (
        a.create_label(),
        a.create_label(),
        a.create_label(),
        a.create_label(),
        a.create_label(),
        a.create_label(),
    );
    a.set_label(routine)?;
    a.mov(edi, DATA)?;
    a.mov(ecx, SIEVE_N / 4)?;
    a.set_label(&mut clear)?;
    a.mov(dword_ptr(edi), 0x0101_0101u32)?;
    a.add(edi, 4)?;
    a.dec(ecx)?;
    a.jnz(clear)?;
    a.mov(word_ptr(DATA), 0u32)?;
    a.mov(ebx, 2)?;
    a.set_label(&mut outer)?;
    a.mov(eax, ebx)?;
    a.imul_2(eax, ebx)?;
    a.cmp(eax, SIEVE_N)?;
    a.jae(count)?;
    a.cmp(byte_ptr(ebx + DATA), 0)?;
    a.je(next)?;
    a.set_label(&mut inner)?;
    a.mov(byte_ptr(eax + DATA), 0)?;
    a.add(eax, ebx)?;
    a.cmp(eax, SIEVE_N)?;
    a.jb(inner)?;
    a.set_label(&mut next)?;
    a.inc(ebx)?;
    a.jmp(outer)?;
    a.set_label(&mut count)?;
    a.xor(eax, eax)?;
    a.mov(esi, DATA)?;
    a.mov(ecx, SIEVE_N)?;
    a.set_label(&mut c)?;
    a.movzx(edx, byte_ptr(esi))?;
    a.add(eax, edx)?;
    a.inc(esi)?;
    a.dec(ecx)?;
    a.jnz(c)?;
    a.ret()
}

fn crc32(a: &mut CodeAssembler, routine: &mut CodeLabel) -> Asm {
    let (mut table, mut bits, mut l, mut ready, mut setup) =
        (a.create_label(), a.create_label(), a.create_label(), a.create_label(), a.create_label());
    a.set_label(routine)?;
    // One-time setup: the table and the buffer (flagged by a non-zero table entry 1).
    a.cmp(dword_ptr(CRC_TABLE + 4), 0)?;
    a.jne(ready)?;
    a.set_label(&mut setup)?;
    a.xor(ebx, ebx)?;
    a.set_label(&mut table)?;
    a.mov(eax, ebx)?;
    a.mov(ecx, 8)?;
    a.set_label(&mut bits)?;
    a.mov(edx, eax)?;
    a.and(edx, 1)?;
    a.neg(edx)?;
    a.and(edx, 0xEDB8_8320u32)?;
    a.shr(eax, 1)?;
    a.xor(eax, edx)?;
    a.dec(ecx)?;
    a.jnz(bits)?;
    a.mov(dword_ptr(ebx * 4 + CRC_TABLE), eax)?;
    a.inc(ebx)?;
    a.cmp(ebx, 256)?;
    a.jb(table)?;
    lcg_fill(a, DATA, CRC_LEN, 1)?;
    a.set_label(&mut ready)?;
    a.mov(eax, 0xFFFF_FFFFu32)?;
    a.mov(esi, DATA)?;
    a.mov(ecx, CRC_LEN)?;
    a.set_label(&mut l)?;
    a.movzx(edx, byte_ptr(esi))?;
    a.xor(dl, al)?;
    a.shr(eax, 8)?;
    a.xor(eax, dword_ptr(edx * 4 + CRC_TABLE))?;
    a.inc(esi)?;
    a.dec(ecx)?;
    a.jnz(l)?;
    a.not(eax)?;
    // Next pass sees different data.
    a.mov(dword_ptr(DATA), eax)?;
    a.ret()
}

fn quicksort(a: &mut CodeAssembler, routine: &mut CodeLabel) -> Asm {
    let (mut qs, mut part, mut skip, mut done, mut out, mut check, mut ok) = (
        a.create_label(),
        a.create_label(),
        a.create_label(),
        a.create_label(),
        a.create_label(),
        a.create_label(),
        a.create_label(),
    );
    a.set_label(routine)?;
    // Fresh data each pass, seeded by the pass count.
    a.mov(eax, dword_ptr(COUNT))?;
    a.mov(edi, DATA)?;
    a.mov(ecx, SORT_N)?;
    let mut fill = a.create_label();
    a.set_label(&mut fill)?;
    a.imul_3(eax, eax, 1_103_515_245)?;
    a.add(eax, 12345)?;
    a.mov(dword_ptr(edi), eax)?;
    a.add(edi, 4)?;
    a.dec(ecx)?;
    a.jnz(fill)?;
    a.mov(esi, DATA)?;
    a.mov(edi, DATA + 4 * (SORT_N - 1))?;
    a.call(qs)?;
    // Checksum: the sum of the elements, plus 2^24 per element out of order.
    a.xor(eax, eax)?;
    a.mov(esi, DATA)?;
    a.mov(ecx, SORT_N - 1)?;
    a.set_label(&mut check)?;
    a.mov(edx, dword_ptr(esi))?;
    a.add(eax, edx)?;
    a.cmp(edx, dword_ptr(esi + 4))?;
    a.jbe(ok)?;
    a.add(eax, 0x0100_0000)?;
    a.set_label(&mut ok)?;
    a.add(esi, 4)?;
    a.dec(ecx)?;
    a.jnz(check)?;
    a.ret()?;

    // qs(ESI = first, EDI = last), unsigned dwords, Lomuto partition around *last.
    a.set_label(&mut qs)?;
    a.cmp(esi, edi)?;
    a.jae(out)?;
    a.mov(eax, dword_ptr(edi))?;
    a.mov(ebx, esi)?;
    a.mov(ecx, esi)?;
    a.set_label(&mut part)?;
    a.cmp(ecx, edi)?;
    a.jae(done)?;
    a.mov(edx, dword_ptr(ecx))?;
    a.cmp(edx, eax)?;
    a.jae(skip)?;
    a.mov(ebp, dword_ptr(ebx))?;
    a.mov(dword_ptr(ebx), edx)?;
    a.mov(dword_ptr(ecx), ebp)?;
    a.add(ebx, 4)?;
    a.set_label(&mut skip)?;
    a.add(ecx, 4)?;
    a.jmp(part)?;
    a.set_label(&mut done)?;
    a.mov(edx, dword_ptr(ebx))?;
    a.mov(dword_ptr(edi), edx)?;
    a.mov(dword_ptr(ebx), eax)?;
    a.push(edi)?;
    a.push(ebx)?;
    a.lea(edi, dword_ptr(ebx - 4))?;
    a.call(qs)?;
    a.pop(ebx)?;
    a.pop(edi)?;
    a.lea(esi, dword_ptr(ebx + 4))?;
    a.jmp(qs)?;
    a.set_label(&mut out)?;
    a.ret()
}

fn matmul(a: &mut CodeAssembler, routine: &mut CodeLabel) -> Asm {
    let n = MAT_N;
    let (ma, mb, mc) = (DATA, DATA + 4 * n * n, DATA + 8 * n * n);
    let (mut ready, mut li, mut lj, mut lk, mut sum) =
        (a.create_label(), a.create_label(), a.create_label(), a.create_label(), a.create_label());
    a.set_label(routine)?;
    a.cmp(dword_ptr(ma), 0)?;
    a.jne(ready)?;
    lcg_fill(a, ma, 8 * n * n, 7)?;
    a.set_label(&mut ready)?;
    // for i, j: C[i][j] = sum_k A[i][k] * B[k][j]
    a.xor(ebx, ebx)?; // i
    a.set_label(&mut li)?;
    a.xor(edx, edx)?; // j
    a.set_label(&mut lj)?;
    a.mov(esi, ebx)?;
    a.imul_3(esi, esi, 4 * n)?;
    a.add(esi, ma)?; // &A[i][0]
    a.lea(edi, dword_ptr(edx * 4 + mb))?; // &B[0][j]
    a.xor(ebp, ebp)?;
    a.mov(ecx, n)?;
    a.set_label(&mut lk)?;
    a.mov(eax, dword_ptr(esi))?;
    a.imul_2(eax, dword_ptr(edi))?;
    a.add(ebp, eax)?;
    a.add(esi, 4)?;
    a.add(edi, 4 * n)?;
    a.dec(ecx)?;
    a.jnz(lk)?;
    a.mov(eax, ebx)?;
    a.imul_3(eax, eax, n)?;
    a.add(eax, edx)?;
    a.mov(dword_ptr(eax * 4 + mc), ebp)?;
    a.inc(edx)?;
    a.cmp(edx, n)?;
    a.jb(lj)?;
    a.inc(ebx)?;
    a.cmp(ebx, n)?;
    a.jb(li)?;
    // Checksum of C; C feeds back into A so passes differ.
    a.xor(eax, eax)?;
    a.xor(ecx, ecx)?;
    a.set_label(&mut sum)?;
    a.mov(edx, dword_ptr(ecx * 4 + mc))?;
    a.add(eax, edx)?;
    a.xor(dword_ptr(ecx * 4 + ma), edx)?;
    a.inc(ecx)?;
    a.cmp(ecx, n * n)?;
    a.jb(sum)?;
    a.ret()
}

fn strsearch(a: &mut CodeAssembler, routine: &mut CodeLabel) -> Asm {
    let text = DATA;
    let pattern = DATA + TEXT_LEN + 64;
    let (mut ready, mut gen, mut pos, mut cmp, mut miss, mut hit, mut done) = (
        a.create_label(),
        a.create_label(),
        a.create_label(),
        a.create_label(),
        a.create_label(),
        a.create_label(),
        a.create_label(),
    );
    a.set_label(routine)?;
    a.cmp(byte_ptr(pattern), 0)?;
    a.jne(ready)?;
    // Text: letters 'a'..'d' from the top bits of an LCG; the pattern: "abcabd".
    a.mov(edi, text)?;
    a.mov(ecx, TEXT_LEN)?;
    a.mov(eax, 3)?;
    a.set_label(&mut gen)?;
    a.imul_3(eax, eax, 1_103_515_245)?;
    a.add(eax, 12345)?;
    a.mov(edx, eax)?;
    a.shr(edx, 30)?;
    a.add(edx, u32::from(b'a'))?;
    a.mov(byte_ptr(edi), dl)?;
    a.inc(edi)?;
    a.dec(ecx)?;
    a.jnz(gen)?;
    a.mov(dword_ptr(pattern), u32::from_le_bytes(*b"abca"))?;
    a.mov(dword_ptr(pattern + 4), u32::from_le_bytes(*b"bdab"))?;
    a.set_label(&mut ready)?;
    // count = #{p : text[p..p+8] == pattern}
    a.xor(eax, eax)?;
    a.mov(esi, text)?;
    a.mov(ebx, text + TEXT_LEN - PATTERN_LEN)?;
    a.set_label(&mut pos)?;
    a.xor(edx, edx)?;
    a.set_label(&mut cmp)?;
    a.mov(cl, byte_ptr(esi + edx))?;
    a.cmp(cl, byte_ptr(edx + pattern))?;
    a.jne(miss)?;
    a.inc(edx)?;
    a.cmp(edx, PATTERN_LEN)?;
    a.jb(cmp)?;
    a.set_label(&mut hit)?;
    a.inc(eax)?;
    a.set_label(&mut miss)?;
    a.inc(esi)?;
    a.cmp(esi, ebx)?;
    a.jbe(pos)?;
    a.set_label(&mut done)?;
    // Next pass searches text shifted by one letter.
    a.inc(byte_ptr(text))?;
    a.ret()
}
