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

// ---------------------------------------------------------------------------------------------
// What the shared pm-fpu kernel leaves out because QEMU 7.2 disagrees with the SDM there.

/// The status word after the program (FNSTSW AX as its last instruction).
fn status(cpu: &Cpu) -> u16 {
    cpu.state.regs[gpr::EAX] as u16
}

const C1: u16 = 1 << 9;
const C0: u16 = 1 << 8;
const C2: u16 = 1 << 10;
const C3: u16 = 1 << 14;

#[test]
fn c1_tells_whether_the_result_was_rounded_up() {
    // SDM Vol. 1 §8.1.3.1 and §4.9.1.6: with PE set, C1 = 1 means the result was rounded up.
    let mut cpu = machine();
    run(&mut cpu, |a| {
        a.fninit()?;
        a.fld1()?;
        a.mov(word_ptr(DATA), 3u32)?;
        a.fidiv(word_ptr(DATA))?; // 1/3 rounds up to …AAAB
        a.fnstsw(ax)
    });
    assert_eq!(status(&cpu) & (C1 | exc::PE), C1 | exc::PE);
    let mut cpu = machine();
    run(&mut cpu, |a| {
        a.fninit()?;
        a.fld1()?;
        a.mov(word_ptr(DATA), 7u32)?;
        a.fidiv(word_ptr(DATA))?; // 1/7 = 1.001001…b × 2^-3 rounds down (…9249)
        a.fnstsw(ax)
    });
    assert_eq!(status(&cpu) & (C1 | exc::PE), exc::PE);
}

#[test]
fn loading_a_single_denormal_raises_de() {
    let mut cpu = machine();
    cpu.mem.write_u32(DATA, 1);
    run(&mut cpu, |a| {
        a.fninit()?;
        a.fld(dword_ptr(DATA))?;
        a.fnstsw(ax)
    });
    assert_eq!(status(&cpu) & exc::DE, exc::DE);
    assert_eq!(cpu.fpu.st(0), F80 { se: 0x3FFF - 149, sig: 1 << 63 });
}

#[test]
fn stack_underflow_writes_the_indefinite_with_c1_clear() {
    let mut cpu = machine();
    run(&mut cpu, |a| {
        a.fninit()?;
        a.fld1()?;
        a.fadd_2(st0, st1)?;
        a.fnstsw(ax)
    });
    assert_eq!(status(&cpu) & (exc::IE | exc::SF | C1), exc::IE | exc::SF);
    assert_eq!(cpu.fpu.st(0), F80::INDEFINITE);
}

#[test]
fn fnstenv_masks_every_exception_afterwards() {
    let mut cpu = machine();
    cpu.mem.write_u16(DATA, 0x0360);
    run(&mut cpu, |a| {
        a.fninit()?;
        a.fldcw(word_ptr(DATA))?;
        a.fnstenv(ptr(DATA + 0x10))
    });
    assert_eq!(cpu.mem.read_u16(DATA + 0x10), 0x0360);
    assert_eq!(cpu.fpu.cw & 0x3F, 0x3F);
}

#[test]
fn every_waiting_instruction_reports_a_pending_exception() {
    // SDM Vol. 1 §8.6: not only FWAIT — FLD1 here, and an FLDCW that unmasks a set flag makes
    // it pending.
    let mut cpu = machine();
    cpu.state.cr[0] |= cr0::NE;
    cpu.mem.write_u16(DATA, 0x035F); // PE unmasked
    run(&mut cpu, |a| {
        a.fninit()?;
        a.fld1()?;
        a.mov(word_ptr(DATA + 2), 3u32)?;
        a.fidiv(word_ptr(DATA + 2))?; // PE while masked: nothing pending
        a.fldcw(word_ptr(DATA))?; // unmasks PE: pending
        a.fld1()
    });
    assert_eq!(vector(&cpu), Some(16));
    assert_eq!(cpu.fpu.top(), 7, "the FLD1 did not run");
}

#[test]
fn unmasked_invalid_operation_pops_nothing() {
    let mut cpu = machine();
    cpu.mem.write_u16(DATA, 0x037E);
    run(&mut cpu, |a| {
        a.fninit()?;
        a.fldcw(word_ptr(DATA))?;
        a.fldz()?;
        a.fldz()?;
        a.fdivp(st1, st0)?;
        a.fnstsw(ax)
    });
    assert_eq!(status(&cpu) & 0x3881, 0x3000 | 0x80 | exc::IE);
}

#[test]
fn precision_control_with_directed_rounding_and_a_double_operand() {
    // The double operand is converted exactly, then the quotient rounded once to 24 bits
    // (vectors from guest-images/tools/fpu_vectors.py: (2^-20 + 1) / (2^40 + 3)).
    for (cw, want) in [(0x047Fu16, 0x8000_0700_0000_0000u64), (0x087F, 0x8000_0800_0000_0000)] {
        let mut cpu = machine();
        cpu.mem.write_u16(DATA, cw);
        cpu.mem.load(u64::from(DATA + 8), &((1u64 << 40) + 3).to_le_bytes()).unwrap();
        cpu.mem.load(u64::from(DATA + 16), &(1.0f64 + 2f64.powi(-20)).to_bits().to_le_bytes()).unwrap();
        run(&mut cpu, |a| {
            a.fninit()?;
            a.fldcw(word_ptr(DATA))?;
            a.fild(qword_ptr(DATA + 8))?;
            a.fst(qword_ptr(DATA + 8))?; // 2^40 + 3 as a double
            a.fstp(st0)?;
            a.fld(qword_ptr(DATA + 16))?;
            a.fdiv(qword_ptr(DATA + 8))
        });
        assert_eq!(cpu.fpu.st(0), F80 { se: 0x3FD7, sig: want }, "cw {cw:#x}");
    }
}

#[test]
fn fprem1_quotient_bits_and_the_fsin_range_limit() {
    let mut cpu = machine();
    cpu.mem.write_u32(DATA, 5);
    cpu.mem.write_u32(DATA + 4, 18);
    run(&mut cpu, |a| {
        a.fninit()?;
        a.fild(dword_ptr(DATA))?;
        a.fild(dword_ptr(DATA + 4))?;
        a.fprem1()?; // 18 = 4·5 − 2: q = 100b → C0
        a.fnstsw(ax)
    });
    assert_eq!(status(&cpu) & (C0 | C1 | C2 | C3), C0);
    // |x| = 2^63 exactly is out of range: C2 = 1, ST(0) unchanged.
    let mut cpu = machine();
    cpu.mem.load(u64::from(DATA), &F80 { se: 0x403E, sig: 1 << 63 }.to_bytes()).unwrap();
    run(&mut cpu, |a| {
        a.fninit()?;
        a.fld(tword_ptr(DATA))?;
        a.fsin()?;
        a.fnstsw(ax)
    });
    assert_eq!(status(&cpu) & C2, C2);
    assert_eq!(cpu.fpu.st(0), F80 { se: 0x403E, sig: 1 << 63 });
}
