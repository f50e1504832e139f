//! Lines from a peer process (ExaBGP on our stdin, BIRD on its control
//! socket), bounded: a line longer than the limit is dropped whole, so
//! nothing the other side writes can grow our memory. [`LineSplitter`] is
//! the pure part (fuzzed in `fuzz/fuzz_targets/lines.rs`); [`BoundedLines`]
//! reads with it.

use std::collections::VecDeque;

use tokio::io::{AsyncRead, AsyncReadExt};

/// One line read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputLine {
    Text(String),
    /// Longer than the limit: dropped whole, so memory stays bounded
    /// whatever ExaBGP (or anything else on our stdin) writes.
    TooLong,
}

/// Splits what ExaBGP writes into lines of at most `max` bytes.
#[derive(Debug, Clone)]
pub struct LineSplitter {
    max: usize,
    partial: Vec<u8>,
    /// The current line went past `max`: skip to its end.
    discarding: bool,
}

impl LineSplitter {
    pub fn new(max: usize) -> LineSplitter {
        LineSplitter {
            max,
            partial: Vec::new(),
            discarding: false,
        }
    }

    /// Feeds bytes; every line they complete goes to `out`.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut Vec<InputLine>) {
        while !bytes.is_empty() {
            let end = bytes.iter().position(|b| *b == b'\n');
            let part = &bytes[..end.unwrap_or(bytes.len())];
            if !self.discarding && self.partial.len() + part.len() > self.max {
                self.discarding = true;
                self.partial = Vec::new();
            }
            if !self.discarding {
                self.partial.extend_from_slice(part);
            }
            let Some(end) = end else {
                return;
            };
            if self.discarding {
                out.push(InputLine::TooLong);
            } else {
                let text = String::from_utf8_lossy(&self.partial);
                out.push(InputLine::Text(text.trim_end_matches('\r').to_string()));
            }
            self.partial.clear();
            self.discarding = false;
            bytes = &bytes[end + 1..];
        }
    }
}

/// Reads lines of at most `max` bytes from `R`. Cancel-safe: a read
/// interrupted by `select!` loses nothing.
pub struct BoundedLines<R> {
    reader: R,
    splitter: LineSplitter,
    lines: VecDeque<InputLine>,
}

impl<R: AsyncRead + Unpin> BoundedLines<R> {
    pub fn new(reader: R, max: usize) -> BoundedLines<R> {
        BoundedLines {
            reader,
            splitter: LineSplitter::new(max),
            lines: VecDeque::new(),
        }
    }

    /// The next line; `None` at EOF (a partial last line is dropped).
    pub async fn next(&mut self) -> std::io::Result<Option<InputLine>> {
        loop {
            if let Some(line) = self.lines.pop_front() {
                return Ok(Some(line));
            }
            let mut chunk = [0u8; 8192];
            let read = self.reader.read(&mut chunk).await?;
            if read == 0 {
                return Ok(None);
            }
            let mut out = Vec::new();
            self.splitter.push(&chunk[..read], &mut out);
            self.lines.extend(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, chunks: &[&[u8]]) -> Vec<InputLine> {
        let mut splitter = LineSplitter::new(max);
        let mut out = Vec::new();
        for chunk in chunks {
            splitter.push(chunk, &mut out);
        }
        out
    }

    #[test]
    fn lines_split_across_reads_and_past_the_limit() {
        let text = |s: &str| InputLine::Text(s.into());
        assert_eq!(
            split(16, &[b"do", b"ne\nerr", b"or\r\n", b"partial"]),
            [text("done"), text("error")]
        );
        // 17 bytes: dropped whole, even when it arrives in pieces; the
        // next line is read normally.
        assert_eq!(
            split(16, &[b"0123456789", b"0123456", b"789\ndone\n"]),
            [InputLine::TooLong, text("done")]
        );
        assert_eq!(
            split(4, &[b"done\nshutdown 1 2\n\n"]),
            [text("done"), InputLine::TooLong, text("")]
        );
    }

    #[tokio::test]
    async fn bounded_lines_read_across_chunks_and_drop_long_ones() {
        let text = format!("done\n{}\nerror\npartial", "x".repeat(100));
        let mut lines = BoundedLines::new(text.as_bytes(), 16);
        assert_eq!(
            lines.next().await.unwrap(),
            Some(InputLine::Text("done".into()))
        );
        assert_eq!(lines.next().await.unwrap(), Some(InputLine::TooLong));
        assert_eq!(
            lines.next().await.unwrap(),
            Some(InputLine::Text("error".into()))
        );
        assert_eq!(lines.next().await.unwrap(), None);
    }
}
