//! The 16550A UART (a PC's COM port), after the National Semiconductor / TI PC16550D datasheet,
//! section 8 "Registers": Table II (register summary), Line Control, Programmable Baud
//! Generator, Line Status, FIFO Control, Interrupt Identification with Table IV (interrupt
//! priorities and resets), Interrupt Enable, Modem Control (loopback), Modem Status,
//! Scratchpad, and "FIFO Interrupt Mode Operation" (trigger levels, character timeout, the
//! delayed transmitter-empty interrupt).
//!
//! Why not rust-vmm's vm-superio `Serial`: it has no notion of time — its line status always
//! says "transmitter empty", so a guest's output is never paced to the programmed baud rate,
//! input cannot be delivered at line speed, and the FIFO character timeout cannot exist. bt86
//! needs all three as deterministic functions of virtual time (same guest, same input, same
//! interrupts at the same instructions). Its interrupt is also an edge notification (`Trigger`,
//! in practice an eventfd from vmm-sys-util, which its examples and tests depend on) rather than
//! a level gated by OUT2, and it models no FIFO trigger levels. Adapting it would mean rewriting
//! the parts that matter here, so this is our own model.
//!
//! Timing: one character time is (1 start + 5..8 data + parity + 1, 1½ or 2 stop bits) × divisor
//! × 16 / 1,843,200 Hz, rounded up to whole nanoseconds. A byte written to THR goes to the shift
//! register at once if it is idle, otherwise when the byte before it has left; LSR.THRE is set
//! when the holding register (FIFO) is empty, LSR.TEMT when the shift register is empty too.
//!
//! Deliberate deviations, each for a reason:
//!
//! - **Output time.** A byte reaches `out` when the guest writes it to THR (unless loopback is
//!   on), not when its last stop bit leaves: a guest that writes and then exits at once must not
//!   lose output. The line timing is still modelled in full for what the guest can see.
//! - **Full transmitter.** A byte written to THR while the FIFO (or, in 16450 mode, the holding
//!   register) is full is dropped and never reaches `out`; in 16450 mode the chip would
//!   overwrite the holding register instead — either way one byte is lost.
//! - **Delayed THRE interrupt in both modes.** The datasheet delays the transmitter-empty
//!   interrupt by one character time when a byte goes straight into an idle shift register
//!   ("FIFO Interrupt Mode Operation"). We apply that rule in 16450 mode too, so every
//!   interrupt-driven driver is paced at line speed from its first byte.
//! - **Divisor 0** counts as 65536 (the 16-bit baud-rate down-counter wraps), never a division
//!   by zero. Power-on divisor: 1 (115,200 baud) — the chip leaves it undefined, and guests that
//!   print without programming the port should not crawl at the slowest rate.
//! - **Modem inputs.** Outside loopback the far end is a terminal that is always there: CTS, DSR
//!   and DCD asserted, RI off. The host cannot change them, so their delta bits only move when
//!   loopback is entered or left, or when the MCR outputs change in loopback.
//! - **Errors.** Parity, framing and break are never set (bytes arrive whole and clean); LSR
//!   bit 7 (error in RCVR FIFO) is therefore always 0.
//! - **Interrupt output.** The IRQ line is "an interrupt is pending (IIR bit 0 = 0) and MCR.OUT2",
//!   as the PC's OUT2-gated buffer wires it. On the chip, loopback forces the OUT2 pin inactive,
//!   which would cut the PC's IRQ; we keep the MCR bit as the gate in loopback too.
//! - **Loopback receive.** In loopback the serial input is disconnected, so [`Uart::can_receive`]
//!   says no and [`Uart::receive`] drops the byte; transmitted bytes reach the receiver when
//!   their character time has passed.
//! - **DMA mode** (FCR bit 3) is stored and has no effect: the PC does not wire the DMA pins.
//! - Writes to LSR and MSR (factory test on the chip) are ignored.

use std::collections::VecDeque;
use std::io::Write;

use crate::{IrqLine, Nanos, RestoreError};

// Register offsets from the base port (Table II). With LCR.DLAB = 1, offsets 0 and 1 are the
// divisor latch.
/// Receiver Buffer (read), Transmitter Holding (write), Divisor Latch LSB (DLAB = 1).
const RBR_THR_DLL: u16 = 0;
/// Interrupt Enable, Divisor Latch MSB (DLAB = 1).
const IER_DLM: u16 = 1;
/// Interrupt Identification (read), FIFO Control (write).
const IIR_FCR: u16 = 2;
/// Line Control.
const LCR: u16 = 3;
/// Modem Control.
const MCR: u16 = 4;
/// Line Status.
const LSR: u16 = 5;
/// Modem Status.
const MSR: u16 = 6;
/// Scratchpad.
const SCR: u16 = 7;

/// IER: enable received data available (and, with FIFOs, character timeout) interrupt.
const IER_ERBFI: u8 = 0x01;
/// IER: enable transmitter holding register empty interrupt.
const IER_ETBEI: u8 = 0x02;
/// IER: enable receiver line status interrupt.
const IER_ELSI: u8 = 0x04;
/// IER: enable modem status interrupt.
const IER_EDSSI: u8 = 0x08;
/// IER bits that exist (the upper four read 0).
const IER_MASK: u8 = 0x0F;

/// IIR bit 0: no interrupt pending.
const IIR_NO_INT: u8 = 0x01;
/// IIR: receiver line status (priority 1).
const IIR_RLS: u8 = 0x06;
/// IIR: received data available (priority 2).
const IIR_RDA: u8 = 0x04;
/// IIR: character timeout indication (priority 2, FIFO mode only).
const IIR_CTI: u8 = 0x0C;
/// IIR: transmitter holding register empty (priority 3).
const IIR_THRE: u8 = 0x02;
/// IIR: modem status (priority 4).
const IIR_MS: u8 = 0x00;
/// IIR bits 6–7: set when FCR bit 0 enabled the FIFOs.
const IIR_FIFOS_ENABLED: u8 = 0xC0;

