//! The RPC API's messages and service stubs, generated from `proto/oort/v1/gateway.proto` by
//! build.rs (docs/rpc.md). The JSON API and these share one set of operations in the gateway.

#![allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used
)]

connectrpc::include_generated!();

pub use oort::v1::*;
