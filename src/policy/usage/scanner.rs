//! Finding usage in JSON text, incrementally: a scanner that picks the `usage` objects, the
//! `model` and the ids of created objects out of a body or an event as its bytes pass, in
//! bounded memory, and what it found so far ([`Seen`]).

use serde_json::Value;

use super::counts::Counts;
use super::Usage;

/// Longest usage object kept for parsing; a longer one is ignored (real ones are < 1 KiB).
pub(super) const MAX_USAGE_BYTES: usize = 4096;
/// Longest `model` or id value kept (raw JSON string bytes).
const MAX_KEPT_BYTES: usize = 256;
/// Longest key that matters (`reasoning_content`).
const MAX_KEY_BYTES: usize = 17;
/// Nesting depth up to which the scanner knows whether it is in an object or an array.
const TRACKED_DEPTH: usize = 64;

/// What a key means for usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Key {
    #[default]
    Other,
    Usage,
    Model,
    /// `message` or `response`: an object that may hold `usage`, `model` and `id` itself.
    Envelope,
    /// `file`: an object whose `id` names a file (an upload's answer).
    File,
    Id,
    ThreadId,
    /// A key whose string value is generated text in a stream delta (`content`, `text`, `delta`,
    /// `arguments`, `refusal`, `partial_json`, `thinking`, `reasoning_content`), at any depth.
    Text,
}

fn classify(raw: &[u8]) -> Key {
    match raw {
        // Gemini's answers name theirs `usageMetadata` and `modelVersion`.
        b"usage" | b"usageMetadata" => Key::Usage,
        b"model" | b"modelVersion" => Key::Model,
        b"message" | b"response" => Key::Envelope,
        b"file" => Key::File,
        b"id" => Key::Id,
        b"thread_id" => Key::ThreadId,
        b"content" | b"text" | b"delta" | b"arguments" | b"refusal" | b"partial_json"
        | b"thinking" | b"reasoning_content" => Key::Text,
        _ => Key::Other,
    }
}

/// What the bytes of the string being read are kept for.
#[derive(Default, PartialEq, Eq)]
enum Text {
    #[default]
    Skip,
    Key,
    /// A value [`Seen`] keeps.
    Kept(Field),
    /// Generated text: only its length is counted.
    Delivered,
}

/// A streaming scanner over JSON text that picks out the `usage` objects and `model` strings
/// at the places listed in the module doc, keeping only those few bytes. It tracks strings,
/// nesting depth, whether each level is an object or an array, and the keys of the two outer
/// levels; malformed input just finds nothing. With `count_text`, it also counts the bytes of
/// generated text (see [`Key::Text`]).
#[derive(Default)]
pub(super) struct Scanner {
    count_text: bool,
    /// A top-level array holds answers (Gemini's streamed JSON array): its elements are read
    /// as top-level objects.
    answers_in_array: bool,
    /// 1 while inside such an array, else 0: depths are counted from the answer.
    offset: usize,
    /// The body's first byte (not white space) was read: it alone decides whether the body is
    /// an array of answers.
    top_level_seen: bool,
    depth: usize,
    /// Bit `d` set: the container at depth `d + 1` is an object (up to [`TRACKED_DEPTH`]).
    objects: u64,
    in_string: bool,
    escaped: bool,
    text: Text,
    key: [u8; MAX_KEY_BYTES],
    key_len: usize,
    /// A key string just closed: what it means, if a `:` follows.
    candidate: Option<Key>,
    /// The key whose value is being read at depth 1 and at depth 2.
    keys: [Key; 2],
    /// A `:` was read: the next value belongs to `value_of`.
    value_pending: bool,
    /// The key of the value about to start (any depth).
    value_of: Key,
    /// The bytes of a string being kept (a model, an id).
    pub(super) kept: Vec<u8>,
    pub(super) usage: Option<Capture>,
    /// Bytes of generated text seen since the last [`Scanner::reset`].
    pub(super) text_bytes: u64,
    /// Answers of a top-level array that carried generated text, and `text_bytes` when the
    /// current answer began.
    pub(super) text_answers: u64,
    answer_mark: u64,
}

/// A `usage` object being copied, and the depth its closing brace returns to.
pub(super) struct Capture {
    depth: usize,
    pub(super) bytes: Vec<u8>,
}

impl Scanner {
    pub(super) fn counting_text() -> Scanner {
        Scanner {
            count_text: true,
            ..Scanner::default()
        }
    }

    /// A scanner for a top-level array of answers that counts their generated text.
    pub(super) fn answers_in_array() -> Scanner {
        Scanner {
            count_text: true,
            answers_in_array: true,
            ..Scanner::default()
        }
    }

    /// Back to the start of a new JSON text, keeping buffer capacity and the mode.
    pub(super) fn reset(&mut self) {
        let mut kept = std::mem::take(&mut self.kept);
        kept.clear();
        *self = Scanner {
            kept,
            count_text: self.count_text,
            answers_in_array: self.answers_in_array,
            ..Scanner::default()
        };
    }

