//! Provider-side prompt caches and end-user identifiers, scoped to the tenant.
//!
//! A provider account shares its prompt cache among everyone who calls it: a tenant could time
//! its own requests to learn whether another recently sent the same prefix. OpenAI splits its
//! cache by `prompt_cache_key`, and is told who the end user is by `safety_identifier` (and the
//! older `user`); Anthropic by `metadata.user_id`. The filter sets them all to keyed hashes:
//!
//! - `prompt_cache_key` = tag(tenant, the client's own key or none): a tenant keeps its own
//!   cache buckets, never one shared with another tenant;
//! - `safety_identifier`, `user` (when the client sent one) and `metadata.user_id` =
//!   tag(tenant, verified user or none): stable per tenant and user, not reversible, never a
//!   raw id.
//!
//! A tag is `tg-` and 32 hex digits of HMAC-SHA-256 under the gateway's isolation key.

use std::fmt;

use hmac_sha256::HMAC;
use serde::de::{Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::policy::denial::Reason;
use crate::policy::json_edit::{self, EditError};
use crate::policy::namespace::PathRefusal;

/// Which provider API a request body speaks, as far as these fields go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Chat completions and the Responses API.
    OpenAi,
    /// Messages.
    Anthropic,
}

/// The API of a `method` `path` (normalised, no query) whose body can carry these fields.
pub fn api(method: &str, path: &str) -> Option<Api> {
    if method != "POST" {
        return None;
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        [.., "chat", "completions"] | [.., "responses"] => Some(Api::OpenAi),
        [.., "v1", "messages"] => Some(Api::Anthropic),
        _ => None,
    }
}

/// Who a request is for.
pub struct Scope<'a> {
    /// The gateway's isolation key.
    pub key: &'a [u8; 32],
    /// The tenant's quota id.
    pub tenant: &'a str,
    /// The verified user, when the token names one.
    pub user: Option<&'a str>,
}

/// The body with its cache key and user identifiers scoped to the tenant. A body that is not a
/// JSON object serde_json reads (not JSON; a number out of range, a lone surrogate, nesting
/// past its depth limit) is refused: sent on unscoped, it would reach a lenient provider with
/// the client's own key and identifiers.
pub fn scope(body: &[u8], api: Api, scope: &Scope<'_>) -> Result<Vec<u8>, PathRefusal> {
    let Ok(fields) = crate::policy::json::from_slice::<Fields>(body) else {
        return Err(PathRefusal::new(
            Reason::InvalidBody,
            "the body is not a JSON object the gateway can read",
        ));
    };
    let tags = Tags {
        keyed: HMAC::new(scope.key),
        tenant: scope.tenant,
    };
    let user_tag = tags.tag("user", scope.user.unwrap_or_default());
    let edited = match api {
        Api::OpenAi => {
            let client_key = fields.cache_key.as_deref().unwrap_or_default();
            let cache_tag = tags.tag("cache", client_key);
            let mut members = vec![
                ("prompt_cache_key", cache_tag.as_slice()),
                ("safety_identifier", user_tag.as_slice()),
            ];
            if fields.user {
                members.push(("user", user_tag.as_slice()));
            }
            json_edit::set_members(body, &members)
        }
        Api::Anthropic => json_edit::set(body, &["metadata", "user_id"], &user_tag),
    };
    edited.map_err(|e| {
        PathRefusal::new(
            Reason::InvalidBody,
            match e {
                EditError::DuplicateKey => "a key the gateway sets appears twice in the body",
                EditError::NotAnObject => "metadata must be an object",
            },
        )
    })
}

/// The tags of one body: HMAC-SHA-256 keyed once, its state cloned for each tag.
struct Tags<'a> {
    keyed: HMAC,
    tenant: &'a str,
}

impl Tags<'_> {
    /// A JSON string: `tg-` and 32 hex digits of HMAC-SHA-256(key, purpose NUL tenant NUL
    /// value).
    fn tag(&self, purpose: &str, value: &str) -> Vec<u8> {
        let mut mac = self.keyed.clone();
        for part in [purpose, "\0", self.tenant, "\0", value] {
            mac.update(part);
        }
        let mut out = Vec::with_capacity(37);
        out.extend_from_slice(b"\"tg-");
        for b in mac.finalize().iter().take(16) {
            out.extend_from_slice(&[hex_digit(b >> 4), hex_digit(b & 0xf)]);
        }
        out.push(b'"');
        out
    }
}

