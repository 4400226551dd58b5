//! The guest programs of `guest-images`, run whole: the demo, the benchmark loop and every
//! self-checking program in bt86, and the self-tests (and the demo) again under QEMU when
//! `qemu-system-i386` is on PATH, booted by SeaBIOS from a floppy image of the same bytes.
//!
//! A self-test passes when it exits through isa-debug-exit with 0 (exit status 1) and prints
//! no `not ok` line. Set `BT86_REQUIRE_QEMU=1` to make a missing QEMU an error rather than a
//! skipped check.

mod common;
#[path = "common/console.rs"]
mod console;
#[path = "common/engines.rs"]
mod engines;

use std::path::Path;

use console::Console;

use bt86::engine::EngineKind;
use bt86::machine::{Exit, Machine};
use common::{qemu, qemu_verdict, run_qemu_with, self_test_verdict, KnownWrong, QemuRun};
use guest_images::Image;

/// Guest RAM for these tests.
const RAM: u64 = 16 << 20;
/// More instructions than any of these guests needs.
const STEP_LIMIT: u64 = 200_000_000;

/// Runs `image` in a fresh bt86 machine with the interpreter; returns how it ended and its
/// console output.
fn run_bt86(image: &Image, max_steps: u64) -> (Exit, String) {
    let (exit, output, _) = run_bt86_with(image, max_steps, EngineKind::Interp);
    (exit, output)
}

/// Runs `image` in a fresh bt86 machine with `engine`; returns how it ended, its console output
/// and the instructions retired.
fn run_bt86_with(image: &Image, max_steps: u64, engine: EngineKind) -> (Exit, String, u64) {
    let console = Console::default();
    let mut machine = Machine::new(RAM, Box::new(console.clone())).expect("guest RAM");
    machine.engine = engines::engine(engine);
    machine.load_image(image).expect("image fits in RAM");
    let exit = machine.run(max_steps);
    let output = console.text();
    (exit, output, machine.cpu.state.retired)
}

/// Runs `image` in every engine of `engines`: the interpreter's run, after checking that every
/// other engine ended, printed and counted exactly the same.
fn run_everywhere(image: &Image, max_steps: u64, engines: &[EngineKind]) -> (Exit, String, u64) {
    let reference = run_bt86_with(image, max_steps, EngineKind::Interp);
    for &e in engines.iter().filter(|&&e| e != EngineKind::Interp) {
        let run = run_bt86_with(image, max_steps, e);
        assert_eq!(run, reference, "{}: engine {e} differs from the interpreter", image.name);
    }
    reference
}

#[test]
fn demo_prints_the_primes_below_1000_and_halts() {
    let (exit, output, _) =
        run_everywhere(&guest_images::primes(), STEP_LIMIT, &engines::engines_with_lockstep());
    assert_eq!(exit, Exit::Halted, "output:\n{output}");
    assert!(output.contains("done: 168 primes (sieve and trial division agree)"), "output:\n{output}");
    // The primes sit between the banner's blank line and the "done" line.
    let table = output.split("\n\n").nth(1).expect("a blank line after the banner");
    let numbers: Vec<u32> = table.split_whitespace().map(|w| w.parse().expect("a number")).collect();
    assert_eq!(numbers.len(), 168, "output:\n{output}");
    assert_eq!(&numbers[..5], &[2, 3, 5, 7, 11]);
    assert_eq!(numbers[167], 997);
}

/// CRC-32 (IEEE, reflected) and FNV-1 as the bench guest computes them; see bench.rs.
fn bench_reference(iterations: u32) -> (u32, u32) {
    let mut buffer: Vec<u8> = (0..64u32).map(|i| (11 + 37 * i) as u8).collect();
    let mut fnv: u32 = 0x811C_9DC5;
    let mut crc = 0;
    for _ in 0..iterations {
        crc = 0xFFFF_FFFF;
        for &byte in &buffer {
            fnv = fnv.wrapping_mul(0x0100_0193) ^ u32::from(byte);
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
            }
        }
        crc = !crc;
        buffer[..4].copy_from_slice(&crc.to_le_bytes());
    }
    (crc, fnv)
}

#[test]
fn bench_loop_computes_crc32_and_fnv1() {
    for iterations in [1, 3] {
        let (exit, output, _) = run_everywhere(
            &guest_images::bench_loop(iterations),
            STEP_LIMIT,
            &engines::engines_with_lockstep(),
        );
        assert_eq!(exit, Exit::Halted, "output:\n{output}");
        let (crc, fnv) = bench_reference(iterations);
        assert_eq!(output, format!("bench: crc32 {crc:08x} fnv1 {fnv:08x}\n"), "{iterations} iterations");
    }
}

