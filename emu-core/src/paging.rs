//! 32-bit (non-PAE) paging: the page walk, its access-rights checks, its page-fault error codes
//! and its accessed/dirty updates.
//!
//! Follows Intel SDM Vol. 3A:
//! - §4.3 "32-Bit Paging": CR3 → page directory → page table (4 KiB pages), or a PDE with PS=1
//!   mapping a 4 MiB page when CR4.PSE=1 (Tables 4-4 to 4-6);
//! - §4.6 "Access Rights": user-mode accesses (CPL 3) need U/S=1 at every level, user writes need
//!   R/W=1 at every level; supervisor writes to a read-only page fault only when CR0.WP=1;
//!   supervisor reads are always allowed (an i686 has no SMEP/SMAP);
//! - §4.7 "Page-Fault Exceptions": error code P (bit 0), W/R (bit 1), U/S (bit 2), RSVD (bit 3);
//! - §4.8 "Accessed and Dirty Flags";
//! - §4.10.4.1: a page fault invalidates the TLB entries for the faulting page ([`translate`]).
//!
//! The TLB that caches what this walk produces is [`crate::tlb`].
//!
//! Choices and deviations, on purpose:
//! - **A/D bits only on success.** The accessed flag of the PDE and PTE (and the dirty flag of
//!   the PTE, or of the PDE for a 4 MiB page, on a write) are set only when the access is
//!   allowed; a faulting walk writes nothing. Each entry is written back only if one of its bits
//!   actually changes. Silicon (and QEMU) set the PDE's accessed flag as soon as they use the PDE,
//!   so after a fault at the PTE level (not present, or a protection violation) their PDE.A can be
//!   1 where bt86's is still 0; a differential run can observe that and should mask it.
//! - **No PSE-36, no PAT.** bt86 reports neither, so bits 21:13 of a 4 MiB PDE are reserved
//!   (RSVD fault, §4.7) and bit 12 (PAT) is ignored. PCD/PWT are ignored: there are no caches.
//! - **No NX without PAE.** The I/D bit (4) is never set; an instruction fetch is checked like a
//!   read.
//! - **CR2 belongs to the caller.** [`walk`] returns `Exception::PageFault { addr, code }`; the
//!   CPU loads CR2 from `addr` when it delivers the fault.
//! - **Paging off is the identity.** With CR0.PG=0, [`walk`] touches no memory and returns
//!   `pa = lin` with every permission, so callers (and the TLB) need no separate path. The A20
//!   gate, which masks a physical address, is applied by the caller.
//! - Page-table reads and writes go through [`GuestMemory`]: outside RAM they read all ones and
//!   writes are dropped, so a guest pointing CR3 or a PDE at nothing cannot crash bt86.

use crate::cpu::Access;
use crate::exception::Exception;
use crate::memory::GuestMemory;
use crate::state::cr0;
use crate::tlb::Tlb;

/// CR4 bits (SDM Vol. 3A §2.5). CR4 is `CpuState::cr[4]`.
pub mod cr4 {
    /// Virtual-8086 mode extensions.
    pub const VME: u32 = 1 << 0;
    /// Protected-mode virtual interrupts.
    pub const PVI: u32 = 1 << 1;
    /// Time-stamp disable: RDTSC is privileged.
    pub const TSD: u32 = 1 << 2;
    /// Debugging extensions: DR4/DR5 references raise #UD, I/O breakpoints.
    pub const DE: u32 = 1 << 3;
    /// Page-size extensions: a PDE with PS=1 maps a 4 MiB page.
    pub const PSE: u32 = 1 << 4;
    /// Physical-address extension (not supported by bt86 yet).
    pub const PAE: u32 = 1 << 5;
    /// Machine-check enable.
    pub const MCE: u32 = 1 << 6;
    /// Page global enable: G=1 translations survive CR3 writes.
    pub const PGE: u32 = 1 << 7;
    /// Performance-monitoring counter enable: RDPMC at any CPL.
    pub const PCE: u32 = 1 << 8;
    /// OS supports FXSAVE/FXRSTOR.
    pub const OSFXSR: u32 = 1 << 9;
    /// OS supports unmasked SIMD floating-point exceptions.
    pub const OSXMMEXCPT: u32 = 1 << 10;
}

