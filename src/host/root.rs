//! The root context of one worker: loads the configuration into the worker's state
//! (`worker.rs`), refreshes remote key sets from its tick, sends what streams left for it to
//! the rate-limit service (`root/service.rs`), and hands each HTTP stream a context sharing
//! that state.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, MapType};

use crate::host::abi;
use crate::host::global;
use crate::host::secrets;
use crate::host::shared::{self, ObjectStore, QuotaStore};
use crate::host::stats::Stats;
use crate::host::user_store::UserStore;
use crate::host::worker::{random_u64, RecordIds, Refill, Worker};
use crate::policy::alerts::{Delivery, Outbox};
use crate::policy::audit::{self, Chain};
use crate::policy::config::Config;
use crate::policy::identity::RemoteKeys;
use crate::policy::isolation::ProviderObjects;
use crate::policy::jwks::KeySet;
use crate::policy::ratelimit::{Debit, Debits};
use crate::policy::stream::HeaderMode;
use crate::policy::token_cache::TokenCache;

mod alerts;
mod service;

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
    /// This worker counts among those holding stale keys of the provider (see
    /// [`Root::watch_staleness`]).
    stale: bool,
}

/// The context of a new HTTP stream, sharing the worker's state.
pub type NewStream = fn(Rc<RefCell<Worker>>, u32) -> Box<dyn HttpContext>;

#[derive(Default)]
pub struct Root {
    /// This root context's id (to come back to after acting on a stream's behalf).
    id: u32,
    /// Makes the context of each HTTP stream (see `host::root_context`).
    new_stream: Option<NewStream>,
    worker: Option<Rc<RefCell<Worker>>>,
    refresh: Vec<Refresh>,
    /// Callout token → index into `config.remote_jwks`.
    pending: HashMap<u32, usize>,
    /// Callout token → the token debit it carries.
    debits_in_flight: HashMap<u32, Debit>,
    /// The rounds of pieces of refused debits.
    debits: Debits,
    /// Callout token → the block of leased credit it fetches.
    refills_in_flight: HashMap<u32, Refill>,
    /// The rate-limit cluster was checked (on the first tick).
    cluster_checked: bool,
    /// The callout of that check.
    cluster_probe: Option<u32>,
    /// Callout token → the alert webhook delivery it carries.
    alerts_in_flight: HashMap<u32, Delivery>,
}

impl Context for Root {
    fn on_done(&mut self) -> bool {
        self.release_staleness();
        true
    }

    fn on_grpc_call_response(&mut self, token: u32, status_code: u32, _size: usize) {
        if self.cluster_probe == Some(token) {
            self.cluster_probe = None;
            if status_code != 0 && shared::first_to_say("rate-limit-service-answer") {
                let message = hostcalls::get_grpc_status()
                    .ok()
                    .and_then(|(_, m)| m)
                    .unwrap_or_default();
                log::error!(
                    "tenant-guard: the rate-limit service answered a check with gRPC status \
                     {status_code} ({message}); requests follow global_rate_limit.failure_mode \
                     while it does"
                );
            }
            return;
        }
        if let Some(refill) = self.refills_in_flight.remove(&token) {
            self.refill_answered(refill, global::answer(status_code).as_ref());
            return;
        }
        let Some(debit) = self.debits_in_flight.remove(&token) else {
            return;
        };
        self.debit_answered(debit, global::answer(status_code).as_ref());
    }

    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _: usize) {
        if let Some(delivery) = self.alerts_in_flight.remove(&token) {
            self.alert_answered(delivery);
            return;
        }
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
                if let Some(provider) = config.providers.get_mut(remote.provider) {
                    if refresh.loaded == Some(digest) {
                        provider.remote.refreshed(now, remote.max_stale_s);
                    } else {
                        for s in skipped {
                            log::warn!(
                                "tenant-guard: provider {name}: remote JWKS key skipped: {s}"
                            );
                        }
                        log::info!(
                            "tenant-guard: provider {name}: remote JWKS loaded, {} keys",
                            keys.len()
                        );
                        provider.remote = RemoteKeys::loaded(keys, now, remote.max_stale_s);
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
                     keeping the last good key set (for max_stale_s {} s after its fetch), \
                     retrying in {retry}s",
                    remote.cluster,
                    remote.max_stale_s
                );
            }
        }
    }
}

