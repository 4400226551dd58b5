//! Boot paths end to end (`bt86::boot`): Multiboot kernels built here byte by byte (ELF32 and
//! a.out-kludge headers written by hand, the code assembled with iced-x86), the BIOS reset path
//! with tiny hand-made ROMs, triple fault with `stop` and `reset`, and the refusal of bad files.
//!
//! Every Multiboot image (and ROM) that runs to an end in bt86 also runs under
//! `qemu-system-i386 -kernel` (or `-bios`) when QEMU is on PATH, and must print the same and
//! exit the same way there. Set `BT86_REQUIRE_QEMU=1` to make a missing QEMU an error.
//!
//! The self-checking kernel reports through isa-debug-exit: it writes a bit mask of the checks
//! that failed (0 = all passed, exit status 1). Bits: 1 EAX is not 0x2BADB002; 2 the memory
//! fields are missing or wrong; 4 no command line; 8 no usable memory-map entry for 1 MiB on;
//! 16 the bss is not zero; 32 the stack does not work after reloading the segment registers.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "common/console.rs"]
mod console;
#[path = "common/engines.rs"]
mod engines;

use console::Console;

use bt86::boot::{bios, multiboot, BootError};
use bt86::machine::{Exit, Machine, TripleFaultAction};
use emu_core::state::{cr0, gpr};
use emu_core::SegReg;
use iced_x86::code_asm::*;

/// Guest RAM for these tests (and `-m 16` for QEMU, so both report the same mem_upper).
const RAM: u64 = 16 << 20;
/// More instructions than any of these guests needs.
const STEPS: u64 = 10_000_000;
/// How long a QEMU run may take before it is killed.
const QEMU_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the test kernels load: 1 MiB, as most kernels do.
const BASE: u32 = 0x10_0000;
/// Offset of the code in the image (after the ELF and Multiboot headers).
const CODE: u32 = 0x100;
/// Offset of the data (the message) in the image.
const DATA: u32 = 0x800;
/// Size of the file part of the image; bss follows up to `BASE + IMAGE_MEM`.
const FILE_SIZE: u32 = 0x1000;
/// Bytes in memory, file plus bss.
const IMAGE_MEM: u32 = 0x3000;
/// A dword in the bss the kernel checks is zero.
const BSS_VAR: u32 = BASE + FILE_SIZE + 0x10;
/// The kernel's stack top (in the bss).
const STACK_TOP: u32 = BASE + IMAGE_MEM;

// ------------------------------------------------------------------ machines and files

fn machine(ram: u64) -> (Machine, Console) {
    let console = Console::default();
    let m = Machine::new(ram, Box::new(console.clone())).expect("guest RAM");
    (m, console)
}

/// A file in a scratch directory of its own (per process and file name, so that tests running
/// in parallel never remove each other's directory), removed with it on drop.
struct Scratch(PathBuf);

/// Where [`Scratch::new`] puts file `name`.
fn scratch_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("bt86-boot-{}-{name}", std::process::id())).join(name)
}

