//! Binding the DNS listeners: several UDP sockets on one port (SO_REUSEPORT), each on its own
//! thread, and TCP with a connection cap; both answer plain questions on the fast path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use std::net::UdpSocket;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::rrl::Rrl;
use super::tcp::{self, TcpConfig};
use super::{Authority, udp};

/// Where and how to listen.
#[derive(Clone, Debug)]
pub struct ListenerConfig {
    /// UDP and TCP share this address; port 0 picks a free port for both.
    pub addr: SocketAddr,
    /// Idle TCP connections are closed after this long.
    pub tcp_idle_timeout: Duration,
    /// UDP sockets sharing the port (one receive loop each).
    pub udp_sockets: usize,
    /// Answer cache of each UDP receive loop, in bytes (0: none).
    pub answer_cache_bytes: usize,
    /// Open TCP connections at most; at the cap the longest-idle one is closed.
    pub tcp_max_connections: usize,
    /// Response rate limiting for UDP (`--rrl-*`); TCP is never limited.
    pub rrl: Option<Arc<Rrl>>,
}

/// A running DNS server: UDP and TCP on one address.
pub struct DnsServer {
    tcp: TcpListener,
    udp: Vec<Arc<UdpSocket>>,
    authority: Arc<Authority>,
    local_addr: SocketAddr,
    tcp_config: TcpConfig,
    rrl: Option<Arc<Rrl>>,
    answer_cache_bytes: usize,
}

impl DnsServer {
    /// Binds the UDP sockets and TCP on the same port. With port 0 the first UDP socket picks
    /// the port and the rest bind to it; if that TCP port is taken, another port is tried.
    pub async fn bind(handler: Authority, cfg: &ListenerConfig) -> std::io::Result<Self> {
        let (udp, tcp) = bind_all(cfg.addr, cfg.udp_sockets.max(1))?;
        let local_addr = udp[0].local_addr()?;
        Ok(DnsServer {
            tcp,
            udp: udp.into_iter().map(Arc::new).collect(),
            authority: Arc::new(handler),
            local_addr,
            tcp_config: TcpConfig {
                idle_timeout: cfg.tcp_idle_timeout,
                max_connections: cfg.tcp_max_connections,
            },
            rrl: cfg.rrl.clone(),
            answer_cache_bytes: cfg.answer_cache_bytes,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` is cancelled, then stops accepting and waits for the listeners.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut loops = Vec::new();
        for (i, socket) in self.udp.iter().enumerate() {
            let (socket, authority, rrl, token) = (
                socket.clone(),
                self.authority.clone(),
                self.rrl.clone(),
                shutdown.clone(),
            );
            let runtime = tokio::runtime::Handle::current();
            let cache_bytes = self.answer_cache_bytes;
            loops.push(
                std::thread::Builder::new()
                    .name(format!("petdns-udp-{i}"))
                    .spawn(move || {
                        udp::serve(socket, authority, rrl, cache_bytes, token, runtime)
                    })?,
            );
        }
        tcp::serve(
            self.tcp,
            self.authority.clone(),
            self.tcp_config,
            shutdown.clone(),
        )
        .await;
        // The UDP threads notice within their read timeout.
        tokio::task::spawn_blocking(move || {
            for l in loops {
                let _ = l.join();
            }
        })
        .await?;
        Ok(())
    }
}

fn udp_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_port(true)?;
    // Room for bursts: queries wait in the kernel instead of being dropped.
    let _ = s.set_recv_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    Ok(s.into())
}

fn bind_all(addr: SocketAddr, sockets: usize) -> std::io::Result<(Vec<UdpSocket>, TcpListener)> {
    let mut last_err = None;
    for _ in 0..16 {
        let first = udp_socket(addr)?;
        let port_addr = first.local_addr()?;
        let tcp = match std::net::TcpListener::bind(port_addr) {
            Ok(l) => l,
            Err(e) if addr.port() == 0 => {
                last_err = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        tcp.set_nonblocking(true)?;
        let mut udp = vec![first];
        for _ in 1..sockets {
            udp.push(udp_socket(port_addr)?);
        }
        return Ok((udp, TcpListener::from_std(tcp)?));
    }
    Err(last_err.unwrap_or_else(|| std::io::Error::other("no free port for UDP and TCP")))
}
