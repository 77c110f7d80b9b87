//! What the gateway takes from the machine it runs on. The binary gathers it, because it is the
//! only part of Oort that reads the process environment and files; tests make it up.

use oort_common::config::NatsAccess;
use rustls::pki_types::CertificateDer;

/// Facts about the host, given to [`crate::Gateway::start`].
#[derive(Clone, Debug, Default)]
pub struct Host {
    /// The machine's hostname: the default `endpoint` (`hostname:port`) and `cluster.node_id`.
    pub hostname: String,
    /// The platform's trusted root certificates, for https callbacks (the binary loads them
    /// only when a callback uses https).
    pub platform_roots: Vec<CertificateDer<'static>>,
    /// The contents of `callback.ca_file`, when it is set.
    pub callback_ca_pem: Option<Vec<u8>>,
    /// The NATS credentials, TLS material and cluster secret the `cluster` settings name, with
    /// the files they name read (`ClusterConfig::nats_access`).
    pub nats_access: NatsAccess,
    /// `session.resume_secret`, or what the file `session.resume_secret_file` holds.
    pub resume_secret: Option<oort_common::config::Secret>,
}
