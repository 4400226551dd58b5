//! Kernel "pm-descriptors": segment-register loads and their exceptions, segment limits and
//! types on memory accesses, the descriptor-inspecting instructions, the table registers, the
//! LDT and the accessed bit (SDM Vol. 3A, 3.4–3.5 and 5.1–5.7; Vol. 2, MOV, POP, LDS/LES/LSS,
//! LAR, LSL, VERR/VERW, ARPL, SGDT/SIDT/SLDT/STR/SMSW, LMSW, LLDT).
//!
//! Error codes: a selector error code is the selector with its two low bits replaced by the
//! IDT and EXT flags (SDM 6.13), both 0 here, so `#GP(sel)` below is `sel & ~3` (with TI
//! kept for LDT selectors). The checks that apply when DS, ES, FS or GS is loaded come from
//! the MOV pseudo-code: a null selector is fine; then, in order, the index must be inside the
//! table, the descriptor must be data or readable code, and for data and non-conforming code
//! both RPL and CPL must be ≤ DPL — all #GP(sel) — and only then must it be present (#NP(sel)).
//! For SS: null is #GP(0); index, RPL = CPL, writable data and DPL = CPL are #GP(sel); not
//! present is #SS(sel).
//!
//! Memory accesses through a segment (SDM 5.3): outside the limit, #GP(0) (#SS(0) for SS);
//! a write to a read-only data or any code segment, a read of an execute-only code segment
//! and any access through a null DS/ES/FS/GS are #GP(0) (Vol. 2, MOV, Protected Mode
//! Exceptions). For expand-down segments the valid offsets are limit + 1 up to FFFFh (B = 0)
//! or FFFFFFFFh (B = 1); with G = 1 the limit is scaled to `limit << 12 | FFFh` (3.4.5).

use iced_x86::code_asm::*;

use super::rt::*;
use crate::asm::flags::ZF;
use crate::asm::{Asm, Mem32, Mem8};

/// Data, read/write, DPL 0, not present.
const NP_DATA: u16 = 0x30;
/// Flat data, read/write, DPL 3.
const DATA3: u16 = 0x38;
/// Flat execute-only code, DPL 0.
const CODE_XONLY: u16 = 0x40;
/// Flat execute/read code, DPL 0.
const CODE_READ: u16 = 0x48;
/// Flat read-only data, DPL 0.
const DATA_RO: u16 = 0x50;
/// Expand-down data, B = 0, base `ED_BASE`, limit FFFh.
const ED16: u16 = 0x58;
/// Expand-down data, B = 1, base `ED_BASE`, limit FFFh.
const ED32: u16 = 0x60;
/// Data at `LIM_BASE`, byte-granular limit FFFh.
const LIM_BYTE: u16 = 0x68;
/// Data at `LIM_BASE`, 4 KiB-granular limit 0 (FFFh).
const LIM_4K: u16 = 0x70;
/// Data at `LIM_BASE`, 4 KiB-granular limit 1 (1FFFh).
const LIM_4K1: u16 = 0x78;
/// The LDT at `LDT` (16 entries).
const LDT_SEL: u16 = 0x80;
/// Flat data with the accessed bit clear.
const FRESH_DATA: u16 = 0x88;
/// An available 32-bit TSS (never loaded).
const TSS_AVAIL: u16 = 0x90;
/// A 32-bit call gate (offset 0, to KCODE).
const CALL_GATE_SEL: u16 = 0x98;
/// A 32-bit interrupt gate, which has no business in the GDT.
const INT_GATE_SEL: u16 = 0xA0;
/// A present system descriptor of reserved type 0.
const RESERVED_SYS: u16 = 0xA8;
/// Flat conforming execute/read code, DPL 0.
const CONFORMING: u16 = 0xB0;
/// Flat data, DPL 1.
const DATA1: u16 = 0xB8;
/// Flat execute/read code with the accessed bit clear.
const FRESH_CODE: u16 = 0xC0;
/// Data whose base the descriptor-cache test changes.
const CACHE: u16 = 0xC8;
/// Expand-down data, B = 1, G = 1, limit 0 (scaled: FFFh), base `ED_BASE`.
const ED4K: u16 = 0xD0;
/// An LDT descriptor that is not present.
const NP_LDT: u16 = 0xD8;
/// Flat data with the accessed bit clear, for SS.
const FRESH_STACK: u16 = 0xE0;

/// LDT entries (TI = 1): data at `LDT_DATA_BASE`, and a not-present data segment.
const LDT_DATA: u16 = 0x08 | 4;
const LDT_NP: u16 = 0x10 | 4;
/// A selector beyond the LDT's limit (7Fh: entries 0–15).
const LDT_BEYOND: u16 = 0x80 | 4;

