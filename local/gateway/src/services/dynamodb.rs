//! DynamoDB for the handlers: each call's signature and permissions are checked as DynamoDB
//! checks them (the per-item actions of a transaction included), then the call goes on to
//! DynamoDB Local. On the way, what it consumes on each partition key is counted
//! ([`partitions`](super::partitions)): a call past a key's limit is warned about, or refused
//! as DynamoDB refuses it. The answer comes back as DynamoDB Local gave it, but for the
//! `ConsumedCapacity` the gateway asked for on the caller's behalf, taken out again.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderName, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tracing::warn;

use super::consumption::{self, Asked, Plan};
use super::partitions::{Kind, Partitions};
use super::rewrite;
use super::{aws_json_error, ERROR_TYPE, REQUEST_ID};
use crate::iam::sigv4::SignedRequest;
use crate::iam::{actions, Guard, Refusal};

/// How DynamoDB's JSON 1.0 targets begin.
pub(crate) const TARGET_PREFIX: &str = "DynamoDB_20120810.";

const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// DynamoDB's checksum of the answer's body: wrong once the body is rewritten, so dropped then.
const CRC32: HeaderName = HeaderName::from_static("x-amz-crc32");

/// How long a call may wait for DynamoDB Local: longer than any handler's SDK timeout, so that
/// a stalled database is the handler's timeout, as on AWS, and not ours.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(60);

/// What DynamoDB says when it throttles a key of an on-demand table (with `ThrottlingReasons`),
/// and of a provisioned one.
const ON_DEMAND_THROTTLED: &str = "Throughput exceeds the current capacity of your table or \
    index. DynamoDB is automatically scaling your table or index so please try again shortly. \
    If exceptions persist, check if you have a hot key: \
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html";
const PROVISIONED_THROTTLED: &str = "The level of configured provisioned throughput for the \
    table was exceeded. Consider increasing your provisioning level with the UpdateTable API.";

/// Forwards allowed calls to DynamoDB Local over kept-alive connections.
pub(crate) struct DynamoDbProxy {
    client: Client<HttpConnector, Full<Bytes>>,
    endpoint: String,
    authority: Option<HeaderValue>,
    partitions: Arc<Partitions>,
}

