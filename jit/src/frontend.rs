//! The frontend: guest bytes of one basic block → IR ([`crate::ir::Block`]).
//!
//! Decoding is iced-x86's (Intel SDM Vol. 2 §2, instruction formats); what each instruction is
//! allowed to become is decided by emu-core's one instruction table ([`emu_core::isa::lookup`]):
//! only innocuous instructions (Popek–Goldberg class) without the MODE or IO properties may be
//! translated inline, and of those only the common integer subset is (MOV, ALU operations,
//! INC/DEC/NEG/NOT, LEA, MOVZX/MOVSX, PUSH/POP, shifts by an immediate, SETcc/CMOVcc, near
//! JMP/Jcc/CALL/RET). Everything else is a callout to the very handler the interpreter runs.
//!
//! A block ends (SDM Vol. 3A §6.8.3, §6.9 for why interrupt-related instructions end one):
//! - after an inline branch — except a conditional one, past which the block goes on with its
//!   fall-through (an extended basic block; the taken path is a side exit), up to
//!   [`MAX_SIDE_EXITS`] of them;
//! - after a callout of an instruction that is not innocuous, or that branches, does I/O or may
//!   change the mode (segment loads, far transfers, INT/IRET, POPF, STI/CLI, MOV SS, HLT, CR
//!   and MSR writes …): the dispatcher looks at interrupts and the mode key before going on;
//! - before a port-I/O instruction, which always starts a block of its own (the machine must
//!   bring time up to date for exactly that instruction);
//! - before an instruction that does not decode, that emu-core does not implement (#UD), or
//!   that crosses the end of the page or of the CS limit (the interpreter raises its fault);
//! - at the end of the page, or after [`MAX_BLOCK_INSNS`] instructions.
//!
//! Dead-flag elimination: a backward pass over the block computes, for every instruction, the
//! arithmetic flags still needed after it. A flag is needed if a later instruction reads it
//! before one writes it, or if control may leave the block before it is written again (at a
//! memory access, whose slow path runs emu-core's handler; at a callout; at the block's end).
//! A producer none of whose flags are needed stores nothing.

use emu_core::flags::Size;
use emu_core::isa::{self, PgClass, Props};
use emu_core::memory::PAGE_SIZE;
use emu_core::state::SegReg;
use iced_x86::{Code, Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};

use crate::ir::{flag, Addr, AluOp, Block, Cond, End, Gpr, Insn, Op, Operand, ShiftOp};
use crate::mode::ModeKey;

/// Most instructions in one block.
pub const MAX_BLOCK_INSNS: usize = 64;

/// Most conditional branches a block continues past (each one's taken path is a side exit).
pub const MAX_SIDE_EXITS: usize = 8;

/// Sensitive instructions that only read machine state (the TSC, descriptor tables, MSW,
/// flags, CPUID) and change nothing but their destination: as callouts they need not end the
/// block, since nothing the block was translated for (its mode key, the interrupt flag, the
/// code) can have changed. If one faults, the callout ends the block anyway. RDTSC is the one
/// that matters: Linux's delay loops run it millions of times.
fn only_reads_state(i: &Instruction) -> bool {
    matches!(
        i.mnemonic(),
        Mnemonic::Rdtsc
            | Mnemonic::Cpuid
            | Mnemonic::Pushf
            | Mnemonic::Pushfd
            | Mnemonic::Sgdt
            | Mnemonic::Sidt
            | Mnemonic::Smsw
            | Mnemonic::Sldt
            | Mnemonic::Str
            | Mnemonic::Lar
            | Mnemonic::Lsl
            | Mnemonic::Verr
            | Mnemonic::Verw
    )
}

/// IN reads a port: the platform needs the time (the callout gives it) but has nothing to act
/// on, and a read never raises an interrupt the block would have to stop for (the callout
/// checks), so it may sit inside a block. Every other port access starts a block of its own.
fn port_read(i: &Instruction) -> bool {
    i.mnemonic() == Mnemonic::In
}

/// Whether the block ends after instruction `i` as a callout: it is sensitive or privileged
/// and changes state, branches, changes the mode key, or does port I/O other than IN.
fn ends_block(i: &Instruction, info: &isa::InsnInfo) -> bool {
    (info.class != PgClass::Innocuous && !only_reads_state(i) && !port_read(i))
        || info.props.intersects(Props::BRANCH | Props::MODE)
        || (info.props.contains(Props::IO) && !port_read(i))
}

