//! What a client may cost before the connect callback accepts it: head limits and timeouts per
//! listener, the handshake memory budget, and per-address limits (with a trusted proxy's
//! header). The process-level attacks with memory figures are in e2e/tests/hostile_clients.

use std::time::{Duration, Instant};

use oort_common::config::GoDuration;
use oort_e2e::backend::CallbackKind;
use oort_e2e::{TIMEOUT, eventually};
use tokio::io::AsyncWriteExt;

use crate::api::{metric, scrape, wait_for_metric};
use crate::raw::{self, handshake_request, http, http_from, read_until_closed};
use crate::support::TestGateway;

/// A `/send` naming `count` sessions, one header line each, as kuiperbelt's backends send it.
fn bulk_send(addr: std::net::SocketAddr, keys: impl Iterator<Item = String>) -> Vec<u8> {
    let mut request = format!("POST /send HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for key in keys {
        request.push_str(&format!("X-Kuiperbelt-Session: {key}\r\n"));
    }
    request.push_str("Content-Length: 5\r\n\r\nhello");
    request.into_bytes()
}

#[tokio::test]
async fn a_connect_head_over_the_client_limit_gets_431_while_a_bulk_send_keeps_its_large_one() {
    // No api_listen: kuiperbelt's setup, where /send shares the public port.
    let gateway = TestGateway::start(|_| {}).await;
    let mut target = gateway.connect("target").await;

    let padding = format!("X-Padding: {}", "p".repeat(20 << 10));
    let request = handshake_request(gateway.addr, "/connect?key=big", &[&padding]);
    let response = http(gateway.addr, request.as_bytes()).await;
    assert_eq!(response.status, 431, "{}", response.text());

    // 5,000 session header lines are about 160 KiB of head: ten times the client limit.
    let keys = std::iter::once("target".to_owned()).chain((0..5_000).map(|i| format!("k{i:05}")));
    let response = http(gateway.addr, &bulk_send(gateway.addr, keys)).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(target.recv_text().await, "hello");

    let text = scrape(&gateway.api_url()).await;
    assert_eq!(
        metric(&text, r#"oort_refused_total{reason="head_too_large"}"#),
        Some(1.0),
        "{text}"
    );
    assert!(
        gateway
            .backend
            .for_session(CallbackKind::Connect, "big")
            .is_empty(),
        "the backend never saw the oversized connect"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn with_its_own_listener_the_api_takes_large_heads_and_the_client_port_does_not() {
    let gateway = TestGateway::start(|config| config.api_listen = "127.0.0.1:0".into()).await;
    let mut target = gateway.connect("target").await;
    let api = gateway.api_addr.unwrap();
    let keys = std::iter::once("target".to_owned()).chain((0..5_000).map(|i| format!("k{i:05}")));
    let response = http(api, &bulk_send(api, keys)).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(target.recv_text().await, "hello");

    // Even a path that is not the connect path gets the client limit here.
    let padding = format!("X-Padding: {}", "p".repeat(20 << 10));
    let request =
        format!("GET /livez HTTP/1.1\r\nHost: x\r\n{padding}\r\nConnection: close\r\n\r\n");
    assert_eq!(http(gateway.addr, request.as_bytes()).await.status, 431);
    gateway.stop().await;
}

#[tokio::test]
async fn a_head_that_does_not_arrive_in_time_is_cut_off_and_counted() {
    let gateway = TestGateway::start(|config| {
        config.limits.client_head_timeout = GoDuration::from_millis(500);
    })
    .await;
    // Slowloris: the request line and one header, then nothing.
    let mut slow = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    slow.write_all(b"GET /connect?key=slow HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // A silent connection: nothing at all.
    let mut silent = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let started = Instant::now();
    let answered = read_until_closed(&mut slow, TIMEOUT).await;
    assert!(answered.is_empty(), "no answer, the connection is closed");
    read_until_closed(&mut silent, TIMEOUT).await;
    assert!(started.elapsed() >= Duration::from_millis(400));
    wait_for_metric(
        &gateway.api_url(),
        r#"oort_refused_total{reason="head_timeout"}"#,
        2.0,
    )
    .await;
    assert!(gateway.backend.of_kind(CallbackKind::Connect).is_empty());
    // Others were served meanwhile and after.
    let _client = gateway.connect("after").await;
    gateway.stop().await;
}

/// Room for exactly two handshakes.
fn two_handshakes(config: &mut oort_common::config::Config) {
    config.limits.client_max_head = 8 << 10;
    config.limits.max_connect_body = 1024;
    config.limits.handshake_memory = 2 * config.limits.handshake_reservation() + 1024;
    config.limits.client_head_timeout = GoDuration::from_secs(2);
}

#[tokio::test]
async fn a_spent_handshake_budget_makes_new_connects_wait_for_room() {
    let gateway = TestGateway::start(two_handshakes).await;
    let slow = |key: &'static str| {
        let url = gateway.ws_url(&format!("key={key}&delay_ms=1000"));
        tokio::spawn(async move { oort_e2e::WsClient::connect(&url).await })
    };
    let (first, second) = (slow("first"), slow("second"));
    gateway
        .backend
        .wait_for_kind(CallbackKind::Connect, 2, TIMEOUT)
        .await;
    // The budget is spent by the two at the backend; this one waits until one of them is done.
    let request = handshake_request(gateway.addr, "/connect?key=third", &[]);
    let third = http(gateway.addr, request.as_bytes()).await;
    assert_eq!(third.status, 101, "{}", third.text());
    first.await.unwrap();
    second.await.unwrap();
    gateway.stop().await;
}

#[tokio::test]
async fn a_budget_spent_for_longer_than_the_head_timeout_refuses_with_503_and_loses_no_session() {
    let gateway = TestGateway::start(two_handshakes).await;
    let slow = |key: &'static str| {
        let url = gateway.ws_url(&format!("key={key}&delay_ms=3500"));
        tokio::spawn(async move { oort_e2e::WsClient::connect(&url).await })
    };
    let (first, second) = (slow("first"), slow("second"));
    gateway
        .backend
        .wait_for_kind(CallbackKind::Connect, 2, TIMEOUT)
        .await;
    let request = handshake_request(gateway.addr, "/connect?key=third", &[]);
    let third = http(gateway.addr, request.as_bytes()).await;
    assert_eq!(third.status, 503, "{}", third.text());
    assert_eq!(third.header("retry-after"), Some("1"));
    assert!(
        third
            .text()
            .contains("too many connections are being set up")
    );
    // The two that held the budget were not hurt by it.
    first.await.unwrap();
    second.await.unwrap();
    let text = scrape(&gateway.api_url()).await;
    assert_eq!(
        metric(&text, r#"oort_refused_total{reason="handshake_memory"}"#),
        Some(1.0)
    );
    assert_eq!(metric(&text, "oort_handshake_memory_bytes"), Some(0.0));
    gateway.stop().await;
}

#[tokio::test]
async fn one_address_over_its_connection_limit_gets_429_and_other_addresses_are_served() {
    let gateway = TestGateway::start(|config| config.limits.address_connections = 2).await;
    let connect = |from: &'static str, key: &str| {
        let request = handshake_request(gateway.addr, &format!("/connect?key={key}"), &[]);
        async move { http_from(from, gateway.addr, request.as_bytes()).await }
    };
    let one = connect("127.0.0.2", "one").await;
    let two = connect("127.0.0.2", "two").await;
    assert_eq!((one.status, two.status), (101, 101));
    let three = connect("127.0.0.2", "three").await;
    assert_eq!(three.status, 429, "{}", three.text());
    assert_eq!(three.header("retry-after"), Some("5"));
    assert!(
        three
            .text()
            .contains("too many connections from your address")
    );
    assert_eq!(connect("127.0.0.3", "other").await.status, 101);
    assert!(
        gateway
            .backend
            .for_session(CallbackKind::Connect, "three")
            .is_empty(),
        "the backend was not asked"
    );
    // A connection that ends gives its place back (just after its close callback is answered).
    drop(one);
    let _four = eventually(TIMEOUT, "the address's place given back", || async {
        let four = connect("127.0.0.2", "four").await;
        (four.status == 101).then_some(four)
    })
    .await;
    let text = scrape(&gateway.api_url()).await;
    assert!(
        metric(&text, r#"oort_refused_total{reason="address_connections"}"#) >= Some(1.0),
        "{text}"
    );
    drop(two);
    gateway.stop().await;
}

#[tokio::test]
async fn one_address_connecting_faster_than_its_rate_gets_429_with_retry_after() {
    let gateway = TestGateway::start(|config| {
        config.limits.address_connect_rate = 1;
        config.limits.address_connect_burst = 3;
    })
    .await;
    let request = handshake_request(gateway.addr, "/connect?key=loop", &[]);
    for _ in 0..3 {
        let response = http_from("127.0.0.4", gateway.addr, request.as_bytes()).await;
        assert_eq!(response.status, 101);
    }
    let refused = http_from("127.0.0.4", gateway.addr, request.as_bytes()).await;
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(refused.text().contains("too many connection attempts"));
    assert_eq!(
        http_from("127.0.0.5", gateway.addr, request.as_bytes())
            .await
            .status,
        101,
        "another address has its own bucket"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_address_is_limited_on_its_own() {
    let gateway = TestGateway::start(|config| {
        config.limits.address_connections = 1;
        config.client_address.header = "X-Forwarded-For".into();
        config.client_address.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let through = |from: &'static str, client: &str, key: &str| {
        let forwarded = format!("X-Forwarded-For: 198.51.100.77, {client}");
        let request =
            handshake_request(gateway.addr, &format!("/connect?key={key}"), &[&forwarded]);
        async move { http_from(from, gateway.addr, request.as_bytes()).await }
    };
    // The proxy (127.0.0.1) itself is not limited; the clients it names are.
    let a = through("127.0.0.1", "203.0.113.1", "a").await;
    assert_eq!(a.status, 101);
    let again = through("127.0.0.1", "203.0.113.1", "a2").await;
    assert_eq!(again.status, 429, "{}", again.text());
    assert_eq!(through("127.0.0.1", "203.0.113.2", "b").await.status, 101);
    // Anyone else's header is ignored: 127.0.0.6 is limited as itself, whatever it claims.
    assert_eq!(through("127.0.0.6", "203.0.113.3", "c").await.status, 101);
    assert_eq!(through("127.0.0.6", "203.0.113.4", "d").await.status, 429);
    drop(a);
    gateway.stop().await;
}

#[tokio::test]
async fn backend_connections_on_a_shared_listener_wait_for_a_turn_and_clients_do_not() {
    let gateway = TestGateway::start(|config| {
        config.limits.shared_api_connections = 1;
        config.limits.api_head_timeout = GoDuration::from_secs(1);
    })
    .await;
    // A backend connection busy with a request holds the one turn: its body is still coming.
    let mut busy = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    busy.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(raw::read_response(&mut busy).await.status, 200);
    busy.write_all(b"POST /send HTTP/1.1\r\nHost: x\r\nX-Kuiperbelt-Session: s\r\nContent-Length: 100\r\n\r\nabc")
        .await
        .unwrap();
    let request = b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let second = http(gateway.addr, request).await;
    assert_eq!(second.status, 503, "{}", second.text());
    assert!(second.text().contains("too many backend API connections"));
    // Clients connect as ever.
    let _client = gateway.connect("client").await;
    drop(busy);
    gateway.stop().await;
}

#[tokio::test]
async fn a_backend_sharing_the_listener_is_not_limited_per_address_and_its_clients_are() {
    let gateway = TestGateway::start(|config| {
        config.limits.address_connections = 1;
        config.limits.address_connect_rate = 1;
        config.limits.address_connect_burst = 1;
    })
    .await;
    let mut client = gateway.connect("target").await;
    // A backend that opens a new connection for every /send, from the same address, while a
    // client of that address holds its one place.
    for index in 0..5 {
        let response = crate::kb_support::send(&gateway, &["target"], format!("m{index}")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(client.recv_text().await, format!("m{index}"));
    }
    let request = handshake_request(gateway.addr, "/connect?key=second", &[]);
    let second = http(gateway.addr, request.as_bytes()).await;
    assert_eq!(second.status, 429, "{}", second.text());
    gateway.stop().await;
}
