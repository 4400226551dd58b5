//! The pair of 8259A programmable interrupt controllers of a PC/AT, with the PIIX ELCR.
//!
//! Follows the Intel 8259A datasheet (order 231468): "Interrupt Sequence" (INTA cycle and the
//! default IR7), "Initialization Command Words" (ICW1–ICW4 and the sequence between them),
//! "Operation Command Words" (OCW1–OCW3), "Fully Nested Mode", "End of Interrupt",
//! "Automatic Rotation", "Specific Rotation", "Special Mask Mode", "Poll Command",
//! "Reading the 8259A Status", "Edge and Level Triggered Modes", "Special Fully Nested Mode" and
//! "Cascade Mode". The edge/level control registers ELCR1/ELCR2 (ports 0x4D0/0x4D1) follow the
//! Intel PIIX/PIIX4 datasheets: bit n set makes IRQ n level-triggered; IRQs 0, 1, 2, 8 and 13 are
//! always edge-triggered there, so those bits read 0.
//!
//! Wiring of the PC/AT: the master answers at 0x20/0x21, the slave at 0xA0/0xA1; the slave's INT
//! output drives the master's IR2 (an edge-triggered input, as ELCR bit 2 is always 0). The master
//! is the chip whose SP/EN pin is tied high, so the roles are fixed by construction.
//!
//! Deliberate deviations, with reasons:
//!
//! - **Edge-triggered requests stay latched when the line falls.** The datasheet ANDs the edge
//!   latch with the live input, so an edge request withdrawn before INTA turns into a default IR7.
//!   Here the whole INTA sequence happens in one call ([`PicPair::acknowledge`]), so that hardware
//!   window does not exist, and devices in an emulator may pulse a line high and low between two
//!   instruction boundaries; keeping the latch (as KVM and QEMU do) means no edge is lost. A
//!   level-triggered request (ELCR) does follow its line, so withdrawing one still produces the
//!   default IR7 (master) or IR15 (slave) exactly as the datasheet describes. The cascade input
//!   (master IR2, driven by the slave's INT output, a level computed from the slave's state)
//!   always follows its line: a slave request masked away before the acknowledge is gone at the
//!   master as well, so no spurious IRQ 15 is made up for it.
//! - **ICW1 also clears the ISR.** The datasheet's list of what ICW1 resets does not mention the
//!   ISR; re-initialisation is meant to start the controller afresh, and guests that reprogram the
//!   PIC with a level in service rely on it (Bochs and QEMU do the same).
//! - **ICW1 LTIM is stored but ignored**, as on the PIIX: the ELCR alone selects level triggering.
//! - **MCS-80/85 mode is treated as 8086 mode.** ICW4 µPM = 0 (or no ICW4) would make the chip send
//!   a CALL instruction, which means nothing to an x86 CPU; the vector is always ICW2 T7–T3 plus the
//!   IR number. ICW1 ADI and A7–A5 are stored only. ICW4 BUF and M/S are stored only (the PC does
//!   not use buffered mode; the master/slave roles come from the wiring).
//! - **A poll read is a complete acknowledge of the polled chip**, including the automatic EOI when
//!   ICW4 AEOI is set (the datasheet says the read is treated as an interrupt acknowledge). A poll
//!   of the master that finds IR2 reports level 2; it does not reach into the slave.
//! - **The special fully nested mode is implemented for the cascade input only**: on the master, a
//!   request from IR2 (when ICW3 names a slave there) is accepted while IR2 is itself in service.
//! - **The power-on state is the one a PC BIOS leaves**: both chips initialised with the standard
//!   sequence (ICW1 0x11, ICW2 0x08/0x70, ICW3 0x04/0x02, ICW4 0x01), every IRQ masked except the
//!   cascade. The datasheet leaves the state before ICW1 undefined; kernels booted without a BIOS
//!   (Multiboot, the Linux boot protocol) expect a PC-conformant controller.
//! - **An INTA that names a cascade input with no slave answering** returns 0xFF, the value of
//!   a floating data bus.
//!
//! The two requests outside the 8259A's inputs are ignored: `set_irq(2, …)` (IR2 of the master is
//! the cascade, driven only by the slave; the ISA bus routes its IRQ2 pin to IRQ9) and IRQs above 15.

use crate::RestoreError;

/// Master command port (ICW1, OCW2, OCW3; reads IRR, ISR or the poll word).
pub const MASTER_COMMAND_PORT: u16 = 0x20;
/// Master data port (ICW2–ICW4, OCW1 = IMR).
pub const MASTER_DATA_PORT: u16 = 0x21;
/// Slave command port.
pub const SLAVE_COMMAND_PORT: u16 = 0xA0;
/// Slave data port.
pub const SLAVE_DATA_PORT: u16 = 0xA1;
/// ELCR1: edge/level control for IRQ 0–7 (PIIX).
pub const ELCR1_PORT: u16 = 0x4D0;
/// ELCR2: edge/level control for IRQ 8–15 (PIIX).
pub const ELCR2_PORT: u16 = 0x4D1;

/// ELCR1 bits that can be set: IRQ 0, 1 and 2 are always edge-triggered.
const ELCR1_WRITABLE: u8 = 0xF8;
/// ELCR2 bits that can be set: IRQ 8 and 13 are always edge-triggered.
const ELCR2_WRITABLE: u8 = 0xDE;

/// The master input the slave's INT output is wired to.
const CASCADE_IR: u8 = 2;
/// The IR whose vector the controller sends when a request vanished before INTA (default IR7).
const DEFAULT_IR: u8 = 7;
/// The value of a data bus nobody drives.
const FLOATING_BUS: u8 = 0xFF;

