//! Kernel "irq-timer": the 8254 interval timer and IRQ 0 through the 8259A.
//!
//! The 8254 (Intel 82C54 datasheet, "Mode Definitions", "Read Operations"):
//! - Mode 0 (interrupt on terminal count): OUT goes low when the control word is written and
//!   stays low until the count reaches zero; then it goes high and stays high until a new count
//!   or control word is written; the counter keeps counting down (FFFFh, FFFEh, …). GATE = 0
//!   disables counting; the count is loaded on the next CLK even so.
//! - Mode 2 (rate generator): OUT high after the control word; the count runs N … 1 and is
//!   reloaded (a count never reads 0 with N ≠ 0).
//! - Mode 3 (square wave): OUT high for N/2 clocks and low for N/2 (even N); the count
//!   decrements by two, so an even count reads even.
//! - A counter-latch command freezes the count until it is read (LSB then MSB). The
//!   read-back command latches the status (OUT, NULL COUNT, RW, mode, BCD) and/or the count;
//!   when both are latched the status is read first. NULL COUNT is 1 from the control word
//!   until a count has been loaded into the counting element.
//! - BCD counting runs 9999 … 0 in decimal digits; RW = LSB only uses one byte.
//!
//! Counter 2's GATE is bit 0 of port 61h and its OUT reads as bit 5; bit 4 toggles with the
//! memory refresh (IBM PC/AT Technical Reference, system control port B).
//!
//! The 8259A (Intel 8259A datasheet): ICW1 clears the IMR and selects the IRR for status reads;
//! an edge on a masked line sets its IRR bit, and unmasking delivers it; the ISR bit of the
//! delivered level stays set until an EOI (non-specific: the highest level in service;
//! specific: the level named), or is never set in automatic-EOI mode (ICW4 AEOI); the poll
//! command (OCW3 P = 1) makes the next read an acknowledge that returns 80h | level.
//!
//! The processor (SDM Vol. 2, STI and HLT; Vol. 3A, 6.8.3 and 6.9): after STI sets IF,
//! maskable interrupts stay inhibited until after the next instruction, so `sti; cli` takes
//! none and `sti; hlt` cannot lose a wake-up; POPF has no such shadow; an interrupt that wakes
//! HLT returns past it.
//!
//! Spurious IRQ 7 (the 8259A answers an acknowledge with level 7 when the request went away
//! in between) is not checked: provoking it means racing a device's request line against the
//! processor's acknowledge, which neither an emulator nor this kernel can time.

use iced_x86::code_asm::*;

use super::*;
use crate::asm::Mem32;
use crate::pc::{cmos, pic, pit};

/// Samples taken by [`sample`] (64 dwords).
const SAMPLES: u32 = KVARS + 0x100;
/// How many samples the counting checks take.
const N_SAMPLES: u32 = 48;
/// A scratch dword.
const SAVED: u32 = KVARS;

pub(super) fn run(p: &mut Program) -> Asm {
    install_handlers(p)?;
    p.section("8259a initialisation", pic_registers)?;
    p.section("8254 mode 0 on counter 2, port 61h", mode0)?;
    p.section("8254 modes 2 and 3 on counter 2", modes_2_3)?;
    p.section("8254 read-back, bcd and lsb-only counting", read_back)?;
    p.section("irq 0: the irr and masking", masking)?;
    p.section("the sti shadow and hlt", shadow)?;
    p.section("end of interrupt", eoi)?;
    p.section("poll command and automatic eoi", poll_and_aeoi)?;
    p.section("irq 0 ticks in one rtc second", ticks_per_second)?;
    p.print(
        "# spurious irq 7: not checked (it needs a request that drops between intr and the acknowledge)\n",
    )
}

/// EAX = the count of counter `n` read as LSB then MSB (after a latch). Clobbers ECX.
fn read_count(p: &mut Program, n: u8) -> Asm {
    let port = pit::COUNTER0 + u32::from(n);
    p.a.in_(al, port)?;
    p.a.mov(cl, al)?;
    p.a.in_(al, port)?;
    p.a.mov(ch, al)?;
    p.a.movzx(eax, cx)
}

