//! The CPU: one instruction at a time — fetch, decode, execute, and exception delivery.
//!
//! Follows Intel SDM Vol. 3A §3.4 (segment selectors and descriptors), §5.3 (limit checking),
//! §6 (interrupt and exception handling; §6.15 for #DF) and §20.1.4 (interrupt and exception
//! handling in real-address mode).
//!
//! Instruction semantics live in [`crate::isa`]; this module owns the machinery every handler
//! shares: the fetch of instruction bytes (including instructions that straddle the end of the
//! code segment or of a page), segment-checked memory access, the stack, and the delivery of
//! exceptions and interrupts through the IVT.
//!
//! Precise exceptions: a handler must raise every fault before it changes architectural state
//! (or restore what it changed), and `step` restores EIP, so a faulting instruction leaves the
//! machine exactly as it was before it started.
//!
//! Protected-mode segmentation, gates, interrupts through the IDT and virtual-8086 entry and
//! exit live in [`protected`]; hardware task switches in [`task`].

pub mod protected;
pub mod task;

use core::fmt;

use iced_x86::{Decoder, DecoderError, DecoderOptions, Instruction};

use crate::exception::Exception;
use crate::flags::Size;
use crate::io::PortIo;
use crate::isa;
use crate::memory::{GuestMemory, MemoryError, PAGE_SIZE};
use crate::paging;
use crate::state::{cr0, fl, CpuState, SegReg, Segment};
use crate::tlb::Tlb;
use crate::x87::Fpu;

/// The kind of access a memory reference makes (selects #GP vs #SS, and permission checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A data read.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Execute,
}

/// What one call to [`Cpu::step`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepResult {
    /// An instruction retired, or an exception or interrupt was delivered.
    Retired,
    /// The CPU is halted (HLT) and waits for an interrupt.
    Halted,
    /// A triple fault: the CPU entered shutdown.
    Shutdown(Shutdown),
}

/// Why the CPU shut down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shutdown {
    /// The exception whose delivery started the chain.
    pub first: Exception,
    /// The exception that could not be delivered as a double fault.
    pub last: Exception,
    /// CS selector of the instruction that faulted.
    pub cs: u16,
    /// EIP of the instruction that faulted.
    pub eip: u32,
}

impl fmt::Display for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "triple fault at {:04x}:{:08x}: {} could not be delivered ({} while delivering #DF)",
            self.cs, self.eip, self.first, self.last
        )
    }
}

/// Counters kept by the interpreter (printed by `bt86 run --stats`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Instructions decoded.
    pub decoded: u64,
    /// Exceptions delivered (not counting software INT n).
    pub exceptions: u64,
    /// Software interrupts (INT n, INT3, INTO) taken.
    pub soft_ints: u64,
    /// Instructions served from the decode cache.
    pub decode_cache_hits: u64,
    /// External interrupts and NMIs delivered.
    pub external_interrupts: u64,
    /// The most recent exception raised by an instruction (before any #DF escalation).
    pub last_exception: Option<Exception>,
    /// Interrupt deliveries attempted (exceptions, INT n, external).
    pub interrupts: u64,
    /// The vector of the most recent interrupt delivery attempted.
    pub last_vector: Option<u8>,
}

/// The source of an interrupt, which decides the frame and the privilege checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntKind {
    /// A processor exception (may push an error code in protected mode).
    Exception(Option<u32>),
    /// INT n, INT3 or INTO.
    Software,
    /// An external interrupt from the PIC.
    External,
}

/// An x86 CPU with its guest-physical memory.
#[derive(Debug)]
pub struct Cpu {
    /// Architectural state.
    pub state: CpuState,
    /// The x87 FPU (not part of the `#[repr(C)]` state: the translator calls out for x87
    /// instructions).
    pub fpu: Fpu,
    /// Guest-physical RAM.
    pub mem: GuestMemory,
    /// EIP of the instruction being executed (faults are reported here).
    pub insn_eip: u32,
    /// Interpreter counters.
    pub stats: Stats,
    /// Recently decoded instructions (see [`DecodeCache`]).
    cache: DecodeCache,
    /// The software TLB ("shadow page table") caching linear → physical translations.
    pub tlb: Tlb,
    /// Iterations of a REP string instruction run per step before it re-executes itself.
    pub rep_batch: u32,
    /// A deliberate bug, for proving that differential testing finds bugs (never set in normal
    /// runs; see [`Injection`]).
    pub injection: Option<Injection>,
}

