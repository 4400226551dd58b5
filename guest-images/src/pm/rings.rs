//! Kernel "pm-rings": privilege-level changes and the instructions that care about CPL (SDM
//! Vol. 3A, 5.8 "Privilege Level Checking When Transferring Program Control", 5.9
//! "Privileged Instructions", 6.12 "Exception and Interrupt Handling"; Vol. 2, CALL, RET,
//! IRET, INT n, POPF).
//!
//! Points the SDM settles:
//! - A transfer to a more privileged level takes SS:ESP from the TSS (SS0:ESP0 for ring 0) and
//!   pushes the old SS and ESP there; a call gate then copies its parameter count of dwords
//!   from the old stack (5.8.5, Figure 5-13): the new stack holds, from the top, old SS, old
//!   ESP, the parameters in the caller's order, old CS, old EIP. `RET n` releases n bytes on
//!   both stacks (Vol. 2, RET).
//! - INT n, INT3 and INTO check the gate's DPL against CPL: a DPL-0 gate used from ring 3 is
//!   #GP(vector * 8 + 2) (IDT flag set); exceptions ignore the gate's DPL (6.12.1.1). An
//!   interrupt gate clears IF, a trap gate keeps it (6.12.1.3).
//! - On a return to an outer level (RET, IRET), DS, ES, FS and GS holding a data or
//!   non-conforming code segment with DPL < the new CPL are loaded with null (Vol. 2, RET and
//!   IRET, RETURN-TO-OUTER-PRIVILEGE-LEVEL); conforming code segments stay.
//! - A conforming code segment runs at the caller's CPL and CS.RPL reads as that CPL (5.8.2.2);
//!   a non-conforming one must have DPL = CPL for a direct far CALL/JMP (#GP(selector)), and a
//!   JMP through a call gate cannot change the CPL.
//! - At CPL 3 with IOPL 0: HLT, LGDT, LIDT, LLDT, LTR, MOV to/from CRn and DRn, CLTS, LMSW,
//!   INVLPG, INVD, WBINVD, RDMSR, WRMSR are #GP(0) (5.9); CLI, STI, IN, OUT need CPL ≤ IOPL
//!   (or the I/O bitmap, absent here); POPF silently keeps IF and IOPL (Vol. 2, POPF). SGDT,
//!   SIDT, SLDT, STR, SMSW, LAR and RDTSC (CR4.TSD = 0) run at any CPL.

use iced_x86::code_asm::*;

use super::rt::*;
use crate::asm::flags::{OF, ZF};
use crate::asm::{Asm, Mem32};

/// 32-bit call gate, DPL 3, to [`KCODE`]:`gate_handler`, copying 2 dwords.
const GATE3: u16 = 0x30;
/// 32-bit call gate, DPL 0, to the same handler.
const GATE0: u16 = 0x38;
/// Flat conforming execute/read code, DPL 0.
const CONF: u16 = 0x40;
/// Flat non-conforming execute/read code, DPL 0 (a second ring-0 code segment).
const CODE0: u16 = 0x48;

/// Test vectors: interrupt gate DPL 3, trap gate DPL 3, interrupt gate DPL 0.
const VEC_INT3: u32 = 0x40;
const VEC_TRAP3: u32 = 0x41;
const VEC_INT0: u32 = 0x42;

/// What the call-gate handler saw (dwords): ESP, then the 6 dwords at [ESP], then CS and SS.
const GATE_SEEN: u32 = TEST_VARS;
/// Where ring-3 code stores what SGDT/SIDT/STR… give it.
const RING3_OUT: u32 = TEST_VARS + 0x40;

/// A ring-3 entry with EFLAGS = bit 1 only (IOPL 0, IF 0).
const EFL3: u32 = FL_1;

pub(super) fn run(p: &mut Program) -> Asm {
    let gate_handler = p.label();
    let conforming_routine = p.label();
    p.section("set up gates and segments", |p| setup(p, gate_handler, conforming_routine))?;
    p.section("iret to ring 3 and int back", iret_to_ring3)?;
    p.section("segment registers nulled on the way out", nulling)?;
    p.section("call gate with parameters", |p| call_gate(p, gate_handler))?;
    p.section("far call and jmp checks", |p| far_transfers(p, conforming_routine))?;
    p.section("interrupt and trap gates from ring 3", interrupts)?;
    p.section("privileged instructions at cpl 3", privileged)?;
    p.section("iopl-sensitive instructions at cpl 3", iopl_sensitive)?;
    p.section("unprivileged system instructions at cpl 3", unprivileged)?;
    p.section("sysenter and sysexit", sysenter_sysexit)
}