/// EAX = counter `n`'s count through a counter-latch command. Clobbers ECX.
fn latch_read(p: &mut Program, n: u8) -> Asm {
    outb(p, pit::CONTROL, pit::select(n) | pit::LATCH)?;
    read_count(p, n)
}

/// Programs counter 2: control word `rw | mode(m) | extra`, then the count (one or two bytes
/// as `rw` says); waits until the count is loaded.
fn pit2(p: &mut Program, rw: u8, m: u8, extra: u8, count: u32) -> Asm {
    outb(p, pit::CONTROL, pit::select(2) | rw | pit::mode(m) | extra)?;
    outb(p, pit::COUNTER2, count as u8)?;
    if rw == pit::RW_LSB_MSB {
        outb(p, pit::COUNTER2, (count >> 8) as u8)?;
    }
    wait_loaded(p, 2)
}

/// Waits until counter `n` has loaded the count just written: the read-back status shows
/// NULL COUNT = 0 (a count is moved into the counting element on the next CLK, and reads
/// before that return whatever the element held).
fn wait_loaded(p: &mut Program, n: u8) -> Asm {
    p.a.push(ebp)?;
    poll(p, Bound::Iterations(POLL_ITERATIONS), |p| {
        outb(p, pit::CONTROL, pit::READ_BACK | pit::READ_BACK_NO_COUNT | pit::read_back_counter(n))?;
        inb(p, pit::COUNTER0 + u32::from(n))?;
        p.a.and(eax, 0x40)?;
        p.a.xor(eax, 0x40)
    })?;
    p.a.pop(ebp)
}

/// EAX = port 61h's OUT2 bit (20h or 0).
fn out2(p: &mut Program) -> Asm {
    inb(p, pit::PORT_B)?;
    p.a.and(eax, u32::from(pit::PORT_B_OUT2))
}

/// Waits until counter `reference` (free-running, mode 2 with count 0 = 65536) has counted
/// `clocks` (< 65536) more input clocks. Clobbers EAX, ECX; keeps the others.
fn wait_clocks(p: &mut Program, reference: u8, clocks: u32) -> Asm {
    p.a.push(edi)?;
    p.a.push(ebp)?;
    latch_read(p, reference)?;
    p.a.mov(edi, eax)?;
    poll(p, Bound::Iterations(POLL_ITERATIONS), |p| {
        latch_read(p, reference)?;
        p.a.mov(ecx, edi)?;
        p.a.sub(ecx, eax)?;
        p.a.and(ecx, 0xFFFF)?;
        p.a.cmp(ecx, clocks)?;
        p.a.setae(al)?;
        p.a.movzx(eax, al)
    })?;
    p.a.pop(ebp)?;
    p.a.pop(edi)
}

/// Takes [`N_SAMPLES`] values with `read` (into EAX; may clobber ECX, EDX), `spacing` clocks of
/// counter `reference` apart, into [`SAMPLES`].
fn sample(p: &mut Program, reference: u8, spacing: u32, mut read: impl FnMut(&mut Program) -> Asm) -> Asm {
    let mut top = p.label();
    p.a.push(esi)?;
    p.a.xor(esi, esi)?;
    p.bind(&mut top)?;
    read(p)?;
    p.a.mov(dword_ptr(esi * 4 + SAMPLES).ss(), eax)?;
    wait_clocks(p, reference, spacing)?;
    p.a.inc(esi)?;
    p.a.cmp(esi, N_SAMPLES)?;
    p.a.jb(top)?;
    p.a.pop(esi)
}

/// EAX = how many samples `test` (given a sample in EAX, leaving AL = 1 to count it; may
/// clobber ECX, EDX) counts. `test` also sees the previous sample in EBX (0 for the first).
fn count_samples(p: &mut Program, mut test: impl FnMut(&mut Program) -> Asm) -> Asm {
    let mut top = p.label();
    p.a.push(ebx)?;
    p.a.push(esi)?;
    p.a.push(edi)?;
    p.a.xor(esi, esi)?;
    p.a.xor(edi, edi)?;
    p.a.xor(ebx, ebx)?;
    p.bind(&mut top)?;
    p.a.mov(eax, dword_ptr(esi * 4 + SAMPLES).ss())?;
    p.a.push(eax)?;
    test(p)?;
    p.a.movzx(eax, al)?;
    p.a.add(edi, eax)?;
    p.a.pop(ebx)?;
    p.a.inc(esi)?;
    p.a.cmp(esi, N_SAMPLES)?;
    p.a.jb(top)?;
    p.a.mov(eax, edi)?;
    p.a.pop(edi)?;
    p.a.pop(esi)?;
    p.a.pop(ebx)
}

