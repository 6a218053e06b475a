//! Token usage: what a request asks for, and what the upstream says it used.
//!
//! Reads OpenAI (chat completions, completions, Responses API, embeddings), Anthropic
//! (Messages), Gemini (`generateContent`, `streamGenerateContent`) and Bedrock (`Converse`,
//! `ConverseStream`, `InvokeModel*` of Anthropic models) bodies: whole JSON, JSON arrays, SSE
//! and AWS event streams, fed chunk by chunk. Every parser takes raw
//! upstream bytes, never panics, and keeps bounded memory whatever it is fed.
//!
//! # How provider fields map onto [`Usage`]
//!
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
//! | Bedrock `inputTokens`                             | +       |          |                |               |             |
//! | Bedrock `cacheWriteInputTokens`                   | +       |          |                | =             |             |
//! | Bedrock `cacheReadInputTokens`                    | +       |          | +              |               |             |
//! | Bedrock `outputTokens`                            |         | =        |                |               |             |
//! | Gemini `promptTokenCount`                         | +       |          |                |               |             |
//! | Gemini `toolUsePromptTokenCount`                  | +       |          |                |               |             |
//! | Gemini `cachedContentTokenCount`                  |         |          | +              |               |             |
//! | Gemini `candidatesTokenCount`                     |         | +        |                |               |             |
//! | Gemini `thoughtsTokenCount`                       |         | +        |                |               | =           |
//! | `total_tokens` (`totalTokens`, `totalTokenCount`), only when nothing above is given | = | | | | |
//!
//! (`+`: added into the field; `=`: is the field.)
//!
//! OpenAI's and Gemini's input counts already include cached tokens; Anthropic's and
//! Bedrock's `input_tokens` / `inputTokens` do not, so their cache writes and reads are added
//! in. Gemini's thinking tokens are reported beside its candidates, and added to the output. `input_tokens` is then every input token the
//! provider billed, for both, so quotas count them all; `cached_input_tokens` (prompt-cache
//! reads) and `cache_write_tokens` (prompt-cache writes) are parts of it, priced at their own
//! rates, and together never more than `input_tokens`. Output counts include reasoning and
//! thinking tokens at both providers; `reasoning_tokens` is that part, where OpenAI reports it.
//!
//! Usage objects are merged field by field, the latest value of a field winning: OpenAI's
//! final chunk and Anthropic's cumulative `message_delta` counts then come out right, and an
//! aborted stream keeps what it saw (Anthropic's `message_start` input and initial output).
//!
//! Fuzz entry points (all take raw bytes): [`from_json`], [`from_sse`], [`from_event_stream`],
//! [`inspect_request`], [`with_stream_usage`], and the incremental [`SseUsage::feed`] /
//! [`JsonUsage::feed`] / [`EventStreamUsage::feed`].
//!
//! Where usage is looked for: `usage` (Gemini: `usageMetadata`) of the top-level object, or of
//! its `message` (Anthropic `message_start`) or `response` (OpenAI Responses stream events)
//! object; of each element of a top-level array, for Gemini's streamed JSON array
//! ([`JsonUsage::answers_in_array`]); of each event of an AWS event stream (Bedrock), and of
//! the Anthropic event a Bedrock `chunk` carries ([`EventStreamUsage`]). The response's model
//! is its `model` (Gemini: `modelVersion`).
//!
//! # Layout
//! `request.rs` reads request bodies (model, output limits, stream flags); `openai.rs` asks
//! OpenAI streams for their usage (`stream_options.include_usage`); `scanner.rs` finds usage
//! objects, models and ids in JSON text, incrementally, for both framings: `json.rs` (whole
//! bodies) and `sse.rs` (server-sent events); `counts.rs` merges what the providers report and
//! maps it onto [`Usage`] (the table above); `event_stream.rs` reads AWS event streams
//! (Bedrock). A new provider's usage members go to `counts.rs` (and to `scanner.rs`'s keys when
//! they sit under another name), a new framing beside `json.rs`, `sse.rs` and
//! `event_stream.rs`, and what only one provider needs to a file named for it, as `openai.rs`.

mod counts;
mod event_stream;
mod json;
mod openai;
mod request;
mod scanner;
mod sse;

pub use event_stream::{from_event_stream, EventStreamUsage};
pub use json::{from_json, JsonUsage};
pub use openai::{takes_stream_options, with_stream_usage};
pub use request::{estimate_input_tokens, inspect_request, RequestBody};
pub use scanner::AnswerIds;
pub use sse::{from_sse, Delivered, SseUsage};

use serde_json::Value;

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
    /// An AWS event stream (Bedrock).
    EventStream,
    /// Counted by the filter from what a stream delivered, because the stream ended before the
    /// provider reported its usage.
    Estimate,
    None,
}

impl UsageSource {
    /// `json`, `sse`, `event_stream`, `estimate` or `none`, as written in records.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageSource::Json => "json",
            UsageSource::Sse => "sse",
            UsageSource::EventStream => "event_stream",
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

/// A token count: a non-negative integer (an integral float such as `12.0` too).
pub fn token_count(value: &Value) -> Option<u64> {
    if let Some(n) = value.as_u64() {
        return Some(n);
    }
    let f = value.as_f64()?;
    // Below 2^53 every integral f64 converts exactly.
    (f >= 0.0 && f.fract() == 0.0 && f < 9_007_199_254_740_992.0).then_some(f as u64)
}

#[cfg(test)]
mod tests;
