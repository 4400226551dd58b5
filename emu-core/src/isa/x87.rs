//! The x87 instructions (Intel SDM Vol. 2, the page of each F… instruction; Vol. 1 chapter 8 for
//! the register stack, condition codes, exceptions and the instruction and data pointers;
//! Vol. 3A §2.5 and §6.15 for #NM and #MF).
//!
//! Every handler starts the same way ([`begin`]): CR0.EM or CR0.TS set → #NM; then, for the
//! *waiting* instructions (all but FNINIT, FNCLEX, FNSTCW, FNSTSW, FNSTENV, FNSAVE and the
//! 8087/287 no-ops), a pending unmasked exception (status word ES) is reported first: #MF with
//! CR0.NE = 1, FERR# with CR0.NE = 0 (see `x87/mod.rs`). Memory operands are read, and
//! destinations checked for writability, before any FPU state changes, so a page fault, #GP or
//! #SS leaves the FPU and the CPU as they were. Non-control instructions record their address
//! and opcode (FIP/FCS/FOP) and their memory operand (FDP/FDS).
//!
//! Numerics are in [`crate::x87`]. The handlers here move operands between the register
//! stack, memory and EFLAGS, and apply the stack-fault rules: a push onto a full register or a
//! read of an empty one raises IE with SF (C1 = 1 for overflow, 0 for underflow); masked, the
//! destination receives the real indefinite; unmasked, nothing changes but the status word.
//!
//! The 8087/287 instructions FENI, FDISI and FSETPM do nothing on a 387 or later; DB E5
//! (FRSTPM of the 287XL) is not an instruction there and iced-x86 decodes it as invalid (#UD).

use iced_x86::{Code, Instruction, Mnemonic, OpKind, Register};

use super::operand::{ea, mem_seg};
use super::Res;
use crate::cpu::{Access, Cpu};
use crate::exception::Exception;
use crate::flags::Size;
use crate::io::PortIo;
use crate::state::{cr0, fl, gpr, SegReg};
use crate::x87::arith::{self, Cmp, Env, Out};
use crate::x87::float80::{self, exc, Class, Format, Rc, F80};
use crate::x87::{env, sw, transcendental};

// ---------------------------------------------------------------------------------------------
// Shared machinery.

/// #NM for CR0.EM or CR0.TS; then, for a waiting instruction, a pending unmasked exception:
/// #MF when CR0.NE is set, FERR# otherwise.
fn begin(cpu: &mut Cpu, waiting: bool) -> Res {
    let c = cpu.state.cr[0];
    if c & (cr0::EM | cr0::TS) != 0 {
        return Err(Exception::DeviceNotAvailable);
    }
    if waiting {
        pending(cpu)?;
    }
    Ok(())
}

/// Reports a pending unmasked exception before a waiting instruction.
fn pending(cpu: &mut Cpu) -> Res {
    if cpu.fpu.pending() {
        if cpu.state.cr[0] & cr0::NE != 0 {
            return Err(Exception::FpuError);
        }
        cpu.fpu.assert_ferr();
    }
    Ok(())
}

/// The 11-bit opcode of the instruction being executed: the low three bits of its D8–DF byte
/// and the ModR/M byte, read back from the instruction bytes (they were just fetched).
fn opcode(cpu: &mut Cpu) -> u16 {
    let cs = SegReg::Cs;
    let mut eip = cpu.insn_eip;
    for _ in 0..14 {
        let Ok(lin) = cpu.seg_linear(cs, eip, 2, Access::Execute) else { return 0 };
        let Ok(b) = cpu.read_lin(lin, Size::W, Access::Execute) else { return 0 };
        if (0xD8..=0xDF).contains(&(b & 0xFF)) {
            return (((b & 7) << 8) | ((b >> 8) & 0xFF)) as u16;
        }
        eip = eip.wrapping_add(1);
    }
    0
}

/// Records the instruction (and data) pointers and the opcode of a non-control instruction.
fn note(cpu: &mut Cpu, i: &Instruction) {
    cpu.fpu.fop = opcode(cpu);
    cpu.fpu.fip = cpu.insn_eip;
    cpu.fpu.fcs = cpu.state.seg(SegReg::Cs).selector;
    if has_mem(i) {
        cpu.fpu.fdp = ea(&cpu.state, i);
        cpu.fpu.fds = cpu.state.seg(mem_seg(i)).selector;
    }
}

/// The instruction has a memory operand.
fn has_mem(i: &Instruction) -> bool {
    (0..i.op_count()).any(|n| i.op_kind(n) == OpKind::Memory)
}

/// ST register number of an operand register (ST0–ST7).
fn st_index(r: Register) -> u8 {
    (r as u32).wrapping_sub(Register::ST0 as u32) as u8 & 7
}

/// Reads `buf.len()` bytes at the memory operand (plus `skip`).
fn read_bytes(cpu: &mut Cpu, i: &Instruction, skip: u32, buf: &mut [u8]) -> Res {
    let seg = mem_seg(i);
    let off = ea(&cpu.state, i).wrapping_add(skip);
    let mut k = 0;
    while k < buf.len() {
        let size = piece(buf.len() - k);
        let n = size.bytes();
        let v = cpu.read(seg, off.wrapping_add(k as u32), size)?;
        buf[k..k + n].copy_from_slice(&v.to_le_bytes()[..n]);
        k += n;
    }
    Ok(())
}

