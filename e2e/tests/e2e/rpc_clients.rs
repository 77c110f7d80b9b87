//! The RPC API (oort.v1.GatewayService, docs/rpc.md) works with clients no one here wrote,
//! against the real `oort` process:
//!
//! - connect-es (@connectrpc/connect-node) with the service read at run time from
//!   `buf build`'s FileDescriptorSet, over Connect (JSON, binary, GET), gRPC and gRPC-Web, on
//!   HTTP/1.1 and HTTP/2 where the protocol has it: every unary RPC, and WatchEvents;
//! - @grpc/grpc-js with @grpc/proto-loader reading gateway.proto;
//! - `buf curl` with each protocol, and plain curl speaking Connect's JSON (POST and GET);
//! - HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on the same API port.
//!
//! Deliveries are checked where they land: a real WebSocket client connected through the
//! gateway must receive each distinct message. The Node scripts are in e2e/rpc-clients.

use std::time::Duration;

use serde_json::{Value, json};

use crate::rpc_support::{
    Budget, Findings, Frame, PROTO_ROOT, RpcGateway, RunningScript, SCRIPT_TIMEOUT, TRANSPORTS,
    buf, curl, label, run,
};
use crate::support::describe;

/// The live session every delivery is checked on, and its user.
const LIVE: &str = "rpc-live";
const USER: &str = "rpc-user";
const OK: &str = "DELIVERY_STATUS_OK";

fn text(value: &str) -> Frame {
    Frame::Text(value.to_owned())
}

