//! The demo page over each transport of /oort.js, in headless Chromium: WebSocket, then
//! Server-Sent Events with every WebSocket blocked, then long-polling with WebSockets and SSE
//! blocked; two tabs chat both ways and see every message exactly once. The script also saves
//! a screenshot of a connected page.
//!
//! Needs what `demo_browser` needs: Node.js, `npm ci` in e2e/browser (playwright-core) and
//! Debian's chromium (`apt-get install -y chromium`; `$OORT_CHROMIUM` names another binary).

use std::path::Path;
use std::time::{Duration, Instant};

use oort_e2e::TIMEOUT;
use oort_e2e::process::OortProcess;

use crate::support::{describe, workspace_root};

/// The whole browser script's bound; the script has its own, shorter ones.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(180);

/// Explains what to install when a browser-test tool is missing.
fn require(what: &str, present: bool, install: &str) {
    assert!(present, "{what} is missing; install it with: {install}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_page_falls_back_to_sse_and_long_poll() {
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

    let demo = OortProcess::spawn(&["demo", "--port", "0"], &[]);
    let line = demo
        .wait_for_line("Oort demo running: open http://", TIMEOUT)
        .await;
    let url = line
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .expect("a URL in the banner")
        .to_owned();

    let screenshot = std::env::temp_dir().join(format!(
        "oort-transports-{}-{}.png",
        std::process::id(),
        rand::random::<u32>()
    ));
    let started = Instant::now();
    let mut script = tokio::process::Command::new("node");
    script
        .arg(browser_dir.join("transports.test.mjs"))
        .arg(&url)
        .arg(&screenshot)
        .env("OORT_CHROMIUM", &chromium)
        .kill_on_drop(true);
    let output = tokio::time::timeout(BROWSER_TIMEOUT, script.output())
        .await
        .unwrap_or_else(|_| panic!("the browser test ran past {BROWSER_TIMEOUT:?}"))
        .expect("run node");
    assert!(
        output.status.success(),
        "the browser transports test failed\n{}\n--- oort demo ---\n{}",
        describe(&output),
        demo.logs().join("\n")
    );
    let size = std::fs::metadata(&screenshot)
        .unwrap_or_else(|err| panic!("no screenshot at {}: {err}", screenshot.display()))
        .len();
    assert!(
        size > 1000,
        "the screenshot {} has only {size} bytes",
        screenshot.display()
    );
    eprintln!(
        "browser transports passed in {:?}; screenshot {} ({size} bytes)",
        started.elapsed(),
        screenshot.display()
    );
    let _ = std::fs::remove_file(&screenshot);

    let mut demo = demo;
    demo.signal(15);
    let status = demo.wait_exit(TIMEOUT).await;
    assert!(status.success(), "oort demo exited with {status}");
}
