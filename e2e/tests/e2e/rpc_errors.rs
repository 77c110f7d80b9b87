//! The RPC API's error paths, as real clients see them (docs/rpc.md): a missing or wrong token
//! is `unauthenticated` with the JSON API's messages, a malformed message `invalid_argument`, a
//! Send naming nobody `invalid_argument` with the JSON API's message, a message over
//! `limits.max_send_body` `resource_exhausted` (and the connection stays usable for the next
//! call), an unknown method `unimplemented`, and a client's deadline shorter than a
//! RequestReply's `timeout_ms` `deadline_exceeded`.
//!
//! connect-es runs every case over every transport (errors.mjs); what a typed client cannot
//! send (bytes that are not protobuf, JSON that does not parse, a method not in the contract)
//! goes through grpc-js's generic client and through curl.

use std::time::Duration;

use oort_e2e::durable_client::{Data, DurableClient, Event};
use serde_json::{Value, json};

use crate::rpc_support::{
    Budget, Findings, Frame, MAX_SEND_BODY, RpcGateway, TRANSPORTS, curl, label,
};

const LIVE: &str = "rpc-live";
/// An `oort.v1` session whose client never replies.
const SILENT: &str = "v1-silent";
/// The Send with no session, and the JSON API's message for it.
const NO_TARGET: &str = "sessions or users: name at least one session key or user";
const MISSING_TOKEN: &str = "missing bearer token (Authorization: Bearer <api_token>)";
const INVALID_TOKEN: &str = "invalid bearer token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_es_sees_each_error_over_every_transport() {
    let rpc = RpcGateway::start().await;
    let live = rpc.session(LIVE, None).await;
    let silent = requests_to(rpc.oort_v1_session(SILENT).await);
    let mut findings = Findings::default();
    // One bound for every wait below, so a broken server fails the test in time.
    let budget = Budget::new(Duration::from_secs(30));
    let mut asked = Vec::new();
    for (kind, http) in TRANSPORTS {
        let label = label(kind, http);
        let answers = rpc
            .run_node(
                "errors.mjs",
                &[
                    ("OORT_TRANSPORT", kind.to_owned()),
                    ("OORT_HTTP_VERSION", http.to_owned()),
                    ("OORT_SESSION", LIVE.to_owned()),
                    ("OORT_V1_SESSION", SILENT.to_owned()),
                    // Well over the limit, so the client is still writing it when the refusal
                    // comes back: the client must still read that refusal, and then use the
                    // connection again. Just over the limit, the whole body often fits in the
                    // socket buffers before the server answers, and neither is tested.
                    ("OORT_OVERSIZE", (4 * MAX_SEND_BODY).to_string()),
                    ("OORT_LABEL", label.clone()),
                ],
            )
            .await;
        let mut expect = |case: &str, code: &str, message: Option<&str>| {
            let what = format!("{label} {case}");
            let answer = answers.get(case).cloned().unwrap_or(Value::Null);
            findings.expect_at(&what, &answer, "/code", json!(code));
            if let Some(message) = message {
                findings.expect_at(&what, &answer, "/message", json!(message));
            }
        };
        expect("missingToken", "unauthenticated", Some(MISSING_TOKEN));
        expect("wrongToken", "unauthenticated", Some(INVALID_TOKEN));
        expect("noSession", "invalid_argument", Some(NO_TARGET));
        expect("oversized", "resource_exhausted", None);
        expect("unknownMethod", "unimplemented", None);
        expect("clientDeadline", "deadline_exceeded", None);
        expect("serverDeadline", "deadline_exceeded", None);
        // After the oversized message's refusal, the next call (on the connection the
        // client kept) succeeds.
        findings.expect_at(
            &format!("{label} afterOversized"),
            &answers,
            "/afterOversized/answer/role",
            json!("single"),
        );
        // The server's deadline_exceeded came at the deadline, not at timeout_ms (10 s), nor
        // at the client's 5 s bound (which reports `canceled`).
        for case in ["clientDeadline", "serverDeadline"] {
            let elapsed = answers[case]["elapsedMs"].as_u64();
            findings.check(elapsed.is_some_and(|ms| ms < 5_000), || {
                format!(
                    "{label} {case}: answered after {elapsed:?} ms: {}",
                    answers[case]
                )
            });
        }
        findings.expect_at(
            &format!("{label} fence"),
            &answers,
            "/fence/delivery/results/0/status",
            json!("DELIVERY_STATUS_OK"),
        );

        // The refused sends were not delivered: the fence, sent after them, arrived alone.
        let fence = Frame::Text(format!("fence via {label}"));
        let missing = live
            .missing(std::slice::from_ref(&fence), oort_e2e::TIMEOUT)
            .await;
        findings.check(missing.is_empty(), || {
            format!("{label}: the fence did not arrive")
        });
        let refused: Vec<Frame> = live
            .frames()
            .into_iter()
            .filter(|frame| matches!(frame, Frame::Text(text) if text.starts_with("refused")))
            .collect();
        findings.check(refused.is_empty(), || {
            format!("{label}: refused sends were delivered: {refused:?}")
        });
        asked.push(format!("request (server deadline) via {label}"));
    }

    // The requests that ran out of time reached the silent client (they were really asked).
    let mut silent = silent;
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + budget.left();
    while !asked.iter().all(|text| seen.contains(text)) {
        match tokio::time::timeout_at(deadline, silent.recv()).await {
            Ok(Some(text)) => seen.push(text),
            Ok(None) | Err(_) => break,
        }
    }
    let unasked: Vec<&String> = asked.iter().filter(|text| !seen.contains(text)).collect();
    findings.check(unasked.is_empty(), || {
        format!("{SILENT} never received the requests {unasked:?}; it received {seen:?}")
    });
    findings.assert_none("connect-es error paths");
}

