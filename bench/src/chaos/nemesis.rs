//! The fault schedule: from a seed, a sequence of faults, one at a time, each held for a
//! while, healed, and followed by a quiet spell. Every kind is used once per round (in an
//! order drawn from the seed), so even a short run exercises all of them. Targets that depend
//! on the run (the current leader) are resolved when the fault starts.

use std::time::{Duration, Instant};

use anyhow::Result;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::lab::Lab;

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// kill -9 of a random server, restarted after the hold.
    Kill,
    /// kill -9 of the leader, restarted after the hold.
    KillLeader,
    /// SIGSTOP of a random server for longer than the session timeout, then SIGCONT.
    Pause,
    /// SIGSTOP of the leader for longer than the session timeout, then SIGCONT.
    PauseLeader,
    /// The servers split in two random groups.
    PartitionHalves,
    /// The leader cut off from every other server.
    PartitionLeader,
    /// Two groups that cannot reach each other, and one server that reaches both.
    PartitionBridge,
    /// The leader's packets to the others dropped, theirs to it delivered (or the reverse).
    PartitionOneWay,
    /// A random server's filesystem frozen: its writes and fsyncs stall.
    FsyncStall,
    /// A random server's filesystem full.
    DiskFull,
    /// kill -9 of a random server, its data directory emptied, restarted at once.
    Wipe,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 11] = [
        FaultKind::Kill,
        FaultKind::KillLeader,
        FaultKind::Pause,
        FaultKind::PauseLeader,
        FaultKind::PartitionHalves,
        FaultKind::PartitionLeader,
        FaultKind::PartitionBridge,
        FaultKind::PartitionOneWay,
        FaultKind::FsyncStall,
        FaultKind::DiskFull,
        FaultKind::Wipe,
    ];

    /// The name used in reports.
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// One fault as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    /// The kind.
    pub kind: FaultKind,
    /// What exactly (targets).
    pub what: String,
    /// Start, ns since the run began.
    pub start: u64,
    /// Healed at, ns since the run began.
    pub healed: u64,
    /// From heal until the ensemble re-formed (every server serving, one leader), ms;
    /// `None` when it did not within the bound.
    pub reformed_ms: Option<u64>,
    /// Servers that exited by themselves during the fault (id: status).
    pub exits: Vec<String>,
}

/// Timing of the schedule.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Quiet time between faults.
    pub quiet: Duration,
    /// Shortest and longest hold of a fault.
    pub hold: (Duration, Duration),
    /// The client session timeout (pauses are held longer than this).
    pub session_timeout: Duration,
    /// Bound on re-forming after a heal.
    pub reform_within: Duration,
}

