//! The other ways NATS users authenticate: a token, an NKey, and a JWT `.creds` file (an
//! operator, an account and a user). Each forms a one-node cluster against a server that
//! accepts nothing else.

use oort_e2e::cluster::{FAST_TIMINGS, NodeExtras, TestCluster, fresh_cluster_name};
use oort_e2e::nats::NatsServer;
use oort_e2e::nats::config;
use oort_e2e::nats::jwt::Operator;
use oort_e2e::temp::TempDir;

use crate::CONVERGE;

/// One node with `extras` against `nats`, which must let it form a cluster alone.
async fn forms_alone(nats: &NatsServer, name: &str, extra: &str, extras: NodeExtras) {
    let mut cluster =
        TestCluster::named(name, vec![nats.url()], &format!("{FAST_TIMINGS}{extra}")).await;
    cluster.add_with("solo", 1, extras).await;
    cluster.wait_converged(1, 1, CONVERGE).await;
}

/// A token from an `OORT_*` variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_forms_a_cluster() {
    let nats = NatsServer::start_with(&config::token("t0ken-for-oort")).await;
    let extras = NodeExtras {
        env: vec![(
            "OORT_CLUSTER__NATS_AUTH__TOKEN".into(),
            "t0ken-for-oort".into(),
        )],
        ..NodeExtras::default()
    };
    forms_alone(&nats, &fresh_cluster_name(), "", extras).await;
}

/// An NKey seed from a file; the server knows only the public key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_nkey_seed_forms_a_cluster() {
    let user = nkeys::KeyPair::new_user();
    let nats = NatsServer::start_with(&config::nkey_users(&[user.public_key()])).await;
    let dir = TempDir::new("nkey");
    let seed_file = dir.write("oort.nk", format!("{}\n", user.seed().unwrap()));
    let extra = format!(
        "  nats_auth:\n    nkey_seed_file: {}\n",
        seed_file.display()
    );
    forms_alone(&nats, &fresh_cluster_name(), &extra, NodeExtras::default()).await;
}

/// A `.creds` file for a user of an operator's account, allowed only the cluster's subjects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credentials_file_forms_a_cluster() {
    let name = fresh_cluster_name();
    let operator = Operator::with_user(&[format!("oort.{name}.>")]);
    let nats = NatsServer::start_with(&operator.server_config).await;
    let dir = TempDir::new("creds");
    let creds = dir.write("oort.creds", &operator.user_creds);
    let extra = format!("  nats_auth:\n    credentials_file: {}\n", creds.display());
    forms_alone(&nats, &name, &extra, NodeExtras::default()).await;
}
