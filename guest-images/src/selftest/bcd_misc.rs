//! Self-test "bcd-misc": DAA, DAS, AAA, AAS, AAM, AAD, LAHF/SAHF, XLAT, CPUID, LEA, and
//! memory addressing with 16- and 32-bit address sizes and their default segments (SDM Vol. 2;
//! Vol. 1, 3.7.5 and Vol. 2, 2.1.5 for addressing; Vol. 3, 3.4.2 / Vol. 1, 3.4.2.1 for
//! default segments).
//!
//! The decimal adjusts follow the SDM's Operation sections for legacy mode: AAA adds 106h to
//! all of AX and AAS subtracts 6 from AX and 1 from AH, so a carry or borrow out of AL reaches
//! AH too. Their OF (and SF, ZF, PF for AAA/AAS; CF, AF, OF for AAM/AAD) are undefined and
//! not checked. Default segments: BP- and ESP/EBP-based addresses use SS, all others DS; with
//! 32-bit addressing only the base register decides, never the index.

use iced_x86::code_asm::*;

use super::store;
use crate::asm::flags::*;
use crate::asm::{Asm, Program, SCRATCH};

/// Scratch memory (shorthand).
const S: u32 = SCRATCH;
/// XLAT's table.
const TABLE: u32 = 0x0800;
/// Flags DAA and DAS define.
const DECIMAL: u32 = CF | AF | ZF | SF | PF;
/// Flags AAM and AAD define.
const ASCII: u32 = ZF | SF | PF;

pub(super) fn run(p: &mut Program) -> Asm {
    decimal(p)?;
    ascii(p)?;
    flags_to_ah(p)?;
    xlat(p)?;
    cpuid(p)?;
    lea(p)?;
    addressing(p)
}

fn decimal(p: &mut Program) -> Asm {
    // 79 + 35 = AEh; low nibble > 9: +6 = B4h (AF); AEh > 99h: +60h = 14h (CF). 79+35 = 114.
    p.a.mov(al, 0x79)?;
    p.a.add(al, 0x35)?;
    p.a.daa()?;
    p.check_op(al, 0x14, DECIMAL, CF | AF | PF, "daa 79+35")?;

    // 38 + 49 = 81h with AF: +6 = 87h. 38+49 = 87; 87h has four one bits.
    p.a.mov(al, 0x38)?;
    p.a.add(al, 0x49)?;
    p.a.daa()?;
    p.check_op(al, 0x87, DECIMAL, AF | SF | PF, "daa 38+49")?;

    // 99 + 01 = 9Ah: +6 = A0h (AF); 9Ah > 99h: +60h = 00 (CF). 99+1 = 100.
    p.a.mov(al, 0x99)?;
    p.a.add(al, 0x01)?;
    p.a.daa()?;
    p.check_op(al, 0x00, DECIMAL, CF | AF | ZF | PF, "daa 99+01")?;

    // 35 - 47 = EEh with CF, AF: -6 = E8h; EEh > 99h: -60h = 88h (CF). 35-47 = -12 -> 88.
    p.a.mov(al, 0x35)?;
    p.a.sub(al, 0x47)?;
    p.a.das()?;
    p.check_op(al, 0x88, DECIMAL, CF | AF | SF | PF, "das 35-47")?;

    // 86 - 07 = 7Fh with AF: -6 = 79h. 86-7 = 79; 79h has five one bits.
    p.a.mov(al, 0x86)?;
    p.a.sub(al, 0x07)?;
    p.a.das()?;
    p.check_op(al, 0x79, DECIMAL, AF, "das 86-07")
}

