//! The protected-mode test kernels of `guest_images::kernels()`, booted as multiboot kernels
//! under QEMU (`-kernel FILE`) and under bt86 (`bt86 run --kernel FILE`, the CLI binary).
//!
//! A kernel passes when it exits through isa-debug-exit with 0 (exit status 1) and prints no
//! `not ok` line. bt86 must pass every check; under QEMU the checks listed in
//! [`QEMU_KNOWN_WRONG`] (where QEMU's TCG, as of 7.2, disagrees with the SDM) may fail. Set
//! `BT86_REQUIRE_QEMU=1` to make a missing QEMU an error rather than a skipped check.

mod common;
#[path = "common/kernels.rs"]
#[macro_use]
mod kernels;

use std::time::Duration;

use common::KnownWrong;

/// More instructions than any kernel needs.
const MAX_STEPS: &str = "500000000";
/// How long a bt86 run may take before it is killed.
const BT86_TIMEOUT: Duration = Duration::from_secs(120);

/// Where QEMU's TCG (7.2) disagrees with the SDM: kernel, check-name prefixes, why.
const QEMU_KNOWN_WRONG: &[KnownWrong] = &[
    (
        "pm-descriptors",
        &["read through a null ds", "stosb through a null es"],
        "QEMU's TCG does not check for a null segment on memory accesses, so a read through a \
         null DS or a STOSB through a null ES goes on instead of raising #GP(0) (SDM Vol. 3A, \
         3.4.2: a null selector in DS/ES/FS/GS 'causes a #GP when used to access memory'; Vol. 2, \
         MOV and STOS, Protected Mode Exceptions)",
    ),
    (
        "pm-descriptors",
        &[
            "write through ds = readable code",
            "write through a cs override",
            "write through ds = read-only data",
            "inc through ds = read-only data",
            "faulting writes left memory alone",
            "read through cs = execute-only code",
        ],
        "QEMU's TCG does not check segment types on memory accesses: writes to code and \
         read-only data segments and reads through an execute-only CS succeed instead of raising \
         #GP(0) (SDM Vol. 3A, 5.5 and 3.4.5.1; Vol. 2, MOV, Protected Mode Exceptions: 'If the \
         destination operand is in a non-writable segment')",
    ),
    (
        "pm-descriptors",
        &[
            "byte-granular limit fffh: dword at 0xffd",
            "byte-granular limit fffh: byte at 0x1000",
            "4k-granular limit 0: dword at 0xffd",
            "4k-granular limit 0: byte at 0x1000",
            "4k-granular limit 1: dword at 0x1ffd",
            "4k-granular limit 1: byte at 0x2000",
            "expand-down b=0: 1-byte read at 0xfff",
            "expand-down b=0: 1-byte read at 0x0 ",
            "expand-down b=0: 4-byte read at 0xfffe",
            "expand-down b=0: 1-byte read at 0x10000",
            "expand-down b=1: 4-byte read at 0xffc",
            "expand-down b=1: 4-byte read at 0xfffffffe",
            "expand-down b=1 g=1 limit 0: 1-byte read at 0xfff",
        ],
        "QEMU's TCG does not check segment limits on data accesses in protected mode, so \
         accesses beyond a byte- or 4K-granular limit, or outside an expand-down segment's \
         range, go on instead of raising #GP(0) (SDM Vol. 3A, 5.3 'Limit Checking')",
    ),
    (
        "pm-descriptors",
        &["far jmp sets the accessed bit of cs"],
        "QEMU sets a descriptor's accessed bit when it loads DS, ES, FS, GS or SS, but not when \
         a far JMP loads CS (SDM Vol. 3A, 3.4.5.1: the processor sets the accessed bit whenever \
         it loads a segment selector for the segment into a segment register)",
    ),
    (
        "pm-paging",
        &[
            "supervisor read, reserved bits in a 4m pde: error code",
            "supervisor write, reserved bits in a 4m pde: error code",
            "user read, reserved bits in a 4m pde: error code",
            "user write, reserved bits in a 4m pde: error code",
        ],
        "QEMU 7.2 reports a reserved-bit page fault with P = 0 (error code 8h, Ah, Ch, Eh) where \
         the entries are present and P must be 1 (SDM Vol. 3A, 4.7: P is 0 only when a P flag \
         was 0 in an entry used for the translation; RSVD faults are 9h, Bh, Dh, Fh)",
    ),
    (
        "pm-v86",
        &["word read at ds:ffff in virtual-8086 mode"],
        "QEMU's TCG does not check the 64 KiB segment limit in virtual-8086 mode: a word read at \
         offset FFFFh goes on instead of raising #GP(0) (SDM Vol. 3A, 20.1.1; Vol. 2, MOV, \
         Virtual-8086 Mode Exceptions)",
    ),
    (
        "pm-exceptions",
        &["#UD with the #UD gate not present: error code"],
        "QEMU leaves the EXT bit clear in the #NP error code when the not-present gate was \
         reached while delivering an exception (#UD): 32h instead of 33h (SDM Vol. 3A, 6.13: EXT \
         is set when the exception occurred during delivery of an event external to the \
         program, such as an earlier exception)",
    ),
    (
        "pm-exceptions",
        &["lock mov [mem], eax"],
        "QEMU executes MOV with a LOCK prefix instead of raising #UD (SDM Vol. 2, LOCK: #UD if \
         the instruction is not one of ADD, ADC, AND, BTC, BTR, BTS, CMPXCHG, CMPXCHG8B, DEC, \
         INC, NEG, NOT, OR, SBB, SUB, XOR, XADD, XCHG with a memory destination)",
    ),
    (
        "pm-exceptions",
        &["near jmp to offset 100000h beyond a cs limit"],
        "QEMU's TCG does not check the CS limit on a near JMP: the jump goes through instead of \
         raising #GP(0) (SDM Vol. 2, JMP: #GP(0) if the target operand is beyond the code \
         segment limits); the kernel puts INT 30h where such a jump lands",
    ),
    (
        "pm-exceptions",
        &["push below an expand-down stack", "ss-relative read below", "ss-relative dword read straddling"],
        "QEMU's TCG does not check SS limits: pushes and SS-relative reads outside an \
         expand-down stack segment go on instead of raising #SS(0) (SDM Vol. 3A, 5.3 and \
         6.15 'Interrupt 12—Stack Fault Exception')",
    ),
    (
        "pm-control-registers",
        &[],
        "QEMU 7.2 does not raise #GP(0) for MOV to CR0 with NW = 1 and CD = 0, nor with PG = 1 \
         and PE = 0 (SDM Vol. 2, MOV—Move to/from Control Registers, Protected Mode \
         Exceptions: 'an invalid bit combination in CR0'); it drops to real mode with paging \
         on, and the kernel stops at once on the path that only runs without the #GP",
    ),
];

