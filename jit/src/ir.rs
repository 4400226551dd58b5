//! The translator's intermediate representation: one guest basic block as a list of
//! instructions, each either an inline operation or a callout into emu-core.
//!
//! The IR sits close to x86 (Intel SDM Vol. 2 instruction pages; flags per Vol. 1 Appendix A):
//! an operation keeps the guest's operand sizes and its operands are guest registers,
//! immediates and memory references still to be segmented and translated. What the frontend
//! adds is what a backend needs to decide, without knowing x86 decoding: which operation each
//! instruction is, where control may leave the block, and which arithmetic flags are still
//! needed after each instruction ([`Insn::live_out`], for dead-flag elimination).
//!
//! Every instruction keeps its decoded `iced_x86::Instruction`: a callout executes it through
//! emu-core's handler, and so does the slow path of an inline instruction whose memory access
//! misses the TLB fast path (or whose segment check fails), which is how translated code stays
//! precise without undoing anything.

use core::fmt;

use emu_core::flags::Size;
use emu_core::state::SegReg;
use iced_x86::Instruction;

use crate::mode::ModeKey;

/// The six arithmetic flags, as the translator's compact bit mask.
pub mod flag {
    /// Carry.
    pub const CF: u8 = 1 << 0;
    /// Parity.
    pub const PF: u8 = 1 << 1;
    /// Auxiliary carry.
    pub const AF: u8 = 1 << 2;
    /// Zero.
    pub const ZF: u8 = 1 << 3;
    /// Sign.
    pub const SF: u8 = 1 << 4;
    /// Overflow.
    pub const OF: u8 = 1 << 5;
    /// All six.
    pub const ALL: u8 = 0x3F;

    /// The compact mask of iced-x86's `RflagsBits`.
    pub fn from_iced(r: u32) -> u8 {
        use iced_x86::RflagsBits as R;
        let mut f = 0;
        for (bit, ours) in [(R::CF, CF), (R::PF, PF), (R::AF, AF), (R::ZF, ZF), (R::SF, SF), (R::OF, OF)] {
            if r & bit != 0 {
                f |= ours;
            }
        }
        f
    }

    /// Short text for a mask (`CPAZSO`, with `.` for absent flags).
    pub fn text(f: u8) -> String {
        "CPAZSO".chars().enumerate().map(|(i, c)| if f & (1 << i) != 0 { c } else { '.' }).collect()
    }
}

/// A guest general-purpose register as an operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gpr {
    /// Register number 0–7 (EAX ECX EDX EBX ESP EBP ESI EDI).
    pub num: u8,
    /// Operand size.
    pub size: Size,
    /// Bits 8–15 (AH CH DH BH): only with `size == Size::B`, `num` 0–3.
    pub high: bool,
}

/// A memory reference before segmentation: `seg:(base + index << scale + disp)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addr {
    /// Segment register (override or default).
    pub seg: SegReg,
    /// Base register number.
    pub base: Option<u8>,
    /// Index register number.
    pub index: Option<u8>,
    /// log2 of the index scale.
    pub scale: u8,
    /// Displacement (sign-extended to 32 bits).
    pub disp: u32,
    /// 16-bit addressing: the sum wraps at 64 KiB.
    pub addr16: bool,
}

/// An operand of an inline operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    /// A register.
    Reg(Gpr),
    /// An immediate, already sign- or zero-extended as the instruction defines, masked to the
    /// operation's size.
    Imm(u32),
    /// A memory reference.
    Mem(Addr),
}

/// Two-operand arithmetic and logic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AluOp {
    /// ADD.
    Add,
    /// OR.
    Or,
    /// ADC.
    Adc,
    /// SBB.
    Sbb,
    /// AND.
    And,
    /// SUB.
    Sub,
    /// XOR.
    Xor,
    /// CMP (SUB without the write).
    Cmp,
    /// TEST (AND without the write).
    Test,
}

impl AluOp {
    /// The operation writes its destination.
    pub fn writes(self) -> bool {
        !matches!(self, AluOp::Cmp | AluOp::Test)
    }
}

/// Shifts and rotates translated inline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShiftOp {
    /// SHL/SAL.
    Shl,
    /// SHR.
    Shr,
    /// SAR.
    Sar,
    /// ROL (changes only CF and OF).
    Rol,
    /// ROR (changes only CF and OF).
    Ror,
}

/// A condition code, numbered as the x86 `cc` field (SDM Vol. 1 Appendix B).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cond(pub u8);

impl Cond {
    /// The flags the condition reads.
    pub fn reads(self) -> u8 {
        match self.0 >> 1 {
            0 => flag::OF,
            1 => flag::CF,
            2 => flag::ZF,
            3 => flag::CF | flag::ZF,
            4 => flag::SF,
            5 => flag::PF,
            6 => flag::SF | flag::OF,
            _ => flag::ZF | flag::SF | flag::OF,
        }
    }

