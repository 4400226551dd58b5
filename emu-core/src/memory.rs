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
//! Physical accesses outside RAM and ROM behave like an unterminated ISA bus on a PC: reads
//! return all ones and writes are dropped. (MMIO windows are added with the platform.)
//!
//! ROM ([`GuestMemory::map_rom`]): read-only regions of the physical map, such as a PC BIOS,
//! which is visible both just below 4 GiB and (its last 128 KiB) just below 1 MiB. A ROM region
//! costs RAM accesses almost nothing:
//!
//! - the part of a region that falls inside RAM is copied into RAM, and writes to it are
//!   dropped. Reads are RAM reads, unchanged. Writes pay one compare: every write whose first
//!   byte lies in `guard` (the span from 3 bytes below the lowest in-RAM ROM byte to the end of
//!   the highest) leaves the fast path and is done byte by byte, each byte checked against the
//!   exact ROM ranges;
//! - the part beyond RAM (the high BIOS copy) is a separate buffer, consulted only by accesses
//!   that already missed RAM, i.e. on the open-bus path.
//!
//! ROM regions are page-aligned and a whole number of pages, so a page is either all ROM or
//! all RAM: ROM pages never become dirty (their writes are dropped before any marking), and
//! [`GuestMemory::zero_dirty`] never touches them. Mapping a ROM bumps the generation of every
//! code-marked page it overwrites, like any other write.
//!
//! Pages written since the last [`GuestMemory::clear_dirty`] are tracked in a bitmap, so a
//! harness can reset exactly what a test touched.
//!
//! Code pages: a consumer that caches something derived from a page's bytes (the interpreter's
//! decode cache now, translated blocks later) marks the page with [`GuestMemory::mark_code`]
//! and remembers [`GuestMemory::page_gen`]. The first write to a marked page bumps its
//! generation and unmarks it, so every cached derivation of the old bytes is recognisably
//! stale. That is how self-modifying code is caught, at the cost of one bit test per write.
//!
//! Translated code (the `jit` crate) is tracked more finely, in 64-byte lines
//! ([`CODE_LINE`]): [`GuestMemory::mark_jit_code`] records which lines of a page hold bytes that
//! a translated block was made from. A write that touches such a line, by whatever path
//! (interpreter, callout, loader), is logged ([`GuestMemory::take_smc`]) so the translator can
//! drop the blocks made from it; writes to the other lines of the page cost nothing more.
//!
//! Host pages for the translator's inline TLB fast path: [`GuestMemory::host_page`] is the one
//! place that decides whether translated code may read or write a guest page directly, and
//! hands out the host address of the page as a plain number. A page may be written directly
//! only while every write to it would be invisible to this module's bookkeeping: it is RAM, not
//! ROM, already dirty, and nothing derived from its bytes is cached. Whenever one of those
//! conditions can become false for pages that were fine before, [`GuestMemory::protection_epoch`]
//! changes, and a translator must then forget what it knew.
//!
//! The direct-write map ([`GuestMemory::direct_writes`]): one byte per page of the 32-bit
//! physical space, in the same memory file right after RAM (so generated code reaches it at a
//! constant offset from the RAM base it already holds, for any 32-bit address, with no bound
//! check), set to 1 only while that page and the next are both RAM and directly writable in
//! the sense above. Translated code running with paging off checks it before a store instead
//! of probing the TLB. This module sets a page's byte when the page first becomes dirty and
//! when asked ([`GuestMemory::grant_direct_write`], from the translator's TLB refill), and
//! clears it itself wherever the epoch would change for that page, and for the page before it
//! (a store that starts there may end in it). Guest accesses never reach the map: every access
//! path is bounded by the RAM size.

use std::fs::File;

use memmap2::MmapMut;
use thiserror::Error;

/// Guest page size (4 KiB, SDM Vol. 3A §4.3).
pub const PAGE_SIZE: usize = 4096;

/// The largest ROM region [`GuestMemory::map_rom`] accepts (16 MiB: larger than any PC flash
/// part bt86 would model, and small enough to keep host memory use bounded).
pub const MAX_ROM_SIZE: u64 = 16 << 20;

/// End of the 32-bit physical address space.
const PHYS_END: u64 = 1 << 32;

/// Bytes in the direct-write map: one per page of the 32-bit physical space, so that any
/// 32-bit address indexes it (see the module header). Pages of the memory file that are never
/// written cost no host memory.
const DIRECT_MAP_LEN: usize = 1 << 20;

/// Granularity of self-modifying-code detection for translated code: 64 bytes, one bit per line
/// in a page's [`u64`] line mask.
pub const CODE_LINE: usize = 64;

/// Most written code lines remembered between two [`GuestMemory::take_smc`] calls; past that the
/// log only says "overflow" and the translator drops everything.
const SMC_LOG_MAX: usize = 256;

/// A guest page as translated code may access it directly (see the module header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostPage {
    /// Host address of the page's first byte (a number, not a pointer: only this module and the
    /// translator's generated code, under the translator's safety argument, turn it into
    /// accesses).
    pub addr: usize,
    /// Writes may bypass this module (RAM, not ROM, already dirty, no cached derivations).
    pub writable: bool,
}

