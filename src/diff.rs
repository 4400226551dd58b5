//! `bt86 diff`: run the same Multiboot kernel in bt86 and in `qemu-system-i386` and report the
//! first instruction at which their architectural states disagree.
//!
//! How QEMU is observed: `-singlestep -d exec,cpu,nochain` makes QEMU's TCG translate one guest
//! instruction per block and log the CPU state before each block runs; `-dfilter` restricts the
//! log to the kernel's own address range, so the millions of instructions of QEMU's firmware
//! (SeaBIOS and the multiboot option ROM) are not logged, and `-D /dev/stdout` streams the log
//! into a pipe that bt86 parses as it comes (about 900 bytes and roughly 10 µs of QEMU time per
//! instruction: a 100,000-instruction kernel takes about 1.5 s). The alternative, QEMU's gdbstub
//! (`-s -S`), costs a round trip per instruction (about 1,500 steps/s) and was not chosen.
//!
//! What is compared, after every instruction: the eight general registers, EIP, EFLAGS (with
//! the flags the previous instruction leaves undefined masked, from iced-x86's tables), the six
//! segment registers with their cached base, limit and attributes, LDTR and TR, and CR0, CR2,
//! CR3, CR4. The accepted differences are listed in [`KNOWN_DIFFERENCES`] and in
//! `docs/differential-testing.md`, each with its reason.
//!
//! Alignment: both machines start at the kernel's entry point. The Multiboot specification
//! leaves most of the entry state undefined (ECX, EDX, ESI, EDI, EBP, ESP, most of EFLAGS and
//! CR0); bt86 takes those values from QEMU's first logged state, so both start equal. REP string
//! instructions retire one iteration per step in bt86 during a diff, as QEMU's one-instruction
//! blocks do. Time: QEMU runs with `-icount` so its timers follow its instruction count, but its
//! count includes the firmware, so its interrupts cannot come at the instructions where bt86's
//! would. bt86 therefore follows QEMU: it holds its own interrupt requests and, where QEMU's log
//! shows the entry of an interrupt gate's handler, takes that vector at the same boundary. QEMU
//! logs a block before it runs it, and marks one it then left unrun (`Stopped execution of TB
//! chain before …`, when an interrupt or exit request came in between): bt86 does not run that
//! instruction either. QEMU's RTC runs on its virtual clock from bt86's date (`-rtc
//! base=…,clock=vm`), not on the host's, so its interrupts are raised by QEMU's CPU thread at
//! points its instruction count decides, and the whole run is repeatable.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use emu_core::cpu::{Access, Injection};
use emu_core::state::SegReg;
use emu_core::Cpu;
use iced_x86::{Decoder, DecoderOptions, Formatter, Instruction, IntelFormatter, RflagsBits};
use thiserror::Error;

use crate::machine::{Exit, Machine, DEFAULT_RTC_EPOCH};

/// Steps bt86 may take outside the compared range (firmware-less code, HLT waits) before the
/// comparison gives up at that point.
const MAX_UNLOGGED_STEPS: u64 = 2_000_000;

/// How long QEMU may stay silent after bt86's guest stopped before it counts as stopped too.
const QUIET_END: Duration = Duration::from_secs(2);

/// Size of the Multiboot information structure (specification 0.6.96, up to the VBE fields).
const INFO_SIZE: u32 = 88;

/// Differences between bt86 and QEMU that `bt86 diff` accepts, with the reason for each.
pub const KNOWN_DIFFERENCES: &[(&str, &str)] = &[
    (
        "entry state left undefined by Multiboot",
        "ECX, EDX, ESI, EDI, EBP, ESP, EFLAGS and CR0 apart from PE/PG are undefined at a \
         Multiboot kernel's entry; bt86 starts from QEMU's values so that both start equal",
    ),
    (
        "the Multiboot information",
        "the two loaders put the information structure at different addresses and describe \
         memory slightly differently (QEMU reports 128 KiB less upper memory); bt86 puts a copy \
         of its structure at QEMU's address so EBX agrees, but values read from it may differ",
    ),
    (
        "accessed bit of cached segment attributes",
        "QEMU does not set the accessed bit when a far JMP or CALL loads CS (SDM Vol. 3A \
         §3.4.5.1 says it is set); the bit is masked in the comparison",
    ),
    (
        "flags an instruction leaves undefined",
        "masked per instruction from iced-x86's tables (Intel SDM Vol. 2), and then taken over \
         from QEMU, so that a later PUSHF or flag-reading instruction does not report a value the \
         SDM leaves open; bt86's own choices are documented in each instruction family's module",
    ),
    (
        "TR's cached type after LTR",
        "QEMU caches the available TSS type and marks only the descriptor in memory busy; bt86 \
         caches the busy type the descriptor then holds (SDM LTR: 'the TSS is marked busy'). The \
         busy bit of TR's cached attributes is masked",
    ),
    (
        "CPUID, RDTSC and port reads",
        "each implementation reports its own vendor, family and features, and its devices run on \
         its own clock (QEMU's counts its firmware too, at 8 ns per instruction where bt86 counts \
         10 ns), so a timer count, the RTC or a UART status read differs: after CPUID, RDTSC or \
         IN, bt86 takes QEMU's register values, so the guest goes on along the same path (the \
         report does not call this a divergence). Both RTCs start at the same date (QEMU with \
         `-rtc base=…,clock=vm`, bt86's default), and QEMU's runs on its instruction count \
         rather than the host's clock, so what a guest reads from it is repeatable",
    ),
    (
        "blocks QEMU logs twice, or logs and does not run",
        "QEMU logs a block when it enters it; a block it leaves before its first instruction (an \
         exit request, an interrupt request, the end of an -icount budget) is followed by a \
         `Stopped execution of TB chain` line: bt86 then does not run that instruction either, \
         and compares QEMU's next entry (the same block again, or the handler of the interrupt \
         QEMU took first) with the same state. Consecutive identical states are merged on both \
         sides (a `jmp $` loop)",
    ),
    (
        "the end of a REP string instruction",
        "QEMU's TCG runs REP as a block that re-enters itself and logs one more entry once the \
         count is 0; the architecture retires nothing more, and bt86 skips that entry",
    ),
    (
        "external interrupts",
        "QEMU's -icount counts its firmware's instructions too, so its interrupts come at other \
         instructions than bt86's would: during a diff bt86 holds its own requests and takes, at \
         each instruction boundary where QEMU entered an interrupt gate's handler, the same vector \
         (acknowledging its own PIC when that agrees), so the two stay aligned. That boundary is \
         the one before a block QEMU logged and did not run (see above): a request raised by \
         another thread (a device on the host's clock) reaches QEMU's CPU between logging a block \
         and running it",
    ),
    (
        "protected-mode segment checks on data accesses",
        "QEMU's TCG does not check segment limits, types or null selectors on memory accesses \
         (SDM Vol. 3A §5.3, §5.5): where a guest provokes such a fault, bt86 raises it and QEMU \
         does not",
    ),
];

