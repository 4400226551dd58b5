//! Protected-mode control transfer end to end, in the interpreter: IRET to ring 3, a call gate
//! with parameter copying back to ring 0 and RETF to ring 3, INT n from ring 3 through a DPL-3
//! interrupt gate, #GP(0) with its error code for HLT at ring 3, and a task switch by JMP to a
//! TSS descriptor. (The self-checking kernels in guest-images test much more, under QEMU too.)

use emu_core::cpu::StepResult;
use emu_core::state::{cr0, gpr, TableReg};
use emu_core::{Cpu, OpenBus, SegReg, Segment};
use iced_x86::code_asm::*;

const GDT: u32 = 0x1000;
const IDT: u32 = 0x2000;
const TSS0: u32 = 0x3000;
const TSS1: u32 = 0x3100;
const CODE: u32 = 0x10000;

fn desc(base: u32, limit: u32, access: u32, flags: u32) -> (u32, u32) {
    let lo = (base << 16) | (limit & 0xFFFF);
    let hi =
        (base & 0xFF00_0000) | ((base >> 16) & 0xFF) | (access << 8) | (limit & 0xF_0000) | (flags << 20);
    (lo, hi)
}

fn gate(sel: u16, offset: u32, access: u32, params: u32) -> (u32, u32) {
    ((u32::from(sel) << 16) | (offset & 0xFFFF), (offset & 0xFFFF_0000) | (access << 8) | params)
}

/// A ring-0 protected-mode machine with the GDT, IDT and TSSs this test uses and `code` at
/// CODE; ring-3 stack at 0x7000, ring-0 stack (TSS) at 0x9000.
fn machine(code: &[u8]) -> Cpu {
    let mut cpu = Cpu::new(1 << 20).unwrap();
    let entries = [
        (0, 0),
        desc(0, 0xFFFFF, 0x9A, 0xC), // 0x08 ring-0 code
        desc(0, 0xFFFFF, 0x92, 0xC), // 0x10 ring-0 data
        desc(0, 0xFFFFF, 0xFA, 0xC), // 0x18 ring-3 code
        desc(0, 0xFFFFF, 0xF2, 0xC), // 0x20 ring-3 data
        desc(TSS0, 0x67, 0x89, 0),   // 0x28 TSS 0 (current task)
        gate(0x08, 0, 0xEC, 1),      // 0x30 call gate, DPL 3, 1 parameter; offset patched below
        desc(TSS1, 0x67, 0x89, 0),   // 0x38 TSS 1
    ];
    for (k, (lo, hi)) in entries.iter().enumerate() {
        cpu.mem.write_u32(GDT + 8 * k as u32, *lo);
        cpu.mem.write_u32(GDT + 8 * k as u32 + 4, *hi);
    }
    cpu.mem.load(u64::from(CODE), code).unwrap();
    cpu.mem.write_u32(TSS0 + 4, 0x9000); // ESP0
    cpu.mem.write_u32(TSS0 + 8, 0x10); // SS0
    let s = &mut cpu.state;
    s.cr[0] |= cr0::PE;
    s.gdtr = TableReg { base: GDT, limit: 8 * entries.len() as u32 - 1 };
    s.idtr = TableReg { base: IDT, limit: 0x7FF };
    s.tr = Segment { selector: 0x28, attrs: 0x8B, base: TSS0, limit: 0x67 };
    let flat = |sel, attrs| Segment { selector: sel, attrs, base: 0, limit: 0xFFFF_FFFF };
    for r in SegReg::ALL {
        *s.seg_mut(r) = if r == SegReg::Cs { flat(0x08, 0xC09B) } else { flat(0x10, 0xC093) };
    }
    s.cpl = 0;
    s.regs[gpr::ESP] = 0x8000;
    s.eip = CODE;
    cpu
}

fn set_idt(cpu: &mut Cpu, vector: u32, offset: u32, access: u32) {
    let (lo, hi) = gate(0x08, offset, access, 0);
    cpu.mem.write_u32(IDT + 8 * vector, lo);
    cpu.mem.write_u32(IDT + 8 * vector + 4, hi);
}

/// Label addresses of the test program.
struct Labels {
    gate: u32,
    int80: u32,
    gp: u32,
    task1: u32,
}