/// FCR: FIFO enable.
const FCR_FIFO_ENABLE: u8 = 0x01;
/// FCR: RCVR FIFO reset (self-clearing).
const FCR_RCVR_RESET: u8 = 0x02;
/// FCR: XMIT FIFO reset (self-clearing).
const FCR_XMIT_RESET: u8 = 0x04;
/// FCR: DMA mode select.
const FCR_DMA_MODE: u8 = 0x08;
/// FCR: RCVR trigger level (bits 6–7: 1, 4, 8, 14 bytes).
const FCR_RCVR_TRIGGER: u8 = 0xC0;

/// LCR: word length select (bits 0–1: 5..8 data bits).
const LCR_WLS: u8 = 0x03;
/// LCR: number of stop bits (0: 1; 1: 1½ with 5-bit words, else 2).
const LCR_STB: u8 = 0x04;
/// LCR: parity enable.
const LCR_PEN: u8 = 0x08;
/// LCR: divisor latch access bit.
const LCR_DLAB: u8 = 0x80;

/// MCR: data terminal ready.
const MCR_DTR: u8 = 0x01;
/// MCR: request to send.
const MCR_RTS: u8 = 0x02;
/// MCR: OUT1.
const MCR_OUT1: u8 = 0x04;
/// MCR: OUT2 (on a PC: gates the interrupt output onto the IRQ line).
const MCR_OUT2: u8 = 0x08;
/// MCR: loopback.
const MCR_LOOP: u8 = 0x10;
/// MCR bits that exist (bits 5–7 read 0).
const MCR_MASK: u8 = 0x1F;

/// LSR: data ready.
const LSR_DR: u8 = 0x01;
/// LSR: overrun error.
const LSR_OE: u8 = 0x02;
/// LSR: transmitter holding register (XMIT FIFO) empty.
const LSR_THRE: u8 = 0x20;
/// LSR: transmitter empty (holding register and shift register).
const LSR_TEMT: u8 = 0x40;

/// MSR: delta clear to send.
const MSR_DCTS: u8 = 0x01;
/// MSR: delta data set ready.
const MSR_DDSR: u8 = 0x02;
/// MSR: trailing edge of ring indicator.
const MSR_TERI: u8 = 0x04;
/// MSR: delta data carrier detect.
const MSR_DDCD: u8 = 0x08;
/// MSR: the four delta bits.
const MSR_DELTAS: u8 = 0x0F;
/// MSR: clear to send.
const MSR_CTS: u8 = 0x10;
/// MSR: data set ready.
const MSR_DSR: u8 = 0x20;
/// MSR: ring indicator.
const MSR_RI: u8 = 0x40;
/// MSR: data carrier detect.
const MSR_DCD: u8 = 0x80;

/// The modem inputs outside loopback: a terminal that is always connected and ready.
const EXTERNAL_MODEM_INPUTS: u8 = MSR_CTS | MSR_DSR | MSR_DCD;

/// Depth of each FIFO.
pub const FIFO_DEPTH: usize = 16;
/// The PC's UART clock (1.8432 MHz crystal), before the ÷16 of the baud generator.
const XTAL_HZ: u64 = 1_843_200;
/// Character times of silence before the character timeout indication.
const TIMEOUT_CHARS: u64 = 4;
/// Power-on divisor latch value (115,200 baud); see the module header.
const POWER_ON_DIVISOR: u16 = 1;

/// Everything a 16550A holds, as plain data ([`Uart::save`], [`Uart::restore`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UartState {
    /// Divisor latch, low byte.
    pub dll: u8,
    /// Divisor latch, high byte.
    pub dlm: u8,
    /// Interrupt enable register (bits 0–3).
    pub ier: u8,
    /// FIFO control as programmed: enable, DMA mode and trigger bits (0 when FIFOs are off).
    pub fcr: u8,
    /// Line control register.
    pub lcr: u8,
    /// Modem control register (bits 0–4).
    pub mcr: u8,
    /// Scratchpad register.
    pub scr: u8,
    /// Modem status delta bits (MSR bits 0–3); bits 4–7 follow from MCR and loopback.
    pub msr_deltas: u8,
    /// LSR.OE: a character was lost since LSR was last read.
    pub overrun: bool,
    /// The last byte the guest took from the receiver (what RBR shows when it is empty).
    pub rbr: u8,
    /// RCVR FIFO, oldest first (at most 1 byte without FIFOs: the receiver buffer).
    pub rx: VecDeque<u8>,
    /// XMIT FIFO, oldest first (at most 1 byte without FIFOs: the holding register).
    pub tx: VecDeque<u8>,
    /// The byte in the transmitter shift register, if any.
    pub tsr: Option<u8>,
    /// When the byte in the shift register has been sent.
    pub tsr_done: Nanos,
    /// The THRE interrupt source is latched (cleared by an IIR read that reports it or a THR
    /// write).
    pub thre_interrupt: bool,
    /// A delayed THRE interrupt becomes pending at this time.
    pub thre_interrupt_at: Option<Nanos>,
    /// When the last character arrived at the receiver (for pacing input).
    pub last_rx: Option<Nanos>,
    /// The last receiver activity (a character arrived or the guest read one): the character
    /// timeout counts from here.
    pub rx_activity: Nanos,
    /// The latest time the device has seen.
    pub now: Nanos,
}