/// Why a diff could not be run (as opposed to a divergence, which is a result).
#[derive(Debug, Error)]
pub enum DiffError {
    /// No QEMU at the given path or on PATH.
    #[error("cannot run {qemu}: {source} (install Debian's qemu-system-x86, or give --qemu PATH)")]
    QemuMissing {
        /// The command tried.
        qemu: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// QEMU exited without logging any instruction of the kernel.
    #[error("{qemu} exited with {status} before running the kernel; its last output:\n{output}")]
    QemuFailed {
        /// The command.
        qemu: PathBuf,
        /// Its exit status.
        status: String,
        /// The end of its standard error.
        output: String,
    },
    /// QEMU produced nothing for too long.
    #[error("{qemu} logged nothing for {secs} s{at}; stopped it. Its last output:\n{output}")]
    QemuHung {
        /// The command.
        qemu: PathBuf,
        /// The timeout.
        secs: u64,
        /// Where bt86 was meanwhile (empty before the first instruction).
        at: String,
        /// The end of its standard error.
        output: String,
    },
    /// The kernel cannot be booted by bt86.
    #[error("{0}")]
    Boot(#[from] crate::boot::BootError),
    /// Host I/O (temporary file).
    #[error("{what}: {source}")]
    Io {
        /// What failed.
        what: String,
        /// Why.
        source: std::io::Error,
    },
}

/// What to compare and how.
#[derive(Clone, Debug)]
pub struct DiffOptions {
    /// The QEMU binary.
    pub qemu: PathBuf,
    /// Stop comparing after this many instructions.
    pub max_instructions: u64,
    /// Instructions shown before a divergence.
    pub history: usize,
    /// How long QEMU may log nothing before it counts as hung.
    pub timeout: Duration,
    /// A deliberate bt86 bug (tests of the tool itself).
    pub injection: Option<Injection>,
    /// More arguments for QEMU, after the tool's own (so they override them: `-rtc clock=host`,
    /// say).
    pub qemu_args: Vec<String>,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            qemu: PathBuf::from("qemu-system-i386"),
            max_instructions: 50_000_000,
            history: 10,
            timeout: Duration::from_secs(30),
            injection: None,
            qemu_args: Vec::new(),
        }
    }
}

/// The result of a comparison.
#[derive(Debug)]
pub enum DiffOutcome {
    /// No divergence in `compared` instructions.
    Match {
        /// Instructions compared.
        compared: u64,
        /// External interrupts QEMU took that bt86 replayed at the same instructions.
        interrupts: u64,
        /// Blocks QEMU logged and then left without running them (see [`KNOWN_DIFFERENCES`]).
        unrun: u64,
        /// How bt86's run ended.
        bt86_exit: Option<Exit>,
    },
    /// The first divergence.
    Divergence(Box<Divergence>),
}

/// The first instruction at which the two disagree.
#[derive(Debug)]
pub struct Divergence {
    /// Instructions compared before (0-based index of the state that differs).
    pub index: u64,
    /// Names of the fields that differ.
    pub fields: Vec<String>,
    /// The full report (addresses, bytes, disassembly, both states, history).
    pub report: String,
    /// A timer or device interrupt explains it (see [`KNOWN_DIFFERENCES`]).
    pub unaligned_interrupt: bool,
}

/// The architectural state compared after every instruction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchState {
    /// EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI.
    pub gpr: [u32; 8],
    /// EIP.
    pub eip: u32,
    /// EFLAGS.
    pub eflags: u32,
    /// ES CS SS DS FS GS, then LDTR and TR: (selector, base, limit, attributes as QEMU prints
    /// them: descriptor bits 8–23 of the high dword).
    pub segs: [(u16, u32, u32, u32); 8],
    /// CR0, CR2, CR3, CR4.
    pub cr: [u32; 4],
    /// CPL.
    pub cpl: u8,
}

const GPR_NAMES: [&str; 8] = ["EAX", "ECX", "EDX", "EBX", "ESP", "EBP", "ESI", "EDI"];
const SEG_NAMES: [&str; 8] = ["ES", "CS", "SS", "DS", "FS", "GS", "LDT", "TR"];
const CR_NAMES: [&str; 4] = ["CR0", "CR2", "CR3", "CR4"];

impl ArchState {
    /// bt86's state in the same terms.
    pub fn of(cpu: &Cpu) -> ArchState {
        let s = &cpu.state;
        let seg = |g: &emu_core::Segment| (g.selector, g.base, g.limit, u32::from(g.attrs) << 8);
        let mut segs = [(0, 0, 0, 0); 8];
        for (k, r) in SegReg::ALL.iter().enumerate() {
            segs[k] = seg(s.seg(*r));
        }
        segs[6] = seg(&s.ldtr);
        segs[7] = seg(&s.tr);
        ArchState {
            gpr: s.regs,
            eip: s.eip,
            eflags: s.eflags(),
            segs,
            cr: [s.cr[0], s.cr[2], s.cr[3], s.cr[4]],
            cpl: s.cpl,
        }
    }

    /// The linear address of the next instruction.
    fn linear_ip(&self) -> u32 {
        self.segs[1].1.wrapping_add(self.eip)
    }

    /// Field-by-field differences, with `flags_mask` applied to EFLAGS.
    fn differences(&self, other: &ArchState, flags_mask: u32) -> Vec<String> {
        let mut d = Vec::new();
        for (k, name) in GPR_NAMES.iter().enumerate() {
            if self.gpr[k] != other.gpr[k] {
                d.push((*name).to_owned());
            }
        }
        if self.eip != other.eip {
            d.push("EIP".into());
        }
        if (self.eflags ^ other.eflags) & flags_mask != 0 {
            d.push("EFLAGS".into());
        }
        let protected = self.cr[0] & 1 != 0 && self.eflags & (1 << 17) == 0;
        for (k, name) in SEG_NAMES.iter().enumerate() {
            let (a, b) = (self.segs[k], other.segs[k]);
            // Attributes: descriptor bits 8–23 without the accessed bit and the limit nibble (see
            // KNOWN_DIFFERENCES). A null selector in protected mode (a data register, LDTR or TR)
            // makes the register unusable whatever its hidden part holds: compare the selector.
            // TR's busy bit is masked too (see KNOWN_DIFFERENCES).
            let attrs = |x: u32| x & if k == 7 { 0x00F0_FC00 } else { 0x00F0_FE00 };
            let null = |x: (u16, u32, u32, u32)| x.0 & !3 == 0 && k != 1;
            let same = if protected && null(a) && null(b) {
                a.0 == b.0
            } else {
                a.0 == b.0 && a.1 == b.1 && a.2 == b.2 && attrs(a.3) == attrs(b.3)
            };
            if !same {
                d.push((*name).to_owned());
            }
        }
        for (k, name) in CR_NAMES.iter().enumerate() {
            if self.cr[k] != other.cr[k] {
                d.push((*name).to_owned());
            }
        }
        d
    }

