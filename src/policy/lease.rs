//! Credit leased in blocks from the rate-limit service (`global_rate_limit.lease`): one
//! tenant's [`Credit`] per quota kind, as pure transitions that take `now` (milliseconds).
//!
//! A replica asks the service for a block (`hits_addend` = the block) and keeps what it grants
//! as credit in shared data, where every worker spends it by compare-and-swap ([`take`]). When
//! a spend leaves the credit under the low-water mark, the same spend claims the next block for
//! the root context to fetch ahead of need, so requests do not wait for the network while
//! credit is held. Without credit, the request that finds none fetches a block itself and
//! waits; requests arriving while that block is on its way ask the service for just what they
//! need (the per-request protocol, for that moment only).
//!
//! - **Refusals**: Limitador refuses a hit that would cross the limit and counts nothing, so a
//!   refused block is asked again at half its size, down to one unit; when one unit is refused
//!   the tenant is exhausted: refused without a call until the window ends (the service's
//!   `duration_until_reset`, else [`RETRY_MS`], after which one request probes with its own
//!   need). A refusal the service counted anyway (envoyproxy/ratelimit says `limit_remaining`)
//!   exhausts at once.
//! - **Expiry**: credit lapses when the service's window ends: `duration_until_reset` when the
//!   service sends it, else `lease.window_s` after the first grant of the credit's life. A
//!   lapse starts a new *generation*: requests admitted from the old credit settle nothing
//!   into the new one.
//! - **Block size** follows the tenant's rate: `block_seconds` of what it spent since the last
//!   block was claimed (measured over at least one second), within `min_block`..`max_block`.
//! - **Failures**: a failed call marks the credit failing; held credit is still spent, and
//!   without credit requests get `failure_mode` at once (no call, no timeout) while the root
//!   context probes with a block every [`RETRY_MS`].
//! - **Tokens**: a request takes its estimate; when it ends, [`settle`] gives back what it did
//!   not use or takes the excess (the balance may go below zero: a debt the next blocks pay).
//!
//! Bounds: a request or token is admitted only against units the service counted, so requests
//! never overshoot and tokens overshoot only by what in-flight requests use beyond their
//! estimates; quota the service counted but nobody spent (under-use) is at most what the
//! replicas hold when a window ends, one block each (plus the low-water reserve of a refill
//! that arrived); service calls per second are about the fleet's consumption / block size.

use serde::Deserialize;

use crate::policy::config_error::ConfigError;
use crate::policy::ratelimit::{Answer, Usage, Verdict};

/// How long an exhausted or failing credit waits before the service is asked again, when the
/// service does not say when its window resets.
pub const RETRY_MS: u64 = 1000;
/// Calls one fetch may make (halving a block of 2^40 takes 40).
const MAX_FETCH_CALLS: u32 = 64;

/// The smallest and largest block of one quota kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocks {
    pub min: u64,
    pub max: u64,
}

/// `global_rate_limit.lease`, compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRules {
    /// Credit lapses this long after its first grant when the service sends no
    /// `duration_until_reset` (the shortest window of the service's limits).
    pub window_ms: u64,
    /// A block is this long of the tenant's recent consumption.
    pub block_ms: u64,
    /// The next block is fetched when the credit falls under this share of a block (per mille).
    pub low_water_permille: u64,
    pub requests: Blocks,
    pub tokens: Blocks,
    /// A fetch not heard of for this long is taken over (its worker went away).
    pub stale_ms: u64,
}

impl LeaseRules {
    pub fn blocks(&self, usage: Usage) -> Blocks {
        match usage {
            Usage::Requests => self.requests,
            Usage::Tokens => self.tokens,
        }
    }
}

// === Configuration ===

/// `global_rate_limit.lease`, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLease {
    window_s: Option<u64>,
    #[serde(default = "default_block_seconds")]
    block_seconds: u64,
    #[serde(default = "default_low_water")]
    low_water: f64,
    #[serde(default)]
    requests: RawBlocks,
    #[serde(default)]
    tokens: RawBlocks,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBlocks {
    min_block: Option<u64>,
    max_block: Option<u64>,
}

fn default_block_seconds() -> u64 {
    5
}

fn default_low_water() -> f64 {
    0.5
}

