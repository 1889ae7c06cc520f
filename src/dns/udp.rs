//! The UDP listener: one thread per socket (several sockets share the port with SO_REUSEPORT,
//! so the kernel spreads clients over them). Plain questions are answered inline by the fast
//! path (`dns/fast.rs`), written straight into a reused buffer; everything else is handed to
//! hickory's parser and the request handler in a task of its own, so a slow answer
//! (forwarding) never holds up the socket. With response rate limiting on (`--rrl-*`), every
//! response of either path passes the limit of its client's prefix before it is sent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hickory_proto::op::{Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use std::net::UdpSocket;
use std::time::Duration;

use rustix::net::{RecvFlags, SendFlags};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::rrl::Rrl;
use super::{Authority, Scratch, wire};

/// Largest datagram read; anything longer is truncated by the kernel and fails to parse.
const RECV_BUFFER: usize = 4096;

/// Receives on `socket` until `shutdown`, on the calling (dedicated) thread: a blocking
/// receive and send per query cost two system calls, where a readiness-driven loop costs four.
/// The hickory path runs as tasks on `runtime`. The loop keeps an answer cache of
/// `answer_cache_bytes` (`dns/cache.rs`).
pub fn serve(
    socket: Arc<UdpSocket>,
    authority: Arc<Authority>,
    rrl: Option<Arc<Rrl>>,
    answer_cache_bytes: usize,
    shutdown: CancellationToken,
    runtime: Handle,
) {
    // Wake up now and then to notice shutdown.
    if let Err(error) = socket.set_read_timeout(Some(Duration::from_millis(200))) {
        debug!(%error, "cannot set a UDP read timeout");
    }
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut out = Vec::with_capacity(1232);
    let mut scratch = Scratch::with_cache(answer_cache_bytes);
    // A flag, not `shutdown.is_cancelled()` per datagram: that takes the token's mutex (0.7 % of
    // the server's CPU at 150,000 qps, in `perf`).
    let stop = Arc::new(AtomicBool::new(false));
    runtime.spawn({
        let stop = stop.clone();
        async move {
            shutdown.cancelled().await;
            stop.store(true, Ordering::Relaxed);
        }
    });
    while !stop.load(Ordering::Relaxed) {
        let (n, src) = match recv_from(&socket, &mut buf) {
            Ok(r) => r,
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(error) => {
                // ICMP errors from earlier sends surface here; the socket is still fine.
                debug!(%error, "UDP receive error");
                continue;
            }
        };
        if src.port() == 0 || src.ip().is_unspecified() {
            continue;
        }
        let query = &buf[..n];
        if authority.fast_answer(query, &mut out, &mut scratch, false) {
            if let Some(rrl) = &rrl
                && !rrl.admit(src.ip(), &mut out)
            {
                continue;
            }
            if let Err(error) = rustix::net::sendto(&*socket, &out, SendFlags::empty(), &src) {
                debug!(%error, %src, "UDP send error");
            }
            continue;
        }
        // No header, or a response (never answer those: reflection): no reply at all.
        if n < 12 || query[2] & 0x80 != 0 {
            continue;
        }
        let bytes = query.to_vec();
        let responder = UdpResponder {
            socket: socket.clone(),
            dst: src,
            rrl: rrl.clone(),
        };
        let authority = authority.clone();
        runtime.spawn(async move { slow(bytes, responder, authority).await });
    }
}

/// One datagram into `buf`, and who sent it. A plain system call: the standard library's goes
/// through glibc's `recvfrom`, a cancellation point that updates the thread's cancellation state
/// twice per call once the process has threads (1.4 % of the server's CPU at 150,000 qps, in
/// `perf`, where the single-threaded floor pays none of it).
fn recv_from(socket: &UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    let (n, _, src) = rustix::net::recvfrom(socket, buf, RecvFlags::empty())?;
    // A UDP socket of ours always has an IPv4 or IPv6 sender.
    let src = src
        .and_then(|a| SocketAddr::try_from(a).ok())
        .ok_or_else(|| std::io::Error::other("datagram without an IP sender"))?;
    Ok((n, src))
}

/// The hickory path: full parse, the request handler, hickory's encoder.
async fn slow(bytes: Vec<u8>, responder: UdpResponder, authority: Arc<Authority>) {
    let src = responder.dst;
    // hickory's parser ignores bytes after the last record: refuse them here.
    if wire::has_trailing_bytes(&bytes) {
        debug!(%src, "bytes after the last record");
        if let Some(mut out) = formerr(&bytes) {
            responder.send(&mut out);
        }
        return;
    }
    match Request::from_bytes(bytes.clone(), src, Protocol::Udp) {
        Ok(request) => {
            authority
                .handle_request::<_, TokioTime>(&request, responder)
                .await;
        }
        Err(error) => {
            debug!(%error, %src, "malformed query");
            if let Some(mut out) = formerr(&bytes) {
                responder.send(&mut out);
            }
        }
    }
}

