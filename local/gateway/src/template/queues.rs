//! The template's SQS queues and the Lambda event source mappings that poll them, read with
//! the bounds SQS and Lambda put on each setting, so that a stack AWS would refuse fails to
//! start locally too, naming the resource.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tracing::warn;

use super::intrinsics::Resolver;
use super::model::{EventSourceMappingSpec, FunctionSpec, QueueSpec, RedriveSpec};
use super::source::Template;
use super::TemplateError;

const QUEUE: &str = "AWS::SQS::Queue";
const MAPPING: &str = "AWS::Lambda::EventSourceMapping";
const FUNCTION: &str = "AWS::Lambda::Function";

/// The largest message SQS takes, and the default `MaximumMessageSize`: 1 MiB since 2025 (the
/// SQS API reference, as aws-sdk-sqs 1.119 carries it: "The maximum is 1,048,576 bytes").
pub const MAX_MESSAGE_BYTES: u64 = 1_048_576;

/// `VisibilityTimeout`: default and bounds (seconds).
const VISIBILITY_TIMEOUT: (u64, RangeInclusive<u64>) = (30, 0..=43_200);
/// `MessageRetentionPeriod`: 4 days by default, 1 minute to 14 days (seconds).
const RETENTION: (u64, RangeInclusive<u64>) = (345_600, 60..=1_209_600);
/// `DelaySeconds`: default and bounds (seconds).
const DELAY: (u64, RangeInclusive<u64>) = (0, 0..=900);
/// `MaximumMessageSize`: default and bounds (bytes).
const MESSAGE_SIZE: (u64, RangeInclusive<u64>) = (MAX_MESSAGE_BYTES, 1_024..=MAX_MESSAGE_BYTES);
/// `maxReceiveCount` of a redrive policy.
const MAX_RECEIVE_COUNT: RangeInclusive<u64> = 1..=1_000;
/// `BatchSize` of an SQS mapping: default and bounds.
const BATCH_SIZE: (u64, RangeInclusive<u64>) = (10, 1..=10_000);
/// `MaximumBatchingWindowInSeconds`: default and bounds (seconds).
const BATCHING_WINDOW: (u64, RangeInclusive<u64>) = (0, 0..=300);
/// `ScalingConfig.MaximumConcurrency`.
const MAX_CONCURRENCY: RangeInclusive<u64> = 2..=1_000;
/// The one `FunctionResponseTypes` value Lambda knows.
const REPORT_BATCH_ITEM_FAILURES: &str = "ReportBatchItemFailures";

