//! Snapshot generation: a StructureDefinition with only a `differential` gets its snapshot by
//! applying the differential to its base's snapshot (the base's own built first when it too
//! has only a differential, up to [`MAX_BASE_CHAIN`] deep).
//!
//! Each differential element, found by `id` (or by `path` and `sliceName` when it has no id),
//! is merged into the base element of that id: what it states replaces the base's, and its
//! invariants are added. Elements the base does not list are placed as the specification's
//! snapshot algorithm would: a slice (`Patient.extension:race`) is a copy of the sliced element
//! and its children; an element inside a datatype (`Patient.identifier.system`) expands the
//! datatype (or the profile its type names) below its parent; a type-specific choice name
//! (`Observation.valueQuantity`) is the type slice `Observation.value[x]:valueQuantity`.
//! A differential element that cannot be placed is reported and not applied.

use flint_fhir::{Error, Issue, IssueSeverity, IssueType, Result};
use serde_json::{json, Map, Value};

use crate::report::issue;
use crate::ResolveStructureDefinition;

/// Longest chain of bases followed (a profile on a profile on ...); longer is refused, which
/// also stops a cycle.
pub const MAX_BASE_CHAIN: usize = 12;

/// Most elements a built snapshot may have.
pub const MAX_SNAPSHOT_ELEMENTS: usize = 20_000;

/// A snapshot: the ElementDefinitions, and what of the differential could not be applied.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub elements: Vec<Value>,
    /// Warnings about differential elements not applied, located at the profile's element id.
    pub issues: Vec<Issue>,
}

/// The snapshot of a StructureDefinition: its own when it has one, else built from its
/// differential and its base (found by `resolve_sd`, then among the core definitions).
///
/// # Errors
/// Neither snapshot nor differential, a base not found, a chain of bases longer than
/// [`MAX_BASE_CHAIN`], or a snapshot larger than [`MAX_SNAPSHOT_ELEMENTS`].
pub fn snapshot(sd: &Value, resolve_sd: &ResolveStructureDefinition<'_>) -> Result<Snapshot> {
    build(sd, resolve_sd, 0)
}

/// Finds a StructureDefinition by URL: the caller's resolver, then the core definitions.
pub(crate) fn resolve(url: &str, resolve_sd: &ResolveStructureDefinition<'_>) -> Option<Value> {
    resolve_sd(url).or_else(|| {
        flint_fhir::definitions::by_url(url)
            .filter(|sd| {
                sd.get("resourceType").and_then(Value::as_str) == Some("StructureDefinition")
            })
            .cloned()
    })
}

fn name_of(sd: &Value) -> &str {
    sd.get("url")
        .or_else(|| sd.get("id"))
        .and_then(Value::as_str)
        .unwrap_or("the profile")
}

fn build(
    sd: &Value,
    resolve_sd: &ResolveStructureDefinition<'_>,
    depth: usize,
) -> Result<Snapshot> {
    if sd.get("resourceType").and_then(Value::as_str) != Some("StructureDefinition") {
        return Err(Error::invalid("a profile must be a StructureDefinition"));
    }
    if let Some(elements) = sd
        .pointer("/snapshot/element")
        .and_then(Value::as_array)
        .filter(|e| !e.is_empty())
    {
        return Ok(Snapshot {
            elements: elements.clone(),
            issues: Vec::new(),
        });
    }
    let name = name_of(sd);
    let Some(differential) = sd
        .pointer("/differential/element")
        .and_then(Value::as_array)
    else {
        return Err(Error::invalid(format!(
            "StructureDefinition {name} has neither a snapshot nor a differential"
        )));
    };
    if depth >= MAX_BASE_CHAIN {
        return Err(Error::invalid(format!(
            "StructureDefinition {name}: the chain of base definitions is longer than {MAX_BASE_CHAIN}"
        )));
    }
    let Some(base_url) = sd.get("baseDefinition").and_then(Value::as_str) else {
        return Err(Error::invalid(format!(
            "StructureDefinition {name} has only a differential and no baseDefinition"
        )));
    };
    let Some(base) = resolve(base_url, resolve_sd) else {
        return Err(Error::not_found(format!(
            "the base {base_url} of StructureDefinition {name} is not known"
        )));
    };
    let base = build(&base, resolve_sd, depth + 1)?;
    let mut builder = Builder {
        elements: base.elements,
        issues: base.issues,
        resolve_sd,
        depth,
    };
    for d in differential {
        builder.apply(d)?;
    }
    Ok(Snapshot {
        elements: builder.elements,
        issues: builder.issues,
    })
}

struct Builder<'r, 'a> {
    elements: Vec<Value>,
    issues: Vec<Issue>,
    resolve_sd: &'r ResolveStructureDefinition<'a>,
    depth: usize,
}

fn id_of(e: &Value) -> Option<&str> {
    e.get("id").and_then(Value::as_str)
}

