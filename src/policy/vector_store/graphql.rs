//! Weaviate's GraphQL queries, confined to one Weaviate tenant: every collection a `Get` or
//! `Aggregate` query reads gets `tenant: "<the tenant's>"`, and a query naming another tenant is
//! refused.
//!
//! The parser is small and strict: it reads one anonymous or named `query` operation whose
//! top-level fields are `Get` and `Aggregate`, each selecting collections (with optional
//! aliases and arguments) whose selection sets it skips by balancing braces over GraphQL tokens
//! (strings, block strings and comments are lexed, so a brace inside them does not count).
//! Everything else is refused (400 `invalid_body`, or 403 for a collection or tenant not the
//! tenant's) rather than passed: mutations, subscriptions, several operations, fragment
//! definitions, variables (`$`: a tenant could come from them), directives (`@`), `Explore`
//! (it searches every collection), a top-level field other than `Get` and `Aggregate`, an
//! argument `tenant` that is not a plain string, or is given twice. Queries are bounded: at most
//! 64 KiB, 20,000 tokens and 64 levels of nesting.

use super::weaviate::{beacon_collection, Collections};
use super::{cross_tenant, invalid_body};
use crate::policy::namespace::PathRefusal;

const MAX_QUERY_BYTES: usize = 64 << 10;
const MAX_TOKENS: usize = 20_000;
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Name,
    /// A string (plain or block); `block`: `"""..."""`.
    Str {
        block: bool,
    },
    /// Numbers and any other literal run.
    Other,
    Punct(u8),
    /// `...`
    Spread,
}

#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

/// The query with every collection of `Get` and `Aggregate` confined to `tenant` (`None`: a
/// collection per tenant, the query's tenants kept); `collections`: the collections the tenant
/// may read, in `Get`, `Aggregate`, inline fragments (`... on C`) and `beacon` arguments.
pub(super) fn confine(
    query: &str,
    tenant: Option<&str>,
    collections: &Collections,
) -> Result<String, PathRefusal> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(invalid_body("GraphQL query over 64 KiB"));
    }
    let tokens = lex(query)?;
    let mut parser = Parser {
        query,
        tokens: &tokens,
        at: 0,
        inserts: Vec::new(),
        tenant,
        collections,
    };
    parser.document()?;
    let extra = tenant.map_or(0, str::len) + 12;
    let mut out = String::with_capacity(query.len() + parser.inserts.len() * extra);
    let mut from = 0;
    for (at, text) in &parser.inserts {
        out.push_str(query.get(from..*at).unwrap_or_default());
        out.push_str(text);
        from = *at;
    }
    out.push_str(query.get(from..).unwrap_or_default());
    Ok(out)
}

fn unsupported(what: &str) -> PathRefusal {
    invalid_body(format!(
        "GraphQL: {what} is not supported through the gateway"
    ))
}