impl Scratch {
    fn new(name: &str, bytes: &[u8]) -> Scratch {
        let p = scratch_path(name);
        std::fs::create_dir_all(p.parent().expect("a parent")).expect("scratch dir");
        std::fs::write(&p, bytes).expect("write scratch file");
        Scratch(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn str(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = self.0.parent().map(std::fs::remove_dir);
    }
}

fn bt86(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bt86")).args(args).output().expect("bt86 runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ------------------------------------------------------------------ guest code

/// Prints the NUL-terminated string at ESI on the debug console (clobbers AL, ESI).
fn emit_print(a: &mut CodeAssembler, print: &mut CodeLabel) -> Result<(), IcedError> {
    let mut done = a.create_label();
    a.set_label(print)?;
    a.lodsb()?;
    a.test(al, al)?;
    a.jz(done)?;
    a.out(0xE9u32, al)?;
    a.jmp(*print)?;
    a.set_label(&mut done)?;
    a.ret()
}

/// The self-checking kernel (see the file header), assembled to run at `BASE + CODE`.
///
/// It begins with a far jump through selector 0x08 and reloads DS/ES/SS with 0x10, so it also
/// checks that the GDT the boot loader left behind has those flat segments.
fn checking_kernel_code(expect_upper_kib: u32) -> Vec<u8> {
    let entry = BASE + CODE;
    // jmp far 0008:entry+7 (EA imm32 imm16), then the rest at entry + 7.
    let mut code = vec![0xEA];
    code.extend_from_slice(&(entry + 7).to_le_bytes());
    code.extend_from_slice(&0x08u16.to_le_bytes());
    let body = || -> Result<Vec<u8>, IcedError> {
        let mut a = CodeAssembler::new(32)?;
        let mut print = a.create_label();
        a.mov(edx, eax)?; // keep EAX across the segment reloads
        a.mov(ax, 0x10)?;
        a.mov(ds, ax)?;
        a.mov(es, ax)?;
        a.mov(ss, ax)?;
        a.mov(esp, STACK_TOP)?;
        a.xor(edi, edi)?;

        let mut ok1 = a.create_label();
        a.cmp(edx, 0x2BAD_B002)?;
        a.je(ok1)?;
        a.or(edi, 1)?;
        a.set_label(&mut ok1)?;

        let (mut fail2, mut ok2) = (a.create_label(), a.create_label());
        a.test(dword_ptr(ebx), 1)?;
        a.jz(fail2)?;
        a.mov(eax, dword_ptr(ebx + 4))?;
        a.cmp(eax, 600)?;
        a.jb(fail2)?;
        a.cmp(eax, 640)?;
        a.ja(fail2)?;
        // Firmware may keep a little memory at the top of RAM for itself (SeaBIOS under QEMU
        // keeps 128 KiB): up to 256 KiB less than all of extended memory is fine.
        a.mov(eax, dword_ptr(ebx + 8))?;
        a.cmp(eax, expect_upper_kib - 256)?;
        a.jb(fail2)?;
        a.cmp(eax, expect_upper_kib)?;
        a.jbe(ok2)?;
        a.set_label(&mut fail2)?;
        a.or(edi, 2)?;
        a.set_label(&mut ok2)?;

        let (mut fail4, mut ok4) = (a.create_label(), a.create_label());
        a.test(dword_ptr(ebx), 4)?;
        a.jz(fail4)?;
        a.mov(esi, dword_ptr(ebx + 16))?;
        a.call(print)?;
        a.mov(al, u32::from(b'\n'))?;
        a.out(0xE9u32, al)?;
        a.jmp(ok4)?;
        a.set_label(&mut fail4)?;
        a.or(edi, 4)?;
        a.set_label(&mut ok4)?;

        let (mut fail8, mut ok8, mut walk, mut next) =
            (a.create_label(), a.create_label(), a.create_label(), a.create_label());
        a.test(dword_ptr(ebx), 0x40)?;
        a.jz(fail8)?;
        a.mov(esi, dword_ptr(ebx + 48))?;
        a.mov(ecx, dword_ptr(ebx + 44))?;
        a.add(ecx, esi)?;
        a.set_label(&mut walk)?;
        a.cmp(esi, ecx)?;
        a.jae(fail8)?;
        a.cmp(dword_ptr(esi + 4), 0x10_0000)?;
        a.jne(next)?;
        a.cmp(dword_ptr(esi + 8), 0)?;
        a.jne(next)?;
        a.cmp(dword_ptr(esi + 20), 1)?;
        a.jne(next)?;
        a.cmp(dword_ptr(esi + 12), 14 << 20)?;
        a.jae(ok8)?;
        a.set_label(&mut next)?;
        a.add(esi, dword_ptr(esi))?;
        a.add(esi, 4)?;
        a.jmp(walk)?;
        a.set_label(&mut fail8)?;
        a.or(edi, 8)?;
        a.set_label(&mut ok8)?;

        let mut ok16 = a.create_label();
        a.cmp(dword_ptr(BSS_VAR), 0)?;
        a.je(ok16)?;
        a.or(edi, 16)?;
        a.set_label(&mut ok16)?;

        // The stack works: push and pop through the reloaded SS.
        let mut ok32 = a.create_label();
        a.push(0x1234_5678)?;
        a.pop(eax)?;
        a.cmp(eax, 0x1234_5678)?;
        a.je(ok32)?;
        a.or(edi, 32)?;
        a.set_label(&mut ok32)?;

        a.mov(esi, BASE + DATA)?;
        a.call(print)?;
        a.mov(eax, edi)?;
        a.out(0xF4u32, al)?;
        let mut stop = a.create_label();
        a.set_label(&mut stop)?;
        a.cli()?;
        a.hlt()?;
        a.jmp(stop)?;
        emit_print(&mut a, &mut print)?;
        a.assemble(u64::from(entry + 7))
    };
    code.extend(body().expect("assemble the kernel"));
    code
}

/// A kernel that prints "boot" and triple-faults: it loads an empty IDT, then runs UD2.
fn triple_fault_kernel_code() -> Vec<u8> {
    let build = || -> Result<Vec<u8>, IcedError> {
        let mut a = CodeAssembler::new(32)?;
        let mut print = a.create_label();
        a.mov(esi, BASE + DATA)?;
        a.call(print)?;
        a.lidt(ptr(BASE + DATA + 0x20))?; // six zero bytes: limit 0, base 0
        a.ud2()?;
        emit_print(&mut a, &mut print)?;
        a.assemble(u64::from(BASE + CODE))
    };
    build().expect("assemble the kernel")
}

/// The Multiboot header: magic, flags, checksum, then the address fields when bit 16 is set.
fn multiboot_header(flags: u32, addrs: Option<[u32; 5]>) -> Vec<u8> {
    let mut h = Vec::new();
    for v in [multiboot::HEADER_MAGIC, flags, 0u32.wrapping_sub(multiboot::HEADER_MAGIC.wrapping_add(flags))]
    {
        h.extend_from_slice(&v.to_le_bytes());
    }
    for v in addrs.into_iter().flatten() {
        h.extend_from_slice(&v.to_le_bytes());
    }
    h
}

/// The file part of an image: `FILE_SIZE` bytes with `header` at `header_off`, `code` at
/// `CODE` and `message` (NUL-terminated) at `DATA`.
fn image_bytes(header_off: usize, header: &[u8], code: &[u8], message: &str) -> Vec<u8> {
    let mut f = vec![0u8; FILE_SIZE as usize];
    f[header_off..header_off + header.len()].copy_from_slice(header);
    assert!(code.len() <= (DATA - CODE) as usize, "code overruns the data");
    f[CODE as usize..][..code.len()].copy_from_slice(code);
    f[DATA as usize..][..message.len()].copy_from_slice(message.as_bytes());
    f
}

/// Parameters of the hand-written ELF file.
#[derive(Clone, Copy)]
struct Elf {
    /// EI_CLASS (1 = ELF32).
    class: u8,
    /// e_machine (3 = i386).
    machine: u16,
    /// p_vaddr of the one PT_LOAD segment (p_paddr is `BASE`).
    vaddr: u32,
    /// p_paddr.
    paddr: u32,
    /// e_entry.
    entry: u32,
}

impl Default for Elf {
    fn default() -> Elf {
        Elf { class: 1, machine: 3, vaddr: BASE, paddr: BASE, entry: BASE + CODE }
    }
}

/// An ELF32 executable: the file header and one PT_LOAD program header (the whole file at
/// `paddr`, bss after it), the Multiboot header (flags `mb_flags`) at 0x60.
fn elf_kernel(e: Elf, mb_flags: u32, code: &[u8], message: &str) -> Vec<u8> {
    let mut f = image_bytes(0x60, &multiboot_header(mb_flags, None), code, message);
    let mut h = Vec::new();
    h.extend_from_slice(&[0x7F, b'E', b'L', b'F', e.class, 1, 1, 0]);
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&2u16.to_le_bytes()); // e_type: ET_EXEC
    h.extend_from_slice(&e.machine.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes()); // e_version
    h.extend_from_slice(&e.entry.to_le_bytes());
    h.extend_from_slice(&52u32.to_le_bytes()); // e_phoff
    h.extend_from_slice(&0u32.to_le_bytes()); // e_shoff
    h.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    for v in [52u16, 32, 1, 40, 0, 0] {
        // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
        h.extend_from_slice(&v.to_le_bytes());
    }
    assert_eq!(h.len(), 52);
    // PT_LOAD: offset 0, vaddr, paddr, filesz, memsz, flags RWX, align 4 KiB.
    for v in [1u32, 0, e.vaddr, e.paddr, FILE_SIZE, IMAGE_MEM, 7, 0x1000] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    f[..h.len()].copy_from_slice(&h);
    f
}

/// A flat image with the a.out kludge: header at offset 0 loaded at `BASE`, the whole file
/// loaded, bss up to `BASE + IMAGE_MEM`, entry at `BASE + CODE`.
fn aout_kernel(code: &[u8], message: &str) -> Vec<u8> {
    aout_kernel_with([BASE, BASE, BASE + FILE_SIZE, BASE + IMAGE_MEM, BASE + CODE], code, message)
}

fn aout_kernel_with(addrs: [u32; 5], code: &[u8], message: &str) -> Vec<u8> {
    image_bytes(0, &multiboot_header(0x0001_0003, Some(addrs)), code, message)
}

const MB_FLAGS: u32 = 0x3; // page-align modules, memory information
const UPPER_KIB: u32 = ((RAM - 0x10_0000) / 1024) as u32;

fn elf_checking_kernel() -> Vec<u8> {
    elf_kernel(Elf::default(), MB_FLAGS, &checking_kernel_code(UPPER_KIB), "multiboot elf: data ok\n")
}

fn aout_checking_kernel() -> Vec<u8> {
    aout_kernel(&checking_kernel_code(UPPER_KIB), "multiboot a.out: data ok\n")
}

fn triple_fault_kernel() -> Vec<u8> {
    aout_kernel(&triple_fault_kernel_code(), "boot\n")
}

// ------------------------------------------------------------------ QEMU

/// `qemu-system-i386` if it is on PATH; without it QEMU checks are skipped with a note, or fail
/// when `BT86_REQUIRE_QEMU=1`.
fn qemu() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join("qemu-system-i386")).find(|p| p.is_file())
    });
    if found.is_none() {
        let why = "qemu-system-i386 is not on PATH (Debian: apt install qemu-system-x86)";
        if std::env::var("BT86_REQUIRE_QEMU").as_deref() == Ok("1") {
            panic!("BT86_REQUIRE_QEMU=1 but {why}");
        }
        println!("QEMU checks skipped: {why}");
    }
    found
}