    /// The depth counted from the answer (from the top-level value, or from an element of a
    /// top-level array of answers).
    fn level(&self) -> usize {
        self.depth.saturating_sub(self.offset)
    }

    pub(super) fn scan(&mut self, data: &[u8], seen: &mut Seen) {
        let mut i = 0;
        while i < data.len() {
            if let Some(counted) = self.plain_string_run() {
                // Fast path through string contents nobody keeps.
                let next = data
                    .get(i..)
                    .and_then(|rest| rest.iter().position(|&c| c == b'"' || c == b'\\'));
                let run = next.unwrap_or(data.len().saturating_sub(i));
                if counted {
                    self.add_text(run);
                }
                match next {
                    Some(offset) => i = i.saturating_add(offset),
                    None => return,
                }
            }
            if let Some(&b) = data.get(i) {
                self.byte(b, seen);
            }
            i = i.saturating_add(1);
        }
    }

    /// Inside a string whose bytes are not kept: `Some(counted)`, where `counted` says whether
    /// its length counts as generated text.
    fn plain_string_run(&self) -> Option<bool> {
        if !self.in_string || self.escaped || self.usage.is_some() {
            return None;
        }
        match self.text {
            Text::Skip => Some(false),
            Text::Delivered => Some(true),
            Text::Key | Text::Kept(_) => None,
        }
    }

    fn add_text(&mut self, bytes: usize) {
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        self.text_bytes = self.text_bytes.saturating_add(bytes);
    }

    fn byte(&mut self, b: u8, seen: &mut Seen) {
        if let Some(capture) = &mut self.usage {
            capture.bytes.push(b);
            if capture.bytes.len() > MAX_USAGE_BYTES {
                self.usage = None;
            }
        }
        if self.in_string {
            self.string_byte(b, seen);
            return;
        }
        if !self.top_level_seen && !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            // The body's first byte decides whether it is an array of answers; a later `[`
            // at the top (after a malformed or second top-level value) does not.
            self.top_level_seen = true;
            self.offset = usize::from(self.answers_in_array && b == b'[');
        }
        match b {
            b'"' => self.open_string(),
            b':' => self.colon(),
            b'{' | b'[' => self.open(b),
            b'}' | b']' => self.close(seen),
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => {
                self.value_pending = false;
                self.candidate = None;
            }
        }
    }

    fn string_byte(&mut self, b: u8, seen: &mut Seen) {
        if self.escaped {
            self.escaped = false;
        } else if b == b'\\' {
            self.escaped = true;
        } else if b == b'"' {
            self.in_string = false;
            self.close_string(seen);
            return;
        }
        self.keep(b);
    }

    fn keep(&mut self, b: u8) {
        match self.text {
            Text::Skip => {}
            Text::Key => {
                if let Some(slot) = self.key.get_mut(self.key_len) {
                    *slot = b;
                }
                self.key_len = self.key_len.saturating_add(1);
            }
            Text::Kept(_) => {
                if self.kept.len() <= MAX_KEPT_BYTES {
                    self.kept.push(b);
                }
            }
            Text::Delivered => self.add_text(1),
        }
    }

    /// Whether the innermost open container is an object (so a string that is not a value is
    /// a key).
    fn in_object(&self) -> bool {
        match self.depth.checked_sub(1) {
            Some(level) if level < TRACKED_DEPTH => self.objects & (1 << level) != 0,
            _ => false,
        }
    }

    fn open_string(&mut self) {
        self.in_string = true;
        self.escaped = false;
        self.candidate = None;
        self.text = if std::mem::take(&mut self.value_pending) {
            match self.value_field() {
                Some(field) => {
                    self.kept.clear();
                    Text::Kept(field)
                }
                _ if self.count_text && self.value_of == Key::Text => Text::Delivered,
                _ => Text::Skip,
            }
        } else if self.in_object() && (self.count_text || (1..=2).contains(&self.level())) {
            self.key_len = 0;
            Text::Key
        } else {
            Text::Skip
        };
    }

    fn close_string(&mut self, seen: &mut Seen) {
        match std::mem::take(&mut self.text) {
            Text::Skip | Text::Delivered => {}
            Text::Key => {
                let key = self.key.get(..self.key_len).map_or(Key::Other, classify);
                self.candidate = Some(key);
            }
            Text::Kept(field) => {
                if self.kept.len() <= MAX_KEPT_BYTES {
                    seen.keep(field, &self.kept);
                }
            }
        }
    }

    fn colon(&mut self) {
        let Some(key) = self.candidate.take() else {
            return;
        };
        self.value_of = key;
        self.value_pending = true;
        let level = self.level();
        if let Some(slot) = level.checked_sub(1).and_then(|d| self.keys.get_mut(d)) {
            *slot = key;
        }
    }

    /// The key of the value about to start, where it matters for usage.
    fn value_key(&self) -> Key {
        let [outer, inner] = self.keys;
        match (self.level(), outer, inner) {
            (1, key, _) => key,
            (2, Key::Envelope, key @ (Key::Usage | Key::Model)) => key,
            _ => Key::Other,
        }
    }

    /// The string field [`Seen`] keeps that the value about to start is, if any.
    fn value_field(&self) -> Option<Field> {
        let [outer, inner] = self.keys;
        match (self.level(), outer, inner) {
            (1, Key::Model, _) | (2, Key::Envelope, Key::Model) => Some(Field::Model),
            (1, Key::Id, _) => Some(Field::Id),
            (1, Key::ThreadId, _) => Some(Field::ThreadId),
            (2, Key::Envelope, Key::Id) => Some(Field::EnvelopeId),
            (2, Key::File, Key::Id) => Some(Field::FileId),
            _ => None,
        }
    }

    fn open(&mut self, b: u8) {
        let key = if std::mem::take(&mut self.value_pending) {
            self.value_key()
        } else {
            Key::Other
        };
        self.candidate = None;
        if b == b'{' && key == Key::Usage && self.usage.is_none() {
            self.usage = Some(Capture {
                depth: self.depth,
                bytes: vec![b'{'],
            });
        }
        if self.depth < TRACKED_DEPTH {
            let bit = 1u64 << self.depth;
            if b == b'{' {
                self.objects |= bit;
            } else {
                self.objects &= !bit;
            }
        }

        self.depth = self.depth.saturating_add(1);
        let level = self.level();
        if let Some(slot) = level.checked_sub(1).and_then(|d| self.keys.get_mut(d)) {
            *slot = Key::Other;
        }
    }

    fn close(&mut self, seen: &mut Seen) {
        self.value_pending = false;
        self.candidate = None;
        self.depth = self.depth.saturating_sub(1);
        if self.usage.as_ref().is_some_and(|c| c.depth == self.depth) {
            if let Some(capture) = self.usage.take() {
                seen.add_usage(&capture.bytes);
            }
        }
        if self.offset == 1 && self.depth == 1 {
            // An answer of the array ended.
            if self.text_bytes > self.answer_mark {
                self.text_answers = self.text_answers.saturating_add(1);
            }
            self.answer_mark = self.text_bytes;
        }
    }

    /// Answers of a top-level array that carried text, the current (possibly cut) one
    /// included, and the bytes of that text.
    pub(super) fn answers_delivered(&self) -> (u64, u64) {
        let current = u64::from(self.text_bytes > self.answer_mark);
        (self.text_answers.saturating_add(current), self.text_bytes)
    }
}

