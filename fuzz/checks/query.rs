//! Wire bytes in, response bytes out: every input is answered as the listeners answer it, by
//! the zero-allocation fast path (`Authority::fast_answer`) and by the hickory request-handler
//! path (`petdns::dns::hickory_answer`: `Request::from_bytes`, then `Authority::handle_request`
//! into a `Capture`, FORMERR for what does not parse), over UDP and TCP, with a 1232-byte and
//! a 512-byte UDP cap, and before the first load.
//!
//! Invariants checked on every response: it decodes with `Message::from_vec`, carries the
//! query's id, has QR set, and over UDP fits the limit the client was given (its EDNS payload
//! within [512, cap], or 512 without EDNS). When the fast path answers, the hickory path must
//! answer the same message (decoded and compared whole, as the unit tests in
//! `src/dns/fast.rs` do). Over UDP the answer cache is checked too: a question answered
//! into a cache and then asked again with another id, the RD and CD bits flipped and its name
//! in another case must get, from the cache, exactly the bytes the fast path computes for it.
//!
//! The input is the raw DNS message, so a corpus file is a datagram `dig` could have sent and
//! a crash reproduces against the real binary as is.

use crate::cluster;

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, MessageType};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use petdns::admin::Metrics;
use petdns::dns::{Authority, Scratch, hickory_answer};
use petdns::index;

/// One `Authority` as a listener configures it.
struct Server {
    authority: Authority,
    /// `--max-udp-payload`.
    cap: u16,
    /// Which protocols to drive it with.
    tcp_too: bool,
}

struct Fixture {
    servers: Vec<Server>,
    runtime: tokio::runtime::Runtime,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let metrics = Metrics::new();
    let authority = |snap, cap| {
        Authority::new(
            Arc::new(ArcSwap::from_pointee(snap)),
            metrics.dns.clone(),
            cap,
        )
    };
    let servers = vec![
        Server {
            authority: authority(cluster::snapshot(), 1232),
            cap: 1232,
            tcp_too: true,
        },
        Server {
            authority: authority(cluster::snapshot(), 512),
            cap: 512,
            tcp_too: false,
        },
        // Before the first load: SERVFAIL in the zones, never NXDOMAIN.
        Server {
            authority: authority(index::placeholder(&cluster::config()), 1232),
            cap: 1232,
            tcp_too: false,
        },
    ];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    Fixture { servers, runtime }
});

/// What the listener would send back for `query`: the fast path's bytes when it answers
/// (`fast`), and the hickory path's (`slow`), each `None` when nothing is sent.
struct Answers {
    fast: Option<Vec<u8>>,
    slow: Option<Vec<u8>>,
}

fn answer(server: &Server, runtime: &tokio::runtime::Runtime, query: &[u8], tcp: bool) -> Answers {
    let fast = fast(server, query, &mut Scratch::new(), tcp);
    // What the listeners send when the fast path does not answer.
    let src: SocketAddr = "192.0.2.99:5353".parse().expect("static address");
    let slow = runtime.block_on(hickory_answer(&server.authority, query, src, tcp));
    Answers { fast, slow }
}

/// The fast path's answer with `scratch`, `None` when it leaves the query to the hickory path.
fn fast(server: &Server, query: &[u8], scratch: &mut Scratch, tcp: bool) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    server
        .authority
        .fast_answer(query, &mut out, scratch, tcp)
        .then_some(out)
}

/// `query` with another id, RD and CD flipped, and the letters of its question name in the
/// other case (as far as the name's labels can be walked).
fn variant(query: &[u8]) -> Vec<u8> {
    let mut v = query.to_vec();
    if v.len() < 12 {
        return v;
    }
    v[0] ^= 0x5a;
    v[1] ^= 0xa5;
    v[2] ^= 0x01;
    v[3] ^= 0x10;
    let mut i = 12;
    while let Some(&len) = v.get(i) {
        if len == 0 || len > 63 || i + 1 + len as usize > v.len() {
            break;
        }
        for b in &mut v[i + 1..i + 1 + len as usize] {
            if b.is_ascii_alphabetic() {
                *b ^= 0x20;
            }
        }
        i += 1 + len as usize;
    }
    v
}

/// The answer cache gives what the fast path computes: for `query` itself (a miss, then a
/// hit) and for its variant (a hit when the fast path answers both).
fn cache_agrees(server: &Server, query: &[u8], computed: Option<&[u8]>) {
    let mut scratch = Scratch::with_cache(1 << 20);
    for round in ["a miss", "a hit"] {
        assert_eq!(
            fast(server, query, &mut scratch, false).as_deref(),
            computed,
            "the answer cache changes the answer ({round}, cap {})",
            server.cap
        );
    }
    let other = variant(query);
    assert_eq!(
        fast(server, &other, &mut scratch, false),
        fast(server, &other, &mut Scratch::new(), false),
        "a cached answer differs from the computed one for another id, flags or case (cap {})",
        server.cap
    );
}

/// The UDP limit the client was given: its EDNS payload within [512, cap], 512 without EDNS.
fn udp_limit(query: &[u8], cap: u16) -> usize {
    let Ok(request) = Request::from_bytes(
        query.to_vec(),
        "192.0.2.99:5353".parse().expect("static address"),
        Protocol::Udp,
    ) else {
        return 512;
    };
    request
        .edns
        .as_ref()
        .map(|e| e.max_payload().clamp(512, cap.max(512)))
        .unwrap_or(512) as usize
}

fn check(path: &str, query: &[u8], response: &[u8], limit: usize) -> Message {
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
    assert!(
        response.len() <= limit,
        "{path}: {} bytes, over the limit of {limit}",
        response.len()
    );
    message
}

/// One input, as the fuzz target and the replay in `tests/fuzz_corpus.rs` give it; panics on
/// a broken invariant.
pub fn run(query: &[u8]) {
    let fixture = &*FIXTURE;
    for server in &fixture.servers {
        for tcp in [false, true] {
            if tcp && !server.tcp_too {
                continue;
            }
            let limit = if tcp {
                u16::MAX as usize
            } else {
                udp_limit(query, server.cap)
            };
            let Answers { fast, slow } = answer(server, &fixture.runtime, query, tcp);
            if !tcp {
                cache_agrees(server, query, fast.as_deref());
            }
            let slow = slow.map(|s| check("hickory path", query, &s, limit));
            if let Some(fast) = fast {
                let fast = check("fast path", query, &fast, limit);
                match slow {
                    Some(slow) => assert_eq!(
                        fast, slow,
                        "the fast path and the hickory path answer differently (cap {}, tcp {tcp})",
                        server.cap
                    ),
                    None => panic!("the fast path answers a query the hickory path does not"),
                }
            }
        }
    }
}
