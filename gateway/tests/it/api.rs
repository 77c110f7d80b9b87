//! Answers read through client libraries: status, Content-Type and body of an API answer or a
//! refused connect, JSON bodies, v1 delivery statuses, and Prometheus `/metrics`.

use oort_e2e::{TIMEOUT, WsClient, eventually, http_client};
use reqwest::header::HeaderMap;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Error as WsError;

use crate::support::TestGateway;

/// The first value of header `name`, if it is text.
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Status, Content-Type (empty if none) and body text of a response.
pub async fn parts(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let content_type = header(response.headers(), "content-type")
        .unwrap_or_default()
        .to_owned();
    (status, content_type, response.text().await.expect("body"))
}

/// Status, Content-Type (empty if none) and body text of the HTTP answer refusing a WebSocket
/// connect to `url`; panics if the connect succeeds or fails without an HTTP answer.
pub async fn refused(url: &str) -> (u16, String, String) {
    match WsClient::connect_with(url, &[]).await {
        Err(WsError::Http(response)) => (
            response.status().as_u16(),
            header(response.headers(), "content-type")
                .unwrap_or_default()
                .to_owned(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned(),
        ),
        Err(other) => panic!("connect to {url} failed without an HTTP answer: {other}"),
        Ok(_) => panic!("connect to {url} was accepted"),
    }
}

/// A connect with `query` made as a plain `GET` that accepts JSON: the refusal's status and
/// JSON body.
pub async fn json_refusal(gateway: &TestGateway, query: &str) -> (u16, Value) {
    let response = http_client()
        .get(gateway.ws_url(query).replace("ws://", "http://"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), json_of(response).await)
}

/// `text` as JSON; panics, quoting it, if it is not.
pub fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|err| panic!("not JSON ({err}): {text:?}"))
}

/// The JSON body of a reqwest response (reqwest is built without its `json` feature here).
pub async fn json_of(response: reqwest::Response) -> Value {
    parse_json(&response.text().await.expect("response body"))
}

/// `GET /v1/sessions/{encoded_key}`: the status and the JSON answer.
pub async fn session_info(gateway: &TestGateway, encoded_key: &str) -> (u16, Value) {
    let response = http_client()
        .get(format!("{}/v1/sessions/{encoded_key}", gateway.api_url()))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), json_of(response).await)
}

/// `POST {base}{path}` with a JSON body; the status and the JSON answer.
pub async fn post_json(base: &str, path: &str, body: &Value) -> (u16, Value) {
    let response = http_client()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|err| panic!("POST {path}: {err}"));
    let status = response.status().as_u16();
    let text = response.text().await.expect("answer body");
    let json = serde_json::from_str(&text).unwrap_or_else(|err| {
        panic!("POST {path} answered {status} with non-JSON ({err}): {text:?}")
    });
    (status, json)
}

/// The `(session, status)` pairs of a delivery answer's `results`, in order.
pub fn statuses(answer: &Value) -> Vec<(String, String)> {
    answer["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {answer}"))
        .iter()
        .map(|r| {
            (
                r["session"].as_str().unwrap_or_default().to_owned(),
                r["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Owned `(session, status)` pairs from string slices, for comparisons.
pub fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(k, s)| ((*k).to_owned(), (*s).to_owned()))
        .collect()
}

/// `GET {base}/metrics`, asserting a 200; the Prometheus text.
pub async fn scrape(base: &str) -> String {
    let response = http_client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200);
    response.text().await.expect("metrics text")
}

/// The value of one series (`name` or `name{labels}`, exactly as rendered) in Prometheus text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
}

/// Waits until `series` in `/metrics` reaches at least `at_least`, returning the text.
pub async fn wait_for_metric(base: &str, series: &str, at_least: f64) -> String {
    eventually(TIMEOUT, &format!("{series} >= {at_least}"), || async {
        let text = scrape(base).await;
        (metric(&text, series).unwrap_or(0.0) >= at_least).then_some(text)
    })
    .await
}

/// What a test sends after something that must not reach a client: the client's next frame
/// must be this one. Every delivery is queued before its request is answered, so anything the
/// earlier requests delivered would come first.
pub const MARKER: &str = "marker: nothing came before me";

/// Sends [`MARKER`] to `key` through `/v1/send` at `base`, with `token` as the bearer token
/// when there is one, and checks that the session's queue took it.
pub async fn send_marker(base: &str, key: &str, token: Option<&str>) {
    let mut request = http_client()
        .post(format!("{base}/v1/send"))
        .body(serde_json::json!({"sessions": [key], "data": MARKER}).to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("POST /v1/send");
    assert_eq!(response.status(), 200, "the marker's send");
    let answer = json_of(response).await;
    assert_eq!(answer["results"][0]["status"], "ok", "the marker: {answer}");
}

/// `POST /v1/send` of text `data` to one session; the whole answer (asserted 200).
pub async fn v1_send_one(gateway: &TestGateway, key: &str, data: &str) -> Value {
    let (status, answer) = post_json(
        &gateway.api_url(),
        "/v1/send",
        &serde_json::json!({"sessions": [key], "data": data}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// The first session's status in a `/v1/send` answer.
pub fn status_of(answer: &Value) -> &str {
    answer["results"][0]["status"].as_str().unwrap_or_default()
}
