//! CloudWatch metrics as log lines in the embedded metric format (EMF): a JSON line with an
//! `_aws` member becomes metrics in CloudWatch with no extra call. The message handler answers
//! storage failures with an `internal` frame and succeeds, so Lambda's own Errors metric never
//! sees them: these lines are how they reach an alarm.

use realtime_core::{ErrorCode, Outcome};
use serde_json::{json, Map, Value};

/// The namespace of the backend's own metrics.
pub const NAMESPACE: &str = "Realtime";

/// The one dimension: the function that counted (`AWS_LAMBDA_FUNCTION_NAME`).
pub const DIMENSION: &str = "FunctionName";

/// The EMF line of one handled message: `internal` errors, rate-limited requests and the
/// fan-out's counts; `None` when there is nothing to count.
pub fn message_metrics(function: &str, outcome: &Outcome, timestamp_ms: i64) -> Option<String> {
    let mut counts: Vec<(&'static str, usize)> = Vec::new();
    match outcome.error() {
        Some(ErrorCode::Internal) => counts.push(("InternalErrors", 1)),
        Some(ErrorCode::RateLimited) => counts.push(("RateLimited", 1)),
        _ => {}
    }
    if let Some(report) = &outcome.fanout {
        counts.extend([
            ("FanoutDelivered", report.delivered),
            ("FanoutGone", report.gone.len()),
            ("FanoutSkipped", report.skipped.len()),
            ("FanoutThrottled", report.throttled.len()),
            ("FanoutFailed", report.failed.len()),
            ("FanoutNotAttempted", report.not_attempted.len()),
        ]);
    }
    if counts.is_empty() {
        return None;
    }
    let definitions: Vec<Value> = counts
        .iter()
        .map(|(name, _)| json!({"Name": name, "Unit": "Count"}))
        .collect();
    let mut line = Map::new();
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[DIMENSION]],
                "Metrics": definitions,
            }],
        }),
    );
    line.insert(DIMENSION.into(), function.into());
    for (name, count) in counts {
        line.insert(name.into(), count.into());
    }
    Some(Value::Object(line).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use realtime_core::fanout::FanoutReport;
    use realtime_core::{ClientError, ConnectionId, Reply};

    fn outcome(reply: Reply, fanout: Option<FanoutReport>) -> Outcome {
        Outcome {
            action: None,
            reference: None,
            request_id: "r".into(),
            reply,
            fanout,
        }
    }

    #[test]
    fn internal_errors_and_fanouts_are_counted_in_emf() {
        let internal = outcome(Reply::error(&ClientError::internal(), "r"), None);
        let line =
            message_metrics("realtime-dev-message", &internal, 1_700_000_000_000).expect("counted");
        let value: Value = serde_json::from_str(&line).expect("one JSON line");
        assert_eq!(
            value,
            json!({
                "_aws": {"Timestamp": 1_700_000_000_000_i64, "CloudWatchMetrics": [{
                    "Namespace": "Realtime", "Dimensions": [["FunctionName"]],
                    "Metrics": [{"Name": "InternalErrors", "Unit": "Count"}]
                }]},
                "FunctionName": "realtime-dev-message",
                "InternalErrors": 1
            })
        );
        let report = FanoutReport {
            delivered: 7,
            gone: vec![ConnectionId::from("g")],
            not_attempted: vec![ConnectionId::from("n1"), ConnectionId::from("n2")],
            ..FanoutReport::default()
        };
        let fanned = outcome(Reply::Pong, Some(report));
        let value: Value =
            serde_json::from_str(&message_metrics("f", &fanned, 0).expect("counted"))
                .expect("JSON");
        assert_eq!(value["FanoutDelivered"], 7);
        assert_eq!(value["FanoutGone"], 1);
        assert_eq!(value["FanoutNotAttempted"], 2);
        assert_eq!(
            value["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .map(Vec::len),
            Some(6)
        );
        let limited = outcome(Reply::error(&ClientError::rate_limited(100), "r"), None);
        let value: Value =
            serde_json::from_str(&message_metrics("f", &limited, 0).expect("counted"))
                .expect("JSON");
        assert_eq!(value["RateLimited"], 1);
        assert_eq!(message_metrics("f", &outcome(Reply::Pong, None), 0), None);
    }
}
