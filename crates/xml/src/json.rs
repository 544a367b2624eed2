//! JSON as the writer reads it: the [`Json`] view shared by `serde_json::Value` and by
//! [`Node`], a borrowed tree parsed from JSON text in one pass ([`parse`]) for the fast path
//! that writes XML without building a `Value`.
//!
//! [`parse`] accepts exactly what `serde_json::from_slice::<Value>` accepts with the
//! `preserve_order` and `arbitrary_precision` features, and gives the same value: number text
//! as written except for the exponent, which is spelled as `serde_json` spells it (`1E5` →
//! `1e+5`); strings must be valid Unicode (a lone surrogate escape is an error); a repeated
//! key keeps its first position and its last value; nesting is limited to `serde_json`'s 127
//! arrays and objects; and an object whose first key is `serde_json`'s private number token
//! is the number its string holds, as `serde_json` reads it.

use std::borrow::Cow;

use serde_json::{Map, Value};

/// A JSON value, seen through either representation.
pub(crate) enum View<'v, J: Json> {
    Null,
    Bool(bool),
    /// The number's text (`arbitrary_precision`).
    Number(&'v str),
    String(&'v str),
    Array(&'v [J]),
    Object(&'v J::Object),
}

/// What the writer needs of a JSON value.
pub(crate) trait Json: Sized {
    /// The members of an object.
    type Object: JsonObject<Self> + ?Sized;

    fn view(&self) -> View<'_, Self>;

    fn is_null(&self) -> bool {
        matches!(self.view(), View::Null)
    }
}

/// The members of a JSON object, in their order.
pub(crate) trait JsonObject<J> {
    fn members<'a>(&'a self) -> impl Iterator<Item = (&'a str, &'a J)>
    where
        J: 'a;

    /// The value of `key`.
    fn get(&self, key: &str) -> Option<&J>;
}

impl Json for Value {
    type Object = Map<String, Value>;

    #[inline]
    fn view(&self) -> View<'_, Value> {
        match self {
            Value::Null => View::Null,
            Value::Bool(b) => View::Bool(*b),
            Value::Number(n) => View::Number(n.as_str()),
            Value::String(s) => View::String(s),
            Value::Array(items) => View::Array(items),
            Value::Object(object) => View::Object(object),
        }
    }
}

impl JsonObject<Value> for Map<String, Value> {
    #[inline]
    fn members<'a>(&'a self) -> impl Iterator<Item = (&'a str, &'a Value)>
    where
        Value: 'a,
    {
        self.iter().map(|(k, v)| (k.as_str(), v))
    }

    #[inline]
    fn get(&self, key: &str) -> Option<&Value> {
        Map::get(self, key)
    }
}

