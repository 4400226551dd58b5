//! `bt86 diff` against QEMU: it finds a deliberately planted bug at the right instruction, a
//! clean kernel runs in lockstep without divergence, and every embedded kernel either matches
//! QEMU or stops at a divergence that the documented list of QEMU deviations explains.
//!
//! Needs `qemu-system-i386`; skipped with a message when it is absent, unless
//! `BT86_REQUIRE_QEMU=1` (CI), which makes its absence a failure.

use bt86::diff::{diff_image, diff_kernel, DiffOptions, DiffOutcome};
use emu_core::cpu::Injection;
use iced_x86::code_asm::*;
use iced_x86::BlockEncoderOptions;

fn qemu_available() -> bool {
    let found = std::process::Command::new("qemu-system-i386")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("BT86_REQUIRE_QEMU").is_none(),
            "qemu-system-i386 is required (BT86_REQUIRE_QEMU is set) but cannot be run"
        );
        eprintln!("skipped: qemu-system-i386 is not installed");
    }
    found
}

/// A kernel that computes with ADC (carry in and out), then exits through port 0xF4. The first
/// ADC is the high half of a 64-bit increment of 0xFFFFFFFF_FFFFFFFF: its carry-out exists
/// only because of its carry-in.
fn adc_kernel() -> guest_images::Kernel {
    let mut a = CodeAssembler::new(32).unwrap();
    a.mov(eax, 0xFFFF_FFFFu32).unwrap();
    a.mov(edx, eax).unwrap();
    a.add(eax, 1u32).unwrap();
    a.adc(edx, 0u32).unwrap();
    a.setc(bl).unwrap();
    a.mov(ecx, 100u32).unwrap();
    a.xor(eax, eax).unwrap();
    a.mov(ebx, 0x8000_0000u32).unwrap();
    let mut top = a.create_label();
    a.set_label(&mut top).unwrap();
    a.add(ebx, 0x4000_0001u32).unwrap(); // carries out now and then
    a.adc(eax, 0u32).unwrap(); // counts the carries: CF in, CF out
    a.dec(ecx).unwrap();
    a.jnz(top).unwrap();
    a.mov(al, 0u32).unwrap();
    a.out(0xF4u32, al).unwrap();
    a.hlt().unwrap();
    let code = a.assemble(u64::from(guest_images::FLAT_KERNEL_CODE)).unwrap();
    guest_images::flat_kernel("adc", "ADC carry chain", &code)
}

/// A kernel that runs a loop of `iterations` with the RTC's periodic interrupt on IRQ 8 at the
/// rate `rs` selects (register A: 32768 >> (rs − 1) Hz). The handler first loads the EIP the
/// interrupt saved into EAX (compared at once), so an interrupt taken one instruction later in
/// bt86 than in QEMU shows as a divergence there, even where the interrupted instruction
/// changes no register (the loop's store and NOP), and reads register C to re-arm the line.
fn rtc_loop_kernel(rs: u8, iterations: u32) -> guest_images::Kernel {
    // Assembled twice: the first pass finds where the handlers land (every instruction keeps
    // its size), the second writes their addresses into the gates.
    let (_, handlers) = rtc_loop_code(rs, iterations, (0, 0));
    let (code, again) = rtc_loop_code(rs, iterations, handlers);
    assert_eq!(handlers, again);
    guest_images::flat_kernel("rtc-loop", "RTC periodic interrupts over a loop", &code)
}