/// What unary.mjs answered over one transport, against the contract.
fn check_unary(findings: &mut Findings, label: &str, answers: &Value, channel: &str) {
    let what = |rpc: &str| format!("{label} {rpc}");
    if let Some(answers) = answers.as_object() {
        for (rpc, answer) in answers {
            findings.check(answer.get("error").is_none(), || {
                format!("{}: failed with {}", what(rpc), answer["error"])
            });
        }
    }
    let a = |rpc: &str| answers.get(rpc).cloned().unwrap_or(Value::Null);

    let send = a("send");
    findings.expect_at(
        &what("Send"),
        &send,
        "/delivery/results/0/session",
        json!(LIVE),
    );
    findings.expect_at(
        &what("Send"),
        &send,
        "/delivery/results/0/status",
        json!(OK),
    );
    findings.expect_at(&what("Send"), &send, "/delivery/ok", json!(1));

    let batch = a("sendBatch");
    for index in 0..2 {
        let pointer = format!("/messages/{index}/results/0/status");
        findings.expect_at(&what("SendBatch"), &batch, &pointer, json!(OK));
    }
    findings.expect_at(&what("SendBatch"), &batch, "/ok", json!(2));

    // Every session of the node: the live one, and the one Close ends (not yet closed).
    let broadcast = a("broadcast");
    let reached = broadcast["sessions"]
        .as_str()
        .and_then(|count| count.parse::<u64>().ok());
    findings.check(reached.is_some_and(|count| count >= 2), || {
        format!(
            "{}: sessions should count at least 2: {broadcast}",
            what("Broadcast")
        )
    });

    for rpc in ["subscribe", "unsubscribe"] {
        let answer = a(rpc);
        findings.expect_at(&what(rpc), &answer, "/delivery/results/0/status", json!(OK));
    }

    let session = a("getSession");
    findings.expect_at(&what("GetSession"), &session, "/session", json!(LIVE));
    findings.expect_at(&what("GetSession"), &session, "/heldHere", json!(true));
    findings.expect_at(&what("GetSession"), &session, "/connected", json!(true));
    findings.expect_at(&what("GetSession"), &session, "/channels", json!([channel]));

    let members = a("getChannel");
    findings.expect_at(&what("GetChannel"), &members, "/channel", json!(channel));
    findings.expect_at(&what("GetChannel"), &members, "/sessions", json!("1"));
    findings.expect_at(
        &what("GetChannel"),
        &members,
        "/members/0/session",
        json!(LIVE),
    );

    let publish = a("publish");
    findings.expect_at(&what("Publish"), &publish, "/sessions", json!("1"));
    findings.expect_at(&what("Publish"), &publish, "/nodes", json!(1));

    let cluster = a("getCluster");
    findings.expect_at(&what("GetCluster"), &cluster, "/role", json!("single"));
    findings.expect_at(&what("GetCluster"), &cluster, "/ready", json!(true));
    findings.check(
        cluster["node"]
            .as_str()
            .is_some_and(|node| !node.is_empty()),
        || format!("{}: no node name: {cluster}", what("GetCluster")),
    );

    let user = a("getUser");
    findings.expect_at(&what("GetUser"), &user, "/user", json!(USER));
    findings.expect_at(&what("GetUser"), &user, "/sessions/0/session", json!(LIVE));

    let request = a("requestReply");
    findings.expect_at(&what("RequestReply"), &request, "/session", json!(LIVE));
    findings.expect_at(
        &what("RequestReply"),
        &request,
        "/status",
        json!("DELIVERY_STATUS_UNSUPPORTED"),
    );

    let close = a("close");
    findings.expect_at(
        &what("Close"),
        &close,
        "/delivery/results/0/status",
        json!(OK),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_es_calls_every_unary_rpc_over_every_transport() {
    let rpc = RpcGateway::start().await;
    let live = rpc.session(LIVE, Some(USER)).await;
    let mut findings = Findings::default();
    let budget = Budget::new(Duration::from_secs(30));
    for (kind, http) in TRANSPORTS {
        let label = label(kind, http);
        let closed_key = format!("closed-{label}");
        let closed = rpc.session(&closed_key, None).await;
        let channel = format!("rpc.{label}");
        let answers = rpc
            .run_node(
                "unary.mjs",
                &[
                    ("OORT_TRANSPORT", kind.to_owned()),
                    ("OORT_HTTP_VERSION", http.to_owned()),
                    ("OORT_SESSION", LIVE.to_owned()),
                    ("OORT_USER", USER.to_owned()),
                    ("OORT_CLOSE_SESSION", closed_key.clone()),
                    ("OORT_CHANNEL", channel.clone()),
                    ("OORT_LABEL", label.clone()),
                ],
            )
            .await;
        check_unary(&mut findings, &label, &answers, &channel);

        // What unary.mjs sent (its texts are "<rpc> via <label>") reached the clients. Only
        // the deliveries of calls that succeeded are waited for (a failed call is a finding
        // already), and all waits share one budget, so a broken server fails the test in time.
        let succeeded = |rpc: &str| answers.get(rpc).is_some_and(|a| a.get("error").is_none());
        let expected: Vec<Frame> = [
            ("send", text(&format!("send via {label}"))),
            ("sendBatch", text(&format!("batch text via {label}"))),
            (
                "sendBatch",
                Frame::Binary(format!("batch binary via {label}").into_bytes()),
            ),
            ("broadcast", text(&format!("broadcast via {label}"))),
            ("publish", text(&format!("publish via {label}"))),
        ]
        .into_iter()
        .filter(|(rpc, _)| succeeded(rpc))
        .map(|(_, frame)| frame)
        .collect();
        let missing = live.missing(&expected, budget.left()).await;
        findings.check(missing.is_empty(), || {
            format!("{label}: {LIVE} did not receive {missing:?}")
        });
        if succeeded("close") {
            let last_words = [
                text(&format!("bye via {label}")),
                Frame::Close(Some((4001, "rpc close".to_owned()))),
            ];
            let missing = closed.missing(&last_words, budget.left()).await;
            findings.check(missing.is_empty(), || {
                format!(
                    "{label}: {closed_key} did not receive {missing:?}; it received {:?}",
                    closed.frames()
                )
            });
        }
    }
    findings.assert_none("connect-es unary RPCs");
}

/// WatchEvents over every transport: once the stream is open, a new session connects and sends
/// a message, and the stream yields that session's `connected`, then its `message`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_es_watches_a_connect_and_a_message_over_every_transport() {
    let rpc = RpcGateway::start().await;
    let mut findings = Findings::default();
    let mut unimplemented = Vec::new();
    for (kind, http) in TRANSPORTS {
        let label = label(kind, http);
        let watched = format!("watched-{label}");
        let mut script = RunningScript::spawn(rpc.node(
            "watch.mjs",
            &[
                ("OORT_TRANSPORT", kind.to_owned()),
                ("OORT_HTTP_VERSION", http.to_owned()),
                ("OORT_WATCH_SESSION", watched.clone()),
                ("OORT_LABEL", label.clone()),
            ],
        ));
        let first = script.next_json(SCRIPT_TIMEOUT).await;
        let last = if first.get("watching").is_some() {
            let mut client =
                oort_e2e::WsClient::connect(&rpc.ws_url(&format!("key={watched}"))).await;
            client.send_text(&format!("hello from {label}")).await;
            let last = script.next_json(SCRIPT_TIMEOUT).await;
            drop(client);
            last
        } else {
            first
        };
        script.finish().await;
        if let Some(message) = last.get("unimplemented") {
            unimplemented.push(format!("{label}: {message}"));
            continue;
        }
        let events = last["events"].as_array().cloned().unwrap_or_default();
        let kinds: Vec<&str> = events
            .iter()
            .filter_map(|event| {
                ["connected", "message", "closed", "presence"]
                    .into_iter()
                    .find(|kind| event.get(*kind).is_some())
            })
            .collect();
        findings.check(kinds.first() == Some(&"connected"), || {
            format!("{label}: the first event of {watched} is not `connected`: {last}")
        });
        findings.check(kinds.last() == Some(&"message"), || {
            format!("{label}: no `message` event for {watched} after `connected`: {last}")
        });
        if let Some(message) = events.last() {
            findings.expect_at(
                &format!("{label} WatchEvents"),
                message,
                "/message/payload/text",
                json!(format!("hello from {label}")),
            );
            findings.check(
                message["node"]
                    .as_str()
                    .is_some_and(|node| !node.is_empty()),
                || format!("{label}: the event names no node: {message}"),
            );
        }
    }
    findings.check(unimplemented.is_empty(), || {
        format!("WatchEvents is unimplemented over these transports: {unimplemented:?}")
    });
    findings.assert_none("connect-es WatchEvents");
}

/// grpc-js, the reference gRPC client for Node, with the .proto loaded as is: a Send reaches
/// the live session; a wrong token is UNAUTHENTICATED (16) with the JSON API's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_js_sends_and_is_refused_with_a_wrong_token() {
    let rpc = RpcGateway::start().await;
    let live = rpc.session(LIVE, None).await;
    let answer = rpc
        .run_node(
            "grpc_js.mjs",
            &[
                ("OORT_SESSION", LIVE.to_owned()),
                ("OORT_TEXT", "via grpc-js".to_owned()),
            ],
        )
        .await;
    let mut findings = Findings::default();
    let status = "/send/answer/delivery/results/0/status";
    findings.expect_at("grpc-js Send", &answer, status, json!(OK));
    findings.expect_at("grpc-js wrong token", &answer, "/badToken/code", json!(16));
    findings.expect_at(
        "grpc-js wrong token",
        &answer,
        "/badToken/details",
        json!("invalid bearer token"),
    );
    findings.assert_none("grpc-js");
    live.expect(text("via grpc-js")).await;
}

