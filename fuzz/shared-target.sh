#!/usr/bin/env bash
# Runs a cargo-fuzz command (from fuzz/) on the fuzz target directory shared by every clone on
# the machine ($(FUZZ_CACHE)/target, so the instrumented dependencies are built once), safely:
#
#   fuzz/shared-target.sh TARGET_DIR COMMAND [ARGS...]
#
# - Cargo decides freshness by modification times, not content, and its fingerprints of the
#   two path packages (tenant-guard and tenant-guard-fuzz) name their files relative to each
#   package: a clone whose files are older than what another clone built there (cloned
#   earlier, or checked out with old times) would fuzz the other clone's code. So whenever the
#   last build there was of other sources (a content hash kept in the target directory), the
#   fingerprints of those two packages are removed and they are rebuilt; the dependencies stay.
# - Everything happens under an exclusive lock on TARGET_DIR.lock, so one clone never rebuilds
#   a fuzz binary while another runs it.
set -euo pipefail
target=$1
shift
cd "$(dirname "$0")"
mkdir -p "$target"
exec 9>"$target.lock"
flock 9

stamp=$target/.tenant-guard-fuzz-sources
sources=$({ find fuzz_targets Cargo.toml Cargo.lock -type f
            find ../src ../Cargo.toml ../Cargo.lock -type f; } \
  | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$sources" ]; then
  echo "shared-target: the last build in $target was of other sources: rebuilding tenant-guard" \
    "and its fuzz targets"
  find "$target" -type d -name .fingerprint -prune -exec sh -c \
    'for d in "$@"; do rm -rf "$d"/tenant-guard-*; done' sh {} +
  rm -f "$stamp"
fi
"$@"
echo "$sources" >"$stamp"
