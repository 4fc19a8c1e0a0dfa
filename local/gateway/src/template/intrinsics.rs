//! Gives CloudFormation intrinsic functions (`Ref`, `Fn::GetAtt`, `Fn::Join`, `Fn::Sub`, ...)
//! the values they have locally: table names, ARNs in a fake account, the local endpoint.

use serde_json::Value;

use super::source::Template;

/// The values that stand in for the deployed stack's.
#[derive(Debug, Clone)]
pub struct LocalContext {
    /// `AWS::Region`.
    pub region: String,
    /// `AWS::AccountId`.
    pub account_id: String,
    /// What `Ref` of the WebSocket API gives.
    pub api_id: String,
    /// What `Fn::GetAtt [Api, ApiEndpoint]` gives: the local WebSocket base URL.
    pub api_endpoint: String,
    /// The local AWS services' endpoint (`http://127.0.0.1:PORT`), where queue URLs point.
    pub services_endpoint: String,
}

/// Why an intrinsic has no local value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The intrinsic is not one the gateway evaluates.
    #[error("{0} is not supported locally")]
    Unsupported(String),
    /// The intrinsic is malformed.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// A `Ref` or `Fn::GetAtt` names nothing in the template.
    #[error("unknown resource or parameter {0:?}")]
    UnknownReference(String),
    /// `Fn::GetAtt` of an attribute the gateway cannot make up.
    #[error("attribute {attribute} of {resource} ({kind}) has no local value")]
    UnknownAttribute {
        /// The logical id.
        resource: String,
        /// The resource type.
        kind: String,
        /// The attribute.
        attribute: String,
    },
    /// The value resolved to something that is not a string.
    #[error("expected a string, got {0}")]
    NotAString(String),
}

/// Evaluates intrinsics against one template.
pub(crate) struct Resolver<'a> {
    template: &'a Template,
    ctx: &'a LocalContext,
}

impl<'a> Resolver<'a> {
    pub(crate) fn new(template: &'a Template, ctx: &'a LocalContext) -> Self {
        Self { template, ctx }
    }

    /// Resolves a value that must end up a string (numbers and booleans are written out).
    pub(crate) fn resolve_string(&self, value: &Value) -> Result<String, ResolveError> {
        match self.resolve(value)? {
            Value::String(s) => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(ResolveError::NotAString(other.to_string())),
        }
    }

    /// Resolves every intrinsic inside `value`.
    pub(crate) fn resolve(&self, value: &Value) -> Result<Value, ResolveError> {
        match value {
            Value::Object(map) if map.len() == 1 => {
                let Some((name, arg)) = map.iter().next() else {
                    return Ok(value.clone());
                };
                match name.as_str() {
                    "Ref" => {
                        let id = arg.as_str().ok_or(ResolveError::Malformed("Ref"))?;
                        self.reference(id).map(Value::String)
                    }
                    "Fn::GetAtt" => self.get_att(arg).map(Value::String),
                    "Fn::Join" => self.join(arg).map(Value::String),
                    "Fn::Sub" => self.sub(arg).map(Value::String),
                    "Fn::Select" => self.select(arg),
                    "Fn::Split" => self.split(arg),
                    "Fn::Base64" => Err(ResolveError::Unsupported(name.clone())),
                    other if other.starts_with("Fn::") || other == "Condition" => {
                        Err(ResolveError::Unsupported(other.to_owned()))
                    }
                    _ => self.resolve_object(map),
                }
            }
            Value::Object(map) => self.resolve_object(map),
            Value::Array(items) => items
                .iter()
                .map(|v| self.resolve(v))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            other => Ok(other.clone()),
        }
    }

    fn resolve_object(&self, map: &serde_json::Map<String, Value>) -> Result<Value, ResolveError> {
        let mut out = serde_json::Map::new();
        for (k, v) in map {
            out.insert(k.clone(), self.resolve(v)?);
        }
        Ok(Value::Object(out))
    }

    /// What `Ref` gives: pseudo parameters, parameter defaults, or a resource's physical id.
    fn reference(&self, id: &str) -> Result<String, ResolveError> {
        match id {
            "AWS::Region" => Ok(self.ctx.region.clone()),
            "AWS::AccountId" => Ok(self.ctx.account_id.clone()),
            "AWS::Partition" => Ok("aws".to_owned()),
            "AWS::URLSuffix" => Ok("amazonaws.com".to_owned()),
            "AWS::StackName" => Ok(self.template.stack_name().to_owned()),
            "AWS::StackId" => Ok(format!(
                "arn:aws:cloudformation:{}:{}:stack/{}/local",
                self.ctx.region,
                self.ctx.account_id,
                self.template.stack_name()
            )),
            "AWS::NoValue" => Ok(String::new()),
            _ => self.physical_name(id),
        }
    }

