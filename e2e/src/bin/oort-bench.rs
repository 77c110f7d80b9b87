//! `oort-bench`: Oort's load generator. See docs/benchmarks.md for the method and figures.
//!
//! It starts the gateway itself (one node, or a cluster with its own nats-server) or targets a
//! running kuiperbelt-compatible gateway, serves the callback backend, runs one scenario, and
//! prints JSON results on stdout (one line per report) and a readable copy on stderr.

#![allow(clippy::print_stdout)]

use std::time::Duration;

use clap::{Parser, Subcommand};
use oort_e2e::bench::attack::{self, AttackKind, AttackOptions};
use oort_e2e::bench::channel_fanout::{self, ChannelFanoutOptions};
use oort_e2e::bench::idle::{self, IdleOptions};
use oort_e2e::bench::resume::{self, ResumeOptions};
use oort_e2e::bench::rolling::{self, RollingOptions};
use oort_e2e::bench::send::{self, SendOptions};
use oort_e2e::bench::streams::{self, StreamsOptions};
use oort_e2e::bench::target::{Limits, Target};
use oort_e2e::bench::{
    backend, channel_chat, chat, compare, directory, failover, fanout, http_transports,
    idle_workers, rpc_send,
};
use serde_json::Value;

/// Load scenarios against a real gateway on loopback.
#[derive(Parser)]
#[command(name = "oort-bench")]
struct Cli {
    /// Target a running gateway's connect URL (ws://host:port/connect) instead of spawning one.
    #[arg(long, requires = "api_url")]
    connect_url: Option<String>,
    /// The running gateway's API base URL (http://host:port).
    #[arg(long)]
    api_url: Option<String>,
    /// The running gateway's pid, for memory and CPU figures.
    #[arg(long)]
    gateway_pid: Option<u32>,
    /// Where the built-in callback backend listens (point the gateway's callbacks here).
    #[arg(long, default_value = "127.0.0.1:0")]
    backend_listen: String,
    /// Extra YAML for a spawned gateway's config, e.g. "websocket:\n  read_buffer_size: 1024".
    #[arg(long, default_value = "")]
    extra_config: String,
    /// Spawn a cluster of this many nodes (with its own nats-server) instead of one node; the
    /// load goes to the last node, a follower.
    #[arg(long)]
    cluster: Option<usize>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Scenario 1, idle connections: gateway memory per connection, connect rate, idle CPU.
    Idle {
        /// More than one process can hold (20,000 open files here) are opened by worker
        /// processes, spread over the nodes: 100,000 needs --cluster 6.
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        /// Seconds to hold the connections while measuring idle CPU.
        #[arg(long, default_value_t = 10)]
        hold: u64,
        /// Clients offer the oort.v1 subprotocol (durable sessions, empty replay buffers).
        #[arg(long)]
        durable: bool,
    },
    /// One worker process of a large idle run (started by `idle` itself).
    #[command(hide = true)]
    IdleWorker {
        #[arg(long)]
        connect_url: String,
        #[arg(long)]
        connections: usize,
        #[arg(long)]
        concurrency: usize,
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        durable: bool,
    },
    /// Scenario 2, send throughput and latency through /send (one session per request) or
    /// through /v1/send/batch.
    Send {
        #[command(flatten)]
        options: SendArgs,
    },
    /// The RPC API against the JSON API on the same sessions: unary gRPC Send over one h2c
    /// connection with --concurrency streams, then POST /v1/send over --concurrency HTTP/1.1
    /// keep-alive connections (docs/benchmarks.md, "RPC").
    RpcSend {
        #[command(flatten)]
        options: SendArgs,
    },
    /// Scenario 3, fan-out: one /v1/send naming every session, and one /v1/broadcast (with
    /// --cluster 2 or more, also through a node that holds none of the sessions: scenario 4).
    Fanout {
        #[arg(long, default_value_t = 10_000)]
        sessions: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Scenario 4, cross-node: sessions on the first node, sends through it and then through
    /// the second (needs --cluster 2 or more).
    Cross {
        #[command(flatten)]
        options: SendArgs,
    },
    /// Scenario 5, connect storm: N clients at once through the connect callback (and raft
    /// registration, with --cluster).
    Storm {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        #[arg(long, default_value_t = 1_000)]
        concurrency: usize,
    },
    /// Scenario 6, the chat benchmark: N clients each send M messages, each broadcast to all.
    Chat {
        #[arg(long, default_value_t = 100)]
        clients: usize,
        #[arg(long, default_value_t = 100)]
        messages: usize,
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// The chat benchmark through a channel: N clients spread over the nodes join one room at
    /// connect; the backend publishes each of their M messages to it (use --cluster 3).
    ChannelChat {
        #[arg(long, default_value_t = 100)]
        clients: usize,
        #[arg(long, default_value_t = 100)]
        messages: usize,
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Publish fan-out to one channel's N subscribers, all on the first node and then spread
    /// over every node; subscribe rate, memory per subscription, NATS messages per publish
    /// (use --cluster 3).
    ChannelFanout {
        #[arg(long, default_value_t = 10_000)]
        sessions: usize,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Extra channels every session joins for the memory figure (at most
        /// channels.max_per_request).
        #[arg(long, default_value_t = 64)]
        extra_channels: usize,
        /// Sessions per /v1/subscribe request (at most channels.max_sessions_per_request).
        #[arg(long, default_value_t = 1_000)]
        batch: usize,
    },
    /// The session directory at scale: synthetic sessions (no sockets) registered through the
    /// real path of a three-node cluster (its own nats-server), step by step; registrations/s,
    /// commit latency, memory per entry per node, NATS bytes per registration, snapshot size
    /// and build time, a new node's catch-up, and the lookup cost (docs/scale.md).
    Directory {
        #[arg(long, default_value_t = 1_000_000)]
        sessions: u64,
        #[arg(long, default_value_t = 250_000)]
        step: u64,
        /// Sizes at which a new node joins and its catch-up is timed (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
        learner_at: Vec<u64>,
        /// `cluster.snapshot_every`: raft entries between snapshots.
        #[arg(long, default_value_t = 100)]
        snapshot_every: u64,
    },
    /// Failover: a three-node cluster (default timings, its own nats-server) per run, the
    /// leader SIGKILLed, the time until a connect through a survivor succeeds.
    Failover {
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
    /// Resumes under load: `oort.v1` clients that each drop their connection (no close frame)
    /// after a random time and resume on the same node, again and again, while messages are
    /// sent to them through /v1/send/batch; resume latency, and messages lost or duplicated.
    Resume {
        #[arg(long, default_value_t = 1_000)]
        clients: usize,
        /// Messages a second.
        #[arg(long, default_value_t = 1_000)]
        rate: usize,
        /// Seconds the clients keep dropping and resuming.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Each connection is dropped after a random time between these (milliseconds).
        #[arg(long, default_value_t = 1_000)]
        drop_after_min_ms: u64,
        #[arg(long, default_value_t = 3_000)]
        drop_after_max_ms: u64,
    },
    /// Zero loss through a rolling restart: a cluster (its own nats-server, fast timings) with
    /// `oort.v1` clients and a sender through every node, each node SIGTERMed and started
    /// again in turn; messages lost, duplicated, reordered, and resume latency.
    Rolling {
        #[arg(long, default_value_t = 300)]
        clients: usize,
        /// Messages a second.
        #[arg(long, default_value_t = 1_000)]
        rate: usize,
        /// Nodes (3 or more).
        #[arg(long, default_value_t = 3)]
        nodes: usize,
    },
    /// SSE (sessions read as Durable Streams): N clients each holding an idle SSE response,
    /// the gateway's memory per client, then fan-out rounds (/v1/send naming all, broadcast).
    Sse {
        #[arg(long, default_value_t = 10_000)]
        clients: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Long-polling (sessions read as Durable Streams): N clients each polling; the memory per
    /// held poll, then sends to every session as fast as polls come back: round trips/s.
    Longpoll {
        #[arg(long, default_value_t = 1_000)]
        clients: usize,
        /// Seconds of sending.
        #[arg(long, default_value_t = 10)]
        duration: u64,
    },
    /// Named Durable Streams (`/v1/stream/<name>`): memory per retained message, SSE readers
    /// of one stream spread over the nodes (memory per reader, time until the last has an
    /// append), then appends/s to one stream and spread over many, through the owner and
    /// (with --cluster 2 or more) through another node (docs/benchmarks.md, "Durable Streams").
    Streams {
        /// Keep-alive HTTP/1.1 clients appending at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Seconds each append phase lasts (four phases clustered, two on one node).
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Streams the spread append phases use.
        #[arg(long, default_value_t = 1_000)]
        streams: usize,
        /// Bytes of each appended JSON message.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// SSE readers of one stream, spread over the nodes (at most what this process's
        /// open files allow: 19,500 here).
        #[arg(long, default_value_t = 10_000)]
        readers: usize,
        /// Appends the readers wait for, one after the other.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Messages appended to one stream for the memory per retained message (at most
        /// streams.max_messages, 100,000 by default).
        #[arg(long, default_value_t = 100_000)]
        retained: usize,
        /// The gateway's api_token, when it has one.
        #[arg(long)]
        api_token: Option<String>,
    },
    /// Oort side by side with other kuiperbelt-compatible gateways: idle memory, connect rate,
    /// /send rate and CPU, fan-out through /send headers; each scenario on a fresh process of
    /// every contender in turn; medians and Oort's ratio to each (docs/benchmarks.md,
    /// "Side by side with kuiperbelt"). Oort itself is always the first contender.
    Compare {
        /// Another gateway: NAME=COMMAND, run with `sh -c` in the foreground; `{config}` is
        /// replaced by a kuiperbelt-format config file (port and callbacks), `{port}` by its
        /// port. Repeatable.
        #[arg(long = "gateway", value_parser = compare::Contender::parse)]
        gateways: Vec<compare::Contender>,
        /// Idle connection counts (comma-separated) whose memory per connection is measured.
        #[arg(long, value_delimiter = ',', default_value = "5000,10000")]
        idle: Vec<usize>,
        /// Connections of the connect storm (1,000 at once).
        #[arg(long, default_value_t = 5_000)]
        storm: usize,
        /// Seconds of the /send phase.
        #[arg(long, default_value_t = 10)]
        send_duration: u64,
        /// Session counts (comma-separated) of the fan-out phases.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
        fanout: Vec<usize>,
        /// Measured fan-out requests per phase.
        #[arg(long, default_value_t = 5)]
        fanout_rounds: usize,
        /// Repetitions of the whole set (the figures are medians).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Run only these parts (comma-separated; all by default).
        #[arg(long, value_enum, value_delimiter = ',')]
        only: Vec<compare::Part>,
    },
    /// Every scenario at a tiny size, to keep the tool working (CI runs this); exits non-zero
    /// if any scenario loses a frame.
    Smoke,
    /// Hostile clients: one attack while the gateway's memory, a well-behaved client and the
    /// sessions opened before it are watched (docs/security.md). A spawned gateway keeps its
    /// default limits here.
    Attack {
        #[command(flatten)]
        options: AttackArgs,
    },
}

#[derive(clap::Args, Clone)]
struct AttackArgs {
    #[arg(long, value_enum)]
    kind: AttackKind,
    /// Attacking connections (sessions for the message attacks, parallel loops for
    /// connect-loop).
    #[arg(long, default_value_t = 1_000)]
    connections: usize,
    /// Attacker addresses (127.77.x.y) the connections are spread over.
    #[arg(long, default_value_t = 100)]
    sources: usize,
    /// Seconds the attack lasts.
    #[arg(long, default_value_t = 15)]
    hold: u64,
    /// Header bytes per connection (large-heads); 432 KiB by default.
    #[arg(long, default_value_t = 432 << 10)]
    head_bytes: usize,
    /// Message size (fragments, oversized-messages, no-read); 1 MiB + 1 by default.
    #[arg(long, default_value_t = (1 << 20) + 1)]
    message_bytes: usize,
    /// Frames per message (fragments, oversized-messages).
    #[arg(long, default_value_t = 2)]
    fragments: usize,
    /// Well-behaved sessions opened first, which must all survive.
    #[arg(long, default_value_t = 100)]
    sessions: usize,
    /// Milliseconds between two connects of the well-behaved probe client.
    #[arg(long, default_value_t = 200)]
    probe_interval_ms: u64,
}

impl AttackArgs {
    fn options(&self) -> AttackOptions {
        AttackOptions {
            kind: self.kind,
            connections: self.connections,
            sources: self.sources,
            hold: Duration::from_secs(self.hold),
            head_bytes: self.head_bytes,
            message_bytes: self.message_bytes,
            fragments: self.fragments,
            sessions: self.sessions,
            probe_interval: Duration::from_millis(self.probe_interval_ms),
        }
    }
}

#[derive(clap::Args, Clone)]
struct SendArgs {
    #[arg(long, default_value_t = 100)]
    sessions: usize,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds to send for.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Messages per /v1/send/batch request (omit for /send).
    #[arg(long)]
    batch: Option<usize>,
    /// Sessions offer the oort.v1 subprotocol: their clients read sequence numbers and
    /// acknowledge every 32 messages.
    #[arg(long)]
    durable: bool,
}

impl SendArgs {
    fn options(&self) -> SendOptions {
        SendOptions {
            sessions: self.sessions,
            concurrency: self.concurrency,
            duration: Duration::from_secs(self.duration),
            payload_size: self.size.max(20),
            batch: self.batch,
            durable: self.durable,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Scenario::IdleWorker {
        connect_url,
        connections,
        concurrency,
        prefix,
        durable,
    } = &cli.scenario
    {
        return idle_workers::worker(connect_url, *connections, *concurrency, prefix, *durable)
            .await;
    }
    if let Scenario::Directory {
        sessions,
        step,
        learner_at,
        snapshot_every,
    } = &cli.scenario
    {
        // A cluster of its own: no target, no backend here.
        let options = directory::DirectoryOptions {
            sessions: *sessions,
            step: (*step).max(1),
            learner_at: learner_at.clone(),
            snapshot_every: (*snapshot_every).max(1),
        };
        let report = serde_json::to_value(directory::run(&options).await?)?;
        eprintln!("{}", serde_json::to_string_pretty(&report)?);
        println!("{report}");
        return Ok(());
    }
    if let Scenario::Failover { runs } = &cli.scenario {
        // Each run spawns its own cluster: no target, no backend here.
        let report = serde_json::to_value(failover::run(*runs, &cli.extra_config).await?)?;
        eprintln!("{}", serde_json::to_string_pretty(&report)?);
        println!("{report}");
        return Ok(());
    }
    if let Scenario::Rolling {
        clients,
        rate,
        nodes,
    } = &cli.scenario
    {
        // Spawns its own cluster, with the harness's recording backend.
        let options = RollingOptions {
            clients: *clients,
            rate: *rate,
            nodes: *nodes,
        };
        let report = serde_json::to_value(rolling::run(&options).await?)?;
        eprintln!("{}", serde_json::to_string_pretty(&report)?);
        println!("{report}");
        return Ok(());
    }
    let backend = backend::start(&cli.backend_listen).await?;
    if let Scenario::Compare {
        gateways,
        idle,
        storm,
        send_duration,
        fanout,
        fanout_rounds,
        repeat,
        only,
    } = &cli.scenario
    {
        // Starts a fresh process of every contender per scenario: no target here.
        let options = compare::CompareOptions {
            contenders: std::iter::once(compare::Contender::oort())
                .chain(gateways.iter().cloned())
                .collect(),
            idle: idle.clone(),
            storm: *storm,
            send_duration: Duration::from_secs(*send_duration),
            fanout: fanout.clone(),
            fanout_rounds: (*fanout_rounds).max(1),
            repeat: (*repeat).max(1),
            only: only.clone(),
        };
        let report = compare::run(backend, &options).await?;
        eprintln!("{}", report.table());
        println!("{}", serde_json::to_value(&report)?);
        return Ok(());
    }
    let limits = match cli.scenario {
        Scenario::Attack { .. } => Limits::Configured,
        _ => Limits::LoopbackLoad,
    };
    eprintln!("callback backend on http://{backend}");
    let target = match (cli.connect_url, cli.api_url) {
        (Some(connect_url), Some(api_url)) => {
            Target::external(connect_url, api_url, cli.gateway_pid)
        }
        _ => match cli.cluster {
            Some(size) => Target::spawn_cluster(backend, size, &cli.extra_config, limits).await?,
            None => Target::spawn(backend, &cli.extra_config, limits).await?,
        },
    };
    let reports = run(&target, cli.scenario).await?;
    for report in &reports {
        eprintln!("{}", serde_json::to_string_pretty(report)?);
        println!("{report}");
    }
    Ok(())
}

async fn run(target: &Target, scenario: Scenario) -> anyhow::Result<Vec<Value>> {
    Ok(match scenario {
        Scenario::Idle {
            connections,
            concurrency,
            hold,
            durable,
        } => {
            let options = IdleOptions {
                connections,
                concurrency,
                hold: Duration::from_secs(hold),
                durable,
            };
            vec![serde_json::to_value(idle::run(target, &options).await?)?]
        }
        Scenario::IdleWorker { .. }
        | Scenario::Failover { .. }
        | Scenario::Rolling { .. }
        | Scenario::Directory { .. }
        | Scenario::Compare { .. } => {
            anyhow::bail!("this scenario runs on its own")
        }
        Scenario::Storm {
            connections,
            concurrency,
        } => {
            let options = IdleOptions {
                connections,
                concurrency,
                hold: Duration::ZERO,
                durable: false,
            };
            let mut report = serde_json::to_value(idle::run(target, &options).await?)?;
            report["scenario"] = "storm".into();
            vec![report]
        }
        Scenario::Send { options } => vec![serde_json::to_value(
            send::run(target, &options.options()).await?,
        )?],
        Scenario::RpcSend { options } => rpc_send::run(target, &options.options())
            .await?
            .into_iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()?,
        Scenario::Cross { options } => send::run_cross(target, &options.options())
            .await?
            .into_iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()?,
        Scenario::Fanout { sessions, rounds } => fanout::run(target, sessions, rounds)
            .await?
            .into_iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()?,
        Scenario::Chat {
            clients,
            messages,
            timeout,
        } => {
            vec![serde_json::to_value(
                chat::run(target, clients, messages, Duration::from_secs(timeout)).await?,
            )?]
        }
        Scenario::ChannelChat {
            clients,
            messages,
            timeout,
        } => vec![serde_json::to_value(
            channel_chat::run(target, clients, messages, Duration::from_secs(timeout)).await?,
        )?],
        Scenario::ChannelFanout {
            sessions,
            rounds,
            extra_channels,
            batch,
        } => {
            let options = ChannelFanoutOptions {
                sessions,
                rounds,
                extra_channels,
                batch,
            };
            vec![serde_json::to_value(
                channel_fanout::run(target, &options).await?,
            )?]
        }
        Scenario::Resume {
            clients,
            rate,
            duration,
            drop_after_min_ms,
            drop_after_max_ms,
        } => {
            let options = ResumeOptions {
                clients,
                rate,
                duration: Duration::from_secs(duration),
                drop_after_min: Duration::from_millis(drop_after_min_ms),
                drop_after_max: Duration::from_millis(drop_after_max_ms),
            };
            vec![serde_json::to_value(resume::run(target, &options).await?)?]
        }
        Scenario::Sse { clients, rounds } => vec![serde_json::to_value(
            http_transports::run_sse(target, clients, rounds).await?,
        )?],
        Scenario::Longpoll { clients, duration } => vec![serde_json::to_value(
            http_transports::run_longpoll(target, clients, Duration::from_secs(duration)).await?,
        )?],
        Scenario::Streams {
            concurrency,
            duration,
            streams,
            size,
            readers,
            rounds,
            retained,
            api_token,
        } => {
            let options = StreamsOptions {
                concurrency,
                duration: Duration::from_secs(duration),
                streams,
                message_size: size,
                readers,
                rounds,
                retained,
                api_token,
            };
            streams::run(target, &options).await?
        }
        Scenario::Smoke => smoke(target).await?,
        Scenario::Attack { options } => {
            vec![serde_json::to_value(
                attack::run(target, &options.options()).await?,
            )?]
        }
    })
}

/// The send scenarios' size in the smoke run.
fn smoke_send(batch: Option<usize>, durable: bool) -> SendOptions {
    SendOptions {
        sessions: 20,
        concurrency: 4,
        duration: Duration::from_millis(500),
        payload_size: 32,
        batch,
        durable,
    }
}

/// Every scenario, small: a few seconds each (`rolling` only against one node: it spawns its
/// own cluster either way).
async fn smoke(target: &Target) -> anyhow::Result<Vec<Value>> {
    let mut reports = Vec::new();
    let idle = idle::run(
        target,
        &IdleOptions {
            connections: 200,
            concurrency: 50,
            hold: Duration::from_millis(200),
            durable: false,
        },
    )
    .await?;
    anyhow::ensure!(
        idle.failures == 0,
        "idle: {} connects failed",
        idle.failures
    );
    reports.push(serde_json::to_value(idle)?);
    for (batch, durable) in [(None, false), (Some(20), false), (None, true)] {
        let report = send::run(target, &smoke_send(batch, durable)).await?;
        anyhow::ensure!(
            report.frames_received == report.frames_accepted && report.request_errors == 0,
            "send lost frames: {report:?}"
        );
        reports.push(serde_json::to_value(report)?);
    }
    for report in fanout::run(target, 200, 1).await? {
        anyhow::ensure!(
            report.received == report.sessions,
            "fan-out reached {} of {}",
            report.received,
            report.sessions
        );
        reports.push(serde_json::to_value(report)?);
    }
    if target.nodes.len() == 1 {
        let sse = http_transports::run_sse(target, 50, 1).await?;
        anyhow::ensure!(
            sse.fanout.iter().all(|round| round.received == 50),
            "SSE fan-out lost events: {sse:?}"
        );
        reports.push(serde_json::to_value(sse)?);
        let polls = http_transports::run_longpoll(target, 20, Duration::from_secs(1)).await?;
        anyhow::ensure!(
            polls.out_of_order == 0 && polls.messages_per_s > 0.0,
            "long-poll lost or reordered messages: {polls:?}"
        );
        reports.push(serde_json::to_value(polls)?);
    }
    let chat = chat::run(target, 10, 10, Duration::from_secs(30)).await?;
    anyhow::ensure!(chat.all_received, "chat lost frames: {chat:?}");
    reports.push(serde_json::to_value(chat)?);
    let room = channel_chat::run(target, 6, 5, Duration::from_secs(30)).await?;
    anyhow::ensure!(
        room.all_received && room.publish_failures == 0,
        "channel chat lost frames: {room:?}"
    );
    reports.push(serde_json::to_value(room)?);
    let options = ChannelFanoutOptions {
        sessions: 60,
        rounds: 2,
        extra_channels: 4,
        batch: 25,
    };
    let channel_fanout = channel_fanout::run(target, &options).await?;
    anyhow::ensure!(
        channel_fanout.local.received_min == 60 && channel_fanout.spread.received_min == 60,
        "channel fan-out lost frames: {channel_fanout:?}"
    );
    reports.push(serde_json::to_value(channel_fanout)?);
    let resume = resume::run(
        target,
        &ResumeOptions {
            clients: 20,
            rate: 200,
            duration: Duration::from_secs(1),
            drop_after_min: Duration::from_millis(100),
            drop_after_max: Duration::from_millis(300),
        },
    )
    .await?;
    anyhow::ensure!(
        resume.delivery.is_exact() && resume.delivery.resumes > 0,
        "resume lost or reordered messages: {resume:?}"
    );
    reports.push(serde_json::to_value(resume)?);
    if target.nodes.len() == 1 {
        // Spawns its own three nodes whatever the target: once per smoke run set is enough.
        let options = RollingOptions {
            clients: 20,
            rate: 200,
            nodes: 3,
        };
        let rolling = rolling::run(&options).await?;
        anyhow::ensure!(
            rolling.delivery.is_exact() && rolling.delivery.resumes > 0,
            "rolling restart lost or reordered messages: {rolling:?}"
        );
        reports.push(serde_json::to_value(rolling)?);
    }
    if target.nodes.len() >= 2 {
        let options = smoke_send(None, false);
        for report in send::run_cross(target, &options).await? {
            anyhow::ensure!(
                report.frames_received == report.frames_accepted,
                "cross-node send lost frames: {report:?}"
            );
            reports.push(serde_json::to_value(report)?);
        }
    }
    for report in rpc_send::run(target, &smoke_send(None, false)).await? {
        anyhow::ensure!(
            report.frames_received == report.calls && report.call_errors == 0 && report.calls > 0,
            "RPC send lost frames or failed: {report:?}"
        );
        reports.push(serde_json::to_value(report)?);
    }
    let options = StreamsOptions {
        concurrency: 4,
        duration: Duration::from_millis(300),
        streams: 20,
        message_size: 64,
        readers: 30,
        rounds: 2,
        retained: 2_000,
        api_token: None,
    };
    for report in streams::run(target, &options).await? {
        let skipped = report.get("skipped").is_some();
        let failed = match report["measure"].as_str() {
            Some("append") => {
                !skipped && (report["errors"] != 0 || report["appends"].as_u64() == Some(0))
            }
            Some("sse") => report["rounds"]
                .as_array()
                .is_none_or(|rounds| rounds.iter().any(|round| round["received"] != 30)),
            _ => false,
        };
        anyhow::ensure!(!failed, "streams lost or refused appends: {report}");
        reports.push(report);
    }
    Ok(reports)
}
