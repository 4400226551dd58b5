//! The machine: a CPU, its RAM and the port space around it, and the run loop.
//!
//! For now the port space holds the two debug devices every test guest uses, as QEMU and Bochs
//! define them: the debug console at port 0xE9 (each byte written appears on the output) and
//! isa-debug-exit at port 0xF4 (a write of `v` ends the run with exit status `(v << 1) | 1`,
//! QEMU's `-device isa-debug-exit,iobase=0xf4,iosize=4`). Every other port reads as all ones
//! and ignores writes. The PC devices (PIC, PIT, UART, CMOS) join with the platform issue.
//!
//! Triple faults: a CPU that shuts down either stops the run ([`TripleFaultAction::Stop`], the
//! default) or, as on a PC, where shutdown asserts RESET, resets and boots again
//! ([`TripleFaultAction::Reset`]): the CPU returns to its architectural reset state, RAM is
//! kept, and the machine re-enters the boot path it remembers ([`crate::boot::BootPath`]):
//! firmware restarts at the reset vector, a kernel or image loaded by bt86 is loaded and
//! entered again. A guest that triple-faults more than [`Machine::max_resets`] times in one run
//! ends with [`Exit::ResetLimit`].

use std::io::Write;

use emu_core::cpu::Shutdown;
use emu_core::{Cpu, MemoryError, PortIo, Size, StepResult};
use guest_images::Image;

use crate::boot::BootPath;

/// Port of the debug console (Bochs/QEMU "debugcon").
pub const DEBUGCON_PORT: u16 = 0xE9;
/// Port of QEMU's isa-debug-exit device as bt86's tests configure it.
pub const DEBUG_EXIT_PORT: u16 = 0xF4;

/// Why a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The guest wrote `value` to the isa-debug-exit port.
    DebugExit {
        /// The value written.
        value: u32,
    },
    /// The CPU halted with nothing to wake it (no interrupt sources exist yet).
    Halted,
    /// A triple fault shut the CPU down.
    TripleFault(Shutdown),
    /// With [`TripleFaultAction::Reset`]: the guest triple-faulted again after
    /// [`Machine::max_resets`] resets.
    ResetLimit {
        /// Resets done in this run.
        resets: u32,
        /// The last shutdown.
        last: Shutdown,
    },
    /// The instruction limit was reached.
    StepLimit,
}

impl Exit {
    /// The process exit status bt86 reports for this ending: isa-debug-exit's `(v << 1) | 1`,
    /// 0 for a clean halt, 2 for a step limit (a guest that did not finish), 3 for a triple
    /// fault (also when the guest kept triple-faulting through resets).
    pub fn status(&self) -> i32 {
        match self {
            Exit::DebugExit { value } => ((value << 1) | 1) as i32,
            Exit::Halted => 0,
            Exit::StepLimit => 2,
            Exit::TripleFault(_) | Exit::ResetLimit { .. } => 3,
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

/// The port space: debug console and debug exit, open bus elsewhere.
pub struct PcBus {
    /// Where debug-console bytes go.
    pub console: Box<dyn Write>,
    /// Set when the guest wrote to the exit port.
    pub exit_request: Option<u32>,
}

impl std::fmt::Debug for PcBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcBus").field("exit_request", &self.exit_request).finish_non_exhaustive()
    }
}

impl PortIo for PcBus {
    fn io_read(&mut self, port: u16, size: Size) -> u32 {
        match port {
            // Bochs' debug console reads back 0xE9 so software can detect it.
            DEBUGCON_PORT => 0xE9,
            _ => size.mask(),
        }
    }

    fn io_write(&mut self, port: u16, _size: Size, value: u32) {
        match port {
            DEBUGCON_PORT => {
                // A console that cannot be written (closed pipe) must not stop the guest.
                let _ = self.console.write_all(&[value as u8]);
            }
            DEBUG_EXIT_PORT => self.exit_request = Some(value),
            _ => {}
        }
    }
}

/// A PC: CPU, RAM, ports.
pub struct Machine {
    /// The processor and its memory.
    pub cpu: Cpu,
    /// The port space.
    pub bus: PcBus,
    /// How the guest was booted, for resets; `None` until something is loaded.
    pub boot: Option<BootPath>,
    /// What a triple fault does.
    pub on_triple_fault: TripleFaultAction,
    /// With [`TripleFaultAction::Reset`]: how many resets a run allows.
    pub max_resets: u32,
    /// Resets done so far.
    pub resets: u32,
    /// Where the machine reports events the guest does not see (resets); discarded unless set.
    pub diagnostics: Box<dyn Write>,
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
    /// A machine with `ram` bytes of memory whose debug console writes to `console`.
    pub fn new(ram: u64, console: Box<dyn Write>) -> Result<Machine, MemoryError> {
        Ok(Machine {
            cpu: Cpu::new(ram)?,
            bus: PcBus { console, exit_request: None },
            boot: None,
            on_triple_fault: TripleFaultAction::Stop,
            max_resets: DEFAULT_MAX_RESETS,
            resets: 0,
            diagnostics: Box::new(std::io::sink()),
        })
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
    /// reset vector.
    pub fn reset(&mut self) -> Result<(), crate::boot::BootError> {
        self.cpu.reset();
        self.bus.exit_request = None;
        match self.boot.take() {
            Some(path) => {
                let entered = path.reenter(self);
                self.boot = Some(path);
                entered
            }
            None => Ok(()),
        }
    }

    /// A triple fault: stop, or reset and go on (`None`).
    fn triple_fault(&mut self, s: Shutdown) -> Option<Exit> {
        if self.on_triple_fault == TripleFaultAction::Stop {
            return Some(Exit::TripleFault(s));
        }
        if self.resets >= self.max_resets {
            return Some(Exit::ResetLimit { resets: self.resets, last: s });
        }
        self.resets += 1;
        let _ = writeln!(
            self.diagnostics,
            "bt86: {s}; resetting (reset {} of at most {})",
            self.resets, self.max_resets
        );
        if let Err(e) = self.reset() {
            let _ = writeln!(self.diagnostics, "bt86: cannot boot again after the reset: {e}");
            return Some(Exit::TripleFault(s));
        }
        None
    }

    /// Runs until the guest exits, halts, triple-faults (for good), or `max_steps`
    /// instructions pass.
    pub fn run(&mut self, max_steps: u64) -> Exit {
        let mut steps = 0u64;
        while steps < max_steps {
            steps += 1;
            let r = self.cpu.step(&mut self.bus);
            if let Some(value) = self.bus.exit_request.take() {
                let _ = self.bus.console.flush();
                return Exit::DebugExit { value };
            }
            match r {
                StepResult::Retired => {}
                StepResult::Halted => {
                    let _ = self.bus.console.flush();
                    return Exit::Halted;
                }
                StepResult::Shutdown(s) => {
                    if let Some(exit) = self.triple_fault(s) {
                        let _ = self.bus.console.flush();
                        return exit;
                    }
                }
            }
        }
        let _ = self.bus.console.flush();
        Exit::StepLimit
    }
}
