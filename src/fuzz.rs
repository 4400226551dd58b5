//! `bt86 fuzz`: random self-contained programs run in bt86 and QEMU in lockstep
//! ([`crate::diff`]), every divergence minimized to a short reproducer.
//!
//! A program is a Multiboot kernel built with [`guest_images::flat_kernel`]:
//!
//! ```text
//! 0x101000  prologue: ESP into the stack window, EFLAGS from `push imm32; popfd` (IF = TF = 0,
//!           the six arithmetic flags and DF random), every GPR random, EBX into the data area
//!           units:    K random units (one instruction, or a few that belong together)
//!           epilogue: GPRs and EFLAGS stored to the data area, the memory the units wrote loaded
//!                     back into EAX (bt86 diff compares registers, not memory), `out 0xF4, al`
//! 0x105000  data area: 48 KiB of random bytes (part of the file, so both machines see them)
//! ```
//!
//! Sandbox invariants, which make every program run without an exception in both machines, so
//! that a divergence is a disagreement and not a fault-handling path:
//!
//! - EBX and ESP are never the destination of a random instruction: EBX is the base of memory
//!   operands, ESP moves only through pushes and pops (tracked; a few hundred bytes at most).
//!   Memory operands are `[abs]`, `[ebx]`, `[ebx+d]`, `[ebx*s+d]`, `[ebx+ebx*s+d]` or `[esp+d]`,
//!   with `d` computed from the known EBX and the tracked ESP so the address is in the data
//!   area, sometimes with an ES, SS, DS (or, for reads, CS) override: all flat at entry.
//! - String instructions come with `mov ecx, n (n ≤ 16); mov esi, …; mov edi, …` into the data
//!   area; DIV and IDIV with the masking that rules out #DE; BSF and BSR with a non-zero source;
//!   BT with a memory operand and a register offset with the offset masked; 16-bit SHLD and SHRD
//!   with a count below 16 (larger counts leave the result undefined); PUSH of a segment
//!   register is popped into a segment register (the upper half of a 32-bit push is
//!   model-specific).
//! - A flag an instruction leaves undefined (iced-x86's tables, which `bt86 diff` masks too) is
//!   redefined by the very next instruction, and never read: a CMP is inserted when needed.
//!   `bt86 diff` masks undefined flags only in the state right after the instruction that
//!   leaves them, and the two machines choose differently. Every unit therefore ends with all
//!   arithmetic flags defined, and any subset of units is a valid program, which is what
//!   minimization needs.
//! - Jumps go forward, over one to three units, to a unit boundary.
//! - Left out because the two machines may rightly differ: an 8- or 16-bit RCL/RCR whose masked
//!   count is a non-zero multiple of 9 or 17 (it rotates by nothing, yet OF is undefined, which
//!   iced-x86's table does not mark), and TEST's undocumented encoding F6 /1 (QEMU: #UD).
//!
//! Minimization is delta debugging over units, keeping prologue and epilogue: remove halves,
//! quarters … single units while the comparison still diverges with the same differing fields
//! after the same mnemonic; stop when no single unit can be removed.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use emu_core::cpu::Injection;
use guest_images::FLAT_KERNEL_CODE;
use iced_x86::{
    BlockEncoder, BlockEncoderOptions, Code, Decoder, DecoderOptions, Formatter, IcedError, Instruction,
    InstructionBlock, IntelFormatter, MemoryOperand, Mnemonic, Register, RepPrefixKind,
};
use thiserror::Error;

use crate::diff::{diff_kernel, DiffError, DiffOptions, DiffOutcome, Divergence};
use crate::machine::{Exit, Machine};

/// Largest code (prologue, units, epilogue) a program may have: the data area follows it.
const CODE_MAX: u32 = 0x4000;
/// The data area: random bytes, the target of every memory operand and the stack.
pub const DATA: u32 = FLAT_KERNEL_CODE + CODE_MAX;
/// Size of the data area (inside the file; `flat_kernel` adds 64 KiB of zeroes after it).
const DATA_SIZE: u32 = 0xC000;
/// Where the epilogue stores EAX…EDI, then EFLAGS.
const SAVE: u32 = DATA + 0xB000;
/// Absolute memory operands land in `DATA + 0x40 .. DATA + MEM_END`.
const MEM_END: u32 = 0x8000;
/// The initial ESP is in `DATA + STACK .. DATA + STACK + 0x1000`.
const STACK: u32 = 0x9000;
/// String instructions start with ESI and EDI in `DATA + STRINGS .. DATA + STRINGS + 0x3000`.
const STRINGS: u32 = 0x4400;
/// EBX is in `DATA + BASE .. DATA + BASE + 0x2000`.
const BASE: u32 = 0x1000;
/// Random units per program: `UNITS_MIN ..= UNITS_MAX`.
const UNITS_MIN: u32 = 20;
const UNITS_MAX: u32 = 60;
/// Fake addresses the block encoder resolves branches against (far from the real code).
const FAKE_IP: u64 = 0x4000_0000;

/// The six arithmetic flags in iced-x86's `RflagsBits` terms.
const ARITH_FLAGS: u32 = iced_x86::RflagsBits::OF
    | iced_x86::RflagsBits::SF
    | iced_x86::RflagsBits::ZF
    | iced_x86::RflagsBits::AF
    | iced_x86::RflagsBits::PF
    | iced_x86::RflagsBits::CF;
/// The same flags as EFLAGS bits.
const EFLAGS_ARITH: u32 = 0x8D5;
/// EFLAGS.DF.
const EFLAGS_DF: u32 = 0x400;
/// EFLAGS bits 3, 5 and 15: reserved, always read as 0 (POPF ignores them).
const EFLAGS_RESERVED0: u32 = 0x8028;

/// A small deterministic PRNG (SplitMix64): the same seed gives the same programs everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }

    /// True with probability `1 / n`.
    fn one_in(&mut self, n: u32) -> bool {
        self.below(n) == 0
    }

    /// A uniformly chosen element.
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u32) as usize]
    }

    /// A 32-bit value biased towards the edges where arithmetic goes wrong: 0, ±1, the sign
    /// boundaries of every width, powers of two and their neighbours, small numbers.
    pub fn value(&mut self) -> u32 {
        const EDGES: [u32; 14] = [
            0,
            1,
            0xFFFF_FFFF,
            0x7F,
            0x80,
            0xFF,
            0x7FFF,
            0x8000,
            0xFFFF,
            0x7FFF_FFFF,
            0x8000_0000,
            0xFFFF_FF80,
            0xFFFF_8000,
            0xFFFF_FFFE,
        ];
        match self.below(8) {
            0 | 1 => self.pick(&EDGES),
            2 => self.below(17),
            3 => (1u32 << self.below(32)).wrapping_add(self.pick(&[0, 0, 1, 0xFFFF_FFFF])),
            _ => self.next_u64() as u32,
        }
    }
}

/// An operand of a generated instruction.
#[derive(Clone, Copy, Debug)]
enum Opnd {
    R(Register),
    M(MemoryOperand),
    /// An immediate of the instruction's own width.
    I(u32),
    /// A sign-extended 8-bit immediate.
    S(i32),
}

fn ins1(code: Code, a: Opnd) -> Result<Instruction, FuzzError> {
    Ok(match a {
        Opnd::R(r) => Instruction::with1(code, r)?,
        Opnd::M(m) => Instruction::with1(code, m)?,
        Opnd::I(i) => Instruction::with1(code, i)?,
        Opnd::S(i) => Instruction::with1(code, i)?,
    })
}

