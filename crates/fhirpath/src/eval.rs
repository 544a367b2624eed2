//! The evaluator: walks the compiled tree over collections of [`Item`]s. Navigation borrows
//! the resource JSON and types each node by the model; operators follow FHIRPath's
//! empty-propagation and three-valued logic; functions are dispatched on the enum resolved at
//! compile time. Errors carry the position of the node that raised them.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::cmp::Ordering;

use flint_fhir::model::{self, Model};
use serde_json::Value;
use smallvec::{smallvec, SmallVec};

use crate::ast::{BinOp, Func, Literal, Node, NodeKind, TypeOpKind, TypeSpec};
use crate::budget::{too_costly, Steps, MAX_JSON_DEPTH};
use crate::decimal::Decimal;
use crate::error::{Error, Result};
use crate::nav;
use crate::ops;
use crate::temporal::{Precision, Temporal, TemporalKind};
use crate::value::{prim_kind, Elem, Item, Quantity};
use crate::{Context, MAX_STRING_BYTES};

/// A collection during evaluation: most are empty or hold one item, which stay inline.
pub(crate) type Coll<'a> = SmallVec<[Item<'a>; 2]>;

#[derive(Clone, Copy)]
struct Frame<'f, 'a> {
    this: &'f [Item<'a>],
    index: Option<i64>,
    total: Option<&'f [Item<'a>]>,
}

pub(crate) struct Evaluator<'a, 'c> {
    ctx: &'c Context<'a>,
    model: &'static Model,
    resource: &'a Value,
    now: Cell<Option<Temporal>>,
    defined: RefCell<Vec<(String, Coll<'a>)>>,
    steps: Steps,
}

fn boolean<'a>(b: bool) -> Coll<'a> {
    smallvec![Item::Bool(b)]
}

fn opt_bool<'a>(b: Option<bool>) -> Coll<'a> {
    b.map(Item::Bool).into_iter().collect()
}

impl<'a, 'c> Evaluator<'a, 'c> {
    pub(crate) fn new(ctx: &'c Context<'a>, resource: &'a Value) -> Self {
        Evaluator {
            ctx,
            model: model::r4(),
            resource,
            now: Cell::new(ctx.now),
            defined: RefCell::new(Vec::new()),
            steps: Steps::default(),
        }
    }

    /// Counts `n` steps of work done at `pos`; past the budget, the evaluation fails.
    #[inline]
    fn charge(&self, n: usize, pos: usize) -> Result<()> {
        if self.steps.take(n as u64) {
            Ok(())
        } else {
            Err(too_costly(pos))
        }
    }

    /// Fails when a collection being built has already grown past what the budget has left,
    /// before the steps it stands for are counted (one call can multiply its input).
    #[inline]
    fn room(&self, len: usize, pos: usize) -> Result<()> {
        if self.steps.fits(len as u64) {
            Ok(())
        } else {
            Err(too_costly(pos))
        }
    }

    /// `needle` in `hay`, each comparison a step.
    fn contains(&self, hay: &[Item<'a>], needle: &Item<'a>, pos: usize) -> Result<bool> {
        self.charge(hay.len(), pos)?;
        Ok(contains(hay, needle, &self.steps))
    }

    /// Refuses to build a string of `len` bytes beyond [`MAX_STRING_BYTES`] (checked before
    /// building when the length is known in advance); otherwise every 64 bytes are a step.
    fn check_length(&self, len: usize, pos: usize) -> Result<()> {
        if len > MAX_STRING_BYTES {
            return Err(Error::too_costly(
                pos,
                format!(
                    "the expression is too costly: it builds a string of more than {MAX_STRING_BYTES} bytes"
                ),
            ));
        }
        self.charge(len / 64, pos)
    }

    pub(crate) fn run(&self, node: &'a Node, focus: &[Item<'a>]) -> Result<Coll<'a>> {
        let frame = Frame {
            this: focus,
            index: None,
            total: None,
        };
        self.eval(node, focus, frame)
    }

