//! Integration tests: real gateways on `127.0.0.1:0` (in-process), a real callback backend and
//! real WebSocket and HTTP clients.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// Helpers in `support`, `api`, `raw` and `kb_support` are shared by many modules; not every
// module uses each one.
#![allow(unreachable_pub, dead_code)]

mod api;
mod kb_support;
mod raw;
mod support;

mod smoke;

// kuiperbelt compatibility, section by section of the kuiperbelt API reference.
mod kb_connect;
mod kb_lifecycle;
mod kb_origin_paths;
mod kb_send;
mod kb_stats;

mod admission;
mod auth_and_listeners;
mod backend_protection;
mod bad_backend;
mod bad_input;
mod broadcast;
mod callback_concurrency;
mod channels;
mod comet;
mod comet_official_client;
mod durable;
mod limits;
mod methods;
mod metrics_health;
mod named_streams;
mod pings;
mod request_reply;
mod rpc_error_codes;
mod rpc_events;
mod rpc_grpc_web_text;
mod shutdown;
mod slow_clients;
mod users;
mod v1_api;
mod v1_bad_requests;
mod v1_sessions;
