#!/usr/bin/env python3
"""Vendors the FHIR R4 (4.0.1) core definitions into crates/fhir/definitions.

Reads the official NPM-style package (hl7.fhir.r4.core-4.0.1.tgz) and writes one gzipped
NDJSON file per kind of definition. Narrative, differentials and mappings are dropped: the
server needs structure, search parameters, operations, compartments and terminology, not
documentation prose. Run once when the package changes:

    python3 tools/vendor-definitions.py ../shared/data/r4-core/hl7.fhir.r4.core-4.0.1.tgz
"""
import gzip
import json
import os
import sys
import tarfile

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "fhir", "definitions")
ELEMENT_PROSE = ("definition", "comment", "requirements", "mapping", "alias", "meaningWhenMissing")


def slim(res):
    res.pop("text", None)
    if res.get("resourceType") == "StructureDefinition":
        res.pop("differential", None)
        res.pop("mapping", None)
        for e in res.get("snapshot", {}).get("element", []):
            for k in ELEMENT_PROSE:
                e.pop(k, None)
    return res


def bucket(res):
    rt = res["resourceType"]
    if rt == "StructureDefinition":
        if res.get("derivation") == "constraint" or res.get("kind") == "logical":
            return "profiles"
        return "types"
    return {
        "SearchParameter": "search-parameters",
        "OperationDefinition": "operation-definitions",
        "CompartmentDefinition": "compartment-definitions",
        "ValueSet": "terminology",
        "CodeSystem": "terminology",
        "ConceptMap": "terminology",
        "NamingSystem": "terminology",
    }.get(rt)


def main(path):
    buckets = {}
    with tarfile.open(path) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if not member.name.endswith(".json") or "/." in member.name:
                continue
            res = json.load(tar.extractfile(member))
            if not isinstance(res, dict) or "resourceType" not in res:
                continue
            b = bucket(res)
            if b:
                buckets.setdefault(b, []).append(slim(res))
    os.makedirs(OUT, exist_ok=True)
    for name, items in sorted(buckets.items()):
        target = os.path.join(OUT, name + ".ndjson.gz")
        with gzip.GzipFile(target, "wb", compresslevel=9, mtime=0) as f:
            for res in items:
                f.write(json.dumps(res, separators=(",", ":"), ensure_ascii=False).encode() + b"\n")
        print(f"{target}: {len(items)} resources, {os.path.getsize(target) // 1024} KiB")


if __name__ == "__main__":
    main(sys.argv[1])
