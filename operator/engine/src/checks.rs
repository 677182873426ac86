//! `outputValidation` and `httpValidation`, compiled once per plan and evaluated per result.
//!
//! Each evaluation returns `Err(reason)` with a sentence fragment that the judge puts into the
//! input's error message ("output must contain \"ok\"").

use reqwest::header::{HeaderMap, HeaderName};

use crate::invalid::InvalidSpec;
use crate::json_check::JsonCheck;
use crate::request::{HttpOptions, OutputMatch, OutputOptions};
use crate::text_match::{Criterion, TextMatcher, ValueMatcher, quote};

const OV: &str = "spec.outputValidation";
const HV: &str = "spec.httpValidation";

/// The compiled `outputValidation`; every part is optional.
#[derive(Clone, Debug, Default)]
pub(crate) struct OutputCheck {
    expected: Option<TextMatcher>,
    success: Option<Criterion>,
    failure: Option<Criterion>,
    expected_failure: Option<TextMatcher>,
    json: Option<JsonCheck>,
}

impl OutputCheck {
    pub(crate) fn compile(options: Option<&OutputOptions>) -> Result<Self, InvalidSpec> {
        let Some(o) = options else {
            return Ok(OutputCheck::default());
        };
        let case = o.case_sensitive;
        let expected = o
            .expected_output
            .as_deref()
            .map(|e| TextMatcher::new(e, o.output_match, case))
            .transpose()
            .map_err(|m| InvalidSpec::new(format!("{OV}.expectedOutput"), m))?;
        let success = o
            .success_criteria
            .as_deref()
            .map(|c| Criterion::parse(c, case))
            .transpose()
            .map_err(|m| InvalidSpec::new(format!("{OV}.successCriteria"), m))?;
        let failure = o
            .failure_criteria
            .as_deref()
            .map(|c| Criterion::parse(c, case))
            .transpose()
            .map_err(|m| InvalidSpec::new(format!("{OV}.failureCriteria"), m))?;
        let expected_failure = o
            .expected_failure_output
            .as_deref()
            .map(|e| TextMatcher::new(e, OutputMatch::Contains, case))
            .transpose()
            .map_err(|m| InvalidSpec::new(format!("{OV}.expectedFailureOutput"), m))?;
        let json = match (&o.json_path, &o.expected_json_value) {
            (Some(path), expected) => Some(
                JsonCheck::new(path, expected.as_deref())
                    .map_err(|m| InvalidSpec::new(format!("{OV}.jsonPath"), m))?,
            ),
            (None, Some(_)) => {
                return Err(InvalidSpec::new(
                    format!("{OV}.expectedJsonValue"),
                    "needs outputValidation.jsonPath to say which value to compare",
                ));
            }
            (None, None) => None,
        };
        Ok(OutputCheck {
            expected,
            success,
            failure,
            expected_failure,
            json,
        })
    }

    /// Whether a failed run is the failure the spec expects (`expectedFailureOutput`).
    pub(crate) fn is_expected_failure(&self, output: &str) -> bool {
        self.expected_failure
            .as_ref()
            .is_some_and(|m| m.matches(output))
    }

    /// The reason of an unexpected failure when `expectedFailureOutput` was set, for the message.
    pub(crate) fn expected_failure_hint(&self) -> Option<String> {
        self.expected_failure
            .as_ref()
            .map(|m| format!("an expected failure's output must {}", m.describe()))
    }

    /// failureCriteria first (it overrides everything), then successCriteria, expectedOutput and
    /// the JSONPath check.
    pub(crate) fn check(&self, output: &str) -> Result<(), String> {
        if let Some(failure) = &self.failure
            && failure.holds(output)
        {
            return Err(format!(
                "output matches failureCriteria (must not {})",
                failure.describe()
            ));
        }
        if let Some(success) = &self.success
            && !success.holds(output)
        {
            return Err(format!(
                "output does not meet successCriteria (must {})",
                success.describe()
            ));
        }
        if let Some(expected) = &self.expected
            && !expected.matches(output)
        {
            return Err(format!("output must {}", expected.describe()));
        }
        if let Some(json) = &self.json {
            json.check(output)?;
        }
        Ok(())
    }
}

/// The compiled response checks of `httpValidation`.
#[derive(Clone, Debug, Default)]
pub(crate) struct HttpCheck {
    status_codes: Vec<u16>,
    body: Option<TextMatcher>,
    headers: Vec<(HeaderName, ValueMatcher)>,
}

