//! The template as CloudFormation wrote it: resources by logical id, nothing resolved yet.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::TemplateError;

/// A parsed CloudFormation template, before any intrinsic is resolved.
#[derive(Debug, Clone)]
pub struct Template {
    pub(super) path: PathBuf,
    stack_name: String,
    pub(super) resources: BTreeMap<String, RawResource>,
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
    pub(super) resources: BTreeMap<String, RawResource>,
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

    pub(super) fn of_type<'a>(
        &'a self,
        kind: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a RawResource)> {
        self.resources.iter().filter(move |(_, r)| r.kind == kind)
    }

    pub(super) fn resource_error(
        &self,
        resource: &str,
        problem: impl Into<String>,
    ) -> TemplateError {
        TemplateError::Resource {
            path: self.path.clone(),
            resource: resource.to_owned(),
            problem: problem.into(),
        }
    }

    /// Whether `properties[key]` is a `Ref` to `logical_id`.
    pub(super) fn refers_to(
        &self,
        properties: &Map<String, Value>,
        key: &str,
        logical_id: &str,
    ) -> bool {
        properties
            .get(key)
            .and_then(|v| v.get("Ref"))
            .and_then(Value::as_str)
            == Some(logical_id)
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
