//! Self-test "stack-control": PUSH/POP (registers, immediates, memory, SP itself, segment
//! registers), PUSHA/POPA, PUSHAD/POPAD, ENTER/LEAVE, near and far CALL/RET/JMP (direct,
//! through a register, through memory), RET n, RETF n, IRET, LOOP/LOOPE/LOOPNE, JCXZ/JECXZ,
//! PUSHF/POPF, LES/LFS (SDM Vol. 2).
//!
//! Points the SDM settles: PUSH SP stores SP as it was before the push (80286 and later);
//! PUSHA pushes AX, CX, DX, BX, the original SP, BP, SI, DI, and POPA discards the SP slot;
//! ENTER size, level pushes BP, copies level - 1 frame pointers from [BP - 2], [BP - 4], …,
//! pushes the new frame pointer, sets BP to it and then subtracts `size` from SP; in real mode
//! at CPL 0 a 16-bit POPF may write IOPL and NT, while bits 3, 5 and 15 read as 0 and bit 1
//! as 1.

use iced_x86::code_asm::*;

use crate::asm::flags::*;
use crate::asm::{Asm, Mem16, Program, SCRATCH};

/// Scratch memory (shorthand).
const S: u32 = SCRATCH;

pub(super) fn run(p: &mut Program) -> Asm {
    push_pop(p)?;
    pusha_popa(p)?;
    enter_leave(p)?;
    transfers(p)?;
    loops(p)?;
    flags_register(p)
}

/// SI = SP difference `before - after` where `before` is in the word at S.
fn sp_drop(p: &mut Program) -> Asm {
    p.a.mov(si, word_ptr(S))?;
    p.a.sub(si, sp)
}

fn push_pop(p: &mut Program) -> Asm {
    p.a.mov(word_ptr(S), sp)?;
    p.a.push(0x1234)?;
    sp_drop(p)?;
    p.check(si, 2, "push imm16 takes 2 bytes")?;
    p.a.pop(cx)?;
    p.check(cx, 0x1234, "pop what push imm16 stored")?;
    p.a.push(-2)?;
    p.a.pop(cx)?;
    p.check(cx, 0xFFFE, "push imm8 sign-extends")?;

    p.a.mov(esi, 0x89AB_CDEFu32)?;
    p.a.push(esi)?;
    sp_drop(p)?;
    p.check(si, 4, "push r32 takes 4 bytes")?;
    p.a.pop(ecx)?;
    p.check(ecx, 0x89AB_CDEF, "pop r32")?;

    // PUSH SP stores the value SP had before the push.
    p.a.push(sp)?;
    p.a.pop(cx)?;
    p.a.sub(cx, word_ptr(S))?;
    p.check(cx, 0, "push sp stores sp before the push")?;

    p.a.mov(word_ptr(S + 2), 0xABCD)?;
    p.a.push(word_ptr(S + 2))?;
    p.a.pop(word_ptr(S + 4))?;
    p.check(Mem16(S + 4), 0xABCD, "push and pop memory operands")?;

    p.a.mov(ax, 0x1234)?;
    p.a.mov(fs, ax)?;
    p.a.push(fs)?;
    p.a.pop(gs)?;
    p.a.mov(cx, gs)?;
    p.check(cx, 0x1234, "push fs, pop gs")?;

    // Far pointers from memory: offset first, then segment.
    p.a.mov(word_ptr(S + 8), 0x5678)?;
    p.a.mov(word_ptr(S + 10), 0x1234)?;
    p.a.lfs(bx, dword_ptr(S + 8))?;
    p.a.mov(cx, fs)?;
    p.check(bx, 0x5678, "lfs offset")?;
    p.check(cx, 0x1234, "lfs segment")?;
    p.a.les(di, dword_ptr(S + 8))?;
    p.a.mov(cx, es)?;
    p.a.xor(ax, ax)?;
    p.a.mov(es, ax)?;
    p.check(di, 0x5678, "les offset")?;
    p.check(cx, 0x1234, "les segment")?;
    sp_drop(p)?;
    p.check(si, 0, "push/pop section leaves sp balanced")
}

