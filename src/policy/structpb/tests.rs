use super::*;
use crate::policy::config::Config;
use serde_json::json;
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

// === A test-only encoder: JSON → the bytes Envoy hands the filter ===

fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(out, (field << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn encode_struct(map: &Map<String, Value>) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in map {
        let mut entry = Vec::new();
        bytes_field(&mut entry, 1, key.as_bytes());
        bytes_field(&mut entry, 2, &encode_value(value));
        bytes_field(&mut out, 1, &entry);
    }
    out
}

fn encode_value(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    match value {
        Value::Null => out.extend_from_slice(&[0x08, 0x00]),
        Value::Number(n) => {
            out.push(0x11);
            out.extend_from_slice(&n.as_f64().unwrap().to_le_bytes());
        }
        Value::String(s) => bytes_field(&mut out, 3, s.as_bytes()),
        Value::Bool(b) => out.extend_from_slice(&[0x20, u8::from(*b)]),
        Value::Object(map) => bytes_field(&mut out, 5, &encode_struct(map)),
        Value::Array(items) => {
            let mut list = Vec::new();
            for item in items {
                bytes_field(&mut list, 1, &encode_value(item));
            }
            bytes_field(&mut out, 6, &list);
        }
    }
    out
}

fn encode(doc: &Value) -> Vec<u8> {
    encode_struct(doc.as_object().unwrap())
}

fn double(n: f64) -> Vec<u8> {
    let mut value = vec![0x11];
    value.extend_from_slice(&n.to_le_bytes());
    value
}

/// A Struct with one key holding a raw serialized Value.
fn one(key: &str, value: &[u8]) -> Vec<u8> {
    let mut entry = Vec::new();
    bytes_field(&mut entry, 1, key.as_bytes());
    bytes_field(&mut entry, 2, value);
    let mut out = Vec::new();
    bytes_field(&mut out, 1, &entry);
    out
}

fn example() -> Value {
    json!({
        "providers": {"corp-idp": {"issuer": "https://idp.example.com",
            "audiences": ["genai-gateway"],
            "jwks": {"keys": [{"kty": "oct", "kid": "k1",
                               "k": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}]}}},
        "identity": {"tenant_claim": "tenant_id", "user_claim": "sub", "clock_skew_s": 60,
                     "strip_token": false},
        "tenants": {"acme": {"status": "active", "providers": ["corp-idp"], "plan": "pro"}},
        "plans": {"pro": {"requests": [{"limit": 600, "window_s": 60}],
                          "monthly_budget_usd": 2.5}},
        "bypass_paths": ["/healthz"]
    })
}

// === Decoding ===

#[test]
fn a_struct_decodes_to_the_document_it_encodes() {
    assert_eq!(decode(&encode(&example())).unwrap(), example());
    let odd = json!({"nothing": null, "yes": true, "no": false, "empty": {}, "list": [],
                     "mixed": [1, "two", [3], {"four": 4}], "": ""});
    assert_eq!(decode(&encode(&odd)).unwrap(), odd);
}

#[test]
fn the_bytes_envoy_was_seen_handing_over_decode() {
    // The beginning seen on Envoy 1.40 (`tenants: {}`): an entry of 13 bytes, key "tenants".
    let doc = json!({"tenants": {}});
    let bytes = encode(&doc);
    assert!(bytes.starts_with(b"\n\r\n\x07tenants"), "{bytes:?}");
    assert_eq!(decode(&bytes).unwrap(), doc);
}

#[test]
fn integral_doubles_become_integers_and_others_stay_floating_point() {
    let cases = [
        (60.0, json!(60)),
        (-3.0, json!(-3)),
        (-0.0, json!(0)),
        (9_007_199_254_740_992.0, json!(9_007_199_254_740_992_i64)),
        (2.5, json!(2.5)),
        (1e300, json!(1e300)),
        (18_014_398_509_481_984.0, json!(18_014_398_509_481_984.0)),
    ];
    for (n, expected) in cases {
        let decoded = decode(&one("n", &double(n))).unwrap();
        assert_eq!(decoded["n"], expected, "{n}");
        assert_eq!(decoded["n"].is_f64(), expected.is_f64(), "{n}");
    }
    assert!(decode(&one("n", &double(60.0))).unwrap()["n"].is_u64());
}

#[test]
fn non_finite_numbers_are_refused_with_their_path() {
    for n in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let err = decode(&one("plans", &{
            let mut v = Vec::new();
            bytes_field(&mut v, 5, &one("limit", &double(n)));
            v
        }))
        .unwrap_err();
        assert_eq!(err.path, "plans.limit");
        assert_eq!(err.message, "not a finite number");
    }
}