/// Deliberate bugs `bt86 diff --inject` can switch on, so a test can show that the comparison
/// against QEMU catches a wrong flag at the right instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injection {
    /// ADC computes its carry-out as if there were no carry-in.
    AdcCarry,
}

/// Entries in the decode cache (a power of two).
const DECODE_CACHE_SIZE: usize = 4096;

/// A direct-mapped cache of decoded instructions, keyed by physical address, EIP (iced-x86
/// resolves branch targets against it) and code size, and validated against the generation of
/// the page the bytes came from, so a write to the page makes the entry stale. Instructions that
/// straddle a page are not cached.
#[derive(Debug)]
struct DecodeCache {
    entries: Vec<Cached>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Cached {
    pa: u32,
    eip: u32,
    gen: u32,
    /// 0 = empty, 16 or 32 = code size.
    bits: u8,
    insn: Instruction,
}

impl DecodeCache {
    fn new() -> DecodeCache {
        DecodeCache { entries: vec![Cached::default(); DECODE_CACHE_SIZE] }
    }

    #[inline]
    fn slot(pa: u32) -> usize {
        (pa ^ (pa >> 12)) as usize & (DECODE_CACHE_SIZE - 1)
    }
}

/// DR6.BS: the debug exception was a single-step trap (SDM Vol. 3B §17.2.3).
const DR6_BS: u32 = 1 << 14;

/// REP iterations per step by default.
pub const DEFAULT_REP_BATCH: u32 = 4096;

/// Longest legal x86 instruction (SDM Vol. 2A §2.3.11).
const MAX_INSN_LEN: usize = 15;

impl Cpu {
    /// A CPU in its reset state with `ram_bytes` of zeroed RAM.
    pub fn new(ram_bytes: u64) -> Result<Cpu, MemoryError> {
        Ok(Cpu {
            state: CpuState::reset(),
            fpu: Fpu::reset(),
            mem: GuestMemory::new(ram_bytes)?,
            insn_eip: 0,
            stats: Stats::default(),
            cache: DecodeCache::new(),
            tlb: Tlb::new(),
            rep_batch: DEFAULT_REP_BATCH,
            injection: None,
        })
    }

    /// Architectural RESET (memory is kept, as on a PC). The count of instructions retired
    /// since power-on carries on (virtual time is derived from it); the TSC restarts at 0.
    pub fn reset(&mut self) {
        let retired = self.state.retired;
        self.state = CpuState::reset();
        self.state.retired = retired;
        self.fpu = Fpu::reset();
        self.tlb.flush_all();
    }

    /// Points CS:IP at `cs:ip` in real mode (loaders and test harnesses).
    pub fn set_real_cs_ip(&mut self, cs: u16, ip: u16) {
        *self.state.seg_mut(SegReg::Cs) = Segment::real_mode(cs);
        self.state.eip = u32::from(ip);
    }

    // ---------------------------------------------------------------- address translation

    /// Linear → physical for an access at CPL 3 (`user`) or supervisor level: through the
    /// software TLB and, on a miss, the page walk when CR0.PG is set (SDM Vol. 3A §4.3); then
    /// the A20 gate masks bit 20 of the physical address.
    #[inline]
    pub fn translate(&mut self, lin: u32, acc: Access, user: bool) -> Result<u32, Exception> {
        let pa = if self.state.cr[0] & cr0::PG != 0 {
            paging::translate(&mut self.tlb, &mut self.mem, &self.state.cr, lin, acc, user)?
        } else {
            lin
        };
        Ok(if self.state.a20 { pa } else { pa & !(1 << 20) })
    }

    /// Whether data accesses are made at user level (CPL 3) for paging.
    #[inline]
    pub fn user_mode(&self) -> bool {
        self.state.cpl == 3
    }

    /// CR3 was written (or loaded by a task switch): cached translations of non-global pages
    /// are stale, and with CR4.PGE clear so are global ones (SDM Vol. 3A §4.10.4.1).
    pub(crate) fn on_cr3_write(&mut self) {
        if self.state.cr[4] & paging::cr4::PGE != 0 {
            self.tlb.flush_non_global();
        } else {
            self.tlb.flush_all();
        }
    }

