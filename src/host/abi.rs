//! The proxy-wasm hostcalls the filter makes on paths a client or an upstream can influence,
//! with every host status coming back as a value.
//!
//! proxy-wasm-rust-sdk 0.2.5 `panic!`s on any status its wrappers do not expect (a header map
//! that is no longer there, a buffer the host refuses, a property it cannot serialise), and a
//! panic kills the worker's VM for all its traffic. These declare the same ABI imports with a
//! plain `u32` status (the SDK's `Status` enum would be undefined behaviour for a code it does
//! not list) and return `Err(code)` instead. What still goes through the SDK, and why, is listed
//! in docs/security.md ("What can still trap").

use std::ptr::{null, null_mut};

use proxy_wasm::types::{BufferType, MapType};

use crate::policy::header_map;

/// A host status other than OK (the ABI's `WasmResult` code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub u32);

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const CAS_MISMATCH: u32 = 8;
const EMPTY: u32 = 7;

/// `proxy_continue_stream` / `proxy_close_stream` stream types.
const HTTP_REQUEST: u32 = 0;
const HTTP_RESPONSE: u32 = 1;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
    ) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: BufferType,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: BufferType,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_close_stream(stream_type: u32) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    fn proxy_register_shared_queue(
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_enqueue_shared_queue(queue_id: u32, value_data: *const u8, value_size: usize) -> u32;
    fn proxy_dequeue_shared_queue(
        queue_id: u32,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
}

fn check(status: u32) -> Result<(), HostError> {
    match status {
        OK => Ok(()),
        other => Err(HostError(other)),
    }
}

/// Takes ownership of a buffer the host allocated in this module (through the SDK's exported
/// allocator), as the SDK does.
///
/// # Safety
/// `data` must be null or a host allocation of `size` bytes made for this call.
unsafe fn owned(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        None
    } else {
        Some(Vec::from_raw_parts(data, size, size))
    }
}

/// A header's value (the first one), as bytes; `None` when absent.
pub fn header(map: MapType, name: &str) -> Result<Option<Vec<u8>>, HostError> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: the pointers are valid for the call; the host writes an allocation it made.
    let status =
        unsafe { proxy_get_header_map_value(map, name.as_ptr(), name.len(), &mut data, &mut size) };
    match status {
        // SAFETY: on OK the host handed over `data` of `size` bytes.
        OK => Ok(Some(unsafe { owned(data, size) }.unwrap_or_default())),
        NOT_FOUND => Ok(None),
        other => Err(HostError(other)),
    }
}

/// Every line of a header, combined into one value with `, ` between them (as RFC 9110 §5.3
/// combines repeated field lines); `None` when absent. It reads the whole map (one hostcall):
/// for where a second line matters, after [`header`] found a first.
pub fn combined_header(map: MapType, name: &str) -> Result<Option<Vec<u8>>, HostError> {
    header_map::combined(&header_map(map)?, name).ok_or(HostError(OK))
}

/// The whole header map, serialized as the ABI does (see `policy::header_map`): one hostcall
/// for every header.
pub fn header_map(map: MapType) -> Result<Vec<u8>, HostError> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: the pointers are valid for the call; the host writes an allocation it made.
    let status = unsafe { proxy_get_header_map_pairs(map, &mut data, &mut size) };
    if status != OK {
        return Err(HostError(status));
    }
    // SAFETY: on OK the host handed over `data` of `size` bytes.
    Ok(unsafe { owned(data, size) }.unwrap_or_default())
}

/// Replaces every value of a header by `value`.
pub fn set_header(map: MapType, name: &str, value: &[u8]) -> Result<(), HostError> {
    // SAFETY: the pointers are valid for the call.
    check(unsafe {
        proxy_replace_header_map_value(map, name.as_ptr(), name.len(), value.as_ptr(), value.len())
    })
}

pub fn remove_header(map: MapType, name: &str) -> Result<(), HostError> {
    // SAFETY: the pointers are valid for the call.
    check(unsafe { proxy_remove_header_map_value(map, name.as_ptr(), name.len()) })
}

/// The whole of a body buffer (empty when there is none).
pub fn buffer(buffer: BufferType) -> Result<Vec<u8>, HostError> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: the pointers are valid for the call.
    let status = unsafe { proxy_get_buffer_bytes(buffer, 0, usize::MAX, &mut data, &mut size) };
    match status {
        // SAFETY: on OK the host handed over `data` of `size` bytes.
        OK => Ok(unsafe { owned(data, size) }.unwrap_or_default()),
        NOT_FOUND => Ok(Vec::new()),
        other => Err(HostError(other)),
    }
}

/// Replaces the first `size` bytes of a body buffer by `value`.
pub fn set_buffer(buffer: BufferType, size: usize, value: &[u8]) -> Result<(), HostError> {
    // SAFETY: the pointers are valid for the call.
    check(unsafe { proxy_set_buffer_bytes(buffer, 0, size, value.as_ptr(), value.len()) })
}

/// A property path as the ABI wants it: the parts joined by NUL bytes.
fn property_path(path: &[&str]) -> Vec<u8> {
    path.join("\0").into_bytes()
}

/// A property's serialised value; `None` when the host has none.
pub fn property(path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
    let path = property_path(path);
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: the pointers are valid for the call.
    let status = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    match status {
        // SAFETY: on OK the host handed over `data` of `size` bytes.
        OK => Ok(unsafe { owned(data, size) }),
        NOT_FOUND => Ok(None),
        other => Err(HostError(other)),
    }
}

