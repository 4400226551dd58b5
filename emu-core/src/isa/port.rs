//! Port I/O: IN, OUT (Intel SDM Vol. 2A "IN", Vol. 2B "OUT") and the I/O permission check of
//! Vol. 1 §19.5 (IOPL, then the TSS I/O permission bitmap) shared with INS/OUTS.

use iced_x86::{Instruction, OpKind};

use super::operand::{op_size, read, set_reg};
use super::Res;
use crate::cpu::{Access, Cpu};
use crate::exception::Exception;
use crate::flags::Size;
use crate::io::PortIo;
use crate::state::fl;

/// Checks that `size` bytes at `port` may be accessed at the current privilege: always in real
/// mode; in protected mode when CPL ≤ IOPL; otherwise (and always in virtual-8086 mode) every
/// bit for the ports in the 32-bit TSS's I/O permission bitmap must be clear.
pub fn check_io(cpu: &mut Cpu, port: u16, size: Size) -> Res {
    if !cpu.state.protected() {
        return Ok(());
    }
    let iopl = (cpu.state.eflags & fl::IOPL) >> 12;
    if !cpu.state.v86() && u32::from(cpu.state.cpl) <= iopl {
        return Ok(());
    }
    let gp = Exception::GeneralProtection(0);
    let tr = cpu.state.tr;
    // Only a 32-bit TSS (type 9, or 11 when busy, as the current one always is) has a bitmap.
    if !matches!(tr.attrs & 0xF, 0x9 | 0xB) || tr.limit < 0x67 {
        return Err(gp);
    }
    let map = cpu.read_lin(tr.base.wrapping_add(0x66), Size::W, Access::Read)?;
    let byte = map + u32::from(port / 8);
    if byte + 1 > tr.limit {
        return Err(gp);
    }
    let bits = cpu.read_lin(tr.base.wrapping_add(byte), Size::W, Access::Read)?;
    let mask = ((1u32 << size.bytes()) - 1) << (port % 8);
    if bits & mask != 0 {
        return Err(gp);
    }
    Ok(())
}

/// The port operand of IN/OUT: imm8 or DX.
fn port_of(cpu: &mut Cpu, i: &Instruction, n: u32) -> Result<u16, Exception> {
    Ok(match i.op_kind(n) {
        OpKind::Immediate8 => u16::from(i.immediate8()),
        _ => read(cpu, i, n)? as u16,
    })
}

/// IN AL/AX/EAX, imm8/DX.
pub fn in_(cpu: &mut Cpu, io: &mut dyn PortIo, i: &Instruction) -> Res {
    let size = op_size(i, 0);
    let port = port_of(cpu, i, 1)?;
    check_io(cpu, port, size)?;
    let v = io.io_read(port, size) & size.mask();
    set_reg(&mut cpu.state, i.op0_register(), v);
    Ok(())
}

/// OUT imm8/DX, AL/AX/EAX.
pub fn out(cpu: &mut Cpu, io: &mut dyn PortIo, i: &Instruction) -> Res {
    let size = op_size(i, 1);
    let port = port_of(cpu, i, 0)?;
    check_io(cpu, port, size)?;
    let v = read(cpu, i, 1)?;
    io.io_write(port, size, v);
    Ok(())
}
