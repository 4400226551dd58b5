//! Backends: IR blocks → host machine code, behind one trait ([`Backend`]).
//!
//! Host references: the System V AMD64 ABI (and, for the next backend, AAPCS64) at the
//! boundary between generated code and Rust; the guest side follows the IR, not an SDM section.
//!
//! A backend turns a [`Block`] into position-dependent code for the address the runtime will
//! copy it to, and reports where its chainable exits are so the runtime can patch them. The
//! contract between generated code and the runtime — the context block, the jump cache, the
//! exit reasons — is [`abi`], the same for every host.
//!
//! Hosts: [`x64`] (x86-64 with dynasmrt). An aarch64 backend is the next one; until it exists
//! the runtime is not built on other hosts and bt86 interprets there.

use crate::ir::Block;

#[cfg(target_arch = "x86_64")]
pub mod x64;

/// The contract between generated code and the runtime (see the module header).
pub mod abi {
    /// Why generated code returned to the dispatcher: the low 8 bits of the returned value.
    pub mod reason {
        /// The block ended; EIP is in the state.
        pub const NORMAL: u32 = 0;
        /// A direct exit not chained yet; bits 8.. are the exit's id, EIP is its target.
        pub const CHAIN: u32 = 1;
        /// An indirect (or cross-page) branch whose target the jump cache did not hold.
        pub const JUMP_CACHE_MISS: u32 = 2;
        /// The next block did not fit in the instruction budget; EIP is its first instruction.
        pub const BUDGET: u32 = 3;
        /// A callout asked to stop (exception delivered, mode change, I/O, HLT, SMC, panic).
        pub const CALLOUT: u32 = 4;
    }

    /// Byte offsets in the context block generated code is entered with (the runtime's
    /// `Ctx`, `#[repr(C)]`, which asserts them).
    pub mod ctx {
        /// `*mut CpuState`.
        pub const STATE: i32 = 0;
        /// `*const FastEntry`: the TLB's fast-path view.
        pub const FAST_TLB: i32 = 8;
        /// `u64`: no block may start unless `retired + its length <= limit`.
        pub const LIMIT: i32 = 16;
        /// `*const JumpCacheEntry`.
        pub const JUMP_CACHE: i32 = 24;
        /// `u64`, written on exit: blocks entered since the dispatcher's entry.
        pub const BLOCKS: i32 = 32;
    }

    /// Entries in the jump cache (a power of two).
    pub const JUMP_CACHE_ENTRIES: usize = 1 << 14;

    /// The jump cache's generation sits in the tag above the mode id (12 bits, see the
    /// runtime's mode limit): emptying the cache is one increment of the generation, which the
    /// entry just before the cache holds (pre-shifted, in its `tag`), and generated code ORs
    /// into the tag it looks for. The cache is wiped for real only when the generation wraps.
    pub const JUMP_CACHE_GEN_SHIFT: u32 = 44;

    /// Generations before a real wipe (the all-ones tag stays the empty one).
    pub const JUMP_CACHE_GENS: u64 = (1 << (64 - JUMP_CACHE_GEN_SHIFT)) - 1;

    /// The jump-cache slot of `eip`. Generated code computes the same.
    #[inline]
    pub fn jump_cache_slot(eip: u32) -> usize {
        ((eip >> 10) ^ eip) as usize & (JUMP_CACHE_ENTRIES - 1)
    }

    /// The tag of a jump-cache entry: EIP in the low half, the mode id and the generation in
    /// the high half.
    #[inline]
    pub fn jump_cache_tag(eip: u32, mode_id: u32, generation: u64) -> u64 {
        u64::from(eip) | u64::from(mode_id) << 32 | generation << JUMP_CACHE_GEN_SHIFT
    }

    /// One jump-cache entry (16 bytes: tag, then the block's entry address).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    #[repr(C)]
    pub struct JumpCacheEntry {
        /// [`jump_cache_tag`], or `u64::MAX` when empty.
        pub tag: u64,
        /// Host address of the block's entry.
        pub code: u64,
    }

    impl JumpCacheEntry {
        /// An empty entry (no mode id is `u32::MAX`).
        pub const EMPTY: JumpCacheEntry = JumpCacheEntry { tag: u64::MAX, code: 0 };
    }

    const _: () = assert!(core::mem::size_of::<JumpCacheEntry>() == 16);
    const _: () = assert!(core::mem::offset_of!(JumpCacheEntry, code) == 8);
}

