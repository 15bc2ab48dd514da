//! The AdminServer: ZooKeeper's HTTP commands (`admin.serverAddress`:`admin.serverPort`,
//! `admin.commandURL`), served with hyper on the server's network runtime. What each command
//! answers is `crate::admin::commands`'; the figures come from the same live-server source as
//! the four-letter words (`super::fourlw::Source`), plus what only the HTTP commands report.
//!
//! Limits: at most [`MAX_CONNECTIONS`] connections at once (more are closed at accept), a
//! request's headers must arrive within `admin.idleTimeout`, a connection lives at most
//! [`MAX_CONNECTION_LIFE`], and request bodies are read only by `restore`, after its checks,
//! up to `corral.admin.restoreMaxBytes`.
//!
//! HTTPS as ZooKeeper's Jetty serves it: `admin.forceHttps` (TLS only) or
//! `admin.portUnification` (TLS and plain HTTP on the port, told apart by the first byte;
//! plain requests counted in `insecure_admin_count`), with the key and trust stores of
//! `ssl.quorum.*`, TLS 1.2 and 1.3 with the default suites (Jetty ignores the quorum's
//! protocol and suite settings), a client certificate required with `admin.needClientAuth`
//! (and then the `x509` scheme of `Authorization` gives its subject as an id), and
//! `Strict-Transport-Security` on every HTTPS answer.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::fourlw::Source;
use crate::admin::commands::{
    self, AddressSet, AdminSource, LeaderView, LearnerView, Method, VotingMember, ZabView,
};
use crate::admin::report::{BufferStats, ConnectionInfo};
use crate::config::{Config, LearnerType};
use crate::pipeline::Shared;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// The longest a connection is kept, however busy.
pub const MAX_CONNECTION_LIFE: Duration = Duration::from_secs(600);

/// HTTPS for the AdminServer.
#[derive(Debug)]
pub struct AdminTls {
    /// The rustls configuration (from `ssl.quorum.*`; a client certificate required with
    /// `admin.needClientAuth`).
    pub config: Arc<rustls::ServerConfig>,
    /// `admin.forceHttps`: TLS only; otherwise (`admin.portUnification`) TLS and plain.
    pub force: bool,
}

impl AdminTls {
    /// What `config` asks for: `None` without `admin.forceHttps` and
    /// `admin.portUnification`; an error if the stores cannot be used.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<AdminTls>> {
        let props = &config.system_properties;
        let flag = |k: &str| {
            props.get(&format!("zookeeper.admin.{k}")).is_some_and(|v| v.trim() == "true")
        };
        let (force, unified) = (flag("forceHttps"), flag("portUnification"));
        if !force && !unified {
            return Ok(None);
        }
        let mut settings = crate::tls::settings::TlsSettings::quorum(props)?;
        // Jetty's defaults, not the quorum's protocol and suites.
        settings.protocols = vec!["TLS".into()];
        settings.ciphersuites = None;
        settings.client_auth = if flag("needClientAuth") {
            crate::tls::settings::ClientAuth::Need
        } else {
            crate::tls::settings::ClientAuth::None
        };
        let mut tls = (*settings.server_config()?).clone();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some(AdminTls { config: Arc::new(tls), force }))
    }
}

/// How the AdminServer listens.
#[derive(Debug, Clone)]
pub struct AdminHttpOptions {
    /// `admin.serverAddress`:`admin.serverPort`.
    pub bind: SocketAddr,
    /// `admin.commandURL`.
    pub command_url: String,
    /// `admin.idleTimeout`.
    pub idle_timeout: Duration,
    /// HTTPS, if asked for.
    pub tls: Option<Arc<AdminTls>>,
}

