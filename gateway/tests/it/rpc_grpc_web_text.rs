//! gRPC-Web's text form (`application/grpc-web-text`), which the RPC library does not speak
//! itself: a base64 request is served like the binary one, the answer comes back base64, with
//! the trailers in the body as gRPC-Web puts them, and a refusal keeps its status.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use buffa::Message as _;
use oort_common::rpc::__buffa::oneof::payload::Data;
use oort_common::rpc::{DeliveryStatus, Payload, SendRequest, SendResponse};
use oort_e2e::{WsClient, http_client};

use crate::support::TestGateway;

/// A gRPC-Web message frame (flag 0) around `message`, base64.
fn text_body(message: &SendRequest) -> String {
    let bytes = message.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend((bytes.len() as u32).to_be_bytes());
    frame.extend(bytes);
    STANDARD.encode(frame)
}

/// The frames of a base64 answer that may be several padded pieces: (flag, bytes).
fn frames(answer: &str) -> Vec<(u8, Vec<u8>)> {
    let mut bytes = Vec::new();
    let text = answer.as_bytes();
    let mut start = 0;
    for (index, quad) in text.chunks(4).enumerate() {
        if quad.contains(&b'=') || (index + 1) * 4 == text.len() {
            let end = (index + 1) * 4;
            bytes.extend(STANDARD.decode(&text[start..end]).expect("base64 pieces"));
            start = end;
        }
    }
    let mut frames = Vec::new();
    let mut rest = bytes.as_slice();
    while rest.len() >= 5 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        frames.push((rest[0], rest[5..5 + len].to_vec()));
        rest = &rest[5 + len..];
    }
    assert!(rest.is_empty(), "a cut frame in {answer}");
    frames
}

async fn post(gateway: &TestGateway, token: &str, body: String) -> reqwest::Response {
    http_client()
        .post(format!("{}/oort.v1.GatewayService/Send", gateway.api_url()))
        .header("content-type", "application/grpc-web-text")
        .header("x-grpc-web", "1")
        .header("authorization", format!("Bearer {token}"))
        .body(body)
        .send()
        .await
        .expect("an answer")
}

#[tokio::test]
async fn a_text_send_is_delivered_and_answered_in_text() {
    let gateway = TestGateway::start(|config| config.api_token = "web-token".into()).await;
    let mut client = WsClient::connect(&gateway.ws_url("key=texted")).await;
    let request = SendRequest {
        sessions: vec!["texted".into()],
        payload: Payload {
            data: Some(Data::Text("over grpc-web-text".into())),
            ..Default::default()
        }
        .into(),
        ..Default::default()
    };
    let response = post(&gateway, "web-token", text_body(&request)).await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/grpc-web-text"),
        "{content_type}"
    );
    let answer = response.text().await.unwrap();
    let frames = frames(&answer);
    assert_eq!(frames.len(), 2, "a message and the trailers: {frames:?}");
    let (flag, message) = &frames[0];
    assert_eq!(*flag, 0);
    let message = SendResponse::decode_from_slice(message).expect("a SendResponse");
    let results = &message.delivery.as_option().expect("a delivery").results;
    assert_eq!(results[0].session, "texted");
    assert_eq!(results[0].status, DeliveryStatus::DELIVERY_STATUS_OK);
    let (flag, trailers) = &frames[1];
    assert_eq!(*flag, 0x80, "the trailers frame");
    let trailers = String::from_utf8_lossy(trailers).to_lowercase();
    assert!(
        trailers.contains("grpc-status: 0") || trailers.contains("grpc-status:0"),
        "{trailers}"
    );
    assert_eq!(client.recv_text().await, "over grpc-web-text");
}

#[tokio::test]
async fn a_wrong_token_and_a_body_that_is_not_base64_keep_their_statuses() {
    let gateway = TestGateway::start(|config| config.api_token = "web-token".into()).await;
    let request = SendRequest {
        sessions: vec!["nobody".into()],
        ..Default::default()
    };
    let refused = status_of(post(&gateway, "wrong", text_body(&request)).await).await;
    assert_eq!(refused, ("16".into(), "invalid bearer token".into()));
    let garbled = status_of(post(&gateway, "web-token", "not base64!".into()).await).await;
    assert_eq!(garbled.0, "3", "{garbled:?}");
}

/// The status and message of a gRPC-Web answer: in the head ("trailers-only"), or in the
/// trailers frame of the base64 body.
async fn status_of(response: reqwest::Response) -> (String, String) {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    if let Some(code) = header("grpc-status") {
        return (code, header("grpc-message").unwrap_or_default());
    }
    let answer = response.text().await.unwrap();
    let (flag, trailers) = frames(&answer).pop().expect("a trailers frame");
    assert_eq!(flag, 0x80);
    let trailers = String::from_utf8(trailers).unwrap();
    let field = |name: &str| {
        trailers
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_default()
    };
    (field("grpc-status"), field("grpc-message"))
}
