//! Benchmark 2, fan-out: one `sendmessage` to a room of N members with the gateway's
//! @connections latency injected, measured end to end (a client sends, every member's client
//! receives; real WebSocket clients through the gateway, members registered by `$connect`).
//! In the same run and against the same connections, the sequential loop (one post after
//! another, as the seed did) and the core crate's bounded fan-out called from the harness.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use realtime_core::fanout::{deliver, FanoutPolicy};
use realtime_core::ports::{ConnectionStore, Notifier};
use realtime_core::{ConnectionId, Deadline, Room};
use serde::Serialize;
use serde_json::json;

use crate::clients::{self, Fleet, Target};
use crate::gateway::{Gateway, TemplateFacts};
use crate::stats::Summary;

/// How long one round may take before it counts as failed.
const ROUND_TIMEOUT: Duration = Duration::from_secs(120);

/// One room size.
#[derive(Debug, Clone, Serialize)]
pub struct Size {
    /// Members of the room (the sender included).
    pub n: usize,
    /// The message handler through the gateway: `sendmessage` sent to the last member's
    /// client reading it, ms.
    pub handler_ms: Summary,
    /// The core crate's `deliver` (same bound) called from the harness, ms.
    pub library_ms: Option<Summary>,
    /// The sequential loop from the harness, ms; `None` when extrapolated.
    pub sequential_ms: Option<Summary>,
    /// Sequential time extrapolated from the per-post time at a smaller N, ms.
    pub sequential_extrapolated_ms: Option<f64>,
    /// max(1, N / bound) x latency, ms.
    pub ideal_ms: f64,
    /// Handler median / ideal.
    pub vs_ideal: f64,
    /// Sequential (measured or extrapolated) / handler median.
    pub speedup_vs_sequential: f64,
}

/// The whole fan-out benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct Fanout {
    /// Injected @connections latency, ms.
    pub latency_ms: u64,
    /// Posts in flight (`FANOUT_CONCURRENCY`).
    pub bound: usize,
    /// Every room size.
    pub sizes: Vec<Size>,
    /// Connects per second while the 5,000 members joined (through `$connect`).
    pub connect_rate_per_s: f64,
    /// Peak RSS of the message handler processes after the run, MiB.
    pub message_handler_max_rss_mib: f64,
}

/// What each size does.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// Room size.
    pub n: usize,
    /// Rounds through the handler.
    pub handler_rounds: usize,
    /// Rounds of the library fan-out from the harness.
    pub library_rounds: usize,
    /// Rounds of the sequential loop (0: extrapolate).
    pub sequential_rounds: usize,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A round of `sendmessage` through the handler: the time until the last of `n` arrives.
async fn handler_round(
    fleet: &mut Fleet,
    room: Option<&str>,
    n: usize,
    marker: &str,
) -> Result<f64> {
    let frame = match room {
        Some(room) => json!({"action": "sendmessage", "room": room, "text": marker}),
        None => json!({"action": "sendmessage", "text": marker}),
    };
    let (_, last) = fleet
        .round(&frame, marker, n, ROUND_TIMEOUT)
        .await
        .with_context(|| format!("sendmessage to {n} members"))?;
    Ok(ms(last))
}

/// A round of the core crate's fan-out from the harness, with `policy`.
async fn library_round(
    fleet: &mut Fleet,
    notifier: &dyn Notifier,
    members: &[ConnectionId],
    policy: FanoutPolicy,
    marker: &str,
) -> Result<f64> {
    let frame =
        json!({"type": "message", "room": "lobby", "text": marker, "from": "bench"}).to_string();
    let started = Instant::now();
    let report = deliver(notifier, members, frame.as_bytes(), policy, Deadline::NONE).await;
    if report.delivered != members.len() {
        bail!(
            "the harness's fan-out delivered {} of {} (gone {}, failed {})",
            report.delivered,
            members.len(),
            report.gone.len(),
            report.failed.len()
        );
    }
    let times = fleet
        .collect("message", Some(marker), members.len(), ROUND_TIMEOUT)
        .await?;
    let last = times.into_iter().max().unwrap_or(started);
    Ok(ms(last - started))
}

async fn grow(fleet: &mut Fleet, target: &Target, to: usize) -> Result<(usize, Duration)> {
    let missing = to.saturating_sub(fleet.len());
    let (sockets, _, took) = clients::connect_many(target, missing, 64).await?;
    fleet.add(sockets);
    Ok((missing, took))
}

