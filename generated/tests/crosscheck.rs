//! The CRDs emitted from the spec and the CRDs kube-derive derives from the generated Rust types
//! must agree: one is what the API server enforces, the other what the operator (de)serializes.
//! And objects valid by the schema must survive a trip through the Rust types unchanged.

use std::collections::BTreeSet;
use std::path::Path;

use kube::CustomResourceExt;
use mcall_codegen::ir::{Ir, ListType, Schema, TypeDef};
use mcall_generated::{McallTask, McallWorkflow};
use serde_json::{Map, Value, json};

fn ir() -> Ir {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec");
    let spec = mcall_codegen::SpecFiles::read_dir(&dir).expect("spec/ is readable");
    mcall_codegen::parse(&spec).expect("spec/ is valid")
}

/// The spec's CRD as far as Rust types can say it: without the status's server defaults
/// (`serverDefault`), which the API server applies and the Rust types leave optional by design.
fn emitted(ir: &Ir, kind: &str) -> Value {
    let kind = ir
        .kinds
        .iter()
        .find(|k| k.kind == kind)
        .expect("kind in spec");
    let mut crd = mcall_codegen::emit::crd::crd(ir, kind);
    let server_defaulted: Vec<&str> = kind
        .status_type
        .as_ref()
        .and_then(|name| match ir.types.get(name).map(|d| &d.def) {
            Some(TypeDef::Object(o)) => Some(o),
            _ => None,
        })
        .map(|o| {
            o.fields
                .iter()
                .filter(|f| f.server_default.is_some())
                .map(|f| f.name.as_str())
                .collect()
        })
        .unwrap_or_default();
    if !server_defaulted.is_empty() {
        let status =
            &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"];
        let removed = status.as_object_mut().and_then(|s| s.remove("default"));
        assert_eq!(
            removed,
            Some(json!({})),
            "a status with server defaults defaults to {{}}"
        );
        for field in server_defaulted {
            status["properties"][field]
                .as_object_mut()
                .and_then(|f| f.remove("default"))
                .expect("a server default is in the CRD");
        }
    }
    crd
}

/// Differences that carry no meaning: integer vs float spelling of bounds, the `null` kube-derive
/// adds to the enum of an optional enum field (the field is nullable either way), and the order
/// of `required`.
fn normalize(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(variants)) = map.get_mut("enum") {
                variants.retain(|v| !v.is_null());
            }
            if let Some(Value::Array(required)) = map.get_mut("required") {
                required.sort_by_key(|v| v.to_string());
            }
            map.values_mut().for_each(normalize);
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        Value::Number(n) => {
            if let Some(f) = n.as_f64() {
                *value = json!(f);
            }
        }
        _ => {}
    }
}

fn differences(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                match (x.get(k), y.get(k)) {
                    (Some(va), Some(vb)) => differences(va, vb, &format!("{path}.{k}"), out),
                    (Some(_), None) => out.push(format!("{path}.{k}: only in the spec's CRD")),
                    (None, Some(_)) => out.push(format!("{path}.{k}: only in kube-derive's CRD")),
                    (None, None) => unreachable!(),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                differences(va, vb, &format!("{path}[{i}]"), out);
            }
        }
        _ if a == b => {}
        _ => out.push(format!("{path}: spec's CRD has {a}, kube-derive's has {b}")),
    }
}

fn assert_agree(mut from_spec: Value, mut derived: Value) {
    normalize(&mut from_spec);
    normalize(&mut derived);
    let mut diffs = Vec::new();
    differences(&from_spec, &derived, "", &mut diffs);
    assert!(diffs.is_empty(), "the CRDs disagree:\n{}", diffs.join("\n"));
}

#[test]
fn mcalltask_crd_from_spec_matches_kube_derive() {
    let ir = ir();
    assert_agree(
        emitted(&ir, "McallTask"),
        serde_json::to_value(McallTask::crd()).unwrap(),
    );
}

#[test]
fn mcallworkflow_crd_from_spec_matches_kube_derive() {
    let ir = ir();
    assert_agree(
        emitted(&ir, "McallWorkflow"),
        serde_json::to_value(McallWorkflow::crd()).unwrap(),
    );
}

