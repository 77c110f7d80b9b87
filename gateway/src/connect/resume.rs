//! Resuming an `oort.v1` session (`?oort_resume=TOKEN&oort_seq=N`): no connect callback, since
//! the token proves the backend accepted this session before.
//!
//! Held here, the session is re-attached under its slot's lock. Held by another node, this
//! node registers the key (a raft write, as for any connect), asks the previous owner for the
//! messages the client has not seen, and replays them before anything sent since. Either way
//! a session that cannot be continued exactly is reset: the client is told, and must
//! reconnect through the connect callback.

use std::sync::Arc;

use http::StatusCode;
use tracing::{info, warn};

use crate::connection::{self, Registration};
use crate::durable::token::Claims;
use crate::durable::{Durable, Gap, protocol, tail_from_wire};
use crate::error_code::ErrorCode;
use crate::sessions::{CloseCause, CloseCommand, Committed, Session};
use crate::state::AppState;

/// What the client asked to resume.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ResumeRequest {
    pub token: String,
    /// The last sequence number the client received.
    pub seen: u64,
}

/// `None` unless the query asks for a resume; an error says what is wrong with the request.
pub(super) fn requested(query: Option<&str>) -> Option<Result<ResumeRequest, String>> {
    let mut token = None;
    let mut seen = None;
    for (name, value) in url::form_urlencoded::parse(query?.as_bytes()) {
        match name.as_ref() {
            "oort_resume" => token = Some(value.into_owned()),
            "oort_seq" => seen = Some(value.into_owned()),
            _ => {}
        }
    }
    let token = token?;
    let seen = match seen.as_deref().map(str::parse::<u64>) {
        Some(Ok(seen)) => seen,
        Some(Err(_)) => {
            return Some(Err(
                "oort_seq must be the last sequence number received (an unsigned integer)"
                    .to_owned(),
            ));
        }
        None => {
            return Some(Err(
                "a resume needs oort_seq as well as oort_resume".to_owned()
            ));
        }
    };
    Some(Ok(ResumeRequest { token, seen }))
}

/// How a resume turned out.
pub(super) enum Outcome {
    /// The session continues on this connection.
    Resumed(Registration),
    /// Continuity is lost: the client gets `reset` and close 4000.
    Reset(&'static str),
    /// Refused before anything changed.
    Refused(StatusCode, ErrorCode, String),
}

/// Resumes the session the token names, here or from the node that held it.
pub(super) async fn resume(
    state: &Arc<AppState>,
    request: ResumeRequest,
    peer: Option<std::net::SocketAddr>,
) -> Outcome {
    let claims = match state.tokens.verify(&request.token) {
        Ok(claims) => claims,
        Err(err) => {
            return Outcome::Refused(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                err.to_string(),
            );
        }
    };
    tracing::Span::current().record("session", claims.key.as_str());
    let session = Session::new(claims.key.clone(), state.registry.next_epoch(), peer);
    if let Some(durable) = state
        .registry
        .durable(claims.key.as_str())
        .filter(|durable| durable.id == claims.id)
    {
        session.set_durable(durable.clone());
        return match state.registry.resume_here(
            &session,
            &durable,
            request.seen,
            welcomer(state, &claims),
        ) {
            Ok(()) => {
                state.metrics.count_resume("here");
                Outcome::Resumed(Registration::resumed(session, state.clone()))
            }
            Err(gap) => {
                lose(state, &durable).await;
                Outcome::Reset(reason(&gap))
            }
        };
    }
    take_over(state, session, &claims, request.seen).await
}

/// The session is not here: take it over from the node that holds it, if one does.
async fn take_over(
    state: &Arc<AppState>,
    session: Arc<Session>,
    claims: &Claims,
    seen: u64,
) -> Outcome {
    let key = &claims.key;
    let previous = match state.router.owner(key.as_str()).await {
        Ok(Some(owner)) if owner != *state.router.node_id() => owner,
        Ok(_) => {
            state.metrics.count_resume("reset");
            return Outcome::Reset("the session is over");
        }
        Err(err) => {
            return Outcome::Refused(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                err.to_string(),
            );
        }
    };
    let durable = Durable::receiving(&session, claims.id);
    session.set_durable(durable.clone());
    state.registry.begin(session.clone());
    let index = match state.router.register_moved(key, session.epoch).await {
        Ok(index) => index,
        Err(err) => {
            state.registry.abandon(&session);
            state.router.unregister(key, session.epoch);
            warn!(error = %err, "registration for a resume failed");
            return Outcome::Refused(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                err.to_string(),
            );
        }
    };
    if let Committed::Superseded = state.registry.commit(&session, index) {
        durable.end(None);
        return Outcome::Refused(
            StatusCode::CONFLICT,
            ErrorCode::SessionTaken,
            "a newer connection took this session key".to_owned(),
        );
    }
    let tail = match state
        .router
        .take_over(&previous, key, claims.id, seen)
        .await
    {
        Ok(Some(tail)) => tail_from_wire(tail),
        Ok(None) => None,
        Err(err) => {
            info!(error = %err, %previous, "the previous owner did not hand the session over");
            None
        }
    };
    let (tail, channels) = tail.map_or((None, Vec::new()), |(tail, channels)| {
        (Some(tail), channels)
    });
    let resumed = match tail {
        Some(tail) => durable.receive_tail(
            &session,
            tail,
            seen,
            welcomer(state, claims),
            state.registry.buffer_limits(),
        ),
        None => Err(Gap::Dropped { through: u64::MAX }),
    };
    match resumed {
        Ok(()) => {
            state.metrics.count_resume("moved");
            crate::connect::join_channels(state, key, &channels).await;
            Outcome::Resumed(Registration::resumed(session, state.clone()))
        }
        Err(gap) => {
            state.registry.remove(key, session.epoch);
            lose(state, &durable).await;
            Outcome::Reset(reason(&gap))
        }
    }
}

/// Builds the welcome of a resumed connection, with a fresh token.
fn welcomer(
    state: &Arc<AppState>,
    claims: &Claims,
) -> impl FnOnce(u64) -> axum::extract::ws::Message + use<> {
    let key = claims.key.clone();
    let token = state.tokens.issue(&key, claims.id);
    let node = state.router.node_id().clone();
    move |seq| protocol::welcome(&key, &token, seq, node.as_str())
}

/// The session cannot be continued: it ends here, and the backend is told.
async fn lose(state: &Arc<AppState>, durable: &Arc<Durable>) {
    state.metrics.count_resume("reset");
    durable.end(Some(CloseCommand::taken_over()));
    connection::end_durable(state, durable, CloseCause::Reset).await;
}

fn reason(gap: &Gap) -> &'static str {
    match gap {
        Gap::Dropped { through: u64::MAX } => "the session is over",
        Gap::Dropped { .. } => "messages after your position were dropped",
        Gap::Ahead { .. } => "your position is beyond the session's last message",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resume_needs_a_token_and_a_position() {
        assert_eq!(requested(None), None);
        assert_eq!(requested(Some("a=1")), None);
        assert_eq!(
            requested(Some("oort_resume=t%2Bx&oort_seq=12")),
            Some(Ok(ResumeRequest {
                token: "t+x".into(),
                seen: 12
            }))
        );
        assert!(matches!(requested(Some("oort_resume=t")), Some(Err(_))));
        assert!(matches!(
            requested(Some("oort_resume=t&oort_seq=-1")),
            Some(Err(_))
        ));
    }
}
