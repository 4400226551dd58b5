//! Kernel "pm-paging": 32-bit paging with 4 KiB and 4 MiB pages (SDM Vol. 3A, chapter 4).
//!
//! Points the SDM settles:
//! - Access rights (4.6): a user-mode access needs U/S = 1 in both the PDE and the PTE; a
//!   user-mode write needs R/W = 1 in both; a supervisor-mode write needs them only when
//!   CR0.WP = 1. Supervisor reads of user pages are allowed (no SMAP here).
//! - #PF error code (4.7): bit 0 P (0 = not present, 1 = protection or reserved bit), bit 1
//!   W/R, bit 2 U/S (CPL 3), bit 3 RSVD; without PAE/NX there is no I/D bit, so an
//!   instruction fetch reports as a read. CR2 holds the linear address that faulted — for an
//!   instruction that straddles into a not-present page, the first byte of that page — and
//!   the saved EIP is the faulting instruction's.
//! - In a 4 MiB PDE (CR4.PSE = 1), bit 21 is reserved (Table 4-4), and bits 20:13 are
//!   address bits 39:32 that lie beyond MAXPHYADDR here, so a PDE with bits 21:13 set faults
//!   with RSVD = 1 (and P = 1) whatever the access.
//! - Accessed and dirty (4.8): a successful access sets A in the PDE and PTE used; a write
//!   sets D in the PTE (or in a 4 MiB PDE); a read leaves D alone.
//! - TLB (4.10.4): after INVLPG, after a CR3 write (for non-global pages) and after clearing
//!   CR4.PGE (for all pages), the next access uses the paging structures as they are in
//!   memory. Whether a stale translation is used *before* that is implementation-specific,
//!   so nothing here depends on it.

use iced_x86::code_asm::*;

use super::rt::*;
use crate::asm::{Asm, Mem32, DEBUG_EXIT};

/// The page directory and page tables.
const PD: u32 = PAGE_AREA;
/// Identity map of 0–4 MiB, 4 KiB pages, user read/write.
const PT0: u32 = PAGE_AREA + 0x1000;
/// Test pages at [`V`].
const PT_TEST: u32 = PAGE_AREA + 0x2000;
/// Page table under a supervisor-only PDE (virtual [`V_SUP_PDE`]).
const PT_SUP: u32 = PAGE_AREA + 0x3000;
/// Page table under a read-only PDE (virtual [`V_RO_PDE`]).
const PT_RO: u32 = PAGE_AREA + 0x4000;

/// PDE/PTE bits (SDM Tables 4-4 to 4-6).
const PG_P: u32 = 1 << 0;
const PG_RW: u32 = 1 << 1;
const PG_US: u32 = 1 << 2;
const PG_A: u32 = 1 << 5;
const PG_D: u32 = 1 << 6;
const PG_PS: u32 = 1 << 7;
const PG_G: u32 = 1 << 8;
/// P, R/W and U/S.
const PG_URW: u32 = PG_P | PG_RW | PG_US;

/// Physical test pages, each starting with a marker dword.
const PHYS_A: u32 = SCRATCH + 0x1_0000;
const PHYS_B: u32 = SCRATCH + 0x1_1000;
const PHYS_C: u32 = SCRATCH + 0x1_2000;
const PHYS_CODE: u32 = SCRATCH + 0x1_3000;
const MARK_A: u32 = 0xAAAA_0001;
const MARK_B: u32 = 0xBBBB_0002;
const MARK_C: u32 = 0xCCCC_0003;

