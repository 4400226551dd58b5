//! The JIT entry: the context block generated code runs with, the call into generated code,
//! and the functions generated code calls back (callouts and flag materialization).
//!
//! Host references: the System V AMD64 ABI for the `sysv64` calls both ways; the guest state
//! it hands over is emu-core's (`CpuState`, `Tlb`), whose layout offsets are asserted.
//!
//! This module is one of the three places in bt86 allowed to hold `unsafe` (with guest RAM's
//! mapping and the code arena). The argument, once, for every block below:
//!
//! - [`enter`] is only given the trampoline the backend made for the arena's current contents
//!   and the entry of a block compiled into the arena since the arena was last reset, so it
//!   jumps to code that exists and follows the backend's conventions (System V ABI at the
//!   boundary, callee-saved registers restored, the frame released).
//! - Generated code touches exactly: the `CpuState` (through `Ctx::state`), the TLB's fast view
//!   (`Ctx::fast_tlb`, which never moves while its `Tlb` lives), the jump cache (owned by the
//!   runtime, never moved; read only, its generation entry before the first one included, which
//!   is why the pointer is made from the whole slice), guest RAM through TLB addends (each made by `Tlb::set_fast` from
//!   `GuestMemory::host_page`, so only pages wholly inside the live RAM mapping; an access is
//!   used only when its last byte is in the same page, which the tag compare checks), guest RAM
//!   directly while paging is off (`GuestMemory::direct_reads`: an access is used only when its
//!   last byte is below the RAM size it was compiled for, which the runtime keeps equal to the
//!   live mapping's by flushing every block when guest memory changes; that bound is checked
//!   inline, or known from a constant address, or from an earlier check of the same unchanged
//!   register in the same straight stretch of code, where a failed check left the block),
//!   guest memory's direct-write map (`GuestMemory::direct_writes`: read only, one byte per RAM
//!   page, in the same mapping right after RAM, indexed by the page of an address already
//!   checked to be in RAM), and its own frame on the host stack.
//! - All of these are reached from one `&mut Cpu` that [`enter`]'s caller gives up for the
//!   duration of the call: no Rust reference to any of them is alive while generated code runs.
//!   Generated code calls back only [`callout`] and [`arith_flags`], passing back the pointers it
//!   was given; they re-borrow the `Cpu` (or read the state) only for the duration of the call,
//!   while generated code is suspended.
//! - A panic in a callout is caught and carried out as a value ([`Shared::panic`]); unwinding
//!   never crosses generated frames, which have no unwind tables. The dispatcher resumes it once
//!   generated code has returned.

use std::any::Any;
use std::panic::AssertUnwindSafe;

use emu_core::cpu::StepResult;
use emu_core::state::{fl, CpuState};
use emu_core::tlb::FastEntry;
use emu_core::{Cpu, PortIo};
use iced_x86::Instruction;

use crate::backend::abi::{ctx, JumpCacheEntry};
use crate::stats::JitStats;

/// The context generated code is entered with (`#[repr(C)]`: the trampoline reads the first
/// five fields at the offsets of [`crate::backend::abi::ctx`]).
#[repr(C)]
pub(crate) struct Ctx<'a> {
    /// The CPU's architectural state.
    pub state: *mut CpuState,
    /// The TLB's fast view.
    pub fast_tlb: *const FastEntry,
    /// No block may start unless `retired + its length <= limit`.
    pub limit: u64,
    /// The jump cache.
    pub jump_cache: *const JumpCacheEntry,
    /// Written by generated code on exit: blocks entered since `enter`.
    pub blocks: u64,
    /// The CPU (for callouts).
    pub cpu: *mut Cpu,
    /// The port space (for callouts).
    pub io: *mut (dyn PortIo + 'a),
    /// The runtime's callout table and results.
    pub shared: *mut Shared,
}

