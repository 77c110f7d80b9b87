//! Named Durable Streams across nodes (docs/streams.md, docs/router.md "Durable Streams
//! ownership"): a stream lost with its owner says so, and a write through another node starts
//! it again with a higher generation; a channel's stream and the channel's WebSocket
//! subscribers see one order; a delete through any node frees the name for any other.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream;
use http::{HeaderMap, Method};
use oort_e2e::cluster::{FAST_TIMINGS, TestCluster};
use oort_e2e::nats::NatsServer;
use oort_e2e::{WsClient, eventually, http_client_builder};
use serde_json::{Value, json};

use crate::CONVERGE;

/// Three nodes with an API token (stream writes need it), converged; and the token.
async fn three_nodes_with_token() -> (NatsServer, TestCluster, String) {
    let nats = NatsServer::start().await;
    let mut cluster = TestCluster::new(vec![nats.url()], FAST_TIMINGS).await;
    let token = format!("{:032x}", rand::random::<u128>());
    cluster.set_api_token(&token);
    for name in ["n1", "n2", "n3"] {
        cluster.add(name, 3).await;
    }
    cluster.wait_converged(3, 3, CONVERGE).await;
    (nats, cluster, token)
}

/// An HTTP answer, read whole.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.text()))
    }

    fn next_offset(&self) -> String {
        self.headers
            .get("stream-next-offset")
            .unwrap_or_else(|| panic!("no Stream-Next-Offset on a {}", self.status))
            .to_str()
            .unwrap()
            .to_owned()
    }
}

/// `method <node>/v1/stream/<name><query>` with the API token (the cluster's client sends it),
/// and a `Content-Type` when `content_type` is not empty.
async fn call(
    cluster: &TestCluster,
    node: &str,
    method: Method,
    name: &str,
    query: &str,
    content_type: &str,
    body: &str,
) -> Answer {
    let url = format!("{}/v1/stream/{name}{query}", cluster.node(node).api_url());
    let mut request = cluster.http().request(method.clone(), &url);
    if !content_type.is_empty() {
        request = request.header("content-type", content_type);
    }
    let response = request
        .body(body.to_owned())
        .send()
        .await
        .unwrap_or_else(|err| panic!("{method} {url}: {err}"));
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.bytes().await.expect("the body").to_vec(),
    }
}

/// The generation and position of an offset `<generation>_<position>`.
fn parse_offset(offset: &str) -> (u64, u64) {
    let (generation, position) = offset
        .split_once('_')
        .unwrap_or_else(|| panic!("{offset:?} is not <generation>_<position>"));
    (
        generation.parse().expect("a generation"),
        position.parse().expect("a position"),
    )
}

