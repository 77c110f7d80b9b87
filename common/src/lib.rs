//! Plain data shared by every Oort crate: session keys, payloads, delivery statuses and the
//! configuration model.
//!
//! **Architecture Invariant:** this crate does no I/O. Configuration arrives here as text plus an
//! environment lookup function; reading files and the process environment is the binary's job.

pub mod channel;
pub mod cluster;
pub mod config;
pub mod delivery;
pub mod envelope;
pub mod payload;
pub mod rpc;
pub mod session;
pub mod wire;

pub use delivery::{DeliveryMode, DeliveryStatus};
pub use payload::{FrameKind, Payload, PayloadError};
pub use session::{Epoch, NodeId, SessionKey};
