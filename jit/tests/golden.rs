//! Golden tests of the translator: for a few characteristic blocks, the IR the frontend makes
//! (with its flag liveness) and the host code the x86-64 backend emits, compared with the text
//! in `tests/golden/NAME.txt`. A change in either shows up as a diff to review; when it is
//! intended, rerun with `BT86_BLESS=1` to rewrite the files.
//!
//! The backend compiles for a fixed, fake runtime (`ENV`: addresses of the exits, callouts and
//! RAM that no process would have), so the text does not depend on where anything lands.

#![cfg(target_arch = "x86_64")]

use std::path::PathBuf;

use emu_core::state::{cr0, CpuState, SegReg, Segment};
use iced_x86::code_asm::*;
use jit::backend::x64::{disassemble, X64};
use jit::backend::{Backend, CodeEnv};
use jit::frontend::build_block;
use jit::mode::ModeKey;

const ENV: CodeEnv = CodeEnv {
    exit: 0x7000_0000_1000,
    exit_nostore: 0x7000_0000_1040,
    regen_flags: 0x7000_0000_1080,
    regen_flags_noaf: 0x7000_0000_10C0,
    callout: 0x7000_0000_2000,
    arith_flags: 0x7000_0000_3000,
    mode_id: 3,
    callout_base: 100,
    first_exit: 200,
    chaining: true,
    count_blocks: false,
    ram_base: 0x7100_0000_0000,
    ram_direct: 16 << 20,
    ram_write_map: Some(16 << 20),
};

/// Where the block's code is placed.
const BASE: usize = 0x7000_0010_0000;

/// Flat 32-bit protected mode, paging off (the benchmark kernels' mode).
fn flat() -> CpuState {
    let mut s = CpuState::reset();
    s.cr[0] |= cr0::PE;
    for seg in SegReg::ALL {
        *s.seg_mut(seg) = Segment { selector: 0x10, attrs: 0xC093, base: 0, limit: u32::MAX };
    }
    *s.seg_mut(SegReg::Cs) = Segment { selector: 0x08, attrs: 0xC09B, base: 0, limit: u32::MAX };
    s
}

/// Flat 32-bit ring 3 with paging on.
fn paged_user() -> CpuState {
    let mut s = flat();
    s.cr[0] |= cr0::PG;
    s.cpl = 3;
    s
}

/// Real mode after reset, CS = DS = SS = 0.
fn real() -> CpuState {
    let mut s = CpuState::reset();
    for seg in SegReg::ALL {
        *s.seg_mut(seg) = Segment::real_mode(0);
    }
    s
}

/// The IR and host code of the block at `eip` assembled by `build` for mode `state`.
fn render(
    state: &CpuState,
    bitness: u32,
    eip: u32,
    build: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
) -> String {
    let mut a = CodeAssembler::new(bitness).unwrap();
    build(&mut a).unwrap();
    let bytes = a.assemble(u64::from(eip)).unwrap();
    let key = ModeKey::of(state);
    let block = build_block(&bytes, eip, eip, &key);
    let compiled = X64.compile(&block, &ENV, BASE).expect("the block compiles");
    let mut out = format!("{block}");
    out.push_str(&format!(
        "host code ({} bytes, body at +{:#x}):\n",
        compiled.code.len(),
        compiled.body_offset
    ));
    out.push_str(&disassemble(&compiled.code, BASE));
    for s in &compiled.chain_sites {
        out.push_str(&format!(
            "chain site at +{:#x} to {:08x}{}\n",
            s.offset,
            s.target,
            if s.dead_flags { " (flags dead only)" } else { "" }
        ));
    }
    out
}

fn check(name: &str, text: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{name}.txt"));
    if std::env::var_os("BT86_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with BT86_BLESS=1 to create it)", path.display()));
    if want != text {
        let first = want.lines().zip(text.lines()).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "{name}: the translation changed (first difference at line {}); review it and rerun \
             with BT86_BLESS=1 if it is intended.\n--- want\n{want}\n--- got\n{text}",
            first + 1
        );
    }
}

#[test]
fn sieve_inner_loop() {
    // A store through the TLB, ADD with dead flags, CMP fused with JB, a loop copy.
    let text = render(&flat(), 32, 0x10_2039, |a| {
        let mut top = a.create_label();
        a.set_label(&mut top)?;
        a.mov(byte_ptr(eax + 0x20_0000), 0)?;
        a.add(eax, ebx)?;
        a.cmp(eax, 0x10_0000)?;
        a.jb(top)?;
        a.inc(ebx)?;
        a.ret()
    });
    check("sieve_inner_loop", &text);
}

