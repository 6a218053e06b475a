//! Test fixtures: a throw-away `redis-server` on a free loopback port, the built service binary,
//! and a gRPC client. Every process started here is killed when its handle is dropped.

#![allow(dead_code)]

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

pub const BIN: &str = env!("CARGO_BIN_EXE_tenant-guard-ratelimit");
pub const DOMAIN: &str = "tenant-guard";

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

/// A fresh path under cargo's per-test temporary directory.
pub fn scratch(name: &str) -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ratelimit-tests");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{}-{}-{name}", std::process::id(), n))
}

pub fn write_limits(text: &str) -> PathBuf {
    let path = scratch("limits.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A `redis-server` without persistence on 127.0.0.1.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Redis {
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            match Self::start_on(port) {
                Ok(redis) => return redis,
                Err(e) => last = e,
            }
        }
        panic!("could not start redis-server: {last}");
    }

    /// Starts on a given port (used to bring Redis back on the port a service points at).
    pub fn start_on(port: u16) -> Result<Redis, String> {
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server: {e} (apt-get install -y redis-server)"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("redis-server exited: {status}"));
            }
            if ping(port) {
                return Ok(Redis {
                    port,
                    child: Some(child),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        kill(&mut child);
        Err("redis-server did not answer PING".into())
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

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
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
        let mut child = Command::new(BIN)
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
    let mut child = Command::new(BIN)
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
