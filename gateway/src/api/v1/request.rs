//! The JSON request bodies of `/v1/*` and their checks, exactly as docs/openapi.yaml states
//! them: unknown fields, `null` values, a missing or doubled payload, an empty session list and
//! a close code or reason that cannot go into a close frame are all refused with a 400 whose
//! text names the field.

use base64::Engine;
use oort_common::{DeliveryMode, Payload, SessionKey};
use oort_router::DeliveryRequest;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use crate::api::error::{ApiError, read_body};
use crate::error_code::ErrorCode;
use crate::state::AppState;

/// The longest close reason: a close frame's payload is at most 125 bytes, two of them the code.
const MAX_REASON_BYTES: usize = 123;

/// One message for a list of sessions (each entry of `/v1/send/batch`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Message {
    sessions: Vec<String>,
    #[serde(default, deserialize_with = "present")]
    data: Option<String>,
    #[serde(default, deserialize_with = "present")]
    data_base64: Option<String>,
    #[serde(default, deserialize_with = "present")]
    binary: Option<bool>,
}

/// `/v1/send`: one message for sessions and for every session of some users, and whether an
/// unknown target stops it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SendRequest {
    #[serde(default)]
    sessions: Vec<String>,
    #[serde(default)]
    pub(super) users: Vec<String>,
    #[serde(default, deserialize_with = "present")]
    data: Option<String>,
    #[serde(default, deserialize_with = "present")]
    data_base64: Option<String>,
    #[serde(default, deserialize_with = "present")]
    binary: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    strict: Option<bool>,
}

/// `/v1/send/batch`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BatchRequest {
    pub(super) messages: Vec<Message>,
    #[serde(default, deserialize_with = "present")]
    pub(super) strict: Option<bool>,
}

/// `/v1/close`: an optional last message, then a close frame.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CloseRequest {
    sessions: Vec<String>,
    #[serde(default, deserialize_with = "present")]
    data: Option<String>,
    #[serde(default, deserialize_with = "present")]
    data_base64: Option<String>,
    #[serde(default, deserialize_with = "present")]
    binary: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    code: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    reason: Option<String>,
}

/// `/v1/broadcast`: one message for every session.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BroadcastRequest {
    #[serde(default, deserialize_with = "present")]
    data: Option<String>,
    #[serde(default, deserialize_with = "present")]
    data_base64: Option<String>,
    #[serde(default, deserialize_with = "present")]
    binary: Option<bool>,
}

/// Reads an optional field that, when present, must not be `null`: serde would read `null` as
/// absent, and the contract has no nullable request fields (leave a field out instead).
pub(super) fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// Users one `/v1/send` may name.
pub(super) const MAX_USERS_PER_SEND: usize = 1000;

impl SendRequest {
    /// The delivery to the named sessions (users are resolved by the caller and added), with
    /// `strict` defaulting to `default_strict` (`strict_broadcast`); the users, checked.
    pub(super) fn into_delivery(
        self,
        default_strict: bool,
    ) -> Result<(DeliveryRequest, Vec<String>), ApiError> {
        let payload = required_payload(self.data, self.data_base64, self.binary, "")?;
        send_delivery(
            self.sessions,
            self.users,
            payload,
            self.strict.unwrap_or(default_strict),
        )
    }
}

/// The delivery of a send to `sessions` (users are resolved by the caller and added), and the
/// users, checked: what `/v1/send` and the RPC `Send` share.
pub(crate) fn send_delivery(
    sessions: Vec<String>,
    users: Vec<String>,
    payload: Payload,
    strict: bool,
) -> Result<(DeliveryRequest, Vec<String>), ApiError> {
    if users.is_empty() && sessions.is_empty() {
        return Err(ApiError::bad_request(
            "sessions or users: name at least one session key or user",
        ));
    }
    if users.is_empty() {
        let delivery = delivery(sessions, payload, DeliveryMode::Send, strict, "")?;
        return Ok((delivery, Vec::new()));
    }
    if users.len() > MAX_USERS_PER_SEND {
        return Err(ApiError::bad_request(format!(
            "users: {} users named; at most {MAX_USERS_PER_SEND} per request",
            users.len()
        )));
    }
    for (index, user) in users.iter().enumerate() {
        crate::connect::check_user(user)
            .map_err(|err| ApiError::bad_request(format!("users[{index}]: {err}")))?;
    }
    let delivery = DeliveryRequest {
        targets: sessions.into_iter().map(SessionKey::from).collect(),
        payload,
        mode: DeliveryMode::Send,
        strict,
        request_id: String::new(),
    };
    Ok((delivery, users))
}

impl Message {
    /// The delivery of the message at `index` of a batch.
    pub(super) fn into_delivery(
        self,
        strict: bool,
        index: usize,
    ) -> Result<DeliveryRequest, ApiError> {
        let at = format!("messages[{index}].");
        let payload = required_payload(self.data, self.data_base64, self.binary, &at)?;
        batch_delivery(self.sessions, payload, strict, index)
    }
}

/// The delivery of the message at `index` of a batch (`/v1/send/batch`, RPC `SendBatch`).
pub(crate) fn batch_delivery(
    sessions: Vec<String>,
    payload: Payload,
    strict: bool,
    index: usize,
) -> Result<DeliveryRequest, ApiError> {
    let at = format!("messages[{index}].");
    delivery(sessions, payload, DeliveryMode::Send, strict, &at)
}

