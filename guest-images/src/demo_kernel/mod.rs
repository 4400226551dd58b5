//! The demo kernel: a small 32-bit protected-mode multiboot kernel that shows, in a few lines
//! on the serial console (COM1), what the machine does.
//!
//! 1. It takes over the machine with the runtime of [`crate::pm::rt`] (GDT with ring-0 and
//!    ring-3 flat segments, a TSS, an IDT), then installs its own gates: exceptions 0–31,
//!    IRQ 0–15 remapped to vectors 20h–2Fh, and the system call gate `int 80h` with DPL 3.
//! 2. Paging: one page table maps the first 4 MiB onto themselves, supervisor-only; each task
//!    gets a page directory of its own that shares that table and adds its user pages at
//!    4000_0000h (see [`user`]), with U/S = 1.
//! 3. The 8259A pair is remapped, the 8254 ticks at 100 Hz on IRQ 0 and COM1 runs at 115200
//!    8N1 with its FIFOs and the receive interrupt on IRQ 4 (received bytes go to a ring
//!    buffer at once, so input that arrives early is kept).
//! 4. Two ring-3 tasks print numbered lines through `write` and end with `exit`. IRQ 0 drives a
//!    round-robin scheduler: every tick it saves the interrupted context on that task's own
//!    kernel stack, picks the next runnable task, loads its CR3, points TSS.ESP0 at its kernel
//!    stack and returns into it with IRET. A task that exits (or faults) is taken out; when
//!    none is left the scheduler returns to the kernel's own context, which prints a summary.
//! 5. A line-editing shell reads COM1 ([`shell`]); `poweroff`, or 60 seconds without input,
//!    turns the machine off through the ACPI PM1a control register (port 604h).
//!
//! The kernel is not preemptible: system calls and interrupts go through interrupt gates
//! (IF = 0) and every kernel path finishes before the next interrupt is taken. Tasks run with
//! IOPL 0 and the TSS has no I/O permission bitmap inside its limit, so a task can reach the
//! hardware only through system calls.

mod console;
mod shell;
mod user;

use iced_x86::code_asm::*;

use self::console::Lib;
use self::user::*;
use crate::asm::Asm;
use crate::pc::{pic, pit, uart};
use crate::pm::rt::{
    build_bare, dpl, gate, Program, CR0_PG, CR0_WP, ESP0_TOP, INT_GATE, KCODE, KDATA, P, SCRATCH, TSS0,
    UCODE, UDATA,
};
use crate::Kernel;

/// The ring-3 tasks: name, lines to print, timer ticks to spin between lines.
const TASKS: [(u8, u32, u32); 2] = [(b'A', 3, 4), (b'B', 5, 2)];
/// Number of user tasks; slot 0 of the task table is the kernel itself.
const N: u32 = TASKS.len() as u32;

// ---------------------------------------------------------------------------------------------
// Physical memory (inside the kernel's ELF segment, zero-filled by the loader).

/// The kernel's page directory.
const KPD: u32 = SCRATCH;
/// The page table mapping 0–4 MiB onto itself, supervisor-only.
const KPT: u32 = SCRATCH + 0x1000;
/// Task `i`'s page directory; its page table for 4000_0000h follows.
const fn task_pd(i: u32) -> u32 {
    SCRATCH + 0x2000 + i * 0x2000
}
const fn task_pt(i: u32) -> u32 {
    task_pd(i) + 0x1000
}
/// The user program (mapped read-only at [`USER_CODE`] in every task).
const USER_CODE_PHYS: u32 = SCRATCH + 0x8000;
/// The tick counter page (mapped read-only at [`USER_SHARED`]).
const SHARED_PHYS: u32 = SCRATCH + 0x9000;
/// Task `i`'s data page (mapped at [`USER_DATA`]).
const fn task_data(i: u32) -> u32 {
    SCRATCH + 0xA000 + i * 0x1000
}
/// Top of task `i`'s kernel stack (4 KiB).
const fn kstack_top(i: u32) -> u32 {
    SCRATCH + 0x11000 + i * 0x1000
}
/// The kernel's variables (one page).
const KVARS: u32 = SCRATCH + 0x18000;
/// End of the memory the kernel clears at boot.
const KMEM_END: u32 = KVARS + 0x1000;

