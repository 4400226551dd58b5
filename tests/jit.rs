//! The binary translator against hostile and random guest code: every program here runs in
//! the interpreter, the translator and lockstep (the translator checked against the interpreter
//! as it runs), and must end, print and count exactly alike, without crashing bt86.
//!
//! - random sandboxed programs (`bt86::fuzz`'s generator: every ALU, shift, bit, string, stack
//!   and control instruction form, with memory operands and segment overrides), block by block
//!   in lockstep;
//! - self-modifying code: code that rewrites an instruction a few instructions ahead on every
//!   iteration; a store into the very block that is running (the block must stop after it);
//!   data next to code in the same page (64-byte lines: no invalidation) and in the same line;
//! - code entered in the middle of an instruction;
//! - a code arena too small for the program (flushed and refilled);
//! - a page rewritten again and again (given up on: interpreted).

#![cfg(target_arch = "x86_64")]

#[path = "common/console.rs"]
mod console;

use console::Console;

use bt86::engine::{Engine, EngineKind};
use bt86::machine::{Exit, Machine};
use guest_images::FLAT_KERNEL_CODE;
use iced_x86::code_asm::*;
use jit::{Fallback, JitOptions, JitStats};

/// How a run ended: exit, debug-console output, retired instructions.
type Run = (Exit, String, u64);

/// Runs Multiboot `elf` with `engine`; the translator's counters too.
fn run(elf: &[u8], engine: Engine, max_steps: u64) -> (Run, Option<JitStats>) {
    let console = Console::default();
    let mut m = Machine::new(4 << 20, Box::new(console.clone())).expect("guest RAM");
    m.engine = engine;
    bt86::boot::multiboot::load_bytes(&mut m, elf, "test", "test").expect("the kernel loads");
    let exit = m.run(max_steps);
    let out = console.text();
    ((exit, out, m.cpu.state.retired), m.engine.jit_stats().cloned())
}

/// Runs `elf` in every engine and requires them to agree; returns the interpreter's run and
/// the translator's counters.
fn everywhere(elf: &[u8], max_steps: u64, options: JitOptions) -> (Run, JitStats) {
    let (interp, _) = run(elf, Engine::interp(), max_steps);
    let (jit, stats) = run(elf, Engine::with_options(EngineKind::Jit, options).unwrap(), max_steps);
    assert_eq!(jit, interp, "the translator differs from the interpreter");
    let (lockstep, _) = run(elf, Engine::with_options(EngineKind::Lockstep, options).unwrap(), max_steps);
    assert_eq!(lockstep, interp, "lockstep differs from the interpreter (or found a divergence)");
    let per_block = JitOptions { chaining: false, unit: true, ..options };
    let (lockstep, _) = run(elf, Engine::with_options(EngineKind::Lockstep, per_block).unwrap(), max_steps);
    assert_eq!(lockstep, interp, "block-by-block lockstep differs from the interpreter");
    (interp, stats.expect("the translator keeps counters"))
}

/// A flat 32-bit kernel from `body`, which ends by printing EAX as 8 hex digits and exiting.
/// `body` gets the address of the label it returns (0 on the first of two passes), so code can
/// refer to its own bytes.
fn kernel(body: impl Fn(&mut CodeAssembler, u32) -> Result<CodeLabel, IcedError>) -> Vec<u8> {
    let build = |at: u32| -> (Vec<u8>, u32) {
        let mut a = CodeAssembler::new(32).unwrap();
        a.mov(esp, 0x0018_0000u32).unwrap();
        let label = body(&mut a, at).unwrap();
        // Print EAX in hex, newline, exit 0.
        let mut digit = a.create_label();
        let mut skip = a.create_label();
        a.mov(edx, eax).unwrap();
        a.mov(ecx, 8u32).unwrap();
        a.set_label(&mut digit).unwrap();
        a.rol(edx, 4).unwrap();
        a.mov(eax, edx).unwrap();
        a.and(eax, 0xFu32).unwrap();
        a.add(eax, u32::from(b'0')).unwrap();
        a.cmp(eax, u32::from(b'9')).unwrap();
        a.jbe(skip).unwrap();
        a.add(eax, 7u32).unwrap();
        a.set_label(&mut skip).unwrap();
        a.out(0xE9u32, al).unwrap();
        a.dec(ecx).unwrap();
        a.jnz(digit).unwrap();
        a.mov(al, u32::from(b'\n')).unwrap();
        a.out(0xE9u32, al).unwrap();
        a.xor(eax, eax).unwrap();
        a.out(0xF4u32, eax).unwrap();
        a.hlt().unwrap();
        let r = a
            .assemble_options(
                u64::from(FLAT_KERNEL_CODE),
                iced_x86::BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS,
            )
            .unwrap();
        let ip = r.label_ip(&label).unwrap() as u32;
        (r.inner.code_buffer, ip)
    };
    let (_, at) = build(0);
    let (code, again) = build(at);
    assert_eq!(at, again, "the layout does not depend on the address");
    guest_images::flat_kernel("test", "a test kernel", &code).elf
}

/// Runs `elf` cut short at each of `limits` instructions in every engine (see [`everywhere`]):
/// all must stop at the same instruction, at or before the limit.
fn cut_short_everywhere(elf: &[u8], limits: &[u64]) {
    for &max in limits {
        let ((exit, _, retired), _) = everywhere(elf, max, JitOptions::default());
        assert_eq!(exit, Exit::StepLimit, "{max}");
        assert!(retired <= max, "{max}: {retired}");
    }
}

fn hex(v: u32) -> String {
    format!("{v:08X}\n")
}

