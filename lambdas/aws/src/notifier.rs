//! The @connections API (API Gateway Management API) as the [`Notifier`] port.

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_apigatewaymanagement::primitives::Blob;
use aws_sdk_apigatewaymanagement::Client;
use realtime_core::ports::{Notifier, NotifyError};
use realtime_core::ConnectionId;

/// Posts to connections through the @connections API.
#[derive(Debug, Clone)]
pub struct ApiGatewayNotifier {
    client: Client,
}

impl ApiGatewayNotifier {
    /// A notifier over a client whose endpoint is the stage's callback URL.
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

/// Turns an SDK error into the port's error: by the modelled error code first, then by the
/// HTTP status (a 410 without `x-amzn-ErrorType` still means gone).
fn classify<E>(
    error: SdkError<E, aws_sdk_apigatewaymanagement::config::http::HttpResponse>,
) -> NotifyError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let SdkError::TimeoutError(_) = error {
        return NotifyError::Timeout;
    }
    match error.code() {
        Some("GoneException") => return NotifyError::Gone,
        Some("LimitExceededException") => return NotifyError::Throttled,
        Some("PayloadTooLargeException") => return NotifyError::PayloadTooLarge,
        _ => {}
    }
    match error.raw_response().map(|r| r.status().as_u16()) {
        Some(410) => NotifyError::Gone,
        Some(429) => NotifyError::Throttled,
        Some(413) => NotifyError::PayloadTooLarge,
        _ => NotifyError::Failed(Box::new(error)),
    }
}

#[async_trait]
impl Notifier for ApiGatewayNotifier {
    async fn post(&self, id: &ConnectionId, data: &[u8]) -> Result<(), NotifyError> {
        self.client
            .post_to_connection()
            .connection_id(id.as_str())
            .data(Blob::new(data))
            .send()
            .await
            .map(|_| ())
            .map_err(classify)
    }
}
