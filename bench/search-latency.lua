-- wrk script: Observation?subject=Patient/X&code=Y&date=ge... with X drawn from a file of
-- patient ids (PATIENTS_FILE), and the latency distribution printed at the end.
local ids = {}
for line in io.lines(os.getenv("PATIENTS_FILE") or "/tmp/patients.txt") do
  ids[#ids + 1] = line
end
local codes = {"8867-4", "8480-6", "29463-7", "2339-0"}
math.randomseed(42)
request = function()
  local id = ids[math.random(#ids)]
  local code = codes[math.random(#codes)]
  return wrk.format("GET", "/fhir/Observation?subject=Patient/" .. id .. "&code=http://loinc.org|" .. code .. "&date=ge2018-01-01")
end
done = function(summary, latency, requests)
  io.write(string.format("median %.2f ms, p99 %.2f ms, %d requests, %d errors\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
