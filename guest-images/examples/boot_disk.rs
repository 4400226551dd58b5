//! Writes a 1.44 MB boot floppy for one of the guest programs, e.g. to run it under QEMU:
//!
//! ```text
//! cargo run -p guest-images --example boot_disk -- alu /tmp/alu.img
//! qemu-system-i386 -display none -nodefaults -drive file=/tmp/alu.img,format=raw,if=floppy \
//!     -debugcon stdio -device isa-debug-exit,iobase=0xf4,iosize=0x04 -no-reboot
//! ```
//!
//! Names: `demo`, `bench` (1000 iterations) and the self-tests.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut images = guest_images::self_tests();
    images.push(guest_images::primes());
    images.push(guest_images::bench_loop(1000));
    let names: Vec<&str> = images.iter().map(|i| i.name).collect();
    let [name, path] = args.as_slice() else {
        eprintln!("usage: boot_disk NAME FILE (NAME: {})", names.join(", "));
        return ExitCode::FAILURE;
    };
    let Some(image) = images.iter().find(|i| i.name == name.as_str()) else {
        eprintln!("no guest named {name:?} (have: {})", names.join(", "));
        return ExitCode::FAILURE;
    };
    if let Err(e) = std::fs::write(path, guest_images::boot_disk(image)) {
        eprintln!("cannot write {path}: {e}");
        return ExitCode::FAILURE;
    }
    println!("{path}: {} ({})", image.name, image.description);
    ExitCode::SUCCESS
}