/// ICW1 and OCW2/OCW3 share the command port; D4 = 1 marks ICW1.
const ICW1_SELECT: u8 = 0x10;
/// ICW1 IC4: ICW4 follows.
const ICW1_IC4: u8 = 0x01;
/// ICW1 SNGL: single chip, no ICW3.
const ICW1_SNGL: u8 = 0x02;
/// ICW2 T7–T3: the vector base (T2–T0 come from the IR number in 8086 mode).
const ICW2_VECTOR_BASE: u8 = 0xF8;
/// ICW3 on a slave: ID2–ID0, the slave's cascade identity.
const ICW3_SLAVE_ID: u8 = 0x07;
/// ICW4 AEOI: automatic end of interrupt.
const ICW4_AEOI: u8 = 0x02;
/// ICW4 SFNM: special fully nested mode.
const ICW4_SFNM: u8 = 0x10;
/// D3 = 1 (with D4 = 0) marks OCW3; D3 = 0 marks OCW2.
const OCW3_SELECT: u8 = 0x08;
/// OCW3 RIS: read the ISR (1) or the IRR (0) at the next command-port read...
const OCW3_RIS: u8 = 0x01;
/// ...when RR is set.
const OCW3_RR: u8 = 0x02;
/// OCW3 P: poll command.
const OCW3_P: u8 = 0x04;
/// OCW3 SMM: the special mask mode value...
const OCW3_SMM: u8 = 0x20;
/// ...taken when ESMM is set.
const OCW3_ESMM: u8 = 0x40;
/// OCW2 L2–L0: the IR level a specific command acts on.
const OCW2_LEVEL: u8 = 0x07;
/// Poll word bit I: an interrupt was pending.
const POLL_INTERRUPT: u8 = 0x80;

/// OCW2 commands (R, SL, EOI bits D7–D5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ocw2 {
    /// 000: rotate in automatic EOI mode (clear).
    RotateInAeoiClear,
    /// 001: non-specific EOI.
    NonSpecificEoi,
    /// 010: no operation.
    NoOperation,
    /// 011: specific EOI of L2–L0.
    SpecificEoi,
    /// 100: rotate in automatic EOI mode (set).
    RotateInAeoiSet,
    /// 101: rotate on non-specific EOI.
    RotateOnNonSpecificEoi,
    /// 110: set priority (L2–L0 becomes the lowest priority).
    SetPriority,
    /// 111: rotate on specific EOI.
    RotateOnSpecificEoi,
}

impl Ocw2 {
    fn decode(value: u8) -> Self {
        match value >> 5 {
            0 => Self::RotateInAeoiClear,
            1 => Self::NonSpecificEoi,
            2 => Self::NoOperation,
            3 => Self::SpecificEoi,
            4 => Self::RotateInAeoiSet,
            5 => Self::RotateOnNonSpecificEoi,
            6 => Self::SetPriority,
            _ => Self::RotateOnSpecificEoi,
        }
    }
}

/// Where a chip is in the initialisation sequence: which word the data port takes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InitStep {
    /// Initialised: the data port writes OCW1 (the IMR).
    Ready,
    /// ICW1 written: ICW2 is next.
    Icw2,
    /// ICW3 is next (cascade mode).
    Icw3,
    /// ICW4 is next (ICW1 IC4 set).
    Icw4,
}

impl InitStep {
    /// The value saved in [`PicChipState::init_step`]: 0 when ready, else the ICW number expected.
    fn to_saved(self) -> u8 {
        match self {
            Self::Ready => 0,
            Self::Icw2 => 2,
            Self::Icw3 => 3,
            Self::Icw4 => 4,
        }
    }

    fn from_saved(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::Ready),
            2 => Some(Self::Icw2),
            3 => Some(Self::Icw3),
            4 => Some(Self::Icw4),
            _ => None,
        }
    }
}

/// One 8259A.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Chip {
    /// Interrupt request register.
    irr: u8,
    /// In-service register.
    isr: u8,
    /// Interrupt mask register (OCW1).
    imr: u8,
    icw1: u8,
    icw2: u8,
    icw3: u8,
    icw4: u8,
    init: InitStep,
    /// The IR with the lowest priority (7 after ICW1; rotation moves it).
    lowest: u8,
    /// OCW3 RR/RIS: a command-port read returns the ISR (true) or the IRR (false).
    read_isr: bool,
    /// OCW3 P: the next read is a poll.
    poll: bool,
    /// Special mask mode (OCW3 ESMM/SMM).
    special_mask: bool,
    /// Rotate in automatic EOI mode (OCW2).
    rotate_in_aeoi: bool,
    /// The levels on the IR input pins (for edge detection and level-triggered requests).
    inputs: u8,
}

impl Chip {
    /// A chip as the standard PC initialisation leaves it.
    fn initialised(icw2: u8, icw3: u8, imr: u8) -> Self {
        Self {
            irr: 0,
            isr: 0,
            imr,
            icw1: ICW1_SELECT | ICW1_IC4,
            icw2,
            icw3,
            icw4: 0x01,
            init: InitStep::Ready,
            lowest: 7,
            read_isr: false,
            poll: false,
            special_mask: false,
            rotate_in_aeoi: false,
            inputs: 0,
        }
    }

    /// The vector for IR `ir` (8086 mode: T7–T3 from ICW2, T2–T0 from the IR).
    fn vector(&self, ir: u8) -> u8 {
        (self.icw2 & ICW2_VECTOR_BASE) | (ir & 7)
    }

    fn aeoi(&self) -> bool {
        self.icw4 & ICW4_AEOI != 0
    }

    /// Priority rank of `ir`: 0 is the highest.
    fn rank(&self, ir: u8) -> u8 {
        ir.wrapping_sub(self.lowest).wrapping_sub(1) & 7
    }

    /// The highest-priority IR among `bits`.
    fn highest(&self, bits: u8) -> Option<u8> {
        (1..=8u8).map(|step| self.lowest.wrapping_add(step) & 7).find(|&ir| bits & (1 << ir) != 0)
    }

    /// Whether IR `ir` of this chip (as master) has a slave on it: cascade mode and ICW3 says so.
    fn has_slave_on(&self, ir: u8) -> bool {
        self.icw1 & ICW1_SNGL == 0 && self.icw3 & (1 << ir) != 0
    }

    /// Priority resolution: the IR the chip would interrupt for now, if any. `master` selects
    /// the special fully nested rule for cascade inputs.
    fn resolve(&self, master: bool) -> Option<u8> {
        let request = self.highest(self.irr & !self.imr)?;
        // In the special mask mode, a level that is masked does not hold off others.
        let blocking = if self.special_mask { self.isr & !self.imr } else { self.isr };
        let Some(in_service) = self.highest(blocking) else {
            return Some(request);
        };
        let nested_cascade =
            master && self.icw4 & ICW4_SFNM != 0 && request == in_service && self.has_slave_on(request);
        (self.rank(request) < self.rank(in_service) || nested_cascade).then_some(request)
    }

    /// A change of the level on IR `ir`; `level_triggered` from the ELCR.
    fn set_input(&mut self, ir: u8, high: bool, level_triggered: bool) {
        let bit = 1 << ir;
        let was_high = self.inputs & bit != 0;
        if high {
            self.inputs |= bit;
            if level_triggered || !was_high {
                self.irr |= bit;
            }
        } else {
            self.inputs &= !bit;
            if level_triggered {
                self.irr &= !bit;
            }
        }
    }

