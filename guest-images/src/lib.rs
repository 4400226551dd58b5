//! Guest programs for bt86, assembled in Rust with iced-x86's `code_asm`.
//!
//! Every program is a flat real-mode image that starts with a boot sector (see [`boot_disk`]),
//! so the very same bytes run when bt86 loads the image at 0x7C00 and when a PC BIOS boots it
//! from a floppy under QEMU. They talk to the outside only through the debug console (port
//! 0xE9) and isa-debug-exit (port 0xF4).
//!
//! - [`primes()`]: the primes below 1000, then HLT.
//! - [`bench_loop`]: a CRC-32 / FNV-1 compute loop for the interpreter benchmark.
//! - [`self_tests`]: self-checking programs that print TAP-style `ok N - …` lines and exit
//!   through isa-debug-exit with 0 when every check passed (exit status 1), 1 otherwise (3).
//!
//! Besides these real-mode images, [`kernels`] gives self-checking 32-bit protected-mode test
//! kernels (segmentation, privilege rings, tasks, paging, virtual-8086 mode, I/O permissions,
//! exceptions; the 8254 timer with the 8259A, the 16550A UART, the MC146818A RTC) as multiboot
//! v1 ELF files, for `bt86 run --kernel` and `qemu -kernel`; they report the same way.
//!
//! [`workloads`] are integer benchmark kernels (sieve, CRC-32, quicksort, matrix multiply,
//! string search) for `bt86 bench`.
//!
//! [`demo_kernel`] is the guest to show people: a small multiboot kernel that sets up
//! protected mode, paging, the interrupt controllers, the timer and COM1, runs two ring-3 tasks
//! under a timer-driven scheduler, and then offers a shell on the serial console.

mod asm;
mod bench;
mod boot;
pub mod cpio;
mod demo_kernel;
mod irq;
mod multiboot;
mod pc;
mod pm;
mod primes;
mod selftest;
mod workloads;

pub use bench::{bench_loop, bench_loop_instructions};
pub use boot::{boot_disk, FLOPPY_SECTORS, SECTOR};
pub use demo_kernel::demo_kernel;
pub use multiboot::{flat_kernel, FLAT_KERNEL_CODE};
pub use primes::primes;
pub use selftest::self_tests;
pub use workloads::{workloads, Workload};

/// Every embedded multiboot test kernel: the protected-mode kernels (`pm-…`), then the
/// interrupt kernels (`irq-…`). Each is self-checking and exits through isa-debug-exit.
pub fn kernels() -> Vec<Kernel> {
    let mut all = pm::kernels();
    all.extend(irq::kernels());
    all
}

/// A flat real-mode program: its bytes, where they go in guest-physical memory, and where
/// execution starts. DS and ES start equal to CS; SS:SP as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Short name (used by tests and the CLI).
    pub name: &'static str,
    /// One line saying what the program does.
    pub description: &'static str,
    /// Guest-physical load address of `code[0]`.
    pub load: u32,
    /// Entry CS (real mode).
    pub entry_cs: u16,
    /// Entry IP.
    pub entry_ip: u16,
    /// Initial SS.
    pub stack_ss: u16,
    /// Initial SP.
    pub stack_sp: u16,
    /// The program bytes.
    pub code: Vec<u8>,
}

/// A multiboot v1 kernel: an ELF32 i386 executable with a multiboot header, loaded at 1 MiB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernel {
    /// Short name (used by tests and the CLI).
    pub name: &'static str,
    /// One line saying what the kernel tests.
    pub description: &'static str,
    /// The ELF file.
    pub elf: Vec<u8>,
}
