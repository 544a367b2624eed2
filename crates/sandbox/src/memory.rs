//! The allocator of every QuickJS runtime: the C library's `malloc`, with the
//! runtime's memory limit enforced here rather than inside QuickJS, so that the
//! engine learns that an allocation was refused.
//!
//! QuickJS answers a refused allocation by throwing an `InternalError("out of
//! memory")` — or, when even that error cannot be allocated, by throwing `null`,
//! which looks exactly like a script's own `throw null`. The [`Gauge`] records
//! the refusal, so an invocation that ran out of memory is always reported as
//! such, and the interrupt handler can end it even when the script catches the
//! error.

use std::cell::Cell;
use std::rc::Rc;

use rquickjs::allocator::Allocator;

/// Bytes in use by one runtime, its limit, and whether an allocation was refused.
/// Shared (same thread) by the allocator and the engine.
#[derive(Debug, Default)]
pub(crate) struct Gauge {
    used: Cell<usize>,
    /// 0 means unlimited.
    limit: Cell<usize>,
    refused: Cell<bool>,
}

impl Gauge {
    pub(crate) fn set_limit(&self, bytes: usize) {
        self.limit.set(bytes);
    }

    /// True when an allocation was refused since the last [`Gauge::reset`].
    pub(crate) fn refused(&self) -> bool {
        self.refused.get()
    }

    /// Bytes allocated now.
    pub(crate) fn used(&self) -> usize {
        self.used.get()
    }

    pub(crate) fn reset(&self) {
        self.refused.set(false);
    }

    fn admit(&self, more: usize) -> bool {
        let limit = self.limit.get();
        if limit != 0 && self.used.get().saturating_add(more) > limit {
            self.refused.set(true);
            return false;
        }
        true
    }
}

/// The allocator handed to `Runtime::new_with_alloc`.
pub(crate) struct Metered {
    pub(crate) gauge: Rc<Gauge>,
}

// SAFETY: every pointer comes from the C library's allocator, which aligns to at
// least `max_align_t` (≥ `usize`); `usable_size` is the C library's own answer for
// those pointers; null is returned whenever an allocation is refused or fails.
unsafe impl Allocator for Metered {
    fn alloc(&mut self, size: usize) -> *mut u8 {
        if !self.gauge.admit(size) {
            return std::ptr::null_mut();
        }
        // SAFETY: plain C allocation.
        let ptr = unsafe { libc::malloc(size) }.cast::<u8>();
        if !ptr.is_null() {
            self.gauge.used.set(self.gauge.used.get() + usable(ptr));
        }
        ptr
    }

    fn calloc(&mut self, count: usize, size: usize) -> *mut u8 {
        let Some(total) = count.checked_mul(size) else {
            self.gauge.refused.set(true);
            return std::ptr::null_mut();
        };
        if !self.gauge.admit(total) {
            return std::ptr::null_mut();
        }
        // SAFETY: plain C allocation.
        let ptr = unsafe { libc::calloc(count, size) }.cast::<u8>();
        if !ptr.is_null() {
            self.gauge.used.set(self.gauge.used.get() + usable(ptr));
        }
        ptr
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8) {
        if ptr.is_null() {
            return;
        }
        let size = usable(ptr);
        self.gauge
            .used
            .set(self.gauge.used.get().saturating_sub(size));
        // SAFETY: allocated by this allocator (the caller's promise).
        unsafe { libc::free(ptr.cast()) };
    }

    unsafe fn realloc(&mut self, ptr: *mut u8, new_size: usize) -> *mut u8 {
        if ptr.is_null() {
            return self.alloc(new_size);
        }
        let old = usable(ptr);
        if new_size > old && !self.gauge.admit(new_size - old) {
            return std::ptr::null_mut();
        }
        // SAFETY: allocated by this allocator (the caller's promise).
        let grown = unsafe { libc::realloc(ptr.cast(), new_size) }.cast::<u8>();
        if !grown.is_null() {
            let used = self.gauge.used.get().saturating_sub(old) + usable(grown);
            self.gauge.used.set(used);
        }
        grown
    }

    unsafe fn usable_size(ptr: *mut u8) -> usize {
        usable(ptr)
    }
}

fn usable(ptr: *mut u8) -> usize {
    // SAFETY: `ptr` is a live allocation of the C library's allocator.
    unsafe { libc::malloc_usable_size(ptr.cast()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_limit_and_remembers() {
        let gauge = Rc::new(Gauge::default());
        gauge.set_limit(1 << 20);
        let mut a = Metered {
            gauge: gauge.clone(),
        };
        let p = a.alloc(1000);
        assert!(!p.is_null());
        assert!(gauge.used.get() >= 1000);
        assert!(a.alloc(2 << 20).is_null());
        assert!(gauge.refused());
        gauge.reset();
        let q = unsafe { a.realloc(p, 4000) };
        assert!(!q.is_null());
        assert!(unsafe { a.realloc(q, 4 << 20) }.is_null());
        assert!(gauge.refused());
        unsafe { a.dealloc(q) };
        assert_eq!(gauge.used.get(), 0);
        assert!(a.calloc(usize::MAX, 2).is_null());
    }
}
