//! A client of the `oort.v1` subprotocol (docs/protocol.md), for tests and oort-bench: it
//! reads the welcome, numbers what it receives, acknowledges, and resumes after a drop.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::wait::TIMEOUT;

/// The subprotocol.
pub const SUBPROTOCOL: &str = "oort.v1";

/// One backend message as the client got it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    Text(String),
    Binary(Vec<u8>),
}

/// What the server sent next.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A backend message with its sequence number.
    Message(u64, Data),
    /// A backend request (`/v1/request`) with its sequence number and correlation id.
    Request(u64, String, Data),
    /// A fresh resume token (already kept by the client).
    Token,
    /// Continuity was lost (close 4000 follows).
    Reset(String),
    /// The connection closed, with the close code if there was one.
    Closed(Option<u16>, String),
}

/// Why a connect or resume did not give a session.
#[derive(Debug)]
pub enum ConnectError {
    /// Refused with an HTTP status (401: bad token; 400: malformed; 503: unavailable).
    Refused(u16),
    /// Upgraded only to be told continuity was lost.
    Reset(String),
    /// The server did not select `oort.v1` or sent something else first.
    Protocol(String),
    /// The connection failed.
    Failed(String),
}

/// Where a client stands in its session; survives the connection.
#[derive(Clone, Debug)]
pub struct Position {
    pub session: String,
    pub token: String,
    /// The last sequence number received.
    pub seen: u64,
}

/// A connected `oort.v1` client.
pub struct DurableClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub position: Position,
    /// The position in the welcome of this connection.
    pub welcome_seq: u64,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Control {
    Welcome {
        session: String,
        resume: String,
        seq: u64,
    },
    Token {
        resume: String,
    },
    Reset {
        reason: String,
    },
}

#[derive(Deserialize)]
struct TextMessage {
    seq: u64,
    data: String,
}

#[derive(Deserialize)]
struct RequestMessage {
    seq: u64,
    request: String,
    data: Option<String>,
    data_base64: Option<String>,
}