impl Template {
    /// Every queue, each setting checked against SQS's bounds and its redrive policy's
    /// dead-letter queue found among the template's queues.
    pub(super) fn queues(&self, resolver: &Resolver<'_>) -> Result<Vec<QueueSpec>, TemplateError> {
        let mut queues: Vec<QueueSpec> = Vec::new();
        let mut redrives = Vec::new();
        for (id, queue) in self.of_type(QUEUE) {
            let properties = &queue.properties;
            if self.flag(resolver, id, properties, "FifoQueue", false)? {
                return Err(self.resource_error(
                    id,
                    "FIFO queues are not emulated locally, only standard queues",
                ));
            }
            let name = resolver
                .name(id)
                .map_err(|source| self.resolve_error(id, "QueueName", source))?;
            if !valid_queue_name(&name) {
                return Err(self.resource_error(
                    id,
                    format!("QueueName {name:?} is not a queue name: 1 to 80 of A-Z a-z 0-9 - _"),
                ));
            }
            if let Some(other) = queues.iter().find(|q| q.name == name) {
                return Err(self.resource_error(
                    id,
                    format!(
                        "QueueName {name:?} is also the name of {}",
                        other.logical_id
                    ),
                ));
            }
            let url = resolver
                .physical_name(id)
                .map_err(|source| self.resolve_error(id, "QueueName", source))?;
            let arn = resolver
                .resolve_string(&json!({ "Fn::GetAtt": [id, "Arn"] }))
                .map_err(|source| self.resolve_error(id, "Arn", source))?;
            let number = |property: &str, (default, range): (u64, RangeInclusive<u64>)| {
                let value = properties.get(property);
                self.whole_number(resolver, id, property, value, Some(default), range)
            };
            let visibility_timeout = number("VisibilityTimeout", VISIBILITY_TIMEOUT)?;
            let retention = number("MessageRetentionPeriod", RETENTION)?;
            let delay = number("DelaySeconds", DELAY)?;
            let max_message_bytes = number("MaximumMessageSize", MESSAGE_SIZE)?;
            if let Some(policy) = properties.get("RedrivePolicy") {
                redrives.push((queues.len(), id, policy));
            }
            queues.push(QueueSpec {
                logical_id: id.clone(),
                name,
                url,
                arn,
                visibility_timeout: Duration::from_secs(visibility_timeout),
                retention: Duration::from_secs(retention),
                delay: Duration::from_secs(delay),
                // At most 1 MiB: it fits.
                max_message_bytes: usize::try_from(max_message_bytes).unwrap_or(usize::MAX),
                redrive: None,
            });
        }
        // Once every queue's ARN is known: a dead-letter queue may come later in the template.
        for (index, id, policy) in redrives {
            let redrive = self.redrive(resolver, id, policy, &queues)?;
            if let Some(queue) = queues.get_mut(index) {
                queue.redrive = Some(redrive);
            }
        }
        Ok(queues)
    }

    /// A `RedrivePolicy`: an object, or the same as a JSON string (CloudFormation takes both).
    fn redrive(
        &self,
        resolver: &Resolver<'_>,
        id: &str,
        policy: &Value,
        queues: &[QueueSpec],
    ) -> Result<RedriveSpec, TemplateError> {
        let resolved = resolver
            .resolve(policy)
            .map_err(|source| self.resolve_error(id, "RedrivePolicy", source))?;
        let policy = match resolved {
            Value::String(text) => serde_json::from_str(&text).unwrap_or(Value::Null),
            other => other,
        };
        let Value::Object(policy) = policy else {
            return Err(self.resource_error(
                id,
                "RedrivePolicy must be an object with deadLetterTargetArn and maxReceiveCount",
            ));
        };
        let target = policy
            .get("deadLetterTargetArn")
            .and_then(Value::as_str)
            .ok_or_else(|| self.resource_error(id, "RedrivePolicy has no deadLetterTargetArn"))?;
        let dead_letter = queues.iter().find(|q| q.arn == target).ok_or_else(|| {
            self.resource_error(
                id,
                format!("RedrivePolicy.deadLetterTargetArn {target} is not a queue of the template (the local SQS has only those)"),
            )
        })?;
        let max_receive_count = self.whole_number(
            resolver,
            id,
            "RedrivePolicy.maxReceiveCount",
            policy.get("maxReceiveCount"),
            None,
            MAX_RECEIVE_COUNT,
        )?;
        Ok(RedriveSpec {
            dead_letter_queue: dead_letter.logical_id.clone(),
            // At most 1,000: it fits.
            max_receive_count: u32::try_from(max_receive_count).unwrap_or(u32::MAX),
        })
    }

