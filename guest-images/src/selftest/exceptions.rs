//! Self-test "exceptions": real-mode exceptions and software interrupts delivered through the
//! interrupt vector table (SDM Vol. 3, 6.4 and 20.1.4; Vol. 2 for each instruction's
//! real-address-mode exceptions).
//!
//! The program points vectors 0 (#DE), 3 (#BP), 4 (#OF), 5 (#BR), 6 (#UD), 12 (#SS), 13 (#GP)
//! and 40h at small stubs that record the vector and the CS, IP and FLAGS image the processor
//! pushed. Faults push the address of the faulting instruction (and must leave its
//! destination unchanged), so the handler moves the return address to a resume point the test
//! gave it; traps and INT n push the address of the next instruction and return there as is.
//!
//! In real mode the segment limits still apply (64 KiB after reset): a word read at offset
//! FFFFh, or at any offset beyond the limit with 32-bit addressing, raises #GP (#SS for a
//! stack-segment access) instead of wrapping (SDM Vol. 3, 20.1.1; Vol. 2, MOV, "Real-Address
//! Mode Exceptions").

use iced_x86::code_asm::*;

use crate::asm::flags::*;
use crate::asm::{Asm, Mem16, Program, SCRATCH};

/// Scratch memory (shorthand).
const S: u32 = SCRATCH;

/// What the handler records, and where it resumes (0: return as pushed). Words in segment 0.
const EXC_VECTOR: u32 = 0x0530;
const EXC_IP: u32 = 0x0532;
const EXC_CS: u32 = 0x0534;
const EXC_FLAGS: u32 = 0x0536;
const EXC_RESUME: u32 = 0x0538;
/// AX right after the instruction under test (saved at the resume point).
const EXC_AX: u32 = 0x053A;
/// EXC_VECTOR when nothing was delivered.
const NONE: u32 = 0xFFFF;

/// The vectors the program handles.
const VECTORS: [u32; 8] = [0, 3, 4, 5, 6, 12, 13, 0x40];

/// Fills the IVT entries of [`VECTORS`] with stubs that record the event.
fn install_handlers(p: &mut Program) -> Asm {
    let mut over = p.label();
    let mut common = p.label();
    let mut keep = p.label();
    let mut stubs = Vec::new();
    p.a.jmp(over)?;
    for vector in VECTORS {
        let mut stub = p.label();
        p.bind(&mut stub)?;
        p.a.push(ax)?;
        p.a.mov(al, vector)?;
        p.a.jmp(common)?;
        stubs.push((vector, stub));
    }
    // [bp+2] = the stub's AX, then the interrupt frame: [bp+4] IP, [bp+6] CS, [bp+8] FLAGS.
    p.bind(&mut common)?;
    p.a.push(bp)?;
    p.a.mov(bp, sp)?;
    p.a.xor(ah, ah)?;
    p.a.mov(word_ptr(EXC_VECTOR).cs(), ax)?;
    for (offset, slot) in [(4, EXC_IP), (6, EXC_CS), (8, EXC_FLAGS)] {
        p.a.mov(ax, word_ptr(bp + offset))?;
        p.a.mov(word_ptr(slot).cs(), ax)?;
    }
    p.a.mov(ax, word_ptr(EXC_RESUME).cs())?;
    p.a.test(ax, ax)?;
    p.a.jz(keep)?;
    p.a.mov(word_ptr(bp + 4), ax)?;
    p.bind(&mut keep)?;
    p.a.pop(bp)?;
    p.a.pop(ax)?;
    p.a.iret()?;
    p.bind(&mut over)?;

    for (vector, stub) in stubs {
        let address = p.addr(stub);
        p.a.mov(word_ptr(vector * 4), address)?;
        p.a.mov(word_ptr(vector * 4 + 2), 0)?;
    }
    Ok(())
}

/// What the instruction under test should raise.
#[derive(Clone, Copy)]
enum Expect {
    /// Nothing.
    Nothing,
    /// A fault: the pushed IP is the instruction's own address.
    Fault(u32),
    /// A trap or INT n: the pushed IP is the next instruction's.
    Trap(u32),
}

