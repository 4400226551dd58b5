//! The instruction set: one declarative table, keyed by `iced_x86::Code`, that gives every
//! instruction bt86 implements its handler and its metadata.
//!
//! The interpreter executes `TABLE[code].exec`; the translator reads `props` to decide where a
//! block ends and what becomes a callout; the Popek–Goldberg trace prints `class`. A `Code` that
//! is absent from the table raises #UD, so an instruction bt86 does not implement can never run
//! by accident (that is also how instructions newer than the P6, which iced-x86 decodes, are
//! refused).
//!
//! Handlers are grouped by family, one file each, headed with its SDM section.
//!
//! ## Popek–Goldberg classes
//!
//! Following Popek & Goldberg (CACM 1974) and Robin & Irvine (USENIX Security 2000): an
//! instruction is *privileged* if it traps when executed outside ring 0, *sensitive* if it
//! changes or reveals the processor's mode, privilege or resources, and *critical* if it is
//! sensitive but not privileged — it runs silently at ring 3 and does the wrong thing for a guest
//! kernel deprivileged by a trap-and-emulate monitor. IOPL-sensitive instructions trap only when
//! CPL > IOPL; a monitor runs its guests that way, so for it they behave as privileged.

mod alu;
mod bcd;
mod bits;
mod control;
mod descriptor;
mod mov;
mod muldiv;
pub mod operand;
mod port;
mod shift;
mod stack;
mod string;
mod system;
mod x87;

use bitflags::bitflags;
use iced_x86::{Code, Instruction};

use crate::cpu::Cpu;
use crate::exception::Exception;
use crate::io::PortIo;

pub use mov::cond;
pub use stack::iret_flags;

/// What a handler returns: the instruction retired, or the exception it raised.
pub type Res = Result<(), Exception>;

/// An instruction handler.
pub type Handler = fn(&mut Cpu, &mut dyn PortIo, &Instruction) -> Res;

/// Popek–Goldberg class of an instruction (see the module header).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PgClass {
    /// Neither reveals nor changes privileged state.
    Innocuous,
    /// Sensitive and privileged: #GP outside ring 0, so trap-and-emulate catches it.
    Privileged,
    /// Sensitive and trapping when CPL > IOPL (IN, OUT, INS, OUTS, CLI, STI).
    IoplSensitive,
    /// Critical, control-sensitive: changes mode or resources without trapping at CPL > 0
    /// (POPF silently keeps IF, segment loads, far transfers, INT n, IRET).
    CriticalControl,
    /// Critical, behaviour-sensitive: reveals mode, privilege or location without trapping
    /// (SGDT, SIDT, SMSW, PUSHF, reading segment selectors, CPUID).
    CriticalBehaviour,
}

impl PgClass {
    /// Sensitive in Popek & Goldberg's sense.
    pub fn sensitive(self) -> bool {
        self != PgClass::Innocuous
    }

    /// Critical: sensitive but not privileged.
    pub fn critical(self) -> bool {
        matches!(self, PgClass::CriticalControl | PgClass::CriticalBehaviour)
    }
}

bitflags! {
    /// Properties the translator and tracer need.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Props: u8 {
        /// Changes control flow: a basic block ends after it.
        const BRANCH = 1 << 0;
        /// May change the processor mode, CPL or address translation: the block ends and the
        /// dispatcher looks up the next block under the new mode key.
        const MODE = 1 << 1;
        /// Port I/O.
        const IO = 1 << 2;
        /// A string instruction (REP-able, restartable).
        const STRING = 1 << 3;
    }
}

/// Everything bt86 knows about one `Code`.
#[derive(Clone, Copy, Debug)]
pub struct InsnInfo {
    /// The interpreter's handler (also the translator's callout target).
    pub exec: Handler,
    /// Popek–Goldberg class.
    pub class: PgClass,
    /// Block-building properties.
    pub props: Props,
}

/// Number of `iced_x86::Code` values (checked by a unit test against iced-x86).
pub const CODE_COUNT: usize = 4936;

struct Row {
    codes: &'static [Code],
    info: InsnInfo,
}

macro_rules! rows {
    ($( [$($code:ident),+ $(,)?] => $handler:path, $class:ident $(| $prop:ident)* ;)*) => {
        &[$(Row {
            codes: &[$(Code::$code),+],
            info: InsnInfo {
                exec: $handler,
                class: PgClass::$class,
                props: Props::empty()$(.union(Props::$prop))*,
            },
        }),*]
    };
}

