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
}

impl Counts {
    pub(super) fn from_value(usage: &Value) -> Counts {
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
