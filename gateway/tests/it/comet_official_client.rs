//! The official Durable Streams client (`@durable-streams/client` 0.2.7 from npm, which no one
//! here wrote) reads an Oort session unchanged, in all three of its modes: catch-up, long-poll
//! and SSE, with the session's token as its `Authorization` header. Needs Node.js and
//! `npm ci` in e2e/durable-streams (scripts/test-prerequisites does both).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use oort_common::config::GoDuration;
use oort_e2e::TIMEOUT;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

use crate::api::post_json;
use crate::support::TestGateway;
use oort_e2e::http_stream::HttpSession;

fn client_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../e2e/durable-streams")
}

/// `node read.mjs` reading the session in `mode`.
fn reader(session: &HttpSession, mode: &str) -> (Child, Lines<BufReader<ChildStdout>>) {
    let dir = client_dir();
    assert!(
        dir.join("node_modules/@durable-streams/client").exists(),
        "the official client is missing: (cd e2e/durable-streams && npm ci)"
    );
    let mut child = tokio::process::Command::new("node")
        .arg(dir.join("read.mjs"))
        .args([&session.url(), &session.token, mode])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node (apt-get install -y nodejs npm)");
    let stdout = child.stdout.take().expect("piped stdout");
    (child, BufReader::new(stdout).lines())
}

/// The next line the reader prints.
async fn line(lines: &mut Lines<BufReader<ChildStdout>>) -> String {
    tokio::time::timeout(TIMEOUT, lines.next_line())
        .await
        .expect("the official client printed in time")
        .expect("read its output")
        .expect("the official client ended early (see its stderr)")
}

/// Reads `count` messages; their `(seq, data)`.
async fn items(lines: &mut Lines<BufReader<ChildStdout>>, count: usize) -> Vec<(u64, String)> {
    let mut items = Vec::new();
    while items.len() < count {
        let line = line(lines).await;
        let item: Value = serde_json::from_str(
            line.strip_prefix("item ")
                .unwrap_or_else(|| panic!("expected an item, got {line:?}")),
        )
        .unwrap();
        assert_eq!(item["kind"], "text");
        items.push((
            item["seq"].as_u64().unwrap(),
            item["data"].as_str().unwrap().to_owned(),
        ));
    }
    items
}

async fn send(gateway: &TestGateway, key: &str, data: &str) {
    crate::api::v1_send_one(gateway, key, data).await;
}

fn numbered(range: std::ops::RangeInclusive<u64>) -> Vec<(u64, String)> {
    range.map(|n| (n, format!("m{n}"))).collect()
}

/// Live modes: what was there, then what is sent while it reads, then the backend's close,
/// after which the client stops by itself.
async fn reads_live(mode: &str) {
    let gateway = TestGateway::start(|config| {
        config.session.long_poll_timeout = GoDuration::from_secs(2);
    })
    .await;
    let key = format!("official-{mode}");
    let session = HttpSession::connect(
        &format!("http://{}", gateway.addr),
        &format!("key={key}&first=m1"),
    )
    .await;
    send(&gateway, &key, "m2").await;
    let (mut child, mut lines) = reader(&session, mode);
    assert_eq!(items(&mut lines, 2).await, numbered(1..=2));
    // Sent while the client is live: across more than one long-poll timeout.
    send(&gateway, &key, "m3").await;
    assert_eq!(items(&mut lines, 1).await, numbered(3..=3));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    send(&gateway, &key, "m4").await;
    assert_eq!(items(&mut lines, 1).await, numbered(4..=4));
    let (status, _) = post_json(
        &gateway.api_url(),
        "/v1/close",
        &json!({"sessions": [key], "data": "m5"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(items(&mut lines, 1).await, numbered(5..=5));
    let end = line(&mut lines).await;
    assert!(
        end.starts_with("end closed=true"),
        "the client saw the end: {end}"
    );
    let status = tokio::time::timeout(TIMEOUT, child.wait())
        .await
        .expect("the client exits")
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn the_official_client_reads_a_session_with_long_polls() {
    reads_live("long-poll").await;
}

#[tokio::test]
async fn the_official_client_reads_a_session_over_sse() {
    reads_live("sse").await;
}

#[tokio::test]
async fn the_official_client_catches_up() {
    let gateway = TestGateway::start(|_| {}).await;
    let session = HttpSession::connect(
        &format!("http://{}", gateway.addr),
        "key=official-catch-up&first=m1",
    )
    .await;
    for n in 2..=3 {
        send(&gateway, "official-catch-up", &format!("m{n}")).await;
    }
    let (mut child, mut lines) = reader(&session, "catch-up");
    assert_eq!(items(&mut lines, 3).await, numbered(1..=3));
    let end = line(&mut lines).await;
    assert_eq!(
        end,
        format!("end closed=false offset={}", session.offset(3))
    );
    assert!(child.wait().await.unwrap().success());
}