    /// Evaluates a node. The node is a step of the budget, and so is every item it makes
    /// that was not counted already: navigation, variables and the functions that multiply
    /// their input count what they produce. Counting here, before the result exists, keeps
    /// the result built where the caller receives it.
    fn eval(&self, node: &'a Node, focus: &[Item<'a>], fr: Frame<'_, 'a>) -> Result<Coll<'a>> {
        let pos = node.pos;
        if !self.steps.take(1) {
            return Err(too_costly(pos));
        }
        match &node.kind {
            NodeKind::Empty => Ok(Coll::new()),
            NodeKind::Lit(l) => Ok(smallvec![literal(l)]),
            NodeKind::This => {
                self.charge(fr.this.len(), pos)?;
                Ok(Coll::from(fr.this))
            }
            NodeKind::IndexVar => Ok(fr.index.map(Item::Int).into_iter().collect()),
            NodeKind::Total => {
                self.charge(fr.total.map_or(0, <[Item]>::len), pos)?;
                Ok(fr.total.map(Coll::from).unwrap_or_default())
            }
            NodeKind::Env(name) => self.env(name, pos),
            NodeKind::TypeFilter(name) => {
                let mut out = Coll::new();
                for item in focus {
                    if let Item::Elem(e) = item {
                        if nav::id_is_subtype(e.tid, e.ty, name) {
                            out.push(item.clone());
                        }
                    }
                }
                if out.is_empty() && self.ctx.strict && !focus.is_empty() {
                    return Err(Error::semantic(pos, format!("the context is not a {name}")));
                }
                Ok(out)
            }
            NodeKind::Member(target, name) => match target {
                Some(t) => {
                    if self.ctx.strict {
                        self.check_member_of_cast(t, name, pos)?;
                    }
                    let input = self.eval(t, focus, fr)?;
                    self.members(&input, name, pos)
                }
                None => self.members(focus, name, pos),
            },
            NodeKind::Index(target, index) => {
                let input = self.eval(target, focus, fr)?;
                let idx = self.eval(index, focus, fr)?;
                let Some(i) = self.integer(&idx, index.pos)? else {
                    return Ok(Coll::new());
                };
                Ok(usize::try_from(i)
                    .ok()
                    .and_then(|i| input.get(i).cloned())
                    .into_iter()
                    .collect())
            }
            NodeKind::Neg(inner) => {
                let v = self.eval(inner, focus, fr)?;
                let Some(item) = self.single(&v, pos)? else {
                    return Ok(Coll::new());
                };
                Ok(match item.to_system() {
                    Some(Item::Int(i)) => i.checked_neg().map(Item::Int).into_iter().collect(),
                    Some(Item::Long(i)) => i.checked_neg().map(Item::Long).into_iter().collect(),
                    Some(Item::Dec(d)) => smallvec![Item::Dec(d.neg())],
                    Some(Item::Quantity(q)) => {
                        smallvec![Item::Quantity(Box::new(Quantity {
                            value: q.value.neg(),
                            unit: q.unit,
                        }))]
                    }
                    _ => {
                        return Err(Error::execution(
                            pos,
                            "unary minus needs a number or a quantity",
                        ))
                    }
                })
            }
            NodeKind::TypeOp { target, op, ty } => {
                let input = match target {
                    Some(t) => self.eval(t, focus, fr)?,
                    None => {
                        self.charge(focus.len(), pos)?;
                        Coll::from(focus)
                    }
                };
                self.type_op(
                    &input,
                    *op,
                    ty,
                    pos,
                    target.is_some() && *op != TypeOpKind::OfType,
                )
            }
            NodeKind::Bin(op, l, r) => self.binary(*op, l, r, focus, fr, pos),
            NodeKind::Call { target, func, args } => {
                if self.ctx.check_ordered {
                    check_ordered(*func, target.as_deref(), pos)?;
                }
                let input = match target {
                    Some(t) => self.eval(t, focus, fr)?,
                    None => {
                        self.charge(focus.len(), pos)?;
                        Coll::from(focus)
                    }
                };
                if *func == Func::Iif && target.is_none() {
                    return self.iif(args, focus, fr, None);
                }
                self.call(*func, input, args, focus, fr, pos)
            }
        }
    }

    /// Strict mode: after `as T` / `ofType(T)` the type is known statically, so a member the
    /// type does not have is an error even when the collection is empty at run time.
    fn check_member_of_cast(&self, target: &Node, name: &str, pos: usize) -> Result<()> {
        let NodeKind::TypeOp {
            op: TypeOpKind::As | TypeOpKind::AsFunction | TypeOpKind::OfType,
            ty,
            ..
        } = &target.kind
        else {
            return Ok(());
        };
        if ty.namespace.as_deref() == Some("System") {
            return Ok(());
        }
        let Some(ti) = nav::by_id(nav::type_id(&ty.name)) else {
            return Ok(());
        };
        if ti.children.contains_key(name) || ti.choice_keys.contains_key(name) || ti.primitive {
            return Ok(());
        }
        Err(Error::semantic(
            pos,
            format!("{} has no element '{name}'", ty.name),
        ))
    }

    fn env(&self, name: &str, pos: usize) -> Result<Coll<'a>> {
        if let Some(v) = self.defined.borrow().iter().rev().find(|(n, _)| n == name) {
            self.charge(v.1.len(), pos)?;
            return Ok(v.1.clone());
        }
        if let Some(v) = self.ctx.lookup(name) {
            self.charge(v.len(), pos)?;
            return Ok(Coll::from(v));
        }
        let s = |s: &'static str| Ok(smallvec![Item::Str(Cow::Borrowed(s))]);
        match name {
            "resource" => Ok(Coll::from_vec(crate::json_items(
                self.ctx.resource.unwrap_or(self.resource),
            ))),
            "rootResource" => Ok(Coll::from_vec(crate::json_items(
                self.ctx
                    .root_resource
                    .or(self.ctx.resource)
                    .unwrap_or(self.resource),
            ))),
            "context" => Ok(Coll::from_vec(crate::json_items(self.resource))),
            "ucum" => s("http://unitsofmeasure.org"),
            "sct" => s("http://snomed.info/sct"),
            "loinc" => s("http://loinc.org"),
            _ => {
                if let Some(vs) = name.strip_prefix("vs-") {
                    return Ok(smallvec![Item::Str(Cow::Owned(format!(
                        "http://hl7.org/fhir/ValueSet/{vs}"
                    )))]);
                }
                if let Some(ext) = name.strip_prefix("ext-") {
                    return Ok(smallvec![Item::Str(Cow::Owned(format!(
                        "http://hl7.org/fhir/StructureDefinition/{ext}"
                    )))]);
                }
                Err(Error::execution(pos, format!("undefined variable %{name}")))
            }
        }
    }

    // ----- helpers -------------------------------------------------------------------------

    fn single<'i>(&self, items: &'i [Item<'a>], pos: usize) -> Result<Option<&'i Item<'a>>> {
        match items {
            [] => Ok(None),
            [one] => Ok(Some(one)),
            _ => Err(Error::execution(
                pos,
                format!("expected a single item, found {}", items.len()),
            )),
        }
    }

    /// Singleton evaluation as a Boolean: one Boolean is itself, one other item is `true`.
    fn truth(&self, items: &[Item<'a>], pos: usize) -> Result<Option<bool>> {
        let Some(item) = self.single(items, pos)? else {
            return Ok(None);
        };
        Ok(match item.to_system() {
            Some(Item::Bool(b)) => Some(b),
            Some(Item::Str(_)) if self.ctx.strict => {
                return Err(Error::semantic(pos, "expected a Boolean"));
            }
            Some(_) => Some(true),
            None => None,
        })
    }

    fn integer(&self, items: &[Item<'a>], pos: usize) -> Result<Option<i64>> {
        let Some(item) = self.single(items, pos)? else {
            return Ok(None);
        };
        match item.to_system() {
            Some(Item::Int(i) | Item::Long(i)) => Ok(Some(i)),
            None => Ok(None),
            _ => Err(Error::execution(pos, "expected an Integer")),
        }
    }

    fn string(&self, items: &[Item<'a>], pos: usize) -> Result<Option<Cow<'a, str>>> {
        let Some(item) = self.single(items, pos)? else {
            return Ok(None);
        };
        match item.to_system() {
            Some(Item::Str(s)) => Ok(Some(s)),
            None => Ok(None),
            _ => Err(Error::execution(pos, "expected a String")),
        }
    }

    // ----- navigation ----------------------------------------------------------------------

    fn members(&self, input: &[Item<'a>], name: &str, pos: usize) -> Result<Coll<'a>> {
        let mut out = Coll::new();
        for item in input {
            // Inline results (two items) need no check; each input item can add a whole array.
            if out.spilled() {
                self.room(out.len(), pos)?;
            }
            match item {
                Item::Elem(e) => self.child(e, name, pos, &mut out)?,
                Item::TypeInfo(ns, n) => match name {
                    "namespace" => out.push(Item::Str(Cow::Borrowed(ns))),
                    "name" => out.push(Item::Str(n.clone())),
                    _ => {}
                },
                _ => {}
            }
        }
        self.charge(out.len(), pos)?;
        Ok(out)
    }

    fn child(&self, e: &Elem<'a>, name: &str, pos: usize, out: &mut Coll<'a>) -> Result<()> {
        let obj = match e.value {
            Some(Value::Object(o)) => o,
            _ => {
                // A primitive: only `id` and `extension` live in its `_name` object.
                if let Some(Value::Object(x)) = e.ext {
                    if name == "extension" || name == "id" {
                        let ty = if name == "id" { "string" } else { "Extension" };
                        push_values(nav::get(x, name), None, ty, nav::type_id(ty), out);
                    }
                }
                return Ok(());
            }
        };
        let Some(ti) = nav::by_id(e.tid) else {
            // Data outside the model: navigate the JSON as it is.
            let (value, ext) = nav::get_with_ext(obj, name);
            push_values(value, ext, "", nav::UNKNOWN, out);
            return Ok(());
        };
        if let Some(c) = ti.children.get(name) {
            if !c.choice {
                if c.primitive {
                    let (value, ext) = nav::get_with_ext(obj, name);
                    push_values(value, ext, c.ty, c.tid, out);
                } else {
                    push_values(nav::get(obj, name), None, c.ty, c.tid, out);
                }
                return Ok(());
            }
            // A choice element: whichever `name[Type]` key is present.
            for (key, value) in obj {
                let (base, is_ext) = match key.strip_prefix('_') {
                    Some(b) => (b, true),
                    None => (key.as_str(), false),
                };
                // Length and first byte first: most keys are rejected without a memcmp call.
                if base.len() <= name.len()
                    || base.as_bytes().first() != name.as_bytes().first()
                    || !base.starts_with(name)
                {
                    continue;
                }
                let Some(&(element, ty, tid, primitive)) = ti.choice_keys.get(base) else {
                    continue;
                };
                if element != name {
                    continue;
                }
                if is_ext {
                    if nav::get(obj, base).is_none() {
                        push_values(None, Some(value), ty, tid, out);
                    }
                } else {
                    let ext = if primitive {
                        nav::get(obj, &underscore(key))
                    } else {
                        None
                    };
                    push_values(Some(value), ext, ty, tid, out);
                }
            }
            return Ok(());
        }
        // `valueQuantity`: a choice element named with its type, allowed unless strict.
        if let Some(&(element, ty, tid, primitive)) = ti.choice_keys.get(name) {
            if self.ctx.strict {
                return Err(Error::semantic(
                    pos,
                    format!("use '{element}' rather than '{name}'"),
                ));
            }
            let (value, ext) = if primitive {
                nav::get_with_ext(obj, name)
            } else {
                (nav::get(obj, name), None)
            };
            push_values(value, ext, ty, tid, out);
            return Ok(());
        }
        if self.ctx.strict {
            return Err(Error::semantic(
                pos,
                format!("{} has no element '{name}'", e.ty),
            ));
        }
        Ok(())
    }

    /// The children of an element, in document order (`children()`).
    fn children_of(&self, e: &Elem<'a>, out: &mut Coll<'a>) {
        let Some(Value::Object(obj)) = e.value else {
            if let Some(Value::Object(x)) = e.ext {
                push_values(
                    x.get("extension"),
                    None,
                    "Extension",
                    nav::type_id("Extension"),
                    out,
                );
            }
            return;
        };
        let ti = nav::by_id(e.tid);
        let resolve = |key: &str| -> (&'static str, nav::TypeId, bool) {
            let Some(ti) = ti else {
                return ("", nav::UNKNOWN, true);
            };
            if let Some(c) = ti.children.get(key) {
                return (c.ty, c.tid, c.primitive);
            }
            ti.choice_keys
                .get(key)
                .map_or(("", nav::UNKNOWN, true), |&(_, ty, tid, primitive)| {
                    (ty, tid, primitive)
                })
        };
        for (key, value) in obj {
            if key == "resourceType" {
                continue;
            }
            if let Some(base) = key.strip_prefix('_') {
                if nav::get(obj, base).is_none() {
                    let (ty, tid, _) = resolve(base);
                    push_values(None, Some(value), ty, tid, out);
                }
                continue;
            }
            let (ty, tid, primitive) = resolve(key);
            let ext = if primitive {
                nav::get(obj, &underscore(key))
            } else {
                None
            };
            push_values(Some(value), ext, ty, tid, out);
        }
    }

    // ----- types ---------------------------------------------------------------------------

    /// Whether an item is of a type. `exact_primitives`: a FHIR primitive matches only its own
    /// type, not its base (the suite has `gender.is(string)` true but `gender.as(string)` empty).
    fn is_type(&self, item: &Item<'a>, ty: &TypeSpec, exact_primitives: bool) -> bool {
        let ns = ty.namespace.as_deref();
        match item {
            Item::Elem(e) => {
                if ns == Some("System") || e.ty.is_empty() {
                    return false;
                }
                let Some(ti) = nav::by_id(e.tid) else {
                    return e.ty == ty.name;
                };
                if exact_primitives && ti.primitive {
                    return e.ty == ty.name;
                }
                // Backbone elements have BackboneElement/Element among their ancestors.
                ti.ancestors.contains(&ty.name.as_str())
            }
            other => {
                if ns == Some("FHIR") {
                    return false;
                }
                other.type_name().1 == ty.name
            }
        }
    }

    fn type_op(
        &self,
        input: &[Item<'a>],
        op: TypeOpKind,
        ty: &TypeSpec,
        pos: usize,
        operator: bool,
    ) -> Result<Coll<'a>> {
        match op {
            TypeOpKind::OfType => Ok(input
                .iter()
                .filter(|i| self.is_type(i, ty, true))
                .cloned()
                .collect()),
            TypeOpKind::Is => {
                if operator || input.len() <= 1 {
                    let Some(item) = self.single(input, pos)? else {
                        return Ok(Coll::new());
                    };
                    return Ok(boolean(self.is_type(item, ty, false)));
                }
                Err(Error::execution(pos, "is() needs a single item"))
            }
            TypeOpKind::As | TypeOpKind::AsFunction => {
                if input.len() > 1 && op == TypeOpKind::AsFunction {
                    return Err(Error::execution(pos, "as() needs a single item"));
                }
                Ok(input
                    .iter()
                    .filter(|i| self.is_type(i, ty, true))
                    .cloned()
                    .collect())
            }
        }
    }

    // ----- operators -----------------------------------------------------------------------

    fn binary(
        &self,
        op: BinOp,
        l: &'a Node,
        r: &'a Node,
        focus: &[Item<'a>],
        fr: Frame<'_, 'a>,
        pos: usize,
    ) -> Result<Coll<'a>> {
        match op {
            BinOp::And | BinOp::Or | BinOp::Implies | BinOp::Xor => {
                let a = self.truth(&self.eval(l, focus, fr)?, l.pos)?;
                // Short-circuit where the left side decides.
                match (op, a) {
                    (BinOp::And, Some(false)) => return Ok(boolean(false)),
                    (BinOp::Or, Some(true)) => return Ok(boolean(true)),
                    (BinOp::Implies, Some(false)) => return Ok(boolean(true)),
                    _ => {}
                }
                let b = self.truth(&self.eval(r, focus, fr)?, r.pos)?;
                let v = match op {
                    BinOp::And => match (a, b) {
                        (Some(true), Some(true)) => Some(true),
                        (_, Some(false)) => Some(false),
                        _ => None,
                    },
                    BinOp::Or => match (a, b) {
                        (_, Some(true)) => Some(true),
                        (Some(false), Some(false)) => Some(false),
                        _ => None,
                    },
                    BinOp::Xor => match (a, b) {
                        (Some(x), Some(y)) => Some(x != y),
                        _ => None,
                    },
                    _ => match (a, b) {
                        (Some(true), b) => b,
                        (None, Some(true)) => Some(true),
                        _ => None,
                    },
                };
                Ok(opt_bool(v))
            }
            BinOp::Union => {
                let a = self.eval(l, focus, fr)?;
                let b = self.eval(r, focus, fr)?;
                self.apply_binary(op, a, b, pos)
            }
            _ => {
                let a = self.eval(l, focus, fr)?;
                // A literal operand (`code = '85354-9'`, `value > 140`) needs no collection.
                if let NodeKind::Lit(lit) = &r.kind {
                    return self.apply_to(op, &a, std::slice::from_ref(&literal(lit)), pos);
                }
                let b = self.eval(r, focus, fr)?;
                self.apply_to(op, &a, &b, pos)
            }
        }
    }

    fn apply_binary(&self, op: BinOp, a: Coll<'a>, b: Coll<'a>, pos: usize) -> Result<Coll<'a>> {
        if op != BinOp::Union {
            return self.apply_to(op, &a, &b, pos);
        }
        let mut out: Coll<'a> = Coll::with_capacity(a.len() + b.len());
        for item in a.into_iter().chain(b) {
            if !self.contains(&out, &item, pos)? {
                out.push(item);
            }
        }
        Ok(out)
    }

    /// The operators other than union, on borrowed operands.
    fn apply_to(&self, op: BinOp, a: &[Item<'a>], b: &[Item<'a>], pos: usize) -> Result<Coll<'a>> {
        match op {
            BinOp::Eq | BinOp::Ne => {
                if a.is_empty() || b.is_empty() {
                    return Ok(Coll::new());
                }
                // Linear in items already counted; JSON compared counts its nodes.
                let eq = collections_equal(a, b, &self.steps);
                Ok(opt_bool(eq.map(|e| e == (op == BinOp::Eq))))
            }
            BinOp::Equiv | BinOp::NotEquiv => {
                // Collections of one length are matched item against item.
                if a.len() == b.len() {
                    self.charge(a.len().saturating_mul(b.len()), pos)?;
                }
                let eq = collections_equivalent(a, b, &self.steps);
                Ok(boolean(eq == (op == BinOp::Equiv)))
            }
            BinOp::In | BinOp::Contains => {
                let (needle, hay) = if op == BinOp::In { (&a, &b) } else { (&b, &a) };
                let Some(item) = self.single(needle, pos)? else {
                    return Ok(Coll::new());
                };
                Ok(boolean(self.contains(hay, item, pos)?))
            }
            BinOp::Lt | BinOp::Gt | BinOp::Le | BinOp::Ge => {
                let (Some(x), Some(y)) = (self.single(a, pos)?, self.single(b, pos)?) else {
                    return Ok(Coll::new());
                };
                let (Some(x), Some(y)) = (x.to_system(), y.to_system()) else {
                    return Ok(Coll::new());
                };
                let ord = ops::compare(&x, &y).map_err(|m| Error::execution(pos, m))?;
                Ok(opt_bool(ord.map(|o| match op {
                    BinOp::Lt => o == Ordering::Less,
                    BinOp::Gt => o == Ordering::Greater,
                    BinOp::Le => o != Ordering::Greater,
                    _ => o != Ordering::Less,
                })))
            }
            BinOp::Concat => {
                let x = self.string(a, pos)?.unwrap_or_default();
                let y = self.string(b, pos)?.unwrap_or_default();
                self.check_length(x.len().saturating_add(y.len()), pos)?;
                Ok(smallvec![Item::Str(Cow::Owned(format!("{x}{y}")))])
            }
            _ => {
                let (Some(x), Some(y)) = (self.single(a, pos)?, self.single(b, pos)?) else {
                    return Ok(Coll::new());
                };
                let (Some(x), Some(y)) = (x.to_system(), y.to_system()) else {
                    return Ok(Coll::new());
                };
                let r = ops::arithmetic(op, &x, &y).map_err(|m| Error::execution(pos, m))?;
                Ok(r.into_iter().collect())
            }
        }
    }

    // ----- functions -----------------------------------------------------------------------

    /// Evaluates an argument that does not depend on the item (evaluated against the focus
    /// of the call, with `$this` unchanged).
    fn arg(
        &self,
        args: &'a [Node],
        i: usize,
        focus: &[Item<'a>],
        fr: Frame<'_, 'a>,
    ) -> Result<Coll<'a>> {
        match args.get(i) {
            Some(n) => self.eval(n, focus, fr),
            None => Ok(Coll::new()),
        }
    }

    /// Evaluates a lambda argument for one item with `$this` and `$index` bound.
    fn lambda(
        &self,
        node: &'a Node,
        item: &Item<'a>,
        index: usize,
        total: Option<&[Item<'a>]>,
    ) -> Result<Coll<'a>> {
        let one = std::slice::from_ref(item);
        let fr = Frame {
            this: one,
            index: Some(index as i64),
            total,
        };
        self.eval(node, one, fr)
    }

    fn call(
        &self,
        func: Func,
        input: Coll<'a>,
        args: &'a [Node],
        focus: &[Item<'a>],
        fr: Frame<'_, 'a>,
        pos: usize,
    ) -> Result<Coll<'a>> {
        use Func::*;
        match func {
            Empty => Ok(boolean(input.is_empty())),
            Exists => {
                if let Some(crit) = args.first() {
                    for (i, item) in input.iter().enumerate() {
                        if self.truth(&self.lambda(crit, item, i, None)?, crit.pos)? == Some(true) {
                            return Ok(boolean(true));
                        }
                    }
                    return Ok(boolean(false));
                }
                Ok(boolean(!input.is_empty()))
            }
            All => {
                let crit = &args[0];
                for (i, item) in input.iter().enumerate() {
                    if self.truth(&self.lambda(crit, item, i, None)?, crit.pos)? != Some(true) {
                        return Ok(boolean(false));
                    }
                }
                Ok(boolean(true))
            }
            AllTrue | AnyTrue | AllFalse | AnyFalse => {
                let mut values = Vec::with_capacity(input.len());
                for item in &input {
                    match item.to_system() {
                        Some(Item::Bool(b)) => values.push(b),
                        None => {}
                        Some(_) => {
                            return Err(Error::execution(
                                pos,
                                format!("{}() needs Booleans", func.name()),
                            ))
                        }
                    }
                }
                Ok(boolean(match func {
                    AllTrue => values.iter().all(|b| *b),
                    AnyTrue => values.iter().any(|b| *b),
                    AllFalse => values.iter().all(|b| !*b),
                    _ => values.iter().any(|b| !*b),
                }))
            }
            SubsetOf | SupersetOf => {
                let other = self.arg(args, 0, focus, fr)?;
                let (small, big) = if func == SubsetOf {
                    (&input, &other)
                } else {
                    (&other, &input)
                };
                for item in small.iter() {
                    if !self.contains(big, item, pos)? {
                        return Ok(boolean(false));
                    }
                }
                Ok(boolean(true))
            }
            Count => Ok(smallvec![Item::Int(input.len() as i64)]),
            Distinct => {
                let mut out: Coll<'a> = Coll::with_capacity(input.len());
                for item in input {
                    if !self.contains(&out, &item, pos)? {
                        out.push(item);
                    }
                }
                Ok(out)
            }
            IsDistinct => {
                for (i, item) in input.iter().enumerate() {
                    if self.contains(&input[..i], item, pos)? {
                        return Ok(boolean(false));
                    }
                }
                Ok(boolean(true))
            }
            Where => {
                let crit = &args[0];
                let mut out = Coll::new();
                for (i, item) in input.iter().enumerate() {
                    if self.truth(&self.lambda(crit, item, i, None)?, crit.pos)? == Some(true) {
                        out.push(item.clone());
                    }
                }
                Ok(out)
            }
            Select => {
                let mut out = Coll::new();
                for (i, item) in input.iter().enumerate() {
                    out.extend(self.lambda(&args[0], item, i, None)?);
                }
                Ok(out)
            }
            Repeat | RepeatAll => {
                let mut out: Coll<'a> = Coll::new();
                let mut queue = input;
                let mut rounds = 0;
                while !queue.is_empty() {
                    rounds += 1;
                    if rounds > 10_000 {
                        return Err(Error::execution(pos, "repeat() did not terminate"));
                    }
                    let mut next = Coll::new();
                    for (i, item) in queue.iter().enumerate() {
                        for r in self.lambda(&args[0], item, i, None)? {
                            if func == RepeatAll || !self.contains(&out, &r, pos)? {
                                out.push(r.clone());
                                next.push(r);
                            }
                        }
                    }
                    queue = next;
                }
                Ok(out)
            }
            Single => match input.len() {
                0 | 1 => Ok(input),
                n => Err(Error::execution(pos, format!("single() found {n} items"))),
            },
            First => Ok(input.into_iter().take(1).collect()),
            Last => Ok(input.last().cloned().into_iter().collect()),
            Tail => Ok(input.into_iter().skip(1).collect()),
            Skip | Take => {
                let n = self.integer(&self.arg(args, 0, focus, fr)?, pos)?;
                let Some(n) = n else {
                    return Ok(if func == Skip { input } else { Coll::new() });
                };
                let n = usize::try_from(n.max(0)).unwrap_or(0);
                Ok(if func == Skip {
                    input.into_iter().skip(n).collect()
                } else {
                    input.into_iter().take(n).collect()
                })
            }
            Intersect => {
                let other = self.arg(args, 0, focus, fr)?;
                let mut out: Coll<'a> = Coll::new();
                for item in input {
                    if self.contains(&other, &item, pos)? && !self.contains(&out, &item, pos)? {
                        out.push(item);
                    }
                }
                Ok(out)
            }
            Exclude => {
                let other = self.arg(args, 0, focus, fr)?;
                let mut out = Coll::new();
                for item in input {
                    if !self.contains(&other, &item, pos)? {
                        out.push(item);
                    }
                }
                Ok(out)
            }
            Union => {
                let other = self.arg(args, 0, focus, fr)?;
                self.apply_binary(BinOp::Union, input, other, pos)
            }
            Combine => {
                let mut out = input;
                out.extend(self.arg(args, 0, focus, fr)?);
                Ok(out)
            }
            Iif => {
                let item = self.single(&input, pos)?.cloned();
                self.iif(args, focus, fr, item)
            }
            Not => Ok(match self.truth(&input, pos)? {
                Some(b) => boolean(!b),
                None => Coll::new(),
            }),
            ToBoolean | ConvertsToBoolean | ToInteger | ConvertsToInteger | ToLong
            | ConvertsToLong | ToDate | ConvertsToDate | ToDateTime | ConvertsToDateTime
            | ToDecimal | ConvertsToDecimal | ToStringFn | ConvertsToString | ToTime
            | ConvertsToTime | ToQuantity | ConvertsToQuantity => {
                let Some(item) = self.single(&input, pos)? else {
                    return Ok(Coll::new());
                };
                let Some(item) = item.to_system() else {
                    return Ok(Coll::new());
                };
                let unit = match func {
                    ToQuantity | ConvertsToQuantity => {
                        self.string(&self.arg(args, 0, focus, fr)?, pos)?
                    }
                    _ => None,
                };
                let converted = convert(func, &item, unit.as_deref());
                Ok(match func {
                    ConvertsToBoolean | ConvertsToInteger | ConvertsToLong | ConvertsToDate
                    | ConvertsToDateTime | ConvertsToDecimal | ConvertsToString
                    | ConvertsToTime | ConvertsToQuantity => boolean(converted.is_some()),
                    _ => converted.into_iter().collect(),
                })
            }
            IndexOf | LastIndexOf | StartsWith | EndsWith | ContainsStr | Upper | Lower
            | Length | ToChars | Trim | Substring | Replace | Matches | MatchesFull
            | ReplaceMatches | Split | Encode | Decode | Escape | Unescape => {
                self.string_fn(func, &input, args, focus, fr, pos)
            }
            Join => {
                let sep = self
                    .string(&self.arg(args, 0, focus, fr)?, pos)?
                    .unwrap_or_default();
                let mut parts = Vec::with_capacity(input.len());
                let mut len = 0usize;
                for item in &input {
                    match item.as_str() {
                        Some(s) => {
                            len = len.saturating_add(s.len()).saturating_add(sep.len());
                            parts.push(s);
                        }
                        None => return Err(Error::execution(pos, "join() needs strings")),
                    }
                }
                self.check_length(len, pos)?;
                Ok(smallvec![Item::Str(Cow::Owned(parts.join(sep.as_ref())))])
            }
            Abs | Ceiling | Exp | Floor | Ln | Log | Power | Round | Sqrt | Truncate => {
                self.math_fn(func, &input, args, focus, fr, pos)
            }
            Children => {
                let mut out = Coll::new();
                for item in &input {
                    self.room(out.len(), pos)?;
                    if let Item::Elem(e) = item {
                        self.children_of(e, &mut out);
                    }
                }
                self.charge(out.len(), pos)?;
                Ok(out)
            }
            Descendants => {
                let mut out = Coll::new();
                let mut queue = Coll::new();
                for item in &input {
                    self.room(queue.len(), pos)?;
                    if let Item::Elem(e) = item {
                        self.children_of(e, &mut queue);
                    }
                }
                while !queue.is_empty() {
                    let mut next = Coll::new();
                    for item in &queue {
                        self.room(out.len() + queue.len() + next.len(), pos)?;
                        if let Item::Elem(e) = item {
                            self.children_of(e, &mut next);
                        }
                    }
                    out.append(&mut queue);
                    queue = next;
                }
                self.charge(out.len(), pos)?;
                Ok(out)
            }
            Trace => {
                let name = self
                    .string(&self.arg(args, 0, focus, fr)?, pos)?
                    .unwrap_or_default();
                if let Some(tracer) = self.ctx.tracer {
                    if let Some(projection) = args.get(1) {
                        let mut projected = Coll::new();
                        for (i, item) in input.iter().enumerate() {
                            projected.extend(self.lambda(projection, item, i, None)?);
                        }
                        tracer(&name, &projected);
                    } else {
                        tracer(&name, &input);
                    }
                }
                Ok(input)
            }
            Now => Ok(smallvec![Item::DateTime(self.clock())]),
            Today => Ok(smallvec![Item::Date(
                self.clock().truncated(Precision::Day)
            )]),
            TimeOfDay => {
                let mut t = self.clock();
                t.offset = None;
                Ok(smallvec![Item::Time(t)])
            }
            Aggregate => {
                let mut total = match args.get(1) {
                    Some(init) => self.eval(init, focus, fr)?,
                    None => Coll::new(),
                };
                for (i, item) in input.iter().enumerate() {
                    total = self.lambda(&args[0], item, i, Some(&total))?;
                }
                Ok(total)
            }
            Type => Ok(input
                .iter()
                .map(|i| {
                    let (ns, name) = i.type_name();
                    Item::TypeInfo(ns, Cow::Owned(name.to_string()))
                })
                .collect()),
            Extension | HasExtension => {
                let url = self
                    .string(&self.arg(args, 0, focus, fr)?, pos)?
                    .unwrap_or_default();
                let exts = self.members(&input, "extension", pos)?;
                let found: Coll<'a> = exts
                    .into_iter()
                    .filter(|x| matches!(x, Item::Elem(e) if e.value.and_then(|v| v.get("url")).and_then(Value::as_str) == Some(&url)))
                    .collect();
                // `hasExtension(url)` is not FHIRPath N1, but an R4 core SearchParameter uses it.
                if func == HasExtension {
                    return Ok(boolean(!found.is_empty()));
                }
                Ok(found)
            }
            HasValue => Ok(boolean(
                matches!(input.as_slice(), [Item::Elem(e)] if e.value.is_some() && prim_kind(e.ty).is_some()),
            )),
            GetValue => Ok(match input.as_slice() {
                [item @ Item::Elem(e)] if e.value.is_some() && prim_kind(e.ty).is_some() => {
                    item.to_system().into_iter().collect()
                }
                _ => Coll::new(),
            }),
            Resolve => Ok(self.resolve(&input)),
            HtmlChecks | HtmlChecks2 => Ok(boolean(
                input.iter().all(|i| i.as_str().is_none_or(|s| html_ok(&s))),
            )),
            ConformsTo => {
                let url = self
                    .string(&self.arg(args, 0, focus, fr)?, pos)?
                    .unwrap_or_default();
                let Some(item) = self.single(&input, pos)? else {
                    return Ok(Coll::new());
                };
                match self.conforms_to(item, &url) {
                    Some(b) => Ok(boolean(b)),
                    None => Err(Error::execution(pos, format!("unknown profile '{url}'"))),
                }
            }
            MemberOf => {
                let vs = self
                    .string(&self.arg(args, 0, focus, fr)?, pos)?
                    .unwrap_or_default();
                let Some(item) = self.single(&input, pos)? else {
                    return Ok(Coll::new());
                };
                Ok(opt_bool(self.member_of(item, &vs)))
            }
            Subsumes | SubsumedBy => {
                let other = self.arg(args, 0, focus, fr)?;
                let (Some(a), Some(b)) = (self.single(&input, pos)?, self.single(&other, pos)?)
                else {
                    return Ok(Coll::new());
                };
                let (Some((sa, ca)), Some((sb, cb))) = (coding_of(a), coding_of(b)) else {
                    return Ok(Coll::new());
                };
                if sa != sb {
                    return Ok(Coll::new());
                }
                let (Some(t), Some(system)) = (self.ctx.terminology, sa) else {
                    return Ok(Coll::new());
                };
                let r = if func == Subsumes {
                    t.subsumes(system, ca, cb)
                } else {
                    t.subsumes(system, cb, ca)
                };
                Ok(opt_bool(r))
            }
            LowBoundary | HighBoundary | PrecisionOf => {
                let Some(item) = self.single(&input, pos)? else {
                    return Ok(Coll::new());
                };
                let Some(item) = item.to_system() else {
                    return Ok(Coll::new());
                };
                let digits = self.integer(&self.arg(args, 0, focus, fr)?, pos)?;
                Ok(boundary(func, &item, digits).into_iter().collect())
            }
            Comparable => {
                let other = self.arg(args, 0, focus, fr)?;
                let (Some(a), Some(b)) = (self.single(&input, pos)?, self.single(&other, pos)?)
                else {
                    return Ok(Coll::new());
                };
                Ok(match (a.to_system(), b.to_system()) {
                    (Some(Item::Quantity(x)), Some(Item::Quantity(y))) => boolean(
                        crate::ucum::convert(1.0, &x.unit, &y.unit).is_some() || x.unit == y.unit,
                    ),
                    _ => Coll::new(),
                })
            }
            Sort => self.sort(input, args, pos),
            DefineVariable => {
                let name = self
                    .string(&self.arg(args, 0, focus, fr)?, pos)?
                    .unwrap_or_default()
                    .into_owned();
                if matches!(
                    name.as_str(),
                    "resource" | "context" | "rootResource" | "ucum" | "sct" | "loinc"
                ) || self.defined.borrow().iter().any(|(n, _)| *n == name)
                {
                    return Err(Error::semantic(
                        pos,
                        format!("variable %{name} is already defined"),
                    ));
                }
                let value = match args.get(1) {
                    Some(expr) => self.eval(
                        expr,
                        &input,
                        Frame {
                            this: &input,
                            index: None,
                            total: None,
                        },
                    )?,
                    None => input.clone(),
                };
                self.defined.borrow_mut().push((name, value));
                Ok(input)
            }
            ElementDefinition | Slice | CheckModifiers => Err(Error::execution(
                pos,
                format!("{}() is not supported", func.name()),
            )),
        }
    }

    /// `iif()`: when applied to an item, that item is `$this` for the branches.
    fn iif(
        &self,
        args: &'a [Node],
        focus: &[Item<'a>],
        fr: Frame<'_, 'a>,
        item: Option<Item<'a>>,
    ) -> Result<Coll<'a>> {
        let this_items: Vec<Item<'a>> = item.into_iter().collect();
        let (focus, fr) = if this_items.is_empty() {
            (focus, fr)
        } else {
            (
                this_items.as_slice(),
                Frame {
                    this: &this_items,
                    index: Some(0),
                    total: fr.total,
                },
            )
        };
        let c = self.eval(&args[0], focus, fr)?;
        let cond = match self.single(&c, args[0].pos)?.and_then(Item::to_system) {
            None => None,
            Some(Item::Bool(b)) => Some(b),
            Some(_) => {
                return Err(Error::semantic(
                    args[0].pos,
                    "iif() criterion must be a Boolean",
                ))
            }
        };
        if cond == Some(true) {
            self.eval(&args[1], focus, fr)
        } else if let Some(otherwise) = args.get(2) {
            self.eval(otherwise, focus, fr)
        } else {
            Ok(Coll::new())
        }
    }

    fn clock(&self) -> Temporal {
        if let Some(t) = self.now.get() {
            return t;
        }
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        let text = flint_fhir::datetime::format_instant(micros);
        let t = Temporal::parse_date_time(&text)
            .map(|(t, _)| t)
            .unwrap_or(Temporal {
                year: 1970,
                month: 1,
                day: 1,
                hour: 0,
                minute: 0,
                second: 0,
                millis: 0,
                precision: Precision::Millisecond,
                offset: Some(0),
            });
        self.now.set(Some(t));
        t
    }

    fn string_fn(
        &self,
        func: Func,
        input: &[Item<'a>],
        args: &'a [Node],
        focus: &[Item<'a>],
        fr: Frame<'_, 'a>,
        pos: usize,
    ) -> Result<Coll<'a>> {
        use Func::*;
        let Some(s) = self.string(input, pos)? else {
            return Ok(Coll::new());
        };
        let mut str_args = Vec::with_capacity(args.len());
        for (i, a) in args.iter().enumerate() {
            let v = self.arg(args, i, focus, fr)?;
            if matches!(func, Substring) {
                str_args.push(None);
                continue;
            }
            match self.string(&v, a.pos)? {
                Some(x) => str_args.push(Some(x)),
                None => return Ok(Coll::new()),
            }
        }
        let arg = |i: usize| -> &str { str_args.get(i).and_then(|a| a.as_deref()).unwrap_or("") };
        let string = |v: String| smallvec![Item::Str(Cow::Owned(v))];
        if matches!(func, ToChars | Split) {
            // One item per character at most, counted before they are made.
            self.charge(s.len(), pos)?;
        }
        let out: Coll<'a> = match func {
            IndexOf => smallvec![Item::Int(
                s.find(arg(0)).map_or(-1, |b| s[..b].chars().count() as i64),
            )],
            LastIndexOf => smallvec![Item::Int(
                s.rfind(arg(0))
                    .map_or(-1, |b| s[..b].chars().count() as i64),
            )],
            StartsWith => boolean(s.starts_with(arg(0))),
            EndsWith => boolean(s.ends_with(arg(0))),
            ContainsStr => boolean(s.contains(arg(0))),
            Upper => string(s.to_uppercase()),
            Lower => string(s.to_lowercase()),
            Length => smallvec![Item::Int(s.chars().count() as i64)],
            ToChars => s
                .chars()
                .map(|c| Item::Str(Cow::Owned(c.to_string())))
                .collect(),
            Trim => string(s.trim().to_string()),
            Substring => {
                let start = self.integer(&self.arg(args, 0, focus, fr)?, pos)?;
                let Some(start) = start else {
                    return Ok(Coll::new());
                };
                let len = match args.get(1) {
                    Some(_) => self.integer(&self.arg(args, 1, focus, fr)?, pos)?,
                    None => None,
                };
                let count = s.chars().count() as i64;
                if start < 0 || start >= count {
                    return Ok(Coll::new());
                }
                let take = len.unwrap_or(count).max(0);
                string(s.chars().skip(start as usize).take(take as usize).collect())
            }
            Replace => {
                // The result's length is known before it is built.
                let (from, to) = (arg(0), arg(1));
                let times = if from.is_empty() {
                    s.chars().count() + 1
                } else {
                    self.charge(s.len() / 64, pos)?;
                    s.matches(from).count()
                };
                let len = (s.len() - times.saturating_mul(from.len()).min(s.len()))
                    .saturating_add(times.saturating_mul(to.len()));
                self.check_length(len, pos)?;
                if from.is_empty() {
                    // Replacing the empty string puts the replacement between every character.
                    let mut out = String::from(arg(1));
                    for c in s.chars() {
                        out.push(c);
                        out.push_str(arg(1));
                    }
                    string(out)
                } else {
                    string(s.replace(arg(0), arg(1)))
                }
            }
            Matches | MatchesFull => {
                let pattern = if func == MatchesFull {
                    format!("^(?:{})$", arg(0))
                } else {
                    arg(0).to_string()
                };
                self.charge(match_cost(&pattern, &s), pos)?;
                let re = regex(&pattern, args.get(1).map(|_| arg(1)), pos)?;
                boolean(re.is_match(&s))
            }
            ReplaceMatches if arg(0).is_empty() => smallvec![Item::Str(s.clone())],
            ReplaceMatches => {
                self.charge(match_cost(arg(0), &s), pos)?;
                let re = regex(arg(0), args.get(2).map(|_| arg(2)), pos)?;
                // FHIRPath writes group references as `$1`; regex-lite takes `${1}`. The
                // replacement stops growing the result once it is too long (an empty match
                // at every character, each replaced by a long text, would be enormous).
                let mut replacer = Bounded {
                    replacement: arg(1),
                    over: false,
                };
                let replaced = re
                    .replace_all(&s, regex_lite::Replacer::by_ref(&mut replacer))
                    .into_owned();
                if replacer.over {
                    self.check_length(usize::MAX, pos)?;
                }
                string(replaced)
            }
            Split => {
                if arg(0).is_empty() {
                    s.chars()
                        .map(|c| Item::Str(Cow::Owned(c.to_string())))
                        .collect()
                } else {
                    s.split(arg(0))
                        .map(|p| Item::Str(Cow::Owned(p.to_string())))
                        .collect()
                }
            }
            Encode | Decode | Escape | Unescape => match codec(func, &s, arg(0)) {
                Some(v) => string(v),
                None => Coll::new(),
            },
            _ => Coll::new(),
        };
        // The other functions make at most a few times the input's length.
        for item in &out {
            if let Item::Str(Cow::Owned(built)) = item {
                self.check_length(built.len(), pos)?;
            }
        }
        Ok(out)
    }

    fn math_fn(
        &self,
        func: Func,
        input: &[Item<'a>],
        args: &'a [Node],
        focus: &[Item<'a>],
        fr: Frame<'_, 'a>,
        pos: usize,
    ) -> Result<Coll<'a>> {
        use Func::*;
        let Some(item) = self.single(input, pos)? else {
            return Ok(Coll::new());
        };
        let Some(item) = item.to_system() else {
            return Ok(Coll::new());
        };
        if let (Abs, Item::Quantity(q)) = (func, &item) {
            return Ok(smallvec![Item::Quantity(Box::new(Quantity {
                value: q.value.abs(),
                unit: q.unit.clone(),
            }))]);
        }
        let Some(d) = ops::to_decimal(&item) else {
            return Err(Error::execution(
                pos,
                format!("{}() needs a number", func.name()),
            ));
        };
        let is_int = matches!(item, Item::Int(_));
        let int = |v: Option<i128>| {
            v.and_then(|v| i64::try_from(v).ok())
                .map(Item::Int)
                .into_iter()
                .collect::<Coll>()
        };
        let float = |v: f64| {
            Decimal::from_f64(v)
                .map(Item::Dec)
                .into_iter()
                .collect::<Coll>()
        };
        Ok(match func {
            Abs => smallvec![if is_int {
                Item::Int(d.abs().to_i64_exact().unwrap_or(0))
            } else {
                Item::Dec(d.abs())
            }],
            Ceiling => int(d.ceiling()),
            Floor => int(d.floor()),
            Truncate => int(d.truncate()),
            Round => {
                let digits = self
                    .integer(&self.arg(args, 0, focus, fr)?, pos)?
                    .unwrap_or(0);
                if digits < 0 {
                    return Err(Error::execution(
                        pos,
                        "round() precision must not be negative",
                    ));
                }
                smallvec![Item::Dec(d.round(digits as u32))]
            }
            Exp => float(d.to_f64().exp()),
            Ln => float(d.to_f64().ln()),
            Sqrt => float(d.to_f64().sqrt()),
            Log | Power => {
                let other = self.arg(args, 0, focus, fr)?;
                let Some(o) = self.single(&other, pos)?.and_then(Item::to_system) else {
                    return Ok(Coll::new());
                };
                let Some(e) = ops::to_decimal(&o) else {
                    return Err(Error::execution(
                        pos,
                        format!("{}() needs a number", func.name()),
                    ));
                };
                if func == Log {
                    float(d.to_f64().ln() / e.to_f64().ln())
                } else if is_int
                    && matches!(o, Item::Int(_))
                    && e.to_i64_exact().is_some_and(|x| x >= 0)
                {
                    let exp = u32::try_from(e.to_i64_exact().unwrap_or(0)).unwrap_or(u32::MAX);
                    d.to_i64_exact()
                        .and_then(|b| b.checked_pow(exp))
                        .map(Item::Int)
                        .into_iter()
                        .collect()
                } else {
                    float(d.to_f64().powf(e.to_f64()))
                }
            }
            _ => Coll::new(),
        })
    }

    fn sort(&self, input: Coll<'a>, args: &'a [Node], pos: usize) -> Result<Coll<'a>> {
        // About n log n comparisons, each a step.
        let n = input.len();
        self.charge(n.saturating_mul(n.max(2).ilog2() as usize), pos)?;
        // Each key is evaluated per item; a key written as `-expr` sorts descending.
        let mut keyed: Vec<(Vec<Option<Item<'a>>>, Item<'a>)> = Vec::with_capacity(input.len());
        for (i, item) in input.into_iter().enumerate() {
            let mut keys = Vec::with_capacity(args.len().max(1));
            if args.is_empty() {
                keys.push(item.to_system());
            }
            for a in args {
                let node = match &a.kind {
                    NodeKind::Neg(inner) => inner,
                    _ => a,
                };
                let v = self.lambda(node, &item, i, None)?;
                keys.push(self.single(&v, a.pos)?.and_then(Item::to_system));
            }
            keyed.push((keys, item));
        }
        let desc: Vec<bool> = args
            .iter()
            .map(|a| matches!(a.kind, NodeKind::Neg(_)))
            .collect();
        let mut failed = None;
        keyed.sort_by(|(ka, _), (kb, _)| {
            for (k, (a, b)) in ka.iter().zip(kb).enumerate() {
                let o = match (a, b) {
                    (None, None) => Ordering::Equal,
                    (None, Some(_)) => Ordering::Less,
                    (Some(_), None) => Ordering::Greater,
                    (Some(x), Some(y)) => match ops::compare(x, y) {
                        Ok(o) => o.unwrap_or(Ordering::Equal),
                        Err(m) => {
                            failed = Some(m);
                            Ordering::Equal
                        }
                    },
                };
                // Items without a key come first whatever the direction.
                let keyed_both = a.is_some() && b.is_some();
                let o = if keyed_both && desc.get(k).copied().unwrap_or(false) {
                    o.reverse()
                } else {
                    o
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        });
        if let Some(m) = failed {
            return Err(Error::execution(pos, m));
        }
        Ok(keyed.into_iter().map(|(_, i)| i).collect())
    }

    fn resolve(&self, input: &[Item<'a>]) -> Coll<'a> {
        let mut out = Coll::new();
        for item in input {
            let reference = match item {
                Item::Elem(e) if e.ty == "Reference" => e
                    .value
                    .and_then(|v| v.get("reference"))
                    .and_then(Value::as_str)
                    .map(Cow::Borrowed),
                other => other.as_str(),
            };
            let Some(reference) = reference else { continue };
            if let Some(found) = self.resolve_reference(&reference) {
                out.extend(crate::json_items(found));
            }
        }
        out
    }

    fn resolve_reference(&self, reference: &str) -> Option<&'a Value> {
        let container = self.ctx.resource.unwrap_or(self.resource);
        if let Some(id) = reference.strip_prefix('#') {
            return container
                .get("contained")
                .and_then(Value::as_array)
                .and_then(|c| {
                    c.iter()
                        .find(|r| r.get("id").and_then(Value::as_str) == Some(id))
                });
        }
        // Inside a Bundle: an entry whose fullUrl or type/id matches.
        let bundle = self.ctx.root_resource.unwrap_or(container);
        if bundle.get("resourceType").and_then(Value::as_str) == Some("Bundle") {
            let entries = bundle
                .get("entry")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            for entry in entries {
                let full = entry.get("fullUrl").and_then(Value::as_str);
                let res = entry.get("resource");
                let matches_type_id = res.is_some_and(|r| {
                    let ty = r.get("resourceType").and_then(Value::as_str).unwrap_or("");
                    let id = r.get("id").and_then(Value::as_str).unwrap_or("");
                    reference
                        .strip_suffix(id)
                        .and_then(|p| p.strip_suffix('/'))
                        .is_some_and(|p| p.ends_with(ty))
                        && !id.is_empty()
                });
                if full == Some(reference) || matches_type_id {
                    return res;
                }
            }
        }
        self.ctx.resolver.and_then(|r| r.resolve(reference))
    }

    fn conforms_to(&self, item: &Item<'a>, url: &str) -> Option<bool> {
        let Item::Elem(e) = item else {
            return Some(false);
        };
        if let Some(ty) = url.strip_prefix("http://hl7.org/fhir/StructureDefinition/") {
            if self.model.get(ty).is_some() {
                return Some(self.model.is_subtype_of(e.ty, ty));
            }
        }
        let v = e.value?;
        self.ctx.profiles.and_then(|p| p.conforms_to(v, url))
    }

    fn member_of(&self, item: &Item<'a>, vs: &str) -> Option<bool> {
        let t = self.ctx.terminology?;
        let Item::Elem(e) = item else {
            return item.as_str().and_then(|c| t.member_of(vs, None, &c));
        };
        let v = e.value?;
        match e.ty {
            "CodeableConcept" => {
                let mut unknown = false;
                for c in v
                    .get("coding")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let Some(code) = c.get("code").and_then(Value::as_str) else {
                        continue;
                    };
                    match t.member_of(vs, c.get("system").and_then(Value::as_str), code) {
                        Some(true) => return Some(true),
                        None => unknown = true,
                        Some(false) => {}
                    }
                }
                if unknown {
                    None
                } else {
                    Some(false)
                }
            }
            "Coding" => t.member_of(
                vs,
                v.get("system").and_then(Value::as_str),
                v.get("code")?.as_str()?,
            ),
            _ => t.member_of(vs, None, v.as_str()?),
        }
    }
}

fn coding_of<'i>(item: &'i Item<'_>) -> Option<(Option<&'i str>, &'i str)> {
    let Item::Elem(e) = item else { return None };
    let v = e.value?;
    match e.ty {
        "Coding" => Some((
            v.get("system").and_then(Value::as_str),
            v.get("code")?.as_str()?,
        )),
        "CodeableConcept" => {
            let c = v.get("coding")?.get(0)?;
            Some((
                c.get("system").and_then(Value::as_str),
                c.get("code")?.as_str()?,
            ))
        }
        _ => None,
    }
}

/// With ordered-function checking on: functions that depend on order may not follow
/// `children()` or `descendants()`, whose order is not defined.
fn check_ordered(func: Func, target: Option<&Node>, pos: usize) -> Result<()> {
    let ordered = matches!(
        func,
        Func::Skip | Func::Take | Func::First | Func::Last | Func::Tail | Func::Single
    );
    let unordered_input = matches!(
        target.map(|t| &t.kind),
        Some(NodeKind::Call {
            func: Func::Children | Func::Descendants,
            ..
        })
    );
    if ordered && unordered_input {
        return Err(Error::semantic(
            pos,
            format!("{}() needs an ordered collection", func.name()),
        ));
    }
    Ok(())
}

/// `_name` for the JSON key of a primitive's extensions, built on the stack when short.
pub(crate) fn underscore(name: &str) -> UnderscoreKey {
    UnderscoreKey::new(name)
}

/// A `_`-prefixed key without a heap allocation for names up to 63 bytes.
pub(crate) struct UnderscoreKey {
    buf: [u8; 64],
    len: usize,
    heap: Option<String>,
}

impl UnderscoreKey {
    fn new(name: &str) -> Self {
        let mut buf = [0u8; 64];
        if name.len() < 64 {
            buf[0] = b'_';
            buf[1..=name.len()].copy_from_slice(name.as_bytes());
            UnderscoreKey {
                buf,
                len: name.len() + 1,
                heap: None,
            }
        } else {
            UnderscoreKey {
                buf,
                len: 0,
                heap: Some(format!("_{name}")),
            }
        }
    }
}

impl std::ops::Deref for UnderscoreKey {
    type Target = str;
    fn deref(&self) -> &str {
        match &self.heap {
            Some(s) => s,
            // The buffer holds '_' followed by a valid UTF-8 name.
            None => std::str::from_utf8(&self.buf[..self.len]).unwrap_or(""),
        }
    }
}

/// Pushes the element(s) of a JSON property, pairing a primitive array with its `_name`
/// array. Properties typed `Resource` take their type from `resourceType`.
fn push_values<'a>(
    value: Option<&'a Value>,
    ext: Option<&'a Value>,
    ty: &'a str,
    tid: nav::TypeId,
    out: &mut Coll<'a>,
) {
    let dynamic = ty.is_empty() || ty == "Resource" || ty == "DomainResource";
    let elem = |value: Option<&'a Value>, ext: Option<&'a Value>| -> Item<'a> {
        if dynamic {
            if let Some(rt) = value
                .and_then(|v| v.get("resourceType"))
                .and_then(Value::as_str)
            {
                return Item::Elem(Elem::new(value, ext, rt));
            }
        }
        Item::Elem(Elem {
            value,
            ext,
            ty,
            tid,
        })
    };
    match (value, ext) {
        (Some(Value::Array(values)), ext) => {
            let exts = ext.and_then(Value::as_array);
            for (i, v) in values.iter().enumerate() {
                let x = exts.and_then(|e| e.get(i)).filter(|x| !x.is_null());
                if v.is_null() {
                    if x.is_some() {
                        out.push(elem(None, x));
                    }
                    continue;
                }
                out.push(elem(Some(v), x));
            }
        }
        (Some(Value::Null), _) => {}
        (Some(v), ext) => out.push(elem(Some(v), ext)),
        (None, Some(Value::Array(exts))) => {
            for x in exts.iter().filter(|x| !x.is_null()) {
                out.push(elem(None, Some(x)));
            }
        }
        (None, Some(x)) => out.push(elem(None, Some(x))),
        (None, None) => {}
    }
}

fn literal(l: &Literal) -> Item<'_> {
    match l {
        Literal::Bool(b) => Item::Bool(*b),
        Literal::Int(i) => Item::Int(*i),
        Literal::Long(i) => Item::Long(*i),
        Literal::Dec(d) => Item::Dec(*d),
        Literal::Str(s) => Item::Str(Cow::Borrowed(s)),
        Literal::Date(t) => Item::Date(*t),
        Literal::DateTime(t) => Item::DateTime(*t),
        Literal::Time(t) => Item::Time(*t),
        Literal::Quantity(v, u) => Item::Quantity(Box::new(Quantity {
            value: *v,
            unit: Cow::Borrowed(u),
        })),
    }
}

fn item_equal(a: &Item, b: &Item, steps: &Steps) -> Option<bool> {
    // The same node of the resource is equal to itself (union of overlapping paths).
    if let (Item::Elem(x), Item::Elem(y)) = (a, b) {
        if let (Some(p), Some(q)) = (x.value, y.value) {
            if std::ptr::eq(p, q) {
                return Some(true);
            }
            if p.is_object() && q.is_object() {
                if x.ty != y.ty {
                    return Some(false);
                }
                // Same type, same JSON: equal without converting (quantities included).
                let same = json_compare(p, q, steps, 0);
                if same == Some(true) {
                    return Some(true);
                }
                // Quantities in the same unit compare by value without conversion.
                if let Some(same) = same_unit_quantities(x.ty, p, q, steps) {
                    return Some(same);
                }
                // Other complex types differing in a string, boolean or member are unequal.
                if same == Some(false) && !crate::value::is_quantity_type(x.ty) {
                    return Some(false);
                }
            }
        }
    }
    match (a.to_system(), b.to_system()) {
        (Some(x), Some(y)) => ops::equal(&x, &y, steps),
        (None, None) => Some(true),
        _ => Some(false),
    }
}

/// For two FHIR Quantities whose members other than `value` are identical: whether their
/// values are equal. `None` when the shortcut does not apply.
fn same_unit_quantities(ty: &str, p: &Value, q: &Value, steps: &Steps) -> Option<bool> {
    if !crate::value::is_quantity_type(ty) {
        return None;
    }
    let (a, b) = (p.as_object()?, q.as_object()?);
    if a.len() != b.len() {
        return None;
    }
    // Members in the same order (the usual case for data written by one system).
    let mut values = None;
    for ((ka, va), (kb, vb)) in a.iter().zip(b) {
        if ka != kb {
            return None;
        }
        if ka == "value" {
            values = Some((va, vb));
        } else if !json_same(va, vb, steps) {
            return None;
        }
    }
    match values? {
        (Value::Number(x), Value::Number(y)) => {
            Some(Decimal::parse(x.as_str())? == Decimal::parse(y.as_str())?)
        }
        _ => None,
    }
}

/// JSON equality that compares objects member by member in order before falling back to
/// serde_json's order-insensitive (hashing) comparison.
fn json_same(a: &Value, b: &Value, steps: &Steps) -> bool {
    json_compare(a, b, steps, 0).unwrap_or_else(|| !steps.spent() && a == b)
}

/// Compares JSON without hashing: `Some(true)` identical, `Some(false)` certainly different
/// (a string, boolean, length or member name differs), `None` when only an order-insensitive
/// or numeric comparison can tell (members in another order, `1.0` against `1.00`).
/// Each node visited is a step; once the budget is spent (or past [`MAX_JSON_DEPTH`]) the
/// answer is "different", which the evaluation never uses as it fails at its next step.
fn json_compare(a: &Value, b: &Value, steps: &Steps, depth: usize) -> Option<bool> {
    if !steps.take(1) {
        return Some(false);
    }
    if depth > MAX_JSON_DEPTH {
        steps.exhaust();
        return Some(false);
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            if x.len() != y.len() {
                return Some(false);
            }
            let mut unsure = false;
            for ((kx, vx), (ky, vy)) in x.iter().zip(y) {
                if kx != ky {
                    return None;
                }
                match json_compare(vx, vy, steps, depth + 1) {
                    Some(false) => return Some(false),
                    None => unsure = true,
                    Some(true) => {}
                }
            }
            if unsure {
                None
            } else {
                Some(true)
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Some(false);
            }
            let mut unsure = false;
            for (p, q) in x.iter().zip(y) {
                match json_compare(p, q, steps, depth + 1) {
                    Some(false) => return Some(false),
                    None => unsure = true,
                    Some(true) => {}
                }
            }
            if unsure {
                None
            } else {
                Some(true)
            }
        }
        (Value::Number(x), Value::Number(y)) => (x == y).then_some(true),
        (Value::String(x), Value::String(y)) => Some(x == y),
        (Value::Bool(x), Value::Bool(y)) => Some(x == y),
        (Value::Null, Value::Null) => Some(true),
        _ => Some(false),
    }
}