fn ins2(code: Code, a: Opnd, b: Opnd) -> Result<Instruction, FuzzError> {
    use Opnd::*;
    Ok(match (a, b) {
        (R(x), R(y)) => Instruction::with2(code, x, y)?,
        (R(x), M(y)) => Instruction::with2(code, x, y)?,
        (M(x), R(y)) => Instruction::with2(code, x, y)?,
        (R(x), I(y)) => Instruction::with2(code, x, y)?,
        (M(x), I(y)) => Instruction::with2(code, x, y)?,
        (R(x), S(y)) => Instruction::with2(code, x, y)?,
        (M(x), S(y)) => Instruction::with2(code, x, y)?,
        _ => return Err(FuzzError::Generator(format!("{code:?}: unsupported operands"))),
    })
}

fn ins3(code: Code, a: Opnd, b: Opnd, c: Opnd) -> Result<Instruction, FuzzError> {
    use Opnd::*;
    Ok(match (a, b, c) {
        (R(x), R(y), R(z)) => Instruction::with3(code, x, y, z)?,
        (M(x), R(y), R(z)) => Instruction::with3(code, x, y, z)?,
        (R(x), R(y), I(z)) => Instruction::with3(code, x, y, z)?,
        (M(x), R(y), I(z)) => Instruction::with3(code, x, y, z)?,
        (R(x), M(y), I(z)) => Instruction::with3(code, x, y, z)?,
        (R(x), R(y), S(z)) => Instruction::with3(code, x, y, z)?,
        (R(x), M(y), S(z)) => Instruction::with3(code, x, y, z)?,
        _ => return Err(FuzzError::Generator(format!("{code:?}: unsupported operands"))),
    })
}

/// Registers a random instruction may write (`W…`) or read (`R…`), by size 8, 16, 32: EBX and
/// ESP (and their parts) are read-only.
const W8: [Register; 6] =
    [Register::AL, Register::CL, Register::DL, Register::AH, Register::CH, Register::DH];
const R8: [Register; 8] = [
    Register::AL,
    Register::CL,
    Register::DL,
    Register::AH,
    Register::CH,
    Register::DH,
    Register::BL,
    Register::BH,
];
const W16: [Register; 6] =
    [Register::AX, Register::CX, Register::DX, Register::BP, Register::SI, Register::DI];
const R16: [Register; 8] = [
    Register::AX,
    Register::CX,
    Register::DX,
    Register::BP,
    Register::SI,
    Register::DI,
    Register::BX,
    Register::SP,
];
const W32: [Register; 6] =
    [Register::EAX, Register::ECX, Register::EDX, Register::EBP, Register::ESI, Register::EDI];
const R32: [Register; 8] = [
    Register::EAX,
    Register::ECX,
    Register::EDX,
    Register::EBP,
    Register::ESI,
    Register::EDI,
    Register::EBX,
    Register::ESP,
];
/// Operand widths in bits, by size index.
const BITS: [u32; 3] = [8, 16, 32];
/// Condition-code suffixes in iced-x86's `Code` names.
const CC: [&str; 16] =
    ["o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g"];
/// The two-operand ALU operations.
const ALU: [&str; 8] = ["Add", "Or", "Adc", "Sbb", "And", "Sub", "Xor", "Cmp"];

/// Why a campaign could not run.
#[derive(Debug, Error)]
pub enum FuzzError {
    /// A comparison could not run (no QEMU, QEMU failed …).
    #[error("{0}")]
    Diff(#[from] DiffError),
    /// The generator built an instruction iced-x86 rejects (a bug in the generator).
    #[error("generator: {0}")]
    Generator(String),
    /// Writing a reproducer.
    #[error("{what}: {source}")]
    Io {
        /// The file.
        what: String,
        /// Why.
        source: std::io::Error,
    },
}

impl From<IcedError> for FuzzError {
    fn from(e: IcedError) -> Self {
        FuzzError::Generator(e.to_string())
    }
}

/// What minimization removes or keeps: one random instruction, or a few that belong together
/// (the setup of a string instruction or a division, a CMP that redefines undefined flags).
#[derive(Clone, Debug)]
struct Unit {
    insns: Vec<Instruction>,
    /// A forward jump (the unit's only instruction) over this many following units.
    skip: Option<usize>,
    /// Addresses of memory the unit writes (loaded back by the epilogue).
    writes: Vec<u32>,
}

/// One generated program.
#[derive(Clone, Debug)]
pub struct Program {
    /// The campaign seed.
    pub seed: u64,
    /// The program's index in the campaign.
    pub index: u64,
    prologue: Vec<Instruction>,
    units: Vec<Unit>,
    data: Vec<u8>,
}

/// The bytes of a program and where its parts start.
struct Assembled {
    code: Vec<u8>,
    /// Offsets (from [`FLAT_KERNEL_CODE`]) of the first unit, of each unit, then of the epilogue.
    unit_starts: Vec<u32>,
    epilogue: u32,
}

impl Program {
    /// Random units.
    pub fn units(&self) -> usize {
        self.units.len()
    }

    /// Instructions in the random units (what minimization shrinks).
    pub fn unit_instructions(&self) -> usize {
        self.units.iter().map(|u| u.insns.len()).sum()
    }

    /// The program with only the units whose indices are in `keep` (in order).
    fn subset(&self, keep: &[usize]) -> Program {
        Program { units: keep.iter().map(|&k| self.units[k].clone()).collect(), ..self.clone() }
    }

    /// The epilogue: GPRs and EFLAGS to [`SAVE`], the written memory back into EAX, exit 0.
    fn epilogue(&self) -> Result<Vec<Instruction>, FuzzError> {
        let abs = |a: u32| MemoryOperand::with_displ(u64::from(a), 4);
        let mut v = Vec::new();
        for (k, r) in [
            Register::EAX,
            Register::ECX,
            Register::EDX,
            Register::EBX,
            Register::ESP,
            Register::EBP,
            Register::ESI,
            Register::EDI,
        ]
        .iter()
        .enumerate()
        {
            v.push(Instruction::with2(Code::Mov_rm32_r32, abs(SAVE + 4 * k as u32), *r)?);
        }
        v.push(Instruction::with(Code::Pushfd));
        v.push(Instruction::with1(Code::Pop_rm32, abs(SAVE + 32))?);
        let mut seen = Vec::new();
        for w in self.units.iter().flat_map(|u| u.writes.iter()) {
            let a = w & !3;
            if !seen.contains(&a) && seen.len() < 64 {
                seen.push(a);
                v.push(Instruction::with2(Code::Mov_r32_rm32, Register::EAX, abs(a))?);
            }
        }
        v.push(Instruction::with2(Code::Mov_r8_imm8, Register::AL, 0u32)?);
        v.push(Instruction::with2(Code::Out_imm8_AL, 0xF4u32, Register::AL)?);
        v.push(Instruction::with(Code::Hlt));
        Ok(v)
    }

