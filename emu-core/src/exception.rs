//! Guest exceptions as values (Intel SDM Vol. 3A §6.3, Table 6-1) and the double-fault rules of
//! §6.15 (Interrupt 8, Table 6-5).
//!
//! A guest fault never becomes a Rust panic: handlers return `Err(Exception)` and the CPU
//! delivers it through the IVT (real mode) or IDT. Host-side failures are separate error types.

use core::fmt;

/// An x86 exception, with its error code where the architecture pushes one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exception {
    /// #DE, vector 0: divide error.
    DivideError,
    /// #DB, vector 1: debug.
    Debug,
    /// #BP, vector 3: breakpoint (INT3).
    Breakpoint,
    /// #OF, vector 4: overflow (INTO).
    Overflow,
    /// #BR, vector 5: BOUND range exceeded.
    BoundRange,
    /// #UD, vector 6: invalid opcode.
    InvalidOpcode,
    /// #NM, vector 7: device (x87) not available.
    DeviceNotAvailable,
    /// #DF, vector 8: double fault (error code 0).
    DoubleFault,
    /// #TS, vector 10: invalid TSS.
    InvalidTss(u16),
    /// #NP, vector 11: segment not present.
    SegmentNotPresent(u16),
    /// #SS, vector 12: stack-segment fault.
    StackFault(u16),
    /// #GP, vector 13: general protection.
    GeneralProtection(u16),
    /// #PF, vector 14: page fault, with the faulting linear address (CR2) and error code.
    PageFault {
        /// Linear address that faulted (loaded into CR2).
        addr: u32,
        /// P, W/R, U/S, RSVD, I/D bits.
        code: u16,
    },
    /// #MF, vector 16: x87 floating-point error.
    FpuError,
    /// #AC, vector 17: alignment check (error code 0).
    AlignmentCheck,
}

/// How an exception combines with one raised while delivering it (SDM Table 6-4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Anything else: the second exception is delivered normally.
    Benign,
    /// #DE, #TS, #NP, #SS, #GP.
    Contributory,
    /// #PF.
    PageFault,
    /// #DF itself.
    DoubleFault,
}

impl Exception {
    /// The interrupt vector.
    pub fn vector(self) -> u8 {
        match self {
            Exception::DivideError => 0,
            Exception::Debug => 1,
            Exception::Breakpoint => 3,
            Exception::Overflow => 4,
            Exception::BoundRange => 5,
            Exception::InvalidOpcode => 6,
            Exception::DeviceNotAvailable => 7,
            Exception::DoubleFault => 8,
            Exception::InvalidTss(_) => 10,
            Exception::SegmentNotPresent(_) => 11,
            Exception::StackFault(_) => 12,
            Exception::GeneralProtection(_) => 13,
            Exception::PageFault { .. } => 14,
            Exception::FpuError => 16,
            Exception::AlignmentCheck => 17,
        }
    }

    /// The error code pushed in protected mode, if any (real mode pushes none).
    pub fn error_code(self) -> Option<u32> {
        match self {
            Exception::DoubleFault | Exception::AlignmentCheck => Some(0),
            Exception::InvalidTss(c)
            | Exception::SegmentNotPresent(c)
            | Exception::StackFault(c)
            | Exception::GeneralProtection(c) => Some(u32::from(c)),
            Exception::PageFault { code, .. } => Some(u32::from(code)),
            _ => None,
        }
    }

    /// Double-fault class (SDM Table 6-4).
    pub fn class(self) -> Class {
        match self {
            Exception::DivideError
            | Exception::InvalidTss(_)
            | Exception::SegmentNotPresent(_)
            | Exception::StackFault(_)
            | Exception::GeneralProtection(_) => Class::Contributory,
            Exception::PageFault { .. } => Class::PageFault,
            Exception::DoubleFault => Class::DoubleFault,
            _ => Class::Benign,
        }
    }

    /// What raising `second` while delivering `self` becomes (SDM Table 6-5): `None` means a
    /// triple fault (shutdown), otherwise the exception to deliver instead.
    pub fn combine(self, second: Exception) -> Option<Exception> {
        match (self.class(), second.class()) {
            (Class::DoubleFault, _) => None,
            (Class::Contributory, Class::Contributory)
            | (Class::PageFault, Class::Contributory | Class::PageFault) => Some(Exception::DoubleFault),
            _ => Some(second),
        }
    }

    /// Short mnemonic, as the SDM names it.
    pub fn mnemonic(self) -> &'static str {
        match self {
            Exception::DivideError => "#DE",
            Exception::Debug => "#DB",
            Exception::Breakpoint => "#BP",
            Exception::Overflow => "#OF",
            Exception::BoundRange => "#BR",
            Exception::InvalidOpcode => "#UD",
            Exception::DeviceNotAvailable => "#NM",
            Exception::DoubleFault => "#DF",
            Exception::InvalidTss(_) => "#TS",
            Exception::SegmentNotPresent(_) => "#NP",
            Exception::StackFault(_) => "#SS",
            Exception::GeneralProtection(_) => "#GP",
            Exception::PageFault { .. } => "#PF",
            Exception::FpuError => "#MF",
            Exception::AlignmentCheck => "#AC",
        }
    }
}

impl fmt::Display for Exception {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exception::PageFault { addr, code } => {
                write!(f, "#PF(addr={addr:#010x}, code={code:#x})")
            }
            e => match e.error_code() {
                Some(c) if !matches!(e, Exception::DoubleFault | Exception::AlignmentCheck) => {
                    write!(f, "{}({c:#x})", e.mnemonic())
                }
                _ => f.write_str(e.mnemonic()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_fault_table() {
        let gp = Exception::GeneralProtection(0);
        let pf = Exception::PageFault { addr: 0, code: 0 };
        assert_eq!(gp.combine(gp), Some(Exception::DoubleFault));
        assert_eq!(pf.combine(gp), Some(Exception::DoubleFault));
        assert_eq!(pf.combine(pf), Some(Exception::DoubleFault));
        assert_eq!(gp.combine(pf), Some(pf));
        assert_eq!(Exception::InvalidOpcode.combine(gp), Some(gp));
        assert_eq!(Exception::DoubleFault.combine(Exception::InvalidOpcode), None);
    }
}
