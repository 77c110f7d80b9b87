//! The configuration model: every kuiperbelt key with its kuiperbelt default, plus Oort's own
//! keys, and the loader that turns a config file, `OORT_*` variables and CLI overrides into a
//! validated [`Config`].
//!
//! A kuiperbelt `config.yml` loads unchanged: the same keys, templating and duration syntax.

mod channels;
mod client_address;
mod cluster;
mod duration;
mod error;
mod lenient;
mod limits;
mod listen;
mod load;
mod nats_access;
mod nats_auth;
mod nats_tls;
mod secret;
mod session;
mod streams;
mod template;
mod tracing;
mod unsafe_settings;
mod validate;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use channels::ChannelsConfig;
pub use client_address::{ClientAddressConfig, TrustedProxies};
pub use cluster::ClusterConfig;
pub use duration::{DurationError, GoDuration, parse_go_duration};
pub use error::ConfigError;
pub use limits::{
    DEFAULT_HANDSHAKE_MEMORY, HANDSHAKE_OVERHEAD, HANDSHAKE_SILENT_SHARE, LimitsConfig,
    UserOverflow,
};
pub use listen::ListenAddr;
pub use load::{ENV_PREFIX, Loaded, Sources, load};
pub use nats_access::{ClientIdentity, NatsAccess, NatsAuth, NatsTls, ReadFile};
pub use nats_auth::NatsAuthConfig;
pub use nats_tls::NatsTlsConfig;
pub use secret::{REDACTED, Secret};
pub use session::SessionConfig;
pub use streams::StreamsConfig;
pub use template::TemplateError;
pub use tracing::{TRACE_PROTOCOLS, TracingConfig};

/// kuiperbelt's default port.
pub const DEFAULT_PORT: &str = "9180";
/// kuiperbelt's default session header.
pub const DEFAULT_SESSION_HEADER: &str = "X-Kuiperbelt-Session";
/// Used for `callback.timeout: 0`: kuiperbelt waits forever there; Oort bounds every wait.
pub const DEFAULT_CALLBACK_TIMEOUT: GoDuration = GoDuration::from_secs(30);
/// `callback.max_concurrency`: callbacks one node keeps in flight at most. High enough that a
/// healthy backend never makes a callback wait, low enough that a drain of 100k sessions does
/// not open 100k connections to the backend at once.
pub const DEFAULT_CALLBACK_MAX_CONCURRENCY: usize = 512;
/// `callback.connect_concurrency`: twice `callback.max_concurrency`, so a connect storm keeps
/// the backend busy with a short queue behind it, and anything beyond is refused at once.
pub const DEFAULT_CONNECT_CONCURRENCY: usize = 2 * DEFAULT_CALLBACK_MAX_CONCURRENCY;
/// Per-session queue length when neither `queue.max_messages` nor `send_queue_size` is set.
pub const DEFAULT_QUEUE_MESSAGES: usize = 1024;

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// TCP port for the (shared) listener, on all interfaces. kuiperbelt key.
    #[serde(deserialize_with = "lenient::string")]
    pub port: String,
    /// Unix socket path; overrides `port`. kuiperbelt key.
    #[serde(deserialize_with = "lenient::string")]
    pub sock: String,
    /// The `X-Kuiperbelt-Endpoint` value; empty means `hostname:port` (or `hostname` for a
    /// port at or below 1023). kuiperbelt key.
    #[serde(deserialize_with = "lenient::string")]
    pub endpoint: String,
    /// The header carrying session keys in callbacks, `/send` and `/close`. kuiperbelt key.
    #[serde(deserialize_with = "lenient::string")]
    pub session_header: String,
    /// Backend callback URLs and their timeout. kuiperbelt keys.
    pub callback: CallbackConfig,
    /// When any target of `/send` or `/close` is unknown, send nothing. kuiperbelt key.
    #[serde(deserialize_with = "lenient::bool")]
    pub strict_broadcast: bool,
    /// Headers set on callback requests; an empty value removes the header. kuiperbelt key.
    pub proxy_set_header: BTreeMap<String, String>,
    /// kuiperbelt bounded how long `/send` waited for a full queue; Oort never waits (a full
    /// queue answers at once), so any value is accepted and the bound always holds.
    pub send_timeout: GoDuration,
    /// kuiperbelt's per-session queue length; used when `queue.max_messages` is 0.
    #[serde(deserialize_with = "lenient::number")]
    pub send_queue_size: usize,
    /// Which `Origin` headers may connect. kuiperbelt key.
    pub origin_policy: OriginPolicy,
    /// Close a connection after this long without activity (0: never). kuiperbelt key.
    pub idle_timeout: GoDuration,
    /// Do not log one line per API request. kuiperbelt key.
    #[serde(deserialize_with = "lenient::bool")]
    pub suppress_access_log: bool,
    /// Route paths. kuiperbelt keys.
    pub path: PathConfig,

    /// Client listener address (`host:port`, `:port` or `unix:/path`); overrides `port`/`sock`.
    #[serde(deserialize_with = "lenient::string")]
    pub listen: String,
    /// A separate listener for the backend API; empty serves the API on the client listener.
    #[serde(deserialize_with = "lenient::string")]
    pub api_listen: String,
    /// When set, every backend API request must carry `Authorization: Bearer <api_token>`.
    #[serde(deserialize_with = "lenient::string")]
    pub api_token: String,
    /// WebSocket protocol settings.
    pub websocket: WebSocketConfig,
    /// Per-session outbound queue bounds.
    pub queue: QueueConfig,
    /// Size and count limits, and what a client may cost before it is accepted.
    pub limits: LimitsConfig,
    /// Where a client's address comes from (a trusted proxy's header, or the TCP peer).
    pub client_address: ClientAddressConfig,
    /// How long a SIGTERM drain may take before the process exits anyway.
    pub shutdown_grace_period: GoDuration,
    /// Logging.
    pub log: LogConfig,
    /// Multi-node operation; without `cluster.nats` the node runs alone.
    pub cluster: ClusterConfig,
    /// `oort.v1` sessions: replay buffer, linger and resume tokens.
    pub session: SessionConfig,
    /// Channel limits.
    pub channels: ChannelsConfig,
    /// Named Durable Streams.
    pub streams: StreamsConfig,
    /// OpenTelemetry traces.
    pub tracing: TracingConfig,
}

