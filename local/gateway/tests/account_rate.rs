//! The account's throttle as the @connections API meets it: one token bucket for the whole
//! gateway (API Gateway: 10,000 requests a second, burst 5,000, shared by all APIs of the
//! account and region), past which a call gets 429 `LimitExceededException`; and the latency
//! injected into every @connections response, which is no quota and stays when quotas relax.

mod support;

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use aws_sdk_apigatewaymanagement::config::retry::RetryConfig;
use aws_sdk_apigatewaymanagement::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_apigatewaymanagement::error::SdkError;
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use local_gateway::quotas::{AccountRate, Quotas};
use serde_json::{json, Value};
use support::*;

/// A management client that reports a 429 instead of retrying it.
fn connections_without_retries(
    gateway: &local_gateway::Gateway,
) -> aws_sdk_apigatewaymanagement::Client {
    let config = aws_sdk_apigatewaymanagement::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "account"))
        .endpoint_url(gateway.callback_url())
        .http_client(realtime_aws::clients::http_client())
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_apigatewaymanagement::Client::from_conf(config)
}

async fn post(
    connections: &aws_sdk_apigatewaymanagement::Client,
    id: &str,
    n: usize,
) -> Result<(), SdkError<PostToConnectionError>> {
    connections
        .post_to_connection()
        .connection_id(id)
        .data(Blob::new(json!({"type": "tick", "n": n}).to_string()))
        .send()
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread")]
async fn posts_past_the_account_rate_get_limit_exceeded() {
    let (rate, burst) = (1, 10);
    let started = Instant::now();
    let gateway = start(real_template_copy(), |o| {
        o.quotas.connections_api = Some(AccountRate {
            per_second: NonZeroU32::new(rate).expect("not zero"),
            burst: NonZeroU32::new(burst).expect("not zero"),
        });
    })
    .await;
    // Connecting takes a token or two of its own: the reply to `whoami` is a post.
    let listener = Client::connect(&gateway).await;
    let connections = connections_without_retries(&gateway);
    let posts = (0..60).map(|n| post(&connections, &listener.id, n));
    let results = futures::future::join_all(posts).await;
    let (mut posted, mut limited) = (0u64, 0u64);
    for result in &results {
        match result {
            Ok(()) => posted += 1,
            Err(SdkError::ServiceError(e)) if e.err().is_limit_exceeded_exception() => limited += 1,
            Err(other) => panic!("a post is either delivered or LimitExceeded: {other:?}"),
        }
    }
    // The raw answer, as the SDK decodes it: 429, the error type in the header, the message.
    let path = format!("/dev/@connections/{}", listener.id.replace('=', "%3D"));
    let (status, headers, body) = signed_http(&gateway, "POST", &path, b"{}").await;
    let elapsed = started.elapsed().as_secs_f64();
    println!("{posted} posted, {limited} limited in {elapsed:.2} s");
    assert!(
        limited > 0,
        "a burst of 60 at a burst of {burst} is limited"
    );
    let bound = u64::from(burst) + (f64::from(rate) * elapsed).ceil() as u64;
    assert!(
        posted <= bound,
        "{posted} posted, at most {bound} tokens in {elapsed:.2} s"
    );
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        header(&headers, "x-amzn-errortype"),
        Some("LimitExceededException")
    );
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("JSON"),
        json!({"message": "Limit Exceeded"})
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn relaxed_quotas_leave_the_account_rate_off_and_the_latency_on() {
    assert_eq!(Quotas::relaxed().connections_api, None);
    assert_eq!(
        Quotas::api_gateway().connections_api,
        Some(AccountRate::API_GATEWAY)
    );
    let latency = Duration::from_millis(50);
    let gateway = start(real_template_copy(), |o| {
        o.quotas = Quotas::relaxed();
        o.connections_latency = latency;
    })
    .await;
    let mut listener = Client::connect(&gateway).await;
    let connections = connections_without_retries(&gateway);
    // Sequential posts each wait for the injected latency: a lower bound, fine on any machine.
    let started = Instant::now();
    let n = 5;
    for i in 0..n {
        post(&connections, &listener.id, i)
            .await
            .expect("delivered");
        listener
            .recv_where(|v| v["type"] == "tick" && v["n"] == i)
            .await;
    }
    assert!(
        started.elapsed() >= latency * n as u32,
        "{n} posts in {:?}",
        started.elapsed()
    );
    gateway.shutdown().await;
}