/// What a block's code needs to know about the runtime around it.
#[derive(Clone, Copy, Debug)]
pub struct CodeEnv {
    /// The shared exit that stores the guest registers and returns to the dispatcher.
    pub exit: usize,
    /// The shared exit that returns without storing them (the state is already current).
    pub exit_nostore: usize,
    /// `callout(ctx, id) -> status`: runs one instruction through emu-core.
    pub callout: usize,
    /// `arith_flags(state) -> EFLAGS arithmetic bits`: materializes the lazy flags.
    pub arith_flags: usize,
    /// The interned mode key (jump-cache tags).
    pub mode_id: u32,
    /// Callout id of the block's first instruction (instruction `i` has `callout_base + i`).
    pub callout_base: u32,
    /// Exit id of the block's first chainable exit (the next ones follow).
    pub first_exit: u32,
    /// Direct exits may be chained (off in lockstep, where every block returns).
    pub chaining: bool,
    /// Count block entries (for the statistics; costs a memory increment per block).
    pub count_blocks: bool,
    /// Host address of guest-physical 0 (the RAM mapping), for direct reads while linear
    /// addresses are physical (`ModeKey::identity`).
    pub ram_base: usize,
    /// Guest-physical bytes from 0 that may be read directly there (0: none).
    pub ram_direct: u32,
    /// Where guest memory's direct-write map starts, from `ram_base`
    /// (`GuestMemory::direct_writes`): stores there check their page's byte instead of
    /// probing the TLB. `None`: they probe.
    pub ram_write_map: Option<i32>,
    /// The shared stub that loads the guest's arithmetic flags into the host's from the
    /// record in the state (called; clobbers only r9).
    pub regen_flags: usize,
    /// The same, for a consumer that does not need AF.
    pub regen_flags_noaf: usize,
}

/// A chainable exit of a compiled block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainSite {
    /// Offset in the block's code of the jump to patch.
    pub offset: usize,
    /// Guest EIP it leads to (in the block's page).
    pub target: u32,
    /// The block leaves its last flag record unwritten on this path: chain it only to a block
    /// that overwrites every flag before anything can read them (`Block::flags_live_in == 0`).
    pub dead_flags: bool,
    /// For a flags-dead site: its out-of-line budget check (offset of its first instruction,
    /// and offset of the rel32 of its jump to the target's body). Chaining points the site at
    /// the check and the check's jump at the target; unchained, the site falls through.
    pub stub: Option<(usize, usize)>,
}

/// A compiled block.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// The code, valid only at the base address it was compiled for.
    pub code: Vec<u8>,
    /// Its chainable exits, in exit-id order.
    pub chain_sites: Vec<ChainSite>,
    /// Where its body starts, after the budget check: flags-dead chain sites, which checked
    /// for the longest block already, enter there.
    pub body_offset: usize,
}

/// The runtime's fixed code: the entry trampoline and the shared exits.
#[derive(Clone, Debug)]
pub struct Stubs {
    /// The code, valid only at the base address it was made for.
    pub code: Vec<u8>,
    /// Offset of `entry(ctx, block) -> reason`.
    pub entry: usize,
    /// Offset of the exit that stores the guest registers.
    pub exit: usize,
    /// Offset of the exit that does not.
    pub exit_nostore: usize,
    /// Offset of the flag-regeneration stub ([`CodeEnv::regen_flags`]).
    pub regen_flags: usize,
    /// Offset of the one for consumers that do not need AF.
    pub regen_flags_noaf: usize,
}

/// A block the backend cannot compile (an assembler error: a bug, reported, never a crash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendError(pub String);

/// A host code generator.
pub trait Backend {
    /// The host architecture's name.
    fn name(&self) -> &'static str;
    /// The entry trampoline, the shared exits and the flag-regeneration stubs (which call
    /// `arith_flags` for records they do not handle inline), for address `base`.
    fn stubs(&self, base: usize, arith_flags: usize) -> Result<Stubs, BackendError>;
    /// Code for `block` at address `base`.
    fn compile(&self, block: &Block, env: &CodeEnv, base: usize) -> Result<Compiled, BackendError>;
    /// The bytes to write at a chain site (at address `site`) so it jumps to `target`, or back
    /// to its own unchained exit for `None`.
    fn chain_bytes(&self, site: usize, target: Option<usize>) -> [u8; 4];
}