/// WRMSR of `value` to `msr` (EDX = 0).
fn wrmsr(p: &mut Program, msr: u32, value: u32) -> Asm {
    p.a.mov(ecx, msr)?;
    p.a.mov(eax, value)?;
    p.a.xor(edx, edx)?;
    p.a.wrmsr()
}

/// SYSENTER and SYSEXIT (Vol. 2B; Vol. 3A §5.8.7). With IA32_SYSENTER_CS = KCODE (0x08) the
/// GDT has the layout both instructions assume: SYSENTER loads CS = 0x08 and SS = 0x10 at
/// CPL 0, SYSEXIT CS = 0x08 + 16 | 3 = UCODE and SS = 0x08 + 24 | 3 = UDATA at CPL 3. A null
/// IA32_SYSENTER_CS makes both #GP(0); SYSEXIT at CPL 3 is #GP(0).
fn sysenter_sysexit(p: &mut Program) -> Asm {
    const SYSENTER_ESP: u32 = ESP0_TOP - 0x200;
    const RING3_ESP: u32 = RING3_STACK_TOP - 16;
    let out = RING3_OUT;
    p.fill(out, 0x20, 0xFFFF_FFFF)?;
    wrmsr(p, 0x174, 0)?;
    p.ring3_case(
        "sysenter with a null sysenter_cs",
        EFL3,
        Expect::Fault(13, Some(0)),
        |_| Ok(()),
        |p| p.a.sysenter(),
    )?;
    let mut target = p.label();
    let target_addr = p.addr(target);
    wrmsr(p, 0x174, u32::from(KCODE))?;
    wrmsr(p, 0x175, SYSENTER_ESP)?;
    wrmsr(p, 0x176, target_addr)?;
    p.a.mov(ecx, 0x176u32)?;
    p.a.rdmsr()?;
    p.check_eax(target_addr, "rdmsr sysenter_eip")?;
    p.a.mov(ecx, 0x174u32)?;
    p.a.rdmsr()?;
    p.check_eax(u32::from(KCODE), "rdmsr sysenter_cs")?;
    p.ring3_case("sysexit at cpl 3", EFL3, Expect::Fault(13, Some(0)), |_| Ok(()), |p| p.a.sysexit())?;

    // Ring 0 -> SYSEXIT -> ring 3 -> SYSENTER -> ring 0.
    let mut ring3 = p.label();
    let ring3_addr = p.addr(ring3);
    p.a.mov(dword_ptr(out + 28), esp)?;
    p.a.mov(ecx, RING3_ESP)?;
    p.a.mov(edx, ring3_addr)?;
    p.a.sysexit()?;
    p.bind(&mut ring3)?;
    p.sel_to_eax(cs)?;
    p.a.mov(dword_ptr(out), eax)?;
    p.sel_to_eax(ss)?;
    p.a.mov(dword_ptr(out + 4), eax)?;
    p.a.mov(dword_ptr(out + 8), esp)?;
    p.a.sysenter()?;
    p.bind(&mut target)?;
    p.sel_to_eax(cs)?;
    p.a.mov(dword_ptr(out + 12), eax)?;
    p.sel_to_eax(ss)?;
    p.a.mov(dword_ptr(out + 16), eax)?;
    p.a.mov(dword_ptr(out + 20), esp)?;
    p.a.mov(esp, dword_ptr(out + 28))?;
    p.check(Mem32(out), u32::from(UCODE), "sysexit: cs = sysenter_cs + 16 with rpl 3")?;
    p.check(Mem32(out + 4), u32::from(UDATA), "sysexit: ss = sysenter_cs + 24 with rpl 3")?;
    p.check(Mem32(out + 8), RING3_ESP, "sysexit: esp = ecx")?;
    p.check(Mem32(out + 12), u32::from(KCODE), "sysenter: cs = sysenter_cs")?;
    p.check(Mem32(out + 16), u32::from(KDATA), "sysenter: ss = sysenter_cs + 8")?;
    p.check(Mem32(out + 20), SYSENTER_ESP, "sysenter: esp = sysenter_esp")
}

