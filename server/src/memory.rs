//! Handing freed memory back to the system when the server goes quiet.
//!
//! The allocator is the binary's choice (mimalloc; see `main.rs`). It returns freed pages to
//! the system lazily, during later allocator calls of the thread that owns them, so a thread
//! that goes quiet after a burst keeps them resident: after a restart's recovery (the snapshot
//! loader's temporary vectors) or a bulk load, 6–8 MiB per million znodes
//! (docs/performance.md). Returning them eagerly on every free costs a third of the setData
//! throughput, so the binary installs a trim function instead and the server calls it at quiet
//! points: after recovery, and in the first few idle half-ticks of the pipeline thread after
//! it did work.

use std::sync::OnceLock;

static TRIM: OnceLock<fn()> = OnceLock::new();

/// Installs the function that returns the calling thread's freed memory to the system (once
/// per process; later calls are ignored and return false).
pub fn set_trim(f: fn()) -> bool {
    TRIM.set(f).is_ok()
}

/// Runs the installed trim function, if any, on this thread.
pub(crate) fn trim() {
    if let Some(f) = TRIM.get() {
        f();
    }
}
