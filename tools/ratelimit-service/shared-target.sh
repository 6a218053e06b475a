#!/usr/bin/env bash
# Builds or tests the development rate-limit service in a target directory shared by every
# clone on the machine (so RocksDB is compiled once), safely:
#
#   shared-target.sh build TARGET_DIR BIN_COPY   build, then copy the binary to BIN_COPY
#   shared-target.sh test TARGET_DIR             cargo test
#
# - Cargo decides freshness by modification times, not content: a clone whose files are older
#   than what another clone built there (cloned earlier, or checked out with old times) would
#   run the other clone's service and tests. So whenever the last build there was of other
#   sources (a content hash, kept in the target directory), this clone's sources are touched
#   and the package is rebuilt; the dependencies stay.
# - Everything happens under an exclusive lock on TARGET_DIR.lock, so one clone never
#   rebuilds the binary while another runs it; the integration tests run BIN_COPY, this
#   clone's own copy, outside the lock.
set -euo pipefail
mode=$1
target=$2
cd "$(dirname "$0")"
mkdir -p "$target"
exec 9>"$target.lock"
flock 9

stamp=$target/.tenant-guard-ratelimit-sources
sources=$(find . -path ./target -prune -o -type f -print | LC_ALL=C sort | xargs sha256sum \
  | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$sources" ]; then
  echo "shared-target: the last build in $target was of other sources: rebuilding the package"
  find src tests -type f -exec touch {} +
  rm -f "$stamp"
fi
case $mode in
  build)
    cargo build --release --target-dir "$target"
    mkdir -p "$(dirname "$3")"
    cp "$target/release/tenant-guard-ratelimit" "$3.tmp"
    mv -f "$3.tmp" "$3"
    ;;
  test)
    cargo test --release --target-dir "$target"
    ;;
  *)
    echo "usage: $0 build TARGET_DIR BIN_COPY | test TARGET_DIR" >&2
    exit 2
    ;;
esac
echo "$sources" >"$stamp"
