//! What `main.rs`, the only reader of the process environment, takes from it: `RUST_LOG` over
//! `log.level`, and `OORT_API_TOKEN` as `oort drain`'s bearer token.

use oort_e2e::process::{TempConfig, run_oort};
use oort_e2e::{TIMEOUT, TestBackend, WsClient};

use crate::support::{Gateway, describe};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_wins_over_log_level_and_a_bad_one_exits_64() {
    let backend = TestBackend::start().await;
    let config = TempConfig::new(&crate::support::config_for(
        &backend,
        "log:\n  level: warn\n",
    ));
    let oort = oort_e2e::process::OortProcess::spawn(
        &["--config", config.path()],
        &[("RUST_LOG", "oort_gateway=debug")],
    );
    // At level warn the listener line (info) would not be logged at all.
    let addr = oort.listen_addr("client", TIMEOUT).await;
    let client = WsClient::connect(&format!("ws://{addr}/connect?key=logged")).await;
    client.close(1000).await;
    oort.wait_for_line("\"level\":\"DEBUG\"", TIMEOUT).await;

    let output = run_oort(
        &["--config", config.path()],
        &[("RUST_LOG", "oort_gateway=loudest")],
        TIMEOUT,
    )
    .await;
    assert_eq!(output.status.code(), Some(64), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid RUST_LOG"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oort_drain_sends_the_api_token_from_the_environment() {
    let backend = TestBackend::start().await;
    let mut gateway = Gateway::start(&backend, "api_token: s3cret").await;
    let url = gateway.url();
    let drain = ["drain", "--url", url.as_str(), "--timeout-secs", "10"];

    let refused = run_oort(&drain, &[], TIMEOUT).await;
    assert!(!refused.status.success(), "{}", describe(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("401"),
        "{}",
        describe(&refused)
    );

    let drained = run_oort(&drain, &[("OORT_API_TOKEN", "s3cret")], TIMEOUT).await;
    assert!(drained.status.success(), "{}", describe(&drained));
    gateway
        .process
        .wait_for_line("drain requested over the API", TIMEOUT)
        .await;
    let status = gateway.process.wait_exit(TIMEOUT).await;
    assert!(status.success(), "{status:?}");
}
