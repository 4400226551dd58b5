//! Targeted interpreter tests for the edge cases the silicon vectors do not reach: fetches that
//! straddle the end of a segment or a page, segment-limit faults and their vectors, restartable
//! REP instructions, exception delivery through the IVT, #DF escalation and triple faults, the
//! A20 gate, and opcodes a P6 does not have.

use emu_core::cpu::StepResult;
use emu_core::state::{fl, gpr};
use emu_core::{Cpu, Exception, OpenBus, SegReg, Segment};

/// A real-mode CPU with an IVT whose every vector points at a HLT at 0000:0500 (so an
/// exception lands there), CS:IP = 0100:0000, SS:SP = 0000:8000.
fn machine() -> Cpu {
    let mut cpu = Cpu::new(2 << 20).unwrap();
    for v in 0..256u32 {
        cpu.mem.write_u16(v * 4, 0x0500 + v as u16); // one HLT per vector: tells which fired
        cpu.mem.write_u16(v * 4 + 2, 0);
        cpu.mem.write_u8(0x0500 + v, 0xF4);
    }
    cpu.set_real_cs_ip(0x0100, 0);
    *cpu.state.seg_mut(SegReg::Ss) = Segment::real_mode(0);
    cpu.state.regs[gpr::ESP] = 0x8000;
    cpu
}

/// Puts `code` at CS:IP and runs until HLT (or 10,000 steps); returns the last result.
fn run(cpu: &mut Cpu, code: &[u8]) -> StepResult {
    let at = cpu.state.seg(SegReg::Cs).base + cpu.state.eip;
    cpu.mem.load(u64::from(at), code).unwrap();
    cpu.run(&mut OpenBus, 10_000).0
}

/// The vector whose handler halted (from the HLT's address) and the saved CS:IP.
fn taken(cpu: &mut Cpu) -> (u32, u16, u16) {
    let vector = cpu.state.eip - 1 - 0x500;
    let sp = cpu.state.regs[gpr::ESP];
    let ip = cpu.mem.read_u16(sp);
    let cs = cpu.mem.read_u16(sp + 2);
    (vector, cs, ip)
}

#[test]
fn instruction_straddling_the_segment_end_raises_gp_at_its_start() {
    let mut cpu = machine();
    cpu.state.eip = 0xFFFE;
    // mov ax, 0x1234 (B8 34 12): the third byte lies beyond the 64 KiB limit.
    assert_eq!(run(&mut cpu, &[0xB8, 0x34]), StepResult::Halted);
    assert_eq!(taken(&mut cpu), (13, 0x0100, 0xFFFE));
}

#[test]
fn instruction_straddling_a_page_end_decodes_whole() {
    let mut cpu = machine();
    cpu.set_real_cs_ip(0, 0x0FFE);
    // mov ax, 0x1234 across 0x0FFF/0x1000, then hlt.
    assert_eq!(run(&mut cpu, &[0xB8, 0x34, 0x12, 0xF4]), StepResult::Halted);
    assert_eq!(cpu.state.regs[gpr::EAX] & 0xFFFF, 0x1234);
}

#[test]
fn word_access_at_offset_ffff_faults_gp_or_ss_by_segment() {
    let mut cpu = machine();
    // mov ax, [0xFFFF] → #GP (vector 13)
    assert_eq!(run(&mut cpu, &[0xA1, 0xFF, 0xFF]), StepResult::Halted);
    assert_eq!(taken(&mut cpu), (13, 0x0100, 0));
    let mut cpu = machine();
    // mov bp, 0xFFFF; mov ax, [bp] → #SS (vector 12), saved IP at the MOV AX.
    assert_eq!(run(&mut cpu, &[0xBD, 0xFF, 0xFF, 0x8B, 0x46, 0x00]), StepResult::Halted);
    assert_eq!(taken(&mut cpu), (12, 0x0100, 3));
}

#[test]
fn rep_movsw_faulting_midway_restarts_with_completed_iterations() {
    let mut cpu = machine();
    cpu.state.regs[gpr::ECX] = 10;
    cpu.state.regs[gpr::ESI] = 0x1000;
    cpu.state.regs[gpr::EDI] = 0xFFF9; // the 4th word write (DI = 0xFFFF) crosses the limit
                                       // rep movsw
    assert_eq!(run(&mut cpu, &[0xF3, 0xA5]), StepResult::Halted);
    assert_eq!(taken(&mut cpu), (13, 0x0100, 0));
    assert_eq!(cpu.state.regs[gpr::ECX], 7);
    assert_eq!(cpu.state.regs[gpr::ESI], 0x1006);
    assert_eq!(cpu.state.regs[gpr::EDI], 0xFFFF);
}

