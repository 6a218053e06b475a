//! End-to-end tests: a real `redis-server`, the built binary, and a tonic client.
//! Needs `redis-server` on PATH (Debian: `apt-get install -y redis-server`).

#![allow(clippy::result_large_err)]

mod common;

use common::*;
use std::time::{Duration, Instant};
use tenant_guard_ratelimit::proto::rate_limit_response::Code;
use tenant_guard_ratelimit::proto::{RateLimitDescriptor, RateLimitRequest};
use tonic::Code as GrpcCode;

#[tokio::test]
async fn limit_holds_exactly() {
    let redis = Redis::start();
    let svc = Service::start_redis(&write_limits(TEST_LIMITS), &redis, &[]);
    let ch = svc.channel().await;
    for i in 0..5 {
        assert_eq!(hit(&ch, "acme", 1).await, Code::Ok, "hit {i}");
    }
    assert_eq!(hit(&ch, "acme", 1).await, Code::OverLimit);
    assert_eq!(hit(&ch, "acme", 1).await, Code::OverLimit);
}

#[tokio::test]
async fn a_refused_hit_adds_nothing() {
    let redis = Redis::start();
    let svc = Service::start_redis(&write_limits(TEST_LIMITS), &redis, &[]);
    let ch = svc.channel().await;

    // After 4 of 5, +2 is refused and adds nothing, so +1 still fits, then nothing does.
    assert_eq!(hit(&ch, "acme", 4).await, Code::Ok);
    assert_eq!(hit(&ch, "acme", 2).await, Code::OverLimit);
    assert_eq!(hit(&ch, "acme", 1).await, Code::Ok);
    assert_eq!(hit(&ch, "acme", 1).await, Code::OverLimit);

    // A first +6 against 5 is refused and the counter stays 0: all 5 still fit.
    assert_eq!(hit(&ch, "globex", 6).await, Code::OverLimit);
    assert_eq!(hit(&ch, "globex", 5).await, Code::Ok);
    assert_eq!(hit(&ch, "globex", 1).await, Code::OverLimit);

    // The same with a token debit (descriptor-level hits_addend, as the filter may send it).
    let tokens = |n: u64| {
        let mut d = quota("tokens", "test", "initech");
        d.hits_addend = Some(n);
        request(vec![d], 0)
    };
    assert_eq!(code(&ch, tokens(900)).await, Code::Ok);
    assert_eq!(code(&ch, tokens(200)).await, Code::OverLimit);
    assert_eq!(code(&ch, tokens(100)).await, Code::Ok);
    assert_eq!(code(&ch, tokens(1)).await, Code::OverLimit);
}

#[tokio::test]
async fn hits_addend_zero_counts_as_one() {
    let redis = Redis::start();
    let svc = Service::start_redis(&write_limits(TEST_LIMITS), &redis, &[]);
    let ch = svc.channel().await;
    for _ in 0..5 {
        assert_eq!(hit(&ch, "acme", 0).await, Code::Ok);
    }
    assert_eq!(hit(&ch, "acme", 0).await, Code::OverLimit);

    // A descriptor's hits_addend wrapper of 0 counts as 1 too...
    let with_wrapper = |tenant: &str, wrapper: u64, top: u32| {
        let mut d = quota("requests", "test", tenant);
        d.hits_addend = Some(wrapper);
        request(vec![d], top)
    };
    for _ in 0..5 {
        assert_eq!(code(&ch, with_wrapper("globex", 0, 0)).await, Code::Ok);
    }
    assert_eq!(
        code(&ch, with_wrapper("globex", 0, 0)).await,
        Code::OverLimit
    );

    // ...and when present the wrapper wins over the request's hits_addend.
    assert_eq!(code(&ch, with_wrapper("initech", 4, 1)).await, Code::Ok);
    assert_eq!(
        code(&ch, with_wrapper("initech", 2, 1)).await,
        Code::OverLimit
    );
    assert_eq!(code(&ch, with_wrapper("initech", 1, 3)).await, Code::Ok);
}

