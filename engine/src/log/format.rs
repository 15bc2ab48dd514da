//! The segment file format, byte by byte (docs/storage-format.md says the same in prose).
//!
//! A segment `log.<first zxid, lowercase hex>` is a [`SegmentHeader`] followed by records.
//! All integers are little-endian.
//!
//! ```text
//! header (48 bytes)
//!   0  [u8; 8]  magic "CORRALLG"
//!   8  u32      format version (1, or 2 for a segment written with several writes in flight)
//!  12  u32      header length (48)
//!  16  u64      dbid (chosen by the embedder; checked on open)
//!  24  u64      base zxid: the zxid of the first record (also the file name)
//!  32  u64      prev zxid: the last zxid of the previous segment (0 if none)
//!  40  u32      version 2: the in-flight window W in 4 KiB blocks; version 1: 0 (W = 0)
//!  44  u32      crc32c of bytes 0..44
//!
//! record (20-byte frame + payload)
//!   0  u32      payload length
//!   4  u32      crc32c of frame bytes 0..4 and 8..20, then the payload
//!   8  u64      zxid (> 0, strictly increasing through the log)
//!  16  u32      batch start: the segment offset of the first record written by the same
//!               write (group commit batch)
//!  20  [u8]     payload
//! ```
//!
//! Version 2 adds the *pad frame*: zxid 0, a valid checksum, a zero payload; it ends a batch's
//! write on a 4 KiB boundary, so that the next batch can be written while this one is still in
//! flight without touching its blocks. Scanning skips it; the next record must start a batch.
//! And the *link frame*: zxid 0, a valid checksum, an 8-byte payload holding the zxid of the
//! record before it. A write that goes out behind others still in flight starts with one, at
//! its own offset; scanning accepts it only if that record is the last one read, so a write
//! lost at a crash cannot be bridged by an older write's pad (a lone write that rewrote the
//! partial block before it leaves that block's old pad in place if it never lands).
//!
//! Within a segment every record (and pad) either continues the batch of the record just
//! before it (same batch start) or starts a new batch at its own offset; anything else is a
//! bad record (a write that landed partly, bridging the gap a lost block left).
//!
//! The log ends at the first frame whose 20 bytes are all zero (the preallocated space), or at
//! the end of the file. The batch-start field lets recovery tell a torn write from corruption:
//! records after a bad one that belong to the *same* batch were part of a write that never
//! completed (a torn tail), while a valid record from a *later* batch proves the bad record had
//! been made durable and acknowledged — that is corruption. With a window W > 0 (writes in
//! flight at once, version 2) a later batch may have landed while an earlier one did not: later
//! batches' records that all end within W bytes of the bad offset are an interrupted pipeline
//! (cut with the tail, like a torn write); one that ends beyond is corruption. The writer keeps
//! every write that is not yet durable within W bytes of the first of them, so the rule never
//! mistakes a crash for corruption.

use std::io;

use crate::io::{read_up_to, VFile};

/// Segment file magic.
pub const SEGMENT_MAGIC: [u8; 8] = *b"CORRALLG";
/// Format version of segments written one batch at a time.
pub const FORMAT_VERSION: u32 = 1;
/// Format version of segments written with several batches in flight (a window, pad frames).
pub const FORMAT_VERSION_PIPELINED: u32 = 2;
/// The unit of the header's window and of pad alignment.
pub const PAD_ALIGN: u64 = 4096;
/// Bytes in a segment header.
pub const HEADER_LEN: usize = 48;
/// Bytes in a record frame before the payload.
pub const FRAME_LEN: usize = 20;
/// Largest payload the format can describe (the length is a u32 and batch starts are u32
/// offsets, so segments stay below 4 GiB).
pub const SEGMENT_BYTES_LIMIT: u64 = u32::MAX as u64;

const _: () = assert!(HEADER_LEN.is_multiple_of(8) && FRAME_LEN == 20);

/// File name of the segment whose first record has `base_zxid`.
pub fn segment_file_name(base_zxid: u64) -> String {
    format!("log.{base_zxid:x}")
}

