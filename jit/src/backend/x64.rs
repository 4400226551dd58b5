//! The x86-64 backend: IR blocks → x86-64 machine code with dynasmrt (one `VecAssembler` per
//! block, assembled for the arena address the runtime will copy it to).
//!
//! Host conventions (System V AMD64 ABI, AMD64 Architecture Programmer's Manual Vol. 3 for the
//! encodings), pinned for all generated code so that chained blocks jump into each other with
//! nothing to load or store:
//!
//! ```text
//!   guest  EAX ECX EDX EBX ESP EBP ESI EDI      rbp  = &CpuState (`.alias state`)
//!   host   eax ecx edx ebx r12 r13 r14 r15      rsp  = the trampoline's frame (below)
//!   temps  rsi (effective address)  rdi (linear address, then an operand value)
//!          r8 (TLB slot → host address)  r9 (scratch)  r10 (operand value)
//!   r11    the guest's retired-instruction count (`.alias retired`), written back to the state
//!          (with the TSC advanced by as much) only where control leaves generated code
//! ```
//!
//! Guest AL/CL/DL/BL are the host's low bytes; AH/CH/DH/BH go through a temporary (a high-byte
//! register cannot be encoded next to a REX prefix). The frame the trampoline sets up holds the
//! context pointer, the instruction limit, the TLB's fast view and the jump cache.
//!
//! Block layout:
//!
//! ```text
//!   entry:   if retired + N > limit: goto budget              (N = guest instructions;
//!                                                              r11 = retired − limit
//!                                                              + SLACK)
//!            frame.blocks += 1                                 (with --stats only)
//!            <instruction 0> … <instruction n-1>               (fast paths only)
//!            <exits>                                          (chained jmp, or jump cache)
//!   side_k:  the taken path of conditional branch k: out (chained), or back into the
//!            block at the instruction it targets when no flag is live there (forward: the
//!            first such branch jumps straight there and the fall-through path adds the
//!            instructions it retired more to r11 on its way in, later ones r11 -= the
//!            difference; backward, a loop inside the block: only if retired + the rest of the
//!            block from there <= limit)
//!   copy_h:  ways in (a cascade of `add r11, k`), then instructions h … n-1 again: the loop
//!            copy entered by back edges to instruction h (up to three per block)
//!   budget:  state.eip = start; return BUDGET
//!   slow_k:  the slow path of instruction k: run it in emu-core (callout), then rejoin
//!   stop:    return CALLOUT (the state is current)
//! ```
//!
//! A conditional branch forward over a few plain instructions emits no host branch on the
//! guest's condition: the condition goes to a frame byte and the skipped instructions run
//! predicated, each write a `cmovnz` on it (see `Emitter::hammock`).
//!
//! Guest retired-instruction and TSC counts are kept exact: each path adds the number of inline
//! instructions it retired since the last such update to r11 (a `lea`, which leaves the flags
//! alone) at every exit and before every callout; r11 goes back to the state at every callout
//! and exit to the dispatcher (a callout counts its own instruction). Keeping the count in a
//! register rather than memory keeps chained blocks free of a store-to-load dependency.
//!
//! Flags: an ALU operation whose flags are needed stores the lazy record (op, size, dst, src,
//! result) emu-core reads; one whose flags are all dead stores nothing. The host's EFLAGS are
//! tracked as a cache of guest flags, valid from the host operation that made them until an
//! emitted instruction clobbers them, so `cmp`/`test` + `jcc`, `setcc`, `cmovcc`, `adc` fuse
//! onto the host's flags; otherwise the lazy record is materialized by a call and loaded with
//! `popfq`.

use core::mem::offset_of;

use dynasmrt::x64::X64Relocation;
use dynasmrt::{dynasm, DynamicLabel, DynasmApi, DynasmLabelApi, VecAssembler};
use emu_core::flags::{FlagOp, LazyFlags, Size};
use emu_core::state::{fl, CpuState, SegReg, Segment};
use emu_core::tlb::{fast_kind, FastEntry, TLB_ENTRIES};

use super::abi::{self, reason};
use super::{Backend, BackendError, ChainSite, CodeEnv, Compiled, Stubs};
use crate::ir::{flag, Addr, AluOp, Block, Cond, End, Gpr, Op, Operand, ShiftOp};
use crate::mode::SegClass;

type Asm = VecAssembler<X64Relocation>;

// ---------------------------------------------------------------- registers and frame

const RAX: u8 = 0;
const RCX: u8 = 1;
const RDX: u8 = 2;
const RBX: u8 = 3;
const RSI: u8 = 6;
const RDI: u8 = 7;
const R9: u8 = 9;
const R10: u8 = 10;
const R12: u8 = 12;

/// Host register of each guest GPR.
const GUEST: [u8; 8] = [RAX, RCX, RDX, RBX, R12, 13, 14, 15];
/// Operand temporaries.
const TA: u8 = R10;
const TB: u8 = RDI;

/// Frame slots (offsets from rsp inside generated code).
const F_CTX: i32 = 0;
const F_LIMIT: i32 = 8;
const F_TLB: i32 = 16;
const F_JC: i32 = 24;
const F_TMP: i32 = 32;
const F_BLOCKS: i32 = 40;
/// The memory operand of a flag producer whose record is pending (`Src2::Slot`).
const F_SRC: i32 = 48;
/// The host addend of the current EBP frame window (see [`frame_windows`]), 0 when it could
/// not be set up.
const F_WIN: i32 = 56;
/// The same for the current ESP window.
const F_WIN_SP: i32 = 64;
/// How far below the run's instruction limit the frame's limit is kept (r11 = retired −
/// (limit − SLACK)): a block enters while r11 + its length <= SLACK, exactly as before, and a
/// loop copy's back edge needs only `add r11, k ; jg out` to know that another pass of at most
/// [`crate::frontend::MAX_BLOCK_INSNS`] instructions still fits.
const SLACK: i32 = crate::frontend::MAX_BLOCK_INSNS as i32;

/// Most loop copies of one block (see [`Emitter::block`]): each repeats the block from its
/// loop head on.
const MAX_COPIES: usize = 3;

/// Whether the instructions of a predicated stretch take effect (see [`Emitter::hammock`]).
const F_PRED: i32 = 72;
/// Frame size: with the six callee-saved pushes and the return address, rsp stays 16-aligned.
const FRAME: i32 = 88;

/// Most instructions a conditional branch may skip and still be predicated (see
/// [`Emitter::hammock`]).
const MAX_HAMMOCK: usize = 6;

// ---------------------------------------------------------------- state offsets

const S_REGS: i32 = offset_of!(CpuState, regs) as i32;
const S_EIP: i32 = offset_of!(CpuState, eip) as i32;
const S_EFLAGS: i32 = offset_of!(CpuState, eflags) as i32;
const S_LAZY: i32 = offset_of!(CpuState, lazy) as i32;
const S_LAZY_OP: i32 = S_LAZY + offset_of!(LazyFlags, op) as i32;
const S_LAZY_RES: i32 = S_LAZY + offset_of!(LazyFlags, res) as i32;
const S_LAZY_SRC: i32 = S_LAZY + offset_of!(LazyFlags, src) as i32;
const S_LAZY_DST: i32 = S_LAZY + offset_of!(LazyFlags, dst) as i32;
const S_RETIRED: i32 = offset_of!(CpuState, retired) as i32;
const S_TSC: i32 = offset_of!(CpuState, tsc) as i32;
const S_SEGS: i32 = offset_of!(CpuState, segs) as i32;
const SEG_SIZE: i32 = core::mem::size_of::<Segment>() as i32;
const SEG_BASE: i32 = offset_of!(Segment, base) as i32;
const SEG_LIMIT: i32 = offset_of!(Segment, limit) as i32;

// The runtime's context block (see `abi::ctx`) is read by the trampoline only.
const C_STATE: i32 = abi::ctx::STATE;
const C_TLB: i32 = abi::ctx::FAST_TLB;
const C_LIMIT: i32 = abi::ctx::LIMIT;
const C_JC: i32 = abi::ctx::JUMP_CACHE;
const C_BLOCKS: i32 = abi::ctx::BLOCKS;

/// `(lin >> 12) % TLB_ENTRIES * size_of::<FastEntry>()` is `(lin >> 7) & FAST_INDEX_MASK`.
const FAST_SHIFT: i8 = 12 - 5;
const FAST_INDEX_MASK: i32 = ((TLB_ENTRIES - 1) << 5) as i32;
const _: () = assert!(core::mem::size_of::<FastEntry>() == 32);
const FAST_ADDEND: i32 = offset_of!(FastEntry, addend) as i32;

/// The arithmetic flags as EFLAGS bits (for `popfq` and eager stores).
const ARITH: i32 = fl::ARITH as i32;

fn seg_base(s: SegReg) -> i32 {
    S_SEGS + SEG_SIZE * s as i32 + SEG_BASE
}

fn seg_limit(s: SegReg) -> i32 {
    S_SEGS + SEG_SIZE * s as i32 + SEG_LIMIT
}

fn lazy_op(kind: FlagOp, size: Size) -> i32 {
    ((kind as u32) << 2 | size as u32) as i32
}

/// `r9 op= [record src]` at `size`: ADD/ADC or SUB/SBB (for the regeneration stub).
fn stub_alu(a: &mut Asm, add: bool, carry: bool, size: Size) {
    match (add, carry, size) {
        (true, false, Size::D) => dynasm!(a ; .arch x64 ; add r9d, [rbp + S_LAZY_SRC]),
        (true, false, Size::W) => dynasm!(a ; .arch x64 ; add r9w, [rbp + S_LAZY_SRC]),
        (true, false, Size::B) => dynasm!(a ; .arch x64 ; add r9b, [rbp + S_LAZY_SRC]),
        (true, true, Size::D) => dynasm!(a ; .arch x64 ; adc r9d, [rbp + S_LAZY_SRC]),
        (true, true, Size::W) => dynasm!(a ; .arch x64 ; adc r9w, [rbp + S_LAZY_SRC]),
        (true, true, Size::B) => dynasm!(a ; .arch x64 ; adc r9b, [rbp + S_LAZY_SRC]),
        (false, false, Size::D) => dynasm!(a ; .arch x64 ; sub r9d, [rbp + S_LAZY_SRC]),
        (false, false, Size::W) => dynasm!(a ; .arch x64 ; sub r9w, [rbp + S_LAZY_SRC]),
        (false, false, Size::B) => dynasm!(a ; .arch x64 ; sub r9b, [rbp + S_LAZY_SRC]),
        (false, true, Size::D) => dynasm!(a ; .arch x64 ; sbb r9d, [rbp + S_LAZY_SRC]),
        (false, true, Size::W) => dynasm!(a ; .arch x64 ; sbb r9w, [rbp + S_LAZY_SRC]),
        (false, true, Size::B) => dynasm!(a ; .arch x64 ; sbb r9b, [rbp + S_LAZY_SRC]),
    }
}

/// `cmp r9, [record res]` at `size` (for the regeneration stub).
fn stub_cmp_res(a: &mut Asm, size: Size) {
    match size {
        Size::D => dynasm!(a ; .arch x64 ; cmp r9d, [rbp + S_LAZY_RES]),
        Size::W => dynasm!(a ; .arch x64 ; cmp r9w, [rbp + S_LAZY_RES]),
        Size::B => dynasm!(a ; .arch x64 ; cmp r9b, [rbp + S_LAZY_RES]),
    }
}

/// `cmp r9, [record src]` at `size` (for the regeneration stub).
fn stub_cmp_src(a: &mut Asm, size: Size) {
    match size {
        Size::D => dynasm!(a ; .arch x64 ; cmp r9d, [rbp + S_LAZY_SRC]),
        Size::W => dynasm!(a ; .arch x64 ; cmp r9w, [rbp + S_LAZY_SRC]),
        Size::B => dynasm!(a ; .arch x64 ; cmp r9b, [rbp + S_LAZY_SRC]),
    }
}

/// The flag-regeneration stub (called from generated code; returns with the guest's
/// arithmetic flags in the host's EFLAGS): inline for the records blocks mostly leave (ADD,
/// ADC, SUB, SBB, CMP, logic, INC and DEC of every size, and eager flags): the host
/// instruction that made them runs again on the record's operands, which gives exactly
/// emu-core's flags (`LazyFlags::arith_flags`). An ADD or SUB record holds the carry or
/// borrow folded into its result: the plain operation is used when the result says there was
/// none, ADC/SBB with CF set when there was one. Logic records leave AF to the host, so the
/// stub for consumers that need AF clears it. Anything else calls `arith_flags`. Only r9 is
/// clobbered.
fn regen_stub(a: &mut Asm, arith_flags: usize, no_af: bool) {
    let done = a.new_dynamic_label();
    let slow = a.new_dynamic_label();
    let sizes = [Size::D, Size::B, Size::W];
    let kinds = [FlagOp::Sub, FlagOp::Add, FlagOp::Logic, FlagOp::Dec, FlagOp::Inc];
    let mut cases = Vec::new();
    dynasm!(a ; .arch x64 ; mov r9d, [rbp + S_LAZY_OP]);
    for kind in kinds {
        for size in sizes {
            let l = a.new_dynamic_label();
            let op = lazy_op(kind, size);
            dynasm!(a ; .arch x64 ; cmp r9d, op ; je =>l);
            cases.push((kind, size, l));
        }
    }
    dynasm!(a
        ; .arch x64
        ; cmp r9d, 3
        ; ja =>slow
        // Eager (any size): the flags are in EFLAGS.
        ; mov r9d, [rbp + S_EFLAGS]
        ; and r9d, ARITH
        ; push r9
        ; popfq
        ; jmp =>done
    );
    for (kind, size, l) in cases {
        dynasm!(a ; .arch x64 ; =>l);
        match kind {
            FlagOp::Sub | FlagOp::Add => {
                let add = kind == FlagOp::Add;
                let carry = a.new_dynamic_label();
                // Without a carry in: the result is the plain sum or difference.
                dynasm!(a ; .arch x64 ; mov r9d, [rbp + S_LAZY_DST]);
                stub_alu(a, add, false, size);
                stub_cmp_res(a, size);
                dynasm!(a ; .arch x64 ; jne =>carry ; mov r9d, [rbp + S_LAZY_DST]);
                if add {
                    stub_alu(a, true, false, size);
                } else {
                    stub_cmp_src(a, size);
                }
                dynasm!(a ; .arch x64 ; jmp =>done ; =>carry ; mov r9d, [rbp + S_LAZY_DST] ; stc);
                stub_alu(a, add, true, size);
                stub_cmp_res(a, size);
                dynasm!(a ; .arch x64 ; jne =>slow ; mov r9d, [rbp + S_LAZY_DST] ; stc);
                stub_alu(a, add, true, size);
            }
            FlagOp::Logic => {
                dynasm!(a ; .arch x64 ; mov r9d, [rbp + S_LAZY_RES]);
                match size {
                    Size::D => dynasm!(a ; .arch x64 ; test r9d, r9d),
                    Size::W => dynasm!(a ; .arch x64 ; test r9w, r9w),
                    Size::B => dynasm!(a ; .arch x64 ; test r9b, r9b),
                }
                if !no_af {
                    // emu-core clears AF after logic operations.
                    dynasm!(a ; .arch x64 ; pushfq ; and BYTE [rsp], !(fl::AF as i8) ; popfq);
                }
            }
            _ => {
                // INC/DEC keep CF, which emu-core takes from EFLAGS.
                dynasm!(a ; .arch x64 ; mov r9d, [rbp + S_LAZY_DST] ; bt DWORD [rbp + S_EFLAGS], 0);
                match (kind == FlagOp::Inc, size) {
                    (true, Size::D) => dynasm!(a ; .arch x64 ; inc r9d),
                    (true, Size::W) => dynasm!(a ; .arch x64 ; inc r9w),
                    (true, Size::B) => dynasm!(a ; .arch x64 ; inc r9b),
                    (false, Size::D) => dynasm!(a ; .arch x64 ; dec r9d),
                    (false, Size::W) => dynasm!(a ; .arch x64 ; dec r9w),
                    (false, Size::B) => dynasm!(a ; .arch x64 ; dec r9b),
                }
            }
        }
        dynasm!(a ; .arch x64 ; jmp =>done);
    }
    // Anything else: emu-core materializes the record. At the call into the stub rsp was
    // 16-aligned; the return address and nine pushes (80 bytes) keep it so.
    let f = arith_flags as i64;
    dynasm!(a
        ; .arch x64
        ; =>slow
        ; push rax
        ; push rcx
        ; push rdx
        ; push rsi
        ; push rdi
        ; push r8
        ; push r9
        ; push r10
        ; push r11
        ; mov rdi, rbp
        ; mov rax, QWORD f
        ; call rax
        ; and eax, ARITH
        ; push rax
        ; popfq
        ; pop r11
        ; pop r10
        ; pop r9
        ; pop r8
        ; pop rdi
        ; pop rsi
        ; pop rdx
        ; pop rcx
        ; pop rax
        ; =>done
        ; ret
    );
}

/// The x86-64 code generator.
#[derive(Clone, Copy, Debug, Default)]
pub struct X64;

impl Backend for X64 {
    fn name(&self) -> &'static str {
        "x86-64"
    }

    fn stubs(&self, base: usize, arith_flags: usize) -> Result<Stubs, BackendError> {
        let mut a = Asm::new(base);
        let entry = a.offset().0;
        // entry(ctx: rdi, code: rsi) -> reason (eax)
        dynasm!(a
            ; .arch x64
            ; push rbx
            ; push rbp
            ; push r12
            ; push r13
            ; push r14
            ; push r15
            ; sub rsp, FRAME
            ; mov [rsp + F_CTX], rdi
            ; mov rbp, [rdi + C_STATE]
            ; mov rax, [rdi + C_TLB]
            ; mov [rsp + F_TLB], rax
            ; mov rax, [rdi + C_LIMIT]
            ; sub rax, SLACK
            ; mov [rsp + F_LIMIT], rax
            ; mov rax, [rdi + C_JC]
            ; mov [rsp + F_JC], rax
            ; mov QWORD [rsp + F_BLOCKS], 0
        );
        load_guest(&mut a);
        dynasm!(a
            ; .arch x64
            ; mov r11, [rbp + S_RETIRED]
            ; sub r11, [rsp + F_LIMIT]
            ; jmp rsi
        );
        let exit = a.offset().0;
        store_guest(&mut a);
        write_back_retired(&mut a);
        let exit_nostore = a.offset().0;
        dynasm!(a
            ; .arch x64
            ; mov rdi, [rsp + F_CTX]
            ; mov rax, [rsp + F_BLOCKS]
            ; mov [rdi + C_BLOCKS], rax
            ; mov eax, esi
            ; add rsp, FRAME
            ; pop r15
            ; pop r14
            ; pop r13
            ; pop r12
            ; pop rbp
            ; pop rbx
            ; ret
        );
        let regen_flags = a.offset().0;
        regen_stub(&mut a, arith_flags, false);
        let regen_flags_noaf = a.offset().0;
        regen_stub(&mut a, arith_flags, true);
        let code = a.finalize().map_err(|e| BackendError(format!("stubs: {e:?}")))?;
        Ok(Stubs { code, entry, exit, exit_nostore, regen_flags, regen_flags_noaf })
    }

    fn compile(&self, block: &Block, env: &CodeEnv, base: usize) -> Result<Compiled, BackendError> {
        let mut e = Emitter::new(block, env, base);
        e.block();
        let sites = std::mem::take(&mut e.sites);
        let body_offset = e.body_offset;
        let code = e.a.finalize().map_err(|err| BackendError(format!("block {:08x}: {err:?}", block.eip)))?;
        Ok(Compiled { code, chain_sites: sites, body_offset })
    }

    fn chain_bytes(&self, site: usize, target: Option<usize>) -> [u8; 4] {
        let rel = match target {
            Some(t) => t.wrapping_sub(site + 4) as i32,
            None => 0,
        };
        rel.to_le_bytes()
    }
}

