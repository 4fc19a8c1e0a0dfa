//! Runs the real handler binaries as Lambda does: each process serves one invocation at a
//! time through its own Runtime API endpoint; more processes start when all are busy (up to
//! a bound), and a process that crashed or timed out is replaced by a fresh one.
//!
//! [`pool`] holds the processes; [`runtime_api`] is the endpoint each of them polls;
//! [`event_source`] invokes functions with batches from SQS, as Lambda's event source mappings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Bytes;

mod event_source;
mod pool;
mod runtime_api;

pub use event_source::{EventSources, MappingError};
pub use pool::FunctionPool;
pub use runtime_api::RuntimeEndpoint;

/// The largest response a synchronous invocation may return (6 MB, as Lambda).
const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

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

/// The first function of `functions` whose binary is not a file in `bin_dir`: its expected
/// path and logical id.
pub fn missing_binary<'a>(
    bin_dir: &Path,
    functions: impl IntoIterator<Item = &'a crate::template::FunctionSpec>,
) -> Option<(PathBuf, String)> {
    functions.into_iter().find_map(|function| {
        let path = binary_path(bin_dir, &function.binary);
        (!path.is_file()).then(|| (path, function.logical_id.clone()))
    })
}

/// A Lambda request id (a UUID v4).
pub(crate) fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
