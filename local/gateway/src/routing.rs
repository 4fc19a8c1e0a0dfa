//! Route selection as API Gateway does it: evaluate `$request.body.PATH` on the JSON frame and
//! turn the result into a route key.

use serde_json::Value;

/// Why a route selection expression cannot be evaluated locally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route selection expression {0:?} is not supported: expected $request.body.FIELD")]
pub struct SelectionError(pub String);

/// A parsed `$request.body.a.b` expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSelection {
    path: Vec<String>,
}

impl RouteSelection {
    /// Parses `$request.body.PATH` (also written `${request.body.PATH}`).
    pub fn parse(expression: &str) -> Result<Self, SelectionError> {
        let trimmed = expression.trim();
        let inner = trimmed
            .strip_prefix("${")
            .and_then(|s| s.strip_suffix('}'))
            .or_else(|| trimmed.strip_prefix('$'))
            .ok_or_else(|| SelectionError(expression.to_owned()))?;
        let path = inner
            .strip_prefix("request.body.")
            .ok_or_else(|| SelectionError(expression.to_owned()))?;
        let path: Vec<String> = path.split('.').map(str::to_owned).collect();
        if path.iter().any(String::is_empty) {
            return Err(SelectionError(expression.to_owned()));
        }
        Ok(Self { path })
    }

    /// The route key a frame selects; `None` when the frame is not JSON or lacks the field,
    /// which sends it to `$default`.
    pub fn select(&self, body: &str) -> Option<String> {
        let json: Value = serde_json::from_str(body).ok()?;
        let value = self.path.iter().try_fold(&json, |v, key| v.get(key))?;
        match value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null | Value::Array(_) | Value::Object(_) => None,
        }
    }
}
