//! The TCP listener: several queries per connection (answered in order), an idle timeout, and
//! a cap on connections. At the cap, the connection idle the longest is closed to make room,
//! so clients that hold connections open never lock out new ones; if every connection is busy
//! answering, the new one is refused.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::udp::formerr;
use super::{Authority, Capture, wire};
use crate::admin::DnsMetrics;

#[derive(Clone, Copy, Debug)]
pub struct TcpConfig {
    /// A connection with no query for this long is closed.
    pub idle_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
}

struct Conn {
    last_active: Instant,
    busy: bool,
    close: CancellationToken,
}

/// The open connections. A std mutex: held for a few map operations, never across an await.
#[derive(Default)]
struct Conns {
    next: u64,
    open: HashMap<u64, Conn>,
}

pub async fn serve(
    listener: TcpListener,
    authority: Arc<Authority>,
    cfg: TcpConfig,
    shutdown: CancellationToken,
) {
    let conns = Arc::new(Mutex::new(Conns::default()));
    loop {
        let (stream, src) = tokio::select! {
            r = listener.accept() => match r {
                Ok(r) => r,
                Err(error) => {
                    debug!(%error, "TCP accept error");
                    // Out of file descriptors and the like: do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let metrics = authority.metrics();
        metrics.tcp_accepted.inc();
        let Some((id, close)) = admit(&conns, cfg.max_connections, metrics) else {
            debug!(%src, "every TCP connection is busy: refusing one");
            metrics.tcp_refused.inc();
            continue;
        };
        let (conns, authority) = (conns.clone(), authority.clone());
        let token = shutdown.clone();
        tokio::spawn(async move {
            connection(
                stream,
                src,
                id,
                &conns,
                &authority,
                cfg.idle_timeout,
                close,
                token,
            )
            .await;
            let mut c = lock(&conns);
            c.open.remove(&id);
            authority.metrics().tcp_open.set(c.open.len() as i64);
        });
    }
    // Close what is open; each connection finishes the query it is answering.
    for c in lock(&conns).open.values() {
        c.close.cancel();
    }
}

fn lock(conns: &Mutex<Conns>) -> std::sync::MutexGuard<'_, Conns> {
    conns
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Registers a new connection, closing the longest-idle one at the cap.
fn admit(
    conns: &Mutex<Conns>,
    max: usize,
    metrics: &DnsMetrics,
) -> Option<(u64, CancellationToken)> {
    let mut c = lock(conns);
    if c.open.len() >= max.max(1) {
        let oldest = c
            .open
            .iter()
            .filter(|(_, s)| !s.busy)
            .min_by_key(|(_, s)| s.last_active)
            .map(|(id, _)| *id)?;
        if let Some(evicted) = c.open.remove(&oldest) {
            evicted.close.cancel();
            metrics.tcp_closed_at_cap.inc();
        }
    }
    let id = c.next;
    c.next += 1;
    let close = CancellationToken::new();
    c.open.insert(
        id,
        Conn {
            last_active: Instant::now(),
            busy: false,
            close: close.clone(),
        },
    );
    metrics.tcp_open.set(c.open.len() as i64);
    Some((id, close))
}

fn mark(conns: &Mutex<Conns>, id: u64, busy: bool) {
    if let Some(c) = lock(conns).open.get_mut(&id) {
        c.busy = busy;
        c.last_active = Instant::now();
    }
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    mut stream: TcpStream,
    src: SocketAddr,
    id: u64,
    conns: &Mutex<Conns>,
    authority: &Authority,
    idle: Duration,
    close: CancellationToken,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let (mut out, mut key, mut buf) = (
        Vec::with_capacity(1232),
        Vec::with_capacity(256),
        Vec::new(),
    );
    loop {
        // The length prefix, then the message; a client slower than the idle timeout at either
        // is closed.
        let len = tokio::select! {
            r = tokio::time::timeout(idle, stream.read_u16()) => match r {
                Ok(Ok(len)) => len as usize,
                _ => return,
            },
            _ = close.cancelled() => return,
            _ = shutdown.cancelled() => return,
        };
        buf.resize(len, 0);
        match tokio::time::timeout(idle, stream.read_exact(&mut buf)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        mark(conns, id, true);
        let reply: Option<&[u8]> = if authority.fast_answer(&buf, &mut out, &mut key, true) {
            Some(&out)
        } else {
            out = slow(&buf, src, authority).await;
            (!out.is_empty()).then_some(&out[..])
        };
        if let Some(reply) = reply {
            let mut framed = Vec::with_capacity(reply.len() + 2);
            framed.extend_from_slice(&(reply.len() as u16).to_be_bytes());
            framed.extend_from_slice(reply);
            if stream.write_all(&framed).await.is_err() {
                return;
            }
        }
        mark(conns, id, false);
    }
}

/// The hickory path for one TCP message; empty when there is nothing to send.
async fn slow(bytes: &[u8], src: SocketAddr, authority: &Authority) -> Vec<u8> {
    if bytes.len() < 12 || bytes[2] & 0x80 != 0 {
        return Vec::new();
    }
    // hickory's parser ignores bytes after the last record: refuse them here.
    if wire::has_trailing_bytes(bytes) {
        debug!(%src, "bytes after the last record");
        return formerr(bytes).unwrap_or_default();
    }
    match Request::from_bytes(bytes.to_vec(), src, Protocol::Tcp) {
        Ok(request) => {
            let capture = Capture::tcp();
            authority
                .handle_request::<_, TokioTime>(&request, capture.clone())
                .await;
            capture.take()
        }
        Err(error) => {
            debug!(%error, %src, "malformed TCP query");
            formerr(bytes).unwrap_or_default()
        }
    }
}
