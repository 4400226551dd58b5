//! Kernel "pm-iobitmap": the I/O permission bitmap of the TSS (SDM Vol. 1, chapter
//! "Input/Output", section "I/O Permission Bit Map" (19.5.2; 18.5.2 in older editions); Vol.
//! 3A, 20.2.8.1 for virtual-8086 mode; Vol. 2, IN, OUT, INS, OUTS).
//!
//! With CPL ≤ IOPL every port is allowed. Otherwise — and always in virtual-8086 mode, where
//! IOPL does not matter for I/O — the processor looks up one bit per port in the bitmap at
//! the TSS's I/O map base: an access of n bytes needs the n bits of its ports clear; a bitmap
//! byte beyond the TSS limit counts as all ones, so ports past the end of the bitmap (or any
//! port when the base lies beyond the limit) are #GP(0). The bitmap ends with an all-ones byte
//! because the processor reads two bytes at a time.
//!
//! The kernel extends the runtime's TSS to cover the whole 8 KiB bitmap (all ports allowed)
//! and denies a few ports that nothing decodes on a PC with no default devices: 2F1h, 2E8h
//! and 80h (the POST port) — the allowed accesses go to 2ECh–2F0h, 2E6h/2E7h, 80h and the
//! debug console E9h, which ring-3 and virtual-8086 code here print through.

use iced_x86::code_asm::*;

use super::rt::*;
use crate::asm::{Asm, Mem32};

/// Ports the tests deny.
const DENIED: [u32; 2] = [0x2F1, 0x2E8];
/// A port left allowed next to them.
const ALLOWED: u32 = 0x2F0;
/// The TSS limit that covers the whole bitmap and its trailing byte.
const FULL_LIMIT: u32 = IOMAP_OFFSET + 0x2000;
/// A limit that covers the bitmap of ports 0–3FFh (80h bytes) and one more byte.
const SHORT_LIMIT: u32 = IOMAP_OFFSET + 0x80;

const GP0: Expect = Expect::Fault(13, Some(0));

/// Sets (deny) or clears (allow) the bitmap bit of `port`.
fn set_port(p: &mut Program, port: u32, deny: bool) -> Asm {
    let byte = byte_ptr(TSS0 + IOMAP_OFFSET + port / 8);
    if deny {
        p.a.or(byte, 1 << (port % 8))
    } else {
        p.a.and(byte, !(1u32 << (port % 8)) & 0xFF)
    }
}

/// Gives the kernel's TSS the limit `limit` and I/O map base `base`, and reloads TR.
fn tss_limit(p: &mut Program, limit: u32, base: u32) -> Asm {
    p.a.mov(word_ptr(TSS0 + 0x66), base)?;
    p.set_gdt(TSS0_SEL, seg(TSS0, limit, P | TSS32, 0))?;
    p.a.mov(eax, u32::from(TSS0_SEL))?;
    p.a.ltr(ax)
}

/// `mov dx, port` then the access under test.
fn io(
    p: &mut Program,
    name: &str,
    eflags: Option<u32>,
    port: u32,
    expect: Expect,
    access: impl FnOnce(&mut Program) -> Asm,
) -> Asm {
    let setup = |p: &mut Program| {
        p.a.mov(edx, port)?;
        p.a.mov(edi, SCRATCH)?;
        p.a.mov(esi, SCRATCH)
    };
    match eflags {
        Some(eflags) => p.ring3_case(name, eflags, expect, setup, access),
        None => p.case(name, expect, setup, access),
    }
}

fn out8(p: &mut Program) -> Asm {
    p.a.out(dx, al)
}
fn in8(p: &mut Program) -> Asm {
    p.a.in_(al, dx)
}
fn out16(p: &mut Program) -> Asm {
    p.a.out(dx, ax)
}
fn out32(p: &mut Program) -> Asm {
    p.a.out(dx, eax)
}

