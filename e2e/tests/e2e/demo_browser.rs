//! `oort demo`: the printed URL, the chat flow with WebSocket clients in rooms (each room hears
//! only its own joins and messages; `/demo/rooms/{room}` lists who is in one), and the real
//! page in headless Chromium (pages in two rooms chat, switch rooms and list who is online).
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
    let welcome = event(&ada.recv_text().await);
    assert_eq!(
        (welcome["type"].as_str(), welcome["room"].as_str()),
        (Some("welcome"), Some("lobby")),
        "no ?room= is the lobby"
    );
    assert_eq!(event(&ada.recv_text().await)["name"], "Ada");
    let mut bob = WsClient::connect(&format!("{ws}connect?name=Bob&room=lobby")).await;
    assert_eq!(event(&bob.recv_text().await)["you"], "Bob");
    let joined = event(&ada.recv_text().await);
    assert_eq!(
        (joined["type"].as_str(), joined["online"].as_u64()),
        (Some("joined"), Some(2))
    );
    assert_eq!(event(&bob.recv_text().await)["name"], "Bob");
    let mut cy = WsClient::connect(&format!("{ws}connect?name=Cy&room=rust")).await;
    let welcome = event(&cy.recv_text().await);
    assert_eq!(
        (welcome["room"].as_str(), welcome["online"].as_u64()),
        (Some("rust"), Some(1))
    );
    let joined = event(&cy.recv_text().await);
    assert_eq!(
        (joined["name"].as_str(), joined["online"].as_u64()),
        (Some("Cy"), Some(1))
    );

    let lobby = rooms(&url, "lobby").await;
    assert_eq!(lobby["sessions"], 2, "{lobby}");
    let names: Vec<&str> = lobby["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(names, ["Ada", "Bob"], "{lobby}");
    assert!(lobby["members"][0]["node"].is_string(), "{lobby}");
    // The connect callback names the user (`X-Oort-User`) after the chat name.
    let user = http_client()
        .get(format!("{url}v1/users/Ada"))
        .send()
        .await
        .expect("GET /v1/users/Ada");
    let user: serde_json::Value =
        serde_json::from_slice(&user.bytes().await.expect("Ada's sessions")).expect("JSON");
    assert_eq!(user["sessions"].as_array().map(Vec::len), Some(1), "{user}");
    let bad = http_client()
        .get(format!("{url}demo/rooms/no.dots"))
        .send()
        .await
        .expect("GET /demo/rooms/no.dots");
    assert_eq!(bad.status(), 400);

    // Each client's next frame is its own room's: Cy's join did not reach the lobby, the
    // lobby's message does not reach Cy (it was published before Cy's own), and Cy's does not
    // reach the lobby (published before Bob leaves).
    ada.send_text("hi Bob").await;
    for client in [&mut ada, &mut bob] {
        let message = event(&client.recv_text().await);
        assert_eq!(message["from"], "Ada");
        assert_eq!(message["text"], "hi Bob");
    }
    cy.send_text("anyone?").await;
    let message = event(&cy.recv_text().await);
    assert_eq!(
        (message["from"].as_str(), message["text"].as_str()),
        (Some("Cy"), Some("anyone?"))
    );
    bob.close(1000).await;
    let left = event(&ada.recv_text().await);
    assert_eq!(
        (left["type"].as_str(), left["name"].as_str()),
        (Some("left"), Some("Bob"))
    );
    ada.close(1000).await;
    cy.close(1000).await;
    stop_demo(demo).await;
}

/// `GET /demo/rooms/{room}`: who is in the room, as the page reads it.
async fn rooms(url: &str, room: &str) -> serde_json::Value {
    let answer = http_client()
        .get(format!("{url}demo/rooms/{room}"))
        .send()
        .await
        .expect("GET /demo/rooms");
    assert_eq!(answer.status(), 200);
    serde_json::from_slice(&answer.bytes().await.expect("the room's members")).expect("JSON")
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
