//! The Oort gateway: client listeners and connections, the backend API, and the callbacks to
//! the backend.
//!
//! The binary (`main.rs`) only parses the command line, loads the configuration, binds and
//! calls [`Gateway::run`]. Everything else is here, so tests run real gateways on
//! `127.0.0.1:0` in-process.

mod admission;
mod api;
mod callback;
mod connect;
mod connection;
pub mod demo;
mod durable;
pub mod error_code;
mod feed;
mod host;
mod metrics;
mod named_streams;
mod peer;
mod server;
mod sessions;
mod state;
mod stats;
mod stream;
pub mod telemetry;
pub mod tls;
mod traces;

pub use callback::SetupError;
pub use host::Host;
pub use server::{Gateway, Listener, Listeners, RouterFailed};
pub use state::StartError;
