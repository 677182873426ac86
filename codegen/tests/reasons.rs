//! reasons.yaml: the IR of the fixture's condition types and reasons, the list of them in the
//! kind's `status.conditions` description, and malformed files refused as the other bad specs
//! (`bad_specs.rs`): each case edits the fixture and expects an error naming the file, the path
//! of the entry and the problem.

mod common;

use common::Edit::{Remove, Replace, Write};
use common::{
    API, Case, KIND, REASONS, apply, assert_refused, fixture_spec, listing, real_spec, refused,
};
use mcall_codegen::ir::{EventType, Field, Ir, TypeDef};
use mcall_codegen::parse;

fn status_conditions<'a>(ir: &'a Ir, kind: &str) -> &'a Field {
    let kind = ir.kinds.iter().find(|k| k.kind == kind).expect("the kind");
    let status = kind.status_type.as_ref().expect("a status");
    let Some(TypeDef::Object(o)) = ir.types.get(status).map(|d| &d.def) else {
        panic!("{status} is not an object");
    };
    o.fields
        .iter()
        .find(|f| f.name == "conditions")
        .expect("status.conditions")
}

#[test]
fn the_fixture_declares_its_reasons_in_order() {
    let ir = parse(&fixture_spec()).unwrap_or_else(|e| panic!("{e}"));
    let conditions: Vec<&str> = ir
        .reasons
        .conditions
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(conditions, ["Ready"]);
    let reasons: Vec<(&str, Vec<&str>, Option<EventType>)> = (ir.reasons.reasons.iter())
        .map(|r| {
            let conditions = r.conditions.iter().map(String::as_str).collect();
            (r.name.as_str(), conditions, r.event)
        })
        .collect();
    assert_eq!(
        reasons,
        [
            ("Built", vec!["Ready"], Some(EventType::Normal)),
            ("BuildFailed", vec!["Ready"], Some(EventType::Warning)),
            ("Building", vec!["Ready"], None),
            ("Painted", vec![], Some(EventType::Normal)),
        ]
    );
}

#[test]
fn status_conditions_lists_the_condition_types_and_reasons_of_its_kind() {
    let ir = parse(&fixture_spec()).unwrap_or_else(|e| panic!("{e}"));
    let expected = "Standard conditions.\n\n\
        Condition types:\n\
        - `Ready`: Whether the widget is built.\n\n\
        Reasons, of these conditions and of the Events about a Widget:\n\
        - `Built` (Ready, Normal Event): The widget was built.\n\
        - `BuildFailed` (Ready, Warning Event): A part was missing, so the widget was not built.\n\
        - `Building` (Ready): The widget is being built.\n\
        - `Painted` (Normal Event): The widget got its color.";
    let field = status_conditions(&ir, "Widget");
    assert_eq!(field.description.as_deref(), Some(expected));
}

/// Every kind's `status.conditions` description lists exactly the condition types and reasons
/// declared for that kind.
#[test]
fn the_real_spec_lists_every_reason_for_its_kinds() {
    let ir = parse(&real_spec()).unwrap_or_else(|e| panic!("{e}"));
    for kind in ["McallTask", "McallWorkflow"] {
        let listing = status_conditions(&ir, kind)
            .description
            .clone()
            .unwrap_or_default();
        let mine = |kinds: &[String]| kinds.iter().any(|k| k == kind);
        for c in &ir.reasons.conditions {
            let listed = listing.contains(&format!("\n- `{}`: ", c.name));
            assert_eq!(
                listed,
                mine(&c.kinds),
                "{kind}: condition {}:\n{listing}",
                c.name
            );
        }
        for r in &ir.reasons.reasons {
            let listed = listing.contains(&format!("\n- `{}` (", r.name));
            assert_eq!(
                listed,
                mine(&r.kinds),
                "{kind}: reason {}:\n{listing}",
                r.name
            );
        }
    }
}

