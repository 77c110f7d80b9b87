//! `oort-bench compare`: Oort side by side with other kuiperbelt-compatible gateways.
//!
//! Every contender runs the same scenarios through kuiperbelt's API only (the connect
//! callback, `/send` with `X-Kuiperbelt-Session` headers), from the same load generator and
//! backend, each scenario on a freshly started process, contenders taking turns within each
//! repetition so a drift of the machine hurts none of them more. The figures are the medians
//! over the repetitions, and each is also given as Oort's over the contender's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::process::{Child, Command};

use super::fanout;
use super::idle::{self, IdleOptions};
use super::send::{self, SendOptions};
use super::target::Target;
use crate::process::{TempConfig, oort_binary};
use crate::wait::eventually;

/// A gateway to measure: a name and a shell command that starts it in the foreground.
/// `{config}` becomes the path of a kuiperbelt-format config file (port and callbacks) and
/// `{port}` its port.
#[derive(Clone, Debug)]
pub struct Contender {
    pub name: String,
    pub command: String,
}

impl Contender {
    /// Oort itself, from the binary built beside this tool, logging errors only.
    pub fn oort() -> Self {
        Self {
            name: "oort".to_owned(),
            command: format!(
                "{} --config {{config}} --log-level error",
                oort_binary().display()
            ),
        }
    }

    /// Parses `NAME=COMMAND`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (name, command) = text
            .split_once('=')
            .ok_or_else(|| format!("expected NAME=COMMAND, got {text:?}"))?;
        if name.is_empty() || command.trim().is_empty() {
            return Err(format!("expected NAME=COMMAND, got {text:?}"));
        }
        Ok(Self {
            name: name.to_owned(),
            command: command.to_owned(),
        })
    }
}

/// What to run, and how often.
#[derive(Clone, Debug)]
pub struct CompareOptions {
    /// Oort first: the ratios are Oort's figure over each other contender's.
    pub contenders: Vec<Contender>,
    /// Idle connection counts whose memory per connection is measured.
    pub idle: Vec<usize>,
    /// Connections of the connect storm (1,000 connecting at once).
    pub storm: usize,
    /// How long the `/send` phase lasts (100 sessions, 32 keep-alive connections).
    pub send_duration: Duration,
    /// Session counts of the fan-out phases.
    pub fanout: Vec<usize>,
    /// Fan-out requests per phase (after one unmeasured one).
    pub fanout_rounds: usize,
    /// Repetitions of the whole set.
    pub repeat: usize,
    /// The scenarios to run (all when empty).
    pub only: Vec<Part>,
}

/// The comparison's scenarios, for `--only`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Idle,
    Storm,
    Send,
    Fanout,
}

impl CompareOptions {
    fn runs(&self, part: Part) -> bool {
        self.only.is_empty() || self.only.contains(&part)
    }

    /// `sizes` if `part` runs, else none.
    fn sizes<'a>(&self, part: Part, sizes: &'a [usize]) -> &'a [usize] {
        if self.runs(part) { sizes } else { &[] }
    }
}

/// One measured figure across the contenders.
#[derive(Debug, Serialize)]
pub struct Figure {
    pub figure: String,
    pub unit: &'static str,
    /// Whether a larger value is better (rates) or worse (times, memory, CPU).
    pub higher_is_better: bool,
    /// Every repetition's value, per contender.
    pub samples: BTreeMap<String, Vec<f64>>,
    /// The median per contender.
    pub medians: BTreeMap<String, f64>,
    /// Oort's median over each other contender's.
    pub oort_ratio: BTreeMap<String, f64>,
}

/// The comparison's results.
#[derive(Debug, Serialize)]
pub struct CompareReport {
    pub scenario: &'static str,
    pub repeat: usize,
    pub contenders: Vec<String>,
    pub figures: Vec<Figure>,
}

impl CompareReport {
    /// A Markdown table: one row per figure, one column per contender, then the ratios.
    pub fn table(&self) -> String {
        let others: Vec<&String> = self.contenders.iter().skip(1).collect();
        let mut out = String::from("| figure |");
        for name in &self.contenders {
            out.push_str(&format!(" {name} |"));
        }
        for name in &others {
            out.push_str(&format!(" oort / {name} |"));
        }
        out.push_str("\n|---|");
        out.push_str(&"---|".repeat(self.contenders.len() + others.len()));
        out.push('\n');
        for figure in &self.figures {
            out.push_str(&format!("| {} ({}) |", figure.figure, figure.unit));
            for name in &self.contenders {
                match figure.medians.get(name) {
                    Some(value) => out.push_str(&format!(" {} |", readable(*value))),
                    None => out.push_str(" - |"),
                }
            }
            for name in &others {
                match figure.oort_ratio.get(*name) {
                    Some(ratio) => out.push_str(&format!(" {ratio:.2} |")),
                    None => out.push_str(" - |"),
                }
            }
            out.push('\n');
        }
        out
    }
}

