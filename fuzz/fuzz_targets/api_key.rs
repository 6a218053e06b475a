//! Reading a request's credential where API keys are configured (`api_key::ApiKeys::read`),
//! then checking a key: never panics; a key is never JWT-shaped, never empty, never padded
//! with whitespace, and was found in a source keys are read from; a refusal's digest is 8 hex
//! digits and its detail a fixed text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenant_guard::policy::api_key::{is_jwt_shaped, Found};
use tenant_guard::policy::config::Config;

fn config() -> &'static Config {
    // Built once per thread and kept: `Config` is not `Sync`.
    thread_local! {
        static CONFIG: &'static Config = Box::leak(Box::new({
            let doc = serde_json::json!({
              "providers": {},
              "identity": {
                "token_sources": [{"header": "authorization", "prefix": "Bearer "},
                                  {"header": "x-token"}],
                "api_key_sources": [{"header": "authorization", "prefix": "Bearer "},
                                    {"header": "x-api-key"}]
              },
              "tenants": {"acme": {"api_keys": [
                {"id": "k", "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}
              ]}}
            });
            Config::parse(doc.to_string().as_bytes()).expect("fixture configuration")
        }));
    }
    CONFIG.with(|config| *config)
}

const HEADERS: [&str; 4] = ["authorization", "x-api-key", "x-token", "other"];

fuzz_target!(|data: &[u8]| {
    let config = config();
    // Lines separated by NUL, each led by a byte that picks its header.
    let headers: Vec<(&str, &[u8])> = data
        .split(|b| *b == 0)
        .filter_map(|line| {
            let (&pick, value) = line.split_first()?;
            Some((HEADERS[usize::from(pick) % HEADERS.len()], value))
        })
        .collect();
    let lines = |name: &str| -> Vec<Vec<u8>> {
        headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.to_vec())
            .collect()
    };
    let first = |name: &str| lines(name).into_iter().next();
    let sources = config
        .token_sources
        .iter()
        .map(|s| (s.header.as_str(), s.prefix.as_deref()));
    match config.api_keys.read(sources, first, lines) {
        Found::Key { key, sources } => {
            assert!(!key.is_empty() && key.trim() == key && !is_jwt_shaped(&key));
            // Found in a source keys are read from (and maybe, the same value, in another).
            assert!(sources.iter().any(|&s| s == 0 || s == 2), "{sources:?}");
            if let Err(refusal) = config.api_keys.check(&key, 1_700_000_000) {
                assert_eq!(refusal.digest.len(), 8);
                assert!(refusal.digest.bytes().all(|b| b.is_ascii_hexdigit()));
                // A fixed text (`&'static str`): never made from the key.
                assert!(
                    refusal.detail.starts_with("unknown API key")
                        || refusal.detail.starts_with("API key ")
                );
            }
        }
        Found::Token { token, source } => {
            assert!(!token.is_empty() && source < config.token_sources.len());
        }
        Found::Missing | Found::Unreadable | Found::Conflict(_) => {}
    }
});
