//! Validation against a profile: the snapshot's elements as a tree (children and slices by
//! element id), walked along the resource's JSON. Each element of the profile is checked on
//! the values it matches: cardinality, types of choices, `fixed[x]`/`pattern[x]`, `maxLength`,
//! required bindings, reference targets, the profile's own invariants; slices are assigned by
//! [`crate::slicing`]; a value whose type names a profile (an extension's definition, a
//! datatype profile) is checked against that profile too.
//!
//! Rules the core definitions already state (the same cardinality, binding or invariant) are
//! left to the core checks, so that a resource is not told the same thing twice.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::LazyLock;

use flint_fhir::model::{self, Model};
use flint_fhir::{IssueSeverity, IssueType, Result};
use serde_json::{Map, Value};

use crate::bindings::{self, required_value_set, same_value_set};
use crate::invariants::{evaluate_all, Constraint};
use crate::json::{contains, equal, fixed_or_pattern};
use crate::report::{issue, Report};
use crate::slicing;
use crate::snapshot::{self, resolve};
use crate::walk::{resource_type, Loc, Node, Scope, Seg};
use crate::{ResolveStructureDefinition, Validator, ValueSets};

/// The object a primitive without `_name` companion stands for, so that its children's
/// minimum cardinalities are still checked.
static EMPTY: LazyLock<Map<String, Value>> = LazyLock::new(Map::new);

/// Deepest nesting of profiles followed (an extension's definition naming another, ...).
const MAX_PROFILE_DEPTH: usize = 8;

/// A snapshot as a tree. `nodes[i]` describes `elements[i]`.
pub(crate) struct Tree {
    pub elements: Vec<Value>,
    pub nodes: Vec<TreeNode>,
    /// The profile's canonical URL, for messages.
    pub url: String,
}

#[derive(Default)]
pub(crate) struct TreeNode {
    /// The element's name: the last step of its id without a slice name (`value[x]`).
    pub name: String,
    /// Child elements (not slices), in order.
    pub children: Vec<usize>,
    /// Slices of this element, in order.
    pub slices: Vec<usize>,
}

impl Tree {
    fn build(elements: Vec<Value>, url: String) -> Tree {
        let mut nodes: Vec<TreeNode> = Vec::with_capacity(elements.len());
        let mut by_id: HashMap<String, usize> = HashMap::new();
        for (i, e) in elements.iter().enumerate() {
            let id = element_id(e);
            let (parent, last) = match id.rsplit_once('.') {
                Some((p, l)) => (Some(p), l),
                None => (None, id.as_str()),
            };
            let (name, slice) = match last.split_once(':') {
                Some((n, s)) => (n, Some(s)),
                None => (last, None),
            };
            nodes.push(TreeNode {
                name: name.to_string(),
                ..TreeNode::default()
            });
            match (parent, slice) {
                (_, Some(slice)) => {
                    // `a:b/c` re-slices slice `b` of `a`.
                    let head = id.len() - last.len();
                    let mut base = format!("{}{name}", &id[..head]);
                    if let Some((outer, _)) = slice.split_once('/') {
                        base = format!("{base}:{outer}");
                    }
                    if let Some(&b) = by_id.get(&base) {
                        nodes[b].slices.push(i);
                    }
                }
                (Some(parent), None) => {
                    if let Some(&p) = by_id.get(parent) {
                        nodes[p].children.push(i);
                    }
                }
                (None, None) => {}
            }
            by_id.insert(id, i);
        }
        Tree {
            elements,
            nodes,
            url,
        }
    }

    pub(crate) fn element(&self, i: usize) -> &Value {
        &self.elements[i]
    }

    /// The element's id, for messages.
    pub(crate) fn id(&self, i: usize) -> String {
        element_id(&self.elements[i])
    }
}

/// An element's id, or its path with its slice name when it has none.
fn element_id(e: &Value) -> String {
    if let Some(id) = e.get("id").and_then(Value::as_str) {
        return id.to_string();
    }
    let path = e.get("path").and_then(Value::as_str).unwrap_or("");
    match e.get("sliceName").and_then(Value::as_str) {
        Some(slice) => format!("{path}:{slice}"),
        None => path.to_string(),
    }
}

/// The type codes an element allows.
pub(crate) fn type_codes(e: &Value) -> Vec<&str> {
    e.get("type")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("code").and_then(Value::as_str))
        .collect()
}

