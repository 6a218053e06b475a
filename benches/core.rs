//! Micro-benchmarks of the functional core, natively (`cargo bench`): what each piece of a
//! request's work costs without Envoy and V8 around it. They report, they never assert.
//!
//! `cargo bench --bench core -- <filter>` runs a subset, e.g. `-- signature`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::{json, Value};

use tenant_guard::policy::config::Config;
use tenant_guard::policy::decision::{self, Credential, Decision, RequestFacts};
use tenant_guard::policy::identity::{
    self, Audiences, ClaimPath, IdentityRules, Provider, RemoteKeys, TokenTypes,
};
use tenant_guard::policy::jwks::KeySet;
use tenant_guard::policy::namespace;
use tenant_guard::policy::quota::{self, Actual, Demand, QuotaState};
use tenant_guard::policy::record::{Record, RequestInfo};
use tenant_guard::policy::state_fields::StateFields;
use tenant_guard::policy::token_cache::TokenCache;
use tenant_guard::policy::usage::{self, JsonUsage, SseUsage};

/// The unit tests' key material and token minting (TEST-ONLY keys).
#[path = "../src/policy/testdata/fixtures.rs"]
#[allow(dead_code)]
mod fixtures;
use fixtures::*;

const CHAT_JSON: &[u8] = include_bytes!("../src/policy/testdata/usage/openai_chat.json");
const CHAT_SSE: &[u8] = include_bytes!("../src/policy/testdata/usage/openai_chat_stream.sse");
const ANTHROPIC_SSE: &[u8] =
    include_bytes!("../src/policy/testdata/usage/anthropic_messages_stream.sse");
/// The bench gateway's API key of tenant acme (a `make api-key` key's shape).
const API_KEY: &str = "tgk_8sH0Qb3w0mJwq8m4Qw9k1u2wYk0mQy9wXW1mHn3p2Ck";

/// An LLM-shaped request body (~250 bytes), as `make bench` sends it.
const CHAT_REQUEST: &[u8] = br#"{"model":"gpt-4o","messages":[{"role":"system","content":"You are a helpful assistant for the finance team."},{"role":"user","content":"Summarise the quarterly report in three bullet points, with the revenue numbers."}],"max_tokens":256,"temperature":0.2}"#;

fn all_keys() -> Vec<Value> {
    vec![
        rsa_jwk(RSA_A_PEM, Some("rsa")),
        p256_jwk(Some("p256")),
        p384_jwk(Some("p384")),
        ed25519_jwk(Some("ed")),
        oct_jwk(Some("oct")),
    ]
}

fn kid_for(alg: &str) -> &'static str {
    match alg {
        "ES256" => "p256",
        "ES384" => "p384",
        "EdDSA" => "ed",
        a if a.starts_with("HS") => "oct",
        _ => "rsa",
    }
}

/// The `make bench` gateway's configuration: tenant header, a forwarded claim, namespace
/// routing, a plan with two request windows, a token window and a budget, prices.
fn gateway_config() -> Config {
    let big = 1_000_000_000_000u64;
    let doc = json!({
        "providers": {"corp": {"issuer": ISSUER, "audiences": [AUDIENCE],
                               "jwks": {"keys": all_keys()}}},
        "identity": {
            "token_sources": [{"header": "authorization", "prefix": "Bearer "}],
            "tenant_claim": "tenant_id", "user_claim": "sub", "clock_skew_s": 60,
            "tenant_header": "x-tenant-id", "forward_claims": {"sub": "x-user-id"},
            "strip_token": true,
            "api_key_sources": [{"header": "authorization", "prefix": "Bearer "},
                                {"header": "x-api-key"}]
        },
        "tenants": {
            "acme": {"status": "active", "providers": ["corp"], "plan": "pro",
                     "api_keys": [{"id": "ci", "user": "ci-bot",
                                   "sha256": tenant_guard::policy::audit::hex(
                                       &hmac_sha256::Hash::hash(API_KEY.as_bytes()))}]},
            "globex": {"status": "active", "providers": ["corp"], "plan": "pro"},
            "initech": {"status": "suspended", "providers": ["corp"], "plan": "pro"}
        },
        "plans": {"pro": {"requests": [{"limit": big, "window_s": 60},
                                       {"limit": big, "window_s": 1}],
                          "tokens": [{"limit": big, "window_s": 86400}],
                          "monthly_budget_usd": 1_000_000_000.0}},
        "routing": {"path_prefix": "/tenants/{namespace}",
                    "namespace_header": "x-tenant-namespace"},
        "pricing": {"models": {"gpt-4o": {"input_per_million": 2.5, "output_per_million": 10.0}},
                    "default": {"input_per_million": 1.0, "output_per_million": 3.0}},
        "bypass_paths": ["/healthz"]
    });
    Config::parse(doc.to_string().as_bytes()).unwrap()
}

