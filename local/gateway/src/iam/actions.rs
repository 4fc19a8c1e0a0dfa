//! What a request asks IAM for: the (action, resource) pairs IAM checks before DynamoDB,
//! Secrets Manager, SQS or the @connections API runs a call, read from the request the SDK sends.

use std::fmt;

use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};

/// One authorization IAM makes: an action on a resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Access {
    /// `service:Operation`, e.g. `dynamodb:PutItem`.
    pub action: String,
    /// The resource's ARN, or `*` for an action on no particular resource.
    pub resource: String,
}

impl Access {
    /// The authorization of `action` on `resource`.
    pub fn new(action: impl Into<String>, resource: impl Into<String>) -> Self {
        let (action, resource) = (action.into(), resource.into());
        Self { action, resource }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.action, self.resource)
    }
}

/// The region and account that the ARNs of local resources name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arns {
    /// The region, e.g. `us-east-1`.
    pub region: String,
    /// The twelve-digit account id.
    pub account_id: String,
}

impl Arns {
    /// ARNs in `region` and account `account_id`.
    pub fn new(region: impl Into<String>, account_id: impl Into<String>) -> Self {
        let (region, account_id) = (region.into(), account_id.into());
        Self { region, account_id }
    }

    /// `arn:aws:dynamodb:{region}:{account}:table/{name}`.
    pub fn table(&self, name: &str) -> String {
        format!(
            "arn:aws:dynamodb:{}:{}:table/{name}",
            self.region, self.account_id
        )
    }

    /// `arn:aws:dynamodb:{region}:{account}:table/{table}/index/{index}`.
    pub fn index(&self, table: &str, index: &str) -> String {
        format!("{}/index/{index}", self.table(table))
    }

    /// `arn:aws:sqs:{region}:{account}:{name}`.
    pub fn queue(&self, name: &str) -> String {
        format!("arn:aws:sqs:{}:{}:{name}", self.region, self.account_id)
    }

    /// The ARN of the queue a queue URL (`http://HOST/ACCOUNT/NAME`) names, in this region;
    /// `None` when it is not a queue URL. SQS goes by the path whatever the host: so does this.
    pub fn queue_of_url(&self, url: &str) -> Option<String> {
        let path = url.split_once("://").map_or(url, |(_, rest)| rest);
        let mut segments = path.trim_end_matches('/').split('/').skip(1);
        let (Some(account), Some(name), None) = (segments.next(), segments.next(), segments.next())
        else {
            return None;
        };
        let valid_name = name.strip_suffix(".fifo").unwrap_or(name);
        let valid = !account.is_empty()
            && account.bytes().all(|b| b.is_ascii_digit())
            && (1..=80).contains(&name.len())
            && !valid_name.is_empty()
            && valid_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        valid.then(|| format!("arn:aws:sqs:{}:{account}:{name}", self.region))
    }

    /// `arn:aws:execute-api:{region}:{account}:{api_id}/{stage}/{method}/@connections/{id}`.
    pub fn connection(&self, api_id: &str, stage: &str, method: &str, id: &str) -> String {
        let (region, account) = (&self.region, &self.account_id);
        format!(
            "arn:aws:execute-api:{region}:{account}:{api_id}/{stage}/{method}/@connections/{id}"
        )
    }
}

/// Why the authorizations a request needs cannot be read from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// `X-Amz-Target` does not name an operation of the service.
    #[error("X-Amz-Target {target:?} does not name an operation: expected {prefix}<Operation>")]
    Target {
        /// The header's value.
        target: String,
        /// What it must start with, e.g. `DynamoDB_20120810.`.
        prefix: &'static str,
    },
    /// The body is not a JSON object.
    #[error("{operation}: the body is not a JSON object ({reason})")]
    Body {
        /// The operation, e.g. `PutItem`.
        operation: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A field the authorization depends on is absent.
    #[error("{operation}: {field} is missing")]
    Missing {
        /// The operation, e.g. `PutItem`.
        operation: String,
        /// Its path, e.g. `TransactItems[1].Put.TableName`.
        field: String,
    },
    /// A field the authorization depends on is present but unusable.
    #[error("{operation}: {field} {problem}")]
    Invalid {
        /// The operation, e.g. `PutItem`.
        operation: String,
        /// Its path, e.g. `TransactItems[1].Put.TableName`.
        field: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The authorization depends on more than this module reads from a request.
    #[error("{operation}: not authorized locally: {reason}")]
    Unsupported {
        /// The operation, e.g. `ExecuteStatement`.
        operation: String,
        /// Why not.
        reason: &'static str,
    },
}

/// A request's operation and JSON body, read with errors that name the operation.
struct Request<'a> {
    operation: &'a str,
    body: Map<String, Value>,
}

