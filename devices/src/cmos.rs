//! The MC146818A real-time clock and its CMOS RAM at ports 0x70/0x71, after the Motorola
//! MC146818A datasheet: "Address Map" (14 clock bytes and 50 bytes of RAM; the PC's compatible
//! parts, such as the DS12887, extend the RAM to 128 bytes in all, as modelled here), "Time, Calendar and Alarm Locations" (BCD/binary, 12/24-hour, the alarm's
//! don't-care codes 0xC0–0xFF), "Update Cycle" (UIP), "Register A" (UIP, DV2–DV0, RS3–RS0 with
//! the periodic-rate table), "Register B" (SET, PIE, AIE, UIE, SQWE, DM, 24/12, DSE),
//! "Register C" (IRQF, PF, AF, UF; cleared by reading) and "Register D" (VRT). The RAM layout
//! above 0x0D is the IBM PC/AT's (Technical Reference, "CMOS RAM Address Map": equipment byte
//! 0x14, base memory 0x15/0x16, extended memory 0x17/0x18 and 0x30/0x31, checksum 0x2E/0x2F over
//! 0x10–0x2D, century 0x32) plus the Bochs/QEMU/SeaBIOS bytes 0x34/0x35 (RAM above 16 MiB in
//! 64 KiB blocks) and 0x5B–0x5D (RAM above 4 GiB in 64 KiB blocks).
//!
//! Time is virtual: the clock reads `epoch + now / 10⁹` until the guest sets it. The divider
//! chain runs from power-on, so updates happen at every whole second of virtual time and the
//! periodic interrupt ticks on the same 32.768 kHz chain. Registers are computed from `now` on
//! demand and a jump of any length is O(1); [`Cmos::next_deadline`] names the next event only
//! when an enabled interrupt could raise IRQ 8.
//!
//! Deliberate deviations, each for a reason:
//!
//! - **Power-on registers** are the values a PC BIOS leaves (A = 0x26: 32.768 kHz time base,
//!   1024 Hz rate; B = 0x02: 24-hour, BCD), so guests booted without firmware find a running
//!   clock. The chip leaves them undefined after power-up.
//! - **The update is instantaneous** at each second boundary, and UIP reads 1 during the 244 µs
//!   before it (the datasheet's minimum warning time); the chip's 1984 µs update phase, during
//!   which the time bytes are unreadable, does not exist here — every read is consistent.
//! - **Time bytes hold numbers, not raw bytes.** Writes are decoded in the current mode (BCD or
//!   binary; 12-hour with the PM bit) and limited to the field's range (a seconds byte of 75 reads
//!   back as 59). A date that does not exist (February 31) is kept as written and carried into
//!   the next month by the next update. Switching DM or 24/12 in register B converts what the time
//!   bytes show; the chip would keep the old bytes until software rewrites them.
//! - **Leap years** follow the Gregorian calendar; the chip's "divisible by 4" rule agrees for
//!   1901–2099.
//! - **Century (0x32)** is plain RAM on the PC, kept by the BIOS; here it is part of the clock
//!   (read in the current data mode, carried at year rollover, writable), as OSes that trust the
//!   ACPI century field expect.
//! - **Divider.** DV2–DV0 = 11x holds the chain in reset (the clock stops; the first update comes
//!   500 ms after release, as the datasheet says); every other value runs the chain at the
//!   32.768 kHz rate, so the rate table for the 4.19/1.05 MHz time bases is not modelled.
//! - **DSE** (daylight saving) and **SQWE** (square-wave pin) are stored and have no effect: the
//!   chip's DST rules are 1980s US ones and the PC leaves the SQW pin unconnected.
//! - **Port 0x70** is write-only on the PC/AT; it reads 0xFF. Register D always reads VRT = 1
//!   (the battery is never flat); writes to C and D are ignored.
//! - **Equipment byte 0x14** is 0x00: no floppy drives (bit 0 clear), display "EGA/VGA or none"
//!   (bits 5–4 = 00), no PS/2 pointing device (bit 2, as QEMU uses it) and no coprocessor
//!   (bit 1) until [`Cmos::set_fpu_present`] says there is one — bt86's machine does, its CPU
//!   has an x87 (QEMU reports 0x06: FPU and mouse).

use crate::{IrqLine, Nanos, RestoreError};

/// The index port; bit 7 of a write disables NMI.
pub const INDEX_PORT: u16 = 0x70;
/// The data port.
pub const DATA_PORT: u16 = 0x71;
/// Index port bit 7: NMI disable.
const INDEX_NMI_DISABLE: u8 = 0x80;
/// Index port bits 0–6: the byte addressed.
const INDEX_MASK: u8 = 0x7F;
/// Bytes of clock registers and RAM.
pub const CMOS_BYTES: usize = 128;

// The clock's registers (datasheet "Address Map").
/// Seconds.
const REG_SECONDS: u8 = 0x00;
/// Seconds alarm.
const REG_SECONDS_ALARM: u8 = 0x01;
/// Minutes.
const REG_MINUTES: u8 = 0x02;
/// Minutes alarm.
const REG_MINUTES_ALARM: u8 = 0x03;
/// Hours (bit 7 = PM in 12-hour mode).
const REG_HOURS: u8 = 0x04;
/// Hours alarm.
const REG_HOURS_ALARM: u8 = 0x05;
/// Day of week, 1 = Sunday.
const REG_DAY_OF_WEEK: u8 = 0x06;
/// Date of month.
const REG_DATE_OF_MONTH: u8 = 0x07;
/// Month.
const REG_MONTH: u8 = 0x08;
/// Year within the century.
const REG_YEAR: u8 = 0x09;
/// Register A.
const REG_A: u8 = 0x0A;
/// Register B.
const REG_B: u8 = 0x0B;
/// Register C.
const REG_C: u8 = 0x0C;
/// Register D.
const REG_D: u8 = 0x0D;

/// A: update in progress.
const A_UIP: u8 = 0x80;
/// A: divider control DV2–DV0 = 11x (bits 6–5 set) holds the divider chain in reset.
const A_DV_RESET: u8 = 0x60;
/// A: rate select RS3–RS0.
const A_RS: u8 = 0x0F;
/// A as a PC BIOS leaves it: 32.768 kHz time base, rate 6 (1024 Hz).
const A_POWER_ON: u8 = 0x26;

