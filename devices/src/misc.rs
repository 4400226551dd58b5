//! Small PC ports: system control port A (0x92), the POST code port (0x80), the Bochs/QEMU debug
//! console (0xE9), QEMU's isa-debug-exit (0xF4), the ACPI PM1a event and control registers
//! and PM timer of QEMU's PC (0x600–0x60B) and the AT's coprocessor-error logic (FERR# to
//! IRQ 13, cleared through port 0xF0).
//!
//! Sources: IBM PS/2 Hardware Interface Technical Reference, "System Control Port A" (bit 0
//! alternate hot reset, bit 1 alternate gate A20, bit 3 CMOS security lock, bits 6–7 fixed-disk
//! activity light); Bochs `port_e9_hack` / QEMU `-device isa-debugcon` (reads return 0xE9);
//! QEMU `-device isa-debug-exit,iobase=0xf4,iosize=4` (exit status `(value << 1) | 1`); ACPI
//! specification 6.5 §4.8.3.1 "PM1 Event Grouping" (status, write 1 to clear; enable) and
//! §4.8.3.2.1 "PM1 Control Registers" (SLP_TYP bits 10–12, SLP_EN bit 13, write-only)
//! with QEMU's PIIX4 PM, whose PM1a control block sits at 0x604 and whose soft-off state S5 is
//! SLP_TYP 0. Coprocessor errors: IBM PC AT Technical Reference, "Math Coprocessor" (the
//! 80287's ERROR output drives IRQ 13; an OUT to port 0F0h clears the latched busy/error
//! signal), and Intel SDM Vol. 1 Appendix D ("Guidelines for Writing x87 FPU Exception
//! Handlers", D.2.1: FERR# → IRQ 13, the write to port 0F0h asserts IGNNE# until FERR# drops).
//!
//! Deliberate deviations, each for a reason:
//!
//! - **Port 0x92 bit 0** requests a reset on every write with the bit set and reads back as 0:
//!   the reset it asks for has happened. (The PS/2 resets on the bit's rising edge, so a second
//!   reset needs a 0 written in between; the machine resets at once, so this never matters.)
//! - **Port 0x80** reads back the last code written (on many boards it reads 0xFF).
//! - **PM1a control**: SLP_TYP values other than 0 (sleep states) do nothing; the other bits
//!   (SCI_EN, GBL_RLS …) are stored and read back; SLP_EN reads 0.
//! - **PM timer** (ACPI §4.8.3.3): a free-running 24-bit counter at 3.579545 MHz derived from
//!   the machine's time, so it is as deterministic as virtual time; TMR_VAL_EXT is 0 (24 bits)
//!   and its overflow status never raises the SCI.
//! - **PM1a event block**: no fixed event (timer, power button, RTC alarm) exists, so PM1_STS
//!   always reads 0 and the SCI never fires; PM1_EN is stored and read back.

use std::io::Write;

use crate::{IrqLine, RestoreError};

/// System control port A.
pub const SYSTEM_CONTROL_A_PORT: u16 = 0x92;
/// POST code port.
pub const POST_CODE_PORT: u16 = 0x80;
/// Debug console port.
pub const DEBUGCON_PORT: u16 = 0xE9;
/// isa-debug-exit port.
pub const DEBUG_EXIT_PORT: u16 = 0xF4;
/// PM1a control register, low byte (high byte at the next port).
pub const PM1A_CNT_PORT: u16 = 0x604;
/// PM1a event block: PM1_STS at 0x600–0x601, PM1_EN at 0x602–0x603.
pub const PM1A_EVT_PORT: u16 = 0x600;
/// The ACPI power-management timer, PM_TMR (0x608–0x60B).
pub const PM_TMR_PORT: u16 = 0x608;
/// PM_TMR's rate (ACPI §4.8.3.3: 3.579545 MHz).
pub const PM_TIMER_HZ: u64 = 3_579_545;
/// Coprocessor error clear (any value written): asserts IGNNE# and drops IRQ 13.
pub const FPU_ERROR_CLEAR_PORT: u16 = 0xF0;

/// Port 0x92: alternate hot reset (write 1).
const SCA_FAST_RESET: u8 = 0x01;
/// Port 0x92: alternate gate A20.
const SCA_A20: u8 = 0x02;

/// What the debug console reads as, so software can detect it.
const DEBUGCON_READBACK: u8 = 0xE9;

