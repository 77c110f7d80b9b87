//! Another user of the same NATS, without permission on `oort.<cluster>.>`: it can neither
//! publish into the cluster's subjects nor subscribe to them, nor read the answers nodes send
//! one another, and the cluster carries on unaffected.

use futures_util::{FutureExt, StreamExt};
use oort_common::NodeId;
use oort_common::cluster::{BroadcastHeader, encode_framed};
use oort_common::envelope::Sealer;
use oort_common::payload::FrameKind;
use oort_e2e::cluster::FAST_TIMINGS;
use oort_e2e::{TIMEOUT, WsClient};

use crate::{CONVERGE, INTRUDER_PASSWORD, OORT_PASSWORD, SecureNats, v1_send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_nats_user_can_neither_forge_nor_read_the_clusters_messages() {
    let secure = SecureNats::start().await;
    let extra = format!(
        "{FAST_TIMINGS}  nats_auth:\n    user: oort\n    password: {OORT_PASSWORD}\n{}",
        secure.tls_lines()
    );
    let mut cluster = secure.cluster(&extra).await;
    for name in ["n1", "n2"] {
        cluster.add(name, 2).await;
    }
    cluster.wait_converged(2, 2, CONVERGE).await;
    let mut target = WsClient::connect(&cluster.node("n1").ws_url("key=target")).await;
    let name = secure.cluster.clone();

    let (intruder, mut errors) = secure.client("intruder", INTRUDER_PASSWORD).await;
    let mut cluster_subjects = intruder.subscribe(format!("oort.{name}.>")).await.unwrap();
    // NATS's usual reply subjects: the nodes' answers do not travel there.
    let mut inboxes = intruder.subscribe("_INBOX.>").await.unwrap();
    let mut marker = intruder.subscribe("app.marker").await.unwrap();
    // A well-formed broadcast, as a node of a cluster without `cluster.secret` publishes it.
    let subject = format!("oort.{name}.broadcast");
    let body = encode_framed(
        &BroadcastHeader {
            kind: FrameKind::Text,
            origin: NodeId::from("n2"),
        },
        b"forged",
    );
    let forged = Sealer::new(None, &name).seal(subject.as_bytes(), &body).0;
    intruder
        .publish(format!("oort.{name}.broadcast"), forged.clone().into())
        .await
        .unwrap();
    intruder.flush().await.unwrap();
    let mut refused = Vec::new();
    while refused.len() < 2 {
        let error = tokio::time::timeout(TIMEOUT, errors.recv())
            .await
            .expect("the server refuses the intruder")
            .expect("the error channel is open");
        refused.push(error.to_lowercase());
    }
    refused.sort();
    assert_eq!(
        refused,
        [
            format!("nats: permissions violation for publish to \"oort.{name}.broadcast\""),
            format!("nats: permissions violation for subscription to \"oort.{name}.>\""),
        ]
    );

    // The cluster is unaffected: a send across nodes arrives, and it is the first thing the
    // client gets, so the forged broadcast never did.
    assert_eq!(
        v1_send(&cluster, "n2", &["target"], "genuine").await,
        ["ok"]
    );
    assert_eq!(target.recv_text().await, "genuine");
    // The same bytes published with Oort's credentials do arrive: only the permissions stopped
    // the forgery.
    let (oort, _) = secure.client("oort", OORT_PASSWORD).await;
    oort.publish(format!("oort.{name}.broadcast"), forged.into())
        .await
        .unwrap();
    oort.flush().await.unwrap();
    assert_eq!(target.recv_text().await, "forged");

    // The intruder's marker comes after all of that traffic on its connection; its other
    // subscriptions got none of it.
    intruder
        .publish("app.marker", "marker".into())
        .await
        .unwrap();
    let arrived = tokio::time::timeout(TIMEOUT, marker.next())
        .await
        .expect("the marker arrives")
        .expect("the marker subscription is open");
    assert_eq!(&arrived.payload[..], b"marker");
    for (what, subscription) in [
        ("oort.<cluster>.>", &mut cluster_subjects),
        ("_INBOX.>", &mut inboxes),
    ] {
        let leaked = subscription.next().now_or_never();
        assert!(
            !matches!(leaked, Some(Some(_))),
            "the intruder read the cluster's traffic on {what}: {leaked:?}"
        );
    }
}
