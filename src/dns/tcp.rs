//! The TCP listener: several queries per connection (answered in order; what one read brings
//! is answered in one write), an idle timeout, and a cap on connections. At the cap, the
//! connection idle the longest is closed to make room, so clients that hold connections open
//! never lock out new ones; if every connection is busy answering, the new one is refused.

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
use super::{Authority, Capture, Scratch, wire};
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

/// Largest DNS message over TCP plus its length prefix.
const MAX_FRAME: usize = 2 + u16::MAX as usize;

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
    let (mut out, mut scratch) = (Vec::with_capacity(1232), Scratch::new());
    // Bytes read and not yet answered are `input[start..]`; one read takes whatever the client
    // has sent (often several queries), and the replies to all of them leave in one write.
    let mut input: Vec<u8> = Vec::with_capacity(4096);
    let mut start = 0;
    let mut replies: Vec<u8> = Vec::with_capacity(4096);
    // The idle timer and the two cancellation waiters are made once per connection, not per
    // read. Each message must arrive whole within `idle` of the last answer (or of the
    // connection's start); the timer is only moved when it fires before that.
    let closed = close.cancelled();
    let stopping = shutdown.cancelled();
    let timer = tokio::time::sleep(idle);
    tokio::pin!(closed, stopping, timer);
    let mut last_answer = tokio::time::Instant::now();
    loop {
        // Answer every whole message already read, in order.
        if whole_message(&input[start..]).is_some() {
            mark(conns, id, true);
        }
        while let Some(len) = whole_message(&input[start..]) {
            let query = &input[start + 2..start + 2 + len];
            let reply: Option<&[u8]> = if authority.fast_answer(query, &mut out, &mut scratch, true)
            {
                Some(&out)
            } else {
                out = slow(query, src, authority).await;
                (!out.is_empty()).then_some(&out[..])
            };
            if let Some(reply) = reply {
                replies.extend_from_slice(&(reply.len() as u16).to_be_bytes());
                replies.extend_from_slice(reply);
            }
            start += 2 + len;
            last_answer = tokio::time::Instant::now();
        }
        if !replies.is_empty() {
            if stream.write_all(&replies).await.is_err() {
                return;
            }
            replies.clear();
        }
        if start > 0 {
            mark(conns, id, false);
            // Keep the unanswered tail at the front.
            input.drain(..start);
            start = 0;
        }
        // Room for the message the tail starts (or a few more queries).
        let want = match input.len() {
            0 | 1 => 2,
            _ => 2 + u16::from_be_bytes([input[0], input[1]]) as usize,
        };
        input.reserve(want.clamp(4096, MAX_FRAME).saturating_sub(input.len()));
        let read = loop {
            tokio::select! {
                biased;
                r = stream.read_buf(&mut input) => break r,
                _ = &mut timer => {
                    let deadline = last_answer + idle;
                    if tokio::time::Instant::now() >= deadline {
                        return;
                    }
                    timer.as_mut().reset(deadline);
                }
                _ = &mut closed => return,
                _ = &mut stopping => return,
            }
        };
        match read {
            Ok(n) if n > 0 => {}
            _ => return,
        }
    }
}

/// The length of the message at the front of `buf` when all of it has arrived.
fn whole_message(buf: &[u8]) -> Option<usize> {
    let len = u16::from_be_bytes([*buf.first()?, *buf.get(1)?]) as usize;
    (buf.len() >= 2 + len).then_some(len)
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