/// Writes that touched translated code since the translator last looked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SmcLog {
    /// Physical addresses of the written 64-byte lines (line-aligned), in order, deduplicated
    /// against the previous entry.
    pub lines: Vec<u32>,
    /// More lines were written than the log holds: assume every line was.
    pub overflow: bool,
}

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
    /// A ROM image is empty, larger than [`MAX_ROM_SIZE`], or not a whole number of pages.
    #[error(
        "ROM image of {len} bytes: its size must be a non-zero multiple of 4 KiB and at most \
         16 MiB"
    )]
    RomSize {
        /// The image size.
        len: u64,
    },
    /// A ROM base address that is not page-aligned or that puts the region past 4 GiB.
    #[error(
        "ROM of {len} bytes at {base:#x}: the base must be 4 KiB-aligned and the region must \
         end at or below 4 GiB"
    )]
    RomPlacement {
        /// Requested base address.
        base: u64,
        /// Image size.
        len: u64,
    },
    /// Two ROM regions overlap, or an image load would write into a ROM region.
    #[error("{len} bytes at {base:#x} overlap the ROM at {rom_base:#x}..{rom_end:#x}")]
    RomOverlap {
        /// Start of the new region or load.
        base: u64,
        /// Its length.
        len: u64,
        /// Start of the ROM it overlaps.
        rom_base: u64,
        /// End (exclusive) of that ROM.
        rom_end: u64,
    },
}

/// A read-only region of the physical map (see the module header).
#[derive(Debug)]
struct Rom {
    /// First physical address.
    base: u64,
    /// One past the last physical address.
    end: u64,
    /// The bytes of the region that lie beyond RAM (from `max(base, RAM size)` to `end`);
    /// empty when the whole region is inside RAM (those bytes live in RAM).
    beyond_ram: Vec<u8>,
    /// Physical address of `beyond_ram[0]`.
    beyond_base: u64,
}

