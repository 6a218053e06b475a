//! Usage in an AWS event stream (`application/vnd.amazon.eventstream`), read chunk by chunk as
//! it passes ([`EventStreamUsage`]): Bedrock's `ConverseStream` and
//! `InvokeModelWithResponseStream` answers.
//!
//! # Framing
//! Each message is a 12-byte prelude (total length and headers length, big-endian `u32`, then
//! the CRC-32 of those 8 bytes), the headers, the payload, and the CRC-32 of everything before
//! it. A message is read only once both CRCs hold; the first that fails (or a length out of
//! bounds: under 16 bytes, over 16 MiB, headers longer than the message) ends the reading for
//! good, keeping what was verified before it. Memory stays bounded whatever the stream: the
//! headers of a message are kept up to 1 KiB and its payload up to 64 KiB; a longer one is
//! checked and passed over (a longer payload counts as delivered text of 3/4 its length).
//!
//! # Events
//! Messages whose `:message-type` is `event` are read; exceptions are not. The payload is JSON:
//! - `ConverseStream`: `contentBlockDelta` events carry the text (`delta.text`), the `metadata`
//!   event the `usage` (`inputTokens`, `outputTokens`, `cacheReadInputTokens`,
//!   `cacheWriteInputTokens`);
//! - `InvokeModelWithResponseStream`: `chunk` events carry the model's own stream event, base64
//!   in `bytes` (Anthropic's `message_start`, `content_block_delta`, `message_delta`, ...),
//!   read as that event.

use ct_codecs::{Base64, Decoder};
use serde::Deserialize;

use super::scanner::{AnswerIds, Scanner, Seen};
use super::{Delivered, Usage};

const PRELUDE_BYTES: usize = 12;
const CRC_BYTES: usize = 4;
/// The smallest message: a prelude and a message CRC.
const MIN_MESSAGE_BYTES: usize = PRELUDE_BYTES + CRC_BYTES;
/// AWS's limit on one message.
const MAX_MESSAGE_BYTES: usize = 16 << 20;
/// Longest headers kept for reading (Bedrock's are about 100 bytes).
const MAX_HEADER_BYTES: usize = 1024;
/// Longest payload kept for reading (Bedrock's are about 100 bytes to a few KiB).
const MAX_PAYLOAD_BYTES: usize = 64 << 10;

/// Incremental event-stream usage reader: feed it every response body chunk as it passes. It
/// only reads, so the stream is neither held back nor altered.
pub struct EventStreamUsage {
    /// Bytes of the current message read so far.
    at: usize,
    prelude: [u8; PRELUDE_BYTES],
    /// The current message's lengths, once its prelude was read.
    total: usize,
    headers_len: usize,
    /// CRC-32 of the current message so far.
    crc: crc32fast::Hasher,
    /// The headers and payload kept (up to their bounds).
    headers: Vec<u8>,
    payload: Vec<u8>,
    /// The payload is longer than kept: it is checked, not read.
    payload_over: bool,
    message_crc: [u8; CRC_BYTES],
    /// A CRC or a length was wrong: nothing more is read.
    broken: bool,
    json: Scanner,
    seen: Seen,
    delivered: Delivered,
}

impl Default for EventStreamUsage {
    fn default() -> Self {
        EventStreamUsage {
            at: 0,
            prelude: [0; PRELUDE_BYTES],
            total: 0,
            headers_len: 0,
            crc: crc32fast::Hasher::new(),
            headers: Vec::new(),
            payload: Vec::new(),
            payload_over: false,
            message_crc: [0; CRC_BYTES],
            broken: false,
            json: Scanner::counting_text(),
            seen: Seen::default(),
            delivered: Delivered::default(),
        }
    }
}

/// Usage and model from a whole event stream at once (the same as feeding it to
/// [`EventStreamUsage`]).
pub fn from_event_stream(stream: &[u8]) -> Option<(Usage, Option<String>)> {
    let mut reader = EventStreamUsage::new();
    reader.feed(stream);
    reader.seen.result()
}

