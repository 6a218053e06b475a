//! Setting one member of a JSON request body in place: every other byte is kept (key order,
//! number formatting, whitespace), so what the upstream receives differs from what the client
//! sent only where the filter meant it to.
//!
//! Keys are compared as JSON decodes them (`"user"` and `"\u0075ser"` are one key), and a key
//! the filter sets may not appear twice on its level: providers' parsers disagree on which
//! duplicate wins, so such a body is refused rather than guessed about.

/// Why a member could not be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditError {
    /// The body (or a level on the path) is not a JSON object, or a level on the path holds
    /// something else than an object or `null`.
    NotAnObject,
    /// A key on the path appears more than once on its level.
    DuplicateKey,
}

/// The body with the member at `path` (object keys, outermost first) set to `value` (JSON
/// text): replaced where it exists, inserted (with any missing levels) where it does not. The
/// body must be valid JSON; `value` is inserted as given.
pub fn set(body: &[u8], path: &[&str], value: &[u8]) -> Result<Vec<u8>, EditError> {
    set_in(body, skip_ws(body, 0), path, value)
}

/// The body with several members of its outermost object set (distinct keys, each to its JSON
/// text) in one pass: the bytes [`set`] gives when called for each key in turn, so replaced
/// where they exist, the others inserted after the last member in the order given. The body
/// must be valid JSON.
pub fn set_members(body: &[u8], members: &[(&str, &[u8])]) -> Result<Vec<u8>, EditError> {
    let object = object_members(body, skip_ws(body, 0)).ok_or(EditError::NotAnObject)?;
    let mut found = vec![false; members.len()];
    let added: usize = members
        .iter()
        .map(|(k, v)| k.len().saturating_add(v.len()))
        .sum();
    let mut out = Vec::with_capacity(body.len().saturating_add(added).saturating_add(64));
    let mut at = 0;
    for existing in &object.members {
        let Some((seen, (_, value))) = found
            .iter_mut()
            .zip(members)
            .find(|(_, (key, _))| key_is(body, existing.key, key))
        else {
            continue;
        };
        if std::mem::replace(seen, true) {
            return Err(EditError::DuplicateKey);
        }
        let (start, end) = existing.value;
        out.extend_from_slice(body.get(at..start).ok_or(EditError::NotAnObject)?);
        out.extend_from_slice(value);
        at = end;
    }
    let (insert_at, mut sep): (usize, &[u8]) = match object.members.last() {
        Some(last) => (last.value.1, b","),
        None => (object.open.saturating_add(1), b""),
    };
    out.extend_from_slice(body.get(at..insert_at).ok_or(EditError::NotAnObject)?);
    for ((key, value), _) in members.iter().zip(&found).filter(|(_, seen)| !**seen) {
        out.extend_from_slice(sep);
        out.extend_from_slice(&member(key, value));
        sep = b",";
    }
    out.extend_from_slice(body.get(insert_at..).ok_or(EditError::NotAnObject)?);
    Ok(out)
}

/// `value` inside objects for the keys of `path`: `{"a":{"b":value}}` for `["a", "b"]`.
fn nested_value(path: &[&str], value: &[u8]) -> Vec<u8> {
    let mut out = value.to_vec();
    for key in path.iter().rev() {
        out = [b"{", member(key, &out).as_slice(), b"}"].concat();
    }
    out
}

fn member(key: &str, value: &[u8]) -> Vec<u8> {
    let mut member = serde_json::to_vec(key).unwrap_or_default();
    member.push(b':');
    member.extend_from_slice(value);
    member
}

fn set_in(body: &[u8], open: usize, path: &[&str], value: &[u8]) -> Result<Vec<u8>, EditError> {
    let Some((first, rest)) = path.split_first() else {
        return Err(EditError::NotAnObject);
    };
    let object = object_members(body, open).ok_or(EditError::NotAnObject)?;
    let mut found = object.members.iter().filter(|m| key_is(body, m.key, first));
    let (Some(existing), None) = (found.next(), found.next()) else {
        if object.members.iter().any(|m| key_is(body, m.key, first)) {
            return Err(EditError::DuplicateKey);
        }
        return Ok(object.insert(body, &member(first, &nested_value(rest, value))));
    };
    if rest.is_empty() {
        return splice(body, existing.value, value).ok_or(EditError::NotAnObject);
    }
    match body.get(existing.value.0) {
        Some(b'{') => set_in(body, existing.value.0, rest, value),
        Some(b'n') => {
            splice(body, existing.value, &nested_value(rest, value)).ok_or(EditError::NotAnObject)
        }
        _ => Err(EditError::NotAnObject),
    }
}

