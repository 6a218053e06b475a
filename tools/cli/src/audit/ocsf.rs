//! An audit record as an OCSF event of class API Activity (6003), following the mapping in the
//! tool's README, for SIEMs that ingest OCSF as it is.

use serde_json::{json, Map, Value};

use crate::audit::time;

/// The OCSF schema version the mapping is written against.
pub const OCSF_VERSION: &str = "1.5.0";

/// `None` for start records (chain anchors, not API activity) and records that are not
/// objects.
pub fn event(record: &Value) -> Option<Value> {
    let r = record.as_object()?;
    let text = |key: &str| r.get(key).and_then(Value::as_str);
    let event = text("event")?;
    if event == "start" {
        return None;
    }
    let method = text("method").unwrap_or("");
    let path = text("path").unwrap_or("");
    let activity_id = match method {
        "POST" => 1,
        "GET" | "HEAD" => 2,
        "PUT" | "PATCH" => 3,
        "DELETE" => 4,
        _ => 99,
    };
    let allowed = text("decision") == Some("allow");
    let severity_id = match event {
        "cross_tenant" => 4,
        "deny" => 2,
        _ => 1,
    };
    let mut out = Map::new();
    out.insert("class_uid".into(), json!(6003));
    out.insert("class_name".into(), json!("API Activity"));
    out.insert("category_uid".into(), json!(6));
    out.insert("category_name".into(), json!("Application Activity"));
    out.insert("activity_id".into(), json!(activity_id));
    out.insert("type_uid".into(), json!(600_300 + activity_id));
    out.insert("severity_id".into(), json!(severity_id));
    if let Some(ms) = text("time").and_then(time::parse_ms) {
        out.insert("time".into(), json!(ms));
    }
    out.insert("status_id".into(), json!(if allowed { 1 } else { 2 }));
    out.insert(
        "status".into(),
        json!(if allowed { "Success" } else { "Failure" }),
    );
    out.insert("status_code".into(), json!(text("reason")));
    if let Some(detail) = text("detail") {
        out.insert("status_detail".into(), json!(detail));
    }
    let chain = text("chain").unwrap_or("");
    let seq = r.get("seq").and_then(Value::as_u64).unwrap_or(0);
    let mut metadata = json!({
        "version": OCSF_VERSION,
        "product": {"name": "tenant-guard", "vendor_name": "tenant-guard"},
        "log_name": "tenant_guard.audit",
        "event_code": event,
        "uid": format!("{chain}-{seq}"),
        "sequence": seq,
        "correlation_uid": text("request_id"),
    });
    if let (Some(tenant), Some(m)) = (text("tenant"), metadata.as_object_mut()) {
        m.insert("tenant_uid".into(), json!(tenant));
    }
    out.insert("metadata".into(), metadata);

    let mut user = Map::new();
    if let Some(u) = text("user") {
        user.insert("uid".into(), json!(u));
    }
    if let Some(t) = text("tenant") {
        user.insert("org".into(), json!({ "uid": t }));
    }
    let mut actor = json!({ "user": user });
    if let (Some(p), Some(a)) = (text("provider"), actor.as_object_mut()) {
        a.insert("idp".into(), json!({ "name": p }));
    }
    out.insert("actor".into(), actor);
    out.insert(
        "api".into(),
        json!({
            "operation": format!("{method} {path}"),
            "request": {"uid": text("request_id")},
            "service": {"name": "tenant-guard"},
        }),
    );
    let mut src = Map::new();
    match text("source").map(split_address) {
        Some((ip, port)) => {
            src.insert("ip".into(), json!(ip));
            if let Some(port) = port {
                src.insert("port".into(), json!(port));
            }
        }
        None => {
            src.insert("name".into(), json!("unknown"));
        }
    }
    out.insert("src_endpoint".into(), Value::Object(src));
    let mut http = json!({"http_method": method, "url": {"path": path}});
    if let (Some(id), Some(h)) = (text("client_request_id"), http.as_object_mut()) {
        h.insert("uid".into(), json!(id));
    }
    out.insert("http_request".into(), http);

    let claimed = r.get("claimed").and_then(Value::as_object);
    let mut resources = Vec::new();
    if let Some(c) = claimed {
        for (kind, key) in [
            ("tenant", "tenant_header"),
            ("tenant_namespace", "path_namespace"),
            ("store_namespace", "namespace"),
            ("provider_object", "object"),
            ("model", "model"),
        ] {
            if let Some(uid) = c.get(key).and_then(Value::as_str) {
                resources.push(json!({"type": kind, "uid": uid}));
            }
        }
    }
    if !resources.is_empty() {
        out.insert("resources".into(), Value::Array(resources));
    }
    out.insert(
        "unmapped".into(),
        json!({
            "chain": chain,
            "prev": text("prev"),
            "hash": text("hash"),
            "path_sent": text("path_sent"),
            "claimed": claimed.cloned().unwrap_or_default(),
        }),
    );
    Some(Value::Object(out))
}