fn pusha_popa(p: &mut Program) -> Asm {
    let values =
        [(ax, 0x1111), (cx, 0x2222), (dx, 0x3333), (bx, 0x4444), (bp, 0x5555), (si, 0x6666), (di, 0x7777)];
    for (reg, value) in values {
        p.a.mov(reg, value)?;
    }
    p.a.mov(word_ptr(S), sp)?;
    p.a.pusha()?;
    p.a.mov(bp, sp)?;
    // From the top: AX at +14 down to DI at +0, the original SP at +6.
    let slots = [
        (14, 0x1111, "ax"),
        (12, 0x2222, "cx"),
        (10, 0x3333, "dx"),
        (8, 0x4444, "bx"),
        (4, 0x5555, "bp"),
        (2, 0x6666, "si"),
        (0, 0x7777, "di"),
    ];
    for (offset, value, name) in slots {
        p.a.mov(si, word_ptr(bp + offset))?;
        p.check(si, value, &format!("pusha stores {name} at sp+{offset}"))?;
    }
    p.a.mov(si, word_ptr(bp + 6))?;
    p.a.sub(si, word_ptr(S))?;
    p.check(si, 0, "pusha stores the original sp at sp+6")?;
    p.a.mov(word_ptr(bp + 6), 0xDEAD)?;
    p.a.mov(word_ptr(bp + 14), 0xA0A0)?;
    p.a.popa()?;
    p.a.mov(word_ptr(S + 2), ax)?;
    p.a.mov(word_ptr(S + 4), dx)?;
    p.check(Mem16(S + 2), 0xA0A0, "popa loads ax")?;
    p.check(Mem16(S + 4), 0x3333, "popa loads dx")?;
    p.check(bp, 0x5555, "popa loads bp")?;
    p.check(di, 0x7777, "popa loads di")?;
    sp_drop(p)?;
    p.check(si, 0, "popa skips the sp slot and restores sp")?;

    p.a.mov(eax, 0x1111_1111)?;
    p.a.mov(ebx, 0x4444_4444)?;
    p.a.mov(ebp, 0x5555_5555)?;
    p.a.mov(word_ptr(S), sp)?;
    p.a.pushad()?;
    sp_drop(p)?;
    p.check(si, 32, "pushad takes 32 bytes")?;
    p.a.mov(bp, sp)?;
    p.a.mov(esi, dword_ptr(bp + 28))?;
    p.check(esi, 0x1111_1111, "pushad stores eax at sp+28")?;
    p.a.mov(esi, dword_ptr(bp + 16))?;
    p.check(esi, 0x4444_4444, "pushad stores ebx at sp+16")?;
    p.a.movzx(ecx, word_ptr(S))?;
    p.a.mov(esi, dword_ptr(bp + 12))?;
    p.a.sub(esi, ecx)?;
    p.check(esi, 0, "pushad stores the original esp at sp+12")?;
    p.a.mov(dword_ptr(bp + 28), 0xA5A5_A5A5u32)?;
    p.a.popad()?;
    p.check(eax, 0xA5A5_A5A5, "popad loads eax")?;
    p.check(ebp, 0x5555_5555, "popad loads ebp")?;
    sp_drop(p)?;
    p.check(si, 0, "popad restores sp")
}

fn enter_leave(p: &mut Program) -> Asm {
    p.a.mov(bp, 0x1357)?;
    p.a.mov(word_ptr(S), sp)?;
    p.a.enter(8, 0)?;
    sp_drop(p)?;
    p.check(si, 10, "enter 8,0 pushes bp and allocates 8 bytes")?;
    p.a.mov(si, word_ptr(S))?;
    p.a.sub(si, bp)?;
    p.check(si, 2, "enter 8,0 points bp at the saved bp")?;
    p.a.mov(si, word_ptr(bp))?;
    p.check(si, 0x1357, "enter 8,0 saves bp")?;
    p.a.leave()?;
    sp_drop(p)?;
    p.check(si, 0, "leave restores sp")?;
    p.check(bp, 0x1357, "leave restores bp")?;

    // Level 2: BP = F where [F - 2] holds the enclosing frame pointer to copy.
    let frame = S + 0x100;
    p.a.mov(word_ptr(frame - 2), 0xBEEF)?;
    p.a.mov(bp, frame)?;
    p.a.mov(word_ptr(S), sp)?;
    p.a.enter(4, 2)?;
    sp_drop(p)?;
    p.check(si, 10, "enter 4,2 takes bp, one copied pointer, the new bp and 4 bytes")?;
    p.a.mov(si, word_ptr(S))?;
    p.a.sub(si, bp)?;
    p.check(si, 2, "enter 4,2 points bp at the saved bp")?;
    p.a.mov(si, word_ptr(bp))?;
    p.check(si, frame, "enter 4,2 saves the old bp")?;
    p.a.mov(si, word_ptr(bp - 2))?;
    p.check(si, 0xBEEF, "enter 4,2 copies the enclosing frame pointer from [bp-2]")?;
    p.a.mov(si, word_ptr(bp - 4))?;
    p.a.sub(si, bp)?;
    p.check(si, 0, "enter 4,2 pushes the new frame pointer")?;
    p.a.leave()?;
    sp_drop(p)?;
    p.check(si, 0, "leave after enter 4,2 restores sp")?;
    p.check(bp, frame, "leave after enter 4,2 restores bp")
}