impl Root {
    pub fn new(id: u32, new_stream: NewStream) -> Root {
        Root {
            id,
            new_stream: Some(new_stream),
            ..Root::default()
        }
    }

    /// While the header mode is unknown: a held request whose body Envoy received but never
    /// delivered proves that Envoy does not hold headers for the body; then every held request
    /// is let go (without `content-length` where its body may change), its body to be decided
    /// when Envoy delivers it. A probe whose client sends no body for [`PROBE_PATIENCE_MS`] (it
    /// may wait for the upstream) is let go too, proving nothing.
    fn watch_probes(&mut self) {
        let Some(worker) = &self.worker else {
            return;
        };
        let mut worker = worker.borrow_mut();
        if worker.header_mode != HeaderMode::Unknown || worker.probes.is_empty() {
            return;
        }
        let now_ms = super::now_ms().unwrap_or(0);
        let mut forwarded = false;
        let mut release = Vec::new();
        worker.probes.retain(|probe| {
            if abi::set_effective_context(probe.context_id).is_err() {
                return false;
            }
            forwarded |= super::request_total_size() > probe.total_size;
            let waited = now_ms.saturating_sub(probe.since_ms) >= PROBE_PATIENCE_MS;
            if waited {
                release.push((probe.context_id, probe.may_change_body));
            }
            !waited
        });
        if forwarded {
            release.extend(
                worker
                    .probes
                    .drain(..)
                    .map(|p| (p.context_id, p.may_change_body)),
            );
        }
        for (context_id, may_change_body) in release {
            if abi::set_effective_context(context_id).is_err() {
                continue;
            }
            if may_change_body {
                let _ = abi::remove_header(MapType::HttpRequestHeaders, "content-length");
            }
            if abi::resume_request().is_ok() {
                worker.released.push(context_id);
            }
        }
        if forwarded {
            worker.learn_header_mode(HeaderMode::Forwarded);
        }
        let _ = abi::set_effective_context(self.id);
    }

    /// Finds which providers' remote keys went stale (no good fetch for `max_stale_s`; the
    /// core then refuses tokens that need them) or fresh again on this worker, and says so:
    /// one log line per provider for the whole process (by the first VM to find them stale,
    /// the last to see them fresh), and the gauge `provider.<p>.jwks_stale` counting the VMs
    /// (workers' and the main thread's) that hold stale keys.
    fn watch_staleness(&mut self, now: u64) {
        let Some(worker) = &self.worker else {
            return;
        };
        let mut worker = worker.borrow_mut();
        let Worker { config, stats, .. } = &mut *worker;
        for (remote, refresh) in config.remote_jwks.iter().zip(self.refresh.iter_mut()) {
            let Some(provider) = config.providers.get(remote.provider) else {
                continue;
            };
            let stale = provider.remote.is_stale(now);
            if stale == refresh.stale {
                continue;
            }
            refresh.stale = stale;
            let name = provider.name.as_str();
            stats.jwks_stale(name, if stale { 1 } else { -1 });
            match (stale, shared::stale_key_holders(name, stale)) {
                (true, Some(0)) => log::warn!(
                    "tenant-guard: keys of provider {name} are stale: no good fetch from cluster \
                     {} for max_stale_s {} s; tokens that need its remote keys are refused until \
                     a fetch succeeds",
                    remote.cluster,
                    remote.max_stale_s
                ),
                (false, Some(1)) => log::info!(
                    "tenant-guard: provider {name}: remote keys fresh again; their tokens are \
                     accepted"
                ),
                _ => {}
            }
        }
    }

    /// This worker leaves the holders of stale keys (its configuration is replaced or ends).
    fn release_staleness(&mut self) {
        let Some(worker) = &self.worker else {
            return;
        };
        let mut worker = worker.borrow_mut();
        let Worker { config, stats, .. } = &mut *worker;
        for (remote, refresh) in config.remote_jwks.iter().zip(self.refresh.iter_mut()) {
            if std::mem::take(&mut refresh.stale) {
                if let Some(provider) = config.providers.get(remote.provider) {
                    stats.jwks_stale(&provider.name, -1);
                    let _ = shared::stale_key_holders(&provider.name, false);
                }
            }
        }
    }
}