#[test]
fn random_programs_agree_block_by_block() {
    let generator = bt86::fuzz::Generator::new();
    for index in 0..150 {
        let program = generator.program(7, index).expect("program");
        let elf = program.kernel().expect("kernel");
        let ((exit, _, _), _) = everywhere(&elf, 1_000_000, JitOptions::default());
        assert!(matches!(exit, Exit::DebugExit { .. }), "program {index}: {exit:?}");
    }
}

#[test]
fn random_bytes_neither_crash_nor_diverge() {
    // Random registers, then 512 random bytes as code, with no IDT: whatever the bytes do
    // (write anywhere, jump anywhere, fault), both engines end the same way, and bt86 lives.
    let mut rng = bt86::fuzz::Rng::new(0x5EED);
    let mut ended = [0usize; 3];
    for _ in 0..600 {
        let mut a = CodeAssembler::new(32).unwrap();
        for r in [eax, ecx, edx, ebx, ebp, esi, edi] {
            // Mostly addresses inside RAM, so that memory operands often succeed.
            let v = if rng.below(4) == 0 { rng.value() } else { 0x10_0000 + rng.below(0x30_0000) };
            a.mov(r, v).unwrap();
        }
        a.mov(esp, 0x18_0000u32).unwrap();
        let mut code = a.assemble(u64::from(FLAT_KERNEL_CODE)).unwrap();
        code.extend((0..512).map(|_| rng.below(256) as u8));
        let elf = guest_images::flat_kernel("random", "random bytes", &code).elf;
        let (interp, _) = run(&elf, Engine::interp(), 20_000);
        let (jit, _) = run(&elf, Engine::new(EngineKind::Jit).unwrap(), 20_000);
        assert_eq!(jit, interp, "random code: the translator differs");
        ended[match interp.0 {
            Exit::TripleFault(_) => 0,
            Exit::StepLimit => 1,
            _ => 2,
        }] += 1;
    }
    println!(
        "random code ended: {} triple faults, {} step limits, {} otherwise",
        ended[0], ended[1], ended[2]
    );
    assert!(ended[0] > 0, "some random code faults: {ended:?}");
}

#[test]
fn rotates_and_shifts_by_cl_leave_exactly_the_interpreters_flags() {
    // Rotates change only CF and OF; shifts and rotates by CL may have a count of 0 and then
    // change no flag at all. Each is followed by a reader of the flags it writes (or of the
    // older flags it keeps), by a memory access that may take a slow path, or by nothing that
    // reads flags at all; all are translated inline but `rol dx, 16` (a rotate by the width
    // still sets CF and OF). EDI sums what the readers saw.
    let elf = kernel(|a, _| {
        let mut top = a.create_label();
        let data = 0x0017_0000u32;
        a.xor(edi, edi)?;
        a.mov(ebx, 0x9E37_79B9u32)?;
        a.mov(edx, 0x1234_5678u32)?;
        a.mov(dword_ptr(data), 0x8000_0001u32)?;
        a.xor(ecx, ecx)?;
        a.set_label(&mut top)?;
        // ROL with CF/OF live through a memory load, read by PUSHFD.
        a.cmp(ebx, edx)?;
        a.rol(edx, 3)?;
        a.mov(eax, dword_ptr(data))?;
        a.pushfd()?;
        a.pop(esi)?;
        a.and(esi, 0x8D5u32)?;
        a.add(edi, esi)?;
        // ROR of memory, CF read by ADC; a 16-bit rotate by its width (a callout).
        a.ror(byte_ptr(data), 5)?;
        a.adc(edi, 0)?;
        a.rol(dx, 16)?;
        a.adc(edi, edx)?;
        // Shift by CL (0..31) with the older ZF live: SETZ sees the CMP's when CL is 0.
        a.cmp(ebx, eax)?;
        a.shl(edx, cl)?;
        a.setz(al)?;
        a.movzx(eax, al)?;
        a.add(edi, eax)?;
        // Shifts and rotates by CL whose flags nobody reads.
        a.sar(ebx, cl)?;
        a.rol(ah, cl)?;
        a.ror(word_ptr(data + 4), cl)?;
        a.xor(ebx, 0x9E37_79B9u32)?;
        a.add(edi, ebx)?;
        a.add(edi, eax)?;
        a.ror(edi, 7)?;
        a.add(ecx, 1)?;
        a.cmp(ecx, 96)?;
        a.jne(top)?;
        a.mov(eax, edi)?;
        Ok(top)
    });
    let (interp, stats) = everywhere(&elf, 1_000_000, JitOptions::default());
    assert!(matches!(interp.0, Exit::DebugExit { value: 0 }), "{:?}", interp.0);
    let callouts = stats.top_callouts(64);
    let count = |name: &str| callouts.iter().find(|(n, _)| n == name).map_or(0, |c| c.1);
    assert_eq!(count("rol"), 96, "only `rol dx, 16` is a callout: {callouts:?}");
    assert_eq!(count("ror") + count("sar") + count("shl"), 0, "the others are inline: {callouts:?}");
}

