//! Which methods each backend API path answers: kuiperbelt's `/ping` and `/stats` answer every
//! method an OpenAPI document can list (kuiperbelt answered any), and every path refuses the
//! others (TRACE, QUERY, ...) with a 405 that carries `Allow` (docs/kuiperbelt-compat.md).

use reqwest::Method;

use crate::api::parts;
use crate::support::TestGateway;

/// What `/ping` and `/stats` answer to, as their `Allow` header lists it.
const LISTED: &str = "GET,HEAD,POST,PUT,DELETE,PATCH,OPTIONS";

/// The methods of an `Allow` value, in a fixed order (axum lists them in its own).
fn method_set(allow: &str) -> std::collections::BTreeSet<&str> {
    allow.split(',').map(str::trim).collect()
}

async fn request(gateway: &TestGateway, method: &Method, path: &str) -> reqwest::Response {
    oort_e2e::http_client()
        .request(method.clone(), format!("{}{path}", gateway.api_url()))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn ping_and_stats_answer_every_listed_method() {
    let gateway = TestGateway::start(|_| {}).await;
    for path in ["/ping", "/stats"] {
        for method in LISTED.split(',') {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let (status, content_type, body) = parts(request(&gateway, &method, path).await).await;
            assert_eq!(status, 200, "{method} {path}");
            assert!(
                content_type.starts_with("application/json"),
                "{method} {path}"
            );
            if method != Method::HEAD {
                assert!(body.starts_with('{'), "{method} {path}: {body}");
            }
        }
    }
    gateway.stop().await;
}

#[tokio::test]
async fn unlisted_methods_get_405_with_allow_on_every_path() {
    let gateway = TestGateway::start(|_| {}).await;
    let query = Method::from_bytes(b"QUERY").unwrap();
    let cases = [
        (
            Method::TRACE,
            "/ping",
            LISTED,
            r#""TRACE is not allowed here""#,
        ),
        (
            query.clone(),
            "/stats",
            LISTED,
            r#""QUERY is not allowed here""#,
        ),
        (Method::TRACE, "/send", "POST", r#""required POST method""#),
        (Method::GET, "/close", "POST", r#""required POST method""#),
        (
            Method::TRACE,
            "/v1/send",
            "POST",
            r#""TRACE is not allowed here""#,
        ),
        (
            query,
            "/v1/cluster",
            "GET,HEAD",
            r#""QUERY is not allowed here""#,
        ),
        (
            Method::TRACE,
            "/livez",
            "GET,HEAD",
            r#""TRACE is not allowed here""#,
        ),
        (
            Method::PUT,
            "/metrics",
            "GET,HEAD",
            r#""PUT is not allowed here""#,
        ),
    ];
    for (method, path, allow, error) in cases {
        let response = request(&gateway, &method, path).await;
        let allowed = response.headers().get("allow").cloned();
        let (status, content_type, body) = parts(response).await;
        assert_eq!(status, 405, "{method} {path}");
        let allowed = allowed.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("");
        assert_eq!(method_set(allowed), method_set(allow), "{method} {path}");
        assert!(
            content_type.starts_with("application/json"),
            "{method} {path}"
        );
        assert!(body.contains(error), "{method} {path}: {body}");
    }
    gateway.stop().await;
}
