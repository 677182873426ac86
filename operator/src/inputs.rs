//! Result passing: `inputSources` read values from other tasks' results, and `${NAME}` in
//! `inputTemplate` is replaced by them to form the input. Pure: the caller looks tasks up.

use mcall_generated::{InputSource, McallTaskStatus, ResultField};

/// Why the input could not be formed; the message names the field and the source.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InputError {
    pub field: String,
    pub message: String,
}

/// Renders `template` with the values of `sources`; `lookup` gives the status of a task of the
/// same namespace (`None` when it does not exist). Every source must resolve (or have a
/// default), used or not. A value goes in as it is: a `${NAME}` inside another task's output is
/// text, not a placeholder, so what one task prints cannot pull in another source's value.
pub fn render<'a>(
    template: &str,
    sources: &[InputSource],
    lookup: impl Fn(&str) -> Option<Option<&'a McallTaskStatus>>,
) -> Result<String, InputError> {
    let mut values: Vec<(&str, String)> = Vec::with_capacity(sources.len());
    for (i, source) in sources.iter().enumerate() {
        let field = format!("spec.inputSources[{i}]");
        let value = match value_of(source, &lookup, &field)? {
            Some(value) => value,
            None => match &source.default {
                Some(default) => default.clone(),
                None => {
                    return Err(InputError {
                        field,
                        message: format!(
                            "{} of McallTask {:?} is not available and the source has no default",
                            source.field, source.task_ref
                        ),
                    });
                }
            },
        };
        values.push((source.name.as_str(), value));
    }
    Ok(substitute(template, &values))
}

/// One pass over `template`: each `${NAME}` of a source becomes its value (the first source of
/// that name), anything else stays as written.
fn substitute(template: &str, values: &[(&str, String)]) -> String {
    let mut rendered = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        rendered.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let value = after.find('}').and_then(|end| {
            let name = &after[..end];
            let (_, value) = values.iter().find(|(n, _)| *n == name)?;
            Some((value, end))
        });
        match value {
            Some((value, end)) => {
                rendered.push_str(value);
                rest = &after[end + 1..];
            }
            None => {
                rendered.push_str("${");
                rest = after;
            }
        }
    }
    rendered.push_str(rest);
    rendered
}