/// The root context's timer period.
const TICK: Duration = Duration::from_millis(100);
/// How long a probe waits for its client's body before its headers go on anyway.
const PROBE_PATIENCE_MS: u64 = 1000;

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
        let config = match Config::parse(&document).and_then(secrets::load) {
            Ok(config) => config,
            Err(e) => {
                log::error!("{}", e.log_line());
                return false;
            }
        };
        self.release_staleness();
        self.refresh = vec![Refresh::default(); config.remote_jwks.len()];
        self.pending.clear();
        // Callouts are started from ticks, never from on_configure: remote JWKS refreshes
        // (second granularity), token debits for the rate-limit service (sent promptly), and
        // the header-mode watch (a held request must not wait long).
        if hostcalls::set_tick_period(TICK).is_err() {
            log::error!("tenant-guard: cannot start the filter's timer");
            return false;
        }
        let listed = config.tenants.listed_ids();
        // Before traffic, so no two workers race to create a tenant's quota key.
        // Default tenants with counters of their own: shared-data slots, never freed.
        let slots = config.tenants.default_tenant().map_or(0, |d| d.max_tenants);
        let leases = config
            .global_rate_limit
            .as_ref()
            .is_some_and(|g| g.lease.is_some());
        let quotas = QuotaStore::new(listed.iter().copied(), slots, leases);
        let default_max_users = config
            .tenants
            .default_tenant()
            .and_then(|d| d.limits.per_user.as_ref())
            .map(|p| p.max_users);
        let users = UserStore::new(
            config.tenants.user_bounds().into_iter(),
            slots,
            default_max_users,
        );
        shared::ensure_alert_keys(listed.iter().copied(), slots);
        let store = &config.isolation.store;
        let objects = match config.isolation.provider_objects {
            ProviderObjects::Owner => ObjectStore::new(store.buckets, store.ttl_s),
            ProviderObjects::Off => ObjectStore::new(0, store.ttl_s),
        };
        let stats = Stats::new(listed.into_iter(), config.stats.max_tenant_series);
        let cache = TokenCache::new(config.token_cache_size);
        // The audit chain starts by naming the configuration it runs under.
        let key = config.audit_key.as_ref().and_then(|k| k.value().cloned());
        let mut audit = Chain::new(format!("{:016x}", random_u64()), key);
        let config_sha256 = audit::hex(&config.document_sha256);
        let start = audit.start(
            &audit::rfc3339_millis(super::now_ms().unwrap_or(0)),
            &config_sha256,
        );
        log::info!("{start}");
        // One queue per worker (a queue's news go to the root that registered its name last).
        let wake = abi::register_shared_queue(&format!("tenant-guard/wake/{:016x}", random_u64()))
            .map_err(|e| {
                log::warn!("tenant-guard: no wake-up queue ({e:?}): debits wait for ticks")
            })
            .ok();
        self.worker = Some(Rc::new(RefCell::new(Worker {
            audit_start: Some(start),
            config,
            cache,
            stats,
            quotas,
            users,
            objects,
            debits: Vec::new(),
            refills: Vec::new(),
            alerts: Outbox::default(),
            wake,
            wake_pending: false,
            record_ids: RecordIds::new(),
            audit,
            header_mode: HeaderMode::Unknown,
            probes: Vec::new(),
            released: Vec::new(),
        })));
        true
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        let Some(worker) = &self.worker else {
            return;
        };
        {
            let mut worker = worker.borrow_mut();
            if worker.wake != Some(queue_id) {
                return;
            }
            worker.wake_pending = false;
            while let Ok(Some(_)) = abi::dequeue_shared_queue(queue_id) {}
        }
        self.send_queued();
        self.send_alerts();
    }

    fn on_tick(&mut self) {
        self.check_rate_limit_cluster();
        self.send_queued();
        self.send_alerts();
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
        drop(worker);
        self.watch_staleness(now);
        // Last: it acts on streams' behalf and comes back to this context.
        self.watch_probes();
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let new_stream = self.new_stream?;
        let worker = self.worker.clone()?;
        Some(new_stream(worker, context_id))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