/// Virtual test area (PDE 2 → PT_TEST); page `i` is `V + i * 4096`.
const V: u32 = 0x0080_0000;
/// Test page indexes in PT_TEST.
const PAGE_A: u32 = 0;
const PAGE_A_ALIAS: u32 = 1;
const PAGE_ABSENT: u32 = 2;
const PAGE_USER_RO: u32 = 3;
const PAGE_SUP: u32 = 4;
const PAGE_SUP_RO: u32 = 5;
const PAGE_AD: u32 = 6;
const PAGE_TLB: u32 = 7;
const PAGE_GLOBAL: u32 = 8;
const PAGE_CODE: u32 = 9;
const PAGE_CODE_NEXT: u32 = 10;
/// Virtual page under a supervisor-only PDE whose PTE allows user access.
const V_SUP_PDE: u32 = 0x00C0_0000;
/// Virtual page under a not-present PDE.
const V_NO_PDE: u32 = 0x0100_0000;
/// Virtual page under a read-only PDE whose PTE allows writes.
const V_RO_PDE: u32 = 0x0140_0000;
/// A 4 MiB user read/write page onto physical 0.
const V_BIG: u32 = 0x8000_0000;
/// A 4 MiB PDE with bits 21:13 set.
const V_RSVD: u32 = 0x8040_0000;
/// A 4 MiB supervisor-only page onto physical 0.
const V_BIG_SUP: u32 = 0x8080_0000;

/// Address of page `i` of the test area, and of its PTE.
const fn page(i: u32) -> u32 {
    V + i * 0x1000
}
const fn pte(i: u32) -> u32 {
    PT_TEST + 4 * i
}
/// Address of the PDE for `linear`.
const fn pde(linear: u32) -> u32 {
    PD + 4 * (linear >> 22)
}

pub(super) fn run(p: &mut Program) -> Asm {
    p.section("paging on: identity map, 4k and 4m pages, aliases", basics)?;
    p.section("page-fault error codes and cr2", error_codes)?;
    p.section("instruction fetches", fetches)?;
    p.section("accessed and dirty bits", accessed_dirty)?;
    p.section("cr0.wp", write_protect)?;
    p.section("tlb invalidation", tlb)
}

/// Builds the paging structures, loads CR3, sets CR4.PSE and turns paging on (CR0.WP as
/// `wp`). Clobbers EAX, ECX, EDI.
fn paging_on(p: &mut Program, wp: bool) -> Asm {
    p.fill(PAGE_AREA, 0x5000, 0)?;
    // PT0: identity, user read/write.
    let mut next = p.label();
    p.a.xor(ecx, ecx)?;
    p.bind(&mut next)?;
    p.a.mov(eax, ecx)?;
    p.a.shl(eax, 12)?;
    p.a.or(eax, PG_URW)?;
    p.a.mov(dword_ptr(ecx * 4 + PT0), eax)?;
    p.a.inc(ecx)?;
    p.a.cmp(ecx, 1024)?;
    p.a.jb(next)?;
    for (linear, value) in [
        (0, PT0 | PG_URW),
        (V, PT_TEST | PG_URW),
        (V_SUP_PDE, PT_SUP | PG_P | PG_RW),
        (V_RO_PDE, PT_RO | PG_P | PG_US),
        (V_BIG, PG_PS | PG_URW),
        (V_RSVD, 0x0040_0000 | 0x003F_E000 | PG_PS | PG_URW),
        (V_BIG_SUP, PG_PS | PG_P | PG_RW),
    ] {
        p.a.mov(dword_ptr(pde(linear)), value)?;
    }
    p.a.mov(dword_ptr(PT_SUP), PHYS_B | PG_URW)?;
    p.a.mov(dword_ptr(PT_RO), PHYS_B | PG_URW)?;
    for (i, value) in [
        (PAGE_A, PHYS_A | PG_URW),
        (PAGE_A_ALIAS, PHYS_A | PG_URW),
        // Not present: the other bits do not matter.
        (PAGE_ABSENT, PHYS_C | PG_RW | PG_US),
        (PAGE_USER_RO, PHYS_B | PG_P | PG_US),
        (PAGE_SUP, PHYS_B | PG_P | PG_RW),
        (PAGE_SUP_RO, PHYS_B | PG_P),
        (PAGE_AD, PHYS_C | PG_URW),
        (PAGE_TLB, PHYS_A | PG_URW),
        (PAGE_GLOBAL, PHYS_A | PG_URW | PG_G),
        (PAGE_CODE, PHYS_CODE | PG_URW),
    ] {
        p.a.mov(dword_ptr(pte(i)), value)?;
    }
    for (addr, mark) in [(PHYS_A, MARK_A), (PHYS_B, MARK_B), (PHYS_C, MARK_C)] {
        p.a.mov(dword_ptr(addr), mark)?;
    }
    p.a.mov(eax, PD)?;
    p.a.mov(cr3, eax)?;
    p.a.mov(eax, CR4_PSE)?;
    p.a.mov(cr4, eax)?;
    p.a.mov(eax, cr0)?;
    p.a.or(eax, CR0_PG | CR0_PE)?;
    if wp {
        p.a.or(eax, CR0_WP)?;
    } else {
        p.a.and(eax, !CR0_WP)?;
    }
    p.a.mov(cr0, eax)
}

