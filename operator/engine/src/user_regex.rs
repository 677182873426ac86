//! The bound on a regex a user writes (in `expect`, `outputValidation` or `httpValidation`):
//! every such pattern compiles here, so admission, the controllers and `mcall run` refuse the
//! same ones with the same one-line message.

use regex::Regex;

/// The most a user's regex may compile to. The regex crate allows 10 MiB, which takes some
/// 60 ms to build (and as long to refuse past it: `.*{99999}`), and memory the operator
/// holds for every run of the task; fuzzing found such inputs. A check never needs that much:
/// `\w` is every Unicode word character, so `\w{100}` is over 1 MiB where `[A-Za-z0-9_]{100}`
/// is small.
pub const MAX_REGEX_BYTES: usize = 1 << 20;

/// A regex from a user's spec, bounded by [`MAX_REGEX_BYTES`]; the error is one line.
pub(crate) fn user_regex(pattern: &str, case_sensitive: bool) -> Result<Regex, String> {
    regex::RegexBuilder::new(pattern)
        .case_insensitive(!case_sensitive)
        .size_limit(MAX_REGEX_BYTES)
        .build()
        .map_err(|e| format!("invalid regex {pattern:?}: {}", one_line(&e)))
}

/// Regex errors span several lines (with a caret diagram); status messages want one.
fn one_line(err: &regex::Error) -> String {
    err.to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regex_compiling_past_one_mebibyte_is_refused_saying_so() {
        for pattern in [r"\w{100}", r".*{99999}", r"a{1000}{1000}"] {
            let error = crate::parse_expectation(&format!("regex:{pattern}")).unwrap_err();
            assert!(
                error.starts_with("invalid regex") && error.contains("size limit"),
                "{pattern}: {error}"
            );
            assert!(user_regex(pattern, false).is_err(), "{pattern}");
        }
        for pattern in [r"[A-Za-z0-9_]{100}", r".{1000}", r"(?i)error|fail|fatal"] {
            assert!(user_regex(pattern, true).is_ok(), "{pattern}");
        }
    }
}
