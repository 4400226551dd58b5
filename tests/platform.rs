//! The PC platform wired into the machine: timer interrupts through the PIC, HLT skipping to the
//! next deadline in virtual time, A20 and reset through the i8042 and port 0x92, power-off,
//! unclaimed ports, and determinism (the same guest and input give the same output and the same
//! instruction count).

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;

#[path = "common/engines.rs"]
mod engines;

use bt86::clock::TimeMode;
use bt86::engine::EngineKind;
use bt86::machine::{Exit, Machine, DEFAULT_RTC_EPOCH};
use bt86::serial::SerialInput;
use guest_images::Image;
use iced_x86::code_asm::*;

/// A `Write` whose bytes the test can read afterwards.
#[derive(Clone, Default)]
struct Capture(Rc<RefCell<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A real-mode image at 0000:7C00 from 16-bit code.
impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.borrow()).into_owned()
    }
}

fn image(build: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Image {
    let mut a = CodeAssembler::new(16).unwrap();
    build(&mut a).unwrap();
    let code = a.assemble(0x7C00).unwrap();
    Image {
        name: "test",
        description: "platform test",
        load: 0x7C00,
        entry_cs: 0,
        entry_ip: 0x7C00,
        stack_ss: 0,
        stack_sp: 0x7C00,
        code,
    }
}

fn machine(img: &Image) -> (Machine, Capture, Capture) {
    machine_with(img, EngineKind::Interp)
}

fn machine_with(img: &Image, engine: EngineKind) -> (Machine, Capture, Capture) {
    let (con, ser) = (Capture::default(), Capture::default());
    let mut m = Machine::with_platform(
        16 << 20,
        Box::new(con.clone()),
        Box::new(ser.clone()),
        TimeMode::Virtual,
        DEFAULT_RTC_EPOCH,
    )
    .unwrap();
    m.engine = engines::engine(engine);
    m.load_image(img).unwrap();
    (m, con, ser)
}

/// Programs the PIC pair (bases 0x08/0x70, only IRQ 0 unmasked) and the PIT at 100 Hz, points
/// IRQ 0 at a handler that counts in BX, and waits with STI; HLT for 100 ticks.
fn timer_guest(a: &mut CodeAssembler) -> Result<(), IcedError> {
    let mut start = a.create_label();
    let mut wait = a.create_label();
    let mut done = a.create_label();
    // The IRQ 0 handler sits right after a 2-byte jump, at 0x7C02.
    a.jmp(start)?;
    a.inc(bx)?;
    a.mov(al, 0x20u32)?;
    a.out(0x20u32, al)?; // EOI
    a.iret()?;
    a.set_label(&mut start)?;
    a.cli()?;
    a.xor(ax, ax)?;
    a.mov(ds, ax)?;
    a.mov(word_ptr(8 * 4 + 2), ax)?;
    a.mov(word_ptr(8 * 4), 0x7C02u32)?;
    for (port, v) in [
        (0x20u32, 0x11u32),
        (0x21, 0x08),
        (0x21, 0x04),
        (0x21, 0x01),
        (0xA0, 0x11),
        (0xA1, 0x70),
        (0xA1, 0x02),
        (0xA1, 0x01),
    ] {
        a.mov(al, v)?;
        a.out(port, al)?;
    }
    a.mov(al, 0xFEu32)?;
    a.out(0x21u32, al)?; // mask all but IRQ 0
    a.mov(al, 0xFFu32)?;
    a.out(0xA1u32, al)?;
    // PIT counter 0, mode 2, LSB then MSB: 11932 → 100 Hz.
    a.mov(al, 0x34u32)?;
    a.out(0x43u32, al)?;
    a.mov(al, (11932 & 0xFF) as u32)?;
    a.out(0x40u32, al)?;
    a.mov(al, (11932 >> 8) as u32)?;
    a.out(0x40u32, al)?;
    a.xor(bx, bx)?;
    a.set_label(&mut wait)?;
    a.sti()?;
    a.hlt()?;
    a.cmp(bx, 100)?;
    a.jb(wait)?;
    a.set_label(&mut done)?;
    a.mov(al, 0u32)?;
    a.out(0xF4u32, al)?;
    a.jmp(done)
}

#[test]
fn timer_interrupts_wake_hlt_and_idle_time_is_skipped() {
    for e in engines::engines_with_lockstep() {
        timer_interrupts_wake_hlt_with(e);
    }
}

fn timer_interrupts_wake_hlt_with(e: EngineKind) {
    let (mut m, _, _) = machine_with(&image(timer_guest), e);
    let exit = m.run(10_000_000);
    assert_eq!(exit, Exit::DebugExit { value: 0 });
    // 100 ticks of 10 ms: one second of virtual time, passed in a few thousand instructions.
    let now = m.now();
    assert!((980_000_000..1_020_000_000).contains(&now), "virtual time {now} ns");
    assert!(m.cpu.state.retired < 10_000, "{} instructions", m.cpu.state.retired);
    assert_eq!(m.cpu.stats.external_interrupts, 100);
    // The TSC kept counting through the halts: one tick per 10 ns of virtual time.
    let tsc = m.cpu.state.tsc;
    assert!(tsc.abs_diff(now / 10) < 1000, "tsc {tsc} at {now} ns");
}

#[test]
fn the_same_guest_runs_identically_twice() {
    let img = image(timer_guest);
    // Twice in each engine, and the same in every engine.
    let runs: Vec<(u64, u64, u64)> = engines::engines_with_lockstep()
        .into_iter()
        .flat_map(|e| [e, e])
        .map(|e| {
            let (mut m, _, _) = machine_with(&img, e);
            m.run(10_000_000);
            (m.cpu.state.retired, m.now(), m.cpu.state.tsc)
        })
        .collect();
    assert!(runs.iter().all(|r| *r == runs[0]), "{runs:?}");
}

#[test]
fn unclaimed_ports_read_all_ones_and_are_counted() {
    // in al, 0x5A; mov bl, al; in ax, dx (dx = 0x1234); out 0xF4, al (value = AL = 0xFF)
    let img = image(|a| {
        a.in_(al, 0x5Au32)?;
        a.mov(bl, al)?;
        a.mov(dx, 0x1234u32)?;
        a.in_(ax, dx)?;
        a.mov(al, bl)?;
        a.out(0xF4u32, al)
    });
    let (mut m, _, _) = machine(&img);
    assert_eq!(m.run(1000), Exit::DebugExit { value: 0xFF });
    assert_eq!(m.cpu.state.regs[0] & 0xFFFF, 0xFFFF);
    assert_eq!(m.bus.unknown_ports.get(&0x5A), Some(&1));
    assert_eq!(m.bus.unknown_ports.get(&0x1234), Some(&1));
    assert_eq!(m.bus.unknown_ports.get(&0x1235), Some(&1));
}

#[test]
fn port_0x92_and_the_i8042_drive_the_a20_gate() {
    // Fast A20 off through port 0x92, read the alias of 0x0000 at 0x100000, then back on through
    // the i8042 (command 0xD1, output port with bit 1 set).
    let img = image(|a| {
        a.mov(ax, 0xFFFFu32)?;
        a.mov(es, ax)?;
        a.xor(ax, ax)?;
        a.mov(ds, ax)?;
        a.mov(byte_ptr(0x0500), 0x11u32)?;
        a.mov(byte_ptr(0x0510).es(), 0x22u32)?; // 0xFFFF0 + 0x510 = 0x100500
        a.in_(al, 0x92u32)?;
        a.and(al, 0xFDu32)?;
        a.out(0x92u32, al)?; // A20 off (the i8042's output port is off at reset too)
        a.mov(cl, byte_ptr(0x0510).es())?; // wraps to 0x0500: 0x11
        a.mov(al, 0xD1u32)?;
        a.out(0x64u32, al)?;
        a.mov(al, 0x03u32)?;
        a.out(0x60u32, al)?; // A20 on, no reset
        a.mov(dl, byte_ptr(0x0510).es())?; // 0x22 again
        a.mov(al, 0u32)?;
        a.out(0xF4u32, al)
    });
    let (mut m, _, _) = machine(&img);
    assert_eq!(m.run(1000), Exit::DebugExit { value: 0 });
    assert_eq!(m.cpu.state.reg8(1), 0x11, "A20 off: the access wrapped to 0x0500");
    assert_eq!(m.cpu.state.reg8(2), 0x22, "A20 on again through the i8042");
}

#[test]
fn guest_requested_resets_reboot_and_power_off_ends_the_run() {
    // First boot: count boots at 0x600, reset through port 0x92 bit 0; second boot: reset
    // through i8042 command 0xFE; third boot: power off through port 0x604.
    let img = image(|a| {
        let mut second = a.create_label();
        let mut third = a.create_label();
        a.xor(ax, ax)?;
        a.mov(ds, ax)?;
        a.inc(byte_ptr(0x0600))?;
        a.cmp(byte_ptr(0x0600), 2)?;
        a.je(second)?;
        a.ja(third)?;
        a.mov(al, 0x01u32)?;
        a.out(0x92u32, al)?;
        a.hlt()?;
        a.set_label(&mut second)?;
        a.mov(al, 0xFEu32)?;
        a.out(0x64u32, al)?;
        a.hlt()?;
        a.set_label(&mut third)?;
        a.mov(dx, 0x604u32)?;
        a.mov(ax, 0x2000u32)?;
        a.out(dx, ax)?;
        a.hlt()
    });
    let (mut m, _, _) = machine(&img);
    assert_eq!(m.run(1000), Exit::PowerOff);
    assert_eq!(m.resets, 2);
    assert_eq!(m.cpu.mem.read_u8(0x600), 3);
}

#[test]
fn hlt_with_interrupts_off_stops_the_machine() {
    let (mut m, _, _) = machine(&image(|a| {
        a.cli()?;
        a.hlt()
    }));
    assert_eq!(m.run(1000), Exit::Halted);
}

/// Random port traffic at every device (and anywhere else), of every width, with time moving in
/// small and huge steps and interrupts acknowledged whenever the PIC asks: no panic, the machine
/// keeps answering, and the devices keep producing interrupts.
#[test]
fn random_port_traffic_cannot_break_the_platform() {
    use emu_core::{PortIo, Size};
    let (mut m, _, _) = machine(&image(|a| a.hlt()));
    let mut x: u64 = 0x0BAD_5EED_1234_5678;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    const PORTS: &[u16] = &[
        0x20, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1, 0x40, 0x41, 0x42, 0x43, 0x61, 0x3F8, 0x3F9, 0x3FA, 0x3FB,
        0x3FC, 0x3FD, 0x3FE, 0x3FF, 0x2F8, 0x2FB, 0x2FC, 0x70, 0x71, 0x60, 0x64, 0x92, 0x80, 0xE9, 0x605,
    ];
    let mut interrupts = 0u64;
    let mut now = 0u64;
    for _ in 0..300_000 {
        let r = rnd();
        let port = if r % 8 == 0 { (r >> 8) as u16 } else { PORTS[(r >> 8) as usize % PORTS.len()] };
        let size = [Size::B, Size::B, Size::W, Size::D][(r >> 24) as usize % 4];
        now += match (r >> 32) % 100 {
            0 => rnd() % 10_000_000_000,
            1..=10 => rnd() % 10_000_000,
            _ => rnd() % 10_000,
        };
        m.bus.now = now;
        // Never the reset or power-off ports' "do it" values: they end the run, not the test.
        if (r >> 40) % 2 == 0 && !matches!(port, 0x604 | 0x605 | 0x92 | 0x64 | 0xF4) {
            m.bus.io_write(port, size, rnd() as u32);
        } else {
            m.bus.io_read(port, size);
        }
        if (r >> 48) % 16 == 0 {
            let _ = m.bus.advance_to(now);
        }
        if m.bus.interrupt_pending() {
            m.bus.acknowledge_interrupt();
            interrupts += 1;
        }
    }
    assert!(interrupts > 100, "{interrupts} interrupts");
}

/// The demo kernel, with the same scripted serial input, twice: identical serial output and
/// identical instruction counts.
#[test]
fn the_demo_is_deterministic_with_scripted_input() {
    let script: &[u8] = b"help\necho same input, same run\nticks\npoweroff\n";
    let kernel = guest_images::demo_kernel();
    let mut results = Vec::new();
    // Twice with the interpreter, then with every other engine: all the same run.
    let mut runs = vec![EngineKind::Interp];
    runs.extend(engines::engines());
    for e in runs {
        let (con, ser) = (Capture::default(), Capture::default());
        let mut m = Machine::with_platform(
            16 << 20,
            Box::new(con.clone()),
            Box::new(ser.clone()),
            TimeMode::Virtual,
            DEFAULT_RTC_EPOCH,
        )
        .unwrap();
        m.engine = engines::engine(e);
        bt86::boot::multiboot::load_bytes(&mut m, &kernel.elf, kernel.name, kernel.name).unwrap();
        m.set_serial_input(SerialInput::from_reader(script, false));
        let exit = m.run(2_000_000_000);
        assert_eq!(exit, Exit::PowerOff, "serial output:\n{}", ser.text());
        results.push((ser.text(), m.cpu.state.retired, m.now()));
    }
    assert!(results[0].0.contains("same input, same run"), "{}", results[0].0);
    assert!(results.iter().all(|r| *r == results[0]), "the runs differ");
}

/// With CR0.NE = 0 (as after reset) an unmasked x87 exception asserts FERR# at the next waiting
/// instruction, which a PC routes to IRQ 13 (slave IRQ 5, vector 0x75 here); the handler
/// writes port 0xF0 (IGNNE#), clears the exception with FNCLEX and sends EOI to both PICs
/// (Intel SDM Vol. 1 Appendix D.2.1).
#[test]
fn fpu_error_raises_irq13_with_cr0_ne_clear() {
    let img = image(|a| {
        let mut start = a.create_label();
        let mut done = a.create_label();
        a.jmp(start)?;
        // The IRQ 13 handler at 0x7C02.
        a.inc(bx)?;
        a.out(0xF0u32, al)?;
        a.fnclex()?;
        a.mov(al, 0x20u32)?;
        a.out(0xA0u32, al)?;
        a.out(0x20u32, al)?;
        a.iret()?;
        a.set_label(&mut start)?;
        a.cli()?;
        a.xor(ax, ax)?;
        a.mov(ds, ax)?;
        a.mov(word_ptr(0x75 * 4 + 2), ax)?;
        a.mov(word_ptr(0x75 * 4), 0x7C02u32)?;
        for (port, v) in [
            (0x20u32, 0x11u32),
            (0x21, 0x08),
            (0x21, 0x04),
            (0x21, 0x01),
            (0xA0, 0x11),
            (0xA1, 0x70),
            (0xA1, 0x02),
            (0xA1, 0x01),
            (0x21, 0xFB), // only the cascade on the master
            (0xA1, 0xDF), // only IRQ 13 on the slave
        ] {
            a.mov(al, v)?;
            a.out(port, al)?;
        }
        a.xor(bx, bx)?;
        a.fninit()?;
        a.mov(word_ptr(0x600), 0x037Bu32)?; // ZE unmasked
        a.fldcw(word_ptr(0x600))?;
        a.sti()?;
        a.fld1()?;
        a.fldz()?;
        a.fdivp(st1, st0)?; // ES set; nothing yet
        a.mov(cx, bx)?; // 0: no interrupt before a waiting instruction
        a.wait()?; // FERR# → IRQ 13, taken after the WAIT
        a.nop()?;
        a.set_label(&mut done)?;
        a.mov(al, 0u32)?;
        a.out(0xF4u32, al)?;
        a.jmp(done)
    });
    let (mut m, _, _) = machine(&img);
    assert_eq!(m.run(100_000), Exit::DebugExit { value: 0 });
    assert_eq!(m.cpu.state.regs[1] & 0xFFFF, 0, "no IRQ 13 before the FWAIT");
    assert_eq!(m.cpu.state.regs[3] & 0xFFFF, 1, "one IRQ 13");
    assert!(!m.cpu.fpu.ferr() && !m.cpu.fpu.pending());
}