const _: () = assert!(core::mem::offset_of!(Ctx<'static>, state) == ctx::STATE as usize);
const _: () = assert!(core::mem::offset_of!(Ctx<'static>, fast_tlb) == ctx::FAST_TLB as usize);
const _: () = assert!(core::mem::offset_of!(Ctx<'static>, limit) == ctx::LIMIT as usize);
const _: () = assert!(core::mem::offset_of!(Ctx<'static>, jump_cache) == ctx::JUMP_CACHE as usize);
const _: () = assert!(core::mem::offset_of!(Ctx<'static>, blocks) == ctx::BLOCKS as usize);

/// Where an inline instruction's memory accesses go, so that after its slow path the TLB's fast
/// view can be refilled for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MemUse {
    /// It has an explicit memory operand.
    pub operand: bool,
    /// It pushes this many bytes (0: none).
    pub push: u8,
    /// It pops from the stack.
    pub pop: bool,
}

/// Why an instruction is run by emu-core rather than inline (for the statistics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CalloutKind {
    /// An inline instruction's slow path (TLB miss, segment check, code page, MMIO).
    SlowPath,
    /// An innocuous instruction not translated inline (rare or complex).
    Innocuous,
    /// A sensitive or privileged instruction (Popek–Goldberg).
    Sensitive,
    /// Port I/O.
    Io,
}

/// One instruction generated code may call out for.
#[derive(Clone, Debug)]
pub(crate) struct CalloutInfo {
    /// The decoded instruction.
    pub insn: Instruction,
    /// Its fall-through EIP: anything else ends the block.
    pub next_eip: u32,
    /// As a callout: the block ends after it.
    pub stop: bool,
    /// It is port I/O.
    pub io: bool,
    /// It is an inline branch (its slow path never rejoins).
    pub branch: bool,
    /// Its kind as a callout (an inline instruction's callout is its slow path).
    pub kind: CalloutKind,
    /// Its memory accesses (inline instructions).
    pub mem: MemUse,
    /// It straddles a page end: fetched and decoded afresh (`Cpu::fetch_execute`), never run
    /// from the copy decoded at translation.
    pub refetch: bool,
}

/// State shared between the dispatcher and callouts during one entry.
#[derive(Default)]
pub(crate) struct Shared {
    /// Callouts by id.
    pub callouts: Vec<CalloutInfo>,
    /// A callout's step that did not simply retire (halt, shutdown).
    pub stop: Option<StepResult>,
    /// Steps taken by callouts that retired nothing (exceptions delivered).
    pub nonretired: u64,
    /// A panic caught in a callout.
    pub panic: Option<Box<dyn Any + Send>>,
    /// A callout wrote to a port (the platform must look before the run goes on).
    pub port_written: bool,
    /// Counters.
    pub stats: JitStats,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("callouts", &self.callouts.len()).finish_non_exhaustive()
    }
}

/// Where generated code runs: the trampoline, and what it may reach besides the CPU.
pub(crate) struct Entry<'s> {
    /// Address of the backend's entry trampoline in the live arena.
    pub trampoline: usize,
    /// The jump cache, its generation entry first.
    pub jump_cache: &'s [JumpCacheEntry],
    /// The callout table and results.
    pub shared: &'s mut Shared,
    /// No block may start unless `retired + its length <= limit`.
    pub limit: u64,
}

/// Runs generated code from the block at `code` (compiled into the arena since its last reset)
/// until it returns: the exit reason ([`crate::backend::abi::reason`]) and how many blocks
/// were entered.
pub(crate) fn enter(e: Entry<'_>, cpu: &mut Cpu, io: &mut dyn PortIo, code: usize) -> (u32, u64) {
    let cpu: *mut Cpu = cpu;
    // SAFETY: `cpu` comes from a live exclusive borrow; taking the address of one of its fields
    // reads nothing. Deriving both pointers from the same raw pointer keeps them both usable.
    let state = unsafe { core::ptr::addr_of_mut!((*cpu).state) };
    // SAFETY: as above.
    let fast_tlb = unsafe { (*cpu).tlb.fast_base() };
    let mut c = Ctx {
        state,
        fast_tlb,
        limit: e.limit,
        // The first entry is the generation, read by generated code at [cache - 16].
        jump_cache: e.jump_cache.as_ptr().wrapping_add(1),
        blocks: 0,
        cpu,
        io,
        shared: e.shared,
    };
    // SAFETY: see the module header: `trampoline` is the backend's entry stub in the live arena,
    // with the signature `extern "sysv64" fn(*mut Ctx, usize) -> u32`, and `code` a block in it.
    let f: extern "sysv64" fn(*mut Ctx<'_>, usize) -> u32 = unsafe { core::mem::transmute(e.trampoline) };
    let why = f(&mut c, code);
    (why, c.blocks)
}

/// Called by generated code to run instruction `id` through emu-core. Returns 0 to continue
/// with the next instruction inline, anything else to return to the dispatcher (the state is
/// then current).
///
/// # Safety
///
/// `c` must be the context generated code was entered with (see the module header).
pub(crate) unsafe extern "sysv64" fn callout(c: *mut Ctx<'_>, id: u32) -> u32 {
    // SAFETY: generated code passes back the context `enter` gave it; it lives on the
    // dispatcher's stack for the whole entry and nothing else borrows it meanwhile.
    let c = unsafe { &mut *c };
    // SAFETY: `cpu`, `io` and `shared` come from exclusive borrows the dispatcher gave up for
    // the entry; generated code is suspended while they are used here.
    let (cpu, io, shared) = unsafe { (&mut *c.cpu, &mut *c.io, &mut *c.shared) };
    match std::panic::catch_unwind(AssertUnwindSafe(|| run_callout(cpu, io, shared, id))) {
        Ok(status) => status,
        Err(payload) => {
            shared.panic = Some(payload);
            1
        }
    }
}

/// Called by generated code to materialize the lazy flags: the arithmetic bits of EFLAGS.
///
/// # Safety
///
/// `state` must be the state pointer generated code was entered with.
pub(crate) unsafe extern "sysv64" fn arith_flags(state: *const CpuState) -> u32 {
    // SAFETY: generated code passes the state it runs on; nothing else borrows it meanwhile.
    let s = unsafe { &*state };
    s.eflags() & fl::ARITH
}

/// The body of [`callout`].
fn run_callout(cpu: &mut Cpu, io: &mut dyn PortIo, sh: &mut Shared, id: u32) -> u32 {
    let Some(c) = sh.callouts.get(id as usize) else { return 1 };
    let (insn, next_eip, kind, mem, refetch) = (c.insn, c.next_eip, c.kind, c.mem, c.refetch);
    // Port I/O that must end the block has `stop` (IN does not: see the frontend).
    let mut stop = c.stop || c.branch;
    if c.stop || c.io {
        // The platform's notion of now: this instruction's time (it may do I/O, or halt).
        io.sync_time(cpu.state.retired);
    }
    let lins = if kind == CalloutKind::SlowPath { super::linears(cpu, &insn, mem) } else { [None; 2] };
    let before = cpu.state.retired;
    let ferr = cpu.fpu.ferr();
    let r = if c.io {
        let mut watch = super::Watch { io, touched: false };
        let r = cpu.execute(&mut watch, &insn);
        sh.port_written |= watch.touched;
        // A write, or (never seen) a read that raised an interrupt request: the dispatcher
        // looks before the next instruction, as the interpreter would.
        stop |= watch.touched || (cpu.state.eflags & fl::IF != 0 && watch.io.interrupt_pending());
        r
    } else if refetch {
        cpu.fetch_execute(io)
    } else {
        cpu.execute(io, &insn)
    };
    sh.stats.count_callout(kind, insn.mnemonic());
    if cpu.state.retired == before {
        sh.nonretired += 1;
        stop = true;
    }
    if cpu.fpu.ferr() != ferr {
        // FERR# moved IRQ 13: the dispatcher looks at INTR before the next instruction.
        stop = true;
    }
    if r != StepResult::Retired {
        sh.stop = Some(r);
        stop = true;
    }
    if cpu.state.eip != next_eip || cpu.mem.smc_pending() {
        stop = true;
    }
    if !stop {
        for lin in lins.into_iter().flatten() {
            super::refresh_fast(cpu, lin);
        }
    }
    u32::from(stop)
}
