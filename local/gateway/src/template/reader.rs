//! Turns the template into the gateway's model: the WebSocket API of one stage, its functions,
//! tables and secrets, with every intrinsic resolved for local use.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::intrinsics::{LocalContext, ResolveError, Resolver};
use super::model::*;
use super::source::Template;
use super::*;
use crate::routing::RouteSelection;

impl Template {
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
        let queues = self.queues(&resolver)?;
        let event_source_mappings =
            self.event_source_mappings(&queues, &resolver, &mut functions)?;
        Ok(ApiModel {
            logical_id: (*api_id).clone(),
            selection,
            stage,
            routes,
            functions,
            tables: self.tables(&resolver)?,
            secrets: self.secrets(&resolver)?,
            queues,
            event_source_mappings,
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
            let throttle = |settings: Option<&Value>| {
                let settings = settings?;
                let rate = settings.get("ThrottlingRateLimit").and_then(Value::as_f64);
                let burst = settings.get("ThrottlingBurstLimit").and_then(Value::as_u64);
                (rate.is_some() || burst.is_some()).then(|| ThrottleSpec {
                    // API Gateway's account-level defaults stand for a missing half.
                    rate: rate.unwrap_or(10_000.0),
                    burst: burst.and_then(|b| u32::try_from(b).ok()).unwrap_or(5_000),
                })
            };
            let default_throttling = throttle(stage.properties.get("DefaultRouteSettings"));
            let route_throttling = match stage.properties.get("RouteSettings") {
                Some(Value::Object(routes)) => routes
                    .iter()
                    .filter_map(|(key, settings)| Some((key.clone(), throttle(Some(settings))?)))
                    .collect(),
                _ => HashMap::new(),
            };
            return Ok(StageSpec {
                name,
                variables,
                default_throttling,
                route_throttling,
            });
        }
        if found.is_empty() {
            // A template without a stage resource still names its stage in the URL the stack builds;
            // accept the one asked for rather than refuse to run.
            return Ok(StageSpec {
                name: wanted.to_owned(),
                variables: BTreeMap::new(),
                default_throttling: None,
                route_throttling: HashMap::new(),
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

    pub(super) fn add_function(
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
                    format!("no Metadata {BINARY_METADATA_KEY:?}: the stack must name the handler binary of every function a route, an authorizer or an event source mapping invokes"),
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
                role: self.role_of(function_id, resolver)?,
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
                            | "BillingMode"
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
                on_demand: layout.billing_mode.as_ref().and_then(Value::as_str)
                    == Some("PAY_PER_REQUEST"),
            });
        }
        Ok(tables)
    }

    pub(super) fn resolve_string(
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

    pub(super) fn resolve_error(
        &self,
        resource: &str,
        property: &str,
        source: ResolveError,
    ) -> TemplateError {
        TemplateError::Resolve {
            path: self.path.clone(),
            resource: resource.to_owned(),
            property: property.to_owned(),
            source: Box::new(source),
        }
    }

    /// The first resource of an accepted type that `value` points at through `Ref` or
    /// `Fn::GetAtt`, wherever it sits inside `Fn::Join` / `Fn::Sub` and friends.
    pub(super) fn find_reference(
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
                    return super::intrinsics::sub_references(text).find_map(|id| accepted(&id));
                }
                map.values().find_map(|v| self.find_reference(v, accept))
            }
            Value::Array(items) => items.iter().find_map(|v| self.find_reference(v, accept)),
            _ => None,
        }
    }
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
    /// CloudFormation's default is `PROVISIONED`; an intrinsic here reads as that too.
    #[serde(default)]
    billing_mode: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TtlSpec {
    attribute_name: Option<String>,
    enabled: Option<bool>,
}