fn contains(hay: &[Item], needle: &Item, steps: &Steps) -> bool {
    hay.iter()
        .any(|h| item_equal(h, needle, steps) == Some(true))
}

fn collections_equal(a: &[Item], b: &[Item], steps: &Steps) -> Option<bool> {
    if a.len() != b.len() {
        return Some(false);
    }
    let mut unknown = false;
    for (x, y) in a.iter().zip(b) {
        match item_equal(x, y, steps) {
            Some(false) => return Some(false),
            None => unknown = true,
            Some(true) => {}
        }
    }
    if unknown {
        None
    } else {
        Some(true)
    }
}

fn collections_equivalent(a: &[Item], b: &[Item], steps: &Steps) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let sa: Vec<Option<Item>> = a.iter().map(Item::to_system).collect();
    let sb: Vec<Option<Item>> = b.iter().map(Item::to_system).collect();
    let mut used = vec![false; sb.len()];
    for x in &sa {
        let hit = sb.iter().enumerate().position(|(j, y)| {
            !used[j]
                && match (x, y) {
                    (Some(x), Some(y)) => ops::equivalent(x, y, steps),
                    (None, None) => true,
                    _ => false,
                }
        });
        match hit {
            Some(j) => used[j] = true,
            None => return false,
        }
    }
    true
}