/// AL = 1 if EAX lies outside `lo..=hi`.
fn outside(p: &mut Program, lo: u32, hi: u32) -> Asm {
    p.a.sub(eax, lo)?;
    p.a.cmp(eax, hi - lo)?;
    p.a.seta(al)
}

/// AL = 1 if EAX (a sample) is greater than EBX (the previous one) and not the first.
fn increase(p: &mut Program) -> Asm {
    p.a.cmp(eax, ebx)?;
    p.a.seta(al)?;
    p.a.test(ebx, ebx)?;
    p.a.setnz(cl)?;
    p.a.and(al, cl)
}

/// AL = 1 if some decimal digit of the 16-bit EAX is above 9.
fn not_bcd(p: &mut Program) -> Asm {
    p.a.xor(edx, edx)?;
    for shift in [0, 4, 8, 12] {
        p.a.mov(ecx, eax)?;
        p.a.shr(ecx, shift)?;
        p.a.and(ecx, 0xF)?;
        p.a.cmp(ecx, 9)?;
        p.a.seta(cl)?;
        p.a.or(dl, cl)?;
    }
    p.a.mov(al, dl)
}

fn pic_registers(p: &mut Program) -> Asm {
    p.a.cli()?;
    init_pics_unmasked(p, pic::ICW4_8086)?;
    inb(p, pic::MASTER_DATA)?;
    p.check_eax(0, "icw1 clears the master's imr")?;
    inb(p, pic::SLAVE_DATA)?;
    p.check_eax(0, "icw1 clears the slave's imr")?;
    outb(p, pic::MASTER_DATA, 0xA5)?;
    inb(p, pic::MASTER_DATA)?;
    p.check_eax(0xA5, "the master's imr reads back (ocw1)")?;
    outb(p, pic::SLAVE_DATA, 0x5A)?;
    inb(p, pic::SLAVE_DATA)?;
    p.check_eax(0x5A, "the slave's imr reads back (ocw1)")?;
    set_masks(p, 0xFF, 0xFF)?;
    read_isr(p, pic::MASTER_CMD)?;
    p.check_eax(0, "nothing in service after initialisation (master isr)")?;
    read_isr(p, pic::SLAVE_CMD)?;
    p.check_eax(0, "nothing in service after initialisation (slave isr)")?;
    inb(p, pic::ELCR1)?;
    p.a.and(eax, 0x07)?;
    p.check_eax(0, "elcr: irq 0, 1 and 2 are edge-triggered")
}

/// Counter 0 free-running (mode 2, count 65536) as the reference for [`wait_clocks`], with
/// IRQ 0 masked.
fn reference_on_counter0(p: &mut Program) -> Asm {
    p.a.cli()?;
    init_pics(p, pic::ICW4_8086)?;
    pit0(p, 2, 0)?;
    wait_loaded(p, 0)
}

