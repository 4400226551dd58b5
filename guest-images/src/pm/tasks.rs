//! Kernel "pm-tasks": hardware task switches (SDM Vol. 3A, chapter 7; Vol. 2, JMP, CALL,
//! IRET, INT n, LTR).
//!
//! The kernel itself is task A, whose TSS is the runtime's [`TSS0`]. Points the SDM settles
//! (7.3 "Task Switching", Table 7-2):
//! - A switch saves the general registers, segment selectors, EFLAGS and EIP (of the
//!   instruction after the one that switched) in the old TSS and loads the new task's state
//!   from its TSS, including LDTR; CR0.TS is set on every switch.
//! - JMP clears the old task's busy bit and sets the new one's; CALL, INT n and exceptions
//!   through a task gate keep the old one busy, set NT in the new task and write the old TSS
//!   selector into the new TSS's previous-task link; IRET with NT = 1 returns to the linked
//!   task, clears the old task's busy bit and the NT flag in the EFLAGS image it saves.
//! - An exception through a task gate pushes its error code on the new task's stack (6.12.2).
//! - A 16-bit TSS (44 bytes) saves and loads 16-bit IP, FLAGS and registers.
//! - Before the switch (in the old task's context): a TSS descriptor that is busy is #GP(TSS
//!   selector) for JMP and CALL, also through a task gate (the error code names the TSS, not
//!   the gate); not present is #NP(TSS selector); a limit below 67h (32-bit) or 2Bh (16-bit)
//!   is #TS(TSS selector). IRET with NT = 1 to a link whose TSS is not busy is #TS(link).

use iced_x86::code_asm::*;

use super::rt::*;
use crate::asm::{Asm, Mem32, Mem8};

/// 32-bit TSS of task B (JMP).
const TB: u16 = 0x30;
/// Task gate to TC.
const TG_C: u16 = 0x38;
/// 32-bit TSS of task C (CALL through a task gate).
const TC: u16 = 0x40;
/// 32-bit TSS of task D (INT 50h through an IDT task gate).
const TD: u16 = 0x48;
/// 32-bit TSS of task E (#GP through an IDT task gate).
const TE: u16 = 0x50;
/// 16-bit TSS of task F.
const TF16: u16 = 0x58;
/// Code segment of task F, based at its code.
const CODE_F: u16 = 0x60;
/// A 32-bit TSS descriptor with limit 66h.
const T_SMALL: u16 = 0x68;
/// A 16-bit TSS descriptor with limit 2Ah.
const T16_SMALL: u16 = 0x70;
/// A 32-bit TSS descriptor that is not present.
const T_NP: u16 = 0x78;
/// Task gate to the kernel's own (busy) TSS.
const TG_A: u16 = 0x80;
/// An LDT (for task B's LDT field).
const LDT_SEL: u16 = 0x88;

/// TSS memory of the tasks.
const TSS_B: u32 = tss_addr(0);
const TSS_C: u32 = tss_addr(1);
const TSS_D: u32 = tss_addr(2);
const TSS_E: u32 = tss_addr(3);
const TSS_F: u32 = tss_addr(4);
const TSS_X: u32 = tss_addr(5);

/// Vector of the task gate to D.
const VEC_TASK: u32 = 0x50;

/// What the tasks record (dwords at TEST_VARS).
const SEEN: u32 = TEST_VARS;
/// Registers of task A right after it is switched back to.
const A_REGS: u32 = TEST_VARS + 0x100;

/// 32-bit TSS field offsets (SDM Figure 7-2).
const LINK: u32 = 0x00;
const CR3_FIELD: u32 = 0x1C;
const EIP_FIELD: u32 = 0x20;
const EFLAGS_FIELD: u32 = 0x24;
const EAX_FIELD: u32 = 0x28;
const ESP_FIELD: u32 = 0x38;
const LDT_FIELD: u32 = 0x60;

/// The register values task B starts with: EAX, ECX, EDX, EBX, (ESP), EBP, ESI, EDI.
const B_REGS: [u32; 8] =
    [0xB000_00AA, 0xB000_00CC, 0xB000_00DD, 0xB000_00BB, 0, 0xB000_00B9, 0xB000_005E, 0xB000_00D1];
