//! Execution engines: how the machine's run loop executes guest instructions.
//!
//! - **interp**: `Cpu::step`, one instruction per loop iteration (emu-core's interpreter).
//! - **jit**: the binary translator (`jit` crate) runs as many steps as the run loop allows in
//!   one go: up to the next device deadline, the next look at serial input and the step limit.
//!   It retires exactly the instructions the interpreter would, with interrupts at the same
//!   boundaries, so output, exit status and instruction counts are identical.
//! - **lockstep**: the translator drives the machine (devices see its I/O only), and a second
//!   CPU on a copy of memory runs the interpreter behind it, a few blocks at a time (see
//!   [`crate::lockstep`]); the run stops at the first divergence with both states.
//!
//! The translator is the default on x86-64 hosts, the interpreter elsewhere (there is no
//! backend for other hosts yet).

use std::fmt;

use devices::Nanos;
use emu_core::cpu::StepResult;
use emu_core::{PortIo, Size};

use crate::clock::Clock;
use crate::lockstep::Lockstep;
use crate::machine::{Machine, PcBus};

/// Which engine runs guest code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    /// The interpreter.
    Interp,
    /// The binary translator.
    Jit,
    /// The translator checked against the interpreter block by block.
    Lockstep,
}

impl EngineKind {
    /// The engine used when none is chosen: the translator where it has a backend.
    pub fn host_default() -> EngineKind {
        if cfg!(target_arch = "x86_64") {
            EngineKind::Jit
        } else {
            EngineKind::Interp
        }
    }

    /// From its command-line name.
    pub fn parse(s: &str) -> Option<EngineKind> {
        match s {
            "interp" => Some(EngineKind::Interp),
            "jit" => Some(EngineKind::Jit),
            "lockstep" => Some(EngineKind::Lockstep),
            _ => None,
        }
    }

    /// Its command-line name.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Interp => "interp",
            EngineKind::Jit => "jit",
            EngineKind::Lockstep => "lockstep",
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The machine's engine and its state.
#[derive(Debug)]
pub struct Engine {
    kind: EngineKind,
    jit: Option<Box<jit::Jit>>,
    /// The interpreter shadow of lockstep execution (created when the run starts).
    pub(crate) lockstep: Option<Box<Lockstep>>,
}

impl Engine {
    /// The interpreter.
    pub fn interp() -> Engine {
        Engine { kind: EngineKind::Interp, jit: None, lockstep: None }
    }

    /// Engine `kind`; fails when the translator is not available on this host.
    pub fn new(kind: EngineKind) -> Result<Engine, String> {
        Engine::with_options(kind, jit::JitOptions::from_env())
    }

    /// Engine `kind` with translator `options`.
    pub fn with_options(kind: EngineKind, options: jit::JitOptions) -> Result<Engine, String> {
        match kind {
            EngineKind::Interp => Ok(Engine::interp()),
            EngineKind::Jit | EngineKind::Lockstep => {
                let j = jit::Jit::with_options(options).map_err(|e| format!("--engine {kind}: {e}"))?;
                Ok(Engine { kind, jit: Some(Box::new(j)), lockstep: None })
            }
        }
    }

    /// The host's default engine, falling back to the interpreter if the translator cannot
    /// start (no backend, no executable memory).
    pub fn host_default() -> Engine {
        Engine::new(EngineKind::host_default()).unwrap_or_else(|_| Engine::interp())
    }

    /// Which engine this is.
    pub fn kind(&self) -> EngineKind {
        self.kind
    }

    /// The translator's counters (jit and lockstep).
    pub fn jit_stats(&self) -> Option<&jit::JitStats> {
        self.jit.as_deref().map(jit::Jit::stats)
    }

    /// The translator.
    pub fn jit_mut(&mut self) -> Option<&mut jit::Jit> {
        self.jit.as_deref_mut()
    }

    /// The lockstep report, once a divergence was found (taken: the run ends with it).
    pub fn take_divergence(&mut self) -> Option<String> {
        self.lockstep.as_mut().and_then(|l| l.divergence.take())
    }
}

impl Default for Engine {
    fn default() -> Engine {
        Engine::host_default()
    }
}

/// The bus as the translator sees it: the same ports, and "now" brought up to date before an
/// instruction that may touch them (time follows the instruction count, see [`Clock`]).
pub(crate) struct TimedBus<'a> {
    pub bus: &'a mut PcBus,
    pub clock: &'a Clock,
}

