//! The demo kernel (`guest_images::demo_kernel()`) as a user meets it: booted with the serial
//! console on stdio and a scripted session piped in (`help`, `echo hello`, `ticks`,
//! `poweroff`), under QEMU (`-kernel FILE -serial stdio`) and under bt86 (`bt86 run --image
//! demo --serial stdio`).
//!
//! The input is written at once, before the shell is up (QEMU reads it immediately): the
//! kernel keeps what arrives early in the ring buffer its IRQ 4 handler fills. A session
//! passes when the machine powers off by itself (exit status 0) after showing both tasks'
//! lines, with task B's first line before task A's exit (the timer preempted A), and the
//! shell's answers. Set `BT86_REQUIRE_QEMU=1` to make a missing QEMU an error rather than a
//! skipped check.

#[allow(dead_code)] // this file needs only some of the shared helpers
mod common;

use std::process::Command;
use std::time::Duration;

use common::{qemu, run_captured_with_input, QemuRun};

/// What the user types.
const INPUT: &[u8] = b"help\necho hello\nticks\npoweroff\n";
/// How long a session may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Judges a session; `who` names the emulator in messages.
fn check_session(who: &str, run: &QemuRun) {
    let output = &run.output;
    assert!(!run.timed_out, "{who}: killed after {TIMEOUT:?}; output:\n{output}");
    assert_eq!(run.status, Some(0), "{who}: exit status (a power-off is 0); output:\n{output}");
    let lines: Vec<&str> = output.lines().map(|l| l.trim_end_matches('\r')).collect();
    let at = |line: &str| {
        lines
            .iter()
            .position(|l| *l == line)
            .unwrap_or_else(|| panic!("{who}: no line {line:?}; output:\n{output}"))
    };
    for task in ['A', 'B'] {
        let printed: Vec<u32> = lines
            .iter()
            .filter_map(|l| l.strip_prefix(&format!("task {task}: ")))
            .map(|n| n.parse().unwrap_or_else(|_| panic!("{who}: bad task line {n:?}; output:\n{output}")))
            .collect();
        assert!(printed.len() >= 2, "{who}: task {task} printed {printed:?}; output:\n{output}");
        let expected: Vec<u32> = (1..=printed.len() as u32).collect();
        assert_eq!(printed, expected, "{who}: task {task}'s lines in order; output:\n{output}");
        at(&format!("[sched] task {task} exited (status 0); tasks left: {}", u32::from(task == 'A')));
    }
    assert!(
        at("task B: 1") < at("[sched] task A exited (status 0); tasks left: 1"),
        "{who}: task B ran before task A was done (preemption); output:\n{output}"
    );
    let shell = at("bt86> help");
    assert!(shell > at("task B: 1"), "{who}: the shell comes after the tasks; output:\n{output}");
    at("  echo TEXT  print TEXT");
    let echo = at("bt86> echo hello");
    assert_eq!(lines.get(echo + 1), Some(&"hello"), "{who}: echo's answer; output:\n{output}");
    let ticks = at("bt86> ticks");
    assert!(
        lines.get(ticks + 1).is_some_and(|l| l.starts_with("ticks: ") && l.ends_with(" s at 100 Hz)")),
        "{who}: the ticks command's answer; output:\n{output}"
    );
    let poweroff = at("bt86> poweroff");
    assert_eq!(lines.get(poweroff + 1), Some(&"powering off"), "{who}: poweroff's answer; output:\n{output}");
}

#[test]
fn demo_session_in_qemu() {
    let Some(qemu) = qemu() else { return };
    let path = std::env::temp_dir().join(format!("bt86-demo-{}.elf", std::process::id()));
    std::fs::write(&path, guest_images::demo_kernel().elf).expect("write the kernel file");
    let mut command = Command::new(qemu);
    command
        .args(["-accel", "tcg", "-display", "none", "-nodefaults", "-no-reboot", "-serial", "stdio"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel"])
        .arg(&path);
    let run = run_captured_with_input(command, Some(INPUT), None, TIMEOUT);
    let _ = std::fs::remove_file(&path);
    check_session("qemu", &run);
}

#[test]
fn demo_session_in_bt86() {
    demo_session_with("interp");
}

/// The session with the translator: it passes, and prints exactly what the interpreter prints
/// (the input arrives at the same instruction counts, so the run is the same run).
#[cfg(target_arch = "x86_64")]
#[test]
fn demo_session_in_bt86_jit() {
    let jit = demo_session_with("jit");
    let interp = demo_session_with("interp");
    assert_eq!(jit.output, interp.output, "the translator's session differs from the interpreter's");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn demo_session_in_bt86_lockstep() {
    demo_session_with("lockstep");
}

fn demo_session_with(engine: &str) -> QemuRun {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bt86"));
    command.args(["run", "--image", "demo", "--serial", "stdio", "--engine", engine]);
    let run = run_captured_with_input(command, Some(INPUT), None, TIMEOUT);
    check_session(&format!("bt86 ({engine})"), &run);
    run
}

/// The demo's kernel image is a multiboot ELF like the test kernels (the header tests of
/// tests/pm_guests.rs cover `guest_images::kernels()`, which does not include it).
#[test]
fn demo_kernel_is_a_multiboot_elf() {
    let k = guest_images::demo_kernel();
    assert_eq!(k.name, "demo");
    assert_eq!(&k.elf[..4], b"\x7fELF");
    let header = (0..8192.min(k.elf.len()) - 12)
        .step_by(4)
        .find(|&at| k.elf[at..at + 4] == 0x1BAD_B002u32.to_le_bytes())
        .expect("a multiboot header in the first 8 KiB");
    let word = |at: usize| u32::from_le_bytes(k.elf[at..at + 4].try_into().unwrap());
    assert_eq!(word(header).wrapping_add(word(header + 4)).wrapping_add(word(header + 8)), 0, "checksum");
}
