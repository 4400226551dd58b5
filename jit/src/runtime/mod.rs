//! The runtime: the dispatcher that runs guest code block by block, the block cache, chaining,
//! the jump cache, invalidation of self-modified code, and the arena's life cycle.
//!
//! Follows Intel SDM Vol. 3A §6.9 (interrupts are taken at instruction boundaries, in priority
//! order, and not after an instruction that set an interrupt shadow, §6.8.3), §17.3.1.4
//! (single-step traps) and §11.6 (self-modifying code: a write to code takes effect for the
//! next instruction). The dispatcher makes the translator retire exactly the instructions the
//! interpreter would, in the same order, with interrupts taken at the same boundaries:
//!
//! - every boundary where an interrupt could be taken is a dispatcher boundary: blocks end after
//!   every instruction that can change interrupt deliverability or the platform (non-innocuous
//!   callouts, I/O), and nothing else changes devices while generated code runs;
//! - no block starts unless all of its instructions fit before the next device deadline (and the
//!   caller's step budget); a block that does not fit is run by the interpreter, one step at a
//!   time;
//! - instructions that need the interpreter's full step (a pending interrupt, a shadow, TF, a
//!   fetch that faults, an instruction no block can start with) are run by `Cpu::step`, and
//!   before anything that may touch a port the platform is told the current instruction count
//!   (`PortIo::sync_time`), so devices see the time they would in the interpreter.
//!
//! Blocks are keyed by (guest physical address, EIP, mode id) — see [`crate::mode`]. A direct
//! exit to the same page is patched to jump straight to its target once the target exists
//! (chaining); other exits go through the jump cache, keyed by (EIP, mode id), filled by the
//! dispatcher and emptied when translations change (TLB flushes, invalidations, flushes).
//!
//! Self-modifying code: translating a block marks its 64-byte lines in guest memory and takes
//! direct writes away from its page; a write to a marked line, by whatever path, is logged and
//! makes the writing instruction's callout stop the block; the dispatcher then drops every
//! block made from those lines (unpatching chains into them). A page whose blocks are dropped
//! again and again is interpreted from then on.

pub(crate) mod arena;
pub(crate) mod entry;

use std::collections::{HashMap, HashSet};

use emu_core::cpu::{Access, StepResult};
use emu_core::isa::{self, PgClass, Props};
use emu_core::memory::{CODE_LINE, PAGE_SIZE};
use emu_core::state::{cr0, fl, SegReg};
use emu_core::tlb::perm;
use emu_core::{Cpu, PortIo, Size};
use iced_x86::{Instruction, OpKind};

use crate::backend::abi::{self, reason, JumpCacheEntry};
use crate::backend::x64::X64;
use crate::backend::{Backend, CodeEnv};
use crate::frontend;
use crate::ir::{Block, Op};
use crate::mode::ModeKey;
use crate::options::{JitOptions, RunLimit, RunOutcome};
use crate::stats::{Fallback, JitStats};
use arena::CodeArena;
use entry::{CalloutInfo, CalloutKind, Entry, MemUse, Shared};

/// A translated block.
#[derive(Clone, Debug)]
struct BlockMeta {
    phys: u32,
    eip: u32,
    mode: u32,
    /// Entry address, or `None` when its first instruction must be interpreted.
    entry: Option<usize>,
    /// Offset of the body, past the budget check.
    body: usize,
    insns: u32,
    /// Bytes of guest code it was made from.
    len: u32,
    io: bool,
    /// Flags live at entry (0: predecessors may skip writing their record).
    flags_live_in: u8,
    /// Its chainable exits (ids).
    exits: std::ops::Range<u32>,
    /// Exits of other blocks chained to it.
    incoming: Vec<u32>,
    alive: bool,
}

/// A block compiled into the arena.
struct Placed {
    addr: usize,
    body: usize,
    first_exit: u32,
    /// Chain sites, as the backend reports them.
    sites: Vec<crate::backend::ChainSite>,
}

/// A chainable exit.
#[derive(Clone, Copy, Debug)]
struct ExitSite {
    block: u32,
    /// The guest EIP it leads to.
    target: u32,
    /// Address of the jump's rel32 field.
    addr: usize,
    /// The block it is chained to.
    linked: Option<u32>,
    /// Chain only to a block with no flags live at entry (see `ChainSite::dead_flags`).
    dead_flags: bool,
    /// For a flags-dead site: the address of its out-of-line budget check, and of the rel32 of
    /// the check's jump to the target.
    stub: Option<(usize, usize)>,
}

/// A small, fast hasher for the runtime's integer keys (FxHash's multiply-rotate): the keys are
/// the runtime's own, so nothing adversarial reaches it, and SipHash showed up in profiles.
#[derive(Clone, Copy, Debug, Default)]
struct Fx(u64);

