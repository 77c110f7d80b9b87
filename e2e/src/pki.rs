//! Certificates for TLS tests, made fresh by each test with rcgen: a CA, a server certificate
//! for `127.0.0.1` and `localhost`, and a client certificate for mutual TLS, written as PEM
//! files (the form nats-server and Oort's config both take).

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::temp::TempDir;

/// A test CA and the certificates it signed, as PEM files.
pub struct TestPki {
    /// The CA certificate.
    pub ca_file: PathBuf,
    /// The server certificate (`127.0.0.1`, `localhost`).
    pub server_cert: PathBuf,
    /// The server certificate's key.
    pub server_key: PathBuf,
    /// A client certificate (`oort-node`).
    pub client_cert: PathBuf,
    /// The client certificate's key.
    pub client_key: PathBuf,
    /// The directory holding them, for other files of the same test.
    pub dir: TempDir,
}

impl TestPki {
    /// Makes a CA and signs a server and a client certificate with it.
    pub fn new() -> Self {
        let dir = TempDir::new("pki");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Oort test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().expect("CA key");
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");
        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose, name: &str| {
            let mut params = CertificateParams::new(names).expect("leaf params");
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = vec![usage];
            let key = KeyPair::generate().expect("leaf key");
            let cert = params.signed_by(&key, &ca).expect("leaf certificate");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
            "nats-test",
        );
        let (client_cert, client_key) = leaf(
            vec!["oort-node".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
            "oort-node",
        );
        Self {
            ca_file: dir.write("ca.crt", ca.pem()),
            server_cert: dir.write("server.crt", server_cert),
            server_key: dir.write("server.key", server_key),
            client_cert: dir.write("client.crt", client_cert),
            client_key: dir.write("client.key", client_key),
            dir,
        }
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}
