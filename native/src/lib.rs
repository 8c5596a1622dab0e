//! The native payload reader: one call decodes a token's payload segment, parses it, and hands
//! back the members the claim rules read and the parts of the `Principal` (the role and scope
//! sets, the client-role mapping), each one shared object for what tokens repeat.
//!
//! It only ever accepts what the pure path accepts, and reads it the same way; anything else it
//! declines (returns None) and the pure path reads the segment and gives the verdict. So it
//! declines more than it needs to: escapes in what it reads, integers beyond 18 digits, nulls,
//! deep nesting, scopes with non-ASCII names. tests/test_native_payload.py holds it to that.
use ahash::AHashMap;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFrozenSet, PyList, PyString, PyTuple};
use std::cell::RefCell;

/// jiter refuses beyond its own depth limit; declining well before it keeps the two apart.
const MAX_DEPTH: u32 = 32;
/// The bound on each table of sets and mappings: crafted tokens cannot grow one without end.
const TABLE_LIMIT: usize = 1024;
/// Longer strings are rarely repeated (jiter's string cache stops at 64 bytes too).
const INTERNED_MAX_LEN: usize = 64;
/// Larger objects are declined (the pure path reads them): it bounds the names kept.
const MAX_MEMBERS: usize = 64;
/// Beyond 18 digits an integer may not fit in 64 bits: the pure path reads it.
const MAX_INTEGER_DIGITS: usize = 18;
/// Near the largest float, two parsers may round to different sides of infinity.
const MAX_MAGNITUDE: f64 = 1e308;

/// The string members the claim rules read, in the order of `STRING_NAMES`.
const STRING_NAMES: [&str; 8] = [
    "iss",
    "typ",
    "azp",
    "client_id",
    "clientId",
    "sub",
    "jti",
    "preferred_username",
];
const TIME_NAMES: [&str; 3] = ["exp", "nbf", "iat"];
const AUD: usize = STRING_NAMES.len() + TIME_NAMES.len();
const CNF: usize = AUD + 1;

const fn decoding_table() -> [u8; 256] {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut table = [0xFFu8; 256];
    let mut index = 0;
    while index < 64 {
        table[alphabet[index] as usize] = index as u8;
        index += 1;
    }
    table
}

static BASE64URL: [u8; 256] = decoding_table();

const fn string_stops() -> [bool; 256] {
    let mut stops = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        stops[byte] = true;
        byte += 1;
    }
    stops[b'"' as usize] = true;
    stops[b'\\' as usize] = true;
    stops
}

/// The bytes that end a run of plain string contents: the quote, an escape, a control byte.
static STRING_STOPS: [bool; 256] = string_stops();

/// Decode a canonical, unpadded base64url segment into ``out`` (the rule
/// `_jose.b64url_decode` applies); false for any other.
fn b64url_decode(segment: &[u8], out: &mut Vec<u8>) -> bool {
    let remainder = segment.len() % 4;
    if remainder == 1 {
        return false;
    }
    let whole = segment.len() - remainder;
    out.clear();
    out.resize(whole / 4 * 3 + remainder.saturating_sub(1), 0);
    // Every valid sextet is below 64: one test at the end finds any byte outside the alphabet.
    let mut seen = 0u8;
    let sextet = |byte: u8, seen: &mut u8| -> u32 {
        let value = BASE64URL[byte as usize];
        *seen |= value;
        value as u32
    };
    for (chunk, bytes) in segment[..whole]
        .chunks_exact(4)
        .zip(out.chunks_exact_mut(3))
    {
        let bits = sextet(chunk[0], &mut seen) << 18
            | sextet(chunk[1], &mut seen) << 12
            | sextet(chunk[2], &mut seen) << 6
            | sextet(chunk[3], &mut seen);
        bytes.copy_from_slice(&[(bits >> 16) as u8, (bits >> 8) as u8, bits as u8]);
    }
    let tail = &segment[whole..];
    let written = whole / 4 * 3;
    // The bits a canonical encoder leaves zero in the last sextet.
    let mut canonical = true;
    if remainder == 2 {
        let (first, last) = (sextet(tail[0], &mut seen), sextet(tail[1], &mut seen));
        canonical = last & 0x0F == 0;
        out[written] = (first << 2 | last >> 4) as u8;
    } else if remainder == 3 {
        let first = sextet(tail[0], &mut seen);
        let second = sextet(tail[1], &mut seen);
        let last = sextet(tail[2], &mut seen);
        canonical = last & 0x03 == 0;
        let bits = first << 18 | second << 12 | last << 6;
        out[written..].copy_from_slice(&[(bits >> 16) as u8, (bits >> 8) as u8]);
    }
    seen < 64 && canonical
}

