//! Malformed specs are refused: each case edits the fixture spec (`fixtures/minimal/spec`) in memory
//! and expects an error that names the file, the path of the offending node and the problem.
//! `generate` refuses them with the same errors, so `cargo xtask generate` (which writes only a
//! successful result) leaves the tree untouched. Bad specs that codegen still accepts are in
//! `bad_specs_known_gaps.rs`.

mod common;

use common::Edit::{Remove, Replace, Write};
use common::{API, Case, ENVS, KIND, RBAC, REASONS, apply, assert_refused, fixture_spec, refused};
use mcall_codegen::{generate, parse};

const CASES: &[Case] = &[
    Case {
        name: "unknown type",
        edit: Replace(
            KIND,
            "type: integer\n          default: 3",
            "type: integr\n          default: 3",
        ),
        path: "versions[0].spec.fields.size",
        problem: "unknown type \"integr\" (expected string, integer,",
    },
    Case {
        name: "default of the wrong type",
        edit: Replace(KIND, "default: 3", "default: three"),
        path: "versions[0].spec.fields.size.default",
        problem: "default does not fit the field: expected an integer, found the string \"three\"",
    },
    Case {
        name: "map without values",
        edit: Replace(
            KIND,
            "          description: Free labels.\n          values:\n            type: string\n",
            "          description: Free labels.\n",
        ),
        path: "versions[0].spec.fields.tags",
        problem: "a map needs values",
    },
    Case {
        name: "default outside the range",
        edit: Replace(KIND, "default: 3", "default: 11"),
        path: "versions[0].spec.fields.size.default",
        problem: "11 is outside the allowed range",
    },
    Case {
        name: "duplicate field (YAML duplicate key)",
        edit: Replace(
            KIND,
            "        enabled:\n",
            "        paused:\n          type: boolean\n        enabled:\n",
        ),
        path: "line 51 column 9",
        problem: "duplicate mapping key: paused",
    },
    Case {
        name: "enum default not in the enum",
        edit: Replace(KIND, "default: blue", "default: purple"),
        path: "versions[0].spec.fields.color.default",
        problem: "the string \"purple\" is not one of red, green, blue",
    },
    Case {
        name: "required field with a default",
        edit: Replace(
            KIND,
            "required: true\n          enum:",
            "required: true\n          default: round\n          enum:",
        ),
        path: "versions[0].spec.fields.type",
        problem: "a field is either required or has a default, not both",
    },
    Case {
        name: "dangling printer-column path",
        edit: Replace(KIND, "jsonPath: .spec.size,", "jsonPath: .spec.sise,"),
        path: "versions[0].printerColumns[1].jsonPath",
        problem: "\".spec.sise\" does not resolve: WidgetSpec has no field \"sise\"",
    },
    Case {
        name: "printer-column path below a scalar",
        edit: Replace(
            KIND,
            "jsonPath: .spec.owner.name}",
            "jsonPath: .spec.size.name}",
        ),
        path: "versions[0].printerColumns[2].jsonPath",
        problem: "\"name\" is below a field that is not an object",
    },
    Case {
        name: "CEL rule with an unbalanced parenthesis",
        edit: Replace(KIND, "\"!has(self.label) ||", "\"!has(self.label ||"),
        path: "versions[0].spec.rules[0].rule",
        problem: "'(' is never closed",
    },
    Case {
        name: "CEL rule with an unterminated string",
        edit: Replace(KIND, "self.size > 1\"", "self.label == 'x\""),
        path: "versions[0].spec.rules[0].rule",
        problem: "unterminated string literal",
    },
    Case {
        name: "unknown environment key",
        edit: Replace(
            ENVS,
            "      logLevel: debug\n",
            "      logLevel: debug\n      replicaCout: 2\n",
        ),
        path: "environments.dev.values.replicaCout",
        problem: "unknown key (known keys: replicaCount, logLevel, image, rbac, watchNamespaces)",
    },
    Case {
        name: "unknown key in a nested environment value",
        edit: Replace(ENVS, "image: {tag: dev}", "image: {tagg: dev}"),
        path: "environments.dev.values.image.tagg",
        problem: "unknown key (known keys: repository, tag)",
    },
    Case {
        name: "environment value of the wrong type",
        edit: Replace(ENVS, "replicaCount: 3", "replicaCount: three"),
        path: "environments.prod.values.replicaCount",
        problem: "expected an integer, found the string \"three\"",
    },
    Case {
        name: "environment enum value not in the enum",
        edit: Replace(ENVS, "logLevel: debug", "logLevel: trace"),
        path: "environments.dev.values.logLevel",
        problem: "the string \"trace\" is not one of debug, info, warn",
    },
    Case {
        name: "unknown key in a field node (typo)",
        edit: Replace(KIND, "maxLength: 32", "maxLenght: 32"),
        path: "line 36 column 11",
        problem: "unknown field `maxLenght`, expected one of type, ref,",
    },
    Case {
        name: "ref to an unknown type",
        edit: Replace(KIND, "ref: Owner", "ref: Ownr"),
        path: "versions[0].spec.fields.owner",
        problem: "unknown type reference \"Ownr\" (types of api.yaml: Color, Condition, Owner, Phase)",
    },
    Case {
        name: "pattern on an integer",
        edit: Replace(
            KIND,
            "default: 3\n",
            "default: 3\n          pattern: '^[0-9]+$'\n",
        ),
        path: "versions[0].spec.fields.size",
        problem: "`pattern` does not apply to type integer",
    },
    Case {
        name: "maxProperties on a list",
        edit: Replace(
            KIND,
            "maxItems: 16\n",
            "maxItems: 16\n          maxProperties: 3\n",
        ),
        path: "versions[0].spec.fields.parts",
        problem: "`maxProperties` does not apply to type list",
    },
    Case {
        name: "listType map whose key field is not required",
        edit: Replace(
            KIND,
            "required: true\n                maxLength: 63",
            "maxLength: 63",
        ),
        path: "versions[0].spec.fields.parts",
        problem: "list map key \"name\" must be a required field (or have a default) of Part",
    },
    Case {
        name: "listType map key that is not a field",
        edit: Replace(KIND, "listMapKeys: [name]", "listMapKeys: [id]"),
        path: "versions[0].spec.fields.parts",
        problem: "list map key \"id\" is not a field of Part",
    },
    Case {
        name: "listMapKeys without listType map",
        edit: Replace(
            KIND,
            "listType: map\n          listMapKeys: [name]",
            "listMapKeys: [name]",
        ),
        path: "versions[0].spec.fields.parts",
        problem: "listMapKeys is required with listType map, and only allowed with it",
    },
    Case {
        name: "two inline objects with the same rustName",
        edit: Replace(
            KIND,
            "        tags:\n",
            "        spare:\n          type: object\n          rustName: Part\n          fields:\n            id: {type: string}\n        tags:\n",
        ),
        path: "versions[0].spec.fields.spare",
        problem: "type name Part is declared twice (first at spec/kinds/widget.yaml: versions[0].spec.fields.parts.items)",
    },
    Case {
        name: "inline object named like a shared type",
        edit: Replace(KIND, "rustName: Part", "rustName: Owner"),
        path: "versions[0].spec.fields.parts.items",
        problem: "type name Owner is declared twice (first at spec/api.yaml: types.Owner)",
    },
    Case {
        name: "invalid regex pattern",
        edit: Replace(KIND, "'^[a-z][a-z0-9-]*$'", "'^[a-z][a-z0-9-*$'"),
        path: "versions[0].spec.fields.label.pattern",
        problem: "invalid regular expression: regex parse error",
    },
    Case {
        name: "minimum greater than maximum",
        edit: Replace(
            KIND,
            "minimum: 1\n          maximum: 10",
            "minimum: 10\n          maximum: 1",
        ),
        path: "versions[0].spec.fields.size",
        problem: "minimum 10 is greater than maximum 1",
    },
    Case {
        name: "RBAC wildcard verb",
        edit: Replace(RBAC, "verbs: [get, list, watch, patch]", "verbs: ['*']"),
        path: "rules[0].verbs",
        problem: "wildcards are not allowed",
    },
    Case {
        name: "RBAC resource that is not a kind of the group",
        edit: Replace(RBAC, "resources: [widgets]", "resources: [gadgets]"),
        path: "rules[0].resources",
        problem: "\"gadgets\" is not a resource of example.mcall.tz.io (kinds: widgets)",
    },
    Case {
        name: "RBAC unknown subresource",
        edit: Replace(
            RBAC,
            "resources: [widgets/status]",
            "resources: [widgets/scale]",
        ),
        path: "rules[1].resources",
        problem: "unknown subresource \"scale\"",
    },
    Case {
        name: "RBAC unknown verb",
        edit: Replace(
            RBAC,
            "verbs: [get, create, update]",
            "verbs: [get, create, renew]",
        ),
        path: "operatorNamespaceRules[0].verbs",
        problem: "unknown verb \"renew\"",
    },
    Case {
        name: "missing spec file",
        edit: Remove(RBAC),
        path: "(file)",
        problem: "missing spec file",
    },
    Case {
        name: "unknown spec file",
        edit: Write("extra.yaml", "group: example.mcall.tz.io\n"),
        path: "(file)",
        problem: "unknown spec file: expected api.yaml, rbac.yaml, environments.yaml, reasons.yaml or kinds/<kind>.yaml",
    },
    Case {
        name: "kind with two versions",
        edit: Replace(
            KIND,
            "versions:\n",
            "versions:\n  - {name: v2, served: true, storage: false, spec: {fields: {x: {type: string}}}}\n",
        ),
        path: "versions",
        problem: "exactly one version is supported (found 2)",
    },
    Case {
        name: "field name that is not lowerCamelCase",
        edit: Replace(KIND, "        label:\n", "        short_label:\n"),
        path: "versions[0].spec.fields.short_label",
        problem: "field name \"short_label\" must be lowerCamelCase ASCII",
    },
    Case {
        name: "field name without a Rust identifier",
        edit: Replace(KIND, "        label:\n", "        self:\n"),
        path: "versions[0].spec.fields.self",
        problem: "field name \"self\" has no Rust identifier",
    },
    Case {
        name: "group without a dot",
        edit: Replace(API, "group: example.mcall.tz.io", "group: example"),
        path: "group",
        problem: "\"example\" is not a DNS subdomain with a dot",
    },
    Case {
        name: "environment namespace that is not a DNS label",
        edit: Replace(ENVS, "namespace: widgets-dev", "namespace: Widgets_Dev"),
        path: "environments.dev.namespace",
        problem: "\"Widgets_Dev\" must be a lowercase DNS label",
    },
];

