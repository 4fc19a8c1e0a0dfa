//! Identity-based IAM policies, evaluated as IAM does: an explicit Deny wins over any Allow, no
//! matching Allow is an implicit deny, actions compare case-insensitively and resources
//! case-sensitively, and `*` / `?` are wildcards in both.

use serde_json::{Map, Value};

/// Why a policy document cannot be read; `at` names the policy and, where known, the statement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The document, or a statement, is not a JSON object.
    #[error("{at}: not a JSON object")]
    NotAnObject {
        /// Where.
        at: String,
    },
    /// `Version` is neither of the two IAM knows.
    #[error("{at}: Version {found} is not \"2012-10-17\" or \"2008-10-17\"")]
    BadVersion {
        /// Where.
        at: String,
        /// The value found, as JSON.
        found: String,
    },
    /// The document has no `Statement`, or it is neither an object nor an array.
    #[error("{at}: Statement is missing or neither an object nor an array")]
    MissingStatement {
        /// Where.
        at: String,
    },
    /// An element IAM does not know (often a typo such as `Resources`).
    #[error("{at}: unknown element {element}")]
    UnknownElement {
        /// Where.
        at: String,
        /// The element's name.
        element: String,
    },
    /// `Effect` is missing or not exactly `Allow` or `Deny`.
    #[error("{at}: Effect must be \"Allow\" or \"Deny\", found {found}")]
    BadEffect {
        /// Where.
        at: String,
        /// The value found, as JSON (`null` when missing).
        found: String,
    },
    /// Both `Action` and `NotAction` (or `Resource` and `NotResource`) are present.
    #[error("{at}: has both {element} and Not{element}")]
    BothPresent {
        /// Where.
        at: String,
        /// `Action` or `Resource`.
        element: &'static str,
    },
    /// Neither `Action` nor `NotAction` (or `Resource` nor `NotResource`) is present.
    #[error("{at}: has neither {element} nor Not{element}")]
    NeitherPresent {
        /// Where.
        at: String,
        /// `Action` or `Resource`.
        element: &'static str,
    },
    /// An element that must be a string or an array of strings is something else.
    #[error("{at}: {element} must be a string or an array of strings")]
    NotStrings {
        /// Where.
        at: String,
        /// The element's name.
        element: &'static str,
    },
    /// `Principal` or `NotPrincipal`, which only resource-based policies have.
    #[error("{at}: {element} belongs in resource-based policies, not in a role's policy")]
    Principal {
        /// Where.
        at: String,
        /// `Principal` or `NotPrincipal`.
        element: String,
    },
    /// `Condition` is not an object of operators, each an object of keys.
    #[error("{at}: Condition must map each operator to an object of condition keys")]
    BadCondition {
        /// Where.
        at: String,
    },
    /// `Sid` is not a string.
    #[error("{at}: Sid must be a string")]
    BadSid {
        /// Where.
        at: String,
    },
}

/// The outcome of evaluating a request against a principal's policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A statement allows the request and none denies it.
    Allow {
        /// The allowing statement: its Sid, or `policy#index` (counted from 0) without one.
        statement: String,
    },
    /// A Deny statement matches: no Allow can override it.
    ExplicitDeny {
        /// The denying statement: its Sid, or `policy#index` (counted from 0) without one.
        statement: String,
    },
    /// No statement allows the request.
    ImplicitDeny,
}

impl Decision {
    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

/// Patterns of `Action`/`Resource`, or of `NotAction`/`NotResource` when `negated`.
#[derive(Debug, Clone)]
struct Patterns {
    negated: bool,
    patterns: Vec<Vec<char>>,
}

impl Patterns {
    fn new(negated: bool, patterns: impl IntoIterator<Item = String>) -> Self {
        let patterns = patterns.into_iter().map(|p| p.chars().collect()).collect();
        Self { negated, patterns }
    }

