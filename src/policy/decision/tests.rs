use super::*;
use crate::policy::isolation::objects::{owner_digest, Remembered};
use crate::policy::isolation::prompt_cache::Api;
use crate::policy::isolation::{PromptCache, ProviderObjects};
use ct_codecs::{Base64UrlSafeNoPadding, Encoder};
use serde_json::{json, Value};
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const NOW: u64 = 1_700_000_000;
/// Test-only HMAC secrets (32 bytes each), base64url in the JWKs below.
const CORP_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const GLOBEX_SECRET: &[u8] = b"globex-globex-globex-globex-0000";

fn b64(bytes: &[u8]) -> String {
    Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap()
}

fn config() -> Config {
    Config::parse(document().to_string().as_bytes()).unwrap()
}

fn document() -> Value {
    json!({
      "providers": {
        "corp-idp": {"issuer": "https://corp", "audiences": ["gw"],
                     "jwks": {"keys": [{"kty": "oct", "kid": "c1", "k": b64(CORP_SECRET)}]}},
        "globex-idp": {"issuer": "https://globex", "audiences": "any",
                       "jwks": {"keys": [{"kty": "oct", "kid": "g1", "k": b64(GLOBEX_SECRET)}]}}
      },
      "identity": {
        "token_sources": [{"header": "authorization", "prefix": "Bearer "},
                          {"header": "x-api-key"}],
        "user_claim": "sub",
        "tenant_header": "x-tenant-id",
        "forward_claims": {"sub": "x-user-id", "email": "x-user-email"},
        "strip_token": true
      },
      "tenants": {
        "acme": {"providers": ["corp-idp"]},
        "initech": {"status": "suspended", "providers": ["corp-idp"]}
      },
      "bypass_paths": ["/healthz"]
    })
}

/// An HS256 token signed with `secret`.
fn token(secret: &[u8], kid: &str, claims: Value) -> String {
    let header = b64(json!({"alg": "HS256", "typ": "JWT", "kid": kid})
        .to_string()
        .as_bytes());
    let payload = b64(claims.to_string().as_bytes());
    let input = format!("{header}.{payload}");
    let mac = hmac_sha256::HMAC::mac(input.as_bytes(), secret);
    format!("{input}.{}", b64(&mac))
}

fn acme_token() -> String {
    token(
        CORP_SECRET,
        "c1",
        json!({"iss": "https://corp", "aud": "gw", "exp": NOW + 600, "sub": "alice",
               "tenant_id": "acme"}),
    )
}

fn facts(credential: Credential, tenant_header: Option<&[u8]>) -> RequestFacts<'_> {
    RequestFacts {
        method: "POST",
        path: b"/v1/chat/completions",
        credential,
        tenant_header,
        authority: None,
        now: NOW,
    }
}

fn bearer(token: String) -> Credential {
    Credential::Present { source: 0, token }
}

fn decide_once(credential: Credential, tenant_header: Option<&[u8]>) -> Decision {
    let config = config();
    let mut cache = TokenCache::new(16);
    decide(
        &config,
        &mut cache,
        &Remembered::default(),
        facts(credential, tenant_header),
    )
}

fn denial_reason(decision: &Decision) -> Option<Reason> {
    match decision {
        Decision::Deny(d) => Some(d.reason),
        _ => None,
    }
}

#[test]
fn credential_is_read_from_the_first_source_present() {
    let config = config();
    let headers = |name: &str| match name {
        "authorization" => Some(b"bearer abc".to_vec()),
        "x-api-key" => Some(b"xyz".to_vec()),
        _ => None,
    };
    assert_eq!(
        find_credential(&config.token_sources, headers),
        bearer("abc".into())
    );
    let api_key_only = |name: &str| (name == "x-api-key").then(|| b" xyz ".to_vec());
    assert_eq!(
        find_credential(&config.token_sources, api_key_only),
        Credential::Present {
            source: 1,
            token: "xyz".into()
        }
    );
}

