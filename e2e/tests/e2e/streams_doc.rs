//! README's Durable Streams examples work as written: the curl lines run with bash, then the
//! `@durable-streams/client` snippet runs with Node (from e2e/durable-streams, where `npm ci`
//! installed the client), both against `oort demo` with only the demo's port changed.

use std::time::Duration;

use crate::browser_support::{start_demo, stop_demo};
use crate::support::{describe, workspace_root};

/// The code blocks (`lang`) of README's "Durable Streams" section.
fn blocks(lang: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let start = readme
        .find("## Durable Streams")
        .expect("README has a Durable Streams section");
    let section = &readme[start..];
    let end = section[3..]
        .find("\n## ")
        .map_or(section.len(), |at| at + 3);
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in section[..end].lines() {
        match (line.trim(), current.as_mut()) {
            (fence, None) if fence == format!("```{lang}") => current = Some(String::new()),
            ("```", Some(_)) => blocks.extend(current.take()),
            (_, Some(block)) => {
                block.push_str(line);
                block.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

async fn run(program: &str, args: &[&str], dir: &std::path::Path) -> String {
    let run = tokio::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the example finishes")
        .unwrap_or_else(|err| panic!("{program} runs: {err}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed\n{}",
        describe(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_examples_work_as_written() {
    let shell = blocks("sh");
    let script = blocks("js");
    assert_eq!((shell.len(), script.len()), (1, 1), "one of each");
    let client_dir = workspace_root().join("e2e/durable-streams");
    assert!(
        client_dir
            .join("node_modules/@durable-streams/client")
            .exists(),
        "run scripts/test-prerequisites (npm ci in e2e/durable-streams)"
    );
    let (demo, url) = start_demo().await;
    let host = url.trim_start_matches("http://").trim_end_matches('/');

    let shell = format!(
        "set -euo pipefail\n{}",
        shell[0].replace("127.0.0.1:9180", host)
    );
    let text = run("bash", &["-c", &shell], &client_dir).await;
    assert!(text.starts_with("201\n"), "the PUT created it:\n{text}");
    let all = r#"[{"text":"first"},{"text":"second"},{"text":"third"}]"#;
    assert!(text.contains(all), "the catch-up read:\n{text}");
    assert!(
        text.contains("event: data") && text.contains("event: control"),
        "the SSE read:\n{text}"
    );

    // The snippet runs as a module file where the client is installed.
    let file = client_dir.join(format!("readme-example-{}.mjs", std::process::id()));
    std::fs::write(&file, script[0].replace("127.0.0.1:9180", host)).unwrap();
    let path = file.to_string_lossy().into_owned();
    let printed = run("node", &[&path], &client_dir).await;
    let _ = std::fs::remove_file(&file);
    for note in ["first", "second", "third", "from node"] {
        assert!(printed.contains(&format!("text: '{note}'")), "{printed}");
    }
    assert!(
        printed.find("first") < printed.find("from node"),
        "oldest first: {printed}"
    );
    stop_demo(demo).await;
}