    /// From iced-x86's condition code.
    pub fn from_iced(cc: iced_x86::ConditionCode) -> Option<Cond> {
        use iced_x86::ConditionCode as C;
        let n = match cc {
            C::o => 0,
            C::no => 1,
            C::b => 2,
            C::ae => 3,
            C::e => 4,
            C::ne => 5,
            C::be => 6,
            C::a => 7,
            C::s => 8,
            C::ns => 9,
            C::p => 10,
            C::np => 11,
            C::l => 12,
            C::ge => 13,
            C::le => 14,
            C::g => 15,
            _ => return None,
        };
        Some(Cond(n))
    }
}

/// What one guest instruction becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// MOV.
    Mov {
        /// Size.
        size: Size,
        /// Destination (register or memory).
        dst: Operand,
        /// Source.
        src: Operand,
    },
    /// ADD OR ADC SBB AND SUB XOR CMP TEST.
    Alu {
        /// Which.
        op: AluOp,
        /// Size.
        size: Size,
        /// Destination (first operand).
        dst: Operand,
        /// Source.
        src: Operand,
    },
    /// INC or DEC.
    IncDec {
        /// DEC.
        dec: bool,
        /// Size.
        size: Size,
        /// Operand.
        dst: Operand,
    },
    /// NEG.
    Neg {
        /// Size.
        size: Size,
        /// Operand.
        dst: Operand,
    },
    /// NOT.
    Not {
        /// Size.
        size: Size,
        /// Operand.
        dst: Operand,
    },
    /// LEA: the effective address (no segment), truncated to the destination's size.
    Lea {
        /// Destination (16 or 32 bits).
        dst: Gpr,
        /// The address computed.
        addr: Addr,
    },
    /// MOVZX, MOVSX.
    Movx {
        /// MOVSX.
        signed: bool,
        /// Destination (16 or 32 bits).
        dst: Gpr,
        /// Source (register or memory).
        src: Operand,
        /// Source size (8 or 16 bits).
        src_size: Size,
    },
    /// PUSH of a register, immediate or memory operand.
    Push {
        /// Operand size (2 or 4 bytes).
        size: Size,
        /// What is pushed.
        src: Operand,
    },
    /// POP into a register.
    Pop {
        /// Operand size.
        size: Size,
        /// Destination.
        dst: Gpr,
    },
    /// SHL SHR SAR by an immediate count (1 ≤ count < operand width), or ROL ROR by one
    /// (1 ≤ count < operand width, after the count is reduced modulo the width).
    Shift {
        /// Which.
        op: ShiftOp,
        /// Size.
        size: Size,
        /// Operand.
        dst: Operand,
        /// Count.
        count: u8,
    },
    /// SHL SHR SAR ROL ROR by CL. The count may be 0, which leaves every flag alone, so for
    /// flag liveness it writes nothing.
    ShiftCl {
        /// Which.
        op: ShiftOp,
        /// Size.
        size: Size,
        /// Operand.
        dst: Operand,
    },
    /// SETcc.
    Setcc {
        /// Condition.
        cc: Cond,
        /// 8-bit destination.
        dst: Operand,
    },
    /// CMOVcc (the source is read whatever the condition, as on silicon).
    Cmov {
        /// Condition.
        cc: Cond,
        /// Size.
        size: Size,
        /// Destination register.
        dst: Gpr,
        /// Source.
        src: Operand,
    },
    /// IMUL r, r/m and IMUL r, r/m, imm (16 or 32 bits): the low half of the signed product.
    Imul {
        /// Size.
        size: Size,
        /// Destination (also the first factor without an immediate).
        dst: Gpr,
        /// The other factor (register or memory).
        src: Operand,
        /// The immediate of the three-operand form.
        imm: Option<u32>,
    },
    /// MUL r/m (unsigned, AX/DX:AX/EDX:EAX ← accumulator × source) or DIV r/m (unsigned, the
    /// quotient and remainder of the double-width accumulator; #DE through the slow path).
    /// DIV leaves every flag as it was (emu-core's choice for the undefined ones).
    MulDiv {
        /// DIV rather than MUL.
        div: bool,
        /// Size.
        size: Size,
        /// The source (register or memory).
        src: Operand,
    },
    /// LEAVE: ESP ← EBP, then POP EBP.
    Leave {
        /// Operand size of the pop.
        size: Size,
    },
    /// An instruction that does nothing architecturally visible besides EIP.
    Nop,
    /// Run the instruction through its emu-core handler (see [`Insn::stop`]).
    Callout,
    /// JMP rel.
    Jmp {
        /// Target EIP.
        target: u32,
    },
    /// Jcc rel: to `target` if the condition holds, else to the next instruction.
    Jcc {
        /// Condition.
        cc: Cond,
        /// Target EIP.
        target: u32,
    },
    /// CALL rel.
    Call {
        /// Size of the pushed return address.
        size: Size,
        /// Target EIP.
        target: u32,
    },
    /// CALL r/m (near).
    CallInd {
        /// Operand size (and size of the pushed return address).
        size: Size,
        /// The target.
        src: Operand,
    },
    /// JMP r/m (near).
    JmpInd {
        /// Operand size.
        size: Size,
        /// The target.
        src: Operand,
    },
    /// RET near, RET imm16.
    Ret {
        /// Size of the popped return address.
        size: Size,
        /// Extra bytes released.
        pop: u16,
    },
}