fn ascii(p: &mut Program) -> Asm {
    // 8 + 9 = 11h with AF: AX + 106h = 0117h, AL &= 0Fh: 0107h (unpacked 17).
    p.a.mov(ax, 0x0008)?;
    p.a.add(al, 9)?;
    p.a.aaa()?;
    p.check_op(ax, 0x0107, CF | AF, CF | AF, "aaa 8+9")?;

    p.a.mov(ax, 0x0203)?;
    p.a.add(al, 2)?;
    p.a.aaa()?;
    p.check_op(ax, 0x0205, CF | AF, 0, "aaa 3+2 needs no adjustment")?;

    // AL = FAh: AX + 106h = 0200h carries into AH, then AL &= 0Fh.
    p.a.mov(ax, 0x00FA)?;
    p.a.aaa()?;
    p.check_op(ax, 0x0200, CF | AF, CF | AF, "aaa al=fa adds 106h to ax")?;

    // 3 - 5 = FEh with AF: AX - 6 = 02F8h, AH - 1 = 01h, AL &= 0Fh: 0108h (23 - 5 = 18).
    p.a.mov(ax, 0x0203)?;
    p.a.sub(al, 5)?;
    p.a.aas()?;
    p.check_op(ax, 0x0108, CF | AF, CF | AF, "aas 23-5")?;

    // 13h - 0Fh = 04h with AF: AX - 6 = 04FEh borrows from AH, AH - 1 = 03h, AL &= 0Fh.
    p.a.mov(ax, 0x0513)?;
    p.a.sub(al, 0x0F)?;
    p.a.aas()?;
    p.check_op(ax, 0x030E, CF | AF, CF | AF, "aas al=04 subtracts 6 from ax")?;

    // AAM: AH = AL / base, AL = AL mod base; flags from AL.
    p.a.mov(ax, 63)?;
    p.a.aam(10)?;
    p.check_op(ax, 0x0603, ASCII, PF, "aam 63")?;
    p.a.mov(ax, 0x3F)?;
    p.a.aam(16)?;
    p.check_op(ax, 0x030F, ASCII, PF, "aam base 16 of 3fh")?;

    // AAD: AL = AH * base + AL, AH = 0. 6*10 + 7 = 67 = 43h (three one bits).
    p.a.mov(ax, 0x0607)?;
    p.a.aad(10)?;
    p.check_op(ax, 0x0043, ASCII, 0, "aad 0607")?;
    p.a.mov(ax, 0x0305)?;
    p.a.aad(16)?;
    p.check_op(ax, 0x0035, ASCII, PF, "aad base 16 of 0305")
}

fn flags_to_ah(p: &mut Program) -> Asm {
    p.a.mov(ah, 0xD5)?;
    p.a.sahf()?;
    p.check_flags(SF | ZF | AF | PF | CF, SF | ZF | AF | PF | CF, "sahf d5")?;
    p.a.mov(ah, 0x00)?;
    p.a.sahf()?;
    p.check_flags(SF | ZF | AF | PF | CF, 0, "sahf 00")?;
    // Bit 1 reads as 1, bits 3 and 5 as 0.
    p.a.mov(ah, 0xFF)?;
    p.a.sahf()?;
    p.a.mov(ah, 0)?;
    p.a.lahf()?;
    p.check(ah, 0xD7, "lahf after sahf ff")?;
    p.a.mov(ah, 0x00)?;
    p.a.sahf()?;
    p.a.lahf()?;
    p.check(ah, 0x02, "lahf after sahf 00")
}

fn xlat(p: &mut Program) -> Asm {
    let table: Vec<u8> = (0..16).map(|i| i ^ 0x5A).collect();
    store(&mut p.a, TABLE, &table)?;
    p.a.mov(bx, TABLE)?;
    p.a.mov(al, 3)?;
    p.a.xlatb()?;
    p.check(al, 3 ^ 0x5A, "xlat entry 3")?;
    p.a.mov(al, 15)?;
    p.a.xlatb()?;
    p.check(al, 15 ^ 0x5A, "xlat entry 15")
}

fn cpuid(p: &mut Program) -> Asm {
    // Leaf 0: EAX = highest basic leaf, at least 1 on anything with CPUID leaf 1.
    p.a.xor(eax, eax)?;
    p.a.cpuid()?;
    p.a.cmp(eax, 1)?;
    p.a.setae(cl)?;
    p.check(cl, 1, "cpuid leaf 0 reports leaf 1")?;
    // Leaf 1: EAX[11:8] is the family; a P6 class processor is family 6, anything with CPUID
    // at least 5 (15 means "see the extended family", also >= 5).
    p.a.mov(eax, 1)?;
    p.a.cpuid()?;
    p.a.shr(eax, 8)?;
    p.a.and(eax, 0x0F)?;
    p.a.cmp(eax, 5)?;
    p.a.setae(cl)?;
    p.check(cl, 1, "cpuid leaf 1 family is 5 or later")
}