/// Three nodes; a stream created through n1 (its owner), appended to through n2, read through
/// n3. n1 is killed: once the cluster has declared it down, a read through n2 answers 503
/// saying n1 is gone with the messages (never the old data); a POST through n3 claims the
/// stream again with a higher generation, empty but for that append; reads of the old
/// generation's offsets answer 410, and a read from the start sees only the new message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_owner_answers_clearly_then_a_write_starts_a_new_generation() {
    let (_nats, mut cluster, _token) = three_nodes_with_token().await;
    let name = "lost";
    let created = call(&cluster, "n1", Method::PUT, name, "", "text/plain", "one,").await;
    assert_eq!(created.status, 201, "{}", created.text());
    let appended = call(&cluster, "n2", Method::POST, name, "", "text/plain", "two").await;
    assert_eq!(appended.status, 204, "{}", appended.text());
    let old_tail = appended.next_offset();
    let (old_generation, old_position) = parse_offset(&old_tail);
    assert_eq!(old_position, 2, "two messages: {old_tail}");
    let read = call(&cluster, "n3", Method::GET, name, "?offset=-1", "", "").await;
    assert_eq!((read.status, read.text().as_str()), (200, "one,two"));
    assert_eq!(read.next_offset(), old_tail);

    cluster.kill("n1").await;
    // Until the cluster declares n1 down, a read through n2 may fail reaching it (503, some
    // other reason); it must never answer anything but a 503.
    let gone = eventually(CONVERGE, "a read through n2 to say n1 is gone", || async {
        let read = call(&cluster, "n2", Method::GET, name, "?offset=-1", "", "").await;
        assert_eq!(
            read.status,
            503,
            "a read of a stream whose owner was killed: {}",
            read.text()
        );
        let error = read.json()["error"].as_str().unwrap_or_default().to_owned();
        error.contains("gone").then_some(error)
    })
    .await;
    assert!(
        gone.contains("(n1)"),
        "the error names the lost owner: {gone}"
    );
    assert!(
        gone.contains("messages"),
        "the error says the messages are lost: {gone}"
    );

    let restarted = call(
        &cluster,
        "n3",
        Method::POST,
        name,
        "",
        "text/plain",
        "three",
    )
    .await;
    assert_eq!(restarted.status, 204, "{}", restarted.text());
    let new_tail = restarted.next_offset();
    let (new_generation, new_position) = parse_offset(&new_tail);
    assert!(
        new_generation > old_generation,
        "{new_tail} is of a newer generation than {old_tail}"
    );
    assert_eq!(
        new_position, 1,
        "the stream starts again, empty: {new_tail}"
    );
    assert!(new_tail > old_tail, "offsets sort across generations");

    for old in [
        old_tail.as_str(),
        &format!("{old_generation:016}_{:016}", 0),
    ] {
        let read = call(
            &cluster,
            "n2",
            Method::GET,
            name,
            &format!("?offset={old}"),
            "",
            "",
        )
        .await;
        assert_eq!(read.status, 410, "offset {old}: {}", read.text());
    }
    let read = call(&cluster, "n2", Method::GET, name, "?offset=-1", "", "").await;
    assert_eq!((read.status, read.text().as_str()), (200, "three"));
    assert_eq!(read.next_offset(), new_tail);
}

/// `POST <node>/v1/publish` with `data`; the answer's JSON (asserting a 200).
async fn publish(http: &reqwest::Client, api: &str, channel: &str, data: &str) -> Value {
    let body = json!({ "channels": [channel], "data": data });
    let response = http
        .post(format!("{api}/v1/publish"))
        .body(body.to_string())
        .send()
        .await
        .expect("POST /v1/publish");
    let status = response.status();
    let bytes = response.bytes().await.expect("the answer");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    serde_json::from_slice(&bytes).expect("a JSON answer")
}

/// Reads an SSE response until `want` messages (JSON values) have arrived: the values in
/// order, and the last control event's `streamNextOffset`. `ready` is told once the first
/// control event arrives (the reader is at the tail and waiting).
async fn read_sse(
    response: reqwest::Response,
    want: usize,
    ready: tokio::sync::oneshot::Sender<()>,
) -> (Vec<Value>, String) {
    let mut response = response;
    let mut ready = Some(ready);
    let mut buffer = String::new();
    let mut values = Vec::new();
    let mut next_offset = String::new();
    while values.len() < want {
        let chunk = response
            .chunk()
            .await
            .expect("the SSE body")
            .unwrap_or_else(|| panic!("the SSE response ended after {} values", values.len()));
        buffer.push_str(std::str::from_utf8(&chunk).expect("UTF-8 events"));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let mut kind = "";
            let mut data = Vec::new();
            for line in event.lines() {
                if let Some(name) = line.strip_prefix("event:") {
                    kind = name.trim();
                } else if let Some(line) = line.strip_prefix("data:") {
                    data.push(line);
                }
            }
            let data: Value = serde_json::from_str(&data.join("\n"))
                .unwrap_or_else(|err| panic!("event data is JSON ({err}): {event:?}"));
            match kind {
                "data" => values.extend(data.as_array().expect("a JSON array").iter().cloned()),
                "control" => {
                    next_offset = data["streamNextOffset"]
                        .as_str()
                        .expect("streamNextOffset")
                        .to_owned();
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                }
                other => panic!("unexpected SSE event {other:?}: {event:?}"),
            }
        }
    }
    (values, next_offset)
}