/// Bases of the test segments.
const LIM_BASE: u32 = SCRATCH;
const LDT_DATA_BASE: u32 = SCRATCH + 0x2000;
const CACHE_OLD: u32 = SCRATCH + 0x3000;
const CACHE_NEW: u32 = SCRATCH + 0x4000;
const ED_BASE: u32 = SCRATCH + 0x1_0000;
/// A far pointer in memory for LDS/LSS.
const FAR_PTR: u32 = SCRATCH + 0x100;

/// The descriptor of every test selector.
fn descriptors() -> Vec<(u16, u64)> {
    let a = ACCESSED;
    vec![
        (NP_DATA, flat(DATA_RW | a)),
        (DATA3, flat(P | dpl(3) | DATA_RW | a)),
        (CODE_XONLY, flat(P | CODE_X | a)),
        (CODE_READ, flat(P | CODE_XR | a)),
        (DATA_RO, flat(P | DATA_R | a)),
        (ED16, seg(ED_BASE, 0xFFF, P | DATA_RW_DOWN | a, 0)),
        (ED32, seg(ED_BASE, 0xFFF, P | DATA_RW_DOWN | a, DB)),
        (LIM_BYTE, seg(LIM_BASE, 0xFFF, P | DATA_RW | a, DB)),
        (LIM_4K, seg(LIM_BASE, 0, P | DATA_RW | a, G | DB)),
        (LIM_4K1, seg(LIM_BASE, 1, P | DATA_RW | a, G | DB)),
        (LDT_SEL, seg(LDT, 0x7F, P | LDT_TYPE, 0)),
        (FRESH_DATA, flat(P | DATA_RW)),
        (TSS_AVAIL, seg(SCRATCH + 0x5000, 0x67, P | TSS32, 0)),
        (CALL_GATE_SEL, gate(KCODE, 0, P | CALL_GATE, 0)),
        (INT_GATE_SEL, gate(KCODE, 0, P | INT_GATE, 0)),
        (RESERVED_SYS, seg(0, 0xFFFF, P, 0)),
        (CONFORMING, flat(P | CODE_CXR | a)),
        (DATA1, flat(P | dpl(1) | DATA_RW | a)),
        (FRESH_CODE, flat(P | CODE_XR)),
        (CACHE, seg(CACHE_OLD, 0xFFF, P | DATA_RW | a, DB)),
        (ED4K, seg(ED_BASE, 0, P | DATA_RW_DOWN | a, G | DB)),
        (NP_LDT, seg(LDT, 0x7F, LDT_TYPE, 0)),
        (FRESH_STACK, flat(P | DATA_RW)),
    ]
}

/// The descriptor of `selector` in [`descriptors`].
fn desc(selector: u16) -> u64 {
    descriptors().into_iter().find(|&(s, _)| s == selector).map(|(_, d)| d).expect("a test selector")
}

/// LAR's 32-bit result for `selector`: the second dword masked with 00FxFF00h, where bits
/// 19:16 (the limit's high nibble) are undefined and left out of the comparison.
fn lar32(selector: u16) -> u32 {
    (desc(selector) >> 32) as u32 & 0x00F0_FF00
}

pub(super) fn run(p: &mut Program) -> Asm {
    p.section("set up the test descriptors", |p| {
        for (selector, d) in descriptors() {
            p.set_gdt(selector, d)?;
        }
        p.put_desc(LDT + u32::from(LDT_DATA & !7), seg(LDT_DATA_BASE, 0xFFF, P | DATA_RW | ACCESSED, DB))?;
        p.put_desc(LDT + u32::from(LDT_NP & !7), seg(LDT_DATA_BASE, 0xFFF, DATA_RW | ACCESSED, DB))?;
        p.a.mov(dword_ptr(LDT_DATA_BASE + 4), 0x1D71_D7A0)?;
        Ok(())
    })?;
    p.section("null selectors", null_selectors)?;
    p.section("selector and type checks on loads", load_checks)?;
    p.section("privilege checks on data loads", privilege_checks)?;
    p.section("code segments as data", code_as_data)?;
    p.section("limits and granularity", limits)?;
    p.section("expand-down segments", expand_down)?;
    p.section("LAR and LSL", lar_lsl)?;
    p.section("VERR and VERW", verr_verw)?;
    p.section("ARPL", arpl)?;
    p.section("table registers and the machine status word", table_registers)?;
    p.section("the LDT", ldt)?;
    p.section("accessed bit and the descriptor cache", accessed_and_cache)?;
    p.section("far-pointer loads and POP", far_pointers)
}

/// Reloads DS, ES, FS and GS with flat ring-0 data.
fn flat_segs(p: &mut Program) -> Asm {
    p.a.mov(ax, u32::from(KDATA))?;
    p.a.mov(ds, ax)?;
    p.a.mov(es, ax)?;
    p.a.mov(fs, ax)?;
    p.a.mov(gs, ax)
}

