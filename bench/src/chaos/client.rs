//! The chaos workers' ZooKeeper client: one request at a time, every step bounded by a
//! timeout, replies decoded. A timeout or a broken connection leaves the request's outcome
//! unknown; the worker then drops the connection (and its session) and opens a new one.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use corral_server::proto::{
    ConnectRequest, ConnectResponse, Data, Jute, ReplyHeader, Request, Response,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest reply accepted (the chaos workloads read small nodes and short child lists).
const REPLY_MAX: usize = 4 << 20;

/// A request's outcome as the client saw it.
#[derive(Debug)]
pub enum Outcome {
    /// The server answered: error code (0 = OK) and, when OK, the decoded body.
    Answered(i32, Option<Response>),
    /// No answer within the timeout, or the connection broke: it may or may not have happened.
    Unknown,
}

/// A watch notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event type (1 created, 2 deleted, 3 data changed, 4 children changed, -1 session).
    pub kind: i32,
    /// The node's path.
    pub path: String,
}

/// One session over one connection.
pub struct Client {
    stream: TcpStream,
    xid: i32,
    /// The session's id.
    pub session_id: i64,
    /// Notifications received so far, in arrival order.
    pub events: Vec<Event>,
}

impl Client {
    /// Connects to `addr` and opens a new session, all within `within`.
    pub async fn connect(
        addr: SocketAddr,
        session_timeout_ms: i32,
        within: Duration,
    ) -> Result<Client> {
        tokio::time::timeout(within, async {
            let mut stream =
                TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
            stream.set_nodelay(true)?;
            let req = ConnectRequest {
                protocol_version: 0,
                last_zxid_seen: 0,
                time_out: session_timeout_ms,
                session_id: 0,
                passwd: Data::from(vec![0u8; 16]),
                read_only: Some(false),
            };
            let body = req.encode();
            let mut f = (body.len() as i32).to_be_bytes().to_vec();
            f.extend_from_slice(&body);
            stream.write_all(&f).await?;
            let frame = read_frame(&mut stream).await?;
            let r = ConnectResponse::decode(&frame).context("bad ConnectResponse")?;
            if r.session_id == 0 {
                bail!("{addr} refused the session");
            }
            Ok(Client { stream, xid: 1, session_id: r.session_id, events: Vec::new() })
        })
        .await
        .with_context(|| format!("no session from {addr} within {within:?}"))?
    }

    /// Sends `req` and waits (at most `within`) for its reply.
    pub async fn call(&mut self, req: &Request, within: Duration) -> Outcome {
        let xid = self.xid;
        self.xid = self.xid.wrapping_add(1).max(1);
        let frame = req.encode_frame(xid);
        let r = tokio::time::timeout(within, async {
            self.stream.write_all(&frame).await?;
            loop {
                let Some((h, body)) = self.next_reply().await? else { continue };
                if h.xid != xid {
                    continue;
                }
                let resp = if h.err == 0 {
                    Some(Response::decode(req.opcode(), &body[16..], REPLY_MAX)?)
                } else {
                    None
                };
                return anyhow::Ok((h.err, resp));
            }
        })
        .await;
        match r {
            Ok(Ok((err, resp))) => Outcome::Answered(err, resp),
            _ => Outcome::Unknown,
        }
    }

    /// The next frame: a reply (header and body), or `None` for a notification (added to
    /// `events`).
    async fn next_reply(&mut self) -> Result<Option<(ReplyHeader, Vec<u8>)>> {
        let body = read_frame(&mut self.stream).await?;
        let h = ReplyHeader::decode(&body[..16.min(body.len())]).context("bad reply header")?;
        if h.xid == -1 {
            if let Ok(ev) = corral_server::proto::WatcherEvent::decode(&body[16..]) {
                self.events.push(Event { kind: ev.event_type, path: ev.path });
            }
            return Ok(None);
        }
        Ok(Some((h, body)))
    }

    /// Waits (at most `within`) for a notification: `Ok(true)` when one arrived (it is added
    /// to `events`), `Ok(false)` when none did, an error when the connection broke.
    pub async fn wait_event(&mut self, within: Duration) -> Result<bool> {
        let r = tokio::time::timeout(within, async {
            loop {
                if self.next_reply().await?.is_none() {
                    return anyhow::Ok(());
                }
            }
        })
        .await;
        match r {
            Ok(Ok(())) => Ok(true),
            Ok(Err(e)) => Err(e),
            Err(_) => Ok(false),
        }
    }

    /// Closes the session (best effort, bounded).
    pub async fn close(mut self) {
        let _ = self.call(&Request::CloseSession, Duration::from_millis(500)).await;
    }
}

async fn read_frame(s: &mut TcpStream) -> Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let n = i32::from_be_bytes(len);
    if n < 0 || n as usize > REPLY_MAX {
        bail!("frame of {n} bytes");
    }
    let mut body = vec![0u8; n as usize];
    s.read_exact(&mut body).await?;
    Ok(body)
}
