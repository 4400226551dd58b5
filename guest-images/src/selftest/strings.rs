//! Self-test "strings": MOVS, STOS, LODS, CMPS, SCAS alone and with REP/REPE/REPNE, with
//! DF = 0 and DF = 1, a source segment override, and 32-bit addressing (SDM Vol. 2, and
//! Vol. 1, 7.3.9).
//!
//! REP repeats while (E)CX != 0, decrementing it after each element; REPE/REPNE also stop
//! after the element that makes ZF = 0 / ZF = 1. The pointers step by the element size, down
//! when DF = 1. With 16-bit addressing only CX, SI and DI count (the upper halves of ECX, ESI,
//! EDI stay as they were, and SI wraps at 64 KiB); the 0x67 prefix selects ECX, ESI, EDI.
//! The source segment (DS) may be overridden, the destination (ES) may not. CMPS compares
//! source - destination, SCAS accumulator - destination.

use iced_x86::code_asm::*;
use iced_x86::{Instruction, Register, RepPrefixKind};

use super::store;
use crate::asm::flags::*;
use crate::asm::{Asm, Mem16, Mem32, Mem8, Program};

/// Source and destination buffers (segment 0).
const SRC: u32 = 0x1000;
const DST: u32 = 0x2000;

pub(super) fn run(p: &mut Program) -> Asm {
    store(&mut p.a, SRC, b"ABCDEFGH")?;
    movs(p)?;
    stos(p)?;
    cmps(p)?;
    scas(p)?;
    lods(p)?;
    prefixes(p)
}

fn movs(p: &mut Program) -> Asm {
    p.a.cld()?;
    p.a.mov(si, SRC)?;
    p.a.mov(di, DST)?;
    p.a.mov(cx, 8)?;
    p.a.rep().movsb()?;
    p.check(Mem32(DST), u32::from_le_bytes(*b"ABCD"), "rep movsb forward first dword")?;
    p.check(Mem32(DST + 4), u32::from_le_bytes(*b"EFGH"), "rep movsb forward second dword")?;
    p.check(si, SRC + 8, "rep movsb forward si")?;
    p.check(di, DST + 8, "rep movsb forward di")?;
    p.check(cx, 0, "rep movsb forward cx")?;

    p.a.std()?;
    p.a.mov(si, SRC + 7)?;
    p.a.mov(di, DST + 0x107)?;
    p.a.mov(cx, 8)?;
    p.a.rep().movsb()?;
    p.a.cld()?;
    p.check(Mem32(DST + 0x100), u32::from_le_bytes(*b"ABCD"), "rep movsb backward first dword")?;
    p.check(Mem32(DST + 0x104), u32::from_le_bytes(*b"EFGH"), "rep movsb backward second dword")?;
    p.check(si, SRC - 1, "rep movsb backward si")?;
    p.check(di, DST + 0xFF, "rep movsb backward di")?;

    // Overlapping forward copy, one byte at a time: the first byte spreads.
    store(&mut p.a, SRC + 0x10, b"ABCDE")?;
    p.a.mov(si, SRC + 0x10)?;
    p.a.mov(di, SRC + 0x11)?;
    p.a.mov(cx, 4)?;
    p.a.rep().movsb()?;
    p.check(Mem32(SRC + 0x10), u32::from_le_bytes(*b"AAAA"), "rep movsb overlapping spreads")?;
    p.check(Mem8(SRC + 0x14), u32::from(b'A'), "rep movsb overlapping last byte")?;

    // CX = 0: nothing moves.
    p.a.mov(byte_ptr(DST + 0x400), 0x77)?;
    p.a.mov(cx, 0)?;
    p.a.mov(si, SRC)?;
    p.a.mov(di, DST + 0x400)?;
    p.a.rep().movsb()?;
    p.check(Mem8(DST + 0x400), 0x77, "rep movsb cx=0 moves nothing")?;
    p.check(si, SRC, "rep movsb cx=0 leaves si")?;

    // One MOVSD, no prefix.
    p.a.mov(si, SRC)?;
    p.a.mov(di, DST + 0x500)?;
    p.a.movsd()?;
    p.check(Mem32(DST + 0x500), u32::from_le_bytes(*b"ABCD"), "movsd")?;
    p.check(si, SRC + 4, "movsd si")?;
    p.check(di, DST + 0x504, "movsd di")
}

