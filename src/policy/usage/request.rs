//! What a request body says about its usage: model, output limits, choices, stream flags.

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::token_count;

/// What the request body says. All fields are empty when the body is not a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestBody {
    /// `model`, when a string.
    pub model: Option<String>,
    /// The largest of `max_tokens`, `max_completion_tokens`, `max_output_tokens` and the
    /// output config's limit (Gemini `generationConfig.maxOutputTokens`, Bedrock
    /// `inferenceConfig.maxTokens`) given.
    pub max_output_tokens: Option<u64>,
    /// Completions asked for: the larger of `n`, `best_of` (both billed) and Gemini's
    /// `generationConfig.candidateCount`, at least 1.
    pub choices: u64,
    /// `stream` is `true`.
    pub stream: bool,
    /// `stream_options.include_usage` is `true`.
    pub include_usage: bool,
    /// The body names an `anthropic_version` (Anthropic on Bedrock or Vertex).
    pub anthropic_version: bool,
    /// A member that sizes the output (an output limit, `n`, `best_of`, an output config or a
    /// member of it) appears twice, also spelled another way the upstream accepts
    /// (`generation_config`, `max_output_tokens`): upstreams disagree on which one counts.
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
    crate::policy::json::from_slice::<RequestBody>(body).unwrap_or_default()
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
        // Which of those five members were seen, in the same order, then an output config.
        let mut seen = [false; 6];
        let mut config = OutputConfig::default();
        while let Some(key) = map.next_key::<String>()? {
            if OUTPUT_CONFIGS.contains(&key.as_str()) {
                if let Some(seen) = seen.get_mut(5) {
                    body.ambiguous |= std::mem::replace(seen, true);
                }
                let next = map
                    .next_value::<Option<OutputConfig>>()?
                    .unwrap_or_default();
                config = OutputConfig {
                    limit: config.limit.max(next.limit),
                    choices: config.choices.max(next.choices),
                    ambiguous: config.ambiguous || next.ambiguous,
                };
                continue;
            }
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
        body.ambiguous |= config.ambiguous;
        body.max_output_tokens = max.into_iter().chain([config.limit]).flatten().max();
        body.choices = choices
            .into_iter()
            .chain([config.choices])
            .flatten()
            .max()
            .unwrap_or(1)
            .max(1);
        Ok(body)
    }
}

/// The members holding an output config: Gemini's `generationConfig` (also `generation_config`:
/// Google's JSON parsers accept a field's proto name too) and Bedrock Converse's
/// `inferenceConfig`.
const OUTPUT_CONFIGS: [&str; 3] = ["generationConfig", "generation_config", "inferenceConfig"];

/// What an output config says: its output limit (`maxOutputTokens` or `max_output_tokens`;
/// Bedrock's `maxTokens`) and candidates (`candidateCount` or `candidate_count`).
#[derive(Default)]
struct OutputConfig {
    limit: Option<u64>,
    choices: Option<u64>,
    ambiguous: bool,
}

impl<'de> Deserialize<'de> for OutputConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(OutputConfigVisitor)
    }
}

struct OutputConfigVisitor;

impl<'de> Visitor<'de> for OutputConfigVisitor {
    type Value = OutputConfig;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OutputConfig, A::Error> {
        let mut config = OutputConfig::default();
        let (mut limit_seen, mut choices_seen) = (false, false);
        while let Some(key) = map.next_key::<String>()? {
            let (slot, seen) = match key.as_str() {
                "maxOutputTokens" | "max_output_tokens" | "maxTokens" => {
                    (&mut config.limit, &mut limit_seen)
                }
                "candidateCount" | "candidate_count" => (&mut config.choices, &mut choices_seen),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            config.ambiguous |= std::mem::replace(seen, true);
            *slot = token_count(&map.next_value::<Value>()?);
        }
        Ok(config)
    }
}

fn as_string(value: Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