/// Runs QEMU with the debug console on stdout and isa-debug-exit at 0xF4, plus `args`. Kills
/// it once the output contains `stop_at` (guests that never exit) or after [`QEMU_TIMEOUT`];
/// returns the exit status (`None` when killed) and the output.
fn run_qemu(qemu: &Path, args: &[&str], stop_at: Option<&str>) -> (Option<i32>, String) {
    let mut child = Command::new(qemu)
        .args(["-accel", "tcg", "-display", "none", "-nodefaults", "-m", "16"])
        .args(["-debugcon", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=4"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start qemu-system-i386");
    let output = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = {
        let output = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                output.lock().expect("output lock").extend_from_slice(&chunk[..n]);
            }
        })
    };
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for qemu") {
            break status.code();
        }
        let seen = stop_at
            .is_some_and(|s| String::from_utf8_lossy(&output.lock().expect("output lock")).contains(s));
        let timed_out = start.elapsed() > QEMU_TIMEOUT;
        if seen || timed_out {
            let _ = child.kill();
            let _ = child.wait();
            assert!(seen, "QEMU {args:?} timed out after {QEMU_TIMEOUT:?}");
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = reader.join();
    let output = String::from_utf8_lossy(&output.lock().expect("output lock")).into_owned();
    (status, output)
}

/// Boots `file` as a Multiboot kernel under QEMU (no reboot: a triple fault ends the run).
fn qemu_kernel(qemu: &Path, file: &Scratch, append: Option<&str>) -> (Option<i32>, String) {
    let mut args = vec!["-no-reboot", "-kernel", file.str()];
    if let Some(a) = append {
        args.extend(["-append", a]);
    }
    run_qemu(qemu, &args, None)
}

// ------------------------------------------------------------------ Multiboot: running kernels