fn transfers(p: &mut Program) -> Asm {
    let mut over = p.label();
    let mut near_sub = p.label();
    let mut ret4_sub = p.label();
    let mut far_sub = p.label();
    let mut retf2_sub = p.label();
    let mut iret_sub = p.label();
    let mut get_ip = p.label();

    // Subroutines: near and far versions add 2 to CX.
    p.a.jmp(over)?;
    p.bind(&mut near_sub)?;
    p.a.add(cx, 2)?;
    p.a.ret()?;
    p.bind(&mut ret4_sub)?;
    p.a.ret_1(4)?;
    p.bind(&mut far_sub)?;
    p.a.add(cx, 2)?;
    p.a.retf()?;
    p.bind(&mut retf2_sub)?;
    p.a.retf_1(2)?;
    p.bind(&mut iret_sub)?;
    p.a.iret()?;
    p.bind(&mut get_ip)?;
    p.a.mov(bp, sp)?;
    p.a.mov(dx, word_ptr(bp))?;
    p.a.ret()?;
    p.bind(&mut over)?;

    p.a.mov(word_ptr(S), sp)?;
    p.a.xor(cx, cx)?;
    p.a.call(near_sub)?;
    p.check(cx, 2, "call rel16")?;
    let near = p.addr(near_sub);
    p.a.mov(si, near)?;
    p.a.call(si)?;
    p.check(cx, 4, "call r16")?;
    p.a.mov(word_ptr(S + 2), near)?;
    p.a.call(word_ptr(S + 2))?;
    p.check(cx, 6, "call m16")?;
    let far = p.addr(far_sub);
    p.a.call_far(0, far)?;
    p.check(cx, 8, "call ptr16:16 and retf")?;
    p.a.mov(word_ptr(S + 2), far)?;
    p.a.mov(word_ptr(S + 4), 0)?;
    p.a.call(dword_ptr(S + 2))?;
    p.check(cx, 10, "call m16:16 and retf")?;
    p.a.push(cs)?;
    p.a.call(far_sub)?;
    p.check(cx, 12, "push cs, call rel16, retf")?;
    p.a.mov(si, cs)?;
    p.check(si, 0, "retf reloads cs")?;
    sp_drop(p)?;
    p.check(si, 0, "calls and returns leave sp balanced")?;

    p.a.push(ax)?;
    p.a.push(ax)?;
    p.a.call(ret4_sub)?;
    sp_drop(p)?;
    p.check(si, 0, "ret 4 drops two words of arguments")?;
    p.a.push(ax)?;
    let retf2 = p.addr(retf2_sub);
    p.a.call_far(0, retf2)?;
    sp_drop(p)?;
    p.check(si, 0, "retf 2 drops one word of arguments")?;

    // IRET pops IP, CS and FLAGS: CF comes back from the pushed image.
    p.a.stc()?;
    p.a.pushf()?;
    p.a.clc()?;
    p.a.push(cs)?;
    p.a.call(iret_sub)?;
    p.check_flags(CF, CF, "iret restores flags")?;
    sp_drop(p)?;
    p.check(si, 0, "iret pops ip, cs and flags")?;

    // The return address a CALL pushes is the address of the next instruction.
    let mut after_call = p.label();
    p.a.call(get_ip)?;
    p.bind(&mut after_call)?;
    p.a.mov(di, dx)?;
    let expected = p.addr(after_call);
    p.check(di, expected, "call pushes the address of the next instruction")?;

    // Indirect and far jumps; each skips a MOV that would spoil CX.
    let mut t1 = p.label();
    let mut t2 = p.label();
    let mut t3 = p.label();
    let mut t4 = p.label();
    p.a.mov(cx, 1)?;
    let a1 = p.addr(t1);
    p.a.mov(si, a1)?;
    p.a.jmp(si)?;
    p.a.mov(cx, 0xBAD)?;
    p.bind(&mut t1)?;
    let a2 = p.addr(t2);
    p.a.mov(word_ptr(S + 2), a2)?;
    p.a.jmp(word_ptr(S + 2))?;
    p.a.mov(cx, 0xBAD)?;
    p.bind(&mut t2)?;
    let a3 = p.addr(t3);
    p.a.mov(word_ptr(S + 2), a3)?;
    p.a.mov(word_ptr(S + 4), 0)?;
    p.a.jmp(dword_ptr(S + 2))?;
    p.a.mov(cx, 0xBAD)?;
    p.bind(&mut t3)?;
    let a4 = p.addr(t4);
    p.a.jmp_far(0, a4)?;
    p.a.mov(cx, 0xBAD)?;
    p.bind(&mut t4)?;
    p.check(cx, 1, "jmp r16, jmp m16, jmp m16:16, jmp ptr16:16 all taken")
}

