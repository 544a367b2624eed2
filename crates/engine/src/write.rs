//! The one implementation of every write: create, update, patch, delete and their
//! conditional forms, used alike by single interactions, batch and transaction entries and
//! the importer.
//!
//! A write happens in two steps. [`Engine::resolve`] finds its target (searching conditional
//! criteria) and [`Engine::prepare`] does everything that needs no lock: parsing, applying a
//! patch, validation, index extraction and serialization, outside the writer thread. What
//! reaches the writer is a [`Plan`] and the conditional searches it relied on ([`Check`]s):
//! the job runs each search again and checks each patched resource is still at the version
//! patched, and only then writes. If anything moved in between, nothing is written and the
//! whole is prepared again.

use flint_fhir::{Error, IssueType, Result};
use flint_store::search::SearchQuery;
use flint_store::{Method, NewVersion, Store, Transaction, Version};
use serde_json::Value;

use crate::request::{Body, Headers, Interaction, Request};
use crate::{check_if_match, new_id, parse_stored, search, Context, Engine, Stamped};

/// Most resources one conditional delete removes; more matches are refused (412).
pub const MAX_CONDITIONAL_DELETE: usize = 100;

/// How often a write whose conditions moved under it is prepared again.
pub(crate) const ATTEMPTS: usize = 5;

/// A conditional search made while preparing, to be made again inside the write job.
#[derive(Clone, Debug)]
pub(crate) struct Check {
    pub query: SearchQuery,
    pub ids: Vec<String>,
    /// The last transaction committed before the search ran.
    pub seen: flint_store::TxNumber,
}

impl Check {
    /// Whether the search reads its own type alone (no chain, no `_has`): then it can only
    /// answer differently if a resource of that type was written since.
    fn own_type_only(&self) -> bool {
        fn plain(p: &flint_store::search::Predicate) -> bool {
            use flint_store::search::Predicate;
            match p {
                Predicate::Chain { .. } | Predicate::Has { .. } => false,
                Predicate::Not(inner) => inner.iter().all(plain),
                _ => true,
            }
        }
        self.query.types.is_empty()
            && !self.query.all_types
            && self.query.clauses.iter().flatten().all(plain)
    }
}

/// How long a conditional search may hold the writer when it must run again inside the
/// write job (the single writer stalls every other write meanwhile).
const CHECK_IN_WRITER: std::time::Duration = std::time::Duration::from_secs(2);

/// What a write is about, once its conditional criteria are resolved.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    /// A new resource with this id.
    Create { rt: String, id: String },
    /// A resource updated, or created with the client's id.
    Update { rt: String, id: String },
    /// An existing resource patched.
    Patch { rt: String, id: String },
    /// Resources deleted (one, or every match of conditional criteria).
    Delete { rt: String, ids: Vec<String> },
    /// Nothing to write: the create whose criteria matched (with the match), or the
    /// conditional delete that matched nothing.
    Keep {
        rt: String,
        existing: Option<Version>,
    },
    /// A read inside a transaction's job (after its writes, seeing them).
    Read {
        rt: String,
        id: String,
        version: Option<u64>,
    },
}

impl Target {
    pub fn resource_type(&self) -> &str {
        match self {
            Target::Create { rt, .. }
            | Target::Update { rt, .. }
            | Target::Patch { rt, .. }
            | Target::Delete { rt, .. }
            | Target::Keep { rt, .. }
            | Target::Read { rt, .. } => rt,
        }
    }

    /// The one resource written, if the write is about one.
    pub fn id(&self) -> Option<&str> {
        match self {
            Target::Create { id, .. } | Target::Update { id, .. } | Target::Patch { id, .. } => {
                Some(id)
            }
            Target::Delete { ids, .. } if ids.len() == 1 => Some(&ids[0]),
            Target::Keep {
                existing: Some(v), ..
            } => Some(&v.id),
            _ => None,
        }
    }
}

