//! The segment file format, byte by byte (docs/storage-format.md says the same in prose).
//!
//! A segment `log.<first zxid, lowercase hex>` is a [`SegmentHeader`] followed by records.
//! All integers are little-endian.
//!
//! ```text
//! header (48 bytes)
//!   0  [u8; 8]  magic "CORRALLG"
//!   8  u32      format version (1)
//!  12  u32      header length (48)
//!  16  u64      dbid (chosen by the embedder; checked on open)
//!  24  u64      base zxid: the zxid of the first record (also the file name)
//!  32  u64      prev zxid: the last zxid of the previous segment (0 if none)
//!  40  u32      reserved (0)
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
//! The log ends at the first frame whose 20 bytes are all zero (the preallocated space), or at
//! the end of the file. The batch-start field lets recovery tell a torn write from corruption:
//! records after a bad one that belong to the *same* batch were part of a write that never
//! completed (a torn tail), while a valid record from a *later* batch proves the bad record had
//! been made durable and acknowledged — that is corruption.

use std::io;

use crate::io::{read_up_to, VFile};

/// Segment file magic.
pub const SEGMENT_MAGIC: [u8; 8] = *b"CORRALLG";
/// Current format version.
pub const FORMAT_VERSION: u32 = 1;
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
        if version != FORMAT_VERSION {
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
        })
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
    if zxid == 0 {
        return Frame::Invalid("zxid 0");
    }
    let Some(end) = FRAME_LEN.checked_add(len as usize) else {
        return Frame::Invalid("length overflow");
    };
    if end > b.len() {
        return Frame::Incomplete;
    }
    if frame_crc(f, &b[FRAME_LEN..end]) != u32_at(f, 4) {
        return Frame::Invalid("checksum mismatch");
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
    let mut last_zxid = header.prev_zxid;
    let mut records = 0u64;
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
                match parse_frame(b) {
                    Frame::Valid { zxid, batch_start, len } => {
                        if zxid <= last_zxid {
                            Some("zxid not increasing")
                        } else if u64::from(batch_start) > pos
                            || (batch_start as usize) < HEADER_LEN
                        {
                            Some("batch start out of range")
                        } else {
                            let meta = RecordMeta { offset: pos, zxid, len, batch_start };
                            visit(meta, &b[FRAME_LEN..FRAME_LEN + len as usize]);
                            last_zxid = zxid;
                            records += 1;
                            pos += (FRAME_LEN + len as usize) as u64;
                            continue;
                        }
                    }
                    Frame::Incomplete => Some("record runs past the end of the file"),
                    Frame::Invalid(why) => Some(why),
                    Frame::Zero => None,
                }
            }
        };
        break classify_after(&mut w, pos, last_zxid, bad)?;
    };
    Ok(Ok(SegmentScan { header, end: pos, last_zxid, records, tail, file_len }))
}

/// Decides what the bytes from `bad_at` on are: nothing (zeros), a torn last write, or
/// corruption (a valid record of a later batch follows).
fn classify_after(
    w: &mut Window<'_>,
    bad_at: u64,
    last_zxid: u64,
    bad: Option<&'static str>,
) -> io::Result<TailState> {
    let file_len = w.file_len;
    let mut probe_w = Window::new(w.file, file_len, 1 << 20);
    let mut reason = bad.map(str::to_owned);
    let mut q = bad_at;
    // A valid frame has a non-zero byte among its first 16 (the zxid), so only starts up to 15
    // bytes before a non-zero byte need probing; long runs of zeros are skipped.
    let mut next_probe = bad_at + 1;
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
            for start in next_probe.max(at.saturating_sub(15))..=at {
                if let Some(state) =
                    probe(&mut probe_w, start, bad_at, last_zxid, reason.as_deref())?
                {
                    return Ok(state);
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
    Ok(match reason {
        None => TailState::Clean,
        Some(reason) => TailState::Torn { offset: bad_at, reason },
    })
}

/// Checks whether a valid record of a later batch starts at `at`.
fn probe(
    w: &mut Window<'_>,
    at: u64,
    bad_at: u64,
    last_zxid: u64,
    reason: Option<&str>,
) -> io::Result<Option<TailState>> {
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
    if let Frame::Valid { zxid, batch_start, .. } = parse_frame(b) {
        if u64::from(batch_start) > bad_at {
            return Ok(Some(TailState::Corrupt {
                offset: bad_at,
                reason: reason.unwrap_or("bad record").to_owned(),
                next_zxid: zxid,
                next_offset: at,
            }));
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
        };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        for i in 0..HEADER_LEN {
            let mut d = b;
            d[i] ^= 0x10;
            assert!(SegmentHeader::decode(&d).is_err(), "byte {i} flipped must be caught");
        }
        assert!(SegmentHeader::decode(&b[..10]).is_err());
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
        let h = SegmentHeader { version: FORMAT_VERSION, dbid: 0, base_zxid: 1, prev_zxid: 0 };
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
