//! Helpers for the integration tests: start the real `petdns` binary on port 0, query it with
//! `dig`, hand-built packets and hickory's client, and read its admin endpoints.
//!
//! A [`Server`] that is dropped while its test is panicking prints every log line the server
//! wrote, so a failing test shows what the server did.

#![allow(dead_code)]

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_petdns");
pub const ZONE: &str = "cluster.local";

/// How long a server gets to start, load, reload or stop before a test gives up.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Path of a file under `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Path of a file under `examples/`.
pub fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Copies fixtures into `dir` and returns the copies' paths.
pub fn copy_into(dir: &Path, sources: &[PathBuf]) -> Vec<PathBuf> {
    sources
        .iter()
        .map(|src| {
            let dst = dir.join(src.file_name().expect("fixture has a file name"));
            std::fs::copy(src, &dst)
                .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", src.display(), dst.display()));
            dst
        })
        .collect()
}

/// Replaces `path` the way editors save: write a new file beside it, then rename it over.
pub fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("x")
    ));
    std::fs::write(&tmp, text).expect("write the new version");
    std::fs::rename(&tmp, path).expect("rename over the old version");
}

/// Polls `f` every 10 ms until it gives `Some`, or `None` after `deadline`.
pub fn poll<T>(deadline: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Options for starting a server.
pub struct Options {
    manifests: Vec<PathBuf>,
    state_dir: Option<PathBuf>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    wait_ready: bool,
}

impl Options {
    pub fn new(manifests: &[&Path]) -> Self {
        Options {
            manifests: manifests.iter().map(|p| p.to_path_buf()).collect(),
            state_dir: None,
            args: vec!["--pod-cidr".into(), "192.0.2.0/24".into()],
            env: Vec::new(),
            wait_ready: true,
        }
    }

    pub fn state_dir(mut self, dir: &Path) -> Self {
        self.state_dir = Some(dir.to_path_buf());
        self
    }

    /// Extra flags; `--pod-cidr` given here replaces the default 192.0.2.0/24.
    pub fn args(mut self, args: &[&str]) -> Self {
        if args.contains(&"--pod-cidr") {
            self.args.clear();
        }
        self.args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    /// An environment variable for the process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Do not wait for `/readyz` (for servers started on invalid manifests).
    pub fn not_ready(mut self) -> Self {
        self.wait_ready = false;
        self
    }

    pub fn start(self) -> Server {
        Server::start(self)
    }
}

/// A running `petdns serve`, killed when dropped.
pub struct Server {
    child: Option<Child>,
    pub dns: SocketAddr,
    pub admin: SocketAddr,
    pub state_dir: PathBuf,
    logs: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    pub fn new(manifests: &[&Path]) -> Server {
        Options::new(manifests).start()
    }

    pub fn start(opts: Options) -> Server {
        let (tmp, state_dir) = match opts.state_dir {
            Some(d) => (None, d),
            None => {
                let t = tempfile::tempdir().expect("temp state dir");
                let d = t.path().join("state");
                (Some(t), d)
            }
        };
        let mut args: Vec<String> = vec!["serve".into()];
        for m in &opts.manifests {
            args.push("--manifests".into());
            args.push(m.display().to_string());
        }
        args.extend(
            [
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--state-dir",
            ]
            .map(String::from),
        );
        args.push(state_dir.display().to_string());
        args.extend(opts.args.iter().cloned());
        Server::launch(BIN, &args, &opts.env, state_dir, tmp, opts.wait_ready)
    }

    /// Starts `petdns <args> --log-format json` for any subcommand that logs `"listening"`
    /// (with `dns` and `admin`) or `"controller starting"` (with `admin`; `dns` stays
    /// 0.0.0.0:0), e.g. `serve --kube ...` or `controller ...`. The caller gives every flag.
    pub fn spawn(args: &[&str], wait_ready: bool) -> Server {
        Server::spawn_with(BIN, args, wait_ready)
    }

    /// [`Server::spawn`] with another petdns binary (an older build, for comparisons).
    pub fn spawn_with(bin: &str, args: &[&str], wait_ready: bool) -> Server {
        let tmp = tempfile::tempdir().expect("temp dir");
        let state_dir = tmp.path().join("state");
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Server::launch(bin, &args, &[], state_dir, Some(tmp), wait_ready)
    }

    fn launch(
        bin: &str,
        args: &[String],
        env: &[(String, String)],
        state_dir: PathBuf,
        tmp: Option<tempfile::TempDir>,
        wait_ready: bool,
    ) -> Server {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .args(["--log-format", "json"])
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start petdns");
        let stderr = child.stderr.take().expect("stderr is piped");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<(SocketAddr, SocketAddr)>();
        let sink = logs.clone();
        // Drains stderr for the whole life of the process so the pipe never fills.
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let parse = |k: &str| v[k].as_str().and_then(|s| s.parse().ok());
                    if v["message"] == "listening"
                        && let (Some(dns), Some(admin)) = (parse("dns"), parse("admin"))
                    {
                        let _ = tx.send((dns, admin));
                    } else if v["message"] == "controller starting"
                        && let Some(admin) = parse("admin")
                    {
                        let _ = tx.send(("0.0.0.0:0".parse().unwrap(), admin));
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });
        let mut server = Server {
            child: Some(child),
            dns: "0.0.0.0:0".parse().unwrap(),
            admin: "0.0.0.0:0".parse().unwrap(),
            state_dir,
            logs,
            reader: Some(reader),
            _tmp: tmp,
        };
        match rx.recv_timeout(DEADLINE) {
            Ok((dns, admin)) => {
                server.dns = dns;
                server.admin = admin;
            }
            Err(_) => panic!(
                "petdns printed no \"listening\" line within {DEADLINE:?}; exit: {:?}\n{}",
                server.child.as_mut().and_then(|c| c.try_wait().ok()),
                server.log_dump()
            ),
        }
        if wait_ready {
            server.wait_ready();
        }
        server
    }

    pub fn wait_ready(&self) {
        let ok = poll(DEADLINE, || {
            matches!(self.get("/readyz"), Ok((200, _))).then_some(())
        });
        assert!(
            ok.is_some(),
            "/readyz never became 200\n{}",
            self.log_dump()
        );
    }

    /// Every log line so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Log lines parsed as JSON.
    pub fn log_records(&self) -> Vec<Value> {
        self.logs()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn log_dump(&self) -> String {
        let mut s = String::from("--- petdns log ---\n");
        for l in self.logs() {
            s.push_str(&l);
            s.push('\n');
        }
        s.push_str("--- end of log ---");
        s
    }

    /// Log records whose `message` is `message`.
    pub fn messages(&self, message: &str) -> Vec<Value> {
        self.log_records()
            .into_iter()
            .filter(|v| v["message"] == message)
            .collect()
    }

    /// Waits until there are more than `seen` records with `message`; returns the newest.
    pub fn wait_message(&self, message: &str, seen: usize) -> Value {
        poll(DEADLINE, || {
            let m = self.messages(message);
            (m.len() > seen).then(|| m.last().cloned().unwrap())
        })
        .unwrap_or_else(|| {
            panic!(
                "no new {message:?} log line (had {seen})\n{}",
                self.log_dump()
            )
        })
    }

    /// The newest `generation` in a "snapshot published" line, 0 if none yet.
    pub fn generation(&self) -> u64 {
        self.messages("snapshot published")
            .last()
            .and_then(|v| v["generation"].as_u64())
            .unwrap_or(0)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends SIGTERM and waits for the exit; returns the status and the complete log.
    pub fn terminate(mut self) -> (ExitStatus, Vec<String>) {
        let pid = self.pid();
        let st = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -TERM {pid} failed");
        let mut child = self.child.take().unwrap();
        let status = poll(DEADLINE, || child.try_wait().ok().flatten());
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "petdns did not exit within {DEADLINE:?} of SIGTERM\n{}",
                self.log_dump()
            );
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (status, self.logs())
    }

    /// SIGKILL (no shutdown at all, like a crashed node) and wait; returns the complete log.
    pub fn kill(mut self) -> Vec<String> {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.logs()
    }

    /// `dig` against this server; `args` are the query (type, name, options).
    pub fn dig(&self, args: &[&str]) -> Dig {
        dig(self.dns, args)
    }

    /// HTTP GET on the admin port: (status, body).
    pub fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        http_get(self.admin, path)
    }

    pub fn metrics(&self) -> String {
        match self.get("/metrics") {
            Ok((200, body)) => body,
            other => panic!("GET /metrics: {other:?}\n{}", self.log_dump()),
        }
    }

    /// The value of the sample `series` (name with labels, exactly as rendered).
    pub fn metric(&self, series: &str) -> Option<f64> {
        metric(&self.metrics(), series)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.log_dump());
        }
    }
}

