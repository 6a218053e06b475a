//! Leased credit (`global_rate_limit.lease`) in shared data: the compare-and-swap steps around
//! `policy::lease`, and the calls that fetch credit. Streams take credit and fetch what they
//! wait for; the root context fetches blocks ahead of need (`worker::Refill`).

use proxy_wasm::types::Status;

use crate::host::global;
use crate::host::shared::{QuotaKey, UpdateError};
use crate::host::worker::{Holder, Worker};
use crate::policy::global_rate_limit::GlobalRateLimit;
use crate::policy::lease::{self, Fetch, LeaseRules, LeaseState, Step, Take};
use crate::policy::ratelimit::{Answer, Quota, Subject, Usage, Verdict};

fn unavailable<E>(e: UpdateError<E>) -> String {
    match e {
        UpdateError::Refused(_) => "refused".into(),
        UpdateError::Unavailable(why) => why,
    }
}

/// A request of `holder` takes `need` units of `usage` (see `policy::lease::take`).
pub fn take(
    worker: &mut Worker,
    holder: &Holder,
    rules: &LeaseRules,
    usage: Usage,
    need: u64,
    now_ms: u64,
) -> Result<Take, String> {
    worker
        .quotas
        .update_lease(&holder.key, |bytes| {
            let mut state = LeaseState::decode(bytes);
            let (credit, take) = lease::take(state.get(usage), rules, usage, need, now_ms);
            state.set(usage, credit);
            Ok::<_, ()>((state.encode(), take))
        })
        .map_err(unavailable)
}

/// Applies the answer to one call of `fetch`; counts the units granted.
pub fn answered(
    worker: &mut Worker,
    holder: &Holder,
    rules: &LeaseRules,
    fetch: &Fetch,
    answer: Option<&Answer>,
    now_ms: u64,
) -> Result<Step, String> {
    let usage = fetch.usage;
    let step = worker
        .quotas
        .update_lease(&holder.key, |bytes| {
            let mut state = LeaseState::decode(bytes);
            let (credit, step) = lease::answered(state.get(usage), fetch, answer, rules, now_ms);
            state.set(usage, credit);
            Ok::<_, ()>((state.encode(), step))
        })
        .map_err(unavailable)?;
    if answer.is_some_and(|a| a.verdict == Verdict::Ok) {
        let metric = format!("global.lease.granted.{}", usage.as_str());
        worker.stats.count_by(&metric, fetch.hits());
    }
    Ok(step)
}

/// A request that took `reserved` tokens of credit `generation` (`None`: it took none) used
/// `used`.
pub fn settle(
    worker: &mut Worker,
    key: &QuotaKey,
    generation: Option<u32>,
    reserved: u64,
    used: u64,
    now_ms: u64,
) -> Result<(), String> {
    worker
        .quotas
        .update_lease(key, |bytes| {
            let mut state = LeaseState::decode(bytes);
            let credit = lease::settle(&state.tokens, generation, reserved, used, now_ms);
            state.tokens = credit;
            Ok::<_, ()>((state.encode(), ()))
        })
        .map_err(unavailable)
}

/// Sends the next call of `fetch`; its answer reaches the context that is current now.
pub fn send(
    worker: &mut Worker,
    rules: &GlobalRateLimit,
    holder: &Holder,
    fetch: &Fetch,
) -> Result<u32, Status> {
    let subject = Subject {
        plan: holder.plan.as_deref(),
        tenant: &holder.tenant,
        user: None,
        model: None,
    };
    worker.stats.count("global.calls");
    global::call(rules, Quota::tenant(fetch.usage), &subject, fetch.hits())
}
