//! Helpers the guest tests share: finding and running QEMU (or any program) with a timeout
//! while collecting what it writes, and judging a self-test's run.
//!
//! A self-test passes when it exits through isa-debug-exit with 0 (exit status 1) and prints
//! no `not ok` line. Set `BT86_REQUIRE_QEMU=1` to make a missing QEMU an error rather than a
//! skipped check.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a QEMU run may take before it is killed.
pub const QEMU_TIMEOUT: Duration = Duration::from_secs(30);

/// The QEMU options every guest test uses: TCG, no display, no default devices, no reboot on a
/// triple fault, the debug console on stdout and isa-debug-exit at 0xF4.
pub const QEMU_ARGS: &[&str] = &[
    "-accel",
    "tcg",
    "-display",
    "none",
    "-nodefaults",
    "-no-reboot",
    "-debugcon",
    "stdio",
    "-device",
    "isa-debug-exit,iobase=0xf4,iosize=0x04",
];

/// `qemu-system-i386` if it is on PATH. Without it the QEMU tests are skipped with a note, or
/// fail when `BT86_REQUIRE_QEMU=1`.
pub fn qemu() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join("qemu-system-i386")).find(|p| p.is_file())
    });
    if found.is_none() {
        let why = "qemu-system-i386 is not on PATH (Debian: apt install qemu-system-x86)";
        if std::env::var("BT86_REQUIRE_QEMU").as_deref() == Ok("1") {
            panic!("BT86_REQUIRE_QEMU=1 but {why}");
        }
        println!("QEMU checks skipped: {why}");
    }
    found
}

/// How a run ended.
pub struct QemuRun {
    /// Process exit status; `None` if we killed it or a signal did.
    pub status: Option<i32>,
    /// We killed it after the timeout.
    pub timed_out: bool,
    /// Everything it wrote on stdout (for QEMU, the debug console).
    pub output: String,
}

/// Runs `command` with stdout captured. Kills it once the output contains `stop_at` (for
/// guests that halt instead of exiting) or after `timeout`.
pub fn run_captured(command: Command, stop_at: Option<&str>, timeout: Duration) -> QemuRun {
    run_captured_with_input(command, None, stop_at, timeout)
}

/// [`run_captured`], with `input` written to the child's stdin (which is then closed) instead
/// of an empty stdin.
pub fn run_captured_with_input(
    command: Command,
    input: Option<&[u8]>,
    stop_at: Option<&str>,
    timeout: Duration,
) -> QemuRun {
    run_captured_with_stderr(command, input, stop_at, timeout, Stdio::inherit())
}

/// [`run_captured_with_input`], with the child's stderr going to `stderr`.
pub fn run_captured_with_stderr(
    mut command: Command,
    input: Option<&[u8]>,
    stop_at: Option<&str>,
    timeout: Duration,
    stderr: Stdio,
) -> QemuRun {
    let mut child = command
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
    let writer = input.map(|bytes| {
        let mut stdin = child.stdin.take().expect("piped stdin");
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            use std::io::Write;
            // The child may exit before reading everything; that is its business.
            let _ = stdin.write_all(&bytes);
        })
    });

    let output = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = {
        let output = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                output.lock().expect("output lock").extend_from_slice(&chunk[..n]);
            }
        })
    };

    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status.code();
        }
        let seen = stop_at
            .is_some_and(|s| String::from_utf8_lossy(&output.lock().expect("output lock")).contains(s));
        timed_out = start.elapsed() > timeout;
        if seen || timed_out {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = reader.join();
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    let output = String::from_utf8_lossy(&output.lock().expect("output lock")).into_owned();
    QemuRun { status, timed_out, output }
}

/// Runs QEMU with [`QEMU_ARGS`] and then `machine` (what to boot); see [`run_captured`].
pub fn run_qemu_with(
    qemu: &std::path::Path,
    machine: &[std::ffi::OsString],
    stop_at: Option<&str>,
) -> QemuRun {
    let mut command = Command::new(qemu);
    command.args(QEMU_ARGS).args(machine);
    run_captured(command, stop_at, QEMU_TIMEOUT)
}

/// What went wrong with a self-test run, if anything.
pub fn self_test_verdict(status: Option<i32>, output: &str) -> Result<(), String> {
    let failed: Vec<&str> = output.lines().filter(|l| l.starts_with("not ok")).collect();
    if status != Some(1) || !failed.is_empty() || !output.lines().any(|l| l.starts_with("ok ")) {
        return Err(format!(
            "exit status {status:?} (want 1), {} failed check(s):\n{}\n--- output ---\n{output}",
            failed.len(),
            failed.join("\n")
        ));
    }
    Ok(())
}

/// Where QEMU's TCG disagrees with the SDM, so that a self-test cannot pass there: image,
/// the checks it fails (name prefixes; none = it stops before the TAP plan: dies, or exits
/// early), and why. An image may have several entries.
pub type KnownWrong = (&'static str, &'static [&'static str], &'static str);

/// Judges a QEMU run of self-test `name`, allowing for `known`: a run that fails only listed
/// checks (or stops before the end, where that is listed) counts as passing, with a note
/// naming the reasons that applied; anything else, and a timeout, still fails.
pub fn qemu_verdict(name: &str, run: &QemuRun, known: &[KnownWrong]) -> Result<Option<String>, String> {
    if run.timed_out {
        return Err(format!("timed out after {QEMU_TIMEOUT:?}; output:\n{}", run.output));
    }
    let entries: Vec<&KnownWrong> = known.iter().filter(|(image, _, _)| *image == name).collect();
    if entries.is_empty() {
        return self_test_verdict(run.status, &run.output).map(|()| None);
    }
    let ran_to_the_end = run.output.lines().any(|l| l.starts_with("1.."));
    if let Some((_, _, why)) = entries.iter().find(|(_, checks, _)| checks.is_empty()) {
        return if ran_to_the_end {
            self_test_verdict(run.status, &run.output).map(|()| None)
        } else {
            Ok(Some(format!("QEMU stopped before the end (status {:?}) as known: {why}", run.status)))
        };
    }
    let failed: Vec<&str> = run.output.lines().filter(|l| l.starts_with("not ok")).collect();
    let check_name = |line: &str| line.split_once(" - ").map_or("", |(_, name)| name).to_string();
    let reason = |line: &str| {
        let name = check_name(line);
        entries.iter().position(|(_, checks, _)| checks.iter().any(|c| name.starts_with(c)))
    };
    let unexpected = failed.iter().any(|l| reason(l).is_none());
    if unexpected || !ran_to_the_end {
        return self_test_verdict(run.status, &run.output).map(|()| None);
    }
    let status_ok = if failed.is_empty() { run.status == Some(1) } else { run.status == Some(3) };
    if !status_ok {
        return Err(format!("exit status {:?}; output:\n{}", run.status, run.output));
    }
    let mut counts = vec![0usize; entries.len()];
    for line in &failed {
        if let Some(i) = reason(line) {
            counts[i] += 1;
        }
    }
    let notes: Vec<String> = entries
        .iter()
        .zip(&counts)
        .filter(|(_, &n)| n > 0)
        .map(|((_, _, why), n)| format!("{n} known QEMU failure(s): {why}"))
        .collect();
    Ok((!notes.is_empty()).then(|| notes.join("; ")))
}