#[test]
fn authorization_without_the_bearer_prefix_is_no_credential() {
    let config = config();
    let basic = |name: &str| (name == "authorization").then(|| b"Basic dXNlcg==".to_vec());
    assert_eq!(
        find_credential(&config.token_sources, basic),
        Credential::Missing
    );
    let empty = |name: &str| (name == "authorization").then(|| b"Bearer   ".to_vec());
    assert_eq!(
        find_credential(&config.token_sources, empty),
        Credential::Missing
    );
}

#[test]
fn non_utf8_token_header_is_unreadable() {
    let config = config();
    let raw = |name: &str| (name == "authorization").then(|| b"Bearer \xff\xfe".to_vec());
    assert_eq!(
        find_credential(&config.token_sources, raw),
        Credential::Unreadable
    );
    assert_eq!(
        denial_reason(&decide_once(Credential::Unreadable, None)),
        Some(Reason::InvalidToken)
    );
}

#[test]
fn missing_token_is_denied() {
    assert_eq!(
        denial_reason(&decide_once(Credential::Missing, None)),
        Some(Reason::MissingToken)
    );
}

/// Decides one request for `path` under `config`, with a fresh cache.
fn decide_path(config: &Config, path: &[u8], credential: Credential) -> Decision {
    let mut cache = TokenCache::new(16);
    decide(
        config,
        &mut cache,
        &Remembered::default(),
        RequestFacts {
            path,
            ..facts(credential, None)
        },
    )
}

#[test]
fn bypass_path_needs_no_token() {
    let decision = decide_path(&config(), b"/healthz", Credential::Missing);
    assert_eq!(decision, Decision::Bypass);
}

#[test]
fn admitted_request_sets_tenant_forwards_claims_and_strips_the_token() {
    let Decision::Admit(a) = decide_once(bearer(acme_token()), None) else {
        panic!("not admitted");
    };
    assert_eq!(a.tenant, "acme");
    assert_eq!(a.user.as_deref(), Some("alice"));
    assert_eq!(a.provider.as_deref(), Some("corp-idp"));
    assert_eq!(
        a.header_edits,
        vec![
            HeaderEdit::Set("x-tenant-id".into(), "acme".into()),
            // `email` is absent from the token: a client-sent copy must not survive.
            HeaderEdit::Remove("x-user-email".into()),
            HeaderEdit::Set("x-user-id".into(), "alice".into()),
            HeaderEdit::Remove("authorization".into()),
        ]
    );
}

#[test]
fn client_tenant_header_must_match_the_token() {
    assert!(matches!(
        decide_once(bearer(acme_token()), Some(b"acme")),
        Decision::Admit(_)
    ));
    let decision = decide_once(bearer(acme_token()), Some(b"globex"));
    let Decision::Deny(d) = decision else {
        panic!("admitted a spoofed tenant header");
    };
    assert_eq!(d.reason, Reason::TenantHeaderMismatch);
    assert_eq!(
        d.tenant.as_deref(),
        Some("acme"),
        "the audit record names the real tenant"
    );
}

#[test]
fn token_for_acme_signed_by_globex_idp_is_refused() {
    let forged = token(
        GLOBEX_SECRET,
        "g1",
        json!({"iss": "https://globex", "exp": NOW + 600, "tenant_id": "acme"}),
    );
    let decision = decide_once(bearer(forged), None);
    assert_eq!(
        denial_reason(&decision),
        Some(Reason::TenantProviderMismatch)
    );
}

#[test]
fn suspended_and_unknown_tenants_are_refused() {
    let claims = |tenant: &str| json!({"iss": "https://corp", "aud": "gw", "exp": NOW + 600, "tenant_id": tenant});
    let suspended = token(CORP_SECRET, "c1", claims("initech"));
    assert_eq!(
        denial_reason(&decide_once(bearer(suspended), None)),
        Some(Reason::TenantSuspended)
    );
    let unknown = token(CORP_SECRET, "c1", claims("hooli"));
    assert_eq!(
        denial_reason(&decide_once(bearer(unknown), None)),
        Some(Reason::UnknownTenant)
    );
}

