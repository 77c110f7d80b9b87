//! The `cluster` section: how a node finds its peers over NATS and forms the raft-replicated
//! session directory. A node needs only NATS URLs, a cluster name and a unique node id.

use serde::{Deserialize, Deserializer, Serialize};

use super::{ConfigError, GoDuration, NatsAuthConfig, NatsTlsConfig, Secret, lenient};

/// Cluster settings. Without `nats` the node runs alone, with no NATS and no raft.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterConfig {
    /// NATS server URLs (a list, or one comma-separated string).
    #[serde(deserialize_with = "url_list")]
    pub nats: Vec<String>,
    /// How this node authenticates to NATS (at most one method).
    pub nats_auth: NatsAuthConfig,
    /// TLS to NATS.
    pub nats_tls: NatsTlsConfig,
    /// Subject prefix (`oort.<name>.*`), so several clusters can share one NATS.
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    /// This node's unique id; empty means the hostname (a StatefulSet pod's name).
    #[serde(deserialize_with = "lenient::string")]
    pub node_id: String,
    /// Where the raft log and vote are kept; empty means `./oort-data/<node_id>`.
    #[serde(deserialize_with = "lenient::string")]
    pub data_dir: String,
    /// Nodes that must be seen before the first raft cluster forms.
    #[serde(deserialize_with = "lenient::number")]
    pub bootstrap_expect: usize,
    /// How many voters the leader keeps (the rest are learners).
    #[serde(deserialize_with = "lenient::number")]
    pub voters: usize,
    /// How often a node announces itself.
    pub heartbeat_interval: GoDuration,
    /// A node silent this long is declared dead: removed, and its sessions purged.
    pub node_timeout: GoDuration,
    /// Raft heartbeats from the leader.
    pub raft_heartbeat: GoDuration,
    /// Raft election timeout (the minimum; the maximum is twice this).
    pub election_timeout: GoDuration,
    /// Bound on one request to another node (raft RPCs, forwarded writes, lookups).
    pub route_timeout: GoDuration,
    /// A snapshot is taken after this many log entries, and older entries are purged.
    #[serde(deserialize_with = "lenient::number")]
    pub snapshot_every: u64,
    /// A secret shared by every node: each message between nodes carries a tag made with it,
    /// and messages without a valid one are dropped. Empty: messages are not authenticated.
    pub secret: Secret,
    /// A file holding the secret (instead of `secret`).
    #[serde(deserialize_with = "lenient::string")]
    pub secret_file: String,
    /// Serve `POST /v1/cluster/synthetic-sessions`, which registers sessions with no connection
    /// (for `oort-bench directory`; docs/scale.md). Never in production: the directory then
    /// names sessions nothing can reach.
    #[serde(deserialize_with = "lenient::bool")]
    pub synthetic_sessions: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            nats: Vec::new(),
            nats_auth: NatsAuthConfig::default(),
            nats_tls: NatsTlsConfig::default(),
            name: "oort".into(),
            node_id: String::new(),
            data_dir: String::new(),
            bootstrap_expect: 3,
            voters: 3,
            heartbeat_interval: GoDuration::from_millis(500),
            node_timeout: GoDuration::from_secs(10),
            raft_heartbeat: GoDuration::from_millis(100),
            election_timeout: GoDuration::from_millis(500),
            route_timeout: GoDuration::from_secs(3),
            snapshot_every: 10_000,
            secret: Secret::default(),
            secret_file: String::new(),
            synthetic_sessions: false,
        }
    }
}