impl std::hash::Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u8(&mut self, v: u8) {
        self.write_u64(u64::from(v));
    }

    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

type FxBuild = std::hash::BuildHasherDefault<Fx>;
type FxMap<K, V> = HashMap<K, V, FxBuild>;

/// Most distinct modes before the cache is flushed (mode ids are never reused otherwise).
const MAX_MODES: usize = 4096;
/// Most blocks (alive or dead) before the cache is flushed.
const MAX_BLOCKS: usize = 1 << 20;
/// Most chain sites before the cache is flushed: an exit id travels in the upper 24 bits of
/// the exit reason.
const MAX_EXITS: usize = 1 << 23;
/// The arena is flushed before a translation when less than this is free (more than any
/// block's code).
const MIN_FREE: usize = 64 << 10;

/// The binary translator and its code cache.
pub struct Jit {
    backend: X64,
    arena: CodeArena,
    /// Trampoline, exits, and how many arena bytes they take.
    entry: usize,
    exit: usize,
    exit_nostore: usize,
    /// The flag-regeneration stubs (all flags, all but AF).
    regen_flags: (usize, usize),
    stubs_len: usize,
    options: JitOptions,
    /// The perf JIT map being written (`JitOptions::perf_map`).
    perf_map: Option<std::io::BufWriter<std::fs::File>>,
    blocks: Vec<BlockMeta>,
    map: FxMap<(u32, u32, u32), u32>,
    pages: FxMap<u32, Vec<u32>>,
    exits: Vec<ExitSite>,
    modes: FxMap<ModeKey, u32>,
    /// The mode looked up last, and its id (the dispatcher's common case).
    last_mode: Option<(ModeKey, u32)>,
    /// The jump cache: its generation entry, then the entries (generated code gets a pointer
    /// to the first entry).
    jump_cache: Box<[JumpCacheEntry]>,
    /// The jump cache's current generation.
    jump_cache_gen: u64,
    shared: Box<Shared>,
    /// Invalidations per physical page, and the pages given up on.
    smc_counts: HashMap<u32, u32>,
    smc_pages: HashSet<u32>,
    /// A CHAIN exit waiting for its target block.
    pending_link: Option<u32>,
    /// What the TLB's fast view and the jump cache were last valid for.
    seen_memory: (usize, usize),
    /// Guest RAM for direct reads: host address of physical 0, bytes readable.
    ram: (usize, u32),
    /// Where guest memory's direct-write map starts, from the RAM base.
    ram_write_map: Option<i32>,
    seen_epoch: u64,
    seen_a20: bool,
    /// The TLB's (whole, non-global, single-page) flush counts last seen.
    seen_tlb: (u64, u64, u64),
    /// Jump-cache entries by the linear page of their EIP, with whether that page's
    /// translation is global: a TLB flush then forgets only the entries it may have changed
    /// (a context switch keeps the kernel's, an INVLPG keeps other pages').
    jc_pages: FxMap<u32, (bool, Vec<(u32, u64)>)>,
    /// Entries listed in `jc_pages` (stale ones included).
    jc_listed: usize,
}

impl std::fmt::Debug for Jit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jit")
            .field("backend", &self.backend.name())
            .field("arena_used", &self.arena.used())
            .field("blocks", &self.blocks.len())
            .finish_non_exhaustive()
    }
}

impl Jit {
    /// A translator with default options.
    pub fn new() -> std::io::Result<Jit> {
        Jit::with_options(JitOptions::default())
    }

    /// A translator with `options`.
    pub fn with_options(options: JitOptions) -> std::io::Result<Jit> {
        let mut arena = CodeArena::new(options.arena_size)?;
        let backend = X64;
        let stubs = backend
            .stubs(arena.cursor(), entry::arith_flags as *const () as usize)
            .map_err(|e| std::io::Error::other(e.0))?;
        let base =
            arena.alloc(&stubs.code).ok_or_else(|| std::io::Error::other("the code arena is too small"))?;
        Ok(Jit {
            backend,
            entry: base + stubs.entry,
            exit: base + stubs.exit,
            exit_nostore: base + stubs.exit_nostore,
            regen_flags: (base + stubs.regen_flags, base + stubs.regen_flags_noaf),
            stubs_len: arena.used(),
            arena,
            perf_map: if options.perf_map {
                let path = format!("/tmp/perf-{}.map", std::process::id());
                std::fs::File::create(&path).ok().map(std::io::BufWriter::new)
            } else {
                None
            },
            options,
            blocks: Vec::new(),
            map: FxMap::default(),
            pages: FxMap::default(),
            exits: Vec::new(),
            modes: FxMap::default(),
            last_mode: None,
            jump_cache: vec![JumpCacheEntry { tag: 0, code: 0 }]
                .into_iter()
                .chain(std::iter::repeat_n(JumpCacheEntry::EMPTY, abi::JUMP_CACHE_ENTRIES))
                .collect(),
            jump_cache_gen: 0,
            shared: Box::default(),
            smc_counts: HashMap::new(),
            smc_pages: HashSet::new(),
            pending_link: None,
            seen_memory: (0, 0),
            ram: (0, 0),
            ram_write_map: None,
            seen_epoch: 0,
            seen_a20: true,
            seen_tlb: (0, 0, 0),
            jc_pages: FxMap::default(),
            jc_listed: 0,
        })
    }

