//! The hickory path as a plain function of the message bytes: what a listener sends for a
//! message the fast path does not answer. For tests, benchmarks and the fuzz target (`fuzz/`),
//! which compare it with [`Authority::fast_answer`]. The listeners take the same steps in
//! their own `slow` functions (UDP sends through its rate limiter as it encodes).

use std::net::SocketAddr;

use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler};

use super::udp::formerr;
use super::{Authority, Capture, wire};

/// The response to `query` on the hickory path, encoded as for UDP (within the client's EDNS
/// payload, 512 bytes without one) or TCP, or `None` when nothing is sent: no reply without a
/// header or to a response (no reflection); a header-only FORMERR for bytes after the last
/// record or a body that does not parse; otherwise the request handler's answer.
pub async fn hickory_answer(
    authority: &Authority,
    query: &[u8],
    src: SocketAddr,
    tcp: bool,
) -> Option<Vec<u8>> {
    if query.len() < wire::HEADER || query[2] & 0x80 != 0 {
        return None;
    }
    if wire::has_trailing_bytes(query) {
        return formerr(query);
    }
    let protocol = if tcp { Protocol::Tcp } else { Protocol::Udp };
    let Ok(request) = Request::from_bytes(query.to_vec(), src, protocol) else {
        return formerr(query);
    };
    let capture = if tcp { Capture::tcp() } else { Capture::udp() };
    authority
        .handle_request::<_, TokioTime>(&request, capture.clone())
        .await;
    Some(capture.take()).filter(|bytes| !bytes.is_empty())
}