/// Parses `log.<hex>` into the base zxid.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("log.")?;
    if hex.is_empty() || hex.len() > 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// The fixed header at the start of every segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Format version.
    pub version: u32,
    /// Database id chosen by the embedder.
    pub dbid: u64,
    /// zxid of the first record.
    pub base_zxid: u64,
    /// Last zxid of the previous segment, 0 if there is none.
    pub prev_zxid: u64,
    /// Version 2: the in-flight window in 4 KiB blocks (0 in version 1).
    pub window_blocks: u32,
}

impl SegmentHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.dbid.to_le_bytes());
        b[24..32].copy_from_slice(&self.base_zxid.to_le_bytes());
        b[32..40].copy_from_slice(&self.prev_zxid.to_le_bytes());
        b[40..44].copy_from_slice(&self.window_blocks.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..44]);
        b[44..48].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a header; the error says what is wrong.
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        if b.len() < HEADER_LEN {
            return Err(format!("header truncated: {} of {HEADER_LEN} bytes", b.len()));
        }
        if b[0..8] != SEGMENT_MAGIC {
            return Err(format!("bad magic {:02x?}", &b[0..8]));
        }
        let crc = u32_at(b, 44);
        if crc32c::crc32c(&b[0..44]) != crc {
            return Err("header checksum mismatch".into());
        }
        let version = u32_at(b, 8);
        if version != FORMAT_VERSION && version != FORMAT_VERSION_PIPELINED {
            return Err(format!("unsupported format version {version}"));
        }
        let len = u32_at(b, 12);
        if len as usize != HEADER_LEN {
            return Err(format!("unsupported header length {len}"));
        }
        Ok(Self {
            version,
            dbid: u64_at(b, 16),
            base_zxid: u64_at(b, 24),
            prev_zxid: u64_at(b, 32),
            window_blocks: if version == FORMAT_VERSION { 0 } else { u32_at(b, 40) },
        })
    }

    /// The in-flight window in bytes (0: one write at a time).
    pub fn window(&self) -> u64 {
        u64::from(self.window_blocks) * PAD_ALIGN
    }

    /// True if the segment may hold pad frames.
    pub fn has_pads(&self) -> bool {
        self.version >= FORMAT_VERSION_PIPELINED
    }
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn frame_crc(frame: &[u8], payload: &[u8]) -> u32 {
    let c = crc32c::crc32c(&frame[0..4]);
    let c = crc32c::crc32c_append(c, &frame[8..20]);
    crc32c::crc32c_append(c, payload)
}

/// Appends one framed record to `out`.
pub fn encode_record(out: &mut impl Extend<u8>, zxid: u64, batch_start: u32, payload: &[u8]) {
    let frame = encode_frame(zxid, batch_start, payload);
    out.extend(frame);
    out.extend(payload.iter().copied());
}

static ZEROS: [u8; PAD_ALIGN as usize] = [0; PAD_ALIGN as usize];

/// Bytes of the pad that takes a write ending at `end` to the next 4 KiB boundary: 0 if it is
/// on one, else at least a frame's (a gap smaller than a frame takes the next block too).
pub fn pad_len(end: u64) -> usize {
    let gap = (end.next_multiple_of(PAD_ALIGN) - end) as usize;
    match gap {
        0 => 0,
        g if g < FRAME_LEN => g + PAD_ALIGN as usize,
        g => g,
    }
}

/// Appends a pad frame of `total` bytes (frame and zero payload, `total` ≥ [`FRAME_LEN`]) that
/// belongs to the batch starting at `batch_start`.
pub fn encode_pad(out: &mut impl Extend<u8>, batch_start: u32, total: usize) {
    assert!(total >= FRAME_LEN, "a pad holds at least a frame");
    let len = (total - FRAME_LEN) as u32;
    let mut f = [0u8; FRAME_LEN];
    f[0..4].copy_from_slice(&len.to_le_bytes());
    f[16..20].copy_from_slice(&batch_start.to_le_bytes());
    let mut c = crc32c::crc32c(&f[0..4]);
    c = crc32c::crc32c_append(c, &f[8..20]);
    let mut left = len as usize;
    while left > 0 {
        let n = left.min(ZEROS.len());
        c = crc32c::crc32c_append(c, &ZEROS[..n]);
        left -= n;
    }
    f[4..8].copy_from_slice(&c.to_le_bytes());
    out.extend(f);
    let mut left = len as usize;
    while left > 0 {
        let n = left.min(ZEROS.len());
        out.extend(ZEROS[..n].iter().copied());
        left -= n;
    }
}

