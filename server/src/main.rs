//! The `corral` binary: a ZooKeeper-compatible server, and offline tools.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use corral_server::core::Settings;
use corral_server::db::DbOptions;
use corral_server::server::{RunningServer, ServerOptions};
use corral_server::tree::PrepareConfig;

#[derive(Parser)]
#[command(name = "corral", version, about = "A ZooKeeper-compatible coordination service")]
struct Cli {
    /// A ZooKeeper config file (zoo.cfg). Without one, a standalone server runs on
    /// 127.0.0.1:2181 with its data in ./corral-data.
    config: Option<PathBuf>,
    /// Same as the positional argument.
    #[arg(long = "config", conflicts_with = "config")]
    config_flag: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    if let Some(cmd) = cli.cmd {
        match cmd {}
    }
    let _cfg = cli.config.or(cli.config_flag);
    let settings = Settings {
        tick_ms: 2000,
        min_session_timeout_ms: 4000,
        max_session_timeout_ms: 40000,
        max_buffer: 0xfffff,
        prepare: PrepareConfig::default(),
        skip_acl: false,
        super_digest: None,
        server_id: 1,
        container_check_ms: 60_000,
        global_outstanding_limit: 1000,
        max_client_cnxns: 60,
    };
    let opts = ServerOptions {
        bind: "127.0.0.1:2181".parse()?,
        db: DbOptions::new(std::path::Path::new("./corral-data")),
        settings,
    };
    let server = RunningServer::start(opts)?;
    server.wait_for_signal();
    tracing::info!("shutting down");
    server.shutdown()
}
