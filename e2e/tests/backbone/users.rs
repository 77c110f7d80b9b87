//! Users across nodes (docs/channels.md): sessions of one user on several nodes, sends by
//! user through any node, and `limits.max_sessions_per_user` enforced cluster-wide through
//! the directory.

use oort_e2e::cluster::{FAST_TIMINGS, NodeExtras, TestCluster};
use oort_e2e::nats::NatsServer;
use oort_e2e::{CallbackKind, TIMEOUT, WsClient, eventually};
use serde_json::{Value, json};

use crate::CONVERGE;

async fn limited_cluster(max: &str, overflow: &str) -> (NatsServer, TestCluster) {
    let nats = NatsServer::start().await;
    let mut cluster = TestCluster::new(vec![nats.url()], FAST_TIMINGS).await;
    for name in ["n1", "n2", "n3"] {
        let extras = NodeExtras {
            env: vec![
                ("OORT_LIMITS__MAX_SESSIONS_PER_USER".into(), max.into()),
                ("OORT_LIMITS__USER_OVERFLOW".into(), overflow.into()),
            ],
            ..NodeExtras::default()
        };
        cluster.add_with(name, 3, extras).await;
    }
    cluster.wait_converged(3, 3, CONVERGE).await;
    (nats, cluster)
}

async fn user_sessions(cluster: &TestCluster, node: &str, user: &str) -> Vec<(String, String)> {
    let url = format!("{}/v1/users/{user}", cluster.node(node).api_url());
    let answer = oort_e2e::try_json(cluster.http().get(url))
        .await
        .expect("GET /v1/users");
    answer["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (text(&s["session"]), text(&s["node"]))
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// A user's sessions on n1 and n2, listed and reached through n3; a third session, on n3,
/// closes the oldest (on n1) with 4002 and the backend hears of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_sessions_on_every_node_within_the_limit() {
    let (_nats, cluster) = limited_cluster("2", "close_oldest").await;
    let connect = |node: &'static str, key: &'static str| {
        let url = cluster.node(node).ws_url(&format!("key={key}&user=ada"));
        async move { WsClient::connect(&url).await }
    };
    let mut s1 = connect("n1", "s1").await;
    let mut s2 = connect("n2", "s2").await;
    eventually(CONVERGE, "n3 to list both sessions", || async {
        (user_sessions(&cluster, "n3", "ada").await == pairs(&[("s1", "n1"), ("s2", "n2")]))
            .then_some(())
    })
    .await;
    let body = json!({ "users": ["ada"], "data": "to every device" });
    let url = format!("{}/v1/send", cluster.node("n3").api_url());
    let answer = oort_e2e::try_json(cluster.http().post(url).body(body.to_string()))
        .await
        .expect("a send answer");
    assert_eq!(answer["ok"], 2, "{answer}");
    assert_eq!(s1.recv_text().await, "to every device");
    assert_eq!(s2.recv_text().await, "to every device");

    let _s3 = connect("n3", "s3").await;
    let frame = s1.closed().await.expect("the oldest session closes");
    assert_eq!(u16::from(frame.code), 4002);
    cluster
        .backend
        .wait_for(CallbackKind::Close, "s1", 1, TIMEOUT)
        .await;
    eventually(CONVERGE, "n1 to list the two newest", || async {
        (user_sessions(&cluster, "n1", "ada").await == pairs(&[("s2", "n2"), ("s3", "n3")]))
            .then_some(())
    })
    .await;
}

/// Limit 1, refusing: two connects for one user at once, on two nodes. The directory
/// orders them: exactly one is admitted, the other gets 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_cannot_both_admit_the_last_slot() {
    let (_nats, cluster) = limited_cluster("1", "refuse").await;
    for round in 0..5 {
        let user = format!("racer{round}");
        let attempt = |node: &'static str| {
            let url = cluster
                .node(node)
                .ws_url(&format!("key={user}-{node}&user={user}"));
            async move { WsClient::connect_with(&url, &[]).await }
        };
        let (a, b) = tokio::join!(attempt("n1"), attempt("n2"));
        let statuses: Vec<u16> = [&a, &b]
            .iter()
            .map(|outcome| match outcome {
                Ok(_) => 101,
                Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                    response.status().as_u16()
                }
                Err(other) => panic!("connect failed without an answer: {other}"),
            })
            .collect();
        let mut sorted = statuses.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [101, 429], "round {round}: {statuses:?}");
        let listed = user_sessions(&cluster, "n3", &user).await;
        assert!(listed.len() <= 1, "{listed:?}");
    }
}
