//! The harness the Multiboot self-test kernels share (`tests/pm_guests.rs`,
//! `tests/irq_guests.rs`): boot an embedded kernel under QEMU and judge the run against a list
//! of QEMU's known deviations, or under bt86 and require every check to pass.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use guest_images::Kernel;

use crate::common::{qemu, qemu_verdict, run_captured, run_qemu_with, self_test_verdict, KnownWrong};

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

/// Boots kernel `name` with `bt86 run --kernel` (the binary at `bt86`) and requires every check
/// to pass within `max_steps` instructions and `timeout`.
pub fn passes_in_bt86(bt86: &str, name: &str, max_steps: &str, timeout: Duration) {
    let file = kernel_file(&kernel(name), "bt86");
    let mut command = Command::new(bt86);
    command.arg("run").arg("--kernel").arg(&file).args(["--max-steps", max_steps]);
    let run = run_captured(command, None, timeout);
    let _ = std::fs::remove_file(&file);
    if run.timed_out {
        panic!("bt86 {name}: killed after {timeout:?}; output:\n{}", run.output);
    }
    if let Err(why) = self_test_verdict(run.status, &run.output) {
        panic!("bt86 {name}: {why}");
    }
}

/// A QEMU test and a bt86 test for each kernel, calling the including file's `passes_in_qemu`
/// and `passes_in_bt86` (which fix its timeouts and its list of QEMU deviations).
macro_rules! kernel_tests {
    ($($module:ident => $name:literal,)*) => {
        $(
            mod $module {
                #[test]
                fn passes_in_qemu() {
                    super::passes_in_qemu($name);
                }

                #[test]
                fn passes_in_bt86() {
                    super::passes_in_bt86($name);
                }
            }
        )*

        /// Every kernel named here has its tests above.
        const NAMES: &[&str] = &[$($name),*];
    };
}
