//! The architectural state of the CPU as one `#[repr(C)]` struct.
//!
//! Follows Intel SDM Vol. 3A §2 (system registers), §3.4.3 (segment registers and their hidden
//! descriptor caches) and §9.1.1 (processor state after reset). The binary translator addresses
//! fields of [`CpuState`] by offset from a pinned host register, so the layout is part of the
//! contract: every offset the translator relies on is asserted at compile time at the bottom of
//! this file, and fields are only ever appended or moved together with those assertions.
//!
//! Arithmetic flags are lazy (see [`crate::flags`]): `eflags` holds the authoritative value of
//! every bit except the six arithmetic ones (CF PF AF ZF SF OF) while `lazy.op` is not
//! [`crate::flags::FlagOp::Eager`]. Read EFLAGS through [`CpuState::eflags`], never the field.

use core::mem::offset_of;

use crate::flags::LazyFlags;

/// General-purpose register numbers, in the encoding order of the ModR/M `reg` field.
pub mod gpr {
    /// EAX
    pub const EAX: usize = 0;
    /// ECX
    pub const ECX: usize = 1;
    /// EDX
    pub const EDX: usize = 2;
    /// EBX
    pub const EBX: usize = 3;
    /// ESP
    pub const ESP: usize = 4;
    /// EBP
    pub const EBP: usize = 5;
    /// ESI
    pub const ESI: usize = 6;
    /// EDI
    pub const EDI: usize = 7;
}

/// Segment register numbers, in the encoding order of the `sreg` field (SDM Vol. 2 §3.1.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SegReg {
    /// Extra segment.
    Es = 0,
    /// Code segment.
    Cs = 1,
    /// Stack segment.
    Ss = 2,
    /// Data segment.
    Ds = 3,
    /// FS (80386+).
    Fs = 4,
    /// GS (80386+).
    Gs = 5,
}

impl SegReg {
    /// All six, in encoding order.
    pub const ALL: [SegReg; 6] = [SegReg::Es, SegReg::Cs, SegReg::Ss, SegReg::Ds, SegReg::Fs, SegReg::Gs];

    /// The assembler name of the register.
    pub fn name(self) -> &'static str {
        ["es", "cs", "ss", "ds", "fs", "gs"][self as usize]
    }
}

/// EFLAGS bits (SDM Vol. 1 §3.4.3).
pub mod fl {
    /// Carry.
    pub const CF: u32 = 1 << 0;
    /// Bit 1 is reserved and always reads as 1.
    pub const RESERVED1: u32 = 1 << 1;
    /// Parity of the low byte of the result.
    pub const PF: u32 = 1 << 2;
    /// Auxiliary carry out of bit 3.
    pub const AF: u32 = 1 << 4;
    /// Zero.
    pub const ZF: u32 = 1 << 6;
    /// Sign.
    pub const SF: u32 = 1 << 7;
    /// Trap (single step).
    pub const TF: u32 = 1 << 8;
    /// Interrupt enable.
    pub const IF: u32 = 1 << 9;
    /// Direction of string instructions.
    pub const DF: u32 = 1 << 10;
    /// Signed overflow.
    pub const OF: u32 = 1 << 11;
    /// I/O privilege level (two bits).
    pub const IOPL: u32 = 3 << 12;
    /// Nested task.
    pub const NT: u32 = 1 << 14;
    /// Resume flag.
    pub const RF: u32 = 1 << 16;
    /// Virtual-8086 mode.
    pub const VM: u32 = 1 << 17;
    /// Alignment check.
    pub const AC: u32 = 1 << 18;
    /// Virtual interrupt flag.
    pub const VIF: u32 = 1 << 19;
    /// Virtual interrupt pending.
    pub const VIP: u32 = 1 << 20;
    /// CPUID is available (software may toggle it).
    pub const ID: u32 = 1 << 21;
    /// The six arithmetic flags that are computed lazily.
    pub const ARITH: u32 = CF | PF | AF | ZF | SF | OF;
    /// Every bit an i686 lets software change (the rest are reserved).
    pub const WRITABLE: u32 = ARITH | TF | IF | DF | IOPL | NT | RF | VM | AC | VIF | VIP | ID;
}

/// CR0 bits (SDM Vol. 3A §2.5).
pub mod cr0 {
    /// Protection enable.
    pub const PE: u32 = 1 << 0;
    /// Monitor coprocessor.
    pub const MP: u32 = 1 << 1;
    /// x87 emulation: ESC instructions raise #NM.
    pub const EM: u32 = 1 << 2;
    /// Task switched.
    pub const TS: u32 = 1 << 3;
    /// Extension type (hard-wired to 1 on P6).
    pub const ET: u32 = 1 << 4;
    /// Numeric error reporting through #MF.
    pub const NE: u32 = 1 << 5;
    /// Supervisor write protect.
    pub const WP: u32 = 1 << 16;
    /// Alignment mask.
    pub const AM: u32 = 1 << 18;
    /// Not write-through.
    pub const NW: u32 = 1 << 29;
    /// Cache disable.
    pub const CD: u32 = 1 << 30;
    /// Paging.
    pub const PG: u32 = 1 << 31;
}

