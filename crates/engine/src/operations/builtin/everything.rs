//! `Patient/[id]/$everything` and `Patient/$everything` (R4 `Patient-everything`): every
//! resource in the patient compartment of one patient (instance level) or of every patient
//! (type level), with the resources they reference, as a `searchset` Bundle paged with the
//! stable paging of search (one snapshot for all pages).
//!
//! - `start`/`end` narrow by the date of care: a type with a `date` search parameter keeps
//!   the resources whose date overlaps the range; resources of types without one (the
//!   Patient itself, Medication, ...) are kept whatever the range.
//! - `_since` keeps resources changed at or after the instant; `_type` names the types
//!   (comma-separated, each in the compartment); `_count` sets the page size.
//! - At the type level the patients are bounded ([`MAX_PATIENTS`]): beyond that, the answer
//!   is a 422 pointing at the instance level.

use std::sync::Arc;

use flint_fhir::{Error, IssueType, Result};
use flint_store::search::{Order, Predicate, SearchQuery};
use flint_store::Store;
use serde_json::{json, Value};

use crate::operations::{Call, Definition, Level, Operation, Output};
use crate::search::{Include, ParsedSearch, TotalMode};
use crate::{Context, Engine};

/// The prefix of the search scope of an `$everything` (`$everything/Patient/123`): paging
/// links carry it, and their pages are read by [`Engine::parse_everything`].
pub(crate) const SCOPE: &str = "$everything/";

/// Most patients a type-level `$everything` covers.
pub(crate) const MAX_PATIENTS: usize = 1000;

/// The inputs kept in its paging links.
const INPUTS: [&str; 5] = ["start", "end", "_since", "_type", "_count"];

pub(crate) struct Everything;

impl<S: Store> Operation<S> for Everything {
    fn definition(&self) -> Definition {
        Definition::r4("Patient-everything", |d| d["affectsState"] = json!(false))
    }

    fn invoke(&self, engine: &Arc<Engine<S>>, call: &mut Call<'_>) -> Result<Output> {
        let target = match call.target.level {
            Level::Instance => {
                // A deleted patient has no compartment to show (410).
                call.target.resource()?;
                format!("{SCOPE}{}", call.target.reference())
            }
            _ => format!("{SCOPE}Patient"),
        };
        let mut params = Vec::new();
        for name in INPUTS {
            for value in call.inputs.values(name) {
                let text = match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                params.push((name.to_string(), text));
            }
        }
        let response = engine.search_response(call.ctx, &target, &params, true, None)?;
        Ok(Output::Response(response))
    }
}

/// The types of the Patient compartment, each with the parameters that tie it to a patient.
pub(crate) fn compartment_types() -> Vec<(&'static str, Vec<&'static str>)> {
    let Some(definition) = flint_fhir::definitions::compartment_definitions()
        .iter()
        .find(|d| d["code"] == "Patient")
    else {
        return Vec::new();
    };
    definition["resource"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let code = r["code"].as_str()?;
            let params: Vec<&str> = r["param"]
                .as_array()?
                .iter()
                .filter_map(Value::as_str)
                .collect();
            (!params.is_empty() || code == "Patient").then_some((code, params))
        })
        .collect()
}