    /// A dump in QEMU's layout, marking `fields` with `*`.
    fn dump(&self, fields: &[String]) -> String {
        let m = |n: &str| if fields.iter().any(|f| f == n) { "*" } else { " " };
        let mut out = String::new();
        for (k, n) in GPR_NAMES.iter().enumerate() {
            out += &format!("{}{n}={:08x} ", m(n), self.gpr[k]);
            if k == 3 {
                out += "\n";
            }
        }
        out += &format!(
            "\n{}EIP={:08x} {}EFL={:08x} CPL={}\n",
            m("EIP"),
            self.eip,
            m("EFLAGS"),
            self.eflags,
            self.cpl
        );
        for (k, n) in SEG_NAMES.iter().enumerate() {
            let (sel, base, limit, attrs) = self.segs[k];
            out += &format!("{}{n:<3}={sel:04x} {base:08x} {limit:08x} {attrs:08x}\n", m(n));
        }
        for (k, n) in CR_NAMES.iter().enumerate() {
            out += &format!("{}{n}={:08x} ", m(n), self.cr[k]);
        }
        out.push('\n');
        out
    }
}

/// Parses one QEMU `-d cpu` block (the lines after a `Trace` line).
fn parse_qemu_block(lines: &[String]) -> Option<ArchState> {
    let mut st = ArchState::default();
    let hex = |s: &str| u32::from_str_radix(s.trim(), 16).ok();
    let field = |line: &str, key: &str| -> Option<u32> {
        let at = line.find(key)? + key.len();
        hex(line.get(at..at + 8)?)
    };
    let mut seen = 0;
    for line in lines {
        if line.starts_with("EAX=") {
            for (k, n) in ["EAX=", "EBX=", "ECX=", "EDX="].iter().enumerate() {
                st.gpr[[0, 3, 1, 2][k]] = field(line, n)?;
            }
            seen |= 1;
        } else if line.starts_with("ESI=") {
            for (k, n) in ["ESI=", "EDI=", "EBP=", "ESP="].iter().enumerate() {
                st.gpr[[6, 7, 5, 4][k]] = field(line, n)?;
            }
            seen |= 2;
        } else if line.starts_with("EIP=") {
            st.eip = field(line, "EIP=")?;
            st.eflags = field(line, "EFL=")?;
            let cpl = line.find("CPL=")? + 4;
            st.cpl = line.get(cpl..cpl + 1)?.parse().ok()?;
            seen |= 4;
        } else if line.starts_with("CR0=") {
            for (k, n) in CR_NAMES.iter().enumerate() {
                st.cr[k] = field(line, &format!("{n}="))?;
            }
            seen |= 8;
        } else {
            for (k, n) in SEG_NAMES.iter().enumerate() {
                let prefix = format!("{n:<3}=");
                if line.starts_with(&prefix) {
                    let rest: Vec<&str> = line[prefix.len()..].split_whitespace().collect();
                    let sel = u16::from_str_radix(rest.first()?, 16).ok()?;
                    st.segs[k] = (sel, hex(rest.get(1)?)?, hex(rest.get(2)?)?, hex(rest.get(3)?)?);
                    seen |= 16;
                }
            }
        }
    }
    (seen == 31).then_some(st)
}

/// One entry of QEMU's log, as the lockstep loop consumes it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Logged {
    /// The state before a block (one instruction) that QEMU entered.
    State(ArchState),
    /// The block just logged did not run: QEMU left it before its first instruction
    /// (`Stopped execution of TB chain before …`), because an interrupt request, an exit request
    /// or the end of its `-icount` budget came first. Only what QEMU logs next tells what it did
    /// instead: enter the same block again, or an interrupt handler.
    NotRun,
}

/// The line QEMU's `-d exec` writes when it leaves a block before running any of it
/// (accel/tcg/cpu-exec.c, `cpu_tb_exec`: the TB exit code says the block did not start).
const NOT_RUN_MARKER: &str = "Stopped execution of TB chain before ";

/// Reads QEMU's log and sends each parsed state, and a [`Logged::NotRun`] where QEMU says it
/// left the block it had just logged without running it.
fn read_qemu_log(out: impl Read, tx: mpsc::SyncSender<Logged>) {
    let mut block: Vec<String> = Vec::with_capacity(24);
    let mut last: Option<ArchState> = None;
    // Sends a finished block, merging it with an identical previous one (a `jmp $` spinning:
    // bt86 merges the same states on its side). False when the receiver is gone.
    let emit = |block: &mut Vec<String>, last: &mut Option<ArchState>| -> bool {
        let parsed = parse_qemu_block(block);
        block.clear();
        match parsed {
            Some(st) if last.as_ref() != Some(&st) => {
                *last = Some(st.clone());
                tx.send(Logged::State(st)).is_ok()
            }
            _ => true,
        }
    };
    for line in BufReader::with_capacity(1 << 20, out).lines() {
        let Ok(line) = line else { break };
        if line.starts_with("Trace ") {
            // A block not ended by its EFER line (another CPU model's layout): send it now.
            if !block.is_empty() && !emit(&mut block, &mut last) {
                return;
            }
        } else if line.starts_with(NOT_RUN_MARKER) {
            if !block.is_empty() && !emit(&mut block, &mut last) {
                return;
            }
            // The state last sent was not executed: when QEMU enters the same block again, that
            // entry is the one that runs, so it must not be merged away as a repetition.
            last = None;
            if tx.send(Logged::NotRun).is_err() {
                return;
            }
        } else {
            // The EFER line ends a dump: send the state at once, so a guest that stops (HLT
            // with interrupts off) still delivers its last state.
            let end = line.starts_with("EFER=");
            block.push(line);
            if end && !emit(&mut block, &mut last) {
                return;
            }
        }
    }
    if !block.is_empty() {
        emit(&mut block, &mut last);
    }
}

/// The physical range a Multiboot ELF32 kernel loads into (its PT_LOAD segments).
fn load_range(elf: &[u8]) -> Option<(u32, u32)> {
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| elf.get(o..o + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    if elf.get(0..4)? != b"\x7fELF" {
        return None;
    }
    let (phoff, phentsize, phnum) = (u32_at(28)? as usize, u16_at(42)? as usize, u16_at(44)? as usize);
    let mut lo = u32::MAX;
    let mut hi = 0u32;
    for k in 0..phnum {
        let ph = phoff + k * phentsize;
        if u32_at(ph)? == 1 {
            let paddr = u32_at(ph + 12)?;
            let memsz = u32_at(ph + 20)?;
            lo = lo.min(paddr);
            hi = hi.max(paddr.saturating_add(memsz));
        }
    }
    (lo < hi).then_some((lo, hi - 1))
}

/// Guest RAM of both machines, in MiB.
const RAM_MIB: u32 = 16;

/// Where QEMU's BIOS ROM is mapped below 4 GiB (SeaBIOS's 256 KiB image, reset vector at the top).
const BIOS_ROM_LOW: u32 = 0xFFFC_0000;

/// The linear addresses whose instructions are compared: QEMU logs only those (`-dfilter`),
/// and bt86 steps through the others without comparing.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Compared(Vec<(u32, u32)>);

impl Compared {
    /// For a Multiboot kernel loaded at `load` (first and last byte): its image, and every
    /// address from the end of RAM up to QEMU's BIOS ROM, where a kernel may map other code
    /// (tasks, user programs, a higher half). The rest of the low 16 MiB is left out: QEMU's
    /// firmware runs there before the kernel (SeaBIOS below 1 MiB and relocated to the top of
    /// RAM, the Multiboot option ROM), millions of instructions that would be logged for
    /// nothing. Code a kernel runs there is not compared, and an interrupt QEMU takes while it
    /// runs cannot be placed (the report says so).
    fn kernel(load: (u32, u32)) -> Compared {
        Compared(vec![load, (RAM_MIB << 20, BIOS_ROM_LOW - 1)])
    }

    fn contains(&self, linear: u32) -> bool {
        self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&linear))
    }

    /// QEMU's `-dfilter` argument.
    fn dfilter(&self) -> String {
        self.0.iter().map(|(lo, hi)| format!("{lo:#x}..{hi:#x}")).collect::<Vec<_>>().join(",")
    }
}