/// Task A's registers when it switches away.
const A_SET: [u32; 8] =
    [0xA000_00AA, 0xA000_00CC, 0xA000_00DD, 0xA000_00BB, 0, 0xA000_00B9, 0xA000_005E, 0xA000_00D1];

/// Type byte (P, DPL, type) of a GDT entry.
fn type_byte(selector: u16) -> Mem8 {
    Mem8(GDT + u32::from(selector) + 5)
}

pub(super) fn run(p: &mut Program) -> Asm {
    p.section("jmp to a tss", jmp_task)?;
    p.section("call through a task gate and iret back", call_task_gate)?;
    p.section("int through a task gate", int_task_gate)?;
    p.section("an exception through a task gate", exception_task_gate)?;
    p.section("a 16-bit tss", tss16)?;
    p.section("invalid task switches", invalid)?;
    p.section("ltr", ltr)
}

/// Writes a 32-bit TSS at `addr` for a ring-0 task starting at `entry` on `stack`, with
/// general registers `regs` (ESP's slot ignored) and LDT selector `ldt`; CR3 as now.
fn tss32(p: &mut Program, addr: u32, entry: u32, stack: u32, regs: [u32; 8], ldt: u16) -> Asm {
    p.fill(addr, 0x68, 0)?;
    p.a.mov(eax, cr3)?;
    p.a.mov(dword_ptr(addr + CR3_FIELD), eax)?;
    p.a.mov(dword_ptr(addr + EIP_FIELD), entry)?;
    p.a.mov(dword_ptr(addr + EFLAGS_FIELD), FL_1)?;
    for (i, value) in regs.iter().enumerate() {
        p.a.mov(dword_ptr(addr + EAX_FIELD + 4 * i as u32), *value)?;
    }
    p.a.mov(dword_ptr(addr + ESP_FIELD), stack)?;
    for offset in [0x48, 0x50, 0x54, 0x58, 0x5C] {
        p.a.mov(dword_ptr(addr + offset), u32::from(KDATA))?;
    }
    p.a.mov(dword_ptr(addr + 0x4C), u32::from(KCODE))?;
    p.a.mov(dword_ptr(addr + LDT_FIELD), u32::from(ldt))?;
    p.a.mov(word_ptr(addr + 0x66), 0x68)
}

/// Puts every test descriptor in its initial state, makes the kernel's TSS available again
/// and reloads TR with it (so a test starts as task A even if the previous one failed
/// midway), clears NT, CR0.TS and the record area.
fn fresh(p: &mut Program) -> Asm {
    let avail = |addr| seg(addr, 0x67, P | TSS32, 0);
    for (selector, descriptor) in [
        (TB, avail(TSS_B)),
        (TG_C, gate(TC, 0, P | TASK_GATE, 0)),
        (TC, avail(TSS_C)),
        (TD, avail(TSS_D)),
        (TE, avail(TSS_E)),
        (TF16, seg(TSS_F, 0x2B, P | TSS16, 0)),
        (T_SMALL, seg(TSS_X, 0x66, P | TSS32, 0)),
        (T16_SMALL, seg(TSS_X, 0x2A, P | TSS16, 0)),
        (T_NP, seg(TSS_X, 0x67, TSS32, 0)),
        (TG_A, gate(TSS0_SEL, 0, P | TASK_GATE, 0)),
        (LDT_SEL, seg(LDT, 0x7F, P | LDT_TYPE, 0)),
        (TSS0_SEL, avail(TSS0)),
    ] {
        p.set_gdt(selector, descriptor)?;
    }
    p.a.mov(ax, u32::from(TSS0_SEL))?;
    p.a.ltr(ax)?;
    p.a.mov(eax, cr3)?;
    p.a.mov(dword_ptr(TSS0 + CR3_FIELD), eax)?;
    p.a.mov(dword_ptr(TSS0 + LINK), 0)?;
    p.a.mov(dword_ptr(TSS0 + LDT_FIELD), 0)?;
    p.a.push(FL_1)?;
    p.a.popfd()?;
    p.a.clts()?;
    p.fill(SEEN, 0x100, 0xFFFF_FFFF)
}

/// Emits `body` out of line (jumped over); returns the address of its first instruction.
fn out_of_line(p: &mut Program, body: impl FnOnce(&mut Program) -> Asm) -> Result<u32, IcedError> {
    let mut over = p.label();
    let mut start = p.label();
    let start_addr = p.addr(start);
    p.a.jmp(over)?;
    p.bind(&mut start)?;
    body(p)?;
    p.bind(&mut over)?;
    Ok(start_addr)
}