#[test]
fn divide_error_saves_the_address_of_the_div() {
    let mut cpu = machine();
    // xor cx, cx; div cx
    assert_eq!(run(&mut cpu, &[0x31, 0xC9, 0xF7, 0xF1]), StepResult::Halted);
    assert_eq!(taken(&mut cpu), (0, 0x0100, 2));
    // The IF and TF flags are cleared by delivery, and the old FLAGS image is on the stack.
    assert_eq!(cpu.state.eflags() & (fl::IF | fl::TF), 0);
}

#[test]
fn int_n_and_int3_save_the_next_instruction() {
    let mut cpu = machine();
    assert_eq!(run(&mut cpu, &[0x90, 0xCD, 0x42]), StepResult::Halted);
    assert_eq!(taken(&mut cpu), (0x42, 0x0100, 3));
    let mut cpu = machine();
    assert_eq!(run(&mut cpu, &[0xCC]), StepResult::Halted);
    assert_eq!(taken(&mut cpu), (3, 0x0100, 1));
}

#[test]
fn opcodes_a_p6_lacks_are_invalid() {
    for code in [
        &[0x0F, 0x0B][..],             // ud2
        &[0x0F, 0x58, 0xC0][..],       // addps xmm0, xmm0 (SSE)
        &[0xF3, 0x0F, 0xB8, 0xC0][..], // popcnt ax, ax
        &[0x0F, 0xA6, 0xC0][..],       // the 486 A-step cmpxchg encoding
        &[0xF0, 0x90][..],             // lock nop
    ] {
        let mut cpu = machine();
        assert_eq!(run(&mut cpu, code), StepResult::Halted, "{code:02x?}");
        assert_eq!(taken(&mut cpu), (6, 0x0100, 0), "{code:02x?}");
    }
}

#[test]
fn x87_escape_raises_nm_with_cr0_em_and_runs_without() {
    let mut cpu = machine();
    cpu.state.cr[0] |= emu_core::state::cr0::EM;
    // fld1
    assert_eq!(run(&mut cpu, &[0xD9, 0xE8]), StepResult::Halted);
    assert_eq!(taken(&mut cpu), (7, 0x0100, 0));
    // After reset CR0.EM is clear: fninit; fld1; hlt.
    let mut cpu = machine();
    assert_eq!(run(&mut cpu, &[0xDB, 0xE3, 0xD9, 0xE8, 0xF4]), StepResult::Halted);
    assert_eq!(cpu.state.eip, 5);
    assert_eq!(cpu.fpu.st(0), emu_core::x87::float80::F80::ONE);
}

#[test]
fn fault_while_delivering_escalates_to_double_then_triple_fault() {
    let mut cpu = machine();
    cpu.state.idtr.limit = 0x0F; // vectors 0-3 reachable; #UD (6), #GP (13) and #DF (8) are not
    let r = run(&mut cpu, &[0x0F, 0x0B]);
    match r {
        StepResult::Shutdown(s) => {
            assert_eq!(s.first, Exception::InvalidOpcode);
            assert_eq!((s.cs, s.eip), (0x0100, 0));
        }
        other => panic!("expected a triple fault, got {other:?}"),
    }
    // A contributory fault whose delivery faults again becomes #DF, delivered when reachable.
    let mut cpu = machine();
    cpu.state.idtr.limit = 0x27; // #DF (8) reachable, #GP (13) not
                                 // mov ax, [0xFFFF] → #GP → (IVT entry 13 beyond the limit: #GP) → #DF
    assert_eq!(run(&mut cpu, &[0xA1, 0xFF, 0xFF]), StepResult::Halted);
    assert_eq!(taken(&mut cpu), (8, 0x0100, 0));
}

#[test]
fn a20_gate_wraps_at_one_megabyte_when_disabled() {
    let mut cpu = machine();
    cpu.mem.write_u8(0x10_0000, 0xAA);
    cpu.mem.write_u8(0x00_0000, 0x55);
    // mov ax, 0xFFFF; mov ds, ax; mov al, [0x10]; hlt
    let code = [0xB8, 0xFF, 0xFF, 0x8E, 0xD8, 0xA0, 0x10, 0x00, 0xF4];
    assert_eq!(run(&mut cpu, &code), StepResult::Halted);
    assert_eq!(cpu.state.regs[gpr::EAX] & 0xFF, 0xAA);
    let mut cpu = machine();
    cpu.mem.write_u8(0x10_0000, 0xAA);
    cpu.mem.write_u8(0x00_0000, 0x55);
    cpu.state.a20 = false;
    assert_eq!(run(&mut cpu, &code), StepResult::Halted);
    assert_eq!(cpu.state.regs[gpr::EAX] & 0xFF, 0x55);
}