/// A string an answer carries that the filter keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Model,
    /// The top-level `id`.
    Id,
    /// The top-level `thread_id`.
    ThreadId,
    /// `response.id` or `message.id`.
    EnvelopeId,
    /// `file.id`.
    FileId,
}

/// The ids an answer names (the first of each), for the objects it creates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnswerIds {
    pub id: Option<String>,
    pub thread_id: Option<String>,
    /// `response.id` (Responses streams) or `message.id`.
    pub envelope_id: Option<String>,
    pub file_id: Option<String>,
}

/// Everything found so far in one response.
#[derive(Default)]
pub(super) struct Seen {
    pub(super) counts: Counts,
    pub(super) model: Option<String>,
    /// `model` as raw JSON string bytes, to skip decoding a repeat.
    pub(super) model_raw: Vec<u8>,
    pub(super) ids: AnswerIds,
}

impl Seen {
    fn add_usage(&mut self, object: &[u8]) {
        if let Ok(value) = crate::policy::json::from_slice::<Value>(object) {
            self.counts.merge(Counts::from_value(&value));
        }
    }

    fn keep(&mut self, field: Field, raw: &[u8]) {
        let slot = match field {
            Field::Model => return self.set_model(raw),
            Field::Id => &mut self.ids.id,
            Field::ThreadId => &mut self.ids.thread_id,
            Field::EnvelopeId => &mut self.ids.envelope_id,
            Field::FileId => &mut self.ids.file_id,
        };
        if slot.is_none() {
            *slot = decode_string(raw).filter(|s| !s.is_empty());
        }
    }

    fn set_model(&mut self, raw: &[u8]) {
        if self.model.is_some() && raw == self.model_raw.as_slice() {
            return;
        }
        if let Some(model) = decode_string(raw).filter(|m| !m.is_empty()) {
            self.model = Some(model);
            self.model_raw = raw.to_vec();
        }
    }

    pub(super) fn result(&self) -> Option<(Usage, Option<String>)> {
        Some((self.counts.usage()?, self.model.clone()))
    }
}

/// A JSON string's raw bytes (between the quotes), decoded.
fn decode_string(raw: &[u8]) -> Option<String> {
    crate::policy::json::from_slice::<String>(&[b"\"", raw, b"\""].concat()).ok()
}

#[cfg(test)]
mod tests;
