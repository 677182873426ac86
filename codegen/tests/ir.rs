//! The IR of the fixture spec (`fixtures/minimal/spec`): names, defaults, required fields, list
//! map keys, enum variants, printer columns, modules, RBAC rules and environments.

mod common;

use common::{fixture_spec, real_spec, replace_once};
use mcall_codegen::ir::*;
use mcall_codegen::parse;
use serde_json::json;

fn ir() -> Ir {
    parse(&fixture_spec()).unwrap_or_else(|errors| panic!("{errors}"))
}

fn object<'a>(ir: &'a Ir, name: &str) -> &'a ObjectType {
    match ir.types.get(name).map(|d| &d.def) {
        Some(TypeDef::Object(o)) => o,
        other => panic!("{name} is not an object: {other:?}"),
    }
}

fn field<'a>(o: &'a ObjectType, name: &str) -> &'a Field {
    o.fields
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("{} has no field {name}", o.name))
}

fn variants(ir: &Ir, name: &str) -> Vec<(String, String)> {
    match ir.types.get(name).map(|d| &d.def) {
        Some(TypeDef::Enum(e)) => e
            .variants
            .iter()
            .map(|v| (v.wire.clone(), v.ident.clone()))
            .collect(),
        other => panic!("{name} is not an enum: {other:?}"),
    }
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[test]
fn the_kind() {
    let ir = ir();
    assert_eq!(ir.group, "example.mcall.tz.io");
    assert_eq!(ir.fingerprint, fixture_spec().fingerprint());
    let [kind] = ir.kinds.as_slice() else {
        panic!("one kind expected: {:?}", ir.kinds)
    };
    assert_eq!(
        (
            kind.kind.as_str(),
            kind.plural.as_str(),
            kind.singular.as_str()
        ),
        ("Widget", "widgets", "widget")
    );
    assert_eq!(kind.short_names, ["wd"]);
    assert_eq!(kind.categories, ["example"]);
    assert!(kind.namespaced && kind.served && kind.storage);
    assert_eq!(kind.version, "v1");
    assert_eq!(
        kind.description.as_deref(),
        Some("A widget that the example operator builds.")
    );
    assert_eq!(kind.spec_type, "WidgetSpec");
    assert_eq!(kind.status_type.as_deref(), Some("WidgetStatus"));
    assert_eq!(kind.module, "widget");
    assert_eq!(kind.crd_name(&ir.group), "widgets.example.mcall.tz.io");
}

#[test]
fn printer_columns() {
    let ir = ir();
    let columns: Vec<_> = ir.kinds[0]
        .printer_columns
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                c.ty.as_str(),
                c.json_path.as_str(),
                c.priority,
            )
        })
        .collect();
    assert_eq!(
        columns,
        [
            ("Type", "string", ".spec.type", None),
            ("Size", "integer", ".spec.size", Some(1)),
            ("Owner", "string", ".spec.owner.name", None),
            ("Phase", "string", ".status.phase", None),
            ("Age", "date", ".metadata.creationTimestamp", None),
        ]
    );
    assert_eq!(
        ir.kinds[0].printer_columns[0].description.as_deref(),
        Some("Shape of the widget.")
    );
    assert_eq!(ir.kinds[0].printer_columns[1].description, None);
}

#[test]
fn field_names_idents_and_order() {
    let ir = ir();
    let spec = object(&ir, "WidgetSpec");
    let names: Vec<(&str, &str)> = spec
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.ident.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("type", "r#type"),
            ("label", "label"),
            ("size", "size"),
            ("enabled", "enabled"),
            ("paused", "paused"),
            ("parts", "parts"),
            ("tags", "tags"),
            ("config", "config"),
            ("notBefore", "not_before"),
            ("owner", "owner"),
            ("color", "color"),
        ],
        "the spec's order is kept"
    );
    let status = object(&ir, "WidgetStatus");
    let names: Vec<&str> = status.fields.iter().map(|f| f.ident.as_str()).collect();
    assert_eq!(
        names,
        [
            "phase",
            "observed_generation",
            "conditions",
            "last_build_time"
        ]
    );
    assert_eq!(field(status, "lastBuildTime").schema, Schema::MicroTime);
    assert_eq!(field(object(&ir, "Condition"), "type").ident, "r#type");
    assert_eq!(
        field(object(&ir, "Condition"), "lastTransitionTime").ident,
        "last_transition_time"
    );
}