#[test]
fn expired_token_is_denied_with_its_own_reason() {
    let old = token(
        CORP_SECRET,
        "c1",
        json!({"iss": "https://corp", "aud": "gw", "exp": NOW - 3600, "tenant_id": "acme"}),
    );
    assert_eq!(
        denial_reason(&decide_once(bearer(old), None)),
        Some(Reason::TokenExpired)
    );
}

#[test]
fn verified_token_is_served_from_the_cache_until_it_expires() {
    let config = config();
    let mut cache = TokenCache::new(16);
    let first = decide(
        &config,
        &mut cache,
        &Remembered::default(),
        facts(bearer(acme_token()), None),
    );
    assert!(matches!(first, Decision::Admit(_)));
    assert_eq!(cache.len(), 1);
    let again = decide(
        &config,
        &mut cache,
        &Remembered::default(),
        facts(bearer(acme_token()), None),
    );
    assert_eq!(first, again);
    // Past exp + skew the cached entry no longer counts.
    let later = RequestFacts {
        now: NOW + 600 + 61,
        ..facts(bearer(acme_token()), None)
    };
    assert_eq!(
        denial_reason(&decide(&config, &mut cache, &Remembered::default(), later)),
        Some(Reason::TokenExpired)
    );
}

#[test]
fn a_denied_token_is_not_cached() {
    let config = config();
    let mut cache = TokenCache::new(16);
    let bad = token(
        GLOBEX_SECRET,
        "c1",
        json!({"iss": "https://corp", "aud": "gw", "exp": NOW + 600, "tenant_id": "acme"}),
    );
    let decision = decide(
        &config,
        &mut cache,
        &Remembered::default(),
        facts(bearer(bad), None),
    );
    assert_eq!(denial_reason(&decision), Some(Reason::InvalidToken));
    assert_eq!(cache.len(), 0);
}

fn routed_config() -> Config {
    let doc = json!({
      "providers": {"corp-idp": {"issuer": "https://corp", "audiences": ["gw"],
                     "jwks": {"keys": [{"kty": "oct", "kid": "c1", "k": b64(CORP_SECRET)}]}}},
      "tenants": {"acme": {"providers": ["corp-idp"], "namespace": "acme-ns"}},
      "routing": {"path_prefix": "/tenants/{namespace}", "authority": "{namespace}.internal",
                  "namespace_header": "x-ns"},
      "vector_stores": [{"path_prefix": "/qdrant", "kind": "qdrant"}]
    });
    Config::parse(doc.to_string().as_bytes()).unwrap()
}

fn routed(path: &[u8]) -> Decision {
    decide_path(&routed_config(), path, bearer(acme_token()))
}

#[test]
fn admitted_request_is_placed_in_its_namespace_and_rerouted() {
    let Decision::Admit(a) = routed(b"/v1/../v1/chat//completions?x=1") else {
        panic!("not admitted");
    };
    assert!(a.rerouted);
    assert_eq!(
        a.header_edits[a.header_edits.len() - 3..],
        vec![
            HeaderEdit::Set(":authority".into(), "acme-ns.internal".into()),
            HeaderEdit::Set(
                ":path".into(),
                "/tenants/acme-ns/v1/chat/completions?x=1".into()
            ),
            HeaderEdit::Set("x-ns".into(), "acme-ns".into()),
        ]
    );
}

#[test]
fn path_into_another_namespace_is_denied_and_names_the_tenant() {
    for path in [
        &b"/tenants/globex/v1/x"[..],
        b"/v1/../../tenants/globex/v1/x",
    ] {
        let Decision::Deny(d) = routed(path) else {
            panic!("admitted {path:?}");
        };
        assert_eq!(d.reason, Reason::CrossTenantPath);
        assert_eq!(d.tenant.as_deref(), Some("acme"));
    }
}

