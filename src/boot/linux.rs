//! The Linux/x86 32-bit boot protocol (the kernel's `Documentation/arch/x86/boot.rst`,
//! "The Real-Mode Kernel Header", "32-bit Boot Protocol" and "Details of Header Fields";
//! `arch/x86/include/uapi/asm/bootparam.h` for the layout of `struct boot_params`).
//!
//! bt86 plays the boot loader and skips the kernel's real-mode setup code, as GRUB's `linux`
//! command does for a 32-bit entry:
//!
//! 1. It checks the bzImage: the boot-sector signature 0xAA55 at 0x1FE, "HdrS" at 0x202, a
//!    protocol version of at least [`MIN_PROTOCOL`], and LOADED_HIGH in `loadflags` (an old
//!    zImage, which must be loaded at 0x10000, is refused).
//! 2. It copies the protected-mode kernel (everything after the `setup_sects + 1` sectors of
//!    the real-mode part) to `code32_start`, 1 MiB.
//! 3. It builds the "zero page" (`struct boot_params`) at [`BOOT_PARAMS`]: all zeros, the setup
//!    header copied from the file, then `type_of_loader`, `cmd_line_ptr`, `ramdisk_image` and
//!    `ramdisk_size`, `vid_mode`, `alt_mem_k`, and the e820 map (usable 0–0x9FC00, reserved
//!    0x9FC00–1 MiB, usable 1 MiB–end of RAM), and `acpi_rsdp_addr` (protocol 2.14) pointing at
//!    the ACPI tables of [`acpi`] in the BIOS area, through which the kernel powers off.
//! 4. It places the initrd as high as `initrd_addr_max` and RAM allow, page-aligned, and refuses
//!    an initrd that would overlap the memory the kernel decompresses into (from 1 MiB to
//!    `pref_address + init_size`).
//! 5. It enters the kernel in flat 32-bit protected mode as the protocol requires: a GDT whose
//!    selector 0x10 (`__BOOT_CS`) is a flat 4 GiB execute/read segment and 0x18 (`__BOOT_DS`) a
//!    flat read/write one, CS = 0x10, DS = ES = SS = 0x18, interrupts off, paging off,
//!    ESI = the zero page, EBP = EDI = EBX = 0, EIP = `code32_start`.
//!
//! Without `--append` the command line is `console=ttyS0,115200`, since bt86's console is the serial
//! port (QEMU users pass the same with `-append`).

use emu_core::state::gpr;

use super::{acpi, BootError, BootPath};
use crate::machine::Machine;

/// The oldest boot protocol bt86 accepts: 2.06 (Linux 2.6.22) introduced `cmdline_size`, and
/// every field bt86 fills is defined by then.
pub const MIN_PROTOCOL: u16 = 0x0206;
/// The command line used when none is given.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0,115200";

/// The GDT bt86 builds for the kernel: null, null, `__BOOT_CS` (0x10), `__BOOT_DS` (0x18).
const GDT_ADDR: u32 = 0x6000;
/// Flat 4 GiB code (execute/read, DPL 0, 32-bit, 4 KiB granularity).
const CODE_DESCRIPTOR: u64 = 0x00CF_9A00_0000_FFFF;
/// Flat 4 GiB data (read/write, DPL 0, 32-bit, 4 KiB granularity).
const DATA_DESCRIPTOR: u64 = 0x00CF_9200_0000_FFFF;
const BOOT_CS: u16 = 0x10;
const BOOT_DS: u16 = 0x18;
/// Where the zero page goes (4 KiB).
pub const BOOT_PARAMS: u32 = 0x7000;
/// Where the command line goes.
const CMDLINE_ADDR: u32 = 0x8000;
/// Room for the command line, NUL included (the kernel's COMMAND_LINE_SIZE on x86 is 2048).
const CMDLINE_MAX: usize = 0x800;
/// Where the protected-mode kernel is loaded (`code32_start` of every bzImage).
const KERNEL_ADDR: u32 = 0x10_0000;
/// The end of conventional memory in the e820 map (the top 1 KiB is the EBDA).
const LOW_RAM_END: u64 = 0x9_FC00;
const HIGH_RAM_START: u64 = 0x10_0000;

/// e820 entry types.
const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;

