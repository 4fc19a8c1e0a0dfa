//! What a request asks IAM for: the (action, resource) pairs IAM checks before DynamoDB,
//! Secrets Manager or the @connections API runs a call, read from the request the SDK sends.

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
mod tests {
    use super::*;

    const ACCOUNT: &str = "arn:aws:dynamodb:us-east-1:000000000000:";
    const SECRET: &str =
        "arn:aws:secretsmanager:us-east-1:000000000000:secret:realtime-dev-jwt-AbCdEf";

    fn arns() -> Arns {
        Arns::new("us-east-1", "000000000000")
    }

    /// The accesses of a DynamoDB call, with this account's ARN prefix left out.
    fn ddb(operation: &str, body: &str) -> Vec<String> {
        let target = format!("DynamoDB_20120810.{operation}");
        let accesses = dynamodb(&target, body.as_bytes(), &arns()).unwrap();
        accesses
            .iter()
            .map(|a| a.to_string().replace(ACCOUNT, ""))
            .collect()
    }

    fn ddb_error(operation: &str, body: &str) -> String {
        let target = format!("DynamoDB_20120810.{operation}");
        dynamodb(&target, body.as_bytes(), &arns())
            .unwrap_err()
            .to_string()
    }

    fn secrets(operation: &str, body: &str) -> Result<Vec<String>, ActionError> {
        let resolve =
            |id: &str| (id == "realtime-dev-jwt" || id == SECRET).then(|| SECRET.to_owned());
        let target = format!("secretsmanager.{operation}");
        let accesses = secrets_manager(&target, body.as_bytes(), resolve)?;
        Ok(accesses.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn single_item_operations_as_the_handlers_send_them() {
        // The rate limiter's conditional put and the membership check's get.
        let put = r##"{"TableName":"realtime-dev-connections","Item":{"pk":{"S":"CONN#ZmDx-dJ4FiACFkQ="},"sk":{"S":"RATE"},"tat":{"N":"1718000000123"},"expiresAt":{"N":"1718003600"}},"ConditionExpression":"attribute_not_exists(#pk)","ExpressionAttributeNames":{"#pk":"pk"}}"##;
        assert_eq!(
            ddb("PutItem", put),
            ["dynamodb:PutItem on table/realtime-dev-connections"]
        );
        let get = r##"{"TableName":"realtime-dev-connections","Key":{"pk":{"S":"CONN#ZmDx-dJ4FiACFkQ="},"sk":{"S":"ROOM#lobby"}},"ConsistentRead":true,"ProjectionExpression":"#expiresAt","ExpressionAttributeNames":{"#expiresAt":"expiresAt"}}"##;
        assert_eq!(
            ddb("GetItem", get),
            ["dynamodb:GetItem on table/realtime-dev-connections"]
        );
        let arn = format!(r#"{{"TableName":"{ACCOUNT}table/realtime-dev-audit","Key":{{}}}}"#);
        assert_eq!(
            ddb("DeleteItem", &arn),
            ["dynamodb:DeleteItem on table/realtime-dev-audit"]
        );
        let other = r#"{"TableName":"arn:aws:dynamodb:eu-west-1:111111111111:table/elsewhere"}"#;
        let resource =
            "dynamodb:DescribeTable on arn:aws:dynamodb:eu-west-1:111111111111:table/elsewhere";
        assert_eq!(ddb("DescribeTable", other), [resource]);
    }

    #[test]
    fn queries_and_scans_of_tables_and_indexes() {
        let query = r##"{"TableName":"realtime-dev-audit","ConsistentRead":false,"FilterExpression":"#expiresAt > :now","KeyConditionExpression":"#pk = :pk","ExpressionAttributeNames":{"#pk":"pk","#expiresAt":"expiresAt"},"ExpressionAttributeValues":{":pk":{"S":"ROOM#lobby"},":now":{"N":"1718000000"}},"ScanIndexForward":false,"Limit":50}"##;
        assert_eq!(
            ddb("Query", query),
            ["dynamodb:Query on table/realtime-dev-audit"]
        );
        let by_index = query.replace(r#""ConsistentRead":false"#, r#""IndexName":"byUser""#);
        let expected = ["dynamodb:Query on table/realtime-dev-audit/index/byUser"];
        assert_eq!(ddb("Query", &by_index), expected);
        let scan =
            format!(r#"{{"TableName":"{ACCOUNT}table/realtime-dev-audit","IndexName":"byUser"}}"#);
        assert_eq!(
            ddb("Scan", &scan),
            ["dynamodb:Scan on table/realtime-dev-audit/index/byUser"]
        );
        assert_eq!(
            arns().index("t1", "i1"),
            format!("{ACCOUNT}table/t1/index/i1")
        );
    }

    #[test]
    fn transactions_are_authorized_per_item() {
        // `add connection`: three puts on one table, which IAM checks once.
        let add = r##"{"TransactItems":[
            {"Put":{"TableName":"realtime-dev-connections","Item":{"pk":{"S":"CONN#ZmDx-dJ4FiACFkQ="},"sk":{"S":"META"},"connectionId":{"S":"ZmDx-dJ4FiACFkQ="},"connectedAt":{"S":"2024-06-10T08:00:00.000Z"},"expiresAt":{"N":"1718014400"}}}},
            {"Put":{"TableName":"realtime-dev-connections","Item":{"pk":{"S":"ROOM#lobby"},"sk":{"S":"CONN#ZmDx-dJ4FiACFkQ="},"connectionId":{"S":"ZmDx-dJ4FiACFkQ="},"expiresAt":{"N":"1718014400"}}}},
            {"Put":{"TableName":"realtime-dev-connections","Item":{"pk":{"S":"CONN#ZmDx-dJ4FiACFkQ="},"sk":{"S":"ROOM#lobby"},"room":{"S":"lobby"},"expiresAt":{"N":"1718014400"}}}}]}"##;
        let put = "dynamodb:PutItem on table/realtime-dev-connections";
        assert_eq!(ddb("TransactWriteItems", add), [put]);
        let mixed = r##"{"TransactItems":[
            {"Delete":{"TableName":"realtime-dev-connections","Key":{"pk":{"S":"ROOM#lobby"},"sk":{"S":"CONN#x"}}}},
            {"Update":{"TableName":"realtime-dev-audit","Key":{},"UpdateExpression":"SET #n = :n"}},
            {"ConditionCheck":{"TableName":"arn:aws:dynamodb:us-east-1:000000000000:table/realtime-dev-audit","Key":{},"ConditionExpression":"attribute_exists(pk)"}},
            {"Put":{"TableName":"realtime-dev-connections","Item":{}}}]}"##;
        assert_eq!(
            ddb("TransactWriteItems", mixed),
            [
                "dynamodb:DeleteItem on table/realtime-dev-connections",
                "dynamodb:UpdateItem on table/realtime-dev-audit",
                "dynamodb:ConditionCheckItem on table/realtime-dev-audit",
                put,
            ]
        );
        let get = r#"{"TransactItems":[{"Get":{"TableName":"realtime-dev-connections","Key":{}}},{"Get":{"TableName":"realtime-dev-audit","Key":{}}}]}"#;
        assert_eq!(
            ddb("TransactGetItems", get),
            [
                "dynamodb:GetItem on table/realtime-dev-connections",
                "dynamodb:GetItem on table/realtime-dev-audit",
            ]
        );
    }

    #[test]
    fn batches_are_authorized_as_the_batch_on_each_table() {
        // `forget`: the deletes of one connection's items.
        let forget = r#"{"RequestItems":{"realtime-dev-connections":[{"DeleteRequest":{"Key":{"pk":{"S":"CONN#x"},"sk":{"S":"META"}}}},{"DeleteRequest":{"Key":{"pk":{"S":"ROOM#lobby"},"sk":{"S":"CONN#x"}}}}]}}"#;
        let expected = ["dynamodb:BatchWriteItem on table/realtime-dev-connections"];
        assert_eq!(ddb("BatchWriteItem", forget), expected);
        let get = format!(
            r#"{{"RequestItems":{{"realtime-dev-audit":{{"Keys":[{{}}]}},"{ACCOUNT}table/realtime-dev-connections":{{"Keys":[{{}}]}}}}}}"#
        );
        let mut tables = ddb("BatchGetItem", &get);
        tables.sort();
        assert_eq!(
            tables,
            [
                "dynamodb:BatchGetItem on table/realtime-dev-audit",
                "dynamodb:BatchGetItem on table/realtime-dev-connections",
            ]
        );
    }

    #[test]
    fn operations_on_no_table_and_on_tags() {
        assert_eq!(ddb("ListTables", "{}"), ["dynamodb:ListTables on *"]);
        assert_eq!(
            ddb("DescribeLimits", "{}"),
            ["dynamodb:DescribeLimits on *"]
        );
        assert_eq!(
            ddb("DescribeEndpoints", "{}"),
            ["dynamodb:DescribeEndpoints on *"]
        );
        let tags = format!(r#"{{"ResourceArn":"{ACCOUNT}table/realtime-dev-audit"}}"#);
        let expected = ["dynamodb:ListTagsOfResource on table/realtime-dev-audit"];
        assert_eq!(ddb("ListTagsOfResource", &tags), expected);
    }

    #[test]
    fn bad_dynamodb_requests() {
        let target = |t: &str| dynamodb(t, b"{}", &arns()).unwrap_err().to_string();
        let prefix = "does not name an operation: expected DynamoDB_20120810.<Operation>";
        assert_eq!(
            target("DynamoDB_20120810."),
            format!(r#"X-Amz-Target "DynamoDB_20120810." {prefix}"#)
        );
        assert!(target("secretsmanager.GetSecretValue").ends_with(prefix));
        assert!(target("DynamoDB_20120810.Get/Item").ends_with(prefix));
        let cases = [
            ("PutItem", "", "PutItem: the body is not a JSON object (EOF while parsing a value at line 1 column 0)"),
            ("PutItem", "not json", "PutItem: the body is not a JSON object (expected ident at line 1 column 2)"),
            ("PutItem", "[]", "PutItem: the body is not a JSON object (found an array)"),
            ("PutItem", r#"{"Item":{}}"#, "PutItem: TableName is missing"),
            ("PutItem", r#"{"TableName":7}"#, "PutItem: TableName must be a string"),
            ("PutItem", r#"{"TableName":""}"#, "PutItem: TableName must not be empty"),
            ("PutItem", r#"{"TableName":"a/index/b"}"#, "PutItem: TableName is neither a valid table name nor a table ARN"),
            ("PutItem", r#"{"TableName":"arn:aws:s3:::table/x"}"#, "PutItem: TableName is neither a valid table name nor a table ARN"),
            ("Query", r#"{"TableName":"arn:aws:dynamodb:us-east-1:0:table/t1/index/i1"}"#, "Query: TableName is neither a valid table name nor a table ARN"),
            ("Query", r#"{"TableName":"tbl","IndexName":"*"}"#, "Query: IndexName is not a valid index name"),
            ("Scan", r#"{"TableName":"tbl","IndexName":null}"#, "Scan: IndexName must be a string"),
            ("TransactWriteItems", "{}", "TransactWriteItems: TransactItems is missing"),
            ("TransactWriteItems", r#"{"TransactItems":[]}"#, "TransactWriteItems: TransactItems must not be empty"),
            ("TransactWriteItems", r#"{"TransactItems":{}}"#, "TransactWriteItems: TransactItems must be an array"),
            ("TransactWriteItems", r#"{"TransactItems":[1]}"#, "TransactWriteItems: TransactItems[0] must be an object"),
            ("TransactWriteItems", r#"{"TransactItems":[{"Get":{}}]}"#, "TransactWriteItems: TransactItems[0] must hold exactly one of Put, Update, Delete and ConditionCheck"),
            ("TransactWriteItems", r#"{"TransactItems":[{"Put":{"TableName":"tbl"},"Delete":{"TableName":"tbl"}}]}"#, "TransactWriteItems: TransactItems[0] must hold exactly one of Put, Update, Delete and ConditionCheck"),
            ("TransactWriteItems", r#"{"TransactItems":[{"Put":{"TableName":"tbl"}},{"Update":{"Key":{}}}]}"#, "TransactWriteItems: TransactItems[1].Update.TableName is missing"),
            ("TransactWriteItems", r#"{"TransactItems":[{"Put":[]}]}"#, "TransactWriteItems: TransactItems[0].Put must be an object"),
            ("TransactGetItems", r#"{"TransactItems":[{"Put":{}}]}"#, "TransactGetItems: TransactItems[0] must hold Get"),
            ("BatchWriteItem", "{}", "BatchWriteItem: RequestItems is missing"),
            ("BatchWriteItem", r#"{"RequestItems":{}}"#, "BatchWriteItem: RequestItems must name a table"),
            ("BatchGetItem", r#"{"RequestItems":[]}"#, "BatchGetItem: RequestItems must be an object"),
            ("BatchGetItem", r#"{"RequestItems":{"x":{}}}"#, r#"BatchGetItem: RequestItems["x"] is neither a valid table name nor a table ARN"#),
            ("ExecuteStatement", r#"{"Statement":"SELECT * FROM t"}"#, "ExecuteStatement: not authorized locally: a PartiQL statement is authorized by its kind (dynamodb:PartiQLSelect, ...), which takes parsing the statement"),
            ("TagResource", "{}", "TagResource: ResourceArn is missing"),
        ];
        for (operation, body, message) in cases {
            assert_eq!(ddb_error(operation, body), message, "{operation} {body}");
        }
        let error = dynamodb("DynamoDB_20120810.GetItem", b"{}", &arns()).unwrap_err();
        let expected = ActionError::Missing {
            operation: "GetItem".into(),
            field: "TableName".into(),
        };
        assert_eq!(error, expected);
    }

    #[test]
    fn secrets_manager_calls() {
        let by_arn = format!(r#"{{"SecretId":"{SECRET}"}}"#);
        let get = format!("secretsmanager:GetSecretValue on {SECRET}");
        assert_eq!(secrets("GetSecretValue", &by_arn).unwrap(), [get.as_str()]);
        let by_name = r#"{"SecretId":"realtime-dev-jwt","VersionStage":"AWSCURRENT"}"#;
        assert_eq!(secrets("GetSecretValue", by_name).unwrap(), [get.as_str()]);
        let unknown = secrets("DescribeSecret", r#"{"SecretId":"nope"}"#).unwrap();
        assert_eq!(unknown, ["secretsmanager:DescribeSecret on nope"]);
        assert_eq!(
            secrets("ListSecrets", "{}").unwrap(),
            ["secretsmanager:ListSecrets on *"]
        );
        let create = secrets("CreateSecret", r#"{"Name":"new","SecretString":"x"}"#).unwrap();
        assert_eq!(create, ["secretsmanager:CreateSecret on new"]);
        let batch = format!(r#"{{"SecretIdList":["realtime-dev-jwt","{SECRET}","other"]}}"#);
        assert_eq!(
            secrets("BatchGetSecretValue", &batch).unwrap(),
            [
                "secretsmanager:BatchGetSecretValue on *".to_owned(),
                get,
                "secretsmanager:GetSecretValue on other".to_owned(),
            ]
        );
        let errors = [
            ("GetSecretValue", "{}", "GetSecretValue: SecretId is missing"),
            ("GetSecretValue", r#"{"SecretId":""}"#, "GetSecretValue: SecretId must not be empty"),
            ("GetSecretValue", "[1]", "GetSecretValue: the body is not a JSON object (found an array)"),
            ("CreateSecret", r#"{"SecretId":"x"}"#, "CreateSecret: Name is missing"),
            ("BatchGetSecretValue", r#"{"SecretIdList":["a",2]}"#, "BatchGetSecretValue: SecretIdList[1] must be a non-empty string"),
            ("BatchGetSecretValue", r#"{"Filters":[{"Key":"name","Values":["x"]}]}"#, "BatchGetSecretValue: not authorized locally: with Filters, the secrets read (each needing secretsmanager:GetSecretValue) are known only once listed"),
        ];
        for (operation, body, message) in errors {
            assert_eq!(secrets(operation, body).unwrap_err().to_string(), message);
        }
        let target = secrets_manager("DynamoDB_20120810.GetItem", b"{}", |_| None).unwrap_err();
        let expected = ActionError::Target {
            target: "DynamoDB_20120810.GetItem".into(),
            prefix: "secretsmanager.",
        };
        assert_eq!(target, expected);
    }

    #[test]
    fn connections_calls() {
        let access = execute_api("post", "dev", "ZmDx-dJ4FiACFkQ=", &arns(), "local");
        assert_eq!(access.action, "execute-api:ManageConnections");
        let arn = "arn:aws:execute-api:us-east-1:000000000000:local/dev/POST/@connections/ZmDx-dJ4FiACFkQ=";
        assert_eq!(access.resource, arn);
        let encoded = execute_api("POST", "dev", "ZmDx-dJ4FiACFkQ%3D", &arns(), "local");
        assert_eq!(encoded, access);
        let delete = execute_api("DELETE", "prod", "HXT_RfBnPHcCIIg=", &arns(), "a1b2c3d4e5");
        let arn = "arn:aws:execute-api:us-east-1:000000000000:a1b2c3d4e5/prod/DELETE/@connections/HXT_RfBnPHcCIIg=";
        assert_eq!(
            delete.to_string(),
            format!("execute-api:ManageConnections on {arn}")
        );
    }
}
