//! The machine: a CPU, its RAM, the PC platform around it, virtual time, and the run loop.
//!
//! The port space (SDM Vol. 1 §19; the PC/AT port map):
//!
//! | ports | device |
//! |---|---|
//! | 0x20–0x21, 0xA0–0xA1, 0x4D0–0x4D1 | 8259A master and slave, ELCR (`devices::pic`) |
//! | 0x40–0x43, 0x61 | 8254 PIT and the speaker/gate bits of port B (`devices::pit`) |
//! | 0x3F8–0x3FF (IRQ 4), 0x2F8–0x2FF (IRQ 3) | 16550A COM1 (the serial console), COM2 |
//! | 0x70–0x71 (IRQ 8) | MC146818 RTC and CMOS RAM; bit 7 of 0x70 masks NMI |
//! | 0x60, 0x64 | i8042 (A20 gate and reset only) |
//! | 0x92 | system control port A (fast A20, fast reset) |
//! | 0x80 | POST code |
//! | 0xE9 | debug console (Bochs/QEMU debugcon) |
//! | 0xF4 | isa-debug-exit: a write of `v` ends the run with exit status `(v << 1) \| 1` |
//! | 0x600–0x605 | ACPI PM1a event block and control as in QEMU's PC: SLP_EN with SLP_TYP 0 powers off (status 0) |
//! | 0x608–0x60B | ACPI PM timer (3.579545 MHz, 24 bits) |
//! | 0xF0 (IRQ 13) | coprocessor error: the CPU's FERR# raises IRQ 13; a write here drops it (IGNNE#) |
//!
//! Every other port reads as all ones and ignores writes; `--stats` counts them by port.
//! Accesses wider than a byte are split into bytes in ascending port order (the debug-exit
//! port takes its value whole, as QEMU's `iosize=4` device does).
//!
//! Interrupts: each device's IRQ output is wired to the PIC through an [`devices::IrqLine`]
//! handed to the device call that can change it; the CPU samples the PIC's INT output at
//! instruction boundaries. Time: see [`crate::clock`]. The run loop brings devices up to date
//! whenever virtual time reaches the earliest device deadline, and when the CPU halts it skips
//! (virtual time) or sleeps (real time) to that deadline, so an idle guest costs no host CPU.
//!
//! Triple faults: a CPU that shuts down either stops the run ([`TripleFaultAction::Stop`], the
//! default) or, as on a PC, where shutdown asserts RESET, resets and boots again
//! ([`TripleFaultAction::Reset`]): the CPU returns to its architectural reset state, RAM is
//! kept, and the machine re-enters the boot path it remembers ([`crate::boot::BootPath`]):
//! firmware restarts at the reset vector, a kernel or image loaded by bt86 is loaded and
//! entered again. A guest that triple-faults more than [`Machine::max_resets`] times in one run
//! ends with [`Exit::ResetLimit`]. A reset the guest asks for (i8042 command 0xFE or 0xD1 with
//! bit 0 clear, port 0x92 bit 0) does the same, counted against the same limit.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use devices::cmos::Cmos;
use devices::i8042::{DataTarget, COMMAND_PORT, DATA_PORT, I8042};
use devices::misc::{AcpiPowerControl, DebugCon, DebugExit, FpuError, PostCode, SystemControlA};
use devices::pic::PicPair;
use devices::pit::Pit;
use devices::uart::Uart;
use devices::{IrqLine, Nanos};
use emu_core::cpu::Shutdown;
use emu_core::state::fl;
use emu_core::{Cpu, MemoryError, PortIo, SegReg, Size, StepResult};
use guest_images::Image;

use crate::boot::BootPath;
use crate::clock::{Clock, TimeMode};
use crate::serial::{Poll, SerialInput};