    /// A resource's physical id: its explicit name property, else a stand-in.
    pub(crate) fn physical_name(&self, id: &str) -> Result<String, ResolveError> {
        let resource = self
            .template
            .resource(id)
            .ok_or_else(|| ResolveError::UnknownReference(id.to_owned()))?;
        if resource.kind == "AWS::ApiGatewayV2::Api" {
            return Ok(self.ctx.api_id.clone());
        }
        let name = self.name(id)?;
        Ok(match resource.kind.as_str() {
            // These types' `Ref` is an ARN or URL, not the bare name.
            "AWS::SNS::Topic" => self.arn("sns", &name),
            "AWS::SecretsManager::Secret" => self.arn("secretsmanager", &format!("secret:{name}")),
            "AWS::SQS::Queue" => self.queue_url(&name),
            _ => name,
        })
    }

    /// A resource's name: its explicit name property, else a stand-in.
    pub(crate) fn name(&self, id: &str) -> Result<String, ResolveError> {
        let resource = self
            .template
            .resource(id)
            .ok_or_else(|| ResolveError::UnknownReference(id.to_owned()))?;
        let name_property = match resource.kind.as_str() {
            "AWS::DynamoDB::Table" | "AWS::DynamoDB::GlobalTable" => Some("TableName"),
            "AWS::Lambda::Function" => Some("FunctionName"),
            "AWS::IAM::Role" => Some("RoleName"),
            "AWS::SQS::Queue" => Some("QueueName"),
            "AWS::SNS::Topic" => Some("TopicName"),
            "AWS::SecretsManager::Secret" => Some("Name"),
            "AWS::Logs::LogGroup" => Some("LogGroupName"),
            "AWS::ApiGatewayV2::Stage" => Some("StageName"),
            _ => None,
        };
        let explicit = name_property.and_then(|p| resource.properties.get(p));
        match explicit {
            Some(value) => self.resolve_string(value),
            // CloudFormation makes up `STACK-LOGICALID-RANDOM`; locally the random part is not needed.
            None => Ok(format!("{}-{}", self.template.stack_name(), id)),
        }
    }

    /// The URL of the queue `name`: on the local AWS services' port, where the local SQS
    /// answers, with the path SQS gives (`/ACCOUNT/NAME`).
    fn queue_url(&self, name: &str) -> String {
        let endpoint = self.ctx.services_endpoint.trim_end_matches('/');
        format!("{endpoint}/{}/{name}", self.ctx.account_id)
    }

    fn arn(&self, service: &str, resource: &str) -> String {
        format!(
            "arn:aws:{service}:{}:{}:{resource}",
            self.ctx.region, self.ctx.account_id
        )
    }

    /// The ARN of a function, by name.
    pub(crate) fn function_arn(&self, name: &str) -> String {
        self.arn("lambda", &format!("function:{name}"))
    }

    fn get_att(&self, arg: &Value) -> Result<String, ResolveError> {
        let (id, attribute) = match arg {
            Value::Array(parts) => match parts.as_slice() {
                [Value::String(id), attribute] => (id.clone(), self.resolve_string(attribute)?),
                _ => return Err(ResolveError::Malformed("Fn::GetAtt")),
            },
            Value::String(text) => match text.split_once('.') {
                Some((id, attribute)) => (id.to_owned(), attribute.to_owned()),
                None => return Err(ResolveError::Malformed("Fn::GetAtt")),
            },
            _ => return Err(ResolveError::Malformed("Fn::GetAtt")),
        };
        self.attribute(&id, &attribute)
    }

    fn attribute(&self, id: &str, attribute: &str) -> Result<String, ResolveError> {
        let resource = self
            .template
            .resource(id)
            .ok_or_else(|| ResolveError::UnknownReference(id.to_owned()))?;
        let kind = resource.kind.as_str();
        let unknown = || ResolveError::UnknownAttribute {
            resource: id.to_owned(),
            kind: kind.to_owned(),
            attribute: attribute.to_owned(),
        };
        match (kind, attribute) {
            ("AWS::ApiGatewayV2::Api", "ApiEndpoint") => Ok(self.ctx.api_endpoint.clone()),
            ("AWS::ApiGatewayV2::Api", "ApiId") => Ok(self.ctx.api_id.clone()),
            ("AWS::DynamoDB::Table" | "AWS::DynamoDB::GlobalTable", "Arn") => {
                Ok(self.arn("dynamodb", &format!("table/{}", self.physical_name(id)?)))
            }
            ("AWS::DynamoDB::Table" | "AWS::DynamoDB::GlobalTable", "StreamArn") => Ok(self.arn(
                "dynamodb",
                &format!(
                    "table/{}/stream/1970-01-01T00:00:00.000",
                    self.physical_name(id)?
                ),
            )),
            ("AWS::Lambda::Function", "Arn") => Ok(self.function_arn(&self.physical_name(id)?)),
            ("AWS::IAM::Role", "Arn") => Ok(format!(
                "arn:aws:iam::{}:role/{}",
                self.ctx.account_id,
                self.physical_name(id)?
            )),
            ("AWS::SQS::Queue", "Arn") => Ok(self.arn("sqs", &self.name(id)?)),
            ("AWS::SQS::Queue", "QueueName") => self.name(id),
            ("AWS::SQS::Queue", "QueueUrl") => self.physical_name(id),
            ("AWS::SNS::Topic", "TopicName") => {
                let arn = self.physical_name(id)?;
                Ok(arn.rsplit(':').next().unwrap_or_default().to_owned())
            }
            ("AWS::SecretsManager::Secret", "Id") => self.physical_name(id),
            (_, "Arn") => {
                // Any other resource: an ARN of its service shape is enough for local use.
                let service = kind
                    .split("::")
                    .nth(1)
                    .unwrap_or("local")
                    .to_ascii_lowercase();
                Ok(self.arn(&service, id))
            }
            _ => Err(unknown()),
        }
    }