/// Timer ticks since boot.
const V_TICKS: u32 = KVARS;
/// Task-table slot running now (0 = the kernel).
const V_CURRENT: u32 = KVARS + 0x04;
/// User tasks not yet exited.
const V_LIVE: u32 = KVARS + 0x08;
/// Context switches.
const V_SWITCHES: u32 = KVARS + 0x0C;
/// System calls.
const V_SYSCALLS: u32 = KVARS + 0x10;
/// The last user slot the scheduler picked.
const V_RR_LAST: u32 = KVARS + 0x14;
/// Receive ring: bytes written (by the IRQ 4 handler) and read (by the shell).
const V_RX_HEAD: u32 = KVARS + 0x18;
const V_RX_TAIL: u32 = KVARS + 0x1C;
/// Bytes dropped because the ring was full.
const V_RX_DROPPED: u32 = KVARS + 0x20;
/// Ticks when the tasks started and when the last one ended.
const V_START_TICKS: u32 = KVARS + 0x24;
const V_END_TICKS: u32 = KVARS + 0x28;
/// The task table: one [`T_SIZE`]-byte entry per slot.
const TASK_TABLE: u32 = KVARS + 0x100;
/// The receive ring ([`RX_SIZE`] bytes).
const RX_BUF: u32 = KVARS + 0x400;
const RX_SIZE: u32 = 256;
/// Polls of an idle line before the FIFOs go on (see [`uart_init`]).
const RX_QUIET: u32 = 200;
/// Loop iterations between two of those polls.
const RX_PAUSE: u32 = 20_000;
/// At most this many polls in all, whatever keeps arriving.
const RX_SETTLE_MAX: u32 = 5_000;

/// Task table entry: state ([`RUNNABLE`], [`EXITED`]).
const T_STATE: u32 = 0;
/// Saved kernel ESP (pointing at the saved context).
const T_ESP: u32 = 4;
/// Page directory.
const T_CR3: u32 = 8;
/// Top of the kernel stack (TSS.ESP0 while it runs).
const T_ESP0: u32 = 12;
/// Name (a letter).
const T_NAME: u32 = 16;
/// Successful write calls.
const T_WRITES: u32 = 20;
/// Timer ticks that found it running.
const T_TICKS: u32 = 24;
/// Exit status.
const T_EXIT: u32 = 28;
const T_SIZE: u32 = 32;
const RUNNABLE: u32 = 1;
const EXITED: u32 = 2;

/// Page table entry bits (SDM Vol. 3A, 4.3).
const PG_P: u32 = 1;
const PG_RW: u32 = 2;
const PG_US: u32 = 4;

/// System call errors (returned negated in EAX, as on Linux).
const EBADF: u32 = 9;
const EFAULT: u32 = 14;
const ENOSYS: u32 = 38;

/// The saved context on a kernel stack, from its lowest address: ES, DS, the PUSHAD image
/// (EDI … EAX), then what the processor pushed (EIP, CS, EFLAGS, and ESP, SS from ring 3).
const F_EBX: i32 = 24;
const F_EAX: i32 = 36;
/// In an exception's context, the vector and error code sit between EAX and EIP.
const F_VECTOR: i32 = 40;
const F_ERROR: i32 = 44;
const F_EXC_EIP: i32 = 48;
const F_EXC_CS: i32 = 52;

/// The demo kernel (see the module docs).
pub fn demo_kernel() -> Kernel {
    Kernel {
        name: "demo",
        description: "protected mode, paging, a timer-driven scheduler over two ring-3 tasks with system \
                      calls, then a shell on the serial console (type help; poweroff ends it)",
        elf: build_bare("demo", body).unwrap_or_else(|e| panic!("the demo kernel does not assemble: {e}")),
    }
}

