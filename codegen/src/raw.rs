//! The spec files as written: serde structs that mirror the YAML, with no meaning attached yet.
//! Unknown keys are refused here, so a typo never silently drops a constraint.

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiFile {
    pub group: String,
    #[serde(default)]
    pub types: IndexMap<String, Node>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KindFile {
    pub kind: String,
    pub plural: String,
    pub singular: String,
    #[serde(default)]
    pub short_names: Vec<String>,
    #[serde(default)]
    pub categories: Vec<String>,
    pub scope: String,
    pub description: Option<String>,
    pub versions: Vec<Version>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Version {
    pub name: String,
    pub served: bool,
    pub storage: bool,
    #[serde(default)]
    pub printer_columns: Vec<PrinterColumn>,
    pub spec: Node,
    pub status: Option<Node>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PrinterColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub json_path: String,
    pub description: Option<String>,
    pub priority: Option<i32>,
    pub format: Option<String>,
}

/// A schema node: a field, a list item, a map value or a named type.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Node {
    #[serde(rename = "type")]
    pub ty: Option<String>,
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    pub rust_name: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub required: bool,
    pub default: Option<Value>,
    /// A default only the API server applies (on create and when reading an object that lacks
    /// it): the Rust field stays an `Option`, since a client may see the object before.
    pub server_default: Option<Value>,
    #[serde(rename = "enum")]
    pub variants: Option<Vec<String>>,
    pub format: Option<String>,
    pub minimum: Option<serde_json::Number>,
    pub maximum: Option<serde_json::Number>,
    pub pattern: Option<String>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub min_items: Option<u64>,
    pub max_items: Option<u64>,
    pub max_properties: Option<u64>,
    pub list_type: Option<String>,
    pub list_map_keys: Option<Vec<String>>,
    pub items: Option<Box<Node>>,
    pub values: Option<Box<Node>>,
    pub fields: Option<IndexMap<String, Node>>,
    #[serde(default)]
    pub rules: Vec<Rule>,
    pub include: Option<Include>,
}

/// Fields of another kind's spec taken into an object (see spec/README.md, "Included fields").
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Include {
    pub from: String,
    pub fields: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    pub rule: String,
    pub message: String,
    pub field_path: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RbacFile {
    pub rules: Vec<RbacRule>,
    #[serde(default)]
    pub operator_namespace_rules: Vec<RbacRule>,
    #[serde(default)]
    pub cluster_rules: Vec<RbacRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RbacRule {
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub verbs: Vec<String>,
    pub why: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentsFile {
    pub settings: IndexMap<String, Node>,
    pub environments: IndexMap<String, Environment>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Environment {
    pub namespace: String,
    pub release_name: String,
    #[serde(default)]
    pub values: serde_json::Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonsFile {
    pub conditions: IndexMap<String, ConditionTypeEntry>,
    pub reasons: IndexMap<String, ReasonEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionTypeEntry {
    pub kinds: Vec<String>,
    pub description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonEntry {
    pub kinds: Vec<String>,
    #[serde(default)]
    pub conditions: Vec<String>,
    pub event: Option<String>,
    pub description: String,
}