/// The conversion functions; `None` when the value does not convert.
fn convert<'a>(func: Func, item: &Item<'a>, unit: Option<&str>) -> Option<Item<'a>> {
    use Func::*;
    match func {
        ToBoolean | ConvertsToBoolean => match item {
            Item::Bool(b) => Some(Item::Bool(*b)),
            Item::Int(1) => Some(Item::Bool(true)),
            Item::Int(0) => Some(Item::Bool(false)),
            Item::Dec(d) if *d == Decimal::from_i64(1) => Some(Item::Bool(true)),
            Item::Dec(d) if d.is_zero() => Some(Item::Bool(false)),
            Item::Str(s) => match s.to_lowercase().as_str() {
                "true" | "t" | "yes" | "y" | "1" | "1.0" => Some(Item::Bool(true)),
                "false" | "f" | "no" | "n" | "0" | "0.0" => Some(Item::Bool(false)),
                _ => None,
            },
            _ => None,
        },
        ToInteger | ConvertsToInteger => match item {
            Item::Int(i) => Some(Item::Int(*i)),
            Item::Bool(b) => Some(Item::Int(i64::from(*b))),
            Item::Str(s) => {
                let t = s.strip_prefix(['+', '-']).unwrap_or(s);
                if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                s.parse::<i32>().ok().map(|i| Item::Int(i64::from(i)))
            }
            _ => None,
        },
        ToLong | ConvertsToLong => match item {
            Item::Int(i) | Item::Long(i) => Some(Item::Long(*i)),
            Item::Bool(b) => Some(Item::Long(i64::from(*b))),
            Item::Str(s) => s.parse().ok().map(Item::Long),
            _ => None,
        },
        ToDecimal | ConvertsToDecimal => match item {
            Item::Int(i) | Item::Long(i) => Some(Item::Dec(Decimal::from_i64(*i))),
            Item::Dec(d) => Some(Item::Dec(*d)),
            Item::Bool(b) => Some(Item::Dec(Decimal::from_i64(i64::from(*b)))),
            Item::Str(s) => {
                if s.contains(['e', 'E']) {
                    return None;
                }
                Decimal::parse(s).map(Item::Dec)
            }
            _ => None,
        },
        ToDate | ConvertsToDate => match item {
            Item::Date(t) => Some(Item::Date(*t)),
            Item::DateTime(t) => Some(Item::Date(t.truncated(Precision::Day))),
            Item::Str(s) => {
                Temporal::parse_date_time(s).map(|(t, _)| Item::Date(t.truncated(Precision::Day)))
            }
            _ => None,
        },
        ToDateTime | ConvertsToDateTime => match item {
            Item::Date(t) | Item::DateTime(t) => Some(Item::DateTime(*t)),
            Item::Str(s) => Temporal::parse_date_time(s).map(|(t, _)| Item::DateTime(t)),
            _ => None,
        },
        ToTime | ConvertsToTime => match item {
            Item::Time(t) => Some(Item::Time(*t)),
            Item::Str(s) => Temporal::parse_time(s.strip_prefix('T').unwrap_or(s)).map(Item::Time),
            _ => None,
        },
        ToStringFn | ConvertsToString => to_string(item).map(|s| Item::Str(Cow::Owned(s))),
        ToQuantity | ConvertsToQuantity => {
            let q = match item {
                Item::Int(i) => Some(Quantity {
                    value: Decimal::from_i64(*i),
                    unit: Cow::Borrowed("1"),
                }),
                Item::Dec(d) => Some(Quantity {
                    value: *d,
                    unit: Cow::Borrowed("1"),
                }),
                Item::Quantity(q) => Some((**q).clone()),
                Item::Bool(b) => Some(Quantity {
                    value: Decimal::from_i64(i64::from(*b)),
                    unit: Cow::Borrowed("1"),
                }),
                Item::Str(s) => parse_quantity(s),
                _ => None,
            }?;
            match unit {
                None => Some(Item::Quantity(Box::new(q))),
                Some(u) if u == q.unit => Some(Item::Quantity(Box::new(q))),
                Some(u) => {
                    let v = crate::ucum::convert(q.value.to_f64(), &q.unit, u)?;
                    Some(Item::Quantity(Box::new(Quantity {
                        value: Decimal::from_f64(v)?,
                        unit: Cow::Owned(u.to_string()),
                    })))
                }
            }
        }
        _ => None,
    }
}

