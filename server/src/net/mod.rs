//! Client connections over TCP (tokio): the only place in the server that touches sockets.
//!
//! Per connection: a reader task that checks each frame's length against jute.maxbuffer
//! *before* reading (or allocating for) its body, performs the handshake, answers reads from
//! the published tree, and hands writes to the pipeline; and a writer task that drains the
//! connection's outbound queue, coalescing every frame that is waiting into one write.
//! Four-letter words are recognised in the first four bytes of a fresh connection.

pub mod admin_http;
pub mod fourlw;
pub mod metrics_http;
pub mod quorum;
pub mod quorum_sasl;
pub mod quorum_tls;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::admin::server_metrics::C;
use crate::pipeline::{
    answer_locally, behind_client, reply_frame, Conn, Input, Out, ReadJob, Shared,
};
use crate::proto::{
    AuthPacket, ConnectRequest, ErrorCode, Id, Jute, OpCode, Reader, Request, RequestError,
    RequestHeader, Response,
};
use crate::tree::acl::digest_of_auth;

/// How a listener takes its connections.
#[derive(Debug, Clone)]
pub enum Listen {
    /// Plain TCP (clientPort).
    Plain,
    /// TLS only (secureClientPort).
    Tls(Arc<crate::tls::ClientTls>),
    /// Plain or TLS, told apart by the first byte: a TLS handshake record starts with 0x16,
    /// a ZooKeeper frame's length with 0x00 and a four-letter word with a letter
    /// (clientPort with client.portUnification).
    Unified(Arc<crate::tls::ClientTls>),
}

/// Accepts connections until `stop` fires.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    core: Sender<Input>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    mode: Listen,
) {
    let per_ip: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    let total = Arc::new(AtomicUsize::new(0));
    let next_id = Arc::new(AtomicU64::new(1));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let (stream, remote) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let cnxns_max = shared.settings.limits.cnxns_max;
        if cnxns_max > 0 && total.load(Ordering::Acquire) >= cnxns_max {
            tracing::warn!(%remote, cnxns_max, "too many connections in total (maxCnxns); closing");
            shared.stats.zk.add(C::ConnectionRejected, 1);
            continue;
        }
        let limit = shared.settings.limits.cnxns_per_address_max;
        {
            let mut m = per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = m.entry(remote.ip()).or_default();
            if limit > 0 && *n >= limit {
                tracing::warn!(%remote, limit, "too many connections from this address (maxClientCnxns); closing");
                shared.stats.zk.add(C::ConnectionRejected, 1);
                continue;
            }
            *n += 1;
        }
        total.fetch_add(1, Ordering::AcqRel);
        let (shared, core, per_ip, stop, total, mode) = (
            shared.clone(),
            core.clone(),
            per_ip.clone(),
            stop.clone(),
            total.clone(),
            mode.clone(),
        );
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            accepted_connection(stream, remote, id, &shared, &core, stop, mode).await;
            total.fetch_sub(1, Ordering::AcqRel);
            let mut m = per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = m.get_mut(&remote.ip()) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&remote.ip());
                }
            }
        });
    }
}

/// Reads a length-prefixed frame; `None` at a clean end of stream. A length that is negative
/// or above `max` is an error before anything is read; the buffer then grows as the body's
/// bytes arrive, never to a length the client only declared.
async fn read_frame<R: tokio::io::AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<()>> {
    let mut len4 = [0u8; 4];
    match rd.read_exact(&mut len4).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    read_body(rd, i32::from_be_bytes(len4), buf, max).await.map(Some)
}