impl LimitsConfig {
    /// The per-user limit as the directory applies it.
    pub fn user_limit(&self) -> crate::cluster::UserLimit {
        crate::cluster::UserLimit {
            max_sessions: self.max_sessions_per_user,
            close_oldest: self.user_overflow == UserOverflow::CloseOldest,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            port: DEFAULT_PORT.to_owned(),
            sock: String::new(),
            endpoint: String::new(),
            session_header: DEFAULT_SESSION_HEADER.to_owned(),
            callback: CallbackConfig::default(),
            strict_broadcast: false,
            proxy_set_header: BTreeMap::new(),
            send_timeout: GoDuration::ZERO,
            send_queue_size: 0,
            origin_policy: OriginPolicy::None,
            idle_timeout: GoDuration::ZERO,
            suppress_access_log: false,
            path: PathConfig::default(),
            listen: String::new(),
            api_listen: String::new(),
            api_token: String::new(),
            websocket: WebSocketConfig::default(),
            queue: QueueConfig::default(),
            limits: LimitsConfig::default(),
            client_address: ClientAddressConfig::default(),
            shutdown_grace_period: GoDuration::from_secs(25),
            log: LogConfig::default(),
            cluster: ClusterConfig::default(),
            session: SessionConfig::default(),
            channels: ChannelsConfig::default(),
            streams: StreamsConfig::default(),
            tracing: TracingConfig::default(),
        }
    }
}

impl Config {
    /// kuiperbelt treats an empty value as "use the default" for these keys, which is what a
    /// templated config produces for an unset variable (`session_header: {{ env "X" "" }}`).
    pub(crate) fn fill_empty_with_defaults(&mut self) {
        let defaults = Self::default();
        let fill = |value: &mut String, default: &String| {
            if value.trim().is_empty() {
                value.clone_from(default);
            }
        };
        fill(&mut self.port, &defaults.port);
        fill(&mut self.session_header, &defaults.session_header);
        fill(&mut self.path.connect, &defaults.path.connect);
        fill(&mut self.path.close, &defaults.path.close);
        fill(&mut self.path.stats, &defaults.path.stats);
        fill(&mut self.path.send, &defaults.path.send);
        fill(&mut self.path.ping, &defaults.path.ping);
        fill(&mut self.log.level, &defaults.log.level);
    }

    /// The `X-Kuiperbelt-Endpoint` value: `endpoint`, else `hostname:port`, or just `hostname`
    /// for a port at or below 1023, as kuiperbelt computes it. Unlike kuiperbelt, `port` here
    /// already includes a `--port` override.
    pub fn effective_endpoint(&self, hostname: &str) -> String {
        if !self.endpoint.is_empty() {
            return self.endpoint.clone();
        }
        match self.port.parse::<u16>() {
            Ok(port) if port > 1023 => format!("{hostname}:{port}"),
            _ => hostname.to_owned(),
        }
    }

