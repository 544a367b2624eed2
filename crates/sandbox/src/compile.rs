//! Shape detection and compilation of user code to QuickJS bytecode.
//!
//! Detection tries the plausible kinds in order — a bare function expression when the
//! code starts like one, an ES module when a line starts with `import`/`export`, and
//! CommonJS always — and keeps the first that both parses and, run once in a
//! throw-away context, yields a handler. When none parses, the syntax error that got
//! furthest into the code is reported (the right kind's parser gets further than a
//! wrong kind's).

use crate::engine::{Engine, RawSyntaxError};
use crate::{CompileError, Limits, Script, Shape};

/// How the code is wrapped and loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A script wrapped in a CommonJS function; its completion value is the wrapper.
    CommonJs,
    /// An ES module.
    Module,
    /// A script that is one parenthesised function expression.
    Expression,
}

impl Kind {
    fn shape(self) -> Shape {
        match self {
            Kind::CommonJs | Kind::Module => Shape::Handler,
            Kind::Expression => Shape::Function,
        }
    }
}

/// Opens the CommonJS wrapper on the user's first line, so line numbers stay the user's.
pub(crate) const CJS_HEAD: &str = "(function (exports, require, module, __filename, __dirname) {";
/// Closes it; a top-level function declared as `handler` is the fallback handler.
pub(crate) const CJS_TAIL: &str =
    "\n;return typeof handler === \"function\" ? handler : undefined;\n})";
const EXPR_HEAD: &str = "(";
const EXPR_TAIL: &str = "\n)";

/// Compiles on the calling thread (which must have a large enough stack).
pub(crate) fn compile(limits: &Limits, name: &str, code: &str) -> Result<Script, CompileError> {
    let plain = |message: String| CompileError {
        line: None,
        column: None,
        message,
    };
    if code.len() > limits.max_code_bytes {
        return Err(plain(format!(
            "the code is {} bytes long, more than the limit of {} bytes",
            code.len(),
            limits.max_code_bytes
        )));
    }
    if let Some(i) = code.find('\0') {
        let line = code[..i].matches('\n').count() as u32 + 1;
        return Err(CompileError {
            line: Some(line),
            column: None,
            message: "the code contains a NUL character".into(),
        });
    }
    let code = normalise(code);
    let user_lines = code.matches('\n').count() as u32 + 1;
    let mut engine = Engine::new(limits).map_err(plain)?;

    let mut syntax_errors: Vec<CompileError> = Vec::new();
    let mut probe_error: Option<CompileError> = None;
    for kind in candidates(&code) {
        let (source, head) = wrap(kind, &code);
        match engine.compile_source(kind, name, &source, true) {
            // Not a syntax error (an import of an unknown module): as good as a probe failure.
            Err(raw) if !raw.syntax => {
                if probe_error.is_none() {
                    probe_error = Some(user_position(raw, head, user_lines));
                }
            }
            Err(raw) => syntax_errors.push(user_position(raw, head, user_lines)),
            Ok(_) if !sealed(&engine, kind, name, &code) => {
                if probe_error.is_none() {
                    probe_error = Some(CompileError {
                        line: None,
                        column: None,
                        message: ESCAPES.into(),
                    });
                }
            }
            Ok(bytecode) => {
                let script = Script {
                    name: name.to_string(),
                    shape: kind.shape(),
                    kind,
                    bytecode,
                };
                match engine.probe(&script) {
                    Ok(()) => return Ok(script),
                    Err(e) => {
                        if probe_error.is_none() {
                            probe_error = Some(e);
                        }
                        if !engine.usable() {
                            engine = Engine::new(limits).map_err(plain)?;
                        }
                    }
                }
            }
        }
    }
    if let Some(e) = probe_error {
        return Err(e);
    }
    // Report the syntax error that got furthest; on a tie, the first candidate's.
    let mut best: Option<CompileError> = None;
    for e in syntax_errors {
        let further = match &best {
            None => true,
            Some(b) => (e.line, e.column) > (b.line, b.column),
        };
        if further {
            best = Some(e);
        }
    }
    Err(best.unwrap_or_else(|| plain("the code does not compile".into())))
}

