//! The queued fan-out handler: SQS batches of delivery jobs for rooms above the threshold.

use lambda_runtime::{run, service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    realtime_aws::init_logging();
    let queued = realtime_aws::queued_fanout_from_env().await?;
    run(service_fn(|event| {
        realtime_aws::handlers::fanout(&queued, event)
    }))
    .await
}
