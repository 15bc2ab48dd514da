//! Writing snapshots on a background thread.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use super::{SnapshotError, SnapshotInfo, SnapshotStore};

/// Serialises the state to snapshot into the body stream. It runs on the snapshot thread and
/// must own (or share immutably) everything it writes — typically an O(1) copy-on-write clone
/// of the state taken at the snapshot's zxid.
pub type SnapshotJob = Box<dyn FnOnce(&mut dyn Write) -> std::io::Result<()> + Send>;

type Done = Box<dyn FnOnce(Result<SnapshotInfo, SnapshotError>) + Send>;

struct Request {
    zxid: u64,
    job: SnapshotJob,
    done: Done,
}

/// A thread that writes one snapshot at a time (or, built with [`Snapshotter::inline`], no
/// thread: each snapshot is written by the caller, so a simulation stays a function of its
/// seed).
pub struct Snapshotter {
    tx: Option<mpsc::Sender<Request>>,
    busy: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    inline: Option<SnapshotStore>,
}

impl std::fmt::Debug for Snapshotter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshotter").field("busy", &self.is_busy()).finish()
    }
}

impl Snapshotter {
    /// Starts the thread.
    pub fn spawn(store: SnapshotStore) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Request>();
        let busy = Arc::new(AtomicBool::new(false));
        let b = busy.clone();
        let thread =
            std::thread::Builder::new().name("corral-snapshot".into()).spawn(move || {
                // A snapshot is background work: on a busy core the threads answering clients
                // come first (measured: docs/performance.md, issue 17).
                crate::io::lower_thread_priority();
                for req in rx {
                    let started = std::time::Instant::now();
                    let r = store.write(req.zxid, req.job);
                    match &r {
                        Ok(info) => tracing::info!(
                            zxid = format_args!("{:#x}", req.zxid),
                            file = %info.path.display(),
                            ms = started.elapsed().as_millis() as u64,
                            "snapshot written"
                        ),
                        Err(e) => tracing::error!(error = %e, "snapshot failed"),
                    }
                    b.store(false, Ordering::Release);
                    (req.done)(r);
                }
            })?;
        Ok(Self { tx: Some(tx), busy, thread: Some(thread), inline: None })
    }

    /// No thread: [`Snapshotter::try_submit`] writes the snapshot before it returns.
    pub fn inline(store: SnapshotStore) -> Self {
        Self { tx: None, busy: Arc::new(AtomicBool::new(false)), thread: None, inline: Some(store) }
    }

    /// True while a snapshot is being written.
    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    /// Starts writing a snapshot unless one is under way (then, as in ZooKeeper, this one is
    /// skipped and `false` returned). `done` runs on the snapshot thread afterwards.
    pub fn try_submit(
        &self,
        zxid: u64,
        job: SnapshotJob,
        done: impl FnOnce(Result<SnapshotInfo, SnapshotError>) + Send + 'static,
    ) -> bool {
        if let Some(store) = &self.inline {
            let r = store.write(zxid, job);
            if let Err(e) = &r {
                tracing::error!(error = %e, "snapshot failed");
            }
            done(r);
            return true;
        }
        if self.busy.swap(true, Ordering::AcqRel) {
            tracing::warn!("too busy to snapshot, skipping");
            return false;
        }
        let sent = self
            .tx
            .as_ref()
            .map(|tx| tx.send(Request { zxid, job, done: Box::new(done) }).is_ok())
            .unwrap_or(false);
        if !sent {
            self.busy.store(false, Ordering::Release);
        }
        sent
    }
}

impl Drop for Snapshotter {
    fn drop(&mut self) {
        // Closing the channel lets the thread finish the snapshot under way and end.
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