fn lex(query: &str) -> Result<Vec<Token>, PathRefusal> {
    let bytes = query.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let start = i;
        let kind = match b {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => {
                i += 1;
                continue;
            }
            0xEF if bytes.get(i..i + 3) == Some(b"\xEF\xBB\xBF".as_slice()) => {
                i += 3;
                continue;
            }
            b'#' => {
                while bytes.get(i).is_some_and(|&c| c != b'\n' && c != b'\r') {
                    i += 1;
                }
                continue;
            }
            b'"' if bytes.get(i..i + 3) == Some(b"\"\"\"".as_slice()) => {
                i += 3;
                loop {
                    match bytes.get(i) {
                        None => return Err(invalid_body("GraphQL: unterminated block string")),
                        Some(b'\\') if bytes.get(i + 1..i + 4) == Some(b"\"\"\"".as_slice()) => {
                            i += 4
                        }
                        Some(b'"') if bytes.get(i..i + 3) == Some(b"\"\"\"".as_slice()) => {
                            i += 3;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                Kind::Str { block: true }
            }
            b'"' => {
                i += 1;
                loop {
                    match bytes.get(i) {
                        None | Some(b'\n' | b'\r') => {
                            return Err(invalid_body("GraphQL: unterminated string"))
                        }
                        Some(b'\\') => i += 2,
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                Kind::Str { block: false }
            }
            b'.' if bytes.get(i..i + 3) == Some(b"...".as_slice()) => {
                i += 3;
                Kind::Spread
            }
            b'{' | b'}' | b'(' | b')' | b'[' | b']' | b':' | b'=' | b'!' | b'$' | b'@' | b'|'
            | b'&' => {
                i += 1;
                Kind::Punct(b)
            }
            c if c == b'_' || c.is_ascii_alphabetic() => {
                while bytes
                    .get(i)
                    .is_some_and(|&c| c == b'_' || c.is_ascii_alphanumeric())
                {
                    i += 1;
                }
                Kind::Name
            }
            c if c == b'-' || c.is_ascii_digit() => {
                i += 1;
                while bytes
                    .get(i)
                    .is_some_and(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'+' | b'-'))
                {
                    i += 1;
                }
                Kind::Other
            }
            _ => return Err(invalid_body("GraphQL: unexpected character")),
        };
        tokens.push(Token {
            kind,
            start,
            end: i,
        });
        if tokens.len() > MAX_TOKENS {
            return Err(invalid_body("GraphQL query over 20000 tokens"));
        }
    }
    Ok(tokens)
}

struct Parser<'a> {
    query: &'a str,
    tokens: &'a [Token],
    at: usize,
    /// (byte offset, text) to insert, in order.
    inserts: Vec<(usize, String)>,
    tenant: Option<&'a str>,
    collections: &'a Collections,
}

impl Parser<'_> {
    fn peek(&self) -> Option<Token> {
        self.tokens.get(self.at).copied()
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.peek();
        self.at += 1;
        token
    }

    fn text(&self, token: Token) -> &str {
        self.query.get(token.start..token.end).unwrap_or_default()
    }

    fn expect(&mut self, punct: u8) -> Result<Token, PathRefusal> {
        match self.next() {
            Some(token) if token.kind == Kind::Punct(punct) => Ok(token),
            _ => Err(invalid_body(format!(
                "GraphQL: expected '{}'",
                char::from(punct)
            ))),
        }
    }

    fn name(&mut self) -> Result<Token, PathRefusal> {
        match self.next() {
            Some(token) if token.kind == Kind::Name => Ok(token),
            _ => Err(invalid_body("GraphQL: expected a name")),
        }
    }

    /// `{ ... }` or `query [Name] { ... }`, and nothing after it.
    fn document(&mut self) -> Result<(), PathRefusal> {
        if let Some(first) = self.peek().filter(|t| t.kind == Kind::Name) {
            match self.text(first) {
                "query" => {
                    self.at += 1;
                    if self.peek().is_some_and(|t| t.kind == Kind::Name) {
                        self.at += 1;
                    }
                }
                "mutation" | "subscription" => {
                    return Err(unsupported("a mutation or subscription"))
                }
                "fragment" => return Err(unsupported("a fragment definition")),
                _ => return Err(invalid_body("GraphQL: expected an operation")),
            }
        }
        match self.peek().map(|t| t.kind) {
            Some(Kind::Punct(b'(')) => return Err(unsupported("a variable")),
            Some(Kind::Punct(b'@')) => return Err(unsupported("a directive")),
            _ => {}
        }
        self.expect(b'{')?;
        let mut fields = 0usize;
        loop {
            match self.peek().map(|t| t.kind) {
                Some(Kind::Punct(b'}')) => {
                    self.at += 1;
                    break;
                }
                Some(Kind::Name) => {
                    self.top_level_field()?;
                    fields += 1;
                }
                Some(Kind::Spread) => return Err(unsupported("a fragment")),
                _ => return Err(invalid_body("GraphQL: expected Get or Aggregate")),
            }
        }
        if fields == 0 {
            return Err(invalid_body("GraphQL: empty selection"));
        }
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(unsupported("more than one operation")),
        }
    }

    /// `Get { ... }` or `Aggregate { ... }`.
    fn top_level_field(&mut self) -> Result<(), PathRefusal> {
        let name = self.name()?;
        match self.text(name) {
            "Get" | "Aggregate" => {}
            "Explore" => return Err(unsupported("Explore (it searches every collection)")),
            _ => {
                return Err(unsupported(
                    "a top-level field other than Get and Aggregate",
                ))
            }
        }
        self.expect(b'{')?;
        loop {
            match self.peek().map(|t| t.kind) {
                Some(Kind::Punct(b'}')) => {
                    self.at += 1;
                    return Ok(());
                }
                Some(Kind::Name) => self.collection()?,
                _ => return Err(invalid_body("GraphQL: expected a collection")),
            }
        }
    }

    /// `[alias:] Collection [(arguments)] [{ selection }]`: the tenant argument is checked or
    /// added.
    fn collection(&mut self) -> Result<(), PathRefusal> {
        let mut name = self.name()?;
        if self.peek().is_some_and(|t| t.kind == Kind::Punct(b':')) {
            self.at += 1;
            name = self.name()?;
        }
        self.collections.check(self.text(name))?;
        let own = self.tenant.map(|t| format!("tenant:{}", json_string(t)));
        if self.peek().is_some_and(|t| t.kind == Kind::Punct(b'(')) {
            let open = self.next().map_or(0, |t| t.end);
            let tenant_seen = self.arguments()?;
            if let Some(own) = own.filter(|_| !tenant_seen) {
                self.inserts.push((open, format!("{own} ")));
            }
        } else if let Some(own) = own {
            self.inserts.push((name.end, format!("({own})")));
        }
        match self.peek().map(|t| t.kind) {
            Some(Kind::Punct(b'{')) => self.skip_selection(),
            Some(Kind::Punct(b'@')) => Err(unsupported("a directive")),
            _ => Ok(()),
        }
    }

    /// Reads `name: value` pairs up to `)`; whether one was `tenant` (the tenant's own).
    fn arguments(&mut self) -> Result<bool, PathRefusal> {
        let mut tenant_seen = false;
        loop {
            let token = self
                .next()
                .ok_or_else(|| invalid_body("GraphQL: unterminated arguments"))?;
            match token.kind {
                Kind::Punct(b')') => return Ok(tenant_seen),
                Kind::Name => {}
                _ => return Err(invalid_body("GraphQL: expected an argument")),
            }
            let is_tenant = self.text(token) == "tenant" && self.tenant.is_some();
            self.expect(b':')?;
            if is_tenant {
                if std::mem::replace(&mut tenant_seen, true) {
                    return Err(invalid_body("GraphQL: `tenant` given twice"));
                }
                let value = self.next();
                let named = match value {
                    Some(t) if t.kind == (Kind::Str { block: false }) => {
                        crate::policy::json::from_slice::<String>(self.text(t).as_bytes()).ok()
                    }
                    _ => None,
                };
                match named {
                    Some(named) if Some(named.as_str()) == self.tenant => {}
                    Some(named) => return Err(cross_tenant("Weaviate tenant", &named)),
                    None => return Err(invalid_body("GraphQL: `tenant` must be a plain string")),
                }
            } else {
                self.value(0)?;
            }
        }
    }

    /// Skips one argument value (objects and lists nested up to the depth bound).
    fn value(&mut self, depth: usize) -> Result<(), PathRefusal> {
        if depth > MAX_DEPTH {
            return Err(invalid_body("GraphQL: nested too deep"));
        }
        let token = self
            .next()
            .ok_or_else(|| invalid_body("GraphQL: expected a value"))?;
        match token.kind {
            Kind::Name | Kind::Str { .. } | Kind::Other => Ok(()),
            Kind::Punct(b'$') => Err(unsupported("a variable")),
            Kind::Punct(b'[') => loop {
                if self.peek().is_some_and(|t| t.kind == Kind::Punct(b']')) {
                    self.at += 1;
                    return Ok(());
                }
                self.value(depth + 1)?;
            },
            Kind::Punct(b'{') => loop {
                let key = self
                    .next()
                    .ok_or_else(|| invalid_body("GraphQL: unterminated object"))?;
                match key.kind {
                    Kind::Punct(b'}') => return Ok(()),
                    Kind::Name if self.text(key) == "beacon" => {
                        // `nearObject: {beacon: ...}`: the object searched by must be in a
                        // collection the tenant may read.
                        self.expect(b':')?;
                        self.beacon()?;
                    }
                    Kind::Name => {
                        self.expect(b':')?;
                        self.value(depth + 1)?;
                    }
                    _ => return Err(invalid_body("GraphQL: expected an object field")),
                }
            },
            _ => Err(invalid_body("GraphQL: expected a value")),
        }
    }

    /// A `beacon` argument: a plain string naming a collection the tenant may read.
    fn beacon(&mut self) -> Result<(), PathRefusal> {
        let named = match self.next() {
            Some(t) if t.kind == (Kind::Str { block: false }) => {
                crate::policy::json::from_slice::<String>(self.text(t).as_bytes()).ok()
            }
            _ => None,
        };
        match named {
            Some(beacon) => self.collections.check(beacon_collection(&beacon)?),
            None => Err(invalid_body("GraphQL: `beacon` must be a plain string")),
        }
    }

    /// Skips a selection set, braces balanced; refuses variables and directives inside it.
    fn skip_selection(&mut self) -> Result<(), PathRefusal> {
        let mut depth = 0usize;
        while let Some(token) = self.next() {
            match token.kind {
                Kind::Punct(b'{') => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(invalid_body("GraphQL: nested too deep"));
                    }
                }
                Kind::Punct(b'}') => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return Ok(());
                    }
                }
                Kind::Punct(b'$') => return Err(unsupported("a variable")),
                Kind::Punct(b'@') => return Err(unsupported("a directive")),
                Kind::Spread => {
                    // Only inline fragments on a collection (`... on Author`): the form
                    // cross-references are read in. A named spread needs a definition.
                    match self.peek() {
                        Some(t) if t.kind == Kind::Name && self.text(t) == "on" => {
                            self.at += 1;
                            let collection = self.name()?;
                            self.collections.check(self.text(collection))?;
                        }
                        _ => return Err(unsupported("a fragment spread")),
                    }
                }
                _ => {}
            }
        }
        Err(invalid_body("GraphQL: unterminated selection"))
    }
}

/// A GraphQL string literal for `text` (JSON's string syntax is GraphQL's for these).
fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

#[cfg(test)]
mod tests;
