-- wrk script: POST an empty Parameters resource (a trivial system operation).
wrk.method = "POST"
wrk.body = '{"resourceType":"Parameters"}'
wrk.headers["Content-Type"] = "application/fhir+json"
