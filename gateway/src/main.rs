//! `oort`: parse the command line, load the configuration, bind, serve, drain.

mod cli;
mod drain;

use std::process::ExitCode;

use clap::Parser;
use oort_common::config::{self, Config, ConfigError, Loaded, Sources};
use oort_gateway::{Gateway, Listeners, StartError, demo, telemetry};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use cli::{Cli, Command, RunArgs};

/// EX_USAGE: the configuration or the command line is wrong.
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse_from(cli::normalize_args(std::env::args_os()));
    match cli.command {
        Some(Command::CheckConfig { file, print }) => check_config(&file, print),
        Some(Command::Drain { url, timeout_secs }) => run_async(async move {
            drain::request(&url, std::time::Duration::from_secs(timeout_secs)).await
        }),
        Some(Command::Demo {
            port,
            host,
            nats,
            node_id,
            bootstrap_expect,
        }) => {
            if let Err(err) = telemetry::init("info", config::LogFormat::Text) {
                eprintln!("oort: {err}");
            }
            let cluster = nats.map(|nats| demo::DemoCluster {
                nats,
                node_id,
                bootstrap_expect,
            });
            run_async(async move { demo::run(&host, port, cluster, shutdown_signal()).await })
        }
        None => run_gateway(&cli.run),
    }
}

fn check_config(file: &std::path::Path, print: bool) -> ExitCode {
    let args = RunArgs {
        config: Some(file.to_owned()),
        ..RunArgs::default()
    };
    match load_config(&args) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            if print {
                match effective_config_text(&loaded.config) {
                    Ok(text) => print_stdout(&text),
                    Err(err) => eprintln!("cannot print the configuration: {err}"),
                }
            }
            eprintln!("{}: configuration is valid", file.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("oort: {err}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

#[allow(
    clippy::print_stdout,
    reason = "--print asks for the configuration on stdout"
)]
fn print_stdout(text: &str) {
    print!("{text}");
}

fn effective_config_text(config: &Config) -> Result<String, serde_json::Error> {
    // JSON is valid YAML, and keeps this binary free of a YAML writer.
    serde_json::to_string_pretty(config).map(|text| text + "\n")
}

fn run_gateway(args: &RunArgs) -> ExitCode {
    let loaded = match load_config(args) {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("oort: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let config = loaded.config;
    // The files the NATS settings name are read here, once: a rotated certificate or password
    // takes effect when the node restarts.
    let nats_access = match config.cluster.nats_access(&|path| std::fs::read(path)) {
        Ok(access) => access,
        Err(err) => {
            eprintln!("oort: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Err(err) = telemetry::init(&config.log.level, config.log.format) {
        eprintln!("oort: {err}");
        return ExitCode::from(EXIT_CONFIG);
    }
    for warning in &loaded.warnings {
        warn!("{warning}");
    }
    if args.gops_addr.is_some() {
        warn!("-gops-addr is ignored: Oort has no gops agent");
    }
    if config.callback.connect.is_empty() {
        warn!("callback.connect is not set: every client connect will be refused with 500");
    }
    run_async(async move {
        let gateway = Gateway::start_with_nats(config.clone(), nats_access).await?;
        let listeners = Listeners::bind(&config).await?;
        info!(version = env!("CARGO_PKG_VERSION"), "oort starting");
        gateway.run(listeners, shutdown_signal()).await?;
        Ok(())
    })
}

fn load_config(args: &RunArgs) -> Result<Loaded, ConfigError> {
    let text = match &args.config {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|err| {
            ConfigError::invalid(
                "--config",
                path.display(),
                format!("cannot read the file: {err}"),
            )
        })?),
        None => None,
    };
    let overrides = args
        .overrides()
        .map_err(|err| ConfigError::invalid("--set", "", err))?;
    let lookup_env = |name: &str| std::env::var(name).ok();
    config::load(&Sources {
        file: text.as_deref(),
        lookup_env: &lookup_env,
        env_vars: std::env::vars().collect(),
        overrides,
    })
}

fn run_async(future: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("oort: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(future) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            error!("{err:#}");
            eprintln!("oort: {err:#}");
            // A value this build cannot use is a configuration error, like any other.
            if matches!(
                err.downcast_ref::<StartError>(),
                Some(StartError::Setup(_) | StartError::Config(_))
            ) {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Fires on the first SIGTERM (how Kubernetes starts a graceful stop) or SIGINT. A second
/// signal ends the process at once.
fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let fired = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
        }
        fired.cancel();
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        warn!("second signal: exiting without finishing the drain");
        std::process::exit(1);
    });
    token
}