/// How QEMU boots the guest.
enum Boot<'a> {
    /// `-kernel FILE` (Multiboot).
    Kernel(&'a Path),
    /// A floppy image booted by SeaBIOS.
    Floppy(&'a Path),
}

/// QEMU's `-rtc` option: the clock starts at `epoch` (Unix seconds; bt86's RTC starts there
/// too) and runs on QEMU's virtual clock, which `-icount` derives from its instruction count.
/// QEMU's default, the host clock, makes the RTC's time, its update cycle and its interrupts
/// depend on how fast the host runs the logged guest: the values the guest reads differ from
/// run to run, and the RTC's timers fire in QEMU's main-loop thread, whose interrupt request
/// reaches the vCPU at any moment — between logging a block and running it, too.
fn rtc_option(epoch: u64) -> String {
    let secs = i64::try_from(epoch).unwrap_or(0);
    let (year, month, day) = devices::cmos::civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!("base={year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02},clock=vm", t / 3600, t / 60 % 60, t % 60)
}

/// A running QEMU whose log arrives on a channel.
struct Qemu {
    child: Child,
    rx: Receiver<Logged>,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Qemu {
    fn start(opts: &DiffOptions, boot: Boot<'_>, range: &Compared) -> Result<Qemu, DiffError> {
        let mut cmd = Command::new(&opts.qemu);
        cmd.args(["-accel", "tcg", "-display", "none", "-nodefaults", "-no-reboot"]);
        cmd.arg("-m").arg(RAM_MIB.to_string());
        match boot {
            Boot::Kernel(k) => {
                cmd.arg("-kernel").arg(k);
            }
            Boot::Floppy(f) => {
                cmd.arg("-drive").arg(format!("file={},format=raw,if=floppy", f.display()));
            }
        }
        // bt86's PC always has COM1 (3F8h, IRQ 4); -nodefaults leaves QEMU's without one unless
        // asked, and a guest would then read FFh from every UART register in QEMU only.
        let mut child = cmd
            .args(["-serial", "null"])
            .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-debugcon", "file:/dev/null"])
            .args(["-icount", "shift=3,align=off,sleep=off", "-singlestep", "-d", "exec,cpu,nochain"])
            .args(["-rtc", &rtc_option(DEFAULT_RTC_EPOCH)])
            .arg("-dfilter")
            .arg(range.dfilter())
            .args(["-D", "/dev/stdout"])
            .args(&opts.qemu_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| DiffError::QemuMissing { qemu: opts.qemu.clone(), source })?;
        let out = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::sync_channel(8192);
        std::thread::spawn(move || read_qemu_log(out, tx));
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut err = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut v) = sink.lock() {
                    v.extend_from_slice(&buf[..n]);
                }
            }
        });
        Ok(Qemu { child, rx, stderr })
    }

    /// The first logged state (QEMU has reached the range).
    fn first_state(&mut self, opts: &DiffOptions) -> Result<ArchState, DiffError> {
        loop {
            match self.rx.recv_timeout(opts.timeout) {
                Ok(Logged::State(s)) => return Ok(s),
                // No block was logged before the first: a "not run" has nothing to refer to.
                Ok(Logged::NotRun) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(DiffError::QemuHung {
                        qemu: opts.qemu.clone(),
                        secs: opts.timeout.as_secs(),
                        at: String::new(),
                        output: self.stderr_tail(),
                    })
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                    return Err(DiffError::QemuFailed {
                        qemu: opts.qemu.clone(),
                        status,
                        output: self.stderr_tail(),
                    });
                }
            }
        }
    }

    fn stderr_tail(&self) -> String {
        let v = self.stderr.lock().map(|v| v.clone()).unwrap_or_default();
        let s = String::from_utf8_lossy(&v);
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Disassembles the instruction at bt86's CS:EIP (and returns its bytes and the decoded form).
pub(crate) fn disassemble(cpu: &mut Cpu) -> (String, Vec<u8>, Option<Instruction>, Option<u32>) {
    let s = &cpu.state;
    let lin = s.seg(SegReg::Cs).base.wrapping_add(s.eip);
    let bits = if s.code32() { 32 } else { 16 };
    let user = cpu.user_mode();
    let pa = cpu.translate(lin, Access::Execute, user).ok();
    let mut bytes = Vec::new();
    for k in 0..15u32 {
        match cpu.translate(lin.wrapping_add(k), Access::Execute, user) {
            Ok(p) => bytes.push(cpu.mem.read_u8(p)),
            Err(_) => break,
        }
    }
    let mut d = Decoder::with_ip(bits, &bytes, u64::from(cpu.state.eip), DecoderOptions::NONE);
    let insn = d.decode();
    let mut text = String::new();
    IntelFormatter::new().format(&insn, &mut text);
    let len = insn.len().min(bytes.len());
    (text, bytes[..len].to_vec(), Some(insn).filter(|i| !i.is_invalid()), pa)
}

/// The vector of an external interrupt whose handler is where QEMU's state `q` is: bt86's own
/// pending request if it leads there (acknowledged, so the guest's EOI finds it in service),
/// otherwise the lowest vector of the IDT (IVT in real mode) whose gate leads there.
fn interrupt_vector_for(m: &mut Machine, q: &ArchState) -> Option<u8> {
    let target = q.linear_ip();
    let cpu = &mut m.cpu;
    let protected = cpu.state.protected() && !cpu.state.v86();
    let (base, limit) = (cpu.state.idtr.base, cpu.state.idtr.limit);
    let mut handler_of = |v: u8| -> Option<u32> {
        let read = |cpu: &mut Cpu, at: u32| {
            cpu.translate(at, Access::Read, false).ok().map(|pa| cpu.mem.read_u32(pa))
        };
        if protected {
            let at = base.wrapping_add(u32::from(v) * 8);
            if u32::from(v) * 8 + 7 > limit {
                return None;
            }
            let (lo, hi) = (read(cpu, at)?, read(cpu, at.wrapping_add(4))?);
            let typ = (hi >> 8) & 0x1F;
            if !matches!(typ, 0x06 | 0x07 | 0x0E | 0x0F) || hi & (1 << 15) == 0 {
                return None;
            }
            let offset = if typ & 8 != 0 { (lo & 0xFFFF) | (hi & 0xFFFF_0000) } else { lo & 0xFFFF };
            (u16::try_from(lo >> 16).ok()? & !3 == q.segs[1].0 & !3)
                .then_some(q.segs[1].1.wrapping_add(offset))
        } else {
            let entry = read(cpu, base.wrapping_add(u32::from(v) * 4))?;
            Some(((entry >> 16) << 4).wrapping_add(entry & 0xFFFF))
        }
    };
    if m.bus.pic.intr() {
        let v = m.bus.pic.acknowledge();
        if handler_of(v) == Some(target) {
            return Some(v);
        }
    }
    (0x20..=0xFFu8).chain(0x08..0x20).find(|&v| handler_of(v) == Some(target))
}

/// The registers an instruction fills with values that describe the machine or the time
/// (CPUID, RDTSC, a port read from a device running on its own clock), which two
/// implementations never share.
fn host_defined_outputs(i: Option<&Instruction>) -> &'static [usize] {
    use iced_x86::Code;
    match i.map(Instruction::code) {
        Some(Code::Cpuid) => &[0, 1, 2, 3],
        Some(Code::Rdtsc) => &[0, 2],
        Some(
            Code::In_AL_imm8
            | Code::In_AX_imm8
            | Code::In_EAX_imm8
            | Code::In_AL_DX
            | Code::In_AX_DX
            | Code::In_EAX_DX,
        ) => &[0],
        _ => &[],
    }
}

