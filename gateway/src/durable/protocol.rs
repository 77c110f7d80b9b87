//! The `oort.v1` wire format: what the gateway writes to a client that negotiated it, and what
//! it reads back. docs/protocol.md is the reference; this module is its only implementation.
//!
//! Server to client: a text message is `{"seq":N,"data":"..."}`, a binary message is the
//! sequence number as 8 bytes big-endian followed by the payload, and control frames are text
//! objects with a `type` (`welcome`, `token`, `reset`). Client to server: text frames are JSON
//! objects with a `type` (`ack`, `message`); binary frames are messages.

use axum::extract::ws::{Message, Utf8Bytes};
use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use oort_common::{FrameKind, Payload, SessionKey};
use serde::{Deserialize, Serialize};

/// The subprotocol name a client offers in `Sec-WebSocket-Protocol`.
pub(crate) const SUBPROTOCOL: &str = "oort.v1";

/// Close code: continuity was lost; reconnect without a resume token.
pub(crate) const CLOSE_RESET: u16 = 4000;
/// Close code: another connection resumed this session.
pub(crate) const CLOSE_TAKEN_OVER: u16 = 4001;

/// The frame for backend message `seq`.
pub(crate) fn message(seq: u64, payload: &Payload) -> Message {
    match payload.kind() {
        FrameKind::Text => {
            #[derive(Serialize)]
            struct Text<'a> {
                seq: u64,
                data: &'a str,
            }
            // `Payload` guarantees text is UTF-8; an empty string is the harmless fallback.
            let data = std::str::from_utf8(payload.data()).unwrap_or_default();
            text(&Text { seq, data })
        }
        FrameKind::Binary => {
            let mut frame = BytesMut::with_capacity(8 + payload.len());
            frame.put_u64(seq);
            frame.put_slice(payload.data());
            Message::Binary(frame.freeze())
        }
    }
}

/// The frame of backend request `seq` (`/v1/request`): a text frame whatever the payload,
/// `{"seq":N,"request":"<id>","data":"..."}`, or `"data_base64"` for a binary payload. The
/// client answers with a `reply` frame naming the id.
pub(crate) fn request(seq: u64, id: &str, payload: &Payload) -> Message {
    #[derive(Serialize)]
    struct Request<'a> {
        seq: u64,
        request: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        data: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        data_base64: Option<String>,
    }
    let (data, data_base64) = match payload.kind() {
        FrameKind::Text => (std::str::from_utf8(payload.data()).ok(), None),
        FrameKind::Binary => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(payload.data())),
        ),
    };
    text(&Request {
        seq,
        request: id,
        data,
        data_base64,
    })
}

/// The first frame of every `oort.v1` connection; `node` is the node serving it.
pub(crate) fn welcome(session: &SessionKey, resume: &str, seq: u64, node: &str) -> Message {
    #[derive(Serialize)]
    struct Welcome<'a> {
        r#type: &'static str,
        session: &'a str,
        resume: &'a str,
        seq: u64,
        node: &'a str,
    }
    text(&Welcome {
        r#type: "welcome",
        session: session.as_str(),
        resume,
        seq,
        node,
    })
}

/// A fresh resume token for a connection that outlives its current one.
pub(crate) fn token(resume: &str) -> Message {
    #[derive(Serialize)]
    struct Token<'a> {
        r#type: &'static str,
        resume: &'a str,
    }
    text(&Token {
        r#type: "token",
        resume,
    })
}

/// Continuity is lost: the client must reconnect without a resume token and resync with its
/// backend. Always followed by close [`CLOSE_RESET`].
pub(crate) fn reset(reason: &str) -> Message {
    #[derive(Serialize)]
    struct Reset<'a> {
        r#type: &'static str,
        reason: &'a str,
    }
    text(&Reset {
        r#type: "reset",
        reason,
    })
}

fn text(value: &impl Serialize) -> Message {
    // Serializing these plain structs cannot fail; an empty frame is the harmless fallback.
    let json = serde_json::to_vec(value).unwrap_or_default();
    Message::Text(Utf8Bytes::try_from(Bytes::from(json)).unwrap_or_default())
}

/// What a client's frame asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ClientFrame {
    /// Every message up to and including `seq` arrived.
    Ack(u64),
    /// A message for the receive callback.
    Message(FrameKind, Bytes),
    /// The answer to the backend's request `request`.
    Reply {
        /// The request's correlation id.
        request: String,
        /// The answer.
        payload: Payload,
    },
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientText {
    Ack {
        seq: u64,
    },
    Message {
        data: String,
    },
    Reply {
        request: String,
        data: Option<String>,
        data_base64: Option<String>,
    },
}

