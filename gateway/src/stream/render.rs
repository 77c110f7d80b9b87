//! How session messages look on a Durable Stream: each message one JSON value, the stream
//! `application/json`, so the protocol keeps message boundaries.
//!
//! A message is `{"seq":N,"data":"text","kind":"text"}` or `{"seq":N,"kind":"binary","data":
//! "<base64>"}`: the `oort.v1` text frame with its kind added, so a client reads the same
//! numbers whatever its transport.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::{BufMut, Bytes, BytesMut};
use oort_common::FrameKind;
use oort_common::cluster::KeptMessage;
use serde::Serialize;

/// Appends message `message` as one JSON value.
fn envelope(message: &KeptMessage, out: &mut BytesMut) {
    match message.kind {
        // An `oort.v1` text frame is `{"seq":N,"data":"..."}`, written by serde_json: close it
        // with the kind instead of parsing and writing it again.
        FrameKind::Text if message.frame.first() == Some(&b'{') && message.frame.len() > 2 => {
            out.put_slice(&message.frame[..message.frame.len() - 1]);
            out.put_slice(br#","kind":"text"}"#);
        }
        FrameKind::Text => write_json(
            out,
            &Envelope {
                seq: message.seq,
                kind: "text",
                data: &String::from_utf8_lossy(&message.frame),
            },
        ),
        FrameKind::Binary => {
            let payload = message.frame.get(8..).unwrap_or_default();
            write_json(
                out,
                &Envelope {
                    seq: message.seq,
                    kind: "binary",
                    data: &STANDARD.encode(payload),
                },
            );
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    seq: u64,
    kind: &'static str,
    data: &'a str,
}

fn write_json(out: &mut BytesMut, value: &impl Serialize) {
    // Serializing plain structs cannot fail; nothing is written if it ever did.
    if let Ok(json) = serde_json::to_vec(value) {
        out.put_slice(&json);
    }
}

/// The messages as a JSON array: a response body, or an SSE data event's text.
pub(crate) fn json_array(messages: &[KeptMessage]) -> Bytes {
    let size: usize = messages.iter().map(|m| m.frame.len() * 4 / 3 + 32).sum();
    let mut out = BytesMut::with_capacity(size + 2);
    out.put_u8(b'[');
    for (index, message) in messages.iter().enumerate() {
        if index > 0 {
            out.put_u8(b',');
        }
        envelope(message, &mut out);
    }
    out.put_u8(b']');
    out.freeze()
}

/// The control event that follows every data event (and opens a stream that is caught up).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Control<'a> {
    pub stream_next_offset: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_cursor: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub up_to_date: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stream_closed: bool,
}

/// An SSE `data` event carrying `messages`, then its `control` event.
pub(crate) fn sse_events(messages: &[KeptMessage], control: &Control<'_>) -> Bytes {
    let data = json_array(messages);
    let mut out = BytesMut::with_capacity(data.len() + 160);
    if !messages.is_empty() {
        // Compact JSON has no raw line breaks, so the array is one `data:` line.
        out.put_slice(b"event: data\ndata: ");
        out.put_slice(&data);
        out.put_slice(b"\n\n");
    }
    out.put_slice(b"event: control\ndata: ");
    write_json(&mut out, control);
    out.put_slice(b"\n\n");
    out.freeze()
}

/// An SSE comment: keeps idle connections (and the proxies between) from timing out.
pub(crate) const SSE_KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

#[cfg(test)]
mod tests {
    use super::*;
    use oort_common::Payload;

    fn kept(seq: u64, payload: &Payload) -> KeptMessage {
        let frame = crate::durable::protocol::message(seq, payload);
        let (kind, frame) = match frame {
            axum::extract::ws::Message::Text(text) => (FrameKind::Text, text.as_bytes().to_vec()),
            axum::extract::ws::Message::Binary(data) => (FrameKind::Binary, data.to_vec()),
            _ => unreachable!(),
        };
        KeptMessage { seq, kind, frame }
    }

    #[test]
    fn messages_are_json_values_with_their_kind() {
        let binary = Payload::new(FrameKind::Binary, Bytes::from_static(&[0, 1, 255])).unwrap();
        let body = json_array(&[kept(1, &Payload::text("say \"hi\"\n")), kept(2, &binary)]);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            value,
            serde_json::json!([
                {"seq": 1, "kind": "text", "data": "say \"hi\"\n"},
                {"seq": 2, "kind": "binary", "data": "AAH/"},
            ])
        );
        assert_eq!(&json_array(&[])[..], b"[]");
    }

    #[test]
    fn sse_pairs_every_data_event_with_a_control_event() {
        let control = Control {
            stream_next_offset: "a_b",
            stream_cursor: Some("7"),
            up_to_date: true,
            stream_closed: false,
        };
        let events = sse_events(&[kept(1, &Payload::text("x"))], &control);
        let text = std::str::from_utf8(&events).unwrap();
        assert_eq!(
            text,
            "event: data\ndata: [{\"seq\":1,\"data\":\"x\",\"kind\":\"text\"}]\n\n\
             event: control\ndata: {\"streamNextOffset\":\"a_b\",\"streamCursor\":\"7\",\"upToDate\":true}\n\n"
        );
    }
}
