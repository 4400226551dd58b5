//! System instructions usable in real mode: CPUID, RDTSC, LGDT/LIDT, SGDT/SIDT, SMSW/LMSW,
//! CLTS, MOV to/from CRn and DRn, INVD/WBINVD/INVLPG and UD2 (Intel SDM Vol. 2, the instruction
//! pages of each; CR bits per Vol. 3A §2.5, debug registers per Vol. 3B §17.2). WAIT and the
//! x87 escape opcodes are in `x87.rs`.

use iced_x86::{Code, Instruction, OpKind};

use super::operand::{ea, get_reg, mem_seg, read, set_reg, write};
use super::Res;
use crate::cpu::Cpu;
use crate::cpuid;
use crate::exception::Exception;
use crate::flags::Size;
use crate::io::PortIo;
use crate::paging::cr4;
use crate::state::{cr0, gpr, SegReg};

/// CR4 bits bt86 accepts (SDM Vol. 3A §2.5): TSD, DE, PSE and PGE. Writing any other bit
/// (VME, PVI, PAE, MCE, PCE, OSFXSR … which bt86 does not implement and CPUID does not report)
/// is #GP(0).
pub const CR4_WRITABLE: u32 = cr4::TSD | cr4::DE | cr4::PSE | cr4::PGE;

/// Privileged instructions raise #GP(0) outside ring 0 (and in virtual-8086 mode).
fn ring0(cpu: &Cpu) -> Res {
    if cpu.state.protected() && (cpu.state.v86() || cpu.state.cpl != 0) {
        Err(Exception::GeneralProtection(0))
    } else {
        Ok(())
    }
}

/// CPUID.
pub fn cpuid(cpu: &mut Cpu, _io: &mut dyn PortIo, _i: &Instruction) -> Res {
    let r = cpuid::cpuid(cpu.state.regs[gpr::EAX]);
    cpu.state.regs[gpr::EAX] = r[0];
    cpu.state.regs[gpr::EBX] = r[1];
    cpu.state.regs[gpr::ECX] = r[2];
    cpu.state.regs[gpr::EDX] = r[3];
    Ok(())
}

/// RDTSC: EDX:EAX = TSC; #GP(0) at CPL > 0 when CR4.TSD is set.
pub fn rdtsc(cpu: &mut Cpu, _io: &mut dyn PortIo, _i: &Instruction) -> Res {
    if cpu.state.cr[4] & cr4::TSD != 0 {
        ring0(cpu)?;
    }
    cpu.state.regs[gpr::EAX] = cpu.state.tsc as u32;
    cpu.state.regs[gpr::EDX] = (cpu.state.tsc >> 32) as u32;
    Ok(())
}

/// LGDT and LIDT. With a 16-bit operand only 24 bits of base are loaded.
pub fn load_table(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    ring0(cpu)?;
    let seg = mem_seg(i);
    let off = ea(&cpu.state, i);
    let limit = cpu.read(seg, off, Size::W)?;
    let mut base = cpu.read(seg, off.wrapping_add(2), Size::D)?;
    if matches!(i.code(), Code::Lgdt_m1632_16 | Code::Lidt_m1632_16) {
        base &= 0x00FF_FFFF;
    }
    let t = if matches!(i.code(), Code::Lgdt_m1632_16 | Code::Lgdt_m1632) {
        &mut cpu.state.gdtr
    } else {
        &mut cpu.state.idtr
    };
    t.base = base;
    t.limit = limit;
    Ok(())
}

/// SGDT and SIDT: limit, then base. With a 16-bit operand the top byte is stored as 0 (80386
/// and later; the 80286 stored 0xFF).
pub fn store_table(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let t = if matches!(i.code(), Code::Sgdt_m1632_16 | Code::Sgdt_m1632) {
        cpu.state.gdtr
    } else {
        cpu.state.idtr
    };
    let seg = mem_seg(i);
    let off = ea(&cpu.state, i);
    let base = if matches!(i.code(), Code::Sgdt_m1632_16 | Code::Sidt_m1632_16) {
        t.base & 0x00FF_FFFF
    } else {
        t.base
    };
    cpu.check_write(seg, off, Size::W)?;
    cpu.check_write(seg, off.wrapping_add(2), Size::D)?;
    cpu.write(seg, off, Size::W, t.limit)?;
    cpu.write(seg, off.wrapping_add(2), Size::D, base)
}

