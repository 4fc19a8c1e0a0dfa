//! Reads the synthesized CloudFormation template: the one source of truth for routes,
//! functions and tables. Adding a route or a table in the stack needs no change here.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::intrinsics::{LocalContext, ResolveError, Resolver};
use crate::routing::{RouteSelection, SelectionError};

/// The metadata key through which the stack names a function's handler binary.
pub const BINARY_METADATA_KEY: &str = "local:binary";

/// The environment variable holding the @connections base URL; the gateway points it at itself.
pub const CALLBACK_URL_VAR: &str = "CALLBACK_URL";

/// API Gateway's integration timeout: no route waits longer, whatever the function's timeout.
pub const MAX_INTEGRATION_TIMEOUT: Duration = Duration::from_secs(29);

/// CloudFormation's default when a function sets no `Timeout`.
const DEFAULT_FUNCTION_TIMEOUT_SECS: u64 = 3;

/// CloudFormation's default when a function sets no `MemorySize`.
const DEFAULT_MEMORY_MB: u64 = 128;

/// Why a template cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The file could not be read.
    #[error("cannot read template {path}: {source} (run `make synth-dev` to synthesize it)")]
    Read {
        /// The template path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a CloudFormation template in JSON.
    #[error("cannot parse template {path}: {source}")]
    Parse {
        /// The template path.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The template has no WebSocket API, or more than one.
    #[error("template {path}: expected exactly one AWS::ApiGatewayV2::Api with ProtocolType WEBSOCKET, found {found}")]
    ApiCount {
        /// The template path.
        path: PathBuf,
        /// How many were found.
        found: usize,
    },
    /// A resource lacks a property the gateway needs, or has one of the wrong shape.
    #[error("template {path}: resource {resource}: {problem}")]
    Resource {
        /// The template path.
        path: PathBuf,
        /// The logical id.
        resource: String,
        /// What is wrong.
        problem: String,
    },
    /// An intrinsic function could not be given a local value.
    #[error("template {path}: resource {resource}, {property}: {source}")]
    Resolve {
        /// The template path.
        path: PathBuf,
        /// The logical id.
        resource: String,
        /// The property being resolved.
        property: String,
        /// Why it failed.
        source: Box<ResolveError>,
    },
    /// The API's route selection expression is not one the gateway can evaluate.
    #[error("template {path}: {source}")]
    Selection {
        /// The template path.
        path: PathBuf,
        /// Why it failed.
        source: SelectionError,
    },
    /// The stage asked for is not the template's.
    #[error("template {path} defines stage {found:?}, not {wanted:?} (pass --stage {found} or synthesize stage {wanted})")]
    StageMismatch {
        /// The template path.
        path: PathBuf,
        /// The stage asked for.
        wanted: String,
        /// The stages the template defines.
        found: String,
    },
}

/// A parsed CloudFormation template, before any intrinsic is resolved.
#[derive(Debug, Clone)]
pub struct Template {
    path: PathBuf,
    stack_name: String,
    resources: BTreeMap<String, RawResource>,
}

/// One resource as CloudFormation writes it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RawResource {
    #[serde(rename = "Type")]
    pub(crate) kind: String,
    #[serde(rename = "Properties", default)]
    pub(crate) properties: Map<String, Value>,
    #[serde(rename = "Metadata", default)]
    pub(crate) metadata: Map<String, Value>,
}

#[derive(Deserialize)]
struct RawTemplate {
    #[serde(rename = "Resources", default)]
    resources: BTreeMap<String, RawResource>,
}

