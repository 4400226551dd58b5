//! The `bt86` command line.
//!
//! ```text
//! bt86 [run] [--image NAME | --raw FILE [--load ADDR] | --kernel FILE [--initrd FILE]
//!          [--append ARGS] | --bios FILE] [--memory MIB] [--serial stdio|file:PATH|none]
//!          [--time virtual|realtime] [--on-triple-fault stop|reset] [--max-steps N]
//!          [--timeout SECS] [--engine interp|jit|lockstep] [--stats]
//! bt86 conformance sst DIR [--verbose]
//! bt86 images
//! ```
//!
//! With no arguments it boots the embedded demo guest. The exit status of `run` follows QEMU's
//! isa-debug-exit convention (a guest write of `v` to port 0xF4 exits with `(v << 1) | 1`); a
//! power-off, a clean halt or Ctrl-A x exits 0, a guest that does not finish within
//! `--max-steps` 2, a triple fault 3, one still running after `--timeout` 4, a reset under
//! `--no-reboot` 5, and a host-side error (bad file, bad option) 64.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use bt86::boot::{bios, linux, multiboot};
use bt86::clock::TimeMode;
use bt86::engine::{Engine, EngineKind};
use bt86::machine::{Exit, Machine, TripleFaultAction, DEFAULT_RAM, DEFAULT_RTC_EPOCH};
use bt86::serial::{Console, SerialSpec, Tail};
use guest_images::Image;

/// Exit status for errors on the host side (usage, files).
const EXIT_USAGE: u8 = 64;

const USAGE: &str = "\
usage:
  bt86 [run] [options]              boot a guest (default: the embedded demo)
  bt86 conformance sst DIR [--verbose] [--min-pass-rate PCT]
                                    run SingleStepTests instruction vectors from DIR
                                    (exit 0 when all pass, or at least PCT percent)
  bt86 diff (--kernel FILE | --image NAME) [--qemu PATH] [--max N] [--history N]
            [--qemu-arg ARG]...
                                    run a guest in bt86 and qemu-system-i386 and report the
                                    first instruction where their states differ
                                    (exit 0 no divergence, 1 divergence, 64 error); each
                                    --qemu-arg is passed on to QEMU after the tool's own
  bt86 fuzz [--seed S] [--count N] [--out DIR] [--qemu PATH] [--jobs N]
                                    random programs diffed against QEMU; each divergence is
                                    minimized to a reproducer in DIR (default fuzz-out)
  bt86 bench-linux [--kernel FILE] [--initrd FILE] [--qemu PATH] [--timeout SECS]
                   [--engine E]...  boot the Linux guest under bt86 (engines jit and
                                    interp unless chosen) and under qemu-system-i386
                                    -cpu pentium2; report the times
                                    (default files: guest-images/linux/)
  bt86 bench [--workload NAME]... [--iterations N] [--qemu PATH | --no-qemu] [--no-interp]
                                    guest MIPS of the interpreter, the translator and QEMU TCG
                                    on the integer workloads (sieve, crc32, quicksort, matmul,
                                    strsearch)
  bt86 images [--write DIR]         list the embedded guest images (or write every
                                    Multiboot kernel to DIR/NAME.elf, e.g. for QEMU)

