//! The software TLB — bt86's *shadow page table*: a direct-mapped cache of linear-page →
//! physical-page translations with their permissions, filled from [`crate::paging::walk`].
//!
//! Follows Intel SDM Vol. 3A §4.10 "Caching Translation Information":
//! - §4.10.2: a TLB entry caches the physical frame and the combined rights of a translation,
//!   and is created only from entries whose accessed flag the walk has set; a write is cached
//!   only once the dirty flag is set (§4.8), so the first write to a clean page misses and the
//!   walk sets D;
//! - §4.10.2.3: a processor may cache a large page as several smaller-page entries; INVLPG
//!   and page faults must then drop them all;
//! - §4.10.2.4: translations from G=1 entries are global when CR4.PGE=1 and survive CR3 writes;
//! - §4.10.4.1: INVLPG drops the translations of one page (global or not), MOV to CR3 drops the
//!   non-global ones (all of them when PGE=0), MOV to CR4 changing PGE and MOV to CR0 clearing
//!   PG drop everything, and a page fault drops the faulting page
//!   ([`crate::paging::translate`] does that);
//! - §4.6: the access rights are precomputed per (privilege, read/write) into one bit each.
//!
//! Layout: [`TLB_ENTRIES`] entries indexed by the low bits of the linear page number. An entry
//! is `{ tag, phys, perms }` (`#[repr(C)]`, 12 bytes, offsets asserted below) so the
//! translator's inline fast path reads the same entries as [`Tlb::lookup`]:
//!
//! ```text
//!   e   = &entries[(lin >> 12) & (TLB_ENTRIES - 1)]
//!   if e.tag == (lin & !0xFFF) | TAG_VALID        // one compare: page and valid bit
//!      && e.perms & required(acc, user) != 0      // one bit test: SR, SW, UR or UW
//!       pa   = e.phys + (lin & 0xFFF)            // hit
//!       host = ram_base + pa                      // the RAM base is GuestMemory's
//!   else slow path: walk, insert (or #PF)
//! ```
//!
//! An entry holds a *physical* page, not a host pointer: only [`crate::memory::GuestMemory`]
//! hands out host memory, so a host pointer is its RAM base plus `phys`. A page that must always
//! take the slow path for some access (MMIO, pages holding translated code for writes) needs
//! nothing more than its permission bits cleared.
//!
//! The translator's view ([`FastEntry`], one per slot, `#[repr(C)]`, 32 bytes, offsets asserted
//! below): the same slot holds, per kind of access and privilege, a tag that is the page-aligned
//! linear address when translated code may access the page directly, and an *addend* — the
//! host address of the page minus its linear address — so the inline fast path is:
//!
//! ```text
//!   f    = &fast[(lin >> 12) & (TLB_ENTRIES - 1)]
//!   if ((lin + size - 1) & !0xFFF) == f.tags[kind]  // one compare: page, rights, no page crossing
//!       host = f.addend + lin                       // one add
//!   else slow path (a call into the emulator, which may refill the entry)
//! ```
//!
//! Fast entries are filled only by [`Tlb::set_fast`] (the translator's slow path, after an
//! access succeeded), from the slot's translation and [`crate::memory::GuestMemory::host_page`];
//! every change of the slot's translation (insert, any flush) empties the fast entry too, so it
//! never outlives the translation it came from. The array is allocated once and never moves.
//!
//! Choices and deviations, on purpose:
//! - A 4 MiB page is cached as 4 KiB pieces, one per linear page used, each marked
//!   [`perm::LARGE`] (§4.10.2.3 allows this). [`Tlb::flush_page`] must then drop every piece of
//!   the 4 MiB page; a count of live large entries keeps it O(1) when there are none.
//! - CR0.WP is folded into the supervisor-write bit at insert, so bt86 must call
//!   [`Tlb::flush_all`] when CR0.WP changes (silicon applies WP to the cached rights at use).
//!   Entries are also created with paging off (the identity translation), so a change of
//!   CR0.PG in either direction flushes everything, and so does a change of CR4.PSE or CR4.PAE
//!   (the walk's meaning changes). These are stricter than the SDM requires, never looser.
//! - There is no NX without PAE: an instruction fetch needs the read bit of its privilege.
//! - bt86 never drops an entry on its own (no capacity evictions beyond direct-mapped
//!   conflicts), so a stale entry stays usable until the guest invalidates it, which the SDM
//!   permits.

