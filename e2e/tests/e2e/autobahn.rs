//! RFC 6455 conformance with Autobahn|Testsuite's fuzzing client against the real process.
//!
//! Every client message goes through the receive callback to a test backend that sends it back
//! with `/send` keeping its frame type, so the gateway behaves as an echo server end to end.
//! Each case is a new connection to `?key=auto`, for which the backend makes a fresh session
//! key. The spec is e2e/autobahn/fuzzingclient.json (performance and compression cases are
//! excluded); `wstest` is `$OORT_WSTEST`, or target/autobahn-venv/bin/wstest, or on `PATH`
//! (install: e2e/autobahn/README.md).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use oort_e2e::TestBackend;
use oort_e2e::process::TempConfig;

use crate::support::{Gateway, describe, workspace_root};

/// Bound on the whole Autobahn run (about 30 s here).
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// Behaviours that pass: NON-STRICT is a legal choice, INFORMATIONAL is not judged.
const PASSING: [&str; 3] = ["OK", "NON-STRICT", "INFORMATIONAL"];

const INSTALL: &str = "Install it with Python 2.7 (pyenv has 2.7.18), from the workspace root:
  ~/.pyenv/versions/2.7.18/bin/python -m pip install 'virtualenv<20.22'
  ~/.pyenv/versions/2.7.18/bin/python -m virtualenv target/autobahn-venv
  target/autobahn-venv/bin/pip install autobahntestsuite
(see e2e/autobahn/README.md)";

fn wstest() -> PathBuf {
    if let Some(path) = std::env::var_os("OORT_WSTEST") {
        let path = PathBuf::from(path);
        assert!(
            path.exists(),
            "$OORT_WSTEST names {}, which does not exist. {INSTALL}",
            path.display()
        );
        return path;
    }
    let venv = workspace_root().join("target/autobahn-venv/bin/wstest");
    if venv.exists() {
        return venv;
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("wstest"))
            .find(|candidate| candidate.exists())
    });
    on_path.unwrap_or_else(|| {
        panic!("wstest is not in $OORT_WSTEST, target/autobahn-venv or PATH. {INSTALL}")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autobahn_fuzzingclient_cases_pass() {
    let wstest = wstest();
    let backend = TestBackend::start().await;
    // wstest opens hundreds of connections from 127.0.0.1 in seconds: the per-address connect
    // rate is not what this test is about (tests/hostile_clients covers it). Every case passes
    // under the default message rate.
    let gateway = Gateway::start(
        &backend,
        "suppress_access_log: true\nlimits:\n  address_connect_rate: 0\n",
    )
    .await;
    backend.echo_to(&gateway.url());

    let spec_path = workspace_root().join("e2e/autobahn/fuzzingclient.json");
    let spec_text = std::fs::read_to_string(&spec_path).expect("read the Autobahn spec");
    let mut spec: serde_json::Value = serde_json::from_str(&spec_text).expect("spec JSON");
    let work = TempConfig::new("");
    let reports = work.dir().join("reports");
    spec["outdir"] = reports.to_str().unwrap().into();
    spec["servers"][0]["url"] = gateway.ws_url("key=auto").into();
    let run_spec = work.dir().join("fuzzingclient.json");
    std::fs::write(&run_spec, spec.to_string()).expect("write the spec");

    let started = Instant::now();
    let mut command = tokio::process::Command::new(&wstest);
    command
        .args(["-m", "fuzzingclient", "-s"])
        .arg(&run_spec)
        .current_dir(work.dir())
        .kill_on_drop(true);
    let output = tokio::time::timeout(RUN_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("wstest ran past {RUN_TIMEOUT:?}"))
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", wstest.display()));
    assert!(
        output.status.success(),
        "wstest failed\n{}",
        describe(&output)
    );
    let took = started.elapsed();

    let index = std::fs::read_to_string(reports.join("index.json")).expect("index.json");
    let index: serde_json::Value = serde_json::from_str(&index).expect("index JSON");
    let cases = index["oort"].as_object().expect("results for agent oort");
    let mut tally = BTreeMap::<String, usize>::new();
    let mut failures = Vec::new();
    let mut notes = Vec::new();
    for (case, result) in cases {
        let behavior = result["behavior"].as_str().unwrap_or("?");
        *tally.entry(behavior.to_owned()).or_default() += 1;
        if behavior != "OK" || result["behaviorClose"] != "OK" {
            notes.push(format!("{case}: {behavior}/{}", result["behaviorClose"]));
        }
        if !PASSING.contains(&behavior) {
            failures.push(format!(
                "{case}: {behavior} (close: {}, remote close code {}), report {}",
                result["behaviorClose"], result["remoteCloseCode"], result["reportfile"]
            ));
        }
    }
    eprintln!(
        "Autobahn: {} cases in {took:?}: {tally:?}; not OK/OK: {}",
        cases.len(),
        notes.join(", ")
    );
    assert!(cases.len() > 200, "only {} cases ran", cases.len());
    if !failures.is_empty() {
        // Keep the reports for reading.
        let kept = std::env::temp_dir().join(format!("oort-autobahn-{}", std::process::id()));
        let _ = std::fs::rename(&reports, &kept);
        panic!(
            "{} Autobahn case(s) failed (reports kept in {}):\n{}",
            failures.len(),
            kept.display(),
            failures.join("\n")
        );
    }
}
