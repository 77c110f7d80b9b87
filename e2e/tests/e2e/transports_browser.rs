//! The demo page over each transport of /oort.js, in headless Chromium: WebSocket, then
//! Server-Sent Events with every WebSocket blocked, then long-polling with WebSockets and SSE
//! blocked; two tabs chat both ways and see every message exactly once. The script also saves
//! a screenshot of a connected page.
//!
//! Needs what `demo_browser` needs: Node.js, `npm ci` in e2e/browser (playwright-core) and
//! Debian's chromium (`apt-get install -y chromium`; `$OORT_CHROMIUM` names another binary).

use std::time::{Duration, Instant};

use crate::browser_support::{browser, start_demo, stop_demo};
use crate::support::describe;

/// The whole browser script's bound; the script has its own, shorter ones.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_page_falls_back_to_sse_and_long_poll() {
    let browser = browser();

    let (demo, url) = start_demo().await;

    let screenshot = std::env::temp_dir().join(format!(
        "oort-transports-{}-{}.png",
        std::process::id(),
        rand::random::<u32>()
    ));
    let started = Instant::now();
    let screenshot_arg = screenshot.display().to_string();
    let output = browser
        .run(
            "transports.test.mjs",
            &[&url, &screenshot_arg],
            BROWSER_TIMEOUT,
        )
        .await;
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

    stop_demo(demo).await;
}
