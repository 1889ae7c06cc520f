//! End to end: the clustered data store of "Kubernetes in Action" (the kubia-pet-peers
//! StatefulSet, `examples/peers/`) discovering its peers through the real `petdns` binary.
//!
//! petdns materialises the `peers` StatefulSet with addresses leased from 127.0.10.0/24; one
//! `node examples/peers/peers.js` per identity listens on its leased address; a GET on any of
//! them does the SRV lookup of the governing Service, resolves each target's A record, and
//! gathers every peer's data. Then the manifest is scaled to four replicas on disk and the
//! next GET must find the fourth peer without a restart of petdns.
//!
//! Needs Node.js (`node`, 18 or newer) on PATH; without it the test fails, it does not skip.

mod support;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use support::*;

const NAMESPACE: &str = "default";
const SERVICE_FQDN: &str = "peers.default.svc.cluster.local";
const POD_CIDR: &str = "127.0.10.0/24";

fn peers_file(name: &str) -> PathBuf {
    example("peers").join(name)
}

/// `node --version`, or a panic that says what is missing.
fn require_node() -> String {
    let out = match Command::new("node").arg("--version").output() {
        Ok(out) => out,
        Err(e) => panic!(
            "tests/peers.rs runs examples/peers/peers.js and needs Node.js 18 or newer as `node` \
             on PATH, but `node --version` could not run: {e}. Install Node.js; this test is \
             not skipped without it."
        ),
    };
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "`node --version` failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let major = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    assert!(
        major.is_some_and(|m| m >= 18),
        "tests/peers.rs needs Node.js 18 or newer, `node --version` says {version:?}"
    );
    version
}

/// A port nobody listens on right now, on any address. The peers all use it, each on its own
/// 127.0.10.x address; a per-run port keeps concurrent runs of this test (which lease the
/// same addresses from their fresh state dirs) apart.
fn free_port() -> u16 {
    TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// A minimal HTTP/1.1 exchange (Connection: close; peers.js always sends Content-Length).
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    // GET / waits for every peer, each bounded by peers.js's 2 s timeouts.
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no header end in {text:?}")))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    Ok((status, body.to_string()))
}

/// One `node peers.js`, killed when dropped (panics included). Its stdout and stderr go to a
/// file that is printed when the test fails.
struct Peer {
    name: String,
    addr: SocketAddr,
    child: Child,
    log: PathBuf,
}

impl Peer {
    fn start(name: &str, ip: IpAddr, port: u16, dns: SocketAddr, dir: &Path) -> Peer {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).expect("create the peer's log file");
        let err = out.try_clone().expect("clone the log file handle");
        let child = Command::new("node")
            .arg(peers_file("peers.js"))
            .env("POD_NAME", name)
            .env("POD_IP", ip.to_string())
            .env("PORT", port.to_string())
            .env("SERVICE_FQDN", SERVICE_FQDN)
            .env("DNS_SERVER", dns.to_string())
            .env("DATA_FILE", dir.join(format!("{name}.data")))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start `node peers.js` for {name}: {e}"));
        let mut peer = Peer {
            name: name.to_string(),
            addr: SocketAddr::new(ip, port),
            child,
            log,
        };
        let addr = peer.addr;
        let up = poll(DEADLINE, || {
            if let Ok(Some(status)) = peer.child.try_wait() {
                return Some(Err::<(), ExitStatus>(status));
            }
            matches!(http(addr, "GET", "/data", ""), Ok((200, _))).then_some(Ok(()))
        });
        match up {
            Some(Ok(())) => peer,
            Some(Err(status)) => panic!(
                "{name} exited with {status} before answering on {addr}\n{}",
                peer.output()
            ),
            None => panic!(
                "{name} did not answer GET /data on {addr} within {DEADLINE:?}\n{}",
                peer.output()
            ),
        }
    }

    fn output(&self) -> String {
        format!(
            "--- {} (node peers.js on {}) ---\n{}--- end of {} ---",
            self.name,
            self.addr,
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            self.name
        )
    }

    #[track_caller]
    fn post(&self, data: &str) {
        let answer = http(self.addr, "POST", "/", data);
        assert!(
            matches!(&answer, Ok((200, body)) if body.trim() == format!("Data stored on pod {}", self.name)),
            "POST / to {}: {answer:?}\n{}",
            self.name,
            self.output()
        );
    }

    #[track_caller]
    fn get_all(&self) -> String {
        match http(self.addr, "GET", "/", "") {
            Ok((200, body)) => body,
            other => panic!("GET / on {}: {other:?}\n{}", self.name, self.output()),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{}", self.output());
        }
    }
}

fn target(ordinal: usize) -> String {
    format!("peers-{ordinal}.peers.{NAMESPACE}.svc.cluster.local")
}