    /// The counters.
    pub fn stats(&self) -> &JitStats {
        &self.shared.stats
    }

    /// The options.
    pub fn options(&self) -> JitOptions {
        self.options
    }

    /// Runs guest code until `limit`, a halt, a shutdown, or a port write the platform must look
    /// at (see the module header).
    pub fn run(&mut self, cpu: &mut Cpu, io: &mut dyn PortIo, limit: RunLimit) -> RunOutcome {
        self.sync_env(cpu);
        let start = cpu.state.retired;
        let mut nonretired = 0u64;
        loop {
            let taken = cpu.state.retired - start + nonretired;
            if taken >= limit.steps || cpu.state.retired >= limit.retired {
                return RunOutcome { result: StepResult::Retired, steps: taken };
            }
            // The instruction boundary: NMI, then maskable interrupts (as `Cpu::step`).
            if !cpu.state.int_shadow {
                if !cpu.state.nmi_blocked && io.take_nmi() {
                    cpu.state.nmi_blocked = true;
                    self.pending_link = None;
                    self.shared.stats.count_fallback(Fallback::Interrupt);
                    io.sync_time(cpu.state.retired);
                    let r = cpu.inject_external(2);
                    nonretired += 1;
                    self.after_interpreter(cpu);
                    if r != StepResult::Retired || self.options.unit {
                        return RunOutcome { result: r, steps: taken + 1 };
                    }
                    continue;
                }
                if cpu.state.eflags & fl::IF != 0 && io.interrupt_pending() {
                    match self.interpret(cpu, io, Fallback::Interrupt, &mut nonretired, start) {
                        Some(out) => return out,
                        None => continue,
                    }
                }
            }
            if cpu.state.halted {
                io.sync_time(cpu.state.retired);
                let r = cpu.step(io);
                return RunOutcome { result: r, steps: taken + 1 };
            }
            let why = if cpu.state.int_shadow || cpu.state.ss_shadow {
                Some(Fallback::Shadow)
            } else if cpu.state.eflags & fl::TF != 0 {
                Some(Fallback::SingleStep)
            } else {
                None
            };
            if let Some(why) = why {
                match self.interpret(cpu, io, why, &mut nonretired, start) {
                    Some(out) => return out,
                    None => continue,
                }
            }
            let id = match self.find_block(cpu) {
                Ok(id) => id,
                Err(why) => match self.interpret(cpu, io, why, &mut nonretired, start) {
                    Some(out) => return out,
                    None => continue,
                },
            };
            let (entry, insns, io_block) = {
                let b = &self.blocks[id as usize];
                (b.entry, u64::from(b.insns), b.io)
            };
            let Some(entry) = entry else {
                match self.interpret(cpu, io, Fallback::Untranslatable, &mut nonretired, start) {
                    Some(out) => return out,
                    None => continue,
                }
            };
            let block_limit = limit.retired.min(cpu.state.retired + (limit.steps - taken));
            if cpu.state.retired + insns > block_limit {
                match self.interpret(cpu, io, Fallback::Budget, &mut nonretired, start) {
                    Some(out) => return out,
                    None => continue,
                }
            }
            let why = self.enter(cpu, io, entry, block_limit);
            nonretired += std::mem::take(&mut self.shared.nonretired);
            if let Some(payload) = self.shared.panic.take() {
                std::panic::resume_unwind(payload);
            }
            match why & 0xFF {
                reason::CHAIN => self.pending_link = Some(why >> 8),
                reason::JUMP_CACHE_MISS => self.shared.stats.jump_cache_misses += 1,
                _ => {}
            }
            let taken = cpu.state.retired - start + nonretired;
            if let Some(r) = self.shared.stop.take() {
                self.after_exit(cpu);
                return RunOutcome { result: r, steps: taken };
            }
            self.after_exit(cpu);
            let wrote = std::mem::take(&mut self.shared.port_written);
            if (io_block && wrote) || self.options.unit {
                return RunOutcome { result: StepResult::Retired, steps: taken };
            }
        }
    }

