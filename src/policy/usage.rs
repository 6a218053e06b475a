//! Token usage: what a request asks for, and what the upstream says it used.
//!
//! Reads OpenAI (chat completions, completions, Responses API, embeddings) and Anthropic
//! (Messages) bodies, whole JSON or SSE streams fed chunk by chunk. Every parser takes raw
//! upstream bytes, never panics, and keeps bounded memory whatever it is fed.
//!
//! # How provider fields map onto [`Usage`]
//!
//! | provider field                                    | `input` | `output` | `cached_input` |
//! |---------------------------------------------------|---------|----------|----------------|
//! | OpenAI `prompt_tokens` / `input_tokens`           | +       |          |                |
//! | OpenAI `completion_tokens` / `output_tokens`      |         | =        |                |
//! | provider field                                    | `input` | `output` | `cached_input` | `cache_write` | `reasoning` |
//! |---------------------------------------------------|---------|----------|----------------|---------------|-------------|
//! | OpenAI `prompt_tokens` / `input_tokens`           | +       |          |                |               |             |
//! | OpenAI `completion_tokens` / `output_tokens`      |         | =        |                |               |             |
//! | OpenAI `*_tokens_details.cached_tokens`           |         |          | +              |               |             |
//! | OpenAI `*_tokens_details.reasoning_tokens`        |         |          |                |               | =           |
//! | Anthropic `input_tokens`                          | +       |          |                |               |             |
//! | Anthropic `cache_creation_input_tokens`           | +       |          |                | =             |             |
//! | Anthropic `cache_read_input_tokens`               | +       |          | +              |               |             |
//! | Anthropic `output_tokens`                         |         | =        |                |               |             |
//! | `total_tokens`, only when nothing above is given  | =       |          |                |               |             |
//!
//! (`+`: added into the field; `=`: is the field.)
//!
//! OpenAI's input counts already include cached tokens; Anthropic's `input_tokens` does not,
//! so its cache writes and reads are added in. `input_tokens` is then every input token the
//! provider billed, for both, so quotas count them all; `cached_input_tokens` (prompt-cache
//! reads) and `cache_write_tokens` (prompt-cache writes) are parts of it, priced at their own
//! rates, and together never more than `input_tokens`. Output counts include reasoning and
//! thinking tokens at both providers; `reasoning_tokens` is that part, where OpenAI reports it.
//!
//! Usage objects are merged field by field, the latest value of a field winning: OpenAI's
//! final chunk and Anthropic's cumulative `message_delta` counts then come out right, and an
//! aborted stream keeps what it saw (Anthropic's `message_start` input and initial output).
//!
//! Fuzz entry points (all take raw bytes): [`from_json`], [`from_sse`], [`inspect_request`],
//! [`with_stream_usage`], and the incremental [`SseUsage::feed`] / [`JsonUsage::feed`].
//!
//! Where usage is looked for: `usage` of the top-level object, or of its `message`
//! (Anthropic `message_start`) or `response` (OpenAI Responses stream events) object.

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use crate::policy::json_edit;

/// Tokens used by one request. See the module doc for the provider mapping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Every input token billed, cache writes and reads included.
    pub input_tokens: u64,
    /// Every output token billed, reasoning included.
    pub output_tokens: u64,
    /// The part of `input_tokens` read from a prompt cache.
    pub cached_input_tokens: u64,
    /// The part of `input_tokens` written to a prompt cache.
    pub cache_write_tokens: u64,
    /// The part of `output_tokens` spent on reasoning, where the provider says.
    pub reasoning_tokens: u64,
}

impl Usage {
    /// Input plus output tokens (cached tokens are already part of input).
    pub fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// Where a record's usage came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageSource {
    Json,
    Sse,
    /// Counted by the filter from what a stream delivered, because the stream ended before the
    /// provider reported its usage.
    Estimate,
    None,
}

impl UsageSource {
    /// `json`, `sse`, `estimate` or `none`, as written in records.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageSource::Json => "json",
            UsageSource::Sse => "sse",
            UsageSource::Estimate => "estimate",
            UsageSource::None => "none",
        }
    }
}

/// Longest model name kept as it is.
const MAX_MODEL_NAME_BYTES: usize = 256;