use core::mem::{offset_of, size_of};

use crate::cpu::Access;
use crate::paging::Translation;

/// Number of TLB entries (a power of two: the index is a mask of the linear page number).
pub const TLB_ENTRIES: usize = 1024;
const _: () = assert!(TLB_ENTRIES.is_power_of_two());

/// Bit 0 of a tag: the entry is valid (tags otherwise hold a page-aligned linear address).
pub const TAG_VALID: u32 = 1;

/// Linear or physical page-frame mask.
const PAGE_MASK: u32 = 0xFFFF_F000;
/// Linear 4 MiB region mask.
const LARGE_MASK: u32 = 0xFFC0_0000;

/// Bits of [`TlbEntry::perms`].
pub mod perm {
    /// Supervisor read or instruction fetch.
    pub const SR: u32 = 1 << 0;
    /// Supervisor write (the page is dirty, and writable or CR0.WP=0).
    pub const SW: u32 = 1 << 1;
    /// User (CPL 3) read or instruction fetch.
    pub const UR: u32 = 1 << 2;
    /// User write (the page is dirty, user and writable).
    pub const UW: u32 = 1 << 3;
    /// Global translation (G=1 under CR4.PGE=1): survives [`super::Tlb::flush_non_global`].
    pub const GLOBAL: u32 = 1 << 4;
    /// 4 KiB piece of a 4 MiB page.
    pub const LARGE: u32 = 1 << 5;
}

/// One cached translation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct TlbEntry {
    /// `(linear address & !0xFFF) | TAG_VALID`, or 0 for an empty entry.
    pub tag: u32,
    /// Physical page base (low 12 bits zero).
    pub phys: u32,
    /// [`perm`] bits.
    pub perms: u32,
}

// The translator's fast path relies on this layout.
const _: () = assert!(offset_of!(TlbEntry, tag) == 0);
const _: () = assert!(offset_of!(TlbEntry, phys) == 4);
const _: () = assert!(offset_of!(TlbEntry, perms) == 8);
const _: () = assert!(size_of::<TlbEntry>() == 12);

/// A fast-path tag that matches no address (addresses compared against tags are page-aligned).
pub const FAST_INVALID: u32 = 1;

/// Index into [`FastEntry::tags`] of each kind of access.
pub mod fast_kind {
    /// Supervisor read or fetch.
    pub const READ_SUPERVISOR: usize = 0;
    /// Supervisor write.
    pub const WRITE_SUPERVISOR: usize = 1;
    /// User (CPL 3) read or fetch.
    pub const READ_USER: usize = 2;
    /// User write.
    pub const WRITE_USER: usize = 3;
}

/// The translator's view of one slot (see the module header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct FastEntry {
    /// Per [`fast_kind`]: the page-aligned linear address, or [`FAST_INVALID`].
    pub tags: [u32; 4],
    /// Host address of the page minus its linear address (wrapping).
    pub addend: u64,
    /// Physical page of the translation (to revoke writes to a page that becomes code).
    pub phys: u32,
    /// Padding to 32 bytes, so the slot offset is a shift.
    pub pad: u32,
}

impl Default for FastEntry {
    fn default() -> FastEntry {
        FastEntry { tags: [FAST_INVALID; 4], addend: 0, phys: 0, pad: 0 }
    }
}

// The translator's fast path relies on this layout.
const _: () = assert!(offset_of!(FastEntry, tags) == 0);
const _: () = assert!(offset_of!(FastEntry, addend) == 16);
const _: () = assert!(offset_of!(FastEntry, phys) == 24);
const _: () = assert!(size_of::<FastEntry>() == 32);

