//! `bt86 bench`: guest speed of the interpreter, the binary translator and QEMU's TCG on the
//! integer workloads of `guest_images::workloads()`, in one run.
//!
//! Times are CPU times, not wall-clock times, so that a busy host (other builds, CI neighbours)
//! does not count against either emulator; MIPS are guest instructions per CPU-second. Method,
//! per workload:
//! - **interp**: `N` iterations in-process; MIPS = retired instructions / the thread's CPU time
//!   in `Machine::run` (boot excluded).
//! - **jit**: `SCALE × N` iterations, measured the same way (translation included).
//! - **QEMU** (`qemu-system-i386 -accel tcg`, the same Multiboot file, `-append` for the count):
//!   the CPU time (user + system, all its threads) of a run of `SCALE × N` iterations minus that
//!   of a run of one iteration, which cancels QEMU's start-up; the instructions are bt86's counts
//!   for the same two iteration counts (the workloads are deterministic and run with interrupts
//!   off, so every faithful x86 executes the same instructions). A child's CPU time is read from
//!   `/proc/self/stat` (reaped children's times, in clock ticks, so to about 10 ms). Each QEMU
//!   run is made twice and the faster taken; so are the bt86 runs.
//!
//! Every run must print the same checksum line, or the benchmark fails.

#![allow(clippy::cast_precision_loss)] // times and MIPS figures need no more than 52 bits

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::engine::{Engine, EngineKind};
use crate::machine::{Exit, Machine};

/// How many more iterations the translator and QEMU run than the interpreter.
pub const SCALE: u32 = 10;

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Workload names (all when empty).
    pub workloads: Vec<String>,
    /// Interpreter iterations per workload (its default when `None`).
    pub iterations: Option<u32>,
    /// QEMU to compare with (`None`: skip).
    pub qemu: Option<PathBuf>,
    /// Run the interpreter too.
    pub interp: bool,
}

/// One workload's results.
#[derive(Clone, Debug)]
pub struct Row {
    /// Workload name.
    pub name: String,
    /// Instructions of the translator's run.
    pub instructions: u64,
    /// Guest MIPS of the interpreter.
    pub interp: Option<f64>,
    /// Guest MIPS of the translator.
    pub jit: f64,
    /// Guest MIPS of QEMU.
    pub qemu: Option<f64>,
}

/// A run that went wrong.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// No workload of that name.
    #[error("no workload named `{0}` (known: sieve, crc32, quicksort, matmul, strsearch)")]
    Unknown(String),
    /// bt86 could not run it.
    #[error("{workload} ({engine}): {what}")]
    Run {
        /// Workload.
        workload: String,
        /// Engine or emulator.
        engine: String,
        /// What happened.
        what: String,
    },
}

/// Runs `kernel` with `iterations` in bt86 with `engine`: (output, retired, seconds).
fn run_bt86(
    kernel: &guest_images::Kernel,
    iterations: u32,
    engine: EngineKind,
) -> Result<(String, u64, f64), BenchError> {
    let err = |what: String| BenchError::Run {
        workload: kernel.name.to_string(),
        engine: engine.to_string(),
        what,
    };
    let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let console = SharedBuf(out.clone());
    let mut m = Machine::new(64 << 20, Box::new(console)).map_err(|e| err(e.to_string()))?;
    m.engine = Engine::new(engine).map_err(err)?;
    crate::boot::multiboot::load_bytes(
        &mut m,
        &kernel.elf,
        kernel.name,
        &format!("{} {iterations}", kernel.name),
    )
    .map_err(|e| err(e.to_string()))?;
    let start = thread_cpu();
    let exit = m.run(u64::MAX);
    let secs = thread_cpu() - start;
    if exit != (Exit::DebugExit { value: 0 }) {
        return Err(err(format!("ended with {exit:?}")));
    }
    let text = String::from_utf8_lossy(&out.lock().expect("console lock")).into_owned();
    Ok((text, m.cpu.state.retired, secs))
}

/// This thread's CPU time in seconds.
fn thread_cpu() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// CPU time (user + system) of every child this process has waited for, in seconds.
fn children_cpu() -> Result<f64, String> {
    let stat = std::fs::read_to_string("/proc/self/stat").map_err(|e| format!("/proc/self/stat: {e}"))?;
    // Fields after the command name (which may hold spaces, so split after its ')'):
    // state is field 3; cutime and cstime are fields 16 and 17.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or("/proc/self/stat: no command name")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks =
        |i: usize| fields.get(i - 3).and_then(|f| f.parse::<u64>().ok()).ok_or("/proc/self/stat: short");
    let hz = rustix::param::clock_ticks_per_second() as f64;
    Ok((ticks(16)? + ticks(17)?) as f64 / hz)
}

