//! YAML documents as JSON values, read the way their consumer reads them.
//!
//! Envoy 1.36-1.40 turns YAML into protobuf through yaml-cpp (`parseYamlNode` in
//! source/common/protobuf/yaml_utility.cc): a plain scalar is a null, a bool (`true`, `yes`,
//! `on`, `y` in any flexible case), an integer (C++ stream rules: `0x` hex, leading-`0` octal),
//! which stays a number only within the int32 range and becomes its decimal text otherwise, or
//! else a string: **a decimal such as `2.5` reaches a Struct as the string `"2.5"`**. Quoted and
//! block scalars are strings. Kubernetes reads its manifests as YAML 1.2 (core schema), where
//! decimals are numbers: [`Rules::Kubernetes`].

use std::collections::HashMap;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A YAML node before its scalars are given types.
#[derive(Clone, Debug)]
pub enum Node {
    Scalar {
        text: String,
        plain: bool,
        tag: Option<String>,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// How scalars are typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rules {
    /// Envoy's YAML loader (bootstraps, listener files, a policy written for a Struct).
    Envoy,
    /// YAML 1.2 core schema (Kubernetes manifests).
    Kubernetes,
}

/// Every document of a YAML stream, as untyped nodes.
pub fn documents(text: &str) -> Result<Vec<Node>, String> {
    let mut builder = Builder::default();
    Parser::new_from_str(text)
        .load(&mut builder, true)
        .map_err(|e| e.to_string())?;
    Ok(builder.documents)
}

impl Node {
    /// The value of `key` in a map node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries) => entries.iter().find_map(|(k, v)| match k {
                Node::Scalar { text, .. } if text == key => Some(v),
                _ => None,
            }),
            _ => None,
        }
    }

    /// The node as JSON, its scalars typed by `rules`.
    pub fn to_json(&self, rules: Rules) -> Value {
        match self {
            Node::Scalar { text, plain, tag } => scalar(text, *plain, tag.as_deref(), rules),
            Node::Seq(items) => Value::Array(items.iter().map(|n| n.to_json(rules)).collect()),
            Node::Map(entries) => {
                let mut map = Map::new();
                for (key, value) in entries {
                    let Node::Scalar { text, tag, .. } = key else {
                        continue;
                    };
                    // Envoy skips keys tagged `!ignore` (used for YAML anchors' holders).
                    if rules == Rules::Envoy && tag.as_deref() == Some("!ignore") {
                        continue;
                    }
                    map.insert(text.clone(), value.to_json(rules));
                }
                Value::Object(map)
            }
        }
    }
}

fn scalar(text: &str, plain: bool, tag: Option<&str>, rules: Rules) -> Value {
    match rules {
        // yaml-cpp tags a quoted or block scalar `!`; Envoy makes only those strings outright.
        Rules::Envoy if (!plain && tag.is_none()) || tag == Some("!") => {
            Value::String(text.to_string())
        }
        Rules::Envoy => envoy_scalar(text),
        Rules::Kubernetes if !plain || tag == Some("tag:yaml.org,2002:str") => {
            Value::String(text.to_string())
        }
        Rules::Kubernetes => core_scalar(text),
    }
}

fn envoy_scalar(text: &str) -> Value {
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Value::Null;
    }
    if let Some(b) = yaml_cpp_bool(text) {
        return Value::Bool(b);
    }
    match cpp_stream_int(text) {
        Some(n) if i32::try_from(n).is_ok() => Value::Number(Number::from(n)),
        Some(n) => Value::String(n.to_string()),
        None => Value::String(text.to_string()),
    }
}

/// yaml-cpp's `convert<bool>`: y/n, yes/no, true/false, on/off, all lower, all upper or
/// capitalised.
fn yaml_cpp_bool(text: &str) -> Option<bool> {
    let flexible = text == text.to_lowercase()
        || text == text.to_uppercase()
        || text.chars().next().is_some_and(char::is_uppercase)
            && text.chars().skip(1).all(|c| !c.is_uppercase());
    if !flexible {
        return None;
    }
    match text.to_lowercase().as_str() {
        "y" | "yes" | "true" | "on" => Some(true),
        "n" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// `std::stringstream >> int64_t` with the base unset (yaml-cpp's `convert<int64_t>`): an
/// optional sign, `0x` hex, a leading `0` octal, else decimal; trailing whitespace allowed.
fn cpp_stream_int(text: &str) -> Option<i64> {
    let body = text.trim_end_matches([' ', '\t', '\n', '\r']);
    let (negative, digits) = match body.as_bytes().first()? {
        b'-' => (true, body.get(1..)?),
        b'+' => (false, body.get(1..)?),
        _ => (false, body),
    };
    let (radix, digits) = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        (16, hex)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, digits.get(1..)?)
    } else {
        (10, digits)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i128::from_str_radix(digits, radix).ok()?;
    i64::try_from(if negative { -magnitude } else { magnitude }).ok()
}

fn core_scalar(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = text.parse::<i64>() {
            return Value::Number(Number::from(n));
        }
    }
    let float_like = unsigned
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit() || b == b'.')
        && unsigned
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
    if float_like {
        if let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(text.to_string())
}