    /// First INTA pulse: IR `ir` goes in service; an edge request is consumed.
    fn begin_acknowledge(&mut self, ir: u8, elcr: u8) {
        let bit = 1 << ir;
        self.isr |= bit;
        if elcr & bit == 0 {
            self.irr &= !bit;
        }
    }

    /// End of the last INTA pulse: the automatic EOI, with rotation if selected.
    fn end_acknowledge(&mut self, ir: u8) {
        if self.aeoi() {
            self.isr &= !(1 << ir);
            if self.rotate_in_aeoi {
                self.lowest = ir;
            }
        }
    }

    /// The ISR bits a non-specific EOI may clear (masked ones are skipped in special mask mode).
    fn eoi_candidates(&self) -> u8 {
        if self.special_mask {
            self.isr & !self.imr
        } else {
            self.isr
        }
    }

    fn write_icw1(&mut self, value: u8, elcr: u8) {
        self.icw1 = value;
        self.init = InitStep::Icw2;
        // The edge sense circuit is reset: an edge input needs a new low-to-high transition.
        self.irr = self.inputs & elcr;
        self.isr = 0;
        self.imr = 0;
        self.lowest = 7;
        self.icw3 = ICW3_SLAVE_ID;
        self.special_mask = false;
        self.read_isr = false;
        self.poll = false;
        self.rotate_in_aeoi = false;
        if value & ICW1_IC4 == 0 {
            self.icw4 = 0;
        }
    }

    fn write_ocw2(&mut self, value: u8) {
        let level = value & OCW2_LEVEL;
        match Ocw2::decode(value) {
            Ocw2::RotateInAeoiClear => self.rotate_in_aeoi = false,
            Ocw2::RotateInAeoiSet => self.rotate_in_aeoi = true,
            Ocw2::NoOperation => {}
            Ocw2::NonSpecificEoi => {
                if let Some(ir) = self.highest(self.eoi_candidates()) {
                    self.isr &= !(1 << ir);
                }
            }
            Ocw2::RotateOnNonSpecificEoi => {
                if let Some(ir) = self.highest(self.eoi_candidates()) {
                    self.isr &= !(1 << ir);
                    self.lowest = ir;
                }
            }
            Ocw2::SpecificEoi => self.isr &= !(1 << level),
            Ocw2::RotateOnSpecificEoi => {
                self.isr &= !(1 << level);
                self.lowest = level;
            }
            Ocw2::SetPriority => self.lowest = level,
        }
    }

    fn write_ocw3(&mut self, value: u8) {
        if value & OCW3_RR != 0 {
            self.read_isr = value & OCW3_RIS != 0;
        }
        if value & OCW3_P != 0 {
            self.poll = true;
        }
        if value & OCW3_ESMM != 0 {
            self.special_mask = value & OCW3_SMM != 0;
        }
    }

    fn write_data(&mut self, value: u8) {
        match self.init {
            InitStep::Ready => self.imr = value,
            InitStep::Icw2 => {
                self.icw2 = value;
                self.init = if self.icw1 & ICW1_SNGL == 0 { InitStep::Icw3 } else { self.after_icw3() };
            }
            InitStep::Icw3 => {
                self.icw3 = value;
                self.init = self.after_icw3();
            }
            InitStep::Icw4 => {
                self.icw4 = value;
                self.init = InitStep::Ready;
            }
        }
    }

    fn after_icw3(&self) -> InitStep {
        if self.icw1 & ICW1_IC4 != 0 {
            InitStep::Icw4
        } else {
            InitStep::Ready
        }
    }

    fn save(&self) -> PicChipState {
        PicChipState {
            irr: self.irr,
            isr: self.isr,
            imr: self.imr,
            icw1: self.icw1,
            icw2: self.icw2,
            icw3: self.icw3,
            icw4: self.icw4,
            init_step: self.init.to_saved(),
            lowest_priority: self.lowest,
            read_isr: self.read_isr,
            poll: self.poll,
            special_mask: self.special_mask,
            rotate_in_aeoi: self.rotate_in_aeoi,
            inputs: self.inputs,
        }
    }

    fn from_saved(state: &PicChipState, elcr: u8, which: &str) -> Result<Self, RestoreError> {
        let init = InitStep::from_saved(state.init_step)
            .ok_or_else(|| invalid(format!("{which}: init_step {}", state.init_step)))?;
        if state.icw1 & ICW1_SELECT == 0 {
            return Err(invalid(format!("{which}: ICW1 {:#04x} lacks D4", state.icw1)));
        }
        if init == InitStep::Icw3 && state.icw1 & ICW1_SNGL != 0 {
            return Err(invalid(format!("{which}: expects ICW3 in single mode")));
        }
        if init == InitStep::Icw4 && state.icw1 & ICW1_IC4 == 0 {
            return Err(invalid(format!("{which}: expects ICW4 without IC4")));
        }
        if state.lowest_priority > 7 {
            return Err(invalid(format!("{which}: lowest priority {}", state.lowest_priority)));
        }
        if state.irr & elcr != state.inputs & elcr {
            return Err(invalid(format!(
                "{which}: level-triggered IRR {:#04x} differs from inputs {:#04x}",
                state.irr & elcr,
                state.inputs & elcr
            )));
        }
        Ok(Self {
            irr: state.irr,
            isr: state.isr,
            imr: state.imr,
            icw1: state.icw1,
            icw2: state.icw2,
            icw3: state.icw3,
            icw4: state.icw4,
            init,
            lowest: state.lowest_priority,
            read_isr: state.read_isr,
            poll: state.poll,
            special_mask: state.special_mask,
            rotate_in_aeoi: state.rotate_in_aeoi,
            inputs: state.inputs,
        })
    }
}

fn invalid(what: String) -> RestoreError {
    RestoreError::Invalid { device: "pic", what }
}

