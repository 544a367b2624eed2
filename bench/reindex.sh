#!/usr/bin/env bash
# $reindex throughput: runs POST [base]/$reindex on a store and polls its status URL until it
# ends; prints resources per second. Usage: bash bench/reindex.sh DATA_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/release
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$out"' EXIT
FLINT_LOG__LEVEL=warn "$BIN/flint" serve --port 8184 --data-dir "$1" > "$out/flint.out" &
until grep -q listening "$out/flint.out" 2>/dev/null; do sleep 0.1; done
start=$(date +%s.%N)
status=$(curl -s -D - -o /dev/null -X POST 'localhost:8184/fhir/$reindex' | awk 'tolower($1)=="content-location:" {print $2}' | tr -d '\r')
while [ "$(curl -s -o /dev/null -w '%{http_code}' "$status")" = 202 ]; do sleep 0.2; done
end=$(date +%s.%N)
n=$(curl -s "$status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["entry"][0]["resource"]["parameter"][0]["valueInteger"])')
python3 -c "print(f'reindexed $n resources in {$end-$start:.1f}s: {$n/($end-$start):.0f} resources/s')"