    /// Where clients connect: `listen`, else the unix socket `sock`, else `port` on all
    /// interfaces.
    pub fn client_listen(&self) -> Result<ListenAddr, ConfigError> {
        if !self.listen.is_empty() {
            return ListenAddr::parse(&self.listen)
                .map_err(|reason| ConfigError::invalid("listen", &self.listen, reason));
        }
        if !self.sock.is_empty() {
            return Ok(ListenAddr::Unix(self.sock.clone().into()));
        }
        ListenAddr::parse(&format!(":{}", self.port))
            .map_err(|reason| ConfigError::invalid("port", &self.port, reason))
    }

    /// The separate backend API listener, if one is configured.
    pub fn api_listen(&self) -> Result<Option<ListenAddr>, ConfigError> {
        if self.api_listen.is_empty() {
            return Ok(None);
        }
        ListenAddr::parse(&self.api_listen)
            .map(Some)
            .map_err(|reason| ConfigError::invalid("api_listen", &self.api_listen, reason))
    }

    /// The per-session queue length actually used.
    pub fn queue_max_messages(&self) -> usize {
        match (self.queue.max_messages, self.send_queue_size) {
            (0, 0) => DEFAULT_QUEUE_MESSAGES,
            (0, kuiperbelt) => kuiperbelt,
            (oort, _) => oort,
        }
    }

    /// Whether channel joins and leaves are reported (`callback.presence`, or NATS events).
    pub fn reports_presence(&self) -> bool {
        !self.callback.presence.is_empty() || self.callback.nats_events || self.callback.event_feed
    }

    /// `callback.timeout`, or Oort's bound when it is 0.
    pub fn callback_timeout(&self) -> std::time::Duration {
        self.callback
            .timeout
            .non_zero()
            .unwrap_or(DEFAULT_CALLBACK_TIMEOUT.0)
    }
}

/// Backend callback URLs. An empty URL disables that callback.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CallbackConfig {
    /// Authenticates a connecting client and names its session key.
    #[serde(deserialize_with = "lenient::string")]
    pub connect: String,
    /// Told once the WebSocket is open, before any message flows.
    #[serde(deserialize_with = "lenient::string")]
    pub establish: String,
    /// Told when a session ends (not after the backend's own `/close`).
    #[serde(deserialize_with = "lenient::string")]
    pub close: String,
    /// Receives each client message.
    #[serde(deserialize_with = "lenient::string")]
    pub receive: String,
    /// Bounds each callback, including reading its answer (0: Oort's 30s bound).
    pub timeout: GoDuration,
    /// A PEM file of CA certificates trusted for https callbacks, besides the platform's roots.
    #[serde(deserialize_with = "lenient::string")]
    pub ca_file: String,
    /// Callbacks of all four kinds in flight at once on this node; more wait for a turn.
    #[serde(deserialize_with = "lenient::number")]
    pub max_concurrency: usize,
    /// Connects at the callback stage at once (in flight, or waiting for a turn under
    /// `max_concurrency`); more get 503 at once instead of piling up on the backend.
    #[serde(deserialize_with = "lenient::number")]
    pub connect_concurrency: usize,
    /// Connect callbacks started per second at most, with as many at once (0: no limit); more
    /// get 503 with `Retry-After`.
    #[serde(deserialize_with = "lenient::number")]
    pub connect_rate: u32,
    /// Send the connect, receive and close callbacks as NATS requests on
    /// `oort.<cluster>.events.{connect,message,close}` to backend workers (in a queue group:
    /// one worker handles each) instead of HTTP. Needs `cluster.nats`.
    #[serde(deserialize_with = "lenient::bool")]
    pub nats_events: bool,
    /// Told of channel joins and leaves on this node, in batches every `presence_interval`
    /// (a join and a leave of the same session and channel within one batch cancel out). With
    /// `nats_events` and no URL here, the batches are published on
    /// `oort.<cluster>.events.presence`.
    #[serde(deserialize_with = "lenient::string")]
    pub presence: String,
    /// How often presence changes are sent (and so how much churn is coalesced).
    pub presence_interval: GoDuration,
    /// Publish connects, client messages, closes and presence changes to the event feed that
    /// the RPC `WatchEvents` streams (docs/rpc.md): clustered, on
    /// `oort.<cluster>.events.feed`, so a consumer on any node sees every node's events. Off,
    /// an event costs nothing and `WatchEvents` answers `failed_precondition`.
    #[serde(deserialize_with = "lenient::bool")]
    pub event_feed: bool,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        Self {
            connect: String::new(),
            establish: String::new(),
            close: String::new(),
            receive: String::new(),
            timeout: GoDuration::ZERO,
            ca_file: String::new(),
            max_concurrency: DEFAULT_CALLBACK_MAX_CONCURRENCY,
            connect_concurrency: DEFAULT_CONNECT_CONCURRENCY,
            connect_rate: 0,
            nats_events: false,
            presence: String::new(),
            presence_interval: GoDuration::from_secs(1),
            event_feed: false,
        }
    }
}

