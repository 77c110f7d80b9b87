//! Configuration errors, each naming the key and the value that was wrong.

use super::template::TemplateError;

/// Why a configuration was rejected. The binary exits with code 64 (EX_USAGE) on any of these.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The `{{ ... }}` templating failed.
    #[error("config template: {0}")]
    Template(#[from] TemplateError),
    /// The rendered text is not YAML, or not a mapping.
    #[error("config is not valid YAML: {0}")]
    Yaml(String),
    /// A key has a value Oort cannot use.
    #[error("invalid value {value} for key `{key}`: {reason}")]
    Invalid {
        /// Dotted key path, e.g. `callback.timeout`.
        key: String,
        /// The offending value, as written (JSON-quoted).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl ConfigError {
    /// A rejected value for `key`.
    pub fn invalid(key: &str, value: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.to_owned(),
            value: quote(&value.to_string()),
            reason: reason.into(),
        }
    }
}

fn quote(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| value.to_owned())
}