fn setup(p: &mut Program, mut gate_handler: CodeLabel, mut conforming_routine: CodeLabel) -> Asm {
    let handler = p.addr(gate_handler);
    p.set_gdt(GATE3, gate(KCODE, handler, P | dpl(3) | CALL_GATE, 2))?;
    p.set_gdt(GATE0, gate(KCODE, handler, P | CALL_GATE, 2))?;
    p.set_gdt(CONF, flat(P | CODE_CXR))?;
    p.set_gdt(CODE0, flat(P | CODE_XR))?;

    // The routines, out of line.
    let mut over = p.label();
    p.a.jmp(over)?;
    // The call-gate handler (ring 0): records its stack and selectors, loads DS with a DPL-0
    // segment (which the return to ring 3 must null) and returns with RET 8.
    p.bind(&mut gate_handler)?;
    p.a.mov(dword_ptr(GATE_SEEN).ss(), esp)?;
    for i in 0..6 {
        p.a.mov(eax, dword_ptr(esp + 4 * i))?;
        p.a.mov(dword_ptr(GATE_SEEN + 4 + 4 * i as u32).ss(), eax)?;
    }
    p.sel_to_eax(cs)?;
    p.a.mov(dword_ptr(GATE_SEEN + 28).ss(), eax)?;
    p.sel_to_eax(ss)?;
    p.a.mov(dword_ptr(GATE_SEEN + 32).ss(), eax)?;
    p.load_sreg(ds, KDATA)?;
    p.a.retf_1(8)?;
    // The conforming routine: EDI = CS as it runs, then RETF.
    p.bind(&mut conforming_routine)?;
    p.sel_to_eax(cs)?;
    p.a.mov(edi, eax)?;
    p.a.retf()?;
    p.bind(&mut over)?;

    p.set_handler(VEC_INT3, INT_GATE, 3)?;
    p.set_handler(VEC_TRAP3, TRAP_GATE, 3)?;
    p.set_handler(VEC_INT0, INT_GATE, 0)?;
    Ok(())
}

/// Arms the recorder (resume at `resume`), IRETs to ring 3 with `eflags` and DS..GS as they
/// are, and binds the ring-3 entry right after: the code that follows runs at CPL 3.
fn to_ring3(p: &mut Program, resume: CodeLabel, eflags: u32) -> Asm {
    let mut ring3 = p.label();
    let entry = p.addr(ring3);
    p.arm(resume)?;
    p.iret_to_ring3(entry, RING3_STACK_TOP, eflags)?;
    p.bind(&mut ring3)
}

/// `int 30h` from ring 3, then the resume label in ring 0; returns the address right after
/// the `int 30h` (the saved EIP).
fn back_to_ring0(p: &mut Program, mut resume: CodeLabel) -> Result<u32, IcedError> {
    let mut after = p.label();
    let after_addr = p.addr(after);
    p.a.int(VEC_DONE)?;
    p.bind(&mut after)?;
    p.a.jmp(after)?;
    p.bind(&mut resume)?;
    p.disarm()?;
    Ok(after_addr)
}

/// Checks that the `int 30h` came from ring 3 at `eip`.
fn check_done(p: &mut Program, name: &str, eip: u32) -> Asm {
    p.check(Mem32(EXC_VECTOR), VEC_DONE, &format!("{name}: reached int 30h"))?;
    p.check(Mem32(EXC_EIP), eip, &format!("{name}: saved eip after int 30h"))
}

