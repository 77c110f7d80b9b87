//! The RPC API against the JSON API, side by side in one run on the same sessions: unary
//! `Send` over gRPC on one h2c connection with C streams in flight, then `POST /v1/send` over
//! C HTTP/1.1 keep-alive connections. One session per call in both; the figures are calls per
//! second and the gateway's CPU time per call (docs/benchmarks.md, "RPC").

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use connectrpc::Protocol;
use connectrpc::client::{ClientConfig, Http2Connection};
use oort_common::rpc::__buffa::oneof::payload::Data;
use oort_common::rpc::{GatewayServiceClient, Payload, SendRequest};
use serde::Serialize;

use super::receivers::{Receivers, stamp};
use super::send::{SendOptions, open_receivers};
use super::target::Target;

/// One API's figures.
#[derive(Debug, Serialize)]
pub struct RpcSendReport {
    pub scenario: &'static str,
    /// `grpc_h2c` or `json_http1`.
    pub api: &'static str,
    pub sessions: usize,
    /// Calls in flight: h2 streams on one connection, or HTTP/1.1 connections.
    pub concurrency: usize,
    pub payload_bytes: usize,
    pub duration_s: f64,
    pub calls: u64,
    pub call_errors: u64,
    pub frames_received: u64,
    pub calls_per_s: f64,
    /// CPU time of the gateway per accepted call.
    pub gateway_cpu_us_per_call: Option<f64>,
}

/// Runs gRPC, then JSON, on the same sessions.
pub async fn run(target: &Target, options: &SendOptions) -> anyhow::Result<Vec<RpcSendReport>> {
    let receivers = open_receivers(&target.connect_url, options).await?;
    let grpc = phase(target, Api::Grpc, &receivers, options).await?;
    let json = phase(target, Api::Json, &receivers, options).await?;
    Ok(vec![grpc, json])
}

#[derive(Clone, Copy)]
enum Api {
    Grpc,
    Json,
}

/// One call: `Ok` when the gateway answered with the session's status.
enum Caller {
    Grpc(Box<GatewayServiceClient<connectrpc::client::SharedHttp2Connection>>),
    Json(reqwest::Client, String),
}

impl Caller {
    async fn send(&self, session: String, text: String) -> bool {
        match self {
            Self::Grpc(client) => {
                let request = SendRequest {
                    sessions: vec![session],
                    payload: Payload {
                        data: Some(Data::Text(text)),
                        ..Default::default()
                    }
                    .into(),
                    ..Default::default()
                };
                client.send(request).await.is_ok()
            }
            Self::Json(http, url) => {
                let body = serde_json::json!({ "sessions": [session], "data": text });
                let request = http
                    .post(url)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(body.to_string());
                match request.send().await {
                    Ok(response) if response.status().is_success() => {
                        response.bytes().await.is_ok()
                    }
                    _ => false,
                }
            }
        }
    }
}

async fn caller(target: &Target, api: Api, options: &SendOptions) -> anyhow::Result<Caller> {
    Ok(match api {
        Api::Grpc => {
            let uri: http::Uri = target.api_url.parse()?;
            let connection = Http2Connection::connect_plaintext(uri.clone())
                .await?
                .shared(options.concurrency.max(1) * 2);
            let config = ClientConfig::new(uri).with_protocol(Protocol::Grpc);
            Caller::Grpc(Box::new(GatewayServiceClient::new(connection, config)))
        }
        Api::Json => {
            let http = crate::http_client_builder()
                .timeout(super::REQUEST_TIMEOUT)
                .pool_max_idle_per_host(options.concurrency)
                .http1_only()
                .build()?;
            Caller::Json(http, format!("{}/v1/send", target.api_url))
        }
    })
}

async fn phase(
    target: &Target,
    api: Api,
    receivers: &Receivers,
    options: &SendOptions,
) -> anyhow::Result<RpcSendReport> {
    let caller = Arc::new(caller(target, api, options).await?);
    let calls = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let received_before = receivers.tally.frames();
    let cpu_before = target.cpu_seconds();
    let started = Instant::now();
    let deadline = started + options.duration;
    let mut workers = Vec::new();
    for worker in 0..options.concurrency {
        let (caller, calls, errors) = (caller.clone(), calls.clone(), errors.clone());
        let (sessions, size) = (options.sessions, options.payload_size);
        workers.push(tokio::spawn(async move {
            let mut next = worker;
            while Instant::now() < deadline {
                next = (next + 7) % sessions;
                if caller.send(format!("send-{next}"), stamp(size)).await {
                    calls.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for worker in workers {
        worker.await?;
    }
    let elapsed = started.elapsed();
    let cpu_after = target.cpu_seconds();
    let accepted = calls.load(Ordering::Relaxed);
    receivers
        .wait_for(received_before + accepted, Duration::from_secs(10))
        .await;
    let gateway_cpu = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) if accepted > 0 => {
            Some((after - before) * 1e6 / accepted as f64)
        }
        _ => None,
    };
    Ok(RpcSendReport {
        scenario: "rpc_send",
        api: match api {
            Api::Grpc => "grpc_h2c",
            Api::Json => "json_http1",
        },
        sessions: options.sessions,
        concurrency: options.concurrency,
        payload_bytes: options.payload_size,
        duration_s: elapsed.as_secs_f64(),
        calls: accepted,
        call_errors: errors.load(Ordering::Relaxed),
        frames_received: receivers.tally.frames() - received_before,
        calls_per_s: accepted as f64 / elapsed.as_secs_f64(),
        gateway_cpu_us_per_call: gateway_cpu,
    })
}
