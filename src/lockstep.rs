//! Lockstep execution (`--engine lockstep`): the translator runs the machine and a second CPU
//! runs the interpreter behind it on a copy of memory, and the run stops at the first
//! divergence, with both states.
//!
//! Design, and why:
//! - **Units.** The translator runs as usual (chained blocks, the jump cache) for at most
//!   [`UNIT_STEPS`] steps per *unit* (less when a port write or a deadline ends the run), and the
//!   shadow interpreter then takes the same number of steps. With `BT86_JIT=nochain,unit` every
//!   unit is a single block, for pinpointing a divergence.
//! - **Devices see the translator's I/O only.** Port reads, writes, interrupt acknowledges and
//!   NMIs of the unit are recorded on the way to the devices, each tagged with the retired count
//!   the translator announced before it (`PortIo::sync_time`), and replayed to the shadow: its
//!   reads get the recorded values, its writes must match the recorded ones (a different port,
//!   size or value is a divergence), and it is told an interrupt is pending exactly at the
//!   instruction boundary where the translator took one. So the comparison is of CPU behaviour,
//!   with identical inputs.
//! - **What is compared.** After every unit: the architectural state (general registers, EIP,
//!   EFLAGS with the lazy flags materialized, segment registers with their caches, descriptor
//!   tables, control registers, CPL, halt and shadow state, the retired count and the TSC).
//!   Every [`MEMORY_EVERY`] units (or, once the guest has written many pages, every *pages/2*
//!   units, so that comparing stays a small share of the time), and when the run stops: the
//!   guest RAM pages either CPU ever wrote.
//!   The lazy-flag record itself is not compared (the translator leaves operands it knows are
//!   irrelevant unwritten); the flags it stands for are.
//! - **Cost.** Every instruction runs twice, so lockstep is slower than the interpreter; it is a
//!   debugging and testing mode.

use std::fmt::Write as _;

use emu_core::cpu::StepResult;
use emu_core::{Cpu, CpuState, PortIo, SegReg, Size};

use crate::machine::Machine;

/// Units between two comparisons of written memory.
pub const MEMORY_EVERY: u64 = 64;

/// Most steps the translator runs before the states are compared.
pub const UNIT_STEPS: u64 = 128;

/// One port-level event of a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    Read {
        port: u16,
        size: Size,
        value: u32,
    },
    Write {
        port: u16,
        size: Size,
        value: u32,
    },
    /// An interrupt acknowledged at this retired count.
    Ack(u8, u64),
    /// An NMI taken at this retired count.
    Nmi(u64),
}

/// The interpreter shadow of lockstep execution.
#[derive(Debug)]
pub struct Lockstep {
    shadow: Cpu,
    units: u64,
    /// The unit after which written memory is compared next.
    memory_due: u64,
    /// The translator's state at the end of the last unit: a difference at the start of the
    /// next one is the machine's doing (the TSC counting while halted, the A20 gate, a reset).
    last: Option<CpuState>,
    /// The first divergence, once found.
    pub divergence: Option<String>,
}

/// Records the translator's port traffic on its way to the devices.
struct Recorder<'a, P: PortIo> {
    inner: P,
    log: &'a mut Vec<Event>,
    /// The retired count the translator last announced.
    at: u64,
}

impl<P: PortIo> PortIo for Recorder<'_, P> {
    fn io_read(&mut self, port: u16, size: Size) -> u32 {
        let value = self.inner.io_read(port, size);
        self.log.push(Event::Read { port, size, value });
        value
    }

    fn io_write(&mut self, port: u16, size: Size, value: u32) {
        self.log.push(Event::Write { port, size, value });
        self.inner.io_write(port, size, value);
    }

    fn interrupt_pending(&mut self) -> bool {
        self.inner.interrupt_pending()
    }

    fn acknowledge_interrupt(&mut self) -> u8 {
        let v = self.inner.acknowledge_interrupt();
        self.log.push(Event::Ack(v, self.at));
        v
    }

    fn take_nmi(&mut self) -> bool {
        let t = self.inner.take_nmi();
        if t {
            self.log.push(Event::Nmi(self.at));
        }
        t
    }

    fn sync_time(&mut self, retired: u64) {
        self.at = retired;
        self.inner.sync_time(retired);
    }
}

/// Replays a unit's port traffic to the shadow.
struct Replay<'a> {
    log: &'a [Event],
    next: usize,
    mismatch: Option<String>,
    /// The shadow's retired count at the boundary being stepped.
    at: u64,
}

impl Replay<'_> {
    fn take(&mut self) -> Option<Event> {
        let e = self.log.get(self.next).copied();
        if e.is_some() {
            self.next += 1;
        }
        e
    }

    fn mismatch(&mut self, what: String) {
        if self.mismatch.is_none() {
            self.mismatch = Some(what);
        }
    }
}