fn iret_to_ring3(p: &mut Program) -> Asm {
    let resume = p.label();
    p.a.mov(ebx, 0xFFFF_FFFFu32)?;
    to_ring3(p, resume, EFL3)?;
    p.sel_to_eax(cs)?;
    p.a.mov(ebx, eax)?;
    p.sel_to_eax(ss)?;
    p.a.mov(ecx, eax)?;
    p.a.mov(esi, esp)?;
    p.a.pushfd()?;
    p.a.pop(edi)?;
    let after = back_to_ring0(p, resume)?;
    let name = "iret to ring 3";
    check_done(p, name, after)?;
    p.check(Mem32(EXC_EBX), u32::from(UCODE), "ring 3: cs is the ring-3 code selector (cpl 3)")?;
    p.check(Mem32(EXC_ECX), u32::from(UDATA), "ring 3: ss from the iret frame")?;
    p.check(Mem32(EXC_ESI), RING3_STACK_TOP, "ring 3: esp from the iret frame")?;
    p.check_masked(Mem32(EXC_EDI), 0x3202, FL_1, "ring 3: eflags from the iret frame (iopl 0, if 0)")?;
    p.check(Mem32(EXC_CS), u32::from(UCODE), "int from ring 3: pushed cs")?;
    p.check(Mem32(EXC_SS), u32::from(UDATA), "int from ring 3: pushed ss")?;
    p.check(Mem32(EXC_ESP), RING3_STACK_TOP, "int from ring 3: pushed esp")?;
    p.check(Mem32(EXC_FRAME), ESP0_TOP - 20, "int from ring 3: frame on the tss esp0 stack")?;
    p.check(Mem32(EXC_IN_SS), u32::from(KDATA), "int from ring 3: ss from tss ss0")?;

    // The stack comes from the TSS every time: move ESP0 and look again.
    p.a.mov(dword_ptr(TSS0 + 4), ESP0_TOP - 0x100)?;
    let resume = p.label();
    to_ring3(p, resume, EFL3)?;
    back_to_ring0(p, resume)?;
    p.a.mov(dword_ptr(TSS0 + 4), ESP0_TOP)?;
    p.check(Mem32(EXC_FRAME), ESP0_TOP - 0x100 - 20, "int from ring 3 after changing tss esp0: new stack")?;

    // An exception at ring 3 with an error code: the frame on the ring-0 stack (#GP from HLT).
    p.ring3_case("hlt at cpl 3", EFL3, Expect::Fault(13, Some(0)), |_| Ok(()), |p| p.a.hlt())?;
    p.check(Mem32(EXC_CS), u32::from(UCODE), "#GP at cpl 3: pushed cs")?;
    p.check(Mem32(EXC_ESP), RING3_STACK_TOP, "#GP at cpl 3: pushed esp")?;
    p.check(Mem32(EXC_FRAME), ESP0_TOP - 20, "#GP at cpl 3: error code below the frame on the esp0 stack")?;
    p.ring3_case(
        "ud2 at cpl 3 (exceptions ignore gate dpl)",
        EFL3,
        Expect::Fault(6, None),
        |_| Ok(()),
        |p| p.a.ud2(),
    )?;

    // IRET and RETF at ring 3 may not go to ring 0.
    let mut target = p.label();
    let target_addr = p.addr(target);
    p.ring3_case(
        "iret from ring 3 to ring 0",
        EFL3,
        Expect::Fault(13, Some(u32::from(KCODE))),
        |p| {
            p.a.push(FL_1)?;
            p.a.push(u32::from(KCODE))?;
            p.a.mov(eax, target_addr)?;
            p.a.push(eax)
        },
        |p| p.a.iretd(),
    )?;
    p.ring3_case(
        "retf from ring 3 to ring 0",
        EFL3,
        Expect::Fault(13, Some(u32::from(KCODE))),
        |p| {
            p.a.push(u32::from(KCODE))?;
            p.a.mov(eax, target_addr)?;
            p.a.push(eax)
        },
        |p| p.a.retf(),
    )?;
    p.bind(&mut target)?;
    // IRET within ring 3 is fine.
    let mut next = p.label();
    let next_addr = p.addr(next);
    p.ring3_case(
        "iret from ring 3 to ring 3",
        EFL3,
        Expect::Nothing,
        |p| {
            p.a.push(FL_1)?;
            p.a.push(u32::from(UCODE))?;
            p.a.mov(eax, next_addr)?;
            p.a.push(eax)
        },
        |p| {
            p.a.iretd()?;
            p.bind(&mut next)
        },
    )
}

