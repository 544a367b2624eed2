#!/usr/bin/env python3
"""Pages through every hit of a search, following the sealed `next` links, and prints the
resources per second. The client only scans for the link and counts entries (no JSON parse), so
that the figure is the server's.

Usage: bench/page-through.py 'http://127.0.0.1:8197/fhir/Observation?code=...&_count=1000'
"""
import http.client
import re
import sys
import time
import urllib.parse

NEXT = re.compile(rb'"relation":"next","url":"([^"]*)"')
url = sys.argv[1]
parts = urllib.parse.urlsplit(url)
conn = http.client.HTTPConnection(parts.hostname, parts.port)
start = time.perf_counter()
count = 0
pages = 0
while url:
    parts = urllib.parse.urlsplit(url)
    conn.request("GET", parts.path + ("?" + parts.query if parts.query else ""))
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        sys.exit(f"status {response.status}: {body[:300]!r}")
    pages += 1
    count += body.count(b'"fullUrl"')
    m = NEXT.search(body)
    url = m.group(1).decode() if m else None
elapsed = time.perf_counter() - start
print(f"{count} resources, {pages} pages in {elapsed:.2f} s: {count / elapsed:,.0f} resources/s")
