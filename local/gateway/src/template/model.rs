//! What the gateway serves, read from the template with every value resolved.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Deserialize;

use crate::routing::RouteSelection;

/// The WebSocket API as the gateway serves it.
#[derive(Debug, Clone)]
pub struct ApiModel {
    /// The API's logical id in the template.
    pub logical_id: String,
    /// How a message picks its route.
    pub selection: RouteSelection,
    /// The stage served.
    pub stage: StageSpec,
    /// Routes by route key (`$connect`, `$default`, `join`, ...).
    pub routes: HashMap<String, Route>,
    /// The functions the routes and authorizers invoke, by logical id.
    pub functions: BTreeMap<String, FunctionSpec>,
    /// Every DynamoDB table of the template.
    pub tables: Vec<TableSpec>,
    /// Every Secrets Manager secret of the template (locally, all hold the local secret).
    pub secrets: Vec<SecretSpec>,
    /// Every SQS queue of the template, emulated in memory.
    pub queues: Vec<QueueSpec>,
    /// The Lambda event source mappings that poll one of those queues.
    pub event_source_mappings: Vec<EventSourceMappingSpec>,
}

impl ApiModel {
    /// The route a message goes to: the selected key's route, else `$default`, else none.
    pub fn route_for_message(&self, body: &str) -> Option<&Route> {
        self.selection
            .select(body)
            .filter(|key| key != "$connect" && key != "$disconnect")
            .and_then(|key| self.routes.get(&key))
            .or_else(|| self.routes.get("$default"))
    }

    /// A special route by key (`$connect`, `$disconnect`).
    pub fn route(&self, key: &str) -> Option<&Route> {
        self.routes.get(key)
    }
}

/// The stage the API is served under.
#[derive(Debug, Clone, PartialEq)]
pub struct StageSpec {
    /// The stage name, also the first path segment of URLs.
    pub name: String,
    /// The stage variables, passed in every event when present.
    pub variables: BTreeMap<String, String>,
    /// `DefaultRouteSettings`' throttling: each route's, unless it has its own.
    pub default_throttling: Option<ThrottleSpec>,
    /// `RouteSettings`' throttling, by route key.
    pub route_throttling: HashMap<String, ThrottleSpec>,
}

/// A route's token bucket, as the stage's route settings give it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThrottleSpec {
    /// `ThrottlingRateLimit`: requests per second, steady state.
    pub rate: f64,
    /// `ThrottlingBurstLimit`: requests at once.
    pub burst: u32,
}

/// One route of the API.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The route key.
    pub key: String,
    /// The integration; `None` for a route without one (a mock, locally nothing runs).
    pub target: Option<RouteTarget>,
    /// The REQUEST authorizer (only on `$connect`).
    pub authorizer: Option<AuthorizerSpec>,
    /// Whether the route is two-way (a `RouteResponseSelectionExpression` and a `$default`
    /// route response): the handler's `body` goes back to the caller.
    pub two_way: bool,
}

/// A Lambda proxy integration.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteTarget {
    /// The function's logical id.
    pub function: String,
    /// The integration timeout (at most 29 s).
    pub timeout: Duration,
}

/// A Lambda REQUEST authorizer.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthorizerSpec {
    /// The authorizer's logical id.
    pub logical_id: String,
    /// The function's logical id.
    pub function: String,
    /// Where the identity comes from; a missing one gives 401 without invoking the function.
    pub identity_sources: Vec<IdentitySource>,
}

/// One identity source of a REQUEST authorizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// `route.request.header.NAME`
    Header(String),
    /// `route.request.querystring.NAME`
    QueryString(String),
    /// `stageVariables.NAME`
    StageVariable(String),
    /// `context.NAME`
    Context(String),
}

impl IdentitySource {
    /// Parses an identity source as API Gateway writes it.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.strip_prefix('$').unwrap_or(text);
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        if let Some(name) = text
            .strip_prefix("request.header.")
            .or_else(|| text.strip_prefix("route.request.header."))
        {
            return non_empty(name).map(Self::Header);
        }
        if let Some(name) = text
            .strip_prefix("request.querystring.")
            .or_else(|| text.strip_prefix("route.request.querystring."))
        {
            return non_empty(name).map(Self::QueryString);
        }
        if let Some(name) = text.strip_prefix("stageVariables.") {
            return non_empty(name).map(Self::StageVariable);
        }
        if let Some(name) = text.strip_prefix("context.") {
            return non_empty(name).map(Self::Context);
        }
        None
    }
}

/// A function a route invokes, ready to run as a local process.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSpec {
    /// The logical id in the template.
    pub logical_id: String,
    /// The function name (`FunctionName`, else a stand-in built like CloudFormation's).
    pub name: String,
    /// The function's ARN, as the handler sees it in its context.
    pub arn: String,
    /// The handler binary: a name under the binary folder, or a path.
    pub binary: String,
    /// The resolved environment (without `CALLBACK_URL`, which the gateway sets).
    pub environment: BTreeMap<String, String>,
    /// The function's own timeout.
    pub timeout: Duration,
    /// The configured memory in MB (reported to the runtime).
    pub memory_mb: u64,
    /// Whether the function logs JSON (`LoggingConfig.LogFormat`).
    pub log_format_json: bool,
    /// The execution role and what it grants; `None` when the template names no role.
    pub role: Option<RoleSpec>,
}

