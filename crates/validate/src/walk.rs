//! The walk over a resource guided by the R4 model: every element, with its FHIR type, the
//! path of its ElementDefinition (`Patient.contact`, `Observation.value[x]`) and its location
//! (`Patient.contact[0]`), and the resource it belongs to (contained resources and Bundle
//! entries are resources of their own). Locations are rendered only when an issue needs one.

use flint_fhir::model::{self, Child, Model};
use flint_fhir::{IssueSeverity, IssueType};
use serde_json::{Map, Value};

use crate::report::{issue, Report};
use crate::MAX_DEPTH;

/// One element of the resource.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Node<'v> {
    /// The JSON value; `None` for a primitive that only has an id or extensions.
    pub value: Option<&'v Value>,
    /// For a primitive: its `_name` companion object.
    pub ext: Option<&'v Value>,
    /// The FHIR type (`Patient`, `HumanName`, `code`, `Patient.contact`).
    pub ty: &'v str,
    /// The path of the ElementDefinition (`Patient.contact`, `Observation.value[x]`); a
    /// resource's own path is its type.
    pub path: &'v str,
}

/// The resources an element belongs to, as FHIRPath's `%resource` and `%rootResource`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scope<'v> {
    /// The resource holding the element (a contained resource, a Bundle entry's resource).
    pub resource: &'v Value,
    /// The container of a contained resource; else the resource itself.
    pub root: &'v Value,
    /// The outermost resource of the document (a Bundle whose entries may refer to each
    /// other).
    pub document: &'v Value,
}

/// One step of a location.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Seg<'v> {
    Name(&'v str),
    Index(usize),
}

/// A location as a stack of steps.
#[derive(Default, Debug)]
pub(crate) struct Loc<'v>(Vec<Seg<'v>>);

impl<'v> Loc<'v> {
    pub(crate) fn push(&mut self, seg: Seg<'v>) {
        self.0.push(seg);
    }

    pub(crate) fn pop(&mut self) {
        self.0.pop();
    }

    /// The location as FHIRPath text (`Patient.contact[0].name`).
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        for seg in &self.0 {
            match seg {
                Seg::Name(n) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(n);
                }
                Seg::Index(i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
            }
        }
        out
    }
}

/// What the walk calls on every element.
pub(crate) trait Visitor<'v> {
    fn visit(&mut self, node: &Node<'v>, scope: &Scope<'v>, loc: &Loc<'v>);
    /// Where the walk counts its work.
    fn report(&mut self) -> &mut Report;
}

/// Walks a resource, calling the visitor on every element (the resource first).
pub(crate) fn walk<'v>(resource: &'v Value, visitor: &mut dyn Visitor<'v>) {
    let scope = Scope {
        resource,
        root: resource,
        document: resource,
    };
    let mut loc = Loc::default();
    Walker {
        model: model::r4(),
        visitor,
    }
    .resource(resource, scope, &mut loc, 0);
}

struct Walker<'w, 'v> {
    model: &'static Model,
    visitor: &'w mut dyn Visitor<'v>,
}

/// The resource type of a JSON object, when it names a known one.
pub(crate) fn resource_type<'v>(model: &Model, value: &'v Value) -> Option<&'v str> {
    value
        .get("resourceType")
        .and_then(Value::as_str)
        .filter(|t| model.is_resource_type(t))
}

impl<'v> Walker<'_, 'v> {
    fn resource(&mut self, value: &'v Value, scope: Scope<'v>, loc: &mut Loc<'v>, depth: usize) {
        let Some(rt) = resource_type(self.model, value) else {
            return;
        };
        let at_root = loc.0.is_empty();
        if at_root {
            loc.push(Seg::Name(rt));
        }
        let node = Node {
            value: Some(value),
            ext: None,
            ty: rt,
            path: rt,
        };
        if self.visitor.report().node(|| loc.render()) {
            self.visitor.visit(&node, &scope, loc);
            if let Some(obj) = value.as_object() {
                self.object(rt, obj, scope, loc, depth + 1);
            }
        }
        if at_root {
            loc.pop();
        }
    }

    fn object(
        &mut self,
        ty: &'v str,
        obj: &'v Map<String, Value>,
        scope: Scope<'v>,
        loc: &mut Loc<'v>,
        depth: usize,
    ) {
        if depth > MAX_DEPTH {
            let report = self.visitor.report();
            report.push(issue(
                IssueSeverity::Error,
                IssueType::TooCostly,
                format!("the resource is nested deeper than {MAX_DEPTH} elements"),
                loc.render(),
            ));
            return;
        }
        for (key, value) in obj {
            if self.visitor.report().stopped() {
                return;
            }
            if key == "resourceType" {
                continue;
            }
            let (name, value, ext) = match key.strip_prefix('_') {
                // A companion whose primitive is present is walked with it.
                Some(name) if obj.contains_key(name) => continue,
                Some(name) => (name, None, Some(value)),
                None => (key.as_str(), Some(value), None),
            };
            let Some(child) = self.model.child(ty, name) else {
                continue; // the structural check reports unknown elements
            };
            let ext = match ext {
                Some(ext) => Some(ext),
                None if self.model.is_primitive(child.type_code) => obj.get(&format!("_{name}")),
                None => None,
            };
            loc.push(Seg::Name(name));
            if child.element.is_array() {
                let values = value.and_then(Value::as_array).map(Vec::as_slice);
                let exts = ext.and_then(Value::as_array).map(Vec::as_slice);
                let len = values
                    .map_or(0, <[Value]>::len)
                    .max(exts.map_or(0, <[Value]>::len));
                for i in 0..len {
                    let v = values.and_then(|a| a.get(i)).filter(|v| !v.is_null());
                    let x = exts.and_then(|a| a.get(i)).filter(|v| !v.is_null());
                    if v.is_none() && x.is_none() {
                        continue;
                    }
                    loc.push(Seg::Index(i));
                    self.item(child, v, x, scope, loc, depth);
                    loc.pop();
                }
            } else {
                self.item(child, value, ext, scope, loc, depth);
            }
            loc.pop();
        }
    }

    fn item(
        &mut self,
        child: Child<'static>,
        value: Option<&'v Value>,
        ext: Option<&'v Value>,
        scope: Scope<'v>,
        loc: &mut Loc<'v>,
        depth: usize,
    ) {
        let ty = child.type_code;
        if ty == "Resource" || self.model.is_resource_type(ty) {
            let Some(value) = value else { return };
            // R4: a contained resource's `%rootResource` is its container; a Bundle entry or
            // a Parameters resource is a resource of its own.
            let inner = if child.element.path.ends_with(".contained") {
                Scope {
                    resource: value,
                    root: scope.resource,
                    document: scope.document,
                }
            } else {
                Scope {
                    resource: value,
                    root: value,
                    document: scope.document,
                }
            };
            self.resource(value, inner, loc, depth + 1);
            return;
        }
        if !self.visitor.report().node(|| loc.render()) {
            return;
        }
        let node = Node {
            value,
            ext,
            ty,
            path: &child.element.path,
        };
        self.visitor.visit(&node, &scope, loc);
        let inner = if self.model.is_primitive(ty) {
            ext
        } else {
            value
        };
        if let Some(obj) = inner.and_then(Value::as_object) {
            self.object(ty, obj, scope, loc, depth + 1);
        }
    }
}
