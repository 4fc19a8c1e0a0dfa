//! Benchmark 4, capacity: N concurrent idle connections to a fresh gateway; the gateway's
//! resident memory per connection and the rate of connects through `$connect`.

use std::time::Duration;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::clients::{self, Target};
use crate::gateway::Gateway;
use crate::stats::Summary;

/// The result.
#[derive(Debug, Clone, Serialize)]
pub struct Capacity {
    /// Connections held open at once.
    pub connections: usize,
    /// Upgrades in flight while connecting.
    pub parallel: usize,
    /// Gateway RSS before (after a warm-up), KiB.
    pub rss_before_kib: u64,
    /// Gateway RSS with every connection open, KiB.
    pub rss_after_kib: u64,
    /// (after - before) / connections, bytes.
    pub bytes_per_connection: f64,
    /// Connections per second through `$connect`.
    pub connects_per_s: f64,
    /// Each upgrade's duration (incl. `$connect`), ms.
    pub connect_ms: Summary,
    /// Connections counted open in the lobby (DynamoDB) at the end.
    pub lobby_members: usize,
    /// The floor: the raw echo server (same library and buffer settings, no gateway state)
    /// holding as many idle connections, bytes each.
    pub raw_echo_bytes_per_connection: Option<f64>,
}

/// Opens `n` connections and holds them while measuring; returns them still open, so that
/// the caller closes them after stopping the gateway (10,000 `$disconnect`s are not measured).
pub async fn measure(
    gateway: &Gateway,
    target: &Target,
    db: &aws_sdk_dynamodb::Client,
    connections_table: &str,
    n: usize,
    parallel: usize,
) -> Result<(Capacity, Vec<clients::Ws>)> {
    // Warm-up: handler processes started, the allocator and runtime past their first growth.
    let (warm, _, _) = clients::connect_many(target, 200, parallel).await?;
    for mut ws in warm {
        let _ = ws.close(None).await;
    }
    crate::ddb::wait_for_lobby(db, connections_table, 0, Duration::from_secs(30)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = gateway.rss_kib()?;

    let (sockets, times, took) = clients::connect_many(target, n, parallel).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = gateway.rss_kib()?;
    let lobby = crate::ddb::wait_for_lobby(db, connections_table, n, Duration::ZERO).await?;
    if sockets.len() != n {
        bail!("only {} of {n} connections open", sockets.len());
    }
    let result = Capacity {
        connections: n,
        parallel,
        rss_before_kib: before,
        rss_after_kib: after,
        bytes_per_connection: (after.saturating_sub(before) as f64 * 1024.0) / n as f64,
        connects_per_s: n as f64 / took.as_secs_f64().max(f64::EPSILON),
        connect_ms: Summary::of(
            &times
                .iter()
                .map(|t| t.as_secs_f64() * 1000.0)
                .collect::<Vec<_>>(),
        ),
        lobby_members: lobby,
        raw_echo_bytes_per_connection: None,
    };
    eprintln!(
        "bench: capacity: {n} connections, {:.0} B each, {:.0} connects/s",
        result.bytes_per_connection, result.connects_per_s
    );
    Ok((result, sockets))
}

/// The same measurement against the raw echo server: what the WebSocket library, the HTTP
/// server and one task per connection cost without anything of the gateway's own.
pub async fn floor(n: usize, parallel: usize) -> Result<f64> {
    let echo = crate::overhead::EchoProcess::start().await?;
    let result = async {
        let pid = echo
            .pid()
            .ok_or_else(|| anyhow::anyhow!("the echo server exited"))?;
        let rss = || crate::sys::rss_kib(pid).ok_or_else(|| anyhow::anyhow!("no /proc/{pid}"));
        let target = Target::plain(echo.url.clone());
        let (warm, _, _) = clients::connect_many(&target, 200, parallel).await?;
        for mut ws in warm {
            let _ = ws.close(None).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = rss()?;
        let (sockets, _, _) = clients::connect_many(&target, n, parallel).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = rss()?;
        drop(sockets);
        let each = after.saturating_sub(before) as f64 * 1024.0 / n as f64;
        eprintln!("bench: capacity floor: raw echo server, {n} connections, {each:.0} B each");
        Ok(each)
    }
    .await;
    echo.stop().await;
    result
}