/// Port of the debug console (Bochs/QEMU "debugcon").
pub const DEBUGCON_PORT: u16 = 0xE9;
/// Port of QEMU's isa-debug-exit device as bt86's tests configure it.
pub const DEBUG_EXIT_PORT: u16 = 0xF4;
/// COM1's base port and IRQ.
pub const COM1: (u16, u8) = (0x3F8, 4);
/// COM2's base port and IRQ.
pub const COM2: (u16, u8) = (0x2F8, 3);
/// The RTC's IRQ.
pub const RTC_IRQ: u8 = 8;
/// The coprocessor-error IRQ (FERR#).
pub const FPU_IRQ: u8 = 13;
/// The real-time clock's date at power-on in virtual-time mode: 2024-01-01 00:00:00 UTC, so
/// every run reads the same time. Real-time mode uses the host's time.
pub const DEFAULT_RTC_EPOCH: u64 = 1_704_067_200;
/// In virtual time, how often a halted guest that may receive serial input looks for it
/// (about one character time at 115,200 baud).
const INPUT_INTERVAL: Nanos = 100_000;
/// Steps between looks at serial input while the CPU runs.
pub(crate) const INPUT_POLL_STEPS: u64 = 4096;

/// Why a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The guest wrote `value` to the isa-debug-exit port.
    DebugExit {
        /// The value written.
        value: u32,
    },
    /// The guest powered the machine off (ACPI PM1a control).
    PowerOff,
    /// The CPU halted with interrupts disabled (or with nothing left that could wake it).
    Halted,
    /// The user quit from the console (Ctrl-A x).
    Quit,
    /// A triple fault shut the CPU down.
    TripleFault(Shutdown),
    /// With [`TripleFaultAction::Reset`], or after guest-requested resets: the guest reset
    /// again after [`Machine::max_resets`] resets.
    ResetLimit {
        /// Resets done in this run.
        resets: u32,
        /// The last shutdown, if a triple fault caused the last reset.
        last: Option<Shutdown>,
    },
    /// The instruction limit was reached.
    StepLimit,
    /// The wall-clock limit ([`Machine::wall_limit`]) passed.
    TimeLimit,
    /// The guest asked for a reset (keyboard controller, port 0x92) with
    /// [`Machine::no_reboot`] set — how a Linux guest ends after a panic with `panic=-1`.
    Reboot,
    /// Lockstep execution found the translator and the interpreter disagreeing (the report).
    Divergence(String),
}

impl Exit {
    /// The process exit status bt86 reports for this ending: isa-debug-exit's `(v << 1) | 1`,
    /// 0 for a power-off, a clean halt or a quit, 2 for a step limit (a guest that did not
    /// finish), 3 for a triple fault (also when the guest kept resetting), 4 when the
    /// wall-clock limit passed, 5 when the guest asked for a reset under `--no-reboot`, 6 for a
    /// lockstep divergence.
    pub fn status(&self) -> i32 {
        match self {
            Exit::DebugExit { value } => ((value << 1) | 1) as i32,
            Exit::PowerOff | Exit::Halted | Exit::Quit => 0,
            Exit::StepLimit => 2,
            Exit::TripleFault(_) | Exit::ResetLimit { .. } => 3,
            Exit::TimeLimit => 4,
            Exit::Reboot => 5,
            Exit::Divergence(_) => 6,
        }
    }
}

/// What a triple fault does to the machine (see the module header).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TripleFaultAction {
    /// End the run with [`Exit::TripleFault`].
    #[default]
    Stop,
    /// Reset the CPU and re-enter the boot path, up to [`Machine::max_resets`] times.
    Reset,
}

/// How many resets a run allows by default before a triple fault ends it.
pub const DEFAULT_MAX_RESETS: u32 = 100;

/// One ISA interrupt line into the PIC pair, as a device sees it.
struct Pin<'a> {
    pic: &'a mut PicPair,
    irq: u8,
}

impl IrqLine for Pin<'_> {
    fn set_level(&mut self, high: bool) {
        self.pic.set_irq(self.irq, high);
    }
}

