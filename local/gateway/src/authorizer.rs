//! A Lambda REQUEST authorizer on `$connect`, run as API Gateway runs it: a missing identity
//! source gives 401 without invoking it, an error or a Deny refuses the upgrade, an Allow
//! passes its principal and context to every later event of the connection.

use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerResponse;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::time::Instant;
use tracing::warn;

use crate::connections::Connection;
use crate::iam::policy::PolicySet;
use crate::state::{Shared, Stack};
use crate::template::{AuthorizerSpec, IdentitySource};

/// Runs the authorizer; `Ok` holds `requestContext.authorizer` for later events, `Err` the
/// status that refuses the upgrade.
pub(crate) async fn authorize(
    shared: &Shared,
    stack: &Stack,
    spec: &AuthorizerSpec,
    connection: &Connection,
    request_id: &str,
    headers: &[(String, String)],
    query: &[(String, String)],
) -> Result<Map<String, Value>, StatusCode> {
    let stage_variables = &stack.api.stage.variables;
    let present = spec.identity_sources.iter().all(|source| match source {
        IdentitySource::Header(name) => headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case(name) && !v.is_empty()),
        IdentitySource::QueryString(name) => query.iter().any(|(k, v)| k == name && !v.is_empty()),
        IdentitySource::StageVariable(name) => {
            stage_variables.get(name).is_some_and(|v| !v.is_empty())
        }
        IdentitySource::Context(_) => true,
    });
    if !present {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let method_arn = format!(
        "arn:aws:execute-api:{}:{}:{}/{}/$connect",
        shared.local.region, shared.local.account_id, stack.events.api_id, stack.events.stage
    );
    let event = request_event(stack, connection, request_id, &method_arn, headers, query);
    let Some(pool) = stack.functions.get(&spec.function) else {
        return Err(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let started = Instant::now();
    let response = match pool
        .invoke(event, crate::template::MAX_INTEGRATION_TIMEOUT)
        .await
    {
        Ok(response) => response,
        Err(crate::functions::InvokeError::Handler { message, .. })
            if message == "Unauthorized" =>
        {
            return Err(StatusCode::UNAUTHORIZED);
        }
        Err(error) => {
            warn!(request_id, "authorizer failed: {error}");
            return Err(StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    let latency_ms = started.elapsed().as_millis();
    if let Some(max) = shared.limits.quotas.max_authorizer_result_bytes {
        if response.len() > max {
            warn!(
                request_id,
                bytes = response.len(),
                "authorizer result over API Gateway's {max}-byte quota"
            );
            return Err(StatusCode::INTERNAL_SERVER_ERROR);
        }
    }
    let decision = match read_decision(&response) {
        Ok(decision) => decision,
        Err(problem) => {
            warn!(request_id, "authorizer result refused: {problem}");
            return Err(StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    if !decision
        .policy
        .evaluate("execute-api:Invoke", &method_arn)
        .is_allowed()
    {
        return Err(StatusCode::FORBIDDEN);
    }
    let mut context = decision.context;
    context.insert("principalId".into(), Value::String(decision.principal_id));
    context.insert("integrationLatency".into(), Value::from(latency_ms as u64));
    Ok(context)
}

/// What an authorizer decided, as API Gateway reads it.
#[derive(Debug)]
struct Decision {
    principal_id: String,
    policy: PolicySet,
    /// The context as later events carry it: values as strings, `null` kept.
    context: Map<String, Value>,
}

/// Reads an authorizer's result: the response type of `aws_lambda_events`, the policy with
/// IAM's semantics (the module that checks the handlers' calls), and the context as API
/// Gateway passes it on, where an object or array value fails the connection.
fn read_decision(raw: &[u8]) -> Result<Decision, String> {
    let value: Value = serde_json::from_slice(raw).map_err(|e| format!("not JSON: {e}"))?;
    let response =
        ApiGatewayCustomAuthorizerResponse::<Option<Map<String, Value>>>::deserialize(&value)
            .map_err(|e| format!("not an authorizer response: {e}"))?;
    let policy = PolicySet::parse([("policyDocument", &value["policyDocument"])])
        .map_err(|e| format!("policyDocument: {e}"))?;
    let mut context = Map::new();
    for (key, value) in response.context.unwrap_or_default() {
        let value = match value {
            Value::String(s) => Value::String(s),
            Value::Null => Value::Null,
            Value::Object(_) | Value::Array(_) => {
                return Err(format!("context value {key:?} is an object or array"))
            }
            other => Value::String(other.to_string()),
        };
        context.insert(key, value);
    }
    Ok(Decision {
        principal_id: response.principal_id.unwrap_or_default(),
        policy,
        context,
    })
}

/// The REQUEST authorizer event, shaped like the captured WebSocket one.
fn request_event(
    stack: &Stack,
    connection: &Connection,
    request_id: &str,
    method_arn: &str,
    headers: &[(String, String)],
    query: &[(String, String)],
) -> Vec<u8> {
    let facts = connection.facts();
    let pairs = |items: &[(String, String)]| {
        let mut single = Map::new();
        let mut multi = Map::new();
        for (k, v) in items {
            single.insert(k.clone(), Value::String(v.clone()));
            if let Value::Array(values) = multi
                .entry(k.clone())
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                values.push(Value::String(v.clone()));
            }
        }
        (Value::Object(single), Value::Object(multi))
    };
    let (single_headers, multi_headers) = pairs(headers);
    let (single_query, multi_query) = pairs(query);
    let now = chrono::Utc::now();
    let mut identity = Map::new();
    identity.insert(
        "sourceIp".into(),
        Value::String(facts.source_ip.to_string()),
    );
    if let Some(agent) = facts.user_agent {
        identity.insert("userAgent".into(), Value::String(agent.to_owned()));
    }
    let event = json!({
        "type": "REQUEST",
        "methodArn": method_arn,
        "headers": single_headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": single_query,
        "multiValueQueryStringParameters": multi_query,
        "stageVariables": stack.events.stage_variables,
        "requestContext": {
            "routeKey": "$connect",
            "eventType": "CONNECT",
            "extendedRequestId": request_id,
            "requestTime": now.format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
            "messageDirection": "IN",
            "stage": stack.events.stage,
            "connectedAt": facts.connected_at_ms,
            "requestTimeEpoch": now.timestamp_millis(),
            "identity": identity,
            "requestId": request_id,
            "domainName": stack.events.domain_name,
            "connectionId": facts.id,
            "apiId": stack.events.api_id,
        },
    });
    serde_json::to_vec(&event).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(result: Value) -> Result<Decision, String> {
        read_decision(result.to_string().as_bytes())
    }

    #[test]
    fn deny_wins_over_allow() {
        let arn = "arn:aws:execute-api:r:a:api/dev/$connect";
        let decision = decide(json!({
            "principalId": "alice",
            "policyDocument": {"Version": "2012-10-17", "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": arn},
                {"Action": ["execute-api:*"], "Effect": "Deny", "Resource": ["*"]}
            ]}
        }))
        .unwrap();
        assert!(!decision
            .policy
            .evaluate("execute-api:Invoke", arn)
            .is_allowed());
        let allow = decide(json!({
            "principalId": "alice",
            "policyDocument": {"Version": "2012-10-17", "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "arn:aws:execute-api:*:*:api/dev/*"}]},
        }))
        .unwrap();
        assert!(allow
            .policy
            .evaluate("execute-api:Invoke", arn)
            .is_allowed());
    }

    #[test]
    fn context_values_become_strings_null_stays_and_objects_fail() {
        let policy = json!({"Version": "2012-10-17", "Statement": []});
        let decision = decide(json!({
            "principalId": "alice", "policyDocument": policy,
            "context": {"user": "alice", "n": 1, "ok": true, "none": null}
        }))
        .unwrap();
        assert_eq!(
            Value::Object(decision.context),
            json!({"user": "alice", "n": "1", "ok": "true", "none": null})
        );
        for bad in [json!({"a": {"b": 1}}), json!({"a": [1]})] {
            let result =
                decide(json!({"principalId": "p", "policyDocument": policy, "context": bad}));
            assert!(result.is_err(), "{result:?}");
        }
        assert!(decide(json!({"principalId": "p"})).is_err(), "no policy");
    }
}