fn mode0(p: &mut Program) -> Asm {
    reference_on_counter0(p)?;
    outb(p, pit::PORT_B, 0)?;
    inb(p, pit::PORT_B)?;
    p.a.and(eax, 0x03)?;
    p.check_eax(0, "port 61h: gate 2 and speaker data read back 0")?;
    outb(p, pit::PORT_B, pit::PORT_B_GATE2)?;
    inb(p, pit::PORT_B)?;
    p.a.and(eax, 0x03)?;
    p.check_eax(1, "port 61h: gate 2 reads back 1")?;
    inb(p, pit::PORT_B)?;
    p.a.mov(ebx, eax)?;
    poll(p, Bound::Iterations(100_000), |p| {
        inb(p, pit::PORT_B)?;
        p.a.xor(eax, ebx)?;
        p.a.and(eax, u32::from(pit::PORT_B_REFRESH))
    })?;
    p.check_eax(1, "port 61h: the refresh bit toggles")?;

    outb(p, pit::CONTROL, pit::select(2) | pit::RW_LSB_MSB | pit::mode(0))?;
    out2(p)?;
    p.check_eax(0, "mode 0: out2 low after the control word")?;
    outb(p, pit::COUNTER2, 0x00)?;
    outb(p, pit::COUNTER2, 0x10)?;
    out2(p)?;
    p.check_eax(0, "mode 0: out2 low while counting down from 1000h")?;
    wait_loaded(p, 2)?;
    latch_read(p, 2)?;
    check_between(p, 1, 0x1000, "mode 0: the count just after loading 1000h")?;
    poll(p, Bound::Iterations(POLL_ITERATIONS), out2)?;
    p.check_eax(1, "mode 0: out2 goes high at terminal count")?;
    latch_read(p, 2)?;
    p.a.dec(ax)?;
    p.a.movzx(eax, ax)?;
    p.a.cmp(eax, 0x1000)?;
    p.a.setae(al)?;
    p.a.movzx(eax, al)?;
    p.check_eax(1, "mode 0: the counter goes on past zero (ffffh, fffeh, ...)")?;
    wait_clocks(p, 0, 2000)?;
    out2(p)?;
    p.check_eax(u32::from(pit::PORT_B_OUT2), "mode 0: out2 stays high after terminal count")?;
    outb(p, pit::COUNTER2, 0x00)?;
    outb(p, pit::COUNTER2, 0x10)?;
    out2(p)?;
    p.check_eax(0, "mode 0: a new count drives out2 low again")?;

    // GATE = 0 disables counting.
    outb(p, pit::PORT_B, 0)?;
    pit2(p, pit::RW_LSB_MSB, 0, 0, 0x40)?;
    wait_clocks(p, 0, 500)?;
    out2(p)?;
    p.check_eax(0, "mode 0 with gate 2 low: out2 stays low")?;
    latch_read(p, 2)?;
    p.check_eax(0x40, "mode 0 with gate 2 low: the count holds at 40h")?;
    outb(p, pit::PORT_B, pit::PORT_B_GATE2)?;
    wait_clocks(p, 0, 500)?;
    out2(p)?;
    p.check_eax(u32::from(pit::PORT_B_OUT2), "mode 0: counting resumes when gate 2 goes high")?;
    outb(p, pit::PORT_B, 0)
}

fn modes_2_3(p: &mut Program) -> Asm {
    reference_on_counter0(p)?;
    outb(p, pit::PORT_B, pit::PORT_B_GATE2)?;
    outb(p, pit::CONTROL, pit::select(2) | pit::RW_LSB_MSB | pit::mode(2))?;
    out2(p)?;
    p.check_eax(u32::from(pit::PORT_B_OUT2), "mode 2: out2 high after the control word")?;
    outb(p, pit::COUNTER2, 0x00)?;
    outb(p, pit::COUNTER2, 0x04)?;
    wait_loaded(p, 2)?;
    sample(p, 0, 50, |p| latch_read(p, 2))?;
    count_samples(p, |p| outside(p, 1, 0x400))?;
    p.check_eax(0, "mode 2 with count 400h: every count read lies in 1..400h")?;
    count_samples(p, increase)?;
    check_between(p, 1, N_SAMPLES, "mode 2: reloads seen in 48 reads 50 clocks apart")?;

    pit2(p, pit::RW_LSB_MSB, 3, 0, 0x400)?;
    sample(p, 0, 50, |p| latch_read(p, 2))?;
    count_samples(p, |p| outside(p, 0, 0x400))?;
    p.check_eax(0, "mode 3 with count 400h: every count read lies in 0..400h")?;
    count_samples(p, |p| {
        p.a.and(al, 1)?;
        Ok(())
    })?;
    p.check_eax(0, "mode 3: the count steps by two (even values only)")?;
    for (level, name) in [(0, "low"), (1, "high"), (0, "low again")] {
        poll(p, Bound::Iterations(POLL_ITERATIONS), |p| {
            out2(p)?;
            if level == 0 {
                p.a.xor(eax, u32::from(pit::PORT_B_OUT2))?;
            }
            Ok(())
        })?;
        p.check_eax(1, &format!("mode 3: out2 goes {name} (square wave)"))?;
    }
    outb(p, pit::PORT_B, 0)
}

