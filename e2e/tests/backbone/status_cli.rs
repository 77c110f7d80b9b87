//! `oort status` (the real binary) against one node of a three-node cluster: the table names
//! every node, exactly one leader, and each node's sessions as the directory counts them.

use oort_e2e::eventually;
use oort_e2e::process::run_oort;

use crate::{CONVERGE, connect, three_nodes};

/// The table's rows by node: (role, sessions, ready).
fn rows(stdout: &str) -> Vec<(String, String, String, String)> {
    stdout
        .lines()
        .skip(1)
        .take_while(|line| !line.starts_with("cluster "))
        .filter_map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            Some((
                cells.first()?.to_string(),
                cells.get(1)?.to_string(),
                cells.get(5)?.to_string(),
                cells.get(6)?.to_string(),
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oort_status_shows_every_node_one_leader_and_sessions_per_node() {
    let (_nats, cluster) = three_nodes().await;
    // One session on n1, two on n2, none on n3.
    let _a = connect(&cluster, "n1", "status-a").await;
    let _b = connect(&cluster, "n2", "status-b").await;
    let _c = connect(&cluster, "n2", "status-c").await;
    let url = cluster.node("n3").api_url();
    let args = ["status", "--url", url.as_str(), "--timeout-secs", "5"];
    let expected = [("n1", "1"), ("n2", "2"), ("n3", "0")];
    let (output, stdout) = eventually(
        CONVERGE,
        "oort status to count each node's sessions",
        || async {
            let output = run_oort(&args, &[], CONVERGE).await;
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            let rows = rows(&stdout);
            let counted = rows.len() == 3
                && expected.iter().all(|(node, sessions)| {
                    rows.iter().any(|(name, _, count, ready)| {
                        name == node && count == sessions && ready == "yes"
                    })
                });
            counted.then_some((output, stdout))
        },
    )
    .await;
    println!("{stdout}");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let leaders = rows(&stdout)
        .iter()
        .filter(|(_, role, _, _)| role == "leader")
        .count();
    assert_eq!(leaders, 1, "{stdout}");
    assert!(stdout.contains(": leader n"), "{stdout}");
    assert!(stdout.contains("NATS: connected (nats://"), "{stdout}");
    // The node asked is marked.
    let marked: Vec<&str> = stdout.lines().filter(|line| line.ends_with('*')).collect();
    assert_eq!(marked.len(), 1, "{stdout}");
    assert!(marked[0].starts_with("n3 "), "{stdout}");
}
