//! Shared by the end-to-end modules: gateway configs pointing at a test backend, and small
//! HTTP helpers.

use std::net::SocketAddr;
use std::path::PathBuf;

use oort_e2e::process::{OortProcess, TempConfig};
use oort_e2e::{CallbackKind, TIMEOUT, TestBackend, http_client};

/// A config on `127.0.0.1:0` with all four callbacks pointing at `backend`, plus `extra` YAML.
pub(crate) fn config_for(backend: &TestBackend, extra: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\n\
         callback:\n  connect: {}\n  establish: {}\n  close: {}\n  receive: {}\n  timeout: 5s\n\
         {extra}\n",
        backend.callback_url(CallbackKind::Connect),
        backend.callback_url(CallbackKind::Establish),
        backend.callback_url(CallbackKind::Close),
        backend.callback_url(CallbackKind::Receive),
    )
}

/// A running `oort --config` with its config file (kept alive with it) and client address.
pub(crate) struct Gateway {
    pub(crate) process: OortProcess,
    pub(crate) addr: SocketAddr,
    _config: TempConfig,
}

impl Gateway {
    /// Starts `oort --config` with [`config_for`]`(backend, extra)`.
    pub(crate) async fn start(backend: &TestBackend, extra: &str) -> Self {
        let config = TempConfig::new(&config_for(backend, extra));
        let process = OortProcess::spawn(&["--config", config.path()], &[]);
        let addr = process.listen_addr("client", TIMEOUT).await;
        Self {
            process,
            addr,
            _config: config,
        }
    }

    /// `http://ADDR`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://ADDR/connect?QUERY`.
    pub(crate) fn ws_url(&self, query: &str) -> String {
        format!("ws://{}/connect?{query}", self.addr)
    }
}

/// A loopback address for a listener that may have bound every interface (`[::]:PORT`).
pub(crate) fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

/// POSTs `body` to `url` for the sessions named by `header: keys` and returns the status.
pub(crate) async fn post_send(url: &str, header: &str, keys: &[&str], body: &str) -> u16 {
    let mut request = http_client().post(url).body(body.to_owned());
    for key in keys {
        request = request.header(header, *key);
    }
    request.send().await.expect("POST").status().as_u16()
}

/// The workspace root (where `Cargo.toml` and `target/` are).
pub(crate) fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_owned()
}

/// The Cargo target directory these tests were built in (`target/`, or `$CARGO_TARGET_DIR`),
/// where scripts/test-prerequisites puts the Python tools it installs.
pub(crate) fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // Test binaries run from <target>/<profile>/deps/.
    exe.ancestors()
        .nth(3)
        .expect("the target directory above <profile>/deps/")
        .to_owned()
}

/// Output of a finished process, for failure messages.
pub(crate) fn describe(output: &std::process::Output) -> String {
    format!(
        "exit: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
