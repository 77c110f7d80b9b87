//! Sessions read over HTTP (Durable Streams) in a cluster, sticky-free: every request of one
//! client may land on any node, as behind a plain Kubernetes Service, and nothing is lost,
//! repeated or reordered, with no raft write per request.

use oort_e2e::http_stream::{HttpSession, messages};
use oort_e2e::{CallbackKind, TIMEOUT};

use crate::three_nodes;

const NODES: [&str; 3] = ["n1", "n2", "n3"];

fn any_node() -> &'static str {
    NODES[rand::random::<u32>() as usize % NODES.len()]
}

#[tokio::test]
async fn polls_sends_and_messages_through_random_nodes_arrive_once_in_order() {
    let (_nats, cluster) = three_nodes().await;
    let base = |node: &str| format!("http://{}", cluster.node(node).addr.expect("running"));
    let session = HttpSession::connect(&base("n1"), "key=roamer").await;
    const SENDS: usize = 150;
    let sender = async {
        for n in 1..=SENDS {
            let status = cluster
                .v1_send(any_node(), &["roamer"], &format!("m{n}"))
                .await;
            assert!(
                status == ["ok"] || status == ["buffered"],
                "send {n}: {status:?}"
            );
            if n % 10 == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    let poller = async {
        let mut received = Vec::new();
        let mut offset = "-1".to_owned();
        let mut nodes_polled = std::collections::BTreeSet::new();
        while received.len() < SENDS {
            let node = any_node();
            nodes_polled.insert(node);
            let response = tokio::time::timeout(
                TIMEOUT,
                session.get_on(&base(node), &format!("offset={offset}&live=long-poll")),
            )
            .await
            .expect("a poll answered in time");
            assert!(
                [200, 204].contains(&response.status().as_u16()),
                "poll through {node}: {}",
                response.status()
            );
            offset = response.headers()["stream-next-offset"]
                .to_str()
                .unwrap()
                .to_owned();
            if response.status() == 200 {
                received.extend(messages(response).await);
            }
        }
        (received, nodes_polled, offset)
    };
    let ((), (received, nodes_polled, offset)) = tokio::join!(sender, poller);
    let expected: Vec<(u64, String)> = (1..=SENDS as u64).map(|n| (n, format!("m{n}"))).collect();
    assert_eq!(received, expected, "exactly once, in order");
    assert!(nodes_polled.len() > 1, "polls went through several nodes");
    // Reads were served where the session is: it never moved (no raft write per poll).
    for node in NODES {
        assert_eq!(
            cluster.owner_in_replica(node, "roamer").await.as_deref(),
            Some("n1")
        );
    }

    // The client's own messages, each through a random node, reach the backend in order.
    for n in 0..10 {
        let answer = session.post_on(&base(any_node()), &format!("c{n}")).await;
        assert_eq!(answer.status(), 204);
    }
    let received = cluster
        .backend
        .wait_for(CallbackKind::Receive, "roamer", 10, TIMEOUT)
        .await;
    let bodies: Vec<String> = received
        .iter()
        .map(|r| String::from_utf8(r.body.to_vec()).unwrap())
        .collect();
    let expected: Vec<String> = (0..10).map(|n| format!("c{n}")).collect();
    assert_eq!(bodies, expected);

    // SSE through a node that does not hold the session.
    let mut sse = session
        .get_on(&base("n3"), &format!("offset={offset}&live=sse"))
        .await;
    assert_eq!(sse.status(), 200);
    for n in 1..=5 {
        cluster.v1_send("n2", &["roamer"], &format!("s{n}")).await;
    }
    let mut text = String::new();
    tokio::time::timeout(TIMEOUT, async {
        while !text.contains("\"s5\"") {
            let chunk = sse.chunk().await.unwrap().expect("more events");
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await
    .expect("the SSE events through n3 in time");
    let seqs: Vec<u64> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data: ["))
        .flat_map(|batch| {
            let array: serde_json::Value = serde_json::from_str(&format!("[{batch}")).unwrap();
            array
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["seq"].as_u64().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    let first = SENDS as u64 + 1;
    assert_eq!(seqs, (first..first + 5).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_rolling_restart_loses_nothing_for_an_http_client() {
    let (_nats, mut cluster) = three_nodes().await;
    let bases: std::collections::HashMap<&str, String> = NODES
        .iter()
        .map(|node| {
            (
                *node,
                format!("http://{}", cluster.node(node).addr.expect("running")),
            )
        })
        .collect();
    let apis: std::collections::HashMap<&str, String> = NODES
        .iter()
        .map(|node| (*node, cluster.node(node).api_url()))
        .collect();
    let http = oort_e2e::http_client();
    let session = HttpSession::connect(&bases["n1"], "key=restarted").await;
    let usable = std::sync::Mutex::new(vec!["n1", "n2", "n3"]);
    let pick = || {
        let usable = usable.lock().unwrap();
        usable[rand::random::<u32>() as usize % usable.len()]
    };
    const SENDS: usize = 120;
    let sender = async {
        let mut n = 1;
        while n <= SENDS {
            let node = pick();
            let body = serde_json::json!({"sessions": ["restarted"], "data": format!("m{n}")});
            let url = format!("{}/v1/send", apis[node]);
            let Ok(response) = http.post(url).body(body.to_string()).send().await else {
                continue; // That node stopped accepting meanwhile: another one.
            };
            let answer: serde_json::Value =
                serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
            let status = answer["results"][0]["status"].as_str().unwrap_or_default();
            assert!(
                status == "ok" || status == "buffered",
                "send {n} through {node}: {answer}"
            );
            n += 1;
            tokio::time::sleep(std::time::Duration::from_millis(15)).await;
        }
    };
    let poller = async {
        let mut received = Vec::new();
        let mut offset = "-1".to_owned();
        while received.len() < SENDS {
            let node = pick();
            let query = format!("offset={offset}&live=long-poll");
            let poll = session.get_on(&bases[node], &query);
            let Ok(response) = tokio::time::timeout(TIMEOUT, poll).await else {
                panic!("a poll through {node} was not answered in time");
            };
            match response.status().as_u16() {
                200 | 204 => {}
                // The old node answered while shutting down: retry, as clients do.
                503 => continue,
                other => panic!("poll through {node}: {other}"),
            }
            offset = response.headers()["stream-next-offset"]
                .to_str()
                .unwrap()
                .to_owned();
            if response.status() == 200 {
                received.extend(messages(response).await);
            }
        }
        received
    };
    let restart = async {
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        usable.lock().unwrap().retain(|node| *node != "n1");
        let status = cluster.stop("n1").await;
        assert!(status.success(), "n1 drained and exited: {status}");
    };
    let ((), received, ()) = tokio::join!(sender, poller, restart);
    let expected: Vec<(u64, String)> = (1..=SENDS as u64).map(|n| (n, format!("m{n}"))).collect();
    assert_eq!(
        received, expected,
        "exactly once, in order, across the restart"
    );
    let owner = cluster.owner_in_replica("n2", "restarted").await;
    assert!(
        owner.as_deref() == Some("n2") || owner.as_deref() == Some("n3"),
        "the session moved off n1: {owner:?}"
    );
}