impl CallbackConfig {
    /// The callback URLs with their keys, unset ones included.
    pub fn urls(&self) -> [(&'static str, &str); 5] {
        [
            ("callback.connect", &self.connect),
            ("callback.establish", &self.establish),
            ("callback.close", &self.close),
            ("callback.receive", &self.receive),
            ("callback.presence", &self.presence),
        ]
    }

    /// True when any callback goes over https, so trusted roots are needed.
    pub fn uses_https(&self) -> bool {
        self.urls()
            .iter()
            .any(|(_, url)| url::Url::parse(url).is_ok_and(|url| url.scheme() == "https"))
    }
}

/// kuiperbelt's `origin_policy`. An empty value means `none`, as in kuiperbelt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OriginPolicy {
    /// Accept any Origin.
    #[default]
    None,
    /// No Origin, or an Origin whose host:port equals the Host header (ignoring case).
    SameOrigin,
    /// An Origin whose hostname equals the Host header's hostname, ports ignored.
    SameHostname,
}

impl<'de> Deserialize<'de> for OriginPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = lenient::string(deserializer)?;
        match text.trim() {
            "" | "none" => Ok(Self::None),
            "same_origin" => Ok(Self::SameOrigin),
            "same_hostname" => Ok(Self::SameHostname),
            other => Err(serde::de::Error::custom(format!(
                "unknown origin policy {other:?}, expected none, same_origin or same_hostname"
            ))),
        }
    }
}

/// Route paths. A path ending in `/` also matches everything below it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PathConfig {
    /// Client WebSocket endpoint.
    #[serde(deserialize_with = "lenient::string")]
    pub connect: String,
    /// Backend: close sessions.
    #[serde(deserialize_with = "lenient::string")]
    pub close: String,
    /// Backend: kuiperbelt counters.
    #[serde(deserialize_with = "lenient::string")]
    pub stats: String,
    /// Backend: push to sessions.
    #[serde(deserialize_with = "lenient::string")]
    pub send: String,
    /// Backend: liveness ping.
    #[serde(deserialize_with = "lenient::string")]
    pub ping: String,
}

impl Default for PathConfig {
    fn default() -> Self {
        Self {
            connect: "/connect".into(),
            close: "/close".into(),
            stats: "/stats".into(),
            send: "/send".into(),
            ping: "/ping".into(),
        }
    }
}

/// WebSocket protocol settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WebSocketConfig {
    /// Server pings at this interval (0: no pings).
    pub ping_interval: GoDuration,
    /// A peer that has not answered a ping within this time is dropped.
    pub pong_timeout: GoDuration,
    /// Largest client message; larger ones close the connection with 1009.
    #[serde(deserialize_with = "lenient::number")]
    pub max_message_size: usize,
    /// Bytes read from the socket at a time, allocated per connection for its whole life.
    /// Small keeps idle connections cheap (512 B: 5.7 KiB RSS per idle connection, 2048 B: 7.2
    /// KiB); a client message larger than this takes several reads, which costs little next to
    /// the receive callback it triggers.
    #[serde(deserialize_with = "lenient::number")]
    pub read_buffer_size: usize,
    /// How long to wait for the client's answer to a close frame.
    pub close_timeout: GoDuration,
    /// Client messages (pings included) per second one session may send on average; a
    /// session that goes beyond it is closed with 1008 (0: no limit).
    #[serde(deserialize_with = "lenient::number")]
    pub max_message_rate: u32,
    /// Client messages a session may send at once before `max_message_rate` applies.
    #[serde(deserialize_with = "lenient::number")]
    pub message_burst: u32,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            ping_interval: GoDuration::from_secs(30),
            pong_timeout: GoDuration::from_secs(15),
            max_message_size: 1 << 20,
            read_buffer_size: 512,
            close_timeout: GoDuration::from_secs(3),
            max_message_rate: 100,
            message_burst: 200,
        }
    }
}

/// Per-session outbound queue bounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueConfig {
    /// Messages a session may have waiting (0: `send_queue_size`, else 1024).
    #[serde(deserialize_with = "lenient::number")]
    pub max_messages: usize,
    /// Bytes a session may have waiting.
    #[serde(deserialize_with = "lenient::number")]
    pub max_bytes: usize,
    /// A session that cannot take messages for this long (full queue or a stalled write) is
    /// closed with 1013.
    pub slow_consumer_timeout: GoDuration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_messages: 0,
            max_bytes: 1 << 20,
            slow_consumer_timeout: GoDuration::from_secs(10),
        }
    }
}

/// Logging.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// `trace`, `debug`, `info`, `warn` or `error`, or a full `tracing` filter directive.
    #[serde(deserialize_with = "lenient::string")]
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

#[cfg(test)]
mod tests;
