//! Compiled text comparisons shared by `outputValidation` and `httpValidation`: the
//! `outputMatch` modes, the success/failure criteria, and header value checks.
//!
//! Compiling here (not at match time) is what lets a bad regex become an `InvalidSpec` before
//! anything runs.

use regex::Regex;

use crate::request::{BodyMatch, OutputMatch};
use crate::user_regex::user_regex;

/// One comparison of an output with an expected text.
#[derive(Clone, Debug)]
pub(crate) struct TextMatcher {
    mode: Mode,
    case_sensitive: bool,
}

#[derive(Clone, Debug)]
enum Mode {
    /// The expected text, already lowercased when the match is case-insensitive.
    Contains(String),
    Exact(String),
    StartsWith(String),
    EndsWith(String),
    Regex(Regex),
}

impl TextMatcher {
    /// Compiles `expected` for `how`; the error is a one-line reason without a field path.
    pub(crate) fn new(
        expected: &str,
        how: OutputMatch,
        case_sensitive: bool,
    ) -> Result<Self, String> {
        let text = || {
            if case_sensitive {
                expected.to_owned()
            } else {
                expected.to_lowercase()
            }
        };
        let mode = match how {
            OutputMatch::Contains => Mode::Contains(text()),
            OutputMatch::Exact => Mode::Exact(text()),
            OutputMatch::StartsWith => Mode::StartsWith(text()),
            OutputMatch::EndsWith => Mode::EndsWith(text()),
            OutputMatch::Regex => Mode::Regex(user_regex(expected, case_sensitive)?),
        };
        Ok(TextMatcher {
            mode,
            case_sensitive,
        })
    }

    /// The body match of `httpValidation` is the same comparison with fewer modes.
    pub(crate) fn for_body(
        expected: &str,
        how: BodyMatch,
        case_sensitive: bool,
    ) -> Result<Self, String> {
        let how = match how {
            BodyMatch::Contains => OutputMatch::Contains,
            BodyMatch::Exact => OutputMatch::Exact,
            BodyMatch::Regex => OutputMatch::Regex,
        };
        Self::new(expected, how, case_sensitive)
    }

    pub(crate) fn matches(&self, output: &str) -> bool {
        if let Mode::Regex(regex) = &self.mode {
            return regex.is_match(output);
        }
        let lowered;
        let output = if self.case_sensitive {
            output
        } else {
            lowered = output.to_lowercase();
            &lowered
        };
        // `echo` ends its output with a line break nobody writes in an expected value.
        let trimmed = output.trim_end_matches(['\n', '\r']);
        match &self.mode {
            Mode::Contains(text) => output.contains(text.as_str()),
            Mode::Exact(text) => trimmed == text,
            Mode::StartsWith(text) => output.starts_with(text.as_str()),
            Mode::EndsWith(text) => trimmed.ends_with(text.as_str()),
            Mode::Regex(_) => unreachable!("handled above"),
        }
    }

    /// How a failure message describes this comparison, e.g. `contain "ok"`.
    pub(crate) fn describe(&self) -> String {
        let case = if self.case_sensitive {
            ""
        } else {
            " (ignoring case)"
        };
        match &self.mode {
            Mode::Contains(t) => format!("contain {}{case}", quote(t)),
            Mode::Exact(t) => format!("equal {}{case}", quote(t)),
            Mode::StartsWith(t) => format!("start with {}{case}", quote(t)),
            Mode::EndsWith(t) => format!("end with {}{case}", quote(t)),
            Mode::Regex(r) => format!("match regex {}{case}", quote(r.as_str())),
        }
    }
}

/// `successCriteria` / `failureCriteria`: `empty`, `notEmpty`, `contains:<text>`, `regex:<p>`.
#[derive(Clone, Debug)]
pub(crate) enum Criterion {
    Empty,
    NotEmpty,
    Matches(TextMatcher),
}

impl Criterion {
    pub(crate) fn parse(source: &str, case_sensitive: bool) -> Result<Self, String> {
        let trimmed = source.trim();
        if let Some(text) = trimmed.strip_prefix("contains:") {
            if text.is_empty() {
                return Err("`contains:` needs a text".to_owned());
            }
            return TextMatcher::new(text, OutputMatch::Contains, case_sensitive)
                .map(Criterion::Matches);
        }
        if let Some(pattern) = trimmed.strip_prefix("regex:") {
            if pattern.trim().is_empty() {
                return Err("`regex:` needs a pattern".to_owned());
            }
            return TextMatcher::new(pattern.trim(), OutputMatch::Regex, case_sensitive)
                .map(Criterion::Matches);
        }
        match trimmed {
            "empty" => Ok(Criterion::Empty),
            "notEmpty" => Ok(Criterion::NotEmpty),
            _ => Err(format!(
                "unknown criterion {trimmed:?}: expected `empty`, `notEmpty`, \
                 `contains:<text>` or `regex:<pattern>`"
            )),
        }
    }

