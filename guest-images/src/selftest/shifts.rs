//! Self-test "shifts": SAL/SHL, SHR, SAR, ROL, ROR, RCL, RCR, SHLD, SHRD, BT, BTS, BTR, BTC,
//! BSF, BSR (SDM Vol. 2).
//!
//! What the SDM defines: shifts set CF to the last bit shifted out and SF/ZF/PF from the
//! result; OF only for a count of 1 (SHL: MSB(result) XOR CF; SHR: MSB of the original; SAR:
//! 0), AF never. The count is masked to 5 bits first, and a masked count of 0 changes no flag.
//! Rotates change only CF and (for a count of 1) OF: left rotates MSB(result) XOR CF, right
//! rotates the XOR of the two top bits of the result. RCL/RCR rotate through CF, 9/17/33 bits
//! wide. SHLD/SHRD: CF = last bit out, SF/ZF/PF from the result, OF for count 1 = sign change.
//! BT*: CF = the selected bit; the rest undefined. BSF/BSR: ZF = (source == 0).

use iced_x86::code_asm::*;

use super::set_flags;
use crate::asm::flags::*;
use crate::asm::{Asm, Mem16, Mem32, Program, SCRATCH};

/// Scratch memory (shorthand).
const S: u32 = SCRATCH;

pub(super) fn run(p: &mut Program) -> Asm {
    shifts(p)?;
    rotates(p)?;
    double_shifts(p)?;
    bit_tests(p)?;
    bit_scans(p)
}

fn shifts(p: &mut Program) -> Asm {
    // C0 << 1 = 1_80: CF = 1, OF = MSB(80) ^ CF = 0.
    p.a.mov(al, 0xC0)?;
    p.a.shl(al, 1)?;
    p.check_op(al, 0x80, LOGIC, CF | SF, "shl8 c0,1")?;

    p.a.mov(al, 0x40)?;
    p.a.shl(al, 1)?;
    p.check_op(al, 0x80, LOGIC, OF | SF, "shl8 40,1")?;

    // 1234 << 4: the last bit out is bit 12 of 1234h, which is set; 40h has one one bit.
    p.a.mov(ax, 0x1234)?;
    p.a.shl(ax, 4)?;
    p.check_op(ax, 0x2340, SHIFT, CF, "shl16 1234,4")?;

    // 3 << 31: the last bit out is bit 1 of 3.
    p.a.mov(ebx, 3)?;
    p.a.mov(cl, 31)?;
    p.a.shl(ebx, cl)?;
    p.check_op(ebx, 0x8000_0000, SHIFT, CF | SF | PF, "shl32 3,cl=31")?;

    // A count of 33 is masked to 1: OF is defined and equals MSB(result) ^ CF = 1 ^ 0.
    p.a.mov(ebx, 0x4000_0000)?;
    p.a.mov(cl, 33)?;
    p.a.shl(ebx, cl)?;
    p.check_op(ebx, 0x8000_0000, LOGIC, OF | SF | PF, "shl32 40000000,cl=33 (masked to 1)")?;

    p.a.mov(ax, 0x8001)?;
    p.a.shr(ax, 1)?;
    p.check_op(ax, 0x4000, LOGIC, CF | OF | PF, "shr16 8001,1")?;

    // The last bit out is bit 7 of 78h (clear); 56h has four one bits.
    p.a.mov(ebx, 0x1234_5678)?;
    p.a.shr(ebx, 8)?;
    p.check_op(ebx, 0x0012_3456, SHIFT, PF, "shr32 12345678,8")?;

    p.a.mov(al, 0x81)?;
    p.a.sar(al, 1)?;
    p.check_op(al, 0xC0, LOGIC, CF | SF | PF, "sar8 81,1")?;

    p.a.mov(ax, 0x8000)?;
    p.a.sar(ax, 15)?;
    p.check_op(ax, 0xFFFF, SHIFT, SF | PF, "sar16 8000,15")?;

    p.a.mov(ebx, 0x7FFF_FFF0)?;
    p.a.mov(cl, 4)?;
    p.a.sar(ebx, cl)?;
    p.check_op(ebx, 0x07FF_FFFF, SHIFT, PF, "sar32 7ffffff0,cl=4")?;

    // Counts 0 and 32 (masked to 0) leave operand and every flag alone.
    set_flags(&mut p.a, ARITH)?;
    p.a.mov(al, 0x55)?;
    p.a.mov(cl, 0)?;
    p.a.shl(al, cl)?;
    p.check_op(al, 0x55, ARITH, ARITH, "shl8 cl=0 changes nothing")?;
    set_flags(&mut p.a, 0)?;
    p.a.mov(ebx, 0x1234_5678)?;
    p.a.mov(cl, 32)?;
    p.a.shr(ebx, cl)?;
    p.check_op(ebx, 0x1234_5678, ARITH, 0, "shr32 cl=32 changes nothing")
}