    /// One interpreter step for `why`; `Some` when the run must end after it.
    fn interpret(
        &mut self,
        cpu: &mut Cpu,
        io: &mut dyn PortIo,
        why: Fallback,
        nonretired: &mut u64,
        start: u64,
    ) -> Option<RunOutcome> {
        self.shared.stats.count_fallback(why);
        self.pending_link = None;
        io.sync_time(cpu.state.retired);
        let before = cpu.state.retired;
        let mut watch = Watch { io, touched: false };
        let r = cpu.step(&mut watch);
        let touched = watch.touched;
        if cpu.state.retired == before {
            *nonretired += 1;
        }
        self.after_interpreter(cpu);
        let steps = cpu.state.retired - start + *nonretired;
        if r != StepResult::Retired || touched || self.options.unit {
            return Some(RunOutcome { result: r, steps });
        }
        None
    }

    /// Enters generated code at `code`; returns the exit reason.
    fn enter(&mut self, cpu: &mut Cpu, io: &mut dyn PortIo, code: usize, limit: u64) -> u32 {
        self.shared.stats.dispatches += 1;
        let e =
            Entry { trampoline: self.entry, jump_cache: &self.jump_cache, shared: &mut self.shared, limit };
        let (why, blocks) = entry::enter(e, cpu, io, code);
        if self.options.count_blocks {
            self.shared.stats.chain_hits += blocks.saturating_sub(1);
        }
        why
    }

    // ------------------------------------------------------------ lookup and translation

    /// The block for CS:EIP in the current mode, translating it if needed.
    fn find_block(&mut self, cpu: &mut Cpu) -> Result<u32, Fallback> {
        let key = ModeKey::of(&cpu.state);
        let eip = cpu.state.eip;
        if eip > key.cs_limit {
            return Err(Fallback::FetchFault);
        }
        let lin = key.cs_base.wrapping_add(eip);
        let pa = cpu.translate(lin, Access::Execute, key.user()).map_err(|_| Fallback::FetchFault)?;
        if !self.smc_pages.is_empty() && self.smc_pages.contains(&(pa >> 12)) {
            return Err(Fallback::SmcPage);
        }
        if self.arena.free() < MIN_FREE || self.blocks.len() >= MAX_BLOCKS || self.exits.len() >= MAX_EXITS {
            self.flush(cpu);
        }
        let mode = self.mode_id(cpu, key);
        let id = match self.map.get(&(pa, eip, mode)) {
            Some(&id) => id,
            None => self.translate(cpu, pa, eip, key, mode)?,
        };
        if let Some(exit) = self.pending_link.take() {
            self.link(exit, id);
        }
        let b = &self.blocks[id as usize];
        if let (Some(entry), false, true) = (b.entry, b.io, self.options.chaining) {
            let slot = abi::jump_cache_slot(eip);
            let tag = abi::jump_cache_tag(eip, mode, self.jump_cache_gen);
            let new = JumpCacheEntry { tag, code: entry as u64 };
            if self.jump_cache[1 + slot] == new {
                return Ok(id);
            }
            self.jump_cache[1 + slot] = new;
            let global = cpu.tlb.is_global(lin);
            self.jc_pages.entry(lin >> 12).or_insert((global, Vec::new())).1.push((slot as u32, tag));
            self.jc_listed += 1;
            if self.jc_listed > abi::JUMP_CACHE_ENTRIES * 4 {
                self.clear_jump_cache();
            }
        }
        Ok(id)
    }

    /// The id of mode `key` (interning it).
    fn mode_id(&mut self, cpu: &mut Cpu, key: ModeKey) -> u32 {
        if let Some((k, id)) = self.last_mode {
            if k == key {
                return id;
            }
        }
        if let Some(&id) = self.modes.get(&key) {
            self.last_mode = Some((key, id));
            return id;
        }
        if self.modes.len() >= MAX_MODES {
            self.flush(cpu);
        }
        let id = self.modes.len() as u32;
        self.modes.insert(key, id);
        self.last_mode = Some((key, id));
        id
    }

