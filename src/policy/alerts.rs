//! Alerts before the limit (contract: `plans.<name>.alerts`, top-level `alerts.webhook`): which
//! thresholds of a tenant's token windows and monthly budget its real usage crossed, the marks
//! that make each crossing announced once per period across every worker, the audit event and
//! webhook body that announce it, and the bounded queue of webhook deliveries.
//!
//! Thresholds are kept in permille (0.8 → 800), so every comparison is exact integer arithmetic.
//! A tenant's marks are one value in shared data (per tenant, like its counters): for each
//! window, the period (slot) and the highest threshold already announced in it. The shell
//! updates them by compare-and-swap with [`announce`]: of two workers crossing the same
//! threshold at once, one writes the mark and announces, the other finds it written. A mark of a
//! later period than the caller's (a worker with an older `now`) announces nothing, so a period
//! is never announced twice.
//!
//! Pure: no clock, no I/O. It must never decide about a request: alerts only report.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::policy::config_error::{err, ConfigError};

/// Which limit a usage is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meter {
    /// A token window of `window_s` seconds.
    Tokens(u64),
    /// The monthly budget, in micro-USD.
    Budget,
}

impl Meter {
    /// The name in audit events, webhook bodies and gauge names: `tokens_60s`, `budget`.
    pub fn name(self) -> String {
        match self {
            Meter::Tokens(window_s) => format!("tokens_{window_s}s"),
            Meter::Budget => "budget".to_string(),
        }
    }

    /// The unit of `used` and `limit`.
    pub fn unit(self) -> &'static str {
        match self {
            Meter::Tokens(_) => "tokens",
            Meter::Budget => "micro_usd",
        }
    }

    fn tag(self) -> (u8, u64) {
        match self {
            Meter::Tokens(window_s) => (2, window_s),
            Meter::Budget => (3, 0),
        }
    }
}

/// One token window or the budget, as it stands after a settlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub meter: Meter,
    /// The current period's number (`now / window_s`, or the month's number).
    pub slot: u64,
    /// When the period began (Unix seconds).
    pub period_start: u64,
    pub limit: u64,
    /// Real usage settled in the period (reservations of requests in flight not counted).
    pub used: u64,
}

impl Usage {
    /// The fraction used, in permille (may pass 1000: concurrent requests can overshoot).
    pub fn permille(&self) -> u64 {
        if self.limit == 0 {
            return 1000;
        }
        let p = u128::from(self.used) * 1000 / u128::from(self.limit);
        u64::try_from(p).unwrap_or(u64::MAX)
    }
}

// === Thresholds ===

/// Checks `alerts` (fractions of each limit) at `path`; the thresholds in permille, ascending.
pub fn compile_thresholds(path: &str, fractions: &[f64]) -> Result<Vec<u16>, ConfigError> {
    let mut out: Vec<u16> = Vec::with_capacity(fractions.len());
    if fractions.len() > MAX_THRESHOLDS {
        return err(path, format!("at most {MAX_THRESHOLDS} thresholds"));
    }
    for (i, &f) in fractions.iter().enumerate() {
        let at = format!("{path}[{i}]");
        if !(f.is_finite() && f > 0.0 && f <= 1.0) {
            return err(at, "must be a fraction above 0 and at most 1 (e.g. 0.8)");
        }
        let scaled = f * 1000.0;
        let permille = scaled.round();
        if (scaled - permille).abs() > 1e-6 {
            return err(at, "at most three decimals (a permille)");
        }
        // 1..=1000 by the checks above.
        let permille = permille as u16;
        if out.last().is_some_and(|&last| last >= permille) {
            return err(at, "thresholds must be sorted ascending, each once");
        }
        out.push(permille);
    }
    Ok(out)
}

/// The most thresholds a plan may list.
pub const MAX_THRESHOLDS: usize = 10;

/// The highest threshold `usage` reached, if any.
pub fn reached(thresholds: &[u16], usage: &Usage) -> Option<u16> {
    let permille = usage.permille();
    thresholds
        .iter()
        .copied()
        .filter(|&t| u64::from(t) <= permille)
        .max()
}

// === Marks: what was announced, per window and period ===

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    tag: u8,
    window_s: u64,
    slot: u64,
    permille: u16,
}

const VERSION: u8 = 1;
const MARK_BYTES: usize = 1 + 8 + 8 + 2;

/// A tenant's marks, as stored in shared data (19 bytes per window plus one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks {
    marks: Vec<Mark>,
}