/// Runs every step in order of size, growing one lobby (every client joins it at
/// `$connect`); N = 1 uses a room of its own.
pub async fn measure(
    gateway: &Gateway,
    target: &Target,
    facts: &TemplateFacts,
    dynamodb_endpoint: &str,
    latency_ms: u64,
    steps: &[Step],
) -> Result<Fanout> {
    let bound = facts.fanout_concurrency;
    let db = crate::ddb::client(dynamodb_endpoint).await;
    let store = realtime_aws::dynamodb::DynamoStore::new(db.clone(), &facts.connections_table);
    let sdk = realtime_aws::clients::local_sdk_config(Duration::from_secs(10)).await;
    let management =
        realtime_aws::clients::management(&sdk, &gateway.callback_url, Duration::from_secs(10));
    let notifier: Arc<dyn Notifier> =
        Arc::new(realtime_aws::notifier::ApiGatewayNotifier::new(management));
    let bounded = FanoutPolicy {
        concurrency: bound,
        ..FanoutPolicy::default()
    };
    let sequential = FanoutPolicy {
        concurrency: 1,
        ..FanoutPolicy::default()
    };

    let mut fleet = Fleet::default();
    let mut sizes = Vec::new();
    let mut per_post_ms: Option<f64> = None;
    let mut connected = 0usize;
    let mut connect_time = Duration::ZERO;
    let mut round = 0usize;
    for step in steps {
        let (added, took) = grow(&mut fleet, target, step.n.max(1)).await?;
        connected += added;
        connect_time += took;
        let room = if step.n == 1 {
            let frame = json!({"action": "join", "room": "solo"});
            fleet.send(0, &frame).await?;
            fleet.collect("joined", None, 1, ROUND_TIMEOUT).await?;
            Some("solo")
        } else {
            let lobby = crate::ddb::wait_for_lobby(
                &db,
                &facts.connections_table,
                step.n,
                Duration::from_secs(30),
            )
            .await?;
            if lobby != step.n {
                bail!("the lobby has {lobby} members, expected {}", step.n);
            }
            None
        };

        let mut handler = Vec::new();
        for _ in 0..step.handler_rounds {
            round += 1;
            let took = handler_round(&mut fleet, room, step.n, &format!("h{round}")).await?;
            eprintln!(
                "bench: fan-out N={:>5} handler round: {took:8.1} ms",
                step.n
            );
            handler.push(took);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }

        let members: Vec<ConnectionId> = if step.n == 1 {
            Vec::new()
        } else {
            store
                .members(&Room::lobby(), chrono::Utc::now())
                .await
                .map_err(|e| anyhow!("query the lobby: {e}"))?
        };
        let mut library = Vec::new();
        let mut seq = Vec::new();
        if !members.is_empty() {
            let rounds = [
                ("library", bounded, step.library_rounds, &mut library),
                ("sequential", sequential, step.sequential_rounds, &mut seq),
            ];
            for (name, policy, count, times) in rounds {
                for _ in 0..count {
                    round += 1;
                    let marker = format!("{}{round}", &name[..1]);
                    let took =
                        library_round(&mut fleet, notifier.as_ref(), &members, policy, &marker)
                            .await?;
                    eprintln!("bench: fan-out N={:>5} {name} round: {took:8.1} ms", step.n);
                    times.push(took);
                }
            }
        }
        let handler = Summary::of(&handler);
        let sequential_ms = (!seq.is_empty()).then(|| Summary::of(&seq));
        if let Some(s) = &sequential_ms {
            per_post_ms = Some(s.median / step.n as f64);
        }
        let sequential_extrapolated_ms = match (&sequential_ms, per_post_ms) {
            (None, Some(per_post)) if step.n > 1 => Some(per_post * step.n as f64),
            _ => None,
        };
        let sequential_value = sequential_ms
            .as_ref()
            .map(|s| s.median)
            .or(sequential_extrapolated_ms)
            .unwrap_or(latency_ms as f64 * step.n as f64);
        let ideal_ms = (step.n as f64 / bound as f64).max(1.0) * latency_ms as f64;
        sizes.push(Size {
            n: step.n,
            vs_ideal: handler.median / ideal_ms,
            speedup_vs_sequential: sequential_value / handler.median.max(f64::EPSILON),
            handler_ms: handler,
            library_ms: (!library.is_empty()).then(|| Summary::of(&library)),
            sequential_ms,
            sequential_extrapolated_ms,
            ideal_ms,
        });
    }
    let message_rss = crate::sys::children_named(gateway.pid(), "message")
        .into_iter()
        .filter_map(crate::sys::hwm_kib)
        .max()
        .unwrap_or(0);
    fleet.close().await;
    Ok(Fanout {
        latency_ms,
        bound,
        sizes,
        connect_rate_per_s: connected as f64 / connect_time.as_secs_f64().max(f64::EPSILON),
        message_handler_max_rss_mib: message_rss as f64 / 1024.0,
    })
}
