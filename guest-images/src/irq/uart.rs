//! Kernel "irq-uart": the 16550A UART at COM1 (3F8h, IRQ 4), in local loopback mode, so
//! that it needs nothing on the other end (National Semiconductor PC16550D datasheet,
//! section 8, "Registers", and 8.6, loopback).
//!
//! Points the datasheet settles:
//! - With DLAB (LCR bit 7) set, offsets 0 and 1 are the divisor latch; with DLAB clear they
//!   are RBR/THR and IER. IER bits 7:4 are always 0.
//! - In loopback (MCR bit 4) the transmitter's output goes straight to the receiver, and the
//!   modem inputs follow the modem outputs: CTS = RTS, DSR = DTR, RI = OUT1, DCD = OUT2; the
//!   delta bits (DCTS, DDSR, TERI on RI's trailing edge, DDCD) and the modem-status interrupt
//!   work as with real inputs; the receive and transmit interrupts are "fully operational".
//!   (On a PC the OUT2 *pin* also gates the IRQ line onto the bus; MCR = 18h sets OUT2, as the
//!   kernel would outside loopback.)
//! - IIR priorities, highest first: receiver line status (06h: overrun, parity, framing,
//!   break; cleared by reading LSR), received data available (04h; cleared when the FIFO drops
//!   below the trigger level, or by reading RBR), character timeout (0Ch, FIFO mode: data below
//!   the trigger level, nothing received or read for four character times; cleared by reading
//!   RBR), THR empty (02h; cleared by reading IIR when it is the source, or by writing THR),
//!   modem status (00h; cleared by reading MSR). Bit 0 = 1: none pending. Bits 7:6 are set
//!   with the FIFOs enabled.
//! - Without FIFOs, a byte received before RBR was read overruns (LSR OE) and replaces it;
//!   with FIFOs, the 17th byte is lost and OE set. Reading LSR clears OE.
//!
//! The divisor is 12 (9600 baud): a character takes about 1 ms, the timeout about 4 ms.

use iced_x86::code_asm::*;

use super::*;
use crate::asm::Mem32;
use crate::pc::{pic, uart};

/// What the IRQ 4 hook saw: IIR on entry.
const HOOK_IIR: u32 = KVARS;
/// The last byte it read.
const HOOK_BYTE: u32 = KVARS + 4;
/// How many bytes it read.
const HOOK_BYTES: u32 = KVARS + 8;
/// Every LSR bit [`wait_lsr`] saw (reading LSR clears OE, so polls collect what they read).
const LSR_SEEN: u32 = KVARS + 12;

/// The port of COM1's register `reg`.
const fn port(reg: u32) -> u32 {
    uart::COM1 + reg
}

pub(super) fn run(p: &mut Program) -> Asm {
    install_handlers(p)?;
    install_hook(p)?;
    p.section("registers", registers)?;
    p.section("loopback", loopback)?;
    p.section("interrupt identification", identification)?;
    p.section("irq 4 through the 8259a", irq4)?;
    p.section("fifo trigger levels", trigger_levels)?;
    p.section("character timeout and fifo overrun", timeout_and_overrun)?;
    p.section("modem status in loopback", modem_status)
}

/// Emits the IRQ 4 hook: records IIR, then reads RBR while LSR says data is ready.
fn install_hook(p: &mut Program) -> Asm {
    let mut hook = p.label();
    let mut over = p.label();
    let mut more = p.label();
    let mut done = p.label();
    let hook_addr = p.addr(hook);
    p.a.jmp(over)?;
    p.bind(&mut hook)?;
    inb(p, port(uart::IIR))?;
    p.a.mov(dword_ptr(HOOK_IIR).ss(), eax)?;
    p.bind(&mut more)?;
    inb(p, port(uart::LSR))?;
    p.a.test(al, u32::from(uart::LSR_DR))?;
    p.a.jz(done)?;
    inb(p, port(uart::RBR))?;
    p.a.mov(dword_ptr(HOOK_BYTE).ss(), eax)?;
    p.a.inc(dword_ptr(HOOK_BYTES).ss())?;
    p.a.jmp(more)?;
    p.bind(&mut done)?;
    p.a.ret()?;
    p.bind(&mut over)?;
    p.a.mov(dword_ptr(IRQ_HOOK + 4 * uart::COM1_IRQ).ss(), hook_addr)
}