/// A #PF with `code` at `addr` from `instr` at ring 0 (after `setup`), checked with CR2.
fn pf0(
    p: &mut Program,
    name: &str,
    code: u32,
    addr: u32,
    setup: impl FnOnce(&mut Program) -> Asm,
    instr: impl FnOnce(&mut Program) -> Asm,
) -> Asm {
    p.case(name, Expect::Fault(14, Some(code)), setup, instr)?;
    p.check(Mem32(EXC_CR2), addr, &format!("{name}: cr2"))
}

/// The same at ring 3.
fn pf3(
    p: &mut Program,
    name: &str,
    code: u32,
    addr: u32,
    setup: impl FnOnce(&mut Program) -> Asm,
    instr: impl FnOnce(&mut Program) -> Asm,
) -> Asm {
    p.ring3_case(name, FL_1, Expect::Fault(14, Some(code)), setup, instr)?;
    p.check(Mem32(EXC_CR2), addr, &format!("{name}: cr2"))
}

fn read(addr: u32) -> impl FnOnce(&mut Program) -> Asm {
    move |p| p.a.mov(eax, dword_ptr(addr))
}

fn write(addr: u32) -> impl FnOnce(&mut Program) -> Asm {
    move |p| p.a.mov(dword_ptr(addr), ebx)
}

fn nothing(_: &mut Program) -> Asm {
    Ok(())
}

fn basics(p: &mut Program) -> Asm {
    paging_on(p, false)?;
    p.a.mov(eax, cr0)?;
    p.check_masked(eax, CR0_PG | CR0_PE, CR0_PG | CR0_PE, "cr0.pg and pe set")?;
    p.check(Mem32(MB_MAGIC), 0x2BAD_B002, "identity-mapped kernel data reads the same")?;
    p.case("read through a 4k page", Expect::Nothing, nothing, |p| p.a.mov(esi, dword_ptr(page(PAGE_A))))?;
    p.check(esi, MARK_A, "4k page maps its physical page")?;
    p.a.mov(dword_ptr(page(PAGE_A_ALIAS) + 8), 0x0A11_A500)?;
    p.check(
        Mem32(page(PAGE_A) + 8),
        0x0A11_A500,
        "a write through an alias shows through the other mapping",
    )?;
    p.check(Mem32(V_BIG + PHYS_B), MARK_B, "4m page onto physical 0: reads physical memory")?;
    p.a.mov(dword_ptr(V_BIG + PHYS_C + 4), 0x0B16_0004)?;
    p.check(Mem32(PHYS_C + 4), 0x0B16_0004, "4m page: a write lands in physical memory")?;
    p.check(Mem32(V_SUP_PDE), MARK_B, "page under a supervisor pde: supervisor read")?;
    p.ring3_case("user read of a user page", FL_1, Expect::Nothing, nothing, |p| {
        p.a.mov(esi, dword_ptr(page(PAGE_A)))
    })?;
    p.check(Mem32(EXC_ESI), MARK_A, "user read of a user page: value")?;
    p.ring3_case(
        "user read of a user read-only page",
        FL_1,
        Expect::Nothing,
        nothing,
        read(page(PAGE_USER_RO)),
    )?;
    p.ring3_case("user write to a 4m user page", FL_1, Expect::Nothing, nothing, write(V_BIG + PHYS_C + 8))?;
    p.case(
        "supervisor write to a user read-only page, wp=0",
        Expect::Nothing,
        |p| p.a.mov(ebx, 0x5EB0_0001),
        write(page(PAGE_USER_RO) + 12),
    )?;
    p.check(Mem32(PHYS_B + 12), 0x5EB0_0001, "supervisor write with wp=0: value landed")
}

