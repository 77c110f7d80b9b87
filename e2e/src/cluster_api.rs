//! The backend API and health endpoints of a [`TestCluster`]'s nodes, as the cluster tests use
//! them: one place for the requests every test binary makes.

use serde_json::Value;

use crate::cluster::TestCluster;

impl TestCluster {
    /// `POST /v1/send` with `body` through `node`: the per-session statuses, in order. Panics
    /// unless the node answers 200 with one status per session.
    pub async fn v1_send_body(&self, node: &str, body: &Value) -> Vec<String> {
        let response = self
            .http()
            .post(format!("{}/v1/send", self.node(node).api_url()))
            .body(body.to_string())
            .send()
            .await
            .expect("POST /v1/send");
        assert_eq!(response.status(), 200, "POST /v1/send through {node}");
        let answer: Value =
            serde_json::from_slice(&response.bytes().await.expect("the answer")).expect("JSON");
        answer["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|result| result["status"].as_str().expect("a status").to_owned())
            .collect()
    }

    /// `POST /v1/send` of `data` to `keys` through `node`: the per-session statuses, in order.
    pub async fn v1_send(&self, node: &str, keys: &[&str], data: &str) -> Vec<String> {
        let body = serde_json::json!({ "sessions": keys, "data": data });
        self.v1_send_body(node, &body).await
    }

    /// `GET /v1/sessions/{key}?replica=true` on `node`: the owner according to that node's own
    /// replica of the directory (asking no other node, so a replica that lags, a snapshot that
    /// lacks the entry or a restarted log that lost it shows), or `None` for 404.
    pub async fn owner_in_replica(&self, node: &str, key: &str) -> Option<String> {
        let url = format!(
            "{}/v1/sessions/{key}?replica=true",
            self.node(node).api_url()
        );
        let response = self.http().get(url).send().await.expect("GET /v1/sessions");
        if response.status() == 404 {
            return None;
        }
        assert_eq!(response.status(), 200, "GET /v1/sessions/{key} on {node}");
        let body: Value =
            serde_json::from_slice(&response.bytes().await.expect("the answer")).expect("JSON");
        body["node"].as_str().map(str::to_owned)
    }

    /// The status `GET path` answers on `node` (`/readyz`, say).
    pub async fn status_code(&self, node: &str, path: &str) -> u16 {
        self.http()
            .get(format!("{}{path}", self.node(node).api_url()))
            .send()
            .await
            .expect("GET")
            .status()
            .as_u16()
    }
}