fn readable(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// Collects the samples as they come.
#[derive(Default)]
struct Samples {
    order: Vec<(String, &'static str, bool)>,
    values: BTreeMap<String, BTreeMap<String, Vec<f64>>>,
}

impl Samples {
    fn add(
        &mut self,
        figure: String,
        unit: &'static str,
        higher_is_better: bool,
        who: &str,
        value: f64,
    ) {
        if !self.values.contains_key(&figure) {
            self.order.push((figure.clone(), unit, higher_is_better));
        }
        self.values
            .entry(figure)
            .or_default()
            .entry(who.to_owned())
            .or_default()
            .push(value);
    }

    /// The figures, with each contender's median over `reference`'s as its ratio.
    fn into_figures(mut self, reference: &str) -> Vec<Figure> {
        self.order
            .into_iter()
            .map(|(figure, unit, higher_is_better)| {
                let samples = self.values.remove(&figure).unwrap_or_default();
                let medians: BTreeMap<String, f64> = samples
                    .iter()
                    .map(|(who, values)| (who.clone(), median(values)))
                    .collect();
                let oort_ratio = match medians.get(reference) {
                    Some(oort) => medians
                        .iter()
                        .filter(|(who, value)| *who != reference && **value > 0.0)
                        .map(|(who, value)| (who.clone(), oort / value))
                        .collect(),
                    None => BTreeMap::new(),
                };
                Figure {
                    figure,
                    unit,
                    higher_is_better,
                    samples,
                    medians,
                    oort_ratio,
                }
            })
            .collect()
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Runs every scenario against every contender, `repeat` times.
pub async fn run(backend: SocketAddr, options: &CompareOptions) -> anyhow::Result<CompareReport> {
    let names: Vec<String> = options.contenders.iter().map(|c| c.name.clone()).collect();
    let distinct: std::collections::BTreeSet<&String> = names.iter().collect();
    anyhow::ensure!(
        distinct.len() == names.len(),
        "every contender needs a name of its own (\"oort\" is Oort's)"
    );
    // Oort comes first: the ratios are over its figures.
    let reference = names.first().cloned().unwrap_or_default();
    let mut samples = Samples::default();
    for repetition in 1..=options.repeat {
        eprintln!("compare: repetition {repetition} of {}", options.repeat);
        for &connections in options.sizes(Part::Idle, &options.idle) {
            for contender in &options.contenders {
                let gateway = Gateway::start(contender, backend).await?;
                idle_memory(&gateway, connections, &mut samples).await?;
            }
        }
        for contender in &options.contenders {
            if options.runs(Part::Storm) {
                let gateway = Gateway::start(contender, backend).await?;
                connect_rate(&gateway, options.storm, &mut samples).await?;
            }
            if options.runs(Part::Send) {
                let gateway = Gateway::start(contender, backend).await?;
                send_rate(&gateway, options.send_duration, &mut samples).await?;
            }
        }
        for &sessions in options.sizes(Part::Fanout, &options.fanout) {
            for contender in &options.contenders {
                let gateway = Gateway::start(contender, backend).await?;
                fan_out(&gateway, sessions, options.fanout_rounds, &mut samples).await?;
            }
        }
    }
    Ok(CompareReport {
        scenario: "compare",
        repeat: options.repeat,
        figures: samples.into_figures(&reference),
        contenders: names,
    })
}

/// Memory per idle connection.
async fn idle_memory(
    gateway: &Gateway,
    connections: usize,
    samples: &mut Samples,
) -> anyhow::Result<()> {
    let report = open_all(gateway, connections, 200, Duration::from_secs(3)).await?;
    if let Some(bytes) = report.rss_per_connection_bytes {
        let figure = format!("idle memory per WebSocket, {connections} connections");
        samples.add(figure, "KiB", false, &gateway.name, bytes / 1024.0);
    }
    Ok(())
}

/// The connect storm's rate.
async fn connect_rate(
    gateway: &Gateway,
    connections: usize,
    samples: &mut Samples,
) -> anyhow::Result<()> {
    let report = open_all(gateway, connections, 1_000, Duration::ZERO).await?;
    let figure = format!("connect rate through the callback, {connections} clients 1,000 at once");
    samples.add(figure, "/s", true, &gateway.name, report.connect_rate_per_s);
    Ok(())
}

/// Opens `connections` plain WebSockets, `concurrency` at once, holds them for `hold`; every
/// one must connect.
async fn open_all(
    gateway: &Gateway,
    connections: usize,
    concurrency: usize,
    hold: Duration,
) -> anyhow::Result<idle::IdleReport> {
    let options = IdleOptions {
        connections,
        concurrency,
        hold,
        durable: false,
    };
    let report = idle::run(&gateway.target, &options).await?;
    anyhow::ensure!(
        report.failures == 0,
        "{}: {} of {connections} connects failed",
        gateway.name,
        report.failures
    );
    Ok(report)
}

/// `/send` to one session per request: the rate, and the gateway's CPU per send.
async fn send_rate(
    gateway: &Gateway,
    duration: Duration,
    samples: &mut Samples,
) -> anyhow::Result<()> {
    let options = SendOptions {
        sessions: 100,
        concurrency: 32,
        duration,
        payload_size: 64,
        batch: None,
        durable: false,
    };
    let report = send::run(&gateway.target, &options).await?;
    anyhow::ensure!(
        report.request_errors == 0,
        "{}: {} /send requests failed",
        gateway.name,
        report.request_errors
    );
    let figure = "/send, one session per request, 32 keep-alive connections";
    samples.add(
        figure.to_owned(),
        "/s",
        true,
        &gateway.name,
        report.requests_per_s,
    );
    if let Some(cpu) = report.gateway_cpu_us_per_frame {
        let figure = "gateway CPU per /send".to_owned();
        samples.add(figure, "µs", false, &gateway.name, cpu);
    }
    Ok(())
}

/// One `/send` naming every session: until the last client has it, until it is answered, and
/// the gateway's CPU per session.
async fn fan_out(
    gateway: &Gateway,
    sessions: usize,
    rounds: usize,
    samples: &mut Samples,
) -> anyhow::Result<()> {
    let reports = fanout::run_kuiperbelt(&gateway.target, sessions, rounds).await?;
    // /proc counts CPU time in 10 ms ticks, coarse for one round: one mean per phase.
    let mut cpu = Vec::new();
    for report in reports {
        anyhow::ensure!(
            report.received == sessions,
            "{}: a fan-out reached {} of {sessions}",
            gateway.name,
            report.received
        );
        if let Some(delivery) = &report.delivery {
            let figure = format!("one /send to {sessions} sessions: until the last client has it");
            samples.add(figure, "ms", false, &gateway.name, delivery.max_ms);
        }
        let figure = format!("one /send to {sessions} sessions: until it is answered");
        samples.add(figure, "ms", false, &gateway.name, report.request_ms);
        cpu.extend(report.gateway_cpu_us_per_delivery);
    }
    if !cpu.is_empty() {
        let figure = format!("one /send to {sessions} sessions: gateway CPU per session");
        let mean = cpu.iter().sum::<f64>() / cpu.len() as f64;
        samples.add(figure, "µs", false, &gateway.name, mean);
    }
    Ok(())
}

/// A contender's process, started for one scenario and killed when dropped.
struct Gateway {
    name: String,
    target: Target,
    _child: Child,
    _config: TempConfig,
}

impl Gateway {
    async fn start(contender: &Contender, backend: SocketAddr) -> anyhow::Result<Self> {
        let port = free_port()?;
        let config = TempConfig::new(&format!(
            "port: \"{port}\"\n\
             callback:\n  connect: http://{backend}/connect\n  establish: http://{backend}/establish\n  \
             close: http://{backend}/close\n  receive: http://{backend}/receive\n  timeout: 10s\n"
        ));
        let command = contender
            .command
            .replace("{config}", config.path())
            .replace("{port}", &port.to_string());
        let mut shell = Command::new("sh");
        shell
            .arg("-c")
            .arg(format!("exec {command}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            // kuiperbelt's diagnostics agent writes here.
            .env("GOPS_CONFIG_DIR", config.dir())
            // Oort on loopback only, with the limits meant for internet clients off (every
            // client here comes from 127.0.0.1); other gateways ignore these.
            .env("OORT_LISTEN", format!("127.0.0.1:{port}"));
        for (name, value) in super::target::Limits::LoopbackLoad.env() {
            shell.env(name, value);
        }
        let mut child = shell.spawn()?;
        let api_url = format!("http://127.0.0.1:{port}");
        let http = crate::http_client_builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        eventually(
            Duration::from_secs(30),
            &format!("{} answering /ping", contender.name),
            || async {
                let response = http.get(format!("{api_url}/ping")).send().await.ok()?;
                response.status().is_success().then_some(())
            },
        )
        .await;
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("{} exited at start: {status}", contender.name);
        }
        let target = Target::external(
            format!("ws://127.0.0.1:{port}/connect"),
            api_url,
            child.id(),
        );
        Ok(Self {
            name: contender.name.clone(),
            target,
            _child: child,
            _config: config,
        })
    }
}

/// A port nothing listens on now (the gateway binds it a moment later; nothing else here
/// competes for ports).
fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contenders_parse_as_name_and_command() {
        let contender = Contender::parse("kuiperbelt=ekbo -config={config}").unwrap();
        assert_eq!(contender.name, "kuiperbelt");
        assert_eq!(contender.command, "ekbo -config={config}");
        assert!(Contender::parse("no-command").is_err());
        assert!(Contender::parse("=ekbo").is_err());
    }

    #[test]
    fn figures_take_medians_and_oort_over_the_others() {
        let mut samples = Samples::default();
        for (who, value) in [("oort", 3.0), ("kb", 10.0), ("oort", 1.0), ("kb", 30.0)] {
            samples.add("fan-out".into(), "ms", false, who, value);
        }
        samples.add("fan-out".into(), "ms", false, "oort", 2.0);
        let figures = samples.into_figures("oort");
        assert_eq!(figures.len(), 1);
        assert_eq!(figures[0].medians["oort"], 2.0);
        assert_eq!(figures[0].medians["kb"], 20.0);
        assert!((figures[0].oort_ratio["kb"] - 0.1).abs() < 1e-9);
        assert!(!figures[0].oort_ratio.contains_key("oort"));
    }
}