impl Marks {
    /// Decodes stored marks; anything unreadable counts as none announced.
    pub fn decode(bytes: &[u8]) -> Marks {
        let Some((&VERSION, rest)) = bytes.split_first() else {
            return Marks::default();
        };
        let marks = rest
            .chunks_exact(MARK_BYTES)
            .filter_map(|chunk| {
                let (&tag, rest) = chunk.split_first()?;
                let (window_s, rest) = rest.split_first_chunk::<8>()?;
                let (slot, rest) = rest.split_first_chunk::<8>()?;
                let (permille, _) = rest.split_first_chunk::<2>()?;
                Some(Mark {
                    tag,
                    window_s: u64::from_le_bytes(*window_s),
                    slot: u64::from_le_bytes(*slot),
                    permille: u16::from_le_bytes(*permille),
                })
            })
            .collect();
        Marks { marks }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.marks.len() * MARK_BYTES);
        out.push(VERSION);
        for m in &self.marks {
            out.push(m.tag);
            out.extend_from_slice(&m.window_s.to_le_bytes());
            out.extend_from_slice(&m.slot.to_le_bytes());
            out.extend_from_slice(&m.permille.to_le_bytes());
        }
        out
    }

    fn find(&self, meter: Meter) -> Option<&Mark> {
        let (tag, window_s) = meter.tag();
        self.marks
            .iter()
            .find(|m| m.tag == tag && m.window_s == window_s)
    }
}

/// A threshold crossed in a period, to announce once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crossing {
    pub usage: Usage,
    /// Permille.
    pub threshold: u16,
}

/// The thresholds `usages` crossed that `marks` do not hold yet, and the marks that hold them.
/// Every threshold between the last announced one and the highest reached is announced (a
/// jump from 40 % to 90 % announces 0.5 and 0.8). Marks of windows not in `usages` are
/// dropped; a mark of a later period than the usage's is kept and nothing is announced. The
/// marks change only when a period begins or a threshold is crossed: the shell writes nothing
/// back when they come out equal.
pub fn announce(marks: &Marks, thresholds: &[u16], usages: &[Usage]) -> (Marks, Vec<Crossing>) {
    let mut next = Marks::default();
    let mut crossings = Vec::new();
    for usage in usages {
        let (tag, window_s) = usage.meter.tag();
        let stored = marks.find(usage.meter).copied();
        let announced = match stored {
            Some(m) if m.slot > usage.slot => {
                next.marks.push(m);
                continue;
            }
            Some(m) if m.slot == usage.slot => m.permille,
            _ => 0,
        };
        let highest = reached(thresholds, usage).unwrap_or(0).max(announced);
        crossings.extend(
            thresholds
                .iter()
                .filter(|&&t| t > announced && t <= highest)
                .map(|&threshold| Crossing {
                    usage: *usage,
                    threshold,
                }),
        );
        // Kept even below every threshold: the period seen last is never announced again.
        next.marks.push(Mark {
            tag,
            window_s,
            slot: usage.slot,
            permille: highest,
        });
    }
    (next, crossings)
}

// === The announcement ===

/// The audit event (and webhook body) of one crossing: `event: "budget_threshold"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub time: String,
    pub event: &'static str,
    pub tenant: String,
    /// `tokens_<window_s>s` or `budget`.
    pub window: String,
    /// The threshold as the fraction the plan lists (`0.8`).
    pub threshold: Fraction,
    pub used: u64,
    pub limit: u64,
    /// `tokens` or `micro_usd`.
    pub unit: &'static str,
    /// When the period began (RFC 3339): a window's start, or the month's first day.
    pub period_start: String,
    /// The filter's id of the request whose settlement crossed it.
    pub request_id: String,
}

/// A permille written as the decimal fraction it stands for: 800 → `0.8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fraction(pub u16);

impl Serialize for Fraction {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = if self.0 >= 1000 {
            "1".to_string()
        } else {
            format!("0.{:03}", self.0).trim_end_matches('0').to_string()
        };
        let number: serde_json::Number = text
            .parse()
            .map_err(|_| serde::ser::Error::custom("not a number"))?;
        number.serialize(s)
    }
}

impl Event {
    /// The event of `crossing` for `tenant`, written at `time`; `rfc3339` formats Unix ms.
    pub fn new(
        crossing: &Crossing,
        tenant: &str,
        request_id: &str,
        time: String,
        rfc3339: impl Fn(u64) -> String,
    ) -> Event {
        let usage = &crossing.usage;
        Event {
            time,
            event: "budget_threshold",
            tenant: tenant.to_string(),
            window: usage.meter.name(),
            threshold: Fraction(crossing.threshold),
            used: usage.used,
            limit: usage.limit,
            unit: usage.meter.unit(),
            period_start: rfc3339(usage.period_start.saturating_mul(1000)),
            request_id: request_id.to_string(),
        }
    }