/// Reads a frame body of `len` bytes (checked against `max` first) into `buf`.
async fn read_body<R: tokio::io::AsyncRead + Unpin>(
    rd: &mut R,
    len: i32,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<()> {
    if len < 0 || len as usize > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("Len error {len}"),
        ));
    }
    let len = len as usize;
    // A buffer kept from an earlier large frame is given back rather than held per connection.
    if buf.capacity() > FRAME_BUFFER_KEPT_BYTES && len <= FRAME_BUFFER_KEPT_BYTES {
        *buf = Vec::with_capacity(FRAME_BUFFER_KEPT_BYTES);
    }
    buf.clear();
    buf.reserve(len.min(FRAME_BUFFER_KEPT_BYTES));
    let got = (&mut *rd).take(len as u64).read_to_end(buf).await?;
    if got < len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// A connection's frame buffer is kept between requests up to this capacity.
const FRAME_BUFFER_KEPT_BYTES: usize = 64 << 10;

/// Drains the connection's queue to its socket, every waiting item in one write, until told
/// to close, the socket fails, or the connection is killed (which drops what is queued and
/// abandons a write the client is not reading).
async fn writer<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: UnboundedReceiver<Out>,
    conn: Arc<Conn>,
    reply_max: usize,
    responses: Arc<crate::pipeline::ResponseSizes>,
    metrics: Arc<crate::admin::server_metrics::ServerMetrics>,
    closed: tokio::sync::oneshot::Sender<()>,
) {
    // A watch notification's xid is -1.
    let count_frame = |f: &[u8]| {
        let c = if f.get(4..8) == Some(&[0xff; 4]) { C::WatchBytes } else { C::ResponseBytes };
        metrics.add(c, f.len() as i64);
    };
    let mut kill = conn.kill.subscribe();
    // Allocated when there is something to write and given back once the queue is drained:
    // an idle connection holds no write buffer (10,000 connections that once had 20 KiB of
    // replies queued held 190 MB; issue 17's watch measurement).
    let mut buf: Vec<u8> = Vec::new();
    'outer: loop {
        let first = tokio::select! {
            biased;
            _ = kill.wait_for(|k| *k) => break 'outer,
            first = rx.recv() => match first { Some(f) => f, None => break 'outer },
        };
        let mut close = false;
        let mut counted = 0usize;
        let mut add = |item: Out, buf: &mut Vec<u8>, close: &mut bool| {
            counted += item.queued_bytes();
            match item {
                Out::Frame(f) => {
                    count_frame(&f);
                    buf.extend_from_slice(&f)
                }
                Out::Shared(f) => {
                    count_frame(&f);
                    buf.extend_from_slice(&f)
                }
                Out::Reply { reply, .. } => {
                    let start = buf.len();
                    reply.encode_into(buf, reply_max);
                    // ZooKeeper's client response size: the reply without its length prefix.
                    responses.record(buf.len().saturating_sub(start + 4) as i64);
                    metrics.add(C::ResponseBytes, (buf.len() - start) as i64);
                }
                Out::Close => *close = true,
            }
        };
        add(first, &mut buf, &mut close);
        // Everything already queued goes out in the same write.
        while !close && buf.len() < (1 << 20) {
            match rx.try_recv() {
                Ok(item) => add(item, &mut buf, &mut close),
                Err(_) => break,
            }
        }
        if !buf.is_empty() {
            let written = tokio::select! {
                biased;
                _ = kill.wait_for(|k| *k) => false,
                r = wr.write_all(&buf) => r.is_ok(),
            };
            if !written {
                break 'outer;
            }
            buf.clear();
            if rx.is_empty() || buf.capacity() > 4 << 20 {
                buf = Vec::new();
            }
        }
        conn.queued.fetch_sub(counted, Ordering::AcqRel);
        conn.drained.notify_waiters();
        if close {
            break;
        }
    }
    // Nothing more is written: later items are dropped (and the queue's count with them).
    conn.kill_now();
    rx.close();
    while rx.try_recv().is_ok() {}
    let _ = wr.shutdown().await;
    let _ = closed.send(());
}

/// What a new connection sent first: a four-letter word (answered and done) or a
/// ConnectRequest.
enum Opening {
    Done,
    Connect(ConnectRequest),
}

