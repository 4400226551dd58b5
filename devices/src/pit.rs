//! The 8254 programmable interval timer of a PC, with the timer bits of port 0x61.
//!
//! Follows the Intel 8254 datasheet (order 231164): "Control Word Format" (SC, RW, M, BCD),
//! "Write Operations" (the write flip-flop, count 0 = 2^16 or 10^4 in BCD), "Read Operations"
//! ("Counter Latch Command", "Read-Back Command", "Status Byte", the read flip-flop), "Mode
//! Definitions" (modes 0–5, with 6 and 7 aliasing 2 and 3), "Operation Common to All Modes"
//! (control word resets, gate sampling and triggers, counters wrapping after terminal count) and
//! the table of minimum initial counts. Port 0x61 is the PIIX/PIIX4 "NMI Status and Control"
//! register; only the bits that belong to the timer are modelled.
//!
//! Time: the counters' CLK is 1,193,182 Hz. The number of CLK pulses by virtual time `now` is
//! `floor(now * 1193182 / 10^9)` in 128-bit integers, so the same `now` always gives the same
//! count, and pulse `k` happens at the first nanosecond where that number reaches `k`. A counter
//! keeps its state as of a pulse number and a closed form from there: how far it has counted since
//! its count was loaded (`pos`), with whole periods of modes 2 and 3 skipped by a remainder, so
//! advancing any distance costs the same few operations.
//!
//! Wiring of the PC: the gates of counters 0 and 1 are tied high; counter 2's gate is port 0x61
//! bit 0; OUT0 drives IRQ0 (a level the PIC edge-detects); OUT2 reads back in port 0x61 bit 5.
//!
//! Deliberate deviations and choices where the datasheet is silent, with reasons:
//!
//! - **Power-on state.** The datasheet leaves it undefined; each counter starts as if it had just
//!   received a mode 0, LSB-then-MSB, binary control word with no count: OUT low, not counting, so
//!   no timer interrupt happens until the guest programs the counter.
//! - **Illegal counts of 1 in modes 2 and 3** (the minimum there is 2): OUT stays high and the
//!   counter reloads 1 on every pulse. In mode 2 the low pulse is decoded from CE = 1 after a
//!   decrement, which never happens when every pulse reloads; in mode 3 the low half-cycle of a count
//!   of 1 is (1 - 1) / 2 = 0 pulses long. Either way OUT makes no edges, so no timer interrupts.
//! - **Mode 3 odd counts read back as the datasheet describes them**: N - 1 is loaded and decremented
//!   by two, and the extra pulse of the high half-cycle reads 0. (Some 8254 parts load N and
//!   decrement by one first; the OUT waveform is the same.)
//! - **Mode 2/3 with a low gate when the count is written**: the count is still loaded on the next
//!   pulse, but counting waits for the gate, and the gate's rising edge reloads anyway; the OUT
//!   waveform is the datasheet's, only the count read while the gate is low may differ.
//! - **Mode 4 strobe with the gate going low during it**: the strobe still ends after one pulse.
//! - **A control word releases a pending count latch and status latch** ("all control logic is
//!   immediately reset"); some emulators keep the latch.
//! - **A BCD count with a digit above 9** counts each decade exactly as the hardware's 4-bit decade
//!   counters would (an invalid digit counts down to 0 before wrapping to 9).
//! - **Reads of port 0x43** return 0xFF: the 8254 does not drive the bus for A1A0 = 11.
//! - **Port 0x61 bits 2, 3, 6 and 7 read 0**: no PCI SERR# or IOCHK# sources exist, so the NMI
//!   status bits 6/7 are never set, and the NMI enables (bits 2/3) are not kept. Bit 4, the refresh
//!   request toggle, flips every 15.085 µs of virtual time, derived from `now` alone.
//! - **Edges between calls are not lost**: if OUT0 rose and fell again inside one call's time step
//!   (the machine did not stop at [`Pit::next_deadline`]), the IRQ0 line is pulsed so the PIC still
//!   latches the edge; several such edges coalesce, as they would in the PIC's IRR.
//! - **Time going backwards** (a `now` smaller than one already seen) is treated as no time passing.

use crate::{IrqLine, Nanos, RestoreError};

/// The counters' input clock, in Hz.
pub const CLOCK_HZ: u64 = 1_193_182;
const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// Counter 0 data port (OUT0 is IRQ0).
pub const COUNTER0_PORT: u16 = 0x40;
/// Counter 1 data port (DRAM refresh on the original PC).
pub const COUNTER1_PORT: u16 = 0x41;
/// Counter 2 data port (the speaker).
pub const COUNTER2_PORT: u16 = 0x42;
/// Control word register (write only).
pub const CONTROL_PORT: u16 = 0x43;
/// NMI Status and Control register (the PC's "port B").
pub const NMI_SC_PORT: u16 = 0x61;

/// Port 0x61 bit 0: TIM2 gate (counter 2's GATE).
const NMI_SC_TIM2_GATE: u8 = 0x01;
/// Port 0x61 bit 1: speaker data enable.
const NMI_SC_SPKR_DAT_EN: u8 = 0x02;
/// Port 0x61 bit 4: refresh cycle toggle (read only).
const NMI_SC_REF_TOGGLE: u8 = 0x10;
/// Port 0x61 bit 5: counter 2's OUT (read only).
const NMI_SC_TIM2_OUT: u8 = 0x20;
/// The refresh request toggle's half period, in nanoseconds.
const REFRESH_TOGGLE_NANOS: u64 = 15_085;

/// Control word SC1–SC0: which counter (3 = read-back command).
const CONTROL_SC_SHIFT: u8 = 6;
/// Control word RW1–RW0 (0 = counter latch command).
const CONTROL_RW_SHIFT: u8 = 4;
/// Control word bits kept per counter and reported in the status byte: RW, M2–M0, BCD.
const CONTROL_PROGRAMMED: u8 = 0x3F;
/// Control word BCD bit.
const CONTROL_BCD: u8 = 0x01;
/// SC value of the read-back command.
const SC_READ_BACK: u8 = 3;
/// Read-back: COUNT (active low): latch the count of the selected counters.
const READ_BACK_NOT_COUNT: u8 = 0x20;
/// Read-back: STATUS (active low): latch the status of the selected counters.
const READ_BACK_NOT_STATUS: u8 = 0x10;
/// Read-back: CNT0 (CNT1 and CNT2 follow).
const READ_BACK_CNT0: u8 = 0x02;
/// Status byte: OUTPUT.
const STATUS_OUTPUT: u8 = 0x80;
/// Status byte: NULL COUNT.
const STATUS_NULL_COUNT: u8 = 0x40;

/// Saved phase values (see [`PitCounterState::phase`]).
const PHASE_IDLE: u8 = 0;
const PHASE_ARMED: u8 = 1;
const PHASE_LOAD: u8 = 2;
const PHASE_COUNT: u8 = 3;

/// CLK pulses that have happened by virtual time `now`.
fn pulses_at(now: Nanos) -> u64 {
    // At most u64::MAX * 1193182 / 10^9, which fits in u64.
    (u128::from(now) * u128::from(CLOCK_HZ) / NANOS_PER_SECOND) as u64
}

/// The virtual time of CLK pulse `pulse`: the first nanosecond by which it has happened.
fn time_of_pulse(pulse: u64) -> Option<Nanos> {
    let t = (u128::from(pulse) * NANOS_PER_SECOND).div_ceil(u128::from(CLOCK_HZ));
    Nanos::try_from(t).ok()
}

