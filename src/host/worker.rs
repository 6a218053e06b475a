//! What every stream on one worker shares, and its root context too: the compiled
//! configuration, the token cache, the stores in shared data, stats, record ids, the audit
//! chain, what is known of Envoy's header mode, and the queues streams leave for the root
//! (token debits, refills of leased credit). The root context makes it in `on_configure`;
//! the root and each stream borrow it (an `Rc<RefCell<Worker>>`: a worker runs its VM on one
//! thread), and neither needs the other.

use proxy_wasm::hostcalls;

use crate::host::abi;
use crate::host::shared::{self, ObjectStore, QuotaKey, QuotaStore};
use crate::host::stats::Stats;
use crate::host::user_store::{RequestBooks, UserStore};
use crate::policy::alerts::Outbox;
use crate::policy::audit::Chain;
use crate::policy::config::Config;
use crate::policy::lease::Fetch;
use crate::policy::plan::Limits;
use crate::policy::ratelimit::Debit;
use crate::policy::stream::HeaderMode;
use crate::policy::token_cache::TokenCache;

/// What every stream on this worker shares.
pub struct Worker {
    pub config: Config,
    pub cache: TokenCache,
    pub stats: Stats,
    pub quotas: QuotaStore,
    /// Users' counters (`per_user`).
    pub users: UserStore,
    /// Who created which provider-side object.
    pub objects: ObjectStore,
    /// Token debits for the rate-limit service, waiting for the root context to send them.
    pub debits: Vec<Debit>,
    /// Blocks of leased credit for the root context to fetch ahead of need.
    pub refills: Vec<Refill>,
    /// Alert webhook bodies waiting for the root context to send them (bounded).
    pub alerts: Outbox,
    /// This worker's wake-up queue: its root context sends what streams left for it as soon
    /// as an item arrives (see [`Worker::wake_root`]).
    pub wake: Option<u32>,
    /// A wake-up is queued and not yet seen by the root.
    pub wake_pending: bool,
    pub record_ids: RecordIds,
    /// This worker VM's audit chain.
    pub audit: Chain,
    /// The chain's start line, until it went out with the first audit event's filter state.
    pub audit_start: Option<String>,
    /// Whether Envoy lets request headers wait while the filter reads the body: learnt from
    /// the first request this worker holds (see `policy::stream`).
    pub header_mode: HeaderMode,
    /// Requests whose headers wait for their body while `header_mode` is unknown.
    pub probes: Vec<Probe>,
    /// Probes whose headers the root let go (they learn it at their next callback).
    pub released: Vec<u32>,
}

/// A request holding its headers to learn the header mode.
pub struct Probe {
    pub context_id: u32,
    /// When its headers were held (ms since the epoch).
    pub since_ms: u64,
    /// `request.total_size` when its headers were held.
    pub total_size: u64,
    /// Its body may change: its headers go without `content-length` if they are let go.
    pub may_change_body: bool,
}

/// Whose credit a fetch fills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub key: QuotaKey,
    pub tenant: String,
    pub plan: Option<String>,
}

/// A block the root context fetches ahead of need.
pub struct Refill {
    pub holder: Holder,
    pub fetch: Fetch,
}

/// A random 64-bit number: `RandomState` is seeded from the host's random source (WASI
/// `random_get`); the host's clock is mixed in for good measure.
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    hasher.finish()
}

/// Record ids: unique per worker VM (a random nonce) and per record (a counter).
pub struct RecordIds {
    nonce: u64,
    next: u64,
}

impl RecordIds {
    pub fn new() -> RecordIds {
        RecordIds {
            nonce: random_u64(),
            next: 0,
        }
    }

    pub fn next_id(&mut self) -> String {
        self.next = self.next.wrapping_add(1);
        format!("{:016x}{:016x}", self.nonce, self.next)
    }
}

impl Worker {
    /// The books of a request of `tenant` (and `user`) in this worker's stores.
    pub fn books<'a>(
        &'a mut self,
        tenant: &'a QuotaKey,
        user: Option<&'a str>,
        limits: &'a Limits,
    ) -> RequestBooks<'a> {
        RequestBooks {
            quotas: &mut self.quotas,
            users: &mut self.users,
            tenant,
            user,
            limits,
        }
    }

    /// Has the root context send what streams left for it (token debits, refills) now rather than at
    /// its next tick. A stream cannot send them itself and see the answer: the SDK routes an
    /// answer to the context that made the call, and the stream is gone by then. An item on
    /// the worker's shared queue makes Envoy post `on_queue_ready` to the root context on this
    /// worker's event loop, right after the current callback.
    pub fn wake_root(&mut self) {
        let Some(queue) = self.wake else {
            return;
        };
        if self.wake_pending {
            return;
        }
        self.wake_pending = abi::enqueue_shared_queue(queue, b"w").is_ok();
    }

    /// Whether the root let this request's held headers go.
    pub fn take_released(&mut self, context_id: u32) -> bool {
        let before = self.released.len();
        self.released.retain(|id| *id != context_id);
        self.released.len() != before
    }

    /// Takes what a probe proved; logs it once per process.
    pub fn learn_header_mode(&mut self, mode: HeaderMode) {
        if self.header_mode != HeaderMode::Unknown {
            return;
        }
        self.header_mode = mode;
        self.probes.clear();
        self.stats.count(match mode {
            HeaderMode::Held => "header_mode.held",
            _ => "header_mode.forwarded",
        });
        if !shared::first_to_say(&format!("header-mode/{mode:?}")) {
            return;
        }
        match mode {
            HeaderMode::Held => log::info!(
                "tenant-guard: Envoy holds request headers while the filter reads the body \
                 (allow_on_headers_stop_iteration): body rules are decided before the upstream \
                 sees a request"
            ),
            HeaderMode::Forwarded => log::warn!(
                "tenant-guard: Envoy forwards request headers before the filter reads the body \
                 (allow_on_headers_stop_iteration is not set, or Envoy is older than 1.35): a \
                 request refused for its body reaches the upstream as headers and a reset, and a \
                 body that may change goes without content-length"
            ),
            HeaderMode::Unknown => {}
        }
    }
}
