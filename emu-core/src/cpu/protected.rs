//! Protected-mode segmentation and control transfer: descriptors, segment-register loads with
//! every check, far JMP/CALL/RET through code segments and call gates, IRET, and interrupt and
//! exception delivery through the IDT, including stack switches from the TSS and entry to and
//! exit from virtual-8086 mode.
//!
//! Follows Intel SDM Vol. 3A §3.4–3.5 (selectors, descriptors), §5.5–5.8 (privilege checks,
//! call gates, stack switching, returns), §6.10–6.13 (IDT, gates, error codes), §20.2–20.3
//! (virtual-8086 mode), and the "Operation" sections of MOV, POP, JMP, CALL, RET, IRET and INT n
//! in Vol. 2.
//!
//! Every operation here either completes or raises its exception with the architectural state
//! unchanged: the state is snapshotted before and restored on error. Memory written before the
//! fault (stack pushes) stays written, as on hardware.

use crate::cpu::{Access, Cpu, IntKind};
use crate::exception::Exception;
use crate::flags::Size;
use crate::state::{fl, gpr, SegReg, Segment};

/// A raw 8-byte descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desc {
    /// Bytes 0–3.
    pub lo: u32,
    /// Bytes 4–7.
    pub hi: u32,
}

impl Desc {
    /// Present bit.
    pub fn present(&self) -> bool {
        self.hi & (1 << 15) != 0
    }

    /// Descriptor privilege level.
    pub fn dpl(&self) -> u8 {
        ((self.hi >> 13) & 3) as u8
    }

    /// Code or data (S = 1), as opposed to a system descriptor.
    pub fn code_or_data(&self) -> bool {
        self.hi & (1 << 12) != 0
    }

    /// The 4-bit type field.
    pub fn typ(&self) -> u32 {
        (self.hi >> 8) & 0xF
    }

    /// A code segment.
    pub fn is_code(&self) -> bool {
        self.code_or_data() && self.typ() & 8 != 0
    }

    /// A data segment.
    pub fn is_data(&self) -> bool {
        self.code_or_data() && self.typ() & 8 == 0
    }

    /// A conforming code segment.
    pub fn conforming(&self) -> bool {
        self.is_code() && self.typ() & 4 != 0
    }

    /// Readable code or any data segment.
    pub fn readable(&self) -> bool {
        self.is_data() || (self.is_code() && self.typ() & 2 != 0)
    }

    /// A writable data segment.
    pub fn writable(&self) -> bool {
        self.is_data() && self.typ() & 2 != 0
    }

    /// The descriptor cache this descriptor loads, with `selector`.
    pub fn cache(&self, selector: u16) -> Segment {
        crate::cpu::decode_descriptor(self.lo, self.hi, selector)
    }

    /// Target selector of a gate.
    pub fn gate_selector(&self) -> u16 {
        (self.lo >> 16) as u16
    }

    /// Target offset of a gate (the high half only for 32-bit gates).
    pub fn gate_offset(&self) -> u32 {
        let low = self.lo & 0xFFFF;
        if self.typ() & 8 != 0 {
            low | (self.hi & 0xFFFF_0000)
        } else {
            low
        }
    }

    /// Number of stack parameters a call gate copies.
    pub fn param_count(&self) -> u32 {
        self.hi & 0x1F
    }
}

/// System descriptor types (SDM Vol. 3A Table 3-2).
pub mod sys {
    /// 16-bit TSS, available.
    pub const TSS16: u32 = 1;
    /// LDT.
    pub const LDT: u32 = 2;
    /// 16-bit TSS, busy.
    pub const TSS16_BUSY: u32 = 3;
    /// 16-bit call gate.
    pub const CALL16: u32 = 4;
    /// Task gate.
    pub const TASK: u32 = 5;
    /// 16-bit interrupt gate.
    pub const INT16: u32 = 6;
    /// 16-bit trap gate.
    pub const TRAP16: u32 = 7;
    /// 32-bit TSS, available.
    pub const TSS32: u32 = 9;
    /// 32-bit TSS, busy.
    pub const TSS32_BUSY: u32 = 11;
    /// 32-bit call gate.
    pub const CALL32: u32 = 12;
    /// 32-bit interrupt gate.
    pub const INT32: u32 = 14;
    /// 32-bit trap gate.
    pub const TRAP32: u32 = 15;
}