#[test]
fn crosscheck_notices_a_difference() {
    let ir = ir();
    let mut from_spec = emitted(&ir, "McallTask");
    from_spec["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["timeout"]["maximum"] = json!(5);
    let mut derived = serde_json::to_value(McallTask::crd()).unwrap();
    normalize(&mut from_spec);
    normalize(&mut derived);
    let mut diffs = Vec::new();
    differences(&from_spec, &derived, "", &mut diffs);
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    assert!(diffs[0].contains("timeout.maximum"), "{diffs:?}");
}

// === round trip ===

/// A small deterministic generator (xorshift), so failures reproduce from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

/// Strings tried, in order, for a field with a pattern; the first that matches is used.
const PATTERNED: &[&str] = &[
    "*/5 * * * *",
    "@every 30s",
    "Europe/Berlin",
    "128Mi",
    "100m",
    "API_TOKEN",
    "check-disk",
    "abc",
];

/// A random instance of `schema` as the API server would store it: defaults filled in,
/// constraints met.
fn instance(ir: &Ir, schema: &Schema, rng: &mut Rng) -> Value {
    match schema {
        Schema::String(rules) => match &rules.pattern {
            Some(p) => {
                let re = regex::Regex::new(p).unwrap();
                let s = PATTERNED
                    .iter()
                    .find(|s| re.is_match(s))
                    .unwrap_or_else(|| panic!("add a sample string for pattern {p}"));
                json!(s)
            }
            None => json!(format!("text-{}", rng.below(1000))),
        },
        Schema::Integer { range, .. } => {
            let min = range
                .minimum
                .as_ref()
                .and_then(|n| n.as_i64())
                .unwrap_or(-50);
            let max = range
                .maximum
                .as_ref()
                .and_then(|n| n.as_i64())
                .unwrap_or(1_000_000);
            json!(min + rng.below((max - min + 1) as u64) as i64)
        }
        Schema::Number { .. } => json!(rng.below(100) as f64 / 100.0),
        Schema::Boolean => json!(rng.coin()),
        Schema::DateTime => json!(format!(
            "2026-11-{:02}T{:02}:00:00Z",
            1 + rng.below(28),
            rng.below(24)
        )),
        Schema::MicroTime => json!(format!(
            "2026-11-{:02}T{:02}:00:00.{:06}Z",
            1 + rng.below(28),
            rng.below(24),
            rng.below(1_000_000)
        )),
        Schema::Json => json!({"free": [1, "form"]}),
        Schema::Named(name) => match &ir.types[name].def {
            TypeDef::Enum(e) => json!(e.variants[rng.below(e.variants.len() as u64) as usize].wire),
            TypeDef::Object(o) => {
                let mut map = Map::new();
                for f in &o.fields {
                    let value = if f.required || rng.coin() {
                        instance(ir, &f.schema, rng)
                    } else if let Some(default) = &f.default {
                        default.clone()
                    } else {
                        continue;
                    };
                    map.insert(f.name.clone(), value);
                }
                Value::Object(map)
            }
        },
        Schema::List(list) => {
            // Items of set and map lists must be unique; one item keeps them so.
            let most = match list.list_type {
                Some(ListType::Set | ListType::Map) => 1,
                _ => list.max_items.unwrap_or(3).min(3),
            };
            let count = list.min_items.unwrap_or(0).max(rng.below(most + 1));
            Value::Array((0..count).map(|_| instance(ir, &list.items, rng)).collect())
        }
        Schema::Map { values, .. } => Value::Object(
            (0..rng.below(3))
                .map(|i| (format!("KEY_{i}"), instance(ir, values, rng)))
                .collect(),
        ),
    }
}

fn round_trip<K: serde::de::DeserializeOwned + serde::Serialize>(kind: &str) {
    let ir = ir();
    let k = ir.kinds.iter().find(|k| k.kind == kind).unwrap();
    for seed in 1..=300u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut object = json!({
            "apiVersion": format!("{}/{}", ir.group, k.version),
            "kind": kind,
            "metadata": { "name": format!("obj-{seed}"), "namespace": "default" },
            "spec": instance(&ir, &Schema::Named(k.spec_type.clone()), &mut rng),
        });
        if let Some(status) = &k.status_type {
            object["status"] = instance(&ir, &Schema::Named(status.clone()), &mut rng);
        }
        let typed: K = serde_json::from_value(object.clone())
            .unwrap_or_else(|e| panic!("seed {seed}: {e}\n{object:#}"));
        let back = serde_json::to_value(&typed).unwrap();
        assert_eq!(
            back, object,
            "seed {seed}: the object changed in a round trip through {kind}"
        );
    }
}

#[test]
fn mcalltask_objects_round_trip_through_rust_types() {
    round_trip::<McallTask>("McallTask");
}

#[test]
fn mcallworkflow_objects_round_trip_through_rust_types() {
    round_trip::<McallWorkflow>("McallWorkflow");
}
