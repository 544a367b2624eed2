//! Batch and transaction Bundles. A transaction is one store job: every entry commits or
//! none does. Entries run in the order the specification gives (DELETE, POST, PUT/PATCH,
//! GET); `urn:uuid:`/`urn:oid:` full URLs, and the full URLs of created entries, are replaced
//! in every reference of every entry, however deeply nested, before anything is written. A
//! batch runs each entry on its own, concurrently, and reports each entry's outcome.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use flint_fhir::{model, Error, IssueType, Result};
use flint_store::{Method, NewVersion, Store, Transaction, Version};
use serde_json::{json, Value};

use crate::bundle::{status_line, BundleBuilder};
use crate::{check_if_match, new_id, parse_stored, patch, stamp, Context, Engine, Stamped};

/// What `Prefer: return=` asks to see of written resources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PreferReturn {
    Minimal,
    #[default]
    Representation,
    OperationOutcome,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct BundleOptions {
    pub prefer: PreferReturn,
}

#[derive(Clone, Debug)]
enum Action {
    Create {
        rt: String,
        id: String,
    },
    Update {
        rt: String,
        id: String,
        if_match: Option<u64>,
    },
    Patch {
        rt: String,
        id: String,
        if_match: Option<u64>,
    },
    Delete {
        rt: String,
        id: String,
        if_match: Option<u64>,
    },
    Read {
        rt: String,
        id: String,
        version: Option<String>,
    },
    /// A conditional entry that needs no write: the create whose criteria matched (with the
    /// match), or the delete whose criteria matched nothing.
    Unchanged {
        rt: String,
        id: String,
        existing: Option<Version>,
    },
}

impl Action {
    fn order(&self) -> u8 {
        match self {
            Action::Delete { .. } => 0,
            Action::Create { .. } | Action::Unchanged { .. } => 1,
            Action::Update { .. } | Action::Patch { .. } => 2,
            Action::Read { .. } => 3,
        }
    }

    fn target(&self) -> (&str, &str) {
        match self {
            Action::Create { rt, id }
            | Action::Update { rt, id, .. }
            | Action::Patch { rt, id, .. }
            | Action::Delete { rt, id, .. }
            | Action::Read { rt, id, .. }
            | Action::Unchanged { rt, id, .. } => (rt, id),
        }
    }
}

#[derive(Clone)]
struct Entry {
    action: Action,
    resource: Option<Value>,
    full_url: Option<String>,
    /// Search criteria of a conditional entry (`ifNoneExist`, or the url's query).
    criteria: Option<String>,
}

/// A conditional of a transaction resolved before its write job (its criteria and the ids
/// they matched). The job runs each again; if one answers differently, something committed in
/// between and the transaction starts over.
struct Check {
    query: flint_store::search::SearchQuery,
    ids: Vec<String>,
}

/// How often a transaction whose conditionals changed under it is tried again.
const CONDITIONAL_ATTEMPTS: usize = 4;

/// The outcome of one entry.
enum Outcome {
    Written { status: u16, version: Version },
    Deleted,
    Read(Version),
    Failed(Error),
}

/// Parses `W/"3"` or `3`.
pub fn parse_etag(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s.strip_prefix("W/").unwrap_or(s);
    s.trim_matches('"').parse().ok()
}

