//! Connect storm: clients join the lobby at API Gateway's default new-connection rate
//! (500/s, enforced by the gateway) for about 10 s, and the gateway's per-partition report
//! gives the hottest DynamoDB key's peak write units per second. Run twice in the same run,
//! with the lobby's membership sharded (`lobby=8`, the stack's default) and unsharded
//! (`lobby=1`), so that the figure is a ratio against its comparison.
//! The gateway runs in this process: its partition report is an API, not a log line.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use local_gateway::quotas::Quotas;
use serde::Serialize;

use crate::clients::Ws;
use crate::gateway::{InProcess, Launch, TemplateFacts};

/// The sizes of the phase.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Connects attempted per second.
    pub rate_per_s: u32,
    /// For how long, s.
    pub seconds: u64,
}

/// One layout's storm.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// `ROOM_SHARDS` given to the functions.
    pub room_shards: String,
    /// Connects attempted.
    pub attempted: usize,
    /// Connects that opened.
    pub connected: usize,
    /// Upgrades the new-connection quota refused (429).
    pub refused_by_quota: u64,
    /// Connects opened per second, over the storm.
    pub connected_per_s: f64,
    /// The hottest partition key (by peak write units), `table key`.
    pub hottest_key: String,
    /// Its peak write units per second.
    pub hottest_wcu: f64,
    /// That peak scaled to the planned rate, when the handlers opened fewer a second: each
    /// connect writes the same units to its key, so a key's units grow with the rate.
    pub hottest_wcu_at_rate: f64,
    /// The hottest key of the lobby's membership (`ROOM#lobby...`).
    pub hottest_lobby_key: String,
    /// Its peak write units per second.
    pub hottest_lobby_wcu: f64,
    /// Every key's peak over 10 WCU/s, hottest first: `(table key, WCU/s)`.
    pub hot_keys: Vec<(String, f64)>,
}

/// Both layouts.
#[derive(Debug, Clone, Serialize)]
pub struct Storm {
    /// Sizes.
    pub plan: Plan,
    /// Sharded, then unsharded.
    pub runs: Vec<Run>,
}

/// Both storms, each with a fresh gateway and fresh tables.
pub async fn measure(
    launch: &Launch,
    facts: &TemplateFacts,
    db: &aws_sdk_dynamodb::Client,
    plan: &Plan,
) -> Result<Storm> {
    let mut runs = Vec::new();
    for shards in ["lobby=8", "lobby=1"] {
        crate::ddb::drop_all_tables(db).await?;
        let env: BTreeMap<String, String> = [("ROOM_SHARDS", shards), ("RUST_LOG", "warn")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let quotas = Quotas {
            // The dev stage's route throttle (50/s) would bound `$connect` first; the storm
            // studies the account's connect rate, which a busy stage raises its throttle to.
            stage_throttling: false,
            ..Quotas::api_gateway()
        };
        let gateway = crate::gateway::in_process(
            launch,
            InProcess {
                template: launch.template.clone(),
                latency: Duration::ZERO,
                quotas,
                env,
            },
        )
        .await?;
        eprintln!("bench: connect storm with ROOM_SHARDS={shards}");
        let result = storm(&gateway, facts, plan).await;
        // Read before shutdown, whose `$disconnect`s write to the same keys.
        let report = gateway.hot_partitions();
        let refused_by_quota = gateway.refusals().connects;
        let (sockets, attempted, took) = match result {
            Ok(done) => done,
            Err(error) => {
                gateway.shutdown().await;
                return Err(error);
            }
        };
        let connected = sockets.len();
        drop(sockets);
        gateway.shutdown().await;
        let mut peaks: Vec<(String, String, f64)> = report
            .partitions
            .iter()
            .map(|p| (p.table.clone(), p.key.clone(), p.write_units))
            .collect();
        peaks.sort_by(|a, b| b.2.total_cmp(&a.2));
        let name = |(table, key, _): &(String, String, f64)| format!("{table} {key}");
        let hottest = peaks.first();
        let lobby = peaks.iter().find(|(table, key, _)| {
            *table == facts.connections_table && key.starts_with("ROOM#lobby")
        });
        runs.push(Run {
            room_shards: shards.to_owned(),
            attempted,
            connected,
            refused_by_quota,
            connected_per_s: connected as f64 / took.as_secs_f64(),
            hottest_key: hottest.map(name).unwrap_or_default(),
            hottest_wcu: hottest.map_or(0.0, |p| p.2),
            hottest_wcu_at_rate: hottest.map_or(0.0, |p| p.2)
                * (f64::from(plan.rate_per_s) / (connected as f64 / took.as_secs_f64()).max(1.0))
                    .max(1.0),
            hottest_lobby_key: lobby.map(name).unwrap_or_default(),
            hottest_lobby_wcu: lobby.map_or(0.0, |p| p.2),
            hot_keys: peaks
                .iter()
                .filter(|p| p.2 >= 10.0)
                .take(12)
                .map(|p| (name(p), p.2))
                .collect(),
        });
    }
    Ok(Storm {
        plan: plan.clone(),
        runs,
    })
}

/// Opens a connection every 1/rate s for the plan's seconds, each on its own task (a slow
/// `$connect` does not delay the next); returns the sockets that opened, the attempts, and
/// how long the storm took until the last attempt finished.
async fn storm(
    gateway: &local_gateway::Gateway,
    facts: &TemplateFacts,
    plan: &Plan,
) -> Result<(Vec<Ws>, usize, Duration)> {
    let target = crate::gateway::target(gateway.websocket_url(), facts)?;
    let attempts = (u64::from(plan.rate_per_s) * plan.seconds) as usize;
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(
        1.0 / f64::from(plan.rate_per_s.max(1)),
    ));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(attempts);
    for _ in 0..attempts {
        ticks.tick().await;
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            crate::clients::connect(&target).await
        }));
    }
    let mut sockets = Vec::with_capacity(attempts);
    for task in tasks {
        if let Ok(Ok((ws, _))) = task.await {
            sockets.push(ws);
        }
    }
    Ok((sockets, attempts, started.elapsed()))
}