/// PM1 control: sleep type (bits 10–12).
const PM1_SLP_TYP: u16 = 0x1C00;
/// PM1 control: sleep enable (bit 13, write-only).
const PM1_SLP_EN: u16 = 0x2000;
/// The SLP_TYP of soft-off (S5) on QEMU's PIIX4 PM.
const SLP_TYP_SOFT_OFF: u16 = 0;

/// Port 0x92's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemControlAState {
    /// The port's value (bit 0 always 0).
    pub value: u8,
    /// A reset was asked for and not yet taken.
    pub reset_request: bool,
}

/// System control port A (0x92): fast A20 and fast reset.
#[derive(Debug, Default)]
pub struct SystemControlA {
    st: SystemControlAState,
}

impl SystemControlA {
    /// The port at power-on: A20 gated off here, no reset pending.
    pub fn new() -> SystemControlA {
        SystemControlA::default()
    }

    /// Reads the port.
    pub fn read(&self) -> u8 {
        self.st.value
    }

    /// Writes the port: bit 1 gates A20, bit 0 = 1 asks for a reset; other bits are stored.
    pub fn write(&mut self, value: u8) {
        if value & SCA_FAST_RESET != 0 {
            self.st.reset_request = true;
        }
        self.st.value = value & !SCA_FAST_RESET;
    }

    /// The alternate A20 gate (bit 1).
    pub fn a20(&self) -> bool {
        self.st.value & SCA_A20 != 0
    }

    /// Whether the guest asked for a reset since the last call.
    pub fn take_reset_request(&mut self) -> bool {
        std::mem::take(&mut self.st.reset_request)
    }

    /// The device state.
    pub fn save(&self) -> SystemControlAState {
        self.st
    }

    /// Replaces the device state with `state`.
    pub fn restore(&mut self, state: &SystemControlAState) -> Result<(), RestoreError> {
        if state.value & SCA_FAST_RESET != 0 {
            return Err(RestoreError::Invalid { device: "port 0x92", what: "bit 0 stored as 1".into() });
        }
        self.st = *state;
        Ok(())
    }
}

/// The POST code port (0x80): firmware writes progress codes here.
#[derive(Debug, Default)]
pub struct PostCode {
    last: u8,
}

impl PostCode {
    /// No code written yet (reads 0).
    pub fn new() -> PostCode {
        PostCode::default()
    }

    /// Reads the last code.
    pub fn read(&self) -> u8 {
        self.last
    }

    /// Writes a code.
    pub fn write(&mut self, value: u8) {
        self.last = value;
    }

    /// The last code written.
    pub fn last(&self) -> u8 {
        self.last
    }

    /// The device state: the last code.
    pub fn save(&self) -> u8 {
        self.last
    }

    /// Replaces the device state with `last`.
    pub fn restore(&mut self, last: &u8) -> Result<(), RestoreError> {
        self.last = *last;
        Ok(())
    }
}

/// The Bochs/QEMU debug console (0xE9): each byte written goes to the output.
pub struct DebugCon {
    out: Box<dyn Write>,
}

impl std::fmt::Debug for DebugCon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DebugCon").finish_non_exhaustive()
    }
}

impl DebugCon {
    /// A debug console writing to `out`.
    pub fn new(out: Box<dyn Write>) -> DebugCon {
        DebugCon { out }
    }

    /// Reads 0xE9, the console's signature.
    pub fn read(&self) -> u8 {
        DEBUGCON_READBACK
    }

    /// Writes a byte to the output (flushed at each line feed); errors such as a closed pipe
    /// are ignored, so they cannot stop the guest.
    pub fn write(&mut self, value: u8) {
        let _ = self.out.write_all(&[value]);
        if value == b'\n' {
            let _ = self.out.flush();
        }
    }

    /// Flushes the output, ignoring errors.
    pub fn flush(&mut self) {
        let _ = self.out.flush();
    }
}

/// QEMU's isa-debug-exit (0xF4, 4 bytes wide): a write of `v` asks to end the run with exit
/// status `(v << 1) | 1`.
#[derive(Debug, Default)]
pub struct DebugExit {
    exit: Option<u32>,
}

impl DebugExit {
    /// No exit requested.
    pub fn new() -> DebugExit {
        DebugExit::default()
    }

    /// The guest wrote `value` (the whole access, up to 32 bits).
    pub fn write(&mut self, value: u32) {
        self.exit = Some(value);
    }