/// The visible selector and hidden descriptor cache of one segment register (SDM Vol. 3A §3.4.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Segment {
    /// The visible part.
    pub selector: u16,
    /// Descriptor access byte (type, S, DPL, P) in bits 0..8, and AVL/D-B/G in bits 12..16,
    /// exactly as bits 40..56 of the descriptor.
    pub attrs: u16,
    /// Linear base address.
    pub base: u32,
    /// Byte-granular limit (already expanded from G=1).
    pub limit: u32,
}

impl Segment {
    /// Access-byte bits as the descriptor stores them.
    pub const ATTR_ACCESSED: u16 = 1 << 0;
    /// Readable (code) or writable (data).
    pub const ATTR_RW: u16 = 1 << 1;
    /// Expand-down (data) or conforming (code).
    pub const ATTR_DC: u16 = 1 << 2;
    /// Executable.
    pub const ATTR_CODE: u16 = 1 << 3;
    /// Code or data (not system).
    pub const ATTR_S: u16 = 1 << 4;
    /// Present.
    pub const ATTR_P: u16 = 1 << 7;
    /// Default operation size / big (D/B).
    pub const ATTR_DB: u16 = 1 << 14;
    /// Granularity.
    pub const ATTR_G: u16 = 1 << 15;

    /// A segment as real mode (and reset) leaves it: present, read/write, accessed, 64 KiB.
    pub const fn real_mode(selector: u16) -> Segment {
        Segment {
            selector,
            attrs: Self::ATTR_P | Self::ATTR_S | Self::ATTR_RW | Self::ATTR_ACCESSED,
            base: (selector as u32) << 4,
            limit: 0xFFFF,
        }
    }

    /// D/B bit: 32-bit default operand size (code) or 32-bit stack pointer (stack).
    pub fn big(&self) -> bool {
        self.attrs & Self::ATTR_DB != 0
    }

    /// Descriptor privilege level.
    pub fn dpl(&self) -> u8 {
        ((self.attrs >> 5) & 3) as u8
    }
}

/// A descriptor-table register (GDTR, IDTR): base and limit (SDM Vol. 3A §2.4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct TableReg {
    /// Linear base address.
    pub base: u32,
    /// Byte limit.
    pub limit: u32,
}

/// Everything a context switch of the whole machine would save about the CPU.
#[derive(Clone, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct CpuState {
    /// EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI (see [`gpr`]).
    pub regs: [u32; 8],
    /// Instruction pointer (offset into CS).
    pub eip: u32,
    /// EFLAGS except the lazily kept arithmetic flags (read with [`CpuState::eflags`]).
    pub eflags: u32,
    /// The inputs of the last flag-producing operation.
    pub lazy: LazyFlags,
    /// ES, CS, SS, DS, FS, GS (see [`SegReg`]).
    pub segs: [Segment; 6],
    /// Local descriptor table register (selector and cache).
    pub ldtr: Segment,
    /// Task register (selector and cache).
    pub tr: Segment,
    /// Global descriptor table register.
    pub gdtr: TableReg,
    /// Interrupt descriptor table register.
    pub idtr: TableReg,
    /// CR0, CR1 (reserved), CR2, CR3, CR4.
    pub cr: [u32; 5],
    /// DR0–DR7 (DR4/DR5 alias DR6/DR7).
    pub dr: [u32; 8],
    /// Current privilege level.
    pub cpl: u8,
    /// The CPU executed HLT and waits for an interrupt.
    pub halted: bool,
    /// The A20 address line is enabled (physical bit 20 passes through).
    pub a20: bool,
    /// Interrupts are inhibited for one instruction (after STI, MOV SS, POP SS).
    pub int_shadow: bool,
    /// The last instruction loaded SS (MOV SS, POP SS): debug traps are held off for one
    /// instruction (SDM Vol. 3A §6.8.3).
    pub ss_shadow: bool,
    /// An NMI was delivered and no IRET has executed since: further NMIs wait (SDM §6.7.1).
    pub nmi_blocked: bool,
    /// Time-stamp counter (advanced by virtual time).
    pub tsc: u64,
    /// Instructions retired since reset.
    pub retired: u64,
    /// IA32_SYSENTER_CS, IA32_SYSENTER_ESP, IA32_SYSENTER_EIP (MSRs 0x174–0x176).
    pub sysenter: [u32; 3],
}