/// Runs `setup`, then the single instruction `instruction`, and checks what was delivered.
/// AX as it was right after the instruction (or the fault) is left in [`EXC_AX`].
fn case(
    p: &mut Program,
    name: &str,
    expect: Expect,
    setup: impl FnOnce(&mut CodeAssembler) -> Asm,
    instruction: impl FnOnce(&mut CodeAssembler) -> Asm,
) -> Asm {
    let mut at = p.label();
    let mut resume = p.label();
    let resume_addr = p.addr(resume);
    let at_addr = p.addr(at);
    p.a.mov(word_ptr(EXC_VECTOR), NONE)?;
    p.a.mov(word_ptr(EXC_RESUME), resume_addr)?;
    setup(&mut p.a)?;
    p.bind(&mut at)?;
    instruction(&mut p.a)?;
    p.bind(&mut resume)?;
    p.a.mov(word_ptr(EXC_AX).cs(), ax)?;
    let (vector, pushed_ip, kind) = match expect {
        Expect::Nothing => return p.check(Mem16(EXC_VECTOR), NONE, &format!("{name}: no exception")),
        Expect::Fault(vector) => (vector, at_addr, "fault: pushed ip is the instruction's"),
        Expect::Trap(vector) => (vector, resume_addr, "trap: pushed ip is the next instruction's"),
    };
    p.check(Mem16(EXC_VECTOR), vector, &format!("{name}: vector {vector:#x}"))?;
    p.check(Mem16(EXC_IP), pushed_ip, &format!("{name}: {kind}"))?;
    p.check(Mem16(EXC_CS), 0, &format!("{name}: pushed cs"))
}

/// The program "divide-overflow": IDIV of the most negative dividend by -1, whose quotient
/// (+2^31, +2^63) does not fit, raises #DE. Kept apart from "exceptions" because a host that
/// computes the quotient with its own division traps on exactly these operands (QEMU 7.2 dies
/// of SIGFPE on them), and one such crash should not hide the other checks.
pub(super) fn divide_overflow(p: &mut Program) -> Asm {
    install_handlers(p)?;
    case(
        p,
        "idiv16 80000000h/-1",
        Expect::Fault(0),
        |a| {
            a.mov(dx, 0x8000)?;
            a.mov(ax, 0)?;
            a.mov(cx, 0xFFFF)
        },
        |a| a.idiv(cx),
    )?;
    p.check(Mem16(EXC_AX), 0, "idiv16 80000000h/-1 leaves ax")?;
    case(
        p,
        "idiv32 8000000000000000h/-1",
        Expect::Fault(0),
        |a| {
            a.mov(edx, 0x8000_0000u32)?;
            a.xor(eax, eax)?;
            a.mov(ecx, -1)
        },
        |a| a.idiv(ecx),
    )
}

pub(super) fn run(p: &mut Program) -> Asm {
    install_handlers(p)?;
    divide_errors(p)?;
    invalid_opcodes(p)?;
    bound(p)?;
    interrupts(p)?;
    limits(p)
}

fn divide_errors(p: &mut Program) -> Asm {
    case(
        p,
        "div8 by zero",
        Expect::Fault(0),
        |a| {
            a.mov(ax, 5)?;
            a.mov(bl, 0)
        },
        |a| a.div(bl),
    )?;
    p.check(Mem16(EXC_AX), 5, "div8 by zero leaves ax")?;

    // 1000h / 10h = 100h does not fit in AL.
    case(
        p,
        "div8 quotient 100h",
        Expect::Fault(0),
        |a| {
            a.mov(ax, 0x1000)?;
            a.mov(bl, 0x10)
        },
        |a| a.div(bl),
    )?;
    p.check(Mem16(EXC_AX), 0x1000, "div8 quotient overflow leaves ax")?;

    // -32768 / -1 = +32768 does not fit in AL.
    case(
        p,
        "idiv8 8000h/-1",
        Expect::Fault(0),
        |a| {
            a.mov(ax, 0x8000)?;
            a.mov(bl, 0xFF)
        },
        |a| a.idiv(bl),
    )?;

    // 400000h / 2 = 200000h does not fit in AX.
    case(
        p,
        "idiv16 400000h/2",
        Expect::Fault(0),
        |a| {
            a.mov(dx, 0x0040)?;
            a.mov(ax, 0)?;
            a.mov(cx, 2)
        },
        |a| a.idiv(cx),
    )?;

    case(
        p,
        "div32 by zero",
        Expect::Fault(0),
        |a| {
            a.xor(edx, edx)?;
            a.mov(eax, 1)?;
            a.xor(ecx, ecx)
        },
        |a| a.div(ecx),
    )?;

    case(p, "aam 0", Expect::Fault(0), |a| a.mov(ax, 0x0012), |a| a.aam(0))?;
    p.check(Mem16(EXC_AX), 0x0012, "aam 0 leaves ax")
}

