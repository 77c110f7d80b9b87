//! Starting an in-process gateway wired to a recording test backend.

use std::net::SocketAddr;
use std::time::Duration;

use oort_common::config::{Config, GoDuration, ListenAddr};
use oort_e2e::backend::CallbackKind;
use oort_e2e::{TestBackend, WsClient};
use oort_gateway::{Gateway, Host, Listener, Listeners};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A window for proving that something periodic (a ping) did *not* happen. Anything a request
/// could cause is proved absent with a marker sent after it (`api::send_marker`) instead.
pub const QUIET: Duration = Duration::from_millis(300);

/// A gateway under test, its backend, and how to stop it.
pub struct TestGateway {
    /// The client listener (also the API unless `api_addr` is set).
    pub addr: SocketAddr,
    /// The separate API listener, if configured.
    pub api_addr: Option<SocketAddr>,
    /// The recording callback backend.
    pub backend: TestBackend,
    shutdown: CancellationToken,
    run: Option<JoinHandle<Result<(), oort_gateway::RouterFailed>>>,
}

/// A config for tests: every callback points at `backend`, no pings, short timeouts.
pub fn test_config(backend: &TestBackend) -> Config {
    let mut config = Config::default();
    config.callback.connect = backend.callback_url(CallbackKind::Connect);
    config.callback.establish = backend.callback_url(CallbackKind::Establish);
    config.callback.close = backend.callback_url(CallbackKind::Close);
    config.callback.receive = backend.callback_url(CallbackKind::Receive);
    config.callback.timeout = GoDuration::from_secs(5);
    config.websocket.ping_interval = GoDuration::ZERO;
    config.websocket.close_timeout = GoDuration::from_secs(1);
    config.shutdown_grace_period = GoDuration::from_secs(5);
    config.endpoint = "test-endpoint:9180".into();
    // Every test client and the backend's API calls come from 127.0.0.1, many tests open a new
    // connection per request, so per-address limits would be reached by the tests themselves.
    // The tests of those limits set them.
    config.limits.address_connections = 0;
    config.limits.address_connect_rate = 0;
    config
}

/// The host a test gateway believes it runs on (tests set `endpoint`, and trust no roots).
pub fn test_host() -> Host {
    Host {
        hostname: "test-host".into(),
        ..Host::default()
    }
}

impl TestGateway {
    /// Starts a gateway with the test config, adjusted by `configure`.
    pub async fn start(configure: impl FnOnce(&mut Config)) -> Self {
        let backend = TestBackend::start().await;
        Self::start_with_backend(backend, configure).await
    }

    /// Starts a gateway against an existing backend.
    pub async fn start_with_backend(
        backend: TestBackend,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        let mut config = test_config(&backend);
        configure(&mut config);
        let loopback = ListenAddr::Tcp {
            host: Some("127.0.0.1".into()),
            port: 0,
        };
        let client = Listener::bind(&loopback)
            .await
            .expect("bind client listener");
        let addr = client.tcp_addr().expect("TCP");
        let api = if config.api_listen.is_empty() {
            None
        } else {
            Some(Listener::bind(&loopback).await.expect("bind API listener"))
        };
        let api_addr = api.as_ref().and_then(Listener::tcp_addr);
        let gateway = Gateway::start(config, &test_host())
            .await
            .expect("valid test config");
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(gateway.run(Listeners { client, api }, shutdown.clone()));
        Self {
            addr,
            api_addr,
            backend,
            shutdown,
            run: Some(run),
        }
    }

    /// `ws://.../connect?{query}`.
    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://{}/connect?{query}", self.addr)
    }

    /// The backend API's base URL.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr.unwrap_or(self.addr))
    }

    /// Connects a client with session key `key` and waits until its establish callback ran.
    pub async fn connect(&self, key: &str) -> WsClient {
        let client = WsClient::connect(&self.ws_url(&format!("key={key}"))).await;
        self.backend
            .wait_for(CallbackKind::Establish, key, 1, oort_e2e::TIMEOUT)
            .await;
        client
    }

    /// Starts the drain (as SIGTERM does) without waiting for it.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Shuts down and waits until the gateway has finished draining.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(run) = self.run.take() {
            tokio::time::timeout(Duration::from_secs(30), run)
                .await
                .expect("drain finished in time")
                .expect("gateway task")
                .expect("a single node's router never fails");
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