/// Builds nodes from the parser's events, aliases resolved.
#[derive(Default)]
struct Builder {
    documents: Vec<Node>,
    /// Open sequences and maps, innermost last, with their anchor ids.
    stack: Vec<(Node, usize)>,
    /// A map's key waiting for its value, per open map.
    keys: Vec<Option<Node>>,
    anchors: HashMap<usize, Node>,
}

impl Builder {
    fn push(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.documents.push(node),
            Some((Node::Seq(items), _)) => items.push(node),
            Some((Node::Map(entries), _)) => {
                if let Some(slot) = self.keys.last_mut() {
                    match slot.take() {
                        Some(key) => entries.push((key, node)),
                        None => *slot = Some(node),
                    }
                }
            }
            Some((Node::Scalar { .. }, _)) => {}
        }
    }

    fn anchored(&mut self, anchor: usize, node: Node) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        self.push(node);
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, _mark: Marker) {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let tag = tag.map(|t| {
                    if t.handle == "!!" {
                        format!("tag:yaml.org,2002:{}", t.suffix)
                    } else {
                        format!("{}{}", t.handle, t.suffix)
                    }
                });
                let node = Node::Scalar {
                    text,
                    plain: style == TScalarStyle::Plain,
                    tag,
                };
                self.anchored(anchor, node);
            }
            Event::SequenceStart(anchor, _) => self.stack.push((Node::Seq(Vec::new()), anchor)),
            Event::MappingStart(anchor, _) => {
                self.stack.push((Node::Map(Vec::new()), anchor));
                self.keys.push(None);
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((node, anchor)) = self.stack.pop() {
                    if matches!(node, Node::Map(_)) {
                        self.keys.pop();
                    }
                    self.anchored(anchor, node);
                }
            }
            Event::Alias(anchor) => {
                let node = self.anchors.get(&anchor).cloned().unwrap_or(Node::Scalar {
                    text: String::new(),
                    plain: true,
                    tag: None,
                });
                self.push(node);
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envoy(text: &str) -> Value {
        documents(text).unwrap()[0].to_json(Rules::Envoy)
    }

    #[test]
    fn envoy_turns_decimals_and_large_integers_into_strings() {
        assert_eq!(
            envoy("a: 2.5\nb: 1.0\nc: 60\nd: 4294967296\ne: '60'\nf: 0x10\ng: 010\nh: -7"),
            json!({"a": "2.5", "b": "1.0", "c": 60, "d": "4294967296", "e": "60",
                   "f": 16, "g": 8, "h": -7})
        );
    }

    #[test]
    fn envoy_reads_yaml_cpp_bools_and_nulls() {
        assert_eq!(
            envoy("a: yes\nb: Off\nc: TRUE\nd: tRue\ne: ~\nf:\ng: \"null\""),
            json!({"a": true, "b": false, "c": true, "d": "tRue", "e": null, "f": null,
                   "g": "null"})
        );
    }

    #[test]
    fn kubernetes_keeps_decimals_as_numbers() {
        let doc = documents("a: 2.5\nb: 60\nc: yes\nd: '1.5'")
            .unwrap()
            .remove(0);
        assert_eq!(
            doc.to_json(Rules::Kubernetes),
            json!({"a": 2.5, "b": 60, "c": "yes", "d": "1.5"})
        );
    }

    #[test]
    fn aliases_and_several_documents() {
        let docs = documents("a: &x {k: 1}\nb: *x\n---\n- 1\n- [2, 3]\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(
            docs[0].to_json(Rules::Envoy),
            json!({"a": {"k": 1}, "b": {"k": 1}})
        );
        assert_eq!(docs[1].to_json(Rules::Envoy), json!([1, [2, 3]]));
    }
}
