//! The traits through which the CPU reaches the rest of the machine.
//!
//! emu-core knows nothing of devices: the `bt86` package implements these over the `devices`
//! crate. Port I/O follows Intel SDM Vol. 1 §19 (I/O address space): 8-, 16- and 32-bit accesses
//! to a 64 KiB port space; a device decides how wider accesses split.

use crate::flags::Size;

/// The I/O port space seen by IN, OUT, INS and OUTS.
pub trait PortIo {
    /// Reads `size` bytes from `port`. Unclaimed ports read as all ones (ISA open bus).
    fn io_read(&mut self, port: u16, size: Size) -> u32;
    /// Writes the low `size` bytes of `value` to `port`. Unclaimed ports ignore writes.
    fn io_write(&mut self, port: u16, size: Size, value: u32);
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
