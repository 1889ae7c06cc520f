//! Walking the sections of a DNS message without decoding it: where the question ends, where
//! the message ends, and where its OPT record is. The listeners use it to refuse trailing bytes
//! (hickory's parser ignores them) and to cut a response down to a rate-limiting slip.
//!
//! Names are skipped, never followed: a compression pointer ends a name, so a pointer loop
//! cannot make the walk loop, and every step moves forward or fails.

use std::ops::Range;

pub const HEADER: usize = 12;
const OPT_TYPE: u16 = 41;
const TC: u8 = 0x02;

/// Where the parts of a message are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// End of the question section (start of the answer section).
    pub question_end: usize,
    /// End of the last record that the header counts.
    pub end: usize,
    /// The first OPT record of the additional section, whole.
    pub opt: Option<Range<usize>>,
}

fn u16_at(m: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*m.get(i)?, *m.get(i + 1)?]))
}

/// The offset just after the name that starts at `i`.
fn skip_name(m: &[u8], mut i: usize) -> Option<usize> {
    loop {
        match *m.get(i)? {
            0 => return Some(i + 1),
            len @ 1..=63 => i += 1 + len as usize,
            0xC0..=0xFF => {
                m.get(i + 1)?;
                return Some(i + 2);
            }
            // 64..=191: extended and reserved label types (RFC 6891 section 5).
            _ => return None,
        }
    }
}

/// The layout of `m`, or `None` when its sections do not fit in it (or a label type is not a
/// plain label or a pointer).
pub fn layout(m: &[u8]) -> Option<Layout> {
    if m.len() < HEADER {
        return None;
    }
    let [qd, an, ns, ar] = [4, 6, 8, 10].map(|at| u16_at(m, at).unwrap_or(0) as usize);
    let mut i = HEADER;
    for _ in 0..qd {
        i = skip_name(m, i)? + 4;
        if i > m.len() {
            return None;
        }
    }
    let question_end = i;
    let mut opt = None;
    for n in 0..an + ns + ar {
        let start = i;
        i = skip_name(m, i)?;
        let rtype = u16_at(m, i)?;
        let rdlen = u16_at(m, i + 8)? as usize;
        i += 10 + rdlen;
        if i > m.len() {
            return None;
        }
        if n >= an + ns && rtype == OPT_TYPE && opt.is_none() {
            opt = Some(start..i);
        }
    }
    Some(Layout {
        question_end,
        end: i,
        opt,
    })
}

/// True when bytes follow the last record the header counts. Such a message does not conform
/// to RFC 1035 section 4.1; Knot answers it FORMERR, and so does petdns.
pub fn has_trailing_bytes(m: &[u8]) -> bool {
    layout(m).is_some_and(|l| l.end < m.len())
}

/// Cuts an encoded response down to its header, its question and its OPT record, with TC set
/// and every other record removed: the small answer a rate-limited client gets instead (a
/// "slip"), which tells a real client to ask again over TCP. The response code stays (and
/// with the OPT record, its extended bits). False, leaving `buf` alone, when `buf` cannot be
/// walked.
pub fn truncate_to_slip(buf: &mut Vec<u8>) -> bool {
    let Some(layout) = layout(buf) else {
        return false;
    };
    let mut len = layout.question_end;
    let mut additional = 0u16;
    if let Some(opt) = layout.opt {
        let n = opt.len();
        buf.copy_within(opt, len);
        len += n;
        additional = 1;
    }
    buf.truncate(len);
    buf[2] |= TC;
    buf[6..10].fill(0);
    buf[10..12].copy_from_slice(&additional.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Edns, Message, Query, ResponseCode};
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    use super::*;

    fn response(edns: bool) -> Vec<u8> {
        let name = Name::from_ascii("web-0.nginx.default.svc.cluster.local.").unwrap();
        let mut m = Message::query();
        m.metadata.id = 0x0102;
        m.metadata.message_type = hickory_proto::op::MessageType::Response;
        m.metadata.response_code = ResponseCode::NXDomain;
        m.add_query(Query::query(name.clone(), RecordType::A));
        m.add_answer(Record::from_rdata(
            name.clone(),
            5,
            RData::A("192.0.2.1".parse().unwrap()),
        ));
        m.add_additional(Record::from_rdata(
            name,
            5,
            RData::A("192.0.2.2".parse().unwrap()),
        ));
        if edns {
            let mut e = Edns::new();
            e.set_max_payload(1232);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn layout_finds_the_question_end_and_the_opt_record() {
        let plain = response(false);
        let l = layout(&plain).unwrap();
        assert_eq!(l.end, plain.len());
        assert_eq!(l.opt, None);
        // Header, the name (39 bytes), type and class.
        assert_eq!(l.question_end, HEADER + 39 + 4);

        let with_opt = response(true);
        let l = layout(&with_opt).unwrap();
        assert_eq!(l.end, with_opt.len());
        assert_eq!(l.opt, Some(with_opt.len() - 11..with_opt.len()));
        assert!(!has_trailing_bytes(&with_opt));
        assert!(has_trailing_bytes(&[with_opt.clone(), vec![0]].concat()));
        // Cut short anywhere: no layout, and no claim of trailing bytes.
        for cut in 0..with_opt.len() {
            assert_eq!(layout(&with_opt[..cut]), None, "cut at {cut}");
            assert!(!has_trailing_bytes(&with_opt[..cut]));
        }
    }

    #[test]
    fn names_are_skipped_not_followed() {
        // A question whose name points at itself: one pointer, skipped in two bytes.
        let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
        assert_eq!(layout(&m).unwrap().end, m.len());
        // Label types 64..=191 are not labels.
        for t in [64u8, 100, 128, 191] {
            let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, t];
            m.extend(std::iter::repeat_n(b'a', 200));
            assert_eq!(layout(&m), None, "label type {t}");
        }
    }

    #[test]
    fn a_slip_keeps_header_question_and_opt_with_tc() {
        for edns in [false, true] {
            let mut buf = response(edns);
            assert!(truncate_to_slip(&mut buf));
            let m = Message::from_vec(&buf).unwrap();
            assert!(m.metadata.truncation, "{m:?}");
            assert_eq!(m.metadata.id, 0x0102);
            assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
            assert_eq!(m.queries.len(), 1);
            assert!(m.answers.is_empty() && m.authorities.is_empty());
            assert!(m.additionals.is_empty());
            assert_eq!(
                m.edns.as_ref().map(|e| e.max_payload()),
                edns.then_some(1232)
            );
        }
        // A header-only response (FORMERR to an unreadable question) slips as a header.
        let mut header = vec![0xab, 0xcd, 0x80, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(truncate_to_slip(&mut header));
        assert_eq!(header, [0xab, 0xcd, 0x82, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]);
        let mut short = vec![0u8; 5];
        assert!(!truncate_to_slip(&mut short));
    }
}