#[test]
fn required_fields_and_defaults() {
    let ir = ir();
    let spec = object(&ir, "WidgetSpec");
    let required: Vec<&str> = spec
        .fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(required, ["type"]);
    let defaults: Vec<(&str, serde_json::Value)> = spec
        .fields
        .iter()
        .filter_map(|f| Some((f.name.as_str(), f.default.clone()?)))
        .collect();
    assert_eq!(
        defaults,
        [
            ("size", json!(3)),
            ("enabled", json!(true)),
            ("paused", json!(false)),
            ("color", json!("blue"))
        ]
    );
    assert_eq!(field(object(&ir, "Part"), "count").default, Some(json!(1)));
    let required: Vec<&str> = object(&ir, "Condition")
        .fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(required, ["type", "status", "lastTransitionTime"]);
}

#[test]
fn schemas_of_the_spec_fields() {
    let ir = ir();
    let spec = object(&ir, "WidgetSpec");
    assert_eq!(
        field(spec, "type").schema,
        Schema::Named("WidgetType".into())
    );
    let label = StringRules {
        pattern: Some("^[a-z][a-z0-9-]*$".into()),
        min_length: None,
        max_length: Some(32),
    };
    assert_eq!(field(spec, "label").schema, Schema::String(label));
    let range = Range {
        minimum: Some(1.into()),
        maximum: Some(10.into()),
    };
    assert_eq!(
        field(spec, "size").schema,
        Schema::Integer {
            format: IntFormat::Int64,
            range
        }
    );
    assert_eq!(field(spec, "enabled").schema, Schema::Boolean);
    let Schema::Integer { format, .. } = &field(object(&ir, "Part"), "count").schema else {
        panic!("count is an integer")
    };
    assert_eq!(*format, IntFormat::Int32);
    let string = Schema::String(StringRules::default());
    assert_eq!(
        field(spec, "tags").schema,
        Schema::Map {
            values: Box::new(string),
            max_properties: Some(8)
        }
    );
    assert_eq!(field(spec, "config").schema, Schema::Json);
    assert_eq!(field(spec, "notBefore").schema, Schema::DateTime);
    assert_eq!(field(spec, "owner").schema, Schema::Named("Owner".into()));
    assert_eq!(field(spec, "color").schema, Schema::Named("Color".into()));
    // A ref without a description of its own takes the type's.
    assert_eq!(
        field(spec, "owner").description.as_deref(),
        Some("Who is responsible for a widget.")
    );
}

#[test]
fn list_map_keys() {
    let ir = ir();
    let Schema::List(parts) = &field(object(&ir, "WidgetSpec"), "parts").schema else {
        panic!("parts is a list")
    };
    assert_eq!(parts.items, Schema::Named("Part".into()));
    assert_eq!(
        (parts.list_type, parts.map_keys.as_slice(), parts.max_items),
        (Some(ListType::Map), &["name".to_owned()][..], Some(16))
    );
    let Schema::List(conditions) = &field(object(&ir, "WidgetStatus"), "conditions").schema else {
        panic!("a list")
    };
    assert_eq!(conditions.items, Schema::Named("Condition".into()));
    assert_eq!(conditions.list_type, Some(ListType::Map));
    assert_eq!(conditions.map_keys, ["type"]);
    assert_eq!(ListType::Map.as_str(), "map");
}

