//! Loader tests: kuiperbelt's own config test, its Docker example, and errors that name the key.

use std::collections::HashMap;
use std::time::Duration;

use super::*;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

fn load_text(text: &str, env: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    let lookup = env_of(env);
    load(&Sources {
        file: Some(text),
        lookup_env: &lookup,
        env_vars: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        overrides: Vec::new(),
    })
}

/// kuiperbelt's `config_test.go` (2f7c63a), with its expected `TestConfig`.
#[test]
fn kuiperbelt_test_config_loads_unchanged() {
    let text = r#"
session_header: "X-Kuiperbelt-Session-Key"
port: {{ env "EKBO_PORT" "9180" }}
callback:
  connect: "http://localhost:12346/connect"
  timeout: 5s
send_timeout: 1s
send_queue_size: 1
endpoint: "localhost"
proxy_set_header:
  X-Foo: "Foo"
  X-Forwarded-For: ""
"#;
    let loaded = load_text(text, &[("EKBO_PORT", "12345")]).unwrap();
    let config = loaded.config;
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(config.port, "12345");
    assert_eq!(config.session_header, "X-Kuiperbelt-Session-Key");
    assert_eq!(config.callback.connect, "http://localhost:12346/connect");
    assert_eq!(config.callback.establish, "");
    assert_eq!(config.callback.close, "");
    assert_eq!(config.callback.timeout.0, Duration::from_secs(5));
    assert_eq!(config.send_timeout.0, Duration::from_secs(1));
    assert_eq!(config.send_queue_size, 1);
    assert_eq!(config.queue_max_messages(), 1);
    assert_eq!(config.endpoint, "localhost");
    assert_eq!(
        config.proxy_set_header.get("X-Foo").map(String::as_str),
        Some("Foo")
    );
    assert_eq!(
        config
            .proxy_set_header
            .get("X-Forwarded-For")
            .map(String::as_str),
        Some("")
    );
    assert_eq!(config.origin_policy, OriginPolicy::None);
    assert_eq!(config.path, PathConfig::default());
    assert_eq!(
        config.client_listen().unwrap(),
        ListenAddr::Tcp {
            host: None,
            port: 12345
        }
    );
}

/// A config in the style of kuiperbelt's Docker image: every key from an `EKBO_*` variable.
const CONFIG_BY_ENV: &str = include_str!("../../../docs/examples/kuiperbelt-docker.yml");

