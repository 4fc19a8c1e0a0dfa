//! Fast tests of the template reader, route selection and event shapes (no processes, no
//! network): a hand-made template shaped like CDK output. At the end, properties over generated
//! input: any template bytes, and any change to the template at any place, give an API model or
//! a typed error, never a panic; any message body selects a route or none.

use std::path::Path;
use std::time::Duration;

use local_gateway::events::{self, ApiContext, ConnectionFacts};
use local_gateway::routing::RouteSelection;
use local_gateway::template::LocalContext;
use local_gateway::template::{IdentitySource, Template, TemplateError};
use serde_json::{json, Value};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/Chat-test.template.json"
);

fn ctx() -> LocalContext {
    LocalContext {
        region: "us-east-1".into(),
        account_id: "000000000000".into(),
        api_id: "local".into(),
        api_endpoint: "ws://127.0.0.1:3001".into(),
        services_endpoint: "http://127.0.0.1:4566".into(),
    }
}

fn fixture() -> Template {
    Template::load(Path::new(FIXTURE)).expect("fixture parses")
}

#[test]
fn reads_routes_of_the_websocket_api_only() {
    let api = fixture().api("test", &ctx()).unwrap();
    let mut keys: Vec<_> = api.routes.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["$connect", "$default", "echo"]);
    assert_eq!(
        api.routes["$default"].target.as_ref().unwrap().function,
        "MessageFn"
    );
    assert_eq!(
        api.routes["$default"].target.as_ref().unwrap().timeout,
        Duration::from_secs(5)
    );
    // The integration timeout caps at 29 s whatever the function says.
    assert_eq!(
        api.routes["$connect"].target.as_ref().unwrap().timeout,
        Duration::from_secs(29)
    );
    assert!(api.routes["echo"].two_way);
    assert!(!api.routes["$default"].two_way);
    assert_eq!(api.stage.name, "test");
    assert_eq!(api.stage.variables["color"], "blue");
}

#[test]
fn a_route_is_two_way_only_with_a_default_route_response() {
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
    let two_way = |change: &dyn Fn(&mut Value)| {
        let mut json = fixture.clone();
        change(&mut json);
        let template =
            Template::from_slice(Path::new("t.json"), json.to_string().as_bytes()).unwrap();
        let api = template.api("test", &ctx()).unwrap();
        let mut keys: Vec<_> = api
            .routes
            .values()
            .filter(|r| r.two_way)
            .map(|r| r.key.clone())
            .collect();
        keys.sort();
        keys
    };
    assert_eq!(two_way(&|_| {}), ["echo"]);
    // The selection expression without its route response: one-way, as in API Gateway.
    assert!(two_way(&|t| {
        t["Resources"]
            .as_object_mut()
            .unwrap()
            .remove("EchoRouteResponse");
    })
    .is_empty());
    // A route response under another key is not the one the expression selects.
    assert!(two_way(&|t| {
        t["Resources"]["EchoRouteResponse"]["Properties"]["RouteResponseKey"] = json!("other");
    })
    .is_empty());
    // A route response without the selection expression on its route sends nothing either.
    assert!(two_way(&|t| {
        t["Resources"]["EchoRouteResponse"]["Properties"]["RouteId"] =
            json!({"Ref": "DefaultRoute"});
    })
    .is_empty());
    // Both halves on `$default`: two-way.
    assert_eq!(
        two_way(&|t| {
            t["Resources"]["DefaultRoute"]["Properties"]["RouteResponseSelectionExpression"] =
                json!("$default");
            t["Resources"]["EchoRouteResponse"]["Properties"]["RouteId"] =
                json!({"Ref": "DefaultRoute"});
        }),
        ["$default"]
    );
}

#[test]
fn reads_the_authorizer_of_connect() {
    let api = fixture().api("test", &ctx()).unwrap();
    let authorizer = api.routes["$connect"]
        .authorizer
        .as_ref()
        .expect("authorizer");
    assert_eq!(authorizer.function, "AuthFn");
    assert_eq!(
        authorizer.identity_sources,
        [IdentitySource::QueryString("token".into())]
    );
    assert_eq!(api.functions["AuthFn"].binary, "/opt/handlers/authorizer");
    assert!(api.routes["$default"].authorizer.is_none());
}

