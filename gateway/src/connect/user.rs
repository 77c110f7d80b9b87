//! The user a connect callback names for a new session: `X-Oort-User`. Several sessions may
//! share a user, on any nodes; `/v1/send` reaches them all by user, and
//! `limits.max_sessions_per_user` bounds them cluster-wide.

use http::HeaderValue;
use oort_router::RouterError;

/// The header the connect callback names the user in.
pub(crate) const USER_HEADER: &str = "x-oort-user";

/// The longest user id, in bytes.
pub(crate) const MAX_USER_BYTES: usize = 256;

/// Checks a user id: 1 to 256 bytes of UTF-8 text without control characters.
pub(crate) fn check_user(user: &str) -> Result<(), String> {
    if user.is_empty() {
        return Err("a user id cannot be empty".to_owned());
    }
    if user.len() > MAX_USER_BYTES {
        return Err(format!(
            "a user id has at most {MAX_USER_BYTES} bytes (this one has {})",
            user.len()
        ));
    }
    if user.chars().any(char::is_control) {
        return Err("a user id cannot hold control characters".to_owned());
    }
    Ok(())
}

/// The user the callback's answer names, if any; the error says what is wrong with it.
pub(crate) fn named(value: Option<&HeaderValue>) -> Result<Option<String>, String> {
    let Some(value) = value else {
        return Ok(None);
    };
    let user = std::str::from_utf8(value.as_bytes())
        .map_err(|_| "X-Oort-User is not UTF-8".to_owned())?
        .trim();
    check_user(user).map_err(|err| format!("X-Oort-User: {err}"))?;
    Ok(Some(user.to_owned()))
}

/// The status a refused registration gets: 429 when the user is at its limit, else 503.
pub(crate) fn refusal_status(err: &RouterError) -> http::StatusCode {
    match err {
        RouterError::UserLimit(_) => http::StatusCode::TOO_MANY_REQUESTS,
        _ => http::StatusCode::SERVICE_UNAVAILABLE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_text_without_controls() {
        assert_eq!(check_user("42"), Ok(()));
        assert_eq!(check_user("élodie@example.com"), Ok(()));
        assert!(check_user("").is_err());
        assert!(check_user("a\nb").is_err());
        assert!(check_user(&"x".repeat(257)).is_err());
        assert_eq!(named(None), Ok(None));
        let value = HeaderValue::from_static(" 7 ");
        assert_eq!(named(Some(&value)), Ok(Some("7".to_owned())));
    }
}