impl<S: Store> Engine<S> {
    /// Processes a `batch` or `transaction` Bundle and returns the response Bundle's JSON.
    ///
    /// # Errors
    /// Not a batch/transaction Bundle (400); for a transaction, any failing entry fails the
    /// whole with that entry's error.
    pub async fn process_bundle(
        self: &Arc<Self>,
        ctx: &Context,
        mut bundle: Value,
        options: BundleOptions,
    ) -> Result<String> {
        if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return Err(
                Error::invalid("expected a Bundle of type batch or transaction").at("resourceType"),
            );
        }
        let kind = bundle.get("type").and_then(Value::as_str).unwrap_or("");
        let kind = kind.to_string();
        let mut raw_entries = match bundle.get_mut("entry").map(Value::take) {
            None => Vec::new(),
            Some(Value::Array(a)) => a,
            Some(_) => {
                return Err(Error::invalid("Bundle.entry must be an array").at("Bundle.entry"))
            }
        };
        match kind.as_str() {
            "transaction" => {
                let mut entries = Vec::with_capacity(raw_entries.len());
                for (i, raw) in raw_entries.iter_mut().enumerate() {
                    entries.push(
                        parse_entry(ctx, std::mem::take(raw), true).map_err(|e| in_entry(e, i))?,
                    );
                }
                self.transaction(ctx, entries, options).await
            }
            "batch" => Ok(self.batch(ctx, raw_entries, options).await),
            other => Err(Error::invalid(format!(
                "a Bundle posted to the server base must be a batch or transaction, not '{other}'"
            ))
            .at("Bundle.type")),
        }
    }

    async fn transaction(
        self: &Arc<Self>,
        ctx: &Context,
        entries: Vec<Entry>,
        options: BundleOptions,
    ) -> Result<String> {
        let conditional = entries.iter().any(|e| {
            e.criteria.is_some()
                || e.resource.as_ref().is_some_and(|r| {
                    let mut found = Vec::new();
                    conditional_references(r, &mut found);
                    !found.is_empty()
                })
        });
        if !conditional {
            return self
                .transaction_once(ctx, entries, options)
                .await?
                .ok_or_else(|| Error::internal("a transaction without conditionals was retried"));
        }
        for _ in 0..CONDITIONAL_ATTEMPTS {
            if let Some(response) = self.transaction_once(ctx, entries.clone(), options).await? {
                return Ok(response);
            }
        }
        Err(Error::conflict(
            "the resources this transaction's conditional entries or references match kept \
             changing while it ran; send it again",
        ))
    }

    /// One attempt at a transaction: `None` when a conditional resolved before the write job
    /// answers differently inside it (nothing was written).
    async fn transaction_once(
        self: &Arc<Self>,
        ctx: &Context,
        mut entries: Vec<Entry>,
        options: BundleOptions,
    ) -> Result<Option<String>> {
        // Conditional entries become plain ones, by searching now; the write job checks the
        // searches still give the same answers.
        let mut checks = Vec::new();
        for (i, entry) in entries.iter_mut().enumerate() {
            self.resolve_conditional(ctx, entry, &mut checks)
                .map_err(|e| in_entry(e, i))?;
        }
        // Resolve placeholders: every full URL of a created entry, and urn: full URLs of updates.
        let mut replacements: HashMap<String, String> = HashMap::new();
        for entry in &entries {
            let Some(full_url) = &entry.full_url else {
                continue;
            };
            match &entry.action {
                Action::Create { rt, id }
                | Action::Unchanged {
                    rt,
                    id,
                    existing: Some(_),
                } => {
                    replacements.insert(full_url.clone(), format!("{rt}/{id}"));
                }
                Action::Update { rt, id, .. } if full_url.starts_with("urn:") => {
                    replacements.insert(full_url.clone(), format!("{rt}/{id}"));
                }
                _ => {}
            }
        }
        // Conditional references (`Patient?identifier=x|1`) must match exactly one resource.
        for (i, entry) in entries.iter().enumerate() {
            let Some(resource) = &entry.resource else {
                continue;
            };
            let mut conditional = Vec::new();
            conditional_references(resource, &mut conditional);
            for reference in conditional {
                if replacements.contains_key(&reference) {
                    continue;
                }
                let (rt, criteria) = reference.split_once('?').unwrap_or((&reference, ""));
                let found = self
                    .checked_matches(ctx, rt, criteria, &mut checks)
                    .map_err(|e| in_entry(e, i))?;
                match found.as_slice() {
                    [one] => {
                        replacements.insert(reference.clone(), format!("{rt}/{}", one.id));
                    }
                    [] => {
                        return Err(in_entry(
                            Error::new(IssueType::NotFound, format!("the conditional reference '{reference}' matches nothing")).with_status(412),
                            i,
                        ))
                    }
                    _ => {
                        return Err(in_entry(
                            Error::new(IssueType::MultipleMatches, format!("the conditional reference '{reference}' matches more than one resource"))
                                .with_status(412),
                            i,
                        ))
                    }
                }
            }
        }
        let mut targets = HashSet::new();
        let mut issues = Vec::new();
        for (i, entry) in entries.iter_mut().enumerate() {
            let (rt, id) = entry.action.target();
            if !matches!(entry.action, Action::Read { .. } | Action::Unchanged { .. })
                && !targets.insert(format!("{rt}/{id}"))
            {
                return Err(in_entry(
                    Error::invalid(format!("{rt}/{id} is the target of more than one entry")),
                    i,
                ));
            }
            if let Some(resource) = &mut entry.resource {
                if let Err(unresolved) = rewrite_references(resource, &replacements) {
                    return Err(in_entry(
                        Error::invalid(format!(
                            "the reference '{unresolved}' matches no entry's fullUrl"
                        )),
                        i,
                    ));
                }
                if matches!(entry.action, Action::Create { .. } | Action::Update { .. }) {
                    if let Err(e) = self.check_resource(rt, resource) {
                        issues.extend(e.issues.into_iter().map(|mut issue| {
                            issue.expression = issue
                                .expression
                                .iter()
                                .map(|x| x.replacen(rt, &format!("Bundle.entry[{i}].resource"), 1))
                                .collect();
                            issue
                        }));
                    }
                }
            }
        }
        if !issues.is_empty() {
            return Err(Error::from_issues(issues));
        }

        let mut order: Vec<usize> = (0..entries.len()).collect();
        order.sort_by_key(|&i| entries[i].action.order());
        let registry = self.registry();
        // Serialize created and updated resources here, not in the write job.
        let mut jobs: Vec<(usize, Action, Payload)> = Vec::with_capacity(order.len());
        for &i in &order {
            let entry = &mut entries[i];
            let payload = match (&entry.action, entry.resource.take()) {
                (Action::Create { id, .. }, Some(r)) => {
                    Payload::Stamped(Stamped::new(r, id, 1, &registry))
                }
                (Action::Update { rt, id, .. }, Some(r)) => {
                    let guess = self.store().read(rt, id)?.map_or(1, |v| v.version + 1);
                    Payload::Stamped(Stamped::new(r, id, guess, &registry))
                }
                (_, Some(r)) => Payload::Json(r),
                (_, None) => Payload::None,
            };
            jobs.push((i, entry.action.clone(), payload));
        }
        let touches_search_parameters = jobs
            .iter()
            .any(|(_, action, _)| action.target().0 == "SearchParameter");
        let outcomes: Option<Vec<Option<Outcome>>> = self
            .store()
            .write(move |txn| {
                for check in &checks {
                    let now = txn.search(&check.query)?;
                    if !now.iter().map(|v| &v.id).eq(check.ids.iter()) {
                        return Ok(None);
                    }
                }
                let mut outcomes: Vec<Option<Outcome>> = (0..jobs.len()).map(|_| None).collect();
                for (i, action, payload) in jobs {
                    let outcome =
                        write_entry(txn, action, payload, &registry).map_err(|e| in_entry(e, i))?;
                    outcomes[i] = outcome;
                }
                Ok(Some(outcomes))
            })
            .await?;
        let Some(outcomes) = outcomes else {
            return Ok(None);
        };
        if touches_search_parameters {
            self.written("SearchParameter");
        }
        let mut out = BundleBuilder::new("transaction-response", None, &[]);
        for outcome in outcomes.into_iter().flatten() {
            response_entry(&mut out, ctx, outcome, options);
        }
        Ok(Some(out.finish()))
    }

    /// Searches conditional criteria before a write job, recording the search for the job
    /// to check.
    fn checked_matches(
        &self,
        ctx: &Context,
        resource_type: &str,
        criteria: &str,
        checks: &mut Vec<Check>,
    ) -> Result<Vec<Version>> {
        let query = self.criteria(ctx, resource_type, criteria, 2)?;
        let found = self.store().search(&query)?.versions;
        checks.push(Check {
            query,
            ids: found.iter().map(|v| v.id.clone()).collect(),
        });
        Ok(found)
    }

    async fn batch(
        self: &Arc<Self>,
        ctx: &Context,
        raw_entries: Vec<Value>,
        options: BundleOptions,
    ) -> String {
        // Entries run in the specification's order, phase by phase (DELETE, POST, PUT/PATCH,
        // GET), so that entries touching the same resource meet in a fixed order; within a
        // phase they run concurrently and the store commits them together.
        let count = raw_entries.len();
        let mut outcomes: Vec<Option<Outcome>> = (0..count).map(|_| None).collect();
        let mut phases: [Vec<(usize, Entry)>; 4] = Default::default();
        for (i, raw) in raw_entries.into_iter().enumerate() {
            match parse_entry(ctx, raw, false) {
                Ok(entry) => phases[usize::from(entry.action.order())].push((i, entry)),
                Err(e) => outcomes[i] = Some(Outcome::Failed(e)),
            }
        }
        for phase in phases {
            let mut tasks = tokio::task::JoinSet::new();
            for (i, entry) in phase {
                let engine = Arc::clone(self);
                let ctx = ctx.clone();
                tasks.spawn(async move { (i, engine.run_batch_entry(&ctx, entry).await) });
            }
            while let Some(joined) = tasks.join_next().await {
                match joined {
                    Ok((i, outcome)) => outcomes[i] = Some(outcome),
                    Err(e) => tracing::error!(error = %e, "a batch entry task failed"),
                }
            }
        }
        let mut out = BundleBuilder::new("batch-response", None, &[]);
        for outcome in outcomes {
            let outcome = outcome
                .unwrap_or_else(|| Outcome::Failed(Error::internal("the entry was not processed")));
            response_entry(&mut out, ctx, outcome, options);
        }
        out.finish()
    }

    /// Turns a conditional entry into a plain one by searching its criteria now.
    fn resolve_conditional(
        &self,
        ctx: &Context,
        entry: &mut Entry,
        checks: &mut Vec<Check>,
    ) -> Result<()> {
        let Some(criteria) = entry.criteria.take() else {
            return Ok(());
        };
        let rt = entry.action.target().0.to_string();
        let found = self.checked_matches(ctx, &rt, &criteria, checks)?;
        let multiple = || {
            Error::new(
                IssueType::MultipleMatches,
                format!("more than one {rt} matches '{criteria}'"),
            )
            .with_status(412)
        };
        entry.action = match (
            std::mem::replace(
                &mut entry.action,
                Action::Unchanged {
                    rt: String::new(),
                    id: String::new(),
                    existing: None,
                },
            ),
            found.as_slice(),
        ) {
            (Action::Create { id, .. }, []) => Action::Create { rt, id },
            (Action::Create { .. }, [one]) => Action::Unchanged {
                rt,
                id: one.id.clone(),
                existing: Some(one.clone()),
            },
            (Action::Update { if_match, .. }, []) => {
                let id = entry
                    .resource
                    .as_ref()
                    .and_then(|r| r.get("id"))
                    .and_then(Value::as_str)
                    .map_or_else(new_id, str::to_string);
                Action::Update { rt, id, if_match }
            }
            (Action::Update { if_match, .. }, [one]) => {
                let body_id = entry
                    .resource
                    .as_ref()
                    .and_then(|r| r.get("id"))
                    .and_then(Value::as_str);
                if body_id.is_some_and(|b| b != one.id) {
                    return Err(Error::invalid(format!(
                        "the resource id differs from the id '{}' the criteria match",
                        one.id
                    )));
                }
                Action::Update {
                    rt,
                    id: one.id.clone(),
                    if_match,
                }
            }
            (Action::Delete { .. }, []) => Action::Unchanged {
                rt,
                id: String::new(),
                existing: None,
            },
            (Action::Delete { if_match, .. }, [one]) => Action::Delete {
                rt,
                id: one.id.clone(),
                if_match,
            },
            (Action::Patch { .. }, []) => {
                return Err(Error::not_found(format!("no {rt} matches '{criteria}'")))
            }
            (Action::Patch { if_match, .. }, [one]) => Action::Patch {
                rt,
                id: one.id.clone(),
                if_match,
            },
            (_, [_, _, ..]) => return Err(multiple()),
            (other, _) => other,
        };
        // The resource's id follows the resolved target.
        if let (Action::Update { id, .. }, Some(Value::Object(r))) =
            (&entry.action, entry.resource.as_mut())
        {
            r.insert("id".into(), Value::String(id.clone()));
        }
        Ok(())
    }

    async fn run_batch_entry(&self, ctx: &Context, mut entry: Entry) -> Outcome {
        // A conditional entry of a batch is the conditional interaction itself: the search
        // and the write run in one store job.
        if let Some(criteria) = entry.criteria.take() {
            return self
                .run_conditional_batch_entry(ctx, entry, &criteria)
                .await
                .unwrap_or_else(Outcome::Failed);
        }
        let result = match entry.action {
            Action::Create { rt, .. } => match entry.resource {
                Some(r) => self.create(&rt, r).await.map(|version| Outcome::Written {
                    status: 201,
                    version,
                }),
                None => Err(Error::invalid("a POST entry needs a resource")),
            },
            Action::Update { rt, id, if_match } => match entry.resource {
                Some(r) => self
                    .update(&rt, &id, r, if_match)
                    .await
                    .map(|w| Outcome::Written {
                        status: if w.created { 201 } else { 200 },
                        version: w.version,
                    }),
                None => Err(Error::invalid("a PUT entry needs a resource")),
            },
            Action::Patch { rt, id, if_match } => match entry.resource.as_ref().map(patch_document)
            {
                Some(Ok(doc)) => {
                    self.patch(&rt, &id, &doc, if_match)
                        .await
                        .map(|w| Outcome::Written {
                            status: 200,
                            version: w.version,
                        })
                }
                Some(Err(e)) => Err(e),
                None => Err(Error::invalid(
                    "a PATCH entry needs a Binary resource holding a JSON Patch",
                )),
            },
            Action::Delete { rt, id, if_match } => self
                .delete(&rt, &id, if_match)
                .await
                .map(|_| Outcome::Deleted),
            Action::Unchanged {
                existing: Some(version),
                ..
            } => Ok(Outcome::Written {
                status: 200,
                version,
            }),
            Action::Unchanged { existing: None, .. } => Ok(Outcome::Deleted),
            Action::Read { rt, id, version } => match version {
                Some(v) => self.vread(&rt, &id, &v),
                None => self.read(&rt, &id),
            }
            .map(Outcome::Read),
        };
        result.unwrap_or_else(Outcome::Failed)
    }
}