#[test]
fn inc_keeps_carry_and_operand_size_prefixes_select_32_bits() {
    let mut cpu = machine();
    // stc; mov eax, 0xFFFFFFFF (66 B8); inc eax (66 40); hlt
    let code = [0xF9, 0x66, 0xB8, 0xFF, 0xFF, 0xFF, 0xFF, 0x66, 0x40, 0xF4];
    assert_eq!(run(&mut cpu, &code), StepResult::Halted);
    assert_eq!(cpu.state.regs[gpr::EAX], 0);
    let f = cpu.state.eflags();
    assert_eq!(f & (fl::CF | fl::ZF | fl::AF), fl::CF | fl::ZF | fl::AF);
}

#[test]
fn address_size_prefix_uses_32_bit_effective_addresses() {
    let mut cpu = machine();
    cpu.mem.write_u16(0x1_2340, 0xBEEF); // DS = 0 → base 0
                                         // mov ebx, 0x12340 (66 BB); mov ax, [ebx] (67 8B 03); hlt — with DS limit opened up.
    cpu.state.seg_mut(SegReg::Ds).limit = u32::MAX;
    let code = [0x66, 0xBB, 0x40, 0x23, 0x01, 0x00, 0x67, 0x8B, 0x03, 0xF4];
    assert_eq!(run(&mut cpu, &code), StepResult::Halted);
    assert_eq!(cpu.state.regs[gpr::EAX] & 0xFFFF, 0xBEEF);
    // With the ordinary 64 KiB limit the same access is #GP.
    let mut cpu = machine();
    assert_eq!(run(&mut cpu, &code), StepResult::Halted);
    assert_eq!(taken(&mut cpu), (13, 0x0100, 6));
}

#[test]
fn cpuid_reports_a_p6_family_with_what_is_implemented() {
    let mut cpu = machine();
    // mov eax, 1 (66 B8 01 00 00 00); cpuid (0F A2); hlt
    let code = [0x66, 0xB8, 1, 0, 0, 0, 0x0F, 0xA2, 0xF4];
    assert_eq!(run(&mut cpu, &code), StepResult::Halted);
    let eax = cpu.state.regs[gpr::EAX];
    assert_eq!((eax >> 8) & 0xF, 6, "family");
    let edx = cpu.state.regs[gpr::EDX];
    assert_ne!(edx & (1 << 15), 0, "cmov");
    assert_ne!(edx & (1 << 8), 0, "cx8");
    assert_eq!(edx & 1, 1, "fpu");
}

#[test]
fn decode_cache_serves_loops_and_notices_self_modifying_code() {
    let mut cpu = machine();
    // mov cx, 100; l: inc ax; loop l; hlt
    assert_eq!(run(&mut cpu, &[0xB9, 100, 0, 0x40, 0xE2, 0xFD, 0xF4]), StepResult::Halted);
    assert_eq!(cpu.state.regs[gpr::EAX] & 0xFFFF, 100);
    assert!(cpu.stats.decode_cache_hits >= 190, "hits: {}", cpu.stats.decode_cache_hits);

    // The loop rewrites its own `inc ax` into `dec ax` (48) on the first pass:
    // mov cx, 3; l: inc ax; mov byte [cs:0x1003], 0x48; loop l; hlt   (code at 0100:0000)
    let mut cpu = machine();
    cpu.set_real_cs_ip(0x0100, 0);
    let code = [0xB9, 3, 0, 0x40, 0x2E, 0xC6, 0x06, 0x03, 0x00, 0x48, 0xE2, 0xF7, 0xF4];
    assert_eq!(run(&mut cpu, &code), StepResult::Halted);
    // inc once, then dec twice: 1 - 2 = -1
    assert_eq!(cpu.state.regs[gpr::EAX] & 0xFFFF, 0xFFFF);
}

/// A port space with a scriptable interrupt controller: `pending` vector on INTR, NMI edges.
#[derive(Default)]
struct Intc {
    pending: Option<u8>,
    nmi: bool,
    acks: u32,
}

