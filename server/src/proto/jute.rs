//! Jute, ZooKeeper's binary record encoding: big-endian integers, length-prefixed buffers,
//! strings and vectors where a length of -1 means null, and records as their fields in order.
//!
//! The [`Reader`] never panics and never allocates more than the bytes it was given: every length
//! is checked against both the remaining input and a `max_len` limit (ZooKeeper's
//! `jute.maxbuffer`) before anything is copied. Writing goes to any [`BufMut`] (`Vec<u8>`,
//! `BytesMut`). This module knows nothing about what the records mean.

use std::sync::{Arc, OnceLock};

use bytes::BufMut;
use thiserror::Error;

/// ZooKeeper's default `jute.maxbuffer` (0xfffff bytes).
pub const DEFAULT_MAX_LEN: usize = 0xf_ffff;

/// Why a jute decode failed. Offsets are byte positions in the input given to the [`Reader`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum JuteError {
    /// The input ended before a field was complete.
    #[error("truncated input at offset {offset}: need {needed} bytes, {available} left")]
    Truncated { offset: usize, needed: usize, available: usize },
    /// A length field was negative (other than the null marker -1).
    #[error("negative length {len} at offset {offset}")]
    NegativeLength { offset: usize, len: i32 },
    /// A length field was larger than the configured `jute.maxbuffer`.
    #[error("length {len} at offset {offset} exceeds the limit of {max} bytes")]
    TooLong { offset: usize, len: usize, max: usize },
    /// A string was not valid UTF-8.
    #[error("invalid UTF-8 in string at offset {offset}")]
    InvalidUtf8 { offset: usize },
    /// A numeric field had a value the record does not allow (unknown op type, error code...).
    #[error("invalid {what} value {value} at offset {offset}")]
    InvalidValue { what: &'static str, value: i64, offset: usize },
    /// Bytes were left over after a record that must fill its input exactly.
    #[error("{remaining} unexpected trailing bytes at offset {offset}")]
    TrailingBytes { offset: usize, remaining: usize },
}

/// A bounds-checked cursor over a jute-encoded byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    max_len: usize,
}

impl<'a> Reader<'a> {
    /// A reader with the default `jute.maxbuffer` limit.
    pub fn new(buf: &'a [u8]) -> Self {
        Self::with_max_len(buf, DEFAULT_MAX_LEN)
    }

    /// A reader that refuses any buffer, string or vector length above `max_len`.
    pub fn with_max_len(buf: &'a [u8], max_len: usize) -> Self {
        Self { buf, pos: 0, max_len }
    }

    /// The configured length limit.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The bytes not yet consumed.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Consumes `n` bytes unread.
    pub fn skip(&mut self, n: usize) -> Result<(), JuteError> {
        self.take(n).map(|_| ())
    }