/// Default block bounds: one request to 1,000; 1,000 tokens (about one request's) to 1,000,000.
const REQUEST_BLOCKS: Blocks = Blocks { min: 1, max: 1000 };
const TOKEN_BLOCKS: Blocks = Blocks {
    min: 1000,
    max: 1_000_000,
};

fn refused<T>(path: String, message: &str) -> Result<T, ConfigError> {
    Err(ConfigError {
        path,
        message: message.into(),
    })
}

/// Validates `raw` (at `path`); `timeout_ms` is the service call's timeout.
pub fn compile(raw: RawLease, path: &str, timeout_ms: u64) -> Result<LeaseRules, ConfigError> {
    let Some(window_s) = raw.window_s else {
        return refused(
            format!("{path}.window_s"),
            "required: the shortest window (seconds) of the service's limits on requests and \
             tokens; credit lapses after it when the service sends no duration_until_reset",
        );
    };
    if !(1..=366 * 86_400).contains(&window_s) {
        return refused(format!("{path}.window_s"), "must be 1 to 31622400 seconds");
    }
    if !(1..=3600).contains(&raw.block_seconds) {
        return refused(format!("{path}.block_seconds"), "must be 1 to 3600");
    }
    if !(raw.low_water > 0.0 && raw.low_water <= 1.0) {
        return refused(
            format!("{path}.low_water"),
            "must be a share of a block above 0 and at most 1",
        );
    }
    let blocks = |kind: &str, raw: &RawBlocks, default: Blocks| {
        let min = raw.min_block.unwrap_or(default.min);
        let max = raw.max_block.unwrap_or(default.max.max(min));
        if !(1..=1 << 40).contains(&min) {
            return refused(format!("{path}.{kind}.min_block"), "must be 1 to 2^40");
        }
        if !(min..=1 << 40).contains(&max) {
            return refused(
                format!("{path}.{kind}.max_block"),
                "must be at least min_block and at most 2^40",
            );
        }
        Ok(Blocks { min, max })
    };
    Ok(LeaseRules {
        window_ms: window_s * 1000,
        block_ms: raw.block_seconds * 1000,
        // In (0, 1]: the conversion is exact enough and in range.
        low_water_permille: (raw.low_water * 1000.0).round().max(1.0) as u64,
        requests: blocks("requests", &raw.requests, REQUEST_BLOCKS)?,
        tokens: blocks("tokens", &raw.tokens, TOKEN_BLOCKS)?,
        stale_ms: timeout_ms.saturating_mul(2).saturating_add(1000),
    })
}

// === Credit ===

/// A tenant's leased credit of one quota kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Credit {
    /// Granted and not spent; below zero when requests used more than their estimates.
    pub balance: i64,
    /// When the credit lapses (ms since the epoch); 0: none was granted since the last lapse.
    pub expires_at_ms: u64,
    /// Counts lapses: a request settles only into the credit it was admitted from.
    pub generation: u32,
    /// The size of the next block (0: not sized yet).
    pub block: u64,
    /// Spent since `rate_since_ms`: the tenant's recent consumption.
    pub spent: u64,
    pub rate_since_ms: u64,
    /// A fetch is on its way since then (0: none).
    pub fetching_since_ms: u64,
    /// The service granted nothing more: refuse until then. Non-zero (also once passed) until
    /// a grant: the next fetch is a probe of one request's need.
    pub exhausted_until_ms: u64,
    /// The last call failed: no request waits for the service; the root probes from
    /// `retry_at_ms` on.
    pub failing: bool,
    pub retry_at_ms: u64,
}

/// What [`take`] decided for a request that needs some units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Taken from held credit of `generation`; `refill`: a block the root context must fetch
    /// now (this spend claimed it).
    Covered {
        generation: u32,
        refill: Option<Fetch>,
    },
    /// No credit: the request fetches this itself (claimed) and waits for it.
    Fetch(Fetch),
    /// No credit and a block on its way: the request asks for just its need, and waits.
    Ask(Fetch),
    /// Nothing more this window: refuse without a call.
    Exhausted { retry_after_s: u64 },
    /// The service failed lately: `failure_mode` decides, without a call. `probe`: a block the
    /// root context must try to fetch now (this request claimed it).
    Unavailable { probe: Option<Fetch> },
}