    fn join(&self, arg: &Value) -> Result<String, ResolveError> {
        let Value::Array(parts) = arg else {
            return Err(ResolveError::Malformed("Fn::Join"));
        };
        let [Value::String(separator), list] = parts.as_slice() else {
            return Err(ResolveError::Malformed("Fn::Join"));
        };
        let Value::Array(items) = self.resolve(list)? else {
            return Err(ResolveError::Malformed("Fn::Join"));
        };
        let strings = items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                other => Err(ResolveError::NotAString(other.to_string())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(strings.join(separator))
    }

    fn select(&self, arg: &Value) -> Result<Value, ResolveError> {
        let Value::Array(parts) = arg else {
            return Err(ResolveError::Malformed("Fn::Select"));
        };
        let [index, list] = parts.as_slice() else {
            return Err(ResolveError::Malformed("Fn::Select"));
        };
        let index: usize = self
            .resolve_string(index)?
            .parse()
            .map_err(|_| ResolveError::Malformed("Fn::Select"))?;
        match self.resolve(list)? {
            Value::Array(mut items) if index < items.len() => Ok(items.swap_remove(index)),
            _ => Err(ResolveError::Malformed("Fn::Select")),
        }
    }

    fn split(&self, arg: &Value) -> Result<Value, ResolveError> {
        let Value::Array(parts) = arg else {
            return Err(ResolveError::Malformed("Fn::Split"));
        };
        let [Value::String(separator), source] = parts.as_slice() else {
            return Err(ResolveError::Malformed("Fn::Split"));
        };
        let source = self.resolve_string(source)?;
        Ok(Value::Array(
            source
                .split(separator.as_str())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        ))
    }

    fn sub(&self, arg: &Value) -> Result<String, ResolveError> {
        let (text, variables) = match arg {
            Value::String(text) => (text.as_str(), None),
            Value::Array(parts) => match parts.as_slice() {
                [Value::String(text), Value::Object(vars)] => (text.as_str(), Some(vars)),
                _ => return Err(ResolveError::Malformed("Fn::Sub")),
            },
            _ => return Err(ResolveError::Malformed("Fn::Sub")),
        };
        let mut out = String::with_capacity(text.len());
        for piece in parse_sub(text) {
            match piece {
                SubPiece::Literal(s) => out.push_str(s),
                SubPiece::Variable(name) => {
                    if let Some(value) = variables.and_then(|vars| vars.get(name)) {
                        out.push_str(&self.resolve_string(value)?);
                    } else if let Some((id, attribute)) = name.split_once('.') {
                        out.push_str(&self.attribute(id, attribute)?);
                    } else {
                        out.push_str(&self.reference(name)?);
                    }
                }
            }
        }
        Ok(out)
    }
}

enum SubPiece<'a> {
    Literal(&'a str),
    Variable(&'a str),
}

/// Splits an `Fn::Sub` string into literals and `${...}` variables (`${!x}` is the literal `${x}`).
fn parse_sub(text: &str) -> Vec<SubPiece<'_>> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        pieces.push(SubPiece::Literal(&rest[..start]));
        let inner = &rest[start + 2..start + len];
        if let Some(literal) = inner.strip_prefix('!') {
            pieces.push(SubPiece::Literal("${"));
            pieces.push(SubPiece::Literal(literal));
            pieces.push(SubPiece::Literal("}"));
        } else {
            pieces.push(SubPiece::Variable(inner));
        }
        rest = &rest[start + len + 1..];
    }
    pieces.push(SubPiece::Literal(rest));
    pieces
}

/// The logical ids an `Fn::Sub` string refers to (`${Id}` and `${Id.Attr}`).
pub(crate) fn sub_references(text: &str) -> impl Iterator<Item = String> + '_ {
    parse_sub(text).into_iter().filter_map(|piece| match piece {
        SubPiece::Variable(name) if !name.starts_with("AWS::") => {
            Some(name.split('.').next().unwrap_or(name).to_owned())
        }
        _ => None,
    })
}
