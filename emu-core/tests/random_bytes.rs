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