/// A property holding a 64-bit integer (`request.total_size`, `response.code`, ...).
pub fn integer_property(path: &[&str]) -> Option<u64> {
    let bytes = property(path).ok()??;
    <[u8; 8]>::try_from(bytes.as_slice())
        .ok()
        .map(u64::from_le_bytes)
}

/// Filter state `wasm.<name>`.
pub fn set_filter_state(name: &str, value: &[u8]) -> Result<(), HostError> {
    // A path of one part is the part itself (no NUL separators).
    // SAFETY: the pointers are valid for the call.
    check(unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) })
}

/// A shared-data value and its cas; `Ok((None, None))` for a key that does not exist.
pub fn shared_data(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
    let mut data = null_mut();
    let mut size = 0;
    let mut cas = 0;
    // SAFETY: the pointers are valid for the call.
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match status {
        // SAFETY: on OK the host handed over `data` of `size` bytes (or none).
        OK => Ok((unsafe { owned(data, size) }, (cas != 0).then_some(cas))),
        NOT_FOUND => Ok((None, None)),
        other => Err(HostError(other)),
    }
}

/// How a shared-data write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Done,
    /// Someone wrote the key since `cas`.
    CasMismatch,
}

/// Writes a shared-data value if the key's cas is still `cas` (`None`: unconditionally).
pub fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> Result<Write, HostError> {
    // SAFETY: the pointers are valid for the call.
    let status = unsafe {
        proxy_set_shared_data(
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
            cas.unwrap_or(0),
        )
    };
    match status {
        OK => Ok(Write::Done),
        CAS_MISMATCH => Ok(Write::CasMismatch),
        other => Err(HostError(other)),
    }
}

/// Answers the client with a local reply instead of the upstream.
pub fn send_local_response(
    status: u32,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), HostError> {
    let mut pairs = Vec::new();
    pairs.extend_from_slice(&u32::try_from(headers.len()).unwrap_or(0).to_le_bytes());
    for (name, value) in headers {
        for len in [name.len(), value.len()] {
            pairs.extend_from_slice(&u32::try_from(len).unwrap_or(0).to_le_bytes());
        }
    }
    for (name, value) in headers {
        for part in [name.as_bytes(), value.as_bytes()] {
            pairs.extend_from_slice(part);
            pairs.push(0);
        }
    }
    // SAFETY: the pointers are valid for the call.
    check(unsafe {
        proxy_send_local_response(
            status,
            null(),
            0,
            body.as_ptr(),
            body.len(),
            pairs.as_ptr(),
            pairs.len(),
            -1,
        )
    })
}

/// Lets a request that a callback paused go on.
pub fn resume_request() -> Result<(), HostError> {
    // SAFETY: no pointers.
    check(unsafe { proxy_continue_stream(HTTP_REQUEST) })
}

/// Resets the response: what follows never reaches the client.
pub fn reset_response() -> Result<(), HostError> {
    // SAFETY: no pointers.
    check(unsafe { proxy_close_stream(HTTP_RESPONSE) })
}

/// Makes hostcalls that follow act on another context (a stream, from the root's timer).
pub fn set_effective_context(context_id: u32) -> Result<(), HostError> {
    // SAFETY: no pointers.
    check(unsafe { proxy_set_effective_context(context_id) })
}

/// Defines a counter; its id.
pub fn define_counter(name: &str) -> Result<u32, HostError> {
    let mut id = 0;
    // SAFETY: the pointers are valid for the call. Metric type 0 is a counter.
    check(unsafe { proxy_define_metric(0, name.as_ptr(), name.len(), &mut id) }).map(|()| id)
}

/// Defines a gauge; its id. [`increment_counter`] moves it (up or down).
pub fn define_gauge(name: &str) -> Result<u32, HostError> {
    let mut id = 0;
    // SAFETY: the pointers are valid for the call. Metric type 1 is a gauge.
    check(unsafe { proxy_define_metric(1, name.as_ptr(), name.len(), &mut id) }).map(|()| id)
}

pub fn increment_counter(id: u32, by: i64) -> Result<(), HostError> {
    // SAFETY: no pointers.
    check(unsafe { proxy_increment_metric(id, by) })
}

/// Sets a gauge to `value`.
pub fn record_metric(id: u32, value: u64) -> Result<(), HostError> {
    // SAFETY: no pointers.
    check(unsafe { proxy_record_metric(id, value) })
}

/// Registers a shared queue of this root context (its `on_queue_ready` gets the queue's news,
/// posted to this worker's event loop); the queue's id.
pub fn register_shared_queue(name: &str) -> Result<u32, HostError> {
    let mut id = 0;
    // SAFETY: the pointers are valid for the call.
    check(unsafe { proxy_register_shared_queue(name.as_ptr(), name.len(), &mut id) }).map(|()| id)
}

/// Appends `value` to a shared queue.
pub fn enqueue_shared_queue(queue_id: u32, value: &[u8]) -> Result<(), HostError> {
    // SAFETY: the pointers are valid for the call.
    check(unsafe { proxy_enqueue_shared_queue(queue_id, value.as_ptr(), value.len()) })
}

/// Takes the oldest item of a shared queue; `None` when it is empty.
pub fn dequeue_shared_queue(queue_id: u32) -> Result<Option<Vec<u8>>, HostError> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: the pointers are valid for the call.
    let status = unsafe { proxy_dequeue_shared_queue(queue_id, &mut data, &mut size) };
    match status {
        // SAFETY: on OK the host handed over `data` of `size` bytes (or none).
        OK => Ok(Some(unsafe { owned(data, size) }.unwrap_or_default())),
        EMPTY => Ok(None),
        other => Err(HostError(other)),
    }
}
