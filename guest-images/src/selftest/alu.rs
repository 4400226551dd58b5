//! Self-test "alu": the arithmetic and logic instructions and their flags (SDM Vol. 2: ADD,
//! ADC, SUB, SBB, CMP, INC, DEC, NEG, AND, OR, XOR, TEST, NOT, SETcc, CMOVcc, XADD, XCHG,
//! CMPXCHG, CMPXCHG8B, MOVZX, MOVSX, BSWAP), in 8-, 16- and 32-bit forms.
//!
//! Flag arithmetic used below: AF is the carry (or borrow) out of bit 3; PF is set when the
//! low byte of the result has an even number of one bits; OF is set when both operands of an
//! addition (or the minuend and the negated subtrahend) have the same sign and the result's
//! sign differs.

use iced_x86::code_asm::*;

use super::store;
use crate::asm::flags::*;
use crate::asm::{Asm, Mem16, Mem32, Mem8, Program, SCRATCH};

/// Scratch memory (shorthand).
const S: u32 = SCRATCH;

pub(super) fn run(p: &mut Program) -> Asm {
    add_adc(p)?;
    sub_sbb_cmp(p)?;
    inc_dec_neg(p)?;
    logic(p)?;
    setcc(p)?;
    cmovcc(p)?;
    exchange(p)?;
    extend_swap(p)
}

fn add_adc(p: &mut Program) -> Asm {
    p.a.mov(al, 0x7F)?;
    p.a.mov(bl, 1)?;
    p.a.add(al, bl)?;
    p.check_op(al, 0x80, ARITH, OF | SF | AF, "add8 7f+01")?;

    p.a.mov(al, 0xFF)?;
    p.a.add(al, 1)?;
    p.check_op(al, 0, ARITH, CF | ZF | AF | PF, "add8 ff+01")?;

    p.a.mov(ax, 0x8000)?;
    p.a.mov(bx, 0x8000)?;
    p.a.add(ax, bx)?;
    p.check_op(ax, 0, ARITH, CF | OF | ZF | PF, "add16 8000+8000")?;

    p.a.mov(eax, 0x7FFF_FFFF)?;
    p.a.add(eax, 1)?;
    p.check_op(eax, 0x8000_0000, ARITH, OF | SF | AF | PF, "add32 7fffffff+1")?;

    // FFFFFFFF + FFFFFFFF = 1_FFFFFFFE: carry, no overflow (both negative, result negative);
    // F+F carries out of bit 3; FE has seven one bits.
    p.a.mov(ebx, 0xFFFF_FFFFu32)?;
    p.a.mov(ecx, 0xFFFF_FFFFu32)?;
    p.a.add(ebx, ecx)?;
    p.check_op(ebx, 0xFFFF_FFFE, ARITH, CF | SF | AF, "add32 ffffffff+ffffffff")?;

    // A 64-bit addition as ADD/ADC: 1_FFFFFFFF + 2_00000001 = 4_00000000.
    p.a.mov(ecx, 0xFFFF_FFFFu32)?;
    p.a.mov(ebx, 1)?;
    p.a.add(ecx, 1)?;
    p.a.adc(ebx, 2)?;
    p.check_op(ebx, 4, ARITH, 0, "adc32 carry chain high dword")?;
    p.check(ecx, 0, "adc32 carry chain low dword")?;

    p.a.stc()?;
    p.a.mov(al, 0xFF)?;
    p.a.mov(bl, 0)?;
    p.a.adc(al, bl)?;
    p.check_op(al, 0, ARITH, CF | ZF | AF | PF, "adc8 ff+00+CF")?;

    p.a.stc()?;
    p.a.mov(ax, 0x7FFF)?;
    p.a.adc(ax, 0)?;
    p.check_op(ax, 0x8000, ARITH, OF | SF | AF | PF, "adc16 7fff+0+CF")?;

    // FFFF + FFFF + 1 = 1_FFFF: carry; F+F+1 carries out of bit 3; FF has eight one bits.
    p.a.stc()?;
    p.a.mov(ax, 0xFFFF)?;
    p.a.mov(bx, 0xFFFF)?;
    p.a.adc(ax, bx)?;
    p.check_op(ax, 0xFFFF, ARITH, CF | SF | AF | PF, "adc16 ffff+ffff+CF")?;

    // 1234 + 0FF0 = 2224: 4+0 does not carry out of bit 3; 24h has two one bits.
    p.a.mov(word_ptr(S), 0x1234)?;
    p.a.add(word_ptr(S), 0x0FF0)?;
    p.check_op(Mem16(S), 0x2224, ARITH, PF, "add16 to memory 1234+0ff0")
}