/// The number of states of a counter: 2^16 in binary, 10^4 in BCD.
fn modulus(bcd: bool) -> u64 {
    if bcd {
        10_000
    } else {
        65_536
    }
}

/// The number of decrements that bring the raw counter value `raw` to zero.
fn weight(raw: u16, bcd: bool) -> u64 {
    if bcd {
        (0..4).fold(0, |acc, digit| acc + u64::from((raw >> (4 * digit)) & 0xF) * 10u64.pow(digit))
    } else {
        u64::from(raw)
    }
}

/// The number of pulses a count of `raw` lasts: a count of 0 is the largest, 2^16 or 10^4.
fn span(raw: u16, bcd: bool) -> u64 {
    match weight(raw, bcd) {
        0 => modulus(bcd),
        w => w,
    }
}

/// The raw counter value after `k` decrements from `raw`.
fn decrement(raw: u16, k: u64, bcd: bool) -> u16 {
    if !bcd {
        return raw.wrapping_sub(k as u16);
    }
    // Four decade counters. Digit i first borrows when everything below it has reached zero and
    // wraps (decrement number `below + 1`), then every 10^i decrements. A digit counts down to 0
    // (from whatever value it holds, even above 9), then wraps to 9.
    let mut result = 0u16;
    let mut below = 0u64;
    for i in 0..4 {
        let digit = u64::from((raw >> (4 * i)) & 0xF);
        let place = 10u64.pow(i);
        let borrows = if i == 0 {
            k
        } else if k <= below {
            0
        } else {
            1 + (k - below - 1) / place
        };
        let value = if borrows <= digit { digit - borrows } else { 9 - (borrows - digit - 1) % 10 };
        result |= (value as u16) << (4 * i);
        below += digit * place;
    }
    result
}

/// RW: how the count is read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Least significant byte only.
    Lsb,
    /// Most significant byte only.
    Msb,
    /// Least significant byte, then most significant byte.
    Word,
}

/// Where a counter is in its cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Control word written, no count yet (or mode 0 between the two bytes of a count): the
    /// counter element holds still.
    Idle,
    /// Modes 1 and 5: a count is written, waiting for the first trigger.
    Armed,
    /// The count register goes into the counter element on the next pulse.
    Load,
    /// Counting from the loaded count.
    Count,
}

/// One of the three counters.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Counter {
    /// Bits 5–0 of the last control word (RW, M2–M0, BCD), as the status byte reports them.
    control: u8,
    /// The count register (CR) as last completely written.
    cr: u16,
    /// The LSB of a two-byte count, written while the MSB is awaited.
    staged_lsb: u8,
    /// Write flip-flop: the next count byte is the MSB.
    write_msb_next: bool,
    /// Read flip-flop: the next count byte read is the MSB.
    read_msb_next: bool,
    /// The output latch (OL) holds a latched count.
    latched_count: Option<u16>,
    /// A latched status byte.
    latched_status: Option<u8>,
    /// NULL COUNT: the CR was written and has not reached the counter element yet.
    null_count: bool,
    /// The GATE input.
    gate: bool,
    phase: Phase,
    /// The counter element outside `Phase::Count`.
    held_ce: u16,
    /// OUT outside `Phase::Count`.
    held_out: bool,
    /// The count loaded at the start of this cycle (mode 3: of this half-cycle).
    active: u16,
    /// Pulses counted since that load (the load pulse itself is 0).
    pos: u64,
    /// Mode 3: OUT is in its low half-cycle.
    low_half: bool,
}

impl Counter {
    /// Power-on: as after a mode 0, LSB-then-MSB, binary control word.
    fn new() -> Self {
        Self {
            control: 0x30,
            cr: 0,
            staged_lsb: 0,
            write_msb_next: false,
            read_msb_next: false,
            latched_count: None,
            latched_status: None,
            null_count: true,
            gate: true,
            phase: Phase::Idle,
            held_ce: 0,
            held_out: false,
            active: 0,
            pos: 0,
            low_half: false,
        }
    }

    fn access(&self) -> Access {
        match (self.control >> CONTROL_RW_SHIFT) & 3 {
            1 => Access::Lsb,
            2 => Access::Msb,
            _ => Access::Word,
        }
    }

    /// The mode, with 6 and 7 read as 2 and 3.
    fn mode(&self) -> u8 {
        match (self.control >> 1) & 7 {
            6 => 2,
            7 => 3,
            m => m,
        }
    }

    fn bcd(&self) -> bool {
        self.control & CONTROL_BCD != 0
    }

    fn span(&self, raw: u16) -> u64 {
        span(raw, self.bcd())
    }

    /// Mode 3: the length of the current half-cycle.
    fn half_len(&self) -> u64 {
        let n = self.span(self.active);
        if self.low_half {
            n / 2
        } else {
            n.div_ceil(2)
        }
    }

    /// The counter element (CE) now.
    fn ce(&self) -> u16 {
        if self.phase != Phase::Count {
            return self.held_ce;
        }
        let bcd = self.bcd();
        if self.mode() == 3 {
            let odd = self.span(self.active) & 1;
            decrement(self.active, odd + 2 * self.pos, bcd)
        } else {
            decrement(self.active, self.pos, bcd)
        }
    }

    /// OUT now.
    fn out(&self) -> bool {
        if self.phase != Phase::Count {
            return self.held_out;
        }
        let n = self.span(self.active);
        match self.mode() {
            0 | 1 => self.pos >= n,
            // Low for the one pulse with CE = 1, unless the gate is low.
            2 => !(self.gate && n >= 2 && self.pos == n - 1),
            3 => !self.gate || !self.low_half,
            _ => self.pos != n,
        }
    }

    fn status(&self) -> u8 {
        let mut status = self.control;
        if self.out() {
            status |= STATUS_OUTPUT;
        }
        if self.null_count {
            status |= STATUS_NULL_COUNT;
        }
        status
    }

    /// Freezes CE and OUT at their present values before leaving `Phase::Count`.
    fn hold(&mut self) {
        self.held_ce = self.ce();
        self.held_out = self.out();
        self.low_half = false;
    }

    /// The CLK pulse that transfers CR to CE.
    fn load(&mut self) {
        self.phase = Phase::Count;
        self.active = self.cr;
        self.pos = 0;
        self.low_half = false;
        self.null_count = false;
    }

    /// Lets `n` CLK pulses pass with the gate steady.
    fn run(&mut self, mut n: u64) {
        if n == 0 {
            return;
        }
        match self.phase {
            Phase::Idle | Phase::Armed => return,
            Phase::Load => {
                self.load();
                n -= 1;
            }
            Phase::Count => {}
        }
        if n == 0 {
            return;
        }
        match self.mode() {
            0 | 4 => {
                if self.gate {
                    self.pos = self.pos.saturating_add(n);
                } else if self.mode() == 4 && self.pos == self.span(self.active) {
                    self.pos += 1;
                }
            }
            1 | 5 => self.pos = self.pos.saturating_add(n),
            2 => {
                if self.gate {
                    self.run_rate_generator(n);
                }
            }
            _ => {
                if self.gate {
                    self.run_square_wave(n);
                }
            }
        }
    }

