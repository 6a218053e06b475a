//! Metering of one admitted request: what it reserves, what its response says it used, what
//! that costs, and what the tenant's quotas are charged for it (the charging rule below). The
//! stream feeds it the request body and response chunks; it never holds the response back
//! (JSON, SSE and AWS event streams are all read incrementally, in bounded memory, however long
//! the body).
//!
//! The reader follows the response's `content-type`, and for the APIs that name their model in
//! the path ([`crate::policy::provider_api`]) the API: Gemini's `streamGenerateContent` answers a JSON array
//! of answers, Bedrock's stream operations an AWS event stream. A path's model is the
//! request's model (the body's is ignored where the path names one); it prices the answer for
//! Bedrock, whose answers name the model in another spelling, while OpenAI, Azure OpenAI and
//! Gemini answers price at the model they name (a dated version of the one asked for).
//!
//! # The charging rule
//! | how the request ended                                  | charged                       |
//! |--------------------------------------------------------|-------------------------------|
//! | answered with readable usage (even before the request body ended) | the reported usage |
//! | a stream cut before its usage, having delivered text   | input estimate + text delivered (`usage_source: "estimate"`) |
//! | answered with status >= 400 and no readable usage      | nothing (providers bill no errors) |
//! | answered otherwise without readable usage              | the reservation (an unreadable answer is never free) |
//! | never answered (client gone, upstream reset before the response, refused after admission) | nothing |
//!
//! The request itself always counts against request windows (it was admitted).

use serde::Deserialize;

use crate::policy::cost::{self, Cost, Price, Pricing};
use crate::policy::isolation::objects::IdField;
use crate::policy::provider_api::{BedrockOperation, GeminiMethod, PathApi, ProviderApi};
use crate::policy::quota::{Actual, Demand};
use crate::policy::usage::{
    self, Delivered, EventStreamUsage, JsonUsage, SseUsage, Usage, UsageSource,
};

/// How usage is measured and reserved (an addition to the contract).
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct UsageRules {
    /// Tokens reserved at admission when the request names no `max_tokens` (or equivalent).
    pub default_reservation_tokens: u64,
    /// Request and JSON response bodies are read up to this size; larger responses yield
    /// `usage_source: "none"` (the reservation stands), larger requests a 413.
    pub max_body_bytes: usize,
    /// Add `stream_options.include_usage` to OpenAI streaming requests that lack it.
    pub inject_stream_usage: bool,
}

impl Default for UsageRules {
    fn default() -> Self {
        UsageRules {
            default_reservation_tokens: 1024,
            max_body_bytes: 1 << 20,
            inject_stream_usage: true,
        }
    }
}

enum Reader {
    /// The response has not started, or is neither JSON nor SSE.
    None,
    Json(JsonUsage),
    Sse(SseUsage),
    /// An AWS event stream (Bedrock's stream operations).
    EventStream(EventStreamUsage),
}

pub struct Meter {
    /// The model the path names, else the request body's `model`, cleaned (see
    /// [`usage::model_name`]).
    request_model: Option<String>,
    /// The API the path names, for the APIs that name their model there.
    path_api: Option<PathApi>,
    /// Input tokens estimated from the request body; 0 until it was read.
    input_estimate: u64,
    demand: Demand,
    reader: Reader,
}

/// How the response of a request went, as far as charging is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The response status; `None` when no response started.
    pub status: Option<u32>,
    /// The response body ended (it was not cut by a reset or a disconnect).
    pub complete: bool,
}

/// What a finished (or aborted) request used, for its record and its quota settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The model the upstream reported, else the request's; cleaned.
    pub model: Option<String>,
    /// As the upstream reported it (or as counted, for `UsageSource::Estimate`); `None` when
    /// nothing readable was reported.
    pub usage: Option<Usage>,
    pub source: UsageSource,
    /// Priced from `usage`; `None` without usage or without a price for the model.
    pub cost: Option<Cost>,
    /// What the quota counters are charged (see the module's charging rule).
    pub charge: Actual,
}

/// What to hold at admission, before the body is seen: ⌈`content-length` / 4⌉ input tokens plus
/// `output_tokens` (the default output reservation; for a plan that caps output limits, its
/// minimum), priced at the `default` price (the model is not known yet). The body's own
/// estimate replaces it (see [`crate::policy::quota::reserve`]).
pub fn provisional_demand(
    content_length: Option<u64>,
    output_tokens: u64,
    pricing: &Pricing,
) -> Demand {
    let input = content_length.map_or(0, |len| len.div_ceil(4));
    let micro_usd = cost::price_for(pricing, None).map_or(0, |price| {
        cost::estimate(price, input, output_tokens).micro_usd_ceil()
    });
    Demand {
        tokens: input.saturating_add(output_tokens),
        micro_usd,
    }
}

