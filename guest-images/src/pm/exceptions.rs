//! Kernel "pm-exceptions": exception delivery in protected mode (SDM Vol. 3A, chapter 6;
//! Vol. 2 for each instruction's exceptions).
//!
//! Points the SDM settles:
//! - Double faults (6.15, Table 6-5): a contributory exception (#DE, #TS, #NP, #SS, #GP) while
//!   delivering a contributory one, or a contributory one or #PF while delivering a #PF, is
//!   #DF with error code 0 (the saved CS:EIP is undefined and not checked); a benign first
//!   exception (e.g. #UD) is followed by the second one alone.
//! - Error codes that name an IDT entry have the IDT flag (bit 1) set and the index in bits
//!   15:3; the EXT flag (bit 0) is set when the event being delivered was external to the
//!   program — an exception — and clear for INT n (6.13). A vector beyond the IDT limit or a
//!   descriptor that is not a gate is #GP(vector * 8 + 2 + EXT); a gate that is not present is
//!   #NP(vector * 8 + 2 + EXT); a gate whose target is not a code segment is #GP(selector),
//!   and one whose target is not present #NP(selector) (Vol. 2, INT n).
//! - #SS(0) for an SS-relative access outside an expand-down stack segment, also for a push;
//!   a fault at CPL 3 is delivered on the ring-0 stack, so the push's #SS can be handled.
//! - #UD: UD2, UD0, MOV to CS, LOCK on an instruction that cannot take it, MOV from CR1, LEA
//!   and LDS with a register source, a far JMP through a register.
//! - #NM: x87 instructions with CR0.EM or CR0.TS set; WAIT only with TS and MP both set; with
//!   both clear an x87 instruction runs (checked only when CPUID.1:EDX reports an FPU).
//! - Faults save the faulting instruction's EIP, traps the next one's; single-step traps after
//!   the instruction following the POPF that set TF, and set DR6.BS (17.3.1.4).
//! - A near jump beyond the CS limit is #GP(0) before the jump, as is a far jump whose offset
//!   is beyond the new segment's limit.

use iced_x86::code_asm::*;

use super::rt::*;
use crate::asm::flags::OF;
use crate::asm::{Asm, Mem32};

/// A code segment that is not present.
const NP_CODE: u16 = 0x30;
/// Expand-down ring-0 stack: base 0, B = 1, G = 1, limit 300h (valid offsets 301000h up).
const ED_STACK0: u16 = 0x38;
/// Expand-down ring-3 stack: base 0, B = 1, G = 1, limit 317h (valid offsets from
/// [`RING3_STACK_TOP`] up).
const ED_STACK3: u16 = 0x40;
/// Code based at [`LOAD`] with a byte-granular limit of FFFFFh.
const CODE_LIM: u16 = 0x48;

/// Test vectors.
const VEC_NP: u32 = 0x60;
const VEC_NOT_GATE: u32 = 0x61;
const VEC_DATA_TARGET: u32 = 0x62;
const VEC_NP_TARGET: u32 = 0x63;
const VEC_BEYOND: u32 = 0x90;

/// Lowest valid offset of the expand-down stacks.
const ED_BOTTOM: u32 = 0x0030_1000;

pub(super) fn run(p: &mut Program) -> Asm {
    p.section("set up", |p| {
        p.set_gdt(NP_CODE, flat(CODE_XR))?;
        p.set_gdt(ED_STACK0, seg(0, 0x300, P | DATA_RW_DOWN, G | DB))?;
        p.set_gdt(ED_STACK3, seg(0, 0x317, P | dpl(3) | DATA_RW_DOWN, G | DB))?;
        p.set_gdt(CODE_LIM, seg(LOAD, 0xF_FFFF, P | CODE_XR, DB))?;
        let stub = p.stub(VEC_NP);
        p.set_idt(VEC_NP, gate(KCODE, stub, INT_GATE, 0))?;
        p.set_idt(VEC_NOT_GATE, seg(0, 0xFFFF, P | TSS16, 0))?;
        p.set_idt(VEC_DATA_TARGET, gate(KDATA, stub, P | INT_GATE, 0))?;
        p.set_idt(VEC_NP_TARGET, gate(NP_CODE, stub, P | INT_GATE, 0))
    })?;
    p.section("double faults", double_faults)?;
    p.section("idt errors and the ext bit", idt_errors)?;
    p.section("invalid opcodes", invalid_opcodes)?;
    p.section("device not available", device_not_available)?;
    p.section("faults and traps", faults_and_traps)?;
    p.section("code segment limits", code_limits)?;
    // Last: a mistake here can leave no stack to deliver exceptions on.
    p.section("stack faults at cpl 3", stack_faults3)?;
    p.section("stack faults at cpl 0", stack_faults0)
}

