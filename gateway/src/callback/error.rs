//! Why a callback failed.

use std::time::Duration;

use http::StatusCode;

/// A failed backend callback.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallbackError {
    /// No URL is configured for this callback.
    #[error("the {0} callback is not configured")]
    NotConfigured(&'static str),
    /// No complete answer within the callback timeout.
    #[error("the {callback} callback timed out after {timeout:?}")]
    Timeout {
        /// Which callback.
        callback: &'static str,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// `callback.max_concurrency` callbacks stayed in flight for the whole callback timeout, so
    /// this one was never sent.
    #[error(
        "the {callback} callback was not sent: {limit} callbacks (callback.max_concurrency) \
         stayed in flight for {timeout:?}"
    )]
    NoTurn {
        /// Which callback.
        callback: &'static str,
        /// The timeout that expired.
        timeout: Duration,
        /// `callback.max_concurrency`.
        limit: usize,
    },
    /// The backend could not be reached or broke the HTTP exchange.
    #[error("the {callback} callback failed: {message}")]
    Transport {
        /// Which callback.
        callback: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The backend answered with a status other than 200.
    #[error("the {callback} callback answered {status}")]
    Status {
        /// Which callback.
        callback: &'static str,
        /// The status.
        status: StatusCode,
    },
    /// The answer body exceeded `limits.max_callback_body`.
    #[error("the {callback} callback's answer exceeds {limit} bytes")]
    BodyTooLarge {
        /// Which callback.
        callback: &'static str,
        /// The limit.
        limit: usize,
    },
}

/// Describes a reqwest error without the URL (which may carry a client's query string) and
/// with its underlying cause, which reqwest's own message leaves out.
pub(crate) fn describe(error: &reqwest::Error) -> String {
    let mut message = if error.is_connect() {
        "cannot connect".to_owned()
    } else if error.is_redirect() {
        "too many redirects".to_owned()
    } else if error.is_body() || error.is_decode() {
        "broken response body".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut untrusted = false;
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        untrusted |= is_untrusted_certificate(cause);
        source = cause.source();
    }
    if untrusted {
        message.push_str(
            " (the backend's certificate is not trusted: add the CA that signed it to \
             callback.ca_file)",
        );
    }
    message
}

/// Whether `cause` is rustls refusing the peer's certificate. hyper-rustls hands rustls errors
/// over inside `io::Error`s (nested two deep today), whose `source()` skips the error they
/// wrap, so look inside each.
fn is_untrusted_certificate(cause: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(cause);
    while let Some(error) = current {
        if let Some(rustls::Error::InvalidCertificate(_)) = error.downcast_ref::<rustls::Error>() {
            return true;
        }
        current = error
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .map(|inner| inner as &(dyn std::error::Error + 'static));
    }
    false
}
