//! Multiboot v1 loader (Multiboot Specification 0.6.96).
//!
//! What it does, by section of the specification:
//!
//! - §3.1.1–3.1.2: finds the header (magic 0x1BADB002 at a 4-byte-aligned offset, wholly within
//!   the first 8192 bytes, `magic + flags + checksum = 0`). Of the required flag bits (0–15)
//!   bt86 honours bit 0 (align modules: trivially, it loads no modules) and bit 1 (memory
//!   information: always provided); bit 2 (video mode) and any other required bit make it
//!   refuse the kernel, as §3.1.2 demands of a boot loader that cannot honour them.
//! - §3.1.3: with flag bit 16 (the "a.out kludge") the address fields say where to load the
//!   file; they take precedence over an ELF header, as in GRUB and QEMU. Without it the file
//!   must be an ELF32 i386 executable: each PT_LOAD segment is copied to its `p_paddr` and the
//!   part of `p_memsz` beyond `p_filesz` zeroed. The ELF entry point is virtual; it is
//!   translated to physical through the segment that contains it (as GRUB 2 does).
//! - §3.3: the boot information, built in the *boot area* at [`BOOT_AREA_START`] (below the
//!   EBDA, clear of where kernels load): `flags` bit 0 (mem_lower/mem_upper), bit 2 (cmdline),
//!   bit 6 (memory map: usable 0–0x9FC00, reserved 0x9FC00–1 MiB, usable 1 MiB–end of RAM) and
//!   bit 9 (boot loader name "bt86"). A kernel whose segments overlap the boot area is refused.
//! - §3.2: the machine state at entry: EAX = 0x2BADB002, EBX = physical address of the boot
//!   information, CS a flat 32-bit execute/read code segment, DS/ES/FS/GS/SS flat 32-bit
//!   read/write data segments, A20 enabled, CR0.PE = 1 and CR0.PG = 0, EFLAGS.IF = 0 and
//!   EFLAGS.VM = 0 (EFLAGS = 0x2), CPL 0.
//!
//! Choices where the specification leaves things undefined (a kernel must not rely on them,
//! but many do, and a predictable state makes runs comparable):
//!
//! - GDTR points at a real three-entry GDT in the boot area: null, 0x08 = flat 32-bit code
//!   (base 0, limit 4 GiB, DPL 0, execute/read), 0x10 = flat 32-bit data (read/write). The
//!   segment registers hold those selectors with their descriptor caches filled from exactly
//!   these descriptors, so a kernel that reloads a segment register before installing its own
//!   GDT gets the same segment back.
//! - IDTR has base 0 and limit 0, so an exception before the kernel installs its own IDT shuts
//!   the CPU down at once (a triple fault) instead of running through garbage gates.
//! - ESP = [`BOOT_AREA_START`]: a small stack below the boot area, over memory nothing else uses.
//! - The command line follows GRUB and QEMU: the kernel's name, then a space and the
//!   arguments if any (`--append`), so kernels that skip a program name (kvm-unit-tests) work.
//! - Other registers are as after RESET (EDX holds the processor signature), CR0 keeps the
//!   reset value of its cache and FPU bits with CD and NW cleared as firmware leaves them.

use std::path::Path;

use emu_core::state::gpr;

use super::{BootError, BootPath};
use crate::machine::Machine;

/// The value a Multiboot kernel finds in the header's first field (§3.1.2).
pub const HEADER_MAGIC: u32 = 0x1BAD_B002;
/// The value a Multiboot boot loader leaves in EAX (§3.2).
pub const BOOTLOADER_MAGIC: u32 = 0x2BAD_B002;
/// The header must lie wholly within this many bytes at the start of the file (§3.1.1).
pub const HEADER_SEARCH: usize = 8192;

/// Header flag bit 0: align modules on 4 KiB boundaries.
pub const FLAG_PAGE_ALIGN: u32 = 1 << 0;
/// Header flag bit 1: the kernel needs mem_* (and mmap_*) information.
pub const FLAG_MEMORY_INFO: u32 = 1 << 1;
/// Header flag bit 2: the kernel needs a video mode.
pub const FLAG_VIDEO_MODE: u32 = 1 << 2;
/// Header flag bit 16: the address fields (a.out kludge) are valid.
pub const FLAG_AOUT_KLUDGE: u32 = 1 << 16;
/// The required bits (0–15) bt86 honours.
const SUPPORTED_REQUIRED: u32 = FLAG_PAGE_ALIGN | FLAG_MEMORY_INFO;

