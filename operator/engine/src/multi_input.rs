//! Recognising and parsing a multi-input `spec.input`: a JSON array of
//! `{type?, input, name?, expect?}` objects, or `{"inputs": [...]}`.
//!
//! `input` is also a shell command, and `[ -f /x ]` or `{ a; b; }` are good shell. So only text
//! that *looks like* the JSON forms (`[` followed by `{` or `]`, `{` followed by `"` or `}`) is
//! read as JSON, and then it must be well formed: a typo gets a clear InvalidSpec instead of being
//! run as a command.

use serde::Deserialize;
use serde_json::Value;

use crate::invalid::InvalidSpec;
use crate::request::TaskKind;

/// Inputs in one task, at most: `status.inputResults` holds one result per input and the API
/// server refuses more than 256 (spec/kinds/mcalltask.yaml), so a longer list could never report.
pub const MAX_INPUTS: usize = 256;

/// One element of the list, before defaults and validation.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInput {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub input: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub expect: Option<String>,
}

/// `Ok(None)` for a plain single input; `Ok(Some(list))` for the multi-input forms.
pub(crate) fn parse_inputs(input: &str) -> Result<Option<Vec<RawInput>>, InvalidSpec> {
    if !looks_like_json_list(input) {
        return Ok(None);
    }
    let malformed =
        |m: String| InvalidSpec::new("spec.input", format!("malformed multi-input JSON: {m}"));
    let value: Value = serde_json::from_str(input).map_err(|e| malformed(e.to_string()))?;
    let elements = match value {
        Value::Array(items) => items,
        Value::Object(mut map) => {
            let inputs = map
                .remove("inputs")
                .ok_or_else(|| malformed("an object must have an \"inputs\" array".to_owned()))?;
            if let Some(extra) = map.keys().next() {
                return Err(malformed(format!(
                    "unexpected key {extra:?} beside \"inputs\""
                )));
            }
            match inputs {
                Value::Array(items) => items,
                _ => return Err(malformed("\"inputs\" must be an array".to_owned())),
            }
        }
        _ => unreachable!("looks_like_json_list only admits arrays and objects"),
    };
    if elements.is_empty() {
        return Err(malformed("the list of inputs is empty".to_owned()));
    }
    if elements.len() > MAX_INPUTS {
        return Err(InvalidSpec::new(
            "spec.input",
            format!(
                "{} inputs; a task runs at most {MAX_INPUTS} (split it into several tasks)",
                elements.len()
            ),
        ));
    }
    elements
        .into_iter()
        .enumerate()
        .map(|(i, element)| {
            RawInput::deserialize(element).map_err(|e| {
                InvalidSpec::new(
                    format!("spec.input[{i}]"),
                    format!(
                        "malformed multi-input JSON: {e} (an input is {{\"type\", \"input\", \"name\", \"expect\"}})"
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Parses the per-input `type`; absent means the task's own kind.
pub(crate) fn input_kind(
    raw: &RawInput,
    index: usize,
    default: TaskKind,
) -> Result<TaskKind, InvalidSpec> {
    match &raw.kind {
        None => Ok(default),
        Some(kind) => kind.parse().map_err(|e: crate::request::UnknownVariant| {
            InvalidSpec::new(format!("spec.input[{index}].type"), e.to_string())
        }),
    }
}

fn looks_like_json_list(input: &str) -> bool {
    let trimmed = input.trim_start();
    let mut chars = trimmed.chars();
    let (Some(open), Some(next)) = (chars.next(), chars.find(|c| !c.is_whitespace())) else {
        // A lone `[` or `{` is neither a list nor a useful command; let JSON explain.
        return matches!(trimmed.trim(), "[" | "{");
    };
    matches!((open, next), ('[', '{' | ']') | ('{', '"' | '}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_inputs_and_shell_brackets_are_single() {
        for single in [
            "echo hi",
            "http://example.com",
            "[ -f /etc/passwd ] && echo yes",
            "[[ 1 -eq 1 ]]",
            "{ echo a; echo b; }",
            "  echo [1]",
        ] {
            assert_eq!(parse_inputs(single), Ok(None), "{single}");
        }
    }

    #[test]
    fn array_form() {
        let list = parse_inputs(
            r#" [ {"input": "echo a"}, {"type": "get", "input": "http://x", "name": "web", "expect": "200"} ] "#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].input, "echo a");
        assert_eq!(list[0].kind, None);
        assert_eq!(list[1].kind.as_deref(), Some("get"));
        assert_eq!(list[1].name.as_deref(), Some("web"));
        assert_eq!(list[1].expect.as_deref(), Some("200"));
    }

    #[test]
    fn object_form() {
        let list = parse_inputs(r#"{"inputs": [{"input": "true"}, {"input": "false"}]}"#)
            .unwrap()
            .unwrap();
        assert_eq!(list.len(), 2);
    }

    #[test]
    fn more_inputs_than_the_status_can_report_are_invalid() {
        let list = |n: usize| format!("[{}]", vec![r#"{"input": "true"}"#; n].join(","));
        assert_eq!(parse_inputs(&list(MAX_INPUTS)).unwrap().unwrap().len(), 256);
        let err = parse_inputs(&list(MAX_INPUTS + 1)).unwrap_err();
        assert!(err.to_string().contains("257 inputs"), "{err}");
        assert!(err.to_string().contains("spec.input"), "{err}");
    }

    #[test]
    fn malformed_json_is_invalid_spec() {
        for (bad, field, needle) in [
            (
                r#"[{"input": "a"}"#,
                "spec.input",
                "malformed multi-input JSON",
            ),
            ("[]", "spec.input", "empty"),
            ("[", "spec.input", "malformed multi-input JSON"),
            (r#"{"inputs": 3}"#, "spec.input", "must be an array"),
            (r#"{"input": "x"}"#, "spec.input", "\"inputs\" array"),
            (
                r#"{"inputs": [], "mode": 1}"#,
                "spec.input",
                "unexpected key",
            ),
            (
                r#"[{"input": "a"}, {"cmd": "b"}]"#,
                "spec.input[1]",
                "unknown field `cmd`",
            ),
            (
                r#"[{"name": "a"}]"#,
                "spec.input[0]",
                "missing field `input`",
            ),
            (r#"[{"input": 1}]"#, "spec.input[0]", "invalid type"),
        ] {
            let err = parse_inputs(bad).unwrap_err();
            assert_eq!(err.field, field, "{bad}");
            assert!(err.message.contains(needle), "{bad}: {}", err.message);
        }
    }

    #[test]
    fn kind_defaults_to_the_task_kind() {
        let raw = |kind: Option<&str>| RawInput {
            kind: kind.map(str::to_owned),
            input: "x".into(),
            name: None,
            expect: None,
        };
        assert_eq!(input_kind(&raw(None), 0, TaskKind::Get), Ok(TaskKind::Get));
        assert_eq!(
            input_kind(&raw(Some("cmd")), 0, TaskKind::Get),
            Ok(TaskKind::Cmd)
        );
        let err = input_kind(&raw(Some("put")), 3, TaskKind::Get).unwrap_err();
        assert_eq!(err.field, "spec.input[3].type");
    }
}
