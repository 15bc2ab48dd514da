//! Client connections over TCP (tokio): the only place in the server that touches sockets.
//!
//! Per connection: a reader task that checks each frame's length against jute.maxbuffer
//! *before* reading (or allocating for) its body, performs the handshake, answers reads from
//! the published tree, and hands writes to the pipeline; and a writer task that drains the
//! connection's outbound queue, coalescing every frame that is waiting into one write.
//! Four-letter words are recognised in the first four bytes of a fresh connection.

pub mod fourlw;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::core::{answer_read, reads, reply_frame, Conn, ConnStats, Event, Out, ReadJob, Shared};
use crate::proto::{
    AuthPacket, ConnectRequest, ErrorCode, Id, Jute, OpCode, Reader, Request, RequestError,
    RequestHeader, Response,
};
use crate::tree::acl::digest_of_auth;

/// Accepts connections until `stop` fires.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    core: Sender<Event>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let per_ip: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
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
        let limit = shared.settings.max_client_cnxns;
        {
            let mut m = per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = m.entry(remote.ip()).or_default();
            if limit > 0 && *n >= limit {
                tracing::warn!(%remote, limit, "too many connections from this address (maxClientCnxns); closing");
                continue;
            }
            *n += 1;
        }
        let (shared, core, per_ip, stop) =
            (shared.clone(), core.clone(), per_ip.clone(), stop.clone());
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            connection(stream, remote, id, &shared, &core, stop).await;
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
/// or above `max` is an error before anything is allocated for the body.
async fn read_frame(
    rd: &mut BufReader<OwnedReadHalf>,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<()>> {
    let mut len4 = [0u8; 4];
    match rd.read_exact(&mut len4).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = i32::from_be_bytes(len4);
    if len < 0 || len as usize > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("Len error {len}"),
        ));
    }
    buf.resize(len as usize, 0);
    rd.read_exact(buf).await?;
    Ok(Some(()))
}

async fn writer(
    mut wr: OwnedWriteHalf,
    mut rx: UnboundedReceiver<Out>,
    closed: tokio::sync::oneshot::Sender<()>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
    'outer: while let Some(first) = rx.recv().await {
        let mut close = false;
        match first {
            Out::Frame(f) => buf.extend_from_slice(&f),
            Out::Shared(f) => buf.extend_from_slice(&f),
            Out::Close => close = true,
        }
        // Everything already queued goes out in the same write.
        while !close && buf.len() < (1 << 20) {
            match rx.try_recv() {
                Ok(Out::Frame(f)) => buf.extend_from_slice(&f),
                Ok(Out::Shared(f)) => buf.extend_from_slice(&f),
                Ok(Out::Close) => close = true,
                Err(_) => break,
            }
        }
        if !buf.is_empty() {
            if wr.write_all(&buf).await.is_err() {
                break 'outer;
            }
            buf.clear();
        }
        if close {
            break;
        }
    }
    let _ = wr.shutdown().await;
    let _ = closed.send(());
}

