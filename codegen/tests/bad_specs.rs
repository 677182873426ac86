//! Malformed specs are refused: each case edits the fixture spec (`fixtures/minimal/spec`) in memory
//! and expects an error that names the file, the path of the offending node and the problem.
//! `generate` refuses them too, so `cargo xtask generate` (which writes only a successful result)
//! leaves the tree untouched.

mod common;

use common::{fixture_spec, replace_once};
use mcall_codegen::{SpecErrors, SpecFiles, generate, parse};

const KIND: &str = "kinds/widget.yaml";
const API: &str = "api.yaml";
const RBAC: &str = "rbac.yaml";
const ENVS: &str = "environments.yaml";

/// One change to a spec file.
enum Edit {
    /// Replace the only occurrence of the text (second) in the file (first) with the third.
    Replace(&'static str, &'static str, &'static str),
    /// Add (or overwrite) a whole file.
    Write(&'static str, &'static str),
    /// Delete a file.
    Remove(&'static str),
}
use Edit::*;

struct Case {
    name: &'static str,
    edits: &'static [Edit],
    /// The file as displayed (`spec/...`), the path inside it, and a substring of the message.
    file: &'static str,
    path: &'static str,
    problem: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "unknown type",
        edits: &[Replace(KIND, "type: integer\n          default: 3", "type: integr\n          default: 3")],
        file: "spec/kinds/widget.yaml",
        path: "versions[0].spec.fields.size",
        problem: "unknown type \"integr\"",
    },
    Case {
        name: "default of the wrong type",
        edits: &[Replace(KIND, "default: 3", "default: three")],
        file: "spec/kinds/widget.yaml",
        path: "versions[0].spec.fields.size.default",
        problem: "expected an integer, found the string \"three\"",
    },
    Case {
        name: "default outside the range",
        edits: &[Replace(KIND, "default: 3", "default: 11")],
        file: "spec/kinds/widget.yaml",
        path: "versions[0].spec.fields.size.default",
        problem: "outside the allowed range",
    },
    Case {
        name: "duplicate field (YAML duplicate key)",
        edits: &[Replace(KIND, "        enabled:\n", "        paused:\n          type: boolean\n        enabled:\n")],
        file: "spec/kinds/widget.yaml",
        path: "(document)",
        problem: "paused",
    },
    Case {
        name: "enum default not in the enum",
        edits: &[Replace(KIND, "default: blue", "default: purple")],
        file: "spec/kinds/widget.yaml",
        path: "versions[0].spec.fields.color.default",
        problem: "the string \"purple\" is not one of red, green, blue",
    },
    Case {
        name: "required field with a default",
        edits: &[Replace(KIND, "required: true\n          enum:", "required: true\n          default: round\n          enum:")],
        file: "spec/kinds/widget.yaml",
        path: "versions[0].spec.fields.type",
        problem: "either required or has a default",
    },
    Case {
        name: "dangling printer-column path",
        edits: &[Replace(KIND, "jsonPath: .spec.size,", "jsonPath: .spec.sise,")],
        file: "spec/kinds/widget.yaml",
        path: "versions[0].printerColumns[1].jsonPath",
        problem: "WidgetSpec has no field \"sise\"",
    },
    Case {
        name: "printer-column path below a scalar",
        edits: &[Replace(KIND, "jsonPath: .spec.owner.name}", "jsonPath: .spec.size.name}")],
        file: "spec/kinds/widget.yaml",
        path: "versions[0].printerColumns[2].jsonPath",
        problem: "is below a field that is not an object",
    },
    Case {
        name: "CEL rule with an unbalanced parenthesis",
        edits: &[Replace(KIND, "\"!has(self.label) ||", "\"!has(self.label ||")],
        file: "spec/kinds/widget.yaml",
        path: "versions[0].spec.rules[0].rule",
        problem: "'(' is never closed",
    },
    Case {
        name: "CEL rule with an unterminated string",
        edits: &[Replace(KIND, "self.size > 1\"", "self.label == 'x\"")],
        file: "spec/kinds/widget.yaml",
        path: "versions[0].spec.rules[0].rule",
        problem: "unterminated string literal",
    },
    Case {
        name: "unknown environment key",
        edits: &[Replace(ENVS, "      logLevel: debug\n", "      logLevel: debug\n      replicaCout: 2\n")],
        file: "spec/environments.yaml",
        path: "environments.dev.values.replicaCout",
        problem: "unknown key",
    },
    Case {
        name: "unknown key in a nested environment value",
        edits: &[Replace(ENVS, "image: {tag: dev}", "image: {tagg: dev}")],
        file: "spec/environments.yaml",
        path: "environments.dev.values.image.tagg",
        problem: "unknown key (known keys: repository, tag)",
    },
    Case {
        name: "environment value of the wrong type",
        edits: &[Replace(ENVS, "replicaCount: 3", "replicaCount: three")],
        file: "spec/environments.yaml",
        path: "environments.prod.values.replicaCount",
        problem: "expected an integer, found the string \"three\"",
    },
    Case {
        name: "environment enum value not in the enum",
        edits: &[Replace(ENVS, "logLevel: debug", "logLevel: trace")],
        file: "spec/environments.yaml",
        path: "environments.dev.values.logLevel",
        problem: "is not one of debug, info, warn",
    },
    Case {
        name: "unknown key in a field node (typo)",
        edits: &[Replace(KIND, "maxLength: 32", "maxLenght: 32")],
        file: "spec/kinds/widget.yaml",
        path: "(document)",
        problem: "maxLenght",
    },
    Case {
        name: "ref to an unknown type",
        edits: &[Replace(KIND, "ref: Owner", "ref: Ownr")],
        file: "spec/kinds/widget.yaml",
        path: "versions[0].spec.fields.owner",
        problem: "unknown type reference \"Ownr\"",
    },
    Case {
        name: "pattern on an integer",
        edits: &[Replace(KIND, "default: 3\n", "default: 3\n          pattern: '^[0-9]+$'\n")],
        file: "spec/kinds/widget.yaml",
        path: "versions[0].spec.fields.size",
        problem: "`pattern` does not apply to type integer",
    },
    Case {
        name: "maxProperties on a list",
        edits: &[Replace(KIND, "maxItems: 16\n", "maxItems: 16\n          maxProperties: 3\n")],
        file: "spec/kinds/widget.yaml",
        path: "versions[0].spec.fields.parts",
        problem: "`maxProperties` does not apply to type list",
    },
    Case {
        name: "listType map whose key field is not required",
        edits: &[Replace(KIND, "required: true\n                maxLength: 63", "maxLength: 63")],
        file: "spec/kinds/widget.yaml",
        path: "versions[0].spec.fields.parts",
        problem: "list map key \"name\" must be a required field",
    },
    Case {
        name: "listType map key that is not a field",
        edits: &[Replace(KIND, "listMapKeys: [name]", "listMapKeys: [id]")],
        file: "spec/kinds/widget.yaml",
        path: "versions[0].spec.fields.parts",
        problem: "list map key \"id\" is not a field of Part",
    },
    Case {
        name: "listMapKeys without listType map",
        edits: &[Replace(KIND, "listType: map\n          listMapKeys: [name]", "listMapKeys: [name]")],
        file: "spec/kinds/widget.yaml",
        path: "versions[0].spec.fields.parts",
        problem: "listMapKeys is required with listType map, and only allowed with it",
    },
    Case {
        name: "two inline objects with the same rustName",
        edits: &[Replace(
            KIND,
            "        tags:\n",
            "        spare:\n          type: object\n          rustName: Part\n          fields:\n            id: {type: string}\n        tags:\n",
        )],
        file: "spec/kinds/widget.yaml",
        path: "versions[0].spec.fields.spare",
        problem: "type name Part is declared twice (first at spec/kinds/widget.yaml: versions[0].spec.fields.parts.items)",
    },
    Case {
        name: "inline object named like a shared type",
        edits: &[Replace(KIND, "rustName: Part", "rustName: Owner")],
        file: "spec/kinds/widget.yaml",
        path: "versions[0].spec.fields.parts.items",
        problem: "type name Owner is declared twice (first at spec/api.yaml: types.Owner)",
    },
    Case {
        name: "invalid regex pattern",
        edits: &[Replace(KIND, "'^[a-z][a-z0-9-]*$'", "'^[a-z][a-z0-9-*$'")],
        file: "spec/kinds/widget.yaml",
        path: "versions[0].spec.fields.label.pattern",
        problem: "invalid regular expression",
    },
    Case {
        name: "minimum greater than maximum",
        edits: &[Replace(KIND, "minimum: 1\n          maximum: 10", "minimum: 10\n          maximum: 1")],
        file: "spec/kinds/widget.yaml",
        path: "versions[0].spec.fields.size",
        problem: "minimum 10 is greater than maximum 1",
    },
    Case {
        name: "RBAC wildcard verb",
        edits: &[Replace(RBAC, "verbs: [get, list, watch, patch]", "verbs: ['*']")],
        file: "spec/rbac.yaml",
        path: "rules[0].verbs",
        problem: "wildcards are not allowed",
    },
    Case {
        name: "RBAC resource that is not a kind of the group",
        edits: &[Replace(RBAC, "resources: [widgets]", "resources: [gadgets]")],
        file: "spec/rbac.yaml",
        path: "rules[0].resources",
        problem: "\"gadgets\" is not a resource of example.mcall.tz.io (kinds: widgets)",
    },
    Case {
        name: "RBAC unknown subresource",
        edits: &[Replace(RBAC, "resources: [widgets/status]", "resources: [widgets/scale]")],
        file: "spec/rbac.yaml",
        path: "rules[1].resources",
        problem: "unknown subresource \"scale\"",
    },
    Case {
        name: "missing spec file",
        edits: &[Remove(RBAC)],
        file: "spec/rbac.yaml",
        path: "(file)",
        problem: "missing spec file",
    },
    Case {
        name: "unknown spec file",
        edits: &[Write("extra.yaml", "group: example.mcall.tz.io\n")],
        file: "spec/extra.yaml",
        path: "(file)",
        problem: "unknown spec file",
    },
    Case {
        name: "kind with two versions",
        edits: &[Replace(KIND, "versions:\n", "versions:\n  - {name: v2, served: true, storage: false, spec: {fields: {x: {type: string}}}}\n")],
        file: "spec/kinds/widget.yaml",
        path: "versions",
        problem: "exactly one version is supported (found 2)",
    },
    Case {
        name: "field name that is not lowerCamelCase",
        edits: &[Replace(KIND, "        label:\n", "        short_label:\n")],
        file: "spec/kinds/widget.yaml",
        path: "versions[0].spec.fields.short_label",
        problem: "must be lowerCamelCase ASCII",
    },
    Case {
        name: "field name without a Rust identifier",
        edits: &[Replace(KIND, "        label:\n", "        self:\n")],
        file: "spec/kinds/widget.yaml",
        path: "versions[0].spec.fields.self",
        problem: "has no Rust identifier",
    },
    Case {
        name: "group without a dot",
        edits: &[Replace(API, "group: example.mcall.tz.io", "group: example")],
        file: "spec/api.yaml",
        path: "group",
        problem: "is not a DNS subdomain with a dot",
    },
    Case {
        name: "environment namespace that is not a DNS label",
        edits: &[Replace(ENVS, "namespace: widgets-dev", "namespace: Widgets_Dev")],
        file: "spec/environments.yaml",
        path: "environments.dev.namespace",
        problem: "must be a lowercase DNS label",
    },
];

fn apply(edits: &[Edit]) -> SpecFiles {
    let mut spec = fixture_spec();
    for edit in edits {
        match edit {
            Replace(file, from, to) => replace_once(&mut spec, file, from, to),
            Write(file, text) => {
                spec.files.insert((*file).to_owned(), (*text).to_owned());
            }
            Remove(file) => assert!(spec.files.remove(*file).is_some(), "no spec file {file}"),
        }
    }
    spec
}

fn listing(errors: &SpecErrors) -> String {
    errors.0.iter().map(|e| format!("\n    {e}")).collect()
}

#[test]
fn the_fixture_spec_is_valid() {
    if let Err(errors) = parse(&fixture_spec()) {
        panic!("{errors}");
    }
}

#[test]
fn every_bad_spec_is_refused_with_file_path_and_problem() {
    let mut failures = Vec::new();
    for case in CASES {
        let spec = apply(case.edits);
        let errors = match parse(&spec) {
            Ok(_) => {
                failures.push(format!("{}: accepted", case.name));
                continue;
            }
            Err(errors) => errors,
        };
        let prefix = format!("{}: {}: ", case.file, case.path);
        let found = errors.0.iter().map(ToString::to_string).any(|e| e.starts_with(&prefix) && e.contains(case.problem));
        if !found {
            failures.push(format!("{}: no error `{prefix}...{}...`; got:{}", case.name, case.problem, listing(&errors)));
        }
        // generate refuses the same spec with the same errors, so nothing can be written.
        assert_eq!(generate(&spec).err(), Some(errors), "{}: generate and parse disagree", case.name);
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n  {}", failures.len(), CASES.len(), failures.join("\n  "));
}

#[test]
fn errors_display_with_the_spec_directory_and_a_count() {
    let spec = apply(&[Replace(KIND, "default: blue", "default: purple"), Replace(ENVS, "replicaCount: 3", "replicaCount: -1")]);
    let errors = parse(&spec).expect_err("two problems");
    let text = errors.to_string();
    assert!(text.starts_with("the spec is invalid (2 problem(s)):\n"), "{text}");
    assert!(text.contains("  - spec/kinds/widget.yaml: versions[0].spec.fields.color.default: "), "{text}");
    assert!(text.contains("  - spec/environments.yaml: environments.prod.values.replicaCount: "), "{text}");
}

#[test]
fn zz_print() {
    let probes: &[(&str, &[Edit])] = &[
        ("object default", &[Replace(KIND, "        tags:\n", "        spare:\n          type: object\n          default: {}\n          fields:\n            id: {type: string}\n        tags:\n")]),
        ("shared object default", &[Replace(KIND, "ref: Owner", "ref: Owner\n          default: {}")]),
    ];
    for (name, edits) in probes {
        let spec = apply(edits);
        match parse(&spec) {
            Err(e) => println!("== {name}{}", listing(&e)),
            Ok(_) => {
                let r = std::panic::catch_unwind(|| generate(&spec));
                println!("== {name}: ACCEPTED; generate panics: {}", r.is_err());
            }
        }
    }
}
