//! The x87 environment image FNSTENV/FSTENV store and FLDENV loads, and the register area FSAVE
//! and FRSTOR add to it (Intel SDM Vol. 1 §8.1.10, Figures 8-9 to 8-12; §8.1.11; Vol. 2 FSTENV,
//! FLDENV, FSAVE, FRSTOR).
//!
//! Four layouts: 14 bytes (16-bit operand size) or 28 bytes (32-bit), each in a protected-mode
//! form (instruction and data pointers as selector and offset) and a real-address form, also
//! used in virtual-8086 mode (20- or 32-bit linear pointers split over two fields). The FSAVE
//! image is the environment followed by ST(0)–ST(7), ten bytes each: 94 or 108 bytes.
//!
//! Reserved fields are stored as P6 processors store them: the upper halves of the 32-bit
//! control, status, tag and pointer words are all ones, the bits above the opcode are zero.

use super::float80::F80;
use super::Fpu;

/// Which of the four environment layouts applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Protected mode (not real-address or virtual-8086 mode).
    pub protected: bool,
    /// 32-bit operand size (28-byte image) rather than 16-bit (14 bytes).
    pub op32: bool,
}

impl Layout {
    /// Size of the environment image in bytes.
    pub fn size(self) -> usize {
        if self.op32 {
            28
        } else {
            14
        }
    }
}

/// Size of the FSAVE image for `layout`.
pub fn save_size(layout: Layout) -> usize {
    layout.size() + 80
}

/// The environment image of `fpu` (only the first [`Layout::size`] bytes are meaningful).
pub fn store(fpu: &Fpu, layout: Layout) -> [u8; 28] {
    let mut out = [0u8; 28];
    let (cw, sw, tw) = (u32::from(fpu.cw), u32::from(fpu.status()), u32::from(fpu.tag_word()));
    let fop = u32::from(fpu.fop & 0x7FF);
    let words: [u32; 7] = if layout.protected {
        if layout.op32 {
            [
                cw | 0xFFFF_0000,
                sw | 0xFFFF_0000,
                tw | 0xFFFF_0000,
                fpu.fip,
                u32::from(fpu.fcs) | (fop << 16),
                fpu.fdp,
                u32::from(fpu.fds) | 0xFFFF_0000,
            ]
        } else {
            [cw, sw, tw, fpu.fip & 0xFFFF, u32::from(fpu.fcs), fpu.fdp & 0xFFFF, u32::from(fpu.fds)]
        }
    } else {
        let ip = (u32::from(fpu.fcs) << 4).wrapping_add(fpu.fip);
        let dp = (u32::from(fpu.fds) << 4).wrapping_add(fpu.fdp);
        if layout.op32 {
            [
                cw | 0xFFFF_0000,
                sw | 0xFFFF_0000,
                tw | 0xFFFF_0000,
                (ip & 0xFFFF) | 0xFFFF_0000,
                ((ip >> 16) << 12) | fop,
                (dp & 0xFFFF) | 0xFFFF_0000,
                (dp >> 16) << 12,
            ]
        } else {
            [cw, sw, tw, ip & 0xFFFF, (((ip >> 16) & 0xF) << 12) | fop, dp & 0xFFFF, ((dp >> 16) & 0xF) << 12]
        }
    };
    if layout.op32 {
        for (chunk, w) in out.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
    } else {
        for (chunk, w) in out[..14].chunks_exact_mut(2).zip(words) {
            chunk.copy_from_slice(&(w as u16).to_le_bytes());
        }
    }
    out
}

