//! Unit tests of `iam::policy`.

use super::*;

const TABLE: &str = "arn:aws:dynamodb:us-east-1:000000000000:table/realtime-dev-connections";

fn json(text: &str) -> Value {
    serde_json::from_str(&text.replace("TABLE", TABLE)).unwrap()
}

fn set(doc: &str) -> PolicySet {
    PolicySet::parse([("Role", &json(doc))]).unwrap()
}

/// Asserts each line `action resource => decision`, the decision written `allow Sid`,
/// `deny Sid` or `implicit`, and `TABLE` standing for the table's ARN.
fn check(p: &PolicySet, cases: &str) {
    for case in cases.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (request, expected) = case.split_once(" => ").unwrap();
        let (action, resource) = request.split_once(' ').unwrap();
        let decision = match p.evaluate(action, &resource.replace("TABLE", TABLE)) {
            Decision::Allow { statement } => format!("allow {statement}"),
            Decision::ExplicitDeny { statement } => format!("deny {statement}"),
            Decision::ImplicitDeny => "implicit".to_owned(),
        };
        assert_eq!(decision, expected, "{case}");
    }
}

#[test]
fn wildcards() {
    let cases = [
        ("", "", true),
        ("", "a", false),
        ("*", "", true),
        ("**", "", true),
        ("?", "", false),
        ("?*", "", false),
        ("*", "arn:aws:x/y", true),
        ("a*", "a", true),
        ("*a", "ba", true),
        ("*a", "ab", false),
        ("a**b", "axyb", true),
        ("a?c", "abc", true),
        ("a?c", "ac", false),
        ("a*b*c", "abc", true),
        ("a*b*c", "axxbyyc", true),
        ("a*b*c", "axxbyy", false),
        ("a*b*c", "acb", false),
        ("*b*", "abbbc", true),
        ("table/*", "table/x/index/y", true),
        ("é?", "éé", true),
        ("abc", "ABC", false),
    ];
    for (pattern, text, expected) in cases {
        let matched = wildcard_match(pattern, text);
        assert_eq!(matched, expected, "{pattern:?} ~ {text:?}");
    }
    // 2^20 paths for naive backtracking.
    let (pattern, text) = (format!("{}b", "*a".repeat(20)), "a".repeat(40));
    assert!(!wildcard_match(&pattern, &text));
}

#[test]
fn the_templates_policy() {
    let p = set(r#"{"Version":"2012-10-17","Statement":[
        {"Sid":"ConnectionsTable","Effect":"Allow","Action":["dynamodb:PutItem","dynamodb:Query"],"Resource":"TABLE"},
        {"Effect":"Allow","Action":"execute-api:ManageConnections","Resource":"arn:aws:execute-api:us-east-1:000000000000:local/dev/POST/@connections/*"}]}"#);
    check(&p, "
        dynamodb:PutItem TABLE => allow ConnectionsTable
        DynamoDB:putitem TABLE => allow ConnectionsTable
        dynamodb:DeleteItem TABLE => implicit
        dynamodb:PutItem arn:aws:dynamodb:us-east-1:000000000000:table/Realtime-dev-connections => implicit
        dynamodb:Query TABLE/index/gsi => implicit
        execute-api:ManageConnections arn:aws:execute-api:us-east-1:000000000000:local/dev/POST/@connections/ZmDx-dJ4FiACFkQ= => allow Role#1
        execute-api:ManageConnections arn:aws:execute-api:us-east-1:000000000000:local/dev/GET/@connections/ZmDx-dJ4FiACFkQ= => implicit
    ");
    assert!(p.evaluate("dynamodb:PutItem", TABLE).is_allowed());
    assert!(!p.evaluate("s3:GetObject", TABLE).is_allowed());
    assert!(p.unsupported_conditions().is_empty());
}

