//! Starting and stopping a server: the database, the pipeline thread, the client listener on
//! a tokio runtime of its own, and for an ensemble member the election and quorum transports
//! (`net::quorum`).

use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{Context, Result};

use std::net::ToSocketAddrs;

use corral_engine::log::FlushStrategy;

use crate::config::Config;
use crate::db::{Database, DbOptions};
use crate::net::quorum::{MemberAddr, QuorumNet, QuorumNetConfig};
use crate::net::Listen;
use crate::pipeline::{Fatal, Input, Pipeline, Settings, Shared, Stopped};
use crate::tree::TreeOptions;
use crate::zab::{PeerConfig, Sid};

/// How a server takes part in an ensemble (`server.N` lines).
#[derive(Debug, Clone)]
pub struct EnsembleOptions {
    /// This server (`myid`).
    pub me: Sid,
    /// Voters, observers, and the protocol's limits in ticks.
    pub peer: PeerConfig,
    /// Where every member listens, and the transports' limits.
    pub net: QuorumNetConfig,
}

impl EnsembleOptions {
    /// The ensemble `config` describes, from this server's point of view.
    pub fn from_config(config: &Config) -> Result<EnsembleOptions> {
        let me = config.my_id.context("an ensemble member needs a myid file in its dataDir")?;
        let voters: Vec<Sid> = config.participants().map(|s| s.id).collect();
        let observers: Vec<Sid> = config.observers().map(|s| s.id).collect();
        let mut peer = PeerConfig::new(voters, observers);
        peer.tick_ms = config.tick_time_ms.max(1);
        peer.init_limit = config.init_limit.unwrap_or(10).max(1);
        peer.sync_limit = config.sync_limit.unwrap_or(5).max(1);
        peer.commit_log_count = (config.commit_log_count as usize).max(1);
        peer.config_text = bytes::Bytes::from(config.quorum_verifier_text());
        peer.config_version = config.config_version;
        peer.reconfig_enabled = config.reconfig_enabled;
        peer.unsafe_commit_without_quorum = config.unsafe_commit_without_quorum;
        if config.unsafe_commit_without_quorum {
            tracing::error!(
                "corral.test.unsafeCommitWithoutQuorum=true: this server commits without a \
                 quorum and WILL LOSE acknowledged writes (a test-only key for fault tests)"
            );
        }
        // FastLeaderElection's clock is milliseconds whatever tickTime is: finalizeWait
        // 200 ms, notifications re-sent after 200 ms of silence, the interval doubling up to
        // maxNotificationInterval (60 s).
        peer.election_tick_ms = 100;
        peer.finalize_wait = 2;
        peer.notification_timeout = 2;
        peer.notification_timeout_max = 600;
        let mut members = std::collections::BTreeMap::new();
        for s in config.servers.values() {
            let a = &s.addresses[0];
            let resolve = |port: u16| -> Result<SocketAddr> {
                let host = a.host.trim_start_matches('[').trim_end_matches(']');
                (host, port)
                    .to_socket_addrs()
                    .with_context(|| format!("resolving server.{} {}:{port}", s.id, a.host))?
                    .next()
                    .with_context(|| format!("no address for server.{} {}", s.id, a.host))
            };
            members.insert(
                s.id,
                MemberAddr {
                    quorum: resolve(a.quorum_port)?,
                    election: resolve(a.election_port)?,
                    host: a.host.trim_start_matches('[').trim_end_matches(']').to_string(),
                },
            );
        }
        let limits = crate::limits::Limits::from_config(config);
        let net = QuorumNetConfig {
            me,
            members,
            connect_timeout: std::time::Duration::from_millis(u64::from(
                config.cnx_timeout_ms.max(1),
            )),
            packet_bytes_max: limits.txn_bytes_max + 4096,
            snapshot_bytes_max: peer.snapshot_bytes_max,
            // Set when the database is open.
            snapshot_spool: None,
            tree: crate::tree::TreeOptions::default(),
            // A sync sends the history window and the outstanding proposals at once.
            send_queue_max: 4 * (peer.outstanding_max + peer.commit_log_count) + 64,
            // Seconds of writes behind a multi-gigabyte SNAP payload (4,000 setData of 1 KiB a
            // second for the ~10 s of a 2 GB payload: ~90 MB).
            send_backlog_bytes_max: 256 << 20,
            listen_on_all_ips: config.quorum_listen_on_all_ips,
            election_port_bind_retry: config.election_port_bind_retry,
            tls: crate::net::quorum_tls::QuorumTls::from_config(config)
                .context("the TLS settings between servers (ssl.quorum.*)")?,
            sasl: crate::net::quorum_sasl::QuorumSasl::from_config(config).map_err(|e| {
                anyhow::anyhow!("the SASL settings between servers (quorum.auth.*): {e}")
            })?,
        };
        Ok(EnsembleOptions { me, peer, net })
    }
}

