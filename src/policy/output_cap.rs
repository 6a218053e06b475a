//! Zero-overshoot admission (`plans.<p>.output_cap: "clamp"`): a request's output limit is
//! held to what its tenant's token windows and budget still cover, so the reservations of
//! concurrent requests can never add up to more than is left.
//!
//! When the request body is read, its own provisional reservation is returned and the room
//! left is measured: the least left in any token window, and the budget left priced at the
//! model's output rate (after the input estimate). The output limit per choice becomes the
//! smallest of the client's limit and that room; when the room is under `min_output_tokens`
//! (and under what the client asked), the request is refused as a full window would be. The
//! request then reserves its input estimate plus the capped output times its choices.
//!
//! A body that names no output limit gets one: `usage.default_reservation_tokens` (what is
//! reserved for it), lowered to the room. Without it the model could write past what was
//! reserved, and no limit would hold by construction.

use crate::policy::cost::{self, Price};
use crate::policy::denial::Reason;
use crate::policy::json_edit::{self, EditError};
use crate::policy::plan::{Limits, OutputCap};
use crate::policy::provider_api::{BedrockOperation, GeminiMethod, ProviderApi};
use crate::policy::quota::{self, Demand, Kind, QuotaState, Refusal, Reservation, WindowStatus};
use crate::policy::usage::{self, RequestBody};

use serde_json::{Map, Value};

/// An API whose request body carries an output limit the filter can rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// OpenAI `/chat/completions`: `max_completion_tokens` (and the older `max_tokens`).
    ChatCompletions,
    /// OpenAI's legacy `/completions`: `max_tokens`.
    Completions,
    /// OpenAI `/responses`: `max_output_tokens`.
    Responses,
    /// Anthropic `/v1/messages`: `max_tokens`.
    Messages,
    /// Anthropic Messages through Bedrock (`invoke`, `invoke-with-response-stream`) or Vertex
    /// AI (`rawPredict`, `streamRawPredict`): `max_tokens`, in a body that names an
    /// `anthropic_version`. Other models' bodies put their limits elsewhere: they are refused.
    PlatformMessages,
    /// Gemini `generateContent` and `streamGenerateContent`: `generationConfig.maxOutputTokens`
    /// (every spelling Google's JSON parser accepts).
    GenerateContent,
    /// Bedrock `converse` and `converse-stream`: `inferenceConfig.maxTokens`.
    Converse,
}

impl Api {
    /// The API of a `POST` to `path` (a prefix and a query may be on it); `path_api`: what
    /// [`crate::policy::provider_api::from_path`] says of it.
    pub fn of(method: &str, path: &str, path_api: Option<ProviderApi>) -> Option<Api> {
        if method != "POST" {
            return None;
        }
        match path_api {
            Some(ProviderApi::Gemini(method)) => {
                return match method {
                    GeminiMethod::GenerateContent | GeminiMethod::StreamGenerateContent => {
                        Some(Api::GenerateContent)
                    }
                    GeminiMethod::RawPredict | GeminiMethod::StreamRawPredict => {
                        Some(Api::PlatformMessages)
                    }
                    GeminiMethod::Other => None,
                }
            }
            Some(ProviderApi::Bedrock(operation)) => {
                return Some(match operation {
                    BedrockOperation::Converse | BedrockOperation::ConverseStream => Api::Converse,
                    BedrockOperation::Invoke | BedrockOperation::InvokeWithResponseStream => {
                        Api::PlatformMessages
                    }
                })
            }
            Some(ProviderApi::AzureDeployment) | None => {}
        }
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let mut segments = path.rsplit('/').filter(|s| !s.is_empty());
        match (segments.next(), segments.next()) {
            (Some("completions"), Some("chat")) => Some(Api::ChatCompletions),
            (Some("completions"), _) => Some(Api::Completions),
            (Some("responses"), _) => Some(Api::Responses),
            (Some("messages"), Some("v1")) => Some(Api::Messages),
            _ => None,
        }
    }

    /// The output-limit members the API reads (as paths of keys); a body's existing ones are
    /// all lowered.
    fn fields(self) -> &'static [&'static [&'static str]] {
        match self {
            Api::ChatCompletions => &[&["max_completion_tokens"], &["max_tokens"]],
            Api::Completions | Api::Messages | Api::PlatformMessages => &[&["max_tokens"]],
            Api::Responses => &[&["max_output_tokens"]],
            Api::GenerateContent => &[
                &["generationConfig", "maxOutputTokens"],
                &["generationConfig", "max_output_tokens"],
                &["generation_config", "maxOutputTokens"],
                &["generation_config", "max_output_tokens"],
            ],
            Api::Converse => &[&["inferenceConfig", "maxTokens"]],
        }
    }

    /// The member set in a body that names none.
    fn preferred(self) -> &'static [&'static str] {
        self.fields().first().copied().unwrap_or(&["max_tokens"])
    }
}

/// What the request body asks for, and what it costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    pub input_tokens: u64,
    /// The body's output limit per choice, when it names one.
    pub requested: Option<u64>,
    /// Completions asked for (`n`, `best_of`), at least 1.
    pub choices: u64,
    /// The model's price; `None` when the pricing table has none (the budget then holds no
    /// estimate for the request, capped or not).
    pub price: Option<Price>,
    /// Output tokens reserved for a body that names no limit.
    pub default_output: u64,
}