/// Loads `image` through the file API with `append`, runs it in bt86 and returns the exit and
/// output; when QEMU is there, runs the same file under `qemu -kernel` and checks that it
/// prints the same and exits with the same status.
fn run_kernel_everywhere(name: &str, image: &[u8], append: Option<&str>) -> (Exit, String) {
    let file = Scratch::new(name, image);
    let mut runs = Vec::new();
    for e in engines::engines_with_lockstep() {
        let (mut m, console) = machine(RAM);
        m.engine = engines::engine(e);
        // Garbage where the bss goes: the loader must zero it.
        for a in (BASE + FILE_SIZE..BASE + IMAGE_MEM).step_by(4) {
            m.cpu.mem.write_u32(a, 0xDEAD_BEEF);
        }
        multiboot::load(&mut m, file.path(), append).expect("the kernel loads");
        let exit = m.run(STEPS);
        runs.push((e, exit, console.text(), m.cpu.state.retired));
    }
    let (_, exit, output, retired) = runs[0].clone();
    for (e, x, o, r) in &runs[1..] {
        assert_eq!((x, o, r), (&exit, &output, &retired), "{name}: engine {e} differs from the interpreter");
    }
    if let Some(q) = qemu() {
        let (status, mut q_output) = qemu_kernel(&q, &file, append);
        if append.is_none() {
            // QEMU's command line is "<file> <append>" even when there is nothing to append;
            // bt86 (like GRUB) leaves out the space.
            q_output = q_output.replacen(" \n", "\n", 1);
        }
        assert_eq!(q_output, output, "{name}: QEMU and bt86 print differently");
        assert_eq!(status, Some(exit.status()), "{name}: QEMU and bt86 exit differently; output:\n{output}");
    }
    (exit, output)
}

#[test]
fn elf_kernel_gets_the_multiboot_state_and_information() {
    let (exit, output) = run_kernel_everywhere("elf.bin", &elf_checking_kernel(), Some("hello world"));
    let file = scratch_path("elf.bin");
    assert_eq!(output, format!("{} hello world\nmultiboot elf: data ok\n", file.display()));
    assert_eq!(exit, Exit::DebugExit { value: 0 }, "failed checks (see the file header); output:\n{output}");
}

#[test]
fn aout_kludge_kernel_gets_the_multiboot_state_and_information() {
    let (exit, output) = run_kernel_everywhere("aout.bin", &aout_checking_kernel(), None);
    let file = scratch_path("aout.bin");
    assert_eq!(output, format!("{}\nmultiboot a.out: data ok\n", file.display()));
    assert_eq!(exit, Exit::DebugExit { value: 0 }, "failed checks (see the file header); output:\n{output}");
}

#[test]
fn entry_state_is_the_one_the_specification_defines() {
    let (mut m, _) = machine(RAM);
    multiboot::load_bytes(&mut m, &elf_checking_kernel(), "k", "k").unwrap();
    let s = &m.cpu.state;
    assert_eq!(s.regs[gpr::EAX], 0x2BAD_B002);
    assert_eq!(s.regs[gpr::EBX], multiboot::INFO_ADDR);
    assert_eq!(s.eip, BASE + CODE);
    assert_eq!(s.eflags(), 0x2);
    assert_eq!(s.cr0() & (cr0::PE | cr0::PG), cr0::PE);
    assert!(s.a20 && s.cpl == 0);
    let code = s.seg(SegReg::Cs);
    assert_eq!((code.selector, code.base, code.limit, code.attrs), (0x08, 0, u32::MAX, 0xC09B));
    for r in [SegReg::Ds, SegReg::Es, SegReg::Fs, SegReg::Gs, SegReg::Ss] {
        let d = s.seg(r);
        assert_eq!((d.selector, d.base, d.limit, d.attrs), (0x10, 0, u32::MAX, 0xC093), "{}", r.name());
    }
    // The GDT in memory holds exactly the descriptors the caches were filled from.
    assert_eq!((s.gdtr.base, s.gdtr.limit), (multiboot::GDT_ADDR, 23));
    let gdt = |i: u32| {
        u64::from(m.cpu.mem.read_u32(multiboot::GDT_ADDR + 8 * i))
            | u64::from(m.cpu.mem.read_u32(multiboot::GDT_ADDR + 8 * i + 4)) << 32
    };
    assert_eq!([gdt(0), gdt(1), gdt(2)], [0, 0x00CF_9B00_0000_FFFF, 0x00CF_9300_0000_FFFF]);
    assert_eq!(s.idtr.limit, 0);
    // The information structure: flags, memory, command line, memory map, loader name.
    let mem = &m.cpu.mem;
    let info = multiboot::INFO_ADDR;
    assert_eq!(mem.read_u32(info), 1 | 4 | 0x40 | 0x200);
    assert_eq!((mem.read_u32(info + 4), mem.read_u32(info + 8)), (639, UPPER_KIB));
    let c_string = |addr: u32| {
        let bytes: Vec<u8> = (addr..).map(|a| mem.read_u8(a)).take_while(|&b| b != 0).collect();
        String::from_utf8(bytes).unwrap()
    };
    assert_eq!(c_string(mem.read_u32(info + 16)), "k");
    assert_eq!(c_string(mem.read_u32(info + 64)), "bt86");
    let (len, addr) = (mem.read_u32(info + 44), mem.read_u32(info + 48));
    let entries: Vec<(u64, u64, u32)> = (0..len / 24)
        .map(|i| {
            let e = addr + 24 * i;
            assert_eq!(mem.read_u32(e), 20);
            let q = |o| u64::from(mem.read_u32(e + o)) | u64::from(mem.read_u32(e + o + 4)) << 32;
            (q(4), q(12), mem.read_u32(e + 20))
        })
        .collect();
    assert_eq!(entries, vec![(0, 0x9_FC00, 1), (0x9_FC00, 0x6_0400, 2), (0x10_0000, RAM - 0x10_0000, 1)]);
}

#[test]
fn elf_entry_point_is_translated_from_virtual_to_physical() {
    // Linked at 3 GiB, loaded at 1 MiB: e_entry is virtual; the code itself uses physical
    // addresses (paging is off), so it runs only if the entry was translated.
    let e = Elf { vaddr: 0xC010_0000, entry: 0xC010_0000 + CODE, ..Elf::default() };
    let image = elf_kernel(e, MB_FLAGS, &checking_kernel_code(UPPER_KIB), "high-half ok\n");
    let (mut m, console) = machine(RAM);
    multiboot::load_bytes(&mut m, &image, "high", "high").unwrap();
    assert_eq!(m.cpu.state.eip, BASE + CODE);
    assert_eq!(m.run(STEPS), Exit::DebugExit { value: 0 });
    assert_eq!(console.text(), "high\nhigh-half ok\n");
}