/// A JSON value borrowed from the text it was parsed from where it can be.
///
/// The word-sized tag keeps the payload aligned: with a byte tag the compiler moves the
/// payload from an odd offset, which defeats store forwarding and made parsing measurably
/// slower.
#[derive(Debug, PartialEq)]
#[repr(u64)]
pub(crate) enum Node<'a> {
    Null,
    Bool(bool),
    Number(Cow<'a, str>),
    String(Cow<'a, str>),
    Array(Box<[Node<'a>]>),
    Object(Box<[Member<'a>]>),
}

/// A member of an object.
pub(crate) type Member<'a> = (Cow<'a, str>, Node<'a>);

impl<'a> Json for Node<'a> {
    type Object = [Member<'a>];

    #[inline]
    fn view(&self) -> View<'_, Node<'a>> {
        match self {
            Node::Null => View::Null,
            Node::Bool(b) => View::Bool(*b),
            Node::Number(n) => View::Number(n),
            Node::String(s) => View::String(s),
            Node::Array(items) => View::Array(items),
            Node::Object(members) => View::Object(&**members),
        }
    }
}

impl<'a> JsonObject<Node<'a>> for [Member<'a>] {
    #[inline]
    fn members<'m>(&'m self) -> impl Iterator<Item = (&'m str, &'m Node<'a>)>
    where
        Node<'a>: 'm,
    {
        self.iter().map(|(k, v)| (&**k, v))
    }

    #[inline]
    fn get(&self, key: &str) -> Option<&Node<'a>> {
        self.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// Why JSON text is not valid, and where (a byte offset).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SyntaxError {
    pub offset: usize,
    pub message: &'static str,
}

/// `serde_json`'s recursion limit: it refuses the 128th nested array or object.
const DEPTH_LIMIT: usize = 128;

/// The key by which `serde_json` (`arbitrary_precision`) recognises a serialised number.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Objects with more members than this detect repeated keys with a hash map once complete,
/// rather than by comparing each key with those before it.
const LINEAR_DEDUP: usize = 24;

/// Parses JSON text as `serde_json::from_slice::<Value>` would.
pub(crate) fn parse(input: &[u8]) -> Result<Node<'_>, SyntaxError> {
    let text = std::str::from_utf8(input).map_err(|e| SyntaxError {
        offset: e.valid_up_to(),
        message: "invalid UTF-8",
    })?;
    let mut parser = Parser {
        text,
        bytes: input,
        pos: 0,
        depth: 0,
        items: Vec::with_capacity(64),
        keys: Vec::with_capacity(32),
    };
    parser.value()?;
    parser.skip_whitespace();
    if parser.pos < input.len() {
        return Err(parser.error("trailing characters"));
    }
    parser
        .items
        .pop()
        .ok_or_else(|| parser.error("EOF while parsing a value"))
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// The arrays and objects open.
    depth: usize,
    /// The values parsed and not yet in their array or object, innermost last.
    items: Vec<Node<'a>>,
    /// The keys of the objects being parsed, innermost last.
    keys: Vec<Cow<'a, str>>,
}

/// Bytes that end the plain run of a string: the quote, the backslash, control characters.
static STRING_SPECIAL: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = true;
        i += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

impl<'a> Parser<'a> {
    #[cold]
    fn error(&self, message: &'static str) -> SyntaxError {
        SyntaxError {
            offset: self.pos,
            message,
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline]
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// Parses a value and pushes it onto `items`. (Nodes are not returned: moving them
    /// through return values costs more than the parsing.)
    fn value(&mut self) -> Result<(), SyntaxError> {
        self.skip_whitespace();
        let node = match self.peek() {
            None => return Err(self.error("EOF while parsing a value")),
            Some(b'"') => {
                self.pos += 1;
                Node::String(self.string()?)
            }
            Some(b'{') => return self.object(),
            Some(b'[') => return self.array(),
            Some(b'-' | b'0'..=b'9') => Node::Number(self.number()?),
            Some(b't') => {
                self.literal(b"true")?;
                Node::Bool(true)
            }
            Some(b'f') => {
                self.literal(b"false")?;
                Node::Bool(false)
            }
            Some(b'n') => {
                self.literal(b"null")?;
                Node::Null
            }
            Some(_) => return Err(self.error("expected value")),
        };
        self.items.push(node);
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), SyntaxError> {
        if self.bytes.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            return Ok(());
        }
        for &expected in word {
            match self.peek() {
                Some(b) if b == expected => self.pos += 1,
                Some(_) => return Err(self.error("expected ident")),
                None => break,
            }
        }
        Err(self.error("EOF while parsing a value"))
    }

    fn enter(&mut self) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth >= DEPTH_LIMIT {
            return Err(self.error("recursion limit exceeded"));
        }
        self.pos += 1;
        Ok(())
    }

    fn array(&mut self) -> Result<(), SyntaxError> {
        self.enter()?;
        let base = self.items.len();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
        } else {
            loop {
                self.value()?;
                self.skip_whitespace();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b']') => {
                        self.pos += 1;
                        break;
                    }
                    Some(_) => return Err(self.error("expected ',' or ']'")),
                    None => return Err(self.error("EOF while parsing a list")),
                }
            }
        }
        self.depth -= 1;
        let items = self.items.split_off(base).into_boxed_slice();
        self.items.push(Node::Array(items));
        Ok(())
    }

    fn object(&mut self) -> Result<(), SyntaxError> {
        self.enter()?;
        let base = self.items.len();
        let key_base = self.keys.len();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            self.items.push(Node::Object(Box::default()));
            return Ok(());
        }
        let mut first = true;
        loop {
            match self.peek() {
                Some(b'"') => self.pos += 1,
                Some(_) => return Err(self.error("key must be a string")),
                None => return Err(self.error("EOF while parsing an object")),
            }
            let key = self.string()?;
            self.skip_whitespace();
            match self.peek() {
                Some(b':') => self.pos += 1,
                Some(_) => return Err(self.error("expected ':'")),
                None => return Err(self.error("EOF while parsing an object")),
            }
            if first && key == NUMBER_TOKEN {
                return self.number_object();
            }
            first = false;
            self.value()?;
            self.insert(key_base, base, key);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_whitespace();
                }
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                Some(_) => return Err(self.error("expected ',' or '}'")),
                None => return Err(self.error("EOF while parsing an object")),
            }
        }
        self.depth -= 1;
        let mut members: Vec<Member<'a>> = self
            .keys
            .drain(key_base..)
            .zip(self.items.drain(base..))
            .collect();
        if members.len() > LINEAR_DEDUP {
            dedup(&mut members);
        }
        self.items.push(Node::Object(members.into_boxed_slice()));
        Ok(())
    }

    /// Adds the key of the value just pushed to the object whose keys start at `key_base`
    /// and values at `base`: a key already there keeps its place and takes the new value, as
    /// in `serde_json`'s ordered map. Large objects are deduplicated once they are complete.
    fn insert(&mut self, key_base: usize, base: usize, key: Cow<'a, str>) {
        let keys = &self.keys[key_base..];
        if keys.len() < LINEAR_DEDUP {
            if let Some(i) = keys.iter().position(|k| *k == key) {
                if let Some(value) = self.items.pop() {
                    self.items[base + i] = value;
                }
                return;
            }
        }
        self.keys.push(key);
    }

    /// `{"$serde_json::private::Number": "1.5"}`, which `serde_json` reads as the number
    /// `1.5`: the value must be a string holding exactly a JSON number, and the only member.
    fn number_object(&mut self) -> Result<(), SyntaxError> {
        self.skip_whitespace();
        let start = self.pos;
        self.value()?;
        let Some(Node::String(text)) = self.items.pop() else {
            self.pos = start;
            return Err(self.error("invalid type: expected a string containing a number"));
        };
        let mut inner = Parser {
            text: &text,
            bytes: text.as_bytes(),
            pos: 0,
            depth: 0,
            items: Vec::new(),
            keys: Vec::new(),
        };
        let number = match inner.peek() {
            Some(b'-' | b'0'..=b'9') => match inner.number() {
                Ok(n) if inner.pos == inner.bytes.len() => Some(n.into_owned()),
                _ => None,
            },
            _ => None,
        };
        let Some(number) = number else {
            return Err(self.error("invalid number"));
        };
        self.skip_whitespace();
        match self.peek() {
            Some(b'}') => self.pos += 1,
            Some(b',') => return Err(self.error("trailing comma")),
            Some(_) => return Err(self.error("trailing characters")),
            None => return Err(self.error("EOF while parsing an object")),
        }
        self.depth -= 1;
        self.items.push(Node::Number(Cow::Owned(number)));
        Ok(())
    }

    /// Moves to the next byte that ends a plain run of string: `"`, `\` or a control
    /// character (or to the end), eight bytes at a time, and 32 at a time in long strings.
    #[inline]
    fn skip_plain(&mut self) {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        let mut words = rest.chunks_exact(8);
        // Short strings (most of FHIR) end in the first word or two.
        for _ in 0..2 {
            let Some(chunk) = words.next() else { break };
            let found = special(chunk);
            if found != 0 {
                self.pos += (found.trailing_zeros() / 8) as usize;
                return;
            }
            self.pos += 8;
        }
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        let mut blocks = rest.chunks_exact(32);
        for block in blocks.by_ref() {
            let (a, b) = block.split_at(16);
            let (a0, a1) = a.split_at(8);
            let (b0, b1) = b.split_at(8);
            if special(a0) | special(a1) | special(b0) | special(b1) == 0 {
                self.pos += 32;
                continue;
            }
            for chunk in [a0, a1, b0, b1] {
                let found = special(chunk);
                if found != 0 {
                    self.pos += (found.trailing_zeros() / 8) as usize;
                    return;
                }
                self.pos += 8;
            }
        }
        for &b in blocks.remainder() {
            if STRING_SPECIAL[b as usize] {
                return;
            }
            self.pos += 1;
        }
    }

    /// The rest of a string, after its opening quote.
    #[inline(always)]
    fn string(&mut self) -> Result<Cow<'a, str>, SyntaxError> {
        let start = self.pos;
        self.skip_plain();
        match self.peek() {
            Some(b'"') => {
                let text = &self.text[start..self.pos];
                self.pos += 1;
                Ok(Cow::Borrowed(text))
            }
            Some(b'\\') => self.escaped_string(start).map(Cow::Owned),
            Some(_) => Err(self.control_character()),
            None => Err(self.error("EOF while parsing a string")),
        }
    }

    #[cold]
    fn control_character(&self) -> SyntaxError {
        self.error("control character (\\u0000-\\u001F) found while parsing a string")
    }

    /// The rest of a string from `start`, at its first backslash.
    fn escaped_string(&mut self, start: usize) -> Result<String, SyntaxError> {
        let mut out = String::with_capacity(self.pos - start + 16);
        let mut run = start;
        loop {
            self.skip_plain();
            let Some(&b) = self.bytes.get(self.pos) else {
                return Err(self.error("EOF while parsing a string"));
            };
            out.push_str(&self.text[run..self.pos]);
            match b {
                b'"' => {
                    self.pos += 1;
                    return Ok(out);
                }
                b'\\' => {
                    self.pos += 1;
                    self.escape(&mut out)?;
                    run = self.pos;
                }
                _ => return Err(self.control_character()),
            }
        }
    }

    /// An escape, after its backslash.
    fn escape(&mut self, out: &mut String) -> Result<(), SyntaxError> {
        let Some(b) = self.peek() else {
            return Err(self.error("EOF while parsing a string"));
        };
        self.pos += 1;
        let c = match b {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => self.unicode_escape()?,
            _ => {
                self.pos -= 1;
                return Err(self.error("invalid escape"));
            }
        };
        out.push(c);
        Ok(())
    }

    /// A `\u` escape after the `u`, with the low surrogate's escape that must follow a high
    /// one.
    fn unicode_escape(&mut self) -> Result<char, SyntaxError> {
        let n = self.hex4()?;
        let code = match n {
            0xDC00..=0xDFFF => return Err(self.error("lone leading surrogate in hex escape")),
            0xD800..=0xDBFF => {
                if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                    return Err(if self.pos + 2 > self.bytes.len() {
                        self.error("EOF while parsing a string")
                    } else {
                        self.error("unexpected end of hex escape")
                    });
                }
                self.pos += 2;
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(self.error("lone leading surrogate in hex escape"));
                }
                0x1_0000 + ((u32::from(n) - 0xD800) << 10 | (u32::from(low) - 0xDC00))
            }
            _ => u32::from(n),
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid unicode code point"))
    }

    fn hex4(&mut self) -> Result<u16, SyntaxError> {
        let mut n: u16 = 0;
        for _ in 0..4 {
            let Some(b) = self.peek() else {
                return Err(self.error("EOF while parsing a string"));
            };
            let digit = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                b'A'..=b'F' => b - b'A' + 10,
                _ => return Err(self.error("invalid escape")),
            };
            n = n << 4 | u16::from(digit);
            self.pos += 1;
        }
        Ok(n)
    }

    /// A number, at its first character (`-` or a digit): its text as written, but for an
    /// exponent, which `serde_json` spells `e` with a sign (`1E5` → `1e+5`).
    fn number(&mut self) -> Result<Cow<'a, str>, SyntaxError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(self.error("invalid number"));
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            Some(_) => return Err(self.error("invalid number")),
            None => return Err(self.error("EOF while parsing a value")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            match self.peek() {
                Some(b'0'..=b'9') => self.digits(),
                Some(_) => return Err(self.error("invalid number")),
                None => return Err(self.error("EOF while parsing a value")),
            }
        }
        if let Some(e @ (b'e' | b'E')) = self.peek() {
            let mantissa_end = self.pos;
            self.pos += 1;
            let sign = match self.peek() {
                Some(s @ (b'+' | b'-')) => {
                    self.pos += 1;
                    Some(s)
                }
                _ => None,
            };
            let digits_start = self.pos;
            match self.peek() {
                Some(b'0'..=b'9') => self.digits(),
                Some(_) => return Err(self.error("invalid number")),
                None => return Err(self.error("EOF while parsing a value")),
            }
            if e == b'E' || sign.is_none() {
                let mut text = String::with_capacity(self.pos - start + 1);
                text.push_str(&self.text[start..mantissa_end]);
                text.push('e');
                text.push(if sign == Some(b'-') { '-' } else { '+' });
                text.push_str(&self.text[digits_start..self.pos]);
                return Ok(Cow::Owned(text));
            }
        }
        Ok(Cow::Borrowed(&self.text[start..self.pos]))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }
}

