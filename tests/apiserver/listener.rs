//! The listening socket, closed while the server is down: new connections are refused by the
//! kernel (ECONNREFUSED) and every open connection is cut, as when the API server process
//! exits. `FakeApiServer::go_down` / `come_up` drive it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::Shared;

/// Up or down, and the token that cuts the connections accepted while up. One value in a
/// watch channel so that a connection can never be accepted with a token that `go_down`
/// has already replaced.
#[derive(Clone, Default)]
pub struct Gate {
    pub down: bool,
    pub cut: CancellationToken,
}

/// `axum::serve`'s listener: the real socket while up, none while down.
pub struct GatedListener {
    addr: SocketAddr,
    socket: Option<TcpListener>,
    shared: Arc<Shared>,
}

impl GatedListener {
    pub fn new(socket: TcpListener, shared: Arc<Shared>) -> Self {
        GatedListener {
            addr: shared.addr,
            socket: Some(socket),
            shared,
        }
    }
}

impl axum::serve::Listener for GatedListener {
    type Io = Cuttable;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Cuttable, SocketAddr) {
        let mut gate = self.shared.gate.subscribe();
        loop {
            if gate.borrow_and_update().down {
                // Closing the socket is what makes connects fail with ECONNREFUSED.
                self.socket = None;
                self.shared.listening.store(false, Ordering::SeqCst);
                let _ = gate.wait_for(|g| !g.down).await;
                continue;
            }
            let socket = match &self.socket {
                Some(s) => s,
                None => match TcpListener::bind(self.addr).await {
                    // tokio sets SO_REUSEADDR, so the same port binds again at once unless
                    // another socket took it meanwhile; then retry until it is free.
                    Ok(s) => self.socket.insert(s),
                    Err(e) => {
                        eprintln!("fake apiserver: cannot listen on {} again: {e}", self.addr);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            self.shared.listening.store(true, Ordering::SeqCst);
            tokio::select! {
                accepted = socket.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let gate = gate.borrow();
                        if gate.down {
                            continue; // went down meanwhile: drop the connection
                        }
                        return (Cuttable::new(stream, gate.cut.clone()), peer);
                    }
                    // Out of file descriptors and the like: back off, as axum's listener does.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                },
                _ = gate.changed() => {}
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

/// An accepted connection that fails every read and write once its token is cancelled;
/// hyper then drops it and the socket closes.
pub struct Cuttable {
    stream: TcpStream,
    cut: CancellationToken,
    // Polled on reads so that an idle keep-alive connection wakes up to be cut.
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Cuttable {
    fn new(stream: TcpStream, cut: CancellationToken) -> Self {
        let cancelled = Box::pin(cut.clone().cancelled_owned());
        Cuttable {
            stream,
            cut,
            cancelled,
        }
    }

    fn cut_error() -> io::Error {
        io::Error::new(io::ErrorKind::ConnectionReset, "fake apiserver went down")
    }
}

impl AsyncRead for Cuttable {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.cut.is_cancelled() || this.cancelled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(Self::cut_error()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Cuttable {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.cut.is_cancelled() {
            return Poll::Ready(Err(Self::cut_error()));
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.cut.is_cancelled() {
            return Poll::Ready(Err(Self::cut_error()));
        }
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