/// A selector's error-code form: index and TI, RPL cleared.
#[inline]
pub fn sel_err(sel: u16) -> u16 {
    sel & 0xFFFC
}

/// A segment register loaded with the null selector (unusable: no P bit).
fn null_segment(selector: u16) -> Segment {
    Segment { selector, attrs: 0, base: 0, limit: 0 }
}

/// Whether `len` bytes at `off` are within `s`'s limit (expand-down aware).
pub fn within_limit(s: &Segment, off: u32, len: u32) -> bool {
    let last = off.wrapping_add(len - 1);
    let expand_down = s.attrs & (Segment::ATTR_S | Segment::ATTR_CODE | Segment::ATTR_DC)
        == (Segment::ATTR_S | Segment::ATTR_DC);
    if expand_down {
        let upper = if s.big() { u32::MAX } else { 0xFFFF };
        off > s.limit && last <= upper && last >= off
    } else {
        last >= off && last <= s.limit
    }
}

/// A stack being written during a control transfer: its cache, selector and pointer.
struct Frame {
    seg: Segment,
    sp: u32,
    /// The #SS error code if a push does not fit.
    fault: u16,
    /// Accesses are made at CPL 3.
    user: bool,
}

impl Cpu {
    /// Reads CPU-internal structures (descriptor tables, TSS) as supervisor accesses.
    pub(crate) fn read_sys(&mut self, lin: u32, size: Size) -> Result<u32, Exception> {
        self.read_lin_as(lin, size, Access::Read, false)
    }

    /// Writes CPU-internal structures as supervisor accesses.
    pub(crate) fn write_sys(&mut self, lin: u32, size: Size, v: u32) -> Result<(), Exception> {
        self.write_lin_as(lin, size, v, false)
    }

    /// The linear address of `sel`'s descriptor, or `None` if it is beyond its table's limit
    /// (or in an LDT when none is loaded).
    pub(crate) fn descriptor_address(&self, sel: u16) -> Option<u32> {
        let index = u32::from(sel & !7);
        let (base, limit, usable) = if sel & 4 != 0 {
            let l = &self.state.ldtr;
            (l.base, l.limit, l.attrs & Segment::ATTR_P != 0 && l.selector & !3 != 0)
        } else {
            (self.state.gdtr.base, self.state.gdtr.limit, true)
        };
        (usable && index + 7 <= limit).then(|| base.wrapping_add(index))
    }

    /// Reads the descriptor of `sel`; `None` when it lies outside its table.
    pub(crate) fn fetch_descriptor(&mut self, sel: u16) -> Result<Option<Desc>, Exception> {
        let Some(at) = self.descriptor_address(sel) else { return Ok(None) };
        let lo = self.read_sys(at, Size::D)?;
        let hi = self.read_sys(at.wrapping_add(4), Size::D)?;
        Ok(Some(Desc { lo, hi }))
    }

    /// Sets the accessed bit of a code or data descriptor in memory, if it is clear.
    fn set_accessed(&mut self, sel: u16, d: &mut Desc) -> Result<(), Exception> {
        if d.code_or_data() && d.hi & (1 << 8) == 0 {
            d.hi |= 1 << 8;
            if let Some(at) = self.descriptor_address(sel) {
                self.write_sys(at.wrapping_add(4), Size::D, d.hi)?;
            }
        }
        Ok(())
    }

    /// Runs `f`; if it fails, puts the architectural state back as it was.
    pub(crate) fn atomically<T>(
        &mut self,
        f: impl FnOnce(&mut Cpu) -> Result<T, Exception>,
    ) -> Result<T, Exception> {
        let saved = self.state.clone();
        let r = f(self);
        if r.is_err() {
            self.state = saved;
        }
        r
    }