    /// The webhook's JSON body: the event, as the audit line has it without the chain.
    pub fn webhook_body(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

// === The webhook ===

/// `alerts`, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAlerts {
    webhook: Option<RawWebhook>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    cluster: String,
    path: String,
    authority: Option<String>,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default = "default_retries")]
    retries: u32,
}

fn default_timeout_ms() -> u64 {
    1000
}
fn default_retries() -> u32 {
    2
}

/// The most retries a webhook may ask for.
pub const MAX_RETRIES: u32 = 5;

/// `alerts.webhook`, checked: where crossings are POSTed as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub timeout_ms: u64,
    pub retries: u32,
}

/// Checks `alerts`; the webhook, if one is configured.
pub(crate) fn compile_alerts(raw: RawAlerts) -> Result<Option<Webhook>, ConfigError> {
    let Some(w) = raw.webhook else {
        return Ok(None);
    };
    if w.cluster.is_empty() || w.cluster.bytes().any(|b| b.is_ascii_whitespace()) {
        return err("alerts.webhook.cluster", "must name an Envoy cluster");
    }
    if !w.path.starts_with('/') || w.path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return err(
            "alerts.webhook.path",
            "must be a path starting with '/' (no spaces or control characters)",
        );
    }
    if !(1..=60_000).contains(&w.timeout_ms) {
        return err("alerts.webhook.timeout_ms", "must be between 1 and 60000");
    }
    if w.retries > MAX_RETRIES {
        return err(
            "alerts.webhook.retries",
            format!("must be at most {MAX_RETRIES}"),
        );
    }
    let authority = w.authority.unwrap_or_else(|| w.cluster.clone());
    if authority.is_empty() || authority.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return err("alerts.webhook.authority", "must be a host name");
    }
    Ok(Some(Webhook {
        cluster: w.cluster,
        authority,
        path: w.path,
        timeout_ms: w.timeout_ms,
        retries: w.retries,
    }))
}

/// One webhook body on its way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub body: Vec<u8>,
    /// Attempts made so far.
    pub attempts: u32,
    /// Not before this (Unix ms): the back-off after a failure.
    pub due_ms: u64,
}

/// A worker's webhook deliveries waiting for its root context: at most `capacity`; a new one
/// pushes the oldest out, counted in `dropped`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbox {
    queue: VecDeque<Delivery>,
    capacity: usize,
    /// Deliveries dropped for room or after their last retry, not yet counted in stats.
    pub dropped: u64,
}

/// How many deliveries a worker keeps waiting.
pub const OUTBOX_CAPACITY: usize = 64;
/// How many webhook calls a worker has open at once.
pub const MAX_IN_FLIGHT: usize = 4;

impl Default for Outbox {
    fn default() -> Self {
        Outbox::new(OUTBOX_CAPACITY)
    }
}

impl Outbox {
    pub fn new(capacity: usize) -> Outbox {
        Outbox {
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            dropped: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Queues `delivery`, dropping the oldest when full.
    pub fn push(&mut self, delivery: Delivery) {
        while self.queue.len() >= self.capacity {
            self.queue.pop_front();
            self.dropped = self.dropped.saturating_add(1);
        }
        self.queue.push_back(delivery);
    }

    /// A new body, due now.
    pub fn push_body(&mut self, body: Vec<u8>, now_ms: u64) {
        self.push(Delivery {
            body,
            attempts: 0,
            due_ms: now_ms,
        });
    }

    /// The oldest delivery due at `now_ms`, if any.
    pub fn take_due(&mut self, now_ms: u64) -> Option<Delivery> {
        let index = self.queue.iter().position(|d| d.due_ms <= now_ms)?;
        self.queue.remove(index)
    }

    /// A delivery that failed: queued again after a back-off while it has retries left, else
    /// dropped.
    pub fn failed(&mut self, mut delivery: Delivery, retries: u32, now_ms: u64) {
        delivery.attempts = delivery.attempts.saturating_add(1);
        if delivery.attempts > retries {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        delivery.due_ms = now_ms.saturating_add(backoff_ms(delivery.attempts));
        self.push(delivery);
    }

    /// Takes the count of dropped deliveries (for a stats counter).
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }
}

/// The wait before retry `attempt` (1, 2, …): 200 ms, 400 ms, 800 ms … at most 5 s.
pub fn backoff_ms(attempt: u32) -> u64 {
    200u64
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u64::MAX)
        .min(5000)
}

/// Whether a webhook answer counts as delivered: an HTTP 2xx.
pub fn delivered(status: Option<&str>) -> bool {
    status.is_some_and(|s| s.len() == 3 && s.starts_with('2'))
}

#[cfg(test)]
mod tests;