/// Marks IDT entry `vector` not present.
fn not_present(p: &mut Program, vector: u32) -> Asm {
    p.a.and(byte_ptr(IDT + 8 * vector + 5), 0x7F)
}

/// Marks IDT entry `vector` present again.
fn present(p: &mut Program, vector: u32) -> Asm {
    p.a.or(byte_ptr(IDT + 8 * vector + 5), 0x80)
}

fn double_faults(p: &mut Program) -> Asm {
    let df = Expect::Vector(8, Some(0));
    // #GP whose gate is not present: #NP while delivering #GP.
    not_present(p, 13)?;
    p.case("#GP with the #GP gate not present", df, |p| p.a.mov(eax, GDT_ENTRIES * 8), |p| p.a.mov(ds, ax))?;
    present(p, 13)?;
    // #DE whose gate is not present: contributory too.
    not_present(p, 0)?;
    p.case(
        "#DE with the #DE gate not present",
        df,
        |p| {
            p.a.xor(edx, edx)?;
            p.a.xor(ecx, ecx)
        },
        |p| p.a.div(ecx),
    )?;
    present(p, 0)?;
    // #PF whose gate is not present: #NP while delivering #PF.
    p.fill(PAGE_AREA, 0x1000, 0)?;
    p.a.mov(dword_ptr(PAGE_AREA), 0x83)?;
    p.a.mov(eax, PAGE_AREA)?;
    p.a.mov(cr3, eax)?;
    p.a.mov(eax, CR4_PSE)?;
    p.a.mov(cr4, eax)?;
    p.a.mov(eax, cr0)?;
    p.a.or(eax, CR0_PG)?;
    p.a.mov(cr0, eax)?;
    not_present(p, 14)?;
    p.case("#PF with the #PF gate not present", df, |_| Ok(()), |p| p.a.mov(eax, dword_ptr(0x0080_0000)))?;
    present(p, 14)?;
    p.a.mov(eax, cr0)?;
    p.a.and(eax, !CR0_PG)?;
    p.a.mov(cr0, eax)?;
    // A benign exception first: the #NP is delivered by itself, with EXT set.
    not_present(p, 6)?;
    p.case(
        "#UD with the #UD gate not present",
        Expect::Fault(11, Some(6 * 8 + 2 + 1)),
        |_| Ok(()),
        |p| p.a.ud2(),
    )?;
    present(p, 6)
}

fn idt_errors(p: &mut Program) -> Asm {
    p.case(
        "int 60h, gate not present",
        Expect::Fault(11, Some(VEC_NP * 8 + 2)),
        |_| Ok(()),
        |p| p.a.int(VEC_NP),
    )?;
    p.case(
        "int 61h, a tss descriptor in the idt",
        Expect::Fault(13, Some(VEC_NOT_GATE * 8 + 2)),
        |_| Ok(()),
        |p| p.a.int(VEC_NOT_GATE),
    )?;
    p.case(
        "int 62h, gate to a data segment",
        Expect::Fault(13, Some(u32::from(KDATA))),
        |_| Ok(()),
        |p| p.a.int(VEC_DATA_TARGET),
    )?;
    p.case(
        "int 63h, gate to a not-present code segment",
        Expect::Fault(11, Some(u32::from(NP_CODE))),
        |_| Ok(()),
        |p| p.a.int(VEC_NP_TARGET),
    )?;
    // IDT limit 3FFh: entries 0-7Fh.
    p.a.mov(word_ptr(TEST_VARS + 2), 0x3FF)?;
    p.a.mov(dword_ptr(TEST_VARS + 4), IDT)?;
    p.a.lidt(fword_ptr(TEST_VARS + 2))?;
    p.case(
        "int 90h beyond the idt limit",
        Expect::Fault(13, Some(VEC_BEYOND * 8 + 2)),
        |_| Ok(()),
        |p| p.a.int(VEC_BEYOND),
    )?;
    p.a.lidt(fword_ptr(IDTR_STD + 2))
}

