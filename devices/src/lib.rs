//! devices: the PC platform of bt86 as plain state machines.
//!
//! Every device here knows nothing of the CPU, the translator or the host. It is driven by the
//! machine (`bt86::machine`) through three things, all passed in:
//!
//! - **register accesses**: `read(port, now)` / `write(port, value, now)` on its I/O ports, one
//!   byte at a time (the machine splits wider accesses). Unknown offsets read 0xFF and ignore
//!   writes, never panic;
//! - **time**: `now`, virtual nanoseconds since power-on, given with every call, and
//!   `advance(now, …)` to let time pass; `next_deadline()` tells the machine when the device next
//!   needs to run (a timer output edge, an RTC update, a UART byte leaving the shift register),
//!   so an idle guest can skip straight there. No device reads the host clock;
//! - **interrupt lines**: a device that raises interrupts is handed a [`IrqLine`] in the calls
//!   that can change its output, and drives it high or low. It never holds a reference to the
//!   interrupt controller.
//!
//! Each device's state is a plain `…State` struct returned by `save()` and accepted by
//! `restore(&state) -> Result<(), RestoreError>`; host resources (output streams, clocks) are
//! constructor arguments, never part of the state.

pub mod cmos;
pub mod i8042;
pub mod misc;
pub mod pic;
pub mod pit;
pub mod uart;

use thiserror::Error;

/// Virtual time in nanoseconds since the machine powered on.
pub type Nanos = u64;

/// An interrupt request line as a device drives it (an ISA IRQ pin into the 8259A).
pub trait IrqLine {
    /// Drives the line high (`true`) or low (`false`).
    fn set_level(&mut self, high: bool);
}

/// An IRQ line that goes nowhere (tests, unconnected devices).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoIrq;

impl IrqLine for NoIrq {
    fn set_level(&mut self, _high: bool) {}
}

/// An IRQ line that remembers its level (tests).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LevelProbe {
    /// The level last driven.
    pub high: bool,
    /// How many times the line went from low to high.
    pub rising_edges: u32,
}

impl IrqLine for LevelProbe {
    fn set_level(&mut self, high: bool) {
        if high && !self.high {
            self.rising_edges += 1;
        }
        self.high = high;
    }
}

/// A saved state that cannot be restored.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RestoreError {
    /// A field holds a value the device cannot be in.
    #[error("{device}: invalid saved state: {what}")]
    Invalid {
        /// Which device.
        device: &'static str,
        /// What is wrong.
        what: String,
    },
}