    /// True when every byte has been consumed.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Fails unless every byte has been consumed.
    pub fn finish(&self) -> Result<(), JuteError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(JuteError::TrailingBytes { offset: self.pos, remaining: self.remaining() })
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], JuteError> {
        let available = self.remaining();
        if n > available {
            return Err(JuteError::Truncated { offset: self.pos, needed: n, available });
        }
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], JuteError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// A jute `byte`.
    pub fn read_u8(&mut self) -> Result<u8, JuteError> {
        Ok(self.take_array::<1>()?[0])
    }

    /// A jute `boolean`: any non-zero byte is true, as in Java's `DataInput.readBoolean`.
    pub fn read_bool(&mut self) -> Result<bool, JuteError> {
        Ok(self.read_u8()? != 0)
    }

    /// A jute `int`.
    pub fn read_i32(&mut self) -> Result<i32, JuteError> {
        Ok(i32::from_be_bytes(self.take_array()?))
    }

    /// A jute `long`.
    pub fn read_i64(&mut self) -> Result<i64, JuteError> {
        Ok(i64::from_be_bytes(self.take_array()?))
    }

    /// A length prefix: `None` for -1 (null), otherwise a checked, non-negative length. For a
    /// vector, `min_elem_size` lets the check refuse counts the remaining input cannot hold.
    fn read_len(&mut self, min_elem_size: usize) -> Result<Option<usize>, JuteError> {
        let offset = self.pos;
        let len = self.read_i32()?;
        if len == -1 {
            return Ok(None);
        }
        if len < 0 {
            return Err(JuteError::NegativeLength { offset, len });
        }
        let len = len as usize;
        if len > self.max_len {
            return Err(JuteError::TooLong { offset, len, max: self.max_len });
        }
        let needed = len.saturating_mul(min_elem_size);
        if needed > self.remaining() {
            return Err(JuteError::Truncated {
                offset: self.pos,
                needed,
                available: self.remaining(),
            });
        }
        Ok(Some(len))
    }

    /// A jute `buffer` as a borrowed slice; `None` is null.
    pub fn read_buffer_ref(&mut self) -> Result<Option<&'a [u8]>, JuteError> {
        match self.read_len(1)? {
            None => Ok(None),
            Some(len) => self.take(len).map(Some),
        }
    }

    /// A jute `buffer` copied into [`Data`].
    pub fn read_data(&mut self) -> Result<Data, JuteError> {
        Ok(match self.read_buffer_ref()? {
            None => Data::null(),
            Some(bytes) => Data::from_slice(bytes),
        })
    }

    /// A jute `ustring`; `None` is null.
    pub fn read_ustring_opt(&mut self) -> Result<Option<String>, JuteError> {
        let offset = self.pos;
        match self.read_buffer_ref()? {
            None => Ok(None),
            Some(bytes) => match std::str::from_utf8(bytes) {
                Ok(s) => Ok(Some(s.to_owned())),
                Err(_) => Err(JuteError::InvalidUtf8 { offset }),
            },
        }
    }

    /// A jute `ustring`, reading null as the empty string (ZooKeeper fields that are never null
    /// in practice; a null reaches the same validation error as an empty value).
    pub fn read_ustring(&mut self) -> Result<String, JuteError> {
        Ok(self.read_ustring_opt()?.unwrap_or_default())
    }

    /// A jute `vector`, reading null as empty. Each element takes at least `min_elem_size` bytes,
    /// which bounds the allocation by the input size.
    pub fn read_vec<T>(
        &mut self,
        min_elem_size: usize,
        mut elem: impl FnMut(&mut Self) -> Result<T, JuteError>,
    ) -> Result<Vec<T>, JuteError> {
        let Some(len) = self.read_len(min_elem_size.max(1))? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(len);
        for _ in 0..len {
            out.push(elem(self)?);
        }
        Ok(out)
    }
}

/// Writing jute primitives to any [`BufMut`].
pub trait JuteWrite: BufMut {
    /// A jute `boolean`.
    fn put_bool_jute(&mut self, v: bool) {
        self.put_u8(u8::from(v));
    }

    /// A jute `buffer` (`None` writes the null marker).
    fn put_buffer(&mut self, v: Option<&[u8]>) {
        match v {
            None => self.put_i32(-1),
            Some(bytes) => {
                self.put_i32(len_i32(bytes.len()));
                self.put_slice(bytes);
            }
        }
    }

    /// A jute `ustring`.
    fn put_ustring(&mut self, s: &str) {
        self.put_buffer(Some(s.as_bytes()));
    }

    /// A jute vector length prefix.
    fn put_len(&mut self, len: usize) {
        self.put_i32(len_i32(len));
    }
}

impl<B: BufMut + ?Sized> JuteWrite for B {}

/// Jute lengths are 32-bit. Anything larger could never be read back (the limit is far
/// smaller), so saturate rather than wrap into a negative length.
fn len_i32(len: usize) -> i32 {
    i32::try_from(len).unwrap_or(i32::MAX)
}

/// A value with a jute encoding: primitives, strings, buffers, vectors and records.
pub trait Jute: Sized {
    /// The smallest number of bytes an encoded value can take (used to bound vector counts).
    const MIN_SIZE: usize = 1;

