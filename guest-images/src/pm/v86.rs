//! Kernel "pm-v86": virtual-8086 mode (SDM Vol. 3A, chapter 20; Vol. 2, IRET, INT n,
//! PUSHF, POPF).
//!
//! The kernel enters virtual-8086 mode with IRET from ring 0 (EFLAGS image with VM = 1) and
//! gets back through exceptions and interrupts, which the processor delivers to ring 0 on the
//! TSS's SS0:ESP0 with the frame GS, FS, DS, ES, SS, ESP, EFLAGS, CS, EIP (and an error
//! code), after loading DS, ES, FS and GS with null (20.3.1.1 and Figure 20-2). Each piece of
//! virtual-8086 code ends with UD2, whose #UD says "done".
//!
//! Points the SDM settles:
//! - Addresses are segment × 16 + offset, and MOV to a segment register just sets that
//!   base; offsets above FFFFh are #GP(0) (20.1.1).
//! - CLI, STI, PUSHF, POPF, INT n and IRET are IOPL-sensitive: with IOPL < 3 they are
//!   #GP(0); with IOPL = 3 they run (20.2.7). POPF and IRET there cannot change IOPL, PUSHFD
//!   clears VM and RF in the image it pushes. INT3 and INTO are not IOPL-sensitive: they go
//!   through the IDT, where a gate with DPL < 3 is #GP(vector * 8 + 2).
//! - INT n through the IDT must reach a DPL-0 non-conforming code segment, otherwise it is
//!   #GP(code segment selector) (Vol. 2, INT n pseudo-code).
//! - Virtual-8086 code runs at CPL 3: HLT and MOV CR are #GP(0); LAR, LSL, VERR, VERW, ARPL,
//!   SLDT, STR, LLDT and LTR are not recognized there (#UD).
//! - IN and OUT always consult the I/O permission bitmap, whatever IOPL (20.2.8.1); with the
//!   bitmap beyond the TSS limit every port is #GP(0).
//! - POPF at CPL 0 does not change VM (Vol. 2, POPF).

use iced_x86::code_asm::*;

use super::rt::*;
use crate::asm::{Asm, Mem32};

/// EFLAGS images for virtual-8086 mode (VM is added by `v86_case`).
const IOPL0: u32 = FL_1;
const IOPL3: u32 = FL_1 | iopl(3);

/// Markers the virtual-8086 code reads (linear addresses).
const MARK1_AT: u32 = 0x6010;
const MARK2_AT: u32 = 0x6110;
const MARK3_AT: u32 = 0x6100;

/// The monitor's record (dwords at TEST_VARS).
const MONITOR_SEEN: u32 = TEST_VARS;

/// Gates: the monitor (DPL 3, returns to virtual-8086 mode) and a DPL-3 gate to DPL-3 code.
const VEC_MONITOR: u32 = 0x31;
const VEC_TO_RING3_CODE: u32 = 0x32;

/// A piece of virtual-8086 code: where it starts, the instruction under test, the one after
/// it, and the final UD2 (indexes into the IP table).
#[derive(Clone, Copy)]
struct Snip {
    entry: usize,
    at: usize,
    next: usize,
    done: usize,
}

/// Emits `setup`, the instruction `instr`, `after`, UD2.
fn snip(
    c: &mut V86Code,
    setup: impl FnOnce(&mut CodeAssembler) -> Asm,
    instr: impl FnOnce(&mut CodeAssembler) -> Asm,
    after: impl FnOnce(&mut CodeAssembler) -> Asm,
) -> Result<Snip, IcedError> {
    let entry = c.here()?;
    setup(&mut c.a)?;
    let at = c.here()?;
    instr(&mut c.a)?;
    let next = c.here()?;
    after(&mut c.a)?;
    let done = c.here()?;
    c.a.ud2()?;
    Ok(Snip { entry, at, next, done })
}

fn none(_: &mut CodeAssembler) -> Asm {
    Ok(())
}

/// `pushf; pop ax`: AX = FLAGS.
fn flags_to_ax(a: &mut CodeAssembler) -> Asm {
    a.pushf()?;
    a.pop(ax)
}