/// [`rtc_loop_kernel`]'s code with the handlers at `handlers` (IRQ 8, the other IRQs), and
/// where the handlers are.
fn rtc_loop_code(rs: u8, iterations: u32, handlers: (u32, u32)) -> (Vec<u8>, (u32, u32)) {
    const IDT: u32 = 0x0010_8000;
    const IDTR: u32 = IDT - 0x10;
    const SCRATCH: u32 = IDT - 0x100;
    const STACK_TOP: u32 = 0x0011_0000;
    let mut a = CodeAssembler::new(32).unwrap();
    let mut rtc_handler = a.create_label();
    let mut other_handler = a.create_label();
    let mut top = a.create_label();
    let out = |a: &mut CodeAssembler, port: u32, value: u32| {
        a.mov(al, value).unwrap();
        a.out(port, al).unwrap();
    };
    a.cli().unwrap();
    a.mov(esp, STACK_TOP).unwrap();
    // Interrupt gates for vectors 20h–2Fh (the remapped IRQs), with the loader's code selector.
    a.xor(ebx, ebx).unwrap();
    a.mov(bx, cs).unwrap();
    a.shl(ebx, 16).unwrap();
    for vector in 0x20..0x30u32 {
        let handler = if vector == 0x28 { handlers.0 } else { handlers.1 };
        a.mov(eax, handler).unwrap();
        a.mov(edx, eax).unwrap();
        a.and(eax, 0xFFFF).unwrap();
        a.or(eax, ebx).unwrap();
        a.mov(dword_ptr(IDT + 8 * vector), eax).unwrap();
        a.and(edx, 0xFFFF_0000u32).unwrap();
        a.or(edx, 0x8E00).unwrap(); // present, DPL 0, 32-bit interrupt gate
        a.mov(dword_ptr(IDT + 8 * vector + 4), edx).unwrap();
    }
    a.mov(word_ptr(IDTR), 0x30 * 8 - 1).unwrap();
    a.mov(dword_ptr(IDTR + 2), IDT).unwrap();
    a.lidt(ptr(IDTR)).unwrap();
    // Both 8259As at vectors 20h and 28h; only IRQ 8 (and the cascade) unmasked.
    for (port, value) in [(0x20, 0x11), (0x21, 0x20), (0x21, 4), (0x21, 1), (0xA0, 0x11), (0xA1, 0x28)] {
        out(&mut a, port, value);
    }
    for (port, value) in [(0xA1, 2), (0xA1, 1), (0x21, 0xFB), (0xA1, 0xFE)] {
        out(&mut a, port, value);
    }
    // RTC: 32.768 kHz time base and rate `rs`, periodic interrupt enabled, register C read.
    for (port, value) in
        [(0x70, 0x0A), (0x71, 0x20 | u32::from(rs)), (0x70, 0x0B), (0x71, 0x42), (0x70, 0x0C)]
    {
        out(&mut a, port, value);
    }
    a.in_(al, 0x71).unwrap();
    a.sti().unwrap();
    a.mov(ecx, iterations).unwrap();
    a.set_label(&mut top).unwrap();
    a.mov(dword_ptr(SCRATCH), ecx).unwrap();
    a.nop().unwrap();
    a.dec(ecx).unwrap();
    a.jnz(top).unwrap();
    a.cli().unwrap();
    out(&mut a, 0xF4, 0);
    a.hlt().unwrap();
    a.set_label(&mut rtc_handler).unwrap();
    a.push(eax).unwrap();
    a.mov(eax, dword_ptr(esp + 4)).unwrap();
    a.mov(dword_ptr(SCRATCH + 4), eax).unwrap();
    out(&mut a, 0x70, 0x0C);
    a.in_(al, 0x71).unwrap();
    out(&mut a, 0xA0, 0x20);
    a.out(0x20u32, al).unwrap();
    a.pop(eax).unwrap();
    a.iretd().unwrap();
    a.set_label(&mut other_handler).unwrap();
    a.push(eax).unwrap();
    out(&mut a, 0xA0, 0x20);
    a.out(0x20u32, al).unwrap();
    a.pop(eax).unwrap();
    a.iretd().unwrap();
    let result = a
        .assemble_options(
            u64::from(guest_images::FLAT_KERNEL_CODE),
            BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS,
        )
        .unwrap();
    let at = |label: &CodeLabel| result.label_ip(label).unwrap() as u32;
    let found = (at(&rtc_handler), at(&other_handler));
    let code = result.inner.code_buffer;
    assert!(guest_images::FLAT_KERNEL_CODE + code.len() as u32 <= SCRATCH, "the code stays below its data");
    (code, found)
}

/// QEMU's RTC runs on its instruction count (`-rtc clock=vm`), so its interrupts come at
/// boundaries its CPU thread decides, and bt86 takes each one at the same boundary.
#[test]
fn rtc_interrupts_on_qemu_s_virtual_clock_are_taken_where_qemu_takes_them() {
    if !qemu_available() {
        return;
    }
    // 8192 Hz: an interrupt every 15,000 or so of QEMU's 8-ns instructions.
    let k = rtc_loop_kernel(3, 100_000);
    match diff_kernel(&k.elf, k.name, &DiffOptions::default()).unwrap() {
        DiffOutcome::Match { compared, interrupts, .. } => {
            println!("{compared} instructions, {interrupts} interrupts");
            assert!(compared > 400_000, "{compared} instructions");
            assert!(interrupts >= 10, "{interrupts} interrupts");
        }
        DiffOutcome::Divergence(d) => panic!("{}", d.report),
    }
}

/// With QEMU's RTC on the host's clock, its interrupt requests come from QEMU's main-loop thread
/// at any moment, often between logging a block and running it (QEMU then marks the block as
/// not run and takes the interrupt first): bt86 still takes each interrupt at QEMU's boundary.
/// (Which boundaries those are depends on the host's speed; the result does not.)
#[test]
fn rtc_interrupts_on_the_host_clock_are_taken_where_qemu_takes_them() {
    if !qemu_available() {
        return;
    }
    // 1024 Hz on the host's clock: an interrupt every hundred or so logged instructions.
    let k = rtc_loop_kernel(6, 50_000);
    let opts = DiffOptions { qemu_args: vec!["-rtc".into(), "clock=host".into()], ..DiffOptions::default() };
    match diff_kernel(&k.elf, k.name, &opts).unwrap() {
        DiffOutcome::Match { compared, interrupts, unrun, .. } => {
            println!("{compared} instructions, {interrupts} interrupts, {unrun} blocks logged and not run");
            assert!(compared > 200_000, "{compared} instructions");
            assert!(interrupts > 0, "no interrupt");
        }
        DiffOutcome::Divergence(d) => panic!("{}", d.report),
    }
}

