//! I/O ports and register bits of the PC platform the protected-mode guests program, named as
//! in the datasheets: the 8259A interrupt controllers (Intel 8259A datasheet, "Programming the
//! 8259A"), the 8254 interval timer (Intel 82C54 datasheet) and port 61h (IBM PC/AT Technical
//! Reference, system control port B), the 16550A UART (National Semiconductor PC16550D
//! datasheet, section 8), the MC146818A real-time clock (Motorola MC146818A datasheet) and the
//! PIIX4 power-management control register QEMU decodes at 604h.

/// The 8259A programmable interrupt controllers: master (IRQ 0–7) and slave (IRQ 8–15, on
/// the master's IR2).
pub(crate) mod pic {
    /// Master: command (ICW1, OCW2, OCW3; reads IRR, ISR or the poll word).
    pub const MASTER_CMD: u32 = 0x20;
    /// Master: data (ICW2–4, OCW1 = the interrupt mask register).
    pub const MASTER_DATA: u32 = 0x21;
    /// Slave: command.
    pub const SLAVE_CMD: u32 = 0xA0;
    /// Slave: data.
    pub const SLAVE_DATA: u32 = 0xA1;
    /// Edge/level control register of the PIIX for IRQ 0–7 (1 = level-triggered); the one for
    /// IRQ 8–15 follows at 4D1h.
    pub const ELCR1: u32 = 0x4D0;

    /// ICW1: bit 4 marks an initialisation command word; IC4 = an ICW4 follows; edge
    /// triggered, cascade mode.
    pub const ICW1_INIT_IC4: u8 = 0x11;
    /// ICW3 of the master: a slave on IR2.
    pub const ICW3_MASTER_SLAVE_ON_IR2: u8 = 0x04;
    /// ICW3 of the slave: its ID, 2.
    pub const ICW3_SLAVE_ID2: u8 = 0x02;
    /// ICW4: 8086/8088 mode (µPM = 1), normal EOI.
    pub const ICW4_8086: u8 = 0x01;
    /// ICW4: 8086 mode with automatic EOI (AEOI = 1).
    pub const ICW4_8086_AEOI: u8 = 0x03;
    /// OCW2: non-specific EOI.
    pub const OCW2_EOI: u8 = 0x20;
    /// OCW2: specific EOI for level L is `OCW2_SPECIFIC_EOI | L`.
    pub const OCW2_SPECIFIC_EOI: u8 = 0x60;
    /// OCW2: rotate on non-specific EOI.
    pub const OCW2_ROTATE_EOI: u8 = 0xA0;
    /// OCW2: set priority, `OCW2_SET_PRIORITY | L` makes level L the lowest.
    pub const OCW2_SET_PRIORITY: u8 = 0xC0;
    /// OCW3: the next read of the command port returns the IRR.
    pub const OCW3_READ_IRR: u8 = 0x0A;
    /// OCW3: the next read of the command port returns the ISR.
    pub const OCW3_READ_ISR: u8 = 0x0B;
    /// OCW3: poll command; the next read acknowledges the highest request and returns
    /// 80h | level (0 when none).
    pub const OCW3_POLL: u8 = 0x0C;
    /// Vector base of the master after the remap (ICW2).
    pub const MASTER_BASE: u32 = 0x20;
    /// Vector base of the slave after the remap (ICW2).
    pub const SLAVE_BASE: u32 = 0x28;
}

/// The 8254 programmable interval timer (1.193182 MHz input clock on all three counters).
pub(crate) mod pit {
    /// Counter 0 (its OUT is IRQ 0).
    pub const COUNTER0: u32 = 0x40;
    /// Counter 2 (its GATE and OUT are bits 0 and 5 of port 61h).
    pub const COUNTER2: u32 = 0x42;
    /// Control word register.
    pub const CONTROL: u32 = 0x43;
    /// The input clock in Hz.
    pub const HZ: u32 = 1_193_182;
    /// Control word: SC1:SC0 for counter `n` (bits 7:6).
    pub const fn select(counter: u8) -> u8 {
        counter << 6
    }
    /// Control word: RW = LSB then MSB.
    pub const RW_LSB_MSB: u8 = 0x30;
    /// Control word: RW = LSB only.
    pub const RW_LSB: u8 = 0x10;
    /// Control word: counter latch command (RW = 00).
    pub const LATCH: u8 = 0x00;
    /// Control word: mode `m` (bits 3:1).
    pub const fn mode(m: u8) -> u8 {
        m << 1
    }
    /// Control word: BCD counting.
    pub const BCD: u8 = 0x01;
    /// Read-back command (SC = 11): bit 5 clear = latch count, bit 4 clear = latch status,
    /// bits 3:1 select counters 2, 1, 0.
    pub const READ_BACK: u8 = 0xC0;
    /// Read-back: do not latch the count.
    pub const READ_BACK_NO_COUNT: u8 = 0x20;
    /// Read-back: do not latch the status.
    pub const READ_BACK_NO_STATUS: u8 = 0x10;
    /// Read-back: select counter `n`.
    pub const fn read_back_counter(n: u8) -> u8 {
        2 << n
    }
    /// Status byte: the OUT pin.
    pub const STATUS_OUT: u8 = 0x80;
    /// Port 61h (system control port B): bit 0 = GATE of counter 2, bit 1 = speaker data,
    /// bit 4 = refresh toggle, bit 5 = OUT of counter 2 (read only).
    pub const PORT_B: u32 = 0x61;
    /// Port 61h: GATE2.
    pub const PORT_B_GATE2: u8 = 0x01;
    /// Port 61h: refresh request toggle.
    pub const PORT_B_REFRESH: u8 = 0x10;
    /// Port 61h: OUT2.
    pub const PORT_B_OUT2: u8 = 0x20;
    /// Count for a 100 Hz tick: 1193182 / 100, rounded (11932).
    pub const COUNT_100HZ: u32 = (HZ + 50) / 100;
}

