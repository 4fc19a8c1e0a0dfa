//! A local SQS for the handlers: `SendMessage`, `SendMessageBatch` and `GetQueueAttributes`
//! over the AWS JSON 1.0 protocol that aws-sdk-sqs speaks, on the template's queues (held in
//! [`queues`]), once the caller's signature and role allow the call. Errors (`error`) come as
//! SQS sends them to a JSON client: the shape in `__type`, and the query-era code in
//! `x-amzn-query-error`, which is what the SDK matches to its typed errors
//! (`QueueDoesNotExist` is `AWS.SimpleQueueService.NonExistentQueue` there). Receiving is for
//! Lambda's event source mappings, which read the queues directly (`functions::event_source`).

mod error;
pub mod queues;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tracing::debug;

use super::REQUEST_ID;
use crate::iam::actions::{self, Arns};
use crate::iam::sigv4::SignedRequest;
use crate::iam::{Caller, Guard};
use crate::template::MAX_MESSAGE_BYTES;
use error::SqsError;
use queues::{MessageAttribute, NewMessage, Queue, Queues};

/// How SQS's JSON 1.0 targets begin.
pub(crate) const TARGET_PREFIX: &str = "AmazonSQS.";

const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// The most entries in one `SendMessageBatch`.
const MAX_BATCH_ENTRIES: usize = 10;

/// The longest `DelaySeconds` (15 minutes).
const MAX_DELAY_SECONDS: i64 = 900;

/// The most message attributes on one message.
const MAX_ATTRIBUTES: usize = 10;

/// Every attribute name `GetQueueAttributes` knows; those a local queue has no value for are
/// left out of the answer, as SQS leaves out what is not set.
const ATTRIBUTE_NAMES: &[&str] = &[
    "All",
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesDelayed",
    "ApproximateNumberOfMessagesNotVisible",
    "ContentBasedDeduplication",
    "CreatedTimestamp",
    "DeduplicationScope",
    "DelaySeconds",
    "FifoQueue",
    "FifoThroughputLimit",
    "KmsDataKeyReusePeriodSeconds",
    "KmsMasterKeyId",
    "LastModifiedTimestamp",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "Policy",
    "QueueArn",
    "ReceiveMessageWaitTimeSeconds",
    "RedriveAllowPolicy",
    "RedrivePolicy",
    "SqsManagedSseEnabled",
    "VisibilityTimeout",
];

/// Serves one SQS request: the signature and the caller's role first, then the operation.
pub(super) fn handle(
    queues: &Queues,
    guard: &Guard,
    target: &str,
    request: &SignedRequest<'_>,
) -> Response {
    let checked = guard.authorize(request, "sqs", || {
        actions::sqs(target, request.body, &guard.arns)
    });
    let caller = match checked {
        Ok(caller) => caller,
        Err(refusal) => return SqsError::refused(refusal).into_response(),
    };
    let operation = target.strip_prefix(TARGET_PREFIX).unwrap_or_default();
    let answer = match operation {
        "SendMessage" => send_message(queues, &guard.arns, &caller, request.body),
        "SendMessageBatch" => send_message_batch(queues, &guard.arns, &caller, request.body),
        "GetQueueAttributes" => get_queue_attributes(queues, &guard.arns, request.body),
        other => Err(SqsError::new(
            StatusCode::BAD_REQUEST,
            "com.amazonaws.sqs#UnsupportedOperation",
            "AWS.SimpleQueueService.UnsupportedOperation",
            format!("the local SQS serves SendMessage, SendMessageBatch and GetQueueAttributes, not {other}: Lambda's event source mappings receive for the functions"),
        )),
    };
    match answer {
        Ok(body) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, CONTENT_TYPE.to_owned()),
                (REQUEST_ID, crate::functions::request_id()),
            ],
            body.to_string(),
        )
            .into_response(),
        Err(error) => {
            debug!(
                operation,
                code = error.code,
                "SQS refused: {}",
                error.message
            );
            error.into_response()
        }
    }
}

/// A message attribute as the JSON protocol carries it (binary values in base64).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AttributeValue {
    data_type: Option<String>,
    string_value: Option<String>,
    binary_value: Option<String>,
}

