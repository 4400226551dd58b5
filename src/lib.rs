//! bt86: a pure-software x86 PC emulator. This library is the machine that wires the crates
//! together (CPU from `emu-core`, guest programs from `guest-images`) plus the tools the `bt86`
//! binary offers: running a guest and the silicon-vector conformance runner.

pub mod boot;
pub mod conformance;
pub mod machine;
