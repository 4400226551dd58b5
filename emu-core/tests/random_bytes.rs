//! Robustness: garbage instruction bytes are a guest problem, never a host one.
//!
//! Runs over a million random byte sequences through the interpreter, each from a random CPU
//! state (real mode, big real mode, and protected mode with random descriptor caches), for a
//! bounded number of steps. Every guest access goes through `GuestMemory`'s bounds-checked
//! slices (emu-core has no `unsafe` outside the RAM mapping), so the test asserts what can be
//! observed from outside: no panic, RAM keeps its size, memory beyond RAM still reads as open
//! bus, and the port space only ever sees 1-, 2- or 4-byte accesses.

use emu_core::state::{fl, Segment};
use emu_core::{Cpu, PortIo, SegReg, Size, StepResult};

/// xorshift64*: deterministic, so a failure names a reproducible case number.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn u32(&mut self) -> u32 {
        (self.next() >> 32) as u32
    }

    fn below(&mut self, n: u32) -> u32 {
        self.u32() % n
    }
}

/// A port space that checks the access sizes the CPU hands it.
struct CheckedPorts {
    accesses: u64,
}

impl PortIo for CheckedPorts {
    fn io_read(&mut self, _port: u16, size: Size) -> u32 {
        assert!(matches!(size.bytes(), 1 | 2 | 4));
        self.accesses += 1;
        0xFFFF_FFFF
    }

    fn io_write(&mut self, _port: u16, size: Size, _value: u32) {
        assert!(matches!(size.bytes(), 1 | 2 | 4));
        self.accesses += 1;
    }
}

const RAM: u64 = 2 << 20;
const CASES: u64 = 1_000_000;
const STEPS: usize = 12;

fn random_segment(rng: &mut Rng, protected: bool) -> Segment {
    if !protected {
        let mut s = Segment::real_mode(rng.u32() as u16);
        if rng.below(8) == 0 {
            s.limit = u32::MAX; // big real mode
        }
        return s;
    }
    Segment {
        selector: rng.u32() as u16,
        attrs: (rng.u32() as u16) & 0xF0FF,
        base: rng.u32() & 0x1F_FFFF,
        limit: if rng.below(2) == 0 { rng.u32() } else { 0xFFFF },
    }
}

#[test]
fn a_million_random_byte_sequences_cannot_crash_the_interpreter() {
    let mut cpu = Cpu::new(RAM).unwrap();
    let mut ports = CheckedPorts { accesses: 0 };
    let mut rng = Rng(0x5EED_B786_0000_0001);
    let mut outcomes = [0u64; 3];
    for case in 0..CASES {
        cpu.reset();
        let protected = rng.below(4) == 0;
        for s in SegReg::ALL {
            *cpu.state.seg_mut(s) = random_segment(&mut rng, protected);
        }
        if protected {
            cpu.state.cr[0] |= 1;
            cpu.state.cpl = (rng.below(4)) as u8;
            cpu.state.gdtr.base = rng.u32() & 0x1F_FFFF;
            cpu.state.gdtr.limit = rng.u32() & 0xFFFF;
            cpu.state.idtr.limit = rng.u32() & 0xFFFF;
        }
        cpu.state.idtr.base = rng.u32() & 0xF_FFFF;
        for r in cpu.state.regs.iter_mut() {
            *r = rng.u32();
        }
        cpu.state.set_eflags(rng.u32() & !(fl::VM | fl::TF));
        cpu.state.eip = rng.u32() & if rng.below(4) == 0 { u32::MAX } else { 0xFFFF };
        // Write 24 random bytes at CS:EIP (wherever that lands in or beyond RAM).
        let cs = *cpu.state.seg(SegReg::Cs);
        let at = cs.base.wrapping_add(cpu.state.eip);
        for k in 0..24 {
            cpu.mem.write_u8(at.wrapping_add(k), rng.u32() as u8);
        }
        for _ in 0..STEPS {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cpu.step(&mut ports)));
            match r {
                Ok(StepResult::Retired) => outcomes[0] += 1,
                Ok(StepResult::Halted) => {
                    outcomes[1] += 1;
                    break;
                }
                Ok(StepResult::Shutdown(_)) => {
                    outcomes[2] += 1;
                    break;
                }
                Err(_) => panic!("case {case}: the interpreter panicked (seeded, reproducible)"),
            }
        }
    }
    assert_eq!(cpu.mem.size() as u64, RAM);
    assert_eq!(cpu.mem.read_u32(RAM as u32), 0xFFFF_FFFF, "beyond RAM must stay open bus");
    // The run must have exercised every outcome, or it tested nothing interesting.
    assert!(outcomes.iter().all(|&n| n > 0), "outcomes retired/halted/shutdown: {outcomes:?}");
    assert!(ports.accesses > 0);
}

