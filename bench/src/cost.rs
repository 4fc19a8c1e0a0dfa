//! Benchmark 7, cost on paper: from the measured fan-out durations and the function's
//! configured memory, what one million `sendmessage` requests cost at a given room size.
//!
//! The prices are assumptions written down here, not fetched: the machines that run the
//! benchmark have no internet. Update them (and `PRICES_AS_OF`) when AWS changes its list.

use anyhow::{anyhow, Result};
use serde::Serialize;

use crate::fanout::Fanout;
use crate::gateway::TemplateFacts;

/// When the prices below were taken as AWS's list prices (us-east-1, on-demand).
pub const PRICES_AS_OF: &str =
    "2025-01 (us-east-1 list prices as last known; assumed, not re-checked)";

/// AWS's list prices, USD; the page states them from `results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Prices {
    /// Lambda requests.
    pub lambda_per_million_requests: f64,
    /// Lambda arm64 (first 7.5 billion GB-s a month).
    pub lambda_arm_per_gb_s: f64,
    /// Lambda x86_64 (first 6 billion GB-s a month).
    pub lambda_x86_per_gb_s: f64,
    /// API Gateway WebSocket messages (first billion a month; 32 KB units), in and out.
    pub apigw_per_million_messages: f64,
    /// API Gateway connection minutes (per connection, not per message: for reference).
    pub apigw_per_million_connection_minutes: f64,
    /// DynamoDB on-demand write request units.
    pub dynamodb_per_million_wru: f64,
    /// DynamoDB on-demand read request units.
    pub dynamodb_per_million_rru: f64,
    /// One `ROOM#r / CONN#id` membership item as DynamoDB counts it (names + values, a
    /// 16-character connection id), bytes.
    pub membership_item_bytes: f64,
}

/// The prices assumed as of [`PRICES_AS_OF`].
pub const PRICES: Prices = Prices {
    lambda_per_million_requests: 0.20,
    lambda_arm_per_gb_s: 0.000_013_333_4,
    lambda_x86_per_gb_s: 0.000_016_666_7,
    apigw_per_million_messages: 1.00,
    apigw_per_million_connection_minutes: 0.25,
    dynamodb_per_million_wru: 0.625,
    dynamodb_per_million_rru: 0.125,
    membership_item_bytes: 78.0,
};

/// One room size.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Room size (the sender included).
    pub room_size: usize,
    /// Billed duration per request, ms (the measured time to last delivery, rounded up).
    pub billed_ms: f64,
    /// Lambda (requests + duration) per million sendmessage, USD.
    pub lambda_usd: f64,
    /// API Gateway messages (1 in + N out) per million sendmessage, USD.
    pub apigw_usd: f64,
    /// DynamoDB (room Query + audit PutItem) per million sendmessage, USD.
    pub dynamodb_usd: f64,
    /// Sum, USD per million sendmessage.
    pub total_usd: f64,
    /// Total per million delivered messages, USD.
    pub per_million_delivered_usd: f64,
}

/// The table and what it assumed.
#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    /// When the prices were assumed.
    pub prices_as_of: String,
    /// What they were.
    pub prices: Prices,
    /// Configured memory of the message function, MB.
    pub memory_mb: u64,
    /// Its architecture.
    pub architecture: String,
    /// Injected @connections latency the durations were measured at, ms.
    pub latency_ms: u64,
    /// One row per room size.
    pub rows: Vec<Row>,
}

/// Cost of one million `sendmessage` requests to a room of `room_size` taking `duration_ms`.
pub fn row(room_size: usize, duration_ms: f64, memory_mb: u64, architecture: &str) -> Row {
    let per_gb_s = if architecture == "arm64" {
        PRICES.lambda_arm_per_gb_s
    } else {
        PRICES.lambda_x86_per_gb_s
    };
    let million = 1e6;
    let billed_ms = duration_ms.ceil().max(1.0);
    let gb = memory_mb as f64 / 1024.0;
    let lambda = PRICES.lambda_per_million_requests / million + billed_ms / 1000.0 * gb * per_gb_s;
    let apigw = (1 + room_size) as f64 * PRICES.apigw_per_million_messages / million;
    // Query: sizes summed and rounded up to 4 KB, eventually consistent (half a unit each);
    // the audit item (under 1 KB) is one write unit.
    let read_units = (room_size as f64 * PRICES.membership_item_bytes / 4096.0)
        .ceil()
        .max(1.0)
        * 0.5;
    let dynamodb =
        (read_units * PRICES.dynamodb_per_million_rru + PRICES.dynamodb_per_million_wru) / million;
    let total = (lambda + apigw + dynamodb) * million;
    Row {
        room_size,
        billed_ms,
        lambda_usd: lambda * million,
        apigw_usd: apigw * million,
        dynamodb_usd: dynamodb * million,
        total_usd: total,
        per_million_delivered_usd: total / room_size.max(1) as f64,
    }
}

/// The table from the fan-out durations at room sizes 1, 100 and 1,000.
pub fn measure(facts: &TemplateFacts, fanout: Option<&Fanout>) -> Result<Cost> {
    let fanout = fanout.ok_or_else(|| anyhow!("needs the fan-out durations, which failed"))?;
    let (memory_mb, architecture) = (facts.message_memory_mb, &facts.message_architecture);
    let rows = [1usize, 100, 1000]
        .into_iter()
        .filter_map(|n| {
            let size = fanout.sizes.iter().find(|s| s.n == n)?;
            Some(row(n, size.handler_ms.median, memory_mb, architecture))
        })
        .collect();
    Ok(Cost {
        prices_as_of: PRICES_AS_OF.to_owned(),
        prices: PRICES,
        memory_mb,
        architecture: architecture.clone(),
        latency_ms: fanout.latency_ms,
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::row;

    #[test]
    fn api_gateway_dominates_large_rooms() {
        let r = row(1000, 400.0, 256, "arm64");
        // 1,001 messages per request at $1 per million.
        assert!((r.apigw_usd - 1001.0).abs() < 1e-6);
        // 400 ms at 0.25 GB on arm64 plus the request fee.
        assert!((r.lambda_usd - (0.2 + 0.4 * 0.25 * 13.3334)).abs() < 1e-3);
        assert!(r.total_usd > r.apigw_usd);
    }
}
