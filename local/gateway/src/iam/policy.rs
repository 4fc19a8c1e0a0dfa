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
mod tests {
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
}