#[test]
fn encoded_separators_are_refused_not_guessed() {
    for path in [&b"/v1/a%2fb"[..], b"/v1/a%5cb", b"/v1\\x"] {
        assert_eq!(
            denial_reason(&routed(path)),
            Some(Reason::InvalidPath),
            "{path:?}"
        );
    }
}

#[test]
fn vector_store_request_is_confined_by_its_store_instead_of_the_namespace_prefix() {
    let Decision::Admit(a) = routed(b"/qdrant/collections/docs/points/search") else {
        panic!("not admitted");
    };
    assert!(a.header_edits.contains(&HeaderEdit::Set(
        ":path".into(),
        "/qdrant/collections/acme-ns~docs/points/search".into()
    )));
    // Not under routing.path_prefix, but on the tenant's authority: a per-tenant backend
    // chosen by host is the tenant's, whatever Host the client sent.
    assert!(a.header_edits.contains(&HeaderEdit::Set(
        ":authority".into(),
        "acme-ns.internal".into()
    )));
    assert!(a.rerouted);
    assert_eq!(
        denial_reason(&routed(b"/qdrant/aliases")),
        Some(Reason::VectorOperationNotAllowed)
    );
}

#[test]
fn without_routing_and_isolation_the_path_is_left_as_received() {
    let mut config = config();
    config.isolation.provider_objects = ProviderObjects::Off;
    config.isolation.prompt_cache = PromptCache::Off;
    let decision = decide_path(&config, b"/v1/a%2fb/../c", bearer(acme_token()));
    let Decision::Admit(a) = decision else {
        panic!("not admitted");
    };
    assert!(!a.rerouted);
    assert!(a
        .header_edits
        .iter()
        .all(|e| !matches!(e, HeaderEdit::Set(n, _) if n == ":path")));
}

// === Provider-side objects and prompt caches ===

#[test]
fn with_object_isolation_a_path_that_cannot_be_normalised_is_refused() {
    let decision = decide_path(&config(), b"/v1/files/a%2fb", bearer(acme_token()));
    assert_eq!(denial_reason(&decision), Some(Reason::InvalidPath));
}

#[test]
fn a_path_naming_another_tenants_object_is_not_found() {
    let config = config();
    let mut owners = Remembered::default();
    owners
        .0
        .insert("resp_globex".into(), owner_digest("globex"));
    owners.0.insert("resp_acme".into(), owner_digest("acme"));
    let mut cache = TokenCache::new(16);
    let mut ask = |path: &'static [u8]| {
        decide(
            &config,
            &mut cache,
            &owners,
            RequestFacts {
                path,
                ..facts(bearer(acme_token()), None)
            },
        )
    };
    assert!(matches!(
        ask(b"/v1/responses/resp_acme"),
        Decision::Admit(_)
    ));
    let Decision::Deny(denied) = ask(b"/v1/responses/resp_globex") else {
        panic!("admitted another tenant's object");
    };
    assert_eq!(denied.reason, Reason::ProviderObjectNotFound);
    assert!(denied.detail.contains("resp_globex"), "{}", denied.detail);
    assert_eq!(
        denial_reason(&ask(b"/v1/files/file-never-seen/content")),
        Some(Reason::ProviderObjectNotFound)
    );
}

#[test]
fn chat_and_messages_bodies_get_their_cache_scoped_and_answers_are_private_without_routing() {
    let decision = decide_path(&config(), b"/v1/chat/completions", bearer(acme_token()));
    let Decision::Admit(a) = decision else {
        panic!("not admitted");
    };
    assert_eq!(a.cache_scope, Some(Api::OpenAi));
    assert!(a.private_cache);
    assert_eq!(a.quota_id, "acme");
    assert!(a.objects.is_some());
}

// === Default tenants ===