fn read_back(p: &mut Program) -> Asm {
    reference_on_counter0(p)?;
    outb(p, pit::PORT_B, pit::PORT_B_GATE2)?;
    let status = |p: &mut Program, n: u8| -> Asm {
        outb(p, pit::CONTROL, pit::READ_BACK | pit::READ_BACK_NO_COUNT | pit::read_back_counter(n))?;
        inb(p, pit::COUNTER0 + u32::from(n))
    };
    status(p, 0)?;
    p.a.and(eax, 0x3F)?;
    p.check_eax(u32::from(pit::RW_LSB_MSB | pit::mode(2)), "read-back status of counter 0: lsb/msb, mode 2")?;

    outb(p, pit::CONTROL, pit::select(2) | pit::RW_LSB_MSB | pit::mode(3))?;
    status(p, 2)?;
    p.a.and(eax, 0x40)?;
    p.check_eax(0x40, "read-back status: null count set after the control word")?;
    outb(p, pit::COUNTER2, 0x00)?;
    outb(p, pit::COUNTER2, 0x04)?;
    wait_clocks(p, 0, 20)?;
    status(p, 2)?;
    p.a.and(eax, 0x7F)?;
    p.check_eax(
        u32::from(pit::RW_LSB_MSB | pit::mode(3)),
        "read-back status of counter 2: count loaded, mode 3",
    )?;
    outb(p, pit::CONTROL, pit::READ_BACK | pit::READ_BACK_NO_STATUS | pit::read_back_counter(2))?;
    read_count(p, 2)?;
    check_between(p, 0, 0x400, "read-back of the count of counter 2")?;
    outb(p, pit::CONTROL, pit::READ_BACK | pit::read_back_counter(2))?;
    inb(p, pit::COUNTER2)?;
    p.a.and(eax, 0x3F)?;
    p.check_eax(u32::from(pit::RW_LSB_MSB | pit::mode(3)), "read-back of status and count: status first")?;
    read_count(p, 2)?;
    check_between(p, 0, 0x400, "read-back of status and count: then the count")?;

    // A latched count holds until read; a second latch command before that is ignored.
    pit2(p, pit::RW_LSB_MSB, 2, 0, 0)?;
    outb(p, pit::CONTROL, pit::select(2) | pit::LATCH)?;
    wait_clocks(p, 0, 1000)?;
    outb(p, pit::CONTROL, pit::select(2) | pit::LATCH)?;
    read_count(p, 2)?;
    p.a.mov(ebx, eax)?;
    latch_read(p, 2)?;
    p.a.sub(ebx, eax)?;
    p.a.and(ebx, 0xFFFF)?;
    p.a.mov(eax, ebx)?;
    check_between(p, 1000, 0xFFFF, "a second latch before the read is ignored: clocks between the reads")?;

    // Mode 0 in the status: OUT after terminal count.
    pit2(p, pit::RW_LSB_MSB, 0, 0, 0x10)?;
    wait_clocks(p, 0, 200)?;
    status(p, 2)?;
    p.a.and(eax, u32::from(pit::STATUS_OUT))?;
    p.check_eax(u32::from(pit::STATUS_OUT), "read-back status bit 7 is out (high after terminal count)")?;

    // BCD: count 1000 (decimal) in mode 2.
    pit2(p, pit::RW_LSB_MSB, 2, pit::BCD, 0x1000)?;
    sample(p, 0, 50, |p| latch_read(p, 2))?;
    count_samples(p, not_bcd)?;
    p.check_eax(0, "bcd mode 2, count 1000: every count read is bcd")?;
    count_samples(p, |p| outside(p, 1, 0x1000))?;
    p.check_eax(0, "bcd mode 2, count 1000: every count read lies in 0001..1000")?;

    // LSB only: one byte per access.
    pit2(p, pit::RW_LSB, 2, 0, 0x80)?;
    status(p, 2)?;
    p.a.and(eax, 0x3F)?;
    p.check_eax(u32::from(pit::RW_LSB | pit::mode(2)), "read-back status: rw = lsb only")?;
    sample(p, 0, 20, |p| {
        outb(p, pit::CONTROL, pit::select(2) | pit::LATCH)?;
        inb(p, pit::COUNTER2)
    })?;
    count_samples(p, |p| outside(p, 1, 0x80))?;
    p.check_eax(0, "lsb-only mode 2, count 80h: every byte read lies in 1..80h")?;
    outb(p, pit::PORT_B, 0)
}