/// Every piece of virtual-8086 code the kernel runs.
struct Snips {
    segments: Snip,
    cli: Snip,
    sti: Snip,
    pushf: Snip,
    pushfd: Snip,
    popf: Snip,
    int_n: Snip,
    iret: Snip,
    int3: Snip,
    into: Snip,
    monitor: Snip,
    to_ring3_code: Snip,
    hlt: Snip,
    mov_cr0: Snip,
    lar: Snip,
    verr: Snip,
    arpl: Snip,
    str_: Snip,
    sldt: Snip,
    divide: Snip,
    limit: Snip,
    out: Snip,
}

fn v86_code() -> Result<(Vec<u8>, Vec<u16>, Snips), IcedError> {
    let mut c = V86Code::new()?;
    let segments = snip(
        &mut c,
        none,
        |a| a.mov(ax, word_ptr(MARK1_AT - 0x6000)),
        |a| {
            a.mov(bx, 0x05FF)?;
            a.mov(es, bx)?;
            a.mov(bx, word_ptr(0x0120).es())?;
            a.mov(cx, cs)?;
            a.mov(dx, ss)?;
            a.mov(si, sp)?;
            a.mov(di, ds)?;
            a.mov(bp, 0x0610)?;
            a.mov(ds, bp)?;
            a.mov(bp, word_ptr(0))
        },
    )?;
    let cli = snip(&mut c, none, |a| a.cli(), flags_to_ax)?;
    let sti = snip(&mut c, none, |a| a.sti(), flags_to_ax)?;
    let pushf = snip(&mut c, none, |a| a.pushf(), |a| a.pop(ax))?;
    let pushfd = snip(&mut c, none, |a| a.pushfd(), |a| a.pop(eax))?;
    let popf = snip(&mut c, |a| a.push(0x0202), |a| a.popf(), flags_to_ax)?;
    let int_n = snip(&mut c, none, |a| a.int(VEC_DONE), none)?;
    // IRET: FLAGS (a constant: PUSHF is IOPL-sensitive itself), CS, then CALL pushes the IP
    // of the instruction after it and jumps to the IRET, which returns there (IOPL 3) and on
    // to the UD2 with BX = 1111h.
    let iret = {
        let entry = c.here()?;
        let mut to_iret = c.a.create_label();
        let mut done_label = c.a.create_label();
        c.a.xor(bx, bx)?;
        c.a.push(FL_1)?;
        c.a.push(cs)?;
        c.a.call(to_iret)?;
        c.a.mov(bx, 0x1111)?;
        c.a.jmp(done_label)?;
        c.a.set_label(&mut to_iret)?;
        c.a.zero_bytes()?;
        let at = c.here()?;
        c.a.iret()?;
        let next = c.here()?;
        c.a.set_label(&mut done_label)?;
        c.a.zero_bytes()?;
        let done = c.here()?;
        c.a.ud2()?;
        Snip { entry, at, next, done }
    };
    let int3 = snip(&mut c, none, |a| a.int3(), none)?;
    let into = snip(
        &mut c,
        |a| {
            a.mov(al, 0x7F)?;
            a.add(al, 1)
        },
        CodeAssembler::into,
        none,
    )?;
    let monitor = snip(&mut c, |a| a.xor(bx, bx), |a| a.int(VEC_MONITOR), |a| a.mov(cx, ds))?;
    let to_ring3_code = snip(&mut c, none, |a| a.int(VEC_TO_RING3_CODE), none)?;
    let hlt = snip(&mut c, none, |a| a.hlt(), none)?;
    let mov_cr0 = snip(&mut c, none, |a| a.mov(eax, cr0), none)?;
    let lar = snip(&mut c, |a| a.mov(bx, u32::from(KCODE)), |a| a.lar(ax, bx), none)?;
    let verr = snip(&mut c, |a| a.mov(bx, u32::from(KCODE)), |a| a.verr(bx), none)?;
    let arpl = snip(&mut c, none, |a| a.arpl(ax, bx), none)?;
    let str_ = snip(&mut c, none, |a| a.str(ax), none)?;
    let sldt = snip(&mut c, none, |a| a.sldt(ax), none)?;
    let divide = snip(
        &mut c,
        |a| {
            a.mov(ax, 5)?;
            a.xor(cx, cx)
        },
        |a| a.div(cx),
        none,
    )?;
    let limit = snip(&mut c, |a| a.mov(bx, 0xFFFF), |a| a.mov(ax, word_ptr(bx)), none)?;
    let out = snip(&mut c, none, |a| a.out(0x80, al), none)?;
    let (bytes, ips) = c.assemble()?;
    Ok((
        bytes,
        ips,
        Snips {
            segments,
            cli,
            sti,
            pushf,
            pushfd,
            popf,
            int_n,
            iret,
            int3,
            into,
            monitor,
            to_ring3_code,
            hlt,
            mov_cr0,
            lar,
            verr,
            arpl,
            str_,
            sldt,
            divide,
            limit,
            out,
        },
    ))
}