/// The lowercase hex digit of a nibble.
fn hex_digit(nibble: u8) -> u8 {
    match nibble {
        0..=9 => b'0'.saturating_add(nibble),
        _ => b'a'.saturating_add(nibble.saturating_sub(10)),
    }
}

/// What a body says of the members the gateway reads: read as `Map<String, Value>` would read
/// it (the same refusals: UTF-8, escapes, lone surrogates, numbers out of range, nesting
/// depth, an outermost value that is not an object; the last of duplicate keys wins), keeping
/// nothing else.
#[derive(Default)]
struct Fields {
    /// `prompt_cache_key`, when a string.
    cache_key: Option<String>,
    /// Whether `user` is there.
    user: bool,
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut fields = Fields::default();
        while let Some(key) = map.next_key::<Name>()? {
            match key {
                Name::CacheKey => {
                    fields.cache_key = map.next_value_seed(Checked { keep: true })?;
                }
                Name::User => {
                    fields.user = true;
                    map.next_value_seed(SKIP)?;
                }
                Name::Other => {
                    map.next_value_seed(SKIP)?;
                }
            }
        }
        Ok(fields)
    }
}

/// An outermost key, decoded.
enum Name {
    CacheKey,
    User,
    Other,
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(NameVisitor)
    }
}

struct NameVisitor;

impl Visitor<'_> for NameVisitor {
    type Value = Name;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Name, E> {
        Ok(match key {
            "prompt_cache_key" => Name::CacheKey,
            "user" => Name::User,
            _ => Name::Other,
        })
    }
}

/// Any JSON value, read in full as `Value` reads it (not skipped as `IgnoredAny` is: serde_json
/// then checks no UTF-8, surrogate, number range or depth); a string kept when `keep`.
#[derive(Clone, Copy)]
struct Checked {
    keep: bool,
}

const SKIP: Checked = Checked { keep: false };

impl<'de> DeserializeSeed<'de> for Checked {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = Option<String>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
        Ok(self.keep.then(|| text.to_owned()))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element_seed(SKIP)?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_key_seed(SKIP)?.is_some() {
            map.next_value_seed(SKIP)?;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value};
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const KEY: [u8; 32] = [7; 32];

