//! One line of input as the bill sees it: a request record (the filter's JSON line in the
//! Envoy log, or a JSON access-log line built from the filter state), an audit line, or
//! anything else.
//!
//! A record's time is, in this order: its own `time` member, a `start_time` member (an access
//! log's `%START_TIME%`), or the time in Envoy's log prefix (`[2026-12-07 13:57:38.123]`, read as
//! UTC). Numbers may be JSON numbers or decimal strings (access logs write filter state as
//! strings); `cost_usd` is an exact decimal string, read with the filter's own parser.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use tenant_guard::policy::cost::Cost;

use crate::audit::time;

/// What marks the filter's request record in a line (Envoy writes its own prefix before it).
pub const MARKER: &[u8] = br#"{"type":"tenant_guard.request""#;
/// What marks an audit line.
pub const AUDIT_MARKER: &[u8] = crate::audit::record::MARKER;

/// Token counts of one record (cached and cache-write tokens are parts of `input`, reasoning
/// tokens part of `output`, as in the record).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tokens {
    pub input: u64,
    pub cached_input: u64,
    pub cache_write: u64,
    pub output: u64,
    pub reasoning: u64,
}

/// A request record, as far as the bill needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Milliseconds since the epoch, UTC.
    pub time_ms: i64,
    pub tenant: Option<String>,
    pub user: Option<String>,
    pub model: Option<String>,
    /// `decision: allow` (shadow-mode and fail-open admissions included); else refused.
    pub admitted: bool,
    pub tokens: Tokens,
    /// `cost_usd`; `None` when the record has none (refused, unpriced, no usage).
    pub cost: Option<Cost>,
    /// `usage_source: "estimate"`: charged on the filter's estimate (a stream cut before its
    /// usage).
    pub estimated: bool,
}

/// What a line is.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Record(Entry),
    /// An audit-stream line: no usage (the request it names has its own record).
    Audit,
    /// A JSON access-log line without the filter's decision (a request the filter never saw).
    Undecided,
    /// Anything else (Envoy's own lines).
    Other,
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(default, rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tenant: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    user: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    decision: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "count")]
    input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "count")]
    cached_input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "count")]
    cache_write_tokens: Option<u64>,
    #[serde(default, deserialize_with = "count")]
    output_tokens: Option<u64>,
    #[serde(default, deserialize_with = "count")]
    reasoning_tokens: Option<u64>,
    #[serde(default, borrow)]
    cost_usd: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    usage_source: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    time: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    start_time: Option<Cow<'a, str>>,
}

/// A token count: a JSON number, or a string of decimal digits; `null` is absent.
fn count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    struct Count;
    impl<'de> Visitor<'de> for Count {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a token count (a whole number, or a string of digits)")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u64::try_from(v)
                .map(Some)
                .map_err(|_| E::custom(format!("a negative token count: {v}")))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(E::custom(format!("not a token count: {v:?}")));
            }
            v.parse()
                .map(Some)
                .map_err(|_| E::custom(format!("token count out of range: {v}")))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(Count)
        }
    }
    deserializer.deserialize_option(Count)
}

/// Reads one line. `Err` is a line that claims to be a record (the marker, or a JSON object
/// with the filter's decision) but cannot be billed: the message says why.
pub fn classify(line: &[u8]) -> Result<Line, String> {
    if find(line, AUDIT_MARKER).is_some() {
        return Ok(Line::Audit);
    }
    if let Some(start) = find(line, MARKER) {
        let text = line.get(start..).unwrap_or_default();
        let raw = first_object(text)?;
        return entry(&raw, envoy_prefix_time(line)).map(Line::Record);
    }
    let trimmed = line.trim_ascii_start();
    if !trimmed.starts_with(b"{") {
        return Ok(Line::Other);
    }
    let raw = first_object(trimmed)?;
    if raw.kind.is_some() || raw.decision.is_none() {
        // Another kind of JSON line, or an access-log line of a request the filter never
        // decided (Envoy's own 400s and 404s).
        return Ok(Line::Undecided);
    }
    entry(&raw, None).map(Line::Record)
}

fn first_object(text: &[u8]) -> Result<Raw<'_>, String> {
    let mut objects = serde_json::Deserializer::from_slice(text).into_iter::<Raw>();
    match objects.next() {
        Some(Ok(raw)) => Ok(raw),
        Some(Err(e)) => Err(format!("not a readable record: {e}")),
        None => Err("not a readable record".into()),
    }
}

