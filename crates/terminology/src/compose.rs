//! A ValueSet's `compose` evaluated into the codes it holds: listed concepts, filters, whole
//! code systems, other value sets (intersected within one include), excludes, and
//! `compose.inactive`; a value set with only an `expansion` is read from it.
//!
//! Three modes: for `$expand` every code is enumerated (a whole code system must be held in
//! full), while for membership (`:in`) a whole code system may stay a wildcard, so that "all
//! of SNOMED CT" needs no SNOMED CT content. For `$validate-code`, moreover, an include that
//! cannot be evaluated here (a filter on SNOMED CT) only makes the set partial: a code found
//! in the rest is still known to be in the value set.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use flint_fhir::{Error, IssueType, Result};
use serde_json::Value;

use crate::expand::Contains;
use crate::hierarchy::{Concept, Designation, Hierarchy};
use crate::json::{array, bool_of, split_canonical, str_of};
use crate::{Source, Terminology};

/// The (system, code) pairs of a value set, as search needs them; a code of `None` stands
/// for every code of the system.
pub type Members = Vec<(String, Option<String>)>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Whole code systems may stay whole.
    Members,
    /// As `Members`, and an include that is not supported here leaves the set partial.
    Validate,
    /// Every code the value set includes is enumerated (inside nested value sets, whole
    /// code systems stay whole until the include that uses them).
    Expand,
}

/// Every code of a code system, not enumerated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Whole {
    pub system: String,
    pub version: Option<String>,
    /// Only the active codes (`compose.inactive` false).
    pub active_only: bool,
}

/// System → code → position in `entries`.
type Index = HashMap<String, HashMap<String, usize>>;

fn index_of(entries: &[Contains]) -> Index {
    let mut index = Index::new();
    for (at, e) in entries.iter().enumerate() {
        insert(&mut index, e, at);
    }
    index
}

/// Adds an entry's key to an index unless it is there; whether it was added.
fn insert(index: &mut Index, e: &Contains, at: usize) -> bool {
    // Looked up before inserting, so that a system's URL is copied once per set.
    let codes = match index.get_mut(&e.system) {
        Some(codes) => codes,
        None => index.entry(e.system.clone()).or_default(),
    };
    if codes.contains_key(&e.code) {
        return false;
    }
    codes.insert(e.code.clone(), at);
    true
}

/// The codes of a value set, in order and without duplicates, and the code systems it
/// holds whole.
#[derive(Debug, Default)]
pub(crate) struct CodeSet {
    pub entries: Vec<Contains>,
    /// Built when first needed: a value set of one include never needs it.
    index: Option<Index>,
    pub whole: Vec<Whole>,
    /// Why the set may lack codes (`Mode::Validate`): an include not supported here.
    pub partial: Option<String>,
}

impl CodeSet {
    /// A set of entries known to be distinct (concepts of one code system).
    fn distinct(entries: Vec<Contains>) -> CodeSet {
        CodeSet {
            entries,
            ..CodeSet::default()
        }
    }

    /// Builds the index, before many look-ups.
    fn prepare(&mut self) {
        if self.index.is_none() {
            self.index = Some(index_of(&self.entries));
        }
    }

    fn push(&mut self, entry: Contains) {
        let entries = &self.entries;
        let index = self.index.get_or_insert_with(|| index_of(entries));
        if insert(index, &entry, self.entries.len()) {
            self.entries.push(entry);
        }
    }

    fn push_whole(&mut self, whole: Whole) {
        if !self.whole.iter().any(|w| w.system == whole.system) {
            self.whole.push(whole);
        }
    }

    fn extend(&mut self, other: CodeSet) {
        if self.entries.is_empty() && self.whole.is_empty() && self.partial.is_none() {
            *self = other;
            return;
        }
        if self.partial.is_none() {
            self.partial = other.partial;
        }
        for w in other.whole {
            self.push_whole(w);
        }
        for e in other.entries {
            self.push(e);
        }
    }

