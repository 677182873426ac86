//! Secret values never leave the engine: outputs and messages pass through a [`Redactor`].

use std::borrow::Cow;

/// What a redacted value is replaced with.
pub(crate) const MASK: &str = "***";

/// Replaces every configured secret value with `***`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Redactor {
    /// Longest first, so a secret that contains a shorter one is masked whole.
    values: Vec<String>,
}

impl Redactor {
    pub(crate) fn new(values: &[String]) -> Self {
        // Messages quote what they show (Rust and JSON escaping): a secret with a quote, a
        // backslash or a newline in it is masked in its escaped spellings too.
        let mut values: Vec<String> = values
            .iter()
            .filter(|v| !v.is_empty())
            .flat_map(|v| {
                let debug = format!("{v:?}");
                let json = serde_json::to_string(v).unwrap_or_default();
                [
                    v.clone(),
                    debug[1..debug.len() - 1].to_owned(),
                    json.get(1..json.len().saturating_sub(1))
                        .unwrap_or_default()
                        .to_owned(),
                ]
            })
            .filter(|v| !v.is_empty())
            .collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        Redactor { values }
    }

    /// Length in bytes of the longest secret (0 without secrets).
    pub(crate) fn longest(&self) -> usize {
        self.values.first().map_or(0, String::len)
    }

    /// Length of the longest end of `text` that is the start (not the whole) of a secret.
    fn trailing_fragment(&self, text: &str) -> usize {
        self.values
            .iter()
            .filter_map(|value| {
                (1..value.len())
                    .rev()
                    .find(|&k| value.is_char_boundary(k) && text.ends_with(&value[..k]))
            })
            .max()
            .unwrap_or(0)
    }

    /// [`Redactor::apply`] for a message: also masks the start of a secret that a quoted value
    /// was cut in the middle of (`quote` ends a cut value with `"…`).
    pub(crate) fn apply_to_message(&self, text: &str) -> String {
        const CUT: &str = "\"…";
        let masked = self.apply(text);
        if !masked.contains(CUT) {
            return masked.into_owned();
        }
        let mut out = String::with_capacity(masked.len());
        let mut pieces = masked.split(CUT).peekable();
        while let Some(piece) = pieces.next() {
            if pieces.peek().is_none() {
                out.push_str(piece);
                break;
            }
            let fragment = self.trailing_fragment(piece);
            out.push_str(&piece[..piece.len() - fragment]);
            if fragment > 0 {
                out.push_str(MASK);
            }
            out.push_str(CUT);
        }
        out
    }

    pub(crate) fn apply<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for value in &self.values {
            if out.contains(value.as_str()) {
                out = Cow::Owned(out.replace(value.as_str(), MASK));
            }
        }
        out
    }
}

/// The text a user sees: redacted, then cut to `cap` bytes with a marker that says how much is
/// missing. `omitted` counts bytes that were never captured.
///
/// When the capture was cut, it may end with the start of a secret whose rest was never read,
/// which redaction cannot recognise; such a trailing fragment is dropped too.
pub(crate) fn report(text: &str, omitted: u64, cap: usize, redactor: &Redactor) -> String {
    let redacted = redactor.apply(text);
    let mut omitted = omitted;
    let mut shown: &str = &redacted;
    if omitted > 0 {
        let fragment = redactor.trailing_fragment(shown);
        shown = &shown[..shown.len() - fragment];
        omitted += fragment as u64;
    }
    if shown.len() <= cap && omitted == 0 {
        return shown.to_owned();
    }
    let cut = floor_char_boundary(shown, cap.min(shown.len()));
    let dropped = (shown.len() - cut) as u64 + omitted;
    format!("{}\n…[truncated {dropped} bytes]", &shown[..cut])
}

/// The largest char boundary not after `index` (str::floor_char_boundary is not stable yet).
pub(crate) fn floor_char_boundary(text: &str, index: usize) -> usize {
    let mut i = index.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor(values: &[&str]) -> Redactor {
        Redactor::new(&values.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn masks_every_value_longest_first() {
        let r = redactor(&["abc", "abcdef", ""]);
        assert_eq!(r.apply("x abcdef y abc z"), "x *** y *** z");
        assert_eq!(r.longest(), 6);
        assert!(matches!(r.apply("clean"), Cow::Borrowed(_)));
    }

    #[test]
    fn escaped_spellings_of_a_secret_are_masked_too() {
        let r = redactor(&["pa\"ss\\word\n"]);
        let debug = format!("header is {:?}", "pa\"ss\\word\n");
        assert_eq!(r.apply(&debug), "header is \"***\"");
        let json = serde_json::json!({"key": "pa\"ss\\word\n"}).to_string();
        assert_eq!(r.apply(&json), r#"{"key":"***"}"#);
    }

    #[test]
    fn a_secret_cut_by_a_quote_does_not_leak_its_start() {
        let r = redactor(&["s3cr3t-value"]);
        let message = format!(
            "header x is {}, expected \"y\"",
            crate::text_match::quote(&format!("{}s3cr3t-value", "a".repeat(75)))
        );
        let masked = r.apply_to_message(&message);
        assert!(!masked.contains("s3cr"), "{masked}");
        assert!(masked.contains("***\"…, expected"), "{masked}");
        // Without a cut, a value that merely ends like a secret's start is kept.
        assert_eq!(r.apply_to_message("is \"s3\""), "is \"s3\"");
    }

    #[test]
    fn report_truncates_with_a_marker() {
        let r = Redactor::default();
        assert_eq!(report("short", 0, 10, &r), "short");
        assert_eq!(
            report("0123456789abc", 0, 10, &r),
            "0123456789\n…[truncated 3 bytes]"
        );
        assert_eq!(report("0123", 96, 10, &r), "0123\n…[truncated 96 bytes]");
    }

    #[test]
    fn report_cuts_on_char_boundaries() {
        let out = report("ééééé", 0, 3, &Redactor::default());
        assert_eq!(out, "é\n…[truncated 8 bytes]");
    }

    #[test]
    fn report_redacts_before_cutting() {
        let r = redactor(&["s3cr3t-value"]);
        let out = report("token=s3cr3t-value and more", 0, 12, &r);
        assert_eq!(out, "token=*** an\n…[truncated 6 bytes]");
        assert!(!out.contains("s3cr"));
    }

    #[test]
    fn a_secret_cut_by_the_capture_does_not_leak_its_start() {
        let r = redactor(&["s3cr3t-value"]);
        // The capture stopped in the middle of the second occurrence.
        let out = report("s3cr3t-value log: s3cr3t-va", 100, 1000, &r);
        assert_eq!(out, "*** log: \n…[truncated 109 bytes]");
        // Without a cut capture, a text that merely ends like a secret's start is kept.
        assert_eq!(report("log: s3", 0, 1000, &r), "log: s3");
    }
}