/// The PC platform: every device on the port bus, and the time of the current instruction.
pub struct PcBus {
    /// The 8259A pair.
    pub pic: PicPair,
    /// The 8254.
    pub pit: Pit,
    /// COM1, the serial console.
    pub com1: Uart,
    /// COM2 (nothing attached).
    pub com2: Uart,
    /// The RTC and CMOS RAM.
    pub cmos: Cmos,
    /// The keyboard controller (A20, reset).
    pub kbc: I8042,
    /// Port 0x92.
    pub port92: SystemControlA,
    /// Port 0x80.
    pub post: PostCode,
    /// Port 0xE9.
    pub debugcon: DebugCon,
    /// Port 0xF4.
    pub debug_exit: DebugExit,
    /// Port 0x604.
    pub power: AcpiPowerControl,
    /// FERR# → IRQ 13, port 0xF0.
    pub fpu_error: FpuError,
    /// Virtual time of the instruction being executed.
    pub now: Nanos,
    /// Ports no device claims, with how often the guest touched each.
    pub unknown_ports: BTreeMap<u16, u64>,
    /// A pending NMI edge from the platform (see [`Machine::raise_nmi`]).
    pub nmi_request: bool,
    /// A port was written since the machine last looked (deadlines may have moved).
    pub touched: bool,
    /// The PIC's requests are not delivered to the CPU (differential testing delivers the
    /// interrupts another machine took instead, at the same instructions).
    pub hold_interrupts: bool,
    /// The A20 gate (see [`PcBus::write_byte`]).
    pub a20: bool,
}

impl std::fmt::Debug for PcBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcBus").field("now", &self.now).finish_non_exhaustive()
    }
}

impl PcBus {
    fn new(debugcon: Box<dyn Write>, serial: Box<dyn Write>, rtc_epoch: u64, ram: u64) -> PcBus {
        PcBus {
            pic: PicPair::new(),
            pit: Pit::new(),
            com1: Uart::new(COM1.0, serial),
            com2: Uart::new(COM2.0, Box::new(std::io::sink())),
            // The CPU has an x87: the equipment byte says so, as on QEMU's PC.
            cmos: {
                let mut cmos = Cmos::new(rtc_epoch, ram);
                cmos.set_fpu_present(true);
                cmos
            },
            kbc: I8042::new(),
            port92: SystemControlA::new(),
            post: PostCode::new(),
            debugcon: DebugCon::new(debugcon),
            debug_exit: DebugExit::new(),
            power: AcpiPowerControl::new(),
            fpu_error: FpuError::new(),
            now: 0,
            unknown_ports: BTreeMap::new(),
            nmi_request: false,
            touched: false,
            hold_interrupts: false,
            a20: true,
        }
    }

    fn read_byte(&mut self, port: u16) -> u8 {
        let now = self.now;
        match port {
            0x20 | 0x21 | 0xA0 | 0xA1 | 0x4D0 | 0x4D1 => self.pic.read(port),
            0x40..=0x43 | 0x61 => self.pit.read(port, now),
            0x3F8..=0x3FF => self.com1.read(port, now, &mut Pin { pic: &mut self.pic, irq: COM1.1 }),
            0x2F8..=0x2FF => self.com2.read(port, now, &mut Pin { pic: &mut self.pic, irq: COM2.1 }),
            0x70 | 0x71 => self.cmos.read(port, now, &mut Pin { pic: &mut self.pic, irq: RTC_IRQ }),
            0x60 | 0x64 => self.kbc.read(port),
            0x92 => self.port92.read(),
            0x80 => self.post.read(),
            DEBUGCON_PORT => self.debugcon.read(),
            0x600..=0x605 => self.power.read(port),
            0x608..=0x60B => self.power.read_timer(port, now),
            _ => {
                *self.unknown_ports.entry(port).or_default() += 1;
                0xFF
            }
        }
    }

    fn write_byte(&mut self, port: u16, v: u8) {
        let now = self.now;
        self.touched = true;
        match port {
            0x20 | 0x21 | 0xA0 | 0xA1 | 0x4D0 | 0x4D1 => self.pic.write(port, v),
            0x40..=0x43 | 0x61 => self.pit.write(port, v, now, &mut Pin { pic: &mut self.pic, irq: 0 }),
            0x3F8..=0x3FF => self.com1.write(port, v, now, &mut Pin { pic: &mut self.pic, irq: COM1.1 }),
            0x2F8..=0x2FF => self.com2.write(port, v, now, &mut Pin { pic: &mut self.pic, irq: COM2.1 }),
            0x70 | 0x71 => self.cmos.write(port, v, now, &mut Pin { pic: &mut self.pic, irq: RTC_IRQ }),
            // The i8042's output port and port 0x92's fast-A20 bit drive one gate, as on QEMU's
            // PC: every write to port 0x92 sets it, and so does every write of the i8042's output
            // port (command 0xD1 and its data byte, commands 0xDD/0xDF).
            0x60 | 0x64 => {
                let output_port_write = (port == DATA_PORT
                    && self.kbc.save().data_target == DataTarget::OutputPort)
                    || (port == COMMAND_PORT && matches!(v, 0xDD | 0xDF));
                self.kbc.write(port, v);
                if output_port_write {
                    self.a20 = self.kbc.a20();
                }
            }
            0x92 => {
                self.port92.write(v);
                self.a20 = self.port92.a20();
            }
            0x80 => self.post.write(v),
            DEBUGCON_PORT => self.debugcon.write(v),
            0x600..=0x605 => self.power.write(port, v),
            0xF0 => self.fpu_error.write(&mut Pin { pic: &mut self.pic, irq: FPU_IRQ }),
            _ => *self.unknown_ports.entry(port).or_default() += 1,
        }
    }

