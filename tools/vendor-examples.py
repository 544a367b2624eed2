#!/usr/bin/env python3
"""Vendors a curated subset of the official HL7 FHIR R4 examples (npm package
hl7.fhir.r4.examples@4.0.1, CC0) as one gzipped NDJSON fixture for the search tests.

Usage: tools/vendor-examples.py [PACKAGE_DIR]   (default /tmp/ex/package)

The output is reproducible: resources are sorted by type and id, serialized with sorted keys,
and gzipped with mtime 0, so re-running on the same package gives the same bytes.
"""
import gzip
import io
import json
import os
import sys

TYPES = {
    "Patient", "Practitioner", "Organization", "Observation", "Encounter", "Condition",
    "Procedure", "MedicationRequest", "AllergyIntolerance", "Immunization", "DiagnosticReport",
    "CarePlan", "Location", "Group",
    # RiskAssessment is the one R4 type among the examples with a number parameter
    # (probability), so the number type gets exercised against real data.
    "RiskAssessment",
}
MAX_FILE = 200 * 1024
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates/flint/tests/fixtures/r4-examples.ndjson.gz")


def main():
    pkg = sys.argv[1] if len(sys.argv) > 1 else "/tmp/ex/package"
    chosen = {}
    for name in sorted(os.listdir(pkg)):
        path = os.path.join(pkg, name)
        if not name.endswith(".json") or os.path.getsize(path) > MAX_FILE:
            continue
        try:
            with open(path, encoding="utf-8") as f:
                r = json.load(f)
        except (ValueError, UnicodeDecodeError):
            continue
        if not isinstance(r, dict) or r.get("resourceType") not in TYPES or "id" not in r:
            continue
        key = (r["resourceType"], r["id"])
        # Two files with the same type and id would overwrite each other on PUT; keep the first.
        chosen.setdefault(key, r)
    lines = [json.dumps(chosen[k], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
             for k in sorted(chosen)]
    raw = ("\n".join(lines) + "\n").encode("utf-8")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as g:
        g.write(raw)
    with open(OUT, "wb") as f:
        f.write(buf.getvalue())
    print(f"{len(lines)} resources, {len(buf.getvalue())} bytes -> {OUT}")


if __name__ == "__main__":
    main()