impl Ask {
    pub fn of(body: &RequestBody, input_tokens: u64, price: Option<Price>, default: u64) -> Self {
        Ask {
            input_tokens,
            requested: body.max_output_tokens,
            choices: body.choices.max(1),
            price,
            default_output: default,
        }
    }

    fn demand(&self, per_choice: u64) -> Demand {
        let output = per_choice.saturating_mul(self.choices);
        Demand {
            tokens: self.input_tokens.saturating_add(output),
            micro_usd: self.micro_usd(output),
        }
    }

    fn micro_usd(&self, output: u64) -> u64 {
        self.price.map_or(0, |price| {
            cost::estimate(&price, self.input_tokens, output).micro_usd_ceil()
        })
    }
}

/// The request's output limit, as admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    /// Output tokens per choice the upstream may write.
    pub per_choice: u64,
    /// The body must be changed to say so (the client asked for more, or named no limit).
    pub rewrite: bool,
    pub demand: Demand,
}

/// The output limit that fits the room left in `windows` (the request's own reservation not
/// counted), or why none does.
pub fn decide(ask: &Ask, windows: &[WindowStatus], rule: OutputCap) -> Result<Cap, Refusal> {
    let wanted = ask.requested.unwrap_or(ask.default_output);
    let token_room = windows
        .iter()
        .filter(|w| w.kind == Kind::Tokens)
        .min_by_key(|w| w.remaining)
        .map(|w| {
            (
                w.remaining.saturating_sub(ask.input_tokens) / ask.choices,
                w,
            )
        });
    let budget_room = windows
        .iter()
        .find(|w| w.kind == Kind::Budget)
        .map(|w| (budget_room(ask, w.remaining, wanted), w));
    let mut per_choice = wanted;
    let mut binding = None;
    for (room, window) in [token_room, budget_room].into_iter().flatten() {
        if room < per_choice {
            per_choice = room;
            binding = Some(window);
        }
    }
    if let Some(window) = binding {
        if per_choice < rule.min_output_tokens {
            let reason = match window.kind {
                Kind::Budget => Reason::BudgetExceeded,
                _ => Reason::TokenQuotaExceeded,
            };
            return Err(Refusal {
                reason,
                retry_after: window.resets_in.max(1),
                windows: windows.to_vec(),
            });
        }
    }
    Ok(Cap {
        per_choice,
        rewrite: binding.is_some() || ask.requested.is_none(),
        demand: ask.demand(per_choice),
    })
}

/// The most output tokens per choice (up to `wanted`) whose estimate, with the input, fits in
/// `left` micro-USD. Estimates round up, so the answer is searched rather than divided.
fn budget_room(ask: &Ask, left: u64, wanted: u64) -> u64 {
    let fits = |per_choice: u64| ask.demand(per_choice).micro_usd <= left;
    if fits(wanted) {
        return wanted;
    }
    let (mut lo, mut hi) = (0, wanted);
    if !fits(lo) {
        return 0;
    }
    // fits(lo) and !fits(hi)
    while hi.saturating_sub(lo) > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Replaces the request's provisional reservation by one for its capped output, or refuses
/// it: one read-modify-write of the tenant's counters.
pub fn reserve(
    state: &QuotaState,
    limits: &Limits,
    now: u64,
    provisional: &Reservation,
    ask: &Ask,
    rule: OutputCap,
) -> Result<(QuotaState, Reservation, Cap), Refusal> {
    let (returned, _) = quota::reserve(state, limits, now, provisional, Demand::default());
    let windows = quota::statuses(&returned, limits, now);
    let cap = decide(ask, &windows, rule)?;
    let (next, reservation) = quota::reserve(state, limits, now, provisional, cap.demand);
    Ok((next, reservation, cap))
}

/// `body` with its output limit set to `per_choice`: every limit member the API reads that
/// asks for more is lowered, and the API's own member is added when the body names none.
/// Refused (as the body would be ambiguous) when a member appears twice.
pub fn apply(body: &[u8], api: Api, per_choice: u64) -> Result<Vec<u8>, EditError> {
    let members = crate::policy::json::from_slice::<Map<String, Value>>(body)
        .map_err(|_| EditError::NotAnObject)?;
    if api == Api::PlatformMessages && !members.contains_key("anthropic_version") {
        // Not an Anthropic body: its model reads its limit elsewhere.
        return Err(EditError::NotAnObject);
    }
    let value = per_choice.to_string();
    let mut out = None;
    let mut named = false;
    for field in api.fields() {
        let Some(current) = member(&members, field) else {
            continue;
        };
        named = true;
        // Set even when it already fits: `json_edit` refuses a member named twice.
        let fitting = usage::token_count(current).filter(|n| *n <= per_choice);
        let value = fitting.map_or_else(|| value.clone(), |n| n.to_string());
        let edited = json_edit::set(out.as_deref().unwrap_or(body), field, value.as_bytes())?;
        out = Some(edited);
    }
    if !named {
        out = Some(json_edit::set(body, api.preferred(), value.as_bytes())?);
    }
    let out = out.unwrap_or_else(|| body.to_vec());
    // Never hand on a body that does not say what was meant.
    let said = usage::inspect_request(&out).max_output_tokens;
    if said.is_some_and(|n| n <= per_choice) {
        Ok(out)
    } else {
        Err(EditError::NotAnObject)
    }
}

/// The member at `path` (object keys, outermost first), when there is one.
fn member<'a>(members: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    rest.iter()
        .try_fold(members.get(*first)?, |value, key| value.get(key))
}

#[cfg(test)]
mod tests;
