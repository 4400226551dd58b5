//! Self-checking kernels for the PC's interrupt sources: the 8254 timer and the 8259A
//! interrupt controllers (`irq-timer`), the 16550A UART (`irq-uart`) and the MC146818A
//! real-time clock (`irq-rtc`). They are built on the protected-mode runtime of
//! [`crate::pm::rt`] and report the same way (TAP lines on port E9h, isa-debug-exit).
//!
//! The shared part here:
//! - the 8259A pair is remapped to vectors 20h–2Fh (ICW1–ICW4), and every IRQ line gets a
//!   handler that counts deliveries ([`IRQ_COUNT`]), records the saved EIP ([`IRQ_EIP`]), the
//!   in-service register of its 8259A as found on entry ([`IRQ_ISR`]) and the order of
//!   deliveries ([`ORDER_LOG`]), calls an optional per-line hook ([`IRQ_HOOK`]) and ends the
//!   interrupt as [`EOI_MODE`] says (non-specific EOI, specific EOI, or none);
//! - IRQ 0 at 100 Hz from counter 0 of the 8254 is the kernels' clock ([`TICKS`]); waits and
//!   polls are bounded by ticks, or by iterations where interrupts must stay off, so a device
//!   that never answers fails a check instead of hanging the kernel;
//! - checks on timing use ranges wide enough for both an emulator whose time follows the
//!   instruction count (bt86) and one that follows the host's clock (QEMU's TCG); the value
//!   measured is printed on a `#` line before the check.

mod rtc;
mod timer;
mod uart;

use iced_x86::code_asm::*;

use crate::asm::{Asm, DEBUG_EXIT};
use crate::pc::{pic, pit};
use crate::pm::rt::*;
use crate::Kernel;

/// Emits the checks of one kernel.
type Body = fn(&mut Program) -> Asm;

/// The kernels: name, description, checks.
const KERNELS: [(&str, &str, Body); 3] = [
    (
        "irq-timer",
        "8254 modes 0, 2 and 3 through counter latches, read-back and port 61h; irq 0 through the \
         8259A: masking, eoi (non-specific, specific, automatic), isr/irr reads, the poll command, \
         the sti shadow and hlt wake-up, ticks per rtc second",
        timer::run,
    ),
    (
        "irq-uart",
        "16550A in loopback: scratch, divisor latch, lsr, iir priorities, the receive interrupt on \
         irq 4, fifo trigger levels, the character timeout, overrun, modem status deltas",
        uart::run,
    ),
    (
        "irq-rtc",
        "MC146818A: status registers, update-in-progress, bcd and binary modes, the periodic, \
         update and alarm interrupts on irq 8 through the slave 8259A, register c, the nmi mask \
         bit; 8259A priorities with irq 0 and irq 8",
        rtc::run,
    ),
];

