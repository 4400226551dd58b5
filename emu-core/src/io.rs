//! The traits through which the CPU reaches the rest of the machine.
//!
//! emu-core knows nothing of devices: the `bt86` package implements these over the `devices`
//! crate. Port I/O follows Intel SDM Vol. 1 §19 (I/O address space): 8-, 16- and 32-bit accesses
//! to a 64 KiB port space; a device decides how wider accesses split. External interrupts follow
//! SDM Vol. 3A §6.3.1 and §6.8: the INTR line is sampled at instruction boundaries when IF = 1
//! and no interrupt shadow (STI, MOV SS, POP SS) is in effect; the interrupt-acknowledge cycle
//! returns the vector; NMI is an edge that is blocked from delivery until the next IRET.

use crate::flags::Size;

/// The I/O port space seen by IN, OUT, INS and OUTS.
pub trait PortIo {
    /// Reads `size` bytes from `port`. Unclaimed ports read as all ones (ISA open bus).
    fn io_read(&mut self, port: u16, size: Size) -> u32;
    /// Writes the low `size` bytes of `value` to `port`. Unclaimed ports ignore writes.
    fn io_write(&mut self, port: u16, size: Size, value: u32);

    /// The INTR line: whether the interrupt controller requests an interrupt now.
    fn interrupt_pending(&mut self) -> bool {
        false
    }

    /// The interrupt-acknowledge cycle: the vector of the interrupt being taken (a controller
    /// whose request went away answers with its spurious vector).
    fn acknowledge_interrupt(&mut self) -> u8 {
        0xFF
    }

    /// Takes a pending NMI edge (true once per edge; the platform applies its NMI mask).
    fn take_nmi(&mut self) -> bool {
        false
    }

    /// The CPU is about to run an instruction that may touch ports, after `retired`
    /// instructions: a platform whose time follows the instruction count brings its notion of
    /// "now" up to date. The binary translator calls this before port I/O in the middle of a
    /// run; a caller stepping the interpreter one instruction at a time keeps time itself.
    fn sync_time(&mut self, _retired: u64) {}

    /// The CPU's FERR# output changed (x87 error reporting with CR0.NE clear, SDM Vol. 1
    /// §8.7): a PC routes it to IRQ 13. Called right after the instruction that changed it.
    fn set_ferr(&mut self, _asserted: bool) {}
}

/// A port space with nothing on it: reads return all ones, writes vanish.
#[derive(Debug, Default, Clone, Copy)]
pub struct OpenBus;

impl PortIo for OpenBus {
    fn io_read(&mut self, _port: u16, size: Size) -> u32 {
        size.mask()
    }

    fn io_write(&mut self, _port: u16, _size: Size, _value: u32) {}
}