/// The price a request's estimate is reserved at: its model's, else the `default`.
pub fn price(pricing: &Pricing, model: Option<&str>) -> Option<Price> {
    cost::price_for(pricing, model).copied()
}

impl Meter {
    /// A meter for a request admitted from its headers, holding `held` until its body is read;
    /// until then its input is estimated from its `content-length`. `path_api`: what
    /// [`crate::policy::provider_api::from_path`] says of the request's path.
    pub fn new(held: Demand, content_length: Option<u64>, path_api: Option<PathApi>) -> Meter {
        Meter {
            request_model: path_api.as_ref().and_then(|api| api.model.clone()),
            path_api,
            input_estimate: content_length.map_or(0, |len| len.div_ceil(4)),
            demand: held,
            reader: Reader::None,
        }
    }

    /// Reads the request body: its model, and the estimate that replaces what was held:
    /// ⌈bytes / 4⌉ input tokens plus the output limit (else the default) times the choices.
    pub fn read_request(&mut self, body: &[u8], rules: &UsageRules, pricing: &Pricing) {
        let facts = usage::inspect_request(body);
        let input = usage::estimate_input_tokens(body.len());
        let output = facts.output_estimate(rules.default_reservation_tokens);
        if self.path_model().is_none() {
            self.request_model = facts.model.as_deref().and_then(usage::model_name);
        }
        let micro_usd = price(pricing, self.request_model.as_deref()).map_or(0, |price| {
            cost::estimate(&price, input, output).micro_usd_ceil()
        });
        self.input_estimate = input;
        self.demand = Demand {
            tokens: input.saturating_add(output),
            micro_usd,
        };
    }

    /// The request now holds `demand` (its output limit was capped).
    pub fn hold(&mut self, demand: Demand) {
        self.demand = demand;
    }

    /// The model the path names, else the request body's `model`, when either named one
    /// (cleaned).
    pub fn request_model(&self) -> Option<&str> {
        self.request_model.as_deref()
    }

    fn path_model(&self) -> Option<&str> {
        self.path_api.as_ref()?.model.as_deref()
    }

    fn api(&self) -> Option<ProviderApi> {
        self.path_api.as_ref().map(|api| api.api)
    }

    /// What the request holds: the body's estimate once read, else what was held at admission.
    pub fn demand(&self) -> Demand {
        self.demand
    }

    /// Chooses the reader from the response's `content-type` (and the API).
    pub fn response_started(&mut self, content_type: &str) {
        let api = self.api();
        self.reader = if usage::is_event_stream(content_type) {
            Reader::Sse(SseUsage::new())
        } else if is_aws_event_stream(api, content_type) {
            Reader::EventStream(EventStreamUsage::new())
        } else if content_type.to_ascii_lowercase().contains("json") {
            match api {
                Some(ProviderApi::Gemini(GeminiMethod::StreamGenerateContent)) => {
                    Reader::Json(JsonUsage::answers_in_array())
                }
                _ => Reader::Json(JsonUsage::new()),
            }
        } else {
            Reader::None
        };
    }

    /// Reads one response body chunk as it passes. Bodies of any length are read: the readers
    /// keep a few KiB whatever they are fed.
    pub fn response_chunk(&mut self, chunk: &[u8]) {
        match &mut self.reader {
            Reader::Sse(sse) => sse.feed(chunk),
            Reader::Json(json) => json.feed(chunk),
            Reader::EventStream(events) => events.feed(chunk),
            Reader::None => {}
        }
    }

    /// The id of the object the answer created, from where `field` says it is.
    pub fn created_id(&self, field: IdField) -> Option<String> {
        let ids = match &self.reader {
            Reader::Sse(sse) => sse.ids(),
            Reader::Json(json) => json.ids(),
            Reader::EventStream(events) => events.ids(),
            Reader::None => return None,
        };
        match field {
            IdField::Id => ids.id.clone().or_else(|| ids.envelope_id.clone()),
            IdField::ThreadId => ids.thread_id.clone(),
            IdField::FileId => ids.file_id.clone(),
        }
    }