impl UartState {
    /// The state after a master reset, at time 0.
    fn power_on() -> UartState {
        let [dll, dlm] = POWER_ON_DIVISOR.to_le_bytes();
        UartState {
            dll,
            dlm,
            ier: 0,
            fcr: 0,
            lcr: 0,
            mcr: 0,
            scr: 0,
            msr_deltas: 0,
            overrun: false,
            rbr: 0,
            rx: VecDeque::with_capacity(FIFO_DEPTH),
            tx: VecDeque::with_capacity(FIFO_DEPTH),
            tsr: None,
            tsr_done: 0,
            thre_interrupt: false,
            thre_interrupt_at: None,
            last_rx: None,
            rx_activity: 0,
            now: 0,
        }
    }
}

/// A 16550A UART at one base port (COM1 0x3F8 / IRQ 4, COM2 0x2F8 / IRQ 3: the machine picks).
pub struct Uart {
    base: u16,
    out: Box<dyn Write>,
    st: UartState,
}

impl std::fmt::Debug for Uart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uart").field("base", &self.base).field("state", &self.st).finish_non_exhaustive()
    }
}

impl Uart {
    /// A UART at `base` (eight ports) whose transmitted bytes go to `out`.
    pub fn new(base: u16, out: Box<dyn Write>) -> Uart {
        Uart { base, out, st: UartState::power_on() }
    }

    /// The base port.
    pub fn base(&self) -> u16 {
        self.base
    }

    /// Reads the register at `port` (an absolute port number, base..=base + 7); other ports
    /// read 0xFF.
    pub fn read(&mut self, port: u16, now: Nanos, irq: &mut dyn IrqLine) -> u8 {
        self.sync(now);
        let dlab = self.st.lcr & LCR_DLAB != 0;
        let value = match port.wrapping_sub(self.base) {
            RBR_THR_DLL if dlab => self.st.dll,
            RBR_THR_DLL => self.read_rbr(),
            IER_DLM if dlab => self.st.dlm,
            IER_DLM => self.st.ier,
            IIR_FCR => self.read_iir(),
            LCR => self.st.lcr,
            MCR => self.st.mcr,
            LSR => self.read_lsr(),
            MSR => self.read_msr(),
            SCR => self.st.scr,
            _ => 0xFF,
        };
        self.update_irq(irq);
        value
    }

    /// Writes `value` to the register at `port` (an absolute port number); writes to other
    /// ports are ignored.
    pub fn write(&mut self, port: u16, value: u8, now: Nanos, irq: &mut dyn IrqLine) {
        self.sync(now);
        let dlab = self.st.lcr & LCR_DLAB != 0;
        match port.wrapping_sub(self.base) {
            RBR_THR_DLL if dlab => self.st.dll = value,
            RBR_THR_DLL => self.write_thr(value),
            IER_DLM if dlab => self.st.dlm = value,
            IER_DLM => self.write_ier(value),
            IIR_FCR => self.write_fcr(value),
            LCR => self.st.lcr = value,
            MCR => self.write_mcr(value),
            SCR => self.st.scr = value,
            // LSR and MSR writes (factory test) and foreign ports: ignored.
            _ => {}
        }
        self.update_irq(irq);
    }

    /// Lets time pass up to `now`: bytes leave the shift register, interrupts become pending.
    pub fn advance(&mut self, now: Nanos, irq: &mut dyn IrqLine) {
        self.sync(now);
        self.update_irq(irq);
    }

    /// When the UART next needs [`Uart::advance`]: a byte leaving the shift register, a delayed
    /// THRE interrupt, or a character timeout. Never earlier than the latest time it has seen.
    pub fn next_deadline(&self) -> Option<Nanos> {
        let st = &self.st;
        let mut deadline: Option<Nanos> = None;
        let mut consider = |t: Nanos| deadline = Some(deadline.map_or(t, |d| d.min(t)));
        if st.tsr.is_some() {
            consider(st.tsr_done);
        }
        if let Some(at) = st.thre_interrupt_at {
            consider(at);
        }
        if st.ier & IER_ERBFI != 0 && self.fifos_enabled() && self.below_trigger() {
            let at = self.timeout_at();
            if at > st.now {
                consider(at);
            }
        }
        deadline.map(|d| d.max(st.now))
    }

    /// Whether the machine may deliver the next input byte at `now`: the receiver has room and
    /// at least one character time (at the programmed rate) has passed since the last byte
    /// arrived, so scripted input arrives at line speed. Always false in loopback, where the
    /// serial input is disconnected.
    pub fn can_receive(&self, now: Nanos) -> bool {
        if self.loopback() || self.st.rx.len() >= self.fifo_capacity() {
            return false;
        }
        match self.st.last_rx {
            None => true,
            Some(t) => now >= t.saturating_add(self.char_time()),
        }
    }

    /// A byte arrives on the serial input at `now`. If the receiver is full it is lost and
    /// LSR.OE is set; in loopback it is ignored.
    pub fn receive(&mut self, byte: u8, now: Nanos, irq: &mut dyn IrqLine) {
        self.sync(now);
        if !self.loopback() {
            let at = self.st.now;
            self.receive_char(byte, at);
        }
        self.update_irq(irq);
    }

    /// Flushes `out`; errors (a closed pipe) are ignored.
    pub fn flush(&mut self) {
        let _ = self.out.flush();
    }

    /// The level of the interrupt output as the PC wires it: an interrupt is pending and
    /// MCR.OUT2 is set.
    pub fn irq_level(&self) -> bool {
        self.st.mcr & MCR_OUT2 != 0 && self.pending_interrupt().is_some()
    }

    /// The device state.
    pub fn save(&self) -> UartState {
        self.st.clone()
    }

