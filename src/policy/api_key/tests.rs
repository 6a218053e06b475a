use super::*;
use crate::policy::config::Config;
use serde_json::{json, Value};
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const NOW: u64 = 1_700_000_000;
const ACME_KEY: &str = "tgk_acme_0123456789abcdefghijklmnopqrstuv";
const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl";

fn sha256_hex(key: &str) -> String {
    hex(&hmac_sha256::Hash::hash(key.as_bytes()))
}

/// Keys of acme (one of each kind) and globex; keys read from `authorization: Bearer` and
/// `x-api-key`, with a token source of its own (`x-token`).
fn document() -> Value {
    json!({
      "providers": {},
      "identity": {
        "token_sources": [{"header": "authorization", "prefix": "Bearer "},
                          {"header": "x-token"}],
        "api_key_sources": [{"header": "authorization", "prefix": "Bearer "},
                            {"header": "x-api-key"}]
      },
      "tenants": {
        "acme": {"api_keys": [
          {"id": "ci", "sha256": sha256_hex(ACME_KEY), "user": "ci-bot"},
          {"id": "old", "sha256": sha256_hex("tgk_old"), "status": "revoked"},
          {"id": "temp", "sha256": sha256_hex("tgk_temp"), "expires": "2023-11-14T22:13:21Z"}
        ]},
        "globex": {"api_keys": [{"id": "main", "sha256": sha256_hex("tgk_globex")}]}
      }
    })
}

fn parse(doc: &Value) -> Result<Config, ConfigError> {
    Config::parse(doc.to_string().as_bytes())
}

fn config() -> Config {
    parse(&document()).unwrap()
}

fn error(doc: &Value) -> ConfigError {
    match parse(doc) {
        Ok(_) => panic!("accepted: {doc}"),
        Err(e) => e,
    }
}

/// Reads a request's credential from `headers` (name, value), every line counted.
fn read(config: &Config, headers: &[(&str, &[u8])]) -> Found {
    let sources = config
        .token_sources
        .iter()
        .map(|s| (s.header.as_str(), s.prefix.as_deref()));
    let lines = |name: &str| -> Vec<Vec<u8>> {
        headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.to_vec())
            .collect()
    };
    let first = |name: &str| lines(name).into_iter().next();
    config.api_keys.read(sources, first, lines)
}

#[test]
fn jwts_are_told_from_keys_by_their_shape() {
    assert!(is_jwt_shaped(JWT));
    assert!(is_jwt_shaped("a.b.c"));
    for key in [
        ACME_KEY,
        "a.b",
        "a.b.c.d",
        "a..c",
        "a.b.",
        "a.b.c=",
        "sk-proj-x.y z.w",
        "",
    ] {
        assert!(!is_jwt_shaped(key), "{key}");
    }
}

#[test]
fn key_sources_are_token_sources_too_and_shared_ones_are_not_repeated() {
    let config = config();
    let headers: Vec<(&str, Option<&str>)> = config
        .token_sources
        .iter()
        .map(|s| (s.header.as_str(), s.prefix.as_deref()))
        .collect();
    assert_eq!(
        headers,
        [
            ("authorization", Some("Bearer ")),
            ("x-token", None),
            ("x-api-key", None)
        ]
    );
    assert!(config.api_keys.enabled());
    assert_eq!(config.api_keys.len(), 4);
}

#[test]
fn a_key_is_read_from_either_header_and_a_jwt_goes_to_token_verification() {
    let config = config();
    let bearer = format!("Bearer {ACME_KEY}");
    assert_eq!(
        read(&config, &[("authorization", bearer.as_bytes())]),
        Found::Key {
            key: ACME_KEY.into(),
            sources: vec![0]
        }
    );
    assert_eq!(
        read(&config, &[("x-api-key", ACME_KEY.as_bytes())]),
        Found::Key {
            key: ACME_KEY.into(),
            sources: vec![2]
        }
    );
    // The same key in both: one credential, and neither header goes upstream.
    assert_eq!(
        read(
            &config,
            &[
                ("x-api-key", ACME_KEY.as_bytes()),
                ("authorization", bearer.as_bytes())
            ]
        ),
        Found::Key {
            key: ACME_KEY.into(),
            sources: vec![0, 2]
        }
    );
    let jwt = format!("bearer {JWT}");
    for headers in [
        &[("authorization", jwt.as_bytes())][..],
        &[("x-api-key", JWT.as_bytes())][..],
    ] {
        assert!(matches!(read(&config, headers), Found::Token { token, .. } if token == JWT));
    }
    // A source keys are not read from holds a token, whatever its shape.
    assert_eq!(
        read(&config, &[("x-token", b"not-a-jwt")]),
        Found::Token {
            source: 1,
            token: "not-a-jwt".into()
        }
    );
}

