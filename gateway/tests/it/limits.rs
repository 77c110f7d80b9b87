//! Limits with clear answers: max connections (503 before the backend is asked), max client
//! message size (close 1009) and max `/send` body (413).

use oort_e2e::backend::CallbackKind;
use oort_e2e::{TIMEOUT, WsClient, eventually, http_client};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::api::{json_of, json_refusal, metric, refused, scrape};
use crate::kb_support::send;
use crate::raw;
use crate::support::TestGateway;

#[tokio::test]
async fn max_connections_refuses_the_next_connect_with_503_without_asking_the_backend() {
    let gateway = TestGateway::start(|config| config.limits.max_connections = 2).await;
    let _one = gateway.connect("one").await;
    let _two = gateway.connect("two").await;

    let (status, _, body) = refused(&gateway.ws_url("key=three")).await;
    assert_eq!(status, 503);
    assert!(body.contains("too many connections"), "{body:?}");
    // A JSON-accepting client gets the reason as JSON.
    let (status, body) = json_refusal(&gateway, "key=four").await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], 503);
    assert_eq!(body["error"], "too many connections");
    assert_eq!(body["code"], "overloaded");

    let connects = gateway.backend.of_kind(CallbackKind::Connect);
    assert_eq!(
        connects.len(),
        2,
        "the backend was only asked for one and two"
    );
    let text = scrape(&gateway.api_url()).await;
    assert_eq!(
        metric(&text, r#"oort_errors_total{kind="connect_rejected"}"#),
        Some(2.0),
        "{text}"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn max_connections_frees_a_slot_when_a_client_leaves() {
    let gateway = TestGateway::start(|config| config.limits.max_connections = 1).await;
    let first = gateway.connect("first").await;
    assert!(
        WsClient::connect_with(&gateway.ws_url("key=second"), &[])
            .await
            .is_err()
    );
    first.close(1000).await;
    gateway
        .backend
        .wait_for(CallbackKind::Close, "first", 1, TIMEOUT)
        .await;
    // The slot is released just after the close callback is answered: retry until it is.
    let _second = eventually(TIMEOUT, "a free connection slot", || async {
        WsClient::connect_with(&gateway.ws_url("key=second"), &[])
            .await
            .ok()
            .map(|(client, _)| client)
    })
    .await;
    gateway
        .backend
        .wait_for(CallbackKind::Establish, "second", 1, TIMEOUT)
        .await;
    gateway.stop().await;
}

#[tokio::test]
async fn max_message_size_closes_a_larger_client_message_with_1009() {
    let gateway = TestGateway::start(|config| config.websocket.max_message_size = 1024).await;
    let mut client = gateway.connect("big").await;

    // Exactly at the limit is fine.
    client.send_text(&"a".repeat(1024)).await;
    let received = gateway
        .backend
        .wait_for(CallbackKind::Receive, "big", 1, TIMEOUT)
        .await;
    assert_eq!(received[0].body.len(), 1024);

    client.send(Message::binary(vec![7u8; 1025])).await;
    let frame = client.closed().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1009);
    gateway
        .backend
        .wait_for(CallbackKind::Close, "big", 1, TIMEOUT)
        .await;
    assert_eq!(
        gateway
            .backend
            .for_session(CallbackKind::Receive, "big")
            .len(),
        1,
        "the oversized message never reached the backend"
    );
    let text = scrape(&gateway.api_url()).await;
    assert_eq!(
        metric(
            &text,
            r#"oort_session_closes_total{cause="message_too_big"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, r#"oort_errors_total{kind="message_too_big"}"#),
        Some(1.0)
    );
    gateway.stop().await;
}

#[tokio::test]
async fn max_message_size_counts_the_whole_fragmented_message() {
    let gateway = TestGateway::start(|config| config.websocket.max_message_size = 1024).await;
    let mut client = gateway.connect("fragments").await;
    // Three 400-byte fragments: each frame is small, the message is not.
    let text = |fin| Frame::message(vec![b'x'; 400], OpCode::Data(Data::Text), fin);
    let more = |fin| Frame::message(vec![b'x'; 400], OpCode::Data(Data::Continue), fin);
    client.send(Message::Frame(text(false))).await;
    client.send(Message::Frame(more(false))).await;
    client.send(Message::Frame(more(true))).await;
    let frame = client.closed().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1009);
    gateway
        .backend
        .wait_for(CallbackKind::Close, "fragments", 1, TIMEOUT)
        .await;
    assert!(
        gateway.backend.of_kind(CallbackKind::Receive).is_empty(),
        "nothing was forwarded"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn max_send_body_answers_413_on_send_and_v1() {
    let gateway = TestGateway::start(|config| config.limits.max_send_body = 1024).await;
    let mut client = gateway.connect("target").await;
    let base = gateway.api_url();

    let response = send(&gateway, &["target"], "x".repeat(4096)).await;
    assert_eq!(response.status(), 413);
    let body = json_of(response).await;
    assert_eq!(body["result"], "NG");
    assert!(body.to_string().contains("1024"), "{body}");

    let big = json!({"sessions": ["target"], "data": "x".repeat(4096)}).to_string();
    for path in ["/v1/send", "/v1/close"] {
        let response = http_client()
            .post(format!("{base}{path}"))
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 413, "{path}");
        let body = json_of(response).await;
        let error = body["error"].as_str().unwrap();
        assert!(
            error.contains("1024") && error.contains("limits.max_send_body"),
            "{error}"
        );
        assert_eq!(body["code"], "body_too_large", "{path}");
    }
    let batch = json!({"messages": [{"sessions": ["target"], "data": "x".repeat(4096)}]});
    let response = http_client()
        .post(format!("{base}/v1/send/batch"))
        .body(batch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    // A body of exactly the limit is accepted.
    let response = send(&gateway, &["target"], "y".repeat(1024)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(client.recv_text().await, "y".repeat(1024));
    let text = scrape(&base).await;
    assert_eq!(
        metric(&text, r#"oort_errors_total{kind="body_too_large"}"#),
        Some(4.0),
        "{text}"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn max_send_body_refuses_a_chunked_body_that_grows_past_the_limit() {
    // No Content-Length: the limit must hold while the body streams in.
    let gateway = TestGateway::start(|config| config.limits.max_send_body = 1024).await;
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let chunk = "z".repeat(600);
    let request = format!(
        "POST /v1/send HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         {len:x}\r\n{chunk}\r\n{len:x}\r\n{chunk}\r\n0\r\n\r\n",
        len = chunk.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let response = raw::read_response(&mut stream).await;
    assert_eq!(response.status, 413);
    assert!(response.text().contains("1024"), "{}", response.text());
    gateway.stop().await;
}

/// A body over the limit on a kept-alive HTTP/1.1 connection: the answer says
/// `Connection: close` (the connection cannot carry another request after an unread body) and
/// arrives whole although the client wrote the body to the end: what was left is read and
/// dropped, not answered with a reset.
#[tokio::test]
async fn an_oversized_body_is_answered_with_connection_close_after_the_whole_body_is_sent() {
    let gateway = TestGateway::start(|config| config.limits.max_send_body = 1024).await;
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let body = format!(r#"{{"sessions":["x"],"data":"{}"}}"#, "z".repeat(300_000));
    let head = format!(
        "POST /v1/send HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let response = raw::read_response(&mut stream).await;
    assert_eq!(response.status, 413, "{}", response.text());
    assert_eq!(response.header("connection"), Some("close"));
    assert!(
        response.text().contains("limits.max_send_body"),
        "{}",
        response.text()
    );
    gateway.stop().await;
}
