//! The `$connect` authorizer handler.

use lambda_runtime::{run, service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    realtime_aws::init_logging();
    let config = authorizer::AuthConfig::from_env()
        .inspect_err(|e| tracing::error!(error = %e, "bad configuration"))?;
    let verifier = authorizer::verifier(&config)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    run(service_fn(|event| authorizer::authorize(&verifier, event))).await
}
