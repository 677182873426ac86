//! The `expect` expression: a short test of an input's result.
//!
//! # Grammar
//!
//! ```text
//! expect      = alternative *( "|" alternative ) [ "|" regex ]  ; or just: regex
//! alternative = numeric / text                  ; leading and trailing spaces are trimmed
//! regex       = "regex:" PATTERN                ; PATTERN runs to the end of the expression
//! numeric     = variable operator INTEGER       ; spaces around the operator are optional
//! variable    = "$count" / "$status"
//! operator    = ">" / ">=" / "<" / "<=" / "==" / "!="
//! text        = any other characters; "\|" stands for a literal "|"
//! ```
//!
//! The expectation holds when **any** alternative matches:
//!
//! - **text** matches when the output contains it (case-sensitive). For `get`/`post` the output
//!   is the response body, and a text alternative also matches when it equals the HTTP status
//!   code, so `200|204` accepts either status.
//! - **`regex:<pattern>`** matches when the [regex](https://docs.rs/regex) finds a match anywhere
//!   in the output. Because the pattern runs to the end of the expression, a `|` inside it is
//!   regex alternation: put the regex last (`ok|regex:^v[0-9]+$`).
//! - **numeric** tests compare an integer: `$count` is the number of non-blank output lines;
//!   `$status` is the HTTP status code (`get`/`post`) or the exit code (`cmd`).
//!   When `expect` tests `$status`, it replaces the default status rule (any 2xx for HTTP, exit
//!   code 0 for commands), so `$status == 404` or `$status == 1` can succeed; explicit
//!   `httpValidation.expectedStatusCodes` still apply.
//!
//! An empty alternative (`a||b`), an invalid regex, or a malformed numeric test (`$count >> 2`,
//! `$count > two`) is rejected before anything runs. Text that merely starts with `$` (`$5.00`)
//! is plain text; only `$count` and `$status` start a numeric test.
//!
//! # Examples
//!
//! ```text
//! healthy                          the output contains "healthy"
//! OK | ready                       the output contains "OK" or "ready"
//! regex:^v\d+\.\d+                 the output starts with a version such as v1.25
//! regex:(?m)^ready$                some line is exactly "ready"
//! $count > 2                       the output has at least 3 non-blank lines
//! $count == 0                      the output is blank
//! 200|204                          (HTTP) the status is 200 or 204, or the body contains either
//! $status == 404                   (HTTP) the status is 404 (and 404 counts as success)
//! $status == 1 | regex:warn(ing)?  (cmd) the exit code is 1, or the output mentions a warning
//! a\|b                             the output contains the literal text "a|b"
//! ```

use regex::Regex;

pub use crate::user_regex::MAX_REGEX_BYTES;

/// A parsed `expect` expression.
#[derive(Clone, Debug)]
pub struct Expectation {
    alternatives: Vec<Alternative>,
    source: String,
}