/// Interrupts off, both 8259As initialised and masked, the 100 Hz clock on counter 0, counter 2
/// free-running as a reference.
fn irq_setup(p: &mut Program) -> Asm {
    p.a.cli()?;
    init_pics(p, pic::ICW4_8086)?;
    p.a.mov(dword_ptr(EOI_MODE).ss(), EOI_NON_SPECIFIC)?;
    pit0(p, 2, pit::COUNT_100HZ)?;
    outb(p, pit::PORT_B, pit::PORT_B_GATE2)?;
    pit2(p, pit::RW_LSB_MSB, 2, 0, 0)?;
    wait_loaded(p, 0)
}

/// Polls (interrupts off) until IRR bit 0 is set; EAX = 1 if it was within the bound.
fn irq0_pending(p: &mut Program) -> Asm {
    poll(p, Bound::Iterations(POLL_ITERATIONS), |p| {
        read_irr(p, pic::MASTER_CMD)?;
        p.a.and(eax, 1)
    })
}

fn masking(p: &mut Program) -> Asm {
    irq_setup(p)?;
    irq0_pending(p)?;
    p.check_eax(1, "the 8254 sets irr bit 0 while irq 0 is masked")?;
    p.a.mov(ebx, dword_ptr(TICKS).ss())?;
    p.a.sti()?;
    wait_clocks(p, 2, 30_000)?;
    p.a.cli()?;
    delta(p, TICKS, ebx)?;
    p.check_eax(0, "a masked irq 0 is not delivered (25 ms with if = 1)")?;
    inb(p, pic::MASTER_DATA)?;
    p.check_eax(0xFF, "the imr reads back ffh")?;
    outb(p, pic::MASTER_DATA, 0xFE)?;
    p.a.sti()?;
    p.a.nop()?;
    p.a.cli()?;
    delta(p, TICKS, ebx)?;
    p.check_eax(1, "unmasking delivers the pending request")?;
    p.check(Mem32(IRQ_ISR), 1, "isr bit 0 is set while the handler runs")?;
    read_isr(p, pic::MASTER_CMD)?;
    p.check_eax(0, "the handler's non-specific eoi cleared isr bit 0")?;
    p.a.sti()?;
    wait_ticks(p, 5)?;
    p.a.cli()?;
    delta(p, TICKS, ebx)?;
    check_between(p, 6, 7, "hlt until five more ticks: deliveries")
}

fn shadow(p: &mut Program) -> Asm {
    irq_setup(p)?;
    outb(p, pic::MASTER_DATA, 0xFE)?;
    irq0_pending(p)?;
    p.check_eax(1, "irq 0 pending with if = 0")?;
    p.a.mov(ebx, dword_ptr(TICKS).ss())?;
    p.a.sti()?;
    p.a.cli()?;
    delta(p, TICKS, ebx)?;
    p.check_eax(0, "sti; cli: no interrupt inside the sti shadow")?;

    let mut after_nop = p.label();
    let after_nop_addr = p.addr(after_nop);
    p.a.sti()?;
    p.a.nop()?;
    p.bind(&mut after_nop)?;
    p.a.cli()?;
    delta(p, TICKS, ebx)?;
    p.check_eax(1, "sti; nop; cli: the interrupt comes after the nop")?;
    p.check(Mem32(IRQ_EIP), after_nop_addr, "sti; nop; cli: the saved eip is the cli's")?;

    irq0_pending(p)?;
    p.check_eax(1, "irq 0 pending again")?;
    let mut after_popf = p.label();
    let after_popf_addr = p.addr(after_popf);
    p.a.mov(ebx, dword_ptr(TICKS).ss())?;
    p.a.push(FL_1 | FL_IF)?;
    p.a.popfd()?;
    p.bind(&mut after_popf)?;
    p.a.cli()?;
    delta(p, TICKS, ebx)?;
    p.check_eax(1, "popfd setting if: no shadow, the interrupt comes at once")?;
    p.check(Mem32(IRQ_EIP), after_popf_addr, "popfd setting if: the saved eip is the next instruction's")?;

    irq0_pending(p)?;
    p.check_eax(1, "irq 0 pending once more")?;
    let mut after_hlt = p.label();
    let after_hlt_addr = p.addr(after_hlt);
    p.a.mov(ebx, dword_ptr(TICKS).ss())?;
    p.a.sti()?;
    p.a.hlt()?;
    p.bind(&mut after_hlt)?;
    p.a.cli()?;
    delta(p, TICKS, ebx)?;
    p.check_eax(1, "sti; hlt with a pending interrupt: it wakes the hlt")?;
    p.check(Mem32(IRQ_EIP), after_hlt_addr, "sti; hlt: the saved eip is past the hlt")?;

    // Nothing pending: HLT waits for the next tick.
    read_irr(p, pic::MASTER_CMD)?;
    p.a.and(eax, 1)?;
    p.check_eax(0, "no request left in the irr")?;
    let mut after_hlt2 = p.label();
    let after_hlt2_addr = p.addr(after_hlt2);
    p.a.mov(ebx, dword_ptr(TICKS).ss())?;
    p.a.sti()?;
    p.a.hlt()?;
    p.bind(&mut after_hlt2)?;
    p.a.cli()?;
    delta(p, TICKS, ebx)?;
    p.check_eax(1, "hlt waits for the next tick: one delivery")?;
    p.check(Mem32(IRQ_EIP), after_hlt2_addr, "the tick that ends hlt returns past it")
}