/// `[SEEN + slot * 4] = EAX` (through SS, which every task here has flat).
fn record(p: &mut Program, slot: u32) -> Asm {
    p.a.mov(dword_ptr(SEEN + 4 * slot).ss(), eax)
}

/// Records EFLAGS (slot 0), the current TSS's link (1), TR (2), the type bytes of TSS0 (3)
/// and of `own` (4), CR0 (5).
fn record_task_state(p: &mut Program, own: u16, own_tss: u32) -> Asm {
    p.a.pushfd()?;
    p.a.pop(eax)?;
    record(p, 0)?;
    p.a.movzx(eax, word_ptr(own_tss + LINK).ss())?;
    record(p, 1)?;
    p.a.xor(eax, eax)?;
    p.a.str(ax)?;
    record(p, 2)?;
    p.a.movzx(eax, byte_ptr(GDT + u32::from(TSS0_SEL) + 5).ss())?;
    record(p, 3)?;
    p.a.movzx(eax, byte_ptr(GDT + u32::from(own) + 5).ss())?;
    record(p, 4)?;
    p.a.mov(eax, cr0)?;
    record(p, 5)
}

/// Saves task A's general registers (but ESP) at A_REGS, in TSS order.
fn save_a_regs(p: &mut Program) -> Asm {
    for (i, reg) in [eax, ecx, edx, ebx, esp, ebp, esi, edi].into_iter().enumerate() {
        p.a.mov(dword_ptr(A_REGS + 4 * i as u32).ss(), reg)?;
    }
    Ok(())
}

fn load_a_regs(p: &mut Program) -> Asm {
    for (i, reg) in [eax, ecx, edx, ebx, ebp, esi, edi].into_iter().enumerate() {
        let value = [A_SET[0], A_SET[1], A_SET[2], A_SET[3], A_SET[5], A_SET[6], A_SET[7]][i];
        p.a.mov(reg, value)?;
    }
    Ok(())
}