    /// The value written, if the guest asked to exit since the last call; the process exit
    /// status is `(v << 1) | 1`.
    pub fn take_exit(&mut self) -> Option<u32> {
        self.exit.take()
    }

    /// The device state: a pending exit.
    pub fn save(&self) -> Option<u32> {
        self.exit
    }

    /// Replaces the device state with `exit`.
    pub fn restore(&mut self, exit: &Option<u32>) -> Result<(), RestoreError> {
        self.exit = *exit;
        Ok(())
    }
}

/// The ACPI PM1a control register's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AcpiPowerControlState {
    /// PM1a_CNT as read back (SLP_EN always 0).
    pub pm1_cnt: u16,
    /// PM1a_EN.
    pub pm1_en: u16,
    /// A power-off was asked for and not yet taken.
    pub poweroff_request: bool,
}

/// The PM1a control register at 0x604–0x605: SLP_EN with SLP_TYP = 0 powers the machine off.
#[derive(Debug, Default)]
pub struct AcpiPowerControl {
    st: AcpiPowerControlState,
}

impl AcpiPowerControl {
    /// The register at power-on (0).
    pub fn new() -> AcpiPowerControl {
        AcpiPowerControl::default()
    }

    /// Reads byte `port` (PM1_STS 0x600–0x601, PM1_EN 0x602–0x603, PM1_CNT 0x604 low, 0x605
    /// high); other ports read 0xFF.
    pub fn read(&self, port: u16) -> u8 {
        let [low, high] = self.st.pm1_cnt.to_le_bytes();
        let [en_low, en_high] = self.st.pm1_en.to_le_bytes();
        match port {
            p if p == PM1A_EVT_PORT || p == PM1A_EVT_PORT + 1 => 0,
            p if p == PM1A_EVT_PORT + 2 => en_low,
            p if p == PM1A_EVT_PORT + 3 => en_high,
            PM1A_CNT_PORT => low,
            p if p == PM1A_CNT_PORT + 1 => high,
            _ => 0xFF,
        }
    }

    /// Writes byte `port` (a 16-bit write arrives as the low byte then the high byte). The
    /// sleep fields are all in the high byte, so it decides: SLP_EN with SLP_TYP 0 requests
    /// power-off.
    pub fn write(&mut self, port: u16, value: u8) {
        let [mut low, mut high] = self.st.pm1_cnt.to_le_bytes();
        let [en_low, en_high] = self.st.pm1_en.to_le_bytes();
        match port {
            p if p == PM1A_EVT_PORT + 2 => return self.st.pm1_en = u16::from_le_bytes([value, en_high]),
            p if p == PM1A_EVT_PORT + 3 => return self.st.pm1_en = u16::from_le_bytes([en_low, value]),
            PM1A_CNT_PORT => low = value,
            p if p == PM1A_CNT_PORT + 1 => high = value,
            _ => return,
        }
        let written = u16::from_le_bytes([low, high]);
        if port != PM1A_CNT_PORT
            && written & PM1_SLP_EN != 0
            && (written & PM1_SLP_TYP) >> 10 == SLP_TYP_SOFT_OFF
        {
            self.st.poweroff_request = true;
        }
        self.st.pm1_cnt = written & !PM1_SLP_EN;
    }

    /// Reads byte `port` of PM_TMR (0x608–0x60B) at time `now` (nanoseconds since power-on).
    pub fn read_timer(&self, port: u16, now: u64) -> u8 {
        let ticks = (u128::from(now) * u128::from(PM_TIMER_HZ) / 1_000_000_000) as u32 & 0x00FF_FFFF;
        let shift = 8 * u32::from(port.wrapping_sub(PM_TMR_PORT) & 3);
        (ticks >> shift) as u8
    }

    /// Whether the guest asked to power off since the last call.
    pub fn take_poweroff(&mut self) -> bool {
        std::mem::take(&mut self.st.poweroff_request)
    }

    /// The device state.
    pub fn save(&self) -> AcpiPowerControlState {
        self.st
    }

    /// Replaces the device state with `state`.
    pub fn restore(&mut self, state: &AcpiPowerControlState) -> Result<(), RestoreError> {
        if state.pm1_cnt & PM1_SLP_EN != 0 {
            return Err(RestoreError::Invalid { device: "acpi pm1a", what: "SLP_EN stored as 1".into() });
        }
        self.st = *state;
        Ok(())
    }
}