fn error_codes(p: &mut Program) -> Asm {
    paging_on(p, true)?;
    let absent = page(PAGE_ABSENT);
    let set_ebx = |p: &mut Program| p.a.mov(ebx, 0x0BAD_BAD0);
    pf0(p, "supervisor read, not present", 0x0, absent, nothing, read(absent))?;
    pf0(p, "supervisor write, not present", 0x2, absent + 4, set_ebx, write(absent + 4))?;
    pf3(p, "user read, not present", 0x4, absent + 8, nothing, read(absent + 8))?;
    pf3(p, "user write, not present", 0x6, absent + 12, set_ebx, write(absent + 12))?;
    pf0(p, "supervisor read, pde not present", 0x0, V_NO_PDE + 16, nothing, read(V_NO_PDE + 16))?;
    pf3(p, "user write, pde not present", 0x6, V_NO_PDE, set_ebx, write(V_NO_PDE))?;
    pf0(
        p,
        "supervisor write, read-only page, wp=1",
        0x3,
        page(PAGE_SUP_RO) + 4,
        set_ebx,
        write(page(PAGE_SUP_RO) + 4),
    )?;
    pf0(
        p,
        "supervisor write, user read-only page, wp=1",
        0x3,
        page(PAGE_USER_RO),
        set_ebx,
        write(page(PAGE_USER_RO)),
    )?;
    pf3(p, "user read, supervisor page", 0x5, page(PAGE_SUP) + 8, nothing, read(page(PAGE_SUP) + 8))?;
    pf3(p, "user write, supervisor page", 0x7, page(PAGE_SUP), set_ebx, write(page(PAGE_SUP)))?;
    pf3(
        p,
        "user write, user read-only page",
        0x7,
        page(PAGE_USER_RO) + 4,
        set_ebx,
        write(page(PAGE_USER_RO) + 4),
    )?;
    pf3(p, "user read, supervisor pde over a user pte", 0x5, V_SUP_PDE, nothing, read(V_SUP_PDE))?;
    pf3(p, "user write, read-only pde over a writable pte", 0x7, V_RO_PDE + 4, set_ebx, write(V_RO_PDE + 4))?;
    pf0(p, "supervisor write, read-only pde, wp=1", 0x3, V_RO_PDE + 8, set_ebx, write(V_RO_PDE + 8))?;
    pf3(p, "user read, supervisor 4m page", 0x5, V_BIG_SUP + 0x1234, nothing, read(V_BIG_SUP + 0x1234))?;
    pf0(p, "supervisor read, reserved bits in a 4m pde", 0x9, V_RSVD + 0x100, nothing, read(V_RSVD + 0x100))?;
    pf0(
        p,
        "supervisor write, reserved bits in a 4m pde",
        0xB,
        V_RSVD + 0x200,
        set_ebx,
        write(V_RSVD + 0x200),
    )?;
    pf3(p, "user read, reserved bits in a 4m pde", 0xD, V_RSVD + 0x300, nothing, read(V_RSVD + 0x300))?;
    pf3(p, "user write, reserved bits in a 4m pde", 0xF, V_RSVD + 0x400, set_ebx, write(V_RSVD + 0x400))?;
    p.check(Mem32(PHYS_B), MARK_B, "faulting writes left the read-only page alone")?;
    // A fault leaves the destination register alone.
    pf0(p, "mov eax, [not present]", 0x0, absent, |p| p.a.mov(eax, 0x0123_4567), read(absent))?;
    p.check(Mem32(EXC_EAX), 0x0123_4567, "mov eax, [not present]: eax unchanged")
}

