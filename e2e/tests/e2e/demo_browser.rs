//! `oort demo`: the printed URL, the chat flow with WebSocket clients, and the real page in
//! headless Chromium (two pages join, chat and see each other's messages).
//!
//! The browser test needs Node.js, `npm ci` in e2e/browser (playwright-core) and Debian's
//! chromium (`apt-get install -y chromium`; `$OORT_CHROMIUM` names another binary).

use std::path::Path;
use std::time::{Duration, Instant};

use oort_e2e::process::OortProcess;
use oort_e2e::{TIMEOUT, WsClient, http_client};

use crate::support::{describe, workspace_root};

/// The whole browser script's bound; the script has its own, shorter ones.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(120);

/// Starts `oort demo --port 0` and returns it with the URL it printed.
async fn start_demo() -> (OortProcess, String) {
    let demo = OortProcess::spawn(&["demo", "--port", "0"], &[]);
    let line = demo
        .wait_for_line("Oort demo running: open http://", TIMEOUT)
        .await;
    let url = line
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .expect("a URL in the banner")
        .to_owned();
    assert!(!url.contains(":0/"), "the demo printed port 0: {line}");
    (demo, url)
}

/// Stops the demo with SIGTERM and checks it exits cleanly.
async fn stop_demo(mut demo: OortProcess) {
    demo.signal(15);
    let status = demo.wait_exit(TIMEOUT).await;
    assert!(status.success(), "oort demo exited with {status}");
}

fn event(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_chat_with_websocket_clients() {
    let (demo, url) = start_demo().await;
    let page = http_client().get(&url).send().await.expect("GET /");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Oort demo chat"));

    let ws = url.replace("http://", "ws://");
    let mut ada = WsClient::connect(&format!("{ws}connect?name=Ada")).await;
    assert_eq!(event(&ada.recv_text().await)["type"], "welcome");
    assert_eq!(event(&ada.recv_text().await)["name"], "Ada");
    let mut bob = WsClient::connect(&format!("{ws}connect?name=Bob")).await;
    assert_eq!(event(&bob.recv_text().await)["you"], "Bob");
    let joined = event(&ada.recv_text().await);
    assert_eq!(
        (joined["type"].as_str(), joined["online"].as_u64()),
        (Some("joined"), Some(2))
    );
    assert_eq!(event(&bob.recv_text().await)["name"], "Bob");

    ada.send_text("hi Bob").await;
    for client in [&mut ada, &mut bob] {
        let message = event(&client.recv_text().await);
        assert_eq!(message["from"], "Ada");
        assert_eq!(message["text"], "hi Bob");
    }
    bob.close(1000).await;
    let left = event(&ada.recv_text().await);
    assert_eq!(
        (left["type"].as_str(), left["name"].as_str()),
        (Some("left"), Some("Bob"))
    );
    ada.close(1000).await;
    stop_demo(demo).await;
}

/// Explains what to install when a browser-test tool is missing.
fn require(what: &str, present: bool, install: &str) {
    assert!(present, "{what} is missing; install it with: {install}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_chat_in_headless_chromium() {
    let browser_dir = workspace_root().join("e2e/browser");
    let chromium = std::env::var("OORT_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    require(
        &chromium,
        Path::new(&chromium).exists(),
        "apt-get install -y chromium",
    );
    require(
        "e2e/browser/node_modules/playwright-core",
        browser_dir.join("node_modules/playwright-core").exists(),
        "(cd e2e/browser && npm ci)",
    );
    let node_works = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    require(
        "node (Node.js 20 or later)",
        node_works,
        "apt-get install -y nodejs npm",
    );

    let (demo, url) = start_demo().await;
    let started = Instant::now();
    let mut script = tokio::process::Command::new("node");
    script
        .arg(browser_dir.join("chat.test.mjs"))
        .arg(&url)
        .env("OORT_CHROMIUM", &chromium)
        .kill_on_drop(true);
    let output = tokio::time::timeout(BROWSER_TIMEOUT, script.output())
        .await
        .unwrap_or_else(|_| panic!("the browser test ran past {BROWSER_TIMEOUT:?}"))
        .expect("run node");
    assert!(
        output.status.success(),
        "the browser chat failed\n{}\n--- oort demo ---\n{}",
        describe(&output),
        demo.logs().join("\n")
    );
    eprintln!("browser chat passed in {:?}", started.elapsed());
    stop_demo(demo).await;
}