/// B: SET (updates inhibited).
const B_SET: u8 = 0x80;
/// B: periodic interrupt enable.
const B_PIE: u8 = 0x40;
/// B: alarm interrupt enable.
const B_AIE: u8 = 0x20;
/// B: update-ended interrupt enable.
const B_UIE: u8 = 0x10;
/// B: data mode, 1 = binary, 0 = BCD.
const B_DM_BINARY: u8 = 0x04;
/// B: 1 = 24-hour mode.
const B_24H: u8 = 0x02;
/// B as a PC BIOS leaves it: 24-hour, BCD, no interrupts.
const B_POWER_ON: u8 = B_24H;

/// C: interrupt request flag.
const C_IRQF: u8 = 0x80;
/// C: periodic interrupt flag.
const C_PF: u8 = 0x40;
/// C: alarm flag.
const C_AF: u8 = 0x20;
/// C: update-ended flag.
const C_UF: u8 = 0x10;
/// C: the three event flags.
const C_FLAGS: u8 = C_PF | C_AF | C_UF;

/// D: valid RAM and time.
const D_VRT: u8 = 0x80;

/// Hours byte in 12-hour mode: PM.
const HOURS_PM: u8 = 0x80;
/// An alarm byte with both top bits set matches any value.
const ALARM_DONT_CARE: u8 = 0xC0;

// PC/AT CMOS RAM layout.
/// Equipment byte.
const CMOS_EQUIPMENT: usize = 0x14;
/// Equipment byte: math coprocessor installed.
const EQUIPMENT_FPU: u8 = 0x02;
/// Base memory in KiB, low byte (high at +1).
const CMOS_BASE_MEMORY: usize = 0x15;
/// Extended memory above 1 MiB in KiB, low byte (high at +1).
const CMOS_EXTENDED_MEMORY: usize = 0x17;
/// Checksum of 0x10–0x2D, high byte (low at +1).
const CMOS_CHECKSUM: usize = 0x2E;
/// Bytes the checksum covers.
const CMOS_CHECKSUMMED: std::ops::RangeInclusive<usize> = 0x10..=0x2D;
/// Extended memory above 1 MiB in KiB as the POST found it, low byte (high at +1).
const CMOS_EXTENDED_MEMORY_POST: usize = 0x30;
/// Century (BCD in the default mode).
const REG_CENTURY: u8 = 0x32;
/// Memory above 16 MiB in 64 KiB blocks, low byte (high at +1).
const CMOS_MEMORY_ABOVE_16M: usize = 0x34;
/// Memory above 4 GiB in 64 KiB blocks, three bytes from low.
const CMOS_MEMORY_ABOVE_4G: usize = 0x5B;

const NS_PER_SEC: u64 = 1_000_000_000;
/// The divider chain's rate (the 32.768 kHz time base after the divider).
const CHAIN_HZ: i128 = 32_768;
/// UIP is set this long before each update.
const UIP_WARNING: Nanos = 244_000;
/// After the divider leaves reset, the first update comes this much later.
const FIRST_UPDATE_AFTER_RESET: Nanos = 500_000_000;
/// The last second the clock can show: 9999-12-31 23:59:59.
const MAX_SECONDS: i64 = 253_402_300_799;
const SECONDS_PER_DAY: i64 = 86_400;

/// Everything the RTC and CMOS RAM hold, as plain data ([`Cmos::save`], [`Cmos::restore`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmosState {
    /// The byte addressed through port 0x70 (0–127).
    pub index: u8,
    /// Bit 7 of the last index write: NMI disabled.
    pub nmi_masked: bool,
    /// Registers A (bits 0–6), B, C (event flags only), the alarm bytes and the RAM, each at
    /// its address; the time bytes (0, 2, 4, 6–9) and the century (0x32) live in the fields
    /// below and their slots here are unused.
    pub ram: [u8; CMOS_BYTES],
    /// Full year (century × 100 + year), 0–9999.
    pub year: u16,
    /// Month, 1–12.
    pub month: u8,
    /// Date of month, 1–31.
    pub day: u8,
    /// Hour, 0–23.
    pub hour: u8,
    /// Minute, 0–59.
    pub minute: u8,
    /// Second, 0–59.
    pub second: u8,
    /// Day of week, 1–7 (1 = Sunday): a counter of its own, as on the chip.
    pub day_of_week: u8,
    /// When the next once-per-second update is due (the divider chain's phase).
    pub next_update: Nanos,
    /// The latest time the device has seen.
    pub now: Nanos,
}

/// The MC146818A RTC with the PC's 128 bytes of CMOS RAM.
#[derive(Debug)]
pub struct Cmos {
    st: CmosState,
}

impl Cmos {
    /// An RTC showing `epoch_unix_seconds` at time 0 (the machine passes the host's time in
    /// real-time mode, a fixed date for deterministic runs), with the memory-size bytes for
    /// `ram_bytes` of RAM.
    pub fn new(epoch_unix_seconds: u64, ram_bytes: u64) -> Cmos {
        let mut ram = [0u8; CMOS_BYTES];
        ram[usize::from(REG_A)] = A_POWER_ON;
        ram[usize::from(REG_B)] = B_POWER_ON;

        let kib = ram_bytes / 1024;
        put_u16(&mut ram, CMOS_BASE_MEMORY, kib.min(640));
        let extended = kib.saturating_sub(1024).min(0xFFFF);
        put_u16(&mut ram, CMOS_EXTENDED_MEMORY, extended);
        put_u16(&mut ram, CMOS_EXTENDED_MEMORY_POST, extended);
        let below_4g = ram_bytes.min(4 << 30);
        put_u16(&mut ram, CMOS_MEMORY_ABOVE_16M, (below_4g.saturating_sub(16 << 20) / 65536).min(0xFFFF));
        let above_4g = (ram_bytes.saturating_sub(4 << 30) / 65536).min(0xFF_FFFF);
        ram[CMOS_MEMORY_ABOVE_4G..CMOS_MEMORY_ABOVE_4G + 3].copy_from_slice(&above_4g.to_le_bytes()[..3]);

        let seconds = i64::try_from(epoch_unix_seconds).unwrap_or(i64::MAX).min(MAX_SECONDS);
        let t = DateTime::from_seconds(seconds);
        let mut cmos = Cmos {
            st: CmosState {
                index: 0,
                nmi_masked: false,
                ram,
                year: t.year,
                month: t.month,
                day: t.day,
                hour: t.hour,
                minute: t.minute,
                second: t.second,
                day_of_week: weekday(seconds.div_euclid(SECONDS_PER_DAY)),
                next_update: NS_PER_SEC,
                now: 0,
            },
        };
        cmos.update_checksum();
        cmos
    }

