//! Boot paths: how a guest gets into the machine and where the CPU starts (DESIGN.md, "Boot
//! paths").
//!
//! - [`multiboot`]: Multiboot v1 kernels (ELF32 or the a.out kludge), entered in flat 32-bit
//!   protected mode as the Multiboot Specification 0.6.96 §3.2 prescribes.
//! - [`linux`]: Linux bzImages through the 32-bit boot protocol (the kernel's
//!   `Documentation/arch/x86/boot.rst`), with an initrd and a command line.
//! - [`bios`]: a PC BIOS image in ROM, entered at the reset vector (SDM Vol. 3A §9.1.4).
//! - Real-mode images (`--image`, `--raw`) are loaded by [`crate::machine::Machine::load_image`].
//!
//! A machine remembers its boot path ([`BootPath`]) so that a reset can re-enter it. On a PC a
//! triple fault asserts RESET and the CPU restarts at the reset vector: with a BIOS that re-runs
//! the firmware. Without firmware (a kernel or image loaded by bt86 itself) there is nothing at
//! the reset vector, so bt86 does what the firmware plus a boot loader would do on the next
//! boot: it loads the image again (a fresh copy of its segments, bss zeroed again, a new
//! Multiboot information structure) and enters it in the boot path's entry state. QEMU's
//! `-kernel` behaves the same way, because its boot ROM loads the kernel on every boot.

pub mod acpi;
pub mod bios;
pub mod linux;
pub mod multiboot;

use std::fmt;
use std::path::PathBuf;

use emu_core::MemoryError;
use guest_images::Image;
use thiserror::Error;

use crate::machine::Machine;

