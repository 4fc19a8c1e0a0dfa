//! The AWS SDK clients, built once per process with one small TLS stack and a timeout on
//! every call.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// Loads region and credentials from the environment, with an explicit rustls (ring) HTTP
/// client: without default features the SDK has none, and one TLS stack keeps the binary small.
pub async fn sdk_config(timeout: Duration) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(timeout.min(Duration::from_secs(1)))
                .operation_attempt_timeout(timeout)
                .operation_timeout(timeout.saturating_mul(2))
                .build(),
        )
        .load()
        .await
}

/// The one HTTP client of the process: hyper with rustls on ring.
pub fn http_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// A DynamoDB client (`AWS_ENDPOINT_URL_DYNAMODB` points it at DynamoDB Local).
pub fn dynamodb(config: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(config)
}

/// An @connections client for `callback_url`. Retries are off here: the fan-out retries
/// throttles itself with jitter, and a timed-out post must not be sent twice.
pub fn management(
    config: &SdkConfig,
    callback_url: &str,
    timeout: Duration,
) -> aws_sdk_apigatewaymanagement::Client {
    let config = aws_sdk_apigatewaymanagement::config::Builder::from(config)
        .endpoint_url(callback_url)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(timeout.min(Duration::from_secs(1)))
                .operation_timeout(timeout)
                .build(),
        )
        .build();
    aws_sdk_apigatewaymanagement::Client::from_conf(config)
}

/// SDK configuration for local endpoints (DynamoDB Local, the local gateway): fixed region and
/// static credentials, which both accept without checking signatures.
pub async fn local_sdk_config(timeout: Duration) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .region(aws_config::Region::new(LOCAL_REGION))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            LOCAL_ACCESS_KEY,
            LOCAL_ACCESS_KEY,
            None,
            None,
            "local",
        ))
        .timeout_config(TimeoutConfig::builder().operation_timeout(timeout).build())
        .load()
        .await
}

/// The region used for everything local.
pub const LOCAL_REGION: &str = "us-east-1";

/// The static credentials of everything local; DynamoDB Local and the local gateway accept any.
pub const LOCAL_ACCESS_KEY: &str = "local";

/// A DynamoDB client for a local endpoint such as DynamoDB Local: fixed region, static
/// credentials, the same HTTP client as the handlers.
pub fn local_dynamodb(endpoint: &str, region: &str, timeout: Duration) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            LOCAL_ACCESS_KEY,
            LOCAL_ACCESS_KEY,
            None,
            None,
            "local",
        ))
        .endpoint_url(endpoint)
        .http_client(http_client())
        .timeout_config(TimeoutConfig::builder().operation_timeout(timeout).build())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}