    fn assemble(&self) -> Result<Assembled, FuzzError> {
        let epilogue = self.epilogue()?;
        let mut all: Vec<Instruction> = self.prologue.clone();
        let mut first = Vec::with_capacity(self.units.len() + 1);
        for u in &self.units {
            first.push(all.len());
            all.extend_from_slice(&u.insns);
        }
        first.push(all.len());
        all.extend_from_slice(&epilogue);
        for (k, i) in all.iter_mut().enumerate() {
            i.set_ip(FAKE_IP + 16 * k as u64);
        }
        for (n, u) in self.units.iter().enumerate() {
            if let Some(skip) = u.skip {
                let target = first[(n + 1 + skip).min(self.units.len())];
                let at = first[n + 1] - 1;
                all[at].set_near_branch32((FAKE_IP + 16 * target as u64) as u32);
            }
        }
        let block = InstructionBlock::new(&all, u64::from(FLAT_KERNEL_CODE));
        let r = BlockEncoder::encode(32, block, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
        if r.code_buffer.len() as u32 > CODE_MAX {
            return Err(FuzzError::Generator(format!(
                "{} bytes of code, more than {CODE_MAX}",
                r.code_buffer.len()
            )));
        }
        let offsets = r.new_instruction_offsets;
        Ok(Assembled {
            unit_starts: first[..self.units.len()].iter().map(|&k| offsets[k]).collect(),
            epilogue: offsets[first[self.units.len()]],
            code: r.code_buffer,
        })
    }

    /// The program as a Multiboot kernel.
    pub fn kernel(&self) -> Result<Vec<u8>, FuzzError> {
        let a = self.assemble()?;
        let mut image = a.code;
        image.resize(CODE_MAX as usize, 0);
        image.extend_from_slice(&self.data);
        Ok(guest_images::flat_kernel("fuzz", "a random program (bt86 fuzz)", &image).elf)
    }

    /// The disassembly, with the prologue, each unit and the epilogue marked.
    pub fn listing(&self) -> Result<String, FuzzError> {
        let a = self.assemble()?;
        let mut out = String::new();
        let mut d = Decoder::with_ip(32, &a.code, u64::from(FLAT_KERNEL_CODE), DecoderOptions::NONE);
        let mut f = IntelFormatter::new();
        out += "; prologue\n";
        while d.can_decode() {
            let off = d.position() as u32;
            if let Some(n) = a.unit_starts.iter().position(|&s| s == off) {
                out += &format!("; unit {n}\n");
            }
            if off == a.epilogue {
                out += "; epilogue\n";
            }
            let i = d.decode();
            let mut text = String::new();
            f.format(&i, &mut text);
            let bytes = &a.code[off as usize..off as usize + i.len()];
            let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
            out += &format!("{:08x}  {:<30} {text}\n", i.ip32(), hex.join(" "));
        }
        Ok(out)
    }
}

/// Builds programs. Holds iced-x86's `Code` values by name.
#[derive(Debug)]
pub struct Generator {
    codes: HashMap<String, Code>,
}

impl Default for Generator {
    fn default() -> Self {
        Generator::new()
    }
}

impl Generator {
    /// A generator.
    pub fn new() -> Generator {
        Generator { codes: Code::values().map(|c| (format!("{c:?}"), c)).collect() }
    }

    /// Program `index` of the campaign with `seed`.
    pub fn program(&self, seed: u64, index: u64) -> Result<Program, FuzzError> {
        let mut rng = Rng::new(seed ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03));
        rng.next_u64();
        let ebx = DATA + BASE + rng.below(0x2000);
        let mut esp = DATA + STACK + rng.below(0x1000);
        if !rng.one_in(8) {
            esp &= !3;
        }
        let mut g = Gen { gen: self, rng, ebx, esp, cur: Vec::new(), writes: Vec::new() };
        let prologue = g.prologue()?;
        let count = UNITS_MIN + g.rng.below(UNITS_MAX - UNITS_MIN + 1);
        let mut units = Vec::with_capacity(count as usize);
        for _ in 0..count {
            units.push(g.unit()?);
        }
        let mut data = Vec::with_capacity(DATA_SIZE as usize);
        while data.len() < DATA_SIZE as usize {
            let v = if g.rng.one_in(2) { g.rng.value() } else { g.rng.next_u64() as u32 };
            data.extend_from_slice(&v.to_le_bytes());
        }
        Ok(Program { seed, index, prologue, units, data })
    }

    fn code(&self, name: &str) -> Result<Code, FuzzError> {
        self.codes.get(name).copied().ok_or_else(|| FuzzError::Generator(format!("no Code named {name}")))
    }
}

/// The state of one program's generation.
struct Gen<'a> {
    gen: &'a Generator,
    rng: Rng,
    /// EBX (constant).
    ebx: u32,
    /// ESP as the straight-line program leaves it.
    esp: u32,
    /// The unit being built.
    cur: Vec<Instruction>,
    writes: Vec<u32>,
}

type R<T> = Result<T, FuzzError>;

