//! The integration-test binary: starts the real `petdns serve` on port 0 and queries it with
//! `dig`, hand-built packets and hickory's client. One test per rule of
//! /work/shared/spec/records.md and the embedded-mode rules of identity.md.

#[path = "../support/mod.rs"]
mod support;

mod commands;
mod hostile;
mod records;
mod reload;
mod rrl;
mod tcp;
mod wire;

use std::time::{Duration, Instant};

use hickory_net::DnsHandle;
use hickory_net::client::ClientHandle;
use hickory_net::xfer::FirstAnswer;
use hickory_proto::op::{DnsRequestOptions, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use support::*;

const KUBIA_SET: &str = "kubia.default.svc.cluster.local";

fn observed() -> Server {
    Server::new(&[&fixture("observed.yaml")])
}

fn kubia() -> Server {
    Server::new(&[&example("kubia.yaml")])
}

/// The server still answers a plain question over UDP and TCP, and nothing panicked.
#[track_caller]
fn assert_still_answering(s: &Server) {
    let name = format!("{KUBIA_SET}.");
    let r = udp_message(s.dns, &query(0x7ff0, &name, RecordType::A, None));
    assert_eq!(r.answers.len(), 2, "UDP: {r:?}\n{}", s.log_dump());
    let r = tcp_messages(s.dns, &[query(0x7ff1, &name, RecordType::A, Some(1232))]);
    assert_eq!(r[0].answers.len(), 2, "TCP: {:?}\n{}", r[0], s.log_dump());
    assert!(
        !s.logs().iter().any(|l| l.contains("panicked")),
        "{}",
        s.log_dump()
    );
}

/// A query header: `id`, flags 0 (QUERY, RD clear) and the four counts.
fn header(id: u16, counts: [u16; 4]) -> Vec<u8> {
    let mut h = id.to_be_bytes().to_vec();
    h.extend_from_slice(&[0, 0]);
    for c in counts {
        h.extend_from_slice(&c.to_be_bytes());
    }
    h
}

/// Sends every packet from one socket, then collects replies until `quiet` passes without one;
/// returns the replies by id (the last one for an id).
fn udp_burst(
    server: std::net::SocketAddr,
    packets: &[Vec<u8>],
    quiet: Duration,
) -> std::collections::BTreeMap<u16, Vec<u8>> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(quiet)).unwrap();
    let reader = sock.try_clone().unwrap();
    // Read while sending, so that the client's receive buffer never overflows.
    let collect = std::thread::spawn(move || {
        let mut replies = std::collections::BTreeMap::new();
        let mut buf = vec![0u8; 65535];
        while let Ok((n, _)) = reader.recv_from(&mut buf) {
            if n >= 2 {
                replies.insert(u16::from_be_bytes([buf[0], buf[1]]), buf[..n].to_vec());
            }
        }
        replies
    });
    for p in packets {
        sock.send_to(p, server).unwrap();
    }
    collect.join().unwrap()
}

/// Response code (the header's four bits) of a reply.
fn rcode(reply: &[u8]) -> u8 {
    reply[3] & 0x0f
}

fn addresses(s: &Server, pods: &[&str]) -> Vec<String> {
    pods.iter()
        .map(|p| {
            let d = s.dig(&["A", &format!("{p}.kubia.default.svc.cluster.local")]);
            assert_eq!(d.answers("A").len(), 1, "{d}");
            d.answers("A")[0].clone()
        })
        .collect()
}

fn petdns(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_petdns"))
        .args(args)
        .env(
            "PETDNS_STATE_DIR",
            std::env::temp_dir().join("petdns-test-no-such-dir"),
        )
        .output()
        .expect("run petdns");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}
