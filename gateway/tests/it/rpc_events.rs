//! `WatchEvents` on a single node: off unless `callback.event_feed`; a consumer sees each
//! session's connect, messages and close in order; a group shares the events while a consumer
//! without one sees them all; a consumer that stops reading is dropped with
//! `resource_exhausted` instead of holding events without bound.

use std::collections::HashSet;
use std::time::Duration;

use connectrpc::Protocol;
use oort_common::rpc::__buffa::oneof::event::Kind;
use oort_e2e::rpc::{self, ErrorCode, WatchEventsResponse, text_of};
use oort_e2e::{CallbackKind, TIMEOUT, WsClient};

use crate::support::TestGateway;

/// A big HTTP/2 window: the consumer's reads are never the limit.
const WIDE: u32 = 4 << 20;

async fn with_feed() -> TestGateway {
    TestGateway::start(|config| config.callback.event_feed = true).await
}

#[tokio::test]
async fn without_the_feed_a_consumer_is_refused_with_failed_precondition() {
    let gateway = TestGateway::start(|_| {}).await;
    let client = rpc::client(&gateway.api_url(), Protocol::Grpc, None, WIDE).await;
    let err = match rpc::watch(&client, "").await {
        Ok(mut events) => events
            .message::<WatchEventsResponse>()
            .await
            .expect_err("no events without the feed"),
        Err(err) => err,
    };
    assert_eq!(err.code, ErrorCode::FailedPrecondition, "{err:?}");
    assert!(
        err.message
            .as_deref()
            .unwrap_or_default()
            .contains("callback.event_feed"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_consumer_sees_a_sessions_connect_messages_and_close_in_order() {
    let gateway = with_feed().await;
    let client = rpc::client(&gateway.api_url(), Protocol::Connect, None, WIDE).await;
    let mut events = rpc::watch(&client, "").await.expect("a consumer");
    let mut ws = WsClient::connect(&gateway.ws_url("key=watched")).await;
    for n in 0..20 {
        ws.send_text(&format!("m{n}")).await;
    }
    gateway
        .backend
        .wait_for(CallbackKind::Receive, "watched", 20, TIMEOUT)
        .await;
    ws.close(1000).await;
    let first = rpc::next_event(&mut events, TIMEOUT).await;
    assert_eq!(first.session, "watched");
    assert!(
        matches!(first.kind, Some(Kind::Connected(ref c)) if !c.resumed),
        "{first:?}"
    );
    for n in 0..20 {
        let event = rpc::next_event(&mut events, TIMEOUT).await;
        assert_eq!(
            text_of(&event).as_deref(),
            Some(format!("m{n}").as_str()),
            "{event:?}"
        );
        assert!(event.unix_ms > 0);
    }
    let last = rpc::next_event(&mut events, TIMEOUT).await;
    assert!(matches!(last.kind, Some(Kind::Closed(_))), "{last:?}");
}

#[tokio::test]
async fn a_group_shares_the_events_and_a_consumer_without_one_sees_them_all() {
    let gateway = with_feed().await;
    let client = rpc::client(&gateway.api_url(), Protocol::Grpc, None, WIDE).await;
    let mut a = rpc::watch(&client, "workers").await.expect("member a");
    let mut b = rpc::watch(&client, "workers").await.expect("member b");
    let mut all = rpc::watch(&client, "").await.expect("a lone consumer");
    let mut ws = WsClient::connect(&gateway.ws_url("key=shared")).await;
    const MESSAGES: usize = 40;
    for n in 0..MESSAGES {
        ws.send_text(&format!("s{n}")).await;
    }
    // connect + messages.
    let total = MESSAGES + 1;
    for _ in 0..total {
        rpc::next_event(&mut all, TIMEOUT).await;
    }
    // The group got each of them once, spread over its members: read until both together
    // have `total` (each takes turns, so each has some).
    let (mut seen_a, mut seen_b) = (Vec::new(), Vec::new());
    while seen_a.len() + seen_b.len() < total {
        tokio::select! {
            event = rpc::next_event(&mut a, TIMEOUT) => seen_a.push(event),
            event = rpc::next_event(&mut b, TIMEOUT) => seen_b.push(event),
        }
    }
    assert!(
        !seen_a.is_empty() && !seen_b.is_empty(),
        "both members work"
    );
    let texts: HashSet<String> = seen_a.iter().chain(&seen_b).filter_map(text_of).collect();
    assert_eq!(texts.len(), MESSAGES, "every message once across the group");
    // Nothing more for the group: one more message goes to exactly one member.
    ws.send_text("one more").await;
    let extra = tokio::select! {
        event = rpc::next_event(&mut a, TIMEOUT) => event,
        event = rpc::next_event(&mut b, TIMEOUT) => event,
    };
    assert_eq!(text_of(&extra).as_deref(), Some("one more"));
}

#[tokio::test]
async fn a_consumer_that_stops_reading_is_dropped_with_resource_exhausted() {
    let gateway = TestGateway::start(|config| {
        config.callback.event_feed = true;
        // No receive callback: the messages only feed the consumer.
        config.callback.receive = String::new();
        config.websocket.max_message_rate = 0;
    })
    .await;
    // A 64 KiB window: the stalled consumer's stream fills it with a few hundred events.
    let client = rpc::client(&gateway.api_url(), Protocol::Grpc, None, 65_535).await;
    let mut stalled = rpc::watch(&client, "").await.expect("a consumer");
    let mut ws = WsClient::connect(&gateway.ws_url("key=chatty")).await;
    // The queue (4096) plus what the window and buffers hold, with room to spare.
    for n in 0..12_000 {
        ws.send_text(&format!("{n}")).await;
    }
    let started = tokio::time::Instant::now();
    let err = loop {
        assert!(started.elapsed() < Duration::from_secs(30), "never dropped");
        match stalled.message::<WatchEventsResponse>().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without saying why"),
            Err(err) => break err,
        }
    };
    assert_eq!(err.code, ErrorCode::ResourceExhausted, "{err:?}");
    assert!(
        err.message
            .as_deref()
            .unwrap_or_default()
            .contains("behind"),
        "{err:?}"
    );
    // The session was never slowed, and a new consumer gets what follows (after the rest
    // of the burst, which the node may still be reading).
    let mut fresh = rpc::watch(&client, "").await.expect("a new consumer");
    ws.send_text("after").await;
    loop {
        let event = rpc::next_event(&mut fresh, TIMEOUT).await;
        if text_of(&event).as_deref() == Some("after") {
            break;
        }
    }
}
