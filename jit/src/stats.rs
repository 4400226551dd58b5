//! The translator's counters (`bt86 run --stats`): what was translated, how blocks were entered,
//! what called out to emu-core and why, what was invalidated, and why execution fell back to
//! the interpreter.
//!
//! Bookkeeping only: no SDM section applies.

use std::collections::BTreeMap;
use std::fmt;

#[cfg(target_arch = "x86_64")]
use crate::runtime::entry::CalloutKind;

/// Why the dispatcher ran an instruction in the interpreter instead of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fallback {
    /// An interrupt or NMI was delivered (always by the interpreter's step).
    Interrupt,
    /// The previous instruction set an interrupt or MOV SS shadow.
    Shadow,
    /// EFLAGS.TF: single-step traps after every instruction.
    SingleStep,
    /// The instruction fetch faults (page not present, beyond the CS limit).
    FetchFault,
    /// The first instruction cannot start a block (undecodable, not implemented, crossing the
    /// limit end, or crossing the page end into a page whose translation is not cached).
    Untranslatable,
    /// The block is longer than the instructions left before a device deadline.
    Budget,
    /// The page was rewritten too often while holding code: it is interpreted from now on.
    SmcPage,
    /// The code arena could not hold the block even after a flush.
    ArenaFull,
}

impl Fallback {
    /// All of them, in report order.
    pub const ALL: [Fallback; 8] = [
        Fallback::Interrupt,
        Fallback::Shadow,
        Fallback::SingleStep,
        Fallback::FetchFault,
        Fallback::Untranslatable,
        Fallback::Budget,
        Fallback::SmcPage,
        Fallback::ArenaFull,
    ];

    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            Fallback::Interrupt => "interrupt delivery",
            Fallback::Shadow => "interrupt shadow",
            Fallback::SingleStep => "single-step (TF)",
            Fallback::FetchFault => "fetch fault",
            Fallback::Untranslatable => "untranslatable",
            Fallback::Budget => "budget",
            Fallback::SmcPage => "self-modifying page",
            Fallback::ArenaFull => "arena full",
        }
    }
}

/// The translator's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JitStats {
    /// Blocks translated.
    pub blocks_translated: u64,
    /// Guest instructions in them.
    pub insns_translated: u64,
    /// Host code bytes emitted.
    pub code_bytes: u64,
    /// Entries into generated code from the dispatcher.
    pub dispatches: u64,
    /// Blocks entered by a chained jump or through the jump cache (no dispatcher).
    pub chain_hits: u64,
    /// Direct exits patched to jump straight to their target.
    pub chain_links: u64,
    /// Jump-cache misses (indirect and cross-page branches that returned to the dispatcher).
    pub jump_cache_misses: u64,
    /// Blocks dropped because guest code wrote to their bytes.
    pub invalidations: u64,
    /// Whole-cache flushes (arena full, too many modes, a new guest memory).
    pub flushes: u64,
    /// Instructions run by emu-core from generated code: an inline instruction's slow path.
    pub callouts_slow_path: u64,
    /// … innocuous instructions not translated inline.
    pub callouts_innocuous: u64,
    /// … sensitive and privileged instructions.
    pub callouts_sensitive: u64,
    /// … port I/O.
    pub callouts_io: u64,
    /// Callouts by mnemonic (`iced_x86::Mnemonic as usize`; slow paths in a second half).
    pub callouts_by_mnemonic: Vec<u64>,
    /// Interpreter steps taken by the dispatcher, by reason.
    pub fallbacks: BTreeMap<Fallback, u64>,
}

impl JitStats {
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn count_callout(&mut self, kind: CalloutKind, m: iced_x86::Mnemonic) {
        match kind {
            CalloutKind::SlowPath => self.callouts_slow_path += 1,
            CalloutKind::Innocuous => self.callouts_innocuous += 1,
            CalloutKind::Sensitive => self.callouts_sensitive += 1,
            CalloutKind::Io => self.callouts_io += 1,
        }
        let n = iced_x86::Mnemonic::values().len();
        if self.callouts_by_mnemonic.is_empty() {
            self.callouts_by_mnemonic = vec![0; 2 * n];
        }
        let slot = m as usize + if kind == CalloutKind::SlowPath { n } else { 0 };
        self.callouts_by_mnemonic[slot] += 1;
    }

    /// The most frequent callouts: (name, count), most first.
    pub fn top_callouts(&self, k: usize) -> Vec<(String, u64)> {
        let n = iced_x86::Mnemonic::values().len();
        let mut v: Vec<(String, u64)> = self
            .callouts_by_mnemonic
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .filter_map(|(i, &c)| {
                let m = iced_x86::Mnemonic::values().nth(i % n)?;
                let name = format!("{m:?}").to_lowercase();
                Some((if i >= n { format!("{name} (slow path)") } else { name }, c))
            })
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(k);
        v
    }

    /// Counts an interpreter step.
    pub fn count_fallback(&mut self, why: Fallback) {
        *self.fallbacks.entry(why).or_default() += 1;
    }

    /// Adds `other` to these counters.
    pub fn add(&mut self, other: &JitStats) {
        self.blocks_translated += other.blocks_translated;
        self.insns_translated += other.insns_translated;
        self.code_bytes += other.code_bytes;
        self.dispatches += other.dispatches;
        self.chain_hits += other.chain_hits;
        self.chain_links += other.chain_links;
        self.jump_cache_misses += other.jump_cache_misses;
        self.invalidations += other.invalidations;
        self.flushes += other.flushes;
        self.callouts_slow_path += other.callouts_slow_path;
        self.callouts_innocuous += other.callouts_innocuous;
        self.callouts_sensitive += other.callouts_sensitive;
        self.callouts_io += other.callouts_io;
        if self.callouts_by_mnemonic.len() < other.callouts_by_mnemonic.len() {
            self.callouts_by_mnemonic.resize(other.callouts_by_mnemonic.len(), 0);
        }
        for (a, b) in self.callouts_by_mnemonic.iter_mut().zip(&other.callouts_by_mnemonic) {
            *a += b;
        }
        for (k, v) in &other.fallbacks {
            *self.fallbacks.entry(*k).or_default() += v;
        }
    }
}

impl fmt::Display for JitStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "translated:           {} blocks, {} instructions, {} bytes of host code",
            self.blocks_translated, self.insns_translated, self.code_bytes
        )?;
        writeln!(
            f,
            "block entries:        {} from the dispatcher, {} chained or through the jump cache \
             ({} exits chained, {} jump-cache misses)",
            self.dispatches, self.chain_hits, self.chain_links, self.jump_cache_misses
        )?;
        writeln!(
            f,
            "invalidations:        {} blocks (self-modifying code), {} cache flushes",
            self.invalidations, self.flushes
        )?;
        writeln!(
            f,
            "callouts:             {} slow paths, {} innocuous, {} sensitive/privileged, {} I/O",
            self.callouts_slow_path, self.callouts_innocuous, self.callouts_sensitive, self.callouts_io
        )?;
        let top = self.top_callouts(8);
        if !top.is_empty() {
            let list: Vec<String> = top.iter().map(|(k, v)| format!("{k} {v}")).collect();
            writeln!(f, "  most called out:    {}", list.join(", "))?;
        }
        let fb: Vec<String> = Fallback::ALL
            .iter()
            .filter_map(|k| self.fallbacks.get(k).map(|v| format!("{} {v}", k.name())))
            .collect();
        write!(f, "interpreter steps:    {}", if fb.is_empty() { "none".to_string() } else { fb.join(", ") })
    }
}