/// Bits of a page-directory or page-table entry (SDM Vol. 3A §4.3, Tables 4-4 to 4-6).
pub mod pte {
    /// Present.
    pub const P: u32 = 1 << 0;
    /// Read/write: 0 = read-only.
    pub const RW: u32 = 1 << 1;
    /// User/supervisor: 0 = supervisor only.
    pub const US: u32 = 1 << 2;
    /// Page-level write-through (ignored by bt86).
    pub const PWT: u32 = 1 << 3;
    /// Page-level cache disable (ignored by bt86).
    pub const PCD: u32 = 1 << 4;
    /// Accessed.
    pub const A: u32 = 1 << 5;
    /// Dirty (PTE, and PDE mapping a 4 MiB page).
    pub const D: u32 = 1 << 6;
    /// Page size (PDE only): 1 = maps a 4 MiB page when CR4.PSE=1.
    pub const PS: u32 = 1 << 7;
    /// Global (PTE, and PDE mapping a 4 MiB page); honoured when CR4.PGE=1.
    pub const G: u32 = 1 << 8;
    /// Bits 21:13 of a 4 MiB PDE: reserved without PSE-36 (a set bit is an RSVD fault).
    pub const PDE4M_RSVD: u32 = 0x003F_E000;
    /// Frame address of a page table or 4 KiB page.
    pub const FRAME_4K: u32 = 0xFFFF_F000;
    /// Frame address of a 4 MiB page.
    pub const FRAME_4M: u32 = 0xFFC0_0000;
}

/// Page-fault error-code bits (SDM Vol. 3A §4.7, Figure 4-12).
pub mod pf {
    /// 0 = the page was not present; 1 = protection (or reserved-bit) violation.
    pub const P: u16 = 1 << 0;
    /// The access was a write.
    pub const WR: u16 = 1 << 1;
    /// The access was a user-mode (CPL 3) access.
    pub const US: u16 = 1 << 2;
    /// A reserved bit was set in a paging-structure entry.
    pub const RSVD: u16 = 1 << 3;
    /// Instruction fetch (only with NX, so never set by bt86's 32-bit paging).
    pub const ID: u16 = 1 << 4;
}

/// The result of a successful walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// Physical address of the byte at the linear address walked.
    pub pa: u32,
    /// The page is a 4 MiB page (PDE with PS=1 under CR4.PSE=1).
    pub large: bool,
    /// The G flag of the entry that maps the page (PTE, or the 4 MiB PDE). It makes the
    /// translation global only when CR4.PGE=1, which the TLB applies on insert.
    pub global: bool,
    /// U/S=1 at every level: user-mode (CPL 3) accesses are allowed.
    pub user: bool,
    /// R/W=1 at every level: user writes (and supervisor writes under CR0.WP=1) are allowed.
    pub writable: bool,
    /// The dirty flag of the mapping entry is set (after this walk).
    pub dirty: bool,
}

impl Translation {
    /// The translation used while paging is off: physical = linear, everything allowed.
    fn identity(lin: u32) -> Translation {
        Translation { pa: lin, large: false, global: false, user: true, writable: true, dirty: true }
    }
}

/// Checks the access rights of §4.6 against the combined U/S and R/W of the walk.
/// `Some(code)` is the error code of a protection violation.
fn check(acc: Access, user: bool, wp: bool, us: bool, rw: bool, code: u16) -> Option<u16> {
    let write = acc == Access::Write;
    let allowed = if user { us && (!write || rw) } else { !write || rw || !wp };
    (!allowed).then_some(code | pf::P)
}

/// Sets `bits` in the entry at `addr` (whose value was read as `old`) if any is clear, and
/// returns the entry's new value.
fn set_bits(mem: &mut GuestMemory, addr: u32, old: u32, bits: u32) -> u32 {
    let new = old | bits;
    if new != old {
        mem.write_u32(addr, new);
    }
    new
}