impl<'a> Request<'a> {
    fn parse(target: &'a str, prefix: &'static str, body: &[u8]) -> Result<Self, ActionError> {
        let operation = target
            .strip_prefix(prefix)
            .filter(|op| !op.is_empty() && op.chars().all(|c| c.is_ascii_alphanumeric()))
            .ok_or_else(|| ActionError::Target {
                target: target.to_owned(),
                prefix,
            })?;
        let reason = match serde_json::from_slice(body) {
            Ok(Value::Object(body)) => return Ok(Self { operation, body }),
            Ok(other) => format!("found {}", kind(&other)),
            Err(e) => e.to_string(),
        };
        Err(ActionError::Body {
            operation: operation.to_owned(),
            reason,
        })
    }

    /// The access to this operation itself, `{service}:{Operation}`, on `resource`.
    fn access(&self, service: &str, resource: impl Into<String>) -> Access {
        Access::new(format!("{service}:{}", self.operation), resource)
    }

    fn missing(&self, field: String) -> ActionError {
        ActionError::Missing {
            operation: self.operation.to_owned(),
            field,
        }
    }

    fn invalid(&self, field: String, problem: &'static str) -> ActionError {
        ActionError::Invalid {
            operation: self.operation.to_owned(),
            field,
            problem,
        }
    }

    fn unsupported(&self, reason: &'static str) -> ActionError {
        ActionError::Unsupported {
            operation: self.operation.to_owned(),
            reason,
        }
    }

    /// Field `name` of `object`, which sits at `path` (empty, or ending in `.`).
    fn field<'v>(
        &self,
        object: &'v Map<String, Value>,
        path: &str,
        name: &str,
    ) -> Result<&'v Value, ActionError> {
        object
            .get(name)
            .ok_or_else(|| self.missing(format!("{path}{name}")))
    }

    fn string<'v>(
        &self,
        object: &'v Map<String, Value>,
        path: &str,
        name: &str,
    ) -> Result<&'v str, ActionError> {
        let value = self.field(object, path, name)?.as_str();
        let value =
            value.ok_or_else(|| self.invalid(format!("{path}{name}"), "must be a string"))?;
        if value.is_empty() {
            return Err(self.invalid(format!("{path}{name}"), "must not be empty"));
        }
        Ok(value)
    }

    fn object<'v>(
        &self,
        value: &'v Value,
        path: String,
    ) -> Result<&'v Map<String, Value>, ActionError> {
        value
            .as_object()
            .ok_or_else(|| self.invalid(path, "must be an object"))
    }

    fn array<'v>(
        &self,
        object: &'v Map<String, Value>,
        name: &str,
    ) -> Result<&'v [Value], ActionError> {
        let value = self.field(object, "", name)?.as_array();
        let items = value.ok_or_else(|| self.invalid(name.to_owned(), "must be an array"))?;
        if items.is_empty() {
            return Err(self.invalid(name.to_owned(), "must not be empty"));
        }
        Ok(items)
    }

    /// The ARN of the table a `TableName` (a name or a table's ARN) at `field` names.
    fn table(&self, name: &str, field: String, arns: &Arns) -> Result<String, ActionError> {
        // A name DynamoDB would refuse is refused here before any ARN is built from it: a `/`
        // in it would otherwise read as another resource (`t/index/i` as an index of `t`).
        let table = match name.strip_prefix("arn:") {
            None => name,
            Some(arn) => match arn.splitn(5, ':').collect::<Vec<_>>()[..] {
                [_partition, "dynamodb", _region, _account, resource] => {
                    resource.strip_prefix("table/").unwrap_or_default()
                }
                _ => "",
            },
        };
        if !valid_name(table) {
            return Err(self.invalid(field, "is neither a valid table name nor a table ARN"));
        }
        Ok(if name == table {
            arns.table(name)
        } else {
            name.to_owned()
        })
    }

    /// The ARN of the table at `{path}TableName`.
    fn table_at(
        &self,
        object: &Map<String, Value>,
        path: &str,
        arns: &Arns,
    ) -> Result<String, ActionError> {
        let name = self.string(object, path, "TableName")?;
        self.table(name, format!("{path}TableName"), arns)
    }
}

