//! Start-up with NATS settings that cannot work: a file that cannot be read, a certificate
//! that is not one. Each is a clear error naming the key, with exit code 64, and no secret is
//! ever printed, not even by `oort check-config --print`.

use std::time::Duration;

use oort_e2e::process::{TempConfig, run_oort};

const NATS: &str = "cluster:\n  nats: nats://127.0.0.1:1\n  bootstrap_expect: 1\n";

async fn start(config: &str) -> (Option<i32>, String, String) {
    let file = TempConfig::new(config);
    let data = file.dir().join("data");
    let output = run_oort(
        &["--config", file.path(), "--listen", "127.0.0.1:0"],
        &[("OORT_CLUSTER__DATA_DIR", data.to_str().unwrap())],
        Duration::from_secs(20),
    )
    .await;
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn an_unreadable_credentials_file_stops_the_start_with_exit_64() {
    let (code, _, stderr) = start(&format!(
        "{NATS}  nats_auth:\n    user: oort\n    password_file: /nonexistent/oort.password\n"
    ))
    .await;
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("`cluster.nats_auth.password_file`")
            && stderr.contains("/nonexistent/oort.password")
            && stderr.contains("cannot read the file"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_ca_file_without_a_certificate_stops_the_start_with_exit_64() {
    let dir = oort_e2e::temp::TempDir::new("bad-ca");
    let ca = dir.write("ca.crt", "this is not a certificate\n");
    let (code, _, stderr) = start(&format!(
        "{NATS}  nats_tls:\n    ca_file: {}\n",
        ca.display()
    ))
    .await;
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("`cluster.nats_tls.ca_file`") && stderr.contains("no PEM certificate"),
        "{stderr}"
    );
}

#[tokio::test]
async fn check_config_print_never_shows_a_secret() {
    let file = TempConfig::new(&format!(
        "{NATS}  nats_auth:\n    user: oort\n    password: hunter2-password\n"
    ));
    let output = run_oort(
        &["check-config", file.path(), "--print"],
        &[],
        Duration::from_secs(10),
    )
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    let printed: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(printed["cluster"]["nats_auth"]["password"], "<redacted>");
    assert_eq!(printed["cluster"]["nats_auth"]["user"], "oort");
    assert!(!stdout.contains("hunter2"), "{stdout}");
}