impl CpuState {
    /// The architectural state after RESET (SDM Vol. 3A §9.1.1, Table 9-1): real mode,
    /// CS:EIP = F000:FFF0 with CS base FFFF0000, EDX = processor signature.
    pub fn reset() -> CpuState {
        let mut segs = [Segment::real_mode(0); 6];
        segs[SegReg::Cs as usize] =
            Segment { selector: 0xF000, base: 0xFFFF_0000, ..Segment::real_mode(0xF000) };
        let mut regs = [0; 8];
        regs[gpr::EDX] = crate::cpuid::SIGNATURE;
        CpuState {
            regs,
            eip: 0xFFF0,
            eflags: fl::RESERVED1,
            lazy: LazyFlags::default(),
            segs,
            ldtr: Segment { attrs: 0x82 | Segment::ATTR_P, ..Segment::real_mode(0) },
            tr: Segment { attrs: 0x8B | Segment::ATTR_P, ..Segment::real_mode(0) },
            gdtr: TableReg { base: 0, limit: 0xFFFF },
            idtr: TableReg { base: 0, limit: 0xFFFF },
            // ET is hard-wired to 1 (the P6 has its x87 on chip); EM is clear: there is an FPU.
            cr: [cr0::ET | cr0::CD | cr0::NW, 0, 0, 0, 0],
            dr: [0, 0, 0, 0, 0xFFFF_0FF0, 0x400, 0xFFFF_0FF0, 0x400],
            cpl: 0,
            halted: false,
            a20: true,
            int_shadow: false,
            ss_shadow: false,
            nmi_blocked: false,
            tsc: 0,
            retired: 0,
            sysenter: [0; 3],
        }
    }

    /// Segment register `s`.
    pub fn seg(&self, s: SegReg) -> &Segment {
        &self.segs[s as usize]
    }

    /// Mutable segment register `s`.
    pub fn seg_mut(&mut self, s: SegReg) -> &mut Segment {
        &mut self.segs[s as usize]
    }

    /// CR0.
    pub fn cr0(&self) -> u32 {
        self.cr[0]
    }

    /// Protected mode (CR0.PE) is on.
    pub fn protected(&self) -> bool {
        self.cr[0] & cr0::PE != 0
    }

    /// Virtual-8086 mode (EFLAGS.VM) is on.
    pub fn v86(&self) -> bool {
        self.eflags & fl::VM != 0
    }

    /// Real-address mode: neither protected nor virtual-8086.
    pub fn real_mode(&self) -> bool {
        !self.protected()
    }

    /// The code segment's default size is 32 bits.
    pub fn code32(&self) -> bool {
        !self.v86() && self.seg(SegReg::Cs).big()
    }

    /// The stack segment's B bit selects ESP (true) or SP (false).
    pub fn stack32(&self) -> bool {
        !self.v86() && self.seg(SegReg::Ss).big()
    }

    /// The full EFLAGS value, arithmetic flags materialized from the lazy state.
    #[inline]
    pub fn eflags(&self) -> u32 {
        (self.eflags & !fl::ARITH) | self.lazy.arith_flags(self.eflags) | fl::RESERVED1
    }

    /// Replaces EFLAGS (no privilege filtering: callers apply the rules of POPF/IRET).
    #[inline]
    pub fn set_eflags(&mut self, value: u32) {
        self.eflags = (value & fl::WRITABLE) | fl::RESERVED1;
        self.lazy = LazyFlags::default();
    }

    /// Replaces the six arithmetic flags with `f` (other bits unchanged), ending lazy evaluation.
    #[inline]
    pub fn set_arith(&mut self, f: u32) {
        self.eflags = (self.eflags() & !fl::ARITH) | (f & fl::ARITH);
        self.lazy = LazyFlags::default();
    }

    /// Carry flag, the flag read most often on its own (ADC, SBB, RCL, RCR, Jcc).
    #[inline]
    pub fn cf(&self) -> bool {
        self.lazy.cf(self.eflags)
    }

    /// Reads an 8-bit register by its encoding number (AL, CL, DL, BL, AH, CH, DH, BH).
    #[inline]
    pub fn reg8(&self, n: usize) -> u8 {
        if n < 4 {
            self.regs[n] as u8
        } else {
            (self.regs[n - 4] >> 8) as u8
        }
    }

    /// Writes an 8-bit register by its encoding number.
    #[inline]
    pub fn set_reg8(&mut self, n: usize, v: u8) {
        if n < 4 {
            self.regs[n] = (self.regs[n] & !0xFF) | u32::from(v);
        } else {
            self.regs[n - 4] = (self.regs[n - 4] & !0xFF00) | (u32::from(v) << 8);
        }
    }

    /// Writes the low 16 bits of a 32-bit register.
    #[inline]
    pub fn set_reg16(&mut self, n: usize, v: u16) {
        self.regs[n] = (self.regs[n] & !0xFFFF) | u32::from(v);
    }
}

// Offsets the translator depends on. Changing the layout means changing these and the JIT.
const _: () = assert!(offset_of!(CpuState, regs) == 0);
const _: () = assert!(offset_of!(CpuState, eip) == 32);
const _: () = assert!(offset_of!(CpuState, eflags) == 36);
const _: () = assert!(offset_of!(CpuState, lazy) == 40);
const _: () = assert!(core::mem::size_of::<Segment>() == 12);
const _: () = assert!(offset_of!(Segment, base) == 4);
const _: () = assert!(offset_of!(Segment, limit) == 8);