/// `mov sreg, selector` under test; the segment registers are flat again afterwards.
fn load(p: &mut Program, name: &str, sreg: AsmRegisterSegment, selector: u16, expect: Expect) -> Asm {
    p.case(name, expect, |p| p.a.mov(ax, u32::from(selector)), |p| p.a.mov(sreg, ax))?;
    p.a.mov(ax, u32::from(KDATA))?;
    p.a.mov(ss, ax)?;
    flat_segs(p)
}

/// #GP(`selector`), #NP, #SS with a selector error code.
fn gp(selector: u16) -> Expect {
    Expect::Fault(13, Some(u32::from(selector & !3)))
}

fn np(selector: u16) -> Expect {
    Expect::Fault(11, Some(u32::from(selector & !3)))
}

const GP0: Expect = Expect::Fault(13, Some(0));

/// A read (or write) of `[offset]` through DS = `selector` under test.
fn access(
    p: &mut Program,
    name: &str,
    selector: u16,
    expect: Expect,
    instr: impl FnOnce(&mut Program) -> Asm,
) -> Asm {
    p.case(name, expect, |p| p.load_sreg(ds, selector), instr)?;
    flat_segs(p)
}

fn null_selectors(p: &mut Program) -> Asm {
    p.case("mov ds, null", Expect::Nothing, |p| p.a.xor(eax, eax), |p| p.a.mov(ds, ax))?;
    p.sel_to_eax(ds)?;
    p.check_eax(0, "mov ds, null: ds reads 0")?;
    flat_segs(p)?;
    p.case("mov fs, 3 (null with rpl 3)", Expect::Nothing, |p| p.a.mov(eax, 3), |p| p.a.mov(fs, ax))?;
    p.sel_to_eax(fs)?;
    p.check_eax(3, "mov fs, 3: fs reads 3")?;
    flat_segs(p)?;
    access(p, "read through a null ds", 0, GP0, |p| p.a.mov(eax, dword_ptr(SCRATCH)))?;
    p.case(
        "stosb through a null es",
        GP0,
        |p| {
            p.load_sreg(es, 0)?;
            p.a.mov(edi, SCRATCH)
        },
        |p| p.a.stosb(),
    )?;
    flat_segs(p)?;
    load(p, "mov ss, null", ss, 0, GP0)?;
    load(p, "mov ss, 3 (null with rpl 3)", ss, 3, GP0)?;
    p.case("pop gs with null", Expect::Nothing, |p| p.a.push(0), |p| p.a.pop(gs))?;
    p.sel_to_eax(gs)?;
    p.check_eax(0, "pop gs, null: gs reads 0")?;
    flat_segs(p)
}

fn load_checks(p: &mut Program) -> Asm {
    load(p, "mov ds, beyond the gdt limit", ds, (GDT_ENTRIES * 8) as u16, gp((GDT_ENTRIES * 8) as u16))?;
    load(
        p,
        "mov es, beyond the gdt limit rpl 2",
        es,
        (GDT_ENTRIES * 8 + 0x18) as u16 | 2,
        gp((GDT_ENTRIES * 8 + 0x18) as u16),
    )?;
    // The last GDT entry is all zero: a system descriptor of type 0.
    let last = (GDT_ENTRIES * 8 - 8) as u16;
    load(p, "mov ds, an all-zero descriptor", ds, last, gp(last))?;
    load(p, "mov ds, ldt selector with a null ldtr", ds, LDT_DATA, gp(LDT_DATA))?;
    load(p, "mov ds, ldt descriptor", ds, LDT_SEL, gp(LDT_SEL))?;
    load(p, "mov ds, busy tss", ds, TSS0_SEL, gp(TSS0_SEL))?;
    load(p, "mov gs, call gate", gs, CALL_GATE_SEL, gp(CALL_GATE_SEL))?;
    load(p, "mov ds, not present", ds, NP_DATA, np(NP_DATA))?;
    // The privilege check comes before the present check: RPL 1 > DPL 0 is #GP, not #NP.
    load(p, "mov es, not present with rpl 1 > dpl 0", es, NP_DATA | 1, gp(NP_DATA))?;
    load(p, "mov ss, not present", ss, NP_DATA, Expect::Fault(12, Some(u32::from(NP_DATA))))?;
    load(p, "mov ss, code", ss, KCODE, gp(KCODE))?;
    load(p, "mov ss, read-only data", ss, DATA_RO, gp(DATA_RO))?;
    load(p, "mov ss, dpl 3 data at cpl 0", ss, DATA3, gp(DATA3))?;
    load(p, "mov ss, rpl 3 selector at cpl 0", ss, KDATA | 3, gp(KDATA))?;
    load(p, "mov ss, flat data", ss, KDATA, Expect::Nothing)?;
    // JMP far to a data segment (SDM Vol. 2, JMP: not a code segment, gate or TSS).
    let mut target = p.label();
    let target_addr = p.addr(target);
    p.case("jmp far to a data segment", gp(KDATA), |_| Ok(()), |p| p.a.jmp_far(KDATA, target_addr))?;
    p.bind(&mut target)?;
    p.case("call far to a data segment", gp(DATA3), |_| Ok(()), |p| p.a.call_far(DATA3, target_addr))
}

