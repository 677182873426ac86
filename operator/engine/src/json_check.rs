//! `outputValidation.jsonPath` + `expectedJsonValue`: the output parsed as JSON, an RFC 9535
//! path evaluated with `serde_json_path`, and the first node compared with the expected value.

use serde_json::Value;
use serde_json_path::JsonPath;

use crate::text_match::quote;

#[derive(Clone, Debug)]
pub(crate) struct JsonCheck {
    path: JsonPath,
    source: String,
    expected: Option<Expected>,
}

#[derive(Clone, Debug)]
struct Expected {
    /// The expected value as JSON when it parses (`200`, `true`, `"ok"`, `{"a":1}`), else the
    /// text as a JSON string, so `expectedJsonValue: ok` works without inner quotes.
    value: Value,
    raw: String,
}

/// Parses an RFC 9535 JSONPath; the error is a one-line reason. Every JSONPath a user writes
/// goes through here: serde_json_path 0.7.2 (the latest) panics, `unreachable!("we do not use
/// streaming parsers")`, on a path that ends inside a `\u` escape (its string parser reads the
/// escape's next character with nom's streaming `one_of`, which asks for more input). Such a
/// path ends inside a string, so it is invalid anyway: it is refused before the parser sees it.
/// Found by the `template` fuzz target.
pub fn parse_json_path(path: &str) -> Result<JsonPath, String> {
    if ends_inside_unicode_escape(path) {
        return Err(format!(
            "invalid JSONPath {path:?}: it ends inside a \\u escape"
        ));
    }
    let depth = nesting(path);
    if depth > MAX_NESTING {
        return Err(format!(
            "invalid JSONPath {path:?}: brackets and parentheses nest {depth} deep, at most \
             {MAX_NESTING}"
        ));
    }
    JsonPath::parse(path)
        .map_err(|e| format!("invalid JSONPath {path:?}: {}", e.to_string().trim()))
}

/// How deep `(` and `[` may nest in a JSONPath. The parser descends recursively, many frames a
/// level: about 900 levels overflowed an 8 MiB stack (an abort, not a panic; found by the
/// `template` fuzz target), and the operator's threads have less. Real paths nest 2 or 3 deep.
pub const MAX_NESTING: usize = 16;

/// The deepest nesting of `(` and `[` outside string literals.
fn nesting(path: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(_), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(' | '[') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (None, ')' | ']') => depth = depth.saturating_sub(1),
            (None, _) => {}
        }
    }
    deepest
}

/// Whether the parser would run out of input inside a `\u` escape: the path ends with `\u`,
/// or `\uD`/`\ud` (a surrogate's first digit). Other unfinished escapes are plain parse errors.
fn ends_inside_unicode_escape(path: &str) -> bool {
    path.rfind("\\u")
        .is_some_and(|at| matches!(&path[at + 2..], "" | "D" | "d"))
}

impl JsonCheck {
    /// The error is a one-line reason for an invalid path.
    pub(crate) fn new(path: &str, expected: Option<&str>) -> Result<Self, String> {
        let parsed = parse_json_path(path.trim())?;
        let expected = expected.map(|raw| Expected {
            value: serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned())),
            raw: raw.to_owned(),
        });
        Ok(JsonCheck {
            path: parsed,
            source: path.trim().to_owned(),
            expected,
        })
    }

    /// `Err` carries the reason the check failed. Without an expected value the path only has
    /// to match something.
    pub(crate) fn check(&self, output: &str) -> Result<(), String> {
        let document: Value = serde_json::from_str(output)
            .map_err(|e| format!("output is not JSON ({e}), so jsonPath cannot be checked"))?;
        let nodes = self.path.query(&document);
        let Some(node) = nodes.first() else {
            return Err(format!("jsonPath {} matched nothing", quote(&self.source)));
        };
        let Some(expected) = &self.expected else {
            return Ok(());
        };
        if json_equal(node, &expected.value)
            // A string node equals the raw text too, so `200` matches "200" as well as 200.
            || node.as_str() == Some(expected.raw.as_str())
        {
            Ok(())
        } else {
            let found = node.to_string();
            Err(format!(
                "jsonPath {} is {}, expected {}",
                quote(&self.source),
                quote(&found),
                quote(&expected.raw)
            ))
        }
    }
}

