//! The command line: `oort [run flags]`, `oort check-config FILE`, `oort drain`,
//! `oort status`, `oort demo`.
//!
//! kuiperbelt's single-dash flags (`-config`, `-port`, `-sock`, `-log-level`, `-version`,
//! `-gops-addr`) are accepted too, so existing start scripts keep working.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Oort: a clustered real-time push gateway, wire-compatible with kuiperbelt.
#[derive(Parser, Debug)]
#[command(name = "oort", version, about, args_conflicts_with_subcommands = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Validate a config file (exit 0 if valid, 64 if not) and print warnings.
    CheckConfig {
        /// The config file (kuiperbelt's YAML format).
        file: PathBuf,
        /// Also print the effective configuration, defaults included.
        #[arg(long)]
        print: bool,
    },
    /// Start a running gateway's drain and wait until it stopped accepting (a preStop hook).
    Drain {
        /// The gateway's backend API base URL.
        #[arg(long, default_value = "http://127.0.0.1:9180")]
        url: String,
        /// How long to wait for the listener to close.
        #[arg(long, default_value_t = 30)]
        timeout_secs: u64,
    },
    /// Print the cluster at a glance (members, roles, leader, lag, sessions per node, NATS)
    /// from any node's API. Exit 0 healthy, 1 degraded, 2 unreachable or unauthorized.
    Status {
        /// The node's backend API base URL.
        #[arg(long, default_value = "http://127.0.0.1:9180")]
        url: String,
        /// The API token (default: $OORT_API_TOKEN).
        #[arg(long, env = "OORT_API_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Print the node's `GET /v1/cluster` answer as JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// How long to wait for the answer.
        #[arg(long, default_value_t = 5)]
        timeout_secs: u64,
    },
    /// Run a node (or, with --nodes, a local cluster) with a built-in chat backend and page.
    Demo {
        /// Port for the demo (the chat page and the gateway); with --nodes, the first node's
        /// (the others take the next ones). 0 picks free ports.
        #[arg(long, default_value_t = 9180)]
        port: u16,
        /// Run this many nodes as a cluster on this machine (needs nats-server on the PATH):
        /// one chat backend, a page per node with the cluster's members and a restart button
        /// per node.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=9), conflicts_with = "nats")]
        nodes: u16,
        /// Address to bind (127.0.0.1 keeps the demo private to this machine).
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Join a cluster over this NATS (run several demos with distinct --node-id and the
        /// chat spans them all).
        #[arg(long)]
        nats: Option<String>,
        /// This demo node's id in the cluster.
        #[arg(long, requires = "nats")]
        node_id: Option<String>,
        /// How many demo nodes form the cluster.
        #[arg(long, default_value_t = 1, requires = "nats")]
        bootstrap_expect: usize,
        /// Use this chat backend (a URL) instead of starting one (set by `--nodes`).
        #[arg(long, hide = true)]
        backend: Option<String>,
        /// The port of the `--nodes` supervisor's control endpoint, for the page's restart
        /// buttons (set by `--nodes`).
        #[arg(long, hide = true, requires = "backend")]
        control_port: Option<u16>,
        /// Where this node keeps its raft data (set by `--nodes`; default: a fresh temporary
        /// directory).
        #[arg(long, hide = true, requires = "nats")]
        data_dir: Option<PathBuf>,
    },
}

/// Flags for running the gateway. Each overrides the config file and `OORT_*` variables.
#[derive(Args, Debug, Default)]
pub(crate) struct RunArgs {
    /// Config file (kuiperbelt's YAML format, with Oort's extra keys).
    #[arg(short, long, env = "OORT_CONFIG")]
    pub config: Option<PathBuf>,
    /// TCP port to listen on, on every interface (kuiperbelt's -port).
    #[arg(long, conflicts_with = "sock")]
    pub port: Option<String>,
    /// Unix socket to listen on (kuiperbelt's -sock).
    #[arg(long)]
    pub sock: Option<String>,
    /// Client listener address: host:port, :port or unix:/path.
    #[arg(long)]
    pub listen: Option<String>,
    /// Separate backend API listener address.
    #[arg(long)]
    pub api_listen: Option<String>,
    /// Log level: trace, debug, info, warn, error (or a tracing filter).
    #[arg(long)]
    pub log_level: Option<String>,
    /// Log format: text or json.
    #[arg(long)]
    pub log_format: Option<String>,
    /// Set any config key, e.g. --set websocket.ping_interval=10s (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Accepted for kuiperbelt compatibility and ignored (Oort has no gops agent).
    #[arg(long, hide = true)]
    pub gops_addr: Option<String>,
}

impl RunArgs {
    /// The flags as config-key overrides, in the loader's terms.
    pub(crate) fn overrides(&self) -> Result<Vec<(String, String)>, String> {
        let mut overrides = Vec::new();
        for (key, value) in [
            ("port", &self.port),
            ("sock", &self.sock),
            ("listen", &self.listen),
            ("api_listen", &self.api_listen),
            ("log.level", &self.log_level),
            ("log.format", &self.log_format),
        ] {
            if let Some(value) = value {
                overrides.push((key.to_owned(), value.clone()));
            }
        }
        for assignment in &self.set {
            let (key, value) = assignment
                .split_once('=')
                .ok_or_else(|| format!("--set expects KEY=VALUE, got {assignment:?}"))?;
            overrides.push((key.trim().to_owned(), value.to_owned()));
        }
        Ok(overrides)
    }
}

const KUIPERBELT_FLAGS: [&str; 6] = [
    "config",
    "port",
    "sock",
    "log-level",
    "version",
    "gops-addr",
];

/// Rewrites kuiperbelt's Go-style `-flag` and `-flag=value` to `--flag`.
pub(crate) fn normalize_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    args.into_iter()
        .map(|arg| {
            let Some(text) = arg.to_str() else { return arg };
            let Some(rest) = text.strip_prefix('-').filter(|rest| !rest.starts_with('-')) else {
                return arg;
            };
            let name = rest.split('=').next().unwrap_or_default();
            if KUIPERBELT_FLAGS.contains(&name) {
                OsString::from(format!("-{text}"))
            } else {
                arg
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(normalize_args(args.iter().map(OsString::from))).unwrap()
    }

    #[test]
    fn kuiperbelt_flags_work() {
        let cli = parse(&[
            "oort",
            "-config",
            "k.yml",
            "-port=9999",
            "-log-level",
            "debug",
            "-gops-addr",
            "127.0.0.1:0",
        ]);
        assert_eq!(cli.run.config, Some(PathBuf::from("k.yml")));
        let overrides = cli.run.overrides().unwrap();
        assert!(overrides.contains(&("port".into(), "9999".into())));
        assert!(overrides.contains(&("log.level".into(), "debug".into())));
    }

    #[test]
    fn port_and_sock_conflict_as_in_kuiperbelt() {
        let args = normalize_args(["oort", "-port", "1", "-sock", "/tmp/s"].map(OsString::from));
        assert!(Cli::try_parse_from(args).is_err());
    }

    #[test]
    fn subcommands_and_set() {
        let cli = parse(&["oort", "check-config", "x.yml"]);
        assert!(matches!(cli.command, Some(Command::CheckConfig { .. })));
        let cli = parse(&["oort", "--set", "queue.max_bytes=10", "-c", "a.yml"]);
        assert_eq!(
            cli.run.overrides().unwrap(),
            vec![("queue.max_bytes".to_owned(), "10".to_owned())]
        );
        let cli = parse(&["oort", "--set", "nonsense"]);
        assert!(cli.run.overrides().is_err());
    }
}
