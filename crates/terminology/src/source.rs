//! Where CodeSystems, ValueSets and ConceptMaps come from: the [`Source`] trait the server
//! implements over its store, [`Core`] over the R4 core terminology embedded in `flint-fhir`,
//! and [`Chain`], which asks one source and then another (stored resources first, then core).

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use flint_fhir::Result;
use serde_json::Value;

use crate::json::{array, str_of, strip_version};

/// A conformance resource as a source hands it out: borrowed for the embedded core ones
/// (no copy), shared for the others.
///
/// Built hierarchies are cached by resource identity (see [`crate::Cache`]): a source that
/// hands out the same `Arc` for an unchanged resource gets its hierarchy built only once.
#[derive(Clone, Debug)]
pub enum Resource {
    /// One of the embedded core resources.
    Core(&'static Value),
    /// Any other resource: stored, given in a request, or made up by this crate.
    Shared(Arc<Value>),
}

impl Resource {
    /// Whether this is one of the embedded core resources.
    pub fn is_core(&self) -> bool {
        matches!(self, Resource::Core(_))
    }

    /// The address of the JSON value, which identifies this resource while it is alive.
    pub(crate) fn address(&self) -> usize {
        match self {
            Resource::Core(v) => std::ptr::from_ref::<Value>(v) as usize,
            Resource::Shared(v) => Arc::as_ptr(v) as usize,
        }
    }
}

impl Deref for Resource {
    type Target = Value;

    fn deref(&self) -> &Value {
        match self {
            Resource::Core(v) => v,
            Resource::Shared(v) => v,
        }
    }
}

impl From<Value> for Resource {
    fn from(value: Value) -> Resource {
        Resource::Shared(Arc::new(value))
    }
}

impl From<Arc<Value>> for Resource {
    fn from(value: Arc<Value>) -> Resource {
        Resource::Shared(value)
    }
}

impl From<&'static Value> for Resource {
    fn from(value: &'static Value) -> Resource {
        Resource::Core(value)
    }
}

/// What a `$translate` without a named ConceptMap looks for. Every field that is set narrows
/// the search; a source may return more maps than match (this crate checks each one), but
/// never fewer. [`MapQuery::matches`] is the exact test.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapQuery<'a> {
    /// The map's source value set (`sourceUri` or `sourceCanonical`, version ignored).
    pub source_scope: Option<&'a str>,
    /// The map's target value set (`targetUri` or `targetCanonical`, version ignored).
    pub target_scope: Option<&'a str>,
    /// A code system some group of the map maps from (`group.source`).
    pub source_system: Option<&'a str>,
    /// A code system some group of the map maps to (`group.target`).
    pub target_system: Option<&'a str>,
}

impl MapQuery<'_> {
    /// Whether a ConceptMap satisfies every condition of this query.
    pub fn matches(&self, map: &Value) -> bool {
        let scope = |uri: &str, canonical: &str| {
            str_of(map, uri)
                .or_else(|| str_of(map, canonical))
                .map(strip_version)
        };
        let in_group = |key: &str, want: &str| {
            array(map, "group").any(|g| str_of(g, key).map(strip_version) == Some(want))
        };
        self.source_scope
            .is_none_or(|want| scope("sourceUri", "sourceCanonical") == Some(strip_version(want)))
            && self.target_scope.is_none_or(|want| {
                scope("targetUri", "targetCanonical") == Some(strip_version(want))
            })
            && self
                .source_system
                .is_none_or(|want| in_group("source", strip_version(want)))
            && self
                .target_system
                .is_none_or(|want| in_group("target", strip_version(want)))
    }
}

/// The conformance resources the terminology operations read. The server implements it over
/// its store (stored resources first) and chains [`Core`] after it (see [`Chain`]).
///
/// `url` is a canonical URL without a `|version` suffix (this crate splits it off into
/// `version`), or whatever reference a client gave, such as a relative `ValueSet/123`, which
/// a source may resolve by id. `version`, when given, must match the resource's `version`
/// exactly; without it, a source returns the newest it holds.
pub trait Source {
    /// The CodeSystem with this canonical URL.
    ///
    /// # Errors
    /// Only when the source itself fails (a storage fault); an unknown code system is `Ok(None)`.
    fn code_system(&self, url: &str, version: Option<&str>) -> Result<Option<Resource>>;

    /// The ValueSet with this canonical URL.
    ///
    /// # Errors
    /// Only when the source itself fails; an unknown value set is `Ok(None)`.
    fn value_set(&self, url: &str, version: Option<&str>) -> Result<Option<Resource>>;