#[derive(Clone, Debug)]
enum Alternative {
    Text(String),
    Regex(Regex),
    Compare {
        variable: Variable,
        op: CmpOp,
        value: i64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variable {
    Count,
    Status,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CmpOp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl CmpOp {
    fn apply(self, left: i64, right: i64) -> bool {
        match self {
            CmpOp::Gt => left > right,
            CmpOp::Ge => left >= right,
            CmpOp::Lt => left < right,
            CmpOp::Le => left <= right,
            CmpOp::Eq => left == right,
            CmpOp::Ne => left != right,
        }
    }
}

/// What an expectation is tested against.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    /// The output (command stdout+stderr, or the response body).
    pub text: &'a str,
    /// Number of non-blank lines of the whole output (counted even past the capture window).
    pub lines: u64,
    /// HTTP status or exit code; `None` when a command was killed by a signal.
    pub status: Option<i64>,
    /// Whether the subject is an HTTP response (text alternatives may then match the status).
    pub is_http: bool,
}

/// Parses an `expect` expression; the error says what is wrong, without a field path.
pub fn parse_expectation(source: &str) -> Result<Expectation, String> {
    if source.trim().is_empty() {
        return Err("the expression is empty".to_owned());
    }
    let mut alternatives = Vec::new();
    let mut rest = source;
    loop {
        // A regex swallows the rest of the expression, so `|` inside it is regex alternation.
        if let Some(pattern) = rest.trim_start().strip_prefix("regex:") {
            let pattern = pattern.trim();
            if pattern.is_empty() {
                return Err("`regex:` needs a pattern".to_owned());
            }
            let regex = crate::user_regex::user_regex(pattern, true)?;
            alternatives.push(Alternative::Regex(regex));
            break;
        }
        let (raw, next) = split_unescaped_pipe(rest);
        let text = raw.trim().replace("\\|", "|");
        if text.is_empty() {
            return Err(format!(
                "empty alternative in {source:?}: remove the extra `|`"
            ));
        }
        alternatives.push(parse_alternative(&text)?);
        match next {
            Some(next) => rest = next,
            None => break,
        }
    }
    Ok(Expectation {
        alternatives,
        source: source.trim().to_owned(),
    })
}

/// Splits at the first `|` not preceded by a backslash.
fn split_unescaped_pipe(s: &str) -> (&str, Option<&str>) {
    let bytes = s.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'|' && (i == 0 || bytes[i - 1] != b'\\') {
            return (&s[..i], Some(&s[i + 1..]));
        }
    }
    (s, None)
}

fn parse_alternative(text: &str) -> Result<Alternative, String> {
    let Some((variable, rest)) = numeric_variable(text) else {
        return Ok(Alternative::Text(text.to_owned()));
    };
    let malformed = || {
        format!(
            "malformed numeric test {text:?}: expected `$count` or `$status`, \
             an operator (> >= < <= == !=) and an integer, e.g. `$count > 2`"
        )
    };
    let rest = rest.trim_start();
    // Two-character operators first, so `>=` is not read as `>` followed by `=2`.
    let ops = [
        (">=", CmpOp::Ge),
        ("<=", CmpOp::Le),
        ("==", CmpOp::Eq),
        ("!=", CmpOp::Ne),
        (">", CmpOp::Gt),
        ("<", CmpOp::Lt),
    ];
    let (op, number) = ops
        .iter()
        .find_map(|(token, op)| rest.strip_prefix(token).map(|n| (*op, n)))
        .ok_or_else(malformed)?;
    let value = number.trim().parse::<i64>().map_err(|_| malformed())?;
    Ok(Alternative::Compare {
        variable,
        op,
        value,
    })
}

/// `$count`/`$status` followed by something that is not part of an identifier.
fn numeric_variable(text: &str) -> Option<(Variable, &str)> {
    for (name, variable) in [("$count", Variable::Count), ("$status", Variable::Status)] {
        if let Some(rest) = text.strip_prefix(name)
            && !rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        {
            return Some((variable, rest));
        }
    }
    None
}

impl Expectation {
    /// The expression as written (trimmed), for messages.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether any alternative matches the subject.
    pub fn matches(&self, subject: &Subject<'_>) -> bool {
        self.alternatives.iter().any(|alt| match alt {
            Alternative::Text(text) => {
                subject.text.contains(text.as_str())
                    || (subject.is_http
                        && subject.status.is_some_and(|s| text.parse::<i64>() == Ok(s)))
            }
            Alternative::Regex(regex) => regex.is_match(subject.text),
            Alternative::Compare {
                variable,
                op,
                value,
            } => {
                let left = match variable {
                    Variable::Count => Some(i64::try_from(subject.lines).unwrap_or(i64::MAX)),
                    Variable::Status => subject.status,
                };
                left.is_some_and(|left| op.apply(left, *value))
            }
        })
    }

