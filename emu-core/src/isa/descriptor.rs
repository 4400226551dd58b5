//! Descriptor-table instructions of protected mode: LLDT, SLDT, LTR, STR, LAR, LSL, VERR, VERW,
//! ARPL (Intel SDM Vol. 2A/2B, the instruction pages of each; descriptor types per Vol. 3A
//! Table 3-2). None of them exists in real-address or virtual-8086 mode: there they are #UD.
//!
//! LAR with a 32-bit operand returns the access rights masked with 0x00F0FF00: the SDM leaves
//! bits 19:16 undefined, and bt86 clears them. SLDT and STR into a 32-bit register zero-extend.

use iced_x86::Instruction;

use super::operand::{read, write};
use super::Res;
use crate::cpu::protected::{sel_err, sys, Desc};
use crate::cpu::Cpu;
use crate::exception::Exception;
use crate::flags::Size;
use crate::io::PortIo;
use crate::state::{fl, Segment};

/// #UD outside protected mode (real-address and virtual-8086 mode).
fn protected_only(cpu: &Cpu) -> Res {
    if cpu.state.protected() && !cpu.state.v86() {
        Ok(())
    } else {
        Err(Exception::InvalidOpcode)
    }
}

/// #GP(0) outside ring 0.
fn ring0(cpu: &Cpu) -> Res {
    if cpu.state.cpl == 0 {
        Ok(())
    } else {
        Err(Exception::GeneralProtection(0))
    }
}

fn set_zf(cpu: &mut Cpu, on: bool) {
    let f = cpu.state.eflags();
    cpu.state.set_arith(if on { f | fl::ZF } else { f & !fl::ZF });
}

/// SLDT r/m16, r32: the LDTR selector.
pub fn sldt(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    protected_only(cpu)?;
    let v = u32::from(cpu.state.ldtr.selector);
    write(cpu, i, 0, v)
}

/// STR r/m16, r32: the task register's selector.
pub fn str_(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    protected_only(cpu)?;
    let v = u32::from(cpu.state.tr.selector);
    write(cpu, i, 0, v)
}

/// LLDT r/m16: loads LDTR from an LDT descriptor in the GDT; a null selector leaves LDTR
/// unusable.
pub fn lldt(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    protected_only(cpu)?;
    ring0(cpu)?;
    let sel = read(cpu, i, 0)? as u16;
    if sel & !3 == 0 {
        cpu.state.ldtr = Segment { selector: sel, ..Segment::default() };
        return Ok(());
    }
    let gp = Exception::GeneralProtection(sel_err(sel));
    if sel & 4 != 0 {
        return Err(gp);
    }
    let d = cpu.fetch_descriptor(sel)?.ok_or(gp)?;
    if d.code_or_data() || d.typ() != sys::LDT {
        return Err(gp);
    }
    if !d.present() {
        return Err(Exception::SegmentNotPresent(sel_err(sel)));
    }
    cpu.state.ldtr = d.cache(sel);
    Ok(())
}

/// LTR r/m16: loads TR from an available TSS descriptor in the GDT and marks it busy.
pub fn ltr(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    protected_only(cpu)?;
    ring0(cpu)?;
    let sel = read(cpu, i, 0)? as u16;
    if sel & !3 == 0 {
        return Err(Exception::GeneralProtection(0));
    }
    let gp = Exception::GeneralProtection(sel_err(sel));
    if sel & 4 != 0 {
        return Err(gp);
    }
    let d = cpu.fetch_descriptor(sel)?.ok_or(gp)?;
    if d.code_or_data() || !matches!(d.typ(), sys::TSS16 | sys::TSS32) {
        return Err(gp);
    }
    if !d.present() {
        return Err(Exception::SegmentNotPresent(sel_err(sel)));
    }
    let busy = Desc { lo: d.lo, hi: d.hi | (1 << 9) };
    if let Some(at) = cpu.descriptor_address(sel) {
        cpu.write_sys(at.wrapping_add(4), Size::D, busy.hi)?;
    }
    cpu.state.tr = busy.cache(sel);
    Ok(())
}

/// The descriptor `sel` names if the current privilege may see it (the visibility rule shared by
/// LAR, LSL, VERR and VERW), with the system types `system_ok` accepts.
fn visible(cpu: &mut Cpu, sel: u16, system_ok: fn(u32) -> bool) -> Result<Option<Desc>, Exception> {
    if sel & !3 == 0 {
        return Ok(None);
    }
    let Some(d) = cpu.fetch_descriptor(sel)? else { return Ok(None) };
    if !d.code_or_data() && !system_ok(d.typ()) {
        return Ok(None);
    }
    let cpl = cpu.state.cpl;
    let rpl = (sel & 3) as u8;
    let seen = d.conforming() || (d.dpl() >= cpl && d.dpl() >= rpl);
    Ok(seen.then_some(d))
}

/// LAR r, r/m16: access rights of a visible descriptor, ZF = 1; otherwise ZF = 0.
pub fn lar(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    protected_only(cpu)?;
    let sel = read(cpu, i, 1)? as u16;
    let ok = |t: u32| matches!(t, 1 | 2 | 3 | 4 | 5 | 9 | 11 | 12);
    match visible(cpu, sel, ok)? {
        Some(d) => {
            let mask = if super::operand::osize(i) == Size::D { 0x00F0_FF00 } else { 0xFF00 };
            write(cpu, i, 0, d.hi & mask)?;
            set_zf(cpu, true);
        }
        None => set_zf(cpu, false),
    }
    Ok(())
}

/// LSL r, r/m16: the byte-granular limit of a visible descriptor, ZF = 1; otherwise ZF = 0.
pub fn lsl(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    protected_only(cpu)?;
    let sel = read(cpu, i, 1)? as u16;
    let ok = |t: u32| matches!(t, 1 | 2 | 3 | 9 | 11);
    match visible(cpu, sel, ok)? {
        Some(d) => {
            let limit = d.cache(sel).limit;
            write(cpu, i, 0, limit)?;
            set_zf(cpu, true);
        }
        None => set_zf(cpu, false),
    }
    Ok(())
}

/// VERR r/m16 (readable) and VERW r/m16 (writable): ZF = 1 if the segment is visible and
/// allows that access.
pub fn verr_verw(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    protected_only(cpu)?;
    let sel = read(cpu, i, 0)? as u16;
    let write_check = i.mnemonic() == iced_x86::Mnemonic::Verw;
    let d = visible(cpu, sel, |_| false)?;
    let ok = d.is_some_and(|d| if write_check { d.writable() } else { d.readable() });
    set_zf(cpu, ok);
    Ok(())
}

/// ARPL r/m16, r16: raises the destination selector's RPL to the source's (ZF = 1 if it did).
pub fn arpl(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    protected_only(cpu)?;
    let dst = read(cpu, i, 0)? & 0xFFFF;
    let src = read(cpu, i, 1)? & 0xFFFF;
    if dst & 3 < src & 3 {
        write(cpu, i, 0, (dst & !3) | (src & 3))?;
        set_zf(cpu, true);
    } else {
        set_zf(cpu, false);
    }
    Ok(())
}
