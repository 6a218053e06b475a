//! One HTTP stream: gathers the request's facts, asks the core for a decision, executes it, and
//! writes the record.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

use crate::host::root::Worker;
use crate::policy::decision::{self, Decision, HeaderEdit, RequestFacts};
use crate::policy::denial::{self, Reason};
use crate::policy::record::{Record, RequestInfo};

pub struct Filter {
    worker: Rc<RefCell<Worker>>,
    /// Set once the request headers were decided; written to the log in `on_log`.
    record: Option<Record>,
}

impl Filter {
    pub fn new(worker: Rc<RefCell<Worker>>) -> Filter {
        Filter {
            worker,
            record: None,
        }
    }
}

/// A request header's raw bytes (client input: never assume UTF-8).
fn request_header(name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
}

fn lossy(bytes: Option<Vec<u8>>) -> String {
    bytes
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

impl Context for Filter {}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let raw_path = request_header(":path").unwrap_or_default();
        let path_only = raw_path.split(|b| *b == b'?').next().unwrap_or_default();
        let decision = match super::now() {
            Some(now) => {
                let mut worker = self.worker.borrow_mut();
                let Worker { config, cache } = &mut *worker;
                let tenant_header = config.tenant_header.as_deref().and_then(request_header);
                let facts = RequestFacts {
                    path: path_only,
                    credential: decision::find_credential(&config.token_sources, request_header),
                    tenant_header: tenant_header.as_deref(),
                    now,
                };
                decision::decide(config, cache, facts)
            }
            // Without a clock no expiry can be checked: fail closed.
            None => decision::deny(Reason::InvalidToken, "host clock unavailable"),
        };

        let request_id = lossy(request_header("x-request-id"));
        let method = lossy(request_header(":method"));
        let path = String::from_utf8_lossy(&raw_path);
        let record = Record::new(
            &decision,
            RequestInfo {
                request_id: &request_id,
                method: &method,
                path: &path,
            },
        );
        for (key, value) in record.filter_state() {
            // Filter state `wasm.<key>`, for %FILTER_STATE(wasm.<key>:PLAIN)% in access logs.
            let _ = hostcalls::set_property(vec![key], Some(value.as_bytes()));
        }
        self.record = Some(record);

        match decision {
            Decision::Bypass => Action::Continue,
            Decision::Admit(admission) => {
                for edit in &admission.header_edits {
                    let _ = match edit {
                        HeaderEdit::Set(name, value) => {
                            hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))
                        }
                        HeaderEdit::Remove(name) => {
                            hostcalls::remove_map_value(MapType::HttpRequestHeaders, name)
                        }
                    };
                }
                Action::Continue
            }
            Decision::Deny(denial) => {
                let reply = denial::reply(denial.reason);
                let headers = reply
                    .headers
                    .iter()
                    .map(|(n, v)| (*n, v.as_str()))
                    .collect();
                let _ = hostcalls::send_http_response(
                    reply.status,
                    headers,
                    Some(reply.body.as_bytes()),
                );
                Action::Pause
            }
        }
    }

    fn on_log(&mut self) {
        let Some(mut record) = self.record.take() else {
            return;
        };
        record.status = hostcalls::get_property(vec!["response", "code"])
            .ok()
            .flatten()
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(u64::from_le_bytes)
            .and_then(|code| u32::try_from(code).ok());
        log::info!("{}", record.to_json());
    }
}