    /// The ConceptMap with this canonical URL.
    ///
    /// # Errors
    /// Only when the source itself fails; an unknown concept map is `Ok(None)`.
    fn concept_map(&self, url: &str, version: Option<&str>) -> Result<Option<Resource>>;

    /// The ConceptMaps that may satisfy `query` (a superset is fine).
    ///
    /// # Errors
    /// Only when the source itself fails.
    fn concept_maps(&self, query: &MapQuery<'_>) -> Result<Vec<Resource>>;
}

impl<T: Source + ?Sized> Source for &T {
    fn code_system(&self, url: &str, version: Option<&str>) -> Result<Option<Resource>> {
        (**self).code_system(url, version)
    }

    fn value_set(&self, url: &str, version: Option<&str>) -> Result<Option<Resource>> {
        (**self).value_set(url, version)
    }

    fn concept_map(&self, url: &str, version: Option<&str>) -> Result<Option<Resource>> {
        (**self).concept_map(url, version)
    }

    fn concept_maps(&self, query: &MapQuery<'_>) -> Result<Vec<Resource>> {
        (**self).concept_maps(query)
    }
}

/// Asks `.0` first and `.1` only for what `.0` does not have: a server's stored resources
/// chained with [`Core`]. For `concept_maps`, the maps of both, where a map of `.1` with the
/// canonical URL of one of `.0` is left out (the stored one replaces it).
#[derive(Clone, Copy, Debug, Default)]
pub struct Chain<A, B>(pub A, pub B);

impl<A: Source, B: Source> Source for Chain<A, B> {
    fn code_system(&self, url: &str, version: Option<&str>) -> Result<Option<Resource>> {
        match self.0.code_system(url, version)? {
            Some(found) => Ok(Some(found)),
            None => self.1.code_system(url, version),
        }
    }

    fn value_set(&self, url: &str, version: Option<&str>) -> Result<Option<Resource>> {
        match self.0.value_set(url, version)? {
            Some(found) => Ok(Some(found)),
            None => self.1.value_set(url, version),
        }
    }

    fn concept_map(&self, url: &str, version: Option<&str>) -> Result<Option<Resource>> {
        match self.0.concept_map(url, version)? {
            Some(found) => Ok(Some(found)),
            None => self.1.concept_map(url, version),
        }
    }

    fn concept_maps(&self, query: &MapQuery<'_>) -> Result<Vec<Resource>> {
        let mut maps = self.0.concept_maps(query)?;
        let first: Vec<String> = maps
            .iter()
            .filter_map(|m| str_of(m, "url").map(str::to_string))
            .collect();
        maps.extend(
            self.1
                .concept_maps(query)?
                .into_iter()
                .filter(|m| str_of(m, "url").is_none_or(|u| !first.iter().any(|f| f == u))),
        );
        Ok(maps)
    }
}

/// The R4 core terminology embedded in `flint-fhir` (`definitions::terminology()`), indexed by
/// canonical URL on first use.
#[derive(Clone, Copy, Debug, Default)]
pub struct Core;

#[derive(Default)]
struct CoreIndex {
    code_systems: HashMap<&'static str, Vec<&'static Value>>,
    value_sets: HashMap<&'static str, Vec<&'static Value>>,
    concept_maps: HashMap<&'static str, Vec<&'static Value>>,
    all_maps: Vec<&'static Value>,
}

fn core_index() -> &'static CoreIndex {
    static INDEX: OnceLock<CoreIndex> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut index = CoreIndex::default();
        for resource in flint_fhir::definitions::terminology() {
            let Some(url) = str_of(resource, "url") else {
                continue;
            };
            let by_url = match str_of(resource, "resourceType") {
                Some("CodeSystem") => &mut index.code_systems,
                Some("ValueSet") => &mut index.value_sets,
                Some("ConceptMap") => {
                    index.all_maps.push(resource);
                    &mut index.concept_maps
                }
                _ => continue,
            };
            by_url.entry(url).or_default().push(resource);
        }
        index
    })
}

fn pick(
    by_url: &HashMap<&'static str, Vec<&'static Value>>,
    url: &str,
    version: Option<&str>,
) -> Option<Resource> {
    by_url
        .get(url)?
        .iter()
        .rev()
        .find(|r| version.is_none_or(|want| str_of(r, "version") == Some(want)))
        .map(|r| Resource::Core(r))
}

impl Source for Core {
    fn code_system(&self, url: &str, version: Option<&str>) -> Result<Option<Resource>> {
        Ok(pick(&core_index().code_systems, url, version))
    }

