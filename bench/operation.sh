#!/usr/bin/env bash
# Operations framework overhead (issue 9): a trivial system operation ($healthcheck) through
# POST with a Parameters body, against a plain read by id of a Patient, alternating in the
# same run, 64 connections. Three runs each, medians printed. Needs wrk and a release build:
#   cargo build --release -p flint --bin flint && bash bench/operation.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/release
DUR=${DUR:-10s}
data=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$data"' EXIT

FLINT_LOG__LEVEL=warn "$BIN/flint" serve --port 8183 --data-dir "$data/db" > "$data/flint.out" &
until grep -q listening "$data/flint.out" 2>/dev/null; do sleep 0.1; done
id=$(curl -s -X POST localhost:8183/fhir/Patient -H 'content-type: application/fhir+json' \
      --data @bench/patient.json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
curl -sf -X POST localhost:8183/fhir/\$healthcheck -H 'content-type: application/fhir+json' \
      --data '{"resourceType":"Parameters"}' > /dev/null

rps() { wrk "$@" | tee -a "$data/wrk.log" | awk '/Requests\/sec/ {print $2}'; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

op_runs=(); read_runs=(); ratio_runs=()
for run in 1 2 3; do
  o=$(rps -t2 -c64 -d"$DUR" -s bench/post-parameters.lua "http://127.0.0.1:8183/fhir/\$healthcheck")
  r=$(rps -t2 -c64 -d"$DUR" "http://127.0.0.1:8183/fhir/Patient/$id")
  op_runs+=("$o"); read_runs+=("$r")
  ratio_runs+=("$(python3 -c "print(round($o/$r, 3))")")
  echo "run $run: POST \$healthcheck $o/s, read $r/s"
done
echo "OPERATION median $(median "${op_runs[@]}")/s, read $(median "${read_runs[@]}")/s, ratio $(median "${ratio_runs[@]}")"
if grep -q 'Non-2xx' "$data/wrk.log"; then echo "some answers were not 2xx:"; grep 'Non-2xx' "$data/wrk.log"; fi