fn fetches(p: &mut Program) -> Asm {
    paging_on(p, false)?;
    // PHYS_CODE: `mov ecx, 1234ABCDh; ret` at 0, and the first 2 bytes of `mov eax, imm32`
    // at FFEh, so that the instruction runs on into the not-present page after it.
    p.a.mov(dword_ptr(PHYS_CODE), 0x34AB_CDB9)?;
    p.a.mov(word_ptr(PHYS_CODE + 4), 0xC312)?;
    p.a.mov(word_ptr(PHYS_CODE + 0xFFE), 0x55B8)?;
    p.case(
        "call code through a 4k mapping",
        Expect::Nothing,
        |p| p.a.mov(ebx, page(PAGE_CODE)),
        |p| p.a.call(ebx),
    )?;
    p.check(ecx, 0x1234_ABCD, "code through a 4k mapping ran")?;
    let straddle = page(PAGE_CODE) + 0xFFE;
    p.case(
        "instruction straddling into a not-present page",
        Expect::Vector(14, Some(0)),
        |p| p.a.mov(ebx, straddle),
        |p| p.a.jmp(ebx),
    )?;
    p.check(Mem32(EXC_EIP), straddle, "straddling instruction: saved eip is its first byte")?;
    p.check(Mem32(EXC_CR2), page(PAGE_CODE_NEXT), "straddling instruction: cr2 is the not-present page")?;
    let absent = page(PAGE_ABSENT) + 0x10;
    p.case(
        "jmp to a not-present page",
        Expect::Vector(14, Some(0)),
        |p| p.a.mov(ebx, absent),
        |p| p.a.jmp(ebx),
    )?;
    p.check(Mem32(EXC_EIP), absent, "fetch from a not-present page: saved eip is the target")?;
    p.check(Mem32(EXC_CR2), absent, "fetch from a not-present page: cr2")?;
    let sup = page(PAGE_SUP);
    p.ring3_case(
        "user jmp to a supervisor page",
        FL_1,
        Expect::Vector(14, Some(5)),
        |p| p.a.mov(ebx, sup),
        |p| p.a.jmp(ebx),
    )?;
    p.check(Mem32(EXC_EIP), sup, "user fetch from a supervisor page: saved eip is the target")?;
    p.check(Mem32(EXC_CR2), sup, "user fetch from a supervisor page: cr2")?;
    p.check(Mem32(EXC_CS), u32::from(UCODE), "user fetch from a supervisor page: saved cs")
}

fn accessed_dirty(p: &mut Program) -> Asm {
    paging_on(p, false)?;
    let ad = PG_A | PG_D;
    let v = page(PAGE_AD);
    p.check_masked(Mem32(pte(PAGE_AD)), ad, 0, "fresh pte: a and d clear")?;
    p.a.mov(dword_ptr(pde(V)), PT_TEST | PG_URW)?;
    p.a.invlpg(byte_ptr(v))?;
    p.a.mov(eax, dword_ptr(v))?;
    p.check_masked(Mem32(pte(PAGE_AD)), ad, PG_A, "after a read: pte a set, d clear")?;
    p.check_masked(Mem32(pde(V)), PG_A, PG_A, "after a read: pde a set")?;
    p.a.mov(dword_ptr(v + 4), eax)?;
    p.check_masked(Mem32(pte(PAGE_AD)), ad, ad, "after a write: pte d set")?;
    // A write as the first access sets both.
    p.a.mov(dword_ptr(pte(PAGE_AD)), PHYS_C | PG_URW)?;
    p.a.invlpg(byte_ptr(v))?;
    p.a.mov(dword_ptr(v + 8), eax)?;
    p.check_masked(Mem32(pte(PAGE_AD)), ad, ad, "a first access that writes: pte a and d set")?;
    // A user read sets A too.
    p.a.mov(dword_ptr(pte(PAGE_AD)), PHYS_C | PG_URW)?;
    p.a.invlpg(byte_ptr(v))?;
    p.ring3_case("user read for the accessed bit", FL_1, Expect::Nothing, nothing, read(v))?;
    p.check_masked(Mem32(pte(PAGE_AD)), ad, PG_A, "after a user read: pte a set, d clear")?;
    // 4 MiB page: A and D live in the PDE.
    p.a.mov(dword_ptr(pde(V_BIG)), PG_PS | PG_URW)?;
    p.a.invlpg(byte_ptr(V_BIG + PHYS_C))?;
    p.a.mov(eax, dword_ptr(V_BIG + PHYS_C))?;
    p.check_masked(Mem32(pde(V_BIG)), ad, PG_A, "4m page after a read: pde a set, d clear")?;
    p.a.mov(dword_ptr(V_BIG + PHYS_C + 12), eax)?;
    p.check_masked(Mem32(pde(V_BIG)), ad, ad, "4m page after a write: pde d set")?;
    // A not-present fault sets nothing.
    p.a.mov(dword_ptr(pde(V)), PT_TEST | PG_URW)?;
    pf0(p, "read of a not-present page", 0, page(PAGE_ABSENT), nothing, read(page(PAGE_ABSENT)))?;
    p.check_masked(Mem32(pte(PAGE_ABSENT)), ad, 0, "a not-present fault sets no a or d in the pte")
}

