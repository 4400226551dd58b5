//! Kernel "irq-rtc": the MC146818A real-time clock and CMOS RAM (ports 70h/71h, IRQ 8 on the
//! slave 8259A), and the 8259A's priorities with two sources, IRQ 0 and IRQ 8.
//!
//! Points the datasheet (Motorola MC146818A) settles:
//! - Register D reads 80h (VRT: valid RAM and time; bits 6:0 are 0). Register A's DV bits
//!   select the time base (010 = 32.768 kHz, dividers running) and RS the periodic rate:
//!   32768 >> (RS − 1) Hz for RS ≥ 3, so RS = 6 is 1024 Hz, RS = Ah 64 Hz, RS = Fh 2 Hz. UIP
//!   (bit 7, read only) is 1 from 244 µs before an update until it ends.
//! - Register B: SET = 1 stops updates (and clears UIP) so that the time can be written; DM
//!   selects binary or BCD for the time registers, which software rewrites in the new format
//!   when it changes DM; PIE, AIE and UIE enable the periodic, alarm and update-ended
//!   interrupts.
//! - Register C: IRQF = PF·PIE + AF·AIE + UF·UIE; PF, AF and UF are set when their event
//!   happens whatever the enables; reading C clears all of them and releases the IRQ line,
//!   which stays asserted until then — so on the edge-triggered ISA line a handler that does not
//!   read C gets no further interrupt.
//! - An alarm byte with bits 7:6 set matches any value ("don't care"): with all three such, the
//!   alarm fires once a second.
//!
//! Port 70h bit 7 disables NMI on a PC/AT; the register index is bits 6:0.
//!
//! The 8259A (datasheet, "Interrupt Sequence", "Priority Modes"): with fixed priority IR0 is
//! served before IR2 (the slave's cascade, where IRQ 8 arrives); OCW2 "set priority" makes a
//! given level the lowest; "rotate on non-specific EOI" makes the level just served the
//! lowest. The request latch of an IR input is transparent (datasheet, "Edge Triggered Mode
//! and Level Triggered Mode": the input must stay high until the first INTA): masking IRQ 8 at
//! the slave drops the slave's INT output, and with it the master's IR2 request, so an
//! interrupt that was not yet acknowledged is not delivered at all. (These checks are here
//! because this kernel has two interrupt sources that can be made pending at the same time.)
//!
//! Rates are checked by counting interrupts over a number of 100 Hz ticks of the 8254, within
//! ±20 %; the counts are printed.

use iced_x86::code_asm::*;

use super::*;
use crate::asm::{Mem16, Mem32};
use crate::pc::{cmos, pic};

/// What the IRQ 8 hook saw: register C last read.
const LAST_C: u32 = KVARS;
/// Register C values it read, ORed.
const C_SEEN: u32 = KVARS + 4;
/// When set, the hook does not read register C.
const HOOK_SKIP_C: u32 = KVARS + 8;
/// A scratch dword.
const SAVED: u32 = KVARS + 12;

pub(super) fn run(p: &mut Program) -> Asm {
    install_handlers(p)?;
    install_hook(p)?;
    p.section("registers", registers)?;
    p.section("data modes and the set bit", data_modes)?;
    p.section("the update cycle", update_cycle)?;
    p.section("register c without interrupts", register_c)?;
    p.section("periodic interrupt on irq 8", periodic)?;
    p.section("update and alarm interrupts", update_and_alarm)?;
    p.section("8259a priorities with irq 0 and irq 8", priorities)
}

/// The IRQ 8 hook: reads register C (unless [`HOOK_SKIP_C`]) into [`LAST_C`] and [`C_SEEN`].
fn install_hook(p: &mut Program) -> Asm {
    let mut hook = p.label();
    let mut over = p.label();
    let mut done = p.label();
    let hook_addr = p.addr(hook);
    p.a.jmp(over)?;
    p.bind(&mut hook)?;
    p.a.cmp(dword_ptr(HOOK_SKIP_C).ss(), 0)?;
    p.a.jne(done)?;
    cmos_read(p, cmos::REG_C)?;
    p.a.mov(dword_ptr(LAST_C).ss(), eax)?;
    p.a.or(dword_ptr(C_SEEN).ss(), eax)?;
    p.bind(&mut done)?;
    p.a.ret()?;
    p.bind(&mut over)?;
    p.a.mov(dword_ptr(IRQ_HOOK + 4 * cmos::IRQ).ss(), hook_addr)
}