/// Parses `'1.5 \'mg\''` or `'4 days'` as toQuantity() reads strings.
fn parse_quantity<'a>(s: &str) -> Option<Quantity<'a>> {
    let s = s.trim();
    let (num, rest) = match s.find(' ') {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, ""),
    };
    let value = Decimal::parse(num)?;
    if num.starts_with('.') || num.ends_with('.') {
        return None;
    }
    let unit = if rest.is_empty() {
        "1".to_string()
    } else if let Some(u) = rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        u.to_string()
    } else if crate::value::is_calendar_unit(rest) {
        rest.to_string()
    } else {
        return None;
    };
    Some(Quantity {
        value,
        unit: Cow::Owned(unit),
    })
}

fn to_string(item: &Item) -> Option<String> {
    Some(match item {
        Item::Bool(b) => b.to_string(),
        Item::Int(i) | Item::Long(i) => i.to_string(),
        Item::Dec(d) => d.to_string(),
        Item::Str(s) => s.to_string(),
        Item::Date(t) => t.date_time_text(TemporalKind::Date),
        Item::DateTime(t) => t.date_time_text(TemporalKind::DateTime),
        Item::Time(t) => t.clock_text(),
        Item::Quantity(q) => {
            if crate::value::is_calendar_unit(&q.unit) {
                format!("{} {}", q.value, q.unit)
            } else {
                format!("{} '{}'", q.value, q.unit)
            }
        }
        _ => return None,
    })
}