#[test]
fn deny_wins_across_policies() {
    let a = json(r#"{"Statement":{"Effect":"Allow","Action":"dynamodb:*","Resource":"*"}}"#);
    let d = r#"{"Statement":[{"Sid":"NoDeletes","Effect":"Deny","Action":"dynamodb:Delete*","Resource":"TABLE"}]}"#;
    let p = PolicySet::parse([("A", &a), ("D", &json(d))]).unwrap();
    check(
        &p,
        "
        dynamodb:DeleteItem TABLE => deny NoDeletes
        dynamodb:GetItem TABLE => allow A#0
        dynamodb:DeleteItem arn:other => allow A#0
    ",
    );
    check(&PolicySet::default(), "a:b * => implicit");
    assert_eq!(p.policies()[1].name(), "D");
}

#[test]
fn wildcards_in_actions_and_resources() {
    let p = set(r#"{"Statement":[
        {"Sid":"Q","Effect":"Allow","Action":"dynamodb:?etItem","Resource":"arn:aws:dynamodb:*:*:table/realtime-*"},
        {"Sid":"All","Effect":"Allow","Action":"*","Resource":"arn:aws:s3:::bucket/*"}]}"#);
    check(
        &p,
        "
        dynamodb:GetItem TABLE => allow Q
        dynamodb:SetItem TABLE => allow Q
        dynamodb:BatchGetItem TABLE => implicit
        dynamodb:GetItem TABLE/index/x => allow Q
        any:Thing arn:aws:s3:::bucket/a/b => allow All
        any:Thing arn:aws:s3:::bucket => implicit
    ",
    );
}

#[test]
fn not_action_and_not_resource() {
    let p = set(r#"{"Statement":[
        {"Sid":"AllButIam","Effect":"Allow","NotAction":["iam:*","sts:AssumeRole"],"Resource":"*"},
        {"Sid":"OnlyThisTable","Effect":"Deny","Action":"dynamodb:*","NotResource":["TABLE","TABLE/index/*"]}]}"#);
    check(
        &p,
        "
        dynamodb:Query TABLE => allow AllButIam
        dynamodb:Query TABLE/index/g => allow AllButIam
        IAM:CreateUser * => implicit
        sts:assumerole * => implicit
        sts:GetCallerIdentity * => allow AllButIam
        dynamodb:Query arn:aws:dynamodb:us-east-1:0:table/other => deny OnlyThisTable
    ",
    );
}

#[test]
fn conditions_are_conservative_and_reported() {
    let p = set(r#"{"Version":"2012-10-17","Statement":[
        {"Sid":"FromOffice","Effect":"Allow","Action":"dynamodb:*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"203.0.113.0/24"}}},
        {"Sid":"NoPlainHttp","Effect":"Deny","Action":"dynamodb:DeleteItem","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}},
        {"Sid":"Empty","Effect":"Allow","Action":"dynamodb:Query","Resource":"*","Condition":{}}]}"#);
    check(
        &p,
        "
        dynamodb:GetItem TABLE => implicit
        dynamodb:DeleteItem TABLE => deny NoPlainHttp
        dynamodb:Query TABLE => allow Empty
    ",
    );
    let lines = p.unsupported_conditions();
    assert_eq!(lines, [
        "policy Role statement FromOffice: condition key aws:SourceIp (IpAddress) is not evaluated locally (taken as not met: this Allow grants nothing locally)",
        "policy Role statement NoPlainHttp: condition key aws:SecureTransport (Bool) is not evaluated locally (taken as met: this Deny applies to every matching request)",
    ]);
}

#[test]
fn policy_variables_are_conservative() {
    let doc = r#"{"Version":"2012-10-17","Statement":[
        {"Sid":"Own","Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/${aws:username}/*"},
        {"Sid":"NotOthers","Effect":"Deny","Action":"s3:PutObject","Resource":"arn:aws:s3:::b/${aws:username}/*"},
        {"Sid":"Mine","Effect":"Allow","Action":"s3:PutObject","NotResource":"arn:aws:s3:::c/${aws:username}"}]}"#;
    check(
        &set(doc),
        "
        s3:GetObject arn:aws:s3:::b/alice/x => implicit
        s3:PutObject arn:aws:s3:::b/alice/x => deny NotOthers
        s3:PutObject arn:aws:s3:::c/alice => implicit
        s3:PutObject arn:aws:s3:::d => allow Mine
    ",
    );
    let lines = set(doc).unsupported_conditions();
    let own = "policy Role statement Own: policy variable ${aws:username} in the resource is not evaluated locally";
    assert_eq!((lines[0].as_str(), lines.len()), (own, 3));
    // Before 2012-10-17 `${` is plain text.
    let p = set(&doc.replace("2012-10-17", "2008-10-17"));
    check(
        &p,
        "
        s3:PutObject arn:aws:s3:::b/alice/x => allow Mine
        s3:PutObject arn:aws:s3:::b/${aws:username}/x => deny NotOthers
    ",
    );
    assert!(p.unsupported_conditions().is_empty());
}

