//! [`Secret`]: a configuration value (a password, a token, a key) that is never printed.
//!
//! `Debug` and `Serialize` show `"<redacted>"` when the value is set and `""` when it is not, so
//! neither a log line, an error nor `oort check-config --print` can leak it; the value itself is
//! reached only through [`Secret::expose`], at the one place that hands it to a client library.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::lenient;

/// What a set secret is shown as.
pub const REDACTED: &str = "<redacted>";

/// A secret string. Empty means "not set".
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// True when no value is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value itself, for the client library that needs it. Never log what this returns.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What may be shown instead of the value: `""` when unset, else [`REDACTED`].
    pub fn shown(&self) -> &'static str {
        if self.0.is_empty() { "" } else { REDACTED }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({:?})", self.shown())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.shown())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        lenient::string(deserializer).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_never_shown() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), r#"Secret("<redacted>")"#);
        assert_eq!(serde_json::to_string(&secret).unwrap(), r#""<redacted>""#);
        assert_eq!(secret.expose(), "hunter2");
        let unset = Secret::default();
        assert_eq!(serde_json::to_string(&unset).unwrap(), r#""""#);
        assert!(unset.is_empty());
    }

    #[test]
    fn a_secret_reads_like_any_string_key() {
        let secret: Secret = serde_json::from_str("12345").unwrap();
        assert_eq!(secret.expose(), "12345");
        assert!(serde_json::from_str::<Secret>("[1]").is_err());
    }
}
