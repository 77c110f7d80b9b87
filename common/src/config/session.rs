//! `session.*`: how `oort.v1` sessions outlive their connections (replay buffer, linger,
//! resume tokens).

use serde::{Deserialize, Serialize};

use super::{ConfigError, GoDuration, ReadFile, Secret, lenient};

/// The shortest resume secret accepted: 16 bytes, as for `cluster.secret`.
const MIN_SECRET_LEN: usize = 16;

/// `session.*`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionConfig {
    /// Unacknowledged messages kept per session for replay.
    #[serde(deserialize_with = "lenient::number")]
    pub buffer_messages: usize,
    /// Unacknowledged bytes kept per session (the newest message is kept whatever its size).
    #[serde(deserialize_with = "lenient::number")]
    pub buffer_bytes: usize,
    /// Unacknowledged messages older than this are dropped.
    pub buffer_ttl: GoDuration,
    /// How long a session waits for its client to resume after the connection drops.
    pub linger: GoDuration,
    /// How long a resume token is valid; connected clients get a fresh one at half of it.
    pub resume_token_ttl: GoDuration,
    /// The key of resume tokens' HMAC, the same on every node. Unset: derived from
    /// `cluster.secret`, else random per process (tokens then work only on the node that made
    /// them, and only until it restarts).
    pub resume_secret: Secret,
    /// A file holding the resume secret (instead of `resume_secret`).
    #[serde(deserialize_with = "lenient::string")]
    pub resume_secret_file: String,
    /// Earlier resume secrets, still accepted, so the secret can be rotated without resets.
    pub previous_resume_secrets: Vec<Secret>,
    /// Where sessions are served over HTTP as Durable Streams (Comet connect at this path,
    /// each session's stream below it). Empty: no HTTP transports.
    #[serde(deserialize_with = "lenient::string")]
    pub stream_path: String,
    /// How long a long-poll read waits for a message before answering 204.
    pub long_poll_timeout: GoDuration,
    /// How long one SSE response lasts before the server ends it (the client reads on from
    /// where it was, so proxies and CDNs see bounded responses).
    pub sse_duration: GoDuration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            buffer_messages: 1000,
            buffer_bytes: 256 * 1024,
            buffer_ttl: GoDuration::from_secs(60),
            linger: GoDuration::from_secs(60),
            resume_token_ttl: GoDuration::from_secs(24 * 3600),
            resume_secret: Secret::default(),
            resume_secret_file: String::new(),
            previous_resume_secrets: Vec::new(),
            stream_path: "/stream".into(),
            long_poll_timeout: GoDuration::from_secs(25),
            sse_duration: GoDuration::from_secs(60),
        }
    }
}

impl SessionConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.buffer_messages == 0 {
            return Err(ConfigError::invalid(
                "session.buffer_messages",
                "0",
                "keep at least one message",
            ));
        }
        if self.buffer_bytes == 0 {
            return Err(ConfigError::invalid(
                "session.buffer_bytes",
                "0",
                "keep at least one byte",
            ));
        }
        if self.resume_token_ttl.0.as_secs() < 2 {
            return Err(ConfigError::invalid(
                "session.resume_token_ttl",
                self.resume_token_ttl.to_string(),
                "at least 2s: tokens are whole seconds, and connected clients get fresh ones at \
                 half their life",
            ));
        }
        let long_poll = self.long_poll_timeout.0;
        if long_poll < std::time::Duration::from_millis(100) || long_poll.as_secs() > 120 {
            return Err(ConfigError::invalid(
                "session.long_poll_timeout",
                self.long_poll_timeout.to_string(),
                "between 100ms and 120s: proxies cut longer requests, and shorter ones poll",
            ));
        }
        let sse = self.sse_duration.0;
        if sse < std::time::Duration::from_secs(1) || sse.as_secs() > 3600 {
            return Err(ConfigError::invalid(
                "session.sse_duration",
                self.sse_duration.to_string(),
                "between 1s and 1h",
            ));
        }
        if !self.stream_path.is_empty()
            && (!self.stream_path.starts_with('/') || self.stream_path.ends_with('/'))
        {
            return Err(ConfigError::invalid(
                "session.stream_path",
                &self.stream_path,
                "a path such as /stream: starting with / and not ending with one",
            ));
        }
        if !self.resume_secret.is_empty() && !self.resume_secret_file.is_empty() {
            return Err(ConfigError::invalid(
                "session.resume_secret_file",
                &self.resume_secret_file,
                "set session.resume_secret or session.resume_secret_file, not both",
            ));
        }
        check_secret("session.resume_secret", &self.resume_secret)?;
        for secret in &self.previous_resume_secrets {
            check_secret("session.previous_resume_secrets", secret)?;
        }
        Ok(())
    }

    /// The resume secret, reading `resume_secret_file` when it is set; `None` when unset.
    pub fn resume_secret_resolved(
        &self,
        read: ReadFile<'_>,
    ) -> Result<Option<Secret>, ConfigError> {
        if self.resume_secret_file.is_empty() {
            return Ok((!self.resume_secret.is_empty()).then(|| self.resume_secret.clone()));
        }
        let key = "session.resume_secret_file";
        let secret = super::nats_access::read_secret_line(key, &self.resume_secret_file, read)?;
        if secret.expose().len() < MIN_SECRET_LEN {
            return Err(ConfigError::invalid(
                key,
                &self.resume_secret_file,
                format!("the secret must be at least {MIN_SECRET_LEN} bytes"),
            ));
        }
        Ok(Some(secret))
    }
}

fn check_secret(key: &str, secret: &Secret) -> Result<(), ConfigError> {
    if !secret.is_empty() && secret.expose().len() < MIN_SECRET_LEN {
        return Err(ConfigError::invalid(
            key,
            secret.shown(),
            format!("the secret must be at least {MIN_SECRET_LEN} bytes"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert!(SessionConfig::default().validate().is_ok());
        let short = SessionConfig {
            resume_secret: Secret::new("short"),
            ..SessionConfig::default()
        };
        let err = short.validate().unwrap_err().to_string();
        assert!(
            err.contains("session.resume_secret") && !err.contains("short"),
            "{err}"
        );
        let both = SessionConfig {
            resume_secret: Secret::new("a-long-enough-resume-secret"),
            resume_secret_file: "/run/secret".into(),
            ..SessionConfig::default()
        };
        assert!(
            both.validate()
                .unwrap_err()
                .to_string()
                .contains("not both")
        );
        let nothing_kept = SessionConfig {
            buffer_messages: 0,
            ..SessionConfig::default()
        };
        assert!(nothing_kept.validate().is_err());
        let instant_expiry = SessionConfig {
            resume_token_ttl: GoDuration::from_secs(1),
            ..SessionConfig::default()
        };
        assert!(instant_expiry.validate().is_err());
    }

    #[test]
    fn the_secret_file_is_read_and_checked() {
        let config = SessionConfig {
            resume_secret_file: "/run/resume".into(),
            ..SessionConfig::default()
        };
        let read = |_: &std::path::Path| Ok(b"a-resume-secret-from-a-file\n".to_vec());
        let secret = config.resume_secret_resolved(&read).unwrap().unwrap();
        assert_eq!(secret.expose(), "a-resume-secret-from-a-file");
        let read_short = |_: &std::path::Path| Ok(b"tiny".to_vec());
        assert!(config.resume_secret_resolved(&read_short).is_err());
    }
}