/// A string instruction with a REP prefix.
fn is_rep_string(i: &Instruction) -> bool {
    (i.has_rep_prefix() || i.has_repe_prefix() || i.has_repne_prefix())
        && emu_core::isa::lookup(i.code())
            .is_some_and(|info| info.props.contains(emu_core::isa::Props::STRING))
}

/// Whether the REP counter (CX or ECX by address size) is 0 in `st`.
fn counter_zero(i: &Instruction, st: &ArchState) -> bool {
    let a32 = (0..i.op_count())
        .any(|n| matches!(i.op_kind(n), iced_x86::OpKind::MemorySegESI | iced_x86::OpKind::MemoryESEDI));
    if a32 {
        st.gpr[1] == 0
    } else {
        st.gpr[1] & 0xFFFF == 0
    }
}

/// EFLAGS bits that `insn` leaves undefined (`cl`: CL when it ran, for shift counts). Beyond
/// iced-x86's tables: OF after a shift or rotate whose masked count is not 1 (SDM Vol. 2B
/// SAL/SAR/SHL/SHR, RCL/RCR/ROL/ROR, SHLD, SHRD: "the OF flag is undefined").
fn undefined_flags(insn: Option<&Instruction>, cl: u8) -> u32 {
    let Some(i) = insn else { return 0 };
    use iced_x86::{Mnemonic, OpKind};
    let shift = matches!(
        i.mnemonic(),
        Mnemonic::Rol
            | Mnemonic::Ror
            | Mnemonic::Rcl
            | Mnemonic::Rcr
            | Mnemonic::Shl
            | Mnemonic::Sal
            | Mnemonic::Shr
            | Mnemonic::Sar
            | Mnemonic::Shld
            | Mnemonic::Shrd
    );
    let multi_bit_of = if shift {
        let last = i.op_count() - 1;
        let count = match i.op_kind(last) {
            OpKind::Immediate8 => i.immediate8(),
            _ => cl,
        };
        if count & 0x1F != 1 {
            1 << 11
        } else {
            0
        }
    } else {
        0
    };
    let u = i.rflags_undefined();
    [
        (RflagsBits::OF, 1 << 11),
        (RflagsBits::SF, 1 << 7),
        (RflagsBits::ZF, 1 << 6),
        (RflagsBits::AF, 1 << 4),
        (RflagsBits::PF, 1 << 2),
        (RflagsBits::CF, 1 << 0),
    ]
    .iter()
    .filter(|(b, _)| u & b != 0)
    .fold(multi_bit_of, |acc, (_, m)| acc | m)
}