/// `buf curl` with the schema from common/proto, once per protocol (gRPC over cleartext needs
/// `--http2-prior-knowledge`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buf_curl_sends_with_each_protocol() {
    let rpc = RpcGateway::start().await;
    let live = rpc.session(LIVE, None).await;
    let url = format!("{}/oort.v1.GatewayService/Send", rpc.rpc_url());
    let mut findings = Findings::default();
    for protocol in ["connect", "grpc", "grpcweb"] {
        let sent = format!("via buf curl {protocol}");
        let body = json!({ "sessions": [LIVE], "payload": { "text": sent } }).to_string();
        let mut command = tokio::process::Command::new(buf());
        command
            .args(["curl", "--schema", PROTO_ROOT, "--protocol", protocol])
            .args(["-H", &format!("Authorization: Bearer {}", rpc.token)])
            .args(["-d", &body]);
        if protocol == "grpc" {
            command.arg("--http2-prior-knowledge");
        }
        command.arg(&url);
        let output = run(command, SCRIPT_TIMEOUT).await;
        let what = format!("buf curl --protocol {protocol}");
        if !output.status.success() {
            findings.check(false, || format!("{what} failed\n{}", describe(&output)));
            continue;
        }
        match serde_json::from_slice::<Value>(&output.stdout) {
            Ok(answer) => {
                findings.expect_at(&what, &answer, "/delivery/results/0/status", json!(OK));
            }
            Err(err) => findings.check(false, || {
                format!("{what}: not JSON ({err})\n{}", describe(&output))
            }),
        }
        let missing = live.missing(&[text(&sent)], oort_e2e::TIMEOUT).await;
        findings.check(missing.is_empty(), || {
            format!("{what}: {LIVE} did not receive {sent:?}")
        });
    }
    findings.assert_none("buf curl");
}

