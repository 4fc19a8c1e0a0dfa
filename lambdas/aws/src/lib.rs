//! The AWS side of the handlers: DynamoDB and @connections adapters, configuration from the
//! environment, and the mapping of API Gateway WebSocket events onto the use cases.

pub mod clients;
pub mod config;
pub mod dynamodb;
pub mod handlers;
pub mod notifier;

use std::sync::Arc;

use realtime_core::ports::{RandomIds, SystemClock};
use realtime_core::{Messaging, Ports};

pub use config::{ConfigError, NotifierConfig, StoreConfig};

/// Sets up `tracing` the Lambda way: JSON when `AWS_LAMBDA_LOG_FORMAT=JSON`, level from
/// `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`.
pub fn init_logging() {
    lambda_runtime::tracing::init_default_subscriber();
}

/// The use-case ports over DynamoDB, from the environment (`$connect`, `$disconnect`).
pub async fn ports_from_env() -> Result<Ports, ConfigError> {
    let config = StoreConfig::from_env()
        .inspect_err(|e| tracing::error!(error = %e, "bad configuration"))?;
    let sdk = clients::sdk_config(config.sdk_timeout).await;
    Ok(ports(&config, clients::dynamodb(&sdk)))
}

/// The ports over a DynamoDB client.
pub fn ports(config: &StoreConfig, client: aws_sdk_dynamodb::Client) -> Ports {
    Ports {
        store: Arc::new(dynamodb::DynamoStore::new(
            client.clone(),
            &config.connections_table,
        )),
        audit: Arc::new(dynamodb::DynamoAudit::new(client, &config.audit_table)),
        clock: Arc::new(SystemClock),
        ids: Arc::new(RandomIds),
        settings: config.settings,
    }
}

/// The message use cases over DynamoDB and the @connections API, from the environment.
pub async fn messaging_from_env() -> Result<Messaging, ConfigError> {
    let store = StoreConfig::from_env()
        .inspect_err(|e| tracing::error!(error = %e, "bad configuration"))?;
    let notifier = NotifierConfig::from_env()
        .inspect_err(|e| tracing::error!(error = %e, "bad configuration"))?;
    let sdk = clients::sdk_config(store.sdk_timeout).await;
    let management = clients::management(&sdk, &notifier.callback_url, store.sdk_timeout);
    Ok(Messaging::new(
        ports(&store, clients::dynamodb(&sdk)),
        Arc::new(notifier::ApiGatewayNotifier::new(management)),
    ))
}