    /// Replaces the device state with `state` (the output stream stays).
    pub fn restore(&mut self, state: &UartState) -> Result<(), RestoreError> {
        let invalid = |what: String| Err(RestoreError::Invalid { device: "uart", what });
        let fifo_bits = FCR_FIFO_ENABLE | FCR_DMA_MODE | FCR_RCVR_TRIGGER;
        if state.fcr & !fifo_bits != 0 || (state.fcr & FCR_FIFO_ENABLE == 0 && state.fcr != 0) {
            return invalid(format!("FCR {:#04x}", state.fcr));
        }
        if state.ier & !IER_MASK != 0 {
            return invalid(format!("IER {:#04x}", state.ier));
        }
        if state.mcr & !MCR_MASK != 0 {
            return invalid(format!("MCR {:#04x}", state.mcr));
        }
        if state.msr_deltas & !MSR_DELTAS != 0 {
            return invalid(format!("MSR deltas {:#04x}", state.msr_deltas));
        }
        let capacity = if state.fcr & FCR_FIFO_ENABLE != 0 { FIFO_DEPTH } else { 1 };
        if state.rx.len() > capacity || state.tx.len() > capacity {
            return invalid(format!(
                "{} received and {} queued bytes with room for {capacity}",
                state.rx.len(),
                state.tx.len()
            ));
        }
        self.st = state.clone();
        Ok(())
    }

    // --- time ---

    /// One character time at the programmed rate and frame, in nanoseconds (at least 1).
    fn char_time(&self) -> Nanos {
        let divisor = match u16::from_le_bytes([self.st.dll, self.st.dlm]) {
            0 => 65536,
            d => u64::from(d),
        };
        let data_bits = 5 + u64::from(self.st.lcr & LCR_WLS);
        let parity_bits = u64::from(self.st.lcr & LCR_PEN != 0);
        let stop_half_bits = match (self.st.lcr & LCR_STB != 0, data_bits) {
            (false, _) => 2,
            (true, 5) => 3,
            (true, _) => 4,
        };
        let half_bits = 2 * (1 + data_bits + parity_bits) + stop_half_bits;
        // bit time = divisor × 16 / XTAL seconds; at most 24 half bits × 65536 × 16 × 10⁹
        // ≈ 2.5 × 10¹⁶, well inside u64.
        (half_bits * divisor * 16 * 1_000_000_000).div_ceil(2 * XTAL_HZ)
    }

    /// When the character timeout indication is (or was) due.
    fn timeout_at(&self) -> Nanos {
        self.st.rx_activity.saturating_add(TIMEOUT_CHARS * self.char_time())
    }

    /// Brings the transmitter up to `now` (the latest time seen, if `now` is earlier).
    fn sync(&mut self, now: Nanos) {
        let now = now.max(self.st.now);
        self.st.now = now;
        // At most FIFO_DEPTH + 1 iterations: each one empties the shift register.
        while let Some(byte) = self.st.tsr {
            if self.st.tsr_done > now {
                break;
            }
            let sent_at = self.st.tsr_done;
            self.st.tsr = None;
            if self.loopback() {
                self.receive_char(byte, sent_at);
            }
            if let Some(next) = self.st.tx.pop_front() {
                self.st.tsr = Some(next);
                self.st.tsr_done = sent_at.saturating_add(self.char_time());
                if self.st.tx.is_empty() {
                    self.st.thre_interrupt = true;
                }
            }
        }
        if self.st.thre_interrupt_at.is_some_and(|at| at <= now) {
            self.st.thre_interrupt_at = None;
            self.st.thre_interrupt = true;
        }
    }

    // --- receiver ---

    fn fifos_enabled(&self) -> bool {
        self.st.fcr & FCR_FIFO_ENABLE != 0
    }

    fn loopback(&self) -> bool {
        self.st.mcr & MCR_LOOP != 0
    }

    /// Bytes each direction holds: the FIFO depth, or the one holding/buffer register.
    fn fifo_capacity(&self) -> usize {
        if self.fifos_enabled() {
            FIFO_DEPTH
        } else {
            1
        }
    }

    /// The received-data-available threshold.
    fn trigger_level(&self) -> usize {
        if !self.fifos_enabled() {
            return 1;
        }
        match self.st.fcr >> 6 {
            0 => 1,
            1 => 4,
            2 => 8,
            _ => 14,
        }
    }

    /// Data sits in the receiver below the trigger level (where only the timeout reports it).
    fn below_trigger(&self) -> bool {
        !self.st.rx.is_empty() && self.st.rx.len() < self.trigger_level()
    }

    /// A complete character reaches the receiver at `at`.
    fn receive_char(&mut self, byte: u8, at: Nanos) {
        let capacity = self.fifo_capacity();
        if self.st.rx.len() >= capacity {
            self.st.overrun = true;
            // 16450 mode: the new character overwrites the receiver buffer; FIFO mode: the
            // character in the shift register is overwritten and the FIFO keeps its bytes.
            if !self.fifos_enabled() {
                if let Some(slot) = self.st.rx.back_mut() {
                    *slot = byte;
                }
            }
        } else {
            self.st.rx.push_back(byte);
        }
        self.st.last_rx = Some(at);
        self.st.rx_activity = self.st.rx_activity.max(at);
    }

    fn read_rbr(&mut self) -> u8 {
        if let Some(byte) = self.st.rx.pop_front() {
            self.st.rbr = byte;
            self.st.rx_activity = self.st.now;
        }
        self.st.rbr
    }

    // --- transmitter ---