/// The longest correlation id a reply may name (ids this gateway makes are far shorter).
const MAX_REQUEST_ID: usize = 64;

/// Reads a client's frame; the error says what is wrong with it (the close reason).
pub(crate) fn parse(kind: FrameKind, data: Bytes) -> Result<ClientFrame, String> {
    if kind == FrameKind::Binary {
        return Ok(ClientFrame::Message(kind, data));
    }
    match serde_json::from_slice::<ClientText>(&data) {
        Ok(ClientText::Ack { seq }) => Ok(ClientFrame::Ack(seq)),
        Ok(ClientText::Message { data }) => {
            Ok(ClientFrame::Message(FrameKind::Text, Bytes::from(data)))
        }
        Ok(ClientText::Reply {
            request,
            data,
            data_base64,
        }) => {
            if request.is_empty() || request.len() > MAX_REQUEST_ID {
                return Err("a reply names no request id this gateway made".to_owned());
            }
            let payload = match (data, data_base64) {
                (Some(text), None) => Payload::text(text),
                (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                    .decode(encoded.as_bytes())
                    .map(Payload::binary)
                    .map_err(|err| format!("reply data_base64: {err}"))?,
                (None, None) => Payload::text(""),
                (Some(_), Some(_)) => {
                    return Err("a reply has data or data_base64, not both".to_owned());
                }
            };
            Ok(ClientFrame::Reply { request, payload })
        }
        Err(err) => Err(format!("not an oort.v1 frame: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_messages_carry_their_sequence_number_and_escaped_data() {
        let frame = message(7, &Payload::text("say \"hi\"\n"));
        let Message::Text(text) = frame else {
            panic!("text payloads are text frames")
        };
        let value: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
        assert_eq!(value, serde_json::json!({"seq": 7, "data": "say \"hi\"\n"}));
    }

    #[test]
    fn binary_messages_start_with_the_sequence_number() {
        let payload = Payload::new(FrameKind::Binary, Bytes::from_static(&[1, 2, 3])).unwrap();
        let Message::Binary(data) = message(258, &payload) else {
            panic!("binary payloads are binary frames")
        };
        assert_eq!(&data[..], &[0, 0, 0, 0, 0, 0, 1, 2, 1, 2, 3]);
    }

    #[test]
    fn requests_are_text_frames_and_replies_name_them() {
        let Message::Text(frame) = request(3, "0.ab", &Payload::binary(vec![0u8, 255])) else {
            panic!("requests are text frames")
        };
        let value: serde_json::Value = serde_json::from_str(frame.as_str()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"seq": 3, "request": "0.ab", "data_base64": "AP8="})
        );
        let reply = Bytes::from_static(br#"{"type":"reply","request":"0.ab","data":"yes"}"#);
        assert_eq!(
            parse(FrameKind::Text, reply),
            Ok(ClientFrame::Reply {
                request: "0.ab".into(),
                payload: Payload::text("yes")
            })
        );
        for bad in [
            &br#"{"type":"reply","request":""}"#[..],
            br#"{"type":"reply","request":"x","data":"a","data_base64":"YQ=="}"#,
            br#"{"type":"reply","request":"x","data_base64":"%%"}"#,
        ] {
            assert!(parse(FrameKind::Text, Bytes::from_static(bad)).is_err());
        }
    }

    #[test]
    fn client_frames_parse_or_say_what_is_wrong() {
        let ack = Bytes::from_static(br#"{"type":"ack","seq":12}"#);
        assert_eq!(parse(FrameKind::Text, ack), Ok(ClientFrame::Ack(12)));
        let message = Bytes::from_static(br#"{"type":"message","data":"hello"}"#);
        assert_eq!(
            parse(FrameKind::Text, message),
            Ok(ClientFrame::Message(
                FrameKind::Text,
                Bytes::from_static(b"hello")
            ))
        );
        let binary = Bytes::from_static(b"\x00raw");
        assert_eq!(
            parse(FrameKind::Binary, binary.clone()),
            Ok(ClientFrame::Message(FrameKind::Binary, binary))
        );
        for bad in [
            &b"plain text"[..],
            br#"{"type":"ack"}"#,
            br#"{"type":"ack","seq":-1}"#,
            br#"{"type":"nope"}"#,
            br#"{"type":"ack","seq":1,"extra":true}"#,
        ] {
            assert!(parse(FrameKind::Text, Bytes::from_static(bad)).is_err());
        }
    }
}