fn write_protect(p: &mut Program) -> Asm {
    paging_on(p, false)?;
    let ro = page(PAGE_SUP_RO) + 0x20;
    p.case(
        "supervisor write to a read-only page, wp=0",
        Expect::Nothing,
        |p| p.a.mov(ebx, 0x0000_0A0A),
        write(ro),
    )?;
    p.check(Mem32(PHYS_B + 0x20), 0x0A0A, "wp=0: the write landed")?;
    p.a.mov(eax, cr0)?;
    p.a.or(eax, CR0_WP)?;
    p.a.mov(cr0, eax)?;
    pf0(p, "supervisor write to a read-only page, wp=1", 0x3, ro, |p| p.a.mov(ebx, 0x0000_0B0B), write(ro))?;
    p.check(Mem32(PHYS_B + 0x20), 0x0A0A, "wp=1: the write did not land")?;
    p.case("supervisor read of a read-only page, wp=1", Expect::Nothing, nothing, read(ro))?;
    p.a.mov(eax, cr0)?;
    p.a.and(eax, !CR0_WP)?;
    p.a.mov(cr0, eax)?;
    p.case(
        "supervisor write to a read-only page, wp=0 again",
        Expect::Nothing,
        |p| p.a.mov(ebx, 0x0000_0C0C),
        write(ro),
    )?;
    p.check(Mem32(PHYS_B + 0x20), 0x0C0C, "wp=0 again: the write landed")?;
    p.ring3_case(
        "user write to a read-only page, wp=0",
        FL_1,
        Expect::Fault(14, Some(7)),
        nothing,
        write(page(PAGE_USER_RO)),
    )
}

