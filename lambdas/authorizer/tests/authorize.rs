//! The authorizer on a captured `$connect` authorizer event.

use std::time::{SystemTime, UNIX_EPOCH};

use authorizer::{authorize, AuthConfig};
use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest;
use aws_lambda_events::iam::IamPolicyEffect;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use lambda_runtime::{Context, LambdaEvent};
use realtime_auth::Verifier;
use serde_json::json;

const SECRET: &[u8] = b"another-test-secret-long-enough-0123456789";

fn token(sub: &str, exp_offset: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = json!({"sub": sub, "name": "Alice Doe", "iat": now, "exp": now + exp_offset});
    realtime_auth::jwt_crypto::install();
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap()
}

fn event(
    query_token: Option<&str>,
    header: Option<&str>,
) -> LambdaEvent<ApiGatewayCustomAuthorizerRequestTypeRequest> {
    let path = format!(
        "{}/tests/fixtures/authorizer.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    value["queryStringParameters"] = match query_token {
        Some(t) => json!({"token": t}),
        None => json!({}),
    };
    value["multiValueQueryStringParameters"] = json!({});
    value["headers"] = match header {
        Some(h) => json!({"Authorization": h}),
        None => json!({}),
    };
    value["multiValueHeaders"] = json!({});
    LambdaEvent::new(serde_json::from_value(value).unwrap(), Context::default())
}

const METHOD_ARN: &str = "arn:aws:execute-api:eu-west-1:123456789012:abcdef123/test/$connect";

#[tokio::test]
async fn a_valid_token_allows_exactly_the_method_arn_with_the_user_in_the_context() {
    let verifier = Verifier::hs256(SECRET).unwrap();
    let response = authorize(&verifier, event(Some(&token("alice", 600)), None))
        .await
        .unwrap();
    assert_eq!(response.principal_id.as_deref(), Some("alice"));
    let statement = &response.policy_document.statement;
    assert_eq!(statement.len(), 1);
    assert_eq!(statement[0].effect, IamPolicyEffect::Allow);
    assert_eq!(statement[0].action, vec!["execute-api:Invoke"]);
    assert_eq!(statement[0].resource, vec![METHOD_ARN]);
    assert_eq!(
        response.context,
        json!({"userId": "alice", "name": "Alice Doe"})
    );
    // The wire format API Gateway reads.
    let wire = serde_json::to_value(&response).unwrap();
    assert_eq!(wire["policyDocument"]["Statement"][0]["Effect"], "Allow");
    assert_eq!(wire["policyDocument"]["Version"], "2012-10-17");
}

#[tokio::test]
async fn a_bearer_header_works_when_there_is_no_query_token() {
    let verifier = Verifier::hs256(SECRET).unwrap();
    let header = format!("Bearer {}", token("bob", 600));
    let response = authorize(&verifier, event(None, Some(&header)))
        .await
        .unwrap();
    assert_eq!(response.principal_id.as_deref(), Some("bob"));
    assert_eq!(
        response.policy_document.statement[0].effect,
        IamPolicyEffect::Allow
    );
}

#[tokio::test]
async fn missing_expired_or_forged_tokens_are_denied_with_an_empty_context() {
    let verifier = Verifier::hs256(SECRET).unwrap();
    let forged = {
        let claims = json!({"sub": "admin", "exp": 4_000_000_000u64});
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"guessed-secret-guessed-secret-0123").unwrap(),
        )
        .unwrap()
    };
    let expired = token("alice", -3600);
    for (query, header) in [
        (None, None),
        (Some(expired.as_str()), None),
        (Some(forged.as_str()), None),
        (Some("garbage"), None),
    ] {
        let response = authorize(&verifier, event(query, header)).await.unwrap();
        assert_eq!(
            response.policy_document.statement[0].effect,
            IamPolicyEffect::Deny,
            "{query:?}"
        );
        assert_eq!(
            response.policy_document.statement[0].resource,
            vec![METHOD_ARN]
        );
        assert_eq!(response.context, json!({}));
        assert_ne!(response.principal_id.as_deref(), Some("admin"));
    }
}

fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

#[test]
fn config_names_what_is_missing_or_wrong() {
    assert_eq!(
        AuthConfig::from_lookup(env(&[])).unwrap_err().to_string(),
        "environment variable AUTH_MODE is not set"
    );
    let err = AuthConfig::from_lookup(env(&[("AUTH_MODE", "basic")]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("AUTH_MODE") && err.contains("hs256 or jwks"),
        "{err}"
    );
    let err = AuthConfig::from_lookup(env(&[("AUTH_MODE", "hs256")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("JWT_SECRET_ARN"), "{err}");
    let err = AuthConfig::from_lookup(env(&[("AUTH_MODE", "jwks"), ("JWKS_URL", "https://x")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("JWT_ISSUER"), "{err}");
    let err = AuthConfig::from_lookup(env(&[
        ("AUTH_MODE", "jwks"),
        ("JWKS_URL", "https://x"),
        ("JWT_ISSUER", "i"),
        ("JWT_AUDIENCE", "a"),
        ("JWT_ALGORITHM", "HS256"),
    ]))
    .unwrap_err()
    .to_string();
    assert!(err.contains("RS256 or ES256"), "{err}");
    let ok = AuthConfig::from_lookup(env(&[
        ("AUTH_MODE", "jwks"),
        ("JWKS_URL", "https://x"),
        ("JWT_ISSUER", "i"),
        ("JWT_AUDIENCE", "a"),
        ("JWT_ALGORITHM", "ES256"),
    ]))
    .unwrap();
    assert!(matches!(
        ok,
        AuthConfig::Jwks {
            algorithm: Algorithm::ES256,
            ..
        }
    ));
}
