//! Reading the log: records from any zxid on, across segments, up to what is durable.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::core::{list_segments, ReadView, SegmentInfo};
use super::format::{parse_frame, u32_at, Frame, SegmentHeader, FRAME_LEN, HEADER_LEN};
use super::LogError;
use crate::io::{read_up_to, OpenOptions, VFile, Vfs};

/// One record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its zxid.
    pub zxid: u64,
    /// Its payload.
    pub payload: Vec<u8>,
}

const READ_CHUNK: usize = 1 << 20;

struct SegReader {
    file: Box<dyn VFile>,
    path: PathBuf,
    pos: u64,
    limit: u64,
    last_zxid: u64,
    buf: Vec<u8>,
    buf_start: u64,
    /// A version 2 segment: pad frames are skipped.
    pads: bool,
}

impl SegReader {
    fn corrupt(&self, reason: impl Into<String>) -> LogError {
        LogError::Corrupt {
            segment: self.path.clone(),
            offset: self.pos,
            last_good_zxid: self.last_zxid,
            next_zxid: None,
            reason: reason.into(),
        }
    }

    /// Makes `[pos, pos + n)` available in the buffer; returns false if the file is shorter.
    fn load(&mut self, n: usize) -> Result<bool, LogError> {
        let have_end = self.buf_start + self.buf.len() as u64;
        if self.pos >= self.buf_start && self.pos + n as u64 <= have_end {
            return Ok(true);
        }
        let want = n.max(READ_CHUNK).min((self.limit - self.pos) as usize);
        self.buf.resize(want, 0);
        let got = read_up_to(self.file.as_ref(), &mut self.buf, self.pos)
            .map_err(|e| LogError::io("read", &self.path, e))?;
        self.buf.truncate(got);
        self.buf_start = self.pos;
        Ok(got >= n)
    }

    fn next_record(&mut self) -> Result<Option<Record>, LogError> {
        loop {
            match self.next_frame()? {
                Some(Ok(rec)) => return Ok(Some(rec)),
                Some(Err(pad_len)) => self.pos += (FRAME_LEN + pad_len) as u64,
                None => return Ok(None),
            }
        }
    }

    /// The next record, or `Err(payload length)` of a pad frame to skip.
    fn next_frame(&mut self) -> Result<Option<Result<Record, usize>>, LogError> {
        if self.pos + FRAME_LEN as u64 > self.limit {
            return Ok(None);
        }
        if !self.load(FRAME_LEN)? {
            return Ok(None);
        }
        let off = (self.pos - self.buf_start) as usize;
        let frame = &self.buf[off..off + FRAME_LEN];
        if frame.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        let len = u32_at(frame, 0) as usize;
        if self.pos + (FRAME_LEN + len) as u64 > self.limit {
            return Err(self.corrupt("record runs past the end of the segment"));
        }
        if !self.load(FRAME_LEN + len)? {
            return Err(self.corrupt("record runs past the end of the file"));
        }
        let off = (self.pos - self.buf_start) as usize;
        let b = &self.buf[off..off + FRAME_LEN + len];
        match parse_frame(b) {
            Frame::Valid { zxid, batch_start, .. } => {
                if zxid <= self.last_zxid {
                    return Err(self.corrupt(format!("zxid {zxid:#x} not increasing")));
                }
                if u64::from(batch_start) > self.pos || (batch_start as usize) < HEADER_LEN {
                    return Err(self.corrupt("batch start out of range"));
                }
                let rec = Record { zxid, payload: b[FRAME_LEN..].to_vec() };
                self.last_zxid = zxid;
                self.pos += (FRAME_LEN + len) as u64;
                Ok(Some(Ok(rec)))
            }
            Frame::Pad { .. } | Frame::Link { .. } if self.pads => Ok(Some(Err(len))),
            Frame::Pad { .. } | Frame::Link { .. } => Err(self.corrupt("zxid 0")),
            Frame::Invalid(why) => Err(self.corrupt(why)),
            Frame::Zero | Frame::Incomplete => Err(self.corrupt("incomplete record")),
        }
    }
}

/// Iterator over records with zxid ≥ a starting zxid. Yields an error (and then stops) on
/// corruption or I/O failure.
pub struct LogIter {
    vfs: Arc<dyn Vfs>,
    segments: Vec<(SegmentInfo, Option<u64>)>,
    idx: usize,
    cur: Option<SegReader>,
    from: u64,
    dbid: Option<u64>,
    prev_last: Option<u64>,
    done: bool,
    /// Fail (rather than start late) if records at or above `from` were purged.
    strict: bool,
}

impl std::fmt::Debug for LogIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogIter").field("from", &self.from).field("idx", &self.idx).finish()
    }
}

