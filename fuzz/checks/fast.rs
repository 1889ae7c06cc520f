//! Wire bytes in, the fast path's response out, without the hickory request handler: fast
//! enough (no runtime, no hickory answer per input) to reach millions of inputs where `query`
//! reaches thousands.
//!
//! Every input is walked with `petdns::dns::layout` (the listeners' and the rate limiter's
//! section walker) and answered by `Authority::fast_answer` over UDP and TCP, with a 1232-byte
//! and a 512-byte UDP cap, with a forwarder configured, and before the first load.
//!
//! Invariants: the layout of a message lies inside it, in order; the fast path answers only
//! a message the walker reads to its last byte and that hickory's request parser accepts (else
//! the hickory path would answer FORMERR: the bug of docs/reliability.md), never before the
//! first load, and never NXDOMAIN when a miss may be forwarded. Every response it gives
//! decodes, carries the query's id, has QR set, echoes the question byte for byte (0x20 case
//! included), has an OPT record exactly when the query had one, and over UDP fits the limit
//! the client was given (its EDNS payload within [512, cap], or 512 without EDNS). The slip
//! the rate limiter would send instead (`truncate_to_slip`) decodes too: TC set, the same id,
//! response code and question, no records but the OPT.
//!
//! The input is the raw DNS message, as for `query`, so the two targets share their seeds.

use crate::cluster;

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use petdns::admin::Metrics;
use petdns::dns::{Authority, Forwarder, Layout, layout, truncate_to_slip};
use petdns::index;

const HEADER: usize = 12;

/// One `Authority` as a listener configures it.
struct Server {
    authority: Authority,
    /// `--max-udp-payload`.
    cap: u16,
    /// Loaded: false for the placeholder, which the fast path must never answer from.
    loaded: bool,
    /// `--forward`: a miss is the forwarder's, so never NXDOMAIN from the fast path.
    forwards: bool,
}

static SERVERS: LazyLock<Vec<Server>> = LazyLock::new(|| {
    let metrics = Metrics::new();
    let authority = |snap, cap| {
        Authority::new(
            Arc::new(ArcSwap::from_pointee(snap)),
            metrics.dns.clone(),
            cap,
        )
    };
    // Never contacted: the fast path does not forward, it leaves misses to the hickory path.
    let upstream: SocketAddr = "192.0.2.53:53".parse().expect("static address");
    let forwarder = Forwarder::new(&[upstream]).expect("a forwarder to a fixed address");
    vec![
        Server {
            authority: authority(cluster::snapshot(), 1232),
            cap: 1232,
            loaded: true,
            forwards: false,
        },
        Server {
            authority: authority(cluster::snapshot(), 512),
            cap: 512,
            loaded: true,
            forwards: false,
        },
        Server {
            authority: authority(cluster::snapshot(), 1232).with_forwarder(Arc::new(forwarder)),
            cap: 1232,
            loaded: true,
            forwards: true,
        },
        Server {
            authority: authority(index::placeholder(&cluster::config()), 1232),
            cap: 1232,
            loaded: false,
            forwards: false,
        },
    ]
});

/// The walker's answer must describe `m`: the question after the header, the records after
/// the question, all of it inside `m`, and the OPT record inside the records.
fn check_layout(m: &[u8], l: &Layout) {
    assert!(
        HEADER <= l.question_end && l.question_end <= l.end && l.end <= m.len(),
        "layout out of order or outside the message: {l:?}, {} bytes",
        m.len()
    );
    if let Some(opt) = &l.opt {
        // A name (one byte at least), then type, class, TTL and RDATA length.
        assert!(
            l.question_end <= opt.start && opt.end <= l.end && opt.start + 11 <= opt.end,
            "OPT record outside the records: {l:?}"
        );
    }
}