/// The saved registers of one 8259A.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PicChipState {
    /// Interrupt request register.
    pub irr: u8,
    /// In-service register.
    pub isr: u8,
    /// Interrupt mask register (OCW1).
    pub imr: u8,
    /// ICW1 as last written.
    pub icw1: u8,
    /// ICW2 as last written (T7–T3 are the vector base).
    pub icw2: u8,
    /// ICW3 as last written (master: slave bit mask; slave: its ID).
    pub icw3: u8,
    /// ICW4 as last written (0 when ICW1 said no ICW4 follows).
    pub icw4: u8,
    /// The ICW the data port expects next (2, 3 or 4), or 0 when initialised.
    pub init_step: u8,
    /// The IR with the lowest priority (0–7).
    pub lowest_priority: u8,
    /// OCW3: the command port reads the ISR (true) or the IRR (false).
    pub read_isr: bool,
    /// OCW3: a poll command awaits its read.
    pub poll: bool,
    /// OCW3: special mask mode.
    pub special_mask: bool,
    /// OCW2: rotate in automatic EOI mode.
    pub rotate_in_aeoi: bool,
    /// The levels on the eight IR inputs.
    pub inputs: u8,
}

/// The saved state of the PIC pair and the ELCR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PicState {
    /// The master (IRQ 0–7).
    pub master: PicChipState,
    /// The slave (IRQ 8–15).
    pub slave: PicChipState,
    /// ELCR1 (IRQ 0–7) and ELCR2 (IRQ 8–15).
    pub elcr: [u8; 2],
}

/// The master and slave 8259A of a PC/AT, with the ELCR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PicPair {
    master: Chip,
    slave: Chip,
    /// ELCR1 and ELCR2.
    elcr: [u8; 2],
}

impl Default for PicPair {
    fn default() -> Self {
        Self::new()
    }
}

impl PicPair {
    /// The pair as a PC BIOS leaves it (see the module header): vectors 0x08 and 0x70, the slave
    /// on IR2, every IRQ masked except the cascade, all inputs edge-triggered.
    pub fn new() -> Self {
        Self {
            master: Chip::initialised(0x08, 1 << CASCADE_IR, !(1 << CASCADE_IR)),
            slave: Chip::initialised(0x70, CASCADE_IR, 0xFF),
            elcr: [0; 2],
        }
    }

    /// Drives IRQ `irq` (0–15) high or low. IRQ 2 (the cascade) and numbers above 15 are ignored.
    pub fn set_irq(&mut self, irq: u8, high: bool) {
        match irq {
            CASCADE_IR => return,
            0..=7 => {
                let level = self.elcr[0] & (1 << irq) != 0;
                self.master.set_input(irq, high, level);
            }
            8..=15 => {
                let ir = irq - 8;
                let level = self.elcr[1] & (1 << ir) != 0;
                self.slave.set_input(ir, high, level);
            }
            _ => return,
        }
        self.sync_cascade();
    }

    /// The master's INT output to the CPU: an unmasked request outranks everything in service
    /// (the slave's requests arrive through IR2).
    pub fn intr(&self) -> bool {
        self.master.resolve(true).is_some()
    }

    /// The INTA cycle: returns the vector. The acknowledged level goes in service (unless AEOI)
    /// and an edge request is consumed. With no request left, the master answers with its IR7
    /// vector and sets no ISR bit; a slave whose request vanished answers with its own IR7 vector
    /// (IRQ 15) and sets no ISR bit, while the master's IR2 stays in service.
    pub fn acknowledge(&mut self) -> u8 {
        let Some(ir) = self.master.resolve(true) else {
            return self.master.vector(DEFAULT_IR);
        };
        self.master.begin_acknowledge(ir, self.elcr[0]);
        let mut slave_ir = None;
        let vector = if self.master.has_slave_on(ir) {
            if self.slave.icw3 & ICW3_SLAVE_ID == ir {
                match self.slave.resolve(false) {
                    Some(sir) => {
                        self.slave.begin_acknowledge(sir, self.elcr[1]);
                        slave_ir = Some(sir);
                        self.slave.vector(sir)
                    }
                    None => self.slave.vector(DEFAULT_IR),
                }
            } else {
                FLOATING_BUS
            }
        } else {
            self.master.vector(ir)
        };
        // The in-service bits set during INTA can lower the slave's INT; the automatic EOI at the
        // end of the cycle can raise it again, which the master's IR2 sees as a new edge.
        self.sync_cascade();
        self.master.end_acknowledge(ir);
        if let Some(sir) = slave_ir {
            self.slave.end_acknowledge(sir);
        }
        self.sync_cascade();
        vector
    }

    /// A byte read from `port`. Unknown ports read 0xFF.
    pub fn read(&mut self, port: u16) -> u8 {
        match port {
            MASTER_COMMAND_PORT | MASTER_DATA_PORT if self.master.poll => self.poll(true),
            SLAVE_COMMAND_PORT | SLAVE_DATA_PORT if self.slave.poll => self.poll(false),
            MASTER_COMMAND_PORT => Self::status(&self.master),
            SLAVE_COMMAND_PORT => Self::status(&self.slave),
            MASTER_DATA_PORT => self.master.imr,
            SLAVE_DATA_PORT => self.slave.imr,
            ELCR1_PORT => self.elcr[0],
            ELCR2_PORT => self.elcr[1],
            _ => 0xFF,
        }
    }

    /// A byte written to `port`. Unknown ports ignore writes.
    pub fn write(&mut self, port: u16, value: u8) {
        match port {
            MASTER_COMMAND_PORT => Self::write_command(&mut self.master, value, self.elcr[0]),
            SLAVE_COMMAND_PORT => Self::write_command(&mut self.slave, value, self.elcr[1]),
            MASTER_DATA_PORT => self.master.write_data(value),
            SLAVE_DATA_PORT => self.slave.write_data(value),
            ELCR1_PORT => self.write_elcr(0, value & ELCR1_WRITABLE),
            ELCR2_PORT => self.write_elcr(1, value & ELCR2_WRITABLE),
            _ => return,
        }
        self.sync_cascade();
    }

    /// The registers of both chips and the ELCR.
    pub fn save(&self) -> PicState {
        PicState { master: self.master.save(), slave: self.slave.save(), elcr: self.elcr }
    }

    /// Loads a saved state after checking it describes a state the pair can be in.
    pub fn restore(&mut self, state: &PicState) -> Result<(), RestoreError> {
        if state.elcr[0] & !ELCR1_WRITABLE != 0 || state.elcr[1] & !ELCR2_WRITABLE != 0 {
            return Err(invalid(format!(
                "ELCR {:#04x}/{:#04x} marks an always-edge IRQ level-triggered",
                state.elcr[0], state.elcr[1]
            )));
        }
        let master = Chip::from_saved(&state.master, state.elcr[0], "master")?;
        let slave = Chip::from_saved(&state.slave, state.elcr[1], "slave")?;
        let slave_int = slave.resolve(false).is_some();
        if (master.inputs & (1 << CASCADE_IR) != 0) != slave_int {
            return Err(invalid("master IR2 input differs from the slave's INT output".to_string()));
        }
        self.master = master;
        self.slave = slave;
        self.elcr = state.elcr;
        Ok(())
    }