    /// Mode 2: the cycle ends with a reload from CR; after that every cycle is alike.
    fn run_rate_generator(&mut self, n: u64) {
        let left = self.span(self.active) - self.pos;
        if n < left {
            self.pos += n;
            return;
        }
        self.load();
        self.pos = (n - left) % self.span(self.cr);
    }

    /// Mode 3: each half-cycle ends with a reload from CR; after that every period is alike.
    fn run_square_wave(&mut self, n: u64) {
        let left = self.half_len() - self.pos;
        if n < left {
            self.pos += n;
            return;
        }
        let next_low = !self.low_half;
        self.load();
        let period = self.span(self.cr);
        let high = period.div_ceil(2);
        let start = if next_low { high } else { 0 };
        let t = (start + (n - left)) % period;
        if t < high {
            self.pos = t;
        } else {
            self.low_half = true;
            self.pos = t - high;
        }
    }

    /// Pulses until OUT next changes on its own (with the gate steady), if it ever does.
    fn next_change(&self) -> Option<u64> {
        match self.phase {
            Phase::Idle | Phase::Armed => None,
            Phase::Load => {
                let mut loaded = self.clone();
                loaded.run(1);
                if loaded.out() != self.out() {
                    Some(1)
                } else {
                    loaded.next_change().map(|k| k + 1)
                }
            }
            Phase::Count => self.next_change_counting(),
        }
    }

    fn next_change_counting(&self) -> Option<u64> {
        let n = self.span(self.active);
        let pos = self.pos;
        match self.mode() {
            0 => (self.gate && pos < n).then(|| n - pos),
            1 => (pos < n).then(|| n - pos),
            4 | 5 => {
                if pos == n {
                    Some(1)
                } else if pos < n && (self.gate || self.mode() == 5) {
                    Some(n - pos)
                } else {
                    None
                }
            }
            2 => {
                if !self.gate {
                    None
                } else if n >= 2 {
                    Some(if pos < n - 1 { n - 1 - pos } else { 1 })
                } else {
                    // A count of 1: OUT stays high; the reload on the next pulse takes CR.
                    let next = self.span(self.cr);
                    (next >= 2).then_some(next)
                }
            }
            _ => {
                if !self.gate {
                    None
                } else if self.low_half || self.span(self.cr) >= 2 {
                    Some(self.half_len() - pos)
                } else {
                    // The next low half-cycle is empty (a count of 1): OUT stays high for good.
                    None
                }
            }
        }
    }

    /// Whether OUT rises at some pulse among the next `n`.
    fn rises_within(&self, n: u64) -> bool {
        let mut probe = self.clone();
        let mut left = n;
        for _ in 0..2 {
            let Some(k) = probe.next_change() else {
                return false;
            };
            if k > left {
                return false;
            }
            probe.run(k);
            left -= k;
            if probe.out() {
                return true;
            }
        }
        false
    }

    fn write_control(&mut self, value: u8) {
        self.hold();
        self.control = value & CONTROL_PROGRAMMED;
        self.write_msb_next = false;
        self.read_msb_next = false;
        self.latched_count = None;
        self.latched_status = None;
        self.null_count = true;
        self.phase = Phase::Idle;
        self.held_out = self.mode() != 0;
    }

    fn latch_count(&mut self) {
        if self.latched_count.is_none() {
            self.latched_count = Some(self.ce());
        }
    }

    fn latch_status(&mut self) {
        if self.latched_status.is_none() {
            self.latched_status = Some(self.status());
        }
    }

    fn write_count(&mut self, value: u8) {
        match self.access() {
            Access::Lsb => self.count_written(u16::from(value)),
            Access::Msb => self.count_written(u16::from(value) << 8),
            Access::Word if !self.write_msb_next => {
                self.staged_lsb = value;
                self.write_msb_next = true;
                if self.mode() == 0 {
                    // Mode 0: the first byte stops counting (and a new count restarts OUT low).
                    self.hold();
                    self.held_out = false;
                    self.phase = Phase::Idle;
                }
            }
            Access::Word => {
                self.write_msb_next = false;
                self.count_written(u16::from(self.staged_lsb) | (u16::from(value) << 8));
            }
        }
    }

    fn count_written(&mut self, count: u16) {
        self.cr = count;
        self.null_count = true;
        match self.mode() {
            0 => {
                self.hold();
                self.held_out = false;
                self.phase = Phase::Load;
            }
            4 => {
                self.hold();
                self.phase = Phase::Load;
            }
            // A new count waits for the next trigger (1, 5) or the end of the cycle (2, 3).
            1 | 5 if self.phase == Phase::Idle => self.phase = Phase::Armed,
            2 | 3 if self.phase == Phase::Idle => self.phase = Phase::Load,
            _ => {}
        }
    }

    fn set_gate(&mut self, high: bool) {
        if high == self.gate {
            return;
        }
        if high && self.mode() != 0 && self.mode() != 4 && self.phase != Phase::Idle {
            // A trigger: (re)load on the next pulse.
            self.hold();
            self.phase = Phase::Load;
        }
        self.gate = high;
    }

    /// A read of the counter's data port; `ce` is the counter element at the time of the read.
    fn read(&mut self, ce: u16) -> u8 {
        if let Some(status) = self.latched_status.take() {
            return status;
        }
        let value = self.latched_count.unwrap_or(ce);
        match self.access() {
            Access::Lsb => {
                self.latched_count = None;
                value as u8
            }
            Access::Msb => {
                self.latched_count = None;
                (value >> 8) as u8
            }
            Access::Word => {
                let msb = self.read_msb_next;
                self.read_msb_next = !msb;
                if msb {
                    self.latched_count = None;
                    (value >> 8) as u8
                } else {
                    value as u8
                }
            }
        }
    }

    fn save(&self) -> PitCounterState {
        PitCounterState {
            control: self.control,
            cr: self.cr,
            staged_lsb: self.staged_lsb,
            write_msb_next: self.write_msb_next,
            read_msb_next: self.read_msb_next,
            latched_count: self.latched_count,
            latched_status: self.latched_status,
            null_count: self.null_count,
            gate: self.gate,
            phase: match self.phase {
                Phase::Idle => PHASE_IDLE,
                Phase::Armed => PHASE_ARMED,
                Phase::Load => PHASE_LOAD,
                Phase::Count => PHASE_COUNT,
            },
            held_ce: self.held_ce,
            held_out: self.held_out,
            active: self.active,
            pos: self.pos,
            low_half: self.low_half,
        }
    }

    fn from_saved(state: &PitCounterState, index: usize) -> Result<Self, RestoreError> {
        let bad = |what: String| invalid(format!("counter {index}: {what}"));
        let phase = match state.phase {
            PHASE_IDLE => Phase::Idle,
            PHASE_ARMED => Phase::Armed,
            PHASE_LOAD => Phase::Load,
            PHASE_COUNT => Phase::Count,
            other => return Err(bad(format!("phase {other}"))),
        };
        if state.control & !CONTROL_PROGRAMMED != 0 || state.control >> CONTROL_RW_SHIFT == 0 {
            return Err(bad(format!("control {:#04x}", state.control)));
        }
        let counter = Self {
            control: state.control,
            cr: state.cr,
            staged_lsb: state.staged_lsb,
            write_msb_next: state.write_msb_next,
            read_msb_next: state.read_msb_next,
            latched_count: state.latched_count,
            latched_status: state.latched_status,
            null_count: state.null_count,
            gate: state.gate,
            phase,
            held_ce: state.held_ce,
            held_out: state.held_out,
            active: state.active,
            pos: state.pos,
            low_half: state.low_half,
        };
        if counter.access() != Access::Word && (state.write_msb_next || state.read_msb_next) {
            return Err(bad("byte flip-flop set for a one-byte access".to_string()));
        }
        if index < 2 && !state.gate {
            return Err(bad("gate low (tied high on a PC)".to_string()));
        }
        let mode = counter.mode();
        if phase == Phase::Armed && mode != 1 && mode != 5 {
            return Err(bad(format!("armed in mode {mode}")));
        }
        if state.low_half && !(phase == Phase::Count && mode == 3) {
            return Err(bad("low half-cycle outside mode 3".to_string()));
        }
        if phase == Phase::Count {
            let in_cycle = match mode {
                2 => state.pos < counter.span(state.active),
                3 => state.pos < counter.half_len(),
                _ => true,
            };
            if !in_cycle {
                return Err(bad(format!("position {} outside its cycle", state.pos)));
            }
        }
        Ok(counter)
    }
}