    /// MOV/POP/LDS… to DS, ES, FS, GS or SS in protected mode (SDM MOV "Operation").
    pub(crate) fn load_data_segment(&mut self, seg: SegReg, sel: u16) -> Result<(), Exception> {
        let cpl = self.state.cpl;
        let rpl = (sel & 3) as u8;
        if sel & !3 == 0 {
            if seg == SegReg::Ss {
                return Err(Exception::GeneralProtection(0));
            }
            *self.state.seg_mut(seg) = null_segment(sel);
            return Ok(());
        }
        let gp = Exception::GeneralProtection(sel_err(sel));
        let mut d = self.fetch_descriptor(sel)?.ok_or(gp)?;
        if seg == SegReg::Ss {
            if rpl != cpl || !d.writable() || d.dpl() != cpl {
                return Err(gp);
            }
            if !d.present() {
                return Err(Exception::StackFault(sel_err(sel)));
            }
        } else {
            if !d.readable() {
                return Err(gp);
            }
            if (d.is_data() || !d.conforming()) && (rpl > d.dpl() || cpl > d.dpl()) {
                return Err(gp);
            }
            if !d.present() {
                return Err(Exception::SegmentNotPresent(sel_err(sel)));
            }
        }
        self.set_accessed(sel, &mut d)?;
        *self.state.seg_mut(seg) = d.cache(sel);
        Ok(())
    }

    /// Nulls ES, DS, FS, GS where they hold data or non-conforming code segments less
    /// privileged than... i.e. with DPL < the new CPL, after a return to an outer level.
    fn null_inaccessible_segments(&mut self) {
        let cpl = self.state.cpl;
        for s in [SegReg::Es, SegReg::Ds, SegReg::Fs, SegReg::Gs] {
            let c = *self.state.seg(s);
            let code = c.attrs & Segment::ATTR_CODE != 0;
            let conforming = code && c.attrs & Segment::ATTR_DC != 0;
            if c.attrs & Segment::ATTR_P != 0 && (!code || !conforming) && c.dpl() < cpl {
                *self.state.seg_mut(s) = null_segment(0);
            }
        }
    }

    /// The stack for privilege level `dpl` from the current TSS (SDM §7.2.1, Figures 7-2, 7-11).
    fn tss_stack(&mut self, dpl: u8, ext: u16) -> Result<(u16, u32), Exception> {
        let tr = self.state.tr;
        let ts = Exception::InvalidTss(sel_err(tr.selector) | ext);
        let tss32 = tr.attrs & 0x8 != 0;
        if tss32 {
            let at = 4 + 8 * u32::from(dpl);
            if at + 5 > tr.limit {
                return Err(ts);
            }
            let esp = self.read_sys(tr.base.wrapping_add(at), Size::D)?;
            let ss = self.read_sys(tr.base.wrapping_add(at + 4), Size::W)? as u16;
            Ok((ss, esp))
        } else {
            let at = 2 + 4 * u32::from(dpl);
            if at + 3 > tr.limit {
                return Err(ts);
            }
            let sp = self.read_sys(tr.base.wrapping_add(at), Size::W)?;
            let ss = self.read_sys(tr.base.wrapping_add(at + 2), Size::W)? as u16;
            Ok((ss, sp))
        }
    }

    /// Validates the inner stack segment of a privilege change (SDM CALL and INT "Operation":
    /// #TS for a bad selector or descriptor, #SS if not present).
    fn inner_stack(&mut self, ss: u16, dpl: u8, ext: u16) -> Result<Segment, Exception> {
        let ts = Exception::InvalidTss(sel_err(ss) | ext);
        if ss & !3 == 0 {
            return Err(Exception::InvalidTss(ext));
        }
        let mut d = self.fetch_descriptor(ss)?.ok_or(ts)?;
        if (ss & 3) as u8 != dpl || d.dpl() != dpl || !d.writable() {
            return Err(ts);
        }
        if !d.present() {
            return Err(Exception::StackFault(sel_err(ss) | ext));
        }
        self.set_accessed(ss, &mut d)?;
        Ok(d.cache(ss))
    }

    /// Pushes onto `f`'s stack (limit-checked, #SS with the frame's error code).
    fn frame_push(&mut self, f: &mut Frame, size: Size, v: u32) -> Result<(), Exception> {
        let n = size.bytes() as u32;
        let sp = if f.seg.big() { f.sp.wrapping_sub(n) } else { f.sp.wrapping_sub(n) & 0xFFFF };
        if !within_limit(&f.seg, sp, n) {
            return Err(Exception::StackFault(f.fault));
        }
        self.write_lin_as(f.seg.base.wrapping_add(sp), size, v, f.user)?;
        f.sp = sp;
        Ok(())
    }

    /// Reads the current stack at SP + `offset` (for returns), at the current privilege.
    fn stack_read(&mut self, offset: u32, size: Size) -> Result<u32, Exception> {
        let ss = *self.state.seg(SegReg::Ss);
        let sp = self.sp_plus(offset as i32);
        if !within_limit(&ss, sp, size.bytes() as u32) {
            return Err(Exception::StackFault(0));
        }
        let user = self.state.cpl == 3;
        self.read_lin_as(ss.base.wrapping_add(sp), size, Access::Read, user)
    }

