#!/usr/bin/env python3
"""Regenerates tests/fixtures/r4-examples.ndjson.gz: the example instances of the R4
examples file of flint-xml (every resource that is not a conformance resource of the core
package), one JSON resource per line, in the original order.

Usage: tools/extract-examples.py [path/to/r4-examples.ndjson.gz]
(default: ../../main/crates/xml/tests/fixtures/r4-examples.ndjson.gz, relative to the crate)
"""
import gzip
import json
import os
import sys

CONFORMANCE = {
    "CapabilityStatement",
    "CodeSystem",
    "CompartmentDefinition",
    "ConceptMap",
    "ImplementationGuide",
    "NamingSystem",
    "OperationDefinition",
    "SearchParameter",
    "StructureDefinition",
    "ValueSet",
}

crate = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
source = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    crate, "..", "..", "main", "crates", "xml", "tests", "fixtures", "r4-examples.ndjson.gz")
target = os.path.join(crate, "tests", "fixtures", "r4-examples.ndjson.gz")

kept = 0
with gzip.open(source, "rt", encoding="utf-8") as src, \
        gzip.GzipFile(target, "wb", mtime=0, compresslevel=9) as out:
    for line in src:
        if not line.strip():
            continue
        resource = json.loads(line)
        if resource.get("resourceType") in CONFORMANCE:
            continue
        # The line as written: re-serializing would change decimals (`1.50`).
        out.write(line.rstrip("\n").encode() + b"\n")
        kept += 1
print(f"{kept} example resources written to {target} ({os.path.getsize(target)} bytes)")