#[test]
fn lists_secrets_by_name_and_arn() {
    let api = fixture().api("test", &ctx()).unwrap();
    let mut secrets = api.secrets.clone();
    secrets.sort_by(|a, b| a.logical_id.cmp(&b.logical_id));
    let summary: Vec<_> = secrets
        .iter()
        .map(|s| (s.logical_id.as_str(), s.name.as_str(), s.arn.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (
                "JwtSecret",
                "chat-test-jwt",
                "arn:aws:secretsmanager:us-east-1:000000000000:secret:chat-test-jwt"
            ),
            (
                "UnnamedSecret",
                "Chat-test-UnnamedSecret",
                "arn:aws:secretsmanager:us-east-1:000000000000:secret:Chat-test-UnnamedSecret"
            ),
        ]
    );
    // `Ref` of a secret is its ARN: what the authorizer gets to call GetSecretValue with.
    assert_eq!(
        api.functions["AuthFn"].environment["JWT_SECRET_ARN"],
        "arn:aws:secretsmanager:us-east-1:000000000000:secret:chat-test-jwt"
    );
}

#[test]
fn resolves_function_environment_to_local_values() {
    let api = fixture().api("test", &ctx()).unwrap();
    let connect = &api.functions["ConnectFn"];
    assert_eq!(connect.name, "chat-test-connect");
    assert_eq!(connect.binary, "connect");
    assert_eq!(connect.timeout, Duration::from_secs(60));
    assert_eq!(connect.memory_mb, 256);
    assert!(connect.log_format_json);
    assert_eq!(
        connect.arn,
        "arn:aws:lambda:us-east-1:000000000000:function:chat-test-connect"
    );
    let env = &connect.environment;
    assert_eq!(env["ROOMS_TABLE"], "chat-test-rooms");
    // A table without TableName gets CloudFormation's STACK-LOGICALID shape.
    assert_eq!(env["AUDIT_TABLE"], "Chat-test-AuditE5F6A7B8");
    assert_eq!(
        env["ROOMS_ARN"],
        "arn:aws:dynamodb:us-east-1:000000000000:table/chat-test-rooms"
    );
    assert_eq!(env["WHERE"], "us-east-1/000000000000/local/${Literal}");
    assert_eq!(env["RETENTION"], "7");

    let message = &api.functions["MessageFn"];
    // CALLBACK_URL is the gateway's own: never resolved, so an unresolvable one is fine.
    assert!(!message.environment.contains_key("CALLBACK_URL"));
    assert_eq!(message.environment["FIRST"], "a");
    assert_eq!(
        message.timeout,
        Duration::from_secs(3),
        "CloudFormation's default timeout"
    );
    assert_eq!(message.name, "Chat-test-MessageFn");
    // Functions no route uses are not read (their intrinsics may not resolve).
    assert!(!api.functions.contains_key("UnusedFn"));
}

#[test]
fn reads_tables_with_indexes_and_ttl() {
    let api = fixture().api("test", &ctx()).unwrap();
    let rooms = api
        .tables
        .iter()
        .find(|t| t.name == "chat-test-rooms")
        .expect("rooms table");
    assert_eq!(rooms.key_schema.len(), 2);
    assert_eq!(rooms.attribute_definitions.len(), 3);
    assert_eq!(rooms.global_secondary_indexes[0].index_name, "byRoom");
    assert_eq!(
        rooms.global_secondary_indexes[0]
            .projection
            .projection_type
            .as_deref(),
        Some("KEYS_ONLY")
    );
    assert_eq!(rooms.ttl_attribute.as_deref(), Some("expiresAt"));
    let audit = api
        .tables
        .iter()
        .find(|t| t.logical_id == "AuditE5F6A7B8")
        .expect("audit table");
    assert_eq!(audit.ttl_attribute, None);
}