/// Runs `s` in virtual-8086 mode with `eflags` and checks `expect` (see `Program::v86_case`).
fn run_snip(p: &mut Program, name: &str, eflags: u32, ips: &[u16], s: Snip, expect: Expect) -> Asm {
    let at = if matches!(expect, Expect::Nothing) { ips[s.done] } else { ips[s.at] };
    p.v86_case(name, eflags, ips[s.entry], expect, at, ips[s.next])
}

pub(super) fn run(p: &mut Program) -> Asm {
    let (bytes, ips, s) = v86_code()?;
    let mut monitor = p.label();
    p.section("set up", |p| {
        p.install_v86(bytes)?;
        p.a.mov(word_ptr(MARK1_AT), 0x1234)?;
        p.a.mov(word_ptr(MARK2_AT), 0x5678)?;
        p.a.mov(word_ptr(MARK3_AT), 0x9ABC)?;
        // The monitor: records the data segment registers it finds (null), sets EBX and
        // returns to virtual-8086 mode with IRET. It must not use DS: it goes through SS.
        let mut over = p.label();
        let monitor_addr = p.addr(monitor);
        p.a.jmp(over)?;
        p.bind(&mut monitor)?;
        for (i, sreg) in [ds, es, fs, gs].into_iter().enumerate() {
            p.sel_to_eax(sreg)?;
            p.a.mov(dword_ptr(MONITOR_SEEN + 4 * i as u32).ss(), eax)?;
        }
        p.a.mov(dword_ptr(MONITOR_SEEN + 16).ss(), esp)?;
        p.a.mov(ebx, 0xB86B)?;
        p.a.iretd()?;
        p.bind(&mut over)?;
        p.set_idt(VEC_MONITOR, gate(KCODE, monitor_addr, P | dpl(3) | INT_GATE, 0))?;
        let stub = p.stub(VEC_TO_RING3_CODE);
        p.set_idt(VEC_TO_RING3_CODE, gate(UCODE, stub, P | dpl(3) | INT_GATE, 0))
    })?;
    p.section("entering and leaving virtual-8086 mode", |p| enter_leave(p, &ips, &s))?;
    p.section("iopl-sensitive instructions with iopl 0", |p| iopl0(p, &ips, &s))?;
    p.section("iopl-sensitive instructions with iopl 3", |p| iopl3(p, &ips, &s))?;
    p.section("interrupts to the ring-0 monitor", |p| monitor_calls(p, &ips, &s))?;
    p.section("cpl 3 and protected-mode-only instructions", |p| cpl3(p, &ips, &s))?;
    p.section("popf at cpl 0 cannot set vm", |p| {
        p.a.push(FL_1 | FL_VM)?;
        p.a.popfd()?;
        p.a.pushfd()?;
        p.a.pop(eax)?;
        p.check_masked(eax, FL_VM, 0, "popfd with vm set at cpl 0: vm stays clear")
    })
}