fn body(p: &mut Program) -> Asm {
    let lib = Lib::new(p);
    let user_code = user::program()?;
    let user_len = user_code.len() as u32;
    let user_blob = p.blob(user_code);
    let user_from = p.addr(user_blob);

    p.a.cli()?;
    p.fill(SCRATCH, KMEM_END - SCRATCH, 0)?;
    // Bytes that reached COM1 before the kernel started would be lost when the FIFOs are
    // switched on: take them first.
    p.a.call(lib.rx_drain)?;
    // The 8259As before the UART's interrupt: ICW1 resets their edge detectors, so a request
    // line that is already high when they are initialised would never be seen again.
    pic_init(p)?;
    uart_init(p, &lib)?;
    lib.say(p, "\nbt86 demo kernel: 32-bit protected mode on a PC, booted through multiboot\n")?;
    lib.say(
        p,
        "[cpu] GDT: flat code and data for ring 0 and ring 3, and a TSS; paging and interrupts next\n",
    )?;
    install_gates(p, &lib)?;
    lib.say(
        p,
        "[cpu] IDT: exceptions 0-31, IRQs at 0x20-0x2f, system calls through int 0x80 (a DPL-3 gate)\n",
    )?;
    paging(p, user_from, user_len)?;
    lib.say(p, "[mm]  paging on: 0-4 MiB identity-mapped for the kernel (supervisor only), CR0.WP set\n")?;
    lib.say(p, "[pic] 8259A pair remapped: IRQ 0-7 at vectors 0x20-0x27, IRQ 8-15 at 0x28-0x2f\n")?;
    p.a.mov(al, u32::from(pit::select(0) | pit::RW_LSB_MSB | pit::mode(2)))?;
    p.a.out(pit::CONTROL, al)?;
    p.a.mov(al, pit::COUNT_100HZ & 0xFF)?;
    p.a.out(pit::COUNTER0, al)?;
    p.a.mov(al, pit::COUNT_100HZ >> 8)?;
    p.a.out(pit::COUNTER0, al)?;
    lib.say(
        p,
        &format!(
            "[pit] 8254 counter 0 in mode 2 (rate generator), divisor {}: IRQ 0 at 100 Hz\n",
            pit::COUNT_100HZ
        ),
    )?;
    lib.say(p, "[uart] COM1 at 0x3f8: 115200 baud 8N1, FIFOs on, receive interrupt on IRQ 4\n")?;
    create_tasks(p, &lib)?;
    lib.say(
        p,
        &format!(
            "[sched] starting {N} ring-3 tasks (IOPL 0: no port I/O, no CLI); IRQ 0 switches them \
             round-robin\n"
        ),
    )?;
    run_tasks(p, &lib)?;
    shell::run(p, &lib)?;
    lib.emit(p)?;
    emit_handlers(p, &lib)
}

/// COM1: 115200 8N1, FIFOs with a one-byte trigger level, DTR, RTS and OUT2 (which lets the
/// interrupt onto the bus), the received-data interrupt.
fn uart_init(p: &mut Program, lib: &Lib) -> Asm {
    let reg = |p: &mut Program, reg: u32, value: u8| -> Asm {
        p.a.mov(dx, uart::COM1 + reg)?;
        p.a.mov(al, u32::from(value))?;
        p.a.out(dx, al)
    };
    reg(p, uart::IER, 0)?;
    reg(p, uart::LCR, uart::LCR_DLAB | uart::LCR_8N1)?;
    reg(p, uart::DLL, 1)?;
    reg(p, uart::DLM, 0)?;
    reg(p, uart::LCR, uart::LCR_8N1)?;
    // Switching the FIFOs on clears the receiver: a byte that arrives between the last read
    // of RBR and that write is lost. Input sent before the kernel started (a pipe, keys typed
    // ahead) arrives one byte per read of RBR, so take all of it into the ring first: poll
    // until RX_QUIET polls in a row found nothing, with a stretch of plain computation before
    // each poll (an emulator that serialises device accesses gets the time to deliver the next
    // byte), and switch right after the last poll.
    let mut settle = p.label();
    let mut quiet = p.label();
    let mut pause = p.label();
    let mut settled = p.label();
    p.a.mov(esi, RX_SETTLE_MAX)?;
    p.bind(&mut settle)?;
    p.a.mov(ecx, RX_QUIET)?;
    p.bind(&mut quiet)?;
    p.a.mov(edi, RX_PAUSE)?;
    p.bind(&mut pause)?;
    p.a.dec(edi)?;
    p.a.jnz(pause)?;
    p.a.mov(edi, dword_ptr(V_RX_HEAD))?;
    p.a.call(lib.rx_drain)?;
    p.a.dec(esi)?;
    p.a.jz(settled)?;
    p.a.cmp(dword_ptr(V_RX_HEAD), edi)?;
    p.a.jne(settle)?;
    p.a.dec(ecx)?;
    p.a.jnz(quiet)?;
    p.bind(&mut settled)?;
    reg(p, uart::FCR, uart::FCR_ENABLE | uart::FCR_CLEAR_TX | uart::fcr_trigger(1))?;
    reg(p, uart::MCR, uart::MCR_DTR | uart::MCR_RTS | uart::MCR_OUT2)?;
    for r in [uart::LSR, uart::IIR, uart::MSR] {
        p.a.mov(dx, uart::COM1 + r)?;
        p.a.in_(al, dx)?;
    }
    reg(p, uart::IER, uart::IER_ERBFI)
}

