//! The generated `Reason` and `ConditionType` enums: their wire names round-trip, they are the
//! ones spec/reasons.yaml declares, and the McallTask CRD lists each with its meaning.

use std::path::Path;

use mcall_generated::{ConditionType, Reason};

fn spec_ir() -> mcall_codegen::ir::Ir {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec");
    let spec = mcall_codegen::SpecFiles::read_dir(&dir).expect("spec/ is readable");
    mcall_codegen::parse(&spec).expect("spec/ is valid")
}

#[test]
fn wire_names_round_trip() {
    for reason in Reason::ALL {
        assert_eq!(reason.as_str().parse::<Reason>(), Ok(reason));
        assert_eq!(reason.to_string(), reason.as_str());
        assert!(!reason.description().is_empty(), "{reason}");
    }
    for condition in ConditionType::ALL {
        assert_eq!(condition.as_str().parse::<ConditionType>(), Ok(condition));
    }
    let unknown = "Succeded".parse::<Reason>().unwrap_err();
    assert!(unknown.contains("is not a valid Reason"), "{unknown}");
}

#[test]
fn the_enums_are_the_spec_in_its_order() {
    let ir = spec_ir();
    let declared: Vec<&str> = ir.reasons.reasons.iter().map(|r| r.name.as_str()).collect();
    let generated: Vec<&str> = Reason::ALL.iter().map(Reason::as_str).collect();
    assert_eq!(generated, declared);
    let declared: Vec<&str> = ir
        .reasons
        .conditions
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let generated: Vec<&str> = ConditionType::ALL
        .iter()
        .map(ConditionType::as_str)
        .collect();
    assert_eq!(generated, declared);
}

#[test]
fn where_each_reason_appears() {
    use ConditionType::{DependenciesReady, Ready};
    assert_eq!(Reason::Succeeded.conditions(), [Ready]);
    assert!(Reason::Succeeded.is_event() && !Reason::Succeeded.is_warning());
    assert_eq!(
        Reason::WaitingForDependencies.conditions(),
        [Ready, DependenciesReady]
    );
    assert!(!Reason::WaitingForDependencies.is_event());
    // Event-only reasons.
    for reason in [Reason::Started, Reason::Retrying, Reason::Missed] {
        assert!(
            reason.conditions().is_empty() && reason.is_event(),
            "{reason}"
        );
    }
    assert!(Reason::Missed.is_warning() && !Reason::Started.is_warning());
}

#[test]
fn the_crds_list_every_reason_with_its_meaning() {
    let crd = |file: &str| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../helm/mcall-operator/crds")
            .join(file);
        std::fs::read_to_string(path).expect("the generated CRD")
    };
    // Each kind's CRD lists its own reasons (spec/reasons.yaml `kinds`); together they list all.
    let crds = [
        crd("mcalltasks.mcall.tz.io.yaml"),
        crd("mcallworkflows.mcall.tz.io.yaml"),
    ];
    for condition in ConditionType::ALL {
        let line = format!("- `{condition}`: {}", condition.description());
        assert!(
            crds.iter().any(|c| c.contains(&line)),
            "no CRD lists {line:?}"
        );
    }
    for reason in Reason::ALL {
        let (start, meaning) = (format!("- `{reason}` ("), reason.description());
        let listed = crds.iter().any(|crd| {
            crd.lines()
                .any(|l| l.trim_start().starts_with(&start) && l.ends_with(meaning))
        });
        assert!(listed, "no CRD lists {reason} with its meaning");
    }
}