    /// Sets or clears the equipment byte's coprocessor bit (and the checksum with it).
    pub fn set_fpu_present(&mut self, present: bool) {
        let equipment = &mut self.st.ram[CMOS_EQUIPMENT];
        *equipment = if present { *equipment | EQUIPMENT_FPU } else { *equipment & !EQUIPMENT_FPU };
        self.update_checksum();
    }

    /// Whether the last write to port 0x70 disabled NMI (bit 7).
    pub fn nmi_masked(&self) -> bool {
        self.st.nmi_masked
    }

    /// The IRQ 8 level: register C's IRQF.
    pub fn irq_level(&self) -> bool {
        self.irqf()
    }

    /// Reads port 0x70 (write-only: 0xFF) or 0x71 (the addressed byte); other ports read 0xFF.
    pub fn read(&mut self, port: u16, now: Nanos, irq8: &mut dyn IrqLine) -> u8 {
        if port != DATA_PORT {
            return 0xFF;
        }
        self.sync(now);
        let value = self.read_register(self.st.index);
        irq8.set_level(self.irqf());
        value
    }

    /// Writes port 0x70 (index and NMI disable) or 0x71 (the addressed byte); writes to other
    /// ports are ignored.
    pub fn write(&mut self, port: u16, value: u8, now: Nanos, irq8: &mut dyn IrqLine) {
        match port {
            INDEX_PORT => {
                self.st.index = value & INDEX_MASK;
                self.st.nmi_masked = value & INDEX_NMI_DISABLE != 0;
            }
            DATA_PORT => {
                self.sync(now);
                self.write_register(self.st.index, value);
                irq8.set_level(self.irqf());
            }
            _ => {}
        }
    }

    /// Lets time pass up to `now`: updates, periodic ticks and alarms set their flags.
    pub fn advance(&mut self, now: Nanos, irq8: &mut dyn IrqLine) {
        self.sync(now);
        irq8.set_level(self.irqf());
    }

    /// The next time an enabled interrupt could raise IRQ 8 (never before `now`), or `None`
    /// when none can (no interrupt enabled, or IRQF already set until register C is read).
    pub fn next_deadline(&self, now: Nanos) -> Option<Nanos> {
        let now = now.max(self.st.now);
        let b = self.st.ram[usize::from(REG_B)];
        if !self.chain_running() || self.irqf() {
            return None;
        }
        let mut deadline: Option<Nanos> = None;
        // Events at or before the last sync have been handled; one can only be computed there
        // when time has saturated at the end of u64 (nothing happens after that).
        let last = self.st.now;
        let mut consider = |t: Nanos| {
            if t > last {
                deadline = Some(deadline.map_or(t, |d| d.min(t)));
            }
        };
        if b & B_PIE != 0 {
            if let Some(period) = self.periodic_ticks() {
                let next = self.periodic_index(self.st.now, period) + 1;
                consider(self.periodic_time(next, period));
            }
        }
        if b & B_SET == 0 {
            if b & B_UIE != 0 {
                consider(self.st.next_update);
            }
            if b & B_AIE != 0 {
                if let Some(d) = self.alarm_in() {
                    consider(self.st.next_update.saturating_add((d - 1).saturating_mul(NS_PER_SEC)));
                }
            }
        }
        // An event between the last sync and `now` is due at once.
        deadline.map(|d| d.max(now))
    }

    /// The device state.
    pub fn save(&self) -> CmosState {
        self.st.clone()
    }

    /// Replaces the device state with `state`.
    pub fn restore(&mut self, state: &CmosState) -> Result<(), RestoreError> {
        let invalid = |what: String| Err(RestoreError::Invalid { device: "cmos", what });
        let s = state;
        if s.index > INDEX_MASK {
            return invalid(format!("index {:#04x}", s.index));
        }
        if s.year > 9999
            || !(1..=12).contains(&s.month)
            || !(1..=31).contains(&s.day)
            || s.hour > 23
            || s.minute > 59
            || s.second > 59
            || !(1..=7).contains(&s.day_of_week)
        {
            return invalid(format!(
                "time {:04}-{:02}-{:02} {:02}:{:02}:{:02} day {}",
                s.year, s.month, s.day, s.hour, s.minute, s.second, s.day_of_week
            ));
        }
        if s.ram[usize::from(REG_A)] & A_UIP != 0 || s.ram[usize::from(REG_C)] & !C_FLAGS != 0 {
            return invalid("UIP or IRQF stored in registers A/C".into());
        }
        let running = s.ram[usize::from(REG_A)] & A_DV_RESET != A_DV_RESET;
        if running && (s.next_update < s.now || s.next_update - s.now > NS_PER_SEC) {
            return invalid(format!("next update at {} ns with the time at {} ns", s.next_update, s.now));
        }
        self.st = state.clone();
        Ok(())
    }

    // --- registers ---

    fn reg(&self, r: u8) -> u8 {
        self.st.ram[usize::from(r)]
    }

    fn binary(&self) -> bool {
        self.reg(REG_B) & B_DM_BINARY != 0
    }

    fn hours_24(&self) -> bool {
        self.reg(REG_B) & B_24H != 0
    }

    fn irqf(&self) -> bool {
        let (b, c) = (self.reg(REG_B), self.reg(REG_C));
        (c & C_PF != 0 && b & B_PIE != 0)
            || (c & C_AF != 0 && b & B_AIE != 0)
            || (c & C_UF != 0 && b & B_UIE != 0)
    }

    /// A number 0–99 as the time bytes show it in the current data mode.
    fn encode(&self, v: u8) -> u8 {
        if self.binary() {
            v
        } else {
            ((v / 10) << 4) | (v % 10)
        }
    }

    /// A written time byte as a number (BCD digits above 9 count for what they are worth).
    fn decode(&self, v: u8) -> u8 {
        if self.binary() {
            v
        } else {
            (v >> 4) * 10 + (v & 0x0F)
        }
    }

    /// An hour 0–23 as the hours byte shows it (12-hour: 1–12 with the PM bit).
    fn encode_hour(&self, hour: u8) -> u8 {
        if self.hours_24() {
            return self.encode(hour);
        }
        let h12 = match hour % 12 {
            0 => 12,
            h => h,
        };
        self.encode(h12) | if hour >= 12 { HOURS_PM } else { 0 }
    }

