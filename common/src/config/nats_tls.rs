//! `cluster.nats_tls`: TLS to NATS. A `tls://` URL, `require`, a CA file or a client
//! certificate each make TLS required, so a node never falls back to plain text when it was
//! configured to trust a particular CA or to present a certificate.

use serde::{Deserialize, Serialize};

use super::{ConfigError, lenient};

/// TLS settings for the NATS connection.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NatsTlsConfig {
    /// Require TLS even with `nats://` URLs.
    #[serde(deserialize_with = "lenient::bool")]
    pub require: bool,
    /// PEM file of the CA certificates that sign the NATS servers' certificates; empty trusts
    /// the system's roots.
    #[serde(deserialize_with = "lenient::string")]
    pub ca_file: String,
    /// PEM file of this node's client certificate chain (mutual TLS), with `key_file`.
    #[serde(deserialize_with = "lenient::string")]
    pub cert_file: String,
    /// PEM file of the client certificate's private key.
    #[serde(deserialize_with = "lenient::string")]
    pub key_file: String,
}

impl NatsTlsConfig {
    /// True when these settings alone call for TLS.
    pub fn requires_tls(&self) -> bool {
        self.require || !self.ca_file.is_empty() || !self.cert_file.is_empty()
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !self.cert_file.is_empty() && self.key_file.is_empty() {
            return Err(ConfigError::invalid(
                "cluster.nats_tls.cert_file",
                &self.cert_file,
                "a client certificate needs cluster.nats_tls.key_file",
            ));
        }
        if self.cert_file.is_empty() && !self.key_file.is_empty() {
            return Err(ConfigError::invalid(
                "cluster.nats_tls.key_file",
                &self.key_file,
                "a key needs its certificate in cluster.nats_tls.cert_file",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_and_its_key_come_together() {
        let cert_only = NatsTlsConfig {
            cert_file: "/tls/tls.crt".into(),
            ..NatsTlsConfig::default()
        };
        assert!(
            matches!(cert_only.validate(), Err(ConfigError::Invalid { key, .. }) if key == "cluster.nats_tls.cert_file")
        );
        let key_only = NatsTlsConfig {
            key_file: "/tls/tls.key".into(),
            ..NatsTlsConfig::default()
        };
        assert!(
            matches!(key_only.validate(), Err(ConfigError::Invalid { key, .. }) if key == "cluster.nats_tls.key_file")
        );
        let both = NatsTlsConfig {
            cert_file: "/tls/tls.crt".into(),
            key_file: "/tls/tls.key".into(),
            ..NatsTlsConfig::default()
        };
        assert_eq!(both.validate(), Ok(()));
        assert!(both.requires_tls());
        assert!(!NatsTlsConfig::default().requires_tls());
    }
}