/// With interrupts on, waits (by iterations) until [`TICKS`] is at least EBX + `n`; then
/// CLI. EAX = 1 if it got there.
fn ticks_past(p: &mut Program, n: u32) -> Asm {
    p.a.sti()?;
    poll(p, Bound::Iterations(POLL_ITERATIONS), |p| {
        delta(p, TICKS, ebx)?;
        p.a.cmp(eax, n)?;
        p.a.setae(al)?;
        p.a.movzx(eax, al)
    })?;
    p.a.cli()
}

fn eoi(p: &mut Program) -> Asm {
    irq_setup(p)?;
    p.a.mov(dword_ptr(EOI_MODE).ss(), EOI_NONE)?;
    outb(p, pic::MASTER_DATA, 0xFE)?;
    p.a.mov(ebx, dword_ptr(TICKS).ss())?;
    ticks_past(p, 1)?;
    p.check_eax(1, "no eoi: a first tick comes")?;
    p.a.sti()?;
    irq0_pending(p)?;
    p.a.cli()?;
    p.check_eax(1, "no eoi: the next tick waits in the irr")?;
    delta(p, TICKS, ebx)?;
    p.check_eax(1, "no eoi: irq 0 stays in service and blocks the next tick")?;
    read_isr(p, pic::MASTER_CMD)?;
    p.check_eax(1, "no eoi: isr bit 0 stays set")?;
    p.a.mov(dword_ptr(EOI_MODE).ss(), EOI_NON_SPECIFIC)?;
    outb(p, pic::MASTER_CMD, pic::OCW2_EOI)?;
    read_isr(p, pic::MASTER_CMD)?;
    p.check_eax(0, "a non-specific eoi clears isr bit 0")?;
    p.a.sti()?;
    p.a.nop()?;
    p.a.cli()?;
    delta(p, TICKS, ebx)?;
    p.check_eax(2, "after the eoi the waiting tick is delivered")?;

    p.a.mov(dword_ptr(EOI_MODE).ss(), EOI_SPECIFIC)?;
    p.a.mov(ebx, dword_ptr(TICKS).ss())?;
    ticks_past(p, 3)?;
    p.check_eax(1, "specific eois (level 0) from the handler: ticks keep coming")?;
    read_isr(p, pic::MASTER_CMD)?;
    p.check_eax(0, "specific eoi: isr bit 0 clear")?;

    p.a.mov(dword_ptr(EOI_MODE).ss(), EOI_NONE)?;
    p.a.mov(ebx, dword_ptr(TICKS).ss())?;
    ticks_past(p, 1)?;
    outb(p, pic::MASTER_CMD, pic::OCW2_SPECIFIC_EOI | 1)?;
    read_isr(p, pic::MASTER_CMD)?;
    p.check_eax(1, "a specific eoi for level 1 leaves level 0 in service")?;
    outb(p, pic::MASTER_CMD, pic::OCW2_SPECIFIC_EOI)?;
    read_isr(p, pic::MASTER_CMD)?;
    p.check_eax(0, "a specific eoi for level 0 ends it")?;
    p.a.mov(dword_ptr(EOI_MODE).ss(), EOI_NON_SPECIFIC)
}

