//! `cluster.nats_auth`: how a node proves who it is to NATS, with the methods NATS users know:
//! a token, a user and password, an NKey seed, or a JWT `.creds` file. At most one is set.
//! Each secret can be written inline or named as a file (for Kubernetes Secret volumes).

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret, lenient, secret::REDACTED};

/// NATS authentication. Every field empty means none (an open NATS).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NatsAuthConfig {
    /// A token (NATS `authorization { token }`).
    pub token: Secret,
    /// A file holding the token.
    #[serde(deserialize_with = "lenient::string")]
    pub token_file: String,
    /// A user name, with `password` or `password_file`.
    #[serde(deserialize_with = "lenient::string")]
    pub user: String,
    /// The user's password.
    pub password: Secret,
    /// A file holding the password.
    #[serde(deserialize_with = "lenient::string")]
    pub password_file: String,
    /// An NKey user seed (`SU...`); the server knows the matching public key.
    pub nkey_seed: Secret,
    /// A file holding the NKey seed.
    #[serde(deserialize_with = "lenient::string")]
    pub nkey_seed_file: String,
    /// A `.creds` file (a user JWT and its NKey seed), for decentralised JWT authentication.
    #[serde(deserialize_with = "lenient::string")]
    pub credentials_file: String,
}

/// Prefix of every key in this section, for error messages.
const SECTION: &str = "cluster.nats_auth";

impl NatsAuthConfig {
    /// Each method that is set, as the key that sets it and the value that may be shown
    /// (a path or a user name; a secret is redacted), in a fixed order.
    pub(crate) fn methods_set(&self) -> Vec<(&'static str, String)> {
        let inline_or_file = |inline: &'static str, value: &Secret, file_key, file: &String| {
            if value.is_empty() {
                (file_key, file.clone())
            } else {
                (inline, REDACTED.to_owned())
            }
        };
        let mut methods = Vec::new();
        if !self.token.is_empty() || !self.token_file.is_empty() {
            methods.push(inline_or_file(
                "token",
                &self.token,
                "token_file",
                &self.token_file,
            ));
        }
        if !self.user.is_empty() || !self.password.is_empty() || !self.password_file.is_empty() {
            methods.push(("user", self.user.clone()));
        }
        if !self.nkey_seed.is_empty() || !self.nkey_seed_file.is_empty() {
            methods.push(inline_or_file(
                "nkey_seed",
                &self.nkey_seed,
                "nkey_seed_file",
                &self.nkey_seed_file,
            ));
        }
        if !self.credentials_file.is_empty() {
            methods.push(("credentials_file", self.credentials_file.clone()));
        }
        methods
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for (name, secret) in [
            ("token", &self.token),
            ("password", &self.password),
            ("nkey_seed", &self.nkey_seed),
        ] {
            check_not_placeholder(&format!("{SECTION}.{name}"), secret)?;
        }
        not_both("token", &self.token, "token_file", &self.token_file)?;
        not_both(
            "password",
            &self.password,
            "password_file",
            &self.password_file,
        )?;
        not_both(
            "nkey_seed",
            &self.nkey_seed,
            "nkey_seed_file",
            &self.nkey_seed_file,
        )?;
        self.check_one_method()?;
        self.check_user_and_password()?;
        if !self.nkey_seed.is_empty() {
            check_nkey_seed(&format!("{SECTION}.nkey_seed"), self.nkey_seed.expose())?;
        }
        Ok(())
    }

    fn check_one_method(&self) -> Result<(), ConfigError> {
        let methods = self.methods_set();
        if let [(first, _), (second, shown), ..] = methods.as_slice() {
            return Err(ConfigError::invalid(
                &format!("{SECTION}.{second}"),
                shown,
                format!("use one authentication method at a time; {SECTION}.{first} is also set"),
            ));
        }
        Ok(())
    }

    fn check_user_and_password(&self) -> Result<(), ConfigError> {
        let has_password = !self.password.is_empty() || !self.password_file.is_empty();
        if !self.user.is_empty() && !has_password {
            return Err(ConfigError::invalid(
                &format!("{SECTION}.user"),
                &self.user,
                format!("a user needs {SECTION}.password or {SECTION}.password_file"),
            ));
        }
        if self.user.is_empty() && has_password {
            let (key, shown) = if self.password.is_empty() {
                ("password_file", self.password_file.as_str())
            } else {
                ("password", REDACTED)
            };
            return Err(ConfigError::invalid(
                &format!("{SECTION}.{key}"),
                shown,
                format!("a password needs {SECTION}.user"),
            ));
        }
        Ok(())
    }
}

