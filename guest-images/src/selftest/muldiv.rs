//! Self-test "muldiv": MUL, IMUL in its one-, two- and three-operand forms, DIV, IDIV, and
//! the sign extensions CBW, CWD, CWDE, CDQ (SDM Vol. 2).
//!
//! MUL sets CF = OF = (upper half of the product != 0); IMUL sets them when the product does
//! not fit the destination as a signed value (one-operand form: when the upper half is not the
//! sign extension of the lower). SF, ZF, AF, PF are undefined after both, and every flag is
//! undefined after DIV and IDIV, so those checks look at CF and OF only, or at no flag.
//! IDIV truncates toward zero; the remainder takes the sign of the dividend.

use iced_x86::code_asm::*;

use crate::asm::flags::*;
use crate::asm::{Asm, Program, SCRATCH};

/// Scratch memory (shorthand).
const S: u32 = SCRATCH;
const CO: u32 = CF | OF;

pub(super) fn run(p: &mut Program) -> Asm {
    mul(p)?;
    imul(p)?;
    div(p)?;
    idiv(p)?;
    extend(p)
}

fn mul(p: &mut Program) -> Asm {
    p.a.mov(al, 0x80)?;
    p.a.mov(bl, 2)?;
    p.a.mul(bl)?;
    p.check_op(ax, 0x0100, CO, CO, "mul8 80*2")?;

    p.a.mov(al, 0x10)?;
    p.a.mov(bl, 0x0F)?;
    p.a.mul(bl)?;
    p.check_op(ax, 0x00F0, CO, 0, "mul8 10*0f")?;

    // 1234h * 5678h = 4660 * 22136 = 103153760 = 0626_0060h.
    p.a.mov(ax, 0x1234)?;
    p.a.mov(cx, 0x5678)?;
    p.a.mul(cx)?;
    p.a.mov(si, dx)?;
    p.a.mov(di, ax)?;
    p.check_op(si, 0x0626, CO, CO, "mul16 1234*5678 dx")?;
    p.check(di, 0x0060, "mul16 1234*5678 ax")?;

    // (2^32 - 1)^2 = 2^64 - 2^33 + 1 = FFFFFFFE_00000001h.
    p.a.mov(eax, 0xFFFF_FFFFu32)?;
    p.a.mov(ecx, eax)?;
    p.a.mul(ecx)?;
    p.a.mov(esi, edx)?;
    p.a.mov(edi, eax)?;
    p.check_op(esi, 0xFFFF_FFFE, CO, CO, "mul32 ffffffff*ffffffff edx")?;
    p.check(edi, 1, "mul32 ffffffff*ffffffff eax")?;

    // 300 * 300 = 90000 = 1_5F90h.
    p.a.mov(word_ptr(S), 300)?;
    p.a.mov(ax, 300)?;
    p.a.mul(word_ptr(S))?;
    p.a.mov(si, dx)?;
    p.a.mov(di, ax)?;
    p.check_op(si, 1, CO, CO, "mul16 memory 300*300 dx")?;
    p.check(di, 0x5F90, "mul16 memory 300*300 ax")
}