fn poll_and_aeoi(p: &mut Program) -> Asm {
    irq_setup(p)?;
    outb(p, pic::MASTER_DATA, 0xFE)?;
    irq0_pending(p)?;
    p.check_eax(1, "irq 0 pending for the poll command")?;
    p.a.mov(ebx, dword_ptr(TICKS).ss())?;
    outb(p, pic::MASTER_CMD, pic::OCW3_POLL)?;
    inb(p, pic::MASTER_CMD)?;
    p.check_eax(0x80, "poll command: a request at level 0 (80h | 0)")?;
    read_isr(p, pic::MASTER_CMD)?;
    p.check_eax(1, "the poll read acknowledged it: isr bit 0 set")?;
    read_irr(p, pic::MASTER_CMD)?;
    p.a.and(eax, 1)?;
    p.check_eax(0, "the poll read acknowledged it: irr bit 0 clear")?;
    outb(p, pic::MASTER_CMD, pic::OCW2_EOI)?;
    p.a.sti()?;
    p.a.nop()?;
    p.a.cli()?;
    delta(p, TICKS, ebx)?;
    p.check_eax(0, "a polled request is not delivered as an interrupt too")?;

    // Automatic EOI.
    init_pics(p, pic::ICW4_8086_AEOI)?;
    outb(p, pic::MASTER_DATA, 0xFE)?;
    p.a.mov(dword_ptr(EOI_MODE).ss(), EOI_NONE)?;
    p.a.mov(dword_ptr(IRQ_ISR).ss(), 0xFF)?;
    p.a.mov(ebx, dword_ptr(TICKS).ss())?;
    ticks_past(p, 3)?;
    p.check_eax(1, "automatic eoi: ticks keep coming without eoi commands")?;
    p.check(Mem32(IRQ_ISR), 0, "automatic eoi: isr bit 0 is already clear inside the handler")?;
    read_isr(p, pic::MASTER_CMD)?;
    p.check_eax(0, "automatic eoi: nothing in service")?;
    init_pics(p, pic::ICW4_8086)?;
    p.a.mov(dword_ptr(EOI_MODE).ss(), EOI_NON_SPECIFIC)
}

/// EAX = the RTC's seconds register, read while no update is in progress. Clobbers ECX.
pub(super) fn rtc_seconds(p: &mut Program) -> Asm {
    let mut again = p.label();
    p.bind(&mut again)?;
    outb(p, cmos::INDEX, cmos::REG_A)?;
    inb(p, cmos::DATA)?;
    p.a.test(al, u32::from(cmos::A_UIP))?;
    p.a.jnz(again)?;
    outb(p, cmos::INDEX, cmos::SECONDS)?;
    inb(p, cmos::DATA)
}

fn ticks_per_second(p: &mut Program) -> Asm {
    irq_setup(p)?;
    outb(p, pic::MASTER_DATA, 0xFE)?;
    p.a.sti()?;
    let seconds_change = |p: &mut Program| -> Asm {
        rtc_seconds(p)?;
        p.a.mov(ebx, eax)?;
        poll(p, Bound::Ticks(300), |p| {
            rtc_seconds(p)?;
            p.a.xor(eax, ebx)
        })
    };
    seconds_change(p)?;
    p.a.mov(dword_ptr(SAVED).ss(), eax)?;
    p.a.mov(edi, dword_ptr(TICKS).ss())?;
    seconds_change(p)?;
    p.a.and(dword_ptr(SAVED).ss(), eax)?;
    delta(p, TICKS, edi)?;
    p.a.cli()?;
    p.a.mov(dword_ptr(SAVED + 4).ss(), eax)?;
    p.check(Mem32(SAVED), 1, "the rtc's seconds register changed twice")?;
    p.a.mov(eax, dword_ptr(SAVED + 4).ss())?;
    check_between(p, 80, 120, "irq 0 ticks at 100 hz in one rtc second")
}