/// One fetch of credit: the calls it makes, each asking for [`Fetch::hits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetch {
    pub usage: Usage,
    /// Units the next call asks for.
    step: u64,
    /// Units still wanted (of a block).
    left: u64,
    /// A request waits for this many units (0: a block fetched ahead of need).
    need: u64,
    /// The fetch holds the credit's claim (`fetching_since_ms`).
    claimed: bool,
    /// A refused amount is asked again at half size (a block); else a refusal ends the fetch.
    halve: bool,
    calls: u32,
}

impl Fetch {
    fn new(usage: Usage, size: u64, need: u64, claimed: bool, halve: bool) -> Fetch {
        Fetch {
            usage,
            step: size,
            left: size,
            need,
            claimed,
            halve,
            calls: 0,
        }
    }

    /// The `hits_addend` of the next call.
    pub fn hits(&self) -> u64 {
        self.step
    }

    /// The units the waiting request takes once granted (0: fetched ahead of need).
    pub fn need(&self) -> u64 {
        self.need
    }
}

/// What follows the answer to one call of a fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send the fetch's next call.
    Again(Fetch),
    Done(Ended),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The waiting request's need was taken from credit of `generation`.
    Admitted { generation: u32 },
    /// The block is in (fetched ahead of need), or as much of it as the service granted.
    Granted,
    /// Not granted: refuse the waiting request (`Retry-After`).
    Refused { retry_after_s: u64 },
    /// The call failed: `failure_mode` decides for the waiting request.
    Failed,
}