#[tokio::test]
async fn tenants_have_separate_counters() {
    let redis = Redis::start();
    let svc = Service::start_redis(&write_limits(TEST_LIMITS), &redis, &[]);
    let ch = svc.channel().await;
    assert_eq!(hit(&ch, "acme", 5).await, Code::Ok);
    assert_eq!(hit(&ch, "acme", 1).await, Code::OverLimit);
    assert_eq!(hit(&ch, "globex", 5).await, Code::Ok);
    assert_eq!(hit(&ch, "globex", 1).await, Code::OverLimit);
    assert_eq!(hit(&ch, "initech", 1).await, Code::Ok);
    // Requests and tokens are separate counters too.
    let tokens = request(vec![quota("tokens", "test", "acme")], 1000);
    assert_eq!(code(&ch, tokens).await, Code::Ok);
}

#[tokio::test]
async fn unknown_domain_ok_empty_domain_unknown() {
    let redis = Redis::start();
    let svc = Service::start_redis(&write_limits(TEST_LIMITS), &redis, &[]);
    let ch = svc.channel().await;
    for _ in 0..10 {
        let mut req = request(vec![quota("requests", "test", "acme")], 1);
        req.domain = "some-other-domain".into();
        assert_eq!(code(&ch, req).await, Code::Ok);
    }
    let mut req = request(vec![quota("requests", "test", "acme")], 1);
    req.domain = String::new();
    assert_eq!(code(&ch, req).await, Code::Unknown);
    // Neither touched the tenant's counter.
    assert_eq!(hit(&ch, "acme", 5).await, Code::Ok);
    assert_eq!(hit(&ch, "acme", 1).await, Code::OverLimit);
}

#[tokio::test]
async fn descriptors_are_addressed_by_index() {
    let redis = Redis::start();
    let svc = Service::start_redis(&write_limits(TEST_LIMITS), &redis, &[]);
    let ch = svc.channel().await;
    let unrelated = RateLimitDescriptor::from_pairs([("generic_key", "x")]);

    // The quota in descriptors[1] does not match limits written for descriptors[0]: OK, and
    // nothing counted.
    for _ in 0..8 {
        let req = request(
            vec![unrelated.clone(), quota("requests", "test", "acme")],
            1,
        );
        assert_eq!(code(&ch, req).await, Code::Ok);
    }
    // Two quotas in one call: only descriptors[0] is counted.
    for _ in 0..5 {
        let req = request(
            vec![
                quota("requests", "test", "acme"),
                quota("requests", "test", "globex"),
            ],
            1,
        );
        assert_eq!(code(&ch, req).await, Code::Ok);
    }
    assert_eq!(hit(&ch, "acme", 1).await, Code::OverLimit);
    assert_eq!(hit(&ch, "globex", 5).await, Code::Ok);

    // Entry order inside a descriptor does not matter; a missing tenant_id matches no counter.
    let reordered = RateLimitDescriptor::from_pairs([
        ("tenant_id", "hooli"),
        ("plan", "test"),
        ("usage", "requests"),
    ]);
    assert_eq!(
        code(&ch, request(vec![reordered.clone()], 5)).await,
        Code::Ok
    );
    assert_eq!(
        code(&ch, request(vec![reordered], 1)).await,
        Code::OverLimit
    );
    let no_tenant = RateLimitDescriptor::from_pairs([("usage", "requests"), ("plan", "test")]);
    for _ in 0..8 {
        assert_eq!(
            code(&ch, request(vec![no_tenant.clone()], 1)).await,
            Code::Ok
        );
    }

    // No descriptor at all: limitador fails to evaluate `descriptors[0][...]` (it panics on
    // the index error); the service answers INTERNAL and keeps serving.
    let empty = call(&ch, request(vec![], 1)).await.unwrap_err();
    assert_eq!(empty.code(), GrpcCode::Internal, "{empty:?}");
    assert!(empty.message().contains("IndexOutOfBounds"), "{empty:?}");
    assert_eq!(hit(&ch, "acme", 1).await, Code::OverLimit);

    // Descriptors with different hits_addend wrappers are refused.
    let mut a = quota("requests", "test", "acme");
    a.hits_addend = Some(1);
    let mut b = quota("tokens", "test", "acme");
    b.hits_addend = Some(2);
    let err = call(&ch, request(vec![a, b], 0)).await.unwrap_err();
    assert_eq!(err.code(), GrpcCode::InvalidArgument);
}

