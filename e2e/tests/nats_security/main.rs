//! NATS authentication and TLS with real nats-server and `oort` processes: a cluster over
//! mutual TLS with a user limited to the cluster's subjects, a wrong password, another NATS
//! user who tries to forge or read the cluster's messages, token, NKey and JWT credentials,
//! and start-up errors for unreadable or unusable files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backends;
mod intruder;
mod methods;
mod startup;
mod tls_users;

use std::time::Duration;

use oort_e2e::cluster::{TestCluster, fresh_cluster_name};
use oort_e2e::nats::NatsServer;
use oort_e2e::nats::config::{self, Subjects, User};
use oort_e2e::pki::TestPki;

/// Bound on a cluster converging.
pub const CONVERGE: Duration = Duration::from_secs(30);
/// The password of Oort's NATS user.
pub const OORT_PASSWORD: &str = "oort-nats-password";
/// The password of the other NATS user.
pub const INTRUDER_PASSWORD: &str = "intruder-nats-password";

/// A nats-server requiring TLS with client certificates from the test CA, and two users: `oort`,
/// who may publish and subscribe to `oort.<cluster>.>` and nothing else, and `intruder`, who may
/// use every subject but those.
pub struct SecureNats {
    /// The server.
    pub nats: NatsServer,
    /// The CA, the server's and a client's certificates.
    pub pki: TestPki,
    /// The cluster name the permissions are for.
    pub cluster: String,
}

impl SecureNats {
    /// Starts the server.
    pub async fn start() -> Self {
        let pki = TestPki::new();
        let cluster = fresh_cluster_name();
        let subjects = vec![format!("oort.{cluster}.>")];
        let text = config::tls(&pki, true)
            + &config::users(&[
                User {
                    user: "oort".into(),
                    password: OORT_PASSWORD.into(),
                    publish: Subjects::Allow(subjects.clone()),
                    subscribe: Subjects::Allow(subjects.clone()),
                },
                User {
                    user: "intruder".into(),
                    password: INTRUDER_PASSWORD.into(),
                    publish: Subjects::Deny(subjects.clone()),
                    subscribe: Subjects::Deny(subjects),
                },
            ]);
        Self {
            nats: NatsServer::start_with(&text).await,
            pki,
            cluster,
        }
    }

    /// `cluster:` lines for TLS with the test CA and the client certificate.
    pub fn tls_lines(&self) -> String {
        format!(
            "  nats_tls:\n    ca_file: {}\n    cert_file: {}\n    key_file: {}\n",
            self.pki.ca_file.display(),
            self.pki.client_cert.display(),
            self.pki.client_key.display(),
        )
    }

    /// A cluster of nodes that will use this server over `tls://`, with `extra` in the
    /// `cluster:` section (no node started yet).
    pub async fn cluster(&self, extra: &str) -> TestCluster {
        TestCluster::named(&self.cluster, vec![self.nats.tls_url()], extra).await
    }

    /// A client of this server as `user`, over TLS with the test's client certificate. Its
    /// server errors (permission violations) arrive on the returned channel.
    pub async fn client(
        &self,
        user: &str,
        password: &str,
    ) -> (
        async_nats::Client,
        tokio::sync::mpsc::UnboundedReceiver<String>,
    ) {
        let _ = async_nats::rustls::crypto::ring::default_provider().install_default();
        let (errors, received) = tokio::sync::mpsc::unbounded_channel();
        let client =
            async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
                .add_root_certificates(self.pki.ca_file.clone())
                .add_client_certificate(self.pki.client_cert.clone(), self.pki.client_key.clone())
                .require_tls(true)
                .event_callback(move |event| {
                    let errors = errors.clone();
                    async move {
                        if let async_nats::Event::ServerError(error) = event {
                            let _ = errors.send(error.to_string());
                        }
                    }
                })
                .connect(self.nats.tls_url())
                .await
                .expect("connect to the test nats-server");
        (client, received)
    }
}

/// `/v1/send` through `node`: the per-session statuses.
pub async fn v1_send(cluster: &TestCluster, node: &str, keys: &[&str], data: &str) -> Vec<String> {
    cluster.v1_send(node, keys, data).await
}

/// The status `GET path` answers on `node`.
pub async fn status_of(cluster: &TestCluster, node: &str, path: &str) -> u16 {
    cluster.status_code(node, path).await
}
