//! Test fixtures: a throw-away `redis-server` on a leased loopback port, the built service
//! binary, and a gRPC client. Every process started here is killed when its handle is dropped.
//!
//! Paths are found when the tests run, never baked in when they are compiled: the target
//! directory (and so this test binary) is shared by every clone on the machine
//! (`~/.cache/tenant-guard/ratelimit-service`), and cargo may run a binary another clone built.

#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tenant_guard_ratelimit::client;
use tenant_guard_ratelimit::proto::rate_limit_response::Code;
use tenant_guard_ratelimit::proto::{RateLimitDescriptor, RateLimitRequest, RateLimitResponse};
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

pub const DOMAIN: &str = "tenant-guard";
const BIN_NAME: &str = "tenant-guard-ratelimit";

/// This package's directory in the clone running the tests: cargo sets `CARGO_MANIFEST_DIR` in
/// the test process's environment (and runs it from there); `env!` would give the directory
/// of whichever clone compiled the binary.
pub fn package_dir() -> PathBuf {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::current_dir().expect("the current directory"));
    assert!(
        dir.join("Cargo.toml").is_file() && dir.join("tests/service.rs").is_file(),
        "{} is not tools/ratelimit-service: run the tests with cargo test",
        dir.display()
    );
    dir
}

/// A file of the repository holding this package (`tools/ratelimit-service`), e.g.
/// `envoy/limits/limitador.yaml`.
pub fn repo_file(relative: &str) -> PathBuf {
    let path = package_dir().join("../..").join(relative);
    assert!(path.is_file(), "{} does not exist", path.display());
    path
}

/// The directory of the running test binary's profile (`<target>/release`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // <target>/<profile>/deps/<test binary>
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("unexpected test binary path {}", exe.display()))
}

/// The service binary built with this test binary: cargo puts it next to the test binary's
/// `deps` directory (and may also say where at run time).
pub fn bin() -> PathBuf {
    let path = std::env::var_os(format!("CARGO_BIN_EXE_{BIN_NAME}"))
        .map(PathBuf::from)
        .unwrap_or_else(|| profile_dir().join(BIN_NAME));
    assert!(
        path.is_file(),
        "the service binary is not at {}: cargo test builds it",
        path.display()
    );
    path
}

/// Limits used by most tests: per tenant, 5 requests a minute on plan `test`, and 1000 tokens
/// a day on plan `test`.
pub const TEST_LIMITS: &str = r#"
- namespace: tenant-guard
  name: test-requests
  max_value: 5
  seconds: 60
  conditions:
    - "descriptors[0]['usage'] == 'requests'"
    - "descriptors[0]['plan'] == 'test'"
  variables:
    - "descriptors[0]['tenant_id']"
- namespace: tenant-guard
  name: test-tokens
  max_value: 1000
  seconds: 86400
  conditions:
    - "descriptors[0]['usage'] == 'tokens'"
    - "descriptors[0]['plan'] == 'test'"
  variables:
    - "descriptors[0]['tenant_id']"
"#;

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh path under the target directory's `tmp` (where `CARGO_TARGET_TMPDIR` points), found
/// from the running test binary.
pub fn scratch(name: &str) -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let target = profile_dir()
        .parent()
        .map(Path::to_path_buf)
        .expect("the target directory");
    let dir = target.join("tmp").join("ratelimit-tests");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{}-{}-{name}", std::process::id(), n))
}

