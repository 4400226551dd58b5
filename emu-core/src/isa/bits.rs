//! Bit test and scan: BT BTS BTR BTC, BSF BSR (Intel SDM Vol. 2A, "BT", "BTS", "BTR", "BTC",
//! "BSF", "BSR").
//!
//! With a register bit offset and a memory operand the offset is signed and may address memory
//! outside the operand (SDM Vol. 2A §3.1.1.9 "bit base, bit offset"). Undefined flags (OF SF AF
//! PF after BTx; CF OF SF AF PF after BSF/BSR) are left unchanged; BSF/BSR with a zero source
//! leave the destination unchanged, as P6 processors do.

use iced_x86::{Instruction, Mnemonic, OpKind};

use super::operand::{self, addr16, ea, mem_seg, read, write};
use super::Res;
use crate::cpu::Cpu;
use crate::io::PortIo;
use crate::state::fl;

/// The value after BTS/BTR/BTC sets, clears or flips `bit` (BT leaves it).
fn modify(op: Mnemonic, v: u32, bit: u32) -> u32 {
    match op {
        Mnemonic::Bts => v | (1 << bit),
        Mnemonic::Btr => v & !(1 << bit),
        Mnemonic::Btc => v ^ (1 << bit),
        _ => v,
    }
}

/// BT, BTS, BTR, BTC.
pub fn bt(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let size = operand::osize(i);
    let bits = size.bits();
    let offset = read(cpu, i, 1)?;
    let op = i.mnemonic();
    let (old, bit) = if i.op0_kind() == OpKind::Memory && i.op1_kind() == OpKind::Register {
        let signed = size.sext(offset) as i32;
        let unit = signed.div_euclid(bits as i32);
        let bit = signed.rem_euclid(bits as i32) as u32;
        let mut off = ea(&cpu.state, i).wrapping_add((unit * size.bytes() as i32) as u32);
        if addr16(i) {
            off &= 0xFFFF;
        }
        let seg = mem_seg(i);
        let v = cpu.read(seg, off, size)?;
        let new = modify(op, v, bit);
        if op != Mnemonic::Bt {
            cpu.write(seg, off, size, new)?;
        }
        (v, bit)
    } else {
        let bit = offset & (bits - 1);
        let v = read(cpu, i, 0)?;
        let new = modify(op, v, bit);
        if op != Mnemonic::Bt {
            write(cpu, i, 0, new)?;
        }
        (v, bit)
    };
    let f = cpu.state.eflags() & !fl::CF;
    cpu.state.set_arith(f | ((old >> bit) & 1));
    Ok(())
}

/// BSF and BSR: ZF = (source == 0); otherwise the index of the lowest/highest set bit.
pub fn bsf_bsr(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let src = read(cpu, i, 1)?;
    let f = cpu.state.eflags();
    if src == 0 {
        cpu.state.set_arith(f | fl::ZF);
        return Ok(());
    }
    let idx = if matches!(i.mnemonic(), Mnemonic::Bsf | Mnemonic::Tzcnt) {
        src.trailing_zeros()
    } else {
        31 - src.leading_zeros()
    };
    write(cpu, i, 0, idx)?;
    cpu.state.set_arith(f & !fl::ZF);
    Ok(())
}