// ------------------------------------------------------------------ Multiboot: refusals

/// Loads `image` under the name "bad.elf" and returns the error, checking it names the file.
fn refuse(image: &[u8]) -> BootError {
    refuse_in(RAM, image)
}

fn refuse_in(ram: u64, image: &[u8]) -> BootError {
    let (mut m, _) = machine(ram);
    let before = m.cpu.state.clone();
    let e = multiboot::load_bytes(&mut m, image, "bad.elf", "bad.elf").expect_err("must be refused");
    assert!(e.to_string().starts_with("bad.elf: "), "the message names the file: {e}");
    assert_eq!(m.cpu.state, before, "a refused kernel leaves the CPU alone");
    assert!(m.boot.is_none());
    e
}

#[test]
fn missing_and_oversized_files_are_refused_by_name() {
    let (mut m, _) = machine(RAM);
    let e = multiboot::load(&mut m, Path::new("/nonexistent/kernel.elf"), None).unwrap_err();
    assert!(matches!(e, BootError::Unreadable { .. }), "{e}");
    assert!(e.to_string().starts_with("/nonexistent/kernel.elf: cannot read"), "{e}");

    let big = Scratch::new("big.elf", &vec![0u8; 2 << 20]);
    let (mut m, _) = machine(1 << 20);
    let e = multiboot::load(&mut m, big.path(), None).unwrap_err();
    assert!(matches!(e, BootError::TooLarge { size: 0x20_0000, ram: 0x10_0000, .. }), "{e}");
    assert!(e.to_string().contains(big.str()), "{e}");
}

#[test]
fn images_without_a_valid_header_are_refused() {
    let e = refuse(&vec![0x90; 16 << 10]);
    assert!(matches!(e, BootError::NoMultibootHeader { .. }), "{e}");
    // A header beyond the first 8192 bytes does not count.
    let mut late = vec![0u8; 12 << 10];
    late[8192..8204].copy_from_slice(&multiboot_header(0, None));
    assert!(matches!(refuse(&late), BootError::NoMultibootHeader { .. }));
    // Nor does one at an offset that is not a multiple of 4.
    let mut unaligned = vec![0u8; 4096];
    unaligned[0x62..0x6E].copy_from_slice(&multiboot_header(0, None));
    assert!(matches!(refuse(&unaligned), BootError::NoMultibootHeader { .. }));

    let mut bad = elf_checking_kernel();
    let checksum = u32::from_le_bytes(bad[0x68..0x6C].try_into().unwrap());
    bad[0x68..0x6C].copy_from_slice(&checksum.wrapping_add(1).to_le_bytes());
    let e = refuse(&bad);
    assert!(matches!(e, BootError::BadChecksum { offset: 0x60, sum: 1, .. }), "{e}");
    assert!(e.to_string().contains("bad checksum"), "{e}");
}

#[test]
fn headers_that_do_not_fit_are_refused() {
    // The a.out header needs 32 bytes: at 8176 it crosses the 8 KiB limit.
    let mut img = vec![0u8; 16 << 10];
    img[8176..8188].copy_from_slice(&multiboot_header(0x0001_0000, None));
    let e = refuse(&img);
    assert!(matches!(e, BootError::HeaderTruncated { offset: 8176, need: 32, .. }), "{e}");
    assert!(e.to_string().contains("first 8192 bytes"), "{e}");
    // The file ends inside the header.
    let img = multiboot_header(0x0001_0000, None);
    let e = refuse(&img);
    assert!(e.to_string().contains("the file ends first"), "{e}");
}

#[test]
fn required_features_bt86_lacks_are_refused_politely() {
    let video = elf_kernel(Elf::default(), MB_FLAGS | 4, &[0xF4], "");
    let e = refuse(&[video.clone(), vec![0; 64]].concat());
    assert!(matches!(e, BootError::VideoModeRequired { .. }), "{e}");
    assert!(e.to_string().contains("video mode"), "{e}");
    let unknown = elf_kernel(Elf::default(), MB_FLAGS | 0x8, &[0xF4], "");
    assert!(matches!(refuse(&unknown), BootError::UnsupportedFlags { bits: 0x8, .. }));
    // Optional bits (16–31) other than the a.out kludge are ignored.
    let (mut m, _) = machine(RAM);
    multiboot::load_bytes(&mut m, &elf_kernel(Elf::default(), MB_FLAGS | 0x8000_0000, &[0xF4], ""), "k", "")
        .expect("optional flags are ignored");
}

#[test]
fn files_that_are_not_elf32_i386_need_the_aout_kludge() {
    let mut flat = vec![0u8; 4096];
    flat[..12].copy_from_slice(&multiboot_header(MB_FLAGS, None));
    let e = refuse(&flat);
    assert!(matches!(e, BootError::NotElf32 { .. }), "{e}");
    assert!(e.to_string().contains("not an ELF file"), "{e}");
    let e = refuse(&elf_kernel(Elf { class: 2, ..Elf::default() }, MB_FLAGS, &[0xF4], ""));
    assert!(e.to_string().contains("ELF64"), "{e}");
    let e = refuse(&elf_kernel(Elf { machine: 62, ..Elf::default() }, MB_FLAGS, &[0xF4], ""));
    assert!(e.to_string().contains("not i386"), "{e}");
}

