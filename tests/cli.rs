//! The `bt86` binary as a user runs it: the default demo, exit statuses (QEMU's isa-debug-exit
//! convention), and clear errors for bad input.

use std::process::{Command, Output};

fn bt86(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bt86")).args(args).output().expect("bt86 runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn scratch_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("bt86-cli-{}-{name}", std::process::id()));
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn no_arguments_boots_the_demo_and_exits_zero() {
    // With no input the demo's shell powers the machine off after 60 s of virtual time.
    let out = Command::new(env!("CARGO_BIN_EXE_bt86"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("bt86 runs");
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for line in ["task A: 3", "task B: 5", "all tasks done", "bt86> ", "powering off"] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}

#[test]
fn the_demo_shell_answers_scripted_input_and_powers_off() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bt86"))
        .args(["run", "--image", "demo", "--serial", "stdio"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("bt86 runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"echo hello from the test\nticks\npoweroff\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("hello from the test"), "{stdout}");
    assert!(stdout.contains("powering off"), "{stdout}");
}

#[test]
fn a_closed_stdout_does_not_stop_the_guest() {
    // The reader goes away after the first line; bt86 runs the guest to its end all the same.
    let mut child = Command::new(env!("CARGO_BIN_EXE_bt86"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("bt86 runs");
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("panicked"), "{}", text(&out.stderr));
}

#[test]
fn a_passing_self_test_exits_like_qemu_isa_debug_exit() {
    // The guest writes 0 to port 0xF4: status (0 << 1) | 1.
    let out = bt86(&["run", "--image", "alu"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(!text(&out.stdout).contains("not ok"));
}

#[test]
fn a_guest_that_does_not_finish_exits_two() {
    let out = bt86(&["run", "--max-steps", "1000"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("did not finish within 1000 instructions"));
}

#[test]
fn a_triple_fault_stops_with_a_message_and_exits_three() {
    // lidt [cs:0x7c08] (an IDT of limit 0); ud2; then the 6-byte descriptor.
    let code = [0x2E, 0x0F, 0x01, 0x1E, 0x08, 0x7C, 0x0F, 0x0B, 0, 0, 0, 0, 0, 0];
    let f = scratch_file("tf.bin", &code);
    let out = bt86(&["run", "--raw", f.to_str().unwrap()]);
    std::fs::remove_file(&f).unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(err.contains("triple fault at 0000:00007c06") && err.contains("#UD"), "{err}");
}

#[test]
fn bad_files_and_options_are_clear_errors_naming_the_problem() {
    let cases: [(&[&str], &str); 6] = [
        (&["run", "--raw", "/nonexistent/guest.bin"], "/nonexistent/guest.bin: cannot read"),
        (&["run", "--raw"], "--raw needs a value"),
        (&["run", "--image", "nope"], "no embedded image named `nope`"),
        (&["run", "--max-steps", "many"], "`many` is not a number"),
        (&["conformance", "sst", "/nonexistent/vectors"], "cannot read test directory /nonexistent/vectors"),
        (&["frobnicate"], "unknown command `frobnicate`"),
    ];
    for (args, msg) in cases {
        let out = bt86(args);
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        assert!(text(&out.stderr).contains(msg), "{args:?}: {}", text(&out.stderr));
    }
    let empty = scratch_file("empty.bin", &[]);
    let out = bt86(&["run", "--raw", empty.to_str().unwrap()]);
    std::fs::remove_file(&empty).unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("the file is empty"));
}

#[test]
fn stats_show_the_tlb_working_on_a_paging_guest() {
    let out = bt86(&["run", "--image", "pm-paging", "--stats"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    let line = err.lines().find(|l| l.starts_with("TLB:")).unwrap_or_else(|| panic!("{err}"));
    let hits: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap();
    let misses: u64 = line.split_whitespace().nth(3).and_then(|n| n.parse().ok()).unwrap();
    assert!(hits > 10 * misses && misses > 0, "{line}");
    assert!(err.contains("instructions retired:"), "{err}");
}
