//! Cost of one invocation through the pool: queue hand-off, a fresh context with the
//! prelude, the user's code loaded from bytecode, the handler called, the result
//! turned into JSON, the context dropped.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use flint_sandbox::{Host, HostRequest, HostResponse, Invocation, Limits, LogLevel, Sandbox};
use serde_json::json;

struct PatientHost;

impl Host for PatientHost {
    fn request(&self, _request: HostRequest) -> HostResponse {
        HostResponse {
            status: 200,
            body: Some(json!({
                "resourceType": "Patient", "id": "p1",
                "birthDate": "1970-05-01", "gender": "female",
                "name": [{"family": "Chalmers", "given": ["Peter", "James"]}]
            })),
        }
    }
    fn log(&self, _level: LogLevel, _message: &str) {}
}

fn invocation(c: &mut Criterion) {
    let sandbox = Sandbox::new(Limits {
        workers: 1,
        niceness: 0,
        ..Limits::default()
    });
    let trivial = sandbox
        .compile("trivial.js", "exports.handler = async () => 1")
        .unwrap();
    let reads = sandbox
        .compile(
            "score.js",
            "exports.handler = async (medplum, event) => {
               const p = await medplum.readResource('Patient', event.target.id);
               const age = 2026 - Number(p.birthDate.slice(0, 4));
               return { resourceType: 'Parameters', parameter: [
                 { name: 'age', valueInteger: age },
                 { name: 'display', valueString: p.name[0].given.join(' ') + ' ' + p.name[0].family } ] };
             }",
        )
        .unwrap();
    let host: Arc<dyn Host> = Arc::new(PatientHost);
    let mut group = c.benchmark_group("sandbox");
    group.bench_function("trivial handler", |b| {
        b.iter(|| {
            sandbox
                .run(&trivial, Invocation::new(json!({}), host.clone()))
                .unwrap()
        })
    });
    group.bench_function("read a Patient, return Parameters", |b| {
        b.iter(|| {
            sandbox
                .run(
                    &reads,
                    Invocation::new(
                        json!({"target": {"type": "Patient", "id": "p1"}}),
                        host.clone(),
                    ),
                )
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, invocation);
criterion_main!(benches);