/// acme (namespace acme-ns) is listed; corp-idp and globex-idp both admit unlisted tenants.
fn default_tenant_config() -> Config {
    let doc = json!({
      "providers": {
        "corp-idp": {"issuer": "https://corp", "audiences": ["gw"],
                     "jwks": {"keys": [{"kty": "oct", "kid": "c1", "k": b64(CORP_SECRET)}]}},
        "globex-idp": {"issuer": "https://globex", "audiences": ["gw"],
                       "jwks": {"keys": [{"kty": "oct", "kid": "g1", "k": b64(GLOBEX_SECRET)}]}}
      },
      "tenants": {"acme": {"providers": ["corp-idp"], "namespace": "acme-ns"}},
      "default_tenant": {"providers": ["corp-idp", "globex-idp"]},
      "routing": {"path_prefix": "/tenants/{namespace}", "namespace_header": "x-ns"}
    });
    Config::parse(doc.to_string().as_bytes()).unwrap()
}

fn unlisted(secret: &[u8], kid: &str, iss: &str, tenant: &str) -> Credential {
    bearer(token(
        secret,
        kid,
        json!({"iss": iss, "aud": "gw", "exp": NOW + 600, "tenant_id": tenant}),
    ))
}

#[test]
fn default_tenant_is_placed_in_its_providers_namespace() {
    let config = default_tenant_config();
    let corp = unlisted(CORP_SECRET, "c1", "https://corp", "hooli");
    let Decision::Admit(a) = decide_path(&config, b"/v1/chat/completions", corp) else {
        panic!("not admitted");
    };
    assert_eq!(a.tenant, "hooli");
    assert!(a.header_edits.contains(&HeaderEdit::Set(
        ":path".into(),
        "/tenants/corp-idp.hooli/v1/chat/completions".into()
    )));
    assert!(a
        .header_edits
        .contains(&HeaderEdit::Set("x-ns".into(), "corp-idp.hooli".into())));
    assert_eq!(a.quota_id, "corp-idp/hooli");
    assert!(!a.listed);
    assert_eq!(
        config
            .tenants
            .quota_id(&a.tenant, a.provider.as_deref().unwrap()),
        "corp-idp/hooli"
    );

    let globex = unlisted(GLOBEX_SECRET, "g1", "https://globex", "hooli");
    let Decision::Admit(b) = decide_path(&config, b"/v1/chat/completions", globex) else {
        panic!("not admitted");
    };
    assert!(b
        .header_edits
        .contains(&HeaderEdit::Set("x-ns".into(), "globex-idp.hooli".into())));
    assert_eq!(b.quota_id, "globex-idp/hooli");
}

#[test]
fn default_tenant_named_like_a_listed_namespace_is_refused() {
    let config = default_tenant_config();
    let credential = unlisted(CORP_SECRET, "c1", "https://corp", "acme-ns");
    let Decision::Deny(d) = decide_path(&config, b"/v1/chat/completions", credential) else {
        panic!("admitted a default tenant into a listed tenant's namespace");
    };
    assert_eq!(d.reason, Reason::TenantNamespaceConflict);
    assert_eq!(d.tenant.as_deref(), Some("acme-ns"));
    assert_eq!(d.provider.as_deref(), Some("corp-idp"));
}

#[test]
fn default_tenant_cannot_address_a_listed_namespace_by_path() {
    let config = default_tenant_config();
    let credential = unlisted(CORP_SECRET, "c1", "https://corp", "hooli");
    assert_eq!(
        denial_reason(&decide_path(&config, b"/tenants/acme-ns/v1/x", credential)),
        Some(Reason::CrossTenantPath)
    );
}

// === Upstream credentials ===

const ACME_OPENAI: &str = "sk-acme-openai-0123456789";