    /// Decode one value.
    fn read(r: &mut Reader<'_>) -> Result<Self, JuteError>;

    /// Append the encoding of this value.
    fn write<B: BufMut>(&self, w: &mut B);

    /// Decode a value from a whole buffer, ignoring trailing bytes as ZooKeeper does.
    fn decode(buf: &[u8]) -> Result<Self, JuteError> {
        Self::read(&mut Reader::new(buf))
    }

    /// Decode a value that must fill `buf` exactly.
    fn decode_exact(buf: &[u8]) -> Result<Self, JuteError> {
        let mut r = Reader::new(buf);
        let v = Self::read(&mut r)?;
        r.finish()?;
        Ok(v)
    }

    /// Encode into a fresh vector.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }
}

impl Jute for i32 {
    const MIN_SIZE: usize = 4;
    fn read(r: &mut Reader<'_>) -> Result<Self, JuteError> {
        r.read_i32()
    }
    fn write<B: BufMut>(&self, w: &mut B) {
        w.put_i32(*self);
    }
}

impl Jute for i64 {
    const MIN_SIZE: usize = 8;
    fn read(r: &mut Reader<'_>) -> Result<Self, JuteError> {
        r.read_i64()
    }
    fn write<B: BufMut>(&self, w: &mut B) {
        w.put_i64(*self);
    }
}

impl Jute for bool {
    fn read(r: &mut Reader<'_>) -> Result<Self, JuteError> {
        r.read_bool()
    }
    fn write<B: BufMut>(&self, w: &mut B) {
        w.put_bool_jute(*self);
    }
}

impl Jute for String {
    const MIN_SIZE: usize = 4;
    fn read(r: &mut Reader<'_>) -> Result<Self, JuteError> {
        r.read_ustring()
    }
    fn write<B: BufMut>(&self, w: &mut B) {
        w.put_ustring(self);
    }
}

impl Jute for Data {
    const MIN_SIZE: usize = 4;
    fn read(r: &mut Reader<'_>) -> Result<Self, JuteError> {
        r.read_data()
    }
    fn write<B: BufMut>(&self, w: &mut B) {
        w.put_buffer(self.as_option());
    }
}

impl<T: Jute> Jute for Vec<T> {
    const MIN_SIZE: usize = 4;
    fn read(r: &mut Reader<'_>) -> Result<Self, JuteError> {
        r.read_vec(T::MIN_SIZE, T::read)
    }
    fn write<B: BufMut>(&self, w: &mut B) {
        w.put_len(self.len());
        for v in self {
            v.write(w);
        }
    }
}

/// A jute `buffer` payload (znode data): shared, immutable, and able to say "null", which
/// ZooKeeper keeps distinct from empty. Cloning is a reference-count increment. The bytes may
/// be the tail of a larger shared allocation (the tree keeps a node's path and data together).
#[derive(Clone, Default)]
pub struct Data {
    buf: Option<Arc<[u8]>>,
    start: usize,
}

impl PartialEq for Data {
    fn eq(&self, other: &Self) -> bool {
        self.is_null() == other.is_null() && self.as_slice() == other.as_slice()
    }
}

impl Eq for Data {}

impl std::hash::Hash for Data {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_option().hash(state);
    }
}

impl Data {
    /// The null buffer (length -1 on the wire).
    pub const fn null() -> Self {
        Data { buf: None, start: 0 }
    }

    /// An empty, non-null buffer. All empty buffers share one allocation.
    pub fn empty() -> Self {
        static EMPTY: OnceLock<Arc<[u8]>> = OnceLock::new();
        Data { buf: Some(EMPTY.get_or_init(|| Arc::from(&[][..])).clone()), start: 0 }
    }

    /// Copy bytes into a new buffer.
    pub fn from_slice(bytes: &[u8]) -> Self {
        if bytes.is_empty() {
            Self::empty()
        } else {
            Data { buf: Some(Arc::from(bytes)), start: 0 }
        }
    }