    fn matches(&self, text: &[char]) -> bool {
        self.patterns.iter().any(|p| glob(p, text)) != self.negated
    }
}

#[derive(Debug, Clone)]
struct Statement {
    /// Sid, or `policy#index`: what a [`Decision`] names.
    label: String,
    /// `policy P statement S`: where messages point.
    at: String,
    effect: Effect,
    actions: Patterns,
    resources: Patterns,
    /// `(operator, key)` of each condition, none of which is evaluated.
    conditions: Vec<(String, String)>,
    /// Policy variables (`${aws:username}`) found in the resource patterns.
    variables: Vec<String>,
}

/// One identity-based policy document, parsed.
#[derive(Debug, Clone)]
pub struct Policy {
    name: String,
    statements: Vec<Statement>,
}

impl Policy {
    /// Parses a document whose intrinsics are resolved; `name` (e.g. the logical id) labels messages.
    pub fn parse(name: impl Into<String>, document: &Value) -> Result<Self, PolicyError> {
        let name = name.into();
        let at = format!("policy {name}");
        let doc = document
            .as_object()
            .ok_or_else(|| PolicyError::NotAnObject { at: at.clone() })?;
        for element in doc.keys() {
            if !matches!(element.as_str(), "Version" | "Id" | "Statement") {
                let element = element.clone();
                return Err(PolicyError::UnknownElement { at, element });
            }
        }
        // Policy variables exist only from 2012-10-17 on; before, `${` is literal text.
        let versioned = match doc.get("Version") {
            None => false,
            Some(Value::String(v)) if v == "2012-10-17" => true,
            Some(Value::String(v)) if v == "2008-10-17" => false,
            Some(other) => {
                let found = other.to_string();
                return Err(PolicyError::BadVersion { at, found });
            }
        };
        let statements = match doc.get("Statement") {
            Some(Value::Array(items)) => items.iter().collect(),
            Some(one @ Value::Object(_)) => vec![one],
            _ => return Err(PolicyError::MissingStatement { at }),
        };
        let statements = statements
            .into_iter()
            .enumerate()
            .map(|(index, s)| parse_statement(&name, index, s, versioned))
            .collect::<Result<_, _>>()?;
        Ok(Self { name, statements })
    }