fn signatures(c: &mut Criterion) {
    let providers = vec![Provider {
        name: "corp".into(),
        issuer: ISSUER.into(),
        audiences: Audiences::OneOf(vec![AUDIENCE.into()]),
        require_kid: false,
        token_types: TokenTypes::default(),
        inline_keys: Some(KeySet::from_value(&json!({ "keys": all_keys() })).unwrap()),
        remote: RemoteKeys::NotConfigured,
    }];
    let rules = IdentityRules {
        tenant_claim: ClaimPath::parse("tenant_id").unwrap(),
        user_claim: ClaimPath::parse("sub"),
        clock_skew_s: 60,
        forward_claims: vec![(ClaimPath::parse("sub").unwrap(), "x-user-id".into())],
        max_token_bytes: 8192,
    };
    let mut group = c.benchmark_group("signature");
    for alg in [
        "RS256", "RS512", "PS256", "ES256", "ES384", "EdDSA", "HS256", "HS512",
    ] {
        let token = mint(alg, Some(kid_for(alg)), &base_claims());
        assert!(identity::verify(&token, &providers, &rules, NOW).is_ok());
        group.bench_function(alg, |b| {
            b.iter(|| identity::verify(black_box(&token), &providers, &rules, NOW))
        });
    }
    group.finish();
}

fn token_cache(c: &mut Criterion) {
    let config = gateway_config();
    let token = mint("RS256", Some("rsa"), &base_claims());
    let verified = identity::verify(&token, &config.providers, &config.identity, NOW).unwrap();
    let mut cache = TokenCache::new(1024);
    // A full cache, as on a busy worker.
    for i in 0..1023 {
        cache.insert(&format!("{token}{i}"), verified.clone());
    }
    cache.insert(&token, verified.clone());
    let mut group = c.benchmark_group("token_cache");
    group.bench_function("hit", |b| {
        b.iter(|| cache.get(black_box(&token), NOW).map(|v| v.expires_at))
    });
    group.bench_function("hit_and_clone", |b| {
        b.iter(|| cache.get(black_box(&token), NOW).cloned())
    });
    group.finish();
}

fn quotas(c: &mut Criterion) {
    let config = gateway_config();
    let limits = config.tenants.bind("acme", 0).unwrap().limits.clone();
    let demand = Demand {
        tokens: 1088,
        micro_usd: 3300,
    };
    let first = quota::admit(&QuotaState::default(), &limits, NOW, demand).unwrap();
    let stored = first.state.encode();
    let reservation = first.reservation;
    let state = QuotaState::decode(&stored);
    let actual = Actual {
        tokens: 2306,
        micro_usd: 8015,
    };
    let mut group = c.benchmark_group("quota");
    group.bench_function("decode", |b| {
        b.iter(|| QuotaState::decode(black_box(&stored)))
    });
    group.bench_function("encode", |b| b.iter(|| black_box(&state).encode()));
    group.bench_function("admit", |b| {
        b.iter(|| quota::admit(black_box(&state), &limits, NOW, demand))
    });
    group.bench_function("settle", |b| {
        b.iter(|| quota::settle(black_box(&state), &limits, NOW, &reservation, actual))
    });
    // What the shell does in each compare-and-swap: decode, change, encode.
    group.bench_function("admit_cycle", |b| {
        b.iter(|| {
            let state = QuotaState::decode(black_box(&stored));
            quota::admit(&state, &limits, NOW, demand).map(|a| a.state.encode())
        })
    });
    group.bench_function("settle_cycle", |b| {
        b.iter(|| {
            let state = QuotaState::decode(black_box(&stored));
            quota::settle(&state, &limits, NOW, &reservation, actual).encode()
        })
    });
    group.finish();
}

