use super::*;
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::policy::denial::Reason;

const OWN: &str = "acme";

fn confined(query: &str) -> String {
    confine(query, Some(OWN), &Collections::Any).unwrap_or_else(|e| panic!("{query}: {e:?}"))
}

fn refused(query: &str) -> Reason {
    match confine(
        query,
        Some(OWN),
        &Collections::Listed(vec!["Docs".to_string(), "Authors".to_string()]),
    ) {
        Ok(out) => panic!("{query}: accepted as {out}"),
        Err(refusal) => refusal.reason,
    }
}

#[test]
fn every_collection_of_get_and_aggregate_gets_the_tenant() {
    assert_eq!(
        confined("{ Get { Docs { title } } }"),
        r#"{ Get { Docs(tenant:"acme") { title } } }"#
    );
    assert_eq!(
        confined("query Q { Get { a: Docs(limit: 1, where: {path: [\"x\"], operator: Equal, valueText: \"}\"}) { title _additional { id } } Authors { name } } Aggregate { Docs { meta { count } } } }"),
        "query Q { Get { a: Docs(tenant:\"acme\" limit: 1, where: {path: [\"x\"], operator: Equal, valueText: \"}\"}) { title _additional { id } } Authors(tenant:\"acme\") { name } } Aggregate { Docs(tenant:\"acme\") { meta { count } } } }"
    );
    // The tenant's own is kept as it is.
    let own = r#"{ Get { Docs(tenant: "acme", nearText: {concepts: ["a"]}) { title } } }"#;
    assert_eq!(confined(own), own);
    // Cross-references are read through inline fragments; comments and block strings lexed.
    let query = "{ Get { Docs(bm25: {query: \"\"\"a } b\"\"\"}) # } Get {\n { title hasAuthor { ... on Authors { name } } } } }";
    assert_eq!(
        confined(query),
        "{ Get { Docs(tenant:\"acme\" bm25: {query: \"\"\"a } b\"\"\"}) # } Get {\n { title hasAuthor { ... on Authors { name } } } } }"
    );
    // A tenant needing escapes is written as a JSON string, which GraphQL reads the same.
    assert_eq!(
        confine("{Get{Docs{x}}}", Some("a\"b"), &Collections::Any).unwrap(),
        r#"{Get{Docs(tenant:"a\"b"){x}}}"#
    );
}

#[test]
fn another_tenant_or_collection_is_refused() {
    for query in [
        r#"{ Get { Docs(tenant: "globex") { title } } }"#,
        r#"{ Get { Docs(tenant: "acm\u0065x") { title } } }"#,
        r#"{ Get { Docs { title } Authors(tenant: "") { name } } }"#,
        "{ Get { Secrets { title } } }",
        "{ Aggregate { x: Secrets { meta { count } } } }",
    ] {
        assert_eq!(refused(query), Reason::CrossTenantNamespace, "{query}");
    }
    // An escaped spelling of the own tenant is the own tenant.
    assert!(confine(
        r#"{ Get { Docs(tenant: "\u0061cme") { t } } }"#,
        Some(OWN),
        &Collections::Any
    )
    .is_ok());
}

#[test]
fn what_the_parser_does_not_understand_is_refused() {
    for query in [
        "",
        "{ }",
        "mutation { Get { Docs { t } } }",
        "subscription { Get { Docs { t } } }",
        "query Q($t: String) { Get { Docs(tenant: $t) { t } } }",
        "{ Get { Docs(tenant: $t) { t } } }",
        "{ Get { Docs(where: {valueText: $v}) { t } } }",
        "{ Get { Docs { t @include(if: true) } } }",
        "{ Get @skip(if: false) { Docs { t } } }",
        "{ Get { Docs @x { t } } }",
        "{ Explore(nearText: {concepts: [\"a\"]}) { className } }",
        "{ __schema { types { name } } }",
        "{ g: Get { Docs { t } } }",
        "{ Get { Docs { t } } } { Get { Docs { t } } }",
        "{ Get { Docs { t } } } fragment F on Docs { t }",
        "{ Get { Docs { ...F } } }",
        "{ Get { ...on X { t } } }",
        r#"{ Get { Docs(tenant: "acme", tenant: "globex") { t } } }"#,
        r#"{ Get { Docs(tenant: """acme""") { t } } }"#,
        "{ Get { Docs(tenant: acme) { t } } }",
        "{ Get { Docs(tenant: [\"acme\"]) { t } } }",
        "{ Get { Docs { t } }",
        "{ Get { Docs(limit: 1 { t } } }",
        "{ Get { Docs { t \"unterminated } } }",
        "{ Get { Docs { t } } } ~",
    ] {
        assert_eq!(refused(query), Reason::InvalidBody, "{query}");
    }
}

#[test]
fn queries_are_bounded() {
    let deep = format!(
        "{{ Get {{ Docs(where: {}1{}) {{ t }} }} }}",
        "[".repeat(100),
        "]".repeat(100)
    );
    assert_eq!(refused(&deep), Reason::InvalidBody);
    let nested = format!(
        "{{ Get {{ Docs {}{} }} }}",
        "{ a ".repeat(100),
        "}".repeat(100)
    );
    assert_eq!(refused(&nested), Reason::InvalidBody);
    let long = format!("{{ Get {{ Docs {{ {} }} }} }}", "t ".repeat(MAX_TOKENS));
    assert_eq!(refused(&long), Reason::InvalidBody);
    let huge = format!(
        "{{ Get {{ Docs {{ t }} }} }} #{}",
        "x".repeat(MAX_QUERY_BYTES)
    );
    assert_eq!(refused(&huge), Reason::InvalidBody);
}
