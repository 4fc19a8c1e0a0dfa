//! DynamoDB for the handlers: each call's signature and permissions are checked as DynamoDB
//! checks them (the per-item actions of a transaction included), then the call goes on, as
//! sent, to DynamoDB Local, whose answer comes back unchanged.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::Response;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tracing::warn;

use super::aws_json_error;
use crate::iam::sigv4::SignedRequest;
use crate::iam::{actions, Guard, Refusal};

/// How DynamoDB's JSON 1.0 targets begin.
pub(crate) const TARGET_PREFIX: &str = "DynamoDB_20120810.";

const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// How long a call may wait for DynamoDB Local: longer than any handler's SDK timeout, so that
/// a stalled database is the handler's timeout, as on AWS, and not ours.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(60);

/// Forwards allowed calls to DynamoDB Local over kept-alive connections.
pub(crate) struct DynamoDbProxy {
    client: Client<HttpConnector, Full<Bytes>>,
    endpoint: String,
    authority: Option<HeaderValue>,
}

impl DynamoDbProxy {
    /// A proxy to the DynamoDB at `endpoint` (`http://127.0.0.1:PORT`).
    pub(crate) fn new(endpoint: &str) -> Self {
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let authority = endpoint
            .split_once("://")
            .and_then(|(_, rest)| HeaderValue::from_str(rest).ok());
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            endpoint,
            authority,
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
        self.forward(request, body.clone()).await
    }

    async fn forward(&self, request: &SignedRequest<'_>, body: Bytes) -> Response {
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
            return unavailable("the request cannot be forwarded");
        };
        match tokio::time::timeout(FORWARD_TIMEOUT, self.client.request(forwarded)).await {
            Ok(Ok(response)) => {
                let (parts, body) = response.into_parts();
                Response::from_parts(parts, Body::new(body))
            }
            Ok(Err(error)) => {
                warn!("DynamoDB Local did not answer: {error}");
                unavailable("DynamoDB Local did not answer")
            }
            Err(_) => unavailable("DynamoDB Local did not answer in time"),
        }
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