/// Guest-physical RAM.
#[derive(Debug)]
pub struct GuestMemory {
    /// RAM (`ram_len` bytes), then the direct-write map (one byte per page).
    map: MmapMut,
    /// RAM size in bytes.
    ram_len: usize,
    /// Keeps the memory file open for the life of the mapping (and for a second mapping later).
    _file: File,
    /// One bit per page written since the last `clear_dirty`.
    dirty: Vec<u64>,
    /// One bit per page that something derived from its bytes is cached for.
    code: Vec<u64>,
    /// Per page: bumped by the first write after `mark_code`.
    gens: Vec<u32>,
    /// Per page: which 64-byte lines hold bytes translated code was made from.
    jit_lines: Vec<u64>,
    /// One bit per page with a non-zero `jit_lines` entry (so `mark` tests one word).
    jit_pages: Vec<u64>,
    /// Lines of translated code written since the last `take_smc`.
    smc: SmcLog,
    /// Changes whenever a page may stop being directly writable (see the module header).
    epoch: u64,
    /// Writes whose first byte `a` has `a - guard_lo < guard_len` (wrapping) may touch ROM
    /// inside RAM and take the checked path; `guard_len` is 0 while no ROM is inside RAM.
    guard_lo: usize,
    /// See `guard_lo`.
    guard_len: usize,
    /// Every ROM region, in mapping order.
    roms: Vec<Rom>,
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
        let pages = (size as usize).div_ceil(PAGE_SIZE);
        file.set_len(size + DIRECT_MAP_LEN as u64).map_err(host)?;
        // The file is a memfd created just above and owned only by this struct: nothing else can
        // truncate or resize it while the mapping lives (`_file` is kept, set_len is never called
        // again), and every access goes through `MmapMut`'s slices, which borrow `self`.
        // SAFETY: the mapped range stays valid and unaliased for the mapping's lifetime.
        let map = unsafe { MmapMut::map_mut(&file) }.map_err(host)?;
        let words = pages.div_ceil(64);
        Ok(GuestMemory {
            map,
            ram_len: size as usize,
            _file: file,
            dirty: vec![0; words],
            code: vec![0; words],
            gens: vec![0; pages],
            jit_lines: vec![0; pages],
            jit_pages: vec![0; words],
            smc: SmcLog::default(),
            epoch: 0,
            guard_lo: 0,
            guard_len: 0,
            roms: Vec::new(),
        })
    }

    /// RAM size in bytes.
    #[inline]
    pub fn size(&self) -> usize {
        self.ram_len
    }

    /// All of RAM, read-only.
    pub fn ram(&self) -> &[u8] {
        &self.map[..self.ram_len]
    }

    /// All of RAM.
    fn ram_mut(&mut self) -> &mut [u8] {
        &mut self.map[..self.ram_len]
    }

    /// Page `page` may be written without this module seeing it (see the module header).
    fn page_writable(&self, page: usize) -> bool {
        let a = page * PAGE_SIZE;
        if a + PAGE_SIZE > self.size() {
            return false;
        }
        let (word, bit) = (page / 64, 1u64 << (page % 64));
        let guarded =
            self.guard_len != 0 && a < self.guard_lo + self.guard_len && self.guard_lo < a + PAGE_SIZE;
        self.dirty[word] & bit != 0
            && (self.code[word] | self.jit_pages[word]) & bit == 0
            && !guarded
            && !self.is_rom(a as u32)
    }

    /// Sets the direct-write bytes that page `addr` being writable may allow: its own and the
    /// previous page's, each if that page and the next are directly writable (so RAM's last
    /// page never is: a store there may run past RAM). Asked when a page first becomes dirty,
    /// and when the translator refills its TLB view for it.
    #[cold]
    pub fn grant_direct_write(&mut self, addr: u32) {
        let page = addr as usize / PAGE_SIZE;
        for p in page.saturating_sub(1)..=page {
            if p + 1 < self.size() / PAGE_SIZE && self.page_writable(p) && self.page_writable(p + 1) {
                let at = self.ram_len + p;
                self.map[at] = 1;
            }
        }
    }

    /// Clears the direct-write bytes that depend on page `page` (its own and the previous
    /// page's).
    fn revoke_direct_write(&mut self, page: usize) {
        let at = self.ram_len + page;
        if page < self.size() / PAGE_SIZE {
            self.map[at] = 0;
            if page > 0 {
                self.map[at - 1] = 0;
            }
        }
    }

    /// Where the direct-write map starts, as an offset from the RAM base (see the module
    /// header); `None` when it is too far for a 32-bit displacement.
    pub fn direct_writes(&self) -> Option<i32> {
        i32::try_from(self.ram_len).ok()
    }

    /// The direct-write byte of the page holding `addr` (0 outside RAM).
    #[cfg(test)]
    fn direct_write_granted(&self, addr: u32) -> bool {
        self.map[self.ram_len + addr as usize / PAGE_SIZE] != 0
    }

    #[inline]
    fn mark(&mut self, addr: usize) {
        let page = addr / PAGE_SIZE;
        let (word, bit) = (page / 64, 1u64 << (page % 64));
        let dirty = self.dirty[word];
        if dirty & bit == 0 {
            self.dirty[word] = dirty | bit;
            self.grant_direct_write((page * PAGE_SIZE) as u32);
        }
        if (self.code[word] | self.jit_pages[word]) & bit != 0 {
            self.mark_code_write(addr);
        }
    }

    /// A write to a page something caches derivations of: the decode cache's generation bump,
    /// and the SMC log when the written line holds translated code.
    #[cold]
    fn mark_code_write(&mut self, addr: usize) {
        let page = addr / PAGE_SIZE;
        let (word, bit) = (page / 64, 1u64 << (page % 64));
        if self.code[word] & bit != 0 {
            self.code[word] &= !bit;
            self.gens[page] = self.gens[page].wrapping_add(1);
        }
        let line = 1u64 << ((addr % PAGE_SIZE) / CODE_LINE);
        if self.jit_lines[page] & line != 0 {
            let line_addr = (addr & !(CODE_LINE - 1)) as u32;
            if self.smc.lines.last() != Some(&line_addr) {
                if self.smc.lines.len() < SMC_LOG_MAX {
                    self.smc.lines.push(line_addr);
                } else {
                    self.smc.overflow = true;
                }
            }
        }
    }

    /// Makes cached derivations of page `page` stale without marking it dirty (ROM contents
    /// arriving from the host, not from the guest).
    fn invalidate_code(&mut self, page: usize) {
        let (word, bit) = (page / 64, 1u64 << (page % 64));
        if self.code[word] & bit != 0 {
            self.code[word] &= !bit;
            self.gens[page] = self.gens[page].wrapping_add(1);
        }
        self.log_jit_lines(page * PAGE_SIZE, PAGE_SIZE);
    }

    /// Logs every line of translated code in the `len` bytes at RAM offset `a` as written (the
    /// host replaced them wholesale).
    fn log_jit_lines(&mut self, a: usize, len: usize) {
        let end = (a + len).min(self.size());
        let mut line = a & !(CODE_LINE - 1);
        while line < end {
            let page = line / PAGE_SIZE;
            if self.jit_lines[page] == 0 {
                line = (page + 1) * PAGE_SIZE;
                continue;
            }
            if self.jit_lines[page] & (1 << ((line % PAGE_SIZE) / CODE_LINE)) != 0 {
                if self.smc.lines.len() < SMC_LOG_MAX {
                    self.smc.lines.push(line as u32);
                } else {
                    self.smc.overflow = true;
                }
            }
            line += CODE_LINE;
        }
    }

    /// True when a write whose first byte is at RAM offset `a` may touch ROM (one compare).
    #[inline]
    fn write_guarded(&self, a: usize) -> bool {
        a.wrapping_sub(self.guard_lo) < self.guard_len
    }

    /// Whether physical address `addr` is ROM (reads see the ROM, writes are dropped).
    pub fn is_rom(&self, addr: u32) -> bool {
        let a = u64::from(addr);
        self.roms.iter().any(|r| (r.base..r.end).contains(&a))
    }

    /// Reads a byte that is not in RAM: ROM beyond RAM, or open bus.
    #[cold]
    fn read_beyond_ram(&self, addr: u32) -> u8 {
        let a = u64::from(addr);
        for r in &self.roms {
            if a >= r.beyond_base && a < r.end {
                return r.beyond_ram[(a - r.beyond_base) as usize];
            }
        }
        0xFF
    }

    /// Writes one byte at RAM offset `a` unless it is ROM (the slow path of guarded writes).
    #[cold]
    fn write_checked(&mut self, a: usize, v: u8) {
        if !self.is_rom(a as u32) {
            self.ram_mut()[a] = v;
            self.mark(a);
        }
    }

    /// Maps `data` read-only at physical address `base` (see the module header). The part
    /// inside RAM is copied into RAM and write-protected; the part beyond RAM is kept in a
    /// buffer of its own. Fails if the size is not a non-zero multiple of 4 KiB up to
    /// [`MAX_ROM_SIZE`], if `base` is not 4 KiB-aligned or the region passes 4 GiB, or if it
    /// overlaps a ROM mapped before.
    pub fn map_rom(&mut self, base: u64, data: &[u8]) -> Result<(), MemoryError> {
        let len = data.len() as u64;
        let page = PAGE_SIZE as u64;
        if len == 0 || len % page != 0 || len > MAX_ROM_SIZE {
            return Err(MemoryError::RomSize { len });
        }
        let end = match base.checked_add(len) {
            Some(end) if base % page == 0 && end <= PHYS_END => end,
            _ => return Err(MemoryError::RomPlacement { base, len }),
        };
        if let Some(r) = self.roms.iter().find(|r| base < r.end && r.base < end) {
            return Err(MemoryError::RomOverlap { base, len, rom_base: r.base, rom_end: r.end });
        }
        let ram = self.size() as u64;
        // Inside RAM: copy in, then guard the span.
        if base < ram {
            let (lo, hi) = (base as usize, end.min(ram) as usize);
            self.ram_mut()[lo..hi].copy_from_slice(&data[..hi - lo]);
            for p in lo / PAGE_SIZE..hi / PAGE_SIZE {
                self.invalidate_code(p);
                self.revoke_direct_write(p);
                // Written before it became ROM: no longer the guest's to reset.
                self.dirty[p / 64] &= !(1 << (p % 64));
            }
            let guard_start = lo.saturating_sub(3);
            let (new_lo, new_hi) = if self.guard_len == 0 {
                (guard_start, hi)
            } else {
                (self.guard_lo.min(guard_start), (self.guard_lo + self.guard_len).max(hi))
            };
            self.guard_lo = new_lo;
            self.guard_len = new_hi - new_lo;
        }
        let beyond_base = base.max(ram);
        let beyond_ram =
            if end > beyond_base { data[(beyond_base - base) as usize..].to_vec() } else { Vec::new() };
        self.roms.push(Rom { base, end, beyond_ram, beyond_base });
        Ok(())
    }

    /// Marks the page holding `addr` as one whose bytes something caches (see the module
    /// header). Outside RAM nothing is cached, so nothing is marked.
    #[inline]
    pub fn mark_code(&mut self, addr: u32) {
        let page = addr as usize / PAGE_SIZE;
        if page < self.gens.len() {
            let (word, bit) = (page / 64, 1u64 << (page % 64));
            if self.code[word] & bit == 0 {
                self.code[word] |= bit;
                // The page may have been directly writable: it no longer is.
                self.epoch = self.epoch.wrapping_add(1);
                self.revoke_direct_write(page);
            }
        }
    }

    /// Records that translated code was made from the `len` bytes at `addr` (which must not
    /// cross a page): writes to their 64-byte lines will be logged. Outside RAM nothing is.
    pub fn mark_jit_code(&mut self, addr: u32, len: u32) {
        let page = addr as usize / PAGE_SIZE;
        if page >= self.jit_lines.len() || len == 0 {
            return;
        }
        let first = (addr as usize % PAGE_SIZE) / CODE_LINE;
        let last = ((addr as usize % PAGE_SIZE) + len as usize - 1).min(PAGE_SIZE - 1) / CODE_LINE;
        let mask = (u64::MAX >> (63 - (last - first))) << first;
        self.jit_lines[page] |= mask;
        self.jit_pages[page / 64] |= 1 << (page % 64);
        self.revoke_direct_write(page);
    }

    /// Replaces the translated-code line mask of the page holding `addr` (the translator
    /// recomputes it after dropping blocks). Outside RAM nothing happens.
    pub fn set_jit_lines(&mut self, addr: u32, lines: u64) {
        let page = addr as usize / PAGE_SIZE;
        if page >= self.jit_lines.len() {
            return;
        }
        self.jit_lines[page] = lines;
        if lines == 0 {
            self.jit_pages[page / 64] &= !(1 << (page % 64));
        } else {
            self.jit_pages[page / 64] |= 1 << (page % 64);
            self.revoke_direct_write(page);
        }
    }

    /// Forgets every translated-code line (the translator flushed its cache) and the log.
    pub fn clear_jit_code(&mut self) {
        self.jit_lines.fill(0);
        self.jit_pages.fill(0);
        self.smc = SmcLog::default();
    }

    /// The translated-code line mask of the page holding `addr` (0 outside RAM).
    pub fn jit_lines(&self, addr: u32) -> u64 {
        self.jit_lines.get(addr as usize / PAGE_SIZE).copied().unwrap_or(0)
    }

    /// Whether any of the `len` bytes at `addr` (not crossing a page) lies in a line of
    /// translated code.
    #[inline]
    pub fn touches_jit_code(&self, addr: u32, len: u32) -> bool {
        let lines = self.jit_lines(addr);
        if lines == 0 || len == 0 {
            return false;
        }
        let off = addr as usize % PAGE_SIZE;
        let first = off / CODE_LINE;
        let last = (off + len as usize - 1).min(PAGE_SIZE - 1) / CODE_LINE;
        (first..=last).any(|l| lines & (1 << l) != 0)
    }

    /// Whether a write to translated code was logged since the last [`GuestMemory::take_smc`].
    #[inline]
    pub fn smc_pending(&self) -> bool {
        !self.smc.lines.is_empty() || self.smc.overflow
    }

    /// Takes the log of writes to translated code.
    pub fn take_smc(&mut self) -> SmcLog {
        std::mem::take(&mut self.smc)
    }

    /// Changes whenever a page that [`GuestMemory::host_page`] called writable may have stopped
    /// being so (a page became code-marked, dirty bits were cleared).
    #[inline]
    pub fn protection_epoch(&self) -> u64 {
        self.epoch
    }

    /// The host address of the RAM page at `page_addr` (page-aligned) and whether it may be
    /// written directly; `None` for pages not wholly in RAM (see the module header).
    pub fn host_page(&self, page_addr: u32) -> Option<HostPage> {
        let a = page_addr as usize & !(PAGE_SIZE - 1);
        if a + PAGE_SIZE > self.size() {
            return None;
        }
        let writable = self.page_writable(a / PAGE_SIZE);
        Some(HostPage { addr: self.map.as_ptr() as usize + a, writable })
    }

    /// The host address of guest-physical 0 and how many bytes from there translated code may
    /// read directly (all of RAM: ROM inside RAM lives in RAM, and there are no MMIO holes yet;
    /// an MMIO window added inside RAM must shorten this). The address is a number: see
    /// [`HostPage`].
    pub fn direct_reads(&self) -> (usize, u32) {
        (self.map.as_ptr() as usize, self.size().min(u32::MAX as usize) as u32)
    }

    /// A copy of this memory: RAM contents, ROM regions and all bookkeeping, in a memory file of
    /// its own (lockstep execution runs a second CPU on it).
    pub fn try_clone(&self) -> Result<GuestMemory, MemoryError> {
        let mut m = GuestMemory::new(self.size() as u64)?;
        m.ram_mut().copy_from_slice(self.ram());
        m.dirty.clone_from(&self.dirty);
        m.code.clone_from(&self.code);
        m.gens.clone_from(&self.gens);
        m.jit_lines.clone_from(&self.jit_lines);
        m.jit_pages.clone_from(&self.jit_pages);
        m.smc = self.smc.clone();
        m.epoch = self.epoch;
        m.guard_lo = self.guard_lo;
        m.guard_len = self.guard_len;
        m.roms = self
            .roms
            .iter()
            .map(|r| Rom {
                base: r.base,
                end: r.end,
                beyond_ram: r.beyond_ram.clone(),
                beyond_base: r.beyond_base,
            })
            .collect();
        Ok(m)
    }

    /// The generation of the page holding `addr` (changes when a marked page is written);
    /// `None` outside RAM.
    #[inline]
    pub fn page_gen(&self, addr: u32) -> Option<u32> {
        self.gens.get(addr as usize / PAGE_SIZE).copied()
    }

    /// Reads one byte; outside RAM and ROM reads 0xFF.
    #[inline]
    pub fn read_u8(&self, addr: u32) -> u8 {
        match self.ram().get(addr as usize) {
            Some(b) => *b,
            None => self.read_beyond_ram(addr),
        }
    }

    /// Writes one byte; outside RAM, and to ROM, the write is dropped.
    #[inline]
    pub fn write_u8(&mut self, addr: u32, v: u8) {
        let a = addr as usize;
        if self.write_guarded(a) {
            if a < self.size() {
                self.write_checked(a, v);
            }
            return;
        }
        if let Some(b) = self.ram_mut().get_mut(a) {
            *b = v;
            self.mark(a);
        }
    }

    /// Reads a little-endian value of `N` bytes (N ≤ 4) that does not wrap the 4 GiB space.
    #[inline]
    fn read_n<const N: usize>(&self, addr: u32) -> u32 {
        let a = addr as usize;
        match self.ram().get(a..a + N) {
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
        // A write that may touch ROM goes byte by byte (the guard starts 3 bytes early, so
        // one compare on the first byte covers every byte of an up-to-4-byte write).
        let fast = if self.write_guarded(a) { None } else { self.ram_mut().get_mut(a..a + N) };
        match fast {
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

    /// Whether a write to `[a, a + len)` may touch ROM inside RAM.
    fn range_guarded(&self, a: usize, len: usize) -> bool {
        self.guard_len != 0 && a < self.guard_lo + self.guard_len && self.guard_lo < a + len
    }

    /// Marks every 64-byte line of `[a, a + len)` written (dirty pages, code watches).
    fn mark_range(&mut self, a: usize, len: usize) {
        let mut line = a & !(CODE_LINE - 1);
        while line < a + len {
            self.mark(line.max(a));
            line += CODE_LINE;
        }
    }

    /// A string instruction's run: copies `len` bytes of RAM from `src` to `dst` in one go,
    /// as writes of the same bytes in order would (dirty pages, code watches). Declines
    /// (false, nothing done) when either range leaves RAM, the destination may hold ROM, or
    /// the destination starts inside the source (an element-by-element copy would then read
    /// what it wrote: the caller goes element by element).
    pub fn copy_run(&mut self, dst: u32, src: u32, len: u32) -> bool {
        let (d, s, n) = (dst as usize, src as usize, len as usize);
        if (d > s && d < s + n) || d + n > self.size() || s + n > self.size() || self.range_guarded(d, n) {
            return false;
        }
        self.ram_mut().copy_within(s..s + n, d);
        self.mark_range(d, n);
        true
    }

    /// A string instruction's run: `count` little-endian copies of the low `elem` bytes of
    /// `v` from `dst` on, as those writes would; declines (false) as [`GuestMemory::copy_run`].
    pub fn fill_run(&mut self, dst: u32, v: u32, elem: u32, count: u32) -> bool {
        let (d, e, n) = (dst as usize, elem as usize, (elem * count) as usize);
        if d + n > self.size() || self.range_guarded(d, n) || !matches!(e, 1 | 2 | 4) {
            return false;
        }
        let bytes = v.to_le_bytes();
        for chunk in self.ram_mut()[d..d + n].chunks_exact_mut(e) {
            chunk.copy_from_slice(&bytes[..e]);
        }
        self.mark_range(d, n);
        true
    }

    /// Copies an image into RAM (loaders, test harnesses). Fails if it does not fit or would
    /// overwrite ROM.
    pub fn load(&mut self, addr: u64, data: &[u8]) -> Result<(), MemoryError> {
        let ram = self.size() as u64;
        let len = data.len() as u64;
        let out_of_range = MemoryError::OutOfRange { addr, len, ram };
        let end = match addr.checked_add(len) {
            Some(end) if end <= ram => end,
            _ => return Err(out_of_range),
        };
        if let Some(r) = self.roms.iter().find(|r| addr < r.end && r.base < end) {
            return Err(MemoryError::RomOverlap { base: addr, len, rom_base: r.base, rom_end: r.end });
        }
        let a = addr as usize;
        self.ram_mut()[a..a + data.len()].copy_from_slice(data);
        for p in (a / PAGE_SIZE)..(a + data.len()).div_ceil(PAGE_SIZE) {
            self.mark(p * PAGE_SIZE);
        }
        self.log_jit_lines(a, data.len());
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
        // Directly writable pages must be dirty: none is any more.
        self.epoch = self.epoch.wrapping_add(1);
        let ram = self.ram_len;
        self.map[ram..].fill(0);
    }

    /// Zeroes every page written since the last clear, then clears the record.
    pub fn zero_dirty(&mut self) {
        let pages: Vec<usize> = self.dirty_pages().collect();
        for p in pages {
            let start = p * PAGE_SIZE;
            let end = (start + PAGE_SIZE).min(self.size());
            self.ram_mut()[start..end].fill(0);
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

    /// A ROM image whose every byte tells its offset: byte i = (i ^ i >> 8 ^ i >> 16) as u8.
    fn rom_bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i ^ (i >> 8) ^ (i >> 16)) as u8).collect()
    }

    #[test]
    fn bios_layout_is_readable_at_both_addresses_and_read_only() {
        let mut m = GuestMemory::new(2 << 20).unwrap();
        let rom = rom_bytes(256 << 10);
        m.write_u8(0xF_0000, 0x11); // RAM contents before the ROM arrives are replaced
        m.map_rom((1 << 32) - rom.len() as u64, &rom).unwrap();
        let low = &rom[rom.len() - (128 << 10)..];
        m.map_rom(0x10_0000 - low.len() as u64, low).unwrap();
        // High copy: the whole image ends at 4 GiB; the reset vector is its last 16 bytes.
        assert_eq!(m.read_u8(0xFFFC_0000), rom[0]);
        assert_eq!(
            m.read_u32(0xFFFF_FFF0),
            u32::from_le_bytes(rom[rom.len() - 16..][..4].try_into().unwrap())
        );
        assert_eq!(m.read_u8(0xFFFF_FFFF), rom[rom.len() - 1]);
        // Low copy: the last 128 KiB end at 1 MiB.
        assert_eq!(m.read_u8(0xE_0000), low[0]);
        assert_eq!(m.read_u16(0xF_FFFE), u16::from_le_bytes([low[low.len() - 2], low[low.len() - 1]]));
        // Writes to either copy are dropped, including ones that straddle RAM and ROM.
        m.write_u32(0xF_0000, 0xDEAD_BEEF);
        m.write_u8(0xE_0000, 0);
        m.write_u32(0xFFFF_FFF0, 0);
        assert_eq!(m.read_u8(0xF_0000), low[0x1_0000]);
        assert_eq!(m.read_u8(0xE_0000), low[0]);
        assert_eq!(m.read_u8(0xFFFF_FFF0), rom[rom.len() - 16]);
        m.write_u32(0xD_FFFE, 0xAABB_CCDD);
        assert_eq!(m.read_u16(0xD_FFFE), 0xCCDD, "the RAM half of a straddling write lands");
        assert_eq!(m.read_u16(0xE_0000), u16::from_le_bytes([low[0], low[1]]), "the ROM half does not");
        m.write_u32(0xF_FFFE, 0x1234_5678); // ROM then RAM above 1 MiB
        assert_eq!(m.read_u16(0x10_0000), 0x1234);
        assert_eq!(m.read_u16(0xF_FFFE), u16::from_le_bytes([low[low.len() - 2], low[low.len() - 1]]));
        // Between the copies: RAM up to its end, then open bus up to the high copy.
        m.write_u8(0x1F_FFFF, 7);
        assert_eq!(m.read_u8(0x1F_FFFF), 7);
        assert_eq!(m.read_u32(0x20_0000), 0xFFFF_FFFF);
        assert_eq!(m.read_u8(0xFFFB_FFFF), 0xFF);
        assert_eq!(m.read_u32(0xFFFB_FFFE), 0xFFFF | u32::from(u16::from_le_bytes([rom[0], rom[1]])) << 16);
        assert!(m.is_rom(0xE_0000) && m.is_rom(0xFFFF_FFFF) && !m.is_rom(0xD_FFFF) && !m.is_rom(0x10_0000));
    }

    #[test]
    fn rom_pages_are_never_dirty_and_survive_zero_dirty() {
        let mut m = GuestMemory::new(1 << 20).unwrap();
        m.write_u8(0xF_8000, 1); // dirty before it becomes ROM
        let rom = rom_bytes(64 << 10);
        m.map_rom(0xF_0000, &rom).unwrap();
        m.write_u8(0xF_0010, 0);
        m.write_u8(0xE_FFFF, 9);
        assert_eq!(m.dirty_pages().collect::<Vec<_>>(), vec![0xEF]);
        m.zero_dirty();
        assert_eq!(m.read_u8(0xE_FFFF), 0);
        assert_eq!(m.read_u8(0xF_8000), rom[0x8000]);
        assert_eq!(m.read_u8(0xF_0010), rom[0x10]);
    }

    #[test]
    fn mapping_rom_over_code_pages_bumps_their_generation() {
        let mut m = GuestMemory::new(1 << 20).unwrap();
        m.mark_code(0xF_0000);
        let g = m.page_gen(0xF_0000).unwrap();
        m.map_rom(0xF_0000, &rom_bytes(0x1000)).unwrap();
        assert_eq!(m.page_gen(0xF_0000), Some(g.wrapping_add(1)));
    }

    #[test]
    fn rom_straddling_the_end_of_ram_is_split() {
        // 1 MiB of ROM at 0x80000 with 768 KiB of RAM: half in RAM, half in its own buffer.
        let mut m = GuestMemory::new(0xC_0000).unwrap();
        let rom = rom_bytes(0x8_0000);
        m.map_rom(0x8_0000, &rom).unwrap();
        for a in [0x8_0000u32, 0xB_FFFF, 0xC_0000, 0xF_FFFF] {
            assert_eq!(m.read_u8(a), rom[a as usize - 0x8_0000], "{a:#x}");
        }
        assert_eq!(
            m.read_u32(0xB_FFFE),
            u32::from_le_bytes(rom[0x3_FFFE..0x4_0002].try_into().unwrap()),
            "a read across the end of RAM sees both halves"
        );
        m.write_u32(0xB_FFFE, 0);
        assert_eq!(m.read_u8(0xB_FFFF), rom[0x3_FFFF]);
        assert_eq!(m.read_u8(0x10_0000), 0xFF);
    }

    #[test]
    fn rom_errors_name_the_problem() {
        let mut m = GuestMemory::new(1 << 20).unwrap();
        let e = m.map_rom(0xF_0000, &[]).unwrap_err();
        assert!(matches!(e, MemoryError::RomSize { len: 0 }), "{e}");
        let e = m.map_rom(0xF_0000, &[0; 100]).unwrap_err();
        assert!(e.to_string().contains("multiple of 4 KiB"), "{e}");
        let big = vec![0; (MAX_ROM_SIZE + 4096) as usize];
        assert!(matches!(m.map_rom(0, &big), Err(MemoryError::RomSize { .. })));
        assert!(matches!(m.map_rom(0xF_0800, &[0; 4096]), Err(MemoryError::RomPlacement { .. })));
        let e = m.map_rom(0xFFFF_F000, &[0; 8192]).unwrap_err();
        assert!(e.to_string().contains("end at or below 4 GiB"), "{e}");
        m.map_rom(0xF_0000, &[0; 0x1_0000]).unwrap();
        let e = m.map_rom(0xE_F000, &[0; 0x2000]).unwrap_err();
        assert!(matches!(e, MemoryError::RomOverlap { rom_base: 0xF_0000, rom_end: 0x10_0000, .. }), "{e}");
        let e = m.load(0xE_FFFF, &[1, 2]).unwrap_err();
        assert!(matches!(e, MemoryError::RomOverlap { .. }), "{e}");
        assert_eq!(m.read_u8(0xE_FFFF), 0, "a refused load writes nothing");
        m.map_rom(0xE_F000, &[0; 0x1000]).unwrap(); // adjacent is fine
    }

    #[test]
    fn ram_between_two_in_ram_roms_stays_writable() {
        let mut m = GuestMemory::new(1 << 20).unwrap();
        m.map_rom(0xC_0000, &rom_bytes(0x8000)).unwrap();
        m.map_rom(0xF_0000, &rom_bytes(0x1_0000)).unwrap();
        m.write_u32(0xD_0000, 0x0102_0304);
        assert_eq!(m.read_u32(0xD_0000), 0x0102_0304);
        m.write_u16(0xB_FFFF, 0xAAAA);
        assert_eq!(m.read_u8(0xB_FFFF), 0xAA);
        assert_eq!(m.read_u8(0xC_0000), 0);
    }

    #[test]
    fn direct_writes_are_granted_only_while_the_page_and_the_next_are_writable() {
        let mut m = GuestMemory::new(0x10000).unwrap();
        assert_eq!(m.direct_writes(), Some(0x10000));
        // Clean pages are not writable directly (their first write must mark them dirty).
        m.grant_direct_write(0x3000);
        assert!(!m.direct_write_granted(0x3000));
        m.write_u8(0x3000, 1);
        m.grant_direct_write(0x3000);
        assert!(!m.direct_write_granted(0x3000), "the next page is still clean");
        m.write_u8(0x4000, 1);
        m.grant_direct_write(0x3000);
        m.grant_direct_write(0x4000);
        assert!(m.direct_write_granted(0x3000) && !m.direct_write_granted(0x4000));
        // Code in the next page takes the grant away (a store may straddle into it).
        m.write_u8(0x5000, 1);
        m.grant_direct_write(0x4000);
        assert!(m.direct_write_granted(0x4000));
        m.mark_jit_code(0x4010, 4);
        assert!(!m.direct_write_granted(0x3000) && !m.direct_write_granted(0x4000));
        m.set_jit_lines(0x4000, 0);
        m.grant_direct_write(0x3000);
        assert!(m.direct_write_granted(0x3000));
        m.mark_code(0x4000);
        assert!(!m.direct_write_granted(0x3000));
        // RAM's last page never is (a store there may run past RAM); clearing the dirty record
        // takes every grant away.
        m.write_u8(0xE000, 1);
        m.write_u8(0xF000, 1);
        m.grant_direct_write(0xF000);
        assert!(m.direct_write_granted(0xE000) && !m.direct_write_granted(0xF000));
        m.clear_dirty();
        assert!(!m.direct_write_granted(0xE000));
        // Past RAM the map reads 0, up to the end of the 32-bit space.
        assert!(!m.direct_write_granted(0x1_0000) && !m.direct_write_granted(0xFFFF_FFFF));
        // ROM, and the RAM page just below it, are never granted.
        let mut m = GuestMemory::new(0x10000).unwrap();
        for p in (0..0x10000).step_by(PAGE_SIZE) {
            m.write_u8(p, 1);
        }
        m.grant_direct_write(0xB000);
        m.grant_direct_write(0xC000);
        assert!(m.direct_write_granted(0xB000) && m.direct_write_granted(0xC000));
        m.map_rom(0xC000, &rom_bytes(0x1000)).unwrap();
        m.grant_direct_write(0xB000);
        m.grant_direct_write(0xC000);
        assert!(!m.direct_write_granted(0xB000) && !m.direct_write_granted(0xC000));
    }

    #[test]
    fn guest_accesses_never_reach_the_direct_write_map() {
        let mut m = GuestMemory::new(0x2000).unwrap();
        m.write_u8(0x1000, 1);
        m.write_u8(0x0, 1);
        assert!(m.direct_write_granted(0));
        // Just past RAM is where the map lives: open bus for the guest, map unchanged.
        assert_eq!(m.read_u32(0x2000), 0xFFFF_FFFF);
        m.write_u32(0x1FFE, 0);
        m.write_u32(0x2000, 0x0101_0101);
        m.write_u8(0x2001, 1);
        assert!(!m.copy_run(0x2000, 0, 2) && !m.fill_run(0x2000, 0x0101_0101, 1, 2));
        assert!(m.load(0x2000, &[1]).is_err());
        assert_eq!(m.ram().len(), 0x2000);
        assert!(m.direct_write_granted(0) && !m.direct_write_granted(0x1000));
        assert!(!m.direct_write_granted(0x2000) && !m.direct_write_granted(0x3000));
        // A clone starts with nothing granted.
        assert!(!m.try_clone().unwrap().direct_write_granted(0));
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
