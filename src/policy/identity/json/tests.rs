use super::*;
use serde_json::json;
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn read(text: &str) -> Option<Value> {
    unique_object(text.as_bytes()).map(Value::Object)
}

#[test]
fn objects_read_as_serde_json_reads_them() {
    let text = r#"{"a":1,"b":-2,"c":1.5,"d":"x\n","e":[true,null,{"f":[]}],"g":{}}"#;
    let expected: Value = serde_json::from_str(text).unwrap();
    assert_eq!(read(text), Some(expected));
    assert_eq!(read(" { } "), Some(json!({})));
}

#[test]
fn repeated_member_names_are_refused_at_any_depth() {
    for text in [
        r#"{"a":1,"a":1}"#,
        r#"{"a":1,"b":{"c":2,"c":3}}"#,
        r#"{"a":[[{"b":1,"b":2}]]}"#,
        r#"{"a":1,"\u0061":2}"#,
    ] {
        assert_eq!(read(text), None, "{text}");
    }
}

#[test]
fn anything_but_one_json_object_is_refused() {
    for text in [
        "",
        "[]",
        "1",
        "\"a\"",
        "{",
        "{} {}",
        "{\"a\":1,}",
        "{'a':1}",
    ] {
        assert_eq!(read(text), None, "{text}");
    }
    // Nesting is bounded (serde_json's limit of 128): refused, not a stack overflow.
    let deep = format!("{}1{}", "{\"a\":".repeat(200), "}".repeat(200));
    assert_eq!(read(&deep), None);
    let fine = format!("{}1{}", "{\"a\":".repeat(100), "}".repeat(100));
    assert!(read(&fine).is_some());
}