/// The test policy with an `openai` upstream (acme has a key, globex none) and a token source
/// of the gateway's own.
fn credential_config() -> Config {
    let mut doc = document();
    doc["identity"]["token_sources"] = json!([{"header": "authorization", "prefix": "Bearer "},
                                              {"header": "x-gateway-token"}]);
    doc["identity"]["strip_token"] = json!(false);
    doc["upstreams"] = json!({"openai": {"path_prefixes": ["/v1/chat"]}});
    doc["tenants"]["acme"]["credentials"] =
        json!({"openai": {"header": "authorization", "prefix": "Bearer ", "env": "ACME_OPENAI"}});
    doc["tenants"]["acme"]["upstream_headers"] = json!({"openai-project": "proj_acme"});
    doc["tenants"]["globex"] = json!({"providers": ["globex-idp"]});
    let mut config = Config::parse(doc.to_string().as_bytes()).unwrap();
    config
        .upstreams
        .load(&mut |name| (name == "ACME_OPENAI").then(|| ACME_OPENAI.to_string()))
        .unwrap();
    config
}

#[test]
fn a_request_to_an_upstream_goes_with_its_tenants_credential_and_nothing_of_the_clients() {
    let config = credential_config();
    let Decision::Admit(a) = decide_path(
        &config,
        b"/v1/chat/completions",
        Credential::Present {
            source: 1,
            token: acme_token(),
        },
    ) else {
        panic!("not admitted")
    };
    let digest = Secret::new(ACME_OPENAI).fingerprint();
    assert_eq!(a.credential, Some(format!("acme/openai#{digest}")));
    let edits = &a.header_edits;
    let at = |edit: &HeaderEdit| edits.iter().position(|e| e == edit).unwrap();
    let set = at(&HeaderEdit::SetSecret(
        "authorization".into(),
        Secret::new(&format!("Bearer {ACME_OPENAI}")),
    ));
    assert_eq!(
        set,
        edits.len() - 1,
        "the credential is the last edit: {edits:?}"
    );
    for header in [
        "authorization",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "x-gateway-token",
    ] {
        assert!(at(&HeaderEdit::Remove(header.into())) < set, "{header}");
    }
    assert!(edits.contains(&HeaderEdit::Set(
        "openai-project".into(),
        "proj_acme".into()
    )));
    // The decision prints without the secret.
    let printed = format!("{a:?}");
    assert!(!printed.contains(ACME_OPENAI) && printed.contains("<redacted>"));
}

#[test]
fn a_request_to_no_upstream_keeps_its_headers() {
    let config = credential_config();
    let Decision::Admit(a) = decide_path(&config, b"/v1/models", bearer(acme_token())) else {
        panic!("not admitted")
    };
    assert_eq!(a.credential, None);
    assert!(!a.header_edits.iter().any(|e| matches!(
        e,
        HeaderEdit::SetSecret(..) | HeaderEdit::Remove(_)
    ) && *e != HeaderEdit::Remove("x-user-email".into())));
}

#[test]
fn a_tenant_without_a_credential_is_refused_and_never_borrows_another() {
    let config = credential_config();
    let globex = token(
        GLOBEX_SECRET,
        "g1",
        json!({"iss": "https://globex", "exp": NOW + 600, "sub": "bob", "tenant_id": "globex"}),
    );
    let decision = decide_path(&config, b"/v1/chat/completions", bearer(globex.clone()));
    let Decision::Deny(d) = decision else {
        panic!("admitted: {decision:?}")
    };
    assert_eq!(d.reason, Reason::NoUpstreamCredential);
    assert_eq!(d.tenant.as_deref(), Some("globex"));
    assert!(d.detail.contains("upstream openai"), "{}", d.detail);
    // Elsewhere globex goes on, without acme's upstream headers and without the client's.
    let Decision::Admit(a) = decide_path(&config, b"/v1/models", bearer(globex)) else {
        panic!("not admitted")
    };
    assert!(a
        .header_edits
        .contains(&HeaderEdit::Remove("openai-project".into())));
}

