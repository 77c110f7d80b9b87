//! Between the RPC messages and the JSON API's answers: payloads, statuses, deliveries, and
//! API errors as Connect/gRPC errors with the same words.

use bytes::Bytes;
use connectrpc::{ConnectError, ErrorCode};
use http::StatusCode;
use oort_common::rpc::__buffa::oneof::payload::Data;
use oort_common::rpc::{self, Delivery, SessionLocation, SessionResult};
use oort_common::{DeliveryStatus, FrameKind, Payload};

use crate::api::error::ApiError;
use crate::api::v1::{BatchAnswer, DeliveryAnswer};
use crate::error_code::ErrorCode as OortCode;

/// The response header that carries Oort's stable error code (docs/errors.md) beside the
/// Connect/gRPC code, which is too coarse to branch on (`invalid_argument` is any bad field).
pub(crate) const OORT_ERROR_CODE: http::HeaderName =
    http::HeaderName::from_static("oort-error-code");

/// An RPC error with Oort's stable code in the `oort-error-code` header.
pub(super) fn coded(rpc: ErrorCode, code: OortCode, message: impl Into<String>) -> ConnectError {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        OORT_ERROR_CODE,
        http::HeaderValue::from_static(code.as_str()),
    );
    ConnectError::new(rpc, message).with_headers(headers)
}

/// A message as the RPC API carries it.
pub(crate) fn rpc_payload(kind: FrameKind, data: &Bytes) -> rpc::Payload {
    let data = match kind {
        FrameKind::Text => Data::Text(String::from_utf8_lossy(data).into_owned()),
        FrameKind::Binary => Data::Binary(data.to_vec()),
    };
    rpc::Payload {
        data: Some(data),
        ..Default::default()
    }
}

/// The message of a request, when it carries one.
pub(super) fn payload(
    message: &buffa::MessageField<rpc::Payload, buffa::Inline<rpc::Payload>>,
) -> Option<Payload> {
    match message.as_option()?.data.as_ref()? {
        Data::Text(text) => Some(Payload::text(text.clone())),
        Data::Binary(bytes) => Some(Payload::binary(bytes.clone())),
    }
}

/// The message of a request that must carry one.
pub(super) fn required_payload(
    message: &buffa::MessageField<rpc::Payload, buffa::Inline<rpc::Payload>>,
) -> Result<Payload, ConnectError> {
    payload(message).ok_or_else(|| {
        coded(
            ErrorCode::InvalidArgument,
            OortCode::InvalidRequest,
            "payload: required (text or binary)",
        )
    })
}

pub(super) fn status(status: DeliveryStatus) -> rpc::DeliveryStatus {
    match status {
        DeliveryStatus::Ok => rpc::DeliveryStatus::DELIVERY_STATUS_OK,
        DeliveryStatus::NotFound => rpc::DeliveryStatus::DELIVERY_STATUS_NOT_FOUND,
        DeliveryStatus::QueueFull => rpc::DeliveryStatus::DELIVERY_STATUS_QUEUE_FULL,
        DeliveryStatus::Closed => rpc::DeliveryStatus::DELIVERY_STATUS_CLOSED,
        DeliveryStatus::OwnerUnreachable => rpc::DeliveryStatus::DELIVERY_STATUS_OWNER_UNREACHABLE,
        DeliveryStatus::OwnerTimeout => rpc::DeliveryStatus::DELIVERY_STATUS_OWNER_TIMEOUT,
        DeliveryStatus::Skipped => rpc::DeliveryStatus::DELIVERY_STATUS_SKIPPED,
        DeliveryStatus::Buffered => rpc::DeliveryStatus::DELIVERY_STATUS_BUFFERED,
        DeliveryStatus::ChannelLimit => rpc::DeliveryStatus::DELIVERY_STATUS_CHANNEL_LIMIT,
        DeliveryStatus::Unsupported => rpc::DeliveryStatus::DELIVERY_STATUS_UNSUPPORTED,
    }
}

pub(super) fn delivery(answer: DeliveryAnswer) -> Delivery {
    Delivery {
        results: answer
            .results
            .into_iter()
            .map(|result| SessionResult {
                session: result
                    .session
                    .map(|key| key.as_str().to_owned())
                    .unwrap_or_default(),
                status: status(result.status).into(),
                user: result.user.unwrap_or_default(),
                ..Default::default()
            })
            .collect(),
        ok: count(answer.ok),
        buffered: count(answer.buffered),
        failed: count(answer.failed),
        ..Default::default()
    }
}

pub(super) fn batch(answer: BatchAnswer) -> rpc::SendBatchResponse {
    rpc::SendBatchResponse {
        ok: count(answer.ok),
        buffered: count(answer.buffered),
        failed: count(answer.failed),
        messages: answer.messages.into_iter().map(delivery).collect(),
        ..Default::default()
    }
}

pub(super) fn location(session: &oort_common::SessionKey, node: String) -> SessionLocation {
    SessionLocation {
        session: session.as_str().to_owned(),
        node,
        ..Default::default()
    }
}

pub(super) fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The RPC error for an API error: the same message and stable code, the RPC code for its
/// HTTP status.
pub(super) fn error(err: ApiError) -> ConnectError {
    let (status, code, message) = err.into_parts();
    coded(code_of(status), code, message)
}

pub(super) fn code_of(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::BAD_REQUEST => ErrorCode::InvalidArgument,
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthenticated,
        StatusCode::FORBIDDEN => ErrorCode::PermissionDenied,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::TOO_MANY_REQUESTS => {
            ErrorCode::ResourceExhausted
        }
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY => ErrorCode::Unavailable,
        StatusCode::GATEWAY_TIMEOUT => ErrorCode::DeadlineExceeded,
        _ => ErrorCode::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_its_own_enum_value() {
        let values: std::collections::HashSet<i32> = DeliveryStatus::ALL
            .iter()
            .map(|s| status(*s) as i32)
            .collect();
        assert_eq!(values.len(), DeliveryStatus::ALL.len());
        assert!(!values.contains(&0), "0 is UNSPECIFIED");
    }

    #[test]
    fn http_statuses_map_to_the_codes_clients_expect() {
        assert_eq!(code_of(StatusCode::BAD_REQUEST), ErrorCode::InvalidArgument);
        assert_eq!(
            code_of(StatusCode::UNAUTHORIZED),
            ErrorCode::Unauthenticated
        );
        assert_eq!(
            code_of(StatusCode::PAYLOAD_TOO_LARGE),
            ErrorCode::ResourceExhausted
        );
        assert_eq!(
            code_of(StatusCode::SERVICE_UNAVAILABLE),
            ErrorCode::Unavailable
        );
        assert_eq!(
            code_of(StatusCode::GATEWAY_TIMEOUT),
            ErrorCode::DeadlineExceeded
        );
    }
}