    /// CR0 or CR4 changed from `old_cr0`/`old_cr4`: a change of PG, WP (folded into cached
    /// permissions), PSE, PGE or PAE invalidates every cached translation.
    pub(crate) fn on_control_write(&mut self, old_cr0: u32, old_cr4: u32) {
        let cr0_bits = cr0::PG | cr0::WP | cr0::PE;
        let cr4_bits = paging::cr4::PSE | paging::cr4::PGE | paging::cr4::PAE;
        if (old_cr0 ^ self.state.cr[0]) & cr0_bits != 0 || (old_cr4 ^ self.state.cr[4]) & cr4_bits != 0 {
            self.tlb.flush_all();
        }
    }

    /// The fault a segment violation raises: #SS for the stack segment, #GP otherwise.
    #[inline]
    fn seg_fault(seg: SegReg) -> Exception {
        if seg == SegReg::Ss {
            Exception::StackFault(0)
        } else {
            Exception::GeneralProtection(0)
        }
    }

    /// Checks an access of `len` bytes at `seg:off` against the segment's limit (and, in
    /// protected mode, its type), and returns the linear address (SDM Vol. 3A §5.3, §5.4).
    #[inline]
    pub fn seg_linear(&self, seg: SegReg, off: u32, len: u32, acc: Access) -> Result<u32, Exception> {
        let s = self.state.seg(seg);
        if self.state.protected() && !self.state.v86() {
            if s.attrs & Segment::ATTR_P == 0 || s.attrs & Segment::ATTR_S == 0 {
                return Err(Self::seg_fault(seg));
            }
            let code = s.attrs & Segment::ATTR_CODE != 0;
            let rw = s.attrs & Segment::ATTR_RW != 0;
            let allowed = match acc {
                Access::Read => !code || rw,
                Access::Write => !code && rw,
                Access::Execute => code,
            };
            if !allowed {
                return Err(Self::seg_fault(seg));
            }
        }
        if !protected::within_limit(s, off, len) {
            return Err(Self::seg_fault(seg));
        }
        Ok(s.base.wrapping_add(off))
    }

    // ---------------------------------------------------------------- memory access

    /// Reads `size` bytes at a linear address at the current privilege (split at page
    /// boundaries).
    #[inline]
    pub fn read_lin(&mut self, lin: u32, size: Size, acc: Access) -> Result<u32, Exception> {
        let user = self.user_mode();
        self.read_lin_as(lin, size, acc, user)
    }

    /// Writes `size` bytes at a linear address at the current privilege.
    #[inline]
    pub fn write_lin(&mut self, lin: u32, size: Size, v: u32) -> Result<(), Exception> {
        let user = self.user_mode();
        self.write_lin_as(lin, size, v, user)
    }

    /// Reads `size` bytes at a linear address as a user (`user`) or supervisor access.
    pub fn read_lin_as(&mut self, lin: u32, size: Size, acc: Access, user: bool) -> Result<u32, Exception> {
        let n = size.bytes() as u32;
        let page_off = lin as usize & (PAGE_SIZE - 1);
        if page_off + n as usize <= PAGE_SIZE {
            let pa = self.translate(lin, acc, user)?;
            return Ok(match size {
                Size::B => u32::from(self.mem.read_u8(pa)),
                Size::W => u32::from(self.mem.read_u16(pa)),
                Size::D => self.mem.read_u32(pa),
            });
        }
        let mut v = 0;
        for i in 0..n {
            let pa = self.translate(lin.wrapping_add(i), acc, user)?;
            v |= u32::from(self.mem.read_u8(pa)) << (8 * i);
        }
        Ok(v)
    }

    /// Writes `size` bytes at a linear address as a user or supervisor access. Every page is
    /// translated before any byte is written, so a fault leaves memory unchanged.
    pub fn write_lin_as(&mut self, lin: u32, size: Size, v: u32, user: bool) -> Result<(), Exception> {
        let n = size.bytes() as u32;
        let page_off = lin as usize & (PAGE_SIZE - 1);
        if page_off + n as usize <= PAGE_SIZE {
            let pa = self.translate(lin, Access::Write, user)?;
            match size {
                Size::B => self.mem.write_u8(pa, v as u8),
                Size::W => self.mem.write_u16(pa, v as u16),
                Size::D => self.mem.write_u32(pa, v),
            }
            return Ok(());
        }
        let first = self.translate(lin, Access::Write, user)?;
        let last = self.translate(lin.wrapping_add(n - 1), Access::Write, user)?;
        for i in 0..n {
            let l = lin.wrapping_add(i);
            let pa = if (l as usize & !(PAGE_SIZE - 1)) == (lin as usize & !(PAGE_SIZE - 1)) {
                first.wrapping_add(i)
            } else {
                last.wrapping_sub(n - 1 - i)
            };
            self.mem.write_u8(pa, (v >> (8 * i)) as u8);
        }
        Ok(())
    }

