//! What only OpenAI needs: its streams report usage only when asked
//! (`stream_options.include_usage`).

use super::RequestBody;
use crate::policy::json_edit;

/// For a streaming OpenAI chat-completions or completions request (by `path`, which may carry
/// a prefix and a query) whose `stream_options.include_usage` is not `true`: the body with it
/// set to `true`. Only that member is inserted or replaced; every other byte is kept. `None`
/// when there is nothing to change, the body is not a JSON object, or the API takes no such
/// option (Anthropic Messages, OpenAI Responses, embeddings; a body with `anthropic_version`).
/// The caller must fix `content-length` when it swaps the body.
pub fn with_stream_usage(path: &str, body: &[u8]) -> Option<Vec<u8>> {
    // JSON text is UTF-8; serde skips unread strings without checking them.
    if !takes_stream_options(path) || std::str::from_utf8(body).is_err() {
        return None;
    }
    let request = crate::policy::json::from_slice::<RequestBody>(body).ok()?;
    if !request.stream || request.include_usage || request.anthropic_version {
        return None;
    }
    let edited = set_include_usage(body)?;
    // Never hand on a body that does not say what we meant.
    let check = crate::policy::json::from_slice::<RequestBody>(&edited).ok()?;
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

#[cfg(test)]
mod tests;