    fn read_register(&mut self, index: u8) -> u8 {
        match index {
            REG_SECONDS => self.encode(self.st.second),
            REG_MINUTES => self.encode(self.st.minute),
            REG_HOURS => self.encode_hour(self.st.hour),
            REG_DAY_OF_WEEK => self.encode(self.st.day_of_week),
            REG_DATE_OF_MONTH => self.encode(self.st.day),
            REG_MONTH => self.encode(self.st.month),
            REG_YEAR => self.encode((self.st.year % 100) as u8),
            REG_CENTURY => self.encode((self.st.year / 100) as u8),
            REG_A => self.reg(REG_A) | if self.update_in_progress() { A_UIP } else { 0 },
            REG_C => {
                let value = self.reg(REG_C) | if self.irqf() { C_IRQF } else { 0 };
                self.st.ram[usize::from(REG_C)] = 0;
                value
            }
            REG_D => D_VRT,
            _ => self.st.ram[usize::from(index & INDEX_MASK)],
        }
    }

    fn write_register(&mut self, index: u8, value: u8) {
        let limited = |v: u8, lo: u8, hi: u8| v.clamp(lo, hi);
        match index {
            REG_SECONDS => self.st.second = limited(self.decode(value), 0, 59),
            REG_MINUTES => self.st.minute = limited(self.decode(value), 0, 59),
            REG_HOURS => {
                self.st.hour = if self.hours_24() {
                    limited(self.decode(value), 0, 23)
                } else {
                    let h12 = limited(self.decode(value & !HOURS_PM), 1, 12);
                    h12 % 12 + if value & HOURS_PM != 0 { 12 } else { 0 }
                };
            }
            REG_DAY_OF_WEEK => self.st.day_of_week = limited(self.decode(value), 1, 7),
            REG_DATE_OF_MONTH => self.st.day = limited(self.decode(value), 1, 31),
            REG_MONTH => self.st.month = limited(self.decode(value), 1, 12),
            REG_YEAR => {
                self.st.year = self.st.year / 100 * 100 + u16::from(limited(self.decode(value), 0, 99))
            }
            REG_CENTURY => {
                self.st.year = u16::from(limited(self.decode(value), 0, 99)) * 100 + self.st.year % 100;
            }
            REG_A => {
                let was_running = self.chain_running();
                self.st.ram[usize::from(REG_A)] = value & !A_UIP;
                if !was_running && self.chain_running() {
                    self.st.next_update = self.st.now.saturating_add(FIRST_UPDATE_AFTER_RESET);
                }
            }
            REG_B => {
                // SET going high clears UIE.
                let value = if value & B_SET != 0 { value & !B_UIE } else { value };
                self.st.ram[usize::from(REG_B)] = value;
            }
            REG_C | REG_D => {}
            _ => self.st.ram[usize::from(index & INDEX_MASK)] = value,
        }
    }

    fn update_checksum(&mut self) {
        let sum: u16 = self.st.ram[CMOS_CHECKSUMMED].iter().map(|&b| u16::from(b)).sum();
        // Stored high byte first, unlike the memory sizes.
        self.st.ram[CMOS_CHECKSUM..CMOS_CHECKSUM + 2].copy_from_slice(&sum.to_be_bytes());
    }

    // --- time ---

    /// The divider chain runs (DV2–DV0 is not 11x).
    fn chain_running(&self) -> bool {
        self.reg(REG_A) & A_DV_RESET != A_DV_RESET
    }

    /// The time bytes count once a second (chain running, SET clear).
    fn updating(&self) -> bool {
        self.chain_running() && self.reg(REG_B) & B_SET == 0
    }

    fn update_in_progress(&self) -> bool {
        self.updating() && self.st.now.saturating_add(UIP_WARNING) >= self.st.next_update
    }

    /// The periodic interrupt's period in chain ticks, or `None` for rate 0.
    fn periodic_ticks(&self) -> Option<u64> {
        let rate = match self.reg(REG_A) & A_RS {
            0 => return None,
            // The datasheet's table: with the 32.768 kHz time base, rates 1 and 2 repeat 8 and 9.
            1 => 8,
            2 => 9,
            r => r,
        };
        Some(1 << (rate - 1))
    }

    /// Time of the update that last happened (or would have): the chain's tick 0.
    fn chain_origin(&self) -> i128 {
        i128::from(self.st.next_update) - i128::from(NS_PER_SEC)
    }

    /// How many periodic events the chain has produced by `t`, counted from its origin.
    fn periodic_index(&self, t: Nanos, period: u64) -> i128 {
        let ticks = ((i128::from(t) - self.chain_origin()) * CHAIN_HZ).div_euclid(i128::from(NS_PER_SEC));
        ticks.div_euclid(i128::from(period))
    }

    /// When the periodic event with this index happens.
    fn periodic_time(&self, index: i128, period: u64) -> Nanos {
        let ns = index * i128::from(period) * i128::from(NS_PER_SEC);
        // Rounded up, so the event's time is never before its tick.
        let t = self.chain_origin() - (-ns).div_euclid(CHAIN_HZ);
        t.clamp(0, i128::from(u64::MAX)) as Nanos
    }

    /// In how many updates (1–86400) the time bytes will first match the alarm, or `None` if
    /// the alarm bytes can never match.
    fn alarm_in(&self) -> Option<u64> {
        let seconds = self.alarm_field(REG_SECONDS_ALARM, 59, false)?;
        let minutes = self.alarm_field(REG_MINUTES_ALARM, 59, false)?;
        let hours = self.alarm_field(REG_HOURS_ALARM, 23, true)?;
        let now = u32::from(self.st.hour) * 3600 + u32::from(self.st.minute) * 60 + u32::from(self.st.second);
        next_alarm_match(now, hours, minutes, seconds).map(u64::from)
    }

    /// An alarm byte decoded in the current mode: `Some(None)` = don't care, `Some(Some(v))` =
    /// match `v` (hours as 0–23), `None` = a value the time bytes never take.
    fn alarm_field(&self, reg: u8, max: u8, hours: bool) -> Option<Option<u8>> {
        let byte = self.reg(reg);
        if byte & ALARM_DONT_CARE == ALARM_DONT_CARE {
            return Some(None);
        }
        let digits = |v: u8| {
            if self.binary() {
                Some(v)
            } else if v >> 4 <= 9 && v & 0x0F <= 9 {
                Some((v >> 4) * 10 + (v & 0x0F))
            } else {
                None
            }
        };
        if hours && !self.hours_24() {
            let h12 = digits(byte & !HOURS_PM).filter(|h| (1..=12).contains(h))?;
            return Some(Some(h12 % 12 + if byte & HOURS_PM != 0 { 12 } else { 0 }));
        }
        digits(byte).filter(|&v| v <= max).map(Some)
    }

