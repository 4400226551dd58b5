//! The translator's memory fast path, in guest instructions per second (criterion's
//! "elements"): with paging on, guest stores that hit the TLB's fast view inline (one compare,
//! one add) against stores that miss it every time (the slow path: the instruction run by
//! emu-core, the TLB walked and refilled); with paging off, stores checked against guest
//! memory's direct-write map. Also the same loops in the interpreter, for scale. Run with
//! `cargo bench --bench jit`.

use std::hint::black_box;

use bt86::engine::{Engine, EngineKind};
use bt86::machine::{Exit, Machine};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use iced_x86::code_asm::*;

/// Stores in a loop, `stride` bytes apart over 2,048 slots: stride 4 stays within two pages
/// (every store hits the TLB), stride 4 KiB walks 2,048 pages through a 1,024-entry
/// direct-mapped TLB (every store misses). With `paging`, 4 KiB pages map the first 12 MiB to
/// themselves first.
fn kernel(stride: u32, passes: u32, paging: bool) -> Vec<u8> {
    const PD: u32 = 0x0019_0000;
    const PT: u32 = 0x0019_1000;
    let mut a = CodeAssembler::new(32).unwrap();
    let (mut outer, mut inner) = (a.create_label(), a.create_label());
    if paging {
        let (mut fill, mut dir) = (a.create_label(), a.create_label());
        a.xor(ecx, ecx).unwrap();
        a.set_label(&mut fill).unwrap();
        a.mov(eax, ecx).unwrap();
        a.shl(eax, 12).unwrap();
        a.or(eax, 3u32).unwrap();
        a.mov(dword_ptr(ecx * 4 + PT), eax).unwrap();
        a.inc(ecx).unwrap();
        a.cmp(ecx, 3 * 1024u32).unwrap();
        a.jb(fill).unwrap();
        a.xor(ecx, ecx).unwrap();
        a.set_label(&mut dir).unwrap();
        a.mov(eax, ecx).unwrap();
        a.shl(eax, 12).unwrap();
        a.add(eax, PT | 3).unwrap();
        a.mov(dword_ptr(ecx * 4 + PD), eax).unwrap();
        a.inc(ecx).unwrap();
        a.cmp(ecx, 3u32).unwrap();
        a.jb(dir).unwrap();
        a.mov(eax, PD).unwrap();
        a.mov(cr3, eax).unwrap();
        a.mov(eax, cr0).unwrap();
        a.or(eax, 0x8000_0000u32).unwrap();
        a.mov(cr0, eax).unwrap();
    }
    a.mov(edx, passes).unwrap();
    a.set_label(&mut outer).unwrap();
    a.mov(edi, 0x20_0000u32).unwrap();
    a.mov(ecx, 2048u32).unwrap();
    a.set_label(&mut inner).unwrap();
    a.mov(dword_ptr(edi), ecx).unwrap();
    a.add(edi, stride).unwrap();
    a.dec(ecx).unwrap();
    a.jnz(inner).unwrap();
    a.dec(edx).unwrap();
    a.jnz(outer).unwrap();
    a.xor(eax, eax).unwrap();
    a.out(0xF4u32, eax).unwrap();
    let code = a.assemble(u64::from(guest_images::FLAT_KERNEL_CODE)).unwrap();
    guest_images::flat_kernel("tlb", "TLB hit/miss loop", &code).elf
}

fn run(elf: &[u8], engine: EngineKind) -> u64 {
    let mut m = Machine::new(32 << 20, Box::new(std::io::sink())).expect("guest RAM");
    m.engine = Engine::new(engine).expect("engine");
    bt86::boot::multiboot::load_bytes(&mut m, elf, "tlb", "tlb").expect("loads");
    assert_eq!(m.run(u64::MAX), Exit::DebugExit { value: 0 });
    m.cpu.state.retired
}

fn tlb(c: &mut Criterion) {
    let engines: &[EngineKind] = if cfg!(target_arch = "x86_64") {
        &[EngineKind::Jit, EngineKind::Interp]
    } else {
        &[EngineKind::Interp]
    };
    for &engine in engines {
        let mut g = c.benchmark_group(format!("tlb_{engine}"));
        g.sample_size(10);
        for (name, stride, paging) in [("hit", 4u32, true), ("miss", 4096, true), ("direct", 4, false)] {
            let elf = kernel(stride, 50, paging);
            g.throughput(Throughput::Elements(run(&elf, engine)));
            g.bench_function(name, |b| b.iter(|| black_box(run(&elf, engine))));
        }
        g.finish();
    }
}

criterion_group!(benches, tlb);
criterion_main!(benches);
