//! Minimal ACPI 1.0 tables, so that a Linux guest can power the machine off the way it does on
//! a PC (ACPI specification 6.5: §5.2.5 RSDP, §5.2.7 RSDT, §5.2.9 FADT, §5.2.10 FACS, §5.2.11.1
//! DSDT, §7.4.2 `\_Sx` sleep-state packages; §20 for the AML encoding).
//!
//! What the tables describe is exactly the hardware bt86 has, nothing more:
//!
//! - the PM1a event block at 0x600 (PM1_STS, PM1_EN) and the PM1a control block at 0x604, the
//!   registers of [`devices::misc::AcpiPowerControl`];
//! - SMI_CMD = 0: the machine is always in ACPI mode, there is no legacy mode to leave;
//! - the PM timer at 0x608 (24 bits), which Linux uses as its clocksource watchdog;
//! - no GPE blocks, no processor control blocks; SCI on IRQ 9 (it never fires:
//!   no fixed or general-purpose event exists);
//! - a DSDT whose only object is `Name (_S5, Package () { 0, 0, 0, 0 })`: soft-off is SLP_TYP 0,
//!   as on QEMU's PIIX4 PM.
//!
//! The tables sit in the BIOS area at [`TABLES_ADDR`], which the e820 map reports as reserved,
//! with the RSDP first, on a 16-byte boundary, where an OS searches for it (§5.2.5.1).

/// Where the tables go (inside 0xE0000–0xFFFFF, the RSDP search area).
pub const TABLES_ADDR: u32 = 0xF_0000;
/// The OEM ID in every table.
const OEM_ID: &[u8; 6] = b"BT86  ";
/// The OEM table ID.
const OEM_TABLE_ID: &[u8; 8] = b"BT86PC  ";

const RSDP_LEN: usize = 20;
const RSDT_OFF: usize = 0x20;
const RSDT_LEN: usize = 36 + 4;
const FADT_OFF: usize = 0x80;
const FADT_LEN: usize = 116;
const FACS_OFF: usize = 0x100;
const FACS_LEN: usize = 64;
const DSDT_OFF: usize = 0x180;

/// `Name (_S5_, Package (0x04) { Zero, Zero, Zero, Zero })`.
const DSDT_AML: [u8; 12] = [
    0x08, b'_', b'S', b'5', b'_', // NameOp, NameSeg
    0x12, 0x06, 0x04, // PackageOp, PkgLength 6, NumElements 4
    0x00, 0x00, 0x00, 0x00, // ZeroOp × 4
];

fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, &b| a.wrapping_sub(b))
}

