//! The handler of every MESSAGE route (`$default` and each action).

use lambda_runtime::{run, service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    realtime_aws::init_logging();
    let messaging = realtime_aws::messaging_from_env().await?;
    run(service_fn(|event| {
        realtime_aws::handlers::message(&messaging, event)
    }))
    .await
}
