//! The events handlers receive, shaped like the ones API Gateway sends (see the captured
//! fixtures shipped with `aws_lambda_events`): built with its types, then trimmed to the
//! fields real events carry.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use aws_lambda_events::apigw::{
    ApiGatewayRequestAuthorizer, ApiGatewayRequestIdentity, ApiGatewayWebsocketProxyRequest,
    ApiGatewayWebsocketProxyRequestContext,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine;
use chrono::{TimeZone, Utc};
use rand::Rng;
use serde_json::{Map, Value};

/// What every event of one API shares.
#[derive(Debug, Clone)]
pub struct ApiContext {
    /// `requestContext.apiId`.
    pub api_id: String,
    /// `requestContext.stage`.
    pub stage: String,
    /// `requestContext.domainName` (and the `Host` header API Gateway reports).
    pub domain_name: String,
    /// `stageVariables`, sent only when not empty.
    pub stage_variables: BTreeMap<String, String>,
}

/// What an event says about the connection it concerns.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionFacts<'a> {
    /// The connection id.
    pub id: &'a str,
    /// When the connection was accepted, epoch ms.
    pub connected_at_ms: i64,
    /// The client's address.
    pub source_ip: IpAddr,
    /// The client's `User-Agent`, if it sent one.
    pub user_agent: Option<&'a str>,
    /// What the authorizer returned (principalId and context) as a JSON object, if the API has one.
    pub authorizer: Option<&'a str>,
}

/// An opaque id shaped like API Gateway's (`L0SM9cOFvHcCIhw=`): 11 random bytes in base64.
pub fn new_id() -> String {
    let bytes: [u8; 11] = rand::rng().random();
    base64::engine::general_purpose::URL_SAFE.encode(bytes)
}

/// The `$connect` event: the upgrade request's headers and query string, no body.
pub fn connect(
    api: &ApiContext,
    conn: &ConnectionFacts<'_>,
    request_id: &str,
    headers: &[(String, String)],
    query: &[(String, String)],
) -> Vec<u8> {
    let mut event = base_event(api, conn, request_id, "$connect", "CONNECT");
    let mut header_map = HeaderMap::new();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::from_str(value),
        ) {
            header_map.append(name, value);
        }
    }
    event.headers = header_map.clone();
    event.multi_value_headers = header_map;
    let mut multi: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in query {
        multi.entry(k.clone()).or_default().push(v.clone());
    }
    event.query_string_parameters = multi.clone().into();
    event.multi_value_query_string_parameters = multi.into();
    let mut json = to_trimmed_json(&event);
    // HeaderMap lowercases names and QueryMap writes lists; real events keep the client's
    // header spelling and give single-valued query parameters the last value.
    json.insert("headers".into(), single_values(headers));
    json.insert("multiValueHeaders".into(), multi_values(headers));
    if query.is_empty() {
        json.remove("queryStringParameters");
        json.remove("multiValueQueryStringParameters");
    } else {
        json.insert("queryStringParameters".into(), single_values(query));
        json.insert(
            "multiValueQueryStringParameters".into(),
            multi_values(query),
        );
    }
    finish(json)
}

/// A MESSAGE event: the frame as `body`, a `messageId`, no headers.
pub fn message(
    api: &ApiContext,
    conn: &ConnectionFacts<'_>,
    request_id: &str,
    route_key: &str,
    body: &str,
) -> Vec<u8> {
    let mut event = base_event(api, conn, request_id, route_key, "MESSAGE");
    event.request_context.message_id = Some(new_id());
    event.body = Some(body.to_owned());
    let mut json = to_trimmed_json(&event);
    json.remove("headers");
    json.remove("multiValueHeaders");
    finish(json)
}

/// The `$disconnect` event, with the close status code and reason.
pub fn disconnect(
    api: &ApiContext,
    conn: &ConnectionFacts<'_>,
    request_id: &str,
    status_code: u16,
    reason: &str,
) -> Vec<u8> {
    let mut event = base_event(api, conn, request_id, "$disconnect", "DISCONNECT");
    event.request_context.disconnect_status_code = Some(i64::from(status_code));
    event.request_context.disconnect_reason = Some(reason.to_owned());
    let mut json = to_trimmed_json(&event);
    // The headers real $disconnect events carry (see the captured fixture).
    let headers = [
        ("Host".to_owned(), api.domain_name.clone()),
        ("x-api-key".to_owned(), String::new()),
        ("X-Forwarded-For".to_owned(), String::new()),
        ("x-restapi".to_owned(), String::new()),
    ];
    json.insert("headers".into(), single_values(&headers));
    json.insert("multiValueHeaders".into(), multi_values(&headers));
    finish(json)
}

