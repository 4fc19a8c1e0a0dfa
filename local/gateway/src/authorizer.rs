//! A Lambda REQUEST authorizer on `$connect`, run as API Gateway runs it: a missing identity
//! source gives 401 without invoking it, an error or a Deny refuses the upgrade, an Allow
//! passes its principal and context to every later event of the connection.

use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tracing::warn;

use crate::connections::Connection;
use crate::state::Shared;
use crate::template::{AuthorizerSpec, IdentitySource};

/// Runs the authorizer; `Ok` holds `requestContext.authorizer` for later events, `Err` the
/// status that refuses the upgrade.
pub(crate) async fn authorize(
    shared: &Shared,
    spec: &AuthorizerSpec,
    connection: &Connection,
    request_id: &str,
    headers: &[(String, String)],
    query: &[(String, String)],
) -> Result<Map<String, Value>, StatusCode> {
    let stage_variables = &shared.api.stage.variables;
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
        shared.local.region, shared.local.account_id, shared.events.api_id, shared.events.stage
    );
    let event = request_event(shared, connection, request_id, &method_arn, headers, query);
    let Some(pool) = shared.functions.get(&spec.function) else {
        return Err(StatusCode::INTERNAL_SERVER_ERROR);
    };
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
    let Ok(decision) = serde_json::from_slice::<Decision>(&response) else {
        warn!(request_id, "authorizer returned no valid policy");
        return Err(StatusCode::INTERNAL_SERVER_ERROR);
    };
    if !decision.allows(&method_arn) {
        return Err(StatusCode::FORBIDDEN);
    }
    let mut context = Map::new();
    context.insert(
        "principalId".into(),
        Value::String(decision.principal_id.unwrap_or_default()),
    );
    for (key, value) in decision.context {
        // API Gateway hands context values on as strings.
        let text = match value {
            Value::String(s) => s,
            other => other.to_string(),
        };
        context.insert(key, Value::String(text));
    }
    Ok(context)
}

/// The REQUEST authorizer event, shaped like the captured WebSocket one.
fn request_event(
    shared: &Shared,
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
        "stageVariables": shared.events.stage_variables,
        "requestContext": {
            "routeKey": "$connect",
            "eventType": "CONNECT",
            "extendedRequestId": request_id,
            "requestTime": now.format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
            "messageDirection": "IN",
            "stage": shared.events.stage,
            "connectedAt": facts.connected_at_ms,
            "requestTimeEpoch": now.timestamp_millis(),
            "identity": identity,
            "requestId": request_id,
            "domainName": shared.events.domain_name,
            "connectionId": facts.id,
            "apiId": shared.events.api_id,
        },
    });
    serde_json::to_vec(&event).unwrap_or_default()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Decision {
    #[serde(default)]
    principal_id: Option<String>,
    policy_document: PolicyDocument,
    #[serde(default)]
    context: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PolicyDocument {
    #[serde(default)]
    statement: Vec<Statement>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Statement {
    effect: String,
    #[serde(default)]
    action: OneOrMany,
    #[serde(default)]
    resource: OneOrMany,
}

#[derive(Debug, Deserialize, Default)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
    #[default]
    None,
}

impl OneOrMany {
    fn any(&self, f: impl Fn(&str) -> bool) -> bool {
        match self {
            Self::One(s) => f(s),
            Self::Many(items) => items.iter().any(|s| f(s)),
            Self::None => false,
        }
    }
}

impl Decision {
    /// Allowed when an Allow statement covers the method and no Deny does.
    fn allows(&self, method_arn: &str) -> bool {
        let covers = |s: &Statement| {
            s.action.any(|a| wildcard_match(a, "execute-api:Invoke"))
                && s.resource.any(|r| wildcard_match(r, method_arn))
        };
        let statements = &self.policy_document.statement;
        statements
            .iter()
            .any(|s| s.effect.eq_ignore_ascii_case("Allow") && covers(s))
            && !statements
                .iter()
                .any(|s| s.effect.eq_ignore_ascii_case("Deny") && covers(s))
    }
}

/// IAM-style matching: `*` is any run of characters, `?` one character.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_iam() {
        let arn = "arn:aws:execute-api:us-east-1:000000000000:local/dev/$connect";
        assert!(wildcard_match("*", arn));
        assert!(wildcard_match("arn:aws:execute-api:*:*:local/dev/*", arn));
        assert!(wildcard_match(arn, arn));
        assert!(!wildcard_match("arn:aws:execute-api:*:*:local/prod/*", arn));
        assert!(wildcard_match("execute-api:*", "execute-api:Invoke"));
    }

    #[test]
    fn deny_wins_over_allow() {
        let arn = "arn:aws:execute-api:r:a:api/dev/$connect";
        let decision: Decision = serde_json::from_value(json!({
            "principalId": "alice",
            "policyDocument": {"Version": "2012-10-17", "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": arn},
                {"Action": ["execute-api:*"], "Effect": "Deny", "Resource": ["*"]}
            ]}
        }))
        .unwrap();
        assert!(!decision.allows(arn));
        let allow: Decision = serde_json::from_value(json!({
            "principalId": "alice",
            "policyDocument": {"Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": arn}]},
            "context": {"user": "alice", "n": 1}
        }))
        .unwrap();
        assert!(allow.allows(arn));
    }
}