impl<S: Store> Engine<S> {
    async fn run_conditional_batch_entry(
        &self,
        ctx: &Context,
        entry: Entry,
        criteria: &str,
    ) -> Result<Outcome> {
        let resource = entry.resource;
        let needs = |what: &str| Error::invalid(format!("a {what} entry needs a resource"));
        match entry.action {
            Action::Create { rt, .. } => {
                let r = resource.ok_or_else(|| needs("POST"))?;
                let (version, created) = self.conditional_create(ctx, &rt, r, criteria).await?;
                Ok(Outcome::Written {
                    status: if created { 201 } else { 200 },
                    version,
                })
            }
            Action::Update { rt, if_match, .. } => {
                let r = resource.ok_or_else(|| needs("PUT"))?;
                let w = self
                    .conditional_update(ctx, &rt, criteria, r, if_match)
                    .await?;
                Ok(Outcome::Written {
                    status: if w.created { 201 } else { 200 },
                    version: w.version,
                })
            }
            Action::Patch { rt, if_match, .. } => {
                let doc = patch_document(resource.as_ref().ok_or_else(|| needs("PATCH"))?)?;
                let w = self
                    .conditional_patch(ctx, &rt, criteria, &doc, if_match)
                    .await?;
                Ok(Outcome::Written {
                    status: 200,
                    version: w.version,
                })
            }
            Action::Delete { rt, .. } => {
                self.conditional_delete(ctx, &rt, criteria).await?;
                Ok(Outcome::Deleted)
            }
            Action::Read { .. } | Action::Unchanged { .. } => {
                Err(Error::invalid("this entry cannot be conditional"))
            }
        }
    }
}