fn invalid_opcodes(p: &mut Program) -> Asm {
    case(p, "ud2", Expect::Fault(6), |_| Ok(()), |a| a.ud2())?;
    // LOCK is only allowed on read-modify-write instructions with a memory destination.
    case(p, "lock add ax,bx", Expect::Fault(6), |a| a.mov(ax, 1), |a| a.lock().add(ax, bx))?;
    p.check(Mem16(EXC_AX), 1, "lock add ax,bx leaves ax")
}

fn bound(p: &mut Program) -> Asm {
    // Bounds [10, 20] at S; both ends are inside.
    p.a.mov(word_ptr(S), 10)?;
    p.a.mov(word_ptr(S + 2), 20)?;
    p.a.mov(bx, S)?;
    for (index, expect) in [
        (25, Expect::Fault(5)),
        (5, Expect::Fault(5)),
        (15, Expect::Nothing),
        (10, Expect::Nothing),
        (20, Expect::Nothing),
    ] {
        case(
            p,
            &format!("bound {index} in [10,20]"),
            expect,
            |a| a.mov(ax, index),
            |a| a.bound(ax, dword_ptr(bx)),
        )?;
    }
    Ok(())
}

fn interrupts(p: &mut Program) -> Asm {
    // 7F + 1 overflows: INTO traps.
    case(
        p,
        "into with OF",
        Expect::Trap(4),
        |a| {
            a.mov(al, 0x7F)?;
            a.add(al, 1)
        },
        |a| a.into(),
    )?;
    p.a.movzx(eax, word_ptr(EXC_FLAGS))?;
    p.a.and(eax, OF)?;
    p.check_eax(OF, "into with OF: pushed flags have OF")?;
    case(
        p,
        "into without OF",
        Expect::Nothing,
        |a| {
            a.mov(al, 1)?;
            a.add(al, 1)
        },
        |a| a.into(),
    )?;

    case(p, "int3 (cc)", Expect::Trap(3), |_| Ok(()), |a| a.int3())?;
    case(p, "int 3 (cd 03)", Expect::Trap(3), |_| Ok(()), |a| a.int(3))?;

    // The handler clears CF (TEST); IRET brings back the pushed FLAGS with CF set.
    case(p, "int 40h", Expect::Trap(0x40), |a| a.stc(), |a| a.int(0x40))?;
    p.check_flags(CF, CF, "iret after int 40h restores the pushed flags")
}

fn limits(p: &mut Program) -> Asm {
    case(
        p,
        "word read at ds:ffff",
        Expect::Fault(13),
        |a| {
            a.mov(bx, 0xFFFF)?;
            a.mov(ax, 0x1234)
        },
        |a| a.mov(ax, word_ptr(bx)),
    )?;
    p.check(Mem16(EXC_AX), 0x1234, "word read at ds:ffff leaves ax")?;

    case(
        p,
        "a32 read at ds:10000h",
        Expect::Fault(13),
        |a| {
            a.mov(ebx, 0x1_0000)?;
            a.mov(ax, 0x1234)
        },
        |a| a.mov(ax, word_ptr(ebx)),
    )?;

    case(
        p,
        "word read at ss:ffff",
        Expect::Fault(12),
        |a| {
            a.mov(bp, 0xFFFF)?;
            a.mov(ax, 0x1234)
        },
        |a| a.mov(ax, word_ptr(bp)),
    )?;

    // The last byte inside the limit is fine.
    case(p, "byte read at ds:ffff", Expect::Nothing, |a| a.mov(bx, 0xFFFF), |a| a.mov(al, byte_ptr(bx)))
}