#[test]
fn rep_movs_and_stos_across_pages_and_overlapping_match_the_element_by_element_definition() {
    // REP MOVS/STOS runs go a page at a time (emu-core's string.rs); overlapping copies must
    // still behave as if one element were moved at a time, and page ends must be honoured.
    // The expected bytes come from a model of the SDM's definition, here.
    const BUF: u32 = 0x0017_0000;
    const LEN: usize = 0x3000;
    let elf = kernel(|a, _| {
        let mut fill = a.create_label();
        let mut sum = a.create_label();
        // buf[i] = i * 7 + (i >> 8)
        a.xor(ecx, ecx)?;
        a.set_label(&mut fill)?;
        a.mov(eax, ecx)?;
        a.imul_3(eax, eax, 7)?;
        a.mov(edx, ecx)?;
        a.shr(edx, 8)?;
        a.add(eax, edx)?;
        a.mov(byte_ptr(ecx + BUF), al)?;
        a.inc(ecx)?;
        a.cmp(ecx, LEN as u32)?;
        a.jne(fill)?;
        a.cld()?;
        // An overlapping dword copy three bytes up, across two page ends.
        a.mov(esi, BUF + 0xF10)?;
        a.mov(edi, BUF + 0xF13)?;
        a.mov(ecx, 700u32)?;
        a.rep().movsd()?;
        // A byte copy one up (spreads one byte), across a page end.
        a.mov(esi, BUF + 0x2FF0)?;
        a.mov(edi, BUF + 0x2FF1)?;
        a.mov(ecx, 0x8u32)?;
        a.rep().movsb()?;
        a.mov(esi, BUF + 0x1FF0)?;
        a.mov(edi, BUF + 0x1FF1)?;
        a.mov(ecx, 0x40u32)?;
        a.rep().movsb()?;
        // Words stored from an odd address across a page end.
        a.mov(eax, 0xBEEFu32)?;
        a.mov(edi, BUF + 0x0FF5)?;
        a.mov(ecx, 9u32)?;
        a.rep().stosw()?;
        // A checksum of the buffer and of the final registers.
        a.mov(ebx, esi)?;
        a.add(ebx, edi)?;
        a.add(ebx, ecx)?;
        a.xor(ecx, ecx)?;
        a.set_label(&mut sum)?;
        a.rol(ebx, 5)?;
        a.movzx(eax, byte_ptr(ecx + BUF))?;
        a.add(ebx, eax)?;
        a.inc(ecx)?;
        a.cmp(ecx, LEN as u32)?;
        a.jne(sum)?;
        a.mov(eax, ebx)?;
        Ok(fill)
    });
    // The model: one element at a time.
    let mut buf: Vec<u8> = (0..LEN).map(|i| (i * 7 + (i >> 8)) as u8).collect();
    let movs = |buf: &mut Vec<u8>, mut s: usize, mut d: usize, n: usize, count: usize| {
        for _ in 0..count {
            let e: Vec<u8> = buf[s..s + n].to_vec();
            buf[d..d + n].copy_from_slice(&e);
            s += n;
            d += n;
        }
        (s, d)
    };
    movs(&mut buf, 0xF10, 0xF13, 4, 700);
    movs(&mut buf, 0x2FF0, 0x2FF1, 1, 8);
    let (s, _) = movs(&mut buf, 0x1FF0, 0x1FF1, 1, 0x40);
    let mut d = 0xFF5;
    for _ in 0..9 {
        buf[d..d + 2].copy_from_slice(&0xBEEFu16.to_le_bytes());
        d += 2;
    }
    let mut sum = (s as u32 + BUF).wrapping_add(d as u32 + BUF);
    for b in &buf {
        sum = sum.rotate_left(5).wrapping_add(u32::from(*b));
    }
    let (interp, _) = everywhere(&elf, 1_000_000, JitOptions::default());
    assert_eq!(interp.1, hex(sum));
}

#[test]
fn mul_and_div_of_every_size_match_the_interpreter_and_div_keeps_the_flags() {
    // MUL and DIV are translated inline; DIV's #DE goes through emu-core. EDI sums products,
    // quotients, remainders and the flags seen after each (DIV must leave the CMP's).
    let elf = kernel(|a, _| {
        let mut top = a.create_label();
        let data = 0x0017_0000u32;
        a.xor(edi, edi)?;
        a.mov(esi, 0x1234_5679u32)?;
        a.mov(ecx, 200u32)?;
        a.set_label(&mut top)?;
        a.imul_3(esi, esi, 1_103_515_245)?;
        a.add(esi, 12345)?;
        a.mov(dword_ptr(data), esi)?;
        // 32-bit: MUL by a register, then DIV by memory with a dividend that fits.
        a.mov(eax, esi)?;
        a.mul(ecx)?;
        a.seto(bl)?;
        a.movzx(ebx, bl)?;
        a.add(edi, ebx)?;
        a.add(edi, eax)?;
        a.add(edi, edx)?;
        a.and(edx, 0xFFFF)?;
        a.cmp(edi, esi)?;
        a.div(dword_ptr(data))?;
        a.setb(bl)?;
        a.add(edi, ebx)?;
        a.add(edi, eax)?;
        a.add(edi, edx)?;
        // 16-bit and 8-bit forms, high-byte divisors included.
        a.mov(eax, esi)?;
        a.mov(ebx, esi)?;
        a.shr(ebx, 16)?;
        a.or(ebx, 1)?;
        a.mul(bx)?;
        a.add(edi, eax)?;
        a.add(edi, edx)?;
        a.and(edx, 0x7F)?;
        a.div(bx)?;
        a.add(edi, eax)?;
        a.add(edi, edx)?;
        a.mov(eax, esi)?;
        a.mul(ah)?;
        a.setc(dl)?;
        a.add(edi, eax)?;
        a.add(edi, edx)?;
        a.mov(eax, esi)?;
        a.mov(ebx, 0x0000_F100u32)?;
        a.or(bh, al)?;
        a.and(eax, 0x0FFF)?;
        a.div(bh)?;
        a.add(edi, eax)?;
        a.rol(edi, 3)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.mov(eax, edi)?;
        Ok(top)
    });
    let (interp, stats) = everywhere(&elf, 1_000_000, JitOptions::default());
    assert!(matches!(interp.0, Exit::DebugExit { value: 0 }), "{:?}", interp.0);
    let callouts = stats.top_callouts(64);
    assert!(!callouts.iter().any(|(n, _)| n == "mul" || n == "div"), "inline: {callouts:?}");
    // A quotient too wide and a zero divisor: #DE (no IDT here, so a triple fault) in every
    // engine, at the same instruction.
    for divisor in [0u32, 1] {
        let elf = kernel(|a, _| {
            let mut top = a.create_label();
            a.set_label(&mut top)?;
            a.mov(edx, 5u32)?;
            a.mov(eax, 7u32)?;
            a.mov(ecx, divisor)?;
            a.div(ecx)?;
            Ok(top)
        });
        let (run, _) = everywhere(&elf, 1_000_000, JitOptions::default());
        assert!(matches!(run.0, Exit::TripleFault(_)), "{:?}", run.0);
    }
}

