//! TLS to NATS: a rustls client configuration built from the PEM text the binary read (the CA
//! to trust, the client certificate and key), so certificates are parsed once, at start, and a
//! bad one is a start-up error naming its key rather than a failure on every connect.

use std::sync::Arc;

use async_nats::ConnectOptions;
use async_nats::rustls::crypto::ring;
use async_nats::rustls::pki_types::pem::PemObject;
use async_nats::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use async_nats::rustls::{ClientConfig, RootCertStore};
use oort_common::config::{NatsTls, NatsTlsConfig};

use crate::RouterError;

/// Makes ring the process's rustls crypto provider. When a server asks for TLS and no client
/// configuration was given, async-nats builds one with the process default, and rustls panics
/// if there is none. Installing fails only when a provider is installed already, which is as
/// good.
pub(super) fn install_default_provider() {
    let _ = ring::default_provider().install_default();
}

/// Requires TLS when the settings call for it, and hands async-nats a client configuration when
/// there is a CA or a client certificate to use; otherwise async-nats trusts the system's roots.
pub(super) fn apply(
    options: ConnectOptions,
    settings: &NatsTlsConfig,
    tls: &NatsTls,
) -> Result<ConnectOptions, RouterError> {
    let options = options.require_tls(tls.required);
    if tls.ca_pem.is_none() && tls.client.is_none() {
        return Ok(options);
    }
    Ok(options.tls_client_config(client_config(settings, tls)?))
}

fn client_config(settings: &NatsTlsConfig, tls: &NatsTls) -> Result<ClientConfig, RouterError> {
    let roots = match &tls.ca_pem {
        Some(pem) => roots_from_pem(&settings.ca_file, pem)?,
        None => system_roots(),
    };
    let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|err| RouterError::Unavailable(format!("TLS is unavailable: {err}")))?
        .with_root_certificates(roots);
    let Some(identity) = &tls.client else {
        return Ok(builder.with_no_client_auth());
    };
    let chain = certificates(
        "cluster.nats_tls.cert_file",
        &settings.cert_file,
        &identity.cert_pem,
    )?;
    let key =
        PrivateKeyDer::from_pem_slice(identity.key_pem.expose().as_bytes()).map_err(|err| {
            RouterError::config(
                "cluster.nats_tls.key_file",
                &settings.key_file,
                format!("no private key in the file: {err}"),
            )
        })?;
    builder.with_client_auth_cert(chain, key).map_err(|err| {
        RouterError::config(
            "cluster.nats_tls.key_file",
            &settings.key_file,
            format!("cannot be used with cluster.nats_tls.cert_file: {err}"),
        )
    })
}

fn roots_from_pem(path: &str, pem: &str) -> Result<RootCertStore, RouterError> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates("cluster.nats_tls.ca_file", path, pem)? {
        roots.add(certificate).map_err(|err| {
            RouterError::config(
                "cluster.nats_tls.ca_file",
                path,
                format!("not a usable CA certificate: {err}"),
            )
        })?;
    }
    Ok(roots)
}

/// The system's trust store, for a client certificate presented to a server whose certificate
/// a public CA signed. Unreadable entries are skipped, as async-nats does.
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots
}

fn certificates(
    key: &str,
    path: &str,
    pem: &str,
) -> Result<Vec<CertificateDer<'static>>, RouterError> {
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| RouterError::config(key, path, format!("not PEM certificates: {err}")))?;
    if certificates.is_empty() {
        return Err(RouterError::config(
            key,
            path,
            "the file holds no PEM certificate",
        ));
    }
    Ok(certificates)
}