/// The value of `series` in an OpenMetrics text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    })
}

/// A minimal HTTP/1.1 GET (Connection: close; chunked bodies decoded).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no header end in {text:?}")))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || after.len() < n {
                break;
            }
            out.push_str(&after[..n]);
            rest = after[n..].trim_start_matches("\r\n");
        }
        out
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// One resource record as dig prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rr {
    pub name: String,
    pub ttl: u32,
    pub rtype: String,
    pub data: String,
}

/// A parsed `dig` run. `Display` prints dig's own output, for assertion messages.
#[derive(Clone, Debug, Default)]
pub struct Dig {
    pub raw: String,
    pub status: String,
    pub flags: Vec<String>,
    /// The `; EDNS: ...` line, when the response carried an OPT record.
    pub edns: Option<String>,
    pub question: Vec<String>,
    pub answer: Vec<Rr>,
    pub authority: Vec<Rr>,
    pub additional: Vec<Rr>,
}

impl fmt::Display for Dig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--- dig output ---\n{}--- end of dig ---", self.raw)
    }
}

impl Dig {
    pub fn aa(&self) -> bool {
        self.flags.iter().any(|f| f == "aa")
    }

    pub fn tc(&self) -> bool {
        self.flags.iter().any(|f| f == "tc")
    }