    /// Feeds the slave's INT output into the master's IR2 (edge-triggered).
    fn sync_cascade(&mut self) {
        // The master's IR2 follows the slave's INT output, as the datasheet's edge latch ANDed
        // with the live input does: a slave request withdrawn before the acknowledge (masked
        // at the slave, say) stops being a request at the master too.
        let int = self.slave.resolve(false).is_some();
        self.master.set_input(CASCADE_IR, int, true);
    }

    /// The poll word of one chip; the read acknowledges the level it reports.
    fn poll(&mut self, master: bool) -> u8 {
        let (chip, elcr) =
            if master { (&mut self.master, self.elcr[0]) } else { (&mut self.slave, self.elcr[1]) };
        chip.poll = false;
        let Some(ir) = chip.resolve(master) else {
            return 0;
        };
        chip.begin_acknowledge(ir, elcr);
        self.sync_cascade();
        let chip = if master { &mut self.master } else { &mut self.slave };
        chip.end_acknowledge(ir);
        self.sync_cascade();
        POLL_INTERRUPT | ir
    }

    fn status(chip: &Chip) -> u8 {
        if chip.read_isr {
            chip.isr
        } else {
            chip.irr
        }
    }

    fn write_command(chip: &mut Chip, value: u8, elcr: u8) {
        if value & ICW1_SELECT != 0 {
            chip.write_icw1(value, elcr);
        } else if value & OCW3_SELECT != 0 {
            chip.write_ocw3(value);
        } else {
            chip.write_ocw2(value);
        }
    }