fn nulling(p: &mut Program) -> Asm {
    // IRET: DS = DPL-0 data, ES = DPL-0 non-conforming code, FS = conforming code, GS = DPL-3
    // data. Ring 3 reads them back.
    for (how, use_retf) in [("iret", false), ("retf", true)] {
        let resume = p.label();
        p.load_sreg(ds, KDATA)?;
        p.load_sreg(es, CODE0)?;
        p.load_sreg(fs, CONF)?;
        p.load_sreg(gs, UDATA)?;
        if use_retf {
            let mut ring3 = p.label();
            let entry = p.addr(ring3);
            p.arm(resume)?;
            p.a.push(u32::from(UDATA))?;
            p.a.mov(eax, RING3_STACK_TOP)?;
            p.a.push(eax)?;
            p.a.push(u32::from(UCODE))?;
            p.a.mov(eax, entry)?;
            p.a.push(eax)?;
            p.a.retf()?;
            p.bind(&mut ring3)?;
        } else {
            to_ring3(p, resume, EFL3)?;
        }
        p.sel_to_eax(ds)?;
        p.a.mov(ebx, eax)?;
        p.sel_to_eax(es)?;
        p.a.mov(ecx, eax)?;
        p.sel_to_eax(fs)?;
        p.a.mov(esi, eax)?;
        p.sel_to_eax(gs)?;
        p.a.mov(edi, eax)?;
        p.sel_to_eax(cs)?;
        p.a.mov(ebp, eax)?;
        let after = back_to_ring0(p, resume)?;
        check_done(p, &format!("{how} to ring 3"), after)?;
        p.check(Mem32(EXC_EBP), u32::from(UCODE), &format!("{how} to ring 3: cs"))?;
        p.check(Mem32(EXC_EBX), 0, &format!("{how} to ring 3: ds with dpl 0 data is nulled"))?;
        p.check(Mem32(EXC_ECX), 0, &format!("{how} to ring 3: es with dpl 0 non-conforming code is nulled"))?;
        p.check(Mem32(EXC_ESI), u32::from(CONF), &format!("{how} to ring 3: fs with conforming code stays"))?;
        p.check(Mem32(EXC_EDI), u32::from(UDATA), &format!("{how} to ring 3: gs with dpl 3 data stays"))?;
    }
    Ok(())
}

fn call_gate(p: &mut Program, _gate_handler: CodeLabel) -> Asm {
    let resume = p.label();
    let mut after_call = p.label();
    let after_call_addr = p.addr(after_call);
    p.fill(GATE_SEEN, 0x24, 0)?;
    to_ring3(p, resume, EFL3)?;
    p.load_sreg(ds, UDATA)?;
    p.a.push(0x1111_1111)?;
    p.a.push(0x2222_2222)?;
    p.a.call_far(GATE3 | 3, 0)?;
    p.bind(&mut after_call)?;
    p.a.mov(esi, esp)?;
    p.sel_to_eax(ds)?;
    p.a.mov(ebx, eax)?;
    p.sel_to_eax(cs)?;
    p.a.mov(ecx, eax)?;
    let after = back_to_ring0(p, resume)?;
    let n = "call gate from ring 3";
    check_done(p, n, after)?;
    let seen = |i: u32| Mem32(GATE_SEEN + 4 * i);
    p.check(seen(0), ESP0_TOP - 24, &format!("{n}: handler esp = tss esp0 - 24"))?;
    p.check(seen(1), after_call_addr, &format!("{n}: [esp] return eip"))?;
    p.check(seen(2), u32::from(UCODE), &format!("{n}: [esp+4] caller cs"))?;
    p.check(seen(3), 0x2222_2222, &format!("{n}: [esp+8] second parameter copied"))?;
    p.check(seen(4), 0x1111_1111, &format!("{n}: [esp+12] first parameter copied"))?;
    p.check(seen(5), RING3_STACK_TOP - 8, &format!("{n}: [esp+16] caller esp"))?;
    p.check(seen(6), u32::from(UDATA), &format!("{n}: [esp+20] caller ss"))?;
    p.check(seen(7), u32::from(KCODE), &format!("{n}: handler cs (cpl 0)"))?;
    p.check(seen(8), u32::from(KDATA), &format!("{n}: handler ss from tss ss0"))?;
    p.check(Mem32(EXC_ESI), RING3_STACK_TOP, "retf 8 to ring 3: esp past the parameters")?;
    p.check(Mem32(EXC_EBX), 0, "retf 8 to ring 3: ds with dpl 0 data is nulled")?;
    p.check(Mem32(EXC_ECX), u32::from(UCODE), "retf 8 to ring 3: cs")?;

    // The same gate from ring 0: no stack switch, nothing copied.
    p.a.push(0x3333_3333)?;
    p.a.push(0x4444_4444)?;
    p.a.call_far(GATE3, 0)?;
    p.a.mov(esi, esp)?;
    p.load_sreg(ds, KDATA)?;
    p.check(seen(0), MAIN_STACK_TOP - 8 - 8, "call gate from ring 0: same stack")?;
    p.check(seen(2), u32::from(KCODE), "call gate from ring 0: caller cs")?;
    p.check(seen(3), 0x4444_4444, "call gate from ring 0: [esp+8] is the caller's own push")?;
    p.check(esi, MAIN_STACK_TOP, "call gate from ring 0: retf 8 pops the parameters")?;

    p.ring3_case(
        "call through a dpl 0 call gate from ring 3",
        EFL3,
        Expect::Fault(13, Some(u32::from(GATE0))),
        |_| Ok(()),
        |p| p.a.call_far(GATE0 | 3, 0),
    )?;
    p.ring3_case(
        "jmp through a call gate to ring 0",
        EFL3,
        Expect::Fault(13, Some(u32::from(KCODE))),
        |_| Ok(()),
        |p| p.a.jmp_far(GATE3 | 3, 0),
    )
}

