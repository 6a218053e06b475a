//! The root context of one worker: loads the configuration, refreshes remote key sets from its
//! tick, and hands each HTTP stream a filter sharing the worker's state.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, MapType};

use crate::host::filter::Filter;
use crate::host::global;
use crate::host::shared;
use crate::host::stats::Stats;
use crate::policy::config::Config;
use crate::policy::identity::RemoteKeys;
use crate::policy::jwks::KeySet;
use crate::policy::ratelimit::{self, Debit, Subject};
use crate::policy::token_cache::TokenCache;

/// What every stream on this worker shares.
pub struct Worker {
    pub config: Config,
    pub cache: TokenCache,
    pub stats: Stats,
    /// Token debits for the rate-limit service, waiting for the next tick.
    pub debits: Vec<Debit>,
}

/// Refresh state of one `remote_jwks` entry.
#[derive(Default, Clone, Copy)]
struct Refresh {
    /// When the next fetch is due (Unix seconds).
    due: u64,
    /// Consecutive failures, for the retry back-off.
    failures: u32,
    in_flight: bool,
    /// SHA-256 of the last key set loaded, to tell a rotation from a plain refresh.
    loaded: Option<[u8; 32]>,
}

#[derive(Default)]
pub struct Root {
    worker: Option<Rc<RefCell<Worker>>>,
    refresh: Vec<Refresh>,
    /// Callout token → index into `config.remote_jwks`.
    pending: HashMap<u32, usize>,
    /// Callout token → the token debit it carries.
    debits_in_flight: HashMap<u32, Debit>,
}

impl Context for Root {
    fn on_grpc_call_response(&mut self, token: u32, status_code: u32, response_size: usize) {
        let Some(mut debit) = self.debits_in_flight.remove(&token) else {
            return;
        };
        let answer = global::answer(status_code, response_size);
        if debit.advance(answer.as_ref()) {
            self.send_debit(debit);
        } else if debit.unsettled() > 0 {
            log::warn!(
                "tenant-guard: rate-limit service took no debit of {} tokens for tenant {}",
                debit.unsettled(),
                debit.tenant
            );
        }
    }

    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _: usize) {
        let Some(index) = self.pending.remove(&token) else {
            return;
        };
        let Some(worker) = &self.worker else {
            return;
        };
        let now = super::now().unwrap_or(0);
        let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten();
        let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let mut worker = worker.borrow_mut();
        let Worker { config, cache, .. } = &mut *worker;
        let Some(remote) = config.remote_jwks.get(index) else {
            return;
        };
        let name = config
            .providers
            .get(remote.provider)
            .map(|p| p.name.clone())
            .unwrap_or_default();
        let digest = hmac_sha256::Hash::hash(&body);
        let outcome = match status.as_deref() {
            Some("200") => KeySet::from_remote(&body).map_err(|e| e.to_string()),
            Some(other) => Err(format!("HTTP status {other}")),
            None => Err("no response (cluster unreachable or timed out)".to_string()),
        };
        let Some(refresh) = self.refresh.get_mut(index) else {
            return;
        };
        refresh.in_flight = false;
        match outcome {
            Ok((keys, skipped)) => {
                for s in skipped {
                    log::warn!("tenant-guard: provider {name}: remote JWKS key skipped: {s}");
                }
                if refresh.loaded != Some(digest) {
                    if let Some(provider) = config.providers.get_mut(remote.provider) {
                        log::info!(
                            "tenant-guard: provider {name}: remote JWKS loaded, {} keys",
                            keys.len()
                        );
                        provider.remote = RemoteKeys::Loaded(keys);
                        refresh.loaded = Some(digest);
                        // Tokens verified with a key that is gone must be verified again.
                        cache.clear();
                    }
                }
                refresh.failures = 0;
                refresh.due = now.saturating_add(remote.refresh_s);
            }
            Err(reason) => {
                refresh.failures = refresh.failures.saturating_add(1);
                let retry = retry_after(refresh.failures).min(remote.refresh_s);
                refresh.due = now.saturating_add(retry);
                log::warn!(
                    "tenant-guard: provider {name}: remote JWKS fetch from cluster {} failed: {reason}; \
                     keeping the last good key set, retrying in {retry}s",
                    remote.cluster
                );
            }
        }
    }
}

