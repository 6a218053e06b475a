//! Request records for tests and measurements, written by the filter's own record code
//! (`tenant_guard::policy::record::Record::to_json`) after Envoy's log prefix, with audit lines
//! and unrelated Envoy lines between them.

use std::io::{self, Write};

use tenant_guard::policy::cost::Cost;
use tenant_guard::policy::decision::Decision;
use tenant_guard::policy::record::{Record, RequestInfo};

use crate::audit::generate::envoy_prefix;

pub const TENANTS: [&str; 20] = [
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "stark",
    "wayne",
    "tyrell",
    "cyberdyne",
    "soylent",
    "wonka",
    "oscorp",
    "aperture",
    "blackmesa",
    "vandelay",
    "dunder",
    "pied-piper",
    "massive",
    "gringotts",
    "monarch",
];
pub const MODELS: [&str; 6] = [
    "gpt-4o",
    "gpt-4o-mini",
    "claude-sonnet-4",
    "claude-3-5-haiku-20241022",
    "gemini-2.0-flash",
    "text-embedding-3-small",
];
/// Distinct users across the log (`user-0` ...).
pub const USERS: u64 = 1000;

/// The `i`th record: every 10th refused (no usage), every 50th charged on an estimate, every
/// 7th with prompt-cache reads, every 11th with reasoning, every 13th with cache writes;
/// priced at 2.5 and 10 USD per million input and output tokens (pico-exact).
pub fn record(i: u64) -> Record {
    let mut r = Record::new(
        &Decision::Bypass,
        RequestInfo {
            request_id: format!("{i:032x}"),
            client_request_id: None,
            method: b"POST",
            path: b"/v1/chat/completions",
        },
    );
    let pick = |list: &[&str], n: u64| list[(n % list.len() as u64) as usize].to_string();
    r.tenant = Some(pick(&TENANTS, i / 3));
    r.user = Some(format!("user-{}", i % USERS));
    r.provider = Some("corp-idp".into());
    r.plan = Some("pro".into());
    r.reason = "ok";
    if i % 10 == 9 {
        r.decision = "deny";
        r.reason = "token_quota_exceeded";
        r.detail = Some("tenant token quota reached".into());
        r.status = Some(429);
        return r;
    }
    r.status = Some(200);
    r.model = Some(pick(&MODELS, i / 7));
    let input = 100 + i % 4000;
    let output = 10 + i % 700;
    r.input_tokens = Some(input);
    r.output_tokens = Some(output);
    r.cached_input_tokens = Some(if i.is_multiple_of(7) { input / 2 } else { 0 });
    r.cache_write_tokens = Some(if i.is_multiple_of(13) { input / 4 } else { 0 });
    r.reasoning_tokens = Some(if i.is_multiple_of(11) { output / 3 } else { 0 });
    let pico = u128::from(input) * 2_500_000 + u128::from(output) * 10_000_000;
    r.cost_usd = Some(Cost::from_pico_usd(pico).to_decimal_usd());
    r.usage_source = Some(if i.is_multiple_of(50) {
        "estimate"
    } else {
        "json"
    });
    r
}

/// A log of `records` request records, one every `step_ms` from `start_ms`, from two
/// workers, each with Envoy's prefix; an audit line after every refusal and an unrelated Envoy
/// line every 97th line.
pub fn log(out: &mut impl Write, records: u64, start_ms: i64, step_ms: i64) -> io::Result<()> {
    let mut lines = 0u64;
    for i in 0..records {
        let time_ms = start_ms + i as i64 * step_ms;
        let r = record(i);
        writeln!(
            out,
            "{}{}",
            envoy_prefix(time_ms, (i % 2) as usize),
            r.to_json()
        )?;
        lines += 1;
        if r.decision == "deny" {
            writeln!(
                out,
                "{}{{\"type\":\"tenant_guard.audit\",\"chain\":\"5eed00000000000{}\",\"seq\":{i},\"time\":\"x\",\"event\":\"deny\",\"tenant\":\"{}\",\"hash\":\"00\"}}",
                envoy_prefix(time_ms, (i % 2) as usize),
                i % 2,
                r.tenant.as_deref().unwrap_or_default()
            )?;
            lines += 1;
        }
        if lines.is_multiple_of(97) {
            writeln!(
                out,
                "[2026-12-01 00:00:00.000][{}][info][main] [source/server/server.cc:1000] all clusters initialized",
                40 + i % 2
            )?;
            lines += 1;
        }
    }
    Ok(())
}
