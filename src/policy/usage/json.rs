//! Usage in a JSON response body: read whole ([`from_json`]) or chunk by chunk ([`JsonUsage`]).

use serde::de::IgnoredAny;

use super::scanner::{AnswerIds, Scanner, Seen};
use super::{Delivered, Usage};

/// Usage and the response's `model` from a complete JSON response body of any supported API.
/// `None` when the body is not valid JSON or holds no usage.
pub fn from_json(body: &[u8]) -> Option<(Usage, Option<String>)> {
    crate::policy::json::from_slice::<IgnoredAny>(body).ok()?;
    let mut seen = Seen::default();
    Scanner::default().scan(body, &mut seen);
    seen.result()
}

/// Incremental reader for a JSON response body, for when the body is not buffered: feed
/// every chunk as it passes. Same places and memory bound as [`SseUsage`](super::SseUsage), but the body is
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

    /// A reader for a stream sent as one JSON array of answers (Gemini's
    /// `streamGenerateContent` without `alt=sse`): each element is read as a whole answer, and
    /// the generated text they deliver is counted, as [`crate::policy::usage::SseUsage`] does
    /// for events.
    pub fn answers_in_array() -> Self {
        JsonUsage {
            json: Scanner::answers_in_array(),
            seen: Seen::default(),
        }
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

    /// Generated text the answers of an array delivered so far (nothing for other readers).
    pub fn delivered(&self) -> Delivered {
        let (events, bytes) = self.json.answers_delivered();
        Delivered { events, bytes }
    }
}

#[cfg(test)]
mod tests;