impl Gen<'_> {
    fn c(&self, name: &str) -> R<Code> {
        self.gen.code(name)
    }

    fn emit(&mut self, i: Instruction) {
        self.cur.push(i);
    }

    fn emit1(&mut self, name: &str, a: Opnd) -> R<()> {
        let i = ins1(self.c(name)?, a)?;
        self.emit(i);
        Ok(())
    }

    fn emit2(&mut self, name: &str, a: Opnd, b: Opnd) -> R<()> {
        let i = ins2(self.c(name)?, a, b)?;
        self.emit(i);
        Ok(())
    }

    fn emit3(&mut self, name: &str, a: Opnd, b: Opnd, c: Opnd) -> R<()> {
        let i = ins3(self.c(name)?, a, b, c)?;
        self.emit(i);
        Ok(())
    }

    fn emit0(&mut self, name: &str) -> R<()> {
        let i = Instruction::with(self.c(name)?);
        self.emit(i);
        Ok(())
    }

    /// A random EFLAGS image: the arithmetic flags and DF random, IF = TF = 0, sometimes the
    /// always-zero bits 3, 5 and 15 set (POPF must ignore them).
    fn flags_image(&mut self) -> u32 {
        let mut f = 2 | (self.rng.next_u64() as u32 & EFLAGS_ARITH);
        if self.rng.one_in(4) {
            f |= EFLAGS_DF;
        }
        if self.rng.one_in(8) {
            f |= self.rng.next_u64() as u32 & EFLAGS_RESERVED0;
        }
        f
    }

    fn prologue(&mut self) -> R<Vec<Instruction>> {
        let mut v = vec![Instruction::with2(Code::Mov_r32_imm32, Register::ESP, self.esp)?];
        v.push(Instruction::with1(Code::Pushd_imm32, self.flags_image())?);
        v.push(Instruction::with(Code::Popfd));
        for r in W32 {
            let x = if matches!(r, Register::ESI | Register::EDI) && self.rng.one_in(2) {
                DATA + STRINGS + self.rng.below(0x3000)
            } else {
                self.rng.value()
            };
            v.push(Instruction::with2(Code::Mov_r32_imm32, r, x)?);
        }
        v.push(Instruction::with2(Code::Mov_r32_imm32, Register::EBX, self.ebx)?);
        Ok(v)
    }

    fn reg(&mut self, size: usize, write: bool) -> Register {
        match (size, write) {
            (0, true) => self.rng.pick(&W8),
            (0, false) => self.rng.pick(&R8),
            (1, true) => self.rng.pick(&W16),
            (1, false) => self.rng.pick(&R16),
            (_, true) => self.rng.pick(&W32),
            (_, false) => self.rng.pick(&R32),
        }
    }

    /// A memory operand of `bytes` bytes inside the data area.
    fn mem(&mut self, bytes: u32, write: bool) -> Opnd {
        let anywhere = |g: &mut Gen| DATA + 0x40 + g.rng.below(MEM_END - 0x80);
        let d8 = |g: &mut Gen| g.rng.below(256) as i32 - 128;
        let (base, index, scale, target) = match self.rng.below(10) {
            0 | 1 => (Register::None, Register::None, 1, anywhere(self)),
            2..=4 => (Register::EBX, Register::None, 1, self.ebx.wrapping_add(d8(self) as u32)),
            5 => (
                Register::EBX,
                Register::None,
                1,
                self.ebx.wrapping_add(self.rng.below(0x2000)).wrapping_sub(0x1000),
            ),
            6 => (Register::None, Register::EBX, self.rng.pick(&[1, 2, 4, 8]), anywhere(self)),
            7 => (Register::EBX, Register::EBX, self.rng.pick(&[1, 2, 4, 8]), anywhere(self)),
            8 => (
                Register::ESP,
                Register::None,
                1,
                self.esp.wrapping_add(self.rng.below(192)).wrapping_sub(64),
            ),
            _ => (Register::EBX, Register::None, 1, self.ebx),
        };
        let from_regs = match (base, index) {
            (Register::EBX, Register::EBX) => self.ebx.wrapping_mul(1 + scale),
            (Register::None, Register::EBX) => self.ebx.wrapping_mul(scale),
            (Register::EBX, _) => self.ebx,
            (Register::ESP, _) => self.esp,
            _ => 0,
        };
        let disp = target.wrapping_sub(from_regs) as i32;
        let size = if disp == 0 && base != Register::None {
            0
        } else if (-128..128).contains(&disp) && base != Register::None {
            1
        } else {
            4
        };
        let mut segs = vec![Register::ES, Register::SS, Register::DS];
        if !write {
            segs.push(Register::CS);
        }
        let seg = if self.rng.one_in(8) { self.rng.pick(&segs) } else { Register::None };
        if write {
            self.writes.push(target);
            if target & 3 != 0 && (target & 3) + bytes > 4 {
                self.writes.push(target + 4);
            }
        }
        Opnd::M(MemoryOperand::new(base, index, scale, i64::from(disp), size, false, seg))
    }

    /// A register or memory operand of size index `size`.
    fn rm(&mut self, size: usize, write: bool) -> Opnd {
        if self.rng.below(20) < 11 {
            Opnd::R(self.reg(size, write))
        } else {
            self.mem(1 << size, write)
        }
    }

    fn imm(&mut self, size: usize) -> Opnd {
        let v = self.rng.value();
        Opnd::I(match size {
            0 => v & 0xFF,
            1 => v & 0xFFFF,
            _ => v,
        })
    }

    fn imm8s(&mut self) -> Opnd {
        Opnd::S(i32::from(self.rng.value() as u8 as i8))
    }

    /// One random unit.
    fn unit(&mut self) -> R<Unit> {
        self.cur.clear();
        self.writes.clear();
        let mut skip = None;
        let pick = self.rng.below(110);
        match pick {
            0..=19 => self.alu()?,
            20..=22 => self.test()?,
            23..=28 => self.unary()?,
            29..=38 => self.shift()?,
            39..=41 => self.shld()?,
            42..=46 => self.mul()?,
            47..=51 => self.div()?,
            52..=57 => self.bits()?,
            58..=62 => self.cc()?,
            63..=65 => self.movx()?,
            66..=70 => self.xchg()?,
            71 => {
                let r = self.reg(2, true);
                self.emit1("Bswap_r32", Opnd::R(r))?
            }
            72..=74 => self.lea()?,
            75..=82 => self.stack()?,
            83..=88 => self.string()?,
            89..=92 => {
                let n = self.rng.pick(&["Lahf", "Sahf", "Clc", "Stc", "Cmc", "Cld", "Std"]);
                self.emit0(n)?
            }
            93..=94 => {
                let n = self.rng.pick(&["Cbw", "Cwde", "Cwd", "Cdq"]);
                self.emit0(n)?
            }
            95..=97 => self.bcd()?,
            98..=102 => skip = Some(self.jump()?),
            _ => self.mov()?,
        }
        self.seal()?;
        Ok(Unit { insns: std::mem::take(&mut self.cur), skip, writes: std::mem::take(&mut self.writes) })
    }

    /// Inserts a CMP wherever flags left undefined would otherwise be read or survive to a
    /// later state (see the module header).
    fn seal(&mut self) -> R<()> {
        let insns = std::mem::take(&mut self.cur);
        let mut carried = 0u32;
        for i in insns {
            let defines = if matches!(
                i.mnemonic(),
                Mnemonic::Add
                    | Mnemonic::Sub
                    | Mnemonic::Adc
                    | Mnemonic::Sbb
                    | Mnemonic::Cmp
                    | Mnemonic::Neg
                    | Mnemonic::And
                    | Mnemonic::Or
                    | Mnemonic::Xor
                    | Mnemonic::Test
                    | Mnemonic::Inc
                    | Mnemonic::Dec
            ) {
                i.rflags_modified() & !i.rflags_undefined()
            } else {
                0
            };
            let undefined = i.rflags_undefined() & ARITH_FLAGS;
            let reads = i.rflags_read();
            if carried != 0 && (reads & carried != 0 || carried & !defines & !undefined != 0) {
                self.definer()?;
                carried = 0;
            }
            self.cur.push(i);
            carried = (carried & !defines) | undefined;
        }
        if carried != 0 {
            self.definer()?;
        }
        Ok(())
    }

    /// A CMP (defines all six arithmetic flags, writes nothing).
    fn definer(&mut self) -> R<()> {
        let size = self.rng.below(3) as usize;
        let a = Opnd::R(self.reg(size, false));
        let n = ["Cmp_rm8", "Cmp_rm16", "Cmp_rm32"][size];
        if self.rng.one_in(2) {
            let b = Opnd::R(self.reg(size, false));
            let r = ["_r8", "_r16", "_r32"][size];
            self.emit2(&format!("{n}{r}"), a, b)
        } else {
            let i = self.imm(size);
            let r = ["_imm8", "_imm16", "_imm32"][size];
            self.emit2(&format!("{n}{r}"), a, i)
        }
    }

    fn alu(&mut self) -> R<()> {
        let op = self.rng.pick(&ALU);
        let writes = op != "Cmp";
        let size = self.rng.below(3) as usize;
        let n = BITS[size];
        match self.rng.below(7) {
            0 | 6 => {
                let d = self.rm(size, writes);
                let s = Opnd::R(self.reg(size, false));
                self.emit2(&format!("{op}_rm{n}_r{n}"), d, s)
            }
            1 => {
                let d = Opnd::R(self.reg(size, writes));
                let s = self.rm(size, false);
                self.emit2(&format!("{op}_r{n}_rm{n}"), d, s)
            }
            2 => {
                let d = self.rm(size, writes);
                let i = self.imm(size);
                self.emit2(&format!("{op}_rm{n}_imm{n}"), d, i)
            }
            3 if size > 0 => {
                let d = self.rm(size, writes);
                let i = self.imm8s();
                self.emit2(&format!("{op}_rm{n}_imm8"), d, i)
            }
            4 => {
                let acc = [Register::AL, Register::AX, Register::EAX][size];
                let a = ["AL", "AX", "EAX"][size];
                let i = self.imm(size);
                self.emit2(&format!("{op}_{a}_imm{n}"), Opnd::R(acc), i)
            }
            _ => {
                let d = self.rm(0, writes);
                let i = self.imm(0);
                self.emit2(&format!("{op}_rm8_imm8_82"), d, i)
            }
        }
    }

    fn test(&mut self) -> R<()> {
        let size = self.rng.below(3) as usize;
        let n = BITS[size];
        // Not the undocumented alias F6 /1 (see docs/differential-testing.md: QEMU raises #UD).
        match self.rng.below(3) {
            0 => {
                let d = self.rm(size, false);
                let s = Opnd::R(self.reg(size, false));
                self.emit2(&format!("Test_rm{n}_r{n}"), d, s)
            }
            1 => {
                let d = self.rm(size, false);
                let i = self.imm(size);
                self.emit2(&format!("Test_rm{n}_imm{n}"), d, i)
            }
            _ => {
                let acc = [Register::AL, Register::AX, Register::EAX][size];
                let a = ["AL", "AX", "EAX"][size];
                let i = self.imm(size);
                self.emit2(&format!("Test_{a}_imm{n}"), Opnd::R(acc), i)
            }
        }
    }

    fn unary(&mut self) -> R<()> {
        let op = self.rng.pick(&["Inc", "Dec", "Neg", "Not"]);
        let size = self.rng.below(3) as usize;
        let n = BITS[size];
        if size > 0 && matches!(op, "Inc" | "Dec") && self.rng.one_in(2) {
            // The one-byte forms 0x40+r / 0x48+r.
            let r = Opnd::R(self.reg(size, true));
            return self.emit1(&format!("{op}_r{n}"), r);
        }
        let d = self.rm(size, true);
        self.emit1(&format!("{op}_rm{n}"), d)
    }

    /// A shift or rotate count, biased to the interesting ones for a `width`-bit operand.
    fn count(&mut self, width: u32) -> u32 {
        match self.rng.below(8) {
            0 => 0,
            1 => 1,
            2 => width - 1,
            3 => width,
            4 => width + 1,
            5 => 31,
            6 => 32 + self.rng.below(8),
            _ => self.rng.below(256),
        }
    }

    fn shift(&mut self) -> R<()> {
        let op = self.rng.pick(&["Rol", "Ror", "Rcl", "Rcr", "Shl", "Shr", "Sal", "Sar"]);
        let size = self.rng.below(3) as usize;
        let n = BITS[size];
        let d = self.rm(size, true);
        // An 8- or 16-bit RCL/RCR whose count is a non-zero multiple of 9 or 17 after masking
        // rotates by 0 but still counts as a multi-bit rotate: OF is undefined (SDM), iced-x86's
        // table does not say so, and the two machines choose differently. Avoid those counts.
        let through_carry = matches!(op, "Rcl" | "Rcr") && size < 2;
        let count = |g: &mut Gen| loop {
            let c = g.count(n) & 0xFF;
            if !through_carry || (c & 31) % (n + 1) != 0 || c & 31 == 0 {
                break c;
            }
        };
        match self.rng.below(3) {
            0 => self.emit2(&format!("{op}_rm{n}_1"), d, Opnd::I(1)),
            1 => {
                if through_carry || self.rng.one_in(2) {
                    let c = count(self);
                    self.emit2("Mov_r8_imm8", Opnd::R(Register::CL), Opnd::I(c))?;
                }
                self.emit2(&format!("{op}_rm{n}_CL"), d, Opnd::R(Register::CL))
            }
            _ => {
                let c = count(self);
                self.emit2(&format!("{op}_rm{n}_imm8"), d, Opnd::I(c))
            }
        }
    }

    fn shld(&mut self) -> R<()> {
        let op = self.rng.pick(&["Shld", "Shrd"]);
        let size = 1 + self.rng.below(2) as usize;
        let n = BITS[size];
        let d = self.rm(size, true);
        let s = Opnd::R(self.reg(size, false));
        if self.rng.one_in(2) {
            // A 16-bit count of 16 or more (after masking to 5 bits) leaves the result undefined.
            let c = if size == 1 { self.rng.below(16) + 32 * self.rng.below(8) } else { self.count(32) };
            self.emit3(&format!("{op}_rm{n}_r{n}_imm8"), d, s, Opnd::I(c & 0xFF))
        } else {
            if size == 1 {
                let mask = 0x0F | (self.rng.next_u64() as u32 & 0xE0);
                self.emit2("And_rm8_imm8", Opnd::R(Register::CL), Opnd::I(mask))?;
            }
            self.emit3(&format!("{op}_rm{n}_r{n}_CL"), d, s, Opnd::R(Register::CL))
        }
    }

    fn mul(&mut self) -> R<()> {
        let size = self.rng.below(3) as usize;
        let n = BITS[size];
        match self.rng.below(5) {
            0 | 1 => {
                let op = self.rng.pick(&["Mul", "Imul"]);
                let s = self.rm(size, false);
                self.emit1(&format!("{op}_rm{n}"), s)
            }
            2 if size > 0 => {
                let d = Opnd::R(self.reg(size, true));
                let s = self.rm(size, false);
                self.emit2(&format!("Imul_r{n}_rm{n}"), d, s)
            }
            3 if size > 0 => {
                let d = Opnd::R(self.reg(size, true));
                let s = self.rm(size, false);
                let i = self.imm(size);
                self.emit3(&format!("Imul_r{n}_rm{n}_imm{n}"), d, s, i)
            }
            _ => {
                let size = 1 + self.rng.below(2) as usize;
                let n = BITS[size];
                let d = Opnd::R(self.reg(size, true));
                let s = self.rm(size, false);
                let i = self.imm8s();
                self.emit3(&format!("Imul_r{n}_rm{n}_imm8"), d, s, i)
            }
        }
    }

    /// DIV or IDIV with operands that cannot raise #DE (see the module header).
    fn div(&mut self) -> R<()> {
        let size = self.rng.below(3) as usize;
        let n = BITS[size];
        let divisor = if self.rng.one_in(3) {
            self.mem(1 << size, true)
        } else {
            Opnd::R(match size {
                0 => self.rng.pick(&[Register::CL, Register::DL, Register::CH, Register::DH]),
                1 => self.rng.pick(&[Register::CX, Register::BP, Register::SI, Register::DI]),
                _ => self.rng.pick(&[Register::ECX, Register::EBP, Register::ESI, Register::EDI]),
            })
        };
        if self.rng.one_in(2) {
            // Unsigned: high half of the dividend < 2^k <= divisor.
            let k = self.rng.below(n);
            let high = Opnd::R([Register::AH, Register::DX, Register::EDX][size]);
            self.emit2(&format!("And_rm{n}_imm{n}"), high, Opnd::I((1u32 << k) - 1))?;
            self.emit2(&format!("Or_rm{n}_imm{n}"), divisor, Opnd::I(1 << k))?;
            self.emit1(&format!("Div_rm{n}"), divisor)
        } else {
            // Signed: the dividend sign-extended from the low half, the divisor even and
            // non-zero, so |quotient| <= 2^(n-2).
            self.emit0(["Cbw", "Cwd", "Cdq"][size])?;
            let k = 1 + self.rng.below(n - 1);
            let mask = [0xFE, 0xFFFE, 0xFFFF_FFFE][size];
            self.emit2(&format!("Or_rm{n}_imm{n}"), divisor, Opnd::I(1 << k))?;
            self.emit2(&format!("And_rm{n}_imm{n}"), divisor, Opnd::I(mask))?;
            self.emit1(&format!("Idiv_rm{n}"), divisor)
        }
    }

    fn bits(&mut self) -> R<()> {
        let size = 1 + self.rng.below(2) as usize;
        let n = BITS[size];
        match self.rng.below(3) {
            0 => {
                let op = self.rng.pick(&["Bt", "Bts", "Btr", "Btc"]);
                let d = self.rm(size, op != "Bt");
                if matches!(d, Opnd::M(_)) {
                    // A register bit offset reaches beyond the operand: keep it within 32 bytes.
                    let off = self.reg(size, true);
                    self.emit2(&format!("And_rm{n}_imm{n}"), Opnd::R(off), Opnd::I(0xFF))?;
                    self.emit2(&format!("{op}_rm{n}_r{n}"), d, Opnd::R(off))
                } else {
                    let off = Opnd::R(self.reg(size, false));
                    self.emit2(&format!("{op}_rm{n}_r{n}"), d, off)
                }
            }
            1 => {
                let op = self.rng.pick(&["Bt", "Bts", "Btr", "Btc"]);
                let d = self.rm(size, op != "Bt");
                let i = self.rng.below(256);
                self.emit2(&format!("{op}_rm{n}_imm8"), d, Opnd::I(i))
            }
            _ => {
                // BSF/BSR of zero leave the destination undefined: make the source non-zero.
                let op = self.rng.pick(&["Bsf", "Bsr"]);
                let s = self.rm(size, true);
                let bit = if self.rng.one_in(2) { 1 << self.rng.below(n) } else { self.rng.value() | 1 };
                let bit = if size == 1 { bit & 0xFFFF | 1 } else { bit };
                self.emit2(&format!("Or_rm{n}_imm{n}"), s, Opnd::I(bit))?;
                let d = Opnd::R(self.reg(size, true));
                self.emit2(&format!("{op}_r{n}_rm{n}"), d, s)
            }
        }
    }

    fn cc(&mut self) -> R<()> {
        let cc = self.rng.pick(&CC);
        if self.rng.one_in(2) {
            let d = self.rm(0, true);
            self.emit1(&format!("Set{cc}_rm8"), d)
        } else {
            let size = 1 + self.rng.below(2) as usize;
            let n = BITS[size];
            let d = Opnd::R(self.reg(size, true));
            let s = self.rm(size, false);
            self.emit2(&format!("Cmov{cc}_r{n}_rm{n}"), d, s)
        }
    }

    fn movx(&mut self) -> R<()> {
        let op = self.rng.pick(&["Movzx", "Movsx"]);
        let (d, s) = self.rng.pick(&[(1usize, 0usize), (2, 0), (2, 1)]);
        let dst = Opnd::R(self.reg(d, true));
        let src = self.rm(s, false);
        self.emit2(&format!("{op}_r{}_rm{}", BITS[d], BITS[s]), dst, src)
    }

    fn xchg(&mut self) -> R<()> {
        let size = self.rng.below(3) as usize;
        let n = BITS[size];
        match self.rng.below(4) {
            0 => {
                let d = self.rm(size, true);
                let s = Opnd::R(self.reg(size, true));
                self.emit2(&format!("Xchg_rm{n}_r{n}"), d, s)
            }
            1 if size > 0 => {
                let r = Opnd::R(self.reg(size, true));
                let acc = Opnd::R([Register::AL, Register::AX, Register::EAX][size]);
                self.emit2(&format!("Xchg_r{n}_{}", ["AL", "AX", "EAX"][size]), r, acc)
            }
            2 => {
                let d = self.rm(size, true);
                let s = Opnd::R(self.reg(size, true));
                self.emit2(&format!("Xadd_rm{n}_r{n}"), d, s)
            }
            _ => {
                let d = self.rm(size, true);
                let s = Opnd::R(self.reg(size, false));
                self.emit2(&format!("Cmpxchg_rm{n}_r{n}"), d, s)
            }
        }
    }

    fn lea(&mut self) -> R<()> {
        let size = 1 + self.rng.below(2) as usize;
        let d = Opnd::R(self.reg(size, true));
        let m = if self.rng.one_in(5) {
            // 16-bit addressing (a 0x67 prefix): LEA computes it and touches no memory.
            let mut base = self.rng.pick(&[Register::None, Register::BX, Register::BP]);
            let mut index = self.rng.pick(&[Register::None, Register::SI, Register::DI]);
            if base == Register::None {
                (base, index) = (index, base);
            }
            let disp = if base == Register::None && index == Register::None {
                self.rng.value() & 0xFFFF
            } else {
                let (v, b) = (self.rng.value() & 0xFFFF, self.rng.below(256));
                self.rng.pick(&[0, v, b])
            };
            let size = if disp == 0 && base != Register::None {
                0
            } else if disp < 0x80 && base != Register::None {
                1
            } else {
                2
            };
            MemoryOperand::new(base, index, 1, i64::from(disp as u16), size, false, Register::None)
        } else {
            let base = if self.rng.one_in(5) { Register::None } else { self.rng.pick(&R32) };
            let index = if self.rng.one_in(3) { Register::None } else { self.rng.pick(&R32[..7]) };
            let scale = self.rng.pick(&[1, 2, 4, 8]);
            let disp = self.rng.value() as i32;
            let size = if base == Register::None {
                4
            } else if disp == 0 && self.rng.one_in(2) {
                0
            } else if (-128..128).contains(&disp) {
                1
            } else {
                4
            };
            MemoryOperand::new(base, index, scale, i64::from(disp), size, false, Register::None)
        };
        self.emit2(&format!("Lea_r{}_m", BITS[size]), d, Opnd::M(m))
    }

    fn stack(&mut self) -> R<()> {
        match self.rng.below(12) {
            0..=3 => {
                // PUSH of every kind.
                let (name, op, bytes) = match self.rng.below(8) {
                    0 => ("Push_r32", Opnd::R(self.reg(2, false)), 4),
                    1 => ("Push_r16", Opnd::R(self.reg(1, false)), 2),
                    2 => ("Pushd_imm32", self.imm(2), 4),
                    3 => ("Pushd_imm8", self.imm8s(), 4),
                    4 => ("Push_imm16", self.imm(1), 2),
                    5 => ("Pushw_imm8", self.imm8s(), 2),
                    6 => ("Push_rm32", self.mem(4, false), 4),
                    _ => ("Push_rm16", self.mem(2, false), 2),
                };
                self.emit1(name, op)?;
                self.esp = self.esp.wrapping_sub(bytes);
                Ok(())
            }
            4..=6 => {
                let (name, op, bytes) = match self.rng.below(4) {
                    0 | 1 => ("Pop_r32", Opnd::R(self.reg(2, true)), 4),
                    2 => ("Pop_r16", Opnd::R(self.reg(1, true)), 2),
                    _ => {
                        let wide = self.rng.one_in(2);
                        let m = self.mem(if wide { 4 } else { 2 }, true);
                        (if wide { "Pop_rm32" } else { "Pop_rm16" }, m, if wide { 4 } else { 2 })
                    }
                };
                self.emit1(name, op)?;
                self.esp = self.esp.wrapping_add(bytes);
                Ok(())
            }
            7 => {
                // POPF of an arithmetic-flags pattern (IF, TF stay 0).
                let f = self.flags_image();
                if self.rng.one_in(3) {
                    self.emit1("Push_imm16", Opnd::I(f))?;
                    self.emit0("Popfw")
                } else {
                    self.emit1("Pushd_imm32", Opnd::I(f))?;
                    self.emit0("Popfd")
                }
            }
            8 => {
                // PUSHF, then into a register.
                if self.rng.one_in(3) {
                    self.emit0("Pushfw")?;
                    let r = Opnd::R(self.reg(1, true));
                    self.emit1("Pop_r16", r)
                } else {
                    self.emit0("Pushfd")?;
                    let r = Opnd::R(self.reg(2, true));
                    self.emit1("Pop_r32", r)
                }
            }
            9 => {
                // A segment register through the stack (the selectors are all flat at entry).
                let w = self.rng.pick(&["w", "d"]);
                let from = self.rng.pick(&[
                    ("DS", Register::DS),
                    ("ES", Register::ES),
                    ("SS", Register::SS),
                    ("FS", Register::FS),
                    ("GS", Register::GS),
                ]);
                let to = self.rng.pick(&[
                    ("DS", Register::DS),
                    ("ES", Register::ES),
                    ("FS", Register::FS),
                    ("GS", Register::GS),
                ]);
                self.emit1(&format!("Push{w}_{}", from.0), Opnd::R(from.1))?;
                self.emit1(&format!("Pop{w}_{}", to.0), Opnd::R(to.1))
            }
            10 => {
                // MOV from a segment register (a 32-bit destination is zero-extended on P6).
                let s = self.rng.pick(&[
                    Register::ES,
                    Register::CS,
                    Register::SS,
                    Register::DS,
                    Register::FS,
                    Register::GS,
                ]);
                if self.rng.one_in(2) {
                    let d = self.rm(1, true);
                    self.emit2("Mov_rm16_Sreg", d, Opnd::R(s))
                } else {
                    let d = Opnd::R(self.reg(2, true));
                    self.emit2("Mov_r32m16_Sreg", d, Opnd::R(s))
                }
            }
            _ => {
                // MOV to a data segment register of a valid selector.
                let r = self.reg(1, true);
                let from = self.rng.pick(&[Register::DS, Register::ES, Register::SS]);
                let to = self.rng.pick(&[Register::DS, Register::ES, Register::FS, Register::GS]);
                self.emit2("Mov_rm16_Sreg", Opnd::R(r), Opnd::R(from))?;
                self.emit2("Mov_Sreg_rm16", Opnd::R(to), Opnd::R(r))
            }
        }
    }

    fn string(&mut self) -> R<()> {
        let n = self.rng.below(17);
        let esi = DATA + STRINGS + self.rng.below(0x3000);
        let edi = DATA + STRINGS + self.rng.below(0x3000);
        self.emit2("Mov_r32_imm32", Opnd::R(Register::ECX), Opnd::I(n))?;
        self.emit2("Mov_r32_imm32", Opnd::R(Register::ESI), Opnd::I(esi))?;
        self.emit2("Mov_r32_imm32", Opnd::R(Register::EDI), Opnd::I(edi))?;
        if self.rng.one_in(4) {
            let d = self.rng.pick(&["Cld", "Std"]);
            self.emit0(d)?;
        }
        let w = self.rng.below(3);
        let rep = self.rng.pick(&[RepPrefixKind::None, RepPrefixKind::Repe, RepPrefixKind::Repe]);
        let seg = if self.rng.one_in(6) {
            self.rng.pick(&[Register::ES, Register::SS, Register::CS])
        } else {
            Register::None
        };
        let i = match self.rng.below(5) {
            0 => {
                self.writes.extend([edi.wrapping_sub(4), edi, edi + 4]);
                [Instruction::with_movsb, Instruction::with_movsw, Instruction::with_movsd][w as usize](
                    32, seg, rep,
                )?
            }
            1 => {
                self.writes.extend([edi.wrapping_sub(4), edi, edi + 4]);
                [Instruction::with_stosb, Instruction::with_stosw, Instruction::with_stosd][w as usize](
                    32, rep,
                )?
            }
            2 => [Instruction::with_lodsb, Instruction::with_lodsw, Instruction::with_lodsd][w as usize](
                32, seg, rep,
            )?,
            3 => {
                let rep = self.rng.pick(&[RepPrefixKind::None, RepPrefixKind::Repe, RepPrefixKind::Repne]);
                [Instruction::with_scasb, Instruction::with_scasw, Instruction::with_scasd][w as usize](
                    32, rep,
                )?
            }
            _ => {
                let rep = self.rng.pick(&[RepPrefixKind::None, RepPrefixKind::Repe, RepPrefixKind::Repne]);
                [Instruction::with_cmpsb, Instruction::with_cmpsw, Instruction::with_cmpsd][w as usize](
                    32, seg, rep,
                )?
            }
        };
        self.emit(i);
        Ok(())
    }

    fn bcd(&mut self) -> R<()> {
        match self.rng.below(6) {
            0 => self.emit0("Daa"),
            1 => self.emit0("Das"),
            2 => self.emit0("Aaa"),
            3 => self.emit0("Aas"),
            4 => {
                let base = if self.rng.one_in(2) { 10 } else { 1 + self.rng.below(255) };
                self.emit1("Aam_imm8", Opnd::I(base))
            }
            _ => {
                let base = if self.rng.one_in(2) { 10 } else { self.rng.below(256) };
                self.emit1("Aad_imm8", Opnd::I(base))
            }
        }
    }

    /// A forward branch; returns how many units it skips.
    fn jump(&mut self) -> R<usize> {
        let name = match self.rng.below(10) {
            0..=5 => format!("J{}_rel{}_32", self.rng.pick(&CC), self.rng.pick(&[8, 32])),
            6 => format!("Jmp_rel{}_32", self.rng.pick(&[8, 32])),
            7 => "Jecxz_rel8_32".into(),
            _ => self.rng.pick(&["Loop_rel8_32_ECX", "Loope_rel8_32_ECX", "Loopne_rel8_32_ECX"]).into(),
        };
        let i = Instruction::with_branch(self.c(&name)?, FAKE_IP)?;
        self.emit(i);
        Ok(1 + self.rng.below(3) as usize)
    }

    fn mov(&mut self) -> R<()> {
        let size = self.rng.below(3) as usize;
        let n = BITS[size];
        match self.rng.below(4) {
            0 | 1 => {
                let d = Opnd::R(self.reg(size, true));
                let i = self.imm(size);
                self.emit2(&format!("Mov_r{n}_imm{n}"), d, i)
            }
            2 => {
                let d = self.rm(size, true);
                let s = Opnd::R(self.reg(size, false));
                self.emit2(&format!("Mov_rm{n}_r{n}"), d, s)
            }
            _ => {
                let d = Opnd::R(self.reg(size, true));
                let s = self.rm(size, false);
                self.emit2(&format!("Mov_r{n}_rm{n}"), d, s)
            }
        }
    }
}

