//! Audit logs for tests and measurements: chains written exactly as the filter writes them
//! (compact JSON, fields in the contract's order, the hash last), with Envoy's log prefix.

use std::io::{self, Write};

use serde::Serialize;

use crate::audit::record::{key_fingerprint, to_hex, ZERO_HASH};
use crate::audit::time;

#[derive(Serialize)]
struct Start<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    chain: &'a str,
    seq: u64,
    prev: &'a str,
    time: &'a str,
    event: &'a str,
    config_sha256: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_fingerprint: Option<String>,
}

#[derive(Serialize, Default)]
pub struct Claimed<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_header: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<&'a str>,
}

/// The request part of a record.
pub struct Event<'a> {
    pub time_ms: i64,
    pub event: &'a str,
    pub tenant: Option<&'a str>,
    pub user: Option<&'a str>,
    pub provider: Option<&'a str>,
    pub claimed: Claimed<'a>,
    pub method: &'a str,
    pub path: &'a str,
    pub path_sent: Option<&'a str>,
    pub source: Option<&'a str>,
    pub request_id: &'a str,
    pub client_request_id: Option<&'a str>,
    pub decision: &'a str,
    pub reason: &'a str,
    pub detail: Option<&'a str>,
}

#[derive(Serialize)]
struct Request<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    chain: &'a str,
    seq: u64,
    prev: &'a str,
    time: &'a str,
    event: &'a str,
    tenant: Option<&'a str>,
    user: Option<&'a str>,
    provider: Option<&'a str>,
    claimed: &'a Claimed<'a>,
    method: &'a str,
    path: &'a str,
    path_sent: Option<&'a str>,
    source: Option<&'a str>,
    request_id: &'a str,
    client_request_id: Option<&'a str>,
    decision: &'a str,
    reason: &'a str,
    detail: Option<&'a str>,
}

/// RFC 3339 UTC with milliseconds, as the filter writes it.
pub fn rfc3339(ms: i64) -> String {
    let hour = time::hour_of(ms);
    let rest = ms.rem_euclid(3_600_000);
    format!(
        "{hour}:{:02}:{:02}.{:03}Z",
        rest / 60_000,
        rest % 60_000 / 1000,
        rest % 1000
    )
}

/// One worker's chain.
pub struct ChainWriter {
    pub id: String,
    pub seq: u64,
    pub prev: String,
    /// A keyed chain's HMAC key (the filter's `audit.key_env`).
    pub key: Option<Vec<u8>>,
}

impl ChainWriter {
    pub fn new(id: &str) -> ChainWriter {
        ChainWriter {
            id: id.to_string(),
            seq: 0,
            prev: ZERO_HASH.to_string(),
            key: None,
        }
    }

    /// A chain keyed with `key`, as the filter writes one under `audit.key_env`.
    pub fn keyed(id: &str, key: &[u8]) -> ChainWriter {
        ChainWriter {
            key: Some(key.to_vec()),
            ..ChainWriter::new(id)
        }
    }

    fn seal(&mut self, body: String) -> String {
        let digest = match &self.key {
            Some(key) => hmac_sha256::HMAC::mac(format!("{}\n{body}", self.prev), key),
            None => {
                let mut hasher = hmac_sha256::Hash::new();
                hasher.update(self.prev.as_bytes());
                hasher.update(b"\n");
                hasher.update(body.as_bytes());
                hasher.finalize()
            }
        };
        let hash = to_hex(&digest);
        let mut line = body;
        line.pop();
        line.push_str(",\"hash\":\"");
        line.push_str(&hash);
        line.push_str("\"}");
        self.prev = hash;
        self.seq += 1;
        line
    }

    /// The chain's start record (seq 0).
    pub fn start(&mut self, time_ms: i64, config_sha256: &str) -> String {
        let time = rfc3339(time_ms);
        let body = serde_json::to_string(&Start {
            kind: "tenant_guard.audit",
            chain: &self.id,
            seq: self.seq,
            prev: &self.prev,
            time: &time,
            event: "start",
            config_sha256,
            key_fingerprint: self.key.as_deref().map(key_fingerprint),
        })
        .unwrap_or_default();
        self.seal(body)
    }

    pub fn record(&mut self, e: &Event) -> String {
        let time = rfc3339(e.time_ms);
        let body = serde_json::to_string(&Request {
            kind: "tenant_guard.audit",
            chain: &self.id,
            seq: self.seq,
            prev: &self.prev,
            time: &time,
            event: e.event,
            tenant: e.tenant,
            user: e.user,
            provider: e.provider,
            claimed: &e.claimed,
            method: e.method,
            path: e.path,
            path_sent: e.path_sent,
            source: e.source,
            request_id: e.request_id,
            client_request_id: e.client_request_id,
            decision: e.decision,
            reason: e.reason,
            detail: e.detail,
        })
        .unwrap_or_default();
        self.seal(body)
    }
}