/// EAX = CMOS register `reg`.
fn cmos_read(p: &mut Program, reg: u8) -> Asm {
    outb(p, cmos::INDEX, reg)?;
    inb(p, cmos::DATA)
}

/// CMOS register `reg` = `value`.
fn cmos_write(p: &mut Program, reg: u8, value: u8) -> Asm {
    outb(p, cmos::INDEX, reg)?;
    outb(p, cmos::DATA, value)
}

/// EAX = CMOS register `reg`, read while register A shows no update in progress.
fn cmos_read_stable(p: &mut Program, reg: u8) -> Asm {
    let mut again = p.label();
    p.bind(&mut again)?;
    cmos_read(p, cmos::REG_A)?;
    p.a.test(al, u32::from(cmos::A_UIP))?;
    p.a.jnz(again)?;
    cmos_read(p, reg)
}

/// Writes seconds, minutes, hours, day of week, date, month and year (registers 0, 2, 4,
/// 6–9) and the century (CMOS byte 32h by the PC/AT convention; QEMU reads it as part of the
/// clock, in the current data mode), in the format register B selects.
fn set_time(p: &mut Program, values: [u8; 8]) -> Asm {
    let regs = [cmos::SECONDS, cmos::MINUTES, cmos::HOURS, 6, 7, 8, 9, cmos::CENTURY];
    for (reg, value) in regs.into_iter().zip(values) {
        cmos_write(p, reg, value)?;
    }
    Ok(())
}

/// Register B for the checks below: 24-hour binary mode plus `extra`.
const fn reg_b(extra: u8) -> u8 {
    cmos::B_24H | cmos::B_DM_BINARY | extra
}

/// Register A with the 32.768 kHz time base and rate select `rs`.
const fn reg_a(rs: u8) -> u8 {
    cmos::A_DV_32K | rs
}

fn registers(p: &mut Program) -> Asm {
    p.a.cli()?;
    cmos_read(p, cmos::REG_D)?;
    p.check_eax(u32::from(cmos::D_VRT), "register d: 80h (valid ram and time)")?;
    cmos_write(p, cmos::REG_A, reg_a(6))?;
    cmos_read(p, cmos::REG_A)?;
    p.a.and(eax, 0x7F)?;
    p.check_eax(u32::from(reg_a(6)), "register a reads back 26h (32.768 khz, rate 1024 hz)")?;
    cmos_write(p, cmos::REG_B, cmos::B_24H)?;
    cmos_read(p, cmos::REG_B)?;
    p.check_eax(u32::from(cmos::B_24H), "register b reads back 02h (24 hours, bcd, no interrupts)")?;
    cmos_read(p, cmos::REG_C)?;
    cmos_read(p, cmos::REG_C)?;
    p.a.and(eax, 0x0F)?;
    p.check_eax(0, "register c: bits 3:0 read 0")?;

    cmos_read(p, cmos::SPARE_RAM)?;
    p.a.mov(dword_ptr(SAVED).ss(), eax)?;
    for value in [0xA5u8, 0x5A] {
        cmos_write(p, cmos::SPARE_RAM, value)?;
        cmos_read(p, cmos::SPARE_RAM)?;
        p.check_eax(u32::from(value), &format!("cmos ram byte {:02x}h holds {value:02x}h", cmos::SPARE_RAM))?;
    }
    outb(p, cmos::INDEX, cmos::SPARE_RAM)?;
    p.a.mov(eax, dword_ptr(SAVED).ss())?;
    p.a.out(cmos::DATA, al)?;

    outb(p, cmos::INDEX, cmos::NMI_DISABLE | cmos::REG_D)?;
    inb(p, cmos::DATA)?;
    p.check_eax(u32::from(cmos::D_VRT), "index 8dh (nmi off): bits 6:0 still select register d")?;
    outb(p, cmos::INDEX, cmos::REG_D)?;
    inb(p, cmos::DATA)?;
    p.check_eax(u32::from(cmos::D_VRT), "index 0dh (nmi on) selects register d")
}

