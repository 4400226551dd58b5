//! Hardware task switching: JMP or CALL to a TSS descriptor or task gate, interrupts and
//! exceptions through task gates, and IRET with NT set, for 16- and 32-bit TSSs.
//!
//! Follows Intel SDM Vol. 3A §7.2 (TSS layout, Figures 7-2 and 7-11), §7.3 (the task-switch
//! steps), §7.4 (NT flag, previous-task link, busy bit) and the JMP/CALL/IRET "Operation"
//! sections.
//!
//! Order: every check that can fail against the *old* task (descriptor type, busy bit, presence,
//! TSS limit, reading the new TSS) happens before anything is written; then the old state is
//! saved, busy bits and the link are updated, and the new state is loaded.
//!
//! Deviations, recorded on purpose: a fault while loading the new task's segment registers or
//! LDT is delivered with the machine back in the old task's state (the hardware delivers it in
//! the new task, after the switch has been committed). The debug trap flag (T) of the TSS is not
//! honoured: bt86 has no debug traps yet. A switch to a 16-bit TSS, which has no slots for FS
//! and GS, loads them with null selectors (the SDM does not say; QEMU and Bochs do this, and
//! `bt86 diff` compares against QEMU).

use crate::cpu::protected::{sel_err, sys, v86_segment, Desc};
use crate::cpu::Cpu;
use crate::exception::Exception;
use crate::flags::Size;
use crate::state::{cr0, fl, SegReg, Segment};

/// What started the task switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// JMP to a TSS or task gate.
    Jmp,
    /// CALL to a TSS or task gate.
    Call,
    /// An interrupt or exception through a task gate, with the error code to push, if any, and
    /// the EIP saved for the interrupted task.
    Interrupt {
        /// Error code pushed on the new task's stack.
        error: Option<u32>,
        /// Return address saved in the old TSS.
        ret_eip: u32,
    },
    /// IRET with NT set: return to the previous task.
    Iret,
}

/// The registers a TSS holds, in our order (EAX … EDI, then ES CS SS DS FS GS).
struct TaskImage {
    eip: u32,
    eflags: u32,
    regs: [u32; 8],
    segs: [u16; 6],
    ldt: u16,
    cr3: Option<u32>,
}

/// Segment-selector slots of a TSS, in `SegReg` order (ES CS SS DS FS GS).
const SEG_ORDER: [SegReg; 6] = [SegReg::Es, SegReg::Cs, SegReg::Ss, SegReg::Ds, SegReg::Fs, SegReg::Gs];

impl Cpu {
    /// JMP or CALL to `sel`, which names a TSS descriptor or a task gate (privilege checks of
    /// SDM §7.3 step 2).
    pub(crate) fn task_transfer(&mut self, sel: u16, d: Desc, src: Source) -> Result<(), Exception> {
        let cpl = self.state.cpl;
        let rpl = (sel & 3) as u8;
        let gp = Exception::GeneralProtection(sel_err(sel));
        if d.dpl() < cpl || d.dpl() < rpl {
            return Err(gp);
        }
        if d.typ() == sys::TASK {
            if !d.present() {
                return Err(Exception::SegmentNotPresent(sel_err(sel)));
            }
            let tss = d.gate_selector();
            let tgp = Exception::GeneralProtection(sel_err(tss));
            if tss & 4 != 0 {
                return Err(tgp);
            }
            let td = self.fetch_descriptor(tss)?.ok_or(tgp)?;
            return self.task_switch(tss, td, src);
        }
        self.task_switch(sel, d, src)
    }

    /// IRET with NT set: switch back to the task named by the current TSS's link field.
    pub(crate) fn task_return(&mut self) -> Result<(), Exception> {
        let link = self.read_sys(self.state.tr.base, Size::W)? as u16;
        let ts = Exception::InvalidTss(sel_err(link));
        if link & 4 != 0 {
            return Err(ts);
        }
        let d = self.fetch_descriptor(link)?.ok_or(ts)?;
        self.task_switch(link, d, Source::Iret)
    }

