//! **`pinecone`** (data plane, namespace per tenant). `POST /query`, `/vectors/upsert`,
//! `/vectors/update`, `/vectors/delete`: the body's `namespace` is set to the tenant's when
//! absent, `null` or `""`, kept when equal, refused (403 `cross_tenant_namespace`) otherwise; a
//! non-string is 400 `invalid_body`, and so are case variants of the key (`Namespace`), which
//! some JSON decoders also accept. `GET /vectors/fetch` and `/vectors/list`: the same rule on the
//! `namespace` query parameter, which is then set to the tenant's (other parameters kept).
//! `POST /records/namespaces/{ns}/upsert|search` and `GET|DELETE /namespaces/{ns}`: only the
//! tenant's own `{ns}` (else 403). Refused: `/describe_index_stats` (it reveals every
//! namespace), namespace listing, legacy `queries`, everything else.

use serde_json::Value;

use super::body::{fold_key, Object};
use super::{
    check_value_template, cross_tenant, invalid_body, not_allowed, BodyEdit, RawVectorStore,
    Request, Rule, Shape, VectorRoute,
};
use crate::policy::config_error::ConfigError;
use crate::policy::denial::Reason;
use crate::policy::namespace::{hex, is_unreserved, push_escape, quoted, PathRefusal};

const DEFAULT_NAMESPACE: &str = "{namespace}";

pub(super) fn compile_pinecone(path: &str, raw: &RawVectorStore) -> Result<Rule, ConfigError> {
    let namespace = raw.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
    check_value_template(&format!("{path}.namespace"), namespace)?;
    Ok(Rule::Pinecone {
        namespace: namespace.to_string(),
    })
}

pub(super) fn pinecone(request: &Request<'_>, own: &str) -> Result<VectorRoute, PathRefusal> {
    match (request.method, request.segments.as_slice()) {
        ("POST", ["query"]) | ("POST", ["vectors", "upsert" | "update" | "delete"]) => {
            scan_query(request.query, own)?;
            let edit = BodyEdit::SetNamespace {
                namespace: own.to_string(),
            };
            Ok(request.body(request.unchanged(), edit, Shape::Single))
        }
        ("GET", ["vectors", "fetch" | "list"]) => {
            let mut query = scan_query(request.query, own)?.join("&");
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str("namespace=");
            for b in own.bytes() {
                if is_unreserved(b) {
                    query.push(char::from(b));
                } else {
                    push_escape(&mut query, b);
                }
            }
            Ok(VectorRoute::Forward {
                path: format!("{}{}?{query}", request.prefix, request.rest),
            })
        }
        ("POST", ["records", "namespaces", namespace, "upsert" | "search"])
        | ("GET" | "DELETE", ["namespaces", namespace]) => {
            let named = percent_decode(namespace, false)
                .ok_or_else(|| PathRefusal::new(Reason::InvalidPath, "namespace is not UTF-8"))?;
            if named != own {
                return Err(cross_tenant("namespace", &named));
            }
            scan_query(request.query, own)?;
            Ok(VectorRoute::Forward {
                path: request.unchanged(),
            })
        }
        (_, ["describe_index_stats"]) => Err(not_allowed(
            "describe_index_stats (it reveals every namespace)",
        )),
        _ => Err(not_allowed(&format!(
            "pinecone operation {} {}",
            request.method,
            quoted(request.rest)
        ))),
    }
}

/// Checks every `namespace` query parameter (absent, empty or the tenant's) and returns the
/// other parameters, verbatim.
fn scan_query<'a>(query: Option<&'a str>, own: &str) -> Result<Vec<&'a str>, PathRefusal> {
    scan_query_with(query, "namespace", |named| {
        if named.is_empty() || named == own {
            Ok(())
        } else {
            Err(cross_tenant("namespace", named))
        }
    })
}

/// Passes the decoded value of every `name` query parameter (however spelled: `name` is
/// compared folded, see [`fold_key`]) to `check` and returns the other parameters, verbatim.
pub(super) fn scan_query_with<'a>(
    query: Option<&'a str>,
    name: &str,
    check: impl Fn(&str) -> Result<(), PathRefusal>,
) -> Result<Vec<&'a str>, PathRefusal> {
    let malformed = || PathRefusal::new(Reason::InvalidPath, "malformed query string");
    let mut kept = Vec::new();
    for parameter in query.unwrap_or_default().split('&') {
        if parameter.is_empty() {
            continue;
        }
        let (key, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        if fold_key(&percent_decode(key, true).ok_or_else(malformed)?) != name {
            kept.push(parameter);
            continue;
        }
        check(&percent_decode(value, true).ok_or_else(malformed)?)?;
    }
    Ok(kept)
}

/// Decodes `%XX` (and `+` as a space in query strings); `None` for bad escapes or non-UTF-8.
pub(super) fn percent_decode(text: &str, plus_is_space: bool) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => out.push(hex(bytes.next()?)? << 4 | hex(bytes.next()?)?),
            b'+' if plus_is_space => out.push(b' '),
            _ => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

/// `namespace`, also as lenient decoders would read it (see [`fold_key`]).
fn is_namespace_key(key: &str) -> bool {
    fold_key(key) == "namespace"
}

/// Pinecone: leaves exactly one `namespace` key, the tenant's.
pub(super) fn set_namespace(body: &mut Object, own: &str) -> Result<(), PathRefusal> {
    if body.contains_key("queries") {
        return Err(not_allowed("legacy `queries`"));
    }
    let keys: Vec<String> = body
        .keys()
        .filter(|k| is_namespace_key(k))
        .cloned()
        .collect();
    for key in keys {
        if key != "namespace" {
            return Err(invalid_body(format!("ambiguous key {}", quoted(&key))));
        }
        match body.get(&key) {
            None | Some(Value::Null) => {}
            Some(Value::String(named)) if named.is_empty() || named == own => {}
            Some(Value::String(named)) => return Err(cross_tenant("namespace", named)),
            Some(_) => return Err(invalid_body("`namespace` must be a string")),
        }
    }
    body.insert("namespace".into(), Value::String(own.to_string()));
    Ok(())
}

#[cfg(test)]
mod tests;