#[test]
fn a_credential_sent_twice_or_two_different_ones_are_refused() {
    let config = config();
    let bearer = format!("Bearer {ACME_KEY}");
    let twice = read(
        &config,
        &[
            ("x-api-key", ACME_KEY.as_bytes()),
            ("x-api-key", ACME_KEY.as_bytes()),
        ],
    );
    assert_eq!(
        twice,
        Found::Conflict("a credential header was sent more than once")
    );
    let different = read(
        &config,
        &[
            ("authorization", bearer.as_bytes()),
            ("x-api-key", b"tgk_globex"),
        ],
    );
    assert_eq!(
        different,
        Found::Conflict("two headers carry different credentials")
    );
    // One value in a token header and a key header is one key; neither header goes upstream.
    assert_eq!(
        read(&config, &[("x-token", b"tgk_k"), ("x-api-key", b"tgk_k")]),
        Found::Key {
            key: "tgk_k".into(),
            sources: vec![1, 2]
        }
    );
    // A token beside a key is two credentials too.
    let token_and_key = read(&config, &[("x-token", JWT.as_bytes()), ("x-api-key", b"k")]);
    assert!(matches!(token_and_key, Found::Conflict(_)));
}

#[test]
fn other_schemes_empty_values_and_bad_bytes() {
    let config = config();
    assert_eq!(
        read(&config, &[("authorization", b"Basic dXNlcjpwYXNz")]),
        Found::Missing
    );
    assert_eq!(read(&config, &[("x-api-key", b"   ")]), Found::Missing);
    assert_eq!(read(&config, &[]), Found::Missing);
    assert_eq!(
        read(&config, &[("x-api-key", b"tgk_\xff")]),
        Found::Unreadable
    );
    // A Basic line beside a key is not a second credential.
    assert!(matches!(
        read(
            &config,
            &[
                ("authorization", b"Basic eA=="),
                ("x-api-key", ACME_KEY.as_bytes())
            ]
        ),
        Found::Key { .. }
    ));
}

#[test]
fn only_a_key_has_every_line_read() {
    let config = config();
    let sources = || {
        config
            .token_sources
            .iter()
            .map(|s| (s.header.as_str(), s.prefix.as_deref()))
    };
    let mut whole_reads = 0;
    let jwt = format!("Bearer {JWT}");
    let found = config.api_keys.read(
        sources(),
        |name| (name == "authorization").then(|| jwt.clone().into_bytes()),
        |_| {
            whole_reads += 1;
            Vec::new()
        },
    );
    assert!(matches!(found, Found::Token { .. }));
    assert_eq!(whole_reads, 0);
    let found = config.api_keys.read(
        sources(),
        |name| (name == "x-api-key").then(|| ACME_KEY.as_bytes().to_vec()),
        |name| {
            if name == "x-api-key" {
                vec![ACME_KEY.into(), b"tgk_second".to_vec()]
            } else {
                vec![]
            }
        },
    );
    assert!(matches!(found, Found::Conflict(_)));
}

#[test]
fn keys_are_checked_for_existence_revocation_and_expiry() {
    let config = config();
    let keys = &config.api_keys;
    let ci = keys.check(ACME_KEY, NOW).unwrap();
    assert_eq!(
        (ci.tenant.as_str(), ci.id.as_str(), ci.user()),
        ("acme", "ci", "ci-bot")
    );
    let globex = keys.check("tgk_globex", NOW).unwrap();
    assert_eq!(globex.user(), "main");

    let unknown = keys.check("tgk_nobody", NOW).unwrap_err();
    assert_eq!(unknown.reason, Reason::InvalidApiKey);
    assert_eq!(unknown.digest, sha256_hex("tgk_nobody")[..8]);
    assert_eq!(unknown.key, None);

    let revoked = keys.check("tgk_old", NOW).unwrap_err();
    assert_eq!(revoked.reason, Reason::ApiKeyRevoked);
    assert_eq!(revoked.key.map(|k| k.id.as_str()), Some("old"));

    // 2023-11-14T22:13:21Z is 1_700_000_001: valid until the second before.
    assert!(keys.check("tgk_temp", NOW).is_ok());
    let expired = keys.check("tgk_temp", NOW + 1).unwrap_err();
    assert_eq!(expired.reason, Reason::ApiKeyExpired);
    assert_eq!(expired.digest, sha256_hex("tgk_temp")[..8]);
    // A key's digest, uppercase or with whitespace, is another key.
    assert!(keys.check(&ACME_KEY.to_uppercase(), NOW).is_err());
    assert!(keys.check(&sha256_hex(ACME_KEY), NOW).is_err());
}