/// Bytes of a link frame.
pub const LINK_LEN: usize = FRAME_LEN + 8;

/// Appends a link frame: it starts the batch at `batch_start` (its own offset) and names
/// `prev_zxid`, the last record before it (version 2, written at the start of a write that
/// goes out while earlier ones are in flight).
pub fn encode_link(out: &mut impl Extend<u8>, batch_start: u32, prev_zxid: u64) {
    assert!(prev_zxid > 0, "a link names a record");
    let payload = prev_zxid.to_le_bytes();
    let mut f = [0u8; FRAME_LEN];
    f[0..4].copy_from_slice(&8u32.to_le_bytes());
    f[16..20].copy_from_slice(&batch_start.to_le_bytes());
    let crc = frame_crc(&f, &payload);
    f[4..8].copy_from_slice(&crc.to_le_bytes());
    out.extend(f);
    out.extend(payload);
}

/// The 20-byte frame for a record.
pub fn encode_frame(zxid: u64, batch_start: u32, payload: &[u8]) -> [u8; FRAME_LEN] {
    assert!(zxid > 0, "zxid 0 is reserved for the end-of-log marker");
    let len = u32::try_from(payload.len()).expect("payload length fits u32");
    let mut f = [0u8; FRAME_LEN];
    f[0..4].copy_from_slice(&len.to_le_bytes());
    f[8..16].copy_from_slice(&zxid.to_le_bytes());
    f[16..20].copy_from_slice(&batch_start.to_le_bytes());
    let crc = frame_crc(&f, payload);
    f[4..8].copy_from_slice(&crc.to_le_bytes());
    f
}

/// What a frame position holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A record whose checksum holds.
    Valid {
        /// zxid.
        zxid: u64,
        /// Offset of its batch's first record.
        batch_start: u32,
        /// Payload length.
        len: u32,
    },
    /// A link frame (zxid 0, valid checksum, an 8-byte non-zero payload): only meaningful in
    /// version 2 segments.
    Link {
        /// Offset of its batch's first record (its own).
        batch_start: u32,
        /// The zxid of the record before it.
        prev_zxid: u64,
    },
    /// A pad frame (zxid 0, valid checksum, a zero payload): only meaningful in version 2
    /// segments.
    Pad {
        /// Offset of its batch's first record.
        batch_start: u32,
        /// Payload length.
        len: u32,
    },
    /// Twenty zero bytes: the end-of-log marker (or never-written space).
    Zero,
    /// Fewer than a frame's bytes remain in the buffer, or the payload runs past it.
    Incomplete,
    /// Anything else.
    Invalid(&'static str),
}

/// Parses the frame at the start of `b` (which may extend past the frame).
pub fn parse_frame(b: &[u8]) -> Frame {
    if b.len() < FRAME_LEN {
        if b.iter().all(|&x| x == 0) {
            return Frame::Zero;
        }
        return Frame::Incomplete;
    }
    let f = &b[..FRAME_LEN];
    if f.iter().all(|&x| x == 0) {
        return Frame::Zero;
    }
    let len = u32_at(f, 0);
    let zxid = u64_at(f, 8);
    let Some(end) = FRAME_LEN.checked_add(len as usize) else {
        return Frame::Invalid("length overflow");
    };
    if end > b.len() {
        return Frame::Incomplete;
    }
    if frame_crc(f, &b[FRAME_LEN..end]) != u32_at(f, 4) {
        return Frame::Invalid("checksum mismatch");
    }
    if zxid == 0 {
        let payload = &b[FRAME_LEN..end];
        if payload.iter().all(|&x| x == 0) {
            return Frame::Pad { batch_start: u32_at(f, 16), len };
        }
        if len == 8 {
            return Frame::Link { batch_start: u32_at(f, 16), prev_zxid: u64_at(payload, 0) };
        }
        return Frame::Invalid("zxid 0");
    }
    Frame::Valid { zxid, batch_start: u32_at(f, 16), len }
}