fn loops(p: &mut Program) -> Asm {
    let mut l1 = p.label();
    p.a.mov(cx, 5)?;
    p.a.xor(si, si)?;
    p.bind(&mut l1)?;
    p.a.inc(si)?;
    p.a.loop_(l1)?;
    p.check(si, 5, "loop runs cx times")?;
    p.check(cx, 0, "loop ends with cx = 0")?;

    // LOOPNE stops when the body leaves ZF set: at BX = 3, after 3 of 10 rounds.
    let mut l2 = p.label();
    p.a.mov(cx, 10)?;
    p.a.xor(bx, bx)?;
    p.bind(&mut l2)?;
    p.a.inc(bx)?;
    p.a.cmp(bx, 3)?;
    p.a.loopne(l2)?;
    p.check(bx, 3, "loopne stops on ZF")?;
    p.check(cx, 7, "loopne decrements cx each round")?;

    // LOOPE stops when ZF is clear: (BX & ~3) == 0 holds for BX = 1, 2, 3.
    let mut l3 = p.label();
    p.a.mov(cx, 10)?;
    p.a.xor(bx, bx)?;
    p.bind(&mut l3)?;
    p.a.inc(bx)?;
    p.a.test(bx, 0xFFFC)?;
    p.a.loope(l3)?;
    p.check(bx, 4, "loope stops on ZF clear")?;
    p.check(cx, 6, "loope decrements cx each round")?;

    // ECX = 1_0000h: CX is zero, ECX is not.
    let mut taken1 = p.label();
    let mut taken2 = p.label();
    p.a.mov(ecx, 0x0001_0000)?;
    p.a.mov(si, 1)?;
    p.a.jcxz(taken1)?;
    p.a.mov(si, 0)?;
    p.bind(&mut taken1)?;
    p.check(si, 1, "jcxz looks at cx only")?;
    // JECXZ as 16-bit code spells it, 67 E3 rel8, skipping the 3-byte MOV SI, imm16 when taken.
    p.a.mov(si, 0)?;
    p.a.db(&[0x67, 0xE3, 0x03])?;
    p.a.mov(si, 2)?;
    p.check(si, 2, "jecxz (67 e3) looks at all of ecx")?;
    // iced's `jecxz` adds an operand-size prefix (66 67 E3): the same test with a 32-bit IP.
    p.a.mov(si, 0)?;
    p.a.jecxz(taken2)?;
    p.a.mov(si, 2)?;
    p.bind(&mut taken2)?;
    p.check(si, 2, "o32 jecxz (66 67 e3) looks at all of ecx")
}

fn flags_register(p: &mut Program) -> Asm {
    // OF DF SF ZF AF PF CF all set, then read back.
    super::set_flags(&mut p.a, ARITH | DF)?;
    p.check_flags(ARITH | DF, ARITH | DF, "popf then pushf")?;
    p.a.cld()?;

    // IOPL and NT are writable in real mode; bits 3, 5, 15 read 0 and bit 1 reads 1.
    super::set_flags(&mut p.a, 0xF028)?;
    p.a.pushf()?;
    p.a.pop(si)?;
    p.a.and(si, 0xF02A)?;
    p.check(si, 0x7002, "popf sets iopl and nt; reserved bits read 0 and bit 1 reads 1")?;
    super::set_flags(&mut p.a, 0)
}
