//! [`Ctx`]: where a key path sits (file position or `ROOST_` variable), and the typed
//! readers of leaves (whole numbers, durations, choices, paths) that report through it.

use super::parse::parse_timespan;
use crate::config::error::Problem;
use crate::config::leaf::{Dict, Leaf, Lenient, List, Opt, Scalar};
use crate::config::tree::{suggest, Marked, Positions};
use serde_json::Value;
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A key path as the checks pass it: spelled out (`&str`, `String`), or built from a
/// parent path and a key ([`Sub`]) or an index ([`At`]), spelled only when a problem is
/// reported. A valid file of 100,000 pools and sites used to spell about 40 paths per
/// pool and 10 per site, a seventh of `roost check`'s CPU time. Checks that go deeper take
/// their parent as `&dyn KeyPath`, so the chain is built on the stack as they descend.
pub trait KeyPath {
    fn spell(&self) -> Cow<'_, str>;
}

impl KeyPath for str {
    fn spell(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl KeyPath for String {
    fn spell(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl<T: KeyPath + ?Sized> KeyPath for &T {
    fn spell(&self) -> Cow<'_, str> {
        (**self).spell()
    }
}

/// `parent.key`, spelled when needed.
pub struct Sub<'p, P: KeyPath + ?Sized>(pub &'p P, pub &'p str);

impl<P: KeyPath + ?Sized> KeyPath for Sub<'_, P> {
    fn spell(&self) -> Cow<'_, str> {
        Cow::Owned(format!("{}.{}", self.0.spell(), self.1))
    }
}

/// `parent[index]`, spelled when needed.
pub struct At<'p, P: KeyPath + ?Sized>(pub &'p P, pub usize);

impl<P: KeyPath + ?Sized> KeyPath for At<'_, P> {
    fn spell(&self) -> Cow<'_, str> {
        Cow::Owned(format!("{}[{}]", self.0.spell(), self.1))
    }
}

impl std::fmt::Display for dyn KeyPath + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.spell())
    }
}

impl<P: KeyPath + ?Sized> std::fmt::Display for Sub<'_, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.spell())
    }
}

impl<P: KeyPath + ?Sized> std::fmt::Display for At<'_, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.spell())
    }
}

/// Everything a check needs to report a problem in the right place.
pub struct Ctx<'a> {
    pub problems: Vec<Problem>,
    /// The marked YAML tree; its position index is built on the first problem only, so
    /// a valid configuration (100,000 pools) never pays for a path string per key.
    root: Option<&'a Marked>,
    positions: std::cell::OnceCell<Positions>,
    file: &'a str,
    /// (key path, variable name) for values that came from the environment.
    env_paths: &'a [(String, String)],
    /// Relative file paths (certificates, logs, working directories) resolve against this.
    base_dir: &'a Path,
}

pub(super) const DURATION_HINT: &str = "not a duration (write 90s, 5m, 29h)";
pub(super) const LISTEN_HINT: &str =
    "not a listen address (write 127.0.0.1:8080, 0.0.0.0:80, [::]:443 or :8080)";

/// `"text"` quoted, numbers and booleans bare, containers abbreviated.
pub fn show(v: &Value) -> String {
    let s = match v {
        Value::Array(_) => "[...]".to_string(),
        Value::Object(_) => "{...}".to_string(),
        other => other.to_string(),
    };
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(77).collect();
        format!("{cut}...")
    } else {
        s
    }
}

pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