/// Reads the handshake: a four-letter word (answered here) or a complete ConnectRequest.
async fn opening<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    rd: &mut BufReader<R>,
    wr: &mut W,
    remote: SocketAddr,
    shared: &Arc<Shared>,
) -> Option<Opening> {
    let max = shared.settings.limits.request_bytes_max;
    // A four-letter word, or the length of the ConnectRequest.
    let mut first = [0u8; 4];
    rd.read_exact(&mut first).await.ok()?;
    if let Some(word) = fourlw::detect(&first) {
        let mask = if fourlw::wants_mask(word, shared) {
            let mut m = [0u8; 8];
            rd.read_exact(&mut m).await.ok().map(|_| i64::from_be_bytes(m))
        } else {
            None
        };
        let answer = fourlw::answer(word, shared, Some(remote), mask);
        let _ = wr.write_all(&answer).await;
        let _ = wr.shutdown().await;
        return Some(Opening::Done);
    }
    let mut body = Vec::new();
    if let Err(e) = read_body(rd, i32::from_be_bytes(first), &mut body, max).await {
        tracing::info!(%remote, error = %e, "refusing a connection whose first frame is bad");
        return None;
    }
    shared.stats.zk.add(C::BytesReceivedCount, body.len() as i64 + 4);
    let Ok(connect) = ConnectRequest::read(&mut Reader::with_max_len(&body, max)) else {
        tracing::info!(%remote, "malformed ConnectRequest; closing");
        return None;
    };
    Some(Opening::Connect(connect))
}

/// Takes an accepted connection through TLS if its listener asks for it, then serves it.
async fn accepted_connection(
    stream: TcpStream,
    remote: SocketAddr,
    id: u64,
    shared: &Arc<Shared>,
    core: &Sender<Input>,
    stop: tokio::sync::watch::Receiver<bool>,
    mode: Listen,
) {
    let _ = stream.set_nodelay(true);
    let limits = &shared.settings.limits;
    let handshake = std::time::Duration::from_millis(limits.handshake_ms);
    let tls = match mode {
        Listen::Plain => None,
        Listen::Tls(t) => Some(t),
        Listen::Unified(t) => {
            let mut first = [0u8; 1];
            match tokio::time::timeout(handshake, stream.peek(&mut first)).await {
                Ok(Ok(1)) if first[0] == crate::tls::HANDSHAKE_RECORD => Some(t),
                Ok(Ok(1)) => None,
                Ok(_) => return,
                Err(_) => {
                    tracing::info!(%remote, ms = limits.handshake_ms, "no handshake in time; closing");
                    return;
                }
            }
        }
    };
    let Some(tls) = tls else {
        let (rd, wr) = stream.into_split();
        connection(rd, wr, remote, id, shared, core, stop, Vec::new()).await;
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
    let stream = match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            shared.auth_failed.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%remote, error = %e, "TLS handshake failed; closing");
            shared.stats.zk.add(C::UnsuccessfulHandshake, 1);
            return;
        }
        Err(_) => {
            tracing::info!(%remote, ms = limits.handshake_ms, "no TLS handshake in time; closing");
            return;
        }
    };
    let ids = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| tls.ids_of(leaf))
        .unwrap_or_default();
    if let Some(x509) = ids.iter().find(|i| i.scheme == "x509") {
        tracing::debug!(%remote, id = %x509.id, "TLS client authenticated");
    }
    let (rd, wr) = tokio::io::split(stream);
    connection(rd, wr, remote, id, shared, core, stop, ids).await;
}