/// Walks the 32-bit paging structures for an access of kind `acc` to linear address `lin`
/// (SDM Vol. 3A §4.3). `user` means the access is made at CPL 3; the CPU's own supervisor
/// accesses (descriptor tables, TSS) pass `false` whatever the CPL.
///
/// On success the accessed (and, for a write, dirty) flags are set in memory and the
/// translation is returned; on a violation the error is `Exception::PageFault` with `lin` and
/// the §4.7 error code, and memory is unchanged. CR2 is the caller's to load.
pub fn walk(
    mem: &mut GuestMemory,
    cr0: u32,
    cr3: u32,
    cr4: u32,
    lin: u32,
    acc: Access,
    user: bool,
) -> Result<Translation, Exception> {
    if cr0 & cr0::PG == 0 {
        return Ok(Translation::identity(lin));
    }
    let write = acc == Access::Write;
    let mut code = 0;
    if write {
        code |= pf::WR;
    }
    if user {
        code |= pf::US;
    }
    let fault = |code: u16| Exception::PageFault { addr: lin, code };
    let wp = cr0 & cr0::WP != 0;

    let pde_addr = (cr3 & pte::FRAME_4K) | ((lin >> 22) << 2);
    let pde = mem.read_u32(pde_addr);
    if pde & pte::P == 0 {
        return Err(fault(code));
    }

    if cr4 & cr4::PSE != 0 && pde & pte::PS != 0 {
        // 4 MiB page: the PDE is the mapping entry (Table 4-4).
        if pde & pte::PDE4M_RSVD != 0 {
            return Err(fault(code | pf::P | pf::RSVD));
        }
        let (us, rw) = (pde & pte::US != 0, pde & pte::RW != 0);
        if let Some(code) = check(acc, user, wp, us, rw, code) {
            return Err(fault(code));
        }
        let bits = if write { pte::A | pte::D } else { pte::A };
        let pde = set_bits(mem, pde_addr, pde, bits);
        return Ok(Translation {
            pa: (pde & pte::FRAME_4M) | (lin & !pte::FRAME_4M),
            large: true,
            global: pde & pte::G != 0,
            user: us,
            writable: rw,
            dirty: pde & pte::D != 0,
        });
    }

    // 4 KiB page: the PDE points to a page table (Tables 4-5, 4-6). Without CR4.PSE the PS bit
    // is ignored.
    let pte_addr = (pde & pte::FRAME_4K) | (((lin >> 12) & 0x3FF) << 2);
    let pte = mem.read_u32(pte_addr);
    if pte & pte::P == 0 {
        return Err(fault(code));
    }
    let both = pde & pte;
    let (us, rw) = (both & pte::US != 0, both & pte::RW != 0);
    if let Some(code) = check(acc, user, wp, us, rw, code) {
        return Err(fault(code));
    }
    set_bits(mem, pde_addr, pde, pte::A);
    let bits = if write { pte::A | pte::D } else { pte::A };
    let pte = set_bits(mem, pte_addr, pte, bits);
    Ok(Translation {
        pa: (pte & pte::FRAME_4K) | (lin & !pte::FRAME_4K),
        large: false,
        global: pte & pte::G != 0,
        user: us,
        writable: rw,
        dirty: pte & pte::D != 0,
    })
}