enum Audience<'a> {
    One(&'a str),
    /// The raw text of an array of plain strings.
    Many(&'a [u8]),
}

/// What the reader takes from a payload; None where the member is absent. The roles and the
/// scope stay raw text, checked: what tokens repeat is found by its text, without reading it
/// again.
#[derive(Default)]
struct Members<'a> {
    strings: [Option<&'a str>; STRING_NAMES.len()],
    times: [Option<i64>; 3],
    aud: Option<Audience<'a>>,
    cnf: Option<Vec<(&'a str, &'a str)>>,
    realm_access: Option<&'a [u8]>,
    resource_access: Option<&'a [u8]>,
    scope: Option<&'a str>,
}

/// The member names of one object so far: a repeated one is refused. Objects with more
/// members than it holds are declined.
struct Names<'a> {
    seen: [&'a [u8]; MAX_MEMBERS],
    count: usize,
    // One bit per name's hash: most names are new, and only a set bit calls for a comparison.
    hashes: u64,
}

impl<'a> Default for Names<'a> {
    fn default() -> Self {
        Names {
            seen: [&[]; MAX_MEMBERS],
            count: 0,
            hashes: 0,
        }
    }
}

impl<'a> Names<'a> {
    fn insert(&mut self, name: &'a [u8]) -> Option<()> {
        let hash = name.iter().fold(name.len() as u32, |hash, &byte| {
            hash.wrapping_mul(31) ^ byte as u32
        });
        let bit = 1u64 << (hash.wrapping_mul(0x9E37_79B9) >> 26);
        if self.hashes & bit != 0 && self.seen[..self.count].contains(&name) {
            return None;
        }
        if self.count == MAX_MEMBERS {
            return None;
        }
        self.hashes |= bit;
        self.seen[self.count] = name;
        self.count += 1;
        Some(())
    }
}

/// A strict JSON reader over UTF-8 already checked. Every method returns None to decline.
struct Cursor<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// A string's raw contents and whether they hold an escape; the cursor is on its quote.
    /// A ``\u`` escape is declined: what a lone surrogate means is the pure path's to say.
    fn raw_string(&mut self) -> Option<(&'a [u8], bool)> {
        self.expect(b'"')?;
        let start = self.at;
        let mut escaped = false;
        loop {
            let rest = &self.text[self.at..];
            self.at += rest.iter().position(|&byte| STRING_STOPS[byte as usize])?;
            match self.text[self.at] {
                b'"' => break,
                b'\\' => {
                    let escape = *self.text.get(self.at + 1)?;
                    if !matches!(
                        escape,
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't'
                    ) {
                        return None;
                    }
                    escaped = true;
                    self.at += 2;
                }
                _ => return None, // a control character, which JSON only allows escaped
            }
        }
        let raw = &self.text[start..self.at];
        self.at += 1;
        Some((raw, escaped))
    }

    /// A string without escapes, as it reads: its raw bytes are then its value.
    fn plain_string(&mut self) -> Option<&'a str> {
        match self.raw_string()? {
            (_, true) => None,
            // SAFETY: read_members checked that the whole text is UTF-8, and a string's
            // quotes are ASCII, so the bytes between them are UTF-8 too.
            (raw, false) => Some(unsafe { std::str::from_utf8_unchecked(raw) }),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        self.at - start
    }

    /// A number in JSON's grammar: Some(value) for an integer, None inside for any other.
    fn number(&mut self) -> Option<Option<i64>> {
        let start = self.at;
        let negative = self.peek()? == b'-';
        self.at += negative as usize;
        let integer_digits = match self.peek()? {
            b'0' => {
                self.at += 1;
                1
            }
            b'1'..=b'9' => self.digits(),
            _ => return None,
        };
        let mut integral = true;
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return None;
            }
            integral = false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return None;
            }
            integral = false;
        }
        let text = std::str::from_utf8(&self.text[start..self.at]).ok()?;
        if integral {
            if integer_digits > MAX_INTEGER_DIGITS {
                return None;
            }
            return Some(Some(text.parse().ok()?));
        }
        let value: f64 = text.parse().ok()?;
        (value.abs() <= MAX_MAGNITUDE).then_some(None)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.text.get(self.at..end)? == word).then(|| self.at = end)
    }

    fn skip_value(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(depth + 1, |cursor, _| cursor.skip_value(depth + 1)),
            b'[' => self.array(depth + 1, |cursor| cursor.skip_value(depth + 1)),
            b'"' => self.raw_string().map(drop),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number().map(drop),
        }
    }

    /// An object whose member names are distinct and without escapes; ``member`` reads each
    /// value, the cursor on it.
    fn object(
        &mut self,
        depth: u32,
        mut member: impl FnMut(&mut Self, &'a [u8]) -> Option<()>,
    ) -> Option<()> {
        let mut names = Names::default();
        self.delimited(depth, b'{', b'}', |cursor| {
            let name = cursor.plain_string()?.as_bytes();
            names.insert(name)?;
            cursor.skip_whitespace();
            cursor.expect(b':')?;
            cursor.skip_whitespace();
            member(cursor, name)
        })
    }

    fn array(&mut self, depth: u32, item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.delimited(depth, b'[', b']', item)
    }

    /// Comma-separated items between ``open`` and ``close``; ``item`` reads each, the cursor on
    /// it.
    fn delimited(
        &mut self,
        depth: u32,
        open: u8,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.expect(open)?;
        self.skip_whitespace();
        if self.peek()? == close {
            self.at += 1;
            return Some(());
        }
        loop {
            item(self)?;
            self.skip_whitespace();
            match self.peek()? {
                b',' => {
                    self.at += 1;
                    self.skip_whitespace();
                }
                byte if byte == close => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// The raw text of the value that ``read`` reads.
    fn spanned(&mut self, read: impl FnOnce(&mut Self) -> Option<()>) -> Option<&'a [u8]> {
        let start = self.at;
        read(self)?;
        Some(&self.text[start..self.at])
    }

    /// An array of plain strings, each handed to ``each``.
    fn strings(&mut self, depth: u32, mut each: impl FnMut(&'a str)) -> Option<()> {
        self.array(depth, |cursor| {
            each(cursor.plain_string()?);
            Some(())
        })
    }

    /// ``realm_access`` or one client's entry in ``resource_access``: each of its ``roles``.
    fn access(&mut self, depth: u32, mut each: impl FnMut(&'a str)) -> Option<()> {
        self.object(depth, |cursor, name| {
            if name == b"roles" {
                cursor.strings(depth + 1, &mut each)
            } else {
                cursor.skip_value(depth)
            }
        })
    }

    /// ``resource_access``: each client's name and its access, the cursor on it.
    fn clients(&mut self, mut each: impl FnMut(&'a str, &mut Self) -> Option<()>) -> Option<()> {
        self.object(2, |cursor, name| {
            // A name is a plain string, so it is UTF-8 as well.
            each(std::str::from_utf8(name).ok()?, cursor)
        })
    }

    fn audience(&mut self) -> Option<Audience<'a>> {
        if self.peek()? == b'[' {
            return self
                .spanned(|cursor| cursor.strings(2, drop))
                .map(Audience::Many);
        }
        self.plain_string().map(Audience::One)
    }

    fn string_members(&mut self, depth: u32) -> Option<Vec<(&'a str, &'a str)>> {
        let mut found = Vec::new();
        self.object(depth, |cursor, name| {
            found.push((std::str::from_utf8(name).ok()?, cursor.plain_string()?));
            Some(())
        })?;
        Some(found)
    }

    fn member(&mut self, members: &mut Members<'a>, name: &[u8]) -> Option<()> {
        match slot(name) {
            Slot::Text(index) => members.strings[index] = Some(self.plain_string()?),
            Slot::Time(index) => members.times[index] = Some(self.number()??),
            Slot::Audience => members.aud = Some(self.audience()?),
            Slot::Confirmation => members.cnf = Some(self.string_members(2)?),
            Slot::RealmAccess => {
                members.realm_access = Some(self.spanned(|cursor| cursor.access(2, drop))?);
            }
            Slot::ResourceAccess => {
                let check = |_: &str, cursor: &mut Self| cursor.access(3, drop);
                members.resource_access = Some(self.spanned(|cursor| cursor.clients(check))?);
            }
            Slot::Scope => {
                let scope = self.plain_string()?;
                // Python splits on Unicode whitespace; in a plain ASCII string, that is
                // the space alone.
                if !scope.is_ascii() {
                    return None;
                }
                members.scope = Some(scope);
            }
            Slot::Other => self.skip_value(1)?,
        }
        Some(())
    }
}

enum Slot {
    Text(usize),
    Time(usize),
    Audience,
    Confirmation,
    RealmAccess,
    ResourceAccess,
    Scope,
    Other,
}

/// Where a payload member goes; the indexes are those of STRING_NAMES and TIME_NAMES.
fn slot(name: &[u8]) -> Slot {
    match name {
        b"iss" => Slot::Text(0),
        b"typ" => Slot::Text(1),
        b"azp" => Slot::Text(2),
        b"client_id" => Slot::Text(3),
        b"clientId" => Slot::Text(4),
        b"sub" => Slot::Text(5),
        b"jti" => Slot::Text(6),
        b"preferred_username" => Slot::Text(7),
        b"exp" => Slot::Time(0),
        b"nbf" => Slot::Time(1),
        b"iat" => Slot::Time(2),
        b"aud" => Slot::Audience,
        b"cnf" => Slot::Confirmation,
        b"realm_access" => Slot::RealmAccess,
        b"resource_access" => Slot::ResourceAccess,
        b"scope" => Slot::Scope,
        _ => Slot::Other,
    }
}

fn read_members(text: &[u8]) -> Option<Members<'_>> {
    std::str::from_utf8(text).ok()?;
    let mut cursor = Cursor { text, at: 0 };
    let mut members = Members::default();
    cursor.skip_whitespace();
    cursor.object(1, |cursor, name| cursor.member(&mut members, name))?;
    cursor.skip_whitespace();
    (cursor.at == text.len()).then_some(members)
}

/// The strings the reader keeps one Python object for: a direct-mapped table, so a flood of
/// distinct strings replaces entries instead of growing it.
const STRING_SLOTS: usize = 1024;
/// Which of STRING_NAMES are worth keeping one object for: not ``jti``, unique to its token.
const SHARED_STRINGS: [bool; STRING_NAMES.len()] =
    [true, true, true, true, true, true, false, true];

fn slot_of(text: &str) -> usize {
    // FNV-1a: a collision only costs a new object.
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ byte as u64).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash as usize) & (STRING_SLOTS - 1)
}

/// A table of one Python object per raw text, emptied when full.
struct Shared<V> {
    table: AHashMap<Box<[u8]>, V>,
}

impl<V> Shared<V> {
    fn new() -> Self {
        Shared {
            table: AHashMap::new(),
        }
    }

    fn get(&self, key: &[u8]) -> Option<&V> {
        self.table.get(key)
    }

    fn keep(&mut self, key: &[u8], value: V) {
        if self.table.len() >= TABLE_LIMIT {
            self.table.clear();
        }
        self.table.insert(key.into(), value);
    }
}

/// The reader's tables of the one Python object for each string, set and mapping.
struct Tables {
    read_only: PyObject,
    names: Vec<Py<PyString>>,
    strings: Vec<Option<(Box<str>, Py<PyString>)>>,
    /// Role sets by the raw text of the access object that grants them.
    access_sets: Shared<Py<PyFrozenSet>>,
    scope_sets: Shared<Py<PyFrozenSet>>,
    /// Client-role mappings by the raw text of ``resource_access``.
    mappings: Shared<PyObject>,
    no_roles: Py<PyFrozenSet>,
    no_client_roles: PyObject,
    /// The decoded payload, its memory kept from one call to the next.
    buffer: Vec<u8>,
}

impl Tables {
    fn string(&mut self, py: Python, text: &str) -> Py<PyString> {
        if text.len() > INTERNED_MAX_LEN {
            return PyString::new(py, text).into();
        }
        let slot = &mut self.strings[slot_of(text)];
        if let Some((known, object)) = slot {
            if **known == *text {
                return object.clone_ref(py);
            }
        }
        let made: Py<PyString> = PyString::new(py, text).into();
        *slot = Some((text.into(), made.clone_ref(py)));
        made
    }

    fn set_of(&mut self, py: Python, names: &[&str]) -> PyResult<Py<PyFrozenSet>> {
        let items: Vec<Py<PyString>> = names.iter().map(|name| self.string(py, name)).collect();
        Ok(PyFrozenSet::new(py, &items)?.into())
    }

    fn access_set(&mut self, py: Python, access: Option<&[u8]>) -> PyResult<Py<PyFrozenSet>> {
        let access = match access {
            Some(access) => access,
            None => return Ok(self.no_roles.clone_ref(py)),
        };
        if let Some(found) = self.access_sets.get(access) {
            return Ok(found.clone_ref(py));
        }
        let mut roles = Vec::new();
        Cursor {
            text: access,
            at: 0,
        }
        .access(2, |role| roles.push(role));
        let made = self.set_of(py, &roles)?;
        self.access_sets.keep(access, made.clone_ref(py));
        Ok(made)
    }

    fn scope_set(&mut self, py: Python, scope: Option<&str>) -> PyResult<Py<PyFrozenSet>> {
        let scope = scope.unwrap_or("");
        if let Some(found) = self.scope_sets.get(scope.as_bytes()) {
            return Ok(found.clone_ref(py));
        }
        let names: Vec<&str> = scope.split(' ').filter(|name| !name.is_empty()).collect();
        let made = self.set_of(py, &names)?;
        self.scope_sets.keep(scope.as_bytes(), made.clone_ref(py));
        Ok(made)
    }

    fn client_roles(&mut self, py: Python, resource_access: Option<&[u8]>) -> PyResult<PyObject> {
        let resource_access = match resource_access {
            Some(resource_access) => resource_access,
            None => return Ok(self.no_client_roles.clone_ref(py)),
        };
        if let Some(found) = self.mappings.get(resource_access) {
            return Ok(found.clone_ref(py));
        }
        let mut clients = Vec::new();
        Cursor {
            text: resource_access,
            at: 0,
        }
        .clients(|client, cursor| {
            clients.push((client, cursor.spanned(|cursor| cursor.access(3, drop))?));
            Some(())
        });
        let mapping = PyDict::new(py);
        for (client, access) in clients {
            let roles = self.access_set(py, Some(access))?;
            mapping.set_item(self.string(py, client), roles)?;
        }
        let made = self.read_only.call1(py, (mapping,))?;
        self.mappings.keep(resource_access, made.clone_ref(py));
        Ok(made)
    }

    fn claims(&mut self, py: Python, members: &Members) -> PyResult<PyObject> {
        let claims = PyDict::new(py);
        for (index, value) in members.strings.iter().enumerate() {
            if let Some(text) = value {
                let text = if SHARED_STRINGS[index] {
                    self.string(py, text)
                } else {
                    PyString::new(py, text).into()
                };
                claims.set_item(&self.names[index], text)?;
            }
        }
        for (index, value) in members.times.iter().enumerate() {
            if let Some(time) = value {
                claims.set_item(&self.names[STRING_NAMES.len() + index], time)?;
            }
        }
        match members.aud {
            Some(Audience::One(audience)) => {
                let audience = self.string(py, audience);
                claims.set_item(&self.names[AUD], audience)?;
            }
            Some(Audience::Many(audiences)) => {
                let mut names = Vec::new();
                Cursor {
                    text: audiences,
                    at: 0,
                }
                .strings(2, |name| names.push(name));
                let items: Vec<_> = names.iter().map(|name| self.string(py, name)).collect();
                claims.set_item(&self.names[AUD], PyList::new(py, items))?;
            }
            None => {}
        }
        if let Some(confirmation) = &members.cnf {
            let cnf = PyDict::new(py);
            for (name, value) in confirmation {
                cnf.set_item(self.string(py, name), self.string(py, value))?;
            }
            claims.set_item(&self.names[CNF], cnf)?;
        }
        Ok(claims.into())
    }

    fn objects(&mut self, py: Python, members: &Members) -> PyResult<PyObject> {
        let claims = self.claims(py, members)?;
        let parts = [
            self.access_set(py, members.realm_access)?.into_py(py),
            self.client_roles(py, members.resource_access)?,
            self.scope_set(py, members.scope)?.into_py(py),
        ];
        Ok((claims, PyTuple::new(py, parts)).into_py(py))
    }
}

impl Tables {
    fn new(py: Python, read_only: PyObject) -> PyResult<Self> {
        let names = STRING_NAMES
            .iter()
            .chain(TIME_NAMES.iter())
            .chain(["aud", "cnf"].iter());
        let no_roles: &[Py<PyString>] = &[];
        let no_client_roles = read_only.call1(py, (PyDict::new(py),))?;
        Ok(Tables {
            read_only,
            names: names.map(|name| PyString::new(py, name).into()).collect(),
            strings: (0..STRING_SLOTS).map(|_| None).collect(),
            access_sets: Shared::new(),
            scope_sets: Shared::new(),
            mappings: Shared::new(),
            no_roles: PyFrozenSet::new(py, no_roles)?.into(),
            no_client_roles,
            buffer: Vec::new(),
        })
    }

    fn read(&mut self, py: Python, segment: &[u8]) -> PyResult<PyObject> {
        let mut text = std::mem::take(&mut self.buffer);
        let read = if b64url_decode(segment, &mut text) {
            read_members(&text).map(|members| self.objects(py, &members))
        } else {
            None
        };
        let result = read.unwrap_or_else(|| Ok(py.None()));
        self.buffer = text;
        result
    }
}

/// The reader: its tables, which one call at a time may use.
#[pyclass]
struct PayloadReader {
    tables: RefCell<Tables>,
}

#[pymethods]
impl PayloadReader {
    /// ``read_only`` makes the client-role mappings read-only (types.MappingProxyType).
    #[new]
    fn new(py: Python, read_only: PyObject) -> PyResult<Self> {
        Ok(PayloadReader {
            tables: RefCell::new(Tables::new(py, read_only)?),
        })
    }

    /// (the members the claim rules read, (realm roles, client roles, scopes)) from a payload
    /// segment, or None: then the pure path reads it.
    fn read(&self, py: Python, segment: &[u8]) -> PyResult<PyObject> {
        // Python code that runs inside a call (the read_only callable, a finalizer the garbage
        // collector runs while the call allocates) may let this thread or another call again:
        // that call declines, rather than fail on the tables the first one holds.
        match self.tables.try_borrow_mut() {
            Ok(mut tables) => tables.read(py, segment),
            Err(_) => Ok(py.None()),
        }
    }
}

#[pymodule]
fn _native_payload(_py: Python, module: &PyModule) -> PyResult<()> {
    module.add_class::<PayloadReader>()?;
    Ok(())
}
