//! `limits.*`: sizes and counts, and what a connection may cost before the connect callback has
//! accepted it (the public port faces the internet, so that cost must be bounded per connection,
//! per client address and in total).

use serde::{Deserialize, Serialize};

use super::{ConfigError, GoDuration, lenient};

/// Size and count limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitsConfig {
    /// Concurrent client connections (0: unlimited); past it, connects get 503 before the
    /// backend is called.
    #[serde(deserialize_with = "lenient::number")]
    pub max_connections: usize,
    /// Largest `/send`, `/close` or `/v1/*` request body.
    #[serde(deserialize_with = "lenient::number")]
    pub max_send_body: usize,
    /// Largest connect-callback answer body (the first message).
    #[serde(deserialize_with = "lenient::number")]
    pub max_callback_body: usize,
    /// Largest client request body forwarded to the connect callback.
    #[serde(deserialize_with = "lenient::number")]
    pub max_connect_body: usize,
    /// Largest request head (request line and headers) on the client listener; larger ones get
    /// 431. Browsers send a few KiB at most.
    #[serde(deserialize_with = "lenient::number")]
    pub client_max_head: usize,
    /// A client must send its whole request head within this time.
    pub client_head_timeout: GoDuration,
    /// Largest request head for the backend API: kuiperbelt's `/send` names one session per
    /// header line, so a send to a few thousand sessions is a few hundred KiB of head. Applies
    /// on `api_listen`, and on a shared listener to connections whose first request is not for
    /// the connect path.
    #[serde(deserialize_with = "lenient::number")]
    pub api_max_head: usize,
    /// A backend API request head must arrive within this time (also the idle time a
    /// keep-alive connection may wait between requests).
    pub api_head_timeout: GoDuration,
    /// Memory reserved, in total, for client connections that the connect callback has not
    /// accepted yet: each reserves `client_max_head` plus a fixed overhead from accept until its
    /// upgrade (and its body's limit while a body is read). When it is spent, new connections
    /// wait up to `client_head_timeout` for room, then get 503.
    #[serde(deserialize_with = "lenient::number")]
    pub handshake_memory: usize,
    /// With the backend API on the client listener: connections whose first request is not for
    /// the connect path (each may hold `api_max_head`) open at once; more wait, then get 503.
    #[serde(deserialize_with = "lenient::number")]
    pub shared_api_connections: usize,
    /// Connections open at once from one client address (an IPv6 /64 counts as one); more get
    /// 429 (0: unlimited).
    #[serde(deserialize_with = "lenient::number")]
    pub address_connections: usize,
    /// Connection attempts per second from one client address, on average (0: unlimited).
    #[serde(deserialize_with = "lenient::number")]
    pub address_connect_rate: u32,
    /// Connection attempts one client address may make at once before the rate applies.
    #[serde(deserialize_with = "lenient::number")]
    pub address_connect_burst: u32,
    /// Sessions one user (named by the connect callback's `X-Oort-User`) may hold at once,
    /// cluster-wide (0: unlimited).
    #[serde(deserialize_with = "lenient::number")]
    pub max_sessions_per_user: u32,
    /// The longest a `/v1/request` may wait for its client's reply (its `timeout_ms`).
    pub max_request_timeout: GoDuration,
    /// What a connect past `max_sessions_per_user` does: close the user's oldest session
    /// (`close_oldest`), or be refused with 429 (`refuse`).
    pub user_overflow: UserOverflow,
}

/// `limits.user_overflow`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserOverflow {
    /// The user's oldest session is closed (4002) to make room.
    #[default]
    CloseOldest,
    /// The new session is refused.
    Refuse,
}

/// `limits.handshake_memory` by default: 64 MiB, room for 2,340 handshakes in progress at once
/// at the default `client_max_head`, a small part of a node's memory.
pub const DEFAULT_HANDSHAKE_MEMORY: usize = 64 << 20;

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: 0,
            max_send_body: 16 << 20,
            max_callback_body: 1 << 20,
            max_connect_body: 64 << 10,
            client_max_head: 16 << 10,
            client_head_timeout: GoDuration::from_secs(10),
            api_max_head: 512 << 10,
            api_head_timeout: GoDuration::from_secs(30),
            handshake_memory: DEFAULT_HANDSHAKE_MEMORY,
            shared_api_connections: 64,
            address_connections: 256,
            address_connect_rate: 20,
            address_connect_burst: 100,
            max_sessions_per_user: 0,
            max_request_timeout: GoDuration::from_secs(60),
            user_overflow: UserOverflow::CloseOldest,
        }
    }
}

/// hyper reads at least this much at a time, so a smaller head limit would not save memory.
const SMALLEST_HEAD_BUFFER: usize = 8 << 10;
/// Beyond this a head is no longer a head.
const LARGEST_HEAD: usize = 16 << 20;