fn jmp_task(p: &mut Program) -> Asm {
    // Task B: records what it was loaded with and the switch's traces, jumps back to A; on
    // its second run it resumes after that jump, marks slot 15 and jumps back again.
    let mut b_back = p.label();
    let b_back_addr = p.addr(b_back);
    let entry = out_of_line(p, |p| {
        p.a.mov(dword_ptr(SEEN + 0x80).ss(), eax)?;
        p.a.mov(dword_ptr(SEEN + 0x84).ss(), ecx)?;
        p.a.mov(dword_ptr(SEEN + 0x88).ss(), edx)?;
        p.a.mov(dword_ptr(SEEN + 0x8C).ss(), ebx)?;
        p.a.mov(dword_ptr(SEEN + 0x90).ss(), esp)?;
        p.a.mov(dword_ptr(SEEN + 0x94).ss(), ebp)?;
        p.a.mov(dword_ptr(SEEN + 0x98).ss(), esi)?;
        p.a.mov(dword_ptr(SEEN + 0x9C).ss(), edi)?;
        record_task_state(p, TB, TSS_B)?;
        p.a.xor(eax, eax)?;
        p.a.sldt(ax)?;
        record(p, 6)?;
        // A's TSS as the switch left it.
        for (slot, offset) in
            [(7, EIP_FIELD), (8, EAX_FIELD), (9, EAX_FIELD + 12), (10, ESP_FIELD), (11, 0x54)]
        {
            p.a.mov(eax, dword_ptr(TSS0 + offset).ss())?;
            record(p, slot)?;
        }
        p.a.jmp_far(TSS0_SEL, 0)?;
        p.bind(&mut b_back)?;
        p.a.mov(eax, 2)?;
        record(p, 15)?;
        p.a.jmp_far(TSS0_SEL, 0)
    })?;
    fresh(p)?;
    tss32(p, TSS_B, entry, task_stack_top(0), B_REGS, LDT_SEL)?;
    let mut after = p.label();
    let after_addr = p.addr(after);
    p.arm(after)?;
    load_a_regs(p)?;
    p.a.jmp_far(TB, 0)?;
    p.bind(&mut after)?;
    save_a_regs(p)?;
    p.disarm()?;
    p.a.xor(eax, eax)?;
    p.a.sldt(ax)?;
    p.a.mov(esi, eax)?;
    p.a.mov(eax, cr0)?;
    p.a.mov(edi, eax)?;

    p.check(Mem32(EXC_VECTOR), NONE, "jmp to tss b and back: no exception")?;
    let names = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"];
    for (i, name) in names.iter().enumerate() {
        let want = if i == 4 { task_stack_top(0) } else { B_REGS[i] };
        p.check(Mem32(SEEN + 0x80 + 4 * i as u32), want, &format!("task b starts with {name} from its tss"))?;
    }
    p.check_masked(Mem32(SEEN), FL_NT, 0, "task b entered by jmp: nt clear")?;
    p.check(Mem32(SEEN + 4 * 2), u32::from(TB), "task b: tr")?;
    p.check(Mem32(SEEN + 4 * 3), u32::from(P | TSS32), "task b: jmp cleared the old task's busy bit")?;
    p.check(Mem32(SEEN + 4 * 4), u32::from(P | TSS32_BUSY), "task b: its own tss is busy")?;
    p.check_masked(Mem32(SEEN + 4 * 5), CR0_TS, CR0_TS, "task b: the switch set cr0.ts")?;
    p.check(Mem32(SEEN + 4 * 6), u32::from(LDT_SEL), "task b: ldtr from its tss")?;
    p.check(Mem32(SEEN + 4 * 7), after_addr, "task a's tss: eip after the jmp")?;
    p.check(Mem32(SEEN + 4 * 8), A_SET[0], "task a's tss: eax saved")?;
    p.check(Mem32(SEEN + 4 * 9), A_SET[3], "task a's tss: ebx saved")?;
    p.check(Mem32(SEEN + 4 * 10), MAIN_STACK_TOP, "task a's tss: esp saved")?;
    p.check(Mem32(SEEN + 4 * 11), u32::from(KDATA), "task a's tss: ds saved")?;
    for (i, name) in names.iter().enumerate() {
        if i != 4 {
            p.check(Mem32(A_REGS + 4 * i as u32), A_SET[i], &format!("back in task a: {name} restored"))?;
        }
    }
    p.check(Mem32(A_REGS + 16), MAIN_STACK_TOP, "back in task a: esp restored")?;
    p.check(esi, 0, "back in task a: ldtr from its tss (null)")?;
    p.check_masked(edi, CR0_TS, CR0_TS, "back in task a: cr0.ts set")?;
    p.check(type_byte(TB), u32::from(P | TSS32), "after b jumped back: b's busy bit clear")?;
    p.check(type_byte(TSS0_SEL), u32::from(P | TSS32_BUSY), "after b jumped back: a's busy bit set")?;
    p.check(Mem32(TSS_B + EIP_FIELD), b_back_addr, "task b's tss: eip after its jmp")?;
    p.a.clts()?;

    // Again: B resumes where it left off.
    let mut again = p.label();
    p.arm(again)?;
    p.a.jmp_far(TB, 0)?;
    p.bind(&mut again)?;
    p.disarm()?;
    p.check(Mem32(SEEN + 4 * 15), 2, "second jmp to task b: it resumes after its own jmp")
}