/// The largest access (4, 2 or 1 bytes) for `left` remaining bytes.
fn piece(left: usize) -> Size {
    if left >= 4 {
        Size::D
    } else if left >= 2 {
        Size::W
    } else {
        Size::B
    }
}

/// Checks that `len` bytes at the memory operand may be written.
fn check_bytes(cpu: &mut Cpu, i: &Instruction, len: usize) -> Res {
    let seg = mem_seg(i);
    let off = ea(&cpu.state, i);
    let mut k = 0;
    while k < len {
        let size = piece(len - k);
        cpu.check_write(seg, off.wrapping_add(k as u32), size)?;
        k += size.bytes();
    }
    Ok(())
}

/// Writes `bytes` at the memory operand (after [`check_bytes`]).
fn write_bytes(cpu: &mut Cpu, i: &Instruction, bytes: &[u8]) -> Res {
    let seg = mem_seg(i);
    let off = ea(&cpu.state, i);
    let mut k = 0;
    while k < bytes.len() {
        let size = piece(bytes.len() - k);
        let n = size.bytes();
        let mut w = [0u8; 4];
        w[..n].copy_from_slice(&bytes[k..k + n]);
        cpu.write(seg, off.wrapping_add(k as u32), size, u32::from_le_bytes(w))?;
        k += n;
    }
    Ok(())
}

/// Checks and writes in one go (the value is final and no FPU state has changed yet).
fn store_bytes(cpu: &mut Cpu, i: &Instruction, bytes: &[u8]) -> Res {
    check_bytes(cpu, i, bytes.len())?;
    write_bytes(cpu, i, bytes)
}

/// The arithmetic environment of the current control word (precision control applied).
fn env_of(cpu: &Cpu) -> Env {
    Env::from_cw(cpu.fpu.cw)
}

/// A memory operand converted to extended: the value and the flags the conversion raised
/// (DE for a single or double denormal). Signaling NaNs stay signaling: the operation that
/// uses them raises IE.
fn read_operand(cpu: &mut Cpu, i: &Instruction) -> Result<(F80, u16), Exception> {
    let mut b = [0u8; 10];
    match i.memory_size() {
        iced_x86::MemorySize::Float32 => {
            read_bytes(cpu, i, 0, &mut b[..4])?;
            Ok(float80::from_f32_bits(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        }
        iced_x86::MemorySize::Float64 => {
            read_bytes(cpu, i, 0, &mut b[..8])?;
            let mut q = [0u8; 8];
            q.copy_from_slice(&b[..8]);
            Ok(float80::from_f64_bits(u64::from_le_bytes(q)))
        }
        iced_x86::MemorySize::Float80 => {
            read_bytes(cpu, i, 0, &mut b)?;
            Ok((F80::from_bytes(b), 0))
        }
        iced_x86::MemorySize::Int16 => {
            read_bytes(cpu, i, 0, &mut b[..2])?;
            Ok((float80::from_i64(i64::from(i16::from_le_bytes([b[0], b[1]]))), 0))
        }
        iced_x86::MemorySize::Int32 => {
            read_bytes(cpu, i, 0, &mut b[..4])?;
            Ok((float80::from_i64(i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))), 0))
        }
        iced_x86::MemorySize::Int64 => {
            read_bytes(cpu, i, 0, &mut b[..8])?;
            let mut q = [0u8; 8];
            q.copy_from_slice(&b[..8]);
            Ok((float80::from_i64(i64::from_le_bytes(q)), 0))
        }
        iced_x86::MemorySize::Bcd => {
            read_bytes(cpu, i, 0, &mut b)?;
            Ok((float80::from_bcd(b), 0))
        }
        _ => Err(Exception::InvalidOpcode),
    }
}

/// Pushes `v` (FLD and friends). On overflow the masked response pushes the indefinite; the
/// unmasked one leaves the stack alone. C1 = 1 on overflow, else 0.
fn push(cpu: &mut Cpu, v: F80) {
    if !cpu.fpu.is_empty(7) {
        if cpu.fpu.stack_overflow() {
            cpu.fpu.push(F80::INDEFINITE);
        }
        return;
    }
    cpu.fpu.set_cc(sw::C1, 0);
    cpu.fpu.push(v);
}

/// Delivers an arithmetic outcome to ST(d): raises its flags, sets C1 to the rounding
/// direction, writes the value if there is one and pops when asked (only when a value was
/// delivered: an unmasked pre-computation exception leaves the stack alone).
fn deliver(cpu: &mut Cpu, d: u8, out: Out, pop: bool) {
    cpu.fpu.raise(out.flags);
    cpu.fpu.set_cc(sw::C1, if out.up && out.flags & exc::PE != 0 { sw::C1 } else { 0 });
    if let Some(v) = out.val {
        cpu.fpu.set_st(d, v);
        if pop {
            cpu.fpu.pop();
        }
    }
}