/// The instruction at `eip` that starts with `head` (the rest of the page) and goes on into
/// `tail` (the next page's first bytes, as last seen), as a refetching callout; `None` when the
/// bytes do not make one that crosses, or it is port I/O (left to the interpreter).
fn straddler(head: &[u8], tail: &[u8], eip: u32, key: &ModeKey) -> Option<Insn> {
    let bitness = if key.code32() { 32 } else { 16 };
    let mut bytes = head.to_vec();
    bytes.extend_from_slice(&tail[..tail.len().min(15)]);
    let mut decoder = Decoder::with_ip(bitness, &bytes, u64::from(eip), DecoderOptions::NONE);
    let insn = decoder.decode();
    if insn.is_invalid() || insn.len() <= head.len() {
        return None;
    }
    let info = isa::lookup(insn.code())?;
    if info.props.contains(Props::IO) {
        return None;
    }
    let next = insn.next_ip() as u32;
    let stop = ends_block(&insn, info);
    Some(Insn {
        eip,
        next_eip: if key.code32() { next } else { next & 0xFFFF },
        op: Op::Callout,
        insn,
        reads: flag::ALL,
        writes: flag::ALL,
        live_out: 0,
        may_exit: true,
        stop,
        straddles: true,
    })
}

/// Builds the block at `eip` (guest-physical `phys`) for mode `key`, decoding from `code`:
/// the guest bytes from `phys` to the end of its page or of the CS limit, whichever is nearer.
/// An empty block means the first instruction must be interpreted.
pub fn build_block(code: &[u8], eip: u32, phys: u32, key: &ModeKey) -> Block {
    build_block_with_tail(code, &[], eip, phys, key)
}

/// [`build_block`], with `tail` the bytes that follow `code` on the next page (as last seen):
/// an instruction that straddles the page end then ends the block as a callout that fetches
/// it afresh (see [`Insn::straddles`]) instead of leaving it to the interpreter.
pub fn build_block_with_tail(code: &[u8], tail: &[u8], eip: u32, phys: u32, key: &ModeKey) -> Block {
    let bitness = if key.code32() { 32 } else { 16 };
    let mut decoder = Decoder::with_ip(bitness, code, u64::from(eip), DecoderOptions::NONE);
    let mut insns: Vec<Insn> = Vec::new();
    let mut end = End::Next(eip);
    let mut io = false;
    let mut len = 0u32;
    let mut insn = Instruction::default();
    let mut side_exits = 0;
    // Still open at the end of `code`: no branch, stop or cap ended the block first.
    let mut open = true;
    while decoder.can_decode() {
        decoder.decode_out(&mut insn);
        if insn.is_invalid() {
            open = decoder.last_error() == iced_x86::DecoderError::NoMoreBytes;
            break;
        }
        let this_eip = insn.ip() as u32;
        let next = insn.next_ip() as u32;
        let next_eip = if key.code32() { next } else { next & 0xFFFF };
        let Some(info) = isa::lookup(insn.code()) else {
            open = false;
            break;
        };
        let is_io = info.props.contains(Props::IO) && !port_read(&insn);
        if is_io && !insns.is_empty() {
            open = false;
            break;
        }
        let op = lower(&insn, key).unwrap_or(Op::Callout);
        let callout = op == Op::Callout;
        let stop = callout && ends_block(&insn, info);
        let (reads, writes) = if callout {
            (flag::ALL, flag::ALL)
        } else if matches!(op, Op::MulDiv { div: true, .. }) {
            // emu-core's DIV keeps every flag: for liveness it neither reads nor writes one.
            (0, 0)
        } else {
            (flag::from_iced(insn.rflags_read()), flag::from_iced(insn.rflags_modified()))
        };
        let may_exit = callout || op.touches_memory() || op.is_branch();
        insns.push(Insn {
            eip: this_eip,
            next_eip,
            op,
            insn,
            reads,
            writes,
            live_out: 0,
            may_exit,
            stop,
            straddles: false,
        });
        len = next.wrapping_sub(eip);
        io = is_io;
        if op.is_branch() {
            // An extended basic block: past a conditional branch the block goes on with its
            // fall-through, the taken path leaving as a side exit.
            if matches!(op, Op::Jcc { .. }) && side_exits < MAX_SIDE_EXITS && insns.len() < MAX_BLOCK_INSNS {
                side_exits += 1;
                end = End::Next(next_eip);
                continue;
            }
            end = End::Branch;
            open = false;
            break;
        }
        if stop {
            end = End::Stop;
            open = false;
            break;
        }
        end = End::Next(next_eip);
        if insns.len() >= MAX_BLOCK_INSNS {
            open = false;
            break;
        }
    }
    let done = len as usize;
    if open && !io && !tail.is_empty() && done < code.len() {
        if let Some(i) = straddler(&code[done..], tail, eip.wrapping_add(len), key) {
            end = if i.stop { End::Stop } else { End::Next(i.next_eip) };
            insns.push(i);
            // Only this page's bytes are the block's (and watched).
            len = code.len() as u32;
        }
    }
    if matches!(insns.last(), Some(Insn { op: Op::Jcc { .. }, .. })) {
        // The block ends at a conditional branch after all: both of its ways are exits.
        end = End::Branch;
    }
    let flags_live_in = liveness(&mut insns);
    Block { eip, phys, key: *key, insns, len, end, io, flags_live_in }
}

