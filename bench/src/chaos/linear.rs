//! Linearizability of one register's history: the Wing & Gong search with Lowe's memoisation
//! (the algorithm Knossos' `wgl` and Porcupine implement), written for the register
//! `corral-bench chaos` drives: a znode's data and version, read through `sync` + getData,
//! written by setData (any version) and compare-and-set by setData with a version.
//!
//! An operation whose outcome the client never learned (a timeout, a lost connection) has no
//! completion: it may take effect at any point after its invocation, or never (linearizing it
//! after everything else is the same as never). A definite failure (BADVERSION) is an operation
//! that took effect as a failed compare-and-set.

use std::collections::HashSet;

/// A register's state: the znode's data (a number) and its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Reg {
    /// The value written last (0 at creation).
    pub value: u64,
    /// The znode's data version.
    pub version: i32,
}

/// What a client asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Call {
    /// `sync` then getData.
    Read,
    /// setData with version -1.
    Write(u64),
    /// setData with an expected version.
    Cas {
        /// The version the client expected.
        expect: i32,
        /// The value to write.
        value: u64,
    },
}

/// What the client was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Ret {
    /// A read's value and version.
    Read(Reg),
    /// A write or compare-and-set succeeded; the znode's new version.
    Written(i32),
    /// A compare-and-set failed with BADVERSION.
    CasFailed,
    /// No answer (timeout, connection lost): it may or may not have taken effect.
    Unknown,
}

/// One operation of a history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Op {
    /// The client (worker) that issued it.
    pub process: u32,
    /// The request.
    pub call: Call,
    /// The outcome.
    pub ret: Ret,
    /// Invocation time (ns since the run started).
    pub invoke: u64,
    /// Completion time; `None` when the outcome is unknown.
    pub complete: Option<u64>,
}

/// The register model: the state after `call` returned `ret` in state `s`, or `None` when
/// that outcome is impossible in `s`.
pub fn step(s: Reg, call: Call, ret: Ret) -> Option<Reg> {
    match (call, ret) {
        (Call::Read, Ret::Read(r)) => (r == s).then_some(s),
        (Call::Read, _) => Some(s),
        (Call::Write(v), Ret::Written(ver)) => {
            (ver == s.version + 1).then_some(Reg { value: v, version: ver })
        }
        (Call::Write(v), _) => Some(Reg { value: v, version: s.version + 1 }),
        (Call::Cas { expect, value }, Ret::Written(ver)) => {
            (s.version == expect && ver == expect + 1).then_some(Reg { value, version: ver })
        }
        (Call::Cas { expect, .. }, Ret::CasFailed) => (s.version != expect).then_some(s),
        (Call::Cas { expect, value }, _) => {
            Some(if s.version == expect { Reg { value, version: expect + 1 } } else { s })
        }
    }
}

/// The checker's verdict on one history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A linearization exists.
    Linearizable,
    /// None exists. `stuck` is the operation (index into the history) whose completion the
    /// search could not pass in its deepest attempt; `prefix` the operations it had
    /// linearized there, in order.
    NotLinearizable {
        /// The operation that could not be linearized.
        stuck: usize,
        /// The longest linearized prefix found, in linearization order.
        prefix: Vec<usize>,
    },
    /// The search gave up after this many steps (neither verdict).
    GaveUp(u64),
}

#[derive(Clone, Copy)]
struct Entry {
    op: usize,
    is_call: bool,
    /// For a call entry, the index of its return entry.
    ret: usize,
    prev: usize,
    next: usize,
}

const NONE: usize = usize::MAX;