/// Boots kernel `name` under QEMU and judges the run, allowing for [`QEMU_KNOWN_WRONG`].
fn passes_in_qemu(name: &str) {
    kernels::passes_in_qemu(name, QEMU_KNOWN_WRONG, &[]);
}

/// Boots kernel `name` with `bt86 run --kernel` and requires every check to pass.
fn passes_in_bt86(name: &str, engine: &str) {
    kernels::passes_in_bt86_engine(env!("CARGO_BIN_EXE_bt86"), name, MAX_STEPS, BT86_TIMEOUT, engine);
}

kernel_tests! {
    lockstep;
    pm_descriptors => "pm-descriptors",
    pm_rings => "pm-rings",
    pm_tasks => "pm-tasks",
    pm_paging => "pm-paging",
    pm_v86 => "pm-v86",
    pm_iobitmap => "pm-iobitmap",
    pm_exceptions => "pm-exceptions",
    pm_control_registers => "pm-control-registers",
    pm_fpu => "pm-fpu",
}

#[test]
fn every_kernel_is_tested_here() {
    let names: Vec<&str> =
        guest_images::kernels().iter().map(|k| k.name).filter(|n| n.starts_with("pm-")).collect();
    assert_eq!(names, NAMES);
}

/// The ELF and multiboot headers a loader relies on (ELF: System V ABI; multiboot: Multiboot
/// Specification 0.6.96, 3.1).
#[test]
fn kernels_are_elf32_i386_files_with_a_multiboot_header() {
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    for kernel in guest_images::kernels() {
        let f = &kernel.elf;
        let name = kernel.name;
        assert_eq!(&f[..7], b"\x7fELF\x01\x01\x01", "{name}: ELF32, little-endian, version 1");
        assert_eq!(u16_at(f, 16), 2, "{name}: ET_EXEC");
        assert_eq!(u16_at(f, 18), 3, "{name}: EM_386");
        let (phoff, phnum) = (u32_at(f, 28) as usize, u16_at(f, 44) as usize);
        assert!((1..=2).contains(&phnum), "{name}: one or two program headers");
        let entry = u32_at(f, 24);
        let mut entry_loaded = false;
        for i in 0..phnum {
            let ph = phoff + 32 * i;
            assert_eq!(u32_at(f, ph), 1, "{name}: PT_LOAD");
            let (offset, vaddr, filesz, memsz) =
                (u32_at(f, ph + 4), u32_at(f, ph + 8), u32_at(f, ph + 16), u32_at(f, ph + 20));
            assert!(vaddr >= 0x10_0000, "{name}: loaded at or above 1 MiB");
            assert!(offset as usize + filesz as usize <= f.len() && memsz >= filesz, "{name}: segment sizes");
            entry_loaded |= (vaddr..vaddr + filesz).contains(&entry);
        }
        assert!(entry_loaded, "{name}: the entry point lies in a loaded segment");
        let header = (0..8192.min(f.len()) - 12)
            .step_by(4)
            .find(|&at| u32_at(f, at) == 0x1BAD_B002)
            .unwrap_or_else(|| panic!("{name}: no multiboot header in the first 8 KiB"));
        let (magic, flags, checksum) = (u32_at(f, header), u32_at(f, header + 4), u32_at(f, header + 8));
        assert_eq!(magic.wrapping_add(flags).wrapping_add(checksum), 0, "{name}: checksum");
        assert!(flags == 0x0000_0003 || flags == 0x0001_0003, "{name}: flags {flags:#x}");
        if flags & 0x0001_0000 != 0 {
            assert_eq!(u32_at(f, header + 28), entry, "{name}: entry_addr = e_entry");
        }
    }
}
