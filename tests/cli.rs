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

/// A bzImage (boot protocol `version`) whose 32-bit payload prints the command line it finds
/// through boot_params (ESI), then the first byte of the initrd, then exits through
/// isa-debug-exit with CS >> 4 (0x10 >> 4 = 1: status 3).
fn tiny_bzimage(version: u16) -> Vec<u8> {
    let mut f = vec![0u8; 1024];
    f[0x1F1] = 1; // setup_sects
    f[0x1FE] = 0x55;
    f[0x1FF] = 0xAA;
    f[0x200] = 0xEB;
    f[0x201] = 0x66;
    f[0x202..0x206].copy_from_slice(b"HdrS");
    f[0x206..0x208].copy_from_slice(&version.to_le_bytes());
    f[0x211] = 1; // LOADED_HIGH
    f[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes());
    f[0x22C..0x230].copy_from_slice(&0x37FF_FFFFu32.to_le_bytes());
    f[0x238..0x23C].copy_from_slice(&2047u32.to_le_bytes());
    f.extend_from_slice(&[
        0x8B, 0x9E, 0x28, 0x02, 0x00, 0x00, // mov ebx,[esi+0x228]  cmd_line_ptr
        0x8A, 0x03, // L: mov al,[ebx]
        0x84, 0xC0, // test al,al
        0x74, 0x05, // jz done
        0xE6, 0xE9, // out 0xE9,al
        0x43, // inc ebx
        0xEB, 0xF5, // jmp L
        0x8B, 0x8E, 0x18, 0x02, 0x00, 0x00, // done: mov ecx,[esi+0x218]  ramdisk_image
        0x8A, 0x01, // mov al,[ecx]
        0xE6, 0xE9, // out 0xE9,al
        0x8C, 0xC8, // mov eax,cs
        0xC1, 0xE8, 0x04, // shr eax,4
        0xE6, 0xF4, // out 0xF4,al
    ]);
    f
}

#[test]
fn a_bzimage_gets_its_command_line_and_initrd_through_boot_params() {
    let k = scratch_file("bz", &tiny_bzimage(0x020F));
    let rd = scratch_file("rd", b"Zinitrd");
    let (k, rd) = (k.to_str().unwrap(), rd.to_str().unwrap());
    let out = bt86(&["run", "--kernel", k, "--initrd", rd, "--append", "hello=1 x"]);
    assert_eq!(out.status.code(), Some(3), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello=1 xZ");
    // Without --append the command line is the serial console.
    let out = bt86(&["run", "--kernel", k, "--initrd", rd]);
    assert_eq!(text(&out.stdout), "console=ttyS0,115200Z");
    // An initrd that does not fit above the kernel in RAM is refused by name.
    let big = scratch_file("big", &vec![0u8; 2 << 20]);
    let out = bt86(&["run", "--kernel", k, "--initrd", big.to_str().unwrap(), "--memory", "2"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains(&format!("{}: guest RAM of", big.display())), "{}", text(&out.stderr));
    for p in [k, rd, big.to_str().unwrap()] {
        std::fs::remove_file(p).unwrap();
    }
}

#[test]
fn kernels_bt86_cannot_boot_are_clear_errors() {
    let old = scratch_file("old-bz", &tiny_bzimage(0x0204));
    let out = bt86(&["run", "--kernel", old.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("Linux boot protocol 2.04 is too old"), "{}", text(&out.stderr));
    let mut z = tiny_bzimage(0x020F);
    z[0x211] = 0;
    let zimage = scratch_file("zimage", &z);
    let out = bt86(&["run", "--kernel", zimage.to_str().unwrap()]);
    assert!(text(&out.stderr).contains("not a Linux bzImage: a zImage"), "{}", text(&out.stderr));
    let garbage = scratch_file("garbage", &[0x42; 4096]);
    let out = bt86(&["run", "--kernel", garbage.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("not a Multiboot kernel"), "{}", text(&out.stderr));
    let out = bt86(&["run", "--image", "pm-paging", "--initrd", garbage.to_str().unwrap()]);
    assert!(text(&out.stderr).contains("--initrd goes with a Linux kernel"), "{}", text(&out.stderr));
    for p in [old, zimage, garbage] {
        std::fs::remove_file(p).unwrap();
    }
}

#[test]
fn a_hung_guest_is_stopped_by_the_timeout_with_its_last_output() {
    // mov dx,3F8h; mov al,'h'; out dx,al; mov al,'i'; out dx,al; mov al,0Ah; out dx,al; jmp $
    let code = [0xBA, 0xF8, 0x03, 0xB0, b'h', 0xEE, 0xB0, b'i', 0xEE, 0xB0, 0x0A, 0xEE, 0xEB, 0xFE];
    let f = scratch_file("spin.bin", &code);
    let out = bt86(&[
        "run",
        "--raw",
        f.to_str().unwrap(),
        "--serial",
        "none",
        "--max-steps",
        "0xffffffffffff",
        "--timeout",
        "1",
    ]);
    std::fs::remove_file(&f).unwrap();
    assert_eq!(out.status.code(), Some(4), "stderr: {}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("did not finish within --timeout 1 s"), "{err}");
    assert!(err.contains("stopped at CS:EIP 0000:00007c0c"), "{err}");
    assert!(err.contains("last serial output:\n  | hi\n"), "{err}");
}

#[test]
fn no_reboot_turns_a_guest_reset_into_an_exit() {
    // mov al,0FEh; out 64h,al (the keyboard controller pulses RESET); jmp $
    let code = [0xB0, 0xFE, 0xE6, 0x64, 0xEB, 0xFE];
    let f = scratch_file("reset.bin", &code);
    let out = bt86(&["run", "--raw", f.to_str().unwrap(), "--no-reboot", "--max-steps", "100000"]);
    assert_eq!(out.status.code(), Some(5), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("asked for a reset (stopped: --no-reboot)"), "{}", text(&out.stderr));
    // Without it, the machine resets and boots the image again, until the step limit.
    let out = bt86(&["run", "--raw", f.to_str().unwrap(), "--max-steps", "100000"]);
    std::fs::remove_file(&f).unwrap();
    assert_eq!(out.status.code(), Some(3), "stderr: {}", text(&out.stderr));
}