/// Checks a fast-path response to `query` (which the walker read as `l`), and the slip the
/// rate limiter would send instead.
fn check_response(server: &Server, query: &[u8], l: &Layout, response: &[u8], tcp: bool) {
    let path = format!("fast path (cap {}, tcp {tcp})", server.cap);
    // What the hickory path would have parsed: a query it cannot parse is FORMERR there.
    let protocol = if tcp { Protocol::Tcp } else { Protocol::Udp };
    let src: SocketAddr = "192.0.2.99:5353".parse().expect("static address");
    let request = Request::from_bytes(query.to_vec(), src, protocol).unwrap_or_else(|e| {
        panic!("{path}: answered a query the hickory path answers FORMERR ({e})")
    });
    let limit = match &request.edns {
        _ if tcp => u16::MAX as usize,
        Some(e) => e.max_payload().clamp(512, server.cap.max(512)) as usize,
        None => 512,
    };
    assert!(
        response.len() <= limit,
        "{path}: {} bytes, over the limit of {limit}",
        response.len()
    );
    let message = Message::from_vec(response)
        .unwrap_or_else(|e| panic!("{path}: the response does not decode: {e}: {response:02x?}"));
    let id = u16::from_be_bytes([query[0], query[1]]);
    assert_eq!(
        message.metadata.id, id,
        "{path}: the response has another id"
    );
    assert_eq!(
        message.metadata.message_type,
        MessageType::Response,
        "{path}: QR is not set"
    );
    assert_eq!(
        response.get(HEADER..l.question_end),
        Some(&query[HEADER..l.question_end]),
        "{path}: the question is not the client's, byte for byte"
    );
    assert_eq!(
        message.edns.is_some(),
        request.edns.is_some(),
        "{path}: an OPT record in one of query and response only"
    );
    let rcode = message.metadata.response_code;
    assert!(
        matches!(rcode, ResponseCode::NoError | ResponseCode::NXDomain),
        "{path}: answered {rcode:?}"
    );
    assert!(
        !(server.forwards && rcode == ResponseCode::NXDomain),
        "{path}: NXDOMAIN for a name the forwarder should have had"
    );

    let mut slip = response.to_vec();
    assert!(
        truncate_to_slip(&mut slip),
        "{path}: the rate limiter cannot cut the response down to a slip: {response:02x?}"
    );
    let cut = Message::from_vec(&slip)
        .unwrap_or_else(|e| panic!("{path}: the slip does not decode: {e}: {slip:02x?}"));
    assert!(cut.metadata.truncation, "{path}: the slip has no TC");
    assert_eq!(cut.metadata.id, id, "{path}: the slip has another id");
    assert_eq!(
        cut.metadata.response_code, rcode,
        "{path}: the slip changed the rcode"
    );
    assert_eq!(
        cut.queries, message.queries,
        "{path}: the slip changed the question"
    );
    assert!(
        cut.answers.is_empty() && cut.authorities.is_empty() && cut.additionals.is_empty(),
        "{path}: the slip carries records"
    );
    assert_eq!(
        cut.edns.is_some(),
        message.edns.is_some(),
        "{path}: the slip lost or gained the OPT record"
    );
}

/// One input, as the fuzz target and the replay in `tests/fuzz_corpus.rs` give it; panics on
/// a broken invariant.
pub fn run(query: &[u8]) {
    let walked = layout(query);
    if let Some(l) = &walked {
        check_layout(query, l);
    }
    let (mut out, mut key) = (Vec::new(), petdns::dns::Scratch::new());
    for server in SERVERS.iter() {
        for tcp in [false, true] {
            if !server.authority.fast_answer(query, &mut out, &mut key, tcp) {
                continue;
            }
            assert!(
                server.loaded,
                "the fast path answered before the first load"
            );
            let l = walked.as_ref().unwrap_or_else(|| {
                panic!("the fast path answered a message the walker cannot read: {query:02x?}")
            });
            assert_eq!(
                l.end,
                query.len(),
                "the fast path answered a message with bytes after its last record"
            );
            check_response(server, query, l, &out, tcp);
            let walked_out = layout(&out).unwrap_or_else(|| {
                panic!("the walker cannot read the fast path's response: {out:02x?}")
            });
            check_layout(&out, &walked_out);
            assert_eq!(
                walked_out.end,
                out.len(),
                "bytes after the response's last record"
            );
        }
    }
}
