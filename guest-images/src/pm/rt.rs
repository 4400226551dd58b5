//! The 32-bit protected-mode runtime every kernel of [`super`] is built on: the program
//! builder (a 32-bit `CodeAssembler`, assembled twice so that label addresses are known), the
//! start-up code, descriptor tables, the exception recorder, console output and the check
//! reporter.
//!
//! Machine state the runtime sets up (SDM Vol. 3A, chapters 3, 5, 6 and 7):
//! - GDT at [`GDT`] with [`GDT_ENTRIES`] entries: null, flat ring-0 code [`KCODE`] and data
//!   [`KDATA`], flat ring-3 code [`UCODE`] and data [`UDATA`] (both DPL 3), the main TSS
//!   [`TSS0_SEL`]; selectors from 30h up are the tests' own.
//! - IDT at [`IDT`], 256 entries: vectors 0–31 are DPL-0 interrupt gates to the recorder
//!   stubs, [`VEC_DONE`] a DPL-3 interrupt gate to the recorder (the way back from ring 3 and
//!   virtual-8086 mode); all others are zero (invalid) until a test installs them.
//! - TSS at [`TSS0`] with SS0:ESP0 = [`KDATA`]:[`ESP0_TOP`], an I/O bitmap base of 68h and
//!   a limit of 67h (so the bitmap lies beyond the limit until a test extends it); LDTR null;
//!   both 8259A PICs fully masked (OCW1), so that a test may run with IF = 1.
//! - The kernel runs on [`MAIN_STACK_TOP`], a stack distinct from the one ring 0 gets from the
//!   TSS on a privilege change.
//!
//! ## Exceptions and recovery
//!
//! Every vector has a 16-byte stub at `stubs + 16 * vector` that pushes a dummy error code
//! ([`NO_ERROR`]) where the processor pushes none (all but 8, 10–14 and 17), pushes the
//! vector, and jumps to the recorder. The recorder saves the general registers, the segment
//! registers and EFLAGS it found on entry, the vector, the error code and the frame the
//! processor pushed (EIP, CS, EFLAGS, and ESP, SS, ES, DS, FS, GS — meaningful only after a
//! privilege change or an exit from virtual-8086 mode), the frame's address and CR2. Then:
//! - if a test *armed* it ([`Program::arm`]), it resumes at the test's resume label in ring 0
//!   on the stack the test had when arming, with flat segments, EFLAGS = 2 and the general
//!   registers (but ESP) as they were when the exception came, so a test can run a faulting
//!   instruction and then look at what was recorded;
//! - otherwise the exception was unexpected: it prints a `not ok` line and resumes at the end
//!   of the current section ([`Program::section`]), or aborts the kernel if there is none.
//!
//! The recorder reads the frame through a flat DS at the offsets SS:ESP gives, so every stack
//! segment a test uses has base 0. The other library code (arming and disarming included)
//! reaches its variables through SS, so a test that loads SS with a segment that does not
//! cover them restores SS before it disarms or checks.
//!
//! ## Conventions for test code
//! - Library routines read their strings and the check values through CS (every code segment
//!   they run in is flat and readable) and write their variables through SS (flat).
//! - A check never raises an exception: it compares, prints and counts.

use std::collections::HashMap;

use iced_x86::code_asm::*;
use iced_x86::BlockEncoderOptions;

use crate::asm::{flags, Asm, Mem32, Value, DEBUGCON, DEBUG_EXIT};
use crate::multiboot;

// ---------------------------------------------------------------------------------------------
// Memory layout (guest-physical = linear while paging is off; identity-mapped when it is on).

/// Where the loader puts the multiboot header; the code follows at [`CODE_BASE`].
pub(crate) const LOAD: u32 = 0x0010_0000;
/// Where the assembled code starts.
pub(crate) const CODE_BASE: u32 = LOAD + 0x40;
/// End of the memory the ELF segment covers (everything below is the kernel's).
pub(crate) const IMAGE_END: u32 = 0x0040_0000;
/// Runtime variables (one page).
pub(crate) const VARS: u32 = 0x0030_0000;
/// The GDT.
pub(crate) const GDT: u32 = 0x0030_1000;
/// GDT entries; the limit is `8 * GDT_ENTRIES - 1`.
pub(crate) const GDT_ENTRIES: u32 = 64;
/// The IDT (256 entries).
pub(crate) const IDT: u32 = 0x0030_2000;
/// An LDT tests may fill (16 entries).
pub(crate) const LDT: u32 = 0x0030_2800;
/// The main TSS; its I/O bitmap follows at +68h (8 KiB and a trailing FFh byte).
pub(crate) const TSS0: u32 = 0x0030_3000;
/// I/O bitmap base field value of [`TSS0`].
pub(crate) const IOMAP_OFFSET: u32 = 0x68;
/// Room for the tests' own TSSs: [`tss_addr`].
const TSS_AREA: u32 = 0x0030_6000;
/// Top of the stack the kernel runs on (8 KiB).
pub(crate) const MAIN_STACK_TOP: u32 = 0x0031_0000;
/// Top of the ring-0 stack of privilege changes (TSS0.ESP0).
pub(crate) const ESP0_TOP: u32 = 0x0031_4000;
/// Top of the ring-3 stack the ring-3 helpers use.
pub(crate) const RING3_STACK_TOP: u32 = 0x0031_8000;
/// Stacks for the tests' own tasks: [`task_stack_top`].
const TASK_STACKS: u32 = 0x0032_0000;
/// Page-aligned memory for paging structures (64 KiB).
pub(crate) const PAGE_AREA: u32 = 0x0033_0000;
/// Free memory for tests (up to F0000h bytes).
pub(crate) const SCRATCH: u32 = 0x0034_0000;
/// Where virtual-8086 code is copied to (below 1 MiB): segment [`V86_CS`], IP 0.
pub(crate) const V86_BASE: u32 = 0x8000;
/// Virtual-8086 code segment.
pub(crate) const V86_CS: u16 = 0x0800;
/// Virtual-8086 stack: SS:SP = 0700h:1000h (linear 7000h–7FFFh).
pub(crate) const V86_SS: u16 = 0x0700;
pub(crate) const V86_SP: u16 = 0x1000;
/// Virtual-8086 data segment (linear 6000h).
pub(crate) const V86_DS: u16 = 0x0600;

/// Address of the `n`th test TSS (0x200 bytes each, up to 16).
pub(crate) const fn tss_addr(n: u32) -> u32 {
    assert!(n < 16);
    TSS_AREA + n * 0x200
}

/// Top of the `n`th test task's stack (4 KiB each, up to 16).
pub(crate) const fn task_stack_top(n: u32) -> u32 {
    assert!(n < 16);
    TASK_STACKS + (n + 1) * 0x1000
}

// ---------------------------------------------------------------------------------------------
// Selectors and descriptors (SDM Vol. 3A, 3.4.2 and 3.4.5).

/// Flat ring-0 code, 32-bit, execute/read.
pub(crate) const KCODE: u16 = 0x08;
/// Flat ring-0 data, read/write, big.
pub(crate) const KDATA: u16 = 0x10;
/// Flat ring-3 code (RPL 3).
pub(crate) const UCODE: u16 = 0x18 | 3;
/// Flat ring-3 data (RPL 3).
pub(crate) const UDATA: u16 = 0x20 | 3;
/// The main TSS.
pub(crate) const TSS0_SEL: u16 = 0x28;

