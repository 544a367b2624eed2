//! The store as a terminology source: CodeSystems, ValueSets and ConceptMaps stored in the
//! server first, then the R4 core ones embedded in the definitions (`flint-terminology`
//! holds the logic). The search modifiers `:in`, `:not-in`, `:above`, `:below` and the
//! terminology operations read through here.

use std::sync::Arc;

use flint_fhir::Result;
use flint_store::search::{Order, Predicate, SearchQuery, UriMatch};
use flint_store::Store;
use flint_terminology::{Chain, Core, Hierarchy, MapQuery, Members, Resource, Source, Terminology};
use serde_json::Value;

use crate::Engine;

/// Most stored versions one canonical URL is looked up among.
const VERSIONS_LOOKED_AT: usize = 100;

/// Most stored ConceptMaps a `$translate` without a named map considers.
const MAPS_LOOKED_AT: usize = 1000;

/// The resources stored in the server, as a terminology source.
pub(crate) struct Stored<'e, S>(pub &'e Engine<S>);

/// The sources the terminology operations read: stored resources, then core ones.
pub(crate) type Sources<'e, S> = Chain<Stored<'e, S>, Core>;

impl<S: Store> Stored<'_, S> {
    /// The newest stored resource of `resource_type` with this canonical URL (and `version`,
    /// when given); `Type/id` reads a stored one by id.
    pub(crate) fn find(
        &self,
        resource_type: &str,
        url: &str,
        version: Option<&str>,
    ) -> Result<Option<Resource>> {
        let engine = self.0;
        if let Some(id) = url
            .strip_prefix(resource_type)
            .and_then(|rest| rest.strip_prefix('/'))
        {
            return match engine.store().read(resource_type, id)? {
                Some(v) if !v.is_deleted() => Ok(crate::parse_stored(&v).ok().map(Resource::from)),
                _ => Ok(None),
            };
        }
        let query = SearchQuery {
            resource_type: resource_type.to_string(),
            clauses: vec![vec![Predicate::Uri {
                param: "url".into(),
                value: url.to_string(),
                how: UriMatch::Exact,
            }]],
            // Oldest change first, so that the last one kept is the newest.
            order: Order::LastUpdated,
            limit: VERSIONS_LOOKED_AT,
            ..Default::default()
        };
        let mut found: Option<Value> = None;
        for v in engine.store().search(&query)?.versions {
            let Ok(resource) = crate::parse_stored(&v) else {
                continue;
            };
            if version
                .is_some_and(|want| resource.get("version").and_then(Value::as_str) != Some(want))
            {
                continue;
            }
            found = Some(resource);
        }
        Ok(found.map(Resource::from))
    }
}

impl<S: Store> Source for Stored<'_, S> {
    fn code_system(&self, url: &str, version: Option<&str>) -> Result<Option<Resource>> {
        self.find("CodeSystem", url, version)
    }

    fn value_set(&self, url: &str, version: Option<&str>) -> Result<Option<Resource>> {
        self.find("ValueSet", url, version)
    }

    fn concept_map(&self, url: &str, version: Option<&str>) -> Result<Option<Resource>> {
        self.find("ConceptMap", url, version)
    }

    fn concept_maps(&self, query: &MapQuery<'_>) -> Result<Vec<Resource>> {
        // Narrowed by the systems when given (a superset is fine: the caller checks each).
        let mut clauses = Vec::new();
        for (param, value) in [
            ("source-system", query.source_system),
            ("target-system", query.target_system),
        ] {
            if let Some(value) = value {
                clauses.push(vec![Predicate::Uri {
                    param: param.into(),
                    value: value.split('|').next().unwrap_or(value).to_string(),
                    how: UriMatch::Exact,
                }]);
            }
        }
        let search = SearchQuery {
            resource_type: "ConceptMap".into(),
            clauses,
            order: Order::LastUpdated,
            limit: MAPS_LOOKED_AT,
            ..Default::default()
        };
        Ok(self
            .0
            .store()
            .search(&search)?
            .versions
            .iter()
            .filter_map(|v| crate::parse_stored(v).ok())
            .map(Resource::from)
            .collect())
    }
}

impl<S: Store> Engine<S> {
    /// The terminology sources of this server.
    pub(crate) fn terminology_sources(&self) -> Sources<'_, S> {
        Chain(Stored(self), Core)
    }

    /// The hierarchy of a code system known to this server (`:above`, `:below`), or a
    /// not-supported error.
    pub(crate) fn hierarchy(&self, system: &str) -> Result<Arc<Hierarchy>> {
        let sources = self.terminology_sources();
        Terminology::new(&sources).hierarchy(system)
    }

    /// The members of a value set by canonical URL (`:in`, `:not-in`): each a system and a
    /// code, or a system alone for all of its codes.
    pub(crate) fn expand(&self, url: &str) -> Result<Members> {
        let sources = self.terminology_sources();
        Terminology::new(&sources).members(url)
    }
}

/// Required bindings checked against the value sets this server can expand (`$validate`):
/// each value set expanded once per validation.
pub(crate) struct Bindings<'e, S> {
    engine: &'e Engine<S>,
    expanded: parking_lot::Mutex<std::collections::HashMap<String, Option<Members>>>,
}

impl<'e, S: Store> Bindings<'e, S> {
    pub(crate) fn new(engine: &'e Engine<S>) -> Bindings<'e, S> {
        Bindings {
            engine,
            expanded: Default::default(),
        }
    }
}

impl<S: Store> flint_validate::ValueSets for Bindings<'_, S> {
    fn contains(&self, value_set: &str, system: Option<&str>, code: &str) -> Result<Option<bool>> {
        let members = {
            let mut cache = self.expanded.lock();
            match cache.get(value_set) {
                Some(m) => m.clone(),
                None => {
                    // A value set this server cannot expand: it cannot tell, which is no error.
                    let m = match self.engine.expand(value_set) {
                        Ok(m) => Some(m),
                        Err(e) if e.is_server_fault() => return Err(e),
                        Err(_) => None,
                    };
                    cache.insert(value_set.to_string(), m.clone());
                    m
                }
            }
        };
        let Some(members) = members else {
            return Ok(None);
        };
        let mut unsure = false;
        for (s, c) in &members {
            if system.is_some_and(|want| want != s) {
                continue;
            }
            match c {
                Some(c) if c == code => return Ok(Some(true)),
                Some(_) => {}
                // A whole code system: the code is in it if the code system has it.
                None => match self.engine.hierarchy(s) {
                    Ok(h) if h.find(code).is_some() => return Ok(Some(true)),
                    Ok(_) => {}
                    Err(_) => unsure = true,
                },
            }
        }
        Ok(if unsure { None } else { Some(false) })
    }
}
