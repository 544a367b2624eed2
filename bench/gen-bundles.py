#!/usr/bin/env python3
"""Writes synthetic patient transaction Bundles (urn:uuid references) for import benchmarks.

    python3 bench/gen-bundles.py OUT_DIR [PATIENTS] [SEED] [OBSERVATIONS_PER_PATIENT]

Each Bundle holds one Patient with Encounters, Conditions, Observations (vital signs and labs
with skewed LOINC codes, dates over ten years) and MedicationRequests, about 50 resources.
"""
import json
import os
import random
import sys
import uuid

LOINC = [("8867-4", "Heart rate", "/min", 60, 100), ("8480-6", "Systolic blood pressure", "mm[Hg]", 100, 160),
         ("8462-4", "Diastolic blood pressure", "mm[Hg]", 60, 100), ("29463-7", "Body weight", "kg", 50, 120),
         ("8302-2", "Body height", "cm", 150, 200), ("2339-0", "Glucose", "mg/dL", 70, 180),
         ("2093-3", "Cholesterol", "mg/dL", 150, 280), ("4548-4", "Hemoglobin A1c", "%", 4, 10),
         ("718-7", "Hemoglobin", "g/dL", 11, 17), ("2160-0", "Creatinine", "mg/dL", 0.5, 1.5)]
WEIGHTS = [30, 20, 20, 10, 5, 5, 4, 3, 2, 1]
CONDITIONS = [("44054006", "Diabetes mellitus type 2"), ("38341003", "Hypertension"), ("195967001", "Asthma"),
              ("55822004", "Hyperlipidemia"), ("40055000", "Chronic sinusitis")]


def urn():
    return "urn:uuid:" + str(uuid.UUID(int=random.getrandbits(128), version=4))


def entry(full_url, resource):
    return {"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}


def date(rng):
    return f"{rng.randint(2014, 2023)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def bundle(rng, n, observations=40):
    pid = urn()
    family = rng.choice(["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis"])
    entries = [entry(pid, {"resourceType": "Patient",
                           "identifier": [{"system": "http://example.org/mrn", "value": f"MRN{n:08d}"}],
                           "name": [{"use": "official", "family": family, "given": [rng.choice(["Ann", "Bob", "Cy", "Di"])]}],
                           "gender": rng.choice(["male", "female"]), "birthDate": f"{rng.randint(1940, 2010)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
                           "address": [{"city": "Springfield", "state": "MA", "postalCode": "01101"}]})]
    encounters = []
    for _ in range(2):
        eid = urn()
        encounters.append(eid)
        d = date(rng)
        entries.append(entry(eid, {"resourceType": "Encounter", "status": "finished",
                                   "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                                   "subject": {"reference": pid}, "period": {"start": d + "T09:00:00Z", "end": d + "T10:00:00Z"}}))
    for code, display in rng.sample(CONDITIONS, 3):
        entries.append(entry(urn(), {"resourceType": "Condition",
                                     "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                                     "code": {"coding": [{"system": "http://snomed.info/sct", "code": code, "display": display}]},
                                     "subject": {"reference": pid}, "encounter": {"reference": rng.choice(encounters)}, "onsetDateTime": date(rng)}))
    for _ in range(observations):
        code, display, unit, lo, hi = rng.choices(LOINC, WEIGHTS)[0]
        entries.append(entry(urn(), {"resourceType": "Observation", "status": "final",
                                     "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
                                     "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
                                     "subject": {"reference": pid}, "encounter": {"reference": rng.choice(encounters)},
                                     "effectiveDateTime": date(rng) + "T08:30:00Z",
                                     "valueQuantity": {"value": round(rng.uniform(lo, hi), 1), "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}}))
    for _ in range(4):
        entries.append(entry(urn(), {"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                                     "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "860975"}]},
                                     "subject": {"reference": pid}, "authoredOn": date(rng)}))
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def main():
    out = sys.argv[1]
    patients = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    random.seed(int(sys.argv[3]) if len(sys.argv) > 3 else 42)
    observations = int(sys.argv[4]) if len(sys.argv) > 4 else 40
    rng = random.Random(random.getrandbits(64))
    os.makedirs(out, exist_ok=True)
    total = 0
    for n in range(patients):
        b = bundle(rng, n, observations)
        total += len(b["entry"])
        with open(os.path.join(out, f"patient-{n:06d}.json"), "w") as f:
            json.dump(b, f, separators=(",", ":"))
    print(f"{patients} bundles, {total} resources in {out}")


if __name__ == "__main__":
    main()
