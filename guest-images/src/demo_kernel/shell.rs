//! The demo kernel's shell: a line editor on COM1 (echo, backspace, CR or LF or CR LF to end a
//! line) and five commands. It takes bytes from the ring the IRQ 4 handler fills, and sleeps
//! (STI; HLT) while the ring is empty; after 60 seconds of timer ticks without a byte it
//! powers the machine off, so that a run with no input ends by itself.

use iced_x86::code_asm::*;

use super::console::Lib;
use super::*;

/// The line being edited.
const LINE_BUF: u32 = KVARS + 0x600;
/// Longest line.
const LINE_MAX: u32 = 78;
/// Bytes in [`LINE_BUF`].
const V_LINE_LEN: u32 = KVARS + 0x40;
/// The last byte was a CR (so an LF right after it ends nothing).
const V_PREV_CR: u32 = KVARS + 0x44;
/// Tick of the last byte received.
const V_LAST_INPUT: u32 = KVARS + 0x48;
/// Ticks without input after which the shell powers off: 60 s at 100 Hz.
const IDLE_TICKS: u32 = 6000;

/// Emits a command's code, run with ESI, ECX = the command line; it ends with a RET emitted
/// after it.
type Command = fn(&mut Program, &Lib) -> Asm;

/// The shell; never returns.
pub(super) fn run(p: &mut Program, lib: &Lib) -> Asm {
    let execute = p.label();
    let match_word = p.label();
    let mut prompt = p.label();
    let mut getc = p.label();
    let mut have = p.label();
    let mut backspace = p.label();
    let mut lf = p.label();
    let mut cr = p.label();
    let mut enter = p.label();
    let mut idle_out = p.label();

    lib.say(p, "\nbt86 shell on COM1. Commands: help, echo TEXT, ticks, tasks, poweroff\n")?;
    lib.say(p, "(after 60 seconds without input it powers the machine off)\n")?;
    p.a.mov(eax, dword_ptr(V_TICKS))?;
    p.a.mov(dword_ptr(V_LAST_INPUT), eax)?;
    p.bind(&mut prompt)?;
    lib.say(p, "bt86> ")?;
    p.a.mov(dword_ptr(V_LINE_LEN), 0)?;

    p.bind(&mut getc)?;
    p.a.cli()?;
    p.a.mov(eax, dword_ptr(V_RX_TAIL))?;
    p.a.cmp(eax, dword_ptr(V_RX_HEAD))?;
    p.a.jne(have)?;
    p.a.mov(eax, dword_ptr(V_TICKS))?;
    p.a.sub(eax, dword_ptr(V_LAST_INPUT))?;
    p.a.cmp(eax, IDLE_TICKS)?;
    p.a.jae(idle_out)?;
    p.a.sti()?;
    p.a.hlt()?;
    p.a.jmp(getc)?;

    p.bind(&mut have)?;
    p.a.and(eax, RX_SIZE - 1)?;
    p.a.movzx(eax, byte_ptr(eax + RX_BUF))?;
    p.a.inc(dword_ptr(V_RX_TAIL))?;
    p.a.sti()?;
    p.a.mov(edx, dword_ptr(V_TICKS))?;
    p.a.mov(dword_ptr(V_LAST_INPUT), edx)?;
    p.a.cmp(al, 13)?;
    p.a.je(cr)?;
    p.a.cmp(al, 10)?;
    p.a.je(lf)?;
    p.a.mov(dword_ptr(V_PREV_CR), 0)?;
    p.a.cmp(al, 8)?;
    p.a.je(backspace)?;
    p.a.cmp(al, 127)?;
    p.a.je(backspace)?;
    p.a.cmp(al, u32::from(b' '))?;
    p.a.jb(getc)?;
    p.a.cmp(al, u32::from(b'~'))?;
    p.a.ja(getc)?;
    p.a.mov(ecx, dword_ptr(V_LINE_LEN))?;
    p.a.cmp(ecx, LINE_MAX)?;
    p.a.jae(getc)?;
    p.a.mov(byte_ptr(ecx + LINE_BUF), al)?;
    p.a.inc(dword_ptr(V_LINE_LEN))?;
    p.a.call(lib.putc)?;
    p.a.jmp(getc)?;

    p.bind(&mut backspace)?;
    p.a.cmp(dword_ptr(V_LINE_LEN), 0)?;
    p.a.je(getc)?;
    p.a.dec(dword_ptr(V_LINE_LEN))?;
    lib.say(p, "\x08 \x08")?;
    p.a.jmp(getc)?;

    p.bind(&mut lf)?;
    p.a.cmp(dword_ptr(V_PREV_CR), 0)?;
    p.a.mov(dword_ptr(V_PREV_CR), 0)?;
    p.a.jne(getc)?;
    p.a.jmp(enter)?;
    p.bind(&mut cr)?;
    p.a.mov(dword_ptr(V_PREV_CR), 1)?;
    p.bind(&mut enter)?;
    lib.say(p, "\n")?;
    p.a.call(execute)?;
    p.a.jmp(prompt)?;

    p.bind(&mut idle_out)?;
    p.a.sti()?;
    lib.say(p, "\n[shell] no input for 60 seconds: powering off\n")?;
    p.a.jmp(lib.poweroff)?;

    emit_execute(p, lib, execute, match_word)?;
    emit_match_word(p, match_word)
}

