//! SQS's errors as a JSON client receives them: the error's shape in `__type` and its
//! query-era code in `x-amzn-query-error` (`CODE;Sender`), which is what aws-sdk-sqs matches
//! to its typed errors, and the code alone in a batch entry's `Failed[].Code`.

use axum::http::{header, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::CONTENT_TYPE;
use crate::iam::actions::ActionError;
use crate::iam::sigv4::SignatureError;
use crate::iam::Refusal;
use crate::services::REQUEST_ID;

/// The query-era `CODE;Sender` of an error, which a JSON client of SQS decodes errors by.
const QUERY_ERROR: HeaderName = HeaderName::from_static("x-amzn-query-error");

/// An SQS error, as a JSON client receives it.
#[derive(Debug)]
pub(super) struct SqsError {
    status: StatusCode,
    /// `__type`: the error's shape.
    shape: &'static str,
    /// The query-era code, sent in `x-amzn-query-error`.
    pub(super) code: &'static str,
    pub(super) message: String,
}

impl SqsError {
    pub(super) fn new(
        status: StatusCode,
        shape: &'static str,
        code: &'static str,
        message: String,
    ) -> Self {
        Self {
            status,
            shape,
            code,
            message,
        }
    }

    pub(super) fn non_existent_queue() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "com.amazonaws.sqs#QueueDoesNotExist",
            "AWS.SimpleQueueService.NonExistentQueue",
            "The specified queue does not exist.".into(),
        )
    }

    pub(super) fn invalid_address(url: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "com.amazonaws.sqs#InvalidAddress",
            "InvalidAddress",
            format!("The address {url} is not valid for this endpoint."),
        )
    }

    pub(super) fn missing_parameter(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "com.amazonaws.sqs#MissingParameter",
            "MissingParameter",
            format!("The request must contain the parameter {name}."),
        )
    }

    pub(super) fn invalid_parameter(message: String) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "com.amazonaws.sqs#InvalidParameterValue",
            "InvalidParameterValue",
            message,
        )
    }

    pub(super) fn invalid_contents(message: String) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "com.amazonaws.sqs#InvalidMessageContents",
            "InvalidMessageContents",
            message,
        )
    }

    pub(super) fn batch(shape: &'static str, code: &'static str, message: String) -> Self {
        Self::new(StatusCode::BAD_REQUEST, shape, code, message)
    }

    pub(super) fn serialization(operation: &str, error: &serde_json::Error) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "com.amazon.coral.service#SerializationException",
            "SerializationException",
            format!("{operation}: the request body is not one: {error}"),
        )
    }

    pub(super) fn refused(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Signature(error) => {
                let (shape, code) = match error {
                    SignatureError::UnrecognizedClient => (
                        "com.amazon.coral.service#UnrecognizedClientException",
                        "InvalidClientTokenId",
                    ),
                    SignatureError::MissingAuthenticationToken => (
                        "com.amazon.coral.service#MissingAuthenticationTokenException",
                        "MissingAuthenticationToken",
                    ),
                    SignatureError::Incomplete(_) => (
                        "com.amazon.coral.service#IncompleteSignatureException",
                        "IncompleteSignature",
                    ),
                    _ => (
                        "com.amazon.coral.service#InvalidSignatureException",
                        "SignatureDoesNotMatch",
                    ),
                };
                Self::new(StatusCode::FORBIDDEN, shape, code, error.to_string())
            }
            Refusal::Malformed(error) => match &error {
                ActionError::Missing { field, .. } => Self::missing_parameter(field),
                ActionError::Invalid { field, .. } if field == "QueueUrl" => Self::new(
                    StatusCode::NOT_FOUND,
                    "com.amazonaws.sqs#InvalidAddress",
                    "InvalidAddress",
                    error.to_string(),
                ),
                _ => Self::invalid_parameter(error.to_string()),
            },
            denied @ Refusal::Denied { .. } => Self::new(
                StatusCode::FORBIDDEN,
                "com.amazon.coral.service#AccessDeniedException",
                "AccessDenied",
                denied.to_string(),
            ),
        }
    }

    /// Why one entry of a batch failed: `Failed[]`'s `Code` is the query-era code.
    pub(super) fn entry(&self, id: &str) -> Value {
        json!({ "Id": id, "SenderFault": true, "Code": self.code, "Message": self.message })
    }
}

impl IntoResponse for SqsError {
    fn into_response(self) -> Response {
        (
            self.status,
            [
                (header::CONTENT_TYPE, CONTENT_TYPE.to_owned()),
                (QUERY_ERROR, format!("{};Sender", self.code)),
                (REQUEST_ID, crate::functions::request_id()),
            ],
            json!({ "__type": self.shape, "message": self.message }).to_string(),
        )
            .into_response()
    }
}