/// JSON equality where numbers compare by value: serde_json keeps `1` and `1.0` apart.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(k, x)| ys.get(k).is_some_and(|y| json_equal(x, y)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_ending_inside_a_unicode_escape_is_refused_without_a_panic() {
        for path in [
            r#"$["\u"#,
            r#"$['\uD"#,
            r#"$['a\ud"#,
            r#"$["\uD83D\u"#,
            r#"$["\uD83D\uD"#,
            r#"$[?@.a=="\u"#,
        ] {
            let error = parse_json_path(path).unwrap_err();
            assert!(
                error.contains("ends inside a \\u escape"),
                "{path}: {error}"
            );
        }
        // Unfinished in other ways, the parser's own error; finished, a path.
        for path in [r#"$["\uD8"#, r#"$["\u00"#, r#"$["\"#] {
            let error = parse_json_path(path).unwrap_err();
            assert!(!error.contains("escape"), "{path}: {error}");
        }
        parse_json_path(r#"$["\u00e9\uD83D\uDE00"]"#).unwrap();
    }

    #[test]
    fn a_path_nested_too_deep_is_refused_and_the_deepest_allowed_parses_on_a_small_stack() {
        let nested = |depth: usize| format!("$[?{}@.a{}]", "(".repeat(depth), ")".repeat(depth));
        let error = parse_json_path(&nested(MAX_NESTING)).unwrap_err();
        assert!(error.contains("nest 17 deep, at most 16"), "{error}");
        assert!(parse_json_path(&format!("$[?{}", "(".repeat(5000))).is_err());
        // Brackets and parentheses inside strings do not count.
        parse_json_path(&format!("$['{}']", "([".repeat(100))).unwrap();
        // At the limit (the filter's `[` is one level), with room to spare on a 256 KiB stack,
        // an eighth of a tokio worker's.
        let deepest = nested(MAX_NESTING - 1);
        let parsed = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || parse_json_path(&deepest).map(|_| ()))
            .unwrap()
            .join()
            .unwrap();
        parsed.unwrap();
    }

    const DOC: &str = r#"{"status":"ok","code":200,"ratio":1.0,"items":[{"id":1},{"id":2}],
        "nested":{"a":[1,2]},"flag":true}"#;

    fn check(path: &str, expected: Option<&str>) -> Result<(), String> {
        JsonCheck::new(path, expected).unwrap().check(DOC)
    }

    #[test]
    fn compares_the_first_node() {
        assert_eq!(check("$.status", Some("ok")), Ok(()));
        assert_eq!(check("$.status", Some("\"ok\"")), Ok(()));
        assert_eq!(check("$.code", Some("200")), Ok(()));
        assert_eq!(check("$.ratio", Some("1")), Ok(()));
        assert_eq!(check("$.flag", Some("true")), Ok(()));
        assert_eq!(check("$.items[*].id", Some("1")), Ok(()));
        assert_eq!(check("$.nested", Some(r#"{"a":[1,2]}"#)), Ok(()));
        assert_eq!(check("$.items[?@.id == 2].id", Some("2")), Ok(()));
        let err = check("$.status", Some("down")).unwrap_err();
        assert!(
            err.contains("is \"\\\"ok\\\"\", expected \"down\""),
            "{err}"
        );
        assert!(check("$.code", Some("201")).is_err());
    }

    #[test]
    fn string_nodes_match_numeric_text() {
        let check = JsonCheck::new("$.v", Some("200")).unwrap();
        assert_eq!(check.check(r#"{"v":"200"}"#), Ok(()));
    }

    #[test]
    fn without_expected_value_the_path_must_exist() {
        assert_eq!(check("$.items", None), Ok(()));
        let err = check("$.missing", None).unwrap_err();
        assert!(err.contains("matched nothing"), "{err}");
    }

    #[test]
    fn non_json_output_fails_clearly() {
        let err = JsonCheck::new("$.a", None)
            .unwrap()
            .check("not json")
            .unwrap_err();
        assert!(err.starts_with("output is not JSON"), "{err}");
    }

    #[test]
    fn invalid_paths_are_rejected() {
        for bad in ["status", "$.[", "$..", "$[?@.a ==]"] {
            let err = JsonCheck::new(bad, None).unwrap_err();
            assert!(err.starts_with("invalid JSONPath"), "{bad}: {err}");
        }
    }
}
