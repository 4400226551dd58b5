//! The ring-3 program every task of the demo runs, and the address space it sees.
//!
//! ```text
//! virtual              what                                   page table entry
//! 4000_0000 (USER_CODE)  this program (one page, shared)      present, user, read-only
//! 4000_1000 (USER_DATA)  the task's own data and stack        present, user, read/write
//! 4000_2000 (USER_SHARED) the kernel's tick counter           present, user, read-only
//! everything else       the kernel (0–4 MiB)                   present, supervisor only
//! ```
//!
//! Each task gets the same virtual layout through its own page directory; only the data page
//! differs (a different physical page), so both tasks write to 4000_1000 without seeing each
//! other. On entry EBX holds the task's letter, ECX the number of lines to print and EDX the
//! timer ticks to spin between lines. The program formats `task X: N` in its data page,
//! prints it with the write system call, spins on the tick counter (the timer preempts it
//! meanwhile), and ends with the exit system call.

use iced_x86::code_asm::*;

/// Start of the user part of the address space (page directory entry 256).
pub(super) const USER_BASE: u32 = 0x4000_0000;
/// The program (read-only).
pub(super) const USER_CODE: u32 = USER_BASE;
/// The task's data page; its stack grows down from the end.
pub(super) const USER_DATA: u32 = USER_BASE + 0x1000;
/// Initial ESP: the top of the data page.
pub(super) const USER_STACK_TOP: u32 = USER_BASE + 0x2000;
/// The kernel's tick counter, mapped read-only.
pub(super) const USER_SHARED: u32 = USER_BASE + 0x2000;
/// End of the user part.
pub(super) const USER_END: u32 = USER_BASE + 0x3000;

/// System call numbers (EAX), as on Linux/i386.
pub(super) const SYS_EXIT: u32 = 1;
/// write(fd = EBX, buffer = ECX, length = EDX).
pub(super) const SYS_WRITE: u32 = 4;

/// Variables in the data page.
const V_LETTER: u32 = USER_DATA;
const V_LINES: u32 = USER_DATA + 4;
const V_SPIN: u32 = USER_DATA + 8;
const V_LINE: u32 = USER_DATA + 12;
/// Busy-loop iterations so far.
const V_SPINS: u32 = USER_DATA + 16;
/// The line being built.
const MESSAGE: u32 = USER_DATA + 0x40;

/// The program's bytes, assembled for [`USER_CODE`].
pub(super) fn program() -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(32)?;
    let mut next_line = a.create_label();
    let mut spin = a.create_label();
    let mut done = a.create_label();
    let mut to_decimal = a.create_label();
    let mut digits = a.create_label();
    let mut store = a.create_label();

    a.mov(dword_ptr(V_LETTER), ebx)?;
    a.mov(dword_ptr(V_LINES), ecx)?;
    a.mov(dword_ptr(V_SPIN), edx)?;
    a.mov(dword_ptr(V_LINE), 1)?;

    // "task X: N\n"
    a.set_label(&mut next_line)?;
    a.mov(edi, MESSAGE)?;
    a.mov(dword_ptr(edi), u32::from_le_bytes(*b"task"))?;
    a.mov(byte_ptr(edi + 4), u32::from(b' '))?;
    a.mov(al, byte_ptr(V_LETTER))?;
    a.mov(byte_ptr(edi + 5), al)?;
    a.mov(word_ptr(edi + 6), u32::from(u16::from_le_bytes(*b": ")))?;
    a.add(edi, 8)?;
    a.mov(eax, dword_ptr(V_LINE))?;
    a.call(to_decimal)?;
    a.mov(byte_ptr(edi), u32::from(b'\n'))?;
    a.inc(edi)?;
    // write(1, MESSAGE, length)
    a.mov(edx, edi)?;
    a.sub(edx, MESSAGE)?;
    a.mov(ecx, MESSAGE)?;
    a.mov(ebx, 1)?;
    a.mov(eax, SYS_WRITE)?;
    a.int(0x80)?;
    a.mov(eax, dword_ptr(V_LINE))?;
    a.cmp(eax, dword_ptr(V_LINES))?;
    a.jae(done)?;
    a.inc(dword_ptr(V_LINE))?;
    // Busy until the tick counter has moved on by V_SPIN: the timer interrupts this loop and
    // the scheduler runs the other task meanwhile.
    a.mov(eax, dword_ptr(USER_SHARED))?;
    a.add(eax, dword_ptr(V_SPIN))?;
    a.set_label(&mut spin)?;
    a.inc(dword_ptr(V_SPINS))?;
    a.cmp(dword_ptr(USER_SHARED), eax)?;
    a.jb(spin)?;
    a.jmp(next_line)?;

    // exit(0)
    a.set_label(&mut done)?;
    a.mov(eax, SYS_EXIT)?;
    a.xor(ebx, ebx)?;
    a.int(0x80)?;
    a.ud2()?;

    // to_decimal: EAX in decimal at EDI; EDI ends past the digits. Clobbers EAX, EBX, ECX,
    // EDX.
    a.set_label(&mut to_decimal)?;
    a.xor(ecx, ecx)?;
    a.mov(ebx, 10)?;
    a.set_label(&mut digits)?;
    a.xor(edx, edx)?;
    a.div(ebx)?;
    a.push(edx)?;
    a.inc(ecx)?;
    a.test(eax, eax)?;
    a.jnz(digits)?;
    a.set_label(&mut store)?;
    a.pop(eax)?;
    a.add(al, i32::from(b'0'))?;
    a.mov(byte_ptr(edi), al)?;
    a.inc(edi)?;
    a.loop_(store)?;
    a.ret()?;

    let bytes = a.assemble(u64::from(USER_CODE))?;
    assert!(bytes.len() <= 0x1000, "the user program fits in its page");
    Ok(bytes)
}