/// The AT's coprocessor-error logic between the CPU's FERR# output and IRQ 13.
///
/// IRQ 13 is high while FERR# is asserted and IGNNE# is not; a write to port 0xF0 asserts
/// IGNNE# (the latch), which drops IRQ 13 and stays until FERR# drops (the handler's FNCLEX).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FpuErrorState {
    /// The CPU's FERR# output as last seen.
    pub ferr: bool,
    /// IGNNE# latched by a write to port 0xF0.
    pub ignne: bool,
}

/// FERR# → IRQ 13 and the port-0xF0 latch (see [`FpuErrorState`]).
#[derive(Debug, Default)]
pub struct FpuError {
    st: FpuErrorState,
}

impl FpuError {
    /// FERR# deasserted, IGNNE# clear.
    pub fn new() -> FpuError {
        FpuError::default()
    }

    /// The CPU's FERR# output is `ferr` now: drives IRQ 13.
    pub fn set_ferr(&mut self, ferr: bool, irq: &mut dyn IrqLine) {
        if !ferr {
            self.st.ignne = false;
        }
        self.st.ferr = ferr;
        irq.set_level(self.st.ferr && !self.st.ignne);
    }

    /// A write to port 0xF0 (the value does not matter): IGNNE# while FERR# lasts.
    pub fn write(&mut self, irq: &mut dyn IrqLine) {
        self.st.ignne = self.st.ferr;
        irq.set_level(false);
    }

    /// The FERR# level last seen (the machine compares it with the CPU's to spot changes).
    pub fn ferr(&self) -> bool {
        self.st.ferr
    }

    /// The device state.
    pub fn save(&self) -> FpuErrorState {
        self.st
    }