fn base_event(
    api: &ApiContext,
    conn: &ConnectionFacts<'_>,
    request_id: &str,
    route_key: &str,
    event_type: &str,
) -> ApiGatewayWebsocketProxyRequest {
    let now = Utc::now();
    let mut identity = ApiGatewayRequestIdentity::default();
    identity.source_ip = Some(conn.source_ip.to_string());
    identity.user_agent = conn.user_agent.map(str::to_owned);

    let mut ctx = ApiGatewayWebsocketProxyRequestContext::default();
    ctx.route_key = Some(route_key.to_owned());
    ctx.event_type = Some(event_type.to_owned());
    ctx.extended_request_id = Some(request_id.to_owned());
    ctx.request_time = Some(now.format("%d/%b/%Y:%H:%M:%S +0000").to_string());
    ctx.message_direction = Some("IN".to_owned());
    ctx.stage = Some(api.stage.clone());
    ctx.connected_at = conn.connected_at_ms;
    ctx.request_time_epoch = now.timestamp_millis();
    ctx.identity = identity;
    ctx.request_id = Some(request_id.to_owned());
    ctx.domain_name = Some(api.domain_name.clone());
    ctx.connection_id = Some(conn.id.to_owned());
    ctx.apiid = Some(api.api_id.clone());
    // The gateway wrote this text itself from a JSON object, so it parses back.
    if let Some(Ok(fields)) = conn
        .authorizer
        .map(serde_json::from_str::<Map<String, Value>>)
    {
        let mut authorizer = ApiGatewayRequestAuthorizer::default();
        authorizer.fields = fields.into_iter().collect();
        ctx.authorizer = authorizer;
    }

    let mut event = ApiGatewayWebsocketProxyRequest::default();
    event.request_context = ctx;
    event.stage_variables = api
        .stage_variables
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    event.is_base64_encoded = false;
    event
}

/// Serializes the event and drops what real events leave out: nulls and empty maps.
fn to_trimmed_json(event: &ApiGatewayWebsocketProxyRequest) -> Map<String, Value> {
    let Ok(Value::Object(mut json)) = serde_json::to_value(event) else {
        // The type always serializes to an object; an empty one keeps the caller simple.
        return Map::new();
    };
    strip_nulls(&mut json);
    json.retain(|key, v| key == "requestContext" || !matches!(v, Value::Object(m) if m.is_empty()));
    if let Some(Value::Object(ctx)) = json.get_mut("requestContext") {
        strip_nulls(ctx);
    }
    json
}

fn strip_nulls(map: &mut Map<String, Value>) {
    map.retain(|_, v| !v.is_null());
    for v in map.values_mut() {
        if let Value::Object(inner) = v {
            strip_nulls(inner);
        }
    }
}

fn finish(json: Map<String, Value>) -> Vec<u8> {
    // Serializing a map of JSON values cannot fail.
    serde_json::to_vec(&Value::Object(json)).unwrap_or_default()
}

fn single_values(pairs: &[(String, String)]) -> Value {
    let mut map = Map::new();
    for (k, v) in pairs {
        map.insert(k.clone(), Value::String(v.clone()));
    }
    Value::Object(map)
}

fn multi_values(pairs: &[(String, String)]) -> Value {
    let mut map = Map::new();
    for (k, v) in pairs {
        if let Value::Array(values) = map
            .entry(k.clone())
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            values.push(Value::String(v.clone()));
        }
    }
    Value::Object(map)
}

/// A header name as API Gateway reports it: `sec-websocket-key` becomes `Sec-WebSocket-Key`.
pub fn canonical_header_name(lower: &str) -> String {
    const KNOWN: &[&str] = &[
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "Sec-WebSocket-Extensions",
        "Sec-WebSocket-Protocol",
        "X-Amzn-Trace-Id",
        "X-Forwarded-For",
        "X-Forwarded-Port",
        "X-Forwarded-Proto",
    ];
    if let Some(known) = KNOWN.iter().find(|k| k.eq_ignore_ascii_case(lower)) {
        return (*known).to_owned();
    }
    lower
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// An X-Ray trace header value (`Root=1-{epoch hex}-{96 random bits}`).
pub fn trace_id() -> String {
    let mut rng = rand::rng();
    let random: u128 = rng.random::<u128>() & ((1 << 96) - 1);
    format!("Root=1-{:08x}-{random:024x}", Utc::now().timestamp())
}

/// ISO-8601 with milliseconds, as GetConnection reports times.
pub fn iso8601(epoch_ms: i64) -> String {
    Utc.timestamp_millis_opt(epoch_ms)
        .single()
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}
