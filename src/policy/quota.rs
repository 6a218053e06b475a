//! Quota windows: admission, reservation and settlement over one tenant's counters.
//!
//! All of a tenant's counters live in one value (one shared-data key), so a single
//! compare-and-swap admits a request against every window at once: no window is charged for a
//! request another window refused, and two workers cannot both take the last slot.
//!
//! Windows are fixed and aligned to multiples of `window_s` since the Unix epoch (a 86400 s
//! window resets at 00:00 UTC); the budget window is the calendar month, UTC.
//!
//! Admission: every request window below its limit (then +1), and for tokens and money
//! used + reserved below every limit (then the request's estimate is reserved). When the
//! response ends, [`settle`] replaces the reservation by the real amount. Sequential traffic
//! thus uses a window exactly: the last admitted request may cross it, the next is refused.
//! Concurrent traffic can overshoot a token window by at most the real usage of the requests
//! that were admitted while it was open, beyond their estimates.

use crate::policy::alerts::{Meter, Usage};
use crate::policy::denial::Reason;
use crate::policy::plan::Limits;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Requests,
    Tokens,
    /// Micro-USD per calendar month (UTC).
    Budget,
}

impl Kind {
    fn tag(self) -> u8 {
        match self {
            Kind::Requests => 1,
            Kind::Tokens => 2,
            Kind::Budget => 3,
        }
    }

    fn from_tag(tag: u8) -> Option<Kind> {
        match tag {
            1 => Some(Kind::Requests),
            2 => Some(Kind::Tokens),
            3 => Some(Kind::Budget),
            _ => None,
        }
    }

    fn refusal(self) -> Reason {
        match self {
            Kind::Requests => Reason::RequestQuotaExceeded,
            Kind::Tokens => Reason::TokenQuotaExceeded,
            Kind::Budget => Reason::BudgetExceeded,
        }
    }
}

/// One window of a tenant's limits, placed in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub kind: Kind,
    /// 0 for the monthly budget.
    pub window_s: u64,
    pub limit: u64,
    /// The current slot (`now / window_s`, or the month number since year 0).
    slot: u64,
    /// When the current slot ends (Unix seconds).
    pub resets_at: u64,
}

/// The windows of `limits` at `now`: requests, then tokens, then the budget.
fn windows(limits: &Limits, now: u64) -> Vec<Window> {
    let fixed = |kind, w: &crate::policy::plan::Window| {
        let window_s = w.window_s.max(1);
        let slot = now / window_s;
        Window {
            kind,
            window_s,
            limit: w.limit,
            slot,
            resets_at: slot.saturating_add(1).saturating_mul(window_s),
        }
    };
    let mut out: Vec<Window> = limits
        .requests
        .iter()
        .map(|w| fixed(Kind::Requests, w))
        .collect();
    out.extend(limits.tokens.iter().map(|w| fixed(Kind::Tokens, w)));
    if let Some(budget) = limits.monthly_budget_micro_usd {
        let (slot, resets_at) = month(now);
        out.push(Window {
            kind: Kind::Budget,
            window_s: 0,
            limit: budget,
            slot,
            resets_at,
        });
    }
    out
}

/// The calendar month (UTC) holding `now`: its number since year 0 and when it ends.
fn month(now: u64) -> (u64, u64) {
    let (year, month) = civil_month(now / 86_400);
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let resets_at = days_from_civil(next_year, next_month).saturating_mul(86_400);
    (year * 12 + (month - 1), resets_at)
}

/// Year and month (1-12) of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_month(days: u64) -> (u64, u64) {
    // Howard Hinnant's civil_from_days, for days >= 0.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month)
}

/// Days since 1970-01-01 of the first day of `month` (1-12) in `year` (>= 1970).
fn days_from_civil(year: u64, month: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

/// One window's counts in its current slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counter {
    kind: Kind,
    window_s: u64,
    slot: u64,
    used: u64,
    reserved: u64,
}

const VERSION: u8 = 1;
const COUNTER_BYTES: usize = 1 + 8 * 4;

/// All counters of one tenant, as stored in shared data (33 bytes per window plus one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaState {
    counters: Vec<Counter>,
}