#[test]
fn malformed_documents() {
    // `STMT` stands for a valid statement's start: `{"Effect":"Allow","Action":"a:b","Resource":"*"`.
    let cases = r#"
        [] ==> policy P: not a JSON object
        {"Version":"2012-10-17"} ==> policy P: Statement is missing or neither an object nor an array
        {"Statement":"x"} ==> policy P: Statement is missing or neither an object nor an array
        {"Version":"2020","Statement":[]} ==> policy P: Version "2020" is not "2012-10-17" or "2008-10-17"
        {"Statements":[]} ==> policy P: unknown element Statements
        {"Statement":[1]} ==> policy P statement #0: not a JSON object
        {"Statement":[STMT,"Effect":"allow"}]} ==> policy P statement #0: Effect must be "Allow" or "Deny", found "allow"
        {"Statement":{"Action":"*","Resource":"*"}} ==> policy P statement #0: Effect must be "Allow" or "Deny", found null
        {"Statement":[STMT,"NotAction":"x:y"}]} ==> policy P statement #0: has both Action and NotAction
        {"Statement":[STMT,"NotResource":"*"}]} ==> policy P statement #0: has both Resource and NotResource
        {"Statement":{"Effect":"Deny","Resource":"*"}} ==> policy P statement #0: has neither Action nor NotAction
        {"Statement":{"Effect":"Deny","Action":"*"}} ==> policy P statement #0: has neither Resource nor NotResource
        {"Statement":{"Effect":"Deny","Action":["a:b",3],"Resource":"*"}} ==> policy P statement #0: Action must be a string or an array of strings
        {"Statement":{"Effect":"Deny","Action":"*","Resource":{}}} ==> policy P statement #0: Resource must be a string or an array of strings
        {"Statement":[STMT},{"Sid":"Two","Effect":"Deny","NotAction":[1],"Resource":"*"}]} ==> policy P statement Two: NotAction must be a string or an array of strings
        {"Statement":[STMT,"Principal":"*"}]} ==> policy P statement #0: Principal belongs in resource-based policies, not in a role's policy
        {"Statement":[STMT,"Resources":"*"}]} ==> policy P statement #0: unknown element Resources
        {"Statement":[STMT,"Condition":{"Bool":true}}]} ==> policy P statement #0: Condition must map each operator to an object of condition keys
        {"Statement":[STMT,"Condition":[]}]} ==> policy P statement #0: Condition must map each operator to an object of condition keys
        {"Statement":[STMT,"Sid":1}]} ==> policy P statement #0: Sid must be a string
    "#;
    let valid = r#"{"Effect":"Allow","Action":"a:b","Resource":"*""#;
    for case in cases.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (doc, message) = case.split_once(" ==> ").unwrap();
        let error = Policy::parse("P", &json(&doc.replace("STMT", valid))).unwrap_err();
        assert_eq!(error.to_string(), message, "{doc}");
    }
    let error = Policy::parse("P", &json(r#"{"Statement":{"Effect":"Deny"}}"#));
    let at = "policy P statement #0".to_owned();
    let element = "Action";
    assert_eq!(
        error.unwrap_err(),
        PolicyError::NeitherPresent { at, element }
    );
}