/// The first `${NAME}` of `template` that names neither a source nor one of `variables` (the
/// task's `environment` and `environmentFrom`, which the command's shell expands), as the
/// error admission and the controllers report. NAME has the shape of a source name (a shell
/// identifier); other `${…}` (`${X:-default}`, `${#X}`) are shell syntax and pass through. Any
/// other shell variable is written `$NAME`: a `${NAME}` nothing fills is a typo waiting to run.
pub fn undefined_placeholder(
    template: &str,
    sources: &[InputSource],
    variables: &[&str],
) -> Option<InputError> {
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        rest = after;
        let Some(name) = after.find('}').map(|end| &after[..end]) else {
            break;
        };
        if is_identifier(name)
            && !sources.iter().any(|s| s.name == name)
            && !variables.contains(&name)
        {
            let defined: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
            return Some(InputError {
                field: "spec.inputTemplate".to_owned(),
                message: format!(
                    "${{{name}}} names no inputSources entry (there are: {}) and no variable of \
                     environment or environmentFrom; another shell variable is written ${name}",
                    match defined.is_empty() {
                        true => "none".to_owned(),
                        false => defined.join(", "),
                    }
                ),
            });
        }
    }
    None
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn value_of<'a>(
    source: &InputSource,
    lookup: &impl Fn(&str) -> Option<Option<&'a McallTaskStatus>>,
    field: &str,
) -> Result<Option<String>, InputError> {
    let Some(status) = lookup(&source.task_ref).flatten() else {
        return Ok(None);
    };
    let result = status.result.as_ref();
    let raw = match source.field {
        // As shell command substitution does: `echo 42` passes `42`, not `42\n`.
        ResultField::Output => result
            .and_then(|r| r.output.as_deref())
            .map(|o| o.trim_end_matches(['\n', '\r']).to_owned()),
        ResultField::ErrorCode => result.and_then(|r| r.error_code.clone()),
        ResultField::ErrorMessage => result.and_then(|r| r.error_message.clone()),
        ResultField::Phase => status.phase.map(|p| p.to_string()),
        ResultField::StartTime => status.start_time.as_ref().map(|t| t.0.to_string()),
        ResultField::CompletionTime => status.completion_time.as_ref().map(|t| t.0.to_string()),
    };
    let (Some(raw), Some(path)) = (raw.clone(), source.json_path.as_deref()) else {
        return Ok(raw);
    };
    let path = mcall_engine::parse_json_path(path).map_err(|message| InputError {
        field: format!("{field}.jsonPath"),
        message,
    })?;
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&raw) else {
        return Ok(None);
    };
    Ok(path.query(&json).first().map(|node| match node {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use mcall_generated::{Phase, TaskResult};

    use super::*;

    fn source(name: &str, task: &str, field: ResultField) -> InputSource {
        InputSource {
            name: name.into(),
            task_ref: task.into(),
            field,
            json_path: None,
            default: None,
        }
    }

    fn status(output: &str) -> McallTaskStatus {
        McallTaskStatus {
            phase: Some(Phase::Succeeded),
            result: Some(TaskResult {
                output: Some(output.into()),
                error_code: Some("0".into()),
                error_message: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn fills_placeholders_from_results_and_json_paths() {
        let producer = status(r#"{"host": "db-1", "port": 5432}"#);
        let mut port = source("PORT", "producer", ResultField::Output);
        port.json_path = Some("$.port".into());
        let mut host = source("HOST", "producer", ResultField::Output);
        host.json_path = Some("$.host".into());
        let phase = source("P", "producer", ResultField::Phase);
        let out = render(
            "nc -z ${HOST} ${PORT} # ${P} ${P}",
            &[port, host, phase],
            |name| (name == "producer").then_some(Some(&producer)),
        )
        .unwrap();
        assert_eq!(out, "nc -z db-1 5432 # Succeeded Succeeded");
    }

    #[test]
    fn a_placeholder_naming_no_source_is_refused_and_shell_syntax_is_not() {
        let sources = [source("HOST", "db", ResultField::Output)];
        let err = undefined_placeholder("nc -z ${HOST} ${PORT}", &sources, &[]).unwrap();
        assert_eq!(err.field, "spec.inputTemplate");
        assert_eq!(
            err.message,
            "${PORT} names no inputSources entry (there are: HOST) and no variable of environment \
             or environmentFrom; another shell variable is written $PORT"
        );
        for fine in [
            "nc -z ${HOST} $PORT",
            "echo ${HOST:-localhost} ${#HOST} ${1} ${} ${HOST",
            "echo $${HOST}",
        ] {
            assert_eq!(undefined_placeholder(fine, &sources, &[]), None, "{fine}");
        }
        // The task's own variables, which its shell expands.
        assert_eq!(
            undefined_placeholder(
                "curl -H \"Authorization: ${TOKEN}\" ${HOST}",
                &sources,
                &["TOKEN"]
            ),
            None
        );
        assert!(
            undefined_placeholder("${_x}", &[], &[])
                .unwrap()
                .message
                .contains("(there are: none)")
        );
    }

    #[test]
    fn an_output_passes_without_its_trailing_newlines() {
        let producer = status("42\n");
        let out = render(
            "echo ${X}!",
            &[source("X", "producer", ResultField::Output)],
            |_| Some(Some(&producer)),
        )
        .unwrap();
        assert_eq!(out, "echo 42!");
    }

    #[test]
    fn a_missing_source_uses_its_default_or_fails_naming_it() {
        let mut with_default = source("X", "ghost", ResultField::ErrorCode);
        with_default.default = Some("none".into());
        assert_eq!(
            render("x=${X}", &[with_default], |_| None).unwrap(),
            "x=none"
        );

        let err = render(
            "x=${X}",
            &[source("X", "ghost", ResultField::Output)],
            |_| None,
        )
        .unwrap_err();
        assert_eq!(err.field, "spec.inputSources[0]");
        assert!(err.message.contains("\"ghost\""), "{err}");

        let not_run_yet = McallTaskStatus::default();
        let err = render("${X}", &[source("X", "idle", ResultField::Output)], |_| {
            Some(Some(&not_run_yet))
        })
        .unwrap_err();
        assert!(err.message.contains("not available"), "{err}");
    }

    #[test]
    fn a_value_goes_in_as_it_is_without_expanding_placeholders_inside_it() {
        // Found by the `template` fuzz target: values were substituted one source after the
        // other, so a `${B}` printed by task A became B's value, or not, by source order.
        let a = status("${B}");
        let b = status("x");
        let sources = [
            source("A", "a", ResultField::Output),
            source("B", "b", ResultField::Output),
        ];
        let lookup = |name: &str| Some(Some(if name == "a" { &a } else { &b }));
        assert_eq!(render("${A}${B}", &sources, lookup).unwrap(), "${B}x");
        let reversed = [sources[1].clone(), sources[0].clone()];
        assert_eq!(render("${A}${B}", &reversed, lookup).unwrap(), "${B}x");
        // Unknown and unterminated placeholders stay as written.
        assert_eq!(render("${C} ${A", &sources, lookup).unwrap(), "${C} ${A");
    }

    #[test]
    fn an_invalid_json_path_names_the_field() {
        let producer = status("{}");
        let mut bad = source("X", "producer", ResultField::Output);
        bad.json_path = Some("$[".into());
        let err = render("${X}", &[bad], |_| Some(Some(&producer))).unwrap_err();
        assert_eq!(err.field, "spec.inputSources[0].jsonPath");
    }
}