/// A differential element's id: its own, or its path with its slice name.
fn differential_id(d: &Value) -> Option<String> {
    if let Some(id) = id_of(d) {
        return Some(id.to_string());
    }
    let path = d.get("path").and_then(Value::as_str)?;
    Some(match d.get("sliceName").and_then(Value::as_str) {
        Some(slice) => format!("{path}:{slice}"),
        None => path.to_string(),
    })
}

/// Whether `id` is `prefix` or lies below it (`prefix.x`, `prefix:slice`).
fn within(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with(':'))
}

/// `prefix` replaced by `by` at the start of `s` (ids and paths of copied elements).
fn rebase(s: &str, prefix: &str, by: &str) -> String {
    match s.strip_prefix(prefix) {
        Some(rest) => format!("{by}{rest}"),
        None => s.to_string(),
    }
}

impl Builder<'_, '_> {
    fn find(&self, id: &str) -> Option<usize> {
        self.elements.iter().position(|e| id_of(e) == Some(id))
    }

    fn has_children(&self, id: &str) -> bool {
        let prefix = format!("{id}.");
        self.elements
            .iter()
            .any(|e| id_of(e).is_some_and(|i| i.starts_with(&prefix)))
    }

    fn not_applied(&mut self, id: &str, why: &str) {
        self.issues.push(issue(
            IssueSeverity::Warning,
            IssueType::NotSupported,
            format!("the differential element {id} {why}; its rules are not checked"),
            id.to_string(),
        ));
    }

    fn room(&self, more: usize) -> Result<()> {
        if self.elements.len() + more > MAX_SNAPSHOT_ELEMENTS {
            return Err(Error::new(
                IssueType::TooCostly,
                format!("the snapshot would have more than {MAX_SNAPSHOT_ELEMENTS} elements"),
            ));
        }
        Ok(())
    }

    fn apply(&mut self, d: &Value) -> Result<()> {
        let Some(id) = differential_id(d) else {
            self.issues.push(issue(
                IssueSeverity::Warning,
                IssueType::NotSupported,
                "a differential element without id or path is not applied",
                "StructureDefinition.differential".to_string(),
            ));
            return Ok(());
        };
        if let Some(i) = self.find(&id) {
            merge(&mut self.elements[i], d);
            return Ok(());
        }
        let segments: Vec<&str> = id.split('.').collect();
        let mut current = segments[0].to_string();
        if self.find(&current).is_none() {
            self.not_applied(&id, "is not in the base's type");
            return Ok(());
        }
        for seg in &segments[1..] {
            let next = format!("{current}.{seg}");
            if self.find(&next).is_some() {
                current = next;
                continue;
            }
            let (name, slice) = match seg.split_once(':') {
                Some((name, slice)) => (name, Some(slice)),
                None => (*seg, None),
            };
            let mut base = format!("{current}.{name}");
            if self.find(&base).is_none() && !self.has_children(&current) {
                self.expand(&current)?;
            }
            if self.find(&base).is_none() {
                // `valueQuantity` for `value[x]`: the type slice `value[x]:valueQuantity`.
                match self.renamed_choice(&current, name)? {
                    Some(slice_id) => {
                        base = slice_id;
                    }
                    None => {
                        self.not_applied(&id, "does not match an element of the base");
                        return Ok(());
                    }
                }
            }
            current = match slice {
                Some(slice) => {
                    let slice_id = format!("{base}:{slice}");
                    if self.find(&slice_id).is_none() {
                        self.slice(&base, slice)?;
                    }
                    slice_id
                }
                None => base,
            };
        }
        match self.find(&current) {
            Some(i) => merge(&mut self.elements[i], d),
            None => self.not_applied(&id, "could not be placed"),
        }
        Ok(())
    }

    /// The type slice for a type-specific choice name (`valueQuantity` under `parent`),
    /// created if needed.
    fn renamed_choice(&mut self, parent: &str, name: &str) -> Result<Option<String>> {
        let prefix = format!("{parent}.");
        let found = self.elements.iter().find_map(|e| {
            let id = id_of(e)?;
            let choice = id.strip_prefix(&prefix)?.strip_suffix("[x]")?;
            if choice.contains(['.', ':']) {
                return None;
            }
            let suffix = crate::json::choice_type(name, choice)?;
            let ty = e
                .get("type")
                .and_then(Value::as_array)?
                .iter()
                .filter_map(|t| t.get("code").and_then(Value::as_str))
                .find(|t| crate::json::type_matches_suffix(t, suffix))?;
            Some((id.to_string(), ty.to_string()))
        });
        let Some((choice_id, ty)) = found else {
            return Ok(None);
        };
        let slice_id = format!("{choice_id}:{name}");
        if self.find(&slice_id).is_none() {
            self.slice(&choice_id, name)?;
            if let Some(i) = self.find(&slice_id) {
                self.elements[i]["type"] = json!([{"code": ty}]);
            }
        }
        Ok(Some(slice_id))
    }

