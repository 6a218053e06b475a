//! Request paths: normalisation, and placement in the tenant's namespace (contract: `routing`).
//!
//! [`normalize`] turns the raw `:path` into one canonical form, refusing (400 `invalid_path`)
//! whatever it would otherwise have to guess about: encoded `/` (but for a Bedrock model ARN's,
//! see `bedrock_arn`), `\`, `%` or control bytes,
//! literal backslashes, malformed escapes, fragments. Every decision about the path is then
//! taken on that form, and the upstream receives exactly that form, so the filter and the
//! upstream cannot disagree about where a request goes.
//!
//! [`place`] confines the normalised path to the tenant: `routing.path_prefix` (a template with
//! `{tenant}` and `{namespace}`) is prepended, unless the path already addresses a namespace
//! under that template; then it must be the tenant's own, or the request is refused
//! (403 `cross_tenant_path`).

use serde::Deserialize;

use crate::policy::config_error::{err, header_name, ConfigError};
use crate::policy::denial::Reason;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    pub path_prefix: Option<String>,
    pub authority: Option<String>,
    pub namespace_header: Option<String>,
}

/// Longest detail kept in a refusal (for logs).
const MAX_DETAIL_CHARS: usize = 200;
/// Longest piece of client text quoted inside a detail.
const MAX_QUOTED_CHARS: usize = 64;

/// A request path after normalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPath {
    /// Starts with `/`; no empty, `.` or `..` segments; escapes only for characters that are
    /// not unreserved, in upper-case hex; a trailing slash is kept.
    pub path: String,
    /// What followed the first `?`, verbatim.
    pub query: Option<String>,
}

impl RequestPath {
    /// The request target for `:path`: the path, then `?` and the query when there was one.
    pub fn target(&self) -> String {
        match &self.query {
            Some(query) => format!("{}?{query}", self.path),
            None => self.path.clone(),
        }
    }
}

/// Why a path (or a vector-store request) is refused, with a detail for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRefusal {
    pub reason: Reason,
    /// Printable ASCII only, at most 200 characters.
    pub detail: String,
}

impl PathRefusal {
    /// A refusal whose detail is made safe for logs (printable ASCII, bounded).
    pub fn new(reason: Reason, detail: impl AsRef<str>) -> PathRefusal {
        PathRefusal {
            reason,
            detail: printable(detail.as_ref(), MAX_DETAIL_CHARS),
        }
    }
}

/// Client text for a refusal detail: quoted, printable, bounded.
pub fn quoted(client_text: &str) -> String {
    format!("\"{}\"", printable(client_text, MAX_QUOTED_CHARS))
}

/// Keeps printable ASCII, replaces anything else by `?`, and cuts at `max` characters.
fn printable(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect();
    if text.chars().nth(max).is_some() {
        out.push_str("...");
    }
    out
}

fn invalid(detail: &str) -> PathRefusal {
    PathRefusal::new(Reason::InvalidPath, detail)
}

/// Normalises a raw `:path`; see the module documentation for what is refused.
///
/// Idempotent: normalising the [`RequestPath::target`] of a result gives the same result.
pub fn normalize(raw: &[u8]) -> Result<RequestPath, PathRefusal> {
    let raw = std::str::from_utf8(raw).map_err(|_| invalid("path is not UTF-8"))?;
    if !raw.starts_with('/') {
        return Err(invalid(
            "path must start with '/' (no '*' or absolute form)",
        ));
    }
    if raw.bytes().any(|b| b.is_ascii_control()) {
        return Err(invalid("control byte in path"));
    }
    if raw.contains('#') {
        return Err(invalid("fragment ('#') in path"));
    }
    let (path, query) = match raw.split_once('?') {
        Some((path, query)) => (path, Some(query.to_string())),
        None => (raw, None),
    };
    if path.contains('\\') {
        return Err(invalid("backslash in path"));
    }
    if is_normal(path) {
        // Most paths: the general pass below would return them unchanged.
        return Ok(RequestPath {
            path: path.to_string(),
            query,
        });
    }
    Ok(RequestPath {
        path: normal_form(path)?,
        query,
    })
}