/// The high bit of each byte of an eight-byte `chunk` that is `"`, `\` or below 0x20 (and
/// perhaps of bytes after it: the lowest bit set is exact), or 0 if there is none.
#[inline(always)]
fn special(chunk: &[u8]) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    let mut bytes = [0; 8];
    bytes.copy_from_slice(chunk);
    let word = u64::from_le_bytes(bytes);
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    // A byte's high bit is set where it is below 0x20, or (after the xor) zero, and below
    // 0x80 (`!word`); a borrow only sets bits above the first such byte.
    (word.wrapping_sub(ONES * 0x20) | quote.wrapping_sub(ONES) | backslash.wrapping_sub(ONES))
        & !word
        & HIGH
}

/// Removes repeated keys from the members of an object, each keeping the place of its first
/// occurrence and the value of its last.
fn dedup(members: &mut Vec<Member<'_>>) {
    let mut first: std::collections::HashMap<&str, usize> =
        std::collections::HashMap::with_capacity(members.len());
    let mut moves = Vec::new();
    for (i, (key, _)) in members.iter().enumerate() {
        match first.get(&**key) {
            Some(&at) => moves.push((at, i)),
            None => {
                first.insert(key, i);
            }
        }
    }
    drop(first);
    if moves.is_empty() {
        return;
    }
    let mut keep = vec![true; members.len()];
    for (at, i) in moves {
        let value = std::mem::replace(&mut members[i].1, Node::Null);
        members[at].1 = value;
        keep[i] = false;
    }
    let mut keep = keep.into_iter();
    members.retain(|_| keep.next().unwrap_or(true));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the node is the value, member order and number text included.
    fn same(node: &Node<'_>, value: &Value) -> bool {
        match (node, value) {
            (Node::Null, Value::Null) => true,
            (Node::Bool(a), Value::Bool(b)) => a == b,
            (Node::Number(a), Value::Number(b)) => **a == *b.as_str(),
            (Node::String(a), Value::String(b)) => **a == **b,
            (Node::Array(a), Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same(a, b))
            }
            (Node::Object(a), Value::Object(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|((ka, va), (kb, vb))| **ka == **kb && same(va, vb))
            }
            _ => false,
        }
    }

    /// Parses `input` both ways and checks that they agree: both fail, or both give the same
    /// value, member order and number text included.
    fn agrees(input: &[u8]) -> bool {
        let ours = parse(input);
        let theirs = serde_json::from_slice::<Value>(input);
        match (&ours, &theirs) {
            (Ok(node), Ok(value)) => {
                assert!(
                    same(node, value),
                    "{}: ours {node:?}, serde_json {value:?}",
                    String::from_utf8_lossy(input)
                );
                true
            }
            (Err(_), Err(_)) => false,
            _ => panic!(
                "{}: ours {ours:?}, serde_json {theirs:?}",
                String::from_utf8_lossy(input)
            ),
        }
    }

    #[test]
    fn accepts_what_serde_json_accepts() {
        let valid: &[&str] = &[
            "null",
            " true ",
            "\t\r\nfalse\n",
            "0",
            "-0",
            "-0.0",
            "1.0",
            "1.50",
            "123456789012345678901234567890",
            "-9223372036854775809",
            "18446744073709551616",
            "1e5",
            "1E5",
            "1e+5",
            "1E-5",
            "1.0E+05",
            "-1.5e-0",
            "1e999999",
            r#""""#,
            r#""a\"b\\c\/d\be\ff\ng\rh\ti""#,
            r#""\u0000\u001f\u00e9\uFFFF\uD83D\uDE00""#,
            r#""é€😀""#,
            "\"\u{7f}\"",
            "[]",
            "[ ]",
            "[1,[2,[3]],{}]",
            "{}",
            "{ }",
            r#"{"a":1,"b":[true,null],"c":{"d":"e"}}"#,
            r#"{"a":1,"b":2,"a":3}"#,
            r#"{"a":1,"b":2,"a":{"x":1},"b":null,"c":0}"#,
            r#"{"\u0061":1,"a":2}"#,
            r#"{"$serde_json::private::Number":"1.5"}"#,
            r#"{"$serde_json::private::Number":"1E5"}"#,
            r#"{"$serde_json::private::Number" : "-0" }"#,
            r#"{"$serde_json::private::Numb\u0065r":"2"}"#,
            r#"{"a":1,"$serde_json::private::Number":"2"}"#,
            r#"[{"$serde_json::private::Number":"7"}]"#,
        ];
        for text in valid {
            assert!(agrees(text.as_bytes()), "{text} is valid");
        }
        let many: String = (0..100)
            .map(|i| format!("\"k{}\":{i}", i % 37))
            .collect::<Vec<_>>()
            .join(",");
        assert!(agrees(format!("{{{many}}}").as_bytes()));
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        let invalid: &[&[u8]] = &[
            b"",
            b" ",
            b"nul",
            b"nulll",
            b"True",
            b"01",
            b"-01",
            b"-",
            b"+1",
            b".5",
            b"1.",
            b"1.e5",
            b"1e",
            b"1e+",
            b"1E-x",
            b"0x10",
            b"NaN",
            b"Infinity",
            b"\"abc",
            b"\"a\\",
            b"\"\\x\"",
            b"\"\\u12\"",
            b"\"\\u12G4\"",
            b"\"\\uD800\"",
            b"\"\\uD800x\"",
            b"\"\\uD800\\n\"",
            b"\"\\uD800\\uD800\"",
            b"\"\\uDC00\"",
            b"\"\\uD83D\\u0041\"",
            b"\"a\nb\"",
            b"\"\x01\"",
            b"\"\xff\"",
            b"\"\xc3\"",
            b"\xef\xbb\xbf{}",
            b"[",
            b"[1",
            b"[1,",
            b"[1,]",
            b"[,1]",
            b"[1 2]",
            b"{",
            b"{\"a\"",
            b"{\"a\":",
            b"{\"a\":1",
            b"{\"a\":1,}",
            b"{\"a\" 1}",
            b"{a:1}",
            b"{\"a\":1 \"b\":2}",
            b"{1:2}",
            b"{} x",
            b"{}{}",
            b"[] ]",
            b"\"a\" \x00",
            br#"{"$serde_json::private::Number":1}"#,
            br#"{"$serde_json::private::Number":"x"}"#,
            br#"{"$serde_json::private::Number":" 1"}"#,
            br#"{"$serde_json::private::Number":"1 "}"#,
            br#"{"$serde_json::private::Number":"01"}"#,
            br#"{"$serde_json::private::Number":"1","a":2}"#,
            br#"{"$serde_json::private::Number":"1",}"#,
        ];
        for text in invalid {
            assert!(
                !agrees(text),
                "{} is invalid",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn strings_end_and_escape_wherever_they_fall_in_a_word() {
        for length in 0..80 {
            let plain = "aé€😀\u{7f}"
                .chars()
                .cycle()
                .take(length)
                .collect::<String>();
            for (at, special) in [(length / 2, "\\n"), (length, "\u{1}"), (length / 3, "\\\"")] {
                let cut = plain.char_indices().nth(at).map_or(plain.len(), |(i, _)| i);
                let text = format!(
                    "[\"{}{special}{}\", \"{plain}\"]",
                    &plain[..cut],
                    &plain[cut..]
                );
                agrees(text.as_bytes());
            }
            assert!(agrees(format!("\"{plain}\"").as_bytes()));
            assert!(!agrees(format!("\"{plain}").as_bytes()));
        }
    }

    #[test]
    fn nesting_stops_where_serde_json_stops() {
        for depth in [126, 127, 128, 129, 1000, 100_000] {
            let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
            let mixed = format!(
                "{}0{}",
                "[{\"a\":".repeat(depth / 2),
                "}]".repeat(depth / 2)
            );
            for text in [arrays, objects, mixed] {
                let accepted = agrees(text.as_bytes());
                assert_eq!(accepted, depth < 128, "{depth}");
            }
        }
        // An unclosed deep prefix fails on depth, not on the stack.
        assert!(!agrees("[".repeat(1_000_000).as_bytes()));
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let Ok(Node::Object(members)) = parse(br#"{"a":"b","c\n":"d\u0065","e":1.50,"f":1E2}"#)
        else {
            panic!("an object");
        };
        assert!(matches!(members[0].0, Cow::Borrowed("a")));
        assert!(matches!(members[0].1, Node::String(Cow::Borrowed("b"))));
        assert!(matches!(&members[1].0, Cow::Owned(k) if k == "c\n"));
        assert!(matches!(&members[1].1, Node::String(Cow::Owned(s)) if s == "de"));
        assert!(matches!(members[2].1, Node::Number(Cow::Borrowed("1.50"))));
        assert!(matches!(&members[3].1, Node::Number(Cow::Owned(n)) if n == "1e+2"));
    }

    #[test]
    fn errors_say_where() {
        let error = parse(b"{\"a\": tru}").unwrap_err();
        assert_eq!(error.offset, 9);
        let error = parse(b"[\"\xff\"]").unwrap_err();
        assert_eq!((error.offset, error.message), (2, "invalid UTF-8"));
    }
}
