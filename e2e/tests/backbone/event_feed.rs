//! `WatchEvents` across nodes (docs/rpc.md): a consumer on any node sees every node's events,
//! carried by NATS; consumers sharing a group on different nodes each get a part, together
//! every event once.

use std::collections::HashSet;

use connectrpc::Protocol;
use oort_common::rpc::__buffa::oneof::event::Kind;
use oort_e2e::cluster::{FAST_TIMINGS, NodeExtras, TestCluster};
use oort_e2e::nats::NatsServer;
use oort_e2e::rpc::text_of;
use oort_e2e::{TIMEOUT, WsClient, rpc};

use crate::CONVERGE;

const WIDE: u32 = 4 << 20;

async fn cluster() -> (NatsServer, TestCluster) {
    let nats = NatsServer::start().await;
    let mut cluster = TestCluster::new(vec![nats.url()], FAST_TIMINGS).await;
    for name in ["n1", "n2"] {
        let extras = NodeExtras {
            env: vec![("OORT_CALLBACK__EVENT_FEED".into(), "true".into())],
            ..NodeExtras::default()
        };
        cluster.add_with(name, 2, extras).await;
    }
    cluster.wait_converged(2, 2, CONVERGE).await;
    (nats, cluster)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_on_one_node_sees_a_session_on_another_in_order() {
    let (_nats, cluster) = cluster().await;
    let client = rpc::client(&cluster.node("n1").api_url(), Protocol::Grpc, None, WIDE).await;
    let mut events = rpc::watch(&client, "").await.expect("a consumer on n1");
    let mut ws = WsClient::connect(&cluster.node("n2").ws_url("key=far")).await;
    for n in 0..10 {
        ws.send_text(&format!("m{n}")).await;
    }
    ws.close(1000).await;
    let first = rpc::next_event(&mut events, TIMEOUT).await;
    assert_eq!((first.session.as_str(), first.node.as_str()), ("far", "n2"));
    assert!(matches!(first.kind, Some(Kind::Connected(_))), "{first:?}");
    for n in 0..10 {
        let event = rpc::next_event(&mut events, TIMEOUT).await;
        assert_eq!(text_of(&event), Some(format!("m{n}")), "{event:?}");
    }
    let last = rpc::next_event(&mut events, TIMEOUT).await;
    assert!(matches!(last.kind, Some(Kind::Closed(_))), "{last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_spread_over_nodes_gets_every_event_once() {
    let (_nats, cluster) = cluster().await;
    let on = |node: &'static str| {
        let url = cluster.node(node).api_url();
        async move { rpc::client(&url, Protocol::Grpc, None, WIDE).await }
    };
    let (c1, c2) = (on("n1").await, on("n2").await);
    let mut a = rpc::watch(&c1, "workers").await.expect("member on n1");
    let mut b = rpc::watch(&c2, "workers").await.expect("member on n2");
    let mut ws = WsClient::connect(&cluster.node("n1").ws_url("key=busy")).await;
    const MESSAGES: usize = 60;
    for n in 0..MESSAGES {
        ws.send_text(&format!("w{n}")).await;
    }
    let mut texts = HashSet::new();
    let mut seen = 0;
    // The connect and the messages, each to one member.
    while seen < MESSAGES + 1 {
        let event = tokio::select! {
            event = rpc::next_event(&mut a, TIMEOUT) => event,
            event = rpc::next_event(&mut b, TIMEOUT) => event,
        };
        seen += 1;
        if let Some(text) = text_of(&event) {
            assert!(texts.insert(text.clone()), "{text} twice");
        }
    }
    assert_eq!(texts.len(), MESSAGES);
}
