//! Interpreter speed on a guest loop, in guest instructions per second (criterion reports the
//! throughput in "elements", one element = one retired guest instruction).
//!
//! The guest is `guest_images::bench_loop`: a real-mode compute kernel (ALU, loads and stores,
//! shifts, MUL, branches) that halts when done. Run with `cargo bench --bench interp`.

use std::hint::black_box;

use bt86::machine::{Exit, Machine};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const ITERATIONS: u32 = 200;

fn retired_by(image: &guest_images::Image) -> u64 {
    let mut m = Machine::new(16 << 20, Box::new(std::io::sink())).expect("guest RAM");
    m.load_image(image).expect("image fits");
    assert_eq!(m.run(u64::MAX), Exit::Halted, "the benchmark guest must halt");
    m.cpu.state.retired
}

fn interpreter(c: &mut Criterion) {
    let image = guest_images::bench_loop(ITERATIONS);
    let per_run = retired_by(&image);
    let mut g = c.benchmark_group("interpreter");
    g.throughput(Throughput::Elements(per_run));
    g.sample_size(20);
    g.bench_function("bench_loop", |b| {
        b.iter(|| {
            let mut m = Machine::new(16 << 20, Box::new(std::io::sink())).expect("guest RAM");
            m.load_image(&image).expect("image fits");
            black_box(m.run(u64::MAX))
        })
    });
    g.finish();

    // Decode cost alone: the same instruction decoded from guest memory again and again.
    let mut m = Machine::new(1 << 20, Box::new(std::io::sink())).expect("guest RAM");
    m.load_image(&image).expect("image fits");
    let mut insn = iced_x86::Instruction::default();
    c.bench_function("fetch_decode", |b| {
        b.iter(|| {
            m.cpu.fetch_decode(&mut insn).expect("decodes");
            black_box(insn.len())
        })
    });
}

criterion_group!(benches, interpreter);
criterion_main!(benches);
