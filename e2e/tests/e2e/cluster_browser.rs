//! `oort demo --nodes 2` in headless Chromium: two tabs on different nodes chat; one tab's node
//! is restarted (SIGTERM: it drains) from the page's restart button while both keep sending;
//! the tab resumes on the other node and every message appears exactly once, in order, in
//! both tabs (e2e/browser/cluster.test.mjs).
//!
//! Needs what `demo_browser` needs (Node.js, `npm ci` in e2e/browser, Debian's chromium) and
//! `nats-server` on the PATH (`apt-get install -y nats-server`).

use std::path::Path;
use std::time::{Duration, Instant};

use oort_e2e::process::OortProcess;
use oort_e2e::{TIMEOUT, http_client};

use crate::support::{describe, workspace_root};

/// The whole browser script's bound; the script has its own, shorter ones.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the demo may take to start nats-server and both nodes and elect a leader.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Explains what to install when a tool is missing.
fn require(what: &str, present: bool, install: &str) {
    assert!(present, "{what} is missing; install it with: {install}");
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
}

/// The URL in a line the demo printed.
fn url_in(line: &str) -> String {
    line.split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_moves_to_the_other_node_when_its_node_restarts() {
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
    let mut script = tokio::process::Command::new("node");
    script
        .arg(browser_dir.join("cluster.test.mjs"))
        .arg(&n1)
        .arg(&n2)
        .env("OORT_CHROMIUM", &chromium)
        .kill_on_drop(true);
    let output = tokio::time::timeout(BROWSER_TIMEOUT, script.output())
        .await
        .unwrap_or_else(|_| panic!("the browser test ran past {BROWSER_TIMEOUT:?}"))
        .expect("run node");
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