impl DynamoDbProxy {
    /// A proxy to the DynamoDB at `endpoint` (`http://127.0.0.1:PORT`), counting into
    /// `partitions`.
    pub(crate) fn new(endpoint: &str, partitions: Arc<Partitions>) -> Self {
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let authority = endpoint
            .split_once("://")
            .and_then(|(_, rest)| HeaderValue::from_str(rest).ok());
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            endpoint,
            authority,
            partitions,
        }
    }

    /// Checks one call and, when allowed, forwards it (`body` is `request`'s, shared).
    pub(crate) async fn handle(
        &self,
        guard: &Guard,
        target: &str,
        request: &SignedRequest<'_>,
        body: &Bytes,
    ) -> Response {
        let checked = guard.authorize(request, "dynamodb", || {
            actions::dynamodb(target, request.body, &guard.arns)
        });
        if let Err(refusal) = checked {
            let (error_type, message) = match &refusal {
                Refusal::Signature(error) => (
                    format!("com.amazon.coral.service#{}", error.code()),
                    error.to_string(),
                ),
                Refusal::Malformed(error) => (
                    "com.amazon.coral.validate#ValidationException".to_owned(),
                    error.to_string(),
                ),
                Refusal::Denied { .. } => (
                    "com.amazon.coral.service#AccessDeniedException".to_owned(),
                    refusal.to_string(),
                ),
            };
            return aws_json_error(CONTENT_TYPE, StatusCode::BAD_REQUEST, &error_type, &message);
        }
        let operation = target.strip_prefix(TARGET_PREFIX).unwrap_or_default();
        match consumption::plan(self.partitions.scopes(), operation, body) {
            Some(plan) => self.counted(request, body, plan).await,
            // Streamed through as it comes.
            None => self.send(request, body.clone()).await.unwrap_or_else(|e| e),
        }
    }

    /// Forwards a call whose consumption is counted: admitted (or refused) on its keys first,
    /// settled with what DynamoDB Local says it consumed.
    async fn counted(
        &self,
        request: &SignedRequest<'_>,
        body: &Bytes,
        mut plan: Plan<'_>,
    ) -> Response {
        let partitions = &self.partitions;
        let step = partitions.admit(&mut plan.charges, !plan.op.is_batch());
        let release =
            |plan: &Plan<'_>| partitions.settle(step, &plan.charges, &vec![0; plan.charges.len()]);
        let mut unprocessed = None;
        let (sent, asked_here) = if plan.charges.iter().any(|c| c.refused) {
            // Only a batch runs in part; a split leaves at least one key to run.
            let split = if plan.op.is_batch() {
                rewrite::split_batch(&plan, partitions.scopes(), body)
            } else {
                None
            };
            let Some(split) = split else {
                release(&plan);
                return self.throttled(&plan);
            };
            unprocessed = Some(split.unprocessed);
            (Bytes::from(split.request), plan.asked == Asked::No)
        } else if plan.asked == Asked::No {
            match rewrite::ask_capacity(body) {
                Some(asking) => (Bytes::from(asking), true),
                None => (body.clone(), false),
            }
        } else {
            (body.clone(), false)
        };
        let answer = match self.send(request, sent).await {
            Ok(response) => read_answer(response).await,
            Err(unavailable) => Err(unavailable),
        };
        let (mut parts, answer) = match answer {
            Ok(answer) => answer,
            Err(unavailable) => {
                release(&plan);
                return unavailable;
            }
        };
        let consumed =
            consumption::consumed(&plan, partitions.scopes(), parts.status.as_u16(), &answer);
        partitions.settle(step, &plan.charges, &consumed);
        let rewritten = if !parts.status.is_success() {
            None
        } else if let Some(unprocessed) = unprocessed {
            // Items held back must reach the caller as unprocessed, or they are lost unseen.
            let Some(merged) = rewrite::merge_unprocessed(&plan, &answer, unprocessed) else {
                warn!("a batch's answer from DynamoDB Local is not an object: its throttled items cannot be handed back");
                return unavailable("the batch's answer cannot be completed");
            };
            Some(merged)
        } else if asked_here {
            rewrite::strip_capacity(&answer)
        } else {
            None
        };
        let answer = match rewritten {
            Some(rewritten) => {
                parts.headers.remove(CRC32);
                parts.headers.remove(header::CONTENT_LENGTH);
                Bytes::from(rewritten)
            }
            None => answer,
        };
        Response::from_parts(parts, Body::from(answer))
    }

    /// DynamoDB's answer to a call refused for a hot key: a throttling error naming the key's
    /// table or index, or for a transaction its cancellation with a throttling reason on the
    /// items of hot keys. A batch gets it only when every key is refused.
    fn throttled(&self, plan: &Plan<'_>) -> Response {
        let scopes = self.partitions.scopes();
        let Some(hot) = plan.charges.iter().find(|c| c.hot).or(plan.charges.first()) else {
            return unavailable("nothing to throttle");
        };
        let scope = scopes.get(hot.scope);
        let (error_type, body) = if plan.op.is_transaction() {
            let code = if scope.on_demand {
                "ThrottlingError"
            } else {
                "ProvisionedThroughputExceeded"
            };
            let message = if scope.on_demand {
                ON_DEMAND_THROTTLED
            } else {
                PROVISIONED_THROTTLED
            };
            let (reasons, codes): (Vec<Value>, Vec<&str>) = plan
                .items
                .iter()
                .map(|item| match item.map(|i| &plan.charges[i]) {
                    Some(charge) if charge.hot => (json!({"Code": code, "Message": message}), code),
                    _ => (json!({"Code": "None"}), "None"),
                })
                .unzip();
            let error_type = "com.amazonaws.dynamodb.v20120810#TransactionCanceledException";
            let body = json!({
                "__type": error_type,
                "CancellationReasons": reasons,
                "Message": format!(
                    "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
                    codes.join(", ")
                ),
            });
            (error_type.to_owned(), body)
        } else {
            let (name, message) = if scope.on_demand {
                ("ThrottlingException", ON_DEMAND_THROTTLED)
            } else {
                (
                    "ProvisionedThroughputExceededException",
                    PROVISIONED_THROTTLED,
                )
            };
            let reason = format!(
                "{}{}KeyRangeThroughputExceeded",
                if scope.index { "Index" } else { "Table" },
                match hot.kind {
                    Kind::Read => "Read",
                    Kind::Write => "Write",
                }
            );
            let error_type = format!("com.amazonaws.dynamodb.v20120810#{name}");
            // The two shapes spell the field differently (the SDK's model of each).
            let reasons_field = if scope.on_demand {
                "throttlingReasons"
            } else {
                "ThrottlingReasons"
            };
            let body = json!({
                "__type": error_type,
                "message": message,
                reasons_field: [{"reason": reason, "resource": scope.arn}],
            });
            (error_type, body)
        };
        (
            StatusCode::BAD_REQUEST,
            [
                (header::CONTENT_TYPE, CONTENT_TYPE.to_owned()),
                (ERROR_TYPE, error_type),
                (REQUEST_ID, crate::functions::request_id()),
            ],
            body.to_string(),
        )
            .into_response()
    }

    /// Sends `body` on to DynamoDB Local with the call's headers.
    async fn send(&self, request: &SignedRequest<'_>, body: Bytes) -> Result<Response, Response> {
        let mut forwarded = Request::post(format!("{}/", self.endpoint));
        if let Some(headers) = forwarded.headers_mut() {
            for (name, value) in request.headers {
                if name != header::HOST && name != header::CONTENT_LENGTH {
                    headers.append(name, value.clone());
                }
            }
            if let Some(authority) = &self.authority {
                headers.insert(header::HOST, authority.clone());
            }
        }
        let Ok(forwarded) = forwarded.body(Full::new(body)) else {
            return Err(unavailable("the request cannot be forwarded"));
        };
        match tokio::time::timeout(FORWARD_TIMEOUT, self.client.request(forwarded)).await {
            Ok(Ok(response)) => {
                let (parts, body) = response.into_parts();
                Ok(Response::from_parts(parts, Body::new(body)))
            }
            Ok(Err(error)) => {
                warn!("DynamoDB Local did not answer: {error}");
                Err(unavailable("DynamoDB Local did not answer"))
            }
            Err(_) => Err(unavailable("DynamoDB Local did not answer in time")),
        }
    }
}

/// The whole answer, read to be measured (and perhaps rewritten).
async fn read_answer(response: Response) -> Result<(axum::http::response::Parts, Bytes), Response> {
    let (parts, body) = response.into_parts();
    match tokio::time::timeout(FORWARD_TIMEOUT, axum::body::to_bytes(body, usize::MAX)).await {
        Ok(Ok(body)) => Ok((parts, body)),
        Ok(Err(error)) => {
            warn!("DynamoDB Local's answer broke off: {error}");
            Err(unavailable("DynamoDB Local's answer broke off"))
        }
        Err(_) => Err(unavailable("DynamoDB Local did not answer in time")),
    }
}

/// What the SDK retries as a transient failure, as it would a DynamoDB outage.
fn unavailable(message: &str) -> Response {
    aws_json_error(
        CONTENT_TYPE,
        StatusCode::INTERNAL_SERVER_ERROR,
        "com.amazonaws.dynamodb.v20120810#InternalServerError",
        message,
    )
}