/// A write as the request asked for it, before its criteria are resolved.
#[derive(Clone, Debug)]
pub(crate) enum Intent {
    Create {
        rt: String,
        if_none_exist: Option<String>,
    },
    Update {
        rt: String,
        id: String,
    },
    ConditionalUpdate {
        rt: String,
        criteria: String,
    },
    Patch {
        rt: String,
        id: String,
    },
    ConditionalPatch {
        rt: String,
        criteria: String,
    },
    Delete {
        rt: String,
        id: String,
    },
    ConditionalDelete {
        rt: String,
        criteria: String,
    },
    /// A read or vread entry of a transaction: part of its job, so that a failing read
    /// fails the whole.
    Read {
        rt: String,
        id: String,
        version: Option<String>,
    },
}

impl Intent {
    /// The write a request asks for, with its `If-Match` where the interaction takes one;
    /// `None` for a request that is not a write. Reads by id and version count too (as
    /// [`Intent::Read`]): a transaction runs them in its write job.
    ///
    /// # Errors
    /// A malformed `If-Match`, or a conditional interaction without criteria (400).
    pub(crate) fn of(request: &Request) -> Result<Option<(Intent, Option<u64>)>> {
        let if_match = || match request.headers.if_match.as_deref() {
            None => Ok(None),
            Some(s) => crate::parse_etag(s).map(Some).ok_or_else(|| {
                Error::invalid(format!(
                    "If-Match '{s}' is not a version ETag such as W/\"3\""
                ))
            }),
        };
        let criteria = || crate::core::criteria_of(&request.params);
        let s = String::clone;
        Ok(Some(match &request.interaction {
            Interaction::Create { rt } => (
                Intent::Create {
                    rt: s(rt),
                    if_none_exist: request.headers.if_none_exist.clone(),
                },
                None,
            ),
            Interaction::Update { rt, id } => (
                Intent::Update {
                    rt: s(rt),
                    id: s(id),
                },
                if_match()?,
            ),
            Interaction::ConditionalUpdate { rt } => (
                Intent::ConditionalUpdate {
                    rt: s(rt),
                    criteria: criteria()?,
                },
                if_match()?,
            ),
            Interaction::Patch { rt, id } => (
                Intent::Patch {
                    rt: s(rt),
                    id: s(id),
                },
                if_match()?,
            ),
            Interaction::ConditionalPatch { rt } => (
                Intent::ConditionalPatch {
                    rt: s(rt),
                    criteria: criteria()?,
                },
                if_match()?,
            ),
            Interaction::Delete { rt, id } => (
                Intent::Delete {
                    rt: s(rt),
                    id: s(id),
                },
                if_match()?,
            ),
            Interaction::ConditionalDelete { rt } => (
                Intent::ConditionalDelete {
                    rt: s(rt),
                    criteria: criteria()?,
                },
                None,
            ),
            Interaction::Read { rt, id } => (
                Intent::Read {
                    rt: s(rt),
                    id: s(id),
                    version: None,
                },
                None,
            ),
            Interaction::Vread { rt, id, vid } => (
                Intent::Read {
                    rt: s(rt),
                    id: s(id),
                    version: Some(s(vid)),
                },
                None,
            ),
            _ => return Ok(None),
        }))
    }

    /// The body this write needs, read from the request's.
    ///
    /// # Errors
    /// A missing or malformed resource or patch, or an unsupported media type (400/415).
    pub(crate) fn content(&self, headers: &Headers, body: Body) -> Result<Content> {
        Ok(match self {
            Intent::Create { .. } | Intent::Update { .. } | Intent::ConditionalUpdate { .. } => {
                Content::Resource(crate::core::resource_body(headers, body)?)
            }
            Intent::Patch { .. } | Intent::ConditionalPatch { .. } => {
                Content::Patch(crate::core::patch_body(headers, body)?)
            }
            Intent::Delete { .. } | Intent::ConditionalDelete { .. } | Intent::Read { .. } => {
                Content::None
            }
        })
    }
}

/// What the body of a write is.
#[derive(Clone, Debug)]
pub(crate) enum Content {
    None,
    Resource(Value),
    /// A JSON Patch document.
    Patch(Value),
}

