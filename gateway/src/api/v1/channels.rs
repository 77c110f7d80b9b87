//! Channels in the JSON API: `/v1/subscribe`, `/v1/unsubscribe`, `/v1/publish` and presence,
//! `GET /v1/channels/{name}` (docs/channels.md).

use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use oort_common::SessionKey;
use oort_common::channel::check_channel_name;
use serde::{Deserialize, Serialize};

use super::request::{parse, present, required_payload};
use super::{DeliveryAnswer, id_of};
use crate::api::access_log::RequestId;
use crate::api::error::ApiError;
use crate::error_code::{ErrorCode, error_body};
use crate::state::AppState;

/// Sessions listed by one presence answer when the request names no limit.
const DEFAULT_PAGE: usize = 100;

/// `/v1/subscribe` and `/v1/unsubscribe`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MembershipRequest {
    sessions: Vec<String>,
    channels: Vec<String>,
}

/// `/v1/publish`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PublishRequest {
    channels: Vec<String>,
    #[serde(default, deserialize_with = "present")]
    data: Option<String>,
    #[serde(default, deserialize_with = "present")]
    data_base64: Option<String>,
    #[serde(default, deserialize_with = "present")]
    binary: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    strict: Option<bool>,
}

#[derive(Serialize)]
pub(crate) struct PublishAnswer {
    result: &'static str,
    /// Sessions that took the message, each once.
    pub(crate) sessions: u64,
    /// Nodes where at least one session took it.
    pub(crate) nodes: usize,
    /// Nodes holding subscribers that did not answer in time.
    pub(crate) unreachable_nodes: Vec<String>,
    /// For each channel that is a Durable Stream: the offset after the message, or why it
    /// was not appended (and not delivered).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub(crate) streams: std::collections::BTreeMap<String, StreamAppend>,
}

/// A channel publish's append to the channel's stream.
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StreamAppend {
    /// `Stream-Next-Offset` after the message.
    Offset(String),
    /// Why the stream refused it (the channel's subscribers did not get it either).
    Error(String),
}

/// A strict publish to channels without subscribers (nothing was published): those channels.
pub(crate) struct NoSubscriber(pub(crate) Vec<String>);

/// The text of a strict publish's refusal.
pub(crate) const NO_SUBSCRIBER: &str =
    "strict: no session is subscribed to these channels; nothing was published";

/// Checks a list of channel names: not empty, within `channels.max_per_request`, each name
/// valid; the error names the field.
pub(crate) fn checked_channels(
    state: &AppState,
    channels: Vec<String>,
) -> Result<Vec<String>, ApiError> {
    if channels.is_empty() {
        return Err(ApiError::bad_request(
            "channels: must list at least one channel",
        ));
    }
    let limit = state.config.channels.max_per_request;
    if channels.len() > limit {
        return Err(ApiError::bad_request(format!(
            "channels: {} channels named; at most {limit} per request (channels.max_per_request)",
            channels.len()
        )));
    }
    let mut unique: Vec<String> = Vec::with_capacity(channels.len());
    for (index, channel) in channels.into_iter().enumerate() {
        check_channel_name(&channel)
            .map_err(|err| ApiError::bad_request(format!("channels[{index}]: {err}")))?;
        if !unique.contains(&channel) {
            unique.push(channel);
        }
    }
    Ok(unique)
}

async fn membership(
    state: &AppState,
    body: axum::body::Body,
    join: bool,
) -> Result<Json<DeliveryAnswer>, ApiError> {
    let request: MembershipRequest = parse(state, body).await?;
    Ok(Json(
        membership_of(state, request.sessions, request.channels, join).await?,
    ))
}

/// Adds `sessions` to `channels` (`join`) or removes them (`/v1/subscribe`, `/v1/unsubscribe`
/// and their RPCs).
pub(crate) async fn membership_of(
    state: &AppState,
    sessions: Vec<String>,
    channels: Vec<String>,
    join: bool,
) -> Result<DeliveryAnswer, ApiError> {
    if sessions.is_empty() {
        return Err(ApiError::bad_request(
            "sessions: must list at least one session key",
        ));
    }
    let limit = state.config.channels.max_sessions_per_request;
    if sessions.len() > limit {
        return Err(ApiError::bad_request(format!(
            "sessions: {} sessions named; at most {limit} per request (channels.max_sessions_per_request)",
            sessions.len()
        )));
    }
    let channels = checked_channels(state, channels)?;
    let keys: Vec<SessionKey> = sessions.into_iter().map(SessionKey::from).collect();
    let statuses = state.router.subscribe(&keys, &channels, join).await;
    Ok(DeliveryAnswer::new(keys, statuses))
}

/// `POST /v1/subscribe`: adds sessions, wherever they are held, to channels.
pub(crate) async fn subscribe(
    State(state): State<Arc<AppState>>,
    body: axum::body::Body,
) -> Result<Json<DeliveryAnswer>, ApiError> {
    membership(&state, body, true).await
}

/// `POST /v1/unsubscribe`.
pub(crate) async fn unsubscribe(
    State(state): State<Arc<AppState>>,
    body: axum::body::Body,
) -> Result<Json<DeliveryAnswer>, ApiError> {
    membership(&state, body, false).await
}

