//! Operand access shared by every handler: registers, immediates and memory operands as iced-x86
//! describes them, with effective-address computation per Intel SDM Vol. 2A §2.1.5
//! (16-bit and 32-bit addressing forms, Tables 2-1 and 2-2) and default segments per
//! Vol. 1 §3.7.4.

use iced_x86::{Instruction, OpKind, Register};

use crate::cpu::Cpu;
use crate::exception::Exception;
use crate::flags::Size;
use crate::state::{CpuState, SegReg};

/// Converts an iced segment register to ours.
#[inline]
pub fn sreg(r: Register) -> SegReg {
    match r {
        Register::ES => SegReg::Es,
        Register::CS => SegReg::Cs,
        Register::SS => SegReg::Ss,
        Register::FS => SegReg::Fs,
        Register::GS => SegReg::Gs,
        _ => SegReg::Ds,
    }
}

/// Reads a general, segment, control or debug register.
#[inline]
pub fn get_reg(s: &CpuState, r: Register) -> u32 {
    if r.is_gpr8() {
        u32::from(s.reg8(r.number()))
    } else if r.is_gpr16() {
        s.regs[r.number()] & 0xFFFF
    } else if r.is_gpr32() {
        s.regs[r.number()]
    } else if r.is_segment_register() {
        u32::from(s.seg(sreg(r)).selector)
    } else {
        0
    }
}

/// Writes a general register (16-bit writes keep the upper half of the 32-bit register).
#[inline]
pub fn set_reg(s: &mut CpuState, r: Register, v: u32) {
    if r.is_gpr8() {
        s.set_reg8(r.number(), v as u8);
    } else if r.is_gpr16() {
        s.set_reg16(r.number(), v as u16);
    } else if r.is_gpr32() {
        s.regs[r.number()] = v;
    }
}

/// Size of a register in our operand-size terms.
#[inline]
pub fn reg_size(r: Register) -> Size {
    Size::from_bytes(r.size())
}

/// True when the memory operand uses 16-bit addressing.
#[inline]
pub fn addr16(i: &Instruction) -> bool {
    let base = i.memory_base();
    if base != Register::None {
        return base.is_gpr16();
    }
    let index = i.memory_index();
    if index != Register::None {
        return index.is_gpr16();
    }
    i.memory_displ_size() == 2
}

/// Effective address (offset in the segment) of the instruction's memory operand.
#[inline]
pub fn ea(s: &CpuState, i: &Instruction) -> u32 {
    let mut a = i.memory_displacement32();
    let base = i.memory_base();
    if base != Register::None {
        a = a.wrapping_add(get_reg(s, base));
    }
    let index = i.memory_index();
    if index != Register::None {
        a = a.wrapping_add(get_reg(s, index) << (i.memory_index_scale().trailing_zeros()));
    }
    if addr16(i) {
        a & 0xFFFF
    } else {
        a
    }
}

/// The segment of the instruction's memory operand (override or default).
#[inline]
pub fn mem_seg(i: &Instruction) -> SegReg {
    sreg(i.memory_segment())
}

/// Size of operand `n`.
#[inline]
pub fn op_size(i: &Instruction, n: u32) -> Size {
    match i.op_kind(n) {
        OpKind::Register => reg_size(i.op_register(n)),
        OpKind::Immediate8 => Size::B,
        OpKind::Immediate16 | OpKind::Immediate8to16 => Size::W,
        OpKind::Immediate32 | OpKind::Immediate8to32 => Size::D,
        _ => Size::from_bytes(i.memory_size().size()),
    }
}

/// Reads operand `n` (register, immediate or memory), masked to its size.
#[inline]
pub fn read(cpu: &mut Cpu, i: &Instruction, n: u32) -> Result<u32, Exception> {
    match i.op_kind(n) {
        OpKind::Register => Ok(get_reg(&cpu.state, i.op_register(n))),
        OpKind::Memory => {
            let size = Size::from_bytes(i.memory_size().size());
            let off = ea(&cpu.state, i);
            cpu.read(mem_seg(i), off, size)
        }
        OpKind::Immediate8to16 => Ok(u32::from(i.immediate8to16() as u16)),
        _ => Ok(i.immediate(n) as u32),
    }
}

/// Writes operand `n` (register or memory).
#[inline]
pub fn write(cpu: &mut Cpu, i: &Instruction, n: u32, v: u32) -> Result<(), Exception> {
    match i.op_kind(n) {
        OpKind::Register => {
            set_reg(&mut cpu.state, i.op_register(n), v);
            Ok(())
        }
        _ => {
            let size = Size::from_bytes(i.memory_size().size());
            let off = ea(&cpu.state, i);
            cpu.write(mem_seg(i), off, size, v)
        }
    }
}

/// For a memory operand `n`, checks that it may be written; registers always may.
#[inline]
pub fn check_write(cpu: &mut Cpu, i: &Instruction, n: u32) -> Result<(), Exception> {
    if i.op_kind(n) == OpKind::Memory {
        let size = Size::from_bytes(i.memory_size().size());
        cpu.check_write(mem_seg(i), ea(&cpu.state, i), size)
    } else {
        Ok(())
    }
}

/// Operand size of the instruction as a whole, from operand 0 (or 16/32 from the code).
#[inline]
pub fn osize(i: &Instruction) -> Size {
    op_size(i, 0)
}

/// Masks `v` to the address size of a string or stack-relative instruction.
#[inline]
pub fn mask_addr(v: u32, a32: bool) -> u32 {
    if a32 {
        v
    } else {
        v & 0xFFFF
    }
}