    /// Replaces the device state with `state`.
    pub fn restore(&mut self, state: &FpuErrorState) -> Result<(), RestoreError> {
        self.st = *state;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::cmos::{Cmos, CmosState};
    use crate::i8042::I8042;
    use crate::uart::{Uart, UartState};
    use crate::{LevelProbe, Nanos};

    #[derive(Clone, Default)]
    struct SharedOut(Rc<RefCell<Vec<u8>>>);

    impl Write for SharedOut {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _buf: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn ferr_raises_irq13_until_port_f0_or_fnclex() {
        let mut d = FpuError::new();
        let mut irq = LevelProbe::default();
        d.set_ferr(true, &mut irq);
        assert!(irq.high);
        // The handler writes port 0xF0: IRQ 13 drops while FERR# stays asserted.
        d.write(&mut irq);
        assert!(!irq.high);
        d.set_ferr(true, &mut irq);
        assert!(!irq.high, "IGNNE# holds while FERR# lasts");
        // FNCLEX drops FERR#, which releases IGNNE#: the next error raises IRQ 13 again.
        d.set_ferr(false, &mut irq);
        d.set_ferr(true, &mut irq);
        assert_eq!((irq.high, irq.rising_edges), (true, 2));
        // Save → change → restore → compare.
        let saved = d.save();
        d.write(&mut irq);
        assert_ne!(d.save(), saved);
        d.restore(&saved).unwrap();
        assert_eq!(d.save(), saved);
    }

    #[test]
    fn system_control_a_fast_a20_and_reset() {
        let mut p = SystemControlA::new();
        assert!(!p.a20());
        p.write(SCA_A20 | 0x08);
        assert!(p.a20());
        assert_eq!(p.read(), SCA_A20 | 0x08, "other bits are stored");
        assert!(!p.take_reset_request());
        p.write(p.read() | SCA_FAST_RESET);
        assert!(p.take_reset_request());
        assert!(!p.take_reset_request());
        assert_eq!(p.read() & SCA_FAST_RESET, 0);
        assert!(p.a20());
        let saved = p.save();
        p.write(0);
        p.restore(&saved).unwrap();
        assert_eq!(p.save(), saved);
        assert!(p.a20());
        assert!(p.restore(&SystemControlAState { value: 1, reset_request: false }).is_err());
    }

    #[test]
    fn post_code_keeps_the_last_byte() {
        let mut p = PostCode::new();
        assert_eq!(p.read(), 0);
        p.write(0x12);
        p.write(0x34);
        assert_eq!((p.read(), p.last()), (0x34, 0x34));
        let saved = p.save();
        p.write(0);
        p.restore(&saved).unwrap();
        assert_eq!(p.last(), 0x34);
    }

    #[test]
    fn debugcon_writes_bytes_and_reads_e9() {
        let out = SharedOut::default();
        let mut d = DebugCon::new(Box::new(out.clone()));
        assert_eq!(d.read(), 0xE9);
        for b in b"ok\n" {
            d.write(*b);
        }
        d.flush();
        assert_eq!(out.0.borrow().as_slice(), b"ok\n");
        let mut broken = DebugCon::new(Box::new(Broken));
        broken.write(b'x');
        broken.write(b'\n');
        broken.flush();
        assert_eq!(broken.read(), 0xE9);
    }

    #[test]
    fn debug_exit_takes_the_whole_value() {
        let mut d = DebugExit::new();
        assert_eq!(d.take_exit(), None);
        d.write(0x1234_5678);
        assert_eq!(d.save(), Some(0x1234_5678));
        assert_eq!(d.take_exit(), Some(0x1234_5678));
        assert_eq!(d.take_exit(), None);
        d.restore(&Some(3)).unwrap();
        assert_eq!(d.take_exit(), Some(3));
    }

    #[test]
    fn pm_timer_counts_at_3_579545_mhz_in_24_bits() {
        let p = AcpiPowerControl::new();
        let at = |now| u32::from_le_bytes([0, 1, 2, 3].map(|i| p.read_timer(PM_TMR_PORT + i, now)));
        assert_eq!(at(0), 0);
        assert_eq!(at(1_000_000_000), 3_579_545);
        assert_eq!(at(1_000), 3);
        // 2^24 ticks take 4.687 s: the counter wraps.
        assert_eq!(at(5_000_000_000), (5 * 3_579_545) & 0xFF_FFFF);
        assert_eq!(p.read_timer(PM_TMR_PORT + 3, u64::MAX), 0);
    }

    #[test]
    fn acpi_event_block_status_reads_zero_and_enable_reads_back() {
        let mut p = AcpiPowerControl::new();
        p.write(PM1A_EVT_PORT, 0xFF);
        p.write(PM1A_EVT_PORT + 2, 0x21);
        p.write(PM1A_EVT_PORT + 3, 0x01);
        assert_eq!([p.read(0x600), p.read(0x601), p.read(0x602), p.read(0x603)], [0, 0, 0x21, 0x01]);
        assert!(!p.take_poweroff());
    }

    #[test]
    fn acpi_soft_off_through_split_writes() {
        let mut a = AcpiPowerControl::new();
        // SCI_EN alone: nothing.
        a.write(PM1A_CNT_PORT, 0x01);
        a.write(PM1A_CNT_PORT + 1, 0x00);
        assert!(!a.take_poweroff());
        assert_eq!((a.read(PM1A_CNT_PORT), a.read(PM1A_CNT_PORT + 1)), (0x01, 0x00));
        // SLP_TYP 5 (a sleep state on other chipsets) with SLP_EN: not soft-off here.
        let v: u16 = PM1_SLP_EN | (5 << 10);
        for (i, b) in v.to_le_bytes().into_iter().enumerate() {
            a.write(PM1A_CNT_PORT + i as u16, b);
        }
        assert!(!a.take_poweroff());
        assert_eq!(a.read(PM1A_CNT_PORT + 1), (5 << 2), "SLP_EN reads 0");
        // SLP_EN with SLP_TYP 0, as a 16-bit write split low then high: power off.
        for (i, b) in PM1_SLP_EN.to_le_bytes().into_iter().enumerate() {
            a.write(PM1A_CNT_PORT + i as u16, b);
        }
        assert!(a.take_poweroff());
        assert!(!a.take_poweroff());
        assert_eq!(a.read(0x606), 0xFF);
        a.write(0x606, 0xFF);
        let saved = a.save();
        a.write(PM1A_CNT_PORT, 0xAA);
        a.restore(&saved).unwrap();
        assert_eq!(a.save(), saved);
        let bad = AcpiPowerControlState { pm1_cnt: PM1_SLP_EN, pm1_en: 0, poweroff_request: false };
        assert!(a.restore(&bad).is_err());
    }

    /// A deterministic xorshift64 generator.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn byte(&mut self) -> u8 {
            self.next() as u8
        }
    }

