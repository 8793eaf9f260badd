//! TLS connections for the gRPC endpoint: accepted here, each handshake in a task of
//! its own within the server's head read timeout, and handed to tonic once secure.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

/// Connections whose handshake is done, waiting for tonic to take them.
const READY_MAX: usize = 64;

/// A TLS connection as tonic serves it.
pub(super) struct Secure(TlsStream<TcpStream>);

/// The secure connections of `listener`, until the server closes. A failed or late
/// handshake closes its connection and is logged; the others go on.
pub(super) fn incoming(
    listener: TcpListener,
    tls: TlsAcceptor,
    handshake_max: Duration,
    mut closing: watch::Receiver<bool>,
) -> ReceiverStream<io::Result<Secure>> {
    let (ready, incoming) = mpsc::channel(READY_MAX);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "cannot accept a gRPC connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = async { let _ = closing.wait_for(|closing| *closing).await; } => return,
            };
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
            }
            let (tls, ready) = (tls.clone(), ready.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(handshake_max, tls.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = ready.send(Ok(Secure(stream))).await;
                    }
                    Ok(Err(error)) => tracing::debug!(%peer, %error, "gRPC TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "gRPC TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(incoming)
}

impl tonic::transport::server::Connected for Secure {
    type ConnectInfo = Option<std::net::SocketAddr>;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.get_ref().0.peer_addr().ok()
    }
}

impl AsyncRead for Secure {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Secure {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}