    fn value_set(&self, url: &str, version: Option<&str>) -> Result<Option<Resource>> {
        Ok(pick(&core_index().value_sets, url, version))
    }

    fn concept_map(&self, url: &str, version: Option<&str>) -> Result<Option<Resource>> {
        Ok(pick(&core_index().concept_maps, url, version))
    }

    fn concept_maps(&self, query: &MapQuery<'_>) -> Result<Vec<Resource>> {
        Ok(core_index()
            .all_maps
            .iter()
            .filter(|m| query.matches(m))
            .map(|m| Resource::Core(m))
            .collect())
    }
}

/// A source of the resources it is given, for tests and for requests that carry their own
/// definitions. Lookups scan the list; keep it small.
#[derive(Clone, Debug, Default)]
pub struct Resources(pub Vec<Resource>);

impl Resources {
    /// A source holding these resources.
    pub fn new(resources: impl IntoIterator<Item = Value>) -> Resources {
        Resources(resources.into_iter().map(Resource::from).collect())
    }

    fn find(&self, kind: &str, url: &str, version: Option<&str>) -> Option<Resource> {
        self.0
            .iter()
            .rev()
            .find(|r| {
                str_of(r, "resourceType") == Some(kind)
                    && str_of(r, "url") == Some(url)
                    && version.is_none_or(|want| str_of(r, "version") == Some(want))
            })
            .cloned()
    }
}

impl Source for Resources {
    fn code_system(&self, url: &str, version: Option<&str>) -> Result<Option<Resource>> {
        Ok(self.find("CodeSystem", url, version))
    }

    fn value_set(&self, url: &str, version: Option<&str>) -> Result<Option<Resource>> {
        Ok(self.find("ValueSet", url, version))
    }

    fn concept_map(&self, url: &str, version: Option<&str>) -> Result<Option<Resource>> {
        Ok(self.find("ConceptMap", url, version))
    }

    fn concept_maps(&self, query: &MapQuery<'_>) -> Result<Vec<Resource>> {
        Ok(self
            .0
            .iter()
            .filter(|r| str_of(r, "resourceType") == Some("ConceptMap") && query.matches(r))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn core_finds_each_kind_by_url_and_version() {
        let cs = Core
            .code_system("http://hl7.org/fhir/administrative-gender", None)
            .unwrap()
            .unwrap();
        assert!(cs.is_core());
        assert_eq!(cs["resourceType"], "CodeSystem");
        assert!(Core
            .code_system("http://hl7.org/fhir/administrative-gender", Some("4.0.1"))
            .unwrap()
            .is_some());
        assert!(Core
            .code_system("http://hl7.org/fhir/administrative-gender", Some("1.0"))
            .unwrap()
            .is_none());
        // A value set and a code system may share nothing but the kind asked for.
        assert!(Core
            .value_set("http://hl7.org/fhir/administrative-gender", None)
            .unwrap()
            .is_none());
        assert!(Core
            .concept_map(
                "http://hl7.org/fhir/ConceptMap/cm-administrative-gender-v2",
                None
            )
            .unwrap()
            .is_some());
    }

    #[test]
    fn map_queries_match_scopes_and_group_systems() {
        let q = MapQuery {
            source_system: Some("http://hl7.org/fhir/administrative-gender"),
            target_system: Some("http://terminology.hl7.org/CodeSystem/v2-0001"),
            ..Default::default()
        };
        let maps = Core.concept_maps(&q).unwrap();
        assert_eq!(maps.len(), 1);
        assert_eq!(
            maps[0]["url"],
            "http://hl7.org/fhir/ConceptMap/cm-administrative-gender-v2"
        );
        let scoped = MapQuery {
            source_scope: Some("http://hl7.org/fhir/ValueSet/administrative-gender|4.0.1"),
            ..Default::default()
        };
        assert_eq!(Core.concept_maps(&scoped).unwrap().len(), 2);
    }

    #[test]
    fn chain_prefers_the_first_source() {
        let stored = Resources::new([json!({
            "resourceType": "CodeSystem",
            "url": "http://hl7.org/fhir/administrative-gender",
            "content": "complete",
            "concept": [{"code": "x"}]
        })]);
        let chain = Chain(stored, Core);
        let cs = chain
            .code_system("http://hl7.org/fhir/administrative-gender", None)
            .unwrap()
            .unwrap();
        assert!(!cs.is_core());
        assert!(chain
            .code_system("http://hl7.org/fhir/observation-status", None)
            .unwrap()
            .unwrap()
            .is_core());
    }
}