/// Clears what the hook recorded.
fn reset_hook(p: &mut Program) -> Asm {
    p.a.mov(dword_ptr(HOOK_IIR).ss(), 0xFFFF_FFFFu32)?;
    p.a.mov(dword_ptr(HOOK_BYTE).ss(), 0xFFFF_FFFFu32)?;
    p.a.mov(dword_ptr(HOOK_BYTES).ss(), 0)
}

fn out_reg(p: &mut Program, reg: u32, value: u8) -> Asm {
    outb(p, port(reg), value)
}

fn in_reg(p: &mut Program, reg: u32) -> Asm {
    inb(p, port(reg))
}

/// Reads RBR while data is ready (at most 64 bytes), then LSR, IIR and MSR, clearing what
/// is pending.
fn drain(p: &mut Program) -> Asm {
    let mut more = p.label();
    let mut done = p.label();
    p.a.push(ecx)?;
    p.a.mov(ecx, 64)?;
    p.bind(&mut more)?;
    in_reg(p, uart::LSR)?;
    p.a.test(al, u32::from(uart::LSR_DR))?;
    p.a.jz(done)?;
    in_reg(p, uart::RBR)?;
    p.a.dec(ecx)?;
    p.a.jnz(more)?;
    p.bind(&mut done)?;
    p.a.pop(ecx)?;
    in_reg(p, uart::LSR)?;
    in_reg(p, uart::IIR)?;
    in_reg(p, uart::MSR)
}

/// Interrupts off, 9600 8N1, FIFOs off, IER 0, loopback with OUT2, nothing pending.
fn loopback_setup(p: &mut Program) -> Asm {
    p.a.cli()?;
    out_reg(p, uart::IER, 0)?;
    out_reg(p, uart::LCR, uart::LCR_DLAB | uart::LCR_8N1)?;
    out_reg(p, uart::DLL, 12)?;
    out_reg(p, uart::DLM, 0)?;
    out_reg(p, uart::LCR, uart::LCR_8N1)?;
    out_reg(p, uart::FCR, 0)?;
    out_reg(p, uart::MCR, uart::MCR_LOOP | uart::MCR_OUT2)?;
    drain(p)
}

/// Polls until LSR has all of `bits`; EAX = 1 if it did within the bound. ORs every value
/// read into [`LSR_SEEN`].
fn wait_lsr(p: &mut Program, bits: u8) -> Asm {
    poll(p, Bound::Iterations(POLL_ITERATIONS), |p| {
        in_reg(p, uart::LSR)?;
        p.a.or(dword_ptr(LSR_SEEN).ss(), eax)?;
        p.a.and(eax, u32::from(bits))?;
        p.a.cmp(eax, u32::from(bits))?;
        p.a.sete(al)?;
        p.a.movzx(eax, al)
    })
}

/// Transmits `byte` and waits until the transmitter is empty (in loopback: the byte has
/// been received).
fn send(p: &mut Program, byte: u8) -> Asm {
    out_reg(p, uart::THR, byte)?;
    wait_lsr(p, uart::LSR_TEMT)
}

/// Transmits `count` bytes 0, 1, 2, … (waiting for each to leave the transmitter).
fn send_bytes(p: &mut Program, count: u32) -> Asm {
    if count == 0 {
        return Ok(());
    }
    let mut top = p.label();
    p.a.push(edi)?;
    p.a.xor(edi, edi)?;
    p.bind(&mut top)?;
    p.a.mov(eax, edi)?;
    p.a.mov(dx, port(uart::THR))?;
    p.a.out(dx, al)?;
    wait_lsr(p, uart::LSR_TEMT)?;
    p.a.inc(edi)?;
    p.a.cmp(edi, count)?;
    p.a.jb(top)?;
    p.a.pop(edi)
}