impl EventStreamUsage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads one chunk of the response body.
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while !rest.is_empty() && !self.broken {
            rest = self.step(rest);
        }
    }

    /// Usage seen so far (for aborted streams too); `None` when no usage was seen at all.
    pub fn usage(&self) -> Option<Usage> {
        self.seen.counts.usage()
    }

    /// The latest `model` the events named.
    pub fn model(&self) -> Option<&str> {
        self.seen.model.as_deref()
    }

    /// The object ids the events named.
    pub fn ids(&self) -> &AnswerIds {
        &self.seen.ids
    }

    /// Generated text the verified events delivered so far.
    pub fn delivered(&self) -> Delivered {
        self.delivered
    }

    /// A CRC or a length was wrong: what follows it is not read.
    pub fn broken(&self) -> bool {
        self.broken
    }

    /// Consumes at least one byte of `rest`; returns what is left.
    fn step<'a>(&mut self, rest: &'a [u8]) -> &'a [u8] {
        if self.at < PRELUDE_BYTES {
            let (taken, after) = take(rest, PRELUDE_BYTES - self.at);
            if let Some(slot) = self.prelude.get_mut(self.at..self.at + taken.len()) {
                slot.copy_from_slice(taken);
            }
            self.at += taken.len();
            if self.at == PRELUDE_BYTES {
                self.read_prelude();
            }
            return after;
        }
        let payload_start = PRELUDE_BYTES + self.headers_len;
        let crc_start = self.total - CRC_BYTES;
        let (region_end, region) = if self.at < payload_start {
            (payload_start, Region::Headers)
        } else if self.at < crc_start {
            (crc_start, Region::Payload)
        } else {
            (self.total, Region::Crc)
        };
        let (taken, after) = take(rest, region_end - self.at);
        match region {
            Region::Headers => {
                self.crc.update(taken);
                if self.headers_len <= MAX_HEADER_BYTES {
                    self.headers.extend_from_slice(taken);
                }
            }
            Region::Payload => {
                self.crc.update(taken);
                let fits = self.payload.len() + taken.len() <= MAX_PAYLOAD_BYTES;
                if fits && !self.payload_over {
                    self.payload.extend_from_slice(taken);
                } else {
                    self.payload_over = true;
                    self.payload = Vec::new();
                }
            }
            Region::Crc => {
                let from = self.at - crc_start;
                if let Some(slot) = self.message_crc.get_mut(from..from + taken.len()) {
                    slot.copy_from_slice(taken);
                }
            }
        }
        self.at += taken.len();
        if self.at == self.total {
            self.end_message();
        }
        after
    }

    fn read_prelude(&mut self) {
        let word = |at: usize| {
            self.prelude
                .get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u32::from_be_bytes)
        };
        let (total, headers_len, prelude_crc) = (word(0), word(4), word(8));
        let total = usize::try_from(total).unwrap_or(usize::MAX);
        let headers_len = usize::try_from(headers_len).unwrap_or(usize::MAX);
        let checked = self
            .prelude
            .get(..8)
            .is_some_and(|lengths| crc32fast::hash(lengths) == prelude_crc);
        if !checked
            || !(MIN_MESSAGE_BYTES..=MAX_MESSAGE_BYTES).contains(&total)
            || headers_len > total - MIN_MESSAGE_BYTES
        {
            self.broken = true;
            return;
        }
        self.total = total;
        self.headers_len = headers_len;
        self.crc = crc32fast::Hasher::new();
        self.crc.update(&self.prelude);
    }

    fn end_message(&mut self) {
        let crc = std::mem::replace(&mut self.crc, crc32fast::Hasher::new());
        if crc.finalize() != u32::from_be_bytes(self.message_crc) {
            self.broken = true;
            return;
        }
        let headers = std::mem::take(&mut self.headers);
        let payload = std::mem::take(&mut self.payload);
        let payload_len = self.total - PRELUDE_BYTES - self.headers_len - CRC_BYTES;
        let over = std::mem::take(&mut self.payload_over);
        self.at = 0;
        let kept_headers = (self.headers_len <= MAX_HEADER_BYTES).then_some(headers.as_slice());
        let Some(kind) = kept_headers.and_then(event_kind) else {
            return;
        };
        if over {
            let bytes = u64::try_from(payload_len / 4 * 3).unwrap_or(u64::MAX);
            self.count_text(bytes);
            return;
        }
        match kind {
            EventKind::Chunk => {
                // The model's own event, base64 in `bytes`.
                let inner = crate::policy::json::from_slice::<Chunk>(&payload)
                    .ok()
                    .and_then(|chunk| Base64::decode_to_vec(&chunk.bytes, None).ok());
                if let Some(inner) = inner {
                    self.read_json(&inner);
                }
            }
            EventKind::Other => self.read_json(&payload),
        }
    }

    /// Reads one event's JSON: its usage and model, and the text it delivers.
    fn read_json(&mut self, json: &[u8]) {
        self.json.reset();
        self.json.scan(json, &mut self.seen);
        let text = self.json.text_bytes;
        self.count_text(text);
    }

    fn count_text(&mut self, bytes: u64) {
        if bytes > 0 {
            self.delivered.events = self.delivered.events.saturating_add(1);
            self.delivered.bytes = self.delivered.bytes.saturating_add(bytes);
        }
    }
}

