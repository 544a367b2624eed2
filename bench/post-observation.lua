-- wrk script: POST a typical Observation.
local f = io.open(os.getenv("OBSERVATION_FILE") or "bench/observation.json", "r")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/fhir+json"
wrk.headers["Prefer"] = "return=minimal"
