//! Pre-encoded responses for the UDP fast path.
//!
//! Each record set is encoded once, when the snapshot is built, as a complete response to the
//! lower-case question. Owner names compress to a pointer at the question (offset 12), and the
//! question has the same length however the client spells the name, so a response to any
//! spelling is these bytes with the client's id, flags and question copied in.

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

/// A name in wire format, lower case, uncompressed: the fast path's hash key.
pub fn wire_name(name: &Name) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out
}

/// The whole response (header, question, answers, glue) to `owner`/`rtype`, id 0, QR and AA
/// set, without an OPT record; `None` if it cannot be encoded or is too large for UDP anyway.
pub fn prepare(
    owner: &Name,
    rtype: RecordType,
    answers: &[Record],
    additionals: &[Record],
) -> Option<Box<[u8]>> {
    let mut m = Message::new(0, MessageType::Response, OpCode::Query);
    m.metadata.authoritative = true;
    m.add_query(Query::query(owner.to_lowercase(), rtype));
    m.add_answers(answers.iter().cloned());
    m.add_additionals(additionals.iter().cloned());
    let bytes = m.to_vec().ok()?;
    (bytes.len() <= u16::MAX as usize).then(|| bytes.into_boxed_slice())
}

/// An SOA record's bytes after its owner name (type, class, TTL, RDATA length, RDATA): the
/// fast path puts a pointer to the zone's labels in the question in front of it.
pub fn soa_tail(soa: &Record) -> Option<Box<[u8]>> {
    let mut buf = Vec::with_capacity(128);
    let mut enc = BinEncoder::new(&mut buf);
    // No compression: these bytes are placed in other messages, where offsets differ.
    enc.set_canonical_form(true);
    soa.emit(&mut enc).ok()?;
    let owner = wire_name(&soa.name).len();
    (buf.len() > owner).then(|| buf[owner..].to_vec().into_boxed_slice())
}
