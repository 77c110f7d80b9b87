//! A WebSocket client for tests, and an HTTP client.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::wait::TIMEOUT;

/// Where every reqwest client of the harness starts. reqwest is built with
/// `rustls-no-provider` (the gateway needs https with ring), and a client built the ordinary
/// way would panic looking for a process-wide crypto provider; this one is handed a rustls
/// config naming ring. It trusts no roots: the harness speaks plain http.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    #[allow(
        clippy::disallowed_methods,
        reason = "this is the one place the harness's reqwest clients start"
    )]
    let builder = reqwest::Client::builder();
    builder.tls_backend_preconfigured(tls)
}

/// An HTTP client for the backend API (no pooling surprises: fresh connections are cheap here).
pub fn http_client() -> reqwest::Client {
    http_client_builder()
        .timeout(TIMEOUT)
        .build()
        .expect("HTTP client")
}

/// Sends `request` and parses its answer as JSON; `None` when the request fails or the answer
/// is not JSON (for tests that retry through nodes that may be restarting).
pub async fn try_json(request: reqwest::RequestBuilder) -> Option<serde_json::Value> {
    let bytes = request.send().await.ok()?.bytes().await.ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// What a connect attempt produced.
pub type ConnectResult = Result<(WsClient, Response<Option<Vec<u8>>>), Error>;

/// A connected WebSocket client.
pub struct WsClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    /// Connects to `url` with extra headers.
    pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> ConnectResult {
        let mut request = url.into_client_request()?;
        for (name, value) in headers {
            request.headers_mut().append(
                HeaderName::try_from(*name).expect("header name"),
                HeaderValue::try_from(*value).expect("header value"),
            );
        }
        let (stream, response) =
            tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(request))
                .await
                .map_err(|_| {
                    Error::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "connect timed out",
                    ))
                })??;
        Ok((Self { stream }, response))
    }

    /// Connects (`ws://` only) over a socket whose receive buffer is about `bytes` (the kernel
    /// may round it up), so that what the client does not read soon stays queued at the server
    /// instead of in the kernel's buffers. Panics on failure.
    pub async fn connect_with_receive_buffer(url: &str, bytes: u32) -> Self {
        let request = url.into_client_request().expect("a WebSocket URL");
        let host = request.uri().host().expect("a host").to_owned();
        let port = request.uri().port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .expect("resolve the host")
            .next()
            .expect("an address");
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .expect("a socket");
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        let tcp = tokio::time::timeout(TIMEOUT, socket.connect(addr))
            .await
            .expect("TCP connect in time")
            .expect("TCP connect");
        let (stream, _) = tokio::time::timeout(
            TIMEOUT,
            tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(tcp)),
        )
        .await
        .expect("the handshake in time")
        .unwrap_or_else(|err| panic!("connect to {url} failed: {err}"));
        Self { stream }
    }

    /// Connects, panicking on failure.
    pub async fn connect(url: &str) -> Self {
        match Self::connect_with(url, &[]).await {
            Ok((client, _)) => client,
            Err(err) => panic!("connect to {url} failed: {err}"),
        }
    }

    /// The next message (pings and pongs included), or `None` when the stream ended; panics
    /// after `timeout`.
    pub async fn next_within(&mut self, timeout: Duration) -> Option<Result<Message, Error>> {
        match tokio::time::timeout(timeout, self.stream.next()).await {
            Ok(next) => next,
            Err(_) => panic!("no message within {timeout:?}"),
        }
    }

    /// The next data message, skipping pings and pongs.
    pub async fn recv(&mut self) -> Message {
        loop {
            match self.next_within(TIMEOUT).await {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(message)) => return message,
                Some(Err(err)) => panic!("receive failed: {err}"),
                None => panic!("the connection ended while a message was expected"),
            }
        }
    }

    /// The next text message.
    pub async fn recv_text(&mut self) -> String {
        match self.recv().await {
            Message::Text(text) => text.to_string(),
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// True if no data message arrives within `window` (pings are ignored).
    pub async fn nothing_within(&mut self, window: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + window;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return true,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(_) => return false,
            }
        }
    }

    /// Waits for the server to close: the close frame it sent (`None` if the connection ended
    /// without one), after answering it.
    pub async fn closed(&mut self) -> Option<CloseFrame> {
        loop {
            match self.next_within(TIMEOUT).await {
                Some(Ok(Message::Close(frame))) => {
                    // Drive the stream so tungstenite sends the close reply.
                    while let Ok(Some(_)) = tokio::time::timeout(TIMEOUT, self.stream.next()).await
                    {
                    }
                    return frame;
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Sends a message.
    pub async fn send(&mut self, message: Message) {
        self.stream.send(message).await.expect("send");
    }

    /// Sends a text message.
    pub async fn send_text(&mut self, text: &str) {
        self.send(Message::text(text)).await;
    }

    /// Starts a clean close from the client side and waits for the server's answer.
    pub async fn close(mut self, code: u16) -> Option<CloseFrame> {
        let frame = CloseFrame {
            code: code.into(),
            reason: "bye".into(),
        };
        let _ = self.stream.close(Some(frame)).await;
        loop {
            match tokio::time::timeout(TIMEOUT, self.stream.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => return frame,
                Ok(Some(Ok(_))) => continue,
                _ => return None,
            }
        }
    }

    /// The underlying stream, for tests that need raw access.
    pub fn stream(&mut self) -> &mut WebSocketStream<MaybeTlsStream<TcpStream>> {
        &mut self.stream
    }
}