fn sub_sbb_cmp(p: &mut Program) -> Asm {
    p.a.mov(al, 0)?;
    p.a.sub(al, 1)?;
    p.check_op(al, 0xFF, ARITH, CF | SF | AF | PF, "sub8 00-01")?;

    p.a.mov(al, 0x80)?;
    p.a.sub(al, 1)?;
    p.check_op(al, 0x7F, ARITH, OF | AF, "sub8 80-01")?;

    p.a.mov(ax, 0x1234)?;
    p.a.sub(ax, 0x1234)?;
    p.check_op(ax, 0, ARITH, ZF | PF, "sub16 1234-1234")?;

    p.a.mov(eax, 0)?;
    p.a.mov(ebx, 1)?;
    p.a.sub(eax, ebx)?;
    p.check_op(eax, 0xFFFF_FFFF, ARITH, CF | SF | AF | PF, "sub32 0-1")?;

    p.a.mov(ecx, 0x8000_0000u32)?;
    p.a.sub(ecx, 1)?;
    p.check_op(ecx, 0x7FFF_FFFF, ARITH, OF | AF | PF, "sub32 80000000-1")?;

    // 10 - 0F - 1 = 0: no borrow out of bit 7, but 0 - F - 1 borrows out of bit 3.
    p.a.stc()?;
    p.a.mov(al, 0x10)?;
    p.a.sbb(al, 0x0F)?;
    p.check_op(al, 0, ARITH, ZF | AF | PF, "sbb8 10-0f-CF")?;

    p.a.stc()?;
    p.a.mov(al, 0)?;
    p.a.sbb(al, 0)?;
    p.check_op(al, 0xFF, ARITH, CF | SF | AF | PF, "sbb8 00-00-CF")?;

    // A 64-bit subtraction as SUB/SBB: 5_00000000 - 1_00000001 = 3_FFFFFFFF.
    p.a.mov(ecx, 0)?;
    p.a.mov(ebx, 5)?;
    p.a.sub(ecx, 1)?;
    p.a.sbb(ebx, 1)?;
    p.check_op(ebx, 3, ARITH, PF, "sbb32 borrow chain high dword")?;
    p.check(ecx, 0xFFFF_FFFF, "sbb32 borrow chain low dword")?;

    p.a.mov(al, 1)?;
    p.a.cmp(al, 2)?;
    p.check_op(al, 1, ARITH, CF | SF | AF | PF, "cmp8 01,02 leaves AL")?;

    // 8000 - 0001 = 7FFF: negative minus positive gives positive, so OF.
    p.a.mov(ax, 0x8000)?;
    p.a.cmp(ax, 1)?;
    p.check_op(ax, 0x8000, ARITH, OF | AF | PF, "cmp16 8000,0001 leaves AX")?;

    p.a.mov(eax, 5)?;
    p.a.cmp(eax, 5)?;
    p.check_flags(ARITH, ZF | PF, "cmp32 5,5")?;

    p.a.mov(byte_ptr(S), 0x40)?;
    p.a.cmp(byte_ptr(S), 0x41)?;
    p.check_flags(ARITH, CF | SF | AF | PF, "cmp8 memory 40,41")
}