#[test]
fn segments_and_addresses_outside_ram_or_over_the_boot_area_are_refused() {
    let beyond = elf_kernel(
        Elf { paddr: 32 << 20, vaddr: 32 << 20, entry: (32 << 20) + CODE, ..Elf::default() },
        MB_FLAGS,
        &[],
        "",
    );
    let e = refuse(&beyond);
    assert!(matches!(e, BootError::OutsideRam { start: 0x200_0000, .. }), "{e}");
    assert!(e.to_string().contains("segment 0"), "{e}");
    // Straddling the end of RAM.
    let top = (RAM - 0x1000) as u32;
    let e =
        refuse(&elf_kernel(Elf { paddr: top, vaddr: top, entry: top, ..Elf::default() }, MB_FLAGS, &[], ""));
    assert!(matches!(e, BootError::OutsideRam { .. }), "{e}");
    let low =
        elf_kernel(Elf { paddr: 0x7000, vaddr: 0x7000, entry: 0x7100, ..Elf::default() }, MB_FLAGS, &[], "");
    let e = refuse(&low);
    assert!(matches!(e, BootError::OverlapsBootArea { .. }), "{e}");

    let code = [0xF4];
    let e = refuse(&aout_kernel_with([0x8000, 0x8000, 0, 0, 0x8100], &code, ""));
    assert!(matches!(e, BootError::OverlapsBootArea { .. }), "{e}");
    let e = refuse(&aout_kernel_with([BASE, BASE, 0, RAM as u32 + 0x1000, BASE + CODE], &code, ""));
    assert!(matches!(e, BootError::OutsideRam { .. }), "{e}");
    let e = refuse(&aout_kernel_with([BASE, BASE + 4, 0, 0, BASE + CODE], &code, ""));
    assert!(e.to_string().contains("load_addr 0x100004 is above header_addr"), "{e}");
    let e = refuse(&aout_kernel_with([BASE, BASE, BASE + 2 * FILE_SIZE, 0, BASE + CODE], &code, ""));
    assert!(matches!(e, BootError::BadAddresses { .. }), "{e}");
    let e = refuse(&aout_kernel_with([BASE, BASE, BASE + FILE_SIZE, BASE + 0x10, BASE + CODE], &code, ""));
    assert!(e.to_string().contains("bss_end_addr"), "{e}");
    let e = refuse(&aout_kernel_with([BASE, BASE, 0, 0, BASE + FILE_SIZE], &code, ""));
    assert!(matches!(e, BootError::EntryOutside { entry: 0x10_1000, .. }), "{e}");
    let e = refuse(&elf_kernel(Elf { entry: 0x50_0000, ..Elf::default() }, MB_FLAGS, &code, ""));
    assert!(matches!(e, BootError::EntryOutside { .. }), "{e}");

    let e = refuse_in(0x8000, &aout_kernel_with([0, 0, 0x1000, 0, 0x100], &code, ""));
    assert!(matches!(e, BootError::RamTooSmall { .. }), "{e}");
    let (mut m, _) = machine(RAM);
    let e = multiboot::load_bytes(&mut m, &aout_checking_kernel(), "k", &"x".repeat(9000)).unwrap_err();
    assert!(matches!(e, BootError::CmdlineTooLong { len: 9000, .. }), "{e}");
}

// ------------------------------------------------------------------ triple fault

#[test]
fn triple_fault_stops_or_resets_and_reenters_the_kernel() {
    for e in engines::engines_with_lockstep() {
        triple_fault_stops_or_resets_and_reenters_the_kernel_with(e);
    }
}

fn triple_fault_stops_or_resets_and_reenters_the_kernel_with(e: bt86::engine::EngineKind) {
    let image = triple_fault_kernel();
    let (mut m, console) = machine(RAM);
    m.engine = engines::engine(e);
    multiboot::load_bytes(&mut m, &image, "tf", "tf").unwrap();
    assert!(matches!(m.run(STEPS), Exit::TripleFault(_)), "{e}");
    assert_eq!(console.text(), "boot\n");

    let (mut m, console) = machine(RAM);
    m.engine = engines::engine(e);
    multiboot::load_bytes(&mut m, &image, "tf", "tf").unwrap();
    m.on_triple_fault = TripleFaultAction::Reset;
    m.max_resets = 3;
    let log = Console::default();
    m.diagnostics = Box::new(log.clone());
    let exit = m.run(STEPS);
    assert!(matches!(exit, Exit::ResetLimit { resets: 3, .. }), "{exit:?}");
    assert_eq!(exit.status(), 3);
    assert_eq!(console.text(), "boot\n".repeat(4), "the first boot and three more");
    assert_eq!(log.text().matches("resetting").count(), 3, "{}", log.text());
    assert_eq!(m.resets, 3);
    assert_eq!(
        m.cpu.state.regs[gpr::EBX],
        multiboot::INFO_ADDR,
        "each reset re-enters in the Multiboot state"
    );
}

#[test]
fn triple_fault_under_qemu_behaves_alike() {
    let Some(q) = qemu() else { return };
    let file = Scratch::new("tf.bin", &triple_fault_kernel());
    // -no-reboot: QEMU stops at the first triple fault, like bt86's default.
    let (_, output) = qemu_kernel(&q, &file, None);
    assert_eq!(output, "boot\n");
    // Without it the machine resets and QEMU's boot ROM loads the kernel again.
    let (_, output) = run_qemu(&q, &["-kernel", file.str()], Some("boot\nboot\nboot\n"));
    assert!(output.starts_with("boot\nboot\nboot\n"), "{output}");
}

#[test]
fn cli_triple_fault_reset_runs_again_then_stops_with_status_3() {
    let file = Scratch::new("tf-cli.bin", &triple_fault_kernel());
    let out = bt86(&["run", "--kernel", file.str()]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stdout), "boot\n");
    assert!(text(&out.stderr).contains("triple fault"), "{}", text(&out.stderr));

    let out = bt86(&["run", "--kernel", file.str(), "--on-triple-fault", "reset"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stdout), "boot\n".repeat(101));
    let err = text(&out.stderr);
    assert!(err.contains("kept triple-faulting: stopped after 100 resets"), "{err}");
    assert_eq!(err.matches("resetting (reset").count(), 100);
}

