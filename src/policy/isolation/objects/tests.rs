use super::*;
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn named(id: &str) -> Route {
    Route {
        named: Some(id.into()),
        ..Route::default()
    }
}

fn creates(id_field: IdField, stored: Stored) -> Route {
    Route {
        creates: Some(Create { id_field, stored }),
        ..Route::default()
    }
}

#[test]
fn paths_that_name_objects_are_recognised_behind_any_prefix() {
    let cases = [
        ("GET", "/v1/responses/resp_1", named("resp_1")),
        ("DELETE", "/v1/responses/resp_1", named("resp_1")),
        ("GET", "/v1/responses/resp_1/input_items", named("resp_1")),
        ("POST", "/v1/conversations/conv_1/items", named("conv_1")),
        (
            "GET",
            "/tenants/acme/v1/files/file-1/content",
            named("file-1"),
        ),
        (
            "GET",
            "/v1/chat/completions/chatcmpl-1/messages",
            named("chatcmpl-1"),
        ),
        ("POST", "/v1/vector_stores/vs_1/search", named("vs_1")),
        ("GET", "/v1/threads/thread_1/runs/run_2", named("thread_1")),
        ("POST", "/v1/batches/batch_1/cancel", named("batch_1")),
        (
            "GET",
            "/v1/fine_tuning/jobs/ftjob-1/events",
            named("ftjob-1"),
        ),
        (
            "GET",
            "/v1/messages/batches/msgbatch_1/results",
            named("msgbatch_1"),
        ),
        ("DELETE", "/v1/assistants/asst_1", named("asst_1")),
    ];
    for (method, path, want) in cases {
        assert_eq!(route(method, path), want, "{method} {path}");
    }
}

#[test]
fn posts_to_collections_create_and_gets_list() {
    assert_eq!(
        route("POST", "/v1/responses"),
        creates(IdField::Id, Stored::UnlessDeclined)
    );
    assert_eq!(
        route("POST", "/v1/chat/completions"),
        creates(IdField::Id, Stored::IfAsked)
    );
    assert_eq!(
        route("POST", "/v1/threads/runs"),
        creates(IdField::ThreadId, Stored::Always)
    );
    assert_eq!(
        route("POST", "/v1/files"),
        creates(IdField::Id, Stored::Always)
    );
    let complete = route("POST", "/v1/uploads/upload_1/complete");
    assert_eq!(complete.named.as_deref(), Some("upload_1"));
    assert_eq!(
        complete.creates,
        Some(Create {
            id_field: IdField::FileId,
            stored: Stored::Always
        })
    );
    for path in [
        "/v1/files",
        "/v1/vector_stores",
        "/v1/assistants",
        "/v1/batches",
        "/v1/fine_tuning/jobs",
        "/v1/chat/completions",
        "/v1/messages/batches",
    ] {
        assert!(route("GET", path).lists, "{path}");
    }
    for (method, path) in [
        ("POST", "/v1/messages"),
        ("POST", "/v1/embeddings"),
        ("GET", "/v1/models"),
        ("GET", "/v1/responses"),
        ("POST", "/files"),
    ] {
        assert_eq!(route(method, path), Route::default(), "{method} {path}");
    }
}