/// `POST /v1/publish`: one message to every session subscribed to any of the channels, on
/// every node; a session in several of them gets it once.
pub(crate) async fn publish(
    State(state): State<Arc<AppState>>,
    request_id: Option<Extension<RequestId>>,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let request: PublishRequest = parse(&state, body).await?;
    let channels = checked_channels(&state, request.channels)?;
    let payload = required_payload(request.data, request.data_base64, request.binary, "")?;
    let strict = request.strict.unwrap_or(false);
    match publish_to(&state, channels, &payload, strict, id_of(&request_id)).await {
        Ok(answer) => Ok(Json(answer).into_response()),
        Err(NoSubscriber(unknown)) => {
            let mut body = error_body(ErrorCode::NoSubscribers, NO_SUBSCRIBER);
            body.insert("channels".to_owned(), unknown.into());
            Ok((http::StatusCode::NOT_FOUND, Json(body)).into_response())
        }
    }
}

/// Publishes `payload` to `channels`, already checked by [`checked_channels`] (`/v1/publish`,
/// RPC `Publish`).
pub(crate) async fn publish_to(
    state: &Arc<AppState>,
    channels: Vec<String>,
    payload: &oort_common::Payload,
    strict: bool,
    request_id: &str,
) -> Result<PublishAnswer, NoSubscriber> {
    if strict {
        let mut unknown = Vec::new();
        for channel in &channels {
            if state.router.presence(channel, None, 0).await.count == 0 {
                unknown.push(channel.clone());
            }
        }
        if !unknown.is_empty() {
            return Err(NoSubscriber(unknown));
        }
    }
    // Channels that are Durable Streams go through their stream's owner (which appends, then
    // delivers); the rest are published at once.
    let (streamed, plain): (Vec<String>, Vec<String>) = channels
        .into_iter()
        .partition(|channel| crate::named_streams::channel_stream(state, channel).is_some());
    let mut answer = PublishAnswer {
        result: "ok",
        sessions: 0,
        nodes: 0,
        unreachable_nodes: Vec::new(),
        streams: std::collections::BTreeMap::new(),
    };
    let mut nodes = std::collections::BTreeSet::new();
    let mut unreachable = std::collections::BTreeSet::new();
    if !plain.is_empty() {
        let outcome = state.router.publish(&plain, payload, request_id).await;
        state.metrics.count_publish(outcome.sessions);
        answer.sessions += outcome.sessions;
        nodes.extend(outcome.nodes);
        unreachable.extend(outcome.unreachable);
    }
    for channel in streamed {
        let appended = crate::named_streams::publish(state, &channel, payload, request_id).await;
        match appended {
            Ok(published) => {
                answer.sessions += published.sessions;
                nodes.extend(published.nodes);
                unreachable.extend(published.unreachable);
                answer
                    .streams
                    .insert(channel, StreamAppend::Offset(published.offset));
            }
            Err(reason) => {
                answer.streams.insert(channel, StreamAppend::Error(reason));
            }
        }
    }
    answer.nodes = nodes.len();
    answer.unreachable_nodes = unreachable.iter().map(ToString::to_string).collect();
    Ok(answer)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PresenceQuery {
    limit: Option<usize>,
    after: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct Member {
    pub(crate) session: SessionKey,
    pub(crate) node: String,
}

#[derive(Serialize)]
pub(crate) struct PresenceAnswer {
    pub(crate) channel: String,
    /// Sessions subscribed, cluster-wide (on the nodes that answered).
    pub(crate) sessions: u64,
    /// Up to `limit` of them, in key order after `after`.
    pub(crate) members: Vec<Member>,
    /// Pass as `after` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next: Option<SessionKey>,
    pub(crate) unreachable_nodes: Vec<String>,
}

/// `GET /v1/channels/{name}`: how many sessions are subscribed, cluster-wide, and which.
pub(crate) async fn presence(
    State(state): State<Arc<AppState>>,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<PresenceQuery>, QueryRejection>,
) -> Result<Json<PresenceAnswer>, ApiError> {
    let Path(channel) =
        name.map_err(|r| ApiError::bad_request(format!("name: {}", r.body_text())))?;
    let Query(query) = query.map_err(|r| ApiError::bad_request(r.body_text()))?;
    Ok(Json(
        presence_page(&state, channel, query.limit, query.after.as_deref(), "name").await?,
    ))
}

/// A page of a channel's subscribers (`GET /v1/channels/{name}`, RPC `GetChannel`); `field`
/// names the channel in errors.
pub(crate) async fn presence_page(
    state: &AppState,
    channel: String,
    limit: Option<usize>,
    after: Option<&str>,
    field: &str,
) -> Result<PresenceAnswer, ApiError> {
    check_channel_name(&channel).map_err(|err| ApiError::bad_request(format!("{field}: {err}")))?;
    let max = oort_router::MAX_PRESENCE_PAGE;
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if limit > max {
        return Err(ApiError::bad_request(format!(
            "limit: at most {max} sessions per page (this asks for {limit})"
        )));
    }
    let presence = state.router.presence(&channel, after, limit).await;
    let next = (limit > 0 && presence.sessions.len() == limit)
        .then(|| presence.sessions.last().map(|(key, _)| key.clone()))
        .flatten();
    Ok(PresenceAnswer {
        channel,
        sessions: presence.count,
        members: presence
            .sessions
            .into_iter()
            .map(|(session, node)| Member {
                session,
                node: node.to_string(),
            })
            .collect(),
        next,
        unreachable_nodes: presence
            .unreachable
            .iter()
            .map(ToString::to_string)
            .collect(),
    })
}