fn enter_leave(p: &mut Program, ips: &[u16], s: &Snips) -> Asm {
    let n = "real-mode addressing in virtual-8086 mode";
    run_snip(p, n, IOPL0, ips, s.segments, Expect::Nothing)?;
    p.check_masked(Mem32(EXC_EAX), 0xFFFF, 0x1234, "ds 0600h offset 0010h reads linear 6010h")?;
    p.check_masked(Mem32(EXC_EBX), 0xFFFF, 0x5678, "es 05ffh offset 0120h reads linear 6110h")?;
    p.check_masked(Mem32(EXC_EBP), 0xFFFF, 0x9ABC, "mov ds, 0610h then offset 0 reads linear 6100h")?;
    p.check_masked(Mem32(EXC_ECX), 0xFFFF, u32::from(V86_CS), "cs from the iret frame")?;
    p.check_masked(Mem32(EXC_EDX), 0xFFFF, u32::from(V86_SS), "ss from the iret frame")?;
    p.check_masked(Mem32(EXC_ESI), 0xFFFF, u32::from(V86_SP), "sp from the iret frame")?;
    p.check_masked(Mem32(EXC_EDI), 0xFFFF, u32::from(V86_DS), "ds from the iret frame")?;
    // The frame of the #UD that ended it.
    p.check(
        Mem32(EXC_FRAME),
        ESP0_TOP - 36,
        "exit from virtual-8086 mode: 9-dword frame on the tss esp0 stack",
    )?;
    p.check(Mem32(EXC_ESP), u32::from(V86_SP), "exit frame: sp")?;
    p.check(Mem32(EXC_SS), u32::from(V86_SS), "exit frame: ss")?;
    p.check_masked(Mem32(EXC_V86_ES), 0xFFFF, 0x05FF, "exit frame: es")?;
    p.check_masked(Mem32(EXC_V86_DS), 0xFFFF, 0x0610, "exit frame: ds")?;
    p.check_masked(Mem32(EXC_V86_FS), 0xFFFF, u32::from(V86_DS), "exit frame: fs")?;
    p.check_masked(Mem32(EXC_V86_GS), 0xFFFF, u32::from(V86_DS), "exit frame: gs")?;
    for (slot, name) in [(EXC_IN_DS, "ds"), (EXC_IN_ES, "es"), (EXC_IN_FS, "fs"), (EXC_IN_GS, "gs")] {
        p.check(Mem32(slot), 0, &format!("exit to ring 0: {name} is null in the handler"))?;
    }
    p.check(Mem32(EXC_IN_SS), u32::from(KDATA), "exit to ring 0: ss from tss ss0")?;
    p.check_masked(Mem32(EXC_IN_EFLAGS), FL_VM, 0, "exit to ring 0: vm clear in the handler")
}

fn iopl0(p: &mut Program, ips: &[u16], s: &Snips) -> Asm {
    let gp0 = Expect::Fault(13, Some(0));
    for (what, snip) in [
        ("cli", s.cli),
        ("sti", s.sti),
        ("pushf", s.pushf),
        ("pushfd", s.pushfd),
        ("popf", s.popf),
        ("int 30h", s.int_n),
        ("iret", s.iret),
    ] {
        run_snip(p, &format!("{what} in virtual-8086 mode with iopl 0"), IOPL0, ips, snip, gp0)?;
    }
    p.check(Mem32(EXC_FRAME), ESP0_TOP - 36, "#GP from virtual-8086 mode: error code below the 9-dword frame")
}

fn iopl3(p: &mut Program, ips: &[u16], s: &Snips) -> Asm {
    run_snip(p, "cli with iopl 3", IOPL3 | FL_IF, ips, s.cli, Expect::Nothing)?;
    p.check_masked(Mem32(EXC_EAX), FL_IF, 0, "cli with iopl 3 clears if")?;
    run_snip(p, "sti with iopl 3", IOPL3, ips, s.sti, Expect::Nothing)?;
    p.check_masked(Mem32(EXC_EAX), FL_IF, FL_IF, "sti with iopl 3 sets if")?;
    run_snip(p, "pushf with iopl 3", IOPL3, ips, s.pushf, Expect::Nothing)?;
    p.check_masked(Mem32(EXC_EAX), 0xFFFF, iopl(3) | FL_1, "pushf with iopl 3 pushes flags with iopl 3")?;
    run_snip(p, "pushfd with iopl 3", IOPL3, ips, s.pushfd, Expect::Nothing)?;
    p.check_masked(Mem32(EXC_EAX), FL_VM | FL_RF | iopl(3), iopl(3), "pushfd image has vm and rf clear")?;
    run_snip(p, "popf with iopl 3", IOPL3, ips, s.popf, Expect::Nothing)?;
    p.check_masked(
        Mem32(EXC_EAX),
        iopl(3) | FL_IF,
        iopl(3) | FL_IF,
        "popf with iopl 3: if set, iopl unchanged",
    )?;
    run_snip(p, "iret with iopl 3", IOPL3, ips, s.iret, Expect::Nothing)?;
    p.check_masked(Mem32(EXC_EBX), 0xFFFF, 0x1111, "iret with iopl 3 returned to the pushed cs:ip")?;
    run_snip(p, "int 30h with iopl 3", IOPL3, ips, s.int_n, Expect::Trap(VEC_DONE, None))?;
    p.check(Mem32(EXC_FRAME), ESP0_TOP - 36, "int 30h from virtual-8086 mode: 9-dword frame")?;
    p.check_masked(Mem32(EXC_EFLAGS), iopl(3), iopl(3), "int 30h: pushed eflags has iopl 3")?;
    p.check_masked(Mem32(EXC_V86_DS), 0xFFFF, u32::from(V86_DS), "int 30h: pushed ds")?;
    p.check(Mem32(EXC_IN_DS), 0, "int 30h: ds is null in the handler")
}

