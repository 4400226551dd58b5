//! String instructions: MOVS CMPS STOS LODS SCAS INS OUTS with REP, REPE and REPNE (Intel SDM
//! Vol. 2B "REP/REPE/REPZ/REPNE/REPNZ" and the page of each instruction).
//!
//! A repeated instruction runs a bounded batch of iterations per step (`Cpu::rep_batch`, 4,096
//! by default; 1 when comparing instruction by instruction with QEMU, which retires one iteration
//! at a time) and then, if it is not finished, leaves EIP on itself, so interrupts are taken between batches and the next step
//! continues where it stopped. Registers are committed after every iteration, so a fault in
//! iteration k leaves the state of iterations 0..k done and EIP on the instruction: exactly the
//! restartable behaviour of the hardware.
//!
//! REP MOVS and REP STOS going forward take the iterations that stay inside one page of the
//! source and of the destination in one run: segment checks and address translation once for
//! the run, then element by element on physical memory (so overlapping copies behave as the
//! element-by-element definition says). Whatever the run cannot take (a page or segment
//! boundary, a fault) goes element by element, so faults are reported exactly as before.

use iced_x86::{Instruction, Mnemonic, OpKind};

use super::operand::mem_seg;
use super::port::check_io;
use super::Res;
use crate::cpu::{Access, Cpu};
use crate::flags::{FlagOp, LazyFlags, Size};
use crate::io::PortIo;
use crate::memory::PAGE_SIZE;
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
    let bulk = rep == Rep::Always
        && a32
        && delta == n
        && matches!(
            m,
            Mnemonic::Movsb
                | Mnemonic::Movsw
                | Mnemonic::Movsd
                | Mnemonic::Stosb
                | Mnemonic::Stosw
                | Mnemonic::Stosd
        );
    let mut left = cpu.rep_batch.max(1);
    while left > 0 {
        if rep != Rep::None && index(cpu, gpr::ECX, a32) == 0 {
            return Ok(());
        }
        if bulk && left > 1 {
            let done = page_run(cpu, m, size, src_seg, acc, left);
            if done > 0 {
                left -= done;
                continue;
            }
        }
        left -= 1;
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
        if rep != Rep::Always {
            let zf = cpu.state.eflags() & fl::ZF != 0;
            match rep {
                Rep::WhileEqual if !zf => return Ok(()),
                Rep::WhileNotEqual if zf => return Ok(()),
                _ => {}
            }
        }
    }
    // Batch used up: run this instruction again (it resumes with the updated registers).
    if index(cpu, gpr::ECX, a32) != 0 {
        cpu.state.eip = cpu.insn_eip;
    }
    Ok(())
}

/// REP MOVS/STOS forward with 32-bit addresses: runs the iterations (at most `left`, at most
/// ECX) whose elements lie wholly inside the current page of the destination (and of the
/// source), after checking the segments and translating once. Returns how many it ran; 0 when
/// fewer than two fit or a check fails, and the caller then takes one element the slow way
/// (which raises any fault exactly).
fn page_run(cpu: &mut Cpu, m: Mnemonic, size: Size, src_seg: SegReg, acc: u32, left: u32) -> u32 {
    let n = size.bytes() as u32;
    let movs = matches!(m, Mnemonic::Movsb | Mnemonic::Movsw | Mnemonic::Movsd);
    let (si, di) = (cpu.state.regs[gpr::ESI], cpu.state.regs[gpr::EDI]);
    let in_page = |lin: u32| (PAGE_SIZE as u32 - (lin & (PAGE_SIZE as u32 - 1))) / n;
    let Ok(dl) = cpu.seg_linear(SegReg::Es, di, n, Access::Write) else { return 0 };
    let mut k = left.min(cpu.state.regs[gpr::ECX]).min(in_page(dl));
    let mut sl = 0;
    if movs {
        let Ok(l) = cpu.seg_linear(src_seg, si, n, Access::Read) else { return 0 };
        sl = l;
        k = k.min(in_page(sl));
    }
    if k < 2 {
        return 0;
    }
    let len = k * n;
    // The whole run inside both segments, with no wrap of the offsets.
    if di.checked_add(len).is_none() || cpu.seg_linear(SegReg::Es, di, len, Access::Write).is_err() {
        return 0;
    }
    if movs && (si.checked_add(len).is_none() || cpu.seg_linear(src_seg, si, len, Access::Read).is_err()) {
        return 0;
    }
    let user = cpu.user_mode();
    let Ok(dst) = cpu.translate(dl, Access::Write, user) else { return 0 };
    let src = if movs {
        match cpu.translate(sl, Access::Read, user) {
            Ok(p) => p,
            Err(_) => return 0,
        }
    } else {
        0
    };
    let done = if movs { cpu.mem.copy_run(dst, src, len) } else { cpu.mem.fill_run(dst, acc, n, k) };
    for j in 0..if done { 0 } else { k } {
        let v = if movs {
            let a = src.wrapping_add(j * n);
            match size {
                Size::B => u32::from(cpu.mem.read_u8(a)),
                Size::W => u32::from(cpu.mem.read_u16(a)),
                Size::D => cpu.mem.read_u32(a),
            }
        } else {
            acc
        };
        let a = dst.wrapping_add(j * n);
        match size {
            Size::B => cpu.mem.write_u8(a, v as u8),
            Size::W => cpu.mem.write_u16(a, v as u16),
            Size::D => cpu.mem.write_u32(a, v),
        }
    }
    cpu.state.regs[gpr::EDI] = di.wrapping_add(len);
    if movs {
        cpu.state.regs[gpr::ESI] = si.wrapping_add(len);
    }
    cpu.state.regs[gpr::ECX] -= k;
    k
}
