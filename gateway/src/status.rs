//! `oort status`: the cluster at a glance from any node's `GET /v1/cluster`, for operators
//! without Grafana. Exit 0 when healthy, 1 when degraded (no leader, a node not ready or not
//! alive), 2 when the node cannot be asked (unreachable, refused, an answer that is not the
//! cluster's).

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use rustls::RootCertStore;
use serde::Deserialize;

/// What `oort status` needs besides its flags; `main` gathers it from the environment.
pub(crate) struct StatusRequest<'a> {
    /// The node's API base URL.
    pub url: &'a str,
    /// `--token`, else `$OORT_API_TOKEN`, when not empty.
    pub token: Option<String>,
    /// Print the node's answer as it came.
    pub json: bool,
    pub timeout: Duration,
    /// Roots trusted when `url` is https.
    pub roots: RootCertStore,
}

const HEALTHY: u8 = 0;
const DEGRADED: u8 = 1;
const UNREACHABLE: u8 = 2;

/// `GET /v1/cluster`, as far as the table needs it; every field is optional so that a node of
/// another version still prints what it has.
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub(crate) struct Cluster {
    cluster: Option<String>,
    node: String,
    role: String,
    ready: bool,
    leader: Option<String>,
    term: Option<u64>,
    applied_index: Option<u64>,
    sessions: u64,
    members: Vec<Member>,
    nats: Option<Nats>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
struct Member {
    node: String,
    role: String,
    alive: bool,
    applied_index: Option<u64>,
    lag: Option<u64>,
    up: bool,
    sessions: u64,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
struct Nats {
    state: String,
    servers: Vec<String>,
}

/// Asks the node and prints; the exit code says how the cluster is.
pub(crate) async fn run(request: StatusRequest<'_>) -> ExitCode {
    match fetch(&request).await {
        Ok(text) => {
            let cluster: Cluster = match serde_json::from_str(&text) {
                Ok(cluster) => cluster,
                Err(err) => {
                    eprintln!(
                        "oort status: {} did not answer with the cluster: {err}",
                        request.url
                    );
                    return ExitCode::from(UNREACHABLE);
                }
            };
            let (table, degraded) = render(&cluster);
            if request.json {
                print_stdout(&format!("{text}\n"));
            } else {
                print_stdout(&table);
            }
            for reason in &degraded {
                eprintln!("oort status: degraded: {reason}");
            }
            ExitCode::from(if degraded.is_empty() {
                HEALTHY
            } else {
                DEGRADED
            })
        }
        Err(message) => {
            eprintln!("oort status: {message}");
            ExitCode::from(UNREACHABLE)
        }
    }
}

#[allow(
    clippy::print_stdout,
    reason = "the table (or the JSON) is what `oort status` is for"
)]
fn print_stdout(text: &str) {
    print!("{text}");
}

/// The node's answer body, or why there is none.
async fn fetch(request: &StatusRequest<'_>) -> Result<String, String> {
    let url = request.url.trim_end_matches('/');
    let http = oort_gateway::tls::client_builder(request.roots.clone())
        .map_err(|err| format!("cannot set up TLS: {err}"))?
        .timeout(request.timeout)
        .build()
        .map_err(|err| format!("cannot make an HTTP client: {err}"))?;
    let mut get = http.get(format!("{url}/v1/cluster"));
    if let Some(token) = &request.token {
        get = get.bearer_auth(token);
    }
    let response = get
        .send()
        .await
        .map_err(|err| format!("cannot reach {url}: {err}"))?;
    let status = response.status();
    if status == http::StatusCode::UNAUTHORIZED {
        return Err(format!(
            "{url} refused the API token (401): pass --token or set OORT_API_TOKEN"
        ));
    }
    let text = response
        .text()
        .await
        .map_err(|err| format!("{url} broke off its answer: {err}"))?;
    if !status.is_success() {
        return Err(format!("{url}/v1/cluster answered {status}: {text}"));
    }
    Ok(text)
}

