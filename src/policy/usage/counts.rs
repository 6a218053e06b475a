//! What the providers report, merged field by field and mapped onto [`Usage`] (the table in
//! the module doc of `usage`).

use serde_json::Value;

use super::{token_count, Usage};

/// The provider's own counts, as last reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Counts {
    prompt: Option<u64>,
    completion: Option<u64>,
    input: Option<u64>,
    output: Option<u64>,
    cache_creation: Option<u64>,
    cache_read: Option<u64>,
    cached: Option<u64>,
    reasoning: Option<u64>,
    total: Option<u64>,
    /// Gemini's output without its thoughts (`candidatesTokenCount`).
    candidates: Option<u64>,
    /// Gemini's thinking tokens (`thoughtsTokenCount`): output, like reasoning.
    thoughts: Option<u64>,
    /// Gemini's tool-use prompt (`toolUsePromptTokenCount`): input besides the prompt.
    tool_prompt: Option<u64>,
}

impl Counts {
    pub(super) fn from_value(usage: &Value) -> Counts {
        // Each slot has one name per provider family (snake_case: OpenAI, Anthropic;
        // camelCase: Bedrock; `*TokenCount`: Gemini); a usage object speaks one of them.
        let count = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| usage.get(n).and_then(token_count))
        };
        let detail = |details: [&str; 2], name: &str| {
            details
                .iter()
                .find_map(|d| usage.get(d)?.get(name).and_then(token_count))
        };
        Counts {
            prompt: count(&["prompt_tokens", "promptTokenCount"]),
            completion: count(&["completion_tokens"]),
            input: count(&["input_tokens", "inputTokens"]),
            output: count(&["output_tokens", "outputTokens"]),
            cache_creation: count(&["cache_creation_input_tokens", "cacheWriteInputTokens"]),
            cache_read: count(&["cache_read_input_tokens", "cacheReadInputTokens"]),
            cached: detail(
                ["prompt_tokens_details", "input_tokens_details"],
                "cached_tokens",
            )
            .or_else(|| count(&["cachedContentTokenCount"])),
            reasoning: detail(
                ["completion_tokens_details", "output_tokens_details"],
                "reasoning_tokens",
            ),
            total: count(&["total_tokens", "totalTokens", "totalTokenCount"]),
            candidates: count(&["candidatesTokenCount"]),
            thoughts: count(&["thoughtsTokenCount"]),
            tool_prompt: count(&["toolUsePromptTokenCount"]),
        }
    }

    /// Fields `newer` reports replace ours; the others stay.
    pub(super) fn merge(&mut self, newer: Counts) {
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
            (&mut self.candidates, newer.candidates),
            (&mut self.thoughts, newer.thoughts),
            (&mut self.tool_prompt, newer.tool_prompt),
        ];
        for (ours, theirs) in fields {
            if theirs.is_some() {
                *ours = theirs;
            }
        }
    }

    pub(super) fn usage(&self) -> Option<Usage> {
        if *self == Counts::default() {
            return None;
        }
        let base = match (self.input.or(self.prompt), self.tool_prompt) {
            (Some(prompt), Some(tools)) => Some(prompt.saturating_add(tools)),
            (prompt, tools) => prompt.or(tools),
        };
        // Gemini reports its thoughts beside the candidates; both are billed as output.
        let gemini_output = match (self.candidates, self.thoughts) {
            (None, None) => None,
            (c, t) => Some(c.unwrap_or(0).saturating_add(t.unwrap_or(0))),
        };
        let reported_output = self.output.or(self.completion).or(gemini_output);
        let output = reported_output.unwrap_or(0);
        let named = [base, reported_output, self.cache_creation, self.cache_read];
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
            reasoning_tokens: self.reasoning.or(self.thoughts).unwrap_or(0).min(output),
        })
    }
}

#[cfg(test)]
mod tests;