/// The 16550A UART; register offsets from the base port.
pub(crate) mod uart {
    /// COM1's base port (IRQ 4).
    pub const COM1: u32 = 0x3F8;
    /// COM1's IRQ line.
    pub const COM1_IRQ: u32 = 4;
    /// Receiver buffer (read) / transmitter holding register (write); DLL with DLAB = 1.
    pub const RBR: u32 = 0;
    /// Transmitter holding register.
    pub const THR: u32 = 0;
    /// Divisor latch, low byte (DLAB = 1).
    pub const DLL: u32 = 0;
    /// Interrupt enable register; DLM with DLAB = 1.
    pub const IER: u32 = 1;
    /// Divisor latch, high byte (DLAB = 1).
    pub const DLM: u32 = 1;
    /// Interrupt identification register (read).
    pub const IIR: u32 = 2;
    /// FIFO control register (write).
    pub const FCR: u32 = 2;
    /// Line control register.
    pub const LCR: u32 = 3;
    /// Modem control register.
    pub const MCR: u32 = 4;
    /// Line status register.
    pub const LSR: u32 = 5;
    /// Modem status register.
    pub const MSR: u32 = 6;
    /// Scratch register.
    pub const SCR: u32 = 7;

    /// IER: received data available.
    pub const IER_ERBFI: u8 = 0x01;
    /// IER: transmitter holding register empty.
    pub const IER_ETBEI: u8 = 0x02;
    /// IER: receiver line status.
    pub const IER_ELSI: u8 = 0x04;
    /// IER: modem status.
    pub const IER_EDSSI: u8 = 0x08;

    /// IIR: no interrupt pending (bit 0 = 1).
    pub const IIR_NONE: u8 = 0x01;
    /// IIR: receiver line status (highest priority).
    pub const IIR_RLS: u8 = 0x06;
    /// IIR: received data available.
    pub const IIR_RDA: u8 = 0x04;
    /// IIR: character timeout (FIFO mode).
    pub const IIR_CTI: u8 = 0x0C;
    /// IIR: transmitter holding register empty.
    pub const IIR_THRE: u8 = 0x02;
    /// IIR: modem status (lowest priority).
    pub const IIR_MS: u8 = 0x00;
    /// IIR bits 7:6 with the FIFOs enabled.
    pub const IIR_FIFOS: u8 = 0xC0;

    /// FCR: enable the FIFOs.
    pub const FCR_ENABLE: u8 = 0x01;
    /// FCR: clear the receiver FIFO.
    pub const FCR_CLEAR_RX: u8 = 0x02;
    /// FCR: clear the transmitter FIFO.
    pub const FCR_CLEAR_TX: u8 = 0x04;
    /// FCR: receiver trigger level 1, 4, 8 or 14 bytes (bits 7:6).
    pub const fn fcr_trigger(bytes: u8) -> u8 {
        match bytes {
            1 => 0x00,
            4 => 0x40,
            8 => 0x80,
            14 => 0xC0,
            _ => panic!("16550A trigger levels are 1, 4, 8 and 14 bytes"),
        }
    }

    /// LCR: 8 data bits, no parity, 1 stop bit.
    pub const LCR_8N1: u8 = 0x03;
    /// LCR: divisor latch access bit.
    pub const LCR_DLAB: u8 = 0x80;

    /// MCR: data terminal ready.
    pub const MCR_DTR: u8 = 0x01;
    /// MCR: request to send.
    pub const MCR_RTS: u8 = 0x02;
    /// MCR: OUT1.
    pub const MCR_OUT1: u8 = 0x04;
    /// MCR: OUT2 (on a PC, enables the UART's interrupt output onto the ISA bus).
    pub const MCR_OUT2: u8 = 0x08;
    /// MCR: local loopback.
    pub const MCR_LOOP: u8 = 0x10;