#[derive(Clone, Copy)]
enum Region {
    Headers,
    Payload,
    Crc,
}

/// An event worth reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventKind {
    /// `chunk` (InvokeModelWithResponseStream): the model's event, base64.
    Chunk,
    /// Any other event: JSON read as it is.
    Other,
}

#[derive(Deserialize)]
struct Chunk {
    bytes: String,
}

/// Up to `n` bytes of `rest`, and what follows them.
fn take(rest: &[u8], n: usize) -> (&[u8], &[u8]) {
    rest.split_at_checked(n).unwrap_or((rest, &[]))
}

/// What a message is, from its headers: `None` unless its `:message-type` is `event`.
fn event_kind(headers: &[u8]) -> Option<EventKind> {
    let mut message_type = None;
    let mut event_type = None;
    for (name, value) in header_strings(headers)? {
        match name {
            b":message-type" => message_type = Some(value),
            b":event-type" => event_type = Some(value),
            _ => {}
        }
    }
    if message_type != Some(b"event".as_slice()) {
        return None;
    }
    Some(if event_type == Some(b"chunk".as_slice()) {
        EventKind::Chunk
    } else {
        EventKind::Other
    })
}

/// The string-valued headers of a message, as (name, value); `None` when the headers are
/// malformed.
fn header_strings(mut headers: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let mut out = Vec::new();
    while let Some((&name_len, rest)) = headers.split_first() {
        let (name, rest) = rest.split_at_checked(usize::from(name_len))?;
        let (&value_type, rest) = rest.split_first()?;
        let fixed = match value_type {
            // bool true, bool false: no value.
            0 | 1 => Some(0),
            2 => Some(1),
            3 => Some(2),
            4 => Some(4),
            5 | 8 => Some(8),
            9 => Some(16),
            // byte array (6) and string (7): a 2-byte length, then the value.
            6 | 7 => None,
            _ => return None,
        };
        headers = match fixed {
            Some(len) => rest.get(len..)?,
            None => {
                let (len, rest) = rest.split_at_checked(2)?;
                let len = usize::from(u16::from_be_bytes(len.try_into().ok()?));
                let (value, rest) = rest.split_at_checked(len)?;
                if value_type == 7 {
                    out.push((name, value));
                }
                rest
            }
        };
    }
    Some(out)
}

#[cfg(test)]
mod tests;