#[test]
fn an_instruction_straddling_a_page_end_is_fetched_afresh_every_time() {
    // `add ebx, imm32` (81 C3 imm32) at 0x170FFE: two bytes on one page, the immediate on the
    // next, then RET. Each iteration rewrites the immediate (on the second page) and every
    // fourth one turns the ADD into a SUB (81 EB, on the first page): the translator must run
    // what is there now, and not interpret it every time.
    const AT: u32 = 0x0017_0FFE;
    let elf = kernel(|a, _| {
        let mut top = a.create_label();
        let mut add = a.create_label();
        a.mov(dword_ptr(AT), 0x0000_C381u32)?;
        a.mov(byte_ptr(AT + 6), 0xC3u32)?;
        a.xor(ebx, ebx)?;
        a.mov(ecx, 400u32)?;
        a.set_label(&mut top)?;
        a.imul_3(eax, ecx, 0x9E37_79B1u32 as i32)?;
        a.mov(dword_ptr(AT + 2), eax)?;
        a.test(ecx, 3)?;
        a.mov(eax, 0xC381u32)?;
        a.jnz(add)?;
        a.mov(eax, 0xEB81u32)?;
        a.set_label(&mut add)?;
        a.mov(word_ptr(AT), ax)?;
        a.mov(eax, AT)?;
        a.call(eax)?;
        a.rol(ebx, 1)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.mov(eax, ebx)?;
        Ok(top)
    });
    let (interp, stats) = everywhere(&elf, 1_000_000, JitOptions::default());
    assert!(matches!(interp.0, Exit::DebugExit { value: 0 }), "{:?}", interp.0);
    let interpreted = stats.fallbacks.get(&Fallback::Untranslatable).copied().unwrap_or(0);
    assert!(interpreted < 10, "the straddling instruction is a callout, not interpreted: {interpreted}");
}

#[test]
fn ebp_and_esp_relative_accesses_under_paging_agree_when_their_window_fits_a_page_or_not() {
    // With paging on, the translator probes the TLB once for a stretch of [EBP + d] (or
    // [ESP + d]) accesses (a frame window). EBP walks across a page end so that the stretch's bytes sometimes lie
    // in one page and sometimes in two; EBP is also changed inside a stretch and a callout
    // (BSWAP) splits another. The results must be the interpreter's.
    const PD: u32 = 0x0019_0000;
    const PT: u32 = 0x0019_1000;
    let elf = kernel(|a, _| {
        let mut top = a.create_label();
        let mut fill = a.create_label();
        // 4 KiB pages mapping the first 4 MiB to themselves, except that linear 0x170000 and
        // 0x171000 are swapped (so a probe of the wrong page would read the wrong bytes).
        a.mov(dword_ptr(PD), PT | 3)?;
        a.xor(ecx, ecx)?;
        a.set_label(&mut fill)?;
        a.mov(eax, ecx)?;
        a.shl(eax, 12)?;
        a.or(eax, 3)?;
        a.mov(dword_ptr(ecx * 4 + PT), eax)?;
        a.inc(ecx)?;
        a.cmp(ecx, 1024)?;
        a.jne(fill)?;
        a.mov(dword_ptr(PT + 0x170 * 4), 0x0017_1003u32)?;
        a.mov(dword_ptr(PT + 0x171 * 4), 0x0017_0003u32)?;
        a.mov(eax, PD)?;
        a.mov(cr3, eax)?;
        a.mov(eax, cr0)?;
        a.or(eax, 0x8000_0000u32 as i32)?;
        a.mov(cr0, eax)?;
        a.xor(edi, edi)?;
        a.mov(ebp, 0x0017_0F80u32)?;
        a.mov(ecx, 300u32)?;
        a.set_label(&mut top)?;
        a.mov(dword_ptr(ebp - 0x10), ecx)?;
        a.mov(dword_ptr(ebp + 0x14), edi)?;
        a.add(dword_ptr(ebp - 0x10), 0x1234)?;
        a.mov(eax, dword_ptr(ebp - 0x10))?;
        a.xor(eax, dword_ptr(ebp + 0x14))?;
        a.movzx(edx, byte_ptr(ebp + 0x1))?;
        a.add(edi, eax)?;
        a.add(edi, edx)?;
        a.lea(ebp, dword_ptr(ebp + 1))?;
        // ESP-relative accesses, ESP walking across the same page end.
        a.mov(dword_ptr(0x0017_2000u32), esp)?;
        a.lea(esp, dword_ptr(ebp + 0x30))?;
        a.mov(dword_ptr(esp - 0x4), edi)?;
        a.add(dword_ptr(esp + 0x8), ecx)?;
        a.mov(eax, dword_ptr(esp + 0x8))?;
        a.xor(eax, dword_ptr(esp - 0x4))?;
        a.add(edi, eax)?;
        a.mov(esp, dword_ptr(0x0017_2000u32))?;
        a.mov(word_ptr(ebp + 0x20), cx)?;
        a.movsx(eax, word_ptr(ebp + 0x20))?;
        a.bswap(eax)?;
        a.add(eax, dword_ptr(ebp - 0x8))?;
        a.mov(dword_ptr(ebp - 0x8), eax)?;
        a.inc(dword_ptr(ebp - 0x4))?;
        a.add(edi, dword_ptr(ebp - 0x4))?;
        a.rol(edi, 5)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.mov(eax, edi)?;
        Ok(top)
    });
    let (interp, _) = everywhere(&elf, 1_000_000, JitOptions::default());
    assert!(matches!(interp.0, Exit::DebugExit { value: 0 }), "{:?}", interp.0);
}

