//! Self-checking real-mode test programs.
//!
//! Each program runs many checks. A check computes a value with the instruction under test,
//! compares it with a constant, and prints `ok N - name` or `not ok N - name (got …, want …)`
//! on the debug console; the program ends by writing 0 (all passed) or 1 to isa-debug-exit,
//! so the exit status is 1 for a pass and 3 for a failure, in bt86 and in QEMU alike.
//!
//! The expected constants are worked out by hand from the Intel SDM (Vol. 2, each
//! instruction's Operation and Flags Affected sections; Vol. 3, 20.1.4 for real-mode
//! exceptions and interrupts) and written down with the arithmetic in comments where it is not
//! obvious; none was taken from an emulator. A check only looks at flags the SDM defines for
//! the instruction: masks from `asm::flags` leave out the undefined ones (AF after logic ops
//! and shifts, OF after multi-bit shifts, SF/ZF/AF/PF after MUL, …).

mod alu;
mod bcd_misc;
mod exceptions;
mod muldiv;
mod shifts;
mod stack_control;
mod strings;

use iced_x86::code_asm::*;

use crate::asm::{build_image, Asm, Program};
use crate::Image;

/// Emits the checks of one program.
type Body = fn(&mut Program) -> Asm;

/// The programs: name, description, checks.
const PROGRAMS: [(&str, &str, Body); 8] = [
    (
        "alu",
        "ADD/ADC/SUB/SBB/CMP/INC/DEC/NEG/logic flags, SETcc, CMOVcc, XADD, CMPXCHG(8B), MOVZX/MOVSX, BSWAP",
        alu::run,
    ),
    ("shifts", "SHL/SHR/SAR, ROL/ROR/RCL/RCR, SHLD/SHRD, BT/BTS/BTR/BTC, BSF/BSR", shifts::run),
    ("muldiv", "MUL, IMUL (one, two and three operands), DIV, IDIV, CBW/CWD/CWDE/CDQ", muldiv::run),
    (
        "strings",
        "MOVS/STOS/LODS/CMPS/SCAS with and without REP, DF=0 and 1, overrides, 32-bit addressing",
        strings::run,
    ),
    (
        "stack-control",
        "PUSH/POP, PUSHA/POPA(D), ENTER/LEAVE, near/far/indirect CALL and RET, IRET, LOOPcc, JCXZ, POPF",
        stack_control::run,
    ),
    (
        "bcd-misc",
        "DAA/DAS/AAA/AAS/AAM/AAD, LAHF/SAHF, XLAT, CPUID, LEA, 16/32-bit addressing and default segments",
        bcd_misc::run,
    ),
    (
        "exceptions",
        "real-mode faults and traps through the IVT: #DE, #UD, #BR, INTO, INT3, INT n, #SS, #GP",
        exceptions::run,
    ),
    (
        "divide-overflow",
        "IDIV of the most negative dividend by -1 raises #DE (16 and 32 bit)",
        exceptions::divide_overflow,
    ),
];

/// Every self-test image.
pub fn self_tests() -> Vec<Image> {
    PROGRAMS
        .iter()
        .map(|&(name, description, body)| {
            build_image(name, description, |p| {
                p.begin_tests(name)?;
                body(p)?;
                p.end_tests(name)
            })
            .unwrap_or_else(|e| panic!("self-test {name} does not assemble: {e}"))
        })
        .collect()
}

/// Stores `bytes` at offset `addr` of DS (which the tests keep at 0 unless they say otherwise).
fn store(a: &mut CodeAssembler, addr: u32, bytes: &[u8]) -> Asm {
    let mut at = addr;
    for chunk in bytes.chunks(4) {
        match *chunk {
            [b0, b1, b2, b3] => a.mov(dword_ptr(at), u32::from_le_bytes([b0, b1, b2, b3]))?,
            [b0, b1, b2] => {
                a.mov(word_ptr(at), u32::from(u16::from_le_bytes([b0, b1])))?;
                a.mov(byte_ptr(at + 2), u32::from(b2))?;
            }
            [b0, b1] => a.mov(word_ptr(at), u32::from(u16::from_le_bytes([b0, b1])))?,
            [b0] => a.mov(byte_ptr(at), u32::from(b0))?,
            _ => unreachable!("chunks(4) yields 1 to 4 bytes"),
        }
        at += chunk.len() as u32;
    }
    Ok(())
}

/// Loads FLAGS with `value` (PUSH imm16; POPF). Keep IF, TF and DF clear in `value`.
fn set_flags(a: &mut CodeAssembler, value: u32) -> Asm {
    a.push(value)?;
    a.popf()
}