fn stos(p: &mut Program) -> Asm {
    store(&mut p.a, DST + 0x200, &[0; 8])?;
    p.a.mov(ax, 0xBEEF)?;
    p.a.mov(di, DST + 0x200)?;
    p.a.mov(cx, 3)?;
    p.a.rep().stosw()?;
    p.check(Mem32(DST + 0x200), 0xBEEF_BEEF, "rep stosw forward words 0-1")?;
    p.check(Mem16(DST + 0x204), 0xBEEF, "rep stosw forward word 2")?;
    p.check(Mem16(DST + 0x206), 0, "rep stosw forward stops after 3")?;
    p.check(di, DST + 0x206, "rep stosw forward di")?;

    store(&mut p.a, DST + 0x2FC, &[0; 12])?;
    p.a.mov(ax, 0xBEEF)?;
    p.a.std()?;
    p.a.mov(di, DST + 0x304)?;
    p.a.mov(cx, 3)?;
    p.a.rep().stosw()?;
    p.a.cld()?;
    p.check(Mem32(DST + 0x300), 0xBEEF_BEEF, "rep stosw backward words 0-1")?;
    p.check(Mem16(DST + 0x304), 0xBEEF, "rep stosw backward word 2")?;
    p.check(Mem16(DST + 0x2FE), 0, "rep stosw backward stops after 3")?;
    p.check(di, DST + 0x2FE, "rep stosw backward di")
}

fn cmps(p: &mut Program) -> Asm {
    store(&mut p.a, SRC + 0x20, b"HELLO")?;
    store(&mut p.a, DST + 0x20, b"HELPO")?;
    store(&mut p.a, DST + 0x30, b"HELLO")?;

    // Stops after index 3: 'L' - 'P' = 4Ch - 50h = FCh: borrow, SF; C - 0 does not borrow
    // out of bit 3; FC has six one bits.
    p.a.mov(si, SRC + 0x20)?;
    p.a.mov(di, DST + 0x20)?;
    p.a.mov(cx, 5)?;
    p.a.repe().cmpsb()?;
    p.check_op(cx, 1, ARITH, CF | SF | PF, "repe cmpsb stops at the difference")?;
    p.check(si, SRC + 0x24, "repe cmpsb si past the difference")?;
    p.check(di, DST + 0x24, "repe cmpsb di past the difference")?;

    p.a.mov(si, SRC + 0x20)?;
    p.a.mov(di, DST + 0x30)?;
    p.a.mov(cx, 5)?;
    p.a.repe().cmpsb()?;
    p.check_op(cx, 0, ZF, ZF, "repe cmpsb equal strings")?;

    // Backwards over "ABCD" and "XBCD": D, C, B equal, then 'A' - 'X' = 41h - 58h = E9h:
    // borrow, SF, 1 - 8 borrows out of bit 3; E9 has five one bits.
    store(&mut p.a, SRC + 0x40, b"ABCD")?;
    store(&mut p.a, DST + 0x40, b"XBCD")?;
    p.a.std()?;
    p.a.mov(si, SRC + 0x43)?;
    p.a.mov(di, DST + 0x43)?;
    p.a.mov(cx, 4)?;
    p.a.repe().cmpsb()?;
    p.a.cld()?;
    p.check_op(cx, 0, ARITH, CF | SF | AF, "repe cmpsb backward finds the first byte")?;
    p.check(si, SRC + 0x3F, "repe cmpsb backward si")
}