#[test]
fn selects_routes_like_api_gateway() {
    let api = fixture().api("test", &ctx()).unwrap();
    let route = |body: &str| api.route_for_message(body).map(|r| r.key.clone());
    assert_eq!(route(r#"{"action":"echo"}"#).as_deref(), Some("echo"));
    assert_eq!(route(r#"{"action":"nope"}"#).as_deref(), Some("$default"));
    assert_eq!(route("not json").as_deref(), Some("$default"));
    assert_eq!(route(r#"{"no":"action"}"#).as_deref(), Some("$default"));
    assert_eq!(route(r#"["echo"]"#).as_deref(), Some("$default"));
    // Special routes are never selected by a message.
    assert_eq!(
        route(r#"{"action":"$connect"}"#).as_deref(),
        Some("$default")
    );

    let mut without_default = api.clone();
    without_default.routes.remove("$default");
    assert!(without_default.route_for_message("not json").is_none());
    assert!(without_default
        .route_for_message(r#"{"action":"echo"}"#)
        .is_some());
}

#[test]
fn route_selection_expressions() {
    let nested = RouteSelection::parse("${request.body.meta.kind}").unwrap();
    assert_eq!(
        nested.select(r#"{"meta":{"kind":"a"}}"#).as_deref(),
        Some("a")
    );
    let plain = RouteSelection::parse("$request.body.action").unwrap();
    assert_eq!(plain.select(r#"{"action":7}"#).as_deref(), Some("7"));
    assert_eq!(plain.select(r#"{"action":true}"#).as_deref(), Some("true"));
    assert_eq!(plain.select(r#"{"action":null}"#), None);
    assert!(RouteSelection::parse("$request.header.x").is_err());
    assert!(RouteSelection::parse("action").is_err());
}

#[test]
fn clear_errors_for_bad_templates() {
    let err = Template::from_slice(Path::new("x.template.json"), b"{ not json").unwrap_err();
    assert!(matches!(err, TemplateError::Parse { .. }));
    assert!(
        err.to_string()
            .starts_with("cannot parse template x.template.json"),
        "{err}"
    );

    let err = Template::load(Path::new("/nonexistent/Realtime-dev.template.json")).unwrap_err();
    assert!(err.to_string().contains("make synth-dev"), "{err}");

    let err = fixture().api("prod", &ctx()).unwrap_err();
    assert!(
        err.to_string()
            .contains(r#"defines stage "test", not "prod""#),
        "{err}"
    );

    let no_api = json!({"Resources": {}}).to_string();
    let err = Template::from_slice(Path::new("t.json"), no_api.as_bytes())
        .unwrap()
        .api("dev", &ctx())
        .unwrap_err();
    assert!(
        matches!(err, TemplateError::ApiCount { found: 0, .. }),
        "{err}"
    );
}

#[test]
fn a_routed_function_without_binary_metadata_is_an_error() {
    let mut json: Value = serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
    json["Resources"]["MessageFn"]["Metadata"] = json!({});
    let template = Template::from_slice(Path::new("t.json"), json.to_string().as_bytes()).unwrap();
    let err = template.api("test", &ctx()).unwrap_err();
    assert!(
        err.to_string().contains("MessageFn") && err.to_string().contains("local:binary"),
        "{err}"
    );
}

#[test]
fn an_unresolvable_variable_names_function_and_variable() {
    let mut json: Value = serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
    json["Resources"]["ConnectFn"]["Properties"]["Environment"]["Variables"]["BAD"] =
        json!({"Fn::ImportValue": "x"});
    let template = Template::from_slice(Path::new("t.json"), json.to_string().as_bytes()).unwrap();
    let err = template.api("test", &ctx()).unwrap_err().to_string();
    assert!(
        err.contains("ConnectFn")
            && err.contains("Environment.Variables.BAD")
            && err.contains("Fn::ImportValue"),
        "{err}"
    );
}

fn api_context() -> ApiContext {
    ApiContext {
        api_id: "local".into(),
        stage: "dev".into(),
        domain_name: "127.0.0.1:3001".into(),
        stage_variables: Default::default(),
    }
}

fn facts() -> ConnectionFacts<'static> {
    ConnectionFacts {
        id: "L0SM9cOFvHcCIhw=",
        connected_at_ms: 1_707_503_007_396,
        source_ip: "127.0.0.1".parse().unwrap(),
        user_agent: Some("test-agent"),
        authorizer: None,
    }
}

#[test]
fn connect_event_has_the_fields_of_a_captured_one() {
    let headers = [
        ("Host".to_owned(), "127.0.0.1:3001".to_owned()),
        ("Sec-WebSocket-Key".to_owned(), "abc==".to_owned()),
    ];
    let query = [
        ("token".to_owned(), "a".to_owned()),
        ("token".to_owned(), "b".to_owned()),
    ];
    let event: Value = serde_json::from_slice(&events::connect(
        &api_context(),
        &facts(),
        "REQ=",
        &headers,
        &query,
    ))
    .unwrap();
    let ctx = &event["requestContext"];
    for field in [
        "routeKey",
        "eventType",
        "extendedRequestId",
        "requestTime",
        "messageDirection",
        "stage",
        "connectedAt",
        "requestTimeEpoch",
        "identity",
        "requestId",
        "domainName",
        "connectionId",
        "apiId",
    ] {
        assert!(
            !ctx[field].is_null(),
            "requestContext.{field} missing in {event}"
        );
    }
    assert_eq!(ctx["eventType"], "CONNECT");
    assert_eq!(ctx["routeKey"], "$connect");
    assert_eq!(ctx["messageDirection"], "IN");
    assert_eq!(ctx["identity"]["sourceIp"], "127.0.0.1");
    assert_eq!(ctx["identity"]["userAgent"], "test-agent");
    assert!(ctx.get("messageId").is_none());
    assert_eq!(event["isBase64Encoded"], false);
    assert_eq!(event["headers"]["Sec-WebSocket-Key"], "abc==");
    assert_eq!(
        event["multiValueHeaders"]["Host"],
        json!(["127.0.0.1:3001"])
    );
    assert_eq!(
        event["queryStringParameters"]["token"], "b",
        "the last value, as API Gateway"
    );
    assert_eq!(
        event["multiValueQueryStringParameters"]["token"],
        json!(["a", "b"])
    );
    assert!(event.get("body").is_none());
    // requestTime as API Gateway writes it: 09/Feb/2024:18:23:28 +0000
    let time = ctx["requestTime"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_str(time, "%d/%b/%Y:%H:%M:%S %z").is_ok(),
        "{time}"
    );
    // And the handlers' own type reads it back.
    let parsed: aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest =
        serde_json::from_value(event).unwrap();
    assert_eq!(
        parsed.request_context.connection_id.as_deref(),
        Some("L0SM9cOFvHcCIhw=")
    );
}

#[test]
fn message_and_disconnect_events() {
    let event: Value = serde_json::from_slice(&events::message(
        &api_context(),
        &facts(),
        "REQ=",
        "$default",
        "hello",
    ))
    .unwrap();
    assert_eq!(event["body"], "hello");
    assert_eq!(event["requestContext"]["eventType"], "MESSAGE");
    assert!(event["requestContext"]["messageId"].is_string());
    assert!(event.get("headers").is_none() && event.get("queryStringParameters").is_none());

    let event: Value = serde_json::from_slice(&events::disconnect(
        &api_context(),
        &facts(),
        "REQ=",
        1005,
        "x",
    ))
    .unwrap();
    assert_eq!(event["requestContext"]["eventType"], "DISCONNECT");
    assert_eq!(event["requestContext"]["disconnectStatusCode"], 1005);
    assert_eq!(event["requestContext"]["disconnectReason"], "x");
    assert!(event.get("body").is_none());

    let mut authorized = facts();
    let context = json!({"principalId": "alice-id", "user": "alice"}).to_string();
    authorized.authorizer = Some(&context);
    let event: Value = serde_json::from_slice(&events::message(
        &api_context(),
        &authorized,
        "R=",
        "ping",
        "{}",
    ))
    .unwrap();
    assert_eq!(
        event["requestContext"]["authorizer"]["principalId"],
        "alice-id"
    );
    assert_eq!(event["requestContext"]["authorizer"]["user"], "alice");
}

#[test]
fn ids_look_like_api_gateway_ones() {
    let id = events::new_id();
    assert_eq!(id.len(), 16);
    assert!(id.ends_with('='));
    assert_ne!(id, events::new_id());
}

// ---------- properties (proptest) ----------

mod properties {
    use super::{ctx, FIXTURE};
    use local_gateway::template::{IdentitySource, Template};
    use proptest::prelude::*;
    use serde_json::{json, Value};
    use std::path::Path;

    fn fixture_json() -> Value {
        serde_json::from_str(&std::fs::read_to_string(FIXTURE).expect("fixture")).expect("JSON")
    }

    /// Any JSON value, a few levels deep, with the intrinsics' and CloudFormation's words among
    /// its strings and keys.
    fn any_json() -> impl Strategy<Value = Value> {
        let words = vec![
            "Ref",
            "Fn::GetAtt",
            "Fn::Join",
            "Fn::Sub",
            "Fn::Select",
            "Fn::Split",
            "AWS::Region",
            "AWS::AccountId",
            "Type",
            "Properties",
            "$connect",
            "$default",
            "$request.body.action",
            "Arn",
            "",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            ".{0,40}".prop_map(Value::String),
            prop::sample::select(words.clone()).prop_map(|s| Value::String(s.to_owned())),
        ];
        leaf.prop_recursive(3, 24, 4, move |inner| {
            let words = words.clone();
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((prop::sample::select(words), inner), 0..4).prop_map(
                    |fields| {
                        Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                    }
                ),
            ]
        })
    }

    /// Every place in a JSON value, as a path of keys and indexes.
    fn places(value: &Value, path: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
        out.push(path.clone());
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    path.push(json!(key));
                    places(child, path, out);
                    path.pop();
                }
            }
            Value::Array(items) => {
                for (index, child) in items.iter().enumerate() {
                    path.push(json!(index));
                    places(child, path, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }

    fn at<'a>(value: &'a mut Value, path: &[Value]) -> &'a mut Value {
        path.iter().fold(value, |value, step| match step {
            Value::String(key) => &mut value[key.as_str()],
            Value::Number(index) => &mut value[index.as_u64().unwrap_or(0) as usize],
            _ => value,
        })
    }

    fn read(bytes: &[u8]) {
        if let Ok(template) = Template::from_slice(Path::new("t.json"), bytes) {
            let _ = template.stage_names();
            for stage in ["test", "dev"] {
                if let Ok(api) = template.api(stage, &ctx()) {
                    let _ = api.route_for_message(r#"{"action":"join"}"#);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_bytes_are_a_template_or_a_typed_error(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            read(&bytes);
        }

        #[test]
        fn any_change_to_a_real_template_is_a_model_or_a_typed_error(
            pick in any::<prop::sample::Index>(),
            replacement in any_json(),
        ) {
            let mut template = fixture_json();
            let mut all = Vec::new();
            places(&template, &mut Vec::new(), &mut all);
            let path = pick.get(&all).clone();
            *at(&mut template, &path) = replacement;
            read(template.to_string().as_bytes());
        }

        #[test]
        fn any_body_selects_a_route_or_none(body in ".{0,120}", action in any_json()) {
            let template = Template::from_slice(Path::new("t.json"), &std::fs::read(FIXTURE).expect("fixture"))
                .expect("fixture parses");
            let api = template.api("test", &ctx()).expect("fixture is usable");
            let _ = api.route_for_message(&body);
            let _ = api.route_for_message(&json!({"action": action}).to_string());
        }

        #[test]
        fn any_identity_source_parses_or_is_refused(text in ".{0,60}") {
            let _ = IdentitySource::parse(&text);
        }
    }
}