/// Virtual-8086 code: `out dx, al` to 2F1h and to 2F0h, and a message printed through E9h.
struct V86Snips {
    denied: (u16, u16, u16),
    allowed: (u16, u16, u16),
    print: (u16, u16),
}

fn v86_code() -> Result<(Vec<u8>, V86Snips), IcedError> {
    let mut c = V86Code::new()?;
    let snip = |c: &mut V86Code, port: u32| -> Result<(usize, usize, usize), IcedError> {
        let entry = c.here()?;
        c.a.mov(dx, port)?;
        let at = c.here()?;
        c.a.out(dx, al)?;
        let done = c.here()?;
        c.a.ud2()?;
        Ok((entry, at, done))
    };
    let denied = snip(&mut c, DENIED[0])?;
    let allowed = snip(&mut c, ALLOWED)?;
    // CALL over the message pushes its address; then print it byte by byte through CS.
    let print_entry = c.here()?;
    let mut over = c.a.create_label();
    let mut next = c.a.create_label();
    let mut end = c.a.create_label();
    c.a.call(over)?;
    c.a.db(b"# this line was printed in virtual-8086 mode with iopl 0, through the i/o bitmap\n\0")?;
    c.a.set_label(&mut over)?;
    c.a.pop(si)?;
    c.a.set_label(&mut next)?;
    c.a.mov(al, byte_ptr(si).cs())?;
    c.a.inc(si)?;
    c.a.test(al, al)?;
    c.a.jz(end)?;
    c.a.out(DEBUGCON_PORT, al)?;
    c.a.jmp(next)?;
    c.a.set_label(&mut end)?;
    c.a.zero_bytes()?;
    let print_done = c.here()?;
    c.a.ud2()?;
    let (bytes, ips) = c.assemble()?;
    let ip3 = |(a, b, c): (usize, usize, usize)| (ips[a], ips[b], ips[c]);
    Ok((
        bytes,
        V86Snips { denied: ip3(denied), allowed: ip3(allowed), print: (ips[print_entry], ips[print_done]) },
    ))
}

/// The debug console port.
const DEBUGCON_PORT: u32 = 0xE9;

pub(super) fn run(p: &mut Program) -> Asm {
    let (bytes, v) = v86_code()?;
    p.section("extend the tss over the bitmap", |p| {
        p.install_v86(bytes)?;
        for port in DENIED {
            set_port(p, port, true)?;
        }
        tss_limit(p, FULL_LIMIT, IOMAP_OFFSET)?;
        p.a.mov(ebx, u32::from(TSS0_SEL))?;
        p.a.lsl(eax, ebx)?;
        p.check_eax(FULL_LIMIT, "tss limit covers the bitmap")
    })?;
    p.section("cpl 3 with iopl 0", cpl3_iopl0)?;
    p.section("cpl <= iopl", cpl_le_iopl)?;
    p.section("virtual-8086 mode", |p| {
        let (entry, at, _) = v.denied;
        p.v86_case("v86 out dx, al to a denied port with iopl 3", FL_1 | iopl(3), entry, GP0, at, at)?;
        p.v86_case("v86 out dx, al to a denied port with iopl 0", FL_1, entry, GP0, at, at)?;
        let (entry, _, done) = v.allowed;
        p.v86_case(
            "v86 out dx, al to an allowed port with iopl 0",
            FL_1,
            entry,
            Expect::Nothing,
            done,
            done,
        )?;
        let (entry, done) = v.print;
        p.v86_case("v86 prints through port e9h with iopl 0", FL_1, entry, Expect::Nothing, done, done)
    })?;
    p.section("the tss limit and the i/o map base", limits)
}