/// Reads the `oort.v1` client all along (so it answers the server's pings, however long the
/// run) and passes on the text of every request it gets; it replies to none.
fn requests_to(mut client: DurableClient) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (requests, received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match client.next_event(Duration::from_secs(3600)).await {
                Some(Event::Request(_, _, Data::Text(text))) => {
                    if requests.send(text).is_err() {
                        return;
                    }
                }
                Some(Event::Closed(..)) | None => return,
                Some(_) => {}
            }
        }
    });
    received
}

/// gRPC: bytes that are not protobuf are INVALID_ARGUMENT (3); a method the service does not
/// have is UNIMPLEMENTED (12).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_js_gets_invalid_argument_for_bytes_that_are_not_protobuf() {
    let rpc = RpcGateway::start().await;
    let answer = rpc.run_node("grpc_raw.mjs", &[]).await;
    let mut findings = Findings::default();
    findings.expect_at("grpc-js malformed", &answer, "/malformed/code", json!(3));
    findings.expect_at(
        "grpc-js unknown method",
        &answer,
        "/unknownMethod/code",
        json!(12),
    );
    findings.assert_none("grpc-js raw calls");
}

/// Connect over curl: a body that is not protobuf, or not JSON, is `invalid_argument` (HTTP
/// 400); an unknown method is HTTP 404, which Connect clients read as `unimplemented`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_over_curl_gets_invalid_argument_for_malformed_bodies() {
    let rpc = RpcGateway::start().await;
    let auth = format!("Authorization: Bearer {}", rpc.token);
    let send = format!("{}/oort.v1.GatewayService/Send", rpc.rpc_url());
    // Tag 0x0f: field 1 with wire type 7, which does not exist.
    let not_protobuf = rpc.work.write("not-protobuf.bin", [0x0f, 0xff, 0xff, 0xff]);
    let not_protobuf = format!("@{}", not_protobuf.display());
    let mut findings = Findings::default();
    for (content_type, body) in [
        ("application/proto", not_protobuf.as_str()),
        ("application/json", r#"{"sessions":"#),
    ] {
        let (answer, status, _) = curl(&[
            "-X",
            "POST",
            &send,
            "-H",
            &format!("Content-Type: {content_type}"),
            "-H",
            &auth,
            "--data-binary",
            body,
        ])
        .await;
        let what = format!("malformed {content_type}");
        findings.check(status == 400, || format!("{what}: HTTP {status}: {answer}"));
        match serde_json::from_str::<Value>(&answer) {
            Ok(error) => findings.expect_at(&what, &error, "/code", json!("invalid_argument")),
            Err(_) => findings.check(false, || format!("{what}: not a Connect error: {answer}")),
        }
    }

    let (answer, status, _) = curl(&[
        "-X",
        "POST",
        &format!("{}/oort.v1.GatewayService/Nope", rpc.rpc_url()),
        "-H",
        "Content-Type: application/json",
        "-H",
        &auth,
        "-d",
        "{}",
    ])
    .await;
    findings.check(status == 404, || {
        format!("unknown method: HTTP {status}: {answer}")
    });
    if let Ok(error) = serde_json::from_str::<Value>(&answer)
        && error.get("code").is_some()
    {
        findings.expect_at("unknown method", &error, "/code", json!("unimplemented"));
    }
    findings.assert_none("Connect over curl");
}
