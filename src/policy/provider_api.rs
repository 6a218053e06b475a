//! Which provider API a request speaks, when the API puts the model in the path.
//!
//! OpenAI and Anthropic name the model in the body; three APIs name it in the path:
//!
//! | API                        | path (after any gateway prefix)                                   | model        |
//! |----------------------------|-------------------------------------------------------------------|--------------|
//! | Azure OpenAI deployments   | `/openai/deployments/{deployment}/...`                            | the deployment |
//! | Gemini (Google AI, Vertex) | `.../models/{model}:{method}`, `.../tunedModels/{model}:{method}` | `{model}` (`tunedModels/{model}`) |
//! | Vertex AI endpoints        | `.../endpoints/{endpoint}:{method}`                               | none (an endpoint hides its model) |
//! | AWS Bedrock runtime        | `.../model/{modelId}/{converse, converse-stream, invoke, invoke-with-response-stream}` | `{modelId}`, URL-decoded |
//!
//! Gemini's Google AI paths are `/v1beta/models/{model}:generateContent`; Vertex AI's
//! `/v1/projects/{p}/locations/{l}/publishers/{google, anthropic, ...}/models/{model}:{method}`
//! (Anthropic models on Vertex use `rawPredict` / `streamRawPredict`, with Anthropic bodies).
//!
//! Segments are compared URL-decoded, after `.` and `..` segments are resolved and empty ones
//! dropped, so a path the upstream resolves to a model is read as that model (`/model/a/x/../converse`
//! is model `a`). Metering (prices, records) and the model rules of entitlements both read the
//! model from here.

use std::borrow::Cow;

use crate::policy::namespace::hex;

/// Longest model name read from a path (a Bedrock ARN is the longest in use).
const MAX_MODEL_BYTES: usize = 256;

/// The API of a request whose path names its model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderApi {
    /// Azure OpenAI `/openai/deployments/{deployment}/...`: OpenAI bodies and answers.
    AzureDeployment,
    /// Gemini `models/{model}:{method}` (Google AI and Vertex AI).
    Gemini(GeminiMethod),
    /// Bedrock runtime `/model/{modelId}/{operation}`.
    Bedrock(BedrockOperation),
}

/// The method after the `:` of a Gemini (or Vertex AI) model path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeminiMethod {
    /// `generateContent`: one JSON answer.
    GenerateContent,
    /// `streamGenerateContent`: a JSON array of answers, or SSE with `alt=sse`.
    StreamGenerateContent,
    /// `rawPredict` (Vertex AI partner models such as Anthropic's): the partner's own JSON.
    RawPredict,
    /// `streamRawPredict`: the partner's own stream (Anthropic's SSE).
    StreamRawPredict,
    /// Any other method (`countTokens`, `embedContent`, ...).
    Other,
}

/// A Bedrock runtime operation on a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BedrockOperation {
    /// `converse`: a JSON answer with `usage`.
    Converse,
    /// `converse-stream`: an AWS event stream whose `metadata` event carries usage.
    ConverseStream,
    /// `invoke`: the model's own JSON (Anthropic Messages for Anthropic models).
    Invoke,
    /// `invoke-with-response-stream`: an AWS event stream of `chunk` events, each carrying the
    /// model's own stream event in base64.
    InvokeWithResponseStream,
}

/// A request's API and the model its path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathApi {
    pub api: ProviderApi,
    /// The model, URL-decoded; `None` when the path names none (a Vertex AI endpoint) or it
    /// cannot be read (a malformed escape; not 1-256 bytes of printable ASCII without spaces).
    /// A caller that rules on models must treat `None` as an unknown model, never as "any".
    pub model: Option<String>,
}

/// The API and model of a request `path` (`:path` as received or normalised; a query is
/// ignored). `None` for every other path: OpenAI, Anthropic and Azure OpenAI `/openai/v1/...`
/// name the model in the body.
pub fn from_path(path: &str) -> Option<PathApi> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    // The cheap test first: most requests are none of these and pay nothing more.
    if !(path.contains(':')
        || path.contains("%3")
        || path.contains("/model")
        || path.contains("/deployments/"))
    {
        return None;
    }
    let segments = segments(path);
    azure(&segments)
        .or_else(|| gemini(&segments))
        .or_else(|| bedrock(&segments))
}

