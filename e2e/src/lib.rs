//! The test harness shared by Oort's integration and end-to-end tests: a recording callback
//! backend, WebSocket and HTTP clients, condition waits, launching `oort` and `nats-server`
//! processes, the Durable Streams conformance suite, and test certificates.
//!
//! Everything binds `127.0.0.1:0`, except `nats-server`, which runs on a port reserved for its
//! whole life (`nats::ports`), so tests run in parallel without port clashes.

// This is test code: a failed expectation panics, which is how a test reports it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod backend;
pub mod bench;
pub mod client;
pub mod cluster;
mod cluster_api;
pub mod conformance;
pub mod durable_client;
pub mod http_stream;
pub mod nats;
pub mod otlp;
pub mod pki;
pub mod process;
pub mod rpc;
pub mod temp;
pub mod wait;

pub use backend::{CallbackKind, Recorded, TestBackend};
pub use client::{WsClient, http_client, http_client_builder, try_json};
pub use wait::{TIMEOUT, eventually};
