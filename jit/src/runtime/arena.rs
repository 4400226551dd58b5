//! The code arena: one anonymous mapping that holds all generated code, filled from the front
//! and flushed as a whole when full.
//!
//! Host references: mmap(2)/mprotect(2)/munmap(2) (Linux man pages). Intel SDM Vol. 3A §11.6
//! (self- and cross-modifying code) is why nothing more is needed: the same thread writes the
//! code and later jumps to it.
//!
//! This module is one of the three places in bt86 allowed to hold `unsafe` (with guest RAM's
//! mapping and the JIT entry). Its invariants:
//!
//! - the mapping is `[base, base + size)`, created here and unmapped only by `Drop`;
//! - it is never writable and executable at once (W^X): it is read+execute, and a range is
//!   made read+write only inside [`CodeArena::write`], for the copy, and turned back before
//!   `write` returns; nothing executes meanwhile (the runtime is single-threaded and generated
//!   code is not running while the dispatcher writes);
//! - every write is bounds-checked against the mapping;
//! - code is never moved once written: addresses handed out stay valid until
//!   [`CodeArena::reset`], after which the runtime forgets every address it had.
//!
//! Code is assembled elsewhere into a `Vec` (dynasmrt's `VecAssembler`, for the address it
//! will have here) and copied in; the runtime never keeps a pointer into a buffer that can move.

use std::io;

use rustix::mm::{mmap_anonymous, mprotect, munmap, MapFlags, MprotectFlags, ProtFlags};

/// Host page size assumed for protection changes (4 KiB on every x86-64 Linux).
const HOST_PAGE: usize = 4096;

/// The executable arena.
#[derive(Debug)]
pub struct CodeArena {
    /// Address of the first byte of the mapping (an address, so the arena is `Send`).
    base: usize,
    /// Size of the mapping.
    size: usize,
    /// Bytes handed out.
    used: usize,
}

impl CodeArena {
    /// Maps an arena of `size` bytes (rounded up to host pages).
    pub fn new(size: usize) -> io::Result<CodeArena> {
        let size = size.max(HOST_PAGE).div_ceil(HOST_PAGE) * HOST_PAGE;
        // SAFETY: a fresh private anonymous mapping at an address of the kernel's choosing
        // aliases nothing; the returned pointer and `size` describe it until `Drop` unmaps it.
        let base = unsafe {
            mmap_anonymous(
                core::ptr::null_mut(),
                size,
                ProtFlags::READ | ProtFlags::EXEC,
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )
        }?;
        Ok(CodeArena { base: base as usize, size, used: 0 })
    }

    /// Address the next [`CodeArena::alloc`] will return.
    pub fn cursor(&self) -> usize {
        self.base + self.used
    }

    /// Bytes still free.
    pub fn free(&self) -> usize {
        self.size - self.used
    }

    /// Bytes in use.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Appends `code` (assembled for [`CodeArena::cursor`]) and returns its address, or `None`
    /// when it does not fit. Allocations are 16-byte aligned.
    pub fn alloc(&mut self, code: &[u8]) -> Option<usize> {
        if code.len() > self.free() {
            return None;
        }
        let at = self.cursor();
        self.write(at, code).ok()?;
        self.used = (self.used + code.len()).div_ceil(16) * 16;
        self.used = self.used.min(self.size);
        Some(at)
    }

    /// Overwrites bytes inside code already handed out (chain patching).
    pub fn patch(&mut self, at: usize, bytes: &[u8]) -> io::Result<()> {
        if at < self.base || at + bytes.len() > self.base + self.used {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "patch outside the code in use"));
        }
        self.write(at, bytes)
    }

    /// Forgets everything after the first `keep` bytes (which stay as they are).
    pub fn reset(&mut self, keep: usize) {
        self.used = keep.min(self.used);
    }

    /// Copies `bytes` to `at` under W^X (see the module header).
    fn write(&mut self, at: usize, bytes: &[u8]) -> io::Result<()> {
        let start = self.base;
        let end = start + self.size;
        if bytes.is_empty() {
            return Ok(());
        }
        if at < start || at.checked_add(bytes.len()).is_none_or(|e| e > end) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "write outside the arena"));
        }
        let page_lo = (at - start) / HOST_PAGE * HOST_PAGE;
        let page_hi = ((at - start) + bytes.len()).div_ceil(HOST_PAGE) * HOST_PAGE;
        let page_hi = page_hi.min(self.size);
        let region = (self.base + page_lo) as *mut u8;
        // SAFETY: `page_lo..page_hi` lies inside the mapping (checked above and clamped to
        // `size`); changing its protection affects no Rust object, and no generated code runs
        // while the runtime writes (single-threaded, outside any entry into generated code).
        unsafe { mprotect(region.cast(), page_hi - page_lo, MprotectFlags::READ | MprotectFlags::WRITE) }?;
        // SAFETY: `at..at + len` is inside the mapping, now writable, and `bytes` is a distinct
        // Rust slice (it cannot overlap the mapping, which no Rust reference points into).
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), at as *mut u8, bytes.len()) };
        // SAFETY: as for the first mprotect; the range goes back to read+execute.
        unsafe { mprotect(region.cast(), page_hi - page_lo, MprotectFlags::READ | MprotectFlags::EXEC) }?;
        Ok(())
    }
}

impl Drop for CodeArena {
    fn drop(&mut self) {
        // SAFETY: `base`/`size` are exactly the mapping made in `new`, unmapped only here; the
        // runtime that owns the arena drops it only when no generated code can run any more.
        let _ = unsafe { munmap(self.base as *mut core::ffi::c_void, self.size) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_patch_reset() {
        let mut a = CodeArena::new(8192).unwrap();
        let start = a.cursor();
        let p = a.alloc(&[0xC3; 10]).unwrap();
        assert_eq!(p, start);
        assert_eq!(a.used(), 16);
        let q = a.alloc(&[0x90; 3]).unwrap();
        assert_eq!(q, p + 16);
        a.patch(p + 1, &[1, 2]).unwrap();
        assert!(a.patch(p + 4096, &[0]).is_err(), "past the code in use");
        assert!(a.alloc(&vec![0; 8192]).is_none());
        a.reset(16);
        assert_eq!(a.cursor(), p + 16);
    }
}