impl Template {
    /// Reads and parses a template file.
    pub fn load(path: &Path) -> Result<Self, TemplateError> {
        let text = std::fs::read(path).map_err(|source| TemplateError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_slice(path, &text)
    }

    /// Parses template JSON; `path` names it in errors and gives the stack name.
    pub fn from_slice(path: &Path, json: &[u8]) -> Result<Self, TemplateError> {
        let raw: RawTemplate =
            serde_json::from_slice(json).map_err(|source| TemplateError::Parse {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            path: path.to_owned(),
            stack_name: stack_name_of(path),
            resources: raw.resources,
        })
    }

    /// The stack name, taken from the file name as the CDK writes it (`STACK.template.json`).
    pub fn stack_name(&self) -> &str {
        &self.stack_name
    }

    /// The stage names of the WebSocket API's stages, without resolving anything else.
    pub fn stage_names(&self) -> Vec<String> {
        self.of_type("AWS::ApiGatewayV2::Stage")
            .filter_map(|(_, r)| r.properties.get("StageName")?.as_str().map(str::to_owned))
            .collect()
    }

    pub(crate) fn resource(&self, logical_id: &str) -> Option<&RawResource> {
        self.resources.get(logical_id)
    }

    fn of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a String, &'a RawResource)> {
        self.resources.iter().filter(move |(_, r)| r.kind == kind)
    }

    fn resource_error(&self, resource: &str, problem: impl Into<String>) -> TemplateError {
        TemplateError::Resource {
            path: self.path.clone(),
            resource: resource.to_owned(),
            problem: problem.into(),
        }
    }

    /// Reads the WebSocket API of `stage` with every value resolved for local use.
    pub fn api(&self, stage: &str, ctx: &LocalContext) -> Result<ApiModel, TemplateError> {
        let apis: Vec<_> = self
            .of_type("AWS::ApiGatewayV2::Api")
            .filter(|(_, r)| {
                r.properties.get("ProtocolType").and_then(Value::as_str) == Some("WEBSOCKET")
            })
            .collect();
        let [(api_id, api)] = apis.as_slice() else {
            return Err(TemplateError::ApiCount {
                path: self.path.clone(),
                found: apis.len(),
            });
        };
        let resolver = Resolver::new(self, ctx);
        let expression = api
            .properties
            .get("RouteSelectionExpression")
            .and_then(Value::as_str)
            .ok_or_else(|| self.resource_error(api_id, "no RouteSelectionExpression"))?;
        let selection =
            RouteSelection::parse(expression).map_err(|source| TemplateError::Selection {
                path: self.path.clone(),
                source,
            })?;

        let stage = self.stage(api_id, stage, &resolver)?;
        let mut functions = BTreeMap::new();
        let mut routes = HashMap::new();
        for (route_id, route) in self.of_type("AWS::ApiGatewayV2::Route") {
            if !self.refers_to(&route.properties, "ApiId", api_id) {
                continue;
            }
            let key = route
                .properties
                .get("RouteKey")
                .and_then(Value::as_str)
                .ok_or_else(|| self.resource_error(route_id, "no RouteKey"))?
                .to_owned();
            let target = match route.properties.get("Target") {
                Some(target) => {
                    Some(self.integration_target(route_id, target, &resolver, &mut functions)?)
                }
                None => None,
            };
            let authorizer = match route.properties.get("AuthorizerId") {
                Some(reference)
                    if route
                        .properties
                        .get("AuthorizationType")
                        .and_then(Value::as_str)
                        == Some("CUSTOM") =>
                {
                    Some(self.authorizer(route_id, reference, &resolver, &mut functions)?)
                }
                _ => None,
            };
            // As in API Gateway, a route is two-way only with both halves: the selection
            // expression alone sends nothing back.
            let two_way = route
                .properties
                .contains_key("RouteResponseSelectionExpression")
                && self.has_default_route_response(route_id);
            routes.insert(
                key.clone(),
                Route {
                    key,
                    target,
                    authorizer,
                    two_way,
                },
            );
        }
        Ok(ApiModel {
            logical_id: (*api_id).clone(),
            selection,
            stage,
            routes,
            functions,
            tables: self.tables(&resolver)?,
            secrets: self.secrets(&resolver)?,
        })
    }