    /// Reads `size` bytes at `seg:off`.
    #[inline]
    pub fn read(&mut self, seg: SegReg, off: u32, size: Size) -> Result<u32, Exception> {
        let lin = self.seg_linear(seg, off, size.bytes() as u32, Access::Read)?;
        self.read_lin(lin, size, Access::Read)
    }

    /// Writes `size` bytes at `seg:off`.
    #[inline]
    pub fn write(&mut self, seg: SegReg, off: u32, size: Size, v: u32) -> Result<(), Exception> {
        let lin = self.seg_linear(seg, off, size.bytes() as u32, Access::Write)?;
        self.write_lin(lin, size, v)
    }

    /// Checks that `seg:off` can be written with `size` bytes, without writing (for
    /// read-modify-write instructions that must fault before changing anything).
    pub fn check_write(&mut self, seg: SegReg, off: u32, size: Size) -> Result<(), Exception> {
        let lin = self.seg_linear(seg, off, size.bytes() as u32, Access::Write)?;
        let user = self.user_mode();
        self.translate(lin, Access::Write, user)?;
        self.translate(lin.wrapping_add(size.bytes() as u32 - 1), Access::Write, user).map(|_| ())
    }

    // ---------------------------------------------------------------- stack

    /// The stack pointer, masked to the stack size.
    #[inline]
    pub fn sp(&self) -> u32 {
        let esp = self.state.regs[crate::state::gpr::ESP];
        if self.state.stack32() {
            esp
        } else {
            esp & 0xFFFF
        }
    }

    /// Sets the stack pointer, keeping ESP's upper half when the stack is 16-bit.
    #[inline]
    pub fn set_sp(&mut self, v: u32) {
        if self.state.stack32() {
            self.state.regs[crate::state::gpr::ESP] = v;
        } else {
            self.state.set_reg16(crate::state::gpr::ESP, v as u16);
        }
    }

    /// The stack pointer after moving it by `delta` (wrapping at the stack size).
    #[inline]
    pub fn sp_plus(&self, delta: i32) -> u32 {
        let v = self.sp().wrapping_add(delta as u32);
        if self.state.stack32() {
            v
        } else {
            v & 0xFFFF
        }
    }

    /// Pushes a value of `size` bytes (2 or 4).
    pub fn push(&mut self, size: Size, v: u32) -> Result<(), Exception> {
        let sp = self.sp_plus(-(size.bytes() as i32));
        self.write(SegReg::Ss, sp, size, v)?;
        self.set_sp(sp);
        Ok(())
    }

    /// Pops a value of `size` bytes (2 or 4).
    pub fn pop(&mut self, size: Size) -> Result<u32, Exception> {
        let v = self.read(SegReg::Ss, self.sp(), size)?;
        self.set_sp(self.sp_plus(size.bytes() as i32));
        Ok(v)
    }

    /// Reads the stack `offset` bytes above the stack pointer without popping.
    pub fn peek(&mut self, offset: u32, size: Size) -> Result<u32, Exception> {
        let sp = self.sp_plus(offset as i32);
        self.read(SegReg::Ss, sp, size)
    }

    // ---------------------------------------------------------------- segments

    /// Loads a data or stack segment register (MOV, POP, LDS …), or CS for a far transfer in
    /// real and virtual-8086 mode, where the base is `selector << 4` and the rest of the cache is
    /// kept (SDM §20.1.1). In protected mode CS changes only through far transfers.
    pub fn load_seg(&mut self, seg: SegReg, selector: u16) -> Result<(), Exception> {
        if self.state.protected() && !self.state.v86() {
            return self.load_data_segment(seg, selector);
        }
        if self.state.v86() {
            *self.state.seg_mut(seg) = protected::v86_segment(selector);
            return Ok(());
        }
        let s = self.state.seg_mut(seg);
        s.selector = selector;
        s.base = u32::from(selector) << 4;
        if seg == SegReg::Cs {
            // A far transfer in real mode makes CS a plain 16-bit code segment again.
            s.attrs &= !Segment::ATTR_DB;
        }
        Ok(())
    }

