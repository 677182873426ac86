//! Checks a JSON value against a schema of the IR: spec defaults and environment values.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::ir::{
    EnumType, IntFormat, ListSchema, ListType, ObjectType, Range, Schema, StringRules, TypeDecl,
    TypeDef,
};

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
    let mut checker = Checker {
        types,
        completeness,
        problems: Vec::new(),
    };
    checker.check(schema, value, path);
    checker.problems
}

struct Checker<'a> {
    types: &'a BTreeMap<String, TypeDecl>,
    completeness: Completeness,
    problems: Vec<(String, String)>,
}

impl Checker<'_> {
    fn check(&mut self, schema: &Schema, value: &Value, path: &str) {
        match schema {
            Schema::String(rules) => match value.as_str() {
                None => self.wrong(path, "a string", value),
                Some(s) => self.check_string(rules, s, path),
            },
            Schema::Integer { format, range } => match value.as_i64() {
                None => self.wrong(path, "an integer", value),
                Some(n) => {
                    if *format == IntFormat::Int32 && i32::try_from(n).is_err() {
                        self.problem(path, format!("{n} does not fit in 32 bits"));
                    }
                    self.check_range(range, n as f64, path);
                }
            },
            Schema::Number { range } => match value.as_f64() {
                None => self.wrong(path, "a number", value),
                Some(n) => self.check_range(range, n, path),
            },
            Schema::Boolean => {
                if !value.is_boolean() {
                    self.wrong(path, "a boolean", value)
                }
            }
            Schema::DateTime | Schema::MicroTime => {
                if !value.as_str().is_some_and(is_rfc3339) {
                    self.wrong(path, "an RFC 3339 date-time string", value)
                }
            }
            Schema::Json => {}
            Schema::Named(name) => match self.types.get(name).map(|d| &d.def) {
                Some(TypeDef::Enum(e)) => self.check_enum(e, value, path),
                Some(TypeDef::Object(o)) => match value.as_object() {
                    None => self.wrong(path, "an object", value),
                    Some(map) => self.check_object(o, map, path),
                },
                None => self.problem(path, format!("unknown type {name}")),
            },
            Schema::List(list) => match value.as_array() {
                None => self.wrong(path, "a list", value),
                Some(items) => self.check_list(list, items, path),
            },
            Schema::Map {
                values,
                max_properties,
            } => match value.as_object() {
                None => self.wrong(path, "a map", value),
                Some(map) => {
                    if max_properties.is_some_and(|m| map.len() as u64 > m) {
                        self.problem(path, format!("{} entries is more than allowed", map.len()));
                    }
                    for (k, v) in map {
                        self.check(values, v, &format!("{path}.{k}"));
                    }
                }
            },
        }
    }

    fn check_string(&mut self, rules: &StringRules, s: &str, path: &str) {
        let len = s.chars().count() as u64;
        if rules.max_length.is_some_and(|m| len > m) || rules.min_length.is_some_and(|m| len < m) {
            self.problem(path, format!("length {len} is outside the allowed length"));
        }
        if let Some(p) = &rules.pattern
            && regex::Regex::new(p).is_ok_and(|re| !re.is_match(s))
        {
            self.problem(path, format!("{s:?} does not match the pattern {p:?}"));
        }
    }

    fn check_enum(&mut self, e: &EnumType, value: &Value, path: &str) {
        if let Some(s) = value.as_str()
            && e.variants.iter().any(|v| v.wire == s)
        {
            return;
        }
        let allowed: Vec<_> = e.variants.iter().map(|v| v.wire.as_str()).collect();
        self.problem(
            path,
            format!("{} is not one of {}", describe(value), allowed.join(", ")),
        );
    }

    fn check_object(&mut self, o: &ObjectType, map: &serde_json::Map<String, Value>, path: &str) {
        for key in map.keys() {
            if !o.fields.iter().any(|f| &f.name == key) {
                let known: Vec<_> = o.fields.iter().map(|f| f.name.as_str()).collect();
                self.problem(
                    &format!("{path}.{key}"),
                    format!("unknown key (known keys: {})", known.join(", ")),
                );
            }
        }
        for field in &o.fields {
            let child = format!("{path}.{}", field.name);
            match map.get(&field.name) {
                Some(v) => self.check(&field.schema, v, &child),
                None if self.completeness == Completeness::Complete
                    && field.required
                    && field.default.is_none() =>
                {
                    self.problem(&child, "required key is missing".to_owned())
                }
                None => {}
            }
        }
    }

    fn check_list(&mut self, list: &ListSchema, items: &[Value], path: &str) {
        if list.max_items.is_some_and(|m| items.len() as u64 > m)
            || list.min_items.is_some_and(|m| (items.len() as u64) < m)
        {
            self.problem(
                path,
                format!("{} items is outside the allowed count", items.len()),
            );
        }
        if matches!(list.list_type, Some(ListType::Set)) {
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    self.problem(
                        &format!("{path}[{i}]"),
                        format!("duplicate item {item} in a set"),
                    );
                }
            }
        }
        for (i, item) in items.iter().enumerate() {
            self.check(&list.items, item, &format!("{path}[{i}]"));
        }
    }

    fn check_range(&mut self, range: &Range, n: f64, path: &str) {
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
            self.problem(path, format!("{n} is outside the allowed range"));
        }
    }

    fn wrong(&mut self, path: &str, expected: &str, value: &Value) {
        self.problem(
            path,
            format!("expected {expected}, found {}", describe(value)),
        );
    }

    fn problem(&mut self, path: &str, message: String) {
        self.problems.push((path.to_owned(), message));
    }
}

