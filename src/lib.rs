//! bt86: a pure-software x86 PC emulator. This library is the machine that wires the crates
//! together (CPU from `emu-core`, devices from `devices`, guest programs from `guest-images`)
//! plus the tools the `bt86` binary offers: running a guest, the boot paths, the serial console
//! and the silicon-vector conformance runner.

pub mod bench;
pub mod boot;
pub mod clock;
pub mod conformance;
pub mod diff;
pub mod engine;
pub mod fuzz;
pub mod linux_bench;
pub mod lockstep;
pub mod machine;
pub mod serial;
