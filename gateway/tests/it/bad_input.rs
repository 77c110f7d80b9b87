//! Bad input from clients (malformed handshakes, non-HTTP bytes, garbage frames, invalid
//! UTF-8): each gets a clear answer and the node keeps serving everyone else. Subprotocol
//! negotiation is here too, as it is handshake detail. A misbehaving backend is in
//! `bad_backend`.

use oort_e2e::backend::CallbackKind;
use oort_e2e::{TIMEOUT, WsClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::api::header;
use crate::kb_support::send;
use crate::raw::{self, client_frame, handshake_request, read_close};
use crate::support::TestGateway;

/// Proves the node still serves: a new client connects and receives a send.
async fn still_serving(gateway: &TestGateway, key: &str) {
    let mut client = gateway.connect(key).await;
    let response = send(gateway, &[key], "still serving").await;
    assert_eq!(response.status(), 200);
    assert_eq!(client.recv_text().await, "still serving");
}

#[tokio::test]
async fn malformed_handshakes_are_refused_before_the_backend_is_asked() {
    let gateway = TestGateway::start(|_| {}).await;
    let addr = gateway.addr;
    let valid = handshake_request(addr, "/connect?key=x", &[]);
    let cases = [
        (
            "wrong method",
            valid.replacen("GET ", "POST ", 1).replacen(
                "\r\n\r\n",
                "\r\nContent-Length: 0\r\n\r\n",
                1,
            ),
            405,
            "GET",
        ),
        (
            "missing Sec-WebSocket-Key",
            valid.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
            400,
            "Sec-WebSocket-Key",
        ),
        (
            "unsupported version",
            valid.replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
            400,
            "Sec-WebSocket-Version",
        ),
        (
            "no version",
            valid.replace("Sec-WebSocket-Version: 13\r\n", ""),
            400,
            "Sec-WebSocket-Version",
        ),
        (
            "Connection without upgrade",
            valid.replace("Connection: Upgrade", "Connection: keep-alive"),
            400,
            "Connection",
        ),
    ];
    for (what, request, status, reason) in cases {
        let response = raw::http(addr, request.as_bytes()).await;
        assert_eq!(response.status, status, "{what}: {}", response.text());
        assert!(
            response.text().contains(reason),
            "{what}: {}",
            response.text()
        );
        assert_eq!(
            response.header("sec-websocket-version"),
            Some("13"),
            "{what}"
        );
    }
    assert!(
        gateway.backend.of_kind(CallbackKind::Connect).is_empty(),
        "the backend was never asked"
    );
    still_serving(&gateway, "after-handshakes").await;
    gateway.stop().await;
}

#[tokio::test]
async fn non_http_bytes_on_the_port_get_400_and_others_are_unaffected() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut alice = gateway.connect("alice").await;
    let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
    stream
        .write_all(&[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ])
        .await
        .unwrap();
    stream.write_all(b"\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes in time")
        .ok();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer:?}"
    );
    assert_eq!(gateway.backend.of_kind(CallbackKind::Connect).len(), 1);
    let response = send(&gateway, &["alice"], "unaffected").await;
    assert_eq!(response.status(), 200);
    assert_eq!(alice.recv_text().await, "unaffected");
    gateway.stop().await;
}

#[tokio::test]
async fn garbage_on_an_upgraded_socket_closes_it_with_1002_and_others_carry_on() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut bystander = gateway.connect("bystander").await;
    let mut client = raw::upgraded(gateway.addr, "garbage").await;
    gateway
        .backend
        .wait_for(CallbackKind::Establish, "garbage", 1, TIMEOUT)
        .await;
    client.write(&raw::garbage()).await;
    let (code, _) = read_close(&mut client.stream)
        .await
        .expect("a close frame before the connection ends");
    assert_eq!(code, 1002);
    raw::wait_for_eof(&mut client.stream).await;
    gateway
        .backend
        .wait_for(CallbackKind::Close, "garbage", 1, TIMEOUT)
        .await;
    assert!(
        gateway.backend.of_kind(CallbackKind::Receive).is_empty(),
        "no garbage reached the backend"
    );

    let response = send(&gateway, &["bystander"], "unaffected").await;
    assert_eq!(response.status(), 200);
    assert_eq!(bystander.recv_text().await, "unaffected");
    still_serving(&gateway, "newcomer").await;
    gateway.stop().await;
}