/// Every interrupt kernel, as a multiboot ELF file.
pub fn kernels() -> Vec<Kernel> {
    KERNELS
        .iter()
        .map(|&(name, description, body)| Kernel {
            name,
            description,
            elf: build_kernel(name, body).unwrap_or_else(|e| panic!("kernel {name} does not assemble: {e}")),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Variables (dwords at TEST_VARS).

/// Deliveries per IRQ line (16 dwords).
pub(crate) const IRQ_COUNT: u32 = TEST_VARS;
/// IRQ 0 deliveries: the 100 Hz clock.
pub(crate) const TICKS: u32 = IRQ_COUNT;
/// The EIP each line's last delivery saved (16 dwords).
pub(crate) const IRQ_EIP: u32 = TEST_VARS + 0x40;
/// The ISR of the line's 8259A as the handler found it (16 dwords).
pub(crate) const IRQ_ISR: u32 = TEST_VARS + 0x80;
/// A routine each line's handler calls, or 0 (16 dwords); it may clobber EAX, ECX and EDX.
pub(crate) const IRQ_HOOK: u32 = TEST_VARS + 0xC0;
/// How the handlers end an interrupt: [`EOI_NON_SPECIFIC`], [`EOI_SPECIFIC`], [`EOI_ROTATE`]
/// or [`EOI_NONE`].
pub(crate) const EOI_MODE: u32 = TEST_VARS + 0x100;
/// Next free slot of [`ORDER_LOG`].
pub(crate) const ORDER_POS: u32 = TEST_VARS + 0x104;
/// The lines delivered, in order (16 bytes; later deliveries are not logged).
pub(crate) const ORDER_LOG: u32 = TEST_VARS + 0x108;
/// Free dwords for the kernels (up to VARS + 0x1000).
pub(crate) const KVARS: u32 = TEST_VARS + 0x200;

/// [`EOI_MODE`]: a non-specific EOI (to both 8259As for slave lines).
pub(crate) const EOI_NON_SPECIFIC: u32 = 0;
/// [`EOI_MODE`]: no EOI at all.
pub(crate) const EOI_NONE: u32 = 1;
/// [`EOI_MODE`]: a specific EOI for the line's level (and for IR2 on the master).
pub(crate) const EOI_SPECIFIC: u32 = 2;
/// [`EOI_MODE`]: rotate on non-specific EOI on the master (a plain EOI to the slave first for
/// slave lines): the level just served becomes the master's lowest priority.
pub(crate) const EOI_ROTATE: u32 = 3;

/// The vector of IRQ `line` after the remap.
pub(crate) const fn vector(line: u32) -> u32 {
    if line < 8 {
        pic::MASTER_BASE + line
    } else {
        pic::SLAVE_BASE + line - 8
    }
}

/// Emits the sixteen IRQ handlers (jumped over) and points IDT vectors 20h–2Fh at them.
/// Clears the counters and hooks and sets [`EOI_MODE`] to non-specific.
pub(crate) fn install_handlers(p: &mut Program) -> Asm {
    let mut over = p.label();
    p.a.jmp(over)?;
    let mut entries = Vec::with_capacity(16);
    for line in 0..16u32 {
        let mut entry = p.label();
        entries.push(p.addr(entry));
        p.bind(&mut entry)?;
        emit_handler(p, line)?;
    }
    p.bind(&mut over)?;
    for (line, &entry) in entries.iter().enumerate() {
        p.set_idt(vector(line as u32), gate(KCODE, entry, P | INT_GATE, 0))?;
    }
    p.fill(IRQ_COUNT, KVARS - IRQ_COUNT, 0)?;
    p.a.mov(dword_ptr(EOI_MODE).ss(), EOI_NON_SPECIFIC)
}

fn emit_handler(p: &mut Program, line: u32) -> Asm {
    let slave = line >= 8;
    let (cmd, level) = if slave { (pic::SLAVE_CMD, line - 8) } else { (pic::MASTER_CMD, line) };
    let mut logged = p.label();
    let mut no_hook = p.label();
    let mut specific = p.label();
    let mut rotate = p.label();
    let mut done = p.label();
    let a = &mut p.a;
    a.push(eax)?;
    a.push(ecx)?;
    a.push(edx)?;
    a.inc(dword_ptr(IRQ_COUNT + 4 * line).ss())?;
    a.mov(eax, dword_ptr(esp + 12))?;
    a.mov(dword_ptr(IRQ_EIP + 4 * line).ss(), eax)?;
    a.mov(eax, dword_ptr(ORDER_POS).ss())?;
    a.cmp(eax, 16)?;
    a.jae(logged)?;
    a.mov(byte_ptr(eax + ORDER_LOG).ss(), line)?;
    a.inc(eax)?;
    a.mov(dword_ptr(ORDER_POS).ss(), eax)?;
    a.set_label(&mut logged)?;
    a.mov(al, u32::from(pic::OCW3_READ_ISR))?;
    a.out(cmd, al)?;
    a.in_(al, cmd)?;
    a.movzx(eax, al)?;
    a.mov(dword_ptr(IRQ_ISR + 4 * line).ss(), eax)?;
    a.mov(al, u32::from(pic::OCW3_READ_IRR))?;
    a.out(cmd, al)?;
    a.mov(eax, dword_ptr(IRQ_HOOK + 4 * line).ss())?;
    a.test(eax, eax)?;
    a.jz(no_hook)?;
    a.call(eax)?;
    a.set_label(&mut no_hook)?;
    a.mov(eax, dword_ptr(EOI_MODE).ss())?;
    a.cmp(eax, EOI_NONE)?;
    a.je(done)?;
    a.cmp(eax, EOI_SPECIFIC)?;
    a.je(specific)?;
    a.cmp(eax, EOI_ROTATE)?;
    a.je(rotate)?;
    a.mov(al, u32::from(pic::OCW2_EOI))?;
    if slave {
        a.out(pic::SLAVE_CMD, al)?;
    }
    a.out(pic::MASTER_CMD, al)?;
    a.jmp(done)?;
    a.set_label(&mut rotate)?;
    if slave {
        a.mov(al, u32::from(pic::OCW2_EOI))?;
        a.out(pic::SLAVE_CMD, al)?;
    }
    a.mov(al, u32::from(pic::OCW2_ROTATE_EOI))?;
    a.out(pic::MASTER_CMD, al)?;
    a.jmp(done)?;
    a.set_label(&mut specific)?;
    if slave {
        a.mov(al, u32::from(pic::OCW2_SPECIFIC_EOI) | level)?;
        a.out(pic::SLAVE_CMD, al)?;
        a.mov(al, u32::from(pic::OCW2_SPECIFIC_EOI) | 2)?;
        a.out(pic::MASTER_CMD, al)?;
    } else {
        a.mov(al, u32::from(pic::OCW2_SPECIFIC_EOI) | level)?;
        a.out(pic::MASTER_CMD, al)?;
    }
    a.set_label(&mut done)?;
    a.pop(edx)?;
    a.pop(ecx)?;
    a.pop(eax)?;
    a.iretd()
}

/// `out port, value` through AL.
pub(crate) fn outb(p: &mut Program, port: u32, value: u8) -> Asm {
    p.a.mov(al, u32::from(value))?;
    if port < 0x100 {
        p.a.out(port, al)
    } else {
        p.a.mov(dx, port)?;
        p.a.out(dx, al)
    }
}

/// EAX = the byte at `port` (clobbers EDX for ports above FFh).
pub(crate) fn inb(p: &mut Program, port: u32) -> Asm {
    if port < 0x100 {
        p.a.in_(al, port)?;
    } else {
        p.a.mov(dx, port)?;
        p.a.in_(al, dx)?;
    }
    p.a.movzx(eax, al)
}

/// Initialises both 8259As (ICW1–ICW4; the master's ICW4 is `master_icw4`), remapped to
/// vectors 20h and 28h, then masks every line.
pub(crate) fn init_pics(p: &mut Program, master_icw4: u8) -> Asm {
    init_pics_unmasked(p, master_icw4)?;
    set_masks(p, 0xFF, 0xFF)
}

/// The initialisation sequence alone (it leaves the IMRs cleared).
pub(crate) fn init_pics_unmasked(p: &mut Program, master_icw4: u8) -> Asm {
    outb(p, pic::MASTER_CMD, pic::ICW1_INIT_IC4)?;
    outb(p, pic::MASTER_DATA, pic::MASTER_BASE as u8)?;
    outb(p, pic::MASTER_DATA, pic::ICW3_MASTER_SLAVE_ON_IR2)?;
    outb(p, pic::MASTER_DATA, master_icw4)?;
    outb(p, pic::SLAVE_CMD, pic::ICW1_INIT_IC4)?;
    outb(p, pic::SLAVE_DATA, pic::SLAVE_BASE as u8)?;
    outb(p, pic::SLAVE_DATA, pic::ICW3_SLAVE_ID2)?;
    outb(p, pic::SLAVE_DATA, pic::ICW4_8086)
}

/// Writes both interrupt mask registers (OCW1).
pub(crate) fn set_masks(p: &mut Program, master: u8, slave: u8) -> Asm {
    outb(p, pic::MASTER_DATA, master)?;
    outb(p, pic::SLAVE_DATA, slave)
}

/// EAX = the IRR of the 8259A at `cmd` (OCW3).
pub(crate) fn read_irr(p: &mut Program, cmd: u32) -> Asm {
    outb(p, cmd, pic::OCW3_READ_IRR)?;
    inb(p, cmd)
}

/// EAX = the ISR of the 8259A at `cmd` (OCW3), leaving the IRR selected again.
pub(crate) fn read_isr(p: &mut Program, cmd: u32) -> Asm {
    outb(p, cmd, pic::OCW3_READ_ISR)?;
    inb(p, cmd)?;
    p.a.push(eax)?;
    outb(p, cmd, pic::OCW3_READ_IRR)?;
    p.a.pop(eax)
}

/// Programs counter 0 of the 8254: mode `mode`, LSB then MSB of `count`.
pub(crate) fn pit0(p: &mut Program, mode: u8, count: u32) -> Asm {
    outb(p, pit::CONTROL, pit::select(0) | pit::RW_LSB_MSB | pit::mode(mode))?;
    outb(p, pit::COUNTER0, count as u8)?;
    outb(p, pit::COUNTER0, (count >> 8) as u8)
}

/// The clock: both 8259As initialised, counter 0 in mode 2 at 100 Hz, IRQ 0 (and the
/// cascade, IR2) unmasked with non-specific EOIs, interrupts on. Then waits, by iterations, for two ticks, and bails
/// out of the whole kernel if they do not come (every later wait depends on them).
pub(crate) fn start_clock(p: &mut Program) -> Asm {
    p.a.cli()?;
    init_pics(p, pic::ICW4_8086)?;
    p.a.mov(dword_ptr(EOI_MODE).ss(), EOI_NON_SPECIFIC)?;
    pit0(p, 2, pit::COUNT_100HZ)?;
    set_masks(p, !0x05, 0xFF)?;
    p.a.sti()?;
    p.a.mov(ebx, dword_ptr(TICKS).ss())?;
    p.a.add(ebx, 2)?;
    poll(p, Bound::Iterations(POLL_ITERATIONS), |p| {
        p.a.xor(eax, eax)?;
        p.a.cmp(dword_ptr(TICKS).ss(), ebx)?;
        p.a.setae(al)
    })?;
    let mut ticking = p.label();
    p.a.test(eax, eax)?;
    p.a.jnz(ticking)?;
    p.print("Bail out! irq 0 does not tick at 100 Hz (8254 counter 0 through the 8259A)\n")?;
    p.a.mov(al, 1)?;
    p.a.out(DEBUG_EXIT, al)?;
    p.halt()?;
    p.bind(&mut ticking)
}

/// Iterations a poll with interrupts off may spin: far more than any device here needs.
pub(crate) const POLL_ITERATIONS: u32 = 20_000_000;

/// How long [`poll`] may wait.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Bound {
    /// This many clock ticks (interrupts must be on and the clock running); the condition is
    /// evaluated once per interrupt, with HLT in between, so that the wait costs no
    /// instructions.
    Ticks(u32),
    /// This many evaluations of the condition.
    Iterations(u32),
}

/// Evaluates `cond` until it leaves EAX non-zero, within `bound`; then EAX = 1, or 0 if the
/// bound ran out. `cond` may clobber EAX, ECX and EDX, and must keep EBX, ESI, EDI and EBP
/// (a tick bound keeps the deadline in ESI, an iteration bound the count in EBP).
pub(crate) fn poll(p: &mut Program, bound: Bound, mut cond: impl FnMut(&mut Program) -> Asm) -> Asm {
    let mut top = p.label();
    let mut yes = p.label();
    let mut out = p.label();
    match bound {
        Bound::Ticks(n) => {
            p.a.mov(esi, dword_ptr(TICKS).ss())?;
            p.a.add(esi, n)?;
        }
        Bound::Iterations(n) => p.a.mov(ebp, n)?,
    }
    p.bind(&mut top)?;
    cond(p)?;
    p.a.test(eax, eax)?;
    p.a.jnz(yes)?;
    match bound {
        Bound::Ticks(_) => {
            let mut expired = p.label();
            p.a.cmp(dword_ptr(TICKS).ss(), esi)?;
            p.a.jae(expired)?;
            p.a.hlt()?;
            p.a.jmp(top)?;
            p.bind(&mut expired)?;
        }
        Bound::Iterations(_) => {
            p.a.dec(ebp)?;
            p.a.jnz(top)?;
        }
    }
    p.a.xor(eax, eax)?;
    p.a.jmp(out)?;
    p.bind(&mut yes)?;
    p.a.mov(eax, 1)?;
    p.bind(&mut out)
}

/// Waits (HLT) until `n` more clock ticks have passed. Interrupts must be on. Clobbers EAX.
pub(crate) fn wait_ticks(p: &mut Program, n: u32) -> Asm {
    let mut top = p.label();
    p.a.push(esi)?;
    p.a.mov(esi, dword_ptr(TICKS).ss())?;
    p.a.add(esi, n)?;
    p.bind(&mut top)?;
    p.a.hlt()?;
    p.a.cmp(dword_ptr(TICKS).ss(), esi)?;
    p.a.jb(top)?;
    p.a.pop(esi)
}

/// Prints `# name: EAX` and checks `lo <= EAX <= hi` (unsigned). Clobbers EAX, EDX.
pub(crate) fn check_between(p: &mut Program, lo: u32, hi: u32, name: &str) -> Asm {
    p.print(&format!("# {name}: "))?;
    p.call_print_dec()?;
    p.print(&format!(" (want {lo} to {hi})\n"))?;
    p.a.sub(eax, lo)?;
    p.a.cmp(eax, hi - lo)?;
    p.a.setbe(al)?;
    p.a.movzx(eax, al)?;
    p.check_eax(1, name)
}

/// EAX = the dword at `var` (through SS) minus `base` (a register).
pub(crate) fn delta(p: &mut Program, var: u32, base: AsmRegister32) -> Asm {
    p.a.mov(eax, dword_ptr(var).ss())?;
    p.a.sub(eax, base)
}
