//! A minimal ZooKeeper client for load generation: handshake, pipelined requests, replies in
//! order, notifications set aside. Built on corral-server's jute codec; talks to any
//! ZooKeeper-protocol server.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use corral_server::proto::{
    Acl, ConnectRequest, ConnectResponse, CreateRequest, Data, Id, Jute, PathWatchRequest,
    ReplyHeader, Request, SetDataRequest,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

static TLS: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();

/// Makes every session this process opens from now on a TLS one, with `config`.
pub fn use_tls(config: Arc<rustls::ClientConfig>) {
    let _ = TLS.set(config);
}

/// A session's byte stream: plain TCP or TLS over it.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// world:anyone with every permission.
pub fn open_acl() -> Vec<Acl> {
    vec![Acl { perms: 31, id: Id { scheme: "world".into(), id: "anyone".into() } }]
}

/// A create request.
pub fn create(path: String, value: &[u8], flags: i32) -> Request {
    Request::Create(CreateRequest {
        path,
        data: Data::from(value.to_vec()),
        acl: open_acl(),
        flags,
    })
}

/// A setData request (any version).
pub fn set_data(path: String, value: &[u8]) -> Request {
    Request::SetData(SetDataRequest { path, data: Data::from(value.to_vec()), version: -1 })
}

/// A getData request.
pub fn get_data(path: String, watch: bool) -> Request {
    Request::GetData(PathWatchRequest { path, watch })
}

/// One established session.
pub struct Session {
    stream: Box<dyn Io>,
    next_xid: i32,
    buf: Vec<u8>,
    filled: usize,
}

/// A reply or a watch notification.
#[derive(Debug)]
pub enum Incoming {
    /// A reply to the request with this xid.
    Reply(ReplyHeader),
    /// A watch event (xid -1).
    Event,
}

impl Session {
    /// Connects and completes the handshake.
    pub async fn connect(addr: &str, timeout_ms: i32) -> Result<Session> {
        let tcp = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
            .await
            .context("connect timed out")?
            .with_context(|| format!("connecting to {addr}"))?;
        tcp.set_nodelay(true)?;
        let mut stream: Box<dyn Io> = match TLS.get() {
            None => Box::new(tcp),
            Some(config) => {
                let ip = tcp.peer_addr()?.ip();
                let name = rustls::pki_types::ServerName::IpAddress(ip.into());
                let tls = tokio::time::timeout(
                    Duration::from_secs(10),
                    tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp),
                )
                .await
                .context("TLS handshake timed out")?
                .with_context(|| format!("TLS with {addr}"))?;
                Box::new(tls)
            }
        };
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            time_out: timeout_ms,
            session_id: 0,
            passwd: Data::from(vec![0u8; 16]),
            read_only: Some(false),
        };
        let body = req.encode();
        let mut f = (body.len() as i32).to_be_bytes().to_vec();
        f.extend_from_slice(&body);
        stream.write_all(&f).await?;
        let mut len = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut len))
            .await
            .context("handshake timed out")??;
        let mut resp = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
        stream.read_exact(&mut resp).await?;
        let r = ConnectResponse::decode(&resp).context("bad ConnectResponse")?;
        if r.session_id == 0 {
            bail!("the server refused the session");
        }
        Ok(Session { stream, next_xid: 1, buf: vec![0u8; 1 << 20], filled: 0 })
    }

    /// Appends a request frame to `out` and returns its xid.
    pub fn encode(&mut self, req: &Request, out: &mut Vec<u8>) -> i32 {
        let xid = self.next_xid;
        self.next_xid = self.next_xid.wrapping_add(1).max(1);
        out.extend_from_slice(&req.encode_frame(xid));
        xid
    }

    /// Writes bytes (one or many frames).
    pub async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Reads whatever frames have arrived (at least one), calling `f` for each.
    pub async fn read_some(&mut self, mut f: impl FnMut(Incoming)) -> Result<()> {
        let mut got_one = false;
        while !got_one {
            let n = self.stream.read(&mut self.buf[self.filled..]).await?;
            if n == 0 {
                bail!("the server closed the connection");
            }
            self.filled += n;
            let mut pos = 0;
            while self.filled - pos >= 4 {
                let len =
                    i32::from_be_bytes(self.buf[pos..pos + 4].try_into().expect("4")) as usize;
                if self.filled - pos - 4 < len {
                    if len + 4 > self.buf.len() {
                        self.buf.resize(len + 4, 0);
                    }
                    break;
                }
                let frame = &self.buf[pos + 4..pos + 4 + len];
                let h = ReplyHeader::decode(frame).context("bad reply header")?;
                if h.xid == -1 {
                    f(Incoming::Event);
                } else {
                    f(Incoming::Reply(h));
                }
                got_one = true;
                pos += 4 + len;
            }
            self.buf.copy_within(pos..self.filled, 0);
            self.filled -= pos;
            if self.filled == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
        }
        Ok(())
    }

    /// Sends one request and waits for its reply (setup work).
    pub async fn call(&mut self, req: &Request) -> Result<ReplyHeader> {
        let mut out = Vec::new();
        let xid = self.encode(req, &mut out);
        self.write(&out).await?;
        let mut reply = None;
        while reply.is_none() {
            self.read_some(|i| {
                if let Incoming::Reply(h) = i {
                    if h.xid == xid {
                        reply = Some(h);
                    }
                }
            })
            .await?;
        }
        Ok(reply.expect("set"))
    }

    /// Sends a ping (xid -2) and waits for its answer; watch events in between are skipped.
    pub async fn ping(&mut self) -> Result<()> {
        self.write(&Request::Ping.encode_frame(-2)).await?;
        let mut done = false;
        while !done {
            self.read_some(|i| {
                if let Incoming::Reply(h) = i {
                    done |= h.xid == -2;
                }
            })
            .await?;
        }
        Ok(())
    }

    /// Closes the session (closeSession, then the socket).
    pub async fn close(mut self) {
        let mut out = Vec::new();
        self.encode(&Request::CloseSession, &mut out);
        let _ = self.write(&out).await;
        let _ = tokio::time::timeout(Duration::from_millis(500), self.read_some(|_| {})).await;
    }
}
