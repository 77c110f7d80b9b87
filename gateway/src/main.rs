//! `oort`: parse the command line, load the configuration, bind, serve, drain.
//!
//! This is the only part of Oort that reads the process environment (variables, the hostname,
//! the temporary directory) and files (the config, `callback.ca_file`, the platform's root
//! certificates); everything below it takes values.

mod cli;
mod drain;
mod status;

use std::process::ExitCode;

use clap::Parser;
use oort_common::config::{self, Config, ConfigError, Loaded, Sources};
use oort_gateway::{Gateway, Host, Listeners, StartError, demo, telemetry};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use cli::{Cli, Command, RunArgs};

/// EX_USAGE: the configuration or the command line is wrong.
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse_from(cli::normalize_args(std::env::args_os()));
    match cli.command {
        Some(Command::CheckConfig { file, print }) => check_config(&file, print),
        Some(Command::Drain { url, timeout_secs }) => {
            let mut roots = RootCertStore::empty();
            if url.starts_with("https:") {
                // No logger runs here: a store that cannot be read shows as the request's own
                // certificate error.
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            }
            let request = drain::DrainRequest {
                url: &url,
                timeout: std::time::Duration::from_secs(timeout_secs),
                token: std::env::var("OORT_API_TOKEN")
                    .ok()
                    .filter(|token| !token.is_empty()),
                roots,
            };
            run_async(drain::request(request))
        }
        Some(Command::Status {
            url,
            token,
            json,
            timeout_secs,
        }) => {
            let mut roots = RootCertStore::empty();
            if url.starts_with("https:") {
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            }
            let request = status::StatusRequest {
                url: &url,
                token: token.filter(|token| !token.is_empty()),
                json,
                timeout: std::time::Duration::from_secs(timeout_secs),
                roots,
            };
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(status::run(request)),
                Err(err) => {
                    eprintln!("oort: cannot start the runtime: {err}");
                    ExitCode::from(2)
                }
            }
        }
        Some(Command::Demo {
            port,
            host,
            nodes,
            nats,
            node_id,
            bootstrap_expect,
            backend,
            control_port,
            data_dir,
        }) => {
            if let Err(err) =
                telemetry::init("info", rust_log().as_deref(), config::LogFormat::Text)
            {
                eprintln!("oort: {err}");
            }
            if nodes > 1 {
                return demo_cluster(host, port, nodes);
            }
            let supervised = backend.is_some();
            let cluster = nats.map(|nats| demo::DemoCluster {
                nats,
                node_id,
                bootstrap_expect,
                data_dir: data_dir.unwrap_or_else(|| {
                    std::env::temp_dir().join(format!(
                        "oort-demo-{}-{}",
                        std::process::id(),
                        rand::random::<u32>()
                    ))
                }),
            });
            let machine = Host {
                hostname: hostname(),
                // `oort demo --nodes` hands its nodes one secret, so sessions resume on any.
                resume_secret: std::env::var(demo::RESUME_SECRET_ENV)
                    .ok()
                    .filter(|secret| !secret.is_empty())
                    .map(config::Secret::new),
                ..Host::default()
            };
            let backend = demo::DemoBackend {
                url: backend,
                control_port,
            };
            run_async(async move {
                let shutdown = shutdown_signal();
                if supervised {
                    stop_at_end_of_stdin(shutdown.clone());
                }
                demo::run(&host, port, cluster, backend, &machine, shutdown).await
            })
        }
        None => run_gateway(&cli.run),
    }
}