fn cpl3_iopl0(p: &mut Program) -> Asm {
    let r3 = Some(FL_1);
    p.ring3_case(
        "ring 3 calls the check reporter",
        FL_1,
        Expect::Nothing,
        |p| p.a.mov(eax, DEBUGCON_PORT),
        |p| p.check_eax(DEBUGCON_PORT, "this line was printed at cpl 3 with iopl 0, through the i/o bitmap"),
    )?;
    io(p, "out dx, al to an allowed port", r3, ALLOWED, Expect::Nothing, out8)?;
    io(p, "out dx, al to a denied port", r3, DENIED[0], GP0, out8)?;
    io(p, "in al, dx from a denied port", r3, DENIED[0], GP0, in8)?;
    io(p, "out dx, ax to 2f0h (2f1h denied)", r3, ALLOWED, GP0, out16)?;
    io(p, "out dx, ax to 2efh (both allowed)", r3, 0x2EF, Expect::Nothing, out16)?;
    io(p, "out dx, eax to 2ech (all four allowed)", r3, 0x2EC, Expect::Nothing, out32)?;
    io(p, "out dx, eax to 2eeh (2f1h denied)", r3, 0x2EE, GP0, out32)?;
    // 2E7h is the last bit of one bitmap byte, 2E8h the first of the next.
    io(p, "out dx, ax to 2e7h (2e8h in the next byte denied)", r3, 0x2E7, GP0, out16)?;
    io(p, "out dx, ax to 2e6h (both allowed)", r3, 0x2E6, Expect::Nothing, out16)?;
    io(p, "outsb to a denied port", r3, DENIED[0], GP0, |p| p.a.outsb())?;
    io(p, "insb from an allowed port", r3, ALLOWED, Expect::Nothing, |p| p.a.insb())?;
    io(p, "out 80h, al allowed", r3, 0x80, Expect::Nothing, |p| p.a.out(0x80, al))?;
    set_port(p, 0x80, true)?;
    io(p, "out 80h, al denied", r3, 0x80, GP0, |p| p.a.out(0x80, al))?;
    set_port(p, 0x80, false)?;
    p.ring3_case("ring 3 with iopl 0 still may not cli", FL_1, GP0, |_| Ok(()), |p| p.a.cli())
}

fn cpl_le_iopl(p: &mut Program) -> Asm {
    io(p, "cpl 3 iopl 3: out to a denied port", Some(FL_1 | iopl(3)), DENIED[0], Expect::Nothing, out8)?;
    io(
        p,
        "cpl 3 iopl 3: out dx, eax across a denied port",
        Some(FL_1 | iopl(3)),
        0x2EE,
        Expect::Nothing,
        out32,
    )?;
    io(p, "cpl 3 iopl 1: out to a denied port", Some(FL_1 | iopl(1)), DENIED[0], GP0, out8)?;
    io(p, "cpl 0: out to a denied port", None, DENIED[0], Expect::Nothing, out8)
}

fn limits(p: &mut Program) -> Asm {
    let r3 = Some(FL_1);
    // The bitmap now covers ports 0-3FFh: 500h lies beyond the limit.
    tss_limit(p, SHORT_LIMIT, IOMAP_OFFSET)?;
    io(p, "short bitmap: in from port 2f0h inside it", r3, ALLOWED, Expect::Nothing, in8)?;
    io(p, "short bitmap: in from port 500h beyond the limit", r3, 0x500, GP0, in8)?;
    io(p, "short bitmap: cpl 0 in from port 500h", None, 0x500, Expect::Nothing, in8)?;
    // An I/O map base beyond the limit: no bitmap at all.
    tss_limit(p, FULL_LIMIT, 0xF000)?;
    io(p, "i/o map base beyond the limit: out to an allowed port", r3, ALLOWED, GP0, out8)?;
    tss_limit(p, 0x67, IOMAP_OFFSET)?;
    io(p, "tss limit 67h: out to an allowed port", r3, ALLOWED, GP0, out8)?;
    p.a.mov(ebx, u32::from(TSS0_SEL))?;
    p.a.lsl(eax, ebx)?;
    p.check_eax(0x67, "tss limit back to 67h")?;
    p.check(Mem32(TSS0 + 4), ESP0_TOP, "tss esp0 untouched")
}