fn call_task_gate(p: &mut Program) -> Asm {
    let mut c_after_iret = p.label();
    let c_after_iret_addr = p.addr(c_after_iret);
    let entry = out_of_line(p, |p| {
        let mut start = p.label();
        p.bind(&mut start)?;
        record_task_state(p, TC, TSS_C)?;
        p.a.iretd()?;
        p.bind(&mut c_after_iret)?;
        p.a.jmp(start)
    })?;
    fresh(p)?;
    tss32(p, TSS_C, entry, task_stack_top(1), [0; 8], 0)?;
    let mut after = p.label();
    let after_addr = p.addr(after);
    p.arm(after)?;
    p.a.call_far(TG_C, 0)?;
    p.bind(&mut after)?;
    p.disarm()?;
    p.a.pushfd()?;
    p.a.pop(ebx)?;
    p.check(Mem32(EXC_VECTOR), NONE, "call through a task gate and iret back: no exception")?;
    p.check_masked(Mem32(SEEN), FL_NT, FL_NT, "task c entered by call: nt set")?;
    p.check(Mem32(SEEN + 4), u32::from(TSS0_SEL), "task c: previous-task link = a's tss")?;
    p.check(Mem32(SEEN + 8), u32::from(TC), "task c: tr is the gate's tss")?;
    p.check(Mem32(SEEN + 12), u32::from(P | TSS32_BUSY), "task c: call keeps the old task busy")?;
    p.check(Mem32(SEEN + 16), u32::from(P | TSS32_BUSY), "task c: its own tss is busy")?;
    p.check_masked(ebx, FL_NT, 0, "back in task a after iret: nt clear")?;
    p.check(type_byte(TC), u32::from(P | TSS32), "iret cleared task c's busy bit")?;
    p.check(type_byte(TSS0_SEL), u32::from(P | TSS32_BUSY), "task a busy after iret")?;
    p.check_masked(Mem32(TSS_C + EFLAGS_FIELD), FL_NT, 0, "task c's saved eflags: iret cleared nt")?;
    p.check(Mem32(TSS_C + EIP_FIELD), c_after_iret_addr, "task c's tss: eip after its iret")?;
    p.check(Mem32(TSS0 + EIP_FIELD), after_addr, "task a's tss: eip after the call")
}

fn int_task_gate(p: &mut Program) -> Asm {
    let entry = out_of_line(p, |p| {
        let mut start = p.label();
        p.bind(&mut start)?;
        record_task_state(p, TD, TSS_D)?;
        p.a.mov(eax, dword_ptr(TSS0 + EIP_FIELD).ss())?;
        record(p, 6)?;
        p.a.iretd()?;
        p.a.jmp(start)
    })?;
    fresh(p)?;
    tss32(p, TSS_D, entry, task_stack_top(2), [0; 8], 0)?;
    p.set_idt(VEC_TASK, gate(TD, 0, P | TASK_GATE, 0))?;
    let mut after = p.label();
    let after_addr = p.addr(after);
    p.arm(after)?;
    p.a.int(VEC_TASK)?;
    p.bind(&mut after)?;
    p.disarm()?;
    p.check(Mem32(EXC_VECTOR), NONE, "int 50h through a task gate: no exception")?;
    p.check_masked(Mem32(SEEN), FL_NT, FL_NT, "task d entered by int: nt set")?;
    p.check(Mem32(SEEN + 4), u32::from(TSS0_SEL), "task d: previous-task link = a's tss")?;
    p.check(Mem32(SEEN + 8), u32::from(TD), "task d: tr")?;
    p.check(Mem32(SEEN + 12), u32::from(P | TSS32_BUSY), "task d: a stays busy")?;
    p.check(Mem32(SEEN + 24), after_addr, "task d: a's saved eip is after the int")?;
    p.check(type_byte(TD), u32::from(P | TSS32), "after iret: task d's busy bit clear")
}

fn exception_task_gate(p: &mut Program) -> Asm {
    let mut at = p.label();
    let mut resume = p.label();
    let at_addr = p.addr(at);
    let resume_addr = p.addr(resume);
    let entry = out_of_line(p, |p| {
        let mut start = p.label();
        p.bind(&mut start)?;
        p.a.pop(eax)?;
        record(p, 0)?;
        p.a.mov(eax, esp)?;
        record(p, 1)?;
        p.a.movzx(eax, word_ptr(TSS_E + LINK).ss())?;
        record(p, 2)?;
        p.a.mov(eax, dword_ptr(TSS0 + EIP_FIELD).ss())?;
        record(p, 3)?;
        // Resume task A after the faulting instruction.
        p.a.mov(dword_ptr(TSS0 + EIP_FIELD).ss(), resume_addr)?;
        p.a.iretd()?;
        p.a.jmp(start)
    })?;
    fresh(p)?;
    tss32(p, TSS_E, entry, task_stack_top(3), [0; 8], 0)?;
    p.set_idt(13, gate(TE, 0, P | TASK_GATE, 0))?;
    p.arm(resume)?;
    p.a.mov(eax, GDT_ENTRIES * 8)?;
    p.bind(&mut at)?;
    p.a.mov(ds, ax)?;
    p.bind(&mut resume)?;
    p.disarm()?;
    p.set_handler(13, INT_GATE, 0)?;
    p.load_sreg(ds, KDATA)?;
    let n = "#GP through a task gate";
    p.check(Mem32(EXC_VECTOR), NONE, &format!("{n}: handled by the task"))?;
    p.check(Mem32(SEEN), GDT_ENTRIES * 8, &format!("{n}: error code on the new task's stack"))?;
    p.check(Mem32(SEEN + 4), task_stack_top(3), &format!("{n}: error code was at the top of its tss stack"))?;
    p.check(Mem32(SEEN + 8), u32::from(TSS0_SEL), &format!("{n}: previous-task link"))?;
    p.check(Mem32(SEEN + 12), at_addr, &format!("{n}: a's saved eip is the faulting instruction's"))
}