impl AdminHttpOptions {
    /// The options `config` asks for, or `None` when `admin.enableServer` is false.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<AdminHttpOptions>> {
        if !config.admin_enable_server {
            return Ok(None);
        }
        let host = config.admin_server_address.trim_start_matches('[').trim_end_matches(']');
        let bind = resolve(host, config.admin_server_port)
            .ok_or_else(|| anyhow::anyhow!("admin.serverAddress {host:?} does not resolve"))?;
        let tls = AdminTls::from_config(config)?.map(Arc::new);
        Ok(Some(AdminHttpOptions {
            bind,
            command_url: config.admin_command_url.clone(),
            idle_timeout: Duration::from_millis(config.admin_idle_timeout_ms.max(1)),
            tls,
        }))
    }
}

/// `host:port` as an address to bind: an IP address, or a host name's first address.
pub fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    use std::net::ToSocketAddrs;
    (host, port).to_socket_addrs().ok()?.next()
}

/// One request as the responders see it.
#[derive(Debug)]
pub struct HttpRequest {
    /// The method.
    pub method: hyper::Method,
    /// The path.
    pub path: String,
    /// The query, if any.
    pub query: Option<String>,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The client's address.
    pub remote: SocketAddr,
    /// A POST's body, read on demand.
    pub body: Option<commands::Body>,
    /// Over HTTPS: the client certificate's subject (RFC 2253), if it presented one.
    pub client_subject: Option<String>,
}

/// Answers one request. Runs on a blocking thread (some commands walk the data directories
/// or write a snapshot).
pub type Responder = Arc<dyn Fn(&HttpRequest) -> commands::Response + Send + Sync>;

/// Serves the AdminServer's commands on `listener` until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    opts: Arc<AdminHttpOptions>,
    stop: watch::Receiver<bool>,
) {
    let url = opts.command_url.clone();
    let mut state = commands::AdminState::new(
        shared.config.admin_snapshot_enabled,
        shared.config.admin_rate_limiter_interval_ms,
    );
    state.restore_enabled = shared.config.admin_restore_enabled;
    state.restore_max_bytes =
        usize::try_from(shared.config.admin_restore_max_bytes).unwrap_or(usize::MAX);
    let started = std::time::Instant::now();
    let tls = opts.tls.clone().map(|t| (t, shared.stats.zk.clone()));
    let responder: Responder = Arc::new(move |http| {
        if http.method == hyper::Method::TRACE {
            // Blocked, as ZooKeeper's AdminServer blocks it.
            return commands::Response::text(403, "text/plain", String::new());
        }
        let method = match http.method {
            hyper::Method::GET | hyper::Method::HEAD => Method::Get,
            hyper::Method::POST => Method::Post,
            _ => Method::Other,
        };
        let request = commands::Request {
            method,
            path: &http.path,
            query: query_pairs(http.query.as_deref()),
            authorization: http.authorization.as_deref(),
            remote_ip: Some(http.remote.ip()),
            now_ms: started.elapsed().as_millis() as u64,
            body: http.body.clone(),
            client_subject: http.client_subject.as_deref(),
        };
        let mut source = Source { shared: &shared, local: None, on_client_port: false };
        commands::handle(&request, &url, &mut source, &state)
    });
    serve_http(listener, opts.idle_timeout, responder, stop, tls).await
}

/// TLS for [`serve_http`], and where plain requests on a unified port are counted.
pub type HttpTls = (Arc<AdminTls>, Arc<crate::admin::server_metrics::ServerMetrics>);

