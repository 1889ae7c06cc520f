//! The fast path (UDP and TCP): a plain question answered in place from the index.
//!
//! No allocation and no message decoding: the header and question are checked in place, the
//! name is lower-cased into a reused key buffer and found with `Snapshot::resolve` (one map
//! lookup). A fixed name's pre-encoded response is copied out with the client's id, flags and
//! question (its spelling, for 0x20) copied in; any other name's records are written after the
//! client's question by `WireSink`, from the compact index. Glue that does not fit is left out
//! whole, as on the hickory path; answers that do not fit are left out whole, with TC (the
//! client asks again over TCP). Anything unusual (other opcodes, EDNS versions or options
//! beyond the plain OPT, several questions, ANY and zone transfers, names outside the zones,
//! before the first load) returns `None` and goes to the hickory path, which is the reference
//! for every answer the fast path gives.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::cache::AnswerCache;
use crate::index::sink::WireSink;
use crate::index::{CLUSTER, FastZone, Node, Snapshot};

const HEADER: usize = 12;
const OPT_TYPE: u16 = 41;

/// What the fast path may do.
#[derive(Clone, Copy, Debug)]
pub struct FastConfig {
    /// Largest UDP response (and EDNS payload advertised).
    pub max_payload: u16,
    /// Answer NXDOMAIN here; false when forwarding, since a miss may be forwarded.
    pub nxdomain: bool,
    /// Over TCP: no size limit below 65,535 bytes.
    pub tcp: bool,
}

/// A question the fast path answered, for metrics.
pub struct Answered {
    pub qtype: RecordType,
    pub rcode: ResponseCode,
    /// Copied from the answer cache.
    pub from_cache: bool,
}

/// A parsed plain question.
struct Question {
    /// End of the question section.
    end: usize,
    qtype: u16,
    /// The client's EDNS payload size, when it sent an OPT record.
    edns: Option<u16>,
    /// Label start offsets in the key, for zone matching.
    starts: [u8; 128],
    labels: usize,
}