fn tss16(p: &mut Program) -> Asm {
    let mut f_code = p.label();
    let mut f_after_iret = p.label();
    let f_code_addr = p.addr(f_code);
    let f_after_iret_addr = p.addr(f_after_iret);
    let mut over = p.label();
    p.a.jmp(over)?;
    // Task F runs in CODE_F, based at f_code: its IP starts at 0.
    p.bind(&mut f_code)?;
    p.a.pushfd()?;
    p.a.pop(eax)?;
    record(p, 0)?;
    p.a.movzx(eax, word_ptr(TSS_F + LINK).ss())?;
    record(p, 1)?;
    p.a.xor(eax, eax)?;
    p.a.str(ax)?;
    record(p, 2)?;
    p.a.movzx(eax, byte_ptr(GDT + u32::from(TF16) + 5).ss())?;
    record(p, 3)?;
    p.a.mov(word_ptr(SEEN + 16).ss(), bx)?;
    p.a.mov(word_ptr(SEEN + 20).ss(), sp)?;
    p.a.mov(word_ptr(SEEN + 24).ss(), si)?;
    p.a.iretd()?;
    p.bind(&mut f_after_iret)?;
    p.a.jmp(f_code)?;
    p.bind(&mut over)?;

    fresh(p)?;
    p.set_gdt(CODE_F, seg(f_code_addr, 0xFFFF, P | CODE_XR, DB))?;
    // 16-bit TSS (SDM Figure 7-11): IP, FLAGS, AX, CX, DX, BX, SP, BP, SI, DI, ES, CS, SS, DS.
    p.fill(TSS_F, 0x2C, 0)?;
    p.a.mov(word_ptr(TSS_F + 0x0E), 0)?;
    p.a.mov(word_ptr(TSS_F + 0x10), FL_1)?;
    p.a.mov(word_ptr(TSS_F + 0x18), 0xF0BB)?;
    p.a.mov(word_ptr(TSS_F + 0x1A), 0x0FF0)?;
    p.a.mov(word_ptr(TSS_F + 0x1E), 0xF05E)?;
    p.a.mov(word_ptr(TSS_F + 0x22), u32::from(KDATA))?;
    p.a.mov(word_ptr(TSS_F + 0x24), u32::from(CODE_F))?;
    p.a.mov(word_ptr(TSS_F + 0x26), u32::from(KDATA))?;
    p.a.mov(word_ptr(TSS_F + 0x28), u32::from(KDATA))?;
    let mut after = p.label();
    p.arm(after)?;
    p.a.call_far(TF16, 0)?;
    p.bind(&mut after)?;
    p.disarm()?;
    let n = "call to a 16-bit tss";
    p.check(Mem32(EXC_VECTOR), NONE, &format!("{n}: no exception"))?;
    p.check_masked(Mem32(SEEN), FL_NT, FL_NT, &format!("{n}: nt set in the task"))?;
    p.check(Mem32(SEEN + 4), u32::from(TSS0_SEL), &format!("{n}: previous-task link"))?;
    p.check(Mem32(SEEN + 8), u32::from(TF16), &format!("{n}: tr"))?;
    p.check(Mem32(SEEN + 12), u32::from(P | TSS16_BUSY), &format!("{n}: busy 16-bit tss type"))?;
    p.check_masked(Mem32(SEEN + 16), 0xFFFF, 0xF0BB, &format!("{n}: bx from the tss"))?;
    p.check_masked(Mem32(SEEN + 20), 0xFFFF, 0x0FF0, &format!("{n}: sp from the tss"))?;
    p.check_masked(Mem32(SEEN + 24), 0xFFFF, 0xF05E, &format!("{n}: si from the tss"))?;
    p.check(type_byte(TF16), u32::from(P | TSS16), "iret from the 16-bit task: its busy bit clear")?;
    p.check_masked(
        Mem32(TSS_F + 0x0E),
        0xFFFF,
        f_after_iret_addr.wrapping_sub(f_code_addr),
        "16-bit tss: ip saved after the iret",
    )?;
    p.check_masked(Mem32(TSS_F + 0x10), FL_NT, 0, "16-bit tss: saved flags have nt cleared")
}

