//! The two ends of a computed answer: wire format written in place (the fast path) and
//! hickory records (the reference path that handles everything else).

use std::io::Write;
use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, PTR, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record};

use super::service::{Data, Host, Sink, split_key};

const CLASS_IN: u16 = 1;

/// Writes records after a question already in `out`, answers first, then glue. Owners of
/// answers are a pointer to the question; an SRV target is written whole (RFC 2782 forbids
/// compressing it) and the glue for it points back at it.
pub struct WireSink<'o> {
    out: &'o mut Vec<u8>,
    ttl: u32,
    /// The cluster zone in wire format, lower case.
    zone: &'o [u8],
    /// Where each target name was written: (set, ordinal, offset).
    targets: [(usize, i32, u16); 32],
    known: usize,
    pub answers: u16,
    pub additionals: u16,
    /// Where the glue starts, if any was written: a response too large with its glue is sent
    /// without it (RFC 2181 section 9), cut here.
    pub glue_at: Option<usize>,
    /// Something could not be written (a TXT string over 255 bytes, an offset past 16 KiB):
    /// the caller falls back to the reference path.
    pub failed: bool,
}

impl<'o> WireSink<'o> {
    pub fn new(out: &'o mut Vec<u8>, ttl: u32, zone: &'o [u8]) -> Self {
        WireSink {
            out,
            ttl,
            zone,
            targets: [(0, 0, 0); 32],
            known: 0,
            answers: 0,
            additionals: 0,
            glue_at: None,
            failed: false,
        }
    }

    /// Owner (a pointer to the question), type, class, TTL; returns where RDLENGTH goes.
    fn header(&mut self, rtype: u16) -> usize {
        self.out.extend_from_slice(&[0xC0, 12]);
        self.out.extend_from_slice(&rtype.to_be_bytes());
        self.out.extend_from_slice(&CLASS_IN.to_be_bytes());
        self.out.extend_from_slice(&self.ttl.to_be_bytes());
        self.out.extend_from_slice(&[0, 0]);
        self.out.len()
    }

    fn finish_rdata(&mut self, rdata_at: usize) {
        let len = (self.out.len() - rdata_at) as u16;
        self.out[rdata_at - 2..rdata_at].copy_from_slice(&len.to_be_bytes());
    }

    /// One label of `parts` joined, in lower case. Written byte by byte rather than through
    /// `fmt`: callgrind put 334 instructions per label through `write_fmt`, and an SRV answer
    /// of 10 targets writes 30 of them.
    fn label(&mut self, parts: &[&[u8]]) {
        let at = self.out.len();
        self.out.push(0);
        for part in parts {
            self.out.extend_from_slice(part);
        }
        let len = self.out.len() - at - 1;
        if len > 63 {
            self.failed = true;
        }
        self.out[at] = len as u8;
        self.out[at + 1..].make_ascii_lowercase();
    }

    /// `<set>-<ordinal>.<svc>.<ns>.svc.<zone>`, uncompressed; remembered for glue owners.
    fn host(&mut self, host: Host<'_>) {
        let at = self.out.len();
        let (svc, ns) = split_key(host.service);
        let mut digits = [0u8; 11];
        self.label(&[
            host.set.as_bytes(),
            b"-",
            decimal(host.ordinal, &mut digits),
        ]);
        self.label(&[svc.as_bytes()]);
        self.label(&[ns.as_bytes()]);
        self.out.extend_from_slice(b"\x03svc");
        self.out.extend_from_slice(self.zone);
        if self.known < self.targets.len() && at < 0x3fff {
            self.targets[self.known] = (host.set.as_ptr() as usize, host.ordinal, at as u16);
            self.known += 1;
        }
    }

    fn host_pointer(&self, host: Host<'_>) -> Option<u16> {
        let set = host.set.as_ptr() as usize;
        self.targets[..self.known]
            .iter()
            .find(|(s, o, _)| *s == set && *o == host.ordinal)
            .map(|(_, _, at)| *at)
    }
}

