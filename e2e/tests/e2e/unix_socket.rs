//! Listening on a unix socket (kuiperbelt's `sock` key and `-sock` flag): the backend API and
//! WebSocket clients both over the socket, and the socket file's life cycle.

use std::path::Path;

use futures_util::{SinkExt, StreamExt};
use oort_e2e::process::{OortProcess, TempConfig};
use oort_e2e::{CallbackKind, TIMEOUT, TestBackend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_tungstenite::tungstenite::Message;

use crate::support::config_for;

/// One HTTP/1.1 request over the unix socket at `path`: returns the status and the body.
async fn unix_http(
    path: &Path,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = UnixStream::connect(path).await.expect("connect the socket");
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut response))
        .await
        .expect("the response within the timeout")
        .expect("read");
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Connects, pushes a message over the socket and reads it back, all through `sock`.
async fn round_trip(sock: &Path, backend: &TestBackend, key: &str) {
    let (status, body) = unix_http(sock, "GET", "/ping", &[], "").await;
    assert_eq!((status, body.as_str()), (200, r#"{"result":"OK"}"#));

    let stream = UnixStream::connect(sock).await.expect("connect the socket");
    let url = format!("ws://localhost/connect?key={key}");
    let (mut ws, response) = tokio::time::timeout(
        TIMEOUT,
        tokio_tungstenite::client_async(url.as_str(), stream),
    )
    .await
    .expect("handshake within the timeout")
    .expect("WebSocket handshake over the unix socket");
    assert_eq!(response.status(), 101);
    backend
        .wait_for(CallbackKind::Establish, key, 1, TIMEOUT)
        .await;

    let session = [("X-Kuiperbelt-Session", key)];
    let (status, body) = unix_http(sock, "POST", "/send", &session, "over the socket").await;
    assert_eq!(status, 200, "{body}");
    let message = tokio::time::timeout(TIMEOUT, ws.next())
        .await
        .expect("a message within the timeout");
    match message {
        Some(Ok(Message::Text(text))) => assert_eq!(text.as_str(), "over the socket"),
        other => panic!("expected the pushed text, got {other:?}"),
    }

    ws.send(Message::text("client says hi"))
        .await
        .expect("send");
    let received = backend
        .wait_for(CallbackKind::Receive, key, 1, TIMEOUT)
        .await;
    assert_eq!(received[0].body, "client says hi");

    ws.close(None).await.expect("close");
    backend.wait_for(CallbackKind::Close, key, 1, TIMEOUT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sock_key_serves_api_and_websockets() {
    let backend = TestBackend::start().await;
    let dir = TempConfig::new("");
    let sock = dir.dir().join("oort.sock");
    // `sock` replaces `port`; a config with `listen` would win over it, so write it by hand.
    let config = config_for(&backend, &format!("sock: {}", sock.display()))
        .replace("listen: 127.0.0.1:0\n", "");
    let config = TempConfig::new(&config);
    let oort = OortProcess::spawn(&["--config", config.path()], &[]);
    let logged = oort.listen_text("client", TIMEOUT).await;
    assert_eq!(logged, format!("unix:{}", sock.display()));
    round_trip(&sock, &backend, "unix-1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sock_flag_replaces_a_stale_socket_and_removes_it_on_exit() {
    let backend = TestBackend::start().await;
    let config = TempConfig::new(&config_for(&backend, "").replace("listen: 127.0.0.1:0\n", ""));
    let sock = config.dir().join("flag.sock");
    // A socket file left behind by a process that died: nobody listens on it.
    drop(std::os::unix::net::UnixListener::bind(&sock).expect("bind a stale socket"));
    assert!(sock.exists());
    let sock_text = sock.to_str().unwrap();
    let mut oort = OortProcess::spawn(&["-config", config.path(), "-sock", sock_text], &[]);
    let logged = oort.listen_text("client", TIMEOUT).await;
    assert_eq!(logged, format!("unix:{sock_text}"));
    round_trip(&sock, &backend, "unix-2").await;

    oort.signal(15);
    let status = oort.wait_exit(TIMEOUT).await;
    assert!(status.success(), "exit status {status}");
    assert!(!sock.exists(), "the socket file outlived the process");
}
