//! Binding the DNS listeners: several UDP sockets on one port (SO_REUSEPORT) served by our own
//! loop with its fast path, and TCP served by hickory's `Server`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::UdpSocket;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
}

/// The handler shared by the UDP loops and hickory's TCP server.
struct Shared(Arc<Authority>);

#[async_trait::async_trait]
impl RequestHandler for Shared {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        self.0
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}

/// A running DNS server: UDP and TCP on one address.
pub struct DnsServer {
    tcp: Server<Shared>,
    udp: Vec<Arc<UdpSocket>>,
    authority: Arc<Authority>,
    local_addr: SocketAddr,
}

impl DnsServer {
    /// Binds the UDP sockets and TCP on the same port. With port 0 the first UDP socket picks
    /// the port and the rest bind to it; if that TCP port is taken, another port is tried.
    pub async fn bind(handler: Authority, cfg: &ListenerConfig) -> std::io::Result<Self> {
        let (udp, tcp) = bind_all(cfg.addr, cfg.udp_sockets.max(1))?;
        let local_addr = udp[0].local_addr()?;
        let authority = Arc::new(handler);
        let mut server = Server::new(Shared(authority.clone()));
        // Outbound queue per TCP connection: hickory's own default.
        server.register_listener(tcp, cfg.tcp_idle_timeout, 32);
        Ok(DnsServer {
            tcp: server,
            udp: udp.into_iter().map(Arc::new).collect(),
            authority,
            local_addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` is cancelled, then stops accepting and waits for the listeners.
    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut loops = Vec::new();
        for (i, socket) in self.udp.iter().enumerate() {
            let (socket, authority, token) =
                (socket.clone(), self.authority.clone(), shutdown.clone());
            let runtime = tokio::runtime::Handle::current();
            loops.push(
                std::thread::Builder::new()
                    .name(format!("petdns-udp-{i}"))
                    .spawn(move || udp::serve(socket, authority, token, runtime))?,
            );
        }
        let token = self.tcp.shutdown_token().clone();
        let result = tokio::select! {
            result = self.tcp.block_until_done() => {
                result.map_err(|e| anyhow::anyhow!("DNS listener failed: {e}"))
            }
            _ = shutdown.cancelled() => {
                token.cancel();
                self.tcp
                    .block_until_done()
                    .await
                    .map_err(|e| anyhow::anyhow!("DNS listener failed during shutdown: {e}"))
            }
        };
        shutdown.cancel();
        // The UDP threads notice within their read timeout.
        tokio::task::spawn_blocking(move || {
            for l in loops {
                let _ = l.join();
            }
        })
        .await?;
        result
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