/// Host registers (a bit mask) instruction `op` writes.
fn writes_regs(op: &Op) -> u16 {
    let reg = |o: &Operand| match o {
        Operand::Reg(g) => 1u16 << GUEST[g.num as usize],
        _ => 0,
    };
    let gpr = |g: &Gpr| 1u16 << GUEST[g.num as usize];
    let esp = 1u16 << R12;
    match op {
        Op::Mov { dst, .. } | Op::IncDec { dst, .. } | Op::Neg { dst, .. } | Op::Not { dst, .. } => reg(dst),
        Op::Shift { dst, .. } | Op::ShiftCl { dst, .. } | Op::Setcc { dst, .. } => reg(dst),
        Op::Alu { op, dst, .. } => {
            if op.writes() {
                reg(dst)
            } else {
                0
            }
        }
        Op::Lea { dst, .. } | Op::Movx { dst, .. } | Op::Cmov { dst, .. } | Op::Imul { dst, .. } => gpr(dst),
        Op::Pop { dst, .. } => gpr(dst) | esp,
        Op::Push { .. } | Op::Call { .. } | Op::CallInd { .. } | Op::Ret { .. } => esp,
        Op::Leave { .. } => esp | 1 << GUEST[5],
        Op::MulDiv { .. } => 1 << RAX | 1 << RDX,
        Op::Nop | Op::Callout | Op::Jmp { .. } | Op::Jcc { .. } | Op::JmpInd { .. } => 0,
    }
}

/// Loads the eight guest registers from the state into their host registers.
fn load_guest(a: &mut Asm) {
    for (n, &h) in GUEST.iter().enumerate() {
        let off = S_REGS + 4 * n as i32;
        dynasm!(a ; .arch x64 ; mov Rd(h), [rbp + off]);
    }
}

/// Writes the retired count back to the state (r11 holds it relative to the limit), advancing
/// the TSC by as much. Uses rax and rdi: the guest registers must already be stored.
fn write_back_retired(a: &mut Asm) {
    dynasm!(a
        ; .arch x64
        ; mov rax, [rsp + F_LIMIT]
        ; add rax, r11
        ; mov rdi, rax
        ; sub rdi, [rbp + S_RETIRED]
        ; add [rbp + S_TSC], rdi
        ; mov [rbp + S_RETIRED], rax
    );
}

/// Reloads r11 (the retired count relative to the limit) from the state.
fn reload_retired(a: &mut Asm) {
    dynasm!(a
        ; .arch x64
        ; mov r11, [rbp + S_RETIRED]
        ; sub r11, [rsp + F_LIMIT]
    );
}

/// Stores the eight guest registers into the state.
fn store_guest(a: &mut Asm) {
    for (n, &h) in GUEST.iter().enumerate() {
        let off = S_REGS + 4 * n as i32;
        dynasm!(a ; .arch x64 ; mov [rbp + off], Rd(h));
    }
}

/// The slow path of one instruction, emitted after the block body.
struct SlowPath {
    label: DynamicLabel,
    back: DynamicLabel,
    index: usize,
    /// The instruction is predicated (see [`Emitter::hammock`]): when it does not take effect,
    /// the slow path goes here instead (its access is skipped, not made).
    skip: Option<DynamicLabel>,
    /// Inline instructions retired before this one (not yet added to the state).
    count: u32,
    /// The lazy-flags record not yet written when the slow path is taken.
    flags: Option<Pending>,
    /// Host flags the fast path leaves valid at the join (the slow path must match).
    join_flags: u8,
    /// Its callout never rejoins: the instruction branches, or failed a check later code
    /// relies on (see [`Emitter::in_ram`]).
    branch: bool,
    /// The fast path keeps its memory source in the frame (`F_SRC`): refill it from the record
    /// emu-core wrote before rejoining.
    refill_src: bool,
    /// The fast path leaves the RAM base in r8 at the join: so must the slow path.
    join_r8: bool,
}

/// Where a probed memory access goes: `[r8]`, or `[r8 + index]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MemRef {
    index: Option<u8>,
}

/// A value operand of a host instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Val {
    /// A host register holding a guest register at the operation's size.
    Host(u8),
    /// A temporary holding the value zero-extended.
    Temp(u8),
    /// An immediate (masked to the size).
    Imm(u32),
}

impl Val {
    fn reg(self) -> Option<u8> {
        match self {
            Val::Host(r) | Val::Temp(r) => Some(r),
            Val::Imm(_) => None,
        }
    }
}

/// The second operand of a derived record field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Src2 {
    Reg(u8),
    Imm(u32),
    /// A value kept in the frame at this offset (a memory operand, read once).
    Slot(i32),
}

impl Src2 {
    fn of(v: Val) -> Option<Src2> {
        match v {
            Val::Host(r) => Some(Src2::Reg(r)),
            Val::Imm(x) => Some(Src2::Imm(x)),
            Val::Temp(_) => None,
        }
    }
}

/// Where a field of a pending lazy-flags record comes from when it is finally written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    /// Already in the state (written when the producer ran), or one emu-core ignores.
    Stored,
    /// A constant.
    Imm(u32),
    /// A pinned guest register.
    Reg(u8),
    /// Register + operand.
    Add(u8, Src2),
    /// Register − operand.
    Sub(u8, Src2),
    /// Register & operand.
    And(u8, Src2),
    /// A value kept in the frame at this offset.
    Slot(i32),
}

impl From<Src2> for Field {
    fn from(s: Src2) -> Field {
        match s {
            Src2::Reg(r) => Field::Reg(r),
            Src2::Imm(v) => Field::Imm(v),
            Src2::Slot(o) => Field::Slot(o),
        }
    }
}

impl Field {
    fn regs(self) -> u16 {
        let src = |s: Src2| if let Src2::Reg(r) = s { 1u16 << r } else { 0 };
        match self {
            Field::Stored | Field::Imm(_) | Field::Slot(_) => 0,
            Field::Reg(r) => 1 << r,
            Field::Add(r, s) | Field::Sub(r, s) | Field::And(r, s) => 1 << r | src(s),
        }
    }
}

/// A lazy-flags record (emu-core's `LazyFlags`) whose fields are still in registers: written
/// only when something could look at it — a slow path (out of line), a callout, an exit, a
/// materialization for a consumer — or before an instruction overwrites a register it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pending {
    kind: FlagOp,
    size: Size,
    res: Field,
    src: Field,
    dst: Field,
}

impl Pending {
    /// Host registers the record is computed from.
    fn regs(&self) -> u16 {
        self.res.regs() | self.src.regs() | self.dst.regs()
    }
}

struct Emitter<'a> {
    a: Asm,
    /// The address the code will run at.
    base: usize,
    b: &'a Block,
    env: &'a CodeEnv,
    /// Inline instructions retired since the last update of the state's counters.
    count: u32,
    /// The latest flag producer's lazy record, not yet written to the state.
    pending: Option<Pending>,
    /// Guest flags the host's EFLAGS currently hold.
    host_flags: u8,
    /// The current instruction.
    cur: usize,
    /// Its slow path, once something needs it, with the record pending when it is taken.
    cur_slow: Option<(DynamicLabel, Option<Pending>)>,
    /// Its slow path that does not rejoin (see [`Emitter::in_ram`]).
    cur_exit: Option<(DynamicLabel, Option<Pending>)>,
    slow: Vec<SlowPath>,
    sites: Vec<ChainSite>,
    stop: DynamicLabel,
    budget: DynamicLabel,
    /// Where the body starts, after the budget check.
    body_offset: usize,
    /// Out-of-line checks of flags-dead chain sites: (stub label, fall-back label, target).
    dead_stubs: Vec<(DynamicLabel, DynamicLabel, u32)>,
    /// Taken paths of conditional branches inside the block.
    side_exits: Vec<SideExit>,
    /// The current instruction keeps its memory source in `F_SRC`.
    refill_src: bool,
    /// r8 holds the RAM base (a direct read set it, nothing has changed it since).
    r8_ram: bool,
    /// Loop copies of the block (see [`Emitter::block`]), in the order they were asked for.
    copies: Vec<LoopCopy>,
    /// No further loop copy may be asked for (their code has been emitted).
    copies_sealed: bool,
    /// Instructions a later conditional branch of the block loops back to (see [`Join`]).
    /// The frame window each instruction's memory access goes through, if any.
    wins: Vec<Option<Window>>,
    loop_heads: Vec<bool>,
    /// The join points bound so far in the body being emitted: label, count and epoch there.
    joins: Vec<Option<(DynamicLabel, u32, u32)>>,
    /// The first instruction of the body being emitted.
    head: usize,
    /// The count and epoch where each instruction of the body being emitted starts.
    starts: Vec<Option<(u32, u32)>>,
    /// Loop copies start with the RAM base in r8 (every way into them puts it there).
    copy_r8: bool,
    /// How many times the count has gone to r11 so far: a join needs the same on both sides
    /// (the count each carries is then relative to the same point).
    epoch: u32,
    /// Forward joins the first branch to them jumps to directly (see [`Emitter::join`]): the
    /// label and the count that branch carries, which the fall-through path adopts there.
    direct_joins: Vec<Option<DirectJoin>>,
    /// Out-of-line TLB probes of direct stores (see [`Emitter::probe`]).
    far_probes: Vec<FarProbe>,
    /// The predicated stretch being emitted (see [`Emitter::hammock`]).
    pred: Option<Pred>,
    /// Ways out of predicated stretches whose instructions do not take effect, out of line.
    skips: Vec<Skip>,
    /// Where the code ended right after the last test of the predicate: emitting there, the
    /// host flags still hold it.
    pred_tested: Option<usize>,
    /// Guest registers (bit per number) known to hold 0 here: set by `xor r, r`, `sub r, r`
    /// and `mov r, 0`, forgotten when written, at joins and after callouts. Effective
    /// addresses leave them out.
    zero: u8,
    /// The effective address [`Emitter::ea_reg`] just produced is this constant.
    ea_const: Option<u32>,
    /// Per guest register (by number): accesses of up to this many bytes at the address it
    /// holds are known to be inside RAM here (0: not known). Set where a direct access checks
    /// the register against RAM's end, with a failed check leaving the block (its slow path
    /// does not rejoin, so everything after the check has passed it); forgotten like
    /// [`Emitter::zero`].
    in_ram: [u8; 8],
}

/// A store's TLB probe, out of line: taken when the page's direct-write byte is clear; back to
/// the store on a hit, to the slow path on a miss.
struct FarProbe {
    label: DynamicLabel,
    back: DynamicLabel,
    slow: DynamicLabel,
    /// The register holding the linear address.
    lin: u8,
    /// Access size in bytes.
    n: i32,
    /// Offset of the write tag in a `FastEntry`.
    tag: i32,
}

/// A stretch of instructions a conditional branch skips, emitted predicated (see
/// [`Emitter::hammock`]).
#[derive(Clone, Copy, Debug)]
struct Pred {
    /// The instruction the branch goes to, where the stretch ends.
    end: usize,
    /// Where its checks go when the stretch does not take effect (see [`Skip`]).
    skip: DynamicLabel,
    /// Its length in instructions.
    len: i32,
}

/// The out-of-line way from a failed check in a predicated stretch that does not take effect
/// to its end: r11 takes back the stretch's instructions (counted as retired there), and r8
/// gets the RAM base back when the end expects it (a failed TLB probe clobbers it).
struct Skip {
    label: DynamicLabel,
    len: i32,
    load_r8: bool,
    done: DynamicLabel,
}

/// A forward join the first branch to it reaches directly (see [`Emitter::join`]).
#[derive(Clone, Copy, Debug)]
struct DirectJoin {
    label: DynamicLabel,
    /// The count those branches carry, which the fall-through path adopts at the join.
    count: u32,
    /// Every such branch had the RAM base in r8.
    r8_ram: bool,
}

/// A copy of the block from a loop head to its end, entered only from back edges to that head
/// (see [`Emitter::block`]).
struct LoopCopy {
    /// The loop head: the index of its first instruction (0: the block's start).
    head: usize,
    /// The flag record every back edge into it leaves pending, which the copy starts with.
    flags: Option<Pending>,
    /// Its body, past its budget check, and where a failed check goes.
    body: DynamicLabel,
    out: DynamicLabel,
    /// Its ways in, by count (see [`Emitter::loop_entry`]).
    entries: Vec<LoopEntry>,
    /// The count its own back edges will likely carry: their way in goes right before the
    /// body, the others jump to it.
    hot: u32,
}

/// A way into a loop copy from a back edge (see [`Emitter::loop_entry`]).
#[derive(Clone, Copy, Debug)]
struct LoopEntry {
    /// Instructions the back edge has pending (added to r11 on the way in).
    count: u32,
    /// The back edge does not have the RAM base in r8 and the copy expects it.
    load_r8: bool,
    label: DynamicLabel,
    emitted: bool,
}

/// The taken path of a conditional branch in the middle of a block.
struct SideExit {
    label: DynamicLabel,
    /// Inline instructions retired on the way (the branch included).
    count: u32,
    /// The record pending there.
    flags: Option<Pending>,
    target: u32,
    /// A forward branch to an instruction of this block goes on there instead of leaving.
    join: Option<Join>,
    /// [`Emitter::epoch`] at the branch.
    epoch: u32,
    /// r8 held the RAM base at the branch.
    r8_ram: bool,
}

/// Where the taken path of a conditional branch to another instruction of the block rejoins
/// the fall-through path.
#[derive(Clone, Copy, Debug)]
enum Join {
    /// Forward, at this instruction, once the fall-through path gets there.
    Wanted(usize),
    /// At this label, with r11 adjusted by this many instructions (those skipped: the count
    /// the fall-through path carries there includes them).
    Bound(DynamicLabel, i32),
    /// Backward (a loop inside the block), at this label with r11 adjusted so, provided the
    /// budget still covers this many instructions (the rest of the block from there, counted
    /// from the branch); otherwise the side exit.
    Back(DynamicLabel, i32, i32),
}

macro_rules! cc_arms {
    ($cc:expr, $($n:literal => $body:expr),* $(,)?) => {
        match $cc.0 {
            $($n => $body,)*
            _ => unreachable!("condition codes are 0..16"),
        }
    };
}

/// The host shift or rotate `op` of register `d` at `size` by `count` (an `i8` expression,
/// or `cl`).
macro_rules! shift_arms {
    ($e:ident, $op:expr, $size:expr, $d:expr, $count:tt) => {
        match ($op, $size) {
            (ShiftOp::Shl, Size::D) => dynasm!($e.a ; .arch x64 ; shl Rd($d), $count),
            (ShiftOp::Shl, Size::W) => dynasm!($e.a ; .arch x64 ; shl Rw($d), $count),
            (ShiftOp::Shl, Size::B) => dynasm!($e.a ; .arch x64 ; shl Rb($d), $count),
            (ShiftOp::Shr, Size::D) => dynasm!($e.a ; .arch x64 ; shr Rd($d), $count),
            (ShiftOp::Shr, Size::W) => dynasm!($e.a ; .arch x64 ; shr Rw($d), $count),
            (ShiftOp::Shr, Size::B) => dynasm!($e.a ; .arch x64 ; shr Rb($d), $count),
            (ShiftOp::Sar, Size::D) => dynasm!($e.a ; .arch x64 ; sar Rd($d), $count),
            (ShiftOp::Sar, Size::W) => dynasm!($e.a ; .arch x64 ; sar Rw($d), $count),
            (ShiftOp::Sar, Size::B) => dynasm!($e.a ; .arch x64 ; sar Rb($d), $count),
            (ShiftOp::Rol, Size::D) => dynasm!($e.a ; .arch x64 ; rol Rd($d), $count),
            (ShiftOp::Rol, Size::W) => dynasm!($e.a ; .arch x64 ; rol Rw($d), $count),
            (ShiftOp::Rol, Size::B) => dynasm!($e.a ; .arch x64 ; rol Rb($d), $count),
            (ShiftOp::Ror, Size::D) => dynasm!($e.a ; .arch x64 ; ror Rd($d), $count),
            (ShiftOp::Ror, Size::W) => dynasm!($e.a ; .arch x64 ; ror Rw($d), $count),
            (ShiftOp::Ror, Size::B) => dynasm!($e.a ; .arch x64 ; ror Rb($d), $count),
        }
    };
}