fn privilege_checks(p: &mut Program) -> Asm {
    load(p, "mov ds, dpl 0 data with rpl 3", ds, KDATA | 3, gp(KDATA))?;
    load(p, "mov ds, dpl 1 data with rpl 2", ds, DATA1 | 2, gp(DATA1))?;
    load(p, "mov ds, dpl 1 data with rpl 1", ds, DATA1 | 1, Expect::Nothing)?;
    load(p, "mov ds, dpl 3 data with rpl 0", ds, DATA3, Expect::Nothing)?;
    load(p, "mov fs, dpl 3 data with rpl 3", fs, DATA3 | 3, Expect::Nothing)?;
    load(p, "mov ds, conforming code with rpl 3", ds, CONFORMING | 3, Expect::Nothing)?;
    load(p, "mov ds, non-conforming code with rpl 3", ds, CODE_READ | 3, gp(CODE_READ))
}

fn code_as_data(p: &mut Program) -> Asm {
    p.a.mov(dword_ptr(SCRATCH + 0x10), 0xC0DE_DA7Au32)?;
    // The writes below aim at another dword, so that reads see 0xC0DEDA7A even where a
    // write that should fault does not.
    p.a.mov(dword_ptr(SCRATCH + 0x14), 0x57AB_1E00)?;
    load(p, "mov ds, execute-only code", ds, CODE_XONLY, gp(CODE_XONLY))?;
    access(p, "read through ds = readable code", CODE_READ, Expect::Nothing, |p| {
        p.a.mov(ebx, dword_ptr(SCRATCH + 0x10))
    })?;
    p.check(ebx, 0xC0DE_DA7A, "read through ds = readable code: value")?;
    access(p, "write through ds = readable code", CODE_READ, GP0, |p| {
        p.a.mov(dword_ptr(SCRATCH + 0x14), eax)
    })?;
    p.case("write through a cs override", GP0, |_| Ok(()), |p| p.a.mov(dword_ptr(SCRATCH + 0x14).cs(), eax))?;
    access(p, "read through ds = read-only data", DATA_RO, Expect::Nothing, |p| {
        p.a.mov(ecx, dword_ptr(SCRATCH + 0x10))
    })?;
    p.check(ecx, 0xC0DE_DA7A, "read through ds = read-only data: value")?;
    access(p, "write through ds = read-only data", DATA_RO, GP0, |p| {
        p.a.mov(dword_ptr(SCRATCH + 0x14), eax)
    })?;
    access(p, "inc through ds = read-only data", DATA_RO, GP0, |p| p.a.inc(dword_ptr(SCRATCH + 0x14)))?;
    p.check(Mem32(SCRATCH + 0x14), 0x57AB_1E00, "faulting writes left memory alone")?;

    // Read through CS while CS is a readable / an execute-only code segment: far jump there,
    // read, far jump back.
    for (selector, expect, what) in
        [(CODE_READ, Expect::Nothing, "readable"), (CODE_XONLY, GP0, "execute-only")]
    {
        let mut inside = p.label();
        let mut back = p.label();
        let inside_addr = p.addr(inside);
        let back_addr = p.addr(back);
        p.case(
            &format!("read through cs = {what} code"),
            expect,
            |p| {
                p.a.xor(esi, esi)?;
                p.a.jmp_far(selector, inside_addr)?;
                p.bind(&mut inside)
            },
            |p| {
                p.a.mov(esi, dword_ptr(SCRATCH + 0x10).cs())?;
                p.a.jmp_far(KCODE, back_addr)?;
                p.bind(&mut back)
            },
        )?;
        if selector == CODE_READ {
            p.check(esi, 0xC0DE_DA7A, "read through cs = readable code: value")?;
        }
    }
    Ok(())
}