/// Boot information flag bit 0: mem_lower and mem_upper are valid.
pub const INFO_MEMORY: u32 = 1 << 0;
/// Boot information flag bit 2: cmdline is valid.
pub const INFO_CMDLINE: u32 = 1 << 2;
/// Boot information flag bit 6: mmap_length and mmap_addr are valid.
pub const INFO_MEM_MAP: u32 = 1 << 6;
/// Boot information flag bit 9: boot_loader_name is valid.
pub const INFO_LOADER_NAME: u32 = 1 << 9;

/// Start of the boot area: the GDT, the boot information, the memory map, the boot loader
/// name and the command line.
pub const BOOT_AREA_START: u32 = 0x8000;
/// End (exclusive) of the boot area.
pub const BOOT_AREA_END: u32 = 0xA000;
/// The GDT: null, flat code (selector [`CODE_SELECTOR`]), flat data ([`DATA_SELECTOR`]).
pub const GDT_ADDR: u32 = BOOT_AREA_START;
/// The Multiboot information structure (EBX at entry).
pub const INFO_ADDR: u32 = BOOT_AREA_START + 0x40;
/// Size of the information structure as specification 0.6.96 defines it (up to the VBE
/// fields), zeroed apart from the fields bt86 fills.
const INFO_SIZE: u32 = 88;
/// The memory map entries.
const MMAP_ADDR: u32 = BOOT_AREA_START + 0xA0;
/// The boot loader name.
const LOADER_NAME_ADDR: u32 = BOOT_AREA_START + 0xF0;
/// The boot loader name, as the kernel sees it.
pub const LOADER_NAME: &str = "bt86";
/// The command line (NUL-terminated), up to the end of the boot area.
const CMDLINE_ADDR: u32 = BOOT_AREA_START + 0x100;
/// The longest command line that fits (without its NUL).
pub const MAX_CMDLINE: usize = (BOOT_AREA_END - CMDLINE_ADDR) as usize - 1;

/// The code segment selector at entry (GDT entry 1, RPL 0).
pub const CODE_SELECTOR: u16 = 0x08;
/// The data segment selector at entry (GDT entry 2, RPL 0).
pub const DATA_SELECTOR: u16 = 0x10;
/// Flat 4 GiB code: present, DPL 0, execute/read, accessed; G = 1, D = 1.
const CODE_DESCRIPTOR: u64 = 0x00CF_9B00_0000_FFFF;
/// Flat 4 GiB data: present, DPL 0, read/write, accessed; G = 1, B = 1.
const DATA_DESCRIPTOR: u64 = 0x00CF_9300_0000_FFFF;

/// Top of conventional memory as the memory map reports it (the last KiB below 640 KiB is the
/// EBDA on a PC).
const LOW_RAM_END: u64 = 0x9_FC00;
/// Start of extended memory.
const HIGH_RAM_START: u64 = 0x10_0000;
/// Memory map entry type: available RAM.
const MMAP_AVAILABLE: u32 = 1;
/// Memory map entry type: reserved.
const MMAP_RESERVED: u32 = 2;

/// ELF identification and header constants (System V ABI, Intel386 supplement).
mod elf {
    /// `\x7fELF`.
    pub const MAGIC: [u8; 4] = [0x7F, b'E', b'L', b'F'];
    /// EI_CLASS: 32-bit objects.
    pub const CLASS32: u8 = 1;
    /// EI_DATA: little-endian.
    pub const DATA_LSB: u8 = 1;
    /// e_type: executable file.
    pub const ET_EXEC: u16 = 2;
    /// e_machine: Intel 80386.
    pub const EM_386: u16 = 3;
    /// p_type: loadable segment.
    pub const PT_LOAD: u32 = 1;
    /// Size of the ELF32 file header.
    pub const EHDR_SIZE: usize = 52;
    /// Size of an ELF32 program header.
    pub const PHDR_SIZE: usize = 32;
}

/// One piece of the image to put in guest RAM: `file[src..src + filesz]` at `addr`, then
/// zeros up to `addr + memsz`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Chunk {
    addr: u64,
    src: usize,
    filesz: u64,
    memsz: u64,
}

/// Everything a validated kernel needs to be entered.
#[derive(Debug)]
struct Plan {
    chunks: Vec<Chunk>,
    entry: u32,
}

