//! The AWS side of the handlers: DynamoDB and @connections adapters, configuration from the
//! environment, and the mapping of API Gateway WebSocket events onto the use cases.

pub mod clients;
pub mod config;
pub mod dynamodb;
pub mod handlers;
pub mod metrics;
pub mod notifier;
pub mod queue;

use std::sync::Arc;

use realtime_core::ports::{RandomIds, SystemClock};
use realtime_core::queued::QueuedFanout;
use realtime_core::{Messaging, Ports};

pub use config::{ConfigError, NotifierConfig, QueueConfig, StoreConfig};

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
    let store = Arc::new(store(config, client.clone()));
    Ports {
        store: store.clone(),
        rates: store,
        audit: Arc::new(dynamodb::DynamoAudit::new(client, &config.audit_table)),
        clock: Arc::new(SystemClock),
        ids: Arc::new(RandomIds),
        settings: config.settings,
    }
}

/// The connections store over a DynamoDB client, sharded and retrying as configured.
fn store(config: &StoreConfig, client: aws_sdk_dynamodb::Client) -> dynamodb::DynamoStore {
    dynamodb::DynamoStore::new(client, &config.connections_table)
        .with_retry_budget(config.sdk_timeout)
        .with_shards(config.room_shards.clone())
}

/// The message use cases over DynamoDB, the @connections API and, when `FANOUT_QUEUE_URL` is
/// set, the queued tier's SQS queue, from the environment.
pub async fn messaging_from_env() -> Result<Messaging, ConfigError> {
    let (store, notifier, queue) = handler_config()?;
    let sdk = clients::sdk_config(store.sdk_timeout);
    let management = clients::management(&sdk, &notifier.callback_url, store.sdk_timeout);
    let messaging = Messaging::new(
        ports(&store, clients::dynamodb(&sdk)),
        Arc::new(notifier::ApiGatewayNotifier::new(management)),
    );
    Ok(match queue {
        Some(queue) => messaging.with_queue(
            Arc::new(queue::SqsQueue::new(
                clients::sqs(&sdk),
                &queue.queue_url,
                store.sdk_timeout,
            )),
            queue.above,
        ),
        None => messaging,
    })
}

/// The queued fan-out use case over DynamoDB, SQS and the @connections API, from the
/// environment (`FANOUT_QUEUE_URL` required).
pub async fn queued_fanout_from_env() -> Result<QueuedFanout, ConfigError> {
    let (store, notifier, queue) = handler_config()?;
    let queue = queue.ok_or(ConfigError::Missing("FANOUT_QUEUE_URL"))?;
    let sdk = clients::sdk_config(store.sdk_timeout);
    let management = clients::management(&sdk, &notifier.callback_url, store.sdk_timeout);
    let connections = Arc::new(self::store(&store, clients::dynamodb(&sdk)));
    Ok(QueuedFanout::new(
        connections.clone(),
        connections,
        Arc::new(queue::SqsQueue::new(
            clients::sqs(&sdk),
            &queue.queue_url,
            store.sdk_timeout,
        )),
        Arc::new(notifier::ApiGatewayNotifier::new(management)),
        Arc::new(SystemClock),
        queue.settings,
    ))
}

/// The configuration a handler that posts needs, each error logged.
fn handler_config() -> Result<(StoreConfig, NotifierConfig, Option<QueueConfig>), ConfigError> {
    let read = || {
        let store = StoreConfig::from_env()?;
        let notifier = NotifierConfig::from_env()?;
        let queue = QueueConfig::from_env(&store)?;
        Ok((store, notifier, queue))
    };
    read().inspect_err(|e: &ConfigError| tracing::error!(error = %e, "bad configuration"))
}