    /// The data of the answers of type `rtype`, sorted.
    pub fn answers(&self, rtype: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .answer
            .iter()
            .filter(|r| r.rtype == rtype)
            .map(|r| r.data.clone())
            .collect();
        v.sort();
        v
    }

    /// Additional records as sorted "name type data" strings.
    pub fn glue(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .additional
            .iter()
            .map(|r| format!("{} {} {}", r.name, r.rtype, r.data))
            .collect();
        v.sort();
        v
    }

    /// Asserts the status and AA bit and that the answer is empty with one SOA in Authority
    /// (a negative answer); returns the SOA.
    #[track_caller]
    pub fn assert_negative(&self, status: &str) -> Rr {
        assert_eq!(self.status, status, "status\n{self}");
        assert!(self.aa(), "AA must be set on a negative answer\n{self}");
        assert!(self.answer.is_empty(), "answer must be empty\n{self}");
        assert_eq!(self.authority.len(), 1, "one SOA in authority\n{self}");
        assert_eq!(self.authority[0].rtype, "SOA", "SOA in authority\n{self}");
        self.authority[0].clone()
    }
}

/// What dig prints when the message it got back has QR clear: not a response at all.
const NOT_A_RESPONSE: &str = ";; Warning: query response not set";

/// Runs `dig +norec` against `server`.
///
/// dig (BIND 9.18) binds its UDP sockets with `SO_REUSEPORT` to a random port, and the server
/// under test, bound to port 0, also sits in the ephemeral range with `SO_REUSEPORT` (one socket
/// per core): as the same user, dig can land on the server's own port, and its connected socket
/// then receives its own query (QR clear, `flags: ad`, no answer). That message never came from
/// petdns, so it is asked again from a fresh port; a server that really answered with QR clear
/// would still fail, as every try would say so.
pub fn dig(server: SocketAddr, args: &[&str]) -> Dig {
    let mut raw = String::new();
    for _ in 0..5 {
        let out = Command::new("dig")
            .args([
                "+norec",
                "+time=2",
                "+tries=1",
                "+nocookie",
                &format!("@{}", server.ip()),
                "-p",
                &server.port().to_string(),
            ])
            .args(args)
            .output()
            .expect("run dig");
        raw = String::from_utf8_lossy(&out.stdout).into_owned();
        if !raw.contains(NOT_A_RESPONSE) {
            break;
        }
    }
    parse_dig(&raw)
}

pub fn parse_dig(raw: &str) -> Dig {
    let mut d = Dig {
        raw: raw.to_string(),
        ..Default::default()
    };
    let mut section = "";
    for line in raw.lines() {
        if let Some(rest) = line.split_once("status: ").map(|(_, r)| r) {
            d.status = rest.split(',').next().unwrap_or("").trim().to_string();
        } else if let Some(rest) = line.strip_prefix(";; flags:") {
            let flags = rest.split(';').next().unwrap_or("");
            d.flags = flags.split_whitespace().map(str::to_string).collect();
        } else if line.starts_with("; EDNS:") {
            d.edns = Some(line.to_string());
        } else if line.starts_with(";; QUESTION SECTION:") {
            section = "question";
        } else if line.starts_with(";; ANSWER SECTION:") {
            section = "answer";
        } else if line.starts_with(";; AUTHORITY SECTION:") {
            section = "authority";
        } else if line.starts_with(";; ADDITIONAL SECTION:") {
            section = "additional";
        } else if line.trim().is_empty() {
            section = "";
        } else if section == "question" {
            d.question.push(
                line.trim_start_matches(';')
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .into(),
            );
        } else if !section.is_empty() && !line.starts_with(';') {
            let mut parts = line.split_whitespace();
            let name = parts.next().unwrap_or("").to_string();
            let ttl = parts
                .next()
                .and_then(|t| t.parse().ok())
                .unwrap_or(u32::MAX);
            let _class = parts.next();
            let rtype = parts.next().unwrap_or("").to_string();
            let data = parts.collect::<Vec<_>>().join(" ");
            let rr = Rr {
                name,
                ttl,
                rtype,
                data,
            };
            match section {
                "answer" => d.answer.push(rr),
                "authority" => d.authority.push(rr),
                _ => d.additional.push(rr),
            }
        }
    }
    d
}

