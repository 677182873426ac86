//! The validated intermediate representation. No YAML in here: every name is checked, every type
//! reference resolves, every default fits its field, and collections are ordered deterministically.

use std::collections::BTreeMap;

use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
pub struct Ir {
    pub group: String,
    /// Digest of the spec files this IR came from (see `SpecFiles::fingerprint`).
    pub fingerprint: String,
    pub kinds: Vec<Kind>,
    /// Every named type: shared ones from `api.yaml` and the inline objects and enums of each kind.
    pub types: BTreeMap<String, TypeDecl>,
    pub rbac: Rbac,
    pub settings: Settings,
    /// The condition types and the reasons of status conditions and Events (`reasons.yaml`).
    pub reasons: Reasons,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Kind {
    /// The spec file, relative to spec/ (e.g. `kinds/mcalltask.yaml`).
    pub file: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    pub description: Option<String>,
    pub version: String,
    pub served: bool,
    pub storage: bool,
    pub printer_columns: Vec<PrinterColumn>,
    /// Name of the spec struct in `types`.
    pub spec_type: String,
    /// Name of the status struct in `types`, when the kind has a status subresource.
    pub status_type: Option<String>,
    /// Rust module (and file) holding the kind's own types, e.g. `mcall_task`.
    pub module: String,
}

impl Kind {
    pub fn crd_name(&self, group: &str) -> String {
        format!("{}.{group}", self.plural)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    pub ty: String,
    pub json_path: String,
    pub description: Option<String>,
    pub priority: Option<i32>,
    pub format: Option<String>,
}

/// Where a named type is emitted.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Module {
    /// `generated/src/types.rs`: shared by several kinds.
    Shared,
    /// The kind's own module.
    Kind(String),
    /// Only part of the Helm values schema; no Rust is emitted.
    Settings,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TypeDecl {
    pub module: Module,
    pub def: TypeDef,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TypeDef {
    Object(ObjectType),
    Enum(EnumType),
}

impl TypeDef {
    pub fn description(&self) -> Option<&str> {
        match self {
            TypeDef::Object(o) => o.description.as_deref(),
            TypeDef::Enum(e) => e.description.as_deref(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ObjectType {
    pub name: String,
    pub description: Option<String>,
    pub fields: Vec<Field>,
    /// CEL rules on the object as a whole.
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EnumType {
    pub name: String,
    pub description: Option<String>,
    pub variants: Vec<Variant>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Variant {
    /// The value on the wire, e.g. `startsWith`.
    pub wire: String,
    /// The Rust variant, e.g. `StartsWith`.
    pub ident: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    /// The JSON name, e.g. `retryCount`.
    pub name: String,
    /// The Rust field name, e.g. `retry_count` or `r#type`.
    pub ident: String,
    pub description: Option<String>,
    pub required: bool,
    pub default: Option<Value>,
    /// Applied by the API server only; the Rust field stays optional.
    pub server_default: Option<Value>,
    pub schema: Schema,
    /// CEL rules on this field's value.
    pub rules: Vec<Rule>,
}

impl Field {
    /// The description as documented (Rust doc, CRD description): a server default is told, since
    /// the Rust type (an `Option`) cannot tell it.
    pub fn documentation(&self) -> Option<String> {
        let Some(value) = &self.server_default else {
            return self.description.clone();
        };
        let shown = value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned);
        let note = format!("The API server fills in `{shown}` when absent.");
        Some(match &self.description {
            Some(d) => format!("{d}\n\n{note}"),
            None => note,
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Schema {
    String(StringRules),
    Integer {
        format: IntFormat,
        range: Range,
    },
    Number {
        range: Range,
    },
    Boolean,
    DateTime,
    /// RFC 3339 with microseconds (Rust `MicroTime`): for times that identify something finer
    /// than a second, such as a spread schedule tick.
    MicroTime,
    /// Free-form JSON (`x-kubernetes-preserve-unknown-fields`).
    Json,
    /// An object or enum in `Ir::types`.
    Named(String),
    List(Box<ListSchema>),
    Map {
        values: Box<Schema>,
        max_properties: Option<u64>,
    },
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct StringRules {
    pub pattern: Option<String>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntFormat {
    Int32,
    Int64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Range {
    pub minimum: Option<serde_json::Number>,
    pub maximum: Option<serde_json::Number>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ListSchema {
    pub items: Schema,
    pub min_items: Option<u64>,
    pub max_items: Option<u64>,
    pub list_type: Option<ListType>,
    pub map_keys: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListType {
    Atomic,
    Set,
    Map,
}

impl ListType {
    pub fn as_str(self) -> &'static str {
        match self {
            ListType::Atomic => "atomic",
            ListType::Set => "set",
            ListType::Map => "map",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub rule: String,
    pub message: String,
    pub field_path: Option<String>,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rbac {
    pub rules: Vec<RbacRule>,
    pub operator_namespace_rules: Vec<RbacRule>,
    /// Rules on cluster-scoped APIs: a ClusterRole even when the chart is limited to
    /// `watchNamespaces` (a Role cannot grant them).
    pub cluster_rules: Vec<RbacRule>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RbacRule {
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub verbs: Vec<String>,
    pub why: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The top-level Helm values and their schema.
    pub fields: Vec<Field>,
    pub environments: BTreeMap<String, Environment>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Environment {
    pub name: String,
    pub namespace: String,
    pub release_name: String,
    /// What this environment sets, validated against `Settings::fields`.
    pub values: serde_json::Map<String, Value>,
}

/// The condition types and reasons of `reasons.yaml`, in declaration order. Each name is PascalCase
/// and is both the wire string and the Rust variant.
#[derive(Clone, Debug, PartialEq)]
pub struct Reasons {
    pub conditions: Vec<ConditionTypeDef>,
    pub reasons: Vec<ReasonDef>,
}

/// A condition type: the `type` of a status condition.
#[derive(Clone, Debug, PartialEq)]
pub struct ConditionTypeDef {
    pub name: String,
    /// The kinds whose status has this condition.
    pub kinds: Vec<String>,
    /// One line, trimmed.
    pub description: String,
}

/// The `reason` of a status condition or of an Event.
#[derive(Clone, Debug, PartialEq)]
pub struct ReasonDef {
    pub name: String,
    /// The kinds that report it.
    pub kinds: Vec<String>,
    /// The condition types whose reason it can be (none for an Event-only reason).
    pub conditions: Vec<String>,
    /// The type of the Events with this reason, when it is an Event reason.
    pub event: Option<EventType>,
    /// One line, trimmed.
    pub description: String,
}

impl ReasonDef {
    /// Where the reason appears, for docs: `Ready, DependenciesReady, Warning Event`.
    pub fn appears_in(&self) -> String {
        let mut places: Vec<String> = self.conditions.clone();
        if let Some(event) = self.event {
            places.push(format!("{} Event", event.as_str()));
        }
        places.join(", ")
    }
}

/// The `type` of a Kubernetes Event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}
