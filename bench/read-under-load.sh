#!/usr/bin/env bash
# Read-by-id latency alone and with 2, 4 and 8 expensive searches in flight (issue 8).
# Usage: bash bench/read-under-load.sh DATA_DIR   (a store imported from bench/gen-bundles.py)
# Needs wrk and a release build (CARGO_TARGET_DIR/release/flint).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/release
DATA=$1
DUR=${DUR:-10s}
SEARCH=${SEARCH:-'Observation?value-quantity=gt0&_total=accurate&_count=1'}
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$out"' EXIT
FLINT_LOG__LEVEL=warn FLINT_SEARCH__TIMEOUT_MS=600000 "$BIN/flint" serve --port 8183 --data-dir "$DATA" > "$out/flint.out" &
until grep -q listening "$out/flint.out" 2>/dev/null; do sleep 0.1; done
id=$(curl -s 'localhost:8183/fhir/Patient?_count=1' | python3 -c 'import json,sys; print(json.load(sys.stdin)["entry"][0]["resource"]["id"])')
one=$( { /usr/bin/time -f %e curl -s -o /dev/null "localhost:8183/fhir/$SEARCH"; } 2>&1 )
echo "one expensive search alone: ${one}s ($SEARCH)"
for n in 0 2 4 8; do
  pids=()
  for _ in $(seq 1 "$n"); do
    ( while true; do curl -s -o /dev/null "localhost:8183/fhir/$SEARCH"; done ) &
    pids+=($!)
  done
  sleep 1
  wrk -t1 -c8 -d"$DUR" --latency "http://127.0.0.1:8183/fhir/Patient/$id" > "$out/wrk.$n"
  if [ "$n" -gt 0 ]; then
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait "${pids[@]}" 2>/dev/null || true
  fi
  p50=$(awk '/ 50%/ {print $2}' "$out/wrk.$n"); p99=$(awk '/ 99%/ {print $2}' "$out/wrk.$n")
  rps=$(awk '/Requests\/sec/ {print $2}' "$out/wrk.$n")
  echo "searches in flight: $n  read p50 $p50  p99 $p99  $rps req/s"
done
