//! A client of Oort's HTTP transports (sessions read as Durable Streams, docs/protocol.md):
//! the Comet connect, reads with the session's bearer token, and client messages.

use serde_json::Value;

use crate::http_client;

/// A session created by a Comet connect.
pub struct HttpSession {
    pub base: String,
    pub stream: String,
    pub token: String,
    pub node: String,
}

impl HttpSession {
    /// `POST {base}/stream?{query}`: the connect callback runs, and the session's stream is
    /// named. `base` is `http://host:port` of any node.
    pub async fn connect(base: &str, query: &str) -> Self {
        let response = http_client()
            .post(format!("{base}/stream?{query}"))
            .send()
            .await
            .expect("Comet connect");
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let answer: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(answer["stream"], location.as_str());
        Self {
            base: base.to_owned(),
            stream: location,
            token: answer["token"].as_str().unwrap().to_owned(),
            node: answer["node"].as_str().unwrap().to_owned(),
        }
    }

    /// The stream's URL on `base`.
    pub fn url(&self) -> String {
        self.url_on(&self.base)
    }

    /// The stream's URL on another node (any node serves any session).
    pub fn url_on(&self, base: &str) -> String {
        format!("{base}{}", self.stream)
    }

    /// The session's id, from its token (`v1.<key>.<id>.<expiry>.<tag>`).
    pub fn id(&self) -> u64 {
        self.token.split('.').nth(2).unwrap().parse().unwrap()
    }

    /// The offset after message `seq`.
    pub fn offset(&self, seq: u64) -> String {
        format!("{:016x}_{seq:016x}", self.id())
    }

    /// `GET {stream}?{query}` with the bearer token.
    pub async fn get(&self, query: &str) -> reqwest::Response {
        self.get_on(&self.base, query).await
    }

    /// `GET {stream}?{query}` through the node at `base`.
    pub async fn get_on(&self, base: &str, query: &str) -> reqwest::Response {
        http_client()
            .get(format!("{}?{query}", self.url_on(base)))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("stream GET")
    }

    /// `POST {stream}`: a text message for the backend.
    pub async fn post(&self, text: &str) -> reqwest::Response {
        self.post_on(&self.base, text).await
    }

    /// `POST {stream}` through the node at `base`.
    pub async fn post_on(&self, base: &str, text: &str) -> reqwest::Response {
        http_client()
            .post(self.url_on(base))
            .bearer_auth(&self.token)
            .header("content-type", "text/plain; charset=utf-8")
            .body(text.to_owned())
            .send()
            .await
            .expect("stream POST")
    }
}

/// The messages of a read's JSON body: `(seq, data)`.
pub async fn messages(response: reqwest::Response) -> Vec<(u64, String)> {
    let body: Value =
        serde_json::from_slice(&response.bytes().await.unwrap()).expect("a JSON array");
    body.as_array()
        .expect("an array")
        .iter()
        .map(|m| {
            assert_eq!(m["kind"], "text", "{m}");
            (
                m["seq"].as_u64().unwrap(),
                m["data"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}
