//! bt86's binary translator: guest basic blocks to host machine code, with a code cache.
//!
//! ```text
//!            guest-physical bytes (GuestMemory, through the TLB)
//!                     │
//!   frontend ─────────┤  iced-x86 decode, one basic block (ends at a branch, a sensitive or
//!   (frontend.rs)     │  I/O instruction, the page end, 64 instructions); emu-core's one
//!                     │  instruction table decides inline vs callout (Popek–Goldberg class,
//!                     │  props BRANCH/MODE/IO); backward flag liveness
//!                     ▼
//!   IR (ir.rs)        Block { Insn { Op (Mov, Alu, Push, Jcc, … | Callout), live flags } }
//!                     │
//!   backend ──────────┤  trait Backend; x64 (dynasmrt VecAssembler per block, for the
//!   (backend/)        │  address it will run at): pinned guest registers, lazy flags,
//!                     │  compare+branch fused on host flags, inline TLB fast path
//!                     │  (one compare, one add), slow path = the instruction in emu-core
//!                     ▼
//!   runtime ──────────┤  code arena (W^X, flushed when full) · block cache keyed by
//!   (runtime/)        │  (physical address, EIP, mode key) · chaining within a page ·
//!                     │  jump cache for indirect and cross-page branches · 64-byte-line
//!                     │  self-modifying-code invalidation · dispatcher: interrupts,
//!                     │  instruction budgets up to device deadlines, interpreter fallback
//!                     ▼
//!            Jit::run(cpu, io, limit) — the same retired instructions as Cpu::step
//! ```
//!
//! The interpreter in emu-core defines the semantics; everything the translator does not do
//! inline it hands to the very same emu-core handler (a callout), so the two engines cannot
//! disagree on sensitive, privileged or rare instructions. `unsafe` lives in two modules only:
//! the code arena (`runtime::arena`) and the JIT entry (`runtime::entry`), each block with its
//! safety argument. There is no global state: a `Jit` belongs to one machine.
//!
//! The runtime and the x86-64 backend exist on x86-64 hosts; elsewhere [`Jit::new`] reports
//! that there is no backend for the host and bt86 interprets (the frontend and IR build and are
//! tested everywhere).

pub mod backend;
pub mod frontend;
pub mod ir;
pub mod mode;
#[cfg(target_arch = "x86_64")]
pub mod runtime;
pub mod stats;

pub use stats::{Fallback, JitStats};

#[cfg(target_arch = "x86_64")]
pub use runtime::{Jit, JitOptions, RunLimit, RunOutcome};

/// There is no backend for this host: [`Jit::new`] always fails and bt86 interprets.
#[cfg(not(target_arch = "x86_64"))]
mod unsupported {
    use emu_core::cpu::StepResult;
    use emu_core::{Cpu, PortIo};

    use crate::JitStats;

    /// Knobs of the translator (no effect on this host).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct JitOptions {
        /// Size of the code arena in bytes.
        pub arena_size: usize,
        /// Chain direct exits.
        pub chaining: bool,
        /// Invalidations after which a page is interpreted.
        pub smc_limit: u32,
        /// Return after every unit.
        pub unit: bool,
        /// Print every block's IR.
        pub dump: bool,
        /// Print every block's host code.
        pub dump_code: bool,
        /// Count block entries.
        pub count_blocks: bool,
    }

    /// A limit on one run.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct RunLimit {
        /// Steps.
        pub steps: u64,
        /// Retired-instruction limit.
        pub retired: u64,
    }

    /// How a run ended.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct RunOutcome {
        /// The last step's result.
        pub result: StepResult,
        /// Steps taken.
        pub steps: u64,
    }

    /// The translator, which this host has no backend for.
    #[derive(Debug)]
    pub struct Jit {
        stats: JitStats,
    }

    impl JitOptions {
        /// The defaults.
        pub fn from_env() -> JitOptions {
            JitOptions::default()
        }
    }

    impl Jit {
        /// Always fails: no backend for this host.
        pub fn new() -> std::io::Result<Jit> {
            Jit::with_options(JitOptions::default())
        }

        /// Always fails: no backend for this host.
        pub fn with_options(_options: JitOptions) -> std::io::Result<Jit> {
            Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "the binary translator has no backend for this host architecture",
            ))
        }

        /// The counters.
        pub fn stats(&self) -> &JitStats {
            &self.stats
        }

        /// Never called: no `Jit` exists on this host.
        pub fn run(&mut self, cpu: &mut Cpu, io: &mut dyn PortIo, _limit: RunLimit) -> RunOutcome {
            RunOutcome { result: cpu.step(io), steps: 1 }
        }

        /// Never called: no `Jit` exists on this host.
        pub fn flush_cache(&mut self, _cpu: &mut Cpu) {}
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub use unsupported::{Jit, JitOptions, RunLimit, RunOutcome};
