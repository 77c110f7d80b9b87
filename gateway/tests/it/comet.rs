//! Sessions over plain HTTP as Durable Streams, on one node: the Comet connect, catch-up,
//! long-poll and SSE reads, client messages, the backend's close, and bad input.

use std::time::Duration;

use oort_common::config::GoDuration;
use oort_e2e::durable_client::{Data, DurableClient};
use oort_e2e::http_stream::{HttpSession, messages};
use oort_e2e::{CallbackKind, TIMEOUT, http_client};
use serde_json::{Value, json};

use crate::api::post_json;
use crate::support::TestGateway;

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Sends `data` to `key`; the session's status.
async fn send(gateway: &TestGateway, key: &str, data: &str) -> String {
    crate::api::status_of(&crate::api::v1_send_one(gateway, key, data).await).to_owned()
}

fn base(gateway: &TestGateway) -> String {
    format!("http://{}", gateway.addr)
}

#[tokio::test]
async fn the_callback_runs_once_and_every_read_mode_sees_the_same_numbers() {
    let gateway = TestGateway::start(|config| {
        config.session.long_poll_timeout = GoDuration::from_secs(5);
    })
    .await;
    let session = HttpSession::connect(&base(&gateway), "key=c1&first=hello").await;
    assert_eq!(session.stream, "/stream/c1");
    gateway
        .backend
        .wait_for(CallbackKind::Establish, "c1", 1, TIMEOUT)
        .await;
    // Catch-up from the start: the connect callback's body is message 1.
    let first = session.get("offset=-1").await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "content-type"), Some("application/json"));
    assert_eq!(header(&first, "cache-control"), Some("private, no-store"));
    assert_eq!(header(&first, "stream-up-to-date"), Some("true"));
    assert_eq!(
        header(&first, "stream-next-offset"),
        Some(session.offset(1).as_str())
    );
    assert_eq!(messages(first).await, [(1, "hello".to_owned())]);
    // A held long-poll gets the next send.
    let poll = {
        let offset = session.offset(1);
        let session = &session;
        async move {
            session
                .get(&format!("offset={offset}&live=long-poll"))
                .await
        }
    };
    let sending = async {
        // The poll is held before the send, or it finds the message at once: either is right.
        tokio::time::sleep(Duration::from_millis(100)).await;
        send(&gateway, "c1", "two").await
    };
    let (poll, status) = tokio::join!(poll, sending);
    assert!(status == "ok" || status == "buffered", "{status}");
    assert_eq!(poll.status(), 200);
    assert!(header(&poll, "stream-cursor").is_some());
    assert_eq!(messages(poll).await, [(2, "two".to_owned())]);
    // `now` is the tail; catch-up there is empty.
    let now = session.get("offset=now").await;
    assert_eq!(
        header(&now, "stream-next-offset"),
        Some(session.offset(2).as_str())
    );
    assert!(messages(now).await.is_empty());
    // SSE: a data event and its control event per batch.
    assert_eq!(send(&gateway, "c1", "three").await, "buffered");
    let sse = session
        .get(&format!("offset={}&live=sse", session.offset(2)))
        .await;
    assert_eq!(header(&sse, "content-type"), Some("text/event-stream"));
    assert_eq!(header(&sse, "x-accel-buffering"), Some("no"));
    let mut sse = sse;
    let mut text = String::new();
    tokio::time::timeout(TIMEOUT, async {
        while !text.contains("event: control") {
            let chunk = sse.chunk().await.unwrap().expect("more events");
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await
    .expect("the first events in time");
    assert!(
        text.starts_with(
            "event: data\ndata: [{\"seq\":3,\"data\":\"three\",\"kind\":\"text\"}]\n\n\
             event: control\ndata: {\"streamNextOffset\":\""
        ),
        "{text}"
    );
    assert!(text.contains(&session.offset(3)), "{text}");
    assert_eq!(
        gateway.backend.of_kind(CallbackKind::Connect).len(),
        1,
        "the connect callback runs once per session, never per read"
    );
}

#[tokio::test]
async fn a_long_poll_times_out_with_204_and_the_headers_the_protocol_requires() {
    let gateway = TestGateway::start(|config| {
        config.session.long_poll_timeout = GoDuration::from_millis(300);
    })
    .await;
    let session = HttpSession::connect(&base(&gateway), "key=lp").await;
    let started = std::time::Instant::now();
    let poll = session
        .get(&format!(
            "offset={}&live=long-poll&cursor=5",
            session.offset(0)
        ))
        .await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(poll.status(), 204);
    assert_eq!(
        header(&poll, "stream-next-offset"),
        Some(session.offset(0).as_str())
    );
    assert_eq!(header(&poll, "stream-up-to-date"), Some("true"));
    let cursor: u64 = header(&poll, "stream-cursor").unwrap().parse().unwrap();
    assert!(cursor > 5, "the cursor moves past the client's");
    assert_eq!(header(&poll, "cache-control"), Some("private, no-store"));
}

#[tokio::test]
async fn a_second_long_poll_answers_the_first_at_once() {
    let gateway = TestGateway::start(|config| {
        config.session.long_poll_timeout = GoDuration::from_secs(20);
    })
    .await;
    let session = HttpSession::connect(&base(&gateway), "key=twice").await;
    let query = format!("offset={}&live=long-poll", session.offset(0));
    let first = session.get(&query);
    let second = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = std::time::Instant::now();
        let second = tokio::spawn({
            let url = format!("{}?{query}", session.url());
            let token = session.token.clone();
            async move {
                http_client()
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap()
            }
        });
        (started, second)
    };
    let (first, (started, second)) = tokio::join!(first, second);
    assert_eq!(
        first.status(),
        409,
        "the older poll is answered at once: it is done"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(send(&gateway, "twice", "for the newer").await, "ok");
    let second = second.await.unwrap();
    assert_eq!(messages(second).await, [(1, "for the newer".to_owned())]);
}

#[tokio::test]
async fn client_messages_reach_the_receive_callback_in_order_and_delete_ends_the_session() {
    let gateway = TestGateway::start(|_| {}).await;
    let session = HttpSession::connect(&base(&gateway), "key=talk").await;
    for n in 0..5 {
        let answer = session.post(&format!("m{n}")).await;
        assert_eq!(answer.status(), 204);
    }
    let received = gateway
        .backend
        .wait_for(CallbackKind::Receive, "talk", 5, TIMEOUT)
        .await;
    let bodies: Vec<String> = received
        .iter()
        .map(|r| String::from_utf8(r.body.to_vec()).unwrap())
        .collect();
    assert_eq!(bodies, ["m0", "m1", "m2", "m3", "m4"]);
    // The callback's refusal is the client's answer.
    let failing = HttpSession::connect(&base(&gateway), "key=receive-fail-1").await;
    let refused = failing.post("x").await;
    assert_eq!(refused.status(), 500, "{:?}", refused.text().await);

    let ended = http_client()
        .delete(session.url())
        .bearer_auth(&session.token)
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 204);
    gateway
        .backend
        .wait_for(CallbackKind::Close, "talk", 1, TIMEOUT)
        .await;
    assert_eq!(session.get("offset=-1").await.status(), 404);
    assert_eq!(send(&gateway, "talk", "late").await, "not_found");
}

#[tokio::test]
async fn the_backends_close_ends_the_stream_after_its_last_word() {
    let gateway = TestGateway::start(|_| {}).await;
    let session = HttpSession::connect(&base(&gateway), "key=bye").await;
    let (status, _) = post_json(
        &gateway.api_url(),
        "/v1/close",
        &json!({"sessions": ["bye"], "data": "last word"}),
    )
    .await;
    assert_eq!(status, 200);
    let last = session
        .get(&format!("offset={}&live=long-poll", session.offset(0)))
        .await;
    assert_eq!(last.status(), 200);
    assert_eq!(header(&last, "stream-closed"), Some("true"));
    assert_eq!(messages(last).await, [(1, "last word".to_owned())]);
    // The reader saw the end: the session is over, and the backend closed it (no callback).
    assert_eq!(session.get("offset=-1").await.status(), 404);
    assert!(
        gateway
            .backend
            .for_session(CallbackKind::Close, "bye")
            .is_empty()
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_never_another_sessions_data() {
    let gateway = TestGateway::start(|config| {
        config.websocket.max_message_size = 1024;
    })
    .await;
    let session = HttpSession::connect(&base(&gateway), "key=mine&first=secret").await;
    let other = HttpSession::connect(&base(&gateway), "key=theirs").await;
    let expect = |response: reqwest::Response, status: u16, says: &'static str| async move {
        assert_eq!(response.status(), status);
        let body: Value =
            serde_json::from_slice(&response.bytes().await.unwrap()).expect("a JSON error");
        let error = body["error"].as_str().unwrap().to_owned();
        assert!(error.contains(says), "{error:?} should say {says:?}");
    };
    expect(session.get("offset=12").await, 400, "malformed offset").await;
    expect(
        session.get("offset=-1&live=forever").await,
        400,
        "live must be",
    )
    .await;
    expect(
        session.get(&format!("offset={}", other.offset(0))).await,
        400,
        "another session",
    )
    .await;
    expect(
        session.get(&format!("offset={}", session.offset(9))).await,
        400,
        "past the session's last message",
    )
    .await;
    // The other session's token cannot read this one.
    let foreign = http_client()
        .get(format!("{}?offset=-1", session.url()))
        .bearer_auth(&other.token)
        .send()
        .await
        .unwrap();
    expect(foreign, 403, "another session").await;
    let forged = http_client()
        .get(format!("{}?offset=-1", session.url()))
        .bearer_auth(format!("{}x", session.token))
        .send()
        .await
        .unwrap();
    expect(forged, 401, "token").await;
    let anonymous = http_client()
        .get(format!("{}?offset=-1", session.url()))
        .send()
        .await
        .unwrap();
    expect(anonymous, 401, "Bearer").await;
    // Reading at 1 acknowledges message 1: it is no longer kept.
    assert_eq!(
        session
            .get(&format!("offset={}", session.offset(1)))
            .await
            .status(),
        200
    );
    expect(
        session.get(&format!("offset={}", session.offset(0))).await,
        410,
        "no longer kept",
    )
    .await;
    let too_big = session.post(&"x".repeat(2000)).await;
    expect(too_big, 413, "at most 1024 bytes").await;
    let put = http_client()
        .put(session.url())
        .bearer_auth(&session.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        put.headers()["allow"].to_str().unwrap(),
        "GET, HEAD, POST, DELETE, OPTIONS"
    );
    expect(put, 405, "allowed methods").await;
}

#[tokio::test]
async fn one_session_is_read_over_websocket_and_http_with_one_token() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut client = DurableClient::connect(&gateway.ws_url("key=both&first=one"))
        .await
        .expect("an oort.v1 session");
    assert_eq!(client.recv().await, (1, Data::Text("one".into())));
    assert_eq!(send(&gateway, "both", "two").await, "ok");
    assert_eq!(client.recv().await, (2, Data::Text("two".into())));
    let position = client.position.clone();
    // The client moves to HTTP with its resume token: from its position, nothing lost.
    let http = HttpSession {
        base: base(&gateway),
        stream: "/stream/both".into(),
        token: position.token.clone(),
        node: String::new(),
    };
    assert_eq!(send(&gateway, "both", "three").await, "ok");
    let read = http.get(&format!("offset={}", http.offset(2))).await;
    assert_eq!(read.status(), 200);
    assert_eq!(messages(read).await, [(3, "three".to_owned())]);
    // ... and back to a WebSocket, resuming after what HTTP delivered.
    assert_eq!(send(&gateway, "both", "four").await, "buffered");
    let mut back = DurableClient::resume(
        &format!("ws://{}/connect", gateway.addr),
        &oort_e2e::durable_client::Position {
            seen: 3,
            ..position
        },
    )
    .await
    .expect("resumed over WebSocket");
    assert_eq!(back.recv().await, (4, Data::Text("four".into())));
}

#[tokio::test]
async fn an_http_session_nobody_reads_ends_after_the_linger() {
    let gateway = TestGateway::start(|config| {
        config.session.linger = GoDuration::from_millis(400);
    })
    .await;
    let session = HttpSession::connect(&base(&gateway), "key=idle").await;
    assert_eq!(session.get("offset=-1").await.status(), 200);
    gateway
        .backend
        .wait_for(CallbackKind::Close, "idle", 1, TIMEOUT)
        .await;
    assert_eq!(session.get("offset=-1").await.status(), 404);
}

#[tokio::test]
async fn an_sse_client_that_stops_reading_is_cut_off_like_a_slow_websocket() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gateway = TestGateway::start(|config| {
        config.queue.slow_consumer_timeout = GoDuration::from_millis(300);
        config.session.sse_duration = GoDuration::from_secs(600);
        config.session.buffer_bytes = 64 << 20;
        config.session.buffer_messages = 100_000;
    })
    .await;
    let session = HttpSession::connect(&base(&gateway), "key=stalled").await;
    let mut socket = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let request = format!(
        "GET {}?offset=-1&live=sse HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        session.stream, session.token
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    // Far more than the socket buffers hold, while the client reads nothing.
    let chunk = "x".repeat(60 << 10);
    for _ in 0..300 {
        send(&gateway, "stalled", &chunk).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    // The server gave up on the response: reading now reaches the end, though the stream
    // would otherwise have lasted ten minutes.
    let mut sink = vec![0; 1 << 20];
    let ended = tokio::time::timeout(TIMEOUT, async {
        loop {
            match socket.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stalled SSE response was cut off");
}

#[tokio::test]
async fn browsers_on_other_origins_get_cors_head_and_etags_work() {
    let gateway = TestGateway::start(|_| {}).await;
    let session = HttpSession::connect(&base(&gateway), "key=cors&first=x").await;
    let preflight = http_client()
        .request(reqwest::Method::OPTIONS, session.url())
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(
        header(&preflight, "access-control-allow-origin"),
        Some("https://app.example")
    );
    assert!(
        header(&preflight, "access-control-allow-headers")
            .unwrap()
            .contains("Authorization")
    );
    assert!(
        header(&preflight, "access-control-allow-methods")
            .unwrap()
            .contains("DELETE")
    );
    let read = http_client()
        .get(format!("{}?offset=-1", session.url()))
        .bearer_auth(&session.token)
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    let exposed = header(&read, "access-control-expose-headers").unwrap();
    for name in [
        "Stream-Next-Offset",
        "Stream-Closed",
        "Stream-Cursor",
        "ETag",
        "Oort-Token",
    ] {
        assert!(exposed.contains(name), "{name} is exposed: {exposed}");
    }
    // The same read again, with its ETag: nothing changed.
    let etag = header(&read, "etag").unwrap().to_owned();
    let again = http_client()
        .get(format!("{}?offset=-1", session.url()))
        .bearer_auth(&session.token)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    // HEAD: the tail, then the end once the backend closed the session.
    let head = http_client()
        .head(session.url())
        .bearer_auth(&session.token)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        header(&head, "stream-next-offset"),
        Some(session.offset(1).as_str())
    );
    assert_eq!(header(&head, "stream-closed"), None);
    let (status, _) = post_json(
        &gateway.api_url(),
        "/v1/close",
        &json!({"sessions": ["cors"]}),
    )
    .await;
    assert_eq!(status, 200);
    let head = http_client()
        .head(session.url())
        .bearer_auth(&session.token)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&head, "stream-closed"), Some("true"));
    let refused = session.post("after the close").await;
    assert_eq!(refused.status(), 409);
}
