//! What API Gateway reads of a Lambda proxy integration's result.

use serde::Deserialize;
use serde_json::Value;

/// The keys of the Lambda proxy response format; a result object with any other key is not
/// one, and API Gateway answers it with `Internal server error` (on one-way routes too).
const PROXY_KEYS: &[&str] = &[
    "statusCode",
    "headers",
    "multiValueHeaders",
    "body",
    "isBase64Encoded",
    "cookies",
];

/// A Lambda proxy response, as far as API Gateway reads it.
#[derive(Debug, Deserialize)]
pub(super) struct ProxyResponse {
    #[serde(rename = "statusCode")]
    pub(super) status_code: u16,
    #[serde(default)]
    headers: serde_json::Map<String, Value>,
    #[serde(default)]
    pub(super) body: Option<String>,
}

/// What a message route's function returned.
#[derive(Debug)]
pub(super) enum RouteResult {
    /// A proxy response: its `body` is the reply.
    Proxy(Option<String>),
    /// Not a JSON object: the result itself is the reply.
    Raw(String),
}

impl ProxyResponse {
    /// A `$connect` result; `None` when it is not a proxy response with a status code.
    pub(super) fn parse(raw: &[u8]) -> Option<Self> {
        let value: Value = serde_json::from_slice(raw).ok()?;
        let object = value.as_object()?;
        if object.keys().any(|k| !PROXY_KEYS.contains(&k.as_str())) {
            return None;
        }
        serde_json::from_value(value).ok()
    }

    /// A message route's result, or why API Gateway refuses it.
    pub(super) fn read_route_result(raw: &[u8]) -> Result<RouteResult, String> {
        let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(raw) else {
            return Ok(RouteResult::Raw(String::from_utf8_lossy(raw).into_owned()));
        };
        if let Some(key) = object.keys().find(|k| !PROXY_KEYS.contains(&k.as_str())) {
            return Err(format!(
                "the result has key {key:?}, which is not part of the Lambda proxy response format"
            ));
        }
        match object.get("body") {
            None | Some(Value::Null) => Ok(RouteResult::Proxy(None)),
            Some(Value::String(body)) => Ok(RouteResult::Proxy(Some(body.clone()))),
            Some(_) => Err("the result's body is not a string".to_owned()),
        }
    }

    /// A header of the response, by case-insensitive name.
    pub(super) fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_str().map(str::to_owned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_results_outside_the_proxy_format_are_refused() {
        let ok = ProxyResponse::read_route_result(br#"{"statusCode":200,"body":"hi"}"#);
        assert!(
            matches!(ok, Ok(RouteResult::Proxy(Some(ref b))) if b == "hi"),
            "{ok:?}"
        );
        let raw = ProxyResponse::read_route_result(b"\"just text\"");
        assert!(matches!(raw, Ok(RouteResult::Raw(_))), "{raw:?}");
        for bad in [
            &br#"{"statusCode":200,"body":"hi","extra":1}"#[..],
            br#"{"type":"pong"}"#,
            br#"{"statusCode":200,"body":{"not":"a string"}}"#,
        ] {
            assert!(ProxyResponse::read_route_result(bad).is_err());
        }
        assert!(ProxyResponse::parse(br#"{"statusCode":200,"other":1}"#).is_none());
        assert!(ProxyResponse::parse(br#"{"statusCode":403,"body":"no"}"#).is_some());
    }
}
