//! The Lambda Runtime API one handler process polls: `next`, then `response` or `error`.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Outcome, MAX_RESPONSE_BYTES};

/// One invocation handed to a process.
pub(super) struct Job {
    pub(super) request_id: String,
    pub(super) event: Bytes,
    pub(super) deadline_ms: i64,
    pub(super) reply: oneshot::Sender<Outcome>,
}

pub(super) struct Pending {
    request_id: String,
    reply: oneshot::Sender<Outcome>,
}

/// The endpoint of one process: its queue of one job, and the job it is working on.
pub(super) struct RuntimeApi {
    /// Cancelled when the process reports an init error: Lambda discards such an environment.
    pub(super) kill: CancellationToken,
    pub(super) function: String,
    pub(super) arn: String,
    pub(super) jobs: tokio::sync::Mutex<mpsc::Receiver<Job>>,
    pub(super) current: Mutex<Option<Pending>>,
}

pub(super) async fn serve_runtime_api(listener: TcpListener, api: Arc<RuntimeApi>) {
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
        .route(
            "/2018-06-01/runtime/invocation/{request_id}/response",
            post(invocation_response),
        )
        .route(
            "/2018-06-01/runtime/invocation/{request_id}/error",
            post(invocation_error),
        )
        .route("/2018-06-01/runtime/init/error", post(init_error))
        // Lambda takes responses up to 6 MB; axum's default (2 MB) would fail a healthy
        // handler's larger answer. One byte more, so that an oversized one is seen as such.
        .layer(DefaultBodyLimit::max(MAX_RESPONSE_BYTES + 1))
        .with_state(api);
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    if let Err(error) = axum::serve(listener, app).await {
        warn!("runtime API server stopped: {error}");
    }
}

async fn next_invocation(State(api): State<Arc<RuntimeApi>>) -> Response {
    let mut jobs = api.jobs.lock().await;
    let Some(job) = jobs.recv().await else {
        return StatusCode::GONE.into_response();
    };
    // No await between taking the job and recording it: a dropped request cannot lose it.
    *api.current
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Pending {
        request_id: job.request_id.clone(),
        reply: job.reply,
    });
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set("lambda-runtime-aws-request-id", &job.request_id);
    set("lambda-runtime-deadline-ms", &job.deadline_ms.to_string());
    set("lambda-runtime-invoked-function-arn", &api.arn);
    set(
        "lambda-runtime-trace-id",
        &format!("{};Sampled=0", crate::events::trace_id()),
    );
    set("content-type", "application/json");
    (headers, job.event).into_response()
}

fn take_pending(api: &RuntimeApi, request_id: &str) -> Option<Pending> {
    let mut current = api
        .current
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if current.as_ref().is_some_and(|p| p.request_id == request_id) {
        current.take()
    } else {
        None
    }
}

async fn invocation_response(
    State(api): State<Arc<RuntimeApi>>,
    UrlPath(request_id): UrlPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(pending) = take_pending(&api, &request_id) else {
        return runtime_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestID",
            "no such invocation in progress",
        );
    };
    let body = body.ok().filter(|body| body.len() <= MAX_RESPONSE_BYTES);
    let Some(body) = body else {
        let _ = pending.reply.send(Outcome::Error {
            error_type: "Function.ResponseSizeTooLarge".into(),
            message: "the response is over Lambda's 6 MB limit".into(),
        });
        return runtime_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "response over 6 MB",
        );
    };
    let _ = pending.reply.send(Outcome::Response(body));
    (StatusCode::ACCEPTED, r#"{"status":"OK"}"#).into_response()
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ErrorReport {
    #[serde(default)]
    error_message: String,
    #[serde(default)]
    error_type: String,
}

async fn invocation_error(
    State(api): State<Arc<RuntimeApi>>,
    UrlPath(request_id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(pending) = take_pending(&api, &request_id) else {
        return runtime_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestID",
            "no such invocation in progress",
        );
    };
    let report: ErrorReport = serde_json::from_slice(&body).unwrap_or_default();
    let error_type = if report.error_type.is_empty() {
        headers
            .get("lambda-runtime-function-error-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("Unhandled")
            .to_owned()
    } else {
        report.error_type
    };
    info!(function = %api.function, %request_id, "handler returned an error: {error_type}: {}", report.error_message);
    let _ = pending.reply.send(Outcome::Error {
        error_type,
        message: report.error_message,
    });
    (StatusCode::ACCEPTED, r#"{"status":"OK"}"#).into_response()
}

async fn init_error(State(api): State<Arc<RuntimeApi>>, body: Bytes) -> Response {
    let report: ErrorReport = serde_json::from_slice(&body).unwrap_or_default();
    warn!(function = %api.function, "handler failed to initialize: {}: {}", report.error_type, report.error_message);
    // Lambda fails the pending invocation and starts over with a new environment.
    api.kill.cancel();
    (StatusCode::ACCEPTED, r#"{"status":"OK"}"#).into_response()
}

fn runtime_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    let body = serde_json::json!({ "errorMessage": message, "errorType": error_type }).to_string();
    (status, body).into_response()
}