/// The 8259A pair: remapped to 20h/28h, only IRQ 0 (timer) and IRQ 4 (COM1) unmasked.
fn pic_init(p: &mut Program) -> Asm {
    let out = |p: &mut Program, port: u32, value: u8| -> Asm {
        p.a.mov(al, u32::from(value))?;
        p.a.out(port, al)
    };
    out(p, pic::MASTER_CMD, pic::ICW1_INIT_IC4)?;
    out(p, pic::MASTER_DATA, pic::MASTER_BASE as u8)?;
    out(p, pic::MASTER_DATA, pic::ICW3_MASTER_SLAVE_ON_IR2)?;
    out(p, pic::MASTER_DATA, pic::ICW4_8086)?;
    out(p, pic::SLAVE_CMD, pic::ICW1_INIT_IC4)?;
    out(p, pic::SLAVE_DATA, pic::SLAVE_BASE as u8)?;
    out(p, pic::SLAVE_DATA, pic::ICW3_SLAVE_ID2)?;
    out(p, pic::SLAVE_DATA, pic::ICW4_8086)?;
    out(p, pic::MASTER_DATA, !(1u8 | 1 << uart::COM1_IRQ))?;
    out(p, pic::SLAVE_DATA, 0xFF)
}

/// Points the IDT at the kernel's handlers (emitted by [`emit_handlers`]).
fn install_gates(p: &mut Program, lib: &Lib) -> Asm {
    for vector in 0..32 {
        let stub = p.addr(lib.exception_stubs[vector as usize]);
        p.set_idt(vector, gate(KCODE, stub, P | INT_GATE, 0))?;
    }
    let irq0 = p.addr(lib.irq0);
    let irq4 = p.addr(lib.irq4);
    let spurious_master = p.addr(lib.spurious_master);
    let spurious_slave = p.addr(lib.spurious_slave);
    let syscall = p.addr(lib.syscall);
    p.set_idt(pic::MASTER_BASE, gate(KCODE, irq0, P | INT_GATE, 0))?;
    p.set_idt(pic::MASTER_BASE + uart::COM1_IRQ, gate(KCODE, irq4, P | INT_GATE, 0))?;
    p.set_idt(pic::MASTER_BASE + 7, gate(KCODE, spurious_master, P | INT_GATE, 0))?;
    p.set_idt(pic::SLAVE_BASE + 7, gate(KCODE, spurious_slave, P | INT_GATE, 0))?;
    p.set_idt(0x80, gate(KCODE, syscall, P | dpl(3) | INT_GATE, 0))
}

/// Builds the kernel's and the tasks' paging structures, copies the user program into its
/// page and turns paging on.
fn paging(p: &mut Program, user_from: u32, user_len: u32) -> Asm {
    let mut next = p.label();
    p.a.xor(ecx, ecx)?;
    p.bind(&mut next)?;
    p.a.mov(eax, ecx)?;
    p.a.shl(eax, 12)?;
    p.a.or(eax, PG_P | PG_RW)?;
    p.a.mov(dword_ptr(ecx * 4 + KPT), eax)?;
    p.a.inc(ecx)?;
    p.a.cmp(ecx, 1024)?;
    p.a.jb(next)?;
    p.a.mov(dword_ptr(KPD), KPT | PG_P | PG_RW)?;
    let user_pde = 4 * (USER_BASE >> 22);
    for i in 0..N {
        p.a.mov(dword_ptr(task_pd(i)), KPT | PG_P | PG_RW)?;
        p.a.mov(dword_ptr(task_pd(i) + user_pde), task_pt(i) | PG_P | PG_RW | PG_US)?;
        p.a.mov(dword_ptr(task_pt(i)), USER_CODE_PHYS | PG_P | PG_US)?;
        p.a.mov(dword_ptr(task_pt(i) + 4), task_data(i) | PG_P | PG_RW | PG_US)?;
        p.a.mov(dword_ptr(task_pt(i) + 8), SHARED_PHYS | PG_P | PG_US)?;
    }
    p.copy(user_from, USER_CODE_PHYS, user_len)?;
    p.a.mov(eax, KPD)?;
    p.a.mov(cr3, eax)?;
    p.a.mov(eax, cr0)?;
    p.a.or(eax, CR0_PG | CR0_WP)?;
    p.a.mov(cr0, eax)
}

