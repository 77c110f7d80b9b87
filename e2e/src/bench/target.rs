//! The gateway under load: an `oort` process spawned here, or one already running.

use std::net::SocketAddr;
use std::time::Duration;

use crate::process::{OortProcess, TempConfig};

/// Where the load goes.
pub struct Target {
    /// `ws://host:port/connect` (clients append `?key=...`).
    pub connect_url: String,
    /// `http://host:port` for `/send` and `/v1/*`.
    pub api_url: String,
    /// The gateway's pid, for memory and CPU figures.
    pub pid: Option<u32>,
    _process: Option<(OortProcess, TempConfig)>,
}

impl Target {
    /// Spawns `oort` with callbacks pointing at `backend`, plus `extra_config` YAML lines.
    pub async fn spawn(backend: SocketAddr, extra_config: &str) -> anyhow::Result<Self> {
        let config = TempConfig::new(&format!(
            "listen: 127.0.0.1:0\n\
             suppress_access_log: true\n\
             callback:\n  connect: http://{backend}/connect\n  establish: http://{backend}/establish\n  \
             close: http://{backend}/close\n  receive: http://{backend}/receive\n  timeout: 10s\n\
             {extra_config}\n"
        ));
        let process = OortProcess::spawn(&["--config", config.path(), "--log-level", "info"], &[]);
        let addr = process.listen_addr("client", Duration::from_secs(30)).await;
        let pid = Some(process.pid());
        Ok(Self {
            connect_url: format!("ws://{addr}/connect"),
            api_url: format!("http://{addr}"),
            pid,
            _process: Some((process, config)),
        })
    }

    /// A gateway that is already running.
    pub fn external(connect_url: String, api_url: String, pid: Option<u32>) -> Self {
        Self {
            connect_url,
            api_url,
            pid,
            _process: None,
        }
    }
}