/// Serves one connection: its handshake, then its session. `ids` are what TLS
/// authenticated (the x509 id, and super for the configured superuser).
#[allow(clippy::too_many_arguments)]
async fn connection<R, W>(
    rd: R,
    mut wr: W,
    remote: SocketAddr,
    id: u64,
    shared: &Arc<Shared>,
    core: &Sender<Input>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    ids: Vec<Id>,
) where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let mut rd = BufReader::with_capacity(64 << 10, rd);
    let limits = &shared.settings.limits;

    // The handshake must complete in bounded time (ZooKeeper closes sessionless connections
    // after zookeeper.nio.sessionlessCnxnTimeout).
    let handshake = std::time::Duration::from_millis(limits.handshake_ms);
    let connect =
        match tokio::time::timeout(handshake, opening(&mut rd, &mut wr, remote, shared)).await {
            Ok(Some(Opening::Connect(c))) => c,
            Ok(Some(Opening::Done)) | Ok(None) => return,
            Err(_) => {
                tracing::info!(%remote, ms = limits.handshake_ms, "no handshake in time; closing");
                shared.stats.zk.add(C::SessionlessConnectionsExpired, 1);
                return;
            }
        };
    shared.stats.zk.add(C::ConnectionRequestCount, 1);
    let our_zxid = shared.last_zxid.load(Ordering::Acquire);
    if behind_client(shared, connect.last_zxid_seen) {
        tracing::info!(
            "Refusing session(0x{:x}) request for client {remote} as it has seen zxid 0x{:x} our \
             last zxid is 0x{our_zxid:x} client must try another server",
            connect.session_id,
            connect.last_zxid_seen
        );
        return;
    }

    let (out_tx, out_rx) = tokio::sync::mpsc::unbounded_channel();
    let (closed_tx, mut closed_rx) = tokio::sync::oneshot::channel();
    let conn =
        Arc::new(Conn::new(id, remote, out_tx, shared.now_ms(), limits.client_queue_bytes_hard()));
    let writer_task = tokio::spawn(writer(
        wr,
        out_rx,
        conn.clone(),
        limits.reply_bytes_max,
        shared.stats.responses.clone(),
        shared.stats.zk.clone(),
        closed_tx,
    ));
    conn.stats.received.fetch_add(1, Ordering::Relaxed);
    shared.stats.received.fetch_add(1, Ordering::Relaxed);
    shared.conns.lock().unwrap_or_else(|p| p.into_inner()).insert(id, conn.clone());

    let touch: Option<Arc<AtomicU64>> = if connect.session_id == 0 {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = core.send(Input::CreateSession {
            conn: conn.clone(),
            timeout_ms: connect.time_out,
            read_only: connect.read_only,
            done: tx,
        });
        rx.await.ok().flatten().map(|(_, t)| t)
    } else {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = core.send(Input::Reconnect {
            conn: conn.clone(),
            session_id: connect.session_id,
            passwd: connect.passwd.as_slice().to_vec(),
            timeout_ms: connect.time_out,
            read_only: connect.read_only,
            done: tx,
        });
        rx.await.ok().flatten()
    };

    if let Some(touch) = touch {
        let mut auth = vec![Id { scheme: "ip".into(), id: remote.ip().to_string() }];
        auth.extend(ids);
        let auth = Arc::new(auth);
        *conn.auth.lock().unwrap_or_else(|p| p.into_inner()) = auth.clone();
        let io = SessionIo { rd: &mut rd, closed: &mut closed_rx, stop: &mut stop };
        serve_session(io, &conn, shared, core, &touch, auth).await;
    }
    conn.gone.store(true, Ordering::Release);
    conn.close();
    let session_id = conn.session_id.load(Ordering::Relaxed);
    shared.conns.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    let _ = core.send(Input::ConnClosed { conn_id: id, session_id });
    let _ = writer_task.await;
}

/// Waits while the connection's outbound queue is over its limit (its client is not reading
/// fast enough): its requests are not read meanwhile. False if the queue stayed full past the
/// stall deadline, or the connection was killed: the caller closes it.
async fn wait_for_room(conn: &Conn, limits: &crate::limits::Limits) -> bool {
    if conn.queued.load(Ordering::Acquire) < limits.client_queue_bytes_max {
        return true;
    }
    let deadline = tokio::time::Instant::now()
        + std::time::Duration::from_millis(limits.client_queue_stall_ms);
    let mut kill = conn.kill.subscribe();
    loop {
        let drained = conn.drained.notified();
        if conn.queued.load(Ordering::Acquire) < limits.client_queue_bytes_max {
            return true;
        }
        tokio::select! {
            _ = drained => {}
            _ = kill.wait_for(|k| *k) => return false,
            _ = tokio::time::sleep_until(deadline) => {
                tracing::info!(
                    remote = %conn.remote,
                    queued = conn.queued.load(Ordering::Acquire),
                    ms = limits.client_queue_stall_ms,
                    "a client that stopped reading its replies; closing its connection"
                );
                return false;
            }
        }
    }
}