/// At CPL 3 on the expand-down stack [`ED_STACK3`] (ESP = [`RING3_STACK_TOP`], EBP =
/// `ebp_value`), runs `instr` and checks `expect`; the exception goes to the ring-0 stack.
fn ring3_on_ed_stack(
    p: &mut Program,
    name: &str,
    ebp_value: u32,
    expect: Expect,
    instr: impl FnOnce(&mut Program) -> Asm,
) -> Asm {
    let mut ring3 = p.label();
    let mut at = p.label();
    let mut next = p.label();
    let mut resume = p.label();
    let ring3_addr = p.addr(ring3);
    let at_addr = p.addr(at);
    let next_addr = p.addr(next);
    let resume_addr = p.addr(resume);
    p.arm(resume)?;
    p.a.push(u32::from(ED_STACK3 | 3))?;
    p.a.mov(eax, RING3_STACK_TOP)?;
    p.a.push(eax)?;
    p.a.push(FL_1)?;
    p.a.push(u32::from(UCODE))?;
    p.a.mov(eax, ring3_addr)?;
    p.a.push(eax)?;
    p.a.mov(ebp, ebp_value)?;
    p.a.iretd()?;
    p.bind(&mut ring3)?;
    p.bind(&mut at)?;
    instr(p)?;
    p.bind(&mut next)?;
    p.a.int(VEC_DONE)?;
    p.bind(&mut resume)?;
    p.disarm()?;
    match expect {
        Expect::Nothing => p.check_exception(name, Expect::Trap(VEC_DONE, None), at_addr, resume_addr)?,
        e => p.check_exception(name, e, at_addr, next_addr)?,
    }
    p.check(Mem32(EXC_SS), u32::from(ED_STACK3 | 3), &format!("{name}: pushed ss"))?;
    p.check(Mem32(EXC_FRAME), ESP0_TOP - 20, &format!("{name}: delivered on the ring-0 stack"))
}

fn stack_faults3(p: &mut Program) -> Asm {
    let ss0 = Expect::Fault(12, Some(0));
    ring3_on_ed_stack(p, "push below an expand-down stack at cpl 3", 0, ss0, |p| p.a.push(eax))?;
    p.check(Mem32(EXC_ESP), RING3_STACK_TOP, "push below an expand-down stack: esp unchanged")?;
    ring3_on_ed_stack(
        p,
        "ss-relative read below an expand-down stack at cpl 3",
        RING3_STACK_TOP - 0x800,
        ss0,
        |p| p.a.mov(eax, dword_ptr(ebp)),
    )?;
    ring3_on_ed_stack(
        p,
        "ss-relative read inside an expand-down stack at cpl 3",
        RING3_STACK_TOP,
        Expect::Nothing,
        |p| p.a.mov(eax, dword_ptr(ebp)),
    )
}

fn stack_faults0(p: &mut Program) -> Asm {
    let ss0 = Expect::Fault(12, Some(0));
    let with_stack = |p: &mut Program, ebp_value: u32| -> Asm {
        p.a.mov(ebp, ebp_value)?;
        p.load_sreg(ss, ED_STACK0)
    };
    // The read, then SS back to flat data (the library reaches its variables through SS).
    let read_then_flat_ss = |p: &mut Program| -> Asm {
        p.a.mov(eax, dword_ptr(ebp))?;
        p.load_sreg(ss, KDATA)
    };
    p.case(
        "ss-relative read at the bottom of an expand-down stack's range",
        Expect::Nothing,
        |p| with_stack(p, ED_BOTTOM),
        read_then_flat_ss,
    )?;
    p.case(
        "ss-relative read below an expand-down stack's range",
        ss0,
        |p| with_stack(p, ED_BOTTOM - 0x800),
        read_then_flat_ss,
    )?;
    p.check(
        Mem32(EXC_IN_SS),
        u32::from(ED_STACK0),
        "ss-relative read below an expand-down stack's range: the handler ran on that stack",
    )?;
    p.case(
        "ss-relative dword read straddling the limit",
        ss0,
        |p| with_stack(p, ED_BOTTOM - 2),
        read_then_flat_ss,
    )
}

