//! **`chroma`** (HTTP API v2: a Chroma tenant and database per gateway tenant). Chroma puts
//! both in the path, `/api/v2/tenants/{tenant}/databases/{database}/...`: every such path must
//! name the gateway tenant's own (the `tenant` and `database` templates; 403
//! `cross_tenant_namespace` otherwise), and then everything below it goes (collections, records,
//! queries, counts). The templates hold `{tenant}` or `{namespace}` (at least one of the two
//! does): `{"tenant": "{namespace}", "database": "default_database"}` gives each gateway tenant a
//! Chroma tenant; `{"tenant": "shared", "database": "{namespace}"}` a database in one.
//!
//! Also passed: `GET /api/v2/{heartbeat, version, healthcheck, pre-flight-checks, auth/identity}`
//! (clients ask at start; `auth/identity` answers what the gateway's own credential may reach),
//! `GET /api/v2/tenants/{own}` and `GET /api/v2/tenants/{own}/databases/{own}`. With `allow`:
//! `create_tenant` lets `POST /api/v2/tenants` create the tenant's own Chroma tenant, and
//! `create_database` lets `POST /api/v2/tenants/{own}/databases` create its own database (the
//! body's `name` must be the own one). Refused (403 `vector_operation_not_allowed`): creating
//! them otherwise, listing databases (it names everybody's in a shared Chroma tenant), deleting a
//! database, renaming a tenant, `/api/v2/reset`, the removed `/api/v1`, and everything else.

use serde_json::Value;

use super::body::check_spellings;
use super::pinecone::percent_decode;
use super::{
    cross_tenant, invalid_body, not_allowed, BodyEdit, RawVectorStore, Request, Rule, Shape,
    VectorRoute, TENANT_PLACEHOLDERS,
};
use crate::policy::config_error::{err, ConfigError};
use crate::policy::denial::Reason;
use crate::policy::namespace::{quoted, PathRefusal};

const DEFAULT_TENANT: &str = "{namespace}";
const DEFAULT_DATABASE: &str = "default_database";

/// What a `chroma` store allows beyond data (`allow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChromaAllow {
    /// `POST /api/v2/tenants` naming the tenant's own Chroma tenant.
    CreateTenant,
    /// `POST /api/v2/tenants/{own}/databases` naming its own database.
    CreateDatabase,
}

pub(super) fn compile_chroma(path: &str, raw: &RawVectorStore) -> Result<Rule, ConfigError> {
    let tenant = raw.tenant.as_deref().unwrap_or(DEFAULT_TENANT);
    let database = raw.database.as_deref().unwrap_or(DEFAULT_DATABASE);
    let mut placed = 0;
    for (field, template) in [("tenant", tenant), ("database", database)] {
        let found: usize = TENANT_PLACEHOLDERS
            .iter()
            .map(|p| template.matches(p).count())
            .sum();
        let literal = template.replace("{tenant}", "").replace("{namespace}", "");
        let literal_ok = literal
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if found > 1 || !literal_ok || literal.len() > 64 || template.is_empty() {
            return err(
                format!("{path}.{field}"),
                "at most one of {tenant} or {namespace}, and at most 64 characters of \
                 A-Z a-z 0-9 . _ -",
            );
        }
        placed += found;
    }
    if placed == 0 {
        return err(
            format!("{path}.tenant"),
            "the tenant or the database must contain {tenant} or {namespace}: else every \
             gateway tenant shares one",
        );
    }
    let mut allow = Vec::new();
    for (i, name) in raw.allow.iter().flatten().enumerate() {
        match name.as_str() {
            "create_tenant" => allow.push(ChromaAllow::CreateTenant),
            "create_database" => allow.push(ChromaAllow::CreateDatabase),
            _ => {
                return err(
                    format!("{path}.allow[{i}]"),
                    "for kind chroma: create_tenant or create_database",
                )
            }
        }
    }
    Ok(Rule::Chroma {
        tenant: tenant.to_string(),
        database: database.to_string(),
        allow,
    })
}

pub(super) fn chroma(
    request: &Request<'_>,
    own_tenant: &str,
    own_database: &str,
    allow: &[ChromaAllow],
) -> Result<VectorRoute, PathRefusal> {
    let forward = || {
        Ok(VectorRoute::Forward {
            path: request.unchanged(),
        })
    };
    let own = |segment: &str, what: &str, expected: &str| {
        let named = percent_decode(segment, false)
            .ok_or_else(|| PathRefusal::new(Reason::InvalidPath, format!("{what} is not UTF-8")))?;
        if named == expected {
            Ok(())
        } else {
            Err(cross_tenant(what, &named))
        }
    };
    let create = |name: &str| {
        Ok(request.body(
            request.unchanged(),
            BodyEdit::NameIs {
                name: name.to_string(),
            },
            Shape::Single,
        ))
    };
    match (request.method, request.segments.as_slice()) {
        (
            "GET",
            ["api", "v2", "heartbeat" | "version" | "healthcheck" | "pre-flight-checks"]
            | ["api", "v2", "auth", "identity"],
        ) => forward(),
        ("POST", ["api", "v2", "tenants"]) if allow.contains(&ChromaAllow::CreateTenant) => {
            create(own_tenant)
        }
        ("GET", ["api", "v2", "tenants", tenant]) => {
            own(tenant, "Chroma tenant", own_tenant)?;
            forward()
        }
        ("POST", ["api", "v2", "tenants", tenant, "databases"])
            if allow.contains(&ChromaAllow::CreateDatabase) =>
        {
            own(tenant, "Chroma tenant", own_tenant)?;
            create(own_database)
        }
        (method, ["api", "v2", "tenants", tenant, "databases", database, below @ ..]) => {
            own(tenant, "Chroma tenant", own_tenant)?;
            own(database, "Chroma database", own_database)?;
            match (method, below) {
                ("GET", []) | (_, ["collections", ..]) | ("GET", ["collections_count"]) => {
                    forward()
                }
                ("DELETE", []) => Err(not_allowed("deleting a Chroma database")),
                _ => Err(not_allowed(&format!(
                    "chroma operation {method} {}",
                    quoted(request.rest)
                ))),
            }
        }
        ("POST", ["api", "v2", "tenants"]) => Err(not_allowed("creating a Chroma tenant")),
        ("POST", ["api", "v2", "tenants", _, "databases"]) => {
            Err(not_allowed("creating a Chroma database"))
        }
        (_, ["api", "v2", "tenants", _, "databases"]) => {
            Err(not_allowed("listing Chroma databases"))
        }
        _ => Err(not_allowed(&format!(
            "chroma operation {} {}",
            request.method,
            quoted(request.rest)
        ))),
    }
}

/// A creation body (`{"name": ...}`): its `name` must be `own`.
pub(super) fn check_name(body: &Value, own: &str) -> Result<(), PathRefusal> {
    let object = body
        .as_object()
        .ok_or_else(|| invalid_body("expected a JSON object"))?;
    check_spellings(object, &[("name", "name")])?;
    match object.get("name") {
        Some(Value::String(name)) if name == own => Ok(()),
        Some(Value::String(name)) => Err(cross_tenant("name", name)),
        _ => Err(invalid_body("`name` must be a string")),
    }
}

#[cfg(test)]
mod tests;
