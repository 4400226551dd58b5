//! Guest-physical memory: RAM on a memmap2 mapping of an anonymous memory file (memfd), with
//! open-bus behaviour outside it.
//!
//! This module is one of the three places in bt86 allowed to hold `unsafe` (mapping guest RAM),
//! and the only one that hands out access to host memory backing the guest. Every access is
//! bounds-checked against the mapping, so no guest address can reach host memory outside it.
//!
//! RAM lives in a memfd rather than an anonymous mapping so that the same pages can later be
//! mapped a second time at guest-linear addresses (true shadow page tables); see DESIGN.md.
//!
//! Physical accesses outside RAM behave like an unterminated ISA bus on a PC: reads return all
//! ones and writes are dropped. (ROM and MMIO windows are added with the platform.)
//!
//! Pages written since the last [`GuestMemory::clear_dirty`] are tracked in a bitmap, so a
//! harness can reset exactly what a test touched.
//!
//! Code pages: a consumer that caches something derived from a page's bytes (the interpreter's
//! decode cache now, translated blocks later) marks the page with [`GuestMemory::mark_code`]
//! and remembers [`GuestMemory::page_gen`]. The first write to a marked page bumps its
//! generation and unmarks it, so every cached derivation of the old bytes is recognisably
//! stale. That is how self-modifying code is caught, at the cost of one bit test per write.

use std::fs::File;

use memmap2::MmapMut;
use thiserror::Error;

/// Guest page size (4 KiB, SDM Vol. 3A §4.3).
pub const PAGE_SIZE: usize = 4096;

/// Host-side failures while setting up guest memory.
#[derive(Debug, Error)]
pub enum MemoryError {
    /// The requested size is zero, not page-aligned or above 4 GiB.
    #[error("guest RAM size {size:#x} must be a non-zero multiple of 4 KiB and at most 4 GiB")]
    BadSize {
        /// The size asked for.
        size: u64,
    },
    /// The host refused to create or map the memory file.
    #[error("cannot create guest RAM of {size} bytes: {source}")]
    Host {
        /// The size asked for.
        size: u64,
        /// What the host said.
        source: std::io::Error,
    },
    /// An image does not fit in RAM at the requested address.
    #[error("{len} bytes at {addr:#x} do not fit in {ram} bytes of guest RAM")]
    OutOfRange {
        /// Start address.
        addr: u64,
        /// Number of bytes.
        len: u64,
        /// RAM size.
        ram: u64,
    },
}

/// Guest-physical RAM.
#[derive(Debug)]
pub struct GuestMemory {
    map: MmapMut,
    /// Keeps the memory file open for the life of the mapping (and for a second mapping later).
    _file: File,
    /// One bit per page written since the last `clear_dirty`.
    dirty: Vec<u64>,
    /// One bit per page that something derived from its bytes is cached for.
    code: Vec<u64>,
    /// Per page: bumped by the first write after `mark_code`.
    gens: Vec<u32>,
}

impl GuestMemory {
    /// Creates `size` bytes of zeroed RAM.
    pub fn new(size: u64) -> Result<GuestMemory, MemoryError> {
        if size == 0 || size % PAGE_SIZE as u64 != 0 || size > 1 << 32 {
            return Err(MemoryError::BadSize { size });
        }
        let host = |source| MemoryError::Host { size, source };
        let fd = rustix::fs::memfd_create("bt86-guest-ram", rustix::fs::MemfdFlags::CLOEXEC)
            .map_err(|e| host(e.into()))?;
        let file = File::from(fd);
        file.set_len(size).map_err(host)?;
        // SAFETY: the file is a memfd created just above and owned only by this struct; no other
        // process or mapping can truncate or resize it while `map` lives (we keep `_file` and
        // never call set_len again), so the mapped range stays valid for the mapping's lifetime.
        // All access goes through the `&[u8]`/`&mut [u8]` views of `MmapMut`, which borrow `self`.
        let map = unsafe { MmapMut::map_mut(&file) }.map_err(host)?;
        let pages = (size as usize).div_ceil(PAGE_SIZE);
        let words = pages.div_ceil(64);
        Ok(GuestMemory {
            map,
            _file: file,
            dirty: vec![0; words],
            code: vec![0; words],
            gens: vec![0; pages],
        })
    }