// ------------------------------------------------------------------ CLI and Multiboot

#[test]
fn cli_boots_a_multiboot_kernel_with_arguments_and_memory() {
    let file = Scratch::new("cli.elf", &elf_checking_kernel());
    let out = bt86(&["run", "--kernel", file.str(), "--append", "a=1 b"]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{} a=1 b\nmultiboot elf: data ok\n", file.str()));
    // With 64 MiB the kernel's mem_upper check (built for 16 MiB) fails: mask 2, status 5.
    let out = bt86(&["run", "--kernel", file.str(), "--memory", "64"]);
    assert_eq!(out.status.code(), Some(5), "stderr: {}", text(&out.stderr));
}

#[test]
fn cli_boots_the_embedded_kernels_by_name() {
    let kernels = guest_images::kernels();
    assert!(!kernels.is_empty());
    let listed = text(&bt86(&["images"]).stdout);
    for k in &kernels {
        assert!(
            listed.lines().any(|l| l.starts_with(k.name) && l.ends_with("(multiboot kernel)")),
            "{listed}"
        );
        // Whether every check passes is tests/pm_guests.rs's business; here: the kernel boots
        // and reports through isa-debug-exit (an odd status).
        let out = bt86(&["run", "--image", k.name, "--append", "x"]);
        let status = out.status.code().expect("bt86 exits");
        assert!(status % 2 == 1, "{}: status {status}, stderr: {}", k.name, text(&out.stderr));
    }
}

#[test]
fn cli_errors_name_the_file_or_option() {
    let video = Scratch::new("video.elf", &elf_kernel(Elf::default(), MB_FLAGS | 4, &[], ""));
    let rom = Scratch::new("small.rom", &[0u8; 4096]);
    let video_msg = format!("{}: the kernel requires a video mode", video.str());
    let rom_msg = format!("{}: a BIOS image must be 64 KiB to 16 MiB", rom.str());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["run", "--kernel", "/nonexistent/k.elf"], "/nonexistent/k.elf: cannot read"),
        (vec!["run", "--bios", "/nonexistent/bios.bin"], "/nonexistent/bios.bin: cannot read"),
        (vec!["run", "--kernel", video.str()], &video_msg),
        (vec!["run", "--bios", rom.str()], &rom_msg),
        (vec!["run", "--memory", "0"], "--memory 0: guest RAM must be 1 to 3072 MiB"),
        (vec!["run", "--memory", "4096"], "--memory 4096: guest RAM must be 1 to 3072 MiB"),
        (vec!["run", "--memory", "lots"], "`lots` is not a number"),
        (
            vec!["run", "--image", "primes", "--append", "x"],
            "--append gives a Multiboot kernel its arguments; it needs --kernel",
        ),
        (vec!["run", "--image", "alu", "--append", "x"], "--append gives a Multiboot kernel its arguments"),
        (vec!["run", "--on-triple-fault", "explode"], "`explode` is neither `stop` nor `reset`"),
        (vec!["run", "--image", "demo", "--kernel", "k"], "--image and --kernel cannot be used together"),
        (vec!["run", "--bios", "b", "--raw", "r"], "--raw and --bios cannot be used together"),
    ];
    for (args, msg) in cases {
        let out = bt86(&args);
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        assert!(text(&out.stderr).contains(msg), "{args:?}: {}", text(&out.stderr));
    }
}

// ------------------------------------------------------------------ BIOS

/// Assembles 16-bit code to run at F000:`ip`.
fn real_mode(ip: u16, build: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(16).expect("16-bit assembler");
    build(&mut a).expect("assemble");
    a.assemble(u64::from(ip)).expect("assemble")
}

/// A 64 KiB ROM (mapped at F0000 and FFFF0000): at the reset vector a far jump to F000:E000;
/// there `code`; the message at F000:E800.
fn tiny_rom(code: &[u8], message: &str) -> Vec<u8> {
    let mut rom = vec![0xFFu8; 64 << 10];
    rom[0xFFF0..0xFFF5].copy_from_slice(&[0xEA, 0x00, 0xE0, 0x00, 0xF0]); // jmp far F000:E000
    rom[0xE000..0xE000 + code.len()].copy_from_slice(code);
    rom[0xE800..0xE800 + message.len()].copy_from_slice(message.as_bytes());
    rom[0xE800 + message.len()] = 0;
    rom
}

/// Prints the message at CS:E800 (DS = CS), after trying to overwrite its first byte (ROM:
/// the write must be dropped).
fn emit_print_message(a: &mut CodeAssembler) -> Result<(), IcedError> {
    let (mut print, mut done) = (a.create_label(), a.create_label());
    a.mov(ax, cs)?;
    a.mov(ds, ax)?;
    a.mov(byte_ptr(0xE800u32), u32::from(b'X'))?;
    a.mov(si, 0xE800)?;
    a.set_label(&mut print)?;
    a.lodsb()?;
    a.test(al, al)?;
    a.jz(done)?;
    a.out(0xE9u32, al)?;
    a.jmp(print)?;
    a.set_label(&mut done)
}

/// "BIOS ok", then exit 0 through isa-debug-exit.
fn hello_rom() -> Vec<u8> {
    let code = real_mode(0xE000, |a| {
        emit_print_message(a)?;
        a.mov(al, 0)?;
        a.out(0xF4u32, al)?;
        a.hlt()
    });
    tiny_rom(&code, "BIOS ok\n")
}