    /// Translates the block at `pa`/`eip` for `key`.
    fn translate(
        &mut self,
        cpu: &mut Cpu,
        pa: u32,
        eip: u32,
        key: ModeKey,
        mode: u32,
    ) -> Result<u32, Fallback> {
        let n = frontend::window(pa, eip, &key);
        let tail = next_page_bytes(cpu, pa, eip, n, &key);
        let block = match cpu.mem.ram().get(pa as usize..pa as usize + n) {
            Some(bytes) => frontend::build_block_with_tail(bytes, &tail, eip, pa, &key),
            None => {
                let bytes: Vec<u8> = (0..n as u32).map(|i| cpu.mem.read_u8(pa.wrapping_add(i))).collect();
                frontend::build_block_with_tail(&bytes, &tail, eip, pa, &key)
            }
        };
        if self.options.dump {
            eprint!("{block}");
        }
        let id = self.blocks.len() as u32;
        if block.insns.is_empty() {
            // Interpreted; remembered (and watched, so a rewrite brings it back) all the same.
            let len = n.min(15) as u32;
            self.add_block(
                cpu,
                BlockMeta {
                    phys: pa,
                    eip,
                    mode,
                    entry: None,
                    body: 0,
                    insns: 0,
                    len,
                    io: false,
                    flags_live_in: flag_all(),
                    exits: 0..0,
                    incoming: Vec::new(),
                    alive: true,
                },
            );
            return Ok(id);
        }
        let Some(compiled) = self.compile(&block, mode) else {
            // No room (or an assembler error): start the arena afresh and interpret this step;
            // the block is translated into the empty arena next time.
            self.flush(cpu);
            return Err(Fallback::ArenaFull);
        };
        let Placed { addr: code_addr, first_exit, sites, body } = compiled;
        let exits = first_exit..first_exit + sites.len() as u32;
        for s in sites {
            self.exits.push(ExitSite {
                block: id,
                target: s.target,
                addr: code_addr + s.offset,
                linked: None,
                dead_flags: s.dead_flags,
                stub: s.stub.map(|(at, jump)| (code_addr + at, code_addr + jump)),
            });
        }
        let st = &mut self.shared.stats;
        st.blocks_translated += 1;
        st.insns_translated += block.insns.len() as u64;
        self.add_block(
            cpu,
            BlockMeta {
                phys: pa,
                eip,
                mode,
                entry: Some(code_addr),
                body,
                insns: block.insns.len() as u32,
                len: block.len,
                io: block.io,
                flags_live_in: block.flags_live_in,
                exits,
                incoming: Vec::new(),
                alive: true,
            },
        );
        Ok(id)
    }

    /// Compiles `block` into the arena and registers its callouts: its address, its first exit
    /// id and its chain sites' offsets; `None` when it does not fit.
    fn compile(&mut self, block: &Block, mode: u32) -> Option<Placed> {
        let env = CodeEnv {
            exit: self.exit,
            exit_nostore: self.exit_nostore,
            regen_flags: self.regen_flags.0,
            regen_flags_noaf: self.regen_flags.1,
            callout: entry::callout as *const () as usize,
            arith_flags: entry::arith_flags as *const () as usize,
            mode_id: mode,
            callout_base: self.shared.callouts.len() as u32,
            first_exit: self.exits.len() as u32,
            chaining: self.options.chaining,
            count_blocks: self.options.count_blocks,
            ram_base: self.ram.0,
            ram_direct: self.ram.1,
            ram_write_map: self.ram_write_map,
        };
        let compiled = match self.backend.compile(block, &env, self.arena.cursor()) {
            Ok(c) => c,
            Err(e) => {
                debug_assert!(false, "backend error: {}", e.0);
                return None;
            }
        };
        let addr = self.arena.alloc(&compiled.code)?;
        if self.options.dump_code {
            eprintln!("  host code at {addr:#x}:");
            eprint!("{}", crate::backend::x64::disassemble(&compiled.code, addr));
        }
        self.shared.stats.code_bytes += compiled.code.len() as u64;
        if let Some(w) = self.perf_map.as_mut() {
            use std::io::Write;
            let _ =
                writeln!(w, "{addr:x} {:x} guest_{:08x}_p{:08x}", compiled.code.len(), block.eip, block.phys);
            let _ = w.flush();
        }
        for i in &block.insns {
            self.shared.callouts.push(callout_info(i));
        }
        Some(Placed {
            addr,
            body: compiled.body_offset,
            first_exit: env.first_exit,
            sites: compiled.chain_sites,
        })
    }

    /// Records a block and protects the guest bytes it was made from.
    fn add_block(&mut self, cpu: &mut Cpu, meta: BlockMeta) {
        let id = self.blocks.len() as u32;
        self.map.insert((meta.phys, meta.eip, meta.mode), id);
        self.pages.entry(meta.phys >> 12).or_default().push(id);
        if meta.len > 0 {
            cpu.mem.mark_jit_code(meta.phys, meta.len);
            cpu.tlb.revoke_fast_writes(meta.phys);
        }
        self.blocks.push(meta);
    }

    /// Patches exit `exit` to jump straight to block `target`, when that is valid: both alive,
    /// same mode, same page, and the target is an ordinary translated block.
    fn link(&mut self, exit: u32, target: u32) {
        self.link_site(exit, target);
        // The flags-dead site just before, for the same edge, when the target allows it.
        if exit > 0 && (exit as usize) < self.exits.len() {
            let prev = self.exits[exit as usize - 1];
            let site = self.exits[exit as usize];
            if prev.dead_flags
                && prev.block == site.block
                && prev.target == site.target
                && self.blocks[target as usize].flags_live_in == 0
            {
                self.link_site(exit - 1, target);
            }
        }
    }