run options (at most one of --image, --raw, --kernel, --bios):
  --image NAME      an embedded guest image or Multiboot kernel (see `bt86 images`)
  --raw FILE        a flat real-mode binary, loaded at --load and entered at 0000:load
  --load ADDR       load address for --raw (default 0x7c00; hex with 0x, or decimal)
  --kernel FILE     a Linux bzImage, or a Multiboot kernel (ELF32, or any format with the
                    a.out kludge)
  --initrd FILE     a Linux kernel's initial RAM disk (initramfs)
  --append ARGS     a kernel's arguments (Multiboot: its command line is `FILE ARGS`;
                    Linux: the command line, default `console=ttyS0,115200`)
  --bios FILE       a BIOS ROM image (64 KiB to 16 MiB), started at the reset vector
  --memory MIB      guest RAM in MiB, 1 to 3072 (default 16; 128 for a Linux kernel)
  --serial stdio|file:PATH|none
                    the serial console COM1 (default stdio; on a terminal Ctrl-A x quits,
                    Ctrl-A h lists the console keys)
  --time virtual|realtime
                    virtual: time derived from executed instructions, every run identical
                    (default unless the console is an interactive terminal); realtime: paced
                    to the host clock
  --trace FROM[:COUNT]
                    log COUNT instructions (default a million) from retired count FROM on to
                    stderr: count, CS:EIP, physical address, bytes, disassembly
  --timeout SECS    stop a guest still running after SECS seconds of wall time (exit 4)
  --no-reboot       a reset the guest asks for stops the run (exit 5) instead of booting
                    again, as QEMU's -no-reboot (with Linux's panic=-1: a panic ends the run)
  --on-triple-fault stop|reset
                    stop (default, exit status 3) or reset the machine and boot again,
                    at most 100 times
  --max-steps N     stop after N instructions (default 2000000000)
  --engine interp|jit|lockstep
                    how guest code runs: the interpreter, the binary translator (the default
                    on x86-64 hosts), or both in lockstep, stopping at the first divergence
                    (exit status 6)
  --stats           print execution counters to stderr when the guest stops
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run_cli(&args) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("bt86: {msg}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn run_cli(args: &[String]) -> Result<ExitCode, String> {
    match args.first().map(String::as_str) {
        None => run_guest(&[]),
        Some("run") => run_guest(&args[1..]),
        Some(a) if a.starts_with("--") && a != "--help" => run_guest(args),
        Some("conformance") => conformance(&args[1..]),
        Some("diff") => diff(&args[1..]),
        Some("fuzz") => fuzz(&args[1..]),
        Some("bench-linux") => bench_linux(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("images") if args.get(1).map(String::as_str) == Some("--write") => {
            let dir = PathBuf::from(args.get(2).ok_or("images --write needs a directory")?);
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            for k in all_kernels() {
                let path = dir.join(format!("{}.elf", k.name));
                std::fs::write(&path, &k.elf).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Some("images") => {
            // Written with errors ignored: `bt86 images | head` closes the pipe early.
            let mut out = std::io::stdout().lock();
            for i in all_images() {
                let _ = writeln!(out, "{:<16} {}", i.name, i.description);
            }
            for k in all_kernels() {
                let _ = writeln!(out, "{:<16} {} (multiboot kernel)", k.name, k.description);
            }
            Ok(ExitCode::SUCCESS)
        }
        Some("help" | "--help" | "-h") => {
            let _ = std::io::stdout().write_all(USAGE.as_bytes());
            Ok(ExitCode::SUCCESS)
        }
        Some(other) => Err(format!("unknown command `{other}`\n{USAGE}")),
    }
}

/// Every image the binary carries: the demo, the benchmark loop, the self-checking tests.
/// Every embedded Multiboot kernel: the demo first, then the test kernels.
fn all_kernels() -> Vec<guest_images::Kernel> {
    let mut v = vec![guest_images::demo_kernel()];
    v.extend(guest_images::kernels());
    v.extend(guest_images::workloads().into_iter().map(|w| w.kernel));
    v
}

fn all_images() -> Vec<Image> {
    let mut v = vec![guest_images::primes(), guest_images::bench_loop(1000)];
    v.extend(guest_images::self_tests());
    v
}

fn diff(args: &[String]) -> Result<ExitCode, String> {
    use bt86::diff::{diff_kernel, DiffOptions, DiffOutcome};
    let mut opts = DiffOptions::default();
    let mut elf: Option<(Vec<u8>, String)> = None;
    let mut real_mode: Option<Image> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |opt: &str| it.next().cloned().ok_or_else(|| format!("{opt} needs a value"));
        match a.as_str() {
            "--kernel" => {
                let path = value("--kernel")?;
                let bytes = std::fs::read(&path).map_err(|e| format!("{path}: cannot read: {e}"))?;
                elf = Some((bytes, path));
            }
            "--image" => {
                let name = value("--image")?;
                if let Some(i) = all_images().into_iter().find(|i| i.name == name) {
                    real_mode = Some(i);
                } else {
                    let k = all_kernels()
                        .into_iter()
                        .find(|k| k.name == name)
                        .ok_or_else(|| format!("no embedded image named `{name}` (see `bt86 images`)"))?;
                    elf = Some((k.elf, name));
                }
            }
            "--qemu" => opts.qemu = PathBuf::from(value("--qemu")?),
            "--max" => opts.max_instructions = parse_number("--max", &value("--max")?)?,
            "--history" => opts.history = parse_number("--history", &value("--history")?)? as usize,
            "--qemu-arg" => opts.qemu_args.push(value("--qemu-arg")?),
            // A deliberate bt86 bug, for showing (and testing) that the comparison finds one.
            "--inject" => match value("--inject")?.as_str() {
                "adc-carry" => opts.injection = Some(emu_core::cpu::Injection::AdcCarry),
                other => return Err(format!("--inject: unknown bug `{other}` (known: adc-carry)")),
            },
            other => return Err(format!("unknown diff option `{other}`\n{USAGE}")),
        }
    }
    let (outcome, name) = match (elf, real_mode) {
        (_, Some(image)) => (bt86::diff::diff_image(&image, &opts), image.name.to_string()),
        (Some((bytes, name)), None) => (diff_kernel(&bytes, &name, &opts), name),
        (None, None) => return Err("diff needs --kernel FILE or --image NAME".into()),
    };
    let mut out = std::io::stdout().lock();
    match outcome.map_err(|e| e.to_string())? {
        DiffOutcome::Match { compared, interrupts, .. } => {
            let replayed = if interrupts > 0 {
                format!(" ({interrupts} interrupts taken where QEMU took them)")
            } else {
                String::new()
            };
            let _ = writeln!(out, "bt86 diff: {name}: no divergence in {compared} instructions{replayed}");
            Ok(ExitCode::SUCCESS)
        }
        DiffOutcome::Divergence(d) => {
            let _ = write!(out, "bt86 diff: {name}: {}", d.report);
            Ok(ExitCode::from(1))
        }
    }
}

fn conformance(args: &[String]) -> Result<ExitCode, String> {
    let (Some("sst"), Some(dir)) = (args.first().map(String::as_str), args.get(1)) else {
        return Err(format!("conformance needs a format and a directory\n{USAGE}"));
    };
    let mut verbose = false;
    let mut min_rate: Option<f64> = None;
    let mut it = args[2..].iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--verbose" => verbose = true,
            "--min-pass-rate" => {
                let v = it.next().ok_or("--min-pass-rate needs a percentage")?;
                let pct: f64 = v.parse().map_err(|_| format!("--min-pass-rate: `{v}` is not a number"))?;
                if !(0.0..=100.0).contains(&pct) {
                    return Err(format!("--min-pass-rate: {pct} is not a percentage"));
                }
                min_rate = Some(pct);
            }
            other => return Err(format!("unknown conformance option `{other}`")),
        }
    }
    let s = bt86::conformance::run_dir(&PathBuf::from(dir), &mut std::io::stdout(), verbose)
        .map_err(|e| e.to_string())?;
    // Without --min-pass-rate every compared test must pass.
    let ok = match min_rate {
        Some(pct) => s.pass_rate() >= pct,
        None => s.failed == 0,
    };
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

fn parse_number(opt: &str, v: &str) -> Result<u64, String> {
    let parsed = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    parsed.map_err(|_| format!("{opt}: `{v}` is not a number"))
}

/// Reads a flat real-mode binary and wraps it as an image entered at 0000:`load`.
fn raw_image(path: &str, load: u64) -> Result<Image, String> {
    let code = std::fs::read(path).map_err(|e| format!("{path}: cannot read: {e}"))?;
    if code.is_empty() {
        return Err(format!("{path}: the file is empty"));
    }
    if load > 0xFFFF {
        return Err(format!(
            "--load {load:#x}: a raw image is entered at 0000:load, so load must be below 0x10000"
        ));
    }
    // Real mode reaches 1 MiB + 64 KiB; the image must fit below 1 MiB to be reachable as loaded.
    if load + code.len() as u64 > 0xA0000 {
        return Err(format!(
            "{path}: {} bytes at {load:#x} do not fit in conventional memory (below 0xA0000)",
            code.len()
        ));
    }
    Ok(Image {
        name: "raw",
        description: "flat binary from the command line",
        load: load as u32,
        entry_cs: 0,
        entry_ip: load as u16,
        stack_ss: 0,
        stack_sp: 0x7C00,
        code,
    })
}

/// Guest RAM for a Linux kernel when `--memory` is not given (QEMU's default).
const DEFAULT_LINUX_RAM: u64 = 128 << 20;

/// True if the file at `path` starts like a Linux bzImage (an unreadable file is left to the
/// loader that reports it).
fn is_bzimage_file(path: &str) -> bool {
    use std::io::Read;
    let mut head = vec![0u8; 0x210];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && linux::is_bzimage(&head)
}

/// What `run` boots.
enum Guest {
    /// A real-mode image (embedded or `--raw`).
    Image(Image),
    /// An embedded Multiboot kernel.
    Embedded(guest_images::Kernel),
    /// A Multiboot kernel file.
    Kernel(PathBuf),
    /// A Linux bzImage file.
    Linux(String),
    /// A BIOS ROM file.
    Bios(PathBuf),
}

/// Guest RAM limits for `--memory`, in MiB (3 GiB keeps RAM clear of the 32-bit PCI/ROM hole).
const MEMORY_MIB: std::ops::RangeInclusive<u64> = 1..=3072;

#[expect(clippy::cast_precision_loss, reason = "a MIPS figure needs no more than 52 bits of precision")]
fn run_guest(args: &[String]) -> Result<ExitCode, String> {
    let mut image_name: Option<String> = None;
    let mut raw: Option<String> = None;
    let mut kernel: Option<String> = None;
    let mut bios_file: Option<String> = None;
    let mut append: Option<String> = None;
    let mut initrd: Option<String> = None;
    let mut load = 0x7C00u64;
    let mut max_steps: Option<u64> = None;
    let mut timeout: Option<f64> = None;
    let mut trace = None;
    let mut no_reboot = false;
    let mut ram: Option<u64> = None;
    let mut on_triple_fault = TripleFaultAction::Stop;
    let mut stats = false;
    let mut serial = SerialSpec::Stdio;
    let mut time: Option<TimeMode> = None;
    let mut engine = EngineKind::host_default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |opt: &str| it.next().cloned().ok_or_else(|| format!("{opt} needs a value"));
        match a.as_str() {
            "--engine" => {
                let v = value("--engine")?;
                engine = EngineKind::parse(&v)
                    .ok_or_else(|| format!("--engine: `{v}` is not one of interp, jit, lockstep"))?;
            }
            "--image" => image_name = Some(value("--image")?),
            "--raw" => raw = Some(value("--raw")?),
            "--kernel" => kernel = Some(value("--kernel")?),
            "--bios" => bios_file = Some(value("--bios")?),
            "--append" => append = Some(value("--append")?),
            "--initrd" => initrd = Some(value("--initrd")?),
            "--trace" => {
                let v = value("--trace")?;
                let (from, count) = v.split_once(':').unwrap_or((&v, "1000000"));
                trace = Some(bt86::machine::Trace {
                    from: parse_number("--trace", from)?,
                    count: parse_number("--trace", count)?,
                });
            }
            "--timeout" => {
                let v = value("--timeout")?;
                match v.parse::<f64>() {
                    Ok(t) if t > 0.0 && t.is_finite() => timeout = Some(t),
                    _ => return Err(format!("--timeout {v}: a number of seconds greater than 0")),
                }
            }
            "--load" => load = parse_number("--load", &value("--load")?)?,
            "--max-steps" => max_steps = Some(parse_number("--max-steps", &value("--max-steps")?)?),
            "--memory" => {
                let v = value("--memory")?;
                let mib = parse_number("--memory", &v)?;
                if !MEMORY_MIB.contains(&mib) {
                    return Err(format!(
                        "--memory {v}: guest RAM must be {} to {} MiB",
                        MEMORY_MIB.start(),
                        MEMORY_MIB.end()
                    ));
                }
                ram = Some(mib << 20);
            }
            "--on-triple-fault" => {
                on_triple_fault = match value("--on-triple-fault")?.as_str() {
                    "stop" => TripleFaultAction::Stop,
                    "reset" => TripleFaultAction::Reset,
                    other => {
                        return Err(format!("--on-triple-fault: `{other}` is neither `stop` nor `reset`"))
                    }
                }
            }
            "--stats" => stats = true,
            "--no-reboot" => no_reboot = true,
            "--serial" => serial = SerialSpec::parse(&value("--serial")?)?,
            "--time" => {
                time = Some(match value("--time")?.as_str() {
                    "virtual" => TimeMode::Virtual,
                    "realtime" => TimeMode::Realtime,
                    other => return Err(format!("--time: `{other}` is neither `virtual` nor `realtime`")),
                })
            }
            other => return Err(format!("unknown option `{other}`\n{USAGE}")),
        }
    }
    let chosen: Vec<&str> =
        [("--image", &image_name), ("--raw", &raw), ("--kernel", &kernel), ("--bios", &bios_file)]
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(opt, _)| *opt)
            .collect();
    if chosen.len() > 1 {
        return Err(format!("{} cannot be used together: choose one guest", chosen.join(" and ")));
    }
    let guest = if let Some(path) = raw {
        Guest::Image(raw_image(&path, load)?)
    } else if let Some(name) = image_name {
        if let Some(image) = all_images().into_iter().find(|i| i.name == name) {
            Guest::Image(image)
        } else if let Some(k) = all_kernels().into_iter().find(|k| k.name == name) {
            Guest::Embedded(k)
        } else {
            return Err(format!("no embedded image named `{name}` (see `bt86 images`)"));
        }
    } else if let Some(path) = kernel {
        if is_bzimage_file(&path) {
            Guest::Linux(path)
        } else {
            Guest::Kernel(PathBuf::from(path))
        }
    } else if let Some(path) = bios_file {
        Guest::Bios(PathBuf::from(path))
    } else {
        Guest::Embedded(guest_images::demo_kernel())
    };
    if initrd.is_some() && !matches!(guest, Guest::Linux(_)) {
        return Err("--initrd goes with a Linux kernel (--kernel FILE, a bzImage)".into());
    }
    let linux = matches!(guest, Guest::Linux(_));
    let ram = ram.unwrap_or(if linux { DEFAULT_LINUX_RAM } else { DEFAULT_RAM });
    // A Linux boot runs for billions of instructions: no step limit unless asked for.
    let max_steps = max_steps.unwrap_or(if linux { u64::MAX } else { 2_000_000_000 });
    if append.is_some() && !matches!(guest, Guest::Kernel(_) | Guest::Embedded(_) | Guest::Linux(_)) {
        return Err("--append gives a Multiboot kernel its arguments; it needs --kernel \
                    (or --image with an embedded kernel)"
            .into());
    }

    let (mut console, serial_out) = Console::open(&serial)?;
    // An interactive console wants the guest paced to the wall clock; anything else runs in
    // deterministic virtual time unless asked otherwise.
    let time = time.unwrap_or(if console.interactive { TimeMode::Realtime } else { TimeMode::Virtual });
    let rtc_epoch = match time {
        TimeMode::Virtual => DEFAULT_RTC_EPOCH,
        TimeMode::Realtime => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(DEFAULT_RTC_EPOCH, |d| d.as_secs()),
    };
    let (serial_out, tail) = Tail::new(serial_out);
    let mut m =
        Machine::with_platform(ram, Box::new(std::io::stdout()), Box::new(serial_out), time, rtc_epoch)
            .map_err(|e| format!("cannot create the machine: {e}"))?;
    if let Some(input) = console.input.take() {
        m.set_serial_input(input);
    }
    m.on_triple_fault = on_triple_fault;
    m.diagnostics = Box::new(std::io::stderr());
    let jit_options = jit::JitOptions { count_blocks: stats, ..jit::JitOptions::from_env() };
    m.engine = Engine::with_options(engine, jit_options)?;
    let name = match &guest {
        Guest::Image(image) => {
            m.load_image(image).map_err(|e| format!("image `{}`: {e}", image.name))?;
            image.name.to_string()
        }
        Guest::Embedded(k) => {
            // The command line as for a file: the kernel's name, then the arguments.
            let cmdline = match append.as_deref() {
                Some(args) => format!("{} {args}", k.name),
                None => k.name.to_string(),
            };
            multiboot::load_bytes(&mut m, &k.elf, k.name, &cmdline).map_err(|e| e.to_string())?;
            k.name.to_string()
        }
        Guest::Kernel(path) => {
            multiboot::load(&mut m, path, append.as_deref()).map_err(|e| e.to_string())?;
            display(path)
        }
        Guest::Linux(path) => {
            linux::load(&mut m, path, initrd.as_deref(), append.as_deref()).map_err(|e| e.to_string())?;
            path.clone()
        }
        Guest::Bios(path) => {
            bios::load(&mut m, path).map_err(|e| e.to_string())?;
            display(path)
        }
    };
    let start = Instant::now();
    m.trace = trace;
    m.no_reboot = no_reboot;
    m.wall_limit = timeout.map(|t| start + std::time::Duration::from_secs_f64(t));
    let exit = m.run(max_steps);
    let elapsed = start.elapsed();
    match &exit {
        Exit::TripleFault(s) => eprintln!("bt86: guest `{name}` stopped: {s}"),
        Exit::ResetLimit { resets, last: Some(last) } => eprintln!(
            "bt86: guest `{name}` kept triple-faulting: stopped after {resets} resets; last: {last}"
        ),
        Exit::ResetLimit { resets, last: None } => {
            eprintln!("bt86: guest `{name}` kept resetting itself: stopped after {resets} resets")
        }
        Exit::StepLimit => eprintln!("bt86: guest `{name}` did not finish within {max_steps} instructions"),
        Exit::TimeLimit => eprintln!(
            "bt86: guest `{name}` did not finish within --timeout {} s",
            timeout.unwrap_or_default()
        ),
        Exit::Quit => eprintln!("\r\nbt86: quit from the console (Ctrl-A x)"),
        Exit::Reboot => eprintln!("bt86: guest `{name}` asked for a reset (stopped: --no-reboot)"),
        Exit::Divergence(report) => eprintln!("bt86: guest `{name}`: {report}"),
        Exit::Halted | Exit::DebugExit { .. } | Exit::PowerOff => {}
    }
    // Leave raw mode before anything else is printed.
    drop(console);
    if matches!(
        exit,
        Exit::TripleFault(_) | Exit::ResetLimit { .. } | Exit::StepLimit | Exit::TimeLimit | Exit::Reboot
    ) {
        let st = &m.cpu.state;
        eprintln!(
            "bt86: stopped at CS:EIP {:04x}:{:08x} after {} instructions ({:.3} s of guest time)",
            st.seg(emu_core::SegReg::Cs).selector,
            st.eip,
            st.retired,
            m.now() as f64 / 1e9
        );
        let text = tail.text();
        let lines: Vec<&str> = text.lines().collect();
        if lines.is_empty() {
            eprintln!("bt86: the guest printed nothing on the serial console");
        } else {
            eprintln!("bt86: last serial output:");
            for l in &lines[lines.len().saturating_sub(12)..] {
                eprintln!("  | {l}");
            }
        }
    }
    if stats {
        let st = &m.cpu.stats;
        let retired = m.cpu.state.retired;
        let secs = elapsed.as_secs_f64();
        let tlb = &m.cpu.tlb.stats;
        let percent =
            |part: u64, whole: u64| if whole == 0 { 0.0 } else { part as f64 * 100.0 / whole as f64 };
        eprintln!("instructions retired: {retired}");
        eprintln!(
            "instructions decoded: {} ({} more served by the decode cache)",
            st.decoded, st.decode_cache_hits
        );
        eprintln!("exceptions delivered: {}", st.exceptions);
        eprintln!("software interrupts:  {}", st.soft_ints);
        eprintln!("external interrupts:  {}", st.external_interrupts);
        eprintln!("virtual time:         {:.6} s", m.now() as f64 / 1e9);
        if !m.bus.unknown_ports.is_empty() {
            let ports: Vec<String> =
                m.bus.unknown_ports.iter().map(|(p, n)| format!("{p:#06x}×{n}")).collect();
            eprintln!("unclaimed ports:      {}", ports.join(" "));
        }
        eprintln!(
            "TLB:                  {} hits, {} misses ({:.2}% hits), {} flushes, {} single-page flushes",
            tlb.hits,
            tlb.misses,
            percent(tlb.hits, tlb.hits + tlb.misses),
            tlb.flushes,
            tlb.page_flushes
        );
        eprintln!("engine:               {}", m.engine.kind());
        if let Some(j) = m.engine.jit_stats() {
            eprintln!("{j}");
        }
        eprintln!("wall time:            {secs:.3} s");
        if secs > 0.0 {
            eprintln!("guest MIPS:           {:.1}", retired as f64 / secs / 1e6);
        }
    }
    Ok(ExitCode::from(exit.status() as u8))
}