/// A protected-mode environment for random code: a GDT (0x08/0x10 ring-0 code/data, 0x1B/0x23
/// ring-3 code/data, 0x28 TSS), an IDT whose 256 interrupt gates lead to ring 0 at random
/// offsets, a TSS with a ring-0 stack, and page tables identity-mapping the first 4 MiB with
/// random present, user and writable bits.
fn paged_environment(cpu: &mut Cpu, rng: &mut Rng) {
    let flat =
        |dpl: u32, typ: u32| (0x0000_FFFFu32, 0x00CF_0000 | (1 << 15) | (dpl << 13) | (1 << 12) | (typ << 8));
    let gdt = [
        (0, 0),
        flat(0, 0xB),
        flat(0, 0x3),
        flat(3, 0xB),
        flat(3, 0x3),
        (0x8000_0067, 0x0000_8900), // TSS at 0x8000, limit 0x67, present, available 32-bit
    ];
    for (k, (lo, hi)) in gdt.iter().enumerate() {
        cpu.mem.write_u32(0x7000 + 8 * k as u32, *lo);
        cpu.mem.write_u32(0x7004 + 8 * k as u32, *hi);
    }
    for v in 0..256u32 {
        let off = rng.below(RAM as u32);
        cpu.mem.write_u32(0x6000 + 8 * v, (0x08 << 16) | (off & 0xFFFF));
        cpu.mem.write_u32(0x6004 + 8 * v, (off & 0xFFFF_0000) | 0xEE00); // present, DPL 3, 32-bit int gate
    }
    cpu.mem.write_u32(0x8004, 0x0010_0000); // ESP0
    cpu.mem.write_u32(0x8008, 0x10); // SS0
                                     // Page directory at 0x1000: slot 0 → page table at 0x2000 (or a 4 MiB page); other slots
                                     // random, so walks also meet garbage.
    for e in 0..1024u32 {
        let pde = if e == 0 {
            if rng.below(8) == 0 {
                0x87
            } else {
                0x2007
            }
        } else {
            rng.u32()
        };
        cpu.mem.write_u32(0x1000 + 4 * e, pde);
        let present = u32::from(rng.below(16) != 0);
        let flags = present | (rng.u32() & 0x166); // random R/W, U/S, A, D, G
        cpu.mem.write_u32(0x2000 + 4 * e, (e << 12) | flags);
    }
    cpu.state.gdtr = emu_core::state::TableReg { base: 0x7000, limit: 0x2F };
    cpu.state.idtr = emu_core::state::TableReg { base: 0x6000, limit: 0x7FF };
    cpu.state.tr = Segment { selector: 0x28, attrs: 0x8B, base: 0x8000, limit: 0x67 };
}

/// Random instruction streams in protected mode with paging on, at ring 0 and ring 3, through
/// page tables with random permissions and a directory of random entries: only architectural
/// exceptions (page faults among them), never a panic.
#[test]
fn random_streams_with_paging_at_ring_0_and_3_cannot_crash_the_interpreter() {
    const CASES: u64 = 200_000;
    const STEPS: usize = 24;
    let mut cpu = Cpu::new(RAM).unwrap();
    let mut ports = CheckedPorts { accesses: 0 };
    let mut rng = Rng(0x9A61_46E5_0000_0003);
    let mut page_faults = 0u64;
    let mut retired = 0u64;
    let mut rings = [0u64; 2];
    for case in 0..CASES {
        cpu.reset();
        if case % 256 == 0 {
            paged_environment(&mut cpu, &mut rng);
        }
        cpu.state.gdtr = emu_core::state::TableReg { base: 0x7000, limit: 0x2F };
        cpu.state.idtr = emu_core::state::TableReg { base: 0x6000, limit: 0x7FF };
        cpu.state.tr = Segment { selector: 0x28, attrs: 0x8B, base: 0x8000, limit: 0x67 };
        let ring3 = rng.below(2) == 0;
        rings[usize::from(ring3)] += 1;
        let flat =
            |sel: u16, typ: u16| Segment { selector: sel, attrs: 0xC090 | typ, base: 0, limit: u32::MAX };
        let (cs, ds) =
            if ring3 { (flat(0x1B, 0x6B), flat(0x23, 0x63)) } else { (flat(0x08, 0x0B), flat(0x10, 0x03)) };
        for s in SegReg::ALL {
            *cpu.state.seg_mut(s) = if s == SegReg::Cs { cs } else { ds };
        }
        cpu.state.cpl = if ring3 { 3 } else { 0 };
        cpu.state.cr[0] |= 1 | (1 << 31) | if rng.below(2) == 0 { 1 << 16 } else { 0 };
        cpu.state.cr[3] = 0x1000;
        cpu.state.cr[4] = rng.u32() & ((1 << 4) | (1 << 7));
        for r in cpu.state.regs.iter_mut() {
            *r = if rng.below(2) == 0 { rng.u32() } else { rng.below(RAM as u32) };
        }
        cpu.state.set_eflags(rng.u32() & !(fl::VM | fl::TF | fl::NT));
        cpu.state.eip = 0x10000 + rng.below(RAM as u32 - 0x10100);
        for k in 0..32 {
            cpu.mem.write_u8(cpu.state.eip + k, rng.u32() as u8);
        }
        for _ in 0..STEPS {
            let before = cpu.stats.exceptions;
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cpu.step(&mut ports)));
            let Ok(r) = r else { panic!("case {case}: the interpreter panicked (seeded, reproducible)") };
            if cpu.stats.exceptions != before
                && matches!(cpu.stats.last_exception, Some(emu_core::Exception::PageFault { .. }))
            {
                page_faults += 1;
            }
            match r {
                StepResult::Retired => retired += 1,
                _ => break,
            }
        }
    }
    println!(
        "{retired} instructions retired or exceptions delivered, {page_faults} page faults, rings 0/3: {rings:?}, TLB {:?}",
        cpu.tlb.stats
    );
    assert_eq!(cpu.mem.read_u32(RAM as u32), 0xFFFF_FFFF, "beyond RAM must stay open bus");
    assert!(rings[0] > 0 && rings[1] > 0);
    assert!(page_faults > 1000, "paging must have been exercised: {page_faults} page faults");
    assert!(retired > 1_000_000, "millions of instructions in total: {retired}");
    assert!(cpu.tlb.stats.hits > 0 && cpu.tlb.stats.misses > 0);
}
