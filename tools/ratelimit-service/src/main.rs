//! `tenant-guard-ratelimit`: Envoy RLS v3 (`ShouldRateLimit`) on limitador, for development and
//! tests. See README.md for the CLI and the semantics.

use clap::{Parser, ValueEnum};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tenant_guard_ratelimit::limits::load_limits_file;
use tenant_guard_ratelimit::service::{RateLimitHandler, RateLimitServer, ServiceOptions};
use tenant_guard_ratelimit::storage::{memory_limiter, redis_limiter};
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StorageKind {
    /// Counters in this process (exact; lost on exit; not shared).
    Memory,
    /// Counters in Redis (needs --redis).
    Redis,
}

/// Envoy global rate-limit service (gRPC envoy.service.ratelimit.v3.RateLimitService) on
/// Kuadrant's limitador engine, answering as limitador-server does. For development and tests.
#[derive(Parser, Debug)]
#[command(name = "tenant-guard-ratelimit", version)]
struct Args {
    /// Address to serve gRPC on (port 0 picks a free port; the ready line tells which).
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,

    /// Limits file in Limitador's YAML format.
    #[arg(long)]
    limits: PathBuf,

    /// Redis URL for the counters, e.g. redis://127.0.0.1:6379 (implies --storage redis).
    #[arg(long)]
    redis: Option<String>,

    /// Where counters live; defaults to redis when --redis is given.
    #[arg(long, value_enum)]
    storage: Option<StorageKind>,

    /// Add X-RateLimit-Limit/-Remaining/-Reset (draft-polli-ratelimit-headers-03) to
    /// response_headers_to_add, like limitador-server's `-H DRAFT_VERSION_03`.
    #[arg(long)]
    rate_limit_headers: bool,

    /// Give up starting when Redis has not answered within this many milliseconds.
    #[arg(long, default_value_t = 5000)]
    redis_connect_timeout_ms: u64,

    /// Bound on one Redis command; a call that takes longer fails with UNAVAILABLE.
    #[arg(long, default_value_t = 1000)]
    redis_timeout_ms: u64,

    /// Check the limits file, print how many limits it has, and exit.
    #[arg(long)]
    validate: bool,

    /// Log level for this service (error, warn, info, debug, trace) or a full tracing
    /// EnvFilter directive; RUST_LOG wins when set. `debug` logs one line per request.
    #[arg(long, default_value = "info")]
    log_level: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(&args.log_level);
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("tenant-guard-ratelimit: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: &str) {
    // A bare level applies to this service and limitador; the gRPC/HTTP2 stack stays at warn.
    // Anything else is taken as a full EnvFilter directive.
    let directive = if level.contains(['=', ',']) {
        level.to_string()
    } else {
        format!("warn,tenant_guard_ratelimit={level},limitador={level}")
    };
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
        .or_else(|| tracing_subscriber::EnvFilter::try_new(directive).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}

async fn run(args: Args) -> Result<(), String> {
    let limits = load_limits_file(&args.limits).map_err(|e| e.to_string())?;
    let count = limits.len();
    if args.validate {
        println!("{}: {count} limits, valid", args.limits.display());
        return Ok(());
    }
    if count == 0 {
        tracing::warn!(
            "{}: no limits; every call will be answered OK",
            args.limits.display()
        );
    }

    let storage = match (args.storage, &args.redis) {
        (Some(StorageKind::Memory), Some(_)) => {
            return Err("--storage memory and --redis exclude each other".into())
        }
        (Some(StorageKind::Memory), None) => StorageKind::Memory,
        (_, Some(_)) => StorageKind::Redis,
        (Some(StorageKind::Redis), None) => {
            return Err("--storage redis needs --redis redis://HOST:PORT".into())
        }
        (None, None) => {
            return Err(
                "say where counters live: --redis redis://HOST:PORT, or --storage memory".into(),
            )
        }
    };

    let io_timeout = Duration::from_millis(args.redis_timeout_ms.max(1));
    let (limiter, storage_label) = match storage {
        StorageKind::Memory => (memory_limiter(limits), "memory".to_string()),
        StorageKind::Redis => {
            let url = args.redis.clone().unwrap_or_default();
            let limiter = redis_limiter(
                &url,
                limits,
                Duration::from_millis(args.redis_connect_timeout_ms),
                io_timeout,
            )
            .await?;
            (limiter, format!("redis {url}"))
        }
    };

    let options = ServiceOptions {
        rate_limit_headers: args.rate_limit_headers,
        // A call is at most two Redis round trips (read, then update), plus a reconnect.
        storage_timeout: io_timeout * 3,
    };
    let handler = Arc::new(RateLimitHandler::new(limiter, options));

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    let incoming = TcpIncoming::from_listener(listener, true, None)
        .map_err(|e| format!("cannot listen on {local}: {e}"))?;

    // The ready line: tests and scripts wait for it on stdout.
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "tenant-guard-ratelimit ready: listening on {local} (storage: {storage_label}, \
             {count} limits from {})",
            args.limits.display()
        );
        let _ = out.flush();
    }
    tracing::info!(%local, storage = %storage_label, limits = count, "serving ShouldRateLimit");

    Server::builder()
        .add_service(RateLimitServer::new(handler))
        .serve_with_incoming_shutdown(incoming, shutdown_signal())
        .await
        .map_err(|e| format!("gRPC server failed: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