/// Address of task-table slot `slot`.
const fn slot(slot: u32) -> u32 {
    TASK_TABLE + slot * T_SIZE
}

/// Fills the task table: slot 0 is the kernel (running now), slots 1… the user tasks, each
/// with an initial context on its kernel stack that IRETs to [`USER_CODE`] in ring 3.
fn create_tasks(p: &mut Program, lib: &Lib) -> Asm {
    p.a.mov(dword_ptr(slot(0) + T_STATE), RUNNABLE)?;
    p.a.mov(dword_ptr(slot(0) + T_CR3), KPD)?;
    p.a.mov(dword_ptr(slot(0) + T_ESP0), ESP0_TOP)?;
    p.a.mov(dword_ptr(slot(0) + T_NAME), u32::from(b'K'))?;
    for (i, &(name, lines, spin)) in TASKS.iter().enumerate() {
        let i = i as u32;
        let top = kstack_top(i);
        // From the top down: SS, ESP, EFLAGS, CS, EIP, then EAX … EDI (PUSHAD order), DS, ES.
        let frame: [u32; 15] = [
            u32::from(UDATA),
            USER_STACK_TOP,
            0x202,
            u32::from(UCODE),
            USER_CODE,
            0,
            lines,
            spin,
            u32::from(name),
            0,
            0,
            0,
            0,
            u32::from(UDATA),
            u32::from(UDATA),
        ];
        for (k, &value) in frame.iter().enumerate() {
            p.a.mov(dword_ptr(top - 4 * (k as u32 + 1)), value)?;
        }
        let s = slot(i + 1);
        p.a.mov(dword_ptr(s + T_STATE), RUNNABLE)?;
        p.a.mov(dword_ptr(s + T_ESP), top - 4 * frame.len() as u32)?;
        p.a.mov(dword_ptr(s + T_CR3), task_pd(i))?;
        p.a.mov(dword_ptr(s + T_ESP0), top)?;
        p.a.mov(dword_ptr(s + T_NAME), u32::from(name))?;
        lib.say(
            p,
            &format!(
                "[task] {}: page directory at {:#010x}; 0x{USER_CODE:08x} code (shared, read-only), \
                 0x{USER_DATA:08x} data+stack -> {:#010x}, 0x{USER_SHARED:08x} tick counter \
                 (read-only)\n",
                char::from(name),
                task_pd(i),
                task_data(i)
            ),
        )?;
    }
    p.a.mov(dword_ptr(V_LIVE), N)?;
    p.a.mov(dword_ptr(V_CURRENT), 0)
}

/// Lets the scheduler run the tasks: the kernel idles (HLT) until none is left, then prints
/// the summary.
fn run_tasks(p: &mut Program, lib: &Lib) -> Asm {
    let mut idle = p.label();
    let mut done = p.label();
    p.a.mov(eax, dword_ptr(V_TICKS))?;
    p.a.mov(dword_ptr(V_START_TICKS), eax)?;
    p.a.sti()?;
    p.bind(&mut idle)?;
    p.a.cli()?;
    p.a.cmp(dword_ptr(V_LIVE), 0)?;
    p.a.je(done)?;
    // STI's one-instruction shadow: no interrupt can slip in between it and HLT.
    p.a.sti()?;
    p.a.hlt()?;
    p.a.jmp(idle)?;
    p.bind(&mut done)?;
    p.a.sti()?;
    p.a.mov(eax, dword_ptr(V_TICKS))?;
    p.a.mov(dword_ptr(V_END_TICKS), eax)?;
    lib.say(p, "[sched] all tasks done after ")?;
    p.a.sub(eax, dword_ptr(V_START_TICKS))?;
    p.a.call(lib.print_dec)?;
    lib.say(p, " timer ticks: ")?;
    p.a.mov(eax, dword_ptr(V_SWITCHES))?;
    p.a.call(lib.print_dec)?;
    lib.say(p, " context switches, ")?;
    p.a.mov(eax, dword_ptr(V_SYSCALLS))?;
    p.a.call(lib.print_dec)?;
    lib.say(p, " system calls\n")
}