fn invalid(what: String) -> RestoreError {
    RestoreError::Invalid { device: "pit", what }
}

/// The saved state of one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PitCounterState {
    /// Bits 5–0 of the last control word (RW, M2–M0, BCD); RW is never 0.
    pub control: u8,
    /// The count register as last completely written.
    pub cr: u16,
    /// The LSB of a two-byte count whose MSB is awaited.
    pub staged_lsb: u8,
    /// Write flip-flop: the next count byte written is the MSB.
    pub write_msb_next: bool,
    /// Read flip-flop: the next count byte read is the MSB.
    pub read_msb_next: bool,
    /// A count held in the output latch.
    pub latched_count: Option<u16>,
    /// A latched status byte.
    pub latched_status: Option<u8>,
    /// The status byte's NULL COUNT.
    pub null_count: bool,
    /// The GATE input (always high for counters 0 and 1).
    pub gate: bool,
    /// 0: no count since the control word; 1: modes 1/5 waiting for a trigger; 2: CR goes into CE
    /// on the next pulse; 3: counting.
    pub phase: u8,
    /// The counter element while not counting.
    pub held_ce: u16,
    /// OUT while not counting.
    pub held_out: bool,
    /// The count loaded at the start of the current cycle (mode 3: half-cycle).
    pub active: u16,
    /// Pulses counted since that load.
    pub pos: u64,
    /// Mode 3: in the low half-cycle.
    pub low_half: bool,
}

/// The saved state of the PIT and its port 0x61 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PitState {
    /// The CLK pulse the counters' state is as of.
    pub pulses: u64,
    /// Port 0x61 bit 1, speaker data enable (bit 0 is counter 2's gate).
    pub speaker_data: bool,
    /// Counters 0, 1 and 2.
    pub counters: [PitCounterState; 3],
}

/// The 8254 of a PC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pit {
    counters: [Counter; 3],
    /// The CLK pulse `counters` are as of.
    pulses: u64,
    /// Port 0x61 bit 1.
    speaker_data: bool,
}

impl Default for Pit {
    fn default() -> Self {
        Self::new()
    }
}

impl Pit {
    /// The PIT at power-on (see the module header): every counter idle with OUT low, counter 2's
    /// gate low.
    pub fn new() -> Self {
        let mut counters = [Counter::new(), Counter::new(), Counter::new()];
        counters[2].gate = false;
        Self { counters, pulses: 0, speaker_data: false }
    }

    /// A byte read from `port` at virtual time `now`. Unknown ports read 0xFF.
    pub fn read(&mut self, port: u16, now: Nanos) -> u8 {
        match port {
            COUNTER0_PORT..=COUNTER2_PORT => {
                let index = usize::from(port - COUNTER0_PORT);
                let ce = self.view(index, now).ce();
                self.counters[index].read(ce)
            }
            NMI_SC_PORT => {
                let mut value = 0;
                if self.counters[2].gate {
                    value |= NMI_SC_TIM2_GATE;
                }
                if self.speaker_data {
                    value |= NMI_SC_SPKR_DAT_EN;
                }
                if (now / REFRESH_TOGGLE_NANOS) & 1 != 0 {
                    value |= NMI_SC_REF_TOGGLE;
                }
                if self.view(2, now).out() {
                    value |= NMI_SC_TIM2_OUT;
                }
                value
            }
            _ => 0xFF,
        }
    }

    /// A byte written to `port` at virtual time `now`; `irq0` follows OUT0. Unknown ports ignore
    /// writes.
    pub fn write(&mut self, port: u16, value: u8, now: Nanos, irq0: &mut dyn IrqLine) {
        self.sync(now, irq0);
        match port {
            COUNTER0_PORT..=COUNTER2_PORT => {
                self.counters[usize::from(port - COUNTER0_PORT)].write_count(value);
            }
            CONTROL_PORT => self.write_control(value),
            NMI_SC_PORT => {
                self.speaker_data = value & NMI_SC_SPKR_DAT_EN != 0;
                self.counters[2].set_gate(value & NMI_SC_TIM2_GATE != 0);
            }
            _ => {}
        }
        irq0.set_level(self.counters[0].out());
    }

    /// Lets time pass up to `now` and drives `irq0` with OUT0.
    pub fn advance(&mut self, now: Nanos, irq0: &mut dyn IrqLine) {
        self.sync(now, irq0);
    }

    /// The next time after `now` at which OUT0 changes level, or None if it will not change
    /// without the guest reprogramming the PIT.
    pub fn next_deadline(&self, now: Nanos) -> Option<Nanos> {
        let target = pulses_at(now).max(self.pulses);
        let mut counter = self.counters[0].clone();
        counter.run(target - self.pulses);
        let pulse = target.checked_add(counter.next_change()?)?;
        time_of_pulse(pulse)
    }

    /// OUT of `counter` (0–2) at virtual time `now`; false for other numbers.
    pub fn out(&self, counter: usize, now: Nanos) -> bool {
        counter < self.counters.len() && self.view(counter, now).out()
    }

    /// The state of the three counters and port 0x61's timer bits.
    pub fn save(&self) -> PitState {
        PitState {
            pulses: self.pulses,
            speaker_data: self.speaker_data,
            counters: [self.counters[0].save(), self.counters[1].save(), self.counters[2].save()],
        }
    }

    /// Loads a saved state after checking it describes a state the PIT can be in.
    pub fn restore(&mut self, state: &PitState) -> Result<(), RestoreError> {
        let counters = [
            Counter::from_saved(&state.counters[0], 0)?,
            Counter::from_saved(&state.counters[1], 1)?,
            Counter::from_saved(&state.counters[2], 2)?,
        ];
        self.counters = counters;
        self.pulses = state.pulses;
        self.speaker_data = state.speaker_data;
        Ok(())
    }

    /// Counter `index` as it is at `now`, without changing the PIT.
    fn view(&self, index: usize, now: Nanos) -> Counter {
        let mut counter = self.counters[index].clone();
        counter.run(pulses_at(now).saturating_sub(self.pulses));
        counter
    }

    /// Brings every counter up to `now` and drives `irq0` with OUT0, pulsing it if OUT0 rose
    /// and fell back within the step.
    fn sync(&mut self, now: Nanos, irq0: &mut dyn IrqLine) {
        let target = pulses_at(now);
        if target > self.pulses {
            let n = target - self.pulses;
            let rose = self.counters[0].rises_within(n);
            for counter in &mut self.counters {
                counter.run(n);
            }
            self.pulses = target;
            if rose {
                irq0.set_level(false);
                irq0.set_level(true);
            }
        }
        irq0.set_level(self.counters[0].out());
    }

