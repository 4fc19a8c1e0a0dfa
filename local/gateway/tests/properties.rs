//! Properties of the template reader and route selection, over generated input: any template
//! bytes, and any change to a real template at any place, give an API model or a typed error,
//! never a panic; any message body selects a route or none.

use std::path::Path;

use local_gateway::intrinsics::LocalContext;
use local_gateway::template::{IdentitySource, Template};
use proptest::prelude::*;
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
    }
}

fn fixture() -> Value {
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
            prop::collection::vec((prop::sample::select(words), inner), 0..4).prop_map(|fields| {
                Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
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
        let mut template = fixture();
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