#[test]
fn an_upstream_path_that_cannot_be_read_safely_is_refused() {
    let config = credential_config();
    let decision = decide_path(&config, b"/v1%2Fchat/completions", bearer(acme_token()));
    assert_eq!(denial_reason(&decision), Some(Reason::InvalidPath));
}

// === API keys ===

const ACME_KEY: &str = "tgk_acme_ci_0123456789abcdefghijklmnop";
const INITECH_KEY: &str = "tgk_initech_0123456789abcdefghijklmn";

fn sha256_hex(text: &str) -> String {
    crate::policy::audit::hex(&hmac_sha256::Hash::hash(text.as_bytes()))
}

/// The test policy with keys read from `authorization: Bearer` and `x-api-key` (a token
/// source already), a key for acme and one for suspended initech, and the `openai` upstream
/// of [`credential_config`].
fn key_config() -> Config {
    let mut doc = document();
    doc["identity"]["api_key_sources"] = json!([{"header": "authorization", "prefix": "Bearer "},
                                                {"header": "x-api-key"}]);
    doc["tenants"]["acme"]["api_keys"] = json!([
        {"id": "ci", "sha256": sha256_hex(ACME_KEY), "user": "ci-bot"},
        {"id": "old", "sha256": sha256_hex("tgk_old"), "status": "revoked"}]);
    doc["tenants"]["initech"]["api_keys"] =
        json!([{"id": "k1", "sha256": sha256_hex(INITECH_KEY)}]);
    doc["upstreams"] = json!({"openai": {"path_prefixes": ["/v1/chat"]}});
    doc["tenants"]["acme"]["credentials"] =
        json!({"openai": {"header": "authorization", "prefix": "Bearer ", "env": "ACME_OPENAI"}});
    let mut config = Config::parse(doc.to_string().as_bytes()).unwrap();
    config
        .upstreams
        .load(&mut |name| (name == "ACME_OPENAI").then(|| ACME_OPENAI.to_string()))
        .unwrap();
    config
}

fn key(key: &str, sources: &[usize]) -> Credential {
    Credential::ApiKey {
        key: key.into(),
        sources: sources.to_vec(),
    }
}

#[test]
fn a_key_identifies_its_tenant_and_user_and_never_goes_upstream() {
    let config = key_config();
    let Decision::Admit(a) = decide_path(&config, b"/v1/models", key(ACME_KEY, &[0, 1])) else {
        panic!("not admitted")
    };
    assert_eq!((a.tenant.as_str(), a.quota_id.as_str()), ("acme", "acme"));
    assert_eq!(a.user.as_deref(), Some("ci-bot"));
    assert_eq!((a.auth, a.key_id.as_deref()), (Auth::ApiKey, Some("ci")));
    assert_eq!(a.provider, None);
    assert!(a.listed);
    for header in ["authorization", "x-api-key"] {
        assert!(
            a.header_edits.contains(&HeaderEdit::Remove(header.into())),
            "{header}"
        );
    }
    // Claims an API key does not have are never forwarded from the client either.
    assert!(a
        .header_edits
        .contains(&HeaderEdit::Remove("x-user-id".into())));
    assert!(a
        .header_edits
        .contains(&HeaderEdit::Set("x-tenant-id".into(), "acme".into())));
}

#[test]
fn a_key_to_an_upstream_is_replaced_by_the_tenants_credential() {
    let config = key_config();
    let Decision::Admit(a) = decide_path(&config, b"/v1/chat/completions", key(ACME_KEY, &[0]))
    else {
        panic!("not admitted")
    };
    assert_eq!(
        a.header_edits.last(),
        Some(&HeaderEdit::SetSecret(
            "authorization".into(),
            Secret::new(&format!("Bearer {ACME_OPENAI}"))
        ))
    );
    assert!(a.credential.unwrap().starts_with("acme/openai#"));
}

