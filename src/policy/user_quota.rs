//! Budgets inside a tenant (`plans.<p>.per_user`, or a tenant's own `limits.per_user`): each
//! user of a tenant gets request and token windows and a monthly budget of their own, inside
//! the tenant's. A request must fit both.
//!
//! # Whose counters
//! A user is the token's user claim (`identity.user_claim`), or an API key's `user` (its `id`
//! when it names none). Shared data never frees a key, so at most `max_users` users of a
//! tenant get counters of their own; the shell keeps them in slots made at load time. Every
//! other request of the tenant counts in one *shared* counter with the same per-user limits:
//! the requests of users beyond `max_users`, and requests that carry no user (a token without
//! the claim). So no request ever escapes the per-user limits: users without counters of their
//! own share one user's allowance (a bound, not a promise of service), and the tenant's limits
//! hold for all of them.
//!
//! # Order and exactness
//! The user's counters and the tenant's live under two shared-data keys, so one request is two
//! compare-and-swaps. The user's go first: a user at their limit is refused without touching
//! the tenant's counters, which every user of the tenant contends for. When the tenant's then
//! refuse, the user's admission is withdrawn ([`quota::withdraw`]). Both hold the same
//! [`Reservation`] (same demand, same `now`), and every later step (the body's estimate, the
//! capped output, the settlement) applies it to both, so each set of counters ends exactly as
//! if it were the only one. While a withdrawn admission is in flight, a concurrent request of
//! the same user may see one request more in the user's windows than finally counts (a
//! refusal the user could have avoided, never an admission beyond a limit).

use crate::policy::denial::Reason;
use crate::policy::output_cap::{self, Ask, Cap};
use crate::policy::plan::{Limits, OutputCap};
use crate::policy::quota::{self, Actual, Demand, QuotaState, Refusal, Reservation, WindowStatus};

/// The reason a user's own window refuses with.
pub fn user_reason(reason: Reason) -> Reason {
    match reason {
        Reason::RequestQuotaExceeded => Reason::UserRequestQuotaExceeded,
        Reason::TokenQuotaExceeded => Reason::UserTokenQuotaExceeded,
        Reason::BudgetExceeded => Reason::UserBudgetExceeded,
        other => other,
    }
}

fn as_user(mut refusal: Refusal) -> Refusal {
    refusal.reason = user_reason(refusal.reason);
    refusal
}

/// The windows a client is shown: each of the tenant's, or the user's of the same kind and
/// length when no more is left there (so a user's refusal shows the user's window); then the
/// user's windows the tenant has no match for.
pub fn tighter(tenant: &[WindowStatus], user: &[WindowStatus]) -> Vec<WindowStatus> {
    let same = |a: &WindowStatus, b: &WindowStatus| a.kind == b.kind && a.window_s == b.window_s;
    let mut out: Vec<WindowStatus> = tenant
        .iter()
        .map(|t| match user.iter().find(|u| same(u, t)) {
            Some(u) if u.remaining <= t.remaining => *u,
            _ => *t,
        })
        .collect();
    out.extend(user.iter().filter(|u| !tenant.iter().any(|t| same(t, u))));
    out
}

/// The tenant's limits hold any window or budget.
fn counts(limits: &Limits) -> bool {
    !limits.is_empty()
}

/// Which set of counters an update is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Books {
    Tenant,
    /// The request's user's (their own, or the tenant's shared counter).
    User,
}

/// Why an update did not happen.
#[derive(Debug, PartialEq, Eq)]
pub enum StoreError<E> {
    /// The change refused: nothing was written.
    Refused(E),
    /// The counters could not be read or written.
    Unavailable(String),
}

/// The counters of one request's tenant and user, updated by compare-and-swap: the shell
/// implements it over shared data, tests over memory.
pub trait Ledger {
    /// Reads the counters of `books`, applies `change`, and writes the result back only if
    /// nobody wrote in between (otherwise starts over with the fresh value).
    fn update<T, E>(
        &mut self,
        books: Books,
        change: impl FnMut(&[u8]) -> Result<(Vec<u8>, T), E>,
    ) -> Result<T, StoreError<E>>;

    /// A correction of the user's counters could not be written (the shell logs it).
    fn lost(&mut self, _what: &'static str) {}
}

/// How an admission against a tenant's (and its user's) counters went.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Nothing to count.
    Unlimited,
    /// Admitted: the reservation both sets of counters hold, and the windows to show.
    Held(Reservation, Vec<WindowStatus>),
    Refused(Refusal),
    Unavailable(String),
}