fn monitor_calls(p: &mut Program, ips: &[u16], s: &Snips) -> Asm {
    p.fill(MONITOR_SEEN, 20, 0xFFFF_FFFF)?;
    run_snip(p, "int 31h to a monitor that irets back", IOPL3, ips, s.monitor, Expect::Nothing)?;
    p.check(Mem32(EXC_EBX), 0xB86B, "the monitor's ebx reached virtual-8086 mode")?;
    p.check_masked(
        Mem32(EXC_ECX),
        0xFFFF,
        u32::from(V86_DS),
        "after the monitor's iret: ds restored from the frame",
    )?;
    for (i, name) in ["ds", "es", "fs", "gs"].iter().enumerate() {
        p.check(Mem32(MONITOR_SEEN + 4 * i as u32), 0, &format!("monitor: {name} null"))?;
    }
    p.check(Mem32(MONITOR_SEEN + 16), ESP0_TOP - 36, "monitor: esp below the 9-dword frame")?;
    // INT3 and INTO are not IOPL-sensitive: they reach the IDT, where a DPL-0 gate is a #GP.
    run_snip(
        p,
        "int3 with iopl 0 through a dpl 0 gate",
        IOPL0,
        ips,
        s.int3,
        Expect::Fault(13, Some(3 * 8 + 2)),
    )?;
    run_snip(
        p,
        "into with iopl 0 through a dpl 0 gate",
        IOPL0,
        ips,
        s.into,
        Expect::Fault(13, Some(4 * 8 + 2)),
    )?;
    p.set_handler(3, INT_GATE, 3)?;
    run_snip(p, "int3 with iopl 0 through a dpl 3 gate", IOPL0, ips, s.int3, Expect::Trap(3, None))?;
    p.set_handler(3, INT_GATE, 0)?;
    run_snip(
        p,
        "int 32h to a dpl 3 code segment",
        IOPL3,
        ips,
        s.to_ring3_code,
        Expect::Fault(13, Some(u32::from(UCODE & !3))),
    )?;
    run_snip(p, "divide error in virtual-8086 mode", IOPL0, ips, s.divide, Expect::Fault(0, None))
}

fn cpl3(p: &mut Program, ips: &[u16], s: &Snips) -> Asm {
    let gp0 = Expect::Fault(13, Some(0));
    run_snip(p, "hlt in virtual-8086 mode", IOPL3, ips, s.hlt, gp0)?;
    run_snip(p, "mov eax, cr0 in virtual-8086 mode", IOPL3, ips, s.mov_cr0, gp0)?;
    for (what, snip) in
        [("lar", s.lar), ("verr", s.verr), ("arpl", s.arpl), ("str", s.str_), ("sldt", s.sldt)]
    {
        run_snip(p, &format!("{what} in virtual-8086 mode"), IOPL3, ips, snip, Expect::Fault(6, None))?;
    }
    run_snip(p, "word read at ds:ffff in virtual-8086 mode", IOPL3, ips, s.limit, gp0)?;
    run_snip(p, "out 80h with iopl 3 and no i/o bitmap", IOPL3, ips, s.out, gp0)
}