fn registers(p: &mut Program) -> Asm {
    p.a.cli()?;
    out_reg(p, uart::LCR, uart::LCR_8N1)?;
    out_reg(p, uart::IER, 0)?;
    out_reg(p, uart::FCR, 0)?;
    out_reg(p, uart::MCR, 0)?;
    for value in [0x5A, 0xA5] {
        out_reg(p, uart::SCR, value)?;
        in_reg(p, uart::SCR)?;
        p.check_eax(u32::from(value), &format!("scratch register holds {value:02x}h"))?;
    }
    out_reg(p, uart::LCR, uart::LCR_DLAB | uart::LCR_8N1)?;
    in_reg(p, uart::LCR)?;
    p.check_eax(u32::from(uart::LCR_DLAB | uart::LCR_8N1), "lcr reads back 83h (dlab, 8n1)")?;
    out_reg(p, uart::DLL, 0x0C)?;
    out_reg(p, uart::DLM, 0x02)?;
    in_reg(p, uart::DLL)?;
    p.check_eax(0x0C, "dlab: the divisor latch low byte reads back")?;
    in_reg(p, uart::DLM)?;
    p.check_eax(0x02, "dlab: the divisor latch high byte reads back")?;
    out_reg(p, uart::LCR, uart::LCR_8N1)?;
    in_reg(p, uart::IER)?;
    p.check_eax(0, "dlab clear: offset 1 is the ier again")?;
    out_reg(p, uart::LCR, uart::LCR_DLAB | uart::LCR_8N1)?;
    in_reg(p, uart::DLM)?;
    p.check_eax(0x02, "dlab set again: the divisor kept its value")?;
    out_reg(p, uart::DLM, 0)?;
    out_reg(p, uart::LCR, 0x1B)?;
    in_reg(p, uart::LCR)?;
    p.check_eax(0x1B, "lcr reads back 1bh (8 bits, even parity)")?;
    out_reg(p, uart::LCR, uart::LCR_8N1)?;
    out_reg(p, uart::IER, 0xFF)?;
    in_reg(p, uart::IER)?;
    p.check_eax(0x0F, "ier bits 7:4 read as 0")?;
    out_reg(p, uart::IER, 0)?;
    in_reg(p, uart::IIR)?;
    p.check_eax(u32::from(uart::IIR_NONE), "iir with nothing pending, fifos off: 01h")?;
    out_reg(p, uart::FCR, uart::FCR_ENABLE)?;
    in_reg(p, uart::IIR)?;
    p.check_eax(u32::from(uart::IIR_FIFOS | uart::IIR_NONE), "iir with the fifos enabled: c1h")?;
    out_reg(p, uart::FCR, 0)?;
    in_reg(p, uart::IIR)?;
    p.check_eax(u32::from(uart::IIR_NONE), "iir with the fifos disabled again: 01h")?;
    in_reg(p, uart::LSR)?;
    p.a.and(eax, u32::from(uart::LSR_THRE | uart::LSR_TEMT))?;
    p.check_eax(u32::from(uart::LSR_THRE | uart::LSR_TEMT), "lsr: transmitter idle (thre and temt)")
}