/// A write ready for the writer.
pub(crate) enum Plan {
    Create {
        rt: String,
        id: String,
        stamped: Stamped,
    },
    Update {
        rt: String,
        id: String,
        stamped: Stamped,
        if_match: Option<u64>,
    },
    /// Written only if the resource is still at `base`.
    Patched {
        rt: String,
        id: String,
        stamped: Stamped,
        base: u64,
    },
    Delete {
        rt: String,
        ids: Vec<String>,
        if_match: Option<u64>,
    },
    Keep(Option<Version>),
    Read {
        rt: String,
        id: String,
        version: Option<u64>,
    },
}

/// What a write did.
#[derive(Clone, Debug)]
pub enum Done {
    /// A new version; `created` when the resource did not exist (or was deleted) before.
    Written { version: Version, created: bool },
    /// A conditional create whose criteria matched this resource: nothing written.
    Existing(Version),
    /// Deletions: the deletion versions written (none when nothing was there to delete).
    Deleted(Vec<Version>),
    /// A version read in the job.
    Read(Version),
}

impl<S: Store> Engine<S> {
    /// The query of conditional criteria (`identifier=x|1`). Criteria must be understood in
    /// full: an ignored parameter would widen what is matched.
    ///
    /// # Errors
    /// Empty or unknown criteria (400).
    pub(crate) fn criteria(
        &self,
        ctx: &Context,
        resource_type: &str,
        criteria: &str,
        limit: usize,
    ) -> Result<SearchQuery> {
        let params = search::parse_query(criteria.trim_start_matches('?'));
        if params.is_empty() {
            return Err(Error::invalid(format!(
                "conditional {resource_type} interaction without criteria"
            )));
        }
        let parsed = self.parse_search(ctx, resource_type, &params, true, limit, limit)?;
        if parsed.query.clauses.is_empty() {
            return Err(Error::invalid(format!(
                "the criteria '{criteria}' select nothing specific"
            )));
        }
        let mut query = parsed.query;
        query.limit = limit;
        query.interrupt = self.search_interrupt(ctx);
        Ok(query)
    }

    /// Searches conditional criteria now, recording the search for the write job to repeat.
    pub(crate) fn checked_matches(
        &self,
        ctx: &Context,
        resource_type: &str,
        criteria: &str,
        limit: usize,
        checks: &mut Vec<Check>,
    ) -> Result<Vec<Version>> {
        let query = self.criteria(ctx, resource_type, criteria, limit)?;
        let seen = self.store().last_tx()?;
        let found = self.store().search(&query)?.versions;
        checks.push(Check {
            query,
            ids: found.iter().map(|v| v.id.clone()).collect(),
            seen,
        });
        Ok(found)
    }