/// Answers `query` into `out` when it is a plain question petdns can answer from prepared
/// bytes; returns what it answered, for metrics, or `None` for the slow path.
/// With a `cache` (UDP only), a question answered before from `snap` is copied from it, and a
/// new answer is kept in it.
pub fn answer(
    snap: &Snapshot,
    query: &[u8],
    out: &mut Vec<u8>,
    key: &mut Vec<u8>,
    cfg: FastConfig,
    mut cache: Option<&mut AnswerCache>,
) -> Option<Answered> {
    if !snap.loaded {
        return None;
    }
    let q = parse(query, key)?;
    let qtype = RecordType::from(q.qtype);
    if matches!(
        qtype,
        RecordType::ANY | RecordType::AXFR | RecordType::IXFR | RecordType::OPT
    ) {
        return None;
    }
    // The payload as clamped, 0 without an OPT record: what the answer depends on besides
    // the name and type (the limit and the OPT record sent back).
    let payload = match q.edns {
        Some(p) => p.clamp(512, cfg.max_payload.max(512)),
        None => 0,
    };
    if let Some(cache) = cache.as_deref_mut()
        && let Some(hit) = cache.get(query, q.end, key, q.qtype, payload, out)
    {
        return Some(Answered {
            qtype,
            rcode: hit.rcode,
            from_cache: true,
        });
    }
    let zi = zone_of(&snap.fast_zones, key, &q)?;
    let zone = &snap.fast_zones[zi];
    let limit = match q.edns {
        _ if cfg.tcp => u16::MAX as usize,
        Some(p) => p.clamp(512, cfg.max_payload.max(512)) as usize,
        None => 512,
    };
    // The labels below the zone, leftmost first.
    let mut labels: [&[u8]; 128] = [&[]; 128];
    let below = q.labels - snap.zones[zi].num_labels;
    for (i, l) in labels.iter_mut().enumerate().take(below) {
        let at = q.starts[i] as usize;
        *l = &key[at + 1..at + 1 + key[at] as usize];
    }
    out.clear();
    // Where optional glue starts in a computed answer.
    let mut glue_at = None;
    let rcode = match snap.resolve(zi, key, &labels[..below]) {
        Some(Node::Core(core)) => match core.fast.rrsets.iter().find(|(t, _)| *t == qtype) {
            Some((_, prepared)) => {
                out.extend_from_slice(prepared);
                // The question was prepared in lower case; copy in the client's spelling.
                out[HEADER..HEADER + key.len()].copy_from_slice(&query[HEADER..HEADER + key.len()]);
                ResponseCode::NoError
            }
            None => {
                negative(out, query, &q, key.len(), zone);
                ResponseCode::NoError
            }
        },
        Some(node) => {
            out.extend_from_slice(&query[..q.end]);
            out[3] = 0;
            let (answers, additionals, failed) = {
                let mut sink = WireSink::new(out, snap.ttl, &snap.fast_zones[CLUSTER].wire);
                node.answer(qtype, &mut sink);
                glue_at = sink.glue_at;
                (sink.answers, sink.additionals, sink.failed)
            };
            if failed {
                out.clear();
                return None;
            }
            if answers == 0 {
                out.clear();
                negative(out, query, &q, key.len(), zone);
            } else {
                out[4..6].copy_from_slice(&[0, 1]);
                out[6..8].copy_from_slice(&answers.to_be_bytes());
                out[8..10].copy_from_slice(&[0, 0]);
                out[10..12].copy_from_slice(&additionals.to_be_bytes());
            }
            ResponseCode::NoError
        }
        None if cfg.nxdomain => {
            negative(out, query, &q, key.len(), zone);
            out[3] |= 3; // NXDOMAIN
            ResponseCode::NXDomain
        }
        None => return None,
    };
    // The client's id, RD and CD, and its spelling of the question.
    out[0] = query[0];
    out[1] = query[1];
    out[2] = 0x84 | (query[2] & 0x01);
    out[3] = (out[3] & 0x0f) | (query[3] & 0x10);
    let opt_len = if q.edns.is_some() { 11 } else { 0 };
    // The hickory path's budget (handler.rs): the records plus one more copy of the name,
    // which its encoder writes whole where this one points at the question. The same budget
    // here, so that both paths keep or leave out glue, and truncate, alike.
    let slack = key.len();
    if out.len() + opt_len + slack > limit {
        match glue_at {
            // Glue is optional: left out whole, without TC, as the hickory path does.
            Some(cut) if cut + opt_len + slack <= limit => {
                out.truncate(cut);
                out[10..12].copy_from_slice(&[0, 0]);
            }
            // A negative answer over the estimate (a name of nearly 255 bytes): the hickory
            // path sends it whole, as it always has.
            _ if out[6..8] == [0, 0] => {
                out.clear();
                return None;
            }
            // The answers do not fit: none of them, with TC, and the client asks again over
            // TCP (a partial record set would pass for the whole one).
            _ => {
                out.truncate(q.end);
                out[2] |= 0x02;
                out[6..12].fill(0);
            }
        }
    }
    if q.edns.is_some() {
        out.extend_from_slice(&[0, 0, 41]);
        out.extend_from_slice(&payload.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        let ar = u16::from_be_bytes([out[10], out[11]]) + 1;
        out[10..12].copy_from_slice(&ar.to_be_bytes());
    }
    if let Some(cache) = cache {
        cache.put(q.end, key, q.qtype, payload, rcode, out);
    }
    Some(Answered {
        qtype,
        rcode,
        from_cache: false,
    })
}

/// Header and question as sent, then the zone's SOA in Authority (NODATA; the caller sets the
/// rcode for NXDOMAIN). The SOA's owner is a pointer to the zone's labels in the question.
fn negative(out: &mut Vec<u8>, query: &[u8], q: &Question, name_len: usize, zone: &FastZone) {
    out.extend_from_slice(&query[..q.end]);
    out[2] = 0x84;
    out[3] = 0;
    out[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 1, 0, 0]);
    let ptr = (HEADER + name_len - zone.wire.len()) as u16;
    out.extend_from_slice(&(0xC000 | ptr).to_be_bytes());
    out.extend_from_slice(&zone.soa_tail);
}

/// The most specific zone holding the name, matched on label boundaries.
fn zone_of(zones: &[FastZone], key: &[u8], q: &Question) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, z) in zones.iter().enumerate() {
        let n = z.wire.len();
        if n <= key.len()
            && key[key.len() - n..] == z.wire[..]
            && (n == key.len() || q.starts[..q.labels].contains(&((key.len() - n) as u8)))
            && best.is_none_or(|b| zones[b].wire.len() < n)
        {
            best = Some(i);
        }
    }
    best
}

