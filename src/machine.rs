//! The machine: a CPU, its RAM and the port space around it, and the run loop.
//!
//! For now the port space holds the two debug devices every test guest uses, as QEMU and Bochs
//! define them: the debug console at port 0xE9 (each byte written appears on the output) and
//! isa-debug-exit at port 0xF4 (a write of `v` ends the run with exit status `(v << 1) | 1`,
//! QEMU's `-device isa-debug-exit,iobase=0xf4,iosize=4`). Every other port reads as all ones
//! and ignores writes. The PC devices (PIC, PIT, UART, CMOS) join with the platform issue.

use std::io::Write;

use emu_core::cpu::Shutdown;
use emu_core::{Cpu, MemoryError, PortIo, Size, StepResult};
use guest_images::Image;

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
    /// The instruction limit was reached.
    StepLimit,
}

impl Exit {
    /// The process exit status bt86 reports for this ending: isa-debug-exit's `(v << 1) | 1`,
    /// 0 for a clean halt, 2 for a step limit (a guest that did not finish), 3 for a triple
    /// fault.
    pub fn status(&self) -> i32 {
        match self {
            Exit::DebugExit { value } => ((value << 1) | 1) as i32,
            Exit::Halted => 0,
            Exit::StepLimit => 2,
            Exit::TripleFault(_) => 3,
        }
    }
}

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
#[derive(Debug)]
pub struct Machine {
    /// The processor and its memory.
    pub cpu: Cpu,
    /// The port space.
    pub bus: PcBus,
}

/// Default guest RAM: 16 MiB.
pub const DEFAULT_RAM: u64 = 16 << 20;

impl Machine {
    /// A machine with `ram` bytes of memory whose debug console writes to `console`.
    pub fn new(ram: u64, console: Box<dyn Write>) -> Result<Machine, MemoryError> {
        Ok(Machine { cpu: Cpu::new(ram)?, bus: PcBus { console, exit_request: None } })
    }

    /// Loads a real-mode image and points CS:IP and SS:SP at its entry, as a boot loader would.
    pub fn load_image(&mut self, image: &Image) -> Result<(), MemoryError> {
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

    /// Runs until the guest exits, halts, triple-faults, or `max_steps` instructions pass.
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
                    let _ = self.bus.console.flush();
                    return Exit::TripleFault(s);
                }
            }
        }
        let _ = self.bus.console.flush();
        Exit::StepLimit
    }
}