fn param<'p>(params: &'p [(String, String)], name: &str) -> Option<&'p str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl<S: Store> Engine<S> {
    /// The search an `$everything` page runs: `target` is `Patient/[id]` or `Patient`,
    /// `params` its inputs as text.
    ///
    /// # Errors
    /// A `_type` outside the compartment or a malformed input (400); too many patients at
    /// the type level (422); a store fault.
    pub(crate) fn parse_everything(
        &self,
        ctx: &Context,
        target: &str,
        params: &[(String, String)],
    ) -> Result<ParsedSearch> {
        let ids: Vec<String> = match target.split_once('/') {
            Some(("Patient", id)) => vec![id.to_string()],
            None if target == "Patient" => self.patient_ids()?,
            _ => return Err(Error::invalid("not a paging link of this server")),
        };
        let compartment = compartment_types();
        let wanted: Option<Vec<&str>> = params.iter().any(|(k, _)| k == "_type").then(|| {
            params
                .iter()
                .filter(|(k, _)| k == "_type")
                .flat_map(|(_, v)| v.split(','))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .collect()
        });
        if let Some(wanted) = &wanted {
            for t in wanted {
                if !compartment.iter().any(|(c, _)| c == t) {
                    return Err(Error::invalid(format!(
                        "_type names '{t}', which is not a type of the Patient compartment"
                    ))
                    .at("_type"));
                }
            }
        }
        let limits = &self.limits;
        let count = match param(params, "_count") {
            None => limits.default_count,
            Some(c) => c
                .parse::<usize>()
                .map_err(|_| {
                    Error::invalid(format!("_count '{c}' is not a non-negative integer"))
                        .at("_count")
                })?
                .min(limits.max_count),
        };
        let registry = self.registry();
        let keys: Vec<String> = ids.iter().map(|id| format!("Patient/{id}")).collect();
        let mut per_type = Vec::new();
        let mut includes = Vec::new();
        for (rt, links) in &compartment {
            if wanted.as_ref().is_some_and(|w| !w.contains(rt))
                || !self.model().is_resource_type(rt)
            {
                continue;
            }
            if ids.is_empty() {
                break;
            }
            // The date of care and the time of change, read as a search of the type would.
            let mut narrowing = Vec::new();
            if registry.param(rt, "date").is_some() {
                if let Some(start) = param(params, "start") {
                    narrowing.push(("date".to_string(), format!("ge{start}")));
                }
                if let Some(end) = param(params, "end") {
                    narrowing.push(("date".to_string(), format!("le{end}")));
                }
            }
            if let Some(since) = param(params, "_since") {
                narrowing.push(("_lastUpdated".to_string(), format!("ge{since}")));
            }
            let mut clauses = if narrowing.is_empty() {
                Vec::new()
            } else {
                self.parse_search(
                    ctx,
                    rt,
                    &narrowing,
                    true,
                    limits.max_count,
                    limits.default_count,
                )?
                .query
                .clauses
            };
            // In the compartment of any of the patients.
            let mut tie: Vec<Predicate> = links
                .iter()
                .filter(|p| **p != "{def}")
                .map(|p| Predicate::Reference {
                    param: (*p).to_string(),
                    keys: keys.clone(),
                })
                .collect();
            if *rt == "Patient" {
                tie.extend(ids.iter().map(|id| Predicate::Id(id.clone())));
            }
            clauses.push(tie);
            per_type.push((rt.to_string(), clauses));
            includes.push(Include {
                reverse: false,
                source_type: rt.to_string(),
                param: None,
                target: None,
                iterate: false,
            });
        }
        let applied: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| INPUTS.contains(&k.as_str()))
            .cloned()
            .collect();
        let query = SearchQuery {
            resource_type: "Patient".into(),
            clauses: if per_type.is_empty() {
                vec![vec![Predicate::Nothing]]
            } else {
                Vec::new()
            },
            order: Order::LastUpdated,
            limit: count,
            types: per_type,
            ..Default::default()
        };
        Ok(ParsedSearch {
            query,
            total: TotalMode::Auto,
            count_only: false,
            applied,
            ignored: Vec::new(),
            includes,
        })
    }

    /// The ids of the current patients, for a type-level `$everything`.
    fn patient_ids(&self) -> Result<Vec<String>> {
        let query = SearchQuery {
            resource_type: "Patient".into(),
            limit: MAX_PATIENTS + 1,
            ..Default::default()
        };
        let found = self.store().search(&query)?.versions;
        if found.len() > MAX_PATIENTS {
            return Err(Error::new(
                IssueType::TooCostly,
                format!(
                    "Patient/$everything covers at most {MAX_PATIENTS} patients and this server holds more; ask for one patient's (Patient/[id]/$everything)"
                ),
            )
            .with_status(422));
        }
        Ok(found.into_iter().map(|v| v.id).collect())
    }
}
