//! The logic of the FHIR R4 terminology operations, with no IO: `ValueSet/$expand`,
//! `ValueSet/$validate-code`, `CodeSystem/$lookup`, `CodeSystem/$validate-code`,
//! `CodeSystem/$subsumes` and `ConceptMap/$translate`, and what the search modifiers `:in`,
//! `:not-in`, `:above` and `:below` need ([`Terminology::members`],
//! [`Terminology::hierarchy`]).
//!
//! Resources come through a [`Source`] the server implements over its store, chained with
//! [`Core`], the R4 core terminology embedded in `flint-fhir`. A [`Terminology`] is a cheap
//! view over a source, made per request; inputs and outputs are plain structs, each output
//! able to build the FHIR resource the OperationDefinition names (`Parameters`, or the
//! expanded `ValueSet`).
//!
//! Code systems whose content is not held in full (SNOMED CT, LOINC, `content` other than
//! `complete`) are refused as not supported wherever an answer would depend on what is not
//! held; an operation still answers where it can do so honestly (a code listed explicitly by
//! a value set, a code found in a fragment).
//!
//! ```
//! use flint_terminology::{Chain, Coding, Core, Definition, ExpandRequest, LookupRequest};
//! use flint_terminology::{Resources, Terminology};
//!
//! // A server chains its stored resources before the core ones.
//! let stored = Resources::default();
//! let source = Chain(stored, Core);
//! let t = Terminology::new(&source);
//!
//! let request = ExpandRequest::new(Definition::url("http://hl7.org/fhir/ValueSet/administrative-gender"));
//! let expansion = t.expand(&request)?;
//! assert_eq!(expansion.total, 4);
//! let value_set = expansion.to_value_set("urn:uuid:5f3c…", "2024-01-01T00:00:00Z");
//! assert_eq!(value_set["expansion"]["contains"][0]["code"], "male");
//!
//! let male = t.lookup(&LookupRequest::new(Coding::new("http://hl7.org/fhir/administrative-gender", "male")))?;
//! assert_eq!(male.to_parameters()["parameter"][2]["valueString"], "Male");
//! # Ok::<(), flint_fhir::Error>(())
//! ```

mod cache;
mod coding;
mod compose;
mod expand;
mod hierarchy;
mod json;
mod lookup;
mod parameters;
mod source;
mod subsumes;
mod translate;
mod validate;

use std::sync::Arc;

use flint_fhir::{Error, Result};
use serde_json::json;

pub use cache::{Cache, DEFAULT_CACHE_ENTRIES};
pub use coding::{Coding, Definition};
pub use compose::Members;
pub use expand::{Contains, ExpandRequest, Expansion};
pub use hierarchy::{Concept, Content, Designation, Hierarchy, Property, PropertyDefinition};
pub use lookup::{Lookup, LookupProperty, LookupRequest};
pub use source::{Chain, Core, MapQuery, Resource, Resources, Source};
pub use subsumes::{SubsumesRequest, Subsumption};
pub use translate::{Dependency, Match, Product, TranslateRequest, Translation};
pub use validate::{CodeSystemValidateRequest, Validation, ValueSetValidateRequest};

use json::{split_canonical, str_of};

/// Bounds on the work one operation may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The most codes an expansion may return without paging (`count`); a larger one is
    /// refused as too costly.
    pub max_expansion: usize,
    /// The most codes any expansion may gather, paged or not.
    pub max_codes: usize,
    /// How deeply value sets may include value sets, and concept maps defer to other maps.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_expansion: 10_000,
            max_codes: 100_000,
            max_depth: 16,
        }
    }
}

enum CacheRef<'a> {
    Owned(Cache),
    Borrowed(&'a Cache),
}

/// The terminology operations over a [`Source`]. Cheap to make: one per request is fine.
pub struct Terminology<'a, S: Source + ?Sized> {
    source: &'a S,
    cache: CacheRef<'a>,
    limits: Limits,
}

