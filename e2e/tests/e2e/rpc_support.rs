//! What the RPC API's tests share (`rpc_contract`, `rpc_clients`, `rpc_errors`): the tools in
//! e2e/rpc-clients (buf, connect-es, grpc-js from npm, checked with install instructions), a
//! gateway with an API token on its own API listener, WebSocket sessions whose every frame is
//! recorded, and running one of e2e/rpc-clients's Node scripts with a bound.

use std::path::PathBuf;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use oort_e2e::durable_client::DurableClient;
use oort_e2e::process::{OortProcess, TempConfig};
use oort_e2e::temp::TempDir;
use oort_e2e::{CallbackKind, TIMEOUT, TestBackend, WsClient};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{config_for, describe, loopback, workspace_root};

const INSTALL: &str = "run scripts/test-prerequisites, or by hand: (cd e2e/rpc-clients && npm ci)";

/// The gateway's `limits.max_send_body` in these tests: small, so a message over it is cheap.
pub(crate) const MAX_SEND_BODY: usize = 65_536;

/// Bound on one Node script (each takes under 2 s on an idle machine; a test runs up to 8 of
/// them, so one that hangs still fails within nextest's 120 s with its own message).
pub(crate) const SCRIPT_TIMEOUT: Duration = Duration::from_secs(20);

/// The connect-es transports and HTTP versions every connect-es script runs with: Connect
/// (JSON, binary, and GET for read-only methods), gRPC (HTTP/2 only) and gRPC-Web.
pub(crate) const TRANSPORTS: [(&str, &str); 8] = [
    ("connect-json", "1.1"),
    ("connect-json", "2"),
    ("connect-binary", "1.1"),
    ("connect-binary", "2"),
    ("connect-get", "1.1"),
    ("grpc", "2"),
    ("grpcweb", "1.1"),
    ("grpcweb", "2"),
];

/// `connect-json-h1`, `grpc-h2`: names a transport in texts, session keys and channels.
pub(crate) fn label(kind: &str, http: &str) -> String {
    let version = if http == "2" { "h2" } else { "h1" };
    format!("{kind}-{version}")
}

/// e2e/rpc-clients, with its node_modules installed and Node.js on the PATH (or the test fails
/// saying how to install them).
pub(crate) fn clients_dir() -> PathBuf {
    let dir = workspace_root().join("e2e/rpc-clients");
    for module in [
        "@bufbuild/buf",
        "@bufbuild/protobuf",
        "@connectrpc/connect",
        "@connectrpc/connect-node",
        "@grpc/grpc-js",
        "@grpc/proto-loader",
    ] {
        assert!(
            dir.join("node_modules").join(module).exists(),
            "e2e/rpc-clients/node_modules/{module} is missing; {INSTALL}"
        );
    }
    let node_works = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        node_works,
        "node (Node.js 20 or later) is missing; {INSTALL} (it installs nodejs and npm)"
    );
    dir
}

/// buf, as installed by npm in e2e/rpc-clients (@bufbuild/buf, pinned in package.json).
pub(crate) fn buf() -> PathBuf {
    let buf = clients_dir().join("node_modules/.bin/buf");
    assert!(buf.exists(), "{} is missing; {INSTALL}", buf.display());
    buf
}

/// The buf module with the RPC contract, relative to the workspace root (buf's inputs are
/// given as the documentation writes them, run from there).
pub(crate) const PROTO_ROOT: &str = "common/proto";

/// Runs `command` to its end within `timeout`, in the workspace root.
pub(crate) async fn run(mut command: tokio::process::Command, timeout: Duration) -> Output {
    let shown = format!("{:?}", command.as_std());
    command.current_dir(workspace_root()).kill_on_drop(true);
    tokio::time::timeout(timeout, command.output())
        .await
        .unwrap_or_else(|_| panic!("{shown} ran past {timeout:?}"))
        .unwrap_or_else(|err| panic!("cannot run {shown}: {err}"))
}

