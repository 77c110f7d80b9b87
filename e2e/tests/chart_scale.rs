//! Scaling the chart's StatefulSet, simulated with real processes: each pod is an `oort`
//! process started with exactly the config.yml the chart renders and the environment the
//! StatefulSet gives it (OORT_CLUSTER__NODE_ID = pod name). Only what cannot be the same on
//! one machine is overridden: the listen addresses (127.0.0.1, free ports instead of the pod
//! IP's 9180/9181), the data directory (one per pod instead of a volume at /var/lib/oort), the
//! NATS URL (a nats-server started here) and the callback URLs (the test backend).
//! 3 -> 5 -> 3 pods, removed the way Kubernetes removes them: highest ordinal first, SIGTERM,
//! the grace period, then SIGKILL. Membership and routing are checked after every step.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use oort_e2e::backend::CallbackKind;
use oort_e2e::nats::NatsServer;
use oort_e2e::process::{OortProcess, TempConfig};
use oort_e2e::{TestBackend, WsClient, eventually};

const CONVERGE: Duration = Duration::from_secs(40);
/// The chart's terminationGracePeriodSeconds.
const TERMINATION_GRACE: Duration = Duration::from_secs(40);

struct Pod {
    process: OortProcess,
    client: SocketAddr,
    api: SocketAddr,
}

struct StatefulSet {
    config: TempConfig,
    data: PathBuf,
    nats: String,
    backend: TestBackend,
    pods: BTreeMap<usize, Pod>,
    http: reqwest::Client,
}

impl StatefulSet {
    async fn scale_to(&mut self, replicas: usize) {
        for ordinal in 0..replicas {
            if !self.pods.contains_key(&ordinal) {
                self.start(ordinal);
            }
        }
        for ordinal in 0..replicas {
            if let Some(pod) = self.pods.get_mut(&ordinal)
                && pod.client.port() == 0
            {
                pod.client = pod
                    .process
                    .listen_addr("client", Duration::from_secs(20))
                    .await;
                pod.api = pod
                    .process
                    .listen_addr("api", Duration::from_secs(20))
                    .await;
            }
        }
        // Scale in: the highest ordinal first, one at a time, as a StatefulSet does.
        while let Some((&ordinal, _)) = self
            .pods
            .iter()
            .next_back()
            .filter(|(ordinal, _)| **ordinal >= replicas)
        {
            let mut pod = self.pods.remove(&ordinal).unwrap();
            pod.process.signal(15);
            let exited =
                tokio::time::timeout(TERMINATION_GRACE, pod.process.wait_exit(TERMINATION_GRACE))
                    .await;
            if exited.is_err() {
                pod.process.signal(9);
            }
            self.wait_members(self.pods.len()).await;
        }
        self.wait_members(replicas).await;
    }

    fn start(&mut self, ordinal: usize) {
        let name = format!("oort-{ordinal}");
        let data_dir = self.data.join(&name);
        let env = [
            ("OORT_CLUSTER__NODE_ID", name.clone()),
            ("OORT_LISTEN", "127.0.0.1:0".to_owned()),
            ("OORT_API_LISTEN", "127.0.0.1:0".to_owned()),
            ("OORT_CLUSTER__DATA_DIR", data_dir.display().to_string()),
            ("OORT_CLUSTER__NATS", self.nats.clone()),
            (
                "OORT_CALLBACK__CONNECT",
                self.backend.callback_url(CallbackKind::Connect),
            ),
            (
                "OORT_CALLBACK__CLOSE",
                self.backend.callback_url(CallbackKind::Close),
            ),
            // Short cluster timings keep the test quick; the chart's defaults are longer.
            ("OORT_CLUSTER__HEARTBEAT_INTERVAL", "200ms".to_owned()),
            ("OORT_CLUSTER__RAFT_HEARTBEAT", "100ms".to_owned()),
            ("OORT_CLUSTER__ELECTION_TIMEOUT", "600ms".to_owned()),
            ("OORT_SHUTDOWN_GRACE_PERIOD", "10s".to_owned()),
        ];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let process = OortProcess::spawn(&["--config", self.config.path()], &env);
        let unset = SocketAddr::from(([127, 0, 0, 1], 0));
        self.pods.insert(
            ordinal,
            Pod {
                process,
                client: unset,
                api: unset,
            },
        );
    }

    async fn status(&self, pod: &Pod) -> Option<serde_json::Value> {
        let response = self
            .http
            .get(format!("http://{}/v1/cluster", pod.api))
            .send()
            .await
            .ok()?;
        serde_json::from_slice(&response.bytes().await.ok()?).ok()
    }

    /// Every pod ready, agreeing on one leader and on `count` members (3 voters, or all).
    async fn wait_members(&self, count: usize) {
        eventually(
            CONVERGE,
            &format!("{count} members on every pod"),
            || async {
                let mut leader = None;
                for pod in self.pods.values() {
                    let status = self.status(pod).await?;
                    let this = status["leader"].as_str()?.to_owned();
                    if status["ready"] != true
                        || *leader.get_or_insert_with(|| this.clone()) != this
                    {
                        return None;
                    }
                    let members = status["members"].as_array()?;
                    let member_count = members
                        .iter()
                        .filter(|m| m["role"] == "voter" || m["role"] == "learner")
                        .count();
                    let voters = members.iter().filter(|m| m["role"] == "voter").count();
                    if member_count != count || voters != count.min(3) {
                        return None;
                    }
                }
                Some(())
            },
        )
        .await;
    }

    /// A client on the first pod receives a send made through the last pod's API.
    async fn check_routing(&self, key: &str) {
        let (first, last) = (
            self.pods.values().next().unwrap(),
            self.pods.values().next_back().unwrap(),
        );
        let mut client =
            WsClient::connect(&format!("ws://{}/connect?key={key}", first.client)).await;
        let body = serde_json::json!({ "sessions": [key], "data": key }).to_string();
        let answer: serde_json::Value = self
            .http
            .post(format!("http://{}/v1/send", last.api))
            .body(body)
            .send()
            .await
            .unwrap()
            .json_value()
            .await;
        assert_eq!(answer["ok"], 1, "{answer}");
        assert_eq!(client.recv_text().await, key);
    }
}

trait JsonValue {
    async fn json_value(self) -> serde_json::Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap()
    }
}

/// Renders the chart's default config.yml (as the ConfigMap would hold it).
async fn chart_config() -> TempConfig {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let config = TempConfig::new("");
    let output = tokio::process::Command::new("python3")
        .arg(root.join("charts/test/check.py"))
        .arg("--emit-config")
        .arg(root.join("charts/test/values/default.yaml"))
        .arg(config.path())
        .output()
        .await
        .expect("run the chart renderer");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rendered = std::fs::read_to_string(config.path()).unwrap();
    assert!(
        rendered.contains("bootstrap_expect: 3"),
        "the chart's config:\n{rendered}"
    );
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_three_to_five_to_three_keeps_membership_and_routing() {
    let nats = NatsServer::start().await;
    let config = chart_config().await;
    let data = config.dir().join("volumes");
    let mut statefulset = StatefulSet {
        config,
        data,
        nats: nats.url(),
        backend: TestBackend::start().await,
        pods: BTreeMap::new(),
        http: oort_e2e::http_client(),
    };
    statefulset.scale_to(3).await;
    statefulset.check_routing("at-three").await;
    statefulset.scale_to(5).await;
    statefulset.check_routing("at-five").await;
    statefulset.scale_to(3).await;
    statefulset.check_routing("back-at-three").await;
}
