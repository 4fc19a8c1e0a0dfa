//! Runs the real handler binaries as Lambda does: each process serves one invocation at a
//! time through its own Runtime API endpoint; more processes start when all are busy (up to
//! a bound), and a process that crashed or timed out is replaced by a fresh one.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use rand::Rng;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::template::FunctionSpec;

/// The largest response a synchronous invocation may return (6 MB, as Lambda).
const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

/// Variables passed through from the gateway's own environment; everything else is cleared,
/// so what a handler sees is what the template gives it, as in Lambda.
const PASSED_THROUGH: &[&str] = &["PATH", "RUST_LOG", "RUST_BACKTRACE", "TZ", "LANG", "LC_ALL"];

/// Why an invocation failed; API Gateway turns each into `Internal server error`.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The handler reported an error through `/error`.
    #[error("handler error {error_type}: {message}")]
    Handler {
        /// `errorType` of the report.
        error_type: String,
        /// `errorMessage` of the report.
        message: String,
    },
    /// The process exited before it answered.
    #[error("the handler process exited before answering ({0})")]
    Crashed(String),
    /// No answer before the deadline; the process was killed.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The process could not be started.
    #[error("cannot start {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The gateway is shutting down.
    #[error("the gateway is shutting down")]
    ShuttingDown,
}

/// What the Runtime API received for one invocation.
#[derive(Debug)]
enum Outcome {
    Response(Bytes),
    Error { error_type: String, message: String },
}

/// Settings shared by every function's processes.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// Where handler binaries named without a path live.
    pub bin_dir: PathBuf,
    /// The most processes one function may run at once.
    pub max_processes: usize,
    /// Variables every process gets (region, credentials, endpoints, `CALLBACK_URL`).
    pub common_env: BTreeMap<String, String>,
}

/// The binary a function runs: a path when the metadata holds one, else a name in `bin_dir`.
pub fn binary_path(bin_dir: &Path, binary: &str) -> PathBuf {
    if binary.contains('/') {
        PathBuf::from(binary)
    } else {
        bin_dir.join(binary)
    }
}

/// The processes of one function.
pub struct FunctionPool {
    spec: FunctionSpec,
    binary: PathBuf,
    env: Vec<(String, String)>,
    /// One permit per process that may run: bounds concurrency like reserved concurrency.
    slots: Semaphore,
    /// Warm processes waiting for an event, most recently used last.
    idle: Mutex<Vec<Arc<Process>>>,
    /// Every live process, so that shutdown can stop them all.
    all: Mutex<Vec<Arc<Process>>>,
    next_id: AtomicU64,
    invocations: AtomicU64,
    closed: AtomicBool,
}

impl std::fmt::Debug for FunctionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionPool")
            .field("function", &self.spec.name)
            .finish()
    }
}

impl FunctionPool {
    /// Prepares the pool; processes start on the first invocation.
    pub fn new(spec: FunctionSpec, settings: &HostSettings) -> Self {
        let binary = binary_path(&settings.bin_dir, &spec.binary);
        let mut env: BTreeMap<String, String> = settings.common_env.clone();
        env.extend(spec.environment.clone());
        // The Lambda-provided variables win over the template, as in Lambda.
        env.insert("AWS_LAMBDA_FUNCTION_NAME".into(), spec.name.clone());
        env.insert(
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(),
            spec.memory_mb.to_string(),
        );
        env.insert("AWS_LAMBDA_FUNCTION_VERSION".into(), "$LATEST".into());
        env.insert(
            "AWS_LAMBDA_LOG_GROUP_NAME".into(),
            format!("/aws/lambda/{}", spec.name),
        );
        env.insert("AWS_LAMBDA_LOG_STREAM_NAME".into(), "local".into());
        env.insert(
            "AWS_EXECUTION_ENV".into(),
            "AWS_Lambda_provided.al2023".into(),
        );
        env.insert("_HANDLER".into(), "bootstrap".into());
        env.insert(
            "LAMBDA_TASK_ROOT".into(),
            binary
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        );
        if spec.log_format_json {
            env.insert("AWS_LAMBDA_LOG_FORMAT".into(), "JSON".into());
        }
        for name in PASSED_THROUGH {
            if let Ok(value) = std::env::var(name) {
                env.entry((*name).to_owned()).or_insert(value);
            }
        }
        Self {
            spec,
            binary,
            env: env.into_iter().collect(),
            slots: Semaphore::new(settings.max_processes.max(1)),
            idle: Mutex::new(Vec::new()),
            all: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            invocations: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        }
    }

    /// The function's template settings.
    pub fn spec(&self) -> &FunctionSpec {
        &self.spec
    }