    // ---------------------------------------------------------------- interrupts

    /// Transfers control through the interrupt vector `vector` with the return address `ret_eip`
    /// (real mode: SDM §20.1.4). Nothing is changed if this faults.
    pub fn interrupt(&mut self, vector: u8, kind: IntKind, ret_eip: u32) -> Result<(), Exception> {
        self.stats.interrupts += 1;
        self.stats.last_vector = Some(vector);
        if self.state.protected() {
            return self.interrupt_protected(vector, kind, ret_eip);
        }
        let entry = u32::from(vector) * 4;
        if entry + 3 > self.state.idtr.limit {
            return Err(Exception::GeneralProtection(u16::from(vector) * 8 + 2));
        }
        let target = self.read_lin(self.state.idtr.base.wrapping_add(entry), Size::D, Access::Read)?;
        let flags = self.state.eflags();
        let cs = self.state.seg(SegReg::Cs).selector;
        let old_sp = self.sp();
        let pushed = self
            .push(Size::W, flags)
            .and_then(|()| self.push(Size::W, u32::from(cs)))
            .and_then(|()| self.push(Size::W, ret_eip));
        if let Err(e) = pushed {
            self.set_sp(old_sp);
            return Err(e);
        }
        self.state.eflags &= !(fl::IF | fl::TF | fl::AC | fl::RF);
        self.load_seg(SegReg::Cs, (target >> 16) as u16)?;
        self.state.eip = target & 0xFFFF;
        Ok(())
    }

    /// Delivers `e`, raised by the instruction at `insn_eip`, escalating to #DF and shutdown
    /// as SDM Table 6-5 prescribes.
    fn deliver(&mut self, e: Exception) -> StepResult {
        self.stats.exceptions += 1;
        self.stats.last_exception = Some(e);
        let first = e;
        let mut cur = e;
        // A chain is at most: first → (second, which may replace it) → #DF → shutdown.
        for _ in 0..4 {
            if let Exception::PageFault { addr, .. } = cur {
                self.state.cr[2] = addr;
            }
            match self.interrupt(cur.vector(), IntKind::Exception(cur.error_code()), self.insn_eip) {
                Ok(()) => return StepResult::Retired,
                Err(next) => match cur.combine(next) {
                    Some(n) => cur = n,
                    None => {
                        return StepResult::Shutdown(Shutdown {
                            first,
                            last: next,
                            cs: self.state.seg(SegReg::Cs).selector,
                            eip: self.insn_eip,
                        })
                    }
                },
            }
        }
        StepResult::Shutdown(Shutdown {
            first,
            last: cur,
            cs: self.state.seg(SegReg::Cs).selector,
            eip: self.insn_eip,
        })
    }

    // ---------------------------------------------------------------- fetch and decode

    /// Fetches and decodes the instruction at CS:EIP into `out`. Bytes are fetched up to the end
    /// of the code segment and across page ends; if the instruction needs a byte that cannot be
    /// fetched, the fault that stopped the fetch is raised (#GP for the segment limit).
    pub fn fetch_decode(&mut self, out: &mut Instruction) -> Result<(), Exception> {
        let eip = self.state.eip;
        let code32 = self.state.code32();
        let mut buf = [0u8; MAX_INSN_LEN];
        let mut n = 0usize;
        let mut stop = Exception::GeneralProtection(0);
        let cs = *self.state.seg(SegReg::Cs);
        while n < MAX_INSN_LEN {
            let off = eip.wrapping_add(n as u32);
            if off < eip || off > cs.limit {
                stop = Exception::GeneralProtection(0);
                break;
            }
            let lin = cs.base.wrapping_add(off);
            let user = self.user_mode();
            let pa = match self.translate(lin, Access::Execute, user) {
                Ok(pa) => pa,
                Err(e) => {
                    stop = e;
                    break;
                }
            };
            // Copy up to the end of the page, the segment limit or 15 bytes in one go.
            let page_left = PAGE_SIZE - (lin as usize & (PAGE_SIZE - 1));
            let seg_left = (cs.limit - off) as usize + 1;
            let take = (MAX_INSN_LEN - n).min(page_left).min(seg_left);
            for (i, b) in buf[n..n + take].iter_mut().enumerate() {
                *b = self.mem.read_u8(pa.wrapping_add(i as u32));
            }
            n += take;
        }
        let bitness = if code32 { 32 } else { 16 };
        let mut decoder = Decoder::with_ip(bitness, &buf[..n], u64::from(eip), DecoderOptions::NONE);
        decoder.decode_out(out);
        self.stats.decoded += 1;
        if out.is_invalid() {
            return Err(match decoder.last_error() {
                DecoderError::NoMoreBytes if n < MAX_INSN_LEN => stop,
                // More than 15 bytes of prefixes and opcode: #GP(0) (SDM Vol. 2A §2.3.11).
                DecoderError::NoMoreBytes => Exception::GeneralProtection(0),
                _ => Exception::InvalidOpcode,
            });
        }
        Ok(())
    }

