//! BIOS boot: a firmware image in ROM, started at the reset vector.
//!
//! A PC maps its firmware flash at the top of the 32-bit physical address space, so that the
//! last 16 bytes of the image hold the reset vector at 0xFFFF_FFF0, where a P6 starts after
//! RESET with CS = F000 (base FFFF_0000) and EIP = FFF0 (SDM Vol. 3A §9.1.4). The chipset also
//! decodes the image's last 128 KiB just below 1 MiB (0xE0000–0xFFFFF, the whole image if it is
//! smaller), which is where real-mode firmware runs after its first far jump resets CS's base
//! to `selector << 4`. bt86 maps both copies read-only (see [`emu_core::memory`]) and resets
//! the CPU. The BIOS then owns the machine; a triple fault with `--on-triple-fault reset`
//! starts it again at the reset vector with RAM kept, as on a PC.
//!
//! Deviation: real chipsets let firmware make the low copy writable ("shadow RAM", PAM
//! registers of the 440FX) and SeaBIOS relies on it; bt86 has no chipset yet, so those writes
//! are dropped.

use std::path::Path;

use super::{BootError, BootPath};
use crate::machine::Machine;

/// The smallest BIOS image accepted (64 KiB, the classic F000 segment).
pub const MIN_ROM_SIZE: u64 = 64 << 10;
/// The largest BIOS image accepted (16 MiB).
pub const MAX_ROM_SIZE: u64 = emu_core::memory::MAX_ROM_SIZE;
/// How much of the image's end also appears below 1 MiB.
pub const LOW_WINDOW: u64 = 128 << 10;
/// End of the low copy (exclusive): 1 MiB.
const LOW_END: u64 = 0x10_0000;
/// End of the high copy (exclusive): 4 GiB.
const HIGH_END: u64 = 1 << 32;

/// Reads a BIOS image from `path`, maps it and resets the CPU to run it.
pub fn load(machine: &mut Machine, path: &Path) -> Result<(), BootError> {
    let name = path.display().to_string();
    let unreadable = |source| BootError::Unreadable { file: name.clone(), source };
    // Check the size before reading, so a huge file is refused without reading it.
    let size = std::fs::metadata(path).map_err(unreadable)?.len();
    if !size_ok(size) {
        return Err(BootError::BadRomSize { file: name, size });
    }
    let rom = std::fs::read(path).map_err(unreadable)?;
    load_bytes(machine, &rom, path)
}

/// Maps `rom` (called `name` in errors) at the top of 4 GiB and its last 128 KiB below 1 MiB,
/// resets the CPU and records the boot path.
pub fn load_bytes(machine: &mut Machine, rom: &[u8], name: &Path) -> Result<(), BootError> {
    let file = || name.display().to_string();
    let size = rom.len() as u64;
    if !size_ok(size) {
        return Err(BootError::BadRomSize { file: file(), size });
    }
    let low = &rom[(size - size.min(LOW_WINDOW)) as usize..];
    let mem = &mut machine.cpu.mem;
    let mem_err = |source| BootError::Memory { file: file(), source };
    mem.map_rom(HIGH_END - size, rom).map_err(mem_err)?;
    mem.map_rom(LOW_END - low.len() as u64, low).map_err(mem_err)?;
    machine.cpu.reset();
    let _ = machine.bus.debug_exit.take_exit();
    machine.boot = Some(BootPath::Firmware { name: name.to_path_buf() });
    Ok(())
}

/// 64 KiB to 16 MiB, a whole number of 4 KiB pages.
fn size_ok(size: u64) -> bool {
    (MIN_ROM_SIZE..=MAX_ROM_SIZE).contains(&size) && size % 4096 == 0
}