/// How many bytes a block at `phys` and `eip` may be decoded from: up to the end of the page
/// and of the CS limit (0 when EIP is past the limit).
pub fn window(phys: u32, eip: u32, key: &ModeKey) -> usize {
    if eip > key.cs_limit {
        return 0;
    }
    let page_left = PAGE_SIZE - (phys as usize & (PAGE_SIZE - 1));
    let limit_left = (key.cs_limit - eip) as usize + 1;
    page_left.min(limit_left)
}

/// The backward pass of dead-flag elimination (see the module header); returns the flags live
/// at the block's entry.
fn liveness(insns: &mut [Insn]) -> u8 {
    let mut live = flag::ALL;
    for i in insns.iter_mut().rev() {
        i.live_out = live;
        live = if i.may_exit {
            flag::ALL
        } else if matches!(i.op, Op::ShiftCl { .. }) {
            // A count of 0 writes nothing: every flag live after it is live before it.
            live | i.reads
        } else {
            (live & !i.writes) | i.reads
        };
    }
    live
}

/// A general-purpose register of iced-x86 as an IR register.
fn gpr(r: Register) -> Option<Gpr> {
    if r.is_gpr8() {
        let n = r.number() as u8;
        return Some(if n < 4 {
            Gpr { num: n, size: Size::B, high: false }
        } else {
            Gpr { num: n - 4, size: Size::B, high: true }
        });
    }
    if r.is_gpr16() {
        return Some(Gpr { num: r.number() as u8, size: Size::W, high: false });
    }
    if r.is_gpr32() {
        return Some(Gpr { num: r.number() as u8, size: Size::D, high: false });
    }
    None
}

/// The memory operand of `i`.
fn addr(i: &Instruction) -> Option<Addr> {
    let reg = |r: Register| -> Option<Option<u8>> {
        if r == Register::None {
            Some(None)
        } else if r.is_gpr16() || r.is_gpr32() {
            Some(Some(r.number() as u8))
        } else {
            None
        }
    };
    let base = reg(i.memory_base())?;
    let index = reg(i.memory_index())?;
    let addr16 = emu_core::isa::operand::addr16(i);
    let seg = emu_core::isa::operand::sreg(i.memory_segment());
    Some(Addr {
        seg,
        base,
        index,
        scale: i.memory_index_scale().trailing_zeros() as u8,
        disp: i.memory_displacement32(),
        addr16,
    })
}

/// Operand `n` of `i` at operation size `size`.
fn operand(i: &Instruction, n: u32, size: Size) -> Option<Operand> {
    Some(match i.op_kind(n) {
        OpKind::Register => Operand::Reg(gpr(i.op_register(n))?),
        OpKind::Memory => Operand::Mem(addr(i)?),
        OpKind::Immediate8to16 => Operand::Imm(u32::from(i.immediate8to16() as u16)),
        OpKind::Immediate8 | OpKind::Immediate16 | OpKind::Immediate32 | OpKind::Immediate8to32 => {
            Operand::Imm(i.immediate(n) as u32 & size.mask())
        }
        _ => return None,
    })
}

/// Size of operand 0 as emu-core's handlers see it.
fn osize(i: &Instruction) -> Size {
    emu_core::isa::operand::osize(i)
}