/// How bt86 alone ran a program.
#[derive(Debug)]
pub struct SoloRun {
    /// How the run ended.
    pub exit: Exit,
    /// Exceptions the CPU raised.
    pub exceptions: u64,
    /// Instructions retired.
    pub retired: u64,
}

/// Runs a kernel in bt86 alone (the generator's self-check: every program must end with
/// `Exit::DebugExit { value: 0 }` and no exception).
pub fn run_in_bt86(elf: &[u8]) -> Result<SoloRun, FuzzError> {
    let mut m = Machine::new(16 << 20, Box::new(std::io::sink()))
        .map_err(|e| FuzzError::Generator(format!("guest memory: {e}")))?;
    crate::boot::multiboot::load_bytes(&mut m, elf, "fuzz", "fuzz").map_err(DiffError::from)?;
    let exit = m.run(1_000_000);
    Ok(SoloRun { exit, exceptions: m.cpu.stats.exceptions, retired: m.cpu.state.retired })
}

/// What a campaign does.
#[derive(Clone, Debug)]
pub struct FuzzOptions {
    /// The seed: the same seed and index give the same program.
    pub seed: u64,
    /// Programs to run.
    pub count: u64,
    /// Where reproducers go.
    pub out: PathBuf,
    /// How each comparison runs (QEMU, injected bug …).
    pub diff: DiffOptions,
    /// Comparisons run at once.
    pub jobs: usize,
}