fn invalid(p: &mut Program) -> Asm {
    fresh(p)?;
    p.fill(TSS_X, 0x68, 0)?;
    p.case(
        "jmp to a 32-bit tss with limit 66h",
        Expect::Fault(10, Some(u32::from(T_SMALL))),
        |_| Ok(()),
        |p| p.a.jmp_far(T_SMALL, 0),
    )?;
    p.case(
        "call to a 16-bit tss with limit 2ah",
        Expect::Fault(10, Some(u32::from(T16_SMALL))),
        |_| Ok(()),
        |p| p.a.call_far(T16_SMALL, 0),
    )?;
    p.check(type_byte(TSS0_SEL), u32::from(P | TSS32_BUSY), "after the #TS: still task a, busy")?;
    p.check(type_byte(T_SMALL), u32::from(P | TSS32), "after the #TS: the bad tss is not busy")?;
    p.case(
        "jmp to a not-present tss",
        Expect::Fault(11, Some(u32::from(T_NP))),
        |_| Ok(()),
        |p| p.a.jmp_far(T_NP, 0),
    )?;
    p.case(
        "jmp to the busy current tss",
        Expect::Fault(13, Some(u32::from(TSS0_SEL))),
        |_| Ok(()),
        |p| p.a.jmp_far(TSS0_SEL, 0),
    )?;
    p.case(
        "call to the busy current tss",
        Expect::Fault(13, Some(u32::from(TSS0_SEL))),
        |_| Ok(()),
        |p| p.a.call_far(TSS0_SEL, 0),
    )?;
    p.case(
        "call through a task gate to a busy tss",
        Expect::Fault(13, Some(u32::from(TSS0_SEL))),
        |_| Ok(()),
        |p| p.a.call_far(TG_A, 0),
    )?;
    // IRET with NT = 1 whose link names an available (not busy) TSS.
    p.case(
        "iret with nt to a tss that is not busy",
        Expect::Fault(10, Some(u32::from(TB))),
        |p| {
            p.a.mov(dword_ptr(TSS0 + LINK), u32::from(TB))?;
            p.a.push(FL_1 | FL_NT)?;
            p.a.popfd()
        },
        |p| p.a.iretd(),
    )?;
    p.check_masked(Mem32(EXC_EFLAGS), FL_NT, FL_NT, "iret #TS: pushed eflags has nt")?;
    p.a.mov(dword_ptr(TSS0 + LINK), 0)?;
    p.check(type_byte(TB), u32::from(P | TSS32), "iret #TS: the linked tss stays available")
}

fn ltr(p: &mut Program) -> Asm {
    fresh(p)?;
    p.case(
        "ltr of the busy current tss",
        Expect::Fault(13, Some(u32::from(TSS0_SEL))),
        |p| p.a.mov(eax, u32::from(TSS0_SEL)),
        |p| p.a.ltr(ax),
    )?;
    p.case(
        "ltr of a data segment",
        Expect::Fault(13, Some(u32::from(KDATA))),
        |p| p.a.mov(eax, u32::from(KDATA)),
        |p| p.a.ltr(ax),
    )?;
    p.case(
        "ltr of a not-present tss",
        Expect::Fault(11, Some(u32::from(T_NP))),
        |p| p.a.mov(eax, u32::from(T_NP)),
        |p| p.a.ltr(ax),
    )?;
    p.case("ltr of an available tss", Expect::Nothing, |p| p.a.mov(eax, u32::from(TB)), |p| p.a.ltr(ax))?;
    p.check(type_byte(TB), u32::from(P | TSS32_BUSY), "ltr marks the tss busy")?;
    p.a.xor(eax, eax)?;
    p.a.str(ax)?;
    p.check_eax(u32::from(TB), "str after ltr")?;
    p.check(type_byte(TSS0_SEL), u32::from(P | TSS32_BUSY), "ltr leaves the previous tss busy")?;
    fresh(p)
}
