//! `oort demo`: the printed URL, the chat flow with WebSocket clients, and the real page in
//! headless Chromium (two pages join, chat and see each other's messages).
//!
//! The browser test needs Node.js, `npm ci` in e2e/browser (playwright-core) and Debian's
//! chromium (`apt-get install -y chromium`; `$OORT_CHROMIUM` names another binary).

use std::time::{Duration, Instant};

use oort_e2e::{WsClient, http_client};

use crate::browser_support::{browser, start_demo, stop_demo};
use crate::support::describe;

/// The whole browser script's bound; the script has its own, shorter ones.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(120);

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_chat_in_headless_chromium() {
    let browser = browser();

    let (demo, url) = start_demo().await;
    let started = Instant::now();
    let output = browser.run("chat.test.mjs", &[&url], BROWSER_TIMEOUT).await;
    assert!(
        output.status.success(),
        "the browser chat failed\n{}\n--- oort demo ---\n{}",
        describe(&output),
        demo.logs().join("\n")
    );
    eprintln!("browser chat passed in {:?}", started.elapsed());
    stop_demo(demo).await;
}