/// Counts its boots in RAM at 0000:0500 and prints the count; triple-faults (empty IDT,
/// INT3) until the third boot, then exits 0. RAM must survive the resets.
fn rebooting_rom() -> Vec<u8> {
    let code = real_mode(0xE000, |a| {
        let mut again = a.create_label();
        emit_print_message(a)?;
        a.xor(ax, ax)?;
        a.mov(es, ax)?;
        a.inc(byte_ptr(0x500u32).es())?;
        a.mov(al, byte_ptr(0x500u32).es())?;
        a.add(al, u32::from(b'0'))?;
        a.out(0xE9u32, al)?;
        a.mov(al, u32::from(b'\n'))?;
        a.out(0xE9u32, al)?;
        a.cmp(byte_ptr(0x500u32).es(), 3)?;
        a.jb(again)?;
        a.mov(al, 0)?;
        a.out(0xF4u32, al)?;
        a.hlt()?;
        a.set_label(&mut again)?;
        a.lidt(ptr(0xE900u32).cs())?; // six zero bytes: limit 0
        a.int3()
    });
    let mut rom = tiny_rom(&code, "boot ");
    rom[0xE900..0xE906].fill(0);
    rom
}

#[test]
fn bios_rom_starts_at_the_reset_vector_in_the_high_copy() {
    let (mut m, console) = machine(RAM);
    bios::load_bytes(&mut m, &hello_rom(), Path::new("hello.rom")).unwrap();
    let code = m.cpu.state.seg(SegReg::Cs);
    assert_eq!((code.selector, code.base, m.cpu.state.eip), (0xF000, 0xFFFF_0000, 0xFFF0));
    assert_eq!(m.cpu.mem.read_u8(0xFFFF_FFF0), 0xEA, "high copy");
    assert_eq!(m.cpu.mem.read_u8(0xF_FFF0), 0xEA, "low copy");
    assert_eq!(m.run(STEPS), Exit::DebugExit { value: 0 });
    assert_eq!(console.text(), "BIOS ok\n");
}

#[test]
fn bios_rom_runs_from_the_cli_and_under_qemu() {
    let rom = Scratch::new("hello.rom", &hello_rom());
    let out = bt86(&["run", "--bios", rom.str()]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "BIOS ok\n");
    if let Some(q) = qemu() {
        let (status, output) = run_qemu(&q, &["-no-reboot", "-bios", rom.str()], None);
        assert_eq!((status, output.as_str()), (Some(1), "BIOS ok\n"));
    }
}

#[test]
fn bios_reset_reruns_the_firmware_with_ram_kept() {
    let expected = "boot 1\nboot 2\nboot 3\n";
    let (mut m, console) = machine(RAM);
    bios::load_bytes(&mut m, &rebooting_rom(), Path::new("reboot.rom")).unwrap();
    m.on_triple_fault = TripleFaultAction::Reset;
    assert_eq!(m.run(STEPS), Exit::DebugExit { value: 0 });
    assert_eq!(console.text(), expected);
    assert_eq!(m.resets, 2);

    let rom = Scratch::new("reboot.rom", &rebooting_rom());
    let out = bt86(&["run", "--bios", rom.str(), "--on-triple-fault", "reset"]);
    assert_eq!((out.status.code(), text(&out.stdout).as_str()), (Some(1), expected));
    let out = bt86(&["run", "--bios", rom.str()]);
    assert_eq!((out.status.code(), text(&out.stdout).as_str()), (Some(3), "boot 1\n"));
    if let Some(q) = qemu() {
        // QEMU keeps RAM across a reset too.
        let (status, output) = run_qemu(&q, &["-bios", rom.str()], None);
        assert_eq!((status, output.as_str()), (Some(1), expected));
    }
}

#[test]
fn bad_rom_sizes_are_refused_by_name() {
    for size in [0usize, 4096, 60 << 10, (64 << 10) + 100] {
        let (mut m, _) = machine(RAM);
        let e = bios::load_bytes(&mut m, &vec![0; size], Path::new("odd.rom")).unwrap_err();
        assert!(matches!(e, BootError::BadRomSize { .. }), "{size}: {e}");
        assert!(e.to_string().starts_with("odd.rom: a BIOS image must be"), "{e}");
    }
    // 17 MiB, checked from the file's size without reading it.
    let big = Scratch::new("big.rom", &[]);
    std::fs::File::options().write(true).open(big.path()).unwrap().set_len(17 << 20).unwrap();
    let (mut m, _) = machine(RAM);
    let e = bios::load(&mut m, big.path()).unwrap_err();
    assert!(matches!(e, BootError::BadRomSize { size: 0x110_0000, .. }), "{e}");
    // A second BIOS in the same machine overlaps the first.
    let (mut m, _) = machine(RAM);
    bios::load_bytes(&mut m, &hello_rom(), Path::new("a.rom")).unwrap();
    let e = bios::load_bytes(&mut m, &hello_rom(), Path::new("b.rom")).unwrap_err();
    assert!(matches!(e, BootError::Memory { .. }) && e.to_string().starts_with("b.rom: "), "{e}");
}

#[test]
fn a_large_rom_shows_only_its_last_128_kib_below_1_mib() {
    let mut rom = vec![0u8; 256 << 10];
    rom[0] = 0x11; // first byte: only in the high copy
    rom[128 << 10] = 0x22; // first byte of the last 128 KiB: at 0xE0000
    let (mut m, _) = machine(RAM);
    bios::load_bytes(&mut m, &rom, Path::new("big.rom")).unwrap();
    assert_eq!(m.cpu.mem.read_u8(0xFFFC_0000), 0x11);
    assert_eq!(m.cpu.mem.read_u8(0xFFFE_0000), 0x22);
    assert_eq!(m.cpu.mem.read_u8(0xE_0000), 0x22);
    assert!(!m.cpu.mem.is_rom(0xD_FFFF));
}