/// A function's execution role with its policies resolved: what the gateway checks the
/// function's AWS calls against.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoleSpec {
    /// The role's logical id.
    pub logical_id: String,
    /// The role's name (`RoleName`, else a stand-in), as in the caller's assumed-role ARN.
    pub name: String,
    /// Each identity-based policy document (inline or `AWS::IAM::Policy`/`ManagedPolicy`
    /// attached to the role), named for messages, with every intrinsic resolved.
    pub policies: Vec<(String, serde_json::Value)>,
    /// AWS managed policies the role names: their content is not in the template, so the
    /// gateway cannot check what they grant.
    pub managed_policy_arns: Vec<String>,
}

/// A Secrets Manager secret, served locally by the gateway's Secrets Manager API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSpec {
    /// The logical id.
    pub logical_id: String,
    /// The secret's name (`Name`, else a stand-in built like CloudFormation's).
    pub name: String,
    /// Its ARN, what `Ref` gives (and what functions get in their environment).
    pub arn: String,
}

/// A DynamoDB table to create in DynamoDB Local.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSpec {
    /// The logical id.
    pub logical_id: String,
    /// The table name.
    pub name: String,
    /// The primary key.
    pub key_schema: Vec<KeyElement>,
    /// The types of the key attributes.
    pub attribute_definitions: Vec<AttributeDefinition>,
    /// Global secondary indexes.
    pub global_secondary_indexes: Vec<SecondaryIndex>,
    /// Local secondary indexes.
    pub local_secondary_indexes: Vec<SecondaryIndex>,
    /// The TTL attribute, when TTL is enabled.
    pub ttl_attribute: Option<String>,
    /// Billed per request (`BillingMode: PAY_PER_REQUEST`): DynamoDB throttles a hot key with
    /// `ThrottlingException` then, with `ProvisionedThroughputExceededException` otherwise.
    pub on_demand: bool,
}

/// One element of a key schema.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyElement {
    /// The attribute.
    pub attribute_name: String,
    /// `HASH` or `RANGE`.
    pub key_type: String,
}

/// The type of a key attribute.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttributeDefinition {
    /// The attribute.
    pub attribute_name: String,
    /// `S`, `N` or `B`.
    pub attribute_type: String,
}

/// A global or local secondary index.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecondaryIndex {
    /// The index name.
    pub index_name: String,
    /// The index key.
    pub key_schema: Vec<KeyElement>,
    /// Which attributes the index holds.
    #[serde(default)]
    pub projection: Projection,
}

/// An index projection.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Projection {
    /// `ALL`, `KEYS_ONLY` or `INCLUDE`.
    pub projection_type: Option<String>,
    /// The attributes of an `INCLUDE` projection.
    #[serde(default)]
    pub non_key_attributes: Vec<String>,
}

/// An SQS standard queue, held in memory by the gateway's SQS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    /// The logical id.
    pub logical_id: String,
    /// `QueueName`, else a stand-in built like CloudFormation's.
    pub name: String,
    /// What `Ref` gives: `http://127.0.0.1:PORT/ACCOUNT/NAME`, on the local AWS services' port.
    pub url: String,
    /// What `Fn::GetAtt [QUEUE, Arn]` gives.
    pub arn: String,
    /// How long a received message stays hidden from other receivers (`VisibilityTimeout`).
    pub visibility_timeout: Duration,
    /// How long a message is kept, counted from when it was first sent (`MessageRetentionPeriod`).
    pub retention: Duration,
    /// How long a new message waits before it can be received (`DelaySeconds`).
    pub delay: Duration,
    /// The largest message body plus attributes accepted (`MaximumMessageSize`).
    pub max_message_bytes: usize,
    /// Where a message received too often goes (`RedrivePolicy`).
    pub redrive: Option<RedriveSpec>,
}

/// A queue's `RedrivePolicy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedriveSpec {
    /// The dead-letter queue's logical id (a queue of the template).
    pub dead_letter_queue: String,
    /// `maxReceiveCount`: a message received this often and still not deleted goes to the
    /// dead-letter queue on its next receive instead of being delivered again.
    pub max_receive_count: u32,
}

/// An `AWS::Lambda::EventSourceMapping` from an SQS queue of the template to a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSourceMappingSpec {
    /// The logical id.
    pub logical_id: String,
    /// The queue polled (logical id).
    pub queue: String,
    /// The function invoked (logical id, one of [`ApiModel::functions`]).
    pub function: String,
    /// The most records in one invocation (`BatchSize`).
    pub batch_size: usize,
    /// How long a batch may wait to fill up (`MaximumBatchingWindowInSeconds`).
    pub batching_window: Duration,
    /// The most invocations at once (`ScalingConfig.MaximumConcurrency`); `None`: no bound
    /// but the function's.
    pub max_concurrency: Option<usize>,
    /// Whether the function's answer may name failed records (`FunctionResponseTypes`
    /// holds `ReportBatchItemFailures`).
    pub report_batch_item_failures: bool,
    /// Whether the mapping polls at all (`Enabled`).
    pub enabled: bool,
}