/// How a segment's records end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailState {
    /// The records end at an end-of-log marker or the end of the file, with nothing after.
    Clean,
    /// Invalid bytes at `offset` that can only be an incomplete (torn) last write.
    Torn {
        /// Offset of the first bad byte.
        offset: u64,
        /// What was wrong there.
        reason: String,
    },
    /// A bad record at `offset` followed by a valid record of a later batch.
    Corrupt {
        /// Offset of the bad record.
        offset: u64,
        /// What was wrong there.
        reason: String,
        /// zxid of the valid record found after it.
        next_zxid: u64,
        /// Offset of that record.
        next_offset: u64,
    },
}

/// Where a scanned record lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMeta {
    /// Segment offset of the frame.
    pub offset: u64,
    /// zxid.
    pub zxid: u64,
    /// Payload length.
    pub len: u32,
    /// Offset of the first record of its batch.
    pub batch_start: u32,
}

/// The result of scanning one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentScan {
    /// The header.
    pub header: SegmentHeader,
    /// Offset just past the last valid record (the header length if there is none).
    pub end: u64,
    /// zxid of the last valid record (the header's prev zxid if there is none).
    pub last_zxid: u64,
    /// Number of valid records.
    pub records: u64,
    /// How the records end.
    pub tail: TailState,
    /// The file's length.
    pub file_len: u64,
}

/// A window over a file, read in large chunks, for sequential scanning.
pub(crate) struct Window<'a> {
    file: &'a dyn VFile,
    file_len: u64,
    buf: Vec<u8>,
    start: u64,
    chunk: usize,
}

impl<'a> Window<'a> {
    pub(crate) fn new(file: &'a dyn VFile, file_len: u64, chunk: usize) -> Self {
        Self { file, file_len, buf: Vec::new(), start: 0, chunk }
    }

    /// Bytes from `pos` on: at least `want` of them if the file has them, at most what is
    /// loaded.
    pub(crate) fn at(&mut self, pos: u64, want: usize) -> io::Result<&[u8]> {
        let have_end = self.start + self.buf.len() as u64;
        let want_end = (pos + want as u64).min(self.file_len);
        if pos < self.start || want_end > have_end {
            let read_len = (want.max(self.chunk) as u64).min(self.file_len.saturating_sub(pos));
            self.buf.resize(read_len as usize, 0);
            let n = read_up_to(self.file, &mut self.buf, pos)?;
            self.buf.truncate(n);
            self.start = pos;
        }
        let off = (pos - self.start) as usize;
        Ok(&self.buf[off.min(self.buf.len())..])
    }
}

const SCAN_CHUNK: usize = 4 << 20;

/// Reads and checks a segment's header.
pub fn read_header(file: &dyn VFile) -> io::Result<Result<SegmentHeader, String>> {
    let mut b = [0u8; HEADER_LEN];
    let n = read_up_to(file, &mut b, 0)?;
    Ok(SegmentHeader::decode(&b[..n]))
}