/// Runs faults until `until` (or, with `rounds`, until every kind has run that many times),
/// returning what was done. `now` gives the run's clock (ns).
#[allow(clippy::too_many_arguments)]
pub fn run(
    lab: &mut Lab,
    seed: u64,
    kinds: &[FaultKind],
    rounds: Option<usize>,
    timing: &Timing,
    until: Instant,
    now: impl Fn() -> u64,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<FaultRecord>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x006e_656d_6573_6973);
    let mut done = Vec::new();
    let n = lab.nodes.len();
    let mut round: Vec<FaultKind> = Vec::new();
    let mut rounds_started = 0;
    loop {
        std::thread::sleep(timing.quiet);
        if Instant::now() >= until || kinds.is_empty() {
            return Ok(done);
        }
        if round.is_empty() {
            if rounds.is_some_and(|r| rounds_started >= r) {
                return Ok(done);
            }
            rounds_started += 1;
            round = kinds.to_vec();
            round.shuffle(&mut rng);
        }
        let kind = round.pop().expect("refilled");
        let hold = rng.random_range(timing.hold.0..=timing.hold.1);
        let random = rng.random_range(0..n);
        let leader = lab.leader().unwrap_or(random);
        let start = now();
        let what = match kind {
            FaultKind::Kill => {
                lab.kill(random)?;
                format!("kill -9 server {}", random + 1)
            }
            FaultKind::KillLeader => {
                lab.kill(leader)?;
                format!("kill -9 leader {}", leader + 1)
            }
            FaultKind::Pause | FaultKind::PauseLeader => {
                let t = if kind == FaultKind::Pause { random } else { leader };
                lab.pause(t)?;
                format!("SIGSTOP server {}", t + 1)
            }
            FaultKind::PartitionHalves => {
                let mut ids: Vec<usize> = (0..n).collect();
                ids.shuffle(&mut rng);
                let (a, b) = ids.split_at(n / 2);
                lab.partition(&both_ways(a, b))?;
                format!("partition {} | {}", names(a), names(b))
            }
            FaultKind::PartitionLeader => {
                let rest: Vec<usize> = (0..n).filter(|&i| i != leader).collect();
                lab.partition(&both_ways(&[leader], &rest))?;
                format!("partition leader {} | {}", leader + 1, names(&rest))
            }
            FaultKind::PartitionBridge => {
                let mut ids: Vec<usize> = (0..n).collect();
                ids.shuffle(&mut rng);
                let bridge = ids.pop().expect("n >= 1");
                let (a, b) = ids.split_at(ids.len() / 2);
                lab.partition(&both_ways(a, b))?;
                format!("bridge {} between {} | {}", bridge + 1, names(a), names(b))
            }
            FaultKind::PartitionOneWay => {
                let rest: Vec<usize> = (0..n).filter(|&i| i != leader).collect();
                if rng.random_bool(0.5) {
                    let pairs: Vec<(usize, usize)> = rest.iter().map(|&r| (leader, r)).collect();
                    lab.partition(&pairs)?;
                    format!("leader {} cannot send to {}", leader + 1, names(&rest))
                } else {
                    let pairs: Vec<(usize, usize)> = rest.iter().map(|&r| (r, leader)).collect();
                    lab.partition(&pairs)?;
                    format!("{} cannot send to leader {}", names(&rest), leader + 1)
                }
            }
            FaultKind::FsyncStall => {
                lab.freeze(random)?;
                format!("filesystem of server {} frozen", random + 1)
            }
            FaultKind::DiskFull => {
                lab.fill(random)?;
                format!("filesystem of server {} full", random + 1)
            }
            FaultKind::Wipe => {
                lab.wipe(random)?;
                format!("server {} restarted with an empty data directory", random + 1)
            }
        };
        log(&format!("fault: {what} for {hold:?}"));
        let hold = match kind {
            FaultKind::Pause | FaultKind::PauseLeader => {
                hold.max(timing.session_timeout + Duration::from_secs(2))
            }
            _ => hold,
        };
        std::thread::sleep(hold);
        lab.reap();
        let modes = lab.modes();
        log(&format!("modes before healing: {}", show_modes(&modes)));
        let exits: Vec<String> = lab
            .nodes
            .iter()
            .filter_map(|nd| nd.exited.as_ref().map(|s| format!("{}: {s}", nd.id)))
            .collect();
        lab.heal_all()?;
        let healed = now();
        let reformed = lab.wait_formed(timing.reform_within);
        let reformed_ms = reformed.as_ref().ok().map(|d| d.as_millis() as u64);
        match &reformed {
            Ok(d) => {
                log(&format!("healed; re-formed in {} ms{}", d.as_millis(), exits_note(&exits)))
            }
            Err(e) => log(&format!("healed; {e}{}", exits_note(&exits))),
        }
        done.push(FaultRecord { kind, what, start, healed, reformed_ms, exits });
        if reformed.is_err() {
            return Ok(done);
        }
    }
}

fn show_modes(modes: &[String]) -> String {
    modes
        .iter()
        .enumerate()
        .map(|(i, m)| format!("{}={}", i + 1, if m.is_empty() { "-" } else { m }))
        .collect::<Vec<_>>()
        .join(" ")
}

fn exits_note(exits: &[String]) -> String {
    if exits.is_empty() {
        String::new()
    } else {
        format!(" (exited during the fault: {})", exits.join(", "))
    }
}

fn both_ways(a: &[usize], b: &[usize]) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    for &x in a {
        for &y in b {
            v.push((x, y));
            v.push((y, x));
        }
    }
    v
}

fn names(ids: &[usize]) -> String {
    let mut v: Vec<usize> = ids.iter().map(|i| i + 1).collect();
    v.sort_unstable();
    v.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}
