//! The command line and the configuration, through the real binary: kuiperbelt's own Docker
//! config driven by `EKBO_*` variables, precedence (file < `OORT_*` < flags), kuiperbelt's
//! single-dash flags, `check-config`, and exit code 64 naming the bad key and value.

use oort_e2e::process::{OortProcess, TempConfig, run_oort};
use oort_e2e::{CallbackKind, TIMEOUT, TestBackend, WsClient, http_client};

use crate::support::{describe, loopback, post_send};

/// A config in the style of kuiperbelt's Docker image: every key from an `EKBO_*` variable,
/// with kuiperbelt's defaults.
const KUIPERBELT_DOCKER_CONFIG: &str = include_str!("../../../docs/examples/kuiperbelt-docker.yml");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kuiperbelt_docker_config_with_ekbo_variables() {
    let backend = TestBackend::start().await;
    backend.set_session_header("X-Chat-Session");
    let connect = backend.callback_url(CallbackKind::Connect);
    let establish = backend.callback_url(CallbackKind::Establish);
    let close = backend.callback_url(CallbackKind::Close);
    let receive = backend.callback_url(CallbackKind::Receive);
    let config = TempConfig::new(KUIPERBELT_DOCKER_CONFIG);
    let env = [
        // Port 0 as kuiperbelt's `":"+port`: every interface, a free port.
        ("EKBO_PORT", "0"),
        ("EKBO_CONNECT_PATH", "/ws"),
        ("EKBO_SEND_PATH", "/push"),
        ("EKBO_PING_PATH", "/health/ping"),
        ("EKBO_CONNECT_CALLBACK_URL", connect.as_str()),
        ("EKBO_ESTABLISH_CALLBACK_URL", establish.as_str()),
        ("EKBO_CLOSE_CALLBACK_URL", close.as_str()),
        ("EKBO_RECEIVE_CALLBACK_URL", receive.as_str()),
        ("EKBO_CALLBACK_TIMEOUT", "5s"),
        ("EKBO_SUPPRESS_ACCESS_LOG", "true"),
        ("EKBO_SESSION_HEADER_NAME", "X-Chat-Session"),
        ("EKBO_SELF_ENDPOINT_URL", "gw-1.internal:9180"),
        ("EKBO_PROXY_SET_HEADER", r#"{"X-Forwarded-By": "oort-e2e"}"#),
        ("EKBO_SEND_QUEUE_SIZE", "16"),
        ("EKBO_ORIGIN_POLICY", "same_hostname"),
    ];
    let oort = OortProcess::spawn(&["--config", config.path()], &env);
    let addr = loopback(oort.listen_addr("client", TIMEOUT).await);

    // same_hostname ignores ports.
    let url = format!("ws://{addr}/ws?key=docker-1");
    let (mut client, _) = WsClient::connect_with(&url, &[("Origin", "http://127.0.0.1:1")])
        .await
        .unwrap_or_else(|err| panic!("connect failed: {err}\n{}", oort.logs().join("\n")));
    let connects = backend
        .wait_for_kind(CallbackKind::Connect, 1, TIMEOUT)
        .await;
    assert_eq!(
        connects[0].header("X-Kuiperbelt-Endpoint"),
        Some("gw-1.internal:9180")
    );
    assert_eq!(connects[0].header("X-Forwarded-By"), Some("oort-e2e"));
    backend
        .wait_for(CallbackKind::Establish, "docker-1", 1, TIMEOUT)
        .await;

    let push = format!("http://{addr}/push");
    let status = post_send(&push, "X-Chat-Session", &["docker-1"], "hello").await;
    assert_eq!(status, 200);
    assert_eq!(client.recv_text().await, "hello");

    client.send_text("from the client").await;
    let received = backend
        .wait_for(CallbackKind::Receive, "docker-1", 1, TIMEOUT)
        .await;
    assert_eq!(received[0].body, "from the client");

    let ping = http_client()
        .get(format!("http://{addr}/health/ping"))
        .send()
        .await
        .expect("ping");
    assert_eq!(ping.status(), 200);

    // EKBO_ORIGIN_POLICY took effect: another host's page may not connect.
    let refused = WsClient::connect_with(&url, &[("Origin", "http://evil.example")]).await;
    assert!(refused.is_err(), "a foreign Origin was accepted");

    client.close(1000).await;
    backend
        .wait_for(CallbackKind::Close, "docker-1", 1, TIMEOUT)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oort_variables_override_the_file_and_flags_override_both() {
    let backend = TestBackend::start().await;
    backend.set_session_header("X-Env-Session");
    // Left alone, the file's listener could not bind and its callback would refuse everyone.
    let config = TempConfig::new(
        "listen: unix:/nonexistent-oort-dir/oort.sock\n\
         session_header: X-File-Session\n\
         path:\n  send: /file-send\n  ping: /file-ping\n\
         callback:\n  connect: http://127.0.0.1:9/unreachable\n",
    );
    let connect = backend.callback_url(CallbackKind::Connect);
    let receive = format!(
        "callback.receive={}",
        backend.callback_url(CallbackKind::Receive)
    );
    let oort = OortProcess::spawn(
        &[
            "--config",
            config.path(),
            "--listen",
            "127.0.0.1:0",
            "--set",
            "path.send=/cli-send",
            "--set",
            &receive,
        ],
        &[
            ("OORT_SESSION_HEADER", "X-Env-Session"),
            ("OORT_PATH__SEND", "/env-send"),
            ("OORT_CALLBACK__CONNECT", connect.as_str()),
        ],
    );
    let addr = oort.listen_addr("client", TIMEOUT).await;
    let mut client = WsClient::connect(&format!("ws://{addr}/connect?key=layered")).await;
    // The connect callback is the variable's (the file's is unreachable), and its answer named
    // the session in the variable's session header.
    assert_eq!(backend.of_kind(CallbackKind::Connect).len(), 1);
    let base = format!("http://{addr}");
    let send = |path: &str| format!("{base}{path}");
    for (path, expected) in [("/cli-send", 200), ("/env-send", 404), ("/file-send", 404)] {
        let status = post_send(&send(path), "X-Env-Session", &["layered"], path).await;
        assert_eq!(status, expected, "POST {path}");
    }
    assert_eq!(client.recv_text().await, "/cli-send");
    // A key no source overrides keeps the file's value.
    let ping = http_client().get(send("/file-ping")).send().await.unwrap();
    assert_eq!(ping.status(), 200);
    // The receive callback came from --set.
    client.send_text("up").await;
    backend
        .wait_for(CallbackKind::Receive, "layered", 1, TIMEOUT)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kuiperbelt_single_dash_flags() {
    let backend = TestBackend::start().await;
    // The file names a port that is taken: only `-port` lets the gateway start.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let config = TempConfig::new(&format!(
        "port: \"{taken_port}\"\ncallback:\n  connect: {}\n",
        backend.callback_url(CallbackKind::Connect)
    ));
    let config_flag = format!("-config={}", config.path());
    let oort = OortProcess::spawn(
        &[
            &config_flag,
            "-port",
            "0",
            "-log-level",
            "debug",
            "-gops-addr",
            "127.0.0.1:0",
        ],
        &[],
    );
    let addr = loopback(oort.listen_addr("client", TIMEOUT).await);
    assert_ne!(addr.port(), taken_port);
    oort.wait_for_line("-gops-addr is ignored", TIMEOUT).await;

    let client = WsClient::connect(&format!("ws://{addr}/connect?key=dash")).await;
    client.close(1000).await;
    // -log-level took effect: the client's close is logged at debug level.
    oort.wait_for_line("\"level\":\"DEBUG\"", TIMEOUT).await;
    let connects = backend.of_kind(CallbackKind::Connect);
    assert_eq!(connects.len(), 1);
    // Unlike kuiperbelt (docs/kuiperbelt-compat.md, 15), the endpoint follows the effective
    // port: -port 0 is at or below 1023, so it is the bare host name.
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(
        connects[0].header("X-Kuiperbelt-Endpoint"),
        Some(hostname.trim())
    );

    let version = run_oort(&["-version"], &[], TIMEOUT).await;
    assert!(version.status.success(), "{}", describe(&version));
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("oort "));
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_accepts_a_valid_file_and_prints_it() {
    let config = TempConfig::new(KUIPERBELT_DOCKER_CONFIG);
    let plain = run_oort(&["check-config", config.path()], &[], TIMEOUT).await;
    assert_eq!(plain.status.code(), Some(0), "{}", describe(&plain));
    assert!(String::from_utf8_lossy(&plain.stderr).contains("configuration is valid"));

    let env = [
        ("EKBO_CALLBACK_TIMEOUT", "1500ms"),
        ("OORT_API_TOKEN", "t0k"),
    ];
    let printed = run_oort(&["check-config", "--print", config.path()], &env, TIMEOUT).await;
    assert_eq!(printed.status.code(), Some(0), "{}", describe(&printed));
    let effective: serde_json::Value =
        serde_json::from_slice(&printed.stdout).expect("--print writes the config as JSON");
    assert_eq!(effective["port"], "9180");
    assert_eq!(effective["path"]["connect"], "/connect");
    assert_eq!(
        effective["callback"]["connect"],
        "http://localhost:12346/connect"
    );
    assert_eq!(effective["callback"]["timeout"], "1.5s");
    assert_eq!(effective["api_token"], "t0k");
    assert_eq!(effective["session_header"], "X-Kuiperbelt-Session");
}

/// An invalid input: what it is, the file, extra environment, texts stderr must contain.
type Invalid = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

const INVALID: &[Invalid] = &[
    (
        "bad duration",
        "idle_timeout: 5 minutes\n",
        &[],
        &["`idle_timeout`", "\"5 minutes\""],
    ),
    (
        "bad nested duration",
        "callback:\n  timeout: 3 parsecs\n",
        &[],
        &["`callback.timeout`", "\"3 parsecs\""],
    ),
    (
        "bad origin_policy",
        "origin_policy: same_site\n",
        &[],
        &["`origin_policy`", "\"same_site\""],
    ),
    (
        "must_env unset",
        "port: 9180\ncallback:\n  connect: {{ must_env \"OORT_E2E_NEVER_SET\" }}\n",
        &[],
        &["must_env", "OORT_E2E_NEVER_SET", "line 3"],
    ),
    (
        "bad URL",
        "callback:\n  receive: not a url\n",
        &[],
        &["`callback.receive`", "\"not a url\""],
    ),
    (
        "non-HTTP URL",
        "callback:\n  connect: ftp://backend/connect\n",
        &[],
        &["`callback.connect`", "\"ftp://backend/connect\""],
    ),
    (
        "YAML syntax",
        "port: [9180\nsock: x\n",
        &[],
        &["YAML", "line 2"],
    ),
    (
        "bad OORT_ variable",
        "port: 9180\n",
        &[("OORT_WEBSOCKET__PING_INTERVAL", "often")],
        &["`websocket.ping_interval`", "\"often\""],
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_rejects_invalid_files_with_64_naming_key_and_value() {
    for (what, text, env, expected) in INVALID {
        let config = TempConfig::new(text);
        let output = run_oort(&["check-config", config.path()], env, TIMEOUT).await;
        assert_eq!(
            output.status.code(),
            Some(64),
            "{what}: {}",
            describe(&output)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        for needle in *expected {
            assert!(stderr.contains(needle), "{what}: no {needle:?} in {stderr}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_with_an_invalid_config_exits_64() {
    for (what, text, env, expected) in INVALID {
        let config = TempConfig::new(text);
        let output = run_oort(&["--config", config.path()], env, TIMEOUT).await;
        assert_eq!(
            output.status.code(),
            Some(64),
            "{what}: {}",
            describe(&output)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        for needle in *expected {
            assert!(stderr.contains(needle), "{what}: no {needle:?} in {stderr}");
        }
    }
    let valid = TempConfig::new("listen: 127.0.0.1:0\n");
    let cases: [(&[&str], &[&str]); 3] = [
        (
            &["--config", valid.path(), "--set", "idle_timeout=soon"],
            &["`idle_timeout`", "\"soon\""],
        ),
        (
            &["--config", valid.path(), "--listen", "localhost:http"],
            &["`listen`", "\"localhost:http\""],
        ),
        (
            &["--config", "/nonexistent/oort.yml"],
            &["--config", "/nonexistent/oort.yml"],
        ),
    ];
    for (args, expected) in cases {
        let output = run_oort(args, &[], TIMEOUT).await;
        assert_eq!(
            output.status.code(),
            Some(64),
            "{args:?}: {}",
            describe(&output)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        for needle in expected {
            assert!(
                stderr.contains(needle),
                "{args:?}: no {needle:?} in {stderr}"
            );
        }
    }
}

/// Part of the warning about a backend API open to every client.
const OPEN_API_WARNING: &str = "served on the public client listener without a token";
/// Part of the warning about a backend API with a token on the client listener.
const SHARED_API_WARNING: &str = "the backend API shares the public client listener";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_warns_about_an_open_backend_api_and_still_exits_0() {
    let open = TempConfig::new("listen: 127.0.0.1:0\n");
    let output = run_oort(&["check-config", open.path()], &[], TIMEOUT).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.matches(OPEN_API_WARNING).count(), 1, "{stderr}");
    assert!(stderr.contains("`api_listen`") && stderr.contains("`api_token`"));
    for (closed, shared) in [
        ("listen: 127.0.0.1:0\napi_token: s3cret\n", true),
        ("listen: 127.0.0.1:0\napi_listen: 127.0.0.1:0\n", false),
    ] {
        let config = TempConfig::new(closed);
        let output = run_oort(&["check-config", config.path()], &[], TIMEOUT).await;
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains(OPEN_API_WARNING), "{closed}: {stderr}");
        // A token closes the API; only its own listener keeps its large heads off the port.
        assert_eq!(
            stderr.contains(SHARED_API_WARNING),
            shared,
            "{closed}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_backend_api_is_warned_about_once_at_start() {
    let open = TempConfig::new("listen: 127.0.0.1:0\n");
    let oort = OortProcess::spawn(&["--config", open.path()], &[]);
    let warning = oort.wait_for_line(OPEN_API_WARNING, TIMEOUT).await;
    assert!(warning.contains("\"level\":\"WARN\""), "{warning}");
    // The warnings come before the listeners: once the listener is logged, every one is in.
    oort.listen_addr("client", TIMEOUT).await;
    let count = oort
        .logs()
        .iter()
        .filter(|line| line.contains(OPEN_API_WARNING))
        .count();
    assert_eq!(count, 1);

    let with_token = TempConfig::new("listen: 127.0.0.1:0\n");
    let oort = OortProcess::spawn(
        &["--config", with_token.path()],
        &[("OORT_API_TOKEN", "s3cret")],
    );
    oort.listen_addr("client", TIMEOUT).await;
    assert!(
        !oort
            .logs()
            .iter()
            .any(|line| line.contains(OPEN_API_WARNING)),
        "{}",
        oort.logs().join("\n")
    );
}