/// Admits a request against its user's limits, then its tenant's (see the module doc).
pub fn admit(ledger: &mut impl Ledger, limits: &Limits, now: u64, demand: Demand) -> Admission {
    let Some(per_user) = &limits.per_user else {
        if !counts(limits) {
            return Admission::Unlimited;
        }
        return match admit_in(ledger, Books::Tenant, limits, now, demand) {
            Ok((reservation, windows)) => Admission::Held(reservation, windows),
            Err(StoreError::Refused(refusal)) => Admission::Refused(refusal),
            Err(StoreError::Unavailable(why)) => Admission::Unavailable(why),
        };
    };
    let user = &per_user.limits;
    let (reservation, user_windows) = match admit_in(ledger, Books::User, user, now, demand) {
        Ok(admitted) => admitted,
        Err(StoreError::Refused(refusal)) => {
            // What the tenant has left too, read without writing.
            let tenant = peek(ledger, limits, now).unwrap_or_default();
            let mut refusal = as_user(refusal);
            refusal.windows = tighter(&tenant, &refusal.windows);
            return Admission::Refused(refusal);
        }
        Err(StoreError::Unavailable(why)) => return Admission::Unavailable(why),
    };
    if !counts(limits) {
        return Admission::Held(reservation, user_windows);
    }
    match admit_in(ledger, Books::Tenant, limits, now, demand) {
        Ok((tenant_reservation, tenant_windows)) => {
            debug_assert_eq!(reservation, tenant_reservation);
            Admission::Held(reservation, tighter(&tenant_windows, &user_windows))
        }
        Err(e) => {
            let user_after = ledger.update(Books::User, |bytes| {
                let next = quota::withdraw(&QuotaState::decode(bytes), user, now, &reservation);
                let windows = quota::statuses(&next, user, now);
                Ok::<_, ()>((next.encode(), windows))
            });
            let user_windows = match user_after {
                Ok(windows) => windows,
                Err(_) => {
                    ledger.lost("a user's admission could not be withdrawn");
                    user_windows
                }
            };
            match e {
                StoreError::Refused(mut refusal) => {
                    refusal.windows = tighter(&refusal.windows, &user_windows);
                    Admission::Refused(refusal)
                }
                StoreError::Unavailable(why) => Admission::Unavailable(why),
            }
        }
    }
}

fn admit_in(
    ledger: &mut impl Ledger,
    books: Books,
    limits: &Limits,
    now: u64,
    demand: Demand,
) -> Result<(Reservation, Vec<WindowStatus>), StoreError<Refusal>> {
    ledger.update(books, |bytes| {
        let state = QuotaState::decode(bytes);
        quota::admit(&state, limits, now, demand)
            .map(|a| (a.state.encode(), (a.reservation, a.windows)))
    })
}

/// The tenant's windows now, read without writing.
fn peek(ledger: &mut impl Ledger, limits: &Limits, now: u64) -> Option<Vec<WindowStatus>> {
    if !counts(limits) {
        return Some(Vec::new());
    }
    match ledger.update(Books::Tenant, |bytes| {
        Err::<(Vec<u8>, ()), _>(quota::statuses(&QuotaState::decode(bytes), limits, now))
    }) {
        Err(StoreError::Refused(windows)) => Some(windows),
        _ => None,
    }
}

/// Replaces the provisional reservation by one for `demand` in both sets of counters (see
/// [`quota::reserve`]). `None` when the counters could not be updated.
pub fn reserve(
    ledger: &mut impl Ledger,
    limits: &Limits,
    now: u64,
    provisional: &Reservation,
    demand: Demand,
) -> Option<Reservation> {
    let mut out = None;
    for (books, limits) in books_of(limits) {
        let reserved = ledger.update(books, |bytes| {
            let state = QuotaState::decode(bytes);
            let (next, reservation) = quota::reserve(&state, limits, now, provisional, demand);
            Ok::<_, ()>((next.encode(), reservation))
        });
        match reserved {
            Ok(reservation) => out = Some(reservation),
            Err(_) => return None,
        }
    }
    out
}

/// The sets of counters a tenant's limits keep: the user's first.
fn books_of(limits: &Limits) -> Vec<(Books, &Limits)> {
    let mut out = Vec::with_capacity(2);
    if let Some(per_user) = &limits.per_user {
        out.push((Books::User, &*per_user.limits));
    }
    if counts(limits) {
        out.push((Books::Tenant, limits));
    }
    out
}

