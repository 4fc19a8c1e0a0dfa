//! Unit tests of `iam::actions`.

use super::*;

const ACCOUNT: &str = "arn:aws:dynamodb:us-east-1:000000000000:";
const SECRET: &str = "arn:aws:secretsmanager:us-east-1:000000000000:secret:realtime-dev-jwt-AbCdEf";

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
    let resolve = |id: &str| (id == "realtime-dev-jwt" || id == SECRET).then(|| SECRET.to_owned());
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
    let arn =
        "arn:aws:execute-api:us-east-1:000000000000:local/dev/POST/@connections/ZmDx-dJ4FiACFkQ=";
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
