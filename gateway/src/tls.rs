//! rustls for Oort's outgoing HTTPS (callbacks, `oort drain`), with the ring crypto provider.
//!
//! reqwest is built with `rustls-no-provider`: a client built the ordinary way looks for a
//! process-wide crypto provider and panics without one. So every reqwest client starts from
//! [`client_builder`], which hands reqwest a finished rustls config that names ring itself;
//! nothing global is installed, and the order in which things start cannot matter.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::callback::SetupError;

/// A reqwest client builder whose https connections trust `roots` and nothing else.
pub fn client_builder(roots: RootCertStore) -> Result<reqwest::ClientBuilder, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // reqwest is built for HTTP/1.1 only; the handshake should not offer anything else.
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    #[allow(
        clippy::disallowed_methods,
        reason = "this is the one place reqwest clients start, with TLS configured"
    )]
    let builder = reqwest::Client::builder();
    Ok(builder.tls_backend_preconfigured(tls))
}

/// The platform's roots, and then every certificate of `ca_pem` (the contents of
/// `callback.ca_file`), which must all be usable CA certificates.
pub fn callback_roots(
    platform: &[CertificateDer<'static>],
    ca_file: &str,
    ca_pem: Option<&[u8]>,
) -> Result<RootCertStore, SetupError> {
    let mut roots = RootCertStore::empty();
    // The platform's store may hold certificates webpki cannot use; skipping them is what
    // every rustls client does.
    roots.add_parsable_certificates(platform.iter().cloned());
    let Some(pem) = ca_pem else {
        return Ok(roots);
    };
    let invalid = |reason: String| SetupError {
        key: "callback.ca_file".into(),
        value: ca_file.into(),
        reason,
    };
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| invalid(format!("not a PEM file of certificates: {err}")))?;
    if certificates.is_empty() {
        return Err(invalid("no PEM certificate in the file".into()));
    }
    for (index, certificate) in certificates.into_iter().enumerate() {
        roots.add(certificate).map_err(|err| {
            invalid(format!(
                "certificate {} is not a usable CA certificate: {err}",
                index + 1
            ))
        })?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_refused_naming_the_key() {
        for (pem, reason) in [
            (&b"not a certificate at all\n"[..], "no PEM certificate"),
            (
                b"-----BEGIN CERTIFICATE-----\nAAAA\n",
                "not a PEM file of certificates",
            ),
            (
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "certificate 1 is not a usable CA certificate",
            ),
        ] {
            let err = callback_roots(&[], "/etc/ca.pem", Some(pem)).unwrap_err();
            assert_eq!(err.key, "callback.ca_file");
            assert_eq!(err.value, "/etc/ca.pem");
            assert!(err.reason.contains(reason), "{reason}: {}", err.reason);
        }
    }

    #[test]
    fn no_file_means_the_platform_roots_alone() {
        let roots = callback_roots(&[], "", None).unwrap();
        assert!(roots.is_empty());
    }
}