    /// Everything the fuzzer drives, once.
    struct Platform {
        uart: Uart,
        uart_out: SharedOut,
        uart_irq: LevelProbe,
        cmos: Cmos,
        cmos_irq: LevelProbe,
        kbc: I8042,
        port92: SystemControlA,
        post: PostCode,
        debugcon: DebugCon,
        debug_exit: DebugExit,
        power: AcpiPowerControl,
    }

    impl Platform {
        fn new() -> Platform {
            let uart_out = SharedOut::default();
            Platform {
                uart: Uart::new(0x3F8, Box::new(uart_out.clone())),
                uart_out,
                uart_irq: LevelProbe::default(),
                cmos: Cmos::new(946_684_800, 64 << 20),
                cmos_irq: LevelProbe::default(),
                kbc: I8042::new(),
                port92: SystemControlA::new(),
                post: PostCode::new(),
                debugcon: DebugCon::new(Box::new(Broken)),
                debug_exit: DebugExit::new(),
                power: AcpiPowerControl::new(),
            }
        }

        fn check(&self, now: Nanos) {
            assert_eq!(self.uart_irq.high, self.uart.irq_level(), "UART line vs IIR && OUT2");
            assert_eq!(self.cmos_irq.high, self.cmos.irq_level(), "IRQ 8 vs IRQF");
            if let Some(d) = self.uart.next_deadline() {
                assert!(d >= now, "UART deadline {d} before {now}");
            }
            if let Some(d) = self.cmos.next_deadline(now) {
                assert!(d >= now, "RTC deadline {d} before {now}");
            }
        }
    }

    /// Runs the timed devices up to `target` the way the machine does: at each deadline on the
    /// way, and nowhere else.
    fn run_to(p: &mut Platform, now: &mut Nanos, target: Nanos) {
        for _ in 0..100 {
            let next = p.uart.next_deadline().into_iter().chain(p.cmos.next_deadline(*now)).min();
            match next {
                Some(d) if d <= target => {
                    *now = d;
                    p.uart.advance(d, &mut p.uart_irq);
                    p.cmos.advance(d, &mut p.cmos_irq);
                    p.check(d);
                }
                _ => return,
            }
        }
        panic!("deadlines keep coming before {target}");
    }

    /// One random step: a time step of some size, then a port access, input, or plain waiting.
    /// Returns the values read, so two platforms can be compared.
    fn step(p: &mut Platform, rng: &mut XorShift, now: &mut Nanos) -> Vec<u8> {
        let mut reads = Vec::new();
        let dt = match rng.below(100) {
            0..=59 => rng.below(2_000_000),
            60..=89 => rng.below(200_000_000),
            90..=97 => rng.below(1 << 40),
            98 => rng.below(1 << 50),
            _ => rng.below(1 << 55),
        };
        let target = now.saturating_add(dt);
        run_to(p, now, target);
        match rng.below(16) {
            // Wait without touching a port: no IRQ line may rise before the deadlines said.
            0..=2 => {
                let (uart_deadline, cmos_deadline) = (p.uart.next_deadline(), p.cmos.next_deadline(*now));
                let (uart_before, cmos_before) = (p.uart_irq, p.cmos_irq);
                // Sometimes land exactly on a deadline.
                let t = match (rng.below(2), uart_deadline.into_iter().chain(cmos_deadline).min()) {
                    (0, Some(d)) => d,
                    _ => target,
                };
                *now = t.max(*now);
                p.uart.advance(*now, &mut p.uart_irq);
                p.cmos.advance(*now, &mut p.cmos_irq);
                if uart_deadline.is_none_or(|d| *now < d) {
                    assert_eq!(p.uart_irq.high, uart_before.high, "UART IRQ moved before its deadline");
                }
                if cmos_deadline.is_none_or(|d| *now < d) {
                    assert!(
                        !p.cmos_irq.high || cmos_before.high,
                        "IRQ 8 rose before its deadline {cmos_deadline:?} at {now}"
                    );
                }
            }
            3..=7 => {
                *now = target;
                let port = 0x3F8 + rng.below(9) as u16;
                if rng.below(2) == 0 {
                    reads.push(p.uart.read(port, *now, &mut p.uart_irq));
                } else {
                    let value = rng.byte();
                    p.uart.write(port, value, *now, &mut p.uart_irq);
                }
            }
            8 => {
                *now = target;
                if p.uart.can_receive(*now) || rng.below(4) == 0 {
                    p.uart.receive(rng.byte(), *now, &mut p.uart_irq);
                }
            }
            9..=11 => {
                *now = target;
                let port = 0x70 + rng.below(3) as u16;
                if rng.below(2) == 0 {
                    reads.push(p.cmos.read(port, *now, &mut p.cmos_irq));
                } else {
                    // Mostly the clock's own registers.
                    let value =
                        if port == 0x70 && rng.below(4) != 0 { rng.byte() & 0x8F } else { rng.byte() };
                    p.cmos.write(port, value, *now, &mut p.cmos_irq);
                }
            }
            12 => {
                let port = [0x60, 0x64, 0x61][rng.below(3) as usize];
                if rng.below(2) == 0 {
                    reads.push(p.kbc.read(port));
                } else {
                    p.kbc.write(port, rng.byte());
                }
                reads.push(u8::from(p.kbc.a20()) | u8::from(p.kbc.take_reset_request()) << 1);
            }
            13 => {
                p.port92.write(rng.byte());
                p.post.write(rng.byte());
                reads.extend([p.port92.read(), p.post.read(), u8::from(p.port92.take_reset_request())]);
            }
            14 => {
                p.debugcon.write(rng.byte());
                p.debug_exit.write(rng.next() as u32);
                reads.push(p.debugcon.read());
                reads.extend(p.debug_exit.take_exit().unwrap_or(0).to_le_bytes());
            }
            _ => {
                let port = 0x603 + rng.below(4) as u16;
                p.power.write(port, rng.byte());
                reads.extend([p.power.read(port), u8::from(p.power.take_poweroff())]);
            }
        }
        p.check(*now);
        reads
    }

