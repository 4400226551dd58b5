//! The interrupt kernels of `guest_images::kernels()` (`irq-…`: the 8254 timer and the 8259A,
//! the 16550A UART, the MC146818A RTC), booted as multiboot kernels under QEMU (`-kernel FILE`,
//! with COM1 present) and under bt86 (`bt86 run --kernel FILE`, the CLI binary).
//!
//! A kernel passes when it exits through isa-debug-exit with 0 (exit status 1) and prints no
//! `not ok` line. bt86 must pass every check; under QEMU the checks listed in
//! [`QEMU_KNOWN_WRONG`] (where QEMU 7.2's device models disagree with the datasheets) may fail.
//! Set `BT86_REQUIRE_QEMU=1` to make a missing QEMU an error rather than a skipped check.
//!
//! The kernels wait for real device time (the RTC kernel for about twelve seconds); checks on
//! rates use ranges that hold whether time follows the host's clock (QEMU) or the instruction
//! count (bt86).

mod common;
#[path = "common/kernels.rs"]
#[macro_use]
mod kernels;

use std::time::Duration;

use common::KnownWrong;

/// More instructions than any kernel needs.
const MAX_STEPS: &str = "4000000000";
/// How long a bt86 run may take before it is killed.
const BT86_TIMEOUT: Duration = Duration::from_secs(300);

/// Where QEMU 7.2 disagrees with the datasheets: kernel, check-name prefixes, why.
const QEMU_KNOWN_WRONG: &[KnownWrong] = &[
    (
        "irq-timer",
        &["mode 0 with gate 2 low"],
        "QEMU's 8254 ignores GATE in mode 0: counter 2 counts down and OUT2 goes high with gate 2 \
         (port 61h bit 0) low (Intel 82C54 datasheet, Mode 0: 'GATE = 0 disables counting')",
    ),
    (
        "irq-timer",
        &["mode 0: out2 low after the control word", "mode 2: out2 high after the control word"],
        "QEMU's 8254 does not set OUT when a control word is written: it keeps computing OUT from \
         the previous count and load time under the new mode (82C54 datasheet, Mode 0: 'OUT will \
         be initially low'; Mode 2: 'OUT will initially be high'; both after the control word)",
    ),
    (
        "irq-timer",
        &["read-back status: null count set after the control word"],
        "QEMU's 8254 always reports NULL COUNT = 0 in the read-back status (82C54 datasheet, Read-Back \
         Command: NULL COUNT is 1 from a control word or count write until the count is loaded into \
         the counting element)",
    ),
    (
        "irq-timer",
        &["bcd mode 2, count 1000: every count read is bcd"],
        "QEMU's 8254 counts in binary whatever the BCD bit of the control word says (82C54 datasheet, \
         control word bit 0: 'Binary Coded Decimal (BCD) Counter (4 Decades)')",
    ),
    (
        "irq-uart",
        &[
            "rts looped back to cts: modem status interrupt",
            "msr: dcd and cts set, delta cts",
            "msr 22h",
            "msr 13h",
            "msr 41h",
            "msr 04h",
            "msr 88h",
        ],
        "QEMU's 16550A in loopback mode returns the MSR status bits from MCR but never sets the \
         delta bits (DCTS, DDSR, TERI, DDCD) nor raises the modem status interrupt (PC16550D \
         datasheet, 8.6: in loopback 'the modem control interrupts are also operational, but the \
         interrupts' sources are now the lower four bits of the Modem Control Register')",
    ),
    (
        "irq-rtc",
        &["irq 8 masked at the slave after reaching ir2"],
        "QEMU's 8259A keeps an edge-triggered request latched in the IRR after the input goes low \
         again, so masking IRQ 8 at the slave after its request reached the master's IR2 still \
         makes the master acknowledge IR2, and the slave answers with a spurious IRQ 15 (Intel \
         8259A datasheet, 'Edge Triggered Mode and Level Triggered Mode': the IR inputs must remain \
         high until after the first INTA, otherwise the request is not seen as one)",
    ),
    (
        "irq-rtc",
        &["pie clear: pf still set"],
        "QEMU's MC146818 runs its periodic timer only while PIE is set, so PF stays clear with PIE \
         clear (MC146818A datasheet, register C: PF is set at the programmed rate 'independent of \
         the state of the PIE bit')",
    ),
];

/// Boots kernel `name` under QEMU (COM1 present, connected to nothing) and judges the run,
/// allowing for [`QEMU_KNOWN_WRONG`].
fn passes_in_qemu(name: &str) {
    kernels::passes_in_qemu(name, QEMU_KNOWN_WRONG, &["-serial", "null"]);
}

/// Boots kernel `name` with `bt86 run --kernel` and requires every check to pass.
fn passes_in_bt86(name: &str, engine: &str) {
    kernels::passes_in_bt86_engine(env!("CARGO_BIN_EXE_bt86"), name, MAX_STEPS, BT86_TIMEOUT, engine);
}

kernel_tests! {
    irq_timer => "irq-timer",
    irq_uart => "irq-uart",
    irq_rtc => "irq-rtc",
}

#[test]
fn every_irq_kernel_is_tested_here() {
    let names: Vec<&str> =
        guest_images::kernels().iter().map(|k| k.name).filter(|n| n.starts_with("irq-")).collect();
    assert_eq!(names, NAMES);
}