impl<'a> Emitter<'a> {
    fn new(b: &'a Block, env: &'a CodeEnv, base: usize) -> Emitter<'a> {
        let mut a = Asm::new(base);
        let stop = a.new_dynamic_label();
        let budget = a.new_dynamic_label();
        Emitter {
            a,
            base,
            b,
            env,
            count: 0,
            pending: None,
            host_flags: 0,
            cur: 0,
            cur_slow: None,
            cur_exit: None,
            slow: Vec::new(),
            sites: Vec::new(),
            stop,
            budget,
            body_offset: 0,
            dead_stubs: Vec::new(),
            side_exits: Vec::new(),
            refill_src: false,
            r8_ram: false,
            copies: Vec::new(),
            copies_sealed: false,
            loop_heads: loop_heads(b, env),
            wins: frame_windows(b),
            joins: Vec::new(),
            starts: Vec::new(),
            head: 0,
            epoch: 0,
            copy_r8: ram_direct(b, env),
            direct_joins: Vec::new(),
            far_probes: Vec::new(),
            pred: None,
            skips: Vec::new(),
            pred_tested: None,
            zero: 0,
            ea_const: None,
            in_ram: [0; 8],
        }
    }

    // ------------------------------------------------------------ block structure

    /// The block: its budget check, the body, then the loop copies.
    ///
    /// A back edge to an instruction of the block (its start, or a loop head inside it) goes to
    /// a copy of the block from that instruction on, entered only from back edges that leave
    /// the same flag record pending, which the copy starts with: the loop then runs without
    /// writing that record on every pass, and without leaving the block to enter the loop
    /// head's own translation. A copy may ask for another (an inner loop's copy branching back
    /// to the outer loop's head); each is emitted once, after the ones before it.
    fn block(&mut self) {
        let n = self.b.insns.len() as i32;
        let budget = self.budget;
        self.cmp_r11(SLACK - n);
        dynasm!(self.a ; .arch x64 ; jg =>budget);
        self.body_offset = self.a.offset().0;
        if self.env.count_blocks {
            dynasm!(self.a ; .arch x64 ; add QWORD [rsp + F_BLOCKS], 1);
        }
        self.body(0, false);
        let mut k = 0;
        while k < self.copies.len() {
            self.emit_copy(k);
            k += 1;
        }
        self.copies_sealed = true;
        for k in 0..self.copies.len() {
            let body = self.copies[k].body;
            let entries = std::mem::take(&mut self.copies[k].entries);
            for e in entries.into_iter().filter(|e| !e.emitted) {
                self.emit_loop_entry(k, e);
                dynasm!(self.a ; .arch x64 ; jmp =>body);
            }
        }
        self.tail();
    }

    /// Loop copy `k`: its first way in (falling into it), its body, and its budget exit, which
    /// writes the record it started with before it leaves for the loop head.
    fn emit_copy(&mut self, k: usize) {
        let LoopCopy { head, flags, body, out, hot, .. } = self.copies[k];
        if !self.copies[k].entries.iter().any(|e| e.count == hot && !e.load_r8) {
            let label = self.a.new_dynamic_label();
            self.copies[k].entries.push(LoopEntry { count: hot, load_r8: false, label, emitted: false });
        }
        // The ways in known by now that have the RAM base, in a cascade that falls into the
        // body: each adds the difference between its count and the next one's, the likely
        // back edge's last (one add), so that none takes a jump to get there.
        let mut inline: Vec<LoopEntry> =
            self.copies[k].entries.iter().filter(|e| !e.load_r8).copied().collect();
        inline.sort_by_key(|e| e.count == hot);
        for (i, e) in inline.iter().enumerate() {
            let next = inline.get(i + 1).map_or(0, |n| n.count as i32);
            let label = e.label;
            dynasm!(self.a ; .arch x64 ; =>label);
            self.add_r11(e.count as i32 - next);
        }
        for e in self.copies[k].entries.iter_mut().filter(|e| !e.load_r8) {
            e.emitted = true;
        }
        dynasm!(self.a ; .arch x64 ; jg =>out ; =>body);
        self.pending = flags;
        self.host_flags = 0;
        self.count = 0;
        self.body(head, self.copy_r8);
        dynasm!(self.a ; .arch x64 ; =>out);
        self.pending = flags;
        self.materialize(true);
        self.budget_exit(self.b.insns[head].eip);
    }

    /// The instructions from `from` on and the fall-through exit.
    /// `r8_ram`: r8 holds the RAM base on every way in.
    fn body(&mut self, from: usize, r8_ram: bool) {
        self.head = from;
        self.r8_ram = r8_ram;
        self.zero = 0;
        self.in_ram = [0; 8];
        self.joins = vec![None; self.b.insns.len()];
        self.starts = vec![None; self.b.insns.len()];
        self.direct_joins = vec![None; self.b.insns.len()];
        for i in from..self.b.insns.len() {
            self.insn(i);
        }
        match self.b.end {
            End::Next(eip) => {
                self.sync();
                self.direct_exit(eip);
            }
            End::Branch | End::Stop => {}
        }
    }

    /// The code of a way into loop copy `k`: the back edge's count to r11, and out if another
    /// pass might not fit (see [`SLACK`]: the check is conservative by up to SLACK − n
    /// instructions, which the dispatcher and the interpreter then run exactly), the RAM base
    /// to r8 if the copy needs it and the edge does not have it.
    fn emit_loop_entry(&mut self, k: usize, e: LoopEntry) {
        let (n, label, out) = (e.count as i32, e.label, self.copies[k].out);
        dynasm!(self.a ; .arch x64 ; =>label);
        self.add_r11(n);
        dynasm!(self.a ; .arch x64 ; jg =>out);
        if e.load_r8 {
            self.load_ram_base();
        }
    }

    /// `lea r11, [r11 + k]`, in its short form when `k` fits a byte.
    fn lea_r11(&mut self, k: i32) {
        match i8::try_from(k) {
            // dynasm always encodes a dynamic displacement in 32 bits: REX.WRB, LEA, ModRM
            // (r11, [r11 + disp8]), disp8.
            Ok(b) => {
                for byte in [0x4D, 0x8D, 0x5B, b as u8] {
                    self.a.push(byte);
                }
            }
            Err(_) => dynasm!(self.a ; .arch x64 ; lea r11, [r11 + k]),
        }
    }

    /// `add r11, k`, in its short form when `k` fits a byte.
    fn add_r11(&mut self, k: i32) {
        match i8::try_from(k) {
            Ok(b) => dynasm!(self.a ; .arch x64 ; add r11, BYTE b),
            Err(_) => dynasm!(self.a ; .arch x64 ; add r11, k),
        }
    }

    /// `cmp r11, k`, in its short form when `k` fits a byte.
    fn cmp_r11(&mut self, k: i32) {
        match i8::try_from(k) {
            Ok(b) => self.cmp_imm8(false, true, 11, b),
            Err(_) => dynasm!(self.a ; .arch x64 ; cmp r11, k),
        }
    }

    /// `cmp r, imm8` (sign-extended) with `r` a 16-bit (`word`), 64-bit (`quad`) or else 32-bit
    /// register, encoded here: dynasm encodes CMP's immediate in 32 bits (operand-size prefix,
    /// REX, 83 /7 ib).
    fn cmp_imm8(&mut self, word: bool, quad: bool, r: u8, b: i8) {
        if word {
            self.a.push(0x66);
        }
        let rex = 0x40 | if quad { 8 } else { 0 } | (r >> 3);
        if rex != 0x40 {
            self.a.push(rex);
        }
        for byte in [0x83, 0xF8 | (r & 7), b as u8] {
            self.a.push(byte);
        }
    }

    /// `mov r8, <RAM base>`.
    fn load_ram_base(&mut self) {
        let base = self.env.ram_base as i64;
        dynasm!(self.a ; .arch x64 ; mov r8, QWORD base);
    }

    /// An unconditional jump into loop copy `k`: the RAM base to r8 if the copy expects it
    /// there, then the count to r11 and the copy's budget check in one add-and-branch (see
    /// [`SLACK`]), so that the jump goes straight to the copy's body.
    fn jump_to_copy(&mut self, k: usize) {
        if self.copy_r8 && !self.r8_ram {
            self.load_ram_base();
        }
        let (n, body, out) = (self.count as i32, self.copies[k].body, self.copies[k].out);
        self.count = 0;
        if n > 0 {
            self.epoch += 1;
            self.add_r11(n);
        } else {
            dynasm!(self.a ; .arch x64 ; test r11, r11);
        }
        dynasm!(self.a
            ; .arch x64
            ; jle =>body
            ; jmp =>out
        );
    }
    /// Back to the dispatcher at `eip` for want of budget (the state is current there).
    fn budget_exit(&mut self, eip: u32) {
        let at = eip as i32;
        dynasm!(self.a
            ; .arch x64
            ; mov DWORD [rbp + S_EIP], at
            ; mov esi, reason::BUDGET as i32
        );
        self.jmp_to(self.env.exit);
    }

    /// Out-of-line code: the budget exit, slow paths, the callout stop.
    fn tail(&mut self) {
        let budget = self.budget;
        dynasm!(self.a ; .arch x64 ; =>budget);
        self.budget_exit(self.b.eip);
        self.r8_ram = false;
        for x in std::mem::take(&mut self.side_exits) {
            let label = x.label;
            dynasm!(self.a ; .arch x64 ; =>label);
            match x.join {
                Some(Join::Bound(join, delta)) => {
                    if delta != 0 {
                        self.lea_r11(delta);
                    }
                    dynasm!(self.a ; .arch x64 ; jmp =>join);
                    continue;
                }
                Some(Join::Back(join, delta, need)) => self.back_join(join, delta, need),
                _ => {}
            }
            self.pending = x.flags;
            self.count = x.count;
            self.sync();
            self.exit_or_loop(x.target);
        }
        for p in std::mem::take(&mut self.far_probes) {
            self.far_probe(&p);
        }
        for x in std::mem::take(&mut self.skips) {
            let (label, done) = (x.label, x.done);
            dynasm!(self.a ; .arch x64 ; =>label);
            self.lea_r11(-x.len);
            if x.load_r8 {
                self.load_ram_base();
            }
            dynasm!(self.a ; .arch x64 ; jmp =>done);
        }
        for s in std::mem::take(&mut self.slow) {
            self.slow_path(&s);
        }
        // Flags-dead chain sites jump here once linked: budget for the longest block, then the
        // target's body (patched in); otherwise back to writing the record.
        let most = crate::frontend::MAX_BLOCK_INSNS as i32;
        let stubs = std::mem::take(&mut self.dead_stubs);
        let mut dead_sites = self
            .sites
            .iter()
            .enumerate()
            .filter(|(_, s)| s.dead_flags)
            .map(|(i, _)| i)
            .collect::<Vec<_>>()
            .into_iter();
        for (stub, back, _target) in stubs {
            let site = dead_sites.next().expect("one site per stub");
            let stub_at = self.a.offset().0;
            dynasm!(self.a ; .arch x64 ; =>stub);
            self.cmp_r11(SLACK - most);
            dynasm!(self.a ; .arch x64 ; jg =>back);
            self.a.push(0xE9);
            let jump = self.a.offset().0;
            self.a.push_i32(0);
            self.sites[site].stub = Some((stub_at, jump));
        }
        let (stop, nostore) = (self.stop, self.env.exit_nostore);
        dynasm!(self.a
            ; .arch x64
            ; =>stop
            ; mov esi, reason::CALLOUT as i32
        );
        self.jmp_to(nostore);
    }

    fn insn(&mut self, i: usize) {
        if self.pred.is_some_and(|p| p.end == i) {
            self.end_pred();
        }
        self.cur = i;
        self.ea_const = None;
        self.cur_slow = None;
        self.cur_exit = None;
        self.refill_src = false;
        if i != self.head {
            // A loop copy's head is entered only from its back edges, on the copy's terms.
            self.join(i);
        }
        self.starts[i] = Some((self.count, self.epoch));
        let count_before = self.count;
        self.before(i);
        let insn = &self.b.insns[i];
        let op = insn.op;
        let pred = self.pred.map(|p| p.skip);
        match op {
            _ if pred.is_some() => self.pred_insn(op),
            Op::Mov { size, dst, src } => self.mov(size, dst, src),
            Op::Alu { op, size, dst, src } => self.alu(op, size, dst, src),
            Op::IncDec { dec, size, dst } => self.inc_dec(dec, size, dst),
            Op::Neg { size, dst } => self.neg(size, dst),
            Op::Not { size, dst } => self.not(size, dst),
            Op::Lea { dst, addr } => {
                self.ea(&addr, TA);
                self.write_gpr(dst, TA);
            }
            Op::Movx { signed, dst, src, src_size } => {
                self.fetch(TA, &src, src_size);
                if signed {
                    match src_size {
                        Size::B => dynasm!(self.a ; .arch x64 ; movsx Rd(TA), Rb(TA)),
                        _ => dynasm!(self.a ; .arch x64 ; movsx Rd(TA), Rw(TA)),
                    }
                }
                self.write_gpr(dst, TA);
            }
            Op::Push { size, src } => self.push(size, src),
            Op::Pop { size, dst } => self.pop(size, dst),
            Op::Shift { op: op @ (ShiftOp::Rol | ShiftOp::Ror), size, dst, count } => {
                self.rotate(op, size, dst, count)
            }
            Op::Shift { op, size, dst, count } => self.shift(op, size, dst, count),
            Op::ShiftCl { op, size, dst } => self.shift_cl(op, size, dst),
            Op::Setcc { cc, dst } => self.setcc(cc, dst),
            Op::Cmov { cc, size, dst, src } => self.cmov(cc, size, dst, src),
            Op::Imul { size, dst, src, imm } => self.imul(size, dst, src, imm),
            Op::MulDiv { div: false, size, src } => self.mul(size, src),
            Op::MulDiv { div: true, size, src } => self.div(size, src),
            Op::Leave { size } => {
                // ESP ← EBP; EBP ← pop (the load first: a fault changes nothing).
                dynasm!(self.a ; .arch x64 ; mov esi, r13d);
                if !self.b.key.stack32() {
                    dynasm!(self.a ; .arch x64 ; movzx esi, si);
                }
                let m = self.probe(SegReg::Ss, size, false, RSI);
                self.load(TA, size, m);
                let n = size.bytes() as i32;
                if self.b.key.stack32() {
                    dynasm!(self.a ; .arch x64 ; lea r12d, [rsi + n]);
                } else {
                    dynasm!(self.a
                        ; .arch x64
                        ; lea r9d, [rsi + n]
                        ; mov r12w, r9w
                    );
                }
                self.write_gpr(Gpr { num: 5, size, high: false }, TA);
            }
            Op::Nop => {}
            Op::Callout => self.callout(),
            Op::Jmp { target } => {
                // Counted (synced) on the way out: into the loop copy by its budget check.
                self.count += 1;
                self.exit_or_loop(target);
            }
            Op::Jcc { cc, target } => self.jcc(cc, target),
            Op::Call { size, target } => {
                let ret = Val::Imm(self.b.insns[i].next_eip & size.mask());
                self.push_val(size, ret);
                self.sync_including_current();
                self.direct_exit(target);
            }
            Op::CallInd { size, src } => {
                self.fetch(TA, &src, size);
                self.check_target(size);
                let ret = Val::Imm(self.b.insns[i].next_eip & size.mask());
                self.push_val(size, ret);
                self.materialize(true);
                self.sync_including_current();
                self.indirect_exit();
            }
            Op::JmpInd { size, src } => {
                self.fetch(TA, &src, size);
                self.check_target(size);
                self.materialize(true);
                self.sync_including_current();
                self.indirect_exit();
            }
            Op::Ret { size, pop } => {
                self.stack_ea(0);
                let m = self.probe(SegReg::Ss, size, false, RSI);
                self.load(TA, size, m);
                self.check_target(size);
                self.commit_sp(size.bytes() as i32 + i32::from(pop));
                self.materialize(true);
                self.sync_including_current();
                self.indirect_exit();
            }
        }
        // The slow paths of this instruction: the one that leaves the block after it (a failed
        // check later code relies on), and the one that rejoins here.
        for (way, rejoins) in [(self.cur_exit.take(), false), (self.cur_slow.take(), true)] {
            let Some((label, flags)) = way else { continue };
            let back = self.a.new_dynamic_label();
            if rejoins {
                dynasm!(self.a ; .arch x64 ; =>back);
            }
            // A predicated instruction's slow path leaves the block after its callout: the
            // code after it assumes its checks passed.
            let rejoins = rejoins && pred.is_none();
            self.slow.push(SlowPath {
                label,
                back,
                index: i,
                skip: pred,
                count: count_before,
                flags,
                join_flags: if rejoins { self.host_flags } else { 0 },
                branch: !rejoins || op.is_branch(),
                refill_src: rejoins && self.refill_src,
                join_r8: rejoins && self.r8_ram,
            });
        }
        self.track_regs(&op);
        if op != Op::Callout && !op.is_branch() {
            self.count += 1;
        }
    }

    /// Updates [`Emitter::zero`] and [`Emitter::in_ram`] after `op`.
    fn track_regs(&mut self, op: &Op) {
        if *op == Op::Callout {
            self.zero = 0;
            self.in_ram = [0; 8];
            return;
        }
        let written = writes_regs(op);
        for (n, &h) in GUEST.iter().enumerate() {
            if written & (1 << h) != 0 {
                self.zero &= !(1 << n);
                self.in_ram[n] = 0;
            }
        }
        let zeroed = match *op {
            _ if self.pred.is_some() => None,
            Op::Alu {
                op: AluOp::Xor | AluOp::Sub,
                size: Size::D,
                dst: Operand::Reg(d),
                src: Operand::Reg(s),
            } if d == s && !d.high => Some(d.num),
            Op::Mov { size: Size::D, dst: Operand::Reg(d), src: Operand::Imm(0) } if !d.high => Some(d.num),
            _ => None,
        };
        if let Some(n) = zeroed {
            self.zero |= 1 << n;
        }
    }

    /// `jmp rel32` to the absolute address `target` (the shared exits).
    fn jmp_to(&mut self, target: usize) {
        self.a.push(0xE9);
        let end = self.base + self.a.offset().0 + 4;
        self.a.push_i32(target.wrapping_sub(end) as i32);
    }

    /// The slow path of the current instruction that ends the block after it instead of
    /// rejoining (created on first use).
    fn exit_label(&mut self) -> DynamicLabel {
        if let Some((l, _)) = self.cur_exit {
            return l;
        }
        let l = self.a.new_dynamic_label();
        self.cur_exit = Some((l, self.pending));
        l
    }

    /// The slow path of the current instruction (created on first use).
    fn slow_label(&mut self) -> DynamicLabel {
        if let Some((l, _)) = self.cur_slow {
            return l;
        }
        let l = self.a.new_dynamic_label();
        self.cur_slow = Some((l, self.pending));
        l
    }

    /// Adds the inline instructions retired so far to the count in r11 (flags untouched).
    fn sync(&mut self) {
        let k = self.count as i32;
        if k > 0 {
            self.lea_r11(k);
            self.epoch += 1;
        }
        self.count = 0;
    }

    /// [`Emitter::sync`] for a branch, counting the branch itself.
    fn sync_including_current(&mut self) {
        self.count += 1;
        self.sync();
    }

    // ------------------------------------------------------------ exits

    /// Leaves the block for `target` (a constant EIP): chained within the page, through the
    /// jump cache otherwise. The counters must be synced.
    fn direct_exit(&mut self, target: u32) {
        let key = &self.b.key;
        let start = key.cs_base.wrapping_add(self.b.eip);
        let lin = key.cs_base.wrapping_add(target);
        let exit = self.env.exit;
        if !self.env.chaining {
            self.materialize(true);
            dynasm!(self.a
                ; .arch x64
                ; mov DWORD [rbp + S_EIP], target as i32
                ; mov esi, reason::NORMAL as i32
            );
            self.jmp_to(exit);
            return;
        }
        if (start ^ lin) & !0xFFF == 0 && target <= key.cs_limit {
            if self.pending.is_some() {
                // A successor that overwrites every flag before anything can see them does not
                // need the record: the first site is chained only to such blocks, through an
                // out-of-line check that the next block's own budget check cannot fail with the
                // record unwritten (it checks for the longest block). Unchained, it falls
                // through to writing the record.
                let stub = self.a.new_dynamic_label();
                let back = self.a.new_dynamic_label();
                self.chain_site(target, true);
                dynasm!(self.a ; .arch x64 ; =>back);
                self.dead_stubs.push((stub, back, target));
                self.materialize(true);
            }
            let id = self.chain_site(target, false);
            dynasm!(self.a
                ; .arch x64
                ; mov DWORD [rbp + S_EIP], target as i32
                ; mov esi, (reason::CHAIN | id << 8) as i32
            );
            self.jmp_to(exit);
        } else {
            self.materialize(true);
            dynasm!(self.a ; .arch x64 ; mov Rd(TA), target as i32);
            self.indirect_exit();
        }
    }

    /// A `jmp rel32` to the next instruction, until the runtime chains it; returns its exit id.
    fn chain_site(&mut self, target: u32, dead_flags: bool) -> u32 {
        let id = self.env.first_exit + self.sites.len() as u32;
        self.a.push(0xE9);
        let offset = self.a.offset().0;
        self.a.push_i32(0);
        self.sites.push(ChainSite { offset, target, dead_flags, stub: None });
        id
    }

    /// Leaves the block for the EIP in `TA` through the jump cache:
    ///
    /// ```text
    ///   e = &jump_cache[((eip >> 10) ^ eip) % ENTRIES]
    ///   if e.tag == eip | mode_id << 32 | jump_cache[-1].tag: goto e.code
    ///   state.eip = eip; return JUMP_CACHE_MISS
    /// ```
    fn indirect_exit(&mut self) {
        self.materialize(true);
        let exit = self.env.exit;
        if !self.env.chaining {
            dynasm!(self.a
                ; .arch x64
                ; mov [rbp + S_EIP], Rd(TA)
                ; mov esi, reason::NORMAL as i32
            );
            self.jmp_to(exit);
            return;
        }
        let mode = i64::from(self.env.mode_id) << 32;
        let mask = (abi::JUMP_CACHE_ENTRIES - 1) as i32;
        let miss = self.a.new_dynamic_label();
        dynasm!(self.a
            ; .arch x64
            ; mov r8d, Rd(TA)
            ; shr r8d, 10
            ; xor r8d, Rd(TA)
            ; and r8d, mask
            ; shl r8d, 4
            ; mov rsi, [rsp + F_JC]
            ; add r8, rsi
        );
        // The tag: mode id << 32 | EIP | the cache's generation (in the entry before the
        // first).
        if mode == 0 {
            dynasm!(self.a ; .arch x64 ; mov r9d, Rd(TA));
        } else {
            dynasm!(self.a
                ; .arch x64
                ; mov r9, QWORD mode
                ; or r9, Rq(TA)
            );
        }
        dynasm!(self.a
            ; .arch x64
            ; or r9, [rsi - 16]
            ; cmp r9, [r8]
            ; jne =>miss
            ; jmp QWORD [r8 + 8]
            ; =>miss
            ; mov [rbp + S_EIP], Rd(TA)
            ; mov esi, reason::JUMP_CACHE_MISS as i32
        );
        self.jmp_to(exit);
        self.host_flags = 0;
    }

    /// An indirect target in `TA` beyond the CS limit takes the slow path (#GP there).
    fn check_target(&mut self, size: Size) {
        let limit = self.b.key.cs_limit;
        if limit < size.mask() {
            let slow = self.slow_label();
            dynasm!(self.a
                ; .arch x64
                ; cmp Rd(TA), limit as i32
                ; ja =>slow
            );
            self.host_flags = 0;
        }
    }

    // ------------------------------------------------------------ callouts

    /// Stores the guest registers and EIP and calls the callout for instruction `index`;
    /// leaves the status in eax (registers not reloaded).
    fn call_callout(&mut self, index: usize) {
        self.r8_ram = false;
        store_guest(&mut self.a);
        write_back_retired(&mut self.a);
        let at = self.b.insns[index].eip as i32;
        let id = (self.env.callout_base + index as u32) as i32;
        let f = self.env.callout as i64;
        dynasm!(self.a
            ; .arch x64
            ; mov DWORD [rbp + S_EIP], at
            ; mov rdi, [rsp + F_CTX]
            ; mov esi, id
            ; mov rax, QWORD f
            ; call rax
        );
        self.host_flags = 0;
    }

    /// An instruction run entirely by emu-core.
    fn callout(&mut self) {
        self.materialize(true);
        self.sync();
        let i = self.cur;
        self.call_callout(i);
        let stop = self.stop;
        if self.b.insns[i].stop {
            dynasm!(self.a ; .arch x64 ; jmp =>stop);
        } else {
            dynasm!(self.a
                ; .arch x64
                ; test eax, eax
                ; jnz =>stop
            );
            reload_retired(&mut self.a);
            load_guest(&mut self.a);
        }
    }

    /// The slow path of an inline instruction: the whole instruction through emu-core, then
    /// back to the fast path's join point as if it had run inline.
    fn slow_path(&mut self, s: &SlowPath) {
        let label = s.label;
        dynasm!(self.a ; .arch x64 ; =>label);
        if let Some(skip) = s.skip {
            dynasm!(self.a
                ; .arch x64
                ; test BYTE [rsp + F_PRED], 1
                ; jz =>skip
            );
        }
        self.pending = s.flags;
        self.materialize(true);
        let k = s.count as i32;
        if k > 0 {
            self.lea_r11(k);
        }
        self.call_callout(s.index);
        let stop = self.stop;
        if s.branch {
            dynasm!(self.a ; .arch x64 ; jmp =>stop);
            return;
        }
        // The callout retired the instruction; the join point counts it (and the ones before
        // it) as pending, so take them back.
        let back_out = -(k + 1);
        dynasm!(self.a
            ; .arch x64
            ; test eax, eax
            ; jnz =>stop
        );
        reload_retired(&mut self.a);
        self.lea_r11(back_out);
        if s.refill_src {
            dynasm!(self.a
                ; .arch x64
                ; mov r9d, [rbp + S_LAZY_SRC]
                ; mov [rsp + F_SRC], r9d
            );
        }
        load_guest(&mut self.a);
        if s.join_flags != 0 {
            self.regen_flags();
        }
        if s.join_r8 {
            self.load_ram_base();
        }
        let back = s.back;
        dynasm!(self.a ; .arch x64 ; jmp =>back);
    }

    /// Loads the guest's arithmetic flags into the host's EFLAGS (a call that materializes
    /// the lazy record, then `popfq`); every register is preserved.
    fn regen_flags(&mut self) {
        let f = self.env.arith_flags as i64;
        dynasm!(self.a
            ; .arch x64
            ; push rax
            ; push rcx
            ; push rdx
            ; push rsi
            ; push rdi
            ; push r8
            ; push r9
            ; push r10
            ; push r11
            ; lea rsp, [rsp - 8]
            ; mov rdi, rbp
            ; mov rax, QWORD f
            ; call rax
            ; and eax, ARITH
            ; push rax
            ; popfq
            ; lea rsp, [rsp + 8]
            ; pop r11
            ; pop r10
            ; pop r9
            ; pop r8
            ; pop rdi
            ; pop rsi
            ; pop rdx
            ; pop rcx
            ; pop rax
        );
        self.host_flags = flag::ALL;
    }

    /// Makes the host's EFLAGS hold at least the guest flags `need`.
    fn ensure_flags(&mut self, need: u8) {
        if self.host_flags & need != need {
            if let Some(p) = self.pending {
                if self.regen_from_pending(p, need) {
                    return;
                }
            }
            self.materialize(true);
            self.regen_flags_inline(need);
        }
    }

    /// Loads a field of the pending record into `t` (only `t` is written).
    fn pending_field_to(&mut self, f: Field, off: i32, size: Size, t: u8) {
        if f == Field::Stored {
            dynasm!(self.a ; .arch x64 ; mov Rd(t), [rbp + off]);
        } else {
            self.field_to(f, size, t);
        }
    }

    /// The host's flags made the guest's from the pending record's fields, which stays
    /// pending: the operation that made it runs again on its operands (ADD and SUB records are
    /// never pending with a carry in). Only r9 and rsi are written. False when the record is
    /// of another kind (or a logic one and AF is needed).
    fn regen_from_pending(&mut self, p: Pending, need: u8) -> bool {
        let s = p.size;
        match p.kind {
            FlagOp::Add | FlagOp::Sub => {
                self.pending_field_to(p.dst, S_LAZY_DST, s, R9);
                self.pending_field_to(p.src, S_LAZY_SRC, s, RSI);
                match (p.kind == FlagOp::Add, s) {
                    (true, Size::D) => dynasm!(self.a ; .arch x64 ; add r9d, esi),
                    (true, Size::W) => dynasm!(self.a ; .arch x64 ; add r9w, si),
                    (true, Size::B) => dynasm!(self.a ; .arch x64 ; add r9b, sil),
                    (false, Size::D) => dynasm!(self.a ; .arch x64 ; cmp r9d, esi),
                    (false, Size::W) => dynasm!(self.a ; .arch x64 ; cmp r9w, si),
                    (false, Size::B) => dynasm!(self.a ; .arch x64 ; cmp r9b, sil),
                }
                self.host_flags = flag::ALL;
            }
            FlagOp::Inc | FlagOp::Dec => {
                // CF is the guest's, kept in EFLAGS for these records.
                self.pending_field_to(p.dst, S_LAZY_DST, s, R9);
                dynasm!(self.a ; .arch x64 ; bt DWORD [rbp + S_EFLAGS], 0);
                match (p.kind == FlagOp::Inc, s) {
                    (true, Size::D) => dynasm!(self.a ; .arch x64 ; inc r9d),
                    (true, Size::W) => dynasm!(self.a ; .arch x64 ; inc r9w),
                    (true, Size::B) => dynasm!(self.a ; .arch x64 ; inc r9b),
                    (false, Size::D) => dynasm!(self.a ; .arch x64 ; dec r9d),
                    (false, Size::W) => dynasm!(self.a ; .arch x64 ; dec r9w),
                    (false, Size::B) => dynasm!(self.a ; .arch x64 ; dec r9b),
                }
                self.host_flags = flag::ALL;
            }
            FlagOp::Logic if need & flag::AF == 0 => {
                self.pending_field_to(p.res, S_LAZY_RES, s, R9);
                match s {
                    Size::D => dynasm!(self.a ; .arch x64 ; test r9d, r9d),
                    Size::W => dynasm!(self.a ; .arch x64 ; test r9w, r9w),
                    Size::B => dynasm!(self.a ; .arch x64 ; test r9b, r9b),
                }
                self.host_flags = flag::ALL & !flag::AF;
            }
            _ => return false,
        }
        true
    }

    /// Loads the guest's arithmetic flags into the host's EFLAGS from the record in the state:
    /// a call to the shared stub (see [`regen_stub`]). Only r9 is clobbered.
    fn regen_flags_inline(&mut self, need: u8) {
        let logic = need & flag::AF == 0;
        let stub = if logic { self.env.regen_flags_noaf } else { self.env.regen_flags };
        self.a.push(0xE8);
        let end = self.base + self.a.offset().0 + 4;
        self.a.push_i32(stub.wrapping_sub(end) as i32);
        self.host_flags = if logic { flag::ALL & !flag::AF } else { flag::ALL };
    }

    /// Writes the pending lazy-flags record to the state. `clobber`: the host flags may be
    /// destroyed (a packed sequence, two 64-bit stores); otherwise they are kept (field by
    /// field, with flag-preserving instructions where possible).
    fn materialize(&mut self, clobber: bool) {
        let Some(p) = self.pending.take() else { return };
        let clobber = clobber || self.host_flags == 0 || matches!(p.res, Field::And(..));
        let op = lazy_op(p.kind, p.size);
        if clobber {
            // [op | res << 32] and [src | dst << 32]: two stores.
            self.field_to(p.res, p.size, R9);
            dynasm!(self.a
                ; .arch x64
                ; shl r9, 32
                ; or r9, op
                ; mov [rbp + S_LAZY_OP], r9
            );
            match (p.src, p.dst) {
                (Field::Stored, Field::Stored) => {}
                (src, Field::Stored) => {
                    self.field_to(src, p.size, R9);
                    dynasm!(self.a ; .arch x64 ; mov [rbp + S_LAZY_SRC], r9d);
                }
                (Field::Stored, dst) => {
                    self.field_to(dst, p.size, R9);
                    dynasm!(self.a ; .arch x64 ; mov [rbp + S_LAZY_DST], r9d);
                }
                (src, dst) => {
                    self.field_to(dst, p.size, RSI);
                    self.field_to(src, p.size, R9);
                    dynasm!(self.a
                        ; .arch x64
                        ; shl rsi, 32
                        ; or rsi, r9
                        ; mov [rbp + S_LAZY_SRC], rsi
                    );
                }
            }
            self.host_flags = 0;
        } else {
            for (f, off) in [(p.res, S_LAZY_RES), (p.src, S_LAZY_SRC), (p.dst, S_LAZY_DST)] {
                if f != Field::Stored {
                    self.field_to(f, p.size, R9);
                    dynasm!(self.a ; .arch x64 ; mov [rbp + off], r9d);
                }
            }
            dynasm!(self.a ; .arch x64 ; mov DWORD [rbp + S_LAZY_OP], op);
        }
    }

    /// The value of a record field into `t`, zero-extended from `size`. Only `And` touches the
    /// host flags.
    fn field_to(&mut self, f: Field, size: Size, t: u8) {
        let (reg, extend) = match f {
            Field::Stored => unreachable!("a stored field is not computed"),
            Field::Imm(v) => {
                dynasm!(self.a ; .arch x64 ; mov Rd(t), (v & size.mask()) as i32);
                return;
            }
            Field::Reg(r) => (r, true),
            Field::Slot(o) => {
                dynasm!(self.a ; .arch x64 ; mov Rd(t), [rsp + o]);
                (t, true)
            }
            Field::Add(r, Src2::Slot(o)) => {
                dynasm!(self.a
                    ; .arch x64
                    ; mov Rd(t), [rsp + o]
                    ; lea Rd(t), [Rq(r) + Rq(t)]
                );
                (t, true)
            }
            Field::Sub(r, Src2::Slot(o)) => {
                dynasm!(self.a
                    ; .arch x64
                    ; mov Rd(t), [rsp + o]
                    ; not Rd(t)
                    ; lea Rd(t), [Rq(r) + Rq(t) + 1]
                );
                (t, true)
            }
            Field::Add(r, Src2::Reg(x)) => {
                dynasm!(self.a ; .arch x64 ; lea Rd(t), [Rq(r) + Rq(x)]);
                (t, true)
            }
            Field::Add(r, Src2::Imm(v)) => {
                dynasm!(self.a ; .arch x64 ; lea Rd(t), [Rq(r) + v as i32]);
                (t, true)
            }
            Field::Sub(r, Src2::Reg(x)) => {
                // r - x = r + !x + 1, without touching the flags.
                dynasm!(self.a
                    ; .arch x64
                    ; mov Rd(t), Rd(x)
                    ; not Rd(t)
                    ; lea Rd(t), [Rq(r) + Rq(t) + 1]
                );
                (t, true)
            }
            Field::Sub(r, Src2::Imm(v)) => {
                dynasm!(self.a ; .arch x64 ; lea Rd(t), [Rq(r) - v as i32]);
                (t, true)
            }
            Field::And(r, s) => {
                dynasm!(self.a ; .arch x64 ; mov Rd(t), Rd(r));
                match s {
                    Src2::Reg(x) => dynasm!(self.a ; .arch x64 ; and Rd(t), Rd(x)),
                    Src2::Imm(v) => dynasm!(self.a ; .arch x64 ; and Rd(t), v as i32),
                    Src2::Slot(o) => dynasm!(self.a ; .arch x64 ; and Rd(t), [rsp + o]),
                }
                self.host_flags = 0;
                (t, true)
            }
        };
        if extend {
            match size {
                Size::D => {
                    if reg != t {
                        dynasm!(self.a ; .arch x64 ; mov Rd(t), Rd(reg));
                    }
                }
                Size::W => dynasm!(self.a ; .arch x64 ; movzx Rd(t), Rw(reg)),
                Size::B => dynasm!(self.a ; .arch x64 ; movzx Rd(t), Rb(reg)),
            }
        }
    }

    /// Before instruction `i`: the pending record is written first if the instruction may
    /// observe it (callout) or overwrites a register it is computed from, unless the
    /// instruction replaces every flag (then the record dies with it; its slow path, if any,
    /// writes it first).
    fn before(&mut self, i: usize) {
        let Some(p) = self.pending else { return };
        let insn = &self.b.insns[i];
        if insn.op == Op::Callout {
            self.materialize(true);
            return;
        }
        if insn.writes == flag::ALL && !insn.op.is_branch() && !matches!(insn.op, Op::ShiftCl { .. }) {
            return;
        }
        if p.regs() & writes_regs(&insn.op) != 0 {
            self.materialize(false);
        }
    }

    // ------------------------------------------------------------ memory

    /// `addr` without the registers known to hold 0.
    fn simplified(&self, addr: &Addr) -> Addr {
        let known = |r: Option<u8>| r.filter(|&n| self.zero & (1 << n) == 0);
        Addr { base: known(addr.base), index: known(addr.index), ..*addr }
    }

    /// The effective address of `addr` into `dst` (32 bits; 16-bit addressing wraps).
    fn ea(&mut self, addr: &Addr, dst: u8) {
        let addr = &self.simplified(addr);
        let disp = addr.disp as i32;
        match (addr.base, addr.index) {
            (None, None) => dynasm!(self.a ; .arch x64 ; mov Rd(dst), disp),
            (Some(b), None) => {
                let b = GUEST[b as usize];
                dynasm!(self.a ; .arch x64 ; lea Rd(dst), [Rq(b) + disp]);
            }
            (base, Some(i)) => {
                let i = GUEST[i as usize];
                match (base, addr.scale) {
                    (None, 0) => dynasm!(self.a ; .arch x64 ; lea Rd(dst), [Rq(i) + disp]),
                    (None, 1) => dynasm!(self.a ; .arch x64 ; lea Rd(dst), [Rq(i) * 2 + disp]),
                    (None, 2) => dynasm!(self.a ; .arch x64 ; lea Rd(dst), [Rq(i) * 4 + disp]),
                    (None, _) => dynasm!(self.a ; .arch x64 ; lea Rd(dst), [Rq(i) * 8 + disp]),
                    (Some(b), s) => {
                        let b = GUEST[b as usize];
                        match s {
                            0 => dynasm!(self.a ; .arch x64 ; lea Rd(dst), [Rq(b) + Rq(i) + disp]),
                            1 => dynasm!(self.a ; .arch x64 ; lea Rd(dst), [Rq(b) + Rq(i) * 2 + disp]),
                            2 => dynasm!(self.a ; .arch x64 ; lea Rd(dst), [Rq(b) + Rq(i) * 4 + disp]),
                            _ => dynasm!(self.a ; .arch x64 ; lea Rd(dst), [Rq(b) + Rq(i) * 8 + disp]),
                        }
                    }
                }
            }
        }
        if addr.addr16 {
            dynasm!(self.a ; .arch x64 ; movzx Rd(dst), Rw(dst));
        }
    }

    /// The effective address of `addr` as a register: the base register itself for a plain
    /// `[reg]` (32-bit addressing, no index or displacement), else computed into rsi.
    fn ea_reg(&mut self, addr: &Addr) -> u8 {
        let addr = self.simplified(addr);
        self.ea_const = None;
        match (addr.base, addr.index, addr.disp, addr.addr16) {
            (Some(b), None, 0, false) => GUEST[b as usize],
            (None, None, disp, addr16) => {
                self.ea(&addr, RSI);
                self.ea_const = Some(if addr16 { disp & 0xFFFF } else { disp });
                RSI
            }
            _ => {
                self.ea(&addr, RSI);
                RSI
            }
        }
    }

    /// The inline fast path for an access of `size` bytes at offset `ea` in `seg`; on success
    /// the access goes to the returned address, on a miss (or a failed segment check) control
    /// goes to the instruction's slow path. While linear addresses are physical:
    ///
    /// ```text
    ///   lin  = seg.base + off            (Simple: after off + size - 1 <= seg.limit)
    ///   read:  if lin > ram_size - size: goto slow (or leave; skipped when already known)
    ///   store: if direct_write_map[lin >> 12] == 0: goto the TLB probe below, out of line
    ///   access [ram_base + lin]
    /// ```
    ///
    /// Everything else goes through the TLB's fast view:
    ///
    /// ```text
    ///   f    = &fast_tlb[(lin >> 12) % TLB_ENTRIES]
    ///   if ((lin + size - 1) & !0xFFF) != f.tags[kind]: goto slow
    ///   access [f.addend + lin]          (one compare, one add)
    /// ```
    fn probe(&mut self, seg: SegReg, size: Size, write: bool, ea: u8) -> MemRef {
        let konst = self.ea_const.take().filter(|_| self.b.key.seg_class(seg) == SegClass::Flat);
        let slow = self.slow_label();
        self.host_flags = 0;
        let n = size.bytes() as i32;
        let lin = match self.b.key.seg_class(seg) {
            SegClass::Flat => ea,
            SegClass::Simple => {
                let (limit, base) = (seg_limit(seg), seg_base(seg));
                dynasm!(self.a
                    ; .arch x64
                    ; lea r9, [Rq(ea) + n - 1]
                    ; mov r8d, [rbp + limit]
                    ; cmp r9, r8
                    ; ja =>slow
                    ; mov edi, [rbp + base]
                    ; add edi, Rd(ea)
                );
                self.r8_ram = false;
                RDI
            }
            SegClass::Slow => {
                dynasm!(self.a ; .arch x64 ; jmp =>slow);
                return MemRef { index: None };
            }
        };
        let wmap = self.env.ram_write_map.filter(|_| write);
        if ram_direct(self.b, self.env) && (!write || wmap.is_some()) {
            if !self.r8_ram {
                self.load_ram_base();
                self.r8_ram = true;
            }
            if let Some(map) = wmap {
                // A store: its page's direct-write byte (which covers every 32-bit address,
                // and is set only for RAM pages followed by another: no bound check); when
                // clear, the TLB's fast view out of line (its addend for a RAM page is the RAM
                // base too, so r8 is the same after).
                let (probe, back) = (self.a.new_dynamic_label(), self.a.new_dynamic_label());
                match konst.and_then(|c| map.checked_add((c >> 12) as i32)) {
                    Some(byte) => dynasm!(self.a ; .arch x64 ; cmp BYTE [r8 + byte], 0),
                    None => dynasm!(self.a
                        ; .arch x64
                        ; mov r9d, Rd(lin)
                        ; shr r9d, 12
                        ; cmp BYTE [r8 + r9 + map], 0
                    ),
                }
                dynasm!(self.a ; .arch x64 ; je =>probe ; =>back);
                let tag = self.fast_tag(true);
                self.far_probes.push(FarProbe { label: probe, back, slow, lin, n, tag });
                return MemRef { index: Some(lin) };
            }
            // A read: below RAM's end. A constant address inside RAM needs no check, nor a
            // register checked before.
            let last = (self.env.ram_direct - n as u32) as i32;
            let konst = konst.filter(|&c| c <= last as u32);
            let guest = GUEST.iter().position(|&h| h == lin);
            match guest {
                _ if konst.is_some() => {}
                Some(g) if self.in_ram[g] >= n as u8 => {}
                Some(g) => {
                    let exit = self.exit_label();
                    dynasm!(self.a
                        ; .arch x64
                        ; cmp Rd(lin), last
                        ; ja =>exit
                    );
                    self.in_ram[g] = n as u8;
                }
                None => dynasm!(self.a
                    ; .arch x64
                    ; cmp Rd(lin), last
                    ; ja =>slow
                ),
            }
            return MemRef { index: Some(lin) };
        }
        self.r8_ram = false;
        let tag = self.fast_tag(write);
        let have = match self.wins.get(self.cur).copied().flatten() {
            Some(w) if self.b.key.seg_class(seg) == SegClass::Flat => {
                if w.first {
                    self.open_window(w);
                }
                let have = self.a.new_dynamic_label();
                let slot = w.slot();
                dynasm!(self.a
                    ; .arch x64
                    ; mov r8, [rsp + slot]
                    ; test r8, r8
                    ; jnz =>have
                );
                Some(have)
            }
            _ => None,
        };
        dynasm!(self.a
            ; .arch x64
            ; mov r9d, Rd(lin)
            ; shr r9d, FAST_SHIFT
            ; and r9d, FAST_INDEX_MASK
            ; add r9, [rsp + F_TLB]
        );
        if n > 1 {
            dynasm!(self.a ; .arch x64 ; lea r8d, [Rq(lin) + n - 1]);
        } else {
            dynasm!(self.a ; .arch x64 ; mov r8d, Rd(lin));
        }
        dynasm!(self.a
            ; .arch x64
            ; and r8d, 0xFFFF_F000u32 as i32
            ; cmp r8d, [r9 + tag]
            ; jne =>slow
            ; mov r8, [r9 + FAST_ADDEND]
        );
        if let Some(have) = have {
            dynasm!(self.a ; .arch x64 ; =>have);
        }
        MemRef { index: Some(lin) }
    }

    /// The TLB probe of a store whose direct-write byte was clear (see [`Emitter::probe`]).
    fn far_probe(&mut self, p: &FarProbe) {
        let (label, back, slow, lin, n, tag) = (p.label, p.back, p.slow, p.lin, p.n, p.tag);
        dynasm!(self.a
            ; .arch x64
            ; =>label
            ; mov r9d, Rd(lin)
            ; shr r9d, FAST_SHIFT
            ; and r9d, FAST_INDEX_MASK
            ; add r9, [rsp + F_TLB]
            ; lea r8d, [Rq(lin) + n - 1]
            ; and r8d, 0xFFFF_F000u32 as i32
            ; cmp r8d, [r9 + tag]
            ; jne =>slow
            ; mov r8, [r9 + FAST_ADDEND]
            ; jmp =>back
        );
    }

    /// The offset in a `FastEntry` of the tag for this block's privilege and a read or write.
    fn fast_tag(&self, write: bool) -> i32 {
        let kind = match (write, self.b.key.user()) {
            (false, false) => fast_kind::READ_SUPERVISOR,
            (true, false) => fast_kind::WRITE_SUPERVISOR,
            (false, true) => fast_kind::READ_USER,
            (true, true) => fast_kind::WRITE_USER,
        };
        4 * kind as i32
    }

    /// Sets up frame window `w`: when `[base + w.min, + w.span)` lies in one page whose TLB
    /// fast view allows the group's accesses, its host addend goes to the window's frame slot,
    /// otherwise 0 (every access of the group then probes as usual). Uses r8 and r9.
    fn open_window(&mut self, w: Window) {
        let tag = self.fast_tag(w.write);
        let (min, last, slot, base) = (w.min, w.span as i32 - 1, w.slot(), GUEST[w.base as usize]);
        let (none, done) = (self.a.new_dynamic_label(), self.a.new_dynamic_label());
        dynasm!(self.a
            ; .arch x64
            ; lea r8d, [Rq(base) + min]
            ; mov r9d, r8d
            ; shr r9d, FAST_SHIFT
            ; and r9d, FAST_INDEX_MASK
            ; add r9, [rsp + F_TLB]
            ; add r8d, last
            ; and r8d, 0xFFFF_F000u32 as i32
            ; cmp r8d, [r9 + tag]
            ; jne =>none
            ; mov r8, [r9 + FAST_ADDEND]
            ; mov [rsp + slot], r8
            ; jmp =>done
            ; =>none
            ; mov QWORD [rsp + slot], 0
            ; =>done
        );
    }

    /// The access as one host address in r8 (for a read-modify-write, whose index register
    /// may not survive until the write).
    fn flatten(&mut self, m: MemRef) -> MemRef {
        self.r8_ram = false;
        if let Some(i) = m.index {
            dynasm!(self.a ; .arch x64 ; add r8, Rq(i));
        }
        MemRef { index: None }
    }

    /// Loads `size` bytes at `m` into `dst`, zero-extended.
    fn load(&mut self, dst: u8, size: Size, m: MemRef) {
        match (size, m.index) {
            (Size::B, None) => dynasm!(self.a ; .arch x64 ; movzx Rd(dst), BYTE [r8]),
            (Size::W, None) => dynasm!(self.a ; .arch x64 ; movzx Rd(dst), WORD [r8]),
            (Size::D, None) => dynasm!(self.a ; .arch x64 ; mov Rd(dst), [r8]),
            (Size::B, Some(i)) => dynasm!(self.a ; .arch x64 ; movzx Rd(dst), BYTE [r8 + Rq(i)]),
            (Size::W, Some(i)) => dynasm!(self.a ; .arch x64 ; movzx Rd(dst), WORD [r8 + Rq(i)]),
            (Size::D, Some(i)) => dynasm!(self.a ; .arch x64 ; mov Rd(dst), [r8 + Rq(i)]),
        }
    }

    /// Stores `v` (`size` bytes) at `m`.
    fn store(&mut self, v: Val, size: Size, m: MemRef) {
        match (v, size, m.index) {
            (Val::Imm(x), Size::B, None) => dynasm!(self.a ; .arch x64 ; mov BYTE [r8], x as i8),
            (Val::Imm(x), Size::W, None) => dynasm!(self.a ; .arch x64 ; mov WORD [r8], x as i16),
            (Val::Imm(x), Size::D, None) => dynasm!(self.a ; .arch x64 ; mov DWORD [r8], x as i32),
            (Val::Host(r) | Val::Temp(r), Size::B, None) => dynasm!(self.a ; .arch x64 ; mov [r8], Rb(r)),
            (Val::Host(r) | Val::Temp(r), Size::W, None) => dynasm!(self.a ; .arch x64 ; mov [r8], Rw(r)),
            (Val::Host(r) | Val::Temp(r), Size::D, None) => dynasm!(self.a ; .arch x64 ; mov [r8], Rd(r)),
            (Val::Imm(x), Size::B, Some(i)) => dynasm!(self.a ; .arch x64 ; mov BYTE [r8 + Rq(i)], x as i8),
            (Val::Imm(x), Size::W, Some(i)) => dynasm!(self.a ; .arch x64 ; mov WORD [r8 + Rq(i)], x as i16),
            (Val::Imm(x), Size::D, Some(i)) => dynasm!(self.a ; .arch x64 ; mov DWORD [r8 + Rq(i)], x as i32),
            (Val::Host(r) | Val::Temp(r), Size::B, Some(i)) => {
                dynasm!(self.a ; .arch x64 ; mov [r8 + Rq(i)], Rb(r))
            }
            (Val::Host(r) | Val::Temp(r), Size::W, Some(i)) => {
                dynasm!(self.a ; .arch x64 ; mov [r8 + Rq(i)], Rw(r))
            }
            (Val::Host(r) | Val::Temp(r), Size::D, Some(i)) => {
                dynasm!(self.a ; .arch x64 ; mov [r8 + Rq(i)], Rd(r))
            }
        }
    }

    /// The stack pointer moved by `delta` into rsi (the EA of a stack access).
    fn stack_ea(&mut self, delta: i32) {
        self.ea_const = None;
        dynasm!(self.a ; .arch x64 ; lea esi, [r12 + delta]);
        if !self.b.key.stack32() {
            dynasm!(self.a ; .arch x64 ; movzx esi, si);
        }
    }

    /// ESP (or SP) += `delta`, without touching the host flags.
    fn commit_sp(&mut self, delta: i32) {
        if self.b.key.stack32() {
            dynasm!(self.a ; .arch x64 ; lea r12d, [r12 + delta]);
        } else {
            dynasm!(self.a
                ; .arch x64
                ; lea r9d, [r12 + delta]
                ; mov r12w, r9w
            );
        }
    }

    // ------------------------------------------------------------ registers and operands

    /// Reads guest register `g` into temporary `t`, zero-extended.
    fn read_gpr(&mut self, t: u8, g: Gpr) {
        let h = GUEST[g.num as usize];
        match (g.size, g.high) {
            (Size::D, _) => dynasm!(self.a ; .arch x64 ; mov Rd(t), Rd(h)),
            (Size::W, _) => dynasm!(self.a ; .arch x64 ; movzx Rd(t), Rw(h)),
            (Size::B, false) => dynasm!(self.a ; .arch x64 ; movzx Rd(t), Rb(h)),
            (Size::B, true) => {
                dynasm!(self.a
                    ; .arch x64
                    ; mov Rd(t), Rd(h)
                    ; shr Rd(t), 8
                    ; movzx Rd(t), Rb(t)
                );
                self.host_flags = 0;
            }
        }
    }

    /// Writes the low `g.size` bytes of temporary `t` to guest register `g`.
    fn write_gpr(&mut self, g: Gpr, t: u8) {
        let h = GUEST[g.num as usize];
        match (g.size, g.high) {
            (Size::D, _) => dynasm!(self.a ; .arch x64 ; mov Rd(h), Rd(t)),
            (Size::W, _) => dynasm!(self.a ; .arch x64 ; mov Rw(h), Rw(t)),
            (Size::B, false) => dynasm!(self.a ; .arch x64 ; mov Rb(h), Rb(t)),
            (Size::B, true) => {
                dynasm!(self.a
                    ; .arch x64
                    ; ror Rd(h), 8
                    ; mov Rb(h), Rb(t)
                    ; rol Rd(h), 8
                );
                self.host_flags = 0;
            }
        }
    }

    /// Operand `o` of `size` into temporary `t`, zero-extended (memory through the fast path).
    fn fetch(&mut self, t: u8, o: &Operand, size: Size) {
        match *o {
            Operand::Reg(g) => self.read_gpr(t, g),
            Operand::Imm(v) => dynasm!(self.a ; .arch x64 ; mov Rd(t), v as i32),
            Operand::Mem(addr) => {
                let ea = self.ea_reg(&addr);
                let m = self.probe(addr.seg, size, false, ea);
                self.load(t, size, m);
            }
        }
    }

    /// A source operand as a host operand: pinned registers are used in place.
    fn src_val(&mut self, o: &Operand, size: Size, t: u8) -> Val {
        match *o {
            Operand::Reg(g) if !g.high => Val::Host(GUEST[g.num as usize]),
            Operand::Imm(v) => Val::Imm(v & size.mask()),
            _ => {
                self.fetch(t, o, size);
                Val::Temp(t)
            }
        }
    }

    /// Stores `v` into a lazy-flags field, masked to `size`.
    fn lazy_field(&mut self, off: i32, v: Val, size: Size) {
        match (v, size) {
            (Val::Imm(x), _) => dynasm!(self.a ; .arch x64 ; mov DWORD [rbp + off], x as i32),
            (Val::Temp(r), _) | (Val::Host(r), Size::D) => {
                dynasm!(self.a ; .arch x64 ; mov [rbp + off], Rd(r))
            }
            (Val::Host(r), Size::W) => dynasm!(self.a
                ; .arch x64
                ; movzx r9d, Rw(r)
                ; mov [rbp + off], r9d
            ),
            (Val::Host(r), Size::B) => dynasm!(self.a
                ; .arch x64
                ; movzx r9d, Rb(r)
                ; mov [rbp + off], r9d
            ),
        }
    }

    fn lazy_kind(&mut self, kind: FlagOp, size: Size) {
        let k = lazy_op(kind, size);
        dynasm!(self.a ; .arch x64 ; mov DWORD [rbp + S_LAZY_OP], k);
    }

    /// The destination of a read-modify-write as a host operand: a pinned register in place,
    /// or `TA` loaded from a high-byte register or from memory (host address left in r8).
    fn rmw_begin(&mut self, dst: &Operand, size: Size, write: bool) -> Val {
        match *dst {
            Operand::Reg(g) if !g.high => Val::Host(GUEST[g.num as usize]),
            Operand::Reg(g) => {
                self.read_gpr(TA, g);
                Val::Temp(TA)
            }
            Operand::Mem(addr) => {
                let ea = self.ea_reg(&addr);
                let m = self.probe(addr.seg, size, write, ea);
                let m = self.flatten(m);
                self.load(TA, size, m);
                Val::Temp(TA)
            }
            Operand::Imm(_) => unreachable!("an immediate is never a destination"),
        }
    }

    /// Writes `TA` back to a destination begun with [`Emitter::rmw_begin`].
    fn rmw_end(&mut self, dst: &Operand, size: Size) {
        match *dst {
            Operand::Reg(g) if g.high => self.write_gpr(g, TA),
            Operand::Mem(_) => self.store(Val::Temp(TA), size, MemRef { index: None }),
            _ => {}
        }
    }

    // ------------------------------------------------------------ operations

    fn live(&self) -> u8 {
        let i = &self.b.insns[self.cur];
        i.live_out & i.writes
    }

    fn mov(&mut self, size: Size, dst: Operand, src: Operand) {
        match (dst, src) {
            (Operand::Reg(d), Operand::Reg(s)) if !d.high && !s.high => {
                let (d, s) = (GUEST[d.num as usize], GUEST[s.num as usize]);
                match size {
                    Size::D => dynasm!(self.a ; .arch x64 ; mov Rd(d), Rd(s)),
                    Size::W => dynasm!(self.a ; .arch x64 ; mov Rw(d), Rw(s)),
                    Size::B => dynasm!(self.a ; .arch x64 ; mov Rb(d), Rb(s)),
                }
            }
            (Operand::Reg(d), Operand::Imm(v)) if !d.high => {
                let d = GUEST[d.num as usize];
                match size {
                    Size::D => dynasm!(self.a ; .arch x64 ; mov Rd(d), v as i32),
                    Size::W => dynasm!(self.a ; .arch x64 ; mov Rw(d), v as i16),
                    Size::B => dynasm!(self.a ; .arch x64 ; mov Rb(d), v as i8),
                }
            }
            (Operand::Reg(d), Operand::Mem(addr)) if !d.high => {
                let ea = self.ea_reg(&addr);
                let m = self.probe(addr.seg, size, false, ea);
                let d = GUEST[d.num as usize];
                match (size, m.index) {
                    (Size::D, None) => dynasm!(self.a ; .arch x64 ; mov Rd(d), [r8]),
                    (Size::W, None) => dynasm!(self.a ; .arch x64 ; mov Rw(d), WORD [r8]),
                    (Size::B, None) => dynasm!(self.a ; .arch x64 ; mov Rb(d), BYTE [r8]),
                    (Size::D, Some(i)) => dynasm!(self.a ; .arch x64 ; mov Rd(d), [r8 + Rq(i)]),
                    (Size::W, Some(i)) => dynasm!(self.a ; .arch x64 ; mov Rw(d), WORD [r8 + Rq(i)]),
                    (Size::B, Some(i)) => dynasm!(self.a ; .arch x64 ; mov Rb(d), BYTE [r8 + Rq(i)]),
                }
            }
            (Operand::Reg(d), _) => {
                self.fetch(TA, &src, size);
                self.write_gpr(d, TA);
            }
            (Operand::Mem(addr), _) => {
                let v = self.src_val(&src, size, TA);
                let ea = self.ea_reg(&addr);
                let m = self.probe(addr.seg, size, true, ea);
                self.store(v, size, m);
            }
            (Operand::Imm(_), _) => unreachable!("an immediate is never a destination"),
        }
    }

    /// `op d, s` on the host at `size` (both registers).
    fn host_alu_rr(&mut self, op: AluOp, size: Size, d: u8, s: u8) {
        macro_rules! rr {
            ($m:ident) => {
                match size {
                    Size::D => dynasm!(self.a ; .arch x64 ; $m Rd(d), Rd(s)),
                    Size::W => dynasm!(self.a ; .arch x64 ; $m Rw(d), Rw(s)),
                    Size::B => dynasm!(self.a ; .arch x64 ; $m Rb(d), Rb(s)),
                }
            };
        }
        match op {
            AluOp::Add => rr!(add),
            AluOp::Or => rr!(or),
            AluOp::Adc => rr!(adc),
            AluOp::Sbb => rr!(sbb),
            AluOp::And | AluOp::Test => rr!(and),
            AluOp::Sub | AluOp::Cmp => rr!(sub),
            AluOp::Xor => rr!(xor),
        }
    }

    /// `cmp d, s` or `test d, s` on the host at `size`.
    fn host_cmp(&mut self, test: bool, size: Size, d: u8, s: Val) {
        match (test, s, size) {
            (false, Val::Imm(v), Size::D | Size::W) if imm8(size, v).is_some() => {
                self.cmp_imm8(size == Size::W, false, d, imm8(size, v).unwrap_or_default());
            }
            (false, Val::Imm(v), Size::D) => dynasm!(self.a ; .arch x64 ; cmp Rd(d), v as i32),
            (false, Val::Imm(v), Size::W) => dynasm!(self.a ; .arch x64 ; cmp Rw(d), v as i16),
            (false, Val::Imm(v), Size::B) => dynasm!(self.a ; .arch x64 ; cmp Rb(d), v as i8),
            (false, Val::Host(r) | Val::Temp(r), Size::D) => dynasm!(self.a ; .arch x64 ; cmp Rd(d), Rd(r)),
            (false, Val::Host(r) | Val::Temp(r), Size::W) => dynasm!(self.a ; .arch x64 ; cmp Rw(d), Rw(r)),
            (false, Val::Host(r) | Val::Temp(r), Size::B) => dynasm!(self.a ; .arch x64 ; cmp Rb(d), Rb(r)),
            (true, Val::Imm(v), Size::D) => dynasm!(self.a ; .arch x64 ; test Rd(d), v as i32),
            (true, Val::Imm(v), Size::W) => dynasm!(self.a ; .arch x64 ; test Rw(d), v as i16),
            (true, Val::Imm(v), Size::B) => dynasm!(self.a ; .arch x64 ; test Rb(d), v as i8),
            (true, Val::Host(r) | Val::Temp(r), Size::D) => dynasm!(self.a ; .arch x64 ; test Rd(d), Rd(r)),
            (true, Val::Host(r) | Val::Temp(r), Size::W) => dynasm!(self.a ; .arch x64 ; test Rw(d), Rw(r)),
            (true, Val::Host(r) | Val::Temp(r), Size::B) => dynasm!(self.a ; .arch x64 ; test Rb(d), Rb(r)),
        }
    }

    /// `cmp d, [m]` (or `test`) on the host at `size`.
    fn cmp_mem(&mut self, test: bool, size: Size, d: u8, m: MemRef) {
        match (test, size, m.index) {
            (false, Size::D, None) => dynasm!(self.a ; .arch x64 ; cmp Rd(d), [r8]),
            (false, Size::W, None) => dynasm!(self.a ; .arch x64 ; cmp Rw(d), [r8]),
            (false, Size::B, None) => dynasm!(self.a ; .arch x64 ; cmp Rb(d), [r8]),
            (false, Size::D, Some(i)) => dynasm!(self.a ; .arch x64 ; cmp Rd(d), [r8 + Rq(i)]),
            (false, Size::W, Some(i)) => dynasm!(self.a ; .arch x64 ; cmp Rw(d), [r8 + Rq(i)]),
            (false, Size::B, Some(i)) => dynasm!(self.a ; .arch x64 ; cmp Rb(d), [r8 + Rq(i)]),
            (true, Size::D, None) => dynasm!(self.a ; .arch x64 ; test [r8], Rd(d)),
            (true, Size::W, None) => dynasm!(self.a ; .arch x64 ; test [r8], Rw(d)),
            (true, Size::B, None) => dynasm!(self.a ; .arch x64 ; test [r8], Rb(d)),
            (true, Size::D, Some(i)) => dynasm!(self.a ; .arch x64 ; test [r8 + Rq(i)], Rd(d)),
            (true, Size::W, Some(i)) => dynasm!(self.a ; .arch x64 ; test [r8 + Rq(i)], Rw(d)),
            (true, Size::B, Some(i)) => dynasm!(self.a ; .arch x64 ; test [r8 + Rq(i)], Rb(d)),
        }
    }

    /// `op d, imm` on the host at `size`.
    fn host_alu_ri(&mut self, op: AluOp, size: Size, d: u8, v: u32) {
        macro_rules! ri {
            ($m:ident) => {
                match (size, imm8(size, v)) {
                    (Size::D, Some(b)) => dynasm!(self.a ; .arch x64 ; $m Rd(d), BYTE b),
                    (Size::W, Some(b)) => dynasm!(self.a ; .arch x64 ; $m Rw(d), BYTE b),
                    (Size::D, None) => dynasm!(self.a ; .arch x64 ; $m Rd(d), v as i32),
                    (Size::W, None) => dynasm!(self.a ; .arch x64 ; $m Rw(d), v as i16),
                    (Size::B, _) => dynasm!(self.a ; .arch x64 ; $m Rb(d), v as i8),
                }
            };
        }
        match op {
            AluOp::Add => ri!(add),
            AluOp::Or => ri!(or),
            AluOp::Adc => ri!(adc),
            AluOp::Sbb => ri!(sbb),
            AluOp::And | AluOp::Test => ri!(and),
            AluOp::Sub | AluOp::Cmp => ri!(sub),
            AluOp::Xor => ri!(xor),
        }
    }

    fn host_alu(&mut self, op: AluOp, size: Size, d: u8, s: Val) {
        match s {
            Val::Imm(v) => self.host_alu_ri(op, size, d, v),
            Val::Host(r) | Val::Temp(r) => self.host_alu_rr(op, size, d, r),
        }
    }

    /// A producer that writes every flag and whose flags are dead: the old record dies too.
    fn flags_dead(&mut self) {
        if self.b.insns[self.cur].writes == flag::ALL {
            self.pending = None;
        }
    }

    /// The flags of the current instruction are read by the conditional branch right after it
    /// and by nothing else: that branch's fall-through needs none, and its taken path stays in
    /// the block at an instruction that needs none (see [`Emitter::internal_target`]).
    fn record_dies_at_branch(&self) -> bool {
        let next = self.cur + 1;
        match self.b.insns.get(next) {
            Some(j @ crate::ir::Insn { op: Op::Jcc { target, .. }, .. }) => {
                j.live_out == 0
                    && next + 1 < self.b.insns.len()
                    && self.internal_target(next, *target).is_some()
            }
            _ => false,
        }
    }

    /// The instruction may take a slow path (its record must then be fully derivable from
    /// registers or written eagerly, see [`Pending`]).
    fn has_slow_path(&self) -> bool {
        self.b.insns[self.cur].op.touches_memory()
    }

    fn alu(&mut self, op: AluOp, size: Size, dst: Operand, src: Operand) {
        let live = self.live();
        let mem = matches!(dst, Operand::Mem(_)) || matches!(src, Operand::Mem(_));
        if !op.writes() && live == 0 && !mem {
            self.flags_dead();
            return; // CMP/TEST whose flags nobody reads.
        }
        let carry_in = matches!(op, AluOp::Adc | AluOp::Sbb);
        if carry_in {
            self.ensure_flags(flag::CF);
            dynasm!(self.a ; .arch x64 ; setc BYTE [rsp + F_TMP]);
        }
        if let (Operand::Reg(g), Operand::Mem(addr), AluOp::Cmp | AluOp::Test) = (dst, src, op) {
            if !g.high && self.record_dies_at_branch() {
                // Only the branch that follows reads these flags: compare with memory in place.
                let ea = self.ea_reg(&addr);
                let m = self.probe(addr.seg, size, false, ea);
                self.cmp_mem(op == AluOp::Test, size, GUEST[g.num as usize], m);
                self.host_flags = if op == AluOp::Test { flag::ALL & !flag::AF } else { flag::ALL };
                self.pending = None;
                return;
            }
        }
        let a = self.rmw_begin(&dst, size, op.writes());
        let b = self.src_val(&src, size, TB);
        let kind = match op {
            AluOp::Add | AluOp::Adc => FlagOp::Add,
            AluOp::Sub | AluOp::Sbb | AluOp::Cmp => FlagOp::Sub,
            _ => FlagOp::Logic,
        };
        if !carry_in && matches!(a, Val::Host(_)) && self.record_dies_at_branch() {
            // Only the branch that follows reads these flags, from the host's.
            self.alu_on_host(op, kind, size, a, b, false);
            self.pending = None;
            return;
        }
        // A memory source of ADD/SUB/CMP/TEST is kept in the frame, so the record can stay
        // pending (a slow path refills the slot from the record emu-core wrote).
        let b_src = match (a, b) {
            (Val::Host(_), Val::Temp(t))
                if matches!(src, Operand::Mem(_))
                    && matches!(op, AluOp::Add | AluOp::Sub | AluOp::Cmp | AluOp::Test) =>
            {
                dynasm!(self.a ; .arch x64 ; mov [rsp + F_SRC], Rd(t));
                self.refill_src = true;
                Some(Src2::Slot(F_SRC))
            }
            _ => Src2::of(b),
        };
        // The record stays pending when it can be computed from pinned registers later.
        let deferred = match (a, b_src) {
            // AND/OR/XOR: emu-core's record needs only the result, in the destination register
            // (whatever the source was, and even after a slow path).
            (Val::Host(d), _) if matches!(op, AluOp::And | AluOp::Or | AluOp::Xor) => {
                Some(Pending { kind, size, res: Field::Reg(d), src: Field::Stored, dst: Field::Stored })
            }
            (Val::Host(d), Some(s)) if !carry_in && (!mem || matches!(s, Src2::Slot(_))) => {
                let same = s == Src2::Reg(d);
                Some(match op {
                    AluOp::Add if !same => {
                        Pending { kind, size, res: Field::Reg(d), src: Field::from(s), dst: Field::Sub(d, s) }
                    }
                    AluOp::Sub if !same => {
                        Pending { kind, size, res: Field::Reg(d), src: Field::from(s), dst: Field::Add(d, s) }
                    }
                    AluOp::Cmp => {
                        Pending { kind, size, res: Field::Sub(d, s), src: Field::from(s), dst: Field::Reg(d) }
                    }
                    AluOp::And | AluOp::Or | AluOp::Xor => {
                        Pending { kind, size, res: Field::Reg(d), src: Field::Stored, dst: Field::Stored }
                    }
                    AluOp::Test => {
                        let res = if same { Field::Reg(d) } else { Field::And(d, s) };
                        Pending { kind, size, res, src: Field::Stored, dst: Field::Stored }
                    }
                    _ => return self.alu_eager(op, kind, size, &dst, a, b, live, carry_in),
                })
            }
            _ => None,
        };
        match deferred {
            Some(p) => {
                self.alu_on_host(op, kind, size, a, b, carry_in);
                self.pending = if live != 0 { Some(p) } else { None };
            }
            None => self.alu_eager(op, kind, size, &dst, a, b, live, carry_in),
        }
    }

    /// The operation on the host for its result and flags, which the host's EFLAGS then hold
    /// (CMP and TEST only compare: their result is not needed).
    fn alu_on_host(&mut self, op: AluOp, kind: FlagOp, size: Size, a: Val, b: Val, carry_in: bool) {
        if op.writes() {
            self.host_op(op, size, a, b, carry_in);
        } else {
            self.host_cmp(op == AluOp::Test, size, a.reg().expect("a register"), b);
        }
        self.host_flags = if kind == FlagOp::Logic { flag::ALL & !flag::AF } else { flag::ALL };
    }

    /// `op a, b` on the host (CMP and TEST on a copy in r9); returns where the result is.
    fn host_op(&mut self, op: AluOp, size: Size, a: Val, b: Val, carry_in: bool) -> Val {
        if carry_in {
            dynasm!(self.a ; .arch x64 ; bt DWORD [rsp + F_TMP], 0);
        }
        if op.writes() {
            let d = a.reg().expect("a destination is a register");
            self.host_alu(op, size, d, b);
            a
        } else {
            match (a, size) {
                (Val::Temp(r), _) | (Val::Host(r), Size::D) => dynasm!(self.a ; .arch x64 ; mov r9d, Rd(r)),
                (Val::Host(r), Size::W) => dynasm!(self.a ; .arch x64 ; movzx r9d, Rw(r)),
                (Val::Host(r), Size::B) => dynasm!(self.a ; .arch x64 ; movzx r9d, Rb(r)),
                (Val::Imm(_), _) => unreachable!(),
            }
            self.host_alu(op, size, R9, b);
            Val::Temp(R9)
        }
    }

    /// An ALU operation whose record is written as it runs (memory or high-byte operands, ADC,
    /// SBB, an operand that is also the destination).
    #[allow(clippy::too_many_arguments)]
    fn alu_eager(
        &mut self,
        op: AluOp,
        kind: FlagOp,
        size: Size,
        dst: &Operand,
        a: Val,
        b: Val,
        live: u8,
        carry_in: bool,
    ) {
        let store_flags = live != 0;
        if store_flags && kind != FlagOp::Logic {
            self.lazy_field(S_LAZY_DST, a, size);
            self.lazy_field(S_LAZY_SRC, b, size);
        }
        let res = self.host_op(op, size, a, b, carry_in);
        self.host_flags = if kind == FlagOp::Logic { flag::ALL & !flag::AF } else { flag::ALL };
        if op.writes() {
            self.rmw_end(dst, size);
            if matches!(dst, Operand::Reg(g) if g.high) {
                // The write-back clobbered the host flags.
                self.host_flags = 0;
            }
        }
        if store_flags {
            self.lazy_field(S_LAZY_RES, res, size);
            self.lazy_kind(kind, size);
        }
        self.pending = None;
    }

    fn inc_dec(&mut self, dec: bool, size: Size, dst: Operand) {
        let live = self.live();
        let cf_live = self.b.insns[self.cur].live_out & flag::CF != 0;
        let in_reg = matches!(dst, Operand::Reg(g) if !g.high);
        if live != 0 && cf_live && in_reg {
            // INC/DEC keep CF: emu-core's lazy INC/DEC record takes it from EFLAGS. While the
            // record is lazy EFLAGS' low byte matters only for CF (the other arithmetic bits
            // are the record's; bit 1 is reserved and `CpuState::eflags` always reads it as 1,
            // whatever the field holds), so one `setc` to memory does, with no
            // read-modify-write of EFLAGS (no store-to-load chain). Nothing can fault before
            // this instruction's record takes over.
            self.ensure_flags(flag::CF);
            dynasm!(self.a ; .arch x64 ; setc BYTE [rbp + S_EFLAGS]);
        }
        let prior_cf = self.host_flags & flag::CF;
        let a = self.rmw_begin(&dst, size, true);
        if live != 0 && cf_live && !in_reg {
            // After the memory access (which may still fault): a full read-modify-write.
            self.ensure_flags(flag::CF);
            dynasm!(self.a
                ; .arch x64
                ; setc r9b
                ; movzx r9d, r9b
                ; and DWORD [rbp + S_EFLAGS], !(fl::CF as i32)
                ; or [rbp + S_EFLAGS], r9d
            );
        }
        if live != 0 && !in_reg {
            self.lazy_field(S_LAZY_DST, a, size);
            dynasm!(self.a ; .arch x64 ; mov DWORD [rbp + S_LAZY_SRC], 1);
        }
        let d = a.reg().expect("a destination is a register");
        match (dec, size) {
            (false, Size::D) => dynasm!(self.a ; .arch x64 ; inc Rd(d)),
            (false, Size::W) => dynasm!(self.a ; .arch x64 ; inc Rw(d)),
            (false, Size::B) => dynasm!(self.a ; .arch x64 ; inc Rb(d)),
            (true, Size::D) => dynasm!(self.a ; .arch x64 ; dec Rd(d)),
            (true, Size::W) => dynasm!(self.a ; .arch x64 ; dec Rw(d)),
            (true, Size::B) => dynasm!(self.a ; .arch x64 ; dec Rb(d)),
        }
        // The host's CF is untouched by INC/DEC, as the guest's is.
        self.host_flags = (flag::ALL & !flag::CF) | (self.host_flags & prior_cf);
        self.rmw_end(&dst, size);
        if matches!(dst, Operand::Reg(g) if g.high) {
            self.host_flags = 0;
        }
        let kind = if dec { FlagOp::Dec } else { FlagOp::Inc };
        if live == 0 {
            // Dead: the previous record (whose CF may still count) stays.
        } else if in_reg {
            let old = if dec { Field::Add(d, Src2::Imm(1)) } else { Field::Sub(d, Src2::Imm(1)) };
            self.pending = Some(Pending { kind, size, res: Field::Reg(d), src: Field::Imm(1), dst: old });
        } else {
            self.lazy_field(S_LAZY_RES, a, size);
            self.lazy_kind(kind, size);
            self.pending = None;
        }
    }

    fn neg(&mut self, size: Size, dst: Operand) {
        let live = self.live();
        let a = self.rmw_begin(&dst, size, true);
        if live != 0 {
            self.lazy_field(S_LAZY_SRC, a, size);
        }
        let d = a.reg().expect("a destination is a register");
        match size {
            Size::D => dynasm!(self.a ; .arch x64 ; neg Rd(d)),
            Size::W => dynasm!(self.a ; .arch x64 ; neg Rw(d)),
            Size::B => dynasm!(self.a ; .arch x64 ; neg Rb(d)),
        }
        self.host_flags = flag::ALL;
        self.rmw_end(&dst, size);
        if matches!(dst, Operand::Reg(g) if g.high) {
            self.host_flags = 0;
        }
        if live == 0 {
            self.pending = None;
        } else if let (Val::Host(d), false) = (a, self.has_slow_path()) {
            self.pending = Some(Pending {
                kind: FlagOp::Sub,
                size,
                res: Field::Reg(d),
                src: Field::Stored,
                dst: Field::Imm(0),
            });
        } else {
            dynasm!(self.a ; .arch x64 ; mov DWORD [rbp + S_LAZY_DST], 0);
            self.lazy_field(S_LAZY_RES, a, size);
            self.lazy_kind(FlagOp::Sub, size);
            self.pending = None;
        }
    }

    fn not(&mut self, size: Size, dst: Operand) {
        let a = self.rmw_begin(&dst, size, true);
        let d = a.reg().expect("a destination is a register");
        match size {
            Size::D => dynasm!(self.a ; .arch x64 ; not Rd(d)),
            Size::W => dynasm!(self.a ; .arch x64 ; not Rw(d)),
            Size::B => dynasm!(self.a ; .arch x64 ; not Rb(d)),
        }
        self.rmw_end(&dst, size);
    }

    /// `op d, c` on the host (SHL SHR SAR ROL ROR by an immediate).
    fn host_shift(&mut self, op: ShiftOp, size: Size, d: u8, c: i8) {
        shift_arms!(self, op, size, d, c);
    }

    /// ROL/ROR by an immediate (1 ≤ count < width). They change only CF and OF. With either
    /// live, the host's flags are first made the guest's, the rotate is done as `count - 1`
    /// steps and then one, whose CF and OF are then exactly emu-core's (the one-step
    /// definitions applied to the final result, isa/shift.rs), and the flags are stored
    /// eagerly.
    fn rotate(&mut self, op: ShiftOp, size: Size, dst: Operand, count: u8) {
        let live = self.live();
        let a = self.rmw_begin(&dst, size, true);
        let d = a.reg().expect("a destination is a register");
        if live != 0 {
            // After the probe (whose compare clobbers the host flags); only r9 is used.
            self.ensure_flags(flag::ALL);
        }
        if live == 0 {
            self.host_shift(op, size, d, count as i8);
            self.rmw_end(&dst, size);
            self.host_flags &= !(flag::CF | flag::OF);
            if matches!(dst, Operand::Reg(g) if g.high) {
                self.host_flags = 0;
            }
            self.flags_dead();
            return;
        }
        if count > 1 {
            self.host_shift(op, size, d, count as i8 - 1);
        }
        self.host_shift(op, size, d, 1);
        self.rotate_end(&dst, size);
        self.host_flags = 0;
        self.pending = None;
    }

    /// The end of a rotate whose flags are live: the write-back, and the host's arithmetic
    /// flags (the guest's now) stored eagerly to EFLAGS. They go through the frame because no
    /// register is free before the write-back.
    fn rotate_end(&mut self, dst: &Operand, size: Size) {
        dynasm!(self.a
            ; .arch x64
            ; pushfq
            ; pop QWORD [rsp + F_TMP]
        );
        self.rmw_end(dst, size);
        dynasm!(self.a
            ; .arch x64
            ; mov r9d, [rsp + F_TMP]
            ; and r9d, ARITH
            ; mov esi, [rbp + S_EFLAGS]
            ; and esi, !ARITH
            ; or esi, r9d
            ; mov [rbp + S_EFLAGS], esi
            ; mov DWORD [rbp + S_LAZY_OP], FlagOp::Eager as i32
        );
    }

    /// `op d, cl` on the host.
    fn host_shift_cl(&mut self, op: ShiftOp, size: Size, d: u8) {
        shift_arms!(self, op, size, d, cl);
    }

    /// SHL SHR SAR ROL ROR by CL. With no flag it writes live, just the host instruction.
    /// Otherwise the flags before it are written to the state first (a count of 0, masked
    /// to 5 bits, changes nothing, flags included), and for a non-zero count the shifts leave
    /// emu-core's lazy shift record (which defines CF for counts past the width) and the
    /// rotates their flags eagerly, their CF and OF made by a final one-bit rotate as in
    /// [`Emitter::rotate`].
    fn shift_cl(&mut self, op: ShiftOp, size: Size, dst: Operand) {
        let live = self.live();
        if live == 0 {
            let a = self.rmw_begin(&dst, size, true);
            let d = a.reg().expect("a destination is a register");
            self.host_shift_cl(op, size, d);
            self.rmw_end(&dst, size);
            // A count of 0 leaves the host flags alone, any other changes them.
            self.host_flags &=
                if matches!(op, ShiftOp::Rol | ShiftOp::Ror) { !(flag::CF | flag::OF) } else { 0 };
            if matches!(dst, Operand::Reg(g) if g.high) {
                self.host_flags = 0;
            }
            self.flags_dead();
            return;
        }
        self.materialize(true);
        let a = self.rmw_begin(&dst, size, true);
        let d = a.reg().expect("a destination is a register");
        let skip = self.a.new_dynamic_label();
        let done = self.a.new_dynamic_label();
        dynasm!(self.a ; .arch x64 ; test cl, 0x1F ; jz =>skip);
        match op {
            ShiftOp::Shl | ShiftOp::Shr | ShiftOp::Sar => {
                self.lazy_field(S_LAZY_DST, a, size);
                self.host_shift_cl(op, size, d);
                dynasm!(self.a
                    ; .arch x64
                    ; movzx r9d, cl
                    ; and r9d, 0x1F
                    ; mov [rbp + S_LAZY_SRC], r9d
                );
                self.lazy_field(S_LAZY_RES, a, size);
                let kind = match op {
                    ShiftOp::Shl => FlagOp::Shl,
                    ShiftOp::Shr => FlagOp::Shr,
                    _ => FlagOp::Sar,
                };
                self.lazy_kind(kind, size);
                self.rmw_end(&dst, size);
            }
            ShiftOp::Rol | ShiftOp::Ror => {
                self.regen_flags_inline(flag::ALL);
                self.host_shift_cl(op, size, d);
                let back = if op == ShiftOp::Rol { ShiftOp::Ror } else { ShiftOp::Rol };
                self.host_shift(back, size, d, 1);
                self.host_shift(op, size, d, 1);
                self.rotate_end(&dst, size);
            }
        }
        dynasm!(self.a ; .arch x64 ; jmp =>done ; =>skip);
        self.rmw_end(&dst, size);
        dynasm!(self.a ; .arch x64 ; =>done);
        self.host_flags = 0;
        self.pending = None;
    }

    fn shift(&mut self, op: ShiftOp, size: Size, dst: Operand, count: u8) {
        let live = self.live();
        let a = self.rmw_begin(&dst, size, true);
        if live != 0 {
            // emu-core's lazy shift record: the operand before the shift, the count, the result.
            self.lazy_field(S_LAZY_DST, a, size);
        }
        let d = a.reg().expect("a destination is a register");
        self.host_shift(op, size, d, count as i8);
        // The host defines CF PF ZF SF for 1 <= count < width, and OF for a count of 1 exactly as
        // emu-core chooses it for larger counts too (isa/shift.rs); AF is the host's to choose.
        self.host_flags = flag::CF | flag::PF | flag::ZF | flag::SF | if count == 1 { flag::OF } else { 0 };
        self.rmw_end(&dst, size);
        if matches!(dst, Operand::Reg(g) if g.high) {
            self.host_flags = 0;
        }
        let kind = match op {
            ShiftOp::Shl => FlagOp::Shl,
            ShiftOp::Shr => FlagOp::Shr,
            ShiftOp::Sar => FlagOp::Sar,
            ShiftOp::Rol | ShiftOp::Ror => unreachable!("rotates are Emitter::rotate"),
        };
        if live == 0 {
            self.pending = None;
        } else if let (Val::Host(d), false) = (a, self.has_slow_path()) {
            self.pending = Some(Pending {
                kind,
                size,
                res: Field::Reg(d),
                src: Field::Imm(u32::from(count)),
                dst: Field::Stored,
            });
        } else {
            dynasm!(self.a ; .arch x64 ; mov DWORD [rbp + S_LAZY_SRC], i32::from(count));
            self.lazy_field(S_LAZY_RES, a, size);
            self.lazy_kind(kind, size);
            self.pending = None;
        }
    }

    fn imul(&mut self, size: Size, dst: Gpr, src: Operand, imm: Option<u32>) {
        let live = self.live();
        let s = match self.src_val(&src, size, TB) {
            Val::Host(r) | Val::Temp(r) => r,
            Val::Imm(v) => {
                dynasm!(self.a ; .arch x64 ; mov Rd(TB), v as i32);
                TB
            }
        };
        let d = GUEST[dst.num as usize];
        match (imm, size) {
            (None, Size::W) => dynasm!(self.a ; .arch x64 ; imul Rw(d), Rw(s)),
            (None, _) => dynasm!(self.a ; .arch x64 ; imul Rd(d), Rd(s)),
            (Some(v), Size::W) => dynasm!(self.a ; .arch x64 ; imul Rw(d), Rw(s), v as i16),
            (Some(v), _) => dynasm!(self.a ; .arch x64 ; imul Rd(d), Rd(s), v as i32),
        }
        self.mul_record(live, d, size);
    }

    /// After a host multiply: CF and OF are defined by the host as by the guest (SF ZF PF are
    /// not); with flags live, emu-core's lazy multiply record — overflow in `src`, the low half
    /// of the product (in host register `low` at `size`) in `res`.
    fn mul_record(&mut self, live: u8, low: u8, size: Size) {
        self.host_flags = flag::CF | flag::OF;
        if live == 0 {
            self.pending = None;
            return;
        }
        dynasm!(self.a
            ; .arch x64
            ; seto r9b
            ; movzx r9d, r9b
            ; mov [rbp + S_LAZY_SRC], r9d
        );
        if self.has_slow_path() {
            self.lazy_field(S_LAZY_RES, Val::Host(low), size);
            self.lazy_kind(FlagOp::Mul, size);
            self.pending = None;
        } else {
            self.pending = Some(Pending {
                kind: FlagOp::Mul,
                size,
                res: Field::Reg(low),
                src: Field::Stored,
                dst: Field::Stored,
            });
        }
    }

    /// MUL: the host's, on the pinned accumulator (AL/AX/EAX in rax, DX/EDX in rdx). Its CF
    /// and OF are the guest's; the rest comes from emu-core's multiply record.
    fn mul(&mut self, size: Size, src: Operand) {
        let live = self.live();
        let s = match self.src_val(&src, size, TB) {
            Val::Host(r) | Val::Temp(r) => r,
            Val::Imm(_) => unreachable!("MUL has no immediate form"),
        };
        match size {
            Size::D => dynasm!(self.a ; .arch x64 ; mul Rd(s)),
            Size::W => dynasm!(self.a ; .arch x64 ; mul Rw(s)),
            Size::B => dynasm!(self.a ; .arch x64 ; mul Rb(s)),
        }
        // The low half of the product is AL, AX or EAX: rax at the operand size.
        self.mul_record(live, RAX, size);
    }

    /// DIV: a zero divisor or a quotient too wide for the operand size (the high half of the
    /// dividend not below the divisor) goes to the slow path, where emu-core raises #DE;
    /// otherwise the host's DIV. The guest's flags do not change (the record stays as it
    /// was); the host's are undefined.
    fn div(&mut self, size: Size, src: Operand) {
        let s = match self.src_val(&src, size, TB) {
            Val::Host(r) | Val::Temp(r) => r,
            Val::Imm(_) => unreachable!("DIV has no immediate form"),
        };
        let slow = self.slow_label();
        match size {
            Size::D => dynasm!(self.a
                ; .arch x64
                ; test Rd(s), Rd(s)
                ; jz =>slow
                ; cmp edx, Rd(s)
                ; jae =>slow
                ; div Rd(s)
            ),
            Size::W => dynasm!(self.a
                ; .arch x64
                ; test Rw(s), Rw(s)
                ; jz =>slow
                ; cmp dx, Rw(s)
                ; jae =>slow
                ; div Rw(s)
            ),
            Size::B => dynasm!(self.a
                ; .arch x64
                ; test Rb(s), Rb(s)
                ; jz =>slow
                ; movzx r9d, ax
                ; shr r9d, 8
                ; cmp r9b, Rb(s)
                ; jae =>slow
                ; div Rb(s)
            ),
        }
        self.host_flags = 0;
    }

    fn setcc(&mut self, cc: Cond, dst: Operand) {
        self.ensure_flags(cc.reads());
        match dst {
            Operand::Reg(g) if !g.high => {
                let h = GUEST[g.num as usize];
                self.set_reg(cc, h);
            }
            _ => {
                self.set_reg(cc, TA);
                match dst {
                    Operand::Reg(g) => self.write_gpr(g, TA),
                    Operand::Mem(addr) => {
                        let ea = self.ea_reg(&addr);
                        let m = self.probe(addr.seg, Size::B, true, ea);
                        self.store(Val::Temp(TA), Size::B, m);
                    }
                    Operand::Imm(_) => unreachable!(),
                }
            }
        }
    }

    /// `setcc r8` for host register `r`.
    /// `setcc BYTE [rsp + slot]`: the condition kept in a frame byte while the host flags go.
    fn set_frame(&mut self, cc: Cond, slot: i32) {
        cc_arms!(cc,
            0 => dynasm!(self.a ; .arch x64 ; seto BYTE [rsp + slot]),
            1 => dynasm!(self.a ; .arch x64 ; setno BYTE [rsp + slot]),
            2 => dynasm!(self.a ; .arch x64 ; setb BYTE [rsp + slot]),
            3 => dynasm!(self.a ; .arch x64 ; setae BYTE [rsp + slot]),
            4 => dynasm!(self.a ; .arch x64 ; sete BYTE [rsp + slot]),
            5 => dynasm!(self.a ; .arch x64 ; setne BYTE [rsp + slot]),
            6 => dynasm!(self.a ; .arch x64 ; setbe BYTE [rsp + slot]),
            7 => dynasm!(self.a ; .arch x64 ; seta BYTE [rsp + slot]),
            8 => dynasm!(self.a ; .arch x64 ; sets BYTE [rsp + slot]),
            9 => dynasm!(self.a ; .arch x64 ; setns BYTE [rsp + slot]),
            10 => dynasm!(self.a ; .arch x64 ; setp BYTE [rsp + slot]),
            11 => dynasm!(self.a ; .arch x64 ; setnp BYTE [rsp + slot]),
            12 => dynasm!(self.a ; .arch x64 ; setl BYTE [rsp + slot]),
            13 => dynasm!(self.a ; .arch x64 ; setge BYTE [rsp + slot]),
            14 => dynasm!(self.a ; .arch x64 ; setle BYTE [rsp + slot]),
            15 => dynasm!(self.a ; .arch x64 ; setg BYTE [rsp + slot]),
        );
    }

    fn set_reg(&mut self, cc: Cond, r: u8) {
        cc_arms!(cc,
            0 => dynasm!(self.a ; .arch x64 ; seto Rb(r)),
            1 => dynasm!(self.a ; .arch x64 ; setno Rb(r)),
            2 => dynasm!(self.a ; .arch x64 ; setb Rb(r)),
            3 => dynasm!(self.a ; .arch x64 ; setae Rb(r)),
            4 => dynasm!(self.a ; .arch x64 ; sete Rb(r)),
            5 => dynasm!(self.a ; .arch x64 ; setne Rb(r)),
            6 => dynasm!(self.a ; .arch x64 ; setbe Rb(r)),
            7 => dynasm!(self.a ; .arch x64 ; seta Rb(r)),
            8 => dynasm!(self.a ; .arch x64 ; sets Rb(r)),
            9 => dynasm!(self.a ; .arch x64 ; setns Rb(r)),
            10 => dynasm!(self.a ; .arch x64 ; setp Rb(r)),
            11 => dynasm!(self.a ; .arch x64 ; setnp Rb(r)),
            12 => dynasm!(self.a ; .arch x64 ; setl Rb(r)),
            13 => dynasm!(self.a ; .arch x64 ; setge Rb(r)),
            14 => dynasm!(self.a ; .arch x64 ; setle Rb(r)),
            15 => dynasm!(self.a ; .arch x64 ; setg Rb(r)),
        )
    }

    fn cmov(&mut self, cc: Cond, size: Size, dst: Gpr, src: Operand) {
        self.ensure_flags(cc.reads());
        let d = GUEST[dst.num as usize];
        let (s, cc) = match src {
            Operand::Reg(g) if !g.high => (GUEST[g.num as usize], cc),
            _ => {
                // The source is read whatever the condition (it may fault): keep the condition
                // in the frame while the fast path clobbers the flags.
                self.set_frame(cc, F_TMP);
                self.fetch(TB, &src, size);
                dynasm!(self.a ; .arch x64 ; cmp BYTE [rsp + F_TMP], 0);
                self.host_flags = 0;
                (TB, Cond(5)) // ne
            }
        };
        macro_rules! cm {
            ($m:ident) => {
                match size {
                    Size::W => dynasm!(self.a ; .arch x64 ; $m Rw(d), Rw(s)),
                    _ => dynasm!(self.a ; .arch x64 ; $m Rd(d), Rd(s)),
                }
            };
        }
        cc_arms!(cc,
            0 => cm!(cmovo), 1 => cm!(cmovno), 2 => cm!(cmovb), 3 => cm!(cmovae),
            4 => cm!(cmove), 5 => cm!(cmovne), 6 => cm!(cmovbe), 7 => cm!(cmova),
            8 => cm!(cmovs), 9 => cm!(cmovns), 10 => cm!(cmovp), 11 => cm!(cmovnp),
            12 => cm!(cmovl), 13 => cm!(cmovge), 14 => cm!(cmovle), 15 => cm!(cmovg),
        )
    }

    fn jcc(&mut self, cc: Cond, target: u32) {
        self.ensure_flags(cc.reads());
        let next = self.b.insns[self.cur].next_eip;
        if let Some(end) = self.hammock(target) {
            self.begin_pred(cc, end);
            return;
        }
        if let Some(k) = self.copy_for(target, self.count + 1) {
            // Back to a loop copy, through the entry that adds this branch's count to r11 (see
            // `loop_entry`).
            self.count += 1;
            let l = self.loop_entry(k, self.count);
            self.branch_on(cc, l);
            if self.cur + 1 == self.b.insns.len() {
                self.sync();
                self.exit_or_loop(next);
            }
            return;
        }
        let count = self.count + 1;
        let flags = self.pending;
        if self.cur + 1 < self.b.insns.len() {
            // A side exit: the fall-through goes on in this block.
            let join = match self.loop_back(target, count) {
                Some(back) => Some(back),
                None => self.internal_target(self.cur, target).map(Join::Wanted),
            };
            if let Some(Join::Wanted(j)) = join {
                // Straight to the join when this branch's count is the one it adopts.
                let r8_ram = self.r8_ram;
                let label = self.a.new_dynamic_label();
                let d = self.direct_joins[j].get_or_insert(DirectJoin { label, count, r8_ram });
                if d.count == count {
                    d.r8_ram &= r8_ram;
                    let l = d.label;
                    self.branch_on(cc, l);
                    self.count = count;
                    return;
                }
            }
            let taken = self.a.new_dynamic_label();
            self.branch_on(cc, taken);
            let epoch = self.epoch;
            let r8_ram = self.r8_ram;
            self.side_exits.push(SideExit { label: taken, count, flags, target, join, epoch, r8_ram });
            self.count = count;
            return;
        }
        let taken = self.a.new_dynamic_label();
        self.branch_on(cc, taken);
        let back = self.loop_back(target, count);
        self.count = count;
        self.sync();
        self.exit_or_loop(next);
        dynasm!(self.a ; .arch x64 ; =>taken);
        if let Some(Join::Back(join, delta, need)) = back {
            self.back_join(join, delta, need);
        }
        self.pending = flags;
        self.count = count;
        self.sync();
        self.exit_or_loop(target);
    }

    /// The end of a stretch a conditional branch to `target` skips, when the stretch can be
    /// predicated instead: run whatever the condition, each instruction taking effect only
    /// when the branch is not taken, with no host branch on the guest's condition. A branch
    /// that depends on data (a sort's compare) then costs no misprediction.
    ///
    /// The stretch is short, plain and only entered at its start: the branch goes forward in
    /// the block to an instruction where no flag is live (see [`Emitter::internal_target`]);
    /// no other branch goes into it; its instructions read no flag, leave none anyone reads,
    /// and are 32-bit moves, ADD/SUB/AND/OR/XOR, INC/DEC and LEA between registers and
    /// immediates, or — with paging off, flat segments and RAM reached directly — moves
    /// to and from memory. Those touch memory whatever the condition, so that nothing a
    /// skipped access could do is left to chance: its checks run (RAM's end, the
    /// direct-write map), a failed one leaves the stretch as skipped when the condition says
    /// so and takes the instruction's slow path otherwise, and a skipped store writes back
    /// the value it has just read (a page the map lets through has no watcher).
    fn hammock(&self, target: u32) -> Option<usize> {
        let p = self.cur;
        let end = self.internal_target(p, target)?;
        let insns = &self.b.insns;
        let stretch = &insns[p + 1..end];
        if stretch.is_empty() || stretch.len() > MAX_HAMMOCK {
            return None;
        }
        let entered = insns.iter().any(|x| match x.op {
            Op::Jcc { target, .. } | Op::Jmp { target } => stretch.iter().any(|y| y.eip == target),
            _ => false,
        });
        let memory = ram_direct(self.b, self.env) && self.env.ram_write_map.is_some();
        let flat = |a: &Addr| !a.addr16 && self.b.key.seg_class(a.seg) == SegClass::Flat;
        let plain = |x: &crate::ir::Insn| {
            let quiet = x.reads == 0 && (x.writes == 0 || x.live_out == 0);
            let d = |o: &Operand| matches!(o, Operand::Reg(g) if g.size == Size::D);
            let value = |o: &Operand| d(o) || matches!(o, Operand::Imm(_));
            quiet
                && match x.op {
                    Op::Mov { size: Size::D, dst, src } => match (dst, src) {
                        (Operand::Reg(_), Operand::Mem(a)) => memory && flat(&a),
                        (Operand::Mem(a), s) => memory && flat(&a) && value(&s),
                        (dst, src) => d(&dst) && value(&src),
                    },
                    Op::Alu { op, size: Size::D, dst, src } => {
                        matches!(op, AluOp::Add | AluOp::Sub | AluOp::And | AluOp::Or | AluOp::Xor)
                            && d(&dst)
                            && value(&src)
                    }
                    Op::IncDec { size: Size::D, dst, .. } => d(&dst),
                    Op::Lea { dst, addr } => dst.size == Size::D && !addr.addr16,
                    _ => false,
                }
        };
        (!entered && stretch.iter().all(plain)).then_some(end)
    }

    /// Starts the predicated stretch up to instruction `end` (see [`Emitter::hammock`]): the
    /// condition under which it takes effect (the branch not taken) to the frame.
    fn begin_pred(&mut self, cc: Cond, end: usize) {
        self.set_frame(Cond(cc.0 ^ 1), F_PRED);
        self.count += 1;
        let skip = self.a.new_dynamic_label();
        self.pred = Some(Pred { end, skip, len: (end - self.cur - 1) as i32 });
    }

    /// Ends the predicated stretch: its instructions count as retired (the fall-through
    /// path's count) unless it did not take effect. No flag is live here, and what its checks
    /// established may not hold on the way from a skipped one.
    fn end_pred(&mut self) {
        let Some(p) = self.pred.take() else { return };
        let (len, done) = (p.len, self.a.new_dynamic_label());
        let tested = self.pred_tested == Some(self.a.offset().0);
        dynasm!(self.a ; .arch x64 ; lea r9, [r11 - len]);
        if !tested {
            self.test_pred();
        }
        dynasm!(self.a
            ; .arch x64
            ; cmovz r11, r9
            ; =>done
        );
        self.skips.push(Skip { label: p.skip, len, load_r8: self.r8_ram, done });
        self.pending = None;
        self.host_flags = 0;
        self.in_ram = [0; 8];
    }

    /// `test [pred] ; cmovnz g, t`: guest register `g` (32 bits) gets host register `t` if the
    /// stretch takes effect.
    fn pred_write(&mut self, g: Gpr, t: u8) {
        let h = GUEST[g.num as usize];
        self.test_pred();
        dynasm!(self.a ; .arch x64 ; cmovnz Rd(h), Rd(t));
        self.pred_tested = Some(self.a.offset().0);
    }

    /// The predicate to the host's ZF (clear: the stretch takes effect), unless nothing has
    /// been emitted since the last test.
    fn test_pred(&mut self) {
        if self.pred_tested != Some(self.a.offset().0) {
            dynasm!(self.a ; .arch x64 ; test BYTE [rsp + F_PRED], 1);
        }
        self.host_flags = 0;
    }

    /// One instruction of a predicated stretch (the forms [`Emitter::hammock`] allows).
    fn pred_insn(&mut self, op: Op) {
        match op {
            Op::Mov { dst: Operand::Reg(d), src: Operand::Reg(s), .. } => {
                self.pred_write(d, GUEST[s.num as usize])
            }
            Op::Mov { dst: Operand::Reg(d), src: Operand::Imm(v), .. } => {
                dynasm!(self.a ; .arch x64 ; mov Rd(TA), v as i32);
                self.pred_write(d, TA);
            }
            Op::Mov { dst: Operand::Reg(d), src: Operand::Mem(addr), .. } => {
                let ea = self.ea_reg(&addr);
                let m = self.probe(addr.seg, Size::D, false, ea);
                self.load(TA, Size::D, m);
                self.pred_write(d, TA);
            }
            Op::Mov { dst: Operand::Mem(addr), src, .. } => {
                let v = match src {
                    Operand::Reg(s) => GUEST[s.num as usize],
                    Operand::Imm(v) => {
                        dynasm!(self.a ; .arch x64 ; mov Rd(TB), v as i32);
                        TB
                    }
                    Operand::Mem(_) => unreachable!("no memory-to-memory MOV"),
                };
                let ea = self.ea_reg(&addr);
                let m = self.probe(addr.seg, Size::D, true, ea);
                // The value there now, replaced only if the stretch takes effect.
                self.load(TA, Size::D, m);
                self.test_pred();
                dynasm!(self.a ; .arch x64 ; cmovnz Rd(TA), Rd(v));
                self.store(Val::Temp(TA), Size::D, m);
            }
            Op::Alu { op, dst: Operand::Reg(d), src, .. } => {
                // Its flags are dead (see `hammock`), and so is any record before it.
                self.pending = None;
                let b = match src {
                    Operand::Reg(s) => Val::Host(GUEST[s.num as usize]),
                    Operand::Imm(v) => Val::Imm(v),
                    Operand::Mem(_) => unreachable!("not predicated"),
                };
                let h = GUEST[d.num as usize];
                dynasm!(self.a ; .arch x64 ; mov Rd(TA), Rd(h));
                self.host_alu(op, Size::D, TA, b);
                self.pred_write(d, TA);
            }
            Op::IncDec { dec, dst: Operand::Reg(d), .. } => {
                self.pending = None;
                let h = GUEST[d.num as usize];
                let k = if dec { -1 } else { 1 };
                dynasm!(self.a ; .arch x64 ; lea Rd(TA), [Rq(h) + k]);
                self.pred_write(d, TA);
            }
            Op::Lea { dst, addr } => {
                self.ea(&addr, TA);
                self.pred_write(dst, TA);
            }
            _ => unreachable!("not predicated: {op:?}"),
        }
    }

    /// `jcc` to `label`.
    fn branch_on(&mut self, cc: Cond, label: DynamicLabel) {
        cc_arms!(cc,
            0 => dynasm!(self.a ; .arch x64 ; jo =>label),
            1 => dynasm!(self.a ; .arch x64 ; jno =>label),
            2 => dynasm!(self.a ; .arch x64 ; jb =>label),
            3 => dynasm!(self.a ; .arch x64 ; jae =>label),
            4 => dynasm!(self.a ; .arch x64 ; je =>label),
            5 => dynasm!(self.a ; .arch x64 ; jne =>label),
            6 => dynasm!(self.a ; .arch x64 ; jbe =>label),
            7 => dynasm!(self.a ; .arch x64 ; ja =>label),
            8 => dynasm!(self.a ; .arch x64 ; js =>label),
            9 => dynasm!(self.a ; .arch x64 ; jns =>label),
            10 => dynasm!(self.a ; .arch x64 ; jp =>label),
            11 => dynasm!(self.a ; .arch x64 ; jnp =>label),
            12 => dynasm!(self.a ; .arch x64 ; jl =>label),
            13 => dynasm!(self.a ; .arch x64 ; jge =>label),
            14 => dynasm!(self.a ; .arch x64 ; jle =>label),
            15 => dynasm!(self.a ; .arch x64 ; jg =>label),
        );
    }

    /// The entry of loop copy `k` for back edges with `count` instructions pending: an `add`
    /// of them to r11 with the copy's budget check (and the RAM base to r8 when the copy
    /// expects it and this edge does not have it), placed right before the copy's body for the
    /// first such entry (emitted later, out of line, for others).
    fn loop_entry(&mut self, k: usize, count: u32) -> DynamicLabel {
        let load_r8 = self.copy_r8 && !self.r8_ram;
        let entries = &mut self.copies[k].entries;
        if let Some(e) = entries.iter().find(|e| e.count == count && e.load_r8 == load_r8) {
            return e.label;
        }
        let label = self.a.new_dynamic_label();
        self.copies[k].entries.push(LoopEntry { count, load_r8, label, emitted: false });
        label
    }

    /// The loop copy (see [`Emitter::block`]) a branch to `target` can go to from here, with
    /// the record now pending: `target` is an instruction of the block no further on, and its
    /// copy starts with that record, or there is none yet and one more may be asked for.
    /// `count`: the instructions the branch has pending, itself included.
    fn copy_for(&mut self, target: u32, count: u32) -> Option<usize> {
        if !self.env.chaining {
            return None;
        }
        let head = (0..=self.cur).find(|&j| self.b.insns[j].eip == target)?;
        if let Some(k) = self.copies.iter().position(|c| c.head == head) {
            return (self.copies[k].flags == self.pending).then_some(k);
        }
        if self.copies_sealed || self.copies.len() >= MAX_COPIES {
            return None;
        }
        let (body, out) = (self.a.new_dynamic_label(), self.a.new_dynamic_label());
        // The copy repeats this body's instructions from `head` on: with no sync in between,
        // its own back edge from here will carry the count of those alone; with one, the count
        // from the same sync as here.
        let hot = match self.starts[head] {
            Some((at, epoch)) if epoch == self.epoch => count - at,
            _ => count,
        };
        self.copies.push(LoopCopy { head, flags: self.pending, body, out, entries: Vec::new(), hot });
        Some(self.copies.len() - 1)
    }

    /// The index of the instruction at `target` when a conditional branch there can stay in the
    /// block: it is further on, no callout lies between (the count of retired instructions is
    /// then one the taken path can adjust by a constant), and no flag is live where it starts
    /// (so neither path has a record to hand over: the join starts with none).
    fn internal_target(&self, from: usize, target: u32) -> Option<usize> {
        if !self.env.chaining {
            return None;
        }
        let insns = &self.b.insns;
        let j = (from + 1..insns.len()).find(|&j| insns[j].eip == target)?;
        let plain = insns[from + 1..j].iter().all(|x| x.op != Op::Callout);
        (live_in(&insns[j]) == 0 && plain).then_some(j)
    }

    /// The join of a branch back to an instruction of this block (a loop head, see
    /// [`loop_heads`]) taken with `count` instructions pending.
    fn loop_back(&self, target: u32, count: u32) -> Option<Join> {
        let insns = &self.b.insns;
        let j = (1..=self.cur).find(|&j| insns[j].eip == target && self.loop_heads[j])?;
        let (label, at, epoch) = self.joins[j]?;
        if epoch != self.epoch {
            return None;
        }
        let rest = (insns.len() - j) as i32;
        Some(Join::Back(label, count as i32 - at as i32, count as i32 + rest))
    }

    /// The taken path of a branch back to a loop head: on to it when the budget still covers
    /// the rest of the block from there, else on to the side exit that follows.
    fn back_join(&mut self, join: DynamicLabel, delta: i32, need: i32) {
        let out = self.a.new_dynamic_label();
        self.cmp_r11(SLACK - need);
        dynasm!(self.a ; .arch x64 ; jg =>out);
        self.lea_r11(delta);
        dynasm!(self.a ; .arch x64 ; jmp =>join ; =>out);
    }

    /// Binds the join point of branches to instruction `i` (see [`Join`]), if any.
    fn join(&mut self, i: usize) {
        let epoch = self.epoch;
        let wanted = |x: &SideExit| matches!(x.join, Some(Join::Wanted(j)) if j == i) && x.epoch == epoch;
        let wanted_here = self.side_exits.iter().any(wanted);
        let direct = self.direct_joins[i];
        if !wanted_here && !self.loop_heads[i] && direct.is_none() {
            return;
        }
        // The flags are dead here (see `internal_target`); r8 holds the RAM base if it does on
        // every way in (a loop head's ways in are not all known yet); nothing else is assumed.
        self.pending = None;
        self.host_flags = 0;
        self.zero = 0;
        self.in_ram = [0; 8];
        self.r8_ram = self.r8_ram
            && !self.loop_heads[i]
            && direct.is_none_or(|d| d.r8_ram)
            && self.side_exits.iter().filter(|x| wanted(x)).all(|x| x.r8_ram);
        let l = match direct {
            Some(DirectJoin { label: l, count: at, .. }) => {
                // The branch jumps here with its own count; the fall-through path takes on the
                // same one by adding the difference to r11 (what has retired is r11 + count on
                // every path, so this holds whatever was synced in between).
                let delta = self.count as i32 - at as i32;
                if delta != 0 {
                    self.lea_r11(delta);
                }
                self.count = at;
                l
            }
            None => self.a.new_dynamic_label(),
        };
        dynasm!(self.a ; .arch x64 ; =>l);
        self.joins[i] = Some((l, self.count, epoch));
        let count = self.count as i32;
        for x in &mut self.side_exits {
            if matches!(x.join, Some(Join::Wanted(j)) if j == i) && x.epoch == epoch {
                x.join = Some(Join::Bound(l, x.count as i32 - count));
            }
        }
    }

    /// A terminal exit to `target`: into a loop copy when `target` is an instruction of the
    /// block no further on and the copy can take the record pending here (see
    /// [`Emitter::copy_for`]); otherwise out. The instructions pending are counted either way.
    fn exit_or_loop(&mut self, target: u32) {
        if let Some(k) = self.copy_for(target, self.count) {
            self.jump_to_copy(k);
            return;
        }
        self.sync();
        self.direct_exit(target);
    }

    fn push_val(&mut self, size: Size, v: Val) {
        let n = size.bytes() as i32;
        self.stack_ea(-n);
        let m = self.probe(SegReg::Ss, size, true, RSI);
        self.store(v, size, m);
        if self.b.key.stack32() {
            dynasm!(self.a ; .arch x64 ; mov r12d, esi);
        } else {
            dynasm!(self.a ; .arch x64 ; mov r12w, si);
        }
    }

    fn push(&mut self, size: Size, src: Operand) {
        let v = self.src_val(&src, size, TA);
        self.push_val(size, v);
    }

    fn pop(&mut self, size: Size, dst: Gpr) {
        self.stack_ea(0);
        let m = self.probe(SegReg::Ss, size, false, RSI);
        self.load(TA, size, m);
        self.commit_sp(size.bytes() as i32);
        self.write_gpr(dst, TA);
    }
}