    fn write_thr(&mut self, value: u8) {
        self.st.thre_interrupt = false;
        self.st.thre_interrupt_at = None;
        if self.st.tx.len() >= self.fifo_capacity() {
            return;
        }
        if !self.loopback() {
            // A closed pipe must not stop the guest, nor lose any state.
            let _ = self.out.write_all(&[value]);
            if value == b'\n' {
                let _ = self.out.flush();
            }
        }
        self.st.tx.push_back(value);
        if self.st.tsr.is_none() {
            self.st.tsr = self.st.tx.pop_front();
            self.st.tsr_done = self.st.now.saturating_add(self.char_time());
            if self.st.tx.is_empty() {
                // Delayed THRE: the holding register emptied straight into an idle shift
                // register, so the interrupt waits one character time.
                self.st.thre_interrupt_at = Some(self.st.tsr_done);
            }
        }
    }

    fn write_fcr(&mut self, value: u8) {
        let enable = value & FCR_FIFO_ENABLE != 0;
        if enable != self.fifos_enabled() {
            // Changing FCR bit 0 clears both FIFOs.
            self.st.rx.clear();
            self.clear_tx();
        }
        if !enable {
            // The other bits are only programmed while bit 0 is written as 1.
            self.st.fcr = 0;
            return;
        }
        if value & FCR_RCVR_RESET != 0 {
            self.st.rx.clear();
        }
        if value & FCR_XMIT_RESET != 0 {
            self.clear_tx();
        }
        self.st.fcr = value & (FCR_FIFO_ENABLE | FCR_DMA_MODE | FCR_RCVR_TRIGGER);
    }

    /// Empties the XMIT FIFO (not the shift register): the holding register is empty again.
    fn clear_tx(&mut self) {
        if !self.st.tx.is_empty() {
            self.st.tx.clear();
            self.st.thre_interrupt = true;
            self.st.thre_interrupt_at = None;
        }
    }

    fn write_ier(&mut self, value: u8) {
        let newly_enabled = value & !self.st.ier;
        self.st.ier = value & IER_MASK;
        // Enabling the THRE interrupt while the holding register is empty raises it at once.
        if newly_enabled & IER_ETBEI != 0 && self.st.tx.is_empty() {
            self.st.thre_interrupt = true;
            self.st.thre_interrupt_at = None;
        }
    }

    // --- status and modem ---

    fn read_lsr(&mut self) -> u8 {
        let st = &mut self.st;
        let mut lsr = 0;
        if !st.rx.is_empty() {
            lsr |= LSR_DR;
        }
        if st.overrun {
            lsr |= LSR_OE;
        }
        if st.tx.is_empty() {
            lsr |= LSR_THRE;
            if st.tsr.is_none() {
                lsr |= LSR_TEMT;
            }
        }
        st.overrun = false;
        lsr
    }

    /// MSR bits 4–7: the modem inputs, or in loopback the MCR outputs wired back.
    fn modem_inputs(&self) -> u8 {
        if !self.loopback() {
            return EXTERNAL_MODEM_INPUTS;
        }
        let mcr = self.st.mcr;
        let mut inputs = 0;
        for (out, input) in [(MCR_RTS, MSR_CTS), (MCR_DTR, MSR_DSR), (MCR_OUT1, MSR_RI), (MCR_OUT2, MSR_DCD)]
        {
            if mcr & out != 0 {
                inputs |= input;
            }
        }
        inputs
    }

    fn write_mcr(&mut self, value: u8) {
        let before = self.modem_inputs();
        self.st.mcr = value & MCR_MASK;
        let after = self.modem_inputs();
        let changed = before ^ after;
        let mut deltas = 0;
        for (input, delta) in [(MSR_CTS, MSR_DCTS), (MSR_DSR, MSR_DDSR), (MSR_DCD, MSR_DDCD)] {
            if changed & input != 0 {
                deltas |= delta;
            }
        }
        if before & MSR_RI != 0 && after & MSR_RI == 0 {
            deltas |= MSR_TERI;
        }
        self.st.msr_deltas |= deltas;
    }

    fn read_msr(&mut self) -> u8 {
        let msr = self.modem_inputs() | self.st.msr_deltas;
        self.st.msr_deltas = 0;
        msr
    }

    // --- interrupts ---

    /// The highest-priority enabled interrupt pending (Table IV), as its IIR code.
    fn pending_interrupt(&self) -> Option<u8> {
        let st = &self.st;
        if st.ier & IER_ELSI != 0 && st.overrun {
            return Some(IIR_RLS);
        }
        if st.ier & IER_ERBFI != 0 && !st.rx.is_empty() {
            if st.rx.len() >= self.trigger_level() {
                return Some(IIR_RDA);
            }
            if self.fifos_enabled() && st.now >= self.timeout_at() {
                return Some(IIR_CTI);
            }
        }
        if st.ier & IER_ETBEI != 0 && st.thre_interrupt {
            return Some(IIR_THRE);
        }
        if st.ier & IER_EDSSI != 0 && st.msr_deltas != 0 {
            return Some(IIR_MS);
        }
        None
    }

    fn read_iir(&mut self) -> u8 {
        let fifo_bits = if self.fifos_enabled() { IIR_FIFOS_ENABLED } else { 0 };
        match self.pending_interrupt() {
            Some(id) => {
                if id == IIR_THRE {
                    // Reading IIR while it reports THRE clears that interrupt.
                    self.st.thre_interrupt = false;
                }
                id | fifo_bits
            }
            None => IIR_NO_INT | fifo_bits,
        }
    }

    fn update_irq(&self, irq: &mut dyn IrqLine) {
        irq.set_level(self.irq_level());
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::{LevelProbe, NoIrq};

    const COM1: u16 = 0x3F8;

    /// An output that the test can look into.
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

    /// An output whose pipe is closed.
    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _buf: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
    }

    fn uart() -> (Uart, SharedOut) {
        let out = SharedOut::default();
        (Uart::new(COM1, Box::new(out.clone())), out)
    }

    /// 115,200 baud, 8N1: 10 bits × 16 / 1.8432 MHz.
    const CHAR_8N1_115200: Nanos = 86_806;