impl Sink for WireSink<'_> {
    fn answer(&mut self, data: Data<'_>) {
        match data {
            Data::A(a) => {
                let at = self.header(1);
                self.out.extend_from_slice(&a.octets());
                self.finish_rdata(at);
            }
            Data::Aaaa(a) => {
                let at = self.header(28);
                self.out.extend_from_slice(&a.octets());
                self.finish_rdata(at);
            }
            Data::Srv {
                priority,
                weight,
                port,
                target,
            } => {
                let at = self.header(33);
                self.out.extend_from_slice(&priority.to_be_bytes());
                self.out.extend_from_slice(&weight.to_be_bytes());
                self.out.extend_from_slice(&port.to_be_bytes());
                self.host(target);
                self.finish_rdata(at);
            }
            Data::Txt(facts) => {
                let at = self.header(16);
                facts.each(|args| {
                    let start = self.out.len();
                    self.out.push(0);
                    let _ = self.out.write_fmt(args);
                    let len = self.out.len() - start - 1;
                    if len > 255 {
                        self.failed = true;
                    }
                    self.out[start] = len as u8;
                });
                self.finish_rdata(at);
            }
            Data::Ptr(host) => {
                let at = self.header(12);
                self.host(host);
                self.finish_rdata(at);
            }
        }
        self.answers += 1;
    }

    fn glue(&mut self, owner: Host<'_>, ip: IpAddr) {
        self.glue_at.get_or_insert(self.out.len());
        match self.host_pointer(owner) {
            Some(at) => self.out.extend_from_slice(&(0xC000 | at).to_be_bytes()),
            None => self.host(owner),
        }
        let rtype: u16 = if ip.is_ipv4() { 1 } else { 28 };
        self.out.extend_from_slice(&rtype.to_be_bytes());
        self.out.extend_from_slice(&CLASS_IN.to_be_bytes());
        self.out.extend_from_slice(&self.ttl.to_be_bytes());
        match ip {
            IpAddr::V4(a) => {
                self.out.extend_from_slice(&4u16.to_be_bytes());
                self.out.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                self.out.extend_from_slice(&16u16.to_be_bytes());
                self.out.extend_from_slice(&a.octets());
            }
        }
        self.additionals += 1;
    }
}

/// Builds hickory records: answers owned by `owner`, glue by their target names.
pub struct RecordSink<'z> {
    owner: Name,
    zone: &'z Name,
    ttl: u32,
    pub answers: Vec<Record>,
    pub additionals: Vec<Record>,
}

impl<'z> RecordSink<'z> {
    pub fn new(owner: Name, zone: &'z Name, ttl: u32) -> Self {
        RecordSink {
            owner,
            zone,
            ttl,
            answers: Vec::new(),
            additionals: Vec::new(),
        }
    }

    fn name(&self, host: Host<'_>) -> Name {
        host_name(host, self.zone)
    }
}

/// The name of `host` under `zone`, lower case.
pub fn host_name(host: Host<'_>, zone: &Name) -> Name {
    let (svc, ns) = split_key(host.service);
    let text = format!("{}-{}.{svc}.{ns}.svc.", host.set, host.ordinal);
    Name::from_ascii(&text)
        .and_then(|n| n.append_domain(zone))
        .map(|n| n.to_lowercase())
        // The index only stores hosts whose names fit (checked when the Service is built).
        .unwrap_or_else(|_| zone.clone())
}

impl Sink for RecordSink<'_> {
    fn answer(&mut self, data: Data<'_>) {
        let rdata = match data {
            Data::A(a) => RData::A(A(a)),
            Data::Aaaa(a) => RData::AAAA(AAAA(a)),
            Data::Srv {
                priority,
                weight,
                port,
                target,
            } => RData::SRV(SRV::new(priority, weight, port, self.name(target))),
            Data::Txt(facts) => {
                let mut strings = Vec::new();
                facts.each(|args| strings.push(args.to_string()));
                RData::TXT(TXT::new(strings))
            }
            Data::Ptr(host) => RData::PTR(PTR(self.name(host))),
        };
        self.answers
            .push(Record::from_rdata(self.owner.clone(), self.ttl, rdata));
    }

    fn glue(&mut self, owner: Host<'_>, ip: IpAddr) {
        let rdata = match ip {
            IpAddr::V4(a) => RData::A(A(a)),
            IpAddr::V6(a) => RData::AAAA(AAAA(a)),
        };
        self.additionals
            .push(Record::from_rdata(self.name(owner), self.ttl, rdata));
    }
}

/// `n` in decimal, written at the end of `buf`.
fn decimal(n: i32, buf: &mut [u8; 11]) -> &[u8] {
    let mut i = buf.len();
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::decimal;

    #[test]
    fn decimal_writes_what_display_writes() {
        let mut buf = [0u8; 11];
        for n in [
            0,
            7,
            10,
            99,
            100,
            4242,
            9999,
            10_000,
            i32::MAX,
            -1,
            -10,
            i32::MIN,
        ] {
            assert_eq!(decimal(n, &mut buf), n.to_string().as_bytes(), "{n}");
        }
    }
}