    /// The instruction at CS:EIP: from the decode cache when its bytes are unchanged, otherwise
    /// fetched, decoded and cached.
    #[inline]
    fn next_instruction(&mut self) -> Result<Instruction, Exception> {
        let eip = self.state.eip;
        let cs = self.state.seg(SegReg::Cs);
        let bits = if self.state.code32() { 32 } else { 16 };
        let lin = cs.base.wrapping_add(eip);
        let limit = cs.limit;
        if eip <= limit {
            let user = self.user_mode();
            if let Ok(pa) = self.translate(lin, Access::Execute, user) {
                let e = &self.cache.entries[DecodeCache::slot(pa)];
                if e.pa == pa
                    && e.eip == eip
                    && e.bits == bits
                    && self.mem.page_gen(pa) == Some(e.gen)
                    && eip.checked_add(e.insn.len() as u32 - 1).is_some_and(|end| end <= limit)
                {
                    self.stats.decode_cache_hits += 1;
                    return Ok(e.insn);
                }
                let mut insn = Instruction::default();
                self.fetch_decode(&mut insn)?;
                let within_page = (pa as usize & (PAGE_SIZE - 1)) + insn.len() <= PAGE_SIZE;
                if let (true, Some(gen)) = (within_page, self.mem.page_gen(pa)) {
                    self.mem.mark_code(pa);
                    self.cache.entries[DecodeCache::slot(pa)] = Cached { pa, eip, gen, bits, insn };
                }
                return Ok(insn);
            }
        }
        let mut insn = Instruction::default();
        self.fetch_decode(&mut insn)?;
        Ok(insn)
    }

    // ---------------------------------------------------------------- execution

    /// Executes one instruction (or delivers the exception it raises).
    pub fn step(&mut self, io: &mut dyn PortIo) -> StepResult {
        // Instruction boundary: external events first (SDM Vol. 3A §6.9 priorities: NMI, then
        // maskable interrupts), unless the previous instruction set an interrupt shadow.
        if !self.state.int_shadow {
            if !self.state.nmi_blocked && io.take_nmi() {
                self.state.nmi_blocked = true;
                return self.deliver_external(2);
            }
            if self.state.eflags & fl::IF != 0 && io.interrupt_pending() {
                let vector = io.acknowledge_interrupt();
                return self.deliver_external(vector);
            }
        }
        if self.state.halted {
            return StepResult::Halted;
        }
        self.fetch_execute(io)
    }

    /// The instruction part of [`Cpu::step`]: fetches, decodes (through the decode cache) and
    /// executes the instruction at CS:EIP, with no look at interrupts first. The binary
    /// translator's callouts use it for an instruction that straddles a page end, whose bytes
    /// on the second page a block cannot watch.
    pub fn fetch_execute(&mut self, io: &mut dyn PortIo) -> StepResult {
        self.begin_instruction();
        let single_step = self.state.eflags & fl::TF != 0;
        let soft_ints = self.stats.soft_ints;
        let ferr = self.fpu.ferr();
        let result = self.next_instruction().and_then(|insn| self.exec_decoded(io, &insn));
        let r = self.end_instruction(result, single_step, soft_ints);
        if self.fpu.ferr() != ferr {
            io.set_ferr(self.fpu.ferr());
        }
        r
    }