    fn write_control(&mut self, value: u8) {
        let select = value >> CONTROL_SC_SHIFT;
        if select == SC_READ_BACK {
            for (i, counter) in self.counters.iter_mut().enumerate() {
                if value & (READ_BACK_CNT0 << i) == 0 {
                    continue;
                }
                if value & READ_BACK_NOT_COUNT == 0 {
                    counter.latch_count();
                }
                if value & READ_BACK_NOT_STATUS == 0 {
                    counter.latch_status();
                }
            }
            return;
        }
        let counter = &mut self.counters[usize::from(select)];
        if (value >> CONTROL_RW_SHIFT) & 3 == 0 {
            counter.latch_count();
        } else {
            counter.write_control(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LevelProbe, NoIrq};

    /// The time of the pulse `pulses` after power-on.
    fn at(pulses: u64) -> Nanos {
        time_of_pulse(pulses).unwrap()
    }

    /// Programs `counter` with `control` and a 16-bit count (LSB then MSB) at time `now`.
    fn program(pit: &mut Pit, counter: u16, mode: u8, count: u16, now: Nanos) {
        let control = ((counter as u8) << 6) | 0x30 | (mode << 1);
        pit.write(0x43, control, now, &mut NoIrq);
        pit.write(0x40 + counter, count as u8, now, &mut NoIrq);
        pit.write(0x40 + counter, (count >> 8) as u8, now, &mut NoIrq);
    }

    fn read_word(pit: &mut Pit, port: u16, now: Nanos) -> u16 {
        let lsb = pit.read(port, now);
        let msb = pit.read(port, now);
        u16::from(lsb) | (u16::from(msb) << 8)
    }

    fn latched(pit: &mut Pit, counter: u16, now: Nanos) -> u16 {
        pit.write(0x43, (counter as u8) << 6, now, &mut NoIrq);
        read_word(pit, 0x40 + counter, now)
    }

    #[test]
    fn pulse_time_conversions_are_exact() {
        assert_eq!(pulses_at(0), 0);
        assert_eq!(pulses_at(1_000_000_000), CLOCK_HZ);
        assert_eq!(pulses_at(u64::MAX), 22_010_322_987_356_910);
        for k in [1u64, 2, 3, 11_932, 1_193_182, 123_456_789_012] {
            let t = at(k);
            assert_eq!(pulses_at(t), k);
            assert_eq!(pulses_at(t - 1), k - 1);
        }
    }

    #[test]
    fn mode2_rate_generator_rises_every_10ms_where_predicted() {
        let mut pit = Pit::new();
        let mut irq = LevelProbe::default();
        let start = 5_000;
        program(&mut pit, 0, 2, 11_932, start);
        pit.advance(start, &mut irq);
        assert!(irq.high, "mode 2 starts with OUT high");
        let p0 = pulses_at(start);
        // The CE is loaded at p0 + 1; OUT falls at CE = 1 and rises at the reload.
        let mut now = start;
        for cycle in 1..=100u64 {
            let fall = at(p0 + 1 + cycle * 11_932 - 1);
            let rise = at(p0 + 1 + cycle * 11_932);
            assert_eq!(pit.next_deadline(now), Some(fall), "cycle {cycle}");
            pit.advance(fall - 1, &mut irq);
            assert!(irq.high);
            pit.advance(fall, &mut irq);
            assert!(!irq.high, "OUT low for one clock at cycle {cycle}");
            assert_eq!(pit.next_deadline(fall), Some(rise));
            pit.advance(rise - 1, &mut irq);
            assert!(!irq.high);
            pit.advance(rise, &mut irq);
            assert!(irq.high);
            now = rise;
        }
        assert_eq!(irq.rising_edges, 1 + 100, "the first edge came from programming");
        // 11932 clocks are 10.000151 ms: 100 periods, to the nanosecond.
        let period = at(p0 + 1 + 200 * 11_932) - at(p0 + 1 + 100 * 11_932);
        assert_eq!(period, 1_000_015_085);
    }

    #[test]
    fn mode2_reads_count_down_and_new_count_waits_for_the_cycle_end() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 2, 100, 0);
        assert_eq!(latched(&mut pit, 0, at(1)), 100);
        assert_eq!(latched(&mut pit, 0, at(2)), 99);
        assert_eq!(latched(&mut pit, 0, at(99)), 2);
        assert_eq!(latched(&mut pit, 0, at(100)), 1);
        assert!(!pit.out(0, at(100)));
        assert_eq!(latched(&mut pit, 0, at(101)), 100);
        assert!(pit.out(0, at(101)));
        pit.write(0x40, 50, at(120), &mut NoIrq);
        pit.write(0x40, 0, at(120), &mut NoIrq);
        assert_eq!(latched(&mut pit, 0, at(121)), 80, "the cycle goes on");
        assert_eq!(latched(&mut pit, 0, at(201)), 50, "the new count at the reload");
        assert_eq!(latched(&mut pit, 0, at(250)), 1);
        assert_eq!(latched(&mut pit, 0, at(251)), 50);
    }

    #[test]
    fn mode0_interrupt_on_terminal_count_then_stays_high() {
        let mut pit = Pit::new();
        let mut irq = LevelProbe::default();
        pit.write(0x43, 0x30, 0, &mut irq);
        assert!(!irq.high);
        pit.write(0x40, 10, 0, &mut irq);
        pit.write(0x40, 0, 0, &mut irq);
        // Loaded at pulse 1; OUT rises N + 1 = 11 pulses after the write.
        assert_eq!(pit.next_deadline(0), Some(at(11)));
        pit.advance(at(11) - 1, &mut irq);
        assert!(!irq.high);
        assert_eq!(latched(&mut pit, 0, at(10)), 1);
        pit.advance(at(11), &mut irq);
        assert!(irq.high);
        assert_eq!(pit.next_deadline(at(11)), None, "stays high");
        // The counter wraps and keeps counting.
        assert_eq!(latched(&mut pit, 0, at(12)), 0xFFFF);
        pit.advance(at(1_000_000), &mut irq);
        assert!(irq.high);
        assert_eq!(irq.rising_edges, 1);
        // A new count restarts the cycle with OUT low.
        pit.write(0x40, 5, at(1_000_000), &mut irq);
        assert!(!irq.high, "writing the first byte sets OUT low in mode 0");
        pit.write(0x40, 0, at(1_000_010), &mut irq);
        assert_eq!(pit.next_deadline(at(1_000_010)), Some(at(1_000_016)));
    }

    #[test]
    fn mode0_gate_low_stops_counting() {
        let mut pit = Pit::new();
        pit.write(0x61, 0x00, 0, &mut NoIrq);
        program(&mut pit, 2, 0, 20, 0);
        assert_eq!(latched(&mut pit, 2, at(50)), 20, "loaded, but not counting");
        pit.write(0x61, 0x01, at(50), &mut NoIrq);
        assert_eq!(latched(&mut pit, 2, at(55)), 15);
        assert!(!pit.out(2, at(69)));
        assert!(pit.out(2, at(70)));
    }

    fn duty(pit: &Pit, from: u64, period: u64) -> (u64, u64) {
        let high = (from..from + period).filter(|&p| pit.out(0, at(p))).count() as u64;
        (high, period - high)
    }