// Offsets into the file and into `struct boot_params` (the setup header sits at the same
// offsets in both).
const OFF_SETUP_SECTS: usize = 0x1F1;
const OFF_VID_MODE: usize = 0x1FA;
const OFF_BOOT_FLAG: usize = 0x1FE;
const OFF_JUMP: usize = 0x200;
const OFF_HEADER: usize = 0x202;
const OFF_VERSION: usize = 0x206;
const OFF_TYPE_OF_LOADER: usize = 0x210;
const OFF_LOADFLAGS: usize = 0x211;
const OFF_CODE32_START: usize = 0x214;
const OFF_RAMDISK_IMAGE: usize = 0x218;
const OFF_RAMDISK_SIZE: usize = 0x21C;
const OFF_CMD_LINE_PTR: usize = 0x228;
const OFF_INITRD_ADDR_MAX: usize = 0x22C;
const OFF_CMDLINE_SIZE: usize = 0x238;
const OFF_PREF_ADDRESS: usize = 0x258;
const OFF_INIT_SIZE: usize = 0x260;
const OFF_ALT_MEM_K: usize = 0x1E0;
const OFF_ACPI_RSDP_ADDR: usize = 0x070;
const OFF_E820_ENTRIES: usize = 0x1E8;
const OFF_E820_TABLE: usize = 0x2D0;
const E820_MAX: usize = 128;
/// `loadflags` bit 0: the protected-mode code is loaded at 0x100000 (a bzImage).
const LOADED_HIGH: u8 = 1 << 0;

/// True if `image` looks like a bzImage (boot flag and "HdrS"), whatever its version: used to
/// choose between this loader and the Multiboot one for `--kernel`.
pub fn is_bzimage(image: &[u8]) -> bool {
    image.len() > OFF_HEADER + 4
        && image[OFF_BOOT_FLAG..OFF_BOOT_FLAG + 2] == [0x55, 0xAA]
        && &image[OFF_HEADER..OFF_HEADER + 4] == b"HdrS"
}

/// A bzImage whose header has been checked.
#[derive(Debug)]
struct Kernel<'a> {
    /// The real-mode part's setup header, from 0x1F1 to its end.
    header: &'a [u8],
    /// The protected-mode kernel.
    payload: &'a [u8],
    version: u16,
    initrd_addr_max: u32,
    cmdline_size: u32,
    /// Where the kernel ends up decompressed, and how much it needs there.
    pref_address: u64,
    init_size: u64,
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn parse<'a>(image: &'a [u8], name: &str) -> Result<Kernel<'a>, BootError> {
    let not = |why: String| BootError::NotBzImage { file: name.to_string(), why };
    if image.len() < 0x400 {
        return Err(not(format!("{} bytes is too short for a kernel's real-mode header", image.len())));
    }
    if !is_bzimage(image) {
        return Err(not("no boot sector signature 0xAA55 at 0x1FE and \"HdrS\" at 0x202".into()));
    }
    let version = u16_at(image, OFF_VERSION);
    if version < MIN_PROTOCOL {
        return Err(BootError::UnsupportedProtocol {
            file: name.to_string(),
            major: version >> 8,
            minor: version & 0xFF,
        });
    }
    if image[OFF_LOADFLAGS] & LOADED_HIGH == 0 {
        return Err(not("a zImage (loadflags.LOADED_HIGH clear), which bt86 cannot load low".into()));
    }
    let header_end = OFF_HEADER + usize::from(image[OFF_JUMP + 1]);
    let setup_sects = match image[OFF_SETUP_SECTS] {
        0 => 4,
        n => usize::from(n),
    };
    let setup_len = (setup_sects + 1) * 512;
    if header_end > setup_len || setup_len >= image.len() {
        return Err(not(format!(
            "the real-mode part ({setup_sects} setup sectors, header to {header_end:#x}) does not fit \
             in the {} bytes of the file",
            image.len()
        )));
    }
    let code32_start = u32_at(image, OFF_CODE32_START);
    if code32_start != KERNEL_ADDR {
        return Err(not(format!(
            "code32_start is {code32_start:#x}; bt86 loads the protected-mode kernel at {KERNEL_ADDR:#x}"
        )));
    }
    let pref_address = if version >= 0x020A { u32_at(image, OFF_PREF_ADDRESS).into() } else { 0 };
    let init_size = if version >= 0x020A { u32_at(image, OFF_INIT_SIZE).into() } else { 0 };
    Ok(Kernel {
        header: &image[OFF_SETUP_SECTS..header_end],
        payload: &image[setup_len..],
        version,
        initrd_addr_max: u32_at(image, OFF_INITRD_ADDR_MAX),
        cmdline_size: u32_at(image, OFF_CMDLINE_SIZE),
        pref_address,
        init_size,
    })
}

/// A kernel plus what goes with it, kept so that a reset boots it again.
#[derive(Clone)]
pub struct LinuxBoot {
    /// Name of the kernel file (for messages).
    pub name: String,
    /// The whole bzImage.
    pub kernel: Vec<u8>,
    /// Name and contents of the initrd.
    pub initrd: Option<(String, Vec<u8>)>,
    /// The command line.
    pub cmdline: String,
}