const CASES: &[Case] = &[
    Case {
        name: "reason declared twice (YAML duplicate key)",
        edit: Replace(
            REASONS,
            "  Painted:\n",
            "  Built:\n    kinds: [Widget]\n    event: Normal\n    description: Again.\n  Painted:\n",
        ),
        path: "line 22 column 3",
        problem: "duplicate mapping key: Built",
    },
    Case {
        name: "reason name in lower camel case",
        edit: Replace(REASONS, "  Built:\n", "  built:\n"),
        path: "reasons.built",
        problem: "reason name \"built\" must be PascalCase ASCII letters and digits (it is both the wire string and the Rust variant), e.g. Built",
    },
    Case {
        name: "reason name that is no identifier",
        edit: Replace(REASONS, "  BuildFailed:\n", "  Build-Failed:\n"),
        path: "reasons.Build-Failed",
        problem: "must be PascalCase ASCII letters and digits (it is both the wire string and the Rust variant), e.g. BuildFailed",
    },
    Case {
        name: "reason name whose Rust variant would differ",
        edit: Replace(REASONS, "  BuildFailed:\n", "  BUILDFailed:\n"),
        path: "reasons.BUILDFailed",
        problem: "must be PascalCase",
    },
    Case {
        name: "condition type name that is a keyword",
        edit: Replace(REASONS, "  Ready:\n", "  Self:\n"),
        path: "conditions.Self",
        problem: "condition type name \"Self\" must be PascalCase",
    },
    Case {
        name: "reason of an undeclared condition type",
        edit: Replace(
            REASONS,
            "conditions: [Ready]\n    description: The widget is being built.",
            "conditions: [Redy]\n    description: The widget is being built.",
        ),
        path: "reasons.Building.conditions[0]",
        problem: "\"Redy\" is not a condition type of reasons.yaml (declared: Ready)",
    },
    Case {
        name: "condition type listed twice",
        edit: Replace(
            REASONS,
            "conditions: [Ready]\n    description: The widget is being built.",
            "conditions: [Ready, Ready]\n    description: The widget is being built.",
        ),
        path: "reasons.Building.conditions[1]",
        problem: "Ready is listed twice",
    },
    Case {
        name: "unknown kind",
        edit: Replace(
            REASONS,
            "kinds: [Widget]\n    event: Normal\n    description: The widget got",
            "kinds: [Gadget]\n    event: Normal\n    description: The widget got",
        ),
        path: "reasons.Painted.kinds[0]",
        problem: "\"Gadget\" is not a kind of spec/kinds (declared: Widget)",
    },
    Case {
        name: "no kinds",
        edit: Replace(
            REASONS,
            "kinds: [Widget]\n    description: Whether",
            "kinds: []\n    description: Whether",
        ),
        path: "conditions.Ready.kinds",
        problem: "list the kinds that use it",
    },
    Case {
        name: "kind listed twice",
        edit: Replace(
            REASONS,
            "kinds: [Widget]\n    description: Whether",
            "kinds: [Widget, Widget]\n    description: Whether",
        ),
        path: "conditions.Ready.kinds[1]",
        problem: "Widget is listed twice",
    },
    Case {
        name: "Event type that Kubernetes does not have",
        edit: Replace(REASONS, "event: Warning", "event: Error"),
        path: "reasons.BuildFailed.event",
        problem: "\"Error\" is not an Event type: Normal or Warning",
    },
    Case {
        name: "reason that appears nowhere",
        edit: Replace(
            REASONS,
            "    event: Normal\n    description: The widget got its color.",
            "    description: The widget got its color.",
        ),
        path: "reasons.Painted",
        problem: "the reason appears nowhere: list its `conditions`, set `event`, or both",
    },
    Case {
        name: "description on two lines",
        edit: Replace(
            REASONS,
            "description: The widget was built.",
            "description: |\n      The widget\n      was built.",
        ),
        path: "reasons.Built.description",
        problem: "must be one line",
    },
    Case {
        name: "empty description",
        edit: Replace(
            REASONS,
            "description: The widget was built.",
            "description: ''",
        ),
        path: "reasons.Built.description",
        problem: "say in one line what it means",
    },
    Case {
        name: "unknown key",
        edit: Replace(REASONS, "event: Warning", "evnt: Warning"),
        path: "line 16 column 5",
        problem: "unknown field `evnt`",
    },
    Case {
        name: "no reasons",
        edit: Write(
            REASONS,
            "conditions:\n  Ready: {kinds: [Widget], description: Built.}\nreasons: {}\n",
        ),
        path: "reasons",
        problem: "declare at least one entry: the generated enum Reason cannot be empty",
    },
    Case {
        name: "no reasons.yaml",
        edit: Remove(REASONS),
        path: "(file)",
        problem: "missing spec file",
    },
    Case {
        name: "spec type named like a generated enum",
        edit: Replace(API, "  Color:\n", "  Reason:\n"),
        path: "types.Reason",
        problem: "type name Reason is reserved",
    },
];

#[test]
fn every_bad_reasons_file_is_refused_with_file_path_and_problem() {
    assert_refused(CASES);
}

/// The reasons of a kind are described in its `status.conditions`; a kind without one is told.
#[test]
fn a_kind_with_reasons_needs_status_conditions() {
    let errors = refused(&apply(&[&Replace(
        KIND,
        "        conditions:\n",
        "        conds:\n",
    )]));
    let found = errors.0.iter().any(|e| {
        e.file == REASONS
            && e.path == "conditions.Ready.kinds"
            && e.message.contains("Widget has condition types or reasons, but its status has no list field `conditions` to describe them in (spec/kinds/widget.yaml)")
    });
    assert!(found, "got:{}", listing(&errors));
}

/// A reason on a condition type applies only to kinds that have that condition.
#[test]
fn a_reason_is_only_for_kinds_with_its_conditions() {
    let gadget = Write(
        "kinds/gadget.yaml",
        "kind: Gadget\nplural: gadgets\nsingular: gadget\nscope: Namespaced\nversions:\n  - name: v1\n    \
         served: true\n    storage: true\n    spec:\n      fields:\n        size: {type: integer}\n    \
         status:\n      fields:\n        conditions:\n          type: list\n          items: {ref: Condition}\n",
    );
    let both = Replace(
        REASONS,
        "kinds: [Widget]\n    conditions: [Ready]\n    description: The widget is being built.",
        "kinds: [Widget, Gadget]\n    conditions: [Ready]\n    description: The widget is being built.",
    );
    let errors = refused(&apply(&[&gadget, &both]));
    let expected = "spec/reasons.yaml: reasons.Building.kinds: Gadget has no condition Ready (conditions.Ready.kinds): add Gadget there, or drop it from this reason's kinds";
    let all: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(all, [expected], "got:{}", listing(&errors));
}
