//! The `$disconnect` handler: forgets the connection and its memberships.

use lambda_runtime::{run, service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    realtime_aws::init_logging();
    let ports = realtime_aws::ports_from_env().await?;
    run(service_fn(|event| {
        realtime_aws::handlers::disconnect(&ports, event)
    }))
    .await
}