fn units(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn seconds_until(until_ms: u64, now_ms: u64) -> u64 {
    until_ms.saturating_sub(now_ms).div_ceil(1000).max(1)
}

impl Credit {
    /// Lets the credit go once its window ended: balance, debt and exhaustion end with it.
    fn lapse(&mut self, now_ms: u64) {
        if self.expires_at_ms != 0 && now_ms >= self.expires_at_ms {
            self.balance = 0;
            self.expires_at_ms = 0;
            self.generation = self.generation.wrapping_add(1);
            self.exhausted_until_ms = 0;
        }
    }

    fn fetching(&self, now_ms: u64, rules: &LeaseRules) -> bool {
        self.fetching_since_ms != 0
            && now_ms < self.fetching_since_ms.saturating_add(rules.stale_ms)
    }

    /// Sizes the next block from the consumption since the last one was claimed.
    fn resize(&mut self, now_ms: u64, rules: &LeaseRules, blocks: Blocks) {
        if self.rate_since_ms != 0 {
            let elapsed = now_ms.saturating_sub(self.rate_since_ms).max(1000);
            let wanted = u128::from(self.spent) * u128::from(rules.block_ms) / u128::from(elapsed);
            self.block = u64::try_from(wanted).unwrap_or(u64::MAX);
        }
        self.block = self.block.clamp(blocks.min, blocks.max.max(blocks.min));
        self.spent = 0;
        self.rate_since_ms = now_ms;
    }

    /// Claims a block for the root context to fetch, ahead of need, when the credit is under
    /// the low-water mark and nothing stands in the way.
    fn claim_refill(&mut self, usage: Usage, now_ms: u64, rules: &LeaseRules) -> Option<Fetch> {
        let blocks = rules.blocks(usage);
        let block = self.block.clamp(blocks.min, blocks.max.max(blocks.min));
        let low_water = u128::from(block) * u128::from(rules.low_water_permille) / 1000;
        let low_water = i64::try_from(low_water).unwrap_or(i64::MAX);
        if self.balance >= low_water
            || self.fetching(now_ms, rules)
            || self.exhausted_until_ms != 0
            || (self.failing && now_ms < self.retry_at_ms)
        {
            return None;
        }
        Some(self.claim_block(usage, 0, now_ms, rules))
    }

    /// Claims the fetch of a block (at least `need` for the request that waits for it, 0
    /// when fetched ahead of need), the debt on top.
    fn claim_block(&mut self, usage: Usage, need: u64, now_ms: u64, rules: &LeaseRules) -> Fetch {
        self.resize(now_ms, rules, rules.blocks(usage));
        self.fetching_since_ms = now_ms;
        if self.failing {
            self.retry_at_ms = now_ms.saturating_add(RETRY_MS);
        }
        let debt = self.balance.min(0).unsigned_abs();
        let size = self.block.max(need).saturating_add(debt);
        Fetch::new(usage, size, need, true, true)
    }

    /// Adds granted units; the credit lapses at the end of the service's window.
    fn deposit(&mut self, hits: u64, reset_after_s: Option<u64>, now_ms: u64, rules: &LeaseRules) {
        let lasts = reset_after_s.map_or(rules.window_ms, |s| s.max(1).saturating_mul(1000));
        let ends = now_ms.saturating_add(lasts);
        self.expires_at_ms = match self.expires_at_ms {
            0 => ends,
            at => at.min(ends),
        };
        self.balance = self.balance.saturating_add(units(hits));
        self.exhausted_until_ms = 0;
        self.failing = false;
    }

    fn exhaust(&mut self, reset_after_s: Option<u64>, now_ms: u64) {
        let wait = reset_after_s.map_or(RETRY_MS, |s| s.max(1).saturating_mul(1000));
        self.exhausted_until_ms = now_ms.saturating_add(wait);
    }
}

/// A request needs `need` units (at least 1) of `usage`.
pub fn take(
    credit: &Credit,
    rules: &LeaseRules,
    usage: Usage,
    need: u64,
    now_ms: u64,
) -> (Credit, Take) {
    let mut c = *credit;
    c.lapse(now_ms);
    let need = need.max(1);
    if c.balance >= units(need) {
        c.balance -= units(need);
        c.spent = c.spent.saturating_add(need);
        let refill = c.claim_refill(usage, now_ms, rules);
        let generation = c.generation;
        return (c, Take::Covered { generation, refill });
    }
    if now_ms < c.exhausted_until_ms {
        let retry_after_s = seconds_until(c.exhausted_until_ms, now_ms);
        return (c, Take::Exhausted { retry_after_s });
    }
    if c.failing {
        let probe = (now_ms >= c.retry_at_ms && !c.fetching(now_ms, rules))
            .then(|| c.claim_block(usage, 0, now_ms, rules));
        return (c, Take::Unavailable { probe });
    }
    if c.fetching(now_ms, rules) {
        return (c, Take::Ask(Fetch::new(usage, need, need, false, false)));
    }
    if c.exhausted_until_ms != 0 {
        // Exhausted before: a new window is probed with this request's need alone.
        c.fetching_since_ms = now_ms;
        return (c, Take::Fetch(Fetch::new(usage, need, need, true, false)));
    }
    let fetch = c.claim_block(usage, need, now_ms, rules);
    (c, Take::Fetch(fetch))
}

/// Applies the answer to one call of `fetch` (`None`: the call failed).
pub fn answered(
    credit: &Credit,
    fetch: &Fetch,
    answer: Option<&Answer>,
    rules: &LeaseRules,
    now_ms: u64,
) -> (Credit, Step) {
    let mut c = *credit;
    c.lapse(now_ms);
    let mut f = *fetch;
    f.calls = f.calls.saturating_add(1);
    let reset_after_s = answer.and_then(|a| a.reset_after);
    let step = match answer.map(|a| (&a.verdict, a.limit_remaining)) {
        Some((Verdict::Ok, _)) => {
            c.deposit(f.step, reset_after_s, now_ms, rules);
            f.left = f.left.saturating_sub(f.step);
            if f.need > 0 {
                // The request takes its need from what it fetched, also when requests that
                // were in flight left a debt meanwhile (the next block pays that).
                if c.balance >= units(f.need) || f.step >= f.need {
                    c.balance = c.balance.saturating_sub(units(f.need));
                    c.spent = c.spent.saturating_add(f.need);
                    Step::Done(Ended::Admitted {
                        generation: c.generation,
                    })
                } else {
                    // A halved grant: ask for what is still short.
                    let short = units(f.need).saturating_sub(c.balance);
                    f.step = u64::try_from(short).unwrap_or(u64::MAX).max(1);
                    Step::Again(f)
                }
            } else if f.left == 0 {
                Step::Done(Ended::Granted)
            } else {
                f.step = f.step.min(f.left);
                Step::Again(f)
            }
        }
        Some((Verdict::OverLimit, None)) if f.halve && f.step > 1 => {
            c.failing = false;
            f.step /= 2;
            Step::Again(f)
        }
        Some((Verdict::OverLimit, counted)) => {
            c.failing = false;
            // Exhausted: one unit refused, a probe refused, or counted beyond the limit.
            if f.step <= 1 || (f.claimed && !f.halve) || counted.is_some() {
                c.exhaust(reset_after_s, now_ms);
            }
            let retry_after_s = match c.exhausted_until_ms {
                0 => reset_after_s.unwrap_or(1).max(1),
                until => seconds_until(until, now_ms),
            };
            Step::Done(Ended::Refused { retry_after_s })
        }
        Some((Verdict::Unknown, _)) | None => {
            c.failing = true;
            c.retry_at_ms = now_ms.saturating_add(RETRY_MS);
            Step::Done(Ended::Failed)
        }
    };
    let step = match step {
        Step::Again(_) if f.calls >= MAX_FETCH_CALLS => {
            Step::Done(Ended::Refused { retry_after_s: 1 })
        }
        other => other,
    };
    if f.claimed {
        c.fetching_since_ms = match step {
            // Renewed: the fetch is alive.
            Step::Again(_) => now_ms,
            Step::Done(_) => 0,
        };
    }
    (c, step)
}

/// A request that took `reserved` units of credit `generation` used `used`: the difference
/// goes back (or is taken) while that credit lives. `None`: the request took nothing (it ended
/// before its tokens were asked for); what it used is taken from the current credit.
pub fn settle(
    credit: &Credit,
    generation: Option<u32>,
    reserved: u64,
    used: u64,
    now_ms: u64,
) -> Credit {
    let mut c = *credit;
    c.lapse(now_ms);
    // Blocks are sized by what requests really used.
    c.spent = c.spent.saturating_add(used).saturating_sub(reserved);
    if generation.is_none_or(|g| g == c.generation) {
        c.balance = c
            .balance
            .saturating_add(units(reserved))
            .saturating_sub(units(used));
    }
    c
}

/// A tenant's credits, one shared-data value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeaseState {
    pub requests: Credit,
    pub tokens: Credit,
}