/// `buf build common/proto -o DIR/oort.binpb`: the FileDescriptorSet the connect-es scripts
/// read the service from at run time.
pub(crate) async fn descriptors(dir: &TempDir) -> PathBuf {
    let out = dir.path().join("oort.binpb");
    let mut command = tokio::process::Command::new(buf());
    command.args(["build", PROTO_ROOT, "-o"]).arg(&out);
    let output = run(command, Duration::from_secs(60)).await;
    assert!(
        output.status.success(),
        "buf build failed\n{}",
        describe(&output)
    );
    out
}

/// A gateway with `api_token` set, the backend API on its own listener (`api_listen`), where
/// the RPC API is served beside the JSON API, and the event feed on (`callback.event_feed`,
/// which WatchEvents streams).
pub(crate) struct RpcGateway {
    pub(crate) backend: TestBackend,
    _process: OortProcess,
    /// The client listener (WebSocket connects).
    pub(crate) addr: std::net::SocketAddr,
    /// Where the API is served: the API listener, or the client listener when shared.
    pub(crate) api: std::net::SocketAddr,
    pub(crate) token: String,
    /// Holds the FileDescriptorSet, and files tests write.
    pub(crate) work: TempDir,
    pub(crate) descriptors: PathBuf,
    _config: TempConfig,
}

impl RpcGateway {
    pub(crate) async fn start() -> Self {
        Self::start_with(true).await
    }

    /// With `api_listen` false, the API (and so the RPC API) shares the client listener, as in
    /// docs/rpc.md's examples.
    pub(crate) async fn start_with(api_listen: bool) -> Self {
        let backend = TestBackend::start().await;
        let token = format!("{:032x}", rand::random::<u128>());
        let listen = if api_listen {
            "api_listen: 127.0.0.1:0\n"
        } else {
            ""
        };
        let config = config_for(
            &backend,
            &format!(
                "api_token: {token}\n{listen}suppress_access_log: true\n\
                 limits:\n  max_send_body: {MAX_SEND_BODY}"
            ),
        )
        .replacen("callback:\n", "callback:\n  event_feed: true\n", 1);
        let config = TempConfig::new(&config);
        let process = OortProcess::spawn(&["--config", config.path()], &[]);
        let addr = process.listen_addr("client", TIMEOUT).await;
        let api = if api_listen {
            loopback(process.listen_addr("api", TIMEOUT).await)
        } else {
            loopback(addr)
        };
        let work = TempDir::new("rpc");
        let descriptors = descriptors(&work).await;
        Self {
            backend,
            _process: process,
            addr,
            api,
            token,
            work,
            descriptors,
            _config: config,
        }
    }

    /// `ws://ADDR/connect?QUERY` on the client listener.
    pub(crate) fn ws_url(&self, query: &str) -> String {
        format!("ws://{}/connect?{query}", self.addr)
    }

    /// `http://127.0.0.1:PORT` of the API listener.
    pub(crate) fn rpc_url(&self) -> String {
        format!("http://{}", self.api)
    }

    /// A kuiperbelt WebSocket session under `key` (with `user`, if any), established, whose
    /// frames are recorded.
    pub(crate) async fn session(&self, key: &str, user: Option<&str>) -> Inbox {
        let query = match user {
            Some(user) => format!("key={key}&user={user}"),
            None => format!("key={key}"),
        };
        let client = WsClient::connect(&self.ws_url(&query)).await;
        self.backend
            .wait_for(CallbackKind::Establish, key, 1, TIMEOUT)
            .await;
        Inbox::keep_reading(client)
    }

    /// An `oort.v1` WebSocket session under `key`, established. It answers no request.
    pub(crate) async fn oort_v1_session(&self, key: &str) -> DurableClient {
        let client = DurableClient::connect(&self.ws_url(&format!("key={key}")))
            .await
            .unwrap_or_else(|err| panic!("an oort.v1 session {key}: {err:?}"));
        self.backend
            .wait_for(CallbackKind::Establish, key, 1, TIMEOUT)
            .await;
        client
    }