/// Checks the header and reads the question (and a plain OPT record) in place.
fn parse(m: &[u8], key: &mut Vec<u8>) -> Option<Question> {
    if m.len() < HEADER + 5 {
        return None;
    }
    // QR=0, opcode QUERY, not truncated; one question, no answers or authority, at most OPT.
    if m[2] & 0xfa != 0 || m[4..10] != [0, 1, 0, 0, 0, 0] || m[10] != 0 || m[11] > 1 {
        return None;
    }
    let mut starts = [0u8; 128];
    let mut labels = 0;
    let mut i = HEADER;
    loop {
        let len = *m.get(i)? as usize;
        if len == 0 {
            i += 1;
            break;
        }
        if len > 63 || labels == starts.len() {
            return None; // compression pointers, extended labels, absurd names: slow path
        }
        starts[labels] = (i - HEADER) as u8;
        labels += 1;
        i += 1 + len;
        if i - HEADER > 254 || i > m.len() {
            return None;
        }
    }
    // The name as sent, in lower case (its length bytes are below 64: no letters).
    key.clear();
    key.extend_from_slice(&m[HEADER..i]);
    lower_case(key);
    let qtype = u16::from_be_bytes([*m.get(i)?, *m.get(i + 1)?]);
    if m.get(i + 2..i + 4)? != [0, 1] {
        return None; // class IN only
    }
    let end = i + 4;
    let edns = if m[11] == 1 {
        // root name, TYPE OPT, CLASS = payload, TTL = ext-rcode 0, version 0, flags, RDLEN.
        let opt = m.get(end..end + 11)?;
        if opt[0] != 0
            || u16::from_be_bytes([opt[1], opt[2]]) != OPT_TYPE
            || opt[5] != 0
            || opt[6] != 0
        {
            return None;
        }
        let rdlen = u16::from_be_bytes([opt[9], opt[10]]) as usize;
        if end + 11 + rdlen != m.len() || !options_parse(&m[end + 11..]) {
            return None;
        }
        Some(u16::from_be_bytes([opt[3], opt[4]]))
    } else {
        if end != m.len() {
            return None;
        }
        None
    };
    Some(Question {
        end,
        qtype,
        edns,
        starts,
        labels,
    })
}

/// ASCII upper case to lower case, eight bytes at a time (a byte-wise loop was about 20
/// instructions a byte in callgrind, more than the rest of a cached answer).
fn lower_case(bytes: &mut [u8]) {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let lower = |w: u64| {
        let low7 = w & !HIGH;
        // High bit of each byte: at least 'A', and then not above 'Z', and not a byte >= 0x80.
        let upper = (low7 + 0x3f3f_3f3f_3f3f_3f3f) & !(low7 + 0x2525_2525_2525_2525) & !w & HIGH;
        w | (upper >> 2)
    };
    let mut words = bytes.chunks_exact_mut(8);
    for w in &mut words {
        let v = lower(u64::from_le_bytes([
            w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7],
        ]));
        w.copy_from_slice(&v.to_le_bytes());
    }
    let tail = words.into_remainder();
    let mut w = [0u8; 8];
    w[..tail.len()].copy_from_slice(tail);
    let v = lower(u64::from_le_bytes(w)).to_le_bytes();
    tail.copy_from_slice(&v[..tail.len()]);
}

/// True when the OPT record's options are well formed as hickory's parser reads them, so the
/// hickory path would answer rather than FORMERR: code and length pairs that tile the RDATA
/// exactly, and a Client Subnet option (RFC 7871) with a known family, a source prefix within
/// it and the address bytes that prefix needs. Anything else goes to the hickory path.
fn options_parse(mut rdata: &[u8]) -> bool {
    const CLIENT_SUBNET: u16 = 8;
    while !rdata.is_empty() {
        let Some((&[c0, c1, l0, l1], rest)) = rdata.split_first_chunk::<4>() else {
            return false;
        };
        let len = u16::from_be_bytes([l0, l1]) as usize;
        let Some((data, rest)) = rest.split_at_checked(len) else {
            return false;
        };
        if u16::from_be_bytes([c0, c1]) == CLIENT_SUBNET {
            let Some(&[f0, f1, source, _scope]) = data.first_chunk::<4>() else {
                return false;
            };
            let bits = match u16::from_be_bytes([f0, f1]) {
                1 => 32,
                2 => 128,
                _ => return false,
            };
            if source > bits || data.len() < 4 + source.div_ceil(8) as usize {
                return false;
            }
        }
        rdata = rest;
    }
    true
}