/// A model name as records, rate-limit descriptors and prices may use it: the name itself when
/// it is 1-256 bytes of printable ASCII without spaces, `other` for any other non-empty text (it
/// came from a client or an upstream: no control bytes, no unbounded strings reach a log line
/// or a descriptor), `None` for an empty one.
pub fn model_name(raw: &str) -> Option<String> {
    if raw.is_empty() {
        return None;
    }
    let clean = raw.len() <= MAX_MODEL_NAME_BYTES && raw.bytes().all(|b| b.is_ascii_graphic());
    Some(if clean {
        raw.to_string()
    } else {
        "other".to_string()
    })
}

/// True for a `content-type` of `text/event-stream` (any case, parameters ignored).
pub fn is_event_stream(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream"))
}

// === Requests ===

/// What the request body says. All fields are empty when the body is not a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestBody {
    /// `model`, when a string.
    pub model: Option<String>,
    /// The largest of `max_tokens`, `max_completion_tokens` and `max_output_tokens` given.
    pub max_output_tokens: Option<u64>,
    /// Completions asked for: the larger of `n` and `best_of` (both billed), at least 1.
    pub choices: u64,
    /// `stream` is `true`.
    pub stream: bool,
    /// `stream_options.include_usage` is `true`.
    pub include_usage: bool,
    /// The body names an `anthropic_version` (Anthropic on Bedrock or Vertex).
    pub anthropic_version: bool,
    /// A member that sizes the output (an output limit, `n`, `best_of`) appears twice:
    /// upstreams disagree on which one counts.
    pub ambiguous: bool,
}

impl Default for RequestBody {
    fn default() -> Self {
        RequestBody {
            model: None,
            max_output_tokens: None,
            choices: 1,
            stream: false,
            include_usage: false,
            anthropic_version: false,
            ambiguous: false,
        }
    }
}

impl RequestBody {
    /// Output tokens to reserve: `max_output_tokens` (else `default`) times `choices`.
    pub fn output_estimate(&self, default: u64) -> u64 {
        self.max_output_tokens
            .unwrap_or(default)
            .saturating_mul(self.choices.max(1))
    }
}

/// Reads the request body. Duplicate keys: the last one wins, as at the upstreams. Only the
/// top-level fields above are materialised; the rest (messages, images) is skipped unallocated.
pub fn inspect_request(body: &[u8]) -> RequestBody {
    serde_json::from_slice::<RequestBody>(body).unwrap_or_default()
}

/// Input tokens to reserve for a request body of `body_len` bytes: one token per 4 bytes,
/// rounded up. Real tokenizers average about 4 bytes of text per token and the JSON framing
/// adds bytes, so this is usually an over-estimate; the real usage settles it.
pub fn estimate_input_tokens(body_len: usize) -> u64 {
    u64::try_from(body_len.div_ceil(4)).unwrap_or(u64::MAX)
}

impl<'de> Deserialize<'de> for RequestBody {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RequestVisitor)
    }
}

struct RequestVisitor;