fn far_transfers(p: &mut Program, conforming_routine: CodeLabel) -> Asm {
    let routine = p.addr(conforming_routine);
    for (selector, what) in [(CONF, "rpl 0"), (CONF | 3, "rpl 3")] {
        p.ring3_case(
            &format!("call conforming dpl 0 code from ring 3 ({what} selector)"),
            EFL3,
            Expect::Nothing,
            |p| p.a.xor(edi, edi),
            |p| p.a.call_far(selector, routine),
        )?;
        p.check(Mem32(EXC_EDI), u32::from(CONF | 3), "conforming code runs at cpl 3: cs.rpl = 3")?;
    }
    p.ring3_case(
        "call non-conforming dpl 0 code from ring 3",
        EFL3,
        Expect::Fault(13, Some(u32::from(KCODE))),
        |_| Ok(()),
        |p| p.a.call_far(KCODE | 3, routine),
    )?;
    p.ring3_case(
        "jmp to non-conforming dpl 0 code from ring 3",
        EFL3,
        Expect::Fault(13, Some(u32::from(CODE0))),
        |_| Ok(()),
        |p| p.a.jmp_far(CODE0, routine),
    )?;
    p.case(
        "call non-conforming dpl 3 code from ring 0",
        Expect::Fault(13, Some(u32::from(UCODE & !3))),
        |_| Ok(()),
        |p| p.a.call_far(UCODE, routine),
    )
}

fn interrupts(p: &mut Program) -> Asm {
    for (vector, kind, if_in_handler) in [(VEC_INT3, "interrupt", 0), (VEC_TRAP3, "trap", FL_IF)] {
        let n = format!("int {vector:#x} through a dpl 3 {kind} gate from ring 3");
        p.ring3_case(&n, FL_1 | FL_IF, Expect::Trap(vector, None), |_| Ok(()), |p| p.a.int(vector))?;
        p.check(Mem32(EXC_CS), u32::from(UCODE), &format!("{n}: pushed cs"))?;
        p.check(Mem32(EXC_FRAME), ESP0_TOP - 20, &format!("{n}: frame on the esp0 stack"))?;
        p.check_masked(Mem32(EXC_EFLAGS), FL_IF, FL_IF, &format!("{n}: pushed eflags has if"))?;
        p.check_masked(Mem32(EXC_IN_EFLAGS), FL_IF, if_in_handler, &format!("{n}: if in the handler"))?;
    }
    p.ring3_case(
        "int 42h through a dpl 0 gate from ring 3",
        EFL3,
        Expect::Fault(13, Some(VEC_INT0 * 8 + 2)),
        |_| Ok(()),
        |p| p.a.int(VEC_INT0),
    )?;
    p.ring3_case(
        "int3 through the dpl 0 #BP gate from ring 3",
        EFL3,
        Expect::Fault(13, Some(3 * 8 + 2)),
        |_| Ok(()),
        |p| p.a.int3(),
    )?;
    p.ring3_case(
        "into with of through the dpl 0 #OF gate from ring 3",
        EFL3,
        Expect::Fault(13, Some(4 * 8 + 2)),
        |p| {
            p.a.mov(al, 0x7F)?;
            p.a.add(al, 1)
        },
        |p| CodeAssembler::into(&mut p.a),
    )?;
    p.check_masked(Mem32(EXC_EFLAGS), OF, OF, "into fault: pushed eflags has of")?;
    p.set_handler(3, INT_GATE, 3)?;
    p.ring3_case(
        "int3 through a dpl 3 #BP gate from ring 3",
        EFL3,
        Expect::Trap(3, None),
        |_| Ok(()),
        |p| p.a.int3(),
    )?;
    p.set_handler(3, INT_GATE, 0)?;
    // INT n from ring 0 to a DPL-0 gate is fine.
    p.case("int 42h from ring 0", Expect::Trap(VEC_INT0, None), |_| Ok(()), |p| p.a.int(VEC_INT0))?;
    p.check(Mem32(EXC_FRAME), MAIN_STACK_TOP - 12, "int from ring 0: no stack switch")
}