/// SMSW r/m16 and SMSW r32 (a 32-bit register receives all of CR0, as P6 processors do).
pub fn smsw(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    let v = cpu.state.cr[0];
    write(cpu, i, 0, v)
}

/// LMSW r/m16: loads PE, MP, EM, TS; it can set PE but never clear it.
pub fn lmsw(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    ring0(cpu)?;
    let v = read(cpu, i, 0)?;
    let old = cpu.state.cr[0];
    let bits = cr0::PE | cr0::MP | cr0::EM | cr0::TS;
    cpu.state.cr[0] = (old & !bits) | (v & bits) | (old & cr0::PE);
    let cr4 = cpu.state.cr[4];
    cpu.on_control_write(old, cr4);
    Ok(())
}

/// CLTS: clears CR0.TS.
pub fn clts(cpu: &mut Cpu, _io: &mut dyn PortIo, _i: &Instruction) -> Res {
    ring0(cpu)?;
    cpu.state.cr[0] &= !cr0::TS;
    Ok(())
}

/// Control-register number of a MOV CRn operand (CR1, CR5–CR7 are #UD).
fn cr_index(r: iced_x86::Register) -> Result<usize, Exception> {
    match r {
        iced_x86::Register::CR0 => Ok(0),
        iced_x86::Register::CR2 => Ok(2),
        iced_x86::Register::CR3 => Ok(3),
        iced_x86::Register::CR4 => Ok(4),
        _ => Err(Exception::InvalidOpcode),
    }
}

/// MOV r32, CRn.
pub fn mov_from_cr(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    ring0(cpu)?;
    let n = cr_index(i.op1_register())?;
    let v = cpu.state.cr[n];
    set_reg(&mut cpu.state, i.op0_register(), v);
    Ok(())
}

/// MOV CRn, r32, with the consistency checks of SDM Vol. 3A §2.5 (#GP(0) for PG without PE,
/// NW without CD, reserved CR4 bits).
pub fn mov_to_cr(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    ring0(cpu)?;
    let n = cr_index(i.op0_register())?;
    let v = get_reg(&cpu.state, i.op1_register());
    let (old_cr0, old_cr4) = (cpu.state.cr[0], cpu.state.cr[4]);
    match n {
        0 => {
            if (v & cr0::PG != 0 && v & cr0::PE == 0) || (v & cr0::NW != 0 && v & cr0::CD == 0) {
                return Err(Exception::GeneralProtection(0));
            }
            // ET is hard-wired to 1 on P6; reserved bits read as written-as-zero.
            let keep = cr0::PE
                | cr0::MP
                | cr0::EM
                | cr0::TS
                | cr0::NE
                | cr0::WP
                | cr0::AM
                | cr0::NW
                | cr0::CD
                | cr0::PG;
            cpu.state.cr[0] = (v & keep) | cr0::ET;
            if v & cr0::PE == 0 {
                // Back in real mode the privilege level is 0.
                cpu.state.cpl = 0;
            }
        }
        3 => {
            cpu.state.cr[3] = v;
            cpu.on_cr3_write();
        }
        4 => {
            if v & !CR4_WRITABLE != 0 {
                return Err(Exception::GeneralProtection(0));
            }
            cpu.state.cr[4] = v;
        }
        _ => cpu.state.cr[n] = v,
    }
    cpu.on_control_write(old_cr0, old_cr4);
    Ok(())
}