fn imul(p: &mut Program) -> Asm {
    p.a.mov(al, 0xFE)?;
    p.a.mov(bl, 3)?;
    p.a.imul(bl)?;
    p.check_op(ax, 0xFFFA, CO, 0, "imul8 -2*3")?;

    p.a.mov(al, 0x40)?;
    p.a.mov(bl, 4)?;
    p.a.imul(bl)?;
    p.check_op(ax, 0x0100, CO, CO, "imul8 64*4")?;

    // -128 * 1 = FF80h: AH is the sign extension of AL, so no overflow.
    p.a.mov(al, 0x80)?;
    p.a.mov(bl, 1)?;
    p.a.imul(bl)?;
    p.check_op(ax, 0xFF80, CO, 0, "imul8 -128*1")?;

    p.a.mov(ax, 0xFFFF)?;
    p.a.mov(cx, 0xFFFF)?;
    p.a.imul(cx)?;
    p.a.mov(si, dx)?;
    p.a.mov(di, ax)?;
    p.check_op(si, 0, CO, 0, "imul16 -1*-1 dx")?;
    p.check(di, 1, "imul16 -1*-1 ax")?;

    // 7FFFFFFFh * 2 = 0_FFFFFFFEh: EAX is negative but EDX is 0, not its sign extension.
    p.a.mov(eax, 0x7FFF_FFFF)?;
    p.a.mov(ecx, 2)?;
    p.a.imul(ecx)?;
    p.a.mov(esi, edx)?;
    p.a.mov(edi, eax)?;
    p.check_op(esi, 0, CO, CO, "imul32 7fffffff*2 edx")?;
    p.check(edi, 0xFFFF_FFFE, "imul32 7fffffff*2 eax")?;

    // -5 * 1000 = -5000 = FFFFFFFF_FFFFEC78h.
    p.a.mov(eax, -5)?;
    p.a.mov(ecx, 1000)?;
    p.a.imul(ecx)?;
    p.a.mov(esi, edx)?;
    p.a.mov(edi, eax)?;
    p.check_op(esi, 0xFFFF_FFFF, CO, 0, "imul32 -5*1000 edx")?;
    p.check(edi, 0xFFFF_EC78, "imul32 -5*1000 eax")?;

    // Two operands: 300 * 200 = 60000 = EA60h, more than 32767.
    p.a.mov(bx, 300)?;
    p.a.mov(cx, 200)?;
    p.a.imul_2(bx, cx)?;
    p.check_op(bx, 0xEA60, CO, CO, "imul16 reg,reg 300*200 overflows")?;

    // -128 * 256 = -32768 = 8000h fits exactly.
    p.a.mov(bx, 0xFF80)?;
    p.a.mov(cx, 256)?;
    p.a.imul_2(bx, cx)?;
    p.check_op(bx, 0x8000, CO, 0, "imul16 reg,reg -128*256 fits")?;

    p.a.mov(ebx, -5)?;
    p.a.mov(ecx, 7)?;
    p.a.imul_2(ebx, ecx)?;
    p.check_op(ebx, 0xFFFF_FFDD, CO, 0, "imul32 reg,reg -5*7")?;

    // Three operands.
    p.a.mov(cx, 0xFFFD)?;
    p.a.imul_3(bx, cx, 10)?;
    p.check_op(bx, 0xFFE2, CO, 0, "imul16 reg,reg,imm8 -3*10")?;

    p.a.mov(ecx, 0x0001_2345)?;
    p.a.imul_3(ebx, ecx, 0x0001_0000)?;
    p.check_op(ebx, 0x2345_0000, CO, CO, "imul32 reg,reg,imm32 12345h*10000h")?;

    p.a.mov(word_ptr(S), 0x1000)?;
    p.a.imul_3(bx, word_ptr(S), 3)?;
    p.check_op(bx, 0x3000, CO, 0, "imul16 reg,mem,imm 1000h*3")
}