fn limits(p: &mut Program) -> Asm {
    for (selector, what, limit) in [
        (LIM_BYTE, "byte-granular limit fffh", 0xFFF),
        (LIM_4K, "4k-granular limit 0", 0xFFF),
        (LIM_4K1, "4k-granular limit 1", 0x1FFF),
    ] {
        access(p, &format!("{what}: dword at {:#x}", limit - 3), selector, Expect::Nothing, |p| {
            p.a.mov(eax, dword_ptr(limit - 3))
        })?;
        access(p, &format!("{what}: dword at {:#x}", limit - 2), selector, GP0, |p| {
            p.a.mov(eax, dword_ptr(limit - 2))
        })?;
        access(p, &format!("{what}: byte at {limit:#x}"), selector, Expect::Nothing, |p| {
            p.a.mov(al, byte_ptr(limit))
        })?;
        access(p, &format!("{what}: byte at {:#x}", limit + 1), selector, GP0, |p| {
            p.a.mov(al, byte_ptr(limit + 1))
        })?;
    }
    // The base applies: LIM_BASE + 10h.
    p.a.mov(dword_ptr(LIM_BASE + 0x10), 0xBA5E_0010u32)?;
    access(p, "read at offset 10h of a segment based at 340000h", LIM_BYTE, Expect::Nothing, |p| {
        p.a.mov(esi, dword_ptr(0x10))
    })?;
    p.check(esi, 0xBA5E_0010, "segment base is added to the offset")
}

fn expand_down(p: &mut Program) -> Asm {
    // ED16: valid offsets 1000h..FFFFh. ED32 and ED4K: 1000h..FFFFFFFFh.
    p.a.mov(dword_ptr(ED_BASE + 0x1000), 0x0ED0_1000)?;
    let cases: [(u16, &str, u32, u32, bool); 12] = [
        (ED16, "b=0", 0x1000, 4, true),
        (ED16, "b=0", 0x0FFF, 1, false),
        (ED16, "b=0", 0x0000, 1, false),
        (ED16, "b=0", 0xFFFC, 4, true),
        (ED16, "b=0", 0xFFFE, 4, false),
        (ED16, "b=0", 0x1_0000, 1, false),
        (ED32, "b=1", 0x1000, 4, true),
        (ED32, "b=1", 0x0FFC, 4, false),
        (ED32, "b=1", 0x1_0000, 4, true),
        (ED32, "b=1", 0xFFFF_FFFC, 4, true),
        (ED32, "b=1", 0xFFFF_FFFE, 4, false),
        (ED4K, "b=1 g=1 limit 0", 0x0FFF, 1, false),
    ];
    for (selector, what, offset, size, ok) in cases {
        let expect = if ok { Expect::Nothing } else { GP0 };
        let verdict = if ok { "inside" } else { "outside" };
        access(
            p,
            &format!("expand-down {what}: {size}-byte read at {offset:#x} is {verdict}"),
            selector,
            expect,
            |p| {
                if size == 4 {
                    p.a.mov(eax, dword_ptr(offset))
                } else {
                    p.a.mov(al, byte_ptr(offset))
                }
            },
        )?;
    }
    access(p, "expand-down b=1 g=1 limit 0: read at 1000h", ED4K, Expect::Nothing, |p| {
        p.a.mov(edi, dword_ptr(0x1000))
    })?;
    p.check(edi, 0x0ED0_1000, "expand-down segment: base + offset")
}

/// EAX before LAR/LSL: an invalid selector leaves it alone (bits 19:16 clear, see `lar_lsl`).
const KEEP: u32 = 0x5A00_5A5A;

/// LAR/LSL (`op`, from EBX into EAX) of `selector`, then checks ZF and EAX: `result` for a
/// valid selector, `None` for one that leaves ZF clear and EAX unchanged.
fn inspect(
    p: &mut Program,
    name: &str,
    selector: u16,
    op: impl FnOnce(&mut CodeAssembler) -> Asm,
    result: Option<u32>,
) -> Asm {
    p.a.mov(ebx, u32::from(selector))?;
    p.a.mov(eax, KEEP)?;
    op(&mut p.a)?;
    p.a.mov(ecx, eax)?;
    p.check_flags(ZF, if result.is_some() { ZF } else { 0 }, name)?;
    p.check(ecx, result.unwrap_or(KEEP), &format!("{name}: result"))
}