fn inc_dec_neg(p: &mut Program) -> Asm {
    p.a.stc()?;
    p.a.mov(al, 0xFF)?;
    p.a.inc(al)?;
    p.check_op(al, 0, ARITH, CF | ZF | AF | PF, "inc8 ff keeps CF")?;

    p.a.clc()?;
    p.a.mov(ax, 0x7FFF)?;
    p.a.inc(ax)?;
    p.check_op(ax, 0x8000, ARITH, OF | SF | AF | PF, "inc16 7fff")?;

    p.a.stc()?;
    p.a.mov(ax, 0x8000)?;
    p.a.dec(ax)?;
    p.check_op(ax, 0x7FFF, ARITH, CF | OF | AF | PF, "dec16 8000 keeps CF")?;

    p.a.clc()?;
    p.a.mov(ecx, 1)?;
    p.a.dec(ecx)?;
    p.check_op(ecx, 0, ARITH, ZF | PF, "dec32 1")?;

    p.a.clc()?;
    p.a.mov(dword_ptr(S), 0xFFFF_FFFFu32)?;
    p.a.inc(dword_ptr(S))?;
    p.check_op(Mem32(S), 0, ARITH, ZF | AF | PF, "inc32 memory ffffffff")?;

    // NEG: CF = (source != 0); flags otherwise as for 0 - source.
    p.a.mov(al, 1)?;
    p.a.neg(al)?;
    p.check_op(al, 0xFF, ARITH, CF | SF | AF | PF, "neg8 01")?;

    p.a.mov(al, 0)?;
    p.a.neg(al)?;
    p.check_op(al, 0, ARITH, ZF | PF, "neg8 00")?;

    p.a.mov(al, 0x80)?;
    p.a.neg(al)?;
    p.check_op(al, 0x80, ARITH, CF | OF | SF, "neg8 80")?;

    p.a.mov(ax, 0x8000)?;
    p.a.neg(ax)?;
    p.check_op(ax, 0x8000, ARITH, CF | OF | SF | PF, "neg16 8000")?;

    // 0 - 5 = FFFFFFFB: borrow out of bit 3; FB has seven one bits.
    p.a.mov(ecx, 5)?;
    p.a.neg(ecx)?;
    p.check_op(ecx, 0xFFFF_FFFB, ARITH, CF | SF | AF, "neg32 5")
}

fn logic(p: &mut Program) -> Asm {
    // AND, OR, XOR, TEST clear CF and OF; AF is undefined (LOGIC leaves it out).
    p.a.stc()?;
    p.a.mov(al, 0xF0)?;
    p.a.and(al, 0x0F)?;
    p.check_op(al, 0, LOGIC, ZF | PF, "and8 f0&0f")?;

    p.a.stc()?;
    p.a.mov(ax, 0x8000)?;
    p.a.or(ax, 1)?;
    p.check_op(ax, 0x8001, LOGIC, SF, "or16 8000|0001")?;

    p.a.stc()?;
    p.a.mov(ecx, 0x0000_FF00)?;
    p.a.xor(ecx, 0x0000_0103)?;
    p.check_op(ecx, 0x0000_FE03, LOGIC, PF, "xor32 ff00^0103")?;

    p.a.stc()?;
    p.a.mov(eax, 0x1234_5678)?;
    p.a.xor(eax, eax)?;
    p.check_op(eax, 0, LOGIC, ZF | PF, "xor32 eax,eax")?;

    p.a.mov(al, 0x81)?;
    p.a.test(al, 0x80)?;
    p.check_op(al, 0x81, LOGIC, SF, "test8 81,80 leaves AL")?;

    // NOT changes no flag.
    p.a.stc()?;
    p.a.mov(al, 0x0F)?;
    p.a.not(al)?;
    p.check_op(al, 0xF0, CF, CF, "not8 0f keeps CF")
}

/// One SETcc, emitted on a register.
type SetCc = fn(&mut CodeAssembler, AsmRegister8) -> Asm;

