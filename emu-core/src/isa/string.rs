//! String instructions: MOVS CMPS STOS LODS SCAS INS OUTS with REP, REPE and REPNE (Intel SDM
//! Vol. 2B "REP/REPE/REPZ/REPNE/REPNZ" and the page of each instruction).
//!
//! A repeated instruction runs a bounded batch of iterations per step (`Cpu::rep_batch`, 4,096
//! by default; 1 when comparing instruction by instruction with QEMU, which retires one iteration
//! at a time) and then, if it is not finished, leaves EIP on itself, so interrupts are taken between batches and the next step
//! continues where it stopped. Registers are committed after every iteration, so a fault in
//! iteration k leaves the state of iterations 0..k done and EIP on the instruction: exactly the
//! restartable behaviour of the hardware.

use iced_x86::{Instruction, Mnemonic, OpKind};

use super::operand::mem_seg;
use super::port::check_io;
use super::Res;
use crate::cpu::Cpu;
use crate::flags::{FlagOp, LazyFlags, Size};
use crate::io::PortIo;
use crate::state::{fl, gpr, SegReg};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Rep {
    None,
    Always,
    WhileEqual,
    WhileNotEqual,
}

/// Whether the instruction addresses through ESI/EDI (32-bit address size).
fn addr32(i: &Instruction) -> bool {
    (0..i.op_count()).any(|n| matches!(i.op_kind(n), OpKind::MemorySegESI | OpKind::MemoryESEDI))
}

/// Adds `delta` to a 16- or 32-bit index register according to the address size.
fn bump(cpu: &mut Cpu, reg: usize, delta: u32, a32: bool) {
    if a32 {
        cpu.state.regs[reg] = cpu.state.regs[reg].wrapping_add(delta);
    } else {
        let v = cpu.state.regs[reg].wrapping_add(delta) as u16;
        cpu.state.set_reg16(reg, v);
    }
}

fn index(cpu: &Cpu, reg: usize, a32: bool) -> u32 {
    if a32 {
        cpu.state.regs[reg]
    } else {
        cpu.state.regs[reg] & 0xFFFF
    }
}

/// Every string instruction, repeated or not.
pub fn string(cpu: &mut Cpu, io: &mut dyn PortIo, i: &Instruction) -> Res {
    let m = i.mnemonic();
    let a32 = addr32(i);
    let size = Size::from_bytes(i.memory_size().size());
    let compares = matches!(
        m,
        Mnemonic::Cmpsb
            | Mnemonic::Cmpsw
            | Mnemonic::Cmpsd
            | Mnemonic::Scasb
            | Mnemonic::Scasw
            | Mnemonic::Scasd
    );
    let rep = if compares {
        if i.has_repe_prefix() {
            Rep::WhileEqual
        } else if i.has_repne_prefix() {
            Rep::WhileNotEqual
        } else {
            Rep::None
        }
    } else if i.has_rep_prefix() || i.has_repne_prefix() {
        Rep::Always
    } else {
        Rep::None
    };
    let n = size.bytes() as u32;
    let delta = if cpu.state.eflags & fl::DF != 0 { n.wrapping_neg() } else { n };
    let src_seg = mem_seg(i);
    let port = cpu.state.regs[gpr::EDX] as u16;
    if matches!(
        m,
        Mnemonic::Insb
            | Mnemonic::Insw
            | Mnemonic::Insd
            | Mnemonic::Outsb
            | Mnemonic::Outsw
            | Mnemonic::Outsd
    ) {
        check_io(cpu, port, size)?;
    }
    let acc = cpu.state.regs[gpr::EAX] & size.mask();
    for _ in 0..cpu.rep_batch.max(1) {
        if rep != Rep::None && index(cpu, gpr::ECX, a32) == 0 {
            return Ok(());
        }
        let si = index(cpu, gpr::ESI, a32);
        let di = index(cpu, gpr::EDI, a32);
        match m {
            Mnemonic::Movsb | Mnemonic::Movsw | Mnemonic::Movsd => {
                let v = cpu.read(src_seg, si, size)?;
                cpu.write(SegReg::Es, di, size, v)?;
                bump(cpu, gpr::ESI, delta, a32);
                bump(cpu, gpr::EDI, delta, a32);
            }
            Mnemonic::Cmpsb | Mnemonic::Cmpsw | Mnemonic::Cmpsd => {
                let a = cpu.read(src_seg, si, size)?;
                let b = cpu.read(SegReg::Es, di, size)?;
                cpu.state.lazy = LazyFlags::set(FlagOp::Sub, size, a, b, a.wrapping_sub(b));
                bump(cpu, gpr::ESI, delta, a32);
                bump(cpu, gpr::EDI, delta, a32);
            }
            Mnemonic::Stosb | Mnemonic::Stosw | Mnemonic::Stosd => {
                cpu.write(SegReg::Es, di, size, acc)?;
                bump(cpu, gpr::EDI, delta, a32);
            }
            Mnemonic::Lodsb | Mnemonic::Lodsw | Mnemonic::Lodsd => {
                let v = cpu.read(src_seg, si, size)?;
                match size {
                    Size::B => cpu.state.set_reg8(0, v as u8),
                    Size::W => cpu.state.set_reg16(gpr::EAX, v as u16),
                    Size::D => cpu.state.regs[gpr::EAX] = v,
                }
                bump(cpu, gpr::ESI, delta, a32);
            }
            Mnemonic::Scasb | Mnemonic::Scasw | Mnemonic::Scasd => {
                let b = cpu.read(SegReg::Es, di, size)?;
                cpu.state.lazy = LazyFlags::set(FlagOp::Sub, size, acc, b, acc.wrapping_sub(b));
                bump(cpu, gpr::EDI, delta, a32);
            }
            Mnemonic::Insb | Mnemonic::Insw | Mnemonic::Insd => {
                // Check the destination before the port read: a read can have side effects.
                cpu.check_write(SegReg::Es, di, size)?;
                let v = io.io_read(port, size) & size.mask();
                cpu.write(SegReg::Es, di, size, v)?;
                bump(cpu, gpr::EDI, delta, a32);
            }
            _ => {
                // OUTS
                let v = cpu.read(src_seg, si, size)?;
                io.io_write(port, size, v);
                bump(cpu, gpr::ESI, delta, a32);
            }
        }
        if rep == Rep::None {
            return Ok(());
        }
        bump(cpu, gpr::ECX, u32::MAX, a32);
        let zf = cpu.state.eflags() & fl::ZF != 0;
        match rep {
            Rep::WhileEqual if !zf => return Ok(()),
            Rep::WhileNotEqual if zf => return Ok(()),
            _ => {}
        }
    }
    // Batch used up: run this instruction again (it resumes with the updated registers).
    if index(cpu, gpr::ECX, a32) != 0 {
        cpu.state.eip = cpu.insn_eip;
    }
    Ok(())
}