    /// Brings every timed device up to `now`.
    fn advance(&mut self, now: Nanos) {
        self.now = now;
        self.pit.advance(now, &mut Pin { pic: &mut self.pic, irq: 0 });
        self.com1.advance(now, &mut Pin { pic: &mut self.pic, irq: COM1.1 });
        self.com2.advance(now, &mut Pin { pic: &mut self.pic, irq: COM2.1 });
        self.cmos.advance(now, &mut Pin { pic: &mut self.pic, irq: RTC_IRQ });
    }

    /// Brings every timed device up to `now` and returns the earliest time one needs to run
    /// again (the run loop's step, for callers that drive the bus themselves).
    pub fn advance_to(&mut self, now: Nanos) -> Option<Nanos> {
        self.advance(now);
        self.next_deadline(now)
    }

    /// Follows the CPU's FERR# output (IRQ 13 on a PC).
    pub fn sync_ferr(&mut self, ferr: bool) {
        if ferr != self.fpu_error.ferr() {
            self.fpu_error.set_ferr(ferr, &mut Pin { pic: &mut self.pic, irq: FPU_IRQ });
        }
    }

    /// The earliest time a device needs to run again.
    fn next_deadline(&self, now: Nanos) -> Option<Nanos> {
        [
            self.pit.next_deadline(now),
            self.com1.next_deadline(),
            self.com2.next_deadline(),
            self.cmos.next_deadline(now),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

impl PortIo for PcBus {
    fn io_read(&mut self, port: u16, size: Size) -> u32 {
        (0..size.bytes() as u16)
            .fold(0, |acc, k| acc | u32::from(self.read_byte(port.wrapping_add(k))) << (8 * k))
    }

    fn io_write(&mut self, port: u16, size: Size, value: u32) {
        if port == DEBUG_EXIT_PORT {
            self.debug_exit.write(value & size.mask());
            return;
        }
        for k in 0..size.bytes() as u16 {
            self.write_byte(port.wrapping_add(k), (value >> (8 * k)) as u8);
        }
    }

    fn interrupt_pending(&mut self) -> bool {
        !self.hold_interrupts && self.pic.intr()
    }

    fn acknowledge_interrupt(&mut self) -> u8 {
        self.pic.acknowledge()
    }

    fn take_nmi(&mut self) -> bool {
        if self.nmi_request && !self.cmos.nmi_masked() {
            self.nmi_request = false;
            return true;
        }
        false
    }

    fn set_ferr(&mut self, asserted: bool) {
        self.sync_ferr(asserted);
    }
}

/// A PC: CPU, RAM, devices, clock, console input.
pub struct Machine {
    /// The processor and its memory.
    pub cpu: Cpu,
    /// The platform.
    pub bus: PcBus,
    /// Virtual time.
    pub clock: Clock,
    /// Serial console input for COM1, if any.
    pub serial_input: Option<SerialInput>,
    /// How the guest was booted, for resets; `None` until something is loaded.
    pub boot: Option<BootPath>,
    /// What a triple fault does.
    pub on_triple_fault: TripleFaultAction,
    /// How many resets a run allows.
    pub max_resets: u32,
    /// Resets done so far.
    pub resets: u32,
    /// Where the machine reports events the guest does not see (resets); discarded unless set.
    pub diagnostics: Box<dyn Write>,
    /// Serial input has ended (or was never there).
    input_ended: bool,
    /// When set, [`Machine::run`] stops with [`Exit::TimeLimit`] once the host clock passes this
    /// moment (looked at every few thousand instructions).
    pub wall_limit: Option<Instant>,
    /// When set, every instruction from retired count `from` on, `count` of them, is logged
    /// (count, CS:EIP, bytes, disassembly) to [`Machine::diagnostics`] before it runs.
    pub trace: Option<Trace>,
    /// A reset the guest asks for (not a triple fault, which follows
    /// [`Machine::on_triple_fault`]) stops the run with [`Exit::Reboot`] instead of booting
    /// again (QEMU's `-no-reboot`).
    pub no_reboot: bool,
    /// What executes guest code (see [`crate::engine`]).
    pub engine: crate::engine::Engine,
}

/// See [`Machine::trace`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trace {
    /// First retired-instruction count to log.
    pub from: u64,
    /// How many to log.
    pub count: u64,
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("cpu", &self.cpu)
            .field("bus", &self.bus)
            .field("boot", &self.boot)
            .field("on_triple_fault", &self.on_triple_fault)
            .field("max_resets", &self.max_resets)
            .field("resets", &self.resets)
            .finish_non_exhaustive()
    }
}

/// Default guest RAM: 16 MiB.
pub const DEFAULT_RAM: u64 = 16 << 20;

impl Machine {
    /// A machine with `ram` bytes of memory whose debug console writes to `console`; the serial
    /// port's output is discarded, time is virtual and the RTC starts at [`DEFAULT_RTC_EPOCH`].
    pub fn new(ram: u64, console: Box<dyn Write>) -> Result<Machine, MemoryError> {
        Machine::with_platform(ram, console, Box::new(std::io::sink()), TimeMode::Virtual, DEFAULT_RTC_EPOCH)
    }