impl TlbEntry {
    /// The entry caching translation `t` of linear address `lin`, with CR0.WP = `cr0_wp` and
    /// CR4.PGE = `pge`. This is the only place the §4.6 rights become permission bits.
    pub fn new(lin: u32, t: &Translation, cr0_wp: bool, pge: bool) -> TlbEntry {
        let mut perms = perm::SR;
        if t.dirty && (t.writable || !cr0_wp) {
            perms |= perm::SW;
        }
        if t.user {
            perms |= perm::UR;
            if t.writable && t.dirty {
                perms |= perm::UW;
            }
        }
        if t.global && pge {
            perms |= perm::GLOBAL;
        }
        if t.large {
            perms |= perm::LARGE;
        }
        TlbEntry { tag: tag(lin), phys: t.pa & PAGE_MASK, perms }
    }

    /// The entry holds a translation.
    #[inline]
    pub fn valid(&self) -> bool {
        self.tag & TAG_VALID != 0
    }

    /// The entry holds the translation of `lin`'s page.
    #[inline]
    pub fn matches(&self, lin: u32) -> bool {
        self.tag == tag(lin)
    }

    /// The entry is a piece of a 4 MiB page.
    #[inline]
    fn large(&self) -> bool {
        self.perms & perm::LARGE != 0
    }
}

/// The tag an entry for `lin` carries.
#[inline]
fn tag(lin: u32) -> u32 {
    (lin & PAGE_MASK) | TAG_VALID
}

/// The slot `lin` maps to.
#[inline]
pub fn index(lin: u32) -> usize {
    (lin >> 12) as usize & (TLB_ENTRIES - 1)
}

/// The one [`perm`] bit an access of kind `acc` at CPL 3 (`user`) or supervisor level needs.
#[inline]
pub fn required(acc: Access, user: bool) -> u32 {
    match (acc, user) {
        (Access::Read | Access::Execute, false) => perm::SR,
        (Access::Write, false) => perm::SW,
        (Access::Read | Access::Execute, true) => perm::UR,
        (Access::Write, true) => perm::UW,
    }
}

/// TLB counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlbStats {
    /// Lookups answered by an entry.
    pub hits: u64,
    /// Lookups that need a walk (no entry, another page, or missing permission).
    pub misses: u64,
    /// Whole-TLB flushes ([`Tlb::flush_all`] and [`Tlb::flush_non_global`]).
    pub flushes: u64,
    /// Single-page flushes ([`Tlb::flush_page`]).
    pub page_flushes: u64,
    /// Whole-TLB flushes that kept global entries ([`Tlb::flush_non_global`]; also counted in
    /// `flushes`).
    pub nonglobal_flushes: u64,
}

/// Pages [`Tlb::flush_page`] dropped since the log was last taken (see [`Tlb::take_page_log`]).
const PAGE_LOG: usize = 16;

/// The software TLB.
#[derive(Clone, Debug)]
pub struct Tlb {
    /// `TLB_ENTRIES` entries, indexed by [`index`].
    entries: Box<[TlbEntry]>,
    /// The translator's view, slot by slot (allocated once, never moved).
    fast: Box<[FastEntry]>,
    /// How many valid entries are pieces of 4 MiB pages.
    large: usize,
    /// The linear page ranges (first page number, pages) single-page flushes dropped since the
    /// log was last taken; more than `PAGE_LOG` means "too many to say".
    page_log: [(u32, u32); PAGE_LOG],
    page_log_len: usize,
    /// Counters.
    pub stats: TlbStats,
}

impl Default for Tlb {
    fn default() -> Tlb {
        Tlb::new()
    }
}

impl Tlb {
    /// An empty TLB.
    pub fn new() -> Tlb {
        Tlb {
            entries: vec![TlbEntry::default(); TLB_ENTRIES].into_boxed_slice(),
            fast: vec![FastEntry::default(); TLB_ENTRIES].into_boxed_slice(),
            large: 0,
            page_log: [(0, 0); PAGE_LOG],
            page_log_len: 0,
            stats: TlbStats::default(),
        }
    }

    /// All entries, indexed by [`index`] (for the translator and for inspection).
    pub fn entries(&self) -> &[TlbEntry] {
        &self.entries
    }

    /// The entry `lin` maps to (whatever page it currently holds).
    pub fn entry(&self, lin: u32) -> &TlbEntry {
        &self.entries[index(lin)]
    }

