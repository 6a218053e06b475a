// The whole filter module (target/tenant_guard.wasm) timed under Node's V8 against a mock
// proxy-wasm host: every callback of a request, as Envoy makes them, with the host's side
// reduced to a few map lookups. What it measures is the module's own work per request (and
// the count of hostcalls it makes), without Envoy's; `make bench` measures both together.
//
//   node --no-liftoff bench/filter_timing.mjs SCENARIO.json [MODULE.wasm ...]
//
// SCENARIO.json (written by bench/filter_timing.py): {"config": "...", "workloads": {name:
// {"request_headers": [[k, v]...], "request_body": "..."|null, "response_headers": [...],
// "response_body": "..."|null}}}. Each line: best of 7 batches, µs per request, and the
// hostcalls per request by name. With several modules, they alternate batch by batch. First,
// each module's linear memory once configured.
import { readFile } from "node:fs/promises";

const [scenarioPath, ...modulePaths] = process.argv.slice(2);
const scenario = JSON.parse(await readFile(scenarioPath, "utf8"));
const enc = new TextEncoder();
const dec = new TextDecoder();

// proxy-wasm ABI 0.2.1 enums.
const MAP = { 0: "request", 2: "response" };
const BUFFER_REQUEST_BODY = 0, BUFFER_RESPONSE_BODY = 1, BUFFER_PLUGIN_CONFIGURATION = 7;
const OK = 0, NOT_FOUND = 1;