/// Serves HTTP/1.1 on `listener` with `responder` until `stop` turns true: at most
/// [`MAX_CONNECTIONS`] at once, headers within `idle`, a connection at most
/// [`MAX_CONNECTION_LIFE`]; request bodies are read only when a command asks. With `tls`,
/// HTTPS (only, or beside plain HTTP), the TLS handshake also within `idle`.
pub async fn serve_http(
    listener: TcpListener,
    idle: Duration,
    responder: Responder,
    mut stop: watch::Receiver<bool>,
    tls: Option<HttpTls>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::info!(%peer, max = MAX_CONNECTIONS, "HTTP connection refused: too many open");
            continue;
        };
        let (responder, stop, tls) = (responder.clone(), stop.clone(), tls.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let Some((tls, metrics)) = tls else {
                return serve_one(stream, peer, None, false, idle, responder, stop).await;
            };
            let secure = tls.force || {
                let mut first = [0u8; 1];
                match tokio::time::timeout(idle, stream.peek(&mut first)).await {
                    Ok(Ok(1)) => first[0] == crate::tls::HANDSHAKE_RECORD,
                    _ => return,
                }
            };
            if !secure {
                metrics.add(crate::admin::server_metrics::C::InsecureAdminCount, 1);
                return serve_one(stream, peer, None, false, idle, responder, stop).await;
            }
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
            let stream = match tokio::time::timeout(idle, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "AdminServer TLS handshake failed");
                    metrics.add(crate::admin::server_metrics::C::UnsuccessfulHandshake, 1);
                    return;
                }
                Err(_) => return,
            };
            let subject = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| crate::tls::verify::rfc2253_subject(leaf));
            serve_one(stream, peer, subject, true, idle, responder, stop).await
        });
    }
}

/// Serves one connection's requests (`secure`: over TLS, whose client certificate had
/// `subject`).
async fn serve_one<I>(
    io: I,
    peer: SocketAddr,
    subject: Option<String>,
    secure: bool,
    idle: Duration,
    responder: Responder,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service =
        service_fn(move |req| respond(req, responder.clone(), peer, subject.clone(), secure));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(idle)
        .serve_connection(TokioIo::new(io), service);
    tokio::select! {
        _ = conn => {}
        _ = stop.wait_for(|s| *s) => {}
        _ = tokio::time::sleep(MAX_CONNECTION_LIFE) => {}
    }
}

/// Percent-decodes a query component (`+` is a space).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query parameters in order.
fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

async fn respond(
    req: hyper::Request<Incoming>,
    responder: Responder,
    remote: SocketAddr,
    client_subject: Option<String>,
    secure: bool,
) -> Result<hyper::Response<Body>, Infallible> {
    let (parts, incoming) = req.into_parts();
    let body = (parts.method == hyper::Method::POST).then(|| body_reader(incoming));
    let http = HttpRequest {
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        authorization: parts
            .headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        remote,
        body,
        client_subject,
    };
    let out = tokio::task::spawn_blocking(move || responder(&http))
        .await
        .unwrap_or_else(|_| commands::Response::text(500, "text/plain", "internal error\n".into()));
    let body: Body = match &out.file {
        Some(path) => match std::fs::File::open(path) {
            Ok(f) => FileBody::start(f).boxed(),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot stream");
                let mut r = hyper::Response::new(
                    Full::new(Bytes::from_static(b"internal error\n"))
                        .map_err(|e| match e {})
                        .boxed(),
                );
                *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                return Ok(r);
            }
        },
        None => Full::new(Bytes::from(out.body)).map_err(|e| match e {}).boxed(),
    };
    let mut resp = hyper::Response::new(body);
    if secure {
        // Jetty's SecureRequestCustomizer as ZooKeeper sets it up: a day, subdomains too.
        resp.headers_mut().insert(
            hyper::header::STRICT_TRANSPORT_SECURITY,
            hyper::header::HeaderValue::from_static("max-age=86400; includeSubDomains"),
        );
    }
    *resp.status_mut() =
        hyper::StatusCode::from_u16(out.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(ct) = out.content_type {
        resp.headers_mut()
            .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(ct));
    }
    for (k, v) in &out.headers {
        if let (Ok(k), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(k.as_bytes()),
            hyper::header::HeaderValue::from_str(v),
        ) {
            resp.headers_mut().insert(k, v);
        }
    }
    Ok(resp)
}

