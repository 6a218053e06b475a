//! Usage in a server-sent event stream, read chunk by chunk as it passes ([`SseUsage`]): the
//! `data` lines of each event go through the JSON scanner; the generated text the events
//! delivered is counted too ([`Delivered`]).

use super::scanner::{AnswerIds, Scanner, Seen};
use super::Usage;

/// Usage and model from a whole SSE stream at once (the same as feeding it to [`SseUsage`]).
pub fn from_sse(stream: &[u8]) -> Option<(Usage, Option<String>)> {
    let mut reader = SseUsage::new();
    reader.feed(stream);
    reader.seen.result()
}

/// Incremental SSE usage reader: feed it every response body chunk as it passes. It only
/// reads, so the stream is neither held back nor altered. Lines of any length are scanned
/// as they come, never buffered: memory stays under a few KiB per stream. A usage object
/// counts as soon as it is complete, so an aborted stream keeps everything it delivered.
pub struct SseUsage {
    line: Line,
    /// The last line ended with CR: an LF right after it belongs to that line end.
    after_cr: bool,
    /// The current event already had a `data` line (the next one is joined with `\n`).
    event_has_data: bool,
    json: Scanner,
    seen: Seen,
    /// Generated text of the events already ended.
    delivered: Delivered,
}

/// Generated text a stream delivered (content, tool-call arguments, reasoning deltas): the
/// filter's own count, for streams that end before the provider reports usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Events that carried generated text (providers stream about one token per event).
    pub events: u64,
    /// Bytes of that text, as JSON string bytes.
    pub bytes: u64,
}

impl Delivered {
    /// A lower estimate of the output tokens delivered: at least one per text event, and at
    /// least one per 4 bytes of text.
    pub fn tokens(&self) -> u64 {
        self.events.max(self.bytes.div_ceil(4))
    }
}

impl Default for SseUsage {
    fn default() -> Self {
        SseUsage {
            line: Line::default(),
            after_cr: false,
            event_has_data: false,
            json: Scanner::counting_text(),
            seen: Seen::default(),
            delivered: Delivered::default(),
        }
    }
}

/// Where the reader is within a line.
#[derive(Default)]
enum Line {
    #[default]
    Start,
    /// Reading a field name; only `data` matters, so at most 4 bytes are kept.
    Name { buf: [u8; 4], len: usize },
    /// In a `data` value; `first`: its optional leading space is still to come.
    Data { first: bool },
    /// A comment, another field, or a field name too long to be `data`.
    Ignore,
}

impl SseUsage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads one chunk of the response body.
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while !rest.is_empty() {
            rest = self.step(rest);
        }
    }

    /// Usage seen so far (for aborted streams too); `None` when no usage was seen at all.
    pub fn usage(&self) -> Option<Usage> {
        self.seen.counts.usage()
    }

    /// The latest `model` the stream named.
    pub fn model(&self) -> Option<&str> {
        self.seen.model.as_deref()
    }

    /// The object ids the stream named.
    pub fn ids(&self) -> &AnswerIds {
        &self.seen.ids
    }

    /// Generated text delivered so far, the current (possibly cut) event included.
    pub fn delivered(&self) -> Delivered {
        let current = self.json.text_bytes;
        Delivered {
            events: self.delivered.events.saturating_add(u64::from(current > 0)),
            bytes: self.delivered.bytes.saturating_add(current),
        }
    }

    /// Consumes at least one byte of `rest`; returns what is left.
    fn step<'a>(&mut self, rest: &'a [u8]) -> &'a [u8] {
        let Some((&b, tail)) = rest.split_first() else {
            return rest;
        };
        if std::mem::take(&mut self.after_cr) && b == b'\n' {
            return tail;
        }
        if matches!(self.line, Line::Data { .. } | Line::Ignore) {
            let end = rest
                .iter()
                .position(|&c| c == b'\n' || c == b'\r')
                .unwrap_or(rest.len());
            let (run, after) = rest.split_at_checked(end).unwrap_or((rest, &[]));
            self.value_run(run);
            return match after.split_first() {
                Some((&eol, tail)) => {
                    self.end_line(eol);
                    tail
                }
                None => after,
            };
        }
        if b == b'\n' || b == b'\r' {
            self.end_line(b);
        } else {
            self.name_byte(b);
        }
        tail
    }

    fn value_run(&mut self, run: &[u8]) {
        if let Line::Data { first } = &mut self.line {
            let mut run = run;
            if *first && !run.is_empty() {
                *first = false;
                run = run.strip_prefix(b" ").unwrap_or(run);
            }
            self.json.scan(run, &mut self.seen);
        }
    }

    fn name_byte(&mut self, b: u8) {
        match &mut self.line {
            Line::Start if b == b':' => self.line = Line::Ignore,
            Line::Start => {
                self.line = Line::Name {
                    buf: [b, 0, 0, 0],
                    len: 1,
                }
            }
            Line::Name { buf, len } => {
                if b == b':' {
                    let is_data = buf.get(..*len) == Some(b"data");
                    self.line = if is_data {
                        self.begin_data();
                        Line::Data { first: true }
                    } else {
                        Line::Ignore
                    };
                } else if let Some(slot) = buf.get_mut(*len) {
                    *slot = b;
                    *len = len.saturating_add(1);
                } else {
                    self.line = Line::Ignore;
                }
            }
            Line::Data { .. } | Line::Ignore => {}
        }
    }

    fn end_line(&mut self, eol: u8) {
        self.after_cr = eol == b'\r';
        match std::mem::take(&mut self.line) {
            Line::Start => self.end_event(),
            // A bare `data` line: an empty value.
            Line::Name { buf, len } if buf.get(..len) == Some(b"data") => self.begin_data(),
            _ => {}
        }
    }

    fn begin_data(&mut self) {
        if self.event_has_data {
            self.json.scan(b"\n", &mut self.seen);
        }
        self.event_has_data = true;
    }

    fn end_event(&mut self) {
        self.delivered = self.delivered();
        self.json.reset();
        self.event_has_data = false;
    }
}

#[cfg(test)]
mod tests;