impl<'a, S: Source + ?Sized> Terminology<'a, S> {
    /// The operations over `source`, with a cache of their own for non-core hierarchies.
    pub fn new(source: &'a S) -> Terminology<'a, S> {
        Terminology {
            source,
            cache: CacheRef::Owned(Cache::default()),
            limits: Limits::default(),
        }
    }

    /// The operations over `source`, keeping non-core hierarchies in `cache`.
    pub fn with_cache(source: &'a S, cache: &'a Cache) -> Terminology<'a, S> {
        Terminology {
            source,
            cache: CacheRef::Borrowed(cache),
            limits: Limits::default(),
        }
    }

    /// The same operations under other limits.
    pub fn with_limits(mut self, limits: Limits) -> Terminology<'a, S> {
        self.limits = limits;
        self
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The source read.
    pub fn source(&self) -> &'a S {
        self.source
    }

    fn cache(&self) -> &Cache {
        match &self.cache {
            CacheRef::Owned(c) => c,
            CacheRef::Borrowed(c) => c,
        }
    }

    /// The hierarchy of a code system (`url` or `url|version`) for subsumption (`:above`,
    /// `:below`): it must be known and held in full, and its hierarchy must mean is-a.
    ///
    /// # Errors
    /// Not supported when the code system is unknown, not held in full or not is-a; the
    /// source's own errors.
    pub fn hierarchy(&self, system: &str) -> Result<Arc<Hierarchy>> {
        let (url, version) = split_canonical(system);
        let h = self.code_system(url, version)?.ok_or_else(|| {
            Error::not_supported(format!(
                "the code system '{system}' is not known to this server, so subsumption and filters on it cannot be evaluated"
            ))
        })?;
        h.require_complete()?;
        h.require_subsumption()?;
        Ok(h)
    }

    /// The hierarchy of a code system the source knows, built once per resource.
    pub(crate) fn code_system(
        &self,
        url: &str,
        version: Option<&str>,
    ) -> Result<Option<Arc<Hierarchy>>> {
        match self.source.code_system(url, version)? {
            Some(cs) => self.cache().hierarchy(&cs).map(Some),
            None => Ok(None),
        }
    }

    /// The hierarchy of a CodeSystem named by a [`Definition`]; not found when unknown.
    pub(crate) fn code_system_of(&self, definition: &Definition) -> Result<Arc<Hierarchy>> {
        match definition {
            Definition::Resource(cs) => self.cache().hierarchy(cs),
            Definition::Url { url, version } => {
                self.code_system(url, version.as_deref())?.ok_or_else(|| {
                    Error::not_found(match version {
                        Some(v) => format!(
                            "the code system '{url}' version '{v}' is not known to this server"
                        ),
                        None => format!("the code system '{url}' is not known to this server"),
                    })
                })
            }
        }
    }

    /// The ValueSet with this URL, including the implicit value sets of code systems
    /// (`[system]?fhir_vs`: all codes; `[system]?fhir_vs=isa/[code]`: the code and what it
    /// subsumes).
    pub(crate) fn value_set(&self, url: &str, version: Option<&str>) -> Result<Option<Resource>> {
        if let Some(found) = self.source.value_set(url, version)? {
            if str_of(&found, "resourceType") != Some("ValueSet") {
                return Err(Error::invalid(format!(
                    "the resource found for the value set '{url}' is not a ValueSet"
                )));
            }
            return Ok(Some(found));
        }
        let Some((system, query)) = url.split_once("?fhir_vs") else {
            return Ok(None);
        };
        let include = match query.strip_prefix("=isa/") {
            None if query.is_empty() => json!({"system": system}),
            Some(code) if !code.is_empty() => json!({
                "system": system,
                "filter": [{"property": "concept", "op": "is-a", "value": code}],
            }),
            _ => {
                return Err(Error::not_supported(format!(
                    "the implicit value set '{url}' is not supported (only ?fhir_vs and ?fhir_vs=isa/[code])"
                )))
            }
        };
        Ok(Some(Resource::from(json!({
            "resourceType": "ValueSet",
            "url": url,
            "status": "active",
            "compose": {"include": [include]},
        }))))
    }

    /// The ValueSet a [`Definition`] names; not found when unknown.
    pub(crate) fn value_set_of(&self, definition: &Definition) -> Result<Resource> {
        match definition {
            Definition::Resource(vs) => {
                if str_of(vs, "resourceType") != Some("ValueSet") {
                    return Err(Error::invalid(
                        "the resource given as a value set is not a ValueSet",
                    ));
                }
                Ok(vs.clone())
            }
            Definition::Url { url, version } => {
                self.value_set(url, version.as_deref())?.ok_or_else(|| {
                    Error::not_found(match version {
                        Some(v) => format!(
                            "the value set '{url}' version '{v}' is not known to this server"
                        ),
                        None => format!("the value set '{url}' is not known to this server"),
                    })
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resources of every wrong shape: each operation answers or refuses, never panics.
    #[test]
    fn odd_shapes_never_panic() {
        let odd_values = [
            json!(null),
            json!(1),
            json!("x"),
            json!([]),
            json!({}),
            json!([{"code": 1}, "a", null, {"code": ""}, {"code": "a", "concept": "b"}]),
        ];
        let mut resources = Vec::new();
        for (i, v) in odd_values.iter().enumerate() {
            resources.push(
                json!({"resourceType": "CodeSystem", "url": format!("http://odd/cs{i}"),
                "content": "complete", "concept": v, "property": v, "caseSensitive": v}),
            );
            resources.push(json!({"resourceType": "CodeSystem", "url": format!("http://odd/props{i}"),
                "content": "complete", "concept": [{"code": "a", "property": v, "designation": v,
                    "display": v}, {"code": "b", "property": [{"code": "parent", "valueCoding": v}]}]}));
            resources.push(
                json!({"resourceType": "ValueSet", "url": format!("http://odd/vs{i}"),
                "compose": v, "expansion": v}),
            );
            resources.push(json!({"resourceType": "ValueSet", "url": format!("http://odd/inc{i}"),
                "compose": {"include": [{"system": format!("http://odd/props{i}"), "concept": v, "valueSet": v}],
                            "exclude": v, "inactive": v}}));
            resources.push(
                json!({"resourceType": "ValueSet", "url": format!("http://odd/filter{i}"),
                "compose": {"include": [{"system": format!("http://odd/props{i}"),
                    "filter": [{"property": "concept", "op": "is-a", "value": v}, v]}]}}),
            );
            resources.push(
                json!({"resourceType": "ConceptMap", "url": format!("http://odd/cm{i}"),
                "group": [{"source": "http://odd/props0", "element": v, "unmapped": v}, v]}),
            );
        }
        let source = Resources::new(resources);
        let t = Terminology::new(&source);
        for i in 0..odd_values.len() {
            for vs in ["vs", "inc", "filter"] {
                let url = format!("http://odd/{vs}{i}");
                let _ = t.expand(&ExpandRequest::new(Definition::url(&url)));
                let _ = t.members(&url);
                let _ = t.validate_value_set_code(&ValueSetValidateRequest::coding(
                    Definition::url(&url),
                    Coding::new(format!("http://odd/props{i}"), "a"),
                ));
            }
            for cs in ["cs", "props"] {
                let system = format!("http://odd/{cs}{i}");
                let _ = t.lookup(&LookupRequest::new(Coding::new(&system, "a")));
                let _ = t.subsumes(&SubsumesRequest::codes(&system, "a", "b"));
                let _ = t.hierarchy(&system);
                let _ = t.validate_code_system_code(&CodeSystemValidateRequest::coding(
                    Definition::url(&system),
                    Coding::new(&system, "a"),
                ));
            }
            let mut r = TranslateRequest::coding(Coding::new("http://odd/props0", "a"));
            r.concept_map = Some(Definition::url(&format!("http://odd/cm{i}")));
            let _ = t.translate(&r);
        }
        let _ = t.translate(&TranslateRequest::coding(Coding::new(
            "http://odd/props0",
            "a",
        )));
    }
}
