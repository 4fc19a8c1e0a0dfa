//! A minimal Secrets Manager for the handlers: `GetSecretValue` over the AWS JSON 1.1 protocol,
//! which handler processes reach through `AWS_ENDPOINT_URL_SECRETS_MANAGER`, once the caller's
//! signature and role allow it. A handler thus reads its secret with the same SDK call
//! as in Lambda. Every secret of the template holds the one local value (the JWT key file),
//! read at each request as Secrets Manager holds the current version: a changed file is the
//! next cold start's key, and a file that cannot be read fails the call as an unreadable
//! secret does on AWS.

use std::path::{Path, PathBuf};

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tracing::{info, warn};

use super::{aws_json_error, REQUEST_ID, TARGET};
use crate::iam::sigv4::SignedRequest;
use crate::iam::{actions, Guard, Refusal};
use crate::template::SecretSpec;

/// The shortest local secret accepted: what HS256 needs not to be guessable (the authorizer
/// refuses shorter keys too).
pub const MIN_SECRET_BYTES: usize = 32;

const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
const CURRENT_STAGE: &str = "AWSCURRENT";

/// Why the local secret value cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// The file does not exist.
    #[error("the template has a Secrets Manager secret ({secrets}) whose local value is read from {}, which does not exist: run `make dev` or `make token` (either creates it), or pass --jwt-secret-file", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
        /// The secrets' names.
        secrets: String,
    },
    /// The file cannot be read.
    #[error("cannot read the local secret {}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The content is too short to be an HS256 key.
    #[error("the local secret {} holds {len} bytes, fewer than {MIN_SECRET_BYTES}: delete it and run `make token` to make a new one", path.display())]
    TooShort {
        /// The file.
        path: PathBuf,
        /// Its trimmed length.
        len: usize,
    },
}

/// Reads the local secret value: the file's content without surrounding whitespace, as
/// `mint-token` reads it.
pub fn read_secret_file(path: &Path, secrets: &[SecretSpec]) -> Result<String, SecretFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(source) if source.kind() == std::io::ErrorKind::NotFound => {
            return Err(SecretFileError::Missing {
                path: path.to_owned(),
                secrets: secrets
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
        Err(source) => {
            return Err(SecretFileError::Unreadable {
                path: path.to_owned(),
                source,
            })
        }
    };
    let value = text.trim();
    if value.len() < MIN_SECRET_BYTES {
        return Err(SecretFileError::TooShort {
            path: path.to_owned(),
            len: value.len(),
        });
    }
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            warn!(
                "{} can be read by other users: whoever reads it can sign tokens for anyone (chmod 600 it)",
                path.display()
            );
        }
    }
    Ok(value.to_owned())
}

/// The secrets and what every answer shares.
pub(crate) struct SecretStore {
    secrets: Vec<SecretSpec>,
    /// Where every secret's value is read from; none when the template has no secret.
    file: Option<PathBuf>,
    version_id: String,
    created_date: f64,
}

impl SecretStore {
    /// The store for `secrets`, all holding what `file` holds.
    pub(crate) fn new(secrets: &[SecretSpec], file: Option<&Path>) -> Self {
        Self {
            secrets: secrets.to_vec(),
            file: file.map(Path::to_owned),
            version_id: crate::functions::request_id(),
            created_date: chrono::Utc::now().timestamp_millis() as f64 / 1000.0,
        }
    }

    /// The secret a `SecretId` names: its name or its ARN, as Secrets Manager accepts.
    pub(super) fn find(&self, secret_id: &str) -> Option<&SecretSpec> {
        self.secrets
            .iter()
            .find(|s| s.name == secret_id || s.arn == secret_id)
    }

    /// The current value of the secret named (by name or ARN) `secret_id`: `None` for no such
    /// secret, an error when its file cannot be read now.
    pub(crate) fn value(&self, secret_id: &str) -> Option<Result<String, SecretFileError>> {
        self.find(secret_id)?;
        let file = self.file.as_deref()?;
        Some(read_secret_file(file, &self.secrets))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetSecretValue {
    secret_id: Option<String>,
    version_id: Option<String>,
    version_stage: Option<String>,
}

/// Serves one Secrets Manager request the guard has let through so far: it checks the
/// caller's permission on the very secret asked for.
pub(super) fn handle(store: &SecretStore, guard: &Guard, request: &SignedRequest<'_>) -> Response {
    let headers = request.headers;
    let body = request.body;
    let target = headers
        .get(TARGET)
        .and_then(|t| t.to_str().ok())
        .unwrap_or_default();
    if target != "secretsmanager.GetSecretValue" {
        return error_response(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            &format!("the local Secrets Manager only implements GetSecretValue, not {target:?}"),
        );
    }
    let checked = guard.authorize(request, "secretsmanager", || {
        actions::secrets_manager(target, body, |id| store.find(id).map(|s| s.arn.clone()))
    });
    if let Err(refusal) = checked {
        return match refusal {
            Refusal::Malformed(error) => error_response(
                StatusCode::BAD_REQUEST,
                "InvalidRequestException",
                &error.to_string(),
            ),
            Refusal::Signature(error) => {
                error_response(StatusCode::BAD_REQUEST, error.code(), &error.to_string())
            }
            denied @ Refusal::Denied { .. } => error_response(
                StatusCode::BAD_REQUEST,
                "AccessDeniedException",
                &denied.to_string(),
            ),
        };
    }
    let Ok(request) = serde_json::from_slice::<GetSecretValue>(body) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "the request body is not a GetSecretValue request",
        );
    };
    let Some(secret_id) = request.secret_id.filter(|id| !id.is_empty()) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "InvalidParameterException",
            "SecretId is required",
        );
    };
    let version_matches = request
        .version_id
        .as_ref()
        .is_none_or(|v| *v == store.version_id)
        && request
            .version_stage
            .as_deref()
            .is_none_or(|s| s == CURRENT_STAGE);
    let found = store
        .find(&secret_id)
        .filter(|_| version_matches)
        .zip(store.value(&secret_id));
    let Some((secret, value)) = found else {
        info!(secret_id, "GetSecretValue: no such secret");
        return error_response(
            StatusCode::BAD_REQUEST,
            "ResourceNotFoundException",
            "Secrets Manager can't find the specified secret.",
        );
    };
    let value = match value {
        Ok(value) => value,
        Err(cause) => {
            warn!(secret = %secret.name, "GetSecretValue refused: {cause}");
            return error_response(
                StatusCode::BAD_REQUEST,
                "AccessDeniedException",
                &format!("the local value of this secret cannot be read: {cause}"),
            );
        }
    };
    info!(secret = %secret.name, "GetSecretValue");
    let body = json!({
        "ARN": secret.arn,
        "Name": secret.name,
        "SecretString": value,
        "VersionId": store.version_id,
        "VersionStages": [CURRENT_STAGE],
        "CreatedDate": store.created_date,
    });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, CONTENT_TYPE.to_owned()),
            (REQUEST_ID, crate::functions::request_id()),
        ],
        body.to_string(),
    )
        .into_response()
}

/// An AWS JSON 1.1 error of Secrets Manager.
fn error_response(status: StatusCode, error_type: &str, message: &str) -> Response {
    aws_json_error(CONTENT_TYPE, status, error_type, message)
}