fn usage_parsing(c: &mut Criterion) {
    let mut group = c.benchmark_group("usage");
    group.throughput(Throughput::Bytes(CHAT_JSON.len() as u64));
    group.bench_function("from_json", |b| {
        b.iter(|| usage::from_json(black_box(CHAT_JSON)))
    });
    group.bench_function("json_feed", |b| {
        b.iter(|| {
            let mut reader = JsonUsage::new();
            reader.feed(black_box(CHAT_JSON));
            reader.usage()
        })
    });
    group.throughput(Throughput::Bytes(CHAT_SSE.len() as u64));
    group.bench_function("sse_feed_openai", |b| {
        b.iter(|| {
            let mut reader = SseUsage::new();
            reader.feed(black_box(CHAT_SSE));
            reader.usage()
        })
    });
    group.bench_function("sse_feed_openai_64b_chunks", |b| {
        b.iter(|| {
            let mut reader = SseUsage::new();
            for chunk in black_box(CHAT_SSE).chunks(64) {
                reader.feed(chunk);
            }
            reader.usage()
        })
    });
    group.throughput(Throughput::Bytes(ANTHROPIC_SSE.len() as u64));
    group.bench_function("sse_feed_anthropic", |b| {
        b.iter(|| {
            let mut reader = SseUsage::new();
            reader.feed(black_box(ANTHROPIC_SSE));
            reader.usage()
        })
    });
    group.throughput(Throughput::Bytes(CHAT_REQUEST.len() as u64));
    group.bench_function("inspect_request", |b| {
        b.iter(|| usage::inspect_request(black_box(CHAT_REQUEST)))
    });
    group.finish();
}

fn paths(c: &mut Criterion) {
    let mut group = c.benchmark_group("namespace");
    group.bench_function("normalize_plain", |b| {
        b.iter(|| namespace::normalize(black_box(b"/v1/chat/completions")))
    });
    group.bench_function("normalize_messy", |b| {
        b.iter(|| namespace::normalize(black_box(b"/v1/./models/%7Ealice//x/../gpt-4o?limit=5")))
    });
    group.finish();
}

fn admitted_decision(config: &Config, token: &str) -> Decision {
    let mut cache = TokenCache::new(16);
    decision::decide(config, &mut cache, &NoObjects, facts(token))
}

fn facts(token: &str) -> RequestFacts<'_> {
    RequestFacts {
        method: "GET",
        path: b"/v1/models",
        credential: Credential::Present {
            source: 0,
            token: token.to_string(),
        },
        tenant_header: None,
        authority: None,
        now: NOW,
    }
}

fn records(c: &mut Criterion) {
    let config = gateway_config();
    let token = mint("RS256", Some("rsa"), &base_claims());
    let decision = admitted_decision(&config, &token);
    assert!(matches!(decision, Decision::Admit(_)));
    let info = || RequestInfo {
        request_id: "7f1c1b9e4a494c1e9d6c0c4f7e9a2b11".to_string(),
        client_request_id: None,
        method: b"GET",
        path: b"/v1/models",
    };
    let record = Record::new(&decision, info());
    let mut group = c.benchmark_group("record");
    group.bench_function("new", |b| {
        b.iter(|| Record::new(black_box(&decision), info()))
    });
    group.bench_function("filter_state", |b| {
        b.iter(|| black_box(&record).filter_state(StateFields::ALL))
    });
    group.bench_function("to_json", |b| b.iter(|| black_box(&record).to_json()));
    group.bench_function("new_and_to_json", |b| {
        b.iter(|| Record::new(black_box(&decision), info()).to_json())
    });
    group.finish();
}

