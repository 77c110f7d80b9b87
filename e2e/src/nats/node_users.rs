//! One NATS user per node, so that a test can take a permission away from one node of a
//! running cluster ([`NatsServer::reconfigure`](super::NatsServer::reconfigure) with
//! [`NodeUsers::config`]) while the others carry on: a node that cannot reach the leader's
//! control subject, say, or whose replica stops receiving raft appends.

use super::config::{self, Subjects, User};

/// What one node's user may not do.
#[derive(Clone, Debug, Default)]
pub struct Fence {
    /// Subjects it may not publish to.
    pub publish: Vec<String>,
    /// Subjects it may not subscribe to (an existing subscription is removed on reload).
    pub subscribe: Vec<String>,
}

/// A user per node, named after the node.
#[derive(Clone, Debug)]
pub struct NodeUsers {
    nodes: Vec<String>,
}

impl NodeUsers {
    /// Users for `nodes`.
    pub fn new(nodes: &[&str]) -> Self {
        Self {
            nodes: nodes.iter().map(|node| (*node).to_owned()).collect(),
        }
    }

    /// The server's `authorization` block: every node may use every subject, except that
    /// each node in `fences` may not do what its fence says.
    pub fn config(&self, fences: &[(&str, Fence)]) -> String {
        let users: Vec<User> = self
            .nodes
            .iter()
            .map(|node| {
                let fence = fences
                    .iter()
                    .find(|(fenced, _)| fenced == node)
                    .map(|(_, fence)| fence.clone())
                    .unwrap_or_default();
                User {
                    user: node.clone(),
                    password: password(node),
                    publish: Subjects::Deny(fence.publish),
                    subscribe: Subjects::Deny(fence.subscribe),
                }
            })
            .collect();
        config::users(&users)
    }

    /// The `cluster:` lines that give `node` its credentials (`NodeExtras::cluster_lines`).
    pub fn cluster_lines(&self, node: &str) -> String {
        format!(
            "  nats_auth:\n    user: {node}\n    password: {}\n",
            password(node)
        )
    }
}

fn password(node: &str) -> String {
    format!("password-of-{node}")
}