impl QuotaState {
    /// Decodes a stored state; anything unreadable counts as a fresh state.
    pub fn decode(bytes: &[u8]) -> QuotaState {
        let Some((&VERSION, rest)) = bytes.split_first() else {
            return QuotaState::default();
        };
        let counters = rest
            .chunks_exact(COUNTER_BYTES)
            .filter_map(|chunk| {
                let (&tag, numbers) = chunk.split_first()?;
                let mut n = numbers
                    .chunks_exact(8)
                    .filter_map(|b| <[u8; 8]>::try_from(b).ok().map(u64::from_le_bytes));
                Some(Counter {
                    kind: Kind::from_tag(tag)?,
                    window_s: n.next()?,
                    slot: n.next()?,
                    used: n.next()?,
                    reserved: n.next()?,
                })
            })
            .collect();
        QuotaState { counters }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.counters.len() * COUNTER_BYTES);
        out.push(VERSION);
        for c in &self.counters {
            out.push(c.kind.tag());
            for n in [c.window_s, c.slot, c.used, c.reserved] {
                out.extend_from_slice(&n.to_le_bytes());
            }
        }
        out
    }

    /// Every stored counter as (kind, used, reserved), for tests that check the books.
    #[cfg(test)]
    pub(crate) fn counts(&self) -> Vec<(Kind, u64, u64)> {
        self.counters
            .iter()
            .map(|c| (c.kind, c.used, c.reserved))
            .collect()
    }

    /// The counters of `windows`, in the same order, carried over where the slot is still
    /// current and zero otherwise. Counters of windows no longer configured are dropped.
    fn current(&self, windows: &[Window]) -> Vec<Counter> {
        windows
            .iter()
            .map(|w| {
                let stored = self
                    .counters
                    .iter()
                    .find(|c| c.kind == w.kind && c.window_s == w.window_s && c.slot == w.slot);
                Counter {
                    kind: w.kind,
                    window_s: w.window_s,
                    slot: w.slot,
                    used: stored.map_or(0, |c| c.used),
                    reserved: stored.map_or(0, |c| c.reserved),
                }
            })
            .collect()
    }
}

/// What a request asks of its tenant's quotas at admission.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Demand {
    /// Token estimate to reserve (the request's `max_tokens`, or the configured default).
    pub tokens: u64,
    /// Priced estimate to reserve against the budget.
    pub micro_usd: u64,
}

/// What an admitted request holds, to be settled when its response ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    pub demand: Demand,
    /// When the demand was reserved: it is taken back from that slot, if still current.
    pub admitted_at: u64,
}

/// A window as a client sees it: for `RateLimit` headers and `x-ratelimit-remaining-*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowStatus {
    pub kind: Kind,
    pub window_s: u64,
    pub limit: u64,
    pub remaining: u64,
    pub resets_in: u64,
}

/// A refused admission: the reason is the first full window's (requests, then tokens, then
/// the budget).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    /// Seconds until every full window has reset (the latest reset among them): retrying
    /// earlier could only be refused again.
    pub retry_after: u64,
    pub windows: Vec<WindowStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    pub state: QuotaState,
    pub reservation: Reservation,
    /// Every window after this admission (this request counted, its estimate not held).
    pub windows: Vec<WindowStatus>,
}

fn status(w: &Window, c: &Counter, now: u64) -> WindowStatus {
    WindowStatus {
        kind: w.kind,
        window_s: w.window_s,
        limit: w.limit,
        remaining: w.limit.saturating_sub(c.used.saturating_add(c.reserved)),
        resets_in: w.resets_at.saturating_sub(now),
    }
}

/// Every window of `limits` as it stands in `state` now (what is left counts reservations).
pub fn statuses(state: &QuotaState, limits: &Limits, now: u64) -> Vec<WindowStatus> {
    let windows = windows(limits, now);
    let counters = state.current(&windows);
    windows
        .iter()
        .zip(&counters)
        .map(|(w, c)| status(w, c, now))
        .collect()
}

/// Admits one request against every window of `limits`, or says which window refuses.
pub fn admit(
    state: &QuotaState,
    limits: &Limits,
    now: u64,
    demand: Demand,
) -> Result<Admitted, Refusal> {
    let windows = windows(limits, now);
    let mut counters = state.current(&windows);
    let full: Vec<&Window> = windows
        .iter()
        .zip(&counters)
        .filter(|(w, c)| c.used.saturating_add(c.reserved) >= w.limit)
        .map(|(w, _)| w)
        .collect();
    if let Some(first) = full.first() {
        // A request is admitted only when every window has room: none can be before the
        // last full window resets.
        let resets_at = full
            .iter()
            .map(|w| w.resets_at)
            .max()
            .unwrap_or(first.resets_at);
        return Err(Refusal {
            reason: first.kind.refusal(),
            retry_after: resets_at.saturating_sub(now).max(1),
            windows: windows
                .iter()
                .zip(&counters)
                .map(|(w, c)| status(w, c, now))
                .collect(),
        });
    }
    for c in &mut counters {
        if c.kind == Kind::Requests {
            c.used = c.used.saturating_add(1);
        }
    }
    // What the client is told is left: this request counted, its own estimate not (it is
    // not spent, and would make the number jump with every request's `max_tokens`).
    let statuses = windows
        .iter()
        .zip(&counters)
        .map(|(w, c)| status(w, c, now))
        .collect();
    hold(&mut counters, demand);
    Ok(Admitted {
        windows: statuses,
        state: QuotaState { counters },
        reservation: Reservation {
            demand,
            admitted_at: now,
        },
    })
}

/// Adds `demand` to the reserved amounts of the token and budget windows.
fn hold(counters: &mut [Counter], demand: Demand) {
    for c in counters {
        match c.kind {
            Kind::Requests => {}
            Kind::Tokens => c.reserved = c.reserved.saturating_add(demand.tokens),
            Kind::Budget => c.reserved = c.reserved.saturating_add(demand.micro_usd),
        }
    }
}

