//! Bad specs found by review after the first table: each once slipped through codegen (accepted,
//! refused without a location, or accepted and then panicked in an emitter).

mod common;

use common::Edit::Replace;
use common::{API, Case, ENVS, KIND, apply, assert_refused, fixture_spec, listing, refused};

#[test]
fn yaml_errors_say_where_they_are() {
    let typo = Replace(KIND, "maxLength: 32", "maxLenght: 32");
    let duplicate = Replace(
        KIND,
        "        enabled:\n",
        "        paused:\n          type: boolean\n        enabled:\n",
    );
    for (edit, field_path, line) in [
        (typo, "versions[0].spec.fields.label", "36"),
        (duplicate, "versions[0].spec.fields", "51"),
    ] {
        let errors = refused(&apply(&[&edit]));
        let e = errors
            .0
            .iter()
            .find(|e| e.file == KIND)
            .expect("an error in the kind file");
        // Either the field path or the line is fine; `(document)` says nothing.
        assert!(
            e.path.starts_with(field_path) || e.path.contains(line),
            "the path {:?} does not say where",
            e.path
        );
        assert!(
            !e.message.contains('\n') && !e.message.contains("<input>"),
            "not one line: {:?}",
            e.message
        );
    }
}

#[test]
fn a_kind_file_that_does_not_load_adds_no_rbac_errors() {
    let errors = refused(&apply(&[&Replace(KIND, "maxLength: 32", "maxLenght: 32")]));
    assert_eq!(
        errors.0.len(),
        1,
        "expected only the typo:{}",
        listing(&errors)
    );
}

#[test]
fn a_server_default_must_fit_and_belongs_to_optional_fields() {
    assert_refused(&[
        Case {
            name: "server default that is not a variant",
            edit: Replace(KIND, "serverDefault: Pending", "serverDefault: Waiting"),
            path: "versions[0].status.fields.phase.serverDefault",
            problem: "default",
        },
        Case {
            name: "server default beside a default",
            edit: Replace(
                KIND,
                "serverDefault: Pending",
                "serverDefault: Pending\n          default: Pending",
            ),
            path: "versions[0].status.fields.phase",
            problem: "serverDefault",
        },
    ]);
}

#[test]
fn defaults_the_rust_emitter_cannot_express_are_refused() {
    assert_refused(&[
        Case {
            name: "datetime default",
            edit: Replace(
                KIND,
                "description: Do not build before this time.",
                "default: '2024-01-01T00:00:00Z'",
            ),
            path: "versions[0].spec.fields.notBefore.default",
            problem: "default",
        },
        Case {
            name: "json default",
            edit: Replace(
                KIND,
                "description: Free-form configuration passed through unchanged.",
                "default: 5",
            ),
            path: "versions[0].spec.fields.config.default",
            problem: "default",
        },
        Case {
            name: "inline object default",
            edit: Replace(
                KIND,
                "        tags:\n",
                "        spare:\n          type: object\n          default: {}\n          fields:\n            id: {type: string}\n        tags:\n",
            ),
            path: "versions[0].spec.fields.spare.default",
            problem: "default",
        },
    ]);
}

const MAP_VALUES: &str = "          values:\n            type: string\n";

#[test]
fn keys_that_do_not_apply_are_refused() {
    assert_refused(&[
        Case {
            name: "listMapKeys on a string",
            edit: Replace(
                KIND,
                "maxLength: 32\n",
                "maxLength: 32\n          listMapKeys: [x]\n",
            ),
            path: "versions[0].spec.fields.label",
            problem: "listMapKeys",
        },
        Case {
            name: "rustName on a type of api.yaml (the map key is the name)",
            edit: Replace(API, "description: Paint of a widget.", "rustName: Paint"),
            path: "types.Color",
            problem: "rustName",
        },
        Case {
            name: "rules on an enum of api.yaml",
            edit: Replace(
                API,
                "description: Paint of a widget.",
                "rules: [{rule: 'self != \"red\"', message: no red}]",
            ),
            path: "types.Color",
            problem: "rules",
        },
        Case {
            name: "default on a type of api.yaml",
            edit: Replace(API, "description: Paint of a widget.", "default: red"),
            path: "types.Color",
            problem: "default",
        },
        Case {
            name: "required on a type of api.yaml",
            edit: Replace(API, "description: Paint of a widget.", "required: true"),
            path: "types.Color",
            problem: "required",
        },
        Case {
            name: "rules on map values (dropped from the CRD)",
            edit: Replace(
                KIND,
                MAP_VALUES,
                "          values:\n            type: string\n            rules: [{rule: 'self.size() > 1', message: too short}]\n",
            ),
            path: "versions[0].spec.fields.tags.values",
            problem: "rules",
        },
        Case {
            name: "default on map values",
            edit: Replace(
                KIND,
                MAP_VALUES,
                "          values:\n            type: string\n            default: x\n",
            ),
            path: "versions[0].spec.fields.tags.values",
            problem: "default",
        },
    ]);
}

