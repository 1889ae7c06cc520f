//! Answers one question from the current [`Snapshot`].
//!
//! The query path loads the snapshot once, does one hash lookup on the lower-cased name (hickory
//! lowers it while parsing) and copies prepared records out. Owner names of answers take the
//! question's case, so 0x20 case randomisation survives.

use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::HINFO;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tracing::{debug, info};

use super::cache::AnswerCache;
use super::fast::{self, FastConfig};
use super::forward::{Forwarded, Forwarder};
use crate::admin::DnsMetrics;
use crate::index::{Lookup, Snapshot, Zone};

const HEADER_LEN: usize = 12;
const OPT_LEN: usize = 11;

/// The request handler behind every listener.
pub struct Authority {
    snapshot: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<DnsMetrics>,
    max_udp_payload: u16,
    /// Where names outside the zones, and names in them that petdns does not own, go.
    forwarder: Option<Arc<Forwarder>>,
    log_queries: bool,
}

impl Authority {
    pub fn new(
        snapshot: Arc<ArcSwap<Snapshot>>,
        metrics: Arc<DnsMetrics>,
        max_udp_payload: u16,
    ) -> Self {
        Authority {
            snapshot,
            metrics,
            max_udp_payload: max_udp_payload.max(512),
            forwarder: None,
            log_queries: false,
        }
    }

    pub fn metrics(&self) -> &DnsMetrics {
        &self.metrics
    }

    /// Answers a plain question from pre-encoded bytes into `out` (over TCP when `tcp`); false
    /// sends it down the hickory path (anything unusual, forwarding misses, or
    /// `--log-queries`). `scratch` is the calling loop's: its name buffer, and over UDP its
    /// answer cache.
    pub fn fast_answer(
        &self,
        query: &[u8],
        out: &mut Vec<u8>,
        scratch: &mut Scratch,
        tcp: bool,
    ) -> bool {
        if self.log_queries {
            return false;
        }
        let snapshot = self.snapshot.load();
        let cfg = FastConfig {
            max_payload: self.max_udp_payload,
            nxdomain: self.forwarder.is_none(),
            tcp,
        };
        let cache = match &mut scratch.cache {
            Some(cache) if !tcp => {
                cache.follow(&snapshot);
                Some(cache)
            }
            _ => None,
        };
        let cached = cache.is_some();
        match fast::answer(&snapshot, query, out, &mut scratch.key, cfg, cache) {
            Some(answered) => {
                self.metrics.query(answered.qtype, answered.rcode);
                if answered.from_cache {
                    self.metrics.answer_cache_hits.inc();
                } else if cached {
                    self.metrics.answer_cache_misses.inc();
                }
                true
            }
            None => false,
        }
    }

    /// One log line per query (`--log-queries`).
    pub fn log_queries(mut self, on: bool) -> Self {
        self.log_queries = on;
        self
    }

    /// Forward what petdns does not own to `forwarder`.
    pub fn with_forwarder(mut self, forwarder: Arc<Forwarder>) -> Self {
        self.forwarder = Some(forwarder);
        self
    }
}

/// What a listener loop keeps between fast-path answers: the name buffer and, for a UDP loop,
/// its answer cache (`dns/cache.rs`).
pub struct Scratch {
    key: Vec<u8>,
    cache: Option<AnswerCache>,
}

impl Scratch {
    /// Without a cache (TCP connections, tests).
    pub fn new() -> Self {
        Scratch {
            key: Vec::with_capacity(256),
            cache: None,
        }
    }