/// What a session's request loop reads from and watches.
struct SessionIo<'a, R> {
    rd: &'a mut BufReader<R>,
    closed: &'a mut tokio::sync::oneshot::Receiver<()>,
    stop: &'a mut tokio::sync::watch::Receiver<bool>,
}

/// The request loop of an established session; `auth` holds the ids the connection has
/// (its address, and what TLS authenticated).
#[allow(clippy::too_many_lines)]
async fn serve_session<R: AsyncRead + Unpin>(
    io: SessionIo<'_, R>,
    conn: &Arc<Conn>,
    shared: &Arc<Shared>,
    core: &Sender<Input>,
    touch: &AtomicU64,
    mut auth: Arc<Vec<Id>>,
) {
    let SessionIo { rd, closed, stop } = io;
    let mut sasl: Option<SaslState> = None;
    let limits = &shared.settings.limits;
    let max = limits.request_bytes_max;
    let mut buf = Vec::new();
    let limit = shared.settings.global_outstanding_limit.max(1);
    let mut kill = conn.kill.subscribe();
    loop {
        // Backpressure: stop reading sockets while too many requests are in the pipeline.
        while shared.outstanding.load(Ordering::Acquire) >= limit {
            let notified = shared.unthrottle.notified();
            if shared.outstanding.load(Ordering::Acquire) < limit {
                break;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(std::time::Duration::from_millis(5)) => {}
            }
        }
        // ...and this connection's while its client is not reading what it was sent.
        if !wait_for_room(conn, limits).await {
            return;
        }
        let frame = tokio::select! {
            f = read_frame(rd, &mut buf, max) => f,
            _ = &mut *closed => return,
            _ = kill.wait_for(|k| *k) => return,
            _ = stop.changed() => return,
        };
        match frame {
            Ok(Some(())) => {}
            Ok(None) => return,
            Err(e) => {
                tracing::info!(remote = %conn.remote, error = %e, "closing connection");
                return;
            }
        }
        let received = Instant::now();
        conn.stats.received.fetch_add(1, Ordering::Relaxed);
        shared.stats.received.fetch_add(1, Ordering::Relaxed);
        shared.stats.zk.add(C::BytesReceivedCount, buf.len() as i64 + 4);
        let r = &mut Reader::with_max_len(&buf, max);
        let Ok(hdr) = RequestHeader::read(r) else { return };
        conn.stats.last_cxid.store(i64::from(hdr.xid), Ordering::Relaxed);
        if conn.session_ended.load(Ordering::Acquire) {
            // The session was closed or expired: nothing more of it runs.
            conn.send(reply_frame(hdr.xid, -1, ErrorCode::SessionExpired, &Response::Empty));
            conn.close();
            return;
        }
        touch.store(shared.now_ms(), Ordering::Relaxed);
        let body = &buf[r.position()..];
        let req = match Request::decode(hdr.op, body, max) {
            Ok(req) => req,
            Err(RequestError::InvalidMultiOp { .. }) if hdr.op == OpCode::Multi.code() => {
                // A multi holding a read op: ZooKeeper fails it in preparation, which logs an
                // error txn (a zxid) and answers MARSHALLINGERROR; the connection stays.
                conn.pending.fetch_add(1, Ordering::AcqRel);
                shared.outstanding.fetch_add(1, Ordering::AcqRel);
                let ev = Input::FailedWrite {
                    conn: conn.clone(),
                    xid: hdr.xid,
                    err: ErrorCode::MarshallingError,
                    received,
                };
                if core.send(ev).is_err() {
                    return;
                }
                continue;
            }
            Err(RequestError::UnknownOpcode(op)) | Err(RequestError::InvalidMultiOp { op, .. }) => {
                tracing::info!(remote = %conn.remote, op, "unimplemented opcode; closing");
                conn.send(reply_frame(hdr.xid, -1, ErrorCode::Unimplemented, &Response::Empty));
                return;
            }
            Err(e) => {
                tracing::info!(remote = %conn.remote, error = %e, "malformed request; closing");
                conn.send(reply_frame(hdr.xid, -1, ErrorCode::MarshallingError, &Response::Empty));
                return;
            }
        };
        match &req {
            Request::Auth(a) => {
                let added = authenticate(a, &shared.settings.super_digest, conn.remote, limits)
                    .and_then(|ids| {
                        let mut v = (*auth).clone();
                        for id in ids {
                            if !v.contains(&id) {
                                v.push(id);
                            }
                        }
                        if v.len() > limits.auth_ids_max {
                            tracing::info!(
                                remote = %conn.remote,
                                max = limits.auth_ids_max,
                                "too many authenticated ids on one connection; refusing"
                            );
                            return None;
                        }
                        Some(v)
                    });
                match added {
                    Some(v) => {
                        auth = Arc::new(v);
                        *conn.auth.lock().unwrap_or_else(|p| p.into_inner()) = auth.clone();
                        conn.send(reply_frame(hdr.xid, 0, ErrorCode::Ok, &Response::Empty));
                    }
                    None => {
                        let frame =
                            reply_frame(hdr.xid, 0, ErrorCode::AuthFailed, &Response::Empty);
                        refuse_authentication(shared, conn, frame).await;
                        return;
                    }
                }
                continue;
            }
            Request::Sasl(t) => {
                match sasl_step(shared, conn, &mut sasl, t.token.as_slice()) {
                    SaslAnswer::Token(token) => {
                        let body = Response::Sasl(crate::proto::SaslToken { token });
                        conn.send(reply_frame(hdr.xid, 0, ErrorCode::Ok, &body));
                    }
                    SaslAnswer::Authenticated(token, ids) => {
                        let mut v = (*auth).clone();
                        for id in ids {
                            if !v.contains(&id) {
                                v.push(id);
                            }
                        }
                        if v.len() > limits.auth_ids_max {
                            tracing::info!(remote = %conn.remote, max = limits.auth_ids_max, "too many authenticated ids on one connection; refusing");
                            refuse_authentication(shared, conn, sasl_failure_frame(hdr.xid)).await;
                            return;
                        }
                        auth = Arc::new(v);
                        *conn.auth.lock().unwrap_or_else(|p| p.into_inner()) = auth.clone();
                        let body = Response::Sasl(crate::proto::SaslToken { token });
                        conn.send(reply_frame(hdr.xid, 0, ErrorCode::Ok, &body));
                    }
                    SaslAnswer::Failed => {
                        refuse_authentication(shared, conn, sasl_failure_frame(hdr.xid)).await;
                        return;
                    }
                }
                continue;
            }
            _ => {}
        }
        if let Some(schemes) = &shared.settings.enforce_auth {
            if !auth.iter().any(|id| schemes.contains(&id.scheme)) {
                // ZooKeeper's AuthenticationHelper: no body, then the connection closes.
                tracing::info!(
                    remote = %conn.remote,
                    op = hdr.op,
                    schemes = %schemes.join(","),
                    "a request before authentication with an enforced scheme; closing"
                );
                shared.auth_failed.fetch_add(1, Ordering::Relaxed);
                let code = ErrorCode::SessionClosedRequireSaslAuth;
                conn.send(reply_frame(hdr.xid, 0, code, &Response::Empty));
                conn.close();
                return;
            }
        }
        let op = OpCode::from_code(hdr.op).unwrap_or(OpCode::Notification);
        if answer_locally(shared, conn, ReadJob { xid: hdr.xid, req: &req, auth: &auth, received })
        {
            continue;
        }
        let closing = matches!(req, Request::CloseSession);
        conn.pending.fetch_add(1, Ordering::AcqRel);
        shared.outstanding.fetch_add(1, Ordering::AcqRel);
        if core
            .send(Input::Request {
                conn: conn.clone(),
                xid: hdr.xid,
                op,
                req,
                auth: auth.clone(),
                received,
            })
            .is_err()
        {
            return;
        }
        if closing {
            // The pipeline answers and closes; stop reading.
            let _ = (&mut *closed).await;
            return;
        }
    }
}

