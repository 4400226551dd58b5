//! `bt86 bench-linux`: boots the same Linux kernel and initramfs under bt86 (with each engine
//! asked for: the translator and the interpreter by default) and under
//! `qemu-system-i386 -accel tcg -cpu pentium2` in one run and reports, for each, the wall time
//! to the guest's ready marker (`BT86-READY`, printed by the initramfs of
//! `scripts/fetch-linux-guest.sh` when user space is up), the time to the end (the guest powers
//! off after its workload) and the ratio. A benchmark, not a test: it asserts nothing about
//! speed, but a run that does not reach its marker or does not end cleanly is reported as such.
//!
//! Both emulators are started as child processes with their serial console on a pipe, so both
//! are timed the same way: from process start to the line on the pipe, and to process exit.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The marker the guest prints when user space is up.
pub const READY: &str = "BT86-READY";
/// The marker the guest prints after its workload.
pub const DONE: &str = "BT86-DONE";

/// What to boot and with what.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// The bzImage.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// The kernel command line.
    pub cmdline: String,
    /// Guest RAM in MiB (both emulators).
    pub memory_mib: u64,
    /// The QEMU binary.
    pub qemu: PathBuf,
    /// Give up on a run after this long.
    pub timeout: Duration,
    /// The bt86 engines to time (`--engine` names).
    pub engines: Vec<String>,
}

/// How one run went.
#[derive(Clone, Debug)]
pub struct Timing {
    /// Which emulator.
    pub name: String,
    /// Wall time to the ready marker.
    pub ready: Option<Duration>,
    /// Wall time to the done marker.
    pub done: Option<Duration>,
    /// Wall time to the process's exit.
    pub end: Duration,
    /// The process's exit status (`None`: killed at the timeout or by a signal).
    pub status: Option<i32>,
    /// The last lines the guest printed (for a failed run).
    pub tail: Vec<String>,
}

/// Starts `cmd`, reads its stdout line by line and times the markers.
pub fn time_boot(name: &str, mut cmd: Command, timeout: Duration) -> Result<Timing, String> {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {name} ({:?}): {e}", cmd.get_program()))?;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), String::from_utf8_lossy(&line).trim_end().to_string())).is_err() {
                break;
            }
        }
    });
    let mut t = Timing {
        name: name.into(),
        ready: None,
        done: None,
        end: Duration::ZERO,
        status: None,
        tail: Vec::new(),
    };
    let status = loop {
        while let Ok((at, line)) = rx.try_recv() {
            if t.ready.is_none() && line.contains(READY) {
                t.ready = Some(at - start);
            }
            if t.done.is_none() && line.contains(DONE) {
                t.done = Some(at - start);
            }
            t.tail.push(line);
            if t.tail.len() > 10 {
                t.tail.remove(0);
            }
        }
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s.code();
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    t.end = start.elapsed();
    t.status = status;
    let _ = reader.join();
    for (at, line) in rx.try_iter() {
        if t.done.is_none() && line.contains(DONE) {
            t.done = Some(at - start);
        }
        t.tail.push(line);
    }
    let excess = t.tail.len().saturating_sub(10);
    t.tail.drain(..excess);
    Ok(t)
}

/// The QEMU command line for the benchmark.
pub fn qemu_command(o: &BenchOptions) -> Command {
    let mut c = Command::new(&o.qemu);
    c.args(["-accel", "tcg", "-cpu", "pentium2", "-m"])
        .arg(o.memory_mib.to_string())
        .arg("-kernel")
        .arg(&o.kernel)
        .arg("-initrd")
        .arg(&o.initrd)
        .arg("-append")
        .arg(&o.cmdline)
        .args(["-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot"]);
    c
}

/// The bt86 command line for the benchmark (`exe` is bt86 itself) with `engine`.
pub fn bt86_command(exe: &Path, o: &BenchOptions, engine: &str) -> Command {
    let mut c = Command::new(exe);
    c.arg("run")
        .args(["--engine", engine])
        .arg("--kernel")
        .arg(&o.kernel)
        .arg("--initrd")
        .arg(&o.initrd)
        .arg("--append")
        .arg(&o.cmdline)
        .arg("--memory")
        .arg(o.memory_mib.to_string())
        .args(["--serial", "stdio"]);
    c
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("—".into(), |d| format!("{:.2} s", d.as_secs_f64()))
}

/// The report: one row per emulator, then the ratio of each to the last (QEMU).
pub fn report(runs: &[Timing]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<12} {:>12} {:>12} {:>12}  {}\n",
        "", "to ready", "to done", "to exit", "exit status"
    ));
    for t in runs {
        out.push_str(&format!(
            "{:<12} {:>12} {:>12} {:>12}  {}\n",
            t.name,
            secs(t.ready),
            secs(t.done),
            secs(Some(t.end)),
            t.status.map_or("killed (timeout)".into(), |s| s.to_string())
        ));
    }
    let Some((b, ours)) = runs.split_last() else { return out };
    for a in ours {
        let ratio = |x: Option<Duration>, y: Option<Duration>| match (x, y) {
            (Some(x), Some(y)) if y > Duration::ZERO => format!("{:.2}", x.as_secs_f64() / y.as_secs_f64()),
            _ => "—".into(),
        };
        out.push_str(&format!(
            "ratio {}/{}: to ready {}, to done {}, to exit {}\n",
            a.name,
            b.name,
            ratio(a.ready, b.ready),
            ratio(a.done, b.done),
            ratio(Some(a.end), Some(b.end))
        ));
    }
    for t in runs {
        if t.done.is_none() {
            out.push_str(&format!("{} did not finish its workload; its last lines:\n", t.name));
            for l in &t.tail {
                out.push_str(&format!("  | {l}\n"));
            }
        }
    }
    out
}