fn lea(p: &mut Program) -> Asm {
    p.a.mov(ebx, 0x1000)?;
    p.a.mov(ecx, 3)?;
    p.a.lea(esi, ptr(ebx + ecx * 8 + 0x1234_5678))?;
    p.check(esi, 0x1234_6690, "lea esi,[ebx+ecx*8+12345678h]")?;

    // 16-bit addresses wrap at 64 KiB: 8000h + 8000h + 2.
    p.a.mov(bx, 0x8000)?;
    p.a.mov(di, 0x8000)?;
    p.a.lea(si, ptr(bx + di + 2))?;
    p.check(si, 0x0002, "lea si,[bx+di+2] wraps")?;

    // A 32-bit address into a 16-bit register keeps the low half.
    p.a.mov(ebx, 0x1234)?;
    p.a.lea(si, ptr(ebx + 0x1_0000))?;
    p.check(si, 0x1234, "lea si,[ebx+10000h] truncates")?;

    // A 16-bit address into a 32-bit register is zero-extended.
    p.a.mov(ecx, 0xFFFF_FFFFu32)?;
    p.a.mov(bx, 0xFFFF)?;
    p.a.mov(si, 2)?;
    p.a.lea(ecx, ptr(bx + si))?;
    p.check(ecx, 0x0000_0001, "lea ecx,[bx+si] zero-extends the 16-bit address")
}

fn addressing(p: &mut Program) -> Asm {
    // 32-bit scaled index.
    p.a.mov(dword_ptr(S + 16), 0xA1B2_C3D4u32)?;
    p.a.mov(ebx, S)?;
    p.a.mov(ecx, 4)?;
    p.a.mov(esi, dword_ptr(ebx + ecx * 4))?;
    p.check(esi, 0xA1B2_C3D4, "mov esi,[ebx+ecx*4]")?;

    // Segment 0 offset 620h holds 1111h; with DS = 100h, DS:620h (physical 1620h) holds 2222h.
    p.a.mov(word_ptr(0x0620), 0x1111)?;
    p.a.mov(word_ptr(0x1620), 0x2222)?;
    p.a.mov(ax, 0x0100)?;
    p.a.mov(ds, ax)?;

    p.a.mov(bp, 0x0620)?;
    p.a.mov(cx, word_ptr(bp))?;
    p.check(cx, 0x1111, "[bp] uses ss")?;
    p.a.mov(bx, 0x0620)?;
    p.a.mov(cx, word_ptr(bx))?;
    p.check(cx, 0x2222, "[bx] uses ds")?;
    p.a.mov(bp, 0x0600)?;
    p.a.mov(si, 0x0020)?;
    p.a.mov(cx, word_ptr(bp + si))?;
    p.check(cx, 0x1111, "[bp+si] uses ss")?;
    p.a.mov(bx, 0x0600)?;
    p.a.mov(cx, word_ptr(bx + si))?;
    p.check(cx, 0x2222, "[bx+si] uses ds")?;
    p.a.mov(bp, 0x0620)?;
    p.a.mov(cx, word_ptr(bp).ds())?;
    p.check(cx, 0x2222, "ds:[bp] override")?;
    p.a.mov(bx, 0x0620)?;
    p.a.mov(cx, word_ptr(bx).ss())?;
    p.check(cx, 0x1111, "ss:[bx] override")?;

    p.a.mov(ebp, 0x0620)?;
    p.a.mov(cx, word_ptr(ebp))?;
    p.check(cx, 0x1111, "[ebp] uses ss")?;
    p.a.mov(ebx, 0x0600)?;
    p.a.mov(ebp, 0x0020)?;
    p.a.mov(cx, word_ptr(ebx + ebp))?;
    p.check(cx, 0x2222, "[ebx+ebp] (base ebx) uses ds")?;
    p.a.mov(ebp, 0x0600)?;
    p.a.mov(ebx, 0x0020)?;
    p.a.mov(cx, word_ptr(ebp + ebx))?;
    p.check(cx, 0x1111, "[ebp+ebx] (base ebp) uses ss")?;
    p.a.push(0x3333)?;
    p.a.mov(cx, word_ptr(esp))?;
    p.a.pop(ax)?;
    p.check(cx, 0x3333, "[esp] uses ss")?;

    p.a.xor(ax, ax)?;
    p.a.mov(ds, ax)
}
