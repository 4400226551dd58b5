//! Self-checking 32-bit protected-mode kernels, booted as multiboot v1 ELF kernels.
//!
//! Each kernel takes over the machine with the runtime of [`rt`] (its own GDT, IDT, TSS and
//! stacks), then runs many checks. A check computes a value, compares it with a constant and
//! prints `ok N - name` or `not ok N - name (got …, want …)` on the debug console (port
//! 0xE9); the kernel ends with the TAP plan `1..N` and writes 0 (all passed) or 1 to
//! isa-debug-exit (port 0xF4), so the exit status is 1 for a pass and 3 for a failure, in bt86
//! and in QEMU alike.
//!
//! The expected constants are worked out by hand from the Intel SDM, Vol. 3A (chapter 3,
//! segmentation; 4, paging; 5, protection; 6, interrupts and exceptions; 7, task management;
//! 20, virtual-8086 mode) and Vol. 2 (each instruction's Operation and Protected Mode
//! Exceptions sections), with the reasoning in comments where it is not obvious; none was
//! taken from an emulator.
//!
//! The checks of a kernel are grouped in sections: an unexpected exception in one is
//! reported as a failed check and the kernel goes on with the next section.

mod descriptors;
mod exceptions;
mod fpu;
mod fpu_vectors;
mod iobitmap;
mod paging;
mod rings;
pub(crate) mod rt;
mod tasks;
mod v86;

use crate::Kernel;

/// Emits the checks of one kernel.
type Body = fn(&mut rt::Program) -> crate::asm::Asm;

/// The kernels: name, description, checks.
const KERNELS: [(&str, &str, Body); 9] = [
    (
        "pm-descriptors",
        "segment loads and their error codes, limits, expand-down, LAR/LSL/VERR/VERW, ARPL, \
         SGDT/SIDT/SLDT/STR/SMSW, LDT, accessed bit",
        descriptors::run,
    ),
    (
        "pm-rings",
        "ring 0 <-> 3 through IRET, call gates with parameters, interrupt and trap gates, RETF; \
         conforming code, segment nulling, privileged and IOPL-sensitive instructions",
        rings::run,
    ),
    (
        "pm-tasks",
        "hardware task switches: JMP to a TSS, CALL and INT through task gates, IRET back, an \
         exception through a task gate, a 16-bit TSS, #TS/#NP/#GP for invalid switches, LTR",
        tasks::run,
    ),
    (
        "pm-paging",
        "4 KiB and 4 MiB pages, aliases, every #PF error code with CR2, instruction fetches, \
         accessed and dirty bits, CR0.WP, INVLPG / CR3 / CR4.PGE invalidation",
        paging::run,
    ),
    (
        "pm-v86",
        "virtual-8086 mode: entry by IRET, real-mode addressing, IOPL-sensitive instructions with \
         IOPL 0 and 3, INT n to a ring-0 monitor that IRETs back, CPL-3 and PM-only instructions",
        v86::run,
    ),
    (
        "pm-iobitmap",
        "the TSS I/O permission bitmap at CPL 3 and in virtual-8086 mode: allowed and denied \
         ports, multi-byte accesses, string I/O, CPL <= IOPL, the TSS limit and the map base",
        iobitmap::run,
    ),
    (
        "pm-exceptions",
        "double faults, IDT error codes and the EXT bit, #SS on expand-down stacks, #UD, #NM, \
         fault and trap EIPs, single step, code segment limits",
        exceptions::run,
    ),
    (
        "pm-control-registers",
        "MOV to CR0 with NW set and CD clear, and with PG set and PE clear: #GP(0)",
        paging::control_registers,
    ),
    (
        "pm-fpu",
        "the x87 FPU: arithmetic in every rounding and precision mode, conversions, comparisons, \
         the register stack, FSTENV/FSAVE/FRSTOR, #MF and #NM, FPREM, constants, transcendentals",
        fpu::run,
    ),
];

/// Every protected-mode kernel, as a multiboot ELF file.
pub fn kernels() -> Vec<Kernel> {
    KERNELS
        .iter()
        .map(|&(name, description, body)| Kernel {
            name,
            description,
            elf: rt::build_kernel(name, body)
                .unwrap_or_else(|e| panic!("kernel {name} does not assemble: {e}")),
        })
        .collect()
}
