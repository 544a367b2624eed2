#!/usr/bin/env python3
"""Regenerates tests/fixtures/r4-examples.ndjson.gz from the official R4 examples package.

    cd /tmp && npm pack hl7.fhir.r4.examples@4.0.1 && tar xzf hl7.fhir.r4.examples-4.0.1.tgz
    python3 tools/vendor-xml-examples.py /tmp/package

The fixture holds one resource per line, each line the original file's JSON with the whitespace
outside strings removed (no re-serialisation, so decimals such as `1.50` stay as written).

Not everything fits the size budget (the package is ~18 MB gzipped), so the selection is:
every example (every resource of a non-conformance type, and every Bundle that is not a bundle
of conformance resources), then the smallest conformance resources of each type, then further
conformance resources smallest first, as many as fit in the budget. Lines are sorted by file
name and written with gzip level 9 and mtime 0, so the output is reproducible byte for byte.
"""

import argparse
import gzip
import json
import os
import sys

# Resource types that are definitions rather than examples.
CONFORMANCE = {
    "CapabilityStatement", "CodeSystem", "CompartmentDefinition", "ConceptMap",
    "ExampleScenario", "GraphDefinition", "ImplementationGuide", "MessageDefinition",
    "NamingSystem", "OperationDefinition", "SearchParameter", "StructureDefinition",
    "StructureMap", "TerminologyCapabilities", "ValueSet",
}

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.normpath(os.path.join(HERE, "..", "tests", "fixtures", "r4-examples.ndjson.gz"))


def minify(text):
    """Drops the whitespace outside JSON strings, keeping every other character as written."""
    out = []
    in_string = False
    escaped = False
    for ch in text:
        if in_string:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
            out.append(ch)
        elif ch not in " \t\r\n":
            out.append(ch)
    return "".join(out)


def is_conformance(resource):
    rt = resource.get("resourceType")
    if rt in CONFORMANCE:
        return True
    if rt == "Bundle":
        entries = resource.get("entry") or []
        types = {e.get("resource", {}).get("resourceType") for e in entries}
        return bool(types) and types <= CONFORMANCE
    return False


def render(selected):
    """selected: list of (file name, line); sorted by file name."""
    data = "".join(line + "\n" for _, line in sorted(selected)).encode("utf-8")
    return gzip.compress(data, compresslevel=9, mtime=0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", help="the unpacked package/ folder of hl7.fhir.r4.examples")
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--budget", type=int, default=4_000_000, help="gzipped bytes")
    args = parser.parse_args()

    examples, conformance, seen = [], [], set()
    for name in sorted(os.listdir(args.package)):
        if not name.endswith(".json") or name == "package.json":
            continue
        with open(os.path.join(args.package, name), encoding="utf-8") as f:
            text = f.read()
        resource = json.loads(text)
        if not isinstance(resource, dict) or "resourceType" not in resource:
            continue
        line = minify(text)
        if line in seen:  # the package holds a few files twice under two names
            continue
        seen.add(line)
        entry = (name, line)
        (conformance if is_conformance(resource) else examples).append((resource, entry))

    selected = [entry for _, entry in examples]
    if len(render(selected)) > args.budget:
        sys.exit("the examples alone exceed the budget")

    # The smallest conformance resource of each type first, then the rest smallest first.
    by_size = sorted(conformance, key=lambda c: (len(c[1][1]), c[1][0]))
    firsts, rest, types = [], [], set()
    for resource, entry in by_size:
        rt = resource["resourceType"]
        if rt == "Bundle" or rt in types:
            rest.append(entry)
        else:
            types.add(rt)
            firsts.append(entry)
    ordered = firsts + rest

    # Binary search for the longest prefix of `ordered` that fits.
    lo, hi = 0, len(ordered)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(render(selected + ordered[:mid])) <= args.budget:
            lo = mid
        else:
            hi = mid - 1
    selected += ordered[:lo]
    data = render(selected)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "wb") as f:
        f.write(data)
    print(
        f"{len(selected)} resources ({len(examples)} examples, {lo} of {len(conformance)} "
        f"conformance resources), {len(data)} bytes -> {args.out}"
    )


if __name__ == "__main__":
    main()