/// `<labels>.cluster.local.`
pub fn fqdn(labels: &str) -> String {
    format!("{labels}.{ZONE}.")
}

/// A query message for `name`/`rtype`, with an OPT record when `edns` gives a payload size.
pub fn query(id: u16, name: &str, rtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::query();
    m.metadata.id = id;
    m.add_query(Query::query(
        Name::from_ascii(name).expect("valid query name"),
        rtype,
    ));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size).set_version(0);
        m.edns = Some(e);
    }
    m
}

/// Sends `packet` over UDP and waits up to `wait` for a reply.
pub fn udp_exchange(server: SocketAddr, packet: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP client socket");
    sock.set_read_timeout(Some(wait)).unwrap();
    sock.send_to(packet, server).expect("send UDP");
    let mut buf = vec![0u8; 65535];
    match sock.recv_from(&mut buf) {
        Ok((n, _)) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

/// Sends a message over UDP and parses the reply (panics on no reply).
pub fn udp_message(server: SocketAddr, m: &Message) -> Message {
    let bytes = m.to_vec().expect("encode query");
    let reply = udp_exchange(server, &bytes, Duration::from_secs(2))
        .unwrap_or_else(|| panic!("no UDP reply to {m:?}"));
    Message::from_vec(&reply).expect("decode reply")
}

/// Sends each message over one TCP connection (pipelined), then reads the replies.
pub fn tcp_messages(server: SocketAddr, messages: &[Message]) -> Vec<Message> {
    let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(2)).expect("TCP connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    for m in messages {
        let bytes = m.to_vec().expect("encode query");
        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(&bytes);
    }
    s.write_all(&out).expect("TCP write");
    messages
        .iter()
        .map(|_| {
            let mut len = [0u8; 2];
            s.read_exact(&mut len).expect("TCP read length");
            let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
            s.read_exact(&mut buf).expect("TCP read message");
            Message::from_vec(&buf).expect("decode reply")
        })
        .collect()
}

/// A query packet built by hand: header fields as given, then `questions` (name, qtype), then
/// an OPT record with (payload, version) when given.
pub fn raw_packet(
    id: u16,
    flags: u16,
    questions: &[(&str, u16)],
    opt: Option<(u16, u8)>,
) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&flags.to_be_bytes());
    p.extend_from_slice(&(questions.len() as u16).to_be_bytes());
    p.extend_from_slice(&0u16.to_be_bytes());
    p.extend_from_slice(&0u16.to_be_bytes());
    p.extend_from_slice(&u16::from(opt.is_some()).to_be_bytes());
    for (name, qtype) in questions {
        for label in name.trim_end_matches('.').split('.') {
            p.push(label.len() as u8);
            p.extend_from_slice(label.as_bytes());
        }
        p.push(0);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&1u16.to_be_bytes());
    }
    if let Some((payload, version)) = opt {
        p.push(0); // root owner
        p.extend_from_slice(&41u16.to_be_bytes());
        p.extend_from_slice(&payload.to_be_bytes());
        p.extend_from_slice(&[0, version, 0, 0]); // ext-rcode, version, flags
        p.extend_from_slice(&0u16.to_be_bytes());
    }
    p
}

/// Runs `petdns check` with `args`; returns (exit code, stdout, stderr).
pub fn check(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("check")
        .args(args)
        .output()
        .expect("run petdns check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub mod client {
    //! hickory's async client over UDP and TCP.
    use std::net::SocketAddr;
    use std::time::Duration;

    use hickory_net::client::Client;
    use hickory_net::runtime::TokioRuntimeProvider;
    use hickory_net::tcp::TcpClientStream;
    use hickory_net::udp::UdpClientStream;

    pub type DnsClient = Client<TokioRuntimeProvider>;

    pub fn udp(server: SocketAddr) -> DnsClient {
        let conn = UdpClientStream::builder(server, TokioRuntimeProvider::default())
            .with_timeout(Some(Duration::from_secs(2)))
            .build();
        let (client, bg) = Client::<TokioRuntimeProvider>::from_sender(conn);
        tokio::spawn(bg);
        client
    }

    pub async fn tcp(server: SocketAddr) -> DnsClient {
        let (connect, handle) = TcpClientStream::new(
            server,
            None,
            Some(Duration::from_secs(2)),
            TokioRuntimeProvider::default(),
        );
        let stream = connect.await.expect("TCP connect");
        let (client, bg) = Client::<TokioRuntimeProvider>::new(stream, handle);
        tokio::spawn(bg);
        client
    }
}