fn put16(t: &mut [u8], off: usize, v: u16) {
    t[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(t: &mut [u8], off: usize, v: u32) {
    t[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// Writes a System Description Table header (§5.2.6) at `off` and its checksum over `len`
/// bytes.
fn header(t: &mut [u8], off: usize, signature: &[u8; 4], len: usize, revision: u8) {
    t[off..off + 4].copy_from_slice(signature);
    put32(t, off + 4, len as u32);
    t[off + 8] = revision;
    t[off + 10..off + 16].copy_from_slice(OEM_ID);
    t[off + 16..off + 24].copy_from_slice(OEM_TABLE_ID);
    put32(t, off + 24, 1); // OEM revision
    t[off + 28..off + 32].copy_from_slice(b"BT86"); // creator ID
    put32(t, off + 32, 1); // creator revision
    t[off + 9] = 0;
    t[off + 9] = checksum(&t[off..off + len]);
}

/// The tables, to be loaded at [`TABLES_ADDR`].
pub fn tables() -> Vec<u8> {
    let base = TABLES_ADDR;
    let at = |off: usize| base + off as u32;
    let dsdt_len = 36 + DSDT_AML.len();
    let mut t = vec![0u8; DSDT_OFF + dsdt_len];

    // DSDT.
    t[DSDT_OFF + 36..DSDT_OFF + dsdt_len].copy_from_slice(&DSDT_AML);
    header(&mut t, DSDT_OFF, b"DSDT", dsdt_len, 1);

    // FACS (no checksum; 64-byte aligned).
    t[FACS_OFF..FACS_OFF + 4].copy_from_slice(b"FACS");
    put32(&mut t, FACS_OFF + 4, FACS_LEN as u32);

    // FADT, revision 1 (ACPI 1.0 layout, 116 bytes).
    let f = FADT_OFF;
    put32(&mut t, f + 36, at(FACS_OFF)); // FIRMWARE_CTRL
    put32(&mut t, f + 40, at(DSDT_OFF)); // DSDT
    put16(&mut t, f + 46, 9); // SCI_INT
    put32(&mut t, f + 48, 0); // SMI_CMD: always in ACPI mode
    put32(&mut t, f + 56, u32::from(devices::misc::PM1A_EVT_PORT)); // PM1a_EVT_BLK
    put32(&mut t, f + 64, u32::from(devices::misc::PM1A_CNT_PORT)); // PM1a_CNT_BLK
    put32(&mut t, f + 76, u32::from(devices::misc::PM_TMR_PORT)); // PM_TMR_BLK
    t[f + 88] = 4; // PM1_EVT_LEN
    t[f + 89] = 2; // PM1_CNT_LEN
    t[f + 91] = 4; // PM_TMR_LEN
    put16(&mut t, f + 96, 101); // P_LVL2_LAT > 100: no C2
    put16(&mut t, f + 98, 1001); // P_LVL3_LAT > 1000: no C3
                                 // Flags: WBINVD works (bit 0), C1 supported (bit 2), power and sleep buttons are not
                                 // fixed-feature buttons (bits 4, 5).
    put32(&mut t, f + 112, (1 << 0) | (1 << 2) | (1 << 4) | (1 << 5));
    header(&mut t, f, b"FACP", FADT_LEN, 1);

    // RSDT with the FADT.
    put32(&mut t, RSDT_OFF + 36, at(FADT_OFF));
    header(&mut t, RSDT_OFF, b"RSDT", RSDT_LEN, 1);

    // RSDP (ACPI 1.0: 20 bytes, revision 0).
    t[..8].copy_from_slice(b"RSD PTR ");
    t[9..15].copy_from_slice(OEM_ID);
    t[15] = 0;
    put32(&mut t, 16, at(RSDT_OFF));
    t[8] = checksum(&t[..RSDP_LEN]);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, &x| a.wrapping_add(x))
    }

    fn u32_at(t: &[u8], off: usize) -> u32 {
        u32::from_le_bytes([t[off], t[off + 1], t[off + 2], t[off + 3]])
    }

    #[test]
    fn every_table_checksums_to_zero_and_links_up() {
        let t = tables();
        assert_eq!(&t[..8], b"RSD PTR ");
        assert_eq!(sum(&t[..RSDP_LEN]), 0);
        let off = |addr: u32| (addr - TABLES_ADDR) as usize;
        let rsdt = off(u32_at(&t, 16));
        assert_eq!(&t[rsdt..rsdt + 4], b"RSDT");
        let len = u32_at(&t, rsdt + 4) as usize;
        assert_eq!(sum(&t[rsdt..rsdt + len]), 0);
        let fadt = off(u32_at(&t, rsdt + 36));
        assert_eq!(&t[fadt..fadt + 4], b"FACP");
        assert_eq!(sum(&t[fadt..fadt + u32_at(&t, fadt + 4) as usize]), 0);
        assert_eq!(u32_at(&t, fadt + 64), 0x604);
        let facs = off(u32_at(&t, fadt + 36));
        assert_eq!((&t[facs..facs + 4], (TABLES_ADDR as usize + facs) % 64), (&b"FACS"[..], 0));
        let dsdt = off(u32_at(&t, fadt + 40));
        let dlen = u32_at(&t, dsdt + 4) as usize;
        assert_eq!(sum(&t[dsdt..dsdt + dlen]), 0);
        assert_eq!(&t[dsdt + 36..dsdt + 41], b"\x08_S5_");
    }
}