    struct Port<'a> {
        u: &'a mut Uart,
        irq: LevelProbe,
        now: Nanos,
    }

    impl Port<'_> {
        fn rd(&mut self, off: u16) -> u8 {
            self.u.read(COM1 + off, self.now, &mut self.irq)
        }
        fn wr(&mut self, off: u16, v: u8) {
            self.u.write(COM1 + off, v, self.now, &mut self.irq);
        }
        fn at(&mut self, now: Nanos) {
            self.now = now;
            self.u.advance(now, &mut self.irq);
        }
    }

    fn port(u: &mut Uart) -> Port<'_> {
        Port { u, irq: LevelProbe::default(), now: 0 }
    }

    #[test]
    fn register_access_with_dlab_and_scratch() {
        let (mut u, _) = uart();
        let mut p = port(&mut u);
        assert_eq!(p.rd(LCR), 0x00);
        assert_eq!(p.rd(LSR), LSR_THRE | LSR_TEMT);
        assert_eq!(p.rd(IIR_FCR), IIR_NO_INT);
        p.wr(LCR, LCR_DLAB | 0x03);
        p.wr(RBR_THR_DLL, 0x0C);
        p.wr(IER_DLM, 0x00);
        assert_eq!((p.rd(RBR_THR_DLL), p.rd(IER_DLM)), (0x0C, 0x00));
        p.wr(LCR, 0x03);
        p.wr(IER_DLM, 0xFF);
        assert_eq!(p.rd(IER_DLM), IER_MASK, "upper IER bits read 0");
        p.wr(IER_DLM, 0);
        p.wr(SCR, 0x5A);
        assert_eq!(p.rd(SCR), 0x5A);
        p.wr(MCR, 0xFF);
        assert_eq!(p.rd(MCR), MCR_MASK);
        // Divisor 12 survived the DLAB switch; 9600 baud 8N1 is 1.0417 ms per character.
        assert_eq!(p.u.char_time(), 1_041_667);
        // Foreign ports.
        assert_eq!(p.u.read(0x2F8, 0, &mut NoIrq), 0xFF);
        p.u.write(0x400, 1, 0, &mut NoIrq);
        assert_eq!(p.u.base(), COM1);
    }

    #[test]
    fn thr_bytes_reach_out_and_line_status_follows_the_shift_register() {
        let (mut u, out) = uart();
        let mut p = port(&mut u);
        p.wr(LCR, 0x03);
        p.wr(RBR_THR_DLL, b'h');
        // The byte went straight into the shift register: holding register empty, not TEMT.
        assert_eq!(p.rd(LSR), LSR_THRE);
        p.wr(RBR_THR_DLL, b'i');
        assert_eq!(p.rd(LSR), 0, "second byte waits in the holding register");
        assert_eq!(p.u.next_deadline(), Some(CHAR_8N1_115200));
        p.at(CHAR_8N1_115200 - 1);
        assert_eq!(p.rd(LSR), 0);
        p.at(CHAR_8N1_115200);
        assert_eq!(p.rd(LSR), LSR_THRE);
        p.at(2 * CHAR_8N1_115200);
        assert_eq!(p.rd(LSR), LSR_THRE | LSR_TEMT);
        assert_eq!(p.u.next_deadline(), None);
        assert_eq!(out.0.borrow().as_slice(), b"hi");
    }

    #[test]
    fn thre_interrupt_after_the_character_time_cleared_by_reading_iir() {
        let (mut u, _) = uart();
        let mut p = port(&mut u);
        p.wr(LCR, 0x03);
        p.wr(MCR, MCR_OUT2);
        p.wr(IER_DLM, IER_ETBEI);
        // Enabling ETBEI with an empty holding register raises THRE at once.
        assert!(p.irq.high);
        p.wr(RBR_THR_DLL, b'x');
        assert!(!p.irq.high, "writing THR clears the THRE interrupt");
        p.at(CHAR_8N1_115200 - 1);
        assert!(!p.irq.high);
        assert_eq!(p.rd(IIR_FCR), IIR_NO_INT);
        p.at(CHAR_8N1_115200);
        assert!(p.irq.high);
        assert_eq!(p.rd(IIR_FCR), IIR_THRE);
        assert!(!p.irq.high, "reading IIR clears THRE");
        assert_eq!(p.rd(IIR_FCR), IIR_NO_INT);
    }

    #[test]
    fn fifo_mode_paces_sixteen_bytes() {
        let (mut u, out) = uart();
        let mut p = port(&mut u);
        p.wr(LCR, 0x03);
        p.wr(IIR_FCR, FCR_FIFO_ENABLE | FCR_RCVR_RESET | FCR_XMIT_RESET);
        assert_eq!(p.rd(IIR_FCR), IIR_FIFOS_ENABLED | IIR_NO_INT);
        p.wr(MCR, MCR_OUT2);
        for b in 0..17u8 {
            p.wr(RBR_THR_DLL, b);
        }
        // One in the shift register, 16 in the FIFO.
        p.wr(RBR_THR_DLL, 0xEE);
        assert_eq!(out.0.borrow().len(), 17, "a byte written into a full FIFO is lost");
        p.wr(IER_DLM, IER_ETBEI);
        assert!(!p.irq.high);
        p.at(16 * CHAR_8N1_115200 - 1);
        assert_eq!(p.rd(LSR) & LSR_THRE, 0);
        p.at(16 * CHAR_8N1_115200);
        assert_eq!(p.rd(LSR), LSR_THRE);
        assert!(p.irq.high);
        p.at(17 * CHAR_8N1_115200);
        assert_eq!(p.rd(LSR), LSR_THRE | LSR_TEMT);
    }

    #[test]
    fn received_data_available_at_the_trigger_level() {
        let (mut u, _) = uart();
        let mut p = port(&mut u);
        p.wr(LCR, 0x03);
        p.wr(IIR_FCR, FCR_FIFO_ENABLE | 0x40); // trigger level 4
        p.wr(MCR, MCR_OUT2);
        p.wr(IER_DLM, IER_ERBFI);
        for (i, b) in b"abc".iter().enumerate() {
            let now = i as Nanos * CHAR_8N1_115200;
            assert!(p.u.can_receive(now));
            p.u.receive(*b, now, &mut p.irq);
        }
        assert!(!p.u.can_receive(2 * CHAR_8N1_115200 + 1), "input is paced at line speed");
        assert!(!p.irq.high, "three bytes are below the trigger level");
        p.now = 3 * CHAR_8N1_115200;
        p.u.receive(b'd', p.now, &mut p.irq);
        assert!(p.irq.high);
        assert_eq!(p.rd(IIR_FCR), IIR_FIFOS_ENABLED | IIR_RDA);
        assert_eq!(p.rd(LSR) & LSR_DR, LSR_DR);
        assert_eq!(p.rd(RBR_THR_DLL), b'a');
        assert!(!p.irq.high, "below the trigger level again");
        assert_eq!([p.rd(0), p.rd(0), p.rd(0)], *b"bcd");
        assert_eq!(p.rd(LSR) & LSR_DR, 0);
        assert_eq!(p.rd(RBR_THR_DLL), b'd', "an empty RBR shows the last byte");
    }

    #[test]
    fn character_timeout_after_four_character_times() {
        let (mut u, _) = uart();
        let mut p = port(&mut u);
        p.wr(LCR, 0x03);
        p.wr(IIR_FCR, FCR_FIFO_ENABLE | 0xC0); // trigger level 14
        p.wr(MCR, MCR_OUT2);
        p.wr(IER_DLM, IER_ERBFI);
        p.now = 1000;
        p.u.receive(b'a', 1000, &mut p.irq);
        p.now = 1000 + CHAR_8N1_115200;
        p.u.receive(b'b', p.now, &mut p.irq);
        let due = p.now + 4 * CHAR_8N1_115200;
        assert_eq!(p.u.next_deadline(), Some(due));
        p.at(due - 1);
        assert!(!p.irq.high);
        p.at(due);
        assert!(p.irq.high);
        assert_eq!(p.rd(IIR_FCR), IIR_FIFOS_ENABLED | IIR_CTI);
        assert_eq!(p.rd(RBR_THR_DLL), b'a');
        assert!(!p.irq.high, "reading the FIFO clears the timeout and restarts its timer");
        assert_eq!(p.u.next_deadline(), Some(due + 4 * CHAR_8N1_115200));
        p.at(due + 4 * CHAR_8N1_115200);
        assert_eq!(p.rd(IIR_FCR), IIR_FIFOS_ENABLED | IIR_CTI);
        assert_eq!(p.rd(RBR_THR_DLL), b'b');
        assert_eq!(p.u.next_deadline(), None);
        assert_eq!(p.rd(IIR_FCR), IIR_FIFOS_ENABLED | IIR_NO_INT);
    }

    #[test]
    fn overrun_in_fifo_and_16450_modes() {
        let (mut u, _) = uart();
        let mut p = port(&mut u);
        p.wr(LCR, 0x03);
        // 16450 mode: one receiver buffer; the new byte overwrites it.
        p.u.receive(1, 0, &mut p.irq);
        assert!(!p.u.can_receive(1_000_000_000));
        p.u.receive(2, 0, &mut p.irq);
        assert_eq!(p.rd(LSR) & (LSR_OE | LSR_DR), LSR_OE | LSR_DR);
        assert_eq!(p.rd(LSR) & LSR_OE, 0, "reading LSR clears OE");
        assert_eq!(p.rd(RBR_THR_DLL), 2);
        // FIFO mode: 16 bytes fit, the 17th is lost.
        p.wr(IIR_FCR, FCR_FIFO_ENABLE);
        p.wr(MCR, MCR_OUT2);
        p.wr(IER_DLM, IER_ELSI | IER_ERBFI);
        for b in 0..17u8 {
            p.u.receive(b, 0, &mut p.irq);
        }
        assert!(p.irq.high);
        assert_eq!(p.rd(IIR_FCR), IIR_FIFOS_ENABLED | IIR_RLS);
        assert_eq!(p.rd(LSR) & LSR_OE, LSR_OE);
        assert_eq!(p.rd(IIR_FCR), IIR_FIFOS_ENABLED | IIR_RDA, "line status cleared, data remains");
        let got: Vec<u8> = (0..16).map(|_| p.rd(RBR_THR_DLL)).collect();
        assert_eq!(got, (0..16).collect::<Vec<u8>>());
    }

    #[test]
    fn iir_priority_order() {
        let (mut u, _) = uart();
        let mut p = port(&mut u);
        p.wr(LCR, 0x03);
        p.wr(MCR, MCR_LOOP);
        p.wr(MCR, MCR_OUT2); // entering and leaving loopback toggles every modem input
        p.wr(IER_DLM, IER_MASK); // THRE too
        p.u.receive(1, 0, &mut p.irq);
        p.u.receive(2, 0, &mut p.irq); // overrun
        assert_eq!(p.rd(IIR_FCR), IIR_RLS);
        p.rd(LSR);
        assert_eq!(p.rd(IIR_FCR), IIR_RDA);
        p.rd(RBR_THR_DLL);
        assert_eq!(p.rd(IIR_FCR), IIR_THRE);
        assert_eq!(p.rd(IIR_FCR), IIR_MS, "THRE cleared by the read that reported it");
        assert!(p.irq.high);
        assert_eq!(p.rd(MSR) & MSR_DELTAS, MSR_DCTS | MSR_DDSR | MSR_DDCD);
        assert_eq!(p.rd(IIR_FCR), IIR_NO_INT);
        assert!(!p.irq.high);
    }

    #[test]
    fn loopback_returns_bytes_and_wires_mcr_to_msr() {
        let (mut u, out) = uart();
        let mut p = port(&mut u);
        p.wr(LCR, 0x03);
        p.wr(MCR, MCR_LOOP);
        assert_eq!(p.rd(MSR), MSR_DCTS | MSR_DDSR | MSR_DDCD, "inputs dropped, deltas set");
        p.wr(MCR, MCR_LOOP | MCR_DTR | MCR_RTS | MCR_OUT1 | MCR_OUT2);
        assert_eq!(p.rd(MSR), MSR_CTS | MSR_DSR | MSR_RI | MSR_DCD | MSR_DCTS | MSR_DDSR | MSR_DDCD);
        p.wr(MCR, MCR_LOOP | MCR_RTS);
        assert_eq!(p.rd(MSR), MSR_CTS | MSR_DDSR | MSR_TERI | MSR_DDCD);
        assert!(!p.u.can_receive(0), "serial input disconnected in loopback");
        p.u.receive(b'z', 0, &mut p.irq);
        p.wr(RBR_THR_DLL, 0xA5);
        assert_eq!(p.rd(LSR) & LSR_DR, 0);
        p.at(CHAR_8N1_115200);
        assert_eq!(p.rd(LSR) & LSR_DR, LSR_DR);
        assert_eq!(p.rd(RBR_THR_DLL), 0xA5);
        assert!(out.0.borrow().is_empty(), "nothing goes to out in loopback");
        p.wr(MCR, 0);
        assert_eq!(p.rd(MSR) & 0xF0, MSR_CTS | MSR_DSR | MSR_DCD);
    }

    #[test]
    fn out2_gates_the_irq_line() {
        let (mut u, _) = uart();
        let mut p = port(&mut u);
        p.wr(IER_DLM, IER_ETBEI);
        assert!(!p.irq.high);
        assert_eq!(p.rd(IIR_FCR), IIR_THRE, "pending, but not on the line");
        p.wr(IER_DLM, 0);
        p.wr(IER_DLM, IER_ETBEI);
        p.wr(MCR, MCR_OUT2);
        assert!(p.irq.high);
        p.wr(MCR, 0);
        assert!(!p.irq.high);
        p.wr(MCR, MCR_OUT2);
        assert!(p.irq.high);
        assert_eq!(p.irq.rising_edges, 2);
    }

    #[test]
    fn divisor_zero_counts_as_65536() {
        let (mut u, _) = uart();
        let mut p = port(&mut u);
        p.wr(LCR, LCR_DLAB | 0x03);
        p.wr(RBR_THR_DLL, 0);
        p.wr(IER_DLM, 0);
        p.wr(LCR, 0x03);
        // 10 bits × 65536 × 16 / 1,843,200 Hz = 5.688889 s.
        assert_eq!(p.u.char_time(), 5_688_888_889);
        p.wr(RBR_THR_DLL, b'.');
        assert_eq!(p.u.next_deadline(), Some(5_688_888_889));
        // 5 data bits and "2" stop bits: 1½ stop bits.
        p.wr(LCR, LCR_STB);
        assert_eq!(p.u.char_time(), (15 * 65536 * 16 * 1_000_000_000u64).div_ceil(2 * XTAL_HZ));
    }

    #[test]
    fn closed_output_is_swallowed() {
        let mut u = Uart::new(COM1, Box::new(Broken));
        let mut irq = LevelProbe::default();
        for (i, b) in b"one\ntwo\n".iter().enumerate() {
            let now = i as Nanos * 1_000_000;
            u.write(COM1, *b, now, &mut irq);
        }
        u.flush();
        assert_eq!(u.read(COM1 + LSR, 100_000_000, &mut irq), LSR_THRE | LSR_TEMT);
    }

    #[test]
    fn save_change_restore_compare() {
        let (mut u, _) = uart();
        let mut p = port(&mut u);
        p.wr(LCR, 0x03);
        p.wr(IIR_FCR, FCR_FIFO_ENABLE | 0x80);
        p.wr(MCR, MCR_OUT2 | MCR_DTR);
        p.wr(IER_DLM, IER_ERBFI | IER_ETBEI);
        p.wr(SCR, 0x42);
        for b in b"abc" {
            p.u.receive(*b, 0, &mut p.irq);
        }
        p.wr(RBR_THR_DLL, b'1');
        p.wr(RBR_THR_DLL, b'2');
        let saved = p.u.save();
        assert_eq!(saved.rx, VecDeque::from(b"abc".to_vec()));
        assert_eq!(saved.tx, VecDeque::from(vec![b'2']));
        // Change everything.
        p.at(10 * CHAR_8N1_115200);
        p.rd(RBR_THR_DLL);
        p.wr(SCR, 0);
        p.wr(IIR_FCR, 0);
        assert_ne!(p.u.save(), saved);
        p.u.restore(&saved).unwrap();
        assert_eq!(p.u.save(), saved);
        // A restored UART carries on where the saved one was.
        assert_eq!(p.u.next_deadline(), Some(CHAR_8N1_115200));
        p.now = 0;
        assert_eq!(p.rd(SCR), 0x42);
        assert_eq!(p.rd(RBR_THR_DLL), b'a');
        // Impossible states are refused.
        let mut bad = saved.clone();
        bad.rx.extend([0u8; 16]);
        assert!(p.u.restore(&bad).is_err());
        let mut bad = saved;
        bad.fcr = FCR_RCVR_TRIGGER;
        assert!(p.u.restore(&bad).is_err());
    }
}
