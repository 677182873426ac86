//! IR schemas → OpenAPI v3 (for CRDs) or JSON Schema (for Helm's values.schema.json).

use serde_json::{Map, Value, json};

use crate::ir::*;

type Types = std::collections::BTreeMap<String, TypeDecl>;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// A structural schema for a CRD, with the `x-kubernetes-*` extensions.
    Crd,
    /// JSON Schema draft-07 for Helm values; objects refuse unknown keys.
    HelmValues,
}

/// A field's property schema: its type's schema plus the field's description, default and rules.
pub fn field_schema(types: &Types, field: &Field, dialect: Dialect) -> Map<String, Value> {
    let mut out = schema(types, &field.schema, dialect);
    match &field.documentation() {
        Some(d) => {
            out.insert("description".into(), json!(d));
        }
        None => {
            out.remove("description");
        }
    }
    if let Some(default) = field.default.as_ref().or(field.server_default.as_ref()) {
        out.insert("default".into(), default.clone());
    }
    // An optional field is an `Option` in Rust, which accepts null; the schema says so too.
    // (Free-form JSON takes null as a value already; kube-derive does not mark it either.)
    if dialect == Dialect::Crd
        && !field.required
        && field.default.is_none()
        && field.schema != Schema::Json
    {
        out.insert("nullable".into(), json!(true));
    }
    add_rules(&mut out, &field.rules, dialect);
    out
}

pub fn schema(types: &Types, node: &Schema, dialect: Dialect) -> Map<String, Value> {
    let mut out = Map::new();
    let mut set = |k: &str, v: Value| {
        out.insert(k.to_owned(), v);
    };
    match node {
        Schema::String(rules) => {
            set("type", json!("string"));
            if let Some(p) = &rules.pattern {
                set("pattern", json!(p));
            }
            if let Some(n) = rules.min_length {
                set("minLength", json!(n));
            }
            if let Some(n) = rules.max_length {
                set("maxLength", json!(n));
            }
        }
        Schema::Integer { format, range } => {
            set("type", json!("integer"));
            set(
                "format",
                json!(if *format == IntFormat::Int32 {
                    "int32"
                } else {
                    "int64"
                }),
            );
            add_range(&mut out, range);
        }
        Schema::Number { range } => {
            set("type", json!("number"));
            set("format", json!("double"));
            add_range(&mut out, range);
        }
        Schema::Boolean => set("type", json!("boolean")),
        Schema::DateTime | Schema::MicroTime => {
            set("type", json!("string"));
            set("format", json!("date-time"));
        }
        Schema::Json => {
            if dialect == Dialect::Crd {
                set("x-kubernetes-preserve-unknown-fields", json!(true));
            }
        }
        Schema::Named(name) => match types.get(name).map(|d| &d.def) {
            Some(TypeDef::Object(o)) => return object_schema(types, o, dialect),
            Some(TypeDef::Enum(e)) => {
                set("type", json!("string"));
                if let Some(d) = &e.description {
                    set("description", json!(d));
                }
                set(
                    "enum",
                    Value::Array(e.variants.iter().map(|v| json!(v.wire)).collect()),
                );
            }
            None => unreachable!("the IR resolves every type name"),
        },
        Schema::List(list) => return list_schema(types, list, dialect),
        Schema::Map {
            values,
            max_properties,
        } => {
            set("type", json!("object"));
            set(
                "additionalProperties",
                Value::Object(schema(types, values, dialect)),
            );
            if let Some(n) = max_properties {
                set("maxProperties", json!(n));
            }
        }
    }
    out
}

fn list_schema(types: &Types, list: &ListSchema, dialect: Dialect) -> Map<String, Value> {
    let mut out = Map::new();
    let mut set = |k: &str, v: Value| {
        out.insert(k.to_owned(), v);
    };
    set("type", json!("array"));
    set("items", Value::Object(schema(types, &list.items, dialect)));
    if let Some(n) = list.min_items {
        set("minItems", json!(n));
    }
    if let Some(n) = list.max_items {
        set("maxItems", json!(n));
    }
    if dialect == Dialect::Crd {
        if let Some(t) = list.list_type {
            set("x-kubernetes-list-type", json!(t.as_str()));
        }
        if !list.map_keys.is_empty() {
            set("x-kubernetes-list-map-keys", json!(list.map_keys));
        }
    } else if list.list_type == Some(ListType::Set) {
        set("uniqueItems", json!(true));
    }
    out
}

pub fn object_schema(types: &Types, o: &ObjectType, dialect: Dialect) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("type".into(), json!("object"));
    if let Some(d) = &o.description {
        out.insert("description".into(), json!(d));
    }
    let properties: Map<String, Value> = o
        .fields
        .iter()
        .map(|f| {
            (
                f.name.clone(),
                Value::Object(field_schema(types, f, dialect)),
            )
        })
        .collect();
    out.insert("properties".into(), Value::Object(properties));
    let mut required: Vec<&str> = o
        .fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.name.as_str())
        .collect();
    required.sort_unstable();
    if !required.is_empty() {
        out.insert("required".into(), json!(required));
    }
    if dialect == Dialect::HelmValues {
        out.insert("additionalProperties".into(), json!(false));
    }
    add_rules(&mut out, &o.rules, dialect);
    out
}

fn add_range(out: &mut Map<String, Value>, range: &Range) {
    if let Some(n) = &range.minimum {
        out.insert("minimum".into(), Value::Number(n.clone()));
    }
    if let Some(n) = &range.maximum {
        out.insert("maximum".into(), Value::Number(n.clone()));
    }
}

fn add_rules(out: &mut Map<String, Value>, rules: &[Rule], dialect: Dialect) {
    if rules.is_empty() || dialect != Dialect::Crd {
        return;
    }
    out.insert(
        "x-kubernetes-validations".into(),
        Value::Array(rules.iter().map(rule_json).collect()),
    );
}

pub fn rule_json(rule: &Rule) -> Value {
    let mut m = Map::new();
    m.insert("rule".into(), json!(rule.rule));
    m.insert("message".into(), json!(rule.message));
    if let Some(p) = &rule.field_path {
        m.insert("fieldPath".into(), json!(p));
    }
    if let Some(r) = &rule.reason {
        m.insert("reason".into(), json!(r));
    }
    Value::Object(m)
}