/// Everything a standalone server needs.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Client address to listen on.
    pub bind: SocketAddr,
    /// Storage.
    pub db: DbOptions,
    /// Pipeline settings.
    pub settings: Settings,
    /// The configuration these came from (reported by `conf`).
    pub config: Config,
    /// The ensemble this server is a member of (`None`: standalone).
    pub ensemble: Option<EnsembleOptions>,
    /// TLS for clients (`secureClientPort`, `client.portUnification`), if configured.
    pub client_tls: Option<Arc<crate::tls::ClientTls>>,
}

impl ServerOptions {
    /// Options for a standalone server running `config`.
    pub fn from_config(config: &Config) -> Result<ServerOptions> {
        let port = config.client_address.as_ref().map(|a| a.port).or(config.client_port);
        // As ZooKeeper: a secureClientPort alone is enough (a TLS-only server).
        if port.is_none() && config.secure_client_port.is_none() {
            anyhow::bail!("no clientPort (or secureClientPort) in the configuration");
        }
        let port = port.unwrap_or(0);
        let host = config
            .client_address
            .as_ref()
            .map(|a| a.host.clone())
            .or_else(|| config.client_port_address.clone())
            .unwrap_or_else(|| "0.0.0.0".into());
        let bind = format!("{}:{port}", host.trim_start_matches('[').trim_end_matches(']'))
            .to_socket_addrs()
            .with_context(|| format!("resolving the client address {host}:{port}"))?
            .next()
            .with_context(|| format!("no address for {host}"))?;
        let mut db = DbOptions::new(&config.data_dir);
        db.data_log_dir = config.data_log_dir.clone();
        db.snap_count = u64::from(config.snap_count);
        db.snap_size_limit_kb = config.snap_size_limit_kb;
        db.snap_retain_count = config.autopurge_snap_retain_count as usize;
        db.tree = TreeOptions { extended_types: config.extended_types_enabled };
        db.seed = config.session_server_id() ^ std::process::id() as u64;
        db.log.prealloc_bytes = (config.pre_alloc_size_kb * 1024).next_multiple_of(4096).max(4096);
        db.log.segment_bytes_max =
            db.log.segment_bytes_max.max(db.log.prealloc_bytes.next_multiple_of(4096));
        db.log.fsync_warning_threshold_ms = config.fsync_warning_threshold_ms;
        if !config.force_sync {
            db.log.strategy = FlushStrategy::None;
        }
        if let Some((strategy, in_flight)) = config.test_log_strategy {
            db.log.strategy = strategy;
            db.log.in_flight = in_flight;
        }
        let ensemble = if config.is_distributed() {
            Some(EnsembleOptions::from_config(config)?)
        } else {
            None
        };
        let client_tls = crate::tls::ClientTls::from_config(config)
            .context("the TLS settings for clients (ssl.*)")?
            .map(Arc::new);
        let mut settings = Settings::from_config(config);
        if config.audit_enable {
            let log = match &config.audit_file {
                Some(path) => crate::audit::AuditLog::to_file(path)
                    .with_context(|| format!("opening the audit log {}", path.display()))?,
                None => crate::audit::AuditLog::to_log(),
            };
            tracing::info!("ZooKeeper audit is enabled.");
            settings.audit = Some(Arc::new(log));
        }
        settings.sasl = crate::sasl::SaslConfig::from_config(config)
            .map_err(|e| anyhow::anyhow!("the SASL settings: {e}"))?
            .map(Arc::new);
        Ok(ServerOptions { bind, db, settings, config: config.clone(), ensemble, client_tls })
    }
}