fn rotates(p: &mut Program) -> Asm {
    // 81 rol 1 = 03: CF = LSB(result) = 1, OF = MSB(result) ^ CF = 1.
    p.a.mov(al, 0x81)?;
    p.a.rol(al, 1)?;
    p.check_op(al, 0x03, CF | OF, CF | OF, "rol8 81,1")?;

    p.a.mov(ax, 0x1234)?;
    p.a.rol(ax, 4)?;
    p.check_op(ax, 0x2341, CF, CF, "rol16 1234,4")?;

    // CF = MSB(result) after a right rotate.
    p.a.mov(ebx, 0x1234_5678)?;
    p.a.ror(ebx, 8)?;
    p.check_op(ebx, 0x7812_3456, CF, 0, "ror32 12345678,8")?;

    // 01 ror 1 = 80: CF = 1, OF = bit 7 ^ bit 6 of the result = 1.
    p.a.mov(al, 0x01)?;
    p.a.ror(al, 1)?;
    p.check_op(al, 0x80, CF | OF, CF | OF, "ror8 01,1")?;

    // Rotates leave SF, ZF, AF and PF as they were.
    set_flags(&mut p.a, SF | ZF | AF | PF)?;
    p.a.mov(al, 0x40)?;
    p.a.rol(al, 1)?;
    p.check_op(al, 0x80, ARITH, OF | SF | ZF | AF | PF, "rol8 40,1 keeps SF ZF AF PF")?;

    // RCL 1 with CF=1: 80 -> 01, CF = old MSB = 1, OF = MSB(result) ^ CF = 1.
    p.a.stc()?;
    p.a.mov(al, 0x80)?;
    p.a.rcl(al, 1)?;
    p.check_op(al, 0x01, CF | OF, CF | OF, "rcl8 80,1 with CF")?;

    // 17-bit rotate of 0:1234 left by 4: 1_2340, so CF = 1.
    p.a.clc()?;
    p.a.mov(ax, 0x1234)?;
    p.a.rcl(ax, 4)?;
    p.check_op(ax, 0x2340, CF, CF, "rcl16 1234,4")?;

    // RCR 1: 0:01 -> 00, CF = 1, OF = bit 7 ^ bit 6 of the result = 0.
    p.a.clc()?;
    p.a.mov(al, 0x01)?;
    p.a.rcr(al, 1)?;
    p.check_op(al, 0x00, CF | OF, CF, "rcr8 01,1")?;

    p.a.stc()?;
    p.a.mov(ax, 0x0001)?;
    p.a.rcr(ax, 1)?;
    p.check_op(ax, 0x8000, CF | OF, CF | OF, "rcr16 0001,1 with CF")?;

    // 33-bit 1:12345678 right by 8: the low byte 78h goes to bits 32..25 (bit 7 of it, 0,
    // into CF), the old CF to bit 24: F1123456.
    p.a.stc()?;
    p.a.mov(ebx, 0x1234_5678)?;
    p.a.mov(cl, 8)?;
    p.a.rcr(ebx, cl)?;
    p.check_op(ebx, 0xF112_3456, CF, 0, "rcr32 12345678,cl=8 with CF")?;

    // 8-bit RCL counts are taken modulo 9 (after masking to 5 bits): 9 is a full turn,
    // 10 is one step.
    p.a.stc()?;
    p.a.mov(al, 0x5A)?;
    p.a.mov(cl, 9)?;
    p.a.rcl(al, cl)?;
    p.check_op(al, 0x5A, CF, CF, "rcl8 5a,cl=9 is a full turn")?;
    p.a.clc()?;
    p.a.mov(al, 0x80)?;
    p.a.mov(cl, 10)?;
    p.a.rcl(al, cl)?;
    p.check_op(al, 0x00, CF, CF, "rcl8 80,cl=10 is one step")?;
    // 16-bit: modulo 17, so 18 is one step.
    p.a.clc()?;
    p.a.mov(ax, 0x8000)?;
    p.a.mov(cl, 18)?;
    p.a.rcl(ax, cl)?;
    p.check_op(ax, 0x0000, CF, CF, "rcl16 8000,cl=18 is one step")
}

