//! Fuzz input → spec values: the bytes split at NUL, each part read as (lossy) UTF-8, as a
//! Kubernetes string field would arrive. A field past the end is absent, which lets a short
//! input leave optional spec fields out.

/// The NUL-separated fields of one fuzz input.
pub struct Fields {
    parts: Vec<String>,
}

impl Fields {
    pub fn new(data: &[u8]) -> Self {
        Fields {
            parts: data
                .split(|b| *b == 0)
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect(),
        }
    }

    /// Field `i`, or "" when absent.
    pub fn text(&self, i: usize) -> &str {
        self.opt(i).unwrap_or("")
    }

    /// Field `i`, `None` when the input has fewer fields (an optional spec field left out).
    pub fn opt(&self, i: usize) -> Option<&str> {
        self.parts.get(i).map(String::as_str)
    }

    /// Field `i` as owned text when present.
    pub fn owned(&self, i: usize) -> Option<String> {
        self.opt(i).map(str::to_owned)
    }

    /// Byte `j` of field `i`, 0 when absent: selectors for enums and flags.
    pub fn byte(&self, i: usize, j: usize) -> u8 {
        self.text(i).as_bytes().get(j).copied().unwrap_or(0)
    }

    /// One of `n` choices from byte `j` of field `i`: `'0'` is the first, `'1'` the second…,
    /// so seeds stay readable; any other byte still picks one.
    pub fn choice(&self, i: usize, j: usize, n: usize) -> usize {
        usize::from(self.byte(i, j).wrapping_sub(b'0')) % n
    }

    /// Field `i` as `key<sep>value` lines, for headers, environment variables and the like.
    pub fn pairs(&self, i: usize, sep: char) -> Vec<(String, String)> {
        self.text(i)
            .lines()
            .filter_map(|line| line.split_once(sep))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_split_at_nul_and_absent_ones_are_none() {
        let f = Fields::new(b"a\0\0b: c\nd");
        assert_eq!(f.text(0), "a");
        assert_eq!(f.opt(1), Some(""));
        assert_eq!(f.pairs(2, ':'), vec![("b".to_owned(), " c".to_owned())]);
        assert_eq!(f.opt(3), None);
        assert_eq!(f.byte(0, 0), b'a');
        assert_eq!(f.byte(5, 0), 0);
        assert_eq!(Fields::new(b"03").choice(0, 1, 5), 3);
    }
}
