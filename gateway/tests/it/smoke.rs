//! The main flow end to end: connect through the callback, receive a send, talk back, close.

use oort_e2e::backend::CallbackKind;
use oort_e2e::{TIMEOUT, http_client};

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

    let response = http_client()
        .post(format!("{}/send", gateway.api_url()))
        .header("X-Kuiperbelt-Session", "alice")
        .body("pushed")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), r#"{"result":"OK"}"#);
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