/// One value the profile's element matches in the resource.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Found<'v> {
    pub value: Option<&'v Value>,
    /// A primitive's `_name` companion.
    pub ext: Option<&'v Value>,
    pub ty: &'v str,
    /// The JSON key (`valueQuantity`) and the index in its array.
    pub key: &'v str,
    pub index: Option<usize>,
}

/// Checks `resource` against `profile`, into `report`.
pub(crate) fn check(
    validator: &Validator,
    resource: &Value,
    profile: &Value,
    resolve_sd: &ResolveStructureDefinition<'_>,
    value_sets: &dyn ValueSets,
    report: &mut Report,
) -> Result<()> {
    let built = snapshot::snapshot(profile, resolve_sd)?;
    let url = profile
        .get("url")
        .and_then(Value::as_str)
        .unwrap_or("the profile")
        .to_string();
    for issue in built.issues {
        report.push(issue);
    }
    let tree = Tree::build(built.elements, url.clone());
    let model = model::r4();
    let rt = resource.get("resourceType").and_then(Value::as_str);
    let Some(rt) = rt.filter(|t| model.is_resource_type(t)) else {
        report.push(issue(
            IssueSeverity::Error,
            IssueType::Invalid,
            "the resource has no known resourceType",
            "$this".to_string(),
        ));
        return Ok(());
    };
    let profiled = profile.get("type").and_then(Value::as_str).unwrap_or("");
    if profiled != rt {
        report.push(issue(
            IssueSeverity::Error,
            IssueType::Invalid,
            format!("the profile {url} is for {profiled}, not {rt}"),
            rt.to_string(),
        ));
        return Ok(());
    }
    if tree.elements.is_empty() {
        return Ok(());
    }
    let mut checker = Checker {
        validator,
        model,
        resolve_sd,
        value_sets,
        report,
        trees: HashMap::new(),
        depth: 0,
    };
    let scope = Scope {
        resource,
        root: resource,
        document: resource,
    };
    let mut loc = Loc::default();
    loc.push(Seg::Name(rt));
    let found = Found {
        value: Some(resource),
        ext: None,
        ty: rt,
        key: rt,
        index: None,
    };
    checker.item(&tree, 0, found, scope, &mut loc);
    Ok(())
}

pub(crate) struct Checker<'c> {
    validator: &'c Validator,
    model: &'static Model,
    resolve_sd: &'c ResolveStructureDefinition<'c>,
    value_sets: &'c dyn ValueSets,
    report: &'c mut Report,
    /// Profiles named by types, by URL (`None`: not found or not usable).
    trees: HashMap<String, Option<Rc<Tree>>>,
    depth: usize,
}

fn max_of(e: &Value) -> Option<Option<u64>> {
    match e.get("max").and_then(Value::as_str)? {
        "*" => Some(None),
        n => n.parse().ok().map(Some),
    }
}

impl<'c> Checker<'c> {
    fn push(&mut self, severity: IssueSeverity, code: IssueType, message: String, loc: &Loc<'_>) {
        self.report
            .push(issue(severity, code, message, loc.render()));
    }