/// Reads a Multiboot kernel from `path` and enters it (see the module header). `cmdline` is
/// the argument string (`--append`); the kernel sees `"<path> <cmdline>"`, or just the path.
pub fn load(machine: &mut Machine, path: &Path, cmdline: Option<&str>) -> Result<(), BootError> {
    let name = path.display().to_string();
    let unreadable = |source| BootError::Unreadable { file: name.clone(), source };
    let ram = machine.cpu.mem.size() as u64;
    // Refuse a file larger than RAM before reading all of it.
    let size = std::fs::metadata(path).map_err(unreadable)?.len();
    if size > ram {
        return Err(BootError::TooLarge { file: name, size, ram });
    }
    let image = std::fs::read(path).map_err(unreadable)?;
    let full_cmdline = match cmdline {
        Some(args) => format!("{name} {args}"),
        None => name.clone(),
    };
    load_bytes(machine, &image, &name, &full_cmdline)
}

/// Loads the Multiboot kernel `image` (called `name` in errors) with the command line
/// `cmdline` exactly as given, enters it, and records the boot path so a reset re-enters it.
/// Nothing in the machine changes if the image is refused.
pub fn load_bytes(machine: &mut Machine, image: &[u8], name: &str, cmdline: &str) -> Result<(), BootError> {
    enter(machine, image, name, cmdline)?;
    machine.boot = Some(BootPath::Multiboot {
        name: name.to_string(),
        image: image.to_vec(),
        cmdline: cmdline.to_string(),
    });
    Ok(())
}

