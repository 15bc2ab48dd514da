//! A growable byte buffer whose start is aligned to [`DIRECT_ALIGN`], for `O_DIRECT` writes.

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use super::DIRECT_ALIGN;

/// A byte buffer aligned to [`DIRECT_ALIGN`] (4 KiB). Its capacity is always a multiple of the
/// alignment, so a length rounded up to the alignment always fits after [`AlignedBuf::reserve`].
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    cap: usize,
    /// Names the current allocation: a new one on every (re)allocation, never reused.
    alloc_id: u64,
}

/// Allocation ids (0: no allocation yet).
static NEXT_ALLOC_ID: AtomicU64 = AtomicU64::new(1);

// SAFETY: AlignedBuf owns its allocation exclusively, like Vec<u8>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared references only allow reads of initialised bytes.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// An empty buffer with room for at least `cap` bytes.
    pub fn with_capacity(cap: usize) -> Self {
        let mut b = Self { ptr: NonNull::dangling(), len: 0, cap: 0, alloc_id: 0 };
        b.reserve(cap.max(DIRECT_ALIGN));
        b
    }

    /// An id of the current allocation, unique in the process: it changes whenever the
    /// buffer moves to new memory. Memory registered with the kernel (an io_uring fixed
    /// buffer pins the pages of its range) stays valid for this buffer only while the id is
    /// the one seen at registration; an address can be reused by a later allocation, an id
    /// cannot.
    pub fn alloc_id(&self) -> u64 {
        self.alloc_id
    }

    /// The allocation's start and size (the whole capacity, not just `len`).
    pub fn allocation(&self) -> (*const u8, usize) {
        (self.ptr.as_ptr().cast_const(), self.cap)
    }

    /// Bytes in the buffer.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the buffer holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Empties the buffer, keeping its allocation.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Ensures room for `additional` more bytes, rounded up to the alignment.
    pub fn reserve(&mut self, additional: usize) {
        let need = self.len.checked_add(additional).expect("buffer size overflow");
        let need = need.next_multiple_of(DIRECT_ALIGN);
        if need <= self.cap {
            return;
        }
        let new_cap = need.max(self.cap * 2);
        let layout = Layout::from_size_align(new_cap, DIRECT_ALIGN).expect("layout");
        // SAFETY: layout has non-zero size (new_cap >= DIRECT_ALIGN).
        let new_ptr = unsafe { alloc::alloc_zeroed(layout) };
        let Some(new_ptr) = NonNull::new(new_ptr) else { alloc::handle_alloc_error(layout) };
        if self.cap > 0 {
            // SAFETY: both regions are valid for `len` bytes and do not overlap.
            unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), new_ptr.as_ptr(), self.len) };
            let old = Layout::from_size_align(self.cap, DIRECT_ALIGN).expect("layout");
            // SAFETY: ptr was allocated with exactly this layout.
            unsafe { alloc::dealloc(self.ptr.as_ptr(), old) };
        }
        self.ptr = new_ptr;
        self.cap = new_cap;
        self.alloc_id = NEXT_ALLOC_ID.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends bytes.
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        self.reserve(data.len());
        // SAFETY: reserve guaranteed room for data.len() bytes after len.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.ptr.as_ptr().add(self.len),
                data.len(),
            )
        };
        self.len += data.len();
    }

    /// Appends `n` zero bytes.
    pub fn extend_zeros(&mut self, n: usize) {
        self.reserve(n);
        // SAFETY: reserve guaranteed room for n bytes after len.
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(self.len), 0, n) };
        self.len += n;
    }

    /// Pads with zeros up to the next multiple of the alignment.
    pub fn pad_to_alignment(&mut self) {
        let target = self.len.next_multiple_of(DIRECT_ALIGN);
        self.extend_zeros(target - self.len);
    }

    /// Shortens the buffer to `len` bytes (no-op if it is shorter).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        if self.cap == 0 {
            return &[];
        }
        // SAFETY: the first len bytes are initialised (allocated zeroed, then written).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        if self.cap == 0 {
            return &mut [];
        }
        // SAFETY: as above, and we hold &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.cap > 0 {
            let layout = Layout::from_size_align(self.cap, DIRECT_ALIGN).expect("layout");
            // SAFETY: allocated with this layout in reserve().
            unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) };
        }
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf").field("len", &self.len).field("cap", &self.cap).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_growable() {
        let mut b = AlignedBuf::with_capacity(10);
        assert_eq!(b.as_slice().as_ptr() as usize % DIRECT_ALIGN, 0);
        b.extend_from_slice(&[7; 5000]);
        b.extend_zeros(3);
        assert_eq!(b.len(), 5003);
        assert_eq!(b.as_slice().as_ptr() as usize % DIRECT_ALIGN, 0);
        assert!(b.as_slice()[..5000].iter().all(|&x| x == 7));
        b.pad_to_alignment();
        assert_eq!(b.len(), 8192);
        assert!(b.as_slice()[5000..].iter().all(|&x| x == 0));
        b.truncate(10);
        b.clear();
        assert!(b.is_empty());
    }

    #[test]
    fn every_allocation_has_its_own_id() {
        let mut b = AlignedBuf::with_capacity(DIRECT_ALIGN);
        let first = b.alloc_id();
        assert_ne!(first, 0);
        b.extend_from_slice(&[1; 100]);
        assert_eq!(b.alloc_id(), first, "no new allocation, same id");
        b.extend_zeros(3 * DIRECT_ALIGN);
        assert_ne!(b.alloc_id(), first, "moved to new memory");
        let (ptr, cap) = b.allocation();
        assert_eq!(ptr, b.as_slice().as_ptr());
        assert!(cap >= b.len());
        drop(b);
        let c = AlignedBuf::with_capacity(DIRECT_ALIGN);
        assert!(c.alloc_id() > first);
    }
}