#[test]
fn bench_loop_instruction_count_is_exact() {
    for iterations in [1, 2, 5] {
        let image = guest_images::bench_loop(iterations);
        let count = guest_images::bench_loop_instructions(iterations);
        for e in engines::engines_with_lockstep() {
            let (exit, _, retired) = run_bt86_with(&image, count - 1, e);
            assert_eq!((exit, retired), (Exit::StepLimit, count - 1), "{iterations} iterations, {e}");
            assert_eq!(run_bt86_with(&image, count, e).0, Exit::Halted, "{iterations} iterations, {e}");
        }
    }
}

#[test]
fn self_tests_pass_in_bt86() {
    let images = guest_images::self_tests();
    assert!(images.len() >= 7);
    let mut failures = Vec::new();
    for image in &images {
        let (exit, output, _) = run_everywhere(image, STEP_LIMIT, &engines::engines_with_lockstep());
        let status = match exit {
            Exit::DebugExit { .. } => Some(exit.status()),
            _ => None,
        };
        match self_test_verdict(status, &output) {
            Ok(()) => println!("bt86 {}: passed", image.name),
            Err(why) => failures.push(format!("bt86 {} ({exit:?}): {why}", image.name)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Boots `image` from a floppy under QEMU (SeaBIOS) with the debug console on stdout and
/// isa-debug-exit at 0xF4. Kills QEMU once the output contains `stop_at` (for guests that
/// halt instead of exiting) or after [`common::QEMU_TIMEOUT`].
fn run_qemu(qemu: &Path, image: &Image, stop_at: Option<&str>) -> QemuRun {
    let dir = std::env::temp_dir().join(format!("bt86-guests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let disk = dir.join(format!("{}.img", image.name));
    std::fs::write(&disk, guest_images::boot_disk(image)).expect("write disk image");
    let drive = format!("file={},format=raw,if=floppy", disk.display());
    let run = run_qemu_with(qemu, &["-serial".into(), "none".into(), "-drive".into(), drive.into()], stop_at);
    let _ = std::fs::remove_file(&disk);
    // Fails while other runs still have their disks there; the last one removes it.
    let _ = std::fs::remove_dir(&dir);
    run
}

/// Where QEMU's TCG (as of 7.2) disagrees with the SDM, so that a self-test cannot pass there.
/// Each entry: image, the checks it fails (name prefixes; none = it dies before finishing),
/// and why. A run that fails exactly these checks (or dies, where listed) counts as passing,
/// with a note; anything else still fails the test.
const QEMU_KNOWN_WRONG: &[KnownWrong] = &[
    (
        "exceptions",
        &["word read at ds:ffff", "a32 read at ds:10000h", "word read at ss:ffff"],
        "QEMU's TCG does not check segment limits, so a word access at offset FFFFh (or at \
         10000h with 32-bit addressing) reads on instead of raising #GP / #SS (SDM Vol. 2, MOV, \
         Real-Address Mode Exceptions; Vol. 3, 20.1.1)",
    ),
    (
        "divide-overflow",
        &[],
        "QEMU 7.2 computes IDIV r/m16 and r/m32 with the host's division, which traps on \
         INT_MIN / -1: the whole emulator dies of SIGFPE instead of raising #DE in the guest",
    ),
];

#[test]
fn self_tests_pass_in_qemu() {
    let Some(qemu) = qemu() else { return };
    let images = guest_images::self_tests();
    let failures: Vec<String> = std::thread::scope(|scope| {
        let runs: Vec<_> =
            images.iter().map(|image| (image.name, scope.spawn(|| run_qemu(&qemu, image, None)))).collect();
        runs.into_iter()
            .filter_map(|(name, run)| {
                let run = run.join().expect("qemu runner thread");
                match qemu_verdict(name, &run, QEMU_KNOWN_WRONG) {
                    Ok(None) => {
                        println!("qemu {name}: passed");
                        None
                    }
                    Ok(Some(note)) => {
                        println!("qemu {name}: passed except for {note}");
                        None
                    }
                    Err(why) => Some(format!("qemu {name}: {why}")),
                }
            })
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn demo_boots_in_qemu() {
    let Some(qemu) = qemu() else { return };
    let done = "done: 168 primes (sieve and trial division agree)";
    let run = run_qemu(&qemu, &guest_images::primes(), Some(done));
    assert!(run.output.contains(done), "status {:?}, output:\n{}", run.status, run.output);
    let (_, bt86_output) = run_bt86(&guest_images::primes(), STEP_LIMIT);
    assert!(
        run.output.ends_with(&bt86_output),
        "QEMU printed:\n{}\nbt86 printed:\n{bt86_output}",
        run.output
    );
}
