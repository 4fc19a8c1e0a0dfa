//! API Gateway WebSocket events in, use cases called, proxy responses out.

use std::future::Future;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Diagnostic, LambdaEvent};
use realtime_core::queued::{FanoutJob, QueuedFanout};
use realtime_core::{AppError, Caller, ConnectionId, Deadline, Messaging, Ports};
use tracing::Instrument;

/// A handler could not do its job; Lambda reports it as a failed invocation.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The event lacks a field API Gateway always sends.
    #[error("the event has no requestContext.{0}")]
    BadEvent(&'static str),
    /// A use case failed (storage).
    #[error(transparent)]
    App(#[from] AppError),
}

impl From<HandlerError> for Diagnostic {
    fn from(error: HandlerError) -> Self {
        let error_type = match error {
            HandlerError::BadEvent(_) => "BadEvent",
            HandlerError::App(AppError::Store(_)) => "StorageError",
            HandlerError::App(AppError::Client(_)) => "ClientError",
        };
        Diagnostic {
            error_type: error_type.to_owned(),
            error_message: error.to_string(),
        }
    }
}

/// Who sent the event. The user comes only from the authorizer's result, which API Gateway
/// attaches to every event of the connection: never from the message body.
pub fn caller(event: &ApiGatewayWebsocketProxyRequest) -> Result<Caller, HandlerError> {
    let context = &event.request_context;
    let connection_id = context
        .connection_id
        .clone()
        .filter(|id| !id.is_empty())
        .ok_or(HandlerError::BadEvent("connectionId"))?;
    let user = context
        .authorizer
        .fields
        .get("principalId")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    Ok(Caller {
        connection_id: ConnectionId::from(connection_id),
        request_id: context.request_id.clone().unwrap_or_default(),
        user,
    })
}

/// The span every log line of one event is written in: connection and request ids.
fn span(event: &ApiGatewayWebsocketProxyRequest, aws_request_id: &str) -> tracing::Span {
    let context = &event.request_context;
    tracing::info_span!(
        "event",
        route = context.route_key.as_deref().unwrap_or_default(),
        connection_id = context.connection_id.as_deref().unwrap_or_default(),
        request_id = context.request_id.as_deref().unwrap_or_default(),
        aws_request_id,
    )
}

/// Runs one event's work for its caller inside the event's span: what every handler shares.
async fn traced<F, Fut>(
    event: &LambdaEvent<ApiGatewayWebsocketProxyRequest>,
    work: F,
) -> Result<ApiGatewayProxyResponse, HandlerError>
where
    F: FnOnce(Caller) -> Fut,
    Fut: Future<Output = Result<ApiGatewayProxyResponse, HandlerError>>,
{
    let span = span(&event.payload, &event.context.request_id);
    async { work(caller(&event.payload)?).await }
        .instrument(span)
        .await
}

/// A 200 proxy response. On a two-way route API Gateway sends `body` back to the caller; on
/// the others it is ignored.
fn ok(body: Option<String>) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = 200;
    response.body = body.map(Body::Text);
    response
}

/// `$connect`: a 200 accepts the socket; an error rejects the upgrade.
pub async fn connect(
    ports: &Ports,
    event: LambdaEvent<ApiGatewayWebsocketProxyRequest>,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    traced(&event, |caller| async move {
        ports
            .connect(&caller)
            .await
            .inspect_err(|e| tracing::error!(error = %e, "connect failed"))?;
        tracing::info!(user = caller.user.as_deref(), "connected");
        Ok(ok(None))
    })
    .await
}

/// `$disconnect`: forget the connection (best effort by API Gateway; TTL covers the rest).
pub async fn disconnect(
    ports: &Ports,
    event: LambdaEvent<ApiGatewayWebsocketProxyRequest>,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let context = &event.payload.request_context;
    traced(&event, |caller| async move {
        ports
            .disconnect(
                &caller,
                context.disconnect_status_code,
                context.disconnect_reason.clone(),
            )
            .await
            .inspect_err(|e| tracing::error!(error = %e, "disconnect failed"))?;
        tracing::info!(status_code = context.disconnect_status_code, "disconnected");
        Ok(ok(None))
    })
    .await
}

/// Every MESSAGE route (`$default` and each action), all two-way: the caller's one reply is
/// the response body; deliveries to other connections go through @connections.
pub async fn message(
    messaging: &Messaging,
    event: LambdaEvent<ApiGatewayWebsocketProxyRequest>,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let body = event.payload.body.as_deref().unwrap_or_default();
    let deadline = deadline(event.context.deadline);
    traced(&event, |caller| async move {
        let outcome = messaging.on_message(&caller, body, deadline).await;
        emit_metrics(&outcome);
        tracing::info!(
            action = outcome.action.map(|a| a.name()),
            error = ?outcome.error(),
            size = body.len(),
            "handled"
        );
        Ok(ok(Some(outcome.frame())))
    })
    .await
}

/// A batch of queued fan-out jobs, one per SQS record, worked concurrently. A record whose
/// job failed before posting anything, or that is not a job, is reported as a batch item
/// failure: the queue delivers it again, and after its last attempt keeps it in the
/// dead-letter queue. Nothing that posted is reported: the members got it.
pub async fn fanout(
    queued: &QueuedFanout,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, HandlerError> {
    let deadline = deadline(event.context.deadline);
    let records = &event.payload.records;
    let failures = futures::future::join_all(records.iter().map(|record| async move {
        let id = record.message_id.clone().unwrap_or_default();
        let job: FanoutJob = match serde_json::from_str(record.body.as_deref().unwrap_or("")) {
            Ok(job) => job,
            Err(error) => {
                tracing::error!(message = %id, %error, "the record is not a fan-out job");
                return Some(id);
            }
        };
        match queued.run(&job, deadline).await {
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(message = %id, job = %job.key(), %error, "fan-out job failed before posting: the queue retries it");
                Some(id)
            }
        }
    }))
    .await;
    let mut response = SqsBatchResponse::default();
    for id in failures.into_iter().flatten() {
        response.add_failure(id);
    }
    Ok(response)
}

/// Prints the outcome's EMF line, if it has one, on stdout beside the logs (one write).
fn emit_metrics(outcome: &realtime_core::Outcome) {
    static FUNCTION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let function =
        FUNCTION.get_or_init(|| std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default());
    let now = chrono::Utc::now().timestamp_millis();
    if let Some(line) = crate::metrics::message_metrics(function, outcome, now) {
        println!("{line}");
    }
}

/// The invocation's deadline (Lambda's, epoch milliseconds) as an instant of this process;
/// none when the context has none (0).
fn deadline(epoch_ms: u64) -> Deadline {
    if epoch_ms == 0 {
        return Deadline::NONE;
    }
    let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
    Deadline::after(std::time::Duration::from_millis(
        epoch_ms.saturating_sub(now_ms),
    ))
}
