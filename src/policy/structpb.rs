//! `google.protobuf.Struct` in its protobuf wire format, decoded by hand into the JSON value it
//! stands for: a plugin configuration written as YAML (`"@type":
//! type.googleapis.com/google.protobuf.Struct`) reaches the filter as the Struct's serialized
//! bytes, not as JSON.
//!
//! Only the three messages of `struct.proto` are read (`Struct`, `Value`, `ListValue`); no
//! protobuf runtime enters the `.wasm`. The decoder never panics and never recurses deeper than
//! [`MAX_DEPTH`]; errors name the path of the value at fault, as configuration errors do.
//!
//! Numbers in a Struct are doubles: integral ones within ±2^53 become JSON integers, so
//! `limit: 60` reads as the integer the contract wants; others stay floating point; NaN and the
//! infinities (which JSON cannot hold) are refused. A key written twice in one Struct is refused
//! rather than resolved: parsers disagree on which one wins.

use serde_json::{Map, Number, Value};

/// Nesting of Structs and lists a document may have (serde_json's own limit is 128).
pub const MAX_DEPTH: usize = 64;

/// The largest integer a double holds exactly.
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

/// Where a Struct could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructError {
    /// Dotted path of the value at fault (`tenants.acme.plan`, `plans.free.requests[0]`), or
    /// empty for the document itself.
    pub path: String,
    pub message: String,
}

/// Decodes a serialized `google.protobuf.Struct` into a JSON object.
pub fn decode(bytes: &[u8]) -> Result<Value, StructError> {
    let mut path = Path::default();
    decode_struct(bytes, &mut path, 0).map(Value::Object)
}

// === The three messages ===

/// `Struct { map<string, Value> fields = 1; }`: map entries are `{ key = 1; value = 2; }`.
fn decode_struct(
    bytes: &[u8],
    path: &mut Path,
    depth: usize,
) -> Result<Map<String, Value>, StructError> {
    if depth >= MAX_DEPTH {
        return Err(path.error(format!("nested deeper than {MAX_DEPTH} levels")));
    }
    let mut fields = Map::new();
    for field in Fields::new(bytes) {
        match field.map_err(|m| path.error(m))? {
            (1, Wire::Bytes(entry)) => {
                let (key, value) = map_entry(entry, path)?;
                path.push_key(&key);
                if fields.contains_key(&key) {
                    return Err(path.error("written twice"));
                }
                let decoded = match value {
                    Some(value) => decode_value(value, path, depth + 1)?,
                    None => return Err(path.error("value missing")),
                };
                path.pop();
                fields.insert(key, decoded);
            }
            (1, _) => return Err(path.error("Struct field 1 is not a map entry")),
            _ => {} // fields a later struct.proto might add
        }
    }
    Ok(fields)
}

fn map_entry<'a>(entry: &'a [u8], path: &Path) -> Result<(String, Option<&'a [u8]>), StructError> {
    let mut key = String::new();
    let mut value = None;
    for field in Fields::new(entry) {
        match field.map_err(|m| path.error(m))? {
            (1, Wire::Bytes(k)) => {
                key =
                    String::from_utf8(k.to_vec()).map_err(|_| path.error("a key is not UTF-8"))?;
            }
            (2, Wire::Bytes(v)) => value = Some(v),
            (1 | 2, _) => return Err(path.error("malformed map entry")),
            _ => {}
        }
    }
    Ok((key, value))
}

/// `Value { oneof kind { NullValue null_value = 1; double number_value = 2; string
/// string_value = 3; bool bool_value = 4; Struct struct_value = 5; ListValue list_value = 6; } }`
fn decode_value(bytes: &[u8], path: &mut Path, depth: usize) -> Result<Value, StructError> {
    if depth >= MAX_DEPTH {
        return Err(path.error(format!("nested deeper than {MAX_DEPTH} levels")));
    }
    // Protobuf lets the last member of a oneof win; a Value that says two things is refused.
    let mut kind: Option<Value> = None;
    for field in Fields::new(bytes) {
        let value = match field.map_err(|m| path.error(m))? {
            (1, Wire::Varint(_)) => Value::Null,
            (2, Wire::Fixed64(bits)) => number(f64::from_bits(bits), path)?,
            (3, Wire::Bytes(s)) => Value::String(
                String::from_utf8(s.to_vec()).map_err(|_| path.error("not a UTF-8 string"))?,
            ),
            (4, Wire::Varint(b)) => Value::Bool(b != 0),
            (5, Wire::Bytes(s)) => Value::Object(decode_struct(s, path, depth + 1)?),
            (6, Wire::Bytes(l)) => decode_list(l, path, depth + 1)?,
            (1..=6, _) => return Err(path.error("malformed value")),
            _ => continue,
        };
        if kind.is_some() {
            return Err(path.error("a value with two kinds"));
        }
        kind = Some(value);
    }
    kind.ok_or_else(|| path.error("a value without a kind"))
}

