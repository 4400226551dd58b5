//! The demo kernel's entry points and its serial console output: every character goes to
//! COM1's transmitter holding register once LSR says it is empty, with `\n` sent as CR LF
//! (the terminal at the other end is in raw mode).

use iced_x86::code_asm::*;

use crate::asm::Asm;
use crate::pc::{power, uart};
use crate::pm::rt::Program;

/// Labels of the kernel's routines and handlers, created before any code refers to them.
#[derive(Clone, Copy)]
pub(super) struct Lib {
    /// AL to the console. Preserves registers and flags.
    pub putc: CodeLabel,
    /// The NUL-terminated string after the CALL to the console. Preserves registers and flags.
    pub puts_inline: CodeLabel,
    /// EAX in decimal. Preserves registers and flags.
    pub print_dec: CodeLabel,
    /// EAX as eight hex digits. Preserves registers and flags.
    pub print_hex: CodeLabel,
    /// ECX bytes at DS:ESI. Preserves registers and flags.
    pub write_buf: CodeLabel,
    /// Moves received bytes into the ring. Clobbers EAX, EBX, EDX.
    pub rx_drain: CodeLabel,
    /// The scheduler (jumped to with a saved context at ESP).
    pub schedule: CodeLabel,
    /// Ends the current task with status EBX (jumped to with a saved context at ESP).
    pub task_exit: CodeLabel,
    /// Waits for the transmitter to drain and turns the machine off.
    pub poweroff: CodeLabel,
    /// Interrupt handlers.
    pub irq0: CodeLabel,
    pub irq4: CodeLabel,
    pub spurious_master: CodeLabel,
    pub spurious_slave: CodeLabel,
    pub syscall: CodeLabel,
    pub exception_stubs: [CodeLabel; 32],
}

impl Lib {
    pub fn new(p: &mut Program) -> Lib {
        Lib {
            putc: p.label(),
            puts_inline: p.label(),
            print_dec: p.label(),
            print_hex: p.label(),
            write_buf: p.label(),
            rx_drain: p.label(),
            schedule: p.label(),
            task_exit: p.label(),
            poweroff: p.label(),
            irq0: p.label(),
            irq4: p.label(),
            spurious_master: p.label(),
            spurious_slave: p.label(),
            syscall: p.label(),
            exception_stubs: std::array::from_fn(|_| p.label()),
        }
    }

    /// Prints `text` (ASCII) on the console.
    pub fn say(&self, p: &mut Program, text: &str) -> Asm {
        assert!(text.is_ascii() && !text.contains('\0'), "console text {text:?}");
        p.a.call(self.puts_inline)?;
        let mut bytes = text.as_bytes().to_vec();
        bytes.push(0);
        p.a.db(&bytes)
    }