#[test]
fn a_clean_kernel_runs_in_lockstep_with_qemu() {
    if !qemu_available() {
        return;
    }
    let k = adc_kernel();
    match diff_kernel(&k.elf, k.name, &DiffOptions::default()).unwrap() {
        DiffOutcome::Match { compared, .. } => assert!(compared > 400, "{compared} instructions"),
        DiffOutcome::Divergence(d) => panic!("{}", d.report),
    }
}

#[test]
fn a_planted_flag_bug_is_found_at_the_instruction_that_makes_it() {
    if !qemu_available() {
        return;
    }
    let k = adc_kernel();
    let opts = DiffOptions { injection: Some(Injection::AdcCarry), ..DiffOptions::default() };
    let DiffOutcome::Divergence(d) = diff_kernel(&k.elf, k.name, &opts).unwrap() else {
        panic!("the planted ADC bug went unnoticed");
    };
    // The state after the ADC differs in EFLAGS (CF), and the report names the ADC.
    assert_eq!(d.fields, vec!["EFLAGS".to_owned()], "{}", d.report);
    assert!(d.report.contains("the state after: adc edx,0"), "{}", d.report);
    assert_eq!(d.index, 4, "right after the fourth instruction, the ADC");
    assert!(!d.unaligned_interrupt);
}

/// Each real-mode image (booted by SeaBIOS from a floppy in QEMU, compared from the program's
/// first instruction on): no divergence, or one the known QEMU deviations explain.
#[test]
fn every_real_mode_image_matches_qemu_or_stops_at_a_known_qemu_deviation() {
    if !qemu_available() {
        return;
    }
    let explained: &[(&str, &str)] = &[
        ("exceptions", "QEMU does not check segment limits in real mode (a word at offset 0xFFFF)"),
        ("divide-overflow", "QEMU dies with a host SIGFPE on IDIV of the most negative value by -1"),
    ];
    let mut images = vec![guest_images::primes(), guest_images::bench_loop(20)];
    images.extend(guest_images::self_tests());
    for image in images {
        let outcome = diff_image(&image, &DiffOptions::default()).unwrap();
        match (outcome, explained.iter().find(|(n, _)| *n == image.name)) {
            (DiffOutcome::Match { compared, .. }, None) => {
                println!("{}: no divergence in {compared} instructions", image.name);
                assert!(compared > 100);
            }
            (DiffOutcome::Match { .. }, Some((_, why))) => {
                panic!("{}: expected the known QEMU deviation ({why}) but there was none", image.name)
            }
            (DiffOutcome::Divergence(d), Some((_, why))) => {
                println!("{}: divergence after {} instructions, explained: {why}", image.name, d.index);
            }
            (DiffOutcome::Divergence(d), None) => {
                panic!("{}: unexplained divergence\n{}", image.name, d.report)
            }
        }
    }
}

/// Each embedded kernel: no divergence, or the first divergence and the known QEMU deviation
/// (tests/pm_guests.rs and docs/differential-testing.md) that explains it.
#[test]
fn every_embedded_kernel_matches_qemu_or_stops_at_a_known_qemu_deviation() {
    if !qemu_available() {
        return;
    }
    // kernel → what the first divergence is, when QEMU is the one that is wrong.
    let explained: &[(&str, &str)] = &[
        ("pm-descriptors", "QEMU skips protected-mode segment limit and type checks on data accesses"),
        ("pm-rings", "QEMU does not set the accessed bit when a far transfer loads CS (LAR shows it)"),
        ("pm-paging", "QEMU reports reserved-bit page faults without the P bit"),
        ("pm-v86", "QEMU skips the 64 KiB segment limit in virtual-8086 mode"),
        ("pm-exceptions", "QEMU leaves the EXT bit out of an error code raised while delivering"),
        ("pm-control-registers", "QEMU accepts CR0 with NW without CD, and PG without PE"),
    ];
    let opts = DiffOptions { max_instructions: 300_000, ..DiffOptions::default() };
    let mut kernels = guest_images::kernels();
    kernels.push(guest_images::demo_kernel());
    for k in kernels {
        let outcome = diff_kernel(&k.elf, k.name, &opts).unwrap();
        match (outcome, explained.iter().find(|(n, _)| *n == k.name)) {
            (DiffOutcome::Match { compared, interrupts, .. }, _) => {
                println!(
                    "{}: no divergence in {compared} instructions, {interrupts} interrupts aligned",
                    k.name
                );
            }
            (DiffOutcome::Divergence(d), Some((_, why))) => {
                println!("{}: divergence after {} instructions, explained: {why}", k.name, d.index);
            }
            (DiffOutcome::Divergence(d), None) => panic!("{}: unexplained divergence\n{}", k.name, d.report),
        }
    }
}
