#!/usr/bin/env python3
"""`make bench-attribution`: where Envoy spends what tenant-guard costs a request, measured in
Envoy by taking one kind of host effect away at a time.

Each variant is the shipped module (target/tenant_guard.wasm) with some of its hostcalls
answered inside the module instead of by Envoy: the import is replaced by a small function
that returns OK without calling the host when the call's key is one of the variant's (for
shared data: when it writes a value to one of them), and calls Envoy otherwise. The filter's
own code is untouched, so a variant does the same work and differs only in what Envoy is asked to do.
`make bench` (bench/run.py) measures every variant alternately with the others, round after
round, and this script prints, per workload, what each effect costs: the variant's Envoy CPU
per request subtracted from the unchanged module's (rebuilt through the same tools, so the
rewrite itself is measured too). The floor is also run reading the six request headers a GET
reads one hostcall each, and in one `get_header_map_pairs`.

    bench/attribution.py [--duration 3] [--rounds 3] [--only get-h1,post-h1,sse-h1] [RUN ARGS]

Other arguments go to bench/run.py as they are (e.g. `--baseline-wasm OLD.wasm`).

Uses binaryen (`wasm-dis`, `wasm-as`, `wasm-opt`). Reports, never asserts; the variants answer
requests as the filter does (bench/run.py still fails a run with one non-2xx answer).
"""

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import run as R  # noqa: E402  (make bench)

OUT = REPO / "target" / "bench-attribution"
OK = 0

# The filter-state keys of the decision and of the usage (src/policy/record.rs).
DECISION_STATE = ["decision", "reason", "request_id", "tenant", "user", "key_id", "credential",
                  "auth"]
USAGE_STATE = ["model", "input_tokens", "output_tokens", "cached_input_tokens",
               "cache_write_tokens", "reasoning_tokens", "cost_usd", "usage_source"]
# The shared-data keys of the benchmark tenant's counters (src/host/shared.rs).
COUNTERS = ["tenant-guard/quota/acme"]

# name: (what it takes away, {import: (keys or None for every call, what it returns)})
VARIANTS = {
    "unchanged": ("nothing (the module through the same rewrite)", {}),
    "no-state-decision": ("the decision's filter state (8 keys)",
                          {"proxy_set_property": (DECISION_STATE, OK)}),
    "no-state-usage": ("the usage's filter state (8 keys)",
                       {"proxy_set_property": (USAGE_STATE, OK)}),
    "no-route-clear": ("the route-cache clear",
                       {"proxy_call_foreign_function": (["clear_route_cache"], OK)}),
    "no-identity-headers": ("setting x-tenant-id and x-user-id",
                            {"proxy_replace_header_map_value": (["x-tenant-id", "x-user-id"],
                                                                OK)}),
    "no-strip": ("removing authorization and accept-encoding",
                 {"proxy_remove_header_map_value": (["authorization", "accept-encoding"], OK)}),
    "no-namespace": ("the namespace's :path and x-tenant-namespace",
                     {"proxy_replace_header_map_value": ([":path", "x-tenant-namespace"], OK)}),
    "no-ratelimit-headers": ("the answer's x-ratelimit-remaining-* headers",
                             {"proxy_replace_header_map_value": (
                                 ["x-ratelimit-remaining-requests",
                                  "x-ratelimit-remaining-tokens"], OK)}),
    "no-body-edit": ("the request body's rewrite (output cap) and its content-length",
                     {"proxy_set_buffer_bytes": (None, OK),
                      "proxy_replace_header_map_value": (["content-length"], OK)}),
    "no-log": ("the per-request log line", {"proxy_log": (None, OK)}),
    "no-metrics": ("counters and histograms", {"proxy_increment_metric": (None, OK),
                                               "proxy_record_metric": (None, OK)}),
    # Only writes of a value: the empty one that creates the key at start must reach Envoy.
    "no-counter-writes": ("writing the tenant's counters to shared data (the CAS set)",
                          {"proxy_set_shared_data": (COUNTERS, OK)}),
}
# Everything above at once: what is left is the module's own work and its reads.
ALL = {}
for _, stubs in VARIANTS.values():
    for name, (keys, ret) in stubs.items():
        have, _ = ALL.get(name, ([], ret))
        ALL[name] = (None if keys is None or have is None else have + keys, ret)
VARIANTS["none"] = ("all of the above", ALL)

FLOOR_VARIANTS = {"six-reads": "reads=one-by-one", "six-in-pairs": "reads=pairs"}

IMPORT = re.compile(r'^ \(import "env" "(\w+)" \(func \$(fimport\$\d+)((?: \(param[^)]*\))*)'
                    r'( \(result i32\))?\)\)$', re.M)


def key_matcher(fn, keys):
    """A function `(ptr, len) -> i32`: 1 when the bytes at ptr are one of `keys`."""
    lines = [f" (func ${fn} (param $p i32) (param $l i32) (result i32)"]
    for key in keys:
        data = key.encode()
        test = "(i32.const 1)"
        for i, byte in enumerate(data):
            test = (f"(i32.and {test} (i32.eq (i32.load8_u offset={i} (local.get $p)) "
                    f"(i32.const {byte})))")
        lines.append(f"  (if (i32.eq (local.get $l) (i32.const {len(data)})) (then "
                     f"(if {test} (then (return (i32.const 1))))))")
    lines.append("  (i32.const 0))")
    return "\n".join(lines)