    /// The bytes of `buf` from `start` on, sharing the allocation (`start` is clamped).
    pub fn from_shared(buf: Arc<[u8]>, start: usize) -> Self {
        let start = start.min(buf.len());
        Data { buf: Some(buf), start }
    }

    /// True for the null buffer.
    pub fn is_null(&self) -> bool {
        self.buf.is_none()
    }

    /// Length in bytes (0 for null).
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// True when null or empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes (empty for null).
    pub fn as_slice(&self) -> &[u8] {
        self.as_option().unwrap_or(&[])
    }

    /// The bytes, or `None` for null.
    pub fn as_option(&self) -> Option<&[u8]> {
        self.buf.as_deref().map(|b| &b[self.start..])
    }
}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.as_option() {
            None => f.write_str("null"),
            Some(b) if b.len() <= 32 => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Some(b) => write!(f, "<{} bytes>", b.len()),
        }
    }
}

impl From<&[u8]> for Data {
    fn from(v: &[u8]) -> Self {
        Data::from_slice(v)
    }
}

impl From<Vec<u8>> for Data {
    fn from(v: Vec<u8>) -> Self {
        if v.is_empty() {
            Data::empty()
        } else {
            Data { buf: Some(Arc::from(v)), start: 0 }
        }
    }
}

impl From<&str> for Data {
    fn from(v: &str) -> Self {
        Data::from_slice(v.as_bytes())
    }
}

#[cfg(test)]
impl proptest::arbitrary::Arbitrary for Data {
    type Parameters = ();
    type Strategy = proptest::strategy::BoxedStrategy<Self>;
    fn arbitrary_with(_: ()) -> Self::Strategy {
        use proptest::prelude::*;
        prop_oneof![
            1 => Just(Data::null()),
            8 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Data::from),
        ]
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn primitives_are_big_endian() {
        let mut out = Vec::new();
        1i32.write(&mut out);
        (-2i64).write(&mut out);
        true.write(&mut out);
        assert_eq!(out, [0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 1]);
    }

    #[test]
    fn null_and_empty_are_distinct() {
        assert_eq!(Data::null().encode(), [0xff; 4]);
        assert_eq!(Data::empty().encode(), [0; 4]);
        assert!(Data::decode(&[0xff; 4]).unwrap().is_null());
        assert!(!Data::decode(&[0; 4]).unwrap().is_null());
        assert_eq!(Vec::<i32>::decode(&[0xff; 4]).unwrap(), Vec::<i32>::new());
        assert_eq!(String::decode(&[0xff; 4]).unwrap(), "");
    }

    #[test]
    fn bad_lengths_are_errors() {
        assert!(matches!(
            Data::decode(&[0xff, 0xff, 0xff, 0xfe]),
            Err(JuteError::NegativeLength { .. })
        ));
        assert!(matches!(Data::decode(&[0, 0x10, 0, 0]), Err(JuteError::TooLong { .. })));
        assert!(matches!(Data::decode(&[0, 0, 0, 5, 1]), Err(JuteError::Truncated { .. })));
        // A vector count that the input cannot hold is refused before allocating.
        assert!(matches!(Vec::<i64>::decode(&[0, 0, 0x10, 0]), Err(JuteError::Truncated { .. })));
        assert!(matches!(String::decode(&[0, 0, 0, 1, 0xff]), Err(JuteError::InvalidUtf8 { .. })));
        let mut r = Reader::with_max_len(&[0, 0, 0, 3, 1, 2, 3], 2);
        assert!(matches!(r.read_data(), Err(JuteError::TooLong { .. })));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Vec::<String>::decode(&bytes);
            let _ = Vec::<Data>::decode(&bytes);
            let _ = i64::decode(&bytes);
        }

        #[test]
        fn strings_round_trip(v in any::<Vec<String>>()) {
            prop_assert_eq!(Vec::<String>::decode_exact(&v.encode()).unwrap(), v);
        }

        #[test]
        fn data_round_trip(v in any::<Data>()) {
            prop_assert_eq!(Data::decode_exact(&v.encode()).unwrap(), v);
        }
    }
}