    /// Whether an `AWS::ApiGatewayV2::RouteResponse` with key `$default` belongs to the route.
    fn has_default_route_response(&self, route_id: &str) -> bool {
        self.of_type("AWS::ApiGatewayV2::RouteResponse")
            .any(|(_, response)| {
                self.refers_to(&response.properties, "RouteId", route_id)
                    && response
                        .properties
                        .get("RouteResponseKey")
                        .and_then(Value::as_str)
                        == Some("$default")
            })
    }

    /// Every Secrets Manager secret, by the name and ARN the functions see.
    fn secrets(&self, resolver: &Resolver<'_>) -> Result<Vec<SecretSpec>, TemplateError> {
        self.of_type("AWS::SecretsManager::Secret")
            .map(|(secret_id, _)| {
                // `Ref` of a secret is its ARN, which ends in `secret:NAME`.
                let arn = resolver
                    .physical_name(secret_id)
                    .map_err(|source| self.resolve_error(secret_id, "Name", source))?;
                let name = arn
                    .split_once(":secret:")
                    .map_or(arn.as_str(), |(_, name)| name)
                    .to_owned();
                Ok(SecretSpec {
                    logical_id: secret_id.clone(),
                    name,
                    arn,
                })
            })
            .collect()
    }

    fn stage(
        &self,
        api_id: &str,
        wanted: &str,
        resolver: &Resolver<'_>,
    ) -> Result<StageSpec, TemplateError> {
        let mut found = Vec::new();
        for (stage_id, stage) in self.of_type("AWS::ApiGatewayV2::Stage") {
            if !self.refers_to(&stage.properties, "ApiId", api_id) {
                continue;
            }
            let name = self.resolve_string(
                resolver,
                stage_id,
                "StageName",
                stage.properties.get("StageName"),
            )?;
            if name != wanted {
                found.push(name);
                continue;
            }
            let mut variables = BTreeMap::new();
            if let Some(Value::Object(vars)) = stage.properties.get("StageVariables") {
                for (k, v) in vars {
                    let value = self.resolve_string(
                        resolver,
                        stage_id,
                        &format!("StageVariables.{k}"),
                        Some(v),
                    )?;
                    variables.insert(k.clone(), value);
                }
            }
            return Ok(StageSpec { name, variables });
        }
        if found.is_empty() {
            // A template without a stage resource still names its stage in the URL the stack builds;
            // accept the one asked for rather than refuse to run.
            return Ok(StageSpec {
                name: wanted.to_owned(),
                variables: BTreeMap::new(),
            });
        }
        Err(TemplateError::StageMismatch {
            path: self.path.clone(),
            wanted: wanted.to_owned(),
            found: found.join(", "),
        })
    }

    /// Follows a route's `integrations/{Ref}` target to the Lambda function it invokes.
    fn integration_target(
        &self,
        route_id: &str,
        target: &Value,
        resolver: &Resolver<'_>,
        functions: &mut BTreeMap<String, FunctionSpec>,
    ) -> Result<RouteTarget, TemplateError> {
        let integration_id = self
            .find_reference(target, |kind| kind == "AWS::ApiGatewayV2::Integration")
            .ok_or_else(|| {
                self.resource_error(
                    route_id,
                    "Target does not reference an AWS::ApiGatewayV2::Integration",
                )
            })?;
        let integration = self.resource(&integration_id).ok_or_else(|| {
            self.resource_error(route_id, format!("unknown integration {integration_id}"))
        })?;
        let uri = integration
            .properties
            .get("IntegrationUri")
            .ok_or_else(|| self.resource_error(&integration_id, "no IntegrationUri"))?;
        let function_id = self.find_reference(uri, |kind| kind == "AWS::Lambda::Function").ok_or_else(|| {
            self.resource_error(&integration_id, "IntegrationUri does not reference an AWS::Lambda::Function: only Lambda proxy integrations run locally")
        })?;
        self.add_function(&function_id, resolver, functions)?;
        let timeout = integration
            .properties
            .get("TimeoutInMillis")
            .and_then(Value::as_u64)
            .map_or(MAX_INTEGRATION_TIMEOUT, Duration::from_millis)
            .min(MAX_INTEGRATION_TIMEOUT);
        Ok(RouteTarget {
            function: function_id,
            timeout,
        })
    }