impl Root {
    /// Sends (or sends again) a token debit; the answer comes back to this root context.
    fn send_debit(&mut self, debit: Debit) {
        let Some(worker) = &self.worker else {
            return;
        };
        let worker = worker.borrow();
        let Some(rules) = &worker.config.global_rate_limit else {
            return;
        };
        let subject = Subject {
            plan: debit.plan.as_deref(),
            tenant: &debit.tenant,
            user: debit.user.as_deref(),
            model: debit.model.as_deref(),
        };
        match global::call(rules, ratelimit::Usage::Tokens, &subject, debit.hits()) {
            Ok(token) => {
                self.debits_in_flight.insert(token, debit);
            }
            Err(status) => log::warn!(
                "tenant-guard: token debit for tenant {} not sent: {status:?}",
                debit.tenant
            ),
        }
    }
}

/// Back-off after `failures` consecutive failed fetches: 1, 2, 4 … 60 seconds.
fn retry_after(failures: u32) -> u64 {
    1u64.checked_shl(failures.saturating_sub(1))
        .unwrap_or(u64::MAX)
        .min(60)
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let document = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let config = match Config::parse(&document) {
            Ok(config) => config,
            Err(e) => {
                log::error!("tenant-guard: invalid configuration: {e}");
                return false;
            }
        };
        self.refresh = vec![Refresh::default(); config.remote_jwks.len()];
        self.pending.clear();
        // Callouts are started from ticks, never from on_configure: remote JWKS refreshes
        // (second granularity) and token debits for the rate-limit service (sent promptly).
        let tick = if config.global_rate_limit.is_some() {
            Some(Duration::from_millis(200))
        } else if !config.remote_jwks.is_empty() {
            Some(Duration::from_secs(1))
        } else {
            None
        };
        if let Some(period) = tick {
            if hostcalls::set_tick_period(period).is_err() {
                log::error!("tenant-guard: cannot start the filter's timer");
                return false;
            }
        }
        let listed = config.tenants.listed_ids();
        for tenant in &listed {
            // Before traffic, so no two workers race to create a tenant's quota key.
            shared::ensure(&shared::quota_key(tenant));
        }
        let stats = Stats::new(listed.into_iter(), config.stats.max_tenant_series);
        let cache = TokenCache::new(config.token_cache_size);
        self.worker = Some(Rc::new(RefCell::new(Worker {
            config,
            cache,
            stats,
            debits: Vec::new(),
        })));
        true
    }

    fn on_tick(&mut self) {
        let debits = match &self.worker {
            Some(worker) => std::mem::take(&mut worker.borrow_mut().debits),
            None => return,
        };
        for debit in debits {
            self.send_debit(debit);
        }
        let Some(worker) = &self.worker else {
            return;
        };
        let Some(now) = super::now() else {
            return;
        };
        let worker = worker.borrow();
        for (index, remote) in worker.config.remote_jwks.iter().enumerate() {
            let Some(refresh) = self.refresh.get_mut(index) else {
                continue;
            };
            if refresh.in_flight || now < refresh.due {
                continue;
            }
            let headers = vec![
                (":method", "GET"),
                (":path", remote.path.as_str()),
                (":authority", remote.authority.as_str()),
                ("accept", "application/json"),
            ];
            let timeout = Duration::from_millis(remote.timeout_ms);
            match hostcalls::dispatch_http_call(&remote.cluster, headers, None, vec![], timeout) {
                Ok(token) => {
                    refresh.in_flight = true;
                    self.pending.insert(token, index);
                }
                Err(status) => {
                    refresh.failures = refresh.failures.saturating_add(1);
                    refresh.due = now.saturating_add(retry_after(refresh.failures));
                    log::warn!(
                        "tenant-guard: cannot call cluster {} for remote JWKS: {status:?}",
                        remote.cluster
                    );
                }
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let worker = self.worker.clone()?;
        Some(Box::new(Filter::new(worker)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
