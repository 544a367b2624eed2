//! One `AuditEvent` per invocation of a custom operation, written off the request's path: a
//! record is queued when the invocation ends, and a thread of its own writes what is queued
//! as one store transaction. [`Engine::flush_audit`] (on a clean shutdown)
//! writes what is left before the store closes.

use std::sync::mpsc;
use std::sync::{Arc, Weak};
use std::time::Instant;

use flint_fhir::Error;
use flint_store::Store;
use serde_json::{json, Value};

use super::source::Owner;
use crate::operations::Call;
use crate::Engine;

/// Records waiting for the writer at most; past that, invocations wait for room rather than
/// hold memory without bound.
const QUEUED: usize = 50_000;

/// The most events one transaction writes.
const BATCH: usize = 1000;

/// How long the writer gathers events after the first of a batch: one commit (and its
/// fsync) for all that arrive meanwhile.
const GATHER: std::time::Duration = std::time::Duration::from_millis(100);

/// One invocation, as plain facts: the `AuditEvent` is built on the audit thread, off the
/// request's path.
pub(crate) struct Record {
    code: String,
    /// `(fhirUser, subject)` of the caller.
    caller: (Option<String>, Option<String>),
    owner_reference: String,
    owner_name: String,
    handler_version: String,
    invocation: String,
    /// The target's type and id, when it has them.
    target: Option<(String, Option<String>)>,
    began: i64,
    ended: i64,
    outcome: &'static str,
    description: String,
}

fn outcome_code(error: Option<&Error>) -> (&'static str, String) {
    match error {
        None => ("0", "success".to_string()),
        Some(e) => {
            let text = e
                .issues
                .first()
                .map(|i| i.diagnostics.clone())
                .unwrap_or_default();
            let code = match (e.status(), e.code()) {
                (_, flint_fhir::IssueType::TooCostly | flint_fhir::IssueType::Timeout) => "12",
                (s, _) if s >= 500 => "8",
                _ => "4",
            };
            (code, text)
        }
    }
}

impl Record {
    /// The record of one invocation: action `E`, the outcome (`0` success, `4` refused,
    /// `8` failed, `12` ended by a limit), the caller and the Bot or App as agents, the target
    /// and the handler version that ran as entities.
    pub(crate) fn of(
        call: &Call<'_>,
        code: &str,
        owner: &Owner,
        invocation: &str,
        started: Instant,
        error: Option<&Error>,
    ) -> Record {
        let now = crate::paging::Clock::now(&crate::paging::SystemClock);
        let began = now - i64::try_from(started.elapsed().as_micros()).unwrap_or(0);
        let (outcome, description) = outcome_code(error);
        let caller = &call.ctx.caller;
        Record {
            code: code.to_string(),
            caller: (caller.fhir_user.clone(), caller.subject.clone()),
            owner_reference: owner.reference.clone(),
            owner_name: owner.name.clone(),
            handler_version: owner.versioned(),
            invocation: invocation.to_string(),
            target: call
                .target
                .resource_type
                .clone()
                .map(|rt| (rt, call.target.id.clone())),
            began,
            ended: now,
            outcome,
            description,
        }
    }

    fn event(&self) -> Value {
        let mut user = json!({"requestor": true});
        match &self.caller {
            (Some(r), _) => user["who"] = json!({"reference": r}),
            (None, Some(s)) => user["who"] = json!({"display": s}),
            (None, None) => user["who"] = json!({"display": "anonymous"}),
        }
        let mut entities = vec![json!({
            "what": {"reference": self.handler_version, "display": self.owner_name},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "21", "display": "Job Stream"},
            "detail": [
                {"type": "invocation", "valueString": self.invocation},
                {"type": "handlerVersion", "valueString": self.handler_version}
            ]
        })];
        if let Some((rt, id)) = &self.target {
            let what = match id {
                Some(id) => json!({"reference": format!("{rt}/{id}")}),
                None => json!({"display": rt}),
            };
            entities.insert(0, json!({"what": what}));
        }
        json!({
            "resourceType": "AuditEvent",
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation"},
            "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "operation", "display": "operation"},
                        {"system": format!("{}/operation", flint_fhir::CANONICAL), "code": self.code}],
            "action": "E",
            "period": {
                "start": flint_fhir::datetime::format_instant(self.began),
                "end": flint_fhir::datetime::format_instant(self.ended),
            },
            "recorded": flint_fhir::datetime::format_instant(self.ended),
            "outcome": self.outcome,
            "outcomeDesc": self.description,
            "agent": [
                user,
                {"who": {"reference": self.owner_reference, "display": self.owner_name}, "requestor": false,
                 "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "code": "dataprocessor", "display": "data processor"}]}}
            ],
            "source": {
                "observer": {"display": "Flint"},
                "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}]
            },
            "entity": entities,
        })
    }
}