/// Validates, loads and enters `image` without recording the boot path (also the reset path).
pub(super) fn enter(machine: &mut Machine, image: &[u8], name: &str, cmdline: &str) -> Result<(), BootError> {
    let ram = machine.cpu.mem.size() as u64;
    let file = || name.to_string();
    if image.len() as u64 > ram {
        return Err(BootError::TooLarge { file: file(), size: image.len() as u64, ram });
    }
    if ram < u64::from(BOOT_AREA_END) {
        return Err(BootError::RamTooSmall { file: file(), ram, need: u64::from(BOOT_AREA_END) });
    }
    if cmdline.len() > MAX_CMDLINE {
        return Err(BootError::CmdlineTooLong { file: file(), len: cmdline.len(), max: MAX_CMDLINE });
    }
    let plan = plan(image, name, ram)?;

    // Everything is checked; from here on only guest memory writes, which cannot fail for
    // ranges inside RAM unless a ROM is mapped there.
    let mem_err = |source| BootError::Memory { file: file(), source };
    let zeros = vec![0u8; 0x1_0000];
    for c in &plan.chunks {
        let src = &image[c.src..c.src + c.filesz as usize];
        machine.cpu.mem.load(c.addr, src).map_err(mem_err)?;
        let mut at = c.addr + c.filesz;
        let end = c.addr + c.memsz;
        while at < end {
            let n = (end - at).min(zeros.len() as u64) as usize;
            machine.cpu.mem.load(at, &zeros[..n]).map_err(mem_err)?;
            at += n as u64;
        }
    }
    let area = build_boot_area(ram, cmdline);
    machine.cpu.mem.load(u64::from(BOOT_AREA_START), &area).map_err(mem_err)?;
    set_entry_state(machine, plan.entry);
    Ok(())
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// The Multiboot header: its offset in the file and its fields.
#[derive(Debug)]
struct Header {
    offset: usize,
    flags: u32,
    /// header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr (valid with bit 16).
    addrs: [u32; 5],
}

/// Finds and checks the header (§3.1.1, §3.1.2).
fn find_header(image: &[u8], name: &str) -> Result<Header, BootError> {
    let file = || name.to_string();
    let window = &image[..image.len().min(HEADER_SEARCH)];
    let mut bad_checksum = None;
    let mut offset = 0;
    while offset + 12 <= window.len() {
        if u32_at(window, offset) == HEADER_MAGIC {
            let flags = u32_at(window, offset + 4);
            let sum = HEADER_MAGIC.wrapping_add(flags).wrapping_add(u32_at(window, offset + 8));
            if sum == 0 {
                let need = if flags & FLAG_VIDEO_MODE != 0 {
                    48
                } else if flags & FLAG_AOUT_KLUDGE != 0 {
                    32
                } else {
                    12
                };
                if offset + need > window.len() {
                    let why = if offset + need > image.len() {
                        "the file ends first"
                    } else {
                        "it must lie within the first 8192 bytes"
                    };
                    return Err(BootError::HeaderTruncated { file: file(), offset, need, flags, why });
                }
                let mut addrs = [0u32; 5];
                if flags & FLAG_AOUT_KLUDGE != 0 {
                    for (i, a) in addrs.iter_mut().enumerate() {
                        *a = u32_at(window, offset + 12 + 4 * i);
                    }
                }
                return Ok(Header { offset, flags, addrs });
            }
            bad_checksum.get_or_insert(BootError::BadChecksum { file: file(), offset, sum });
        }
        offset += 4;
    }
    Err(bad_checksum.unwrap_or(BootError::NoMultibootHeader { file: file() }))
}

/// Checks that `[start, end)` is in RAM and clear of the boot area.
fn check_range(name: &str, what: &str, start: u64, end: u64, ram: u64) -> Result<(), BootError> {
    if end > ram {
        return Err(BootError::OutsideRam {
            file: name.to_string(),
            what: what.to_string(),
            start,
            end,
            ram,
        });
    }
    let (area_start, area_end) = (u64::from(BOOT_AREA_START), u64::from(BOOT_AREA_END));
    if start < area_end && area_start < end {
        return Err(BootError::OverlapsBootArea {
            file: name.to_string(),
            what: what.to_string(),
            start,
            end,
            area_start,
            area_end,
        });
    }
    Ok(())
}

/// Decides what goes where, checking everything before anything is written.
fn plan(image: &[u8], name: &str, ram: u64) -> Result<Plan, BootError> {
    let header = find_header(image, name)?;
    let file = || name.to_string();
    if header.flags & FLAG_VIDEO_MODE != 0 {
        return Err(BootError::VideoModeRequired { file: file() });
    }
    let unknown = header.flags & 0xFFFF & !SUPPORTED_REQUIRED;
    if unknown != 0 {
        return Err(BootError::UnsupportedFlags { file: file(), bits: unknown });
    }
    if header.flags & FLAG_AOUT_KLUDGE != 0 {
        plan_aout(image, name, ram, &header)
    } else {
        plan_elf(image, name, ram)
    }
}

/// The a.out kludge (§3.1.3).
fn plan_aout(image: &[u8], name: &str, ram: u64, h: &Header) -> Result<Plan, BootError> {
    let bad = |why: String| BootError::BadAddresses { file: name.to_string(), why };
    let [header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr] = h.addrs.map(u64::from);
    if load_addr > header_addr {
        return Err(bad(format!(
            "load_addr {load_addr:#x} is above header_addr {header_addr:#x} (it must be at or below)"
        )));
    }
    let header_skip = header_addr - load_addr;
    if header_skip > h.offset as u64 {
        return Err(bad(format!(
            "header_addr - load_addr = {header_skip:#x}, but the header is only {:#x} bytes into the file",
            h.offset
        )));
    }
    let src = h.offset - header_skip as usize;
    let available = (image.len() - src) as u64;
    let filesz = if load_end_addr == 0 {
        available
    } else if load_end_addr < load_addr {
        return Err(bad(format!("load_end_addr {load_end_addr:#x} is below load_addr {load_addr:#x}")));
    } else if load_end_addr - load_addr > available {
        return Err(bad(format!(
            "load_end_addr {load_end_addr:#x} asks for {:#x} bytes but the file has only {available:#x} from \
             load_addr on",
            load_end_addr - load_addr
        )));
    } else {
        load_end_addr - load_addr
    };
    let load_end = load_addr + filesz;
    let end = if bss_end_addr == 0 {
        load_end
    } else if bss_end_addr < load_end {
        return Err(bad(format!(
            "bss_end_addr {bss_end_addr:#x} is below the end of the loaded image {load_end:#x}"
        )));
    } else {
        bss_end_addr
    };
    check_range(name, "the kernel image", load_addr, end, ram)?;
    if !(load_addr..end).contains(&entry_addr) {
        return Err(BootError::EntryOutside { file: name.to_string(), entry: entry_addr });
    }
    Ok(Plan {
        chunks: vec![Chunk { addr: load_addr, src, filesz, memsz: end - load_addr }],
        entry: entry_addr as u32,
    })
}

/// An ELF32 i386 executable: its PT_LOAD segments.
fn plan_elf(image: &[u8], name: &str, ram: u64) -> Result<Plan, BootError> {
    let not_elf = |why: String| BootError::NotElf32 { file: name.to_string(), why };
    let bad = |why: String| BootError::BadElf { file: name.to_string(), why };
    if image.len() < 16 || image[..4] != elf::MAGIC {
        return Err(not_elf("it is not an ELF file".into()));
    }
    if image[4] != elf::CLASS32 {
        let class = if image[4] == 2 { "ELF64".to_string() } else { format!("ELF class {}", image[4]) };
        return Err(not_elf(format!("it is {class}, not ELF32 (bt86 boots 32-bit kernels)")));
    }
    if image[5] != elf::DATA_LSB {
        return Err(not_elf("it is a big-endian ELF file".into()));
    }
    if image.len() < elf::EHDR_SIZE {
        return Err(bad(format!("the file ({} bytes) is shorter than an ELF32 header", image.len())));
    }
    let (e_type, e_machine) = (u16_at(image, 16), u16_at(image, 18));
    if e_machine != elf::EM_386 {
        return Err(not_elf(format!("it is an ELF32 file for machine {e_machine}, not i386 (3)")));
    }
    if e_type != elf::ET_EXEC {
        return Err(not_elf(format!("it is an ELF32 file of type {e_type}, not an executable (2)")));
    }
    let e_entry = u32_at(image, 24);
    let e_phoff = u32_at(image, 28) as usize;
    let e_phentsize = usize::from(u16_at(image, 42));
    let e_phnum = usize::from(u16_at(image, 44));
    if e_phnum == 0 {
        return Err(bad("no program headers".into()));
    }
    if e_phentsize < elf::PHDR_SIZE {
        return Err(bad(format!("program header size {e_phentsize} is below {}", elf::PHDR_SIZE)));
    }
    let table_end = e_phoff.checked_add(e_phnum * e_phentsize).filter(|&e| e <= image.len());
    if table_end.is_none() {
        return Err(bad(format!(
            "{e_phnum} program headers of {e_phentsize} bytes at offset {e_phoff:#x} run past the end of the file"
        )));
    }
    let mut chunks = Vec::new();
    let mut entry = None;
    for i in 0..e_phnum {
        let ph = &image[e_phoff + i * e_phentsize..][..elf::PHDR_SIZE];
        if u32_at(ph, 0) != elf::PT_LOAD {
            continue;
        }
        let [offset, vaddr, paddr, filesz, memsz] = [4, 8, 12, 16, 20].map(|o| u64::from(u32_at(ph, o)));
        if memsz == 0 {
            continue;
        }
        if filesz > memsz {
            return Err(bad(format!("segment {i}: p_filesz {filesz:#x} is larger than p_memsz {memsz:#x}")));
        }
        if offset + filesz > image.len() as u64 {
            return Err(bad(format!(
                "segment {i}: file bytes {offset:#x}..{:#x} run past the end of the file ({:#x})",
                offset + filesz,
                image.len()
            )));
        }
        check_range(name, &format!("segment {i}"), paddr, paddr + memsz, ram)?;
        let e = u64::from(e_entry);
        if entry.is_none() && (vaddr..vaddr + memsz).contains(&e) {
            entry = Some((e - vaddr + paddr) as u32);
        }
        chunks.push(Chunk { addr: paddr, src: offset as usize, filesz, memsz });
    }
    if chunks.is_empty() {
        return Err(bad("no loadable (PT_LOAD) segment".into()));
    }
    let entry = entry.ok_or(BootError::EntryOutside { file: name.to_string(), entry: u64::from(e_entry) })?;
    Ok(Plan { chunks, entry })
}

/// The bytes of the boot area: GDT, information structure, memory map, names (§3.3).
fn build_boot_area(ram: u64, cmdline: &str) -> Vec<u8> {
    let mut area = vec![0u8; (BOOT_AREA_END - BOOT_AREA_START) as usize];
    let at = |addr: u32| (addr - BOOT_AREA_START) as usize;
    let put32 = |area: &mut Vec<u8>, addr: u32, v: u32| {
        area[at(addr)..at(addr) + 4].copy_from_slice(&v.to_le_bytes());
    };

    area[at(GDT_ADDR) + 8..][..8].copy_from_slice(&CODE_DESCRIPTOR.to_le_bytes());
    area[at(GDT_ADDR) + 16..][..8].copy_from_slice(&DATA_DESCRIPTOR.to_le_bytes());

    let mut map: Vec<(u64, u64, u32)> = vec![
        (0, ram.min(LOW_RAM_END), MMAP_AVAILABLE),
        (LOW_RAM_END, HIGH_RAM_START - LOW_RAM_END, MMAP_RESERVED),
    ];
    if ram > HIGH_RAM_START {
        map.push((HIGH_RAM_START, ram - HIGH_RAM_START, MMAP_AVAILABLE));
    }
    for (i, &(base, len, kind)) in map.iter().enumerate() {
        // Each entry: size (of the rest: 20), base_addr (u64), length (u64), type.
        let e = at(MMAP_ADDR) + 24 * i;
        area[e..e + 4].copy_from_slice(&20u32.to_le_bytes());
        area[e + 4..e + 12].copy_from_slice(&base.to_le_bytes());
        area[e + 12..e + 20].copy_from_slice(&len.to_le_bytes());
        area[e + 20..e + 24].copy_from_slice(&kind.to_le_bytes());
    }
    let mmap_len = 24 * map.len() as u32;

    area[at(LOADER_NAME_ADDR)..][..LOADER_NAME.len()].copy_from_slice(LOADER_NAME.as_bytes());
    area[at(CMDLINE_ADDR)..][..cmdline.len()].copy_from_slice(cmdline.as_bytes());

    let kib = |bytes: u64| (bytes / 1024) as u32;
    let info = INFO_ADDR;
    put32(&mut area, info, INFO_MEMORY | INFO_CMDLINE | INFO_MEM_MAP | INFO_LOADER_NAME);
    put32(&mut area, info + 4, kib(ram.min(LOW_RAM_END)));
    put32(&mut area, info + 8, kib(ram.saturating_sub(HIGH_RAM_START)));
    put32(&mut area, info + 16, CMDLINE_ADDR);
    put32(&mut area, info + 44, mmap_len);
    put32(&mut area, info + 48, MMAP_ADDR);
    put32(&mut area, info + 64, LOADER_NAME_ADDR);
    debug_assert!(INFO_ADDR + INFO_SIZE <= MMAP_ADDR && MMAP_ADDR + mmap_len <= LOADER_NAME_ADDR);
    area
}

/// The machine state of §3.2, from a fresh RESET.
fn set_entry_state(machine: &mut Machine, entry: u32) {
    machine.cpu.reset();
    super::enter_flat_protected_mode(
        machine,
        (CODE_SELECTOR, CODE_DESCRIPTOR),
        (DATA_SELECTOR, DATA_DESCRIPTOR),
        (GDT_ADDR, 3),
        entry,
    );
    let s = &mut machine.cpu.state;
    s.regs[gpr::EAX] = BOOTLOADER_MAGIC;
    s.regs[gpr::EBX] = INFO_ADDR;
    s.regs[gpr::ESP] = BOOT_AREA_START;
}

#[cfg(test)]
mod tests {
    use super::*;
    use emu_core::cpu::decode_descriptor;
    use emu_core::Segment;

    #[test]
    fn descriptor_caches_match_the_gdt_entries() {
        let code = decode_descriptor(CODE_DESCRIPTOR as u32, (CODE_DESCRIPTOR >> 32) as u32, CODE_SELECTOR);
        assert_eq!(code.base, 0);
        assert_eq!(code.limit, u32::MAX);
        assert!(code.big() && code.dpl() == 0);
        assert_eq!(code.attrs & (Segment::ATTR_CODE | Segment::ATTR_RW | Segment::ATTR_P), 0x8A);
        let data = decode_descriptor(DATA_DESCRIPTOR as u32, (DATA_DESCRIPTOR >> 32) as u32, DATA_SELECTOR);
        assert_eq!(data.attrs & Segment::ATTR_CODE, 0);
        assert!(data.big() && data.limit == u32::MAX);
    }

    #[test]
    fn boot_area_layout_fits() {
        let area = build_boot_area(16 << 20, &"x".repeat(MAX_CMDLINE));
        assert_eq!(area.len(), (BOOT_AREA_END - BOOT_AREA_START) as usize);
        assert_eq!(*area.last().unwrap(), 0, "the longest command line keeps its NUL");
        let info = (INFO_ADDR - BOOT_AREA_START) as usize;
        assert_eq!(u32_at(&area, info + 4), 639);
        assert_eq!(u32_at(&area, info + 8), 15 * 1024);
        assert_eq!(u32_at(&area, info + 44), 72);
    }
}