/// Plain curl speaks Connect's JSON: a POST of Send, and a GET of a read-only RPC (Connect's
/// GET: `?encoding=json&message=<url-encoded JSON>`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_speaks_connect_json_with_post_and_get() {
    let rpc = RpcGateway::start().await;
    let live = rpc.session(LIVE, None).await;
    let auth = format!("Authorization: Bearer {}", rpc.token);
    let body = json!({ "sessions": [LIVE], "payload": { "text": "hi" } }).to_string();
    let (answer, status, _) = curl(&[
        "-X",
        "POST",
        &format!("{}/oort.v1.GatewayService/Send", rpc.rpc_url()),
        "-H",
        "Content-Type: application/json",
        "-H",
        &auth,
        "-d",
        &body,
    ])
    .await;
    assert_eq!(status, 200, "POST Send: {answer}");
    let answer: Value =
        serde_json::from_str(&answer).unwrap_or_else(|err| panic!("{err}: {answer}"));
    assert_eq!(
        answer.pointer("/delivery/results/0/status"),
        Some(&json!(OK)),
        "POST Send: {answer}"
    );
    live.expect(text("hi")).await;

    let (answer, status, _) = curl(&[
        "-G",
        &format!("{}/oort.v1.GatewayService/GetCluster", rpc.rpc_url()),
        "--data-urlencode",
        "encoding=json",
        "--data-urlencode",
        "message={}",
        "-H",
        &auth,
    ])
    .await;
    assert_eq!(status, 200, "GET GetCluster: {answer}");
    let answer: Value =
        serde_json::from_str(&answer).unwrap_or_else(|err| panic!("{err}: {answer}"));
    assert_eq!(answer["role"], "single", "GET GetCluster: {answer}");
    assert_eq!(answer["ready"], true, "GET GetCluster: {answer}");
}

/// One API port speaks HTTP/1.1 and HTTP/2 with prior knowledge (h2c): curl sends the same
/// Connect POST both ways and both reach the session. Both on a separate API listener
/// (`api_listen`) and on the client listener the API shares when there is none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_h2c_reach_the_rpc_api_on_one_port() {
    for api_listen in [true, false] {
        let rpc = RpcGateway::start_with(api_listen).await;
        let live = rpc.session(LIVE, None).await;
        let auth = format!("Authorization: Bearer {}", rpc.token);
        let url = format!("{}/oort.v1.GatewayService/Send", rpc.rpc_url());
        for (flag, version) in [("--http1.1", "1.1"), ("--http2-prior-knowledge", "2")] {
            let what = format!("curl {flag} (api_listen set: {api_listen})");
            let sent = format!("over HTTP/{version}");
            let body = json!({ "sessions": [LIVE], "payload": { "text": sent } }).to_string();
            let (answer, status, spoken) = curl(&[
                flag,
                "-X",
                "POST",
                &url,
                "-H",
                "Content-Type: application/json",
                "-H",
                &auth,
                "-d",
                &body,
            ])
            .await;
            assert_eq!(
                (status, spoken.as_str()),
                (200, version),
                "{what}: {answer}"
            );
            let answer: Value =
                serde_json::from_str(&answer).unwrap_or_else(|err| panic!("{err}: {answer}"));
            assert_eq!(
                answer.pointer("/delivery/results/0/status"),
                Some(&json!(OK)),
                "{what}: {answer}"
            );
            live.expect(text(&sent)).await;
        }
    }
}
