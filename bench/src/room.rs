//! A room of 15,000: one `sendmessage` to a lobby of 15,000 real WebSocket clients, with the
//! @connections latency of AWS and an account throttle scaled to this machine, timed from the
//! send to the last delivery, once per fan-out tier:
//! - synchronous: the message handler posts to every member itself (64 in flight), meets the
//!   throttle (429, retried by the SDK) and its own timeout;
//! - queued: the handler enqueues one job per shard and the `fanout` function, fed by the SQS
//!   event source mapping, posts at `postsPerSecond` split over its processes.
//!
//! The bound is N / rate: no tier can deliver faster than the throttle admits.
//! The gateway runs in this process (it holds the 15,000 server sockets and counts the
//! throttle's refusals); the clients live in `bench clients` processes.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use local_gateway::quotas::{AccountRate, Quotas};
use serde::Serialize;
use serde_json::{json, Value};

use crate::gateway::{InProcess, Launch, TemplateFacts};
use crate::swarm::Swarm;

/// The sizes of the phase.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Members of the lobby (the sender included).
    pub members: usize,
    /// `bench clients` processes holding them.
    pub client_processes: usize,
    /// The emulated account throttle on @connections, calls/s.
    pub throttle_per_second: u32,
    /// Its burst.
    pub throttle_burst: u32,
    /// Injected @connections latency, ms.
    pub latency_ms: u64,
    /// `queuedFanout.maxConcurrency` of the queued tier.
    pub queued_max_concurrency: usize,
}

/// One tier's run.
#[derive(Debug, Clone, Serialize)]
pub struct Tier {
    /// `synchronous` or `queued`.
    pub tier: String,
    /// `QUEUED_FANOUT_ABOVE` given to the functions.
    pub queued_above: usize,
    /// From the send to the last delivery (wall clock across processes), ms.
    pub last_delivery_ms: f64,
    /// Members that received the message.
    pub delivered: usize,
    /// Delivered / members.
    pub delivered_share: f64,
    /// Time to the last delivery / (N / rate).
    pub vs_bound: f64,
    /// @connections calls the throttle refused (429 LimitExceededException).
    pub throttled_calls: Option<u64>,
    /// The sender's reply (its ack says `queued` for the queued tier).
    pub ack: Option<Value>,
    /// Connects per second while the room filled.
    pub connect_rate_per_s: f64,
}

/// The whole phase.
#[derive(Debug, Clone, Serialize)]
pub struct Room {
    /// Sizes and settings.
    pub plan: Plan,
    /// N / rate, ms.
    pub bound_ms: f64,
    /// Synchronous, then queued.
    pub tiers: Vec<Tier>,
}