/// Access byte: present.
pub(crate) const P: u8 = 0x80;
/// Access byte: the DPL field for `dpl`.
pub(crate) const fn dpl(dpl: u8) -> u8 {
    dpl << 5
}
/// Access byte: code or data (S = 1), execute/read code.
pub(crate) const CODE_XR: u8 = 0x1A;
/// Access byte: execute-only code.
pub(crate) const CODE_X: u8 = 0x18;
/// Access byte: conforming execute/read code.
pub(crate) const CODE_CXR: u8 = 0x1E;
/// Access byte: read/write data.
pub(crate) const DATA_RW: u8 = 0x12;
/// Access byte: read-only data.
pub(crate) const DATA_R: u8 = 0x10;
/// Access byte: expand-down read/write data.
pub(crate) const DATA_RW_DOWN: u8 = 0x16;
/// Access byte: the accessed bit of code and data segments.
pub(crate) const ACCESSED: u8 = 0x01;
/// System type: available 16-bit TSS.
pub(crate) const TSS16: u8 = 0x01;
/// System type: LDT.
pub(crate) const LDT_TYPE: u8 = 0x02;
/// System type: busy 16-bit TSS.
pub(crate) const TSS16_BUSY: u8 = 0x03;
/// System type: task gate.
pub(crate) const TASK_GATE: u8 = 0x05;
/// System type: available 32-bit TSS.
pub(crate) const TSS32: u8 = 0x09;
/// System type: busy 32-bit TSS.
pub(crate) const TSS32_BUSY: u8 = 0x0B;
/// System type: 32-bit call gate.
pub(crate) const CALL_GATE: u8 = 0x0C;
/// System type: 32-bit interrupt gate.
pub(crate) const INT_GATE: u8 = 0x0E;
/// System type: 32-bit trap gate.
pub(crate) const TRAP_GATE: u8 = 0x0F;
/// Flags nibble: 4 KiB granularity.
pub(crate) const G: u8 = 0x8;
/// Flags nibble: 32-bit (D/B).
pub(crate) const DB: u8 = 0x4;

/// A code, data or system segment descriptor: `access` is byte 5 (P, DPL, S, type), `flags`
/// the upper nibble of byte 6 (G, D/B, L, AVL); `limit` is the 20-bit field.
pub(crate) const fn seg(base: u32, limit: u32, access: u8, flags: u8) -> u64 {
    assert!(limit <= 0xF_FFFF);
    let low = (limit & 0xFFFF) | (base & 0xFFFF) << 16;
    let high = (base >> 16) & 0xFF
        | (access as u32) << 8
        | (limit >> 16) << 16
        | ((flags & 0xF) as u32) << 20
        | (base & 0xFF00_0000);
    (high as u64) << 32 | low as u64
}

/// A gate descriptor: `access` is byte 5 (P, DPL, type); `params` the call-gate parameter
/// count.
pub(crate) const fn gate(selector: u16, offset: u32, access: u8, params: u8) -> u64 {
    let low = (offset & 0xFFFF) | (selector as u32) << 16;
    let high = (offset & 0xFFFF_0000) | (access as u32) << 8 | (params & 0x1F) as u32;
    (high as u64) << 32 | low as u64
}

/// Flat 4 GiB code or data descriptor with the given access byte.
pub(crate) const fn flat(access: u8) -> u64 {
    seg(0, 0xF_FFFF, access, G | DB)
}

// ---------------------------------------------------------------------------------------------
// Control registers and EFLAGS bits beyond the arithmetic flags (SDM Vol. 3A, 2.3 and 2.5).

/// CR0.PE.
pub(crate) const CR0_PE: u32 = 1 << 0;
/// CR0.MP.
pub(crate) const CR0_MP: u32 = 1 << 1;
/// CR0.EM.
pub(crate) const CR0_EM: u32 = 1 << 2;
/// CR0.TS.
pub(crate) const CR0_TS: u32 = 1 << 3;
/// CR0.ET (hard-wired to 1 on P6-family processors).
pub(crate) const CR0_ET: u32 = 1 << 4;
/// CR0.WP.
pub(crate) const CR0_WP: u32 = 1 << 16;
/// CR0.AM.
pub(crate) const CR0_AM: u32 = 1 << 18;
/// CR0.NW.
pub(crate) const CR0_NW: u32 = 1 << 29;
/// CR0.CD.
pub(crate) const CR0_CD: u32 = 1 << 30;
/// CR0.PG.
pub(crate) const CR0_PG: u32 = 1 << 31;
/// CR4.PSE.
pub(crate) const CR4_PSE: u32 = 1 << 4;
/// CR4.PGE.
pub(crate) const CR4_PGE: u32 = 1 << 7;

/// EFLAGS bit 1, always set.
pub(crate) const FL_1: u32 = 1 << 1;
/// EFLAGS.TF.
pub(crate) const FL_TF: u32 = 1 << 8;
/// EFLAGS.IF.
pub(crate) const FL_IF: u32 = 1 << 9;
/// EFLAGS.IOPL for `iopl`.
pub(crate) const fn iopl(iopl: u32) -> u32 {
    iopl << 12
}
/// EFLAGS.NT.
pub(crate) const FL_NT: u32 = 1 << 14;
/// EFLAGS.RF.
pub(crate) const FL_RF: u32 = 1 << 16;
/// EFLAGS.VM.
pub(crate) const FL_VM: u32 = 1 << 17;

// ---------------------------------------------------------------------------------------------
// Runtime variables (dwords at VARS).

const CHECK_COUNT: u32 = VARS;
const FAIL_COUNT: u32 = VARS + 0x04;
const GOT: u32 = VARS + 0x08;
const WANT: u32 = VARS + 0x0C;
/// EAX as the loader left it.
pub(crate) const MB_MAGIC: u32 = VARS + 0x10;
/// Pseudo-descriptor (limit word at +2, base at +4) of the standard GDT.
pub(crate) const GDTR_STD: u32 = VARS + 0x18;
/// Pseudo-descriptor (limit word at +2, base at +4) of the standard IDT.
pub(crate) const IDTR_STD: u32 = VARS + 0x20;
/// Non-zero while a test has armed the recorder.
const ARMED: u32 = VARS + 0x28;
/// Where an armed recovery resumes (a far pointer: offset, then [`KCODE`]), and on which
/// stack.
const RESUME_AT: u32 = VARS + 0x2C;
const RESUME_SEL: u32 = VARS + 0x30;
const RECOVER_ESP: u32 = VARS + 0x34;
/// The current section's end, and the stack there; SECTION_ARMED non-zero inside a section.
const SECTION_ARMED: u32 = VARS + 0x38;
const SECTION_EIP: u32 = VARS + 0x3C;
const SECTION_ESP: u32 = VARS + 0x40;
/// Exceptions recorded so far.
pub(crate) const EXC_COUNT: u32 = VARS + 0x44;

