#!/usr/bin/env bash
# Bulk export throughput (issue 9): a system-level $export of the synthetic set (default:
# 10,000 patients, 1,100,000 resources), timed from kick-off to the manifest, then the files
# counted. Makes and imports the set into DATA_DIR when it is not there yet (a few minutes).
# Needs a release build:
#   cargo build --release -p flint --bin flint && bash bench/export.sh [DATA_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/release
DATA=${1:-/tmp/flint-bench-1m}
if [ ! -f "$DATA/db/flint.sqlite" ]; then
  python3 bench/gen-bundles.py "$DATA/bundles" 10000 7 100
  FLINT_LOG__LEVEL=warn "$BIN/flint" import --data-dir "$DATA/db" "$DATA/bundles"
fi
rm -rf "$DATA/db/exports"
out=$(mktemp)
trap 'kill $(jobs -p) 2>/dev/null; rm -f "$out"' EXIT
FLINT_LOG__LEVEL=warn "$BIN/flint" serve --port 8186 --data-dir "$DATA/db" > "$out" &
until grep -q listening "$out" 2>/dev/null; do sleep 0.1; done

python3 - <<'PY'
import json, time, urllib.request
base = "http://127.0.0.1:8186/fhir"
req = urllib.request.Request(base + "/$export", headers={"prefer": "respond-async", "accept": "application/fhir+json"})
start = time.time()
with urllib.request.urlopen(req) as r:
    assert r.status == 202, r.status
    status = r.headers["content-location"]
while True:
    with urllib.request.urlopen(status) as r:
        if r.status == 200:
            manifest = json.load(r)
            break
    time.sleep(0.05)
took = time.time() - start
total = sum(o["count"] for o in manifest["output"])
print(f"EXPORT {total} resources in {len(manifest['output'])} files, {took:.1f} s: {total / took:,.0f} resources/s")
PY
du -sh "$DATA/db/exports"