/// Why a guest could not be loaded. Every variant names the file (or embedded image) and says
/// what is wrong with it.
#[derive(Debug, Error)]
pub enum BootError {
    /// The file is missing or cannot be read.
    #[error("{file}: cannot read: {source}")]
    Unreadable {
        /// The file.
        file: String,
        /// What the host said.
        source: std::io::Error,
    },
    /// The image is larger than guest RAM.
    #[error("{file}: {size} bytes do not fit in {ram} bytes of guest RAM (try a larger --memory)")]
    TooLarge {
        /// The file.
        file: String,
        /// Its size.
        size: u64,
        /// Guest RAM size.
        ram: u64,
    },
    /// Guest RAM is too small to hold the structures the boot loader must build.
    #[error("{file}: guest RAM of {ram} bytes is too small; the boot loader needs at least {need}")]
    RamTooSmall {
        /// The file.
        file: String,
        /// Guest RAM size.
        ram: u64,
        /// What is needed.
        need: u64,
    },
    /// No Multiboot header in the first 8192 bytes.
    #[error(
        "{file}: not a Multiboot kernel: no header (magic 0x1BADB002 at a 4-byte-aligned offset, \
         with a valid checksum) in the first 8192 bytes"
    )]
    NoMultibootHeader {
        /// The file.
        file: String,
    },
    /// The magic is there but the checksum is wrong.
    #[error(
        "{file}: the Multiboot header at offset {offset:#x} has a bad checksum: magic + flags + \
         checksum = {sum:#010x}, must be 0"
    )]
    BadChecksum {
        /// The file.
        file: String,
        /// Offset of the magic.
        offset: usize,
        /// The (wrapping) sum that should have been 0.
        sum: u32,
    },
    /// The header runs past the end of the file or of its first 8192 bytes.
    #[error(
        "{file}: the Multiboot header at offset {offset:#x} needs {need} bytes (flags {flags:#x}) \
         but {why}"
    )]
    HeaderTruncated {
        /// The file.
        file: String,
        /// Offset of the magic.
        offset: usize,
        /// Header size the flags call for.
        need: usize,
        /// The header flags.
        flags: u32,
        /// What ends first.
        why: &'static str,
    },
    /// Flag bit 2: the kernel needs a graphics mode set up.
    #[error(
        "{file}: the kernel requires a video mode (Multiboot header flag bit 2); bt86 has no \
         graphics yet, so it cannot honour that. Rebuild the kernel without the video-mode flag \
         to run it here"
    )]
    VideoModeRequired {
        /// The file.
        file: String,
    },
    /// Required flag bits (0–15) that bt86 does not know.
    #[error(
        "{file}: the kernel requires Multiboot features bt86 does not know (header flag bits \
         {bits:#x}); the specification says to refuse such a kernel"
    )]
    UnsupportedFlags {
        /// The file.
        file: String,
        /// The unknown required bits.
        bits: u32,
    },
    /// Neither an ELF32 i386 executable nor a header with address fields.
    #[error(
        "{file}: {why}, and its Multiboot header has no address fields (flag bit 16), so bt86 \
         does not know where to load it; build an ELF32 i386 kernel or set the a.out kludge"
    )]
    NotElf32 {
        /// The file.
        file: String,
        /// What it is instead.
        why: String,
    },
    /// A malformed ELF file.
    #[error("{file}: malformed ELF: {why}")]
    BadElf {
        /// The file.
        file: String,
        /// What is wrong.
        why: String,
    },
    /// Inconsistent a.out-kludge address fields.
    #[error("{file}: bad Multiboot address fields: {why}")]
    BadAddresses {
        /// The file.
        file: String,
        /// What is wrong.
        why: String,
    },
    /// A segment (or the a.out image) lies outside guest RAM.
    #[error(
        "{file}: {what} at {start:#x}..{end:#x} does not fit in guest RAM ({ram} bytes; try a \
         larger --memory)"
    )]
    OutsideRam {
        /// The file.
        file: String,
        /// Which part.
        what: String,
        /// Start address.
        start: u64,
        /// End address (exclusive).
        end: u64,
        /// Guest RAM size.
        ram: u64,
    },
    /// A segment overlaps the area where bt86 builds the boot information.
    #[error(
        "{file}: {what} at {start:#x}..{end:#x} overlaps {area_start:#x}..{area_end:#x}, where \
         bt86 puts its GDT and the Multiboot information"
    )]
    OverlapsBootArea {
        /// The file.
        file: String,
        /// Which part.
        what: String,
        /// Start address.
        start: u64,
        /// End address (exclusive).
        end: u64,
        /// Start of the boot area.
        area_start: u64,
        /// End of the boot area.
        area_end: u64,
    },
    /// The entry point is not inside anything that was loaded.
    #[error("{file}: the entry point {entry:#x} is outside every loaded segment")]
    EntryOutside {
        /// The file.
        file: String,
        /// The entry point.
        entry: u64,
    },
    /// The command line does not fit in the space reserved for it.
    #[error("{file}: the command line is {len} bytes long; at most {max} fit")]
    CmdlineTooLong {
        /// The file.
        file: String,
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A BIOS image of a size no PC flash part has.
    #[error(
        "{file}: a BIOS image must be 64 KiB to 16 MiB and a multiple of 4 KiB; this one is \
         {size} bytes"
    )]
    BadRomSize {
        /// The file.
        file: String,
        /// Its size.
        size: u64,
    },
    /// Not a Linux bzImage.
    #[error("{file}: not a Linux bzImage: {why}")]
    NotBzImage {
        /// The file.
        file: String,
        /// What is wrong.
        why: String,
    },
    /// A bzImage whose boot protocol is older than bt86 supports.
    #[error(
        "{file}: Linux boot protocol {major}.{minor:02} is too old; bt86 supports 2.06 (Linux 2.6.22) \
         and later"
    )]
    UnsupportedProtocol {
        /// The file.
        file: String,
        /// Protocol major version.
        major: u16,
        /// Protocol minor version.
        minor: u16,
    },
    /// Guest memory refused the image (e.g. it overlaps a ROM already mapped).
    #[error("{file}: {source}")]
    Memory {
        /// The file.
        file: String,
        /// What memory said.
        source: MemoryError,
    },
}