fn invalid_opcodes(p: &mut Program) -> Asm {
    let ud = Expect::Fault(6, None);
    let cases: [(&str, &[u8]); 10] = [
        ("ud2", &[0x0F, 0x0B]),
        ("ud0", &[0x0F, 0xFF, 0xC0]),
        ("mov cs, ax", &[0x8E, 0xC8]),
        ("lock add eax, ebx", &[0xF0, 0x01, 0xD8]),
        ("lock nop", &[0xF0, 0x90]),
        ("lock mov [mem], eax", &[0xF0, 0x89, 0x05, 0x00, 0x00, 0x34, 0x00]),
        ("mov eax, cr1", &[0x0F, 0x20, 0xC8]),
        ("lea eax, eax", &[0x8D, 0xC0]),
        ("lds eax, eax", &[0xC5, 0xC0]),
        ("jmp far eax", &[0xFF, 0xE8]),
    ];
    for (what, bytes) in cases {
        p.case(what, ud, |p| p.a.mov(eax, 0x0EEE_0000u32), |p| p.a.db(bytes))?;
        p.check(Mem32(EXC_EAX), 0x0EEE_0000, &format!("{what}: eax unchanged"))?;
    }
    Ok(())
}

fn device_not_available(p: &mut Program) -> Asm {
    let nm = Expect::Fault(7, None);
    let cr0_bits = |set: u32| {
        move |p: &mut Program| -> Asm {
            p.a.mov(eax, cr0)?;
            p.a.and(eax, !(CR0_TS | CR0_EM | CR0_MP))?;
            p.a.or(eax, set)?;
            p.a.mov(cr0, eax)
        }
    };
    p.case("fninit with cr0.ts=1", nm, cr0_bits(CR0_TS), |p| p.a.fninit())?;
    p.case("fninit with cr0.em=1", nm, cr0_bits(CR0_EM), |p| p.a.fninit())?;
    p.case("wait with cr0.ts=1 mp=1", nm, cr0_bits(CR0_TS | CR0_MP), |p| p.a.wait())?;
    p.case("wait with cr0.ts=1 mp=0", Expect::Nothing, cr0_bits(CR0_TS), |p| p.a.wait())?;
    // Without EM and TS an x87 instruction simply runs — on a processor that has an x87. The
    // check follows CPUID.1:EDX.FPU: a CPU that truthfully reports no FPU skips the FNINIT.
    p.case(
        "fninit with cr0.ts=0 em=0 (when CPUID reports an FPU)",
        Expect::Nothing,
        cr0_bits(CR0_MP),
        |p| {
            let mut no_fpu = p.label();
            p.a.push(ebx)?;
            p.a.push(ecx)?;
            p.a.push(edx)?;
            p.a.mov(eax, 1u32)?;
            p.a.cpuid()?;
            p.a.test(edx, 1u32)?;
            p.a.pop(edx)?;
            p.a.pop(ecx)?;
            p.a.pop(ebx)?;
            p.a.jz(no_fpu)?;
            p.a.fninit()?;
            p.bind(&mut no_fpu)
        },
    )?;
    cr0_bits(0)(p)
}