    /// `node e2e/rpc-clients/SCRIPT` with the gateway's address, token and descriptors, plus
    /// `env`.
    pub(crate) fn node(&self, script: &str, env: &[(&str, String)]) -> tokio::process::Command {
        let dir = clients_dir();
        let mut command = tokio::process::Command::new("node");
        command
            .arg(dir.join(script))
            .current_dir(&dir)
            .env("OORT_RPC_URL", self.rpc_url())
            .env("OORT_RPC_ADDR", self.api.to_string())
            .env("OORT_API_TOKEN", &self.token)
            .env("OORT_DESCRIPTORS", &self.descriptors)
            .env("OORT_PROTO_ROOT", workspace_root().join(PROTO_ROOT))
            .env(
                "OORT_SCRIPT_TIMEOUT_MS",
                (SCRIPT_TIMEOUT.as_millis() - 5_000).to_string(),
            )
            .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
            .kill_on_drop(true);
        command
    }

    /// Runs a script to its end and returns the JSON it printed last; fails the test when the
    /// script failed.
    pub(crate) async fn run_node(&self, script: &str, env: &[(&str, String)]) -> Value {
        let output = run(self.node(script, env), SCRIPT_TIMEOUT).await;
        assert!(
            output.status.success(),
            "node {script} failed (env {env:?})\n{}",
            describe(&output)
        );
        last_json(&output)
    }
}

/// The last line of a process's stdout, as JSON.
pub(crate) fn last_json(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or_else(|| panic!("no output\n{}", describe(output)));
    serde_json::from_str(line)
        .unwrap_or_else(|err| panic!("not JSON ({err}): {line}\n{}", describe(output)))
}

/// A Node script still running, read line by line (for WatchEvents, which prints when its
/// stream is open and then waits for events the test causes).
pub(crate) struct RunningScript {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    seen: Vec<String>,
}

impl RunningScript {
    pub(crate) fn spawn(mut command: tokio::process::Command) -> Self {
        command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn().expect("run node");
        let stdout = child.stdout.take().expect("piped stdout");
        Self {
            child,
            lines: BufReader::new(stdout).lines(),
            seen: Vec::new(),
        }
    }

    /// The next line of stdout as JSON, within `timeout`; fails the test with everything the
    /// script wrote when there is none.
    pub(crate) async fn next_json(&mut self, timeout: Duration) -> Value {
        let line = match tokio::time::timeout(timeout, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => self.fail("the script ended before printing").await,
            Ok(Err(err)) => {
                self.fail(&format!("reading its output failed: {err}"))
                    .await
            }
            Err(_) => self.fail(&format!("no line within {timeout:?}")).await,
        };
        self.seen.push(line.clone());
        match serde_json::from_str(&line) {
            Ok(value) => value,
            Err(err) => self.fail(&format!("not JSON ({err}): {line}")).await,
        }
    }

    /// Waits for the script's exit (bounded) and fails unless it succeeded.
    pub(crate) async fn finish(mut self) {
        match tokio::time::timeout(TIMEOUT, self.child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            _ => self.fail("the script did not exit cleanly").await,
        }
    }

    async fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.start_kill();
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            use tokio::io::AsyncReadExt;
            let _ = tokio::time::timeout(TIMEOUT, pipe.read_to_string(&mut stderr)).await;
        }
        panic!(
            "{why}\n--- stdout ---\n{}\n--- stderr ---\n{stderr}",
            self.seen.join("\n")
        );
    }
}

/// One frame a WebSocket client received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    Text(String),
    Binary(Vec<u8>),
    /// The close frame's code and reason (`None`: closed without one).
    Close(Option<(u16, String)>),
}

/// A connected session that keeps reading (so pings are answered) and records every frame.
#[derive(Clone)]
pub(crate) struct Inbox {
    frames: Arc<Mutex<Vec<Frame>>>,
    added: Arc<Notify>,
}

impl Inbox {
    pub(crate) fn keep_reading(mut client: WsClient) -> Self {
        let inbox = Self {
            frames: Arc::default(),
            added: Arc::default(),
        };
        let record = inbox.clone();
        tokio::spawn(async move {
            while let Some(message) = client.stream().next().await {
                let frame = match message {
                    Ok(Message::Text(text)) => Frame::Text(text.to_string()),
                    Ok(Message::Binary(bytes)) => Frame::Binary(bytes.to_vec()),
                    Ok(Message::Close(frame)) => Frame::Close(
                        frame.map(|frame| (u16::from(frame.code), frame.reason.to_string())),
                    ),
                    Ok(_) => continue,
                    Err(_) => break,
                };
                record.frames.lock().unwrap().push(frame);
                record.added.notify_waiters();
            }
        });
        inbox
    }