fn setcc(p: &mut Program) -> Asm {
    // CMP 8000h, 1: unsigned 8000h > 1, signed -32768 < 1; result 7FFF: OF, PF (FFh), no SF.
    let after_signed_unsigned: [(&str, SetCc, u32); 16] = [
        ("seta", |a, r| a.seta(r), 1),
        ("setae", |a, r| a.setae(r), 1),
        ("setb", |a, r| a.setb(r), 0),
        ("setbe", |a, r| a.setbe(r), 0),
        ("sete", |a, r| a.sete(r), 0),
        ("setne", |a, r| a.setne(r), 1),
        ("setg", |a, r| a.setg(r), 0),
        ("setge", |a, r| a.setge(r), 0),
        ("setl", |a, r| a.setl(r), 1),
        ("setle", |a, r| a.setle(r), 1),
        ("seto", |a, r| a.seto(r), 1),
        ("setno", |a, r| a.setno(r), 0),
        ("sets", |a, r| a.sets(r), 0),
        ("setns", |a, r| a.setns(r), 1),
        ("setp", |a, r| a.setp(r), 1),
        ("setnp", |a, r| a.setnp(r), 0),
    ];
    p.a.mov(ax, 0x8000)?;
    p.a.cmp(ax, 1)?;
    for (name, emit, expected) in after_signed_unsigned {
        emit(&mut p.a, cl)?;
        p.check(cl, expected, &format!("{name} after cmp 8000h,1"))?;
    }

    let after_equal: [(&str, SetCc, u32); 5] = [
        ("sete", |a, r| a.sete(r), 1),
        ("setbe", |a, r| a.setbe(r), 1),
        ("setge", |a, r| a.setge(r), 1),
        ("setl", |a, r| a.setl(r), 0),
        ("seta", |a, r| a.seta(r), 0),
    ];
    p.a.mov(ebx, 7)?;
    p.a.cmp(ebx, 7)?;
    for (name, emit, expected) in after_equal {
        emit(&mut p.a, cl)?;
        p.check(cl, expected, &format!("{name} after cmp 7,7"))?;
    }

    p.a.mov(byte_ptr(S), 0x55)?;
    p.a.stc()?;
    p.a.setc(byte_ptr(S))?;
    p.check(Mem8(S), 1, "setc to memory")
}

fn cmovcc(p: &mut Program) -> Asm {
    // Same comparison as for SETcc: L and A hold, G and B do not.
    p.a.mov(ebx, 222)?;
    p.a.mov(dword_ptr(S), 0xCAFE_BABEu32)?;
    p.a.mov(ax, 0x8000)?;
    p.a.cmp(ax, 1)?;
    p.a.mov(ecx, 111)?;
    p.a.cmovl(ecx, ebx)?;
    p.check(ecx, 222, "cmovl taken")?;
    p.a.mov(ecx, 111)?;
    p.a.cmovg(ecx, ebx)?;
    p.check(ecx, 111, "cmovg not taken")?;
    p.a.mov(ecx, 111)?;
    p.a.cmova(ecx, ebx)?;
    p.check(ecx, 222, "cmova taken")?;
    p.a.mov(ecx, 111)?;
    p.a.cmovb(ecx, ebx)?;
    p.check(ecx, 111, "cmovb not taken")?;
    p.a.mov(cx, 1)?;
    p.a.mov(bx, 2)?;
    p.a.cmovo(cx, bx)?;
    p.check(cx, 2, "cmovo16 taken")?;
    p.a.mov(ecx, 0)?;
    p.a.cmovs(ecx, dword_ptr(S))?;
    p.check(ecx, 0, "cmovs from memory not taken")?;
    p.a.cmovns(ecx, dword_ptr(S))?;
    p.check(ecx, 0xCAFE_BABE, "cmovns from memory taken")
}