#[test]
fn code_that_rewrites_itself_every_few_instructions() {
    // Each iteration stores the loop counter into the immediate of an `add ebx, imm32` a few
    // instructions ahead (in the same block), so the block must stop after the store and the
    // next block must see the new bytes.
    let mut patched = 0;
    let elf = kernel(|a, add_at| {
        let mut top = a.create_label();
        let mut add = a.create_label();
        a.xor(ebx, ebx)?;
        a.mov(ecx, 3000u32)?;
        a.set_label(&mut top)?;
        a.mov(dword_ptr(add_at.wrapping_add(2)), ecx)?;
        a.nop()?;
        a.set_label(&mut add)?;
        a.add(ebx, 0x1234_5678u32)?; // 81 C3 imm32: the immediate is at +2
        a.dec(ecx)?;
        a.jnz(top)?;
        a.mov(eax, ebx)?;
        Ok(add)
    });
    let ((_, out, _), stats) = everywhere(&elf, 10_000_000, JitOptions::default());
    for i in 1..=3000u32 {
        patched = u32::wrapping_add(patched, i);
    }
    assert_eq!(out, hex(patched));
    assert!(stats.invalidations > 0, "{stats}");
    assert!(
        stats.fallbacks.get(&Fallback::SmcPage).copied().unwrap_or(0) > 0,
        "the page is given up on: {stats}"
    );
}

#[test]
fn a_store_into_the_running_block_takes_effect_at_the_next_instruction() {
    // The store rewrites `add eax, 1` (83 C0 01) into `add eax, 5` in the middle of the block
    // that holds both.
    let elf = kernel(|a, add_at| {
        let mut add = a.create_label();
        a.xor(eax, eax)?;
        a.mov(byte_ptr(add_at.wrapping_add(2)), 5u32)?;
        a.set_label(&mut add)?;
        a.db(&[0x83, 0xC0, 0x01])?;
        Ok(add)
    });
    let ((_, out, _), stats) = everywhere(&elf, 1_000_000, JitOptions::default());
    assert_eq!(out, hex(5));
    assert!(stats.invalidations > 0, "{stats}");
}

#[test]
fn code_entered_in_the_middle_of_an_instruction() {
    // B8 40 90 90 90 is `mov eax, 0x90909040`; entered one byte in, it is `inc eax` and three
    // NOPs. Odd iterations enter it in the middle, even ones at the start.
    let elf = kernel(|a, mid_at| {
        let mut top = a.create_label();
        let mut even = a.create_label();
        let mut mid = a.create_label();
        let mut done = a.create_label();
        a.xor(eax, eax)?;
        a.mov(ecx, 100u32)?;
        a.set_label(&mut top)?;
        a.test(ecx, 1u32)?;
        a.jz(even)?;
        a.mov(edx, mid_at.wrapping_add(1))?;
        a.jmp(edx)?;
        a.set_label(&mut even)?;
        a.mov(edx, mid_at)?;
        a.jmp(edx)?;
        a.set_label(&mut mid)?;
        a.db(&[0xB8, 0x40, 0x90, 0x90, 0x90])?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.set_label(&mut done)?;
        Ok(mid)
    });
    let ((_, out, _), _) = everywhere(&elf, 1_000_000, JitOptions::default());
    assert_eq!(out, hex(0x9090_9041));
}

#[test]
fn a_full_code_arena_is_flushed_and_refilled() {
    // 3,000 distinct blocks, each adding its index: far more code than a 256 KiB arena holds.
    let elf = kernel(|a, _| {
        a.xor(eax, eax)?;
        a.mov(edx, 3u32)?;
        let mut outer = a.create_label();
        a.set_label(&mut outer)?;
        for i in 0..3000u32 {
            let mut next = a.create_label();
            a.add(eax, i)?;
            a.jmp(next)?;
            a.set_label(&mut next)?;
        }
        a.dec(edx)?;
        a.jnz(outer)?;
        Ok(outer)
    });
    let small = JitOptions { arena_size: 256 << 10, ..JitOptions::default() };
    let ((_, out, _), stats) = everywhere(&elf, 10_000_000, small);
    assert_eq!(out, hex(3 * (0..3000u32).sum::<u32>()));
    assert!(stats.flushes > 1, "{stats}");
}