/// A copy of the template whose fan-out event source mapping runs at most `concurrency`
/// batches at once (`queuedFanout.maxConcurrency`), the one setting of the stage that is not
/// an environment variable.
fn template_with_concurrency(template: &Path, dir: &Path, concurrency: usize) -> Result<PathBuf> {
    let bytes = std::fs::read(template).with_context(|| format!("read {}", template.display()))?;
    let mut value: Value = serde_json::from_slice(&bytes).context("parse the template")?;
    let mut found = false;
    if let Some(resources) = value.get_mut("Resources").and_then(Value::as_object_mut) {
        for resource in resources.values_mut() {
            if resource.get("Type").and_then(Value::as_str)
                == Some("AWS::Lambda::EventSourceMapping")
            {
                resource["Properties"]["ScalingConfig"] =
                    json!({"MaximumConcurrency": concurrency});
                found = true;
            }
        }
    }
    if !found {
        bail!("the template has no event source mapping: no queued fan-out tier to measure");
    }
    let path = dir.join("template-room.json");
    std::fs::write(&path, serde_json::to_vec(&value)?)
        .with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

/// Runs both tiers, each with a fresh gateway and fresh tables.
pub async fn measure(
    launch: &Launch,
    facts: &TemplateFacts,
    db: &aws_sdk_dynamodb::Client,
    plan: &Plan,
) -> Result<Room> {
    let template = template_with_concurrency(
        &launch.template,
        &launch.log_dir,
        plan.queued_max_concurrency,
    )?;
    let bound_ms = plan.members as f64 / f64::from(plan.throttle_per_second) * 1000.0;
    let per_process =
        (plan.throttle_per_second as usize / plan.queued_max_concurrency.max(1)).max(1);
    let mut tiers = Vec::new();
    // Above the room: the message handler posts itself. At 1,000: the queue takes it.
    for (tier, above) in [("synchronous", plan.members * 10), ("queued", 1000)] {
        let env: BTreeMap<String, String> = [
            ("QUEUED_FANOUT_ABOVE", above.to_string()),
            ("FANOUT_POSTS_PER_SECOND", per_process.to_string()),
            ("RUST_LOG", "warn".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        eprintln!("bench: room of {}: {tier} tier", plan.members);
        let result = run_tier(launch, facts, db, plan, &template, env, bound_ms).await;
        tiers.push(Tier {
            tier: tier.to_owned(),
            queued_above: above,
            ..result.with_context(|| format!("the {tier} tier"))?
        });
    }
    Ok(Room {
        plan: plan.clone(),
        bound_ms,
        tiers,
    })
}

async fn run_tier(
    launch: &Launch,
    facts: &TemplateFacts,
    db: &aws_sdk_dynamodb::Client,
    plan: &Plan,
    template: &Path,
    env: BTreeMap<String, String>,
    bound_ms: f64,
) -> Result<Tier> {
    crate::ddb::drop_all_tables(db).await?;
    let quotas = Quotas {
        connections_api: Some(AccountRate {
            per_second: NonZeroU32::new(plan.throttle_per_second).context("a zero throttle")?,
            burst: NonZeroU32::new(plan.throttle_burst).context("a zero burst")?,
        }),
        // The room fills as fast as the handlers allow: the connect quota is the storm's subject.
        ..Quotas::relaxed()
    };
    let gateway = crate::gateway::in_process(
        launch,
        InProcess {
            template: template.to_owned(),
            latency: Duration::from_millis(plan.latency_ms),
            quotas,
            env,
        },
    )
    .await?;
    let result = async {
        let target = crate::gateway::target(gateway.websocket_url(), facts)?;
        let marker = format!("room-{}", crate::swarm::now_us());
        let started = Instant::now();
        let mut swarm = Swarm::start(
            &target,
            plan.members,
            plan.client_processes,
            &marker,
            Duration::from_secs(300),
        )
        .await?;
        let connect_rate_per_s = swarm.len() as f64 / started.elapsed().as_secs_f64();
        let lobby =
            crate::ddb::wait_for_lobby(db, &facts.connections_table, plan.members, Duration::from_secs(60)).await?;
        if lobby != plan.members {
            swarm.close().await;
            bail!("the lobby has {lobby} members, expected {}", plan.members);
        }
        let throttled_before = gateway.refusals().connections_calls;
        let frame = json!({"action": "sendmessage", "text": marker, "ref": "room"});
        // Three bounds, or 30 s: the synchronous tier stops at its timeout well before.
        let timeout = Duration::from_secs_f64((bound_ms * 3.0 / 1000.0).max(30.0));
        let delivery = swarm.deliver(&frame, timeout).await;
        let throttled_calls = gateway.refusals().connections_calls - throttled_before;
        swarm.close().await;
        let delivery = delivery?;
        let last_delivery_ms = if delivery.last_us > delivery.sent_us {
            (delivery.last_us - delivery.sent_us) as f64 / 1000.0
        } else {
            0.0
        };
        eprintln!(
            "bench: delivered {}/{} in {last_delivery_ms:.0} ms (bound {bound_ms:.0} ms), {throttled_calls} throttled, ack {:?}",
            delivery.delivered, plan.members, delivery.ack
        );
        Ok(Tier {
            tier: String::new(),
            queued_above: 0,
            last_delivery_ms,
            delivered: delivery.delivered,
            delivered_share: delivery.delivered as f64 / plan.members as f64,
            vs_bound: last_delivery_ms / bound_ms,
            throttled_calls: Some(throttled_calls),
            ack: delivery.ack,
            connect_rate_per_s,
        })
    }
    .await;
    gateway.shutdown().await;
    result
}