    #[test]
    fn fuzz_every_device_with_random_ports_values_and_time_jumps() {
        for seed in 1..=8u64 {
            let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let mut p = Platform::new();
            // The last seed runs at the far end of time, into saturation.
            let mut now: Nanos = if seed == 8 { u64::MAX - (1 << 50) } else { 0 };
            for _ in 0..20_000 {
                step(&mut p, &mut rng, &mut now);
            }
            // The run must have exercised the devices, not just survived them.
            assert!(p.uart_irq.rising_edges > 10 && !p.uart_out.0.borrow().is_empty(), "seed {seed}");
            if seed != 8 {
                assert!(p.cmos_irq.rising_edges > 0, "seed {seed}");
            }
        }
    }

    #[test]
    fn fuzzed_runs_are_deterministic_and_restored_copies_behave_the_same() {
        let run = |seed: u64| {
            let mut rng = XorShift(seed);
            let mut p = Platform::new();
            let mut now = 0;
            let mut reads = Vec::new();
            for _ in 0..5_000 {
                reads.extend(step(&mut p, &mut rng, &mut now));
            }
            (p, reads, now, rng.0)
        };
        let (mut a, reads_a, now, rng_state) = run(0x00C0_FFEE);
        let (_, reads_b, _, _) = run(0x00C0_FFEE);
        assert_eq!(reads_a, reads_b);

        // A second platform restored from the first one's state goes on identically.
        let mut b = Platform::new();
        let uart_state: UartState = a.uart.save();
        let cmos_state: CmosState = a.cmos.save();
        b.uart.restore(&uart_state).unwrap();
        b.cmos.restore(&cmos_state).unwrap();
        b.kbc.restore(&a.kbc.save()).unwrap();
        b.port92.restore(&a.port92.save()).unwrap();
        b.post.restore(&a.post.save()).unwrap();
        b.debug_exit.restore(&a.debug_exit.save()).unwrap();
        b.power.restore(&a.power.save()).unwrap();
        (b.uart_irq, b.cmos_irq) = (a.uart_irq, a.cmos_irq);
        a.uart_out.0.borrow_mut().clear();
        let (mut rng_a, mut rng_b) = (XorShift(rng_state), XorShift(rng_state));
        let (mut now_a, mut now_b) = (now, now);
        for _ in 0..5_000 {
            assert_eq!(step(&mut a, &mut rng_a, &mut now_a), step(&mut b, &mut rng_b, &mut now_b));
        }
        assert_eq!(a.uart.save(), b.uart.save());
        assert_eq!(a.cmos.save(), b.cmos.save());
        assert_eq!(a.kbc.save(), b.kbc.save());
        assert_eq!(*a.uart_out.0.borrow(), *b.uart_out.0.borrow());
    }
}
