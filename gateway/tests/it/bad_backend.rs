//! A backend that misbehaves: too slow for `callback.timeout`, answering garbage, closing
//! without an answer, stalling inside its body. Each connect gets a 502 with a reason, and other
//! clients are not held up.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use oort_common::config::GoDuration;
use oort_e2e::TIMEOUT;
use oort_e2e::backend::CallbackKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::api::{json_refusal, refused};
use crate::support::TestGateway;

#[tokio::test]
async fn a_backend_slower_than_callback_timeout_gets_502_and_others_connect_meanwhile() {
    let gateway = TestGateway::start(|config| {
        config.callback.timeout = GoDuration::from_millis(500);
    })
    .await;
    let url = gateway.ws_url("key=slow&delay_ms=30000");
    let started = Instant::now();
    let slow = tokio::spawn(async move {
        let outcome = refused(&url).await;
        (outcome, started.elapsed())
    });
    // While that connect waits for the backend, another client gets through.
    gateway
        .backend
        .wait_for_kind(CallbackKind::Connect, 1, TIMEOUT)
        .await;
    let _fast = gateway.connect("fast").await;
    assert!(
        !slow.is_finished(),
        "the fast client did not wait for the slow one"
    );

    let ((status, _, body), elapsed) = slow.await.unwrap();
    assert_eq!(status, 502);
    // The timeout ended it (the body says so): not before it expired, and long before the
    // backend's answer at 30 s (the client's own 10 s timeout would fail first otherwise).
    assert!(body.contains("timed out"), "{body:?}");
    assert!(
        elapsed >= Duration::from_millis(500),
        "answered after {elapsed:?}"
    );
    assert!(
        gateway.backend.of_kind(CallbackKind::Establish).len() == 1,
        "only the fast client was established"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn a_callback_timeout_is_reported_as_json_to_a_json_client() {
    let gateway = TestGateway::start(|config| {
        config.callback.timeout = GoDuration::from_millis(300);
    })
    .await;
    let (status, body) = json_refusal(&gateway, "key=slow&delay_ms=2000").await;
    assert_eq!(status, 502);
    assert_eq!(body["status"], 502);
    assert!(
        body["error"].as_str().unwrap().contains("timed out"),
        "{body}"
    );
    gateway.stop().await;
}

/// A "backend" that answers every request with `reply` and then either closes or keeps the
/// connection open without another byte.
async fn raw_backend(reply: &'static [u8], hang: bool) -> SocketAddr {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(reply).await;
                if hang {
                    // Hold the connection until the gateway gives up on it.
                    let _ = stream.read(&mut buf).await;
                }
            });
        }
    });
    addr
}

/// Connects through a gateway whose connect callback is a [`raw_backend`] answering `reply`
/// (500 ms `callback.timeout`), asserts a 502 whose body contains `reason`, and returns how long
/// the refusal took.
async fn assert_502_from_raw_backend(reply: &'static [u8], hang: bool, reason: &str) -> Duration {
    let addr = raw_backend(reply, hang).await;
    let gateway = TestGateway::start(|config| {
        config.callback.connect = format!("http://{addr}/connect");
        config.callback.timeout = GoDuration::from_millis(500);
    })
    .await;
    let started = Instant::now();
    let (status, _, body) = refused(&gateway.ws_url("key=x")).await;
    let elapsed = started.elapsed();
    assert_eq!(status, 502);
    assert!(body.contains(reason), "{body:?}");
    gateway.stop().await;
    elapsed
}

#[tokio::test]
async fn a_backend_answering_garbage_gets_502() {
    let reply = b"\x00\x01garbage that is not HTTP\r\n\r\n";
    assert_502_from_raw_backend(reply, false, "connect callback failed").await;
}

#[tokio::test]
async fn a_backend_closing_without_an_answer_gets_502() {
    assert_502_from_raw_backend(b"", false, "connect callback failed").await;
}

#[tokio::test]
async fn a_backend_stalling_inside_its_answer_body_gets_502() {
    let reply = b"HTTP/1.1 200 OK\r\nX-Kuiperbelt-Session: k\r\nContent-Length: 100\r\n\r\npartial";
    // The backend never finishes its body: only the timeout can end the wait, and the answer
    // says it did.
    let elapsed = assert_502_from_raw_backend(reply, true, "timed out").await;
    assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
}
