//! The client's address as the listener saw it, carried with each request as an extension. A
//! module of its own so that the connect flow does not depend on the server that serves it
//! (`server -> api -> connect` stays one way).

use std::net::SocketAddr;

/// The client's address (none on a unix socket).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PeerAddr(pub Option<SocketAddr>);