    /// Sets (E)SP for a stack whose B bit is `big`.
    fn set_sp_for(&mut self, big: bool, sp: u32) {
        if big {
            self.state.regs[gpr::ESP] = sp;
        } else {
            self.state.set_reg16(gpr::ESP, sp as u16);
        }
    }

    /// Checks a code-segment descriptor as the target of a far JMP/CALL at the current CPL.
    fn check_code_target(&mut self, sel: u16, d: &Desc) -> Result<(), Exception> {
        let cpl = self.state.cpl;
        let gp = Exception::GeneralProtection(sel_err(sel));
        let rpl = (sel & 3) as u8;
        if d.conforming() {
            if d.dpl() > cpl {
                return Err(gp);
            }
        } else if rpl > cpl || d.dpl() != cpl {
            return Err(gp);
        }
        if !d.present() {
            return Err(Exception::SegmentNotPresent(sel_err(sel)));
        }
        Ok(())
    }

    /// Loads CS with `d` at privilege `cpl` and jumps to `offset` (#GP(0) beyond the limit).
    fn enter_code(&mut self, sel: u16, mut d: Desc, cpl: u8, offset: u32) -> Result<(), Exception> {
        let cache = d.cache((sel & !3) | u16::from(cpl));
        if offset > cache.limit {
            return Err(Exception::GeneralProtection(0));
        }
        self.set_accessed(sel, &mut d)?;
        *self.state.seg_mut(SegReg::Cs) = cache;
        self.state.cpl = cpl;
        self.state.eip = offset;
        Ok(())
    }

    /// Far JMP in protected mode (SDM JMP "Operation").
    pub(crate) fn far_jump(&mut self, sel: u16, offset: u32, size: Size) -> Result<(), Exception> {
        self.atomically(|cpu| {
            if sel & !3 == 0 {
                return Err(Exception::GeneralProtection(0));
            }
            let gp = Exception::GeneralProtection(sel_err(sel));
            let d = cpu.fetch_descriptor(sel)?.ok_or(gp)?;
            let cpl = cpu.state.cpl;
            if d.is_code() {
                cpu.check_code_target(sel, &d)?;
                let offset = if size == Size::W { offset & 0xFFFF } else { offset };
                return cpu.enter_code(sel, d, cpl, offset);
            }
            if d.code_or_data() {
                return Err(gp);
            }
            match d.typ() {
                sys::CALL16 | sys::CALL32 => {
                    if d.dpl() < cpl || d.dpl() < (sel & 3) as u8 {
                        return Err(gp);
                    }
                    if !d.present() {
                        return Err(Exception::SegmentNotPresent(sel_err(sel)));
                    }
                    let target = d.gate_selector();
                    if target & !3 == 0 {
                        return Err(Exception::GeneralProtection(0));
                    }
                    let tgp = Exception::GeneralProtection(sel_err(target));
                    let td = cpu.fetch_descriptor(target)?.ok_or(tgp)?;
                    if !td.is_code()
                        || (td.conforming() && td.dpl() > cpl)
                        || (!td.conforming() && td.dpl() != cpl)
                    {
                        return Err(tgp);
                    }
                    if !td.present() {
                        return Err(Exception::SegmentNotPresent(sel_err(target)));
                    }
                    cpu.enter_code(target, td, cpl, d.gate_offset())
                }
                sys::TASK | sys::TSS16 | sys::TSS32 | sys::TSS16_BUSY | sys::TSS32_BUSY => {
                    cpu.task_transfer(sel, d, super::task::Source::Jmp)
                }
                _ => Err(gp),
            }
        })
    }

