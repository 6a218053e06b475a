//! Metering of one admitted request: what it reserves at admission, what its response says it
//! used, and what that costs. The shell feeds it the request body and response chunks; it
//! never holds the response back (JSON and SSE are both read incrementally).

use crate::policy::config::{Pricing, UsageRules};
use crate::policy::cost::{self, Cost};
use crate::policy::quota::{Actual, Demand};
use crate::policy::usage::{self, JsonUsage, SseUsage, Usage, UsageSource};

enum Reader {
    /// The response has not started, or is neither JSON nor SSE.
    None,
    Json(JsonUsage),
    Sse(SseUsage),
}

pub struct Meter {
    request_model: Option<String>,
    demand: Demand,
    reader: Reader,
    /// Response body bytes seen, against `max_body_bytes` for JSON bodies.
    response_bytes: usize,
    max_body_bytes: usize,
}

/// What a finished (or aborted) request used, for its record and its quota settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub model: Option<String>,
    /// As the upstream reported it; `None` when it reported nothing readable.
    pub usage: Option<Usage>,
    pub source: UsageSource,
    /// Priced from `usage`; `None` without usage or without a price for the model.
    pub cost: Option<Cost>,
    /// What the quota counters are charged: the real usage, or the reservation when the
    /// upstream reported none (so an unreadable answer never makes a request free).
    pub charge: Actual,
}

/// What to hold at admission, before the body is seen: ⌈`content-length` / 4⌉ input tokens plus
/// the default output reservation, priced at the `default` price (the model is not known yet).
/// The body's own estimate replaces it (see [`crate::policy::quota::reserve`]).
pub fn provisional_demand(
    content_length: Option<u64>,
    rules: &UsageRules,
    pricing: &Pricing,
) -> Demand {
    let input = content_length.map_or(0, |len| len.div_ceil(4));
    let output = rules.default_reservation_tokens;
    let micro_usd = cost::price_for(pricing, None).map_or(0, |price| {
        cost::estimate(price, input, output).micro_usd_ceil()
    });
    Demand {
        tokens: input.saturating_add(output),
        micro_usd,
    }
}

impl Meter {
    /// A meter for a request whose body is `body`. Without a body to read (none, or one too
    /// large), the request's demand stays what was held at admission: `held`.
    pub fn new(body: Option<&[u8]>, held: Demand, rules: &UsageRules, pricing: &Pricing) -> Meter {
        let Some(body) = body else {
            return Meter {
                request_model: None,
                demand: held,
                reader: Reader::None,
                response_bytes: 0,
                max_body_bytes: rules.max_body_bytes,
            };
        };
        let facts = usage::inspect_request(body);
        let input = usage::estimate_input_tokens(body.len());
        let output = facts.output_estimate(rules.default_reservation_tokens);
        let micro_usd = cost::price_for(pricing, facts.model.as_deref()).map_or(0, |price| {
            cost::estimate(price, input, output).micro_usd_ceil()
        });
        Meter {
            request_model: facts.model,
            demand: Demand {
                tokens: input.saturating_add(output),
                micro_usd,
            },
            reader: Reader::None,
            response_bytes: 0,
            max_body_bytes: rules.max_body_bytes,
        }
    }

    /// The request body's `model`, when it named one.
    pub fn request_model(&self) -> Option<&str> {
        self.request_model.as_deref()
    }

    pub fn demand(&self) -> Demand {
        self.demand
    }

    /// Chooses the reader from the response's `content-type`.
    pub fn response_started(&mut self, content_type: &str) {
        self.reader = if usage::is_event_stream(content_type) {
            Reader::Sse(SseUsage::new())
        } else if content_type.to_ascii_lowercase().contains("json") {
            Reader::Json(JsonUsage::new())
        } else {
            Reader::None
        };
    }

    /// Reads one response body chunk as it passes.
    pub fn response_chunk(&mut self, chunk: &[u8]) {
        self.response_bytes = self.response_bytes.saturating_add(chunk.len());
        match &mut self.reader {
            Reader::Sse(sse) => sse.feed(chunk),
            Reader::Json(_) if self.response_bytes > self.max_body_bytes => {
                // Over the cap: the usage is not read, the reservation stands.
                self.reader = Reader::None;
            }
            Reader::Json(json) => json.feed(chunk),
            Reader::None => {}
        }
    }

    /// What the request used, from everything seen so far (an aborted stream included).
    pub fn outcome(&self, pricing: &Pricing) -> Outcome {
        let (usage, response_model, source) = match &self.reader {
            Reader::Sse(sse) => (sse.usage(), sse.model(), UsageSource::Sse),
            Reader::Json(json) => (json.usage(), json.model(), UsageSource::Json),
            Reader::None => (None, None, UsageSource::None),
        };
        let model = self
            .request_model
            .clone()
            .or_else(|| response_model.map(str::to_string));
        let Some(usage) = usage else {
            return Outcome {
                model,
                usage: None,
                source: UsageSource::None,
                cost: None,
                charge: Actual {
                    tokens: self.demand.tokens,
                    micro_usd: self.demand.micro_usd,
                },
            };
        };
        let cost = cost::price_for(pricing, model.as_deref()).map(|p| Cost::of(&usage, p));
        Outcome {
            charge: Actual {
                tokens: usage.total(),
                micro_usd: cost.map_or(0, |c| c.micro_usd_ceil()),
            },
            model,
            usage: Some(usage),
            source,
            cost,
        }
    }
}

/// Whether a request's body may get `stream_options.include_usage` added, so its length may
/// change (the shell then drops `content-length` before the body is seen).
pub fn may_add_stream_usage(rules: &UsageRules, method: &str, path: &str) -> bool {
    rules.inject_stream_usage && method == "POST" && usage::takes_stream_options(path)
}

/// The request body with `stream_options.include_usage` added, when the rules ask for it and
/// the request is an OpenAI stream without it (see [`usage::with_stream_usage`]).
pub fn with_stream_usage(rules: &UsageRules, path: &str, body: &[u8]) -> Option<Vec<u8>> {
    rules
        .inject_stream_usage
        .then(|| usage::with_stream_usage(path, body))
        .flatten()
}

#[cfg(test)]
mod tests;