#[test]
fn store_decides_whether_chat_completions_and_responses_create_objects() {
    let chat = Create {
        id_field: IdField::Id,
        stored: Stored::IfAsked,
    };
    assert!(chat.is_stored(Some(br#"{"store":true}"#)));
    assert!(!chat.is_stored(Some(br#"{"model":"m"}"#)));
    let responses = Create {
        id_field: IdField::Id,
        stored: Stored::UnlessDeclined,
    };
    assert!(responses.is_stored(Some(br#"{"model":"m"}"#)));
    assert!(!responses.is_stored(Some(br#"{"store":false}"#)));
}

#[test]
fn body_references_are_found_at_any_depth() {
    let body = br#"{"previous_response_id":"resp_1","conversation":{"id":"conv_2"},
        "tools":[{"type":"file_search","vector_store_ids":["vs_3","vs_4"]}],
        "input":[{"content":[{"type":"input_file","file_id":"file-5"}]}],
        "tool_resources":{"code_interpreter":{"file_ids":["file-6"]}},
        "assistant_id":"asst_7","thread_id":null}"#;
    let mut found = references(body).unwrap();
    found.sort();
    assert_eq!(
        found,
        ["asst_7", "conv_2", "file-5", "file-6", "resp_1", "vs_3", "vs_4"]
    );
    assert_eq!(
        references(br#"{"conversation":"conv_9"}"#).unwrap(),
        ["conv_9"]
    );
    assert_eq!(references(b"not json").unwrap(), Vec::<String>::new());
}

#[test]
fn references_that_cannot_be_ids_are_invalid() {
    for body in [
        r#"{"file_ids":[1]}"#.to_string(),
        r#"{"previous_response_id":7}"#.to_string(),
        r#"{"file_id":""}"#.to_string(),
        format!(r#"{{"file_id":"{}"}}"#, "x".repeat(300)),
        format!(r#"{{"file_ids":[{}]}}"#, vec!["\"f\""; 300].join(",")),
    ] {
        let refused = references(body.as_bytes()).unwrap_err();
        assert_eq!(refused.reason, Reason::InvalidBody, "{body}");
    }
}

#[test]
fn only_the_owner_passes_and_unknown_objects_only_under_the_tenants_prefixes() {
    let acme = owner_digest("acme");
    let globex = owner_digest("globex");
    assert_ne!(acme, globex);
    assert!(check("resp_1", Some(acme), &acme, &[]).is_ok());
    let other = check("resp_1", Some(globex), &acme, &[]).unwrap_err();
    assert_eq!(other.reason, Reason::ProviderObjectNotFound);
    assert!(other.detail.contains("another tenant"));
    let unseen = check("file-old1", None, &acme, &[]).unwrap_err();
    assert_eq!(unseen.reason, Reason::ProviderObjectNotFound);
    let legacy = ["file-old".to_string()];
    assert!(check("file-old1", None, &acme, &legacy).is_ok());
    assert!(
        check("file-old1", Some(globex), &acme, &legacy).is_err(),
        "prefixes never open another tenant's object"
    );
}

/// A plan decides like [`check`] with its tenant's digest, and computes that digest only once
/// an object with a recorded owner is looked up (most requests never name one).
#[test]
fn a_plan_digests_its_tenant_only_against_a_recorded_owner() {
    let mut owners = Remembered::default();
    owners.0.insert("resp_acme".into(), owner_digest("acme"));
    owners
        .0
        .insert("resp_globex".into(), owner_digest("globex"));
    let plan = ObjectPlan::new(Route::default(), "acme", vec!["file-old".into()]);
    assert!(plan.allows("file-old1", &owners).is_ok());
    assert!(plan.allows("resp_unseen", &owners).is_err());
    assert_eq!(plan.owner.get(), None, "no recorded owner: no digest");
    assert!(plan.allows("resp_acme", &owners).is_ok());
    assert_eq!(plan.owner.get(), Some(&owner_digest("acme")));
    let refused = plan.allows("resp_globex", &owners).unwrap_err();
    assert!(
        refused.detail.contains("another tenant"),
        "{}",
        refused.detail
    );
}

#[test]
fn listings_keep_the_tenants_objects_and_their_cursors() {
    let body = br#"{"object":"list","data":[{"id":"file-a"},{"id":"file-b"},{"id":"file-c"}],"first_id":"file-a","last_id":"file-c","has_more":false}"#;
    let out = filter_listing(body, |id| id != "file-b").unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["file-a", "file-c"]);
    assert_eq!(
        (v["first_id"].as_str(), v["last_id"].as_str()),
        (Some("file-a"), Some("file-c"))
    );
    let none = filter_listing(body, |_| false).unwrap();
    let v: Value = serde_json::from_slice(&none).unwrap();
    assert_eq!(v["data"], serde_json::json!([]));
    assert_eq!(v["first_id"], Value::Null);
    assert_eq!(filter_listing(b"[]", |_| true), None);
}

fn entry(id: &str, owner: &str, expires_at: u32) -> Entry {
    Entry {
        id: id_digest(id),
        owner: owner_digest(owner),
        expires_at,
    }
}

#[test]
fn a_bucket_round_trips_and_answers_owners_until_expiry() {
    let mut bucket = Bucket::default();
    assert_eq!(
        bucket.insert(entry("resp_1", "acme", 100), 10),
        Inserted::Added
    );
    assert_eq!(
        bucket.insert(entry("file-2", "globex", 200), 10),
        Inserted::Added
    );
    let bucket = Bucket::decode(&bucket.encode());
    assert_eq!(bucket.len(), 2);
    assert_eq!(
        bucket.owner_of(&id_digest("resp_1"), 50),
        Some(owner_digest("acme"))
    );
    assert_eq!(bucket.owner_of(&id_digest("resp_1"), 100), None, "expired");
    assert_eq!(bucket.owner_of(&id_digest("nope"), 50), None);
    assert_eq!(Bucket::decode(&[1, 2, 3]), Bucket::default());
}

#[test]
fn a_full_bucket_drops_expired_entries_first_then_the_one_closest_to_expiry() {
    let mut bucket = Bucket::default();
    for i in 0..BUCKET_ENTRIES {
        let _ = bucket.insert(entry(&format!("o{i}"), "acme", 1000 + i as u32), 0);
    }
    assert_eq!(
        bucket.insert(entry("new", "acme", 5000), 0),
        Inserted::Evicted
    );
    assert_eq!(bucket.len(), BUCKET_ENTRIES);
    assert_eq!(
        bucket.owner_of(&id_digest("o0"), 0),
        None,
        "closest to expiry went"
    );
    assert!(bucket.owner_of(&id_digest("o1"), 0).is_some());
    // Once some have expired, room is made without evicting live entries.
    assert_eq!(
        bucket.insert(entry("later", "acme", 9000), 1003),
        Inserted::Added
    );
    assert!(bucket.owner_of(&id_digest("o15"), 1003).is_some());
}

#[test]
fn a_hundred_thousand_objects_stay_within_the_stores_bound() {
    // 2,048 buckets of 16: the store never holds more than 32,768 entries (917,504 bytes),
    // however many objects are created; the most recent ones are the ones remembered.
    let buckets = 2048;
    let mut store = vec![Bucket::default(); buckets];
    for i in 0..100_000u32 {
        let id = format!("resp_{i}");
        let digest = id_digest(&id);
        let b = bucket_of(&digest, buckets);
        let _ = store[b].insert(
            Entry {
                id: digest,
                owner: owner_digest(if i % 2 == 0 { "acme" } else { "globex" }),
                expires_at: 1_000_000 + i,
            },
            0,
        );
    }
    let held: usize = store.iter().map(Bucket::len).sum();
    let bytes: usize = store.iter().map(|b| b.encode().len()).sum();
    assert!(held <= buckets * BUCKET_ENTRIES, "{held}");
    assert!(bytes <= buckets * BUCKET_ENTRIES * 28, "{bytes}");
    let last = id_digest("resp_99999");
    assert_eq!(
        store[bucket_of(&last, buckets)].owner_of(&last, 0),
        Some(owner_digest("globex"))
    );
}