    fn authorizer(
        &self,
        route_id: &str,
        reference: &Value,
        resolver: &Resolver<'_>,
        functions: &mut BTreeMap<String, FunctionSpec>,
    ) -> Result<AuthorizerSpec, TemplateError> {
        let authorizer_id = self
            .find_reference(reference, |kind| kind == "AWS::ApiGatewayV2::Authorizer")
            .ok_or_else(|| {
                self.resource_error(
                    route_id,
                    "AuthorizerId does not reference an AWS::ApiGatewayV2::Authorizer",
                )
            })?;
        let authorizer = self.resource(&authorizer_id).ok_or_else(|| {
            self.resource_error(route_id, format!("unknown authorizer {authorizer_id}"))
        })?;
        let kind = authorizer
            .properties
            .get("AuthorizerType")
            .and_then(Value::as_str);
        if kind != Some("REQUEST") {
            return Err(self.resource_error(
                &authorizer_id,
                format!("AuthorizerType {kind:?}: only REQUEST authorizers run locally"),
            ));
        }
        let uri = authorizer
            .properties
            .get("AuthorizerUri")
            .ok_or_else(|| self.resource_error(&authorizer_id, "no AuthorizerUri"))?;
        let function = self
            .find_reference(uri, |kind| kind == "AWS::Lambda::Function")
            .ok_or_else(|| {
                self.resource_error(
                    &authorizer_id,
                    "AuthorizerUri does not reference an AWS::Lambda::Function",
                )
            })?;
        self.add_function(&function, resolver, functions)?;
        let mut identity_sources = Vec::new();
        for source in authorizer
            .properties
            .get("IdentitySource")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let text = source.as_str().ok_or_else(|| {
                self.resource_error(&authorizer_id, "IdentitySource entries must be strings")
            })?;
            identity_sources.push(IdentitySource::parse(text).ok_or_else(|| {
                self.resource_error(
                    &authorizer_id,
                    format!("unsupported identity source {text:?}"),
                )
            })?);
        }
        Ok(AuthorizerSpec {
            logical_id: authorizer_id,
            function,
            identity_sources,
        })
    }

    fn add_function(
        &self,
        function_id: &str,
        resolver: &Resolver<'_>,
        functions: &mut BTreeMap<String, FunctionSpec>,
    ) -> Result<(), TemplateError> {
        if functions.contains_key(function_id) {
            return Ok(());
        }
        let function = self
            .resource(function_id)
            .ok_or_else(|| self.resource_error(function_id, "unknown function"))?;
        let binary = function
            .metadata
            .get(BINARY_METADATA_KEY)
            .and_then(Value::as_str)
            .ok_or_else(|| {
                self.resource_error(
                    function_id,
                    format!("no Metadata {BINARY_METADATA_KEY:?}: the stack must name the handler binary of every function a route invokes"),
                )
            })?
            .to_owned();
        let name = resolver
            .physical_name(function_id)
            .map_err(|source| self.resolve_error(function_id, "FunctionName", source))?;
        let mut environment = BTreeMap::new();
        if let Some(vars) = function
            .properties
            .get("Environment")
            .and_then(|e| e.get("Variables"))
            .and_then(Value::as_object)
        {
            for (key, value) in vars {
                if key == CALLBACK_URL_VAR {
                    // The gateway overrides it with its own @connections URL: no need to resolve it.
                    continue;
                }
                let value = self.resolve_string(
                    resolver,
                    function_id,
                    &format!("Environment.Variables.{key}"),
                    Some(value),
                )?;
                environment.insert(key.clone(), value);
            }
        }
        let timeout_secs = function
            .properties
            .get("Timeout")
            .and_then(Value::as_u64)
            .unwrap_or(DEFAULT_FUNCTION_TIMEOUT_SECS);
        let memory_mb = function
            .properties
            .get("MemorySize")
            .and_then(Value::as_u64)
            .unwrap_or(DEFAULT_MEMORY_MB);
        let log_format_json = function
            .properties
            .get("LoggingConfig")
            .and_then(|c| c.get("LogFormat"))
            .and_then(Value::as_str)
            == Some("JSON");
        let arn = resolver.function_arn(&name);
        functions.insert(
            function_id.to_owned(),
            FunctionSpec {
                logical_id: function_id.to_owned(),
                name,
                arn,
                binary,
                environment,
                timeout: Duration::from_secs(timeout_secs),
                memory_mb,
                log_format_json,
            },
        );
        Ok(())
    }

    fn tables(&self, resolver: &Resolver<'_>) -> Result<Vec<TableSpec>, TemplateError> {
        let mut tables = Vec::new();
        for (table_id, table) in self.resources.iter().filter(|(_, r)| {
            r.kind == "AWS::DynamoDB::Table" || r.kind == "AWS::DynamoDB::GlobalTable"
        }) {
            let name = resolver
                .physical_name(table_id)
                .map_err(|source| self.resolve_error(table_id, "TableName", source))?;
            let mut properties = Value::Object(table.properties.clone());
            if let Some(obj) = properties.as_object_mut() {
                // Only the key and index layout matters locally; the rest may hold intrinsics
                // (KMS keys, replicas) that have no local value.
                obj.retain(|k, _| {
                    matches!(
                        k.as_str(),
                        "KeySchema"
                            | "AttributeDefinitions"
                            | "GlobalSecondaryIndexes"
                            | "LocalSecondaryIndexes"
                            | "TimeToLiveSpecification"
                    )
                });
            }
            let layout: TableLayout = serde_json::from_value(properties).map_err(|e| {
                self.resource_error(table_id, format!("unexpected table layout: {e}"))
            })?;
            let ttl_attribute = layout
                .time_to_live_specification
                .as_ref()
                .filter(|t| t.enabled.unwrap_or(true))
                .and_then(|t| t.attribute_name.clone());
            tables.push(TableSpec {
                logical_id: table_id.clone(),
                name,
                key_schema: layout.key_schema,
                attribute_definitions: layout.attribute_definitions,
                global_secondary_indexes: layout.global_secondary_indexes,
                local_secondary_indexes: layout.local_secondary_indexes,
                ttl_attribute,
            });
        }
        Ok(tables)
    }

    fn resolve_string(
        &self,
        resolver: &Resolver<'_>,
        resource: &str,
        property: &str,
        value: Option<&Value>,
    ) -> Result<String, TemplateError> {
        let value = value.ok_or_else(|| self.resource_error(resource, format!("no {property}")))?;
        resolver
            .resolve_string(value)
            .map_err(|source| self.resolve_error(resource, property, source))
    }

    fn resolve_error(&self, resource: &str, property: &str, source: ResolveError) -> TemplateError {
        TemplateError::Resolve {
            path: self.path.clone(),
            resource: resource.to_owned(),
            property: property.to_owned(),
            source: Box::new(source),
        }
    }

    /// Whether `properties[key]` is a `Ref` to `logical_id`.
    fn refers_to(&self, properties: &Map<String, Value>, key: &str, logical_id: &str) -> bool {
        properties
            .get(key)
            .and_then(|v| v.get("Ref"))
            .and_then(Value::as_str)
            == Some(logical_id)
    }

    /// The first resource of an accepted type that `value` points at through `Ref` or
    /// `Fn::GetAtt`, wherever it sits inside `Fn::Join` / `Fn::Sub` and friends.
    fn find_reference(
        &self,
        value: &Value,
        accept: impl Fn(&str) -> bool + Copy,
    ) -> Option<String> {
        let accepted = |id: &str| {
            self.resource(id)
                .is_some_and(|r| accept(&r.kind))
                .then(|| id.to_owned())
        };
        match value {
            Value::Object(map) => {
                if let Some(id) = map.get("Ref").and_then(Value::as_str) {
                    if let Some(found) = accepted(id) {
                        return Some(found);
                    }
                }
                if let Some(att) = map.get("Fn::GetAtt") {
                    let id = match att {
                        Value::Array(parts) => parts.first().and_then(Value::as_str),
                        Value::String(s) => s.split('.').next(),
                        _ => None,
                    };
                    if let Some(found) = id.and_then(accepted) {
                        return Some(found);
                    }
                }
                if let Some(Value::String(text)) = map.get("Fn::Sub") {
                    return crate::intrinsics::sub_references(text).find_map(|id| accepted(&id));
                }
                map.values().find_map(|v| self.find_reference(v, accept))
            }
            Value::Array(items) => items.iter().find_map(|v| self.find_reference(v, accept)),
            _ => None,
        }
    }
}

