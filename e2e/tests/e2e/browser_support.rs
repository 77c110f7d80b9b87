//! What the demo's tests share: starting and stopping `oort demo`, and for those in headless
//! Chromium their tools (Node.js, playwright-core from `npm ci` in e2e/browser, Debian's
//! chromium or `$OORT_CHROMIUM`), checked with install instructions, and running one of
//! e2e/browser's scripts with a bound.

use std::path::{Path, PathBuf};
use std::time::Duration;

use oort_e2e::TIMEOUT;
use oort_e2e::process::OortProcess;

use crate::support::workspace_root;

/// Where the browser scripts are, and the Chromium they drive.
pub(crate) struct Browser {
    pub dir: PathBuf,
    pub chromium: String,
}

/// Explains what to install when a tool is missing.
pub(crate) fn require(what: &str, present: bool, install: &str) {
    assert!(present, "{what} is missing; install it with: {install}");
}

/// The browser tools, each present (or the test fails saying how to install it).
pub(crate) fn browser() -> Browser {
    let dir = workspace_root().join("e2e/browser");
    let chromium = std::env::var("OORT_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    require(
        &chromium,
        Path::new(&chromium).exists(),
        "apt-get install -y chromium",
    );
    require(
        "e2e/browser/node_modules/playwright-core",
        dir.join("node_modules/playwright-core").exists(),
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
    Browser { dir, chromium }
}

impl Browser {
    /// Runs `node e2e/browser/{script} {args}` to its end, within `timeout`.
    pub(crate) async fn run(
        &self,
        script: &str,
        args: &[&str],
        timeout: Duration,
    ) -> std::process::Output {
        let mut command = tokio::process::Command::new("node");
        command
            .arg(self.dir.join(script))
            .args(args)
            .env("OORT_CHROMIUM", &self.chromium)
            .kill_on_drop(true);
        tokio::time::timeout(timeout, command.output())
            .await
            .unwrap_or_else(|_| panic!("{script} ran past {timeout:?}"))
            .expect("run node")
    }
}

/// The URL in a line the demo printed.
pub(crate) fn url_in(line: &str) -> String {
    line.split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned()
}

/// Starts `oort demo --port 0` and returns it with the URL it printed.
pub(crate) async fn start_demo() -> (OortProcess, String) {
    let demo = OortProcess::spawn(&["demo", "--port", "0"], &[]);
    let line = demo
        .wait_for_line("Oort demo running: open http://", TIMEOUT)
        .await;
    let url = url_in(&line);
    assert!(!url.contains(":0/"), "the demo printed port 0: {line}");
    (demo, url)
}

/// Stops the demo with SIGTERM and checks it exits cleanly.
pub(crate) async fn stop_demo(mut demo: OortProcess) {
    demo.signal(15);
    let status = demo.wait_exit(TIMEOUT).await;
    assert!(status.success(), "oort demo exited with {status}");
}