fn tlb(p: &mut Program) -> Asm {
    paging_on(p, false)?;
    let v = page(PAGE_TLB);
    // INVLPG.
    p.a.mov(eax, dword_ptr(v))?;
    p.a.mov(dword_ptr(pte(PAGE_TLB)), PHYS_B | PG_URW)?;
    p.a.invlpg(byte_ptr(v))?;
    p.check(Mem32(v), MARK_B, "after changing a pte and invlpg: the new mapping")?;
    // A CR3 write flushes non-global translations.
    p.a.mov(dword_ptr(pte(PAGE_TLB)), PHYS_C | PG_URW)?;
    p.a.mov(eax, cr3)?;
    p.a.mov(cr3, eax)?;
    p.check(Mem32(v), MARK_C, "after changing a pte and reloading cr3: the new mapping")?;
    // Global pages: with CR4.PGE a CR3 write may keep them (not checked); INVLPG and clearing
    // CR4.PGE do not.
    let g = page(PAGE_GLOBAL);
    p.a.mov(eax, CR4_PSE | CR4_PGE)?;
    p.a.mov(cr4, eax)?;
    p.a.mov(eax, dword_ptr(g))?;
    p.check_eax(MARK_A, "global page: mapped")?;
    p.a.mov(dword_ptr(pte(PAGE_GLOBAL)), PHYS_B | PG_URW | PG_G)?;
    p.a.invlpg(byte_ptr(g))?;
    p.check(Mem32(g), MARK_B, "global page after invlpg: the new mapping")?;
    p.a.mov(dword_ptr(pte(PAGE_GLOBAL)), PHYS_C | PG_URW | PG_G)?;
    p.a.mov(eax, cr3)?;
    p.a.mov(cr3, eax)?;
    p.a.mov(eax, CR4_PSE)?;
    p.a.mov(cr4, eax)?;
    p.check(Mem32(g), MARK_C, "global page after clearing cr4.pge: the new mapping")?;
    // Turning paging off and on again also starts afresh.
    p.a.mov(dword_ptr(pte(PAGE_TLB)), PHYS_A | PG_URW)?;
    p.a.mov(eax, cr0)?;
    p.a.and(eax, !CR0_PG)?;
    p.a.mov(cr0, eax)?;
    p.a.or(eax, CR0_PG)?;
    p.a.mov(cr0, eax)?;
    p.check(Mem32(v), MARK_A, "after cr0.pg off and on: the new mapping")?;
    // A 4 MiB page replaced by a page table.
    p.a.mov(dword_ptr(pde(V_BIG)), PT_TEST | PG_URW)?;
    p.a.invlpg(byte_ptr(V_BIG))?;
    p.check(Mem32(V_BIG), MARK_A, "4m pde replaced by a page table, invlpg: the table's page")
}

/// Kernel "pm-control-registers": invalid writes to CR0 are #GP(0) and change nothing (Vol.
/// 2, MOV—Move to/from Control Registers, Protected Mode Exceptions: CR0 with NW = 1 and
/// CD = 0, CR0 with PG = 1 and PE = 0). Kept apart from
/// "pm-paging" because an emulator that lets PE go while PG stays on (QEMU 7.2) loses the
/// kernel, and that should not hide the other checks.
pub(super) fn control_registers(p: &mut Program) -> Asm {
    p.section("invalid cr0 values", |p| {
        p.case(
            "mov cr0 with nw=1 cd=0",
            Expect::Fault(13, Some(0)),
            |p| {
                p.a.mov(eax, cr0)?;
                p.a.and(eax, !CR0_CD)?;
                p.a.or(eax, CR0_NW)
            },
            |p| p.a.mov(cr0, eax),
        )?;
        p.a.mov(eax, cr0)?;
        p.check_masked(eax, CR0_NW | CR0_PE, CR0_PE, "after the #GP: cr0.nw still clear")?;
        paging_on(p, false)?;
        // Without the #GP the processor would be left in a mode this code cannot run in, so
        // the path after the MOV stops the machine at once with bytes that mean
        // `mov al, 1; out 0F4h, al; hlt` in 16- and 32-bit code alike (exit status 3).
        let mut at = p.label();
        let mut resume = p.label();
        let at_addr = p.addr(at);
        let resume_addr = p.addr(resume);
        p.arm(resume)?;
        p.a.mov(eax, cr0)?;
        p.a.and(eax, !CR0_PE)?;
        p.bind(&mut at)?;
        p.a.mov(cr0, eax)?;
        p.a.db(&[0xB0, 0x01, 0xE6, DEBUG_EXIT as u8, 0xF4, 0xEB, 0xFD])?;
        p.bind(&mut resume)?;
        p.disarm()?;
        p.check_exception("mov cr0 with pg=1 pe=0", Expect::Fault(13, Some(0)), at_addr, resume_addr)?;
        p.a.mov(eax, cr0)?;
        p.check_masked(eax, CR0_PG | CR0_PE, CR0_PG | CR0_PE, "after the #GP: cr0.pg and pe still set")
    })
}