/// What the processor pushed (11 consecutive dwords, in this order).
pub(crate) const EXC_VECTOR: u32 = VARS + 0x50;
/// Error code, or [`NO_ERROR`].
pub(crate) const EXC_ERROR: u32 = VARS + 0x54;
pub(crate) const EXC_EIP: u32 = VARS + 0x58;
pub(crate) const EXC_CS: u32 = VARS + 0x5C;
pub(crate) const EXC_EFLAGS: u32 = VARS + 0x60;
/// Outer ESP and SS (privilege change or virtual-8086 mode only).
pub(crate) const EXC_ESP: u32 = VARS + 0x64;
pub(crate) const EXC_SS: u32 = VARS + 0x68;
/// Virtual-8086 segment registers (exits from virtual-8086 mode only).
pub(crate) const EXC_V86_ES: u32 = VARS + 0x6C;
pub(crate) const EXC_V86_DS: u32 = VARS + 0x70;
pub(crate) const EXC_V86_FS: u32 = VARS + 0x74;
pub(crate) const EXC_V86_GS: u32 = VARS + 0x78;
/// Address of the pushed EIP (the frame's lowest dword once the error code is popped).
pub(crate) const EXC_FRAME: u32 = VARS + 0x7C;
/// CR2 when the handler ran.
pub(crate) const EXC_CR2: u32 = VARS + 0x80;
/// Segment registers, EFLAGS and TR as the handler found them on entry.
pub(crate) const EXC_IN_DS: u32 = VARS + 0x84;
pub(crate) const EXC_IN_ES: u32 = VARS + 0x88;
pub(crate) const EXC_IN_FS: u32 = VARS + 0x8C;
pub(crate) const EXC_IN_GS: u32 = VARS + 0x90;
pub(crate) const EXC_IN_SS: u32 = VARS + 0x94;
pub(crate) const EXC_IN_EFLAGS: u32 = VARS + 0x98;
pub(crate) const EXC_IN_TR: u32 = VARS + 0x9C;
/// The general registers when the exception came (PUSHAD image: EDI first).
const EXC_REGS: u32 = VARS + 0xA0;
pub(crate) const EXC_EDI: u32 = EXC_REGS;
pub(crate) const EXC_ESI: u32 = EXC_REGS + 4;
pub(crate) const EXC_EBP: u32 = EXC_REGS + 8;
pub(crate) const EXC_EBX: u32 = EXC_REGS + 16;
pub(crate) const EXC_EDX: u32 = EXC_REGS + 20;
pub(crate) const EXC_ECX: u32 = EXC_REGS + 24;
pub(crate) const EXC_EAX: u32 = EXC_REGS + 28;
/// Free dwords for tests (VARS + 0x100 up to the end of the page).
pub(crate) const TEST_VARS: u32 = VARS + 0x100;

/// [`EXC_VECTOR`] when nothing was delivered.
pub(crate) const NONE: u32 = 0xFFFF_FFFF;
/// [`EXC_ERROR`] for vectors without an error code.
pub(crate) const NO_ERROR: u32 = 0xFFFF_FFEE;
/// The vector of the DPL-3 interrupt gate ring-3 and virtual-8086 code end with.
pub(crate) const VEC_DONE: u32 = 0x30;

/// Vectors for which the processor pushes an error code (SDM Vol. 3A, 6.15).
const fn has_error_code(vector: u32) -> bool {
    matches!(vector, 8 | 10..=14 | 17)
}

/// Mnemonic of an exception vector, for check names.
pub(crate) fn vector_name(vector: u32) -> String {
    const NAMES: [&str; 20] = [
        "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "#09", "#TS", "#NP", "#SS", "#GP",
        "#PF", "#15", "#MF", "#AC", "#MC", "#XM",
    ];
    match vector {
        VEC_DONE => "the int 30h exit".to_string(),
        v if (v as usize) < NAMES.len() => NAMES[v as usize].to_string(),
        v => format!("vector {v:#x}"),
    }
}

/// What a test expects the code under test to raise.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Expect {
    /// Nothing ([`VEC_DONE`] for the ring-3 and virtual-8086 helpers).
    Nothing,
    /// A fault: the saved EIP is the faulting instruction's.
    Fault(u32, Option<u32>),
    /// A trap or software interrupt: the saved EIP is the next instruction's.
    Trap(u32, Option<u32>),
    /// This vector and error code; the saved EIP is not checked (e.g. #DF, where it is
    /// undefined).
    Vector(u32, Option<u32>),
}

/// Entry points of the runtime library.
#[derive(Clone, Copy)]
struct Library {
    print_inline: CodeLabel,
    print_str: CodeLabel,
    print_dec: CodeLabel,
    print_hex: CodeLabel,
    report: CodeLabel,
    stubs: CodeLabel,
    recorder: CodeLabel,
    reset: CodeLabel,
}

/// A kernel under construction.
pub(crate) struct Program {
    /// The assembler; kernel bodies emit their own instructions through it.
    pub a: CodeAssembler,
    lib: Library,
    checks: u32,
    known: HashMap<CodeLabel, u32>,
    wanted: Vec<CodeLabel>,
    bound: HashMap<CodeLabel, CodeLabel>,
    /// Data blobs to emit after the library, with their labels.
    blobs: Vec<(CodeLabel, Vec<u8>)>,
}

/// Label address in the first pass: big, so that encodings that depend on the size of an
/// immediate are chosen as in the second pass.
const PLACEHOLDER: u32 = 0x0010_0000;

/// Assembles the kernel `body` emits, with the start-up code in front and the check summary
/// behind; returns the ELF file.
///
/// `body` runs twice: the first pass learns where every label used through [`Program::addr`]
/// ends up; the second emits the same instructions with the real addresses.
pub(crate) fn build_kernel(name: &str, body: impl Fn(&mut Program) -> Asm) -> Result<Vec<u8>, IcedError> {
    let whole = |p: &mut Program| -> Asm {
        p.startup()?;
        p.begin_tests(name)?;
        body(p)?;
        p.end_tests(name)
    };
    let mut first = Program::new(HashMap::new())?;
    whole(&mut first)?;
    let (_, addresses) = first.assemble()?;
    let mut second = Program::new(addresses.clone())?;
    whole(&mut second)?;
    let (bytes, check) = second.assemble()?;
    assert_eq!(addresses, check, "{name}: label addresses moved between passes");
    assert!(CODE_BASE + (bytes.len() as u32) <= VARS, "{name}: {} bytes of code overlap VARS", bytes.len());
    Ok(multiboot::elf(LOAD, CODE_BASE, &bytes, CODE_BASE, IMAGE_END))
}

/// Assembles a kernel that is not a self-test: the start-up code (descriptor tables, TSS,
/// masked PICs, the exception recorder), then `body`, which never returns; no header, no
/// checks, no summary. Returns the ELF file.
pub(crate) fn build_bare(name: &str, body: impl Fn(&mut Program) -> Asm) -> Result<Vec<u8>, IcedError> {
    let whole = |p: &mut Program| -> Asm {
        p.startup()?;
        body(p)?;
        p.halt()
    };
    let mut first = Program::new(HashMap::new())?;
    whole(&mut first)?;
    let (_, addresses) = first.assemble()?;
    let mut second = Program::new(addresses.clone())?;
    whole(&mut second)?;
    let (bytes, check) = second.assemble()?;
    assert_eq!(addresses, check, "{name}: label addresses moved between passes");
    assert!(CODE_BASE + (bytes.len() as u32) <= VARS, "{name}: {} bytes of code overlap VARS", bytes.len());
    Ok(multiboot::elf(LOAD, CODE_BASE, &bytes, CODE_BASE, IMAGE_END))
}