/// `oort demo --nodes N`: needs nats-server on the PATH.
fn demo_cluster(host: String, port: u16, nodes: u16) -> ExitCode {
    let Some(nats_server) = find_on_path("nats-server") else {
        eprintln!(
            "oort: `oort demo --nodes {nodes}` needs nats-server on the PATH; install it with \
             `apt-get install nats-server` (Debian, Ubuntu) or from https://nats.io/download"
        );
        return ExitCode::FAILURE;
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(err) => {
            eprintln!("oort: cannot find this program's path to start the nodes: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut secret = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut secret[..]);
    let spec = demo::ClusterDemo {
        exe,
        nats_server,
        host,
        port,
        nodes,
        work_dir: std::env::temp_dir().join(format!(
            "oort-demo-cluster-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        )),
        resume_secret: secret.iter().map(|b| format!("{b:02x}")).collect(),
    };
    run_async(async move { demo::run_cluster(spec, shutdown_signal()).await })
}

/// The first executable `name` in `$PATH`.
fn find_on_path(name: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|file| {
            std::fs::metadata(file)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

/// A node of `oort demo --nodes` stops when its supervisor's end of stdin closes (the
/// supervisor stopped it, or ended without doing so). A plain thread: a read of stdin cannot
/// be cancelled, and the process must not wait for it at exit.
fn stop_at_end_of_stdin(shutdown: CancellationToken) {
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 256];
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        shutdown.cancel();
    });
}

fn check_config(file: &std::path::Path, print: bool) -> ExitCode {
    let args = RunArgs {
        config: Some(file.to_owned()),
        ..RunArgs::default()
    };
    match load_config(&args).and_then(|loaded| check_callback_ca(&loaded.config).map(|()| loaded)) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            for warning in loaded.config.unsafe_settings() {
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
    let resume_secret = match config
        .session
        .resume_secret_resolved(&|path| std::fs::read(path))
    {
        Ok(secret) => secret,
        Err(err) => {
            eprintln!("oort: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let callback_ca_pem = match read_callback_ca(&config) {
        Ok(pem) => pem,
        Err(err) => {
            eprintln!("oort: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Err(err) = telemetry::init(&config.log.level, rust_log().as_deref(), config.log.format) {
        eprintln!("oort: {err}");
        return ExitCode::from(EXIT_CONFIG);
    }
    for warning in &loaded.warnings {
        warn!("{warning}");
    }
    for warning in config.unsafe_settings() {
        warn!("{warning}");
    }
    if args.gops_addr.is_some() {
        warn!("-gops-addr is ignored: Oort has no gops agent");
    }
    if config.callback.connect.is_empty() {
        warn!("callback.connect is not set: every client connect will be refused with 500");
    }
    let machine = Host {
        hostname: hostname(),
        // Reading the platform's store costs a few milliseconds and some memory, for nothing
        // when every callback is plain http.
        platform_roots: if config.callback.uses_https() {
            platform_roots()
        } else {
            Vec::new()
        },
        callback_ca_pem,
        nats_access,
        resume_secret,
    };
    run_async(async move {
        let gateway = Gateway::start(config.clone(), &machine).await?;
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

/// The contents of `callback.ca_file`, when it is set.
fn read_callback_ca(config: &Config) -> Result<Option<Vec<u8>>, ConfigError> {
    let path = &config.callback.ca_file;
    if path.is_empty() {
        return Ok(None);
    }
    std::fs::read(path).map(Some).map_err(|err| {
        ConfigError::invalid(
            "callback.ca_file",
            path,
            format!("cannot read the file: {err}"),
        )
    })
}

/// `check-config` reads and parses `callback.ca_file` as a start would, so a wrong path or a
/// file that holds no certificate is caught before a deploy.
fn check_callback_ca(config: &Config) -> Result<(), ConfigError> {
    let pem = read_callback_ca(config)?;
    oort_gateway::tls::callback_roots(&[], &config.callback.ca_file, pem.as_deref())
        .map(drop)
        .map_err(|err| ConfigError::invalid(&err.key, &err.value, err.reason))
}

/// The platform's trusted root certificates (what `SSL_CERT_FILE`, `SSL_CERT_DIR` or the
/// system's store hold); what cannot be read is logged and skipped.
fn platform_roots() -> Vec<CertificateDer<'static>> {
    let found = rustls_native_certs::load_native_certs();
    for err in &found.errors {
        warn!(error = %err, "cannot read some of the platform's root certificates");
    }
    if found.certs.is_empty() {
        warn!("no platform root certificates found: https callbacks trust only callback.ca_file");
    }
    found.certs
}

fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// `RUST_LOG`, which wins over `log.level` (the `tracing` convention).
fn rust_log() -> Option<String> {
    std::env::var("RUST_LOG").ok()
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