    /// Brings the clock up to `now` (the latest time seen, if `now` is earlier). O(1).
    fn sync(&mut self, now: Nanos) {
        let last = self.st.now;
        if now <= last {
            return;
        }
        self.st.now = now;
        if !self.chain_running() {
            return;
        }
        if let Some(period) = self.periodic_ticks() {
            if self.periodic_index(now, period) > self.periodic_index(last, period) {
                self.st.ram[usize::from(REG_C)] |= C_PF;
            }
        }
        if now < self.st.next_update {
            return;
        }
        let updates = (now - self.st.next_update) / NS_PER_SEC + 1;
        if self.updating() {
            if self.alarm_in().is_some_and(|d| d <= updates) {
                self.st.ram[usize::from(REG_C)] |= C_AF;
            }
            self.st.ram[usize::from(REG_C)] |= C_UF;
            self.tick(updates);
        }
        self.st.next_update = self.st.next_update.saturating_add(updates.saturating_mul(NS_PER_SEC));
    }

    /// Counts `n` seconds on the time bytes, carrying through the calendar.
    fn tick(&mut self, n: u64) {
        let st = &mut self.st;
        let before = DateTime {
            year: st.year,
            month: st.month,
            day: st.day,
            hour: st.hour,
            minute: st.minute,
            second: st.second,
        }
        .to_seconds();
        let after = before.saturating_add(i64::try_from(n).unwrap_or(i64::MAX));
        let days = after.div_euclid(SECONDS_PER_DAY) - before.div_euclid(SECONDS_PER_DAY);
        st.day_of_week = ((i64::from(st.day_of_week) - 1 + days.rem_euclid(7)) % 7 + 1) as u8;
        let t = DateTime::from_seconds(after);
        (st.year, st.month, st.day, st.hour, st.minute, st.second) =
            (t.year, t.month, t.day, t.hour, t.minute, t.second);
    }
}

/// Stores `v` (at most 16 bits) little-endian at `at`.
fn put_u16(ram: &mut [u8; CMOS_BYTES], at: usize, v: u64) {
    ram[at..at + 2].copy_from_slice(&(v as u16).to_le_bytes());
}

/// The first second after `now` (seconds into the day) whose hour, minute and second match
/// (`None` = any), as a distance 1–86400; `None` if nothing matches.
fn next_alarm_match(now: u32, hour: Option<u8>, minute: Option<u8>, second: Option<u8>) -> Option<u32> {
    /// The first value in `from..limit` that `pattern` accepts.
    fn first(from: u32, limit: u32, pattern: Option<u8>) -> Option<u32> {
        match pattern {
            None => (from < limit).then_some(from),
            Some(v) => (u32::from(v) >= from && u32::from(v) < limit).then_some(u32::from(v)),
        }
    }
    /// The first second of the hour at or after `from` (0–3600) matching minute and second.
    fn in_hour(from: u32, minute: Option<u8>, second: Option<u8>) -> Option<u32> {
        let (from_minute, from_second) = (from / 60, from % 60);
        let m = first(from_minute, 60, minute)?;
        let s_from = if m == from_minute { from_second } else { 0 };
        if let Some(s) = first(s_from, 60, second) {
            return Some(m * 60 + s);
        }
        let m = first(m + 1, 60, minute)?;
        Some(m * 60 + first(0, 60, second)?)
    }
    let (now_hour, into_hour) = (now / 3600, now % 3600);
    // The current hour (after now), the other 23, and the current hour tomorrow.
    (0..=24).find_map(|k| {
        let h = (now_hour + k) % 24;
        if hour.is_some_and(|want| u32::from(want) != h) {
            return None;
        }
        let from = if k == 0 { into_hour + 1 } else { 0 };
        in_hour(from, minute, second).map(|at| k * 3600 + at - into_hour)
    })
}

/// Day of week 1–7 (1 = Sunday) of a day counted from 1970-01-01, a Thursday.
fn weekday(days: i64) -> u8 {
    ((days + 4).rem_euclid(7) + 1) as u8
}

/// A proleptic Gregorian date and time of day (UTC, no leap seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DateTime {
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

impl DateTime {
    /// The date `seconds` after 1970-01-01 00:00:00; years beyond 9999 wrap around to 0.
    fn from_seconds(seconds: i64) -> DateTime {
        let (year, month, day) = civil_from_days(seconds.div_euclid(SECONDS_PER_DAY));
        let s = seconds.rem_euclid(SECONDS_PER_DAY) as u32;
        DateTime {
            year: year.rem_euclid(10_000) as u16,
            month,
            day,
            hour: (s / 3600) as u8,
            minute: (s / 60 % 60) as u8,
            second: (s % 60) as u8,
        }
    }

    /// Seconds since 1970-01-01 00:00:00; a day past the end of its month counts on into the
    /// next.
    fn to_seconds(self) -> i64 {
        let days = days_from_civil(i64::from(self.year), self.month, self.day);
        days * SECONDS_PER_DAY
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }
}

// Days ↔ dates: the calendar is counted in 400-year eras of 146,097 days, each starting on
// 1 March so that the leap day falls at the end of the counting year (H. Hinnant's
// "chrono-compatible low-level date algorithms").