fn data_modes(p: &mut Program) -> Asm {
    start_clock(p)?;
    cmos_write(p, cmos::REG_B, cmos::B_SET | cmos::B_24H)?;
    cmos_read(p, cmos::REG_A)?;
    p.a.and(eax, u32::from(cmos::A_UIP))?;
    p.check_eax(0, "set = 1: uip reads 0")?;
    // Wednesday 2025-06-18 12:30:45, in BCD.
    set_time(p, [0x45, 0x30, 0x12, 4, 0x18, 0x06, 0x25, 0x20])?;
    cmos_write(p, cmos::REG_B, cmos::B_24H)?;
    cmos_read_stable(p, cmos::SECONDS)?;
    check_between(p, 0x45, 0x46, "bcd mode: 45h written, the seconds read (bcd)")?;
    cmos_read_stable(p, cmos::MINUTES)?;
    p.check_eax(0x30, "bcd mode: minutes 30h")?;
    cmos_read_stable(p, cmos::HOURS)?;
    p.check_eax(0x12, "bcd mode: hours 12h")?;

    // The same day at 23:59:30, in binary: every time and date byte is rewritten.
    cmos_write(p, cmos::REG_B, reg_b(cmos::B_SET))?;
    set_time(p, [30, 59, 23, 4, 18, 6, 25, 20])?;
    cmos_write(p, cmos::REG_B, reg_b(0))?;
    cmos_read(p, cmos::REG_B)?;
    p.check_eax(u32::from(reg_b(0)), "register b reads back 06h (24 hours, binary)")?;
    cmos_read_stable(p, cmos::SECONDS)?;
    check_between(p, 30, 31, "binary mode: 30 written, the seconds read")?;
    cmos_read_stable(p, cmos::MINUTES)?;
    p.check_eax(59, "binary mode: minutes 59")?;
    cmos_read_stable(p, cmos::HOURS)?;
    p.check_eax(23, "binary mode: hours 23")?;

    cmos_write(p, cmos::REG_B, reg_b(cmos::B_SET))?;
    cmos_write(p, cmos::SECONDS, 10)?;
    wait_ticks(p, 150)?;
    cmos_read(p, cmos::SECONDS)?;
    p.check_eax(10, "set = 1 holds the clock: seconds still 10 after 1.5 s")?;
    cmos_write(p, cmos::REG_B, reg_b(0))?;
    poll(p, Bound::Ticks(200), |p| {
        cmos_read_stable(p, cmos::SECONDS)?;
        p.a.xor(eax, 10)
    })?;
    p.check_eax(1, "set = 0 lets the clock run: the seconds change")?;
    p.a.cli()
}

fn update_cycle(p: &mut Program) -> Asm {
    start_clock(p)?;
    cmos_write(p, cmos::REG_B, reg_b(0))?;
    let uip = |p: &mut Program, high: bool| -> Asm {
        cmos_read(p, cmos::REG_A)?;
        p.a.and(eax, u32::from(cmos::A_UIP))?;
        if !high {
            p.a.xor(eax, u32::from(cmos::A_UIP))?;
        }
        Ok(())
    };
    // Catch an update coarsely (once per tick), sleep until shortly before the next one, then
    // watch UIP closely.
    cmos_read_stable(p, cmos::SECONDS)?;
    p.a.mov(ebx, eax)?;
    poll(p, Bound::Ticks(200), |p| {
        cmos_read_stable(p, cmos::SECONDS)?;
        p.a.xor(eax, ebx)
    })?;
    wait_ticks(p, 95)?;
    cmos_read_stable(p, cmos::SECONDS)?;
    p.a.mov(ebx, eax)?;
    cmos_read(p, cmos::REG_C)?;
    p.a.cli()?;
    poll(p, Bound::Iterations(POLL_ITERATIONS), |p| uip(p, true))?;
    p.check_eax(1, "uip rises (an update is coming)")?;
    poll(p, Bound::Iterations(POLL_ITERATIONS), |p| uip(p, false))?;
    p.check_eax(1, "uip falls again (the update is over)")?;
    cmos_read(p, cmos::SECONDS)?;
    p.a.sub(eax, ebx)?;
    p.a.add(eax, 60)?;
    p.a.xor(edx, edx)?;
    p.a.mov(ecx, 60)?;
    p.a.div(ecx)?;
    p.a.mov(eax, edx)?;
    check_between(
        p,
        1,
        2,
        "seconds gained across the update (1; 2 if a whole 244-us uip pulse went unseen)",
    )?;
    cmos_read(p, cmos::REG_C)?;
    p.a.and(eax, u32::from(cmos::C_UF | cmos::C_IRQF))?;
    p.check_eax(u32::from(cmos::C_UF), "register c: uf set by the update, irqf clear (uie off)")
}