    /// Resolves a write's target: checks its type and id, and searches its criteria.
    ///
    /// # Errors
    /// Unknown type (404), bad id (400), bad criteria (400), several matches where one is
    /// needed (412), no match for a conditional patch (404).
    pub(crate) fn resolve(
        &self,
        ctx: &Context,
        intent: &Intent,
        content: &Content,
        checks: &mut Vec<Check>,
    ) -> Result<Target> {
        let body_id = match content {
            Content::Resource(r) => r.get("id"),
            _ => None,
        };
        Ok(match intent {
            Intent::Create { rt, if_none_exist } => {
                self.check_type(rt)?;
                match if_none_exist {
                    None => Target::Create {
                        rt: rt.clone(),
                        id: new_id(),
                    },
                    Some(criteria) => {
                        let mut found = self.checked_matches(ctx, rt, criteria, 2, checks)?;
                        match found.len() {
                            0 => Target::Create {
                                rt: rt.clone(),
                                id: new_id(),
                            },
                            1 => Target::Keep {
                                rt: rt.clone(),
                                existing: found.pop(),
                            },
                            _ => return Err(multiple(rt, criteria)),
                        }
                    }
                }
            }
            Intent::Update { rt, id } => {
                self.check_type(rt)?;
                Self::check_id(id)?;
                match body_id {
                    None => {
                        return Err(Error::invalid(
                            "the resource has no id; an update needs one matching the URL",
                        )
                        .at(format!("{rt}.id")))
                    }
                    Some(b) if b.as_str() != Some(id.as_str()) => {
                        return Err(Error::invalid(format!(
                            "the resource id {b} does not match the URL id '{id}'"
                        ))
                        .at(format!("{rt}.id")))
                    }
                    Some(_) => {}
                }
                Target::Update {
                    rt: rt.clone(),
                    id: id.clone(),
                }
            }
            Intent::ConditionalUpdate { rt, criteria } => {
                self.check_type(rt)?;
                let body_id = match body_id {
                    None => None,
                    Some(Value::String(s)) if flint_fhir::validate::is_valid_id(s) => {
                        Some(s.clone())
                    }
                    Some(other) => {
                        return Err(Error::invalid(format!("invalid resource id {other}"))
                            .at(format!("{rt}.id")))
                    }
                };
                let found = self.checked_matches(ctx, rt, criteria, 2, checks)?;
                let id = match (found.as_slice(), body_id) {
                    ([], Some(id)) => id,
                    ([], None) => new_id(),
                    ([one], Some(id)) if one.id != id => {
                        return Err(Error::invalid(format!(
                            "the resource id '{id}' differs from the id '{}' of the resource the criteria match",
                            one.id
                        )))
                    }
                    ([one], _) => one.id.clone(),
                    _ => return Err(multiple(rt, criteria)),
                };
                Target::Update { rt: rt.clone(), id }
            }
            Intent::Patch { rt, id } => {
                self.check_type(rt)?;
                Target::Patch {
                    rt: rt.clone(),
                    id: id.clone(),
                }
            }
            Intent::ConditionalPatch { rt, criteria } => {
                self.check_type(rt)?;
                let found = self.checked_matches(ctx, rt, criteria, 2, checks)?;
                match found.as_slice() {
                    [] => return Err(Error::not_found(format!("no {rt} matches '{criteria}'"))),
                    [one] => Target::Patch {
                        rt: rt.clone(),
                        id: one.id.clone(),
                    },
                    _ => return Err(multiple(rt, criteria)),
                }
            }
            Intent::Delete { rt, id } => {
                self.check_type(rt)?;
                Self::check_id(id)?;
                Target::Delete {
                    rt: rt.clone(),
                    ids: vec![id.clone()],
                }
            }
            Intent::Read { rt, id, version } => {
                self.check_type(rt)?;
                let not_found = || {
                    Error::not_found(match version {
                        Some(v) => format!("{rt}/{id}/_history/{v} is not known"),
                        None => format!("{rt}/{id} is not known"),
                    })
                };
                Self::check_id(id).map_err(|_| not_found())?;
                let version = version
                    .as_deref()
                    .map(str::parse::<u64>)
                    .transpose()
                    .map_err(|_| not_found())?;
                Target::Read {
                    rt: rt.clone(),
                    id: id.clone(),
                    version,
                }
            }
            Intent::ConditionalDelete { rt, criteria } => {
                self.check_type(rt)?;
                let found =
                    self.checked_matches(ctx, rt, criteria, MAX_CONDITIONAL_DELETE + 1, checks)?;
                if found.len() > MAX_CONDITIONAL_DELETE {
                    return Err(Error::new(
                        IssueType::MultipleMatches,
                        format!(
                            "more than {MAX_CONDITIONAL_DELETE} {rt} resources match; narrow the criteria"
                        ),
                    )
                    .with_status(412));
                }
                if found.is_empty() {
                    Target::Keep {
                        rt: rt.clone(),
                        existing: None,
                    }
                } else {
                    Target::Delete {
                        rt: rt.clone(),
                        ids: found.into_iter().map(|v| v.id).collect(),
                    }
                }
            }
        })
    }