    /// A machine with every host connection chosen: debug console, serial output, time mode
    /// and the RTC's date at power-on (Unix seconds).
    pub fn with_platform(
        ram: u64,
        debugcon: Box<dyn Write>,
        serial: Box<dyn Write>,
        time: TimeMode,
        rtc_epoch: u64,
    ) -> Result<Machine, MemoryError> {
        Ok(Machine {
            cpu: Cpu::new(ram)?,
            bus: PcBus::new(debugcon, serial, rtc_epoch, ram),
            clock: Clock::new(time),
            serial_input: None,
            boot: None,
            on_triple_fault: TripleFaultAction::Stop,
            max_resets: DEFAULT_MAX_RESETS,
            resets: 0,
            diagnostics: Box::new(std::io::sink()),
            input_ended: true,
            wall_limit: None,
            trace: None,
            no_reboot: false,
            engine: crate::engine::Engine::default(),
        })
    }

    /// Connects serial input to COM1.
    pub fn set_serial_input(&mut self, input: SerialInput) {
        self.serial_input = Some(input);
        self.input_ended = false;
    }

    /// Raises an NMI edge (delivered unless CMOS port 0x70 bit 7 masks it).
    pub fn raise_nmi(&mut self) {
        self.bus.nmi_request = true;
    }

    /// Virtual time now.
    pub fn now(&self) -> Nanos {
        self.clock.now(self.cpu.state.retired)
    }

    /// Loads a real-mode image and points CS:IP and SS:SP at its entry, as a boot loader would;
    /// a reset enters it again.
    pub fn load_image(&mut self, image: &Image) -> Result<(), MemoryError> {
        self.enter_image(image)?;
        self.boot = Some(BootPath::RealMode(image.clone()));
        Ok(())
    }

    /// [`Machine::load_image`] without recording the boot path.
    pub(crate) fn enter_image(&mut self, image: &Image) -> Result<(), MemoryError> {
        self.cpu.mem.load(u64::from(image.load), &image.code)?;
        self.cpu.set_real_cs_ip(image.entry_cs, image.entry_ip);
        let ss = emu_core::Segment::real_mode(image.stack_ss);
        *self.cpu.state.seg_mut(emu_core::SegReg::Ss) = ss;
        self.cpu.state.regs[emu_core::state::gpr::ESP] = u32::from(image.stack_sp);
        for s in [emu_core::SegReg::Ds, emu_core::SegReg::Es] {
            *self.cpu.state.seg_mut(s) = emu_core::Segment::real_mode(image.entry_cs);
        }
        Ok(())
    }