/// Linear → physical through the TLB: a hit answers at once; a miss walks (with the control
/// registers `cr`, i.e. `CpuState::cr`) and caches the result. A faulting walk also drops every
/// TLB entry for the faulting page, as a page fault does on silicon (SDM Vol. 3A §4.10.4.1), so
/// the guest's fault handler sees its fix take effect without an INVLPG.
pub fn translate(
    tlb: &mut Tlb,
    mem: &mut GuestMemory,
    cr: &[u32; 5],
    lin: u32,
    acc: Access,
    user: bool,
) -> Result<u32, Exception> {
    if let Some(pa) = tlb.lookup(lin, acc, user) {
        return Ok(pa);
    }
    let (cr0, cr3, cr4) = (cr[0], cr[3], cr[4]);
    match walk(mem, cr0, cr3, cr4, lin, acc, user) {
        Ok(t) => {
            tlb.insert(lin, &t, cr0 & cr0::WP != 0, cr4 & cr4::PGE != 0);
            Ok(t.pa)
        }
        Err(e) => {
            tlb.flush_page(lin);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Page directory.
    const PD: u32 = 0x1000;
    /// Page table for directory slot 1 (linear 0x0040_0000..0x0080_0000).
    const PT: u32 = 0x2000;
    /// The 4 KiB test page: linear 0x0040_3000 → physical 0x5000.
    const LIN4K: u32 = 0x0040_3ABC;
    const PDE4K: u32 = PD + 4;
    const PTE4K: u32 = PT + 3 * 4;
    /// The 4 MiB test page: linear 0x0080_0000.. → physical 0x00C0_0000...
    const LIN4M: u32 = 0x0089_ABCD;
    const PDE4M: u32 = PD + 2 * 4;

    const PG: u32 = cr0::PG | cr0::PE;
    const PG_WP: u32 = PG | cr0::WP;
    const URW: u32 = pte::P | pte::RW | pte::US;

    fn mem() -> GuestMemory {
        GuestMemory::new(0x10_0000).unwrap()
    }

    /// A 4 KiB mapping of LIN4K with the given PDE and PTE flag bits.
    fn map4k(pde_flags: u32, pte_flags: u32) -> GuestMemory {
        let mut m = mem();
        m.write_u32(PDE4K, PT | pde_flags);
        m.write_u32(PTE4K, 0x5000 | pte_flags);
        m
    }

    /// A 4 MiB mapping of LIN4M with the given PDE flag bits (PS is added).
    fn map4m(pde_flags: u32) -> GuestMemory {
        let mut m = mem();
        m.write_u32(PDE4M, 0x00C0_0000 | pte::PS | pde_flags);
        m
    }

    fn pf(addr: u32, code: u16) -> Result<Translation, Exception> {
        Err(Exception::PageFault { addr, code })
    }

    const KINDS: [(Access, u16); 3] = [(Access::Read, 0), (Access::Write, pf::WR), (Access::Execute, 0)];

    #[test]
    fn maps_a_4k_page_and_sets_accessed_flags() {
        let mut m = map4k(URW, URW | pte::G);
        let t = walk(&mut m, PG, PD, 0, LIN4K, Access::Read, true).unwrap();
        assert_eq!(
            t,
            Translation { pa: 0x5ABC, large: false, global: true, user: true, writable: true, dirty: false }
        );
        assert_eq!(m.read_u32(PDE4K), PT | URW | pte::A);
        assert_eq!(m.read_u32(PTE4K), 0x5000 | URW | pte::G | pte::A);
    }

    #[test]
    fn write_sets_dirty_in_the_pte_only() {
        let mut m = map4k(URW, URW);
        let t = walk(&mut m, PG, PD, 0, LIN4K, Access::Write, false).unwrap();
        assert!(t.dirty);
        assert_eq!(m.read_u32(PDE4K), PT | URW | pte::A, "a 4 KiB PDE has no dirty flag");
        assert_eq!(m.read_u32(PTE4K), 0x5000 | URW | pte::A | pte::D);
    }

    #[test]
    fn reports_the_combined_rights_of_both_levels() {
        for (pde_f, pte_f, user, writable) in [
            (URW, URW, true, true),
            (pte::P | pte::RW, URW, false, true),
            (URW, pte::P | pte::RW, false, true),
            (pte::P | pte::US, URW, true, false),
            (URW, pte::P | pte::US, true, false),
            (pte::P, pte::P, false, false),
        ] {
            let mut m = map4k(pde_f, pte_f);
            let t = walk(&mut m, PG, PD, 0, LIN4K, Access::Read, false).unwrap();
            assert_eq!((t.user, t.writable), (user, writable), "PDE {pde_f:#x} PTE {pte_f:#x}");
        }
    }

    #[test]
    fn global_comes_from_the_pte_not_a_4k_pde() {
        let mut m = map4k(URW | pte::G, URW);
        assert!(!walk(&mut m, PG, PD, cr4::PGE, LIN4K, Access::Read, false).unwrap().global);
    }

    #[test]
    fn maps_a_4m_page_with_pse() {
        let mut m = map4m(URW | pte::G);
        let t = walk(&mut m, PG, PD, cr4::PSE, LIN4M, Access::Read, true).unwrap();
        assert_eq!(
            t,
            Translation {
                pa: 0x00C9_ABCD,
                large: true,
                global: true,
                user: true,
                writable: true,
                dirty: false
            }
        );
        assert_eq!(m.read_u32(PDE4M), 0x00C0_0000 | pte::PS | URW | pte::G | pte::A);
        let t = walk(&mut m, PG, PD, cr4::PSE, LIN4M, Access::Write, true).unwrap();
        assert!(t.dirty);
        assert_eq!(m.read_u32(PDE4M), 0x00C0_0000 | pte::PS | URW | pte::G | pte::A | pte::D);
    }

    #[test]
    fn ps_is_ignored_without_cr4_pse() {
        // The same PDE, with PS set, points to a page table when CR4.PSE=0.
        let mut m = map4m(URW);
        let pt = 0x00C0_0000; // outside RAM: the "page table" reads all ones
        assert!(pt >= m.size() as u32);
        let t = walk(&mut m, PG, PD, 0, LIN4M, Access::Read, false).unwrap();
        assert!(!t.large);
        assert_eq!(t.pa, 0xFFFF_F000 | (LIN4M & 0xFFF));

        // And with a real page table under it.
        let mut m = mem();
        m.write_u32(PDE4M, 0x3000 | pte::PS | URW);
        m.write_u32(0x3000 + ((LIN4M >> 12) & 0x3FF) * 4, 0x7000 | URW);
        let t = walk(&mut m, PG, PD, 0, LIN4M, Access::Read, false).unwrap();
        assert_eq!(
            t,
            Translation { pa: 0x7BCD, large: false, global: false, user: true, writable: true, dirty: false }
        );
    }

    #[test]
    fn not_present_at_either_level() {
        for (acc, w) in KINDS {
            for (user, u) in [(false, 0), (true, pf::US)] {
                let mut m = map4k(URW & !pte::P, URW);
                assert_eq!(walk(&mut m, PG, PD, 0, LIN4K, acc, user), pf(LIN4K, w | u), "PDE {acc:?} {user}");
                let mut m = map4k(URW, URW & !pte::P);
                assert_eq!(walk(&mut m, PG, PD, 0, LIN4K, acc, user), pf(LIN4K, w | u), "PTE {acc:?} {user}");
                let mut m = map4m(URW & !pte::P);
                let r = walk(&mut m, PG, PD, cr4::PSE, LIN4M, acc, user);
                assert_eq!(r, pf(LIN4M, w | u), "4M PDE {acc:?} {user}");
                // An empty directory.
                let mut m = mem();
                assert_eq!(walk(&mut m, PG, PD, 0, LIN4K, acc, user), pf(LIN4K, w | u));
            }
        }
    }

    #[test]
    fn user_access_to_a_supervisor_page() {
        for (acc, w) in KINDS {
            let want = pf(LIN4K, pf::P | pf::US | w);
            let mut m = map4k(URW & !pte::US, URW);
            assert_eq!(walk(&mut m, PG, PD, 0, LIN4K, acc, true), want, "PDE {acc:?}");
            let mut m = map4k(URW, URW & !pte::US);
            assert_eq!(walk(&mut m, PG, PD, 0, LIN4K, acc, true), want, "PTE {acc:?}");
            let mut m = map4m(URW & !pte::US);
            let r = walk(&mut m, PG, PD, cr4::PSE, LIN4M, acc, true);
            assert_eq!(r, pf(LIN4M, pf::P | pf::US | w), "4M {acc:?}");
            // The supervisor may do anything there.
            let mut m = map4k(URW & !pte::US, URW & !pte::US);
            assert!(walk(&mut m, PG_WP, PD, 0, LIN4K, acc, false).is_ok());
        }
    }

    #[test]
    fn user_write_to_a_read_only_page() {
        let want = pf(LIN4K, pf::P | pf::WR | pf::US);
        for cr0 in [PG, PG_WP] {
            let mut m = map4k(URW & !pte::RW, URW);
            assert_eq!(walk(&mut m, cr0, PD, 0, LIN4K, Access::Write, true), want);
            let mut m = map4k(URW, URW & !pte::RW);
            assert_eq!(walk(&mut m, cr0, PD, 0, LIN4K, Access::Write, true), want);
            let mut m = map4m(URW & !pte::RW);
            let r = walk(&mut m, cr0, PD, cr4::PSE, LIN4M, Access::Write, true);
            assert_eq!(r, pf(LIN4M, pf::P | pf::WR | pf::US));
            // Reads and fetches are fine.
            let mut m = map4k(URW & !pte::RW, URW & !pte::RW);
            assert!(walk(&mut m, cr0, PD, 0, LIN4K, Access::Read, true).is_ok());
            assert!(walk(&mut m, cr0, PD, 0, LIN4K, Access::Execute, true).is_ok());
        }
    }

    #[test]
    fn supervisor_write_to_a_read_only_page_depends_on_wp() {
        for (pde_f, pte_f) in [(URW & !pte::RW, URW), (URW, URW & !pte::RW)] {
            let mut m = map4k(pde_f, pte_f);
            let t = walk(&mut m, PG, PD, 0, LIN4K, Access::Write, false).unwrap();
            assert!(!t.writable && t.dirty);
            assert_ne!(m.read_u32(PTE4K) & pte::D, 0, "WP=0: the write happens and sets D");

            let mut m = map4k(pde_f, pte_f);
            let r = walk(&mut m, PG_WP, PD, 0, LIN4K, Access::Write, false);
            assert_eq!(r, pf(LIN4K, pf::P | pf::WR));
        }
        let mut m = map4m(URW & !pte::RW);
        assert!(walk(&mut m, PG, PD, cr4::PSE, LIN4M, Access::Write, false).is_ok());
        let r = walk(&mut m, PG_WP, PD, cr4::PSE, LIN4M, Access::Write, false);
        assert_eq!(r, pf(LIN4M, pf::P | pf::WR));
    }

    #[test]
    fn reserved_bits_of_a_4m_pde() {
        for bit in 13..=21 {
            for (acc, w) in KINDS {
                for (user, u) in [(false, 0), (true, pf::US)] {
                    let mut m = map4m(URW | 1 << bit);
                    let r = walk(&mut m, PG, PD, cr4::PSE, LIN4M, acc, user);
                    assert_eq!(r, pf(LIN4M, pf::P | pf::RSVD | w | u), "bit {bit}");
                    assert_eq!(m.read_u32(PDE4M) & pte::A, 0);
                }
            }
        }
        // Reserved bits win over a protection violation too.
        let mut m = map4m((URW & !pte::US) | 1 << 13);
        assert_eq!(walk(&mut m, PG, PD, cr4::PSE, LIN4M, Access::Read, true), pf(LIN4M, 0xD));
        // Bit 12 (PAT) is not reserved, and the frame bits 31:22 are the address.
        let mut m = map4m(URW | 1 << 12);
        assert!(walk(&mut m, PG, PD, cr4::PSE, LIN4M, Access::Read, true).is_ok());
        // Not-present wins over reserved bits.
        let mut m = map4m(pte::RW | 1 << 13);
        assert_eq!(walk(&mut m, PG, PD, cr4::PSE, LIN4M, Access::Read, false), pf(LIN4M, 0));
    }

    #[test]
    fn faulting_walks_leave_accessed_and_dirty_clear() {
        let mut m = map4k(URW, URW & !pte::RW);
        assert!(walk(&mut m, PG, PD, 0, LIN4K, Access::Write, true).is_err());
        assert_eq!(m.read_u32(PDE4K), PT | URW);
        assert_eq!(m.read_u32(PTE4K), 0x5000 | (URW & !pte::RW));
        let mut m = map4k(URW, URW & !pte::P);
        assert!(walk(&mut m, PG, PD, 0, LIN4K, Access::Read, false).is_err());
        assert_eq!(m.read_u32(PDE4K), PT | URW, "chosen behaviour: no PDE.A on a PTE fault");
        let mut m = map4m(URW & !pte::US);
        assert!(walk(&mut m, PG, PD, cr4::PSE, LIN4M, Access::Write, true).is_err());
        assert_eq!(m.read_u32(PDE4M), 0x00C0_0000 | pte::PS | (URW & !pte::US));
    }

    #[test]
    fn entries_are_written_only_when_a_bit_changes() {
        let mut m = map4k(URW, URW);
        walk(&mut m, PG, PD, 0, LIN4K, Access::Read, false).unwrap();
        m.clear_dirty();
        walk(&mut m, PG, PD, 0, LIN4K, Access::Read, false).unwrap();
        assert_eq!(m.dirty_pages().count(), 0, "A already set: no write");
        walk(&mut m, PG, PD, 0, LIN4K, Access::Write, false).unwrap();
        assert_eq!(m.dirty_pages().collect::<Vec<_>>(), vec![(PT / 0x1000) as usize], "only the PTE gains D");
        m.clear_dirty();
        let t = walk(&mut m, PG, PD, 0, LIN4K, Access::Write, false).unwrap();
        assert!(t.dirty);
        assert_eq!(m.dirty_pages().count(), 0, "A and D already set: no write");
    }

    #[test]
    fn paging_off_is_the_identity() {
        let mut m = mem();
        m.write_u32(PD, 0xDEAD_BEEF);
        for cr0 in [0, cr0::PE, cr0::PE | cr0::WP] {
            let t = walk(&mut m, cr0, PD, cr4::PSE, 0x1234_5678, Access::Write, true).unwrap();
            assert_eq!(t.pa, 0x1234_5678);
            assert!(t.user && t.writable && t.dirty && !t.global && !t.large);
        }
        assert_eq!(m.read_u32(PD), 0xDEAD_BEEF);
    }

    #[test]
    fn tables_outside_ram_do_not_crash() {
        let mut m = mem();
        // CR3 beyond RAM: every PDE reads all ones (present, PS, reserved bits set).
        let r = walk(&mut m, PG, 0xFFFF_F000, cr4::PSE, 0xFFFF_FFFF, Access::Write, true);
        assert_eq!(r, pf(0xFFFF_FFFF, pf::P | pf::RSVD | pf::WR | pf::US));
        let t = walk(&mut m, PG, 0xFFFF_F000, 0, 0xFFFF_FFFF, Access::Write, true).unwrap();
        assert_eq!(t.pa, 0xFFFF_FFFF);
    }

    #[test]
    fn translate_walks_on_a_miss_and_hits_afterwards() {
        let mut m = map4k(URW, URW & !pte::RW);
        m.write_u32(PDE4M, 0x00C0_0000 | pte::PS | URW);
        let mut tlb = Tlb::new();
        let cr = [PG_WP, 0, 0, PD, cr4::PSE];

        // Miss → walk → insert; then hit.
        assert_eq!(translate(&mut tlb, &mut m, &cr, LIN4K, Access::Read, true), Ok(0x5ABC));
        assert_eq!((tlb.stats.hits, tlb.stats.misses), (0, 1));
        assert_eq!(translate(&mut tlb, &mut m, &cr, LIN4K + 4, Access::Execute, true), Ok(0x5AC0));
        assert_eq!((tlb.stats.hits, tlb.stats.misses), (1, 1));

        // A write to the read-only page misses, walks and faults; the fault drops the entry.
        let r = translate(&mut tlb, &mut m, &cr, LIN4K, Access::Write, true);
        assert_eq!(r, Err(Exception::PageFault { addr: LIN4K, code: pf::P | pf::WR | pf::US }));
        assert_eq!(tlb.stats.page_flushes, 1);
        // The guest's handler makes it writable; no INVLPG needed after the fault.
        m.write_u32(PTE4K, m.read_u32(PTE4K) | pte::RW);
        assert_eq!(translate(&mut tlb, &mut m, &cr, LIN4K, Access::Write, true), Ok(0x5ABC));
        assert_ne!(m.read_u32(PTE4K) & pte::D, 0);
        assert_eq!(translate(&mut tlb, &mut m, &cr, LIN4K, Access::Write, true), Ok(0x5ABC));
        assert_eq!((tlb.stats.hits, tlb.stats.misses), (2, 3));

        // A stale entry is used until it is invalidated, as on silicon.
        m.write_u32(PTE4K, 0x6000 | URW);
        assert_eq!(translate(&mut tlb, &mut m, &cr, LIN4K, Access::Read, false), Ok(0x5ABC));
        tlb.flush_page(LIN4K);
        assert_eq!(translate(&mut tlb, &mut m, &cr, LIN4K, Access::Read, false), Ok(0x6ABC));

        // 4 MiB page: the first write to a clean page misses once more, to set D.
        assert_eq!(translate(&mut tlb, &mut m, &cr, LIN4M, Access::Read, false), Ok(0x00C9_ABCD));
        let misses = tlb.stats.misses;
        assert_eq!(translate(&mut tlb, &mut m, &cr, LIN4M, Access::Write, false), Ok(0x00C9_ABCD));
        assert_eq!(tlb.stats.misses, misses + 1);
        assert_ne!(m.read_u32(PDE4M) & pte::D, 0);
        assert_eq!(translate(&mut tlb, &mut m, &cr, LIN4M + 1, Access::Write, false), Ok(0x00C9_ABCE));
        assert_eq!(tlb.stats.misses, misses + 1);
    }
}
