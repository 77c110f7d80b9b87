//! Integration tests: real gateways on `127.0.0.1:0` (in-process), a real callback backend and
//! real WebSocket and HTTP clients.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// Helpers in `support` are shared by many modules; not every module uses each one.
#![allow(unreachable_pub, dead_code)]

mod support;

mod smoke;