    #[test]
    fn mode3_square_wave_duty_even_and_odd() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 3, 10, 0);
        for cycle in 0..5 {
            let start = 1 + cycle * 10;
            assert_eq!(duty(&pit, start, 10), (5, 5));
            assert!(pit.out(0, at(start + 4)));
            assert!(!pit.out(0, at(start + 5)));
        }
        assert_eq!(latched(&mut pit, 0, at(1)), 10);
        assert_eq!(latched(&mut pit, 0, at(2)), 8);
        assert_eq!(latched(&mut pit, 0, at(6)), 10, "reloaded at the half-cycle");

        let mut pit = Pit::new();
        program(&mut pit, 0, 3, 7, 0);
        for cycle in 0..5 {
            let start = 1 + cycle * 7;
            assert_eq!(duty(&pit, start, 7), (4, 3), "odd: (N+1)/2 high, (N-1)/2 low");
            assert!(pit.out(0, at(start + 3)));
            assert!(!pit.out(0, at(start + 4)));
        }
        // The deadline walks the edges.
        let mut now = 0;
        let mut edges = Vec::new();
        for _ in 0..4 {
            now = pit.next_deadline(now).unwrap();
            edges.push(pulses_at(now));
        }
        assert_eq!(edges, [5, 8, 12, 15]);
        // N - 1 loaded, then down by two; the extra high pulse reads 0.
        let reads: Vec<u16> = (1..=8).map(|p| latched(&mut pit, 0, at(p))).collect();
        assert_eq!(reads, [6, 4, 2, 0, 6, 4, 2, 6]);
    }

    #[test]
    fn mode3_count_zero_is_65536() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 3, 0, 0);
        assert_eq!(pit.next_deadline(0), Some(at(1 + 32_768)));
        assert_eq!(pit.next_deadline(at(1 + 32_768)), Some(at(1 + 65_536)));
    }

    #[test]
    fn illegal_count_of_one_in_modes_2_and_3_holds_out_high() {
        for mode in [2, 3] {
            let mut pit = Pit::new();
            let mut irq = LevelProbe::default();
            program(&mut pit, 0, mode, 1, 0);
            assert!((1..100).all(|p| pit.out(0, at(p))));
            pit.advance(at(1000), &mut irq);
            assert!(irq.high, "mode {mode}");
            assert_eq!(pit.next_deadline(at(1000)), None, "mode {mode}");
            assert_eq!(latched(&mut pit, 0, at(1000)), if mode == 2 { 1 } else { 0 });
            // A proper count then takes over at the next reload.
            pit.write(0x40, 4, at(1000), &mut irq);
            pit.write(0x40, 0, at(1000), &mut irq);
            assert!(pit.next_deadline(at(1000)).is_some(), "mode {mode}");
        }
    }

    #[test]
    fn mode4_software_strobe() {
        let mut pit = Pit::new();
        let mut irq = LevelProbe::default();
        program(&mut pit, 0, 4, 3, 0);
        pit.advance(0, &mut irq);
        assert!(irq.high);
        assert_eq!(pit.next_deadline(0), Some(at(4)));
        assert!(pit.out(0, at(3)));
        assert!(!pit.out(0, at(4)), "strobe N + 1 pulses after the write");
        assert!(pit.out(0, at(5)));
        assert_eq!(pit.next_deadline(at(4)), Some(at(5)));
        assert_eq!(pit.next_deadline(at(5)), None, "one strobe only");
        pit.advance(at(100_000), &mut irq);
        assert_eq!(irq.rising_edges, 2, "the strobe's rising edge was not lost");
    }

    #[test]
    fn counter2_gate_and_out_in_port_61() {
        let mut pit = Pit::new();
        assert_eq!(pit.read(0x61, 0) & 0x23, 0x00);
        // Mode 1: hardware one-shot, triggered by the gate's rising edge.
        program(&mut pit, 2, 1, 5, 0);
        assert_eq!(pit.read(0x61, at(100)) & 0x20, 0x20, "mode 1 idles high");
        pit.write(0x61, 0x03, at(100), &mut NoIrq);
        assert_eq!(pit.read(0x61, at(100)) & 0x03, 0x03);
        assert!(pit.out(2, at(100)), "low on the pulse after the trigger");
        assert!(!pit.out(2, at(101)));
        assert!(!pit.out(2, at(105)));
        assert_eq!(pit.read(0x61, at(106)) & 0x20, 0x20, "high after N pulses");
        // Retrigger during the one-shot stretches it.
        pit.write(0x61, 0x00, at(200), &mut NoIrq);
        pit.write(0x61, 0x01, at(200), &mut NoIrq);
        pit.write(0x61, 0x00, at(203), &mut NoIrq);
        pit.write(0x61, 0x01, at(203), &mut NoIrq);
        assert!(!pit.out(2, at(207)));
        assert!(pit.out(2, at(209)));
        assert_eq!(pit.read(0x61, at(209)) & 0x02, 0x00, "speaker bit as written");

        // Mode 3 on counter 2 (the speaker): the gate starts and stops the square wave.
        pit.write(0x61, 0x00, at(300), &mut NoIrq);
        program(&mut pit, 2, 3, 4, at(300));
        assert!(pit.out(2, at(400)), "gate low: OUT high, no counting");
        pit.write(0x61, 0x03, at(400), &mut NoIrq);
        let wave: Vec<bool> = (401..409).map(|p| pit.out(2, at(p))).collect();
        assert_eq!(wave, [true, true, false, false, true, true, false, false]);
        pit.write(0x61, 0x02, at(403), &mut NoIrq);
        assert!(pit.out(2, at(403)), "gate low forces OUT high at once");
        assert_eq!(pit.read(0x61, at(403)) & 0x23, 0x22);

        // Mode 5: hardware strobe.
        program(&mut pit, 2, 5, 3, at(500));
        pit.write(0x61, 0x01, at(500), &mut NoIrq);
        let strobe: Vec<bool> = (501..507).map(|p| pit.out(2, at(p))).collect();
        assert_eq!(strobe, [true, true, true, false, true, true]);
    }

    #[test]
    fn gates_of_counters_0_and_1_are_tied_high() {
        let mut pit = Pit::new();
        program(&mut pit, 1, 1, 5, 0);
        assert!((0..100).all(|p| pit.out(1, at(p))), "no trigger ever comes");
        program(&mut pit, 1, 2, 5, 0);
        assert!(!pit.out(1, at(5)));
    }

    #[test]
    fn refresh_toggle_flips_every_15085_ns() {
        let mut pit = Pit::new();
        let bit = |pit: &mut Pit, now| pit.read(0x61, now) & 0x10;
        assert_eq!(bit(&mut pit, 0), 0);
        assert_eq!(bit(&mut pit, 15_084), 0);
        assert_eq!(bit(&mut pit, 15_085), 0x10);
        assert_eq!(bit(&mut pit, 30_169), 0x10);
        assert_eq!(bit(&mut pit, 30_170), 0);
        assert_eq!(pit.read(0x61, 0) & 0xCC, 0, "no NMI sources");
    }

    #[test]
    fn latch_command_freezes_the_read_value() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 2, 1000, 0);
        pit.write(0x43, 0x00, at(11), &mut NoIrq);
        pit.write(0x43, 0x00, at(500), &mut NoIrq); // ignored: already latched
        assert_eq!(pit.read(0x40, at(600)), 990u16 as u8);
        assert_eq!(pit.read(0x40, at(700)), (990u16 >> 8) as u8);
        assert_eq!(read_word(&mut pit, 0x40, at(701)), 300, "latch released");
    }

    #[test]
    fn read_back_status_and_count() {
        let mut pit = Pit::new();
        pit.write(0x43, 0x34, 0, &mut NoIrq); // counter 0, word, mode 2
        pit.write(0x43, 0xE2, 0, &mut NoIrq); // read-back status of counter 0
        assert_eq!(pit.read(0x40, 0), 0xC0 | 0x34, "OUT high, null count, RW/mode/BCD");
        pit.write(0x40, 0x10, 0, &mut NoIrq);
        pit.write(0x40, 0x00, 0, &mut NoIrq);
        pit.write(0x43, 0xE2, 0, &mut NoIrq);
        assert_eq!(pit.read(0x40, 0), 0xC0 | 0x34, "not loaded before the next pulse");
        pit.write(0x43, 0xE2, at(1), &mut NoIrq);
        assert_eq!(pit.read(0x40, at(1)), 0x80 | 0x34, "loaded");
        // Status and count of counters 0 and 2 together: status first, then the count.
        pit.write(0x43, 0x91, at(1), &mut NoIrq); // counter 2: LSB only, mode 0, BCD
        pit.write(0x42, 0x99, at(1), &mut NoIrq);
        pit.write(0x43, 0xCA, at(3), &mut NoIrq); // count + status, counters 0 and 2
        pit.write(0x43, 0xC2, at(9), &mut NoIrq); // ignored for counter 0: both latched
        assert_eq!(pit.read(0x40, at(9)), 0x80 | 0x34);
        assert_eq!(read_word(&mut pit, 0x40, at(9)), 0x0E);
        assert_eq!(pit.read(0x42, at(9)), 0x11, "status: OUT low, loaded, LSB, mode 0, BCD");
        assert_eq!(pit.read(0x42, at(9)), 0x99, "loaded at pulse 2, gate low, no counting");
        // Latching count only (COUNT = 0, STATUS = 1).
        pit.write(0x43, 0xD2, at(10), &mut NoIrq);
        assert_eq!(read_word(&mut pit, 0x40, at(12)), 0x07);
    }

    #[test]
    fn bcd_counting() {
        let mut pit = Pit::new();
        pit.write(0x43, 0x35, 0, &mut NoIrq); // counter 0, word, mode 2, BCD
        pit.write(0x40, 0x00, 0, &mut NoIrq);
        pit.write(0x40, 0x10, 0, &mut NoIrq); // 1000 in BCD
        assert_eq!(latched(&mut pit, 0, at(1)), 0x1000);
        assert_eq!(latched(&mut pit, 0, at(2)), 0x0999);
        assert_eq!(latched(&mut pit, 0, at(991)), 0x0010);
        assert_eq!(latched(&mut pit, 0, at(992)), 0x0009);
        assert_eq!(pit.next_deadline(at(992)), Some(at(1000)), "CE = 1 after 999 pulses");
        assert_eq!(latched(&mut pit, 0, at(1001)), 0x1000, "period of 1000 decimal");
        // Count 0 in BCD is 10000.
        pit.write(0x43, 0x31, at(2000), &mut NoIrq);
        pit.write(0x40, 0x00, at(2000), &mut NoIrq);
        pit.write(0x40, 0x00, at(2000), &mut NoIrq);
        assert_eq!(latched(&mut pit, 0, at(2002)), 0x9999);
        assert!(!pit.out(0, at(2001 + 9_999)));
        assert!(pit.out(0, at(2001 + 10_000)));
        assert_eq!(latched(&mut pit, 0, at(2001 + 10_001)), 0x9999, "wraps in BCD");
    }

    #[test]
    fn bcd_decrement_counts_invalid_digits_like_decade_counters() {
        assert_eq!(decrement(0x1000, 1, true), 0x0999);
        assert_eq!(decrement(0x0000, 1, true), 0x9999);
        assert_eq!(decrement(0x00FA, 1, true), 0x00F9);
        assert_eq!(decrement(0x00FA, 11, true), 0x00E9);
        assert_eq!(weight(0x00FA, true), 160);
        assert_eq!(decrement(0x00FA, 160, true), 0x0000);
        // The closed form agrees with one decrement at a time of four decade counters.
        fn decrement_once(mut value: u16) -> u16 {
            for shift in [0, 4, 8, 12] {
                let digit = (value >> shift) & 0xF;
                value &= !(0xF << shift);
                if digit > 0 {
                    return value | ((digit - 1) << shift);
                }
                value |= 9 << shift; // borrow from the next decade
            }
            value
        }
        for start in [0xF0A3u16, 0x0000, 0x9999, 0xFFFF, 0x1234] {
            let mut value = start;
            for k in 1..=20_000u64 {
                value = decrement_once(value);
                assert_eq!(decrement(start, k, true), value, "{start:#06x} after {k}");
            }
        }
    }

    #[test]
    fn lsb_msb_flip_flops() {
        let mut pit = Pit::new();
        pit.write(0x43, 0x34, 0, &mut NoIrq);
        pit.write(0x40, 0x34, 0, &mut NoIrq);
        assert_eq!(pit.next_deadline(0), None, "half a count loads nothing");
        pit.write(0x40, 0x12, 0, &mut NoIrq);
        pit.write(0x43, 0x00, at(1), &mut NoIrq);
        assert_eq!(pit.read(0x40, at(5)), 0x34);
        assert_eq!(pit.read(0x40, at(5)), 0x12);
        // Unlatched reads alternate too, each byte from the live count.
        assert_eq!(pit.read(0x40, at(3)), 0x32);
        assert_eq!(pit.read(0x40, at(3)), 0x12);
        // LSB-only and MSB-only accesses.
        pit.write(0x43, 0x14, at(10), &mut NoIrq);
        pit.write(0x40, 0x80, at(10), &mut NoIrq);
        assert_eq!(pit.read(0x40, at(11)), 0x80);
        assert_eq!(pit.read(0x40, at(12)), 0x7F);
        pit.write(0x43, 0x24, at(20), &mut NoIrq);
        pit.write(0x40, 0x02, at(20), &mut NoIrq);
        assert_eq!(pit.read(0x40, at(21)), 0x02);
        assert_eq!(pit.read(0x40, at(22)), 0x01, "0x01FF");
        // A control word resets the flip-flops.
        pit.write(0x43, 0x34, at(30), &mut NoIrq);
        pit.write(0x40, 0xAA, at(30), &mut NoIrq);
        pit.write(0x43, 0x34, at(30), &mut NoIrq);
        pit.write(0x40, 0x00, at(30), &mut NoIrq);
        pit.write(0x40, 0x01, at(30), &mut NoIrq);
        assert_eq!(latched(&mut pit, 0, at(31)), 0x0100);
    }

    #[test]
    fn unknown_ports_read_ff() {
        let mut pit = Pit::new();
        let before = pit.save();
        for port in [0x3F, 0x44, 0x60, 0x62, 0x80, 0xFFFF] {
            assert_eq!(pit.read(port, 0), 0xFF, "port {port:#x}");
            pit.write(port, 0x34, 0, &mut NoIrq);
        }
        assert_eq!(pit.read(0x43, 0), 0xFF, "the control register is write-only");
        assert_eq!(pit.save(), before);
        assert!(!pit.out(3, 0));
    }

    #[test]
    fn ten_second_jump_equals_many_small_steps() {
        let setups: [(u8, u16); 4] = [(2, 11_932), (3, 11_931), (3, 2), (0, 0)];
        for (mode, count) in setups {
            let mut big = Pit::new();
            program(&mut big, 0, mode, count, 1_234);
            program(&mut big, 2, 3, 3, 1_234);
            big.write(0x61, 0x01, 1_234, &mut NoIrq);
            let mut small = big.clone();
            let end: Nanos = 10_000_000_000 + 1_234;
            let mut big_irq = LevelProbe::default();
            big.advance(end, &mut big_irq);
            let mut small_irq = LevelProbe::default();
            let mut now = 1_234;
            while now < end {
                now = (now + 999_983).min(end);
                small.advance(now, &mut small_irq);
            }
            assert_eq!(big.save(), small.save(), "mode {mode} count {count}");
            assert_eq!(big_irq.high, small_irq.high);
            assert_eq!(latched(&mut big, 0, end + 7), latched(&mut small, 0, end + 7));
        }
    }

    #[test]
    fn huge_jumps_are_constant_time() {
        // A square wave toggling on every pulse, skipped ahead by centuries: a loop over the
        // pulses (or the edges) would never finish.
        let mut pit = Pit::new();
        let mut irq = LevelProbe::default();
        program(&mut pit, 0, 3, 2, 0);
        let far = u64::MAX - 1_000_000;
        pit.advance(far, &mut irq);
        assert_eq!(irq.rising_edges, 1, "centuries of edges coalesce into one");
        let deadline = pit.next_deadline(far).unwrap();
        assert!(deadline > far);
        assert_ne!(pit.out(0, deadline), pit.out(0, deadline - 1));
        pit.advance(u64::MAX, &mut irq);
    }

    #[test]
    fn an_edge_skipped_over_still_reaches_the_pic() {
        let mut pit = Pit::new();
        let mut irq = LevelProbe::default();
        program(&mut pit, 0, 2, 100, 0);
        pit.advance(at(50), &mut irq);
        assert_eq!(irq.rising_edges, 1);
        pit.advance(at(150), &mut irq);
        assert_eq!(irq.rising_edges, 2, "the low pulse at 100 was stepped over");
        assert!(irq.high);
    }

    #[test]
    fn save_change_restore() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 3, 1_000, 0);
        program(&mut pit, 2, 1, 77, 0);
        pit.write(0x61, 0x03, at(10), &mut NoIrq);
        pit.write(0x43, 0xC2, at(20), &mut NoIrq);
        pit.write(0x43, 0x34, at(20), &mut NoIrq);
        pit.write(0x40, 0x12, at(20), &mut NoIrq);
        let saved = pit.save();
        let before = pit.clone();
        let reading = {
            let mut copy = pit.clone();
            (0..4).map(|_| copy.read(0x40, at(30))).collect::<Vec<_>>()
        };
        pit.write(0x40, 0x34, at(40), &mut NoIrq);
        pit.write(0x61, 0x00, at(50), &mut NoIrq);
        pit.advance(at(1_000_000), &mut NoIrq);
        assert_ne!(pit.save(), saved);
        pit.restore(&saved).unwrap();
        assert_eq!(pit.save(), saved);
        assert_eq!(pit, before);
        let again: Vec<u8> = (0..4).map(|_| pit.read(0x40, at(30))).collect();
        assert_eq!(again, reading);
    }

    #[test]
    fn restore_rejects_impossible_states() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 2, 100, 0);
        program(&mut pit, 2, 3, 10, 0);
        pit.write(0x61, 0x01, 0, &mut NoIrq);
        pit.advance(at(5), &mut NoIrq);
        let good = pit.save();
        let cases: [fn(&mut PitState); 7] = [
            |s| s.counters[0].phase = 4,
            |s| s.counters[0].control = 0x04,
            |s| s.counters[1].gate = false,
            |s| s.counters[0].pos = 100,
            |s| s.counters[2].pos = 5,
            |s| s.counters[0].phase = PHASE_ARMED,
            |s| {
                s.counters[1].control = 0x10;
                s.counters[1].read_msb_next = true;
            },
        ];
        for (i, case) in cases.iter().enumerate() {
            let mut bad = good;
            case(&mut bad);
            assert!(pit.restore(&bad).is_err(), "case {i} accepted");
            assert_eq!(pit.save(), good, "case {i} changed the state");
        }
    }

    /// xorshift64: a deterministic source of guest nonsense.
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
    }

    const PORTS: [u16; 7] = [0x40, 0x41, 0x42, 0x43, 0x43, 0x61, 0x44];

    fn random_step(rng: &mut XorShift) -> u64 {
        match rng.below(10) {
            0 => 0,
            1..=5 => rng.below(3_000),
            6 | 7 => rng.below(100_000_000),
            8 => rng.below(1 << 40),
            _ => rng.next() >> rng.below(64),
        }
    }

    #[test]
    fn fuzz_random_programming_stays_sane() {
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        for _sequence in 0..5000 {
            let mut pit = Pit::new();
            let mut irq = LevelProbe::default();
            let mut now: Nanos = rng.below(1_000_000);
            for _ in 0..60 {
                let port = PORTS[rng.below(PORTS.len() as u64) as usize];
                // Small counts make the interesting corners (counts 0, 1, 2, odd) common.
                let value = if rng.below(2) == 0 { rng.below(4) as u8 } else { rng.next() as u8 };
                match rng.below(4) {
                    0 => {
                        let _ = pit.read(port, now);
                    }
                    1 => {
                        pit.advance(now, &mut irq);
                        assert_eq!(irq.high, pit.out(0, now), "IRQ0 follows OUT0");
                    }
                    _ => {
                        pit.write(port, value, now, &mut irq);
                        assert_eq!(irq.high, pit.out(0, now), "IRQ0 follows OUT0");
                    }
                }

                if let Some(deadline) = pit.next_deadline(now) {
                    assert!(deadline > now, "deadline {deadline} not after {now}");
                    let level = pit.out(0, now);
                    assert_eq!(pit.out(0, deadline - 1), level, "changed before the deadline");
                    assert_ne!(pit.out(0, deadline), level, "no change at the deadline");
                }

                // Splitting a step changes nothing, and the closed forms match pulse-by-pulse
                // stepping over short distances.
                let step = random_step(&mut rng);
                let later = now.saturating_add(step);
                let mut whole = pit.clone();
                whole.advance(later, &mut NoIrq);
                let mut split = pit.clone();
                split.advance(now.saturating_add(step / 3), &mut NoIrq);
                split.advance(later, &mut NoIrq);
                assert_eq!(whole.save(), split.save());
                if rng.below(8) == 0 {
                    let pulses = pulses_at(later) - pulses_at(now);
                    if pulses <= 200 {
                        let mut stepped = pit.clone();
                        stepped.advance(now, &mut NoIrq);
                        let first = pulses_at(now);
                        for p in first + 1..=first + pulses {
                            stepped.advance(at(p), &mut NoIrq);
                        }
                        assert_eq!(whole.save(), stepped.save());
                    }
                }

                let state = pit.save();
                let mut copy = Pit::new();
                copy.restore(&state).unwrap_or_else(|e| panic!("reachable state rejected: {e}: {state:?}"));
                assert_eq!(copy, pit);
                now = later;
            }
        }
    }
}