/// Puts the CPU in the flat 32-bit protected-mode state boot loaders leave it in: CS holds
/// `code` and the other segment registers `data` (selector, and the descriptor their caches are
/// filled from, exactly as a reload from the GDT would fill them), GDTR = `gdt` with
/// `gdt_entries` descriptors, an empty IDT (an early exception is a triple fault), CR0.PE set
/// with PG, CD and NW clear, CPL 0, A20 enabled, EFLAGS = 2 (interrupts off), EIP = `entry`.
/// General registers are left for the caller; a pending debug-exit is dropped.
pub(crate) fn enter_flat_protected_mode(
    machine: &mut Machine,
    code: (u16, u64),
    data: (u16, u64),
    (gdt, gdt_entries): (u32, u32),
    entry: u32,
) {
    use emu_core::state::cr0;
    use emu_core::{SegReg, Segment};
    let s = &mut machine.cpu.state;
    let flat = |(selector, descriptor): (u16, u64)| Segment {
        selector,
        attrs: ((descriptor >> 40) & 0xF0FF) as u16,
        base: 0,
        limit: u32::MAX,
    };
    for seg in SegReg::ALL {
        *s.seg_mut(seg) = flat(data);
    }
    *s.seg_mut(SegReg::Cs) = flat(code);
    s.gdtr = emu_core::state::TableReg { base: gdt, limit: gdt_entries * 8 - 1 };
    s.idtr = emu_core::state::TableReg { base: 0, limit: 0 };
    s.cr[0] = (s.cr[0] & !(cr0::CD | cr0::NW | cr0::PG)) | cr0::PE;
    s.cpl = 0;
    s.a20 = true;
    s.set_eflags(0);
    s.eip = entry;
    let _ = machine.bus.debug_exit.take_exit();
}

/// How the machine was booted, kept so that a reset can enter the guest again (see the module
/// header).
#[derive(Clone)]
pub enum BootPath {
    /// A real-mode image, reloaded and entered at its CS:IP.
    RealMode(Image),
    /// A Multiboot kernel, reloaded from these bytes and entered as on first boot.
    Multiboot {
        /// The name the kernel was loaded under (file path or embedded name).
        name: String,
        /// The whole kernel file.
        image: Vec<u8>,
        /// The command line it was given.
        cmdline: String,
    },
    /// A Linux kernel (with its initrd and command line), entered again through the boot
    /// protocol.
    Linux(linux::LinuxBoot),
    /// Firmware in ROM: the ROM stays mapped, so a reset starts it again at the reset vector.
    Firmware {
        /// Where the ROM came from.
        name: PathBuf,
    },
}

impl fmt::Debug for BootPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootPath::RealMode(i) => f.debug_tuple("RealMode").field(&i.name).finish(),
            BootPath::Multiboot { name, image, cmdline } => f
                .debug_struct("Multiboot")
                .field("name", name)
                .field("bytes", &image.len())
                .field("cmdline", cmdline)
                .finish(),
            BootPath::Linux(l) => l.fmt(f),
            BootPath::Firmware { name } => f.debug_struct("Firmware").field("name", name).finish(),
        }
    }
}

impl BootPath {
    /// The name of the guest, for messages.
    pub fn name(&self) -> String {
        match self {
            BootPath::RealMode(i) => i.name.to_string(),
            BootPath::Multiboot { name, .. } => name.clone(),
            BootPath::Linux(l) => l.name.clone(),
            BootPath::Firmware { name } => name.display().to_string(),
        }
    }

    /// Puts the machine, whose CPU has just been reset, into this boot path's entry state
    /// again (reloading the image where there is one).
    pub fn reenter(&self, machine: &mut Machine) -> Result<(), BootError> {
        match self {
            BootPath::RealMode(image) => machine
                .enter_image(image)
                .map_err(|source| BootError::Memory { file: image.name.to_string(), source }),
            BootPath::Multiboot { name, image, cmdline } => multiboot::enter(machine, image, name, cmdline),
            BootPath::Linux(l) => linux::enter(machine, l),
            BootPath::Firmware { .. } => {
                machine.cpu.reset();
                Ok(())
            }
        }
    }
}
