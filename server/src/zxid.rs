//! The transaction id: `(epoch << 32) | counter`, one type for the whole server.
//!
//! ZooKeeper keeps zxids as Java `long`s, so they are signed on the wire (jute `long`) and in
//! files; the protocol core, the replica and the database order them as unsigned numbers. A
//! `Zxid` is the unsigned form; [`Zxid::from_wire`] and [`Zxid::to_wire`] cross to the signed
//! one where a record is read or written. (ZooKeeper never hands out a zxid with the top bit
//! set: its epochs stay below 2^31.)

use std::fmt;

/// A transaction id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Zxid(pub u64);

impl Zxid {
    /// The zxid before anything (an empty history).
    pub const ZERO: Zxid = Zxid(0);

    /// The zxid of `counter` in `epoch`.
    pub const fn new(epoch: u32, counter: u32) -> Zxid {
        Zxid(((epoch as u64) << 32) | counter as u64)
    }

    /// Its epoch.
    pub const fn epoch(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// Its counter within the epoch.
    pub const fn counter(self) -> u32 {
        self.0 as u32
    }

    /// The zxid after this one in the same epoch.
    pub const fn next(self) -> Zxid {
        Zxid(self.0 + 1)
    }

    /// The raw number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// From a jute `long` (a record, a reply header, a file name): negative values (never
    /// written by a server) are taken as zero.
    pub const fn from_wire(v: i64) -> Zxid {
        if v < 0 {
            Zxid(0)
        } else {
            Zxid(v as u64)
        }
    }

    /// As a jute `long`.
    pub const fn to_wire(self) -> i64 {
        self.0 as i64
    }
}

impl From<u64> for Zxid {
    fn from(v: u64) -> Zxid {
        Zxid(v)
    }
}

impl From<Zxid> for u64 {
    fn from(z: Zxid) -> u64 {
        z.0
    }
}

impl fmt::Debug for Zxid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Display for Zxid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::LowerHex for Zxid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_and_order() {
        let z = Zxid::new(3, 7);
        assert_eq!((z.epoch(), z.counter(), z.get()), (3, 7, 0x3_0000_0007));
        assert!(Zxid::new(2, u32::MAX) < Zxid::new(3, 0));
        assert_eq!(
            format!("{z:?} {z} {z:x} {z:#x}"),
            "0x300000007 0x300000007 300000007 0x300000007"
        );
        assert_eq!(Zxid::from_wire(-1), Zxid::ZERO);
        assert_eq!(Zxid::from_wire(z.to_wire()), z);
    }
}
