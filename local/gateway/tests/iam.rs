//! IAM, enforced locally: every handler signs as its own function, and each call it makes to
//! DynamoDB, Secrets Manager or @connections is checked against the role the template gives
//! it, as AWS checks it. The real stack passes; one permission removed fails, naming it.

mod support;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use local_gateway::Gateway;
use serde_json::{json, Value};
use support::*;

const AUDIT_TABLE: &str = "arn:aws:dynamodb:us-east-1:000000000000:table/realtime-dev-audit";

fn credentials(gateway: &Gateway, binary: &str) -> Credentials {
    let function = real_function_id(binary);
    let own = gateway
        .function_credentials(&function)
        .unwrap_or_else(|| panic!("{function} has credentials"));
    Credentials::new(own.access_key_id, own.secret_access_key, None, None, "iam")
}

fn dynamodb(gateway: &Gateway, credentials: Credentials, region: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .credentials_provider(credentials)
        // Where the handlers' DynamoDB calls go: the gateway's checked endpoint.
        .endpoint_url(gateway.secrets_manager_endpoint())
        .http_client(realtime_aws::clients::http_client())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

fn secrets(gateway: &Gateway, credentials: Credentials) -> aws_sdk_secretsmanager::Client {
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(credentials)
        .endpoint_url(gateway.secrets_manager_endpoint())
        .http_client(realtime_aws::clients::http_client())
        .build();
    aws_sdk_secretsmanager::Client::from_conf(config)
}

fn connections(
    gateway: &Gateway,
    credentials: Credentials,
) -> aws_sdk_apigatewaymanagement::Client {
    let config = aws_sdk_apigatewaymanagement::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(credentials)
        .endpoint_url(gateway.callback_url())
        .http_client(realtime_aws::clients::http_client())
        .build();
    aws_sdk_apigatewaymanagement::Client::from_conf(config)
}

/// The error code and message of an SDK error, whatever the operation.
fn code_and_message<E: ProvideErrorMetadata>(error: &E) -> (String, String) {
    (
        error.code().unwrap_or_default().to_owned(),
        error.message().unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_real_stack_runs_with_every_role_enforced() {
    let gateway = start_real().await;
    let mut alice = Client::connect(&gateway).await;
    let mut bob = Client::connect(&gateway).await;
    for client in [&mut alice, &mut bob] {
        client
            .request(json!({"action": "join", "room": "iam"}), "joined")
            .await;
    }
    alice
        .request(
            json!({"action": "sendmessage", "room": "iam", "text": "hello"}),
            "sent",
        )
        .await;
    bob.recv_where(|v| v["type"] == "message" && v["text"] == "hello")
        .await;
    let to = bob.id.clone();
    alice
        .request(
            json!({"action": "whisper", "to": to, "text": "psst"}),
            "sent",
        )
        .await;
    let history = bob
        .request(json!({"action": "history", "room": "iam"}), "history")
        .await;
    assert_eq!(history["messages"][0]["text"], "hello", "{history}");
    bob.request(json!({"action": "leave", "room": "iam"}), "left")
        .await;
    drop(bob);
    // The disconnect handler runs with its role too; a ping after it proves it did not stall.
    alice.request(json!({"action": "ping"}), "pong").await;
    assert_eq!(gateway.denials(), vec![], "the real roles allow every call");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permission_removed_fails_locally_naming_it() {
    // The message role without `dynamodb:Query` on the audit table: `history` cannot read it.
    let mut template = real_template();
    let message_role_policy = resources(&mut template)
        .iter_mut()
        .find(|(id, r)| r["Type"] == "AWS::IAM::Policy" && id.starts_with("MessageRole"))
        .map(|(_, r)| r)
        .expect("the message role's policy");
    let statements = message_role_policy["Properties"]["PolicyDocument"]["Statement"]
        .as_array_mut()
        .expect("statements");
    let audit = statements
        .iter_mut()
        .find(|s| s["Sid"] == "AuditTable")
        .expect("the audit table statement");
    let actions: Vec<Value> = audit["Action"]
        .as_array()
        .expect("actions")
        .iter()
        .filter(|a| *a != "dynamodb:Query")
        .cloned()
        .collect();
    assert!(!actions.is_empty());
    audit["Action"] = Value::Array(actions);
    let gateway = start(write_template(&template), |_| {}).await;

    let mut alice = Client::connect(&gateway).await;
    let reply = alice
        .request(json!({"action": "history", "room": "lobby"}), "error")
        .await;
    assert_eq!(reply["code"], "internal", "{reply}");
    // Sending still works: it needs PutItem, which the role still has.
    alice
        .request(
            json!({"action": "sendmessage", "room": "lobby", "text": "still here"}),
            "sent",
        )
        .await;
    let denials = gateway.denials();
    assert_eq!(denials.len(), 1, "{denials:?}");
    assert_eq!(denials[0].function, real_function_id("message"));
    assert_eq!(denials[0].action, "dynamodb:Query");
    assert_eq!(denials[0].resource, AUDIT_TABLE);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dynamodb_calls_fail_as_dynamodb_fails_them() {
    let gateway = start_real().await;
    let message = credentials(&gateway, "message");
    let client = dynamodb(&gateway, message.clone(), "us-east-1");

    // Allowed: the message role may query the audit table.
    client
        .query()
        .table_name("realtime-dev-audit")
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(
            ":pk",
            aws_sdk_dynamodb::types::AttributeValue::S("ROOM#nobody".into()),
        )
        .send()
        .await
        .expect("Query is allowed");

    // Not allowed: nothing grants DescribeTable.
    let error = client
        .describe_table()
        .table_name("realtime-dev-audit")
        .send()
        .await
        .expect_err("DescribeTable is not granted");
    let (code, text) = code_and_message(&error);
    assert_eq!(code, "AccessDeniedException");
    assert!(
        text.contains("is not authorized to perform: dynamodb:DescribeTable on resource: arn:aws:dynamodb:us-east-1:000000000000:table/realtime-dev-audit"),
        "{text}"
    );
    assert!(text.contains("assumed-role/"), "{text}");

    // A transaction is checked per item: the connect role may Put but not Delete.
    let connect = dynamodb(&gateway, credentials(&gateway, "connect"), "us-east-1");
    let key = |pk: &str| {
        std::collections::HashMap::from([
            (
                "pk".to_owned(),
                aws_sdk_dynamodb::types::AttributeValue::S(pk.into()),
            ),
            (
                "sk".to_owned(),
                aws_sdk_dynamodb::types::AttributeValue::S("META".into()),
            ),
        ])
    };
    let delete = aws_sdk_dynamodb::types::Delete::builder()
        .table_name("realtime-dev-connections")
        .set_key(Some(key("CONN#iam-test")))
        .build()
        .expect("delete");
    let error = connect
        .transact_write_items()
        .transact_items(
            aws_sdk_dynamodb::types::TransactWriteItem::builder()
                .delete(delete)
                .build(),
        )
        .send()
        .await
        .expect_err("DeleteItem inside a transaction is not granted to connect");
    let (code, text) = code_and_message(&error);
    assert_eq!(code, "AccessDeniedException");
    assert!(text.contains("dynamodb:DeleteItem"), "{text}");

    // Signed for another region: refused before any permission is looked at.
    let elsewhere = dynamodb(&gateway, message.clone(), "eu-west-1");
    let error = elsewhere
        .describe_table()
        .table_name("realtime-dev-audit")
        .send()
        .await
        .expect_err("wrong region");
    let (code, text) = code_and_message(&error);
    assert_eq!(code, "InvalidSignatureException", "{text}");
    assert!(text.contains("region"), "{text}");

    // A wrong secret, and a key nobody issued.
    let wrong_secret = Credentials::new(
        message.access_key_id().to_owned(),
        "not-the-secret",
        None,
        None,
        "iam",
    );
    let error = dynamodb(&gateway, wrong_secret, "us-east-1")
        .describe_table()
        .table_name("realtime-dev-audit")
        .send()
        .await
        .expect_err("wrong secret");
    assert_eq!(code_and_message(&error).0, "InvalidSignatureException");
    let stranger = Credentials::new("AKIANOBODYKNOWSTHIS", "secret", None, None, "iam");
    let error = dynamodb(&gateway, stranger, "us-east-1")
        .describe_table()
        .table_name("realtime-dev-audit")
        .send()
        .await
        .expect_err("unknown key");
    assert_eq!(code_and_message(&error).0, "UnrecognizedClientException");

    let denied: Vec<_> = gateway.denials().into_iter().map(|d| d.action).collect();
    assert_eq!(denied, ["dynamodb:DescribeTable", "dynamodb:DeleteItem"]);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_and_connections_need_their_permissions() {
    let gateway = start(write_template(&real_template_with_authorizer()), |_| {}).await;
    let secret_name = "realtime-dev-jwt-secret";

    // Only the authorizer may read the JWT secret.
    let error = secrets(&gateway, credentials(&gateway, "message"))
        .get_secret_value()
        .secret_id(secret_name)
        .send()
        .await
        .expect_err("the message role cannot read the secret");
    let (code, text) = code_and_message(&error);
    assert_eq!(code, "AccessDeniedException", "{text}");
    assert!(text.contains("secretsmanager:GetSecretValue"), "{text}");

    // The message role may POST to connections, and nothing else: GET and DELETE get 403.
    let mut alice = Client::connect_to(&format!(
        "{}?token={}",
        gateway.websocket_url(),
        gateway.local_token("alice").expect("a local token")
    ))
    .await;
    let message = connections(&gateway, credentials(&gateway, "message"));
    message
        .post_to_connection()
        .connection_id(&alice.id)
        .data(aws_sdk_apigatewaymanagement::primitives::Blob::new(
            b"{\"type\":\"hi\"}".to_vec(),
        ))
        .send()
        .await
        .expect("POST is granted");
    alice.recv_where(|v| v["type"] == "hi").await;
    let error = message
        .get_connection()
        .connection_id(&alice.id)
        .send()
        .await
        .expect_err("GET is not granted");
    let raw = error.raw_response().map(|r| r.status().as_u16());
    assert_eq!(raw, Some(403));
    assert_eq!(code_and_message(&error).0, "ForbiddenException");

    // The connect role has no @connections permission at all.
    let error = connections(&gateway, credentials(&gateway, "connect"))
        .post_to_connection()
        .connection_id(&alice.id)
        .data(aws_sdk_apigatewaymanagement::primitives::Blob::new(
            b"{}".to_vec(),
        ))
        .send()
        .await
        .expect_err("connect cannot post");
    assert_eq!(code_and_message(&error).0, "ForbiddenException");

    let denied: Vec<_> = gateway
        .denials()
        .into_iter()
        .map(|d| (d.action, d.resource.contains("/GET/@connections/")))
        .collect();
    assert_eq!(
        denied,
        [
            ("secretsmanager:GetSecretValue".to_owned(), false),
            ("execute-api:ManageConnections".to_owned(), true),
            ("execute-api:ManageConnections".to_owned(), false),
        ]
    );
    gateway.shutdown().await;
}