/// Host code as text (Intel syntax, one instruction per line with its offset), for dumps and
/// golden tests.
/// The flags live where instruction `i` starts.
/// Accesses of block `b` reach guest RAM at the RAM base plus the address: paging is off (and
/// A20 on), and the RAM is there to reach.
fn ram_direct(b: &Block, env: &CodeEnv) -> bool {
    b.key.identity() && env.ram_direct >= 4096
}

/// `v` (an operand of `size`) as the sign-extended 8-bit immediate that stands for it, if one
/// does: the shorter encoding of the same instruction.
fn imm8(size: Size, v: u32) -> Option<i8> {
    let v = match size {
        Size::W => i32::from(v as u16 as i16),
        _ => v as i32,
    };
    i8::try_from(v).ok()
}

fn live_in(i: &crate::ir::Insn) -> u8 {
    if i.may_exit {
        flag::ALL
    } else {
        (i.live_out & !i.writes) | i.reads
    }
}

/// A frame window: accesses `[EBP + disp]` (or `[ESP + disp]`) of a stretch of a block (no
/// callout, no write to that register, no branch target inside) share one TLB probe, made
/// before the first of them for the bytes all of them touch; the others reuse its host addend
/// (`F_WIN`, `F_WIN_SP`). Paging on, flat segments only. The translation it caches can only go stale the way a TLB entry can: with
/// a page-table write and no TLB flush, which takes a callout (INVLPG, MOV CR3), which ends
/// the stretch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Window {
    /// The base register (guest number: 5 for EBP, 4 for ESP).
    base: u8,
    /// This access sets the window up.
    first: bool,
    /// The lowest displacement from EBP.
    min: i32,
    /// Bytes from there to the end of the highest access.
    span: u32,
    /// Some access writes.
    write: bool,
}