fn double_shifts(p: &mut Program) -> Asm {
    // 1234 shld 4 from ABCD: 2340 | A = 234A; last bit out = bit 12 of 1234h = 1;
    // 4Ah has three one bits.
    p.a.mov(ax, 0x1234)?;
    p.a.mov(bx, 0xABCD)?;
    p.a.shld(ax, bx, 4)?;
    p.check_op(ax, 0x234A, SHIFT, CF, "shld16 1234,abcd,4")?;

    // 12345678 shrd 8 from AABBCCDD: DD123456; last bit out = bit 7 of 78h = 0.
    p.a.mov(ebx, 0x1234_5678)?;
    p.a.mov(ecx, 0xAABB_CCDDu32)?;
    p.a.shrd(ebx, ecx, 8)?;
    p.check_op(ebx, 0xDD12_3456, SHIFT, SF | PF, "shrd32 12345678,aabbccdd,8")?;

    // A count of 1 defines OF: 40000000 -> 80000001 changes the sign.
    p.a.mov(ebx, 0x4000_0000)?;
    p.a.mov(esi, 0x8000_0000u32)?;
    p.a.mov(cl, 1)?;
    p.a.shld(ebx, esi, cl)?;
    p.check_op(ebx, 0x8000_0001, LOGIC, OF | SF, "shld32 40000000,80000000,cl=1")?;

    // 1234 shrd 4 from 000F: F123; last bit out = bit 3 of 1234h = 0; 23h has three one bits.
    p.a.mov(ax, 0x1234)?;
    p.a.mov(bx, 0x000F)?;
    p.a.shrd(ax, bx, 4)?;
    p.check_op(ax, 0xF123, SHIFT, SF, "shrd16 1234,000f,4")?;

    // 80000000 shrd 31 from 00000001: 1 | (1 << 1) = 3; last bit out = bit 30 = 0.
    p.a.mov(ebx, 0x8000_0000u32)?;
    p.a.mov(esi, 1)?;
    p.a.shrd(ebx, esi, 31)?;
    p.check_op(ebx, 3, SHIFT, PF, "shrd32 80000000,1,31")?;

    // In memory: 8421 shld 1 from FFFF = 0843, CF = 1, the sign changes (OF); 43h has three
    // one bits.
    p.a.mov(word_ptr(S), 0x8421)?;
    p.a.mov(bx, 0xFFFF)?;
    p.a.shld(word_ptr(S), bx, 1)?;
    p.check_op(Mem16(S), 0x0843, LOGIC, CF | OF, "shld16 memory 8421,ffff,1")
}

