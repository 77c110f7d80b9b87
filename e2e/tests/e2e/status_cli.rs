//! `oort status` against a single node (the real binary): the table names the node, its
//! sessions and the in-process bus; a wrong token and an unreachable URL exit 2 with a clear
//! message on stderr.

use oort_e2e::process::run_oort;
use oort_e2e::wait::eventually;
use oort_e2e::{TIMEOUT, TestBackend, WsClient};

use crate::support::{Gateway, describe};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oort_status_prints_a_single_node_and_its_sessions() {
    let backend = TestBackend::start().await;
    let gateway = Gateway::start(&backend, "api_token: s3cret").await;
    let _a = WsClient::connect(&gateway.ws_url("key=alpha")).await;
    let _b = WsClient::connect(&gateway.ws_url("key=beta")).await;
    let url = gateway.url();
    let status = ["status", "--url", url.as_str(), "--timeout-secs", "5"];

    let refused = run_oort(&status, &[("OORT_API_TOKEN", "wrong")], TIMEOUT).await;
    assert_eq!(refused.status.code(), Some(2), "{}", describe(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("401"),
        "{}",
        describe(&refused)
    );

    let output = eventually(TIMEOUT, "oort status to count two sessions", || async {
        let output = run_oort(&status, &[("OORT_API_TOKEN", "s3cret")], TIMEOUT).await;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let row = stdout.lines().nth(1).unwrap_or_default().to_owned();
        let cells: Vec<&str> = row.split_whitespace().collect();
        (cells.get(1) == Some(&"single") && cells.get(5) == Some(&"2")).then_some(output)
    })
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("NODE "), "{stdout}");
    assert!(stdout.contains("single node, in-process bus"), "{stdout}");

    let json = run_oort(
        &[
            "status",
            "--url",
            url.as_str(),
            "--json",
            "--token",
            "s3cret",
        ],
        &[],
        TIMEOUT,
    )
    .await;
    assert_eq!(json.status.code(), Some(0), "{}", describe(&json));
    let answer: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(answer["role"], "single");
    assert_eq!(answer["nats"]["state"], "none");
}

#[tokio::test]
async fn oort_status_exits_2_when_the_node_cannot_be_reached() {
    // A port nothing listens on: bound, then closed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    let url = format!("http://{addr}");
    let output = run_oort(
        &["status", "--url", url.as_str(), "--timeout-secs", "2"],
        &[],
        TIMEOUT,
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot reach"), "{stderr}");
    assert!(output.stdout.is_empty(), "{}", describe(&output));
}
