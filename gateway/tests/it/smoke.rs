//! The main flow end to end: connect through the callback, receive a send, talk back, close.

use oort_e2e::TIMEOUT;
use oort_e2e::backend::CallbackKind;

use crate::api::parts;
use crate::kb_support::send;
use crate::support::TestGateway;

#[tokio::test]
async fn connect_send_receive_close() {
    let gateway = TestGateway::start(|_| {}).await;
    let mut client = oort_e2e::WsClient::connect(&gateway.ws_url("key=alice&first=hello")).await;
    assert_eq!(client.recv_text().await, "hello");
    gateway
        .backend
        .wait_for(CallbackKind::Establish, "alice", 1, TIMEOUT)
        .await;

    let (status, _, body) = parts(send(&gateway, &["alice"], "pushed").await).await;
    assert_eq!(status, 200);
    assert_eq!(body, r#"{"result":"OK"}"#);
    assert_eq!(client.recv_text().await, "pushed");

    client.send_text("from client").await;
    let received = gateway
        .backend
        .wait_for(CallbackKind::Receive, "alice", 1, TIMEOUT)
        .await;
    assert_eq!(received[0].body, "from client");
    assert_eq!(received[0].header("content-type"), Some("text/plain"));

    let echoed = client.close(1000).await;
    assert_eq!(echoed.map(|f| u16::from(f.code)), Some(1000));
    gateway
        .backend
        .wait_for(CallbackKind::Close, "alice", 1, TIMEOUT)
        .await;
    gateway.stop().await;
}