fn in_entry(e: Error, i: usize) -> Error {
    let mut e = e;
    for issue in &mut e.issues {
        issue.diagnostics = format!("Bundle.entry[{i}]: {}", issue.diagnostics);
        if issue.expression.is_empty() {
            issue.expression.push(format!("Bundle.entry[{i}]"));
        }
    }
    e
}

/// What an entry brings to the write job.
enum Payload {
    None,
    Json(Value),
    Stamped(Stamped),
}

impl Payload {
    fn stamped(self, what: &str) -> Result<Stamped> {
        match self {
            Payload::Stamped(s) => Ok(s),
            _ => Err(Error::invalid(format!("a {what} entry needs a resource"))),
        }
    }

    fn json(self) -> Option<Value> {
        match self {
            Payload::Json(v) => Some(v),
            _ => None,
        }
    }
}

/// Runs one write entry of a transaction inside the store job.
fn write_entry(
    txn: &mut dyn Transaction,
    action: Action,
    payload: Payload,
    registry: &flint_search::Registry,
) -> Result<Option<Outcome>> {
    match action {
        Action::Create { rt, id } => {
            let new = payload
                .stamped("POST")?
                .finish(&rt, &id, 1, Method::Create, txn.now())?;
            let version = txn.put(new)?;
            Ok(Some(Outcome::Written {
                status: 201,
                version,
            }))
        }
        Action::Update { rt, id, if_match } => {
            let stamped = payload.stamped("PUT")?;
            let current = txn.current(&rt, &id)?;
            check_if_match(&rt, &id, current.as_ref(), if_match)?;
            let created = current.as_ref().is_none_or(Version::is_deleted);
            let next = current.map_or(1, |c| c.version + 1);
            let version = txn.put(stamped.finish(&rt, &id, next, Method::Update, txn.now())?)?;
            Ok(Some(Outcome::Written {
                status: if created { 201 } else { 200 },
                version,
            }))
        }
        Action::Patch { rt, id, if_match } => {
            let document = patch_document(
                &payload
                    .json()
                    .ok_or_else(|| Error::invalid("a PATCH entry needs a resource"))?,
            )?;
            let current = txn
                .current(&rt, &id)?
                .ok_or_else(|| Error::not_found(format!("{rt}/{id} is not known")))?;
            check_if_match(&rt, &id, Some(&current), if_match)?;
            let mut patched = parse_stored(&current)?;
            patch::apply_json_patch(&mut patched, &document)?;
            if patched.get("id").and_then(Value::as_str) != Some(id.as_str()) {
                return Err(Error::invalid("a patch may not change the resource's id"));
            }
            flint_fhir::validate::validate_resource(model::r4(), &patched)?;
            let next = current.version + 1;
            let index = crate::index_values(&patched, registry);
            let json = stamp(patched, &id, next, txn.now());
            let version = txn.put(NewVersion {
                resource_type: rt,
                id,
                version: next,
                method: Method::Update,
                json: Some(json),
                index,
            })?;
            Ok(Some(Outcome::Written {
                status: 200,
                version,
            }))
        }
        Action::Delete { rt, id, if_match } => {
            let current = txn.current(&rt, &id)?;
            check_if_match(&rt, &id, current.as_ref(), if_match)?;
            if let Some(c) = current.filter(|c| !c.is_deleted()) {
                txn.put(NewVersion {
                    resource_type: rt,
                    id,
                    version: c.version + 1,
                    method: Method::Delete,
                    json: None,
                    index: Vec::new(),
                })?;
            }
            Ok(Some(Outcome::Deleted))
        }
        Action::Unchanged { existing, .. } => Ok(Some(match existing {
            Some(version) => Outcome::Written {
                status: 200,
                version,
            },
            None => Outcome::Deleted,
        })),
        // Reads run last, inside the transaction: they see its writes, and a failing read
        // fails the whole.
        Action::Read { rt, id, version } => {
            let found = match &version {
                Some(v) => {
                    let number = v.parse().map_err(|_| {
                        Error::not_found(format!("{rt}/{id}/_history/{v} is not known"))
                    })?;
                    txn.version(&rt, &id, number)?
                }
                None => txn.current(&rt, &id)?,
            };
            match found {
                None => Err(Error::not_found(format!("{rt}/{id} is not known"))),
                Some(v) if v.is_deleted() => Err(crate::gone(&v)),
                Some(v) => Ok(Some(Outcome::Read(v))),
            }
        }
    }
}

