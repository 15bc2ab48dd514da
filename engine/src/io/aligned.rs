//! A growable byte buffer whose start is aligned to [`DIRECT_ALIGN`], for `O_DIRECT` writes.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

use super::DIRECT_ALIGN;

/// A byte buffer aligned to [`DIRECT_ALIGN`] (4 KiB). Its capacity is always a multiple of the
/// alignment, so a length rounded up to the alignment always fits after [`AlignedBuf::reserve`].
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    cap: usize,
}

// SAFETY: AlignedBuf owns its allocation exclusively, like Vec<u8>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared references only allow reads of initialised bytes.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// An empty buffer with room for at least `cap` bytes.
    pub fn with_capacity(cap: usize) -> Self {
        let mut b = Self { ptr: NonNull::dangling(), len: 0, cap: 0 };
        b.reserve(cap.max(DIRECT_ALIGN));
        b
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
}