impl LimitsConfig {
    /// Checks the values that a type alone cannot.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("limits.max_send_body", self.max_send_body),
            ("limits.max_callback_body", self.max_callback_body),
            ("limits.shared_api_connections", self.shared_api_connections),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError::invalid(key, value, "must be above 0"));
            }
        }
        for (key, value) in [
            ("limits.client_max_head", self.client_max_head),
            ("limits.api_max_head", self.api_max_head),
        ] {
            if !(1024..=LARGEST_HEAD).contains(&value) {
                return Err(ConfigError::invalid(
                    key,
                    value,
                    format!("must be between 1024 and {LARGEST_HEAD}"),
                ));
            }
        }
        for (key, value) in [
            ("limits.client_head_timeout", self.client_head_timeout),
            ("limits.api_head_timeout", self.api_head_timeout),
            ("limits.max_request_timeout", self.max_request_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::invalid(key, value, "must be above 0"));
            }
        }
        let one_handshake = self.handshake_reservation() + self.max_connect_body;
        if self.handshake_memory < one_handshake {
            return Err(ConfigError::invalid(
                "limits.handshake_memory",
                self.handshake_memory,
                format!(
                    "must hold at least one handshake with a body: limits.client_max_head plus \
                     limits.max_connect_body plus {HANDSHAKE_OVERHEAD} bytes = {one_handshake}"
                ),
            ));
        }
        if self.address_connect_rate > 0 && self.address_connect_burst == 0 {
            return Err(ConfigError::invalid(
                "limits.address_connect_burst",
                self.address_connect_burst,
                "must be above 0 when limits.address_connect_rate is set",
            ));
        }
        Ok(())
    }

    /// What one client connection reserves from `handshake_memory` until the connect callback
    /// accepted it: its head buffer (hyper never reads less than 8 KiB at a time), plus
    /// [`HANDSHAKE_OVERHEAD`]; [`HANDSHAKE_SILENT_SHARE`] of it from accept, the rest from its
    /// first byte.
    pub fn handshake_reservation(&self) -> usize {
        self.client_max_head.max(SMALLEST_HEAD_BUFFER) + HANDSHAKE_OVERHEAD
    }
}

/// What a handshake in progress costs besides its head buffer: hyper's write buffer (8 KiB,
/// allocated with the connection), the connection's task and state, and the socket's
/// registration. Measured (release build): 25.2 KiB of RSS per connection holding a 15 KB head
/// under the default 16 KiB limit, so 12 KiB covers it.
pub const HANDSHAKE_OVERHEAD: usize = 12 << 10;

/// The part of a handshake's reservation taken at accept, before its first byte: what a
/// connection that sends nothing costs (its task and socket; measured 4.3 KiB in a release
/// build). The rest is taken when the first byte arrives, so silent connections, which cost
/// little, do not crowd out the clients that send their heads.
pub const HANDSHAKE_SILENT_SHARE: usize = 6 << 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_reserve_the_head_limit_plus_the_overhead() {
        let limits = LimitsConfig::default();
        assert_eq!(limits.validate(), Ok(()));
        assert_eq!(limits.handshake_reservation(), (16 << 10) + (12 << 10));
    }

    #[test]
    fn a_budget_too_small_for_one_handshake_names_both_keys() {
        let limits = LimitsConfig {
            handshake_memory: 32 << 10,
            ..LimitsConfig::default()
        };
        let error = limits.validate().unwrap_err().to_string();
        assert!(error.contains("limits.handshake_memory"), "{error}");
        assert!(error.contains("limits.max_connect_body"), "{error}");
    }

    #[test]
    fn a_head_limit_below_one_kib_is_refused() {
        let limits = LimitsConfig {
            client_max_head: 512,
            ..LimitsConfig::default()
        };
        let error = limits.validate().unwrap_err().to_string();
        assert!(error.contains("limits.client_max_head"), "{error}");
        // A small head limit still reserves hyper's smallest read buffer.
        let limits = LimitsConfig {
            client_max_head: 2048,
            ..LimitsConfig::default()
        };
        assert_eq!(
            limits.handshake_reservation(),
            (8 << 10) + HANDSHAKE_OVERHEAD
        );
    }

    #[test]
    fn a_rate_without_a_burst_is_refused() {
        let limits = LimitsConfig {
            address_connect_burst: 0,
            ..LimitsConfig::default()
        };
        let error = limits.validate().unwrap_err().to_string();
        assert!(error.contains("limits.address_connect_burst"), "{error}");
        let unlimited = LimitsConfig {
            address_connect_rate: 0,
            address_connect_burst: 0,
            ..LimitsConfig::default()
        };
        assert_eq!(unlimited.validate(), Ok(()));
    }
}