#[allow(clippy::too_many_lines)]
async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    id: u64,
    shared: &Arc<Shared>,
    core: &Sender<Event>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(64 << 10, rd);
    let max = shared.settings.max_buffer;

    // A four-letter word, or the length of the ConnectRequest.
    let mut first = [0u8; 4];
    if rd.read_exact(&mut first).await.is_err() {
        return;
    }
    if let Some(word) = fourlw::detect(&first) {
        let mask = if fourlw::wants_mask(word, shared) {
            let mut m = [0u8; 8];
            rd.read_exact(&mut m).await.ok().map(|_| i64::from_be_bytes(m))
        } else {
            None
        };
        let peer = rd.get_ref().peer_addr().ok();
        let answer = fourlw::answer(word, shared, peer, mask);
        let _ = wr.write_all(&answer).await;
        let _ = wr.shutdown().await;
        return;
    }
    let len = i32::from_be_bytes(first);
    if len < 0 || len as usize > max {
        tracing::info!(%remote, len, "refusing a connection whose first frame is too large (Len error)");
        return;
    }
    let mut body = vec![0u8; len as usize];
    if rd.read_exact(&mut body).await.is_err() {
        return;
    }
    let Ok(connect) = ConnectRequest::read(&mut Reader::with_max_len(&body, max)) else {
        tracing::info!(%remote, "malformed ConnectRequest; closing");
        return;
    };
    let our_zxid = shared.last_zxid.load(Ordering::Acquire);
    if connect.last_zxid_seen > our_zxid {
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
    let writer_task = tokio::spawn(writer(wr, out_rx, closed_tx));
    let conn = Arc::new(Conn {
        id,
        remote,
        out: out_tx,
        pending: AtomicUsize::new(0),
        session_id: AtomicI64::new(0),
        timeout_ms: AtomicI64::new(0),
        established_ms: shared.now_ms(),
        stats: ConnStats::default(),
        auth: std::sync::Mutex::new(Arc::new(vec![Id {
            scheme: "ip".into(),
            id: remote.ip().to_string(),
        }])),
    });
    conn.stats.lat_min.store(u64::MAX, Ordering::Relaxed);
    conn.stats.received.fetch_add(1, Ordering::Relaxed);
    shared.stats.received.fetch_add(1, Ordering::Relaxed);
    shared.conns.lock().unwrap_or_else(|p| p.into_inner()).insert(id, conn.clone());

    let touch: Option<Arc<AtomicU64>> = if connect.session_id == 0 {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = core.send(Event::CreateSession {
            conn: conn.clone(),
            timeout_ms: connect.time_out,
            read_only: connect.read_only,
            done: tx,
        });
        rx.await.ok().flatten().map(|(_, t)| t)
    } else {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = core.send(Event::Reconnect {
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
        serve_session(&mut rd, &conn, shared, core, &touch, &mut closed_rx, &mut stop).await;
    }
    conn.close();
    let session_id = conn.session_id.load(Ordering::Relaxed);
    shared.conns.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    let _ = core.send(Event::ConnClosed { conn_id: id, session_id });
    let _ = writer_task.await;
}

/// The request loop of an established session.
async fn serve_session(
    rd: &mut BufReader<OwnedReadHalf>,
    conn: &Arc<Conn>,
    shared: &Arc<Shared>,
    core: &Sender<Event>,
    touch: &AtomicU64,
    closed: &mut tokio::sync::oneshot::Receiver<()>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) {
    let max = shared.settings.max_buffer;
    let mut auth: Arc<Vec<Id>> =
        Arc::new(vec![Id { scheme: "ip".into(), id: conn.remote.ip().to_string() }]);
    let mut buf = Vec::new();
    let limit = shared.settings.global_outstanding_limit.max(1);
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
        let frame = tokio::select! {
            f = read_frame(rd, &mut buf, max) => f,
            _ = &mut *closed => return,
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
        touch.store(shared.now_ms(), Ordering::Relaxed);
        conn.stats.received.fetch_add(1, Ordering::Relaxed);
        shared.stats.received.fetch_add(1, Ordering::Relaxed);
        let r = &mut Reader::with_max_len(&buf, max);
        let Ok(hdr) = RequestHeader::read(r) else { return };
        conn.stats.last_cxid.store(i64::from(hdr.xid), Ordering::Relaxed);
        let body = &buf[r.position()..];
        let req = match Request::decode(hdr.op, body, max) {
            Ok(req) => req,
            Err(RequestError::InvalidMultiOp { .. }) if hdr.op == OpCode::Multi.code() => {
                // A multi holding a read op: ZooKeeper fails it in preparation, which logs an
                // error txn (a zxid) and answers MARSHALLINGERROR; the connection stays.
                conn.pending.fetch_add(1, Ordering::AcqRel);
                shared.outstanding.fetch_add(1, Ordering::AcqRel);
                let ev = Event::FailedWrite {
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
                match authenticate(a, &shared.settings.super_digest, conn.remote) {
                    Some(ids) => {
                        let mut v = (*auth).clone();
                        for id in ids {
                            if !v.contains(&id) {
                                v.push(id);
                            }
                        }
                        auth = Arc::new(v);
                        *conn.auth.lock().unwrap_or_else(|p| p.into_inner()) = auth.clone();
                        conn.send(reply_frame(hdr.xid, 0, ErrorCode::Ok, &Response::Empty));
                    }
                    None => {
                        shared.auth_failed.fetch_add(1, Ordering::Relaxed);
                        conn.send(reply_frame(hdr.xid, 0, ErrorCode::AuthFailed, &Response::Empty));
                        return;
                    }
                }
                continue;
            }
            Request::Sasl(_) => {
                // SASL arrives with TLS in a later release; refuse it as an unknown scheme.
                conn.send(reply_frame(hdr.xid, 0, ErrorCode::AuthFailed, &Response::Empty));
                return;
            }
            _ => {}
        }
        let op = OpCode::from_code(hdr.op).unwrap_or(OpCode::Notification);
        if reads::is_read(&req) && conn.pending.load(Ordering::Acquire) == 0 {
            // Nothing of ours is in the pipeline: answer from the published version, under
            // the read lock that orders it with watch events.
            let view = shared.view.read().unwrap_or_else(|p| p.into_inner());
            let tree = view.clone();
            let mut w = shared.watches.lock().unwrap_or_else(|p| p.into_inner());
            let job = ReadJob { xid: hdr.xid, req: &req, auth: &auth, received };
            answer_read(shared, &tree, &mut w, conn, job);
            drop(w);
            drop(view);
            continue;
        }
        let closing = matches!(req, Request::CloseSession);
        conn.pending.fetch_add(1, Ordering::AcqRel);
        shared.outstanding.fetch_add(1, Ordering::AcqRel);
        if core
            .send(Event::Request {
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

/// The ids an auth packet adds, or `None` if it fails (unknown scheme, bad digest).
fn authenticate(
    a: &AuthPacket,
    super_digest: &Option<String>,
    remote: SocketAddr,
) -> Option<Vec<Id>> {
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