    /// RAM size in bytes.
    #[inline]
    pub fn size(&self) -> usize {
        self.map.len()
    }

    /// All of RAM, read-only.
    pub fn ram(&self) -> &[u8] {
        &self.map
    }

    #[inline]
    fn mark(&mut self, addr: usize) {
        let page = addr / PAGE_SIZE;
        let (word, bit) = (page / 64, 1u64 << (page % 64));
        self.dirty[word] |= bit;
        if self.code[word] & bit != 0 {
            self.code[word] &= !bit;
            self.gens[page] = self.gens[page].wrapping_add(1);
        }
    }

    /// Marks the page holding `addr` as one whose bytes something caches (see the module
    /// header). Outside RAM nothing is cached, so nothing is marked.
    #[inline]
    pub fn mark_code(&mut self, addr: u32) {
        let page = addr as usize / PAGE_SIZE;
        if page < self.gens.len() {
            self.code[page / 64] |= 1 << (page % 64);
        }
    }

    /// The generation of the page holding `addr` (changes when a marked page is written);
    /// `None` outside RAM.
    #[inline]
    pub fn page_gen(&self, addr: u32) -> Option<u32> {
        self.gens.get(addr as usize / PAGE_SIZE).copied()
    }

    /// Reads one byte; outside RAM reads 0xFF.
    #[inline]
    pub fn read_u8(&self, addr: u32) -> u8 {
        self.map.get(addr as usize).copied().unwrap_or(0xFF)
    }

    /// Writes one byte; outside RAM the write is dropped.
    #[inline]
    pub fn write_u8(&mut self, addr: u32, v: u8) {
        let a = addr as usize;
        if let Some(b) = self.map.get_mut(a) {
            *b = v;
            self.mark(a);
        }
    }

    /// Reads a little-endian value of `N` bytes (N ≤ 4) that does not wrap the 4 GiB space.
    #[inline]
    fn read_n<const N: usize>(&self, addr: u32) -> u32 {
        let a = addr as usize;
        match self.map.get(a..a + N) {
            Some(s) => {
                let mut b = [0u8; 4];
                b[..N].copy_from_slice(s);
                u32::from_le_bytes(b)
            }
            // Partly or wholly outside RAM: byte by byte; past 4 GiB is open bus, never a wrap.
            None => (0..N).fold(0, |acc, i| {
                let b = addr.checked_add(i as u32).map_or(0xFF, |a| self.read_u8(a));
                acc | u32::from(b) << (8 * i)
            }),
        }
    }

    #[inline]
    fn write_n<const N: usize>(&mut self, addr: u32, v: u32) {
        let a = addr as usize;
        let bytes = v.to_le_bytes();
        match self.map.get_mut(a..a + N) {
            Some(s) => {
                s.copy_from_slice(&bytes[..N]);
                self.mark(a);
                self.mark(a + N - 1);
            }
            None => {
                for (i, b) in bytes.iter().take(N).enumerate() {
                    if let Some(a) = addr.checked_add(i as u32) {
                        self.write_u8(a, *b);
                    }
                }
            }
        }
    }

    /// Reads a 16-bit little-endian value.
    #[inline]
    pub fn read_u16(&self, addr: u32) -> u16 {
        self.read_n::<2>(addr) as u16
    }

    /// Reads a 32-bit little-endian value.
    #[inline]
    pub fn read_u32(&self, addr: u32) -> u32 {
        self.read_n::<4>(addr)
    }

    /// Writes a 16-bit little-endian value.
    #[inline]
    pub fn write_u16(&mut self, addr: u32, v: u16) {
        self.write_n::<2>(addr, u32::from(v));
    }

    /// Writes a 32-bit little-endian value.
    #[inline]
    pub fn write_u32(&mut self, addr: u32, v: u32) {
        self.write_n::<4>(addr, v);
    }