    fn link_site(&mut self, exit: u32, target: u32) {
        let Some(site) = self.exits.get(exit as usize).copied() else { return };
        let (src, dst) = (&self.blocks[site.block as usize], &self.blocks[target as usize]);
        let Some(entry) = dst.entry else { return };
        if !src.alive
            || !dst.alive
            || dst.io
            || site.linked.is_some()
            || site.target != dst.eip
            || src.mode != dst.mode
            || src.phys >> 12 != dst.phys >> 12
        {
            return;
        }
        // A flags-dead site goes through its budget check, which enters the target past its own.
        let (addr, to) = match site.stub {
            Some((stub, jump)) => {
                let bytes = self.backend.chain_bytes(jump, Some(entry + dst.body));
                if self.arena.patch(jump, &bytes).is_err() {
                    return;
                }
                (site.addr, stub)
            }
            None => (site.addr, entry),
        };
        let bytes = self.backend.chain_bytes(addr, Some(to));
        if self.arena.patch(addr, &bytes).is_ok() {
            self.exits[exit as usize].linked = Some(target);
            self.blocks[target as usize].incoming.push(exit);
            self.shared.stats.chain_links += 1;
        }
    }

    // ------------------------------------------------------------ keeping the cache valid

    /// Brings what generated code relies on up to date with the CPU (see the module header).
    fn sync_env(&mut self, cpu: &mut Cpu) {
        let memory = (cpu.mem.host_page(0).map_or(0, |h| h.addr), cpu.mem.size());
        if memory != self.seen_memory {
            // Another guest memory: nothing cached is about it.
            if !self.blocks.is_empty() {
                self.flush(cpu);
            }
            cpu.mem.clear_jit_code();
            cpu.tlb.flush_fast();
            self.seen_memory = memory;
            self.ram = cpu.mem.direct_reads();
            self.ram_write_map = cpu.mem.direct_writes();
        }
        if cpu.state.a20 != self.seen_a20 {
            cpu.tlb.flush_fast();
            self.seen_a20 = cpu.state.a20;
        }
        self.after_interpreter(cpu);
    }

    /// After the interpreter ran: pages it cached may no longer be written directly.
    fn after_interpreter(&mut self, cpu: &mut Cpu) {
        if cpu.mem.protection_epoch() != self.seen_epoch {
            cpu.tlb.flush_fast();
            self.seen_epoch = cpu.mem.protection_epoch();
        }
        self.after_exit(cpu);
    }

