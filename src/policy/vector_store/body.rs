//! What every body rule shares: the requests a body holds, and the keys rules read.
//!
//! Bodies are rewritten only for the operations each kind allows (the shell buffers them up to
//! `max_body_bytes`): a body that is not a JSON object is 400 `invalid_body`; unknown fields are
//! kept (the body is re-encoded, so key order and number formatting may change). The store reads
//! exactly the keys the rules read: duplicate keys are decoded as one (the last) and `\u` escapes
//! decoded, and the body leaves re-encoded; a key that is another spelling of one a rule depends
//! on is 400 `invalid_body`, since lenient decoders (Go's `encoding/json` folds case and `ſ`/`K`)
//! could read it as that key. Spellings are compared with ASCII case folded, `ſ` as `s`, `K` as
//! `k`, and everything but ASCII letters and digits dropped (`Filter`, `fil_ter`, `deleteall`,
//! `Delete-All`, `ID`, `lookupFrom`), for `id`, `ids`, `deleteAll`, `filter`, `namespace`,
//! `points`, `payload`, `payloads`, `metadata`, `vector`, `vectors`, `collection`,
//! `collection_name`, `queries`, `lookup_from`, `with_lookup`, `init_from`, `query`, `prefetch`,
//! `searches`, `batch`, `recommend`, `discover`, `context`, `nearest` (in the body, each request,
//! record, batch, lookup and `query` object) and the tenant `field` in payloads and metadata.

use serde_json::{Map, Value};

use super::{invalid_body, Shape};
use crate::policy::namespace::{quoted, PathRefusal};

pub(super) type Object = Map<String, Value>;

/// Calls `edit` on every request in the body: the body itself or each of its `searches`, and
/// each of their `prefetch` requests, however deep (bounded by the JSON parser's depth limit).
pub(super) fn for_each_request<F>(
    body: &mut Object,
    shape: Shape,
    edit: &mut F,
) -> Result<(), PathRefusal>
where
    F: FnMut(&mut Object) -> Result<(), PathRefusal>,
{
    match shape {
        Shape::Single => visit_request(body, edit),
        Shape::Batch => match body.get_mut("searches") {
            Some(Value::Array(requests)) => requests
                .iter_mut()
                .try_for_each(|r| visit_request(as_request(r, "searches")?, edit)),
            _ => Err(invalid_body("a batch needs a `searches` list")),
        },
    }
}

fn visit_request<F>(request: &mut Object, edit: &mut F) -> Result<(), PathRefusal>
where
    F: FnMut(&mut Object) -> Result<(), PathRefusal>,
{
    check_spellings(request, &RULE_KEYS)?;
    edit(request)?;
    match request.get_mut("prefetch") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(prefetches)) => prefetches
            .iter_mut()
            .try_for_each(|p| visit_request(as_request(p, "prefetch")?, edit)),
        Some(prefetch) => visit_request(as_request(prefetch, "prefetch")?, edit),
    }
}

fn as_request<'a>(value: &'a mut Value, key: &str) -> Result<&'a mut Object, PathRefusal> {
    value
        .as_object_mut()
        .ok_or_else(|| invalid_body(format!("`{key}` must hold objects")))
}

/// The keys that some rule reads, each with its folded spelling.
pub(super) const RULE_KEYS: [(&str, &str); 25] = [
    ("id", "id"),
    ("ids", "ids"),
    ("deleteAll", "deleteall"),
    ("filter", "filter"),
    ("namespace", "namespace"),
    ("points", "points"),
    ("payload", "payload"),
    ("payloads", "payloads"),
    ("metadata", "metadata"),
    ("vector", "vector"),
    ("vectors", "vectors"),
    ("collection", "collection"),
    ("collection_name", "collectionname"),
    ("queries", "queries"),
    ("lookup_from", "lookupfrom"),
    ("with_lookup", "withlookup"),
    ("init_from", "initfrom"),
    ("query", "query"),
    ("prefetch", "prefetch"),
    ("searches", "searches"),
    ("batch", "batch"),
    ("recommend", "recommend"),
    ("discover", "discover"),
    ("context", "context"),
    ("nearest", "nearest"),
];

/// A key as the most lenient JSON decoders would match it against a field name: ASCII letters
/// and digits only, case folded (Unicode's `ſ` and Kelvin sign `K` fold to `s` and `k`, as in
/// Go's `encoding/json`), `_`, `-` and everything else dropped.
pub(super) fn fold_key(key: &str) -> String {
    key.chars()
        .filter_map(|c| match c {
            '\u{17F}' => Some('s'),
            '\u{212A}' => Some('k'),
            c if c.is_ascii_alphanumeric() => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// Refuses (400) a key that is another spelling of one of `keys` (canonical, folded): a rule
/// reads one spelling, a lenient store could read the other.
pub(super) fn check_spellings(object: &Object, keys: &[(&str, &str)]) -> Result<(), PathRefusal> {
    for key in object.keys() {
        let folded = fold_key(key);
        if let Some((canonical, _)) = keys.iter().find(|(_, f)| *f == folded) {
            if key != canonical {
                return Err(invalid_body(format!(
                    "ambiguous key {} (another spelling of `{canonical}`)",
                    quoted(key)
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