#[test]
fn the_configuration_is_checked_field_by_field() {
    type Case = (fn(&mut Value), &'static str, &'static str);
    let cases: Vec<Case> = vec![
        (
            |d| d["tenants"]["acme"]["api_keys"][0]["sha256"] = json!("ABC"),
            "tenants.acme.api_keys[0].sha256",
            "64 lowercase hex digits",
        ),
        (
            |d| {
                let upper = d["tenants"]["acme"]["api_keys"][0]["sha256"]
                    .as_str()
                    .unwrap()
                    .to_uppercase();
                d["tenants"]["acme"]["api_keys"][0]["sha256"] = json!(upper);
            },
            "tenants.acme.api_keys[0].sha256",
            "never the key",
        ),
        (
            |d| d["tenants"]["acme"]["api_keys"][1]["id"] = json!("ci"),
            "tenants.acme.api_keys[1].id",
            "key id \"ci\" is used twice",
        ),
        (
            |d| d["tenants"]["acme"]["api_keys"][1]["id"] = json!("a\nb"),
            "tenants.acme.api_keys[1].id",
            "printable ASCII",
        ),
        (
            |d| d["tenants"]["acme"]["api_keys"][0]["user"] = json!("u".repeat(129)),
            "tenants.acme.api_keys[0].user",
            "printable ASCII",
        ),
        (
            |d| d["tenants"]["acme"]["api_keys"][2]["expires"] = json!("2026-02-30T00:00:00Z"),
            "tenants.acme.api_keys[2].expires",
            "RFC 3339",
        ),
        (
            |d| d["tenants"]["acme"]["api_keys"][2]["status"] = json!("paused"),
            "tenants.acme.api_keys[2].status",
            "unknown variant `paused`",
        ),
        (
            |d| d["tenants"]["acme"]["api_keys"][0]["key"] = json!("tgk_x"),
            "tenants.acme.api_keys[0].key",
            "unknown field `key`",
        ),
        (
            |d| {
                d["tenants"]["globex"]["api_keys"][0]["sha256"] =
                    d["tenants"]["acme"]["api_keys"][0]["sha256"].clone()
            },
            "tenants.globex.api_keys[0].sha256",
            "is also key \"ci\" of tenant acme",
        ),
        (
            |d| d["identity"]["api_key_sources"] = json!([]),
            "providers",
            "at least one provider is required",
        ),
        (
            |d| d["identity"]["api_key_sources"][1]["header"] = json!("x api"),
            "identity.api_key_sources[1].header",
            "not a valid header name",
        ),
        (
            |d| d["tenants"]["hooli"] = json!({}),
            "tenants.hooli.providers",
            "must name at least one provider",
        ),
    ];
    for (change, path, message) in cases {
        let mut doc = document();
        change(&mut doc);
        let e = error(&doc);
        assert_eq!(e.path, path, "{e}");
        assert!(e.message.contains(message), "{e}");
    }
    // Keys without a source to read them from are a mistake, providers or not.
    let mut doc = document();
    doc["identity"]
        .as_object_mut()
        .unwrap()
        .remove("api_key_sources");
    doc["providers"] = json!({"p": {"issuer": "i", "audiences": "any",
        "jwks": {"keys": [{"kty": "oct", "k": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}]}}});
    let e = error(&doc);
    assert_eq!(e.path, "tenants.acme.api_keys");
    assert!(e.message.contains("api_key_sources is empty"), "{e}");
}

#[test]
fn no_key_sources_means_nothing_is_read_as_a_key() {
    let keys = ApiKeys::default();
    assert!(!keys.enabled() && keys.is_empty());
}