/// The stack name CDK gives a template file: `cdk.out/Realtime-dev.template.json` is `Realtime-dev`.
fn stack_name_of(path: &Path) -> String {
    let file = path.file_name().and_then(|f| f.to_str()).unwrap_or("local");
    file.strip_suffix(".template.json")
        .or_else(|| file.strip_suffix(".json"))
        .unwrap_or(file)
        .to_owned()
}

/// The WebSocket API as the gateway serves it.
#[derive(Debug, Clone)]
pub struct ApiModel {
    /// The API's logical id in the template.
    pub logical_id: String,
    /// How a message picks its route.
    pub selection: RouteSelection,
    /// The stage served.
    pub stage: StageSpec,
    /// Routes by route key (`$connect`, `$default`, `join`, ...).
    pub routes: HashMap<String, Route>,
    /// The functions the routes and authorizers invoke, by logical id.
    pub functions: BTreeMap<String, FunctionSpec>,
    /// Every DynamoDB table of the template.
    pub tables: Vec<TableSpec>,
    /// Every Secrets Manager secret of the template (locally, all hold the local secret).
    pub secrets: Vec<SecretSpec>,
}

impl ApiModel {
    /// The route a message goes to: the selected key's route, else `$default`, else none.
    pub fn route_for_message(&self, body: &str) -> Option<&Route> {
        self.selection
            .select(body)
            .filter(|key| key != "$connect" && key != "$disconnect")
            .and_then(|key| self.routes.get(&key))
            .or_else(|| self.routes.get("$default"))
    }