fn is_rfc3339(s: &str) -> bool {
    regex::Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
        .expect("static regex")
        .is_match(s)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(schema: &Schema, value: Value) -> Vec<(String, String)> {
        check(
            &BTreeMap::new(),
            schema,
            &value,
            "v",
            Completeness::Complete,
        )
    }

    #[test]
    fn string_rules_count_characters_and_match_the_pattern() {
        let schema = Schema::String(StringRules {
            pattern: Some(r"^\p{Ll}+$".to_owned()),
            min_length: Some(2),
            max_length: Some(3),
        });
        assert!(problems(&schema, json!("äbc")).is_empty());
        assert_eq!(
            problems(&schema, json!("abcd")),
            [(
                "v".to_owned(),
                "length 4 is outside the allowed length".to_owned()
            )]
        );
        assert_eq!(
            problems(&schema, json!("A1")),
            [(
                "v".to_owned(),
                r#""A1" does not match the pattern "^\\p{Ll}+$""#.to_owned()
            )]
        );
    }

    #[test]
    fn int32_datetimes_sets_and_maps_are_checked_at_their_paths() {
        let int32 = Schema::Integer {
            format: IntFormat::Int32,
            range: Range::default(),
        };
        assert_eq!(
            problems(&int32, json!(1_i64 << 31))[0].1,
            "2147483648 does not fit in 32 bits"
        );
        assert!(problems(&Schema::DateTime, json!("2026-12-01T01:02:03.5Z")).is_empty());
        assert_eq!(
            problems(&Schema::MicroTime, json!("yesterday"))[0].1,
            "expected an RFC 3339 date-time string, found the string \"yesterday\""
        );
        let set = Schema::List(Box::new(ListSchema {
            items: int32.clone(),
            min_items: None,
            max_items: Some(2),
            list_type: Some(ListType::Set),
            map_keys: Vec::new(),
        }));
        assert_eq!(
            problems(&set, json!([1, 2, 1])),
            [
                (
                    "v".to_owned(),
                    "3 items is outside the allowed count".to_owned()
                ),
                ("v[2]".to_owned(), "duplicate item 1 in a set".to_owned()),
            ]
        );
        let map = Schema::Map {
            values: Box::new(Schema::Boolean),
            max_properties: Some(1),
        };
        assert_eq!(
            problems(&map, json!({"a": true, "b": 1})),
            [
                ("v".to_owned(), "2 entries is more than allowed".to_owned()),
                (
                    "v.b".to_owned(),
                    "expected a boolean, found the number 1".to_owned()
                ),
            ]
        );
    }
}
