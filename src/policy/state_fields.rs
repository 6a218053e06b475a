//! Which of the record's fields are set as Envoy filter state (`records.filter_state`). A leaf:
//! the record and the configuration both use it.

use serde::{Deserialize, Deserializer};

use crate::policy::word::{words, Word};

/// A record field Envoy's filter state can carry, as `wasm.<field>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateField {
    Tenant,
    User,
    Decision,
    Reason,
    RequestId,
    Auth,
    KeyId,
    Credential,
    Model,
    InputTokens,
    OutputTokens,
    CachedInputTokens,
    CacheWriteTokens,
    ReasoningTokens,
    CostUsd,
    UsageSource,
}

words!(StateField: "a record field",
    Tenant = "tenant", User = "user", Decision = "decision", Reason = "reason",
    RequestId = "request_id", Auth = "auth", KeyId = "key_id", Credential = "credential",
    Model = "model", InputTokens = "input_tokens", OutputTokens = "output_tokens",
    CachedInputTokens = "cached_input_tokens", CacheWriteTokens = "cache_write_tokens",
    ReasoningTokens = "reasoning_tokens", CostUsd = "cost_usd", UsageSource = "usage_source");

/// `records.filter_state`: the fields set as filter state, a bit each in [`StateField`]'s
/// order. Every field unless the policy lists some: each set costs Envoy a filter-state object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateFields(u16);

impl StateFields {
    pub const ALL: StateFields = StateFields(u16::MAX);

    /// Whether the field named `key` is set.
    fn has(self, key: &str) -> bool {
        StateField::WORDS
            .iter()
            .position(|word| *word == key)
            .is_some_and(|bit| self.0 & (1 << bit) != 0)
    }

    /// Drops the entries of the fields not set (nothing to look up with every field set, the
    /// default).
    pub(crate) fn select(self, entries: &mut Vec<(&'static str, String)>) {
        if self != StateFields::ALL {
            entries.retain(|(key, _)| self.has(key));
        }
    }

    /// Whether no field is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl Default for StateFields {
    fn default() -> Self {
        StateFields::ALL
    }
}

impl<'de> Deserialize<'de> for StateFields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = Vec::<StateField>::deserialize(deserializer)?;
        Ok(StateFields(
            fields
                .iter()
                .fold(0, |bits, field| bits | 1 << *field as u16),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn state_fields_follow_the_words_order() {
        for (bit, field) in StateField::VALUES.iter().enumerate() {
            assert_eq!(*field as usize, bit);
            let word = StateField::WORDS[bit];
            let one = StateFields(1 << bit);
            assert!(one.has(word) && !StateFields(!(1 << bit)).has(word));
        }
        assert_eq!(StateField::WORDS.len(), 16);
    }
}