    fn write_elcr(&mut self, index: usize, value: u8) {
        self.elcr[index] = value;
        let chip = if index == 0 { &mut self.master } else { &mut self.slave };
        // A level-triggered request follows its input from now on.
        chip.irr = (chip.irr & !value) | (chip.inputs & value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The standard PC initialisation sequence, as a BIOS or kernel writes it.
    fn pc_init(pic: &mut PicPair) {
        pic.write(0x20, 0x11);
        pic.write(0xA0, 0x11);
        pic.write(0x21, 0x08);
        pic.write(0xA1, 0x70);
        pic.write(0x21, 0x04);
        pic.write(0xA1, 0x02);
        pic.write(0x21, 0x01);
        pic.write(0xA1, 0x01);
    }

    fn initialised() -> PicPair {
        let mut pic = PicPair::new();
        pc_init(&mut pic);
        pic
    }

    fn isr(pic: &mut PicPair, command_port: u16) -> u8 {
        pic.write(command_port, 0x0B);
        let value = pic.read(command_port);
        pic.write(command_port, 0x0A);
        value
    }

    fn irr(pic: &mut PicPair, command_port: u16) -> u8 {
        pic.write(command_port, 0x0A);
        pic.read(command_port)
    }

    fn pulse(pic: &mut PicPair, irq: u8) {
        pic.set_irq(irq, true);
        pic.set_irq(irq, false);
    }

    const EOI: u8 = 0x20;

    #[test]
    fn pc_init_sequence_then_irq0_vector_isr_and_eoi() {
        let mut pic = initialised();
        assert_eq!(pic.read(0x21), 0, "ICW1 clears the IMR");
        assert!(!pic.intr());
        pic.set_irq(0, true);
        assert!(pic.intr());
        assert_eq!(pic.acknowledge(), 0x08);
        assert_eq!(isr(&mut pic, 0x20), 0x01);
        assert_eq!(irr(&mut pic, 0x20), 0x00, "the edge request is consumed");
        assert!(!pic.intr());
        pic.write(0x20, EOI);
        assert_eq!(isr(&mut pic, 0x20), 0x00);
        assert!(!pic.intr(), "a line held high does not re-request in edge mode");
    }

    #[test]
    fn new_is_the_bios_state() {
        let mut fresh = PicPair::new();
        let mut programmed = PicPair::new();
        pc_init(&mut programmed);
        programmed.write(0x21, 0xFB);
        programmed.write(0xA1, 0xFF);
        assert_eq!(fresh.save(), programmed.save());
        assert_eq!(fresh.read(0x21), 0xFB);
    }

    #[test]
    fn fully_nested_priority() {
        let mut pic = initialised();
        pulse(&mut pic, 0);
        assert_eq!(pic.acknowledge(), 0x08);
        pulse(&mut pic, 1);
        assert!(!pic.intr(), "IRQ 1 waits while IRQ 0 is in service");
        pic.write(0x20, EOI);
        assert!(pic.intr());
        assert_eq!(pic.acknowledge(), 0x09);
        // A higher priority preempts a lower one in service.
        pulse(&mut pic, 0);
        assert!(pic.intr());
        assert_eq!(pic.acknowledge(), 0x08);
        assert_eq!(isr(&mut pic, 0x20), 0x03);
        pic.write(0x20, EOI);
        assert_eq!(isr(&mut pic, 0x20), 0x02, "the non-specific EOI clears the highest");
        pic.write(0x20, EOI);
        assert_eq!(isr(&mut pic, 0x20), 0x00);
    }

    #[test]
    fn simultaneous_requests_resolve_highest_first() {
        let mut pic = initialised();
        pulse(&mut pic, 6);
        pulse(&mut pic, 3);
        pulse(&mut pic, 4);
        assert_eq!(irr(&mut pic, 0x20), 0x58);
        assert_eq!(pic.acknowledge(), 0x0B);
        pic.write(0x20, EOI);
        assert_eq!(pic.acknowledge(), 0x0C);
        pic.write(0x20, EOI);
        assert_eq!(pic.acknowledge(), 0x0E);
        pic.write(0x20, EOI);
        assert!(!pic.intr());
    }

    #[test]
    fn cascade_irq8_needs_eoi_to_both() {
        let mut pic = initialised();
        pulse(&mut pic, 8);
        assert!(pic.intr());
        assert_eq!(pic.acknowledge(), 0x70);
        assert_eq!(isr(&mut pic, 0x20), 0x04, "master IR2 in service");
        assert_eq!(isr(&mut pic, 0xA0), 0x01, "slave IR0 in service");
        pulse(&mut pic, 9);
        assert!(!pic.intr(), "IRQ 9 is below IRQ 8 on the slave");
        pic.write(0xA0, EOI);
        assert_eq!(isr(&mut pic, 0xA0), 0x00);
        assert!(!pic.intr(), "master IR2 still in service blocks the slave");
        pic.write(0x20, EOI);
        assert!(pic.intr(), "IRQ 9 comes through once both EOIs are done");
        assert_eq!(pic.acknowledge(), 0x71);
        pic.write(0x20, EOI);
        pic.write(0xA0, EOI);
        assert!(!pic.intr());
        // The reverse EOI order works too: master first, slave second.
        pulse(&mut pic, 8);
        pulse(&mut pic, 12);
        assert_eq!(pic.acknowledge(), 0x70);
        pic.write(0x20, EOI);
        assert!(!pic.intr());
        pic.write(0xA0, EOI);
        assert!(pic.intr());
        assert_eq!(pic.acknowledge(), 0x74);
    }

    #[test]
    fn master_irq_outranks_slave_below_ir2() {
        let mut pic = initialised();
        pulse(&mut pic, 10);
        pulse(&mut pic, 1);
        pulse(&mut pic, 3);
        assert_eq!(pic.acknowledge(), 0x09);
        pic.write(0x20, EOI);
        assert_eq!(pic.acknowledge(), 0x72);
        pic.write(0xA0, EOI);
        pic.write(0x20, EOI);
        assert_eq!(pic.acknowledge(), 0x0B);
    }

    #[test]
    fn masks() {
        let mut pic = initialised();
        pic.write(0x21, 0x01);
        pulse(&mut pic, 0);
        assert!(!pic.intr());
        assert_eq!(irr(&mut pic, 0x20), 0x01, "masked requests stay in the IRR");
        pic.write(0x21, 0x00);
        assert!(pic.intr());
        assert_eq!(pic.acknowledge(), 0x08);
        pic.write(0x20, EOI);
        // Slave masks, and the master's IR2 mask.
        pic.write(0xA1, 0x02);
        pulse(&mut pic, 9);
        assert!(!pic.intr());
        pic.write(0xA1, 0x00);
        assert!(pic.intr());
        pic.write(0x21, 0x04);
        assert!(!pic.intr(), "masking IR2 on the master hides the whole slave");
        pic.write(0x21, 0x00);
        assert_eq!(pic.acknowledge(), 0x71);
        assert_eq!(pic.read(0xA1), 0x00);
        pic.write(0xA1, 0xA5);
        assert_eq!(pic.read(0xA1), 0xA5);
    }

    #[test]
    fn elcr_bits_and_level_triggering() {
        let mut pic = initialised();
        pic.write(0x4D0, 0xFF);
        pic.write(0x4D1, 0xFF);
        assert_eq!(pic.read(0x4D0), 0xF8, "IRQ 0, 1, 2 are always edge");
        assert_eq!(pic.read(0x4D1), 0xDE, "IRQ 8, 13 are always edge");
        pic.set_irq(11, true);
        assert!(pic.intr());
        assert_eq!(pic.acknowledge(), 0x73);
        pic.write(0xA0, EOI);
        pic.write(0x20, EOI);
        assert!(pic.intr(), "a level request stays pending while the line is high");
        assert_eq!(pic.acknowledge(), 0x73);
        pic.set_irq(11, false);
        pic.write(0xA0, EOI);
        pic.write(0x20, EOI);
        assert!(!pic.intr(), "and drops when the line falls");
        pic.set_irq(5, true);
        assert_eq!(irr(&mut pic, 0x20), 0x20);
        pic.set_irq(5, false);
        assert_eq!(irr(&mut pic, 0x20), 0x00);
        assert!(!pic.intr());
    }

    #[test]
    fn edge_needs_a_new_rising_edge_and_stays_latched() {
        let mut pic = initialised();
        pic.set_irq(4, true);
        assert_eq!(pic.acknowledge(), 0x0C);
        pic.write(0x20, EOI);
        pic.set_irq(4, true);
        assert!(!pic.intr(), "no new edge");
        pic.set_irq(4, false);
        pic.set_irq(4, true);
        assert!(pic.intr());
        pic.set_irq(4, false);
        assert!(pic.intr(), "the edge latch holds after the line falls (deviation)");
        assert_eq!(pic.acknowledge(), 0x0C);
    }

    #[test]
    fn automatic_eoi() {
        let mut pic = PicPair::new();
        pic.write(0x20, 0x11);
        pic.write(0x21, 0x20);
        pic.write(0x21, 0x04);
        pic.write(0x21, 0x03);
        pic.write(0x21, 0x00);
        pulse(&mut pic, 0);
        pulse(&mut pic, 5);
        assert_eq!(pic.acknowledge(), 0x20);
        assert_eq!(isr(&mut pic, 0x20), 0x00, "AEOI leaves nothing in service");
        assert!(pic.intr(), "so a lower priority follows at once");
        assert_eq!(pic.acknowledge(), 0x25);
        assert!(!pic.intr());
    }

    #[test]
    fn slave_automatic_eoi_lets_the_next_slave_request_through() {
        let mut pic = initialised();
        pic.write(0x20, 0x11);
        pic.write(0x21, 0x08);
        pic.write(0x21, 0x04);
        pic.write(0x21, 0x03);
        pic.write(0xA0, 0x11);
        pic.write(0xA1, 0x70);
        pic.write(0xA1, 0x02);
        pic.write(0xA1, 0x03);
        pulse(&mut pic, 8);
        pulse(&mut pic, 14);
        assert_eq!(pic.acknowledge(), 0x70);
        assert!(pic.intr(), "the slave's INT rose again after its AEOI");
        assert_eq!(pic.acknowledge(), 0x76);
        assert!(!pic.intr());
    }

    #[test]
    fn rotation_commands() {
        // Rotate on non-specific EOI: the serviced level becomes the lowest.
        let mut pic = initialised();
        pulse(&mut pic, 0);
        assert_eq!(pic.acknowledge(), 0x08);
        pic.write(0x20, 0xA0);
        pulse(&mut pic, 0);
        pulse(&mut pic, 1);
        assert_eq!(pic.acknowledge(), 0x09, "IR0 is now the lowest priority");
        pic.write(0x20, 0xA0);
        assert_eq!(pic.acknowledge(), 0x08);
        pic.write(0x20, EOI);

        // Set priority: IR4 lowest, so IR5 is the highest.
        pic.write(0x20, 0xC4);
        pulse(&mut pic, 3);
        pulse(&mut pic, 5);
        assert_eq!(pic.acknowledge(), 0x0D);
        pic.write(0x20, EOI);
        assert_eq!(pic.acknowledge(), 0x0B);
        // Rotate on specific EOI: clears IR3 and makes it the lowest (so IR4 is the highest).
        pic.write(0x20, 0xE3);
        assert_eq!(isr(&mut pic, 0x20), 0x00);
        pulse(&mut pic, 4);
        pulse(&mut pic, 0);
        assert_eq!(pic.acknowledge(), 0x0C);
        pic.write(0x20, EOI);
        assert_eq!(pic.acknowledge(), 0x08);
        pic.write(0x20, EOI);
    }

    #[test]
    fn rotate_in_automatic_eoi_mode() {
        let mut pic = PicPair::new();
        pic.write(0x20, 0x11);
        pic.write(0x21, 0x08);
        pic.write(0x21, 0x04);
        pic.write(0x21, 0x03);
        pic.write(0x20, 0x80); // rotate in AEOI: set
        pulse(&mut pic, 3);
        pulse(&mut pic, 6);
        assert_eq!(pic.acknowledge(), 0x0B);
        pulse(&mut pic, 3);
        assert_eq!(pic.acknowledge(), 0x0E, "IR3 rotated to the bottom");
        assert_eq!(pic.acknowledge(), 0x0B);
        pic.write(0x20, 0x00); // rotate in AEOI: clear
        pic.write(0x20, 0xC7); // back to IR0 highest
        pulse(&mut pic, 1);
        assert_eq!(pic.acknowledge(), 0x09);
        pulse(&mut pic, 4);
        pulse(&mut pic, 1);
        assert_eq!(pic.acknowledge(), 0x09, "no rotation any more");
    }

    #[test]
    fn specific_eoi_clears_only_its_level() {
        let mut pic = initialised();
        pulse(&mut pic, 5);
        assert_eq!(pic.acknowledge(), 0x0D);
        pulse(&mut pic, 1);
        assert_eq!(pic.acknowledge(), 0x09);
        assert_eq!(isr(&mut pic, 0x20), 0x22);
        pic.write(0x20, 0x65);
        assert_eq!(isr(&mut pic, 0x20), 0x02);
        pic.write(0x20, 0x61);
        assert_eq!(isr(&mut pic, 0x20), 0x00);
    }

    #[test]
    fn poll_mode() {
        let mut pic = initialised();
        pic.write(0x20, 0x0C);
        assert_eq!(pic.read(0x20), 0x00, "nothing pending");
        pulse(&mut pic, 6);
        pulse(&mut pic, 3);
        pic.write(0x20, 0x0C);
        assert_eq!(pic.read(0x20), 0x83);
        assert_eq!(isr(&mut pic, 0x20), 0x08, "the poll read acknowledges");
        assert_eq!(irr(&mut pic, 0x20), 0x40);
        pic.write(0x20, EOI);
        pic.write(0x20, 0x0C);
        assert_eq!(pic.read(0x21), 0x86, "any read of the chip answers the poll");
        assert_eq!(pic.read(0x21), 0x00, "once; then the IMR again");
        pic.write(0x20, EOI);
        // Polling the slave.
        pulse(&mut pic, 13);
        pic.write(0xA0, 0x0C);
        assert_eq!(pic.read(0xA0), 0x85);
        assert_eq!(isr(&mut pic, 0xA0), 0x20);
    }

    #[test]
    fn special_mask_mode() {
        let mut pic = initialised();
        pulse(&mut pic, 3);
        assert_eq!(pic.acknowledge(), 0x0B);
        pulse(&mut pic, 5);
        assert!(!pic.intr(), "fully nested: IR5 waits for IR3");
        pic.write(0x21, 0x08);
        assert!(!pic.intr(), "masking alone does not help");
        pic.write(0x20, 0x68); // ESMM + SMM
        assert!(pic.intr(), "in special mask mode a masked in-service level does not block");
        assert_eq!(pic.acknowledge(), 0x0D);
        assert_eq!(isr(&mut pic, 0x20), 0x28);
        pic.write(0x20, EOI);
        assert_eq!(isr(&mut pic, 0x20), 0x08, "the non-specific EOI skips the masked IR3");
        pic.write(0x20, 0x48); // ESMM, SMM off
        pic.write(0x21, 0x00);
        pic.write(0x20, EOI);
        assert_eq!(isr(&mut pic, 0x20), 0x00);
    }

    #[test]
    fn spurious_irq7() {
        let mut pic = initialised();
        pic.write(0x4D0, 0x20);
        pic.set_irq(5, true);
        assert!(pic.intr());
        pic.set_irq(5, false);
        assert_eq!(pic.acknowledge(), 0x0F);
        assert_eq!(isr(&mut pic, 0x20), 0x00, "the default IR7 sets no ISR bit");
        // An edge request masked between INTR and INTA.
        pulse(&mut pic, 4);
        assert!(pic.intr());
        pic.write(0x21, 0x10);
        assert_eq!(pic.acknowledge(), 0x0F);
        assert_eq!(isr(&mut pic, 0x20), 0x00);
    }

    #[test]
    fn withdrawn_slave_request_is_gone_at_the_master_too() {
        let mut pic = initialised();
        pic.write(0x4D1, 0x04);
        pic.set_irq(10, true);
        assert!(pic.intr());
        pic.set_irq(10, false);
        // The slave's INT output fell, so the master's IR2 request went with it: an acknowledge
        // now finds no request at the master, which answers with its default IR7.
        assert!(!pic.intr());
        assert_eq!(pic.acknowledge(), 0x0F);
        assert_eq!(isr(&mut pic, 0x20), 0x00, "nothing goes in service at the master");
        assert_eq!(isr(&mut pic, 0xA0), 0x00, "nor at the slave");
        // Masking the slave's request at the slave has the same effect (edge-triggered IRQ 8).
        pic.set_irq(8, true);
        assert!(pic.intr());
        pic.write(0xA1, 0xFF);
        assert!(!pic.intr(), "masked at the slave: the cascade request is withdrawn");
    }

    #[test]
    fn read_irr_and_isr_through_ocw3() {
        let mut pic = initialised();
        pulse(&mut pic, 1);
        pulse(&mut pic, 7);
        assert_eq!(pic.read(0x20), 0x82, "IRR is selected after ICW1");
        assert_eq!(pic.acknowledge(), 0x09);
        pic.write(0x20, 0x0B);
        assert_eq!(pic.read(0x20), 0x02);
        assert_eq!(pic.read(0x20), 0x02, "the selection sticks");
        pic.write(0x20, 0x08); // RR = 0: no change
        assert_eq!(pic.read(0x20), 0x02);
        pic.write(0x20, 0x0A);
        assert_eq!(pic.read(0x20), 0x80);
    }

    #[test]
    fn icw1_resets_the_chip() {
        let mut pic = initialised();
        pic.write(0x21, 0x55);
        pic.set_irq(1, true);
        pulse(&mut pic, 3);
        assert_eq!(pic.acknowledge(), 0x09);
        pic.write(0x20, 0xC5);
        pic.write(0x20, 0x6B);
        pc_init(&mut pic);
        assert_eq!(pic.read(0x21), 0x00);
        assert_eq!(isr(&mut pic, 0x20), 0x00);
        assert_eq!(irr(&mut pic, 0x20), 0x00, "edge sense reset");
        assert!(!pic.intr(), "IRQ 1 held high needs a new edge");
        pic.set_irq(1, false);
        pic.set_irq(1, true);
        assert_eq!(pic.acknowledge(), 0x09, "priorities back to IR0 highest");
    }

    #[test]
    fn single_mode_master_supplies_ir2_vector() {
        let mut pic = PicPair::new();
        pic.write(0x20, 0x13); // SNGL, IC4
        pic.write(0x21, 0x40);
        pic.write(0x21, 0x01); // ICW4 straight after ICW2
        pic.write(0x21, 0x00);
        assert_eq!(pic.read(0x21), 0x00, "the sequence ended and the IMR was written");
        pic.write(0xA1, 0x00);
        pulse(&mut pic, 8);
        assert_eq!(pic.acknowledge(), 0x42, "no cascade: the master answers for IR2");
        assert_eq!(isr(&mut pic, 0xA0), 0x00);
    }

    #[test]
    fn special_fully_nested_mode_lets_higher_slave_requests_through() {
        let mut pic = initialised();
        pic.write(0x20, 0x11);
        pic.write(0x21, 0x08);
        pic.write(0x21, 0x04);
        pic.write(0x21, 0x11); // SFNM
        pulse(&mut pic, 12);
        assert_eq!(pic.acknowledge(), 0x74);
        pulse(&mut pic, 9);
        assert!(pic.intr(), "IR2 in service does not block a higher slave level");
        assert_eq!(pic.acknowledge(), 0x71);
        pulse(&mut pic, 5);
        assert!(!pic.intr(), "lower master levels are still blocked by IR2");
    }

    #[test]
    fn save_change_restore() {
        let mut pic = initialised();
        pic.write(0x4D1, 0x08);
        pic.set_irq(11, true);
        pulse(&mut pic, 3);
        pic.write(0x20, 0x0B);
        assert_eq!(pic.acknowledge(), 0x73, "IR2 (the slave's IRQ 11) outranks IR3");
        let saved = pic.save();
        let before = pic.clone();
        pulse(&mut pic, 0);
        pic.write(0x20, EOI);
        pic.write(0x21, 0xFF);
        pic.write(0xA0, 0x11);
        pic.write(0x4D1, 0x00);
        assert_ne!(pic.save(), saved);
        pic.restore(&saved).unwrap();
        assert_eq!(pic.save(), saved);
        assert_eq!(pic, before);
        assert_eq!(pic.read(0x20), 0x04, "the ISR read selection came back too");
    }

    #[test]
    fn restore_rejects_impossible_states() {
        let mut pic = initialised();
        let good = pic.save();
        let cases: [fn(&mut PicState); 7] = [
            |s| s.master.init_step = 1,
            |s| s.slave.lowest_priority = 8,
            |s| s.master.icw1 = 0x01,
            |s| s.elcr[0] = 0x01,
            |s| {
                s.elcr[1] = 0x02;
                s.slave.inputs = 0x02;
            },
            |s| s.master.inputs |= 0x04,
            |s| {
                s.slave.icw1 |= ICW1_SNGL;
                s.slave.init_step = 3;
            },
        ];
        for (i, case) in cases.iter().enumerate() {
            let mut bad = good;
            case(&mut bad);
            assert!(pic.restore(&bad).is_err(), "case {i} accepted");
            assert_eq!(pic.save(), good, "case {i} changed the state");
        }
    }

    #[test]
    fn unknown_ports_read_ff_and_ignore_writes() {
        let mut pic = initialised();
        let before = pic.save();
        for port in [0x00, 0x22, 0x9F, 0xA2, 0x4CF, 0x4D2, 0xFFFF] {
            assert_eq!(pic.read(port), 0xFF, "port {port:#x}");
            pic.write(port, 0x11);
        }
        assert_eq!(pic.save(), before);
    }

    #[test]
    fn out_of_range_irqs_are_ignored() {
        let mut pic = initialised();
        let before = pic.save();
        pic.set_irq(2, true);
        pic.set_irq(16, true);
        pic.set_irq(255, true);
        assert_eq!(pic.save(), before);
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

    const PORTS: [u16; 7] = [0x20, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1, 0x61];

    #[test]
    fn fuzz_random_programming_stays_sane() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for _sequence in 0..3000 {
            let mut pic = if rng.below(2) == 0 { PicPair::new() } else { initialised() };
            for _ in 0..200 {
                match rng.below(6) {
                    0 | 1 => {
                        let port = PORTS[rng.below(PORTS.len() as u64) as usize];
                        pic.write(port, rng.next() as u8);
                    }
                    2 => {
                        let port = PORTS[rng.below(PORTS.len() as u64) as usize];
                        let _ = pic.read(port);
                    }
                    3 | 4 => pic.set_irq(rng.below(18) as u8, rng.below(2) == 0),
                    _ => {
                        let intr = pic.intr();
                        let master = pic.save().master;
                        let vector = pic.acknowledge();
                        if !intr {
                            assert_eq!(vector, (master.icw2 & 0xF8) | 7, "spurious must be IR7");
                            assert_eq!(pic.save().master.isr, master.isr);
                        } else if master.icw4 & ICW4_AEOI == 0 {
                            assert_ne!(pic.save().master.isr, 0, "an INTA sets an ISR bit");
                        }
                    }
                }
                let state = pic.save();
                let mut copy = PicPair::new();
                copy.restore(&state).unwrap_or_else(|e| panic!("reachable state rejected: {e}: {state:?}"));
                assert_eq!(copy, pic);
                assert_eq!(state.elcr[0] & !ELCR1_WRITABLE, 0);
                assert_eq!(state.elcr[1] & !ELCR2_WRITABLE, 0);
            }
        }
    }
}
