//! How to run the gateway: API Gateway's limits by default, each one settable for tests.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::quotas::Quotas;
use crate::services::partitions::PartitionLimits;

/// Where the gateway gets its DynamoDB from.
#[derive(Debug, Clone)]
pub enum DynamoDb {
    /// Start DynamoDB Local (data in memory, or kept in `persist_dir`).
    Start {
        /// Keep the data in this folder between runs.
        persist_dir: Option<PathBuf>,
        /// The folder holding `DynamoDBLocal.jar`; the npm package's when `None`.
        jar_dir: Option<PathBuf>,
    },
    /// Use one that already runs at this endpoint.
    External(String),
}

/// How to run the gateway.
#[derive(Debug, Clone)]
pub struct Options {
    /// The synthesized template.
    pub template: PathBuf,
    /// The stage to serve; the template's only stage when `None`.
    pub stage: Option<String>,
    /// The loopback port (0 picks a free one).
    pub port: u16,
    /// Where handler binaries named in the template live.
    pub bin_dir: PathBuf,
    /// Close a connection after this long without a message from the client.
    pub idle_timeout: Duration,
    /// Close a connection after this long, whatever it does.
    pub max_duration: Duration,
    /// Delay added to every @connections response (`--connections-api-latency-ms`); not a
    /// quota, so relaxing the quotas leaves it.
    pub connections_latency: Duration,
    /// Messages of one connection routed at once; its socket is not read while that many are
    /// in flight, so a pipelining client waits for itself and not others for it.
    pub max_in_flight_per_connection: usize,
    /// How long the upgrade is held after `$connect` accepts, with posts to the connection
    /// answered 410 meanwhile: widens the window API Gateway has on AWS, where the handshake
    /// completes some tens of milliseconds after `$connect` returns.
    pub upgrade_delay: Duration,
    /// The most processes one function runs at once.
    pub max_processes_per_function: usize,
    /// The DynamoDB to use.
    pub dynamodb: DynamoDb,
    /// Variables given to every function on top of the template's (local-only settings).
    pub extra_env: BTreeMap<String, String>,
    /// The local value of every Secrets Manager secret of the template (the HS256 key of the
    /// `$connect` authorizer): the file's content, trimmed. Read only when the template has a
    /// secret; then it must exist.
    pub jwt_secret_file: PathBuf,
    /// API Gateway's quotas, or which of them are relaxed.
    pub quotas: Quotas,
    /// DynamoDB's per-partition throughput: past it a key is warned about, or throttled.
    pub partitions: PartitionLimits,
    /// Serve the web client from this folder (`GET /`, `GET /app.js`, ...); none when `None`.
    pub web_dir: Option<PathBuf>,
}

impl Options {
    /// API Gateway's defaults, for the template at `template`.
    pub fn new(template: PathBuf) -> Self {
        Self {
            template,
            stage: None,
            port: 3001,
            bin_dir: PathBuf::from("target/debug"),
            idle_timeout: Duration::from_secs(600),
            max_duration: Duration::from_secs(7200),
            connections_latency: Duration::ZERO,
            upgrade_delay: Duration::ZERO,
            max_in_flight_per_connection: 10,
            max_processes_per_function: 4,
            dynamodb: DynamoDb::Start {
                persist_dir: None,
                jar_dir: None,
            },
            extra_env: BTreeMap::new(),
            jwt_secret_file: PathBuf::from(".local/jwt-secret"),
            web_dir: None,
            quotas: Quotas::api_gateway(),
            partitions: PartitionLimits::default(),
        }
    }
}
