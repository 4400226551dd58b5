//! The boot sector in front of every image, and the disk image that boots it under a PC BIOS.
//!
//! Every image is laid out as one would lay out a boot floppy:
//!
//! ```text
//! 0x7C00  boot sector: loader code, zero padding, 0x55 0xAA at offsets 510..512
//! 0x7E00  program body (assembled for this address)
//!  ...    zero padding up to the last 4 bytes of the last sector
//!  end-4  the magic "bt86"
//! ```
//!
//! bt86 copies the whole image to 0x7C00 and starts there; a BIOS (SeaBIOS under QEMU) loads
//! only sector 0. The loader tells the two apart by looking for the magic at the end: if it is
//! already in memory, the whole image is too and the loader jumps to the body at once.
//! Otherwise it asks the BIOS for the drive geometry (INT 13h AH=08h) and reads the remaining
//! sectors one at a time (INT 13h AH=02h, drive number as the BIOS passed it in DL, three tries
//! with a controller reset in between), then jumps to the body. Either way the body starts with
//! CS = DS = ES = SS = 0, SP = 0x7C00, interrupts off and DF = 0, and bt86 and QEMU run the
//! same bytes.

use iced_x86::code_asm::*;

use crate::asm::{DEBUGCON, DEBUG_EXIT, MAIN_ADDR};
use crate::Image;

/// Where a BIOS loads the boot sector, and where bt86 loads an image.
pub(crate) const LOAD_ADDR: u16 = 0x7C00;
/// Bytes per disk sector.
pub const SECTOR: usize = 512;
/// Sectors of a 1.44 MB floppy (80 cylinders, 2 heads, 18 sectors per track).
pub const FLOPPY_SECTORS: usize = 2880;
/// Marks the last 4 bytes of every image.
const MAGIC: u32 = u32::from_le_bytes(*b"bt86");
/// Instructions the boot sector executes when the image is already in memory (as under bt86):
/// CLI, XOR, 3 segment loads, MOV ESP, CLD, CMP, JE.
pub(crate) const FAST_PATH_INSTRUCTIONS: u64 = 9;
/// Largest program body: the image must end below 0x10000 (real-mode offsets in segment 0,
/// and floppy DMA must not cross a 64 KiB boundary).
const MAX_BODY: usize = 0x1_0000 - MAIN_ADDR as usize - 4;

/// Loader variables (below the program's own, see `asm.rs`).
const BOOT_DRIVE: u32 = 0x0500;
const SECTORS_PER_TRACK: u32 = 0x0502;
const HEADS: u32 = 0x0504;
const TRIES: u32 = 0x0506;

/// Puts the boot sector in front of `body` (assembled for [`MAIN_ADDR`]) and the magic at the
/// end.
pub(crate) fn link(name: &'static str, description: &'static str, body: &[u8]) -> Result<Image, IcedError> {
    assert!(body.len() <= MAX_BODY, "{name}: program body of {} bytes is too large", body.len());
    let body_sectors = (body.len() + 4).div_ceil(SECTOR);
    let total = (1 + body_sectors) * SECTOR;
    let magic_addr = u32::from(LOAD_ADDR) + (total - 4) as u32;

    let mut code = boot_sector(1 + body_sectors as u32, magic_addr)?;
    code.extend_from_slice(body);
    code.resize(total - 4, 0);
    code.extend_from_slice(&MAGIC.to_le_bytes());
    Ok(Image {
        name,
        description,
        load: u32::from(LOAD_ADDR),
        entry_cs: 0,
        entry_ip: LOAD_ADDR,
        stack_ss: 0,
        stack_sp: LOAD_ADDR,
        code,
    })
}

