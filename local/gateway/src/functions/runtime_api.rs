//! The Lambda Runtime API one handler process polls: `next`, then `response` or `error`.
//! The pool serves one per process; [`RuntimeEndpoint`] serves one for a process that the
//! caller starts itself (the cold-start benchmark: any runtime, its init timed).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

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
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{request_id, InvokeError, Outcome, MAX_RESPONSE_BYTES};

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

/// What the server saw of its process beyond the jobs: read by [`RuntimeEndpoint`].
#[derive(Default)]
struct Seen {
    /// The first `GET next`: the process's init is over.
    first_next: OnceLock<Instant>,
    /// The last `/init/error` report, `(errorType, errorMessage)`.
    init_error: Mutex<Option<(String, String)>>,
}

/// The router's state: the endpoint and what it saw.
#[derive(Clone)]
struct Served {
    api: Arc<RuntimeApi>,
    seen: Arc<Seen>,
}

pub(super) async fn serve_runtime_api(listener: TcpListener, api: Arc<RuntimeApi>) {
    serve(listener, api, Arc::default()).await;
}

async fn serve(listener: TcpListener, api: Arc<RuntimeApi>, seen: Arc<Seen>) {
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
        .with_state(Served { api, seen });
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    if let Err(error) = axum::serve(listener, app).await {
        warn!("runtime API server stopped: {error}");
    }
}

async fn next_invocation(State(Served { api, seen }): State<Served>) -> Response {
    seen.first_next.get_or_init(Instant::now);
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
    State(Served { api, .. }): State<Served>,
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
    State(Served { api, .. }): State<Served>,
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

async fn init_error(State(Served { api, seen }): State<Served>, body: Bytes) -> Response {
    let report: ErrorReport = serde_json::from_slice(&body).unwrap_or_default();
    warn!(function = %api.function, "handler failed to initialize: {}: {}", report.error_type, report.error_message);
    *seen
        .init_error
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) =
        Some((report.error_type, report.error_message));
    // Lambda fails the pending invocation and starts over with a new environment.
    api.kill.cancel();
    (StatusCode::ACCEPTED, r#"{"status":"OK"}"#).into_response()
}

fn runtime_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    let body = serde_json::json!({ "errorMessage": message, "errorType": error_type }).to_string();
    (status, body).into_response()
}

/// A Runtime API endpoint on a free loopback port for one process the caller starts with
/// `AWS_LAMBDA_RUNTIME_API` = [`addr`](Self::addr), served as the pool serves its own.
pub struct RuntimeEndpoint {
    addr: SocketAddr,
    api: Arc<RuntimeApi>,
    seen: Arc<Seen>,
    jobs: mpsc::Sender<Job>,
    server: JoinHandle<()>,
}

impl RuntimeEndpoint {
    /// Listens for the function `function` whose invocations carry `arn`.
    pub async fn bind(function: &str, arn: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let addr = listener.local_addr()?;
        let (jobs, jobs_rx) = mpsc::channel(1);
        let api = Arc::new(RuntimeApi {
            kill: CancellationToken::new(),
            function: function.to_owned(),
            arn: arn.to_owned(),
            jobs: tokio::sync::Mutex::new(jobs_rx),
            current: Mutex::new(None),
        });
        let seen = Arc::new(Seen::default());
        let server = tokio::spawn(serve(listener, api.clone(), seen.clone()));
        Ok(Self {
            addr,
            api,
            seen,
            jobs,
            server,
        })
    }

    /// `127.0.0.1:PORT`, the process's `AWS_LAMBDA_RUNTIME_API`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// When the process first asked for an invocation: the end of its init.
    pub fn first_next(&self) -> Option<Instant> {
        self.seen.first_next.get().copied()
    }

    /// Hands `event` to the process and waits up to `timeout` for its answer; an init error
    /// fails it as [`InvokeError::Handler`] with the report's type and message.
    pub async fn invoke(&self, event: Vec<u8>, timeout: Duration) -> Result<Bytes, InvokeError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            request_id: request_id(),
            event: Bytes::from(event),
            deadline_ms: chrono::Utc::now().timestamp_millis()
                + i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX),
            reply,
        };
        if self.jobs.send(job).await.is_err() {
            return Err(InvokeError::ShuttingDown);
        }
        let outcome = tokio::select! {
            outcome = answer => outcome,
            () = self.api.kill.cancelled() => {
                let (error_type, message) = self
                    .seen
                    .init_error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
                    .unwrap_or_default();
                return Err(InvokeError::Handler { error_type, message });
            }
            () = tokio::time::sleep(timeout) => return Err(InvokeError::Timeout(timeout)),
        };
        match outcome {
            Ok(Outcome::Response(body)) => Ok(body),
            Ok(Outcome::Error {
                error_type,
                message,
            }) => Err(InvokeError::Handler {
                error_type,
                message,
            }),
            Err(_) => Err(InvokeError::Crashed("the invocation was dropped".into())),
        }
    }
}

impl Drop for RuntimeEndpoint {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::RuntimeEndpoint;
    use crate::functions::InvokeError;

    /// One HTTP/1.1 exchange as a runtime client makes it; the whole answer.
    async fn exchange(endpoint: &RuntimeEndpoint, method: &str, path: &str, body: &str) -> String {
        let mut tcp = TcpStream::connect(endpoint.addr()).await.expect("connect");
        let request = format!(
            "{method} /2018-06-01/runtime/{path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        tcp.write_all(request.as_bytes()).await.expect("write");
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).await.expect("read");
        answer
    }

    /// A runtime that takes the event and answers it; `first_next` says when it first asked.
    #[tokio::test]
    async fn serves_a_process_the_caller_runs() {
        let endpoint = RuntimeEndpoint::bind("f", "arn:aws:lambda:r:1:function:f")
            .await
            .expect("bind");
        assert!(endpoint.first_next().is_none());
        let before = Instant::now();
        let runtime = async {
            let next = exchange(&endpoint, "GET", "invocation/next", "").await;
            let id_line = next
                .lines()
                .find(|l| l.starts_with("lambda-runtime-aws-request-id"))
                .expect("a request id");
            let id = id_line.split_once(':').expect("header").1.trim().to_owned();
            assert!(next.ends_with("{\"a\":1}"), "{next}");
            let path = format!("invocation/{id}/response");
            exchange(&endpoint, "POST", &path, "{\"ok\":true}").await
        };
        let (answer, posted) = tokio::join!(
            endpoint.invoke(b"{\"a\":1}".to_vec(), Duration::from_secs(5)),
            runtime
        );
        assert_eq!(&answer.expect("answer")[..], b"{\"ok\":true}");
        assert!(posted.starts_with("HTTP/1.1 202"), "{posted}");
        assert!(endpoint.first_next().is_some_and(|at| at >= before));
    }

    /// An init error fails the pending invocation with the report's type and message.
    #[tokio::test]
    async fn an_init_error_fails_the_invocation() {
        let endpoint = RuntimeEndpoint::bind("f", "arn").await.expect("bind");
        let report = r#"{"errorType":"Runtime.ImportModuleError","errorMessage":"no module"}"#;
        let (answer, _) = tokio::join!(
            endpoint.invoke(b"{}".to_vec(), Duration::from_secs(5)),
            exchange(&endpoint, "POST", "init/error", report)
        );
        match answer {
            Err(InvokeError::Handler {
                error_type,
                message,
            }) => assert_eq!(
                (error_type.as_str(), message.as_str()),
                ("Runtime.ImportModuleError", "no module")
            ),
            other => panic!("{other:?}"),
        }
    }
}