fn register_c(p: &mut Program) -> Asm {
    start_clock(p)?;
    cmos_write(p, cmos::REG_A, reg_a(0xA))?;
    cmos_write(p, cmos::REG_B, reg_b(cmos::B_PIE))?;
    cmos_read(p, cmos::REG_C)?;
    wait_ticks(p, 3)?;
    p.a.cli()?;
    cmos_read(p, cmos::REG_C)?;
    p.a.and(eax, u32::from(cmos::C_IRQF | cmos::C_PF))?;
    p.check_eax(u32::from(cmos::C_IRQF | cmos::C_PF), "pie set, 64 hz: register c shows irqf and pf")?;
    cmos_read(p, cmos::REG_C)?;
    p.a.and(eax, u32::from(cmos::C_IRQF | cmos::C_PF))?;
    p.check_eax(0, "reading register c cleared irqf and pf")?;
    p.a.sti()?;
    cmos_write(p, cmos::REG_B, reg_b(0))?;
    cmos_read(p, cmos::REG_C)?;
    wait_ticks(p, 3)?;
    p.a.cli()?;
    cmos_read(p, cmos::REG_C)?;
    p.a.and(eax, u32::from(cmos::C_IRQF | cmos::C_PF))?;
    p.check_eax(u32::from(cmos::C_PF), "pie clear: pf still set, irqf not")
}

/// The clock, plus IRQ 8 unmasked at the slave (the cascade is unmasked by [`start_clock`]),
/// the hook reading register C.
fn irq8_on(p: &mut Program) -> Asm {
    p.a.cli()?;
    p.a.mov(dword_ptr(HOOK_SKIP_C).ss(), 0)?;
    p.a.mov(dword_ptr(C_SEEN).ss(), 0)?;
    start_clock(p)?;
    outb(p, pic::SLAVE_DATA, !1u8)
}

/// EAX = IRQ 8 deliveries during the next `ticks` ticks.
fn count_irq8(p: &mut Program, ticks: u32) -> Asm {
    wait_ticks(p, 1)?;
    p.a.mov(ebx, dword_ptr(IRQ_COUNT + 4 * cmos::IRQ).ss())?;
    wait_ticks(p, ticks)?;
    delta(p, IRQ_COUNT + 4 * cmos::IRQ, ebx)
}