impl<'de> Visitor<'de> for RequestVisitor {
    type Value = RequestBody;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RequestBody, A::Error> {
        let mut body = RequestBody::default();
        // max_tokens, max_completion_tokens, max_output_tokens; n, best_of.
        let mut max = [None; 3];
        let mut choices = [None; 2];
        // Which of those five members were seen, in the same order.
        let mut seen = [false; 5];
        while let Some(key) = map.next_key::<String>()? {
            let (index, slot) = match key.as_str() {
                "max_tokens" => (0, max.get_mut(0)),
                "max_completion_tokens" => (1, max.get_mut(1)),
                "max_output_tokens" => (2, max.get_mut(2)),
                "n" => (3, choices.get_mut(0)),
                "best_of" => (4, choices.get_mut(1)),
                _ => (0, None),
            };
            if let Some(slot) = slot {
                if let Some(seen) = seen.get_mut(index) {
                    body.ambiguous |= std::mem::replace(seen, true);
                }
                *slot = token_count(&map.next_value::<Value>()?);
                continue;
            }
            match key.as_str() {
                "model" => body.model = as_string(map.next_value::<Value>()?),
                "stream" => body.stream = map.next_value::<Value>()? == Value::Bool(true),
                "stream_options" => {
                    let options = map.next_value::<Value>()?;
                    body.include_usage = options.get("include_usage") == Some(&Value::Bool(true));
                }
                "anthropic_version" => {
                    map.next_value::<IgnoredAny>()?;
                    body.anthropic_version = true;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        body.max_output_tokens = max.into_iter().flatten().max();
        body.choices = choices.into_iter().flatten().max().unwrap_or(1).max(1);
        Ok(body)
    }
}

fn as_string(value: Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// A token count: a non-negative integer (an integral float such as `12.0` too).
pub fn token_count(value: &Value) -> Option<u64> {
    if let Some(n) = value.as_u64() {
        return Some(n);
    }
    let f = value.as_f64()?;
    // Below 2^53 every integral f64 converts exactly.
    (f >= 0.0 && f.fract() == 0.0 && f < 9_007_199_254_740_992.0).then_some(f as u64)
}

// === Asking for usage in OpenAI streams ===

/// For a streaming OpenAI chat-completions or completions request (by `path`, which may carry
/// a prefix and a query) whose `stream_options.include_usage` is not `true`: the body with it
/// set to `true`. Only that member is inserted or replaced; every other byte is kept. `None`
/// when there is nothing to change, the body is not a JSON object, or the API takes no such
/// option (Anthropic Messages, OpenAI Responses, embeddings; a body with `anthropic_version`).
/// The caller must fix `content-length` when it swaps the body.
pub fn with_stream_usage(path: &str, body: &[u8]) -> Option<Vec<u8>> {
    if !takes_stream_options(path) {
        return None;
    }
    let request = serde_json::from_slice::<RequestBody>(body).ok()?;
    if !request.stream || request.include_usage || request.anthropic_version {
        return None;
    }
    let edited = set_include_usage(body)?;
    // Never hand on a body that does not say what we meant.
    let check = serde_json::from_slice::<RequestBody>(&edited).ok()?;
    (check.include_usage && check.stream).then_some(edited)
}

/// OpenAI's `/chat/completions` and legacy `/completions` (Azure deployments too).
pub fn takes_stream_options(path: &str) -> bool {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    path.trim_end_matches('/').ends_with("/completions")
}

/// Inserts or fixes `stream_options.include_usage: true` in a valid JSON object.
fn set_include_usage(body: &[u8]) -> Option<Vec<u8>> {
    json_edit::set(body, &["stream_options", "include_usage"], b"true").ok()
}

// === Responses ===

/// Usage and the response's `model` from a complete JSON response body of any supported API.
/// `None` when the body is not valid JSON or holds no usage.
pub fn from_json(body: &[u8]) -> Option<(Usage, Option<String>)> {
    serde_json::from_slice::<IgnoredAny>(body).ok()?;
    let mut seen = Seen::default();
    Scanner::default().scan(body, &mut seen);
    seen.result()
}

/// Incremental reader for a JSON response body, for when the body is not buffered: feed
/// every chunk as it passes. Same places and memory bound as [`SseUsage`], but the body is
/// not validated as a whole: a usage object counts once it is complete and well-formed, so a
/// body cut short after its usage still yields it. [`from_json`] is the strict, buffered one.
#[derive(Default)]
pub struct JsonUsage {
    json: Scanner,
    seen: Seen,
}

impl JsonUsage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads one chunk of the response body.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.json.scan(chunk, &mut self.seen);
    }

    /// Usage seen so far; `None` when no usage was seen at all.
    pub fn usage(&self) -> Option<Usage> {
        self.seen.counts.usage()
    }

    /// The latest `model` the body named.
    pub fn model(&self) -> Option<&str> {
        self.seen.model.as_deref()
    }

    /// The object ids the body named.
    pub fn ids(&self) -> &AnswerIds {
        &self.seen.ids
    }
}

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

// === Finding usage in JSON text, incrementally ===

/// Longest usage object kept for parsing; a longer one is ignored (real ones are < 1 KiB).
const MAX_USAGE_BYTES: usize = 4096;
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
        b"usage" => Key::Usage,
        b"model" => Key::Model,
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
struct Scanner {
    count_text: bool,
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
    kept: Vec<u8>,
    usage: Option<Capture>,
    /// Bytes of generated text seen since the last [`Scanner::reset`].
    text_bytes: u64,
}

/// A `usage` object being copied, and the depth its closing brace returns to.
struct Capture {
    depth: usize,
    bytes: Vec<u8>,
}

impl Scanner {
    fn counting_text() -> Scanner {
        Scanner {
            count_text: true,
            ..Scanner::default()
        }
    }

    /// Back to the start of a new JSON text, keeping buffer capacity and the mode.
    fn reset(&mut self) {
        let mut kept = std::mem::take(&mut self.kept);
        kept.clear();
        *self = Scanner {
            kept,
            count_text: self.count_text,
            ..Scanner::default()
        };
    }

    fn scan(&mut self, data: &[u8], seen: &mut Seen) {
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
        } else if self.in_object() && (self.count_text || (1..=2).contains(&self.depth)) {
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
        let depth = self.depth;
        if let Some(slot) = depth.checked_sub(1).and_then(|d| self.keys.get_mut(d)) {
            *slot = key;
        }
    }

    /// The key of the value about to start, where it matters for usage.
    fn value_key(&self) -> Key {
        let [outer, inner] = self.keys;
        match (self.depth, outer, inner) {
            (1, key, _) => key,
            (2, Key::Envelope, key @ (Key::Usage | Key::Model)) => key,
            _ => Key::Other,
        }
    }

    /// The string field [`Seen`] keeps that the value about to start is, if any.
    fn value_field(&self) -> Option<Field> {
        let [outer, inner] = self.keys;
        match (self.depth, outer, inner) {
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
        let depth = self.depth;
        if let Some(slot) = depth.checked_sub(1).and_then(|d| self.keys.get_mut(d)) {
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
struct Seen {
    counts: Counts,
    model: Option<String>,
    /// `model` as raw JSON string bytes, to skip decoding a repeat.
    model_raw: Vec<u8>,
    ids: AnswerIds,
}

impl Seen {
    fn add_usage(&mut self, object: &[u8]) {
        if let Ok(value) = serde_json::from_slice::<Value>(object) {
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

    fn result(&self) -> Option<(Usage, Option<String>)> {
        Some((self.counts.usage()?, self.model.clone()))
    }
}

/// A JSON string's raw bytes (between the quotes), decoded.
fn decode_string(raw: &[u8]) -> Option<String> {
    serde_json::from_slice::<String>(&[b"\"", raw, b"\""].concat()).ok()
}

/// The provider's own counts, as last reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    prompt: Option<u64>,
    completion: Option<u64>,
    input: Option<u64>,
    output: Option<u64>,
    cache_creation: Option<u64>,
    cache_read: Option<u64>,
    cached: Option<u64>,
    reasoning: Option<u64>,
    total: Option<u64>,
}

impl Counts {
    fn from_value(usage: &Value) -> Counts {
        let count = |name: &str| usage.get(name).and_then(token_count);
        let detail = |details: [&str; 2], name: &str| {
            details
                .iter()
                .find_map(|d| usage.get(d)?.get(name).and_then(token_count))
        };
        Counts {
            prompt: count("prompt_tokens"),
            completion: count("completion_tokens"),
            input: count("input_tokens"),
            output: count("output_tokens"),
            cache_creation: count("cache_creation_input_tokens"),
            cache_read: count("cache_read_input_tokens"),
            cached: detail(
                ["prompt_tokens_details", "input_tokens_details"],
                "cached_tokens",
            ),
            reasoning: detail(
                ["completion_tokens_details", "output_tokens_details"],
                "reasoning_tokens",
            ),
            total: count("total_tokens"),
        }
    }

    /// Fields `newer` reports replace ours; the others stay.
    fn merge(&mut self, newer: Counts) {
        let fields = [
            (&mut self.prompt, newer.prompt),
            (&mut self.completion, newer.completion),
            (&mut self.input, newer.input),
            (&mut self.output, newer.output),
            (&mut self.cache_creation, newer.cache_creation),
            (&mut self.cache_read, newer.cache_read),
            (&mut self.cached, newer.cached),
            (&mut self.reasoning, newer.reasoning),
            (&mut self.total, newer.total),
        ];
        for (ours, theirs) in fields {
            if theirs.is_some() {
                *ours = theirs;
            }
        }
    }

    fn usage(&self) -> Option<Usage> {
        if *self == Counts::default() {
            return None;
        }
        let base = self.input.or(self.prompt);
        let output = self.output.or(self.completion).unwrap_or(0);
        let named = [
            base,
            self.output.or(self.completion),
            self.cache_creation,
            self.cache_read,
        ];
        let input = if named.iter().all(Option::is_none) {
            self.total.unwrap_or(0)
        } else {
            [base, self.cache_creation, self.cache_read]
                .into_iter()
                .flatten()
                .fold(0u64, u64::saturating_add)
        };
        let cached = self
            .cache_read
            .unwrap_or(0)
            .saturating_add(self.cached.unwrap_or(0))
            .min(input);
        let cache_write = self
            .cache_creation
            .unwrap_or(0)
            .min(input.saturating_sub(cached));
        Some(Usage {
            input_tokens: input,
            output_tokens: output,
            cached_input_tokens: cached,
            cache_write_tokens: cache_write,
            reasoning_tokens: self.reasoning.unwrap_or(0).min(output),
        })
    }
}

#[cfg(test)]
mod tests;