fn exchange(p: &mut Program) -> Asm {
    // XADD: DEST = DEST + SRC, SRC = old DEST; flags of the addition (5+7 = 0Ch).
    p.a.mov(ecx, 5)?;
    p.a.mov(ebx, 7)?;
    p.a.xadd(ecx, ebx)?;
    p.check_op(ecx, 12, ARITH, PF, "xadd32 5,7 sum")?;
    p.check(ebx, 5, "xadd32 5,7 old destination")?;

    p.a.mov(byte_ptr(S), 0xFF)?;
    p.a.mov(cl, 1)?;
    p.a.xadd(byte_ptr(S), cl)?;
    p.check_op(Mem8(S), 0, ARITH, CF | ZF | AF | PF, "xadd8 memory ff,01 sum")?;
    p.check(cl, 0xFF, "xadd8 memory ff,01 old destination")?;

    p.a.mov(cx, 0x0001)?;
    p.a.mov(bx, 0x0002)?;
    p.a.xchg(cx, bx)?;
    p.check(cx, 2, "xchg16 registers")?;
    p.a.mov(word_ptr(S), 0x55)?;
    p.a.mov(cx, 0x66)?;
    p.a.xchg(word_ptr(S), cx)?;
    p.check(cx, 0x55, "xchg16 memory to register")?;
    p.check(Mem16(S), 0x66, "xchg16 register to memory")?;

    // CMPXCHG: flags as CMP accumulator, DEST; equal -> DEST = SRC, else accumulator = DEST.
    p.a.mov(byte_ptr(S), 5)?;
    p.a.mov(al, 5)?;
    p.a.mov(cl, 9)?;
    p.a.cmpxchg(byte_ptr(S), cl)?;
    p.a.mov(bl, al)?;
    p.check_op(Mem8(S), 9, ARITH, ZF | PF, "cmpxchg8 equal stores source")?;
    p.check(bl, 5, "cmpxchg8 equal leaves AL")?;

    // 5 - 7 = FFFEh: borrow, SF, borrow out of bit 3; FE has seven one bits.
    p.a.mov(word_ptr(S), 7)?;
    p.a.mov(ax, 5)?;
    p.a.mov(cx, 9)?;
    p.a.cmpxchg(word_ptr(S), cx)?;
    p.a.mov(bx, ax)?;
    p.check_op(bx, 7, ARITH, CF | SF | AF, "cmpxchg16 unequal loads AX")?;
    p.check(Mem16(S), 7, "cmpxchg16 unequal leaves memory")?;

    p.a.mov(dword_ptr(S), 0x1122_3344)?;
    p.a.mov(eax, 0x1122_3344)?;
    p.a.mov(ecx, 0xAABB_CCDDu32)?;
    p.a.cmpxchg(dword_ptr(S), ecx)?;
    p.check_op(Mem32(S), 0xAABB_CCDD, ZF, ZF, "cmpxchg32 equal stores source")?;

    // CMPXCHG8B: EDX:EAX == m64 -> m64 = ECX:EBX, ZF; else EDX:EAX = m64, no ZF.
    store(&mut p.a, S, &0x0000_0001_0000_0002u64.to_le_bytes())?;
    p.a.mov(edx, 1)?;
    p.a.mov(eax, 2)?;
    p.a.mov(ecx, 0x3333_3333)?;
    p.a.mov(ebx, 0x4444_4444)?;
    p.a.cmpxchg8b(qword_ptr(S))?;
    p.check_op(Mem32(S), 0x4444_4444, ZF, ZF, "cmpxchg8b equal stores ecx:ebx low")?;
    p.check(Mem32(S + 4), 0x3333_3333, "cmpxchg8b equal stores ecx:ebx high")?;

    store(&mut p.a, S, &0x0000_0005_0000_0006u64.to_le_bytes())?;
    p.a.xor(edx, edx)?;
    p.a.xor(eax, eax)?;
    p.a.cmpxchg8b(qword_ptr(S))?;
    p.a.mov(esi, eax)?;
    p.a.mov(edi, edx)?;
    p.check_op(esi, 6, ZF, 0, "cmpxchg8b unequal loads eax")?;
    p.check(edi, 5, "cmpxchg8b unequal loads edx")
}

fn extend_swap(p: &mut Program) -> Asm {
    p.a.mov(bl, 0x80)?;
    p.a.movzx(cx, bl)?;
    p.check(cx, 0x0080, "movzx16 byte 80")?;
    p.a.movsx(ecx, bl)?;
    p.check(ecx, 0xFFFF_FF80, "movsx32 byte 80")?;
    p.a.mov(bl, 0x7F)?;
    p.a.movsx(cx, bl)?;
    p.check(cx, 0x007F, "movsx16 byte 7f")?;
    p.a.mov(word_ptr(S), 0x8001)?;
    p.a.movsx(ecx, word_ptr(S))?;
    p.check(ecx, 0xFFFF_8001, "movsx32 word 8001 from memory")?;
    p.a.movzx(ecx, word_ptr(S))?;
    p.check(ecx, 0x0000_8001, "movzx32 word 8001 from memory")?;
    p.a.mov(ecx, 0x1234_5678)?;
    p.a.bswap(ecx)?;
    p.check(ecx, 0x7856_3412, "bswap 12345678")
}
