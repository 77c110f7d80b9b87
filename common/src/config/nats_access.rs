//! [`NatsAccess`]: what a node presents to NATS, with every file the `cluster.nats_auth` and
//! `cluster.nats_tls` keys name already read. The binary reads the files once at start (it
//! passes the function that reads them: this crate does no I/O); the router only takes values.
//!
//! `oort check-config` does not read these files: a config is checked where it is written, and
//! the files often exist only where it runs (a Kubernetes Secret volume).

use std::path::Path;

use super::{ClusterConfig, ConfigError, Secret, nats_auth::check_nkey_seed};

/// Reads a whole file named by the configuration.
pub type ReadFile<'a> = &'a dyn Fn(&Path) -> std::io::Result<Vec<u8>>;

/// Credentials and TLS material for the NATS connection, and the cluster secret that
/// authenticates messages between nodes on it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NatsAccess {
    /// How the node authenticates.
    pub auth: NatsAuth,
    /// TLS requirements and material.
    pub tls: NatsTls,
    /// `cluster.secret`, or what the file `cluster.secret_file` holds; `None` when unset.
    pub cluster_secret: Option<Secret>,
}

/// One authentication method, with its secret in hand.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum NatsAuth {
    /// No credentials (an open NATS).
    #[default]
    None,
    /// A token.
    Token(Secret),
    /// A user and password.
    UserPassword {
        /// The user name.
        user: String,
        /// The password.
        password: Secret,
    },
    /// An NKey user seed.
    NKeySeed(Secret),
    /// The text of a `.creds` file: a user JWT and its NKey seed.
    Credentials(Secret),
}

/// TLS for the NATS connection.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NatsTls {
    /// Connect with TLS only (a `tls://` URL, `require`, a CA or a client certificate).
    pub required: bool,
    /// PEM text of the CA certificates to trust instead of the system's roots.
    pub ca_pem: Option<String>,
    /// A client certificate for mutual TLS.
    pub client: Option<ClientIdentity>,
}

/// A client certificate chain and its private key, as PEM text.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientIdentity {
    /// The certificate chain.
    pub cert_pem: String,
    /// The private key.
    pub key_pem: Secret,
}

impl ClusterConfig {
    /// Everything this node presents to NATS, reading each file the settings name with `read`.
    /// A file that cannot be read, is empty or is not text is an error naming its key.
    /// Without `cluster.nats` there is nothing to read.
    pub fn nats_access(&self, read: ReadFile<'_>) -> Result<NatsAccess, ConfigError> {
        if !self.enabled() {
            return Ok(NatsAccess::default());
        }
        Ok(NatsAccess {
            auth: self.nats_auth_resolved(read)?,
            tls: self.nats_tls_resolved(read)?,
            cluster_secret: self.cluster_secret_resolved(read)?,
        })
    }

    fn cluster_secret_resolved(&self, read: ReadFile<'_>) -> Result<Option<Secret>, ConfigError> {
        if self.secret_file.is_empty() {
            return Ok((!self.secret.is_empty()).then(|| self.secret.clone()));
        }
        let key = "cluster.secret_file";
        let secret = read_secret_line(key, &self.secret_file, read)?;
        super::cluster::check_cluster_secret(key, &self.secret_file, &secret)?;
        Ok(Some(secret))
    }

    fn nats_auth_resolved(&self, read: ReadFile<'_>) -> Result<NatsAuth, ConfigError> {
        let auth = &self.nats_auth;
        let secret = |key: &str, inline: &Secret, file: &str| -> Result<Secret, ConfigError> {
            if file.is_empty() {
                Ok(inline.clone())
            } else {
                read_secret_line(&format!("cluster.nats_auth.{key}"), file, read)
            }
        };
        if !auth.token.is_empty() || !auth.token_file.is_empty() {
            return secret("token_file", &auth.token, &auth.token_file).map(NatsAuth::Token);
        }
        if !auth.user.is_empty() {
            let password = secret("password_file", &auth.password, &auth.password_file)?;
            return Ok(NatsAuth::UserPassword {
                user: auth.user.clone(),
                password,
            });
        }
        if !auth.nkey_seed.is_empty() || !auth.nkey_seed_file.is_empty() {
            let seed = secret("nkey_seed_file", &auth.nkey_seed, &auth.nkey_seed_file)?;
            check_nkey_seed("cluster.nats_auth.nkey_seed_file", seed.expose())?;
            return Ok(NatsAuth::NKeySeed(seed));
        }
        if !auth.credentials_file.is_empty() {
            let text = read_text(
                "cluster.nats_auth.credentials_file",
                &auth.credentials_file,
                read,
            )?;
            return Ok(NatsAuth::Credentials(Secret::new(text)));
        }
        Ok(NatsAuth::None)
    }

    fn nats_tls_resolved(&self, read: ReadFile<'_>) -> Result<NatsTls, ConfigError> {
        let tls = &self.nats_tls;
        let ca_pem = match tls.ca_file.as_str() {
            "" => None,
            path => Some(read_text("cluster.nats_tls.ca_file", path, read)?),
        };
        let client = if tls.cert_file.is_empty() {
            None
        } else {
            Some(ClientIdentity {
                cert_pem: read_text("cluster.nats_tls.cert_file", &tls.cert_file, read)?,
                key_pem: Secret::new(read_text("cluster.nats_tls.key_file", &tls.key_file, read)?),
            })
        };
        let tls_urls = self.nats.iter().any(|url| url.starts_with("tls://"));
        Ok(NatsTls {
            required: tls.requires_tls() || tls_urls,
            ca_pem,
            client,
        })
    }
}

