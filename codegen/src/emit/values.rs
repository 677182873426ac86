//! Helm values: `values.yaml` (every setting with its default and description), one
//! `values-<env>.yaml` per environment, and `values.schema.json`, which Helm checks on install.

use std::fmt::Write;

use serde_json::{Map, Value, json};

use super::schema::{self, Dialect};
use super::{CHART_DIR, yaml_header};
use crate::GeneratedFiles;
use crate::ir::{Environment, Field, Ir, Schema, TypeDef};

pub fn emit(ir: &Ir) -> GeneratedFiles {
    let mut files = GeneratedFiles::new();
    let mut defaults = yaml_header("spec/environments.yaml (settings)");
    render_fields(
        ir,
        &mut defaults,
        &ir.settings.fields,
        &defaults_of(ir, &ir.settings.fields),
        0,
    );
    files.insert(format!("{CHART_DIR}/values.yaml").into(), defaults);
    for env in ir.settings.environments.values() {
        files.insert(
            format!("{CHART_DIR}/values-{}.yaml", env.name).into(),
            environment_file(ir, env),
        );
    }
    files.insert(
        format!("{CHART_DIR}/values.schema.json").into(),
        schema_json(ir),
    );
    files
}

/// The command that installs an environment; shown in its values file and used by `cargo xtask deploy`.
pub fn helm_command(env: &Environment) -> String {
    format!(
        "helm upgrade --install {} {CHART_DIR} --namespace {} --create-namespace --values {CHART_DIR}/values-{}.yaml",
        env.release_name, env.namespace, env.name
    )
}

fn environment_file(ir: &Ir, env: &Environment) -> String {
    let mut out = yaml_header(&format!(
        "spec/environments.yaml (environments.{})",
        env.name
    ));
    let _ = writeln!(
        out,
        "# Environment {}: release {} in namespace {}.",
        env.name, env.release_name, env.namespace
    );
    let _ = writeln!(
        out,
        "# Install: cargo xtask deploy {}  ({})",
        env.name,
        helm_command(env)
    );
    if env.values.is_empty() {
        out.push_str("{}\n");
    }
    render_fields(ir, &mut out, &ir.settings.fields, &env.values, 0);
    out
}

/// Every setting's default; objects recurse, collections start empty, other settings without a
/// default are left out.
fn defaults_of(ir: &Ir, fields: &[Field]) -> Map<String, Value> {
    let mut out = Map::new();
    for f in fields {
        let value = match (&f.default, &f.schema) {
            (Some(v), _) => v.clone(),
            (None, Schema::Named(n)) => match ir.types.get(n).map(|d| &d.def) {
                Some(TypeDef::Object(o)) => Value::Object(defaults_of(ir, &o.fields)),
                _ => continue,
            },
            (None, Schema::List(_)) => json!([]),
            (None, Schema::Map { .. }) => json!({}),
            (None, _) => continue,
        };
        out.insert(f.name.clone(), value);
    }
    out
}

/// Writes `values` as block YAML in the order of `fields`, each key under its description.
fn render_fields(
    ir: &Ir,
    out: &mut String,
    fields: &[Field],
    values: &Map<String, Value>,
    indent: usize,
) {
    let pad = " ".repeat(indent);
    for f in fields {
        let Some(value) = values.get(&f.name) else {
            continue;
        };
        if let Some(d) = &f.description {
            for line in d.lines() {
                let _ = writeln!(out, "{pad}# {line}");
            }
        }
        let nested = match (&f.schema, value) {
            (Schema::Named(n), Value::Object(map)) if !map.is_empty() => {
                match ir.types.get(n).map(|d| &d.def) {
                    Some(TypeDef::Object(o)) => Some((o.fields.clone(), map)),
                    _ => None,
                }
            }
            _ => None,
        };
        match nested {
            Some((child_fields, map)) => {
                let _ = writeln!(out, "{pad}{}:", f.name);
                render_fields(ir, out, &child_fields, map, indent + 2);
            }
            // JSON is valid YAML flow syntax, and quotes every string unambiguously.
            None => {
                let _ = writeln!(out, "{pad}{}: {value}", f.name);
            }
        }
    }
}

fn schema_json(ir: &Ir) -> String {
    let mut properties = Map::new();
    for f in &ir.settings.fields {
        properties.insert(
            f.name.clone(),
            Value::Object(schema::field_schema(&ir.types, f, Dialect::HelmValues)),
        );
    }
    // Helm passes `global` to every chart; it is not ours to restrict.
    properties.insert("global".into(), json!({ "type": "object" }));
    let root = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "mcall-operator Helm values",
        "description": crate::GENERATED_NOTICE,
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
    });
    let mut text = serde_json::to_string_pretty(&root).expect("JSON serializes");
    text.push('\n');
    text
}
