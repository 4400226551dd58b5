//! The translator's knobs and the contract of one run ([`RunLimit`], [`RunOutcome`]), the
//! same on every host (the runtime that uses them exists only where there is a backend).

use emu_core::cpu::StepResult;

/// Knobs of the translator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JitOptions {
    /// Size of the code arena in bytes.
    pub arena_size: usize,
    /// Chain direct exits and use the jump cache (off: every block returns to the dispatcher,
    /// as lockstep execution wants).
    pub chaining: bool,
    /// Invalidations of a page's blocks after which the page is interpreted.
    pub smc_limit: u32,
    /// Return to the caller after every unit: one block, one interpreter step or one interrupt
    /// delivery (lockstep execution compares after each).
    pub unit: bool,
    /// Print every block's IR to stderr as it is translated.
    pub dump: bool,
    /// Print every block's host code too.
    pub dump_code: bool,
    /// Count block entries, for the chain-hit statistic (a memory increment per block).
    pub count_blocks: bool,
    /// Write `/tmp/perf-PID.map` (Linux perf's JIT symbol map), naming each block by its
    /// guest EIP and physical address, so `perf report` attributes host time to guest code.
    pub perf_map: bool,
}

impl JitOptions {
    /// The defaults, adjusted by the environment variable `BT86_JIT`, a comma-separated list
    /// of debugging switches: `dump` (print each block's IR), `code` (and its host code), `nochain` (no chaining, no jump
    /// cache), `unit` (return after every block), `perfmap` (write perf's JIT symbol map).
    pub fn from_env() -> JitOptions {
        let mut o = JitOptions::default();
        if let Ok(v) = std::env::var("BT86_JIT") {
            for w in v.split(',') {
                match w.trim() {
                    "dump" => o.dump = true,
                    "code" => {
                        o.dump = true;
                        o.dump_code = true;
                    }
                    "nochain" => o.chaining = false,
                    "unit" => o.unit = true,
                    "perfmap" => o.perf_map = true,
                    _ => {}
                }
            }
        }
        o
    }
}

impl Default for JitOptions {
    fn default() -> JitOptions {
        JitOptions {
            arena_size: 128 << 20,
            chaining: true,
            smc_limit: 64,
            unit: false,
            dump: false,
            dump_code: false,
            count_blocks: false,
            perf_map: false,
        }
    }
}

/// A limit on one [`crate::Jit::run`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunLimit {
    /// Steps (as the interpreter counts them: instructions, and exceptions or interrupts
    /// delivered) the run may take.
    pub steps: u64,
    /// No instruction may start once this many instructions have retired (the next device
    /// deadline).
    pub retired: u64,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutcome {
    /// The last step's result (`Retired` when the run simply reached its limit or returned for
    /// the platform to look at a port write).
    pub result: StepResult,
    /// Steps taken.
    pub steps: u64,
}