/// Removes a byte-order mark and neutralises a hashbang line (keeping line numbers).
fn normalise(code: &str) -> String {
    let code = code.strip_prefix('\u{feff}').unwrap_or(code);
    match code.strip_prefix("#!") {
        Some(rest) => format!("//{rest}"),
        None => code.to_string(),
    }
}

fn wrap(kind: Kind, code: &str) -> (String, usize) {
    match kind {
        Kind::Module => (code.to_string(), 0),
        Kind::CommonJs => (format!("{CJS_HEAD}{code}{CJS_TAIL}"), CJS_HEAD.len()),
        Kind::Expression => {
            let trimmed = code.trim_end();
            let trimmed = trimmed.strip_suffix(';').unwrap_or(trimmed);
            (format!("{EXPR_HEAD}{trimmed}{EXPR_TAIL}"), EXPR_HEAD.len())
        }
    }
}

const ESCAPES: &str = "the code closes the function it is wrapped in (an unbalanced `}` or `)` \
at its top level); a handler must be self-contained";

/// Whether the code stays inside its wrapper. Code that closes the wrapper early
/// (`}); let x = 1; (function () {`) would declare bindings in the realm's global
/// scope, shared with later invocations. Such code cannot parse both in the wrapper
/// and in the wrapper with one more level of nesting, which well-formed code does.
fn sealed(engine: &Engine, kind: Kind, name: &str, code: &str) -> bool {
    let nested = match kind {
        Kind::Module => return true,
        Kind::CommonJs => format!("{CJS_HEAD}{{{code}\n}}{CJS_TAIL}"),
        Kind::Expression => {
            let trimmed = code.trim_end();
            let trimmed = trimmed.strip_suffix(';').unwrap_or(trimmed);
            format!("{EXPR_HEAD}({trimmed}\n){EXPR_TAIL}")
        }
    };
    engine.compile_source(kind, name, &nested, true).is_ok()
}

/// Moves a position in the wrapped source back into the user's code.
fn user_position(raw: RawSyntaxError, head: usize, user_lines: u32) -> CompileError {
    let mut line = raw.line;
    let mut column = raw.column;
    if line == Some(1) {
        column = column.map(|c| (c as usize).saturating_sub(head).max(1) as u32);
    }
    if let Some(l) = line {
        if l > user_lines {
            // The error is in the wrapper's tail: the code ended early.
            line = Some(user_lines);
            column = None;
        }
    }
    CompileError {
        line,
        column,
        message: raw.message,
    }
}

/// The kinds worth trying, most specific first.
pub(crate) fn candidates(code: &str) -> Vec<Kind> {
    let mut kinds = Vec::with_capacity(3);
    if looks_like_function_expression(code) {
        kinds.push(Kind::Expression);
    }
    if has_module_syntax(code) {
        kinds.push(Kind::Module);
    }
    kinds.push(Kind::CommonJs);
    kinds
}

/// Skips whitespace and comments at the start.
fn skip_trivia(mut s: &str) -> &str {
    loop {
        let t = s.trim_start();
        if let Some(rest) = t.strip_prefix("//") {
            s = rest.find('\n').map(|i| &rest[i..]).unwrap_or("");
        } else if let Some(rest) = t.strip_prefix("/*") {
            s = rest.find("*/").map(|i| &rest[i + 2..]).unwrap_or("");
        } else {
            return t;
        }
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// Strips `word` when it is a whole word at the start of `s`.
fn keyword<'a>(s: &'a str, word: &str) -> Option<&'a str> {
    let rest = s.strip_prefix(word)?;
    match rest.chars().next() {
        Some(c) if is_ident_char(c) => None,
        _ => Some(rest),
    }
}

