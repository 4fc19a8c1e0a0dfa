//! The AWS services the handlers call, stood in for on one loopback port: DynamoDB (forwarded
//! to DynamoDB Local), Secrets Manager and SQS (served here). Every endpoint variable of the
//! handler processes points at it. Each request is told apart by its `X-Amz-Target`, and passes
//! the [`Guard`](crate::iam::Guard) (signature, then the caller's role) before it is served.

pub mod capacity;
mod consumption;
pub mod dynamodb;
#[cfg(test)]
#[path = "tests/fixtures.rs"]
mod fixtures;
pub mod partitions;
mod rewrite;
mod scopes;
pub mod secrets;
pub mod sqs;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderName, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::iam::sigv4::SignedRequest;
use crate::iam::Guard;
use dynamodb::DynamoDbProxy;
use secrets::SecretStore;
use sqs::queues::Queues;

const ERROR_TYPE: HeaderName = HeaderName::from_static("x-amzn-errortype");
const REQUEST_ID: HeaderName = HeaderName::from_static("x-amzn-requestid");
const TARGET: HeaderName = HeaderName::from_static("x-amz-target");

/// DynamoDB's largest request (a BatchWriteItem of 25 items of 400 KB is under it).
const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// What the stand-ins serve from.
struct Services {
    guard: Arc<Guard>,
    secrets: Arc<SecretStore>,
    dynamodb: DynamoDbProxy,
    queues: Arc<Queues>,
    port: u16,
}

/// The running stand-ins.
pub(crate) struct AwsServices {
    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL_DYNAMODB`, `..._SECRETS_MANAGER` and
    /// `..._SQS`.
    pub(crate) endpoint: String,
    /// The secrets, for the tokens the gateway signs itself.
    pub(crate) secrets: Arc<SecretStore>,
    task: JoinHandle<()>,
}

impl AwsServices {
    /// A free loopback port for the services, taken before the template is read: queue URLs
    /// name it.
    pub(crate) async fn bind() -> std::io::Result<TcpListener> {
        TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Serves them all on `listener` (from [`AwsServices::bind`]); DynamoDB calls go on to
    /// `dynamodb_endpoint`, counted per partition key into `partitions`.
    pub(crate) async fn start(
        listener: TcpListener,
        guard: Arc<Guard>,
        secrets: SecretStore,
        dynamodb_endpoint: &str,
        partitions: Arc<partitions::Partitions>,
        queues: Arc<Queues>,
    ) -> std::io::Result<Self> {
        let port = listener.local_addr()?.port();
        let secrets = Arc::new(secrets);
        let services = Arc::new(Services {
            guard,
            secrets: secrets.clone(),
            dynamodb: DynamoDbProxy::new(dynamodb_endpoint, partitions),
            queues,
            port,
        });
        let app = Router::new()
            .route("/", post(handle))
            .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
            .with_state(services);
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                warn!("the local AWS services stopped: {error}");
            }
        });
        Ok(Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            secrets,
            task,
        })
    }

    /// Stops serving.
    pub(crate) fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for AwsServices {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(services): State<Arc<Services>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Only clients that name this loopback address: a web page that got here through a DNS
    // name rebound to 127.0.0.1 sends its own host name (and an Origin).
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let local_hosts = [
        format!("127.0.0.1:{}", services.port),
        format!("localhost:{}", services.port),
    ];
    if !local_hosts.iter().any(|h| h == host) || headers.contains_key(header::ORIGIN) {
        return (
            StatusCode::FORBIDDEN,
            "only local clients may call the local AWS services\n",
        )
            .into_response();
    }
    let target = headers
        .get(TARGET)
        .and_then(|t| t.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let request = SignedRequest {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query(),
        headers: &headers,
        body: &body,
    };
    if target.starts_with(dynamodb::TARGET_PREFIX) {
        services
            .dynamodb
            .handle(&services.guard, &target, &request, &body)
            .await
    } else if target.starts_with(sqs::TARGET_PREFIX) {
        sqs::handle(&services.queues, &services.guard, &target, &request)
    } else {
        secrets::handle(&services.secrets, &services.guard, &request)
    }
}

/// An AWS JSON protocol error: the type in both the header and `__type`, as the SDK reads either.
pub(crate) fn aws_json_error(
    content_type: &'static str,
    status: StatusCode,
    error_type: &str,
    message: &str,
) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (ERROR_TYPE, error_type.to_owned()),
            (REQUEST_ID, crate::functions::request_id()),
        ],
        json!({ "__type": error_type, "message": message }).to_string(),
    )
        .into_response()
}