/// Scans a whole segment: checks every record's checksum and zxid order, finds where the valid
/// records end, and classifies what follows them (see [`TailState`]). `visit` sees every valid
/// record with its payload, in order.
pub fn scan_segment(
    file: &dyn VFile,
    mut visit: impl FnMut(RecordMeta, &[u8]),
) -> io::Result<Result<SegmentScan, String>> {
    let header = match read_header(file)? {
        Ok(h) => h,
        Err(e) => return Ok(Err(e)),
    };
    let file_len = file.len()?;
    let mut w = Window::new(file, file_len, SCAN_CHUNK);
    let mut pos = HEADER_LEN as u64;
    // Just past the last valid record (a pad after it is not part of the log's content).
    let mut end = pos;
    let mut last_zxid = header.prev_zxid;
    let mut records = 0u64;
    // The batch start of the record or pad just before `pos`, while that batch goes on.
    let mut batch: Option<u32> = None;
    let tail = loop {
        if pos >= file_len {
            break TailState::Clean;
        }
        let b = w.at(pos, FRAME_LEN)?;
        let head = &b[..b.len().min(FRAME_LEN)];
        let bad = if head.iter().all(|&x| x == 0) {
            None
        } else if head.len() < FRAME_LEN {
            Some("frame runs past the end of the file")
        } else {
            let len = u64::from(u32_at(head, 0));
            if pos + FRAME_LEN as u64 + len > file_len {
                Some("record runs past the end of the file")
            } else {
                let b = w.at(pos, FRAME_LEN + len as usize)?;
                let in_place = |bs: u32| u64::from(bs) == pos || Some(bs) == batch;
                match parse_frame(b) {
                    Frame::Valid { zxid, batch_start, len } => {
                        if zxid <= last_zxid {
                            Some("zxid not increasing")
                        } else if !in_place(batch_start) {
                            Some("batch start out of place")
                        } else {
                            let meta = RecordMeta { offset: pos, zxid, len, batch_start };
                            visit(meta, &b[FRAME_LEN..FRAME_LEN + len as usize]);
                            last_zxid = zxid;
                            records += 1;
                            pos += (FRAME_LEN + len as usize) as u64;
                            end = pos;
                            batch = Some(batch_start);
                            continue;
                        }
                    }
                    Frame::Pad { batch_start, len } if header.has_pads() => {
                        let pad_end = pos + (FRAME_LEN + len as usize) as u64;
                        if !in_place(batch_start) {
                            Some("batch start out of place")
                        } else if !pad_end.is_multiple_of(PAD_ALIGN) {
                            Some("pad does not end on a block boundary")
                        } else {
                            pos = pad_end;
                            batch = None;
                            continue;
                        }
                    }
                    Frame::Link { batch_start, prev_zxid } if header.has_pads() => {
                        if u64::from(batch_start) != pos {
                            Some("batch start out of place")
                        } else if prev_zxid != last_zxid {
                            // The write before this one never landed whole.
                            Some("link to a record that is not there")
                        } else {
                            pos += LINK_LEN as u64;
                            batch = Some(batch_start);
                            continue;
                        }
                    }
                    Frame::Pad { .. } | Frame::Link { .. } => Some("zxid 0"),
                    Frame::Incomplete => Some("record runs past the end of the file"),
                    Frame::Invalid(why) => Some(why),
                    Frame::Zero => None,
                }
            }
        };
        break classify_after(&mut w, pos, last_zxid, bad, header.window())?;
    };
    Ok(Ok(SegmentScan { header, end, last_zxid, records, tail, file_len }))
}

/// Decides what the bytes from `bad_at` on are: nothing (zeros), a torn last write, or
/// corruption (a valid record of a later batch follows). With a `window` W > 0, later batches'
/// records ending within W bytes of `bad_at` are writes that were in flight together at a
/// crash: cut with the tail.
fn classify_after(
    w: &mut Window<'_>,
    bad_at: u64,
    last_zxid: u64,
    bad: Option<&'static str>,
    window: u64,
) -> io::Result<TailState> {
    let file_len = w.file_len;
    let mut probe_w = Window::new(w.file, file_len, 1 << 20);
    let mut reason = bad.map(str::to_owned);
    let mut q = bad_at;
    // A valid frame has a non-zero byte among its first 16 (the zxid), so only starts up to 15
    // bytes before a non-zero byte need probing; long runs of zeros are skipped.
    let mut next_probe = bad_at + 1;
    // Later batches' records found within the window: (count, first zxid).
    let mut landed: Option<(u64, u64)> = None;
    while q < file_len {
        let chunk = w.at(q, SCAN_CHUNK)?;
        if chunk.is_empty() {
            break;
        }
        let chunk_len = chunk.len();
        let mut i = 0usize;
        while let Some(nz) = chunk[i..].iter().position(|&x| x != 0) {
            i += nz;
            let at = q + i as u64;
            if reason.is_none() {
                reason = Some("non-zero bytes after the end-of-log marker".to_owned());
            }
            let mut start = next_probe.max(at.saturating_sub(15));
            while start <= at {
                match probe(&mut probe_w, start, bad_at, last_zxid)? {
                    None => start += 1,
                    Some((zxid, rec_end)) if window > 0 && rec_end <= bad_at + window => {
                        let (n, first) = landed.unwrap_or((0, zxid));
                        landed = Some((n + 1, first));
                        // Skip the record's own bytes.
                        start = rec_end;
                        next_probe = next_probe.max(rec_end);
                    }
                    Some((zxid, _)) => {
                        return Ok(TailState::Corrupt {
                            offset: bad_at,
                            reason: reason.as_deref().unwrap_or("bad record").to_owned(),
                            next_zxid: zxid,
                            next_offset: start,
                        });
                    }
                }
            }
            next_probe = next_probe.max(at + 1);
            i += 1;
            if i >= chunk_len {
                break;
            }
        }
        q += chunk_len as u64;
    }
    Ok(match (reason, landed) {
        (None, _) => TailState::Clean,
        (Some(reason), None) => TailState::Torn { offset: bad_at, reason },
        (Some(reason), Some((n, first))) => TailState::Torn {
            offset: bad_at,
            reason: format!(
                "{reason}; {n} record(s) of later batches from zxid {first:#x} on, written while \
                 this one was in flight, landed before it"
            ),
        },
    })
}

