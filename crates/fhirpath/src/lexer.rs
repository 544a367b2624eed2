//! The FHIRPath lexer: turns expression text into tokens that remember their byte offset, so
//! that every later error can point at the character it is about.

use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// An identifier; `true` when it was written between backticks (never a keyword then).
    Ident(String, bool),
    Str(String),
    /// A number as written (`12`, `1.50`); its type is decided by the parser.
    Number(String),
    /// A long integer literal (`12L`).
    Long(String),
    /// `@2020-01-01T10:00:00Z`, without the `@`.
    DateTime(String),
    /// `@T10:00`, without the `@T`.
    Time(String),
    /// `%name`, `%'name'` or ``%`name` ``.
    Env(String),
    /// `$this`, `$index`, `$total`.
    Dollar(String),
    Sym(&'static str),
    Eof,
}

#[derive(Clone, Debug)]
pub struct Token {
    pub tok: Tok,
    pub pos: usize,
}

const SYMBOLS: [&str; 22] = [
    "<=", ">=", "!=", "!~", "(", ")", "[", "]", "{", "}", ".", ",", "+", "-", "*", "/", "&", "|",
    "=", "~", "<", ">",
];

pub fn lex(src: &str) -> Result<Vec<Token>> {
    let b = src.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let start = i;
            i += 2;
            loop {
                if i + 1 >= b.len() {
                    return Err(Error::syntax(start, "unterminated comment"));
                }
                if b[i] == b'*' && b[i + 1] == b'/' {
                    i += 2;
                    break;
                }
                i += 1;
            }
            continue;
        }
        let pos = i;
        let tok = if c == b'\'' {
            let (s, next) = quoted(src, i, b'\'')?;
            i = next;
            Tok::Str(s)
        } else if c == b'`' {
            let (s, next) = quoted(src, i, b'`')?;
            i = next;
            Tok::Ident(s, true)
        } else if c.is_ascii_digit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if i < b.len()
                && b[i] == b'L'
                && !b.get(i + 1).is_some_and(|c| c.is_ascii_alphanumeric())
            {
                i += 1;
                Tok::Long(src[start..i - 1].to_string())
            } else {
                Tok::Number(src[start..i].to_string())
            }
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            Tok::Ident(src[start..i].to_string(), false)
        } else if c == b'@' {
            i += 1;
            if b.get(i) == Some(&b'T') {
                i += 1;
                let start = i;
                i = scan_time(b, i);
                if i == start {
                    return Err(Error::syntax(pos, "invalid time literal"));
                }
                Tok::Time(src[start..i].to_string())
            } else {
                let start = i;
                i = scan_date_time(b, i);
                if i == start {
                    return Err(Error::syntax(pos, "invalid date literal"));
                }
                Tok::DateTime(src[start..i].to_string())
            }
        } else if c == b'%' {
            i += 1;
            match b.get(i) {
                Some(b'\'') | Some(b'`') => {
                    let (s, next) = quoted(src, i, b[i])?;
                    i = next;
                    Tok::Env(s)
                }
                _ => {
                    let start = i;
                    while i < b.len()
                        && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'-')
                    {
                        i += 1;
                    }
                    if i == start {
                        return Err(Error::syntax(pos, "expected a variable name after %"));
                    }
                    Tok::Env(src[start..i].to_string())
                }
            }
        } else if c == b'$' {
            let start = i + 1;
            i += 1;
            while i < b.len() && b[i].is_ascii_alphanumeric() {
                i += 1;
            }
            Tok::Dollar(src[start..i].to_string())
        } else if let Some(sym) = SYMBOLS.iter().find(|s| src[i..].starts_with(**s)) {
            i += sym.len();
            Tok::Sym(sym)
        } else {
            let ch = src[i..].chars().next().unwrap_or('?');
            return Err(Error::syntax(pos, format!("unexpected character '{ch}'")));
        };
        out.push(Token { tok, pos });
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: src.len(),
    });
    Ok(out)
}

fn digits(b: &[u8], i: usize, n: usize) -> bool {
    b.get(i..i + n)
        .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
}

/// Scans `hh(:mm(:ss(.fff)?)?)?`, returning the index after it.
fn scan_time(b: &[u8], mut i: usize) -> usize {
    if !digits(b, i, 2) {
        return i;
    }
    i += 2;
    if b.get(i) == Some(&b':') && digits(b, i + 1, 2) {
        i += 3;
        if b.get(i) == Some(&b':') && digits(b, i + 1, 2) {
            i += 3;
            if b.get(i) == Some(&b'.') && digits(b, i + 1, 1) {
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
        }
    }
    i
}

/// Scans `YYYY(-MM(-DD)?)?(T time? zone?)?`.
fn scan_date_time(b: &[u8], mut i: usize) -> usize {
    if !digits(b, i, 4) {
        return i;
    }
    i += 4;
    if b.get(i) == Some(&b'-') && digits(b, i + 1, 2) {
        i += 3;
        if b.get(i) == Some(&b'-') && digits(b, i + 1, 2) {
            i += 3;
        }
    }
    if b.get(i) == Some(&b'T') {
        i += 1;
        let after = scan_time(b, i);
        if after > i {
            i = after;
            if b.get(i) == Some(&b'Z') {
                i += 1;
            } else if matches!(b.get(i), Some(b'+') | Some(b'-'))
                && digits(b, i + 1, 2)
                && b.get(i + 3) == Some(&b':')
                && digits(b, i + 4, 2)
            {
                i += 6;
            }
        }
    }
    i
}

/// Reads a quoted string or identifier starting at the opening quote; returns its unescaped
/// text and the index after the closing quote.
fn quoted(src: &str, start: usize, quote: u8) -> Result<(String, usize)> {
    let b = src.as_bytes();
    let mut out = String::new();
    let mut i = start + 1;
    loop {
        let Some(&c) = b.get(i) else {
            return Err(Error::syntax(start, "unterminated string"));
        };
        if c == quote {
            return Ok((out, i + 1));
        }
        if c == b'\\' {
            let Some(&e) = b.get(i + 1) else {
                return Err(Error::syntax(i, "unterminated escape"));
            };
            i += 2;
            match e {
                b'n' => out.push('\n'),
                b't' => out.push('\t'),
                b'r' => out.push('\r'),
                b'f' => out.push('\u{c}'),
                b'\'' | b'"' | b'`' | b'\\' | b'/' => out.push(e as char),
                b'u' => {
                    let hex = src
                        .get(i..i + 4)
                        .ok_or_else(|| Error::syntax(i, "bad \\u escape"))?;
                    let code = u32::from_str_radix(hex, 16)
                        .map_err(|_| Error::syntax(i, "bad \\u escape"))?;
                    out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                    i += 4;
                }
                _ => {
                    return Err(Error::syntax(
                        i - 2,
                        format!("invalid escape \\{}", e as char),
                    ))
                }
            }
            continue;
        }
        // Copy one whole UTF-8 character.
        let ch = src[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8();
    }
}