#[test]
fn kuiperbelt_docker_config_gives_kuiperbelt_defaults() {
    let loaded = load_text(CONFIG_BY_ENV, &[]).unwrap();
    let expected = Config {
        callback: CallbackConfig {
            connect: "http://localhost:12346/connect".into(),
            ..CallbackConfig::default()
        },
        ..Config::default()
    };
    assert_eq!(loaded.config, expected);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn kuiperbelt_docker_config_follows_its_variables() {
    let env = [
        ("EKBO_PORT", "9999"),
        ("EKBO_CONNECT_PATH", "/socket.io/"),
        ("EKBO_RECEIVE_CALLBACK_URL", "http://backend:80/receive"),
        ("EKBO_CALLBACK_TIMEOUT", "1500ms"),
        ("EKBO_STRICT_BROADCAST_MODE_SWITCH", "true"),
        ("EKBO_PROXY_SET_HEADER", r#"{"X-Api-Key": "k"}"#),
        ("EKBO_IDLE_TIMEOUT", "2m"),
        ("EKBO_ORIGIN_POLICY", "same_hostname"),
        ("EKBO_SEND_QUEUE_SIZE", "8"),
        ("EKBO_UNIX_DOMAIN_SOCKET_FILENAME", "/tmp/ekbo.sock"),
    ];
    let config = load_text(CONFIG_BY_ENV, &env).unwrap().config;
    assert_eq!(config.port, "9999");
    assert_eq!(config.path.connect, "/socket.io/");
    assert_eq!(config.callback.receive, "http://backend:80/receive");
    assert_eq!(config.callback.timeout.0, Duration::from_millis(1500));
    assert!(config.strict_broadcast);
    assert_eq!(
        config.proxy_set_header.get("X-Api-Key").map(String::as_str),
        Some("k")
    );
    assert_eq!(config.idle_timeout.0, Duration::from_secs(120));
    assert_eq!(config.origin_policy, OriginPolicy::SameHostname);
    assert_eq!(config.send_queue_size, 8);
    assert_eq!(
        config.client_listen().unwrap(),
        ListenAddr::Unix("/tmp/ekbo.sock".into())
    );
}

#[test]
fn empty_or_missing_file_gives_defaults() {
    assert_eq!(load_text("", &[]).unwrap().config, Config::default());
    let lookup = env_of(&[]);
    let loaded = load(&Sources {
        file: None,
        lookup_env: &lookup,
        env_vars: Vec::new(),
        overrides: Vec::new(),
    })
    .unwrap();
    assert_eq!(loaded.config, Config::default());
}

#[test]
fn environment_and_cli_override_the_file_in_that_order() {
    let lookup = env_of(&[]);
    let loaded = load(&Sources {
        file: Some("port: 1000\napi_token: from-file\ncallback:\n  timeout: 1s\n"),
        lookup_env: &lookup,
        env_vars: vec![
            ("OORT_PORT".into(), "2000".into()),
            ("OORT_CALLBACK__TIMEOUT".into(), "2s".into()),
            ("OORT_PROXY_SET_HEADER".into(), "{X-A: b}".into()),
            ("OORT_CONFIG".into(), "/etc/oort.yml".into()),
            ("HOME".into(), "/root".into()),
        ],
        overrides: vec![
            ("port".into(), "3000".into()),
            ("websocket.ping_interval".into(), "0".into()),
        ],
    })
    .unwrap();
    let config = loaded.config;
    assert_eq!(config.port, "3000");
    assert_eq!(config.api_token, "from-file");
    assert_eq!(config.callback.timeout.0, Duration::from_secs(2));
    assert_eq!(
        config.proxy_set_header.get("X-A").map(String::as_str),
        Some("b")
    );
    assert!(config.websocket.ping_interval.is_zero());
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn errors_name_the_key_and_the_value() {
    let cases: [(&str, &str, &str); 10] = [
        (
            "callback:\n  timeout: 5 seconds\n",
            "callback.timeout",
            "5 seconds",
        ),
        ("origin_policy: strict\n", "origin_policy", "strict"),
        ("send_queue_size: -1\n", "send_queue_size", "-1"),
        ("strict_broadcast: maybe\n", "strict_broadcast", "maybe"),
        (
            "callback:\n  receive: not a url\n",
            "callback.receive",
            "not a url",
        ),
        ("path:\n  send: send\n", "path.send", "send"),
        ("path:\n  send: /connect\n", "path.send", "/connect"),
        ("session_header: \"X Bad\"\n", "session_header", "X Bad"),
        ("port: http\n", "port", "http"),
        (
            "callback:\n  max_concurrency: 0\n",
            "callback.max_concurrency",
            "0",
        ),
    ];
    for (text, key, value) in cases {
        match load_text(text, &[]) {
            Err(ConfigError::Invalid {
                key: got_key,
                value: got_value,
                reason,
            }) => {
                assert_eq!(got_key, key, "{text}");
                assert!(got_value.contains(value), "{text}: {got_value}");
                assert!(!reason.is_empty());
            }
            other => panic!("{text}: expected an invalid-key error, got {other:?}"),
        }
    }
}

#[test]
fn syntax_and_template_errors_are_reported() {
    assert!(matches!(
        load_text("port: [1, 2\n", &[]),
        Err(ConfigError::Yaml(_))
    ));
    assert!(matches!(
        load_text("- a\n- b\n", &[]),
        Err(ConfigError::Yaml(_))
    ));
    let err = load_text("port: {{ must_env \"OORT_TEST_UNSET\" }}\n", &[]).unwrap_err();
    assert!(err.to_string().contains("OORT_TEST_UNSET"), "{err}");
}

#[test]
fn unknown_keys_are_warned_about_not_fatal() {
    let loaded = load_text(
        "prot: 1\ncallback:\n  conect: x\nproxy_set_header:\n  X-Any: y\n",
        &[],
    )
    .unwrap();
    assert_eq!(
        loaded.warnings,
        vec![
            "unknown key `callback.conect` is ignored",
            "unknown key `prot` is ignored"
        ]
    );
}

#[test]
fn endpoint_is_computed_from_the_config_port() {
    let mut config = Config::default();
    assert_eq!(config.effective_endpoint("vm"), "vm:9180");
    config.port = "80".into();
    assert_eq!(config.effective_endpoint("vm"), "vm");
    config.endpoint = "ws.example:443".into();
    assert_eq!(config.effective_endpoint("vm"), "ws.example:443");
}

#[test]
fn empty_values_fall_back_to_kuiperbelt_defaults() {
    let config = load_text(
        "session_header: \"\"\norigin_policy:\npath:\n  connect: \"\"\n",
        &[],
    )
    .unwrap()
    .config;
    assert_eq!(config.session_header, DEFAULT_SESSION_HEADER);
    assert_eq!(config.origin_policy, OriginPolicy::None);
    assert_eq!(config.path.connect, "/connect");
}

/// NATS credentials come from files and variables like every key, and are never shown: not by
/// `Debug`, not when serialized (`oort check-config --print`), not in errors.
#[test]
fn nats_credentials_load_from_variables_and_are_never_shown() {
    let file = "cluster:\n  nats: tls://nats.example:4222\n  nats_auth:\n    user: oort\n  nats_tls:\n    ca_file: /tls/ca.crt\n";
    // A password that starts with `[` is a password, not a YAML list.
    let loaded = load_text(file, &[("OORT_CLUSTER__NATS_AUTH__PASSWORD", "[hunter2")]).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let cluster = &loaded.config.cluster;
    assert_eq!(cluster.nats_auth.user, "oort");
    assert_eq!(cluster.nats_auth.password.expose(), "[hunter2");
    assert_eq!(cluster.nats_tls.ca_file, "/tls/ca.crt");
    let printed = serde_json::to_string_pretty(&loaded.config).unwrap();
    let debugged = format!("{:?}", loaded.config);
    for shown in [&printed, &debugged] {
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
    let error = load_text(
        "cluster:\n  nats: nats://n:4222\n  nats_auth:\n    token: [hunter2, x]\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("cluster.nats_auth.token"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
}

#[test]
fn callback_ca_file_and_max_concurrency_load_with_their_defaults() {
    let defaults = load_text("", &[]).unwrap().config;
    assert_eq!(defaults.callback.ca_file, "");
    assert_eq!(
        defaults.callback.max_concurrency,
        DEFAULT_CALLBACK_MAX_CONCURRENCY
    );
    assert!(!defaults.callback.uses_https());
    let config = load_text(
        "callback:\n  connect: HTTPS://backend/connect\n  ca_file: /etc/oort/ca.pem\n  \
         max_concurrency: \"64\"\n",
        &[],
    )
    .unwrap()
    .config;
    assert_eq!(config.callback.ca_file, "/etc/oort/ca.pem");
    assert_eq!(config.callback.max_concurrency, 64);
    assert!(config.callback.uses_https());
}

#[test]
fn hostile_client_limits_load_from_the_file_and_from_variables() {
    let defaults = load_text("", &[]).unwrap().config;
    assert_eq!(defaults.limits.client_max_head, 16 << 10);
    assert_eq!(
        defaults.limits.client_head_timeout.0,
        Duration::from_secs(10)
    );
    assert_eq!(defaults.limits.api_max_head, 512 << 10);
    assert_eq!(
        defaults.callback.connect_concurrency,
        DEFAULT_CONNECT_CONCURRENCY
    );
    assert_eq!(defaults.websocket.max_message_rate, 100);
    assert!(defaults.client_address.trusted_proxies.is_empty());
    let text = "limits:\n  client_max_head: 8192\n  client_head_timeout: 2s\n  \
                address_connections: 0\nclient_address:\n  header: X-Forwarded-For\n";
    let config = load_text(
        text,
        &[
            (
                "OORT_CLIENT_ADDRESS__TRUSTED_PROXIES",
                "10.0.0.0/8,fd00::/8",
            ),
            ("OORT_WEBSOCKET__MAX_MESSAGE_RATE", "5"),
            ("OORT_CALLBACK__CONNECT_RATE", "300"),
        ],
    )
    .unwrap()
    .config;
    assert_eq!(config.limits.client_max_head, 8192);
    assert_eq!(config.limits.client_head_timeout.0, Duration::from_secs(2));
    assert_eq!(config.limits.address_connections, 0);
    assert_eq!(
        config.client_address.trusted_proxies,
        ["10.0.0.0/8", "fd00::/8"]
    );
    assert_eq!(config.websocket.max_message_rate, 5);
    assert_eq!(config.callback.connect_rate, 300);
}

#[test]
fn a_client_address_header_needs_trusted_proxies_except_on_a_unix_socket() {
    let error = load_text("client_address:\n  header: X-Forwarded-For\n", &[])
        .unwrap_err()
        .to_string();
    assert!(error.contains("client_address.header"), "{error}");
    assert!(error.contains("trusted_proxies"), "{error}");
    let on_socket = "sock: /tmp/oort.sock\nclient_address:\n  header: X-Real-IP\n";
    assert!(load_text(on_socket, &[]).is_ok());
    let error = load_text(
        "client_address:\n  header: \"bad header\"\n  trusted_proxies: [10.0.0.1]\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("client_address.header"), "{error}");
    let error = load_text("callback:\n  connect_concurrency: 0\n", &[])
        .unwrap_err()
        .to_string();
    assert!(error.contains("callback.connect_concurrency"), "{error}");
    let error = load_text("websocket:\n  message_burst: 0\n", &[])
        .unwrap_err()
        .to_string();
    assert!(error.contains("websocket.message_burst"), "{error}");
}
