//! `oort.v1` on one node: sequence numbers, acks, the replay buffer, linger, resume tokens,
//! and what a client that breaks the protocol gets.

use std::time::Duration;

use oort_common::config::GoDuration;
use oort_e2e::durable_client::{ConnectError, Data, DurableClient, Event, Position};
use oort_e2e::{CallbackKind, TIMEOUT, WsClient};
use serde_json::json;

use crate::api::{post_json, session_info};
use crate::support::TestGateway;

fn connect_url(gateway: &TestGateway) -> String {
    format!("ws://{}/connect", gateway.addr)
}

async fn connect(gateway: &TestGateway, key: &str) -> DurableClient {
    let client = DurableClient::connect(&gateway.ws_url(&format!("key={key}")))
        .await
        .expect("an oort.v1 session");
    gateway
        .backend
        .wait_for(CallbackKind::Establish, key, 1, TIMEOUT)
        .await;
    client
}

use crate::api::{status_of, v1_send_one as send};

/// Waits until the gateway noticed the dropped connection: a send answers `buffered`.
async fn dropped(gateway: &TestGateway, key: &str, probe: &str) {
    oort_e2e::eventually(TIMEOUT, "the drop noticed", || async {
        let (_, info) = session_info(gateway, key).await;
        (info["durable"]["connected"] == json!(false)).then_some(())
    })
    .await;
    assert_eq!(status_of(&send(gateway, key, probe).await), "buffered");
}

