//! The program builder every guest in this crate is written with: a 16-bit `CodeAssembler`
//! for the code that runs at [`MAIN_ADDR`], plus a small runtime library (console output and
//! the self-check reporter) emitted after the program body.
//!
//! Conventions shared by all guests:
//! - Everything lives in segment 0. The boot sector (see `boot.rs`) sets CS = DS = ES = SS = 0,
//!   SP = 0x7C00 and jumps to [`MAIN_ADDR`].
//! - Library routines reach their own variables and inline strings through CS overrides, so a
//!   test may change DS or ES between checks; it must keep SS:SP valid.
//! - Strings are stored inline, right after the `call` that prints or names them; the callee
//!   reads them through its return address and returns past the terminating NUL, so every
//!   string sits next to the code that uses it and needs no address.
//! - iced's `code_asm` has no label-address operands in 16-bit code, so where a program needs
//!   the address of a label (an interrupt handler, an indirect jump target) it is assembled
//!   twice: see [`build_image`] and [`Program::addr`].
//! - Output goes to the debug console (port 0xE9); self-tests end by writing 0 (all passed)
//!   or 1 (some failed) to isa-debug-exit (port 0xF4), then halt in case no such device exists.

use std::collections::HashMap;

use iced_x86::code_asm::*;
use iced_x86::BlockEncoderOptions;

use crate::boot;
use crate::Image;

/// Result of emitting code.
pub(crate) type Asm = Result<(), IcedError>;

/// Where the program body starts: right after the 512-byte boot sector at 0x7C00.
pub(crate) const MAIN_ADDR: u16 = 0x7E00;

/// Port of the debug console.
pub(crate) const DEBUGCON: u32 = 0xE9;
/// Port of isa-debug-exit.
pub(crate) const DEBUG_EXIT: u32 = 0xF4;

/// Checks run so far (word).
const CHECK_COUNT: u32 = 0x0510;
/// Checks failed so far (word).
const FAIL_COUNT: u32 = 0x0512;
/// The failing check's actual value (dword).
const GOT: u32 = 0x0514;
/// The failing check's expected value (dword).
const WANT: u32 = 0x0518;

/// First byte of the scratch memory tests may use freely (up to the stack, minus 1 KiB).
pub(crate) const SCRATCH: u32 = 0x0600;

/// EFLAGS bits, named as in the SDM (Vol. 1, 3.4.3).
pub(crate) mod flags {
    /// Carry.
    pub const CF: u32 = 1 << 0;
    /// Parity (of the low byte of the result).
    pub const PF: u32 = 1 << 2;
    /// Auxiliary carry (out of bit 3).
    pub const AF: u32 = 1 << 4;
    /// Zero.
    pub const ZF: u32 = 1 << 6;
    /// Sign.
    pub const SF: u32 = 1 << 7;
    /// Direction.
    pub const DF: u32 = 1 << 10;
    /// Overflow.
    pub const OF: u32 = 1 << 11;
    /// The six status flags of the arithmetic instructions.
    pub const ARITH: u32 = CF | PF | AF | ZF | SF | OF;
    /// The status flags the logical instructions define (AF is undefined for them).
    pub const LOGIC: u32 = CF | PF | ZF | SF | OF;
    /// The status flags a shift by more than one defines (OF and AF undefined).
    pub const SHIFT: u32 = CF | PF | ZF | SF;

    /// "CF ZF" for the bits of `mask` set in `value`, "none" if none is.
    pub fn names(mask: u32, value: u32) -> String {
        let all = [(CF, "CF"), (PF, "PF"), (AF, "AF"), (ZF, "ZF"), (SF, "SF"), (DF, "DF"), (OF, "OF")];
        let set: Vec<&str> = all.iter().filter(|(bit, _)| mask & value & bit != 0).map(|&(_, n)| n).collect();
        if set.is_empty() {
            "none".to_string()
        } else {
            set.join(" ")
        }
    }
}

/// Something a check can read: it knows how to load itself, zero-extended, into EAX.
pub(crate) trait Value: Copy {
    /// Emits the load into EAX (flags are not touched).
    fn load_eax(self, a: &mut CodeAssembler) -> Asm;
}

impl Value for AsmRegister8 {
    fn load_eax(self, a: &mut CodeAssembler) -> Asm {
        a.movzx(eax, self)
    }
}