impl HttpCheck {
    /// `case_sensitive` is `outputValidation.caseSensitive`: it governs every text comparison.
    pub(crate) fn compile(http: &HttpOptions, case_sensitive: bool) -> Result<Self, InvalidSpec> {
        if let Some(bad) = http
            .expected_status_codes
            .iter()
            .find(|c| !(100..=599).contains(*c))
        {
            return Err(InvalidSpec::new(
                format!("{HV}.expectedStatusCodes"),
                format!("{bad} is not an HTTP status code (100-599)"),
            ));
        }
        let body = http
            .expected_response_body
            .as_deref()
            .map(|b| TextMatcher::for_body(b, http.body_match, case_sensitive))
            .transpose()
            .map_err(|m| InvalidSpec::new(format!("{HV}.expectedResponseBody"), m))?;
        let mut headers = Vec::with_capacity(http.response_headers.len());
        for (name, value) in &http.response_headers {
            let field = format!("{HV}.responseHeaders.{name}");
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| InvalidSpec::new(&field, "not a valid HTTP header name"))?;
            let matcher = ValueMatcher::parse(value).map_err(|m| InvalidSpec::new(&field, m))?;
            headers.push((header, matcher));
        }
        Ok(HttpCheck {
            status_codes: http.expected_status_codes.clone(),
            body,
            headers,
        })
    }

    /// Explicit `expectedStatusCodes` always apply; the default (any 2xx) is waived when
    /// `expect` tests `$status` itself.
    pub(crate) fn check_status(&self, status: u16, default_waived: bool) -> Result<(), String> {
        if self.status_codes.is_empty() {
            if default_waived || (200..300).contains(&status) {
                return Ok(());
            }
            return Err(format!("status {status}, expected any 2xx"));
        }
        if self.status_codes.contains(&status) {
            return Ok(());
        }
        let list = self
            .status_codes
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        Err(format!("status {status}, expected one of {list}"))
    }

    pub(crate) fn check_headers(&self, headers: &HeaderMap) -> Result<(), String> {
        for (name, matcher) in &self.headers {
            let values: Vec<&str> = headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap_or(""))
                .collect();
            if values.is_empty() {
                return Err(format!(
                    "response has no header {name}, expected {}",
                    matcher.describe()
                ));
            }
            // A repeated header passes when any of its values does.
            if !values.iter().any(|v| matcher.matches(v)) {
                return Err(format!(
                    "response header {name} is {}, expected {}",
                    quote(&values.join(", ")),
                    matcher.describe()
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn check_body(&self, body: &str) -> Result<(), String> {
        match &self.body {
            Some(m) if !m.matches(body) => Err(format!("response body must {}", m.describe())),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::BodyMatch;
    use reqwest::header::HeaderValue;

    fn output(f: impl FnOnce(&mut OutputOptions)) -> Result<OutputCheck, InvalidSpec> {
        let mut o = OutputOptions::default();
        f(&mut o);
        OutputCheck::compile(Some(&o))
    }

    #[test]
    fn failure_criteria_win_over_everything() {
        let c = output(|o| {
            o.failure_criteria = Some("contains:ERROR".into());
            o.expected_output = Some("done".into());
        })
        .unwrap();
        assert!(c.check("done").is_ok());
        let err = c.check("done with ERROR").unwrap_err();
        assert!(err.contains("failureCriteria"), "{err}");
    }

    #[test]
    fn success_criteria_and_expected_output() {
        let c = output(|o| {
            o.success_criteria = Some("notEmpty".into());
            o.expected_output = Some("READY".into());
            o.output_match = OutputMatch::EndsWith;
            o.case_sensitive = false;
        })
        .unwrap();
        assert!(c.check("system ready\n").is_ok());
        assert!(c.check("\n").unwrap_err().contains("successCriteria"));
        assert_eq!(
            c.check("ready?").unwrap_err(),
            "output must end with \"ready\" (ignoring case)"
        );
    }

    #[test]
    fn json_check_runs_last() {
        let c = output(|o| {
            o.json_path = Some("$.state".into());
            o.expected_json_value = Some("up".into());
        })
        .unwrap();
        assert!(c.check(r#"{"state":"up"}"#).is_ok());
        assert!(c.check(r#"{"state":"down"}"#).is_err());
    }

    #[test]
    fn expected_failure_output_is_a_contains_match() {
        let c = output(|o| o.expected_failure_output = Some("No such file".into())).unwrap();
        assert!(c.is_expected_failure("ls: x: No such file or directory"));
        assert!(!c.is_expected_failure("permission denied"));
        assert!(!OutputCheck::default().is_expected_failure("anything"));
    }

    #[test]
    fn invalid_output_validation_names_the_field() {
        type Case = (fn(&mut OutputOptions), &'static str);
        let cases: [Case; 5] = [
            (
                |o| {
                    o.expected_output = Some("(".into());
                    o.output_match = OutputMatch::Regex;
                },
                "spec.outputValidation.expectedOutput",
            ),
            (
                |o| o.success_criteria = Some("full".into()),
                "spec.outputValidation.successCriteria",
            ),
            (
                |o| o.failure_criteria = Some("regex:[".into()),
                "spec.outputValidation.failureCriteria",
            ),
            (
                |o| o.json_path = Some("$.[".into()),
                "spec.outputValidation.jsonPath",
            ),
            (
                |o| o.expected_json_value = Some("1".into()),
                "spec.outputValidation.expectedJsonValue",
            ),
        ];
        for (set, field) in cases {
            assert_eq!(output(set).unwrap_err().field, field);
        }
    }

    fn http(f: impl FnOnce(&mut HttpOptions)) -> Result<HttpCheck, InvalidSpec> {
        let mut h = HttpOptions::default();
        f(&mut h);
        HttpCheck::compile(&h, true)
    }

    #[test]
    fn status_defaults_to_2xx_unless_listed_or_waived() {
        let c = http(|_| {}).unwrap();
        assert!(c.check_status(204, false).is_ok());
        assert_eq!(
            c.check_status(503, false).unwrap_err(),
            "status 503, expected any 2xx"
        );
        assert!(c.check_status(404, true).is_ok());
        let c = http(|h| h.expected_status_codes = vec![200, 404]).unwrap();
        assert!(c.check_status(404, false).is_ok());
        assert_eq!(
            c.check_status(204, true).unwrap_err(),
            "status 204, expected one of 200, 404"
        );
    }

    #[test]
    fn headers_exact_or_regex_case_insensitive_names() {
        let c = http(|h| {
            h.response_headers
                .insert("Content-Type".into(), "regex:^application/json".into());
            h.response_headers.insert("x-version".into(), "2".into());
        })
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        headers.insert("x-version", HeaderValue::from_static("2"));
        assert!(c.check_headers(&headers).is_ok());
        headers.insert("x-version", HeaderValue::from_static("3"));
        assert_eq!(
            c.check_headers(&headers).unwrap_err(),
            "response header x-version is \"3\", expected \"2\""
        );
        headers.remove("x-version");
        assert!(
            c.check_headers(&headers)
                .unwrap_err()
                .contains("no header x-version")
        );
    }

    #[test]
    fn body_match_forms() {
        let c = http(|h| {
            h.expected_response_body = Some("^\\{\"ok\":true\\}$".into());
            h.body_match = BodyMatch::Regex;
        })
        .unwrap();
        assert!(c.check_body("{\"ok\":true}").is_ok());
        assert!(c.check_body("{\"ok\":false}").is_err());
        let c = HttpCheck::compile(
            &HttpOptions {
                expected_response_body: Some("HELLO".into()),
                ..HttpOptions::default()
            },
            false,
        )
        .unwrap();
        assert!(c.check_body("well hello there").is_ok());
    }

    #[test]
    fn invalid_http_validation_names_the_field() {
        let err = http(|h| h.expected_status_codes = vec![200, 999]).unwrap_err();
        assert_eq!(err.field, "spec.httpValidation.expectedStatusCodes");
        let err = http(|h| {
            h.expected_response_body = Some("(".into());
            h.body_match = BodyMatch::Regex;
        })
        .unwrap_err();
        assert_eq!(err.field, "spec.httpValidation.expectedResponseBody");
        let err = http(|h| {
            h.response_headers.insert("Bad Header".into(), "x".into());
        })
        .unwrap_err();
        assert_eq!(err.field, "spec.httpValidation.responseHeaders.Bad Header");
        let err = http(|h| {
            h.response_headers.insert("x-a".into(), "regex:(".into());
        })
        .unwrap_err();
        assert_eq!(err.field, "spec.httpValidation.responseHeaders.x-a");
    }
}