/// execute: runs the command in [`LINE_BUF`].
fn emit_execute(p: &mut Program, lib: &Lib, mut execute: CodeLabel, match_word: CodeLabel) -> Asm {
    let mut leading = p.label();
    let mut trailing = p.label();
    let mut parsed = p.label();
    let mut empty = p.label();
    p.bind(&mut execute)?;
    p.a.mov(esi, LINE_BUF)?;
    p.a.mov(ecx, dword_ptr(V_LINE_LEN))?;
    p.bind(&mut leading)?;
    p.a.test(ecx, ecx)?;
    p.a.jz(empty)?;
    p.a.cmp(byte_ptr(esi), u32::from(b' '))?;
    p.a.jne(trailing)?;
    p.a.inc(esi)?;
    p.a.dec(ecx)?;
    p.a.jmp(leading)?;
    p.bind(&mut trailing)?;
    p.a.cmp(byte_ptr(esi + ecx - 1), u32::from(b' '))?;
    p.a.jne(parsed)?;
    p.a.dec(ecx)?;
    p.a.jmp(trailing)?;
    p.bind(&mut parsed)?;

    // ESI, ECX: the command line without surrounding spaces (at least one character).
    let commands: [(&str, Command); 5] =
        [("help", help), ("echo", echo), ("ticks", ticks), ("tasks", tasks), ("poweroff", poweroff)];
    for (word, handler) in commands {
        let mut next = p.label();
        let mut text = word.as_bytes().to_vec();
        text.push(0);
        let blob = p.blob(text);
        let at = p.addr(blob);
        p.a.mov(edi, at)?;
        p.a.call(match_word)?;
        p.a.jne(next)?;
        handler(p, lib)?;
        p.a.ret()?;
        p.bind(&mut next)?;
    }
    lib.say(p, "unknown command: ")?;
    p.a.call(lib.write_buf)?;
    lib.say(p, " (type help)\n")?;
    p.bind(&mut empty)?;
    p.a.ret()
}

/// match_word: ZF = 1 if the first word of the ECX bytes at ESI is the NUL-terminated word at
/// EDI. Preserves the registers.
fn emit_match_word(p: &mut Program, mut match_word: CodeLabel) -> Asm {
    let mut next = p.label();
    let mut word_end = p.label();
    let mut yes = p.label();
    let mut no = p.label();
    let mut out = p.label();
    p.bind(&mut match_word)?;
    p.a.push(ebx)?;
    p.a.push(edx)?;
    p.a.xor(ebx, ebx)?;
    p.bind(&mut next)?;
    p.a.mov(dl, byte_ptr(edi + ebx))?;
    p.a.test(dl, dl)?;
    p.a.jz(word_end)?;
    p.a.cmp(ebx, ecx)?;
    p.a.jae(no)?;
    p.a.cmp(dl, byte_ptr(esi + ebx))?;
    p.a.jne(no)?;
    p.a.inc(ebx)?;
    p.a.jmp(next)?;
    p.bind(&mut word_end)?;
    p.a.cmp(ebx, ecx)?;
    p.a.je(yes)?;
    p.a.cmp(byte_ptr(esi + ebx), u32::from(b' '))?;
    p.a.je(yes)?;
    p.bind(&mut no)?;
    p.a.test(esp, esp)?;
    p.a.jmp(out)?;
    p.bind(&mut yes)?;
    p.a.cmp(ebx, ebx)?;
    p.bind(&mut out)?;
    p.a.pop(edx)?;
    p.a.pop(ebx)?;
    p.a.ret()
}

