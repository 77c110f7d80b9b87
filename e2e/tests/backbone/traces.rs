//! Traces across nodes, received by an OTLP receiver built from the official
//! `opentelemetry-proto` definitions: a send through one node to a session on another is one
//! trace, continuing the backend's `traceparent`, with spans from both nodes correctly parented;
//! a connect's trace holds its callback (whose request carries the trace on to the backend) and
//! its registration; JSON logs name the trace. OTLP/HTTP is configured by the standard `OTEL_*`
//! variables, OTLP/gRPC by `tracing.*`. Also the metrics that follow a send: latency by route,
//! queue depth, round trip per owner, connections per transport, NATS connected.

use std::time::Duration;

use oort_e2e::backend::CallbackKind;
use oort_e2e::cluster::{FAST_TIMINGS, NodeExtras, TestCluster};
use oort_e2e::nats::NatsServer;
use oort_e2e::otlp::{OtlpReceiver, ReceivedSpan};
use oort_e2e::{TIMEOUT, WsClient};

use crate::CONVERGE;

/// The backend's own trace and span, as its HTTP client would send them.
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// Spans reach the receiver within this (the batch processor exports every 100 ms here).
const EXPORTED: Duration = Duration::from_secs(20);

async fn traced_cluster(receiver: &OtlpReceiver, grpc: bool) -> (NatsServer, TestCluster) {
    let nats = NatsServer::start().await;
    let mut cluster = TestCluster::new(vec![nats.url()], FAST_TIMINGS).await;
    // Access logs on (JSON, as every test node logs): a traced request's lines name its trace.
    cluster.top_level.clear();
    let mut env = vec![("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "100".to_owned())];
    if grpc {
        cluster.top_level.push_str(&format!(
            "tracing:\n  enabled: true\n  protocol: grpc\n  endpoint: {}\n",
            receiver.endpoint()
        ));
    } else {
        env.extend([
            ("OTEL_TRACES_EXPORTER".to_owned(), "otlp".to_owned()),
            (
                "OTEL_EXPORTER_OTLP_PROTOCOL".to_owned(),
                "http/protobuf".to_owned(),
            ),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
                receiver.endpoint(),
            ),
        ]);
    }
    for name in ["n1", "n2", "n3"] {
        let extras = NodeExtras {
            env: env.clone(),
            ..NodeExtras::default()
        };
        cluster.add_with(name, 3, extras).await;
    }
    cluster.wait_converged(3, 3, CONVERGE).await;
    (nats, cluster)
}

/// The span of `trace` named `name` whose parent is `parent`.
fn one(spans: &[ReceivedSpan], trace: &str, name: &str, parent: &str) -> Option<ReceivedSpan> {
    spans
        .iter()
        .find(|s| s.trace_id == trace && s.name == name && s.parent_span_id == parent)
        .cloned()
}

fn describe(spans: &[&ReceivedSpan], origin: u64) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "{:<13} on {}  +{:>8.1} µs  {:>8.1} µs",
                s.name,
                s.instance,
                s.start_unix_nanos.saturating_sub(origin) as f64 / 1000.0,
                s.micros()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `/v1/send` through n1 with the backend's `traceparent`, to a session on n2: one trace,
/// api → forward on n1, deliver → queue, write on n2, each the child of the one before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_across_nodes_is_one_trace_from_the_backend_to_the_socket_write() {
    let receiver = OtlpReceiver::http().await;
    let (_nats, cluster) = traced_cluster(&receiver, false).await;
    let mut client = WsClient::connect(&cluster.node("n2").ws_url("key=traced")).await;

    let response = cluster
        .http()
        .post(format!("{}/v1/send", cluster.node("n1").api_url()))
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .body(r#"{"sessions":["traced"],"data":"followed"}"#)
        .send()
        .await
        .expect("POST /v1/send");
    assert_eq!(response.status(), 200);
    assert_eq!(client.recv_text().await, "followed");

    let path = receiver
        .wait_for(EXPORTED, "the whole path of the send", |spans| {
            let api = one(spans, CALLER_TRACE, "oort.api", CALLER_SPAN)?;
            let forward = one(spans, CALLER_TRACE, "oort.forward", &api.span_id)?;
            let deliver = one(spans, CALLER_TRACE, "oort.deliver", &forward.span_id)?;
            let queue = one(spans, CALLER_TRACE, "oort.queue", &deliver.span_id)?;
            let write = one(spans, CALLER_TRACE, "oort.write", &deliver.span_id)?;
            Some([api, forward, deliver, queue, write])
        })
        .await;
    let [api, forward, deliver, queue, write] = &path;
    let nodes: Vec<&str> = path.iter().map(|s| s.instance.as_str()).collect();
    assert_eq!(
        nodes,
        ["n1", "n1", "n2", "n2", "n2"],
        "which node made which span"
    );
    assert_eq!(
        api.attributes.get("url.path").map(String::as_str),
        Some("/v1/send")
    );
    assert_eq!(
        forward.attributes.get("oort.owner").map(String::as_str),
        Some("n2")
    );
    assert!(
        queue.end_unix_nanos <= write.end_unix_nanos
            && forward.end_unix_nanos <= api.end_unix_nanos,
        "the write ends after the wait in the queue, the forward within the request"
    );
    let _ = deliver;
    let logged = cluster
        .node("n1")
        .process()
        .wait_for_line(&format!("\"trace_id\":\"{CALLER_TRACE}\""), TIMEOUT)
        .await;
    assert!(
        logged.contains("/v1/send"),
        "the access log line of the send: {logged}"
    );
    println!(
        "a traced send across nodes:\n{}",
        describe(&path.iter().collect::<Vec<_>>(), api.start_unix_nanos)
    );

    // The metrics of the same send: forwarded latency on n2, the round trip to n2 on n1.
    let n2 = metrics(&cluster, "n2").await;
    assert!(
        sample(&n2, "oort_send_latency_seconds_count{route=\"forwarded\"}") >= 1.0,
        "{n2}"
    );
    assert!(
        sample(&n2, "oort_queue_depth_messages_count") >= 1.0,
        "{n2}"
    );
    assert_eq!(
        sample(&n2, "oort_transport_connections{transport=\"websocket\"}"),
        1.0
    );
    assert_eq!(sample(&n2, "oort_nats_connected"), 1.0);
    let n1 = metrics(&cluster, "n1").await;
    assert!(
        sample(&n1, "oort_cluster_round_trip_seconds_count{owner=\"n2\"}") >= 1.0,
        "{n1}"
    );
    assert_eq!(
        sample(&n1, "oort_transport_connections{transport=\"websocket\"}"),
        0.0
    );
}

/// A connect through n3 over OTLP/gRPC: its trace (continuing the client's `traceparent`)
/// holds the connect callback, whose request hands the trace on to the backend, and the
/// registration; a send through the owner is local: api → queue and write on one node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_traces_its_callback_and_registration_and_tells_the_backend() {
    let receiver = OtlpReceiver::grpc().await;
    let (_nats, cluster) = traced_cluster(&receiver, true).await;
    let client_trace = "0af7651916cd43dd8448eb211c80319c";
    let client_span = "b7ad6b7169203331";
    let traceparent = format!("00-{client_trace}-{client_span}-01");
    let (mut client, _) = WsClient::connect_with(
        &cluster.node("n3").ws_url("key=connect-traced"),
        &[("traceparent", &traceparent)],
    )
    .await
    .expect("connect");

    let (connect, callback, register) = receiver
        .wait_for(EXPORTED, "the connect's spans", |spans| {
            let connect = one(spans, client_trace, "oort.connect", client_span)?;
            let callback = one(spans, client_trace, "oort.callback", &connect.span_id)?;
            let register = one(spans, client_trace, "oort.register", &connect.span_id)?;
            Some((connect, callback, register))
        })
        .await;
    assert_eq!(
        [&connect, &callback, &register].map(|s| s.instance.as_str()),
        ["n3", "n3", "n3"]
    );
    assert_eq!(
        callback.attributes.get("oort.callback").map(String::as_str),
        Some("connect")
    );
    let recorded = cluster.backend.of_kind(CallbackKind::Connect);
    let request = recorded
        .iter()
        .find(|r| r.uri.query() == Some("key=connect-traced"))
        .expect("the connect callback");
    assert_eq!(
        request.header_all("traceparent"),
        [format!("00-{client_trace}-{}-01", callback.span_id)],
        "the backend continues the trace from the callback's span"
    );
    println!(
        "a traced connect:\n{}",
        describe(&[&connect, &callback, &register], connect.start_unix_nanos)
    );

    let response = cluster
        .http()
        .post(format!("{}/v1/send", cluster.node("n3").api_url()))
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .body(r#"{"sessions":["connect-traced"],"data":"local"}"#)
        .timeout(TIMEOUT)
        .send()
        .await
        .expect("POST /v1/send");
    assert_eq!(response.status(), 200);
    assert_eq!(client.recv_text().await, "local");
    receiver
        .wait_for(EXPORTED, "the local send's queue and write", |spans| {
            let api = one(spans, CALLER_TRACE, "oort.api", CALLER_SPAN)?;
            one(spans, CALLER_TRACE, "oort.queue", &api.span_id)?;
            one(spans, CALLER_TRACE, "oort.write", &api.span_id)?;
            spans
                .iter()
                .filter(|s| s.trace_id == CALLER_TRACE)
                .all(|s| s.name != "oort.forward")
                .then_some(())
        })
        .await;
    let n3 = metrics(&cluster, "n3").await;
    assert!(
        sample(&n3, "oort_send_latency_seconds_count{route=\"local\"}") >= 1.0,
        "{n3}"
    );
}

async fn metrics(cluster: &TestCluster, node: &str) -> String {
    cluster
        .http()
        .get(format!("{}/metrics", cluster.node(node).api_url()))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("the exposition")
}

/// The value of the series `name` (with its labels, as rendered), 0 when absent.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}