/// Warns when the pipeline answers nothing for `stall_ms` while requests wait, and says when
/// it answers again (`corral.stallWarningMs`).
async fn watch_for_stalls(
    shared: Arc<Shared>,
    stall_ms: u64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use crate::admin::warnings::{Stall, StallWatch};
    use std::sync::atomic::Ordering;
    let mut watch = StallWatch::new(stall_ms, shared.now_ms());
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        let sent = shared.stats.sent.load(Ordering::Relaxed);
        let outstanding = shared.outstanding.load(Ordering::Relaxed) as u64;
        match watch.check(shared.now_ms(), sent, outstanding) {
            Some(Stall::Stalled { for_ms, outstanding }) => tracing::warn!(
                for_ms,
                outstanding,
                "the request pipeline has answered nothing for {} s with {outstanding} requests waiting",
                for_ms / 1000
            ),
            Some(Stall::Resumed { lasted_ms }) => tracing::info!(
                lasted_ms,
                "the request pipeline answers again after a stall of {} s",
                lasted_ms / 1000
            ),
            None => {}
        }
    }
}

/// A running server.
pub struct RunningServer {
    addr: SocketAddr,
    secure_addr: Option<SocketAddr>,
    runtime: Option<tokio::runtime::Runtime>,
    stop: tokio::sync::watch::Sender<bool>,
    core_tx: mpsc::Sender<Input>,
    core_thread: Option<JoinHandle<Stopped>>,
    shared: Arc<Shared>,
    net: Option<QuorumNet>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer").field("addr", &self.addr).finish()
    }
}

