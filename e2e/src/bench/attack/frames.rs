//! Attacks by authenticated sessions on the message path: messages cut into thousands of
//! continuation frames, or messages just over the size limit (sent in `--fragments` frames, so
//! the gateway holds all but the last before it can tell).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use super::endpoint::Endpoint;
use super::outcomes::Outcomes;
use super::{AttackKind, AttackOptions};

/// Keeps `options.connections` sessions from `sources` sending messages of
/// `options.message_bytes` in `options.fragments` frames (an oversized message once per
/// session) until the attack ends; a session the gateway closes is opened again. Labels per
/// session: `close_NNNN` for a close frame, `closed` for a connection that ended without one,
/// `held_open`, `connect_failed`, `refused`; `messages` counts the messages sent, `sessions`
/// the sessions opened.
pub(super) async fn run(
    endpoint: &Endpoint,
    sources: &[Ipv4Addr],
    options: &AttackOptions,
) -> Outcomes {
    let deadline = Instant::now() + options.hold;
    let repeat = options.kind == AttackKind::Fragments;
    let sessions = (0..options.connections).map(|index| {
        let (endpoint, source, options) = (
            endpoint.clone(),
            sources[index % sources.len()],
            options.clone(),
        );
        tokio::spawn(async move {
            // A session the gateway closed comes back, as a real attacker's would.
            let mut results = Vec::new();
            while Instant::now() < deadline {
                let key = format!("frames-{index}-{}", results.len());
                let result = one_session(&endpoint, source, &key, &options, repeat, deadline);
                results.push(result.await);
            }
            results
        })
    });
    let mut outcomes = Outcomes::default();
    for (label, messages) in join_all(sessions).await.into_iter().flatten().flatten() {
        outcomes.add("sessions", 1);
        outcomes.add(label, 1);
        outcomes.add("messages", messages);
    }
    outcomes
}

async fn one_session(
    endpoint: &Endpoint,
    source: Ipv4Addr,
    key: &str,
    options: &AttackOptions,
    repeat: bool,
    deadline: Instant,
) -> (String, usize) {
    let Ok(stream) = endpoint.connect_from(source).await else {
        return ("connect_failed".to_owned(), 0);
    };
    let url = format!("{}?key={key}", endpoint.url);
    let Ok((client, _)) = tokio_tungstenite::client_async(url, stream).await else {
        return ("refused".to_owned(), 0);
    };
    let (mut sink, mut stream) = client.split();
    let fragments = options.fragments.max(1);
    let size = options.message_bytes.max(fragments);
    let sent = AtomicUsize::new(0);
    let send = async {
        loop {
            for (number, chunk) in chunks(size, fragments).enumerate() {
                let opcode = if number == 0 {
                    OpCode::Data(Data::Binary)
                } else {
                    OpCode::Data(Data::Continue)
                };
                let frame = Frame::message(vec![b'f'; chunk], opcode, number + 1 == fragments);
                if sink.feed(Message::Frame(frame)).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
            sent.fetch_add(1, Ordering::Relaxed);
            if !repeat {
                // Wait for the gateway's answer to the one oversized message.
                std::future::pending::<()>().await;
            }
        }
    };
    let close = async {
        while let Some(Ok(message)) = stream.next().await {
            if let Message::Close(frame) = message {
                return frame.map_or_else(
                    || "close_none".to_owned(),
                    |f| format!("close_{}", u16::from(f.code)),
                );
            }
        }
        "closed".to_owned()
    };
    tokio::pin!(close);
    let label = tokio::select! {
        label = &mut close => label,
        () = send => {
            // A write fails once the gateway closed the connection: its close frame, if it sent
            // one, says why.
            tokio::time::timeout(CLOSE_FRAME_WITHIN, close)
                .await
                .unwrap_or_else(|_| "send_failed".to_owned())
        }
        () = tokio::time::sleep_until(deadline) => "held_open".to_owned(),
    };
    (label, sent.load(Ordering::Relaxed))
}

/// How long a session whose write failed waits for the gateway's close frame.
const CLOSE_FRAME_WITHIN: std::time::Duration = std::time::Duration::from_secs(1);

/// `fragments` sizes adding up to `size`.
fn chunks(size: usize, fragments: usize) -> impl Iterator<Item = usize> {
    let base = size / fragments;
    let extra = size % fragments;
    (0..fragments).map(move |index| base + usize::from(index < extra))
}