    /// The binary the processes run.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The process ids of the function's live processes.
    pub fn process_ids(&self) -> Vec<u32> {
        self.all
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|p| p.is_alive())
            .map(|p| p.pid.load(Ordering::Acquire))
            .filter(|pid| *pid != 0)
            .collect()
    }

    /// How many invocations the function has received (failed ones included).
    pub fn invocation_count(&self) -> u64 {
        self.invocations.load(Ordering::Relaxed)
    }

    /// Invokes the function with `event`. `integration_timeout` bounds the whole call, the
    /// wait for a free process included (API Gateway's 29 s); the function's own timeout
    /// starts when a process takes the event, as in Lambda.
    pub async fn invoke(
        &self,
        event: Vec<u8>,
        integration_timeout: Duration,
    ) -> Result<Bytes, InvokeError> {
        self.invoke_unless(event, integration_timeout, std::future::pending())
            .await
    }

    /// [`FunctionPool::invoke`], given up with [`InvokeError::ShuttingDown`] if `abandon`
    /// resolves while the event still waits for a process (once a process has it, it runs).
    pub async fn invoke_unless(
        &self,
        event: Vec<u8>,
        integration_timeout: Duration,
        abandon: impl std::future::Future<Output = ()>,
    ) -> Result<Bytes, InvokeError> {
        self.invocations.fetch_add(1, Ordering::Relaxed);
        let integration_deadline = Instant::now() + integration_timeout;
        let permit = tokio::select! {
            permit = tokio::time::timeout_at(integration_deadline, self.slots.acquire()) => permit
                .map_err(|_| InvokeError::Timeout(integration_timeout))?
                .map_err(|_| InvokeError::ShuttingDown)?,
            () = abandon => return Err(InvokeError::ShuttingDown),
        };
        if self.closed.load(Ordering::Acquire) {
            return Err(InvokeError::ShuttingDown);
        }
        let process = match self.take_idle() {
            Some(process) => process,
            None => self.spawn().await?,
        };
        let deadline = (Instant::now() + self.spec.timeout).min(integration_deadline);
        let timeout = deadline.saturating_duration_since(Instant::now());
        let request_id = request_id();
        let (reply, answer) = oneshot::channel();
        let deadline_ms = chrono::Utc::now().timestamp_millis()
            + i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        let job = Job {
            request_id: request_id.clone(),
            event: Bytes::from(event),
            deadline_ms,
            reply,
        };
        if process.jobs.send(job).await.is_err() {
            self.forget(&process);
            return Err(InvokeError::Crashed(
                "the process had already exited".into(),
            ));
        }
        let result = tokio::select! {
            biased;
            answer = answer => match answer {
                Ok(outcome) => Ok(outcome),
                Err(_) => Err(InvokeError::Crashed(process.exit_description())),
            },
            () = process.exited.notified() => Err(InvokeError::Crashed(process.exit_description())),
            () = tokio::time::sleep_until(deadline) => {
                warn!(function = %self.spec.name, %request_id, "invocation timed out after {timeout:?}: killing the process");
                process.kill();
                Err(InvokeError::Timeout(timeout))
            }
        };
        match result {
            Ok(Outcome::Response(body)) => {
                self.put_idle(process);
                drop(permit);
                Ok(body)
            }
            Ok(Outcome::Error {
                error_type,
                message,
            }) => {
                // A reported error leaves the process healthy: Lambda reuses it.
                self.put_idle(process);
                drop(permit);
                Err(InvokeError::Handler {
                    error_type,
                    message,
                })
            }
            Err(error) => {
                // Lambda discards an environment that crashed or timed out.
                process.kill();
                self.forget(&process);
                drop(permit);
                Err(error)
            }
        }
    }

    fn take_idle(&self) -> Option<Arc<Process>> {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some(process) = idle.pop() {
            if process.is_alive() {
                return Some(process);
            }
            self.forget(&process);
        }
        None
    }

    fn put_idle(&self, process: Arc<Process>) {
        if process.is_alive() && !self.closed.load(Ordering::Acquire) {
            self.idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(process);
        }
    }

    fn forget(&self, process: &Arc<Process>) {
        self.all
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|p| !Arc::ptr_eq(p, process));
    }

    async fn spawn(&self) -> Result<Arc<Process>, InvokeError> {
        let seq = self.next_id.fetch_add(1, Ordering::Relaxed);
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .map_err(|source| self.spawn_error(source))?;
        let runtime_addr = listener
            .local_addr()
            .map_err(|source| self.spawn_error(source))?;
        let (jobs_tx, jobs_rx) = mpsc::channel(1);
        let process = Arc::new(Process {
            pid: AtomicU32::new(0),
            jobs: jobs_tx,
            alive: AtomicBool::new(true),
            exited: Notify::new(),
            kill: Notify::new(),
            exit: Mutex::new(None),
            done: Mutex::new(None),
        });
        let api = Arc::new(RuntimeApi {
            process: process.clone(),
            function: self.spec.name.clone(),
            arn: self.spec.arn.clone(),
            jobs: tokio::sync::Mutex::new(jobs_rx),
            current: Mutex::new(None),
        });
        let server = tokio::spawn(serve_runtime_api(listener, api));

        let mut command = Command::new(&self.binary);
        command
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("AWS_LAMBDA_RUNTIME_API", runtime_addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group: Ctrl-C in the terminal reaches the gateway only, which
            // then stops the handlers in order instead of having them die mid-invocation.
            .process_group(0);
        die_with_parent(&mut command);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(source) => {
                server.abort();
                return Err(self.spawn_error(source));
            }
        };
        let pid = child.id().unwrap_or_default();
        process.pid.store(pid, Ordering::Release);
        let name = self.spec.name.clone();
        debug!(function = %name, pid, seq, "started a handler process");
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward_lines(name.clone(), out));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward_lines(name.clone(), err));
        }
        let supervisor = tokio::spawn(supervise(child, process.clone(), server, name));
        *process
            .done
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(supervisor);
        self.all
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(process.clone());
        Ok(process)
    }

    fn spawn_error(&self, source: std::io::Error) -> InvokeError {
        InvokeError::Spawn {
            binary: self.binary.clone(),
            source,
        }
    }

    /// Stops every process of the function and refuses new invocations.
    pub async fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        self.slots.close();
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        let all: Vec<_> = std::mem::take(
            &mut *self
                .all
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for process in &all {
            process.kill();
        }
        for process in all {
            let handle = process
                .done
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some(handle) = handle {
                let _ = handle.await;
            }
        }
    }
}