fn privileged(p: &mut Program) -> Asm {
    type Emit = fn(&mut Program) -> Asm;
    let cases: [(&str, Emit); 20] = [
        ("hlt", |p| p.a.hlt()),
        ("cli with iopl 0", |p| p.a.cli()),
        ("sti with iopl 0", |p| p.a.sti()),
        ("lgdt", |p| p.a.lgdt(fword_ptr(GDTR_STD + 2))),
        ("lidt", |p| p.a.lidt(fword_ptr(IDTR_STD + 2))),
        ("lldt", |p| p.a.lldt(ax)),
        ("ltr", |p| p.a.ltr(ax)),
        ("mov cr0, eax", |p| p.a.mov(cr0, eax)),
        ("mov eax, cr0", |p| p.a.mov(eax, cr0)),
        ("mov cr3, eax", |p| p.a.mov(cr3, eax)),
        ("mov eax, cr4", |p| p.a.mov(eax, cr4)),
        ("mov dr7, eax", |p| p.a.mov(dr7, eax)),
        ("clts", |p| p.a.clts()),
        ("lmsw", |p| p.a.lmsw(ax)),
        ("invlpg", |p| p.a.invlpg(byte_ptr(RING3_OUT))),
        ("wbinvd", |p| p.a.wbinvd()),
        ("invd", |p| p.a.invd()),
        ("rdmsr", |p| p.a.rdmsr()),
        ("in al, 80h with iopl 0 and no i/o bitmap", |p| p.a.in_(al, 0x80)),
        ("out 80h, al with iopl 0 and no i/o bitmap", |p| p.a.out(0x80, al)),
    ];
    for (what, emit) in cases {
        p.ring3_case(
            &format!("{what} at cpl 3"),
            EFL3,
            Expect::Fault(13, Some(0)),
            |p| {
                p.a.xor(eax, eax)?;
                p.a.mov(ecx, 0x10)?;
                p.a.xor(edx, edx)
            },
            emit,
        )?;
    }
    // HLT in conforming DPL-0 code called from ring 3 still runs at CPL 3.
    let mut routine = p.label();
    let mut over = p.label();
    let routine_addr = p.addr(routine);
    p.a.jmp(over)?;
    p.bind(&mut routine)?;
    p.a.hlt()?;
    p.a.retf()?;
    p.bind(&mut over)?;
    p.ring3_case(
        "hlt in conforming dpl 0 code at cpl 3",
        EFL3,
        Expect::Vector(13, Some(0)),
        |_| Ok(()),
        |p| p.a.call_far(CONF, routine_addr),
    )?;
    p.check(Mem32(EXC_EIP), routine_addr, "hlt in conforming code: saved eip")?;
    p.check(Mem32(EXC_CS), u32::from(CONF | 3), "hlt in conforming code: saved cs has rpl 3")
}

fn iopl_sensitive(p: &mut Program) -> Asm {
    let iopl3 = FL_1 | iopl(3);
    p.ring3_case("cli at cpl 3 with iopl 3", iopl3 | FL_IF, Expect::Nothing, |_| Ok(()), |p| p.a.cli())?;
    p.check_masked(Mem32(EXC_EFLAGS), FL_IF, 0, "cli at cpl 3 with iopl 3 clears if")?;
    p.ring3_case("sti at cpl 3 with iopl 3", iopl3, Expect::Nothing, |_| Ok(()), |p| p.a.sti())?;
    p.check_masked(Mem32(EXC_EFLAGS), FL_IF, FL_IF, "sti at cpl 3 with iopl 3 sets if")?;
    p.ring3_case("out 80h at cpl 3 with iopl 3", iopl3, Expect::Nothing, |_| Ok(()), |p| p.a.out(0x80, al))?;

    // POPF at CPL 3 with IOPL 0 neither faults nor changes IF or IOPL.
    p.ring3_case(
        "popf clearing if at cpl 3 with iopl 0",
        FL_1 | FL_IF,
        Expect::Nothing,
        |p| p.a.push(FL_1 | iopl(3)),
        |p| p.a.popfd(),
    )?;
    p.check_masked(Mem32(EXC_EFLAGS), FL_IF | iopl(3), FL_IF, "popf at cpl 3 with iopl 0 keeps if and iopl")?;
    p.ring3_case(
        "popf clearing if at cpl 3 with iopl 3",
        iopl3 | FL_IF,
        Expect::Nothing,
        |p| p.a.push(FL_1),
        |p| p.a.popfd(),
    )?;
    p.check_masked(
        Mem32(EXC_EFLAGS),
        FL_IF | iopl(3),
        iopl(3),
        "popf at cpl 3 with iopl 3 clears if, keeps iopl",
    )?;
    // PUSHF shows IOPL.
    p.ring3_case(
        "pushf at cpl 3 with iopl 2",
        FL_1 | iopl(2),
        Expect::Nothing,
        |_| Ok(()),
        |p| {
            p.a.pushfd()?;
            p.a.pop(ebx)
        },
    )?;
    p.check_masked(Mem32(EXC_EBX), iopl(3) | FL_IF, iopl(2), "pushf at cpl 3 shows iopl 2")?;
    // POPF at ring 0 may change IOPL.
    p.a.push(FL_1 | iopl(1))?;
    p.a.popfd()?;
    p.a.pushfd()?;
    p.a.pop(ebx)?;
    p.a.push(FL_1)?;
    p.a.popfd()?;
    p.check_masked(ebx, iopl(3), iopl(1), "popf at cpl 0 sets iopl")
}

