//! CPUID (Intel SDM Vol. 2A, CPUID; Vol. 3A §19.1): what bt86 tells software about itself.
//!
//! bt86 reports its own vendor string and a P6-family signature, and sets a feature bit only for
//! what it implements today. As features land (x87, PSE, PGE, MSRs …), their bits are added here
//! together with the code that implements them, never before.

/// Vendor string returned in EBX, EDX, ECX for leaf 0 ("bt86 emu x86" is not an Intel or AMD id:
/// software must not assume the errata of either).
pub const VENDOR: &[u8; 12] = b"bt86EmuCore!";

/// Processor signature (CPUID.1:EAX, also EDX after reset): family 6, model 1, stepping 9,
/// as a Pentium Pro.
pub const SIGNATURE: u32 = (6 << 8) | (1 << 4) | 9;

/// Feature flags in CPUID.1:EDX (SDM Vol. 2A Table 3-11).
pub mod edx {
    /// x87 FPU on chip.
    pub const FPU: u32 = 1 << 0;
    /// Virtual-8086 mode enhancements (not yet).
    pub const VME: u32 = 1 << 1;
    /// Page-size extension: 4 MiB pages with CR4.PSE.
    pub const PSE: u32 = 1 << 3;
    /// Time-stamp counter and RDTSC.
    pub const TSC: u32 = 1 << 4;
    /// RDMSR and WRMSR.
    pub const MSR: u32 = 1 << 5;
    /// CMPXCHG8B.
    pub const CX8: u32 = 1 << 8;
    /// SYSENTER and SYSEXIT with their MSRs.
    pub const SEP: u32 = 1 << 11;
    /// Global pages with CR4.PGE.
    pub const PGE: u32 = 1 << 13;
    /// CMOVcc.
    pub const CMOV: u32 = 1 << 15;
}

/// Features bt86 implements now.
pub const FEATURES_EDX: u32 =
    edx::FPU | edx::PSE | edx::TSC | edx::MSR | edx::CX8 | edx::SEP | edx::PGE | edx::CMOV;

/// The highest basic leaf.
pub const MAX_LEAF: u32 = 1;

/// Result of CPUID for `leaf` (EAX, EBX, ECX, EDX). Leaves above the maximum return the
/// highest basic leaf's data, as Intel processors do.
pub fn cpuid(leaf: u32) -> [u32; 4] {
    let word = |i: usize| u32::from_le_bytes([VENDOR[i], VENDOR[i + 1], VENDOR[i + 2], VENDOR[i + 3]]);
    match leaf {
        0 => [MAX_LEAF, word(0), word(8), word(4)],
        _ => [SIGNATURE, 0, 0, FEATURES_EDX],
    }
}