/// What `SendMessage` and each `SendMessageBatch` entry have in common.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MessageFields {
    message_body: Option<String>,
    delay_seconds: Option<i64>,
    #[serde(default)]
    message_attributes: BTreeMap<String, AttributeValue>,
    message_deduplication_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendMessage {
    queue_url: Option<String>,
    #[serde(flatten)]
    fields: MessageFields,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendMessageBatch {
    queue_url: Option<String>,
    entries: Option<Vec<BatchEntry>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchEntry {
    id: Option<String>,
    #[serde(flatten)]
    fields: MessageFields,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetQueueAttributes {
    queue_url: Option<String>,
    #[serde(default)]
    attribute_names: Vec<String>,
}

fn parse<'a, T: Deserialize<'a>>(operation: &str, body: &'a [u8]) -> Result<T, SqsError> {
    serde_json::from_slice(body).map_err(|e| SqsError::serialization(operation, &e))
}

/// The queue a `QueueUrl` names.
fn queue<'q>(queues: &'q Queues, arns: &Arns, url: Option<&str>) -> Result<&'q Queue, SqsError> {
    let url = url
        .filter(|u| !u.is_empty())
        .ok_or_else(|| SqsError::missing_parameter("QueueUrl"))?;
    let arn = arns
        .queue_of_url(url)
        .ok_or_else(|| SqsError::invalid_address(url))?;
    queues
        .by_arn(&arn)
        .map(AsRef::as_ref)
        .ok_or_else(SqsError::non_existent_queue)
}

/// `SenderId`: for a function, its role's id and the session (the function), as for an
/// assumed role; for the developer, the account.
fn sender_id(caller: &Caller, arns: &Arns) -> String {
    match &caller.function {
        Some(function) => format!("AROALOCAL:{function}"),
        None => arns.account_id.clone(),
    }
}

fn send_message(
    queues: &Queues,
    arns: &Arns,
    caller: &Caller,
    body: &[u8],
) -> Result<Value, SqsError> {
    let request: SendMessage = parse("SendMessage", body)?;
    let queue = queue(queues, arns, request.queue_url.as_deref())?;
    let message = new_message(queue, request.fields, sender_id(caller, arns))?;
    let sent = queue.send(message);
    debug!(queue = %queue.spec().name, message_id = %sent.message_id, "SendMessage");
    let mut answer = json!({ "MessageId": sent.message_id, "MD5OfMessageBody": sent.md5_of_body });
    if let (Some(md5), Some(object)) = (sent.md5_of_attributes, answer.as_object_mut()) {
        object.insert("MD5OfMessageAttributes".into(), Value::String(md5));
    }
    Ok(answer)
}

fn send_message_batch(
    queues: &Queues,
    arns: &Arns,
    caller: &Caller,
    body: &[u8],
) -> Result<Value, SqsError> {
    let request: SendMessageBatch = parse("SendMessageBatch", body)?;
    let queue = queue(queues, arns, request.queue_url.as_deref())?;
    let entries = request.entries.unwrap_or_default();
    if entries.is_empty() {
        return Err(SqsError::batch(
            "com.amazonaws.sqs#EmptyBatchRequest",
            "AWS.SimpleQueueService.EmptyBatchRequest",
            "There should be at least one SendMessageBatchRequestEntry in the request.".into(),
        ));
    }
    if entries.len() > MAX_BATCH_ENTRIES {
        return Err(SqsError::batch(
            "com.amazonaws.sqs#TooManyEntriesInBatchRequest",
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            format!(
                "Maximum number of entries per request are {MAX_BATCH_ENTRIES}. You have sent {}.",
                entries.len()
            ),
        ));
    }
    let mut ids = HashSet::new();
    for entry in &entries {
        let id = entry.id.as_deref().unwrap_or_default();
        if !valid_entry_id(id) {
            return Err(SqsError::batch(
                "com.amazonaws.sqs#InvalidBatchEntryId",
                "AWS.SimpleQueueService.InvalidBatchEntryId",
                "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.".into(),
            ));
        }
        if !ids.insert(id) {
            return Err(SqsError::batch(
                "com.amazonaws.sqs#BatchEntryIdsNotDistinct",
                "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
                format!("Id {id} repeated."),
            ));
        }
    }
    let total: usize = entries.iter().map(|e| e.fields.size()).sum();
    if total as u64 > MAX_MESSAGE_BYTES {
        return Err(SqsError::batch(
            "com.amazonaws.sqs#BatchRequestTooLong",
            "AWS.SimpleQueueService.BatchRequestTooLong",
            format!("Batch requests cannot be longer than {MAX_MESSAGE_BYTES} bytes. You have sent {total} bytes."),
        ));
    }
    let sender = sender_id(caller, arns);
    let (mut successful, mut failed) = (Vec::new(), Vec::new());
    for entry in entries {
        let id = entry.id.unwrap_or_default();
        match new_message(queue, entry.fields, sender.clone()) {
            Ok(message) => {
                let sent = queue.send(message);
                let mut result = json!({
                    "Id": id,
                    "MessageId": sent.message_id,
                    "MD5OfMessageBody": sent.md5_of_body,
                });
                if let (Some(md5), Some(object)) = (sent.md5_of_attributes, result.as_object_mut())
                {
                    object.insert("MD5OfMessageAttributes".into(), Value::String(md5));
                }
                successful.push(result);
            }
            Err(error) => failed.push(error.entry(&id)),
        }
    }
    debug!(queue = %queue.spec().name, sent = successful.len(), failed = failed.len(), "SendMessageBatch");
    Ok(json!({ "Successful": successful, "Failed": failed }))
}

fn get_queue_attributes(queues: &Queues, arns: &Arns, body: &[u8]) -> Result<Value, SqsError> {
    let request: GetQueueAttributes = parse("GetQueueAttributes", body)?;
    let queue = queue(queues, arns, request.queue_url.as_deref())?;
    if let Some(unknown) = request
        .attribute_names
        .iter()
        .find(|name| !ATTRIBUTE_NAMES.contains(&name.as_str()))
    {
        return Err(SqsError::new(
            StatusCode::BAD_REQUEST,
            "com.amazonaws.sqs#InvalidAttributeName",
            "InvalidAttributeName",
            format!("Unknown Attribute {unknown}."),
        ));
    }
    let all = request.attribute_names.iter().any(|n| n == "All");
    let wanted = |name: &str| all || request.attribute_names.iter().any(|n| n == name);
    let spec = queue.spec();
    let counts = queue.counts();
    let mut values: Vec<(&str, String)> = vec![
        ("ApproximateNumberOfMessages", counts.visible.to_string()),
        (
            "ApproximateNumberOfMessagesNotVisible",
            counts.in_flight.to_string(),
        ),
        (
            "ApproximateNumberOfMessagesDelayed",
            counts.delayed.to_string(),
        ),
        ("CreatedTimestamp", queue.created_secs().to_string()),
        ("LastModifiedTimestamp", queue.created_secs().to_string()),
        ("DelaySeconds", spec.delay.as_secs().to_string()),
        ("MaximumMessageSize", spec.max_message_bytes.to_string()),
        (
            "MessageRetentionPeriod",
            spec.retention.as_secs().to_string(),
        ),
        ("QueueArn", spec.arn.clone()),
        ("ReceiveMessageWaitTimeSeconds", "0".into()),
        (
            "VisibilityTimeout",
            spec.visibility_timeout.as_secs().to_string(),
        ),
    ];
    if let Some(redrive) = &spec.redrive {
        let target = queues
            .get(&redrive.dead_letter_queue)
            .map(|q| &q.spec().arn);
        let policy =
            json!({ "deadLetterTargetArn": target, "maxReceiveCount": redrive.max_receive_count });
        values.push(("RedrivePolicy", policy.to_string()));
    }
    let attributes: Map<String, Value> = values
        .into_iter()
        .filter(|(name, _)| wanted(name))
        .map(|(name, value)| (name.to_owned(), Value::String(value)))
        .collect();
    Ok(if attributes.is_empty() {
        json!({})
    } else {
        json!({ "Attributes": attributes })
    })
}

impl MessageFields {
    /// What the message would count toward a batch's size.
    fn size(&self) -> usize {
        self.message_body.as_ref().map_or(0, String::len)
            + self
                .message_attributes
                .iter()
                .map(|(name, a)| {
                    name.len()
                        + a.data_type.as_ref().map_or(0, String::len)
                        + a.string_value.as_ref().map_or(0, String::len)
                        + a.binary_value.as_ref().map_or(0, |b| b.len() * 3 / 4)
                })
                .sum::<usize>()
    }
}

/// A message for `queue`, checked as SQS checks it.
fn new_message(
    queue: &Queue,
    fields: MessageFields,
    sender_id: String,
) -> Result<NewMessage, SqsError> {
    let body = fields
        .message_body
        .filter(|b| !b.is_empty())
        .ok_or_else(|| SqsError::missing_parameter("MessageBody"))?;
    if let Some(c) = body.chars().find(|c| !allowed_in_body(*c)) {
        return Err(SqsError::invalid_contents(format!(
            "Invalid binary character '#x{:X}' was found in the message body, the set of allowed characters is #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
            u32::from(c)
        )));
    }
    let delay = match fields.delay_seconds {
        None => None,
        Some(seconds) if (0..=MAX_DELAY_SECONDS).contains(&seconds) => {
            Some(Duration::from_secs(seconds.unsigned_abs()))
        }
        Some(seconds) => {
            return Err(SqsError::invalid_parameter(format!(
                "Value {seconds} for parameter DelaySeconds is invalid. Reason: DelaySeconds must be >= 0 and <= {MAX_DELAY_SECONDS}."
            )))
        }
    };
    if fields.message_deduplication_id.is_some() {
        return Err(SqsError::invalid_parameter(
            "The request include parameter that is not valid for this queue type.".into(),
        ));
    }
    let attributes = message_attributes(fields.message_attributes)?;
    let message = NewMessage {
        body,
        attributes,
        delay,
        sender_id,
    };
    let max = queue.spec().max_message_bytes;
    if message.size() > max {
        return Err(SqsError::invalid_parameter(format!(
            "One or more parameters are invalid. Reason: Message must be shorter than {max} bytes."
        )));
    }
    Ok(message)
}

/// The message attributes, checked: at most ten, each with a name SQS allows and a value of
/// its data type.
fn message_attributes(
    attributes: BTreeMap<String, AttributeValue>,
) -> Result<BTreeMap<String, MessageAttribute>, SqsError> {
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(SqsError::invalid_parameter(format!(
            "Number of message attributes [{}] exceeds the allowed maximum [{MAX_ATTRIBUTES}].",
            attributes.len()
        )));
    }
    let mut out = BTreeMap::new();
    for (name, value) in attributes {
        if !valid_attribute_name(&name) {
            return Err(SqsError::invalid_parameter(format!(
                "Message (user) attribute name '{name}' is invalid: 1 to 256 of A-Z a-z 0-9 _ - ., not starting or ending with a period, with no two periods in a row, not starting with AWS. or Amazon."
            )));
        }
        let data_type = value.data_type.unwrap_or_default();
        let base = data_type.split('.').next().unwrap_or_default();
        let attribute = match base {
            "String" | "Number" => {
                let text = value.string_value.filter(|v| !v.is_empty()).ok_or_else(|| {
                    SqsError::invalid_parameter(format!(
                        "Message (user) attribute '{name}' must contain a non-empty value of type '{base}'."
                    ))
                })?;
                MessageAttribute {
                    data_type,
                    string_value: Some(text),
                    binary_value: None,
                }
            }
            "Binary" => {
                let bytes = value
                    .binary_value
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| {
                        SqsError::invalid_parameter(format!(
                            "Message (user) attribute '{name}' must contain a non-empty value of type 'Binary'."
                        ))
                    })?;
                MessageAttribute {
                    data_type,
                    string_value: None,
                    binary_value: Some(bytes),
                }
            }
            _ => {
                return Err(SqsError::invalid_parameter(format!(
                    "The type of message (user) attribute '{name}' is invalid. You must use only the following supported type prefixes: Binary, Number, String."
                )))
            }
        };
        out.insert(name, attribute);
    }
    Ok(out)
}

/// The characters SQS takes in a body: `#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD |
/// #x10000-#x10FFFF` (a Rust string holds no surrogates).
fn allowed_in_body(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// SQS's rule for a batch entry's `Id`: 1 to 80 of `A-Z a-z 0-9 - _`.
fn valid_entry_id(id: &str) -> bool {
    (1..=80).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// SQS's rule for a message attribute's name.
fn valid_attribute_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    (1..=256).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && !lower.starts_with("aws.")
        && !lower.starts_with("amazon.")
}
