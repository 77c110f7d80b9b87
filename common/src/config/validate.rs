//! Checks that need more than a type: URLs, header names, paths that must not collide, and
//! settings that only make sense together.

use super::{Config, ConfigError};

/// Paths Oort serves itself; the configurable kuiperbelt paths must not shadow them.
pub(crate) const RESERVED_PATHS: [&str; 4] = ["/metrics", "/livez", "/readyz", "/v1/"];

pub(crate) fn validate(config: &Config) -> Result<(), ConfigError> {
    let client = config.client_listen()?;
    // Port 0 asks for a free port, so two listeners on port 0 never collide.
    let ephemeral = matches!(client, super::ListenAddr::Tcp { port: 0, .. });
    if let Some(api) = config.api_listen()?
        && api == client
        && !ephemeral
    {
        return Err(ConfigError::invalid(
            "api_listen",
            &config.api_listen,
            "must differ from the client listener",
        ));
    }
    check_header_name("session_header", &config.session_header)?;
    check_callbacks(config)?;
    for (name, value) in &config.proxy_set_header {
        check_header_name(&format!("proxy_set_header.{name}"), name)?;
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(ConfigError::invalid(
                &format!("proxy_set_header.{name}"),
                value,
                "header values cannot contain CR, LF or NUL",
            ));
        }
    }
    check_paths(config)?;
    check_websocket(config)?;
    check_sizes(config)?;
    config.limits.validate()?;
    check_client_address(config, &client)?;
    config.cluster.validate()?;
    config.session.validate()?;
    config.channels.validate()?;
    config.streams.validate()?;
    config.tracing.validate()?;
    if config.log.level.trim().is_empty() {
        return Err(ConfigError::invalid(
            "log.level",
            &config.log.level,
            "use trace, debug, info, warn or error",
        ));
    }
    Ok(())
}

fn check_callbacks(config: &Config) -> Result<(), ConfigError> {
    if config.callback.max_concurrency == 0 {
        return Err(ConfigError::invalid(
            "callback.max_concurrency",
            config.callback.max_concurrency,
            "must be above 0",
        ));
    }
    if config.callback.connect_concurrency == 0 {
        return Err(ConfigError::invalid(
            "callback.connect_concurrency",
            config.callback.connect_concurrency,
            "must be above 0",
        ));
    }
    if config.callback.presence_interval.is_zero() {
        return Err(ConfigError::invalid(
            "callback.presence_interval",
            config.callback.presence_interval,
            "must be above 0",
        ));
    }
    if config.callback.nats_events && !config.cluster.enabled() {
        return Err(ConfigError::invalid(
            "callback.nats_events",
            true,
            "needs cluster.nats: the events travel on the cluster's NATS",
        ));
    }
    for (key, value) in config.callback.urls() {
        if value.is_empty() {
            continue;
        }
        match url::Url::parse(value) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            Ok(_) => {
                return Err(ConfigError::invalid(
                    key,
                    value,
                    "expected an http:// or https:// URL with a host",
                ));
            }
            Err(err) => {
                return Err(ConfigError::invalid(
                    key,
                    value,
                    format!("not a URL: {err}"),
                ));
            }
        }
    }
    Ok(())
}

fn check_header_name(key: &str, name: &str) -> Result<(), ConfigError> {
    // RFC 9110 token characters.
    let is_token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(is_token) {
        return Err(ConfigError::invalid(
            key,
            name,
            "not a valid HTTP header name",
        ));
    }
    Ok(())
}

fn check_paths(config: &Config) -> Result<(), ConfigError> {
    let paths = [
        ("path.connect", &config.path.connect),
        ("path.close", &config.path.close),
        ("path.stats", &config.path.stats),
        ("path.send", &config.path.send),
        ("path.ping", &config.path.ping),
    ];
    for (index, (key, path)) in paths.iter().enumerate() {
        if !path.starts_with('/') {
            return Err(ConfigError::invalid(key, path, "a path must start with /"));
        }
        if let Some((other, _)) = paths[..index].iter().find(|(_, earlier)| earlier == path) {
            return Err(ConfigError::invalid(
                key,
                path,
                format!("the same path is already used by `{other}`"),
            ));
        }
        if RESERVED_PATHS
            .iter()
            .any(|reserved| path.as_str() == *reserved || path.starts_with("/v1/"))
        {
            return Err(ConfigError::invalid(
                key,
                path,
                "this path is reserved for Oort's own API",
            ));
        }
    }
    Ok(())
}

fn check_websocket(config: &Config) -> Result<(), ConfigError> {
    let ws = &config.websocket;
    if !ws.ping_interval.is_zero() && ws.pong_timeout.is_zero() {
        return Err(ConfigError::invalid(
            "websocket.pong_timeout",
            ws.pong_timeout,
            "must be above 0 when pings are on",
        ));
    }
    if !(256..=1 << 20).contains(&ws.read_buffer_size) {
        return Err(ConfigError::invalid(
            "websocket.read_buffer_size",
            ws.read_buffer_size,
            "must be between 256 and 1048576",
        ));
    }
    if ws.max_message_rate > 0 && ws.message_burst == 0 {
        return Err(ConfigError::invalid(
            "websocket.message_burst",
            ws.message_burst,
            "must be above 0 when websocket.max_message_rate is set",
        ));
    }
    if ws.max_message_size == 0 {
        return Err(ConfigError::invalid(
            "websocket.max_message_size",
            ws.max_message_size,
            "must be above 0",
        ));
    }
    Ok(())
}

fn check_sizes(config: &Config) -> Result<(), ConfigError> {
    if config.queue.max_bytes == 0 {
        return Err(ConfigError::invalid(
            "queue.max_bytes",
            config.queue.max_bytes,
            "must be above 0",
        ));
    }
    if config.queue.slow_consumer_timeout.is_zero() {
        return Err(ConfigError::invalid(
            "queue.slow_consumer_timeout",
            config.queue.slow_consumer_timeout,
            "must be above 0",
        ));
    }
    Ok(())
}

/// The header is believed only from trusted proxies; without any, it would be ignored, which is
/// surely not what was meant. A unix socket's peers are local proxies, so there it may stand
/// alone.
fn check_client_address(config: &Config, client: &super::ListenAddr) -> Result<(), ConfigError> {
    let settings = &config.client_address;
    let proxies = settings.trusted_proxies()?;
    if settings.header.is_empty() {
        return Ok(());
    }
    check_header_name("client_address.header", &settings.header)?;
    if proxies.is_empty() && !matches!(client, super::ListenAddr::Unix(_)) {
        return Err(ConfigError::invalid(
            "client_address.header",
            &settings.header,
            "set client_address.trusted_proxies too: the header is believed only from them",
        ));
    }
    Ok(())
}