impl std::fmt::Debug for LinuxBoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinuxBoot")
            .field("name", &self.name)
            .field("kernel bytes", &self.kernel.len())
            .field("initrd", &self.initrd.as_ref().map(|(n, b)| (n, b.len())))
            .field("cmdline", &self.cmdline)
            .finish()
    }
}

fn read(path: &str, ram: u64) -> Result<Vec<u8>, BootError> {
    let unreadable = |source| BootError::Unreadable { file: path.to_string(), source };
    let size = std::fs::metadata(path).map_err(unreadable)?.len();
    if size > ram {
        return Err(BootError::TooLarge { file: path.to_string(), size, ram });
    }
    std::fs::read(path).map_err(unreadable)
}

/// Reads the bzImage at `kernel` (and the initrd at `initrd`), loads them and enters the
/// kernel; records the boot path so a reset boots it again. Nothing in the machine changes if
/// a file is refused.
pub fn load(
    machine: &mut Machine,
    kernel: &str,
    initrd: Option<&str>,
    cmdline: Option<&str>,
) -> Result<(), BootError> {
    let ram = machine.cpu.mem.size() as u64;
    let boot = LinuxBoot {
        name: kernel.to_string(),
        kernel: read(kernel, ram)?,
        initrd: match initrd {
            Some(p) => Some((p.to_string(), read(p, ram)?)),
            None => None,
        },
        cmdline: cmdline.unwrap_or(DEFAULT_CMDLINE).to_string(),
    };
    enter(machine, &boot)?;
    machine.boot = Some(BootPath::Linux(boot));
    Ok(())
}