/// Encoding version of [`LeaseState`].
const VERSION: u8 = 1;
/// Bytes of one encoded [`Credit`].
const CREDIT_BYTES: usize = 8 * 8 + 4 + 1;

impl LeaseState {
    pub fn get(&self, usage: Usage) -> &Credit {
        match usage {
            Usage::Requests => &self.requests,
            Usage::Tokens => &self.tokens,
        }
    }

    pub fn set(&mut self, usage: Usage, credit: Credit) {
        match usage {
            Usage::Requests => self.requests = credit,
            Usage::Tokens => self.tokens = credit,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 2 * CREDIT_BYTES);
        out.push(VERSION);
        for c in [&self.requests, &self.tokens] {
            out.extend_from_slice(&c.balance.to_le_bytes());
            for n in [
                c.expires_at_ms,
                c.block,
                c.spent,
                c.rate_since_ms,
                c.fetching_since_ms,
                c.exhausted_until_ms,
                c.retry_at_ms,
            ] {
                out.extend_from_slice(&n.to_le_bytes());
            }
            out.extend_from_slice(&c.generation.to_le_bytes());
            out.push(u8::from(c.failing));
        }
        out
    }

    /// Decodes a value written by [`LeaseState::encode`]; anything else (an empty key, another
    /// version) is a tenant with no credit.
    pub fn decode(bytes: &[u8]) -> LeaseState {
        let Some((&VERSION, rest)) = bytes.split_first() else {
            return LeaseState::default();
        };
        let mut reader = Reader(rest);
        let (Some(requests), Some(tokens)) = (reader.credit(), reader.credit()) else {
            return LeaseState::default();
        };
        LeaseState { requests, tokens }
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn bytes<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn u64(&mut self) -> Option<u64> {
        self.bytes().map(u64::from_le_bytes)
    }

    fn credit(&mut self) -> Option<Credit> {
        Some(Credit {
            balance: self.bytes().map(i64::from_le_bytes)?,
            expires_at_ms: self.u64()?,
            block: self.u64()?,
            spent: self.u64()?,
            rate_since_ms: self.u64()?,
            fetching_since_ms: self.u64()?,
            exhausted_until_ms: self.u64()?,
            retry_at_ms: self.u64()?,
            generation: self.bytes().map(u32::from_le_bytes)?,
            failing: self.bytes::<1>()? != [0],
        })
    }
}

#[cfg(test)]
mod tests;