    /// Far CALL in protected mode (SDM CALL "Operation"), `ret` being the return EIP.
    pub(crate) fn far_call(&mut self, sel: u16, offset: u32, size: Size, ret: u32) -> Result<(), Exception> {
        self.atomically(|cpu| {
            if sel & !3 == 0 {
                return Err(Exception::GeneralProtection(0));
            }
            let gp = Exception::GeneralProtection(sel_err(sel));
            let d = cpu.fetch_descriptor(sel)?.ok_or(gp)?;
            let cpl = cpu.state.cpl;
            let old_cs = cpu.state.seg(SegReg::Cs).selector;
            if d.is_code() {
                cpu.check_code_target(sel, &d)?;
                let offset = if size == Size::W { offset & 0xFFFF } else { offset };
                let ss = *cpu.state.seg(SegReg::Ss);
                let mut f = Frame { seg: ss, sp: cpu.sp(), fault: 0, user: cpl == 3 };
                cpu.frame_push(&mut f, size, u32::from(old_cs))?;
                cpu.frame_push(&mut f, size, ret)?;
                cpu.enter_code(sel, d, cpl, offset)?;
                cpu.set_sp_for(ss.big(), f.sp);
                return Ok(());
            }
            if d.code_or_data() {
                return Err(gp);
            }
            match d.typ() {
                sys::CALL16 | sys::CALL32 => cpu.call_gate(sel, d, ret),
                sys::TASK | sys::TSS16 | sys::TSS32 | sys::TSS16_BUSY | sys::TSS32_BUSY => {
                    cpu.task_transfer(sel, d, super::task::Source::Call)
                }
                _ => Err(gp),
            }
        })
    }

    /// CALL through a call gate, switching stacks (and copying parameters) when the target is
    /// more privileged (SDM §5.8.5).
    fn call_gate(&mut self, sel: u16, gate: Desc, ret: u32) -> Result<(), Exception> {
        let cpl = self.state.cpl;
        let gp = Exception::GeneralProtection(sel_err(sel));
        if gate.dpl() < cpl || gate.dpl() < (sel & 3) as u8 {
            return Err(gp);
        }
        if !gate.present() {
            return Err(Exception::SegmentNotPresent(sel_err(sel)));
        }
        let target = gate.gate_selector();
        if target & !3 == 0 {
            return Err(Exception::GeneralProtection(0));
        }
        let tgp = Exception::GeneralProtection(sel_err(target));
        let td = self.fetch_descriptor(target)?.ok_or(tgp)?;
        if !td.is_code() || td.dpl() > cpl {
            return Err(tgp);
        }
        if !td.present() {
            return Err(Exception::SegmentNotPresent(sel_err(target)));
        }
        let size = if gate.typ() == sys::CALL32 { Size::D } else { Size::W };
        let offset = gate.gate_offset();
        let old_cs = u32::from(self.state.seg(SegReg::Cs).selector);
        let old_ss = *self.state.seg(SegReg::Ss);
        let old_sp = self.sp();
        if !td.conforming() && td.dpl() < cpl {
            let dpl = td.dpl();
            let (ss_sel, esp) = self.tss_stack(dpl, 0)?;
            let new_ss = self.inner_stack(ss_sel, dpl, 0)?;
            // Parameters come from the caller's stack, read before anything changes.
            let count = gate.param_count();
            let mut params = Vec::with_capacity(count as usize);
            for k in (0..count).rev() {
                params.push(self.stack_read(k * size.bytes() as u32, size)?);
            }
            let mut f = Frame { seg: new_ss, sp: esp, fault: sel_err(ss_sel), user: false };
            self.frame_push(&mut f, size, u32::from(old_ss.selector))?;
            self.frame_push(&mut f, size, old_sp)?;
            for p in params {
                self.frame_push(&mut f, size, p)?;
            }
            self.frame_push(&mut f, size, old_cs)?;
            self.frame_push(&mut f, size, ret)?;
            self.enter_code(target, td, dpl, offset)?;
            *self.state.seg_mut(SegReg::Ss) = new_ss;
            self.set_sp_for(new_ss.big(), f.sp);
        } else {
            let mut f = Frame { seg: old_ss, sp: old_sp, fault: 0, user: cpl == 3 };
            self.frame_push(&mut f, size, old_cs)?;
            self.frame_push(&mut f, size, ret)?;
            self.enter_code(target, td, cpl, offset)?;
            self.set_sp_for(old_ss.big(), f.sp);
        }
        Ok(())
    }

    /// Checks the code segment a RETF or IRET returns to (SDM RET "Operation").
    fn check_return_cs(&mut self, sel: u16) -> Result<Desc, Exception> {
        if sel & !3 == 0 {
            return Err(Exception::GeneralProtection(0));
        }
        let gp = Exception::GeneralProtection(sel_err(sel));
        let d = self.fetch_descriptor(sel)?.ok_or(gp)?;
        let rpl = (sel & 3) as u8;
        if !d.is_code() || rpl < self.state.cpl {
            return Err(gp);
        }
        if (d.conforming() && d.dpl() > rpl) || (!d.conforming() && d.dpl() != rpl) {
            return Err(gp);
        }
        if !d.present() {
            return Err(Exception::SegmentNotPresent(sel_err(sel)));
        }
        Ok(d)
    }