/// `bt86 bench-linux`: see [`bt86::linux_bench`].
fn bench_linux(args: &[String]) -> Result<ExitCode, String> {
    use bt86::linux_bench::{bt86_command, qemu_command, report, time_boot, BenchOptions};
    let dir = PathBuf::from("guest-images/linux");
    let mut o = BenchOptions {
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initramfs.cpio"),
        cmdline: "console=ttyS0,115200".into(),
        memory_mib: 128,
        qemu: PathBuf::from("qemu-system-i386"),
        timeout: std::time::Duration::from_secs(1800),
        engines: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |opt: &str| it.next().cloned().ok_or_else(|| format!("{opt} needs a value"));
        match a.as_str() {
            "--kernel" => o.kernel = PathBuf::from(value("--kernel")?),
            "--initrd" => o.initrd = PathBuf::from(value("--initrd")?),
            "--qemu" => o.qemu = PathBuf::from(value("--qemu")?),
            "--timeout" => {
                o.timeout = std::time::Duration::from_secs(parse_number("--timeout", &value("--timeout")?)?)
            }
            "--engine" => {
                let e = value("--engine")?;
                if bt86::engine::EngineKind::parse(&e).is_none() {
                    return Err(format!("bench-linux: unknown engine `{e}` (interp, jit or lockstep)"));
                }
                o.engines.push(e);
            }
            other => return Err(format!("bench-linux: unknown option `{other}`")),
        }
    }
    for f in [&o.kernel, &o.initrd] {
        if !f.is_file() {
            return Err(format!("{}: no such file (run scripts/fetch-linux-guest.sh first)", f.display()));
        }
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find bt86 itself: {e}"))?;
    if o.engines.is_empty() {
        o.engines = vec!["jit".into(), "interp".into()];
    }
    let mut runs = Vec::new();
    for e in &o.engines {
        eprintln!("bench-linux: booting {} under bt86 --engine {e} …", o.kernel.display());
        runs.push(time_boot(&format!("bt86-{e}"), bt86_command(&exe, &o, e), o.timeout)?);
    }
    eprintln!("bench-linux: booting it under {} …", o.qemu.display());
    runs.push(time_boot("qemu", qemu_command(&o), o.timeout)?);
    print!("{}", report(&runs));
    let ok = runs.iter().all(|t| t.done.is_some());
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `bt86 bench`: the workloads under the interpreter, the translator and QEMU (see
/// `bt86::bench`); prints a table of guest MIPS and ratios.
fn bench(args: &[String]) -> Result<ExitCode, String> {
    let mut opts = bt86::bench::BenchOptions {
        workloads: Vec::new(),
        iterations: None,
        qemu: find_in_path("qemu-system-i386"),
        interp: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |opt: &str| it.next().cloned().ok_or_else(|| format!("{opt} needs a value"));
        match a.as_str() {
            "--workload" => opts.workloads.push(value("--workload")?),
            "--iterations" => {
                opts.iterations =
                    Some(parse_number("--iterations", &value("--iterations")?)?.clamp(1, 1 << 20) as u32)
            }
            "--qemu" => opts.qemu = Some(PathBuf::from(value("--qemu")?)),
            "--no-qemu" => opts.qemu = None,
            "--no-interp" => opts.interp = false,
            other => return Err(format!("unknown bench option `{other}`")),
        }
    }
    if opts.qemu.is_none() {
        eprintln!("bench: no QEMU (qemu-system-i386 not on PATH, or --no-qemu): its column stays empty");
    }
    let rows = bt86::bench::run(&opts, &mut std::io::stderr()).map_err(|e| format!("bench: {e}"))?;
    let _ = std::io::stdout().write_all(bt86::bench::table(&rows).as_bytes());
    Ok(ExitCode::SUCCESS)
}

/// `name` in a directory of PATH.
fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()))
}