impl Value for AsmRegister16 {
    fn load_eax(self, a: &mut CodeAssembler) -> Asm {
        a.movzx(eax, self)
    }
}

impl Value for AsmRegister32 {
    fn load_eax(self, a: &mut CodeAssembler) -> Asm {
        if self == eax {
            Ok(())
        } else {
            a.mov(eax, self)
        }
    }
}

/// A byte at an absolute offset in segment 0 (read through CS).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mem8(pub u32);
/// A word at an absolute offset in segment 0 (read through CS).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mem16(pub u32);
/// A dword at an absolute offset in segment 0 (read through CS).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mem32(pub u32);

impl Value for Mem8 {
    fn load_eax(self, a: &mut CodeAssembler) -> Asm {
        a.movzx(eax, byte_ptr(self.0).cs())
    }
}

impl Value for Mem16 {
    fn load_eax(self, a: &mut CodeAssembler) -> Asm {
        a.movzx(eax, word_ptr(self.0).cs())
    }
}

impl Value for Mem32 {
    fn load_eax(self, a: &mut CodeAssembler) -> Asm {
        a.mov(eax, dword_ptr(self.0).cs())
    }
}

/// Instructions that [`Program::print`] executes for `text` (counted from `emit_library`): the
/// CALL, 13 in `print_inline` around its call of `print_str`, 6 per character and 5 for the
/// NUL in `print_str`.
pub(crate) fn print_instructions(text: &str) -> u64 {
    19 + 6 * text.len() as u64
}

/// Instructions that [`Program::call_print_hex`] executes: the CALL, 5 before the loop, 11 per
/// digit, 4 after.
pub(crate) const PRINT_HEX_INSTRUCTIONS: u64 = 1 + 5 + 8 * 11 + 4;

/// Instructions that [`Program::halt`] executes, HLT included.
pub(crate) const HALT_INSTRUCTIONS: u64 = 2;

/// Entry points of the runtime library.
#[derive(Clone, Copy)]
struct Library {
    /// Prints the NUL-terminated string that follows the call.
    print_inline: CodeLabel,
    /// Prints the NUL-terminated string at CS:SI; returns SI past the NUL. Clobbers AL, flags.
    print_str: CodeLabel,
    /// Prints EAX in unsigned decimal. Preserves registers, clobbers flags.
    print_dec: CodeLabel,
    /// Prints EAX as 8 hex digits. Preserves registers, clobbers flags.
    print_hex: CodeLabel,
    /// EAX = actual, EDX = expected, inline NUL-terminated name: counts and prints a check.
    /// Preserves all registers and flags.
    report: CodeLabel,
}

/// A guest program under construction.
pub(crate) struct Program {
    /// The assembler; program bodies emit their own instructions through it.
    pub a: CodeAssembler,
    lib: Library,
    /// Checks emitted so far (the runtime count must match at the end).
    checks: u32,
    /// Label addresses known from the previous pass (empty in the first).
    known: HashMap<CodeLabel, u16>,
    /// Labels whose address the program used.
    wanted: Vec<CodeLabel>,
    /// Labels bound through [`Program::bind`], as bound (a `CodeLabel` copied before binding
    /// does not know its instruction).
    bound: HashMap<CodeLabel, CodeLabel>,
}

/// Assembles the program `body` emits into an image (boot sector in front, see `boot.rs`).
///
/// `body` runs twice. The first pass learns where every label used through
/// [`Program::addr`] ends up; the second emits the same instructions with the real addresses.
/// iced numbers labels in creation order, so the second pass's labels equal the first's.
pub(crate) fn build_image(
    name: &'static str,
    description: &'static str,
    body: impl Fn(&mut Program) -> Asm,
) -> Result<Image, IcedError> {
    let mut first = Program::new(HashMap::new())?;
    body(&mut first)?;
    let (_, addresses) = first.assemble()?;
    let mut second = Program::new(addresses.clone())?;
    body(&mut second)?;
    let (bytes, check) = second.assemble()?;
    assert_eq!(addresses, check, "{name}: label addresses moved between passes");
    boot::link(name, description, &bytes)
}