/// A request body, read only when a command asks for it (after its checks), on the command's
/// blocking thread: a task forwards the body's pieces, a few at a time, until the reader has
/// what it allows or goes away.
fn body_reader(mut incoming: Incoming) -> commands::Body {
    use http_body_util::BodyExt as _;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, String>>(4);
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        // Nothing is read unless a command asks.
        if go_rx.await.is_err() {
            return;
        }
        while let Some(frame) = incoming.frame().await {
            let piece = match frame {
                Ok(f) => match f.into_data() {
                    Ok(d) => Ok(d),
                    Err(_) => continue,
                },
                Err(e) => Err(e.to_string()),
            };
            let failed = piece.is_err();
            if tx.send(piece).await.is_err() || failed {
                return;
            }
        }
    });
    let state = std::sync::Mutex::new(Some((go_tx, rx)));
    commands::Body(Arc::new(move |max| {
        let Some((go, mut rx)) = state.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return Err(commands::BodyError::Broken("the body was read already".into()));
        };
        let _ = go.send(());
        let mut out = Vec::new();
        while let Some(piece) = rx.blocking_recv() {
            let piece = piece.map_err(commands::BodyError::Broken)?;
            if out.len() + piece.len() > max {
                return Err(commands::BodyError::TooLarge);
            }
            out.extend_from_slice(&piece);
        }
        Ok(out)
    }))
}

/// A file sent in 64 KiB pieces, read on a blocking thread a few pieces ahead of the socket.
struct FileBody {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
}

impl FileBody {
    fn start(mut file: std::fs::File) -> FileBody {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            loop {
                let mut buf = vec![0u8; 64 << 10];
                let piece = match file.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        Ok(Bytes::from(buf))
                    }
                    Err(e) => Err(e),
                };
                let failed = piece.is_err();
                if tx.blocking_send(piece).is_err() || failed {
                    return;
                }
            }
        });
        FileBody { rx }
    }
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        self.rx.poll_recv(cx).map(|piece| piece.map(|r| r.map(hyper::body::Frame::data)))
    }
}

