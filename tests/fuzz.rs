//! `bt86 fuzz`: the generated programs run cleanly in bt86 alone; a fixed-seed campaign against
//! QEMU finds no divergence; with a planted ADC bug, a campaign finds it and minimizes it to a
//! reproducer of at most three random instructions that names the ADC.
//!
//! The QEMU tests need `qemu-system-i386`; they are skipped with a message when it is absent,
//! unless `BT86_REQUIRE_QEMU=1` (CI), which makes its absence a failure.

use bt86::diff::DiffOptions;
use bt86::fuzz::{campaign, run_in_bt86, FuzzOptions, Generator};
use bt86::machine::Exit;

fn qemu_available() -> bool {
    let found = std::process::Command::new("qemu-system-i386")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("BT86_REQUIRE_QEMU").is_none(),
            "qemu-system-i386 is required (BT86_REQUIRE_QEMU is set) but cannot be run"
        );
        eprintln!("skipped: qemu-system-i386 is not installed");
    }
    found
}

#[test]
fn generated_programs_run_to_their_exit_without_an_exception_in_bt86() {
    let gen = Generator::new();
    for seed in [1u64, 0xB786] {
        for index in 0..150 {
            let p = gen.program(seed, index).unwrap();
            let elf = p.kernel().unwrap();
            let run = run_in_bt86(&elf).unwrap();
            assert!(
                run.exit == Exit::DebugExit { value: 0 } && run.exceptions == 0,
                "seed {seed} program {index}: {:?} after {} instructions, {} exceptions\n{}",
                run.exit,
                run.retired,
                run.exceptions,
                p.listing().unwrap()
            );
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_program() {
    let gen = Generator::new();
    let a = gen.program(7, 3).unwrap().kernel().unwrap();
    let b = gen.program(7, 3).unwrap().kernel().unwrap();
    let c = gen.program(7, 4).unwrap().kernel().unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
}
