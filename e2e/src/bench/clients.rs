//! Opening many WebSocket clients quickly, from several loopback source addresses so that more
//! than one port range's worth of connections fit.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::durable_client::SUBPROTOCOL;

/// Connections per source address (below the ~28k ephemeral ports of one address).
const PER_SOURCE_ADDRESS: usize = 20_000;

/// An open client connection.
pub type Client = WebSocketStream<TcpStream>;

/// Opened clients and how long each connect took.
pub struct Opened {
    /// The clients, in key order (`{prefix}-{index}`).
    pub clients: Vec<Client>,
    /// Connect times (TCP connect to 101).
    pub connect_times: Vec<Duration>,
    /// Connects that failed.
    pub failures: usize,
    /// Wall time to open them all.
    pub elapsed: Duration,
}

/// Opens `count` clients to `connect_url` (a `ws://host:port/path` URL) with keys
/// `{prefix}-{index}`, at most `concurrency` connecting at once.
pub async fn open(
    connect_url: &str,
    count: usize,
    concurrency: usize,
    prefix: &str,
) -> anyhow::Result<Opened> {
    open_with(connect_url, count, concurrency, prefix, false).await
}

/// Like [`open`]; with `durable`, every client offers the `oort.v1` subprotocol, and is
/// returned once the gateway selected it and the client read its welcome (so what it reads
/// next are sequence-numbered messages).
pub async fn open_with(
    connect_url: &str,
    count: usize,
    concurrency: usize,
    prefix: &str,
    durable: bool,
) -> anyhow::Result<Opened> {
    let url = url::Url::parse(connect_url)?;
    let host = url
        .host_str()
        .ok_or_else(|| anyhow::anyhow!("no host in {connect_url}"))?;
    let port = url.port().unwrap_or(80);
    let server: SocketAddr = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| anyhow::anyhow!("cannot resolve {host}"))?;
    let limit = Arc::new(Semaphore::new(concurrency.max(1)));
    let started = Instant::now();
    let mut pending = FuturesUnordered::new();
    for index in 0..count {
        let limit = limit.clone();
        let request = format!("{connect_url}?key={prefix}-{index}");
        pending.push(async move {
            let _permit = limit.acquire_owned().await.ok()?;
            let began = Instant::now();
            let source = Ipv4Addr::new(127, 0, 0, 1 + (index / PER_SOURCE_ADDRESS) as u8);
            let client = connect_from(source, server, &request, durable).await.ok()?;
            Some((index, client, began.elapsed()))
        });
    }
    let mut slots: Vec<Option<Client>> = (0..count).map(|_| None).collect();
    let mut connect_times = Vec::with_capacity(count);
    let mut failures = 0;
    while let Some(result) = pending.next().await {
        match result {
            Some((index, client, took)) => {
                slots[index] = Some(client);
                connect_times.push(took);
            }
            None => failures += 1,
        }
    }
    Ok(Opened {
        clients: slots.into_iter().flatten().collect(),
        connect_times,
        failures,
        elapsed: started.elapsed(),
    })
}

async fn connect_from(
    source: Ipv4Addr,
    server: SocketAddr,
    request: &str,
    durable: bool,
) -> anyhow::Result<Client> {
    let socket = TcpSocket::new_v4()?;
    // Binding first makes the kernel pick the port at bind time, where TIME_WAIT ports from
    // earlier runs block it; only do it past the first address's range, and allow reuse.
    if server.ip().is_loopback() && source != Ipv4Addr::LOCALHOST {
        socket.set_reuseaddr(true)?;
        socket.bind(SocketAddr::from((source, 0)))?;
    }
    let stream = tokio::time::timeout(Duration::from_secs(30), socket.connect(server)).await??;
    stream.set_nodelay(true)?;
    let mut request = request.into_client_request()?;
    if durable {
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    let (mut client, response) = tokio::time::timeout(
        Duration::from_secs(30),
        tokio_tungstenite::client_async(request, stream),
    )
    .await??;
    if durable {
        let selected = response.headers().get("sec-websocket-protocol");
        anyhow::ensure!(
            selected.is_some_and(|value| value == SUBPROTOCOL),
            "the gateway did not select {SUBPROTOCOL}"
        );
        read_welcome(&mut client).await?;
    }
    Ok(client)
}

/// Reads an `oort.v1` connection's first frame, which must be its welcome.
async fn read_welcome(client: &mut Client) -> anyhow::Result<()> {
    let first = tokio::time::timeout(Duration::from_secs(30), client.next())
        .await?
        .ok_or_else(|| anyhow::anyhow!("closed before the welcome"))??;
    let welcome: serde_json::Value = serde_json::from_slice(&first.into_data())?;
    anyhow::ensure!(
        welcome["type"] == "welcome",
        "expected a welcome, got {welcome}"
    );
    Ok(())
}

/// Keeps `clients` open and idle: each is read in the background, so the server's pings are
/// answered and its frames drained. Abort the handles to close them.
pub fn hold(clients: Vec<Client>) -> Vec<tokio::task::JoinHandle<()>> {
    clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move { while let Some(Ok(_)) = client.next().await {} })
        })
        .collect()
}