/// Replaces the provisional reservation made at admission (from the request headers) by the
/// estimate the request body tells. Never refuses: the admission already checked every window.
pub fn reserve(
    state: &QuotaState,
    limits: &Limits,
    now: u64,
    provisional: &Reservation,
    demand: Demand,
) -> (QuotaState, Reservation) {
    let returned = settle(state, limits, now, provisional, Actual::default());
    let mut counters = returned.counters;
    hold(&mut counters, demand);
    let reservation = Reservation {
        demand,
        admitted_at: now,
    };
    (QuotaState { counters }, reservation)
}

/// What a request really used, known when its response ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Actual {
    pub tokens: u64,
    pub micro_usd: u64,
}

/// Replaces a reservation by the real usage. A reservation made in a slot that has since
/// rolled over is gone with that slot; the real usage then counts in the current one.
pub fn settle(
    state: &QuotaState,
    limits: &Limits,
    now: u64,
    reservation: &Reservation,
    actual: Actual,
) -> QuotaState {
    let windows = windows(limits, now);
    let admitted_in = self::windows(limits, reservation.admitted_at);
    let mut counters = state.current(&windows);
    for ((w, then), c) in windows.iter().zip(&admitted_in).zip(&mut counters) {
        let (reserved, used) = match c.kind {
            Kind::Requests => continue,
            Kind::Tokens => (reservation.demand.tokens, actual.tokens),
            Kind::Budget => (reservation.demand.micro_usd, actual.micro_usd),
        };
        if then.slot == w.slot {
            c.reserved = c.reserved.saturating_sub(reserved);
        }
        c.used = c.used.saturating_add(used);
    }
    QuotaState { counters }
}

/// Undoes an admission that another set of counters refused after all (a user's, then its
/// tenant's: `policy::user_quota`): the request no longer counts in the request windows of
/// the slot it was admitted in, and its reservation goes back.
pub fn withdraw(
    state: &QuotaState,
    limits: &Limits,
    now: u64,
    reservation: &Reservation,
) -> QuotaState {
    let settled = settle(state, limits, now, reservation, Actual::default());
    let windows = windows(limits, now);
    let admitted_in = self::windows(limits, reservation.admitted_at);
    let mut counters = settled.counters;
    for ((w, then), c) in windows.iter().zip(&admitted_in).zip(&mut counters) {
        if c.kind == Kind::Requests && then.slot == w.slot {
            c.used = c.used.saturating_sub(1);
        }
    }
    QuotaState { counters }
}

/// The token windows and the budget of `limits` as they stand in `state` at `now`: real usage
/// only (for alerts and gauges).
pub fn usage(state: &QuotaState, limits: &Limits, now: u64) -> Vec<Usage> {
    let windows = windows(limits, now);
    let counters = state.current(&windows);
    windows
        .iter()
        .zip(&counters)
        .filter_map(|(w, c)| {
            let (meter, period_start) = match w.kind {
                Kind::Requests => return None,
                Kind::Tokens => (Meter::Tokens(w.window_s), w.slot.saturating_mul(w.window_s)),
                Kind::Budget => (
                    Meter::Budget,
                    days_from_civil(w.slot / 12, w.slot % 12 + 1).saturating_mul(86_400),
                ),
            };
            Some(Usage {
                meter,
                slot: w.slot,
                period_start,
                limit: w.limit,
                used: c.used,
            })
        })
        .collect()
}

/// The IETF `RateLimit-Policy` and `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers)
/// for the request and token windows, one policy each (`"requests-60s";q=600;w=60`).
pub fn rate_limit_headers(windows: &[WindowStatus]) -> Vec<(&'static str, String)> {
    let named: Vec<(String, &WindowStatus)> = windows
        .iter()
        .filter_map(|w| {
            let kind = match w.kind {
                Kind::Requests => "requests",
                Kind::Tokens => "tokens",
                Kind::Budget => return None,
            };
            Some((format!("\"{kind}-{}s\"", w.window_s), w))
        })
        .collect();
    if named.is_empty() {
        return Vec::new();
    }
    let policy = named
        .iter()
        .map(|(name, w)| format!("{name};q={};w={}", w.limit, w.window_s))
        .collect::<Vec<_>>()
        .join(", ");
    let current = named
        .iter()
        .map(|(name, w)| format!("{name};r={};t={}", w.remaining, w.resets_in))
        .collect::<Vec<_>>()
        .join(", ");
    vec![("ratelimit-policy", policy), ("ratelimit", current)]
}

/// OpenAI's `x-ratelimit-remaining-requests` / `-tokens`: the least left in any window.
pub fn remaining_headers(windows: &[WindowStatus]) -> Vec<(&'static str, String)> {
    let least = |kind| {
        windows
            .iter()
            .filter(|w| w.kind == kind)
            .map(|w| w.remaining)
            .min()
    };
    let mut headers = Vec::new();
    if let Some(r) = least(Kind::Requests) {
        headers.push(("x-ratelimit-remaining-requests", r.to_string()));
    }
    if let Some(t) = least(Kind::Tokens) {
        headers.push(("x-ratelimit-remaining-tokens", t.to_string()));
    }
    headers
}

#[cfg(test)]
mod tests;