fn periodic(p: &mut Program) -> Asm {
    irq8_on(p)?;
    cmos_write(p, cmos::REG_A, reg_a(0xA))?;
    cmos_write(p, cmos::REG_B, reg_b(cmos::B_PIE))?;
    cmos_read(p, cmos::REG_C)?;
    count_irq8(p, 100)?;
    check_between(p, 52, 77, "rate 64 hz: irq 8 deliveries in 100 ticks")?;
    p.check_masked(
        Mem32(LAST_C),
        0xF0,
        u32::from(cmos::C_IRQF | cmos::C_PF),
        "the handler found irqf and pf",
    )?;
    p.check(Mem32(IRQ_ISR + 4 * cmos::IRQ), 1, "slave isr bit 0 set while the irq 8 handler runs")?;
    cmos_write(p, cmos::REG_A, reg_a(6))?;
    count_irq8(p, 25)?;
    check_between(p, 205, 307, "rate 1024 hz: irq 8 deliveries in 25 ticks")?;
    cmos_write(p, cmos::REG_A, reg_a(0xF))?;
    count_irq8(p, 100)?;
    check_between(p, 1, 3, "rate 2 hz: irq 8 deliveries in 100 ticks")?;
    cmos_write(p, cmos::REG_A, reg_a(0xA))?;
    cmos_write(p, cmos::REG_B, reg_b(0))?;
    cmos_read(p, cmos::REG_C)?;
    count_irq8(p, 20)?;
    p.check_eax(0, "pie clear: no irq 8")?;

    // Without a read of register C the line stays asserted: one edge, one interrupt.
    p.a.mov(dword_ptr(HOOK_SKIP_C).ss(), 1)?;
    p.a.mov(ebx, dword_ptr(IRQ_COUNT + 4 * cmos::IRQ).ss())?;
    cmos_write(p, cmos::REG_B, reg_b(cmos::B_PIE))?;
    wait_ticks(p, 10)?;
    delta(p, IRQ_COUNT + 4 * cmos::IRQ, ebx)?;
    p.check_eax(1, "the handler does not read register c: one irq 8 only")?;
    p.a.mov(ebx, dword_ptr(IRQ_COUNT + 4 * cmos::IRQ).ss())?;
    cmos_read(p, cmos::REG_C)?;
    wait_ticks(p, 3)?;
    delta(p, IRQ_COUNT + 4 * cmos::IRQ, ebx)?;
    p.check_eax(1, "reading register c lets the next periodic interrupt through")?;
    p.a.mov(dword_ptr(HOOK_SKIP_C).ss(), 0)?;
    cmos_write(p, cmos::REG_B, reg_b(0))?;
    cmos_read(p, cmos::REG_C)?;
    p.a.cli()
}

fn update_and_alarm(p: &mut Program) -> Asm {
    irq8_on(p)?;
    cmos_write(p, cmos::REG_B, reg_b(cmos::B_UIE))?;
    cmos_read(p, cmos::REG_C)?;
    count_irq8(p, 250)?;
    check_between(p, 2, 3, "update-ended interrupts in 250 ticks")?;
    p.check_masked(Mem32(C_SEEN), u32::from(cmos::C_UF), u32::from(cmos::C_UF), "the handler saw uf")?;

    cmos_write(p, cmos::REG_B, reg_b(0))?;
    cmos_read(p, cmos::REG_C)?;
    for reg in [cmos::SECONDS_ALARM, cmos::MINUTES_ALARM, cmos::HOURS_ALARM] {
        cmos_write(p, reg, cmos::ALARM_ANY)?;
    }
    p.a.mov(dword_ptr(C_SEEN).ss(), 0)?;
    cmos_write(p, cmos::REG_B, reg_b(cmos::B_AIE))?;
    count_irq8(p, 250)?;
    check_between(p, 2, 3, "alarm with every byte \"don't care\": interrupts in 250 ticks")?;
    p.check_masked(Mem32(C_SEEN), u32::from(cmos::C_AF), u32::from(cmos::C_AF), "the handler saw af")?;

    // An alarm two seconds ahead (binary mode): the seconds match when it comes.
    cmos_write(p, cmos::REG_B, reg_b(0))?;
    cmos_read_stable(p, cmos::SECONDS)?;
    p.a.add(eax, 2)?;
    p.a.xor(edx, edx)?;
    p.a.mov(ecx, 60)?;
    p.a.div(ecx)?;
    p.a.mov(dword_ptr(SAVED).ss(), edx)?;
    outb(p, cmos::INDEX, cmos::SECONDS_ALARM)?;
    p.a.mov(eax, edx)?;
    p.a.out(cmos::DATA, al)?;
    cmos_read(p, cmos::REG_C)?;
    p.a.mov(ebx, dword_ptr(IRQ_COUNT + 4 * cmos::IRQ).ss())?;
    cmos_write(p, cmos::REG_B, reg_b(cmos::B_AIE))?;
    poll(p, Bound::Ticks(400), |p| delta(p, IRQ_COUNT + 4 * cmos::IRQ, ebx))?;
    p.check_eax(1, "an alarm two seconds ahead fires")?;
    cmos_read_stable(p, cmos::SECONDS)?;
    p.a.sub(eax, dword_ptr(SAVED).ss())?;
    p.check_eax(0, "when the alarm fires the seconds match the alarm byte")?;
    cmos_write(p, cmos::REG_B, reg_b(0))?;
    cmos_read(p, cmos::REG_C)?;
    p.a.cli()
}

