//! A client away for 10 s (under `session.linger`) while sends go on through every node, and the
//! refusals a resume can meet, against real processes.

use std::time::{Duration, Instant};

use oort_e2e::TIMEOUT;
use oort_e2e::durable_client::{ConnectError, Data, DurableClient, Event, Position};

use crate::{connect, connect_url, three_nodes};

#[tokio::test]
async fn a_client_away_for_ten_seconds_gets_every_message_sent_meanwhile() {
    let (_nats, cluster) = three_nodes().await;
    let mut client = connect(&cluster, "n2", "away").await;
    assert_eq!(cluster.v1_send("n1", &["away"], "m0").await, ["ok"]);
    assert_eq!(client.recv().await, (1, Data::Text("m0".into())));
    client.ack(1).await.unwrap();
    let position = client.drop_connection();
    // Ten seconds away, a send every 100 ms through each node in turn.
    let away = Instant::now();
    let mut sent = Vec::new();
    let mut n = 1;
    while away.elapsed() < Duration::from_secs(10) {
        let node = ["n1", "n2", "n3"][n % 3];
        let data = format!("m{n}");
        let status = cluster.v1_send(node, &["away"], &data).await;
        assert!(
            status == ["buffered"] || status == ["ok"],
            "{data} through {node}: {status:?}"
        );
        sent.push(data);
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sent.len() > 50, "{} sends", sent.len());
    let mut resumed = DurableClient::resume(&connect_url(&cluster, "n3"), &position)
        .await
        .expect("resumed after 10 s away");
    for (seq, data) in (2..).zip(&sent) {
        assert_eq!(resumed.recv().await, (seq, Data::Text(data.clone())));
    }
    assert!(
        resumed
            .next_event(Duration::from_millis(300))
            .await
            .is_none(),
        "nothing more"
    );
}

#[tokio::test]
async fn a_resume_is_refused_or_reset_when_it_cannot_continue_the_session() {
    let (_nats, cluster) = three_nodes().await;
    let mut client = connect(&cluster, "n1", "strict").await;
    assert_eq!(cluster.v1_send("n1", &["strict"], "m1").await, ["ok"]);
    assert_eq!(client.recv().await.0, 1);
    // A forged token: 401 on any node, and the session is untouched.
    let forged = Position {
        token: client.position.token.replacen('.', ".eA", 1),
        ..client.position.clone()
    };
    for node in ["n1", "n2"] {
        assert!(matches!(
            DurableClient::resume(&connect_url(&cluster, node), &forged).await,
            Err(ConnectError::Refused(401))
        ));
    }
    assert_eq!(cluster.v1_send("n3", &["strict"], "m2").await, ["ok"]);
    assert_eq!(client.recv().await, (2, Data::Text("m2".into())));
    // A resume of the live session on another node: the older connection is closed (4001),
    // one session remains, on the new node.
    let position = client.position.clone();
    let mut newer = DurableClient::resume(&connect_url(&cluster, "n2"), &position)
        .await
        .expect("resumed while the old connection lives");
    assert_eq!(
        client.next_event(TIMEOUT).await,
        Some(Event::Closed(
            Some(4001),
            "session resumed by another connection".into()
        ))
    );
    // Through the old owner, which handed the session over: redirected to the new one.
    assert_eq!(cluster.v1_send("n1", &["strict"], "m3").await, ["ok"]);
    assert_eq!(newer.recv().await, (3, Data::Text("m3".into())));
    // An ack beyond the last message is a protocol error.
    newer.ack(99).await.unwrap();
    assert_eq!(
        newer.next_event(TIMEOUT).await,
        Some(Event::Closed(
            Some(1002),
            "ack beyond the last message".into()
        ))
    );
}
