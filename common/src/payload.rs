//! One message on its way to clients: its bytes and whether it travels as a text or binary frame.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The WebSocket frame type a payload is sent as.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameKind {
    /// A text frame; the payload is valid UTF-8.
    Text,
    /// A binary frame.
    Binary,
}

const OCTET_STREAM: &str = "application/octet-stream";

impl FrameKind {
    /// kuiperbelt's rule: the media type (the Content-Type up to the first `;`, trimmed) equal to
    /// `application/octet-stream`, ignoring case, means binary; anything else, or none, means text.
    pub fn from_content_type(content_type: Option<&[u8]>) -> Self {
        let Some(value) = content_type else {
            return Self::Text;
        };
        let media_type = value.split(|b| *b == b';').next().unwrap_or_default();
        if media_type
            .trim_ascii()
            .eq_ignore_ascii_case(OCTET_STREAM.as_bytes())
        {
            Self::Binary
        } else {
            Self::Text
        }
    }

    /// The Content-Type Oort uses when it posts a client's frame to the receive callback.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Text => "text/plain",
            Self::Binary => OCTET_STREAM,
        }
    }
}

/// A text payload that is not valid UTF-8 cannot be sent as a WebSocket text frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a text frame must be valid UTF-8 (invalid byte at offset {valid_up_to})")]
pub struct PayloadError {
    /// How many leading bytes were valid.
    pub valid_up_to: usize,
}

/// A message body shared, without copying, by every session it is delivered to.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Payload {
    kind: FrameKind,
    data: Bytes,
}

impl Payload {
    /// Checks that text payloads are UTF-8, so that no client ever receives an invalid text frame.
    pub fn new(kind: FrameKind, data: Bytes) -> Result<Self, PayloadError> {
        if kind == FrameKind::Text
            && let Err(err) = std::str::from_utf8(&data)
        {
            return Err(PayloadError {
                valid_up_to: err.valid_up_to(),
            });
        }
        Ok(Self { kind, data })
    }

    /// A text payload from a string (always valid).
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            kind: FrameKind::Text,
            data: Bytes::from(text.into()),
        }
    }

    /// A binary payload.
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Self {
            kind: FrameKind::Binary,
            data: data.into(),
        }
    }

    /// The frame type.
    pub fn kind(&self) -> FrameKind {
        self.kind
    }

    /// The bytes.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The size in bytes, used for queue accounting.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True for an empty payload (which kuiperbelt still sends as an empty frame).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octet_stream_in_any_case_and_with_parameters_is_binary() {
        let binary = FrameKind::from_content_type(Some(b"APPLICATION/octet-stream ;param=foobar"));
        assert_eq!(binary, FrameKind::Binary);
        assert_eq!(
            FrameKind::from_content_type(Some(b" application/octet-stream")),
            FrameKind::Binary
        );
    }

    #[test]
    fn anything_else_is_text() {
        assert_eq!(FrameKind::from_content_type(None), FrameKind::Text);
        assert_eq!(
            FrameKind::from_content_type(Some(b"application/json")),
            FrameKind::Text
        );
        assert_eq!(
            FrameKind::from_content_type(Some(b"application/octet-streamx")),
            FrameKind::Text
        );
        assert_eq!(FrameKind::from_content_type(Some(b"")), FrameKind::Text);
    }

    #[test]
    fn text_payloads_must_be_utf8() {
        let err = Payload::new(FrameKind::Text, Bytes::from_static(b"ok\xff")).unwrap_err();
        assert_eq!(err.valid_up_to, 2);
        assert!(Payload::new(FrameKind::Binary, Bytes::from_static(b"ok\xff")).is_ok());
        assert!(Payload::new(FrameKind::Text, Bytes::from_static("héllo".as_bytes())).is_ok());
    }
}