    /// Checks the stack segment a return to an outer level loads (SDM RET "Operation").
    fn check_return_ss(&mut self, ss: u16, rpl: u8) -> Result<Segment, Exception> {
        if ss & !3 == 0 {
            return Err(Exception::GeneralProtection(0));
        }
        let gp = Exception::GeneralProtection(sel_err(ss));
        let mut d = self.fetch_descriptor(ss)?.ok_or(gp)?;
        if (ss & 3) as u8 != rpl || !d.writable() || d.dpl() != rpl {
            return Err(gp);
        }
        if !d.present() {
            return Err(Exception::StackFault(sel_err(ss)));
        }
        self.set_accessed(ss, &mut d)?;
        Ok(d.cache(ss))
    }

    /// RETF [imm16] in protected mode.
    pub(crate) fn far_return(&mut self, size: Size, imm: u32) -> Result<(), Exception> {
        self.atomically(|cpu| {
            let n = size.bytes() as u32;
            let eip = cpu.stack_read(0, size)?;
            let sel = cpu.stack_read(n, size)? as u16;
            let d = cpu.check_return_cs(sel)?;
            let rpl = (sel & 3) as u8;
            if rpl > cpu.state.cpl {
                let esp = cpu.stack_read(2 * n + imm, size)?;
                let ss_sel = cpu.stack_read(3 * n + imm, size)? as u16;
                let ss = cpu.check_return_ss(ss_sel, rpl)?;
                cpu.enter_code(sel, d, rpl, eip)?;
                *cpu.state.seg_mut(SegReg::Ss) = ss;
                let esp = if size == Size::W { esp & 0xFFFF } else { esp };
                cpu.set_sp_for(ss.big(), esp.wrapping_add(imm));
                cpu.null_inaccessible_segments();
            } else {
                let cpl = cpu.state.cpl;
                cpu.enter_code(sel, d, cpl, eip)?;
                cpu.set_sp(cpu.sp_plus((2 * n + imm) as i32));
            }
            Ok(())
        })
    }

    /// IRET in protected mode (not from virtual-8086 mode, which uses the real-mode form):
    /// task return when NT is set, return to virtual-8086 mode, to an outer level, or to the
    /// same level (SDM IRET "Operation").
    pub(crate) fn iret_protected(&mut self, size: Size) -> Result<(), Exception> {
        if self.state.eflags & fl::NT != 0 {
            return self.atomically(|cpu| cpu.task_return());
        }
        self.atomically(|cpu| {
            let n = size.bytes() as u32;
            let eip = cpu.stack_read(0, size)?;
            let sel = cpu.stack_read(n, size)? as u16;
            let flags = cpu.stack_read(2 * n, size)?;
            if size == Size::D && flags & fl::VM != 0 && cpu.state.cpl == 0 {
                return cpu.return_to_v86(eip, sel, flags);
            }
            let d = cpu.check_return_cs(sel)?;
            let rpl = (sel & 3) as u8;
            let old_cpl = cpu.state.cpl;
            let new_flags = crate::isa::iret_flags(cpu, flags, size);
            if rpl > old_cpl {
                let esp = cpu.stack_read(3 * n, size)?;
                let ss_sel = cpu.stack_read(4 * n, size)? as u16;
                let ss = cpu.check_return_ss(ss_sel, rpl)?;
                let eip = if size == Size::W { eip & 0xFFFF } else { eip };
                cpu.enter_code(sel, d, rpl, eip)?;
                *cpu.state.seg_mut(SegReg::Ss) = ss;
                let esp = if size == Size::W { esp & 0xFFFF } else { esp };
                cpu.set_sp_for(ss.big(), esp);
                cpu.null_inaccessible_segments();
            } else {
                let eip = if size == Size::W { eip & 0xFFFF } else { eip };
                cpu.enter_code(sel, d, old_cpl, eip)?;
                cpu.set_sp(cpu.sp_plus(3 * n as i32));
            }
            cpu.state.set_eflags(new_flags);
            Ok(())
        })
    }