fn boundary<'a>(func: Func, item: &Item<'a>, digits: Option<i64>) -> Option<Item<'a>> {
    let high = func == Func::HighBoundary;
    match item {
        Item::Dec(_) | Item::Int(_) => {
            let d = ops::to_decimal(item)?;
            if func == Func::PrecisionOf {
                return Some(Item::Int(i64::from(d.scale())));
            }
            let target = match digits {
                Some(p) if !(0..=28).contains(&p) => return None,
                Some(p) => p as u32,
                None => 8,
            };
            let half = Decimal::parse("0.5")?.checked_mul(&d.ulp())?;
            let edge = if high {
                d.checked_add(&half)?
            } else {
                d.checked_sub(&half)?
            };
            Some(Item::Dec(edge.at_scale(target, high)?))
        }
        Item::Quantity(q) => {
            let inner = boundary(func, &Item::Dec(q.value), digits)?;
            match inner {
                Item::Dec(v) => Some(Item::Quantity(Box::new(Quantity {
                    value: v,
                    unit: q.unit.clone(),
                }))),
                other => Some(other),
            }
        }
        Item::Date(t) | Item::DateTime(t) | Item::Time(t) => {
            let kind = match item {
                Item::Date(_) => TemporalKind::Date,
                Item::DateTime(_) => TemporalKind::DateTime,
                _ => TemporalKind::Time,
            };
            if func == Func::PrecisionOf {
                return Some(Item::Int(t.precision_digits(kind)));
            }
            let digits = digits.map(|d| u8::try_from(d).unwrap_or(0));
            let b = t.boundary(high, kind, digits)?;
            Some(match (kind, b.precision >= Precision::Hour) {
                (TemporalKind::Date, false) => Item::Date(b),
                (TemporalKind::Time, _) => Item::Time(b),
                (_, true) | (TemporalKind::DateTime, _) => Item::DateTime(b),
            })
        }
        _ => None,
    }
}

