//! `oort demo --nodes 2` in headless Chromium: two tabs on different nodes chat in one room
//! (each lists both, with their nodes), a third tab's room hears none of it; one tab's node
//! is restarted (SIGTERM: it drains) from the page's restart button while both keep sending;
//! the tab resumes on the other node (the room's list follows it) and every message appears
//! exactly once, in order, in both tabs (e2e/browser/cluster.test.mjs).
//!
//! Needs what `demo_browser` needs (Node.js, `npm ci` in e2e/browser, Debian's chromium) and
//! `nats-server` on the PATH (`apt-get install -y nats-server`).

use std::path::Path;
use std::time::{Duration, Instant};

use oort_e2e::process::OortProcess;
use oort_e2e::{TIMEOUT, http_client};

use crate::browser_support::{browser, require, url_in};
use crate::support::describe;

/// The whole browser script's bound; the script has its own, shorter ones.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the demo may take to start nats-server and both nodes and elect a leader.
const START_TIMEOUT: Duration = Duration::from_secs(60);

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_moves_to_the_other_node_when_its_node_restarts() {
    let browser = browser();
    require(
        "nats-server (on the PATH)",
        on_path("nats-server"),
        "apt-get install -y nats-server",
    );

    let started = Instant::now();
    let demo = OortProcess::spawn(&["demo", "--nodes", "2", "--port", "0"], &[]);
    let running = demo
        .wait_for_line("Oort demo running: open http://", START_TIMEOUT)
        .await;
    let n1 = url_in(&demo.wait_for_line("Oort demo node n1: ", TIMEOUT).await);
    let n2 = url_in(&demo.wait_for_line("Oort demo node n2: ", TIMEOUT).await);
    assert_eq!(url_in(&running), n1, "the banner names the first node");
    for url in [&n1, &n2] {
        assert!(!url.contains(":0/"), "the demo printed port 0: {url}");
    }
    assert_ne!(n1, n2);
    eprintln!(
        "demo cluster up in {:?}: n1 {n1}, n2 {n2}",
        started.elapsed()
    );

    let started = Instant::now();
    let output = browser
        .run("cluster.test.mjs", &[&n1, &n2], BROWSER_TIMEOUT)
        .await;
    assert!(
        output.status.success(),
        "the browser cluster test failed\n{}\n--- oort demo --nodes 2 ---\n{}",
        describe(&output),
        demo.logs().join("\n")
    );
    eprintln!("browser cluster test passed in {:?}", started.elapsed());

    // Ctrl-C's SIGTERM stops the nodes and nats-server, and the demo exits cleanly.
    let control = url_in(&demo.wait_for_line("Oort demo control: ", TIMEOUT).await);
    let body = http_client()
        .get(&control)
        .send()
        .await
        .expect("GET the control endpoint")
        .bytes()
        .await
        .expect("the control endpoint's answer");
    let nodes: serde_json::Value =
        serde_json::from_slice(&body).expect("JSON from the control endpoint");
    let pids: Vec<u64> = nodes["nodes"]
        .as_array()
        .expect("a node list")
        .iter()
        .map(|node| node["pid"].as_u64().expect("a running node's pid"))
        .collect();
    assert_eq!(pids.len(), 2, "{nodes}");
    let mut demo = demo;
    let stopping = Instant::now();
    demo.signal(15);
    let status = demo.wait_exit(TIMEOUT).await;
    assert!(
        status.success(),
        "oort demo --nodes 2 exited with {status}\n{}",
        demo.logs().join("\n")
    );
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "node process {pid} outlived oort demo --nodes 2"
        );
    }
    eprintln!("demo cluster stopped in {:?}", stopping.elapsed());
}