/// The address petdns serves for `peers-<ordinal>`, once it serves one.
fn leased_address(server: &Server, ordinal: usize) -> IpAddr {
    let name = target(ordinal);
    poll(DEADLINE, || {
        let d = server.dig(&["A", &name]);
        d.answers("A").first().and_then(|a| a.parse().ok())
    })
    .unwrap_or_else(|| {
        panic!(
            "petdns serves no A record for {name}\n{}\n{}",
            server.dig(&["A", &name]),
            server.log_dump()
        )
    })
}

/// Waits until the SRV answer of the Service has `n` records, all on `port`; returns the targets.
fn wait_srv(server: &Server, n: usize, port: u16) -> Vec<String> {
    let mut last = None;
    let found = poll(DEADLINE, || {
        let d = server.dig(&["SRV", SERVICE_FQDN]);
        let srv = d.answers("SRV");
        let ok = srv.len() == n
            && srv
                .iter()
                .all(|r| r.split_whitespace().nth(2) == Some(&port.to_string()));
        let targets = srv
            .iter()
            .filter_map(|r| r.split_whitespace().nth(3))
            .map(|t| t.trim_end_matches('.').to_string())
            .collect::<Vec<_>>();
        last = Some(d);
        ok.then_some(targets)
    });
    found.unwrap_or_else(|| {
        panic!(
            "SRV {SERVICE_FQDN} never had {n} records on port {port}\n{}\n{}",
            last.map(|d| d.to_string()).unwrap_or_default(),
            server.log_dump()
        )
    })
}

fn expected(hit: &str, data: &[&str]) -> String {
    let mut s = format!("You've hit {hit}\nData stored in the cluster:\n");
    for (ordinal, d) in data.iter().enumerate() {
        s.push_str(&format!("- {}: {d}\n", target(ordinal)));
    }
    s
}

#[test]
fn peers_find_each_other_through_srv_and_follow_a_scale_up() {
    let node = require_node();
    let tmp = tempfile::tempdir().expect("temp dir");
    let port = free_port();

    // The example manifest with this run's port as the container port the SRV answer carries.
    let original = read(&peers_file("peers.yaml"));
    assert_eq!(
        original.matches("containerPort: 8080").count(),
        1,
        "examples/peers/peers.yaml declares containerPort 8080 once"
    );
    assert_eq!(
        original.matches("replicas: 3").count(),
        1,
        "examples/peers/peers.yaml declares 3 replicas once"
    );
    let manifest_text = original.replace("containerPort: 8080", &format!("containerPort: {port}"));
    let manifest = tmp.path().join("peers.yaml");
    std::fs::write(&manifest, &manifest_text).expect("write the manifest copy");

    let server = Options::new(&[&manifest])
        .args(&["--pod-cidr", POD_CIDR])
        .state_dir(&tmp.path().join("state"))
        .start();

    let targets = wait_srv(&server, 3, port);
    assert_eq!(targets, [target(0), target(1), target(2)], "SRV targets");

    let mut peers = Vec::new();
    for ordinal in 0..3 {
        let ip = leased_address(&server, ordinal);
        assert!(
            ip.to_string().starts_with("127.0.10."),
            "peers-{ordinal} leased {ip}, outside {POD_CIDR}"
        );
        peers.push(Peer::start(
            &format!("peers-{ordinal}"),
            ip,
            port,
            server.dns,
            tmp.path(),
        ));
    }

    peers[0].post("The sun is shining");
    peers[1].post("The weather is sweet");
    peers[1].post("Just a cloud");

    let all = peers[2].get_all();
    assert_eq!(
        all,
        expected(
            "peers-2",
            &[
                "The sun is shining",
                "The weather is sweet; Just a cloud",
                "no data posted yet",
            ]
        ),
        "GET / on peers-2 (node {node})\n{}",
        peers[2].output()
    );

    // Scale to 4 as an editor saves: a new file renamed over the one petdns watches.
    replace_file(
        &manifest,
        &manifest_text.replace("replicas: 3", "replicas: 4"),
    );
    let targets = wait_srv(&server, 4, port);
    assert_eq!(targets, [target(0), target(1), target(2), target(3)]);
    let ip = leased_address(&server, 3);
    let taken: Vec<IpAddr> = peers.iter().map(|p| p.addr.ip()).collect();
    assert!(
        !taken.contains(&ip),
        "peers-3 leased {ip}, already one of {taken:?}"
    );
    peers.push(Peer::start("peers-3", ip, port, server.dns, tmp.path()));

    let all = peers[0].get_all();
    assert_eq!(
        all,
        expected(
            "peers-0",
            &[
                "The sun is shining",
                "The weather is sweet; Just a cloud",
                "no data posted yet",
                "no data posted yet",
            ]
        ),
        "GET / on peers-0 after the scale-up\n{}",
        peers[0].output()
    );

    peers[3].post("Fresh from the new pod");
    let all = peers[3].get_all();
    assert!(
        all.contains(&format!("- {}: Fresh from the new pod\n", target(3))),
        "GET / on peers-3 shows its own data\n{all}"
    );
}