/// Envoy's prefix of a Wasm log line at `time_ms` from worker `thread`.
pub fn envoy_prefix(time_ms: i64, thread: usize) -> String {
    let t = rfc3339(time_ms);
    format!(
        "[{} {}][{}][info][wasm] [source/extensions/common/wasm/context.cc:1198] wasm log tenant_guard tenant_guard tenant_guard: ",
        t.get(..10).unwrap_or_default(),
        t.get(11..23).unwrap_or_default(),
        40 + thread
    )
}

const TENANTS: [&str; 8] = [
    "acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell",
];
const DENIALS: [&str; 6] = [
    "invalid_token",
    "request_quota_exceeded",
    "token_quota_exceeded",
    "tenant_suspended",
    "unknown_tenant",
    "budget_exceeded",
];

/// A log of `records` records spread over `chains` interleaved chains (each with its start
/// record), one every `step_ms` from `start_ms`, with Envoy's prefix and, every 97th line, an
/// unrelated Envoy log line. About one record in eight is a cross-tenant attempt.
pub fn log(
    out: &mut impl Write,
    records: u64,
    chains: usize,
    start_ms: i64,
    step_ms: i64,
) -> io::Result<()> {
    let chains = chains.max(1);
    let mut writers: Vec<ChainWriter> = (0..chains)
        .map(|i| ChainWriter::new(&format!("{:016x}", 0x5eed_0000_0000_0000_u64 + i as u64)))
        .collect();
    let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let config = "c0ffee".repeat(10) + "c0ff";
    let mut time_ms = start_ms;
    for (i, w) in writers.iter_mut().enumerate() {
        writeln!(
            out,
            "{}{}",
            envoy_prefix(time_ms, i),
            w.start(time_ms, &config)
        )?;
    }
    let mut written = chains as u64;
    while written < records {
        time_ms += step_ms;
        let worker = (next() as usize) % chains;
        let r = next();
        let tenant = TENANTS[(r % 8) as usize];
        let other = TENANTS[((r >> 3) % 8) as usize];
        let user = format!("user-{}", (r >> 6) % 50);
        let source = format!(
            "10.{}.{}.{}:{}",
            (r >> 12) % 4,
            (r >> 14) % 16,
            (r >> 18) % 250 + 1,
            30_000 + (r >> 26) % 30_000
        );
        let request_id = format!("{:032x}", u128::from(r) << 64 | u128::from(written));
        let kind = (r >> 40) % 8;
        let mut claimed = Claimed::default();
        let (event, reason, path, detail) = match kind {
            0 => {
                claimed.path_namespace = Some(other);
                (
                    "cross_tenant",
                    "cross_tenant_path",
                    format!("/tenants/{other}/v1/chat/completions"),
                    Some(format!("path addresses namespace {other}")),
                )
            }
            1 if (r >> 44) % 3 == 0 => {
                claimed.tenant_header = Some(other);
                (
                    "cross_tenant",
                    "tenant_header_mismatch",
                    "/v1/chat/completions".to_string(),
                    None,
                )
            }
            1 if (r >> 44) % 3 == 1 => {
                claimed.object = Some("resp_0123456789");
                (
                    "cross_tenant",
                    "provider_object_not_found",
                    "/v1/responses/resp_0123456789".to_string(),
                    Some("object resp_0123456789 belongs to another tenant".to_string()),
                )
            }
            1 => (
                "shadow",
                "request_quota_exceeded",
                "/v1/chat/completions".to_string(),
                Some("requests-60s".to_string()),
            ),
            _ => (
                "deny",
                DENIALS[((r >> 48) % 6) as usize],
                "/v1/chat/completions".to_string(),
                None,
            ),
        };
        if written.is_multiple_of(97) {
            writeln!(
                out,
                "[2026-11-29 23:30:04.123][{}][info][main] [source/server/server.cc:1000] an unrelated Envoy line",
                40 + worker
            )?;
        }
        let line = writers[worker].record(&Event {
            time_ms,
            event,
            tenant: Some(tenant),
            user: Some(&user),
            provider: Some("corp-idp"),
            claimed,
            method: "POST",
            path: &path,
            path_sent: None,
            source: Some(&source),
            request_id: &request_id,
            client_request_id: Some(&request_id[..16]),
            decision: if event == "shadow" { "allow" } else { "deny" },
            reason,
            detail: detail.as_deref(),
        });
        writeln!(out, "{}{}", envoy_prefix(time_ms, worker), line)?;
        written += 1;
    }
    Ok(())
}