fn scas(p: &mut Program) -> Asm {
    // "HELLO" at SRC + 0x20 (ES = 0 too).
    p.a.mov(di, SRC + 0x20)?;
    p.a.mov(al, u32::from(b'L'))?;
    p.a.mov(cx, 5)?;
    p.a.repne().scasb()?;
    p.check_op(cx, 2, ZF, ZF, "repne scasb finds the first L")?;
    p.check(di, SRC + 0x23, "repne scasb di past the match")?;

    p.a.mov(di, SRC + 0x20)?;
    p.a.mov(al, u32::from(b'Z'))?;
    p.a.mov(cx, 5)?;
    p.a.repne().scasb()?;
    p.check_op(cx, 0, ZF, 0, "repne scasb runs out")?;
    p.check(di, SRC + 0x25, "repne scasb di past the end")?;

    p.a.std()?;
    p.a.mov(di, SRC + 0x24)?;
    p.a.mov(al, u32::from(b'H'))?;
    p.a.mov(cx, 5)?;
    p.a.repne().scasb()?;
    p.a.cld()?;
    p.check_op(cx, 0, ZF, ZF, "repne scasb backward finds H last")?;
    p.check(di, SRC + 0x1F, "repne scasb backward di")
}

fn lods(p: &mut Program) -> Asm {
    // "ABCDEFGH" at SRC.
    p.a.mov(si, SRC)?;
    p.a.lodsb()?;
    p.check(al, u32::from(b'A'), "lodsb")?;
    p.a.lodsw()?;
    p.check(ax, u32::from(u16::from_le_bytes(*b"BC")), "lodsw")?;
    p.a.lodsd()?;
    p.check(eax, u32::from_le_bytes(*b"DEFG"), "lodsd")?;
    p.check(si, SRC + 7, "lods si after 1+2+4 bytes")?;

    p.a.std()?;
    p.a.mov(si, SRC + 6)?;
    p.a.lodsw()?;
    p.a.cld()?;
    p.check(ax, u32::from(u16::from_le_bytes(*b"GH")), "lodsw backward")?;
    p.check(si, SRC + 4, "lodsw backward si")?;

    // SI wraps within the segment; the upper half of ESI is not touched.
    p.a.mov(esi, 0x0005_FFFF)?;
    p.a.lodsb()?;
    p.check(esi, 0x0005_0000, "lodsb 16-bit si wraps, esi high half kept")
}

fn prefixes(p: &mut Program) -> Asm {
    // FS: MOVSW with FS = SRC >> 4 reads SRC through FS:0.
    p.a.mov(ax, SRC >> 4)?;
    p.a.mov(fs, ax)?;
    p.a.xor(si, si)?;
    p.a.mov(di, DST + 0x600)?;
    p.a.add_instruction(Instruction::with_movsw(16, Register::FS, RepPrefixKind::None)?)?;
    p.check(Mem16(DST + 0x600), u32::from(u16::from_le_bytes(*b"AB")), "fs: movsw reads through fs")?;

    // ES = DST >> 4: STOSB writes ES:DI.
    p.a.mov(ax, DST >> 4)?;
    p.a.mov(es, ax)?;
    p.a.mov(di, 0x610)?;
    p.a.mov(al, 0x5A)?;
    p.a.stosb()?;
    p.a.xor(ax, ax)?;
    p.a.mov(es, ax)?;
    p.check(Mem8(DST + 0x610), 0x5A, "stosb writes through es")?;

    // 0x67: REP MOVSB counts ECX and steps ESI/EDI.
    p.a.mov(ecx, 4)?;
    p.a.mov(esi, SRC)?;
    p.a.mov(edi, DST + 0x700)?;
    p.a.add_instruction(Instruction::with_movsb(32, Register::None, RepPrefixKind::Repe)?)?;
    p.check(Mem32(DST + 0x700), u32::from_le_bytes(*b"ABCD"), "a32 rep movsb copies")?;
    p.check(ecx, 0, "a32 rep movsb ecx")?;
    p.check(esi, SRC + 4, "a32 rep movsb esi")?;

    // Without 0x67, REP counts only CX: ECX = 1_0002h stops at 1_0000h.
    p.a.mov(ecx, 0x0001_0002)?;
    p.a.mov(esi, 0xABCD_0000u32 | SRC)?;
    p.a.mov(di, DST + 0x710)?;
    p.a.rep().movsb()?;
    p.check(ecx, 0x0001_0000, "a16 rep movsb counts cx only")?;
    p.check(esi, 0xABCD_0000 | (SRC + 2), "a16 rep movsb steps si only")?;
    p.check(Mem16(DST + 0x710), u32::from(u16::from_le_bytes(*b"AB")), "a16 rep movsb copies")
}
