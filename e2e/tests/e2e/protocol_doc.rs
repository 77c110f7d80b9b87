//! docs/protocol.md's curl lines for sessions over HTTP (section 11) work as written: they run
//! with bash against `oort demo`, in the order the document gives them, with only the demo's
//! port changed. The two live reads are the only ones adapted: the long-poll runs in the
//! background while the documented message is posted (so it need not wait 25 s, though it may
//! if the message wins the race), and the SSE read is cut after 2 s.

use std::time::Duration;

use crate::browser_support::{start_demo, stop_demo};
use crate::support::{describe, workspace_root};

/// The shell lines of section 11, comments and blank lines left out.
fn documented_lines() -> Vec<String> {
    let doc = std::fs::read_to_string(workspace_root().join("docs/protocol.md")).unwrap();
    let start = doc.find("## 11.").expect("section 11");
    let end = doc.find("## 12.").expect("section 12");
    let section = &doc[start..end];
    let mut lines = Vec::new();
    let mut in_shell = false;
    for line in section.lines() {
        match line.trim() {
            "```sh" => in_shell = true,
            "```" => in_shell = false,
            text if in_shell && !text.is_empty() && !text.starts_with('#') => {
                lines.push(text.to_owned());
            }
            _ => {}
        }
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_curl_lines_of_the_http_transports_work_as_written() {
    for tool in ["curl", "jq", "bash"] {
        let present = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|output| output.status.success());
        assert!(present, "{tool} is missing; apt-get install -y {tool}");
    }
    let lines = documented_lines();
    assert!(lines.len() >= 6, "the section lost its examples: {lines:?}");
    let (demo, url) = start_demo().await;
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    let lines: Vec<String> = lines
        .iter()
        .map(|line| line.replace("127.0.0.1:9180", host))
        .collect();
    let message = lines
        .iter()
        .find(|line| line.contains("-X POST \"$STREAM\""))
        .expect("the documented message")
        .clone();
    let mut script = String::from("set -euo pipefail\ncd \"$(mktemp -d)\"\n");
    for line in &lines {
        if line.contains("live=long-poll") {
            script.push_str(&format!(
                "( {line} ) > poll.out & POLL=$!\n{message}\necho\nwait $POLL\n\
                 echo \"long-poll: $(cat poll.out)\"\n"
            ));
        } else if line.contains("live=sse") {
            script.push_str(&format!("timeout 2 {line} || [ $? -eq 124 ]\necho\n"));
        } else {
            script.push_str(line);
            script.push_str("\necho\n");
        }
    }
    let run = tokio::process::Command::new("bash")
        .args(["-c", &script])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the documented lines finish")
        .expect("bash runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the lines as written failed\n{script}\n{}",
        describe(&output)
    );
    for expected in [
        "\"stream\":\"/stream/",
        "HTTP/1.1 200 OK",
        "stream-next-offset: ",
        "\"kind\":\"text\"",
        "event: control",
    ] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }
    assert!(
        text.contains("long-poll: 200") || text.contains("long-poll: 204"),
        "the long-poll answered with the message, or timed out:\n{text}"
    );
    // The message (posted twice), then the end of the session: each 204.
    let codes: Vec<&str> = text.lines().filter(|line| line.trim() == "204").collect();
    assert_eq!(
        codes.len(),
        3,
        "the POSTs and the DELETE answered 204:\n{text}"
    );
    stop_demo(demo).await;
}