/// The general pass over a path without its query: escapes, then dot segments and slashes.
fn normal_form(path: &str) -> Result<String, PathRefusal> {
    resolve_segments(&decode_escapes(path, bedrock_arn(path))?)
}

/// The byte range of a Bedrock runtime model id that is an ARN, `.../model/{id}/{operation}`
/// at the end of the path: AWS's clients escape its `:` and `/` (`arn%3Aaws%3Abedrock%3A...
/// %3Ainference-profile%2Fus.anthropic...`), and that encoded `/` is the one kept (as `%2F`)
/// rather than refused. Only when every piece between the decoded `/`s is a plain name (not
/// empty, `.` or `..`; no `%`, `\`, `;` or control byte), so a server that decodes it anyway
/// cannot read a dot segment or another path out of it.
fn bedrock_arn(path: &str) -> Option<std::ops::Range<usize>> {
    let mut segments = path.rsplitn(4, '/');
    let operation = segments.next()?;
    let id = segments.next()?;
    let keyword = segments.next()?;
    let ops = [
        "converse",
        "converse-stream",
        "invoke",
        "invoke-with-response-stream",
    ];
    if keyword != "model" || !ops.contains(&operation) || !id.contains("%2F") {
        return None;
    }
    let mut decoded = Vec::with_capacity(id.len());
    let mut bytes = id.bytes();
    while let Some(b) = bytes.next() {
        decoded.push(if b == b'%' {
            hex(bytes.next()?)? << 4 | hex(bytes.next()?)?
        } else {
            b
        });
    }
    let decoded = String::from_utf8(decoded).ok()?;
    let plain = decoded.starts_with("arn:")
        && decoded.split('/').all(|piece| {
            !matches!(piece, "" | "." | "..")
                && piece
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !matches!(b, b'%' | b'\\' | b';'))
        });
    let end = path.len() - operation.len() - 1;
    plain.then(|| end - id.len()..end)
}

/// True when `normal_form(path)` is `path` itself, decided in one cheap pass: only literal
/// path characters (no `%` escape, no `;` parameter), and no empty, `.` or `..` segment except
/// a final empty one (a trailing slash).
fn is_normal(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    if !rest.bytes().all(|b| is_path_char(b) && b != b';') {
        return false;
    }
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            "." | ".." => return false,
            "" if !last => return false,
            _ => {}
        }
    }
    true
}

/// Characters RFC 3986 calls unreserved: their escapes are decoded.
pub(crate) fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Characters kept literally in a normalised path (RFC 3986 `pchar` and `/`); others are escaped.
fn is_path_char(b: u8) -> bool {
    is_unreserved(b) || b"!$&'()*+,;=:@/".contains(&b)
}

/// Decodes escapes of unreserved characters, upper-cases the others, escapes characters that
/// may not appear literally, and refuses escapes that would change the path's structure.
/// `arn`: the range of a Bedrock model ARN (see [`bedrock_arn`]), whose encoded `/` is kept.
fn decode_escapes(path: &str, arn: Option<std::ops::Range<usize>>) -> Result<String, PathRefusal> {
    let mut out = String::with_capacity(path.len());
    let mut bytes = path.bytes().enumerate();
    while let Some((at, b)) = bytes.next() {
        if b != b'%' {
            push_path_byte(&mut out, b);
            continue;
        }
        let value = match (
            bytes.next().and_then(|(_, b)| hex(b)),
            bytes.next().and_then(|(_, b)| hex(b)),
        ) {
            (Some(high), Some(low)) => high << 4 | low,
            _ => return Err(invalid("malformed percent escape in path")),
        };
        match value {
            b'/' if arn.as_ref().is_some_and(|r| r.contains(&at)) => out.push_str("%2F"),
            b'/' => return Err(invalid("encoded '/' in path")),
            b'\\' => return Err(invalid("encoded '\\' in path")),
            b'%' => return Err(invalid("encoded '%' in path")),
            v if v.is_ascii_control() => return Err(invalid("encoded control byte in path")),
            v if is_unreserved(v) => out.push(char::from(v)),
            v => push_escape(&mut out, v),
        }
    }
    Ok(out)
}