    /// The physical address of `lin` if an entry for its page grants the access; counts a hit
    /// or a miss.
    #[inline]
    pub fn lookup(&mut self, lin: u32, acc: Access, user: bool) -> Option<u32> {
        let pa = self.peek(lin, acc, user);
        if pa.is_some() {
            self.stats.hits += 1;
        } else {
            self.stats.misses += 1;
        }
        pa
    }

    /// [`Tlb::lookup`] without counting it (for a look that is not an access: the translator
    /// reading ahead into the next page).
    pub fn peek(&self, lin: u32, acc: Access, user: bool) -> Option<u32> {
        let e = &self.entries[index(lin)];
        (e.tag == tag(lin) && e.perms & required(acc, user) != 0).then_some(e.phys | (lin & !PAGE_MASK))
    }

    /// Caches translation `t` of `lin` (replacing whatever the slot held), under CR0.WP =
    /// `cr0_wp` and CR4.PGE = `pge`.
    pub fn insert(&mut self, lin: u32, t: &Translation, cr0_wp: bool, pge: bool) {
        let new = TlbEntry::new(lin, t, cr0_wp, pge);
        let slot = &mut self.entries[index(lin)];
        if slot.valid() && slot.large() {
            self.large -= 1;
        }
        if new.large() {
            self.large += 1;
        }
        *slot = new;
        self.fast[index(lin)] = FastEntry::default();
    }

    /// Drops every entry, global ones included: CR0.PG or CR0.WP changes, CR4.PSE/PGE/PAE
    /// changes, and CR3 writes while CR4.PGE=0.
    pub fn flush_all(&mut self) {
        self.entries.fill(TlbEntry::default());
        self.fast.fill(FastEntry::default());
        self.large = 0;
        self.stats.flushes += 1;
    }

    /// Drops every non-global entry: CR3 writes (and task switches) while CR4.PGE=1.
    pub fn flush_non_global(&mut self) {
        self.stats.nonglobal_flushes += 1;
        let mut large = 0;
        for (e, f) in self.entries.iter_mut().zip(self.fast.iter_mut()) {
            if e.perms & perm::GLOBAL == 0 {
                *e = TlbEntry::default();
                *f = FastEntry::default();
            } else if e.valid() && e.large() {
                large += 1;
            }
        }
        self.large = large;
        self.stats.flushes += 1;
    }

    /// INVLPG: drops the entry for `lin`'s page, global or not, and every cached 4 KiB piece
    /// of a 4 MiB page that contains `lin`.
    pub fn flush_page(&mut self, lin: u32) {
        self.stats.page_flushes += 1;
        self.log_page(lin >> 12, 1);
        let i = index(lin);
        self.fast[i] = FastEntry::default();
        if self.entries[i].matches(lin) {
            if self.entries[i].large() {
                self.large -= 1;
            }
            self.entries[i] = TlbEntry::default();
        }
        if self.large == 0 {
            return;
        }
        let region = lin & LARGE_MASK;
        let mut dropped = false;
        for (e, f) in self.entries.iter_mut().zip(self.fast.iter_mut()) {
            if e.valid() && e.large() && e.tag & LARGE_MASK == region {
                *e = TlbEntry::default();
                *f = FastEntry::default();
                self.large -= 1;
                dropped = true;
            }
        }
        if dropped {
            self.log_page(region >> 12, (!LARGE_MASK >> 12) + 1);
        }
    }

    fn log_page(&mut self, first: u32, pages: u32) {
        if let Some(slot) = self.page_log.get_mut(self.page_log_len) {
            *slot = (first, pages);
        }
        self.page_log_len = (self.page_log_len + 1).min(PAGE_LOG + 1);
    }

    /// The linear page ranges (first page number, number of pages) that single-page flushes
    /// dropped since the last call, or `None` if there were too many to list; empties the log.
    /// (The translator's jump cache, keyed by linear address, forgets just those pages.)
    pub fn take_page_log(&mut self) -> Option<Vec<(u32, u32)>> {
        let n = std::mem::take(&mut self.page_log_len);
        (n <= PAGE_LOG).then(|| self.page_log[..n].to_vec())
    }