impl ClusterConfig {
    /// True when the node should join a cluster.
    pub fn enabled(&self) -> bool {
        !self.nats.is_empty()
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled() {
            return Ok(());
        }
        for url in &self.nats {
            check_nats_url(url)?;
        }
        self.nats_auth.validate()?;
        self.nats_tls.validate()?;
        let subject_safe = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if self.name.is_empty() || !self.name.chars().all(subject_safe) {
            return Err(ConfigError::invalid(
                "cluster.name",
                &self.name,
                "use letters, digits, - and _ (it is a NATS subject token)",
            ));
        }
        if self.node_id.len() > 128 {
            return Err(ConfigError::invalid(
                "cluster.node_id",
                &self.node_id,
                "at most 128 bytes",
            ));
        }
        if self.bootstrap_expect == 0 {
            return Err(ConfigError::invalid(
                "cluster.bootstrap_expect",
                self.bootstrap_expect,
                "must be at least 1",
            ));
        }
        if self.voters == 0 {
            return Err(ConfigError::invalid(
                "cluster.voters",
                self.voters,
                "must be at least 1",
            ));
        }
        let positive = [
            ("cluster.heartbeat_interval", self.heartbeat_interval),
            ("cluster.node_timeout", self.node_timeout),
            ("cluster.raft_heartbeat", self.raft_heartbeat),
            ("cluster.election_timeout", self.election_timeout),
            ("cluster.route_timeout", self.route_timeout),
        ];
        for (key, value) in positive {
            if value.is_zero() {
                return Err(ConfigError::invalid(key, value, "must be above 0"));
            }
        }
        if self.election_timeout.0 <= self.raft_heartbeat.0 * 2 {
            return Err(ConfigError::invalid(
                "cluster.election_timeout",
                self.election_timeout,
                format!(
                    "must be more than twice cluster.raft_heartbeat ({})",
                    self.raft_heartbeat
                ),
            ));
        }
        if self.node_timeout.0 <= self.heartbeat_interval.0 * 2 {
            return Err(ConfigError::invalid(
                "cluster.node_timeout",
                self.node_timeout,
                format!(
                    "must be more than twice cluster.heartbeat_interval ({})",
                    self.heartbeat_interval
                ),
            ));
        }
        if !self.secret.is_empty() && !self.secret_file.is_empty() {
            return Err(ConfigError::invalid(
                "cluster.secret_file",
                &self.secret_file,
                "set cluster.secret or cluster.secret_file, not both",
            ));
        }
        if !self.secret.is_empty() {
            check_cluster_secret("cluster.secret", self.secret.shown(), &self.secret)?;
        }
        if self.snapshot_every == 0 {
            return Err(ConfigError::invalid(
                "cluster.snapshot_every",
                self.snapshot_every,
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// A cluster secret long enough to be worth having.
pub(crate) fn check_cluster_secret(
    key: &str,
    shown: &str,
    secret: &Secret,
) -> Result<(), ConfigError> {
    if secret.expose().len() < 16 {
        return Err(ConfigError::invalid(
            key,
            shown,
            "use at least 16 characters (e.g. `openssl rand -hex 32`)",
        ));
    }
    Ok(())
}

/// `nats://` or `tls://` with a host. The WebSocket transport (`ws://`, `wss://`) is not built
/// into Oort: NATS servers that offer it also listen for plain NATS clients, and leaving it out
/// keeps a WebSocket client library out of the binary.
fn check_nats_url(url: &str) -> Result<(), ConfigError> {
    let parsed = url::Url::parse(url)
        .map_err(|err| ConfigError::invalid("cluster.nats", url, format!("not a URL: {err}")))?;
    match parsed.scheme() {
        "ws" | "wss" => Err(ConfigError::invalid(
            "cluster.nats",
            url,
            "Oort does not speak NATS over WebSocket; use the server's nats:// or tls:// port",
        )),
        "nats" | "tls" if parsed.host().is_some() => Ok(()),
        _ => Err(ConfigError::invalid(
            "cluster.nats",
            url,
            "expected nats://host:port or tls://host:port",
        )),
    }
}

/// A list of URLs, or one string of comma-separated URLs (what an environment variable gives).
fn url_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<String>),
        One(String),
    }
    let urls = match Option::<OneOrMany>::deserialize(deserializer)? {
        None => Vec::new(),
        Some(OneOrMany::Many(urls)) => urls,
        Some(OneOrMany::One(text)) => text.split(',').map(str::to_owned).collect(),
    };
    Ok(urls
        .into_iter()
        .map(|url| url.trim().to_owned())
        .filter(|url| !url.is_empty())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_urls_come_as_a_list_or_a_comma_separated_string() {
        let from_list: ClusterConfig =
            serde_json::from_str(r#"{"nats": ["nats://a:4222", "nats://b:4222"]}"#).unwrap();
        let from_text: ClusterConfig =
            serde_json::from_str(r#"{"nats": "nats://a:4222, nats://b:4222"}"#).unwrap();
        assert_eq!(from_list.nats, from_text.nats);
        assert_eq!(from_list.nats.len(), 2);
        let empty: ClusterConfig = serde_json::from_str(r#"{"nats": ""}"#).unwrap();
        assert!(!empty.enabled());
    }

    #[test]
    fn validation_names_the_key() {
        let mut config = ClusterConfig {
            nats: vec!["nats://127.0.0.1:4222".into()],
            ..ClusterConfig::default()
        };
        assert!(config.validate().is_ok());
        config.name = "a.b".into();
        assert!(
            matches!(config.validate(), Err(ConfigError::Invalid { key, .. }) if key == "cluster.name")
        );
        config.name = "ok".into();
        config.nats = vec!["http://x:1".into()];
        assert!(
            matches!(config.validate(), Err(ConfigError::Invalid { key, .. }) if key == "cluster.nats")
        );
        config.nats = vec!["wss://x:443".into()];
        let refused = config.validate().unwrap_err().to_string();
        assert!(
            refused.contains("cluster.nats") && refused.contains("WebSocket"),
            "{refused}"
        );
        config.nats = vec!["tls://x:1".into()];
        assert!(config.validate().is_ok());
        config.nats_tls.key_file = "/tls/tls.key".into();
        assert!(
            matches!(config.validate(), Err(ConfigError::Invalid { key, .. }) if key == "cluster.nats_tls.key_file")
        );
        config.nats_tls.key_file.clear();
        config.election_timeout = GoDuration::from_millis(100);
        assert!(
            matches!(config.validate(), Err(ConfigError::Invalid { key, .. }) if key == "cluster.election_timeout")
        );
    }
}