/// Days since 1970-01-01 of year/month(1–12)/day; days past the month's end count on.
fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let month = i64::from(month);
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    // Months counted from March = 0; 153 days per five months.
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Year, month (1–12) and day (1–31) of a day counted from 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let shifted = days + 719_468; // days since 0000-03-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u8;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 } as u8;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LevelProbe;

    const S: Nanos = NS_PER_SEC;

    struct Rtc {
        c: Cmos,
        irq: LevelProbe,
        now: Nanos,
    }

    impl Rtc {
        fn new(epoch: u64) -> Rtc {
            Rtc { c: Cmos::new(epoch, 16 << 20), irq: LevelProbe::default(), now: 0 }
        }
        fn rd(&mut self, reg: u8) -> u8 {
            self.c.write(INDEX_PORT, reg, self.now, &mut self.irq);
            self.c.read(DATA_PORT, self.now, &mut self.irq)
        }
        fn wr(&mut self, reg: u8, v: u8) {
            self.c.write(INDEX_PORT, reg, self.now, &mut self.irq);
            self.c.write(DATA_PORT, v, self.now, &mut self.irq);
        }
        fn at(&mut self, now: Nanos) {
            self.now = now;
            self.c.advance(now, &mut self.irq);
        }
        /// Seconds, minutes, hours, day of week, date, month, year, century.
        fn clock(&mut self) -> [u8; 8] {
            [
                REG_SECONDS,
                REG_MINUTES,
                REG_HOURS,
                REG_DAY_OF_WEEK,
                REG_DATE_OF_MONTH,
                REG_MONTH,
                REG_YEAR,
                REG_CENTURY,
            ]
            .map(|r| self.rd(r))
        }
    }

    /// 2000-01-01 00:00:00 UTC, a Saturday.
    const Y2K: u64 = 946_684_800;

    #[test]
    fn calendar_conversions_round_trip() {
        for days in (-800_000..3_000_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(47_541), (2100, 3, 1), "2100 is no leap year");
        assert_eq!(days_from_civil(2023, 2, 29), days_from_civil(2023, 3, 1), "a day past the end counts on");
    }

    #[test]
    fn date_for_a_known_epoch_and_a_leap_day() {
        let mut r = Rtc::new(Y2K);
        assert_eq!(r.clock(), [0x00, 0x00, 0x00, 0x07, 0x01, 0x01, 0x00, 0x20]);
        // 2024-02-29 12:34:56, a Thursday.
        let mut r = Rtc::new(1_709_210_096);
        assert_eq!(r.clock(), [0x56, 0x34, 0x12, 0x05, 0x29, 0x02, 0x24, 0x20]);
        // 2024-02-29 23:59:59 → 2024-03-01 00:00:00, Friday.
        let mut r = Rtc::new(1_709_251_199);
        r.now = S - 1;
        assert_eq!(r.clock(), [0x59, 0x59, 0x23, 0x05, 0x29, 0x02, 0x24, 0x20]);
        r.now = S;
        assert_eq!(r.clock(), [0x00, 0x00, 0x00, 0x06, 0x01, 0x03, 0x24, 0x20]);
        // 2100-02-28 23:59:59 → 2100-03-01.
        let mut r = Rtc::new(4_107_542_399);
        r.now = S;
        assert_eq!(r.clock()[4..], [0x01, 0x03, 0x00, 0x21]);
    }

    #[test]
    fn bcd_and_binary_modes() {
        let mut r = Rtc::new(1_709_210_096);
        r.wr(REG_B, B_24H | B_DM_BINARY);
        assert_eq!(r.clock(), [56, 34, 12, 5, 29, 2, 24, 20]);
        r.wr(REG_MINUTES, 7);
        r.wr(REG_B, B_24H);
        assert_eq!(r.rd(REG_MINUTES), 0x07);
        r.wr(REG_SECONDS, 0x75);
        assert_eq!(r.rd(REG_SECONDS), 0x59, "out-of-range writes are limited");
    }

    #[test]
    fn twelve_hour_mode_with_the_pm_bit() {
        let mut r = Rtc::new(Y2K);
        r.wr(REG_B, 0); // 12-hour, BCD
        assert_eq!(r.rd(REG_HOURS), 0x12, "midnight is 12 AM");
        for (h24, h12) in [(0x01, 0x01), (0x11, 0x11), (0x12, 0x92), (0x13, 0x81), (0x23, 0x91)] {
            r.wr(REG_B, B_24H);
            r.wr(REG_HOURS, h24);
            r.wr(REG_B, 0);
            assert_eq!(r.rd(REG_HOURS), h12, "{h24:#x}");
        }
        r.wr(REG_HOURS, 0x80 | 0x12); // 12 PM
        r.wr(REG_B, B_24H);
        assert_eq!(r.rd(REG_HOURS), 0x12);
        r.wr(REG_B, B_DM_BINARY);
        r.wr(REG_HOURS, 12); // 12 AM
        r.wr(REG_B, B_24H | B_DM_BINARY);
        assert_eq!(r.rd(REG_HOURS), 0);
    }

    #[test]
    fn uip_in_the_244_us_before_each_update() {
        let mut r = Rtc::new(Y2K);
        r.now = S - UIP_WARNING - 1;
        assert_eq!(r.rd(REG_A), A_POWER_ON);
        r.now = S - UIP_WARNING;
        assert_eq!(r.rd(REG_A), A_POWER_ON | A_UIP);
        assert_eq!(r.rd(REG_SECONDS), 0x00);
        r.now = S;
        assert_eq!(r.rd(REG_A), A_POWER_ON);
        assert_eq!(r.rd(REG_SECONDS), 0x01);
        r.wr(REG_B, B_24H | B_SET);
        r.now = 2 * S - 1;
        assert_eq!(r.rd(REG_A), A_POWER_ON, "SET clears UIP");
    }

    #[test]
    fn update_interrupt_every_second() {
        let mut r = Rtc::new(Y2K);
        r.wr(REG_A, 0x20); // no periodic flag in C
        assert_eq!(r.c.next_deadline(0), None, "no interrupt enabled");
        r.wr(REG_B, B_24H | B_UIE);
        for k in 1..=3 {
            assert_eq!(r.c.next_deadline(r.now), Some(k * S));
            r.at(k * S - 1);
            assert!(!r.irq.high);
            r.at(k * S);
            assert!(r.irq.high);
            assert_eq!(r.c.next_deadline(r.now), None, "IRQF stays until C is read");
            assert_eq!(r.rd(REG_C), C_IRQF | C_UF);
            assert!(!r.irq.high, "reading C lowers IRQ 8");
            assert_eq!(r.rd(REG_C), 0);
        }
        assert_eq!(r.irq.rising_edges, 3);
        assert_eq!(r.rd(REG_SECONDS), 0x03);
    }

    #[test]
    fn periodic_interrupt_at_1024_hz() {
        let mut r = Rtc::new(Y2K);
        r.wr(REG_B, B_24H | B_PIE);
        // 1/1024 s = 976,562.5 ns: events at ceil(k × 976562.5).
        assert_eq!(r.c.next_deadline(0), Some(976_563));
        let mut count = 0;
        while let Some(t) = r.c.next_deadline(r.now).filter(|&t| t <= S) {
            r.at(t);
            assert!(r.irq.high);
            assert_eq!(r.rd(REG_C) & (C_IRQF | C_PF), C_IRQF | C_PF);
            count += 1;
        }
        assert_eq!(count, 1024);
        assert_eq!(r.now, S);
        // Rate 0 stops it; rates 1 and 2 are 256 Hz and 128 Hz.
        r.wr(REG_A, 0x20);
        assert_eq!(r.c.next_deadline(r.now), None);
        r.wr(REG_A, 0x21);
        assert_eq!(r.c.next_deadline(r.now), Some(S + S / 256));
        r.wr(REG_A, 0x22);
        assert_eq!(r.c.next_deadline(r.now), Some(S + S / 128));
        // PF is set without PIE, but IRQF is not.
        r.wr(REG_B, B_24H);
        r.at(2 * S);
        assert!(!r.irq.high);
        assert_eq!(r.rd(REG_C), C_PF | C_UF);
    }

    #[test]
    fn alarm_with_values_and_dont_care() {
        let mut r = Rtc::new(Y2K);
        r.wr(REG_A, 0x20); // no periodic flag in C
        r.wr(REG_HOURS_ALARM, 0x00);
        r.wr(REG_MINUTES_ALARM, 0x00);
        r.wr(REG_SECONDS_ALARM, 0x05);
        r.wr(REG_B, B_24H | B_AIE);
        assert_eq!(r.c.next_deadline(0), Some(5 * S));
        r.at(5 * S - 1);
        assert!(!r.irq.high);
        r.at(5 * S);
        assert!(r.irq.high);
        assert_eq!(r.rd(REG_C), C_IRQF | C_AF | C_UF);
        // Next match: tomorrow.
        assert_eq!(r.c.next_deadline(r.now), Some(5 * S + 86_400 * S));
        // Any hour, minute 1, second 0xC0 (don't care): 00:01:00.
        r.wr(REG_HOURS_ALARM, 0xFF);
        r.wr(REG_MINUTES_ALARM, 0x01);
        r.wr(REG_SECONDS_ALARM, 0xC0);
        assert_eq!(r.c.next_deadline(r.now), Some(60 * S));
        // All don't care: every second.
        r.wr(REG_MINUTES_ALARM, 0xC0);
        assert_eq!(r.c.next_deadline(r.now), Some(6 * S));
        // A value the clock never shows: never.
        r.wr(REG_SECONDS_ALARM, 0x60);
        assert_eq!(r.c.next_deadline(r.now), None);
        // Jumping over an alarm still sets AF.
        r.wr(REG_SECONDS_ALARM, 0x30);
        r.at(1000 * S);
        assert_eq!(r.rd(REG_C), C_IRQF | C_AF | C_UF);
    }

    #[test]
    fn next_alarm_match_cases() {
        let hms = |h: u32, m: u32, s: u32| h * 3600 + m * 60 + s;
        assert_eq!(next_alarm_match(hms(10, 0, 0), None, None, None), Some(1));
        assert_eq!(next_alarm_match(hms(10, 0, 0), Some(10), Some(0), Some(0)), Some(86_400));
        assert_eq!(next_alarm_match(hms(10, 59, 59), Some(10), None, None), Some(hms(23, 0, 1)));
        assert_eq!(next_alarm_match(hms(23, 59, 59), None, None, Some(0)), Some(1));
        assert_eq!(next_alarm_match(hms(12, 30, 45), None, Some(30), None), Some(1));
        assert_eq!(next_alarm_match(hms(12, 30, 45), None, Some(31), None), Some(15));
        assert_eq!(next_alarm_match(hms(12, 30, 59), None, Some(30), None), Some(hms(0, 59, 1)));
        assert_eq!(next_alarm_match(hms(12, 30, 59), Some(12), Some(30), Some(58)), Some(86_399));
    }

    #[test]
    fn reading_c_clears_irq_and_enabling_a_set_flag_raises_it() {
        let mut r = Rtc::new(Y2K);
        r.wr(REG_A, 0x20); // no periodic flag in C
        r.at(S); // UF set, UIE off
        assert!(!r.irq.high);
        r.wr(REG_B, B_24H | B_UIE);
        assert!(r.irq.high, "IRQF = UF·UIE");
        assert_eq!(r.rd(REG_C), C_IRQF | C_UF);
        assert!(!r.irq.high);
        r.wr(REG_C, 0xFF);
        r.wr(REG_D, 0x00);
        assert_eq!((r.rd(REG_C), r.rd(REG_D)), (0, D_VRT), "C and D are read-only");
    }

    #[test]
    fn nmi_mask_bit_and_index_port() {
        let mut r = Rtc::new(Y2K);
        assert!(!r.c.nmi_masked());
        r.c.write(INDEX_PORT, 0x80 | 0x0D, 0, &mut r.irq);
        assert!(r.c.nmi_masked());
        assert_eq!(r.c.read(DATA_PORT, 0, &mut r.irq), D_VRT, "bit 7 is not part of the index");
        assert_eq!(r.c.read(INDEX_PORT, 0, &mut r.irq), 0xFF);
        r.c.write(INDEX_PORT, 0x0D, 0, &mut r.irq);
        assert!(!r.c.nmi_masked());
        assert_eq!(r.c.read(0x72, 0, &mut r.irq), 0xFF);
    }

    #[test]
    fn general_ram_bytes() {
        let mut r = Rtc::new(Y2K);
        r.wr(0x7F, 0xA5);
        r.wr(0x40, 0x5A);
        assert_eq!((r.rd(0x7F), r.rd(0x40)), (0xA5, 0x5A));
    }

    #[test]
    fn memory_size_bytes_and_checksum() {
        let mut r = Rtc::new(Y2K);
        let bytes = |r: &mut Rtc, regs: &[u8]| regs.iter().map(|&i| r.rd(i)).collect::<Vec<_>>();
        // 16 MiB: 640 KiB base, 15 MiB extended, nothing above 16 MiB.
        assert_eq!(bytes(&mut r, &[0x15, 0x16]), [0x80, 0x02]);
        assert_eq!(bytes(&mut r, &[0x17, 0x18, 0x30, 0x31]), [0x00, 0x3C, 0x00, 0x3C]);
        assert_eq!(bytes(&mut r, &[0x34, 0x35, 0x5B, 0x5C, 0x5D]), [0, 0, 0, 0, 0]);
        assert_eq!(r.rd(0x14), 0x00);
        let sum: u16 = (0x10..=0x2D).map(|i| u16::from(r.rd(i))).sum();
        assert_eq!(bytes(&mut r, &[0x2E, 0x2F]), sum.to_be_bytes());
        // 3 GiB: extended capped at 0xFFFF KiB; (3 GiB − 16 MiB) / 64 KiB = 0xBF00.
        r.c = Cmos::new(Y2K, 3 << 30);
        assert_eq!(bytes(&mut r, &[0x17, 0x18, 0x30, 0x31]), [0xFF; 4]);
        assert_eq!(bytes(&mut r, &[0x34, 0x35, 0x5B, 0x5C, 0x5D]), [0x00, 0xBF, 0, 0, 0]);
        // 6 GiB: 2 GiB above 4 GiB = 0x8000 blocks.
        r.c = Cmos::new(Y2K, 6 << 30);
        assert_eq!(bytes(&mut r, &[0x34, 0x35, 0x5B, 0x5C, 0x5D]), [0x00, 0xFF, 0x00, 0x80, 0x00]);
        // Tiny RAM.
        r.c = Cmos::new(Y2K, 512 << 10);
        assert_eq!(bytes(&mut r, &[0x15, 0x16, 0x17, 0x18]), [0x00, 0x02, 0, 0]);
        r.c.set_fpu_present(true);
        assert_eq!(r.rd(0x14), 0x02);
        let sum: u16 = (0x10..=0x2D).map(|i| u16::from(r.rd(i))).sum();
        assert_eq!(bytes(&mut r, &[0x2E, 0x2F]), sum.to_be_bytes());
    }

    #[test]
    fn setting_the_time_under_set_and_running_from_it() {
        let mut r = Rtc::new(Y2K);
        r.now = S / 4;
        r.wr(REG_B, B_24H | B_SET | B_UIE);
        assert_eq!(r.rd(REG_B), B_24H | B_SET, "SET clears UIE");
        // 2038-01-19 03:14:07, written field by field from a February: the 31st of a month
        // that has none must survive until the month is written.
        r.wr(REG_MONTH, 0x02);
        for (reg, v) in [
            (REG_SECONDS, 0x07),
            (REG_MINUTES, 0x14),
            (REG_HOURS, 0x03),
            (REG_DAY_OF_WEEK, 0x03),
            (REG_DATE_OF_MONTH, 0x31),
            (REG_MONTH, 0x03),
        ] {
            r.wr(reg, v);
        }
        assert_eq!((r.rd(REG_MONTH), r.rd(REG_DATE_OF_MONTH)), (0x03, 0x31));
        r.wr(REG_MONTH, 0x01);
        r.wr(REG_DATE_OF_MONTH, 0x19);
        r.wr(REG_YEAR, 0x38);
        r.now = 5 * S;
        assert_eq!(r.clock(), [0x07, 0x14, 0x03, 0x03, 0x19, 0x01, 0x38, 0x20], "frozen under SET");
        r.wr(REG_B, B_24H);
        r.now = 6 * S - 1;
        assert_eq!(r.rd(REG_SECONDS), 0x07);
        r.now = 6 * S;
        assert_eq!(r.rd(REG_SECONDS), 0x08, "runs on, in the chain's phase");
        // Twenty-one hours later it is Wednesday the 20th.
        r.now = 6 * S + 21 * 3600 * S;
        assert_eq!(r.clock(), [0x08, 0x14, 0x00, 0x04, 0x20, 0x01, 0x38, 0x20]);
        // A day that does not exist carries into the next month at the next update.
        r.wr(REG_MONTH, 0x02);
        r.wr(REG_DATE_OF_MONTH, 0x31);
        assert_eq!(r.rd(REG_DATE_OF_MONTH), 0x31);
        r.now += S;
        assert_eq!((r.rd(REG_MONTH), r.rd(REG_DATE_OF_MONTH)), (0x03, 0x03));
        // The century byte is part of the clock.
        r.wr(REG_CENTURY, 0x19);
        assert_eq!((r.rd(REG_CENTURY), r.rd(REG_YEAR)), (0x19, 0x38));
    }

    #[test]
    fn divider_reset_stops_the_clock_and_restarts_half_a_second_later() {
        let mut r = Rtc::new(Y2K);
        r.wr(REG_B, B_24H | B_UIE);
        r.now = S / 10;
        r.wr(REG_A, 0x70);
        assert_eq!(r.c.next_deadline(r.now), None);
        r.now = 10 * S;
        assert_eq!(r.rd(REG_SECONDS), 0x00, "stopped");
        r.wr(REG_A, 0x26);
        assert_eq!(r.c.next_deadline(r.now), Some(10 * S + S / 2));
        r.at(10 * S + S / 2);
        assert!(r.irq.high);
        assert_eq!(r.rd(REG_SECONDS), 0x01);
    }

    #[test]
    fn jumping_a_century_ahead() {
        let mut r = Rtc::new(Y2K);
        r.wr(REG_B, B_24H | B_UIE);
        // 36,525 days: 2100-01-01 00:00:00 is a Friday.
        let t = 36_525 * 86_400 * S;
        r.at(t);
        assert!(r.irq.high);
        assert_eq!(r.clock(), [0x00, 0x00, 0x00, 0x06, 0x01, 0x01, 0x00, 0x21]);
        // The far end of u64 time and of the calendar: no panic.
        r.at(u64::MAX);
        r.clock();
        assert!(r.c.next_deadline(u64::MAX).is_none_or(|d| d == u64::MAX));
        let mut r = Rtc::new(u64::MAX);
        assert_eq!(r.clock(), [0x59, 0x59, 0x23, 0x06, 0x31, 0x12, 0x99, 0x99]);
        r.now = S;
        assert_eq!(r.clock(), [0x00, 0x00, 0x00, 0x07, 0x01, 0x01, 0x00, 0x00], "9999 wraps to 0000");
    }

    #[test]
    fn save_change_restore_compare() {
        let mut r = Rtc::new(Y2K);
        r.wr(REG_B, B_24H | B_PIE | B_AIE);
        r.wr(REG_SECONDS_ALARM, 0x10);
        r.wr(0x50, 0x77);
        r.c.write(INDEX_PORT, 0x80 | 0x0C, 0, &mut r.irq);
        r.at(3 * S + 5);
        let saved = r.c.save();
        r.at(20 * S);
        r.wr(REG_B, B_24H | B_DM_BINARY);
        r.wr(0x50, 0);
        assert_ne!(r.c.save(), saved);
        r.c.restore(&saved).unwrap();
        assert_eq!(r.c.save(), saved);
        assert!(r.c.nmi_masked());
        r.now = 3 * S + 5;
        assert_eq!((r.rd(REG_SECONDS), r.rd(0x50)), (0x03, 0x77));
        assert_eq!(r.rd(REG_C), C_IRQF | C_PF | C_UF);
        let mut bad = saved.clone();
        bad.month = 13;
        assert!(r.c.restore(&bad).is_err());
        let mut bad = saved;
        bad.next_update = bad.now + 2 * S;
        assert!(r.c.restore(&bad).is_err());
    }
}