/// The JSON Patch document carried by a PATCH entry: a `Binary` with base64 `data` (the
/// R4 way), or a bare JSON array.
fn patch_document(resource: &Value) -> Result<Value> {
    if resource.is_array() {
        return Ok(resource.clone());
    }
    match resource.get("resourceType").and_then(Value::as_str) {
        Some("Binary") => {
            let data = resource
                .get("data")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::invalid("the Binary has no data"))?;
            let bytes = decode_base64(data)
                .ok_or_else(|| Error::invalid("the Binary's data is not base64"))?;
            serde_json::from_slice(&bytes)
                .map_err(|e| Error::invalid(format!("the patch is not JSON: {e}")))
        }
        Some("Parameters") => Err(Error::not_supported(
            "FHIRPath Patch is not supported yet; send a JSON Patch in a Binary",
        )),
        _ => Err(Error::invalid(
            "a PATCH entry needs a Binary resource holding a JSON Patch",
        )),
    }
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut buf = 0u32;
    let mut bits = 0;
    for b in s.bytes().filter(|b| !b.is_ascii_whitespace() && *b != b'=') {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        buf = (buf << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    Some(out)
}

fn parse_entry(ctx: &Context, mut raw: Value, in_transaction: bool) -> Result<Entry> {
    let request = raw
        .get("request")
        .cloned()
        .ok_or_else(|| Error::invalid("the entry has no request"))?;
    let method = request
        .get("method")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::invalid("the entry has no request.method"))?;
    let url = request
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::invalid("the entry has no request.url"))?;
    let url = relative_url(ctx, url);
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (url, None),
    };
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let if_match = match request.get("ifMatch").and_then(Value::as_str) {
        Some(s) => Some(parse_etag(s).ok_or_else(|| Error::invalid(format!("bad ifMatch '{s}'")))?),
        None => None,
    };
    let resource = raw.get_mut("resource").map(Value::take);
    let full_url = raw
        .get("fullUrl")
        .and_then(Value::as_str)
        .map(str::to_string);
    let model = model::r4();
    let known = |rt: &str| -> Result<String> {
        if model.is_resource_type(rt) {
            Ok(rt.to_string())
        } else {
            Err(Error::not_found(format!("unknown resource type '{rt}'")))
        }
    };
    let mut criteria = None;
    let action = match (method, parts.as_slice()) {
        ("POST", [rt]) => {
            if query.is_some() {
                return Err(Error::invalid(
                    "a POST entry's url is the type alone; criteria go in ifNoneExist",
                ));
            }
            criteria = request
                .get("ifNoneExist")
                .and_then(Value::as_str)
                .map(str::to_string);
            let rt = known(rt)?;
            if resource
                .as_ref()
                .and_then(|r| r.get("resourceType"))
                .and_then(Value::as_str)
                != Some(rt.as_str())
            {
                return Err(Error::invalid(format!(
                    "the entry's resource is not a {rt}"
                )));
            }
            Action::Create { rt, id: new_id() }
        }
        ("PUT", [rt]) if query.is_some() => {
            criteria = query.map(str::to_string);
            Action::Update {
                rt: known(rt)?,
                id: String::new(),
                if_match,
            }
        }
        ("PUT", [rt, id]) => Action::Update {
            rt: known(rt)?,
            id: (*id).to_string(),
            if_match,
        },
        ("PATCH", [rt]) if query.is_some() => {
            criteria = query.map(str::to_string);
            Action::Patch {
                rt: known(rt)?,
                id: String::new(),
                if_match,
            }
        }
        ("PATCH", [rt, id]) => Action::Patch {
            rt: known(rt)?,
            id: (*id).to_string(),
            if_match,
        },
        ("DELETE", [rt]) if query.is_some() => {
            criteria = query.map(str::to_string);
            Action::Delete {
                rt: known(rt)?,
                id: String::new(),
                if_match,
            }
        }
        ("DELETE", [rt, id]) => Action::Delete {
            rt: known(rt)?,
            id: (*id).to_string(),
            if_match,
        },
        ("GET", [rt, id]) if query.is_none() => Action::Read {
            rt: known(rt)?,
            id: (*id).to_string(),
            version: None,
        },
        ("GET", [rt, id, "_history", v]) => Action::Read {
            rt: known(rt)?,
            id: (*id).to_string(),
            version: Some((*v).to_string()),
        },
        ("GET", _) => {
            return Err(Error::not_supported(format!(
                "'GET {url}' (search, history, operations) is not supported inside a Bundle yet"
            )))
        }
        (m, _) => {
            return Err(Error::invalid(format!(
                "cannot process '{m} {url}' in a Bundle"
            )))
        }
    };
    if let (Action::Update { id, .. }, None) = (&action, &criteria) {
        if !flint_fhir::validate::is_valid_id(id) {
            return Err(Error::invalid(format!("'{id}' is not a valid resource id")));
        }
        let body_id = resource
            .as_ref()
            .and_then(|r| r.get("id"))
            .and_then(Value::as_str);
        if body_id != Some(id.as_str()) {
            return Err(Error::invalid(format!(
                "the resource id must match the request URL id '{id}'"
            )));
        }
    }
    if in_transaction
        && matches!(action, Action::Create { .. } | Action::Update { .. })
        && resource.is_none()
    {
        return Err(Error::invalid("the entry needs a resource"));
    }
    Ok(Entry {
        action,
        resource,
        full_url,
        criteria,
    })
}