fn identifier(s: &str) -> Option<(&str, &str)> {
    let first = s.chars().next()?;
    if !(first.is_alphabetic() || first == '_' || first == '$') {
        return None;
    }
    let end = s.find(|c: char| !is_ident_char(c)).unwrap_or(s.len());
    Some((&s[..end], &s[end..]))
}

/// `function (…)`, `async function …`, `async (…) =>`, `(…) =>`, `x =>`, `async x =>`.
/// A function named `handler` is left to the CommonJS kind (which calls it as a handler).
fn looks_like_function_expression(code: &str) -> bool {
    let s = skip_trivia(code);
    let function_rest = |rest: &str| {
        let rest = skip_trivia(rest);
        let rest = rest.strip_prefix('*').map(skip_trivia).unwrap_or(rest);
        !matches!(identifier(rest), Some(("handler", _)))
    };
    if let Some(rest) = keyword(s, "function") {
        return function_rest(rest);
    }
    if let Some(rest) = keyword(s, "async") {
        let rest = skip_trivia(rest);
        if let Some(rest) = keyword(rest, "function") {
            return function_rest(rest);
        }
        if rest.starts_with('(') {
            return true;
        }
        if let Some((_, after)) = identifier(rest) {
            return skip_trivia(after).starts_with("=>");
        }
        return false;
    }
    if s.starts_with('(') {
        return true;
    }
    if let Some((word, after)) = identifier(s) {
        return !["exports", "module", "var", "let", "const"].contains(&word)
            && skip_trivia(after).starts_with("=>");
    }
    false
}

/// A line that starts with an `import` or `export` declaration.
fn has_module_syntax(code: &str) -> bool {
    code.lines().any(|line| {
        let t = line.trim_start();
        if let Some(rest) = keyword(t, "import") {
            return matches!(
                rest.chars().next(),
                Some(' ' | '\t' | '{' | '*' | '"' | '\'')
            );
        }
        if let Some(rest) = keyword(t, "export") {
            return matches!(rest.chars().next(), Some(' ' | '\t' | '{' | '*'));
        }
        false
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_candidates() {
        use Kind::*;
        assert_eq!(
            candidates("exports.handler = async () => 1"),
            vec![CommonJs]
        );
        assert_eq!(
            candidates("function (r, c) { return r }"),
            vec![Expression, CommonJs]
        );
        assert_eq!(
            candidates("  // hi\n async function(r) {}"),
            vec![Expression, CommonJs]
        );
        assert_eq!(
            candidates("async (r, ctx) => r"),
            vec![Expression, CommonJs]
        );
        assert_eq!(candidates("r => r"), vec![Expression, CommonJs]);
        assert_eq!(candidates("async r => r"), vec![Expression, CommonJs]);
        assert_eq!(candidates("(r) => r"), vec![Expression, CommonJs]);
        assert_eq!(candidates("function handler(m, e) {}"), vec![CommonJs]);
        assert_eq!(
            candidates("async function handler(m, e) {}"),
            vec![CommonJs]
        );
        assert_eq!(
            candidates("import { x } from '@medplum/core';\nexport async function handler() {}"),
            vec![Module, CommonJs]
        );
        assert_eq!(
            candidates("export default async function () {}"),
            vec![Module, CommonJs]
        );
        assert_eq!(candidates("const x = import('y');"), vec![CommonJs]);
        assert_eq!(
            candidates("exports.handler = 1;\nmodule.exports = {}"),
            vec![CommonJs]
        );
    }

    #[test]
    fn positions_move_back_into_user_code() {
        let raw = RawSyntaxError {
            line: Some(1),
            column: Some(CJS_HEAD.len() as u32 + 5),
            message: "x".into(),
            syntax: true,
        };
        let e = user_position(raw, CJS_HEAD.len(), 3);
        assert_eq!((e.line, e.column), (Some(1), Some(5)));
        let raw = RawSyntaxError {
            line: Some(5),
            column: Some(2),
            message: "x".into(),
            syntax: true,
        };
        let e = user_position(raw, CJS_HEAD.len(), 3);
        assert_eq!((e.line, e.column), (Some(3), None));
    }
}