    /// Executes `insn`, already decoded from CS:EIP, exactly as [`Cpu::step`] does after its
    /// fetch: the interrupt shadows end, EIP moves past the instruction, the handler runs, and
    /// the instruction retires or its exception is delivered. The caller has already taken any
    /// interrupt due at this boundary. The binary translator's callouts run instructions this
    /// way, so both engines share one definition of an instruction step.
    pub fn execute(&mut self, io: &mut dyn PortIo, insn: &Instruction) -> StepResult {
        self.begin_instruction();
        let single_step = self.state.eflags & fl::TF != 0;
        let soft_ints = self.stats.soft_ints;
        let ferr = self.fpu.ferr();
        let result = self.exec_decoded(io, insn);
        let r = self.end_instruction(result, single_step, soft_ints);
        if self.fpu.ferr() != ferr {
            io.set_ferr(self.fpu.ferr());
        }
        r
    }

    /// The start of an instruction: faults are reported at its EIP, and shadows set by the
    /// previous instruction last until this one is done.
    #[inline]
    fn begin_instruction(&mut self) {
        self.insn_eip = self.state.eip;
        self.state.int_shadow = false;
        self.state.ss_shadow = false;
    }

    /// EIP ← next instruction, then the handler from the instruction table.
    #[inline]
    fn exec_decoded(&mut self, io: &mut dyn PortIo, insn: &Instruction) -> Result<(), Exception> {
        let next = insn.next_ip() as u32;
        self.state.eip = if self.state.code32() { next } else { next & 0xFFFF };
        let info = isa::lookup(insn.code()).ok_or(Exception::InvalidOpcode)?;
        (info.exec)(self, io, insn)
    }

    /// Retires the instruction (with its single-step trap) or delivers its exception.
    #[inline]
    fn end_instruction(
        &mut self,
        result: Result<(), Exception>,
        single_step: bool,
        soft_ints: u64,
    ) -> StepResult {
        match result {
            Ok(()) => {
                self.state.retired += 1;
                self.state.tsc = self.state.tsc.wrapping_add(1);
                // Single-step trap (SDM Vol. 3B §17.3.1.4): after an instruction that began
                // with TF set — so not after the POPF or IRET that sets it — unless it was a
                // software interrupt (its handler runs with TF clear) or loaded SS (debug traps
                // wait one more instruction).
                if single_step && !self.state.ss_shadow && self.stats.soft_ints == soft_ints {
                    self.state.dr[6] |= DR6_BS;
                    self.state.halted = false;
                    self.insn_eip = self.state.eip;
                    return self.deliver(Exception::Debug);
                }
                if self.state.halted {
                    StepResult::Halted
                } else {
                    StepResult::Retired
                }
            }
            Err(e) => {
                self.state.eip = self.insn_eip;
                self.deliver(e)
            }
        }
    }

    /// Delivers external interrupt `vector` now, as if the interrupt controller had answered
    /// INTA with it (differential testing replays another machine's interrupts this way).
    pub fn inject_external(&mut self, vector: u8) -> StepResult {
        self.deliver_external(vector)
    }

    /// Delivers an external interrupt or NMI at the current instruction boundary (waking the CPU
    /// from HLT); a fault while delivering it is handled like any exception.
    fn deliver_external(&mut self, vector: u8) -> StepResult {
        self.state.halted = false;
        self.state.int_shadow = false;
        self.insn_eip = self.state.eip;
        self.stats.external_interrupts += 1;
        match self.interrupt(vector, IntKind::External, self.state.eip) {
            Ok(()) => StepResult::Retired,
            Err(e) => self.deliver(e),
        }
    }

    /// Runs until HLT, shutdown, or `max_steps` instructions; returns the last result and the
    /// number of steps taken.
    pub fn run(&mut self, io: &mut dyn PortIo, max_steps: u64) -> (StepResult, u64) {
        let mut steps = 0;
        while steps < max_steps {
            steps += 1;
            match self.step(io) {
                StepResult::Retired => {}
                other => return (other, steps),
            }
        }
        (StepResult::Retired, steps)
    }
}

/// Expands an 8-byte segment descriptor into a descriptor cache (SDM Vol. 3A §3.4.5).
pub fn decode_descriptor(lo: u32, hi: u32, selector: u16) -> Segment {
    let base = (lo >> 16) | ((hi & 0xFF) << 16) | (hi & 0xFF00_0000);
    let mut limit = (lo & 0xFFFF) | (hi & 0x000F_0000);
    let attrs = ((hi >> 8) & 0xF0FF) as u16;
    if attrs & Segment::ATTR_G != 0 {
        limit = (limit << 12) | 0xFFF;
    }
    Segment { selector, attrs, base, limit }
}
