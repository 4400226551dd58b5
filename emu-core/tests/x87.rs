//! x87 instructions run through the interpreter in real mode: the probes and checks Linux makes
//! at boot, FNSAVE/FRSTOR, #MF and FERR#, and precise faults on memory operands (Intel SDM
//! Vol. 1 chapter 8; Vol. 3A §2.5 and §6.15).

use emu_core::cpu::StepResult;
use emu_core::state::{cr0, gpr};
use emu_core::x87::float80::{exc, F80};
use emu_core::{Cpu, OpenBus, SegReg, Segment};
use iced_x86::code_asm::*;

/// Data lives at DS:DATA (DS = 0).
const DATA: u32 = 0x2000;
/// Code at 0000:1000; every IVT vector points at its own HLT at 0000:0500 + vector.
const CODE: u32 = 0x1000;

fn machine() -> Cpu {
    let mut cpu = Cpu::new(2 << 20).unwrap();
    for v in 0..256u32 {
        cpu.mem.write_u16(v * 4, 0x0500 + v as u16);
        cpu.mem.write_u16(v * 4 + 2, 0);
        cpu.mem.write_u8(0x0500 + v, 0xF4);
    }
    cpu.set_real_cs_ip(0, CODE as u16);
    *cpu.state.seg_mut(SegReg::Ss) = Segment::real_mode(0);
    *cpu.state.seg_mut(SegReg::Ds) = Segment::real_mode(0);
    cpu.state.regs[gpr::ESP] = 0x8000;
    cpu
}