impl Window {
    /// The frame slot of its host addend.
    fn slot(&self) -> i32 {
        if self.base == 5 {
            F_WIN
        } else {
            F_WIN_SP
        }
    }
}

/// The EBP- or ESP-relative memory access of an inline operation: base, displacement, size,
/// write.
fn frame_access(op: &Op, b: &Block) -> Option<(u8, i32, u32, bool)> {
    let (a, size, write) = match *op {
        Op::Mov { size, dst: Operand::Mem(a), .. } => (a, size, true),
        Op::Mov { size, src: Operand::Mem(a), .. } => (a, size, false),
        Op::Alu { op, size, dst: Operand::Mem(a), .. } => (a, size, op.writes()),
        Op::Alu { size, src: Operand::Mem(a), .. } => (a, size, false),
        Op::IncDec { size, dst: Operand::Mem(a), .. }
        | Op::Neg { size, dst: Operand::Mem(a) }
        | Op::Not { size, dst: Operand::Mem(a) }
        | Op::Shift { size, dst: Operand::Mem(a), .. }
        | Op::ShiftCl { size, dst: Operand::Mem(a), .. } => (a, size, true),
        Op::Setcc { dst: Operand::Mem(a), .. } => (a, Size::B, true),
        Op::Movx { src: Operand::Mem(a), src_size, .. } => (a, src_size, false),
        Op::Cmov { size, src: Operand::Mem(a), .. }
        | Op::Imul { size, src: Operand::Mem(a), .. }
        | Op::MulDiv { size, src: Operand::Mem(a), .. } => (a, size, false),
        _ => return None,
    };
    let base = a.base.filter(|&r| r == 4 || r == 5)?;
    let frame = a.index.is_none() && !a.addr16;
    (frame && b.key.seg_class(a.seg) == SegClass::Flat).then_some((
        base,
        a.disp as i32,
        size.bytes() as u32,
        write,
    ))
}