/// One divergence, minimized.
#[derive(Debug)]
pub struct Found {
    /// The program's index.
    pub index: u64,
    /// The minimized kernel (`fuzz-<seed>-<index>.elf`), with a `.txt` beside it.
    pub path: PathBuf,
    /// The instruction after which the states differ, as the report names it.
    pub instruction: String,
    /// The differing fields.
    pub fields: Vec<String>,
    /// Units before and after minimization.
    pub units: (usize, usize),
    /// The minimized program.
    pub program: Program,
    /// The minimized program's divergence report.
    pub report: String,
}

/// A campaign's result.
#[derive(Debug, Default)]
pub struct Summary {
    /// Programs compared.
    pub programs: u64,
    /// Instructions compared in all of them (before minimization).
    pub compared: u64,
    /// Divergences, by program index.
    pub found: Vec<Found>,
    /// Distinct divergences after minimization (by instruction and differing fields).
    pub distinct: usize,
}

impl Summary {
    /// The closing line.
    pub fn line(&self) -> String {
        format!(
            "fuzz: {} programs, {} instructions compared, {} divergences ({} after minimization)",
            self.programs,
            self.compared,
            self.found.len(),
            self.distinct
        )
    }
}

/// What identifies a divergence across minimization steps: the differing fields, the mnemonic
/// of the instruction whose result differs, and which run ended first, if one did.
fn key(d: &Divergence) -> (Vec<String>, String, bool, bool) {
    (
        d.fields.clone(),
        instruction(d).split_whitespace().next().unwrap_or("").to_owned(),
        d.report.contains("QEMU's run ended here"),
        d.report.contains("bt86's run ended here"),
    )
}