#[test]
fn data_in_another_line_of_a_code_page_does_not_invalidate_code() {
    // A counter 512 bytes after the loop, in the same page: written every iteration, yet no
    // block is dropped (64-byte lines). A counter in the loop's own line would drop it.
    for (far, expect_invalidations) in [(true, false), (false, true)] {
        let elf = kernel(|a, top_at| {
            let mut top = a.create_label();
            let mut data = a.create_label();
            // Far: 512 bytes past the loop (same page, another line); near: the loop's line.
            let counter = if far { top_at.wrapping_add(512) } else { top_at.wrapping_sub(4) };
            a.mov(ecx, 1000u32)?;
            a.mov(dword_ptr(counter), 0u32)?;
            a.jmp(top)?;
            a.set_label(&mut data)?;
            a.dd(&[0])?;
            a.set_label(&mut top)?;
            a.inc(dword_ptr(counter))?;
            a.dec(ecx)?;
            a.jnz(top)?;
            a.mov(eax, dword_ptr(counter))?;
            Ok(top)
        });
        let offset = if far { 512 } else { -4 };
        let ((_, out, _), stats) = everywhere(&elf, 1_000_000, JitOptions::default());
        assert_eq!(out, hex(1000), "offset {offset}");
        assert_eq!(stats.invalidations > 0, expect_invalidations, "offset {offset}: {stats}");
    }
}

#[test]
fn branches_inside_a_block_keep_exact_counts() {
    // One block holds both loops: JZ SKIP rejoins it forward, JNZ INNER loops back to its
    // middle, JNZ OUTER to its start. Runs cut short at arbitrary instruction counts must stop
    // at exactly the same instruction in every engine.
    let elf = kernel(|a, _| {
        let (mut outer, mut inner, mut skip) = (a.create_label(), a.create_label(), a.create_label());
        a.xor(eax, eax)?;
        a.mov(edx, 300u32)?;
        a.set_label(&mut outer)?;
        a.mov(ecx, 37u32)?;
        a.set_label(&mut inner)?;
        a.add(eax, ecx)?;
        a.test(al, 1u32)?;
        a.jz(skip)?;
        a.xor(eax, 0x55u32)?;
        a.set_label(&mut skip)?;
        a.sub(ecx, 1u32)?;
        a.jnz(inner)?;
        a.dec(edx)?;
        a.jnz(outer)?;
        Ok(outer)
    });
    let mut want = 0u32;
    for _ in 0..300 {
        for c in (1..=37u32).rev() {
            want = want.wrapping_add(c);
            if want & 1 != 0 {
                want ^= 0x55;
            }
        }
    }
    let ((_, out, _), _) = everywhere(&elf, 10_000_000, JitOptions::default());
    assert_eq!(out, hex(want));
    cut_short_everywhere(&elf, &[1_000, 1_001, 1_002, 1_003, 12_345, 33_333]);
}

#[test]
fn inner_loops_keep_their_flags_and_counts_in_the_blocks_loop_copies() {
    // One block holds an outer loop whose head follows set-up code, and an inner loop whose
    // head is a memory access that reads CF (ADC): both get loop copies that start with the
    // record their back edges leave pending (the inner one CMP's, so CF = 1 there), with a
    // forward branch and a read-modify-write store inside. The runs are long enough for budget
    // exits to fall inside either copy, which must write that record before leaving.
    const OUTER: u32 = 20_000;
    let elf = kernel(|a, _| {
        let (mut fill, mut outer, mut inner, mut skip) =
            (a.create_label(), a.create_label(), a.create_label(), a.create_label());
        a.mov(ecx, 0u32)?;
        a.set_label(&mut fill)?;
        a.imul_3(eax, ecx, 0x0101_0101)?;
        a.mov(dword_ptr(ecx * 4 + 0x20_0000), eax)?;
        a.inc(ecx)?;
        a.cmp(ecx, 128u32)?;
        a.jb(fill)?;
        a.mov(esi, 0x20_0000u32)?;
        a.mov(ecx, OUTER)?;
        a.xor(eax, eax)?;
        a.set_label(&mut outer)?;
        a.xor(edx, edx)?;
        a.set_label(&mut inner)?;
        a.adc(eax, dword_ptr(esi + edx * 4))?;
        a.test(al, 2u32)?;
        a.jz(skip)?;
        a.add(dword_ptr(esi + edx * 4), 3u32)?;
        a.set_label(&mut skip)?;
        a.inc(edx)?;
        a.cmp(edx, 7u32)?;
        a.jb(inner)?;
        a.add(esi, 4u32)?;
        a.and(esi, 0x0020_00FFu32)?;
        a.dec(ecx)?;
        a.jnz(outer)?;
        Ok(outer)
    });
    let mut mem = vec![0u8; 0x200];
    for i in 0..128u32 {
        let at = 4 * i as usize;
        mem[at..at + 4].copy_from_slice(&i.wrapping_mul(0x0101_0101).to_le_bytes());
    }
    let (mut sum, mut base) = (0u32, 0usize);
    for _ in 0..OUTER {
        let mut carry = 0u32; // XOR clears CF; the back edge leaves CMP's CF = 1
        for i in 0..7 {
            let at = base + 4 * i;
            let v = u32::from_le_bytes(mem[at..at + 4].try_into().unwrap());
            sum = sum.wrapping_add(v).wrapping_add(carry);
            if sum & 2 != 0 {
                mem[at..at + 4].copy_from_slice(&v.wrapping_add(3).to_le_bytes());
            }
            carry = 1;
        }
        base = (base + 4) & 0xFF;
    }
    let ((_, out, _), stats) = everywhere(&elf, 10_000_000, JitOptions::default());
    assert_eq!(out, hex(sum));
    assert!(stats.blocks_translated > 0);
    cut_short_everywhere(&elf, &[5_000, 5_001, 5_002, 5_003, 77_777, 123_457]);
}

