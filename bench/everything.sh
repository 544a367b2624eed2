#!/usr/bin/env bash
# Patient/[id]/$everything latency (issue 9): one patient with 1,000 resources (700
# Observations, 200 Conditions, 100 Encounters) among 20 such patients (20,000 resources in
# the store), one connection, for the first page (default _count 50) and for the whole
# compartment in one page (_count=1000); wrk's latency distribution gives the median. Needs
# wrk and a release build:
#   cargo build --release -p flint --bin flint && bash bench/everything.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/release
DUR=${DUR:-10s}
data=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$data"' EXIT

FLINT_LOG__LEVEL=warn "$BIN/flint" serve --port 8184 --data-dir "$data/db" > "$data/flint.out" &
until grep -q listening "$data/flint.out" 2>/dev/null; do sleep 0.1; done

python3 - <<'PY'
import json, urllib.request
def post(bundle):
    req = urllib.request.Request("http://127.0.0.1:8184/fhir", data=json.dumps(bundle).encode(),
                                 headers={"content-type": "application/fhir+json"}, method="POST")
    with urllib.request.urlopen(req) as r:
        assert r.status == 200, r.status
for p in range(20):
    pid = f"p{p}"
    entries = [{"resource": {"resourceType": "Patient", "id": pid, "name": [{"family": f"F{p}"}]},
                "request": {"method": "PUT", "url": f"Patient/{pid}"}}]
    for i in range(700):
        entries.append({"resource": {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": f"20{10 + i % 15}-01-01",
            "valueQuantity": {"value": 60 + i % 40, "unit": "/min"}}, "request": {"method": "POST", "url": "Observation"}})
    for i in range(200):
        entries.append({"resource": {"resourceType": "Condition", "subject": {"reference": f"Patient/{pid}"},
            "code": {"text": f"condition {i}"}}, "request": {"method": "POST", "url": "Condition"}})
    for i in range(99):
        entries.append({"resource": {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
            "subject": {"reference": f"Patient/{pid}"}, "period": {"start": "2020-01-01", "end": "2020-01-02"}},
            "request": {"method": "POST", "url": "Encounter"}})
    post({"resourceType": "Bundle", "type": "transaction", "entry": entries})
PY
n=$(curl -s "localhost:8184/fhir/Patient/p7/\$everything?_count=1000" | python3 -c 'import json,sys; b=json.load(sys.stdin); print(len(b["entry"]))')
echo "entries in one page: $n"

latency() { wrk -t1 -c1 -d"$DUR" --latency "$1" | tee -a "$data/wrk.log" | awk '/^ +50%/ {m=$2} /^ +99%/ {p=$2} /Requests\/sec/ {r=$2} END {print "median " m ", p99 " p ", " r " req/s"}'; }
echo "EVERYTHING first page (_count 50): $(latency "http://127.0.0.1:8184/fhir/Patient/p7/\$everything")"
echo "EVERYTHING whole (_count 1000):    $(latency "http://127.0.0.1:8184/fhir/Patient/p7/\$everything?_count=1000")"
if grep -q 'Non-2xx' "$data/wrk.log"; then echo "some answers were not 2xx:"; grep 'Non-2xx' "$data/wrk.log"; fi