/// Runs `file` under QEMU with `iterations`: (output, CPU seconds).
fn run_qemu(qemu: &Path, file: &Path, iterations: u32) -> Result<(String, f64), String> {
    let cpu_before = children_cpu()?;
    let start = Instant::now();
    let mut child = Command::new(qemu)
        .args(["-accel", "tcg", "-display", "none", "-nodefaults", "-no-reboot", "-m", "64"])
        .args(["-debugcon", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel"])
        .arg(file)
        .args(["-append", &iterations.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", qemu.display()))?;
    let deadline = start + Duration::from_secs(600);
    loop {
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err("timed out".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let secs = children_cpu()? - cpu_before;
    if out.status.code() != Some(1) {
        return Err(format!("exit status {:?}: {}", out.status.code(), String::from_utf8_lossy(&out.stderr)));
    }
    Ok((String::from_utf8_lossy(&out.stdout).into_owned(), secs))
}

#[derive(Clone)]
struct SharedBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("console lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// MIPS from an instruction count and seconds.
fn mips(instructions: u64, secs: f64) -> f64 {
    instructions as f64 / secs.max(1e-9) / 1e6
}

/// Runs the benchmark, reporting progress to `log`.
pub fn run(opts: &BenchOptions, log: &mut dyn Write) -> Result<Vec<Row>, BenchError> {
    let all = guest_images::workloads();
    let chosen: Vec<guest_images::Workload> = if opts.workloads.is_empty() {
        all
    } else {
        opts.workloads
            .iter()
            .map(|n| {
                all.iter().find(|w| w.kernel.name == n).cloned().ok_or_else(|| BenchError::Unknown(n.clone()))
            })
            .collect::<Result<_, _>>()?
    };
    let mut rows = Vec::new();
    for w in &chosen {
        let k = &w.kernel;
        let n = opts.iterations.unwrap_or(w.default_iterations).max(1);
        let big = n.saturating_mul(SCALE);
        let _ = writeln!(log, "bench: {} ({} and {} iterations)", k.name, n, big);
        let (out_jit, insns, secs) = run_bt86(k, big, EngineKind::Jit)?;
        let (_, _, secs2) = run_bt86(k, big, EngineKind::Jit)?;
        let jit = mips(insns, secs.min(secs2));
        let mismatch = |engine: &str, got: &str, want: &str| BenchError::Run {
            workload: k.name.to_string(),
            engine: engine.to_string(),
            what: format!("printed {got:?}, the translator {want:?}"),
        };
        let interp = if opts.interp {
            let (out_i, insns_i, secs_i) = run_bt86(k, n, EngineKind::Interp)?;
            let (_, _, secs_i2) = run_bt86(k, n, EngineKind::Interp)?;
            let secs_i = secs_i.min(secs_i2);
            let (out_j, _, _) = run_bt86(k, n, EngineKind::Jit)?;
            if out_i != out_j {
                return Err(mismatch("interp", &out_i, &out_j));
            }
            Some(mips(insns_i, secs_i))
        } else {
            None
        };
        let qemu = match &opts.qemu {
            None => None,
            Some(q) => {
                let path =
                    std::env::temp_dir().join(format!("bt86-bench-{}-{}.elf", std::process::id(), k.name));
                std::fs::write(&path, &k.elf).map_err(|e| BenchError::Run {
                    workload: k.name.to_string(),
                    engine: "qemu".into(),
                    what: e.to_string(),
                })?;
                let (_, insns_one, _) = run_bt86(k, 1, EngineKind::Jit)?;
                let qerr = |what: String| BenchError::Run {
                    workload: k.name.to_string(),
                    engine: "qemu".into(),
                    what,
                };
                let mut best_big = f64::MAX;
                let mut best_one = f64::MAX;
                for _ in 0..2 {
                    let (out_q, t) = run_qemu(q, &path, big).map_err(qerr)?;
                    if out_q != out_jit {
                        let _ = std::fs::remove_file(&path);
                        return Err(mismatch("qemu", &out_q, &out_jit));
                    }
                    best_big = best_big.min(t);
                    let (_, t1) = run_qemu(q, &path, 1).map_err(qerr)?;
                    best_one = best_one.min(t1);
                }
                let _ = std::fs::remove_file(&path);
                Some(mips(insns - insns_one, best_big - best_one))
            }
        };
        rows.push(Row { name: k.name.to_string(), instructions: insns, interp, jit, qemu });
    }
    Ok(rows)
}

/// The results as a table, with geometric means.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.1}"));
    let ratio = |a: f64, b: Option<f64>| b.map_or("-".to_string(), |b| format!("{:.1}x", a / b));
    s.push_str(&format!(
        "{:<12} {:>14} {:>12} {:>10} {:>11} {:>11} {:>10}\n",
        "workload", "instructions", "interp MIPS", "jit MIPS", "QEMU MIPS", "jit/interp", "jit/QEMU"
    ));
    for r in rows {
        s.push_str(&format!(
            "{:<12} {:>14} {:>12} {:>10.1} {:>11} {:>11} {:>10}\n",
            r.name,
            r.instructions,
            opt(r.interp),
            r.jit,
            opt(r.qemu),
            ratio(r.jit, r.interp),
            ratio(r.jit, r.qemu)
        ));
    }
    let geo = |f: &dyn Fn(&Row) -> Option<f64>| -> Option<f64> {
        let v: Vec<f64> = rows.iter().filter_map(f).collect();
        (!v.is_empty() && v.len() == rows.len())
            .then(|| (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp())
    };
    if rows.len() > 1 {
        let (gi, gj, gq) = (geo(&|r| r.interp), geo(&|r| Some(r.jit)).unwrap_or(0.0), geo(&|r| r.qemu));
        s.push_str(&format!(
            "{:<12} {:>14} {:>12} {:>10.1} {:>11} {:>11} {:>10}\n",
            "geomean",
            "",
            opt(gi),
            gj,
            opt(gq),
            ratio(gj, gi),
            ratio(gj, gq)
        ));
    }
    s
}