#[test]
fn crc32_inner_loop() {
    // Direct RAM reads, an 8-bit XOR, a lazy shift record, INC/DEC with a carry pin.
    let text = render(&flat(), 32, 0x10_2067, |a| {
        let mut top = a.create_label();
        a.set_label(&mut top)?;
        a.movzx(edx, byte_ptr(esi))?;
        a.xor(dl, al)?;
        a.shr(eax, 8)?;
        a.xor(eax, dword_ptr(edx * 4 + 0x30_0000))?;
        a.inc(esi)?;
        a.dec(ecx)?;
        a.jnz(top)
    });
    check("crc32_inner_loop", &text);
}

#[test]
fn string_search_forward_branch_stays_in_the_block() {
    // JNE MISS jumps forward into the block (flags dead there): the taken path takes back the
    // instructions it skipped and rejoins instead of leaving; JBE POS is the loop copy's back
    // edge.
    let text = render(&flat(), 32, 0x10_2051, |a| {
        let (mut pos, mut cmp, mut miss) = (a.create_label(), a.create_label(), a.create_label());
        a.set_label(&mut pos)?;
        a.xor(edx, edx)?;
        a.set_label(&mut cmp)?;
        a.mov(cl, byte_ptr(esi + edx))?;
        a.cmp(cl, byte_ptr(edx + 0x22_0040))?;
        a.jne(miss)?;
        a.inc(edx)?;
        a.cmp(edx, 6)?;
        a.jb(cmp)?;
        a.inc(eax)?;
        a.set_label(&mut miss)?;
        a.inc(esi)?;
        a.cmp(esi, ebx)?;
        a.jbe(pos)?;
        a.ret()
    });
    check("string_search_forward_branch_stays_in_the_block", &text);
}

#[test]
fn a_loop_nest_in_one_block() {
    // JZ SKIP rejoins forward; JNZ INNER loops back to the middle of the block after checking
    // that the budget covers the rest of it; JNZ OUTER goes to the loop copy.
    let text = render(&flat(), 32, 0x10_1000, |a| {
        let (mut outer, mut inner, mut skip) = (a.create_label(), a.create_label(), a.create_label());
        a.set_label(&mut outer)?;
        a.mov(ecx, 37u32)?;
        a.set_label(&mut inner)?;
        a.add(eax, ecx)?;
        a.test(al, 1u32)?;
        a.jz(skip)?;
        a.xor(eax, 0x55u32)?;
        a.set_label(&mut skip)?;
        a.sub(ecx, 1u32)?;
        a.jnz(inner)?;
        a.dec(edx)?;
        a.jnz(outer)
    });
    check("a_loop_nest_in_one_block", &text);
}

#[test]
fn callouts_and_a_return() {
    // BSWAP is called out (innocuous, the block goes on); RET goes through the jump cache.
    let text = render(&flat(), 32, 0x10_3000, |a| {
        a.bswap(ecx)?;
        a.add(eax, 1)?;
        a.ret()
    });
    check("callouts_and_a_return", &text);
}

#[test]
fn sensitive_instruction_ends_the_block() {
    // POPFD is critical (Popek–Goldberg): a callout after which the dispatcher takes over.
    let text = render(&flat(), 32, 0x10_3100, |a| {
        a.push(eax)?;
        a.popfd()?;
        a.mov(eax, 1)
    });
    check("sensitive_instruction_ends_the_block", &text);
}

#[test]
fn real_mode_stack_and_call() {
    // 16-bit code: segment limits checked inline (Simple segments), SP wrapping, CALL rel16.
    let text = render(&real(), 16, 0x7E00, |a| {
        a.push(ax)?;
        a.mov(si, word_ptr(bp + 2))?;
        a.call(0x7F00u64)
    });
    check("real_mode_stack_and_call", &text);
}

#[test]
fn paged_user_mode_read_modify_write() {
    // Paging on at CPL 3: the TLB's user-write tag, a read-modify-write through one probe.
    let text = render(&paged_user(), 32, 0x0804_8000, |a| {
        a.add(dword_ptr(ebx + 8), ecx)?;
        a.setc(al)?;
        a.jmp(0x0804_8000u64)
    });
    check("paged_user_mode_read_modify_write", &text);
}