    /// Reads a task's registers from its TSS.
    fn read_tss(&mut self, base: u32, tss32: bool) -> Result<TaskImage, Exception> {
        let mut t = TaskImage { eip: 0, eflags: 0, regs: [0; 8], segs: [0; 6], ldt: 0, cr3: None };
        if tss32 {
            t.cr3 = Some(self.read_sys(base + 0x1C, Size::D)?);
            t.eip = self.read_sys(base + 0x20, Size::D)?;
            t.eflags = self.read_sys(base + 0x24, Size::D)?;
            for (k, r) in t.regs.iter_mut().enumerate() {
                *r = self.read_sys(base + 0x28 + 4 * k as u32, Size::D)?;
            }
            for (k, s) in t.segs.iter_mut().enumerate() {
                *s = self.read_sys(base + 0x48 + 4 * k as u32, Size::W)? as u16;
            }
            t.ldt = self.read_sys(base + 0x60, Size::W)? as u16;
        } else {
            t.eip = self.read_sys(base + 0x0E, Size::W)?;
            t.eflags = self.read_sys(base + 0x10, Size::W)?;
            for (k, r) in t.regs.iter_mut().enumerate() {
                *r = self.read_sys(base + 0x12 + 2 * k as u32, Size::W)?;
            }
            for (k, s) in t.segs.iter_mut().take(4).enumerate() {
                *s = self.read_sys(base + 0x22 + 2 * k as u32, Size::W)? as u16;
            }
            t.ldt = self.read_sys(base + 0x2A, Size::W)? as u16;
        }
        Ok(t)
    }

    /// Saves the current task's dynamic state into its TSS.
    fn save_tss(&mut self, eip: u32, eflags: u32) -> Result<(), Exception> {
        let tr = self.state.tr;
        let base = tr.base;
        let regs = self.state.regs;
        let segs = SEG_ORDER.map(|s| u32::from(self.state.seg(s).selector));
        if tr.attrs & 0x8 != 0 {
            self.write_sys(base + 0x20, Size::D, eip)?;
            self.write_sys(base + 0x24, Size::D, eflags)?;
            for (k, r) in regs.iter().enumerate() {
                self.write_sys(base + 0x28 + 4 * k as u32, Size::D, *r)?;
            }
            for (k, s) in segs.iter().enumerate() {
                self.write_sys(base + 0x48 + 4 * k as u32, Size::W, *s)?;
            }
        } else {
            self.write_sys(base + 0x0E, Size::W, eip)?;
            self.write_sys(base + 0x10, Size::W, eflags)?;
            for (k, r) in regs.iter().enumerate() {
                self.write_sys(base + 0x12 + 2 * k as u32, Size::W, *r)?;
            }
            for (k, s) in segs.iter().take(4).enumerate() {
                self.write_sys(base + 0x22 + 2 * k as u32, Size::W, *s)?;
            }
        }
        Ok(())
    }

    /// Sets or clears the busy bit of the TSS descriptor `sel` in the GDT.
    fn set_busy(&mut self, sel: u16, busy: bool) -> Result<(), Exception> {
        let Some(at) = self.descriptor_address(sel & !4) else {
            return Err(Exception::InvalidTss(sel_err(sel)));
        };
        let hi = self.read_sys(at + 4, Size::D)?;
        let hi = if busy { hi | (1 << 9) } else { hi & !(1 << 9) };
        self.write_sys(at + 4, Size::D, hi)
    }