impl RunningServer {
    /// Recovers the database, starts the pipeline and listens for clients.
    pub fn start(opts: ServerOptions) -> Result<RunningServer> {
        if let Some(why) = opts.config.security_refusal() {
            anyhow::bail!("refusing to start: {why}");
        }
        let started = Instant::now();
        // The log accepts exactly the txns the pipeline lets through (crate::limits).
        let mut db_opts = opts.db.clone();
        db_opts.log.record_bytes_max = opts.settings.limits.txn_bytes_max;
        let (db, state, report) = Database::open(db_opts).context("opening the database")?;
        tracing::info!(
            snapshot = ?report.snapshot.as_ref().map(|s| format!("{:#x}", s.zxid)),
            replayed = report.replayed,
            last_zxid = format_args!("{:#x}", report.last_zxid),
            ms = started.elapsed().as_millis() as u64,
            "database recovered"
        );
        for (path, why) in &report.skipped {
            tracing::warn!(snapshot = %path.display(), reason = %why, "skipped a damaged snapshot");
        }
        // Recovery's temporaries are freed by now, on this thread.
        crate::memory::trim();
        let shared =
            Arc::new(Shared::new(opts.settings.clone(), opts.config.clone(), opts.db.tree.clone()));
        if let Some(h) = db.log().metrics_handle() {
            let _ = shared.stats.log.set(h);
        }
        {
            use crate::admin::server_metrics::S;
            let m = &shared.stats.zk;
            m.observe(S::DbInitTime, started.elapsed().as_millis() as i64);
            m.observe(S::StartupSnapLoadTime, report.snapshot_ms as i64);
            m.observe(S::StartupTxnsLoaded, report.replayed as i64);
            m.observe(S::StartupTxnsLoadTime, report.replay_ms as i64);
        }
        let mut db = db;
        db.set_snapshot_metrics(shared.stats.zk.clone());
        let (core_tx, core_rx) = mpsc::channel();
        let _ = shared.core.set(core_tx.clone());
        let (core_thread, net) = match &opts.ensemble {
            None => {
                let core = Pipeline::new(shared.clone(), db, state, core_tx.clone())
                    .context("starting the replica")?;
                let t = std::thread::Builder::new()
                    .name("corral-pipeline".into())
                    .spawn(move || core.run(core_rx))
                    .context("starting the pipeline thread")?;
                (t, None)
            }
            Some(e) => {
                let mut net_cfg = e.net.clone();
                net_cfg.snapshot_spool = Some(db.snapshots().clone());
                net_cfg.tree = opts.db.tree.clone();
                let core = Pipeline::member(
                    shared.clone(),
                    db,
                    state,
                    core_tx.clone(),
                    e.peer.clone(),
                    e.me,
                )
                .context("starting the replica")?;
                let net = QuorumNet::start(net_cfg, core_tx.clone())
                    .context("listening for the ensemble")?;
                let _ = shared.quorum_net.set(net.clone());
                let n = net.clone();
                let t = std::thread::Builder::new()
                    .name("corral-pipeline".into())
                    .spawn(move || core.run_with(core_rx, move |out| n.carry(out)))
                    .context("starting the pipeline thread")?;
                tracing::info!(
                    myid = e.me,
                    voters = e.peer.voters.len(),
                    observers = e.peer.observers.len(),
                    "ensemble member: looking for a leader"
                );
                (t, Some(net))
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("corral-net")
            .enable_all()
            .build()
            .context("starting the network runtime")?;
        // No clientPort, only a secureClientPort: no plaintext listener at all.
        let secure_only = opts.config.client_port.is_none()
            && opts.config.client_address.is_none()
            && opts.client_tls.as_ref().is_some_and(|t| t.secure_bind.is_some());
        let listener = if secure_only {
            None
        } else {
            Some(
                runtime
                    .block_on(tokio::net::TcpListener::bind(opts.bind))
                    .with_context(|| format!("listening on {}", opts.bind))?,
            )
        };
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let plain_mode = match &opts.client_tls {
            Some(t) if t.port_unification => Listen::Unified(t.clone()),
            _ => Listen::Plain,
        };
        let mut secure_addr = None;
        if let Some(t) = &opts.client_tls {
            if let Some(bind) = t.secure_bind {
                let secure = runtime
                    .block_on(tokio::net::TcpListener::bind(bind))
                    .with_context(|| format!("listening on {bind} (secureClientPort)"))?;
                let a = secure.local_addr()?;
                secure_addr = Some(a);
                let mode = Listen::Tls(t.clone());
                runtime.spawn(crate::net::serve(
                    secure,
                    shared.clone(),
                    core_tx.clone(),
                    stop_rx.clone(),
                    mode,
                ));
                tracing::info!(addr = %a, "serving TLS clients (secureClientPort)");
            }
        }
        let unified = matches!(plain_mode, Listen::Unified(_));
        let addr = match listener {
            Some(listener) => {
                let addr = listener.local_addr()?;
                runtime.spawn(crate::net::serve(
                    listener,
                    shared.clone(),
                    core_tx.clone(),
                    stop_rx,
                    plain_mode,
                ));
                tracing::info!(%addr, tls_too = unified, "serving clients");
                addr
            }
            None => {
                tracing::info!("no clientPort: serving TLS clients only");
                secure_addr.context("a TLS-only server without its TLS listener")?
            }
        };
        let stall_ms = opts.config.stall_warning_ms;
        if stall_ms > 0 {
            runtime.spawn(watch_for_stalls(shared.clone(), stall_ms, stop.subscribe()));
        }
        Ok(RunningServer {
            addr,
            secure_addr,
            runtime: Some(runtime),
            stop,
            core_tx,
            core_thread: Some(core_thread),
            shared,
            net,
        })
    }

    /// The address clients connect to.
    /// (A TLS-only server, with a secureClientPort and no clientPort: the TLS address.)
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The TLS-only address (`secureClientPort`), if there is one.
    pub fn secure_addr(&self) -> Option<SocketAddr> {
        self.secure_addr
    }

    /// Starts the AdminServer (ZooKeeper's HTTP commands) on this server's network runtime;
    /// it stops with the server. Returns the address it listens on.
    pub fn start_admin_server(
        &self,
        opts: crate::net::admin_http::AdminHttpOptions,
    ) -> Result<SocketAddr> {
        let rt = self.runtime.as_ref().context("the server is stopping")?;
        let listener =
            rt.block_on(tokio::net::TcpListener::bind(opts.bind)).with_context(|| {
                format!(
                    "Problem starting AdminServer on address {}, port {} and command URL {}",
                    opts.bind.ip(),
                    opts.bind.port(),
                    opts.command_url
                )
            })?;
        let addr = listener.local_addr()?;
        tracing::info!(
            "Started AdminServer on address {}, port {} and command URL {}",
            addr.ip(),
            addr.port(),
            opts.command_url
        );
        rt.spawn(crate::net::admin_http::serve(
            listener,
            self.shared.clone(),
            Arc::new(opts),
            self.stop.subscribe(),
        ));
        Ok(addr)
    }

    /// Starts the Prometheus endpoint (`GET /metrics`) on this server's network runtime; it
    /// stops with the server. Returns the address it listens on.
    pub fn start_metrics_server(
        &self,
        opts: crate::net::metrics_http::MetricsHttpOptions,
    ) -> Result<SocketAddr> {
        let listener = crate::net::metrics_http::bind(&opts)?;
        self.start_metrics_server_on(listener, opts)
    }

    /// Serves the Prometheus endpoint on a listener bound beforehand (the binary binds it
    /// before the server starts, so that a port in use stops it before it joins an ensemble).
    pub fn start_metrics_server_on(
        &self,
        listener: std::net::TcpListener,
        opts: crate::net::metrics_http::MetricsHttpOptions,
    ) -> Result<SocketAddr> {
        let rt = self.runtime.as_ref().context("the server is stopping")?;
        listener.set_nonblocking(true)?;
        let listener = {
            let _in = rt.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "Prometheus metrics served at /metrics");
        rt.spawn(crate::net::metrics_http::serve(
            listener,
            self.shared.clone(),
            opts,
            self.stop.subscribe(),
        ));
        Ok(addr)
    }

    /// State shared with the pipeline (for tests and reporting).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Blocks until SIGINT or SIGTERM, or until the pipeline stops because storage failed
    /// (then returns why).
    pub fn wait_for_signal(&self) -> Option<Fatal> {
        if let Some(rt) = &self.runtime {
            rt.block_on(async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = async {
                        match term.as_mut() {
                            Some(t) => { t.recv().await; }
                            None => std::future::pending::<()>().await,
                        }
                    } => {}
                    _ = self.shared.failed.notified() => {}
                }
            });
        }
        self.failure()
    }

    /// Why the pipeline stopped on its own, if it has (storage failed).
    pub fn failure(&self) -> Option<Fatal> {
        self.shared.fatal.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops accepting, lets the pipeline finish what is durable, closes the database. An
    /// error if the pipeline had stopped because storage failed (the error says why).
    pub fn shutdown(mut self) -> Result<()> {
        self.stop_now()
    }

    fn stop_now(&mut self) -> Result<()> {
        let _ = self.stop.send(true);
        if let Some(net) = self.net.take() {
            net.stop();
        }
        let _ = self.core_tx.send(Input::Shutdown);
        let db = self.core_thread.take().map(|t| t.join());
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
        }
        match db {
            Some(Ok(Stopped { db, fatal })) => {
                drop(db);
                match fatal {
                    Some(f) => Err(anyhow::Error::new(f)),
                    None => Ok(()),
                }
            }
            Some(Err(_)) => anyhow::bail!("the pipeline thread panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if self.core_thread.is_some() {
            let _ = self.stop_now();
        }
    }
}