fn unprivileged(p: &mut Program) -> Asm {
    let out = RING3_OUT;
    p.fill(out, 0x20, 0xFFFF_FFFF)?;
    p.ring3_case(
        "sgdt, sidt, str, sldt, smsw at cpl 3",
        EFL3,
        Expect::Nothing,
        |_| Ok(()),
        |p| {
            p.a.sgdt(ptr(out))?;
            p.a.sidt(ptr(out + 8))?;
            p.a.str(word_ptr(out + 16))?;
            p.a.sldt(word_ptr(out + 20))?;
            p.a.smsw(word_ptr(out + 24))
        },
    )?;
    p.check_masked(Mem32(out), 0xFFFF, GDT_ENTRIES * 8 - 1, "sgdt at cpl 3: limit")?;
    p.check(Mem32(out + 2), GDT, "sgdt at cpl 3: base")?;
    p.check(Mem32(out + 10), IDT, "sidt at cpl 3: base")?;
    p.check_masked(Mem32(out + 16), 0xFFFF, u32::from(TSS0_SEL), "str at cpl 3")?;
    p.check_masked(Mem32(out + 20), 0xFFFF, 0, "sldt at cpl 3")?;
    p.check_masked(Mem32(out + 24), CR0_PE, CR0_PE, "smsw at cpl 3: pe")?;
    p.ring3_case(
        "lar of dpl 0 code at cpl 3",
        EFL3,
        Expect::Nothing,
        |p| p.a.mov(ebx, u32::from(KCODE)),
        |p| {
            p.a.lar(eax, ebx)?;
            p.a.pushfd()?;
            p.a.pop(esi)
        },
    )?;
    p.check_masked(Mem32(EXC_ESI), ZF, 0, "lar of dpl 0 code at cpl 3: zf clear")?;
    p.ring3_case(
        "lar of dpl 3 code at cpl 3",
        EFL3,
        Expect::Nothing,
        |p| p.a.mov(ebx, u32::from(UCODE)),
        |p| {
            p.a.lar(eax, ebx)?;
            p.a.pushfd()?;
            p.a.pop(esi)
        },
    )?;
    p.check_masked(Mem32(EXC_ESI), ZF, ZF, "lar of dpl 3 code at cpl 3: zf set")?;
    p.ring3_case("rdtsc at cpl 3 with cr4.tsd = 0", EFL3, Expect::Nothing, |_| Ok(()), |p| p.a.rdtsc())?;
    p.ring3_case(
        "mov ds, dpl 0 data at cpl 3",
        EFL3,
        Expect::Fault(13, Some(u32::from(KDATA))),
        |p| p.a.mov(eax, u32::from(KDATA)),
        |p| p.a.mov(ds, ax),
    )?;
    p.ring3_case(
        "mov ss, dpl 0 data at cpl 3",
        EFL3,
        Expect::Fault(13, Some(u32::from(KDATA))),
        |p| p.a.mov(eax, u32::from(KDATA)),
        |p| p.a.mov(ss, ax),
    )?;
    p.ring3_case(
        "mov es, dpl 3 data at cpl 3",
        EFL3,
        Expect::Nothing,
        |p| p.a.mov(eax, u32::from(UDATA)),
        |p| p.a.mov(es, ax),
    )
}