fn loopback(p: &mut Program) -> Asm {
    loopback_setup(p)?;
    in_reg(p, uart::MCR)?;
    p.check_eax(u32::from(uart::MCR_LOOP | uart::MCR_OUT2), "mcr reads back 18h (loopback, out2)")?;
    out_reg(p, uart::THR, 0x55)?;
    wait_lsr(p, uart::LSR_DR)?;
    p.check_eax(1, "loopback: the byte sent arrives (lsr dr)")?;
    wait_lsr(p, uart::LSR_THRE | uart::LSR_TEMT)?;
    p.check_eax(1, "loopback: then thre and temt are set")?;
    in_reg(p, uart::RBR)?;
    p.check_eax(0x55, "loopback: rbr holds the byte sent")?;
    in_reg(p, uart::LSR)?;
    p.a.and(eax, u32::from(uart::LSR_DR))?;
    p.check_eax(0, "reading rbr clears dr")?;
    send(p, 0x11)?;
    p.a.mov(dword_ptr(LSR_SEEN).ss(), 0)?;
    send(p, 0x22)?;
    in_reg(p, uart::LSR)?;
    p.a.or(eax, dword_ptr(LSR_SEEN).ss())?;
    p.a.and(eax, u32::from(uart::LSR_DR | uart::LSR_OE))?;
    p.check_eax(u32::from(uart::LSR_DR | uart::LSR_OE), "a second byte before rbr was read: overrun (oe)")?;
    in_reg(p, uart::LSR)?;
    p.a.and(eax, u32::from(uart::LSR_OE))?;
    p.check_eax(0, "reading lsr cleared oe")?;
    in_reg(p, uart::RBR)?;
    p.check_eax(0x22, "after the overrun rbr holds the newer byte")
}

fn identification(p: &mut Program) -> Asm {
    loopback_setup(p)?;
    out_reg(p, uart::IER, uart::IER_ETBEI)?;
    in_reg(p, uart::IIR)?;
    p.check_eax(u32::from(uart::IIR_THRE), "enabling the thre interrupt with thr empty: iir 02h")?;
    in_reg(p, uart::IIR)?;
    p.check_eax(u32::from(uart::IIR_NONE), "reading iir cleared the thre interrupt")?;
    out_reg(p, uart::IER, uart::IER_ERBFI | uart::IER_ETBEI)?;
    send(p, 0x61)?;
    in_reg(p, uart::IIR)?;
    p.check_eax(u32::from(uart::IIR_RDA), "received data outranks thr empty: iir 04h")?;
    in_reg(p, uart::RBR)?;
    p.check_eax(0x61, "rbr holds the byte")?;
    in_reg(p, uart::IIR)?;
    p.check_eax(u32::from(uart::IIR_THRE), "with rbr read, thr empty shows: iir 02h")?;
    in_reg(p, uart::IIR)?;
    p.check_eax(u32::from(uart::IIR_NONE), "and reading iir cleared it")?;

    out_reg(p, uart::IER, uart::IER_ERBFI | uart::IER_ELSI)?;
    send(p, 0x01)?;
    // Reading LSR would clear the overrun: watch IIR instead.
    out_reg(p, uart::THR, 0x02)?;
    poll(p, Bound::Iterations(POLL_ITERATIONS), |p| {
        in_reg(p, uart::IIR)?;
        p.a.cmp(eax, u32::from(uart::IIR_RLS))?;
        p.a.sete(al)?;
        p.a.movzx(eax, al)
    })?;
    p.check_eax(1, "an overrun outranks received data: iir 06h")?;
    in_reg(p, uart::LSR)?;
    in_reg(p, uart::IIR)?;
    p.check_eax(u32::from(uart::IIR_RDA), "reading lsr ends the line status interrupt: iir 04h")?;
    in_reg(p, uart::RBR)?;
    in_reg(p, uart::IIR)?;
    p.check_eax(u32::from(uart::IIR_NONE), "reading rbr ends the data interrupt: iir 01h")?;

    out_reg(p, uart::IER, uart::IER_EDSSI)?;
    in_reg(p, uart::MSR)?;
    out_reg(p, uart::MCR, uart::MCR_LOOP | uart::MCR_OUT2 | uart::MCR_RTS)?;
    in_reg(p, uart::IIR)?;
    p.check_eax(u32::from(uart::IIR_MS), "rts looped back to cts: modem status interrupt, iir 00h")?;
    in_reg(p, uart::MSR)?;
    p.check_eax(
        u32::from(uart::MSR_DCD | uart::MSR_CTS | uart::MSR_DCTS),
        "msr: dcd and cts set, delta cts",
    )?;
    in_reg(p, uart::IIR)?;
    p.check_eax(u32::from(uart::IIR_NONE), "reading msr ends the modem status interrupt")?;
    out_reg(p, uart::IER, 0)
}