impl PortIo for Replay<'_> {
    fn io_read(&mut self, port: u16, size: Size) -> u32 {
        match self.take() {
            Some(Event::Read { port: p, size: s, value }) if p == port && s == size => value,
            other => {
                self.mismatch(format!(
                    "interpreter read port {port:#x} ({size:?}); translator did {other:?}"
                ));
                size.mask()
            }
        }
    }

    fn io_write(&mut self, port: u16, size: Size, value: u32) {
        match self.take() {
            Some(Event::Write { port: p, size: s, value: v }) if p == port && s == size && v == value => {}
            other => self.mismatch(format!(
                "interpreter wrote {value:#x} to port {port:#x} ({size:?}); translator did {other:?}"
            )),
        }
    }

    fn interrupt_pending(&mut self) -> bool {
        matches!(self.log.get(self.next), Some(Event::Ack(_, at)) if *at == self.at)
    }

    fn acknowledge_interrupt(&mut self) -> u8 {
        match self.take() {
            Some(Event::Ack(v, _)) => v,
            other => {
                self.mismatch(format!("interpreter acknowledged an interrupt; translator did {other:?}"));
                0xFF
            }
        }
    }

    fn take_nmi(&mut self) -> bool {
        if matches!(self.log.get(self.next), Some(Event::Nmi(at)) if *at == self.at) {
            self.next += 1;
            return true;
        }
        false
    }
}

impl Lockstep {
    /// A shadow of `cpu`: its state, TLB and a copy of its memory.
    pub fn new(cpu: &Cpu) -> Result<Lockstep, String> {
        let mut shadow = Cpu::new(cpu.mem.size() as u64).map_err(|e| format!("lockstep: {e}"))?;
        shadow.mem = cpu.mem.try_clone().map_err(|e| format!("lockstep: {e}"))?;
        shadow.state = cpu.state.clone();
        shadow.tlb = cpu.tlb.clone();
        shadow.tlb.flush_fast();
        shadow.rep_batch = cpu.rep_batch;
        shadow.injection = cpu.injection;
        Ok(Lockstep { shadow, units: 0, memory_due: MEMORY_EVERY, last: None, divergence: None })
    }
}

/// Runs one unit in the translator and the same steps in the shadow, and compares.
pub(crate) fn run(m: &mut Machine, limit: jit::RunLimit) -> (StepResult, u64) {
    let (j, cpu, bus, slot) = m.jit_parts();
    let Some(j) = j else { return (cpu.step(bus.bus), 1) };
    if slot.is_none() {
        match Lockstep::new(cpu) {
            Ok(l) => *slot = Some(Box::new(l)),
            Err(e) => {
                *slot = Some(Box::new(Lockstep {
                    shadow: Cpu::new(4096).expect("4 KiB"),
                    units: 0,
                    memory_due: MEMORY_EVERY,
                    last: None,
                    divergence: Some(e),
                }));
                return (StepResult::Retired, 0);
            }
        }
    }
    let l = slot.as_deref_mut().expect("created above");
    if l.divergence.is_some() {
        return (StepResult::Retired, 0);
    }
    if let Some(last) = l.last.take() {
        if last != cpu.state {
            if cpu.state.retired < last.retired || cpu.state.eip != last.eip {
                // A reset: the machine may have reloaded memory too; start the shadow afresh.
                match Lockstep::new(cpu) {
                    Ok(fresh) => l.shadow = fresh.shadow,
                    Err(e) => {
                        l.divergence = Some(e);
                        return (StepResult::Retired, 0);
                    }
                }
            } else {
                l.shadow.state = cpu.state.clone();
            }
        }
    }
    let before = cpu.state.clone();
    let mut log = Vec::new();
    let limit = jit::RunLimit { steps: limit.steps.min(UNIT_STEPS), ..limit };
    let out = {
        let mut rec = Recorder { inner: bus, log: &mut log, at: cpu.state.retired };
        j.run(cpu, &mut rec, limit)
    };
    let mut replay = Replay { log: &log, next: 0, mismatch: None, at: 0 };
    let mut shadow_result = StepResult::Retired;
    for _ in 0..out.steps {
        replay.at = l.shadow.state.retired;
        shadow_result = l.shadow.step(&mut replay);
        if shadow_result != StepResult::Retired {
            break;
        }
    }
    l.units += 1;
    let mut problems = Vec::new();
    if let Some(m) = replay.mismatch.take() {
        problems.push(m);
    }
    if replay.next != log.len() {
        problems.push(format!(
            "the interpreter used {} of the translator's {} port events",
            replay.next,
            log.len()
        ));
    }
    if shadow_result != out.result {
        problems.push(format!("step result: translator {:?}, interpreter {shadow_result:?}", out.result));
    }
    problems.extend(compare_states(&cpu.state, &l.shadow.state));
    let stopping = out.result != StepResult::Retired;
    if problems.is_empty() && (l.units >= l.memory_due || stopping) {
        let (p, pages) = compare_memory(cpu, &l.shadow);
        problems.extend(p);
        // Pages stay "written" for good (code the translator runs writes RAM directly), so the
        // comparisons grow with the guest's footprint: space them out in proportion, keeping
        // their share of the time small (a Linux guest writes tens of thousands of pages).
        l.memory_due = l.units + MEMORY_EVERY.max(pages / 2);
    }
    if !problems.is_empty() {
        l.divergence = Some(report(&before, cpu, &l.shadow, out.steps, &problems));
    }
    l.last = Some(cpu.state.clone());
    (out.result, out.steps)
}