/// Three nodes; a JSON stream `channels/room` created through n1; a WebSocket subscriber of
/// channel `room` on n2; an SSE reader of the stream through n3. 200 messages published at
/// once, half through n2 and half through n3 (several requests in flight on each): the
/// subscriber gets the same messages in the same order as the stream holds them, every
/// publish answer gives the offset of its message in the stream, and each reached the
/// subscriber.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_stream_readers_see_what_subscribers_see() {
    const PER_NODE: usize = 100;
    let (_nats, cluster, token) = three_nodes_with_token().await;
    let name = "channels/room";
    let created = call(
        &cluster,
        "n1",
        Method::PUT,
        name,
        "",
        "application/json",
        "",
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let (generation, _) = parse_offset(&created.next_offset());

    // n2 and n3 learn of the stream when their replicas apply its entry: until then a publish
    // through them goes to the channel alone (with no subscriber yet, nowhere). Probe until
    // each publishes through the stream; the probes are in the stream, before `start`.
    let mut start = created.next_offset();
    for node in ["n2", "n3"] {
        let api = cluster.node(node).api_url();
        let offset = eventually(
            CONVERGE,
            &format!("{node} to publish room through its stream"),
            || async {
                let answer = publish(cluster.http(), &api, "room", "\"probe\"").await;
                answer["streams"]["room"]["offset"]
                    .as_str()
                    .map(str::to_owned)
            },
        )
        .await;
        start = start.max(offset);
    }

    let mut subscriber =
        WsClient::connect(&cluster.node("n2").ws_url("key=sub&channels=room")).await;
    // The owner (n1) publishes to the nodes its replica knows to hold subscribers.
    eventually(CONVERGE, "n1 to see room's subscriber", || async {
        let response = cluster
            .http()
            .get(format!("{}/v1/channels/room", cluster.node("n1").api_url()))
            .send()
            .await
            .ok()?;
        let presence: Value = serde_json::from_slice(&response.bytes().await.ok()?).ok()?;
        (presence["sessions"] == 1).then_some(())
    })
    .await;

    // The SSE reader through n3, from the tail; its own client, as the harness's bounds whole
    // requests (bodies included) at 10 s.
    let sse_client = http_client_builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("HTTP client");
    let response = sse_client
        .get(format!(
            "{}/v1/stream/{name}?offset={start}&live=sse",
            cluster.node("n3").api_url()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("the SSE read");
    assert_eq!(response.status(), 200);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(read_sse(response, 2 * PER_NODE, ready_tx));
    tokio::time::timeout(CONVERGE, ready_rx)
        .await
        .expect("the SSE reader's first control event in time")
        .expect("the SSE reader is running");

    // Two backends, one through n2 and one through n3, each with 4 publishes in flight.
    let publishers = ["n2", "n3"].map(|node| {
        let http = cluster.http().clone();
        let api = cluster.node(node).api_url();
        tokio::spawn(async move {
            stream::iter(0..PER_NODE)
                .map(|i| {
                    let message = json!({ "from": node, "i": i });
                    let (http, api) = (http.clone(), api.clone());
                    async move {
                        let answer = publish(&http, &api, "room", &message.to_string()).await;
                        (message, answer)
                    }
                })
                .buffer_unordered(4)
                .collect::<Vec<_>>()
                .await
        })
    });
    let mut published = Vec::new();
    for publisher in publishers {
        published.extend(
            tokio::time::timeout(Duration::from_secs(60), publisher)
                .await
                .expect("the publishes in time")
                .expect("the publisher"),
        );
    }

    let (streamed, next_offset) = tokio::time::timeout(CONVERGE, reader)
        .await
        .expect("the SSE reader to get every message in time")
        .expect("the SSE reader");
    let mut delivered = Vec::with_capacity(2 * PER_NODE);
    for _ in 0..2 * PER_NODE {
        let text = subscriber.recv_text().await;
        delivered.push(serde_json::from_str::<Value>(&text).expect("a JSON message"));
    }
    assert!(
        subscriber.nothing_within(Duration::from_millis(300)).await,
        "the subscriber gets each message once"
    );

    assert_eq!(
        delivered, streamed,
        "the subscriber and the stream's reader see one order"
    );
    let sent: BTreeSet<String> = published.iter().map(|(m, _)| m.to_string()).collect();
    let seen: BTreeSet<String> = streamed.iter().map(ToString::to_string).collect();
    assert_eq!((sent.len(), seen.len()), (2 * PER_NODE, 2 * PER_NODE));
    assert_eq!(sent, seen, "the stream holds every message once");

    let (start_generation, start_position) = parse_offset(&start);
    assert_eq!(start_generation, generation);
    let (_, end_position) = parse_offset(&next_offset);
    assert_eq!(end_position, start_position + 2 * PER_NODE as u64);
    for (message, answer) in &published {
        assert_eq!(answer["sessions"], 1, "{answer}");
        let offset = answer["streams"]["room"]["offset"]
            .as_str()
            .unwrap_or_else(|| panic!("the answer names the stream's offset: {answer}"));
        let (answer_generation, position) = parse_offset(offset);
        assert_eq!(answer_generation, generation, "{answer}");
        // The offset after the message: the message is at position - 1.
        let index = usize::try_from(position - start_position - 1).unwrap();
        assert_eq!(
            &streamed[index], message,
            "the answer's offset {offset} is its message's"
        );
    }
}

/// A stream created through n1 and deleted through n2 is gone through n3 (404); n3 can then
/// create the name again, with a higher generation, and owns it: reads through n1 and n2 see
/// the new content, and once n3 is killed a read through n1 names n3 as the lost owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_through_any_node_frees_the_name() {
    let (_nats, mut cluster, _token) = three_nodes_with_token().await;
    let name = "reused";
    let created = call(&cluster, "n1", Method::PUT, name, "", "text/plain", "old").await;
    assert_eq!(created.status, 201, "{}", created.text());
    let (old_generation, _) = parse_offset(&created.next_offset());

    let deleted = call(&cluster, "n2", Method::DELETE, name, "", "", "").await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    let read = call(&cluster, "n3", Method::GET, name, "?offset=-1", "", "").await;
    assert_eq!(read.status, 404, "{}", read.text());
    let head = call(&cluster, "n1", Method::HEAD, name, "", "", "").await;
    assert_eq!(head.status, 404, "HEAD through the old owner");

    let again = call(&cluster, "n3", Method::PUT, name, "", "text/plain", "new").await;
    assert_eq!(again.status, 201, "{}", again.text());
    let (new_generation, position) = parse_offset(&again.next_offset());
    assert!(new_generation > old_generation, "{new_generation}");
    assert_eq!(position, 1);

    let read = call(&cluster, "n1", Method::GET, name, "?offset=-1", "", "").await;
    assert_eq!((read.status, read.text().as_str()), (200, "new"));
    assert_eq!(read.next_offset(), again.next_offset());
    let appended = call(&cluster, "n1", Method::POST, name, "", "text/plain", "+").await;
    assert_eq!(appended.status, 204, "{}", appended.text());
    let read = call(&cluster, "n2", Method::GET, name, "?offset=-1", "", "").await;
    assert_eq!((read.status, read.text().as_str()), (200, "new+"));

    // n3 owns it: with n3 killed, a read through n1 names n3 as the lost owner.
    cluster.kill("n3").await;
    let gone = eventually(CONVERGE, "a read through n1 to say n3 is gone", || async {
        let read = call(&cluster, "n1", Method::GET, name, "?offset=-1", "", "").await;
        assert_eq!(read.status, 503, "{}", read.text());
        let error = read.json()["error"].as_str().unwrap_or_default().to_owned();
        error.contains("gone").then_some(error)
    })
    .await;
    assert!(gone.contains("(n3)"), "n3 owned the stream: {gone}");
}