/// FORMERR for a message whose header parses (12 bytes or more) but whose rest does not: the
/// header echoed as a response, no sections. `None` without a header.
pub(super) fn formerr(bytes: &[u8]) -> Option<Vec<u8>> {
    let header = Header::read(&mut BinDecoder::new(bytes)).ok()?;
    let mut metadata = Metadata::response_from_request(&header.metadata);
    metadata.response_code = ResponseCode::FormErr;
    let mut out = Vec::with_capacity(12);
    Header {
        metadata,
        counts: HeaderCounts::default(),
    }
    .emit(&mut BinEncoder::new(&mut out))
    .ok()?;
    Some(out)
}

/// Sends one encoded response back to the client, within its UDP limit and its rate limit.
#[derive(Clone)]
struct UdpResponder {
    socket: Arc<UdpSocket>,
    dst: SocketAddr,
    rrl: Option<Arc<Rrl>>,
}

impl UdpResponder {
    /// Sends `response` unless the rate limit drops it (or cuts it down to a slip first).
    fn send(&self, response: &mut Vec<u8>) {
        if let Some(rrl) = &self.rrl
            && !rrl.admit(self.dst.ip(), response)
        {
            return;
        }
        if let Err(error) = self.socket.send_to(response, self.dst) {
            debug!(%error, dst = %self.dst, "UDP send error");
        }
    }
}

#[async_trait::async_trait]
impl ResponseHandler for UdpResponder {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let (info, mut buf) = encode_udp(response);
        if let Some(rrl) = &self.rrl
            && !rrl.admit(self.dst.ip(), &mut buf)
        {
            return Ok(info);
        }
        self.socket.send_to(&buf, self.dst)?;
        Ok(info)
    }
}

/// Encodes a response for UDP: within the payload size of its OPT record, or RFC 1035's 512
/// bytes without one.
pub fn encode_udp<'a, A, N, S, D>(
    response: MessageResponse<'_, 'a, A, N, S, D>,
) -> (ResponseInfo, Vec<u8>)
where
    A: Iterator<Item = &'a Record> + Send + 'a,
    N: Iterator<Item = &'a Record> + Send + 'a,
    S: Iterator<Item = &'a Record> + Send + 'a,
    D: Iterator<Item = &'a Record> + Send + 'a,
{
    let limit = response
        .edns()
        .map(|e| e.max_payload().max(512))
        .unwrap_or(512);
    encode(response, limit)
}

/// Encodes a response within `limit` bytes; SERVFAIL (header only) if it cannot be encoded.
pub fn encode<'a, A, N, S, D>(
    response: MessageResponse<'_, 'a, A, N, S, D>,
    limit: u16,
) -> (ResponseInfo, Vec<u8>)
where
    A: Iterator<Item = &'a Record> + Send + 'a,
    N: Iterator<Item = &'a Record> + Send + 'a,
    S: Iterator<Item = &'a Record> + Send + 'a,
    D: Iterator<Item = &'a Record> + Send + 'a,
{
    let id = response.metadata().id;
    let mut buf = Vec::with_capacity(512);
    let encoded = {
        let mut enc = BinEncoder::new(&mut buf);
        enc.set_max_size(limit);
        response.destructive_emit(&mut enc)
    };
    match encoded {
        Ok(info) => (info, buf),
        Err(error) => {
            debug!(%error, "cannot encode a response; answering SERVFAIL");
            buf.clear();
            let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
            metadata.response_code = ResponseCode::ServFail;
            let header = Header {
                metadata,
                counts: HeaderCounts::default(),
            };
            let _ = header.emit(&mut BinEncoder::new(&mut buf));
            (ResponseInfo::from(header), buf)
        }
    }
}

/// A response handler that keeps the encoded response instead of sending it: for a connection
/// that writes it itself (TCP), and for tests and benchmarks.
#[derive(Clone, Default)]
pub struct Capture {
    /// `None`: the UDP limit of the response's OPT record; `Some(n)`: at most `n` bytes.
    limit: Option<u16>,
    bytes: Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Capture {
    /// Encodes as for UDP.
    pub fn udp() -> Self {
        Capture::default()
    }

    /// Encodes as for TCP (up to 65,535 bytes).
    pub fn tcp() -> Self {
        Capture {
            limit: Some(u16::MAX),
            ..Capture::default()
        }
    }

    /// The last response encoded (empty if none).
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.bytes.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let (info, buf) = match self.limit {
            Some(limit) => encode(response, limit),
            None => encode_udp(response),
        };
        *self.bytes.lock().unwrap_or_else(|p| p.into_inner()) = buf;
        Ok(info)
    }
}
