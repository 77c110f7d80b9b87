//! Refusals by a protection limit: why (also a metric label), the status and `Retry-After`, and
//! the answer written straight to a socket when hyper has not been given the connection yet.

use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The limit that refused a connection or request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RefusalReason {
    /// `limits.address_connections`.
    AddressConnections,
    /// `limits.address_connect_rate`.
    AddressRate,
    /// `limits.handshake_memory` stayed spent for `limits.client_head_timeout`.
    HandshakeMemory,
    /// `limits.shared_api_connections` stayed taken for the head timeout.
    SharedApiConnections,
    /// `callback.connect_concurrency`.
    ConnectConcurrency,
    /// `callback.connect_rate`.
    ConnectRate,
    /// A request head over its limit (hyper answers 431).
    HeadTooLarge,
    /// A request head that did not arrive within its timeout (the connection is closed).
    HeadTimeout,
}

impl RefusalReason {
    pub(crate) const ALL: [Self; 8] = [
        Self::AddressConnections,
        Self::AddressRate,
        Self::HandshakeMemory,
        Self::SharedApiConnections,
        Self::ConnectConcurrency,
        Self::ConnectRate,
        Self::HeadTooLarge,
        Self::HeadTimeout,
    ];

    /// The metric label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::AddressConnections => "address_connections",
            Self::AddressRate => "address_rate",
            Self::HandshakeMemory => "handshake_memory",
            Self::SharedApiConnections => "shared_api_connections",
            Self::ConnectConcurrency => "connect_concurrency",
            Self::ConnectRate => "connect_rate",
            Self::HeadTooLarge => "head_too_large",
            Self::HeadTimeout => "head_timeout",
        }
    }

    /// The status the client gets. One address asking too much is told so (429); a node that
    /// is busy for everyone is unavailable (503).
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Self::AddressConnections | Self::AddressRate => StatusCode::TOO_MANY_REQUESTS,
            Self::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::HeadTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::HandshakeMemory
            | Self::SharedApiConnections
            | Self::ConnectConcurrency
            | Self::ConnectRate => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The reason the client reads.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::AddressConnections => "too many connections from your address",
            Self::AddressRate => "too many connection attempts from your address",
            Self::HandshakeMemory => "too many connections are being set up",
            Self::SharedApiConnections => "too many backend API connections",
            Self::ConnectConcurrency => "too many connects are waiting for the backend",
            Self::ConnectRate => "too many connects per second for the backend",
            Self::HeadTooLarge => "the request head is too large",
            Self::HeadTimeout => "the request head did not arrive in time",
        }
    }
}

/// A refusal and when the client may try again.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Refusal {
    pub reason: RefusalReason,
    pub retry_after: Duration,
}

impl Refusal {
    /// `Retry-After` in whole seconds, at least 1 (0 would invite an immediate retry).
    pub(crate) fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

/// How long a refused connection may take to send its request head, and then to take the
/// answer: the answer is a few hundred bytes, so only a client that does not read needs long.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);
/// The most of a refused request that is read (and thrown away) before answering.
const DISCARD_AT_MOST: usize = 16 << 10;

/// Answers `refusal` on a connection whose request was not read, and closes it. The request
/// head is read first (and thrown away): an HTTP client takes an answer that comes before its
/// request as a broken connection. Bounded by [`ANSWER_TIMEOUT`] twice, and holds no buffer
/// beyond the answer.
pub(crate) async fn answer_unread<I>(mut io: I, refusal: Refusal)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let _ = tokio::time::timeout(ANSWER_TIMEOUT, skip_head(&mut io)).await;
    let status = refusal.reason.status();
    let body = format!(
        "{}: {}\n",
        status.canonical_reason().unwrap_or("Error"),
        refusal.reason.message()
    );
    let answer = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\
         retry-after: {}\r\nconnection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error"),
        body.len(),
        refusal.retry_after_secs(),
    );
    let _ = tokio::time::timeout(ANSWER_TIMEOUT, async {
        io.write_all(answer.as_bytes()).await?;
        io.shutdown().await
    })
    .await;
}

/// Reads up to the blank line that ends a request head, or [`DISCARD_AT_MOST`] bytes, or the
/// end of the stream.
async fn skip_head<I: AsyncRead + Unpin>(io: &mut I) {
    let mut scratch = [0u8; 512];
    // The last bytes seen, so that a head end split across two reads is found.
    let mut tail = [0u8; 4];
    let mut discarded = 0;
    while discarded < DISCARD_AT_MOST {
        let read = match io.read(&mut scratch).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        discarded += read;
        for byte in &scratch[..read] {
            tail.rotate_left(1);
            tail[3] = *byte;
            if &tail == b"\r\n\r\n" {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unread_refusal_is_a_complete_http_answer_with_retry_after() {
        let (server, mut client) = tokio::io::duplex(4096);
        client
            .write_all(b"GET /connect HTTP/1.1\r\n")
            .await
            .unwrap();
        let refusal = Refusal {
            reason: RefusalReason::AddressRate,
            retry_after: Duration::from_millis(1200),
        };
        let answering = tokio::spawn(answer_unread(server, refusal));
        client.write_all(b"\n").await.unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        drop(client);
        answering.await.unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
            "{answer}"
        );
        assert!(answer.contains("retry-after: 2\r\n"), "{answer}");
        assert!(
            answer.ends_with(
                "\r\n\r\nToo Many Requests: too many connection attempts from your address\n"
            ),
            "{answer}"
        );
    }
}