fn irq4(p: &mut Program) -> Asm {
    loopback_setup(p)?;
    irq_on(p)?;
    out_reg(p, uart::IER, uart::IER_ERBFI)?;
    p.a.mov(ebx, dword_ptr(IRQ_COUNT + 4 * uart::COM1_IRQ).ss())?;
    p.a.sti()?;
    out_reg(p, uart::THR, 0x7E)?;
    irq4_after(p, 1, POLL_ITERATIONS)?;
    p.a.cli()?;
    p.check_eax(1, "the byte received raises irq 4 (vector 24h)")?;
    p.check(Mem32(HOOK_IIR), u32::from(uart::IIR_RDA), "the handler found iir 04h")?;
    p.check(Mem32(HOOK_BYTE), 0x7E, "the handler read the byte")?;
    in_reg(p, uart::IIR)?;
    p.check_eax(u32::from(uart::IIR_NONE), "nothing pending once the handler read rbr")?;

    out_reg(p, uart::IER, 0)?;
    p.a.mov(ebx, dword_ptr(IRQ_COUNT + 4 * uart::COM1_IRQ).ss())?;
    p.a.sti()?;
    send(p, 0x33)?;
    irq4_after(p, 1, 10_000)?;
    p.a.cli()?;
    p.check_eax(0, "with erbfi clear a received byte raises no interrupt")?;
    p.a.sti()?;
    out_reg(p, uart::IER, uart::IER_ERBFI)?;
    irq4_after(p, 1, POLL_ITERATIONS)?;
    p.a.cli()?;
    p.check_eax(1, "setting erbfi with data waiting raises irq 4")?;
    p.check(Mem32(HOOK_BYTE), 0x33, "the handler read the waiting byte")?;

    outb(p, pic::MASTER_DATA, 0xFF)?;
    p.a.mov(ebx, dword_ptr(IRQ_COUNT + 4 * uart::COM1_IRQ).ss())?;
    p.a.sti()?;
    send(p, 0x44)?;
    irq4_after(p, 1, 10_000)?;
    p.check_eax(0, "irq 4 masked at the 8259a: no delivery")?;
    p.a.cli()?;
    read_irr(p, pic::MASTER_CMD)?;
    p.a.and(eax, 1 << uart::COM1_IRQ)?;
    p.check_eax(1 << uart::COM1_IRQ, "the request waits in irr bit 4")?;
    outb(p, pic::MASTER_DATA, !(1u8 << uart::COM1_IRQ))?;
    p.a.sti()?;
    irq4_after(p, 1, POLL_ITERATIONS)?;
    p.a.cli()?;
    p.check_eax(1, "unmasking irq 4 delivers it")?;
    p.check(Mem32(HOOK_BYTE), 0x44, "the handler read the byte")?;
    irq_off(p)
}

/// Both 8259As initialised with only IRQ 4 unmasked, non-specific EOIs, the hook reset.
fn irq_on(p: &mut Program) -> Asm {
    init_pics(p, pic::ICW4_8086)?;
    p.a.mov(dword_ptr(EOI_MODE).ss(), EOI_NON_SPECIFIC)?;
    reset_hook(p)?;
    outb(p, pic::MASTER_DATA, !(1u8 << uart::COM1_IRQ))
}

/// Interrupts off, IER 0, IRQ 4 masked.
fn irq_off(p: &mut Program) -> Asm {
    p.a.cli()?;
    out_reg(p, uart::IER, 0)?;
    outb(p, pic::MASTER_DATA, 0xFF)
}