    /// Switches to the task whose TSS descriptor is `d` (selector `sel`), SDM §7.3.
    pub(crate) fn task_switch(&mut self, sel: u16, d: Desc, src: Source) -> Result<(), Exception> {
        let typ = d.typ();
        let gp = Exception::GeneralProtection(sel_err(sel));
        let ts = Exception::InvalidTss(sel_err(sel));
        if sel & 4 != 0 || d.code_or_data() {
            return Err(gp);
        }
        let busy = matches!(typ, sys::TSS16_BUSY | sys::TSS32_BUSY);
        if !busy && !matches!(typ, sys::TSS16 | sys::TSS32) {
            return Err(gp);
        }
        match src {
            Source::Iret if !busy => return Err(ts),
            Source::Jmp | Source::Call | Source::Interrupt { .. } if busy => return Err(gp),
            _ => {}
        }
        if !d.present() {
            return Err(Exception::SegmentNotPresent(sel_err(sel)));
        }
        let tss32 = typ & 8 != 0;
        let new = d.cache(sel);
        if new.limit < if tss32 { 0x67 } else { 0x2B } {
            return Err(ts);
        }
        let old_tr = self.state.tr;
        let old_limit_ok = old_tr.limit >= if old_tr.attrs & 0x8 != 0 { 0x5F } else { 0x29 };
        if !old_limit_ok {
            return Err(Exception::InvalidTss(sel_err(old_tr.selector)));
        }
        let image = self.read_tss(new.base, tss32)?;

        // Save the outgoing task.
        let (save_eip, ret_error) = match src {
            Source::Interrupt { error, ret_eip } => (ret_eip, error),
            _ => (self.state.eip, None),
        };
        let mut old_flags = self.state.eflags();
        if src == Source::Iret {
            old_flags &= !fl::NT;
        }
        self.save_tss(save_eip, old_flags)?;
        if matches!(src, Source::Jmp | Source::Iret) {
            self.set_busy(old_tr.selector, false)?;
        }
        let mut new_flags = image.eflags;
        if matches!(src, Source::Call | Source::Interrupt { .. }) {
            self.write_sys(new.base, Size::W, u32::from(old_tr.selector))?;
            new_flags |= fl::NT;
        }
        if src != Source::Iret {
            self.set_busy(sel, true)?;
        }

        // Load the incoming task.
        let mut tr = new;
        tr.attrs |= 1 << 1; // busy
        self.state.tr = tr;
        self.state.cr[0] |= cr0::TS;
        if let (Some(cr3), true) = (image.cr3, self.state.cr[0] & cr0::PG != 0) {
            self.state.cr[3] = cr3;
            self.on_cr3_write();
        }
        if !tss32 {
            new_flags = (self.state.eflags() & 0xFFFF_0000 & !fl::VM) | (new_flags & 0xFFFF);
        }
        self.state.set_eflags(new_flags);
        self.state.eip = image.eip;
        if tss32 {
            self.state.regs = image.regs;
        } else {
            for (k, r) in image.regs.iter().enumerate() {
                self.state.set_reg16(k, *r as u16);
            }
        }
        // A 16-bit TSS has no FS and GS slots: they are loaded with null selectors (the image
        // holds 0 there), as QEMU and Bochs do.
        let slots = 6;
        for (s, v) in SEG_ORDER.iter().zip(image.segs).take(slots) {
            self.state.seg_mut(*s).selector = v;
        }
        self.load_ldt_for_task(image.ldt)?;
        if self.state.v86() {
            for (s, v) in SEG_ORDER.iter().zip(image.segs).take(slots) {
                *self.state.seg_mut(*s) = v86_segment(v);
            }
            self.state.cpl = 3;
        } else {
            self.state.cpl = (image.segs[1] & 3) as u8;
            for (s, v) in SEG_ORDER.iter().zip(image.segs).take(slots) {
                self.load_task_segment(*s, v)?;
            }
        }
        if self.state.eip > self.state.seg(SegReg::Cs).limit {
            return Err(Exception::GeneralProtection(0));
        }
        if let Some(code) = ret_error {
            let size = if tss32 { Size::D } else { Size::W };
            self.push(size, code)?;
        }
        Ok(())
    }

    /// Loads LDTR from a selector found in a TSS (#TS for anything but a present LDT in the GDT).
    fn load_ldt_for_task(&mut self, sel: u16) -> Result<(), Exception> {
        let ts = Exception::InvalidTss(sel_err(sel));
        if sel & !3 == 0 {
            self.state.ldtr = Segment { selector: sel, ..Segment::default() };
            return Ok(());
        }
        if sel & 4 != 0 {
            return Err(ts);
        }
        let d = self.fetch_descriptor(sel)?.ok_or(ts)?;
        if d.code_or_data() || d.typ() != sys::LDT || !d.present() {
            return Err(ts);
        }
        self.state.ldtr = d.cache(sel);
        Ok(())
    }
}
