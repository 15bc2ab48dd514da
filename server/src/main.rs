//! The `corral` binary: a ZooKeeper-compatible server, and offline tools.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use corral_server::audit::{AuditEvent, AuditResult};
use corral_server::config::Config;
use corral_server::net::admin_http::AdminHttpOptions;
use corral_server::net::metrics_http::MetricsHttpOptions;
use corral_server::server::{RunningServer, ServerOptions};

/// mimalloc: the request path allocates and frees small buffers on different threads (a reply
/// is built on the pipeline thread and freed by a connection's writer), where glibc's malloc
/// spends a measurable share of the server's CPU (docs/performance.md). Version 2 and without
/// transparent huge pages: `corral-bench tree` (1M znodes of 100 B) measured 285-287 bytes of
/// RSS per znode with mimalloc 3 and 251 with mimalloc 2, for 249 bytes allocated (counted by
/// a wrapping allocator; glibc gave 267); huge pages added 20 MB to an idle server's RSS.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Returns the calling thread's freed pages to the system now (see
/// `corral_server::memory`).
fn trim_memory() {
    // SAFETY: mi_collect only walks the calling thread's heap and the allocator's own state;
    // it takes no pointers from us.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

#[derive(Parser)]
#[command(name = "corral", version, about = "A ZooKeeper-compatible coordination service")]
struct Cli {
    /// A ZooKeeper config file (zoo.cfg). Without one, a standalone server runs on
    /// 127.0.0.1:2181 with its data in ./corral-data.
    config: Option<PathBuf>,
    /// Same as the positional argument.
    #[arg(long = "config")]
    config_flag: Option<PathBuf>,
    /// A setting that overrides the file (`name=value`; repeatable): a Java system property
    /// as ZooKeeper takes them (`zookeeper.K=V` sets config key K, `jute.maxbuffer` and
    /// `readonlymode.enabled` their keys), or any zoo.cfg key, with or without `zookeeper.`
    /// (`-D clientPort=2182`, `-D dataDir=/srv/zk`).
    #[arg(long = "system-property", short = 'D', value_name = "NAME=VALUE")]
    system_properties: Vec<String>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Prints a log or snapshot file: headers, records and checksum verdicts (Corral's files
    /// and Apache ZooKeeper's).
    Inspect {
        #[command(subcommand)]
        what: Inspect,
    },
    /// Converts an Apache ZooKeeper data directory (its newest valid snapshot and the logs
    /// after it) into a Corral data directory.
    ImportZookeeper {
        /// ZooKeeper's dataDir (or its version-2 directory).
        #[arg(long)]
        from: PathBuf,
        /// ZooKeeper's dataLogDir, when it differs from dataDir.
        #[arg(long)]
        from_log: Option<PathBuf>,
        /// The Corral dataDir to create (must be new or empty).
        #[arg(long)]
        to: PathBuf,
    },
    /// Asks a server whether it runs: prints `imok` and exits 0, or says why not and exits 1.
    Ruok(FourArgs),
    /// A server's statistics and clients (the `stat` four-letter word).
    Stat(FourArgs),
    /// A server's statistics (`srvr`).
    Srvr(FourArgs),
    /// A server's monitoring keys (`mntr`), one `zk_<key>\t<value>` per line.
    Mntr(FourArgs),
    /// A server's configuration (`conf`).
    Conf(FourArgs),
    /// A server's client connections (`cons`).
    Cons(FourArgs),
    /// A server's environment (`envi`).
    Envi(FourArgs),
    /// Whether a server serves read-only (`isro`: `ro` or `rw`).
    Isro(FourArgs),
    /// A server's watch summary (`wchs`).
    Wchs(FourArgs),
}

/// Where a four-letter word goes.
#[derive(clap::Args)]
struct FourArgs {
    /// `host[:port]` (default 127.0.0.1:2181; the port defaults to 2181).
    #[arg(default_value = "127.0.0.1:2181")]
    server: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
}

/// Sends `word` to a server's client port and returns its answer.
fn four_letter_word(word: &str, args: &FourArgs) -> Result<String> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let target = if args
        .server
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && !h.ends_with(':') && p.parse::<u16>().is_ok())
    {
        args.server.clone()
    } else {
        format!("{}:2181", args.server)
    };
    let timeout = std::time::Duration::from_secs_f64(args.timeout.clamp(0.1, 600.0));
    let addr = target
        .to_socket_addrs()
        .with_context(|| format!("resolving {target}"))?
        .next()
        .with_context(|| format!("no address for {target}"))?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(word.as_bytes())?;
    let mut answer = Vec::new();
    // At most 64 MiB: a dump of a large server is long, but not endless.
    s.take(64 << 20)
        .read_to_end(&mut answer)
        .with_context(|| format!("reading {word} from {addr}"))?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// Prints a four-letter word's answer; an error when the server refused or said nothing.
fn run_four(word: &str, args: &FourArgs) -> Result<()> {
    let answer = four_letter_word(word, args)?;
    print!("{answer}");
    if !answer.ends_with('\n') && !answer.is_empty() {
        println!();
    }
    if answer.is_empty() {
        anyhow::bail!("{} answered nothing to {word}", args.server);
    }
    if answer.contains("is not executed because it is not in the whitelist") {
        anyhow::bail!("{word} is not in the server's 4lw.commands.whitelist");
    }
    if word == "ruok" && answer != "imok" {
        anyhow::bail!("{} is not ok", args.server);
    }
    Ok(())
}

#[derive(Subcommand)]
enum Inspect {
    /// A log segment (`log.<hex>`) or a ZooKeeper txn log.
    Log {
        /// The file.
        file: PathBuf,
    },
    /// A snapshot (`snapshot.<hex>`), Corral's or ZooKeeper's.
    Snapshot {
        /// The file.
        file: PathBuf,
        /// List every znode with its Stat.
        #[arg(long)]
        nodes: bool,
    },
}

fn main() -> Result<()> {
    // Colours only on a terminal (and never with NO_COLOR set): a log file or journal gets
    // plain text.
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_ansi(colour)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    corral_server::memory::set_trim(trim_memory);
    let cli = Cli::parse();
    if let Some(cmd) = cli.cmd {
        match cmd {
            Cmd::Inspect { what: Inspect::Log { file } } => {
                print!("{}", corral_server::tools::inspect_log(&file)?)
            }
            Cmd::Inspect { what: Inspect::Snapshot { file, nodes } } => {
                print!("{}", corral_server::tools::inspect_snapshot(&file, nodes)?)
            }
            Cmd::Ruok(a) => run_four("ruok", &a)?,
            Cmd::Stat(a) => run_four("stat", &a)?,
            Cmd::Srvr(a) => run_four("srvr", &a)?,
            Cmd::Mntr(a) => run_four("mntr", &a)?,
            Cmd::Conf(a) => run_four("conf", &a)?,
            Cmd::Cons(a) => run_four("cons", &a)?,
            Cmd::Envi(a) => run_four("envi", &a)?,
            Cmd::Isro(a) => run_four("isro", &a)?,
            Cmd::Wchs(a) => run_four("wchs", &a)?,
            Cmd::ImportZookeeper { from, from_log, to } => {
                let s =
                    corral_server::tools::import_zookeeper(&from, from_log.as_deref(), &to, true)?;
                println!(
                    "imported {} znodes and {} sessions up to zxid 0x{:x} ({} txns replayed after {}); acceptedEpoch {}, currentEpoch {}",
                    s.znodes,
                    s.sessions,
                    s.last_zxid,
                    s.replayed,
                    s.snapshot.map(|p| p.display().to_string()).unwrap_or_else(|| "no snapshot".into()),
                    s.accepted_epoch,
                    s.current_epoch
                );
            }
        }
        return Ok(());
    }
    let config_path = cli.config.or(cli.config_flag);
    // -D for a key ZooKeeper reads only from zoo.cfg (clientPort, dataDir, server.N, ...)
    // replaces the file's value; the others are system properties, applied after.
    let file_overrides: Vec<(String, String)> = cli
        .system_properties
        .iter()
        .filter_map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p.as_str(), ""));
            corral_server::config::file_key(name).map(|k| (k.to_string(), value.to_string()))
        })
        .collect();
    let mut config = Config::load_with_overrides(config_path.as_deref(), &file_overrides)
        .with_context(|| match &config_path {
            Some(path) => format!("reading {}", path.display()),
            None => "the built-in configuration".to_string(),
        })?;
    let mut container_check_ms = None;
    for p in &cli.system_properties {
        let (name, value) = p.split_once('=').unwrap_or((p.as_str(), ""));
        if corral_server::config::file_key(name).is_some() {
            continue;
        }
        // The container reaper's interval is a bare system property in ZooKeeper.
        if name == "znode.container.checkIntervalMs" {
            container_check_ms =
                Some(value.trim().parse::<u64>().with_context(|| format!("{name}={value}"))?);
            continue;
        }
        config.apply_system_property(&corral_server::config::property_name(name), value)?;
    }
    // The JDK's name for the Kerberos configuration file; the GSS-API library reads
    // KRB5_CONFIG. Set here, while the process has one thread.
    if let Some(path) = config.system_properties.get("java.security.krb5.conf") {
        std::env::set_var("KRB5_CONFIG", path.trim());
    }
    let mut opts = ServerOptions::from_config(&config)?;
    if config.reconfig_enabled && config.is_distributed() {
        opts.settings.config_file = config_path;
    }
    if let Some(ms) = container_check_ms {
        opts.settings.container_check_ms = ms.max(1);
    }
    // As a ZooKeeper ensemble member does: an AdminServer that cannot start is a warning.
    let admin = AdminHttpOptions::from_config(&config).unwrap_or_else(|e| {
        tracing::warn!("Problem starting AdminServer: {e:#}");
        None
    });
    let metrics = MetricsHttpOptions::from_config(&config)?;
    // ZooKeeper stops when its metrics provider cannot start; so does Corral — before it joins
    // an ensemble (a service manager restarting it would otherwise churn elections).
    let metrics = match metrics {
        Some(m) => Some((corral_server::net::metrics_http::bind(&m)?, m)),
        None => None,
    };
    let audit = opts.settings.audit.clone();
    let audit_user = corral_server::audit::process_user();
    let server = match RunningServer::start(opts) {
        Ok(s) => s,
        Err(e) => {
            if let Some(a) = &audit {
                a.log(AuditEvent::server(&audit_user, "serverStart", AuditResult::Failure));
            }
            return Err(e);
        }
    };
    if let Some(a) = &audit {
        a.log(AuditEvent::server(&audit_user, "serverStart", AuditResult::Success));
    }
    if let Some(admin) = admin {
        // As a ZooKeeper ensemble member does (a standalone ZooKeeper exits instead): the
        // server runs on without its AdminServer, and says why.
        if let Err(e) = server.start_admin_server(admin) {
            tracing::warn!("{e:#}");
        }
    }
    if let Some((listener, metrics)) = metrics {
        server.start_metrics_server_on(listener, metrics)?;
    }
    if let Some(fatal) = server.wait_for_signal() {
        // Only storage failure stops the server on its own: it says why and exits 70.
        let _ = server.shutdown();
        eprintln!("corral: fatal: {fatal}");
        if let Some(a) = audit {
            a.log(AuditEvent::server(&audit_user, "serverStop", AuditResult::Invoked));
            // The last lines are written before the process exits (exit runs no destructors).
            drop(a);
        }
        std::process::exit(70);
    }
    if let Some(a) = &audit {
        a.log(AuditEvent::server(&audit_user, "serverStop", AuditResult::Invoked));
    }
    tracing::info!("shutting down");
    server.shutdown()
}