#[tokio::test]
async fn messages_are_numbered_acknowledged_and_answered() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut client = DurableClient::connect(&gateway.ws_url("key=k1&first=hello"))
        .await
        .expect("an oort.v1 session");
    assert_eq!(client.position.session, "k1");
    assert_eq!(client.welcome_seq, 0);
    assert_eq!(client.recv().await, (1, Data::Text("hello".into())));
    let answer = send(&gateway, "k1", "two").await;
    assert_eq!(status_of(&answer), "ok");
    assert_eq!(answer["ok"], 1);
    assert_eq!(client.recv().await, (2, Data::Text("two".into())));
    let (status, answer) = post_json(
        &gateway.api_url(),
        "/v1/send",
        &json!({"sessions": ["k1"], "data_base64": "AAEC"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(client.recv().await, (3, Data::Binary(vec![0, 1, 2])));
    let (_, info) = session_info(&gateway, "k1").await;
    assert_eq!(info["durable"]["last_seq"], 3);
    assert_eq!(info["durable"]["unacked_messages"], 3);
    client.ack(2).await.unwrap();
    oort_e2e::eventually(TIMEOUT, "the ack applied", || async {
        (session_info(&gateway, "k1").await.1["durable"]["unacked_messages"] == 1).then_some(())
    })
    .await;
    // Client messages still reach the receive callback.
    client.send_text("from the client").await.unwrap();
    let received = gateway
        .backend
        .wait_for(CallbackKind::Receive, "k1", 1, TIMEOUT)
        .await;
    assert_eq!(&received[0].body[..], b"from the client");
    gateway.stop().await;
}

#[tokio::test]
async fn a_client_that_drops_resumes_with_everything_sent_meanwhile() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut client = connect(&gateway, "blip").await;
    assert_eq!(status_of(&send(&gateway, "blip", "m1").await), "ok");
    assert_eq!(client.recv().await.0, 1);
    let position = client.drop_connection();
    dropped(&gateway, "blip", "m2").await;
    for n in 3..=5 {
        assert_eq!(
            status_of(&send(&gateway, "blip", &format!("m{n}")).await),
            "buffered"
        );
    }
    // kuiperbelt's /send counts a buffered message as sent.
    let response = oort_e2e::http_client()
        .post(format!("{}/send", gateway.api_url()))
        .header("X-Kuiperbelt-Session", "blip")
        .body("m6")
        .send()
        .await
        .unwrap();
    let body = crate::api::json_of(response).await;
    assert_eq!(body["result"], "OK", "{body}");
    assert!(
        body.get("errors")
            .is_none_or(|e| e.as_array().is_some_and(Vec::is_empty))
    );
    let mut resumed = DurableClient::resume(&connect_url(&gateway), &position)
        .await
        .expect("resumed");
    assert_eq!(resumed.welcome_seq, 1);
    for (seq, data) in (2..=6).zip(["m2", "m3", "m4", "m5", "m6"]) {
        assert_eq!(resumed.recv().await, (seq, Data::Text(data.into())));
    }
    assert_eq!(status_of(&send(&gateway, "blip", "live").await), "ok");
    assert_eq!(resumed.recv().await, (7, Data::Text("live".into())));
    // The establish callback is told it is a resume; the connect callback is not asked again.
    let established = gateway
        .backend
        .wait_for(CallbackKind::Establish, "blip", 2, TIMEOUT)
        .await;
    assert_eq!(established[1].header("x-oort-resumed"), Some("true"));
    assert_eq!(established[0].header("x-oort-resumed"), None);
    assert_eq!(
        gateway
            .backend
            .for_session(CallbackKind::Connect, "blip")
            .len(),
        0
    );
    assert_eq!(gateway.backend.of_kind(CallbackKind::Connect).len(), 1);
    assert!(
        gateway
            .backend
            .for_session(CallbackKind::Close, "blip")
            .is_empty()
    );
    gateway.stop().await;
}

#[tokio::test]
async fn a_resume_from_behind_a_bound_gets_reset() {
    let gateway = TestGateway::start(|config| config.session.buffer_messages = 3).await;
    let client = connect(&gateway, "far").await;
    let position = client.drop_connection();
    dropped(&gateway, "far", "m1").await;
    for n in 2..=5 {
        assert_eq!(
            status_of(&send(&gateway, "far", &format!("m{n}")).await),
            "buffered"
        );
    }
    match DurableClient::resume(&connect_url(&gateway), &position).await {
        Err(ConnectError::Reset(reason)) => assert!(reason.contains("dropped"), "{reason}"),
        Err(other) => panic!("expected a reset, got {other:?}"),
        Ok(_) => panic!("expected a reset, got a resumed session"),
    }
    // The session ended: the backend is told, and sends find nothing.
    gateway
        .backend
        .wait_for(CallbackKind::Close, "far", 1, TIMEOUT)
        .await;
    assert_eq!(
        status_of(&send(&gateway, "far", "after").await),
        "not_found"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn forged_expired_and_malformed_resumes_are_refused() {
    let gateway = TestGateway::start(|_| {}).await;
    let client = connect(&gateway, "tok").await;
    let genuine = client.position.clone();
    let url = connect_url(&gateway);
    let forged = Position {
        token: genuine.token.replace("v1.", "v1.x"),
        ..genuine.clone()
    };
    assert!(matches!(
        DurableClient::resume(&url, &forged).await,
        Err(ConnectError::Refused(401))
    ));
    // A token from another gateway (another secret) is refused too.
    let other = TestGateway::start(|_| {}).await;
    let elsewhere = connect(&other, "tok").await.position.clone();
    assert!(matches!(
        DurableClient::resume(&url, &elsewhere).await,
        Err(ConnectError::Refused(401))
    ));
    // No position, or no oort.v1: 400.
    let refused = WsClient::connect_with(
        &format!("{url}?oort_resume={}", genuine.token),
        &[("sec-websocket-protocol", "oort.v1")],
    )
    .await;
    assert!(
        matches!(refused, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 400)
    );
    let plain = WsClient::connect_with(
        &format!("{url}?oort_resume={}&oort_seq=0", genuine.token),
        &[],
    )
    .await;
    assert!(
        matches!(plain, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 400)
    );
    // Nothing resumed: the original connection is still the session's.
    let (_, info) = session_info(&gateway, "tok").await;
    assert_eq!(info["durable"]["connected"], true);
    drop(client);
    other.stop().await;
    gateway.stop().await;
}

#[tokio::test]
async fn an_ack_beyond_the_last_message_is_a_protocol_error() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut client = connect(&gateway, "liar").await;
    send(&gateway, "liar", "one").await;
    assert_eq!(client.recv().await.0, 1);
    client.ack(5).await.unwrap();
    assert_eq!(
        client.next_event(TIMEOUT).await,
        Some(Event::Closed(
            Some(1002),
            "ack beyond the last message".into()
        ))
    );
    let mut garbled = connect(&gateway, "garbled").await;
    garbled
        .send_raw(tokio_tungstenite::tungstenite::Message::text("not json"))
        .await
        .unwrap();
    assert!(matches!(
        garbled.next_event(TIMEOUT).await,
        Some(Event::Closed(Some(1002), _))
    ));
    // A protocol error ends the session, and the backend is told.
    gateway
        .backend
        .wait_for(CallbackKind::Close, "liar", 1, TIMEOUT)
        .await;
    gateway.stop().await;
}

#[tokio::test]
async fn a_resume_while_the_old_connection_lives_takes_it_over() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut old = connect(&gateway, "twice").await;
    send(&gateway, "twice", "one").await;
    assert_eq!(old.recv().await.0, 1);
    let position = old.position.clone();
    let mut new = DurableClient::resume(&connect_url(&gateway), &position)
        .await
        .expect("resumed");
    assert_eq!(
        old.next_event(TIMEOUT).await,
        Some(Event::Closed(
            Some(4001),
            "session resumed by another connection".into()
        ))
    );
    assert_eq!(status_of(&send(&gateway, "twice", "two").await), "ok");
    assert_eq!(new.recv().await, (2, Data::Text("two".into())));
    let (_, info) = session_info(&gateway, "twice").await;
    assert_eq!(info["durable"]["connected"], true);
    assert!(
        gateway
            .backend
            .for_session(CallbackKind::Close, "twice")
            .is_empty()
    );
    gateway.stop().await;
}

#[tokio::test]
async fn a_session_nobody_resumes_ends_after_the_linger() {
    let gateway = TestGateway::start(|config| {
        config.session.linger = GoDuration::from_millis(300);
    })
    .await;
    let client = connect(&gateway, "gone").await;
    let position = client.drop_connection();
    let closed = gateway
        .backend
        .wait_for(CallbackKind::Close, "gone", 1, TIMEOUT)
        .await;
    assert_eq!(closed.len(), 1);
    assert_eq!(
        status_of(&send(&gateway, "gone", "late").await),
        "not_found"
    );
    match DurableClient::resume(&connect_url(&gateway), &position).await {
        Err(ConnectError::Reset(_)) => {}
        other => panic!("expected a reset, got {:?}", other.map(|_| "a session")),
    }
    gateway.stop().await;
}

#[tokio::test]
async fn a_clean_close_ends_the_session_and_plain_clients_are_unchanged() {
    let gateway = TestGateway::start(|_| {}).await;
    let client = connect(&gateway, "bye").await;
    client.close().await;
    gateway
        .backend
        .wait_for(CallbackKind::Close, "bye", 1, TIMEOUT)
        .await;
    assert_eq!(status_of(&send(&gateway, "bye", "late").await), "not_found");
    // A client that offers no subprotocol gets plain frames.
    let mut plain = gateway.connect("plain").await;
    send(&gateway, "plain", "raw").await;
    assert_eq!(plain.recv_text().await, "raw");
    gateway.stop().await;
}

#[tokio::test]
async fn a_drain_tells_oort_v1_clients_to_move() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut client = connect(&gateway, "mover").await;
    gateway.begin_shutdown();
    assert_eq!(
        client.next_event(Duration::from_secs(10)).await,
        Some(Event::Closed(Some(1012), "moving; resume".into()))
    );
    // Alone, nobody can take the session: it ends, and the backend is told.
    gateway
        .backend
        .wait_for(CallbackKind::Close, "mover", 1, TIMEOUT)
        .await;
    gateway.stop().await;
}