def variant_text(base, stubs):
    """The module's text with each import of `stubs` answered as it says."""
    added = []
    for name, (keys, ret) in stubs.items():
        found = [m for m in IMPORT.finditer(base) if m.group(1) == name]
        if not found:
            raise SystemExit(f"the module does not import {name}")
        m = found[0]
        fid, params = m.group(2), m.group(3).split()
        types = [t.strip("()") for t in params if t not in ("(param",)]
        real = f"tg$real${fid}"
        base = base.replace(m.group(0), m.group(0).replace(f"${fid}", f"${real}"), 1)
        args = " ".join(f"(local.get ${i})" for i in range(len(types)))
        decl = " ".join(f"(param ${i} {t})" for i, t in enumerate(types))
        if keys is None:
            body = f"(i32.const {ret})"
        else:
            # The key is the first (pointer, length) pair: after the map type for header maps.
            at = 1 if "header_map" in name else 0
            matcher = f"tg$keys${fid}"
            added.append(key_matcher(matcher, keys))
            test = f"(call ${matcher} (local.get ${at}) (local.get ${at + 1}))"
            if name == "proxy_set_shared_data":
                test = f"(i32.and {test} (i32.ne (local.get $3) (i32.const 0)))"
            body = (f"(if {test} (then (return (i32.const {ret}))))\n  (call ${real} {args})")
        added.append(f" (func ${fid} {decl} (result i32)\n  {body})")
    end = base.rstrip().rfind(")")
    return base[:end] + "\n".join(added) + "\n)\n"


def build(base_text, name, stubs, opt_flags):
    wat, wasm = OUT / f"{name}.wat", OUT / f"{name}.wasm"
    wat.write_text(variant_text(base_text, stubs))
    subprocess.run(["wasm-as", *opt_flags["features"], str(wat), "-o", str(wasm) + ".raw"],
                   check=True)
    subprocess.run(["wasm-opt", *opt_flags["all"], str(wasm) + ".raw", "-o", str(wasm)],
                   check=True)
    os.unlink(str(wasm) + ".raw")
    wat.unlink()
    return wasm


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="get-h1,post-h1,sse-h1")
    parser.add_argument("--wasm-opt-flags", default=os.environ.get("WASM_OPT_FLAGS", "-Oz"),
                        help="what `make wasm` gives wasm-opt (the Makefile passes it)")
    args, run_args = parser.parse_known_args()
    flags = shlex.split(args.wasm_opt_flags)
    opt_flags = {"all": flags, "features": [f for f in flags if f.startswith("--enable-")]}

    OUT.mkdir(parents=True, exist_ok=True)
    base = OUT / "base.wat"
    subprocess.run(["wasm-dis", str(R.TG_WASM), "-o", str(base)], check=True)
    base_text = base.read_text()
    modules = {name: build(base_text, name, stubs, opt_flags)
               for name, (_, stubs) in VARIANTS.items()}
    base.unlink()
    command = [sys.executable, str(REPO / "bench" / "run.py"), "--duration", str(args.duration),
               "--rounds", str(args.rounds), "--no-miss", "--no-tenants", "--only", args.only,
               "--budget-report-only", *run_args]
    command += [f"--variant={n}={m}" for n, m in modules.items()]
    command += [f"--floor-variant={n}={c}" for n, c in FLOOR_VARIANTS.items()]
    status = subprocess.run(command).returncode
    if status != 0:
        return status
    report(json.loads((R.OUT / "results.json").read_text()), args.only.split(","))
    return 0


def report(results, workloads):
    """Per workload, what each effect costs: the unchanged module's Envoy CPU per request minus
    the variant's, round by round (both measured in the same round), as the median of the
    rounds and their range."""
    runs = results["runs"]

    def cpu(workload, setup):
        return [r["cpu_us"] for r in runs.get(f"{workload}/{setup}", [])]

    def cell(workload, setup, against):
        pairs = list(zip(cpu(workload, against), cpu(workload, setup)))
        if not pairs:
            return "-"
        diffs = sorted(a - b for a, b in pairs)
        return f"{statistics.median(diffs):+.1f} µs ({diffs[0]:+.0f}..{diffs[-1]:+.0f})"

    print("\nWhat each host effect costs Envoy per request: the unchanged module's Envoy CPU per "
          "request minus the variant's, paired round by round (median of the rounds, and their "
          "range; positive: the effect costs that much)")
    rows = [["tenant-guard (unchanged) adds over passthrough"]
            + [cell(w, "passthrough", "variant-unchanged") for w in workloads],
            ["the floor adds over passthrough"]
            + [cell(w, "passthrough", "floor") for w in workloads]]
    for name, (what, _) in VARIANTS.items():
        if name != "unchanged":
            rows.append([what] + [cell(w, f"variant-{name}", "variant-unchanged")
                                  for w in workloads])
    rows.append(["the rewrite itself (unchanged minus the shipped module)"]
                + [cell(w, "tenant-guard", "variant-unchanged") for w in workloads])
    rows.append(["floor: 6 header reads one by one, against its 2"]
                + [cell(w, "floor", "floor-six-reads") for w in workloads])
    rows.append(["floor: 6 headers in one get_header_map_pairs, against its 2 reads"]
                + [cell(w, "floor", "floor-six-in-pairs") for w in workloads])
    print(R.table(["host effect taken away"] + workloads, rows))


if __name__ == "__main__":
    sys.exit(main())
