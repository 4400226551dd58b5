//! The code arena: one region that holds all generated code, filled from the front and
//! flushed as a whole when full.
//!
//! Host references: memfd_create(2), mmap(2), mprotect(2), munmap(2) (Linux man pages). Intel
//! SDM Vol. 3A §11.6 (self- and cross-modifying code) is why nothing more is needed on x86-64:
//! the same thread writes the code and later jumps to it.
//!
//! This module is one of the three places in bt86 allowed to hold `unsafe` (with guest RAM's
//! mapping and the JIT entry). Its invariants:
//!
//! - **W^X, two ways.** Preferably the arena is one memory file mapped twice: a read+execute
//!   view that generated code runs from, and a read+write view at another address that the
//!   runtime copies code into. No mapping is ever writable and executable, and writing costs
//!   no system call (an `mprotect` per block, with the TLB shootdown it implies, was a tenth of
//!   the translator's time on the Linux boot). Where no memory file can be made, the arena is
//!   one anonymous read+execute mapping and a range is made read+write only inside
//!   [`CodeArena::write`], for the copy, and turned back before `write` returns.
//! - The mappings are `[base, base + size)` (and `[shadow, shadow + size)` for the write
//!   view), created here and unmapped only by `Drop`. Nothing executes while the runtime
//!   writes (it is single-threaded and generated code is not running while the dispatcher
//!   writes).
//! - Every write is bounds-checked against the arena.
//! - Code is never moved once written: addresses handed out stay valid until
//!   [`CodeArena::reset`], after which the runtime forgets every address it had.
//!
//! Code is assembled elsewhere into a `Vec` (dynasmrt's `VecAssembler`, for the address it
//! will have here) and copied in; the runtime never keeps a pointer into a buffer that can move.

use std::io;

use rustix::fs::{ftruncate, memfd_create, MemfdFlags};
use rustix::mm::{mmap, mmap_anonymous, mprotect, munmap, MapFlags, MprotectFlags, ProtFlags};

/// Host page size assumed for protection changes (4 KiB on every x86-64 Linux).
const HOST_PAGE: usize = 4096;

/// The executable arena.
#[derive(Debug)]
pub struct CodeArena {
    /// Address of the first byte of the executable mapping (an address, so the arena is
    /// `Send`).
    base: usize,
    /// Address of the writable view of the same memory, if the arena is dual-mapped.
    shadow: Option<usize>,
    /// Size of the mapping.
    size: usize,
    /// Bytes handed out.
    used: usize,
}

/// Alignment of every allocation: a cache line, so that a block's code falls on lines the
/// same way wherever it is placed (its speed then does not depend on what was translated before
/// it).
pub const ARENA_ALIGN: usize = 64;

impl CodeArena {
    /// Maps an arena of `size` bytes (rounded up to host pages): dual-mapped where the host
    /// can, otherwise with protection flips on write.
    pub fn new(size: usize) -> io::Result<CodeArena> {
        let size = size.max(HOST_PAGE).div_ceil(HOST_PAGE) * HOST_PAGE;
        match CodeArena::dual(size) {
            Ok(a) => Ok(a),
            Err(_) => CodeArena::flipping(size),
        }
    }

    /// An arena whose writes flip page protections (the fallback).
    pub fn flipping(size: usize) -> io::Result<CodeArena> {
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
        Ok(CodeArena { base: base as usize, shadow: None, size, used: 0 })
    }

    /// An arena made of one memory file mapped read+execute and, elsewhere, read+write.
    fn dual(size: usize) -> io::Result<CodeArena> {
        let fd = memfd_create("bt86-code", MemfdFlags::CLOEXEC)?;
        ftruncate(&fd, size as u64)?;
        // SAFETY: a fresh shared mapping of a memory file only this arena knows, at an address
        // of the kernel's choosing: it aliases no Rust object. The file stays alive through
        // its mappings after `fd` closes.
        let base = unsafe {
            mmap(core::ptr::null_mut(), size, ProtFlags::READ | ProtFlags::EXEC, MapFlags::SHARED, &fd, 0)
        }?;
        // SAFETY: as above, the second (writable) view of the same file.
        let shadow = match unsafe {
            mmap(core::ptr::null_mut(), size, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED, &fd, 0)
        } {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: `base`/`size` is the mapping made just above, not yet handed out.
                let _ = unsafe { munmap(base, size) };
                return Err(e.into());
            }
        };
        Ok(CodeArena { base: base as usize, shadow: Some(shadow as usize), size, used: 0 })
    }

    /// Whether writes go through a second, writable view (no protection changes).
    #[cfg(test)]
    pub fn dual_mapped(&self) -> bool {
        self.shadow.is_some()
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
    /// when it does not fit. Allocations are [`ARENA_ALIGN`]-byte aligned.
    pub fn alloc(&mut self, code: &[u8]) -> Option<usize> {
        if code.len() > self.free() {
            return None;
        }
        let at = self.cursor();
        self.write(at, code).ok()?;
        self.used = (self.used + code.len()).div_ceil(ARENA_ALIGN) * ARENA_ALIGN;
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

    /// Copies `bytes` to executable address `at` under W^X (see the module header).
    fn write(&mut self, at: usize, bytes: &[u8]) -> io::Result<()> {
        let start = self.base;
        let end = start + self.size;
        if bytes.is_empty() {
            return Ok(());
        }
        if at < start || at.checked_add(bytes.len()).is_none_or(|e| e > end) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "write outside the arena"));
        }
        if let Some(shadow) = self.shadow {
            let to = (shadow + (at - start)) as *mut u8;
            // SAFETY: `at..at + len` is inside the executable view (checked above), so the
            // same offsets are inside the writable view, which is always read+write; `bytes`
            // is a Rust slice, and no Rust reference points into either view.
            unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), to, bytes.len()) };
            return Ok(());
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
        // SAFETY: `base`/`size` (and `shadow`/`size`) are exactly the mappings made in `new`,
        // unmapped only here; the runtime that owns the arena drops it only when no generated
        // code can run any more.
        unsafe {
            let _ = munmap(self.base as *mut core::ffi::c_void, self.size);
            if let Some(shadow) = self.shadow {
                let _ = munmap(shadow as *mut core::ffi::c_void, self.size);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_patch_reset() {
        let dual = CodeArena::new(8192).unwrap();
        assert!(dual.dual_mapped(), "Linux hosts have memory files");
        for a in [dual, CodeArena::flipping(8192).unwrap()] {
            alloc_patch_reset_on(a);
        }
    }

    fn alloc_patch_reset_on(mut a: CodeArena) {
        let start = a.cursor();
        let p = a.alloc(&[0xC3; 10]).unwrap();
        assert_eq!(p, start);
        assert_eq!(a.used(), ARENA_ALIGN);
        let q = a.alloc(&[0x90; 3]).unwrap();
        assert_eq!(q, p + ARENA_ALIGN);
        a.patch(p + 1, &[1, 2]).unwrap();
        assert!(a.patch(p + 4096, &[0]).is_err(), "past the code in use");
        assert!(a.alloc(&vec![0; 8192]).is_none());
        // SAFETY: reading bytes of the arena's executable view (test only).
        let seen = unsafe { core::slice::from_raw_parts(p as *const u8, 4) };
        assert_eq!(seen, [0xC3, 1, 2, 0xC3], "written through the other view");
        a.reset(ARENA_ALIGN);
        assert_eq!(a.cursor(), p + ARENA_ALIGN);
    }
}