#[test]
fn the_fixture_spec_is_valid() {
    if let Err(errors) = parse(&fixture_spec()) {
        panic!("{errors}");
    }
    assert!(generate(&fixture_spec()).is_ok());
}

#[test]
fn every_bad_spec_is_refused_with_file_path_and_problem() {
    assert!(CASES.len() >= 16);
    assert_refused(CASES);
}

#[test]
fn errors_display_with_the_spec_directory_and_a_count() {
    let purple = Replace(KIND, "default: blue", "default: purple");
    let negative = Replace(ENVS, "replicaCount: 3", "replicaCount: -1");
    let text = refused(&apply(&[&purple, &negative])).to_string();
    assert!(
        text.starts_with("the spec is invalid (2 problem(s)):\n"),
        "{text}"
    );
    assert!(
        text.contains("\n  - spec/kinds/widget.yaml: versions[0].spec.fields.color.default: "),
        "{text}"
    );
    assert!(
        text.contains("\n  - spec/environments.yaml: environments.prod.values.replicaCount: "),
        "{text}"
    );
}

#[test]
fn all_problems_are_reported_in_one_pass() {
    // One problem in each spec file; every one is reported, none hides another.
    let a = Replace(API, "group: example.mcall.tz.io", "group: example");
    let b = Replace(RBAC, "verbs: [get, list, watch, patch]", "verbs: ['*']");
    let c = Replace(ENVS, "logLevel: debug", "logLevel: trace");
    let d = Replace(KIND, "default: blue", "default: purple");
    let e = Replace(REASONS, "event: Warning", "event: Error");
    let errors = refused(&apply(&[&a, &b, &c, &d, &e]));
    let files: std::collections::BTreeSet<&str> =
        errors.0.iter().map(|e| e.file.as_str()).collect();
    assert_eq!(
        files,
        [API, ENVS, KIND, RBAC, REASONS].into(),
        "{}",
        common::listing(&errors)
    );
}
