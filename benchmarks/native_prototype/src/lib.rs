//! One native call per token payload: parse it and build the parts of a `Principal`, leaving the
//! claim rules to Python. A prototype for issue 16's measurement (README.md beside this crate);
//! the parse is not as strict as the package's.
use ahash::AHashMap as HashMap;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyFrozenSet, PyString, PyTuple};
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;

#[derive(Deserialize)]
struct Access<'a> {
    #[serde(borrow, default)]
    roles: Vec<&'a str>,
}

struct Pairs<'a>(Vec<(&'a str, Access<'a>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Pairs<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Pairs<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Pairs<'a>, M::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<&'de str, Access<'de>>()? {
                    out.push((k, v));
                }
                Ok(Pairs(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

enum Aud<'a> {
    One(&'a str),
    Many(Vec<&'a str>),
}

impl<'de: 'a, 'a> Deserialize<'de> for Aud<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Aud<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Aud<'a>, E> {
                Ok(Aud::One(v))
            }
            fn visit_seq<S: serde::de::SeqAccess<'de>>(
                self,
                mut s: S,
            ) -> Result<Aud<'a>, S::Error> {
                let mut out = Vec::new();
                while let Some(item) = s.next_element::<&'de str>()? {
                    out.push(item);
                }
                Ok(Aud::Many(out))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct Claims<'a> {
    #[serde(borrow)]
    iss: &'a str,
    exp: f64,
    #[serde(default)]
    nbf: f64,
    #[serde(default)]
    iat: f64,
    #[serde(borrow)]
    aud: Option<Aud<'a>>,
    #[serde(borrow)]
    typ: Option<&'a str>,
    #[serde(borrow)]
    azp: Option<&'a str>,
    #[serde(borrow)]
    sub: Option<&'a str>,
    #[serde(borrow)]
    preferred_username: Option<&'a str>,
    #[serde(borrow)]
    realm_access: Option<Access<'a>>,
    #[serde(borrow)]
    resource_access: Option<Pairs<'a>>,
    #[serde(borrow)]
    scope: Option<&'a str>,
    cnf: Option<IgnoredAny>,
}

/// Interns what tokens repeat: strings, role and scope sets, client-role mappings, one Python
/// object each, as the package's shared sets do.
#[pyclass]
struct Extractor {
    strings: HashMap<String, Py<PyString>>,
    sets: HashMap<String, Py<PyFrozenSet>>,
    maps: HashMap<String, PyObject>,
    proxy: PyObject,
    key: String,
    map_key: String,
}

impl Extractor {
    fn string(&mut self, py: Python, s: &str) -> Py<PyString> {
        if let Some(found) = self.strings.get(s) {
            return found.clone_ref(py);
        }
        let made: Py<PyString> = PyString::new(py, s).into();
        self.strings.insert(s.to_owned(), made.clone_ref(py));
        made
    }

    fn set_of<'x, I: Iterator<Item = &'x str> + Clone>(
        &mut self,
        py: Python,
        names: I,
    ) -> PyResult<Py<PyFrozenSet>> {
        self.key.clear();
        for n in names.clone() {
            self.key.push_str(n);
            self.key.push('\0');
        }
        if let Some(found) = self.sets.get(self.key.as_str()) {
            return Ok(found.clone_ref(py));
        }
        let items: Vec<Py<PyString>> = names.map(|n| self.string(py, n)).collect();
        let made: Py<PyFrozenSet> = PyFrozenSet::new(py, &items)?.into();
        self.sets.insert(self.key.clone(), made.clone_ref(py));
        Ok(made)
    }
}

#[pymethods]
impl Extractor {
    #[new]
    fn new(proxy: PyObject) -> Self {
        Extractor {
            strings: HashMap::new(),
            sets: HashMap::new(),
            maps: HashMap::new(),
            proxy,
            key: String::new(),
            map_key: String::new(),
        }
    }

    /// (iss, exp, nbf, iat, aud, typ, azp, sub, preferred_username, realm roles, client roles,
    /// scopes, whether there is a cnf), or ValueError.
    fn fields(&mut self, py: Python, payload: &[u8]) -> PyResult<PyObject> {
        let c: Claims =
            serde_json::from_slice(payload).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let iss = self.string(py, &c.iss);
        let aud: PyObject = match &c.aud {
            None => py.None(),
            Some(Aud::One(a)) => self.string(py, a).into_py(py),
            Some(Aud::Many(list)) => {
                let items: Vec<Py<PyString>> = list.iter().map(|a| self.string(py, a)).collect();
                PyTuple::new(py, items).into_py(py)
            }
        };
        let opt = |me: &mut Self, v: &Option<&str>| -> PyObject {
            match v {
                Some(s) => me.string(py, s).into_py(py),
                None => py.None(),
            }
        };
        let typ = opt(self, &c.typ);
        let azp = opt(self, &c.azp);
        let sub = opt(self, &c.sub);
        let username = opt(self, &c.preferred_username);
        let realm_roles = match &c.realm_access {
            Some(a) => self.set_of(py, a.roles.iter().map(|r| r.as_ref()))?,
            None => self.set_of(py, std::iter::empty())?,
        };
        let mut map_key = std::mem::take(&mut self.map_key);
        map_key.clear();
        if let Some(pairs) = &c.resource_access {
            for (client, access) in &pairs.0 {
                map_key.push_str(client);
                map_key.push('\u{1}');
                for r in &access.roles {
                    map_key.push_str(r);
                    map_key.push('\0');
                }
                map_key.push('\u{2}');
            }
        }
        let client_roles = if let Some(found) = self.maps.get(map_key.as_str()) {
            let found = found.clone_ref(py);
            self.map_key = map_key;
            found
        } else {
            let dict = pyo3::types::PyDict::new(py);
            if let Some(pairs) = &c.resource_access {
                for (client, access) in &pairs.0 {
                    let set = self.set_of(py, access.roles.iter().map(|r| r.as_ref()))?;
                    dict.set_item(self.string(py, client), set)?;
                }
            }
            let made = self.proxy.call1(py, (dict,))?;
            self.maps.insert(map_key, made.clone_ref(py));
            made
        };
        let scopes = match &c.scope {
            Some(s) => self.set_of(py, s.split_ascii_whitespace())?,
            None => self.set_of(py, std::iter::empty())?,
        };
        let values: Vec<PyObject> = vec![
            iss.into_py(py),
            c.exp.into_py(py),
            c.nbf.into_py(py),
            c.iat.into_py(py),
            aud,
            typ,
            azp,
            sub,
            username,
            realm_roles.into_py(py),
            client_roles,
            scopes.into_py(py),
            c.cnf.is_some().into_py(py),
        ];
        Ok(PyTuple::new(py, values).into_py(py))
    }
}

#[pymodule]
fn payload_native(_py: Python, m: &PyModule) -> PyResult<()> {
    m.add_class::<Extractor>()?;
    Ok(())
}
