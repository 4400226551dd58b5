//! The harness the Multiboot self-test kernels share (`tests/pm_guests.rs`,
//! `tests/irq_guests.rs`): boot an embedded kernel under QEMU and judge the run against a list
//! of QEMU's known deviations, or under bt86 and require every check to pass.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use guest_images::Kernel;

use crate::common::{
    qemu, qemu_verdict, run_captured_with_stderr, run_qemu_with, self_test_verdict, KnownWrong,
};

/// The embedded kernel `name`.
pub fn kernel(name: &str) -> Kernel {
    guest_images::kernels()
        .into_iter()
        .find(|k| k.name == name)
        .unwrap_or_else(|| panic!("guest_images::kernels() has no {name}"))
}

/// Writes `kernel` to a fresh temporary file.
fn kernel_file(kernel: &Kernel, runner: &str) -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("bt86-kernel-{}-{runner}-{}.elf", std::process::id(), kernel.name));
    std::fs::write(&path, &kernel.elf).expect("write the kernel file");
    path
}

/// Boots kernel `name` under QEMU with `extra` options and judges the run, allowing for `known`.
pub fn passes_in_qemu(name: &str, known: &[KnownWrong], extra: &[&str]) {
    let Some(qemu) = qemu() else { return };
    let file = kernel_file(&kernel(name), "qemu");
    let mut args: Vec<std::ffi::OsString> = extra.iter().map(Into::into).collect();
    args.extend(["-kernel".into(), file.clone().into()]);
    let run = run_qemu_with(&qemu, &args, None);
    let _ = std::fs::remove_file(&file);
    match qemu_verdict(name, &run, known) {
        Ok(None) => println!("qemu {name}: passed"),
        Ok(Some(note)) => println!("qemu {name}: passed except for {note}"),
        Err(why) => panic!("qemu {name}: {why}"),
    }
}

/// Boots kernel `name` with `bt86 run --kernel FILE --engine ENGINE` (the binary at `bt86`) and
/// requires every check to pass within `max_steps` instructions and `timeout`; for the
/// translator, also the same output and instruction count as the interpreter's run.
pub fn passes_in_bt86_engine(bt86: &str, name: &str, max_steps: &str, timeout: Duration, engine: &str) {
    let (output, retired) = run_in_bt86(bt86, name, max_steps, timeout, engine);
    if engine == "jit" {
        let (want, want_retired) = run_in_bt86(bt86, name, max_steps, timeout, "interp");
        assert_eq!(output, want, "bt86 {name}: the translator prints differently from the interpreter");
        assert_eq!(
            retired, want_retired,
            "bt86 {name}: the translator retires a different number of instructions"
        );
    }
}

/// One run: its output and the retired-instruction count `--stats` reports.
fn run_in_bt86(bt86: &str, name: &str, max_steps: &str, timeout: Duration, engine: &str) -> (String, u64) {
    // Tests run in parallel threads, and a translator test also runs the interpreter: every run
    // gets files of its own.
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = kernel_file(&kernel(name), &format!("bt86-{engine}-{n}"));
    let stats =
        std::env::temp_dir().join(format!("bt86-stats-{}-{engine}-{n}-{name}.txt", std::process::id()));
    let mut command = Command::new(bt86);
    command.arg("run").arg("--kernel").arg(&file).args([
        "--max-steps",
        max_steps,
        "--engine",
        engine,
        "--stats",
    ]);
    let stderr = std::fs::File::create(&stats).expect("stats file");
    let run = run_captured_with_stderr(command, None, None, timeout, stderr.into());
    let _ = std::fs::remove_file(&file);
    let stderr = std::fs::read_to_string(&stats).unwrap_or_default();
    let _ = std::fs::remove_file(&stats);
    if run.timed_out {
        panic!("bt86 {name} ({engine}): killed after {timeout:?}; output:\n{}", run.output);
    }
    if let Err(why) = self_test_verdict(run.status, &run.output) {
        panic!("bt86 {name} ({engine}): {why}\n{stderr}");
    }
    let retired = stderr
        .lines()
        .find_map(|l| l.strip_prefix("instructions retired:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("bt86 {name} ({engine}): no instruction count in\n{stderr}"));
    (run.output, retired)
}

/// A QEMU test and bt86 tests for each kernel, calling the including file's `passes_in_qemu`
/// and `passes_in_bt86` (which fix its timeouts and its list of QEMU deviations): with the
/// interpreter, with the translator (same output and instruction count as the interpreter),
/// and — after `lockstep;`, for kernels cheap enough — in lockstep. The translator's tests exist
/// only where it has a backend.
macro_rules! kernel_tests {
    (lockstep; $($module:ident => $name:literal,)*) => {
        $(
            mod $module {
                kernel_tests!(@tests $name);

                #[cfg(target_arch = "x86_64")]
                #[test]
                fn passes_in_bt86_lockstep() {
                    super::passes_in_bt86($name, "lockstep");
                }
            }
        )*

        /// Every kernel named here has its tests above.
        const NAMES: &[&str] = &[$($name),*];
    };
    (@tests $name:literal) => {
        #[test]
        fn passes_in_qemu() {
            super::passes_in_qemu($name);
        }

        #[test]
        fn passes_in_bt86() {
            super::passes_in_bt86($name, "interp");
        }

        #[cfg(target_arch = "x86_64")]
        #[test]
        fn passes_in_bt86_jit() {
            super::passes_in_bt86($name, "jit");
        }
    };
    ($($module:ident => $name:literal,)*) => {
        $(
            mod $module {
                kernel_tests!(@tests $name);
            }
        )*

        /// Every kernel named here has its tests above.
        const NAMES: &[&str] = &[$($name),*];
    };
}
