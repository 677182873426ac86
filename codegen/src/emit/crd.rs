//! CustomResourceDefinitions for the chart's `crds/` directory.

use std::path::PathBuf;

use serde_json::{Map, Value, json};

use super::schema::{self, Dialect};
use super::{CHART_DIR, yaml_header};
use crate::GeneratedFiles;
use crate::ir::{Ir, Kind, TypeDef};

pub fn emit(ir: &Ir) -> GeneratedFiles {
    ir.kinds
        .iter()
        .map(|kind| {
            let path = PathBuf::from(format!(
                "{CHART_DIR}/crds/{}.yaml",
                kind.crd_name(&ir.group)
            ));
            let source = format!("spec/{}", kind.file);
            let body = to_yaml(&crd(ir, kind));
            (path, format!("{}{body}", yaml_header(&source)))
        })
        .collect()
}

/// The CRD of one kind as a JSON value (also used by tests that compare it with kube-derive's).
pub fn crd(ir: &Ir, kind: &Kind) -> Value {
    let mut names = Map::new();
    names.insert("kind".into(), json!(kind.kind));
    names.insert("plural".into(), json!(kind.plural));
    names.insert("singular".into(), json!(kind.singular));
    if !kind.short_names.is_empty() {
        names.insert("shortNames".into(), json!(kind.short_names));
    }
    if !kind.categories.is_empty() {
        names.insert("categories".into(), json!(kind.categories));
    }

    let mut version = Map::new();
    version.insert("name".into(), json!(kind.version));
    version.insert("served".into(), json!(kind.served));
    version.insert("storage".into(), json!(kind.storage));
    version.insert(
        "schema".into(),
        json!({ "openAPIV3Schema": root_schema(ir, kind) }),
    );
    if kind.status_type.is_some() {
        version.insert("subresources".into(), json!({ "status": {} }));
    }
    if !kind.printer_columns.is_empty() {
        let columns: Vec<Value> = kind
            .printer_columns
            .iter()
            .map(|c| {
                let mut m = Map::new();
                m.insert("name".into(), json!(c.name));
                m.insert("type".into(), json!(c.ty));
                m.insert("jsonPath".into(), json!(c.json_path));
                if let Some(d) = &c.description {
                    m.insert("description".into(), json!(d));
                }
                if let Some(p) = c.priority {
                    m.insert("priority".into(), json!(p));
                }
                if let Some(f) = &c.format {
                    m.insert("format".into(), json!(f));
                }
                Value::Object(m)
            })
            .collect();
        version.insert("additionalPrinterColumns".into(), Value::Array(columns));
    }

    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": kind.crd_name(&ir.group) },
        "spec": {
            "group": ir.group,
            "names": names,
            "scope": if kind.namespaced { "Namespaced" } else { "Cluster" },
            "versions": [Value::Object(version)],
        }
    })
}

fn root_schema(ir: &Ir, kind: &Kind) -> Value {
    let object = |name: &str| match ir.types.get(name).map(|d| &d.def) {
        Some(TypeDef::Object(o)) => {
            Value::Object(schema::object_schema(&ir.types, o, Dialect::Crd))
        }
        _ => unreachable!("the IR declares spec and status types as objects"),
    };
    let mut properties = Map::new();
    properties.insert("spec".into(), object(&kind.spec_type));
    if let Some(status_name) = &kind.status_type {
        let mut status = object(status_name);
        // A new object has no status; the operator writes it.
        status["nullable"] = json!(true);
        // Server defaults inside the status apply only to a status that exists: `{}` makes one
        // (the API server defaults it when the object is created and read).
        let has_server_defaults = matches!(
            ir.types.get(status_name).map(|d| &d.def),
            Some(TypeDef::Object(o)) if o.fields.iter().any(|f| f.server_default.is_some())
        );
        if has_server_defaults {
            status["default"] = json!({});
        }
        properties.insert("status".into(), status);
    }
    let mut root = Map::new();
    root.insert("type".into(), json!("object"));
    root.insert("title".into(), json!(kind.kind));
    if let Some(d) = &kind.description {
        root.insert("description".into(), json!(d));
    }
    root.insert("properties".into(), Value::Object(properties));
    root.insert("required".into(), json!(["spec"]));
    Value::Object(root)
}

pub(crate) fn to_yaml(value: &Value) -> String {
    serde_saphyr::to_string(value).expect("a JSON value always serializes to YAML")
}