/// The part of an entry's `request.url` from the resource type on: relative URLs as they are,
/// absolute ones with this server's base (or any other base) removed.
fn relative_url<'u>(ctx: &Context, url: &'u str) -> &'u str {
    if let Some(rest) = url.strip_prefix(ctx.base_url.as_str()) {
        return rest.trim_start_matches('/');
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return url.trim_start_matches('/');
    }
    let path = url.split('?').next().unwrap_or(url);
    let mut offset = 0;
    for segment in path.split('/') {
        if model::r4().is_resource_type(segment) {
            return &url[offset..];
        }
        offset += segment.len() + 1;
    }
    url
}

/// Collects `Type?criteria` references.
fn conditional_references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            for (key, v) in fields {
                match (key.as_str(), v) {
                    ("reference", Value::String(s))
                        if s.split_once('?')
                            .is_some_and(|(rt, _)| model::r4().is_resource_type(rt)) =>
                    {
                        out.push(s.clone());
                    }
                    _ => conditional_references(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| conditional_references(v, out)),
        _ => {}
    }
}

/// Replaces placeholder references. Returns the first `urn:` reference that names no entry.
fn rewrite_references(
    value: &mut Value,
    map: &HashMap<String, String>,
) -> std::result::Result<(), String> {
    match value {
        Value::Object(fields) => {
            for (key, v) in fields.iter_mut() {
                if key == "reference" {
                    if let Value::String(s) = v {
                        if let Some(target) = map.get(s.as_str()) {
                            *s = target.clone();
                        } else if s.starts_with("urn:uuid:") || s.starts_with("urn:oid:") {
                            return Err(s.clone());
                        }
                        continue;
                    }
                }
                rewrite_references(v, map)?;
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter_mut()
            .try_for_each(|v| rewrite_references(v, map)),
        _ => Ok(()),
    }
}

fn response_entry(
    out: &mut BundleBuilder,
    ctx: &Context,
    outcome: Outcome,
    options: BundleOptions,
) {
    match outcome {
        Outcome::Written { status, version } => {
            let response = json!({
                "status": status_line(status),
                "location": ctx.versioned_url(&version.resource_type, &version.id, version.version),
                "etag": format!("W/\"{}\"", version.version),
                "lastModified": flint_fhir::datetime::format_instant(version.last_updated),
            });
            let url = ctx.url(&version.resource_type, &version.id);
            let resource = (options.prefer == PreferReturn::Representation)
                .then_some(())
                .and(version.json.as_deref());
            out.entry(Some(&url), resource, &[("response", response)]);
        }
        Outcome::Deleted => out.entry(
            None,
            None,
            &[("response", json!({"status": status_line(204)}))],
        ),
        Outcome::Read(version) => {
            let response = json!({
                "status": status_line(200),
                "etag": format!("W/\"{}\"", version.version),
                "lastModified": flint_fhir::datetime::format_instant(version.last_updated),
            });
            let url = ctx.url(&version.resource_type, &version.id);
            out.entry(
                Some(&url),
                version.json.as_deref(),
                &[("response", response)],
            );
        }
        Outcome::Failed(e) => {
            if e.is_server_fault() {
                tracing::error!(error = ?e, "batch entry failed");
            }
            let response =
                json!({"status": status_line(e.status()), "outcome": e.to_operation_outcome()});
            out.entry(None, None, &[("response", response)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_nested_references_and_reports_unresolved_ones() {
        let map = HashMap::from([("urn:uuid:1".to_string(), "Patient/abc".to_string())]);
        let mut r = json!({"subject": {"reference": "urn:uuid:1"}, "contained": [{"x": [{"reference": "urn:uuid:1"}]}]});
        rewrite_references(&mut r, &map).unwrap();
        assert_eq!(r["subject"]["reference"], "Patient/abc");
        assert_eq!(r["contained"][0]["x"][0]["reference"], "Patient/abc");
        let mut bad = json!({"subject": {"reference": "urn:uuid:2"}});
        assert_eq!(
            rewrite_references(&mut bad, &map).unwrap_err(),
            "urn:uuid:2"
        );
    }

    #[test]
    fn etags_parse() {
        assert_eq!(parse_etag("W/\"3\""), Some(3));
        assert_eq!(parse_etag("\"3\""), Some(3));
        assert_eq!(parse_etag("3"), Some(3));
        assert_eq!(parse_etag("W/\"x\""), None);
    }
}
