//! Users in the JSON API: `/v1/send` with `users` (every session of each user, on any node)
//! and `GET /v1/users/{id}` (docs/channels.md).

use std::collections::HashSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use oort_common::{DeliveryStatus, SessionKey};
use oort_router::DeliveryRequest;
use serde::Serialize;

use super::{DeliveryAnswer, SessionResult};
use crate::api::error::ApiError;
use crate::state::AppState;

/// Sends `delivery` to its sessions and to every session of `users`. A session named twice
/// (directly, or through two users) gets the message once. A user without sessions is
/// reported `not_found`; with `strict`, such a user stops the whole send.
pub(super) async fn send(
    state: &AppState,
    mut delivery: DeliveryRequest,
    users: &[String],
    request_id: &str,
) -> DeliveryAnswer {
    let mut seen: HashSet<SessionKey> = HashSet::new();
    delivery.targets.retain(|key| seen.insert(key.clone()));
    let direct = delivery.targets.len();
    let mut reached_through: Vec<Option<String>> = vec![None; direct];
    let mut absent = Vec::new();
    for user in users {
        let sessions = state.router.user_sessions(user);
        if sessions.is_empty() {
            absent.push(user.clone());
        }
        for (key, _) in sessions {
            if seen.insert(key.clone()) {
                delivery.targets.push(key);
                reached_through.push(Some(user.clone()));
            }
        }
    }
    delivery.request_id = request_id.to_owned();
    let statuses = if delivery.strict && !absent.is_empty() {
        vec![DeliveryStatus::Skipped; delivery.targets.len()]
    } else if delivery.targets.is_empty() {
        Vec::new()
    } else {
        state.router.deliver(&delivery).await
    };
    state.metrics.count_deliveries(&statuses);
    let mut answer = DeliveryAnswer::new(delivery.targets, statuses);
    for (result, user) in answer.results.iter_mut().zip(reached_through) {
        result.user = user;
    }
    for user in absent {
        answer.failed += 1;
        answer.results.push(SessionResult {
            session: None,
            status: DeliveryStatus::NotFound,
            user: Some(user),
        });
    }
    answer
}

#[derive(Serialize)]
pub(crate) struct UserSession {
    pub(crate) session: SessionKey,
    pub(crate) node: String,
}

/// The answer of `GET /v1/users/{id}`.
#[derive(Serialize)]
pub(crate) struct UserAnswer {
    pub(crate) user: String,
    /// The user's sessions, oldest first.
    pub(crate) sessions: Vec<UserSession>,
}

/// `GET /v1/users/{id}`: the user's sessions and the nodes holding them, as this node's
/// replica of the directory says (an empty list for a user with none).
pub(crate) async fn user(
    State(state): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<UserAnswer>, ApiError> {
    let Path(user) = id.map_err(|r| ApiError::bad_request(format!("id: {}", r.body_text())))?;
    Ok(Json(user_answer(&state, user, "id")?))
}

/// A user's sessions and their nodes (`GET /v1/users/{id}`, RPC `GetUser`); `field` names the
/// user in errors.
pub(crate) fn user_answer(
    state: &AppState,
    user: String,
    field: &str,
) -> Result<UserAnswer, ApiError> {
    crate::connect::check_user(&user)
        .map_err(|err| ApiError::bad_request(format!("{field}: {err}")))?;
    let sessions = state
        .router
        .user_sessions(&user)
        .into_iter()
        .map(|(session, node)| UserSession {
            session,
            node: node.to_string(),
        })
        .collect();
    Ok(UserAnswer { user, sessions })
}
