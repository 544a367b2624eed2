#!/usr/bin/env bash
# XML against JSON (issue 9): a read by id of the same Patient as application/fhir+json and as
# application/fhir+xml, alternating in the same server, 64 connections. Three runs each,
# medians printed. Needs wrk and a release build:
#   cargo build --release -p flint --bin flint && bash bench/xml.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/release
DUR=${DUR:-10s}
data=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$data"' EXIT

FLINT_LOG__LEVEL=warn "$BIN/flint" serve --port 8185 --data-dir "$data/db" > "$data/flint.out" &
until grep -q listening "$data/flint.out" 2>/dev/null; do sleep 0.1; done
id=$(curl -s -X POST localhost:8185/fhir/Patient -H 'content-type: application/fhir+json' \
      --data @bench/patient.json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
curl -sf -H 'accept: application/fhir+xml' "localhost:8185/fhir/Patient/$id" > /dev/null

rps() { wrk "$@" | tee -a "$data/wrk.log" | awk '/Requests\/sec/ {print $2}'; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

xml_runs=(); json_runs=(); ratio_runs=()
for run in 1 2 3; do
  x=$(rps -t2 -c64 -d"$DUR" -H 'accept: application/fhir+xml' "http://127.0.0.1:8185/fhir/Patient/$id")
  j=$(rps -t2 -c64 -d"$DUR" -H 'accept: application/fhir+json' "http://127.0.0.1:8185/fhir/Patient/$id")
  xml_runs+=("$x"); json_runs+=("$j")
  ratio_runs+=("$(python3 -c "print(round($x/$j, 3))")")
  echo "run $run: XML $x/s, JSON $j/s"
done
echo "XML median $(median "${xml_runs[@]}")/s, JSON $(median "${json_runs[@]}")/s, ratio $(median "${ratio_runs[@]}")"
if grep -q 'Non-2xx' "$data/wrk.log"; then echo "some answers were not 2xx:"; grep 'Non-2xx' "$data/wrk.log"; fi