#[test]
fn unsatisfiable_length_and_count_bounds_are_refused() {
    assert_refused(&[
        Case {
            name: "minLength above maxLength",
            edit: Replace(
                KIND,
                "maxLength: 32\n",
                "maxLength: 32\n          minLength: 40\n",
            ),
            path: "versions[0].spec.fields.label",
            problem: "minLength",
        },
        Case {
            name: "minItems above maxItems",
            edit: Replace(
                KIND,
                "maxItems: 16\n",
                "maxItems: 16\n          minItems: 20\n",
            ),
            path: "versions[0].spec.fields.parts",
            problem: "minItems",
        },
    ]);
}

#[test]
fn type_names_that_clash_in_generated_rust_are_refused() {
    assert_refused(&[
        Case {
            name: "inline object named like the kind (kube-derive generates `struct Widget`)",
            edit: Replace(KIND, "rustName: Part", "rustName: Widget"),
            path: "versions[0].spec.fields.parts.items",
            problem: "Widget",
        },
        Case {
            name: "inline object named like an import (also the default name of an object field `time`)",
            edit: Replace(KIND, "rustName: Part", "rustName: Time"),
            path: "versions[0].spec.fields.parts.items",
            problem: "Time",
        },
    ]);
}

#[test]
fn two_kinds_with_the_same_name_are_refused() {
    let gadget = fixture_spec().files[KIND]
        .replace("plural: widgets", "plural: gadgets")
        .replace("singular: widget", "singular: gadget")
        .replace("rustName: Part", "rustName: GadgetPart")
        .replace("rustName: WidgetType", "rustName: GadgetType")
        .replace("    spec:\n", "    spec:\n      rustName: GadgetSpec\n")
        .replace(
            "    status:\n",
            "    status:\n      rustName: GadgetStatus\n",
        );
    let mut spec = fixture_spec();
    spec.files.insert("kinds/gadget.yaml".into(), gadget);
    let errors = refused(&spec);
    assert!(
        errors.0.iter().any(|e| e.message.contains("Widget")),
        "{}",
        listing(&errors)
    );
}

#[test]
fn a_setting_named_global_is_refused() {
    assert_refused(&[Case {
        name: "setting global",
        edit: Replace(
            ENVS,
            "settings:\n",
            "settings:\n  global:\n    type: string\n    default: x\n",
        ),
        path: "settings.global",
        problem: "global",
    }]);
}

#[test]
fn duplicate_items_of_a_set_in_environment_values_are_refused() {
    assert_refused(&[Case {
        name: "set with a duplicate",
        edit: Replace(
            ENVS,
            "watchNamespaces: [widgets-dev]",
            "watchNamespaces: [a, a]",
        ),
        path: "environments.dev.values.watchNamespaces[1]",
        problem: "\"a\"",
    }]);
}

#[test]
fn settings_the_rbac_template_reads_are_required() {
    // Rename the setting (and its value) so the spec is otherwise valid.
    let rbac = [
        Replace(ENVS, "  rbac:\n", "  access:\n"),
        Replace(ENVS, "rbac: {create: false}", "access: {create: false}"),
    ];
    let watch = [
        Replace(ENVS, "  watchNamespaces:\n", "  namespaces:\n"),
        Replace(ENVS, "watchNamespaces: [", "namespaces: ["),
    ];
    for (setting, [a, b]) in [("rbac", rbac), ("watchNamespaces", watch)] {
        let errors = match mcall_codegen::parse(&apply(&[&a, &b])) {
            Ok(_) => panic!("a spec without the setting {setting} is accepted"),
            Err(errors) => errors,
        };
        let found = errors.0.iter().any(|e| {
            e.file == ENVS && e.path.starts_with("settings") && e.message.contains(setting)
        });
        assert!(
            found,
            "no error about the missing setting {setting}:{}",
            listing(&errors)
        );
    }
}

#[test]
fn a_multi_line_rbac_reason_stays_a_comment() {
    let edit = Replace(
        common::RBAC,
        "why: Leader election.",
        "why: |\n      Leader election,\n      kind: Secret",
    );
    let spec = apply(&[&edit]);
    if mcall_codegen::parse(&spec).is_err() {
        return; // Refusing a multi-line reason is a fix too.
    }
    let files = mcall_codegen::generate(&spec).expect("valid");
    let rbac = &files[std::path::Path::new("helm/mcall-operator/templates/rbac.yaml")];
    assert!(
        !rbac.lines().any(|l| l.trim() == "kind: Secret"),
        "the reason's second line is YAML:\n{rbac}"
    );
}