#[tokio::test]
async fn counters_survive_a_service_restart() {
    let redis = Redis::start();
    let limits = write_limits(TEST_LIMITS);
    let mut svc = Service::start_redis(&limits, &redis, &[]);
    let ch = svc.channel().await;
    assert_eq!(hit(&ch, "acme", 3).await, Code::Ok);
    svc.stop();

    let svc = Service::start_redis(&limits, &redis, &[]);
    let ch = svc.channel().await;
    assert_eq!(hit(&ch, "acme", 3).await, Code::OverLimit);
    assert_eq!(hit(&ch, "acme", 2).await, Code::Ok);
    assert_eq!(hit(&ch, "acme", 1).await, Code::OverLimit);
}

#[tokio::test]
async fn two_services_share_counters_through_redis() {
    let redis = Redis::start();
    let limits = write_limits(TEST_LIMITS);
    let one = Service::start_redis(&limits, &redis, &[]);
    let two = Service::start_redis(&limits, &redis, &[]);
    let (ch1, ch2) = (one.channel().await, two.channel().await);
    assert_eq!(hit(&ch1, "acme", 3).await, Code::Ok);
    assert_eq!(hit(&ch2, "acme", 2).await, Code::Ok);
    assert_eq!(hit(&ch1, "acme", 1).await, Code::OverLimit);
    assert_eq!(hit(&ch2, "acme", 1).await, Code::OverLimit);
}

/// Guards against a call that never ends (not a speed limit: far above any answer time).
const HANG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn redis_down_answers_unavailable_then_recovers() {
    let mut redis = Redis::start();
    let svc = Service::start_redis(&write_limits(TEST_LIMITS), &redis, &[]);
    let ch = svc.channel().await;
    assert_eq!(hit(&ch, "acme", 1).await, Code::Ok);

    redis.kill();
    for i in 0..3 {
        let res = tokio::time::timeout(
            HANG,
            call(&ch, request(vec![quota("requests", "test", "acme")], 1)),
        )
        .await
        .unwrap_or_else(|_| panic!("call {i} hung with Redis down"));
        let status = res.expect_err("a call with Redis down must fail");
        eprintln!("call {i} with Redis down: {status:?}");
        assert_eq!(status.code(), GrpcCode::Unavailable, "call {i}: {status:?}");
        // The storage failed (nothing else): its own error, not the time limit of a call.
        assert!(
            status.message().starts_with("rate-limit storage error: "),
            "call {i}: {status:?}"
        );
    }
    assert_eq!(
        svc.log_text().matches("ShouldRateLimit failed").count(),
        3,
        "{}",
        svc.log_text()
    );

    // Redis back on the same port (empty, no persistence): the service reconnects by itself.
    redis.restart().expect("restart redis on its port");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match call(&ch, request(vec![quota("requests", "test", "acme")], 1)).await {
            Ok(resp) => {
                assert_eq!(resp.overall_code, Code::Ok as i32);
                break;
            }
            Err(status) if Instant::now() < deadline => {
                assert_eq!(status.code(), GrpcCode::Unavailable);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) => panic!("no recovery after Redis came back: {status:?}"),
        }
    }
}

