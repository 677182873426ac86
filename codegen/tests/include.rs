//! Included fields: an object takes fields of another kind's spec (as McallWorkflow steps take
//! McallTask's), optional and without defaults, typed with the source's own types.

mod common;

use common::Edit::Write;
use common::{Case, apply, failures};
use mcall_codegen::ir::{Schema, TypeDef};
use mcall_codegen::{generate, parse};

const GADGET: &str = "kinds/gadget.yaml";

fn gadget(include: &str) -> String {
    format!(
        "kind: Gadget
plural: gadgets
singular: gadget
scope: Namespaced
versions:
  - name: v1
    served: true
    storage: true
    spec:
      fields:
        steps:
          type: list
          description: Steps built like widgets.
          items:
            type: object
            rustName: GadgetStep
            {include}
            fields:
              name:
                type: string
                required: true
                description: Name of the step.
"
    )
}

fn with_gadget(include: &str) -> mcall_codegen::SpecFiles {
    let text: &'static str = Box::leak(gadget(include).into_boxed_str());
    apply(&[&Write(GADGET, text)])
}

#[test]
fn included_fields_are_optional_default_free_and_keep_the_source_types() {
    let spec = with_gadget("include: {from: Widget, fields: [type, size, parts]}");
    let ir = parse(&spec).expect("the spec with an include is accepted");
    let Some(TypeDef::Object(step)) = ir.types.get("GadgetStep").map(|d| &d.def) else {
        panic!("GadgetStep is an object");
    };
    let names: Vec<&str> = step.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["name", "type", "size", "parts"], "own fields first");
    let ty = &step.fields[1];
    assert!(!ty.required, "Widget's required `type` is optional here");
    assert_eq!(ty.schema, Schema::Named("WidgetType".into()));
    let size = &step.fields[2];
    assert_eq!(size.default, None, "Widget's default for `size` is dropped");
    assert_eq!(size.description.as_deref(), Some("Size in centimetres."));

    let files = generate(&spec).expect("generates");
    let rust = files
        .iter()
        .find(|(path, _)| path.ends_with("gadget.rs"))
        .map(|(_, text)| text)
        .expect("a gadget module");
    assert!(
        rust.contains("use crate::widget::*;"),
        "the module imports the source kind's types:\n{rust}"
    );
    assert!(rust.contains("pub r#type: Option<WidgetType>"), "{rust}");
    assert!(rust.contains("pub size: Option<i64>"), "{rust}");
    let crd = files
        .iter()
        .find(|(path, _)| path.to_string_lossy().contains("crds/gadgets."))
        .map(|(_, text)| text)
        .expect("a gadget CRD");
    assert!(
        crd.contains("maximum: 10"),
        "the source's bounds are kept:\n{crd}"
    );
}

#[test]
fn bad_includes_are_refused_naming_the_problem() {
    let cases: Vec<Case> = [
        (
            "unknown kind",
            "include: {from: Gizmo, fields: [size]}",
            "include",
            "include.from \"Gizmo\" is not a kind of this spec",
        ),
        (
            "unknown field",
            "include: {from: Widget, fields: [colour]}",
            "include.fields",
            "Widget has no field \"colour\"",
        ),
        (
            "field declared twice",
            "include: {from: Widget, fields: [name]}",
            "include.fields",
            "\"name\" is declared in `fields` and included too",
        ),
        (
            "listed twice",
            "include: {from: Widget, fields: [size, size]}",
            "include.fields",
            "\"size\" is listed twice",
        ),
        (
            "own kind",
            "include: {from: Gadget, fields: [steps]}",
            "include",
            "cannot include fields of its own kind",
        ),
    ]
    .into_iter()
    .map(|(name, include, at, problem)| Case {
        name,
        edit: Write(GADGET, Box::leak(gadget(include).into_boxed_str())),
        path: Box::leak(format!("versions[0].spec.fields.steps.items.{at}").into_boxed_str()),
        problem,
    })
    .collect();
    let failures = failures(&cases);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