#[test]
fn predicated_stretches_take_effect_exactly_when_their_branch_falls_through() {
    // Short stretches skipped by a data-dependent branch run predicated (no host branch on
    // the guest's condition). Here: a swap through memory; a load through a pointer that is
    // past RAM when the stretch is skipped; a read-modify-write of a counter in the code's own
    // page (no direct writes there: its check fails whatever the condition); registers only.
    // Runs cut short anywhere must stop at the same instruction in every engine.
    const N: u32 = 3000;
    let elf = kernel(|a, top_at| {
        let (mut init, mut top) = (a.create_label(), a.create_label());
        let (mut skip1, mut skip2, mut skip3, mut skip4) =
            (a.create_label(), a.create_label(), a.create_label(), a.create_label());
        let counter = top_at.wrapping_add(512);
        a.xor(ecx, ecx)?;
        a.set_label(&mut init)?;
        a.imul_3(eax, ecx, 0x9E37_79B9u32 as i32)?;
        a.mov(dword_ptr(ecx * 4 + 0x20_0000), eax)?;
        a.inc(ecx)?;
        a.cmp(ecx, 64u32)?;
        a.jb(init)?;
        a.mov(dword_ptr(counter), 0u32)?;
        a.mov(esi, 0x20_0000u32)?;
        a.mov(edi, 12345u32)?;
        a.xor(eax, eax)?;
        a.mov(ecx, N)?;
        a.set_label(&mut top)?;
        a.imul_3(edi, edi, 1_103_515_245)?;
        a.add(edi, 12345u32)?;
        a.mov(ebx, edi)?;
        a.shr(ebx, 26u32)?;
        a.test(edi, edi)?;
        a.js(skip1)?;
        a.mov(ebp, dword_ptr(ebx * 4 + 0x20_0000))?;
        a.mov(dword_ptr(ebx * 4 + 0x20_0000), edi)?;
        a.mov(dword_ptr(esi), ebp)?;
        a.add(eax, ebp)?;
        a.set_label(&mut skip1)?;
        a.mov(edx, 0x7FFF_FFF0u32)?;
        a.test(edi, 0x1_0000u32)?;
        a.jz(skip2)?;
        a.lea(edx, dword_ptr(esi + ebx * 4))?;
        a.mov(ebp, dword_ptr(edx))?;
        a.xor(eax, ebp)?;
        a.set_label(&mut skip2)?;
        a.xor(edx, edx)?;
        a.test(edi, 0x2_0000u32)?;
        a.jnz(skip3)?;
        a.mov(ebp, dword_ptr(counter))?;
        a.lea(ebp, dword_ptr(ebp + 1))?;
        a.mov(dword_ptr(counter), ebp)?;
        a.set_label(&mut skip3)?;
        a.cmp(ebx, 20u32)?;
        a.jb(skip4)?;
        a.mov(edx, ebx)?;
        a.add(edx, 7u32)?;
        a.xor(eax, edx)?;
        a.lea(eax, dword_ptr(eax + edx * 2))?;
        a.set_label(&mut skip4)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.add(eax, dword_ptr(counter))?;
        Ok(top)
    });
    let mut mem: Vec<u32> = (0..64u32).map(|i| i.wrapping_mul(0x9E37_79B9)).collect();
    let (mut seed, mut sum, mut counter) = (12345u32, 0u32, 0u32);
    for _ in 0..N {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let i = (seed >> 26) as usize;
        if (seed as i32) >= 0 {
            let v = mem[i];
            mem[i] = seed;
            mem[0] = v;
            sum = sum.wrapping_add(v);
        }
        if seed & 0x1_0000 != 0 {
            sum ^= mem[i];
        }
        if seed & 0x2_0000 == 0 {
            counter += 1;
        }
        if i >= 20 {
            let d = i as u32 + 7;
            sum = (sum ^ d).wrapping_add(d * 2);
        }
    }
    let ((_, out, _), _) = everywhere(&elf, 1_000_000, JitOptions::default());
    assert_eq!(out, hex(sum.wrapping_add(counter)));
    cut_short_everywhere(&elf, &[20_000, 20_001, 20_002, 20_003, 20_004, 20_005, 20_006, 20_007, 31_337]);
}

#[test]
fn a_store_straddling_into_translated_code_with_paging_off_is_caught() {
    // With paging off, stores check their page's direct-write byte. Pages D = 0x2FF000 and
    // C = 0x300000 are both written first (D may then be written directly); then a routine is
    // put in C and run (translated), which must take D's grant away too: a dword store at D's
    // last byte straddles into C and rewrites the routine's immediate on every iteration.
    let elf = kernel(|a, _| {
        let (mut warm, mut top, mut end) = (a.create_label(), a.create_label(), a.create_label());
        a.mov(ecx, 100u32)?;
        a.set_label(&mut warm)?;
        a.mov(dword_ptr(0x2F_F800), ecx)?;
        a.mov(dword_ptr(0x30_0800), ecx)?;
        a.dec(ecx)?;
        a.jnz(warm)?;
        a.mov(dword_ptr(0x30_0000), 0xC300_C083u32)?; // add eax, 0 ; ret
        a.xor(eax, eax)?;
        a.mov(ecx, 500u32)?;
        a.set_label(&mut top)?;
        // Bytes 0x2FFFFF..=0x300002: 00 83 C0 imm8, imm8 = CL.
        a.mov(edx, ecx)?;
        a.shl(edx, 24)?;
        a.or(edx, 0x00C0_8300u32)?;
        a.mov(dword_ptr(0x2F_FFFF), edx)?;
        a.mov(ebx, 0x30_0000u32)?;
        a.call(ebx)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.set_label(&mut end)?;
        Ok(end)
    });
    let want = (1..=500u32).fold(0u32, |s, i| s.wrapping_add(i32::from(i as u8 as i8) as u32));
    let ((_, out, _), stats) = everywhere(&elf, 1_000_000, JitOptions::default());
    assert_eq!(out, hex(want));
    assert!(stats.invalidations > 0, "{stats}");
}