#[tokio::test]
async fn start_fails_when_redis_is_unreachable() {
    let limits = write_limits(TEST_LIMITS);
    // A leased port nobody listens on (no other test process may use it meanwhile).
    let nobody = lease_port();
    let url = format!("redis://127.0.0.1:{}", nobody.port);
    let (code, out, err, _) = run_to_exit(
        &[
            "--listen",
            "127.0.0.1:0",
            "--limits",
            limits.to_str().unwrap(),
            "--redis",
            &url,
            "--redis-connect-timeout-ms",
            "1500",
        ],
        HANG,
    );
    eprintln!("exit {code:?}: {err}");
    assert_eq!(code, Some(1), "stdout {out:?} stderr {err:?}");
    assert!(out.is_empty(), "no ready line expected: {out:?}");
    // It gave up because of --redis-connect-timeout-ms, and says so.
    assert!(
        err.contains(&format!("cannot reach Redis at {url} within 1500 ms")),
        "{err}"
    );
}

#[tokio::test]
async fn start_fails_on_an_invalid_limits_file() {
    let cases = [
        ("not: [valid", "not valid YAML"),
        ("namespace: x", "expected a YAML list"),
        (
            "- namespace: tenant-guard\n  max_value: 5\n  seconds: 60\n  conditions: [\"descriptors[0]['usage'] = 'x'\"]\n  variables: []\n",
            "limit #0",
        ),
        (
            "- namespace: tenant-guard\n  max_values: 5\n  seconds: 60\n  conditions: []\n  variables: []\n",
            "unknown key \"max_values\"",
        ),
    ];
    for (text, expected) in cases {
        let limits = write_limits(text);
        let (code, out, err, _) = run_to_exit(
            &[
                "--listen",
                "127.0.0.1:0",
                "--limits",
                limits.to_str().unwrap(),
                "--storage",
                "memory",
            ],
            HANG,
        );
        assert_eq!(code, Some(1), "{text:?}: {out:?} {err:?}");
        assert!(err.contains(expected), "{text:?}: {err}");
        assert!(
            err.contains(limits.to_str().unwrap()),
            "names the file: {err}"
        );
    }
    let (code, _, err, _) = run_to_exit(
        &[
            "--limits",
            "/nonexistent/limits.yaml",
            "--storage",
            "memory",
        ],
        HANG,
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot read"), "{err}");
}

#[tokio::test]
async fn rate_limit_headers_on_request() {
    let redis = Redis::start();
    let svc = Service::start_redis(
        &write_limits(TEST_LIMITS),
        &redis,
        &["--rate-limit-headers"],
    );
    let ch = svc.channel().await;
    let resp = call(&ch, request(vec![quota("requests", "test", "acme")], 2))
        .await
        .unwrap();
    assert_eq!(resp.overall_code, Code::Ok as i32);
    let headers: Vec<(String, String)> = resp
        .response_headers_to_add
        .iter()
        .map(|h| (h.key.clone(), h.value.clone()))
        .collect();
    eprintln!("headers: {headers:?}");
    assert_eq!(
        headers[0],
        (
            "X-RateLimit-Limit".into(),
            "5, 5;w=60;name=\"test-requests\"".into()
        )
    );
    assert_eq!(headers[1], ("X-RateLimit-Remaining".into(), "3".into()));
    assert_eq!(headers[2].0, "X-RateLimit-Reset");
    let reset: u64 = headers[2].1.parse().unwrap();
    assert!((1..=60).contains(&reset), "{reset}");

    // Without the flag: no headers.
    let plain = Service::start_redis(&write_limits(TEST_LIMITS), &redis, &[]);
    let resp = call(
        &plain.channel().await,
        request(vec![quota("requests", "test", "acme")], 1),
    )
    .await
    .unwrap();
    assert!(resp.response_headers_to_add.is_empty());
}

#[tokio::test]
async fn memory_storage_same_semantics() {
    let svc = Service::start(&write_limits(TEST_LIMITS), &["--storage", "memory"]);
    let ch = svc.channel().await;
    assert_eq!(hit(&ch, "acme", 4).await, Code::Ok);
    assert_eq!(hit(&ch, "acme", 2).await, Code::OverLimit);
    assert_eq!(hit(&ch, "acme", 1).await, Code::Ok);
    assert_eq!(hit(&ch, "acme", 0).await, Code::OverLimit);
    assert_eq!(hit(&ch, "globex", 6).await, Code::OverLimit);
    assert_eq!(hit(&ch, "globex", 5).await, Code::Ok);
}

#[tokio::test]
async fn logs_one_line_per_request_at_debug() {
    let svc = Service::start(&write_limits(TEST_LIMITS), &["--storage", "memory"]);
    let ch = svc.channel().await;
    hit(&ch, "acme", 2).await;
    hit(&ch, "acme", 9).await;
    // The service writes the line (unbuffered, to stderr) before it answers; wait for both
    // lines all the same, so the test does not depend on that.
    let deadline = Instant::now() + HANG;
    let log = loop {
        let log = svc.log_text();
        if log.matches("ShouldRateLimit domain=").count() >= 2 || Instant::now() >= deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ShouldRateLimit domain="))
        .collect();
    assert!(
        !log.contains("h2::"),
        "HTTP/2 internals stay out of the debug log: {log}"
    );
    assert_eq!(lines.len(), 2, "{log}");
    assert!(
        lines[0].contains("tenant_id=acme") && lines[0].contains("hits=2"),
        "{log}"
    );
    assert!(lines[1].contains("OverLimit"), "{log}");
}

#[tokio::test]
async fn shipped_limitador_limits_are_valid_and_hold() {
    // The clone's own file, found at run time (see common::package_dir).
    let path = repo_file("envoy/limits/limitador.yaml");
    let (code, out, err, _) =
        run_to_exit(&["--limits", path.to_str().unwrap(), "--validate"], HANG);
    assert_eq!(code, Some(0), "{out} {err}");
    assert!(out.contains("6 limits, valid"), "{out}");

    let svc = Service::start(&path, &["--storage", "memory"]);
    let ch = svc.channel().await;
    let plan = |usage: &str, plan: &str, tenant: &str, hits: u32| -> RateLimitRequest {
        request(vec![quota(usage, plan, tenant)], hits)
    };
    // free: 8 requests/60 s, 2000 tokens/hour; pro: 60 requests/60 s, 100000 tokens/day.
    assert_eq!(
        code_of(&ch, plan("requests", "free", "globex", 8)).await,
        Code::Ok
    );
    assert_eq!(
        code_of(&ch, plan("requests", "free", "globex", 1)).await,
        Code::OverLimit
    );
    assert_eq!(
        code_of(&ch, plan("requests", "pro", "acme", 60)).await,
        Code::Ok
    );
    assert_eq!(
        code_of(&ch, plan("requests", "pro", "acme", 1)).await,
        Code::OverLimit
    );
    assert_eq!(
        code_of(&ch, plan("tokens", "free", "globex", 2_000)).await,
        Code::Ok
    );
    assert_eq!(
        code_of(&ch, plan("tokens", "free", "globex", 1)).await,
        Code::OverLimit
    );
    let mut big = quota("tokens", "pro", "acme");
    big.hits_addend = Some(100_001);
    assert_eq!(
        code_of(&ch, request(vec![big.clone()], 0)).await,
        Code::OverLimit
    );
    big.hits_addend = Some(100_000);
    assert_eq!(code_of(&ch, request(vec![big], 0)).await, Code::Ok);
    // An unknown plan has no limit.
    assert_eq!(
        code_of(&ch, plan("requests", "gold", "acme", 10_000)).await,
        Code::Ok
    );
    // pro's users: 20 requests / 60 s and 25000 tokens / day each, apart from the tenant's.
    let user = |usage: &str, name: &str, hits: u32| -> RateLimitRequest {
        let entries = [
            ("usage", usage),
            ("plan", "pro"),
            ("tenant_id", "initech"),
            ("user_id", name),
        ];
        request(vec![RateLimitDescriptor::from_pairs(entries)], hits)
    };
    for (usage, name, hits, expected) in [
        ("user_requests", "alice", 20, Code::Ok),
        ("user_requests", "alice", 1, Code::OverLimit),
        ("user_requests", "bob", 20, Code::Ok),
        ("user_tokens", "alice", 25_000, Code::Ok),
        ("user_tokens", "alice", 1, Code::OverLimit),
    ] {
        let got = code_of(&ch, user(usage, name, hits)).await;
        assert_eq!(got, expected, "{usage} of {name}, {hits} hits");
    }
    // The users' calls left the tenant's own counter untouched.
    assert_eq!(
        code_of(&ch, plan("requests", "pro", "initech", 60)).await,
        Code::Ok
    );
}

async fn code_of(ch: &tonic::transport::Channel, req: RateLimitRequest) -> Code {
    code(ch, req).await
}

#[tokio::test]
async fn a_limit_naming_a_missing_descriptor_index_fails_every_call_in_its_namespace() {
    // A limit written for descriptors[1] while the filter sends only descriptors[0]: every
    // call in that namespace fails (INTERNAL) since limitador cannot evaluate it; other
    // namespaces are unaffected.
    let limits = format!(
        "{TEST_LIMITS}- namespace: tenant-guard\n  max_value: 1\n  seconds: 60\n  \
         conditions: [\"descriptors[1]['usage'] == 'requests'\"]\n  variables: []\n\
         - namespace: other\n  max_value: 1\n  seconds: 60\n  conditions: []\n  variables: []\n"
    );
    let svc = Service::start(&write_limits(&limits), &["--storage", "memory"]);
    let ch = svc.channel().await;
    let err = call(&ch, request(vec![quota("requests", "test", "acme")], 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), GrpcCode::Internal, "{err:?}");
    let mut other = request(vec![quota("requests", "test", "acme")], 1);
    other.domain = "other".into();
    assert_eq!(code(&ch, other.clone()).await, Code::Ok);
    assert_eq!(code(&ch, other).await, Code::OverLimit);
}

#[tokio::test]
async fn redis_not_answering_times_out_as_unavailable() {
    let redis = Redis::start();
    let svc = Service::start_redis(
        &write_limits(TEST_LIMITS),
        &redis,
        &["--redis-timeout-ms", "500"],
    );
    let ch = svc.channel().await;
    assert_eq!(hit(&ch, "acme", 1).await, Code::Ok);

    redis.signal("-STOP");
    let res = tokio::time::timeout(
        HANG,
        call(&ch, request(vec![quota("requests", "test", "acme")], 1)),
    )
    .await
    .expect("the call hung with Redis not answering");
    let status = res.expect_err("a call with Redis not answering must fail");
    eprintln!("Redis stopped: {status:?}");
    assert_eq!(status.code(), GrpcCode::Unavailable);
    // Ended by the bound on a Redis command (--redis-timeout-ms): a storage timeout, as the
    // message says, not a refused connection or the call's own limit.
    assert!(
        status
            .message()
            .starts_with("rate-limit storage error: error while accessing the limits storage")
            && status.message().contains("timed out"),
        "{status:?}"
    );

    // Start-up against a Redis that does not answer fails within the connect timeout.
    let limits = write_limits(TEST_LIMITS);
    let (code, _, err, _) = run_to_exit(
        &[
            "--limits",
            limits.to_str().unwrap(),
            "--redis",
            &redis.url(),
            "--listen",
            "127.0.0.1:0",
            "--redis-connect-timeout-ms",
            "1500",
            "--redis-timeout-ms",
            "300",
        ],
        HANG,
    );
    eprintln!("start against stopped Redis: exit {code:?}: {err}");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "cannot reach Redis at {} within 1500 ms",
            redis.url()
        )),
        "{err}"
    );
    redis.signal("-CONT");
}
