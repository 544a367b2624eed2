#!/usr/bin/env bash
# Custom operations (issue 10), against the release binary on loopback. Needs wrk, curl and
# python3:   cargo build --release -p flint --bin flint && bash bench/custom.sh
# (The HTTP figure is taken first, on the fresh server.)
#  1. A JavaScript operation that reads its target Patient through `client` and returns a
#     computed Parameters, 64 connections, alternating with a plain read of the same Patient
#     in the same run: requests/s and their ratio (aim >= 0.5).
#  2. An HTTP handler against a trivial local service: median latency of the operation
#     minus the median of calling the service directly, one connection (aim <= 0.3 ms).
#  3. Hot deploy: time from the $deploy response to the new code answering (every request
#     after the response sees it; the figure is the deploy round trip itself).
#  4. Sandbox abuse: read throughput while 4 endless-loop invocations run, as a ratio to idle
#     (aim >= 0.8).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/release
DUR=${DUR:-10s}
PORT=8184
data=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$data"' EXIT
base="http://127.0.0.1:$PORT/fhir"

FLINT_LOG__LEVEL=warn FLINT_APPS__SANDBOX__MAX_EXECUTION_MS=30000 FLINT_APPS__OPERATION_TIMEOUT_SECONDS=60 \
  "$BIN/flint" serve --port $PORT --data-dir "$data/db" > "$data/flint.out" 2>&1 &
until grep -q listening "$data/flint.out" 2>/dev/null; do sleep 0.1; done
post() { curl -sf -X POST "$base/$1" -H 'content-type: application/fhir+json' --data "$2"; }
put() { curl -sf -X PUT "$base/$1" -H 'content-type: application/fhir+json' --data "$2"; }
id=$(post Patient @bench/patient.json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

# A trivial HTTP service (python, threaded, keep-alive) for the HTTP handler.
cat > "$data/service.py" <<'PY'
import http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    wbufsize = -1
    def do_POST(self):
        n = int(self.headers.get("content-length", 0)); self.rfile.read(n)
        body = json.dumps({"resourceType": "Parameters", "parameter": [{"name": "score", "valueDecimal": 0.42}]}).encode()
        self.send_response(200); self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$data/service.py" 8185 &
sleep 0.5

post App '{"resourceType":"App","name":"bench","status":"active","operations":[
 {"name":"score","type":"read","resourceType":"Patient","level":["instance"],
  "handler":{"type":"javascript","code":"exports.handler = async (client, event) => { const p = await client.readResource(\"Patient\", event.target.id); const age = 2026 - Number((p.birthDate || \"2000\").slice(0, 4)); return { age, senior: age >= 65, family: p.name && p.name[0].family }; }"}},
 {"name":"remote","type":"execute","handler":{"type":"http","url":"http://127.0.0.1:8185/score"}},
 {"name":"spin","type":"execute","handler":{"type":"javascript","code":"exports.handler = async () => { const end = Date.now() + 9000; while (Date.now() < end) {} return 1 }"}}
]}' > /dev/null
curl -sf "$base/Patient/$id/\$score" > /dev/null