pub(super) fn dur(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

impl<'a> Ctx<'a> {
    pub fn new(
        root: Option<&'a Marked>,
        file: &'a str,
        env_paths: &'a [(String, String)],
        base_dir: &'a Path,
    ) -> Self {
        Ctx {
            problems: Vec::new(),
            root,
            positions: std::cell::OnceCell::new(),
            file,
            env_paths,
            base_dir,
        }
    }

    /// A second context over the same text, for checks that run on another thread; the
    /// caller appends its problems to this one's afterwards.
    pub fn fork(&self) -> Ctx<'a> {
        Ctx::new(self.root, self.file, self.env_paths, self.base_dir)
    }

    pub(in crate::config) fn env_var_for(&self, path: &str) -> Option<&str> {
        self.env_paths.iter().find_map(|(p, var)| {
            let inside = path == p
                || (path.starts_with(p.as_str())
                    && matches!(path.as_bytes().get(p.len()), Some(b'.') | Some(b'[')));
            inside.then_some(var.as_str())
        })
    }

    /// Report a problem at a key path, pointing at the value.
    pub fn report(
        &mut self,
        path: &(impl KeyPath + ?Sized),
        value: Option<&Value>,
        message: impl Into<String>,
    ) {
        let path = &*path.spell();
        let (file, line_col) = match self.env_var_for(path) {
            Some(var) => (format!("environment {var}"), None),
            None => {
                let positions = self.positions.get_or_init(|| Positions::build(self.root));
                (self.file.to_string(), positions.value_pos(path))
            }
        };
        self.problems.push(Problem {
            path: path.to_string(),
            value: value.map(show),
            message: message.into(),
            line_col,
            file,
        });
    }

    /// A warning in the same shape as a problem (`file:line:col: path = value: message`),
    /// formatted now because only validation knows where a key sits.
    pub fn warning(
        &mut self,
        path: &(impl KeyPath + ?Sized),
        value: Option<&Value>,
        message: &str,
    ) -> String {
        self.report(path, value, message);
        let p = self.problems.pop().expect("just reported");
        format!("warning: {p}")
    }

    /// A nested map/list, or `None` (absent, or reported as the wrong shape).
    pub(in crate::config) fn nested<'b, T>(
        &mut self,
        o: &'b Opt<T>,
        path: &(impl KeyPath + ?Sized),
        what: &str,
    ) -> Option<&'b T> {
        match o {
            None => None,
            Some(Lenient::Ok(t)) => Some(t),
            Some(Lenient::Bad(v)) => {
                self.report(path, Some(v), format!("expected {what}, found {}", kind(v)));
                None
            }
        }
    }

    /// The well-shaped items of a list, each with its index (its path is
    /// `At(path, index)`).
    pub(in crate::config) fn items<'b, T>(
        &mut self,
        o: &'b List<T>,
        path: &(impl KeyPath + ?Sized),
        what: &str,
    ) -> Vec<(usize, &'b T)> {
        let Some(list) = self.nested(o, path, "a list") else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            match item {
                Lenient::Ok(t) => out.push((i, t)),
                Lenient::Bad(v) => self.report(
                    &At(path, i),
                    Some(v),
                    format!("expected {what}, found {}", kind(v)),
                ),
            }
        }
        out
    }

    /// The well-shaped entries of a user-keyed map, each with its key (its path is
    /// `Sub(path, key)`).
    pub(in crate::config) fn entries<'b, T>(
        &mut self,
        o: &'b Dict<T>,
        path: &(impl KeyPath + ?Sized),
        what: &str,
    ) -> Vec<(&'b str, &'b T)> {
        let Some(map) = self.nested(o, path, "a map") else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(map.len());
        for (k, item) in map {
            match item {
                Lenient::Ok(t) => out.push((k.as_str(), t)),
                Lenient::Bad(v) => self.report(
                    &Sub(path, k),
                    Some(v),
                    format!("expected {what}, found {}", kind(v)),
                ),
            }
        }
        out
    }

    /// A text value. Numbers and booleans are taken as their text (YAML types `8080` or
    /// `true` for you, which is never what a name or command means to reject).
    pub(in crate::config) fn text_of(
        &mut self,
        v: &Value,
        path: &(impl KeyPath + ?Sized),
    ) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            other => {
                self.report(
                    path,
                    Some(other),
                    format!("expected a string, found {}", kind(other)),
                );
                None
            }
        }
    }

    pub(in crate::config) fn text(
        &mut self,
        l: &Leaf,
        path: &(impl KeyPath + ?Sized),
    ) -> Option<String> {
        let v = &l.as_ref()?.0;
        if v.is_null() {
            return None;
        }
        self.text_of(v, path)
    }

    /// A non-empty text value.
    pub(in crate::config) fn name(
        &mut self,
        l: &Leaf,
        path: &(impl KeyPath + ?Sized),
    ) -> Option<String> {
        let s = self.text(l, path)?;
        if s.trim().is_empty() {
            self.report(path, Some(&l.as_ref()?.0), "must not be empty");
            return None;
        }
        Some(s)
    }

    /// The text items of a list, each with its index (its path is `At(path, index)`).
    pub(in crate::config) fn texts(
        &mut self,
        o: &Opt<Vec<Scalar>>,
        path: &(impl KeyPath + ?Sized),
    ) -> Vec<(usize, String)> {
        let Some(list) = self.nested(o, path, "a list") else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(list.len());
        for (i, s) in list.iter().enumerate() {
            if let Some(t) = self.text_of(&s.0, &At(path, i)) {
                out.push((i, t));
            }
        }
        out
    }

    pub(in crate::config) fn uint(
        &mut self,
        l: &Leaf,
        path: &(impl KeyPath + ?Sized),
        default: u64,
        min: u64,
    ) -> u64 {
        let Some(Scalar(v)) = l else {
            return default;
        };
        let n = match v {
            Value::Null => return default,
            Value::Number(n) => n.as_u64().ok_or_else(|| {
                if n.is_i64() {
                    format!("must be at least {min}")
                } else {
                    "not a whole number".to_string()
                }
            }),
            Value::String(s) => s
                .trim()
                .parse::<u64>()
                .map_err(|_| "not a whole number".into()),
            other => Err(format!("expected a whole number, found {}", kind(other))),
        };
        match n {
            Ok(n) if n >= min => n,
            Ok(_) => {
                self.report(path, Some(v), format!("must be at least {min}"));
                default
            }
            Err(msg) => {
                self.report(path, Some(v), msg);
                default
            }
        }
    }

    pub(in crate::config) fn usize(
        &mut self,
        l: &Leaf,
        path: &(impl KeyPath + ?Sized),
        default: usize,
        min: usize,
    ) -> usize {
        let n = self.uint(l, path, default as u64, min as u64);
        usize::try_from(n).unwrap_or(usize::MAX)
    }

    pub(in crate::config) fn opt_usize(
        &mut self,
        l: &Leaf,
        path: &(impl KeyPath + ?Sized),
        min: usize,
    ) -> Option<usize> {
        match l {
            Some(Scalar(v)) if !v.is_null() => {
                let before = self.problems.len();
                let n = self.usize(l, path, 0, min);
                (self.problems.len() == before).then_some(n)
            }
            _ => None,
        }
    }

    pub(in crate::config) fn u32(
        &mut self,
        l: &Leaf,
        path: &(impl KeyPath + ?Sized),
        default: u32,
        min: u32,
    ) -> u32 {
        let n = self.uint(l, path, default as u64, min as u64);
        match u32::try_from(n) {
            Ok(n) => n,
            Err(_) => {
                self.report(path, l.as_ref().map(|s| &s.0), "too large");
                default
            }
        }
    }

    pub(in crate::config) fn duration(
        &mut self,
        l: &Leaf,
        path: &(impl KeyPath + ?Sized),
        default: Duration,
        nonzero: bool,
    ) -> Duration {
        let Some(Scalar(v)) = l else {
            return default;
        };
        let d = match v {
            Value::Null => return default,
            Value::Number(n) if n.as_u64() == Some(0) => Some(Duration::ZERO),
            Value::String(s) if s.trim() == "0" => Some(Duration::ZERO),
            Value::String(s) => humantime::parse_duration(s.trim())
                .ok()
                .or_else(|| parse_timespan(s)),
            _ => None,
        };
        match d {
            Some(d) if nonzero && d.is_zero() => {
                self.report(path, Some(v), "must be longer than 0");
                default
            }
            Some(d) => d,
            None => {
                self.report(path, Some(v), DURATION_HINT);
                default
            }
        }
    }

    pub(in crate::config) fn boolean(
        &mut self,
        l: &Leaf,
        path: &(impl KeyPath + ?Sized),
        default: bool,
    ) -> bool {
        let Some(Scalar(v)) = l else {
            return default;
        };
        match v {
            Value::Null => default,
            Value::Bool(b) => *b,
            Value::String(s) if s.eq_ignore_ascii_case("true") => true,
            Value::String(s) if s.eq_ignore_ascii_case("false") => false,
            other => {
                self.report(path, Some(other), "expected true or false");
                default
            }
        }
    }

    /// One of a fixed set of words (matched case-insensitively, as IIS does).
    pub(in crate::config) fn choice<T: Copy>(
        &mut self,
        l: &Leaf,
        path: &(impl KeyPath + ?Sized),
        options: &[(&'static str, T)],
        default: T,
    ) -> T {
        let Some(Scalar(v)) = l else {
            return default;
        };
        if v.is_null() {
            return default;
        }
        if let Value::String(s) = v {
            if let Some((_, t)) = options
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(s.trim()))
            {
                return *t;
            }
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        let mut msg = format!("unknown value (expected one of {})", names.join(", "));
        if let Some(s) = v.as_str().and_then(|s| suggest(s, names.iter().copied())) {
            msg = format!(
                "unknown value (did you mean `{s}`? expected one of {})",
                names.join(", ")
            );
        }
        self.report(path, Some(v), msg);
        default
    }

    /// A file path, resolved against the config file's directory.
    pub(in crate::config) fn path_buf(
        &mut self,
        l: &Leaf,
        path: &(impl KeyPath + ?Sized),
    ) -> Option<PathBuf> {
        let s = self.name(l, path)?;
        Some(self.resolve(&s))
    }

    pub(in crate::config) fn resolve(&self, s: &str) -> PathBuf {
        let p = Path::new(s);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// A URL path (`/...`).
    pub(in crate::config) fn url_path(
        &mut self,
        l: &Leaf,
        path: &(impl KeyPath + ?Sized),
    ) -> Option<String> {
        let s = self.name(l, path)?;
        if !s.starts_with('/') {
            self.report(path, l.as_ref().map(|x| &x.0), "must start with `/`");
            return None;
        }
        Some(s)
    }
}
