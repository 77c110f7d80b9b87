//! The Helm chart, checked offline: charts/test/check.py renders it with the real Helm engine
//! for every values file in charts/test/values/, validates each manifest against the
//! Kubernetes schemas in strict mode, runs `oort check-config` on the rendered config, checks
//! the Grafana dashboard and alert rules (promtool, metric names, alert unit tests), and
//! checks that each bad values file in charts/test/bad/ is refused with a clear message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use oort_e2e::process::oort_binary;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[tokio::test]
async fn the_chart_renders_valid_manifests_and_refuses_bad_values() {
    let mut command = tokio::process::Command::new("python3");
    command
        .arg(workspace_root().join("charts/test/check.py"))
        .arg("--oort")
        .arg(oort_binary())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the chart checks finish in time")
        .expect("run python3 (install the checks' packages with scripts/test-prerequisites)");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "chart checks failed:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for scenario in [
        "default",
        "full",
        "external-nats",
        "bundled-nats",
        "nats-auth-tls",
        "nats-creds",
        "observability",
    ] {
        assert!(
            report.contains(&format!("ok   {scenario}:")),
            "{scenario} was checked:\n{report}"
        );
    }
    // The dashboard and the alert rules were checked, not skipped.
    for check in [
        "dashboard valid",
        "alert rules valid, alerts-test.yml passes",
    ] {
        assert!(
            report
                .lines()
                .any(|line| line.starts_with("ok   observability: ") && line.contains(check)),
            "observability: {check}:\n{report}"
        );
    }
    assert!(
        report.matches("ok   bad/").count() >= 8,
        "bad values files were checked:\n{report}"
    );
}