impl Op {
    /// The operation ends its block by transferring control.
    pub fn is_branch(&self) -> bool {
        matches!(
            self,
            Op::Jmp { .. }
                | Op::Jcc { .. }
                | Op::Call { .. }
                | Op::CallInd { .. }
                | Op::JmpInd { .. }
                | Op::Ret { .. }
        )
    }

    /// The operation touches guest memory (explicitly or through the stack).
    pub fn touches_memory(&self) -> bool {
        let mem = |o: &Operand| matches!(o, Operand::Mem(_));
        match self {
            Op::Mov { dst, src, .. } | Op::Alu { dst, src, .. } => mem(dst) || mem(src),
            Op::IncDec { dst, .. } | Op::Neg { dst, .. } | Op::Not { dst, .. } | Op::Shift { dst, .. } => {
                mem(dst)
            }
            Op::ShiftCl { dst, .. } => mem(dst),
            Op::Setcc { dst, .. } => mem(dst),
            Op::Movx { src, .. }
            | Op::Cmov { src, .. }
            | Op::JmpInd { src, .. }
            | Op::Imul { src, .. }
            | Op::MulDiv { src, .. } => mem(src),
            Op::Push { .. }
            | Op::Pop { .. }
            | Op::Call { .. }
            | Op::CallInd { .. }
            | Op::Ret { .. }
            | Op::Leave { .. } => true,
            Op::Lea { .. } | Op::Nop | Op::Callout | Op::Jmp { .. } | Op::Jcc { .. } => false,
        }
    }
}

/// One guest instruction of a block.
#[derive(Clone, Debug)]
pub struct Insn {
    /// EIP of the instruction.
    pub eip: u32,
    /// EIP of the next instruction (wrapped to 16 bits in 16-bit code).
    pub next_eip: u32,
    /// What it becomes.
    pub op: Op,
    /// The decoded instruction (callouts and slow paths run it).
    pub insn: Instruction,
    /// Flags the instruction reads.
    pub reads: u8,
    /// Flags the instruction writes (defined or not).
    pub writes: u8,
    /// Flags still needed after the instruction: by a later reader in the block, or because
    /// control may leave the block before they are written again.
    pub live_out: u8,
    /// Control may leave the block inside this instruction (a memory access that can take the
    /// slow path, a callout, a branch): every flag before it must be in the guest state.
    pub may_exit: bool,
    /// For callouts: the block ends after it (sensitive, branching, I/O or mode-changing
    /// instructions return to the dispatcher).
    pub stop: bool,
    /// It straddles the end of the block's page: a callout that fetches and decodes it afresh
    /// each time (its bytes on the next page are not watched), always the block's last.
    pub straddles: bool,
}

/// How a block ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// It falls through to the instruction at this EIP (length cap, end of page, or the next
    /// instruction must begin a block of its own).
    Next(u32),
    /// Its last instruction is an inline branch.
    Branch,
    /// Its last instruction is a callout after which the dispatcher takes over.
    Stop,
}

/// A guest basic block.
#[derive(Clone, Debug)]
pub struct Block {
    /// EIP of the first instruction.
    pub eip: u32,
    /// Guest-physical address of the first instruction.
    pub phys: u32,
    /// The mode it is translated for.
    pub key: ModeKey,
    /// The instructions.
    pub insns: Vec<Insn>,
    /// Bytes of guest code it was made from (all within the page of `phys`).
    pub len: u32,
    /// How it ends.
    pub end: End,
    /// Its only instruction is port I/O (a block of its own, see the frontend).
    pub io: bool,
    /// Flags it may read (or expose) before overwriting them: 0 means a predecessor need not
    /// write its flag record before jumping here.
    pub flags_live_in: u8,
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "block eip={:08x} phys={:08x} len={} end={:?}", self.eip, self.phys, self.len, self.end)?;
        let mut fmt_insn = iced_x86::IntelFormatter::new();
        for i in &self.insns {
            let mut text = String::new();
            iced_x86::Formatter::format(&mut fmt_insn, &i.insn, &mut text);
            writeln!(
                f,
                "  {:08x} {:<32} {:<60} live={} {}{}",
                i.eip,
                text,
                format!("{:?}", i.op),
                flag::text(i.live_out),
                if i.may_exit { "x" } else { "-" },
                if i.stop { " stop" } else { "" }
            )?;
        }
        Ok(())
    }
}