/// The queue of records and the thread that writes them.
#[derive(Default)]
pub(crate) struct Auditor {
    sender: parking_lot::Mutex<Option<mpsc::SyncSender<Record>>>,
    writer: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
    closed: std::sync::atomic::AtomicBool,
}

impl<S: Store> Engine<S> {
    /// Queues the record of one invocation (written within moments, off the caller's path).
    pub(crate) fn audit(self: &Arc<Self>, record: Record) {
        let auditor = &self.custom.audit;
        if auditor.closed.load(std::sync::atomic::Ordering::SeqCst) {
            // After the flush: written at once.
            write(self, vec![record]);
            return;
        }
        let mut sender = auditor.sender.lock();
        if sender.is_none() {
            let (tx, rx) = mpsc::sync_channel(QUEUED);
            let engine = Arc::downgrade(self);
            let thread = std::thread::Builder::new()
                .name("flint-audit".into())
                .spawn(move || drain(&engine, &rx));
            match thread {
                Ok(handle) => {
                    *auditor.writer.lock() = Some(handle);
                    *sender = Some(tx);
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the audit writer");
                    drop(sender);
                    write(self, vec![record]);
                    return;
                }
            }
        }
        // Sent outside the lock: when the queue is full the invocation waits for room (the
        // writer fell behind), and others may queue meanwhile.
        let tx = sender.clone();
        drop(sender);
        if let Some(tx) = tx {
            if let Err(mpsc::SendError(record)) = tx.send(record) {
                write(self, vec![record]);
            }
        }
    }

    /// Writes every record still queued and stops the writer; later records are written as
    /// they come. Called on a clean shutdown, before the store closes.
    pub fn flush_audit(&self) {
        let auditor = &self.custom.audit;
        auditor
            .closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        drop(auditor.sender.lock().take());
        if let Some(handle) = auditor.writer.lock().take() {
            let _ = handle.join();
        }
    }
}

fn drain<S: Store>(engine: &Weak<Engine<S>>, rx: &mpsc::Receiver<Record>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        let until = Instant::now() + GATHER;
        while batch.len() < BATCH {
            let left = until.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let Some(engine) = engine.upgrade() else {
            tracing::warn!(
                count = batch.len(),
                "the engine is gone: audit events not written"
            );
            return;
        };
        write(&engine, batch);
    }
}

/// Writes records as one store transaction, on the write path every write takes (each event
/// checked and stamped as a create, the plans applied in one job), without the detour through
/// a transaction Bundle: nothing reads an answer.
fn write<S: Store>(engine: &Arc<Engine<S>>, batch: Vec<Record>) {
    let count = batch.len();
    let mut plans = Vec::with_capacity(count);
    for record in batch {
        let target = crate::write::Target::Create {
            rt: "AuditEvent".into(),
            id: crate::new_id(),
        };
        match engine.prepare(
            target,
            crate::write::Content::Resource(record.event()),
            None,
        ) {
            Ok(plan) => plans.push(plan),
            Err(e) => tracing::error!(error = ?e, "an audit event could not be prepared"),
        }
    }
    if plans.is_empty() {
        return;
    }
    let written = crate::lanes::block_on(
        engine
            .store()
            .write(move |txn| crate::write::run_plans(txn, &[], plans, |_, e| e)),
    );
    match written {
        Ok(Some(_)) => engine.written("AuditEvent"),
        Ok(None) => tracing::error!(count, "audit events were not written"),
        Err(e) => tracing::error!(count, error = ?e, "audit events could not be written"),
    }
}