fn div(p: &mut Program) -> Asm {
    // 1000 / 7 = 142 (8Eh) remainder 6: AX = AH:AL = 06:8E.
    p.a.mov(ax, 1000)?;
    p.a.mov(bl, 7)?;
    p.a.div(bl)?;
    p.check(ax, 0x068E, "div8 1000/7")?;

    // 10000h / 3 = 5555h remainder 1.
    p.a.mov(dx, 1)?;
    p.a.mov(ax, 0)?;
    p.a.mov(cx, 3)?;
    p.a.div(cx)?;
    p.a.mov(si, dx)?;
    p.check(ax, 0x5555, "div16 10000h/3 quotient")?;
    p.check(si, 1, "div16 10000h/3 remainder")?;

    p.a.mov(edx, 1)?;
    p.a.xor(eax, eax)?;
    p.a.mov(ecx, 0x10)?;
    p.a.div(ecx)?;
    p.a.mov(esi, edx)?;
    p.check(eax, 0x1000_0000, "div32 1_00000000h/10h quotient")?;
    p.check(esi, 0, "div32 1_00000000h/10h remainder")?;

    let dividend: u64 = 0x1234_5678_9ABC_DEF0;
    let divisor: u64 = 0x8765_4321;
    p.a.mov(edx, (dividend >> 32) as u32)?;
    p.a.mov(eax, dividend as u32)?;
    p.a.mov(ecx, divisor as u32)?;
    p.a.div(ecx)?;
    p.a.mov(esi, edx)?;
    p.check(eax, (dividend / divisor) as u32, "div32 123456789abcdef0h/87654321h quotient")?;
    p.check(esi, (dividend % divisor) as u32, "div32 123456789abcdef0h/87654321h remainder")?;

    p.a.mov(dword_ptr(S), 10)?;
    p.a.xor(edx, edx)?;
    p.a.mov(eax, 12345)?;
    p.a.div(dword_ptr(S))?;
    p.a.mov(esi, edx)?;
    p.check(eax, 1234, "div32 memory 12345/10 quotient")?;
    p.check(esi, 5, "div32 memory 12345/10 remainder")
}

fn idiv(p: &mut Program) -> Asm {
    // -7 / 2 = -3 remainder -1: AH:AL = FF:FD.
    p.a.mov(ax, 0xFFF9)?;
    p.a.mov(bl, 2)?;
    p.a.idiv(bl)?;
    p.check(ax, 0xFFFD, "idiv8 -7/2")?;

    // 7 / -2 = -3 remainder 1: AH:AL = 01:FD.
    p.a.mov(ax, 7)?;
    p.a.mov(bl, 0xFE)?;
    p.a.idiv(bl)?;
    p.check(ax, 0x01FD, "idiv8 7/-2")?;

    // -128 / 1 = -128 fits in AL.
    p.a.mov(ax, 0xFF80)?;
    p.a.mov(bl, 1)?;
    p.a.idiv(bl)?;
    p.check(ax, 0x0080, "idiv8 -128/1")?;

    // -1000 / -7 = 142 remainder -6.
    p.a.mov(ax, 0xFC18)?;
    p.a.cwd()?;
    p.a.mov(cx, 0xFFF9)?;
    p.a.idiv(cx)?;
    p.a.mov(si, dx)?;
    p.check(ax, 142, "idiv16 -1000/-7 quotient")?;
    p.check(si, 0xFFFA, "idiv16 -1000/-7 remainder")?;

    // 100 / -7 = -14 remainder 2.
    p.a.mov(eax, 100)?;
    p.a.cdq()?;
    p.a.mov(ecx, -7)?;
    p.a.idiv(ecx)?;
    p.a.mov(esi, edx)?;
    p.check(eax, 0xFFFF_FFF2, "idiv32 100/-7 quotient")?;
    p.check(esi, 2, "idiv32 100/-7 remainder")
}

fn extend(p: &mut Program) -> Asm {
    p.a.mov(al, 0x80)?;
    p.a.cbw()?;
    p.check(ax, 0xFF80, "cbw 80")?;
    p.a.mov(ax, 0x8000)?;
    p.a.mov(dx, 0)?;
    p.a.cwd()?;
    p.check(dx, 0xFFFF, "cwd 8000")?;
    p.a.mov(eax, 0x1234_8000)?;
    p.a.cwde()?;
    p.check(eax, 0xFFFF_8000, "cwde 8000")?;
    p.a.mov(eax, 0x7FFF_FFFF)?;
    p.a.mov(edx, 0xFFFF_FFFFu32)?;
    p.a.cdq()?;
    p.a.mov(esi, edx)?;
    p.check(esi, 0, "cdq 7fffffff")?;
    p.a.mov(eax, 0x8000_0000u32)?;
    p.a.cdq()?;
    p.a.mov(esi, edx)?;
    p.check(esi, 0xFFFF_FFFF, "cdq 80000000")
}