fn bit_tests(p: &mut Program) -> Asm {
    p.a.mov(ax, 0x0008)?;
    p.a.bt(ax, 3)?;
    p.check_flags(CF, CF, "bt16 0008,3")?;

    p.a.mov(ebx, 0x7FFF_FFFF)?;
    p.a.bt(ebx, 31)?;
    p.check_flags(CF, 0, "bt32 7fffffff,31")?;

    // A register bit offset reaches past the addressed word: bit 33 is bit 1 of the word at
    // +4.
    p.a.mov(dword_ptr(S), 0)?;
    p.a.mov(dword_ptr(S + 4), 0x0000_0002)?;
    p.a.mov(cx, 33)?;
    p.a.bt(word_ptr(S), cx)?;
    p.check_flags(CF, CF, "bt16 memory, register offset 33")?;

    // ... and before it: offset -1 is bit 15 of the word at -2.
    p.a.mov(word_ptr(S + 8), 0x8000)?;
    p.a.mov(bx, S + 10)?;
    p.a.mov(cx, 0xFFFF)?;
    p.a.bt(word_ptr(bx), cx)?;
    p.check_flags(CF, CF, "bt16 memory, register offset -1")?;

    // An immediate offset is taken modulo the operand size: 31 -> 15.
    p.a.bt(word_ptr(S + 8), 31)?;
    p.check_flags(CF, CF, "bt16 memory, immediate 31 (mod 16)")?;

    p.a.mov(ebx, 0)?;
    p.a.bts(ebx, 4)?;
    p.check_op(ebx, 0x10, CF, 0, "bts32 0,4")?;

    p.a.mov(ax, 0x8001)?;
    p.a.btr(ax, 15)?;
    p.check_op(ax, 0x0001, CF, CF, "btr16 8001,15")?;

    p.a.mov(ebx, 1)?;
    p.a.btc(ebx, 0)?;
    p.check_op(ebx, 0, CF, CF, "btc32 1,0")?;

    p.a.mov(ecx, 0x40)?;
    p.a.btc(ecx, 3)?;
    p.check_op(ecx, 0x48, CF, 0, "btc32 40,3")?;

    // BTS with register offset 35 sets bit 3 of the dword at +4.
    p.a.mov(dword_ptr(S), 0)?;
    p.a.mov(dword_ptr(S + 4), 0)?;
    p.a.mov(ecx, 35)?;
    p.a.bts(dword_ptr(S), ecx)?;
    p.check_op(Mem32(S + 4), 8, CF, 0, "bts32 memory, register offset 35")?;
    p.check(Mem32(S), 0, "bts32 memory leaves the first dword")
}

fn bit_scans(p: &mut Program) -> Asm {
    p.a.mov(bx, 0x0100)?;
    p.a.bsf(cx, bx)?;
    p.check_op(cx, 8, ZF, 0, "bsf16 0100")?;

    p.a.mov(ebx, 0x8000_0000u32)?;
    p.a.bsf(ecx, ebx)?;
    p.check_op(ecx, 31, ZF, 0, "bsf32 80000000")?;

    p.a.mov(ebx, 0x0001_2345)?;
    p.a.bsr(ecx, ebx)?;
    p.check_op(ecx, 16, ZF, 0, "bsr32 00012345")?;

    p.a.mov(bx, 1)?;
    p.a.bsr(cx, bx)?;
    p.check_op(cx, 0, ZF, 0, "bsr16 0001")?;

    // A zero source sets ZF (the destination is undefined and not checked).
    p.a.xor(ebx, ebx)?;
    p.a.bsf(ecx, ebx)?;
    p.check_flags(ZF, ZF, "bsf32 0 sets ZF")?;
    p.a.bsr(cx, bx)?;
    p.check_flags(ZF, ZF, "bsr16 0 sets ZF")?;

    // F3 0F BC / F3 0F BD (TZCNT / LZCNT on processors with BMI1 / LZCNT) on a processor
    // without them: the REP prefix is ignored and they are BSF / BSR (SDM Vol. 2B, TZCNT:
    // "on processors that do not support TZCNT, the instruction byte encoding is executed as
    // BSF"; Linux's find_first_bit uses this encoding).
    p.a.mov(ebx, 0x0000_0100)?;
    p.a.db(&[0x66, 0xF3, 0x0F, 0xBC, 0xCB])?; // rep bsf ecx,ebx
    p.check_op(ecx, 8, ZF, 0, "f3 0f bc (tzcnt encoding) is bsf32")?;
    p.a.mov(ebx, 0x0001_2345)?;
    p.a.db(&[0x66, 0xF3, 0x0F, 0xBD, 0xCB])?; // rep bsr ecx,ebx
    p.check_op(ecx, 16, ZF, 0, "f3 0f bd (lzcnt encoding) is bsr32")?;
    p.a.xor(ebx, ebx)?;
    p.a.db(&[0x66, 0xF3, 0x0F, 0xBC, 0xCB])?;
    p.check_flags(ZF, ZF, "f3 0f bc of 0 sets ZF like bsf")
}