/// Assembles `f`'s 16-bit code followed by HLT at 0000:1000 and runs it from there.
fn run(cpu: &mut Cpu, f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> StepResult {
    let mut a = CodeAssembler::new(16).unwrap();
    f(&mut a).unwrap();
    a.hlt().unwrap();
    let bytes = a.assemble(u64::from(CODE)).unwrap();
    cpu.mem.load(u64::from(CODE), &bytes).unwrap();
    cpu.set_real_cs_ip(0, CODE as u16);
    cpu.state.halted = false;
    cpu.run(&mut OpenBus, 100_000).0
}

/// The vector whose HLT stopped the CPU (or `None` if the program's own HLT did).
fn vector(cpu: &Cpu) -> Option<u32> {
    let at = cpu.state.eip.wrapping_sub(1);
    (0x500..0x600).contains(&at).then(|| at - 0x500)
}

#[test]
fn linux_fpu_probe() {
    // fpu__init_check_bugs / fpu_detect: fninit; fnstsw; fnstcw → sw = 0, cw & 103fh = 3fh.
    let mut cpu = machine();
    run(&mut cpu, |a| {
        a.fninit()?;
        a.mov(word_ptr(DATA), 0x5A5Au32)?;
        a.mov(word_ptr(DATA + 2), 0x5A5Au32)?;
        a.fnstsw(word_ptr(DATA))?;
        a.fnstcw(word_ptr(DATA + 2))
    });
    assert_eq!(vector(&cpu), None);
    assert_eq!(cpu.mem.read_u16(DATA), 0);
    assert_eq!(cpu.mem.read_u16(DATA + 2), 0x037F);
}

#[test]
fn linux_fdiv_bug_check() {
    // x = 4195835, y = 3145727: x - (x / y) * y is 0 on a correct FPU.
    let mut cpu = machine();
    for (at, v) in [(DATA, 4_195_835.0f64), (DATA + 8, 3_145_727.0f64)] {
        cpu.mem.load(u64::from(at), &v.to_bits().to_le_bytes()).unwrap();
    }
    cpu.mem.write_u32(DATA + 16, 0xFFFF_FFFF);
    run(&mut cpu, |a| {
        a.fninit()?;
        a.fld(qword_ptr(DATA))?;
        a.fdiv(qword_ptr(DATA + 8))?;
        a.fmul(qword_ptr(DATA + 8))?;
        a.fld(qword_ptr(DATA))?;
        a.fsubp(st1, st0)?;
        a.fistp(dword_ptr(DATA + 16))?;
        a.wait()?;
        a.fninit()
    });
    assert_eq!(vector(&cpu), None);
    assert_eq!(cpu.mem.read_u32(DATA + 16), 0);
}

#[test]
fn fnsave_frstor_round_trip() {
    let mut cpu = machine();
    run(&mut cpu, |a| {
        a.fninit()?;
        a.fldpi()?;
        a.fld1()?;
        a.fldz()?;
        a.fdiv_2(st0, st1)?; // 0 / 1
        a.fld1()?;
        a.fdiv_2(st0, st3)?; // 1 / π: inexact, PE
        a.fnsave(ptr(DATA))?;
        a.fld1()?; // after FNSAVE the FPU is initialized: this goes to R7
        a.frstor(ptr(DATA))
    });
    assert_eq!(vector(&cpu), None);
    let f = &cpu.fpu;
    assert_eq!(f.top(), 4);
    assert_eq!(f.st(3), F80 { se: 0x4000, sig: 0xC90F_DAA2_2168_C235 });
    assert_eq!(f.st(2), F80::ONE);
    assert_eq!(f.st(1), F80::ZERO);
    assert_eq!(f.status() & exc::PE, exc::PE);
    // 94-byte image: the control word, then ST(0) at offset 14.
    assert_eq!(cpu.mem.read_u16(DATA), 0x037F);
    assert_eq!(cpu.mem.read_u16(DATA + 14 + 8), 0x3FFD); // 1/π = 0.318… = 1.27… × 2^-2
}

#[test]
fn unmasked_exception_is_reported_by_the_next_waiting_instruction() {
    // CR0.NE = 1: #MF (vector 16) at the FWAIT after the division by zero, not at the FDIV.
    let mut cpu = machine();
    cpu.state.cr[0] |= cr0::NE;
    cpu.mem.write_u16(DATA, 0x037B); // ZE unmasked
    run(&mut cpu, |a| {
        a.fninit()?;
        a.fldcw(word_ptr(DATA))?;
        a.fld1()?;
        a.fldz()?;
        a.fdivp(st1, st0)?;
        a.nop()?;
        a.wait()
    });
    assert_eq!(vector(&cpu), Some(16));
    let ip = cpu.mem.read_u16(cpu.state.regs[gpr::ESP]);
    assert_eq!(u32::from(ip), CODE + 2 + 4 + 2 + 2 + 2 + 1, "#MF points at the FWAIT");
    // The destination was left alone (pre-computation exception): both operands still there.
    assert_eq!(cpu.fpu.top(), 6);
    assert_eq!(cpu.fpu.st(0), F80::ZERO);
    assert_eq!(cpu.fpu.status() & 0x80FF, 0x8000 | 0x80 | exc::ZE);
    assert!(!cpu.fpu.ferr());
    // FIP points at the FDIVP, FOP = DE F9 → 6F9h.
    assert_eq!(cpu.fpu.fip, CODE + 2 + 4 + 2 + 2);
    assert_eq!(cpu.fpu.fop, 0x6F9);

    // CR0.NE = 0: FERR# instead, and the FWAIT completes.
    let mut cpu = machine();
    cpu.mem.write_u16(DATA, 0x037B);
    run(&mut cpu, |a| {
        a.fninit()?;
        a.fldcw(word_ptr(DATA))?;
        a.fld1()?;
        a.fldz()?;
        a.fdivp(st1, st0)?;
        a.fnstsw(ax)?; // non-waiting: no report
        a.wait()
    });
    assert_eq!(vector(&cpu), None);
    assert!(cpu.fpu.ferr());
    assert_eq!(cpu.state.regs[gpr::EAX] & 0xFF, 0x80 | u32::from(exc::ZE));
    // FNCLEX drops ES and FERR#.
    run(&mut cpu, |a| a.fnclex());
    assert!(!cpu.fpu.ferr());
}

#[test]
fn a_faulting_store_leaves_the_fpu_unchanged() {
    // FSTP m80 at DS:FFFAh runs past the 64 KiB limit: #GP, and the stack is not popped.
    let mut cpu = machine();
    run(&mut cpu, |a| {
        a.fninit()?;
        a.fld1()?;
        a.fstp(tword_ptr(0xFFFAu32))
    });
    assert_eq!(vector(&cpu), Some(13));
    assert_eq!((cpu.fpu.top(), cpu.fpu.st(0)), (7, F80::ONE));
    assert!(!cpu.fpu.is_empty(0));
    // FIP/FOP still describe the FLD1 (D9 E8 → 1E8h).
    assert_eq!(cpu.fpu.fop, 0x1E8);
}

#[test]
fn stack_overflow_sets_ie_sf_and_c1() {
    let mut cpu = machine();
    run(&mut cpu, |a| {
        a.fninit()?;
        for _ in 0..9 {
            a.fld1()?;
        }
        a.fnstsw(ax)
    });
    let sw = cpu.state.regs[gpr::EAX] as u16;
    assert_eq!(sw & (exc::IE | exc::SF | 0x0200), exc::IE | exc::SF | 0x0200);
    assert_eq!(cpu.fpu.st(0), F80::INDEFINITE);
}