#[test]
fn registers_known_to_be_zero_and_constant_addresses_stay_exact() {
    // The translator leaves registers known to hold 0 out of effective addresses and skips
    // the RAM bound check of constant addresses inside RAM; every way a register stops being
    // 0 (a byte write, a callout, a multiply, a join with a path where it is not) must be seen.
    let features = emu_core::cpuid::cpuid(1)[3]; // EDX of leaf 1
    let elf = kernel(|a, _| {
        let (mut top, mut skip, mut end) = (a.create_label(), a.create_label(), a.create_label());
        a.mov(esi, 0x20_0000u32)?;
        for i in 0..64u32 {
            a.mov(dword_ptr(0x20_0000 + 4 * i), i * 0x0101_0101)?;
        }
        a.xor(edi, edi)?;
        a.mov(ecx, 20u32)?;
        a.set_label(&mut top)?;
        a.xor(edx, edx)?;
        a.add(edi, dword_ptr(esi + edx * 4))?; // [esi]
        a.mov(dl, cl)?; // edx = cl now
        a.add(edi, dword_ptr(esi + edx * 4))?;
        a.test(cl, 1u32)?;
        a.jz(skip)?;
        a.xor(edx, edx)?; // zero on one path only
        a.set_label(&mut skip)?;
        a.xor(ebx, ebx)?; // no flag live here: the taken path rejoins the block
        a.add(edi, dword_ptr(esi + edx * 4 + 8))?;
        a.xor(edx, edx)?;
        a.mov(eax, 1u32)?;
        a.push(ecx)?;
        a.cpuid()?; // a callout that writes EBX, ECX, EDX
        a.pop(ecx)?;
        a.add(edi, dword_ptr(esi + edx + 12 - features as i32))?; // [esi + 12]
        a.sub(eax, eax)?;
        a.mov(eax, 0x4000_0000u32)?;
        a.mov(edx, 0u32)?;
        a.mul(ecx)?; // EDX = ECX / 4
        a.add(edi, dword_ptr(esi + edx * 4 + 4))?;
        // Constant addresses: inside RAM (no bound check), a store, and past RAM (open bus).
        a.mov(dword_ptr(0x20_0100), edi)?;
        a.add(edi, dword_ptr(0x20_0100))?;
        a.add(edi, dword_ptr(0x7FFF_FFF0))?;
        a.mov(dword_ptr(0x7FFF_FFF0), edi)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.mov(eax, edi)?;
        a.set_label(&mut end)?;
        Ok(end)
    });
    let mut mem = [0u32; 65];
    for (i, m) in mem.iter_mut().enumerate().take(64) {
        *m = (i as u32).wrapping_mul(0x0101_0101);
    }
    let mut sum = 0u32;
    for count in (1..=20u32).rev() {
        sum = sum.wrapping_add(mem[0]);
        sum = sum.wrapping_add(mem[(count & 0xFF) as usize]);
        let index = if count & 1 == 0 { count & 0xFF } else { 0 };
        sum = sum.wrapping_add(mem[index as usize + 2]);
        sum = sum.wrapping_add(mem[3]);
        sum = sum.wrapping_add(mem[(count / 4) as usize + 1]);
        mem[0x40] = sum;
        sum = sum.wrapping_add(sum);
        sum = sum.wrapping_add(0xFFFF_FFFF);
    }
    let ((_, out, _), _) = everywhere(&elf, 1_000_000, JitOptions::default());
    assert_eq!(out, hex(sum));
}

#[test]
fn accesses_at_and_past_the_end_of_ram_after_a_checked_one_stay_exact() {
    // With paging off, a register checked against RAM's end is not checked again in the same
    // stretch of code. The accesses here start inside RAM (4 MiB) and run past its end, or lie
    // far beyond it: a byte read at RAM's end − 2 passes the check, the dword store and read
    // at the same address must not (they are partly open bus), nor may anything after a
    // failed check rely on it.
    let ram = 4u32 << 20;
    let elf = kernel(|a, _| {
        let mut end = a.create_label();
        a.mov(dword_ptr(ram - 8), 0x1122_3344u32)?;
        a.mov(dword_ptr(ram - 4), 0x5566_7788u32)?;
        a.mov(ebx, ram - 2)?;
        a.movzx(eax, byte_ptr(ebx))?; // 0x66: inside RAM
        a.mov(dword_ptr(ebx), 0xAABB_CCDDu32)?; // the two bytes past RAM are dropped
        a.add(eax, dword_ptr(ebx))?; // 0xFFFF_CCDD
        a.mov(esi, 0x7FFF_FFF0u32)?;
        a.add(eax, dword_ptr(esi))?; // open bus, and the check failed:
        a.mov(dword_ptr(esi), eax)?; // nothing after it may write there
        a.add(eax, dword_ptr(esi))?;
        a.add(eax, dword_ptr(ram - 4))?; // 0xCCDD_7788
        a.set_label(&mut end)?;
        Ok(end)
    });
    let want = 0x66u32
        .wrapping_add(0xFFFF_CCDD)
        .wrapping_add(0xFFFF_FFFF)
        .wrapping_add(0xFFFF_FFFF)
        .wrapping_add(0xCCDD_7788);
    let ((_, out, _), _) = everywhere(&elf, 1_000_000, JitOptions::default());
    assert_eq!(out, hex(want));
}
