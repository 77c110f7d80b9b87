//! Mutual TLS and a user limited to the cluster's subjects: the cluster forms and routes; a
//! wrong password leaves a node not ready and says so once.

use std::time::Duration;

use oort_e2e::cluster::{FAST_TIMINGS, NodeExtras};
use oort_e2e::{TIMEOUT, WsClient};

use crate::{CONVERGE, OORT_PASSWORD, SecureNats, status_of, v1_send};

/// Three nodes with the right certificate and password (read from a file) form a cluster over
/// `tls://`, though their NATS user may touch nothing but `oort.<cluster>.>`; a send through
/// one node reaches a client on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_with_a_client_certificate_and_a_password_form_a_cluster_and_route() {
    let secure = SecureNats::start().await;
    let password_file = secure
        .pki
        .dir
        .write("oort.password", format!("{OORT_PASSWORD}\n"));
    let extra = format!(
        "{FAST_TIMINGS}  nats_auth:\n    user: oort\n    password_file: {}\n{}",
        password_file.display(),
        secure.tls_lines()
    );
    let mut cluster = secure.cluster(&extra).await;
    for name in ["n1", "n2", "n3"] {
        cluster.add(name, 3).await;
    }
    cluster.wait_converged(3, 3, CONVERGE).await;
    let mut client = WsClient::connect(&cluster.node("n3").ws_url("key=far")).await;
    assert_eq!(v1_send(&cluster, "n1", &["far"], "over TLS").await, ["ok"]);
    assert_eq!(client.recv_text().await, "over TLS");
}

/// A node whose password is wrong (from an `OORT_*` variable) keeps running, stays not ready,
/// and logs that authentication failed once, though NATS refuses it again and again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_leaves_the_node_not_ready_with_one_clear_line() {
    let secure = SecureNats::start().await;
    let extra = format!(
        "{FAST_TIMINGS}  nats_auth:\n    user: oort\n{}",
        secure.tls_lines()
    );
    let mut cluster = secure.cluster(&extra).await;
    let wrong = NodeExtras {
        env: vec![(
            "OORT_CLUSTER__NATS_AUTH__PASSWORD".into(),
            "not-the-password".into(),
        )],
        ..NodeExtras::default()
    };
    cluster.add_with("lone", 1, wrong).await;
    let process = cluster.node("lone").process();
    let line = process
        .wait_for_line("NATS authentication failed", TIMEOUT)
        .await;
    assert!(!line.contains("not-the-password"), "{line}");
    // The server refused five attempts: every one after the first was logged, or not, by now.
    secure
        .nats
        .wait_for_lines("authentication error", 5, Duration::from_secs(30))
        .await;
    let said = process
        .logs()
        .into_iter()
        .filter(|line| line.contains("authentication failed"))
        .count();
    assert_eq!(
        said,
        1,
        "one line, not one per attempt:\n{}",
        process.logs().join("\n")
    );
    // Nor does the NATS client library add its own line per attempt.
    assert!(
        !process
            .logs()
            .iter()
            .any(|line| line.contains("authorization violation")),
        "{}",
        process.logs().join("\n")
    );
    assert_eq!(status_of(&cluster, "lone", "/readyz").await, 503);
    assert_eq!(status_of(&cluster, "lone", "/livez").await, 200);
}