    /// The listed entry of this code.
    pub fn find(&self, system: &str, code: &str) -> Option<&Contains> {
        match &self.index {
            Some(index) => self.entries.get(*index.get(system)?.get(code)?),
            None => self
                .entries
                .iter()
                .find(|e| e.system == system && e.code == code),
        }
    }

    /// The whole code system entry of this system.
    pub fn whole_of(&self, system: &str) -> Option<&Whole> {
        self.whole.iter().find(|w| w.system == system)
    }

    /// Whether the code is in the set: listed, or of a code system held whole (whatever its
    /// status, which is not known here).
    fn has(&self, system: &str, code: &str) -> bool {
        self.find(system, code).is_some() || self.whole_of(system).is_some()
    }

    fn lists_system(&self, system: &str) -> bool {
        match &self.index {
            Some(index) => index.get(system).is_some_and(|codes| !codes.is_empty()),
            None => self.entries.iter().any(|e| e.system == system),
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The entry for a concept of a code system held here.
pub(crate) fn entry_of(h: &Hierarchy, c: &Concept) -> Contains {
    Contains {
        system: h.system.clone(),
        version: h.version.clone(),
        code: c.code.clone(),
        display: c.display.clone(),
        display_language: h.language.clone(),
        designations: c.designations.clone(),
        inactive: c.inactive,
        abstract_: c.abstract_,
    }
}

/// The code system versions an expansion was asked to use (`$expand`'s `system-version`,
/// `force-system-version` and `check-system-version`), by system URL.
#[derive(Clone, Debug, Default)]
pub(crate) struct Versions {
    /// For an include that names no version.
    pub default: HashMap<String, String>,
    /// Whatever the include names.
    pub force: HashMap<String, String>,
    /// An include naming another version is an error.
    pub check: HashMap<String, String>,
}

impl Versions {
    /// The version to read `system` in, for an include naming `version`.
    fn resolve(&self, url: &str, system: &str, version: Option<&str>) -> Result<Option<String>> {
        if let Some(v) = self.force.get(system) {
            return Ok(Some(v.clone()));
        }
        if let (Some(want), Some(have)) = (self.check.get(system), version) {
            if want != have {
                return Err(Error::invalid(format!(
                    "the value set '{url}' uses version '{have}' of the code system '{system}', not version '{want}' (check-system-version)"
                )));
            }
        }
        Ok(version
            .map(str::to_string)
            .or_else(|| self.check.get(system).cloned())
            .or_else(|| self.default.get(system).cloned()))
    }
}

/// Evaluates value sets for one operation, keeping each code system it reads.
pub(crate) struct Evaluator<'t, 'a, S: Source + ?Sized> {
    t: &'t Terminology<'a, S>,
    mode: Mode,
    /// The value sets being evaluated, outermost first: the guard against cycles.
    stack: Vec<String>,
    /// Code systems contained in the value set the operation started from, by URL.
    contained: HashMap<String, Arc<Hierarchy>>,
    /// Every code system read, by (URL, version asked for).
    memo: HashMap<(String, Option<String>), Option<Arc<Hierarchy>>>,
    /// The code systems whose content went into the result: (URL, version).
    pub used: Vec<(String, Option<String>)>,
    /// The versions asked for.
    pub versions: Versions,
}

impl<'t, 'a, S: Source + ?Sized> Evaluator<'t, 'a, S> {
    /// An evaluator for value sets reached from `root`, whose contained CodeSystems it knows.
    pub fn new(t: &'t Terminology<'a, S>, mode: Mode, root: &Value) -> Result<Self> {
        let mut contained = HashMap::new();
        for cs in array(root, "contained") {
            if str_of(cs, "resourceType") != Some("CodeSystem") {
                continue;
            }
            if let Some(url) = str_of(cs, "url") {
                contained.insert(url.to_string(), Arc::new(Hierarchy::read(cs)?));
            }
        }
        Ok(Evaluator {
            t,
            mode,
            stack: Vec::new(),
            contained,
            memo: HashMap::new(),
            used: Vec::new(),
            versions: Versions::default(),
        })
    }

    /// A code system by URL and version: a contained one first, then the source's.
    pub fn hierarchy(
        &mut self,
        system: &str,
        version: Option<&str>,
    ) -> Result<Option<Arc<Hierarchy>>> {
        if let Some(h) = self.contained.get(system) {
            if version.is_none_or(|v| h.version.as_deref() == Some(v)) {
                return Ok(Some(h.clone()));
            }
        }
        let key = (system.to_string(), version.map(str::to_string));
        if let Some(found) = self.memo.get(&key) {
            return Ok(found.clone());
        }
        let found = self.t.code_system(system, version)?;
        self.memo.insert(key, found.clone());
        Ok(found)
    }

    fn note_used(&mut self, h: &Hierarchy) {
        let used = (h.system.clone(), h.version.clone());
        if !self.used.contains(&used) {
            self.used.push(used);
        }
    }

    /// The codes of a ValueSet resource.
    pub fn value_set(&mut self, vs: &Value) -> Result<CodeSet> {
        let url = str_of(vs, "url")
            .unwrap_or("(a value set without url)")
            .to_string();
        if self.stack.contains(&url) {
            return Err(Error::invalid(format!(
                "the value set '{url}' includes itself (through {})",
                self.stack.join(" → ")
            )));
        }
        if self.stack.len() >= self.t.limits().max_depth {
            return Err(Error::new(
                IssueType::TooCostly,
                format!(
                    "the value set '{url}' is nested more than {} value sets deep",
                    self.t.limits().max_depth
                ),
            ));
        }
        self.stack.push(url.clone());
        let result = match vs.get("compose") {
            // A definition that cannot be evaluated here, but the publisher's expansion of it
            // is at hand and whole.
            Some(compose) => match self.compose(&url, compose) {
                Err(e) if e.code() == IssueType::NotSupported => {
                    stored_expansion(vs).unwrap_or(Err(e))
                }
                Ok(set) if set.partial.is_some() => stored_expansion(vs).unwrap_or(Ok(set)),
                other => other,
            },
            None => stored_expansion(vs).unwrap_or_else(|| {
                Err(Error::not_supported(format!(
                    "the value set '{url}' has neither a compose nor a complete expansion"
                )))
            }),
        };
        self.stack.pop();
        result
    }

    fn compose(&mut self, url: &str, compose: &Value) -> Result<CodeSet> {
        let mut set = CodeSet::default();
        for include in array(compose, "include") {
            match self.part(url, include) {
                // Code systems included whole stay whole inside nested value sets, so that
                // intersections and excludes need not enumerate them; the expansion itself
                // lists them where they are included.
                Ok(part) if self.mode == Mode::Expand && self.stack.len() == 1 => {
                    let part = self.resolve(url, part)?;
                    set.extend(part);
                }
                Ok(part) => set.extend(part),
                Err(e) if self.mode == Mode::Validate && e.code() == IssueType::NotSupported => {
                    if set.partial.is_none() {
                        set.partial = e.issues.first().map(|i| i.diagnostics.clone());
                    }
                }
                Err(e) => return Err(e),
            }
            self.check_size(url, set.len())?;
        }
        for exclude in array(compose, "exclude") {
            let mut removed = self.part(url, exclude)?;
            if let Some(why) = removed.partial.take() {
                // What is excluded is not all known: no code can be said to be in the set.
                return Err(Error::not_supported(why));
            }
            removed.prepare();
            set = self.subtract(url, set, &removed)?;
        }
        if bool_of(compose, "inactive") == Some(false) {
            set = self.without_inactive(set)?;
        }
        Ok(set)
    }

    fn check_size(&self, url: &str, len: usize) -> Result<()> {
        let max = self.t.limits().max_codes;
        if len > max {
            return Err(Error::new(
                IssueType::TooCostly,
                format!("the value set '{url}' has more than {max} codes"),
            ));
        }
        Ok(())
    }

    /// The codes one `compose.include` or `compose.exclude` names: its system part (listed
    /// concepts, filters, or the whole system) intersected with each value set it names.
    fn part(&mut self, url: &str, part: &Value) -> Result<CodeSet> {
        let mut result: Option<CodeSet> = None;
        if let Some(system) = str_of(part, "system") {
            let version = self
                .versions
                .resolve(url, system, str_of(part, "version"))?;
            let version = version.as_deref();
            let concepts: Vec<&Value> = array(part, "concept").collect();
            let filters: Vec<&Value> = array(part, "filter").collect();
            result = Some(match (concepts.is_empty(), filters.is_empty()) {
                (false, false) => {
                    return Err(Error::invalid(format!(
                        "the value set '{url}' both lists concepts and filters '{system}' in one include"
                    )))
                }
                (false, true) => self.listed(system, version, &concepts)?,
                (true, false) => self.filtered(url, system, version, &filters)?,
                (true, true) => whole(system, version),
            });
        } else if part.get("concept").is_some() || part.get("filter").is_some() {
            return Err(Error::invalid(format!(
                "the value set '{url}' lists codes without a system"
            )));
        }
        for canonical in array(part, "valueSet").filter_map(Value::as_str) {
            let (vs_url, vs_version) = split_canonical(canonical);
            let vs = self.t.value_set(vs_url, vs_version)?.ok_or_else(|| {
                Error::not_supported(format!(
                    "the value set '{canonical}', which '{url}' includes, is not known to this server"
                ))
            })?;
            let codes = self.value_set(&vs)?;
            result = Some(match result {
                None => codes,
                Some(before) => intersect(before, codes),
            });
        }
        result.ok_or_else(|| {
            Error::invalid(format!(
                "an include or exclude of the value set '{url}' names neither a system nor a value set"
            ))
        })
    }

    /// Concepts listed by code: in the value set whether or not the code system is held, with
    /// the value set's display first, then the code system's.
    fn listed(
        &mut self,
        system: &str,
        version: Option<&str>,
        concepts: &[&Value],
    ) -> Result<CodeSet> {
        // Listed codes need no code system; one that cannot be read only lends no displays.
        let h = match self.hierarchy(system, version) {
            Ok(h) => h,
            Err(e) if e.is_server_fault() => return Err(e),
            Err(_) => None,
        };
        let mut set = CodeSet::default();
        for c in concepts {
            let Some(code) = str_of(c, "code").filter(|c| !c.is_empty()) else {
                continue;
            };
            let known = h.as_ref().and_then(|h| h.concept(code));
            let own_display = str_of(c, "display");
            let mut designations: Vec<Designation> = array(c, "designation")
                .filter_map(Designation::from_json)
                .collect();
            if let Some(k) = known {
                designations.extend(k.designations.iter().cloned());
            }
            set.push(Contains {
                system: system.to_string(),
                version: h
                    .as_ref()
                    .and_then(|h| h.version.clone())
                    .or_else(|| version.map(str::to_string)),
                code: known.map_or_else(|| code.to_string(), |k| k.code.clone()),
                display: own_display
                    .map(str::to_string)
                    .or_else(|| known.and_then(|k| k.display.clone())),
                display_language: if own_display.is_some() {
                    None
                } else {
                    h.as_ref().and_then(|h| h.language.clone())
                },
                designations,
                inactive: known.is_some_and(|k| k.inactive),
                abstract_: known.is_some_and(|k| k.abstract_),
            });
        }
        if let Some(h) = &h {
            self.note_used(h);
        }
        Ok(set)
    }

    /// The code system held in full, or not supported saying why `what` needs it.
    fn complete(
        &mut self,
        system: &str,
        version: Option<&str>,
        what: &str,
    ) -> Result<Arc<Hierarchy>> {
        let h = self.hierarchy(system, version)?.ok_or_else(|| {
            Error::not_supported(format!(
                "the code system '{system}'{} is not known to this server, so {what}",
                version
                    .map(|v| format!(" version '{v}'"))
                    .unwrap_or_default()
            ))
        })?;
        h.require_complete().map_err(|e| {
            Error::not_supported(format!(
                "{}, so {what}",
                e.issues.first().map_or("", |i| i.diagnostics.as_str())
            ))
        })?;
        self.note_used(&h);
        Ok(h)
    }

    fn filtered(
        &mut self,
        url: &str,
        system: &str,
        version: Option<&str>,
        filters: &[&Value],
    ) -> Result<CodeSet> {
        let h = self.complete(
            system,
            version,
            &format!("the filters of the value set '{url}' on it cannot be evaluated"),
        )?;
        let mut selected: Option<Vec<usize>> = None;
        for f in filters {
            let (Some(property), Some(op), Some(value)) =
                (str_of(f, "property"), str_of(f, "op"), str_of(f, "value"))
            else {
                return Err(Error::invalid(format!(
                    "the value set '{url}' has a filter without a property, an op or a value"
                )));
            };
            let codes = h.select(property, op, value)?;
            selected = Some(match selected {
                None => codes,
                Some(before) => {
                    let now: HashSet<usize> = codes.into_iter().collect();
                    before.into_iter().filter(|i| now.contains(i)).collect()
                }
            });
        }
        Ok(CodeSet::distinct(
            selected
                .unwrap_or_default()
                .into_iter()
                .map(|i| entry_of(&h, &h.concepts()[i]))
                .collect(),
        ))
    }

    /// `set` with the code systems it holds whole enumerated.
    fn resolve(&mut self, url: &str, mut set: CodeSet) -> Result<CodeSet> {
        if set.whole.is_empty() {
            return Ok(set);
        }
        let why = format!("the value set '{url}', which includes all of it, cannot be expanded");
        let whole = std::mem::take(&mut set.whole);
        if let ([only], true) = (whole.as_slice(), set.entries.is_empty()) {
            // The common case, a code system included whole: its codes are distinct.
            return Ok(CodeSet {
                partial: set.partial,
                ..CodeSet::distinct(self.enumerate(url, only, &why)?)
            });
        }
        let mut out = CodeSet {
            partial: set.partial.take(),
            ..CodeSet::default()
        };
        for w in &whole {
            for e in self.enumerate(url, w, &why)? {
                out.push(e);
            }
        }
        out.extend(set);
        Ok(out)
    }

    /// Every code of a whole code system, enumerated; not supported, saying why `why` needs
    /// it, when it is not held in full.
    fn enumerate(&mut self, url: &str, whole: &Whole, why: &str) -> Result<Vec<Contains>> {
        let h = self.complete(&whole.system, whole.version.as_deref(), why)?;
        self.check_size(url, h.len())?;
        Ok(h.concepts()
            .iter()
            .filter(|c| !(whole.active_only && c.inactive))
            .map(|c| entry_of(&h, c))
            .collect())
    }

    /// `set` without the codes of `removed`.
    fn subtract(&mut self, url: &str, set: CodeSet, removed: &CodeSet) -> Result<CodeSet> {
        let mut out = CodeSet {
            partial: set.partial,
            ..CodeSet::default()
        };
        for w in set.whole {
            if removed.whole_of(&w.system).is_some() {
                continue;
            }
            if removed.lists_system(&w.system) {
                // A whole code system minus some of its codes: list the rest.
                let why =
                    format!("the codes the value set '{url}' excludes from it cannot be removed");
                for e in self.enumerate(url, &w, &why)? {
                    if !removed.has(&e.system, &e.code) {
                        out.push(e);
                    }
                }
            } else {
                out.push_whole(w);
            }
        }
        for e in set.entries {
            if !removed.has(&e.system, &e.code) {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// `set` without its inactive codes (`compose.inactive` false). A whole code system
    /// held here is enumerated; one that is not stays whole, marked active only.
    fn without_inactive(&mut self, set: CodeSet) -> Result<CodeSet> {
        let mut out = CodeSet {
            partial: set.partial,
            ..CodeSet::default()
        };
        for mut w in set.whole {
            w.active_only = true;
            match self.hierarchy(&w.system, w.version.as_deref())? {
                Some(h) if h.content == crate::Content::Complete => {
                    self.note_used(&h);
                    for c in h.concepts().iter().filter(|c| !c.inactive) {
                        out.push(entry_of(&h, c));
                    }
                }
                _ => out.push_whole(w),
            }
        }
        for e in set.entries.into_iter().filter(|e| !e.inactive) {
            out.push(e);
        }
        Ok(out)
    }
}

/// Every code of a code system.
fn whole(system: &str, version: Option<&str>) -> CodeSet {
    let mut set = CodeSet::default();
    set.push_whole(Whole {
        system: system.to_string(),
        version: version.map(str::to_string),
        active_only: false,
    });
    set
}

/// `a ∩ b`, where a whole-system entry stands for every code of its system.
fn intersect(a: CodeSet, mut b: CodeSet) -> CodeSet {
    b.prepare();
    // What is known to be in both is in; whatever either may lack, the result may lack.
    let mut out = CodeSet {
        partial: a.partial.clone().or_else(|| b.partial.clone()),
        ..CodeSet::default()
    };
    for w in &a.whole {
        if let Some(other) = b.whole_of(&w.system) {
            out.push_whole(Whole {
                active_only: w.active_only || other.active_only,
                ..w.clone()
            });
        }
    }
    let admits =
        |whole: Option<&Whole>, e: &Contains| whole.is_some_and(|w| !(w.active_only && e.inactive));
    for e in &a.entries {
        if b.find(&e.system, &e.code).is_some() || admits(b.whole_of(&e.system), e) {
            out.push(e.clone());
        }
    }
    for e in b.entries {
        if admits(a.whole_of(&e.system), &e) {
            out.push(e);
        }
    }
    out
}

/// The codes of a value set's stored `expansion`, flattened; `None` without one, or when it
/// is only a part (paged or with a total larger than what it lists).
fn stored_expansion(vs: &Value) -> Option<Result<CodeSet>> {
    let expansion = vs.get("expansion")?;
    if expansion.get("offset").and_then(Value::as_u64).unwrap_or(0) > 0 {
        return None;
    }
    let mut set = CodeSet::default();
    let mut stack: Vec<&Value> = array(expansion, "contains").rev().collect();
    let mut listed = 0u64;
    while let Some(c) = stack.pop() {
        stack.extend(array(c, "contains").rev());
        let (Some(system), Some(code)) = (str_of(c, "system"), str_of(c, "code")) else {
            continue;
        };
        listed += 1;
        set.push(Contains {
            system: system.to_string(),
            version: str_of(c, "version").map(str::to_string),
            code: code.to_string(),
            display: str_of(c, "display").map(str::to_string),
            display_language: None,
            designations: array(c, "designation")
                .filter_map(Designation::from_json)
                .collect(),
            inactive: bool_of(c, "inactive") == Some(true),
            abstract_: bool_of(c, "abstract") == Some(true),
        });
    }
    if expansion
        .get("total")
        .and_then(Value::as_u64)
        .is_some_and(|total| total > listed)
    {
        return None;
    }
    Some(Ok(set))
}

impl<'a, S: Source + ?Sized> Terminology<'a, S> {
    /// The members of a value set (`url` or `url|version`) for the search modifiers `:in` and
    /// `:not-in`: each listed code, and `(system, None)` for a code system included whole.
    ///
    /// # Errors
    /// Not supported when the value set is unknown or uses what is not held here (filters on
    /// a code system not held in full, an unknown nested value set); invalid for a value set
    /// that includes itself or is malformed; too costly past the limits.
    pub fn members(&self, url: &str) -> Result<Members> {
        let (vs_url, version) = split_canonical(url);
        let vs = self.value_set(vs_url, version)?.ok_or_else(|| {
            Error::not_supported(format!("the value set '{url}' is not known to this server"))
        })?;
        let mut ev = Evaluator::new(self, Mode::Members, &vs)?;
        let set = ev.value_set(&vs)?;
        let mut out: Members = set
            .entries
            .into_iter()
            .map(|e| (e.system, Some(e.code)))
            .collect();
        out.extend(set.whole.into_iter().map(|w| (w.system, None)));
        Ok(out)
    }

    /// The codes of a value set for `$validate-code`, maybe partial.
    pub(crate) fn member_set<'t>(&'t self, vs: &Value) -> Result<(CodeSet, Evaluator<'t, 'a, S>)> {
        let mut ev = Evaluator::new(self, Mode::Validate, vs)?;
        let set = ev.value_set(vs)?;
        Ok((set, ev))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Core, Resources};
    use serde_json::json;

    fn code(system: &str, code: &str) -> Contains {
        Contains {
            system: system.into(),
            version: None,
            code: code.into(),
            display: None,
            display_language: None,
            designations: Vec::new(),
            inactive: false,
            abstract_: false,
        }
    }

    fn set(entries: &[(&str, Option<&str>)]) -> CodeSet {
        let mut s = CodeSet::default();
        for (system, c) in entries {
            match c {
                Some(c) => s.push(code(system, c)),
                None => s.push_whole(Whole {
                    system: system.to_string(),
                    version: None,
                    active_only: false,
                }),
            }
        }
        s
    }

    fn pairs(s: &CodeSet) -> Vec<(String, Option<String>)> {
        s.entries
            .iter()
            .map(|e| (e.system.clone(), Some(e.code.clone())))
            .chain(s.whole.iter().map(|w| (w.system.clone(), None)))
            .collect()
    }

    #[test]
    fn intersection_with_whole_systems() {
        let a = set(&[("s", None), ("t", Some("1"))]);
        let b = set(&[("s", Some("x")), ("t", Some("2"))]);
        assert_eq!(
            pairs(&intersect(a, b)),
            vec![("s".to_string(), Some("x".to_string()))]
        );
        let a = set(&[("s", None), ("u", None)]);
        let b = set(&[("s", None)]);
        assert_eq!(pairs(&intersect(a, b)), vec![("s".to_string(), None)]);
    }

    fn cs() -> Value {
        json!({
            "resourceType": "CodeSystem",
            "url": "http://example.org/cs",
            "version": "1",
            "content": "complete",
            "concept": [
                {"code": "a", "display": "A", "concept": [{"code": "a1"}, {"code": "a2",
                    "property": [{"code": "status", "valueCode": "retired"}]}]},
                {"code": "b"}
            ]
        })
    }

    fn members_of(source: &Resources, url: &str) -> Result<Members> {
        Terminology::new(source).members(url)
    }

    fn m(pairs: &[(&str, Option<&str>)]) -> Members {
        pairs
            .iter()
            .map(|(s, c)| (s.to_string(), c.map(str::to_string)))
            .collect()
    }

    #[test]
    fn members_keep_whole_systems_and_subtract_listed_codes() {
        let source = Resources::new([
            cs(),
            json!({"resourceType": "ValueSet", "url": "http://example.org/all",
                "compose": {"include": [{"system": "http://example.org/cs"}, {"system": "http://snomed.info/sct"}]}}),
            json!({"resourceType": "ValueSet", "url": "http://example.org/some",
                "compose": {"include": [{"system": "http://example.org/cs"}],
                            "exclude": [{"system": "http://example.org/cs", "concept": [{"code": "a1"}]}]}}),
            json!({"resourceType": "ValueSet", "url": "http://example.org/active",
                "compose": {"inactive": false, "include": [{"system": "http://example.org/cs"}]}}),
            json!({"resourceType": "ValueSet", "url": "http://example.org/nested",
                "compose": {"include": [{"valueSet": ["http://example.org/all", "http://example.org/some"]}]}}),
        ]);
        assert_eq!(
            members_of(&source, "http://example.org/all").unwrap(),
            m(&[
                ("http://example.org/cs", None),
                ("http://snomed.info/sct", None)
            ])
        );
        let cs = "http://example.org/cs";
        assert_eq!(
            members_of(&source, "http://example.org/some").unwrap(),
            m(&[(cs, Some("a")), (cs, Some("a2")), (cs, Some("b"))])
        );
        assert_eq!(
            members_of(&source, "http://example.org/active").unwrap(),
            m(&[(cs, Some("a")), (cs, Some("a1")), (cs, Some("b"))])
        );
        assert_eq!(
            members_of(&source, "http://example.org/nested").unwrap(),
            m(&[(cs, Some("a")), (cs, Some("a2")), (cs, Some("b"))])
        );
        let unknown = members_of(&source, "http://example.org/none").unwrap_err();
        assert_eq!(unknown.code(), IssueType::NotSupported);
    }

    #[test]
    fn cycles_and_bad_composes_are_refused() {
        let source = Resources::new([
            json!({"resourceType": "ValueSet", "url": "http://example.org/x",
                "compose": {"include": [{"valueSet": ["http://example.org/y"]}]}}),
            json!({"resourceType": "ValueSet", "url": "http://example.org/y",
                "compose": {"include": [{"valueSet": ["http://example.org/x"]}]}}),
            json!({"resourceType": "ValueSet", "url": "http://example.org/empty-include",
                "compose": {"include": [{}]}}),
            json!({"resourceType": "ValueSet", "url": "http://example.org/no-system",
                "compose": {"include": [{"concept": [{"code": "a"}]}]}}),
            json!({"resourceType": "ValueSet", "url": "http://example.org/both",
                "compose": {"include": [{"system": "s", "concept": [{"code": "a"}],
                    "filter": [{"property": "concept", "op": "is-a", "value": "a"}]}]}}),
            json!({"resourceType": "ValueSet", "url": "http://example.org/nothing"}),
            json!({"resourceType": "ValueSet", "url": "http://example.org/filter-unknown",
                "compose": {"include": [{"system": "http://snomed.info/sct",
                    "filter": [{"property": "concept", "op": "is-a", "value": "123"}]}]}}),
        ]);
        let err = members_of(&source, "http://example.org/x").unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.to_string().contains("includes itself"), "{err}");
        for url in ["empty-include", "no-system", "both"] {
            let err = members_of(&source, &format!("http://example.org/{url}")).unwrap_err();
            assert_eq!(err.code(), IssueType::Invalid, "{url}: {err}");
        }
        for url in ["nothing", "filter-unknown"] {
            let err = members_of(&source, &format!("http://example.org/{url}")).unwrap_err();
            assert_eq!(err.code(), IssueType::NotSupported, "{url}: {err}");
        }
    }

    #[test]
    fn deep_nesting_is_too_costly() {
        let mut resources = Vec::new();
        for i in 0..40 {
            resources.push(json!({"resourceType": "ValueSet", "url": format!("http://example.org/vs{i}"),
                "compose": {"include": [{"valueSet": [format!("http://example.org/vs{}", i + 1)]}]}}));
        }
        resources.push(
            json!({"resourceType": "ValueSet", "url": "http://example.org/vs40",
            "compose": {"include": [{"system": "s", "concept": [{"code": "c"}]}]}}),
        );
        let source = Resources::new(resources);
        let err = members_of(&source, "http://example.org/vs0").unwrap_err();
        assert_eq!(err.code(), IssueType::TooCostly);
        assert_eq!(
            members_of(&source, "http://example.org/vs30").unwrap(),
            m(&[("s", Some("c"))])
        );
    }

    #[test]
    fn core_members() {
        let t = Terminology::new(&Core);
        // A value set with only a system include stays a wildcard.
        assert_eq!(
            t.members("http://hl7.org/fhir/ValueSet/administrative-gender")
                .unwrap(),
            m(&[("http://hl7.org/fhir/administrative-gender", None)])
        );
        // The implicit value set of a code system.
        assert_eq!(
            t.members("http://hl7.org/fhir/observation-status?fhir_vs=isa/final")
                .unwrap()
                .len(),
            1
        );
        assert!(t
            .members("http://hl7.org/fhir/observation-status?fhir_vs=refset/1")
            .is_err());
    }
}