/// One handler process, as the pool sees it.
struct Process {
    /// Its process id (0 until it has started).
    pid: AtomicU32,
    jobs: mpsc::Sender<Job>,
    alive: AtomicBool,
    /// Notified (with a stored permit) once the process has exited.
    exited: Notify,
    kill: Notify,
    exit: Mutex<Option<ExitStatus>>,
    done: Mutex<Option<JoinHandle<()>>>,
}

impl Process {
    fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    fn kill(&self) {
        self.kill.notify_one();
    }

    fn exit_description(&self) -> String {
        match *self
            .exit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            Some(status) => status.to_string(),
            None => "no exit status".to_owned(),
        }
    }
}

/// Waits for the process to exit (or kills it when asked), then wakes whoever waits on it.
/// Either way its whole process group goes: what a handler started dies with it, as a discarded
/// Lambda environment takes everything in it.
async fn supervise(mut child: Child, process: Arc<Process>, server: JoinHandle<()>, name: String) {
    let group = child.id().and_then(|pid| i32::try_from(pid).ok());
    let status = tokio::select! {
        status = child.wait() => status,
        () = process.kill.notified() => {
            kill_group(group);
            let _ = child.start_kill();
            child.wait().await
        }
    };
    kill_group(group);
    process.alive.store(false, Ordering::Release);
    match status {
        Ok(status) => {
            if !status.success() && status.code().is_some() {
                warn!(function = %name, "handler process exited: {status}");
            } else {
                debug!(function = %name, "handler process exited: {status}");
            }
            *process
                .exit
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(status);
        }
        Err(error) => warn!(function = %name, "cannot wait for the handler process: {error}"),
    }
    // After the status is recorded, so that whoever sees the reply channel close can report it.
    server.abort();
    // notify_one stores a permit, so an invocation that starts waiting later still wakes.
    process.exited.notify_one();
}

/// SIGKILL to the process group a handler leads (it was started as its own group's leader).
fn kill_group(group: Option<i32>) {
    if let Some(group) = group.filter(|g| *g > 1) {
        // SAFETY: killpg only sends a signal; ESRCH (nothing left in the group) is fine.
        unsafe {
            libc::killpg(group, libc::SIGKILL);
        }
    }
}

/// Prints the handler's output line by line, prefixed by the function name.
async fn forward_lines(function: String, stream: impl AsyncRead + Unpin) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("[{function}] {line}");
    }
}

/// Makes the child receive SIGKILL if the gateway dies without cleaning up (e.g. SIGKILL), so
/// no handler outlives it: the same guard DynamoDB Local gets. (The signal follows the thread
/// that spawned the child: the runtime's worker threads, which live as long as the gateway.)
fn die_with_parent(command: &mut Command) {
    dynamodb_local::die_with_parent(command);
}

/// A Lambda request id (a UUID v4).
pub(crate) fn request_id() -> String {
    let random: u128 = rand::rng().random();
    // Version 4 in bits 76..80, variant 0b10 in bits 62..64.
    let bits =
        (((random & !(0xf_u128 << 76)) | (0x4_u128 << 76)) & !(0x3_u128 << 62)) | (0x2_u128 << 62);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

// ---- the Runtime API one process talks to ----

struct Job {
    request_id: String,
    event: Bytes,
    deadline_ms: i64,
    reply: oneshot::Sender<Outcome>,
}

struct Pending {
    request_id: String,
    reply: oneshot::Sender<Outcome>,
}

struct RuntimeApi {
    process: Arc<Process>,
    function: String,
    arn: String,
    jobs: tokio::sync::Mutex<mpsc::Receiver<Job>>,
    current: Mutex<Option<Pending>>,
}

async fn serve_runtime_api(listener: TcpListener, api: Arc<RuntimeApi>) {
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
    api.process.kill();
    (StatusCode::ACCEPTED, r#"{"status":"OK"}"#).into_response()
}

fn runtime_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    let body = serde_json::json!({ "errorMessage": message, "errorType": error_type }).to_string();
    (status, body).into_response()
}
