//! Process-level end-to-end tests: each test spawns the real `oort` binary (built by
//! `cargo build -p oort-gateway`, or `$OORT_BIN`), a real callback backend and real clients,
//! and reads the process's JSON logs, exit code and sockets. No fixed ports: every listener
//! binds port 0 and the real address is read from the log.
//!
//! Modules needing outside tools fail with install instructions when a tool is missing:
//! `demo_browser`, `transports_browser` and `cluster_browser` (Node.js, `npm ci` in
//! e2e/browser, Debian's chromium; `cluster_browser` also nats-server) and `autobahn`
//! (Autobahn|Testsuite's `wstest`, see e2e/autobahn/README.md) and
//! `api_contract` (schemathesis, installed by scripts/test-prerequisites) and `protocol_doc`
//! (curl, jq), and the `rpc_*` modules (Node.js and `npm ci` in e2e/rpc-clients; curl), and
//! `ds_conformance` (Node.js and `npm ci` in e2e/durable-streams).

// This is test code: a failed expectation panics, which is how a test reports it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_contract;
mod autobahn;
mod browser_support;
mod cli;
mod cluster_browser;
mod demo_browser;
mod ds_conformance;
mod environment;
mod https_callbacks;
mod protocol_doc;
mod rpc_clients;
mod rpc_contract;
mod rpc_errors;
mod rpc_support;
mod shutdown;
mod status_cli;
mod streams_doc;
mod support;
mod transports_browser;
mod unix_socket;