/// Saves the interrupted context (ES, DS, PUSHAD) and loads the kernel's data segments.
fn save_context(p: &mut Program) -> Asm {
    p.a.pushad()?;
    p.a.push(ds)?;
    p.a.push(es)?;
    p.a.mov(ax, u32::from(KDATA))?;
    p.a.mov(ds, ax)?;
    p.a.mov(es, ax)
}

/// Returns into the context at ESP.
fn restore_context(p: &mut Program) -> Asm {
    p.a.pop(es)?;
    p.a.pop(ds)?;
    p.a.popad()?;
    p.a.iretd()
}

/// EBX = the current task's table entry. Clobbers EAX.
fn current_slot(p: &mut Program) -> Asm {
    p.a.mov(ebx, dword_ptr(V_CURRENT))?;
    p.a.shl(ebx, 5)?;
    p.a.add(ebx, TASK_TABLE)
}

fn emit_handlers(p: &mut Program, lib: &Lib) -> Asm {
    emit_scheduler(p, lib)?;
    emit_irqs(p, lib)?;
    emit_syscalls(p, lib)?;
    emit_exceptions(p, lib)
}

/// The scheduler, entered by a jump with the current context saved at ESP: records ESP in the
/// current slot, picks the next runnable user task after the last one picked (round robin),
/// or the kernel if there is none, and switches to it: TSS.ESP0, CR3 (when it differs), ESP.
fn emit_scheduler(p: &mut Program, lib: &Lib) -> Asm {
    let mut schedule = lib.schedule;
    let mut find = p.label();
    let mut in_range = p.label();
    let mut found = p.label();
    let mut go = p.label();
    let mut same_task = p.label();
    let mut same_cr3 = p.label();
    p.bind(&mut schedule)?;
    p.a.mov(eax, dword_ptr(V_CURRENT))?;
    p.a.shl(eax, 5)?;
    p.a.mov(dword_ptr(eax + TASK_TABLE + T_ESP), esp)?;
    p.a.mov(ecx, N)?;
    p.a.mov(edx, dword_ptr(V_RR_LAST))?;
    p.bind(&mut find)?;
    p.a.inc(edx)?;
    p.a.cmp(edx, N)?;
    p.a.jbe(in_range)?;
    p.a.mov(edx, 1)?;
    p.bind(&mut in_range)?;
    p.a.mov(eax, edx)?;
    p.a.shl(eax, 5)?;
    p.a.cmp(dword_ptr(eax + TASK_TABLE + T_STATE), RUNNABLE)?;
    p.a.je(found)?;
    p.a.dec(ecx)?;
    p.a.jnz(find)?;
    p.a.xor(edx, edx)?;
    p.a.jmp(go)?;
    p.bind(&mut found)?;
    p.a.mov(dword_ptr(V_RR_LAST), edx)?;
    p.bind(&mut go)?;
    p.a.cmp(edx, dword_ptr(V_CURRENT))?;
    p.a.je(same_task)?;
    p.a.inc(dword_ptr(V_SWITCHES))?;
    p.a.mov(dword_ptr(V_CURRENT), edx)?;
    p.bind(&mut same_task)?;
    p.a.shl(edx, 5)?;
    p.a.add(edx, TASK_TABLE)?;
    p.a.mov(eax, dword_ptr(edx + T_ESP0))?;
    p.a.mov(dword_ptr(TSS0 + 4), eax)?;
    p.a.mov(eax, dword_ptr(edx + T_CR3))?;
    p.a.mov(ecx, cr3)?;
    p.a.cmp(eax, ecx)?;
    p.a.je(same_cr3)?;
    p.a.mov(cr3, eax)?;
    p.bind(&mut same_cr3)?;
    p.a.mov(esp, dword_ptr(edx + T_ESP))?;
    restore_context(p)?;

    // task_exit: EBX = status; the current task leaves the table.
    let mut task_exit = lib.task_exit;
    p.bind(&mut task_exit)?;
    p.a.mov(esi, dword_ptr(V_CURRENT))?;
    p.a.shl(esi, 5)?;
    p.a.add(esi, TASK_TABLE)?;
    p.a.mov(dword_ptr(esi + T_STATE), EXITED)?;
    p.a.mov(dword_ptr(esi + T_EXIT), ebx)?;
    p.a.dec(dword_ptr(V_LIVE))?;
    lib.say(p, "[sched] task ")?;
    p.a.mov(al, byte_ptr(esi + T_NAME))?;
    p.a.call(lib.putc)?;
    lib.say(p, " exited (status ")?;
    p.a.mov(eax, ebx)?;
    p.a.call(lib.print_dec)?;
    lib.say(p, "); tasks left: ")?;
    p.a.mov(eax, dword_ptr(V_LIVE))?;
    p.a.call(lib.print_dec)?;
    lib.say(p, "\n")?;
    p.a.jmp(lib.schedule)
}

