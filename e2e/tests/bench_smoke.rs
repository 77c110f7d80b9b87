//! Keeps `oort-bench` working: every scenario at a tiny size, against one node and against a
//! two-node cluster (with its own nats-server). Figures are not judged here (performance is
//! measured by running the tool by hand, see docs/benchmarks.md); lost frames are.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use oort_e2e::process::workspace_binary;

async fn smoke(extra_args: &[&str], env: &[(&str, &str)]) -> Vec<serde_json::Value> {
    let args: Vec<&str> = extra_args.iter().copied().chain(["smoke"]).collect();
    bench(&args, env, Duration::from_secs(90)).await
}

/// Runs `oort-bench` with `args` and `env` within `bound`; its JSON reports, one per line.
async fn bench(args: &[&str], env: &[(&str, &str)], bound: Duration) -> Vec<serde_json::Value> {
    let mut command = tokio::process::Command::new(workspace_binary("oort-bench"));
    command
        .args(args)
        .envs(env.iter().copied())
        .kill_on_drop(true);
    let output = tokio::time::timeout(bound, command.output())
        .await
        .expect("oort-bench finished in time")
        .expect("run oort-bench");
    assert!(
        output.status.success(),
        "oort-bench {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON report"))
        .collect()
}

fn scenarios(reports: &[serde_json::Value]) -> Vec<String> {
    reports
        .iter()
        .map(|report| report["scenario"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Each `streams` report's measure and route (`owner` unless it went through another node).
fn streams_measures(reports: &[serde_json::Value]) -> Vec<String> {
    reports
        .iter()
        .map(|report| {
            let via = report["via"].as_str().unwrap_or("owner");
            let skipped = if report.get("skipped").is_some() {
                " (skipped)"
            } else {
                ""
            };
            format!(
                "{} {via}{skipped}",
                report["measure"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

#[tokio::test]
async fn every_scenario_runs_against_one_node() {
    let reports = smoke(&[], &[]).await;
    assert_eq!(
        scenarios(&reports),
        [
            "idle",
            "send",
            "send_batch",
            "send",
            "fanout",
            "fanout",
            "sse",
            "longpoll",
            "chat",
            "channel_chat",
            "channel_fanout",
            "resume",
            "rolling",
            "rpc_send",
            "rpc_send",
            "rpc_send",
            "streams",
            "streams",
            "streams",
            "streams",
            "streams",
            "streams"
        ]
    );
    assert_eq!(
        streams_measures(&reports[16..]),
        [
            "retained owner",
            "sse owner",
            "append owner",
            "append other (skipped)",
            "append owner",
            "append other (skipped)"
        ]
    );
    let durable = &reports[3];
    assert_eq!(durable["durable"], true, "{durable}");
    assert!(
        durable["frames_received"].as_u64().unwrap() > 0,
        "oort.v1 sessions received their sends: {durable}"
    );
    let (sse, polls) = (&reports[6], &reports[7]);
    assert_eq!(sse["fanout"][0]["received"], 50, "{sse}");
    assert_eq!(polls["out_of_order"], 0, "{polls}");
    assert!(polls["messages_per_s"].as_f64().unwrap() > 0.0, "{polls}");
    let (room, fanout) = (&reports[9], &reports[10]);
    assert_eq!(room["all_received"], true, "{room}");
    assert_eq!(fanout["spread"]["received_min"], 60, "{fanout}");
    for report in &reports[11..13] {
        assert!(
            report["resumes"].as_u64().unwrap() > 0 && report["lost"] == 0,
            "clients resumed and lost nothing: {report}"
        );
    }
}

/// Against two nodes, with the per-process client limit lowered to 150 so that the idle
/// scenario's 200 connections take the path of a 100k run: one worker process per node.
#[tokio::test]
async fn every_scenario_runs_against_a_cluster() {
    let reports = smoke(
        &["--cluster", "2"],
        &[("OORT_BENCH_CLIENTS_PER_PROCESS", "150")],
    )
    .await;
    let names = scenarios(&reports);
    assert_eq!(
        names,
        [
            "idle",
            "send",
            "send_batch",
            "send",
            "fanout",
            "fanout",
            "fanout",
            "fanout",
            "chat",
            "channel_chat",
            "channel_fanout",
            "resume",
            "send",
            "send",
            "rpc_send",
            "rpc_send",
            "rpc_send",
            "streams",
            "streams",
            "streams",
            "streams",
            "streams",
            "streams"
        ]
    );
    assert_eq!(
        streams_measures(&reports[17..]),
        [
            "retained owner",
            "sse owner",
            "append owner",
            "append other",
            "append owner",
            "append other"
        ]
    );
    let sse = &reports[18];
    assert_eq!(
        sse["nodes"].as_array().unwrap().len(),
        2,
        "readers on both nodes: {sse}"
    );
    let through_other = &reports[20];
    assert!(
        through_other["appends"].as_u64().unwrap() > 0
            && through_other["rate_vs_owner"].as_f64().unwrap() > 0.0,
        "appends through the other node reached the owner: {through_other}"
    );
    let idle = &reports[0];
    assert_eq!(idle["connections"], 200, "{idle}");
    assert!(
        idle["rss_per_connection_bytes"].as_f64().unwrap() > 0.0,
        "memory summed over both nodes: {idle}"
    );
    let vias = |range: std::ops::Range<usize>| -> Vec<String> {
        reports[range]
            .iter()
            .map(|report| report["via"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(vias(4..8), ["local", "local", "cross", "cross"], "fan-out");
    assert_eq!(vias(12..14), ["local", "cross"], "send");
    let apis: Vec<&str> = reports[14..17]
        .iter()
        .map(|report| report["api"].as_str().unwrap())
        .collect();
    assert_eq!(
        apis,
        ["grpc_h2c", "connect_proto_http1", "json_http1"],
        "RPC against JSON"
    );
    let room = &reports[9];
    assert_eq!(room["nodes"], 2, "clients spread over both nodes: {room}");
    assert_eq!(room["all_received"], true, "{room}");
    let fanout = &reports[10];
    assert_eq!(fanout["spread"]["nodes"], 2, "{fanout}");
    // One NATS delivery per node holding subscribers (the publisher's own copy included; one
    // 3-node run by hand counted one fewer, so at most that is checked).
    let deliveries = fanout["nats_per_publish"]["channel_deliveries"]
        .as_f64()
        .unwrap();
    assert!(
        (1.0..=2.0).contains(&deliveries),
        "at most one NATS delivery per node holding subscribers: {fanout}"
    );
}

/// The directory scenario at a small size: three nodes and their own nats-server, synthetic
/// sessions registered through the real path, a new node timed while it catches up. Figures are
/// not judged; that every registration landed on every replica (the scenario checks it), that a
/// snapshot was built and that the learner caught up are.
#[tokio::test]
async fn the_directory_scenario_fills_a_cluster_and_times_a_learner() {
    let reports = bench(
        &[
            "directory",
            "--sessions",
            "3000",
            "--step",
            "1500",
            "--learner-at",
            "3000",
            "--snapshot-every",
            "2",
        ],
        &[],
        Duration::from_secs(120),
    )
    .await;
    let report = reports.last().expect("a report");
    let steps = report["steps"].as_array().expect("steps");
    let entries: Vec<u64> = steps
        .iter()
        .map(|s| s["entries"].as_u64().unwrap())
        .collect();
    assert_eq!(entries, [1500, 3000], "{report}");
    let last = &steps[1];
    assert!(
        last["registrations_per_s"].as_f64().unwrap() > 0.0,
        "{last}"
    );
    assert!(last["snapshot_bytes"].as_u64().unwrap() > 0, "{last}");
    assert!(
        last["learner_catch_up_ms"].as_f64().unwrap() > 0.0,
        "{last}"
    );
    assert!(report["lookup_ns"].as_f64().unwrap() > 0.0, "{report}");
    assert!(
        report["in_process_bytes_per_entry"].as_f64().unwrap() > 0.0,
        "{report}"
    );
}

/// The side-by-side mode at a tiny size, with Oort itself as the other contender (started from
/// a command line, as kuiperbelt would be): every figure is measured for both, and the ratios
/// come out. Figures are not judged.
#[tokio::test]
async fn compare_runs_every_part_against_a_second_gateway_started_from_a_command() {
    let other = format!(
        "again={} --config {{config}} --log-level error",
        workspace_binary("oort").display()
    );
    let reports = bench(
        &[
            "compare",
            "--gateway",
            &other,
            "--idle",
            "50",
            "--storm",
            "50",
            "--send-duration",
            "1",
            "--fanout",
            "40",
            "--fanout-rounds",
            "1",
            "--repeat",
            "1",
        ],
        &[],
        Duration::from_secs(120),
    )
    .await;
    let report = reports.last().expect("a report");
    assert_eq!(report["contenders"], serde_json::json!(["oort", "again"]));
    let figures = report["figures"].as_array().expect("figures");
    let names: Vec<&str> = figures
        .iter()
        .map(|f| f["figure"].as_str().unwrap())
        .collect();
    for expected in [
        "idle memory per WebSocket, 50 connections",
        "connect rate through the callback, 50 clients 1,000 at once",
        "/send, one session per request, 32 keep-alive connections",
        "one /send to 40 sessions: until the last client has it",
        "one /send to 40 sessions: until it is answered",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    for figure in figures {
        for who in ["oort", "again"] {
            assert!(
                figure["medians"][who].as_f64().is_some(),
                "{who} has no {figure}"
            );
        }
    }
    let send = figures
        .iter()
        .find(|f| f["figure"] == "/send, one session per request, 32 keep-alive connections")
        .unwrap();
    assert!(
        send["oort_ratio"]["again"].as_f64().unwrap() > 0.0,
        "{send}"
    );
}
