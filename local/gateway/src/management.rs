//! The @connections management API at `/STAGE/@connections/{id}`: what handlers call to
//! reach clients. Errors carry `x-amzn-ErrorType`, so the AWS SDK surfaces typed errors.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderName, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::connections::PostError;
use crate::events::iso8601;
use crate::iam::sigv4::SignedRequest;
use crate::iam::{actions, Refusal};
use crate::state::Shared;
use crate::websocket::DELETED;

const ERROR_TYPE: HeaderName = HeaderName::from_static("x-amzn-errortype");

/// `POST /STAGE/@connections/{id}`: PostToConnection.
pub(crate) async fn post_to_connection(
    State(shared): State<Arc<Shared>>,
    Path((_, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let result = match shared.connections.get(&id) {
        Some(connection) => connection.post(body),
        None if body.len() > crate::connections::MAX_MESSAGE_BYTES => {
            Err(PostError::PayloadTooLarge)
        }
        None => Err(PostError::Gone),
    };
    match result {
        Ok(()) => StatusCode::OK.into_response(),
        Err(PostError::Gone) => gone(&id),
        Err(PostError::PayloadTooLarge) => aws_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLargeException",
            "Message data is over the 128 KB limit",
        ),
        Err(PostError::BufferFull) => {
            shared.connections.count_refused_post();
            aws_error(
                StatusCode::TOO_MANY_REQUESTS,
                "LimitExceededException",
                "Client side buffer is full",
            )
        }
    }
}

/// `GET /STAGE/@connections/{id}`: GetConnection.
pub(crate) async fn get_connection(
    State(shared): State<Arc<Shared>>,
    Path((_, id)): Path<(String, String)>,
) -> Response {
    match shared.connections.get(&id).filter(|c| c.is_open()) {
        Some(connection) => {
            let mut identity = serde_json::Map::new();
            identity.insert("sourceIp".into(), connection.source_ip().to_string().into());
            if let Some(agent) = connection.user_agent() {
                identity.insert("userAgent".into(), agent.into());
            }
            let body = json!({
                "connectedAt": iso8601(connection.connected_at_ms()),
                "identity": identity,
                "lastActiveAt": iso8601(connection.last_active_ms()),
            });
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
        None => gone(&id),
    }
}

/// `DELETE /STAGE/@connections/{id}`: DeleteConnection; the socket closes and `$disconnect` runs.
pub(crate) async fn delete_connection(
    State(shared): State<Arc<Shared>>,
    Path((_, id)): Path<(String, String)>,
) -> Response {
    match shared.connections.get(&id).filter(|c| c.is_open()) {
        Some(connection) if connection.request_close(DELETED) => {
            StatusCode::NO_CONTENT.into_response()
        }
        _ => gone(&id),
    }
}

/// The largest @connections request read: a post over 128 KB is refused by its handler, and
/// axum's default body limit is what stood here before.
const MAX_REQUEST_BYTES: usize = 2 * 1024 * 1024;

/// In front of every @connections call: applies the injected latency, refuses a wrong stage
/// like API Gateway does, takes a token of the account's throttle, then checks the signature
/// and the caller's `execute-api:ManageConnections` on this method and connection.
pub(crate) async fn check(
    State(shared): State<Arc<Shared>>,
    Path((stage, id)): Path<(String, String)>,
    request: Request,
    next: Next,
) -> Response {
    let latency = shared.limits.connections_latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if stage != shared.stage {
        return aws_error(StatusCode::FORBIDDEN, "ForbiddenException", "Forbidden");
    }
    // The account's throttle comes before authentication: a refused call is not looked at.
    if !shared.throttles.admit_connections_call() {
        return aws_error(
            StatusCode::TOO_MANY_REQUESTS,
            "LimitExceededException",
            "Limit Exceeded",
        );
    }
    // The signature covers the body whatever the method: read it, then hand it on.
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_REQUEST_BYTES).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let signed = SignedRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &parts.headers,
        body: &body,
    };
    let guard = &shared.guard;
    let checked = guard.authorize(&signed, "execute-api", || {
        Ok(vec![actions::execute_api(
            parts.method.as_str(),
            &stage,
            &id,
            &guard.arns,
            &shared.local.api_id,
        )])
    });
    match checked {
        Ok(_) => next.run(Request::from_parts(parts, Body::from(body))).await,
        Err(Refusal::Signature(error)) => {
            aws_error(StatusCode::FORBIDDEN, error.code(), &error.to_string())
        }
        Err(refusal) => aws_error(
            StatusCode::FORBIDDEN,
            "ForbiddenException",
            &refusal.to_string(),
        ),
    }
}

fn gone(id: &str) -> Response {
    aws_error(
        StatusCode::GONE,
        "GoneException",
        &format!("Connection {id} is gone"),
    )
}

fn aws_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    (
        status,
        [
            (ERROR_TYPE, error_type.to_owned()),
            (header::CONTENT_TYPE, "application/json".to_owned()),
        ],
        json!({ "message": message }).to_string(),
    )
        .into_response()
}