#[test]
fn unknown_revoked_and_expired_keys_are_refused_with_their_digest() {
    let mut config = key_config();
    let deny = |config: &Config, k: &str| match decide_path(config, b"/v1/models", key(k, &[1])) {
        Decision::Deny(d) => d,
        other => panic!("admitted: {other:?}"),
    };
    let unknown = deny(&config, "tgk_nobody");
    assert_eq!(unknown.reason, Reason::InvalidApiKey);
    assert_eq!(
        (unknown.tenant.clone(), unknown.key_id.clone(), unknown.auth),
        (None, None, Some(Auth::ApiKey))
    );
    assert_eq!(
        unknown.key_digest.as_deref(),
        Some(&sha256_hex("tgk_nobody")[..8])
    );
    let revoked = deny(&config, "tgk_old");
    assert_eq!(revoked.reason, Reason::ApiKeyRevoked);
    assert_eq!(
        (revoked.tenant.as_deref(), revoked.key_id.as_deref()),
        (Some("acme"), Some("old"))
    );
    // Expiry counts at the request's `now`.
    let mut doc = document();
    doc["identity"]["api_key_sources"] = json!([{"header": "x-api-key"}]);
    doc["tenants"]["acme"]["api_keys"] = json!([{"id": "temp", "sha256": sha256_hex("tgk_t"),
                                                 "expires": "2023-11-14T22:13:20Z"}]);
    config = Config::parse(doc.to_string().as_bytes()).unwrap();
    let expired = deny(&config, "tgk_t");
    assert_eq!(expired.reason, Reason::ApiKeyExpired);
    assert_eq!(expired.user.as_deref(), Some("temp"));
    for d in [unknown, revoked, expired] {
        assert!(!d.detail.contains("tgk_"), "{}", d.detail);
    }
}

#[test]
fn a_key_of_a_suspended_tenant_is_refused_as_a_token_would_be() {
    let config = key_config();
    let Decision::Deny(d) = decide_path(&config, b"/v1/models", key(INITECH_KEY, &[1])) else {
        panic!("admitted")
    };
    assert_eq!(d.reason, Reason::TenantSuspended);
    assert_eq!(
        (d.tenant.as_deref(), d.key_id.as_deref(), d.auth),
        (Some("initech"), Some("k1"), Some(Auth::ApiKey))
    );
}

#[test]
fn keys_and_tokens_side_by_side_and_conflicts_refused() {
    let config = key_config();
    let Decision::Admit(a) = decide_path(&config, b"/v1/models", bearer(acme_token())) else {
        panic!("not admitted")
    };
    assert_eq!((a.auth, a.key_id), (Auth::Jwt, None));
    assert_eq!(a.provider.as_deref(), Some("corp-idp"));
    let conflict = decide_path(
        &config,
        b"/v1/models",
        Credential::Conflict("two headers carry different credentials"),
    );
    assert_eq!(denial_reason(&conflict), Some(Reason::InvalidApiKey));
    // The tenant header still has to match.
    let mismatch = decide(
        &config,
        &mut TokenCache::new(4),
        &Remembered::default(),
        RequestFacts {
            path: b"/v1/models",
            ..facts(key(ACME_KEY, &[1]), Some(b"globex"))
        },
    );
    assert_eq!(denial_reason(&mismatch), Some(Reason::TenantHeaderMismatch));
}

#[test]
fn credentials_are_read_from_every_source_only_when_keys_are_configured() {
    let headers = |name: &str| match name {
        "authorization" => Some(format!("Bearer {ACME_KEY}").into_bytes()),
        "x-api-key" => Some(b"tgk_other".to_vec()),
        _ => None,
    };
    let lines = |name: &str| headers(name).into_iter().collect();
    // Without keys: the first token source present, as before.
    assert_eq!(
        read_credential(&config(), headers, lines),
        bearer(ACME_KEY.into())
    );
    assert!(matches!(
        read_credential(&key_config(), headers, lines),
        Credential::Conflict(_)
    ));
}