    /// Checks one value against element `n` of `tree`.
    fn item<'v>(
        &mut self,
        tree: &Tree,
        n: usize,
        found: Found<'v>,
        scope: Scope<'v>,
        loc: &mut Loc<'v>,
    ) {
        if self.report.stopped() || !self.report.node(|| loc.render()) {
            return;
        }
        let e = tree.element(n);
        let path = e.get("path").and_then(Value::as_str).unwrap_or("");
        if let Some((want, is_pattern)) = fixed_or_pattern(e) {
            let ok = found.value.is_some_and(|v| {
                if is_pattern {
                    contains(v, want)
                } else {
                    equal(v, want)
                }
            });
            if !ok {
                let what = if is_pattern { "pattern" } else { "fixed value" };
                self.push(
                    IssueSeverity::Error,
                    IssueType::Value,
                    format!(
                        "the value {} does not match the {what} {want} of {} in {}",
                        found
                            .value
                            .map_or_else(|| "(none)".to_string(), Value::to_string),
                        tree.id(n),
                        tree.url
                    ),
                    loc,
                );
            }
        }
        if let (Some(max), Some(s)) = (
            e.get("maxLength").and_then(Value::as_u64),
            found.value.and_then(Value::as_str),
        ) {
            let len = s.chars().count() as u64;
            if len > max {
                self.push(
                    IssueSeverity::Error,
                    IssueType::Value,
                    format!(
                        "the value is {len} characters long; {} allows at most {max}",
                        tree.id(n)
                    ),
                    loc,
                );
            }
        }
        let node = Node {
            value: found.value,
            ext: found.ext,
            ty: found.ty,
            path,
        };
        if let Some(vs) = required_value_set(e) {
            let core = self.validator.bindings.required(path);
            if !core.is_some_and(|c| same_value_set(c, vs)) {
                bindings::check(vs, &node, loc, self.value_sets, self.report);
            }
        }
        if found.ty == "Reference" {
            self.reference_target(e, found, scope, loc);
        }
        self.constraints(e, &node, &scope, loc);

        // Below: the element's children in this profile, or the profile its type names.
        let scope = match found.value.and_then(|v| resource_type(self.model, v)) {
            Some(_) if n != 0 || self.depth > 0 => Scope {
                resource: found.value.unwrap_or(scope.resource),
                root: found.value.unwrap_or(scope.resource),
                document: scope.document,
            },
            _ => scope,
        };
        let children = &tree.nodes[n].children;
        if !children.is_empty() {
            let inner = if self.model.is_primitive(found.ty) {
                found.ext
            } else {
                found.value
            };
            let obj = match inner {
                Some(Value::Object(obj)) => obj,
                None if !self.model.is_primitive(found.ty) => return,
                _ => &*EMPTY,
            };
            for &c in children {
                self.element(tree, c, obj, found.ty, scope, loc);
            }
        } else if n != 0 {
            self.type_profiles(e, found, scope, loc);
        }
    }

    /// The profile's own invariants on a value (those the core definitions state are checked
    /// by [`Validator::check`]).
    fn constraints<'v>(&mut self, e: &Value, node: &Node<'v>, scope: &Scope<'v>, loc: &Loc<'v>) {
        let Some(list) = e.get("constraint").and_then(Value::as_array) else {
            return;
        };
        let core = &self.validator.core_constraints;
        let cache = &self.validator.compiled;
        let own: Vec<Constraint> = list
            .iter()
            .filter(|c| {
                let key = c.get("key").and_then(Value::as_str);
                let expr = c.get("expression").and_then(Value::as_str);
                !matches!((key, expr), (Some(k), Some(x)) if core.get(k).is_some_and(|y| y == x))
            })
            .filter_map(|c| Constraint::from_json(c, &mut |text| cache.get(text)))
            .collect();
        if !own.is_empty() {
            evaluate_all(own.iter(), node, scope, loc, self.value_sets, self.report);
        }
    }

    /// Checks the values of the resource object `obj` (of type `ty`) that element `c` matches.
    fn element<'v>(
        &mut self,
        tree: &Tree,
        c: usize,
        obj: &'v Map<String, Value>,
        ty: &'v str,
        scope: Scope<'v>,
        loc: &mut Loc<'v>,
    ) {
        if self.report.stopped() {
            return;
        }
        let e = tree.element(c);
        let name = tree.nodes[c].name.as_str();
        let (items, base_card) = self.collect(obj, ty, name, e);
        let shown = name.trim_end_matches("[x]");

        // Cardinality, where the profile says more than the core definition.
        let min = e.get("min").and_then(Value::as_u64).unwrap_or(0);
        let max = max_of(e).unwrap_or(None);
        let count = items.len() as u64;
        if base_card != Some((min, max)) {
            if count < min {
                self.push(
                    IssueSeverity::Error,
                    IssueType::Required,
                    format!(
                        "{} requires at least {min} {shown} (found {count}) in {}",
                        tree.id(c),
                        tree.url
                    ),
                    loc,
                );
            }
            if let (Some(m), Some(first)) = (
                max,
                items.first().filter(|_| max.is_some_and(|m| count > m)),
            ) {
                loc.push(Seg::Name(first.key));
                self.push(
                    IssueSeverity::Error,
                    IssueType::Structure,
                    format!(
                        "{} allows at most {} {shown} (found {count}) in {}",
                        tree.id(c),
                        m,
                        tree.url
                    ),
                    loc,
                );
                loc.pop();
            }
        }
        if items.is_empty() {
            return;
        }
        // The types a choice allows.
        if name.ends_with("[x]") {
            let allowed = type_codes(e);
            for found in &items {
                if !allowed.is_empty() && !allowed.contains(&found.ty) {
                    with_item(loc, found, |loc| {
                        self.push(
                            IssueSeverity::Error,
                            IssueType::Structure,
                            format!(
                                "type {} is not allowed for {} in {} (allowed: {})",
                                found.ty,
                                tree.id(c),
                                tree.url,
                                allowed.join(", ")
                            ),
                            loc,
                        );
                    });
                }
            }
        }
        let slices = &tree.nodes[c].slices;
        let mut assignment: Vec<Option<usize>> = vec![None; items.len()];
        if !slices.is_empty() {
            match slicing::assign(tree, c, &items) {
                Ok(assigned) => {
                    assignment = assigned;
                    self.slice_rules(tree, c, &items, &assignment, loc);
                }
                Err(reason) => self.push(
                    IssueSeverity::Warning,
                    IssueType::NotSupported,
                    format!(
                        "the slices of {} in {} were not checked: {reason}",
                        tree.id(c),
                        tree.url
                    ),
                    loc,
                ),
            }
        }
        for (found, slice) in items.iter().zip(assignment) {
            with_item(loc, found, |loc| {
                self.item(tree, slice.unwrap_or(c), *found, scope, loc);
            });
        }
    }

    /// Cardinalities of the slices and closed slicing.
    fn slice_rules<'v>(
        &mut self,
        tree: &Tree,
        c: usize,
        items: &[Found<'v>],
        assignment: &[Option<usize>],
        loc: &mut Loc<'v>,
    ) {
        for &s in &tree.nodes[c].slices {
            let e = tree.element(s);
            let count = assignment.iter().filter(|a| **a == Some(s)).count() as u64;
            let min = e.get("min").and_then(Value::as_u64).unwrap_or(0);
            let max = max_of(e).unwrap_or(None);
            if count < min {
                self.push(
                    IssueSeverity::Error,
                    IssueType::Required,
                    format!(
                        "slice {} requires at least {min} (found {count}) in {}",
                        tree.id(s),
                        tree.url
                    ),
                    loc,
                );
            }
            if max.is_some_and(|m| count > m) {
                self.push(
                    IssueSeverity::Error,
                    IssueType::Structure,
                    format!(
                        "slice {} allows at most {} (found {count}) in {}",
                        tree.id(s),
                        max.unwrap_or(0),
                        tree.url
                    ),
                    loc,
                );
            }
        }
        let closed = tree
            .element(c)
            .pointer("/slicing/rules")
            .and_then(Value::as_str)
            == Some("closed");
        if closed {
            for (found, slice) in items.iter().zip(assignment) {
                if slice.is_none() {
                    with_item(loc, found, |loc| {
                        self.push(
                            IssueSeverity::Error,
                            IssueType::Structure,
                            format!(
                                "the value matches no slice of {} and the slicing is closed in {}",
                                tree.id(c),
                                tree.url
                            ),
                            loc,
                        );
                    });
                }
            }
        }
    }

    /// The values of `obj` that element `name` (`gender`, `value[x]`) matches, and the core
    /// cardinality of that element when the model knows it.
    fn collect<'v>(
        &self,
        obj: &'v Map<String, Value>,
        ty: &'v str,
        name: &str,
        e: &Value,
    ) -> (Vec<Found<'v>>, Option<(u64, Option<u64>)>) {
        let mut out = Vec::new();
        let mut base_card = None;
        let choice = name.strip_suffix("[x]");
        let slice = e.get("sliceName").is_some();
        for (key, value) in obj {
            let (plain, companion) = match key.strip_prefix('_') {
                Some(k) if obj.contains_key(k) => continue,
                Some(k) => (k, true),
                None => (key.as_str(), false),
            };
            let child = self.model.child(ty, plain);
            let (type_code, is_array) = match (choice, child) {
                (Some(base), Some(ch)) if ch.element.is_choice && ch.element.name == base => {
                    (ch.type_code, ch.element.is_array())
                }
                (Some(_), _) => continue,
                (None, Some(ch)) if plain == name => (ch.type_code, ch.element.is_array()),
                (None, None) if plain == name => {
                    // Outside the model (a logical model's data): the profile's type.
                    let t = type_codes(e).first().copied().unwrap_or("");
                    (self.static_type(t), value.is_array())
                }
                _ => continue,
            };
            if let Some(ch) = child {
                if !slice {
                    base_card = Some((u64::from(ch.element.min), ch.element.max.map(u64::from)));
                }
            }
            let (value, ext) = if companion {
                (None, Some(value))
            } else {
                let ext = if self.model.is_primitive(type_code) {
                    obj.get(&format!("_{plain}"))
                } else {
                    None
                };
                (Some(value), ext)
            };
            let key: &'v str = match obj.get_key_value(plain) {
                Some((k, _)) => k.as_str(),
                None => &key[1..],
            };
            if is_array {
                let values = value.and_then(Value::as_array).map(Vec::as_slice);
                let exts = ext.and_then(Value::as_array).map(Vec::as_slice);
                let len = values
                    .map_or(0, <[Value]>::len)
                    .max(exts.map_or(0, <[Value]>::len));
                for i in 0..len {
                    let v = values.and_then(|a| a.get(i)).filter(|v| !v.is_null());
                    let x = exts.and_then(|a| a.get(i)).filter(|v| !v.is_null());
                    if v.is_some() || x.is_some() {
                        out.push(Found {
                            value: v,
                            ext: x,
                            ty: self.item_type(type_code, v),
                            key,
                            index: Some(i),
                        });
                    }
                }
            } else {
                out.push(Found {
                    value,
                    ext,
                    ty: self.item_type(type_code, value),
                    key,
                    index: None,
                });
            }
        }
        if base_card.is_none() && !slice {
            // Nothing present: the model still knows the element.
            let probe = choice.unwrap_or(name);
            if let Some(def) = self.model.get(ty).and_then(|t| t.element(probe)) {
                base_card = Some((u64::from(def.min), def.max.map(u64::from)));
            }
        }
        (out, base_card)
    }

    /// A resource's own type where the model says `Resource`.
    fn item_type<'v>(&self, type_code: &'v str, value: Option<&'v Value>) -> &'v str {
        if type_code == "Resource" {
            if let Some(rt) = value.and_then(|v| resource_type(self.model, v)) {
                return rt;
            }
        }
        type_code
    }

    /// A type name with the model's lifetime (`""` when the model does not know it).
    fn static_type(&self, name: &str) -> &'static str {
        self.model.get(name).map_or("", |t| t.name.as_str())
    }

    /// A Reference's target against the types its element allows.
    fn reference_target<'v>(
        &mut self,
        e: &Value,
        found: Found<'v>,
        scope: Scope<'v>,
        loc: &Loc<'v>,
    ) {
        let Some(value) = found.value else { return };
        let mut allowed: Vec<String> = Vec::new();
        for t in e
            .get("type")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if t.get("code").and_then(Value::as_str) != Some("Reference") {
                continue;
            }
            for p in t
                .get("targetProfile")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                match self.target_type(p) {
                    Some(ty) => allowed.push(ty),
                    None => return, // a target we cannot read: not checked
                }
            }
        }
        if allowed.is_empty() || allowed.iter().any(|t| t == "Resource") {
            return;
        }
        let Some(target) = referenced_type(self.model, value, scope) else {
            return;
        };
        if !allowed.iter().any(|a| self.model.is_subtype_of(target, a)) {
            self.push(
                IssueSeverity::Error,
                IssueType::Invalid,
                format!(
                    "the reference points at a {target}; the profile {} allows {}",
                    e.get("id").and_then(Value::as_str).unwrap_or(""),
                    allowed.join(", ")
                ),
                loc,
            );
        }
    }

    /// The resource type a targetProfile stands for.
    fn target_type(&self, url: &str) -> Option<String> {
        let plain = url.split('|').next().unwrap_or(url);
        if let Some(ty) = plain.strip_prefix("http://hl7.org/fhir/StructureDefinition/") {
            if self.model.get(ty).is_some() {
                return Some(ty.to_string());
            }
        }
        let sd = resolve(url, self.resolve_sd)?;
        sd.get("type").and_then(Value::as_str).map(str::to_string)
    }

    /// Checks a value against the profiles its type names (an extension's definition, a
    /// datatype profile), when the profile has no children for it.
    fn type_profiles<'v>(
        &mut self,
        e: &Value,
        found: Found<'v>,
        scope: Scope<'v>,
        loc: &mut Loc<'v>,
    ) {
        let profiles: Vec<String> = e
            .get("type")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|t| {
                let code = t.get("code").and_then(Value::as_str);
                code == Some(found.ty) || (code == Some("Resource"))
            })
            .filter_map(|t| t.get("profile").and_then(Value::as_array))
            .flatten()
            .filter_map(Value::as_str)
            .filter(|p| {
                p.split('|').next()
                    != Some(&format!(
                        "http://hl7.org/fhir/StructureDefinition/{}",
                        found.ty
                    ))
            })
            .map(str::to_string)
            .collect();
        let Some(url) = profiles.first() else { return };
        if self.depth >= MAX_PROFILE_DEPTH {
            self.push(
                IssueSeverity::Warning,
                IssueType::TooCostly,
                format!("the profile {url} is nested too deep to be checked"),
                loc,
            );
            return;
        }
        let Some(tree) = self.tree(url, loc) else {
            return;
        };
        self.depth += 1;
        self.item(&tree, 0, found, scope, loc);
        self.depth -= 1;
    }

    /// The tree of a profile a type names, built once per call.
    fn tree(&mut self, url: &str, loc: &Loc<'_>) -> Option<Rc<Tree>> {
        if let Some(t) = self.trees.get(url) {
            return t.clone();
        }
        let built = match resolve(url, self.resolve_sd) {
            None => {
                self.push(
                    IssueSeverity::Information,
                    IssueType::NotFound,
                    format!("the profile {url} is not known; the value was not checked against it"),
                    loc,
                );
                None
            }
            Some(sd) => match snapshot::snapshot(&sd, self.resolve_sd) {
                Ok(s) => Some(Rc::new(Tree::build(s.elements, url.to_string()))),
                Err(e) => {
                    let reason = e
                        .issues
                        .first()
                        .map_or_else(String::new, |i| i.diagnostics.clone());
                    self.push(
                        IssueSeverity::Warning,
                        IssueType::NotSupported,
                        format!("the profile {url} could not be used: {reason}"),
                        loc,
                    );
                    None
                }
            },
        };
        self.trees.insert(url.to_string(), built.clone());
        built
    }
}