#[test]
fn strings_must_be_utf8() {
    let mut value = Vec::new();
    bytes_field(&mut value, 3, b"\xff\xfe");
    let mut list = Vec::new();
    bytes_field(&mut list, 1, &value);
    let mut outer = Vec::new();
    bytes_field(&mut outer, 6, &list);
    let err = decode(&one("bypass_paths", &outer)).unwrap_err();
    assert_eq!(err.path, "bypass_paths[0]");
    assert_eq!(err.message, "not a UTF-8 string");
}

#[test]
fn a_key_written_twice_is_refused() {
    let mut bytes = one("plan", &encode_value(&json!("free")));
    bytes.extend(one("plan", &encode_value(&json!("pro"))));
    let err = decode(&bytes).unwrap_err();
    assert_eq!(
        (err.path.as_str(), err.message.as_str()),
        ("plan", "written twice")
    );
}

#[test]
fn a_value_must_say_exactly_one_thing() {
    let err = decode(&one("a", &[])).unwrap_err();
    assert_eq!(
        (err.path.as_str(), err.message.as_str()),
        ("a", "a value without a kind")
    );
    let mut two = encode_value(&json!("x"));
    two.extend(encode_value(&json!(true)));
    assert_eq!(
        decode(&one("a", &two)).unwrap_err().message,
        "a value with two kinds"
    );
}

#[test]
fn wrong_wire_types_are_refused() {
    // number_value as a varint, string_value as a fixed64
    assert!(decode(&one("a", &[0x10, 0x01])).is_err());
    assert!(decode(&one("a", &[0x19, 0, 0, 0, 0, 0, 0, 0, 0])).is_err());
    // a Struct whose field 1 is a varint
    assert!(decode(&[0x08, 0x01]).is_err());
}

#[test]
fn unknown_fields_are_skipped_as_protobuf_does() {
    let mut bytes = encode(&json!({"a": 1}));
    bytes.extend_from_slice(&[0x10, 0x05]); // field 2, varint
    bytes.extend_from_slice(&[0x1d, 1, 2, 3, 4]); // field 3, fixed32
    assert_eq!(decode(&bytes).unwrap(), json!({"a": 1}));
}

#[test]
fn deep_nesting_is_refused_without_exhausting_the_stack() {
    for wrapper in [5u64, 6] {
        let mut value = encode_value(&json!(1));
        for _ in 0..1_000 {
            let mut inner = Vec::new();
            if wrapper == 5 {
                bytes_field(&mut inner, 1, &{
                    let mut entry = Vec::new();
                    bytes_field(&mut entry, 1, b"k");
                    bytes_field(&mut entry, 2, &value);
                    entry
                });
            } else {
                bytes_field(&mut inner, 1, &value);
            }
            value = Vec::new();
            bytes_field(&mut value, wrapper, &inner);
        }
        let err = decode(&one("deep", &value)).unwrap_err();
        assert!(err.message.contains("nested deeper than"), "{err:?}");
    }
    // Within the limit it decodes.
    let mut doc = json!(1);
    for _ in 0..(MAX_DEPTH / 2 - 2) {
        doc = json!([doc]);
    }
    assert!(decode(&encode(&json!({ "d": doc }))).is_ok());
}

#[test]
fn every_truncation_of_a_document_is_an_error_or_a_document_never_a_panic() {
    let bytes = encode(&example());
    for end in 0..bytes.len() {
        let _ = decode(bytes.get(..end).unwrap());
    }
}

#[test]
fn hostile_bytes_never_panic() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let template = encode(&example());
    for round in 0..5_000 {
        let mut bytes = if round % 2 == 0 {
            template.clone()
        } else {
            (0..(next() % 64)).map(|_| next() as u8).collect()
        };
        for _ in 0..(next() % 4 + 1) {
            if !bytes.is_empty() {
                let at = (next() as usize) % bytes.len();
                bytes[at] = next() as u8;
            }
        }
        let _ = decode(&bytes);
        if round % 10 == 0 {
            let _ = Config::parse(&bytes);
        }
    }
    // Lengths far beyond the input, a 10-byte varint, field number 0, groups.
    for bytes in [
        &b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"[..],
        b"\x0a\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
        b"\x02\x00",
        b"\x0b\x0c",
        b"\x0a",
    ] {
        assert!(decode(bytes).is_err(), "{bytes:?}");
    }
}