impl Program {
    fn new(known: HashMap<CodeLabel, u16>) -> Result<Program, IcedError> {
        let mut a = CodeAssembler::new(16)?;
        let lib = Library {
            print_inline: a.create_label(),
            print_str: a.create_label(),
            print_dec: a.create_label(),
            print_hex: a.create_label(),
            report: a.create_label(),
        };
        Ok(Program { a, lib, checks: 0, known, wanted: Vec::new(), bound: HashMap::new() })
    }

    /// The address (offset in segment 0) of `label`, which must be bound with
    /// [`Program::bind`] (before or after): 0 in the first pass, the real one in the second.
    /// Use it only where the encoding does not depend on the value (`mov r16, imm`,
    /// `mov word [m], imm`, `mov r32, imm`, far pointers), so that both passes lay out alike.
    pub fn addr(&mut self, label: CodeLabel) -> u32 {
        self.wanted.push(label);
        self.known.get(&label).map_or(0, |&ip| u32::from(ip))
    }

    /// Emits the library and assembles at [`MAIN_ADDR`]; returns the bytes and the addresses
    /// of the labels passed to [`Program::addr`].
    fn assemble(mut self) -> Result<(Vec<u8>, HashMap<CodeLabel, u16>), IcedError> {
        self.emit_library()?;
        let result = self
            .a
            .assemble_options(u64::from(MAIN_ADDR), BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
        let mut addresses = HashMap::new();
        for label in &self.wanted {
            let bound =
                self.bound.get(label).expect("labels whose address is taken are bound with Program::bind");
            let ip = result.label_ip(bound)?;
            addresses.insert(*label, u16::try_from(ip).expect("labels lie in segment 0"));
        }
        Ok((result.inner.code_buffer, addresses))
    }

    /// A fresh label (shorthand).
    pub fn label(&mut self) -> CodeLabel {
        self.a.create_label()
    }

    /// Binds `label` to the next instruction. Labels passed to [`Program::addr`] must be bound
    /// here rather than with `a.set_label`.
    pub fn bind(&mut self, label: &mut CodeLabel) -> Asm {
        self.a.set_label(label)?;
        self.bound.insert(*label, *label);
        Ok(())
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

    /// Prints EAX in decimal. Clobbers flags.
    pub fn call_print_dec(&mut self) -> Asm {
        self.a.call(self.lib.print_dec)
    }

    /// Prints EAX as 8 hex digits. Clobbers flags.
    pub fn call_print_hex(&mut self) -> Asm {
        self.a.call(self.lib.print_hex)
    }

    /// Checks that EAX equals `expected`, printing `ok N - name` or `not ok N - name (...)`.
    /// Preserves all registers and flags, so several checks can follow one operation.
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

    /// Checks the flags selected by `mask` against `expected`. Clobbers EAX, EDX.
    pub fn check_flags(&mut self, mask: u32, expected: u32, name: &str) -> Asm {
        self.a.pushfd()?;
        self.a.pop(eax)?;
        self.a.and(eax, mask)?;
        self.check_eax(expected & mask, &format!("{name} flags {}", flags::names(mask, expected)))
    }

    /// Checks the result of the operation just emitted, then its flags under `mask`: two checks.
    /// Clobbers EAX, EDX.
    pub fn check_op<V: Value>(
        &mut self,
        result: V,
        expected: u32,
        mask: u32,
        expected_flags: u32,
        name: &str,
    ) -> Asm {
        self.a.pushfd()?;
        result.load_eax(&mut self.a)?;
        self.check_eax(expected, &format!("{name} = {expected:#x}"))?;
        self.a.popfd()?;
        self.check_flags(mask, expected_flags, name)
    }

    /// Opens a self-test: zeroes the counters and prints a header.
    pub fn begin_tests(&mut self, name: &str) -> Asm {
        self.a.mov(word_ptr(CHECK_COUNT).cs(), 0)?;
        self.a.mov(word_ptr(FAIL_COUNT).cs(), 0)?;
        self.print(&format!("# bt86 self-test {name}\n"))
    }

    /// Closes a self-test: checks that every check ran, prints the TAP plan and a summary, and
    /// exits through isa-debug-exit with 0 if all passed, 1 otherwise.
    pub fn end_tests(&mut self, name: &str) -> Asm {
        let ran = self.checks;
        self.check(Mem16(CHECK_COUNT), ran, &format!("all {ran} checks above ran"))?;
        let total = self.checks;
        self.print(&format!("1..{total}\n# {name}: "))?;
        self.a.movzx(eax, word_ptr(FAIL_COUNT).cs())?;
        self.call_print_dec()?;
        self.print(&format!(" of {total} checks failed\n"))?;
        self.a.cmp(word_ptr(FAIL_COUNT).cs(), 0)?;
        self.a.setne(al)?;
        self.a.out(DEBUG_EXIT, al)?;
        self.halt()
    }

    /// CLI; HLT (and HLT again should anything wake the CPU).
    pub fn halt(&mut self) -> Asm {
        let mut stop = self.label();
        self.a.cli()?;
        self.bind(&mut stop)?;
        self.a.hlt()?;
        self.a.jmp(stop)
    }

    fn emit_library(&mut self) -> Asm {
        let lib = self.lib;
        let a = &mut self.a;

        // print_inline: the string starts at the return address.
        let mut l = lib.print_inline;
        a.set_label(&mut l)?;
        a.push(bp)?;
        a.mov(bp, sp)?;
        a.pushf()?;
        a.push(ax)?;
        a.push(si)?;
        a.mov(si, word_ptr(bp + 2))?;
        a.call(lib.print_str)?;
        a.mov(word_ptr(bp + 2), si)?;
        a.pop(si)?;
        a.pop(ax)?;
        a.popf()?;
        a.pop(bp)?;
        a.ret()?;

        // print_str: CS:SI -> console, up to the NUL.
        let mut l = lib.print_str;
        let mut done = a.create_label();
        a.set_label(&mut l)?;
        a.mov(al, byte_ptr(si).cs())?;
        a.inc(si)?;
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

        // print_hex: eight nibbles, most significant first, without branches per digit:
        // AH = (nibble < 10) ? 0 : 'a' - '0' - 10, so AL + AH + '0' is the digit.
        let mut l = lib.print_hex;
        let mut nibble = a.create_label();
        a.set_label(&mut l)?;
        a.push(eax)?;
        a.push(ecx)?;
        a.push(edx)?;
        a.mov(edx, eax)?;
        a.mov(cx, 8)?;
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
        a.loop_(nibble)?;
        a.pop(edx)?;
        a.pop(ecx)?;
        a.pop(eax)?;
        a.ret()?;

        // report: [bp+2] is the return address = the check's name.
        let mut l = lib.report;
        let mut passed = a.create_label();
        let mut newline = a.create_label();
        a.set_label(&mut l)?;
        a.push(bp)?;
        a.mov(bp, sp)?;
        a.pushfd()?;
        a.pushad()?;
        a.inc(word_ptr(CHECK_COUNT).cs())?;
        a.mov(dword_ptr(GOT).cs(), eax)?;
        a.mov(dword_ptr(WANT).cs(), edx)?;
        a.cmp(eax, edx)?;
        a.je(passed)?;
        a.inc(word_ptr(FAIL_COUNT).cs())?;
        a.call(lib.print_inline)?;
        a.db(b"not \0")?;
        a.set_label(&mut passed)?;
        a.call(lib.print_inline)?;
        a.db(b"ok \0")?;
        a.movzx(eax, word_ptr(CHECK_COUNT).cs())?;
        a.call(lib.print_dec)?;
        a.call(lib.print_inline)?;
        a.db(b" - \0")?;
        a.mov(si, word_ptr(bp + 2))?;
        a.call(lib.print_str)?;
        a.mov(word_ptr(bp + 2), si)?;
        a.mov(eax, dword_ptr(GOT).cs())?;
        a.cmp(eax, dword_ptr(WANT).cs())?;
        a.je(newline)?;
        a.call(lib.print_inline)?;
        a.db(b" (got 0x\0")?;
        a.call(lib.print_hex)?;
        a.call(lib.print_inline)?;
        a.db(b", want 0x\0")?;
        a.mov(eax, dword_ptr(WANT).cs())?;
        a.call(lib.print_hex)?;
        a.call(lib.print_inline)?;
        a.db(b")\0")?;
        a.set_label(&mut newline)?;
        a.call(lib.print_inline)?;
        a.db(b"\n\0")?;
        a.popad()?;
        a.popfd()?;
        a.pop(bp)?;
        a.ret()
    }
}