    /// A special route by key (`$connect`, `$disconnect`).
    pub fn route(&self, key: &str) -> Option<&Route> {
        self.routes.get(key)
    }
}

/// The stage the API is served under.
#[derive(Debug, Clone)]
pub struct StageSpec {
    /// The stage name, also the first path segment of URLs.
    pub name: String,
    /// The stage variables, passed in every event when present.
    pub variables: BTreeMap<String, String>,
}

/// One route of the API.
#[derive(Debug, Clone)]
pub struct Route {
    /// The route key.
    pub key: String,
    /// The integration; `None` for a route without one (a mock, locally nothing runs).
    pub target: Option<RouteTarget>,
    /// The REQUEST authorizer (only on `$connect`).
    pub authorizer: Option<AuthorizerSpec>,
    /// Whether the route is two-way (a `RouteResponseSelectionExpression` and a `$default`
    /// route response): the handler's `body` goes back to the caller.
    pub two_way: bool,
}

/// A Lambda proxy integration.
#[derive(Debug, Clone)]
pub struct RouteTarget {
    /// The function's logical id.
    pub function: String,
    /// The integration timeout (at most 29 s).
    pub timeout: Duration,
}

/// A Lambda REQUEST authorizer.
#[derive(Debug, Clone)]
pub struct AuthorizerSpec {
    /// The authorizer's logical id.
    pub logical_id: String,
    /// The function's logical id.
    pub function: String,
    /// Where the identity comes from; a missing one gives 401 without invoking the function.
    pub identity_sources: Vec<IdentitySource>,
}

/// One identity source of a REQUEST authorizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// `route.request.header.NAME`
    Header(String),
    /// `route.request.querystring.NAME`
    QueryString(String),
    /// `stageVariables.NAME`
    StageVariable(String),
    /// `context.NAME`
    Context(String),
}

