//! Debian's i386 `686` kernel with the busybox initramfs of `scripts/fetch-linux-guest.sh`,
//! booted by bt86 through the Linux boot protocol: the ready marker, the shell arithmetic, the
//! md5 of 32 MiB of zeros, and a power-off that ends bt86 with status 0 — with the translator,
//! with the interpreter (the same output and the same retired-instruction count), and under
//! lockstep for the first 400 million instructions.
//!
//! The guest is fetched, never committed: the test looks in `$BT86_LINUX_DIR` (default
//! `guest-images/linux/`). Without the files the test is skipped with a note, or fails when
//! `BT86_REQUIRE_LINUX=1` (as in CI, whose `.ci/run` fetches them first).

#[allow(dead_code)] // this file needs only some of the shared helpers
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The values the guest's `/init` must print (worked out on the host: `head -c 32M /dev/zero
/// | md5sum`, and the sum of i² mod 1000000007 for i < 20000).
const EXPECTED: [&str; 4] =
    ["BT86-READY", "arith: 466651338", "md5: 58f06dd588d8ffb3beb46ada6309436b  -", "BT86-DONE"];

/// Generous: a correctness test, not a timed one.
const TIMEOUT: Duration = Duration::from_secs(1500);

fn guest_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("BT86_LINUX_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("guest-images/linux"), PathBuf::from);
    let have = dir.join("vmlinuz").is_file() && dir.join("initramfs.cpio").is_file();
    if !have {
        let why =
            format!("no vmlinuz and initramfs.cpio in {} (run scripts/fetch-linux-guest.sh)", dir.display());
        if std::env::var("BT86_REQUIRE_LINUX").as_deref() == Ok("1") {
            panic!("BT86_REQUIRE_LINUX=1 but {why}");
        }
        println!("Linux boot skipped: {why}");
        return None;
    }
    Some(dir)
}

/// `bt86 run` of the guest in `dir` with command line `append`, the console on stdio, and
/// `--no-reboot` so that a kernel panic (with `panic=-1`) ends the run at once.
fn boot(dir: &Path, append: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bt86"));
    cmd.args(["run", "--kernel"])
        .arg(dir.join("vmlinuz"))
        .arg("--initrd")
        .arg(dir.join("initramfs.cpio"))
        .args(["--append", append, "--serial", "stdio", "--timeout", "1400", "--no-reboot"]);
    cmd
}

/// How a boot of the workload went: serial output, exit status, `--stats` on stderr.
struct Boot {
    output: String,
    status: Option<i32>,
    stats: String,
}

/// Boots the workload with `engine`, plus `extra` options.
fn workload(dir: &Path, engine: &str, extra: &[&str]) -> Boot {
    let mut cmd = boot(dir, "console=ttyS0,115200 panic=-1");
    cmd.args(["--engine", engine, "--stats"]).args(extra);
    let path = std::env::temp_dir().join(format!("bt86-linux-{engine}-{}.stats", std::process::id()));
    let file = std::fs::File::create(&path).expect("a scratch file for the statistics");
    let run = common::run_captured_with_stderr(cmd, None, None, TIMEOUT, Stdio::from(file));
    let stats = std::fs::read_to_string(&path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    Boot { output: run.output, status: run.status, stats }
}

/// The `instructions retired:` count of `--stats`.
fn retired(stats: &str) -> u64 {
    stats
        .lines()
        .find_map(|l| l.strip_prefix("instructions retired:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no retired count in the statistics:\n{stats}"))
}

#[test]
fn debian_linux_boots_runs_its_workload_and_powers_off() {
    let Some(dir) = guest_dir() else { return };
    let run = workload(&dir, "jit", &[]);
    let out = &run.output;
    for want in EXPECTED {
        assert!(out.contains(want), "missing {want:?}; the guest printed:\n{out}");
    }
    assert!(out.contains("reboot: Power down"), "no ACPI power-off; the guest printed:\n{out}");
    assert_eq!(run.status, Some(0), "bt86 did not exit 0; the guest printed:\n{out}");
}

#[test]
fn the_interpreter_and_the_translator_run_linux_identically() {
    // Virtual time follows retired instructions, so the two engines must print the same
    // bytes (kernel timestamps included) and retire the same number of instructions.
    let Some(dir) = guest_dir() else { return };
    let jit = workload(&dir, "jit", &[]);
    let interp = workload(&dir, "interp", &[]);
    assert_eq!(interp.status, Some(0), "the interpreter's run failed:\n{}", interp.output);
    assert_eq!(jit.output, interp.output, "the serial output differs");
    assert_eq!(retired(&jit.stats), retired(&interp.stats), "the retired counts differ");
}

#[test]
fn lockstep_finds_no_divergence_in_the_first_400_million_instructions() {
    // The whole boot under lockstep takes minutes (it is run by hand, see the README); here
    // the kernel's decompression and early boot are checked block by block.
    let Some(dir) = guest_dir() else { return };
    let run = workload(&dir, "lockstep", &["--max-steps", "400000000"]);
    assert!(!run.stats.contains("divergence"), "lockstep found a divergence:\n{}", run.stats);
    assert_eq!(run.status, Some(2), "not stopped by the step limit:\n{}\n{}", run.stats, run.output);
    assert!(retired(&run.stats) > 390_000_000, "{}", run.stats);
}

#[test]
fn guest_shell_gives_an_interactive_shell_on_the_serial_console() {
    let Some(dir) = guest_dir() else { return };
    let cmd = boot(&dir, "console=ttyS0,115200 panic=-1 guest_shell=1");
    // Typed ahead, as a user might: the kernel's tty takes the first bytes before the shell
    // runs, so a few empty lines go first.
    let input = b"\n\n\n\n\n\n\n\necho hello-from-$((6*7))\nuname -m\npoweroff -f\n";
    let run = common::run_captured_with_input(cmd, Some(input), None, TIMEOUT);
    let out = &run.output;
    for want in ["BT86-READY", "built-in shell (ash)", "hello-from-42", "i686", "reboot: Power down"] {
        assert!(out.contains(want), "missing {want:?}; the guest printed:\n{out}");
    }
    assert!(!out.contains("BT86-DONE"), "the workload ran instead of the shell:\n{out}");
    assert_eq!(run.status, Some(0), "bt86 did not exit 0; the guest printed:\n{out}");
}
