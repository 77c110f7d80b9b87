//! Backend API authentication: with `api_token` set, every protected request must carry
//! `Authorization: Bearer <api_token>`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, StatusCode};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::state::AppState;

/// Refuses requests without the configured bearer token.
pub(crate) async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    match check_token(&state, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(reason) => {
            let mut response = ApiError::new(StatusCode::UNAUTHORIZED, reason).into_response();
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
            response
        }
    }
}

/// Whether `headers` carry the API token (always, without one); why not otherwise. The RPC
/// API checks here too, so both surfaces refuse with the same words.
pub(crate) fn check_token(state: &AppState, headers: &HeaderMap) -> Result<(), &'static str> {
    let expected = state.config.api_token.as_bytes();
    if expected.is_empty() {
        return Ok(());
    }
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|value| bearer_token(value.as_bytes()));
    // Constant-time comparison, so response timing does not reveal how much of a guess was
    // right. (A wrong length is refused at once; the length alone reveals little.)
    if presented.is_some_and(|token| bool::from(token.ct_eq(expected))) {
        return Ok(());
    }
    Err(if presented.is_none() {
        "missing bearer token (Authorization: Bearer <api_token>)"
    } else {
        "invalid bearer token"
    })
}

fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| token.trim_ascii())
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn parses_the_bearer_scheme_only() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bearer"), None);
    }
}