/// The table and the lines under it; the reasons the cluster is degraded (none: healthy).
pub(crate) fn render(cluster: &Cluster) -> (String, Vec<String>) {
    let mut degraded = Vec::new();
    let mut out = String::new();
    if cluster.role == "single" {
        let ready = yes_no(cluster.ready);
        let rows = vec![
            header(),
            vec![
                cluster.node.clone(),
                "single".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                cluster.sessions.to_string(),
                ready.into(),
                "*".into(),
            ],
        ];
        out.push_str(&table(&rows));
        out.push_str("single node, in-process bus (no cluster.nats)\n");
        if !cluster.ready {
            degraded.push(format!("{} is not ready", cluster.node));
        }
        return (out, degraded);
    }
    let mut rows = vec![header()];
    for member in &cluster.members {
        let here = member.node == cluster.node;
        // Only this node knows its own readiness; another is ready as far as this one can
        // tell when it is alive and up in the directory.
        let ready = if here {
            cluster.ready
        } else {
            member.alive && member.up
        };
        if !ready {
            degraded.push(format!("{} is not ready", member.node));
        }
        let role = if cluster.leader.as_deref() == Some(member.node.as_str()) {
            "leader"
        } else if here {
            cluster.role.as_str()
        } else if member.alive {
            "follower"
        } else {
            "down"
        };
        rows.push(vec![
            member.node.clone(),
            role.to_owned(),
            member.role.clone(),
            opt(member.applied_index),
            opt(member.lag),
            member.sessions.to_string(),
            yes_no(ready).into(),
            if here { "*" } else { "" }.into(),
        ]);
    }
    out.push_str(&table(&rows));
    let name = cluster.cluster.as_deref().unwrap_or("-");
    match &cluster.leader {
        Some(leader) => {
            let _ = writeln!(
                out,
                "cluster {name}: leader {leader}, term {}, {} sessions",
                opt(cluster.term),
                cluster.sessions
            );
        }
        None => {
            degraded.push("no leader".to_owned());
            let _ = writeln!(
                out,
                "cluster {name}: NO LEADER, term {}, {} sessions",
                opt(cluster.term),
                cluster.sessions
            );
        }
    }
    let _ = writeln!(
        out,
        "this node: {} ({}), applied {}",
        cluster.node,
        cluster.role,
        opt(cluster.applied_index)
    );
    if let Some(nats) = &cluster.nats {
        if nats.state != "connected" {
            degraded.push(format!("NATS is {}", nats.state));
        }
        let _ = writeln!(out, "NATS: {} ({})", nats.state, nats.servers.join(", "));
    }
    (out, degraded)
}

fn header() -> Vec<String> {
    [
        "NODE", "ROLE", "MEMBER", "APPLIED", "LAG", "SESSIONS", "READY", "THIS",
    ]
    .map(String::from)
    .to_vec()
}

/// Left-aligned columns two spaces apart, trailing blanks trimmed.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|row| row.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn opt(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: serde_json::Value) -> Cluster {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_healthy_cluster_prints_every_member_and_its_leader() {
        let cluster = parse(serde_json::json!({
            "cluster": "oort", "node": "n1", "role": "follower", "ready": true,
            "leader": "n2", "term": 3, "applied_index": 40, "sessions": 3,
            "members": [
                {"node": "n1", "role": "voter", "alive": true, "applied_index": 40, "lag": 0,
                 "up": true, "sessions": 1},
                {"node": "n2", "role": "voter", "alive": true, "applied_index": 40, "lag": 0,
                 "up": true, "sessions": 2},
            ],
            "nats": {"state": "connected", "servers": ["nats://127.0.0.1:4222"]},
        }));
        let (text, degraded) = render(&cluster);
        assert!(degraded.is_empty(), "{degraded:?}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "NODE  ROLE      MEMBER  APPLIED  LAG  SESSIONS  READY  THIS"
        );
        assert_eq!(
            lines[1],
            "n1    follower  voter   40       0    1         yes    *"
        );
        assert_eq!(
            lines[2],
            "n2    leader    voter   40       0    2         yes"
        );
        assert!(text.contains("leader n2, term 3"), "{text}");
        assert!(
            text.contains("NATS: connected (nats://127.0.0.1:4222)"),
            "{text}"
        );
    }

    #[test]
    fn no_leader_or_a_dead_member_is_degraded() {
        let cluster = parse(serde_json::json!({
            "cluster": "oort", "node": "n1", "role": "candidate", "ready": false,
            "members": [
                {"node": "n1", "role": "voter", "alive": true, "up": true},
                {"node": "n2", "role": "voter", "alive": false, "up": true},
            ],
            "nats": {"state": "disconnected", "servers": []},
        }));
        let (text, degraded) = render(&cluster);
        assert!(text.contains("NO LEADER"), "{text}");
        assert_eq!(degraded.len(), 4, "{degraded:?}");
    }

    #[test]
    fn a_single_node_says_so() {
        let cluster = parse(serde_json::json!({
            "cluster": null, "node": "vm", "role": "single", "ready": true, "sessions": 2,
            "members": [], "nats": {"state": "none", "servers": []},
        }));
        let (text, degraded) = render(&cluster);
        assert!(degraded.is_empty());
        assert!(text.contains("vm    single"), "{text}");
        assert!(text.contains("single node, in-process bus"), "{text}");
    }
}