/// A path segment, URL-decoded; `None` when it cannot be (a malformed escape, not UTF-8).
type Segment<'a> = Option<Cow<'a, str>>;

/// The path's segments as the upstream resolves them: decoded, no empty, `.` or `..` ones.
fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out: Vec<Segment<'_>> = Vec::new();
    for raw in path.split('/').filter(|s| !s.is_empty()) {
        let segment = decode(raw);
        match segment.as_deref() {
            Some(".") => {}
            Some("..") => {
                out.pop();
            }
            _ => out.push(segment),
        }
    }
    out
}

fn is(segment: Option<&Segment<'_>>, name: &str) -> bool {
    segment.and_then(|s| s.as_deref()) == Some(name)
}

/// `openai/deployments/{deployment}/{operation...}`, the first such triple.
fn azure(segments: &[Segment<'_>]) -> Option<PathApi> {
    let at = segments
        .windows(4)
        .position(|w| is(w.first(), "openai") && is(w.get(1), "deployments"))?;
    Some(PathApi {
        api: ProviderApi::AzureDeployment,
        model: segments.get(at.checked_add(2)?).and_then(model),
    })
}

/// `.../{models | tunedModels | endpoints}/{name}:{method}` at the end of the path.
fn gemini(segments: &[Segment<'_>]) -> Option<PathApi> {
    let [.., collection, last] = segments else {
        return None;
    };
    let (name, method) = last.as_deref()?.rsplit_once(':')?;
    let collection = collection.as_deref()?;
    if !matches!(collection, "models" | "tunedModels" | "endpoints") {
        return None;
    }
    let method = match method {
        "generateContent" => GeminiMethod::GenerateContent,
        "streamGenerateContent" => GeminiMethod::StreamGenerateContent,
        "rawPredict" => GeminiMethod::RawPredict,
        "streamRawPredict" => GeminiMethod::StreamRawPredict,
        _ => GeminiMethod::Other,
    };
    let model = match collection {
        "models" => clean(name),
        "tunedModels" => clean(&format!("tunedModels/{name}")),
        _ => None,
    };
    Some(PathApi {
        api: ProviderApi::Gemini(method),
        model,
    })
}

/// `.../model/{modelId}/{operation}` at the end of the path.
fn bedrock(segments: &[Segment<'_>]) -> Option<PathApi> {
    let [.., keyword, id, operation] = segments else {
        return None;
    };
    if keyword.as_deref() != Some("model") {
        return None;
    }
    let operation = match operation.as_deref()? {
        "converse" => BedrockOperation::Converse,
        "converse-stream" => BedrockOperation::ConverseStream,
        "invoke" => BedrockOperation::Invoke,
        "invoke-with-response-stream" => BedrockOperation::InvokeWithResponseStream,
        _ => return None,
    };
    Some(PathApi {
        api: ProviderApi::Bedrock(operation),
        model: model(id),
    })
}

fn model(segment: &Segment<'_>) -> Option<String> {
    clean(segment.as_deref()?)
}

/// A model name fit for prices, records and model rules: 1-256 bytes of printable ASCII, no
/// spaces.
fn clean(name: &str) -> Option<String> {
    (!name.is_empty()
        && name.len() <= MAX_MODEL_BYTES
        && name.bytes().all(|b| b.is_ascii_graphic()))
    .then(|| name.to_string())
}

/// Decodes every `%XX` escape of a segment; `None` for a malformed escape or a result that is
/// not UTF-8.
fn decode(segment: &str) -> Segment<'_> {
    if !segment.contains('%') {
        return Some(Cow::Borrowed(segment));
    }
    let mut out = Vec::with_capacity(segment.len());
    let mut bytes = segment.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let high = bytes.next().and_then(hex)?;
        let low = bytes.next().and_then(hex)?;
        out.push(high << 4 | low);
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests;
