//! The RPC API's errors carry Oort's stable code (docs/errors.md) in the `oort-error-code`
//! header beside the Connect code, so that an RPC client can branch as a JSON client does.

use oort_e2e::http_client;
use serde_json::Value;

use crate::support::TestGateway;

/// A Connect unary call with a JSON body; the status, the `oort-error-code` header and the
/// Connect error body.
async fn call(gateway: &TestGateway, token: Option<&str>, body: &str) -> (u16, String, Value) {
    let mut request = http_client()
        .post(format!("{}/oort.v1.GatewayService/Send", gateway.api_url()))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    let code = response
        .headers()
        .get("oort-error-code")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = response.bytes().await.unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, code, body)
}

#[tokio::test]
async fn rpc_errors_name_the_stable_code_beside_the_connect_code() {
    let gateway = TestGateway::start(|config| config.api_token = "rpc-token".into()).await;
    let (status, code, body) = call(&gateway, None, "{}").await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"), "{body}");
    assert_eq!(body["code"], "unauthenticated", "{body}");
    let (status, code, body) = call(&gateway, Some("rpc-token"), "{}").await;
    assert_eq!((status, code.as_str()), (400, "invalid_request"), "{body}");
    assert_eq!(body["code"], "invalid_argument", "{body}");
    gateway.stop().await;
}