#[test]
fn enum_variants() {
    let ir = ir();
    let shapes = [
        ("round", "Round"),
        ("square", "Square"),
        ("starShaped", "StarShaped"),
    ];
    assert_eq!(variants(&ir, "WidgetType"), pairs(&shapes));
    assert_eq!(
        variants(&ir, "Color"),
        pairs(&[("red", "Red"), ("green", "Green"), ("blue", "Blue")])
    );
    let statuses = [("True", "True"), ("False", "False"), ("Unknown", "Unknown")];
    assert_eq!(variants(&ir, "ConditionStatus"), pairs(&statuses));
    assert_eq!(
        variants(&ir, "LogLevel"),
        pairs(&[("debug", "Debug"), ("info", "Info"), ("warn", "Warn")])
    );
}

#[test]
fn cel_rules() {
    let ir = ir();
    let rule = Rule {
        rule: "!has(self.label) || self.size > 1".into(),
        message: "a labelled widget needs a size above 1".into(),
        field_path: Some(".label".into()),
        reason: None,
    };
    assert_eq!(object(&ir, "WidgetSpec").rules, [rule]);
    assert!(
        object(&ir, "WidgetSpec")
            .fields
            .iter()
            .all(|f| f.rules.is_empty())
    );
}

#[test]
fn every_type_in_its_module() {
    let ir = ir();
    let modules: Vec<(&str, &Module)> = ir
        .types
        .iter()
        .map(|(name, d)| (name.as_str(), &d.module))
        .collect();
    let kind = Module::Kind("widget".into());
    assert_eq!(
        modules,
        [
            ("Color", &Module::Shared),
            ("Condition", &Module::Shared),
            ("ConditionStatus", &Module::Shared),
            ("ImageSettings", &Module::Settings),
            ("LogLevel", &Module::Settings),
            ("Owner", &Module::Shared),
            ("Part", &kind),
            ("Phase", &Module::Shared),
            ("RbacSettings", &Module::Settings),
            ("WidgetSpec", &kind),
            ("WidgetStatus", &kind),
            ("WidgetType", &kind),
        ]
    );
    for (name, decl) in &ir.types {
        let declared = match &decl.def {
            TypeDef::Object(o) => &o.name,
            TypeDef::Enum(e) => &e.name,
        };
        assert_eq!(declared, name);
    }
}

#[test]
fn rbac_rules() {
    let ir = ir();
    let strs = |v: &[String]| v.join(" ");
    let rules: Vec<[String; 3]> = ir
        .rbac
        .rules
        .iter()
        .map(|r| [strs(&r.api_groups), strs(&r.resources), strs(&r.verbs)])
        .collect();
    let expected = [
        ["example.mcall.tz.io", "widgets", "get list watch patch"],
        ["example.mcall.tz.io", "widgets/status", "get patch update"],
        ["", "configmaps", "get"],
    ];
    assert_eq!(rules, expected.map(|r| r.map(str::to_owned)));
    assert!(ir.rbac.rules.iter().all(|r| !r.why.is_empty()));
    let [lease] = ir.rbac.operator_namespace_rules.as_slice() else {
        panic!("one operator-namespace rule")
    };
    assert_eq!(
        (lease.resources.as_slice(), lease.why.as_str()),
        (&["leases".to_owned()][..], "Leader election.")
    );
}

#[test]
fn settings_and_environments() {
    let ir = ir();
    let names: Vec<&str> = ir.settings.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "replicaCount",
            "logLevel",
            "image",
            "rbac",
            "watchNamespaces"
        ]
    );
    let replicas = &ir.settings.fields[0];
    assert_eq!(replicas.default, Some(json!(1)));
    assert_eq!(
        ir.settings.fields[2].schema,
        Schema::Named("ImageSettings".into())
    );
    let Schema::List(namespaces) = &ir.settings.fields[4].schema else {
        panic!("watchNamespaces is a list")
    };
    assert_eq!(namespaces.list_type, Some(ListType::Set));

    let envs: Vec<(&str, &str, &str)> = ir
        .settings
        .environments
        .values()
        .map(|e| {
            (
                e.name.as_str(),
                e.namespace.as_str(),
                e.release_name.as_str(),
            )
        })
        .collect();
    assert_eq!(
        envs,
        [
            ("dev", "widgets-dev", "widget-operator-dev"),
            ("prod", "widgets-system", "widget-operator")
        ]
    );
    let dev = serde_json::Value::Object(ir.settings.environments["dev"].values.clone());
    assert_eq!(
        dev,
        json!({"logLevel": "debug", "image": {"tag": "dev"}, "watchNamespaces": ["widgets-dev"]})
    );
}