fn entry(raw: &Raw<'_>, prefix_time: Option<i64>) -> Result<Entry, String> {
    let admitted = match raw.decision.as_deref() {
        Some("allow") => true,
        Some("deny") => false,
        Some(other) => return Err(format!("decision is neither allow nor deny: {other:?}")),
        None => return Err("the record has no decision".into()),
    };
    let time_ms = match (raw.time.as_deref(), raw.start_time.as_deref()) {
        (Some(text), _) | (None, Some(text)) => {
            time::parse_ms(text).ok_or_else(|| format!("not an RFC 3339 time: {text:?}"))?
        }
        (None, None) => prefix_time
            .ok_or("the record has no time (no time or start_time member, no Envoy log prefix)")?,
    };
    let cost = match raw.cost_usd.as_deref() {
        None => None,
        Some(text) => Some(Cost::from_decimal_usd(text).ok_or_else(|| {
            format!("cost_usd is not a decimal of at most 12 fractional digits: {text:?}")
        })?),
    };
    let tokens = Tokens {
        input: raw.input_tokens.unwrap_or(0),
        cached_input: raw.cached_input_tokens.unwrap_or(0),
        cache_write: raw.cache_write_tokens.unwrap_or(0),
        output: raw.output_tokens.unwrap_or(0),
        reasoning: raw.reasoning_tokens.unwrap_or(0),
    };
    let text = |value: &Option<Cow<'_, str>>| value.as_deref().map(str::to_string);
    Ok(Entry {
        time_ms,
        tenant: text(&raw.tenant),
        user: text(&raw.user),
        model: text(&raw.model),
        admitted,
        tokens,
        cost,
        estimated: raw.usage_source.as_deref() == Some("estimate"),
    })
}