pub fn write_limits(text: &str) -> PathBuf {
    let path = scratch("limits.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A leased loopback port, the same scheme as the integration tests' `harness/ports.py`: taken
/// below the kernel's ephemeral range (no outgoing connection or `bind(0)` gets it), marked
/// with an exclusive `flock` on `<tmp>/tenant-guard-ports/<port>.lock` (no other test process
/// leases it, also while the process using it is down), and bindable when leased. Released
/// when dropped.
pub struct PortLease {
    pub port: u16,
    _lock: File,
}

const LEASE_FLOOR: u16 = 20000;

fn lease_range() -> (u16, u16) {
    let (low, high) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut it = text.split_whitespace().map(|v| v.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    if low >= LEASE_FLOOR + 1000 {
        (LEASE_FLOOR, low - 1)
    } else if high <= 65535 - 1000 {
        (high + 1, 65535)
    } else {
        panic!("no room for leased ports outside the ephemeral range {low}-{high}")
    }
}

fn bindable(port: u16) -> bool {
    // std sets SO_REUSEADDR on Unix listeners, as servers bind: TIME_WAIT does not count.
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

pub fn lease_port() -> PortLease {
    let dir = std::env::temp_dir().join("tenant-guard-ports");
    std::fs::create_dir_all(&dir).unwrap();
    let (low, high) = lease_range();
    let span = u64::from(high - low) + 1;
    // No rand crate: the clock and the process id spread the picks.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ (u64::from(std::process::id()) << 32)
        ^ SEQ.fetch_add(1, Ordering::SeqCst) as u64;
    for _ in 0..200 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let port = low + ((seed >> 33) % span) as u16;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{port}.lock")))
            .unwrap();
        if lock.try_lock().is_ok() && bindable(port) {
            return PortLease { port, _lock: lock };
        }
    }
    panic!(
        "no free port to lease in {low}-{high} (locks in {})",
        dir.display()
    )
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A `redis-server` without persistence on 127.0.0.1, on a port leased for as long as this
/// handle lives (so it can be started again on it after `kill`).
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    _lease: PortLease,
}

impl Redis {
    pub fn start() -> Redis {
        let lease = lease_port();
        let mut redis = Redis {
            port: lease.port,
            child: None,
            _lease: lease,
        };
        redis.restart().expect("start redis-server");
        redis
    }

    /// Starts it (again) on its port, e.g. to bring Redis back where a service points.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server: {e} (apt-get install -y redis-server)"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("redis-server exited: {status}"));
            }
            // Ready when it answers as itself: not merely something on the port.
            if redis_pid(self.port) == Some(child.id()) {
                self.child = Some(child);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        kill(&mut child);
        Err("redis-server did not answer".into())
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGSTOP / SIGCONT: Redis keeps its socket open but stops answering.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child);
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `process_id` the Redis on `port` reports (`INFO server`), if one answers.
fn redis_pid(port: u16) -> Option<u32> {
    let mut s = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_millis(1000))).ok()?;
    s.write_all(b"INFO server\r\n").ok()?;
    let mut reader = BufReader::new(s);
    let mut head = String::new();
    reader.read_line(&mut head).ok()?;
    let size: usize = head.trim_end().strip_prefix('$')?.parse().ok()?;
    let mut body = vec![0u8; size];
    reader.read_exact(&mut body).ok()?;
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The service binary, started with `--listen 127.0.0.1:0`; `addr` is read from its ready line.
pub struct Service {
    pub addr: SocketAddr,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Service {
    pub fn start(limits: &Path, extra: &[&str]) -> Service {
        let log = scratch("service.log");
        let stderr = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(bin())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--log-level",
                "debug",
                "--limits",
            ])
            .arg(limits)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start the service binary");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                kill(&mut child);
                panic!(
                    "no ready line from the service; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected ready line: {line:?}"));
        Service {
            addr,
            log,
            child: Some(child),
        }
    }

    pub fn start_redis(limits: &Path, redis: &Redis, extra: &[&str]) -> Service {
        let url = redis.url();
        let mut args = vec!["--redis", url.as_str()];
        args.extend_from_slice(extra);
        Service::start(limits, &args)
    }

    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("connect to the service")
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child);
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs the binary to completion (for start-up failures), with a time limit.
pub fn run_to_exit(args: &[&str], limit: Duration) -> (Option<i32>, String, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            let mut err = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code(), out, err, started.elapsed());
        }
        if started.elapsed() > limit {
            kill(&mut child);
            panic!("{args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One descriptor `usage, plan, tenant_id`, as the filter sends it.
pub fn quota(usage: &str, plan: &str, tenant: &str) -> RateLimitDescriptor {
    RateLimitDescriptor::from_pairs([("usage", usage), ("plan", plan), ("tenant_id", tenant)])
}

pub fn request(descriptors: Vec<RateLimitDescriptor>, hits: u32) -> RateLimitRequest {
    RateLimitRequest {
        domain: DOMAIN.to_string(),
        descriptors,
        hits_addend: hits,
    }
}

pub async fn call(channel: &Channel, req: RateLimitRequest) -> Result<RateLimitResponse, Status> {
    client::should_rate_limit(channel.clone(), req).await
}

/// The overall code of a call that must succeed.
pub async fn code(channel: &Channel, req: RateLimitRequest) -> Code {
    let resp = call(channel, req).await.expect("ShouldRateLimit failed");
    assert!(
        resp.statuses.is_empty(),
        "statuses must stay empty: {resp:?}"
    );
    Code::try_from(resp.overall_code).expect("known code")
}

/// `hits` on `usage=requests, plan=test, tenant_id=tenant`.
pub async fn hit(channel: &Channel, tenant: &str, hits: u32) -> Code {
    code(
        channel,
        request(vec![quota("requests", "test", tenant)], hits),
    )
    .await
}