fn help(p: &mut Program, lib: &Lib) -> Asm {
    lib.say(
        p,
        "  help       this list\n\
         \x20 echo TEXT  print TEXT\n\
         \x20 ticks      timer ticks since boot (IRQ 0, 100 per second)\n\
         \x20 tasks      the kernel and its ring-3 tasks\n\
         \x20 poweroff   turn the machine off (ACPI PM1a control register, port 604h)\n",
    )
}

fn echo(p: &mut Program, lib: &Lib) -> Asm {
    let mut bare = p.label();
    p.a.sub(ecx, 5)?;
    p.a.jbe(bare)?;
    p.a.add(esi, 5)?;
    p.a.call(lib.write_buf)?;
    p.bind(&mut bare)?;
    lib.say(p, "\n")
}

fn ticks(p: &mut Program, lib: &Lib) -> Asm {
    let mut two_digits = p.label();
    lib.say(p, "ticks: ")?;
    p.a.mov(eax, dword_ptr(V_TICKS))?;
    p.a.call(lib.print_dec)?;
    lib.say(p, " since boot (")?;
    p.a.xor(edx, edx)?;
    p.a.mov(ecx, 100)?;
    p.a.div(ecx)?;
    p.a.call(lib.print_dec)?;
    lib.say(p, ".")?;
    p.a.cmp(edx, 10)?;
    p.a.jae(two_digits)?;
    lib.say(p, "0")?;
    p.bind(&mut two_digits)?;
    p.a.mov(eax, edx)?;
    p.a.call(lib.print_dec)?;
    lib.say(p, " s at 100 Hz)\n")
}

fn tasks(p: &mut Program, lib: &Lib) -> Asm {
    lib.say(p, "kernel: running, ")?;
    p.a.mov(eax, dword_ptr(slot(0) + T_TICKS))?;
    p.a.call(lib.print_dec)?;
    lib.say(p, " ticks on the cpu, page directory 0x")?;
    p.a.mov(eax, KPD)?;
    p.a.call(lib.print_hex)?;
    lib.say(p, "\n")?;
    for (i, &(name, _, _)) in TASKS.iter().enumerate() {
        let s = slot(i as u32 + 1);
        let mut running = p.label();
        let mut state_done = p.label();
        lib.say(p, &format!("task {}: ", char::from(name)))?;
        p.a.cmp(dword_ptr(s + T_STATE), EXITED)?;
        p.a.jne(running)?;
        lib.say(p, "exited (status ")?;
        p.a.mov(eax, dword_ptr(s + T_EXIT))?;
        p.a.call(lib.print_dec)?;
        lib.say(p, ")")?;
        p.a.jmp(state_done)?;
        p.bind(&mut running)?;
        lib.say(p, "runnable")?;
        p.bind(&mut state_done)?;
        lib.say(p, ", ")?;
        p.a.mov(eax, dword_ptr(s + T_WRITES))?;
        p.a.call(lib.print_dec)?;
        lib.say(p, " writes, ")?;
        p.a.mov(eax, dword_ptr(s + T_TICKS))?;
        p.a.call(lib.print_dec)?;
        lib.say(p, &format!(" ticks on the cpu, page directory {:#010x}\n", task_pd(i as u32)))?;
    }
    lib.say(p, "context switches: ")?;
    p.a.mov(eax, dword_ptr(V_SWITCHES))?;
    p.a.call(lib.print_dec)?;
    lib.say(p, ", system calls: ")?;
    p.a.mov(eax, dword_ptr(V_SYSCALLS))?;
    p.a.call(lib.print_dec)?;
    lib.say(p, "\n")
}

fn poweroff(p: &mut Program, lib: &Lib) -> Asm {
    lib.say(p, "powering off\n")?;
    p.a.jmp(lib.poweroff)
}
