//! The parser: tokens to the compiled tree, by precedence climbing over FHIRPath's operator
//! levels. Function names, arities, type specifiers and literals are resolved here, so errors
//! in them surface when compiling, with the position of the offending token.

use crate::ast::{BinOp, Func, Literal, Node, NodeKind, TypeOpKind, TypeSpec};
use crate::decimal::Decimal;
use crate::error::{Error, Result};
use crate::lexer::{lex, Tok, Token};
use crate::temporal::Temporal;
use crate::{MAX_NESTING, MAX_TREE_HEIGHT};

pub fn parse(src: &str) -> Result<Node> {
    let tokens = lex(src)?;
    let mut p = Parser {
        tokens,
        i: 0,
        depth: 0,
    };
    let node = p.expression(0)?;
    let t = p.peek();
    if t.tok != Tok::Eof {
        return Err(Error::syntax(
            t.pos,
            format!("unexpected {}", describe(&t.tok)),
        ));
    }
    Ok(node)
}

struct Parser {
    tokens: Vec<Token>,
    i: usize,
    /// Current nesting of sub-expressions, bounded so hostile input cannot exhaust the stack.
    depth: usize,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Eof => "end of expression".into(),
        Tok::Ident(s, _) => format!("'{s}'"),
        Tok::Sym(s) => format!("'{s}'"),
        Tok::Str(s) => format!("string '{s}'"),
        other => format!("{other:?}"),
    }
}

/// The binary operator a token stands for, with its precedence level (higher binds tighter).
fn binary_op(t: &Tok) -> Option<(BinOp, u8)> {
    Some(match t {
        Tok::Ident(s, false) => match s.as_str() {
            "implies" => (BinOp::Implies, 1),
            "or" => (BinOp::Or, 2),
            "xor" => (BinOp::Xor, 2),
            "and" => (BinOp::And, 3),
            "in" => (BinOp::In, 4),
            "contains" => (BinOp::Contains, 4),
            "div" => (BinOp::IntDiv, 10),
            "mod" => (BinOp::Mod, 10),
            _ => return None,
        },
        Tok::Sym(s) => match *s {
            "=" => (BinOp::Eq, 5),
            "!=" => (BinOp::Ne, 5),
            "~" => (BinOp::Equiv, 5),
            "!~" => (BinOp::NotEquiv, 5),
            "<" => (BinOp::Lt, 6),
            ">" => (BinOp::Gt, 6),
            "<=" => (BinOp::Le, 6),
            ">=" => (BinOp::Ge, 6),
            "|" => (BinOp::Union, 7),
            "+" => (BinOp::Add, 9),
            "-" => (BinOp::Sub, 9),
            "&" => (BinOp::Concat, 9),
            "*" => (BinOp::Mul, 10),
            "/" => (BinOp::Div, 10),
            _ => return None,
        },
        _ => return None,
    })
}

/// Precedence of `is` / `as`: between union and additive.
const TYPE_LEVEL: u8 = 8;

const CALENDAR_UNITS: [&str; 16] = [
    "year",
    "years",
    "month",
    "months",
    "week",
    "weeks",
    "day",
    "days",
    "hour",
    "hours",
    "minute",
    "minutes",
    "second",
    "seconds",
    "millisecond",
    "milliseconds",
];