/// With interrupts off, polls until the master's IRR has bit 0 (IRQ 0) and bit 2 (the
/// slave, IRQ 8) both; EAX = 1 if so.
fn both_pending(p: &mut Program) -> Asm {
    poll(p, Bound::Iterations(POLL_ITERATIONS), |p| {
        read_irr(p, pic::MASTER_CMD)?;
        p.a.and(eax, 0x05)?;
        p.a.cmp(eax, 0x05)?;
        p.a.sete(al)?;
        p.a.movzx(eax, al)
    })
}

/// Lets the pending interrupts in (STI; NOP; CLI) with the order log cleared.
fn deliver(p: &mut Program) -> Asm {
    p.a.mov(dword_ptr(ORDER_POS).ss(), 0)?;
    p.a.mov(dword_ptr(ORDER_LOG).ss(), 0xFFFF_FFFFu32)?;
    p.a.sti()?;
    p.a.nop()?;
    p.a.cli()
}

fn priorities(p: &mut Program) -> Asm {
    irq8_on(p)?;
    cmos_write(p, cmos::REG_A, reg_a(6))?;
    cmos_write(p, cmos::REG_B, reg_b(cmos::B_PIE))?;
    cmos_read(p, cmos::REG_C)?;
    p.a.cli()?;
    both_pending(p)?;
    p.check_eax(1, "irq 0 and irq 8 pending together")?;
    deliver(p)?;
    p.check(Mem16(ORDER_LOG), 0x0800, "fixed priority: irq 0 (ir0) before irq 8 (ir2)")?;

    outb(p, pic::MASTER_CMD, pic::OCW2_SET_PRIORITY | 1)?;
    both_pending(p)?;
    deliver(p)?;
    p.check(Mem16(ORDER_LOG), 0x0008, "set priority with ir1 lowest: irq 8 (ir2) before irq 0")?;
    outb(p, pic::MASTER_CMD, pic::OCW2_SET_PRIORITY | 7)?;
    both_pending(p)?;
    deliver(p)?;
    p.check(Mem16(ORDER_LOG), 0x0800, "set priority with ir7 lowest: fixed order again")?;

    // A request withdrawn before the acknowledge: IRQ 8 masked at the slave once its request
    // reached the master's IR2. The slave's INT output drops, and an IR input that goes low
    // before the acknowledge is no longer a request; with IF = 0 nothing was acknowledged, so
    // nothing is delivered for it (not even a spurious IRQ 7 or 15).
    both_pending(p)?;
    outb(p, pic::SLAVE_DATA, 0xFF)?;
    deliver(p)?;
    p.check(Mem16(ORDER_LOG), 0xFF00, "irq 8 masked at the slave after reaching ir2: only irq 0 comes")?;

    // Rotation: IRQ 0 alone (IR2 masked at the master), ended with a rotating EOI, becomes
    // the lowest priority.
    outb(p, pic::SLAVE_DATA, !1u8)?;
    outb(p, pic::MASTER_DATA, !1u8)?;
    p.a.mov(dword_ptr(EOI_MODE).ss(), EOI_ROTATE)?;
    poll(p, Bound::Iterations(POLL_ITERATIONS), |p| {
        read_irr(p, pic::MASTER_CMD)?;
        p.a.and(eax, 1)
    })?;
    deliver(p)?;
    p.check(Mem16(ORDER_LOG), 0xFF00, "irq 0 alone, ended with rotate on non-specific eoi")?;
    outb(p, pic::MASTER_DATA, !0x05u8)?;
    both_pending(p)?;
    deliver(p)?;
    p.check(Mem16(ORDER_LOG), 0x0008, "after the rotation ir0 is lowest: irq 8 before irq 0")?;
    p.a.mov(dword_ptr(EOI_MODE).ss(), EOI_NON_SPECIFIC)?;
    outb(p, pic::MASTER_CMD, pic::OCW2_SET_PRIORITY | 7)?;
    cmos_write(p, cmos::REG_B, reg_b(0))?;
    cmos_read(p, cmos::REG_C)
}