    /// Everything received so far.
    pub(crate) fn frames(&self) -> Vec<Frame> {
        self.frames.lock().unwrap().clone()
    }

    /// Of `frames`, those not received within `timeout` (waiting no longer once all are).
    pub(crate) async fn missing(&self, frames: &[Frame], timeout: Duration) -> Vec<Frame> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let added = self.added.notified();
            let received = self.frames();
            let missing: Vec<Frame> = frames
                .iter()
                .filter(|frame| !received.contains(frame))
                .cloned()
                .collect();
            if missing.is_empty() || tokio::time::timeout_at(deadline, added).await.is_err() {
                return missing;
            }
        }
    }

    /// Waits (bounded) until `frame` was received; fails listing what was.
    pub(crate) async fn expect(&self, frame: Frame) {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let added = self.added.notified();
            if self.frames().contains(&frame) {
                return;
            }
            if tokio::time::timeout_at(deadline, added).await.is_err() {
                panic!(
                    "the WebSocket client did not receive {frame:?} within {TIMEOUT:?}; it \
                     received {:?}",
                    self.frames()
                );
            }
        }
    }
}

/// A bound shared by many waits, so that a test with many of them stays within nextest's limit
/// when all of them time out.
pub(crate) struct Budget(tokio::time::Instant);

impl Budget {
    pub(crate) fn new(total: Duration) -> Self {
        Self(tokio::time::Instant::now() + total)
    }

    /// What is left of it (at most [`TIMEOUT`] for one wait).
    pub(crate) fn left(&self) -> Duration {
        self.0
            .saturating_duration_since(tokio::time::Instant::now())
            .min(TIMEOUT)
    }
}

/// Mismatches between answers and what the contract says, gathered over a whole matrix of
/// clients so one run reports every transport that fails rather than the first.
#[derive(Default)]
pub(crate) struct Findings(Vec<String>);

impl Findings {
    /// Notes a mismatch unless `answer` holds `expected` at `pointer` (a JSON pointer).
    pub(crate) fn expect_at(&mut self, what: &str, answer: &Value, pointer: &str, expected: Value) {
        let found = answer.pointer(pointer);
        if found != Some(&expected) {
            self.0.push(format!(
                "{what}: expected {expected} at {pointer}, found {} in {answer}",
                found.map_or_else(|| "nothing".to_owned(), Value::to_string)
            ));
        }
    }

    /// Notes a mismatch unless `ok`.
    pub(crate) fn check(&mut self, ok: bool, finding: impl FnOnce() -> String) {
        if !ok {
            self.0.push(finding());
        }
    }

    /// Fails the test listing every finding.
    pub(crate) fn assert_none(self, what: &str) {
        assert!(
            self.0.is_empty(),
            "{what}: {} finding(s)\n{}",
            self.0.len(),
            self.0.join("\n")
        );
    }
}

/// `curl -sS --max-time 10 ARGS -w ...`: the body, the HTTP status and the HTTP version
/// (`1.1`, `2`) of the answer. Fails the test when curl itself fails.
pub(crate) async fn curl(args: &[&str]) -> (String, u16, String) {
    let present = std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(present, "curl is missing; apt-get install -y curl");
    let mut command = tokio::process::Command::new("curl");
    command
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .args(["-w", "\n%{http_code} %{http_version}"]);
    let output = run(command, Duration::from_secs(20)).await;
    assert!(
        output.status.success(),
        "curl {args:?} failed\n{}",
        describe(&output)
    );
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status_line) = stdout.rsplit_once('\n').expect("the -w line");
    let (code, version) = status_line.split_once(' ').expect("code and version");
    (
        body.to_owned(),
        code.parse().expect("an HTTP status"),
        version.to_owned(),
    )
}
