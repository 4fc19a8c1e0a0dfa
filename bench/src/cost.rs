//! Benchmark 7, cost on paper: from the measured fan-out durations and the function's
//! configured memory, what one million `sendmessage` requests cost at a given room size.
//!
//! The prices are assumptions written down here, not fetched: the machines that run the
//! benchmark have no internet. Update them (and `PRICES_AS_OF`) when AWS changes its list.

use serde::Serialize;

/// When the prices below were taken as AWS's list prices (us-east-1, on-demand).
pub const PRICES_AS_OF: &str =
    "2025-01 (us-east-1 list prices as last known; assumed, not re-checked)";
/// Lambda: per request.
pub const LAMBDA_PER_REQUEST: f64 = 0.20 / 1e6;
/// Lambda arm64: per GB-second (first 7.5 billion GB-s a month).
pub const LAMBDA_ARM_PER_GB_S: f64 = 0.000_013_333_4;
/// Lambda x86_64: per GB-second (first 6 billion GB-s a month).
pub const LAMBDA_X86_PER_GB_S: f64 = 0.000_016_666_7;
/// API Gateway WebSocket: per message (first billion a month; 32 KB units), in and out.
pub const APIGW_PER_MESSAGE: f64 = 1.00 / 1e6;
/// API Gateway WebSocket: per connection-minute (not per message: shown for reference).
pub const APIGW_PER_CONNECTION_MINUTE: f64 = 0.25 / 1e6;
/// DynamoDB on demand: per write request unit.
pub const DYNAMODB_PER_WRU: f64 = 0.625 / 1e6;
/// DynamoDB on demand: per read request unit.
pub const DYNAMODB_PER_RRU: f64 = 0.125 / 1e6;
/// Size of one `ROOM#r / CONN#id` membership item as DynamoDB counts it (names + values,
/// a 16-character connection id), bytes.
pub const MEMBERSHIP_ITEM_BYTES: f64 = 78.0;

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
        LAMBDA_ARM_PER_GB_S
    } else {
        LAMBDA_X86_PER_GB_S
    };
    let billed_ms = duration_ms.ceil().max(1.0);
    let gb = memory_mb as f64 / 1024.0;
    let lambda = LAMBDA_PER_REQUEST + billed_ms / 1000.0 * gb * per_gb_s;
    let apigw = (1 + room_size) as f64 * APIGW_PER_MESSAGE;
    // Query: sizes summed and rounded up to 4 KB, eventually consistent (half a unit each);
    // the audit item (under 1 KB) is one write unit.
    let read_units = (room_size as f64 * MEMBERSHIP_ITEM_BYTES / 4096.0)
        .ceil()
        .max(1.0)
        * 0.5;
    let dynamodb = read_units * DYNAMODB_PER_RRU + DYNAMODB_PER_WRU;
    let million = 1e6;
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