/// Polls (interrupts on) until IRQ 4 has come `n` more times than EBX says; EAX = 1 if so.
fn irq4_after(p: &mut Program, n: u32, iterations: u32) -> Asm {
    poll(p, Bound::Iterations(iterations), |p| {
        delta(p, IRQ_COUNT + 4 * uart::COM1_IRQ, ebx)?;
        p.a.cmp(eax, n)?;
        p.a.setae(al)?;
        p.a.movzx(eax, al)
    })
}

/// FIFOs enabled and cleared with the receiver trigger level `level`.
fn fifos(p: &mut Program, level: u8) -> Asm {
    out_reg(
        p,
        uart::FCR,
        uart::FCR_ENABLE | uart::FCR_CLEAR_RX | uart::FCR_CLEAR_TX | uart::fcr_trigger(level),
    )
}

const RDA_FIFO: u32 = (uart::IIR_FIFOS | uart::IIR_RDA) as u32;
const NONE_FIFO: u32 = (uart::IIR_FIFOS | uart::IIR_NONE) as u32;
const CTI_FIFO: u32 = (uart::IIR_FIFOS | uart::IIR_CTI) as u32;

fn trigger_levels(p: &mut Program) -> Asm {
    loopback_setup(p)?;
    out_reg(p, uart::IER, uart::IER_ERBFI)?;
    for level in [1u8, 4, 8, 14] {
        let n = u32::from(level);
        fifos(p, level)?;
        send_bytes(p, n - 1)?;
        if level > 1 {
            in_reg(p, uart::IIR)?;
            p.check_eax(
                NONE_FIFO,
                &format!("trigger level {level}: {} bytes, no interrupt (iir c1h)", n - 1),
            )?;
        }
        send(p, 0xEE)?;
        in_reg(p, uart::IIR)?;
        p.check_eax(
            RDA_FIFO,
            &format!("trigger level {level}: byte {level} makes data available (iir c4h)"),
        )?;
        if level > 1 {
            in_reg(p, uart::RBR)?;
            in_reg(p, uart::IIR)?;
            p.check_eax(NONE_FIFO, &format!("trigger level {level}: one byte read, below the level again"))?;
        }
        drain(p)?;
    }

    irq_on(p)?;
    for level in [4u8, 8, 14] {
        let n = u32::from(level);
        fifos(p, level)?;
        reset_hook(p)?;
        p.a.mov(ebx, dword_ptr(IRQ_COUNT + 4 * uart::COM1_IRQ).ss())?;
        p.a.sti()?;
        send_bytes(p, n - 1)?;
        delta(p, IRQ_COUNT + 4 * uart::COM1_IRQ, ebx)?;
        p.check_eax(0, &format!("irq 4, trigger level {level}: none after {} bytes", n - 1))?;
        send(p, 0xEE)?;
        irq4_after(p, 1, POLL_ITERATIONS)?;
        p.a.cli()?;
        p.check_eax(1, &format!("irq 4, trigger level {level}: raised by byte {level}"))?;
        p.check(Mem32(HOOK_IIR), RDA_FIFO, &format!("irq 4, trigger level {level}: iir c4h"))?;
        p.check(
            Mem32(HOOK_BYTES),
            n,
            &format!("irq 4, trigger level {level}: the handler read {level} bytes"),
        )?;
    }
    irq_off(p)
}