    /// Adds slice `name` of the element `base`: a copy of it and its children.
    fn slice(&mut self, base: &str, name: &str) -> Result<()> {
        let Some(at) = self.find(base) else {
            return Ok(());
        };
        let slice_id = format!("{base}:{name}");
        let children = format!("{base}.");
        let mut copies = Vec::new();
        let mut root = self.elements[at].clone();
        if let Some(obj) = root.as_object_mut() {
            obj.remove("slicing");
            obj.insert("id".into(), Value::String(slice_id.clone()));
            obj.insert("sliceName".into(), Value::String(name.to_string()));
        }
        copies.push(root);
        for e in &self.elements[at + 1..] {
            let Some(id) = id_of(e) else { continue };
            if id.starts_with(&children) {
                let mut copy = e.clone();
                copy["id"] = Value::String(rebase(id, base, &slice_id));
                copies.push(copy);
            }
        }
        self.room(copies.len())?;
        // After the element, its children and its slices so far.
        let mut end = at + 1;
        while end < self.elements.len()
            && id_of(&self.elements[end]).is_some_and(|i| within(i, base))
        {
            end += 1;
        }
        // Extensions are sliced by url, choices by type, without saying so.
        let path = self.elements[at]
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or("");
        let implied = if path.ends_with(".extension") || path.ends_with(".modifierExtension") {
            Some(("value", "url"))
        } else if path.ends_with("[x]") {
            Some(("type", "$this"))
        } else {
            None
        };
        if let (None, Some((kind, on))) = (self.elements[at].get("slicing"), implied) {
            self.elements[at]["slicing"] = json!({
                "discriminator": [{"type": kind, "path": on}],
                "rules": "open"
            });
        }
        self.elements.splice(end..end, copies);
        Ok(())
    }

    /// Adds the children of the element `id` from its type's definition (or the profile its
    /// type names), when it has one type.
    fn expand(&mut self, id: &str) -> Result<()> {
        let Some(at) = self.find(id) else {
            return Ok(());
        };
        let element = &self.elements[at];
        let path = element
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or(id)
            .to_string();
        let types = element
            .get("type")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let [ty] = types else { return Ok(()) };
        let Some(code) = ty.get("code").and_then(Value::as_str) else {
            return Ok(());
        };
        let profile = ty
            .get("profile")
            .and_then(Value::as_array)
            .and_then(|p| p.first())
            .and_then(Value::as_str)
            .map(str::to_string);
        let url = format!("http://hl7.org/fhir/StructureDefinition/{code}");
        let source = profile
            .and_then(|p| crate::snapshot::resolve(&p, self.resolve_sd))
            .or_else(|| flint_fhir::definitions::by_url(&url).cloned());
        let Some(source) = source else { return Ok(()) };
        let source = build(&source, self.resolve_sd, self.depth + 1)?;
        let Some(root_id) = source.elements.first().and_then(id_of).map(str::to_string) else {
            return Ok(());
        };
        let root_path = source.elements[0]
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or(&root_id)
            .to_string();
        self.room(source.elements.len())?;
        let copies: Vec<Value> = source.elements[1..]
            .iter()
            .filter_map(|e| {
                let mut copy = e.clone();
                let obj = copy.as_object_mut()?;
                let eid = obj.get("id")?.as_str()?;
                let new_id = rebase(eid, &root_id, id);
                obj.insert("id".into(), Value::String(new_id));
                if let Some(p) = obj.get("path").and_then(Value::as_str) {
                    let new_path = rebase(p, &root_path, &path);
                    obj.insert("path".into(), Value::String(new_path));
                }
                Some(copy)
            })
            .collect();
        self.elements.splice(at + 1..at + 1, copies);
        Ok(())
    }
}

/// Merges a differential element into a snapshot element: stated properties replace the
/// base's (a `fixed[x]` or `pattern[x]` replaces either), invariants are added.
fn merge(target: &mut Value, d: &Value) {
    let (Some(target), Some(d)) = (target.as_object_mut(), d.as_object()) else {
        return;
    };
    for (k, v) in d {
        match k.as_str() {
            "id" | "path" => {}
            "constraint" => merge_constraints(target, v),
            _ => {
                if k.starts_with("fixed") || k.starts_with("pattern") {
                    target.retain(|t, _| !(t.starts_with("fixed") || t.starts_with("pattern")));
                }
                target.insert(k.clone(), v.clone());
            }
        }
    }
}

fn merge_constraints(target: &mut Map<String, Value>, added: &Value) {
    let list = target
        .entry("constraint")
        .or_insert_with(|| Value::Array(Vec::new()));
    let (Some(list), Some(added)) = (list.as_array_mut(), added.as_array()) else {
        return;
    };
    for c in added {
        let key = c.get("key");
        match list.iter_mut().find(|e| e.get("key") == key) {
            Some(existing) => *existing = c.clone(),
            None => list.push(c.clone()),
        }
    }
}
