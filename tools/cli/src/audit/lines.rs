//! Lines of a log of any size, one at a time, in bounded memory: a line longer than
//! [`MAX_LINE`] is reported as such and skipped, never held whole.

use std::io::{self, BufRead};

/// Longest line kept (an audit record is a few KiB: its client text is bounded by the filter).
pub const MAX_LINE: usize = 1 << 20;

pub enum Line<'a> {
    Text(&'a [u8]),
    /// Longer than [`MAX_LINE`]: its bytes were skipped.
    TooLong,
}

pub struct Lines<R> {
    reader: R,
    buffer: Vec<u8>,
    /// 1-based number of the line last returned.
    pub number: u64,
}

impl<R: BufRead> Lines<R> {
    pub fn new(reader: R) -> Lines<R> {
        Lines {
            reader,
            buffer: Vec::with_capacity(4096),
            number: 0,
        }
    }

    /// The next line (its 1-based number, its text without `\n` and `\r`), or `None` at the
    /// end of the input.
    pub fn next_line(&mut self) -> io::Result<Option<(u64, Line<'_>)>> {
        self.buffer.clear();
        let mut too_long = false;
        let mut read_any = false;
        loop {
            let chunk = self.reader.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            read_any = true;
            let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(at) => (at + 1, true),
                None => (chunk.len(), false),
            };
            if !too_long {
                let room = MAX_LINE.saturating_sub(self.buffer.len());
                if take > room + usize::from(done) {
                    too_long = true;
                    self.buffer.clear();
                } else {
                    self.buffer
                        .extend_from_slice(chunk.get(..take).unwrap_or_default());
                }
            }
            self.reader.consume(take);
            if done {
                break;
            }
        }
        if !read_any {
            return Ok(None);
        }
        self.number += 1;
        if too_long {
            // Give back what a giant line made the buffer grow to.
            self.buffer = Vec::with_capacity(4096);
            return Ok(Some((self.number, Line::TooLong)));
        }
        while matches!(self.buffer.last(), Some(b'\n' | b'\r')) {
            self.buffer.pop();
        }
        Ok(Some((self.number, Line::Text(&self.buffer))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8]) -> Vec<Option<Vec<u8>>> {
        let mut lines = Lines::new(io::BufReader::with_capacity(7, input));
        let mut out = Vec::new();
        while let Some((_, line)) = lines.next_line().unwrap() {
            out.push(match line {
                Line::Text(t) => Some(t.to_vec()),
                Line::TooLong => None,
            });
        }
        out
    }

    #[test]
    fn lines_are_split_across_small_buffers() {
        assert_eq!(
            all(b"first line\r\nsecond\n\nlast without newline"),
            vec![
                Some(b"first line".to_vec()),
                Some(b"second".to_vec()),
                Some(Vec::new()),
                Some(b"last without newline".to_vec()),
            ]
        );
        assert!(all(b"").is_empty());
    }

    #[test]
    fn a_giant_line_is_skipped_and_counted() {
        let mut input = vec![b'x'; MAX_LINE + 10];
        input.extend_from_slice(b"\nafter\n");
        let lines = all(&input);
        assert_eq!(lines, vec![None, Some(b"after".to_vec())]);
        let mut exact = vec![b'y'; MAX_LINE];
        exact.push(b'\n');
        assert_eq!(all(&exact), vec![Some(vec![b'y'; MAX_LINE])]);
    }
}