impl IdentitySource {
    /// Parses an identity source as API Gateway writes it.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.strip_prefix('$').unwrap_or(text);
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        if let Some(name) = text
            .strip_prefix("request.header.")
            .or_else(|| text.strip_prefix("route.request.header."))
        {
            return non_empty(name).map(Self::Header);
        }
        if let Some(name) = text
            .strip_prefix("request.querystring.")
            .or_else(|| text.strip_prefix("route.request.querystring."))
        {
            return non_empty(name).map(Self::QueryString);
        }
        if let Some(name) = text.strip_prefix("stageVariables.") {
            return non_empty(name).map(Self::StageVariable);
        }
        if let Some(name) = text.strip_prefix("context.") {
            return non_empty(name).map(Self::Context);
        }
        None
    }
}

/// A function a route invokes, ready to run as a local process.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// The logical id in the template.
    pub logical_id: String,
    /// The function name (`FunctionName`, else a stand-in built like CloudFormation's).
    pub name: String,
    /// The function's ARN, as the handler sees it in its context.
    pub arn: String,
    /// The handler binary: a name under the binary folder, or a path.
    pub binary: String,
    /// The resolved environment (without `CALLBACK_URL`, which the gateway sets).
    pub environment: BTreeMap<String, String>,
    /// The function's own timeout.
    pub timeout: Duration,
    /// The configured memory in MB (reported to the runtime).
    pub memory_mb: u64,
    /// Whether the function logs JSON (`LoggingConfig.LogFormat`).
    pub log_format_json: bool,
}

/// A Secrets Manager secret, served locally by the gateway's Secrets Manager API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSpec {
    /// The logical id.
    pub logical_id: String,
    /// The secret's name (`Name`, else a stand-in built like CloudFormation's).
    pub name: String,
    /// Its ARN, what `Ref` gives (and what functions get in their environment).
    pub arn: String,
}

/// A DynamoDB table to create in DynamoDB Local.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSpec {
    /// The logical id.
    pub logical_id: String,
    /// The table name.
    pub name: String,
    /// The primary key.
    pub key_schema: Vec<KeyElement>,
    /// The types of the key attributes.
    pub attribute_definitions: Vec<AttributeDefinition>,
    /// Global secondary indexes.
    pub global_secondary_indexes: Vec<SecondaryIndex>,
    /// Local secondary indexes.
    pub local_secondary_indexes: Vec<SecondaryIndex>,
    /// The TTL attribute, when TTL is enabled.
    pub ttl_attribute: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TableLayout {
    key_schema: Vec<KeyElement>,
    #[serde(default)]
    attribute_definitions: Vec<AttributeDefinition>,
    #[serde(default)]
    global_secondary_indexes: Vec<SecondaryIndex>,
    #[serde(default)]
    local_secondary_indexes: Vec<SecondaryIndex>,
    #[serde(default)]
    time_to_live_specification: Option<TtlSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TtlSpec {
    attribute_name: Option<String>,
    enabled: Option<bool>,
}

/// One element of a key schema.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyElement {
    /// The attribute.
    pub attribute_name: String,
    /// `HASH` or `RANGE`.
    pub key_type: String,
}

/// The type of a key attribute.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttributeDefinition {
    /// The attribute.
    pub attribute_name: String,
    /// `S`, `N` or `B`.
    pub attribute_type: String,
}

/// A global or local secondary index.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecondaryIndex {
    /// The index name.
    pub index_name: String,
    /// The index key.
    pub key_schema: Vec<KeyElement>,
    /// Which attributes the index holds.
    #[serde(default)]
    pub projection: Projection,
}

/// An index projection.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Projection {
    /// `ALL`, `KEYS_ONLY` or `INCLUDE`.
    pub projection_type: Option<String>,
    /// The attributes of an `INCLUDE` projection.
    #[serde(default)]
    pub non_key_attributes: Vec<String>,
}