    /// Whether the cached translation of `lin`'s page is global (kept across CR3 writes while
    /// CR4.PGE is set); false when it is not cached.
    pub fn is_global(&self, lin: u32) -> bool {
        let e = &self.entries[index(lin)];
        e.matches(lin) && e.perms & perm::GLOBAL != 0
    }

    /// The translator's view, slot by slot (see the module header).
    pub fn fast_entries(&self) -> &[FastEntry] {
        &self.fast
    }

    /// Where the translator's view starts in host memory: it is allocated once and never moves
    /// for the life of this TLB.
    pub fn fast_base(&self) -> *const FastEntry {
        self.fast.as_ptr()
    }

    /// Lets translated code access the page of `lin` directly: `phys` is the physical page the
    /// access translated to (after the A20 gate), `perms` the [`perm`] bits it was granted
    /// (every bit while paging is off) and `host` what guest memory says about the page.
    pub fn set_fast(&mut self, lin: u32, phys: u32, perms: u32, host: crate::memory::HostPage) {
        let page = lin & PAGE_MASK;
        let tag = |ok: bool| if ok { page } else { FAST_INVALID };
        self.fast[index(lin)] = FastEntry {
            tags: [
                tag(perms & perm::SR != 0),
                tag(perms & perm::SW != 0 && host.writable),
                tag(perms & perm::UR != 0),
                tag(perms & perm::UW != 0 && host.writable),
            ],
            addend: (host.addr as u64).wrapping_sub(u64::from(page)),
            phys: phys & PAGE_MASK,
            pad: 0,
        };
    }

    /// Takes direct writes away from every slot that maps physical page `phys` (it now holds
    /// something cached, such as translated code).
    pub fn revoke_fast_writes(&mut self, phys: u32) {
        let phys = phys & PAGE_MASK;
        for f in self.fast.iter_mut() {
            if f.phys == phys {
                f.tags[fast_kind::WRITE_SUPERVISOR] = FAST_INVALID;
                f.tags[fast_kind::WRITE_USER] = FAST_INVALID;
            }
        }
    }

    /// Empties the translator's view (the TLB's own entries stay).
    pub fn flush_fast(&mut self) {
        self.fast.fill(FastEntry::default());
    }

