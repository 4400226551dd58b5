//! `bt86 diff` against QEMU: it finds a deliberately planted bug at the right instruction, a
//! clean kernel runs in lockstep without divergence, and every embedded kernel either matches
//! QEMU or stops at a divergence that the documented list of QEMU deviations explains.
//!
//! Needs `qemu-system-i386`; skipped with a message when it is absent, unless
//! `BT86_REQUIRE_QEMU=1` (CI), which makes its absence a failure.

use bt86::diff::{diff_image, diff_kernel, DiffOptions, DiffOutcome};
use emu_core::cpu::Injection;
use iced_x86::code_asm::*;

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