    /// Prepares the write of a resolved target: everything but the store's own work.
    ///
    /// # Errors
    /// An invalid resource (400), a patch that does not apply (400/422) or changes the
    /// resource's type or id (400), a missing or deleted patch target (404/410), a version
    /// mismatch (412).
    pub(crate) fn prepare(
        &self,
        target: Target,
        content: Content,
        if_match: Option<u64>,
    ) -> Result<Plan> {
        let registry = self.registry();
        Ok(match (target, content) {
            (Target::Create { rt, id }, Content::Resource(resource)) => {
                self.check_resource(&rt, &resource)?;
                let stamped = Stamped::new(resource, &id, 1, &registry)?;
                Plan::Create { rt, id, stamped }
            }
            (Target::Update { rt, id }, Content::Resource(resource)) => {
                self.check_resource(&rt, &resource)?;
                // Serialized for the version expected next; the job re-stamps only if another
                // write came in between.
                let guess = self.store().read(&rt, &id)?.map_or(1, |v| v.version + 1);
                let stamped = Stamped::new(resource, &id, guess, &registry)?;
                Plan::Update {
                    rt,
                    id,
                    stamped,
                    if_match,
                }
            }
            (Target::Patch { rt, id }, Content::Patch(document)) => {
                let current = self.read(&rt, &id)?;
                check_if_match(&rt, &id, Some(&current), if_match)?;
                let mut resource = parse_stored(&current)?;
                crate::patch::apply_json_patch(&mut resource, &document)?;
                if resource.get("resourceType").and_then(Value::as_str) != Some(rt.as_str())
                    || resource.get("id").and_then(Value::as_str) != Some(id.as_str())
                {
                    return Err(Error::invalid(
                        "a patch may not change the resource's type or id",
                    ));
                }
                self.check_resource(&rt, &resource)?;
                let base = current.version;
                let stamped = Stamped::new(resource, &id, base + 1, &registry)?;
                Plan::Patched {
                    rt,
                    id,
                    stamped,
                    base,
                }
            }
            (Target::Delete { rt, ids }, _) => Plan::Delete { rt, ids, if_match },
            (Target::Keep { existing, .. }, _) => Plan::Keep(existing),
            (Target::Read { rt, id, version }, _) => Plan::Read { rt, id, version },
            (Target::Patch { .. }, _) => {
                return Err(Error::invalid("a patch needs a JSON Patch document"))
            }
            (Target::Create { .. } | Target::Update { .. }, _) => {
                return Err(Error::invalid("the request needs a resource"))
            }
        })
    }

    /// Resolves, prepares and writes one interaction's write, preparing again when what it
    /// relied on changed before the write job ran.
    ///
    /// # Errors
    /// As [`Engine::resolve`] and [`Engine::prepare`]; a conflict (409) when the criteria's
    /// matches keep changing; a store fault.
    pub(crate) fn write_one(
        &self,
        ctx: &Context,
        intent: &Intent,
        content: Content,
        if_match: Option<u64>,
    ) -> Result<Done> {
        // Only conditional writes and patches can find their ground moved and go again; the
        // others hand their content over rather than copy it.
        let retried = !matches!(
            intent,
            Intent::Create {
                if_none_exist: None,
                ..
            } | Intent::Update { .. }
                | Intent::Delete { .. }
        );
        let mut content = content;
        for _ in 0..ATTEMPTS {
            let mut checks = Vec::new();
            let target = self.resolve(ctx, intent, &content, &mut checks)?;
            let rt = target.resource_type().to_string();
            let this = if retried {
                content.clone()
            } else {
                std::mem::replace(&mut content, Content::None)
            };
            let plan = self.prepare(target, this, if_match)?;
            let job = ctx.job.clone();
            let written = crate::lanes::block_on(self.store().write(move |txn| {
                crate::jobs::claim(&job, txn)?;
                let done = run_plans(txn, &checks, vec![plan], |_, e| e)?;
                if done.is_some() {
                    crate::jobs::committed(&job, txn)?;
                }
                Ok(done)
            }))?;
            if let Some(mut done) = written {
                self.written(&rt);
                return done
                    .pop()
                    .ok_or_else(|| Error::internal("a write did nothing"));
            }
        }
        Err(Error::conflict(
            "what this write depends on kept changing while it ran; send it again",
        ))
    }
}

fn multiple(rt: &str, criteria: &str) -> Error {
    Error::new(
        IssueType::MultipleMatches,
        format!("more than one {rt} matches '{criteria}'"),
    )
    .with_status(412)
}

