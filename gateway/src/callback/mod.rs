//! The HTTP client for the backend's four callbacks: connect, establish, close and receive.
//!
//! Header rules follow kuiperbelt exactly (see docs/kuiperbelt-compat.md for the few
//! deliberate differences): the connect callback gets the client's headers minus
//! `Connection`, `Upgrade` and `Sec-WebSocket-*`, with the client's query in place of the
//! configured one; `proxy_set_header` is applied; `X-Kuiperbelt-Endpoint` is appended.

mod connect_gate;
mod error;
mod exchange;
mod nats_events;
mod presence;
mod slots;

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use oort_common::config::Config;
use oort_common::{FrameKind, SessionKey};
use reqwest::Url;

pub(crate) use connect_gate::{ConnectGateRefusal, ConnectPass};
pub(crate) use error::CallbackError;
pub(crate) use presence::report_presence;

use crate::host::Host;
use crate::metrics::{CallbackKind, Metrics};
use connect_gate::ConnectGate;
use slots::CallbackSlots;

/// Headers the connect callback must not see, besides every `Sec-WebSocket-*`: the upgrade
/// handshake itself, and framing headers that belong to the client's hop.
const NOT_FORWARDED: [HeaderName; 8] = [
    header::CONNECTION,
    header::UPGRADE,
    header::HOST,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    // Oort does not decompress callback answers, so it must not invite compressed ones: the
    // body becomes the client's first frame byte for byte.
    header::ACCEPT_ENCODING,
];

/// Tells the backend which WebSocket subprotocols the client offered (the `Sec-WebSocket-*`
/// headers themselves are withheld, as in kuiperbelt).
pub(crate) const OFFERED_PROTOCOLS_HEADER: &str = "x-oort-websocket-protocols";

/// Once per this interval one callback is sent with `Connection: close`, so that keep-alive
/// connections spread over backends behind a load balancer (as kuiperbelt does).
const CONNECTION_ROTATION_SECS: u64 = 10;

/// What the connect callback answered.
#[derive(Debug)]
pub(crate) struct ConnectAnswer {
    /// The status (200 means accepted).
    pub status: StatusCode,
    /// The answer's Content-Type, if any.
    pub content_type: Option<HeaderValue>,
    /// The session key from the session header, if present and non-empty.
    pub session_key: Option<String>,
    /// The subprotocol the backend chose, if any.
    pub subprotocol: Option<HeaderValue>,
    /// `X-Oort-Channels`: the channels the session starts in.
    pub channels: Vec<HeaderValue>,
    /// `X-Oort-User`: the session's user.
    pub user: Option<HeaderValue>,
    /// The body: the first message on success, relayed to the client otherwise.
    pub body: Bytes,
}

/// The parts of a client's connect request that are forwarded.
pub(crate) struct ConnectForward<'a> {
    pub method: &'a Method,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
}

struct Urls {
    connect: Option<Url>,
    establish: Option<Url>,
    close: Option<Url>,
    receive: Option<Url>,
}

/// Sends callbacks to the backend.
pub(crate) struct CallbackClient {
    http: reqwest::Client,
    urls: Urls,
    session_header: HeaderName,
    proxy_set_header: Vec<(HeaderName, Option<HeaderValue>)>,
    endpoint: HeaderValue,
    timeout: Duration,
    max_body: usize,
    last_rotation: AtomicU64,
    slots: CallbackSlots,
    connect_gate: ConnectGate,
    /// `callback.nats_events`: connect, receive and close go to NATS workers (set once the
    /// router exists).
    nats_events: bool,
    events: std::sync::OnceLock<oort_router::EventChannel>,
}