/// Whether the raw key at `span` (between its quotes) decodes to `name`.
fn key_is(body: &[u8], (start, end): (usize, usize), name: &str) -> bool {
    let Some(raw) = body.get(start..end) else {
        return false;
    };
    if !raw.contains(&b'\\') {
        return raw == name.as_bytes();
    }
    let quoted = body
        .get(start.saturating_sub(1)..end.saturating_add(1))
        .unwrap_or_default();
    crate::policy::json::from_slice::<String>(quoted).is_ok_and(|key| key == name)
}

/// Byte span `[start, end)` of a key (without quotes) and of its value.
#[derive(Clone, Copy)]
struct Member {
    key: (usize, usize),
    value: (usize, usize),
}

struct Object {
    open: usize,
    members: Vec<Member>,
}

impl Object {
    /// The body with `member` added after the last member (or first, when empty).
    fn insert(&self, body: &[u8], member: &[u8]) -> Vec<u8> {
        let (at, sep): (usize, &[u8]) = match self.members.last() {
            Some(last) => (last.value.1, b","),
            None => (self.open.saturating_add(1), b""),
        };
        let (head, tail) = body.split_at_checked(at).unwrap_or((body, &[]));
        [head, sep, member, tail].concat()
    }
}

fn splice(body: &[u8], (start, end): (usize, usize), with: &[u8]) -> Option<Vec<u8>> {
    Some([body.get(..start)?, with, body.get(end..)?].concat())
}

fn skip_ws(body: &[u8], mut i: usize) -> usize {
    while body.get(i).is_some_and(u8::is_ascii_whitespace) {
        i = i.saturating_add(1);
    }
    i
}

/// The members of the object opening at `open` (input already validated as JSON).
fn object_members(body: &[u8], open: usize) -> Option<Object> {
    if body.get(open) != Some(&b'{') {
        return None;
    }
    let mut members = Vec::new();
    let mut i = skip_ws(body, open.saturating_add(1));
    if body.get(i) == Some(&b'}') {
        return Some(Object { open, members });
    }
    loop {
        let key_end = skip_string(body, i)?;
        let colon = skip_ws(body, key_end);
        (body.get(colon) == Some(&b':')).then_some(())?;
        let value_start = skip_ws(body, colon.saturating_add(1));
        let value_end = skip_value(body, value_start)?;
        members.push(Member {
            key: (i.saturating_add(1), key_end.saturating_sub(1)),
            value: (value_start, value_end),
        });
        i = skip_ws(body, value_end);
        match body.get(i) {
            Some(b',') => i = skip_ws(body, i.saturating_add(1)),
            Some(b'}') => return Some(Object { open, members }),
            _ => return None,
        }
    }
}

/// Index just past the string starting at `i`.
fn skip_string(body: &[u8], i: usize) -> Option<usize> {
    (body.get(i) == Some(&b'"')).then_some(())?;
    let mut escaped = false;
    for (at, &b) in body.iter().enumerate().skip(i.saturating_add(1)) {
        match (escaped, b) {
            (true, _) => escaped = false,
            (false, b'\\') => escaped = true,
            (false, b'"') => return Some(at.saturating_add(1)),
            _ => {}
        }
    }
    None
}