/// Replaces each match by `replacement` (with `$1` group references) until the result reaches
/// [`MAX_STRING_BYTES`], then by nothing, noting that it went over.
struct Bounded<'r> {
    replacement: &'r str,
    over: bool,
}

impl regex_lite::Replacer for Bounded<'_> {
    fn replace_append(&mut self, caps: &regex_lite::Captures<'_>, dst: &mut String) {
        if self.over {
            return;
        }
        caps.expand(self.replacement, dst);
        if dst.len() > MAX_STRING_BYTES {
            self.over = true;
        }
    }
}

/// The steps a regular expression costs: compiling it, and matching, which takes time in
/// proportion to the pattern times the text.
fn match_cost(pattern: &str, text: &str) -> usize {
    (pattern.len() + 1).saturating_mul(text.len() + 1) / 64 + pattern.len()
}

/// Deepest group nesting a pattern may have: regex-lite parses recursively.
const REGEX_NEST_LIMIT: u32 = 32;

/// Largest compiled pattern, in bytes.
const REGEX_SIZE_LIMIT: usize = 1024 * 1024;

fn regex(pattern: &str, flags: Option<&str>, pos: usize) -> Result<regex_lite::Regex> {
    let mut b = regex_lite::RegexBuilder::new(pattern);
    b.nest_limit(REGEX_NEST_LIMIT);
    b.size_limit(REGEX_SIZE_LIMIT);
    // FHIRPath regexes run in single-line mode: `.` matches newlines.
    b.dot_matches_new_line(true);
    for f in flags.unwrap_or("").chars() {
        match f {
            'i' => {
                b.case_insensitive(true);
            }
            'm' => {
                b.multi_line(true);
            }
            's' => {
                b.dot_matches_new_line(true);
            }
            'x' => {
                b.ignore_whitespace(true);
            }
            _ => return Err(Error::execution(pos, format!("unknown regex flag '{f}'"))),
        }
    }
    b.build()
        .map_err(|e| Error::execution(pos, format!("invalid regular expression: {e}")))
}

