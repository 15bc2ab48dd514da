//! When to warn an operator: requests slower than a threshold (counted, and logged at most
//! once per interval), and a request pipeline that has answered nothing for a while with
//! requests waiting. Pure decisions over numbers the server passes in; the server logs.

/// Slow requests: every one is counted; a warning is due at most once per `every_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlowRequests {
    every_ms: u64,
    last_warning_ms: Option<u64>,
    since_warning: u64,
}

impl SlowRequests {
    /// At most one warning per `every_ms`.
    pub fn new(every_ms: u64) -> SlowRequests {
        SlowRequests { every_ms, last_warning_ms: None, since_warning: 0 }
    }

    /// One slow request at `now_ms`: `Some(n)` when a warning is due, `n` the slow requests
    /// since the last warning (this one included).
    pub fn note(&mut self, now_ms: u64) -> Option<u64> {
        self.since_warning += 1;
        let due = self.last_warning_ms.is_none_or(|t| now_ms.saturating_sub(t) >= self.every_ms);
        if !due {
            return None;
        }
        self.last_warning_ms = Some(now_ms);
        Some(std::mem::take(&mut self.since_warning))
    }
}

/// What the stall watch reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// No reply for `for_ms` while `outstanding` requests wait.
    Stalled { for_ms: u64, outstanding: u64 },
    /// Replies again after a stall of `lasted_ms`.
    Resumed { lasted_ms: u64 },
}

/// Watches the count of replies sent: no progress for `after_ms` while requests are
/// outstanding is a stall, reported once, and its end reported once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StallWatch {
    after_ms: u64,
    last_sent: u64,
    /// When `last_sent` last changed, or when the queue was last empty.
    progress_ms: u64,
    stalled_since: Option<u64>,
}

impl StallWatch {
    /// A stall is no reply for `after_ms` with requests outstanding.
    pub fn new(after_ms: u64, now_ms: u64) -> StallWatch {
        StallWatch { after_ms, last_sent: 0, progress_ms: now_ms, stalled_since: None }
    }

    /// A look at `now_ms`: `sent` replies so far, `outstanding` requests waiting.
    pub fn check(&mut self, now_ms: u64, sent: u64, outstanding: u64) -> Option<Stall> {
        let progressed = sent != self.last_sent || outstanding == 0;
        self.last_sent = sent;
        if progressed {
            self.progress_ms = now_ms;
            return self
                .stalled_since
                .take()
                .map(|since| Stall::Resumed { lasted_ms: now_ms.saturating_sub(since) });
        }
        let idle = now_ms.saturating_sub(self.progress_ms);
        if idle >= self.after_ms && self.stalled_since.is_none() {
            self.stalled_since = Some(self.progress_ms);
            return Some(Stall::Stalled { for_ms: idle, outstanding });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_requests_warn_at_most_once_per_interval() {
        let mut s = SlowRequests::new(10_000);
        assert_eq!(s.note(100), Some(1), "the first warns at once");
        assert_eq!(s.note(200), None);
        assert_eq!(s.note(9_000), None);
        assert_eq!(s.note(10_100), Some(3), "two held back, and this one");
        assert_eq!(s.note(10_101), None);
    }

    #[test]
    fn a_stall_is_reported_once_and_so_is_its_end() {
        let mut w = StallWatch::new(5_000, 0);
        assert_eq!(w.check(1_000, 10, 2), None, "progress");
        assert_eq!(w.check(3_000, 10, 2), None, "2 s without a reply");
        assert_eq!(w.check(6_000, 10, 2), Some(Stall::Stalled { for_ms: 5_000, outstanding: 2 }));
        assert_eq!(w.check(9_000, 10, 3), None, "reported already");
        assert_eq!(w.check(9_500, 11, 3), Some(Stall::Resumed { lasted_ms: 8_500 }));
        assert_eq!(w.check(20_000, 11, 0), None, "an idle server is not stalled");
        assert_eq!(w.check(30_000, 11, 0), None);
        assert_eq!(w.check(31_000, 11, 1), None, "a request just arrived");
        assert_eq!(w.check(36_000, 11, 1), Some(Stall::Stalled { for_ms: 6_000, outstanding: 1 }));
    }
}