/// Validates, loads and enters a kernel (also the reset path).
pub(super) fn enter(machine: &mut Machine, boot: &LinuxBoot) -> Result<(), BootError> {
    let name = boot.name.as_str();
    let file = || name.to_string();
    let k = parse(&boot.kernel, name)?;
    let ram = machine.cpu.mem.size() as u64;
    // The decompressed kernel runs from max(1 MiB, pref_address) for init_size bytes.
    let kernel_end = (u64::from(KERNEL_ADDR) + k.payload.len() as u64)
        .max(k.pref_address.max(KERNEL_ADDR.into()) + k.init_size);
    if ram < kernel_end {
        return Err(BootError::RamTooSmall { file: file(), ram, need: kernel_end });
    }
    let max_cmdline = (k.cmdline_size as usize).min(CMDLINE_MAX - 1);
    if boot.cmdline.len() > max_cmdline {
        return Err(BootError::CmdlineTooLong { file: file(), len: boot.cmdline.len(), max: max_cmdline });
    }
    let initrd = match &boot.initrd {
        Some((iname, bytes)) => {
            let size = bytes.len() as u64;
            let top = ram.min(u64::from(k.initrd_addr_max) + 1);
            let start = top.checked_sub(size).map(|s| s & !0xFFF);
            match start {
                Some(start) if start >= kernel_end && !bytes.is_empty() => Some((start, bytes)),
                _ if bytes.is_empty() => {
                    return Err(BootError::NotBzImage {
                        file: iname.clone(),
                        why: "the initrd is empty".into(),
                    })
                }
                _ => {
                    return Err(BootError::RamTooSmall {
                        file: iname.clone(),
                        ram,
                        need: kernel_end + size.next_multiple_of(0x1000),
                    })
                }
            }
        }
        None => None,
    };

    // The zero page.
    let mut params = vec![0u8; 4096];
    params[OFF_SETUP_SECTS..OFF_SETUP_SECTS + k.header.len()].copy_from_slice(k.header);
    params[OFF_VID_MODE..OFF_VID_MODE + 2].copy_from_slice(&0xFFFFu16.to_le_bytes());
    params[OFF_TYPE_OF_LOADER] = 0xFF;
    let put32 = |p: &mut Vec<u8>, off: usize, v: u32| p[off..off + 4].copy_from_slice(&v.to_le_bytes());
    put32(&mut params, OFF_CMD_LINE_PTR, CMDLINE_ADDR);
    if let Some((start, bytes)) = initrd {
        put32(&mut params, OFF_RAMDISK_IMAGE, start as u32);
        put32(&mut params, OFF_RAMDISK_SIZE, bytes.len() as u32);
    }
    if k.version >= 0x020E {
        put32(&mut params, OFF_ACPI_RSDP_ADDR, acpi::TABLES_ADDR);
    }
    put32(&mut params, OFF_ALT_MEM_K, (ram.saturating_sub(HIGH_RAM_START) / 1024) as u32);
    let map = [
        (0, LOW_RAM_END, E820_RAM),
        (LOW_RAM_END, HIGH_RAM_START - LOW_RAM_END, E820_RESERVED),
        (HIGH_RAM_START, ram - HIGH_RAM_START, E820_RAM),
    ];
    debug_assert!(map.len() <= E820_MAX);
    params[OFF_E820_ENTRIES] = map.len() as u8;
    for (i, (base, len, kind)) in map.iter().enumerate() {
        let e = OFF_E820_TABLE + 20 * i;
        params[e..e + 8].copy_from_slice(&base.to_le_bytes());
        params[e + 8..e + 16].copy_from_slice(&len.to_le_bytes());
        params[e + 16..e + 20].copy_from_slice(&kind.to_le_bytes());
    }

    let mut gdt = [0u8; 32];
    gdt[16..24].copy_from_slice(&CODE_DESCRIPTOR.to_le_bytes());
    gdt[24..32].copy_from_slice(&DATA_DESCRIPTOR.to_le_bytes());
    let mut cmdline = boot.cmdline.as_bytes().to_vec();
    cmdline.push(0);

    // Everything is checked: load.
    machine.cpu.reset();
    let mem_err = |source| BootError::Memory { file: file(), source };
    let mem = &mut machine.cpu.mem;
    mem.load(u64::from(GDT_ADDR), &gdt).map_err(mem_err)?;
    mem.load(u64::from(BOOT_PARAMS), &params).map_err(mem_err)?;
    mem.load(u64::from(CMDLINE_ADDR), &cmdline).map_err(mem_err)?;
    mem.load(u64::from(KERNEL_ADDR), k.payload).map_err(mem_err)?;
    if let Some((start, bytes)) = initrd {
        mem.load(start, bytes).map_err(mem_err)?;
    }
    mem.load(u64::from(acpi::TABLES_ADDR), &acpi::tables()).map_err(mem_err)?;

    super::enter_flat_protected_mode(
        machine,
        (BOOT_CS, CODE_DESCRIPTOR),
        (BOOT_DS, DATA_DESCRIPTOR),
        (GDT_ADDR, 4),
        KERNEL_ADDR,
    );
    let s = &mut machine.cpu.state;
    s.regs = [0; 8];
    s.regs[gpr::ESI] = BOOT_PARAMS;
    s.regs[gpr::ESP] = BOOT_PARAMS;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal well-formed bzImage header: 1 setup sector plus the boot sector, a payload.
    pub(crate) fn fake_bzimage(version: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 1024];
        f[OFF_SETUP_SECTS] = 1;
        f[OFF_BOOT_FLAG] = 0x55;
        f[OFF_BOOT_FLAG + 1] = 0xAA;
        f[OFF_JUMP] = 0xEB;
        f[OFF_JUMP + 1] = 0x66; // header to 0x268
        f[OFF_HEADER..OFF_HEADER + 4].copy_from_slice(b"HdrS");
        f[OFF_VERSION..OFF_VERSION + 2].copy_from_slice(&version.to_le_bytes());
        f[OFF_LOADFLAGS] = LOADED_HIGH;
        f[OFF_CODE32_START..OFF_CODE32_START + 4].copy_from_slice(&KERNEL_ADDR.to_le_bytes());
        f[OFF_INITRD_ADDR_MAX..OFF_INITRD_ADDR_MAX + 4].copy_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
        f[OFF_CMDLINE_SIZE..OFF_CMDLINE_SIZE + 4].copy_from_slice(&2047u32.to_le_bytes());
        f[OFF_PREF_ADDRESS..OFF_PREF_ADDRESS + 4].copy_from_slice(&0x100_0000u32.to_le_bytes());
        f[OFF_INIT_SIZE..OFF_INIT_SIZE + 4].copy_from_slice(&0x10_0000u32.to_le_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn parses_a_well_formed_header() {
        let f = fake_bzimage(0x020F, &[0x90; 100]);
        let k = parse(&f, "k").unwrap();
        assert_eq!(k.payload.len(), 100);
        assert_eq!(k.header.len(), 0x268 - 0x1F1);
        assert_eq!(k.pref_address, 0x100_0000);
    }

    #[test]
    fn refuses_what_it_cannot_boot() {
        let e = parse(&[0u8; 10], "tiny").unwrap_err().to_string();
        assert!(e.contains("tiny") && e.contains("too short"), "{e}");
        let e = parse(&[0u8; 4096], "zeros").unwrap_err().to_string();
        assert!(e.contains("HdrS"), "{e}");
        let e = parse(&fake_bzimage(0x0204, &[0; 16]), "old").unwrap_err().to_string();
        assert!(e.contains("2.04") && e.contains("2.06"), "{e}");
        let mut z = fake_bzimage(0x020F, &[0; 16]);
        z[OFF_LOADFLAGS] = 0;
        assert!(parse(&z, "z").unwrap_err().to_string().contains("zImage"));
        let mut s = fake_bzimage(0x020F, &[0; 16]);
        s[OFF_SETUP_SECTS] = 200;
        assert!(parse(&s, "s").unwrap_err().to_string().contains("does not fit"));
    }
}
