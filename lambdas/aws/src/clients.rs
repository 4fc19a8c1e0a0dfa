//! The AWS SDK clients, built once per process with one small TLS stack and a timeout on
//! every call.

use std::env;
use std::time::Duration;

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{future, ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Region, SharedHttpClient};
use aws_smithy_async::rt::sleep::default_async_sleep;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};
use aws_types::SdkConfig;

/// SDK configuration from the Lambda environment, which is all a function has: region from
/// `AWS_REGION`, credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
/// `AWS_SESSION_TOKEN`, endpoints from `AWS_ENDPOINT_URL[_SERVICE]`, with an explicit rustls
/// (ring) HTTP client. Not aws-config's default chain: its profile, SSO, STS, ECS and IMDS
/// providers, which a function never uses, were a tenth of every handler binary.
pub fn sdk_config(timeout: Duration) -> SdkConfig {
    let region = env::var("AWS_REGION")
        .or_else(|_| env::var("AWS_DEFAULT_REGION"))
        .ok()
        .map(Region::new);
    base_config(region, SharedCredentialsProvider::new(EnvCredentials))
        .retry_config(RetryConfig::standard())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(timeout.min(Duration::from_secs(1)))
                .operation_attempt_timeout(timeout)
                .operation_timeout(timeout.saturating_mul(2))
                .build(),
        )
        .service_config(EnvEndpoints)
        .build()
}

/// What every configuration shares: the behaviour version, the HTTP client, tokio's sleep.
fn base_config(
    region: Option<Region>,
    credentials: SharedCredentialsProvider,
) -> aws_types::sdk_config::Builder {
    let builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(region)
        .credentials_provider(credentials)
        .http_client(http_client());
    match default_async_sleep() {
        Some(sleep) => builder.sleep_impl(sleep),
        None => builder,
    }
}

/// The function role's credentials, which Lambda puts in the environment; read on each
/// refresh of the SDK's identity cache, as the SDK's own environment provider does.
#[derive(Debug)]
struct EnvCredentials;

impl EnvCredentials {
    fn read() -> Result<Credentials, CredentialsError> {
        let var = |name: &'static str| {
            env::var(name)
                .ok()
                .filter(|value| !value.is_empty())
                .ok_or_else(|| CredentialsError::not_loaded(format!("{name} is not set")))
        };
        Ok(Credentials::new(
            var("AWS_ACCESS_KEY_ID")?,
            var("AWS_SECRET_ACCESS_KEY")?,
            var("AWS_SESSION_TOKEN").ok(),
            None,
            "Environment",
        ))
    }
}

impl ProvideCredentials for EnvCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::ready(Self::read())
    }
}

/// Endpoint overrides the way the SDK reads them: `AWS_ENDPOINT_URL_<SERVICE ID>` (upper case,
/// spaces as `_`, e.g. `AWS_ENDPOINT_URL_DYNAMODB`) before `AWS_ENDPOINT_URL`. The local
/// gateway points handlers at DynamoDB Local and its Secrets Manager this way.
#[derive(Debug)]
struct EnvEndpoints;

impl LoadServiceConfig for EnvEndpoints {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        let service = key
            .service_id()
            .to_ascii_uppercase()
            .replace([' ', '-'], "_");
        let set = |name: &str| env::var(name).ok().filter(|value| !value.is_empty());
        set(&format!("{}_{service}", key.env())).or_else(|| set(key.env()))
    }
}

/// The one HTTP client of the process: hyper with rustls on ring.
pub fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// A DynamoDB client (`AWS_ENDPOINT_URL_DYNAMODB` points it at DynamoDB Local).
pub fn dynamodb(config: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(config)
}

/// An SQS client (`AWS_ENDPOINT_URL_SQS` points it at the local gateway).
pub fn sqs(config: &SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(config)
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
    local_config(LOCAL_REGION, timeout).build()
}

/// The local configuration's builder, for a given region.
fn local_config(region: &str, timeout: Duration) -> aws_types::sdk_config::Builder {
    let credentials = Credentials::new(LOCAL_ACCESS_KEY, LOCAL_ACCESS_KEY, None, None, "local");
    base_config(
        Some(Region::new(region.to_owned())),
        SharedCredentialsProvider::new(credentials),
    )
    .timeout_config(TimeoutConfig::builder().operation_timeout(timeout).build())
}

/// The region used for everything local.
pub const LOCAL_REGION: &str = "us-east-1";

/// The static credentials of everything local; DynamoDB Local and the local gateway accept any.
pub const LOCAL_ACCESS_KEY: &str = "local";

/// A DynamoDB client for a local endpoint such as DynamoDB Local: fixed region, static
/// credentials, the same HTTP client as the handlers.
pub fn local_dynamodb(endpoint: &str, region: &str, timeout: Duration) -> aws_sdk_dynamodb::Client {
    let config = local_config(region, timeout).endpoint_url(endpoint).build();
    aws_sdk_dynamodb::Client::new(&config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(service_id: &str) -> Option<String> {
        let key = ServiceConfigKey::builder()
            .service_id(service_id)
            .env("AWS_ENDPOINT_URL")
            .profile("endpoint_url")
            .build()
            .expect("complete key");
        EnvEndpoints.load_config(key)
    }

    // One test, not several: they would race on the process's environment.
    #[test]
    fn endpoints_and_credentials_come_from_the_environment() {
        std::env::remove_var("AWS_ENDPOINT_URL");
        std::env::set_var("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:1/sm");
        std::env::set_var("AWS_ENDPOINT_URL_DYNAMODB", "");
        assert_eq!(
            endpoint("Secrets Manager").as_deref(),
            Some("http://127.0.0.1:1/sm")
        );
        assert_eq!(endpoint("DynamoDB"), None, "empty means unset");
        std::env::set_var("AWS_ENDPOINT_URL", "http://127.0.0.1:1/all");
        assert_eq!(
            endpoint("DynamoDB").as_deref(),
            Some("http://127.0.0.1:1/all")
        );

        std::env::remove_var("AWS_SESSION_TOKEN");
        std::env::remove_var("AWS_ACCESS_KEY_ID");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "secret");
        let missing = EnvCredentials::read().expect_err("no key id");
        assert!(
            format!("{missing:?}").contains("AWS_ACCESS_KEY_ID"),
            "{missing:?}"
        );
        std::env::set_var("AWS_ACCESS_KEY_ID", "AKID");
        std::env::set_var("AWS_SESSION_TOKEN", "token");
        let credentials = EnvCredentials::read().expect("complete");
        assert_eq!(credentials.access_key_id(), "AKID");
        assert_eq!(credentials.secret_access_key(), "secret");
        assert_eq!(credentials.session_token(), Some("token"));

        std::env::set_var("AWS_REGION", "eu-west-1");
        let config = sdk_config(Duration::from_secs(1));
        assert_eq!(config.region().map(Region::as_ref), Some("eu-west-1"));
    }
}
