//! A bump allocator over a static arena, for wasm32 plugins.
//!
//! A plugin instance lives for one call, so nothing is ever freed: allocation is a pointer bump
//! inside an arena that is part of the module's initial memory (zero pages the host maps lazily,
//! copy-on-write). Memory grows only when an input is larger than the arena. This keeps a fresh
//! instance from calling `memory.grow` and faulting in new pages on every call.

#[cfg(all(target_arch = "wasm32", feature = "arena"))]
mod imp {
    use core::alloc::{GlobalAlloc, Layout};
    use core::cell::UnsafeCell;

    /// Enough for an action, a baseline and a verdict several times over, and small enough that
    /// a plugin's whole initial memory (64 KiB stack, its data, the arena) fits in two 64 KiB
    /// Wasm pages: the host resets less memory after every call. A larger input spills over
    /// into grown memory.
    const ARENA_BYTES: usize = 24 << 10;
    const PAGE: usize = 65536;

    #[repr(C, align(16))]
    struct Arena {
        bytes: UnsafeCell<[u8; ARENA_BYTES]>,
        next: UnsafeCell<usize>,
        /// Overflow region obtained with memory.grow: [start, end).
        overflow: UnsafeCell<(usize, usize)>,
    }

    // SAFETY: wasm32 plugins are single-threaded.
    unsafe impl Sync for Arena {}

    static ARENA: Arena = Arena {
        bytes: UnsafeCell::new([0; ARENA_BYTES]),
        next: UnsafeCell::new(0),
        overflow: UnsafeCell::new((0, 0)),
    };

    struct Bump;

    unsafe impl GlobalAlloc for Bump {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: single-threaded; the arena's cells are only touched here.
            unsafe {
                let base = ARENA.bytes.get() as usize;
                let next = &mut *ARENA.next.get();
                let start = (base + *next + layout.align() - 1) & !(layout.align() - 1);
                if start + layout.size() <= base + ARENA_BYTES {
                    *next = start + layout.size() - base;
                    return start as *mut u8;
                }
                let (ref mut lo, ref mut hi) = *ARENA.overflow.get();
                let start = (*lo + layout.align() - 1) & !(layout.align() - 1);
                if *lo != 0 && start + layout.size() <= *hi {
                    *lo = start + layout.size();
                    return start as *mut u8;
                }
                let pages = (layout.size() + layout.align()).div_ceil(PAGE).max(16);
                let old = core::arch::wasm32::memory_grow(0, pages);
                if old == usize::MAX {
                    return core::ptr::null_mut();
                }
                let region = old * PAGE;
                let start = (region + layout.align() - 1) & !(layout.align() - 1);
                *lo = start + layout.size();
                *hi = region + pages * PAGE;
                start as *mut u8
            }
        }

        unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}
    }

    #[global_allocator]
    static GLOBAL: Bump = Bump;
}