fn lar_lsl(p: &mut Program) -> Asm {
    // LAR r32 gives the second dword masked with 00FxFF00h, bits 19:16 undefined: the
    // comparison clears them first.
    let lar = |a: &mut CodeAssembler| {
        a.lar(eax, ebx)?;
        a.pushfd()?;
        a.and(eax, 0xFFF0_FFFFu32)?;
        a.popfd()
    };
    let lsl = |a: &mut CodeAssembler| a.lsl(eax, ebx);
    for (selector, what) in [
        (CODE_READ, "code"),
        (DATA3, "dpl 3 data"),
        (CONFORMING | 3, "conforming code with rpl 3"),
        (TSS_AVAIL, "available tss"),
        (TSS0_SEL, "busy tss"),
        (LDT_SEL, "ldt"),
        (CALL_GATE_SEL, "call gate"),
        (NP_DATA, "not-present data"),
    ] {
        let value = if selector == TSS0_SEL {
            (seg(TSS0, 0x67, P | TSS32_BUSY, 0) >> 32) as u32 & 0x00F0_FF00
        } else {
            lar32(selector & !3)
        };
        inspect(p, &format!("lar {what}"), selector, lar, Some(value))?;
    }
    for (selector, what) in [
        (0, "null"),
        ((GDT_ENTRIES * 8) as u16, "beyond the gdt limit"),
        (KDATA | 3, "dpl 0 data with rpl 3"),
        (INT_GATE_SEL, "interrupt gate"),
        (RESERVED_SYS, "reserved system type 0"),
    ] {
        inspect(p, &format!("lar {what}"), selector, lar, None)?;
    }
    // 16-bit operand size: AX = second dword & FF00h, the upper half of EAX kept.
    p.a.mov(ebx, u32::from(CODE_READ))?;
    p.a.mov(eax, 0x1234_5678)?;
    p.a.lar(ax, bx)?;
    p.check(eax, 0x1234_0000 | (lar32(CODE_READ) & 0xFF00), "lar ax, bx")?;

    for (selector, what, limit) in [
        (LIM_BYTE, "byte-granular fffh", 0xFFF),
        (LIM_4K, "4k-granular 0", 0xFFF),
        (LIM_4K1, "4k-granular 1", 0x1FFF),
        (KDATA, "flat", 0xFFFF_FFFF),
        (ED16, "expand-down", 0xFFF),
        (TSS_AVAIL, "tss", 0x67),
        (LDT_SEL, "ldt", 0x7F),
        (DATA3 | 3, "dpl 3 data with rpl 3", 0xFFFF_FFFF),
    ] {
        inspect(p, &format!("lsl {what}"), selector, lsl, Some(limit))?;
    }
    for (selector, what) in [
        (0, "null"),
        (CALL_GATE_SEL, "call gate"),
        (INT_GATE_SEL, "interrupt gate"),
        (KCODE | 3, "dpl 0 code with rpl 3"),
    ] {
        inspect(p, &format!("lsl {what}"), selector, lsl, None)?;
    }
    p.a.mov(ebx, u32::from(LIM_4K1))?;
    p.a.mov(eax, 0x1234_5678)?;
    p.a.lsl(ax, bx)?;
    p.check(eax, 0x1234_1FFF, "lsl ax, bx")
}

fn verr_verw(p: &mut Program) -> Asm {
    for (selector, what, readable, writable) in [
        (CODE_READ, "execute/read code", true, false),
        (CODE_XONLY, "execute-only code", false, false),
        (KDATA, "read/write data", true, true),
        (DATA_RO, "read-only data", true, false),
        (DATA3 | 3, "dpl 3 data with rpl 3", true, true),
        (KDATA | 3, "dpl 0 data with rpl 3", false, false),
        (CONFORMING | 3, "conforming code with rpl 3", true, false),
        (TSS_AVAIL, "tss", false, false),
        (CALL_GATE_SEL, "call gate", false, false),
        (0, "null", false, false),
        ((GDT_ENTRIES * 8) as u16, "beyond the gdt limit", false, false),
    ] {
        p.a.mov(ebx, u32::from(selector))?;
        p.a.verr(bx)?;
        p.check_flags(ZF, if readable { ZF } else { 0 }, &format!("verr {what}"))?;
        p.a.verw(bx)?;
        p.check_flags(ZF, if writable { ZF } else { 0 }, &format!("verw {what}"))?;
    }
    Ok(())
}

fn arpl(p: &mut Program) -> Asm {
    for (dest, source, result, adjusted) in
        [(0x0010, 0x0003, 0x0013, true), (0x0013, 0x0001, 0x0013, false), (0x0012, 0xFFF2, 0x0012, false)]
    {
        p.a.mov(eax, 0xABCD_0000u32 | dest)?;
        p.a.mov(ebx, source)?;
        p.a.arpl(ax, bx)?;
        p.a.mov(ecx, eax)?;
        let name = format!("arpl {dest:#06x}, {source:#06x}");
        p.check_flags(ZF, if adjusted { ZF } else { 0 }, &name)?;
        p.check(ecx, 0xABCD_0000 | result, &format!("{name}: result"))?;
    }
    p.a.mov(word_ptr(SCRATCH + 0x20), 0x0028)?;
    p.a.mov(ebx, 2)?;
    p.a.arpl(word_ptr(SCRATCH + 0x20), bx)?;
    p.check_flags(ZF, ZF, "arpl [mem], bx")?;
    p.check_masked(Mem32(SCRATCH + 0x20), 0xFFFF, 0x002A, "arpl [mem], bx: result")
}