    /// What the request used and is charged, from everything seen so far, by the charging rule.
    /// `held`: the estimate the request holds, charged when a 2xx answer reports no usage.
    pub fn outcome(&self, pricing: &Pricing, answer: Answer, held: Demand) -> Outcome {
        let (reported, response_model, source, delivered) = match &self.reader {
            Reader::Sse(sse) => (sse.usage(), sse.model(), UsageSource::Sse, sse.delivered()),
            Reader::Json(json) => (
                json.usage(),
                json.model(),
                UsageSource::Json,
                json.delivered(),
            ),
            Reader::EventStream(events) => (
                events.usage(),
                events.model(),
                UsageSource::EventStream,
                events.delivered(),
            ),
            Reader::None => (None, None, UsageSource::None, Delivered::default()),
        };
        let response_model = response_model.and_then(usage::model_name);
        // The upstream's model prices the answer; the client's string only when it says none.
        // Bedrock bills the model id of the path, which its answers spell otherwise.
        let model = match self.api() {
            Some(ProviderApi::Bedrock(_)) => self.request_model.clone().or(response_model),
            _ => response_model.or_else(|| self.request_model.clone()),
        };
        let delivered = if answer.complete {
            0
        } else {
            delivered.tokens()
        };
        let priced = |usage: Usage, source| {
            let cost = cost::price_for(pricing, model.as_deref()).map(|p| Cost::of(&usage, p));
            Outcome {
                model: model.clone(),
                usage: Some(usage),
                source,
                cost,
                charge: Actual {
                    tokens: usage.total(),
                    micro_usd: cost.map_or(0, |c| c.micro_usd_ceil()),
                },
            }
        };
        let unpriced = |charge| Outcome {
            model: model.clone(),
            usage: None,
            source: UsageSource::None,
            cost: None,
            charge,
        };
        let Some(status) = answer.status else {
            return unpriced(Actual::default());
        };
        match reported {
            // A cut stream that delivered more than its partial usage says (Anthropic's
            // `message_start` counts one output token): at least what was delivered.
            Some(usage) if delivered > usage.output_tokens => priced(
                Usage {
                    output_tokens: delivered,
                    ..usage
                },
                UsageSource::Estimate,
            ),
            Some(usage) => priced(usage, source),
            None if delivered > 0 => priced(
                Usage {
                    input_tokens: self.input_estimate,
                    output_tokens: delivered,
                    ..Usage::default()
                },
                UsageSource::Estimate,
            ),
            None if status >= 400 => unpriced(Actual::default()),
            None => unpriced(Actual {
                tokens: held.tokens,
                micro_usd: held.micro_usd,
            }),
        }
    }
}

/// Bedrock's stream operations answer `application/vnd.amazon.eventstream`.
fn is_aws_event_stream(api: Option<ProviderApi>, content_type: &str) -> bool {
    let streams = matches!(
        api,
        Some(ProviderApi::Bedrock(
            BedrockOperation::ConverseStream | BedrockOperation::InvokeWithResponseStream
        ))
    );
    streams
        && content_type.split(';').next().is_some_and(|t| {
            t.trim()
                .eq_ignore_ascii_case("application/vnd.amazon.eventstream")
        })
}

/// Whether a request's answer is metered (read for usage, recorded and charged). A request
/// without a body whose method only reads or removes (`GET`, `HEAD`, `DELETE`, `OPTIONS`, as
/// spelled) spends no tokens: what its answer reports is the usage of earlier work
/// (`GET /v1/responses/{id}`, `GET /v1/batches/{id}`), charged when that work was done. Any
/// other request is metered, whatever its method.
pub fn meters(method: &str, body_follows: bool) -> bool {
    body_follows || !matches!(method, "GET" | "HEAD" | "DELETE" | "OPTIONS")
}

/// Whether a request's body may get `stream_options.include_usage` added, so its length may
/// change. The one predicate for both stages: decided from the headers, obeyed at the body.
pub fn may_add_stream_usage(rules: &UsageRules, method: &str, path: &str) -> bool {
    rules.inject_stream_usage && method == "POST" && usage::takes_stream_options(path)
}

/// The request body with `stream_options.include_usage` added, when it is an OpenAI stream
/// without it (see [`usage::with_stream_usage`]). Call only when [`may_add_stream_usage`] held.
pub fn with_stream_usage(path: &str, body: &[u8]) -> Option<Vec<u8>> {
    usage::with_stream_usage(path, body)
}

#[cfg(test)]
mod tests;