    /// With an answer cache of `bytes` (none for 0).
    pub fn with_cache(bytes: usize) -> Self {
        Scratch {
            key: Vec::with_capacity(256),
            cache: AnswerCache::new(bytes),
        }
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

/// What the handler decided, before encoding.
struct Answer {
    rcode: ResponseCode,
    authoritative: bool,
    truncated: bool,
    answers: Vec<Record>,
    additionals: Vec<Record>,
    soa: Option<Record>,
}

impl Answer {
    fn error(rcode: ResponseCode) -> Self {
        Answer {
            rcode,
            authoritative: false,
            truncated: false,
            answers: Vec::new(),
            additionals: Vec::new(),
            soa: None,
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Authority {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let snapshot = self.snapshot.load();
        let client_edns = request.edns.as_ref();
        // Our OPT: version 0, the payload we will use (the client's, within [512, cap]).
        let response_edns = client_edns.map(|e| {
            let mut ours = Edns::new();
            ours.set_max_payload(e.max_payload().clamp(512, self.max_udp_payload));
            ours.set_version(0);
            ours
        });
        let udp_limit = match (&response_edns, request.protocol()) {
            (_, Protocol::Tcp) => u16::MAX as usize,
            (Some(e), _) => e.max_payload() as usize,
            (None, _) => 512,
        };

        let (qtype, mut answer, forwardable) = decide(&snapshot, request, udp_limit);
        let mut forwarded = false;
        if forwardable
            && let Some(forwarder) = &self.forwarder
            && let Ok(info) = request.request_info()
        {
            forwarded = true;
            self.metrics.forwarded.inc();
            answer = match forwarder.forward(info.query.original().name(), qtype).await {
                Forwarded::Answer(records) => Answer {
                    answers: records,
                    ..Answer::error(ResponseCode::NoError)
                },
                Forwarded::Negative(rcode, soa) => Answer {
                    soa: soa.map(|s| *s),
                    ..Answer::error(rcode)
                },
                Forwarded::Failed(error) => {
                    self.metrics.forward_errors.inc();
                    debug!(%error, "forwarding failed");
                    Answer::error(ResponseCode::ServFail)
                }
            };
        }
        self.metrics.query(qtype, answer.rcode);
        if self.log_queries {
            let name = request
                .queries
                .queries()
                .first()
                .map(|q| q.original().name().to_string())
                .unwrap_or_default();
            info!(target: "petdns::query", src = %request.src(), protocol = %request.protocol(), %name, %qtype, rcode = crate::admin::rcode_label(answer.rcode), answers = answer.answers.len(), forwarded, "query");
        }

        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = answer.rcode;
        metadata.authoritative = answer.authoritative;
        metadata.truncation = answer.truncated;
        metadata.recursion_available = forwarded;
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(e) = response_edns.as_ref() {
            builder.edns(e);
        }
        let response = builder.build(
            metadata,
            answer.answers.iter(),
            std::iter::empty(),
            answer.soa.iter(),
            answer.additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                debug!(%error, "could not send a response");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

/// Decides the answer to one request; returns the question type for metrics and whether the
/// question may be forwarded (petdns does not own the name).
fn decide(snapshot: &Snapshot, request: &Request, udp_limit: usize) -> (RecordType, Answer, bool) {
    if request.metadata.op_code != OpCode::Query {
        return (
            RecordType::Unknown(0),
            Answer::error(ResponseCode::NotImp),
            false,
        );
    }
    if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return (
            RecordType::Unknown(0),
            Answer::error(ResponseCode::BADVERS),
            false,
        );
    }
    let Ok(info) = request.request_info() else {
        // Zero or several questions.
        return (
            RecordType::Unknown(0),
            Answer::error(ResponseCode::FormErr),
            false,
        );
    };
    let query = info.query;
    let qtype = query.query_type();
    if query.query_class() != DNSClass::IN {
        return (qtype, Answer::error(ResponseCode::Refused), false);
    }
    if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        return (qtype, Answer::error(ResponseCode::Refused), false);
    }
    let qname = query.original().name();
    let negative = |rcode: ResponseCode, zone: &Zone| Answer {
        rcode,
        authoritative: rcode != ResponseCode::ServFail,
        truncated: false,
        answers: Vec::new(),
        additionals: Vec::new(),
        soa: Some(owned_by(&zone.soa, zone_in_query_case(qname, zone))),
    };
    let lookup = snapshot.lookup(query.name(), qtype);
    let forwardable = matches!(lookup, Lookup::Refused | Lookup::NxDomain(_));
    let answer = match lookup {
        Lookup::Refused => Answer::error(ResponseCode::Refused),
        Lookup::NotLoaded(zone) => negative(ResponseCode::ServFail, zone),
        Lookup::NxDomain(zone) => negative(ResponseCode::NXDomain, zone),
        Lookup::NoData(zone) => negative(ResponseCode::NoError, zone),
        Lookup::AnyExists(_) => Answer {
            rcode: ResponseCode::NoError,
            authoritative: true,
            truncated: false,
            // RFC 8482 section 4.2: one synthesised HINFO instead of every record set.
            answers: vec![Record::from_rdata(
                qname.clone(),
                3600,
                RData::HINFO(HINFO::new("RFC8482".into(), String::new())),
            )],
            additionals: Vec::new(),
            soa: None,
        },
        Lookup::Found(_, rrset) => {
            // Whole record sets only. Glue is optional data (RFC 2181 section 9): when it does
            // not fit it is left out without TC; when the answer itself does not fit, nothing
            // is sent but TC, and the client asks again over TCP. The sizes were measured with
            // names compressed against the question; hickory's encoder writes the question as
            // received and points nothing at it, so the first owner name goes out whole: one
            // more copy of the name, whatever its case (the fast path uses the same budget).
            let slack = qname.len() + 1;
            let fixed = HEADER_LEN
                + qname.len()
                + 1
                + 4
                + slack
                + if request.edns.is_some() { OPT_LEN } else { 0 };
            let with_answers = fixed + rrset.answers_len;
            let (answers, additionals, truncated) =
                if with_answers + rrset.additionals_len <= udp_limit {
                    (owned_all(&rrset.answers, qname), rrset.additionals, false)
                } else if with_answers <= udp_limit {
                    (owned_all(&rrset.answers, qname), Vec::new(), false)
                } else {
                    (Vec::new(), Vec::new(), true)
                };
            Answer {
                rcode: ResponseCode::NoError,
                authoritative: true,
                truncated,
                answers,
                additionals,
                soa: None,
            }
        }
    };
    (qtype, answer, forwardable)
}

/// The records with their owner set to the question's spelling of the name.
fn owned_all(records: &[Record], owner: &Name) -> Vec<Record> {
    records.iter().map(|r| owned_by(r, owner.clone())).collect()
}

fn owned_by(record: &Record, owner: Name) -> Record {
    let mut r = record.clone();
    r.name = owner;
    r
}

/// The zone apex as the question spelled it (`CLUSTER.local.` for `web-0.nginx.default.svc.CLUSTER.local.`).
fn zone_in_query_case(qname: &Name, zone: &Zone) -> Name {
    let mut n = qname.trim_to(zone.num_labels);
    n.set_fqdn(true);
    n
}
