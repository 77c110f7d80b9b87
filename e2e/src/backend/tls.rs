//! The backend over HTTPS: a listener that completes each TLS handshake in its own task and
//! hands axum only the connections that finished one (a gateway that refuses the certificate
//! simply never arrives).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take over its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS connections, handshake done.
pub(super) struct TlsListener {
    local_addr: SocketAddr,
    handshaken: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Accepts on `listener` with `config` (certificate chain and key) from now on.
    pub(super) fn new(listener: TcpListener, config: rustls::ServerConfig) -> Self {
        let local_addr = listener.local_addr().expect("backend address");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (done, handshaken) = mpsc::channel(64);
        tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let done = done.clone();
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    if let Ok(Ok(tls)) = handshake.await {
                        let _ = done.send((tls, peer)).await;
                    }
                });
            }
        });
        Self {
            local_addr,
            handshaken,
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(connection) => connection,
            // The accept task only ends with the runtime; so does the server.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}