fn emit_irqs(p: &mut Program, lib: &Lib) -> Asm {
    // IRQ 0: count the tick (also in the page the tasks see), charge it to the running task,
    // EOI, and let the scheduler pick who runs next.
    let mut irq0 = lib.irq0;
    p.bind(&mut irq0)?;
    save_context(p)?;
    p.a.inc(dword_ptr(V_TICKS))?;
    p.a.mov(eax, dword_ptr(V_TICKS))?;
    p.a.mov(dword_ptr(SHARED_PHYS), eax)?;
    current_slot(p)?;
    p.a.inc(dword_ptr(ebx + T_TICKS))?;
    p.a.mov(al, u32::from(pic::OCW2_EOI))?;
    p.a.out(pic::MASTER_CMD, al)?;
    p.a.jmp(lib.schedule)?;

    // IRQ 4: move every received byte into the ring.
    let mut irq4 = lib.irq4;
    p.bind(&mut irq4)?;
    p.a.push(eax)?;
    p.a.push(ebx)?;
    p.a.push(edx)?;
    p.a.push(ds)?;
    p.a.mov(ax, u32::from(KDATA))?;
    p.a.mov(ds, ax)?;
    p.a.call(lib.rx_drain)?;
    p.a.mov(al, u32::from(pic::OCW2_EOI))?;
    p.a.out(pic::MASTER_CMD, al)?;
    p.a.pop(ds)?;
    p.a.pop(edx)?;
    p.a.pop(ebx)?;
    p.a.pop(eax)?;
    p.a.iretd()?;

    // A spurious IRQ 7 is not in service: no EOI. A spurious IRQ 15 is, on the master (IR2).
    let mut spurious_master = lib.spurious_master;
    p.bind(&mut spurious_master)?;
    p.a.iretd()?;
    let mut spurious_slave = lib.spurious_slave;
    p.bind(&mut spurious_slave)?;
    p.a.push(eax)?;
    p.a.mov(al, u32::from(pic::OCW2_EOI))?;
    p.a.out(pic::MASTER_CMD, al)?;
    p.a.pop(eax)?;
    p.a.iretd()?;

    // rx_drain: reads COM1 while LSR says a byte is ready. Clobbers EAX, EBX, EDX.
    let mut rx_drain = lib.rx_drain;
    let mut more = p.label();
    let mut drop = p.label();
    let mut done = p.label();
    p.bind(&mut rx_drain)?;
    p.bind(&mut more)?;
    p.a.mov(dx, uart::COM1 + uart::LSR)?;
    p.a.in_(al, dx)?;
    p.a.test(al, u32::from(uart::LSR_DR))?;
    p.a.jz(done)?;
    p.a.mov(dx, uart::COM1 + uart::RBR)?;
    p.a.in_(al, dx)?;
    p.a.mov(ebx, dword_ptr(V_RX_HEAD))?;
    p.a.mov(edx, ebx)?;
    p.a.sub(edx, dword_ptr(V_RX_TAIL))?;
    p.a.cmp(edx, RX_SIZE)?;
    p.a.jae(drop)?;
    p.a.and(ebx, RX_SIZE - 1)?;
    p.a.mov(byte_ptr(ebx + RX_BUF), al)?;
    p.a.inc(dword_ptr(V_RX_HEAD))?;
    p.a.jmp(more)?;
    p.bind(&mut drop)?;
    p.a.inc(dword_ptr(V_RX_DROPPED))?;
    p.a.jmp(more)?;
    p.bind(&mut done)?;
    p.a.ret()
}

