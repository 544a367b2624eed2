// Times fhirpath.js 5.2.0 on the same data and expressions as the criterion benches.
// Run: NODE_PATH=/tmp/fhirpathjs/node_modules node crates/fhirpath/benches/fhirpath-js.js
const fhirpath = require('fhirpath');
const r4 = require('fhirpath/fhir-context/r4');
const zlib = require('zlib');
const fs = require('fs');
const path = require('path');

const obs = JSON.parse(fs.readFileSync(path.join(__dirname, 'observation.json'), 'utf8'));
const FILTER = "Observation.code.coding.where(system='http://loinc.org').code = '85354-9' and Observation.valueQuantity.value > 140";

function time(label, fn, iters) {
  for (let i = 0; i < Math.min(iters, 2000); i++) fn(); // warm-up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iters; i++) fn();
  const ns = Number(process.hrtime.bigint() - t0) / iters;
  console.log(`${label}: ${(ns / 1000).toFixed(2)} µs/iter (${iters} iterations)`);
}

const filter = fhirpath.compile(FILTER, r4);
console.log('filter result', filter(obs));
time('fhirpath.js compiled filter', () => filter(obs), 200000);

// The Observation SearchParameters, expressions cut down to Observation as Flint does.
const lines = zlib.gunzipSync(fs.readFileSync(path.join(__dirname, '../../fhir/definitions/search-parameters.ndjson.gz'))).toString().split('\n').filter(Boolean);
const params = lines.map(JSON.parse).filter(p => p.expression && p.type !== 'special' &&
  (p.base || []).some(b => b === 'Observation' || b === 'Resource' || b === 'DomainResource'));
function restrict(expr) {
  const parts = []; let depth = 0, quote = false, start = 0;
  for (let i = 0; i < expr.length; i++) {
    const c = expr[i];
    if (c === "'") quote = !quote;
    else if (!quote && c === '(') depth++;
    else if (!quote && c === ')') depth--;
    else if (!quote && depth === 0 && c === '|') { parts.push(expr.slice(start, i)); start = i + 1; }
  }
  parts.push(expr.slice(start));
  return parts.map(p => p.trim()).filter(p => {
    const m = /^\(*([A-Z][A-Za-z]*)/.exec(p);
    return !m || ['Observation', 'Resource', 'DomainResource'].includes(m[1]);
  }).join(' | ');
}
const compiled = [];
for (const p of params) {
  const expr = restrict(p.expression);
  if (!expr) continue;
  try {
    const main = fhirpath.compile(expr, r4);
    const comps = (p.component || []).map(c => fhirpath.compile({ base: 'Observation', expression: c.expression }, r4));
    compiled.push({ main, comps });
  } catch (e) { /* expressions fhirpath.js rejects are left out */ }
}
console.log(`Observation parameters compiled: ${compiled.length}`);
time('fhirpath.js all Observation SearchParameter expressions', () => {
  for (const c of compiled) {
    let items = [];
    try { items = c.main(obs); } catch (e) { /* as Flint, a failing expression yields no values */ }
    // Composite components are evaluated once per selected item.
    for (const comp of c.comps) for (let i = 0; i < items.length; i++) comp(obs);
  }
}, 20000);