/// How capping a request's output went (see [`output_cap::reserve`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Capped {
    Reserved(Reservation, Cap),
    Refused(Refusal),
    Unavailable(String),
}

/// Caps the request's output to the room left in its user's windows and budget, then in its
/// tenant's: both end up holding the reservation of the smaller cap. When the tenant's
/// refuses, the user's counters hold the provisional demand again.
pub fn cap(
    ledger: &mut impl Ledger,
    limits: &Limits,
    now: u64,
    provisional: &Reservation,
    ask: &Ask,
    rule: OutputCap,
) -> Capped {
    let Some(per_user) = &limits.per_user else {
        return match cap_in(ledger, Books::Tenant, limits, now, provisional, ask, rule) {
            Ok((reservation, cap)) => Capped::Reserved(reservation, cap),
            Err(StoreError::Refused(refusal)) => Capped::Refused(refusal),
            Err(StoreError::Unavailable(why)) => Capped::Unavailable(why),
        };
    };
    let user = &*per_user.limits;
    let (user_reservation, user_cap) =
        match cap_in(ledger, Books::User, user, now, provisional, ask, rule) {
            Ok(capped) => capped,
            Err(StoreError::Refused(refusal)) => return Capped::Refused(as_user(refusal)),
            Err(StoreError::Unavailable(why)) => return Capped::Unavailable(why),
        };
    if !counts(limits) {
        return Capped::Reserved(user_reservation, user_cap);
    }
    let narrowed = Ask {
        requested: Some(user_cap.per_choice),
        ..*ask
    };
    let tenant = cap_in(
        ledger,
        Books::Tenant,
        limits,
        now,
        provisional,
        &narrowed,
        rule,
    );
    // The user's counters follow the tenant's answer: the smaller cap, or the provisional
    // demand again when the tenant's refused (the request is then settled as provisional).
    let (outcome, demand) = match tenant {
        Ok((reservation, tenant_cap)) => {
            let cap = Cap {
                rewrite: user_cap.rewrite || tenant_cap.rewrite,
                ..tenant_cap
            };
            (Capped::Reserved(reservation, cap), tenant_cap.demand)
        }
        Err(StoreError::Refused(refusal)) => (Capped::Refused(refusal), provisional.demand),
        Err(StoreError::Unavailable(why)) => (Capped::Unavailable(why), provisional.demand),
    };
    if demand != user_cap.demand {
        let lowered = ledger.update(Books::User, |bytes| {
            let state = QuotaState::decode(bytes);
            let (next, _) = quota::reserve(&state, user, now, &user_reservation, demand);
            Ok::<_, ()>((next.encode(), ()))
        });
        if lowered.is_err() {
            ledger.lost("a user's capped reservation could not be corrected");
        }
    }
    outcome
}

fn cap_in(
    ledger: &mut impl Ledger,
    books: Books,
    limits: &Limits,
    now: u64,
    provisional: &Reservation,
    ask: &Ask,
    rule: OutputCap,
) -> Result<(Reservation, Cap), StoreError<Refusal>> {
    ledger.update(books, |bytes| {
        let state = QuotaState::decode(bytes);
        let (next, reservation, cap) =
            output_cap::reserve(&state, limits, now, provisional, ask, rule)?;
        Ok((next.encode(), (reservation, cap)))
    })
}

/// Replaces the reservation by the real usage in both sets of counters (see
/// [`quota::settle`]); `Err` names what could not be updated.
pub fn settle(
    ledger: &mut impl Ledger,
    limits: &Limits,
    now: u64,
    reservation: &Reservation,
    actual: Actual,
) -> Result<Option<QuotaState>, String> {
    let mut failed = Vec::new();
    let mut tenant = None;
    for (books, limits) in books_of(limits) {
        let settled = ledger.update(books, |bytes| {
            let next = quota::settle(&QuotaState::decode(bytes), limits, now, reservation, actual);
            Ok::<_, ()>((next.encode(), next))
        });
        match settled {
            Ok(state) if books == Books::Tenant => tenant = Some(state),
            Ok(_) | Err(StoreError::Refused(())) => {}
            Err(StoreError::Unavailable(why)) => failed.push(format!("{books:?}: {why}")),
        }
    }
    if failed.is_empty() {
        Ok(tenant)
    } else {
        Err(failed.join("; "))
    }
}

#[cfg(test)]
mod tests;
