//! The field path at a position of a JSON document (`plans.pro.requests[0].limit`).
//!
//! serde_json reports where in the text an error happened (line and column); reading the text
//! up to there tells which member or element was being read. This names the field at fault
//! without a path-tracking deserializer around every type of the contract.

/// One open container on the way to the position.
enum Frame {
    /// `key` is the member being read; `None` between members.
    Object { key: Option<String> },
    /// `index` is the element being read; `started` once its value has begun.
    Array { index: usize, started: bool },
}

/// The path of the member or element being read at `line`/`column` (1-based line, column in
/// bytes, as serde_json counts them); empty for the document itself or an unknown position.
pub(super) fn path_at(text: &[u8], line: usize, column: usize) -> String {
    match offset(text, line, column) {
        Some(end) => path_before(text.get(..end).unwrap_or(text)),
        None => String::new(),
    }
}

/// Byte offset of `line`/`column`; None for line 0 (no position).
fn offset(text: &[u8], line: usize, column: usize) -> Option<usize> {
    let line_start = match line {
        0 => return None,
        1 => 0,
        _ => {
            text.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .nth(line - 2)?
                .0
                + 1
        }
    };
    Some(line_start.saturating_add(column).min(text.len()))
}

/// The path open at the end of `text`, a prefix of a JSON document.
fn path_before(text: &[u8]) -> String {
    let mut frames: Vec<Frame> = Vec::new();
    // Between `{`/`,` and `:` of an object, a string is a member name.
    let mut expect_key = false;
    let mut i = 0;
    while let Some(&byte) = text.get(i) {
        match byte {
            b'"' => {
                let end = string_end(text, i);
                if expect_key {
                    if let (Some(Frame::Object { key }), Some(end)) = (frames.last_mut(), end) {
                        let raw = text.get(i..end).unwrap_or_default();
                        *key = Some(crate::policy::json::from_slice(raw).unwrap_or_default());
                    }
                } else {
                    start_value(&mut frames);
                }
                i = end.unwrap_or(text.len());
                continue;
            }
            b'{' => {
                start_value(&mut frames);
                frames.push(Frame::Object { key: None });
                expect_key = true;
            }
            b'[' => {
                start_value(&mut frames);
                frames.push(Frame::Array {
                    index: 0,
                    started: false,
                });
                expect_key = false;
            }
            b'}' | b']' => {
                frames.pop();
                expect_key = false;
            }
            b':' => expect_key = false,
            b',' => match frames.last_mut() {
                Some(Frame::Object { key }) => {
                    *key = None;
                    expect_key = true;
                }
                Some(Frame::Array { index, started }) => {
                    *index += 1;
                    *started = false;
                }
                None => {}
            },
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => start_value(&mut frames),
        }
        i += 1;
    }
    render(&frames)
}

/// A value begins: in an array, that is the current element.
fn start_value(frames: &mut [Frame]) {
    if let Some(Frame::Array { started, .. }) = frames.last_mut() {
        *started = true;
    }
}

/// The index just past the string starting at `start` (its closing quote included); None if
/// the text ends inside it.
fn string_end(text: &[u8], start: usize) -> Option<usize> {
    let mut escaped = false;
    for (i, byte) in text.iter().enumerate().skip(start + 1) {
        match byte {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// `a.b[0].c`: members joined by dots, element indexes in brackets.
fn render(frames: &[Frame]) -> String {
    let mut path = String::new();
    for frame in frames {
        match frame {
            Frame::Object { key: Some(key) } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Frame::Array {
                index,
                started: true,
            } => {
                path.push('[');
                path.push_str(&index.to_string());
                path.push(']');
            }
            Frame::Object { key: None } | Frame::Array { started: false, .. } => break,
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn at_end(text: &str) -> String {
        path_before(text.as_bytes())
    }

    #[test]
    fn members_and_elements_make_the_path() {
        assert_eq!(
            at_end(r#"{"plans": {"pro": {"requests": [{"limit": "x""#),
            "plans.pro.requests[0].limit"
        );
        assert_eq!(at_end(r#"{"a": [1, 2, {"b": true"#), "a[2].b");
        assert_eq!(at_end(r#"{"a": [1, 2"#), "a[1]");
        assert_eq!(at_end(r#"{"a": [1, "#), "a");
        assert_eq!(at_end(r#"{"a": {"x": 1}, "b""#), "b");
    }

    #[test]
    fn a_closed_object_leaves_its_member_open() {
        // A missing field is reported just past the object's `}`.
        assert_eq!(
            at_end(r#"{"providers": {"corp": {"jwks": {}}"#),
            "providers.corp"
        );
    }

    #[test]
    fn between_members_the_path_stops_at_the_object() {
        assert_eq!(at_end(r#"{"a": {"b": 1, "#), "a");
        assert_eq!(at_end("{"), "");
        assert_eq!(at_end(""), "");
    }

    #[test]
    fn strings_hide_structure_and_keys_are_unescaped() {
        assert_eq!(at_end(r#"{"a": "{[,\"", "k\"\u0041": 1"#), "k\"A");
        assert_eq!(at_end(r#"{"a": "unterminated, {"#), "a");
    }

    #[test]
    fn positions_are_lines_and_byte_columns() {
        let text = b"{\n  \"a\": {\n    \"b\": 1\n  }\n}";
        assert_eq!(path_at(text, 3, 10), "a.b");
        assert_eq!(path_at(text, 2, 3), "");
        assert_eq!(path_at(text, 0, 0), "");
        assert_eq!(path_at(text, 99, 0), "");
        assert_eq!(path_at(text, 1, 999), "");
    }
}