    fn scoped(body: &str, api: Api, tenant: &str, user: Option<&str>) -> Map<String, Value> {
        let s = Scope {
            key: &KEY,
            tenant,
            user,
        };
        let out = scope(body.as_bytes(), api, &s).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn openai_bodies_get_a_tenant_cache_key_and_user_tags() {
        let a = scoped(
            r#"{"model":"gpt-4o","prompt_cache_key":"mine","user":"bob"}"#,
            Api::OpenAi,
            "acme",
            Some("alice"),
        );
        let key = a["prompt_cache_key"].as_str().unwrap();
        assert!(key.starts_with("tg-") && key.len() == 35, "{key}");
        assert_eq!(a["safety_identifier"], a["user"]);
        assert_ne!(a["user"], "bob");
        assert_eq!(a["model"], "gpt-4o");
    }

    #[test]
    fn one_client_key_is_one_bucket_per_tenant_and_never_shared_across_tenants() {
        let body = r#"{"prompt_cache_key":"shared-prefix"}"#;
        let acme = scoped(body, Api::OpenAi, "acme", None);
        let again = scoped(body, Api::OpenAi, "acme", None);
        let globex = scoped(body, Api::OpenAi, "globex", None);
        assert_eq!(acme["prompt_cache_key"], again["prompt_cache_key"]);
        assert_ne!(acme["prompt_cache_key"], globex["prompt_cache_key"]);
        let none = scoped("{}", Api::OpenAi, "acme", None);
        assert_ne!(none["prompt_cache_key"], acme["prompt_cache_key"]);
    }

    #[test]
    fn user_tags_are_stable_per_tenant_and_user_and_differ_across_tenants() {
        let tag = |tenant, user| {
            scoped("{}", Api::Anthropic, tenant, Some(user))["metadata"]["user_id"].clone()
        };
        assert_eq!(tag("acme", "alice"), tag("acme", "alice"));
        assert_ne!(tag("acme", "alice"), tag("acme", "bob"));
        assert_ne!(tag("acme", "alice"), tag("globex", "alice"));
        let anthropic = scoped(
            r#"{"metadata":{"user_id":"raw-id","x":1},"messages":[]}"#,
            Api::Anthropic,
            "acme",
            Some("alice"),
        );
        assert_ne!(anthropic["metadata"]["user_id"], "raw-id");
        assert_eq!(anthropic["metadata"]["x"], 1);
    }

    #[test]
    fn a_duplicate_key_the_gateway_sets_is_refused() {
        let s = Scope {
            key: &KEY,
            tenant: "acme",
            user: None,
        };
        let body = br#"{"prompt_cache_key":"a","prompt_cache_key":"b"}"#;
        let refused = scope(body, Api::OpenAi, &s).unwrap_err();
        assert_eq!(refused.reason, Reason::InvalidBody);
        let unreadable = scope(b"not json", Api::OpenAi, &s).unwrap_err();
        assert_eq!(unreadable.reason, Reason::InvalidBody);
    }

    #[test]
    fn apis_are_told_by_method_and_path() {
        assert_eq!(api("POST", "/v1/chat/completions"), Some(Api::OpenAi));
        assert_eq!(api("POST", "/tenants/acme/v1/responses"), Some(Api::OpenAi));
        assert_eq!(api("POST", "/v1/messages"), Some(Api::Anthropic));
        assert_eq!(api("POST", "/v1/messages/batches"), None);
        assert_eq!(api("GET", "/v1/chat/completions"), None);
        assert_eq!(api("POST", "/v1/embeddings"), None);
    }

    fn scope_of(body: &[u8], api: Api, user: Option<&str>) -> Result<String, PathRefusal> {
        let s = Scope {
            key: &KEY,
            tenant: "acme",
            user,
        };
        scope(body, api, &s).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn tags_are_hmac_sha256_of_purpose_tenant_and_value() {
        // The tags of KEY, as the gateway has always written them (a change re-buckets every
        // tenant's prompt cache and renames every end user at the provider).
        assert_eq!(
            scope_of(br#"{"prompt_cache_key":"mine"}"#, Api::OpenAi, Some("alice")),
            Ok(
                r#"{"prompt_cache_key":"tg-e5bf336b7d8688e8a9e3ba2856821262","safety_identifier":"tg-819c5dc795c15a26236dbe0eb2784994"}"#
                    .into()
            )
        );
        assert_eq!(
            scope_of(b"{}", Api::Anthropic, None),
            Ok(r#"{"metadata":{"user_id":"tg-3fdfda3a4f24b9566fc861c31d9659e6"}}"#.into())
        );
        let mac = hmac_sha256::HMAC::mac(b"cache\0acme\0mine", KEY);
        let hex: String = mac.iter().take(16).map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "e5bf336b7d8688e8a9e3ba2856821262");
    }

    #[test]
    fn members_are_set_in_place_or_appended_every_other_byte_kept() {
        let out = scope_of(
            b"{ \"user\" : \"bob\" ,\n \"x\":[1.50, {\"user\":1}] }",
            Api::OpenAi,
            None,
        )
        .unwrap();
        let nobody = "tg-3fdfda3a4f24b9566fc861c31d9659e6";
        let cache = scoped("{}", Api::OpenAi, "acme", None)["prompt_cache_key"].clone();
        let cache = cache.as_str().unwrap();
        assert_eq!(
            out,
            format!(
                "{{ \"user\" : \"{nobody}\" ,\n \"x\":[1.50, {{\"user\":1}}],\
                 \"prompt_cache_key\":\"{cache}\",\"safety_identifier\":\"{nobody}\" }}"
            )
        );
    }

    #[test]
    fn escaped_spellings_of_the_gateways_keys_are_those_keys() {
        let plain = scoped(
            r#"{"prompt_cache_key":"mine","user":"bob"}"#,
            Api::OpenAi,
            "acme",
            None,
        );
        let escaped = scoped(
            r#"{"prompt\u005fcache_key":"mine","\u0075ser":"bob"}"#,
            Api::OpenAi,
            "acme",
            None,
        );
        assert_eq!(plain, escaped);
        assert_eq!(escaped.len(), 3, "{escaped:?}");
    }

    #[test]
    fn every_key_the_gateway_sets_is_refused_twice_however_spelled() {
        for body in [
            r#"{"prompt_cache_key":"a","prompt\u005fcache_key":"b"}"#,
            r#"{"user":"a","model":"m","user":"b"}"#,
            r#"{"\u0075ser":"a","user":"b"}"#,
            r#"{"safety_identifier":"a","safety_identifier":"b"}"#,
            r#"{"safety_identifier":"a","safety\u005fidentifier":"b"}"#,
            r#"{"prompt_cache_key":1,"prompt_cache_key":"b","user":"x"}"#,
        ] {
            for user in [None, Some("alice")] {
                let refused = scope_of(body.as_bytes(), Api::OpenAi, user).unwrap_err();
                assert_eq!(refused.reason, Reason::InvalidBody, "{body}");
                assert_eq!(
                    refused.detail,
                    "a key the gateway sets appears twice in the body"
                );
            }
        }
        for body in [
            r#"{"metadata":{"user_id":"a","user_id":"b"}}"#,
            r#"{"metadata":{"user_id":"a","user\u005fid":"b"}}"#,
            r#"{"metadata":{},"metadata":{"user_id":"b"}}"#,
        ] {
            let refused = scope_of(body.as_bytes(), Api::Anthropic, None).unwrap_err();
            assert_eq!(refused.reason, Reason::InvalidBody, "{body}");
        }
        // Keys the gateway does not set may repeat (the provider reads them as it likes).
        assert!(scope_of(br#"{"model":"a","model":"b"}"#, Api::OpenAi, None).is_ok());
    }

    #[test]
    fn bodies_are_read_as_a_map_of_values_reads_them() {
        // A body serde_json reads as a map of values gets scoped; any other is refused (sent
        // on, it would reach the provider unscoped): the members this module reads must not
        // widen or narrow that.
        let deep_array = format!(r#"{{"d":{}{}}}"#, "[".repeat(126), "]".repeat(126));
        let deep_object = format!(r#"{{"d":{}1{}}}"#, r#"{"k":"#.repeat(126), "}".repeat(126));
        let bodies: Vec<Vec<u8>> = [
            "[]",
            "\"s\"",
            "1",
            "null",
            "",
            "{}x",
            "{\"a\":1,}",
            "{\"a\":01}",
            r#"{"a":1e400}"#,
            r#"{"a":[1e400]}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"\udc00":1}"#,
            r#"{"prompt_cache_key":"\ud800"}"#,
            r#"{"a":18446744073709551616}"#,
            r#"{"a":{"b":"\u00e9"},"user":null}"#,
            r#"{"a":"\x"}"#,
        ]
        .iter()
        .map(|b| b.as_bytes().to_vec())
        .chain([
            b"{\"a\":\"\xff\"}".to_vec(),
            b"{\"\xc3\xa9\":\"\xc3\xa9\"}".to_vec(),
            deep_array.clone().into_bytes(),
            deep_array
                .replacen('[', "[[", 1)
                .replacen(']', "]]", 1)
                .into_bytes(),
            deep_object.clone().into_bytes(),
            deep_object
                .replacen(':', r#":{"k":"#, 1)
                .replacen('}', "}}", 1)
                .into_bytes(),
        ])
        .collect();
        // serde_json's depth limit: the deepest body it reads, and one level more.
        let depths: Vec<bool> = bodies[bodies.len() - 4..]
            .iter()
            .map(|b| crate::policy::json::from_slice::<Map<String, Value>>(b).is_ok())
            .collect();
        assert_eq!(depths, [true, false, true, false]);
        for body in &bodies {
            let as_map = crate::policy::json::from_slice::<Map<String, Value>>(body).is_ok();
            for api in [Api::OpenAi, Api::Anthropic] {
                let scoped = scope_of(body, api, None);
                assert_eq!(
                    scoped.is_ok(),
                    as_map,
                    "{:?}",
                    String::from_utf8_lossy(body)
                );
                if let Err(refused) = scoped {
                    assert_eq!(refused.reason, Reason::InvalidBody);
                }
            }
        }
    }

    #[test]
    fn a_large_body_is_scoped_in_place() {
        let message = r#"{"role":"user","content":"Summarise the quarterly report."}"#;
        let messages = vec![message; 40_000].join(",");
        let body = format!(r#"{{"model":"gpt-4o","messages":[{messages}],"user":"bob"}}"#);
        assert!(body.len() > 2 << 20);
        let out = scope_of(body.as_bytes(), Api::OpenAi, Some("alice")).unwrap();
        let alice = "tg-819c5dc795c15a26236dbe0eb2784994";
        let head = body.strip_suffix(r#""bob"}"#).unwrap();
        let cache = scoped("{}", Api::OpenAi, "acme", None)["prompt_cache_key"].clone();
        assert_eq!(
            out,
            format!(
                r#"{head}"{alice}","prompt_cache_key":"{}","safety_identifier":"{alice}"}}"#,
                cache.as_str().unwrap()
            )
        );
    }
}