    /// Emits the output routines and the power-off path.
    pub fn emit(&self, p: &mut Program) -> Asm {
        // putc, with tx: AL to THR once THRE is set (clobbers EDX).
        let mut putc = self.putc;
        let mut raw = p.label();
        let mut tx = p.label();
        let mut wait = p.label();
        p.bind(&mut putc)?;
        p.a.pushfd()?;
        p.a.push(eax)?;
        p.a.push(edx)?;
        p.a.cmp(al, u32::from(b'\n'))?;
        p.a.jne(raw)?;
        p.a.mov(al, u32::from(b'\r'))?;
        p.a.call(tx)?;
        p.a.mov(al, u32::from(b'\n'))?;
        p.bind(&mut raw)?;
        p.a.call(tx)?;
        p.a.pop(edx)?;
        p.a.pop(eax)?;
        p.a.popfd()?;
        p.a.ret()?;
        p.bind(&mut tx)?;
        p.a.push(eax)?;
        p.a.mov(dx, uart::COM1 + uart::LSR)?;
        p.bind(&mut wait)?;
        p.a.in_(al, dx)?;
        p.a.test(al, u32::from(uart::LSR_THRE))?;
        p.a.jz(wait)?;
        p.a.pop(eax)?;
        p.a.mov(dx, uart::COM1 + uart::THR)?;
        p.a.out(dx, al)?;
        p.a.ret()?;

        // puts_inline: the string starts at the return address (read through CS).
        let mut puts_inline = self.puts_inline;
        let mut next = p.label();
        let mut end = p.label();
        p.bind(&mut puts_inline)?;
        p.a.push(ebp)?;
        p.a.mov(ebp, esp)?;
        p.a.pushfd()?;
        p.a.push(eax)?;
        p.a.push(esi)?;
        p.a.mov(esi, dword_ptr(ebp + 4))?;
        p.bind(&mut next)?;
        p.a.mov(al, byte_ptr(esi).cs())?;
        p.a.inc(esi)?;
        p.a.test(al, al)?;
        p.a.jz(end)?;
        p.a.call(self.putc)?;
        p.a.jmp(next)?;
        p.bind(&mut end)?;
        p.a.mov(dword_ptr(ebp + 4), esi)?;
        p.a.pop(esi)?;
        p.a.pop(eax)?;
        p.a.popfd()?;
        p.a.pop(ebp)?;
        p.a.ret()?;

        // print_dec: divide by ten recursively, print the digits on the way back.
        let mut print_dec = self.print_dec;
        let mut digits = p.label();
        let mut last = p.label();
        p.bind(&mut print_dec)?;
        p.a.pushfd()?;
        p.a.pushad()?;
        p.a.mov(ebx, 10)?;
        p.a.call(digits)?;
        p.a.popad()?;
        p.a.popfd()?;
        p.a.ret()?;
        p.bind(&mut digits)?;
        p.a.xor(edx, edx)?;
        p.a.div(ebx)?;
        p.a.push(edx)?;
        p.a.test(eax, eax)?;
        p.a.jz(last)?;
        p.a.call(digits)?;
        p.bind(&mut last)?;
        p.a.pop(eax)?;
        p.a.add(al, i32::from(b'0'))?;
        p.a.call(self.putc)?;
        p.a.ret()?;

        // print_hex
        let mut print_hex = self.print_hex;
        let mut nibble = p.label();
        let mut decimal = p.label();
        p.bind(&mut print_hex)?;
        p.a.pushfd()?;
        p.a.pushad()?;
        p.a.mov(edx, eax)?;
        p.a.mov(ecx, 8)?;
        p.bind(&mut nibble)?;
        p.a.rol(edx, 4)?;
        p.a.mov(al, dl)?;
        p.a.and(al, 0x0F)?;
        p.a.add(al, i32::from(b'0'))?;
        p.a.cmp(al, u32::from(b'9'))?;
        p.a.jbe(decimal)?;
        p.a.add(al, i32::from(b'a' - b'9' - 1))?;
        p.bind(&mut decimal)?;
        p.a.call(self.putc)?;
        p.a.dec(ecx)?;
        p.a.jnz(nibble)?;
        p.a.popad()?;
        p.a.popfd()?;
        p.a.ret()?;

        // write_buf
        let mut write_buf = self.write_buf;
        let mut byte = p.label();
        let mut written = p.label();
        p.bind(&mut write_buf)?;
        p.a.pushfd()?;
        p.a.pushad()?;
        p.bind(&mut byte)?;
        p.a.test(ecx, ecx)?;
        p.a.jz(written)?;
        p.a.mov(al, byte_ptr(esi))?;
        p.a.call(self.putc)?;
        p.a.inc(esi)?;
        p.a.dec(ecx)?;
        p.a.jmp(byte)?;
        p.bind(&mut written)?;
        p.a.popad()?;
        p.a.popfd()?;
        p.a.ret()?;

        // poweroff: let the last line leave the UART (TEMT), then SLP_EN with SLP_TYP 0 to
        // the ACPI PM1a control register.
        let mut poweroff = self.poweroff;
        let mut drain = p.label();
        let mut stop = p.label();
        p.bind(&mut poweroff)?;
        p.a.cli()?;
        p.a.mov(dx, uart::COM1 + uart::LSR)?;
        p.bind(&mut drain)?;
        p.a.in_(al, dx)?;
        p.a.test(al, u32::from(uart::LSR_TEMT))?;
        p.a.jz(drain)?;
        p.a.mov(dx, power::PM1A_CNT)?;
        p.a.mov(ax, power::SLP_EN_S5)?;
        p.a.out(dx, ax)?;
        // A machine may take a moment to act on it (QEMU does so from its main loop): give it
        // a second of timer ticks before saying it did not work.
        let mut wait = p.label();
        p.a.mov(ecx, dword_ptr(super::V_TICKS))?;
        p.a.add(ecx, 100)?;
        p.a.sti()?;
        p.bind(&mut wait)?;
        p.a.hlt()?;
        p.a.cmp(dword_ptr(super::V_TICKS), ecx)?;
        p.a.jb(wait)?;
        p.a.cli()?;
        self.say(p, "[kernel] the power-off write to port 604h had no effect: halting\n")?;
        p.bind(&mut stop)?;
        p.a.hlt()?;
        p.a.jmp(stop)
    }
}