/// A config value that passed validation but still cannot be used by this build.
#[derive(Debug, thiserror::Error)]
#[error("invalid value {value:?} for key `{key}`: {reason}")]
pub struct SetupError {
    /// The config key.
    pub key: String,
    /// Its value.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

fn setup_error(key: &str, value: &str, reason: impl ToString) -> SetupError {
    SetupError {
        key: key.into(),
        value: value.into(),
        reason: reason.to_string(),
    }
}

fn parse_url(key: &str, value: &str) -> Result<Option<Url>, SetupError> {
    if value.is_empty() {
        return Ok(None);
    }
    Url::parse(value)
        .map(Some)
        .map_err(|err| setup_error(key, value, err))
}

impl CallbackClient {
    pub(crate) fn new(
        config: &Config,
        endpoint: &str,
        host: &Host,
        metrics: &Metrics,
    ) -> Result<Self, SetupError> {
        let urls = Urls {
            connect: parse_url("callback.connect", &config.callback.connect)?,
            establish: parse_url("callback.establish", &config.callback.establish)?,
            close: parse_url("callback.close", &config.callback.close)?,
            receive: parse_url("callback.receive", &config.callback.receive)?,
        };
        let session_header = HeaderName::try_from(config.session_header.as_str())
            .map_err(|err| setup_error("session_header", &config.session_header, err))?;
        let mut proxy_set_header = Vec::new();
        for (name, value) in &config.proxy_set_header {
            let key = format!("proxy_set_header.{name}");
            let header =
                HeaderName::try_from(name.as_str()).map_err(|err| setup_error(&key, name, err))?;
            let value = if value.is_empty() {
                None
            } else {
                Some(
                    HeaderValue::try_from(value.as_str())
                        .map_err(|err| setup_error(&key, value, err))?,
                )
            };
            proxy_set_header.push((header, value));
        }
        let endpoint = HeaderValue::try_from(endpoint)
            .map_err(|err| setup_error("endpoint", endpoint, err))?;
        let roots = crate::tls::callback_roots(
            &host.platform_roots,
            &config.callback.ca_file,
            host.callback_ca_pem.as_deref(),
        )?;
        let http = crate::tls::client_builder(roots)
            .map_err(|err| setup_error("callback", "", err))?
            .pool_max_idle_per_host(128)
            .pool_idle_timeout(Duration::from_secs(10))
            .connect_timeout(config.callback_timeout())
            .tcp_nodelay(true)
            .user_agent(concat!("oort/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| setup_error("callback", "", err))?;
        Ok(Self {
            http,
            urls,
            session_header,
            proxy_set_header,
            endpoint,
            timeout: config.callback_timeout(),
            max_body: config.limits.max_callback_body,
            last_rotation: AtomicU64::new(0),
            slots: CallbackSlots::new(
                config.callback.max_concurrency,
                metrics.callbacks_in_flight.clone(),
                metrics.callbacks_waiting.clone(),
            ),
            connect_gate: ConnectGate::new(
                config.callback.connect_concurrency,
                config.callback.connect_rate,
            ),
            nats_events: config.callback.nats_events,
            events: std::sync::OnceLock::new(),
        })
    }

    /// Where events go with `callback.nats_events` (the router's NATS connection).
    pub(crate) fn use_events(&self, events: oort_router::EventChannel) {
        let _ = self.events.set(events);
    }

    /// The NATS event channel, when events go to NATS workers.
    fn nats(&self) -> Option<&oort_router::EventChannel> {
        self.nats_events.then(|| self.events.get()).flatten()
    }

    /// Lets a connect through to the callback stage under `callback.connect_concurrency` and
    /// `callback.connect_rate`; the pass must be held until the connect callback is answered.
    pub(crate) fn admit_connect(&self) -> Result<ConnectPass<'_>, ConnectGateRefusal> {
        self.connect_gate.enter()
    }

    /// True when a connect callback URL is configured (or connects go to NATS workers).
    pub(crate) fn has_connect(&self) -> bool {
        self.nats_events || self.urls.connect.is_some()
    }

    /// True when a receive callback URL is configured (or messages go to NATS workers).
    pub(crate) fn has_receive(&self) -> bool {
        self.nats_events || self.urls.receive.is_some()
    }

    /// Forwards a client's connect request and reads the whole answer.
    pub(crate) async fn connect(
        &self,
        forward: ConnectForward<'_>,
        metrics: &Metrics,
    ) -> Result<ConnectAnswer, CallbackError> {
        let kind = CallbackKind::Connect;
        let mut headers = HeaderMap::with_capacity(forward.headers.len() + 2);
        // A traced connect hands the backend its callback span as the parent instead (see
        // `exchange`); untraced, the client's `traceparent` is relayed like any header.
        let traced = oort_router::trace::sampled_current().is_some();
        for (name, value) in forward.headers {
            if NOT_FORWARDED.contains(name)
                || name.as_str().starts_with("sec-websocket-")
                || (traced && name.as_str() == oort_router::trace::TRACEPARENT)
            {
                continue;
            }
            headers.append(name.clone(), value.clone());
        }
        let offered: Vec<&str> = forward
            .headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect();
        if !offered.is_empty()
            && let Ok(value) = HeaderValue::try_from(offered.join(", "))
        {
            headers.insert(HeaderName::from_static(OFFERED_PROTOCOLS_HEADER), value);
        }
        self.apply_proxy_set_header(&mut headers);
        headers.append(
            HeaderName::from_static("x-kuiperbelt-endpoint"),
            self.endpoint.clone(),
        );
        if self.nats_events {
            let Some(events) = self.nats() else {
                return Err(CallbackError::NotConfigured(kind.as_str()));
            };
            let ConnectForward {
                method,
                query,
                body,
                ..
            } = forward;
            return self
                .connect_over_nats(events, method, query, &headers, body, metrics)
                .await;
        }
        let mut url = self
            .urls
            .connect
            .clone()
            .ok_or(CallbackError::NotConfigured(kind.as_str()))?;
        url.set_query(forward.query);
        let request = self
            .http
            .request(forward.method.clone(), url)
            .headers(headers)
            .body(forward.body);
        self.exchange(kind, request, metrics, |response, body| {
            let header_text = |name: &HeaderName| response.headers().get(name).cloned();
            ConnectAnswer {
                status: response.status(),
                content_type: header_text(&header::CONTENT_TYPE),
                session_key: response
                    .headers()
                    .get(&self.session_header)
                    .and_then(|value| value.to_str().ok())
                    .filter(|key| !key.is_empty())
                    .map(str::to_owned),
                subprotocol: header_text(&header::SEC_WEBSOCKET_PROTOCOL),
                channels: response
                    .headers()
                    .get_all(crate::connect::CHANNELS_HEADER)
                    .iter()
                    .cloned()
                    .collect(),
                user: response.headers().get(crate::connect::USER_HEADER).cloned(),
                body,
            }
        })
        .await
    }

    /// Tells the backend a session is open. Anything but 200 refuses it.
    /// Tells the backend a session is open; `resumed` when an `oort.v1` client resumed it
    /// (`X-Oort-Resumed: true`: no connect callback ran for this connection).
    pub(crate) async fn establish(
        &self,
        key: &SessionKey,
        resumed: bool,
        metrics: &Metrics,
    ) -> Result<(), CallbackError> {
        let url = self.urls.establish.as_ref();
        let extra = resumed.then_some((
            HeaderName::from_static("x-oort-resumed"),
            HeaderValue::from_static("true"),
        ));
        self.post_for_session(CallbackKind::Establish, url, key, None, extra, metrics)
            .await
    }

    /// Tells the backend a session ended.
    pub(crate) async fn close(
        &self,
        key: &SessionKey,
        metrics: &Metrics,
    ) -> Result<(), CallbackError> {
        if let Some(events) = self.nats() {
            return self
                .session_event_over_nats(events, CallbackKind::Close, key, None, metrics)
                .await;
        }
        let url = self.urls.close.as_ref();
        self.post_for_session(CallbackKind::Close, url, key, None, None, metrics)
            .await
    }

    /// Posts one client message to the backend.
    pub(crate) async fn receive(
        &self,
        key: &SessionKey,
        kind: FrameKind,
        data: Bytes,
        metrics: &Metrics,
    ) -> Result<(), CallbackError> {
        if let Some(events) = self.nats() {
            let message = Some((kind, data));
            return self
                .session_event_over_nats(events, CallbackKind::Receive, key, message, metrics)
                .await;
        }
        let url = self.urls.receive.as_ref();
        self.post_for_session(
            CallbackKind::Receive,
            url,
            key,
            Some((kind, data)),
            None,
            metrics,
        )
        .await
    }

    /// POSTs to a session callback (a message, or no body) and expects 200. An unconfigured
    /// callback succeeds without a request.
    async fn post_for_session(
        &self,
        kind: CallbackKind,
        url: Option<&Url>,
        key: &SessionKey,
        message: Option<(FrameKind, Bytes)>,
        extra_header: Option<(HeaderName, HeaderValue)>,
        metrics: &Metrics,
    ) -> Result<(), CallbackError> {
        let Some(url) = url else { return Ok(()) };
        let mut headers = self.session_headers(key);
        if let Some((name, value)) = extra_header {
            headers.insert(name, value);
        }
        let body = match message {
            Some((frame_kind, data)) => {
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(frame_kind.content_type()),
                );
                data
            }
            None => Bytes::new(),
        };
        let request = self.http.post(url.clone()).headers(headers).body(body);
        // Boxed: these run from connection tasks, and an HTTP exchange's future is kilobytes
        // that every idle connection would otherwise carry for its whole life.
        Box::pin(self.expect_ok(kind, request, metrics)).await
    }

