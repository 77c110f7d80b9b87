//! Bound listeners: TCP (with `TCP_NODELAY` on every connection) or a unix socket.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::task::{Context, Poll};

use oort_common::config::ListenAddr;
use tokio::net::{TcpListener, TcpSocket, TcpStream, UnixListener, UnixStream};

/// A bound listener. Tests bind `127.0.0.1:0` themselves and hand it over.
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// A unix socket, removed again when the listener is dropped.
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds `addr`. A port without a host listens on every interface, IPv6 and IPv4 (falling
    /// back to IPv4 alone where IPv6 is unavailable), as kuiperbelt's `":"+port` does.
    pub async fn bind(addr: &ListenAddr) -> io::Result<Self> {
        match addr {
            ListenAddr::Tcp {
                host: Some(host),
                port,
            } => Ok(Self::Tcp(bind_tcp((host.as_str(), *port)).await?)),
            ListenAddr::Tcp { host: None, port } => match bind_tcp(("::", *port)).await {
                Ok(listener) => Ok(Self::Tcp(listener)),
                Err(_) => Ok(Self::Tcp(bind_tcp(("0.0.0.0", *port)).await?)),
            },
            ListenAddr::Unix(path) => {
                remove_stale_socket(path)?;
                Ok(Self::Unix(UnixListener::bind(path)?, path.clone()))
            }
        }
    }

    /// Where this listener listens, for logs and for tests that bound port 0.
    pub fn local_addr(&self) -> io::Result<ListenAddr> {
        match self {
            Self::Tcp(listener) => {
                let addr = listener.local_addr()?;
                Ok(ListenAddr::Tcp {
                    host: Some(addr.ip().to_string()),
                    port: addr.port(),
                })
            }
            Self::Unix(_, path) => Ok(ListenAddr::Unix(path.clone())),
        }
    }

    /// The TCP address, if this is a TCP listener.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Tcp(listener) => listener.local_addr().ok(),
            Self::Unix(..) => None,
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Self::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// How many finished handshakes the kernel queues for `accept`. Tokio's default (1024) overflows
/// in a reconnect storm (every client of a crashed node at once): the kernel then drops the
/// client's final ACK and the client waits for a 1 s SYN retransmit. The kernel caps this at
/// `net.core.somaxconn` (4096 by default since Linux 5.4).
const LISTEN_BACKLOG: u32 = 4096;

/// Binds the first address `addr` resolves to that accepts, with [`LISTEN_BACKLOG`].
async fn bind_tcp(addr: impl tokio::net::ToSocketAddrs) -> io::Result<TcpListener> {
    let mut last_error = io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing");
    for addr in tokio::net::lookup_host(addr).await? {
        let socket = if addr.is_ipv6() {
            TcpSocket::new_v6()?
        } else {
            TcpSocket::new_v4()?
        };
        // As std's and tokio's own `bind` do: a restarted node can rebind at once.
        socket.set_reuseaddr(true)?;
        match socket
            .bind(addr)
            .and_then(|()| socket.listen(LISTEN_BACKLOG))
        {
            Ok(listener) => return Ok(listener),
            Err(error) => last_error = error,
        }
    }
    Err(last_error)
}

/// A socket file left by a process that is gone would make `bind` fail; a live one is kept
/// (the bind then fails with "address in use", which is the truth).
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_err() {
                std::fs::remove_file(path)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// An accepted connection of either kind (boxed, so one accept callback serves both).
pub(crate) trait Connection:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static
{
    /// Ready once the first byte arrived (or the peer closed), without reading it: a
    /// connection that sends nothing is given no read buffer.
    fn poll_first_byte(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl Connection for TcpStream {
    fn poll_first_byte(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A peek, because tokio reports a freshly accepted socket ready to read before any
        // byte came (readiness may be spurious; a peek that would block clears it).
        let mut byte = [0u8; 1];
        let mut peeked = tokio::io::ReadBuf::new(&mut byte);
        self.poll_peek(cx, &mut peeked).map_ok(|_| ())
    }
}

impl Connection for UnixStream {
    fn poll_first_byte(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // tokio has no peek for unix sockets; readiness may come early, which only makes the
        // connection take its whole reservation early. A unix socket's peers are local.
        self.poll_read_ready(cx)
    }
}

/// Accepting connections, for either kind of listener.
pub(crate) trait Accept {
    type Io: Connection;
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Io, Option<SocketAddr>)>> + Send;
}

impl Accept for TcpListener {
    type Io = TcpStream;

    async fn accept(&self) -> io::Result<(TcpStream, Option<SocketAddr>)> {
        let (stream, peer) = TcpListener::accept(self).await?;
        // Frames are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        Ok((stream, Some(peer)))
    }
}

impl Accept for UnixListener {
    type Io = UnixStream;

    async fn accept(&self) -> io::Result<(UnixStream, Option<SocketAddr>)> {
        let (stream, _) = UnixListener::accept(self).await?;
        Ok((stream, None))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_connection_that_sent_nothing_is_not_ready_to_read() {
        let listener = bind_tcp(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = Accept::accept(&listener).await.unwrap();
        let boxed: Box<dyn Connection> = Box::new(accepted);
        let ready = tokio::time::timeout(
            Duration::from_millis(200),
            std::future::poll_fn(|cx| boxed.poll_first_byte(cx)),
        )
        .await;
        assert!(ready.is_err(), "ready without a byte: {ready:?}");
        tokio::io::AsyncWriteExt::write_all(&mut client, b"G")
            .await
            .unwrap();
        std::future::poll_fn(|cx| boxed.poll_first_byte(cx))
            .await
            .unwrap();
    }
}
