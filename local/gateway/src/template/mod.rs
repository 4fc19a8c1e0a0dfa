//! Reads the synthesized CloudFormation template: the one source of truth for routes,
//! functions and tables. Adding a route or a table in the stack needs no change here.
//!
//! Three layers, each importing only the ones above it: [`source`] holds the template as
//! CloudFormation wrote it, [`intrinsics`] gives its intrinsic functions their local values,
//! and the reader (with `roles`, each function's IAM role, and `queues`, the SQS queues and the
//! event source mappings that poll them) turns both into the [`model`] the gateway serves.

use std::path::PathBuf;

use crate::routing::SelectionError;
use std::time::Duration;

pub mod intrinsics;
pub mod model;
mod queues;
mod reader;
mod roles;
pub mod source;

pub use intrinsics::{LocalContext, ResolveError};
pub use model::*;
pub use queues::MAX_MESSAGE_BYTES;
pub use source::Template;

/// The metadata key through which the stack names a function's handler binary.
pub const BINARY_METADATA_KEY: &str = "local:binary";

/// The environment variable holding the @connections base URL; the gateway points it at itself.
pub const CALLBACK_URL_VAR: &str = "CALLBACK_URL";

/// API Gateway's integration timeout: no route waits longer, whatever the function's timeout.
pub const MAX_INTEGRATION_TIMEOUT: Duration = Duration::from_secs(29);

/// CloudFormation's default when a function sets no `Timeout`.
const DEFAULT_FUNCTION_TIMEOUT_SECS: u64 = 3;

/// CloudFormation's default when a function sets no `MemorySize`.
const DEFAULT_MEMORY_MB: u64 = 128;

/// Why a template cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The file could not be read.
    #[error("cannot read template {path}: {source} (run `make synth-dev` to synthesize it)")]
    Read {
        /// The template path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a CloudFormation template in JSON.
    #[error("cannot parse template {path}: {source}")]
    Parse {
        /// The template path.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The template has no WebSocket API, or more than one.
    #[error("template {path}: expected exactly one AWS::ApiGatewayV2::Api with ProtocolType WEBSOCKET, found {found}")]
    ApiCount {
        /// The template path.
        path: PathBuf,
        /// How many were found.
        found: usize,
    },
    /// A resource lacks a property the gateway needs, or has one of the wrong shape.
    #[error("template {path}: resource {resource}: {problem}")]
    Resource {
        /// The template path.
        path: PathBuf,
        /// The logical id.
        resource: String,
        /// What is wrong.
        problem: String,
    },
    /// An intrinsic function could not be given a local value.
    #[error("template {path}: resource {resource}, {property}: {source}")]
    Resolve {
        /// The template path.
        path: PathBuf,
        /// The logical id.
        resource: String,
        /// The property being resolved.
        property: String,
        /// Why it failed.
        source: Box<ResolveError>,
    },
    /// The API's route selection expression is not one the gateway can evaluate.
    #[error("template {path}: {source}")]
    Selection {
        /// The template path.
        path: PathBuf,
        /// Why it failed.
        source: SelectionError,
    },
    /// The stage asked for is not the template's.
    #[error("template {path} defines stage {found:?}, not {wanted:?} (pass --stage {found} or synthesize stage {wanted})")]
    StageMismatch {
        /// The template path.
        path: PathBuf,
        /// The stage asked for.
        wanted: String,
        /// The stages the template defines.
        found: String,
    },
}