fn table_registers(p: &mut Program) -> Asm {
    let s = SCRATCH + 0x40;
    p.fill(s, 16, 0xFFFF_FFFFu32)?;
    p.a.sgdt(ptr(s))?;
    p.check_masked(Mem32(s), 0xFFFF, GDT_ENTRIES * 8 - 1, "sgdt: limit")?;
    p.check(Mem32(s + 2), GDT, "sgdt: base")?;
    p.a.sidt(ptr(s + 8))?;
    p.check_masked(Mem32(s + 8), 0xFFFF, 0x7FF, "sidt: limit")?;
    p.check(Mem32(s + 10), IDT, "sidt: base")?;
    p.a.mov(eax, 0xFFFF_FFFFu32)?;
    p.a.str(ax)?;
    p.check(eax, 0xFFFF_0000 | u32::from(TSS0_SEL), "str ax")?;
    p.a.mov(word_ptr(s), 0xFFFF)?;
    p.a.str(word_ptr(s))?;
    p.check_masked(Mem32(s), 0xFFFF, u32::from(TSS0_SEL), "str [mem]")?;
    p.a.mov(eax, 0xFFFF_FFFFu32)?;
    p.a.sldt(ax)?;
    p.check(eax, 0xFFFF_0000, "sldt ax with a null ldtr")?;

    // CR0 bit 4 (ET) is hard-wired to 1 on P6-family processors (SDM 2.5): writing CR0 with
    // ET clear reads it back set. SMSW gives CR0's low word; LMSW loads PE, MP, EM and TS but
    // cannot clear PE.
    p.a.mov(eax, cr0)?;
    p.a.and(eax, 0xFFFF_0000u32)?;
    p.a.or(eax, CR0_PE)?;
    p.a.mov(cr0, eax)?;
    p.a.mov(eax, cr0)?;
    p.check_masked(eax, 0xFFFF, CR0_PE | CR0_ET, "cr0 low word after writing pe only: et reads 1")?;
    p.a.mov(eax, 0xFFFF_FFFFu32)?;
    p.a.smsw(ax)?;
    p.check(eax, 0xFFFF_0000 | CR0_PE | CR0_ET, "smsw ax")?;
    p.a.mov(eax, 0x000E)?;
    p.a.lmsw(ax)?;
    p.a.smsw(ax)?;
    p.check_masked(
        eax,
        0xFFFF,
        CR0_PE | CR0_MP | CR0_EM | CR0_TS | CR0_ET,
        "lmsw 000eh: sets mp em ts, keeps pe",
    )?;
    p.a.clts()?;
    p.a.smsw(ax)?;
    p.check_masked(eax, 0xFFFF, CR0_PE | CR0_MP | CR0_EM | CR0_ET, "clts clears ts")?;
    p.a.mov(eax, 0x0000)?;
    p.a.lmsw(ax)?;
    p.a.mov(eax, cr0)?;
    p.check_masked(eax, 0xFFFF, CR0_PE | CR0_ET, "lmsw 0 clears mp em but not pe")
}

fn ldt(p: &mut Program) -> Asm {
    p.case("lldt ldt descriptor", Expect::Nothing, |p| p.a.mov(eax, u32::from(LDT_SEL)), |p| p.a.lldt(ax))?;
    p.a.mov(eax, 0xFFFF_FFFFu32)?;
    p.a.sldt(ax)?;
    p.check(eax, 0xFFFF_0000 | u32::from(LDT_SEL), "sldt ax")?;
    access(p, "mov ds, ldt data segment", LDT_DATA, Expect::Nothing, |p| p.a.mov(ebx, dword_ptr(4)))?;
    p.check(ebx, 0x1D71_D7A0, "read through an ldt segment uses its base")?;
    load(p, "mov ds, not-present ldt segment", ds, LDT_NP, np(LDT_NP))?;
    load(p, "mov ds, beyond the ldt limit", ds, LDT_BEYOND, gp(LDT_BEYOND))?;
    p.case("lldt data descriptor", gp(KDATA), |p| p.a.mov(eax, u32::from(KDATA)), |p| p.a.lldt(ax))?;
    p.case("lldt not-present ldt", np(NP_LDT), |p| p.a.mov(eax, u32::from(NP_LDT)), |p| p.a.lldt(ax))?;
    p.case(
        "lldt ldt selector with ti=1",
        gp(LDT_SEL | 4),
        |p| p.a.mov(eax, u32::from(LDT_SEL | 4)),
        |p| p.a.lldt(ax),
    )?;
    p.case("lldt null", Expect::Nothing, |p| p.a.xor(eax, eax), |p| p.a.lldt(ax))?;
    load(p, "mov ds, ldt selector after lldt null", ds, LDT_DATA, gp(LDT_DATA))
}

