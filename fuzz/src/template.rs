//! `inputTemplate` rendered from `inputSources` (`mcall::inputs::render`).
//!
//! The function the controller forms a task's input with. Fields: the template, then four per source: its name
//! (kept to the CRD's `[A-Za-z_][A-Za-z0-9_]*`), a digit followed by an optional JSONPath (the
//! digit picks the result field: `0` output, `1` errorCode, `2` errorMessage, `3` phase; `4`–`7`
//! the same with no producer task), the producer's output, a default.
//!
//! Properties: when every source resolves, no `${NAME}` of a source is left in the result
//! unless a value brought it in; and the order of the sources does not matter (names are
//! distinct), since each placeholder stands for its own source's value only.

use std::collections::BTreeSet;

use mcall::inputs::render;
use mcall_generated::{InputSource, McallTaskStatus, Phase, ResultField, TaskResult};

use crate::Fields;

const RESULT_FIELDS: [ResultField; 4] = [
    ResultField::Output,
    ResultField::ErrorCode,
    ResultField::ErrorMessage,
    ResultField::Phase,
];

struct Producer {
    source: InputSource,
    /// `None`: no McallTask of that name.
    status: Option<McallTaskStatus>,
}

pub(crate) fn run(data: &[u8]) {
    let f = Fields::new(data);
    let template = f.text(0);
    let producers = producers(&f);
    let sources: Vec<InputSource> = producers.iter().map(|p| p.source.clone()).collect();
    let lookup = |name: &str| {
        producers
            .iter()
            .find(|p| p.source.task_ref == name)
            .map(|p| p.status.as_ref())
    };
    let Ok(rendered) = render(template, &sources, lookup) else {
        return;
    };
    let mut reversed = sources.clone();
    reversed.reverse();
    let names: BTreeSet<&str> = sources.iter().map(|s| s.name.as_str()).collect();
    if names.len() == sources.len() {
        assert_eq!(
            render(template, &reversed, lookup).as_deref(),
            Ok(rendered.as_str()),
            "the order of inputSources changed the input"
        );
    }
    // Template text around a value can form a placeholder too (`${X${X}}`, `$${X}{X}`), which
    // single-pass rendering rightly leaves alone: only a template whose other text has no `$`
    // or brace is held to "no placeholder left".
    let other_text = names.iter().fold(template.to_owned(), |t, name| {
        t.replace(&format!("${{{name}}}"), "")
    });
    if other_text.contains(['$', '{', '}']) {
        return;
    }
    let brought_in = |name: &str| producers.iter().any(|p| mentions(p, name));
    for name in names {
        let placeholder = format!("${{{name}}}");
        assert!(
            !rendered.contains(&placeholder) || brought_in(&placeholder),
            "{placeholder} left in {rendered:?}"
        );
    }
}

/// Whether a producer's value (output, default or error) could carry `text` into the result.
fn mentions(p: &Producer, text: &str) -> bool {
    let result = p.status.as_ref().and_then(|s| s.result.as_ref());
    let fields = [
        p.source.default.as_deref(),
        result.and_then(|r| r.output.as_deref()),
        result.and_then(|r| r.error_message.as_deref()),
        result.and_then(|r| r.error_code.as_deref()),
    ];
    // A JSONPath can unescape a value, so any `$` or brace in it counts.
    fields
        .iter()
        .flatten()
        .any(|v| v.contains(text) || v.contains(['$', '{', '}', '\\']))
}

fn producers(f: &Fields) -> Vec<Producer> {
    (0..8)
        .map_while(|i| {
            let at = 1 + i * 4;
            let name = f.opt(at)?;
            let selector = f.choice(at + 1, 0, 8);
            let json_path = f.text(at + 1).get(1..).filter(|p| !p.is_empty());
            let output = f.text(at + 2);
            let source = InputSource {
                name: crd_name(name),
                task_ref: format!("producer-{i}"),
                field: RESULT_FIELDS[selector % 4],
                json_path: json_path.map(str::to_owned),
                default: f.owned(at + 3),
            };
            let status = (selector < 4).then(|| McallTaskStatus {
                phase: Some(Phase::Succeeded),
                result: Some(TaskResult {
                    output: Some(output.to_owned()),
                    error_code: Some(output.len().to_string()),
                    error_message: Some(output.to_owned()),
                }),
                ..Default::default()
            });
            Some(Producer { source, status })
        })
        .collect()
}

/// `name` reduced to what the CRD admits (`^[A-Za-z_][A-Za-z0-9_]*$`).
fn crd_name(name: &str) -> String {
    let kept: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(63)
        .collect();
    match kept.chars().next() {
        Some(c) if !c.is_ascii_digit() => kept,
        _ => format!("_{kept}"),
    }
}