fn faults_and_traps(p: &mut Program) -> Asm {
    p.case(
        "div by zero",
        Expect::Fault(0, None),
        |p| {
            p.a.mov(eax, 7)?;
            p.a.xor(edx, edx)?;
            p.a.xor(ecx, ecx)
        },
        |p| p.a.div(ecx),
    )?;
    p.check(Mem32(EXC_EAX), 7, "div by zero: eax unchanged")?;
    p.case("int3", Expect::Trap(3, None), |_| Ok(()), |p| p.a.int3())?;
    p.case(
        "into with of",
        Expect::Trap(4, None),
        |p| {
            p.a.mov(al, 0x7F)?;
            p.a.add(al, 1)
        },
        |p| CodeAssembler::into(&mut p.a),
    )?;
    p.check_masked(Mem32(EXC_EFLAGS), OF, OF, "into: pushed eflags has of")?;
    p.case("into without of", Expect::Nothing, |p| p.a.xor(eax, eax), |p| CodeAssembler::into(&mut p.a))?;
    p.a.mov(dword_ptr(TEST_VARS), 10)?;
    p.a.mov(dword_ptr(TEST_VARS + 4), 20)?;
    p.case(
        "bound 25 in [10, 20]",
        Expect::Fault(5, None),
        |p| p.a.mov(eax, 25),
        |p| p.a.bound(eax, qword_ptr(TEST_VARS)),
    )?;
    p.case(
        "bound 20 in [10, 20]",
        Expect::Nothing,
        |p| p.a.mov(eax, 20),
        |p| p.a.bound(eax, qword_ptr(TEST_VARS)),
    )?;

    // Single step: POPF sets TF, the next instruction runs, then #DB.
    let mut after_nop = p.label();
    let after_nop_addr = p.addr(after_nop);
    p.case(
        "single step after popf sets tf",
        Expect::Vector(1, None),
        |p| {
            p.a.xor(eax, eax)?;
            p.a.mov(dr6, eax)?;
            p.a.pushfd()?;
            p.a.or(dword_ptr(esp), FL_TF)
        },
        |p| {
            p.a.popfd()?;
            p.a.mov(esi, 0x5151)?;
            p.bind(&mut after_nop)?;
            p.a.mov(esi, 0x5252)?;
            p.a.mov(esi, 0x5353)
        },
    )?;
    p.check(Mem32(EXC_EIP), after_nop_addr, "single step: trap after the instruction following popf")?;
    p.check(Mem32(EXC_ESI), 0x5151, "single step: only that instruction ran")?;
    p.check_masked(Mem32(EXC_EFLAGS), FL_TF, FL_TF, "single step: pushed eflags has tf")?;
    p.check_masked(Mem32(EXC_IN_EFLAGS), FL_TF, 0, "single step: tf clear in the handler")?;
    p.a.mov(eax, dr6)?;
    p.check_masked(eax, 1 << 14, 1 << 14, "single step: dr6.bs set")
}

fn code_limits(p: &mut Program) -> Asm {
    // CODE_LIM is based at LOAD with limit FFFFFh: the kernel's code runs there at offset
    // (linear - LOAD).
    let mut inside = p.label();
    let mut at = p.label();
    let inside_addr = p.addr(inside);
    let at_addr = p.addr(at);
    let mut resume = p.label();
    let resume_addr = p.addr(resume);
    // Should a jump get through, it lands on `int 30h` (CODE_LIM:100000h is linear 200000h).
    p.a.mov(word_ptr(LOAD + 0x0010_0000), 0x30CD)?;
    p.arm(resume)?;
    p.a.mov(ebx, 0x0010_0000)?;
    p.a.jmp_far(CODE_LIM, inside_addr.wrapping_sub(LOAD))?;
    p.bind(&mut inside)?;
    p.bind(&mut at)?;
    p.a.jmp(ebx)?;
    p.bind(&mut resume)?;
    p.disarm()?;
    let n = "near jmp to offset 100000h beyond a cs limit of fffffh";
    p.check_exception(n, Expect::Vector(13, Some(0)), 0, resume_addr)?;
    p.check(Mem32(EXC_EIP), at_addr.wrapping_sub(LOAD), &format!("{n}: saved eip is the jmp's offset"))?;
    p.check(Mem32(EXC_CS), u32::from(CODE_LIM), &format!("{n}: saved cs"))?;
    p.case(
        "far jmp to offset 100000h beyond the limit",
        Expect::Fault(13, Some(0)),
        |_| Ok(()),
        |p| p.a.jmp_far(CODE_LIM, 0x0010_0000),
    )
}