#[cfg(test)]
mod tests {
    //! The fast path must answer exactly as the hickory path does: every case here is answered
    //! both ways and the decoded messages compared whole.
    use std::collections::BTreeSet;
    use std::net::IpAddr;
    use std::sync::Arc;

    use arc_swap::ArcSwap;
    use hickory_proto::op::{Edns, Message, Query};
    use hickory_proto::rr::Name;
    use hickory_server::net::runtime::TokioTime;
    use hickory_server::net::xfer::Protocol;
    use hickory_server::server::{Request, RequestHandler};

    use super::*;
    use crate::admin::Metrics;
    use crate::dns::Authority;
    use crate::identity::{
        Condition, ConditionStatus, Identity, IdentityState, IdentityTable, Ordinals, PortSpec,
        SrvPriority,
    };
    use crate::index::{self, IndexConfig};

    fn table() -> IdentityTable {
        IdentityTable {
            namespace: "default".into(),
            stateful_set: "web".into(),
            service: "nginx".into(),
            ordinals: Ordinals {
                start: 0,
                replicas: 4,
            },
            pod_management_policy: "OrderedReady".into(),
            publish_not_ready_addresses: false,
            srv_priority: SrvPriority::Uniform,
            ports: vec![PortSpec {
                name: Some("web".into()),
                protocol: "TCP".into(),
                port: 80,
            }],
            identities: (0..4)
                .map(|o| Identity {
                    ordinal: o,
                    pod: format!("web-{o}"),
                    hostname: format!("web-{o}"),
                    addresses: vec![
                        format!("192.0.2.{}", 10 + o).parse::<IpAddr>().unwrap(),
                        format!("2001:db8::{}", 10 + o).parse::<IpAddr>().unwrap(),
                    ],
                    state: if o == 3 {
                        IdentityState::NotReady
                    } else {
                        IdentityState::Ready
                    },
                    published: o != 3,
                    node: None,
                    revision: Some("web-6d8f5c".into()),
                    claims: vec![format!("www-web-{o}")],
                })
                .collect(),
            conditions: vec![Condition {
                type_: "ServiceResolved".into(),
                status: ConditionStatus::True,
                reason: "ServiceResolved".into(),
                message: String::new(),
            }],
        }
    }

    /// The index settings of these tests, with the name server's addresses.
    fn config(ns_addresses: Vec<IpAddr>) -> IndexConfig {
        IndexConfig {
            zone: Name::from_ascii("cluster.local.").unwrap(),
            ttl: 5,
            negative_ttl: 7,
            ns_addresses,
        }
    }

    fn namespaces() -> BTreeSet<String> {
        ["default".to_string()].into()
    }

    fn authority() -> Authority {
        let (cfg, ns) = (config(vec!["192.0.2.53".parse().unwrap()]), namespaces());
        let snap = index::build(&[table()], &ns, &cfg, 1, 42);
        Authority::new(
            Arc::new(ArcSwap::from_pointee(snap)),
            Metrics::new().dns.clone(),
            1232,
        )
    }

