//! Bounded capture of a hook program's output and the text that describes
//! how it ended.

use std::process::ExitStatus;

/// Bytes of each stream kept while a program runs (the newest ones).
pub(super) const CAPTURE_BYTES: usize = 64 * 1024;

/// Bytes of each stream quoted in an error message.
pub(super) const ERROR_TAIL_BYTES: usize = 2 * 1024;

/// The last `cap` bytes written to a stream.
#[derive(Debug, Clone)]
pub(super) struct Tail {
    bytes: Vec<u8>,
    cap: usize,
    /// Whether older bytes were dropped.
    truncated: bool,
}

impl Tail {
    pub(super) fn new(cap: usize) -> Self {
        Self {
            bytes: Vec::new(),
            cap,
            truncated: false,
        }
    }

    pub(super) fn push(&mut self, chunk: &[u8]) {
        if chunk.len() >= self.cap {
            self.truncated |= !self.bytes.is_empty() || chunk.len() > self.cap;
            self.bytes.clear();
            self.bytes
                .extend_from_slice(&chunk[chunk.len() - self.cap..]);
            return;
        }
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > self.cap {
            let excess = self.bytes.len() - self.cap;
            self.bytes.drain(..excess);
            self.truncated = true;
        }
    }

    /// The newest `max` bytes (or fewer) as text, trimmed; `…` marks a cut.
    pub(super) fn text(&self, max: usize) -> String {
        let start = self.bytes.len().saturating_sub(max);
        let text = String::from_utf8_lossy(&self.bytes[start..]);
        // A cut in the middle of a UTF-8 sequence shows as U+FFFD; drop it.
        let text = if start > 0 {
            // Start at a line boundary when the cut fell inside a line.
            let text = text.trim_start_matches('\u{FFFD}');
            match text.split_once('\n') {
                Some((_, rest)) if !rest.trim().is_empty() => rest,
                _ => text,
            }
        } else {
            &text
        };
        let text = text.trim();
        if (start > 0 || self.truncated) && !text.is_empty() {
            format!("…{text}")
        } else {
            text.to_string()
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.bytes.iter().all(u8::is_ascii_whitespace)
    }
}

/// `stderr: …; stdout: …` with the newest `max` bytes of each non-empty
/// stream, or `no output`.
pub(super) fn describe_output(stdout: &Tail, stderr: &Tail, max: usize) -> String {
    let mut parts = Vec::new();
    if !stderr.is_empty() {
        parts.push(format!("stderr: {}", stderr.text(max)));
    }
    if !stdout.is_empty() {
        parts.push(format!("stdout: {}", stdout.text(max)));
    }
    if parts.is_empty() {
        "no output".to_string()
    } else {
        parts.join("; ")
    }
}

/// `exit code 3` or `killed by signal 9 (SIGKILL)`.
pub(super) fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    if let Some(code) = status.code() {
        return format!("exit code {code}");
    }
    match status.signal() {
        Some(signo) => match nix::sys::signal::Signal::try_from(signo) {
            Ok(signal) => format!("killed by signal {signo} ({})", signal.as_str()),
            Err(_) => format!("killed by signal {signo}"),
        },
        None => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_newest_bytes() {
        let mut tail = Tail::new(8);
        tail.push(b"abc");
        assert_eq!(tail.text(100), "abc");
        tail.push(b"defghij");
        assert_eq!(tail.text(100), "…cdefghij");
        tail.push(b"0123456789");
        assert_eq!(tail.text(100), "…23456789");
        assert_eq!(tail.text(3), "…789");
        let mut lines = Tail::new(64);
        lines.push(b"first line\nsecond line\nthird\n");
        assert_eq!(lines.text(16), "…third");
        assert_eq!(lines.text(8), "…third");
        let mut exact = Tail::new(4);
        exact.push(b"wxyz");
        assert_eq!(exact.text(100), "wxyz");
    }

    #[test]
    fn tail_text_drops_a_split_utf8_sequence() {
        let mut tail = Tail::new(64);
        tail.push("aé".as_bytes());
        // The last 1 byte is the second half of é.
        assert_eq!(tail.text(1), "");
        assert_eq!(tail.text(2), "…é");
    }

    #[test]
    fn output_description_skips_empty_streams() {
        let mut out = Tail::new(64);
        let mut err = Tail::new(64);
        assert_eq!(describe_output(&out, &err, 10), "no output");
        out.push(b"hello\n");
        assert_eq!(describe_output(&out, &err, 10), "stdout: hello");
        err.push(b"  bad  \n");
        assert_eq!(
            describe_output(&out, &err, 10),
            "stderr: bad; stdout: hello"
        );
    }
}