    /// Every event source mapping that reads one of `queues`; the functions they invoke join
    /// `functions`. Mappings of other sources (streams, Kafka, MQ) are left out, said once.
    pub(super) fn event_source_mappings(
        &self,
        queues: &[QueueSpec],
        resolver: &Resolver<'_>,
        functions: &mut BTreeMap<String, FunctionSpec>,
    ) -> Result<Vec<EventSourceMappingSpec>, TemplateError> {
        let mut mappings = Vec::new();
        for (id, mapping) in self.of_type(MAPPING) {
            let properties = &mapping.properties;
            let Some(queue) = self.mapped_queue(resolver, properties, queues) else {
                warn!("event source mapping {id} does not read an SQS queue of the template: it is not emulated locally");
                continue;
            };
            let function = self.mapped_function(resolver, id, properties.get("FunctionName"))?;
            self.add_function(&function, resolver, functions)?;
            let number = |property: &str, (default, range): (u64, RangeInclusive<u64>)| {
                let value = properties.get(property);
                self.whole_number(resolver, id, property, value, Some(default), range)
            };
            let batch_size = number("BatchSize", BATCH_SIZE)?;
            let window = number("MaximumBatchingWindowInSeconds", BATCHING_WINDOW)?;
            if batch_size > 10 && window == 0 {
                return Err(self.resource_error(
                    id,
                    format!("BatchSize {batch_size} is over 10: Lambda then needs a MaximumBatchingWindowInSeconds of at least 1"),
                ));
            }
            let max_concurrency = match properties.get("ScalingConfig") {
                None => None,
                Some(config) => {
                    let config = resolver
                        .resolve(config)
                        .map_err(|source| self.resolve_error(id, "ScalingConfig", source))?;
                    match config.get("MaximumConcurrency") {
                        None => None,
                        Some(value) => Some(self.whole_number(
                            resolver,
                            id,
                            "ScalingConfig.MaximumConcurrency",
                            Some(value),
                            None,
                            MAX_CONCURRENCY,
                        )?),
                    }
                }
            };
            let report_batch_item_failures = self.response_types(resolver, id, properties)?;
            let enabled = self.flag(resolver, id, properties, "Enabled", true)?;
            if properties.contains_key("FilterCriteria") {
                warn!("event source mapping {id}: FilterCriteria is not applied locally: every message reaches the function");
            }
            // Lambda refuses a mapping whose messages could reappear while the function still
            // works on them.
            if let Some(spec) = functions.get(&function) {
                let window = Duration::from_secs(window);
                if queue.visibility_timeout < spec.timeout + window {
                    // Allowed, but the window counts too: a record taken at its start is hidden
                    // for no more than the visibility timeout.
                    warn!("event source mapping {id}: VisibilityTimeout of {} ({} s) is under the function's timeout plus the batching window ({} s): records may come back while their batch still runs (AWS advises 6 times the timeout plus the window)", queue.logical_id, queue.visibility_timeout.as_secs(), (spec.timeout + window).as_secs());
                }
                if queue.visibility_timeout < spec.timeout {
                    return Err(self.resource_error(
                        id,
                        format!(
                            "Queue visibility timeout: {} seconds is less than Function timeout: {} seconds (of {}): Lambda refuses this mapping",
                            queue.visibility_timeout.as_secs(),
                            spec.timeout.as_secs(),
                            queue.logical_id
                        ),
                    ));
                }
            }
            mappings.push(EventSourceMappingSpec {
                logical_id: id.clone(),
                queue: queue.logical_id.clone(),
                function,
                // At most 10,000 and 1,000: they fit.
                batch_size: usize::try_from(batch_size).unwrap_or(usize::MAX),
                batching_window: Duration::from_secs(window),
                max_concurrency: max_concurrency.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
                report_batch_item_failures,
                enabled,
            });
        }
        Ok(mappings)
    }