    /// RESET: the CPU returns to its reset state, RAM and ROM are kept, and the remembered boot
    /// path is entered again (see the module header). Without one the CPU simply starts at the
    /// reset vector. Devices keep their state, as the PC's reset line leaves most of them alone.
    pub fn reset(&mut self) -> Result<(), crate::boot::BootError> {
        self.cpu.reset();
        self.cpu.state.a20 = self.bus.a20;
        // FERR# follows the CPU's instructions (`PortIo::set_ferr`); a reset clears it too.
        self.bus.sync_ferr(self.cpu.fpu.ferr());
        match self.boot.take() {
            Some(path) => {
                let entered = path.reenter(self);
                self.boot = Some(path);
                entered
            }
            None => Ok(()),
        }
    }

    /// A reset (triple fault or guest request): stop, or reset and go on (`None`).
    fn reset_or_stop(&mut self, cause: Option<Shutdown>) -> Option<Exit> {
        if cause.is_none() && self.no_reboot {
            return Some(Exit::Reboot);
        }
        if let (TripleFaultAction::Stop, Some(s)) = (self.on_triple_fault, &cause) {
            return Some(Exit::TripleFault(s.clone()));
        }
        if self.resets >= self.max_resets {
            return Some(Exit::ResetLimit { resets: self.resets, last: cause });
        }
        self.resets += 1;
        let why = cause.as_ref().map_or("the guest asked for a reset".to_owned(), |s| s.to_string());
        let _ = writeln!(
            self.diagnostics,
            "bt86: {why}; resetting (reset {} of at most {})",
            self.resets, self.max_resets
        );
        if let Err(e) = self.reset() {
            let _ = writeln!(self.diagnostics, "bt86: cannot boot again after the reset: {e}");
            return Some(cause.map_or(Exit::Halted, Exit::TripleFault));
        }
        None
    }

    /// Feeds COM1 from the serial input while it can take bytes. With `wait`, blocks for the
    /// next byte (virtual time with piped input: deterministic arrival).
    fn feed_serial(&mut self, wait: Option<Duration>) -> Option<Exit> {
        let input = self.serial_input.as_mut()?;
        let now = self.bus.now;
        while !self.input_ended && self.bus.com1.can_receive(now) {
            match input.poll(wait) {
                Poll::Byte(b) => {
                    self.bus.com1.receive(b, now, &mut Pin { pic: &mut self.bus.pic, irq: COM1.1 });
                }
                Poll::Empty => break,
                Poll::Eof => self.input_ended = true,
                Poll::Quit => return Some(Exit::Quit),
            }
        }
        None
    }

    /// Serial input may still arrive (the run loop must look for it every
    /// [`INPUT_POLL_STEPS`] steps exactly, for runs to be reproducible).
    pub(crate) fn input_active(&self) -> bool {
        self.serial_input.is_some() && !self.input_ended
    }

    /// How long to wait for input: blocking for piped input in virtual time, never otherwise.
    fn input_wait(&self) -> Option<Duration> {
        (self.clock.mode() == TimeMode::Virtual).then_some(Duration::from_secs(24 * 3600))
    }

    fn flush(&mut self) {
        self.bus.com1.flush();
        self.bus.debugcon.flush();
    }

    /// Runs until the guest exits, powers off, halts for good, triple-faults (for good), the
    /// user quits, or `max_steps` instructions pass.
    pub fn run(&mut self, max_steps: u64) -> Exit {
        let exit = self.run_inner(max_steps);
        self.flush();
        exit
    }