    /// Blank output (only whitespace) counts as empty: a lone trailing newline is not content.
    pub(crate) fn holds(&self, output: &str) -> bool {
        match self {
            Criterion::Empty => output.trim().is_empty(),
            Criterion::NotEmpty => !output.trim().is_empty(),
            Criterion::Matches(m) => m.matches(output),
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Criterion::Empty => "be empty".to_owned(),
            Criterion::NotEmpty => "not be empty".to_owned(),
            Criterion::Matches(m) => m.describe(),
        }
    }
}

/// A response header check: the exact value, or `regex:<pattern>`.
#[derive(Clone, Debug)]
pub(crate) enum ValueMatcher {
    Exact(String),
    Regex(Regex),
}

impl ValueMatcher {
    pub(crate) fn parse(source: &str) -> Result<Self, String> {
        match source.strip_prefix("regex:") {
            Some(pattern) => user_regex(pattern, true).map(ValueMatcher::Regex),
            None => Ok(ValueMatcher::Exact(source.to_owned())),
        }
    }

    pub(crate) fn matches(&self, value: &str) -> bool {
        match self {
            ValueMatcher::Exact(expected) => value == expected,
            ValueMatcher::Regex(regex) => regex.is_match(value),
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            ValueMatcher::Exact(v) => quote(v),
            ValueMatcher::Regex(r) => format!("matching regex {}", quote(r.as_str())),
        }
    }
}

/// Quotes an expected value for a message, shortened so a 64 KiB expectation cannot flood it.
pub(crate) fn quote(text: &str) -> String {
    const MAX: usize = 80;
    if text.len() <= MAX {
        return format!("{text:?}");
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(expected: &str, how: OutputMatch, case: bool) -> TextMatcher {
        TextMatcher::new(expected, how, case).unwrap()
    }

    #[test]
    fn every_output_match_mode() {
        let out = "Hello World\n";
        assert!(m("lo Wo", OutputMatch::Contains, true).matches(out));
        assert!(!m("lo wo", OutputMatch::Contains, true).matches(out));
        assert!(m("Hello World", OutputMatch::Exact, true).matches(out));
        assert!(!m("Hello", OutputMatch::Exact, true).matches(out));
        assert!(m("Hello", OutputMatch::StartsWith, true).matches(out));
        assert!(!m("World", OutputMatch::StartsWith, true).matches(out));
        assert!(m("World", OutputMatch::EndsWith, true).matches(out));
        assert!(!m("Hello", OutputMatch::EndsWith, true).matches(out));
        assert!(m(r"^Hello\s+W", OutputMatch::Regex, true).matches(out));
        assert!(!m(r"^World", OutputMatch::Regex, true).matches(out));
    }

    #[test]
    fn case_insensitive_lowercases_both_sides_and_flags_regexes() {
        let out = "Hello World";
        assert!(m("hello world", OutputMatch::Exact, false).matches(out));
        assert!(m("WORLD", OutputMatch::EndsWith, false).matches(out));
        assert!(m("HELLO", OutputMatch::StartsWith, false).matches(out));
        assert!(m("o w", OutputMatch::Contains, false).matches(out));
        assert!(m("^hello", OutputMatch::Regex, false).matches(out));
        assert!(!m("^hello", OutputMatch::Regex, true).matches(out));
    }

    #[test]
    fn body_match_maps_to_the_same_modes() {
        let exact = TextMatcher::for_body("ok", BodyMatch::Exact, true).unwrap();
        assert!(exact.matches("ok\n"));
        assert!(!exact.matches("ok!"));
        let regex = TextMatcher::for_body("^o.$", BodyMatch::Regex, true).unwrap();
        assert!(regex.matches("ok"));
    }

    #[test]
    fn criteria_grammar() {
        let parse = |s| Criterion::parse(s, true).unwrap();
        assert!(parse("empty").holds(" \n"));
        assert!(!parse("empty").holds("x"));
        assert!(parse("notEmpty").holds("x"));
        assert!(!parse("notEmpty").holds("\n"));
        assert!(parse("contains:ERROR").holds("an ERROR here"));
        assert!(!parse("contains:ERROR").holds("an error here"));
        assert!(
            Criterion::parse("contains:ERROR", false)
                .unwrap()
                .holds("error")
        );
        assert!(parse("regex:^\\d+$").holds("42"));
        for (bad, needle) in [
            ("nonempty", "unknown criterion"),
            ("contains:", "needs a text"),
            ("regex:", "needs a pattern"),
            ("regex:(", "invalid regex"),
        ] {
            let err = Criterion::parse(bad, true).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn header_values_exact_or_regex() {
        let exact = ValueMatcher::parse("application/json").unwrap();
        assert!(exact.matches("application/json"));
        assert!(!exact.matches("application/json; charset=utf-8"));
        let regex = ValueMatcher::parse("regex:^application/json").unwrap();
        assert!(regex.matches("application/json; charset=utf-8"));
        assert!(ValueMatcher::parse("regex:[").is_err());
    }

    #[test]
    fn descriptions_quote_and_shorten() {
        assert_eq!(
            m("ok", OutputMatch::Contains, false).describe(),
            "contain \"ok\" (ignoring case)"
        );
        let long = "x".repeat(200);
        assert!(quote(&long).len() < 100);
    }
}