    /// The queue an `EventSourceArn` names: by reference, else by the ARN it resolves to.
    fn mapped_queue<'q>(
        &self,
        resolver: &Resolver<'_>,
        properties: &Map<String, Value>,
        queues: &'q [QueueSpec],
    ) -> Option<&'q QueueSpec> {
        let source = properties.get("EventSourceArn")?;
        match self.find_reference(source, |kind| kind == QUEUE) {
            Some(id) => queues.iter().find(|q| q.logical_id == id),
            // Another source's ARN may hold what has no local value: it is not ours either way.
            None => {
                let arn = resolver.resolve_string(source).ok()?;
                queues.iter().find(|q| q.arn == arn)
            }
        }
    }

    /// The function a `FunctionName` names: by reference, else by its name or ARN (with or
    /// without a version or alias).
    fn mapped_function(
        &self,
        resolver: &Resolver<'_>,
        id: &str,
        value: Option<&Value>,
    ) -> Result<String, TemplateError> {
        let value = value.ok_or_else(|| self.resource_error(id, "no FunctionName"))?;
        if let Some(function) = self.find_reference(value, |kind| kind == FUNCTION) {
            return Ok(function);
        }
        let text = resolver
            .resolve_string(value)
            .map_err(|source| self.resolve_error(id, "FunctionName", source))?;
        self.of_type(FUNCTION)
            .find(|(function, _)| {
                resolver.name(function).is_ok_and(|name| {
                    let arn = resolver.function_arn(&name);
                    text == name || text == arn || text.starts_with(&format!("{arn}:"))
                })
            })
            .map(|(function, _)| function.clone())
            .ok_or_else(|| {
                self.resource_error(
                    id,
                    format!("FunctionName {text:?} is not a function of the template: only those run locally"),
                )
            })
    }

    /// Whether `FunctionResponseTypes` asks for `ReportBatchItemFailures`.
    fn response_types(
        &self,
        resolver: &Resolver<'_>,
        id: &str,
        properties: &Map<String, Value>,
    ) -> Result<bool, TemplateError> {
        let Some(value) = properties.get("FunctionResponseTypes") else {
            return Ok(false);
        };
        let resolved = resolver
            .resolve(value)
            .map_err(|source| self.resolve_error(id, "FunctionResponseTypes", source))?;
        let Value::Array(types) = resolved else {
            return Err(self.resource_error(id, "FunctionResponseTypes must be a list"));
        };
        let mut report = false;
        for kind in &types {
            match kind.as_str() {
                Some(REPORT_BATCH_ITEM_FAILURES) => report = true,
                _ => {
                    return Err(self.resource_error(
                        id,
                        format!("FunctionResponseTypes holds {kind}: the only type is {REPORT_BATCH_ITEM_FAILURES:?}"),
                    ))
                }
            }
        }
        Ok(report)
    }

    /// The whole number at `property` (a number, or a string of one: CloudFormation takes
    /// both), `default` when absent (`None`: it must be there), refused outside `range`.
    fn whole_number(
        &self,
        resolver: &Resolver<'_>,
        id: &str,
        property: &str,
        value: Option<&Value>,
        default: Option<u64>,
        range: RangeInclusive<u64>,
    ) -> Result<u64, TemplateError> {
        let text = match value {
            Some(value) => resolver
                .resolve_string(value)
                .map_err(|source| self.resolve_error(id, property, source))?,
            None => String::new(),
        };
        // `Ref: AWS::NoValue` leaves the property out, as absent.
        if text.is_empty() {
            return default.ok_or_else(|| self.resource_error(id, format!("no {property}")));
        }
        match text.trim().parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(self.resource_error(
                id,
                format!(
                    "{property} must be a whole number from {} to {}, not {text}",
                    range.start(),
                    range.end()
                ),
            )),
        }
    }

    /// A boolean property (`true`, or the string `"true"`), `default` when absent.
    fn flag(
        &self,
        resolver: &Resolver<'_>,
        id: &str,
        properties: &Map<String, Value>,
        property: &str,
        default: bool,
    ) -> Result<bool, TemplateError> {
        let Some(value) = properties.get(property) else {
            return Ok(default);
        };
        let text = resolver
            .resolve_string(value)
            .map_err(|source| self.resolve_error(id, property, source))?;
        match text.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            "" => Ok(default),
            _ => {
                Err(self
                    .resource_error(id, format!("{property} must be true or false, not {text}")))
            }
        }
    }
}

/// SQS's rule for a standard queue's name: 1 to 80 of `A-Z a-z 0-9 - _`.
fn valid_queue_name(name: &str) -> bool {
    (1..=80).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