/// Loads an environment image (at least [`Layout::size`] bytes) into `fpu`.
pub fn load(fpu: &mut Fpu, image: &[u8], layout: Layout) {
    let mut words = [0u32; 7];
    if layout.op32 {
        for (w, chunk) in words.iter_mut().zip(image.chunks_exact(4)) {
            *w = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
    } else {
        for (w, chunk) in words.iter_mut().zip(image.chunks_exact(2)) {
            *w = u32::from(u16::from_le_bytes([chunk[0], chunk[1]]));
        }
    }
    fpu.cw = (words[0] as u16 & super::cw::WRITABLE) | super::cw::RESERVED1;
    fpu.set_tag_word(words[2] as u16);
    if layout.protected {
        if layout.op32 {
            fpu.fip = words[3];
            fpu.fcs = words[4] as u16;
            fpu.fop = ((words[4] >> 16) & 0x7FF) as u16;
            fpu.fdp = words[5];
        } else {
            fpu.fip = words[3] & 0xFFFF;
            fpu.fcs = words[4] as u16;
            fpu.fdp = words[5] & 0xFFFF;
        }
        fpu.fds = words[6] as u16;
    } else {
        let (hi_ip, hi_dp) = if layout.op32 {
            ((words[4] >> 12) & 0xFFFF, (words[6] >> 12) & 0xFFFF)
        } else {
            ((words[4] >> 12) & 0xF, (words[6] >> 12) & 0xF)
        };
        fpu.fip = (words[3] & 0xFFFF) | (hi_ip << 16);
        fpu.fop = (words[4] & 0x7FF) as u16;
        fpu.fdp = (words[5] & 0xFFFF) | (hi_dp << 16);
        fpu.fcs = 0;
        fpu.fds = 0;
    }
    // The status word last: ES follows the loaded flags and masks.
    fpu.set_status(words[1] as u16);
}

/// The FSAVE image: environment then ST(0)–ST(7).
pub fn save(fpu: &Fpu, layout: Layout) -> Vec<u8> {
    let env = store(fpu, layout);
    let mut out = env[..layout.size()].to_vec();
    for i in 0..8 {
        out.extend_from_slice(&fpu.st(i).to_bytes());
    }
    out
}

/// Loads an FSAVE image (at least [`save_size`] bytes).
pub fn restore(fpu: &mut Fpu, image: &[u8], layout: Layout) {
    load(fpu, image, layout);
    let base = layout.size();
    for i in 0..8u8 {
        let at = base + 10 * usize::from(i);
        let mut b = [0u8; 10];
        if let Some(src) = image.get(at..at + 10) {
            b.copy_from_slice(src);
        }
        let p = fpu.phys(i);
        fpu.set_reg(p, F80::from_bytes(b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Fpu {
        let mut f = Fpu::reset();
        f.init();
        f.push(F80::ONE);
        f.push(F80::ZERO);
        f.cw = 0x0F7F;
        f.raise(super::super::float80::exc::PE);
        f.fip = 0x0012_3456;
        f.fcs = 0x0008;
        f.fop = 0x05C1;
        f.fdp = 0x0065_4321;
        f.fds = 0x0010;
        f
    }

    #[test]
    fn protected_32_layout() {
        let f = sample();
        let img = store(&f, Layout { protected: true, op32: true });
        let dw = |n: usize| u32::from_le_bytes([img[4 * n], img[4 * n + 1], img[4 * n + 2], img[4 * n + 3]]);
        assert_eq!(dw(0), 0xFFFF_0F7F);
        // TOP = 6, PE set.
        assert_eq!(dw(1), 0xFFFF_3020);
        // R6 = 0 (zero tag 01), R7 = 1.0 (valid 00), the rest empty.
        assert_eq!(dw(2), 0xFFFF_1FFF);
        assert_eq!(dw(3), 0x0012_3456);
        assert_eq!(dw(4), 0x05C1_0008);
        assert_eq!(dw(5), 0x0065_4321);
        assert_eq!(dw(6), 0xFFFF_0010);
    }

    #[test]
    fn real_16_layout_and_round_trip() {
        let mut f = sample();
        f.fcs = 0x1000;
        f.fip = 0x0234;
        f.fds = 0x2000;
        f.fdp = 0x0010;
        let layout = Layout { protected: false, op32: false };
        let img = store(&f, layout);
        let w = |n: usize| u16::from_le_bytes([img[2 * n], img[2 * n + 1]]);
        assert_eq!(w(3), 0x0234);
        assert_eq!(w(4), 0x15C1); // IP bits 19–16 = 1, opcode 5C1h
        assert_eq!(w(5), 0x0010);
        assert_eq!(w(6), 0x2000); // DP bits 19–16 = 2
        let mut g = Fpu::reset();
        for n in 0..8 {
            g.set_reg(n, f.reg(n));
        }
        load(&mut g, &img, layout);
        assert_eq!(g.fip, 0x1_0234);
        assert_eq!(g.fdp, 0x2_0010);
        assert_eq!(g.status(), f.status());
        assert_eq!(g.tag_word(), f.tag_word());
    }

    #[test]
    fn save_restore_round_trip() {
        let f = sample();
        for protected in [false, true] {
            for op32 in [false, true] {
                let layout = Layout { protected, op32 };
                let img = save(&f, layout);
                assert_eq!(img.len(), save_size(layout));
                let mut g = Fpu::reset();
                restore(&mut g, &img, layout);
                assert_eq!((g.st(0), g.st(1)), (F80::ZERO, F80::ONE));
                assert_eq!((g.status(), g.tag_word(), g.cw), (f.status(), f.tag_word(), f.cw));
            }
        }
    }
}