/// The state with the lazy flags materialized (what lockstep compares).
fn architectural(s: &CpuState) -> CpuState {
    let mut a = s.clone();
    let f = s.eflags();
    a.set_eflags(f);
    a.eflags = f;
    a
}

/// Differences in architectural state (see the module header).
fn compare_states(t: &CpuState, i: &CpuState) -> Vec<String> {
    if architectural(t) == architectural(i) {
        return Vec::new();
    }
    let mut d = Vec::new();
    let names = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"];
    for (n, name) in names.iter().enumerate() {
        if t.regs[n] != i.regs[n] {
            d.push(format!("{name}: translator {:08x}, interpreter {:08x}", t.regs[n], i.regs[n]));
        }
    }
    let mut field = |name: &str, a: String, b: String| {
        if a != b {
            d.push(format!("{name}: translator {a}, interpreter {b}"));
        }
    };
    field("eip", format!("{:08x}", t.eip), format!("{:08x}", i.eip));
    field("eflags", format!("{:08x}", t.eflags()), format!("{:08x}", i.eflags()));
    for s in SegReg::ALL {
        field(s.name(), format!("{:?}", t.seg(s)), format!("{:?}", i.seg(s)));
    }
    field("ldtr/tr", format!("{:?} {:?}", t.ldtr, t.tr), format!("{:?} {:?}", i.ldtr, i.tr));
    field("gdtr/idtr", format!("{:?} {:?}", t.gdtr, t.idtr), format!("{:?} {:?}", i.gdtr, i.idtr));
    field("cr", format!("{:08x?}", t.cr), format!("{:08x?}", i.cr));
    field("dr", format!("{:08x?}", t.dr), format!("{:08x?}", i.dr));
    field("cpl", t.cpl.to_string(), i.cpl.to_string());
    field(
        "halted/a20/shadows/nmi",
        format!("{} {} {} {} {}", t.halted, t.a20, t.int_shadow, t.ss_shadow, t.nmi_blocked),
        format!("{} {} {} {} {}", i.halted, i.a20, i.int_shadow, i.ss_shadow, i.nmi_blocked),
    );
    field("retired", t.retired.to_string(), i.retired.to_string());
    field("tsc", t.tsc.to_string(), i.tsc.to_string());
    field("sysenter", format!("{:08x?}", t.sysenter), format!("{:08x?}", i.sysenter));
    d
}

/// Differences in the RAM pages either CPU wrote, and how many pages that was.
fn compare_memory(t: &Cpu, i: &Cpu) -> (Vec<String>, u64) {
    let page = emu_core::memory::PAGE_SIZE;
    let mut pages: Vec<usize> = t.mem.dirty_pages().chain(i.mem.dirty_pages()).collect();
    pages.sort_unstable();
    pages.dedup();
    let count = pages.len() as u64;
    let (a, b) = (t.mem.ram(), i.mem.ram());
    for p in pages {
        let r = p * page..((p + 1) * page).min(a.len());
        if a[r.clone()] != b[r.clone()] {
            let at = r.clone().zip(a[r.clone()].iter().zip(&b[r])).find(|(_, (x, y))| x != y);
            if let Some((addr, (x, y))) = at {
                return (
                    vec![format!("memory at {addr:#010x}: translator {x:02x}, interpreter {y:02x}")],
                    count,
                );
            }
        }
    }
    (Vec::new(), count)
}

fn report(before: &CpuState, t: &Cpu, i: &Cpu, steps: u64, problems: &[String]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "lockstep divergence after {} instructions, in a unit of {steps} steps starting at {:04x}:{:08x}:",
        t.state.retired,
        before.seg(SegReg::Cs).selector,
        before.eip
    );
    for p in problems {
        let _ = writeln!(s, "  {p}");
    }
    let _ = writeln!(s, "translator state:  {}", brief(&t.state));
    let _ = write!(s, "interpreter state: {}", brief(&i.state));
    s
}

fn brief(s: &CpuState) -> String {
    format!(
        "eax={:08x} ecx={:08x} edx={:08x} ebx={:08x} esp={:08x} ebp={:08x} esi={:08x} edi={:08x} \
         eip={:08x} eflags={:08x} cs={:04x} ss={:04x} ds={:04x} cpl={}",
        s.regs[0],
        s.regs[1],
        s.regs[2],
        s.regs[3],
        s.regs[4],
        s.regs[5],
        s.regs[6],
        s.regs[7],
        s.eip,
        s.eflags(),
        s.seg(SegReg::Cs).selector,
        s.seg(SegReg::Ss).selector,
        s.seg(SegReg::Ds).selector,
        s.cpl
    )
}