impl Parser {
    fn peek(&self) -> &Token {
        // The token list always ends with Eof and the parser never moves past it.
        &self.tokens[self.i.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.i < self.tokens.len() - 1 {
            self.i += 1;
        }
        t
    }

    fn expect(&mut self, sym: &'static str) -> Result<()> {
        let t = self.next();
        if t.tok == Tok::Sym(sym) {
            Ok(())
        } else {
            Err(Error::syntax(
                t.pos,
                format!("expected '{sym}', found {}", describe(&t.tok)),
            ))
        }
    }

    fn expression(&mut self, min_level: u8) -> Result<Node> {
        let mut lhs = self.unary()?;
        loop {
            let t = self.peek().clone();
            if let Tok::Ident(word, false) = &t.tok {
                if (word == "is" || word == "as") && TYPE_LEVEL >= min_level {
                    self.next();
                    let ty = self.type_specifier()?;
                    let op = if word == "is" {
                        TypeOpKind::Is
                    } else {
                        TypeOpKind::As
                    };
                    lhs = mk(
                        NodeKind::TypeOp {
                            target: Some(Box::new(lhs)),
                            op,
                            ty,
                        },
                        t.pos,
                    )?;
                    continue;
                }
            }
            let Some((op, level)) = binary_op(&t.tok) else {
                break;
            };
            if level < min_level {
                break;
            }
            self.next();
            let rhs = self.expression(level + 1)?;
            lhs = mk(NodeKind::Bin(op, Box::new(lhs), Box::new(rhs)), t.pos)?;
        }
        Ok(lhs)
    }

    fn type_specifier(&mut self) -> Result<TypeSpec> {
        let pos = self.peek().pos;
        let spec = self.type_name()?;
        check_type(&spec, pos)?;
        Ok(spec)
    }

    fn type_name(&mut self) -> Result<TypeSpec> {
        let t = self.next();
        let Tok::Ident(first, _) = t.tok else {
            return Err(Error::syntax(t.pos, "expected a type name"));
        };
        if self.peek().tok == Tok::Sym(".") {
            if let Some(Token {
                tok: Tok::Ident(second, _),
                ..
            }) = self.tokens.get(self.i + 1).cloned()
            {
                self.i += 2;
                return Ok(TypeSpec {
                    namespace: Some(first),
                    name: second,
                });
            }
        }
        Ok(TypeSpec {
            namespace: None,
            name: first,
        })
    }

    fn unary(&mut self) -> Result<Node> {
        self.depth += 1;
        let result = if self.depth > MAX_NESTING {
            Err(Error::syntax(
                self.peek().pos,
                format!("expression nested too deeply (more than {MAX_NESTING} levels)"),
            ))
        } else {
            self.unary_inner()
        };
        self.depth -= 1;
        result
    }

    fn unary_inner(&mut self) -> Result<Node> {
        let t = self.peek().clone();
        match t.tok {
            Tok::Sym("-") => {
                self.next();
                let inner = self.unary()?;
                mk(NodeKind::Neg(Box::new(inner)), t.pos)
            }
            Tok::Sym("+") => {
                self.next();
                self.unary()
            }
            _ => self.postfix(),
        }
    }

    fn postfix(&mut self) -> Result<Node> {
        let mut node = self.term()?;
        loop {
            let t = self.peek().clone();
            match t.tok {
                Tok::Sym(".") => {
                    self.next();
                    let name_tok = self.next();
                    node = match name_tok.tok {
                        Tok::Ident(name, _) => self.invocation(Some(node), name, name_tok.pos)?,
                        Tok::Dollar(_) => {
                            return Err(Error::syntax(
                                name_tok.pos,
                                "unexpected special variable after '.'",
                            ));
                        }
                        other => {
                            return Err(Error::syntax(
                                name_tok.pos,
                                format!("expected a name after '.', found {}", describe(&other)),
                            ))
                        }
                    };
                }
                Tok::Sym("[") => {
                    self.next();
                    let index = self.expression(0)?;
                    self.expect("]")?;
                    node = mk(NodeKind::Index(Box::new(node), Box::new(index)), t.pos)?;
                }
                _ => return Ok(node),
            }
        }
    }

    /// A member name or a function call, applied to `target` (or to the focus).
    fn invocation(&mut self, target: Option<Node>, name: String, pos: usize) -> Result<Node> {
        if self.peek().tok != Tok::Sym("(") {
            let names_type = target.is_none()
                && name.starts_with(|c: char| c.is_ascii_uppercase())
                && flint_fhir::model::r4().get(&name).is_some();
            let kind = if names_type {
                NodeKind::TypeFilter(name)
            } else {
                NodeKind::Member(target.map(Box::new), name)
            };
            return mk(kind, pos);
        }
        self.next();
        let mut args = Vec::new();
        if self.peek().tok != Tok::Sym(")") {
            loop {
                args.push(self.expression(0)?);
                if self.peek().tok == Tok::Sym(",") {
                    self.next();
                    continue;
                }
                break;
            }
        }
        self.expect(")")?;
        let target = target.map(Box::new);
        let type_op = match name.as_str() {
            "is" => Some(TypeOpKind::Is),
            "as" => Some(TypeOpKind::AsFunction),
            "ofType" => Some(TypeOpKind::OfType),
            _ => None,
        };
        if let Some(op) = type_op {
            if args.len() != 1 {
                return Err(Error::semantic(
                    pos,
                    format!("{name}() takes one type argument"),
                ));
            }
            let ty = type_of_arg(&args[0]).ok_or_else(|| {
                Error::semantic(args[0].pos, format!("{name}() expects a type name"))
            })?;
            check_type(&ty, args[0].pos)?;
            return mk(NodeKind::TypeOp { target, op, ty }, pos);
        }
        let (func, min, max) = Func::lookup(&name)
            .ok_or_else(|| Error::semantic(pos, format!("unknown function '{name}'")))?;
        if args.len() < min || args.len() > max {
            return Err(Error::semantic(
                pos,
                format!("wrong number of arguments for {name}(): {}", args.len()),
            ));
        }
        mk(NodeKind::Call { target, func, args }, pos)
    }

    fn term(&mut self) -> Result<Node> {
        let t = self.next();
        let pos = t.pos;
        let lit = |l| mk(NodeKind::Lit(l), pos);
        match t.tok {
            Tok::Sym("(") => {
                let inner = self.expression(0)?;
                self.expect(")")?;
                Ok(inner)
            }
            Tok::Sym("{") => {
                self.expect("}")?;
                mk(NodeKind::Empty, pos)
            }
            Tok::Str(s) => lit(Literal::Str(s)),
            Tok::Number(text) => {
                let unit = match &self.peek().tok {
                    Tok::Str(u) => Some(u.clone()),
                    Tok::Ident(u, false) if CALENDAR_UNITS.contains(&u.as_str()) => Some(u.clone()),
                    _ => None,
                };
                let value =
                    Decimal::parse(&text).ok_or_else(|| Error::syntax(pos, "invalid number"))?;
                if let Some(unit) = unit {
                    self.next();
                    return lit(Literal::Quantity(value, unit));
                }
                if text.contains('.') {
                    lit(Literal::Dec(value))
                } else {
                    match text.parse::<i64>() {
                        Ok(i) if i <= i64::from(i32::MAX) => lit(Literal::Int(i)),
                        _ => Err(Error::syntax(pos, "integer literal out of range")),
                    }
                }
            }
            Tok::Long(text) => text
                .parse()
                .map(Literal::Long)
                .map_err(|_| Error::syntax(pos, "long literal out of range"))
                .and_then(lit),
            Tok::DateTime(text) => match Temporal::parse_date_time(&text) {
                Some((t, false)) => lit(Literal::Date(t)),
                Some((t, true)) => lit(Literal::DateTime(t)),
                None => Err(Error::syntax(
                    pos,
                    format!("invalid date/time literal @{text}"),
                )),
            },
            Tok::Time(text) => match Temporal::parse_time(&text) {
                Some(t) => lit(Literal::Time(t)),
                None => Err(Error::syntax(pos, format!("invalid time literal @T{text}"))),
            },
            Tok::Env(name) => mk(NodeKind::Env(name), pos),
            Tok::Dollar(name) => match name.as_str() {
                "this" => mk(NodeKind::This, pos),
                "index" => mk(NodeKind::IndexVar, pos),
                "total" => mk(NodeKind::Total, pos),
                _ => Err(Error::syntax(
                    pos,
                    format!("unknown special variable ${name}"),
                )),
            },
            Tok::Ident(name, false) if name == "true" => lit(Literal::Bool(true)),
            Tok::Ident(name, false) if name == "false" => lit(Literal::Bool(false)),
            Tok::Ident(name, _) => self.invocation(None, name, pos),
            other => Err(Error::syntax(
                pos,
                format!("unexpected {}", describe(&other)),
            )),
        }
    }
}

/// Reads a type name out of an argument written as an expression (`ofType(FHIR.string)`).
fn type_of_arg(node: &Node) -> Option<TypeSpec> {
    match &node.kind {
        NodeKind::TypeFilter(name) | NodeKind::Member(None, name) => Some(TypeSpec {
            namespace: None,
            name: name.clone(),
        }),
        NodeKind::Member(Some(target), name) => match &target.kind {
            NodeKind::TypeFilter(ns) | NodeKind::Member(None, ns) => Some(TypeSpec {
                namespace: Some(ns.clone()),
                name: name.clone(),
            }),
            _ => None,
        },
        _ => None,
    }
}

const SYSTEM_TYPES: [&str; 9] = [
    "Boolean", "Integer", "Long", "Decimal", "String", "Date", "DateTime", "Time", "Quantity",
];

/// A type name must name a System type or a type of the R4 model.
fn check_type(ty: &TypeSpec, pos: usize) -> Result<()> {
    let known = match ty.namespace.as_deref() {
        // `is(System.Patient)` is legal and false.
        Some("System") => true,
        Some("FHIR") => flint_fhir::model::r4().get(&ty.name).is_some(),
        None => {
            SYSTEM_TYPES.contains(&ty.name.as_str())
                || flint_fhir::model::r4().get(&ty.name).is_some()
        }
        Some(_) => false,
    };
    if known {
        Ok(())
    } else {
        Err(Error::semantic(pos, format!("unknown type '{}'", ty.name)))
    }
}

/// Builds a node, refusing trees too tall to evaluate safely.
fn mk(kind: NodeKind, pos: usize) -> Result<Node> {
    let node = Node::new(kind, pos);
    if node.height > MAX_TREE_HEIGHT {
        return Err(Error::syntax(
            pos,
            format!(
                "expression too long or nested too deeply (a tree taller than {MAX_TREE_HEIGHT})"
            ),
        ));
    }
    Ok(node)
}