    fn run_inner(&mut self, max_steps: u64) -> Exit {
        let mut now = self.now();
        self.bus.advance(now);
        let mut deadline = self.bus.next_deadline(now);
        let mut steps = 0u64;
        let mut next_poll = INPUT_POLL_STEPS;
        while steps < max_steps {
            now = self.clock.now(self.cpu.state.retired);
            if deadline.is_some_and(|d| now >= d) {
                self.bus.advance(now);
                deadline = self.bus.next_deadline(now);
            }
            self.bus.now = now;
            if steps + 1 >= next_poll {
                next_poll = (steps + 1) / INPUT_POLL_STEPS * INPUT_POLL_STEPS + INPUT_POLL_STEPS;
                if self.wall_limit.is_some_and(|t| Instant::now() >= t) {
                    return Exit::TimeLimit;
                }
                if let Some(exit) = self.feed_serial(self.input_wait()) {
                    return exit;
                }
            }
            if let Some(t) = self.trace {
                self.trace_step(t);
            }
            // One step of the interpreter, or as many as the engine may take before the next
            // look at input or device deadline (crate::engine).
            let (r, n) = self.engine_steps(steps, max_steps, deadline);
            steps += n;
            // The time of the last step's instruction (the engine keeps the bus up to date).
            now = self.bus.now;
            if let Some(report) = self.engine.take_divergence() {
                return Exit::Divergence(report);
            }
            if let Some(value) = self.bus.debug_exit.take_exit() {
                return Exit::DebugExit { value };
            }
            if self.bus.touched {
                self.bus.touched = false;
                if self.bus.power.take_poweroff() {
                    return Exit::PowerOff;
                }
                self.cpu.state.a20 = self.bus.a20;
                let reset = self.bus.kbc.take_reset_request() | self.bus.port92.take_reset_request();
                if reset {
                    if let Some(exit) = self.reset_or_stop(None) {
                        return exit;
                    }
                }
                deadline = self.bus.next_deadline(now);
            }
            match r {
                StepResult::Retired => {}
                StepResult::Halted => {
                    if let Some(exit) = self.idle(now, &mut deadline) {
                        return exit;
                    }
                }
                StepResult::Shutdown(s) => {
                    if let Some(exit) = self.reset_or_stop(Some(s)) {
                        return exit;
                    }
                }
            }
        }
        Exit::StepLimit
    }

    /// The CPU is halted: wait for the next event — skip (virtual) or sleep (real time) to the
    /// next device deadline, looking for serial input meanwhile. `Some(exit)` when nothing can
    /// ever wake the CPU again.
    fn trace_step(&mut self, t: Trace) {
        let n = self.cpu.state.retired;
        if n < t.from || n - t.from >= t.count {
            return;
        }
        let (text, bytes, _, pa) = crate::diff::disassemble(&mut self.cpu);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let s = &self.cpu.state;
        let _ = writeln!(
            self.diagnostics,
            "{n:>12} {:04x}:{:08x} {} {hex:<30} {text}",
            s.seg(SegReg::Cs).selector,
            s.eip,
            pa.map_or("--------".to_string(), |p| format!("{p:08x}")),
        );
    }

    fn idle(&mut self, now: Nanos, deadline: &mut Option<Nanos>) -> Option<Exit> {
        let can_interrupt = self.cpu.state.eflags() & fl::IF != 0;
        if !can_interrupt && !self.bus.nmi_request {
            return Some(Exit::Halted);
        }
        // An interrupt already waiting wakes the CPU at once (HLT right after STI, whose shadow
        // kept it out for one instruction): no time passes.
        if (can_interrupt && !self.bus.hold_interrupts && self.bus.pic.intr()) || self.bus.nmi_request {
            return None;
        }
        let input_possible = self.serial_input.is_some() && !self.input_ended;
        let realtime = self.clock.mode() == TimeMode::Realtime;
        // The next moment worth waking for.
        let wake = match (*deadline, input_possible) {
            (Some(d), true) if !realtime => Some(d.min(now + INPUT_INTERVAL)),
            (Some(d), _) => Some(d),
            (None, true) if !realtime => Some(now + INPUT_INTERVAL),
            (None, true) => Some(now + 10_000_000),
            (None, false) => None,
        };
        let Some(wake) = wake else {
            // No timer armed and no input can come: the guest sleeps forever.
            return Some(Exit::Halted);
        };
        let before = self.bus.now.max(now);
        let now = self.clock.idle_until(self.cpu.state.retired, wake, Duration::from_millis(10));
        // The time-stamp counter keeps counting while the CPU is halted: one tick per
        // instruction time (10 ns), the rate at which it counts while running.
        let slept = now.saturating_sub(before) / crate::clock::NS_PER_INSTRUCTION;
        self.cpu.state.tsc = self.cpu.state.tsc.wrapping_add(slept);
        self.bus.now = now;
        if input_possible {
            if let Some(exit) = self.feed_serial(self.input_wait()) {
                return Some(exit);
            }
        }
        self.bus.advance(now);
        *deadline = self.bus.next_deadline(now);
        None
    }
}