/// `bt86 fuzz --seed S --count N [--out DIR] [--qemu PATH] [--jobs N] [--inject adc-carry]`:
/// random programs in bt86 and QEMU in lockstep, each divergence minimized and saved as
/// `DIR/fuzz-<seed>-<index>.elf` (re-run with `bt86 diff --kernel`) and `.txt`. Exit status 0
/// without divergence, 1 with, 64 when the campaign cannot run.
fn fuzz(args: &[String]) -> Result<ExitCode, String> {
    use bt86::fuzz::{campaign, FuzzOptions};
    let mut opts = FuzzOptions {
        seed: 1,
        count: 100,
        out: PathBuf::from("fuzz-out"),
        diff: bt86::diff::DiffOptions::default(),
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |opt: &str| it.next().cloned().ok_or_else(|| format!("{opt} needs a value"));
        match a.as_str() {
            "--seed" => opts.seed = parse_number("--seed", &value("--seed")?)?,
            "--count" => opts.count = parse_number("--count", &value("--count")?)?,
            "--out" => opts.out = PathBuf::from(value("--out")?),
            "--qemu" => opts.diff.qemu = PathBuf::from(value("--qemu")?),
            "--jobs" => opts.jobs = parse_number("--jobs", &value("--jobs")?)?.max(1) as usize,
            "--inject" => match value("--inject")?.as_str() {
                "adc-carry" => opts.diff.injection = Some(emu_core::cpu::Injection::AdcCarry),
                other => return Err(format!("--inject: unknown bug `{other}` (known: adc-carry)")),
            },
            other => return Err(format!("unknown fuzz option `{other}`")),
        }
    }
    let mut out = std::io::stdout().lock();
    let summary = campaign(&opts, &mut out).map_err(|e| format!("fuzz: {e}"))?;
    let _ = writeln!(out, "{}", summary.line());
    Ok(if summary.found.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