/// Stack underflow on an instruction writing ST(d): the masked response writes the indefinite
/// (and pops when the instruction pops).
fn underflow_into(cpu: &mut Cpu, d: u8, pop: bool) {
    if cpu.fpu.stack_underflow() {
        cpu.fpu.set_st(d, F80::INDEFINITE);
        if pop {
            cpu.fpu.pop();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Loads.

/// FLD m32fp/m64fp/m80fp, FLD ST(i), FILD m16/m32/m64int, FBLD m80bcd.
pub fn fld(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    begin(cpu, true)?;
    if i.op0_kind() == OpKind::Register {
        note(cpu, i);
        let s = st_index(i.op0_register());
        if !cpu.fpu.is_empty(7) {
            if cpu.fpu.stack_overflow() {
                cpu.fpu.push(F80::INDEFINITE);
            }
            return Ok(());
        }
        if cpu.fpu.is_empty(s) {
            if cpu.fpu.stack_underflow() {
                cpu.fpu.push(F80::INDEFINITE);
            }
            return Ok(());
        }
        let v = cpu.fpu.st(s);
        push(cpu, v);
        return Ok(());
    }
    let (v, de) = read_operand(cpu, i)?;
    note(cpu, i);
    let env = env_of(cpu);
    let is_float = matches!(i.memory_size(), iced_x86::MemorySize::Float32 | iced_x86::MemorySize::Float64);
    let mut flags = de;
    let mut v = v;
    if is_float && v.class() == Class::SNaN {
        // Converting a single or double SNaN raises IE and yields its quiet form.
        flags |= exc::IE;
        v = v.quiet();
    }
    if !cpu.fpu.is_empty(7) {
        if cpu.fpu.stack_overflow() {
            cpu.fpu.push(F80::INDEFINITE);
        }
        return Ok(());
    }
    if flags & env.unmasked() != 0 {
        cpu.fpu.raise(flags);
        return Ok(());
    }
    cpu.fpu.raise(flags);
    push(cpu, v);
    Ok(())
}

/// The x87 constants (SDM Vol. 1 §8.3.8): the exact values to 64 bits rounded to nearest, and
/// for each whether the exact value lies above (round down and toward zero give one unit
/// less) or below (round up gives one unit more) — computed with mpmath at 200 digits; see
/// the unit test `constants_match_exact_values`.
pub const CONSTANTS: [(Code, F80, bool); 5] = [
    // log2(10) = D49A784BCD1B8AFE 492B…: below the nearest value's midpoint → rounds down.
    (Code::Fldl2t, F80 { se: 0x4000, sig: 0xD49A_784B_CD1B_8AFE }, false),
    // log2(e) = B8AA3B295C17F0BB BE87…: rounded up.
    (Code::Fldl2e, F80 { se: 0x3FFF, sig: 0xB8AA_3B29_5C17_F0BC }, true),
    // π = C90FDAA22168C234 C4C6…: rounded up.
    (Code::Fldpi, F80 { se: 0x4000, sig: 0xC90F_DAA2_2168_C235 }, true),
    // log10(2) = 9A209A84FBCFF798 8F89…: rounded up.
    (Code::Fldlg2, F80 { se: 0x3FFD, sig: 0x9A20_9A84_FBCF_F799 }, true),
    // ln(2) = B17217F7D1CF79AB C9E3…: rounded up.
    (Code::Fldln2, F80 { se: 0x3FFE, sig: 0xB172_17F7_D1CF_79AC }, true),
];

/// FLD1, FLDZ, FLDL2T, FLDL2E, FLDPI, FLDLG2, FLDLN2: the inexact constants are rounded in the
/// current rounding mode (without raising PE), as Pentium and later processors do.
pub fn fld_const(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    begin(cpu, true)?;
    note(cpu, i);
    let rc = env_of(cpu).rc;
    let v = match i.code() {
        Code::Fld1 => F80::ONE,
        Code::Fldz => F80::ZERO,
        code => {
            let (nearest, was_up) = CONSTANTS
                .iter()
                .find(|(c, _, _)| *c == code)
                .map(|&(_, v, up)| (v, up))
                .unwrap_or((F80::ZERO, false));
            match (rc, was_up) {
                (Rc::Down | Rc::Zero, true) => F80 { sig: nearest.sig - 1, ..nearest },
                (Rc::Up, false) => F80 { sig: nearest.sig + 1, ..nearest },
                _ => nearest,
            }
        }
    };
    push(cpu, v);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Stores.

/// FST/FSTP m32fp, m64fp, FSTP m80fp; FST/FSTP ST(i) and the FSTP aliases (D9 D8+i, DF D0+i,
/// DF D8+i).
pub fn fst(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    begin(cpu, true)?;
    let pop = i.mnemonic() != Mnemonic::Fst;
    if i.op0_kind() == OpKind::Register {
        note(cpu, i);
        let d = st_index(i.op0_register());
        if cpu.fpu.is_empty(0) {
            underflow_into(cpu, d, pop);
            return Ok(());
        }
        let v = cpu.fpu.st(0);
        cpu.fpu.set_cc(sw::C1, 0);
        cpu.fpu.set_st(d, v);
        if pop {
            cpu.fpu.pop();
        }
        return Ok(());
    }
    let size = i.memory_size();
    let env = env_of(cpu);
    if cpu.fpu.is_empty(0) {
        // Masked: the indefinite of the destination format is stored.
        let indefinite: Vec<u8> = match size {
            iced_x86::MemorySize::Float32 => 0xFFC0_0000u32.to_le_bytes().to_vec(),
            iced_x86::MemorySize::Float64 => 0xFFF8_0000_0000_0000u64.to_le_bytes().to_vec(),
            _ => F80::INDEFINITE.to_bytes().to_vec(),
        };
        if env.traps(exc::IE) {
            note(cpu, i);
            cpu.fpu.stack_underflow();
            return Ok(());
        }
        store_bytes(cpu, i, &indefinite)?;
        note(cpu, i);
        cpu.fpu.stack_underflow();
        if pop {
            cpu.fpu.pop();
        }
        return Ok(());
    }
    let v = cpu.fpu.st(0);
    let (bytes, flags, up) = match size {
        iced_x86::MemorySize::Float32 => {
            let (bits, flags, up) = to_narrow(v, Format::SINGLE, env);
            ((bits as u32).to_le_bytes().to_vec(), flags, up)
        }
        iced_x86::MemorySize::Float64 => {
            let (bits, flags, up) = to_narrow(v, Format::DOUBLE, env);
            (bits.to_le_bytes().to_vec(), flags, up)
        }
        _ => (v.to_bytes().to_vec(), 0, false),
    };
    let stores = flags & env.unmasked() & (exc::IE | exc::OE | exc::UE) == 0;
    if stores {
        store_bytes(cpu, i, &bytes)?;
    }
    note(cpu, i);
    cpu.fpu.raise(flags);
    cpu.fpu.set_cc(sw::C1, if up { sw::C1 } else { 0 });
    if stores && pop {
        cpu.fpu.pop();
    }
    Ok(())
}

/// Rounds `v` to single or double precision (the rounding mode applies, precision control
/// does not). Returns the bits (in the low 32 or all 64), the flags and whether the magnitude
/// was rounded up.
fn to_narrow(v: F80, fmt: Format, env: Env) -> (u64, u16, bool) {
    let single = fmt == Format::SINGLE;
    let nan = |n: F80| if single { u64::from(float80::nan_to_f32(n)) } else { float80::nan_to_f64(n) };
    let sign_bit = if single { 1u64 << 31 } else { 1u64 << 63 };
    let sign = if v.sign() { sign_bit } else { 0 };
    match v.class() {
        Class::Zero => (sign, 0, false),
        Class::Infinity => (sign | if single { 0x7F80_0000 } else { 0x7FF0_0000_0000_0000 }, 0, false),
        Class::QNaN => (nan(v), 0, false),
        Class::SNaN => (nan(v.quiet()), exc::IE, false),
        Class::Unsupported => (nan(F80::INDEFINITE), exc::IE, false),
        Class::Normal | Class::Denormal => {
            let (s, e, w) = float80::wide(v.unpack());
            let r = float80::round(s, e, w, fmt, env.rc, env.unmasked() & (exc::OE | exc::UE));
            let bits = if single { u64::from(float80::pack_f32(r)) } else { float80::pack_f64(r) };
            (bits, r.flags, r.up && r.flags & exc::PE != 0)
        }
    }
}

/// FIST m16int/m32int, FISTP m16int/m32int/m64int, FBSTP m80bcd.
pub fn fist(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    begin(cpu, true)?;
    let pop = i.mnemonic() != Mnemonic::Fist;
    let env = env_of(cpu);
    let size = i.memory_size();
    let bcd = size == iced_x86::MemorySize::Bcd;
    let bits = match size {
        iced_x86::MemorySize::Int16 => 16,
        iced_x86::MemorySize::Int32 => 32,
        _ => 64,
    };
    let len = if bcd { 10 } else { bits as usize / 8 };
    let indefinite = |len: usize| -> Vec<u8> {
        if bcd {
            float80::BCD_INDEFINITE.to_vec()
        } else {
            let mut b = vec![0u8; len];
            if let Some(last) = b.last_mut() {
                *last = 0x80;
            }
            b
        }
    };
    let empty = cpu.fpu.is_empty(0);
    let v = cpu.fpu.st(0);
    let (bytes, flags, up) = if empty {
        (indefinite(len), exc::IE | exc::SF, false)
    } else {
        match v.class() {
            Class::Normal | Class::Denormal | Class::Zero => {
                let limit = if bcd { 64 } else { bits };
                match float80::to_int(v, env.rc, limit) {
                    Some((n, inexact, up)) if !bcd || n.unsigned_abs() <= 999_999_999_999_999_999 => {
                        let pe = if inexact { exc::PE } else { 0 };
                        let b = if bcd {
                            float80::to_bcd(n.unsigned_abs(), v.sign()).to_vec()
                        } else {
                            n.to_le_bytes()[..len].to_vec()
                        };
                        (b, pe, up && inexact)
                    }
                    _ => (indefinite(len), exc::IE, false),
                }
            }
            _ => (indefinite(len), exc::IE, false),
        }
    };
    let stores = flags & env.unmasked() & exc::IE == 0;
    if stores {
        store_bytes(cpu, i, &bytes)?;
    }
    note(cpu, i);
    if flags & exc::SF != 0 {
        cpu.fpu.stack_underflow();
    } else {
        cpu.fpu.raise(flags);
        cpu.fpu.set_cc(sw::C1, if up { sw::C1 } else { 0 });
    }
    if stores && pop {
        cpu.fpu.pop();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Arithmetic.

/// The two-operand arithmetic operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    SubR,
    Mul,
    Div,
    DivR,
}

/// FADD, FSUB, FSUBR, FMUL, FDIV, FDIVR in every form: with a memory operand (m32fp, m64fp,
/// m16int, m32int), ST(0) op ST(i), ST(i) op ST(0), and the popping forms.
pub fn farith(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    use Mnemonic as M;
    begin(cpu, true)?;
    let (op, pop) = match i.mnemonic() {
        M::Fadd | M::Fiadd => (Op::Add, false),
        M::Faddp => (Op::Add, true),
        M::Fsub | M::Fisub => (Op::Sub, false),
        M::Fsubp => (Op::Sub, true),
        M::Fsubr | M::Fisubr => (Op::SubR, false),
        M::Fsubrp => (Op::SubR, true),
        M::Fmul | M::Fimul => (Op::Mul, false),
        M::Fmulp => (Op::Mul, true),
        M::Fdiv | M::Fidiv => (Op::Div, false),
        M::Fdivp => (Op::Div, true),
        M::Fdivr | M::Fidivr => (Op::DivR, false),
        _ => (Op::DivR, true),
    };
    let env = env_of(cpu);
    let (d, src, pre) = if i.op0_kind() == OpKind::Memory {
        let (v, flags) = read_operand(cpu, i)?;
        (0u8, Err(v), flags)
    } else {
        (st_index(i.op0_register()), Ok(st_index(i.op1_register())), 0)
    };
    note(cpu, i);
    let src_empty = matches!(src, Ok(s) if cpu.fpu.is_empty(s));
    if cpu.fpu.is_empty(d) || cpu.fpu.is_empty(0) || src_empty {
        underflow_into(cpu, d, pop);
        return Ok(());
    }
    let a = cpu.fpu.st(d);
    let b = match src {
        Ok(s) => cpu.fpu.st(s),
        Err(v) => v,
    };
    if pre & env.unmasked() != 0 {
        cpu.fpu.raise(pre);
        return Ok(());
    }
    let out = match op {
        Op::Add => arith::add(a, b, false, env),
        Op::Sub => arith::add(a, b, true, env),
        Op::SubR => arith::add(b, a, true, env),
        Op::Mul => arith::mul(a, b, env),
        Op::Div => arith::div(a, b, env),
        Op::DivR => arith::div(b, a, env),
    };
    deliver(cpu, d, out.with(pre), pop);
    Ok(())
}

/// FSQRT.
pub fn fsqrt(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    unary(cpu, i, arith::sqrt)
}

/// FRNDINT (precision control does not apply).
pub fn frndint(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    unary(cpu, i, |v, env| arith::round_int(v, env.full()))
}

/// An operation ST(0) ← f(ST(0)).
fn unary(cpu: &mut Cpu, i: &Instruction, f: impl Fn(F80, Env) -> Out) -> Res {
    begin(cpu, true)?;
    note(cpu, i);
    if cpu.fpu.is_empty(0) {
        underflow_into(cpu, 0, false);
        return Ok(());
    }
    let env = env_of(cpu);
    let out = f(cpu.fpu.st(0), env);
    deliver(cpu, 0, out, false);
    Ok(())
}

/// FCHS and FABS: sign operations that raise nothing but stack underflow.
pub fn fsign(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    begin(cpu, true)?;
    note(cpu, i);
    if cpu.fpu.is_empty(0) {
        underflow_into(cpu, 0, false);
        return Ok(());
    }
    let v = cpu.fpu.st(0);
    let sign = if i.code() == Code::Fchs { !v.sign() } else { false };
    cpu.fpu.set_cc(sw::C1, 0);
    cpu.fpu.set_st(0, v.with_sign(sign));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Comparisons.

/// FCOM, FCOMP, FCOMPP, FUCOM, FUCOMP, FUCOMPP, FICOM, FICOMP, FTST (condition codes C3 C2
/// C0) and FCOMI, FCOMIP, FUCOMI, FUCOMIP (ZF PF CF; OF SF AF cleared).
pub fn fcom(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    use Mnemonic as M;
    begin(cpu, true)?;
    let m = i.mnemonic();
    let pops = match m {
        M::Fcomp | M::Fucomp | M::Ficomp | M::Fcomip | M::Fucomip => 1,
        M::Fcompp | M::Fucompp => 2,
        _ => 0,
    };
    let quiet = matches!(m, M::Fucom | M::Fucomp | M::Fucompp | M::Fucomi | M::Fucomip);
    let eflags = matches!(m, M::Fcomi | M::Fcomip | M::Fucomi | M::Fucomip);
    let env = env_of(cpu);
    let (src, pre) = if m == M::Ftst {
        (Err(F80::ZERO), 0)
    } else if matches!(m, M::Fcompp | M::Fucompp) {
        (Ok(1u8), 0)
    } else if i.op0_kind() == OpKind::Memory {
        let (v, flags) = read_operand(cpu, i)?;
        (Err(v), flags)
    } else {
        let r = if i.op_count() > 1 { i.op1_register() } else { i.op0_register() };
        (Ok(st_index(r)), 0)
    };
    note(cpu, i);
    let src_empty = matches!(src, Ok(s) if cpu.fpu.is_empty(s));
    let result = if cpu.fpu.is_empty(0) || src_empty {
        if cpu.fpu.stack_underflow() {
            Some(Cmp::Unordered)
        } else {
            None
        }
    } else {
        let a = cpu.fpu.st(0);
        let b = match src {
            Ok(s) => cpu.fpu.st(s),
            Err(v) => v,
        };
        if pre & env.unmasked() != 0 {
            cpu.fpu.raise(pre);
            None
        } else {
            let (r, flags) = arith::compare(a, b, quiet, env);
            cpu.fpu.raise(flags | pre);
            cpu.fpu.set_cc(sw::C1, 0);
            r
        }
    };
    let Some(r) = result else { return Ok(()) };
    if eflags {
        let f = match r {
            Cmp::Greater => 0,
            Cmp::Less => fl::CF,
            Cmp::Equal => fl::ZF,
            Cmp::Unordered => fl::ZF | fl::PF | fl::CF,
        };
        cpu.state.set_arith(f);
    } else {
        let cc = match r {
            Cmp::Greater => 0,
            Cmp::Less => sw::C0,
            Cmp::Equal => sw::C3,
            Cmp::Unordered => sw::C3 | sw::C2 | sw::C0,
        };
        cpu.fpu.set_cc(sw::C3 | sw::C2 | sw::C0, cc);
    }
    for _ in 0..pops {
        cpu.fpu.pop();
    }
    Ok(())
}

/// FXAM: classifies ST(0) into C3 C2 C0, with its sign in C1 (SDM Vol. 2 FXAM, Table 3-43).
pub fn fxam(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    begin(cpu, true)?;
    note(cpu, i);
    let v = cpu.fpu.st(0);
    let c = if cpu.fpu.is_empty(0) {
        sw::C3 | sw::C0
    } else {
        match v.class() {
            Class::Unsupported => 0,
            Class::QNaN | Class::SNaN => sw::C0,
            Class::Normal => sw::C2,
            Class::Infinity => sw::C2 | sw::C0,
            Class::Zero => sw::C3,
            Class::Denormal => sw::C3 | sw::C2,
        }
    };
    let c1 = if v.sign() { sw::C1 } else { 0 };
    cpu.fpu.set_cc(sw::CC, c | c1);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Register moves.

/// FXCH ST(i) (and its aliases DD C8+i, DF C8+i).
pub fn fxch(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    begin(cpu, true)?;
    note(cpu, i);
    let s = st_index(i.op1_register());
    if cpu.fpu.is_empty(0) || cpu.fpu.is_empty(s) {
        if !cpu.fpu.stack_underflow() {
            return Ok(());
        }
        for r in [0, s] {
            if cpu.fpu.is_empty(r) {
                cpu.fpu.set_st(r, F80::INDEFINITE);
            }
        }
    } else {
        cpu.fpu.set_cc(sw::C1, 0);
    }
    let (a, b) = (cpu.fpu.st(0), cpu.fpu.st(s));
    cpu.fpu.set_st(0, b);
    cpu.fpu.set_st(s, a);
    Ok(())
}

/// FCMOVcc ST(0), ST(i): the condition is read from EFLAGS (B: CF, E: ZF, BE: CF or ZF, U:
/// PF, and their negations).
pub fn fcmov(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    begin(cpu, true)?;
    note(cpu, i);
    let s = st_index(i.op1_register());
    if cpu.fpu.is_empty(0) || cpu.fpu.is_empty(s) {
        underflow_into(cpu, 0, false);
        return Ok(());
    }
    let f = cpu.state.eflags();
    let (cf, zf, pf) = (f & fl::CF != 0, f & fl::ZF != 0, f & fl::PF != 0);
    let cond = match i.code() {
        Code::Fcmovb_st0_sti => cf,
        Code::Fcmove_st0_sti => zf,
        Code::Fcmovbe_st0_sti => cf || zf,
        Code::Fcmovu_st0_sti => pf,
        Code::Fcmovnb_st0_sti => !cf,
        Code::Fcmovne_st0_sti => !zf,
        Code::Fcmovnbe_st0_sti => !cf && !zf,
        _ => !pf,
    };
    cpu.fpu.set_cc(sw::C1, 0);
    if cond {
        let v = cpu.fpu.st(s);
        cpu.fpu.set_st(0, v);
    }
    Ok(())
}

/// FFREE ST(i), FFREEP ST(i) (tags it empty; FFREEP also increments TOP).
pub fn ffree(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    begin(cpu, true)?;
    note(cpu, i);
    cpu.fpu.free(st_index(i.op0_register()));
    if i.code() == Code::Ffreep_sti {
        cpu.fpu.inc_top();
    }
    Ok(())
}

/// FINCSTP, FDECSTP (TOP ± 1, tags unchanged, C1 = 0).
pub fn fstp_move(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    begin(cpu, true)?;
    note(cpu, i);
    if i.code() == Code::Fincstp {
        cpu.fpu.inc_top();
    } else {
        cpu.fpu.dec_top();
    }
    cpu.fpu.set_cc(sw::C1, 0);
    Ok(())
}

/// FNOP.
pub fn fnop(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    begin(cpu, true)?;
    note(cpu, i);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Control instructions (they leave FIP/FDP/FOP alone).

/// WAIT/FWAIT: #NM when CR0.MP and CR0.TS are both set; then a pending unmasked exception is
/// reported (#MF, or FERR# with CR0.NE clear).
pub fn fwait(cpu: &mut Cpu, _io: &mut dyn PortIo, _i: &Instruction) -> Res {
    let c = cpu.state.cr[0];
    if c & cr0::MP != 0 && c & cr0::TS != 0 {
        return Err(Exception::DeviceNotAvailable);
    }
    pending(cpu)
}

/// The waiting forms iced-x86 can name as one instruction (FINIT, FCLEX, FSTSW, FSTCW,
/// FSTENV, FSAVE, FENI, FDISI, FSETPM) are WAIT followed by the no-wait form.
fn waits(i: &Instruction) -> bool {
    matches!(
        i.code(),
        Code::Finit
            | Code::Fclex
            | Code::Fstsw_m2byte
            | Code::Fstsw_AX
            | Code::Fstcw_m2byte
            | Code::Fstenv_m14byte
            | Code::Fstenv_m28byte
            | Code::Fsave_m94byte
            | Code::Fsave_m108byte
            | Code::Feni
            | Code::Fdisi
            | Code::Fsetpm
    )
}

/// FNINIT (FINIT).
pub fn finit(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    begin(cpu, waits(i))?;
    cpu.fpu.init();
    Ok(())
}

/// FNCLEX (FCLEX).
pub fn fclex(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    begin(cpu, waits(i))?;
    cpu.fpu.clear_exceptions();
    Ok(())
}

/// FENI, FDISI, FSETPM (and their no-wait forms): no-ops on a 387 and later.
pub fn fnop_legacy(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    begin(cpu, waits(i))
}

/// FLDCW m2byte: a newly unmasked pending flag sets ES (reported by the next waiting
/// instruction).
pub fn fldcw(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    begin(cpu, true)?;
    let mut b = [0u8; 2];
    read_bytes(cpu, i, 0, &mut b)?;
    cpu.fpu.set_control(u16::from_le_bytes(b));
    Ok(())
}

/// FNSTCW m2byte (FSTCW).
pub fn fstcw(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    begin(cpu, waits(i))?;
    let v = cpu.fpu.cw;
    store_bytes(cpu, i, &v.to_le_bytes())
}

/// FNSTSW m2byte and FNSTSW AX (FSTSW).
pub fn fstsw(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    begin(cpu, waits(i))?;
    let v = cpu.fpu.status();
    if i.op0_kind() == OpKind::Register {
        cpu.state.set_reg16(gpr::EAX, v);
        return Ok(());
    }
    store_bytes(cpu, i, &v.to_le_bytes())
}

/// The environment layout for the current mode and the instruction's operand size.
fn layout(cpu: &Cpu, i: &Instruction) -> env::Layout {
    let op32 = matches!(
        i.code(),
        Code::Fnstenv_m28byte
            | Code::Fstenv_m28byte
            | Code::Fldenv_m28byte
            | Code::Fnsave_m108byte
            | Code::Fsave_m108byte
            | Code::Frstor_m108byte
    );
    env::Layout { protected: cpu.state.protected() && !cpu.state.v86(), op32 }
}

/// FNSTENV m14/28byte (FSTENV): stores the environment, then masks every exception.
pub fn fstenv(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    begin(cpu, waits(i))?;
    let l = layout(cpu, i);
    let image = env::store(&cpu.fpu, l);
    store_bytes(cpu, i, &image[..l.size()])?;
    cpu.fpu.cw |= crate::x87::cw::MASKS;
    Ok(())
}

/// FLDENV m14/28byte.
pub fn fldenv(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    begin(cpu, true)?;
    let l = layout(cpu, i);
    let mut image = [0u8; 28];
    read_bytes(cpu, i, 0, &mut image[..l.size()])?;
    env::load(&mut cpu.fpu, &image, l);
    Ok(())
}

/// FNSAVE m94/108byte (FSAVE): stores the environment and the registers, then FNINIT.
pub fn fsave(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    begin(cpu, waits(i))?;
    let l = layout(cpu, i);
    let image = env::save(&cpu.fpu, l);
    store_bytes(cpu, i, &image)?;
    cpu.fpu.init();
    Ok(())
}

/// FRSTOR m94/108byte.
pub fn frstor(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    begin(cpu, true)?;
    let l = layout(cpu, i);
    let mut image = [0u8; 108];
    let n = env::save_size(l);
    read_bytes(cpu, i, 0, &mut image[..n])?;
    env::restore(&mut cpu.fpu, &image[..n], l);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// FPREM, FPREM1, FSCALE, FXTRACT.

/// FPREM and FPREM1: ST(0) ← partial remainder of ST(0) / ST(1); C0, C3, C1 ← quotient bits
/// q2, q1, q0 and C2 ← 1 when the reduction is incomplete.
pub fn fprem(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    begin(cpu, true)?;
    note(cpu, i);
    if cpu.fpu.is_empty(0) || cpu.fpu.is_empty(1) {
        underflow_into(cpu, 0, false);
        return Ok(());
    }
    let env = env_of(cpu);
    let r = arith::rem(cpu.fpu.st(0), cpu.fpu.st(1), i.code() == Code::Fprem1, env);
    cpu.fpu.raise(r.out.flags);
    if let Some(v) = r.out.val {
        cpu.fpu.set_st(0, v);
        let q = u16::from(r.q);
        let cc = if q & 4 != 0 { sw::C0 } else { 0 }
            | if q & 2 != 0 { sw::C3 } else { 0 }
            | if q & 1 != 0 { sw::C1 } else { 0 }
            | if r.partial { sw::C2 } else { 0 };
        cpu.fpu.set_cc(sw::CC, cc);
    }
    Ok(())
}

/// FSCALE: ST(0) ← ST(0) × 2^trunc(ST(1)).
pub fn fscale(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    begin(cpu, true)?;
    note(cpu, i);
    if cpu.fpu.is_empty(0) || cpu.fpu.is_empty(1) {
        underflow_into(cpu, 0, false);
        return Ok(());
    }
    let env = env_of(cpu);
    let out = arith::scale(cpu.fpu.st(0), cpu.fpu.st(1), env.full());
    deliver(cpu, 0, out, false);
    Ok(())
}

/// FXTRACT: ST(0) ← exponent (as a value), then push the significand (exponent 0).
pub fn fxtract(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    begin(cpu, true)?;
    note(cpu, i);
    if cpu.fpu.is_empty(0) {
        if cpu.fpu.stack_underflow() {
            cpu.fpu.set_st(0, F80::INDEFINITE);
            cpu.fpu.push(F80::INDEFINITE);
        }
        return Ok(());
    }
    if !cpu.fpu.is_empty(7) {
        if cpu.fpu.stack_overflow() {
            cpu.fpu.set_st(0, F80::INDEFINITE);
            cpu.fpu.push(F80::INDEFINITE);
        }
        return Ok(());
    }
    let env = env_of(cpu);
    let (e, s, flags) = arith::xtract(cpu.fpu.st(0), env);
    cpu.fpu.raise(flags);
    cpu.fpu.set_cc(sw::C1, 0);
    if let (Some(e), Some(s)) = (e, s) {
        cpu.fpu.set_st(0, e);
        cpu.fpu.push(s);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Transcendentals.

/// FSIN, FCOS, FPTAN, FSINCOS, F2XM1: one-operand transcendentals (FPTAN and FSINCOS push).
pub fn ftrans1(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    begin(cpu, true)?;
    note(cpu, i);
    let code = i.code();
    let pushes = matches!(code, Code::Fptan | Code::Fsincos);
    if cpu.fpu.is_empty(0) {
        if cpu.fpu.stack_underflow() {
            cpu.fpu.set_st(0, F80::INDEFINITE);
            if pushes {
                cpu.fpu.push(F80::INDEFINITE);
            }
        }
        return Ok(());
    }
    if pushes && !cpu.fpu.is_empty(7) {
        if cpu.fpu.stack_overflow() {
            cpu.fpu.set_st(0, F80::INDEFINITE);
            cpu.fpu.push(F80::INDEFINITE);
        }
        return Ok(());
    }
    let env = env_of(cpu).full();
    let x = cpu.fpu.st(0);
    let r = match code {
        Code::Fsin => transcendental::fsin(x, env),
        Code::Fcos => transcendental::fcos(x, env),
        Code::Fptan => transcendental::fptan(x, env),
        Code::Fsincos => transcendental::fsincos(x, env),
        _ => transcendental::f2xm1(x, env),
    };
    cpu.fpu.raise(r.flags);
    if r.out_of_range {
        // |x| ≥ 2^63: C2 = 1 and ST(0) unchanged.
        cpu.fpu.set_cc(sw::C2, sw::C2);
        return Ok(());
    }
    cpu.fpu.set_cc(sw::C1 | sw::C2, if r.up { sw::C1 } else { 0 });
    if let Some(v) = r.st0 {
        cpu.fpu.set_st(0, v);
        if let Some(p) = r.push {
            cpu.fpu.push(p);
        }
    }
    Ok(())
}

/// FPATAN, FYL2X, FYL2XP1: ST(1) ← f(ST(1), ST(0)), then pop.
pub fn ftrans2(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    begin(cpu, true)?;
    note(cpu, i);
    if cpu.fpu.is_empty(0) || cpu.fpu.is_empty(1) {
        underflow_into(cpu, 1, true);
        return Ok(());
    }
    let env = env_of(cpu).full();
    let (x, y) = (cpu.fpu.st(0), cpu.fpu.st(1));
    let out = match i.code() {
        Code::Fpatan => transcendental::fpatan(y, x, env),
        Code::Fyl2x => transcendental::fyl2x(y, x, env),
        _ => transcendental::fyl2xp1(y, x, env),
    };
    deliver(cpu, 1, out, true);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The constants to 128 bits (mpmath, 400-bit precision): biased exponent and significand
    /// with its integer bit at bit 127.
    const EXACT: [(Code, i32, u128); 5] = [
        (Code::Fldl2t, 0x4000, 0xD49A_784B_CD1B_8AFE_492B_F6FF_4DAF_DB4C),
        (Code::Fldl2e, 0x3FFF, 0xB8AA_3B29_5C17_F0BB_BE87_FED0_691D_3E88),
        (Code::Fldpi, 0x4000, 0xC90F_DAA2_2168_C234_C4C6_628B_80DC_1CD1),
        (Code::Fldlg2, 0x3FFD, 0x9A20_9A84_FBCF_F798_8F89_59AC_0B7C_9178),
        (Code::Fldln2, 0x3FFE, 0xB172_17F7_D1CF_79AB_C9E3_B398_03F2_F6AF),
    ];

    #[test]
    fn constants_match_exact_values() {
        for (code, exp, sig) in EXACT {
            let &(_, nearest, was_up) = CONSTANTS.iter().find(|c| c.0 == code).expect("listed");
            for rc in [Rc::Nearest, Rc::Down, Rc::Up, Rc::Zero] {
                // The truncated 128-bit expansion is below the exact value: jam a sticky bit.
                let r = float80::round(false, exp, sig | 1, Format::EXTENDED, rc, 0).to_f80();
                let table = match (rc, was_up) {
                    (Rc::Down | Rc::Zero, true) => F80 { sig: nearest.sig - 1, ..nearest },
                    (Rc::Up, false) => F80 { sig: nearest.sig + 1, ..nearest },
                    _ => nearest,
                };
                assert_eq!(r, table, "{code:?} {rc:?}");
            }
        }
    }
}