    /// POSTs a JSON body to `url` (presence reports) and expects 200.
    pub(crate) async fn post_json(
        &self,
        kind: CallbackKind,
        url: &str,
        body: Vec<u8>,
        metrics: &Metrics,
    ) -> Result<(), CallbackError> {
        let mut headers = HeaderMap::with_capacity(3);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        self.apply_proxy_set_header(&mut headers);
        headers.append(
            HeaderName::from_static("x-kuiperbelt-endpoint"),
            self.endpoint.clone(),
        );
        let request = self.http.post(url).headers(headers).body(body);
        self.expect_ok(kind, request, metrics).await
    }

    /// Session header, then `proxy_set_header`, then the endpoint: kuiperbelt's order for the
    /// establish callback, which Oort also uses for close and receive.
    fn session_headers(&self, key: &SessionKey) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(4);
        if let Ok(value) = HeaderValue::try_from(key.as_str()) {
            headers.insert(self.session_header.clone(), value);
        }
        self.apply_proxy_set_header(&mut headers);
        headers.append(
            HeaderName::from_static("x-kuiperbelt-endpoint"),
            self.endpoint.clone(),
        );
        headers
    }

    fn apply_proxy_set_header(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.proxy_set_header {
            match value {
                Some(value) => {
                    headers.insert(name.clone(), value.clone());
                }
                None => {
                    headers.remove(name);
                }
            }
        }
    }
}
