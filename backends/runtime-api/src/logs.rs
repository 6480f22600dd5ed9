//! What [`Backend::logs`](crate::Backend::logs) returns for `tail` lines,
//! computed once for every backend: the last lines of a log, a final line
//! without a newline counting as one.

/// The last lines of a log read in chunks, without keeping all of it.
///
/// ```
/// use berth_runtime_api::LogTail;
///
/// let mut tail = LogTail::new(2);
/// tail.push(b"one\ntw");
/// tail.push(b"o\nthree");
/// assert_eq!(tail.into_string(), "two\nthree");
/// ```
#[derive(Debug)]
pub struct LogTail {
    lines: usize,
    buf: Vec<u8>,
    /// The buffer's length after it was last cut.
    cut_at: usize,
}

impl LogTail {
    /// Buffers below this size are never cut.
    const MIN_CUT: usize = 64 * 1024;

    /// A tail that keeps the last `lines` lines.
    pub fn new(lines: usize) -> Self {
        Self {
            lines,
            buf: Vec::new(),
            cut_at: 0,
        }
    }

    /// Appends the next chunk of the log.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        if self.buf.len() > Self::MIN_CUT.max(2 * self.cut_at) {
            let keep = self.buf.len() - last_lines(&self.buf, self.lines).len();
            self.buf.drain(..keep);
            self.cut_at = self.buf.len();
        }
    }

    /// The last lines, invalid UTF-8 replaced.
    pub fn into_string(self) -> String {
        String::from_utf8_lossy(last_lines(&self.buf, self.lines)).into_owned()
    }
}

/// The last `n` lines of `text` (a final line without a newline counts).
pub fn last_lines(text: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return &[];
    }
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let start = body
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'\n')
        .nth(n - 1)
        .map_or(0, |(i, _)| i + 1);
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails() {
        fn check(text: &str, n: usize, expect: &str) {
            let mut tail = LogTail::new(n);
            tail.push(text.as_bytes());
            assert_eq!(tail.into_string(), expect, "{text:?} tail {n}");
            assert_eq!(last_lines(text.as_bytes(), n), expect.as_bytes());
        }
        check("a\nb\nc\n", 2, "b\nc\n");
        check("a\nb\nc", 2, "b\nc");
        check("a\nb\nc\n", 3, "a\nb\nc\n");
        check("a\nb\nc\n", 10, "a\nb\nc\n");
        check("a\nb\nc\n", 1, "c\n");
        check("a\nb\nc\n", 0, "");
        check("", 5, "");
    }

    #[test]
    fn long_logs_are_cut_on_the_way() {
        let mut tail = LogTail::new(3);
        for i in 0..100_000 {
            tail.push(format!("line {i}").as_bytes());
            tail.push(b"\n");
            assert!(
                tail.buf.len() <= 2 * LogTail::MIN_CUT + 16,
                "{}",
                tail.buf.len()
            );
        }
        tail.push(b"partial");
        assert_eq!(tail.into_string(), "line 99998\nline 99999\npartial");
    }
}
