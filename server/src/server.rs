//! Starting and stopping a standalone server: the database, the pipeline thread, and the
//! client listener on a tokio runtime of its own.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicUsize};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::core::{Core, Event, Settings, Shared, Stats};
use crate::db::{Database, DbOptions};
use crate::tree::DataTree;
use crate::watch::WatchManager;

/// Everything a standalone server needs.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Client address to listen on.
    pub bind: SocketAddr,
    /// Storage.
    pub db: DbOptions,
    /// Pipeline settings.
    pub settings: Settings,
}

/// A running server.
pub struct RunningServer {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
    stop: tokio::sync::watch::Sender<bool>,
    core_tx: mpsc::Sender<Event>,
    core_thread: Option<JoinHandle<Database>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer").field("addr", &self.addr).finish()
    }
}

impl RunningServer {
    /// Recovers the database, starts the pipeline and listens for clients.
    pub fn start(opts: ServerOptions) -> Result<RunningServer> {
        let started = Instant::now();
        let (db, state, report) =
            Database::open(opts.db.clone()).context("opening the database")?;
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
        let shared = Arc::new(Shared {
            view: RwLock::new(Arc::new(DataTree::new(opts.db.tree.clone()))),
            last_zxid: AtomicI64::new(0),
            watches: Mutex::new(WatchManager::new()),
            conns: Mutex::default(),
            sessions: Mutex::default(),
            outstanding: AtomicUsize::new(0),
            stats: Stats::default(),
            settings: opts.settings.clone(),
            start: Instant::now(),
            unthrottle: tokio::sync::Notify::new(),
        });
        shared.stats.reset();
        let (core_tx, core_rx) = mpsc::channel();
        let core = Core::new(shared.clone(), db, state, core_tx.clone());
        let core_thread = std::thread::Builder::new()
            .name("corral-pipeline".into())
            .spawn(move || core.run(core_rx))
            .context("starting the pipeline thread")?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("corral-net")
            .enable_all()
            .build()
            .context("starting the network runtime")?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(opts.bind))
            .with_context(|| format!("listening on {}", opts.bind))?;
        let addr = listener.local_addr()?;
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        runtime.spawn(crate::net::serve(listener, shared.clone(), core_tx.clone(), stop_rx));
        tracing::info!(%addr, "serving clients");
        Ok(RunningServer {
            addr,
            runtime: Some(runtime),
            stop,
            core_tx,
            core_thread: Some(core_thread),
            shared,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// State shared with the pipeline (for tests and reporting).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Blocks until SIGINT or SIGTERM.
    pub fn wait_for_signal(&self) {
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
                }
            });
        }
    }

    /// Stops accepting, lets the pipeline finish what is durable, closes the database.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop_now()
    }

    fn stop_now(&mut self) -> Result<()> {
        let _ = self.stop.send(true);
        let _ = self.core_tx.send(Event::Shutdown);
        let db = self.core_thread.take().map(|t| t.join());
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
        }
        match db {
            Some(Ok(db)) => {
                drop(db);
                Ok(())
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
