//! The server hands freed memory back at quiet points (`corral_server::memory`): once after
//! recovery, and in idle ticks after work — and not while idle with nothing done since. Its own
//! test binary, because the trim hook is process-wide.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use corral_server::config::Config;
use corral_server::db::DbOptions;
use corral_server::pipeline::Settings;
use corral_server::server::{RunningServer, ServerOptions};
use zookeeper_client as zk;

static TRIMS: AtomicUsize = AtomicUsize::new(0);

fn count_trim() {
    TRIMS.fetch_add(1, Ordering::SeqCst);
}

/// Waits (bounded) until the trim count stops changing for `quiet`; returns it.
fn settled(quiet: Duration) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = TRIMS.load(Ordering::SeqCst);
    let mut since = Instant::now();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        let now = TRIMS.load(Ordering::SeqCst);
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= quiet {
            break;
        }
    }
    last
}

#[test]
fn memory_is_handed_back_after_recovery_and_after_work_only() {
    assert!(corral_server::memory::set_trim(count_trim));
    assert!(!corral_server::memory::set_trim(count_trim), "the hook is set once");
    let tmp = tempfile::tempdir().unwrap();
    let config = Config::default_standalone();
    let mut settings = Settings::from_config(&config);
    settings.tick_ms = 40; // idle checks every 20 ms
    let db = DbOptions::new(tmp.path());
    let opts = ServerOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        db,
        settings,
        config,
        ensemble: None,
        client_tls: None,
    };
    let server = RunningServer::start(opts).expect("server starts");
    let after_start = TRIMS.load(Ordering::SeqCst);
    assert!(after_start >= 1, "trimmed after recovery");

    // Idle with nothing done: the count settles and stays.
    let idle = settled(Duration::from_millis(400));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(TRIMS.load(Ordering::SeqCst), idle, "no trims while idle with nothing done");

    // Work, then quiet: trimmed again, a bounded number of times.
    let addr = server.addr().to_string();
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let c = zk::Client::connect(&addr).await.unwrap();
        let mode = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        for i in 0..50 {
            c.create(&format!("/n{i}"), &[7u8; 1000], &mode).await.unwrap();
        }
    });
    let after_work = settled(Duration::from_millis(400));
    assert!(after_work > idle, "trimmed after work ({idle} -> {after_work})");
    assert!(after_work - idle <= 20, "a bounded number of trims: {}", after_work - idle);
}
