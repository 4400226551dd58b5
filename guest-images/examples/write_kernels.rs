//! Writes every multiboot test kernel, and the demo kernel, to a directory as `NAME.elf`, for
//! running them by hand: `cargo run -p guest-images --example write_kernels -- DIR`, then for instance
//! `qemu-system-i386 -display none -nodefaults -no-reboot -debugcon stdio
//! -device isa-debug-exit,iobase=0xf4,iosize=4 -kernel DIR/pm-descriptors.elf` (the demo
//! talks on COM1: add `-serial stdio` and drop `-debugcon stdio`).

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(std::env::args_os().nth(1).unwrap_or_else(|| ".".into()));
    std::fs::create_dir_all(&dir)?;
    for kernel in guest_images::kernels().into_iter().chain([guest_images::demo_kernel()]) {
        let path = dir.join(format!("{}.elf", kernel.name));
        std::fs::write(&path, &kernel.elf)?;
        println!("{}: {} bytes, {}", path.display(), kernel.elf.len(), kernel.description);
    }
    Ok(())
}