impl Program {
    fn new(known: HashMap<CodeLabel, u32>) -> Result<Program, IcedError> {
        let mut a = CodeAssembler::new(32)?;
        let lib = Library {
            print_inline: a.create_label(),
            print_str: a.create_label(),
            print_dec: a.create_label(),
            print_hex: a.create_label(),
            report: a.create_label(),
            stubs: a.create_label(),
            recorder: a.create_label(),
            reset: a.create_label(),
        };
        Ok(Program { a, lib, checks: 0, known, wanted: Vec::new(), bound: HashMap::new(), blobs: Vec::new() })
    }

    /// The linear address of `label`, which must be bound with [`Program::bind`] (before or
    /// after): a placeholder in the first pass, the real one in the second. Use it only where
    /// the encoding does not depend on the value (`mov r32, imm32`, `mov dword [m], imm32`,
    /// far pointers).
    pub fn addr(&mut self, label: CodeLabel) -> u32 {
        self.wanted.push(label);
        self.known.get(&label).copied().unwrap_or(PLACEHOLDER)
    }

    /// Emits the library and the blobs and assembles at [`CODE_BASE`].
    fn assemble(mut self) -> Result<(Vec<u8>, HashMap<CodeLabel, u32>), IcedError> {
        self.emit_library()?;
        for (mut label, bytes) in std::mem::take(&mut self.blobs) {
            self.a.set_label(&mut label)?;
            self.bound.insert(label, label);
            self.a.db(&bytes)?;
        }
        let result = self
            .a
            .assemble_options(u64::from(CODE_BASE), BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
        let mut addresses = HashMap::new();
        for label in &self.wanted {
            let bound =
                self.bound.get(label).expect("labels whose address is taken are bound with Program::bind");
            let ip = result.label_ip(bound)?;
            addresses.insert(*label, u32::try_from(ip).expect("the kernel lies below 4 GiB"));
        }
        Ok((result.inner.code_buffer, addresses))
    }

    /// A fresh label (shorthand).
    pub fn label(&mut self) -> CodeLabel {
        self.a.create_label()
    }

    /// Binds `label` here. Labels passed to [`Program::addr`] must be bound this way rather
    /// than with `a.set_label`. The label sits on a zero-byte pseudo-instruction, so several
    /// labels may be bound at one address.
    pub fn bind(&mut self, label: &mut CodeLabel) -> Asm {
        self.a.set_label(label)?;
        self.a.zero_bytes()?;
        self.bound.insert(*label, *label);
        Ok(())
    }

    /// A label for `bytes`, emitted after the code; [`Program::addr`] gives its address.
    pub fn blob(&mut self, bytes: Vec<u8>) -> CodeLabel {
        let label = self.a.create_label();
        self.blobs.push((label, bytes));
        label
    }

    /// Emits `text` (ASCII, no NUL) followed by a NUL.
    fn inline_string(&mut self, text: &str) -> Asm {
        assert!(text.is_ascii() && !text.contains('\0'), "inline string {text:?}");
        let mut bytes = text.as_bytes().to_vec();
        bytes.push(0);
        self.a.db(&bytes)
    }

    /// Prints `text` on the debug console. Preserves registers and flags.
    pub fn print(&mut self, text: &str) -> Asm {
        self.a.call(self.lib.print_inline)?;
        self.inline_string(text)
    }

    /// Prints EAX in decimal on the debug console. Preserves registers and flags.
    pub fn call_print_dec(&mut self) -> Asm {
        self.a.pushfd()?;
        self.a.call(self.lib.print_dec)?;
        self.a.popfd()
    }

    /// Checks that EAX equals `expected`, printing `ok N - name` or `not ok N - name (...)`.
    /// Preserves all registers and flags.
    pub fn check_eax(&mut self, expected: u32, name: &str) -> Asm {
        self.checks += 1;
        self.a.mov(edx, expected)?;
        self.a.call(self.lib.report)?;
        self.inline_string(name)
    }

    /// Checks that `value` equals `expected`. Clobbers EAX and EDX (flags preserved).
    pub fn check<V: Value>(&mut self, value: V, expected: u32, name: &str) -> Asm {
        value.load_eax(&mut self.a)?;
        self.check_eax(expected, name)
    }

    /// Checks `(value & mask) == expected`. Clobbers EAX and EDX (flags preserved).
    pub fn check_masked<V: Value>(&mut self, value: V, mask: u32, expected: u32, name: &str) -> Asm {
        value.load_eax(&mut self.a)?;
        self.a.pushfd()?;
        self.a.and(eax, mask)?;
        self.a.popfd()?;
        self.check_eax(expected, name)
    }

    /// Checks the flags selected by `mask` against `expected`. Clobbers EAX, EDX.
    pub fn check_flags(&mut self, mask: u32, expected: u32, name: &str) -> Asm {
        self.a.pushfd()?;
        self.a.pop(eax)?;
        self.a.and(eax, mask)?;
        self.check_eax(expected & mask, &format!("{name} flags {}", flags::names(mask, expected)))
    }

    /// EAX = the selector in `sreg`, zero-extended.
    pub fn sel_to_eax(&mut self, sreg: AsmRegisterSegment) -> Asm {
        self.a.xor(eax, eax)?;
        self.a.mov(ax, sreg)
    }

    /// Loads `sreg` with `selector` through AX.
    pub fn load_sreg(&mut self, sreg: AsmRegisterSegment, selector: u16) -> Asm {
        self.a.mov(ax, u32::from(selector))?;
        self.a.mov(sreg, ax)
    }

    /// Writes the 8-byte `descriptor` to `address`.
    pub fn put_desc(&mut self, address: u32, descriptor: u64) -> Asm {
        self.a.mov(dword_ptr(address).ss(), descriptor as u32)?;
        self.a.mov(dword_ptr(address + 4).ss(), (descriptor >> 32) as u32)
    }

    /// Writes GDT entry `selector` (RPL and TI ignored).
    pub fn set_gdt(&mut self, selector: u16, descriptor: u64) -> Asm {
        self.put_desc(GDT + u32::from(selector & !7), descriptor)
    }

    /// Writes IDT entry `vector`.
    pub fn set_idt(&mut self, vector: u32, descriptor: u64) -> Asm {
        self.put_desc(IDT + 8 * vector, descriptor)
    }

    /// Address of the recorder stub of `vector`.
    pub fn stub(&mut self, vector: u32) -> u32 {
        let stubs = self.lib.stubs;
        self.addr(stubs) + 16 * vector
    }

    /// Points IDT entry `vector` at its recorder stub through a gate of type `kind`
    /// ([`INT_GATE`], [`TRAP_GATE`]) with the given DPL.
    pub fn set_handler(&mut self, vector: u32, kind: u8, gate_dpl: u8) -> Asm {
        let stub = self.stub(vector);
        self.set_idt(vector, gate(KCODE, stub, P | dpl(gate_dpl) | kind, 0))
    }

    /// Arms the recorder: the next exception resumes at `resume` (see the module docs).
    /// Clears the record ([`EXC_VECTOR`] = [`NONE`]).
    pub fn arm(&mut self, resume: CodeLabel) -> Asm {
        let at = self.addr(resume);
        self.a.mov(dword_ptr(EXC_VECTOR).ss(), NONE)?;
        self.a.mov(dword_ptr(EXC_ERROR).ss(), NO_ERROR)?;
        self.a.mov(dword_ptr(RESUME_AT).ss(), at)?;
        self.a.mov(dword_ptr(RECOVER_ESP).ss(), esp)?;
        self.a.mov(dword_ptr(ARMED).ss(), 1)
    }

    /// Disarms the recorder (at a resume label: nothing came, or it already disarmed itself).
    pub fn disarm(&mut self) -> Asm {
        self.a.mov(dword_ptr(ARMED).ss(), 0)
    }

    /// Checks what the recorder saw against `expect`: the vector, the error code where one is
    /// given, and the saved EIP (`at` for a fault, `next` for a trap).
    pub fn check_exception(&mut self, name: &str, expect: Expect, at: u32, next: u32) -> Asm {
        let (vector, error, eip) = match expect {
            Expect::Nothing => return self.check(Mem32(EXC_VECTOR), NONE, &format!("{name}: no exception")),
            Expect::Fault(v, e) => (v, e, Some((at, "saved eip is the faulting instruction's"))),
            Expect::Trap(v, e) => (v, e, Some((next, "saved eip is the next instruction's"))),
            Expect::Vector(v, e) => (v, e, None),
        };
        self.check(Mem32(EXC_VECTOR), vector, &format!("{name}: {}", vector_name(vector)))?;
        if let Some(e) = error {
            self.check(Mem32(EXC_ERROR), e, &format!("{name}: error code {e:#x}"))?;
        }
        if let Some((eip, what)) = eip {
            self.check(Mem32(EXC_EIP), eip, &format!("{name}: {what}"))?;
        }
        Ok(())
    }

    /// Runs `setup`, then `instr` (the instruction under test), with the recorder armed, and
    /// checks what was raised.
    pub fn case(
        &mut self,
        name: &str,
        expect: Expect,
        setup: impl FnOnce(&mut Program) -> Asm,
        instr: impl FnOnce(&mut Program) -> Asm,
    ) -> Asm {
        let mut at = self.label();
        let mut resume = self.label();
        let at_addr = self.addr(at);
        let resume_addr = self.addr(resume);
        self.arm(resume)?;
        setup(self)?;
        self.bind(&mut at)?;
        instr(self)?;
        self.bind(&mut resume)?;
        self.disarm()?;
        self.check_exception(name, expect, at_addr, resume_addr)
    }

    /// Pushes an IRET frame to ring 3 (`UCODE`:`entry`, `UDATA`:`esp`, `eflags`) and IRETs.
    pub fn iret_to_ring3(&mut self, entry: u32, stack: u32, eflags: u32) -> Asm {
        self.a.push(u32::from(UDATA))?;
        self.a.mov(eax, stack)?;
        self.a.push(eax)?;
        self.a.mov(eax, eflags)?;
        self.a.push(eax)?;
        self.a.push(u32::from(UCODE))?;
        self.a.mov(eax, entry)?;
        self.a.push(eax)?;
        self.a.iretd()
    }

    /// Runs `setup` and then `instr` at CPL 3 (entered by IRET with EFLAGS = `eflags`, DS =
    /// ES = [`UDATA`], ESP = [`RING3_STACK_TOP`]), then `int 30h` back to ring 0, and checks
    /// what was raised; [`Expect::Nothing`] means the `int 30h` came (and was the first
    /// thing raised), [`Expect::Trap`] that the saved EIP is the `int 30h`'s own.
    pub fn ring3_case(
        &mut self,
        name: &str,
        eflags: u32,
        expect: Expect,
        setup: impl FnOnce(&mut Program) -> Asm,
        instr: impl FnOnce(&mut Program) -> Asm,
    ) -> Asm {
        let mut ring3 = self.label();
        let mut at = self.label();
        let mut next = self.label();
        let mut done = self.label();
        let mut resume = self.label();
        let ring3_addr = self.addr(ring3);
        let at_addr = self.addr(at);
        let next_addr = self.addr(next);
        let done_addr = self.addr(done);
        self.arm(resume)?;
        self.iret_to_ring3(ring3_addr, RING3_STACK_TOP, eflags)?;
        self.bind(&mut ring3)?;
        self.load_sreg(ds, UDATA)?;
        self.load_sreg(es, UDATA)?;
        setup(self)?;
        self.bind(&mut at)?;
        instr(self)?;
        self.bind(&mut next)?;
        self.a.int(VEC_DONE)?;
        self.bind(&mut done)?;
        // Not reached: the int 30h handler resumes below.
        self.a.jmp(done)?;
        self.bind(&mut resume)?;
        self.disarm()?;
        match expect {
            Expect::Nothing => self.check_exception(name, Expect::Trap(VEC_DONE, None), at_addr, done_addr),
            e => self.check_exception(name, e, at_addr, next_addr),
        }
    }

    /// Copies the virtual-8086 code `code` (assembled by [`V86Code::assemble`]) to
    /// [`V86_BASE`]. Clobbers ESI, EDI, ECX.
    pub fn install_v86(&mut self, code: Vec<u8>) -> Asm {
        assert!(code.len() <= 0x8000, "virtual-8086 code too large");
        let len = code.len() as u32;
        let blob = self.blob(code);
        let from = self.addr(blob);
        self.copy(from, V86_BASE, len)
    }

    /// Enters virtual-8086 mode at [`V86_CS`]:`ip` with EFLAGS = `eflags` | VM, SS:SP =
    /// [`V86_SS`]:[`V86_SP`] and DS = ES = FS = GS = [`V86_DS`] (IRET from ring 0), with the
    /// recorder armed; the code there ends with UD2 (or faults, or `int 30h` with IOPL 3).
    /// Checks what was raised: for [`Expect::Nothing`], the #UD of the UD2 at `done`;
    /// otherwise `expect` with the saved IP `at` (fault) or `next` (trap). Also checks the
    /// saved CS and that VM was set in the saved EFLAGS.
    pub fn v86_case(&mut self, name: &str, eflags: u32, ip: u16, expect: Expect, at: u16, next: u16) -> Asm {
        let mut resume = self.label();
        self.arm(resume)?;
        for value in [V86_DS, V86_DS, V86_DS, V86_DS, V86_SS, V86_SP] {
            self.a.push(u32::from(value))?;
        }
        self.a.push(eflags | FL_VM | FL_1)?;
        self.a.push(u32::from(V86_CS))?;
        self.a.push(u32::from(ip))?;
        self.a.iretd()?;
        self.bind(&mut resume)?;
        self.disarm()?;
        let expect = match expect {
            Expect::Nothing => Expect::Fault(6, None),
            e => e,
        };
        self.check_exception(name, expect, u32::from(at), u32::from(next))?;
        self.check(Mem32(EXC_CS), u32::from(V86_CS), &format!("{name}: saved cs"))?;
        self.check_masked(Mem32(EXC_EFLAGS), FL_VM, FL_VM, &format!("{name}: saved eflags has vm"))
    }

    /// Runs `body` as a section: an unexpected exception inside it is reported as a failed
    /// check and resumes after the section, where the machine is brought back to its
    /// start-up state (descriptor tables, CR0, CR4, segment registers; not TR).
    pub fn section(&mut self, name: &str, body: impl FnOnce(&mut Program) -> Asm) -> Asm {
        let mut end = self.label();
        let end_addr = self.addr(end);
        self.print(&format!("# {name}\n"))?;
        self.a.mov(dword_ptr(SECTION_EIP).ss(), end_addr)?;
        self.a.mov(dword_ptr(SECTION_ESP).ss(), esp)?;
        self.a.mov(dword_ptr(SECTION_ARMED).ss(), 1)?;
        body(self)?;
        self.bind(&mut end)?;
        self.a.mov(dword_ptr(SECTION_ARMED).ss(), 0)?;
        self.a.call(self.lib.reset)
    }

    /// Copies `len` bytes from linear `from` to linear `to` (DS = ES flat). Clobbers ESI, EDI,
    /// ECX.
    pub fn copy(&mut self, from: u32, to: u32, len: u32) -> Asm {
        self.a.mov(esi, from)?;
        self.a.mov(edi, to)?;
        self.a.mov(ecx, len)?;
        self.a.cld()?;
        self.a.rep().movsb()
    }

    /// Fills `len` bytes (a multiple of 4) at linear `to` with the dword `value` (ES flat).
    /// Clobbers EAX, EDI, ECX.
    pub fn fill(&mut self, to: u32, len: u32, value: u32) -> Asm {
        assert!(len % 4 == 0);
        self.a.mov(edi, to)?;
        self.a.mov(eax, value)?;
        self.a.mov(ecx, len / 4)?;
        self.a.cld()?;
        self.a.rep().stosd()
    }

    /// The code the loader jumps to: takes over the machine (see the module docs).
    fn startup(&mut self) -> Asm {
        let mut flat_cs = self.label();
        let flat_cs_addr = self.addr(flat_cs);
        self.a.cli()?;
        self.a.cld()?;
        self.a.mov(esp, MAIN_STACK_TOP)?;
        self.a.mov(ebp, eax)?;
        // Zero the variables and the descriptor tables (the loader put DS = ES = flat).
        self.fill(VARS, TSS0 + IOMAP_OFFSET - VARS, 0)?;
        self.a.mov(dword_ptr(MB_MAGIC), ebp)?;
        self.a.mov(word_ptr(RESUME_SEL), u32::from(KCODE))?;
        // The I/O bitmap: all ports allowed, then the trailing all-ones byte (SDM 18.5.2).
        self.fill(TSS0 + IOMAP_OFFSET, 0x2000, 0)?;
        self.a.mov(byte_ptr(TSS0 + IOMAP_OFFSET + 0x2000), 0xFF)?;
        self.a.mov(word_ptr(GDTR_STD + 2), GDT_ENTRIES * 8 - 1)?;
        self.a.mov(dword_ptr(GDTR_STD + 4), GDT)?;
        self.a.mov(word_ptr(IDTR_STD + 2), 256 * 8 - 1)?;
        self.a.mov(dword_ptr(IDTR_STD + 4), IDT)?;
        self.a.mov(dword_ptr(TSS0 + 4), ESP0_TOP)?;
        self.a.mov(dword_ptr(TSS0 + 8), u32::from(KDATA))?;
        self.a.mov(word_ptr(TSS0 + 0x66), IOMAP_OFFSET)?;
        self.set_gdt(TSS0_SEL, seg(TSS0, 0x67, P | TSS32, 0))?;
        self.a.call(self.lib.reset)?;
        self.a.jmp_far(KCODE, flat_cs_addr)?;
        self.bind(&mut flat_cs)?;
        self.a.mov(ax, u32::from(TSS0_SEL))?;
        self.a.ltr(ax)?;
        // Mask every IRQ of both 8259As (OCW1).
        self.a.mov(al, 0xFF)?;
        self.a.out(0x21, al)?;
        self.a.out(0xA1, al)
    }

    /// Opens the tests: prints a header and checks the loader's magic.
    fn begin_tests(&mut self, name: &str) -> Asm {
        self.print(&format!("# bt86 protected-mode kernel {name}\n"))?;
        self.check(Mem32(MB_MAGIC), multiboot::BOOTLOADER_MAGIC, "multiboot loader magic in eax")
    }

    /// Closes the tests: checks that every check ran, prints the TAP plan and a summary, and
    /// exits through isa-debug-exit with 0 if all passed, 1 otherwise.
    fn end_tests(&mut self, name: &str) -> Asm {
        let ran = self.checks;
        self.check(Mem32(CHECK_COUNT), ran, &format!("all {ran} checks above ran"))?;
        let total = self.checks;
        self.print(&format!("1..{total}\n# {name}: "))?;
        self.a.mov(eax, dword_ptr(FAIL_COUNT).ss())?;
        self.a.call(self.lib.print_dec)?;
        self.print(&format!(" of {total} checks failed\n"))?;
        self.a.cmp(dword_ptr(FAIL_COUNT).ss(), 0)?;
        self.a.setne(al)?;
        self.a.out(DEBUG_EXIT, al)?;
        self.halt()
    }

    /// CLI; HLT, forever.
    pub fn halt(&mut self) -> Asm {
        let mut stop = self.label();
        self.a.cli()?;
        self.bind(&mut stop)?;
        self.a.hlt()?;
        self.a.jmp(stop)
    }

    fn emit_library(&mut self) -> Asm {
        self.emit_output()?;
        self.emit_report()?;
        self.emit_reset()?;
        self.emit_stubs()?;
        self.emit_recorder()
    }

    fn emit_output(&mut self) -> Asm {
        let lib = self.lib;
        let a = &mut self.a;

        // print_inline: the string starts at the return address.
        let mut l = lib.print_inline;
        a.set_label(&mut l)?;
        a.push(ebp)?;
        a.mov(ebp, esp)?;
        a.pushfd()?;
        a.push(eax)?;
        a.push(esi)?;
        a.mov(esi, dword_ptr(ebp + 4))?;
        a.call(lib.print_str)?;
        a.mov(dword_ptr(ebp + 4), esi)?;
        a.pop(esi)?;
        a.pop(eax)?;
        a.popfd()?;
        a.pop(ebp)?;
        a.ret()?;

        // print_str: CS:ESI -> console, up to the NUL; ESI ends past the NUL. Clobbers AL.
        let mut l = lib.print_str;
        let mut done = a.create_label();
        a.set_label(&mut l)?;
        a.mov(al, byte_ptr(esi).cs())?;
        a.inc(esi)?;
        a.test(al, al)?;
        a.jz(done)?;
        a.out(DEBUGCON, al)?;
        a.jmp(lib.print_str)?;
        a.set_label(&mut done)?;
        a.ret()?;

        // print_dec: recursive; each level divides by 10 and prints its digit on the way back.
        let mut l = lib.print_dec;
        let mut digit = a.create_label();
        a.set_label(&mut l)?;
        a.push(eax)?;
        a.push(edx)?;
        a.push(ebx)?;
        a.xor(edx, edx)?;
        a.mov(ebx, 10)?;
        a.div(ebx)?;
        a.test(eax, eax)?;
        a.jz(digit)?;
        a.call(lib.print_dec)?;
        a.set_label(&mut digit)?;
        a.mov(al, dl)?;
        a.add(al, i32::from(b'0'))?;
        a.out(DEBUGCON, al)?;
        a.pop(ebx)?;
        a.pop(edx)?;
        a.pop(eax)?;
        a.ret()?;

        // print_hex: eight nibbles, most significant first.
        let mut l = lib.print_hex;
        let mut nibble = a.create_label();
        a.set_label(&mut l)?;
        a.push(eax)?;
        a.push(ecx)?;
        a.push(edx)?;
        a.mov(edx, eax)?;
        a.mov(ecx, 8)?;
        a.set_label(&mut nibble)?;
        a.rol(edx, 4)?;
        a.mov(al, dl)?;
        a.and(al, 0x0F)?;
        a.cmp(al, 10)?;
        a.sbb(ah, ah)?;
        a.not(ah)?;
        a.and(ah, i32::from(b'a' - b'0' - 10))?;
        a.add(al, ah)?;
        a.add(al, i32::from(b'0'))?;
        a.out(DEBUGCON, al)?;
        a.dec(ecx)?;
        a.jnz(nibble)?;
        a.pop(edx)?;
        a.pop(ecx)?;
        a.pop(eax)?;
        a.ret()
    }

    fn emit_report(&mut self) -> Asm {
        let lib = self.lib;
        let a = &mut self.a;
        // report: EAX = got, EDX = want, [ebp+4] = the return address = the check's name.
        let mut l = lib.report;
        let mut passed = a.create_label();
        let mut newline = a.create_label();
        a.set_label(&mut l)?;
        a.push(ebp)?;
        a.mov(ebp, esp)?;
        a.pushfd()?;
        a.pushad()?;
        a.inc(dword_ptr(CHECK_COUNT).ss())?;
        a.mov(dword_ptr(GOT).ss(), eax)?;
        a.mov(dword_ptr(WANT).ss(), edx)?;
        a.cmp(eax, edx)?;
        a.je(passed)?;
        a.inc(dword_ptr(FAIL_COUNT).ss())?;
        a.call(lib.print_inline)?;
        a.db(b"not \0")?;
        a.set_label(&mut passed)?;
        a.call(lib.print_inline)?;
        a.db(b"ok \0")?;
        a.mov(eax, dword_ptr(CHECK_COUNT).ss())?;
        a.call(lib.print_dec)?;
        a.call(lib.print_inline)?;
        a.db(b" - \0")?;
        a.mov(esi, dword_ptr(ebp + 4))?;
        a.call(lib.print_str)?;
        a.mov(dword_ptr(ebp + 4), esi)?;
        a.mov(eax, dword_ptr(GOT).ss())?;
        a.cmp(eax, dword_ptr(WANT).ss())?;
        a.je(newline)?;
        a.call(lib.print_inline)?;
        a.db(b" (got 0x\0")?;
        a.call(lib.print_hex)?;
        a.call(lib.print_inline)?;
        a.db(b", want 0x\0")?;
        a.mov(eax, dword_ptr(WANT).ss())?;
        a.call(lib.print_hex)?;
        a.call(lib.print_inline)?;
        a.db(b")\0")?;
        a.set_label(&mut newline)?;
        a.call(lib.print_inline)?;
        a.db(b"\n\0")?;
        a.popad()?;
        a.popfd()?;
        a.pop(ebp)?;
        a.ret()
    }

    /// reset: (re)builds the standard GDT entries and IDT entries 0-31 and [`VEC_DONE`], loads
    /// GDTR and IDTR, zeroes CR4,
    /// turns paging, WP, AM, TS and EM off, reloads DS, ES, FS, GS and SS with flat data and
    /// LDTR with null. The caller reloads CS. Preserves the general registers but EAX.
    fn emit_reset(&mut self) -> Asm {
        let lib = self.lib;
        let stubs = self.addr(lib.stubs);
        let done = self.stub(VEC_DONE);
        let mut l = lib.reset;
        let mut next = self.label();
        self.a.set_label(&mut l)?;
        self.a.push(ebx)?;
        self.a.push(ecx)?;
        self.a.push(edx)?;
        self.a.mov(eax, cr0)?;
        self.a.and(eax, !(CR0_PG | CR0_WP | CR0_AM | CR0_TS | CR0_EM))?;
        self.a.mov(cr0, eax)?;
        self.a.xor(eax, eax)?;
        self.a.mov(cr4, eax)?;
        self.set_gdt(KCODE, flat(P | CODE_XR))?;
        self.set_gdt(KDATA, flat(P | DATA_RW))?;
        self.set_gdt(UCODE, flat(P | dpl(3) | CODE_XR))?;
        self.set_gdt(UDATA, flat(P | dpl(3) | DATA_RW))?;
        self.a.lgdt(fword_ptr(GDTR_STD + 2).ss())?;
        // IDT: vectors 0-31 present DPL-0 interrupt gates to their stubs (the others, zero at
        // start-up, are the tests').
        self.a.xor(ecx, ecx)?;
        self.a.mov(ebx, stubs)?;
        self.a.set_label(&mut next)?;
        self.a.mov(eax, ebx)?;
        self.a.and(eax, 0xFFFF)?;
        self.a.or(eax, u32::from(KCODE) << 16)?;
        self.a.mov(dword_ptr(ecx * 8 + IDT).ss(), eax)?;
        self.a.mov(edx, ebx)?;
        self.a.and(edx, 0xFFFF_0000u32)?;
        self.a.or(edx, u32::from(INT_GATE) << 8)?;
        self.a.or(edx, u32::from(P) << 8)?;
        self.a.mov(dword_ptr(ecx * 8 + IDT + 4).ss(), edx)?;
        self.a.add(ebx, 16)?;
        self.a.inc(ecx)?;
        self.a.cmp(ecx, 32)?;
        self.a.jb(next)?;
        self.set_idt(VEC_DONE, gate(KCODE, done, P | dpl(3) | INT_GATE, 0))?;
        self.a.lidt(fword_ptr(IDTR_STD + 2).ss())?;
        self.a.mov(ax, u32::from(KDATA))?;
        self.a.mov(ds, ax)?;
        self.a.mov(es, ax)?;
        self.a.mov(fs, ax)?;
        self.a.mov(gs, ax)?;
        self.a.mov(ss, ax)?;
        self.a.xor(eax, eax)?;
        self.a.lldt(ax)?;
        self.a.pop(edx)?;
        self.a.pop(ecx)?;
        self.a.pop(ebx)?;
        self.a.ret()
    }

    /// 256 stubs of 16 bytes: [push NO_ERROR (6A EE)] push imm32 vector; jmp rel32 recorder.
    fn emit_stubs(&mut self) -> Asm {
        let mut stubs = self.lib.stubs;
        let base = self.addr(stubs);
        let recorder = self.addr(self.lib.recorder);
        self.bind(&mut stubs)?;
        for vector in 0..256u32 {
            let mut bytes = Vec::with_capacity(16);
            if !has_error_code(vector) {
                // push imm8, sign-extended: NO_ERROR is 0xEE sign-extended.
                bytes.extend_from_slice(&[0x6A, NO_ERROR as u8]);
            }
            bytes.push(0x68);
            bytes.extend_from_slice(&vector.to_le_bytes());
            let next = base + 16 * vector + bytes.len() as u32 + 5;
            bytes.push(0xE9);
            bytes.extend_from_slice(&recorder.wrapping_sub(next).to_le_bytes());
            bytes.resize(16, 0x90);
            self.a.db(&bytes)?;
        }
        Ok(())
    }

    fn emit_recorder(&mut self) -> Asm {
        let lib = self.lib;
        let mut l = lib.recorder;
        let mut unexpected = self.label();
        let mut recover = self.label();
        let mut abort = self.label();
        self.bind(&mut l)?;
        // [esp] vector, [esp+4] error code, [esp+8] EIP, CS, EFLAGS, ESP, SS, ES, DS, FS, GS.
        self.a.pushad()?;
        // The segment registers as found go on the stack first (SS may be a segment that does
        // not reach the variables), then into the variables through a flat DS.
        let sregs = [(ds, EXC_IN_DS), (es, EXC_IN_ES), (fs, EXC_IN_FS), (gs, EXC_IN_GS), (ss, EXC_IN_SS)];
        for (sreg, _) in sregs {
            self.a.push(sreg)?;
        }
        self.a.mov(ax, u32::from(KDATA))?;
        self.a.mov(ds, ax)?;
        self.a.mov(es, ax)?;
        for (i, (_, slot)) in sregs.into_iter().rev().enumerate() {
            self.a.movzx(eax, word_ptr(esp + 4 * i as i32))?;
            self.a.mov(dword_ptr(slot), eax)?;
        }
        self.a.add(esp, 4 * sregs.len() as i32)?;
        self.a.pushfd()?;
        self.a.pop(eax)?;
        self.a.mov(dword_ptr(EXC_IN_EFLAGS), eax)?;
        self.a.xor(eax, eax)?;
        self.a.str(ax)?;
        self.a.mov(dword_ptr(EXC_IN_TR), eax)?;
        self.a.cld()?;
        self.a.lea(esi, dword_ptr(esp + 32))?;
        self.a.mov(edi, EXC_VECTOR)?;
        self.a.mov(ecx, 11)?;
        self.a.rep().movsd()?;
        self.a.mov(esi, esp)?;
        self.a.mov(edi, EXC_REGS)?;
        self.a.mov(ecx, 8)?;
        self.a.rep().movsd()?;
        self.a.lea(eax, dword_ptr(esp + 40))?;
        self.a.mov(dword_ptr(EXC_FRAME), eax)?;
        self.a.mov(eax, cr2)?;
        self.a.mov(dword_ptr(EXC_CR2), eax)?;
        self.a.inc(dword_ptr(EXC_COUNT))?;
        self.a.cmp(dword_ptr(ARMED), 0)?;
        self.a.je(unexpected)?;
        self.a.mov(dword_ptr(ARMED), 0)?;

        self.a.set_label(&mut recover)?;
        self.a.mov(ax, u32::from(KDATA))?;
        self.a.mov(ss, ax)?;
        self.a.mov(esp, dword_ptr(RECOVER_ESP))?;
        self.a.mov(fs, ax)?;
        self.a.mov(gs, ax)?;
        self.a.push(FL_1)?;
        self.a.popfd()?;
        self.a.mov(edi, dword_ptr(EXC_EDI))?;
        self.a.mov(esi, dword_ptr(EXC_ESI))?;
        self.a.mov(ebp, dword_ptr(EXC_EBP))?;
        self.a.mov(ebx, dword_ptr(EXC_EBX))?;
        self.a.mov(edx, dword_ptr(EXC_EDX))?;
        self.a.mov(ecx, dword_ptr(EXC_ECX))?;
        self.a.mov(eax, dword_ptr(EXC_EAX))?;
        self.a.jmp(fword_ptr(RESUME_AT))?;

        // Unexpected: a failed check of its own, then on to the end of the section.
        self.a.set_label(&mut unexpected)?;
        self.a.inc(dword_ptr(CHECK_COUNT))?;
        self.a.inc(dword_ptr(FAIL_COUNT))?;
        self.a.call(lib.print_inline)?;
        self.a.db(b"not ok \0")?;
        self.a.mov(eax, dword_ptr(CHECK_COUNT))?;
        self.a.call(lib.print_dec)?;
        self.a.call(lib.print_inline)?;
        self.a.db(b" - unexpected exception, vector 0x\0")?;
        self.a.mov(eax, dword_ptr(EXC_VECTOR))?;
        self.a.call(lib.print_hex)?;
        self.a.call(lib.print_inline)?;
        self.a.db(b" error code 0x\0")?;
        self.a.mov(eax, dword_ptr(EXC_ERROR))?;
        self.a.call(lib.print_hex)?;
        self.a.call(lib.print_inline)?;
        self.a.db(b" at cs:eip 0x\0")?;
        self.a.mov(eax, dword_ptr(EXC_CS))?;
        self.a.call(lib.print_hex)?;
        self.a.call(lib.print_inline)?;
        self.a.db(b":0x\0")?;
        self.a.mov(eax, dword_ptr(EXC_EIP))?;
        self.a.call(lib.print_hex)?;
        self.a.call(lib.print_inline)?;
        self.a.db(b"\n\0")?;
        self.a.cmp(dword_ptr(SECTION_ARMED), 0)?;
        self.a.je(abort)?;
        self.a.mov(dword_ptr(SECTION_ARMED), 0)?;
        self.a.mov(eax, dword_ptr(SECTION_ESP))?;
        self.a.mov(dword_ptr(RECOVER_ESP), eax)?;
        self.a.mov(eax, dword_ptr(SECTION_EIP))?;
        self.a.mov(dword_ptr(RESUME_AT), eax)?;
        self.a.jmp(recover)?;

        self.a.set_label(&mut abort)?;
        self.a.call(lib.print_inline)?;
        self.a.db(b"# aborted: unexpected exception outside any section\n\0")?;
        self.a.mov(al, 1)?;
        self.a.out(DEBUG_EXIT, al)?;
        self.halt()
    }
}

/// 16-bit code that runs in virtual-8086 mode, assembled for [`V86_CS`]:0 (linear
/// [`V86_BASE`]). Labels from [`V86Code::here`] give IPs after [`V86Code::assemble`].
pub(crate) struct V86Code {
    /// The 16-bit assembler.
    pub a: CodeAssembler,
    labels: Vec<CodeLabel>,
}

impl V86Code {
    pub fn new() -> Result<V86Code, IcedError> {
        Ok(V86Code { a: CodeAssembler::new(16)?, labels: Vec::new() })
    }

    /// Marks the current position; returns its index for [`V86Code::assemble`]'s table.
    pub fn here(&mut self) -> Result<usize, IcedError> {
        let mut label = self.a.create_label();
        self.a.set_label(&mut label)?;
        self.a.zero_bytes()?;
        self.labels.push(label);
        Ok(self.labels.len() - 1)
    }

    /// The code and the IP of every position marked with [`V86Code::here`].
    pub fn assemble(mut self) -> Result<(Vec<u8>, Vec<u16>), IcedError> {
        let result = self.a.assemble_options(0, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
        let ips = self
            .labels
            .iter()
            .map(|l| {
                result.label_ip(l).map(|ip| u16::try_from(ip).expect("virtual-8086 code fits in 64 KiB"))
            })
            .collect::<Result<Vec<u16>, IcedError>>()?;
        Ok((result.inner.code_buffer, ips))
    }
}