#[test]
fn fingerprint_covers_paths_and_contents() {
    let spec = fixture_spec();
    let fingerprint = spec.fingerprint();
    assert_eq!(fingerprint.len(), 32);
    assert!(
        fingerprint
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_eq!(fixture_spec().fingerprint(), fingerprint, "stable");

    let mut comment = spec.clone();
    replace_once(
        &mut comment,
        "rbac.yaml",
        "# What the example operator may do.",
        "# What it may do.",
    );
    assert_ne!(
        comment.fingerprint(),
        fingerprint,
        "any byte counts, comments too"
    );

    let mut renamed = spec.clone();
    let text = renamed
        .files
        .remove("kinds/widget.yaml")
        .expect("the kind file");
    renamed.files.insert("kinds/widgets.yaml".into(), text);
    assert_ne!(renamed.fingerprint(), fingerprint, "the path counts");
    assert_eq!(parse(&renamed).map(|ir| ir.kinds.len()), Ok(1));
}

#[test]
fn the_real_spec() {
    let ir = parse(&real_spec()).unwrap_or_else(|errors| panic!("{errors}"));
    assert_eq!(ir.group, "mcall.tz.io");
    let kinds: Vec<(&str, &str, &str)> = ir
        .kinds
        .iter()
        .map(|k| (k.kind.as_str(), k.module.as_str(), k.spec_type.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("McallTask", "mcall_task", "McallTaskSpec"),
            ("McallWorkflow", "mcall_workflow", "McallWorkflowSpec")
        ]
    );
    assert!(ir.kinds.iter().all(|k| k.status_type.is_some()));
    assert_eq!(
        ir.settings.environments.keys().collect::<Vec<_>>(),
        ["dev", "prod", "staging"]
    );
    assert!(!ir.rbac.rules.is_empty());
}

/// The reviews of secured metrics are cluster-scoped: a ClusterRole `<fullname>-cluster` and its
/// binding, outside the `watchNamespaces` branches, so a namespaced chart gets them too. A spec
/// without cluster rules (the fixture) emits no such role.
#[test]
fn cluster_rules_are_a_cluster_role_in_every_mode() {
    let real = parse(&real_spec()).unwrap_or_else(|errors| panic!("{errors}"));
    let resources: Vec<&str> = real
        .rbac
        .cluster_rules
        .iter()
        .flat_map(|r| r.resources.iter().map(String::as_str))
        .collect();
    assert_eq!(resources, ["tokenreviews", "subjectaccessreviews"]);
    let rbac_template = |ir: &Ir| {
        let files = mcall_codegen::emit::all(ir);
        let (_, text) = files
            .iter()
            .find(|(path, _)| path.ends_with("templates/rbac.yaml"))
            .expect("the RBAC template");
        text.clone()
    };
    let text = rbac_template(&real);
    let role = text
        .find("name: {{ $fullname }}-cluster\n")
        .expect("a -cluster role");
    let namespaced_branch_end = text.rfind("{{- end }}\n---").expect("the branches end");
    assert!(
        role > namespaced_branch_end,
        "outside the watchNamespaces branches"
    );
    assert!(text.contains("resources: [\"tokenreviews\"]"));
    assert!(!rbac_template(&ir()).contains("-cluster"));
}