    fn query(name: &str, rtype: RecordType, edns: Option<u16>, rd: bool, cd: bool) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 0xbeef;
        m.metadata.recursion_desired = rd;
        m.metadata.checking_disabled = cd;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
        if let Some(p) = edns {
            let mut e = Edns::new();
            e.set_max_payload(p);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    fn both(a: &Authority, q: &[u8]) -> (Option<Message>, Message) {
        let (mut out, mut key) = (Vec::new(), crate::dns::Scratch::new());
        let fast = a
            .fast_answer(q, &mut out, &mut key, false)
            .then(|| Message::from_vec(&out).unwrap());
        let capture = crate::dns::Capture::udp();
        let request = Request::from_bytes(
            q.to_vec(),
            "192.0.2.99:5353".parse().unwrap(),
            Protocol::Udp,
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(a.handle_request::<_, TokioTime>(&request, capture.clone()));
        let slow = Message::from_vec(&capture.take()).unwrap();
        (fast, slow)
    }

    #[test]
    fn fast_answers_equal_the_hickory_path() {
        let a = authority();
        let cases = [
            (
                "web-0.nginx.default.svc.cluster.local.",
                RecordType::A,
                Some(1232),
            ),
            (
                "WeB-1.NgInX.default.svc.Cluster.LOCAL.",
                RecordType::AAAA,
                Some(4096),
            ),
            (
                "nginx.default.svc.cluster.local.",
                RecordType::SRV,
                Some(1232),
            ),
            (
                "_web._tcp.nginx.default.svc.cluster.local.",
                RecordType::SRV,
                Some(1232),
            ),
            (
                "web.tcp.nginx.default.svc.cluster.local.",
                RecordType::SRV,
                None,
            ),
            ("nginx.default.svc.cluster.local.", RecordType::A, None),
            (
                "web-2.nginx.default.svc.cluster.local.",
                RecordType::TXT,
                Some(600),
            ),
            (
                "web-3.nginx.default.svc.cluster.local.",
                RecordType::A,
                Some(1232),
            ),
            (
                "web-0.nginx.default.svc.cluster.local.",
                RecordType::MX,
                None,
            ),
            (
                "web-9.nginx.default.svc.Cluster.local.",
                RecordType::A,
                Some(1232),
            ),
            ("nosuch.default.svc.cluster.local.", RecordType::A, None),
            ("10.2.0.192.in-addr.arpa.", RecordType::PTR, Some(1232)),
            ("11.2.0.192.IN-ADDR.arpa.", RecordType::PTR, None),
            ("99.2.0.192.in-addr.arpa.", RecordType::PTR, None),
            ("cluster.local.", RecordType::SOA, Some(1232)),
            ("cluster.local.", RecordType::NS, None),
            ("default.svc.cluster.local.", RecordType::A, None),
            ("dns-version.cluster.local.", RecordType::TXT, Some(512)),
        ];
        let mut fast_count = 0;
        for (name, rtype, edns) in cases {
            for (rd, cd) in [(true, false), (false, true)] {
                let q = query(name, rtype, edns, rd, cd);
                let (fast, slow) = both(&a, &q);
                if let Some(fast) = fast {
                    fast_count += 1;
                    assert_eq!(fast, slow, "{name} {rtype} edns {edns:?} rd {rd} cd {cd}");
                }
            }
        }
        assert_eq!(
            fast_count,
            cases.len() * 2,
            "every plain question takes the fast path"
        );
    }

    /// Found by `cargo fuzz` (target `query`): the fast path answered queries whose EDNS
    /// options hickory's parser rejects (an option running past the OPT RDATA, a malformed
    /// Client Subnet), where the hickory path answers FORMERR.
    #[test]
    fn regression_malformed_edns_options_take_the_hickory_path() {
        let a = authority();
        // The fuzzer's input: an option of 59,064 bytes in 12 bytes of RDATA.
        let found: &[u8] = &[
            158, 39, 1, 32, 0, 1, 0, 0, 0, 0, 0, 1, 6, 110, 111, 115, 117, 99, 104, 7, 228, 101,
            102, 97, 117, 108, 116, 3, 115, 118, 99, 7, 99, 108, 117, 115, 116, 101, 114, 5, 108,
            111, 99, 97, 108, 0, 0, 1, 0, 1, 0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 12, 0, 154, 230, 184,
            59, 45, 32, 155, 172, 194, 35, 250,
        ];
        let with_options = |options: &[u8]| {
            let mut q = query(
                "web-0.nginx.default.svc.cluster.local.",
                RecordType::A,
                Some(1232),
                true,
                false,
            );
            let at = q.len() - 2;
            q[at..].copy_from_slice(&(options.len() as u16).to_be_bytes());
            q.extend_from_slice(options);
            q
        };
        let malformed = [
            found.to_vec(),
            with_options(&[0, 10, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8]), // cookie past the RDATA
            with_options(&[0, 10, 0]),                            // option header cut short
            with_options(&[0, 8, 0, 4, 0, 3, 0, 0]),              // Client Subnet, family 3
            with_options(&[0, 8, 0, 8, 0, 1, 33, 0, 192, 0, 2, 0]), // an IPv4 /33
            with_options(&[0, 8, 0, 5, 0, 1, 24, 0, 192]),        // /24 with one address byte
            with_options(&[0, 8, 0, 0]),                          // empty Client Subnet
        ];
        let (mut out, mut key) = (Vec::new(), crate::dns::Scratch::new());
        for q in &malformed {
            assert!(!a.fast_answer(q, &mut out, &mut key, false), "{q:?}");
        }
        let well_formed = [
            with_options(&[]),
            with_options(&[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]), // a client cookie
            with_options(&[0, 8, 0, 7, 0, 1, 24, 0, 192, 0, 2]),  // dig +subnet=192.0.2.0/24
            with_options(&[0, 8, 0, 4, 0, 2, 0, 0, 0, 3, 0, 0]),  // ::/0, then NSID
        ];
        for q in &well_formed {
            let (fast, slow) = both(&a, q);
            assert_eq!(fast, Some(slow), "{q:?}");
        }
    }

    /// `web` with 6 Ready dual-stack pods: an SRV answer of 6 targets and 12 glue records,
    /// larger than 512 bytes.
    fn six_dual_stack_targets() -> Authority {
        dual_stack_targets(6)
    }

    /// `web` with `n` Ready dual-stack pods.
    fn dual_stack_targets(n: i32) -> Authority {
        let mut t = table();
        t.ordinals.replicas = n;
        t.identities = (0..n)
            .map(|o| {
                let mut i = t.identities[0].clone();
                i.ordinal = o;
                i.pod = format!("web-{o}");
                i.hostname = i.pod.clone();
                i.addresses = vec![
                    format!("192.0.2.{}", 10 + o).parse().unwrap(),
                    format!("2001:db8::{}", 10 + o).parse().unwrap(),
                ];
                i
            })
            .collect();
        let (cfg, ns) = (config(vec![]), namespaces());
        Authority::new(
            Arc::new(ArcSwap::from_pointee(index::build(&[t], &ns, &cfg, 1, 42))),
            Metrics::new().dns.clone(),
            1232,
        )
    }

    /// An SRV answer whose glue does not fit (6 dual-stack targets, 512 bytes without EDNS):
    /// the fast path leaves the glue out without TC, as the hickory path does.
    #[test]
    fn glue_that_does_not_fit_is_left_out_on_the_fast_path() {
        let a = six_dual_stack_targets();
        let srv = "_web._tcp.nginx.default.svc.cluster.local.";
        // Without EDNS (512): the 6 answers fit, their glue does not.
        let (fast, slow) = both(&a, &query(srv, RecordType::SRV, None, false, false));
        let fast = fast.expect("the fast path answers without the glue");
        assert_eq!(fast, slow);
        assert_eq!(fast.answers.len(), 6);
        assert!(fast.additionals.is_empty() && !fast.metadata.truncation);
        // With 1232 bytes everything fits, glue included.
        let (fast, slow) = both(&a, &query(srv, RecordType::SRV, Some(1232), false, false));
        let fast = fast.expect("fits whole");
        assert_eq!(fast, slow);
        assert_eq!(fast.additionals.len(), 12);
    }

    /// Found by `cargo fuzz` (target `query`): near the UDP limit the two paths answered
    /// differently. The hickory path budgeted answers as if compressed against the question,
    /// but its encoder writes the first owner name whole (41 more bytes here), so within that
    /// many bytes of a threshold it sent TC with part of the glue; it allowed that copy only
    /// for a question with upper case, where the fast path, which measures its own smaller
    /// encoding, kept the glue or answered what the hickory path truncates. The fuzzer's input,
    /// `_PG._TcP.Db.PrOd.SvC.cLuStEr.LoCaL.` SRV with a 1,178-byte payload, is in
    /// fuzz/corpus/query/ as `regression-mixed-case-near-the-size-limit`; here every payload
    /// from 512 to 800, around this set's glue threshold, in both spellings.
    #[test]
    fn regression_answers_near_the_size_limit_differed_between_the_paths() {
        let a = six_dual_stack_targets();
        let mut fast_count = 0;
        for name in [
            "_web._tcp.nginx.default.svc.cluster.local.",
            "_WeB._tCp.NGINX.default.svc.cluster.local.",
        ] {
            for payload in 512..=800 {
                let q = query(name, RecordType::SRV, Some(payload), true, false);
                let (fast, slow) = both(&a, &q);
                assert!(
                    !slow.metadata.truncation,
                    "{name} payload {payload}: TC with {} answers and {} glue",
                    slow.answers.len(),
                    slow.additionals.len()
                );
                let fast =
                    fast.unwrap_or_else(|| panic!("{name} payload {payload}: no fast answer"));
                assert_eq!(fast, slow, "{name} payload {payload}");
                assert!(fast.additionals.is_empty() || fast.additionals.len() == 12);
                fast_count += usize::from(!fast.additionals.is_empty());
            }
        }
        // The glue goes in at the same payload in both spellings (as 2 x 82 payloads show).
        assert_eq!(fast_count, 2 * (800 - 719 + 1), "answers with their glue");
    }

    /// Answers that do not fit (an SRV answer of 24 targets, 24 A and 24 AAAA records) are
    /// sent with TC and nothing else by the fast path, as by the hickory path; without EDNS,
    /// and at every payload around the thresholds, in both spellings; and from the cache.
    #[test]
    fn answers_that_do_not_fit_are_truncated_on_the_fast_path() {
        let a = dual_stack_targets(24);
        let mut cached = crate::dns::Scratch::with_cache(1 << 20);
        let (mut truncated, mut whole) = (0, 0);
        for name in [
            "_web._tcp.nginx.default.svc.cluster.local.",
            "_WeB._tCp.NGINX.default.svc.cluster.local.",
            "nginx.default.svc.cluster.local.",
            "NGINX.default.svc.cluster.local.",
        ] {
            for rtype in [RecordType::SRV, RecordType::A, RecordType::AAAA] {
                let payloads = std::iter::once(None).chain((512..=1400).step_by(3).map(Some));
                for payload in payloads {
                    let q = query(name, rtype, payload, true, false);
                    let (fast, slow) = both(&a, &q);
                    let what = format!("{name} {rtype} payload {payload:?}");
                    let fast = fast.unwrap_or_else(|| panic!("{what}: no fast answer"));
                    assert_eq!(fast, slow, "{what}");
                    if fast.metadata.truncation {
                        assert!(
                            fast.answers.is_empty() && fast.additionals.is_empty(),
                            "{what}"
                        );
                        truncated += 1;
                    } else if !fast.answers.is_empty() {
                        whole += 1;
                    }
                    let bytes = fast_with(&a, &q, &mut crate::dns::Scratch::new());
                    assert_eq!(fast_with(&a, &q, &mut cached), bytes, "{what}");
                    assert_eq!(fast_with(&a, &q, &mut cached), bytes, "{what}, cached");
                }
            }
        }
        // Without EDNS no set of 24 fits; with a large enough payload every one does.
        assert!(truncated >= 4 * 3, "{truncated} truncated");
        assert!(whole >= 4 * 3, "{whole} whole");
        let q = query(
            "_web._tcp.nginx.default.svc.cluster.local.",
            RecordType::SRV,
            None,
            true,
            false,
        );
        let tc = Message::from_vec(&fast_with(&a, &q, &mut cached).unwrap()).unwrap();
        assert!(tc.metadata.truncation && tc.metadata.authoritative);
    }

    /// The fast path's answer with `scratch`.
    fn fast_with(a: &Authority, q: &[u8], scratch: &mut crate::dns::Scratch) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        a.fast_answer(q, &mut out, scratch, false).then_some(out)
    }

    /// Every name of `table()` that the fast path answers, by type, with and without EDNS.
    fn questions() -> Vec<Vec<u8>> {
        let mut names: Vec<String> = (0..5)
            .map(|o| format!("web-{o}.nginx.default.svc.cluster.local."))
            .collect();
        names.extend(
            [
                "nginx.default.svc.cluster.local.",
                "_web._tcp.nginx.default.svc.cluster.local.",
                "10.2.0.192.in-addr.arpa.",
                "cluster.local.",
                "nosuch.default.svc.cluster.local.",
            ]
            .map(String::from),
        );
        let mut out = Vec::new();
        for name in &names {
            for rtype in [
                RecordType::A,
                RecordType::AAAA,
                RecordType::SRV,
                RecordType::PTR,
                RecordType::TXT,
            ] {
                for edns in [None, Some(512), Some(1232), Some(4096)] {
                    out.push(query(name, rtype, edns, true, false));
                }
            }
        }
        out
    }

    /// A question asked again, with another id, RD and CD flipped and its name in another case,
    /// is answered from the cache with the bytes the fast path computes for it.
    #[test]
    fn cached_answers_are_the_computed_ones() {
        let a = authority();
        let mut cached = crate::dns::Scratch::with_cache(1 << 20);
        let mut hits = 0;
        for q in questions() {
            let first = fast_with(&a, &q, &mut cached);
            assert_eq!(first, fast_with(&a, &q, &mut crate::dns::Scratch::new()));
            let mut other = q.clone();
            other[0] ^= 0x11;
            other[2] ^= 0x01;
            other[3] ^= 0x10;
            for b in &mut other[HEADER..HEADER + 6] {
                b.make_ascii_uppercase();
            }
            let before = a.metrics().answer_cache_hits.get();
            let again = fast_with(&a, &other, &mut cached);
            assert_eq!(
                again,
                fast_with(&a, &other, &mut crate::dns::Scratch::new())
            );
            if first.is_some() {
                assert_eq!(a.metrics().answer_cache_hits.get(), before + 1, "{q:?}");
                hits += 1;
            }
        }
        assert!(hits > 150, "{hits} questions answered from the cache");
    }

    /// A new snapshot empties the cache: a pod that became Ready is answered at once.
    #[test]
    fn a_new_snapshot_is_answered_from_at_once() {
        let (cfg, ns) = (config(vec![]), namespaces());
        let swap = Arc::new(ArcSwap::from_pointee(index::build(
            &[table()],
            &ns,
            &cfg,
            1,
            42,
        )));
        let a = Authority::new(swap.clone(), Metrics::new().dns.clone(), 1232);
        let q = query(
            "web-3.nginx.default.svc.cluster.local.",
            RecordType::A,
            Some(1232),
            true,
            false,
        );
        let mut cached = crate::dns::Scratch::with_cache(1 << 20);
        for _ in 0..2 {
            let m = Message::from_vec(&fast_with(&a, &q, &mut cached).unwrap()).unwrap();
            assert!(m.answers.is_empty(), "web-3 is not Ready");
        }
        let mut t = table();
        t.identities[3].state = IdentityState::Ready;
        t.identities[3].published = true;
        swap.store(Arc::new(index::build(&[t], &ns, &cfg, 2, 43)));
        let m = Message::from_vec(&fast_with(&a, &q, &mut cached).unwrap()).unwrap();
        assert_eq!(m.answers.len(), 1, "web-3 is Ready now");
        assert_eq!(
            fast_with(&a, &q, &mut crate::dns::Scratch::new()),
            fast_with(&a, &q, &mut cached)
        );
    }

    /// A cache far smaller than the questions asked: the ring is written over many times, and
    /// what it still finds is right.
    #[test]
    fn a_small_cache_written_over_answers_right() {
        let a = authority();
        let mut cached = crate::dns::Scratch::with_cache(4096);
        let questions = questions();
        for round in 0..3 {
            for q in &questions {
                assert_eq!(
                    fast_with(&a, q, &mut cached),
                    fast_with(&a, q, &mut crate::dns::Scratch::new()),
                    "round {round}: {q:?}"
                );
            }
        }
        let hits = a.metrics().answer_cache_hits.get();
        let misses = a.metrics().answer_cache_misses.get();
        assert!(hits > 0 && misses > 0, "hits {hits}, misses {misses}");
    }

    #[test]
    fn lower_case_lowers_ascii_letters_only() {
        let all: Vec<u8> = (0..=255u8).chain(b"ABCxyz-Z@[`{".iter().copied()).collect();
        for start in 0..9 {
            let mut bytes = all[start..].to_vec();
            lower_case(&mut bytes);
            assert_eq!(bytes, all[start..].to_ascii_lowercase(), "from {start}");
        }
    }

    #[test]
    fn unusual_questions_take_the_hickory_path() {
        let a = authority();
        let (mut out, mut key) = (Vec::new(), crate::dns::Scratch::new());
        let plain = query(
            "web-0.nginx.default.svc.cluster.local.",
            RecordType::A,
            None,
            true,
            false,
        );
        assert!(a.fast_answer(&plain, &mut out, &mut key, false));
        let mut cases: Vec<Vec<u8>> = vec![
            query(
                "web-0.nginx.default.svc.cluster.local.",
                RecordType::ANY,
                None,
                true,
                false,
            ),
            query("cluster.local.", RecordType::AXFR, None, true, false),
            query("example.org.", RecordType::A, None, true, false),
            plain[..plain.len() - 1].to_vec(),
            [plain.clone(), vec![0]].concat(),
        ];
        let mut opcode = plain.clone();
        opcode[2] |= 0x10; // STATUS
        cases.push(opcode);
        let mut response = plain.clone();
        response[2] |= 0x80;
        cases.push(response);
        let mut two = plain.clone();
        two[5] = 2;
        cases.push(two);
        let mut v1 = query(
            "web-0.nginx.default.svc.cluster.local.",
            RecordType::A,
            Some(1232),
            true,
            false,
        );
        let at = v1.len() - 5;
        v1[at] = 1; // EDNS version 1
        cases.push(v1);
        for q in cases {
            assert!(!a.fast_answer(&q, &mut out, &mut key, false), "{q:?}");
        }
    }
}