/// Debug-register number; DR4/DR5 alias DR6/DR7 unless CR4.DE is set (then #UD).
fn dr_index(cpu: &Cpu, r: iced_x86::Register) -> Result<usize, Exception> {
    let n = r as usize - iced_x86::Register::DR0 as usize;
    match n {
        4 | 5 if cpu.state.cr[4] & (1 << 3) != 0 => Err(Exception::InvalidOpcode),
        4 | 5 => Ok(n + 2),
        0..=7 => Ok(n),
        _ => Err(Exception::InvalidOpcode),
    }
}

/// MOV r32, DRn.
pub fn mov_from_dr(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    ring0(cpu)?;
    let n = dr_index(cpu, i.op1_register())?;
    let v = cpu.state.dr[n];
    set_reg(&mut cpu.state, i.op0_register(), v);
    Ok(())
}

/// MOV DRn, r32. DR6 and DR7 keep their fixed bits (SDM Vol. 3B §17.2.3, §17.2.4).
pub fn mov_to_dr(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    ring0(cpu)?;
    let n = dr_index(cpu, i.op0_register())?;
    let v = get_reg(&cpu.state, i.op1_register());
    cpu.state.dr[n] = match n {
        6 => (v & 0x0000_E00F) | 0xFFFF_0FF0,
        7 => (v & 0xFFFF_2BFF) | 0x400,
        _ => v,
    };
    Ok(())
}

/// IA32_TIME_STAMP_COUNTER (SDM Vol. 4, Table 2-2).
pub const MSR_TSC: u32 = 0x10;
/// IA32_SYSENTER_CS, _ESP and _EIP (SDM Vol. 4, Table 2-2; Vol. 3A §5.8.7).
pub const MSR_SYSENTER_CS: u32 = 0x174;
/// See [`MSR_SYSENTER_CS`].
pub const MSR_SYSENTER_ESP: u32 = 0x175;
/// See [`MSR_SYSENTER_CS`].
pub const MSR_SYSENTER_EIP: u32 = 0x176;

/// RDMSR: EDX:EAX = MSR[ECX]. Privileged; an MSR bt86 does not implement is #GP(0), as on
/// hardware for a reserved or unimplemented MSR. Implemented: the TSC and the three SYSENTER
/// MSRs.
pub fn rdmsr(cpu: &mut Cpu, _io: &mut dyn PortIo, _i: &Instruction) -> Res {
    ring0(cpu)?;
    let v = match cpu.state.regs[gpr::ECX] {
        MSR_TSC => cpu.state.tsc,
        n @ (MSR_SYSENTER_CS | MSR_SYSENTER_ESP | MSR_SYSENTER_EIP) => {
            u64::from(cpu.state.sysenter[(n - MSR_SYSENTER_CS) as usize])
        }
        _ => return Err(Exception::GeneralProtection(0)),
    };
    cpu.state.regs[gpr::EAX] = v as u32;
    cpu.state.regs[gpr::EDX] = (v >> 32) as u32;
    Ok(())
}

/// WRMSR: MSR[ECX] = EDX:EAX. Privileged; unimplemented MSRs are #GP(0).
pub fn wrmsr(cpu: &mut Cpu, _io: &mut dyn PortIo, _i: &Instruction) -> Res {
    ring0(cpu)?;
    let v = (u64::from(cpu.state.regs[gpr::EDX]) << 32) | u64::from(cpu.state.regs[gpr::EAX]);
    match cpu.state.regs[gpr::ECX] {
        MSR_TSC => cpu.state.tsc = v,
        // The P6 keeps 32 bits of each (the high half of EDX is ignored).
        n @ (MSR_SYSENTER_CS | MSR_SYSENTER_ESP | MSR_SYSENTER_EIP) => {
            cpu.state.sysenter[(n - MSR_SYSENTER_CS) as usize] = v as u32
        }
        _ => return Err(Exception::GeneralProtection(0)),
    }
    Ok(())
}

/// Flat 4 GiB segment caches SYSENTER and SYSEXIT load (SDM Vol. 2B, SYSENTER/SYSEXIT): code
/// execute/read accessed, data read/write accessed, 32-bit, page-granular, present, at DPL
/// `dpl`.
fn fast_segment(selector: u16, code: bool, dpl: u8) -> crate::state::Segment {
    let ty: u16 = if code { 0xB } else { 0x3 };
    crate::state::Segment {
        selector,
        attrs: ty | 0x10 | (u16::from(dpl) << 5) | crate::state::Segment::ATTR_P | 0xC000,
        base: 0,
        limit: u32::MAX,
    }
}