    /// LSR: data ready.
    pub const LSR_DR: u8 = 0x01;
    /// LSR: overrun error.
    pub const LSR_OE: u8 = 0x02;
    /// LSR: transmitter holding register (FIFO) empty.
    pub const LSR_THRE: u8 = 0x20;
    /// LSR: transmitter empty (holding register and shift register).
    pub const LSR_TEMT: u8 = 0x40;

    /// MSR: delta clear to send.
    pub const MSR_DCTS: u8 = 0x01;
    /// MSR: delta data set ready.
    pub const MSR_DDSR: u8 = 0x02;
    /// MSR: trailing edge of ring indicator.
    pub const MSR_TERI: u8 = 0x04;
    /// MSR: delta data carrier detect.
    pub const MSR_DDCD: u8 = 0x08;
    /// MSR: clear to send.
    pub const MSR_CTS: u8 = 0x10;
    /// MSR: data set ready.
    pub const MSR_DSR: u8 = 0x20;
    /// MSR: ring indicator.
    pub const MSR_RI: u8 = 0x40;
    /// MSR: data carrier detect.
    pub const MSR_DCD: u8 = 0x80;
}

/// The MC146818A real-time clock and CMOS RAM.
pub(crate) mod cmos {
    /// Index port: bits 6:0 select the register, bit 7 set disables NMI (PC/AT).
    pub const INDEX: u32 = 0x70;
    /// Data port.
    pub const DATA: u32 = 0x71;
    /// Port 70h bit 7: NMI disabled.
    pub const NMI_DISABLE: u8 = 0x80;
    /// The RTC's IRQ line (on the slave 8259A).
    pub const IRQ: u32 = 8;

    /// Seconds.
    pub const SECONDS: u8 = 0x00;
    /// Seconds alarm.
    pub const SECONDS_ALARM: u8 = 0x01;
    /// Minutes.
    pub const MINUTES: u8 = 0x02;
    /// Minutes alarm.
    pub const MINUTES_ALARM: u8 = 0x03;
    /// Hours.
    pub const HOURS: u8 = 0x04;
    /// Hours alarm.
    pub const HOURS_ALARM: u8 = 0x05;
    /// Register A: UIP (bit 7), DV2–DV0 (6:4), RS3–RS0 (3:0).
    pub const REG_A: u8 = 0x0A;
    /// Register B: SET, PIE, AIE, UIE, SQWE, DM, 24/12, DSE.
    pub const REG_B: u8 = 0x0B;
    /// Register C: IRQF, PF, AF, UF (read only; reading clears it).
    pub const REG_C: u8 = 0x0C;
    /// Register D: VRT (bit 7).
    pub const REG_D: u8 = 0x0D;
    /// The century, in the time registers' format (PC/AT convention, not the MC146818A's).
    pub const CENTURY: u8 = 0x32;
    /// A byte of the battery-backed RAM no firmware convention gives a meaning.
    pub const SPARE_RAM: u8 = 0x5E;

    /// Register A: update in progress.
    pub const A_UIP: u8 = 0x80;
    /// Register A: DV = 010, the 32.768 kHz time base, dividers running.
    pub const A_DV_32K: u8 = 0x20;
    /// Register B: SET (updates halted).
    pub const B_SET: u8 = 0x80;
    /// Register B: periodic interrupt enable.
    pub const B_PIE: u8 = 0x40;
    /// Register B: alarm interrupt enable.
    pub const B_AIE: u8 = 0x20;
    /// Register B: update-ended interrupt enable.
    pub const B_UIE: u8 = 0x10;
    /// Register B: binary (not BCD) data mode.
    pub const B_DM_BINARY: u8 = 0x04;
    /// Register B: 24-hour mode.
    pub const B_24H: u8 = 0x02;
    /// Register C: interrupt request flag.
    pub const C_IRQF: u8 = 0x80;
    /// Register C: periodic interrupt flag.
    pub const C_PF: u8 = 0x40;
    /// Register C: alarm flag.
    pub const C_AF: u8 = 0x20;
    /// Register C: update-ended flag.
    pub const C_UF: u8 = 0x10;
    /// Register D: valid RAM and time.
    pub const D_VRT: u8 = 0x80;
    /// Alarm registers: a value with bits 7:6 set matches every value ("don't care").
    pub const ALARM_ANY: u8 = 0xC0;
}

/// Power-off through the ACPI PM1a control register of QEMU's PIIX4 power management
/// function (I/O base 600h as the firmware or QEMU sets it up): writing SLP_EN (bit 13) with
/// SLP_TYP = 0 (the S5 soft-off type in QEMU's tables) turns the machine off; QEMU exits with
/// status 0, and bt86 does the same.
pub(crate) mod power {
    /// PM1a control register (16 bits).
    pub const PM1A_CNT: u32 = 0x604;
    /// SLP_EN with SLP_TYP = 0.
    pub const SLP_EN_S5: u32 = 0x2000;
}