/// Runs `f` with the location of one found value pushed.
fn with_item<'v>(loc: &mut Loc<'v>, found: &Found<'v>, f: impl FnOnce(&mut Loc<'v>)) {
    loc.push(Seg::Name(found.key));
    if let Some(i) = found.index {
        loc.push(Seg::Index(i));
    }
    f(loc);
    if found.index.is_some() {
        loc.pop();
    }
    loc.pop();
}

/// The resource type a Reference points at, when it can be told without resolving it: a
/// contained resource (`#id`), a relative or absolute URL ending `Type/id` (or with
/// `/_history/v`), a Bundle entry by `fullUrl`, or the Reference's `type`.
pub(crate) fn referenced_type<'v>(
    model: &Model,
    reference: &'v Value,
    scope: Scope<'v>,
) -> Option<&'v str> {
    let text = reference.get("reference").and_then(Value::as_str);
    if let Some(text) = text {
        if let Some(id) = text.strip_prefix('#') {
            let container = scope.root;
            return container
                .get("contained")
                .and_then(Value::as_array)?
                .iter()
                .find(|r| r.get("id").and_then(Value::as_str) == Some(id))
                .and_then(|r| resource_type(model, r));
        }
        let plain = text.split(['?', '#']).next().unwrap_or(text);
        let plain = match plain.find("/_history/") {
            Some(i) => &plain[..i],
            None => plain,
        };
        let mut parts = plain.rsplit('/');
        let _id = parts.next();
        if let Some(ty) = parts.next().filter(|t| model.is_resource_type(t)) {
            return Some(ty);
        }
        if let Some(entries) = scope.document.get("entry").and_then(Value::as_array) {
            if let Some(r) = entries
                .iter()
                .find(|e| e.get("fullUrl").and_then(Value::as_str) == Some(text))
                .and_then(|e| e.get("resource"))
            {
                return resource_type(model, r);
            }
        }
    }
    reference
        .get("type")
        .and_then(Value::as_str)
        .filter(|t| model.is_resource_type(t))
}