fn accessed_and_cache(p: &mut Program) -> Asm {
    let type_byte = |selector: u16| Mem8(GDT + u32::from(selector) + 5);
    p.check(type_byte(FRESH_DATA), u32::from(P | DATA_RW), "data descriptor before loading: accessed clear")?;
    load(p, "mov ds, data with accessed clear", ds, FRESH_DATA, Expect::Nothing)?;
    p.check(type_byte(FRESH_DATA), u32::from(P | DATA_RW | ACCESSED), "mov ds sets the accessed bit")?;
    load(p, "mov ss, data with accessed clear", ss, FRESH_STACK, Expect::Nothing)?;
    p.check(type_byte(FRESH_STACK), u32::from(P | DATA_RW | ACCESSED), "mov ss sets the accessed bit")?;
    p.check(type_byte(FRESH_CODE), u32::from(P | CODE_XR), "code descriptor before loading: accessed clear")?;
    let mut inside = p.label();
    let mut back = p.label();
    let inside_addr = p.addr(inside);
    let back_addr = p.addr(back);
    p.a.jmp_far(FRESH_CODE, inside_addr)?;
    p.bind(&mut inside)?;
    p.a.jmp_far(KCODE, back_addr)?;
    p.bind(&mut back)?;
    p.check(type_byte(FRESH_CODE), u32::from(P | CODE_XR | ACCESSED), "far jmp sets the accessed bit of cs")?;
    p.a.mov(ebx, u32::from(FRESH_DATA))?;
    p.a.lar(eax, ebx)?;
    p.check_masked(eax, 0xFF00, u32::from(P | DATA_RW | ACCESSED) << 8, "lar sees the accessed bit")?;

    // The hidden part of DS keeps the base loaded with the selector until DS is reloaded
    // (SDM 3.4.3).
    p.a.mov(dword_ptr(CACHE_OLD), 0x0000_01D0)?;
    p.a.mov(dword_ptr(CACHE_NEW), 0x0000_0E30)?;
    p.load_sreg(ds, CACHE)?;
    p.set_gdt(CACHE, seg(CACHE_NEW, 0xFFF, P | DATA_RW | ACCESSED, DB))?;
    p.a.mov(ebx, dword_ptr(0))?;
    p.load_sreg(ds, CACHE)?;
    p.a.mov(ecx, dword_ptr(0))?;
    flat_segs(p)?;
    p.check(ebx, 0x01D0, "descriptor changed in memory: ds still uses the cached base")?;
    p.check(ecx, 0x0E30, "after reloading ds: the new base")
}

fn far_pointers(p: &mut Program) -> Asm {
    p.a.mov(dword_ptr(FAR_PTR), 0x1234_5678)?;
    p.a.mov(word_ptr(FAR_PTR + 4), u32::from(DATA3 | 3))?;
    p.case(
        "lds ebx, far pointer",
        Expect::Nothing,
        |p| p.a.xor(ebx, ebx),
        |p| p.a.lds(ebx, fword_ptr(FAR_PTR)),
    )?;
    p.sel_to_eax(ds)?;
    p.a.mov(ecx, eax)?;
    flat_segs(p)?;
    p.check(ecx, u32::from(DATA3 | 3), "lds: ds")?;
    p.check(ebx, 0x1234_5678, "lds: ebx")?;

    p.a.mov(word_ptr(FAR_PTR + 4), u32::from(NP_DATA))?;
    p.case(
        "les ebx, not-present selector",
        np(NP_DATA),
        |p| p.a.mov(ebx, 0x0BAD_0BAD),
        |p| p.a.les(ebx, fword_ptr(FAR_PTR)),
    )?;
    p.check(Mem32(EXC_EBX), 0x0BAD_0BAD, "les fault leaves ebx unchanged")?;
    flat_segs(p)?;
    p.a.mov(word_ptr(FAR_PTR + 4), 0)?;
    p.case("lss esp, null selector", GP0, |_| Ok(()), |p| p.a.lss(esp, fword_ptr(FAR_PTR)))?;
    p.load_sreg(ss, KDATA)?;
    p.a.mov(esp, MAIN_STACK_TOP)?;

    p.case("pop ds, not present", np(NP_DATA), |p| p.a.push(u32::from(NP_DATA)), |p| p.a.pop(ds))?;
    // A fault restores ESP: it is where it was before POP (MAIN_STACK_TOP - 4), so the frame
    // (error code popped) starts 12 bytes below.
    p.check(Mem32(EXC_FRAME), MAIN_STACK_TOP - 4 - 12, "pop ds fault leaves esp unchanged")?;
    p.case("pop ss, dpl 3 data", gp(DATA3), |p| p.a.push(u32::from(DATA3 | 3)), |p| p.a.pop(ss))?;
    p.load_sreg(ss, KDATA)?;
    p.a.mov(esp, MAIN_STACK_TOP)?;
    flat_segs(p)
}