fn push_path_byte(out: &mut String, b: u8) {
    if is_path_char(b) {
        out.push(char::from(b));
    } else {
        push_escape(out, b);
    }
}

pub(crate) fn push_escape(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    for nibble in [b >> 4, b & 0x0f] {
        if let Some(&digit) = HEX.get(usize::from(nibble)) {
            out.push(char::from(digit));
        }
    }
}

pub(crate) fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Merges repeated slashes and removes dot segments (RFC 3986 §5.2.4; `..` at the root stays
/// at the root). A path ending in `/`, `/.` or `/..` keeps a trailing slash.
fn resolve_segments(path: &str) -> Result<String, PathRefusal> {
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in path.split('/').skip(1) {
        trailing_slash = true;
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            _ => {
                refuse_dot_with_parameters(segment)?;
                kept.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if kept.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

/// Refuses `..;x` and `.;x`: servers that strip `;` parameters (Tomcat, Spring) read them as dot
/// segments, so they could climb out of the prefix after the filter has decided.
fn refuse_dot_with_parameters(segment: &str) -> Result<(), PathRefusal> {
    let before_parameters = segment
        .split(';')
        .next()
        .and_then(|s| s.split("%3B").next())
        .unwrap_or(segment);
    if before_parameters != segment && matches!(before_parameters, "." | "..") {
        return Err(invalid("dot segment with ';' parameters in path"));
    }
    Ok(())
}

/// Where the tenant's request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The new `:path` (with `?query`); `None` = leave `:path` unchanged. [`place`] always
    /// returns the normalised target, so the upstream sees what was decided; the shell may skip
    /// the write when it equals the received `:path`.
    pub path: Option<String>,
    /// The new `:authority`, when `routing.authority` is set.
    pub authority: Option<String>,
    /// `(header, namespace)` to set upstream (client copies removed), when
    /// `routing.namespace_header` is set.
    pub namespace_header: Option<(String, String)>,
}

/// Places a tenant's normalised request according to `routing`.
pub fn place(
    routing: &Routing,
    tenant: &str,
    namespace: &str,
    path: &RequestPath,
) -> Result<Placement, PathRefusal> {
    let target = match &routing.path_prefix {
        Some(template) => confine(template, tenant, namespace, path)?,
        None => path.target(),
    };
    Ok(Placement {
        path: Some(target),
        authority: routing
            .authority
            .as_deref()
            .map(|template| expand(template, tenant, namespace)),
        namespace_header: routing
            .namespace_header
            .clone()
            .map(|header| (header, namespace.to_string())),
    })
}

/// The target under the tenant's prefix: kept as is when it already addresses the tenant's own
/// namespace, refused when it addresses another one, prefixed otherwise.
fn confine(
    template: &str,
    tenant: &str,
    namespace: &str,
    path: &RequestPath,
) -> Result<String, PathRefusal> {
    let prefix = expand(template, tenant, namespace);
    let shape: Vec<&str> = template.split('/').skip(1).collect();
    let own: Vec<&str> = prefix.split('/').skip(1).collect();
    let segments: Vec<&str> = path.path.split('/').skip(1).collect();
    let Some(leading) = segments.get(..shape.len()) else {
        return Ok(format!("{prefix}{}", path.target()));
    };
    if !leading.iter().zip(&shape).all(|(s, t)| fits(t, s)) {
        return Ok(format!("{prefix}{}", path.target()));
    }
    if leading == own.as_slice() {
        return Ok(path.target());
    }
    Err(PathRefusal::new(
        Reason::CrossTenantPath,
        format!(
            "path addresses namespace {}",
            quoted(&format!("/{}", leading.join("/")))
        ),
    ))
}

/// Whether a path segment has the shape of a template segment: literal parts equal, each
/// placeholder standing for at least one character.
fn fits(template_segment: &str, segment: &str) -> bool {
    let literals = split_placeholders(template_segment);
    let Some((first, rest)) = literals.split_first() else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return segment == *first;
    };
    let Some(mut remaining) = segment.strip_prefix(first) else {
        return false;
    };
    for literal in middle {
        let Some(after_one) = skip_one_char(remaining) else {
            return false;
        };
        let Some(at) = after_one.find(literal) else {
            return false;
        };
        remaining = after_one.get(at + literal.len()..).unwrap_or_default();
    }
    remaining.len() > last.len() && remaining.ends_with(last)
}

fn skip_one_char(s: &str) -> Option<&str> {
    let mut chars = s.chars();
    chars.next()?;
    Some(chars.as_str())
}

const PLACEHOLDERS: [&str; 2] = ["{tenant}", "{namespace}"];

/// The literal parts of a template, around its placeholders (one more than placeholders).
fn split_placeholders(template: &str) -> Vec<&str> {
    let mut literals = Vec::new();
    let mut rest = template;
    while let Some((at, placeholder)) = next_placeholder(rest) {
        literals.push(rest.get(..at).unwrap_or_default());
        rest = rest.get(at + placeholder.len()..).unwrap_or_default();
    }
    literals.push(rest);
    literals
}

fn next_placeholder(s: &str) -> Option<(usize, &'static str)> {
    PLACEHOLDERS
        .iter()
        .filter_map(|p| s.find(p).map(|at| (at, *p)))
        .min_by_key(|(at, _)| *at)
}

/// Expands `{tenant}` and `{namespace}` in a template (in one pass: values are not re-read).
pub fn expand(template: &str, tenant: &str, namespace: &str) -> String {
    let mut out = String::with_capacity(template.len() + namespace.len());
    let mut rest = template;
    while let Some((at, placeholder)) = next_placeholder(rest) {
        out.push_str(rest.get(..at).unwrap_or_default());
        out.push_str(if placeholder == "{tenant}" {
            tenant
        } else {
            namespace
        });
        rest = rest.get(at + placeholder.len()..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

// === Configuration (contract: `routing`) ===

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouting {
    path_prefix: Option<String>,
    authority: Option<String>,
    namespace_header: Option<String>,
}

pub(crate) fn compile_routing(raw: RawRouting) -> Result<Routing, ConfigError> {
    if let Some(prefix) = &raw.path_prefix {
        let segments_ok = prefix
            .split('/')
            .skip(1)
            .all(|s| !s.is_empty() && s != "." && s != "..");
        if !prefix.starts_with('/') || !segments_ok || prefix.contains(['%', '?', '#', '\\']) {
            return err(
                "routing.path_prefix",
                "must be '/' then non-empty segments (no '.', '..', '%', '?', '#', trailing '/')",
            );
        }
        check_template("routing.path_prefix", prefix)?;
    }
    if let Some(authority) = &raw.authority {
        check_template("routing.authority", authority)?;
    }
    let namespace_header = match &raw.namespace_header {
        Some(h) => Some(header_name("routing.namespace_header", h)?),
        None => None,
    };
    Ok(Routing {
        path_prefix: raw.path_prefix,
        authority: raw.authority,
        namespace_header,
    })
}

/// Templates may use `{tenant}` and `{namespace}` and no other braces.
fn check_template(path: &str, template: &str) -> Result<(), ConfigError> {
    let rest = template.replace("{tenant}", "").replace("{namespace}", "");
    if rest.contains('{') || rest.contains('}') {
        return err(
            path,
            "only the placeholders {tenant} and {namespace} are known",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