impl CloseRequest {
    /// The close delivery: the last message if one is given, then a close frame with `code`
    /// (1000, or an application code 3000-4999) and `reason`.
    pub(super) fn into_delivery(self) -> Result<DeliveryRequest, ApiError> {
        let last_message = payload(self.data, self.data_base64, self.binary, "")?;
        close_delivery(self.sessions, last_message, self.code, self.reason)
    }
}

/// The close of `sessions` (`/v1/close`, RPC `Close`): the last message if one is given, then
/// a close frame with `code` (1000, or an application code 3000-4999) and `reason`.
pub(crate) fn close_delivery(
    sessions: Vec<String>,
    last_message: Option<Payload>,
    code: Option<i64>,
    reason: Option<String>,
) -> Result<DeliveryRequest, ApiError> {
    let code = match code.unwrap_or(1000) {
        code @ (1000 | 3000..=4999) => code as u16,
        other => {
            return Err(ApiError::bad_request(format!(
                "code: {other} is not allowed; use 1000 or an application code 3000-4999"
            )));
        }
    };
    let reason = reason.unwrap_or_default();
    if reason.len() > MAX_REASON_BYTES {
        return Err(ApiError::bad_request(format!(
            "reason: at most {MAX_REASON_BYTES} bytes fit in a close frame (this one has {})",
            reason.len()
        )));
    }
    let mode = DeliveryMode::Close {
        code,
        reason,
        send_payload: last_message.is_some(),
    };
    let payload = last_message.unwrap_or_else(|| Payload::text(""));
    delivery(sessions, payload, mode, false, "")
}

impl BroadcastRequest {
    /// The message to broadcast.
    pub(super) fn into_payload(self) -> Result<Payload, ApiError> {
        required_payload(self.data, self.data_base64, self.binary, "")
    }
}

/// A delivery to `sessions`, which must name at least one; `at` prefixes error texts.
fn delivery(
    sessions: Vec<String>,
    payload: Payload,
    mode: DeliveryMode,
    strict: bool,
    at: &str,
) -> Result<DeliveryRequest, ApiError> {
    if sessions.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{at}sessions: must list at least one session key"
        )));
    }
    Ok(DeliveryRequest {
        targets: sessions.into_iter().map(SessionKey::from).collect(),
        payload,
        mode,
        strict,
        request_id: String::new(),
    })
}

/// [`payload`], for requests that must carry one.
pub(super) fn required_payload(
    data: Option<String>,
    data_base64: Option<String>,
    binary: Option<bool>,
    at: &str,
) -> Result<Payload, ApiError> {
    payload(data, data_base64, binary, at)?
        .ok_or_else(|| ApiError::bad_request(format!("{at}data or {at}data_base64 is required")))
}

/// The payload of a request, or `None` when neither `data` nor `data_base64` is given. `data`
/// is a text frame unless `binary` is true; `data_base64` is always a binary frame (any text
/// fits in `data`), so `binary: false` beside it is refused rather than ignored. `at` prefixes
/// error texts with the fields' location.
fn payload(
    data: Option<String>,
    data_base64: Option<String>,
    binary: Option<bool>,
    at: &str,
) -> Result<Option<Payload>, ApiError> {
    match (data, data_base64, binary) {
        (Some(_), Some(_), _) => Err(ApiError::bad_request(format!(
            "{at}data and {at}data_base64: give one, not both"
        ))),
        (None, None, _) => Ok(None),
        (Some(text), None, Some(true)) => Ok(Some(Payload::binary(text.into_bytes()))),
        (Some(text), None, _) => Ok(Some(Payload::text(text))),
        (None, Some(_), Some(false)) => Err(ApiError::bad_request(format!(
            "{at}binary: data_base64 is always sent as a binary frame; send text as {at}data"
        ))),
        (None, Some(encoded), _) => base64::engine::general_purpose::STANDARD
            .decode(encoded.as_bytes())
            .map(|bytes| Some(Payload::binary(bytes)))
            .map_err(|err| ApiError::bad_request(format!("{at}data_base64: {err}"))),
    }
}

/// Reads and parses a JSON body; errors name the field, e.g. `messages[2].sessions: invalid type`.
pub(super) async fn parse<T: DeserializeOwned>(
    state: &AppState,
    body: axum::body::Body,
) -> Result<T, ApiError> {
    let bytes = read_body(body, state.config.limits.max_send_body).await?;
    // serde would also accept a struct written as a JSON array; only objects are documented.
    if bytes.trim_ascii_start().first() == Some(&b'[') {
        return Err(ApiError::invalid_json(
            "invalid type: an array, expected a JSON object",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
    let parsed = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let refusal = if path == "." {
            ApiError::bad_request(format!("invalid JSON: {inner}"))
        } else {
            ApiError::bad_request(format!("{path}: {inner}"))
        };
        // Broken JSON is `invalid_json`; well-formed JSON with a wrong field is
        // `invalid_request`, like any other bad argument.
        if inner.is_data() {
            refusal
        } else {
            refusal.with_code(ErrorCode::InvalidJson)
        }
    })?;
    // One JSON value and nothing after it (whitespace aside): `{...} {...}` is not a request.
    deserializer
        .end()
        .map_err(|err| ApiError::invalid_json(format!("invalid JSON: {err}")))?;
    Ok(parsed)
}