/// `ListValue { repeated Value values = 1; }`
fn decode_list(bytes: &[u8], path: &mut Path, depth: usize) -> Result<Value, StructError> {
    if depth >= MAX_DEPTH {
        return Err(path.error(format!("nested deeper than {MAX_DEPTH} levels")));
    }
    let mut values = Vec::new();
    for field in Fields::new(bytes) {
        match field.map_err(|m| path.error(m))? {
            (1, Wire::Bytes(v)) => {
                path.push_index(values.len());
                let value = decode_value(v, path, depth + 1)?;
                path.pop();
                values.push(value);
            }
            (1, _) => return Err(path.error("malformed list")),
            _ => {}
        }
    }
    Ok(Value::Array(values))
}

/// A double as the JSON number it stands for: integral values within ±2^53 as integers.
fn number(n: f64, path: &Path) -> Result<Value, StructError> {
    if !n.is_finite() {
        return Err(path.error("not a finite number"));
    }
    if n.fract() == 0.0 && n.abs() <= MAX_EXACT {
        // Exact: |n| <= 2^53, so the cast neither saturates nor rounds.
        return Ok(Value::Number(Number::from(n as i64)));
    }
    Number::from_f64(n)
        .map(Value::Number)
        .ok_or_else(|| path.error("not a finite number"))
}

/// Turns decimal strings (`"2.5"`, `"1.0"`, `"3e2"`, `".5"`) into numbers at the values
/// `path` names (`*`: every key of an object); anything else is left as it is.
pub fn numbers_at(value: &mut Value, path: &[&str]) {
    let Some((first, rest)) = path.split_first() else {
        if let Value::String(text) = value {
            if let Some(n) = decimal(text) {
                *value = n;
            }
        }
        return;
    };
    let Value::Object(map) = value else { return };
    if *first == "*" {
        for child in map.values_mut() {
            numbers_at(child, rest);
        }
    } else if let Some(child) = map.get_mut(*first) {
        numbers_at(child, rest);
    }
}

/// A decimal number written as text: digits, at most one `.`, an optional exponent.
fn decimal(text: &str) -> Option<Value> {
    let bytes = text.as_bytes();
    let unsigned = bytes
        .strip_prefix(b"-")
        .or_else(|| bytes.strip_prefix(b"+"))
        .unwrap_or(bytes);
    let (mantissa, exponent) = match unsigned.iter().position(|&b| b == b'e' || b == b'E') {
        Some(at) => (unsigned.get(..at)?, Some(unsigned.get(at + 1..)?)),
        None => (unsigned, None),
    };
    let digits = mantissa.iter().filter(|b| b.is_ascii_digit()).count();
    let dots = mantissa.iter().filter(|&&b| b == b'.').count();
    if digits == 0 || dots > 1 || digits + dots != mantissa.len() {
        return None;
    }
    if let Some(exponent) = exponent {
        let digits = exponent
            .strip_prefix(b"-")
            .or_else(|| exponent.strip_prefix(b"+"))
            .unwrap_or(exponent);
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
    }
    number(text.parse().ok()?, &Path::default()).ok()
}

// === Paths for error messages ===

#[derive(Default)]
struct Path {
    /// Lengths of `text` before each pushed segment.
    marks: Vec<usize>,
    text: String,
}

impl Path {
    fn push_key(&mut self, key: &str) {
        self.marks.push(self.text.len());
        if !self.text.is_empty() {
            self.text.push('.');
        }
        self.text.push_str(key);
    }

    fn push_index(&mut self, index: usize) {
        self.marks.push(self.text.len());
        self.text.push_str(&format!("[{index}]"));
    }

    fn pop(&mut self) {
        if let Some(len) = self.marks.pop() {
            self.text.truncate(len);
        }
    }

    fn error(&self, message: impl Into<String>) -> StructError {
        StructError {
            path: self.text.clone(),
            message: message.into(),
        }
    }
}

// === Protobuf wire format ===

enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32,
}

/// The fields of one message; yields one error and stops on malformed input.
struct Fields<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Fields<'a> {
        Fields {
            rest: bytes,
            failed: false,
        }
    }

    fn varint(&mut self) -> Option<u64> {
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.rest.split_first()?;
            self.rest = rest;
            n |= u64::from(byte & 0x7f).checked_shl(shift)?;
            if byte & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }

    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if len > self.rest.len() {
            return None;
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(taken)
    }

    fn field(&mut self) -> Option<(u64, Wire<'a>)> {
        let key = self.varint()?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                let bytes: [u8; 8] = self.take(8)?.try_into().ok()?;
                Wire::Fixed64(u64::from_le_bytes(bytes))
            }
            2 => {
                let len = usize::try_from(self.varint()?).ok()?;
                Wire::Bytes(self.take(len)?)
            }
            5 => self.take(4).map(|_| Wire::Fixed32)?,
            _ => return None, // groups (3, 4) and the unused 6, 7
        };
        match key >> 3 {
            0 => None, // field number 0 does not exist
            number => Some((number, wire)),
        }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Wire<'a>), &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let field = self.field();
        self.failed = field.is_none();
        Some(field.ok_or("not a serialized google.protobuf.Struct"))
    }
}

#[cfg(test)]
mod tests;
