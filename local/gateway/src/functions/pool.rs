//! The processes of one function: started on demand up to a bound, one invocation at a time
//! each, replaced after a crash or a timeout, and swapped for processes of a rebuilt binary
//! (a new generation) without failing an invocation in flight.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use tokio_util::sync::CancellationToken;

use super::runtime_api::{serve_runtime_api, Job, RuntimeApi};
use super::{binary_path, request_id, HostSettings, InvokeError, Outcome};
use crate::template::FunctionSpec;

/// Variables passed through from the gateway's own environment; everything else is cleared,
/// so what a handler sees is what the template gives it, as in Lambda.
const PASSED_THROUGH: &[&str] = &["PATH", "RUST_LOG", "RUST_BACKTRACE", "TZ", "LANG", "LC_ALL"];

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
    /// Bumped by [`FunctionPool::refresh`]: a process of an older generation finishes what it
    /// runs and is then stopped instead of reused.
    generation: AtomicU64,
    /// The binary file as the current generation found it.
    stamp: Mutex<Option<BinaryStamp>>,
    /// Replaced by a pool of changed settings: it keeps no process once its invocations end.
    retired: AtomicBool,
}

/// What tells one build of a binary from the next: cargo replaces the file (a new inode) or
/// rewrites it (a new modification time or length) whenever it links it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BinaryStamp {
    inode: u64,
    modified: Option<std::time::SystemTime>,
    len: u64,
}

impl BinaryStamp {
    fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let metadata = std::fs::metadata(path).ok()?;
        Some(Self {
            inode: metadata.ino(),
            modified: metadata.modified().ok(),
            len: metadata.len(),
        })
    }
}

/// How often, and how far apart, a start is tried again when the binary is missing for a
/// moment: cargo removes the old file before it links the new one in its place.
const SPAWN_ATTEMPTS: u32 = 5;
const SPAWN_RETRY: Duration = Duration::from_millis(100);

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
            stamp: Mutex::new(BinaryStamp::of(&binary)),
            spec,
            binary,
            env: env.into_iter().collect(),
            slots: Semaphore::new(settings.max_processes.max(1)),
            idle: Mutex::new(Vec::new()),
            all: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            invocations: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            retired: AtomicBool::new(false),
        }
    }

    /// Whether the binary file is no longer the one the current generation started from.
    pub fn binary_changed(&self) -> bool {
        BinaryStamp::of(&self.binary) != *lock(&self.stamp)
    }

    /// Starts a new generation: idle processes stop now, busy ones once their invocation is
    /// answered, and every later invocation runs the binary as it is on disk now.
    pub fn refresh(&self) {
        *lock(&self.stamp) = BinaryStamp::of(&self.binary);
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.stop_idle();
    }

    /// Lets the pool's invocations in flight finish, then keeps no process: a pool with the
    /// function's new settings has taken its place.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        self.stop_idle();
    }

    fn stop_idle(&self) {
        let idle = std::mem::take(&mut *lock(&self.idle));
        for process in idle {
            process.kill();
            self.forget(&process);
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
        lock(&self.all)
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
        let mut idle = lock(&self.idle);
        while let Some(process) = idle.pop() {
            if process.is_alive() && self.reusable(&process) {
                return Some(process);
            }
            process.kill();
            self.forget(&process);
        }
        None
    }

    /// Whether a process may take another invocation: of the current generation, in a pool
    /// still in use.
    fn reusable(&self, process: &Process) -> bool {
        process.generation == self.generation.load(Ordering::Acquire)
            && !self.retired.load(Ordering::Acquire)
            && !self.closed.load(Ordering::Acquire)
    }

    fn put_idle(&self, process: Arc<Process>) {
        if !process.is_alive() {
            return;
        }
        if self.reusable(&process) {
            lock(&self.idle).push(process);
        } else {
            // Its invocation is answered: an old binary or old settings go now.
            process.kill();
            self.forget(&process);
        }
    }

    fn forget(&self, process: &Arc<Process>) {
        lock(&self.all).retain(|p| !Arc::ptr_eq(p, process));
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
            generation: self.generation.load(Ordering::Acquire),
            pid: AtomicU32::new(0),
            jobs: jobs_tx,
            alive: AtomicBool::new(true),
            exited: Notify::new(),
            kill: CancellationToken::new(),
            exit: Mutex::new(None),
            done: Mutex::new(None),
        });
        let api = Arc::new(RuntimeApi {
            kill: process.kill.clone(),
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
        let mut child = match spawn_retrying(&mut command).await {
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
        *lock(&process.done) = Some(supervisor);
        lock(&self.all).push(process.clone());
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
        lock(&self.idle).clear();
        let all: Vec<_> = std::mem::take(&mut *lock(&self.all));
        for process in &all {
            process.kill();
        }
        for process in all {
            let handle = lock(&process.done).take();
            if let Some(handle) = handle {
                let _ = handle.await;
            }
        }
    }
}

/// Starts `command`, again a few times while its binary is missing or still being written.
async fn spawn_retrying(command: &mut Command) -> std::io::Result<Child> {
    let mut attempt = 1;
    loop {
        match command.spawn() {
            Err(error)
                if attempt < SPAWN_ATTEMPTS
                    && matches!(
                        error.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::ExecutableFileBusy
                    ) =>
            {
                attempt += 1;
                tokio::time::sleep(SPAWN_RETRY).await;
            }
            result => return result,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One handler process, as the pool sees it.
struct Process {
    /// The pool's generation when it started.
    generation: u64,
    /// Its process id (0 until it has started).
    pid: AtomicU32,
    jobs: mpsc::Sender<Job>,
    alive: AtomicBool,
    /// Notified (with a stored permit) once the process has exited.
    exited: Notify,
    kill: CancellationToken,
    exit: Mutex<Option<ExitStatus>>,
    done: Mutex<Option<JoinHandle<()>>>,
}

impl Process {
    fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    fn kill(&self) {
        self.kill.cancel();
    }

    fn exit_description(&self) -> String {
        match *lock(&self.exit) {
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
        () = process.kill.cancelled() => {
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
            *lock(&process.exit) = Some(status);
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
