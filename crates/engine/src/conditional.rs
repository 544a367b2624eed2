//! Conditional interactions: create with `If-None-Exist`, and update, patch and delete
//! addressed by search criteria instead of an id. The search and the write of a single
//! conditional interaction run in one store transaction, so two identical conditional creates
//! cannot both create.

use flint_fhir::{Error, IssueType, Result};
use flint_store::search::SearchQuery;
use flint_store::{Method, NewVersion, Store, Version};
use serde_json::Value;

use crate::{check_if_match, new_id, search, Context, Engine, Stamped, Written};

/// Most resources one conditional delete removes; more matches are refused (412).
pub const MAX_CONDITIONAL_DELETE: usize = 100;

fn multiple(rt: &str, criteria: &str) -> Error {
    Error::new(
        IssueType::MultipleMatches,
        format!("more than one {rt} matches '{criteria}'"),
    )
    .with_status(412)
}

impl<S: Store> Engine<S> {
    /// The query of conditional criteria (`identifier=x|1`). Criteria must be understood in
    /// full: an ignored parameter would widen what is matched.
    ///
    /// # Errors
    /// Empty or unknown criteria (400).
    pub fn criteria(
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
        Ok(query)
    }

    /// The current matches of criteria, read outside any write (for Bundle entries).
    ///
    /// # Errors
    /// Bad criteria, store fault.
    pub fn matches(
        &self,
        ctx: &Context,
        resource_type: &str,
        criteria: &str,
        limit: usize,
    ) -> Result<Vec<Version>> {
        let query = self.criteria(ctx, resource_type, criteria, limit)?;
        Ok(self.store().search(&query)?.versions)
    }

    /// Creates unless a resource matches `criteria`: returns the new version and `true`, or
    /// the one match and `false`.
    ///
    /// # Errors
    /// Several matches (412), bad criteria or resource (400), store fault.
    pub async fn conditional_create(
        &self,
        ctx: &Context,
        resource_type: &str,
        resource: Value,
        criteria: &str,
    ) -> Result<(Version, bool)> {
        self.check_type(resource_type)?;
        self.check_resource(resource_type, &resource)?;
        let query = self.criteria(ctx, resource_type, criteria, 2)?;
        let id = new_id();
        let rt = resource_type.to_string();
        let stamped = Stamped::new(resource, &id, 1, &self.registry());
        let criteria = criteria.to_string();
        self.store()
            .write(move |txn| {
                let mut found = txn.search(&query)?;
                match found.len() {
                    0 => Ok((
                        txn.put(stamped.finish(&rt, &id, 1, Method::Create, txn.now())?)?,
                        true,
                    )),
                    1 => Ok((found.remove(0), false)),
                    _ => Err(multiple(&rt, &criteria)),
                }
            })
            .await
            .inspect(|_| self.written(resource_type))
    }

    /// Updates the one resource matching `criteria`; with no match, creates (with the body's
    /// id when it has one).
    ///
    /// # Errors
    /// Several matches (412), a body id that differs from the match (400), version mismatch
    /// (412), bad criteria or resource (400), store fault.
    pub async fn conditional_update(
        &self,
        ctx: &Context,
        resource_type: &str,
        criteria: &str,
        resource: Value,
        if_match: Option<u64>,
    ) -> Result<Written> {
        self.check_type(resource_type)?;
        self.check_resource(resource_type, &resource)?;
        if let Some(id) = resource.get("id") {
            if !id.as_str().is_some_and(flint_fhir::validate::is_valid_id) {
                return Err(Error::invalid(format!("invalid resource id {id}")));
            }
        }
        let query = self.criteria(ctx, resource_type, criteria, 2)?;
        let registry = self.registry();
        let rt = resource_type.to_string();
        let criteria = criteria.to_string();
        self.store()
            .write(move |txn| {
                let found = txn.search(&query)?;
                let body_id = resource.get("id").and_then(Value::as_str).map(str::to_string);
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
                    _ => return Err(multiple(&rt, &criteria)),
                };
                let current = txn.current(&rt, &id)?;
                check_if_match(&rt, &id, current.as_ref(), if_match)?;
                let created = current.as_ref().is_none_or(Version::is_deleted);
                let version = current.map_or(1, |c| c.version + 1);
                let stamped = Stamped::new(resource, &id, version, &registry);
                let v = txn.put(stamped.finish(&rt, &id, version, Method::Update, txn.now())?)?;
                Ok(Written { version: v, created })
            })
            .await
            .inspect(|_| self.written(resource_type))
    }

    /// Deletes every resource matching `criteria` (at most [`MAX_CONDITIONAL_DELETE`]);
    /// returns how many were deleted.
    ///
    /// # Errors
    /// Too many matches (412), bad criteria (400), store fault.
    pub async fn conditional_delete(
        &self,
        ctx: &Context,
        resource_type: &str,
        criteria: &str,
    ) -> Result<usize> {
        self.check_type(resource_type)?;
        let query = self.criteria(ctx, resource_type, criteria, MAX_CONDITIONAL_DELETE + 1)?;
        let rt = resource_type.to_string();
        self.store()
            .write(move |txn| {
                let found = txn.search(&query)?;
                if found.len() > MAX_CONDITIONAL_DELETE {
                    return Err(Error::new(
                        IssueType::MultipleMatches,
                        format!("more than {MAX_CONDITIONAL_DELETE} {rt} resources match; narrow the criteria"),
                    )
                    .with_status(412));
                }
                for v in &found {
                    txn.put(NewVersion {
                        resource_type: rt.clone(),
                        id: v.id.clone(),
                        version: v.version + 1,
                        method: Method::Delete,
                        json: None,
                        index: Vec::new(),
                    })?;
                }
                Ok(found.len())
            })
            .await
            .inspect(|_| self.written(resource_type))
    }

    /// Patches the one resource matching `criteria`.
    ///
    /// # Errors
    /// No match (404), several (412), and the errors of [`Engine::patch`].
    pub async fn conditional_patch(
        &self,
        ctx: &Context,
        resource_type: &str,
        criteria: &str,
        patch: &Value,
        if_match: Option<u64>,
    ) -> Result<Written> {
        self.check_type(resource_type)?;
        // The patch is computed outside the write job, so it is applied to the version the
        // search found: if that changed meanwhile, search again (the match may be another).
        for _ in 0..4 {
            let found = self.matches(ctx, resource_type, criteria, 2)?;
            match found.as_slice() {
                [] => {
                    return Err(Error::not_found(format!(
                        "no {resource_type} matches '{criteria}'"
                    )))
                }
                [one] => {
                    let expected = if_match.unwrap_or(one.version);
                    match self
                        .patch(resource_type, &one.id, patch, Some(expected))
                        .await
                    {
                        Err(e) if e.status() == 412 && if_match.is_none() => continue,
                        other => return other,
                    }
                }
                _ => return Err(multiple(resource_type, criteria)),
            }
        }
        Err(Error::conflict(format!(
            "the {resource_type} matching '{criteria}' kept changing; send the patch again"
        )))
    }
}
