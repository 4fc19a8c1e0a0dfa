//! Benchmark 5, local broadcast: 500 clients, one `sendmessage` to the lobby, no injected
//! latency: the time until the last client has it.

use std::time::Duration;

use anyhow::{bail, Result};
use serde::Serialize;
use serde_json::json;

use crate::clients::{self, Fleet, Target};
use crate::stats::Summary;

/// The result.
#[derive(Debug, Clone, Serialize)]
pub struct Broadcast {
    /// Clients (all in the lobby, the sender included).
    pub clients: usize,
    /// Send to last arrival, ms, one value per round.
    pub last_arrival_ms: Summary,
    /// Send to first arrival, ms.
    pub first_arrival_ms: Summary,
}

/// Connects `clients` clients and sends `rounds` messages to the lobby from the first.
pub async fn measure(
    target: &Target,
    db: &aws_sdk_dynamodb::Client,
    connections_table: &str,
    clients: usize,
    rounds: usize,
) -> Result<Broadcast> {
    let (sockets, _, _) = clients::connect_many(target, clients, 64).await?;
    let mut fleet = Fleet::default();
    fleet.add(sockets);
    let lobby =
        crate::ddb::wait_for_lobby(db, connections_table, clients, Duration::from_secs(30)).await?;
    if lobby != clients {
        bail!("the lobby has {lobby} members, expected {clients}");
    }
    let mut last = Vec::new();
    let mut first = Vec::new();
    // One unmeasured round first: the handler process and its connections warm up.
    for round in 0..=rounds {
        let marker = format!("b{round}");
        let frame = json!({"action": "sendmessage", "text": marker});
        let (lo, hi) = fleet
            .round(&frame, &marker, clients, Duration::from_secs(60))
            .await?;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        if round > 0 {
            eprintln!("bench: broadcast to {clients}: last after {:.1} ms", ms(hi));
            last.push(ms(hi));
            first.push(ms(lo));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    fleet.close().await;
    Ok(Broadcast {
        clients,
        last_arrival_ms: Summary::of(&last),
        first_arrival_ms: Summary::of(&first),
    })
}