/// Checks whether a valid record of a later batch starts at `at`: its zxid and end offset.
fn probe(
    w: &mut Window<'_>,
    at: u64,
    bad_at: u64,
    last_zxid: u64,
) -> io::Result<Option<(u64, u64)>> {
    let b = w.at(at, FRAME_LEN)?;
    if b.len() < FRAME_LEN {
        return Ok(None);
    }
    let len = u32_at(b, 0) as u64;
    let zxid = u64_at(b, 8);
    let batch_start = u64::from(u32_at(b, 16));
    // Cheap plausibility checks first; the checksum only for candidates.
    if zxid <= last_zxid
        || batch_start > at
        || batch_start < HEADER_LEN as u64
        || at + FRAME_LEN as u64 + len > w.file_len
    {
        return Ok(None);
    }
    let b = w.at(at, FRAME_LEN + len as usize)?;
    if let Frame::Valid { zxid, batch_start, len } = parse_frame(b) {
        if u64::from(batch_start) > bad_at {
            return Ok(Some((zxid, at + FRAME_LEN as u64 + u64::from(len))));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_damage() {
        let h = SegmentHeader {
            version: FORMAT_VERSION,
            dbid: 7,
            base_zxid: 0x1_0000_0001,
            prev_zxid: 9,
            window_blocks: 0,
        };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        let v2 = SegmentHeader { version: FORMAT_VERSION_PIPELINED, window_blocks: 300, ..h };
        let d = SegmentHeader::decode(&v2.encode()).unwrap();
        assert_eq!((d.window(), d.has_pads()), (300 * 4096, true));
        assert_eq!(d, v2);
        let v3 = SegmentHeader { version: 3, ..h };
        assert!(SegmentHeader::decode(&v3.encode()).is_err(), "unknown versions are refused");
        for i in 0..HEADER_LEN {
            let mut d = b;
            d[i] ^= 0x10;
            assert!(SegmentHeader::decode(&d).is_err(), "byte {i} flipped must be caught");
        }
        assert!(SegmentHeader::decode(&b[..10]).is_err());
    }

    /// A version 2 segment: the header, then `batches` (records of each written at the
    /// position the previous one left, each batch padded to a block boundary when `pad`).
    fn pipelined_segment(window_blocks: u32, batches: &[&[(u64, usize)]], pad: bool) -> Vec<u8> {
        let h = SegmentHeader {
            version: FORMAT_VERSION_PIPELINED,
            dbid: 0,
            base_zxid: batches[0][0].0,
            prev_zxid: 0,
            window_blocks,
        };
        let mut b = h.encode().to_vec();
        for batch in batches {
            let start = b.len() as u32;
            for &(zxid, len) in *batch {
                encode_record(&mut b, zxid, start, &vec![zxid as u8; len]);
            }
            if pad {
                let n = pad_len(b.len() as u64);
                if n > 0 {
                    encode_pad(&mut b, start, n);
                }
            }
        }
        b
    }

    fn scan_bytes(b: &[u8]) -> SegmentScan {
        use crate::io::{OpenOptions, SimVfs, Vfs};
        let sim = SimVfs::new();
        let path = std::path::Path::new("/p/log.1");
        let mut f = sim.open(path, OpenOptions::create_new()).unwrap();
        f.write_all_at(b, 0).unwrap();
        scan_segment(f.as_ref(), |_, _| {}).unwrap().unwrap()
    }

    #[test]
    fn pads_are_skipped_and_end_on_a_block() {
        for end in [48u64, 100, 4076, 4077, 4095, 4096, 5000] {
            let n = pad_len(end);
            assert!((end + n as u64).is_multiple_of(PAD_ALIGN), "{end}");
            assert!(n == 0 || n >= FRAME_LEN, "{end}: {n}");
        }
        let mut p = Vec::new();
        encode_pad(&mut p, 48, 100);
        assert_eq!(p.len(), 100);
        assert_eq!(parse_frame(&p), Frame::Pad { batch_start: 48, len: 80 });
        p[50] = 1;
        assert!(matches!(parse_frame(&p), Frame::Invalid(_)), "a pad's payload is checked");
        let b = pipelined_segment(8, &[&[(1, 100), (2, 10)], &[(3, 5000)], &[(4, 1)]], true);
        assert_eq!(b.len() % 4096, 0);
        let scan = scan_bytes(&b);
        assert_eq!((scan.records, scan.last_zxid, &scan.tail), (4, 4, &TailState::Clean));
        // The end is just past the last record, not its pad.
        assert_eq!(scan.end, b.len() as u64 - pad_len(scan.end) as u64);
        // In a version 1 segment a pad is a bad record.
        let mut v1 = b.clone();
        let h = SegmentHeader {
            version: FORMAT_VERSION,
            window_blocks: 0,
            ..SegmentHeader::decode(&v1).unwrap()
        };
        v1[..HEADER_LEN].copy_from_slice(&h.encode());
        let scan = scan_bytes(&v1);
        assert_eq!(scan.records, 2);
        assert!(matches!(scan.tail, TailState::Corrupt { .. }), "{:?}", scan.tail);
    }

    #[test]
    fn later_batches_within_the_window_are_an_interrupted_pipeline() {
        let b = pipelined_segment(4, &[&[(1, 100)], &[(2, 3000)], &[(3, 100), (4, 100)]], true);
        // The second batch (block 1) never landed; the third (block 2) did.
        let mut lost = b.clone();
        lost[4096..8192].fill(0);
        let scan = scan_bytes(&lost);
        assert_eq!((scan.records, scan.last_zxid), (1, 1));
        assert!(
            matches!(&scan.tail, TailState::Torn { offset: 4096, reason } if reason.contains("landed before")),
            "{:?}",
            scan.tail
        );
        // Torn at a byte instead of lost whole: the same.
        let mut torn = b.clone();
        torn[4096 + 1000..8192].fill(0);
        assert!(matches!(scan_bytes(&torn).tail, TailState::Torn { offset: 4096, .. }));
        // With a window of one block the third batch lies beyond it: corruption.
        let mut narrow = lost.clone();
        let h = SegmentHeader { window_blocks: 1, ..SegmentHeader::decode(&narrow).unwrap() };
        narrow[..HEADER_LEN].copy_from_slice(&h.encode());
        assert!(matches!(
            scan_bytes(&narrow).tail,
            TailState::Corrupt { offset: 4096, next_zxid: 3, .. }
        ));
        // And without pads or a window (version 1 rules) too.
        let v1 = pipelined_segment(0, &[&[(1, 100)], &[(2, 3000)], &[(3, 100)]], false);
        let mut v1 = v1;
        let h = SegmentHeader { version: FORMAT_VERSION, ..SegmentHeader::decode(&v1).unwrap() };
        v1[..HEADER_LEN].copy_from_slice(&h.encode());
        v1[168..1000].fill(0);
        assert!(matches!(scan_bytes(&v1).tail, TailState::Corrupt { .. }));
    }

    #[test]
    fn a_pad_cannot_bridge_a_lost_block() {
        // Batch 2 rewrote batch 1's last block from its pad on; only its second block landed,
        // where a record of batch 2 starts on the boundary, just after batch 1's old pad.
        let first = pipelined_segment(4, &[&[(1, 100)]], true);
        let full = pipelined_segment(4, &[&[(1, 100)], &[(2, 3908), (3, 50)]], false);
        // Batch 2 started at 168 (no pad in between in the rewrite): zxid 3 at offset 4096.
        let mut img = first.clone();
        img.resize(8192, 0);
        img[4096..full.len()].copy_from_slice(&full[4096..]);
        let at = 168 + FRAME_LEN + 3908;
        assert_eq!(at, 4096, "the test's record must start on the boundary");
        let scan = scan_bytes(&img);
        assert_eq!((scan.records, scan.last_zxid), (1, 1), "{:?}", scan.tail);
        assert!(matches!(scan.tail, TailState::Torn { offset: 4096, .. }), "{:?}", scan.tail);
    }

    #[test]
    fn a_link_names_the_write_before() {
        // P: record 1 and a pad to the block end. A rewrote that block (records 2, 3 after
        // record 1) and B followed at 4096 with a link to record 3.
        let p = pipelined_segment(4, &[&[(1, 100)]], true);
        let mut a = pipelined_segment(4, &[&[(1, 100), (2, 100), (3, 100)]], true);
        assert_eq!(a.len(), 4096);
        let mut b = Vec::new();
        encode_link(&mut b, 4096, 3);
        encode_record(&mut b, 4, 4096, b"four");
        encode_record(&mut b, 5, 4096, b"five");
        let n = pad_len((4096 + b.len()) as u64);
        encode_pad(&mut b, 4096, n);
        a.extend_from_slice(&b);
        let scan = scan_bytes(&a);
        assert_eq!((scan.records, scan.last_zxid, &scan.tail), (5, 5, &TailState::Clean));
        // A never landed: block 0 still holds P's old pad, which ends where B starts.
        let mut lost = p.clone();
        lost.extend_from_slice(&b);
        let scan = scan_bytes(&lost);
        assert_eq!((scan.records, scan.last_zxid), (1, 1));
        assert!(
            matches!(&scan.tail, TailState::Torn { offset: 4096, reason } if reason.contains("link")),
            "{:?}",
            scan.tail
        );
        let mut l = Vec::new();
        encode_link(&mut l, 48, 9);
        assert_eq!(parse_frame(&l), Frame::Link { batch_start: 48, prev_zxid: 9 });
    }

    #[test]
    fn names() {
        assert_eq!(segment_file_name(0x1_0000_002a), "log.10000002a");
        assert_eq!(parse_segment_file_name("log.10000002a"), Some(0x1_0000_002a));
        assert_eq!(parse_segment_file_name("log."), None);
        assert_eq!(parse_segment_file_name("log.xyz"), None);
        assert_eq!(parse_segment_file_name("snapshot.1"), None);
        assert_eq!(parse_segment_file_name("log.1.tmp"), None);
    }

    #[test]
    fn a_zero_length_record_after_a_bad_one_is_still_found() {
        use crate::io::{OpenOptions, SimVfs, Vfs};
        let sim = SimVfs::new();
        let path = std::path::Path::new("/z/log.1");
        let mut f = sim.open(path, OpenOptions::create_new()).unwrap();
        let h = SegmentHeader {
            version: FORMAT_VERSION,
            dbid: 0,
            base_zxid: 1,
            prev_zxid: 0,
            window_blocks: 0,
        };
        let mut b = h.encode().to_vec();
        encode_record(&mut b, 1, 48, b"abc");
        let second = b.len() as u32;
        // A record whose frame starts with zero bytes (empty payload) in a later batch.
        encode_record(&mut b, 2, second, b"");
        b[HEADER_LEN + FRAME_LEN] ^= 1;
        f.write_all_at(&b, 0).unwrap();
        let scan = scan_segment(f.as_ref(), |_, _| {}).unwrap().unwrap();
        assert!(
            matches!(scan.tail, TailState::Corrupt { offset: 48, next_zxid: 2, .. }),
            "{:?}",
            scan.tail
        );
    }

    #[test]
    fn frames() {
        let mut v = Vec::new();
        encode_record(&mut v, 5, 48, b"hello");
        assert_eq!(parse_frame(&v), Frame::Valid { zxid: 5, batch_start: 48, len: 5 });
        assert_eq!(parse_frame(&v[..v.len() - 1]), Frame::Incomplete);
        assert_eq!(parse_frame(&[0u8; 20]), Frame::Zero);
        for i in 0..v.len() {
            let mut d = v.clone();
            d[i] ^= 1;
            assert!(
                !matches!(parse_frame(&d), Frame::Valid { zxid: 5, len: 5, batch_start: 48 }),
                "flip at {i} must not parse as the same valid record"
            );
        }
    }
}