// === As a plugin configuration ===

#[test]
fn the_struct_form_loads_the_same_policy_as_the_json_form() {
    let from_json = Config::parse(example().to_string().as_bytes()).unwrap();
    let from_struct = Config::parse(&encode(&example())).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        from_struct.tenants.listed_ids(),
        from_json.tenants.listed_ids()
    );
    assert_eq!(from_struct.bypass_paths, from_json.bypass_paths);
    assert_eq!(from_struct.strip_token, from_json.strip_token);
}

#[test]
fn token_types_name_no_typ_with_the_empty_string_in_both_forms() {
    let mut doc = example();
    doc["providers"]["corp-idp"]["token_types"] = json!(["", "at+jwt"]);
    let from_struct = Config::parse(&encode(&doc)).unwrap_or_else(|e| panic!("{e}"));
    let from_json = Config::parse(doc.to_string().as_bytes()).unwrap();
    for config in [from_struct, from_json] {
        let types = &config.providers[0].token_types;
        assert!(types.accepts(None));
        assert!(types.accepts(Some("application/at+jwt")));
        assert!(!types.accepts(Some("JWT")));
    }
}

#[test]
fn struct_errors_name_the_field_path() {
    let mut doc = example();
    doc["tenants"]["acme"]["plan"] = json!("gold");
    let err = Config::parse(&encode(&doc)).err().unwrap();
    assert_eq!(err.path, "tenants.acme.plan");
    assert!(err.message.contains("gold"), "{err}");

    let mut doc = example();
    doc["plans"]["pro"]["requests"][0]["limit"] = json!(60.5);
    let err = Config::parse(&encode(&doc)).err().unwrap();
    assert_eq!(err.path, "plans.pro.requests[0].limit");

    let mut doc = example();
    doc["identity"]["colour"] = json!("blue");
    let err = Config::parse(&encode(&doc)).err().unwrap();
    assert_eq!(err.path, "identity.colour");
}

#[test]
fn the_identity_of_a_struct_does_not_depend_on_its_map_order() {
    let doc = example();
    let sorted = encode(&doc);
    // The same map entries, top level reversed (Envoy's map order is not fixed).
    let mut reversed = Vec::new();
    for (key, value) in doc.as_object().unwrap().iter().rev() {
        reversed.extend(one(key, &encode_value(value)));
    }
    assert_ne!(sorted, reversed);
    let a = Config::parse(&sorted).unwrap_or_else(|e| panic!("{e}"));
    let b = Config::parse(&reversed).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.isolation.key, b.isolation.key);
    // The audit chain names the configuration by this hash: one name per policy, every worker.
    assert_eq!(a.document_sha256, b.document_sha256);
    let json = doc.to_string();
    let from_json = Config::parse(json.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        from_json.document_sha256,
        hmac_sha256::Hash::hash(json.as_bytes())
    );
}

#[test]
fn broken_json_still_reports_the_json_error() {
    let err = Config::parse(b"{\"providers\": {").err().unwrap();
    assert!(err.message.contains("EOF"), "{err}");
    let err = Config::parse(b"  {\"providers\": 12,").err().unwrap();
    assert_eq!(err.path, "providers", "{err}");
}

#[test]
fn bytes_that_are_neither_form_say_so() {
    let err = Config::parse(b"\xff\xff\xff").err().unwrap();
    assert_eq!(err.path, "configuration");
    assert!(
        err.message.starts_with("neither JSON (expected value")
            && err
                .message
                .contains("nor a serialized google.protobuf.Struct (not a serialized"),
        "{err}"
    );
    let err = Config::parse(b"not json").err().unwrap();
    assert_eq!(err.path, "configuration");
    assert!(
        err.message.starts_with("neither JSON (expected ident"),
        "{err}"
    );
}

#[test]
fn an_empty_configuration_asks_for_its_providers() {
    let err = Config::parse(b"").err().unwrap();
    assert!(err.message.contains("providers"), "{err}");
}

// === Envoy's YAML loader and decimals ===