/// How long a failed authentication waits before its answer. Guessing passwords over one
/// connection gets no faster than this, and a client that reports itself connected before it
/// authenticates (kazoo sets CONNECTED, then runs SASL) has time to see the connection up
/// before it fails; answered at once, kazoo's `start()` can lose that race and report a
/// connect time-out instead of the authentication failure.
pub const AUTH_FAILURE_DELAY: Duration = Duration::from_millis(100);

/// Answers a failed authentication with `frame` after [`AUTH_FAILURE_DELAY`], then closes
/// the connection. Only this connection waits.
async fn refuse_authentication(shared: &Shared, conn: &Conn, frame: Vec<u8>) {
    shared.auth_failed.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(AUTH_FAILURE_DELAY).await;
    conn.send(frame);
    conn.close();
}

/// AUTHFAILED to a SASL request, as ZooKeeper writes it: the header, then a SetSASLResponse
/// with a null token (its clients read that body even after an error; the Java client then
/// reports the failure as AuthFailed).
fn sasl_failure_frame(xid: i32) -> Vec<u8> {
    let mut payload = Vec::new();
    crate::proto::ReplyHeader { xid, zxid: 0, err: ErrorCode::AuthFailed.code() }
        .write(&mut payload);
    crate::proto::SaslToken { token: crate::proto::Data::null() }.write(&mut payload);
    let mut f = (payload.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(&payload);
    f
}

/// A connection's SASL exchange: the mechanism's state, and how many steps it has taken.
struct SaslState {
    nonce: Option<String>,
    steps: u32,
    done: bool,
    /// A Kerberos exchange under way.
    gss: Option<crate::sasl::gssapi::Acceptor>,
}

/// The most messages a client's Kerberos exchange may take (it needs three or four).
const GSSAPI_STEPS_MAX: u32 = 8;

/// What a SASL step answers.
enum SaslAnswer {
    /// A token, the exchange going on (or SASL off: ZooKeeper then answers OK with no token).
    Token(crate::proto::Data),
    /// The last token, and the ids the client now has.
    Authenticated(crate::proto::Data, Vec<Id>),
    /// AUTHFAILED, and the connection closes.
    Failed,
}

/// One step of a client's SASL exchange (DIGEST-MD5).
fn sasl_step(
    shared: &Shared,
    conn: &Conn,
    state: &mut Option<SaslState>,
    token: &[u8],
) -> SaslAnswer {
    use crate::sasl::digest::{DigestServer, Step};
    let Some(cfg) = &shared.settings.sasl else {
        // ZooKeeper without a JAAS server section answers OK with a null token.
        tracing::info!(remote = %conn.remote, "a SASL request, but SASL is not configured (no JAAS server section)");
        return SaslAnswer::Token(crate::proto::Data::null());
    };
    let st = state.get_or_insert(SaslState { nonce: None, steps: 0, done: false, gss: None });
    st.steps += 1;
    let failed = |why: String| {
        tracing::info!(remote = %conn.remote, reason = %why, "SASL authentication failed");
        if cfg.allow_failed_clients {
            SaslAnswer::Token(crate::proto::Data::null())
        } else {
            SaslAnswer::Failed
        }
    };
    if let Some(k) = &cfg.kerberos {
        return gssapi_step(cfg, k, conn, st, token, failed);
    }
    if st.done || st.steps > 2 {
        return failed("the DIGEST-MD5 exchange is already over".into());
    }
    let mut server = DigestServer::new(crate::sasl::SERVICE, crate::sasl::DIGEST_REALM, &cfg.users);
    // The exchange has two steps; the server's state between them is the nonce it sent.
    if let Some(n) = &st.nonce {
        server.resume(n.clone());
    }
    let mut nonce = [0u8; 24];
    rand::Rng::fill(&mut rand::rng(), &mut nonce[..]);
    match server.step(token, &nonce) {
        Ok(Step::Challenge(c)) => {
            st.nonce = server.nonce().map(str::to_owned);
            SaslAnswer::Token(crate::proto::Data::from(c))
        }
        Ok(Step::Done { token, user }) => {
            st.done = true;
            let ids = cfg.ids_of(&user);
            tracing::debug!(remote = %conn.remote, user = %user, "SASL (DIGEST-MD5) authenticated");
            SaslAnswer::Authenticated(crate::proto::Data::from(token), ids)
        }
        Err(e) => {
            st.done = true;
            failed(e.to_string())
        }
    }
}

/// One step of a client's Kerberos exchange.
fn gssapi_step(
    cfg: &crate::sasl::SaslConfig,
    k: &crate::sasl::Kerberos,
    conn: &Conn,
    st: &mut SaslState,
    token: &[u8],
    failed: impl Fn(String) -> SaslAnswer,
) -> SaslAnswer {
    use crate::sasl::gssapi::{AcceptStep, Acceptor};
    if st.done || st.steps > GSSAPI_STEPS_MAX {
        st.gss = None;
        return failed("the Kerberos exchange is already over".into());
    }
    if st.gss.is_none() {
        match Acceptor::new(k.principal.as_deref(), k.keytab.as_deref()) {
            Ok(a) => st.gss = Some(a),
            Err(e) => {
                st.done = true;
                return failed(e.to_string());
            }
        }
    }
    let Some(acceptor) = st.gss.as_mut() else { return failed("no Kerberos exchange".into()) };
    match acceptor.step(token) {
        Ok(AcceptStep::Continue(t)) => SaslAnswer::Token(crate::proto::Data::from(t)),
        Ok(AcceptStep::Done { principal }) => {
            st.done = true;
            st.gss = None;
            let ids = cfg.ids_of(&principal);
            tracing::info!(remote = %conn.remote, principal = %principal, id = %ids[0].id, "SASL (Kerberos) authenticated");
            SaslAnswer::Authenticated(crate::proto::Data::null(), ids)
        }
        Err(e) => {
            st.done = true;
            st.gss = None;
            failed(e.to_string())
        }
    }
}

/// The ids an auth packet adds, or `None` if it fails (unknown scheme, bad digest).
fn authenticate(
    a: &AuthPacket,
    super_digest: &Option<String>,
    remote: SocketAddr,
    limits: &crate::limits::Limits,
) -> Option<Vec<Id>> {
    if a.auth.len() > limits.auth_bytes_max || a.scheme.len() > limits.auth_bytes_max {
        tracing::info!(%remote, bytes = a.auth.len(), max = limits.auth_bytes_max, "auth credentials too long; refusing");
        return None;
    }
    match a.scheme.as_str() {
        // ZooKeeper's ip provider authenticates the connection's own address.
        "ip" => Some(vec![Id { scheme: "ip".into(), id: remote.ip().to_string() }]),
        "digest" => {
            let text = std::str::from_utf8(a.auth.as_slice()).ok()?;
            let id = digest_of_auth(text);
            let mut ids = Vec::new();
            if super_digest.as_deref() == Some(id.as_str()) {
                ids.push(Id { scheme: "super".into(), id: String::new() });
            }
            ids.push(Id { scheme: "digest".into(), id });
            Some(ids)
        }
        _ => None,
    }
}
