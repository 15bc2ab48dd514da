//! `corral-bench`: benchmarks that produce the figures in docs/.
//!
//! * `log`: the transaction log's flush strategies head to head (docs/fsync-strategies.md).
//! * `wake-ceiling`: how fast this machine can wake blocked threads in commit groups.
//! * `load`: a pipelined ZooKeeper-protocol load generator (docs/performance.md).
//! * `compare`: corral and Apache ZooKeeper side by side, ratio table (docs/performance.md).
//! * `ensemble`: three corral servers and three ZooKeeper servers side by side, with failover.
//! * `chaos`: an ensemble under faults, its clients' histories checked (docs/reliability.md).

mod chaos;
mod compare;
mod ensemble;
mod load;
mod log_bench;
mod scenarios;
mod servers;
mod tree_bench;
mod wake_bench;
mod zk;

use clap::{Parser, Subcommand};

/// The server's allocator (server/src/main.rs), so that `tree` and `snapshot` measure memory
/// per znode as `corral` will use it: allocator rounding is a large share of a small node.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "corral-bench", about = "Benchmarks for Corral")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Flush strategies × writers × record sizes, with a bare write+fdatasync baseline.
    Log(log_bench::LogArgs),
    /// The machine's ceiling for waking blocked threads in commit groups (no I/O).
    WakeCeiling(wake_bench::WakeArgs),
    /// A pipelined ZooKeeper-protocol load: N sessions × K outstanding requests.
    Load(load::LoadArgs),
    /// The DataTree at scale: apply throughput and memory per znode.
    Tree(tree_bench::TreeArgs),
    /// Snapshots at scale: write/load time, apply p99 during a snapshot, recovery time.
    Snapshot(tree_bench::TreeArgs),
    /// corral and Apache ZooKeeper 3.8 side by side on this machine: a ratio table.
    Compare(compare::CompareArgs),
    /// Three corral servers and three Apache ZooKeeper 3.8 servers side by side: writes,
    /// reads spread over the servers, and the failover time after kill -9 of the leader.
    Ensemble(ensemble::EnsembleArgs),
    /// An ensemble (corral, ZooKeeper or mixed) under kernel-made faults; the clients'
    /// histories checked for linearizability, lost writes and convergence.
    Chaos(chaos::ChaosArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    match Cli::parse().cmd {
        Cmd::Log(a) => log_bench::run(a),
        Cmd::WakeCeiling(a) => wake_bench::run(a),
        Cmd::Load(a) => load::run(a),
        Cmd::Tree(a) => tree_bench::run_tree(a),
        Cmd::Snapshot(a) => tree_bench::run_snapshot(a),
        Cmd::Compare(a) => compare::run(a),
        Cmd::Ensemble(a) => ensemble::run(a),
        Cmd::Chaos(a) => chaos::run(a),
    }
}