/// Runs `elf` under bt86 and QEMU and compares them instruction by instruction.
pub fn diff_kernel(elf: &[u8], name: &str, opts: &DiffOptions) -> Result<DiffOutcome, DiffError> {
    let range = Compared::kernel(load_range(elf).unwrap_or((0x10_0000, 0x3F_FFFF)));
    let dir =
        std::env::temp_dir().join(format!("bt86-diff-{}-{}", std::process::id(), name.replace('/', "_")));
    std::fs::create_dir_all(&dir)
        .map_err(|source| DiffError::Io { what: format!("{}", dir.display()), source })?;
    let file = dir.join("kernel.elf");
    std::fs::write(&file, elf)
        .map_err(|source| DiffError::Io { what: format!("{}", file.display()), source })?;
    let result = diff_file(elf, name, &file, &range, opts);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Runs a real-mode image (`guest_images::Image`) under bt86 and QEMU and compares them. QEMU
/// boots it from a floppy through SeaBIOS, whose boot sector then loads the rest; bt86 loads it
/// directly. The comparison covers the program proper, after the 512-byte boot sector: bt86 runs
/// its own boot sector up to the program's first instruction, takes the whole compared state
/// from QEMU's first logged state there (registers, EFLAGS, segments, control registers — what
/// the BIOS left), and both go on from equal states.
pub fn diff_image(image: &guest_images::Image, opts: &DiffOptions) -> Result<DiffOutcome, DiffError> {
    let start = image.load + guest_images::SECTOR as u32;
    let end = image.load + image.code.len() as u32 - 1;
    let range = Compared(vec![(start, end)]);
    let dir = std::env::temp_dir().join(format!("bt86-diff-{}-{}", std::process::id(), image.name));
    std::fs::create_dir_all(&dir)
        .map_err(|source| DiffError::Io { what: format!("{}", dir.display()), source })?;
    let file = dir.join("floppy.img");
    let result = std::fs::write(&file, guest_images::boot_disk(image))
        .map_err(|source| DiffError::Io { what: format!("{}", file.display()), source })
        .and_then(|()| {
            let mut qemu = Qemu::start(opts, Boot::Floppy(&file), &range)?;
            let first = qemu.first_state(opts)?;
            let mut m = Machine::new(u64::from(RAM_MIB) << 20, Box::new(std::io::sink())).map_err(|e| {
                DiffError::Io { what: "guest memory".into(), source: std::io::Error::other(e.to_string()) }
            })?;
            m.load_image(image).map_err(|e| DiffError::Io {
                what: format!("image `{}`", image.name),
                source: std::io::Error::other(e.to_string()),
            })?;
            m.cpu.rep_batch = 1;
            m.cpu.injection = opts.injection;
            for _ in 0..100_000 {
                if ArchState::of(&m.cpu).linear_ip() == first.linear_ip() {
                    break;
                }
                if !matches!(m.run(1), Exit::StepLimit) {
                    break;
                }
            }
            sync_from(&mut m.cpu, &first);
            lockstep(&mut m, &mut qemu, first, &range, opts)
        });
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Loads every compared field of `q` into bt86's CPU.
fn sync_from(cpu: &mut Cpu, q: &ArchState) {
    let s = &mut cpu.state;
    s.regs = q.gpr;
    s.eip = q.eip;
    s.set_eflags(q.eflags);
    let seg = |x: (u16, u32, u32, u32)| emu_core::Segment {
        selector: x.0,
        base: x.1,
        limit: x.2,
        attrs: ((x.3 >> 8) & 0xF0FF) as u16,
    };
    for (k, r) in SegReg::ALL.iter().enumerate() {
        *s.seg_mut(*r) = seg(q.segs[k]);
    }
    s.ldtr = seg(q.segs[6]);
    s.tr = seg(q.segs[7]);
    s.cr = [q.cr[0], s.cr[1], q.cr[1], q.cr[2], q.cr[3]];
    s.cpl = q.cpl;
    cpu.tlb.flush_all();
}

fn diff_file(
    elf: &[u8],
    name: &str,
    file: &Path,
    range: &Compared,
    opts: &DiffOptions,
) -> Result<DiffOutcome, DiffError> {
    let mut qemu = Qemu::start(opts, Boot::Kernel(file), range)?;
    let first = qemu.first_state(opts)?;

    let mut m = Machine::new(u64::from(RAM_MIB) << 20, Box::new(std::io::sink())).map_err(|e| {
        DiffError::Io { what: "guest memory".into(), source: std::io::Error::other(e.to_string()) }
    })?;
    crate::boot::multiboot::load_bytes(&mut m, elf, name, name)?;
    m.cpu.rep_batch = 1;
    m.cpu.injection = opts.injection;
    // The entry state the Multiboot specification leaves undefined: take QEMU's.
    {
        let s = &mut m.cpu.state;
        for r in [1, 2, 4, 5, 6, 7] {
            s.regs[r] = first.gpr[r];
        }
        s.set_eflags(first.eflags);
        s.cr[0] = (first.cr[0] & !1) | (s.cr[0] & 1);
    }
    // The boot information: a copy of bt86's structure at the address QEMU's loader chose, so
    // EBX agrees (the fields themselves are bt86's; see KNOWN_DIFFERENCES).
    let (ours, theirs) = (m.cpu.state.regs[3], first.gpr[3]);
    if ours != theirs {
        let info: Vec<u8> = (0..INFO_SIZE).map(|k| m.cpu.mem.read_u8(ours + k)).collect();
        if m.cpu.mem.load(u64::from(theirs), &info).is_ok() {
            m.cpu.state.regs[3] = theirs;
        }
    }

    lockstep(&mut m, &mut qemu, first, range, opts)
}

/// Compares bt86 (`m`, about to start) with QEMU's log from `first` on, instruction by
/// instruction, at the linear addresses `range` covers.
fn lockstep(
    m: &mut Machine,
    qemu: &mut Qemu,
    first: ArchState,
    range: &Compared,
    opts: &DiffOptions,
) -> Result<DiffOutcome, DiffError> {
    let mut history: VecDeque<String> = VecDeque::with_capacity(opts.history + 1);
    let mut prev_insn: Option<Instruction> = None;
    let mut prev_eip = 0u32;
    let mut prev_cl = 0u8;
    let mut prev_state: Option<ArchState> = None;
    let mut finished: Option<Exit> = None;
    let mut interrupts_replayed = 0u64;
    let mut unrun = 0u64;
    m.bus.hold_interrupts = true;
    let mut q = Some(first);
    let mut compared = 0u64;
    while compared < opts.max_instructions {
        // bt86: step until it is about to run an instruction QEMU logs.
        let mut bt86_exit = finished.take();
        let mut outside = 0u64;
        let b = if bt86_exit.is_some() {
            None
        } else {
            loop {
                outside += 1;
                if outside > MAX_UNLOGGED_STEPS {
                    // bt86 spins outside the compared range, or waits in HLT for an interrupt
                    // that its own clock does not bring while QEMU has gone on.
                    let at = ArchState::of(&m.cpu);
                    let note = format!(
                        "bt86 ran {MAX_UNLOGGED_STEPS} steps without reaching an instruction QEMU logs \
                         (halted: {}, external interrupts so far: {})",
                        m.cpu.state.halted, m.cpu.stats.external_interrupts
                    );
                    let q_now = q.take();
                    let mut d = divergence(
                        m,
                        compared,
                        &at,
                        q_now.as_ref(),
                        &history,
                        (prev_insn.as_ref(), undefined_flags(prev_insn.as_ref(), prev_cl)),
                        &note,
                    );
                    if let DiffOutcome::Divergence(dv) = &mut d {
                        dv.unaligned_interrupt |= m.cpu.state.halted || m.cpu.stats.external_interrupts > 0;
                    }
                    return Ok(d);
                }
                let s = &m.cpu.state;
                let snap = ArchState::of(&m.cpu);
                let in_range = range.contains(snap.linear_ip());
                // A halted bt86 waits here: the interrupt that wakes it is QEMU's (below).
                if s.halted && s.eflags() & emu_core::state::fl::IF != 0 {
                    break Some(snap);
                }
                // The same merging as QEMU's side: a state equal to the last one compared (a `jmp $`
                // spinning) is not compared again.
                if in_range && !s.halted && prev_state.as_ref() != Some(&snap) {
                    break Some(snap);
                }
                match m.run(1) {
                    Exit::StepLimit => {}
                    other => {
                        bt86_exit = Some(other);
                        break None;
                    }
                }
            }
        };
        let Some(qs) = q.take() else {
            // QEMU's trace ended (its guest exited or powered off).
            return Ok(match b {
                None => DiffOutcome::Match { compared, interrupts: interrupts_replayed, unrun, bt86_exit },
                Some(b) => divergence(
                    m,
                    compared,
                    &b,
                    None,
                    &history,
                    (prev_insn.as_ref(), undefined_flags(prev_insn.as_ref(), prev_cl)),
                    "QEMU's run ended here; bt86 goes on",
                ),
            });
        };
        // QEMU's TCG runs a REP string instruction as a block that re-enters itself until the
        // count is 0, and logs that last entry too: skip it (the architecture retires nothing).
        let mut qs = qs;
        while let (Some(p), Some(b)) = (&prev_insn, b.as_ref()) {
            if !(is_rep_string(p) && qs.eip == prev_eip && b.eip != qs.eip && counter_zero(p, &qs)) {
                break;
            }
            match next_state(qemu, opts.timeout) {
                Ok(Some(next)) => qs = next,
                _ => break,
            }
        }
        let Some(b) = b else {
            let end = ArchState::of(&m.cpu);
            let note = format!("bt86's run ended here ({bt86_exit:?}); QEMU goes on");
            return Ok(divergence(
                m,
                compared,
                &end,
                Some(&qs),
                &history,
                (prev_insn.as_ref(), undefined_flags(prev_insn.as_ref(), prev_cl)),
                &note,
            ));
        };
        // Results that describe the machine rather than compute something (CPUID's identity and
        // features, the time-stamp counter) cannot agree: bt86 takes QEMU's (KNOWN_DIFFERENCES).
        let mut b = b;
        for &r in host_defined_outputs(prev_insn.as_ref()) {
            m.cpu.state.regs[r] = qs.gpr[r];
            b.gpr[r] = qs.gpr[r];
        }
        // Interrupts follow QEMU: where QEMU's next state is the handler of an interrupt gate
        // (or IVT entry) and bt86's is not, QEMU took an external interrupt at this boundary;
        // bt86, whose own requests are held, takes the same vector here.
        let b = match (b.linear_ip() != qs.linear_ip(), m.cpu.state.eflags() & emu_core::state::fl::IF != 0) {
            (true, true) => match interrupt_vector_for(m, &qs) {
                Some(vector) => {
                    let _ = m.cpu.inject_external(vector);
                    interrupts_replayed += 1;
                    ArchState::of(&m.cpu)
                }
                None => b,
            },
            _ => b,
        };
        let undefined = undefined_flags(prev_insn.as_ref(), prev_cl);
        let fields = b.differences(&qs, !undefined);
        if !fields.is_empty() {
            return Ok(divergence(
                m,
                compared,
                &b,
                Some(&qs),
                &history,
                (prev_insn.as_ref(), undefined_flags(prev_insn.as_ref(), prev_cl)),
                "",
            ));
        }
        // Flags the previous instruction left undefined may hold other values in the two
        // machines; the SDM allows either. bt86 takes QEMU's from here on, so that a later PUSHF
        // or flag-reading instruction does not report that allowed difference.
        if (b.eflags ^ qs.eflags) & undefined != 0 {
            let f = m.cpu.state.eflags();
            m.cpu.state.set_eflags((f & !undefined) | (qs.eflags & undefined));
        }
        compared += 1;
        // Whether QEMU ran this instruction shows in its next log entry: a "not run" mark says it
        // left the block first (an interrupt request or an exit request came in between), and
        // then bt86 does not run it either. That entry follows at once; if QEMU stays quiet for
        // a moment, its guest may have stopped (HLT with interrupts off, an exit port): bt86 runs
        // its instruction to see whether its guest stops there too.
        let (text, _, insn, _) = disassemble(&mut m.cpu);
        let cl = m.cpu.state.regs[1] as u8;
        let mut ran = false;
        let mut next = qemu.rx.recv_timeout(QUIET_END.min(opts.timeout));
        if next.is_err() {
            finished = step(m);
            ran = true;
            if next == Err(RecvTimeoutError::Timeout) && finished.is_none() {
                next = qemu.rx.recv_timeout(opts.timeout.saturating_sub(QUIET_END));
            }
        }
        let not_run = next == Ok(Logged::NotRun);
        q = match next {
            Ok(Logged::NotRun) if ran => {
                let note = format!(
                    "QEMU marked this instruction as not run only after logging nothing for {} s, \
                     when bt86 had already run it; the two cannot be aligned here",
                    QUIET_END.as_secs()
                );
                let at = ArchState::of(&m.cpu);
                let undefined = undefined_flags(prev_insn.as_ref(), prev_cl);
                return Ok(divergence(
                    m,
                    compared,
                    &at,
                    None,
                    &history,
                    (prev_insn.as_ref(), undefined),
                    &note,
                ));
            }
            Ok(Logged::NotRun) => {
                // QEMU did not run it: neither does bt86. QEMU's next entry is the same block
                // again (compared again, not merged), or the handler of the interrupt it took
                // first, which the next round replays at this boundary.
                compared -= 1;
                unrun += 1;
                prev_state = None;
                match next_state(qemu, opts.timeout) {
                    Ok(s) => s,
                    Err(()) => return Err(hung(m, qemu, opts, compared)),
                }
            }
            Ok(Logged::State(s)) => Some(s),
            Err(RecvTimeoutError::Timeout) if finished.is_some() => None,
            Err(RecvTimeoutError::Timeout) => return Err(hung(m, qemu, opts, compared)),
            Err(RecvTimeoutError::Disconnected) => None,
        };
        if !not_run {
            // The instruction retired: remember it for the history and the flag mask.
            history.push_back(format!("{:04x}:{:08x}  {text}", b.segs[1].0, b.eip));
            if history.len() > opts.history {
                history.pop_front();
            }
            prev_insn = insn;
            prev_cl = cl;
            prev_eip = b.eip;
            prev_state = Some(b.clone());
            if !ran {
                // If bt86 stops right after this instruction, QEMU must have no further state:
                // the next round finds out.
                finished = step(m);
            }
        }
    }
    Ok(DiffOutcome::Match { compared, interrupts: interrupts_replayed, unrun, bt86_exit: None })
}

/// Runs bt86 for one step; `Some(exit)` when its guest stopped there.
fn step(m: &mut Machine) -> Option<Exit> {
    match m.run(1) {
        Exit::StepLimit => None,
        other => Some(other),
    }
}

/// QEMU's next logged state, passing over "not run" marks: `Ok(None)` when its log ended,
/// `Err(())` when it logged nothing for `timeout`.
fn next_state(qemu: &Qemu, timeout: Duration) -> Result<Option<ArchState>, ()> {
    loop {
        match qemu.rx.recv_timeout(timeout) {
            Ok(Logged::State(s)) => return Ok(Some(s)),
            Ok(Logged::NotRun) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(None),
            Err(RecvTimeoutError::Timeout) => return Err(()),
        }
    }
}

/// The error for a QEMU that logged nothing for `opts.timeout`, saying where bt86 was.
fn hung(m: &mut Machine, qemu: &Qemu, opts: &DiffOptions, compared: u64) -> DiffError {
    let (text, _, _, _) = disassemble(&mut m.cpu);
    let at = format!(
        " while bt86, after {compared} instructions in step, was at {:04x}:{:08x} ({text})",
        m.cpu.state.seg(SegReg::Cs).selector,
        m.cpu.state.eip
    );
    DiffError::QemuHung {
        qemu: opts.qemu.clone(),
        secs: opts.timeout.as_secs(),
        at,
        output: qemu.stderr_tail(),
    }
}

/// Builds the divergence report.
fn divergence(
    m: &mut Machine,
    index: u64,
    b: &ArchState,
    q: Option<&ArchState>,
    history: &VecDeque<String>,
    (prev, undefined): (Option<&Instruction>, u32),
    note: &str,
) -> DiffOutcome {
    let fields = q.map(|q| b.differences(q, !undefined)).unwrap_or_default();
    // An interrupt handler's entry on either side after a non-branching instruction means an
    // external interrupt arrived at a different instruction in the two machines.
    let unaligned_interrupt = q.is_some_and(|q| q.eip != b.eip && m.cpu.stats.external_interrupts > 0);
    let (text, bytes, _, pa) = disassemble(&mut m.cpu);
    let lin = b.linear_ip();
    let mut r = String::new();
    r += &format!("first divergence after {index} instructions compared\n");
    if !note.is_empty() {
        r += &format!("{note}\n");
    }
    if unaligned_interrupt {
        r += "(an external interrupt arrived at a different instruction in the two machines: see \
              the known differences; this is not a CPU disagreement)\n";
    }
    r += &format!(
        "at {:04x}:{:08x} (linear {lin:#010x}, physical {}): {} [{}]\n",
        b.segs[1].0,
        b.eip,
        pa.map_or("not mapped".into(), |p| format!("{p:#010x}")),
        text,
        bytes.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(" ")
    );
    if let Some(p) = prev {
        r += &format!("the state after: {p} (undefined flags masked: {undefined:#x})\n");
    }
    if !fields.is_empty() {
        r += &format!("differing: {}\n", fields.join(" "));
    }
    r += "\nbt86:\n";
    r += &b.dump(&fields);
    if let Some(q) = q {
        r += "\nQEMU:\n";
        r += &q.dump(&fields);
    }
    r += "\nthe last instructions before it:\n";
    for h in history {
        r += &format!("  {h}\n");
    }
    DiffOutcome::Divergence(Box::new(Divergence { index, fields, report: r, unaligned_interrupt }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_qemu_state_block() {
        let block = "EAX=2badb002 EBX=00009500 ECX=00100040 EDX=00010511
ESI=00000000 EDI=00001000 EBP=00000000 ESP=00006f08
EIP=00100040 EFL=00000006 [-----P-] CPL=0 II=0 A20=1 SMM=0 HLT=0
ES =0010 00000000 ffffffff 00cf9300 DPL=0 DS   [-WA]
CS =0008 00000000 ffffffff 00cf9a00 DPL=0 CS32 [-R-]
SS =0010 00000000 ffffffff 00cf9300 DPL=0 DS   [-WA]
DS =0010 00000000 ffffffff 00cf9300 DPL=0 DS   [-WA]
FS =0010 00000000 ffffffff 00cf9300 DPL=0 DS   [-WA]
GS =0010 00000000 ffffffff 00cf9300 DPL=0 DS   [-WA]
LDT=0000 00000000 0000ffff 00008200 DPL=0 LDT
TR =0000 00000000 0000ffff 00008b00 DPL=0 TSS32-busy
GDT=     000c02b8 00000027
IDT=     00000000 000003ff
CR0=00000011 CR2=00000000 CR3=00000000 CR4=00000000";
        let lines: Vec<String> = block.lines().map(str::to_owned).collect();
        let st = parse_qemu_block(&lines).expect("parses");
        assert_eq!(st.gpr, [0x2badb002, 0x00100040, 0x00010511, 0x9500, 0x6f08, 0, 0, 0x1000]);
        assert_eq!((st.eip, st.eflags, st.cpl), (0x100040, 6, 0));
        assert_eq!(st.segs[1], (8, 0, 0xffff_ffff, 0x00cf_9a00));
        assert_eq!(st.segs[7], (0, 0, 0xffff, 0x8b00));
        assert_eq!(st.cr, [0x11, 0, 0, 0]);
        assert!(parse_qemu_block(&lines[..5]).is_none(), "an incomplete block is not a state");
    }

    #[test]
    fn undefined_flags_come_from_the_instruction() {
        // mul ecx: SF ZF AF PF undefined.
        let i = Decoder::new(32, &[0xF7, 0xE1], DecoderOptions::NONE).decode();
        assert_eq!(undefined_flags(Some(&i), 0), (1 << 7) | (1 << 6) | (1 << 4) | (1 << 2));
        let add = Decoder::new(32, &[0x01, 0xC8], DecoderOptions::NONE).decode();
        assert_eq!(undefined_flags(Some(&add), 0), 0);
        // shl eax, 3: OF undefined (a multi-bit shift); shl eax, 1: OF defined.
        let shl3 = Decoder::new(32, &[0xC1, 0xE0, 0x03], DecoderOptions::NONE).decode();
        assert_ne!(undefined_flags(Some(&shl3), 0) & (1 << 11), 0);
        let shl1 = Decoder::new(32, &[0xD1, 0xE0], DecoderOptions::NONE).decode();
        assert_eq!(undefined_flags(Some(&shl1), 0) & (1 << 11), 0);
    }

    #[test]
    fn qemu_s_rtc_starts_where_bt86_s_does_and_runs_on_virtual_time() {
        assert_eq!(rtc_option(DEFAULT_RTC_EPOCH), "base=2024-01-01T00:00:00,clock=vm");
        assert_eq!(rtc_option(951_827_696), "base=2000-02-29T12:34:56,clock=vm");
    }

    #[test]
    fn a_block_qemu_left_unrun_is_marked_and_not_merged() {
        let dump = |eip: &str| {
            format!(
                "Trace 0: 0x7f0000000000 [00000000/{eip}/000000b0/ff020201] \n\
                 EAX=00000000 EBX=00000000 ECX=00000000 EDX=00000000\n\
                 ESI=00000000 EDI=00000000 EBP=00000000 ESP=00001000\n\
                 EIP={eip} EFL=00000202 [-------] CPL=0 II=0 A20=1 SMM=0 HLT=0\n\
                 ES =0010 00000000 ffffffff 00cf9300 DPL=0 DS   [-WA]\n\
                 CS =0008 00000000 ffffffff 00cf9a00 DPL=0 CS32 [-R-]\n\
                 SS =0010 00000000 ffffffff 00cf9300 DPL=0 DS   [-WA]\n\
                 DS =0010 00000000 ffffffff 00cf9300 DPL=0 DS   [-WA]\n\
                 FS =0010 00000000 ffffffff 00cf9300 DPL=0 DS   [-WA]\n\
                 GS =0010 00000000 ffffffff 00cf9300 DPL=0 DS   [-WA]\n\
                 LDT=0000 00000000 0000ffff 00008200 DPL=0 LDT\n\
                 TR =0000 00000000 0000ffff 00008b00 DPL=0 TSS32-busy\n\
                 GDT=     000c02b8 00000027\n\
                 IDT=     00000000 000003ff\n\
                 CR0=00000011 CR2=00000000 CR3=00000000 CR4=00000000\n\
                 EFER=0000000000000000\n"
            )
        };
        // A block logged, left unrun, entered again (not merged with the first entry), left
        // again, and then an interrupt handler instead.
        let stopped = "Stopped execution of TB chain before 0x7f0000000000 [00100010] \n";
        let log =
            [dump("00100010"), stopped.into(), dump("00100010"), stopped.into(), dump("00100500")].concat();
        let (tx, rx) = mpsc::sync_channel(16);
        read_qemu_log(log.as_bytes(), tx);
        let got: Vec<Logged> = rx.iter().collect();
        let eips: Vec<Option<u32>> = got
            .iter()
            .map(|l| match l {
                Logged::State(s) => Some(s.eip),
                Logged::NotRun => None,
            })
            .collect();
        assert_eq!(eips, [Some(0x100010), None, Some(0x100010), None, Some(0x100500)]);
        // Without the marks, a repeated state is merged (a `jmp $` spinning).
        let (tx, rx) = mpsc::sync_channel(16);
        read_qemu_log([dump("00100010"), dump("00100010")].concat().as_bytes(), tx);
        assert_eq!(rx.iter().count(), 1);
    }

    #[test]
    fn a_kernel_is_compared_in_its_image_and_above_ram_but_not_in_the_firmware() {
        let c = Compared::kernel((0x10_0000, 0x3F_FFFF));
        assert_eq!(c.dfilter(), "0x100000..0x3fffff,0x1000000..0xfffbffff");
        for (linear, compared) in [
            (0x10_0000, true),
            (0x3F_FFFF, true),
            (0x4000_0000, true),  // a kernel's mapped code (the demo's tasks)
            (0xC010_0000, true),  // a higher half
            (0x000F_E05B, false), // SeaBIOS
            (0x00FF_0000, false), // SeaBIOS relocated to the top of RAM
            (0xFFFF_FFF0, false), // the reset vector
        ] {
            assert_eq!(c.contains(linear), compared, "{linear:#x}");
        }
    }

    #[test]
    fn the_load_range_comes_from_the_program_headers() {
        let k = guest_images::kernels().into_iter().next().unwrap();
        let (lo, hi) = load_range(&k.elf).unwrap();
        assert_eq!(lo, 0x10_0000);
        assert!(hi > lo);
        assert!(load_range(b"not an elf").is_none());
    }
}