/// Assembles the program; `user_ip` is the address of the ring-3 part (from a first pass: the
/// PUSH imm32 keeps its size, so the layout does not move).
fn program(user_ip: u32) -> (Vec<u8>, u32, Labels) {
    let mut a = CodeAssembler::new(32).unwrap();
    let mut user = a.create_label();
    let mut gate_target = a.create_label();
    let mut int80 = a.create_label();
    let mut gp = a.create_label();
    let mut task1 = a.create_label();
    // Ring 0: IRET to ring 3 at `user` with SS:ESP = 0x23:0x7000.
    a.push(0x23).unwrap();
    a.push(0x7000).unwrap();
    a.push(0x202).unwrap();
    a.push(0x1B).unwrap();
    a.push(user_ip as i32).unwrap();
    a.iretd().unwrap();
    // Ring 3.
    a.set_label(&mut user).unwrap();
    a.push(0x1234_5678).unwrap(); // the call-gate parameter
    a.db(&[0x9A, 0, 0, 0, 0, 0x33, 0x00]).unwrap(); // call far 0x33:0 (gate, RPL 3)
    a.mov(edi, esp).unwrap(); // ESP after RETF 4: back to 0x7000
    a.int(0x80).unwrap();
    a.hlt().unwrap(); // #GP(0) at ring 3
                      // Ring 0, through the call gate: read the copied parameter and the caller's SS.
    a.set_label(&mut gate_target).unwrap();
    a.mov(ebx, dword_ptr(esp + 8)).unwrap();
    a.mov(ecx, dword_ptr(esp + 16)).unwrap();
    a.mov(edx, cs).unwrap();
    a.db(&[0xCA, 4, 0]).unwrap(); // retf 4
                                  // INT 0x80 handler (interrupt gate, DPL 3).
    a.set_label(&mut int80).unwrap();
    a.mov(esi, dword_ptr(esp + 16)).unwrap(); // the interrupted SS
    a.pushfd().unwrap();
    a.pop(eax).unwrap(); // IF must be clear here
    a.iretd().unwrap();
    // #GP handler: error code, then a task switch by JMP to TSS 1.
    a.set_label(&mut gp).unwrap();
    a.pop(ebp).unwrap();
    a.db(&[0xEA, 0, 0, 0, 0, 0x38, 0x00]).unwrap(); // jmp far 0x38:0
    a.set_label(&mut task1).unwrap();
    a.hlt().unwrap();
    let r = a
        .assemble_options(u64::from(CODE), iced_x86::BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)
        .unwrap();
    let at = |l: &CodeLabel| r.label_ip(l).unwrap() as u32;
    let labels = Labels { gate: at(&gate_target), int80: at(&int80), gp: at(&gp), task1: at(&task1) };
    (r.inner.code_buffer.clone(), at(&user), labels)
}

#[test]
fn rings_gates_interrupts_and_tasks() {
    let (_, user_ip, _) = program(CODE);
    let (code, user_again, l) = program(user_ip);
    assert_eq!(user_ip, user_again);
    let (gate_ip, int80_ip, gp_ip, task1_ip) = (l.gate, l.int80, l.gp, l.task1);
    let mut cpu = machine(&code);
    // The call gate's offset, the IDT entries and task 1's TSS.
    let (lo, hi) = gate(0x08, gate_ip, 0xEC, 1);
    cpu.mem.write_u32(GDT + 0x30, lo);
    cpu.mem.write_u32(GDT + 0x34, hi);
    set_idt(&mut cpu, 0x80, int80_ip, 0xEE);
    set_idt(&mut cpu, 13, gp_ip, 0x8F);
    cpu.mem.write_u32(TSS1 + 0x20, task1_ip);
    cpu.mem.write_u32(TSS1 + 0x24, 0x2);
    cpu.mem.write_u32(TSS1 + 0x38, 0x6000); // ESP
    for (k, sel) in [0x10u32, 0x08, 0x10, 0x10, 0x10, 0x10].iter().enumerate() {
        cpu.mem.write_u32(TSS1 + 0x48 + 4 * k as u32, *sel);
    }

    let (r, steps) = cpu.run(&mut OpenBus, 1000);
    assert_eq!(r, StepResult::Halted, "after {steps} steps at {:#x}", cpu.state.eip);
    // The task switch saved the old task's registers in TSS 0 (EAX at 0x28 … EDI at 0x44).
    let saved = |r: usize| cpu.mem.read_u32(TSS0 + 0x28 + 4 * r as u32);
    assert_eq!(saved(gpr::EBX), 0x1234_5678, "parameter copied onto the ring-0 stack");
    assert_eq!(saved(gpr::ECX), 0x23, "caller's SS saved on the ring-0 stack");
    assert_eq!(saved(gpr::EDX) & 0xFFFF, 0x08, "CS at ring 0 through the gate");
    assert_eq!(saved(gpr::EDI), 0x7000, "RETF 4 released the parameter on the ring-3 stack");
    assert_eq!(saved(gpr::ESI), 0x23, "INT from ring 3 pushed the ring-3 SS");
    assert_eq!(saved(gpr::EAX) & (1 << 9), 0, "interrupt gate cleared IF");
    assert_eq!(saved(gpr::EBP), 0, "HLT at ring 3 is #GP(0)");
    assert_eq!(cpu.mem.read_u32(TSS0 + 0x4C) & 0xFFFF, 0x08, "CS saved in the old TSS");
    // Now in task 1 at ring 0: TR = 0x38, busy; the old TSS is no longer busy after a JMP.
    let s = &cpu.state;
    assert_eq!(s.tr.selector, 0x38);
    assert_eq!(s.cpl, 0);
    assert_eq!(s.eip, task1_ip + 1);
    assert_eq!(s.regs[gpr::ESP], 0x6000, "task 1's registers loaded from its TSS");
    assert_ne!(s.cr[0] & cr0::TS, 0, "a task switch sets CR0.TS");
    assert_eq!(cpu.mem.read_u32(GDT + 0x3C) >> 8 & 0xF, 0xB, "new TSS busy");
    assert_eq!(cpu.mem.read_u32(GDT + 0x2C) >> 8 & 0xF, 0x9, "old TSS not busy after JMP");
}