rps() { wrk "$@" | tee -a "$data/wrk.log" | awk '/Requests\/sec/ {print $2}'; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "== 2. HTTP handler added latency (1 connection, medians of 2000 calls)"
python3 - "$base" <<'PY'
import http.client, json, sys, time, statistics
base = sys.argv[1]
def timed(host, port, path, body, n=2000):
    c = http.client.HTTPConnection(host, port); out = []
    for i in range(n + 200):
        t = time.perf_counter()
        c.request("POST", path, body=body, headers={"content-type": "application/fhir+json"})
        r = c.getresponse(); r.read()
        assert r.status == 200, r.status
        if i >= 200: out.append(time.perf_counter() - t)
    return statistics.median(out) * 1000
port = int(base.split(":")[2].split("/")[0])
direct = timed("127.0.0.1", 8185, "/score", json.dumps({"operation": "remote"}))
via = timed("127.0.0.1", port, "/fhir/$remote", '{"resourceType":"Parameters"}')
print(f"HTTP direct median {direct:.3f} ms, through Flint {via:.3f} ms, added {via - direct:.3f} ms")
PY

echo "== 1. JavaScript operation vs read, 64 connections"
js_runs=(); read_runs=(); ratio_runs=()
for run in 1 2 3; do
  j=$(rps -t2 -c64 -d"$DUR" "$base/Patient/$id/\$score")
  r=$(rps -t2 -c64 -d"$DUR" "$base/Patient/$id")
  js_runs+=("$j"); read_runs+=("$r"); ratio_runs+=("$(python3 -c "print(round($j/$r, 3))")")
  echo "run $run: \$score $j/s, read $r/s"
done
echo "JS median $(median "${js_runs[@]}")/s, read $(median "${read_runs[@]}")/s, ratio $(median "${ratio_runs[@]}")"

echo "== 3. Hot deploy"
bot=$(post Bot '{"resourceType":"Bot","name":"hot"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
post "Bot/$bot/\$deploy" '{"resourceType":"Parameters","parameter":[{"name":"code","valueString":"exports.handler = async () => ({ v: 0 })"}]}' > /dev/null
post OperationDefinition "{\"resourceType\":\"OperationDefinition\",\"name\":\"hot\",\"status\":\"active\",\"kind\":\"operation\",\"code\":\"hot\",\"system\":true,\"type\":false,\"instance\":false,\"affectsState\":false,\"extension\":[{\"url\":\"https://medplum.com/fhir/StructureDefinition/operationDefinition-implementation\",\"valueReference\":{\"reference\":\"Bot/$bot\"}}]}" > /dev/null
python3 - "$base" "$bot" <<'PY'
import http.client, json, sys, time, statistics
base, bot = sys.argv[1], sys.argv[2]
port = int(base.split(":")[2].split("/")[0])
c = http.client.HTTPConnection("127.0.0.1", port)
deploys, first = [], []
for v in range(1, 21):
    code = "exports.handler = async () => ({ v: %d })" % v
    body = json.dumps({"resourceType": "Parameters", "parameter": [{"name": "code", "valueString": code}]})
    t = time.perf_counter()
    c.request("POST", f"/fhir/Bot/{bot}/$deploy", body=body, headers={"content-type": "application/fhir+json"})
    r = c.getresponse(); r.read(); assert r.status == 200
    t1 = time.perf_counter()
    c.request("GET", "/fhir/$hot"); r = c.getresponse(); seen = json.loads(r.read())
    assert seen["v"] == v, seen
    deploys.append((t1 - t) * 1000); first.append((time.perf_counter() - t1) * 1000)
print(f"deploy round trip median {statistics.median(deploys):.2f} ms; first call after it median {statistics.median(first):.2f} ms, always the new code (20 of 20)")
PY

echo "== 4. Reads while 4 endless-loop invocations run (3 runs, idle then busy)"
idle_runs=(); busy_runs=(); abuse_runs=()
for run in 1 2 3; do
  idle=$(rps -t2 -c64 -d"$DUR" "$base/Patient/$id")
  spins=()
  for i in 1 2 3 4; do curl -s -o /dev/null -X POST "$base/\$spin" -H 'content-type: application/fhir+json' --data '{}' & spins+=($!); done
  sleep 0.5
  busy=$(rps -t2 -c64 -d"$DUR" "$base/Patient/$id")
  wait "${spins[@]}"
  idle_runs+=("$idle"); busy_runs+=("$busy"); abuse_runs+=("$(python3 -c "print(round($busy/$idle, 3))")")
  echo "run $run: reads idle $idle/s, with 4 spinning scripts $busy/s"
done
echo "reads idle median $(median "${idle_runs[@]}")/s, busy $(median "${busy_runs[@]}")/s, ratio $(median "${abuse_runs[@]}")"
if grep -q 'Non-2xx' "$data/wrk.log"; then echo "some answers were not 2xx:"; grep 'Non-2xx' "$data/wrk.log"; fi