/// `ip:port` or `[ipv6]:port` into its parts.
fn split_address(source: &str) -> (&str, Option<u16>) {
    if let Some(rest) = source.strip_prefix('[') {
        let (ip, port) = rest.split_once(']').unwrap_or((rest, ""));
        return (ip, port.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match source.rsplit_once(':') {
        Some((ip, port)) if !ip.contains(':') => (ip, port.parse().ok()),
        _ => (source, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cross_tenant_record_maps_to_api_activity() {
        let record = json!({
            "type": "tenant_guard.audit", "chain": "00000000000000aa", "seq": 7,
            "prev": "p", "time": "2026-11-29T23:30:04.123Z", "event": "cross_tenant",
            "tenant": "acme", "user": "alice", "provider": "corp-idp",
            "claimed": {"path_namespace": "globex"}, "method": "GET",
            "path": "/tenants/globex/v1/models", "path_sent": null,
            "source": "[2001:db8::7]:40112", "request_id": "r1", "client_request_id": "c1",
            "decision": "deny", "reason": "cross_tenant_path", "detail": "namespace globex",
            "hash": "h"});
        let e = event(&record).unwrap();
        assert_eq!(e["class_uid"], 6003);
        assert_eq!(e["type_uid"], 600_302);
        assert_eq!(e["time"], 1_795_995_004_123_i64);
        assert_eq!(e["status_id"], 2);
        assert_eq!(e["status_code"], "cross_tenant_path");
        assert_eq!(e["severity_id"], 4);
        assert_eq!(e["actor"]["user"]["uid"], "alice");
        assert_eq!(e["actor"]["user"]["org"]["uid"], "acme");
        assert_eq!(e["actor"]["idp"]["name"], "corp-idp");
        assert_eq!(e["metadata"]["tenant_uid"], "acme");
        assert_eq!(e["metadata"]["uid"], "00000000000000aa-7");
        assert_eq!(
            e["src_endpoint"],
            json!({"ip": "2001:db8::7", "port": 40112})
        );
        assert_eq!(e["http_request"]["uid"], "c1");
        assert_eq!(
            e["resources"],
            json!([{"type": "tenant_namespace", "uid": "globex"}])
        );
        assert_eq!(e["unmapped"]["hash"], "h");
        assert_eq!(e["api"]["operation"], "GET /tenants/globex/v1/models");
    }

    #[test]
    fn start_records_are_not_api_activity() {
        assert!(event(&json!({"event": "start", "chain": "c", "seq": 0})).is_none());
    }

    #[test]
    fn a_record_without_source_or_tenant_still_has_the_required_objects() {
        let e = event(
            &json!({"event": "deny", "method": "POST", "path": "/x", "tenant": null,
                              "user": null, "source": null, "decision": "deny",
                              "reason": "missing_token"}),
        )
        .unwrap();
        assert_eq!(e["src_endpoint"], json!({"name": "unknown"}));
        assert_eq!(e["actor"], json!({"user": {}}));
        assert_eq!(e["activity_id"], 1);
    }
}
