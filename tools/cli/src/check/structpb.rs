//! A JSON object as the serialized `google.protobuf.Struct` Envoy hands the filter for a
//! policy written as YAML (`"@type": type.googleapis.com/google.protobuf.Struct`): the filter's
//! own decoder (`tenant_guard::policy::structpb`) then reads it as it does in Envoy.

use serde_json::{Map, Value};

/// `Struct { map<string, Value> fields = 1; }`.
pub fn encode_struct(map: &Map<String, Value>) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in map {
        let mut entry = Vec::new();
        field_bytes(&mut entry, 1, key.as_bytes());
        field_bytes(&mut entry, 2, &encode_value(value));
        field_bytes(&mut out, 1, &entry);
    }
    out
}

/// `Value { oneof kind { NullValue null_value = 1; double number_value = 2;
/// string string_value = 3; bool bool_value = 4; Struct struct_value = 5;
/// ListValue list_value = 6; } }`; every JSON number is a double, as in a Struct.
fn encode_value(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    match value {
        Value::Null => {
            varint(&mut out, 1 << 3);
            varint(&mut out, 0);
        }
        Value::Number(n) => {
            varint(&mut out, (2 << 3) | 1);
            out.extend_from_slice(&n.as_f64().unwrap_or_default().to_le_bytes());
        }
        Value::String(s) => field_bytes(&mut out, 3, s.as_bytes()),
        Value::Bool(b) => {
            varint(&mut out, 4 << 3);
            varint(&mut out, u64::from(*b));
        }
        Value::Object(map) => field_bytes(&mut out, 5, &encode_struct(map)),
        Value::Array(items) => {
            // ListValue { repeated Value values = 1; }
            let mut list = Vec::new();
            for item in items {
                field_bytes(&mut list, 1, &encode_value(item));
            }
            field_bytes(&mut out, 6, &list);
        }
    }
    out
}

fn field_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(out, (field << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_filters_decoder_reads_back_what_is_encoded() {
        let doc = json!({"a": [1, 2.5, "x", true, null, {"b": []}], "c": {"d": -3}});
        let bytes = encode_struct(doc.as_object().unwrap());
        let decoded = tenant_guard::policy::structpb::decode(&bytes).unwrap();
        assert_eq!(decoded, doc);
    }
}