    /// IRET from ring 0 to virtual-8086 mode: the frame also holds ESP, SS, ES, DS, FS, GS
    /// (SDM IRET "RETURN-TO-VIRTUAL-8086-MODE").
    fn return_to_v86(&mut self, eip: u32, cs: u16, flags: u32) -> Result<(), Exception> {
        let mut vals = [0u32; 6];
        for (k, v) in vals.iter_mut().enumerate() {
            *v = self.stack_read(12 + 4 * k as u32, Size::D)?;
        }
        let [esp, ss, es, ds, fs, gs] = vals;
        if eip & 0xFFFF_0000 != 0 {
            return Err(Exception::GeneralProtection(0));
        }
        self.state.set_eflags((flags & fl::WRITABLE) | fl::VM);
        for (s, v) in [
            (SegReg::Cs, cs),
            (SegReg::Ss, ss as u16),
            (SegReg::Es, es as u16),
            (SegReg::Ds, ds as u16),
            (SegReg::Fs, fs as u16),
            (SegReg::Gs, gs as u16),
        ] {
            *self.state.seg_mut(s) = v86_segment(v);
        }
        self.state.cpl = 3;
        self.state.eip = eip;
        self.state.regs[gpr::ESP] = esp;
        Ok(())
    }

    /// Delivers interrupt `vector` through the IDT (SDM §6.12, INT n "Operation").
    pub(crate) fn interrupt_protected(
        &mut self,
        vector: u8,
        kind: IntKind,
        ret_eip: u32,
    ) -> Result<(), Exception> {
        self.atomically(|cpu| cpu.interrupt_protected_inner(vector, kind, ret_eip))
    }

    fn interrupt_protected_inner(
        &mut self,
        vector: u8,
        kind: IntKind,
        ret_eip: u32,
    ) -> Result<(), Exception> {
        let ext = u16::from(!matches!(kind, IntKind::Software));
        let idt_err = u16::from(vector) * 8 + 2 + ext;
        let gp_idt = Exception::GeneralProtection(idt_err);
        let entry = u32::from(vector) * 8;
        if entry + 7 > self.state.idtr.limit {
            return Err(gp_idt);
        }
        let base = self.state.idtr.base.wrapping_add(entry);
        let gate =
            Desc { lo: self.read_sys(base, Size::D)?, hi: self.read_sys(base.wrapping_add(4), Size::D)? };
        let typ = gate.typ();
        if gate.code_or_data()
            || !matches!(typ, sys::TASK | sys::INT16 | sys::TRAP16 | sys::INT32 | sys::TRAP32)
        {
            return Err(gp_idt);
        }
        let cpl = self.state.cpl;
        if kind == IntKind::Software && gate.dpl() < cpl {
            return Err(gp_idt);
        }
        if !gate.present() {
            return Err(Exception::SegmentNotPresent(idt_err));
        }
        let error = match kind {
            IntKind::Exception(code) => code,
            _ => None,
        };
        if typ == sys::TASK {
            let tss = gate.gate_selector();
            let tgp = Exception::InvalidTss(sel_err(tss) | ext);
            let d = self.fetch_descriptor(tss)?.ok_or(Exception::GeneralProtection(sel_err(tss) | ext))?;
            let _ = tgp;
            return self.task_switch(tss, d, super::task::Source::Interrupt { error, ret_eip });
        }
        let sel = gate.gate_selector();
        if sel & !3 == 0 {
            return Err(Exception::GeneralProtection(ext));
        }
        let cgp = Exception::GeneralProtection(sel_err(sel) | ext);
        let cd = self.fetch_descriptor(sel)?.ok_or(cgp)?;
        if !cd.is_code() || cd.dpl() > cpl {
            return Err(cgp);
        }
        if !cd.present() {
            return Err(Exception::SegmentNotPresent(sel_err(sel) | ext));
        }
        let size = if typ & 8 != 0 { Size::D } else { Size::W };
        let offset = gate.gate_offset();
        let flags = self.state.eflags();
        let old_cs = u32::from(self.state.seg(SegReg::Cs).selector);
        let v86 = self.state.v86();
        if !cd.conforming() && cd.dpl() < cpl {
            let dpl = cd.dpl();
            if v86 && dpl != 0 {
                return Err(cgp);
            }
            let (ss_sel, esp) = self.tss_stack(dpl, ext)?;
            let new_ss = self.inner_stack(ss_sel, dpl, ext)?;
            let old_ss = u32::from(self.state.seg(SegReg::Ss).selector);
            let old_sp = self.state.regs[gpr::ESP];
            let mut f = Frame { seg: new_ss, sp: esp, fault: sel_err(ss_sel) | ext, user: false };
            if v86 {
                for s in [SegReg::Gs, SegReg::Fs, SegReg::Ds, SegReg::Es] {
                    let v = u32::from(self.state.seg(s).selector);
                    self.frame_push(&mut f, size, v)?;
                }
            }
            self.frame_push(&mut f, size, old_ss)?;
            self.frame_push(&mut f, size, old_sp)?;
            self.frame_push(&mut f, size, flags)?;
            self.frame_push(&mut f, size, old_cs)?;
            self.frame_push(&mut f, size, ret_eip)?;
            if let Some(code) = error {
                self.frame_push(&mut f, size, code)?;
            }
            if offset > cd.cache(sel).limit {
                return Err(Exception::GeneralProtection(ext));
            }
            if v86 {
                for s in [SegReg::Gs, SegReg::Fs, SegReg::Ds, SegReg::Es] {
                    *self.state.seg_mut(s) = null_segment(0);
                }
            }
            self.enter_code(sel, cd, dpl, offset)?;
            *self.state.seg_mut(SegReg::Ss) = new_ss;
            self.set_sp_for(new_ss.big(), f.sp);
        } else {
            if v86 {
                return Err(cgp);
            }
            let ss = *self.state.seg(SegReg::Ss);
            let mut f = Frame { seg: ss, sp: self.sp(), fault: ext, user: cpl == 3 };
            self.frame_push(&mut f, size, flags)?;
            self.frame_push(&mut f, size, old_cs)?;
            self.frame_push(&mut f, size, ret_eip)?;
            if let Some(code) = error {
                self.frame_push(&mut f, size, code)?;
            }
            self.enter_code(sel, cd, cpl, offset)?;
            self.set_sp_for(ss.big(), f.sp);
        }
        let mut clear = fl::TF | fl::NT | fl::RF | fl::VM;
        if typ == sys::INT16 || typ == sys::INT32 {
            clear |= fl::IF;
        }
        self.state.eflags &= !clear;
        Ok(())
    }

