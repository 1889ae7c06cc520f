//! Binding the DNS listeners and running hickory's `Server` until shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use super::Authority;

/// Where and how to listen.
#[derive(Clone, Debug)]
pub struct ListenerConfig {
    /// UDP and TCP share this address; port 0 picks a free port for both.
    pub addr: SocketAddr,
    /// Idle TCP connections are closed after this long.
    pub tcp_idle_timeout: Duration,
}

/// A running DNS server: UDP and TCP on one address.
pub struct DnsServer {
    server: Server<Authority>,
    local_addr: SocketAddr,
}

impl DnsServer {
    /// Binds UDP and TCP on the same port. With port 0 the UDP port is picked first and TCP
    /// bound to it; if that TCP port is taken, another UDP port is tried.
    pub async fn bind(handler: Authority, cfg: &ListenerConfig) -> std::io::Result<Self> {
        let (udp, tcp) = bind_pair(cfg.addr).await?;
        let local_addr = udp.local_addr()?;
        let mut server = Server::new(handler);
        server.register_socket(udp);
        // Outbound queue per TCP connection: hickory's own default.
        server.register_listener(tcp, cfg.tcp_idle_timeout, 32);
        Ok(DnsServer { server, local_addr })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` is cancelled, then stops accepting and waits for the listeners.
    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let token = self.server.shutdown_token().clone();
        tokio::select! {
            result = self.server.block_until_done() => {
                result.map_err(|e| anyhow::anyhow!("DNS listener failed: {e}"))
            }
            _ = shutdown.cancelled() => {
                token.cancel();
                self.server
                    .block_until_done()
                    .await
                    .map_err(|e| anyhow::anyhow!("DNS listener failed during shutdown: {e}"))
            }
        }
    }
}

async fn bind_pair(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    if addr.port() != 0 {
        let udp = UdpSocket::bind(addr).await?;
        let tcp = TcpListener::bind(addr).await?;
        return Ok((udp, tcp));
    }
    let mut last_err = None;
    for _ in 0..16 {
        let udp = UdpSocket::bind(addr).await?;
        let port_addr = udp.local_addr()?;
        match TcpListener::bind(port_addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| std::io::Error::other("no free port for UDP and TCP")))
}