/// `host:port` with brackets around an IPv6 host.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl AdminSource for Source<'_> {
    fn x509_super_user(&self) -> Option<Option<String>> {
        let props = &self.shared.config.system_properties;
        let registered = props.iter().any(|(k, v)| {
            k.starts_with("zookeeper.authProvider.")
                && v.trim().ends_with("X509AuthenticationProvider")
        });
        registered.then(|| {
            props
                .get("zookeeper.X509AuthenticationProvider.superUser")
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        })
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<i64, String> {
        let sh = self.shared;
        let tree_opts =
            crate::tree::TreeOptions { extended_types: sh.config.extended_types_enabled };
        // A field can be no longer than the snapshot holding it.
        let snap = crate::tree::zk_snapshot::read_snapshot(bytes, tree_opts, Some(bytes.len()))
            .map_err(|e| format!("not a ZooKeeper snapshot: {e}"))?;
        let zxid = snap.last_processed_zxid.or(snap.zxid_digest.as_ref().map(|d| d.zxid));
        let state = crate::db::State {
            tree: snap.tree,
            sessions: snap.sessions.into_iter().collect(),
            digest_mismatches: 0,
        };
        let core = sh.core.get().ok_or("the server is not running")?;
        let (done, result) = std::sync::mpsc::sync_channel(1);
        core.send(crate::pipeline::Input::Restore { state: Box::new(state), done })
            .map_err(|_| "the server is stopping".to_string())?;
        match result.recv_timeout(Duration::from_secs(60)) {
            Ok(r) => r.map(|()| zxid.unwrap_or(0)),
            Err(_) => Err("no answer from the pipeline".into()),
        }
    }

    fn client_connections(&self) -> Vec<ConnectionInfo> {
        Source::client_connections(self)
    }

    fn client_response_sizes(&self) -> BufferStats {
        self.shared.stats.responses.get()
    }

    fn fsync_threshold_exceed_count(&self) -> i64 {
        self.shared.stats.log.get().map_or(0, |l| l.get().slow_flushes as i64)
    }

    fn uptime_ms(&self) -> i64 {
        self.shared.now_ms() as i64
    }

    fn session_expiry(&self) -> Vec<(i64, Vec<i64>)> {
        let sh = self.shared;
        let sessions = sh.sessions.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let tick = sh.settings.tick_ms.max(1) as i64;
        let mut buckets: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for (id, s) in &sessions {
            // ZooKeeper's buckets are on its monotonic clock, in ms.
            let last = s.last_touch.load(Ordering::Relaxed) as i64;
            let expire = (last + i64::from(s.timeout_ms)).div_euclid(tick) * tick + tick;
            buckets.entry(expire).or_default().push(*id);
        }
        buckets.into_iter().collect()
    }

    fn initial_configuration(&self) -> Option<String> {
        // ZooKeeper keeps the file's text for a standalone server only.
        let c = &self.shared.config;
        if c.is_distributed() {
            return None;
        }
        Some(c.initial_text.clone().unwrap_or_default())
    }

    fn last_snapshot(&self) -> Option<(i64, i64)> {
        // The database's snapshots, and those the `snapshot` command wrote in ZooKeeper's
        // format (both named `snapshot.<zxid>`).
        let dirs = [
            crate::db::DbOptions::new(&self.shared.config.data_dir).snap_dir(),
            self.shared.config.snap_dir(),
        ];
        let mut best: Option<(i64, i64)> = None;
        let entries = dirs.iter().filter_map(|d| std::fs::read_dir(d).ok()).flatten();
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_prefix("snapshot.")) else {
                continue;
            };
            let Ok(zxid) = u64::from_str_radix(hex, 16) else { continue };
            let mtime = e
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs() as i64);
            if best.is_none_or(|(z, _)| zxid as i64 > z) {
                best = Some((zxid as i64, mtime));
            }
        }
        best
    }

    fn leader(&self) -> Option<LeaderView> {
        let sh = self.shared;
        // A standalone server runs as an ensemble of one; ZooKeeper's has no leader.
        if !sh.config.is_distributed() {
            return None;
        }
        let mode = sh.mode.load(Ordering::Acquire);
        let e = sh.ensemble.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let me = sh.config.my_id;
        let leader = if mode == crate::pipeline::MODE_LEADER { me } else { e.leader };
        let ip = leader
            .and_then(|id| sh.config.servers.get(&id))
            .and_then(|s| s.addresses.first())
            .map(|a| a.host.clone())
            .unwrap_or_default();
        Some(LeaderView {
            is_leader: mode == crate::pipeline::MODE_LEADER,
            leader_id: leader.map_or(-1, |l| l as i64),
            leader_ip: ip,
        })
    }

    fn voting_view(&self) -> Vec<VotingMember> {
        let c = &self.shared.config;
        if !c.is_distributed() {
            return Vec::new();
        }
        // The active membership: one a reconfig (or a leader's NEWLEADER) activated, else the
        // configured one.
        let active =
            self.shared.ensemble.lock().unwrap_or_else(|p| p.into_inner()).membership.clone();
        let active = active.as_deref().and_then(crate::zab::Membership::parse);
        let servers: Vec<&crate::config::QuorumServer> = match &active {
            Some(m) => {
                m.servers.values().filter(|s| s.learner_type == LearnerType::Participant).collect()
            }
            None => c.participants().collect(),
        };
        servers
            .into_iter()
            .map(|s| VotingMember {
                sid: s.id,
                server_addresses: s
                    .addresses
                    .iter()
                    .map(|a| host_port(&a.host, a.quorum_port))
                    .collect(),
                election_addresses: s
                    .addresses
                    .iter()
                    .map(|a| host_port(&a.host, a.election_port))
                    .collect(),
                client_address: s
                    .client_address
                    .as_ref()
                    .map(|h| host_port(&h.host, h.port))
                    .unwrap_or_default(),
                learner_type: s.learner_type,
            })
            .collect()
    }

    fn zab(&self) -> Option<ZabView> {
        let sh = self.shared;
        let c = &sh.config;
        if !c.is_distributed() {
            return None;
        }
        let mine = c.my_server()?;
        let resolve = |host: &str, port: u16| -> Option<SocketAddr> {
            use std::net::ToSocketAddrs;
            (host.trim_start_matches('[').trim_end_matches(']'), port)
                .to_socket_addrs()
                .ok()?
                .next()
        };
        let quorum =
            mine.addresses.iter().filter_map(|a| resolve(&a.host, a.quorum_port)).collect();
        let election =
            mine.addresses.iter().filter_map(|a| resolve(&a.host, a.election_port)).collect();
        let e = sh.ensemble.lock().unwrap_or_else(|p| p.into_inner()).clone();
        // `following - broadcast` → `broadcast`; while looking, ZooKeeper's phase is election.
        let phase = e.peer_state.split(" - ").nth(1).unwrap_or("election").to_string();
        Some(ZabView {
            myid: c.my_id.unwrap_or(0),
            is_leader: sh.mode.load(Ordering::Acquire) == crate::pipeline::MODE_LEADER,
            quorum_address: AddressSet { addresses: quorum },
            election_address: AddressSet { addresses: election },
            client_address: mine
                .client_address
                .as_ref()
                .map(|h| host_port(&h.host, h.port))
                .unwrap_or_default(),
            voting: mine.learner_type == LearnerType::Participant,
            last_zxid: sh.last_zxid.load(Ordering::Relaxed),
            zabstate: phase,
        })
    }

    fn observers(&self) -> (i64, Vec<LearnerView>) {
        let sh = self.shared;
        let e = sh.ensemble.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let synced = e.leading.map_or(0, |l| l.synced_observers as i64);
        // A leader's connections with the observers of the active membership (ZooKeeper's
        // observing learners), with what each carried.
        let (Some(net), true) = (sh.quorum_net.get(), e.leading.is_some()) else {
            return (synced, Vec::new());
        };
        let active = e.membership.as_deref().and_then(crate::zab::Membership::parse);
        let observer = |sid: u64| match &active {
            Some(m) => m.servers.get(&sid).is_some_and(|s| s.learner_type == LearnerType::Observer),
            None => sh.config.observers().any(|s| s.id == sid),
        };
        let mut list: Vec<LearnerView> = net
            .connections()
            .into_iter()
            .filter(|c| observer(c.peer))
            .map(|c| LearnerView {
                remote: c.remote,
                sid: c.peer,
                established_ms: c.established_ms,
                queued_packets: c.queued_packets,
                queued_packets_size: c.queued_bytes,
                packets_received: c.packets_received,
                packets_sent: c.packets_sent,
                requests: c.requests,
                last_zxid: c.last_zxid,
            })
            .collect();
        list.sort_by_key(|l| l.sid);
        (synced, list)
    }

    fn system_properties(&self) -> Vec<(String, String)> {
        let mut props = self.shared.config.system_properties.clone();
        props.insert("zookeeper.version".into(), crate::admin::full_version());
        props.into_iter().collect()
    }

    fn reset_observer_stats(&mut self) {
        if let Some(net) = self.shared.quorum_net.get() {
            net.reset_connection_stats();
        }
    }

    fn super_digest(&self) -> Option<String> {
        self.shared.settings.super_digest.clone()
    }

    fn root_allows(&self, ids: &[crate::proto::Id], perm: i32) -> bool {
        let settings = &self.shared.settings;
        if settings.skip_acl {
            return true;
        }
        let tree = self.shared.view.read().unwrap_or_else(|p| p.into_inner()).clone();
        let Some((acl, _)) = tree.get_acl("/") else { return false };
        crate::tree::acl::check_acl(&acl, perm, ids, &settings.prepare.auth_schemes)
    }

    fn take_snapshot(&mut self) -> Result<commands::TakenSnapshot, String> {
        let sh = self.shared;
        let started = std::time::Instant::now();
        let tree = sh.view.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut sessions: Vec<(i64, i32)> = sh
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(id, s)| (*id, s.timeout_ms))
            .collect();
        sessions.sort_unstable();
        let zxid = tree.last_processed_zxid();
        // Where ZooKeeper's snapshots are: <dataDir>/version-2, as ZooKeeper would write it.
        let dir = sh.config.data_dir.join("version-2");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(format!("snapshot.{:x}", zxid as u64));
        let tmp = dir.join(format!("snapshot.{:x}.tmp", zxid as u64));
        let write = || -> Result<u64, String> {
            let f = std::fs::File::create(&tmp).map_err(|e| e.to_string())?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            let trailer = crate::tree::zk_snapshot::Trailer {
                digest: sh.config.digest_enabled,
                last_processed_zxid: true,
            };
            crate::tree::zk_snapshot::write_snapshot(&mut w, &tree, &sessions, trailer)
                .map_err(|e| e.to_string())?;
            let f = w.into_inner().map_err(|e| e.to_string())?;
            f.sync_data().map_err(|e| e.to_string())?;
            let size = f.metadata().map_err(|e| e.to_string())?.len();
            std::fs::rename(&tmp, &path).map_err(|e| e.to_string())?;
            Ok(size)
        };
        let size = write().inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        tracing::info!("Snapshot taken in {} ms", started.elapsed().as_millis());
        Ok(commands::TakenSnapshot { zxid, path, size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        assert_eq!(
            query_pairs(Some("traceMask=5&a=b%20c+d&flag&x=%zz%4")),
            vec![
                ("traceMask".to_string(), "5".to_string()),
                ("a".to_string(), "b c d".to_string()),
                ("flag".to_string(), String::new()),
                ("x".to_string(), "%zz%4".to_string()),
            ]
        );
        assert!(query_pairs(None).is_empty());
    }

    /// `voting_view` follows the active membership: after a reconfig activated one, its
    /// voters, not the configured ones.
    #[test]
    fn voting_view_follows_the_active_membership() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("myid"), "1\n").unwrap();
        let text = format!(
            "tickTime=2000\ndataDir={}\nclientPort=2181\ninitLimit=5\nsyncLimit=2\n\
                    server.1=127.0.0.1:2888:3888\nserver.2=127.0.0.1:2889:3889\n\
             server.3=127.0.0.1:2890:3890\n",
            dir.path().display()
        );
        std::fs::write(dir.path().join("zoo.cfg"), text).unwrap();
        let config = Config::load(&dir.path().join("zoo.cfg")).unwrap();
        let settings = crate::pipeline::Settings::from_config(&config);
        let shared = Shared::new(settings, config, Default::default());
        let source = Source { shared: &shared, local: None, on_client_port: false };
        let sids = |v: Vec<VotingMember>| v.iter().map(|m| m.sid).collect::<Vec<_>>();
        assert_eq!(sids(source.voting_view()), [1, 2, 3], "the configured voters");
        shared.ensemble.lock().unwrap().membership = Some(
            "server.1=127.0.0.1:2888:3888:participant;127.0.0.1:2181\n\
             server.2=127.0.0.1:2889:3889:participant;127.0.0.1:2182\n\
             server.3=127.0.0.1:2890:3890:observer;127.0.0.1:2183\n\
             server.4=127.0.0.1:2891:3891:participant;127.0.0.1:2184\nversion=100000003"
                .into(),
        );
        let view = source.voting_view();
        assert_eq!(sids(view.clone()), [1, 2, 4], "a reconfig made 3 an observer and added 4");
        assert_eq!(view[2].client_address, "127.0.0.1:2184");
    }
}