/// Index just past the value starting at `i`.
fn skip_value(body: &[u8], i: usize) -> Option<usize> {
    match body.get(i)? {
        b'"' => skip_string(body, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut at = i;
            while let Some(&b) = body.get(at) {
                match b {
                    b'"' => {
                        at = skip_string(body, at)?;
                        continue;
                    }
                    b'{' | b'[' => depth = depth.saturating_add(1),
                    b'}' | b']' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            return Some(at.saturating_add(1));
                        }
                    }
                    _ => {}
                }
                at = at.saturating_add(1);
            }
            None
        }
        _ => {
            let len = body
                .get(i..)?
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']') || b.is_ascii_whitespace())
                .unwrap_or(body.len().saturating_sub(i));
            Some(i.saturating_add(len))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn set_str(body: &str, path: &[&str], value: &str) -> Result<String, EditError> {
        set(body.as_bytes(), path, value.as_bytes()).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn a_missing_member_is_appended_and_every_other_byte_kept() {
        assert_eq!(
            set_str("{ \"b\" : 1.50 ,\"a\":[1, 2] }", &["k"], "\"v\""),
            Ok("{ \"b\" : 1.50 ,\"a\":[1, 2],\"k\":\"v\" }".into())
        );
        assert_eq!(set_str("{}", &["k"], "1"), Ok("{\"k\":1}".into()));
    }

    #[test]
    fn an_existing_member_is_replaced_in_place() {
        assert_eq!(
            set_str(r#"{"k":"old","z":0}"#, &["k"], "\"new\""),
            Ok(r#"{"k":"new","z":0}"#.into())
        );
    }

    #[test]
    fn nested_members_create_missing_levels_and_replace_null() {
        assert_eq!(
            set_str(r#"{"a":1}"#, &["metadata", "user_id"], "\"u\""),
            Ok(r#"{"a":1,"metadata":{"user_id":"u"}}"#.into())
        );
        assert_eq!(
            set_str(r#"{"metadata":null}"#, &["metadata", "user_id"], "\"u\""),
            Ok(r#"{"metadata":{"user_id":"u"}}"#.into())
        );
        assert_eq!(
            set_str(r#"{"metadata":{"x":1}}"#, &["metadata", "user_id"], "\"u\""),
            Ok(r#"{"metadata":{"x":1,"user_id":"u"}}"#.into())
        );
        assert_eq!(
            set_str(r#"{"metadata":"s"}"#, &["metadata", "user_id"], "1"),
            Err(EditError::NotAnObject)
        );
    }

    #[test]
    fn escaped_spellings_of_a_key_are_that_key() {
        assert_eq!(
            set_str(r#"{"\u0075ser":"them"}"#, &["user"], "\"us\""),
            Ok(r#"{"\u0075ser":"us"}"#.into())
        );
    }

    #[test]
    fn a_key_that_appears_twice_is_refused_however_spelled() {
        for body in [
            r#"{"user":"a","user":"b"}"#,
            r#"{"user":"a","\u0075ser":"b"}"#,
        ] {
            assert_eq!(
                set_str(body, &["user"], "\"x\""),
                Err(EditError::DuplicateKey),
                "{body}"
            );
        }
    }

    #[test]
    fn bodies_that_are_not_objects_are_refused() {
        for body in ["[]", "\"s\"", "1", "null"] {
            assert_eq!(
                set_str(body, &["k"], "1"),
                Err(EditError::NotAnObject),
                "{body}"
            );
        }
    }

    fn set_members_str(body: &str, members: &[(&str, &str)]) -> Result<String, EditError> {
        let members: Vec<(&str, &[u8])> = members.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
        set_members(body.as_bytes(), &members).map(|b| String::from_utf8(b).unwrap())
    }

    /// `set` for each member in turn, the way `set_members` must answer.
    fn one_by_one(body: &str, members: &[(&str, &str)]) -> Result<String, EditError> {
        let mut out = body.as_bytes().to_vec();
        for (key, value) in members {
            out = set(&out, &[key], value.as_bytes())?;
        }
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn several_members_are_set_as_one_set_after_another_would() {
        let members = [("k", "\"K\""), ("s", "\"S\""), ("u", "\"U\"")];
        for body in [
            "{}",
            "{ }",
            " {\n}\n",
            r#"{"a":1}"#,
            r#"{"u":"x"}"#,
            r#"{"u":"x","a":[1,{"k":2}]}"#,
            r#"{ "s" : 1.50 , "a":{"u":0} , "k" : null }"#,
            r#"{"k":"old","\u0075":"old","s":{"x":[]}}"#,
            r#"{"a":"}\"k\":","k":[],"b":"{"}"#,
        ] {
            assert_eq!(
                set_members_str(body, &members),
                one_by_one(body, &members),
                "{body}"
            );
        }
        assert_eq!(
            set_members_str(r#"{ "u" : 1, "a" : 2 }"#, &members),
            Ok(r#"{ "u" : "U", "a" : 2,"k":"K","s":"S" }"#.into())
        );
        assert_eq!(set_members_str("{}", &[]), Ok("{}".into()));
    }

    #[test]
    fn any_member_set_twice_in_the_body_is_refused() {
        let members = [("k", "1"), ("s", "2")];
        for body in [
            r#"{"k":1,"k":2}"#,
            r#"{"s":1,"a":0,"\u0073":2}"#,
            r#"{"k":0,"s":1,"s":1}"#,
        ] {
            assert_eq!(
                set_members_str(body, &members),
                Err(EditError::DuplicateKey),
                "{body}"
            );
            assert_eq!(one_by_one(body, &members), Err(EditError::DuplicateKey));
        }
        // A key the call does not set may repeat, as with `set`.
        assert_eq!(
            set_members_str(r#"{"a":1,"a":2}"#, &members),
            one_by_one(r#"{"a":1,"a":2}"#, &members)
        );
    }

    #[test]
    fn several_members_need_an_object() {
        for body in ["[]", "\"s\"", "1", "null", ""] {
            assert_eq!(
                set_members_str(body, &[("k", "1")]),
                Err(EditError::NotAnObject),
                "{body}"
            );
        }
    }

    #[test]
    fn several_members_of_a_large_body_are_set_in_place() {
        let filler = "x".repeat(1 << 20);
        let body = format!(r#"{{"k":"old","big":"{filler}","z":[{filler:?}]}}"#);
        let members = [("k", "\"K\""), ("s", "\"S\"")];
        let out = set_members_str(&body, &members).unwrap();
        assert_eq!(Ok(out.clone()), one_by_one(&body, &members));
        assert!(out.starts_with(r#"{"k":"K","big":"xxx"#));
        assert!(out.ends_with(r#"xx"],"s":"S"}"#));
    }
}