/// The instruction a report names: the one whose result differs.
fn instruction(d: &Divergence) -> String {
    let Some(at) = d.report.find("the state after: ") else { return String::new() };
    let rest = &d.report[at + "the state after: ".len()..];
    let end = rest.find(" (undefined").or_else(|| rest.find('\n')).unwrap_or(rest.len());
    rest[..end].to_owned()
}

/// The outcome of one program.
enum ProgramResult {
    Match(u64),
    Found(u64, Box<Found>),
}

/// Runs a campaign, writing one line per divergence to `log` (in program order).
pub fn campaign(opts: &FuzzOptions, log: &mut dyn Write) -> Result<Summary, FuzzError> {
    let gen = Generator::new();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<ProgramResult, FuzzError>>>> =
        Mutex::new((0..opts.count).map(|_| None).collect());
    let failed = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.max(1) {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k as u64 >= opts.count || failed.load(Ordering::Relaxed) {
                    break;
                }
                let r = one_program(&gen, opts, k as u64);
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                if let Ok(mut v) = results.lock() {
                    v[k] = Some(r);
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_default();
    let mut summary = Summary::default();
    let mut keys = Vec::new();
    for r in results.into_iter().flatten() {
        summary.programs += 1;
        match r? {
            ProgramResult::Match(n) => summary.compared += n,
            ProgramResult::Found(n, f) => {
                summary.compared += n;
                let _ = writeln!(
                    log,
                    "fuzz: divergence in program {}: {}: after `{}` ({}); {} → {} units",
                    f.index,
                    f.path.display(),
                    f.instruction,
                    if f.fields.is_empty() { "one run ended".to_owned() } else { f.fields.join(" ") },
                    f.units.0,
                    f.units.1
                );
                let k = (f.fields.clone(), f.instruction.clone());
                if !keys.contains(&k) {
                    keys.push(k);
                }
                summary.found.push(*f);
            }
        }
    }
    summary.distinct = keys.len();
    Ok(summary)
}

fn one_program(gen: &Generator, opts: &FuzzOptions, index: u64) -> Result<ProgramResult, FuzzError> {
    let p = gen.program(opts.seed, index)?;
    let name = format!("fuzz-{}-{index}", opts.seed);
    let d = match diff_kernel(&p.kernel()?, &name, &opts.diff)? {
        DiffOutcome::Match { compared, .. } => return Ok(ProgramResult::Match(compared)),
        DiffOutcome::Divergence(d) if d.unaligned_interrupt => return Ok(ProgramResult::Match(d.index)),
        DiffOutcome::Divergence(d) => d,
    };
    let compared = d.index;
    let (small, d) = minimize(&p, d, &name, &opts.diff)?;
    let path = opts.out.join(format!("{name}.elf"));
    let f = Found {
        index,
        instruction: instruction(&d),
        fields: d.fields.clone(),
        units: (p.units(), small.units()),
        report: d.report.clone(),
        path,
        program: small,
    };
    save(&f, opts)?;
    Ok(ProgramResult::Found(compared, Box::new(f)))
}

/// Delta debugging over the units of `p` (see the module header).
fn minimize(
    p: &Program,
    d: Box<Divergence>,
    name: &str,
    opts: &DiffOptions,
) -> Result<(Program, Box<Divergence>), FuzzError> {
    let want = key(&d);
    let mut best = d;
    let mut keep: Vec<usize> = (0..p.units()).collect();
    let mut chunk = (keep.len() / 2).max(1);
    let mut trial = 0u32;
    loop {
        let mut removed = false;
        let mut start = 0;
        while start < keep.len() {
            let end = (start + chunk).min(keep.len());
            let candidate: Vec<usize> = keep[..start].iter().chain(&keep[end..]).copied().collect();
            trial += 1;
            let elf = p.subset(&candidate).kernel()?;
            match diff_kernel(&elf, &format!("{name}-m{trial}"), opts) {
                Ok(DiffOutcome::Divergence(d)) if !d.unaligned_interrupt && key(&d) == want => {
                    keep = candidate;
                    best = d;
                    removed = true;
                }
                Err(e @ DiffError::QemuMissing { .. }) => return Err(e.into()),
                _ => start = end,
            }
        }
        if chunk == 1 {
            if !removed {
                break;
            }
        } else {
            chunk = (chunk / 2).max(1);
        }
    }
    Ok((p.subset(&keep), best))
}

/// Writes the reproducer: the kernel, and a `.txt` with the listing and the report.
fn save(f: &Found, opts: &FuzzOptions) -> Result<(), FuzzError> {
    let io = |what: &Path| {
        let what = what.display().to_string();
        move |source| FuzzError::Io { what, source }
    };
    std::fs::create_dir_all(&opts.out).map_err(io(&opts.out))?;
    std::fs::write(&f.path, f.program.kernel()?).map_err(io(&f.path))?;
    let txt = f.path.with_extension("txt");
    let mut t = String::new();
    t += &format!(
        "bt86 fuzz --seed {} --count {}: program {}, minimized from {} to {} units\n",
        opts.seed, opts.count, f.index, f.units.0, f.units.1
    );
    let inject = match opts.diff.injection {
        Some(Injection::AdcCarry) => " --inject adc-carry",
        None => "",
    };
    t += &format!("re-run: bt86 diff --kernel {}{inject}\n\n", f.path.display());
    t += &f.program.listing()?;
    t += "\n";
    t += &f.report;
    std::fs::write(&txt, t).map_err(io(&txt))
}