#[tokio::test]
async fn an_unmasked_client_frame_is_a_protocol_error() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut client = raw::upgraded(gateway.addr, "unmasked").await;
    // A well-formed text frame, except that clients must mask.
    client.write(&[0x81, 0x02, b'h', b'i']).await;
    assert_eq!(
        read_close(&mut client.stream).await.map(|c| c.0),
        Some(1002)
    );
    gateway
        .backend
        .wait_for(CallbackKind::Close, "unmasked", 1, TIMEOUT)
        .await;
    assert!(gateway.backend.of_kind(CallbackKind::Receive).is_empty());
    gateway.stop().await;
}

#[tokio::test]
async fn invalid_utf8_in_a_text_message_closes_with_1007() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut client = raw::upgraded(gateway.addr, "utf8").await;
    // Valid text first, to show the same connection was fine until the bad frame.
    client
        .write(&client_frame(0x1, "ok é".as_bytes(), true))
        .await;
    gateway
        .backend
        .wait_for(CallbackKind::Receive, "utf8", 1, TIMEOUT)
        .await;
    client
        .write(&client_frame(0x1, &[b'a', 0xc3, 0x28], true))
        .await;
    let (code, reason) = read_close(&mut client.stream).await.expect("a close frame");
    assert_eq!(code, 1007);
    assert!(reason.contains("UTF-8"), "{reason}");
    gateway
        .backend
        .wait_for(CallbackKind::Close, "utf8", 1, TIMEOUT)
        .await;
    assert_eq!(
        gateway
            .backend
            .for_session(CallbackKind::Receive, "utf8")
            .len(),
        1,
        "the invalid message was not forwarded"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn invalid_utf8_split_across_fragments_closes_with_1007() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut client = raw::upgraded(gateway.addr, "frag").await;
    // "é" is C3 A9: the first fragment ends mid-character (fine so far), the second continues
    // it with a byte that is not a continuation byte.
    client.write(&client_frame(0x1, &[b'a', 0xc3], false)).await;
    client.write(&client_frame(0x0, &[0x28], true)).await;
    assert_eq!(
        read_close(&mut client.stream).await.map(|c| c.0),
        Some(1007)
    );
    gateway.stop().await;
}

#[tokio::test]
async fn subprotocol_chosen_by_the_backend_is_selected_when_the_client_offered_it() {
    let gateway = TestGateway::start(|_| {}).await;
    let (_client, response) = WsClient::connect_with(
        &gateway.ws_url("key=proto&protocol=b"),
        &[("Sec-WebSocket-Protocol", "a, b")],
    )
    .await
    .expect("connect");
    assert_eq!(
        header(response.headers(), "sec-websocket-protocol"),
        Some("b")
    );
    let connect = gateway.backend.of_kind(CallbackKind::Connect);
    assert_eq!(
        connect[0].header("x-oort-websocket-protocols"),
        Some("a, b")
    );
    assert_eq!(connect[0].header("sec-websocket-protocol"), None);
    gateway.stop().await;
}

#[tokio::test]
async fn subprotocol_the_client_did_not_offer_is_not_selected() {
    let gateway = TestGateway::start(|_| {}).await;
    for (key, offer) in [("not-offered", Some("a, b")), ("none-offered", None)] {
        let extra: Vec<String> = offer
            .map(|o| format!("Sec-WebSocket-Protocol: {o}"))
            .into_iter()
            .collect();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let client = raw::ws_connect(
            gateway.addr,
            &format!("/connect?key={key}&protocol=c"),
            &extra,
            None,
        )
        .await;
        assert_eq!(client.response.status, 101, "{key}");
        assert_eq!(
            client.response.header("sec-websocket-protocol"),
            None,
            "{key}"
        );
    }
    // And a backend that names none selects none.
    let client = raw::ws_connect(
        gateway.addr,
        "/connect?key=backend-silent",
        &["Sec-WebSocket-Protocol: a"],
        None,
    )
    .await;
    assert_eq!(client.response.status, 101);
    assert_eq!(client.response.header("sec-websocket-protocol"), None);
    gateway.stop().await;
}
