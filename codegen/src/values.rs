//! Checks a JSON value against a schema of the IR: spec defaults and environment values.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::ir::{IntFormat, ListType, Schema, TypeDecl, TypeDef};

/// Whether a value is a complete object (a default) or only the keys it sets (an environment's
/// overrides of the Helm values, where required keys come from the defaults).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Completeness {
    Complete,
    Partial,
}

/// Every problem with `value` as an instance of `schema`, as (path below `path`, message).
pub fn check(
    types: &BTreeMap<String, TypeDecl>,
    schema: &Schema,
    value: &Value,
    path: &str,
    completeness: Completeness,
) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    check_into(types, schema, value, path, completeness, &mut problems);
    problems
}

fn check_into(
    types: &BTreeMap<String, TypeDecl>,
    schema: &Schema,
    value: &Value,
    path: &str,
    completeness: Completeness,
    problems: &mut Vec<(String, String)>,
) {
    let mut wrong = |expected: &str| {
        problems.push((
            path.to_owned(),
            format!("expected {expected}, found {}", describe(value)),
        ));
    };
    match schema {
        Schema::String(rules) => match value.as_str() {
            None => wrong("a string"),
            Some(s) => {
                let len = s.chars().count() as u64;
                if rules.max_length.is_some_and(|m| len > m)
                    || rules.min_length.is_some_and(|m| len < m)
                {
                    problems.push((
                        path.to_owned(),
                        format!("length {len} is outside the allowed length"),
                    ));
                }
                if let Some(p) = &rules.pattern
                    && regex::Regex::new(p).is_ok_and(|re| !re.is_match(s))
                {
                    problems.push((
                        path.to_owned(),
                        format!("{s:?} does not match the pattern {p:?}"),
                    ));
                }
            }
        },
        Schema::Integer { format, range } => match value.as_i64() {
            None => wrong("an integer"),
            Some(n) => {
                if *format == IntFormat::Int32 && i32::try_from(n).is_err() {
                    problems.push((path.to_owned(), format!("{n} does not fit in 32 bits")));
                }
                check_range(range, n as f64, path, problems);
            }
        },
        Schema::Number { range } => match value.as_f64() {
            None => wrong("a number"),
            Some(n) => check_range(range, n, path, problems),
        },
        Schema::Boolean => {
            if !value.is_boolean() {
                wrong("a boolean")
            }
        }
        Schema::DateTime | Schema::MicroTime => {
            let ok = value.as_str().is_some_and(|s| {
                regex::Regex::new(
                    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$",
                )
                .expect("static regex")
                .is_match(s)
            });
            if !ok {
                wrong("an RFC 3339 date-time string")
            }
        }
        Schema::Json => {}
        Schema::Named(name) => match types.get(name).map(|d| &d.def) {
            Some(TypeDef::Enum(e)) => match value.as_str() {
                Some(s) if e.variants.iter().any(|v| v.wire == s) => {}
                _ => {
                    let allowed: Vec<_> = e.variants.iter().map(|v| v.wire.as_str()).collect();
                    problems.push((
                        path.to_owned(),
                        format!("{} is not one of {}", describe(value), allowed.join(", ")),
                    ));
                }
            },
            Some(TypeDef::Object(o)) => match value.as_object() {
                None => wrong("an object"),
                Some(map) => {
                    for key in map.keys() {
                        if !o.fields.iter().any(|f| &f.name == key) {
                            let known: Vec<_> = o.fields.iter().map(|f| f.name.as_str()).collect();
                            problems.push((
                                format!("{path}.{key}"),
                                format!("unknown key (known keys: {})", known.join(", ")),
                            ));
                        }
                    }
                    for field in &o.fields {
                        let child = format!("{path}.{}", field.name);
                        match map.get(&field.name) {
                            Some(v) => {
                                check_into(types, &field.schema, v, &child, completeness, problems)
                            }
                            None if completeness == Completeness::Complete
                                && field.required
                                && field.default.is_none() =>
                            {
                                problems.push((child, "required key is missing".to_owned()))
                            }
                            None => {}
                        }
                    }
                }
            },
            None => problems.push((path.to_owned(), format!("unknown type {name}"))),
        },
        Schema::List(list) => match value.as_array() {
            None => wrong("a list"),
            Some(items) => {
                if list.max_items.is_some_and(|m| items.len() as u64 > m)
                    || list.min_items.is_some_and(|m| (items.len() as u64) < m)
                {
                    problems.push((
                        path.to_owned(),
                        format!("{} items is outside the allowed count", items.len()),
                    ));
                }
                if matches!(list.list_type, Some(ListType::Set)) {
                    for (i, item) in items.iter().enumerate() {
                        if items[..i].contains(item) {
                            problems.push((
                                format!("{path}[{i}]"),
                                format!("duplicate item {item} in a set"),
                            ));
                        }
                    }
                }
                for (i, item) in items.iter().enumerate() {
                    check_into(
                        types,
                        &list.items,
                        item,
                        &format!("{path}[{i}]"),
                        completeness,
                        problems,
                    );
                }
            }
        },
        Schema::Map {
            values,
            max_properties,
        } => match value.as_object() {
            None => wrong("a map"),
            Some(map) => {
                if max_properties.is_some_and(|m| map.len() as u64 > m) {
                    problems.push((
                        path.to_owned(),
                        format!("{} entries is more than allowed", map.len()),
                    ));
                }
                for (k, v) in map {
                    check_into(
                        types,
                        values,
                        v,
                        &format!("{path}.{k}"),
                        completeness,
                        problems,
                    );
                }
            }
        },
    }
}

fn check_range(range: &crate::ir::Range, n: f64, path: &str, problems: &mut Vec<(String, String)>) {
    let below = range
        .minimum
        .as_ref()
        .and_then(|m| m.as_f64())
        .is_some_and(|m| n < m);
    let above = range
        .maximum
        .as_ref()
        .and_then(|m| m.as_f64())
        .is_some_and(|m| n > m);
    if below || above {
        problems.push((path.to_owned(), format!("{n} is outside the allowed range")));
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}
