#!/usr/bin/env bash
# REST benchmarks of issue 2: read of a typical Patient (64 connections) against a bare axum
# handler serving the same JSON from memory, and durable creates of a typical Observation
# (32 connections). Three runs each, medians printed. Needs wrk and a release build:
#   cargo build --release -p flint --bin flint --example bare_axum && bash bench/rest.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/release
DUR=${DUR:-10s}
data=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$data"' EXIT

FLINT_LOG__LEVEL=warn "$BIN/flint" serve --port 8181 --data-dir "$data/db" > "$data/flint.out" &
until grep -q listening "$data/flint.out" 2>/dev/null; do sleep 0.1; done
id=$(curl -s -X POST localhost:8181/fhir/Patient -H 'content-type: application/fhir+json' \
      --data @bench/patient.json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
curl -s "localhost:8181/fhir/Patient/$id" > "$data/stored.json"
"$BIN/examples/bare_axum" 8182 "$data/stored.json" > /dev/null &
sleep 0.5

rps() { wrk "$@" | tee -a "$data/wrk.log" | awk '/Requests\/sec/ {print $2}'; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

flint_runs=(); bare_runs=(); ratio_runs=()
for run in 1 2 3; do
  f=$(rps -t2 -c64 -d"$DUR" "http://127.0.0.1:8181/fhir/Patient/$id")
  b=$(rps -t2 -c64 -d"$DUR" "http://127.0.0.1:8182/fhir/Patient/$id")
  flint_runs+=("$f"); bare_runs+=("$b")
  ratio_runs+=("$(python3 -c "print(round($f/$b, 3))")")
  echo "run $run: flint read $f/s, bare axum $b/s"
done
echo "READ  median flint $(median "${flint_runs[@]}")/s, bare axum $(median "${bare_runs[@]}")/s, ratio $(median "${ratio_runs[@]}")"

create_runs=()
for run in 1 2 3; do
  c=$(OBSERVATION_FILE=bench/observation.json rps -t2 -c32 -d"$DUR" -s bench/post-observation.lua "http://127.0.0.1:8181/fhir/Observation")
  create_runs+=("$c")
  echo "run $run: create $c/s"
done
echo "CREATE median $(median "${create_runs[@]}")/s"
curl -s "localhost:8181/fhir/Observation/_history?_count=0" | python3 -c 'import json,sys; print("observations stored:", json.load(sys.stdin)["total"])'
if grep -q "Non-2xx" "$data/wrk.log"; then echo "WARNING: some responses were not 2xx:"; grep "Non-2xx" "$data/wrk.log"; fi