/// A whole text file; errors name `key` and the path, never the content.
fn read_text(key: &str, path: &str, read: ReadFile<'_>) -> Result<String, ConfigError> {
    let bytes = read(Path::new(path))
        .map_err(|err| ConfigError::invalid(key, path, format!("cannot read the file: {err}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| ConfigError::invalid(key, path, "the file is not UTF-8 text"))?;
    if text.trim().is_empty() {
        return Err(ConfigError::invalid(key, path, "the file is empty"));
    }
    Ok(text)
}

/// A secret kept in a file of its own. The line ending that editors and `echo` add is not part
/// of it (a Kubernetes Secret created from such a file keeps it).
pub(crate) fn read_secret_line(
    key: &str,
    path: &str,
    read: ReadFile<'_>,
) -> Result<Secret, ConfigError> {
    let text = read_text(key, path, read)?;
    Ok(Secret::new(text.trim_end_matches(['\r', '\n'])))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io;

    use super::*;
    use crate::config::{NatsAuthConfig, NatsTlsConfig};

    const SEED: &str = "SUAIO3FHUX5PNV2LQIIP7TZ3N4L7TX3W53MQGEIVYFIGA635OZCKEYHFLM";

    fn files(entries: &[(&str, &str)]) -> impl Fn(&Path) -> io::Result<Vec<u8>> {
        let map: HashMap<String, Vec<u8>> = entries
            .iter()
            .map(|(path, text)| ((*path).to_owned(), text.as_bytes().to_vec()))
            .collect();
        move |path: &Path| {
            map.get(path.to_str().unwrap_or_default())
                .cloned()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "No such file"))
        }
    }

    fn cluster(auth: NatsAuthConfig, tls: NatsTlsConfig) -> ClusterConfig {
        ClusterConfig {
            nats: vec!["nats://127.0.0.1:4222".into()],
            nats_auth: auth,
            nats_tls: tls,
            ..ClusterConfig::default()
        }
    }

    #[test]
    fn secrets_come_from_their_files_without_the_line_ending() {
        let config = cluster(
            NatsAuthConfig {
                user: "oort".into(),
                password_file: "/run/pw".into(),
                ..NatsAuthConfig::default()
            },
            NatsTlsConfig::default(),
        );
        let access = config
            .nats_access(&files(&[("/run/pw", "s3cr3t\n")]))
            .unwrap();
        assert_eq!(
            access.auth,
            NatsAuth::UserPassword {
                user: "oort".into(),
                password: Secret::new("s3cr3t")
            }
        );
        assert!(!access.tls.required);
    }

    #[test]
    fn tls_material_is_read_and_makes_tls_required() {
        let config = cluster(
            NatsAuthConfig {
                nkey_seed_file: "/run/seed".into(),
                ..NatsAuthConfig::default()
            },
            NatsTlsConfig {
                ca_file: "/tls/ca.crt".into(),
                cert_file: "/tls/tls.crt".into(),
                key_file: "/tls/tls.key".into(),
                ..NatsTlsConfig::default()
            },
        );
        let read = files(&[
            ("/run/seed", SEED),
            ("/tls/ca.crt", "CA PEM"),
            ("/tls/tls.crt", "CERT PEM"),
            ("/tls/tls.key", "KEY PEM"),
        ]);
        let access = config.nats_access(&read).unwrap();
        assert_eq!(access.auth, NatsAuth::NKeySeed(Secret::new(SEED)));
        assert!(access.tls.required);
        assert_eq!(access.tls.ca_pem.as_deref(), Some("CA PEM"));
        let client = access.tls.client.unwrap();
        assert_eq!(client.cert_pem, "CERT PEM");
        assert_eq!(client.key_pem.expose(), "KEY PEM");
    }

    #[test]
    fn a_tls_url_requires_tls() {
        let mut config = cluster(NatsAuthConfig::default(), NatsTlsConfig::default());
        config.nats = vec!["tls://nats.example:4222".into()];
        assert!(config.nats_access(&files(&[])).unwrap().tls.required);
    }

    #[test]
    fn an_unreadable_or_wrong_file_names_its_key_and_never_its_content() {
        let config = cluster(
            NatsAuthConfig {
                credentials_file: "/run/missing.creds".into(),
                ..NatsAuthConfig::default()
            },
            NatsTlsConfig::default(),
        );
        let error = config.nats_access(&files(&[])).unwrap_err().to_string();
        assert!(
            error.contains("`cluster.nats_auth.credentials_file`")
                && error.contains("/run/missing.creds")
                && error.contains("cannot read the file"),
            "{error}"
        );
        let config = cluster(
            NatsAuthConfig {
                nkey_seed_file: "/run/seed".into(),
                ..NatsAuthConfig::default()
            },
            NatsTlsConfig::default(),
        );
        let error = config
            .nats_access(&files(&[("/run/seed", "SUhunter2\n")]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("cluster.nats_auth.nkey_seed_file"),
            "{error}"
        );
        assert!(!error.contains("hunter2"), "{error}");
        let empty = config
            .nats_access(&files(&[("/run/seed", "\n")]))
            .unwrap_err()
            .to_string();
        assert!(empty.contains("the file is empty"), "{empty}");
    }

    #[test]
    fn without_nats_nothing_is_read() {
        let config = ClusterConfig {
            nats_auth: NatsAuthConfig {
                token_file: "/run/missing".into(),
                ..NatsAuthConfig::default()
            },
            ..ClusterConfig::default()
        };
        assert_eq!(config.nats_access(&files(&[])), Ok(NatsAccess::default()));
    }
}