impl PortIo for TimedBus<'_> {
    fn io_read(&mut self, port: u16, size: Size) -> u32 {
        self.bus.io_read(port, size)
    }

    fn io_write(&mut self, port: u16, size: Size, value: u32) {
        self.bus.io_write(port, size, value);
    }

    fn interrupt_pending(&mut self) -> bool {
        self.bus.interrupt_pending()
    }

    fn acknowledge_interrupt(&mut self) -> u8 {
        self.bus.acknowledge_interrupt()
    }

    fn take_nmi(&mut self) -> bool {
        self.bus.take_nmi()
    }

    fn sync_time(&mut self, retired: u64) {
        self.bus.now = self.clock.now(retired);
    }

    fn set_ferr(&mut self, asserted: bool) {
        self.bus.sync_ferr(asserted);
    }
}

/// Most steps one translator run may take when no serial input can arrive (so the run loop
/// still looks at its wall-clock limit a few hundred times a second).
const MAX_RUN_STEPS: u64 = 1 << 22;

/// Most steps one translator run may take in real time (a few tens of microseconds).
const MAX_RUN_STEPS_REALTIME: u64 = 1 << 16;

/// Steps between two looks at serial input (the run loop's `INPUT_POLL_STEPS`).
pub(crate) fn steps_to_next_poll(steps_done: u64, poll: u64) -> u64 {
    let next = steps_done + 1;
    (next / poll + 1) * poll - next
}

impl Machine {
    /// Runs guest code with the machine's engine, `steps_done` of `max_steps` steps taken so
    /// far: at most up to the next look at serial input, stopping before an instruction would
    /// start at or after `deadline`. Returns the last step's result and how many steps were
    /// taken. The interpreter (and any engine while tracing) takes one step.
    pub(crate) fn engine_steps(
        &mut self,
        steps_done: u64,
        max_steps: u64,
        deadline: Option<Nanos>,
    ) -> (StepResult, u64) {
        if self.trace.is_some() || self.engine.kind == EngineKind::Interp {
            return (self.cpu.step(&mut self.bus), 1);
        }
        // Serial input is looked for every INPUT_POLL_STEPS steps exactly; without input the
        // looks only check the wall-clock limit, and runs are capped to keep that prompt.
        let to_poll = if self.input_active() {
            steps_to_next_poll(steps_done, crate::machine::INPUT_POLL_STEPS)
        } else if self.clock.mode() == crate::clock::TimeMode::Realtime {
            // Device deadlines follow the host clock: come back often to look at it.
            MAX_RUN_STEPS_REALTIME
        } else {
            MAX_RUN_STEPS
        };
        let budget = (max_steps - steps_done).min(to_poll);
        let retired = deadline.and_then(|d| self.clock.retired_at(d)).unwrap_or(u64::MAX);
        let limit = jit::RunLimit { steps: budget.max(1), retired: retired.max(self.cpu.state.retired + 1) };
        if self.engine.kind == EngineKind::Lockstep {
            return crate::lockstep::run(self, limit);
        }
        let Some(j) = self.engine.jit.as_deref_mut() else {
            return (self.cpu.step(&mut self.bus), 1);
        };
        let mut io = TimedBus { bus: &mut self.bus, clock: &self.clock };
        let out = j.run(&mut self.cpu, &mut io, limit);
        (out.result, out.steps)
    }

    /// Splits the machine for lockstep: the translator, the CPU and the timed bus.
    pub(crate) fn jit_parts(
        &mut self,
    ) -> (Option<&mut jit::Jit>, &mut emu_core::Cpu, TimedBus<'_>, &mut Option<Box<Lockstep>>) {
        let e = &mut self.engine;
        (
            e.jit.as_deref_mut(),
            &mut self.cpu,
            TimedBus { bus: &mut self.bus, clock: &self.clock },
            &mut e.lockstep,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_budget_stops_before_every_multiple() {
        // Step numbers are 1-based: the poll happens before steps 4096, 8192, …
        assert_eq!(steps_to_next_poll(0, 4096), 4095);
        assert_eq!(steps_to_next_poll(4094, 4096), 1);
        assert_eq!(steps_to_next_poll(4095, 4096), 4096);
        assert_eq!(steps_to_next_poll(4096, 4096), 4095);
    }

    #[test]
    fn engine_names_round_trip() {
        for k in [EngineKind::Interp, EngineKind::Jit, EngineKind::Lockstep] {
            assert_eq!(EngineKind::parse(k.name()), Some(k));
        }
        assert_eq!(EngineKind::parse("qemu"), None);
    }
}