const fn build(rows: &[Row]) -> [Option<InsnInfo>; CODE_COUNT] {
    let mut table = [None; CODE_COUNT];
    let mut r = 0;
    while r < rows.len() {
        let mut c = 0;
        while c < rows[r].codes.len() {
            let code = rows[r].codes[c] as usize;
            assert!(table[code].is_none(), "a Code appears twice in the instruction table");
            table[code] = Some(rows[r].info);
            c += 1;
        }
        r += 1;
    }
    table
}

/// The handler and metadata of `code`, or `None` if bt86 does not implement it (#UD).
#[inline]
pub fn lookup(code: Code) -> Option<&'static InsnInfo> {
    TABLE[code as usize].as_ref()
}

/// Every implemented `Code` with its metadata (for the tracer, docs and tests).
pub fn implemented() -> impl Iterator<Item = (Code, &'static InsnInfo)> {
    Code::values().filter_map(|c| lookup(c).map(|i| (c, i)))
}

static TABLE: [Option<InsnInfo>; CODE_COUNT] = build(ROWS);

#[rustfmt::skip]
const ROWS: &[Row] = rows! {
    // ---- integer arithmetic and logic (alu.rs) ----
    [Add_rm8_r8, Add_rm16_r16, Add_rm32_r32, Add_r8_rm8, Add_r16_rm16, Add_r32_rm32, Add_AL_imm8,
     Add_AX_imm16, Add_EAX_imm32, Add_rm8_imm8, Add_rm16_imm16, Add_rm32_imm32, Add_rm8_imm8_82,
     Add_rm16_imm8, Add_rm32_imm8] => alu::add, Innocuous;
    [Or_rm8_r8, Or_rm16_r16, Or_rm32_r32, Or_r8_rm8, Or_r16_rm16, Or_r32_rm32, Or_AL_imm8,
     Or_AX_imm16, Or_EAX_imm32, Or_rm8_imm8, Or_rm16_imm16, Or_rm32_imm32, Or_rm8_imm8_82,
     Or_rm16_imm8, Or_rm32_imm8] => alu::or, Innocuous;
    [Adc_rm8_r8, Adc_rm16_r16, Adc_rm32_r32, Adc_r8_rm8, Adc_r16_rm16, Adc_r32_rm32, Adc_AL_imm8,
     Adc_AX_imm16, Adc_EAX_imm32, Adc_rm8_imm8, Adc_rm16_imm16, Adc_rm32_imm32, Adc_rm8_imm8_82,
     Adc_rm16_imm8, Adc_rm32_imm8] => alu::adc, Innocuous;
    [Sbb_rm8_r8, Sbb_rm16_r16, Sbb_rm32_r32, Sbb_r8_rm8, Sbb_r16_rm16, Sbb_r32_rm32, Sbb_AL_imm8,
     Sbb_AX_imm16, Sbb_EAX_imm32, Sbb_rm8_imm8, Sbb_rm16_imm16, Sbb_rm32_imm32, Sbb_rm8_imm8_82,
     Sbb_rm16_imm8, Sbb_rm32_imm8] => alu::sbb, Innocuous;
    [And_rm8_r8, And_rm16_r16, And_rm32_r32, And_r8_rm8, And_r16_rm16, And_r32_rm32, And_AL_imm8,
     And_AX_imm16, And_EAX_imm32, And_rm8_imm8, And_rm16_imm16, And_rm32_imm32, And_rm8_imm8_82,
     And_rm16_imm8, And_rm32_imm8] => alu::and, Innocuous;
    [Sub_rm8_r8, Sub_rm16_r16, Sub_rm32_r32, Sub_r8_rm8, Sub_r16_rm16, Sub_r32_rm32, Sub_AL_imm8,
     Sub_AX_imm16, Sub_EAX_imm32, Sub_rm8_imm8, Sub_rm16_imm16, Sub_rm32_imm32, Sub_rm8_imm8_82,
     Sub_rm16_imm8, Sub_rm32_imm8] => alu::sub, Innocuous;
    [Xor_rm8_r8, Xor_rm16_r16, Xor_rm32_r32, Xor_r8_rm8, Xor_r16_rm16, Xor_r32_rm32, Xor_AL_imm8,
     Xor_AX_imm16, Xor_EAX_imm32, Xor_rm8_imm8, Xor_rm16_imm16, Xor_rm32_imm32, Xor_rm8_imm8_82,
     Xor_rm16_imm8, Xor_rm32_imm8] => alu::xor, Innocuous;
    [Cmp_rm8_r8, Cmp_rm16_r16, Cmp_rm32_r32, Cmp_r8_rm8, Cmp_r16_rm16, Cmp_r32_rm32, Cmp_AL_imm8,
     Cmp_AX_imm16, Cmp_EAX_imm32, Cmp_rm8_imm8, Cmp_rm16_imm16, Cmp_rm32_imm32, Cmp_rm8_imm8_82,
     Cmp_rm16_imm8, Cmp_rm32_imm8] => alu::cmp, Innocuous;
    [Test_rm8_r8, Test_rm16_r16, Test_rm32_r32, Test_AL_imm8, Test_AX_imm16, Test_EAX_imm32,
     Test_rm8_imm8, Test_rm8_imm8_F6r1, Test_rm16_imm16, Test_rm32_imm32, Test_rm16_imm16_F7r1,
     Test_rm32_imm32_F7r1] => alu::test, Innocuous;
    [Inc_r16, Inc_r32, Inc_rm8, Inc_rm16, Inc_rm32] => alu::inc, Innocuous;
    [Dec_r16, Dec_r32, Dec_rm8, Dec_rm16, Dec_rm32] => alu::dec, Innocuous;
    [Neg_rm8, Neg_rm16, Neg_rm32] => alu::neg, Innocuous;
    [Not_rm8, Not_rm16, Not_rm32] => alu::not, Innocuous;
    [Xadd_rm8_r8, Xadd_rm16_r16, Xadd_rm32_r32] => alu::xadd, Innocuous;
    [Cmpxchg_rm8_r8, Cmpxchg_rm16_r16, Cmpxchg_rm32_r32] => alu::cmpxchg, Innocuous;
    [Cmpxchg8b_m64] => alu::cmpxchg8b, Innocuous;

    // ---- multiply and divide (muldiv.rs) ----
    [Mul_rm8, Mul_rm16, Mul_rm32] => muldiv::mul, Innocuous;
    [Imul_rm8, Imul_rm16, Imul_rm32] => muldiv::imul1, Innocuous;
    [Imul_r16_rm16, Imul_r32_rm32, Imul_r16_rm16_imm16, Imul_r32_rm32_imm32, Imul_r16_rm16_imm8,
     Imul_r32_rm32_imm8] => muldiv::imul_n, Innocuous;
    [Div_rm8, Div_rm16, Div_rm32] => muldiv::div, Innocuous;
    [Idiv_rm8, Idiv_rm16, Idiv_rm32] => muldiv::idiv, Innocuous;

    // ---- shifts and rotates (shift.rs) ----
    [Rol_rm8_imm8, Ror_rm8_imm8, Rcl_rm8_imm8, Rcr_rm8_imm8, Shl_rm8_imm8, Shr_rm8_imm8,
     Sal_rm8_imm8, Sar_rm8_imm8, Rol_rm16_imm8, Rol_rm32_imm8, Ror_rm16_imm8, Ror_rm32_imm8,
     Rcl_rm16_imm8, Rcl_rm32_imm8, Rcr_rm16_imm8, Rcr_rm32_imm8, Shl_rm16_imm8, Shl_rm32_imm8,
     Shr_rm16_imm8, Shr_rm32_imm8, Sal_rm16_imm8, Sal_rm32_imm8, Sar_rm16_imm8, Sar_rm32_imm8,
     Rol_rm8_1, Ror_rm8_1, Rcl_rm8_1, Rcr_rm8_1, Shl_rm8_1, Shr_rm8_1, Sal_rm8_1, Sar_rm8_1,
     Rol_rm16_1, Rol_rm32_1, Ror_rm16_1, Ror_rm32_1, Rcl_rm16_1, Rcl_rm32_1, Rcr_rm16_1,
     Rcr_rm32_1, Shl_rm16_1, Shl_rm32_1, Shr_rm16_1, Shr_rm32_1, Sal_rm16_1, Sal_rm32_1,
     Sar_rm16_1, Sar_rm32_1, Rol_rm8_CL, Ror_rm8_CL, Rcl_rm8_CL, Rcr_rm8_CL, Shl_rm8_CL,
     Shr_rm8_CL, Sal_rm8_CL, Sar_rm8_CL, Rol_rm16_CL, Rol_rm32_CL, Ror_rm16_CL, Ror_rm32_CL,
     Rcl_rm16_CL, Rcl_rm32_CL, Rcr_rm16_CL, Rcr_rm32_CL, Shl_rm16_CL, Shl_rm32_CL, Shr_rm16_CL,
     Shr_rm32_CL, Sal_rm16_CL, Sal_rm32_CL, Sar_rm16_CL, Sar_rm32_CL] => shift::shift, Innocuous;
    [Shld_rm16_r16_imm8, Shld_rm32_r32_imm8, Shld_rm16_r16_CL, Shld_rm32_r32_CL,
     Shrd_rm16_r16_imm8, Shrd_rm32_r32_imm8, Shrd_rm16_r16_CL, Shrd_rm32_r32_CL]
        => shift::double_shift, Innocuous;

    // ---- bit test and scan (bits.rs) ----
    [Bt_rm16_r16, Bt_rm32_r32, Bts_rm16_r16, Bts_rm32_r32, Btr_rm16_r16, Btr_rm32_r32,
     Btc_rm16_r16, Btc_rm32_r32, Bt_rm16_imm8, Bt_rm32_imm8, Bts_rm16_imm8, Bts_rm32_imm8,
     Btr_rm16_imm8, Btr_rm32_imm8, Btc_rm16_imm8, Btc_rm32_imm8] => bits::bt, Innocuous;
    [Bsf_r16_rm16, Bsf_r32_rm32, Bsr_r16_rm16, Bsr_r32_rm32] => bits::bsf_bsr, Innocuous;
    // F3 0F BC / F3 0F BD: TZCNT and LZCNT to iced-x86, but a P6 has neither BMI1 nor LZCNT
    // (CPUID reports neither): the F3 prefix is ignored and they run as BSF and BSR, as on
    // every processor before them (SDM Vol. 2B, TZCNT and LZCNT, "compatibility").
    [Tzcnt_r16_rm16, Tzcnt_r32_rm32, Lzcnt_r16_rm16, Lzcnt_r32_rm32] => bits::bsf_bsr, Innocuous;

    // ---- decimal arithmetic (bcd.rs) ----
    [Daa, Das] => bcd::daa_das, Innocuous;
    [Aaa, Aas] => bcd::aaa_aas, Innocuous;
    [Aam_imm8] => bcd::aam, Innocuous;
    [Aad_imm8] => bcd::aad, Innocuous;
    [Salc] => bcd::salc, Innocuous;

    // ---- data movement (mov.rs) ----
    [Mov_rm8_r8, Mov_rm16_r16, Mov_rm32_r32, Mov_r8_rm8, Mov_r16_rm16, Mov_r32_rm32,
     Mov_AL_moffs8, Mov_AX_moffs16, Mov_EAX_moffs32, Mov_moffs8_AL, Mov_moffs16_AX,
     Mov_moffs32_EAX, Mov_r8_imm8, Mov_r16_imm16, Mov_r32_imm32, Mov_rm8_imm8, Mov_rm16_imm16,
     Mov_rm32_imm32] => mov::mov, Innocuous;
    [Mov_Sreg_rm16, Mov_Sreg_r32m16] => mov::mov_to_sreg, CriticalControl;
    [Mov_rm16_Sreg, Mov_r32m16_Sreg] => mov::mov_from_sreg, CriticalBehaviour;
    [Movzx_r16_rm8, Movzx_r32_rm8, Movzx_r16_rm16, Movzx_r32_rm16] => mov::movzx, Innocuous;
    [Movsx_r16_rm8, Movsx_r32_rm8, Movsx_r16_rm16, Movsx_r32_rm16] => mov::movsx, Innocuous;
    [Xchg_rm8_r8, Xchg_rm16_r16, Xchg_rm32_r32, Xchg_r16_AX, Xchg_r32_EAX] => mov::xchg, Innocuous;
    [Lea_r16_m, Lea_r32_m] => mov::lea, Innocuous;
    [Lds_r16_m1616, Lds_r32_m1632, Les_r16_m1616, Les_r32_m1632, Lfs_r16_m1616, Lfs_r32_m1632,
     Lgs_r16_m1616, Lgs_r32_m1632, Lss_r16_m1616, Lss_r32_m1632]
        => mov::load_far_pointer, CriticalControl;
    [Xlat_m8] => mov::xlat, Innocuous;
    [Cbw, Cwde] => mov::cbw, Innocuous;
    [Cwd, Cdq] => mov::cwd, Innocuous;
    [Bswap_r16, Bswap_r32] => mov::bswap, Innocuous;
    [Cmovo_r16_rm16, Cmovo_r32_rm32, Cmovno_r16_rm16, Cmovno_r32_rm32, Cmovb_r16_rm16,
     Cmovb_r32_rm32, Cmovae_r16_rm16, Cmovae_r32_rm32, Cmove_r16_rm16, Cmove_r32_rm32,
     Cmovne_r16_rm16, Cmovne_r32_rm32, Cmovbe_r16_rm16, Cmovbe_r32_rm32, Cmova_r16_rm16,
     Cmova_r32_rm32, Cmovs_r16_rm16, Cmovs_r32_rm32, Cmovns_r16_rm16, Cmovns_r32_rm32,
     Cmovp_r16_rm16, Cmovp_r32_rm32, Cmovnp_r16_rm16, Cmovnp_r32_rm32, Cmovl_r16_rm16,
     Cmovl_r32_rm32, Cmovge_r16_rm16, Cmovge_r32_rm32, Cmovle_r16_rm16, Cmovle_r32_rm32,
     Cmovg_r16_rm16, Cmovg_r32_rm32] => mov::cmov, Innocuous;
    [Seto_rm8, Setno_rm8, Setb_rm8, Setae_rm8, Sete_rm8, Setne_rm8, Setbe_rm8, Seta_rm8,
     Sets_rm8, Setns_rm8, Setp_rm8, Setnp_rm8, Setl_rm8, Setge_rm8, Setle_rm8, Setg_rm8]
        => mov::setcc, Innocuous;
    [Lahf] => mov::lahf, Innocuous;
    [Sahf] => mov::sahf, Innocuous;
    [Nopw, Nopd, Pause, Nop_rm16, Nop_rm32] => mov::nop, Innocuous;

    // ---- stack (stack.rs) ----
    [Push_r16, Push_r32, Push_rm16, Push_rm32, Push_imm16, Pushd_imm32, Pushw_imm8, Pushd_imm8]
        => stack::push, Innocuous;
    [Pushw_ES, Pushd_ES, Pushw_CS, Pushd_CS, Pushw_SS, Pushd_SS, Pushw_DS, Pushd_DS, Pushw_FS,
     Pushd_FS, Pushw_GS, Pushd_GS] => stack::push_sreg, CriticalBehaviour;
    [Pop_r16, Pop_r32, Pop_rm16, Pop_rm32] => stack::pop, Innocuous;
    [Popw_ES, Popd_ES, Popw_SS, Popd_SS, Popw_DS, Popd_DS, Popw_FS, Popd_FS, Popw_GS, Popd_GS]
        => stack::pop_sreg, CriticalControl;
    [Pushaw, Pushad] => stack::pusha, Innocuous;
    [Popaw, Popad] => stack::popa, Innocuous;
    [Pushfw, Pushfd] => stack::pushf, CriticalBehaviour;
    [Popfw, Popfd] => stack::popf, CriticalControl | MODE;
    [Enterw_imm16_imm8, Enterd_imm16_imm8] => stack::enter, Innocuous;
    [Leavew, Leaved] => stack::leave, Innocuous;

    // ---- control transfer (control.rs) ----
    [Jmp_rel8_16, Jmp_rel8_32, Jmp_rel16, Jmp_rel32_32] => control::jmp_rel, Innocuous | BRANCH;
    [Jmp_rm16, Jmp_rm32] => control::jmp_near_indirect, Innocuous | BRANCH;
    [Jmp_ptr1616, Jmp_ptr1632] => control::jmp_far, CriticalControl | BRANCH | MODE;
    [Jmp_m1616, Jmp_m1632] => control::jmp_far_indirect, CriticalControl | BRANCH | MODE;
    [Jo_rel8_16, Jo_rel8_32, Jno_rel8_16, Jno_rel8_32, Jb_rel8_16, Jb_rel8_32, Jae_rel8_16,
     Jae_rel8_32, Je_rel8_16, Je_rel8_32, Jne_rel8_16, Jne_rel8_32, Jbe_rel8_16, Jbe_rel8_32,
     Ja_rel8_16, Ja_rel8_32, Js_rel8_16, Js_rel8_32, Jns_rel8_16, Jns_rel8_32, Jp_rel8_16,
     Jp_rel8_32, Jnp_rel8_16, Jnp_rel8_32, Jl_rel8_16, Jl_rel8_32, Jge_rel8_16, Jge_rel8_32,
     Jle_rel8_16, Jle_rel8_32, Jg_rel8_16, Jg_rel8_32, Jo_rel16, Jo_rel32_32, Jno_rel16,
     Jno_rel32_32, Jb_rel16, Jb_rel32_32, Jae_rel16, Jae_rel32_32, Je_rel16, Je_rel32_32,
     Jne_rel16, Jne_rel32_32, Jbe_rel16, Jbe_rel32_32, Ja_rel16, Ja_rel32_32, Js_rel16,
     Js_rel32_32, Jns_rel16, Jns_rel32_32, Jp_rel16, Jp_rel32_32, Jnp_rel16, Jnp_rel32_32,
     Jl_rel16, Jl_rel32_32, Jge_rel16, Jge_rel32_32, Jle_rel16, Jle_rel32_32, Jg_rel16,
     Jg_rel32_32] => control::jcc, Innocuous | BRANCH;
    [Loop_rel8_16_CX, Loop_rel8_32_CX, Loop_rel8_16_ECX, Loop_rel8_32_ECX, Loope_rel8_16_CX,
     Loope_rel8_32_CX, Loope_rel8_16_ECX, Loope_rel8_32_ECX, Loopne_rel8_16_CX,
     Loopne_rel8_32_CX, Loopne_rel8_16_ECX, Loopne_rel8_32_ECX] => control::loop_, Innocuous | BRANCH;
    [Jcxz_rel8_16, Jcxz_rel8_32, Jecxz_rel8_16, Jecxz_rel8_32] => control::jcxz, Innocuous | BRANCH;
    [Call_rel16, Call_rel32_32] => control::call_rel, Innocuous | BRANCH;
    [Call_rm16, Call_rm32] => control::call_near_indirect, Innocuous | BRANCH;
    [Call_ptr1616, Call_ptr1632] => control::call_far_direct, CriticalControl | BRANCH | MODE;
    [Call_m1616, Call_m1632] => control::call_far_indirect, CriticalControl | BRANCH | MODE;
    [Retnw, Retnd, Retnw_imm16, Retnd_imm16] => control::ret_near, Innocuous | BRANCH;
    [Retfw, Retfd, Retfw_imm16, Retfd_imm16] => control::ret_far, CriticalControl | BRANCH | MODE;
    [Int_imm8] => control::int_n, CriticalControl | BRANCH | MODE;
    [Int3] => control::int3, CriticalControl | BRANCH | MODE;
    [Into] => control::into, CriticalControl | BRANCH | MODE;
    [Iretw, Iretd] => control::iret, CriticalControl | BRANCH | MODE;
    [Bound_r16_m1616, Bound_r32_m3232] => control::bound, Innocuous;
    [Hlt] => control::hlt, Privileged | BRANCH;
    [Clc, Stc, Cmc, Cld, Std] => control::flag_op, Innocuous;
    [Cli] => control::cli, IoplSensitive;
    [Sti] => control::sti, IoplSensitive | MODE;

    // ---- strings (string.rs) ----
    [Movsb_m8_m8, Movsw_m16_m16, Movsd_m32_m32, Cmpsb_m8_m8, Cmpsw_m16_m16, Cmpsd_m32_m32,
     Stosb_m8_AL, Stosw_m16_AX, Stosd_m32_EAX, Lodsb_AL_m8, Lodsw_AX_m16, Lodsd_EAX_m32,
     Scasb_AL_m8, Scasw_AX_m16, Scasd_EAX_m32] => string::string, Innocuous | STRING;
    [Insb_m8_DX, Insw_m16_DX, Insd_m32_DX, Outsb_DX_m8, Outsw_DX_m16, Outsd_DX_m32]
        => string::string, IoplSensitive | STRING | IO;

    // ---- port I/O (port.rs) ----
    [In_AL_imm8, In_AX_imm8, In_EAX_imm8, In_AL_DX, In_AX_DX, In_EAX_DX] => port::in_, IoplSensitive | IO;
    [Out_imm8_AL, Out_imm8_AX, Out_imm8_EAX, Out_DX_AL, Out_DX_AX, Out_DX_EAX] => port::out, IoplSensitive | IO;

    // ---- system (system.rs) ----
    [Cpuid] => system::cpuid, CriticalBehaviour;
    [Rdtsc] => system::rdtsc, CriticalBehaviour;
    [Rdmsr] => system::rdmsr, Privileged;
    [Wrmsr] => system::wrmsr, Privileged | MODE;
    [Sysenter] => system::sysenter, CriticalControl | BRANCH | MODE;
    [Sysexitd] => system::sysexit, Privileged | BRANCH | MODE;
    [Lgdt_m1632_16, Lgdt_m1632, Lidt_m1632_16, Lidt_m1632] => system::load_table, Privileged | MODE;
    [Sgdt_m1632_16, Sgdt_m1632, Sidt_m1632_16, Sidt_m1632] => system::store_table, CriticalBehaviour;
    [Smsw_rm16, Smsw_r32m16] => system::smsw, CriticalBehaviour;
    [Lmsw_rm16, Lmsw_r32m16] => system::lmsw, Privileged | MODE;
    [Clts] => system::clts, Privileged | MODE;
    [Mov_r32_cr] => system::mov_from_cr, Privileged;
    [Mov_cr_r32] => system::mov_to_cr, Privileged | MODE;
    [Mov_r32_dr] => system::mov_from_dr, Privileged;
    [Mov_dr_r32] => system::mov_to_dr, Privileged | MODE;
    [Invd, Wbinvd] => system::cache_op, Privileged;

    // ---- descriptor tables, protected mode only (descriptor.rs) ----
    [Sldt_rm16, Sldt_r32m16] => descriptor::sldt, CriticalBehaviour;
    [Str_rm16, Str_r32m16] => descriptor::str_, CriticalBehaviour;
    [Lldt_rm16, Lldt_r32m16] => descriptor::lldt, Privileged | MODE;
    [Ltr_rm16, Ltr_r32m16] => descriptor::ltr, Privileged;
    [Lar_r16_rm16, Lar_r32_r32m16] => descriptor::lar, CriticalBehaviour;
    [Lsl_r16_rm16, Lsl_r32_r32m16] => descriptor::lsl, CriticalBehaviour;
    [Verr_rm16, Verr_r32m16, Verw_rm16, Verw_r32m16] => descriptor::verr_verw, CriticalBehaviour;
    [Arpl_rm16_r16, Arpl_r32m16_r32] => descriptor::arpl, Innocuous;
    [Invlpg_m] => system::invlpg, Privileged | MODE;
    [Ud2, Ud0, Ud0_r16_rm16, Ud0_r32_rm32, Ud1_r16_rm16, Ud1_r32_rm32] => system::ud, Innocuous;
    // ---- x87 FPU (x87.rs) ----
    [Wait] => x87::fwait, Innocuous;
    [Fld_m32fp, Fld_m64fp, Fld_m80fp, Fld_sti, Fild_m16int, Fild_m32int, Fild_m64int, Fbld_m80bcd]
        => x87::fld, Innocuous;
    [Fld1, Fldl2t, Fldl2e, Fldpi, Fldlg2, Fldln2, Fldz] => x87::fld_const, Innocuous;
    [Fst_m32fp, Fstp_m32fp, Fst_m64fp, Fstp_m64fp, Fstp_m80fp, Fst_sti, Fstp_sti, Fstpnce_sti,
     Fstp_sti_DFD0, Fstp_sti_DFD8] => x87::fst, Innocuous;
    [Fist_m16int, Fistp_m16int, Fist_m32int, Fistp_m32int, Fistp_m64int, Fbstp_m80bcd]
        => x87::fist, Innocuous;
    [Fadd_m32fp, Fmul_m32fp, Fsub_m32fp, Fsubr_m32fp, Fdiv_m32fp, Fdivr_m32fp, Fadd_m64fp,
     Fmul_m64fp, Fsub_m64fp, Fsubr_m64fp, Fdiv_m64fp, Fdivr_m64fp, Fiadd_m32int, Fimul_m32int,
     Fisub_m32int, Fisubr_m32int, Fidiv_m32int, Fidivr_m32int, Fiadd_m16int, Fimul_m16int,
     Fisub_m16int, Fisubr_m16int, Fidiv_m16int, Fidivr_m16int, Fadd_st0_sti, Fmul_st0_sti,
     Fsub_st0_sti, Fsubr_st0_sti, Fdiv_st0_sti, Fdivr_st0_sti, Fadd_sti_st0, Fmul_sti_st0,
     Fsubr_sti_st0, Fsub_sti_st0, Fdivr_sti_st0, Fdiv_sti_st0, Faddp_sti_st0, Fmulp_sti_st0,
     Fsubrp_sti_st0, Fsubp_sti_st0, Fdivrp_sti_st0, Fdivp_sti_st0] => x87::farith, Innocuous;
    [Fsqrt] => x87::fsqrt, Innocuous;
    [Frndint] => x87::frndint, Innocuous;
    [Fchs, Fabs] => x87::fsign, Innocuous;
    [Fcom_m32fp, Fcomp_m32fp, Fcom_m64fp, Fcomp_m64fp, Ficom_m32int, Ficomp_m32int, Ficom_m16int,
     Ficomp_m16int, Fcom_st0_sti, Fcomp_st0_sti, Fcom_st0_sti_DCD0, Fcomp_st0_sti_DCD8,
     Fcomp_st0_sti_DED0, Fcompp, Fucom_st0_sti, Fucomp_st0_sti, Fucompp, Fcomi_st0_sti,
     Fcomip_st0_sti, Fucomi_st0_sti, Fucomip_st0_sti, Ftst] => x87::fcom, Innocuous;
    [Fxam] => x87::fxam, Innocuous;
    [Fxch_st0_sti, Fxch_st0_sti_DDC8, Fxch_st0_sti_DFC8] => x87::fxch, Innocuous;
    [Fcmovb_st0_sti, Fcmove_st0_sti, Fcmovbe_st0_sti, Fcmovu_st0_sti, Fcmovnb_st0_sti,
     Fcmovne_st0_sti, Fcmovnbe_st0_sti, Fcmovnu_st0_sti] => x87::fcmov, Innocuous;
    [Ffree_sti, Ffreep_sti] => x87::ffree, Innocuous;
    [Fincstp, Fdecstp] => x87::fstp_move, Innocuous;
    [Fnop] => x87::fnop, Innocuous;
    [Fprem, Fprem1] => x87::fprem, Innocuous;
    [Fscale] => x87::fscale, Innocuous;
    [Fxtract] => x87::fxtract, Innocuous;
    [Fsin, Fcos, Fsincos, Fptan, F2xm1] => x87::ftrans1, Innocuous;
    [Fpatan, Fyl2x, Fyl2xp1] => x87::ftrans2, Innocuous;
    [Fninit, Finit] => x87::finit, Innocuous;
    [Fnclex, Fclex] => x87::fclex, Innocuous;
    [Fneni, Feni, Fndisi, Fdisi, Fnsetpm, Fsetpm] => x87::fnop_legacy, Innocuous;
    [Fldcw_m2byte] => x87::fldcw, Innocuous;
    [Fnstcw_m2byte, Fstcw_m2byte] => x87::fstcw, Innocuous;
    [Fnstsw_m2byte, Fstsw_m2byte, Fnstsw_AX, Fstsw_AX] => x87::fstsw, Innocuous;
    [Fnstenv_m14byte, Fstenv_m14byte, Fnstenv_m28byte, Fstenv_m28byte] => x87::fstenv, Innocuous;
    [Fldenv_m14byte, Fldenv_m28byte] => x87::fldenv, Innocuous;
    [Fnsave_m94byte, Fsave_m94byte, Fnsave_m108byte, Fsave_m108byte] => x87::fsave, Innocuous;
    [Frstor_m94byte, Frstor_m108byte] => x87::frstor, Innocuous;
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_count_matches_iced() {
        assert_eq!(Code::values().len(), CODE_COUNT);
    }

    #[test]
    fn every_row_decodes_to_its_own_code() {
        // The table holds 16/32-bit forms only: none of them may be a 64-bit-only Code.
        for (code, _) in implemented() {
            let info = code.op_code();
            assert!(info.mode16() || info.mode32(), "{code:?} is not a 16/32-bit instruction");
        }
    }

    #[test]
    fn critical_instructions_are_classified() {
        // Robin & Irvine's critical set, by representative Code.
        for code in [
            Code::Sgdt_m1632,
            Code::Sidt_m1632,
            Code::Smsw_rm16,
            Code::Pushfw,
            Code::Popfw,
            Code::Pushw_DS,
            Code::Popw_DS,
            Code::Mov_Sreg_rm16,
            Code::Mov_rm16_Sreg,
            Code::Call_ptr1616,
            Code::Jmp_ptr1616,
            Code::Retfw,
            Code::Int_imm8,
            Code::Iretw,
        ] {
            let info = lookup(code).unwrap_or_else(|| panic!("{code:?} missing"));
            assert!(info.class.critical(), "{code:?} should be critical");
        }
        assert_eq!(lookup(Code::Hlt).map(|i| i.class), Some(PgClass::Privileged));
        assert_eq!(lookup(Code::Add_rm8_r8).map(|i| i.class), Some(PgClass::Innocuous));
    }
}