/// The time of Envoy's default log prefix, `[2026-12-07 13:57:38.123]` at the line's start,
/// read as UTC.
pub fn envoy_prefix_time(line: &[u8]) -> Option<i64> {
    let rest = line.strip_prefix(b"[")?;
    let end = rest.iter().take(40).position(|&b| b == b']')?;
    let text = std::str::from_utf8(rest.get(..end)?).ok()?;
    // A date and a time of day, not just any bracketed word.
    if text.len() < 19 {
        return None;
    }
    time::parse_ms(text)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = "[2026-12-07 13:57:38.123][17][info][wasm] [source/extensions/common/wasm/context.cc:1198] wasm log tenant_guard tenant_guard: ";

    fn record(line: &str) -> Entry {
        match classify(line.as_bytes()) {
            Ok(Line::Record(entry)) => entry,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn a_record_after_envoys_prefix_takes_the_prefix_time() {
        let line = format!(
            r#"{PREFIX}{{"type":"tenant_guard.request","tenant":"acme","user":"alice","provider":"corp-idp","plan":"pro","decision":"allow","reason":"ok","request_id":"4f","method":"POST","path":"/v1/chat/completions","status":200,"model":"gpt-4o","input_tokens":1000,"output_tokens":20,"cached_input_tokens":600,"cache_write_tokens":5,"reasoning_tokens":7,"cost_usd":"0.0027","usage_source":"json"}}"#
        );
        let entry = record(&line);
        assert_eq!(
            entry.time_ms,
            time::parse_ms("2026-12-07T13:57:38.123Z").unwrap()
        );
        assert_eq!(entry.tenant.as_deref(), Some("acme"));
        assert_eq!(entry.user.as_deref(), Some("alice"));
        assert_eq!(entry.model.as_deref(), Some("gpt-4o"));
        assert!(entry.admitted && !entry.estimated);
        assert_eq!(
            entry.tokens,
            Tokens {
                input: 1000,
                cached_input: 600,
                cache_write: 5,
                output: 20,
                reasoning: 7
            }
        );
        assert_eq!(entry.cost, Cost::from_decimal_usd("0.0027"));
    }

    #[test]
    fn a_records_own_time_wins_over_the_prefix() {
        let line = format!(
            r#"{PREFIX}{{"type":"tenant_guard.request","tenant":"acme","decision":"deny","reason":"budget_exceeded","time":"2026-11-30T23:59:59.999Z"}}"#
        );
        let entry = record(&line);
        assert_eq!(
            entry.time_ms,
            time::parse_ms("2026-11-30T23:59:59.999Z").unwrap()
        );
        assert!(!entry.admitted);
        assert_eq!(entry.cost, None);
        assert_eq!(entry.tokens, Tokens::default());
    }

    #[test]
    fn access_log_lines_carry_numbers_as_strings_and_nulls() {
        let entry = record(
            r#"{"tenant":"acme","user":"bob","decision":"allow","reason":"ok","request_id":"ab","model":"claude-sonnet-4","input_tokens":"25","output_tokens":"15","cost_usd":"0.0003","usage_source":"estimate","start_time":"2026-12-01T00:00:00.000Z","status":"200"}"#,
        );
        assert_eq!(entry.tokens.input, 25);
        assert_eq!(entry.tokens.output, 15);
        assert!(entry.estimated);
        assert_eq!(entry.time_ms, time::parse_ms("2026-12-01").unwrap());
        let refused = record(
            r#"{"tenant":null,"user":null,"decision":"deny","reason":"missing_token","model":null,"input_tokens":null,"cost_usd":null,"start_time":"2026-12-01T00:00:00Z"}"#,
        );
        assert_eq!(refused.tenant, None);
        assert!(!refused.admitted);
        // A request the filter never decided, and other JSON.
        assert_eq!(
            classify(br#"{"tenant":null,"decision":null,"status":"400"}"#),
            Ok(Line::Undecided)
        );
        assert_eq!(classify(br#"{"level":"info"}"#), Ok(Line::Undecided));
    }

    #[test]
    fn audit_and_envoy_lines_are_not_records() {
        let audit = format!(r#"{PREFIX}{{"type":"tenant_guard.audit","chain":"a","seq":1}}"#);
        assert_eq!(classify(audit.as_bytes()), Ok(Line::Audit));
        assert_eq!(
            classify(b"[2026-12-07 13:57:38.123][1][info][main] starting workers"),
            Ok(Line::Other)
        );
        assert_eq!(classify(b""), Ok(Line::Other));
    }

    #[test]
    fn malformed_records_say_why() {
        let cases = [
            (
                r#"{"type":"tenant_guard.request","decision":"allow","cost_usd":"1e-3","time":"2026-12-01"}"#,
                "cost_usd",
            ),
            (
                r#"{"type":"tenant_guard.request","decision":"allow","cost_usd":"-1","time":"2026-12-01"}"#,
                "cost_usd",
            ),
            (
                r#"{"type":"tenant_guard.request","decision":"allow","cost_usd":"0.0000000000001","time":"2026-12-01"}"#,
                "cost_usd",
            ),
            (
                r#"{"type":"tenant_guard.request","decision":"allow","input_tokens":-5,"time":"2026-12-01"}"#,
                "negative",
            ),
            (
                r#"{"type":"tenant_guard.request","decision":"allow","input_tokens":"12x","time":"2026-12-01"}"#,
                "token count",
            ),
            (
                r#"{"type":"tenant_guard.request","decision":"allow","input_tokens":1.5,"time":"2026-12-01"}"#,
                "token count",
            ),
            (
                r#"{"type":"tenant_guard.request","decision":"maybe","time":"2026-12-01"}"#,
                "decision",
            ),
            (
                r#"{"type":"tenant_guard.request","time":"2026-12-01"}"#,
                "no decision",
            ),
            (
                r#"{"type":"tenant_guard.request","decision":"allow"}"#,
                "no time",
            ),
            (
                r#"{"type":"tenant_guard.request","decision":"allow","time":"yesterday"}"#,
                "RFC 3339",
            ),
            (
                r#"{"type":"tenant_guard.request","decision":"al"#,
                "readable",
            ),
            (r#"{"decision":"allow","tenant":"acme""#, "readable"),
        ];
        for (line, why) in cases {
            let err = classify(line.as_bytes()).expect_err(line);
            assert!(err.contains(why), "{line}: {err}");
        }
    }

    /// Not a fuzzer (tools/cli is outside fuzz/'s build): 50,000 deterministic mutations of a
    /// real record line (bytes flipped, cut, repeated) are each classified without a panic, and
    /// any line read as a record has a cost the filter's parser accepts.
    #[test]
    fn mutated_lines_never_panic() {
        let base = format!(
            r#"{PREFIX}{{"type":"tenant_guard.request","tenant":"acme","user":"alice","decision":"allow","reason":"ok","model":"gpt-4o","input_tokens":1000,"output_tokens":"20","cost_usd":"0.0027","usage_source":"estimate","time":"2026-12-01T00:00:00Z"}}"#
        )
        .into_bytes();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        const BYTES: &[u8] = b"{}[]\":,.-0123456789eE \\\x00\xffnulltrue";
        for _ in 0..50_000 {
            let mut line = base.clone();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() as usize) % line.len().max(1);
                match next() % 4 {
                    0 => line[at] = BYTES[(next() as usize) % BYTES.len()],
                    1 => line.truncate(at),
                    2 => line.insert(at, BYTES[(next() as usize) % BYTES.len()]),
                    _ => {
                        let end = (at + (next() as usize) % 16).min(line.len());
                        let copy = line[at..end].to_vec();
                        line.splice(at..at, copy);
                    }
                }
                if line.is_empty() {
                    break;
                }
            }
            if let Ok(Line::Record(entry)) = classify(&line) {
                if let Some(cost) = entry.cost {
                    assert_eq!(Cost::from_decimal_usd(&cost.to_decimal_usd()), Some(cost));
                }
            }
        }
    }

    #[test]
    fn the_prefix_time_needs_a_date_and_a_time() {
        assert_eq!(
            envoy_prefix_time(b"[2026-12-07 13:57:38.123][1]"),
            time::parse_ms("2026-12-07T13:57:38.123Z")
        );
        assert_eq!(envoy_prefix_time(b"[info] x"), None);
        assert_eq!(envoy_prefix_time(b"[2026-12-07] x"), None);
        assert_eq!(envoy_prefix_time(b"2026-12-07 13:57:38.123 x"), None);
    }
}