    /// Copies an image into RAM (loaders, test harnesses). Fails if it does not fit.
    pub fn load(&mut self, addr: u64, data: &[u8]) -> Result<(), MemoryError> {
        let ram = self.size() as u64;
        let out_of_range = MemoryError::OutOfRange { addr, len: data.len() as u64, ram };
        match addr.checked_add(data.len() as u64) {
            Some(end) if end <= ram => {}
            _ => return Err(out_of_range),
        }
        let a = addr as usize;
        self.map[a..a + data.len()].copy_from_slice(data);
        for p in (a / PAGE_SIZE)..(a + data.len()).div_ceil(PAGE_SIZE) {
            self.mark(p * PAGE_SIZE);
        }
        Ok(())
    }

    /// Pages (by number) written since the last [`GuestMemory::clear_dirty`].
    pub fn dirty_pages(&self) -> impl Iterator<Item = usize> + '_ {
        self.dirty
            .iter()
            .enumerate()
            .flat_map(|(w, &bits)| (0..64).filter(move |b| bits & (1 << b) != 0).map(move |b| w * 64 + b))
    }

    /// Forgets which pages were written.
    pub fn clear_dirty(&mut self) {
        self.dirty.fill(0);
    }

    /// Zeroes every page written since the last clear, then clears the record.
    pub fn zero_dirty(&mut self) {
        let pages: Vec<usize> = self.dirty_pages().collect();
        for p in pages {
            let start = p * PAGE_SIZE;
            let end = (start + PAGE_SIZE).min(self.size());
            self.map[start..end].fill(0);
        }
        self.clear_dirty();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_round_trip_little_endian() {
        let mut m = GuestMemory::new(0x10000).unwrap();
        m.write_u32(0x100, 0x1234_5678);
        assert_eq!(m.read_u8(0x100), 0x78);
        assert_eq!(m.read_u16(0x102), 0x1234);
        assert_eq!(m.read_u32(0x100), 0x1234_5678);
    }

    #[test]
    fn outside_ram_is_open_bus() {
        let mut m = GuestMemory::new(0x1000).unwrap();
        m.write_u32(0xFFE, 0xAABB_CCDD); // straddles the end of RAM
        assert_eq!(m.read_u16(0xFFE), 0xCCDD);
        assert_eq!(m.read_u32(0xFFE), 0xFFFF_CCDD);
        assert_eq!(m.read_u32(0xFFFF_FFFE), 0xFFFF_FFFF);
        m.write_u32(0xFFFF_FFFE, 0xAABB_CCDD); // runs off the 4 GiB space: dropped, no wrap, no panic
        assert_eq!(m.read_u8(0), 0);
    }

    #[test]
    fn dirty_pages_are_tracked_and_reset() {
        let mut m = GuestMemory::new(0x10000).unwrap();
        m.write_u16(0x1FFF, 0xFFFF); // touches pages 1 and 2
        m.write_u8(0x5000, 1);
        assert_eq!(m.dirty_pages().collect::<Vec<_>>(), vec![1, 2, 5]);
        m.zero_dirty();
        assert_eq!(m.read_u16(0x1FFF), 0);
        assert_eq!(m.dirty_pages().count(), 0);
    }

    #[test]
    fn writes_to_code_pages_bump_their_generation_once() {
        let mut m = GuestMemory::new(0x10000).unwrap();
        let g = m.page_gen(0x2000).unwrap();
        m.write_u8(0x2000, 1); // not marked: no change
        assert_eq!(m.page_gen(0x2000), Some(g));
        m.mark_code(0x2345);
        m.write_u8(0x2FFF, 1);
        assert_eq!(m.page_gen(0x2000), Some(g.wrapping_add(1)));
        m.write_u8(0x2FFF, 2); // unmarked by the first write
        assert_eq!(m.page_gen(0x2000), Some(g.wrapping_add(1)));
        assert_eq!(m.page_gen(0x10000), None);
    }

    #[test]
    fn bad_sizes_and_images_are_errors() {
        assert!(matches!(GuestMemory::new(0), Err(MemoryError::BadSize { .. })));
        assert!(matches!(GuestMemory::new(100), Err(MemoryError::BadSize { .. })));
        let mut m = GuestMemory::new(0x1000).unwrap();
        assert!(matches!(m.load(0xFFF, &[1, 2]), Err(MemoryError::OutOfRange { .. })));
        assert!(matches!(m.load(u64::MAX, &[1]), Err(MemoryError::OutOfRange { .. })));
    }
}
