//! Translation cost: the frontend (decode, lowering, flag liveness) and the x86-64 backend on
//! representative blocks, per guest instruction (criterion's "elements"). Run with
//! `cargo bench -p jit --bench translate`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use emu_core::state::{cr0, CpuState, SegReg, Segment};
use iced_x86::code_asm::*;

fn flat() -> jit::mode::ModeKey {
    let mut s = CpuState::reset();
    s.cr[0] |= cr0::PE;
    for seg in SegReg::ALL {
        *s.seg_mut(seg) = Segment { selector: 0x10, attrs: 0xC093, base: 0, limit: u32::MAX };
    }
    *s.seg_mut(SegReg::Cs) = Segment { selector: 0x08, attrs: 0xC09B, base: 0, limit: u32::MAX };
    jit::mode::ModeKey::of(&s)
}

/// A straight-line block of 60 mixed integer instructions (ALU, loads, stores, stack, shifts,
/// IMUL, SETcc/CMOVcc) ending in a conditional branch.
fn mixed() -> Vec<u8> {
    let mut a = CodeAssembler::new(32).unwrap();
    for i in 0..6u32 {
        a.mov(eax, dword_ptr(esi + i * 4)).unwrap();
        a.add(eax, ebx).unwrap();
        a.xor(ecx, eax).unwrap();
        a.shl(edx, 3).unwrap();
        a.imul_2(edx, ecx).unwrap();
        a.mov(dword_ptr(edi + i * 4), edx).unwrap();
        a.push(eax).unwrap();
        a.pop(ebp).unwrap();
        a.cmp(eax, ecx).unwrap();
        a.cmovl(eax, ecx).unwrap();
    }
    let mut top = a.create_label();
    a.set_label(&mut top).unwrap();
    a.jne(top).unwrap();
    a.assemble(0x10_1000).unwrap()
}

fn translate(c: &mut Criterion) {
    #[cfg(target_arch = "x86_64")]
    use jit::backend::Backend;
    let key = flat();
    let code = mixed();
    let block = jit::frontend::build_block(&code, 0x10_1000, 0x10_1000, &key);
    let n = block.insns.len() as u64;
    let mut g = c.benchmark_group("translate");
    g.throughput(Throughput::Elements(n));
    g.bench_function("frontend", |b| {
        b.iter(|| black_box(jit::frontend::build_block(black_box(&code), 0x10_1000, 0x10_1000, &key)))
    });
    #[cfg(target_arch = "x86_64")]
    {
        let env = jit::backend::CodeEnv {
            exit: 0x7000_0000_1000,
            exit_nostore: 0x7000_0000_1040,
            regen_flags: 0x7000_0000_1080,
            regen_flags_noaf: 0x7000_0000_10C0,
            callout: 0x7000_0000_2000,
            arith_flags: 0x7000_0000_3000,
            mode_id: 1,
            callout_base: 0,
            first_exit: 0,
            chaining: true,
            count_blocks: false,
            ram_base: 0x7100_0000_0000,
            ram_direct: 16 << 20,
            ram_write_map: Some(16 << 20),
        };
        g.bench_function("backend_x64", |b| {
            b.iter(|| black_box(jit::backend::x64::X64.compile(black_box(&block), &env, 0x7000_0010_0000)))
        });
        g.bench_function("frontend_and_backend", |b| {
            b.iter(|| {
                let block = jit::frontend::build_block(black_box(&code), 0x10_1000, 0x10_1000, &key);
                black_box(jit::backend::x64::X64.compile(&block, &env, 0x7000_0010_0000))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, translate);
criterion_main!(benches);
