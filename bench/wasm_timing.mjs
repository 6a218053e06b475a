// Runs a wasm32-wasip1 command module under Node's V8 (the engine Envoy embeds; run node with
// --no-liftoff, as proxy-wasm-cpp-host sets it, so everything is TurboFan code), e.g.
// examples/core_timing.rs:
//   node --no-liftoff bench/wasm_timing.mjs target/wasm32-wasip1/release/examples/core_timing.wasm
// The proxy-wasm host functions the library links (module "env") are stubs that fail: the
// timed code never calls them.
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";

const path = process.argv[2];
const wasi = new WASI({ version: "preview1", args: [path], env: {} });
const module = await WebAssembly.compile(await readFile(path));
const imports = wasi.getImportObject();
for (const { module: name, name: field, kind } of WebAssembly.Module.imports(module)) {
  if (kind === "function" && !(imports[name] && field in imports[name])) {
    imports[name] ??= {};
    imports[name][field] = () => { throw new Error(`host function ${name}.${field} called`); };
  }
}
const instance = await WebAssembly.instantiate(module, imports);
// The library also exports proxy-wasm's `_initialize`, which WASI.start refuses beside `_start`.
const { memory, _start } = instance.exports;
wasi.start({ exports: { memory, _start } });