#[tokio::test]
async fn a_connection_outliving_its_token_gets_a_fresh_one_that_resumes() {
    let gateway = TestGateway::start(|config| {
        config.session.resume_token_ttl = GoDuration::from_secs(2);
    })
    .await;
    let mut client = connect(&gateway, "long").await;
    let first = client.position.token.clone();
    // Half the token's life later, a fresh token arrives on the open connection.
    assert_eq!(
        client.next_event(Duration::from_secs(5)).await,
        Some(Event::Token)
    );
    assert_ne!(client.position.token, first);
    // Once the first token has expired, only the fresh one resumes.
    let position = client.drop_connection();
    dropped(&gateway, "long", "m1").await;
    let expired = Position {
        token: first,
        ..position.clone()
    };
    oort_e2e::eventually(
        Duration::from_secs(5),
        "the first token to expire",
        || async {
            match DurableClient::resume(&connect_url(&gateway), &expired).await {
                Err(ConnectError::Refused(401)) => Some(()),
                Err(other) => panic!("an expired token is refused with 401, not {other:?}"),
                Ok(_) => None,
            }
        },
    )
    .await;
    let mut resumed = DurableClient::resume(&connect_url(&gateway), &position)
        .await
        .expect("the fresh token resumes");
    assert_eq!(resumed.recv().await, (1, Data::Text("m1".into())));
    gateway.stop().await;
}