/// Inside the write job: repeats the conditional searches and checks every patched
/// resource is still at the version patched (`None` when something moved: nothing is
/// written), then applies the plans in order.
///
/// # Errors
/// A version mismatch (412) or a store fault: the job then fails and writes nothing.
pub(crate) fn run_plans(
    txn: &mut dyn Transaction,
    checks: &[Check],
    plans: Vec<Plan>,
    label: impl Fn(usize, Error) -> Error,
) -> Result<Option<Vec<Done>>> {
    for check in checks {
        // Most often nothing of the type was written since the search: it need not run
        // again, and the writer is not held by it.
        if check.own_type_only() && txn.unchanged_since(&check.query.resource_type, check.seen)? {
            continue;
        }
        let mut query = check.query.clone();
        query.interrupt = query.interrupt.within(CHECK_IN_WRITER);
        let now = txn.search(&query)?;
        if !now.iter().map(|v| &v.id).eq(check.ids.iter()) {
            return Ok(None);
        }
    }
    for plan in &plans {
        if let Plan::Patched { rt, id, base, .. } = plan {
            if txn.current(rt, id)?.map(|v| v.version) != Some(*base) {
                return Ok(None);
            }
        }
    }
    let mut done = Vec::with_capacity(plans.len());
    for (i, plan) in plans.into_iter().enumerate() {
        done.push(apply(txn, plan).map_err(|e| label(i, e))?);
    }
    Ok(Some(done))
}

/// Inside one write job, plans that do not depend on each other (the plain writes of a batch
/// or an import): each one's refusal (a version mismatch, found before it writes anything)
/// is its own outcome and the others go on; a store fault fails the whole job.
///
/// # Errors
/// A store fault: nothing of the job is written.
pub(crate) fn run_independent(
    txn: &mut dyn Transaction,
    plans: Vec<Plan>,
) -> Result<Vec<Result<Done>>> {
    let mut done = Vec::with_capacity(plans.len());
    for plan in plans {
        match apply(txn, plan) {
            Err(e) if e.is_server_fault() => return Err(e),
            outcome => done.push(outcome),
        }
    }
    Ok(done)
}

/// Applies one plan inside the write job.
fn apply(txn: &mut dyn Transaction, plan: Plan) -> Result<Done> {
    match plan {
        Plan::Create { rt, id, stamped } => {
            let version = txn.put(stamped.finish(&rt, &id, 1, Method::Create, txn.now())?)?;
            Ok(Done::Written {
                version,
                created: true,
            })
        }
        Plan::Update {
            rt,
            id,
            stamped,
            if_match,
        } => {
            let current = txn.current(&rt, &id)?;
            check_if_match(&rt, &id, current.as_ref(), if_match)?;
            let created = current.as_ref().is_none_or(Version::is_deleted);
            let next = current.map_or(1, |c| c.version + 1);
            let version = txn.put(stamped.finish(&rt, &id, next, Method::Update, txn.now())?)?;
            Ok(Done::Written { version, created })
        }
        Plan::Patched {
            rt,
            id,
            stamped,
            base,
        } => {
            let version =
                txn.put(stamped.finish(&rt, &id, base + 1, Method::Update, txn.now())?)?;
            Ok(Done::Written {
                version,
                created: false,
            })
        }
        Plan::Delete { rt, ids, if_match } => {
            let mut deleted = Vec::new();
            for id in ids {
                let current = txn.current(&rt, &id)?;
                check_if_match(&rt, &id, current.as_ref(), if_match)?;
                if let Some(c) = current.filter(|c| !c.is_deleted()) {
                    deleted.push(txn.put(NewVersion {
                        resource_type: rt.clone(),
                        id,
                        version: c.version + 1,
                        method: Method::Delete,
                        json: None,
                        index: Vec::new(),
                    })?);
                }
            }
            Ok(Done::Deleted(deleted))
        }
        Plan::Read { rt, id, version } => {
            let found = match version {
                Some(v) => txn.version(&rt, &id, v)?,
                None => txn.current(&rt, &id)?,
            };
            match found {
                None => Err(Error::not_found(match version {
                    Some(v) => format!("{rt}/{id}/_history/{v} is not known"),
                    None => format!("{rt}/{id} is not known"),
                })),
                Some(v) if v.is_deleted() => Err(crate::gone(&v)),
                Some(v) => Ok(Done::Read(v)),
            }
        }
        Plan::Keep(Some(existing)) => Ok(Done::Existing(existing)),
        Plan::Keep(None) => Ok(Done::Deleted(Vec::new())),
    }
}
