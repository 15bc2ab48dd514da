//! The transaction log as the database drives it, in one of two modes over the same engine
//! code:
//!
//! * [`TxnLog::Group`]: the engine's group-commit [`Log`], with its writer thread (the server);
//! * [`TxnLog::Inline`]: the engine's single-threaded [`LogCore`], written only when the owner
//!   calls [`TxnLog::flush`] (the simulator: every durability point is then a step its seed
//!   chose, and a crash between two steps loses exactly what was not flushed).
//!
//! Both keep the same contract: appends in zxid order, each one's callback run once it is
//! durable (or failed), in zxid order; `truncate_after` and `purge_before` act after everything
//! appended before them is written.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use std::sync::{Arc, Mutex};

use corral_engine::log::{
    AppendCallback, Log, LogCore, LogError, LogIter, LogOptions, RecoveryReport,
};

/// A transaction log in one of its two modes.
pub enum TxnLog {
    /// Group commit on a writer thread.
    Group(Log),
    /// Written by the owner's calls to [`TxnLog::flush`].
    Inline(Box<Mutex<InlineLog>>),
}

impl std::fmt::Debug for TxnLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TxnLog::Group(l) => l.fmt(f),
            TxnLog::Inline(_) => f.write_str("TxnLog::Inline"),
        }
    }
}

/// A [`LogCore`] and the appends waiting for the next flush.
pub struct InlineLog {
    core: LogCore,
    pending: Vec<(u64, Bytes, Option<AppendCallback>)>,
}

impl InlineLog {
    /// Writes every pending append as one batch; runs their callbacks. Returns the last zxid
    /// written, if any.
    fn flush(&mut self) -> Result<Option<u64>, LogError> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        let pending = std::mem::take(&mut self.pending);
        let batch: Vec<(u64, &[u8])> = pending.iter().map(|(z, p, _)| (*z, &p[..])).collect();
        let result = self.core.write_batch(&batch, |_| {}).map(|_| ());
        let last = pending.last().map(|(z, _, _)| *z);
        for (zxid, _, done) in pending {
            if let Some(done) = done {
                done(match &result {
                    Ok(()) => Ok(zxid),
                    Err(e) => Err(e.clone()),
                });
            }
        }
        result.map(|()| last)
    }
}

impl TxnLog {
    /// Opens the log at `dir`: with a writer thread, or inline.
    pub fn open(
        dir: &Path,
        opts: LogOptions,
        inline: bool,
    ) -> Result<(TxnLog, RecoveryReport), LogError> {
        if inline {
            let (core, report) = LogCore::open(dir, opts)?;
            Ok((
                TxnLog::Inline(Box::new(Mutex::new(InlineLog { core, pending: Vec::new() }))),
                report,
            ))
        } else {
            let (log, report) = Log::open(dir, opts)?;
            Ok((TxnLog::Group(log), report))
        }
    }

    fn inline(m: &Mutex<InlineLog>) -> std::sync::MutexGuard<'_, InlineLog> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The writer thread's measurements (none inline: that log is the simulator's).
    pub fn metrics_handle(&self) -> Option<corral_engine::log::MetricsHandle> {
        match self {
            TxnLog::Group(l) => Some(l.metrics_handle()),
            TxnLog::Inline(_) => None,
        }
    }

    /// Queues a record; `done` runs when it is durable or has failed.
    pub fn append_async(
        &self,
        zxid: u64,
        payload: impl Into<Bytes>,
        done: AppendCallback,
    ) -> Result<(), LogError> {
        match self {
            TxnLog::Group(l) => l.append_async(zxid, payload, done),
            TxnLog::Inline(m) => {
                let payload = payload.into();
                let mut l = Self::inline(m);
                let last = l.pending.last().map_or(l.core.last_zxid(), |(z, _, _)| *z);
                if zxid <= last {
                    return Err(LogError::ZxidNotIncreasing { zxid, last });
                }
                let max = l.core.options().record_bytes_max;
                if payload.len() > max {
                    return Err(LogError::RecordTooLarge { len: payload.len(), max });
                }
                l.pending.push((zxid, payload, Some(done)));
                Ok(())
            }
        }
    }

    /// Writes a record and waits until it is durable (inline: flushes everything pending).
    pub fn append(&self, zxid: u64, payload: impl Into<Bytes>) -> Result<(), LogError> {
        match self {
            TxnLog::Group(l) => l.append(zxid, payload).map(|_| ()),
            TxnLog::Inline(m) => {
                let mut l = Self::inline(m);
                l.pending.push((zxid, payload.into(), None));
                l.flush().map(|_| ())
            }
        }
    }

    /// Inline: writes everything appended since the last flush and returns the last zxid
    /// written (None if there was nothing). Group: waits for the writer to catch up.
    pub fn flush(&self) -> Result<Option<u64>, LogError> {
        match self {
            TxnLog::Group(l) => l.sync().map(|()| None),
            TxnLog::Inline(m) => Self::inline(m).flush(),
        }
    }

    /// True if appends wait for a flush (inline mode only).
    pub fn has_pending(&self) -> bool {
        match self {
            TxnLog::Group(_) => false,
            TxnLog::Inline(m) => !Self::inline(m).pending.is_empty(),
        }
    }

    /// Starts a new segment at the next append.
    pub fn roll(&self) -> Result<(), LogError> {
        match self {
            TxnLog::Group(l) => l.roll(),
            TxnLog::Inline(m) => {
                let mut l = Self::inline(m);
                l.flush()?;
                l.core.roll()
            }
        }
    }

    /// Durably removes every record above `zxid` (what is pending is written first).
    pub fn truncate_after(&self, zxid: u64) -> Result<(), LogError> {
        match self {
            TxnLog::Group(l) => l.truncate_after(zxid),
            TxnLog::Inline(m) => {
                let mut l = Self::inline(m);
                l.flush()?;
                l.core.truncate_after(zxid)
            }
        }
    }

    /// Takes the segments all of whose records are below `zxid` out of the log, leaving their
    /// files for the caller to remove (see `LogCore::detach_before`).
    pub fn detach_before(&self, zxid: u64) -> Result<Vec<PathBuf>, LogError> {
        match self {
            TxnLog::Group(l) => l.detach_before(zxid),
            TxnLog::Inline(m) => {
                let mut l = Self::inline(m);
                l.flush()?;
                l.core.detach_before(zxid)
            }
        }
    }

    /// Records with zxid ≥ `from`, up to what is durable.
    pub fn iter_from(&self, from: u64) -> LogIter {
        match self {
            TxnLog::Group(l) => l.iter_from(from),
            TxnLog::Inline(m) => Self::inline(m).core.iter_from(from),
        }
    }

    /// The error that stopped the log, if any.
    pub fn failure(&self) -> Option<Arc<LogError>> {
        match self {
            TxnLog::Group(l) => l.failure(),
            TxnLog::Inline(m) => Self::inline(m).core.failure(),
        }
    }

    /// The group-commit log, for its metrics (None inline).
    pub fn group(&self) -> Option<&Log> {
        match self {
            TxnLog::Group(l) => Some(l),
            TxnLog::Inline(_) => None,
        }
    }
}