fn timeout_and_overrun(p: &mut Program) -> Asm {
    loopback_setup(p)?;
    out_reg(p, uart::IER, uart::IER_ERBFI)?;
    fifos(p, 14)?;
    send(p, 0x41)?;
    send(p, 0x42)?;
    poll(p, Bound::Iterations(POLL_ITERATIONS), |p| {
        in_reg(p, uart::IIR)?;
        p.a.cmp(eax, CTI_FIFO)?;
        p.a.sete(al)?;
        p.a.movzx(eax, al)
    })?;
    p.check_eax(1, "two bytes below trigger level 14: character timeout (iir cch)")?;
    in_reg(p, uart::RBR)?;
    p.check_eax(0x41, "the fifo gives the first byte first")?;
    in_reg(p, uart::IIR)?;
    p.check_eax(NONE_FIFO, "reading rbr ends the timeout indication")?;
    drain(p)?;

    irq_on(p)?;
    out_reg(p, uart::IER, uart::IER_ERBFI)?;
    fifos(p, 14)?;
    p.a.mov(ebx, dword_ptr(IRQ_COUNT + 4 * uart::COM1_IRQ).ss())?;
    p.a.sti()?;
    send(p, 0x41)?;
    send(p, 0x42)?;
    send(p, 0x43)?;
    irq4_after(p, 1, POLL_ITERATIONS)?;
    p.a.cli()?;
    p.check_eax(1, "character timeout raises irq 4")?;
    p.check(Mem32(HOOK_IIR), CTI_FIFO, "the handler found iir cch")?;
    p.check(Mem32(HOOK_BYTES), 3, "the handler read the three bytes")?;
    p.check(Mem32(HOOK_BYTE), 0x43, "the last byte read is the last sent")?;
    irq_off(p)?;

    fifos(p, 14)?;
    p.a.mov(dword_ptr(LSR_SEEN).ss(), 0)?;
    send_bytes(p, 17)?;
    in_reg(p, uart::LSR)?;
    p.a.or(eax, dword_ptr(LSR_SEEN).ss())?;
    p.a.and(eax, u32::from(uart::LSR_DR | uart::LSR_OE))?;
    p.check_eax(u32::from(uart::LSR_DR | uart::LSR_OE), "17 bytes into the 16-byte fifo: overrun (oe)")?;
    let mut next = p.label();
    p.a.mov(edi, 16)?;
    p.bind(&mut next)?;
    in_reg(p, uart::RBR)?;
    p.a.dec(edi)?;
    p.a.jnz(next)?;
    p.check_eax(15, "the fifo kept the first 16 bytes: the 16th read is 0fh")?;
    in_reg(p, uart::LSR)?;
    p.a.and(eax, u32::from(uart::LSR_DR))?;
    p.check_eax(0, "the 17th byte was lost")?;
    out_reg(p, uart::FCR, 0)
}

fn modem_status(p: &mut Program) -> Asm {
    loopback_setup(p)?;
    out_reg(p, uart::MCR, uart::MCR_LOOP)?;
    in_reg(p, uart::MSR)?;
    in_reg(p, uart::MSR)?;
    p.check_eax(0, "loopback with every output off: msr 00h")?;
    let steps: [(u8, u8, &str); 6] = [
        (uart::MCR_DTR, uart::MSR_DSR | uart::MSR_DDSR, "dtr on: dsr with delta dsr"),
        (uart::MCR_DTR, uart::MSR_DSR, "no change: the read cleared delta dsr"),
        (uart::MCR_RTS, uart::MSR_CTS | uart::MSR_DCTS | uart::MSR_DDSR, "rts on, dtr off: cts, both deltas"),
        (
            uart::MCR_OUT1,
            uart::MSR_RI | uart::MSR_DCTS,
            "out1 on, rts off: ri, delta cts, no teri on ri's leading edge",
        ),
        (0, uart::MSR_TERI, "out1 off: teri on ri's trailing edge"),
        (uart::MCR_OUT2, uart::MSR_DCD | uart::MSR_DDCD, "out2 on: dcd with delta dcd"),
    ];
    for (outputs, msr, name) in steps {
        out_reg(p, uart::MCR, uart::MCR_LOOP | outputs)?;
        in_reg(p, uart::MSR)?;
        p.check_eax(u32::from(msr), &format!("msr {msr:02x}h: {name}"))?;
    }
    out_reg(p, uart::MCR, 0)
}