/// The frame windows of block `b`, instruction by instruction (see [`Window`]): stretches
/// with at least two EBP-relative (or ESP-relative) accesses within a page's span.
fn frame_windows(b: &Block) -> Vec<Option<Window>> {
    let mut out = vec![None; b.insns.len()];
    if !b.key.paging() {
        return out;
    }
    let targets: Vec<u32> = b
        .insns
        .iter()
        .filter_map(|i| match i.op {
            Op::Jcc { target, .. } | Op::Jmp { target } => Some(target),
            _ => None,
        })
        .collect();
    // One stretch per base register: (instruction, displacement, size, write).
    type Group = Vec<(usize, i32, u32, bool)>;
    let mut groups: [Group; 2] = [Vec::new(), Vec::new()];
    let close = |base: u8, group: &mut Group, out: &mut Vec<Option<Window>>| {
        if group.len() >= 2 {
            let min = group.iter().map(|g| g.1).min().unwrap_or(0);
            let end = group.iter().map(|g| i64::from(g.1) + i64::from(g.2)).max().unwrap_or(0);
            let span = end - i64::from(min);
            if span <= 4096 {
                let write = group.iter().any(|g| g.3);
                for (k, g) in group.iter().enumerate() {
                    out[g.0] = Some(Window { base, first: k == 0, min, span: span as u32, write });
                }
            }
        }
        group.clear();
    };
    let bases = [4u8, 5];
    for (i, insn) in b.insns.iter().enumerate() {
        if targets.contains(&insn.eip) || insn.op == Op::Callout {
            for (g, &base) in groups.iter_mut().zip(&bases) {
                close(base, g, &mut out);
            }
        }
        if let Some((base, disp, size, write)) = frame_access(&insn.op, b) {
            groups[usize::from(base == 5)].push((i, disp, size, write));
        }
        let written = writes_regs(&insn.op);
        for (g, &base) in groups.iter_mut().zip(&bases) {
            if written & (1 << GUEST[base as usize]) != 0 {
                close(base, g, &mut out);
            }
        }
    }
    for (g, &base) in groups.iter_mut().zip(&bases) {
        close(base, g, &mut out);
    }
    out
}

