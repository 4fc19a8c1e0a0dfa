//! The AWS side of the handlers: DynamoDB and @connections adapters, configuration from the
//! environment, and the mapping of API Gateway WebSocket events onto the use cases.

pub mod clients;
pub mod config;
pub mod dynamodb;
pub mod handlers;
pub mod metrics;
pub mod notifier;

use std::sync::Arc;

use realtime_core::ports::{RandomIds, SystemClock};
use realtime_core::{Messaging, Ports};

pub use config::{ConfigError, NotifierConfig, StoreConfig};

/// Sets up `tracing` the Lambda way: JSON lines (the stack sets Lambda's JSON log format, and
/// the local gateway follows the template; one formatter keeps the binary small), levels from
/// `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG` (`info` by default). The filter takes `level` and
/// `target=level` directives: unlike an env filter it needs no regex engine in the binary.
pub fn init_logging() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::{fmt, prelude::*};
    // A second call (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(log_filter())
        .with(fmt::layer().json().with_target(false).without_time())
        .try_init();

    /// The levels from the environment; `info` when unset or unreadable.
    fn log_filter() -> Targets {
        let directives = std::env::var("AWS_LAMBDA_LOG_LEVEL")
            .or_else(|_| std::env::var("RUST_LOG"))
            .unwrap_or_default()
            // Lambda's log levels include FATAL, which tracing calls ERROR.
            .to_ascii_lowercase()
            .replace("fatal", "error");
        match directives.trim() {
            "" => Targets::new().with_default(LevelFilter::INFO),
            text => text
                .parse()
                .unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO)),
        }
    }
}

/// The use-case ports over DynamoDB, from the environment (`$connect`, `$disconnect`).
pub async fn ports_from_env() -> Result<Ports, ConfigError> {
    let config = StoreConfig::from_env()
        .inspect_err(|e| tracing::error!(error = %e, "bad configuration"))?;
    let sdk = clients::sdk_config(config.sdk_timeout);
    Ok(ports(&config, clients::dynamodb(&sdk)))
}

/// The ports over a DynamoDB client.
pub fn ports(config: &StoreConfig, client: aws_sdk_dynamodb::Client) -> Ports {
    let store = Arc::new(
        dynamodb::DynamoStore::new(client.clone(), &config.connections_table)
            .with_retry_budget(config.sdk_timeout),
    );
    Ports {
        store: store.clone(),
        rates: store,
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
    let sdk = clients::sdk_config(store.sdk_timeout);
    let management = clients::management(&sdk, &notifier.callback_url, store.sdk_timeout);
    Ok(Messaging::new(
        ports(&store, clients::dynamodb(&sdk)),
        Arc::new(notifier::ApiGatewayNotifier::new(management)),
    ))
}