/// An NKey user seed is base32 text starting with `SU`; anything else (a public key `U...`, a
/// path put in the wrong key) is refused at start rather than failing every connect.
pub(crate) fn check_nkey_seed(key: &str, seed: &str) -> Result<(), ConfigError> {
    let base32 = |c: char| c.is_ascii_uppercase() || ('2'..='7').contains(&c);
    if seed.starts_with("SU") && seed.len() == 58 && seed.chars().all(base32) {
        return Ok(());
    }
    Err(ConfigError::invalid(
        key,
        REDACTED,
        "not an NKey user seed (58 characters starting with SU)",
    ))
}

/// `oort check-config --print` shows set secrets as `<redacted>`; a config copied from that
/// output would otherwise authenticate with the placeholder.
fn check_not_placeholder(key: &str, secret: &Secret) -> Result<(), ConfigError> {
    if secret.expose() == REDACTED {
        return Err(ConfigError::invalid(
            key,
            REDACTED,
            "this is the placeholder `oort check-config --print` shows, not the secret",
        ));
    }
    Ok(())
}

fn not_both(inline: &str, value: &Secret, file_key: &str, file: &str) -> Result<(), ConfigError> {
    if !value.is_empty() && !file.is_empty() {
        return Err(ConfigError::invalid(
            &format!("{SECTION}.{file_key}"),
            file,
            format!("set {SECTION}.{inline} or {SECTION}.{file_key}, not both"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "SUAIO3FHUX5PNV2LQIIP7TZ3N4L7TX3W53MQGEIVYFIGA635OZCKEYHFLM";

    fn key_of(result: Result<(), ConfigError>) -> String {
        match result {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid key, got {other:?}"),
        }
    }

    #[test]
    fn each_method_alone_is_valid() {
        let token = NatsAuthConfig {
            token: Secret::new("t"),
            ..NatsAuthConfig::default()
        };
        let user = NatsAuthConfig {
            user: "oort".into(),
            password_file: "/run/pw".into(),
            ..NatsAuthConfig::default()
        };
        let nkey = NatsAuthConfig {
            nkey_seed: Secret::new(SEED),
            ..NatsAuthConfig::default()
        };
        let creds = NatsAuthConfig {
            credentials_file: "/run/oort.creds".into(),
            ..NatsAuthConfig::default()
        };
        for config in [NatsAuthConfig::default(), token, user, nkey, creds] {
            assert_eq!(config.validate(), Ok(()), "{config:?}");
        }
    }

    #[test]
    fn two_methods_at_once_name_the_second() {
        let config = NatsAuthConfig {
            token: Secret::new("t"),
            credentials_file: "/run/oort.creds".into(),
            ..NatsAuthConfig::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains("`cluster.nats_auth.credentials_file`"),
            "{error}"
        );
        assert!(
            error.contains("cluster.nats_auth.token is also set"),
            "{error}"
        );
    }

    #[test]
    fn a_user_needs_a_password_and_a_password_a_user() {
        let user_only = NatsAuthConfig {
            user: "oort".into(),
            ..NatsAuthConfig::default()
        };
        assert_eq!(key_of(user_only.validate()), "cluster.nats_auth.user");
        let password_only = NatsAuthConfig {
            password: Secret::new("pw"),
            ..NatsAuthConfig::default()
        };
        assert_eq!(
            key_of(password_only.validate()),
            "cluster.nats_auth.password"
        );
    }

    #[test]
    fn a_value_and_its_file_are_not_both_set() {
        let config = NatsAuthConfig {
            token: Secret::new("t"),
            token_file: "/run/token".into(),
            ..NatsAuthConfig::default()
        };
        assert_eq!(key_of(config.validate()), "cluster.nats_auth.token_file");
    }

    #[test]
    fn errors_never_show_a_secret() {
        let bad_seed = NatsAuthConfig {
            nkey_seed: Secret::new("SUnot-a-seed-hunter2"),
            ..NatsAuthConfig::default()
        };
        let error = bad_seed.validate().unwrap_err().to_string();
        assert!(error.contains("cluster.nats_auth.nkey_seed"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        let placeholder = NatsAuthConfig {
            user: "oort".into(),
            password: Secret::new(REDACTED),
            ..NatsAuthConfig::default()
        };
        assert_eq!(key_of(placeholder.validate()), "cluster.nats_auth.password");
    }
}