    /// The name given at parse time.
    pub fn name(&self) -> &str {
        &self.name
    }
}

fn parse_statement(
    policy: &str,
    index: usize,
    value: &Value,
    versioned: bool,
) -> Result<Statement, PolicyError> {
    let mut at = format!("policy {policy} statement #{index}");
    let s = value
        .as_object()
        .ok_or_else(|| PolicyError::NotAnObject { at: at.clone() })?;
    let label = match s.get("Sid") {
        None => format!("{policy}#{index}"),
        Some(Value::String(sid)) => {
            at = format!("policy {policy} statement {sid}");
            sid.clone()
        }
        Some(_) => return Err(PolicyError::BadSid { at }),
    };
    for element in s.keys() {
        match element.as_str() {
            "Sid" | "Effect" | "Action" | "NotAction" | "Resource" | "NotResource"
            | "Condition" => {}
            "Principal" | "NotPrincipal" => {
                let element = element.clone();
                return Err(PolicyError::Principal { at, element });
            }
            _ => {
                let element = element.clone();
                return Err(PolicyError::UnknownElement { at, element });
            }
        }
    }
    let effect = match s.get("Effect") {
        Some(Value::String(e)) if e == "Allow" => Effect::Allow,
        Some(Value::String(e)) if e == "Deny" => Effect::Deny,
        other => {
            let found = other.map_or_else(|| "null".to_owned(), Value::to_string);
            return Err(PolicyError::BadEffect { at, found });
        }
    };
    let (negated, actions) = pair(s, &at, "Action", "NotAction")?;
    let actions = Patterns::new(negated, actions.iter().map(|a| a.to_lowercase()));
    let (negated, resources) = pair(s, &at, "Resource", "NotResource")?;
    // IAM fills a policy variable from the request context, which is not known here. Read
    // conservatively, so that a local pass never hides a deployed denial: a variable is a
    // wildcard where that widens a Deny or narrows an Allow (a Deny's Resource, an Allow's
    // NotResource), and literal text, which no real ARN contains, where it would do the opposite.
    let widen = (effect == Effect::Deny) != negated;
    let mut variables = Vec::new();
    let resources: Vec<String> = resources
        .iter()
        .map(|r| substitute(r, versioned, widen, &mut variables))
        .collect();
    let resources = Patterns::new(negated, resources);
    let conditions = match s.get("Condition") {
        None => Some(Vec::new()),
        Some(c) => conditions(c),
    };
    let Some(conditions) = conditions else {
        return Err(PolicyError::BadCondition { at });
    };
    Ok(Statement {
        label,
        at,
        effect,
        actions,
        resources,
        conditions,
        variables,
    })
}

/// The strings of `element` or of `negative` (exactly one must be present), and whether they
/// are the negative's.
fn pair(
    s: &Map<String, Value>,
    at: &str,
    element: &'static str,
    negative: &'static str,
) -> Result<(bool, Vec<String>), PolicyError> {
    let at = at.to_owned();
    let (negated, value) = match (s.get(element), s.get(negative)) {
        (Some(_), Some(_)) => return Err(PolicyError::BothPresent { at, element }),
        (None, None) => return Err(PolicyError::NeitherPresent { at, element }),
        (Some(v), None) => (false, v),
        (None, Some(v)) => (true, v),
    };
    let element = if negated { negative } else { element };
    let strings = match value {
        Value::String(one) => Some(vec![one.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => None,
    };
    strings
        .map(|strings| (negated, strings))
        .ok_or(PolicyError::NotStrings { at, element })
}

/// The `(operator, key)` pairs of a `Condition`, or `None` when it is malformed.
fn conditions(condition: &Value) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (op, keys) in condition.as_object()? {
        for key in keys.as_object()?.keys() {
            out.push((op.clone(), key.clone()));
        }
    }
    Some(out)
}

/// `pattern` with each `${...}` replaced by `*` when `widen`, kept literal otherwise; the
/// variables found are added to `found`.
fn substitute(pattern: &str, versioned: bool, widen: bool, found: &mut Vec<String>) -> String {
    if !versioned {
        return pattern.to_owned();
    }
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let variable = &rest[start..start + len + 1];
        found.push(variable.to_owned());
        out.push_str(&rest[..start]);
        out.push_str(if widen { "*" } else { variable });
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

/// The policies of one principal (a function's role), evaluated together.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    policies: Vec<Policy>,
}

impl PolicySet {
    /// A set of already parsed policies.
    pub fn new(policies: Vec<Policy>) -> Self {
        Self { policies }
    }

    /// Parses `(name, document)` pairs, failing on the first bad document.
    pub fn parse<'a, N: Into<String>>(
        documents: impl IntoIterator<Item = (N, &'a Value)>,
    ) -> Result<Self, PolicyError> {
        let policies = documents
            .into_iter()
            .map(|(name, doc)| Policy::parse(name, doc))
            .collect::<Result<_, _>>()?;
        Ok(Self { policies })
    }

    /// The policies, in the order given.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// Whether the principal may perform `action` (e.g. `dynamodb:PutItem`) on `resource` (an ARN).
    pub fn evaluate(&self, action: &str, resource: &str) -> Decision {
        let action: Vec<char> = action.to_lowercase().chars().collect();
        let resource: Vec<char> = resource.chars().collect();
        let mut allow = None;
        let statements = self.policies.iter().flat_map(|p| &p.statements);
        for s in statements {
            if !s.actions.matches(&action) || !s.resources.matches(&resource) {
                continue;
            }
            // Conditions are not evaluated: an Allow with one is taken as never met and a Deny
            // with one as always met, so a local pass never hides a deployed denial (the price
            // is a local denial that might pass deployed, which the report lines explain).
            match s.effect {
                Effect::Deny => {
                    return Decision::ExplicitDeny {
                        statement: s.label.clone(),
                    }
                }
                Effect::Allow if s.conditions.is_empty() && allow.is_none() => {
                    allow = Some(s.label.clone());
                }
                Effect::Allow => {}
            }
        }
        allow.map_or(Decision::ImplicitDeny, |statement| Decision::Allow {
            statement,
        })
    }

    /// One line per condition key and policy variable not evaluated locally, saying how it is read.
    pub fn unsupported_conditions(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for s in self.policies.iter().flat_map(|p| &p.statements) {
            let consequence = match s.effect {
                Effect::Allow => "taken as not met: this Allow grants nothing locally",
                Effect::Deny => "taken as met: this Deny applies to every matching request",
            };
            for (op, key) in &s.conditions {
                let at = &s.at;
                lines.push(format!(
                    "{at}: condition key {key} ({op}) is not evaluated locally ({consequence})"
                ));
            }
            for variable in &s.variables {
                let at = &s.at;
                lines.push(format!(
                    "{at}: policy variable {variable} in the resource is not evaluated locally"
                ));
            }
        }
        lines
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (none included)
/// and `?` exactly one; everything else matches itself.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    glob(&pattern, &text)
}

/// The two-pointer wildcard match: on a mismatch, only the last `*` is retried one character
/// further, which is enough (an earlier star can absorb nothing a later one cannot), so the
/// cost is O(pattern × text) at worst, never exponential.
fn glob(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    // After the last `*` seen: where the pattern resumes, and the text position it took up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                p += 1;
                star = Some((p, t));
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((resume, taken)) => {
                    p = resume;
                    t = taken + 1;
                    star = Some((resume, t));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
#[path = "tests/policy.rs"]
mod tests;
