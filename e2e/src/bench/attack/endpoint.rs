//! Where the attack goes, and the loopback addresses it comes from.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

/// The gateway's connect endpoint, split for raw sockets.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// `ws://host:port/path`, as given.
    pub url: String,
    /// The address to connect to.
    pub server: SocketAddr,
    /// The connect path (`/connect`).
    pub path: String,
}

impl Endpoint {
    /// Parses `ws://host:port/path` and resolves the host.
    pub async fn of(connect_url: &str) -> anyhow::Result<Self> {
        let url = url::Url::parse(connect_url)?;
        let host = url
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("no host in {connect_url}"))?;
        let port = url.port().unwrap_or(80);
        let server = tokio::net::lookup_host((host, port))
            .await?
            .next()
            .ok_or_else(|| anyhow::anyhow!("cannot resolve {host}"))?;
        Ok(Self {
            url: connect_url.to_owned(),
            server,
            path: url.path().to_owned(),
        })
    }

    /// A WebSocket handshake request for session `key`.
    pub fn handshake(&self, key: &str) -> String {
        format!(
            "GET {}?key={key} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            self.path, self.server
        )
    }

    /// A TCP connection from `source`.
    pub async fn connect_from(&self, source: Ipv4Addr) -> std::io::Result<TcpStream> {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(SocketAddr::from((source, 0)))?;
        match tokio::time::timeout(Duration::from_secs(10), socket.connect(self.server)).await {
            Ok(connected) => connected,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }
}

/// `count` attacker addresses, 127.77.0.1 and up (any 127.0.0.0/8 address is local).
pub(super) fn attacker_sources(count: usize) -> Vec<Ipv4Addr> {
    (0..count.max(1))
        .map(|index| Ipv4Addr::new(127, 77, (index / 250) as u8, (index % 250) as u8 + 1))
        .collect()
}

/// The address of well-behaved session `index`: 127.0.0.2 and up, 100 sessions each.
pub(super) fn session_source(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(
        127,
        0,
        (index / 25_000) as u8,
        (index / 100 % 250) as u8 + 2,
    )
}