    /// After generated code or the interpreter ran: drop blocks whose code was written, and the
    /// jump cache if translations changed.
    fn after_exit(&mut self, cpu: &mut Cpu) {
        if cpu.mem.smc_pending() {
            self.invalidate_written(cpu);
        }
        let s = &cpu.tlb.stats;
        let now = (s.flushes - s.nonglobal_flushes, s.nonglobal_flushes, s.page_flushes);
        if now == self.seen_tlb {
            return;
        }
        let seen = std::mem::replace(&mut self.seen_tlb, now);
        let pages = cpu.tlb.take_page_log();
        if now.0 != seen.0 {
            self.clear_jump_cache();
            return;
        }
        if now.1 != seen.1 {
            let user: Vec<u32> = self.jc_pages.iter().filter(|(_, (g, _))| !g).map(|(p, _)| *p).collect();
            for p in user {
                self.forget_jump_page(p);
            }
        }
        if now.2 != seen.2 {
            match pages {
                None => self.clear_jump_cache(),
                Some(ranges) => {
                    for (first, n) in ranges {
                        if n == 1 {
                            self.forget_jump_page(first);
                        } else {
                            let hit: Vec<u32> =
                                self.jc_pages.keys().copied().filter(|p| p.wrapping_sub(first) < n).collect();
                            for p in hit {
                                self.forget_jump_page(p);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Drops the jump-cache entries made for code in linear page `page` (those still there).
    fn forget_jump_page(&mut self, page: u32) {
        if let Some((_, slots)) = self.jc_pages.remove(&page) {
            self.jc_listed -= slots.len();
            for (slot, tag) in slots {
                let e = &mut self.jump_cache[1 + slot as usize];
                if e.tag == tag {
                    *e = JumpCacheEntry::EMPTY;
                }
            }
        }
    }

    /// Empties the jump cache: a new generation (see `abi::JUMP_CACHE_GEN_SHIFT`).
    fn clear_jump_cache(&mut self) {
        self.jc_pages.clear();
        self.jc_listed = 0;
        self.jump_cache_gen += 1;
        if self.jump_cache_gen >= abi::JUMP_CACHE_GENS {
            self.jump_cache_gen = 0;
            self.jump_cache.fill(JumpCacheEntry::EMPTY);
        }
        self.jump_cache[0] =
            JumpCacheEntry { tag: self.jump_cache_gen << abi::JUMP_CACHE_GEN_SHIFT, code: 0 };
    }

    /// Drops every block made from a line the guest wrote.
    fn invalidate_written(&mut self, cpu: &mut Cpu) {
        let log = cpu.mem.take_smc();
        if log.overflow {
            self.flush(cpu);
            return;
        }
        let mut touched: Vec<u32> = Vec::new();
        for line in log.lines {
            let page = line >> 12;
            let Some(ids) = self.pages.get(&page).cloned() else { continue };
            for id in ids {
                let b = &self.blocks[id as usize];
                let (lo, hi) = (b.phys, b.phys + b.len.max(1));
                if b.alive && lo < line + CODE_LINE as u32 && line < hi {
                    self.invalidate(id);
                }
            }
            if !touched.contains(&page) {
                touched.push(page);
            }
        }
        for page in touched {
            let ids: Vec<u32> = self
                .pages
                .get(&page)
                .map(|v| v.iter().copied().filter(|&i| self.blocks[i as usize].alive).collect())
                .unwrap_or_default();
            let mut lines = 0u64;
            for &id in &ids {
                let b = &self.blocks[id as usize];
                let first = (b.phys as usize % PAGE_SIZE) / CODE_LINE;
                let last = ((b.phys as usize % PAGE_SIZE) + b.len.max(1) as usize - 1).min(PAGE_SIZE - 1)
                    / CODE_LINE;
                for l in first..=last {
                    lines |= 1 << l;
                }
            }
            cpu.mem.set_jit_lines(page << 12, lines);
            self.pages.insert(page, ids);
            let n = self.smc_counts.entry(page).or_default();
            *n += 1;
            if *n > self.options.smc_limit {
                self.smc_pages.insert(page);
            }
        }
        self.clear_jump_cache();
    }

    /// Drops block `id`: out of the map, chains into it unpatched.
    fn invalidate(&mut self, id: u32) {
        let b = &mut self.blocks[id as usize];
        if !b.alive {
            return;
        }
        b.alive = false;
        let key = (b.phys, b.eip, b.mode);
        let incoming = std::mem::take(&mut b.incoming);
        let exits = b.exits.clone();
        if self.map.get(&key) == Some(&id) {
            self.map.remove(&key);
        }
        for exit in incoming {
            let site = self.exits[exit as usize];
            let bytes = self.backend.chain_bytes(site.addr, None);
            let _ = self.arena.patch(site.addr, &bytes);
            self.exits[exit as usize].linked = None;
        }
        for exit in exits {
            if let Some(t) = self.exits[exit as usize].linked.take() {
                self.blocks[t as usize].incoming.retain(|&e| e != exit);
            }
        }
        self.shared.stats.invalidations += 1;
    }

    /// Forgets every block and empties the arena (it is full, or the guest memory changed).
    fn flush(&mut self, cpu: &mut Cpu) {
        self.arena.reset(self.stubs_len);
        self.blocks.clear();
        self.map.clear();
        self.pages.clear();
        self.exits.clear();
        self.modes.clear();
        self.last_mode = None;
        self.shared.callouts.clear();
        self.clear_jump_cache();
        self.pending_link = None;
        cpu.mem.clear_jit_code();
        self.shared.stats.flushes += 1;
    }

    /// Drops every translation (for tests and tools).
    pub fn flush_cache(&mut self, cpu: &mut Cpu) {
        self.flush(cpu);
    }
}

/// Every flag.
fn flag_all() -> u8 {
    crate::ir::flag::ALL
}

/// The first bytes of the page after the block at `pa`/`eip` (`n` bytes to its page end), for
/// an instruction that straddles the two: empty when the CS limit ends the block first or the
/// next page's translation is not cached. Read without side effects (no page walk, so no
/// accessed bit set before the guest itself fetches there); the straddling instruction is
/// fetched afresh whenever it runs, so these bytes only need to be plausible.
fn next_page_bytes(cpu: &Cpu, pa: u32, eip: u32, n: usize, key: &ModeKey) -> Vec<u8> {
    let page_left = PAGE_SIZE - (pa as usize & (PAGE_SIZE - 1));
    if n != page_left || n >= 15 {
        return Vec::new();
    }
    let next_eip = eip.wrapping_add(n as u32);
    if next_eip > key.cs_limit || next_eip < eip {
        return Vec::new();
    }
    let lin = key.cs_base.wrapping_add(next_eip);
    let phys = if key.paging() {
        match cpu.tlb.peek(lin, Access::Execute, key.user()) {
            Some(p) => p,
            None => return Vec::new(),
        }
    } else {
        lin
    };
    let phys = if cpu.state.a20 { phys } else { phys & !(1 << 20) };
    let room = (key.cs_limit - next_eip).min(14) + 1;
    (0..room).map(|i| cpu.mem.read_u8(phys.wrapping_add(i))).collect()
}

/// How a callout for instruction `i` behaves.
fn callout_info(i: &crate::ir::Insn) -> CalloutInfo {
    let info = isa::lookup(i.insn.code());
    let (class, props) = info.map_or((PgClass::Innocuous, Props::empty()), |x| (x.class, x.props));
    let io = props.contains(Props::IO);
    let kind = if i.op != Op::Callout {
        CalloutKind::SlowPath
    } else if io {
        CalloutKind::Io
    } else if class != PgClass::Innocuous {
        CalloutKind::Sensitive
    } else {
        CalloutKind::Innocuous
    };
    let mem = match i.op {
        Op::Push { size, src } => MemUse {
            operand: matches!(src, crate::ir::Operand::Mem(_)),
            push: size.bytes() as u8,
            pop: false,
        },
        Op::Call { size, .. } => MemUse { operand: false, push: size.bytes() as u8, pop: false },
        Op::CallInd { size, src } => MemUse {
            operand: matches!(src, crate::ir::Operand::Mem(_)),
            push: size.bytes() as u8,
            pop: false,
        },
        Op::Pop { .. } | Op::Ret { .. } => MemUse { operand: false, push: 0, pop: true },
        Op::Leave { .. } => MemUse { operand: false, push: 0, pop: false },
        _ => MemUse {
            operand: (0..i.insn.op_count()).any(|n| i.insn.op_kind(n) == OpKind::Memory)
                && !matches!(i.op, Op::Lea { .. }),
            push: 0,
            pop: false,
        },
    };
    CalloutInfo {
        insn: i.insn,
        next_eip: i.next_eip,
        stop: i.stop,
        io,
        branch: i.op.is_branch(),
        kind,
        mem,
        refetch: i.straddles,
    }
}

/// The linear addresses an inline instruction is about to access (before it runs), for
/// refilling the TLB's fast view after its slow path.
pub(crate) fn linears(cpu: &Cpu, insn: &Instruction, mem: MemUse) -> [Option<u32>; 2] {
    let s = &cpu.state;
    let mut out = [None; 2];
    if mem.operand {
        let seg = emu_core::isa::operand::mem_seg(insn);
        out[0] = Some(s.seg(seg).base.wrapping_add(emu_core::isa::operand::ea(s, insn)));
    }
    let ss = s.seg(SegReg::Ss).base;
    if mem.push > 0 {
        out[1] = Some(ss.wrapping_add(cpu.sp_plus(-i32::from(mem.push))));
    } else if mem.pop {
        out[1] = Some(ss.wrapping_add(cpu.sp()));
    }
    out
}

/// Lets generated code access the page of `lin` directly again, if the TLB holds its
/// translation and guest memory allows it (see `emu_core::tlb`).
pub(crate) fn refresh_fast(cpu: &mut Cpu, lin: u32) {
    let (phys, perms) = if cpu.state.cr[0] & cr0::PG != 0 {
        let e = *cpu.tlb.entry(lin);
        if !e.matches(lin) {
            return;
        }
        (e.phys, e.perms)
    } else {
        (lin & !0xFFF, perm::SR | perm::SW | perm::UR | perm::UW)
    };
    let phys = if cpu.state.a20 { phys } else { phys & !(1 << 20) };
    if let Some(host) = cpu.mem.host_page(phys) {
        cpu.tlb.set_fast(lin, phys, perms, host);
        if host.writable {
            cpu.mem.grant_direct_write(phys);
        }
    }
}

/// A port space that notes writes (the platform must look at them before the run goes on;
/// reads change devices too, but nothing the run loop acts on between two steps).
pub(crate) struct Watch<'a> {
    pub io: &'a mut dyn PortIo,
    pub touched: bool,
}

impl PortIo for Watch<'_> {
    fn io_read(&mut self, port: u16, size: Size) -> u32 {
        self.io.io_read(port, size)
    }

    fn io_write(&mut self, port: u16, size: Size, value: u32) {
        self.touched = true;
        self.io.io_write(port, size, value);
    }

    fn interrupt_pending(&mut self) -> bool {
        self.io.interrupt_pending()
    }

    fn acknowledge_interrupt(&mut self) -> u8 {
        self.io.acknowledge_interrupt()
    }

    fn take_nmi(&mut self) -> bool {
        self.io.take_nmi()
    }

    fn sync_time(&mut self, retired: u64) {
        self.io.sync_time(retired);
    }

    fn set_ferr(&mut self, asserted: bool) {
        self.io.set_ferr(asserted);
    }
}