/// SYSENTER (SDM Vol. 2B; Vol. 3A §5.8.7): a fast call to ring 0 at IA32_SYSENTER_EIP with
/// the stack at IA32_SYSENTER_ESP, CS from IA32_SYSENTER_CS and SS = CS + 8, both flat.
/// #GP(0) in real mode or while IA32_SYSENTER_CS is null. Clears VM, IF and RF. Any CPL may
/// use it: under trap-and-emulate it is critical, a mode change that never traps.
pub fn sysenter(cpu: &mut Cpu, _io: &mut dyn PortIo, _i: &Instruction) -> Res {
    let cs = cpu.state.sysenter[0] as u16;
    if !cpu.state.protected() || cs & 0xFFFC == 0 {
        return Err(Exception::GeneralProtection(0));
    }
    let flags = cpu.state.eflags() & !(crate::state::fl::VM | crate::state::fl::IF | crate::state::fl::RF);
    cpu.state.set_eflags(flags);
    *cpu.state.seg_mut(SegReg::Cs) = fast_segment(cs & 0xFFFC, true, 0);
    *cpu.state.seg_mut(SegReg::Ss) = fast_segment((cs & 0xFFFC).wrapping_add(8), false, 0);
    cpu.state.cpl = 0;
    cpu.state.regs[gpr::ESP] = cpu.state.sysenter[1];
    cpu.state.eip = cpu.state.sysenter[2];
    Ok(())
}

/// SYSEXIT (SDM Vol. 2B): the return to ring 3 at EDX with the stack at ECX, CS =
/// IA32_SYSENTER_CS + 16 and SS = + 24, both with RPL 3 and flat. #GP(0) in real mode, at
/// CPL > 0 or while IA32_SYSENTER_CS is null.
pub fn sysexit(cpu: &mut Cpu, _io: &mut dyn PortIo, _i: &Instruction) -> Res {
    let cs = cpu.state.sysenter[0] as u16;
    if !cpu.state.protected() || cs & 0xFFFC == 0 {
        return Err(Exception::GeneralProtection(0));
    }
    ring0(cpu)?;
    *cpu.state.seg_mut(SegReg::Cs) = fast_segment(cs.wrapping_add(16) | 3, true, 3);
    *cpu.state.seg_mut(SegReg::Ss) = fast_segment(cs.wrapping_add(24) | 3, false, 3);
    cpu.state.cpl = 3;
    cpu.state.regs[gpr::ESP] = cpu.state.regs[gpr::ECX];
    cpu.state.eip = cpu.state.regs[gpr::EDX];
    Ok(())
}

/// INVD, WBINVD: bt86 has no caches to flush; privileged.
pub fn cache_op(cpu: &mut Cpu, _io: &mut dyn PortIo, _i: &Instruction) -> Res {
    ring0(cpu)
}

/// INVLPG m: drops the cached translation of the page holding the operand's linear address
/// (every 4 KiB piece of a 4 MiB page); privileged; a register operand is #UD. The operand is
/// not accessed, so no segment-limit check applies.
pub fn invlpg(cpu: &mut Cpu, _io: &mut dyn PortIo, i: &Instruction) -> Res {
    if i.op0_kind() != OpKind::Memory {
        return Err(Exception::InvalidOpcode);
    }
    ring0(cpu)?;
    let lin = cpu.state.seg(mem_seg(i)).base.wrapping_add(ea(&cpu.state, i));
    cpu.tlb.flush_page(lin);
    Ok(())
}

/// UD2 (and UD0/UD1): the architecturally invalid opcodes.
pub fn ud(_cpu: &mut Cpu, _io: &mut dyn PortIo, _i: &Instruction) -> Res {
    Err(Exception::InvalidOpcode)
}
