//! A bounded output buffer: keeps the first `limit` bytes and only counts the rest, so a command
//! printing 10 MB (or an endless HTTP body) never sits in memory.

/// Output being collected from a process or a response body.
#[derive(Debug)]
pub(crate) struct Capture {
    kept: Vec<u8>,
    limit: usize,
    total: u64,
    lines: u64,
    line_has_content: bool,
}

/// What a command or a response body printed: the first bytes kept, the rest counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Captured {
    /// The kept bytes as text (invalid UTF-8 replaced).
    pub text: String,
    /// Bytes that arrived after the buffer was full.
    pub omitted: u64,
    /// Non-blank lines of the whole output, counted past the limit too (`$count` stays exact).
    pub lines: u64,
}

impl Captured {
    /// `bytes` as a capture keeping the first `keep` of them (lines are counted over all).
    pub fn of(bytes: &[u8], keep: usize) -> Captured {
        let mut capture = Capture::new(keep);
        capture.push(bytes);
        capture.finish()
    }
}

impl Capture {
    pub(crate) fn new(limit: usize) -> Self {
        Capture {
            // Small outputs are the common case: grow on demand instead of reserving the limit.
            kept: Vec::new(),
            limit,
            total: 0,
            lines: 0,
            line_has_content: false,
        }
    }

    pub(crate) fn push(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        let room = self.limit.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&chunk[..room.min(chunk.len())]);
        for &b in chunk {
            if b == b'\n' {
                self.lines += u64::from(self.line_has_content);
                self.line_has_content = false;
            } else if !b.is_ascii_whitespace() {
                self.line_has_content = true;
            }
        }
    }

    pub(crate) fn finish(self) -> Captured {
        let omitted = self.total - self.kept.len() as u64;
        let lines = self.lines + u64::from(self.line_has_content);
        let mut kept = self.kept;
        // The limit may have cut a multi-byte character: drop the fragment instead of showing a
        // replacement character that was never in the output.
        if omitted > 0
            && let Err(e) = std::str::from_utf8(&kept)
            && e.error_len().is_none()
        {
            kept.truncate(e.valid_up_to());
        }
        let omitted = self.total - kept.len() as u64;
        let text = match String::from_utf8(kept) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        Captured {
            text,
            omitted,
            lines,
        }
    }
}

impl Captured {
    /// Keeps only the first `limit` bytes (on a character boundary), counting the rest as
    /// omitted: once judged, an output needs no more than its report shows.
    pub(crate) fn keep_first(&mut self, limit: usize) {
        if self.text.len() <= limit {
            return;
        }
        let cut = crate::redact::floor_char_boundary(&self.text, limit);
        self.omitted += (self.text.len() - cut) as u64;
        self.text.truncate(cut);
        self.text.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_judged_output_keeps_only_what_its_report_shows() {
        let mut captured = Captured {
            text: "aé".repeat(4),
            omitted: 5,
            lines: 1,
        };
        captured.keep_first(2);
        assert_eq!(captured.text, "a", "cut before a split character");
        assert_eq!(captured.omitted, 5 + 11);
        captured.keep_first(10);
        assert_eq!(captured.text, "a");
    }

    #[test]
    fn keeps_the_head_and_counts_the_rest() {
        let mut c = Capture::new(4);
        c.push(b"ab");
        c.push(b"cdef");
        c.push(b"gh");
        let done = c.finish();
        assert_eq!(done.text, "abcd");
        assert_eq!(done.omitted, 4);
    }

    #[test]
    fn counts_non_blank_lines_across_chunks() {
        let mut c = Capture::new(2);
        for chunk in [&b"one\n\n  \ntw"[..], b"o\nthree"] {
            c.push(chunk);
        }
        assert_eq!(c.finish().lines, 3);
        assert_eq!(Capture::new(10).finish().lines, 0);
    }

    #[test]
    fn a_cut_character_is_dropped_not_replaced() {
        let mut c = Capture::new(3);
        c.push("aé€".as_bytes());
        let done = c.finish();
        assert_eq!(done.text, "aé");
        assert_eq!(done.omitted, 3);
    }

    #[test]
    fn invalid_utf8_inside_is_replaced() {
        let mut c = Capture::new(10);
        c.push(b"a\xffb");
        assert_eq!(c.finish().text, "a\u{fffd}b");
    }

    #[test]
    fn memory_stays_bounded() {
        let mut c = Capture::new(1024);
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..160 {
            c.push(&chunk);
        }
        assert!(c.kept.capacity() < 64 * 1024 + 1024);
        let done = c.finish();
        assert_eq!(done.text.len(), 1024);
        assert_eq!(done.omitted, 160 * 64 * 1024 - 1024);
        assert_eq!(done.lines, 1);
    }
}