async function load(path) {
  const module = await WebAssembly.compile(await readFile(path));
  let instance;
  const mem = () => new DataView(instance.exports.memory.buffer);
  const bytes = (ptr, len) => new Uint8Array(instance.exports.memory.buffer, ptr, len);
  const str = (ptr, len) => dec.decode(bytes(ptr, len));
  const host = {
    maps: { request: new Map(), response: new Map() },
    buffers: {},
    shared: new Map(),
    state: new Map(),
    counts: new Map(),
    counting: false,
    logs: 0,
    lastLog: "",
  };
  const count = (name) => {
    if (host.counting) host.counts.set(name, (host.counts.get(name) ?? 0) + 1);
  };
  // Hands the module a copy of `data` the way hosts do: through its own allocator.
  const give = (data, ptrPtr, sizePtr) => {
    const ptr = instance.exports.proxy_on_memory_allocate(data.length);
    bytes(ptr, data.length).set(data);
    mem().setUint32(ptrPtr, ptr, true);
    mem().setUint32(sizePtr, data.length, true);
  };
  const env = {
    proxy_log(level, ptr, len) { count("log"); host.logs++; host.lastLog = str(ptr, len); return OK; },
    proxy_get_current_time_nanoseconds(retPtr) {
      count("get_current_time");
      mem().setBigUint64(retPtr, BigInt(Date.now()) * 1000000n, true);
      return OK;
    },
    proxy_get_header_map_value(map, kp, kl, rp, rs) {
      const key = str(kp, kl);
      count(`get_header ${key}`);
      const v = host.maps[MAP[map]]?.get(key);
      if (v === undefined) return NOT_FOUND;
      give(enc.encode(v), rp, rs);
      return OK;
    },
    proxy_get_header_map_pairs(map, rp, rs) {
      count("get_header_pairs");
      const entries = [...(host.maps[MAP[map]] ?? new Map())].map(([k, v]) => [enc.encode(k), enc.encode(v)]);
      let size = 4 + entries.length * 8;
      for (const [k, v] of entries) size += k.length + v.length + 2;
      const out = new Uint8Array(size);
      const dv = new DataView(out.buffer);
      dv.setUint32(0, entries.length, true);
      let o = 4;
      for (const [k, v] of entries) { dv.setUint32(o, k.length, true); dv.setUint32(o + 4, v.length, true); o += 8; }
      for (const [k, v] of entries) { out.set(k, o); o += k.length + 1; out.set(v, o); o += v.length + 1; }
      give(out, rp, rs);
      return OK;
    },
    proxy_replace_header_map_value(map, kp, kl, vp, vl) {
      count(`replace_header ${str(kp, kl)}`); host.maps[MAP[map]]?.set(str(kp, kl), str(vp, vl)); return OK;
    },
    proxy_add_header_map_value(map, kp, kl, vp, vl) {
      count("add_header"); host.maps[MAP[map]]?.set(str(kp, kl), str(vp, vl)); return OK;
    },
    proxy_remove_header_map_value(map, kp, kl) {
      count(`remove_header ${str(kp, kl)}`); host.maps[MAP[map]]?.delete(str(kp, kl)); return OK;
    },
    proxy_set_header_map_pairs() { count("set_header_pairs"); return OK; },
    proxy_get_buffer_bytes(type, start, max, rp, rs) {
      count(`get_buffer ${type}`);
      const b = host.buffers[type];
      if (!b) return NOT_FOUND;
      give(b.subarray(start >>> 0, Math.min(b.length, (start >>> 0) + (max >>> 0))), rp, rs);
      return OK;
    },
    proxy_set_buffer_bytes(type, start, size, vp, vl) {
      count("set_buffer"); host.buffers[type] = bytes(vp, vl).slice(); return OK;
    },
    proxy_get_property(pp, pl, rp, rs) {
      const path = str(pp, pl).replaceAll("\0", ".");
      count(`get_property ${path}`);
      const le64 = (n) => { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt(n), true); return b; };
      const values = {
        "source.address": enc.encode("127.0.0.1:54321"),
        "response.code": le64(200),
        "request.total_size": le64(300),
      };
      const v = values[path];
      if (!v) return NOT_FOUND;
      give(v, rp, rs);
      return OK;
    },
    proxy_set_property(pp, pl, vp, vl) {
      count(`set_property ${str(pp, pl).replaceAll("\0", ".")}`); host.state.set(str(pp, pl), str(vp, vl)); return OK;
    },
    proxy_get_shared_data(kp, kl, rp, rs, casPtr) {
      const key = str(kp, kl);
      count("get_shared_data");
      const e = host.shared.get(key);
      if (!e) return NOT_FOUND;
      give(e.value, rp, rs);
      mem().setUint32(casPtr, e.cas, true);
      return OK;
    },
    proxy_set_shared_data(kp, kl, vp, vl, cas) {
      const key = str(kp, kl);
      count("set_shared_data");
      const e = host.shared.get(key);
      if (e && cas !== 0 && e.cas !== cas) return 8;
      host.shared.set(key, { value: bytes(vp, vl).slice(), cas: (e?.cas ?? 0) + 1 });
      return OK;
    },
    proxy_define_metric(type, np, nl, rp) { count("define_metric"); mem().setUint32(rp, 1, true); return OK; },
    proxy_increment_metric() { count("increment_metric"); return OK; },
    proxy_call_foreign_function(np, nl) { count(`foreign ${str(np, nl)}`); return OK; },
    proxy_set_tick_period_milliseconds() { return OK; },
    proxy_send_local_response() { count("send_local_response"); return OK; },
    proxy_continue_stream() { count("continue_stream"); return OK; },
    proxy_close_stream() { count("close_stream"); return OK; },
    proxy_set_effective_context() { return OK; },
  };
  const wasi = {
    random_get(ptr, len) { bytes(ptr, len).set(crypto.getRandomValues(new Uint8Array(len))); return 0; },
    clock_time_get(id, precision, retPtr) { mem().setBigUint64(retPtr, BigInt(Date.now()) * 1000000n, true); return 0; },
    environ_sizes_get(cPtr, sPtr) { mem().setUint32(cPtr, 0, true); mem().setUint32(sPtr, 0, true); return 0; },
    environ_get() { return 0; },
    fd_write(fd, iovs, n, wPtr) { mem().setUint32(wPtr, 0, true); return 0; },
    proc_exit(code) { throw new Error(`proc_exit ${code}`); },
  };
  const imports = { env: {}, wasi_snapshot_preview1: {} };
  for (const { module: m, name, kind } of WebAssembly.Module.imports(module)) {
    if (kind !== "function") continue;
    const table = m === "env" ? env : wasi;
    imports[m][name] = table[name] ?? (() => { count(`unexpected ${name}`); return 0; });
  }
  instance = await WebAssembly.instantiate(module, imports);
  const x = instance.exports;
  x._initialize?.();
  const config = enc.encode(scenario.config);
  host.buffers[BUFFER_PLUGIN_CONFIGURATION] = config;
  x.proxy_on_context_create(1, 0);
  x.proxy_on_vm_start(1, 0);
  if (!x.proxy_on_configure(1, config.length)) {
    throw new Error(`${path}: configuration refused: ${host.lastLog}`);
  }
  delete host.buffers[BUFFER_PLUGIN_CONFIGURATION];
  // A Wasm VM's memory never shrinks: what configuration peaked at stays with the worker.
  const mib = (x.memory.buffer.byteLength / 1048576).toFixed(2);
  console.log(`configured ${path}: linear memory ${mib} MiB`);
  let next = 2;
  // One request through every callback Envoy makes for it.
  const request = (w) => {
    const id = next++;
    host.maps.request = new Map(w.request_headers);
    host.maps.response = new Map(w.response_headers);
    host.buffers = {};
    x.proxy_on_context_create(id, 1);
    const body = w.request_body != null ? enc.encode(w.request_body) : null;
    x.proxy_on_request_headers(id, w.request_headers.length, body ? 0 : 1);
    if (body) {
      host.buffers[BUFFER_REQUEST_BODY] = body;
      x.proxy_on_request_body(id, body.length, 1);
    }
    x.proxy_on_response_headers(id, w.response_headers.length, w.response_body == null ? 1 : 0);
    if (w.response_body != null) {
      const rb = enc.encode(w.response_body);
      host.buffers[BUFFER_RESPONSE_BODY] = rb;
      x.proxy_on_response_body(id, rb.length, 1);
    }
    x.proxy_on_log(id);
    x.proxy_on_done(id);
    x.proxy_on_delete(id);
  };
  return { path, host, request };
}

const filters = [];
for (const p of modulePaths.length ? modulePaths : ["target/tenant_guard.wasm"]) filters.push(await load(p));

for (const [name, w] of Object.entries(scenario.workloads)) {
  const iterations = w.iterations ?? 20000;
  const best = filters.map(() => Infinity);
  for (const f of filters) {
    for (let i = 0; i < iterations / 4; i++) f.request(w);
    f.host.counting = true;
    f.host.counts.clear();
    f.request(w);
    f.host.counting = false;
  }
  for (let batch = 0; batch < 7; batch++) {
    filters.forEach((f, i) => {
      const start = process.hrtime.bigint();
      for (let n = 0; n < iterations; n++) f.request(w);
      best[i] = Math.min(best[i], Number(process.hrtime.bigint() - start) / 1000 / iterations);
    });
  }
  filters.forEach((f, i) => {
    const total = [...f.host.counts.values()].reduce((a, b) => a + b, 0);
    const calls = [...f.host.counts].map(([k, v]) => (v > 1 ? `${k} ×${v}` : k)).join(", ");
    console.log(`${name.padEnd(10)} ${f.path}: ${best[i].toFixed(2)} µs per request, ${total} hostcalls`);
    console.log(`           ${calls}`);
    if (process.env.SHOW_LOG) console.log(`           log: ${f.host.lastLog}`);
  });
}
