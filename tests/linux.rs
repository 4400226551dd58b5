//! Debian's i386 `686` kernel with the busybox initramfs of `scripts/fetch-linux-guest.sh`,
//! booted by bt86 through the Linux boot protocol: the ready marker, the shell arithmetic, the
//! md5 of 32 MiB of zeros, and a power-off that ends bt86 with status 0.
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

#[test]
fn debian_linux_boots_runs_its_workload_and_powers_off() {
    let Some(dir) = guest_dir() else { return };
    let mut cmd = boot(&dir, "console=ttyS0,115200 panic=-1");
    cmd.stdin(Stdio::null());
    let run = common::run_captured(cmd, None, TIMEOUT);
    let out = &run.output;
    for want in EXPECTED {
        assert!(out.contains(want), "missing {want:?}; the guest printed:\n{out}");
    }
    assert!(out.contains("reboot: Power down"), "no ACPI power-off; the guest printed:\n{out}");
    assert_eq!(run.status, Some(0), "bt86 did not exit 0; the guest printed:\n{out}");
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