/// The `encode`/`decode`/`escape`/`unescape` codecs.
fn codec(func: Func, s: &str, format: &str) -> Option<String> {
    const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    match (func, format) {
        (Func::Encode, "base64" | "urlbase64") => {
            let table = if format == "base64" { STD } else { URL };
            let bytes = s.as_bytes();
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let n = chunk
                    .iter()
                    .enumerate()
                    .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
                for i in 0..4 {
                    if i <= chunk.len() {
                        out.push(table[((n >> (18 - 6 * i)) & 63) as usize] as char);
                    } else {
                        out.push('=');
                    }
                }
            }
            Some(out)
        }
        (Func::Decode, "base64" | "urlbase64") => {
            let table = if format == "base64" { STD } else { URL };
            let mut bits = 0u32;
            let mut count = 0;
            let mut out = Vec::new();
            for c in s.bytes().filter(|c| *c != b'=') {
                let v = table.iter().position(|t| *t == c)? as u32;
                bits = (bits << 6) | v;
                count += 6;
                if count >= 8 {
                    count -= 8;
                    out.push((bits >> count) as u8);
                    bits &= (1 << count) - 1;
                }
            }
            String::from_utf8(out).ok()
        }
        (Func::Encode, "hex") => Some(s.bytes().map(|b| format!("{b:02x}")).collect()),
        (Func::Decode, "hex") => {
            if !s.len().is_multiple_of(2) {
                return None;
            }
            let bytes: Option<Vec<u8>> = (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
                .collect();
            String::from_utf8(bytes?).ok()
        }
        (Func::Escape, "html") => Some(
            s.chars()
                .map(|c| match c {
                    '<' => "&lt;".to_string(),
                    '>' => "&gt;".to_string(),
                    '&' => "&amp;".to_string(),
                    '"' => "&quot;".to_string(),
                    '\'' => "&#39;".to_string(),
                    c => c.to_string(),
                })
                .collect(),
        ),
        (Func::Unescape, "html") => Some(
            s.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&amp;", "&"),
        ),
        (Func::Escape, "json") => Some(s.replace('\\', "\\\\").replace('"', "\\\"")),
        (Func::Unescape, "json") => Some(s.replace("\\\"", "\"").replace("\\\\", "\\")),
        _ => None,
    }
}

/// The narrative checks `htmlChecks()` makes: no scripts, no event handlers, no forms.
fn html_ok(s: &str) -> bool {
    let lower = s.to_lowercase();
    ![
        "<script",
        "<form",
        "<iframe",
        "<object",
        "<embed",
        " onclick",
        " onload",
        "javascript:",
    ]
    .iter()
    .any(|bad| lower.contains(bad))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Expression;

    #[test]
    fn navigation_is_typed_by_the_model() {
        let obs = serde_json::json!({
            "resourceType": "Observation",
            "valueQuantity": {"value": 185, "unit": "lbs", "system": "http://unitsofmeasure.org", "code": "[lb_av]"},
            "effectiveDateTime": "2020-01-02",
            "_effectiveDateTime": {"extension": [{"url": "x", "valueString": "y"}]}
        });
        let cases = [
            ("Observation.value.unit", "lbs"),
            ("Observation.value.is(Quantity)", "true"),
            ("Observation.value > 80 'kg'", "true"),
            ("effective.extension.value", "y"),
            ("effective.type().name", "dateTime"),
        ];
        for (expr, want) in cases {
            let e = Expression::compile(expr).unwrap();
            let got = e.evaluate(&obs).unwrap();
            assert_eq!(got.len(), 1, "{expr}");
            assert_eq!(
                to_string(&got[0].to_system().unwrap()).as_deref(),
                Some(want),
                "{expr}"
            );
        }
    }

    #[test]
    fn errors_carry_positions() {
        let e = Expression::compile("name.foo(").unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::Syntax);
        let e = Expression::compile("name.nope()").unwrap_err();
        assert_eq!((e.kind, e.position), (crate::ErrorKind::Semantic, 5));
        let p = serde_json::json!({"resourceType": "Patient", "name": [{"given": ["a", "b"]}]});
        let e = Expression::compile("name.given + 1").unwrap();
        assert_eq!(e.evaluate(&p).unwrap_err().position, 11);
    }
}