    /// Whether the expression tests `$status`, which waives the default status rule.
    pub fn tests_status(&self) -> bool {
        self.alternatives.iter().any(|alt| {
            matches!(
                alt,
                Alternative::Compare {
                    variable: Variable::Status,
                    ..
                }
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(text: &str) -> Subject<'_> {
        let lines = text.lines().filter(|l| !l.trim().is_empty()).count() as u64;
        Subject {
            text,
            lines,
            status: Some(0),
            is_http: false,
        }
    }

    fn http(status: i64, body: &str) -> Subject<'_> {
        Subject {
            status: Some(status),
            is_http: true,
            ..cmd(body)
        }
    }

    fn holds(expect: &str, subject: Subject<'_>) -> bool {
        parse_expectation(expect).unwrap().matches(&subject)
    }

    #[test]
    fn text_is_a_substring_match() {
        assert!(holds("healthy", cmd("status: healthy\n")));
        assert!(!holds("healthy", cmd("status: Healthy\n")));
    }

    #[test]
    fn alternatives_are_trimmed_and_any_matches() {
        assert!(holds("OK | ready ", cmd("ready")));
        assert!(holds("OK|ready", cmd("all OK")));
        assert!(!holds("OK | ready", cmd("down")));
    }

    #[test]
    fn escaped_pipe_is_literal() {
        assert!(holds(r"a\|b", cmd("x a|b y")));
        assert!(!holds(r"a\|b", cmd("a")));
    }

    #[test]
    fn regex_takes_the_rest_of_the_expression() {
        assert!(holds(r"regex:^v\d+\.\d+", cmd("v1.25\n")));
        assert!(!holds(r"regex:^v\d+\.\d+", cmd("version v1.25")));
        // `|` inside the regex is alternation, not a new alternative.
        assert!(holds("nope|regex:^(a|b)$", cmd("b")));
        assert!(holds("regex: foo|bar ", cmd("xbar")));
    }

    #[test]
    fn count_compares_non_blank_lines() {
        let three = cmd("a\n\nb\n  \nc\n");
        assert!(holds("$count > 2", three));
        assert!(holds("$count>=3", three));
        assert!(holds("$count == 3", three));
        assert!(!holds("$count < 3", three));
        assert!(holds("$count <= 3", three));
        assert!(holds("$count != 4", three));
        assert!(holds("$count == 0", cmd("\n \n")));
    }

    #[test]
    fn status_is_http_status_or_exit_code() {
        assert!(holds("$status == 404", http(404, "")));
        assert!(!holds("$status == 404", http(200, "")));
        assert!(holds(
            "$status != 0",
            Subject {
                status: Some(1),
                ..cmd("")
            }
        ));
        // A command killed by a signal has no exit code: no numeric test on it holds.
        assert!(!holds(
            "$status != 0",
            Subject {
                status: None,
                ..cmd("")
            }
        ));
    }

    #[test]
    fn http_text_matches_status_code_or_body() {
        assert!(holds("200|204", http(204, "")));
        assert!(!holds("200|204", http(500, "")));
        assert!(holds("200|204", http(500, "code 200 upstream")));
        // For commands a number is only text.
        assert!(!holds("0", cmd("ok")));
    }

    #[test]
    fn dollar_text_is_plain_text() {
        assert!(holds("$5.00", cmd("price: $5.00")));
        assert!(holds("$counter", cmd("$counter=1")));
    }

    #[test]
    fn tests_status_detects_status_tests() {
        assert!(parse_expectation("ok|$status == 1").unwrap().tests_status());
        assert!(!parse_expectation("ok|$count > 1").unwrap().tests_status());
    }

    #[test]
    fn malformed_expressions_are_rejected() {
        for (bad, needle) in [
            ("", "empty"),
            ("   ", "empty"),
            ("a||b", "empty alternative"),
            ("a|", "empty alternative"),
            ("regex:", "needs a pattern"),
            ("regex:(unclosed", "invalid regex"),
            ("ok|regex:[z-a]", "invalid regex"),
            ("$count >> 2", "malformed numeric test"),
            ("$count > two", "malformed numeric test"),
            ("$count", "malformed numeric test"),
            ("$status = 200", "malformed numeric test"),
        ] {
            let err = parse_expectation(bad).unwrap_err();
            assert!(err.contains(needle), "{bad:?}: {err}");
            assert!(!err.contains('\n'), "{bad:?}: one line expected: {err}");
        }
    }
}