/// DynamoDB's naming rule for tables and indexes: 3 to 255 of `A-Z a-z 0-9 _ - .`.
fn valid_name(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Adds `access` unless it is there already (IAM checks each pair once).
fn push(accesses: &mut Vec<Access>, access: Access) {
    if !accesses.contains(&access) {
        accesses.push(access);
    }
}

/// The authorizations of a DynamoDB call: `target` is its `X-Amz-Target`
/// (`DynamoDB_20120810.<Operation>`), `body` its JSON.
pub fn dynamodb(target: &str, body: &[u8], arns: &Arns) -> Result<Vec<Access>, ActionError> {
    let request = Request::parse(target, "DynamoDB_20120810.", body)?;
    let body = &request.body;
    let mut out = Vec::new();
    match request.operation {
        "ListTables" | "DescribeLimits" | "DescribeEndpoints" => {
            push(&mut out, request.access("dynamodb", "*"));
        }
        "ExecuteStatement" | "BatchExecuteStatement" | "ExecuteTransaction" => {
            return Err(request.unsupported(
                "a PartiQL statement is authorized by its kind (dynamodb:PartiQLSelect, ...), \
                 which takes parsing the statement",
            ));
        }
        // A transaction is authorized per item, as the item's own operation would be
        // (DynamoDB developer guide, "Using IAM with DynamoDB transactions").
        "TransactWriteItems" | "TransactGetItems" => {
            let kinds: &[(&str, &str)] = if request.operation == "TransactGetItems" {
                &[("Get", "GetItem")]
            } else {
                &[
                    ("Put", "PutItem"),
                    ("Update", "UpdateItem"),
                    ("Delete", "DeleteItem"),
                    ("ConditionCheck", "ConditionCheckItem"),
                ]
            };
            for (i, item) in request.array(body, "TransactItems")?.iter().enumerate() {
                let path = format!("TransactItems[{i}]");
                let item = request.object(item, path.clone())?;
                let mut present = kinds.iter().filter(|(kind, _)| item.contains_key(*kind));
                let (Some((kind, action)), None) = (present.next(), present.next()) else {
                    let problem = if kinds.len() == 1 {
                        "must hold Get"
                    } else {
                        "must hold exactly one of Put, Update, Delete and ConditionCheck"
                    };
                    return Err(request.invalid(path, problem));
                };
                let inner = request.field(item, &format!("{path}."), kind)?;
                let inner = request.object(inner, format!("{path}.{kind}"))?;
                let table = request.table_at(inner, &format!("{path}.{kind}."), arns)?;
                push(&mut out, Access::new(format!("dynamodb:{action}"), table));
            }
        }
        // Unlike a transaction, a batch is authorized as the batch operation on each table:
        // the Service Authorization Reference maps BatchWriteItem to dynamodb:BatchWriteItem
        // alone, and a role with PutItem but not BatchWriteItem is refused "not authorized to
        // perform: dynamodb:BatchWriteItem" (aws-samples/aws-serverless-workshops#36).
        "BatchWriteItem" | "BatchGetItem" => {
            let tables = request.field(body, "", "RequestItems")?;
            let tables = request.object(tables, "RequestItems".to_owned())?;
            if tables.is_empty() {
                return Err(request.invalid("RequestItems".into(), "must name a table"));
            }
            for name in tables.keys() {
                let table = request.table(name, format!("RequestItems[{name:?}]"), arns)?;
                push(&mut out, request.access("dynamodb", table));
            }
        }
        "Query" | "Scan" => {
            let table = request.table_at(body, "", arns)?;
            let resource = match body.get("IndexName") {
                None => table,
                Some(_) => {
                    let index = request.string(body, "", "IndexName")?;
                    if !valid_name(index) {
                        return Err(
                            request.invalid("IndexName".into(), "is not a valid index name")
                        );
                    }
                    format!("{table}/index/{index}")
                }
            };
            push(&mut out, request.access("dynamodb", resource));
        }
        "TagResource" | "UntagResource" | "ListTagsOfResource" => {
            let resource = request.string(body, "", "ResourceArn")?;
            push(&mut out, request.access("dynamodb", resource));
        }
        _ => {
            let table = request.table_at(body, "", arns)?;
            push(&mut out, request.access("dynamodb", table));
        }
    }
    Ok(out)
}

/// The authorizations of a Secrets Manager call (`X-Amz-Target: secretsmanager.<Operation>`):
/// `resolve` maps a secret's name or ARN to its ARN; an id it does not know stays as given.
pub fn secrets_manager(
    target: &str,
    body: &[u8],
    resolve: impl Fn(&str) -> Option<String>,
) -> Result<Vec<Access>, ActionError> {
    let request = Request::parse(target, "secretsmanager.", body)?;
    let body = &request.body;
    let arn = |id: &str| resolve(id).unwrap_or_else(|| id.to_owned());
    let mut out = Vec::new();
    match request.operation {
        "ListSecrets" | "GetRandomPassword" => {
            push(&mut out, request.access("secretsmanager", "*"))
        }
        // BatchGetSecretValue needs itself and GetSecretValue on each secret (API reference).
        "BatchGetSecretValue" => {
            if body.contains_key("Filters") {
                return Err(request.unsupported(
                    "with Filters, the secrets read (each needing secretsmanager:GetSecretValue) \
                     are known only once listed",
                ));
            }
            let ids = request.array(body, "SecretIdList")?;
            push(&mut out, request.access("secretsmanager", "*"));
            for (i, id) in ids.iter().enumerate() {
                let id = id.as_str().filter(|id| !id.is_empty());
                let field = format!("SecretIdList[{i}]");
                let id = id.ok_or_else(|| request.invalid(field, "must be a non-empty string"))?;
                push(
                    &mut out,
                    Access::new("secretsmanager:GetSecretValue", arn(id)),
                );
            }
        }
        "CreateSecret" => {
            let name = request.string(body, "", "Name")?;
            push(&mut out, request.access("secretsmanager", arn(name)));
        }
        _ => {
            let id = request.string(body, "", "SecretId")?;
            push(&mut out, request.access("secretsmanager", arn(id)));
        }
    }
    Ok(out)
}

/// The authorizations of an SQS call (`X-Amz-Target: AmazonSQS.<Operation>`): the
/// operation's action on the queue its `QueueUrl` names. A batch operation needs its single
/// form (`sqs:SendMessage` for `SendMessageBatch`): SQS has no IAM actions of its own for them.
pub fn sqs(target: &str, body: &[u8], arns: &Arns) -> Result<Vec<Access>, ActionError> {
    let request = Request::parse(target, "AmazonSQS.", body)?;
    let body = &request.body;
    let action = match request.operation {
        "SendMessageBatch" => "SendMessage",
        "DeleteMessageBatch" => "DeleteMessage",
        "ChangeMessageVisibilityBatch" => "ChangeMessageVisibility",
        other => other,
    };
    let resource = match request.operation {
        "ListQueues" => "*".to_owned(),
        "CreateQueue" | "GetQueueUrl" => arns.queue(request.string(body, "", "QueueName")?),
        _ => {
            let url = request.string(body, "", "QueueUrl")?;
            arns.queue_of_url(url)
                .ok_or_else(|| request.invalid("QueueUrl".into(), "is not a queue URL"))?
        }
    };
    Ok(vec![Access::new(format!("sqs:{action}"), resource)])
}

/// The authorization of a @connections call (`POST`, `GET` or `DELETE`) on a connection.
pub fn execute_api(
    method: &str,
    stage: &str,
    connection_id: &str,
    arns: &Arns,
    api_id: &str,
) -> Access {
    // The ARN holds the id as API Gateway decoded it from the path (`=`, not `%3D`). Decoding
    // here lets a caller pass the path segment as it came; a real id never holds a `%`.
    let id = percent_decode_str(connection_id).decode_utf8_lossy();
    let method = method.to_ascii_uppercase();
    let resource = arns.connection(api_id, stage, &method, &id);
    Access::new("execute-api:ManageConnections", resource)
}

#[cfg(test)]
#[path = "tests/actions.rs"]
mod tests;