/// Checks `ops` against a register that starts as `init`, searching at most `max_steps`.
pub fn check(init: Reg, ops: &[Op], max_steps: u64) -> Verdict {
    // Entries: 0 is the list head; then one call and one return entry per operation, in time
    // order (a call before a return at the same instant: such operations overlap).
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.invoke, true, i));
        events.push((op.complete.unwrap_or(u64::MAX), false, i));
    }
    events.sort_by_key(|&(t, is_call, i)| (t, !is_call, i));
    let mut e: Vec<Entry> = Vec::with_capacity(events.len() + 1);
    e.push(Entry { op: NONE, is_call: false, ret: NONE, prev: NONE, next: NONE });
    let mut ret_of = vec![NONE; ops.len()];
    for (t_idx, &(_, is_call, op)) in events.iter().enumerate() {
        let idx = t_idx + 1;
        e.push(Entry { op, is_call, ret: NONE, prev: idx - 1, next: NONE });
        e[idx - 1].next = idx;
        if !is_call {
            ret_of[op] = idx;
        }
    }
    for entry in e.iter_mut().skip(1) {
        if entry.is_call {
            entry.ret = ret_of[entry.op];
        }
    }

    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, Reg)> = HashSet::new();
    // The call entries lifted out of the list, with the state before each.
    let mut stack: Vec<(usize, Reg)> = Vec::new();
    let mut state = init;
    let mut cur = e[0].next;
    let mut steps = 0u64;
    let mut deepest: (usize, Vec<usize>) = (0, Vec::new());
    let mut stuck = NONE;

    fn lift(e: &mut [Entry], call: usize) {
        let (p, n) = (e[call].prev, e[call].next);
        e[p].next = n;
        if n != NONE {
            e[n].prev = p;
        }
        let r = e[call].ret;
        let (p, n) = (e[r].prev, e[r].next);
        e[p].next = n;
        if n != NONE {
            e[n].prev = p;
        }
    }
    fn unlift(e: &mut [Entry], call: usize) {
        let r = e[call].ret;
        let (p, n) = (e[r].prev, e[r].next);
        e[p].next = r;
        if n != NONE {
            e[n].prev = r;
        }
        let (p, n) = (e[call].prev, e[call].next);
        e[p].next = call;
        if n != NONE {
            e[n].prev = call;
        }
    }

    while e[0].next != NONE {
        steps += 1;
        if steps > max_steps {
            return Verdict::GaveUp(steps);
        }
        if cur == NONE {
            // Unreachable: the list ends with return entries, which are handled below.
            break;
        }
        let entry = e[cur];
        if entry.is_call {
            let op = &ops[entry.op];
            if let Some(next) = step(state, op.call, op.ret) {
                let mut lin = linearized.clone();
                lin[entry.op / 64] |= 1 << (entry.op % 64);
                if cache.insert((lin.clone(), next)) {
                    stack.push((cur, state));
                    state = next;
                    linearized = lin;
                    lift(&mut e, cur);
                    cur = e[0].next;
                    continue;
                }
            }
            cur = entry.next;
        } else {
            if stack.len() >= deepest.0 {
                deepest = (stack.len(), stack.iter().map(|&(c, _)| e[c].op).collect());
                stuck = entry.op;
            }
            let Some((call, before)) = stack.pop() else {
                return Verdict::NotLinearizable { stuck, prefix: deepest.1 };
            };
            state = before;
            let op = e[call].op;
            linearized[op / 64] &= !(1 << (op % 64));
            unlift(&mut e, call);
            cur = e[call].next;
        }
    }
    Verdict::Linearizable
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZERO: Reg = Reg { value: 0, version: 0 };

    fn op(process: u32, call: Call, ret: Ret, invoke: u64, complete: Option<u64>) -> Op {
        Op { process, call, ret, invoke, complete }
    }
    fn read(p: u32, value: u64, version: i32, a: u64, b: u64) -> Op {
        op(p, Call::Read, Ret::Read(Reg { value, version }), a, Some(b))
    }
    fn write(p: u32, v: u64, ver: i32, a: u64, b: u64) -> Op {
        op(p, Call::Write(v), Ret::Written(ver), a, Some(b))
    }
    fn lin(ops: &[Op]) -> bool {
        match check(ZERO, ops, 1_000_000) {
            Verdict::Linearizable => true,
            Verdict::NotLinearizable { .. } => false,
            Verdict::GaveUp(n) => panic!("gave up after {n} steps"),
        }
    }

    #[test]
    fn sequential_histories() {
        assert!(lin(&[]));
        assert!(lin(&[write(0, 5, 1, 0, 1), read(1, 5, 1, 2, 3)]));
        // A stale read after the write completed.
        assert!(!lin(&[write(0, 5, 1, 0, 1), read(1, 0, 0, 2, 3)]));
        // A read of a value nobody wrote.
        assert!(!lin(&[read(1, 7, 1, 0, 1)]));
        // A write acknowledged with a version that skips one.
        assert!(!lin(&[write(0, 5, 2, 0, 1)]));
    }

    #[test]
    fn concurrent_reads_see_either_side() {
        assert!(lin(&[write(0, 5, 1, 0, 10), read(1, 0, 0, 1, 2)]));
        assert!(lin(&[write(0, 5, 1, 0, 10), read(1, 5, 1, 1, 2)]));
        // Once one read saw the new value, a later read may not see the old one.
        assert!(!lin(&[write(0, 5, 1, 0, 10), read(1, 5, 1, 1, 2), read(2, 0, 0, 3, 4)]));
        // ... but two overlapping reads may disagree.
        assert!(lin(&[write(0, 5, 1, 0, 10), read(1, 5, 1, 1, 4), read(2, 0, 0, 2, 3)]));
    }

    #[test]
    fn writes_are_seen_in_one_order() {
        // Two concurrent writes; readers must agree on their order.
        let w = [write(0, 1, 1, 0, 10), write(1, 2, 2, 0, 10)];
        let mut h = w.to_vec();
        h.push(read(2, 1, 1, 1, 2));
        h.push(read(2, 2, 2, 3, 4));
        assert!(lin(&h));
        let mut h = w.to_vec();
        h.push(read(2, 2, 2, 1, 2));
        h.push(read(2, 1, 1, 3, 4));
        assert!(!lin(&h), "value 2 at version 2 then value 1 at version 1");
        // The acknowledged versions fix the order too.
        let h = [write(0, 1, 2, 0, 10), write(1, 2, 1, 0, 10), read(2, 1, 2, 11, 12)];
        assert!(lin(&h));
        let h = [write(0, 1, 2, 0, 10), write(1, 2, 1, 0, 10), read(2, 2, 1, 11, 12)];
        assert!(!lin(&h), "the write acknowledged with version 2 was lost");
    }

    #[test]
    fn compare_and_set() {
        let cas = |p, expect, value, ret, a, b| op(p, Call::Cas { expect, value }, ret, a, Some(b));
        assert!(lin(&[cas(0, 0, 9, Ret::Written(1), 0, 1), read(1, 9, 1, 2, 3)]));
        // Success against a version the register did not have.
        assert!(!lin(&[cas(0, 3, 9, Ret::Written(4), 0, 1)]));
        // Failure when the version matched and nothing else wrote.
        assert!(!lin(&[cas(0, 0, 9, Ret::CasFailed, 0, 1)]));
        assert!(lin(&[write(1, 4, 1, 0, 1), cas(0, 0, 9, Ret::CasFailed, 2, 3)]));
        // Two successful CAS from the same version: one of them must have failed.
        assert!(!lin(&[cas(0, 0, 1, Ret::Written(1), 0, 5), cas(1, 0, 2, Ret::Written(1), 0, 5)]));
    }

    #[test]
    fn unknown_outcomes() {
        let unknown_write = op(0, Call::Write(5), Ret::Unknown, 0, None);
        // It may have happened ...
        assert!(lin(&[unknown_write.clone(), read(1, 5, 1, 10, 11)]));
        // ... or not ...
        assert!(lin(&[unknown_write.clone(), read(1, 0, 0, 10, 11)]));
        // ... but not both, in that order.
        assert!(!lin(&[unknown_write.clone(), read(1, 5, 1, 10, 11), read(1, 0, 0, 12, 13)]));
        // It cannot have happened before it was invoked.
        let late = op(0, Call::Write(5), Ret::Unknown, 20, None);
        assert!(!lin(&[late, read(1, 5, 1, 10, 11)]));
        // An unknown CAS takes effect only if the version matched.
        let ucas = op(0, Call::Cas { expect: 3, value: 5 }, Ret::Unknown, 0, None);
        assert!(!lin(&[ucas, read(1, 5, 4, 10, 11)]));
    }

    #[test]
    fn a_lost_acknowledged_write_is_found() {
        // The shape a lost write leaves: acknowledged, then a final read of the older state.
        let h = [
            write(0, 1, 1, 0, 1),
            write(1, 2, 2, 2, 3),
            op(2, Call::Write(3), Ret::Unknown, 2, None),
            read(3, 1, 1, 100, 101),
        ];
        match check(ZERO, &h, 1_000_000) {
            Verdict::NotLinearizable { stuck, prefix } => {
                assert_eq!(stuck, 3, "the read is the operation that cannot be placed");
                assert!(prefix.contains(&0));
            }
            v => panic!("expected a violation, got {v:?}"),
        }
    }

    #[test]
    fn many_concurrent_operations_stay_tractable() {
        // 2,000 operations by 10 clients, a tenth with unknown outcomes, all linearizable by
        // construction (each takes effect at its midpoint).
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut ops = Vec::new();
        let mut s = ZERO;
        let mut t = 0u64;
        for i in 0..2000u64 {
            let p = (i % 10) as u32;
            t += 10;
            let (a, b) = (t - rng.random_range(0..40).min(t), t + rng.random_range(1..40));
            let (call, ret) = match rng.random_range(0..3) {
                0 => (Call::Read, Ret::Read(s)),
                1 => {
                    s = Reg { value: i + 1, version: s.version + 1 };
                    (Call::Write(i + 1), Ret::Written(s.version))
                }
                _ => {
                    let expect = s.version - rng.random_range(0..2);
                    if expect == s.version {
                        s = Reg { value: i + 1, version: s.version + 1 };
                        (Call::Cas { expect, value: i + 1 }, Ret::Written(s.version))
                    } else {
                        (Call::Cas { expect, value: i + 1 }, Ret::CasFailed)
                    }
                }
            };
            let unknown = call != Call::Read && rng.random_range(0..10) == 0;
            if unknown {
                ops.push(op(p, call, Ret::Unknown, a, None));
            } else {
                ops.push(op(p, call, ret, a, Some(b)));
            }
        }
        assert_eq!(check(ZERO, &ops, 50_000_000), Verdict::Linearizable);
    }
}