#[test]
fn decimal_strings_become_numbers_only_where_asked() {
    let mut doc = json!({
        "plans": {"free": {"monthly_budget_usd": "1.0"}, "pro": {"monthly_budget_usd": "2.5"},
                  "odd": {"monthly_budget_usd": "lots"}},
        "pricing": {"models": {"m": {"input_per_million": ".15", "output_per_million": "3e2"}}},
        "tenants": {"acme": {"plan": "1.5"}}
    });
    numbers_at(&mut doc, &["plans", "*", "monthly_budget_usd"]);
    numbers_at(&mut doc, &["pricing", "models", "*", "*"]);
    numbers_at(&mut doc, &["missing", "*", "x"]);
    assert_eq!(doc["plans"]["free"]["monthly_budget_usd"], json!(1));
    assert_eq!(doc["plans"]["pro"]["monthly_budget_usd"], json!(2.5));
    assert_eq!(doc["plans"]["odd"]["monthly_budget_usd"], json!("lots"));
    assert_eq!(
        doc["pricing"]["models"]["m"]["input_per_million"],
        json!(0.15)
    );
    assert_eq!(
        doc["pricing"]["models"]["m"]["output_per_million"],
        json!(300)
    );
    // Not a path asked for: a plan named "1.5" stays a name.
    assert_eq!(doc["tenants"]["acme"]["plan"], json!("1.5"));
}

#[test]
fn only_plain_decimals_count_as_numbers() {
    for yes in ["1", "1.0", "-2.5", "+3", ".5", "5.", "1e3", "1.5E-2"] {
        assert!(decimal(yes).is_some(), "{yes}");
    }
    for no in [
        "", ".", "-", "1.2.3", "1e", "e5", "inf", "NaN", "infinity", "0x10", "1_000", "1 ", "1e400",
    ] {
        assert!(decimal(no).is_none(), "{no}");
    }
}

#[test]
fn prices_and_budgets_written_as_yaml_load() {
    // What Envoy hands over for `monthly_budget_usd: 1.0` and `input_per_million: 2.5`.
    let mut doc = example();
    doc["plans"]["pro"]["monthly_budget_usd"] = json!("1.0");
    doc["pricing"] = json!({"models": {"gpt-4o": {"input_per_million": "2.5",
                                                   "output_per_million": "10.0"}},
                            "default": {"input_per_million": "1.0", "output_per_million": "3"}});
    let config = Config::parse(&encode(&doc)).unwrap_or_else(|e| panic!("{e}"));
    let json_form = {
        let mut doc = example();
        doc["plans"]["pro"]["monthly_budget_usd"] = json!(1.0);
        doc["pricing"] = json!({"models": {"gpt-4o": {"input_per_million": 2.5,
                                                       "output_per_million": 10.0}},
                                "default": {"input_per_million": 1.0, "output_per_million": 3}});
        Config::parse(doc.to_string().as_bytes()).unwrap()
    };
    assert_eq!(config.pricing, json_form.pricing);
    // The lease's low-water mark is a fraction too.
    let mut doc = example();
    doc["global_rate_limit"] = json!({"domain": "tg", "cluster": "rls", "lease": {
        "window_s": 60, "low_water": "0.25"}});
    let config = Config::parse(&encode(&doc)).unwrap_or_else(|e| panic!("{e}"));
    let lease = config.global_rate_limit.and_then(|g| g.lease).unwrap();
    assert_eq!(lease.low_water_permille, 250);
    // Elsewhere a decimal string is still a type error, with its path and no position.
    let mut doc = example();
    doc["plans"]["pro"]["requests"][0]["limit"] = json!("60.0");
    let err = Config::parse(&encode(&doc)).err().unwrap();
    assert_eq!(err.path, "plans.pro.requests[0].limit");
    assert!(!err.message.contains(" at line "), "{err}");
}

#[test]
fn a_struct_is_read_whatever_byte_its_first_length_is() {
    // The first entry's length byte can be anything: `{`, a digit, `"`, `[`... (seen on Envoy:
    // a length of 52, the digit `4`, made the JSON reader see the number 4).
    let mut seen = std::collections::BTreeSet::new();
    for pad in 0..200 {
        let mut doc = example();
        doc["bypass_paths"] = json!([format!("/{}", "a".repeat(pad))]);
        let bytes = encode(&doc);
        seen.insert(bytes[1]);
        let config = Config::parse(&bytes).unwrap_or_else(|e| panic!("pad {pad}: {e}"));
        assert!(config
            .bypass_paths
            .contains(&format!("/{}", "a".repeat(pad))));
    }
    for byte in [b'{', b'[', b'"', b'4', b'-', b't', b'n', b' '] {
        assert!(seen.contains(&byte), "{}", byte as char);
    }
}