/// Instructions of `b` (not the first: that is the loop copy's business) that a conditional
/// branch further on jumps back to, with no callout in between (the branch can then adjust
/// the count of retired instructions by a constant) and no flag live at the head (neither
/// path has a record to hand over).
fn loop_heads(b: &Block, env: &CodeEnv) -> Vec<bool> {
    let mut heads = vec![false; b.insns.len()];
    if !env.chaining {
        return heads;
    }
    for (k, i) in b.insns.iter().enumerate() {
        let Op::Jcc { target, .. } = i.op else { continue };
        let Some(j) = (1..=k).find(|&j| b.insns[j].eip == target) else { continue };
        if live_in(&b.insns[j]) == 0 && b.insns[j..k].iter().all(|x| x.op != Op::Callout) {
            heads[j] = true;
        }
    }
    heads
}

pub fn disassemble(code: &[u8], base: usize) -> String {
    use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};
    let mut d = Decoder::with_ip(64, code, base as u64, DecoderOptions::NONE);
    let mut f = IntelFormatter::new();
    f.options_mut().set_hex_prefix("");
    f.options_mut().set_hex_suffix("h");
    f.options_mut().set_space_after_operand_separator(true);
    let mut out = String::new();
    let mut text = String::new();
    for i in &mut d {
        text.clear();
        f.format(&i, &mut text);
        out.push_str(&format!("  {:04x}  {text}\n", i.ip() as usize - base));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stubs_assemble() {
        let s = X64.stubs(0x1000_0000, 0x2000_0000).unwrap();
        assert!(s.entry < s.exit && s.exit < s.exit_nostore && s.exit_nostore < s.code.len());
    }

    #[test]
    fn chain_bytes_are_relative_to_the_end_of_the_field() {
        assert_eq!(X64.chain_bytes(0x1000, Some(0x1010)), 12i32.to_le_bytes());
        assert_eq!(X64.chain_bytes(0x1000, None), [0; 4]);
    }
}