    /// How many valid entries are pieces of 4 MiB pages.
    pub fn large_entries(&self) -> usize {
        self.large
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4 KiB translation to physical page `pa` with the given rights.
    fn t4k(pa: u32, user: bool, writable: bool, dirty: bool) -> Translation {
        Translation { pa, large: false, global: false, user, writable, dirty }
    }

    const ALL: [(Access, bool); 6] = [
        (Access::Read, false),
        (Access::Write, false),
        (Access::Execute, false),
        (Access::Read, true),
        (Access::Write, true),
        (Access::Execute, true),
    ];

    /// Which of the six (access, privilege) kinds hit for `lin`.
    fn hits(tlb: &mut Tlb, lin: u32) -> [bool; 6] {
        ALL.map(|(acc, user)| tlb.lookup(lin, acc, user).is_some())
    }

    #[test]
    fn hit_after_insert() {
        let mut tlb = Tlb::new();
        assert_eq!(tlb.lookup(0x1234_5678, Access::Read, false), None);
        tlb.insert(0x1234_5678, &t4k(0x0009_9678, true, true, true), true, false);
        assert_eq!(tlb.lookup(0x1234_5678, Access::Read, false), Some(0x0009_9678));
        assert_eq!(tlb.lookup(0x1234_5FFF, Access::Write, true), Some(0x0009_9FFF));
        assert_eq!(tlb.lookup(0x1234_5000, Access::Execute, true), Some(0x0009_9000));
        // Another page in the same slot is a miss.
        assert_eq!(tlb.lookup(0x1234_5678 + (TLB_ENTRIES as u32) * 0x1000, Access::Read, false), None);
        assert_eq!(*tlb.entry(0x1234_5000), TlbEntry { tag: 0x1234_5001, phys: 0x99000, perms: 0xF });
    }

    #[test]
    fn page_zero_is_cacheable_and_an_empty_tlb_misses_it() {
        let mut tlb = Tlb::new();
        assert_eq!(tlb.lookup(0, Access::Read, false), None);
        tlb.insert(0, &t4k(0, false, true, false), false, false);
        assert_eq!(tlb.lookup(0x10, Access::Read, false), Some(0x10));
    }

    #[test]
    fn permissions_per_privilege_and_access() {
        // (user, writable, dirty, wp) → [SR, SW, SX, UR, UW, UX]
        let cases = [
            (true, true, true, true, [true; 6]),
            (true, true, false, true, [true, false, true, true, false, true]),
            (true, false, true, true, [true, false, true, true, false, true]),
            (true, false, true, false, [true, true, true, true, false, true]),
            (false, true, true, true, [true, true, true, false, false, false]),
            (false, false, true, true, [true, false, true, false, false, false]),
            (false, false, true, false, [true, true, true, false, false, false]),
            (false, false, false, false, [true, false, true, false, false, false]),
        ];
        for (user, writable, dirty, wp, want) in cases {
            let mut tlb = Tlb::new();
            tlb.insert(0x4000, &t4k(0x8000, user, writable, dirty), wp, false);
            assert_eq!(hits(&mut tlb, 0x4000), want, "user {user} writable {writable} dirty {dirty} wp {wp}");
        }
    }

    #[test]
    fn a_write_to_a_clean_page_misses_until_reinserted_dirty() {
        let mut tlb = Tlb::new();
        tlb.insert(0x4000, &t4k(0x8000, true, true, false), true, false);
        assert_eq!(tlb.lookup(0x4000, Access::Read, true), Some(0x8000));
        assert_eq!(tlb.lookup(0x4000, Access::Write, true), None);
        assert_eq!(tlb.lookup(0x4000, Access::Write, false), None);
        tlb.insert(0x4000, &t4k(0x8000, true, true, true), true, false);
        assert_eq!(tlb.lookup(0x4000, Access::Write, true), Some(0x8000));
    }

    #[test]
    fn every_flush_drops_a_non_global_entry() {
        let flushes: [fn(&mut Tlb); 3] = [Tlb::flush_all, Tlb::flush_non_global, |t| t.flush_page(0x4321)];
        for flush in flushes {
            let mut tlb = Tlb::new();
            tlb.insert(0x4000, &t4k(0x8000, true, true, true), true, true);
            tlb.insert(0x5000, &t4k(0x9000, true, true, true), true, true);
            flush(&mut tlb);
            assert_eq!(hits(&mut tlb, 0x4000), [false; 6]);
            assert!(!tlb.entry(0x4000).valid());
        }
    }

    #[test]
    fn flush_page_keeps_other_pages() {
        let mut tlb = Tlb::new();
        tlb.insert(0x4000, &t4k(0x8000, true, true, true), true, false);
        tlb.insert(0x5000, &t4k(0x9000, true, true, true), true, false);
        // A different page that shares 0x4000's slot is not that entry.
        tlb.flush_page(0x4000 + (TLB_ENTRIES as u32) * 0x1000);
        tlb.flush_page(0x4FFF);
        assert_eq!(tlb.lookup(0x4000, Access::Read, false), None);
        assert_eq!(tlb.lookup(0x5000, Access::Read, false), Some(0x9000));
    }

    #[test]
    fn single_page_flushes_are_logged_until_too_many() {
        let g = Translation { global: true, ..t4k(0x8000, false, true, true) };
        let mut tlb = Tlb::new();
        tlb.insert(0x4000, &g, true, true);
        assert!(tlb.is_global(0x4123));
        assert!(!tlb.is_global(0x5000), "not cached");
        tlb.flush_page(0x4123);
        tlb.flush_page(0x7000);
        assert_eq!(tlb.take_page_log(), Some(vec![(4, 1), (7, 1)]));
        assert_eq!(tlb.take_page_log(), Some(vec![]), "taken");
        for p in 0..=PAGE_LOG as u32 {
            tlb.flush_page(p << 12);
        }
        assert_eq!(tlb.take_page_log(), None, "too many to list");
        assert_eq!(tlb.take_page_log(), Some(vec![]));
    }

    #[test]
    fn global_entries_survive_flush_non_global_only() {
        let g = Translation { global: true, ..t4k(0x8000, false, true, true) };
        let mut tlb = Tlb::new();
        tlb.insert(0x4000, &g, true, true);
        tlb.insert(0x5000, &t4k(0x9000, false, true, true), true, true);
        tlb.flush_non_global();
        assert_eq!(tlb.lookup(0x4000, Access::Read, false), Some(0x8000));
        assert_eq!(tlb.lookup(0x5000, Access::Read, false), None);
        // INVLPG drops a global entry too.
        tlb.flush_page(0x4000);
        assert_eq!(tlb.lookup(0x4000, Access::Read, false), None);
        // So does flush_all.
        tlb.insert(0x4000, &g, true, true);
        tlb.flush_all();
        assert_eq!(tlb.lookup(0x4000, Access::Read, false), None);
        // Without CR4.PGE the G flag means nothing.
        tlb.insert(0x4000, &g, true, false);
        assert_eq!(tlb.entry(0x4000).perms & perm::GLOBAL, 0);
        tlb.flush_non_global();
        assert_eq!(tlb.lookup(0x4000, Access::Read, false), None);
    }

    #[test]
    fn flush_page_drops_every_piece_of_a_4m_page() {
        let big = |pa| Translation { pa, large: true, global: true, user: true, writable: true, dirty: true };
        let mut tlb = Tlb::new();
        // Three pieces of the 4 MiB page at linear 0x0080_0000 (physical 0x00C0_0000), one
        // piece of the next 4 MiB page, and an ordinary page inside the first region.
        for lin in [0x0080_0000, 0x0091_2000, 0x00BF_F000] {
            tlb.insert(lin, &big(0x00C0_0000 | (lin & 0x3F_F000)), true, true);
        }
        tlb.insert(0x00C0_1000, &big(0x0100_1000), true, true);
        tlb.insert(0x0081_0000, &t4k(0x7000, true, true, true), true, true);
        assert_eq!(tlb.large_entries(), 4);
        assert_eq!(tlb.lookup(0x0091_2345, Access::Write, true), Some(0x00D1_2345));

        tlb.flush_page(0x0085_5555); // a page of the region no piece was cached for
        for lin in [0x0080_0000, 0x0091_2000, 0x00BF_F000] {
            assert_eq!(tlb.lookup(lin, Access::Read, false), None, "{lin:#x}");
        }
        assert_eq!(tlb.lookup(0x00C0_1000, Access::Read, false), Some(0x0100_1000));
        assert_eq!(tlb.lookup(0x0081_0000, Access::Read, false), Some(0x7000));
        assert_eq!(tlb.large_entries(), 1);

        // The count follows replacement and the other flushes.
        tlb.insert(0x00C0_1000, &t4k(0x3000, true, true, true), true, true);
        assert_eq!(tlb.large_entries(), 0);
        tlb.insert(0x0080_0000, &big(0x00C0_0000), true, true);
        tlb.insert(0x0090_0000, &Translation { global: false, ..big(0x00D0_0000) }, true, true);
        assert_eq!(tlb.large_entries(), 2);
        tlb.flush_non_global();
        assert_eq!(tlb.large_entries(), 1);
        tlb.flush_page(0x0080_0000);
        assert_eq!(tlb.large_entries(), 0);
        tlb.insert(0x0080_0000, &big(0x00C0_0000), true, true);
        tlb.flush_all();
        assert_eq!(tlb.large_entries(), 0);
    }

    #[test]
    fn stats_count_hits_misses_and_flushes() {
        let mut tlb = Tlb::new();
        tlb.insert(0x4000, &t4k(0x8000, false, false, false), true, false);
        tlb.lookup(0x4000, Access::Read, false); // hit
        tlb.lookup(0x4000, Access::Write, false); // miss: permission
        tlb.lookup(0x4000, Access::Read, true); // miss: permission
        tlb.lookup(0x6000, Access::Read, false); // miss: no entry
        tlb.lookup(0x4004, Access::Execute, false); // hit
        tlb.flush_page(0x4000);
        tlb.flush_page(0x9000);
        tlb.flush_non_global();
        tlb.flush_all();
        assert_eq!(
            tlb.stats,
            TlbStats { hits: 2, misses: 3, flushes: 2, page_flushes: 2, nonglobal_flushes: 1 }
        );
    }
}