/// Picks the segments that can hold zxids ≥ `from`: the last one starting at or before it and
/// all later ones.
fn select(segs: Vec<(SegmentInfo, Option<u64>)>, from: u64) -> Vec<(SegmentInfo, Option<u64>)> {
    let start = segs.iter().rposition(|(s, _)| s.base_zxid <= from).unwrap_or(0);
    segs.into_iter().skip(start).collect()
}

impl LogIter {
    pub(crate) fn new(vfs: Arc<dyn Vfs>, view: &Mutex<ReadView>, from: u64, dbid: u64) -> Self {
        let v = view.lock().unwrap_or_else(|p| p.into_inner());
        let segs = v
            .segments
            .iter()
            .map(|s| {
                let limit = match v.active {
                    Some((base, end)) if base == s.base_zxid => Some(end),
                    _ => None,
                };
                (s.clone(), limit)
            })
            .collect();
        drop(v);
        Self::with_segments(vfs, select(segs, from), from, Some(dbid))
    }

    /// Reads a log directory that no [`super::Log`] has open (offline tools), from `from` on.
    /// Every segment is read to its end.
    pub fn open_dir(vfs: Arc<dyn Vfs>, dir: &Path, from: u64) -> Result<Self, LogError> {
        let segs = list_segments(vfs.as_ref(), dir)?.into_iter().map(|s| (s, None)).collect();
        Ok(Self::with_segments(vfs, select(segs, from), from, None))
    }

    fn with_segments(
        vfs: Arc<dyn Vfs>,
        segments: Vec<(SegmentInfo, Option<u64>)>,
        from: u64,
        dbid: Option<u64>,
    ) -> Self {
        Self {
            vfs,
            segments,
            idx: 0,
            cur: None,
            from,
            dbid,
            prev_last: None,
            done: false,
            strict: false,
        }
    }

    /// Makes the iterator fail with [`LogError::Purged`] if records with zxids at or above the
    /// starting zxid are no longer in the log (their segments were purged). Recovery and sync
    /// need every record after a point; a plain iterator starts at the oldest record it has.
    pub fn strict(mut self) -> Self {
        self.strict = true;
        self
    }

    fn open_segment(&mut self) -> Result<Option<SegReader>, LogError> {
        let Some((seg, limit)) = self.segments.get(self.idx).cloned() else { return Ok(None) };
        self.idx += 1;
        let file = self
            .vfs
            .open(&seg.path, OpenOptions::read())
            .map_err(|e| LogError::io("open", &seg.path, e))?;
        let mut hb = [0u8; HEADER_LEN];
        let n = read_up_to(file.as_ref(), &mut hb, 0)
            .map_err(|e| LogError::io("read", &seg.path, e))?;
        let bad = |reason: String| LogError::BadHeader { segment: seg.path.clone(), reason };
        let h = SegmentHeader::decode(&hb[..n]).map_err(bad)?;
        if h.base_zxid != seg.base_zxid {
            return Err(bad(format!(
                "header base zxid {:#x} does not match the name",
                h.base_zxid
            )));
        }
        if let Some(dbid) = self.dbid {
            if h.dbid != dbid {
                return Err(bad(format!("dbid {} is not this log's dbid {dbid}", h.dbid)));
            }
        }
        if self.strict
            && self.prev_last.is_none()
            && h.base_zxid > self.from
            && h.prev_zxid >= self.from
        {
            return Err(LogError::Purged {
                from: self.from,
                segment: seg.path.clone(),
                prev_zxid: h.prev_zxid,
            });
        }
        if let Some(prev) = self.prev_last {
            if h.prev_zxid != prev {
                return Err(LogError::Corrupt {
                    segment: seg.path.clone(),
                    offset: 0,
                    last_good_zxid: prev,
                    next_zxid: None,
                    reason: format!(
                        "segment chain broken: the previous segment ends at {prev:#x} but this \
                         one follows {:#x}",
                        h.prev_zxid
                    ),
                });
            }
        }
        let file_len = file.len().map_err(|e| LogError::io("stat", &seg.path, e))?;
        Ok(Some(SegReader {
            file,
            path: seg.path,
            pos: HEADER_LEN as u64,
            limit: limit.unwrap_or(file_len).min(file_len),
            last_zxid: h.prev_zxid,
            buf: Vec::new(),
            buf_start: 0,
            pads: h.has_pads(),
        }))
    }
}

impl Iterator for LogIter {
    type Item = Result<Record, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            if self.cur.is_none() {
                match self.open_segment() {
                    Ok(Some(r)) => self.cur = Some(r),
                    Ok(None) => {
                        self.done = true;
                        return None;
                    }
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            }
            let cur = self.cur.as_mut().expect("segment");
            match cur.next_record() {
                Ok(Some(rec)) if rec.zxid < self.from => continue,
                Ok(Some(rec)) => return Some(Ok(rec)),
                Ok(None) => {
                    self.prev_last = Some(cur.last_zxid);
                    self.cur = None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