/// `int 80h`: EAX = number, EBX, ECX, EDX = arguments; the result replaces EAX.
fn emit_syscalls(p: &mut Program, lib: &Lib) -> Asm {
    let mut syscall = lib.syscall;
    let mut write = p.label();
    let mut exit = p.label();
    let mut back = p.label();
    p.bind(&mut syscall)?;
    save_context(p)?;
    p.a.inc(dword_ptr(V_SYSCALLS))?;
    p.a.mov(eax, dword_ptr(esp + F_EAX))?;
    p.a.cmp(eax, SYS_WRITE)?;
    p.a.je(write)?;
    p.a.cmp(eax, SYS_EXIT)?;
    p.a.je(exit)?;
    p.a.mov(dword_ptr(esp + F_EAX), ENOSYS.wrapping_neg())?;
    p.a.jmp(back)?;

    // write(fd, buffer, length): fd 1 only; the buffer must lie in the task's user pages.
    p.bind(&mut write)?;
    p.a.mov(dword_ptr(esp + F_EAX), EBADF.wrapping_neg())?;
    p.a.cmp(ebx, 1)?;
    p.a.jne(back)?;
    p.a.mov(dword_ptr(esp + F_EAX), EFAULT.wrapping_neg())?;
    p.a.cmp(ecx, USER_BASE)?;
    p.a.jb(back)?;
    p.a.cmp(edx, 0x1000)?;
    p.a.ja(back)?;
    p.a.lea(eax, dword_ptr(ecx + edx))?;
    p.a.cmp(eax, USER_END)?;
    p.a.ja(back)?;
    p.a.mov(dword_ptr(esp + F_EAX), edx)?;
    p.a.mov(esi, ecx)?;
    p.a.mov(ecx, edx)?;
    p.a.call(lib.write_buf)?;
    current_slot(p)?;
    p.a.inc(dword_ptr(ebx + T_WRITES))?;
    p.bind(&mut back)?;
    restore_context(p)?;

    p.bind(&mut exit)?;
    p.a.mov(ebx, dword_ptr(esp + F_EBX))?;
    p.a.jmp(lib.task_exit)
}

/// Exceptions: a task that faults is killed; a fault in the kernel stops the machine.
fn emit_exceptions(p: &mut Program, lib: &Lib) -> Asm {
    let mut common = p.label();
    for vector in 0..32u32 {
        let mut stub = lib.exception_stubs[vector as usize];
        p.bind(&mut stub)?;
        if !matches!(vector, 8 | 10..=14 | 17) {
            p.a.push(0)?;
        }
        p.a.push(vector)?;
        p.a.jmp(common)?;
    }
    let mut kernel_fault = p.label();
    p.bind(&mut common)?;
    save_context(p)?;
    lib.say(p, "\n[kernel] exception ")?;
    p.a.mov(eax, dword_ptr(esp + F_VECTOR))?;
    p.a.call(lib.print_dec)?;
    lib.say(p, " (error code 0x")?;
    p.a.mov(eax, dword_ptr(esp + F_ERROR))?;
    p.a.call(lib.print_hex)?;
    lib.say(p, ") at eip 0x")?;
    p.a.mov(eax, dword_ptr(esp + F_EXC_EIP))?;
    p.a.call(lib.print_hex)?;
    lib.say(p, ", cr2 0x")?;
    p.a.mov(eax, cr2)?;
    p.a.call(lib.print_hex)?;
    p.a.test(byte_ptr(esp + F_EXC_CS), 3)?;
    p.a.jz(kernel_fault)?;
    lib.say(p, ": the task is killed\n")?;
    p.a.mov(ebx, 0xFFu32)?;
    p.a.jmp(lib.task_exit)?;
    p.bind(&mut kernel_fault)?;
    lib.say(p, ": in the kernel; stopping\n")?;
    p.a.jmp(lib.poweroff)
}