/// The inline form of `i`, if it has one in mode `key`; `None` makes it a callout.
fn lower(i: &Instruction, key: &ModeKey) -> Option<Op> {
    let info = isa::lookup(i.code())?;
    if info.class != PgClass::Innocuous || info.props.intersects(Props::MODE | Props::IO | Props::STRING) {
        return None;
    }
    // A memory operand through a segment whose accesses are all slow: the callout is cheaper.
    if (0..i.op_count()).any(|n| i.op_kind(n) == OpKind::Memory)
        && i.mnemonic() != Mnemonic::Lea
        && key.seg_class(emu_core::isa::operand::mem_seg(i)) == crate::mode::SegClass::Slow
    {
        return None;
    }
    let size = osize(i);
    let in_limit = |t: u64| t <= u64::from(key.cs_limit);
    // Stack operations through a stack segment whose accesses are all slow: callouts.
    let stack_slow = key.seg_class(SegReg::Ss) == crate::mode::SegClass::Slow;
    if stack_slow && matches!(i.mnemonic(), Mnemonic::Push | Mnemonic::Pop | Mnemonic::Call | Mnemonic::Ret) {
        return None;
    }
    Some(match i.mnemonic() {
        Mnemonic::Mov => {
            if !matches!(i.op0_kind(), OpKind::Register | OpKind::Memory) {
                return None;
            }
            Op::Mov { size, dst: operand(i, 0, size)?, src: operand(i, 1, size)? }
        }
        m @ (Mnemonic::Add
        | Mnemonic::Or
        | Mnemonic::Adc
        | Mnemonic::Sbb
        | Mnemonic::And
        | Mnemonic::Sub
        | Mnemonic::Xor
        | Mnemonic::Cmp
        | Mnemonic::Test) => {
            let op = match m {
                Mnemonic::Add => AluOp::Add,
                Mnemonic::Or => AluOp::Or,
                Mnemonic::Adc => AluOp::Adc,
                Mnemonic::Sbb => AluOp::Sbb,
                Mnemonic::And => AluOp::And,
                Mnemonic::Sub => AluOp::Sub,
                Mnemonic::Xor => AluOp::Xor,
                Mnemonic::Cmp => AluOp::Cmp,
                _ => AluOp::Test,
            };
            Op::Alu { op, size, dst: operand(i, 0, size)?, src: operand(i, 1, size)? }
        }
        Mnemonic::Inc | Mnemonic::Dec => {
            Op::IncDec { dec: i.mnemonic() == Mnemonic::Dec, size, dst: operand(i, 0, size)? }
        }
        Mnemonic::Neg => Op::Neg { size, dst: operand(i, 0, size)? },
        Mnemonic::Not => Op::Not { size, dst: operand(i, 0, size)? },
        Mnemonic::Lea => {
            let dst = gpr(i.op0_register())?;
            Op::Lea { dst, addr: addr(i)? }
        }
        Mnemonic::Movzx | Mnemonic::Movsx => {
            let dst = gpr(i.op0_register())?;
            let src_size = emu_core::isa::operand::op_size(i, 1);
            Op::Movx { signed: i.mnemonic() == Mnemonic::Movsx, dst, src: operand(i, 1, src_size)?, src_size }
        }
        Mnemonic::Push => {
            let size = match i.code() {
                Code::Pushw_imm8 | Code::Push_imm16 => Size::W,
                Code::Pushd_imm8 | Code::Pushd_imm32 => Size::D,
                _ => size,
            };
            Op::Push { size, src: operand(i, 0, size)? }
        }
        Mnemonic::Pop => {
            if i.op0_kind() != OpKind::Register {
                return None;
            }
            Op::Pop { size, dst: gpr(i.op0_register())? }
        }
        m @ (Mnemonic::Shl
        | Mnemonic::Sal
        | Mnemonic::Shr
        | Mnemonic::Sar
        | Mnemonic::Rol
        | Mnemonic::Ror) => {
            let op = match m {
                Mnemonic::Shr => ShiftOp::Shr,
                Mnemonic::Sar => ShiftOp::Sar,
                Mnemonic::Rol => ShiftOp::Rol,
                Mnemonic::Ror => ShiftOp::Ror,
                _ => ShiftOp::Shl,
            };
            let dst = operand(i, 0, size)?;
            let count = match i.op1_kind() {
                OpKind::Immediate8 => i.immediate8() & 0x1F,
                OpKind::Register if i.op1_register() == Register::CL => {
                    return Some(Op::ShiftCl { op, size, dst })
                }
                _ => return None,
            };
            // A rotate by a multiple of the width still sets CF and OF: left to emu-core.
            let count =
                if matches!(op, ShiftOp::Rol | ShiftOp::Ror) { count % size.bits() as u8 } else { count };
            if count == 0 || u32::from(count) >= size.bits() {
                return None;
            }
            Op::Shift { op, size, dst, count }
        }
        Mnemonic::Seto
        | Mnemonic::Setno
        | Mnemonic::Setb
        | Mnemonic::Setae
        | Mnemonic::Sete
        | Mnemonic::Setne
        | Mnemonic::Setbe
        | Mnemonic::Seta
        | Mnemonic::Sets
        | Mnemonic::Setns
        | Mnemonic::Setp
        | Mnemonic::Setnp
        | Mnemonic::Setl
        | Mnemonic::Setge
        | Mnemonic::Setle
        | Mnemonic::Setg => {
            Op::Setcc { cc: Cond::from_iced(i.condition_code())?, dst: operand(i, 0, Size::B)? }
        }
        Mnemonic::Cmovo
        | Mnemonic::Cmovno
        | Mnemonic::Cmovb
        | Mnemonic::Cmovae
        | Mnemonic::Cmove
        | Mnemonic::Cmovne
        | Mnemonic::Cmovbe
        | Mnemonic::Cmova
        | Mnemonic::Cmovs
        | Mnemonic::Cmovns
        | Mnemonic::Cmovp
        | Mnemonic::Cmovnp
        | Mnemonic::Cmovl
        | Mnemonic::Cmovge
        | Mnemonic::Cmovle
        | Mnemonic::Cmovg => Op::Cmov {
            cc: Cond::from_iced(i.condition_code())?,
            size,
            dst: gpr(i.op0_register())?,
            src: operand(i, 1, size)?,
        },
        Mnemonic::Imul if i.op_count() >= 2 => {
            let dst = gpr(i.op0_register())?;
            let imm = if i.op_count() == 3 { Some(i.immediate(2) as u32 & size.mask()) } else { None };
            Op::Imul { size, dst, src: operand(i, 1, size)?, imm }
        }
        Mnemonic::Mul | Mnemonic::Div if i.op_count() == 1 => {
            Op::MulDiv { div: i.mnemonic() == Mnemonic::Div, size, src: operand(i, 0, size)? }
        }
        Mnemonic::Leave => {
            if stack_slow {
                return None;
            }
            Op::Leave { size: if i.code() == Code::Leaved { Size::D } else { Size::W } }
        }
        Mnemonic::Nop | Mnemonic::Pause => Op::Nop,
        Mnemonic::Jmp => match i.op0_kind() {
            OpKind::NearBranch16 | OpKind::NearBranch32 if in_limit(i.near_branch_target()) => {
                Op::Jmp { target: i.near_branch_target() as u32 }
            }
            OpKind::Register | OpKind::Memory => Op::JmpInd { size, src: operand(i, 0, size)? },
            _ => return None,
        },
        Mnemonic::Call => match i.op0_kind() {
            OpKind::NearBranch16 if in_limit(i.near_branch_target()) => {
                Op::Call { size: Size::W, target: i.near_branch_target() as u32 }
            }
            OpKind::NearBranch32 if in_limit(i.near_branch_target()) => {
                Op::Call { size: Size::D, target: i.near_branch_target() as u32 }
            }
            OpKind::Register | OpKind::Memory => Op::CallInd { size, src: operand(i, 0, size)? },
            _ => return None,
        },
        Mnemonic::Ret => {
            let size = if matches!(i.code(), Code::Retnd | Code::Retnd_imm16) { Size::D } else { Size::W };
            let pop = if i.op_count() > 0 { i.immediate16() } else { 0 };
            Op::Ret { size, pop }
        }
        _ if i.is_jcc_short_or_near() => {
            if !in_limit(i.near_branch_target()) {
                return None;
            }
            Op::Jcc { cc: Cond::from_iced(i.condition_code())?, target: i.near_branch_target() as u32 }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use emu_core::state::CpuState;
    use iced_x86::code_asm::*;

    fn flat_key() -> ModeKey {
        let mut s = CpuState::reset();
        s.cr[0] |= emu_core::state::cr0::PE;
        let data = emu_core::Segment { selector: 0x10, attrs: 0xC093, base: 0, limit: u32::MAX };
        for seg in SegReg::ALL {
            *s.seg_mut(seg) = data;
        }
        *s.seg_mut(SegReg::Cs) = emu_core::Segment { selector: 8, attrs: 0xC09B, base: 0, limit: u32::MAX };
        ModeKey::of(&s)
    }

    fn block(build: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Block {
        let mut a = CodeAssembler::new(32).unwrap();
        build(&mut a).unwrap();
        let bytes = a.assemble(0x1000).unwrap();
        build_block(&bytes, 0x1000, 0x1000, &flat_key())
    }

    #[test]
    fn a_loop_body_is_inline_and_its_branch_is_a_side_exit() {
        let b = block(|a| {
            let mut top = a.create_label();
            a.set_label(&mut top)?;
            a.mov(byte_ptr(ebx + eax), 1)?;
            a.add(eax, ecx)?;
            a.cmp(eax, edx)?;
            a.jb(top)?;
            a.nop()
        });
        // An extended basic block: the taken JB leaves, the fall-through NOP is still inside.
        assert_eq!(b.insns.len(), 5);
        assert!(matches!(b.insns[3].op, Op::Jcc { .. }));
        assert_eq!(b.end, End::Next(b.insns[4].next_eip));
        assert!(b.insns.iter().all(|i| i.op != Op::Callout));
        // ADD's flags are overwritten by CMP before anything could see them.
        assert_eq!(b.insns[1].live_out, 0);
        assert_eq!(b.insns[2].live_out, flag::ALL);
        assert!(b.insns[0].may_exit && !b.insns[1].may_exit);
    }

    #[test]
    fn sensitive_instructions_are_callouts_that_end_the_block() {
        let b = block(|a| {
            a.mov(eax, 1)?;
            a.popfd()?;
            a.mov(eax, 2)
        });
        assert_eq!(b.insns.len(), 2);
        assert_eq!(b.insns[1].op, Op::Callout);
        assert!(b.insns[1].stop);
        assert_eq!(b.end, End::Stop);
    }

    #[test]
    fn io_starts_a_block_of_its_own() {
        let b = block(|a| {
            a.mov(al, 1)?;
            a.out(0xE9, al)?;
            a.nop()
        });
        assert_eq!(b.insns.len(), 1);
        assert_eq!(b.end, End::Next(0x1002));
        let mut asm = CodeAssembler::new(32).unwrap();
        asm.out(0xE9, al).unwrap();
        asm.nop().unwrap();
        let bytes = asm.assemble(0x1000).unwrap();
        let b = build_block(&bytes, 0x1000, 0x1000, &flat_key());
        assert_eq!(b.insns.len(), 1);
        assert!(b.io && b.insns[0].stop);
    }

    #[test]
    fn innocuous_callouts_keep_the_block_going() {
        let b = block(|a| {
            a.bswap(eax)?;
            a.add(eax, 1)?;
            a.ret()
        });
        assert_eq!(b.insns.len(), 3);
        assert_eq!(b.insns[0].op, Op::Callout);
        assert!(!b.insns[0].stop);
    }

    #[test]
    fn an_instruction_across_the_page_end_ends_the_block_as_a_refetching_callout() {
        // `mov eax, 0x11223344` (B8 44 33 22 11) with three bytes on the next page.
        let key = flat_key();
        let b = build_block_with_tail(&[0x90, 0xB8, 0x44], &[0x33, 0x22, 0x11, 0xC3], 0x1FFD, 0x1FFD, &key);
        assert_eq!(b.insns.len(), 2);
        let last = &b.insns[1];
        assert!(last.straddles && last.op == Op::Callout && !last.stop);
        assert_eq!((last.eip, last.next_eip), (0x1FFE, 0x2003));
        assert_eq!(b.end, End::Next(0x2003));
        assert_eq!(b.len, 3, "only this page's bytes belong to the block");
        // Without the next page's bytes it is left to the interpreter, as before.
        assert_eq!(build_block(&[0x90, 0xB8, 0x44], 0x1FFD, 0x1FFD, &key).insns.len(), 1);
    }

    #[test]
    fn truncated_and_undefined_instructions_end_the_block_before_them() {
        // The second instruction is cut by the end of the window.
        let key = flat_key();
        let b = build_block(&[0x90, 0xB8, 0x01], 0x1000, 0x1000, &key);
        assert_eq!(b.insns.len(), 1);
        assert_eq!(b.end, End::Next(0x1001));
        // An SSE instruction (not in emu-core's table) is left to the interpreter (#UD).
        let b = build_block(&[0x0F, 0x58, 0xC1], 0x1000, 0x1000, &key);
        assert!(b.insns.is_empty());
    }

    #[test]
    fn window_stops_at_page_end_and_limit() {
        let key = flat_key();
        assert_eq!(window(0x1FF0, 0x1FF0, &key), 16);
        let mut k = key;
        k.cs_limit = 0x1FF3;
        assert_eq!(window(0x1FF0, 0x1FF0, &k), 4);
        assert_eq!(window(0x1FF0, 0x2000, &k), 0);
    }
}