/// The core's share of one GET with a cached token, in the order the shell runs it: the
/// decision (cache hit, tenant binding, namespace placement), the record and its filter state,
/// the quota admission and settlement (decode, change, encode), the log line.
fn request_path(c: &mut Criterion) {
    let config = gateway_config();
    let token = mint("RS256", Some("rsa"), &base_claims());
    let mut cache = TokenCache::new(1024);
    let _ = decision::decide(&config, &mut cache, &NoObjects, facts(&token));
    let limits = config.tenants.bind("acme", 0).unwrap().limits.clone();
    let mut stored = QuotaState::default().encode();
    let mut group = c.benchmark_group("request");
    group.bench_function("decide_cached", |b| {
        b.iter_batched(
            || facts(&token),
            |facts| decision::decide(&config, &mut cache, &NoObjects, facts),
            BatchSize::SmallInput,
        )
    });
    // The same decision for a request carrying acme's API key: one SHA-256 and a map lookup
    // where the token takes a SipHash and a cache lookup.
    group.bench_function("decide_api_key", |b| {
        b.iter_batched(
            || RequestFacts {
                credential: Credential::ApiKey {
                    key: API_KEY.to_string(),
                    sources: vec![1],
                },
                ..facts(&token)
            },
            |facts| decision::decide(&config, &mut cache, &NoObjects, facts),
            BatchSize::SmallInput,
        )
    });
    let key_header = API_KEY.as_bytes().to_vec();
    group.bench_function("read_api_key", |b| {
        b.iter(|| {
            decision::read_credential(
                &config,
                |name| (name == "x-api-key").then(|| key_header.clone()),
                |name| {
                    if name == "x-api-key" {
                        vec![key_header.clone()]
                    } else {
                        Vec::new()
                    }
                },
            )
        })
    });
    group.bench_function("get_path_core", |b| {
        b.iter(|| {
            let decision =
                decision::decide(&config, &mut cache, &NoObjects, facts(black_box(&token)));
            let mut record = Record::new(
                &decision,
                RequestInfo {
                    request_id: "7f1c1b9e4a494c1e9d6c0c4f7e9a2b11".to_string(),
                    client_request_id: None,
                    method: b"GET",
                    path: b"/v1/models",
                },
            );
            let state = record.filter_state(StateFields::ALL);
            let admitted = quota::admit(
                &QuotaState::decode(&stored),
                &limits,
                NOW,
                Demand::default(),
            )
            .unwrap();
            stored = admitted.state.encode();
            let settled = quota::settle(
                &QuotaState::decode(&stored),
                &limits,
                NOW,
                &admitted.reservation,
                Actual::default(),
            );
            stored = settled.encode();
            let headers = quota::remaining_headers(&admitted.windows);
            record.status = Some(200);
            (state, headers, record.to_json())
        })
    });
    group.finish();
}

/// Candidate digests for the token cache's key, over a real token's bytes.
fn digests(c: &mut Criterion) {
    let token = mint("RS256", Some("rsa"), &base_claims());
    let mut group = c.benchmark_group("digest");
    group.throughput(Throughput::Bytes(token.len() as u64));
    group.bench_function("hmac_sha256", |b| {
        b.iter(|| hmac_sha256::Hash::hash(black_box(token.as_bytes())))
    });
    group.bench_function("sha2_sha256", |b| {
        use sha2::Digest;
        b.iter(|| sha2::Sha256::digest(black_box(token.as_bytes())))
    });
    group.bench_function("blake2b_256", |b| {
        b.iter(|| {
            blake2b_simd::Params::new()
                .hash_length(32)
                .hash(black_box(token.as_bytes()))
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    digests,
    signatures,
    token_cache,
    quotas,
    usage_parsing,
    paths,
    records,
    request_path
);
criterion_main!(benches);

/// A gateway that has seen no provider-side object created (isolation is off in these configs).
struct NoObjects;

impl tenant_guard::policy::isolation::objects::Owners for NoObjects {
    fn owner_of(&self, _id: &str) -> Option<tenant_guard::policy::isolation::objects::OwnerDigest> {
        None
    }
}