/// The 512-byte boot sector for an image of `sectors` sectors whose magic sits at `magic_addr`.
fn boot_sector(sectors: u32, magic_addr: u32) -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(16)?;
    let mut next_sector = a.create_label();
    let mut attempt = a.create_label();
    let mut read_ok = a.create_label();
    let mut loaded = a.create_label();
    let mut failed = a.create_label();

    a.cli()?;
    a.xor(ax, ax)?;
    a.mov(ds, ax)?;
    a.mov(es, ax)?;
    a.mov(ss, ax)?;
    a.mov(esp, u32::from(LOAD_ADDR))?;
    a.cld()?;
    a.cmp(dword_ptr(magic_addr), MAGIC)?;
    a.je(u64::from(MAIN_ADDR))?;

    // Not loaded yet: we were booted by a BIOS, which passed the drive in DL.
    a.sti()?;
    a.mov(byte_ptr(BOOT_DRIVE), dl)?;
    a.mov(ah, 0x08)?;
    a.xor(di, di)?;
    a.int(0x13)?;
    a.jc(failed)?;
    // AH=08h may point ES:DI at the diskette parameter table.
    a.xor(ax, ax)?;
    a.mov(es, ax)?;
    a.and(cx, 0x3F)?;
    a.mov(word_ptr(SECTORS_PER_TRACK), cx)?;
    a.movzx(dx, dh)?;
    a.inc(dx)?;
    a.mov(word_ptr(HEADS), dx)?;
    // SI = LBA of the next sector, BX = segment it goes to (offset 0).
    a.mov(si, 1)?;
    a.mov(bx, u32::from(MAIN_ADDR >> 4))?;

    a.set_label(&mut next_sector)?;
    a.cmp(si, sectors)?;
    a.jae(loaded)?;
    a.mov(byte_ptr(TRIES), 3)?;
    a.set_label(&mut attempt)?;
    // LBA -> CHS: sector = LBA % spt + 1, head = (LBA / spt) % heads, cylinder = LBA / spt / heads.
    a.mov(ax, si)?;
    a.xor(dx, dx)?;
    a.div(word_ptr(SECTORS_PER_TRACK))?;
    a.mov(cl, dl)?;
    a.inc(cl)?;
    a.xor(dx, dx)?;
    a.div(word_ptr(HEADS))?;
    a.mov(ch, al)?;
    a.shl(ah, 6)?;
    a.or(cl, ah)?;
    a.mov(dh, dl)?;
    a.mov(dl, byte_ptr(BOOT_DRIVE))?;
    a.mov(es, bx)?;
    a.push(bx)?;
    a.xor(bx, bx)?;
    a.mov(ax, 0x0201)?;
    a.int(0x13)?;
    a.pop(bx)?;
    a.jnc(read_ok)?;
    a.xor(ax, ax)?;
    a.mov(dl, byte_ptr(BOOT_DRIVE))?;
    a.int(0x13)?;
    a.dec(byte_ptr(TRIES))?;
    a.jnz(attempt)?;
    a.jmp(failed)?;
    a.set_label(&mut read_ok)?;
    a.add(bx, (SECTOR >> 4) as u32)?;
    a.inc(si)?;
    a.jmp(next_sector)?;

    a.set_label(&mut loaded)?;
    a.cli()?;
    a.xor(ax, ax)?;
    a.mov(ds, ax)?;
    a.mov(es, ax)?;
    a.jmp(u64::from(MAIN_ADDR))?;

    a.set_label(&mut failed)?;
    for byte in b"bt86 boot: disk read failed\n" {
        a.mov(al, u32::from(*byte))?;
        a.out(DEBUGCON, al)?;
    }
    a.mov(al, 1)?;
    a.out(DEBUG_EXIT, al)?;
    a.cli()?;
    a.hlt()?;

    let mut sector = a.assemble(u64::from(LOAD_ADDR))?;
    // Keep the partition table area (446..510) zero so nothing mistakes code for partitions.
    assert!(sector.len() <= 446, "boot sector code is {} bytes", sector.len());
    sector.resize(SECTOR, 0);
    sector[510] = 0x55;
    sector[511] = 0xAA;
    Ok(sector)
}

/// A 1.44 MB floppy image that boots `image` under a PC BIOS (QEMU: `-drive
/// file=…,format=raw,if=floppy`). Meant for this crate's images, which start with the boot
/// sector described in this module's header; any other image is simply padded.
pub fn boot_disk(image: &Image) -> Vec<u8> {
    let mut disk = image.code.clone();
    disk.resize(disk.len().div_ceil(SECTOR).max(FLOPPY_SECTORS) * SECTOR, 0);
    disk
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asm::Asm;

    #[test]
    fn fast_path_is_nine_instructions() -> Asm {
        use iced_x86::{Decoder, DecoderOptions, Mnemonic};
        let sector = boot_sector(2, 0x7FFC)?;
        let mut decoder = Decoder::with_ip(16, &sector, u64::from(LOAD_ADDR), DecoderOptions::NONE);
        let mut count = 0;
        for instruction in &mut decoder {
            count += 1;
            if instruction.mnemonic() == Mnemonic::Je {
                assert_eq!(instruction.near_branch_target(), u64::from(MAIN_ADDR));
                break;
            }
        }
        assert_eq!(count, FAST_PATH_INSTRUCTIONS);
        Ok(())
    }

    #[test]
    fn images_are_bootable_sectors() -> Asm {
        let image = link("t", "t", &[0x90; 600])?;
        assert_eq!(image.code.len(), 3 * SECTOR);
        assert_eq!(&image.code[510..512], &[0x55, 0xAA]);
        assert_eq!(&image.code[3 * SECTOR - 4..], b"bt86");
        assert_eq!(boot_disk(&image).len(), FLOPPY_SECTORS * SECTOR);
        Ok(())
    }
}
