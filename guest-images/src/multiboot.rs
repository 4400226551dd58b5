//! Multiboot v1 kernels as ELF32 i386 executables.
//!
//! The file is laid out as a boot loader expects to find it:
//!
//! ```text
//! file 0x0000  ELF header (52 bytes), then one program header (32 bytes), zero padding
//! file 0x1000  the loadable segment = guest-physical `load`:
//!              multiboot header (32 bytes: magic, flags, checksum and the five address
//!              fields), then the image bytes
//! ```
//!
//! The one `PT_LOAD` segment has `p_memsz >= p_filesz`: the rest up to `bss_end` is zeroed
//! by the loader, which is where the kernels keep their tables and stacks, so that no loader
//! puts its multiboot information structure there.
//!
//! The multiboot header (Multiboot Specification 0.6.96, section 3.1) sets flags bits 0 (align
//! modules), 1 (memory information) and 16 (the address fields are valid, the "a.out kludge").
//! Those address fields describe the very same placement as the ELF program header, so a loader
//! that reads ELF and one that only reads the header load the same bytes at the same place.

/// Multiboot v1 header magic (Multiboot Specification, 3.1.1).
pub(crate) const HEADER_MAGIC: u32 = 0x1BAD_B002;
/// The value a multiboot loader leaves in EAX (Multiboot Specification, 3.2).
pub(crate) const BOOTLOADER_MAGIC: u32 = 0x2BAD_B002;
/// Flags: page-align modules (bit 0), memory information wanted (bit 1), address fields
/// valid (bit 16).
const HEADER_FLAGS: u32 = 0x0001_0003;
/// Bytes of the multiboot header with its address fields.
pub(crate) const HEADER_SIZE: usize = 32;

/// File offset of the loadable segment (page-aligned, as `p_align` requires).
const SEGMENT_OFFSET: usize = 0x1000;
/// ELF32 header size.
const EHDR_SIZE: usize = 52;
/// ELF32 program header size.
const PHDR_SIZE: usize = 32;

/// `e_type` ET_EXEC.
const ET_EXEC: u16 = 2;
/// `e_machine` EM_386.
const EM_386: u16 = 3;
/// `p_type` PT_LOAD.
const PT_LOAD: u32 = 1;
/// `p_flags` PF_X | PF_W | PF_R.
const PF_RWX: u32 = 7;

/// Builds the ELF file of a kernel whose image (multiboot header excluded) is `image`.
///
/// - `load`: guest-physical (and virtual) address of the segment, where the multiboot header
///   goes; `image` follows it at `load + HEADER_SIZE` rounded up to `image_at`.
/// - `image_at`: where `image[0]` is (assembled for); at least `load + HEADER_SIZE`.
/// - `entry`: where the loader jumps.
/// - `bss_end`: end of the zero-filled memory the segment covers.
pub(crate) fn elf(load: u32, image_at: u32, image: &[u8], entry: u32, bss_end: u32) -> Vec<u8> {
    assert!(image_at >= load + HEADER_SIZE as u32, "the image overlaps the multiboot header");
    let pad = (image_at - load) as usize - HEADER_SIZE;
    let file_size = (HEADER_SIZE + pad + image.len()) as u32;
    let mem_size = bss_end - load;
    assert!(mem_size >= file_size, "bss_end {bss_end:#x} lies inside the image");

    let mut out = Vec::with_capacity(SEGMENT_OFFSET + file_size as usize);
    // ELF header (System V ABI, i386 supplement).
    out.extend_from_slice(&[
        0x7F, b'E', b'L', b'F', 1, /* 32-bit */
        1, /* LE */
        1, /* version */
    ]);
    out.resize(16, 0);
    put16(&mut out, ET_EXEC);
    put16(&mut out, EM_386);
    put32(&mut out, 1); // e_version
    put32(&mut out, entry);
    put32(&mut out, EHDR_SIZE as u32); // e_phoff
    put32(&mut out, 0); // e_shoff
    put32(&mut out, 0); // e_flags
    put16(&mut out, EHDR_SIZE as u16);
    put16(&mut out, PHDR_SIZE as u16);
    put16(&mut out, 1); // e_phnum
    put16(&mut out, 40); // e_shentsize
    put16(&mut out, 0); // e_shnum
    put16(&mut out, 0); // e_shstrndx
    debug_assert_eq!(out.len(), EHDR_SIZE);
    // The one program header.
    put32(&mut out, PT_LOAD);
    put32(&mut out, SEGMENT_OFFSET as u32);
    put32(&mut out, load); // p_vaddr
    put32(&mut out, load); // p_paddr
    put32(&mut out, file_size);
    put32(&mut out, mem_size);
    put32(&mut out, PF_RWX);
    put32(&mut out, 0x1000); // p_align
    out.resize(SEGMENT_OFFSET, 0);

    // Multiboot header: within the first 8 KiB of the file, 4-byte aligned.
    put32(&mut out, HEADER_MAGIC);
    put32(&mut out, HEADER_FLAGS);
    put32(&mut out, HEADER_MAGIC.wrapping_add(HEADER_FLAGS).wrapping_neg());
    put32(&mut out, load); // header_addr: the header is the first thing in the segment
    put32(&mut out, load); // load_addr
    put32(&mut out, load + file_size); // load_end_addr
    put32(&mut out, bss_end); // bss_end_addr
    put32(&mut out, entry); // entry_addr
    out.resize(SEGMENT_OFFSET + HEADER_SIZE + pad, 0);
    out.extend_from_slice(image);
    out
}

/// Where [`flat_kernel`] places its code (and enters it).
pub const FLAT_KERNEL_CODE: u32 = 0x0010_1000;

/// A Multiboot ELF kernel around flat 32-bit code assembled for [`FLAT_KERNEL_CODE`], with
/// 64 KiB of zeroed memory after it (tests, differential-testing reproducers).
pub fn flat_kernel(name: &'static str, description: &'static str, code: &[u8]) -> crate::Kernel {
    let end = FLAT_KERNEL_CODE + code.len() as u32;
    let bss_end = (end + 0x1_0000 + 0xFFF) & !0xFFF;
    crate::Kernel {
        name,
        description,
        elf: elf(0x0010_0000, FLAT_KERNEL_CODE, code, FLAT_KERNEL_CODE, bss_end),
    }
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn elf_header_program_header_and_multiboot_header_agree() {
        let image = [0xF4u8; 10];
        let f = elf(0x10_0000, 0x10_0040, &image, 0x10_0040, 0x40_0000);
        assert_eq!(&f[..4], b"\x7fELF");
        assert_eq!(u32_at(&f, 24), 0x10_0040, "e_entry");
        assert_eq!(u32_at(&f, EHDR_SIZE + 4), 0x1000, "p_offset");
        assert_eq!(u32_at(&f, EHDR_SIZE + 16), 0x40 + 10, "p_filesz");
        assert_eq!(u32_at(&f, EHDR_SIZE + 20), 0x30_0000, "p_memsz");
        let h = SEGMENT_OFFSET;
        assert_eq!(u32_at(&f, h), HEADER_MAGIC);
        assert_eq!(u32_at(&f, h).wrapping_add(u32_at(&f, h + 4)).wrapping_add(u32_at(&f, h + 8)), 0);
        assert_eq!(u32_at(&f, h + 20), 0x10_0000 + 0x40 + 10, "load_end_addr");
        assert_eq!(u32_at(&f, h + 28), 0x10_0040, "entry_addr");
        assert_eq!(&f[h + 0x40..], &image);
    }
}