    /// Loads a segment register from a selector found in a TSS during a task switch, raising #TS
    /// for a bad one (SDM §7.3 step 13).
    pub(crate) fn load_task_segment(&mut self, seg: SegReg, sel: u16) -> Result<(), Exception> {
        let ts = Exception::InvalidTss(sel_err(sel));
        if self.state.v86() {
            *self.state.seg_mut(seg) = v86_segment(sel);
            return Ok(());
        }
        let cpl = self.state.cpl;
        if sel & !3 == 0 {
            if matches!(seg, SegReg::Cs | SegReg::Ss) {
                return Err(ts);
            }
            *self.state.seg_mut(seg) = null_segment(sel);
            return Ok(());
        }
        let mut d = self.fetch_descriptor(sel)?.ok_or(ts)?;
        let rpl = (sel & 3) as u8;
        let ok = match seg {
            SegReg::Cs => d.is_code() && (if d.conforming() { d.dpl() <= rpl } else { d.dpl() == rpl }),
            SegReg::Ss => d.writable() && d.dpl() == cpl && rpl == cpl,
            _ => d.readable() && (d.conforming() || (d.dpl() >= cpl && d.dpl() >= rpl)),
        };
        if !ok {
            return Err(ts);
        }
        if !d.present() {
            return Err(if seg == SegReg::Ss {
                Exception::StackFault(sel_err(sel))
            } else {
                Exception::SegmentNotPresent(sel_err(sel))
            });
        }
        self.set_accessed(sel, &mut d)?;
        *self.state.seg_mut(seg) = d.cache(sel);
        Ok(())
    }
}

/// A segment register as virtual-8086 mode loads it: base = selector × 16, 64 KiB, DPL 3.
pub fn v86_segment(sel: u16) -> Segment {
    Segment {
        selector: sel,
        attrs: Segment::ATTR_P | Segment::ATTR_S | Segment::ATTR_RW | Segment::ATTR_ACCESSED | (3 << 5),
        base: u32::from(sel) << 4,
        limit: 0xFFFF,
    }
}
