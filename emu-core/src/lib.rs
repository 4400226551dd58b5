//! emu-core: bt86's CPU — architectural state, guest memory, decoding and the interpreter.
//!
//! ```text
//!   GuestMemory (memfd + memmap2)          CpuState (#[repr(C)], lazy flags)
//!            ▲                                   ▲
//!            │ physical                          │
//!   Cpu::step ─ fetch (segment limit, page end) ─▶ iced-x86 Decoder ─▶ isa::TABLE[code]
//!            │                                            │ handler(cpu, io, &Instruction)
//!            └─ Err(Exception) ─▶ deliver through IVT/IDT ◀┘   (Ok: instruction retired)
//! ```
//!
//! The interpreter defines bt86's semantics; the translator (crate `jit`) calls back into the
//! very same handlers for everything it does not translate inline. The instruction table in
//! [`isa`] is the single source of truth for what each `iced_x86::Code` does and how it is
//! classified (Popek–Goldberg class, block end, translator policy).

pub mod cpu;
pub mod cpuid;
pub mod exception;
pub mod flags;
pub mod io;
pub mod isa;
pub mod memory;
pub mod paging;
pub mod state;
pub mod tlb;
pub mod x87;

pub use cpu::{Cpu, StepResult};
pub use exception::Exception;
pub use flags::Size;
pub use io::{OpenBus, PortIo};
pub use memory::{GuestMemory, MemoryError};
pub use state::{CpuState, SegReg, Segment};