impl emu_core::PortIo for Intc {
    fn io_read(&mut self, _port: u16, size: emu_core::Size) -> u32 {
        size.mask()
    }
    fn io_write(&mut self, _port: u16, _size: emu_core::Size, _value: u32) {}
    fn interrupt_pending(&mut self) -> bool {
        self.pending.is_some()
    }
    fn acknowledge_interrupt(&mut self) -> u8 {
        self.acks += 1;
        self.pending.take().unwrap_or(0x0F)
    }
    fn take_nmi(&mut self) -> bool {
        std::mem::take(&mut self.nmi)
    }
}

#[test]
fn external_interrupts_respect_if_and_the_sti_shadow() {
    let mut cpu = machine();
    // cli; nop; sti; nop; nop; hlt
    cpu.mem.load(0x1000, &[0xFA, 0x90, 0xFB, 0x90, 0x90, 0xF4]).unwrap();
    let mut io = Intc { pending: Some(0x20), ..Intc::default() };
    cpu.step(&mut io); // cli
    cpu.step(&mut io); // nop: IF = 0, nothing taken
    assert_eq!(io.acks, 0);
    cpu.step(&mut io); // sti
    cpu.step(&mut io); // the shadow: the nop after STI runs first
    assert_eq!(io.acks, 0);
    assert_eq!(cpu.state.eip, 4);
    cpu.step(&mut io); // now the interrupt is taken, returning to offset 4
    assert_eq!(io.acks, 1);
    assert_eq!(cpu.run(&mut io, 10).0, StepResult::Halted);
    assert_eq!(taken(&mut cpu), (0x20, 0x0100, 4));
    assert_eq!(cpu.stats.external_interrupts, 1);
}

#[test]
fn an_interrupt_wakes_the_cpu_from_hlt() {
    let mut cpu = machine();
    // sti; hlt; inc ax; hlt
    cpu.mem.load(0x1000, &[0xFB, 0xF4, 0x40, 0xF4]).unwrap();
    // vector 0x30 → an IRET at 0000:0600
    cpu.mem.write_u32(0x30 * 4, 0x0000_0600);
    cpu.mem.write_u8(0x600, 0xCF);
    let mut io = Intc::default();
    assert_eq!(cpu.run(&mut io, 10).0, StepResult::Halted);
    assert_eq!(cpu.step(&mut io), StepResult::Halted, "stays halted with nothing pending");
    io.pending = Some(0x30);
    assert_eq!(cpu.step(&mut io), StepResult::Retired, "woken by the interrupt");
    assert_eq!(cpu.run(&mut io, 10).0, StepResult::Halted);
    assert_eq!(cpu.state.regs[gpr::EAX] & 0xFFFF, 1, "returned after the HLT and went on");
}

#[test]
fn nmi_ignores_if_and_is_blocked_until_iret() {
    let mut cpu = machine();
    // cli; nop; nop; hlt — NMI handler at 0000:0600: inc bx; iret
    cpu.mem.load(0x1000, &[0xFA, 0x90, 0x90, 0xF4]).unwrap();
    cpu.mem.write_u32(2 * 4, 0x0000_0600);
    cpu.mem.load(0x600, &[0x43, 0xCF]).unwrap();
    let mut io = Intc::default();
    cpu.step(&mut io); // cli
    io.nmi = true;
    cpu.step(&mut io); // NMI taken although IF = 0
    assert!(cpu.state.nmi_blocked);
    io.nmi = true;
    cpu.step(&mut io); // inc bx: a second NMI waits while blocked
    assert!(io.nmi, "not taken while blocked");
    cpu.step(&mut io); // iret unblocks
    assert!(!cpu.state.nmi_blocked);
    cpu.step(&mut io); // the waiting NMI now
    assert_eq!(cpu.run(&mut io, 20).0, StepResult::Halted);
    assert_eq!(cpu.state.regs[gpr::EBX] & 0xFFFF, 2);
}

/// Regression (found by `bt86 fuzz` against QEMU): XADD with the same register as both operands
/// leaves the sum in it (SDM XADD: SRC ← DEST, then DEST ← TEMP).
#[test]
fn xadd_with_one_register_twice_leaves_the_sum() {
    let mut cpu = machine();
    // mov dx, 0x1234; xadd dx, dx (0F C1 D2); hlt
    assert_eq!(run(&mut cpu, &[0xBA, 0x34, 0x12, 0x0F, 0xC1, 0xD2, 0xF4]), StepResult::Halted);
    assert_eq!(cpu.state.regs[gpr::EDX] & 0xFFFF, 0x2468);
}
