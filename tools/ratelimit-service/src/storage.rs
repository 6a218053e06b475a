//! Building the limitador engine on its storage.

use crate::service::Limiter;
use limitador::limit::Limit;
use limitador::storage::redis::AsyncRedisStorage;
use limitador::{AsyncRateLimiter, RateLimiter};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::{Duration, Instant};

/// How many counters the in-memory storage keeps (older ones are evicted past this).
pub const MEMORY_CACHE_SIZE: u64 = 100_000;

/// In-memory limiter loaded with `limits`.
pub fn memory_limiter(limits: Vec<Limit>) -> Limiter {
    let limiter = RateLimiter::new(MEMORY_CACHE_SIZE);
    for limit in limits {
        limiter.add_limit(limit);
    }
    Limiter::Memory(limiter)
}

/// Redis-backed limiter loaded with `limits`.
///
/// limitador's own constructor (`AsyncRedisStorage::new`) keeps retrying with long back-offs
/// while Redis is down, which is why limitador-server seems to hang at start. Here the
/// connection is made with short per-attempt timeouts, retried until `connect_timeout` has
/// passed, and then the start fails with the last error. The connection manager is built
/// without retries of its own, so once serving, a call made while Redis is away fails at once
/// (UNAVAILABLE) and triggers a reconnect in the background instead of waiting on back-offs.
/// `io_timeout` bounds each Redis command.
pub async fn redis_limiter(
    url: &str,
    limits: Vec<Limit>,
    connect_timeout: Duration,
    io_timeout: Duration,
) -> Result<Limiter, String> {
    let client = redis::Client::open(url).map_err(|e| format!("invalid Redis URL {url:?}: {e}"))?;
    let config = ConnectionManagerConfig::new()
        .set_number_of_retries(0)
        .set_connection_timeout(io_timeout)
        .set_response_timeout(io_timeout);

    let deadline = Instant::now() + connect_timeout;
    let mut last_error;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = async {
            let mut manager =
                ConnectionManager::new_with_config(client.clone(), config.clone()).await?;
            let info: String = redis::cmd("INFO")
                .arg("server")
                .query_async(&mut manager)
                .await?;
            let storage = AsyncRedisStorage::new_with_conn_manager(manager).await?;
            Ok::<_, redis::RedisError>((info, storage))
        };
        match tokio::time::timeout(left.max(Duration::from_millis(1)), attempt).await {
            Ok(Ok((info, storage))) => {
                check_redis_version(&info)?;
                let limiter = AsyncRateLimiter::new_with_storage(Box::new(storage));
                for limit in limits {
                    limiter.add_limit(limit);
                }
                return Ok(Limiter::Redis(limiter));
            }
            Ok(Err(e)) => last_error = e.to_string(),
            Err(_) => last_error = "no answer".to_string(),
        }
        if Instant::now() + Duration::from_millis(200) >= deadline {
            return Err(format!(
                "cannot reach Redis at {url} within {} ms: {last_error}",
                connect_timeout.as_millis()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// limitador's Redis scripts use `EXPIRE ... NX`, which needs Redis 7.
fn check_redis_version(info: &str) -> Result<(), String> {
    let version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .map(str::trim);
    match version.and_then(|v| v.split('.').next()?.parse::<u32>().ok()) {
        Some(major) if major >= 7 => Ok(()),
        Some(_) => Err(format!(
            "Redis {} is too old: limitador's scripts need Redis 7 or later",
            version.unwrap_or("?")
        )),
        // Forks (e.g. some managed services) may not report it; let them try.
        None => Ok(()),
    }
}