impl DurableClient {
    /// Connects to `url` (a connect URL, query included) offering `oort.v1`.
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        let mut client = Self::open(url).await?;
        client.read_welcome(None).await?;
        Ok(client)
    }

    /// Resumes `position` through `connect_url` (the connect path of any node, no query).
    pub async fn resume(connect_url: &str, position: &Position) -> Result<Self, ConnectError> {
        let url = format!(
            "{connect_url}?oort_resume={}&oort_seq={}",
            position.token, position.seen
        );
        let mut client = Self::open(&url).await?;
        client.position = position.clone();
        client.read_welcome(Some(position)).await?;
        Ok(client)
    }

    async fn open(url: &str) -> Result<Self, ConnectError> {
        let mut request = url
            .into_client_request()
            .map_err(|err| ConnectError::Failed(err.to_string()))?;
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
        let connect = tokio_tungstenite::connect_async(request);
        let (stream, response) = match tokio::time::timeout(TIMEOUT, connect).await {
            Err(_) => return Err(ConnectError::Failed("connect timed out".into())),
            Ok(Err(Error::Http(response))) => {
                return Err(ConnectError::Refused(response.status().as_u16()));
            }
            Ok(Err(err)) => return Err(ConnectError::Failed(err.to_string())),
            Ok(Ok(connected)) => connected,
        };
        let selected = response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok());
        if selected != Some(SUBPROTOCOL) {
            return Err(ConnectError::Protocol(format!(
                "the server selected {selected:?}"
            )));
        }
        Ok(Self {
            stream,
            position: Position {
                session: String::new(),
                token: String::new(),
                seen: 0,
            },
            welcome_seq: 0,
        })
    }

    async fn read_welcome(&mut self, resuming: Option<&Position>) -> Result<(), ConnectError> {
        let frame = match tokio::time::timeout(TIMEOUT, self.next_frame()).await {
            Err(_) => return Err(ConnectError::Protocol("no welcome in time".into())),
            Ok(frame) => frame,
        };
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            other => {
                return Err(ConnectError::Protocol(format!(
                    "expected a welcome: {other:?}"
                )));
            }
        };
        match serde_json::from_str::<Control>(text.as_str()) {
            Ok(Control::Welcome {
                session,
                resume,
                seq,
            }) => {
                if let Some(position) = resuming
                    && (seq != position.seen || session != position.session)
                {
                    return Err(ConnectError::Protocol(format!(
                        "welcome at {seq} for {session}, resumed at {} for {}",
                        position.seen, position.session
                    )));
                }
                self.position.session = session;
                self.position.token = resume;
                self.position.seen = seq;
                self.welcome_seq = seq;
                Ok(())
            }
            Ok(Control::Reset { reason }) => Err(ConnectError::Reset(reason)),
            _ => Err(ConnectError::Protocol(format!(
                "expected a welcome: {text}"
            ))),
        }
    }

    async fn next_frame(&mut self) -> Option<Result<Message, Error>> {
        loop {
            match self.stream.next().await {
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                other => return other,
            }
        }
    }

    /// The next event; `None` after `timeout` without one.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<Event> {
        let frame = tokio::time::timeout(timeout, self.next_frame())
            .await
            .ok()?;
        Some(match frame {
            None | Some(Err(_)) => Event::Closed(None, String::new()),
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = frame.map_or((None, String::new()), |frame| {
                    (Some(u16::from(frame.code)), frame.reason.to_string())
                });
                // Answer the close and let the connection end.
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    while self.stream.next().await.is_some() {}
                })
                .await;
                Event::Closed(code, reason)
            }
            Some(Ok(Message::Binary(data))) if data.len() >= 8 => {
                let mut seq = [0u8; 8];
                seq.copy_from_slice(&data[..8]);
                let seq = u64::from_be_bytes(seq);
                self.position.seen = self.position.seen.max(seq);
                Event::Message(seq, Data::Binary(data[8..].to_vec()))
            }
            Some(Ok(Message::Text(text))) => {
                if let Ok(request) = serde_json::from_str::<RequestMessage>(text.as_str()) {
                    self.position.seen = self.position.seen.max(request.seq);
                    let data = match (request.data, request.data_base64) {
                        (Some(text), _) => Data::Text(text),
                        (None, Some(encoded)) => {
                            use base64::Engine;
                            let bytes = base64::engine::general_purpose::STANDARD
                                .decode(encoded)
                                .expect("base64 request data");
                            Data::Binary(bytes)
                        }
                        (None, None) => Data::Text(String::new()),
                    };
                    return Some(Event::Request(request.seq, request.request, data));
                }
                if let Ok(message) = serde_json::from_str::<TextMessage>(text.as_str()) {
                    self.position.seen = self.position.seen.max(message.seq);
                    return Some(Event::Message(message.seq, Data::Text(message.data)));
                }
                match serde_json::from_str::<Control>(text.as_str()) {
                    Ok(Control::Token { resume }) => {
                        self.position.token = resume;
                        Event::Token
                    }
                    Ok(Control::Reset { reason }) => Event::Reset(reason),
                    _ => panic!("not an oort.v1 frame: {text}"),
                }
            }
            Some(Ok(other)) => panic!("not an oort.v1 frame: {other:?}"),
        })
    }

    /// The next backend message, panicking on anything else or after the harness timeout.
    pub async fn recv(&mut self) -> (u64, Data) {
        match self.next_event(TIMEOUT).await {
            Some(Event::Message(seq, data)) => (seq, data),
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// The next backend request: its sequence number, id and data.
    pub async fn recv_request(&mut self) -> (u64, String, Data) {
        match self.next_event(TIMEOUT).await {
            Some(Event::Request(seq, id, data)) => (seq, id, data),
            other => panic!("expected a request, got {other:?}"),
        }
    }

    /// Answers request `id` with text.
    pub async fn reply(&mut self, id: &str, data: &str) -> Result<(), Error> {
        let reply = serde_json::json!({"type": "reply", "request": id, "data": data}).to_string();
        self.stream.send(Message::text(reply)).await
    }

    /// Acknowledges every message up to `seq`.
    pub async fn ack(&mut self, seq: u64) -> Result<(), Error> {
        let ack = serde_json::json!({"type": "ack", "seq": seq}).to_string();
        self.stream.send(Message::text(ack)).await
    }

    /// Sends a text message to the backend (the receive callback).
    pub async fn send_text(&mut self, data: &str) -> Result<(), Error> {
        let message = serde_json::json!({"type": "message", "data": data}).to_string();
        self.stream.send(Message::text(message)).await
    }

    /// Sends a raw frame (for protocol-error tests).
    pub async fn send_raw(&mut self, message: Message) -> Result<(), Error> {
        self.stream.send(message).await
    }

    /// Drops the connection without a close handshake, as a network blip does.
    pub fn drop_connection(self) -> Position {
        self.position
    }

    /// Closes cleanly (which ends the session).
    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while self.stream.next().await.is_some() {}
        })
        .await;
    }
}
