//! Raw → validated model: fills IIS defaults and collects every problem in one pass.
//!
//! Each check reports through [`Ctx`], which knows where a key path sits in the YAML text
//! (or which `ROOST_` variable set it), so a problem carries its line:column without the
//! checks having to care. A bad value is reported and replaced by its default, so the
//! checks that follow still run and the user sees everything wrong in one go.

use super::error::Problem;
use super::model::*;
use super::raw::*;
use super::tree::{suggest, Marked, Positions};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

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

const DURATION_HINT: &str = "not a duration (write 90s, 5m, 29h)";
const LISTEN_HINT: &str =
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

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

fn dur(secs: u64) -> Duration {
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

    fn env_var_for(&self, path: &str) -> Option<&str> {
        self.env_paths.iter().find_map(|(p, var)| {
            let inside = path == p
                || (path.starts_with(p.as_str())
                    && matches!(path.as_bytes().get(p.len()), Some(b'.') | Some(b'[')));
            inside.then_some(var.as_str())
        })
    }

    /// Report a problem at a key path, pointing at the value.
    pub fn report(&mut self, path: &str, value: Option<&Value>, message: impl Into<String>) {
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
    pub fn warning(&mut self, path: &str, value: Option<&Value>, message: &str) -> String {
        self.report(path, value, message);
        let p = self.problems.pop().expect("just reported");
        format!("warning: {p}")
    }

    /// A nested map/list, or `None` (absent, or reported as the wrong shape).
    pub(super) fn nested<'b, T>(&mut self, o: &'b Opt<T>, path: &str, what: &str) -> Option<&'b T> {
        match o {
            None => None,
            Some(Lenient::Ok(t)) => Some(t),
            Some(Lenient::Bad(v)) => {
                self.report(path, Some(v), format!("expected {what}, found {}", kind(v)));
                None
            }
        }
    }

    /// The well-shaped items of a list, each with its path.
    fn items<'b, T>(&mut self, o: &'b List<T>, path: &str, what: &str) -> Vec<(String, &'b T)> {
        let Some(list) = self.nested(o, path, "a list") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in list.iter().enumerate() {
            let p = format!("{path}[{i}]");
            match item {
                Lenient::Ok(t) => out.push((p, t)),
                Lenient::Bad(v) => {
                    self.report(&p, Some(v), format!("expected {what}, found {}", kind(v)))
                }
            }
        }
        out
    }

    /// The well-shaped entries of a user-keyed map, each with its path.
    fn entries<'b, T>(
        &mut self,
        o: &'b Dict<T>,
        path: &str,
        what: &str,
    ) -> Vec<(String, &'b str, &'b T)> {
        let Some(map) = self.nested(o, path, "a map") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, item) in map {
            let p = format!("{path}.{k}");
            match item {
                Lenient::Ok(t) => out.push((p, k.as_str(), t)),
                Lenient::Bad(v) => {
                    self.report(&p, Some(v), format!("expected {what}, found {}", kind(v)))
                }
            }
        }
        out
    }

    /// A text value. Numbers and booleans are taken as their text (YAML types `8080` or
    /// `true` for you, which is never what a name or command means to reject).
    fn text_of(&mut self, v: &Value, path: &str) -> Option<String> {
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

    fn text(&mut self, l: &Leaf, path: &str) -> Option<String> {
        let v = &l.as_ref()?.0;
        if v.is_null() {
            return None;
        }
        self.text_of(v, path)
    }

    /// A non-empty text value.
    fn name(&mut self, l: &Leaf, path: &str) -> Option<String> {
        let s = self.text(l, path)?;
        if s.trim().is_empty() {
            self.report(path, Some(&l.as_ref()?.0), "must not be empty");
            return None;
        }
        Some(s)
    }

    fn texts(&mut self, o: &Opt<Vec<Scalar>>, path: &str) -> Vec<(String, String)> {
        let Some(list) = self.nested(o, path, "a list") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, s) in list.iter().enumerate() {
            let p = format!("{path}[{i}]");
            if let Some(t) = self.text_of(&s.0, &p) {
                out.push((p, t));
            }
        }
        out
    }

    fn uint(&mut self, l: &Leaf, path: &str, default: u64, min: u64) -> u64 {
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

    pub(super) fn usize(&mut self, l: &Leaf, path: &str, default: usize, min: usize) -> usize {
        let n = self.uint(l, path, default as u64, min as u64);
        usize::try_from(n).unwrap_or(usize::MAX)
    }

    fn opt_usize(&mut self, l: &Leaf, path: &str, min: usize) -> Option<usize> {
        match l {
            Some(Scalar(v)) if !v.is_null() => {
                let before = self.problems.len();
                let n = self.usize(l, path, 0, min);
                (self.problems.len() == before).then_some(n)
            }
            _ => None,
        }
    }

    pub(super) fn u32(&mut self, l: &Leaf, path: &str, default: u32, min: u32) -> u32 {
        let n = self.uint(l, path, default as u64, min as u64);
        match u32::try_from(n) {
            Ok(n) => n,
            Err(_) => {
                self.report(path, l.as_ref().map(|s| &s.0), "too large");
                default
            }
        }
    }

    pub(super) fn duration(
        &mut self,
        l: &Leaf,
        path: &str,
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

    pub(super) fn boolean(&mut self, l: &Leaf, path: &str, default: bool) -> bool {
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
    pub(super) fn choice<T: Copy>(
        &mut self,
        l: &Leaf,
        path: &str,
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
    fn path_buf(&mut self, l: &Leaf, path: &str) -> Option<PathBuf> {
        let s = self.name(l, path)?;
        Some(self.resolve(&s))
    }

    fn resolve(&self, s: &str) -> PathBuf {
        let p = Path::new(s);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// A URL path (`/...`).
    fn url_path(&mut self, l: &Leaf, path: &str) -> Option<String> {
        let s = self.name(l, path)?;
        if !s.starts_with('/') {
            self.report(path, l.as_ref().map(|x| &x.0), "must start with `/`");
            return None;
        }
        Some(s)
    }
}

fn leaf_value(l: &Leaf) -> Option<&Value> {
    l.as_ref().map(|s| &s.0)
}

/// `127.0.0.1:8080`, `0.0.0.0:80`, `[::]:443`, `localhost:8080`, or `:8080` (all IPv4).
pub fn parse_listen(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    if let Some(port) = s.strip_prefix(':') {
        return port
            .parse::<u16>()
            .ok()
            .map(|p| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), p));
    }
    if let Some(port) = s.strip_prefix("localhost:") {
        return port
            .parse::<u16>()
            .ok()
            .map(|p| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p));
    }
    s.parse().ok()
}

/// A farm server address: `host:port`, `http://host[:port]`, `https://host[:port]`.
/// Returns (host, port, tls).
pub fn parse_server_address(s: &str) -> Result<(String, u16, bool), String> {
    let s = s.trim();
    let (rest, tls, default_port) = if let Some(r) = s.strip_prefix("http://") {
        (r, false, Some(80))
    } else if let Some(r) = s.strip_prefix("https://") {
        (r, true, Some(443))
    } else if s.contains("://") {
        return Err("only http:// and https:// servers are supported".into());
    } else {
        (s, false, None)
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') {
        return Err("a server address has no path (write host:port)".into());
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or("unclosed `[` in an IPv6 address")?;
        (h, after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err("missing host (write host:port)".into());
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':'))
    {
        return Err("not a host name or IP address".into());
    }
    let port = match port {
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => return Err("not a port number (1-65535)".into()),
        },
        None => default_port
            .ok_or("missing port (write host:port, http://host:port or https://host:port)")?,
    };
    Ok((host.to_string(), port, tls))
}

/// IIS writes durations as .NET TimeSpans (`00:02:00`, `1.05:00:00` = 29h); accept them
/// too, so settings copied from applicationHost.config keep working.
pub fn parse_timespan(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (days, hms) = match s.split_once('.') {
        Some((d, rest)) if rest.contains(':') => (d.parse::<u64>().ok()?, rest),
        _ => (0, s),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    let [h, m, sec] = parts.as_slice() else {
        return None;
    };
    let (h, m, sec): (u64, u64, u64) = (h.parse().ok()?, m.parse().ok()?, sec.parse().ok()?);
    (h < 24 && m < 60 && sec < 60)
        .then(|| Duration::from_secs(((days * 24 + h) * 60 + m) * 60 + sec))
}

/// `HH:MM` → seconds since midnight.
pub fn parse_time_of_day(s: &str) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let h: u32 = h.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    (h < 24 && m < 60).then_some(h * 3600 + m * 60)
}

/// `200`, `200-399` → inclusive range.
pub fn parse_status_range(v: &Value) -> Option<(u16, u16)> {
    let (lo, hi) = match v {
        Value::Number(n) => {
            let n = u16::try_from(n.as_u64()?).ok()?;
            (n, n)
        }
        Value::String(s) => match s.split_once('-') {
            Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
            None => {
                let n = s.trim().parse().ok()?;
                (n, n)
            }
        },
        _ => return None,
    };
    ((100..=599).contains(&lo) && (100..=599).contains(&hi) && lo <= hi).then_some((lo, hi))
}

/// A host name for a site or SNI: exact, or with one leading `*.`; lowercase.
fn check_host_name(s: &str) -> Result<String, &'static str> {
    let lower = s.trim().to_ascii_lowercase();
    let bare = lower.strip_prefix("*.").unwrap_or(&lower);
    if bare.is_empty() {
        return Err("empty host name");
    }
    if bare.contains('*') {
        return Err("a wildcard is allowed only as a leading `*.`");
    }
    if !bare
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return Err("not a host name (no ports or schemes; letters, digits, `-`, `.`)");
    }
    Ok(lower)
}

/// Read a certificate chain and key and check they belong together. Problems are
/// returned as (which field: "cert" or "key", message).
fn check_cert_files(cert: &Path, key: &Path) -> Vec<(&'static str, String)> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut out = Vec::new();
    let chain = match super::files::read_bounded(cert, super::files::PEM_CAP) {
        Err(e) => {
            out.push(("cert", e.to_string()));
            None
        }
        Ok(bytes) => match CertificateDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>() {
            Ok(c) if !c.is_empty() => Some(c),
            Ok(_) => {
                out.push((
                    "cert",
                    format!("{} holds no PEM CERTIFICATE block", cert.display()),
                ));
                None
            }
            Err(e) => {
                out.push((
                    "cert",
                    format!("{} is not a PEM certificate: {e}", cert.display()),
                ));
                None
            }
        },
    };
    let key_der = match super::files::read_bounded(key, super::files::PEM_CAP) {
        Err(e) => {
            out.push(("key", e.to_string()));
            None
        }
        Ok(bytes) => match PrivateKeyDer::from_pem_slice(&bytes) {
            Ok(k) => Some(k),
            Err(e) => {
                out.push((
                    "key",
                    format!("{} is not a PEM private key: {e}", key.display()),
                ));
                None
            }
        },
    };
    if let (Some(chain), Some(key_der)) = (chain, key_der) {
        let provider = rustls::crypto::ring::default_provider();
        if let Err(e) = rustls::sign::CertifiedKey::from_der(chain, key_der, &provider) {
            out.push(("key", format!("unusable with its certificate: {e}")));
        }
    }
    out
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Validate a raw configuration. Problems accumulate in `ctx`.
pub fn validate(raw: &RawConfig, ctx: &mut Ctx<'_>) -> Config {
    let pools = validate_pools(raw, ctx);
    let sites = validate_sites(raw, &pools, ctx);
    let limits = validate_limits(raw, ctx);
    let admin = validate_admin(raw, ctx);
    let log = validate_log(raw, ctx);
    let workers = validate_workers(&raw.workers, ctx);
    let diagnose = validate_diagnose(raw, ctx);
    Config {
        sites,
        pools,
        limits,
        admin,
        log,
        workers,
        diagnose,
    }
}

/// `workers: auto | N` (1 to 1024 front threads).
fn validate_workers(l: &Leaf, ctx: &mut Ctx<'_>) -> Workers {
    const MAX: u64 = 1024;
    match l {
        Some(Scalar(Value::String(s))) if s.eq_ignore_ascii_case("auto") => Workers::Auto,
        Some(Scalar(Value::Number(_))) => {
            let n = ctx.uint(l, "workers", 1, 1);
            if n > MAX {
                let v = l.as_ref().map(|s| &s.0);
                ctx.report("workers", v, format!("at most {MAX} front threads"));
                return Workers::Auto;
            }
            Workers::Count(n as usize)
        }
        Some(Scalar(v)) if !v.is_null() => {
            ctx.report(
                "workers",
                Some(v),
                "expected `auto` or a number of front threads",
            );
            Workers::Auto
        }
        _ => Workers::Auto,
    }
}

/// `diagnose {snapshotDir, snapshotKeep}`. A folder that cannot be one (a file is in the
/// way) is refused now; one that cannot be written later is a logged warning.
fn validate_diagnose(raw: &RawConfig, ctx: &mut Ctx<'_>) -> Diagnose {
    let Some(d) = ctx.nested(&raw.diagnose, "diagnose", "a map") else {
        return Diagnose::default();
    };
    let path = "diagnose.snapshotDir";
    let snapshot_dir = ctx.path_buf(&d.snapshot_dir, path);
    if let Some(dir) = &snapshot_dir {
        let blocked = dir.ancestors().find(|a| a.exists() && !a.is_dir());
        if let Some(b) = blocked {
            let why = format!("{} exists and is not a folder", b.display());
            ctx.report(path, leaf_value(&d.snapshot_dir), why);
        }
    }
    let snapshot_keep = ctx.usize(&d.snapshot_keep, "diagnose.snapshotKeep", 10, 1);
    Diagnose {
        snapshot_dir,
        snapshot_keep,
    }
}

fn validate_sites(raw: &RawConfig, pools: &BTreeMap<String, Pool>, ctx: &mut Ctx<'_>) -> Vec<Site> {
    let site_items = ctx.items(&raw.sites, "sites", "a site (a map)");
    if site_items.is_empty() && !matches!(raw.sites, Some(Lenient::Bad(_))) {
        ctx.report("sites", None, "at least one site is needed");
    }
    let mut sites = Vec::new();
    let mut names: HashMap<String, String> = HashMap::new();
    // (address, host or "" for any) → (site name, path); address → (tls?, path).
    let mut bound: HashMap<(SocketAddr, String), (String, String)> = HashMap::new();
    let mut tls_of: HashMap<SocketAddr, (bool, String)> = HashMap::new();
    for (sp, rs) in site_items {
        let name_path = format!("{sp}.name");
        let name = match ctx.name(&rs.name, &name_path) {
            Some(n) => n,
            None => {
                if rs.name.is_none() {
                    ctx.report(&name_path, None, "every site needs a name");
                }
                String::new()
            }
        };
        if !name.is_empty() {
            if let Some(first) = names.get(&name) {
                let msg = format!("duplicate site name (first used at {first})");
                ctx.report(&name_path, leaf_value(&rs.name), msg);
            } else {
                names.insert(name.clone(), name_path.clone());
            }
        }

        let mut host_names = Vec::new();
        for (hp, h) in ctx.texts(&rs.host_names, &format!("{sp}.hostNames")) {
            match check_host_name(&h) {
                Ok(h) => host_names.push(h),
                Err(msg) => ctx.report(&hp, Some(&Value::String(h)), msg),
            }
        }

        let bpath = format!("{sp}.bindings");
        let binding_items = ctx.items(&rs.bindings, &bpath, "a binding (a map)");
        if binding_items.is_empty() && !matches!(rs.bindings, Some(Lenient::Bad(_))) {
            ctx.report(&bpath, None, "a site needs at least one binding");
        }
        let mut bindings = Vec::new();
        for (bp, rb) in binding_items {
            let lp = format!("{bp}.listen");
            let listen = match ctx.text(&rb.listen, &lp) {
                None => {
                    if rb.listen.is_none() {
                        ctx.report(&lp, None, "a binding needs `listen` (e.g. 127.0.0.1:8080)");
                    }
                    None
                }
                Some(s) => match parse_listen(&s) {
                    Some(a) => Some(a),
                    None => {
                        ctx.report(&lp, leaf_value(&rb.listen), LISTEN_HINT);
                        None
                    }
                },
            };
            let tls = ctx
                .nested(&rb.tls, &format!("{bp}.tls"), "a map")
                .and_then(|t| validate_tls(t, &format!("{bp}.tls"), ctx));
            let Some(listen) = listen else { continue };
            if listen.port() == 0 {
                // Port 0 asks the OS for a fresh port per binding (tests do this), so such
                // bindings can never collide.
                bindings.push(Binding { listen, tls });
                continue;
            }
            match tls_of.get(&listen) {
                Some((was_tls, first)) if *was_tls != tls.is_some() => {
                    let msg = format!(
                        "{listen} is bound with{} TLS at {first} and with{} TLS here",
                        if *was_tls { "" } else { "out" },
                        if tls.is_some() { "" } else { "out" },
                    );
                    ctx.report(&lp, leaf_value(&rb.listen), msg);
                }
                Some(_) => {}
                None => {
                    tls_of.insert(listen, (tls.is_some(), lp.clone()));
                }
            }
            let hosts: Vec<String> = if host_names.is_empty() {
                vec![String::new()]
            } else {
                host_names.clone()
            };
            for h in hosts {
                match bound.get(&(listen, h.clone())) {
                    Some((other, first)) => {
                        let who = if h.is_empty() {
                            "any host name".to_string()
                        } else {
                            format!("host `{h}`")
                        };
                        let msg = if *other == name {
                            format!("duplicate binding (already at {first})")
                        } else {
                            format!("site `{other}` already binds {listen} for {who} (at {first})")
                        };
                        ctx.report(&lp, leaf_value(&rb.listen), msg);
                        break;
                    }
                    None => {
                        bound.insert((listen, h), (name.clone(), lp.clone()));
                    }
                }
            }
            bindings.push(Binding { listen, tls });
        }

        let apath = format!("{sp}.applications");
        let app_items = ctx.items(&rs.applications, &apath, "an application (a map)");
        if app_items.is_empty() && !matches!(rs.applications, Some(Lenient::Bad(_))) {
            ctx.report(
                &apath,
                None,
                "a site needs at least one application (e.g. path: /, pool: default)",
            );
        }
        let mut applications: Vec<Application> = Vec::new();
        let mut seen_paths: HashMap<String, String> = HashMap::new();
        for (ap, ra) in app_items {
            let pp = format!("{ap}.path");
            let path = match ctx.url_path(&ra.path, &pp) {
                Some(p) => {
                    let trimmed = p.trim_end_matches('/');
                    let norm = if trimmed.is_empty() {
                        "/".to_string()
                    } else {
                        trimmed.to_string()
                    };
                    if let Some(first) = seen_paths.get(&norm) {
                        ctx.report(
                            &pp,
                            leaf_value(&ra.path),
                            format!("duplicate application path in this site (first at {first})"),
                        );
                    } else {
                        seen_paths.insert(norm.clone(), pp.clone());
                    }
                    Some(norm)
                }
                None => {
                    if ra.path.is_none() {
                        ctx.report(&pp, None, "an application needs a `path` (e.g. /)");
                    }
                    None
                }
            };
            let poolp = format!("{ap}.pool");
            let pool = match ctx.name(&ra.pool, &poolp) {
                Some(p) if pools.contains_key(&p) => Some(p),
                Some(p) => {
                    let msg = match suggest(&p, pools.keys().map(String::as_str)) {
                        Some(s) => format!("no such pool (did you mean `{s}`?)"),
                        None if pools.is_empty() => {
                            "no such pool (no pools are defined)".to_string()
                        }
                        None => format!(
                            "no such pool (pools: {})",
                            pools.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    };
                    ctx.report(&poolp, leaf_value(&ra.pool), msg);
                    None
                }
                None => {
                    if ra.pool.is_none() {
                        ctx.report(&poolp, None, "an application needs a `pool`");
                    }
                    None
                }
            };
            if let (Some(path), Some(pool)) = (path, pool) {
                applications.push(Application { path, pool });
            }
        }
        // Longest first, so the router's first prefix match is the longest.
        applications.sort_by(|a, b| b.path.len().cmp(&a.path.len()).then(a.path.cmp(&b.path)));
        sites.push(Site {
            name,
            bindings,
            host_names,
            applications,
        });
    }
    sites
}

fn validate_tls(t: &RawTls, path: &str, ctx: &mut Ctx<'_>) -> Option<Tls> {
    let single = t.cert.is_some() || t.key.is_some() || t.server_names.is_some();
    let mut certificates = Vec::new();
    if single && t.certificates.is_some() {
        ctx.report(
            path,
            None,
            "use either cert/key/serverNames or certificates, not both",
        );
    }
    if t.certificates.is_some() {
        let cp = format!("{path}.certificates");
        let items = ctx.items(&t.certificates, &cp, "a certificate (a map)");
        if items.is_empty() && !matches!(t.certificates, Some(Lenient::Bad(_))) {
            ctx.report(&cp, None, "list at least one certificate");
        }
        for (ip, c) in items {
            if let Some(c) = validate_certificate(&c.cert, &c.key, &c.server_names, &ip, ctx) {
                certificates.push(c);
            }
        }
    } else if let Some(c) = validate_certificate(&t.cert, &t.key, &t.server_names, path, ctx) {
        certificates.push(c);
    }
    let defaults = certificates
        .iter()
        .filter(|c| c.server_names.is_empty())
        .count();
    if defaults > 1 {
        ctx.report(
            path,
            None,
            "only one certificate may omit serverNames (it is the default)",
        );
    }
    (!certificates.is_empty()).then_some(Tls { certificates })
}

fn validate_certificate(
    cert: &Leaf,
    key: &Leaf,
    server_names: &Opt<Vec<Scalar>>,
    path: &str,
    ctx: &mut Ctx<'_>,
) -> Option<Certificate> {
    let cp = format!("{path}.cert");
    let kp = format!("{path}.key");
    let c = ctx.path_buf(cert, &cp);
    let k = ctx.path_buf(key, &kp);
    if cert.is_none() {
        ctx.report(&cp, None, "TLS needs `cert` (a PEM certificate file)");
    }
    if key.is_none() {
        ctx.report(&kp, None, "TLS needs `key` (a PEM private key file)");
    }
    let mut names = Vec::new();
    for (np, n) in ctx.texts(server_names, &format!("{path}.serverNames")) {
        match check_host_name(&n) {
            Ok(n) => names.push(n),
            Err(msg) => ctx.report(&np, Some(&Value::String(n)), msg),
        }
    }
    let (c, k) = (c?, k?);
    let mut ok = true;
    for (which, msg) in check_cert_files(&c, &k) {
        let (p, l) = if which == "cert" {
            (&cp, cert)
        } else {
            (&kp, key)
        };
        ctx.report(p, leaf_value(l), msg);
        ok = false;
    }
    ok.then_some(Certificate {
        cert: c,
        key: k,
        server_names: names,
    })
}

fn validate_limits(raw: &RawConfig, ctx: &mut Ctx<'_>) -> Limits {
    let r = ctx.nested(&raw.limits, "limits", "a map");
    let none = RawLimits {
        max_request_header_bytes: None,
        header_wait_timeout: None,
        connection_timeout: None,
        body_timeout: None,
        tls_handshake_timeout: None,
        max_connections: None,
        shutdown_grace: None,
        max_connections_per_client: None,
        overload: None,
    };
    let r = r.unwrap_or(&none);
    Limits {
        max_request_header_bytes: ctx.usize(
            &r.max_request_header_bytes,
            "limits.maxRequestHeaderBytes",
            16384,
            1,
        ),
        header_wait_timeout: ctx.duration(
            &r.header_wait_timeout,
            "limits.headerWaitTimeout",
            dur(120),
            true,
        ),
        connection_timeout: ctx.duration(
            &r.connection_timeout,
            "limits.connectionTimeout",
            dur(120),
            true,
        ),
        body_timeout: ctx.duration(&r.body_timeout, "limits.bodyTimeout", dur(120), true),
        tls_handshake_timeout: ctx.duration(
            &r.tls_handshake_timeout,
            "limits.tlsHandshakeTimeout",
            dur(10),
            true,
        ),
        max_connections: ctx.usize(&r.max_connections, "limits.maxConnections", 10000, 1),
        shutdown_grace: ctx.duration(&r.shutdown_grace, "limits.shutdownGrace", dur(30), false),
        // 0 (like an absent key) means no cap, as IIS writes "unlimited".
        max_connections_per_client: ctx
            .opt_usize(
                &r.max_connections_per_client,
                "limits.maxConnectionsPerClient",
                0,
            )
            .filter(|n| *n > 0),
        overload: validate_overload(&r.overload, ctx),
    }
}

fn validate_overload(o: &Opt<RawOverload>, ctx: &mut Ctx<'_>) -> Overload {
    let d = Overload::default();
    let Some(r) = ctx.nested(o, "limits.overload", "a map") else {
        return d;
    };
    let p = "limits.overload.highWater";
    let high_water = match r.high_water.as_ref().map(|s| &s.0) {
        None | Some(Value::Null) => d.high_water,
        Some(v) => match parse_fraction(v) {
            Some(f) if f > 0.0 && f <= 1.0 => f,
            _ => {
                ctx.report(
                    p,
                    Some(v),
                    "must be a share of limits.maxConnections above 0 and at most 1: \
                     a fraction (0.8) or a percentage (\"80%\")",
                );
                d.high_water
            }
        },
    };
    Overload {
        high_water,
        header_wait_timeout: ctx.duration(
            &r.header_wait_timeout,
            "limits.overload.headerWaitTimeout",
            d.header_wait_timeout,
            true,
        ),
        idle_timeout: ctx.duration(
            &r.idle_timeout,
            "limits.overload.idleTimeout",
            d.idle_timeout,
            true,
        ),
    }
}

/// `0.8`, `"0.8"` or `"80%"` as a fraction.
fn parse_fraction(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            let s = s.trim();
            match s.strip_suffix('%') {
                Some(pct) => pct.trim().parse::<f64>().ok().map(|p| p / 100.0),
                None => s.parse().ok(),
            }
        }
        _ => None,
    }
    .filter(|f| f.is_finite())
}

fn validate_admin(raw: &RawConfig, ctx: &mut Ctx<'_>) -> Admin {
    let default_listen = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9901);
    let Some(r) = ctx.nested(&raw.admin, "admin", "a map") else {
        return Admin {
            listen: default_listen,
            token: None,
            public: None,
        };
    };
    let listen = match ctx.text(&r.listen, "admin.listen") {
        None => default_listen,
        Some(s) => parse_listen(&s).unwrap_or_else(|| {
            ctx.report("admin.listen", leaf_value(&r.listen), LISTEN_HINT);
            default_listen
        }),
    };
    let token = ctx.name(&r.token, "admin.token");
    if token.is_none() && !listen.ip().is_loopback() {
        ctx.report(
            "admin.listen",
            leaf_value(&r.listen),
            "a non-loopback admin address needs `admin.token` (anyone who can reach it could stop pools)",
        );
    }
    let public = ctx
        .nested(&r.public, "admin.public", "a map")
        .and_then(|p| {
            let text = ctx.text(&p.listen, "admin.public.listen");
            let addr = text.as_deref().and_then(parse_listen);
            if addr.is_none() {
                ctx.report("admin.public.listen", leaf_value(&p.listen), LISTEN_HINT);
            }
            addr
        });
    Admin {
        listen,
        token,
        public,
    }
}

fn validate_log(raw: &RawConfig, ctx: &mut Ctx<'_>) -> Log {
    let access = ctx
        .nested(&raw.log, "log", "a map")
        .and_then(|l| ctx.nested(&l.access, "log.access", "a map"))
        .map(|a| AccessLog {
            path: ctx.path_buf(&a.path, "log.access.path"),
            format: ctx.choice(
                &a.format,
                "log.access.format",
                &[
                    ("w3c", AccessLogFormat::W3c),
                    ("json", AccessLogFormat::Json),
                ],
                AccessLogFormat::W3c,
            ),
        });
    Log { access }
}

fn validate_pools(raw: &RawConfig, ctx: &mut Ctx<'_>) -> BTreeMap<String, Pool> {
    let mut pools = BTreeMap::new();
    for (pp, name, rp) in ctx.entries(&raw.pools, "pools", "a pool (a map)") {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            // Pool names become socket file names and metric labels.
            ctx.report(
                &pp,
                None,
                "pool names may use only letters, digits, `-`, `_` and `.`",
            );
        }
        let pool = validate_pool(name, &pp, rp, ctx);
        pools.insert(name.to_string(), pool);
    }
    pools
}

fn validate_pool(name: &str, pp: &str, rp: &RawPool, ctx: &mut Ctx<'_>) -> Pool {
    let queue_length = ctx.usize(&rp.queue_length, &format!("{pp}.queueLength"), 1000, 1);
    let queue_timeout = ctx.duration(
        &rp.queue_timeout,
        &format!("{pp}.queueTimeout"),
        dur(120),
        false,
    );
    let start_mode = ctx.choice(
        &rp.start_mode,
        &format!("{pp}.startMode"),
        &[
            ("onDemand", StartMode::OnDemand),
            ("alwaysRunning", StartMode::AlwaysRunning),
        ],
        StartMode::OnDemand,
    );
    let retry_after = ctx.duration(
        &super::queue::retry_after_leaf(&rp.retry_after),
        &format!("{pp}.retryAfter"),
        dur(5),
        false,
    );
    let queue = super::queue::validate(rp, pp, ctx);

    let tp = format!("{pp}.timeouts");
    let t = ctx.nested(&rp.timeouts, &tp, "a map");
    let timeouts = UpstreamTimeouts {
        connect: ctx.duration(
            &t.and_then(|t| t.connect.clone()),
            &format!("{tp}.connect"),
            dur(10),
            true,
        ),
        first_byte: ctx.duration(
            &t.and_then(|t| t.first_byte.clone()),
            &format!("{tp}.firstByte"),
            dur(120),
            true,
        ),
        idle: ctx.duration(
            &t.and_then(|t| t.idle.clone()),
            &format!("{tp}.idle"),
            dur(90),
            true,
        ),
    };

    let mut initialization_pages = Vec::new();
    for (ip, page) in ctx.texts(
        &rp.initialization_pages,
        &format!("{pp}.initializationPages"),
    ) {
        if page.starts_with('/') {
            initialization_pages.push(page);
        } else {
            ctx.report(&ip, Some(&Value::String(page)), "must start with `/`");
        }
    }

    let fp = format!("{pp}.farm");
    let pmp = format!("{pp}.processModel");
    let wp = format!("{pp}.worker");
    let farm = ctx.nested(&rp.farm, &fp, "a map");
    let pm = ctx.nested(&rp.process_model, &pmp, "a map");
    let worker = ctx.nested(&rp.worker, &wp, "a map");
    if farm.is_some() && pm.is_some() {
        ctx.report(
            pp,
            None,
            "a pool has either `farm` (remote servers) or `processModel` (local workers), not both",
        );
    }
    let backend = match farm {
        Some(f) => {
            if worker.is_some() {
                ctx.report(&wp, None, "worker settings apply only to pools of local workers (processModel), not to a farm");
            }
            if let Some(pm) = pm {
                // Still check it, so every mistake shows up in one run.
                validate_process_model(Some(pm), worker, &pmp, &wp, ctx);
            }
            Backend::Farm(validate_farm(f, &fp, ctx))
        }
        None => Backend::Garden(validate_process_model(pm, worker, &pmp, &wp, ctx)),
    };

    Pool {
        name: name.to_string(),
        queue_length,
        queue_timeout,
        queue,
        start_mode,
        backend,
        recycling: validate_recycling(
            ctx.nested(&rp.recycling, &format!("{pp}.recycling"), "a map"),
            &format!("{pp}.recycling"),
            ctx,
        ),
        failure: validate_failure(
            ctx.nested(&rp.failure, &format!("{pp}.failure"), "a map"),
            &format!("{pp}.failure"),
            ctx,
        ),
        retry_after,
        timeouts,
        initialization_pages,
        cache: ctx
            .nested(&rp.cache, &format!("{pp}.cache"), "a map")
            .map(|c| super::cache::validate(c, &format!("{pp}.cache"), ctx)),
    }
}

fn validate_process_model(
    pm: Option<&RawProcessModel>,
    worker: Option<&RawWorker>,
    p: &str,
    wp: &str,
    ctx: &mut Ctx<'_>,
) -> ProcessModel {
    let f = |k: &str| format!("{p}.{k}");
    let get = |sel: fn(&RawProcessModel) -> &Leaf| pm.and_then(|pm| sel(pm).clone());
    let command = ctx.name(&get(|r| &r.command), &f("command"));
    let args = match pm {
        Some(pm) => ctx
            .texts(&pm.args, &f("args"))
            .into_iter()
            .map(|(_, a)| a)
            .collect(),
        None => Vec::new(),
    };
    let mut env = BTreeMap::new();
    if let Some(map) = pm.and_then(|pm| ctx.nested(&pm.env, &f("env"), "a map")) {
        for (k, v) in map {
            let ep = format!("{}.{k}", f("env"));
            if let Some(v) = ctx.text_of(&v.0, &ep) {
                env.insert(k.clone(), v);
            }
        }
    }
    let working_directory = ctx.path_buf(&get(|r| &r.working_directory), &f("workingDirectory"));
    if let Some(wd) = &working_directory {
        if !wd.is_dir() {
            let v = get(|r| &r.working_directory).map(|s| s.0);
            ctx.report(
                &f("workingDirectory"),
                v.as_ref(),
                format!("{} is not a directory", wd.display()),
            );
        }
    }
    let ping_path = match get(|r| &r.ping_path) {
        Some(l) => ctx.url_path(&Some(l), &f("pingPath")),
        // roost's own worker answers the built-in health path; another command's readiness
        // is a TCP connect unless told otherwise.
        None if command.is_none() => Some("/.roost/ping".to_string()),
        None => None,
    };
    let mut user = ctx.name(&get(|r| &r.user), &f("user"));
    if let Some(u) = &user {
        if !u.chars().all(|c| c.is_ascii_digit())
            && !matches!(nix::unistd::User::from_name(u), Ok(Some(_)))
        {
            ctx.report(
                &f("user"),
                get(|r| &r.user).map(|s| s.0).as_ref(),
                "no such user on this machine",
            );
            user = None;
        }
    }
    let mut group = ctx.name(&get(|r| &r.group), &f("group"));
    if let Some(g) = &group {
        if !g.chars().all(|c| c.is_ascii_digit())
            && !matches!(nix::unistd::Group::from_name(g), Ok(Some(_)))
        {
            ctx.report(
                &f("group"),
                get(|r| &r.group).map(|s| s.0).as_ref(),
                "no such group on this machine",
            );
            group = None;
        }
    }
    ProcessModel {
        command,
        args,
        env,
        working_directory,
        max_processes: ctx.usize(&get(|r| &r.max_processes), &f("maxProcesses"), 1, 1),
        max_concurrent_requests_per_process: ctx.usize(
            &get(|r| &r.max_concurrent_requests_per_process),
            &f("maxConcurrentRequestsPerProcess"),
            100,
            1,
        ),
        listen: ctx.choice(
            &get(|r| &r.listen),
            &f("listen"),
            &[("unix", WorkerListen::Unix), ("tcp", WorkerListen::Tcp)],
            WorkerListen::Unix,
        ),
        idle_timeout: ctx.duration(
            &get(|r| &r.idle_timeout),
            &f("idleTimeout"),
            dur(20 * 60),
            false,
        ),
        pinging_enabled: ctx.boolean(&get(|r| &r.pinging_enabled), &f("pingingEnabled"), true),
        ping_interval: ctx.duration(
            &get(|r| &r.ping_interval),
            &f("pingInterval"),
            dur(30),
            true,
        ),
        ping_response_time: ctx.duration(
            &get(|r| &r.ping_response_time),
            &f("pingResponseTime"),
            dur(90),
            true,
        ),
        ping_path,
        startup_time_limit: ctx.duration(
            &get(|r| &r.startup_time_limit),
            &f("startupTimeLimit"),
            dur(90),
            true,
        ),
        shutdown_time_limit: ctx.duration(
            &get(|r| &r.shutdown_time_limit),
            &f("shutdownTimeLimit"),
            dur(90),
            false,
        ),
        user,
        group,
        worker: validate_worker(worker, wp, ctx),
    }
}

fn validate_worker(w: Option<&RawWorker>, p: &str, ctx: &mut Ctx<'_>) -> WorkerSettings {
    let f = |k: &str| format!("{p}.{k}");
    let get = |sel: fn(&RawWorker) -> &Leaf| w.and_then(|w| sel(w).clone());
    let app = ctx
        .name(&get(|r| &r.app), &f("app"))
        .unwrap_or_else(|| "demo".to_string());
    let min_worker_threads =
        ctx.opt_usize(&get(|r| &r.min_worker_threads), &f("minWorkerThreads"), 1);
    let max_worker_threads =
        ctx.opt_usize(&get(|r| &r.max_worker_threads), &f("maxWorkerThreads"), 1);
    if let (Some(min), Some(max)) = (min_worker_threads, max_worker_threads) {
        if min > max {
            let v = get(|r| &r.min_worker_threads).map(|s| s.0);
            ctx.report(
                &f("minWorkerThreads"),
                v.as_ref(),
                format!("must not exceed maxWorkerThreads ({max})"),
            );
        }
    }
    let io_threads = ctx.opt_usize(&get(|r| &r.io_threads), &f("ioThreads"), 1);
    let request_queue_limit = ctx.usize(
        &get(|r| &r.request_queue_limit),
        &f("requestQueueLimit"),
        5000,
        1,
    );
    let max_concurrent_requests_per_cpu = ctx.usize(
        &get(|r| &r.max_concurrent_requests_per_cpu),
        &f("maxConcurrentRequestsPerCPU"),
        5000,
        0,
    );
    let max_concurrent_threads_per_cpu = ctx.usize(
        &get(|r| &r.max_concurrent_threads_per_cpu),
        &f("maxConcurrentThreadsPerCPU"),
        0,
        0,
    );

    let mut pools = BTreeMap::new();
    if let Some(w) = w {
        for (np, name, rp) in
            ctx.entries(&w.pools, &f("pools"), "a thread pool (a map with min, max)")
        {
            let min = ctx.usize(&rp.min, &format!("{np}.min"), 1, 1);
            let max = ctx.usize(&rp.max, &format!("{np}.max"), min.max(cores()), 1);
            if min > max {
                ctx.report(
                    &format!("{np}.min"),
                    leaf_value(&rp.min),
                    format!("must not exceed max ({max})"),
                );
            }
            pools.insert(name.to_string(), NamedThreadPool { min, max });
        }
    }
    let mut routes = BTreeMap::new();
    if let Some(map) = w.and_then(|w| ctx.nested(&w.routes, &f("routes"), "a map")) {
        for (prefix, target) in map {
            let rp = format!("{}.{prefix}", f("routes"));
            if !prefix.starts_with('/') {
                ctx.report(&rp, None, "a route prefix must start with `/`");
                continue;
            }
            let Some(t) = ctx.text_of(&target.0, &rp) else {
                continue;
            };
            if !pools.contains_key(&t) {
                let msg = match suggest(&t, pools.keys().map(String::as_str)) {
                    Some(s) => format!("no such worker thread pool (did you mean `{s}`?)"),
                    None => format!(
                        "no such worker thread pool (define it under {})",
                        f("pools")
                    ),
                };
                ctx.report(&rp, Some(&target.0), msg);
                continue;
            }
            routes.insert(prefix.clone(), t);
        }
    }
    let (blocking_detection, blocking_detection_interval) = validate_blocking_detection(w, p, ctx);
    WorkerSettings {
        app,
        min_worker_threads,
        max_worker_threads,
        io_threads,
        request_queue_limit,
        max_concurrent_requests_per_cpu,
        max_concurrent_threads_per_cpu,
        pools,
        routes,
        blocking_detection,
        blocking_detection_interval,
    }
}

/// `worker.blockingDetection` (bool, default true) and `worker.blockingDetectionInterval`
/// (1 ms to 10 s, default 50 ms): below 1 ms the monitor would mostly measure itself; a
/// period beyond 10 s would react after a typical burst is over.
fn validate_blocking_detection(
    w: Option<&RawWorker>,
    p: &str,
    ctx: &mut Ctx<'_>,
) -> (bool, Duration) {
    const DEFAULT: Duration = DEFAULT_BLOCKING_DETECTION_INTERVAL;
    let get = |sel: fn(&RawWorker) -> &Leaf| w.and_then(|w| sel(w).clone());
    let on = ctx.boolean(
        &get(|r| &r.blocking_detection),
        &format!("{p}.blockingDetection"),
        true,
    );
    let key = format!("{p}.blockingDetectionInterval");
    let raw = get(|r| &r.blocking_detection_interval);
    let interval = ctx.duration(&raw, &key, DEFAULT, true);
    let range = Duration::from_millis(1)..=Duration::from_secs(10);
    if !range.contains(&interval) {
        let why = format!("must be between 1ms and 10s (got {interval:?})");
        ctx.report(&key, raw.as_ref().map(|s| &s.0), why);
        return (on, DEFAULT);
    }
    (on, interval)
}

fn validate_recycling(r: Option<&RawRecycling>, p: &str, ctx: &mut Ctx<'_>) -> Recycling {
    let disallow = ctx.boolean(
        &r.and_then(|r| r.disallow_overlapping_rotation.clone()),
        &format!("{p}.disallowOverlappingRotation"),
        false,
    );
    let pp = format!("{p}.periodicRestart");
    let pr = r.and_then(|r| ctx.nested(&r.periodic_restart, &pp, "a map"));
    let get = |sel: fn(&RawPeriodicRestart) -> &Leaf| pr.and_then(|pr| sel(pr).clone());
    let mut schedule = Vec::new();
    let sp = format!("{pp}.schedule");
    if let Some(list) = pr.and_then(|pr| ctx.nested(&pr.schedule, &sp, "a list")) {
        for (i, t) in list.iter().enumerate() {
            match t.0.as_str().and_then(parse_time_of_day) {
                Some(secs) => schedule.push(secs),
                None => ctx.report(
                    &format!("{sp}[{i}]"),
                    Some(&t.0),
                    "not a time of day (write \"HH:MM\", e.g. \"03:00\")",
                ),
            }
        }
        schedule.sort_unstable();
        schedule.dedup();
    }
    Recycling {
        disallow_overlapping_rotation: disallow,
        time: ctx.duration(
            &get(|r| &r.time),
            &format!("{pp}.time"),
            dur(29 * 3600),
            false,
        ),
        requests: ctx.uint(&get(|r| &r.requests), &format!("{pp}.requests"), 0, 0),
        private_memory_kib: ctx.uint(
            &get(|r| &r.private_memory),
            &format!("{pp}.privateMemory"),
            0,
            0,
        ),
        schedule,
    }
}

fn validate_failure(r: Option<&RawFailure>, p: &str, ctx: &mut Ctx<'_>) -> Failure {
    let get = |sel: fn(&RawFailure) -> &Leaf| r.and_then(|r| sel(r).clone());
    Failure {
        rapid_fail_protection: ctx.boolean(
            &get(|r| &r.rapid_fail_protection),
            &format!("{p}.rapidFailProtection"),
            true,
        ),
        rapid_fail_protection_interval: ctx.duration(
            &get(|r| &r.rapid_fail_protection_interval),
            &format!("{p}.rapidFailProtectionInterval"),
            dur(5 * 60),
            true,
        ),
        rapid_fail_protection_max_crashes: ctx.u32(
            &get(|r| &r.rapid_fail_protection_max_crashes),
            &format!("{p}.rapidFailProtectionMaxCrashes"),
            5,
            1,
        ),
        load_balancer_capabilities: ctx.choice(
            &get(|r| &r.load_balancer_capabilities),
            &format!("{p}.loadBalancerCapabilities"),
            &[
                ("HttpLevel", LoadBalancerCapabilities::HttpLevel),
                ("TcpLevel", LoadBalancerCapabilities::TcpLevel),
            ],
            LoadBalancerCapabilities::HttpLevel,
        ),
    }
}

#[derive(Clone, Copy)]
enum Balancing {
    RoundRobin,
    LeastRequests,
    PowerOfTwoChoices,
    LeastResponseTime,
    Random,
    Hash,
}

fn parse_hash_key(v: &Value) -> Result<HashKey, &'static str> {
    const HINT: &str = "hashKey is {header: NAME}, {cookie: NAME}, {query: NAME} or clientAddress";
    match v {
        Value::String(s) if s.eq_ignore_ascii_case("clientAddress") => Ok(HashKey::ClientAddress),
        Value::Object(m) if m.len() == 1 => {
            let (k, v) = m.iter().next().ok_or(HINT)?;
            let name = v
                .as_str()
                .filter(|s| !s.trim().is_empty())
                .ok_or(HINT)?
                .to_string();
            match k.as_str() {
                "header" => Ok(HashKey::Header(name)),
                "cookie" => Ok(HashKey::Cookie(name)),
                "query" => Ok(HashKey::Query(name)),
                _ => Err(HINT),
            }
        }
        _ => Err(HINT),
    }
}

fn validate_farm(f: &RawFarm, p: &str, ctx: &mut Ctx<'_>) -> Farm {
    let sp = format!("{p}.servers");
    let items = ctx.items(&f.servers, &sp, "a server (a map with address)");
    // With discovery the servers come from DNS, so a static list is optional.
    if items.is_empty() && !matches!(f.servers, Some(Lenient::Bad(_))) && f.discovery.is_none() {
        ctx.report(
            &sp,
            None,
            "a farm needs at least one server (or `discovery`)",
        );
    }
    let mut servers = Vec::new();
    let mut seen: HashMap<(String, u16), String> = HashMap::new();
    for (ip, rs) in items {
        let ap = format!("{ip}.address");
        let weight = ctx.u32(&rs.weight, &format!("{ip}.weight"), 1, 1);
        let max_concurrent_requests = ctx.usize(
            &rs.max_concurrent_requests,
            &format!("{ip}.maxConcurrentRequests"),
            100,
            1,
        );
        let backup = ctx.boolean(&rs.backup, &format!("{ip}.backup"), false);
        let Some(address) = ctx.name(&rs.address, &ap) else {
            if rs.address.is_none() {
                ctx.report(&ap, None, "a server needs an `address` (host:port)");
            }
            continue;
        };
        match parse_server_address(&address) {
            Ok((host, port, tls)) => {
                if let Some(first) = seen.get(&(host.clone(), port)) {
                    ctx.report(
                        &ap,
                        leaf_value(&rs.address),
                        format!("duplicate server (first at {first})"),
                    );
                } else {
                    seen.insert((host.clone(), port), ap.clone());
                }
                servers.push(Server {
                    address,
                    host,
                    port,
                    tls,
                    weight,
                    max_concurrent_requests,
                    backup,
                });
            }
            Err(msg) => ctx.report(&ap, leaf_value(&rs.address), msg),
        }
    }

    let lbp = format!("{p}.loadBalancing");
    let kind = ctx.choice(
        &f.load_balancing,
        &lbp,
        &[
            ("roundRobin", Balancing::RoundRobin),
            ("leastRequests", Balancing::LeastRequests),
            ("powerOfTwoChoices", Balancing::PowerOfTwoChoices),
            ("leastResponseTime", Balancing::LeastResponseTime),
            ("random", Balancing::Random),
            ("hash", Balancing::Hash),
        ],
        Balancing::RoundRobin,
    );
    let hkp = format!("{p}.hashKey");
    let hash_key = match f.hash_key.as_ref().map(|s| &s.0).filter(|v| !v.is_null()) {
        None => None,
        Some(v) => match parse_hash_key(v) {
            Ok(k) => Some(k),
            Err(msg) => {
                ctx.report(&hkp, Some(v), msg);
                None
            }
        },
    };
    let load_balancing = match kind {
        Balancing::RoundRobin => LoadBalancing::RoundRobin,
        Balancing::LeastRequests => LoadBalancing::LeastRequests,
        Balancing::PowerOfTwoChoices => LoadBalancing::PowerOfTwoChoices,
        Balancing::LeastResponseTime => LoadBalancing::LeastResponseTime,
        Balancing::Random => LoadBalancing::Random,
        Balancing::Hash => match hash_key.clone() {
            Some(k) => LoadBalancing::Hash(k),
            None => {
                if f.hash_key.is_none() {
                    ctx.report(&lbp, leaf_value(&f.load_balancing), "hash needs `hashKey` ({header: NAME}, {cookie: NAME}, {query: NAME} or clientAddress)");
                }
                LoadBalancing::RoundRobin
            }
        },
    };
    if hash_key.is_some() && !matches!(kind, Balancing::Hash) {
        ctx.report(
            &hkp,
            None,
            "hashKey is used only with `loadBalancing: hash`",
        );
    }

    let hp = format!("{p}.healthCheck");
    let health_check = ctx.nested(&f.health_check, &hp, "a map").map(|h| {
        let path = match ctx.url_path(&h.path, &format!("{hp}.path")) {
            Some(path) => path,
            None => {
                if h.path.is_none() {
                    ctx.report(
                        &format!("{hp}.path"),
                        None,
                        "a health check needs a `path` (e.g. /health)",
                    );
                }
                "/".to_string()
            }
        };
        let esp = format!("{hp}.expectedStatus");
        let expected_status = match h
            .expected_status
            .as_ref()
            .map(|s| &s.0)
            .filter(|v| !v.is_null())
        {
            None => (200, 399),
            Some(v) => parse_status_range(v).unwrap_or_else(|| {
                ctx.report(
                    &esp,
                    Some(v),
                    "not a status range (write \"200-399\" or \"200\")",
                );
                (200, 399)
            }),
        };
        HealthCheck {
            path,
            interval: ctx.duration(&h.interval, &format!("{hp}.interval"), dur(30), true),
            timeout: ctx.duration(&h.timeout, &format!("{hp}.timeout"), dur(5), true),
            expected_status,
            response_match: ctx.name(&h.response_match, &format!("{hp}.responseMatch")),
            healthy_threshold: ctx.u32(
                &h.healthy_threshold,
                &format!("{hp}.healthyThreshold"),
                2,
                1,
            ),
            unhealthy_threshold: ctx.u32(
                &h.unhealthy_threshold,
                &format!("{hp}.unhealthyThreshold"),
                3,
                1,
            ),
        }
    });
    let affp = format!("{p}.affinity");
    let affinity = ctx.nested(&f.affinity, &affp, "a map").map(|a| {
        let cp = format!("{affp}.cookie");
        let cookie = match ctx.name(&a.cookie, &cp) {
            Some(c)
                if c.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(ch)) =>
            {
                c
            }
            Some(_) => {
                ctx.report(&cp, leaf_value(&a.cookie), "not a valid cookie name");
                "RoostAffinity".to_string()
            }
            None => "RoostAffinity".to_string(),
        };
        Affinity { cookie }
    });
    let od_path = format!("{p}.outlierDetection");
    let outlier_detection = ctx
        .nested(&f.outlier_detection, &od_path, "a map")
        .map(|o| {
            let base_ejection_time = ctx.duration(
                &o.base_ejection_time,
                &format!("{od_path}.baseEjectionTime"),
                dur(30),
                true,
            );
            let mp = format!("{od_path}.maxEjectionTime");
            let mut max_ejection_time = ctx.duration(&o.max_ejection_time, &mp, dur(300), true);
            if max_ejection_time < base_ejection_time {
                if o.max_ejection_time.is_some() {
                    ctx.report(
                        &mp,
                        leaf_value(&o.max_ejection_time),
                        "must not be shorter than baseEjectionTime",
                    );
                }
                max_ejection_time = base_ejection_time;
            }
            let pp = format!("{od_path}.maxEjectionPercent");
            let mut max_ejection_percent = ctx.u32(&o.max_ejection_percent, &pp, 50, 0);
            if max_ejection_percent > 100 {
                ctx.report(&pp, leaf_value(&o.max_ejection_percent), "at most 100");
                max_ejection_percent = 50;
            }
            OutlierDetection {
                consecutive_failures: ctx.u32(
                    &o.consecutive_failures,
                    &format!("{od_path}.consecutiveFailures"),
                    5,
                    1,
                ),
                base_ejection_time,
                max_ejection_time,
                max_ejection_percent,
            }
        });
    let slow_start = ctx.duration(
        &f.slow_start,
        &format!("{p}.slowStart"),
        Duration::ZERO,
        false,
    );

    let rp = format!("{p}.retries");
    let r = ctx.nested(&f.retries, &rp, "a map");
    let retries = Retries {
        idempotent: ctx.boolean(
            &r.and_then(|r| r.idempotent.clone()),
            &format!("{rp}.idempotent"),
            true,
        ),
        budget_percent: {
            let bp = format!("{rp}.budgetPercent");
            let l = r.and_then(|r| r.budget_percent.clone());
            let v = ctx.u32(&l, &bp, 20, 0);
            if v > 100 {
                ctx.report(&bp, leaf_value(&l), "at most 100");
                20
            } else {
                v
            }
        },
        min_retries: ctx.u32(
            &r.and_then(|r| r.min_retries.clone()),
            &format!("{rp}.minRetries"),
            3,
            0,
        ),
    };

    let tp = format!("{p}.tls");
    let tls = match ctx.nested(&f.tls, &tp, "a map") {
        None => FarmTls::default(),
        Some(t) => validate_farm_tls(t, &tp, ctx),
    };

    let dp = format!("{p}.discovery");
    let discovery = ctx.nested(&f.discovery, &dp, "a map").and_then(|d| {
        let np = format!("{dp}.dns");
        let interval = ctx.duration(&d.interval, &format!("{dp}.interval"), dur(30), true);
        let weight = ctx.u32(&d.weight, &format!("{dp}.weight"), 1, 1);
        let max_concurrent_requests = ctx.usize(
            &d.max_concurrent_requests,
            &format!("{dp}.maxConcurrentRequests"),
            100,
            1,
        );
        let Some(dns) = ctx.name(&d.dns, &np) else {
            if d.dns.is_none() {
                ctx.report(&np, None, "discovery needs `dns` (name:port)");
            }
            return None;
        };
        match parse_server_address(&dns) {
            Ok((host, port, tls)) => Some(Discovery {
                dns,
                host,
                port,
                tls,
                interval,
                weight,
                max_concurrent_requests,
            }),
            Err(msg) => {
                ctx.report(&np, leaf_value(&d.dns), msg);
                None
            }
        }
    });

    Farm {
        servers,
        load_balancing,
        health_check,
        affinity,
        outlier_detection,
        slow_start,
        retries,
        tls,
        discovery,
    }
}

fn validate_farm_tls(t: &RawFarmTls, tp: &str, ctx: &mut Ctx<'_>) -> FarmTls {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let cap = format!("{tp}.caFile");
    let ca_file = ctx.path_buf(&t.ca_file, &cap);
    if let Some(ca) = &ca_file {
        match super::files::read_bounded(ca, super::files::PEM_CAP) {
            Err(e) => ctx.report(&cap, leaf_value(&t.ca_file), e.to_string()),
            Ok(bytes) => {
                match CertificateDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>() {
                    Ok(c) if !c.is_empty() => {}
                    _ => ctx.report(
                        &cap,
                        leaf_value(&t.ca_file),
                        format!("{} holds no PEM CERTIFICATE block", ca.display()),
                    ),
                }
            }
        }
    }
    let ccp = format!("{tp}.clientCert");
    let ckp = format!("{tp}.clientKey");
    let client_cert = ctx.path_buf(&t.client_cert, &ccp);
    let client_key = ctx.path_buf(&t.client_key, &ckp);
    match (&client_cert, &client_key) {
        (Some(c), Some(k)) => {
            for (which, msg) in check_cert_files(c, k) {
                let (path, v) = if which == "cert" {
                    (&ccp, leaf_value(&t.client_cert))
                } else {
                    (&ckp, leaf_value(&t.client_key))
                };
                ctx.report(path, v, msg);
            }
        }
        (Some(_), None) => ctx.report(&ccp, None, "a client certificate needs `clientKey` too"),
        (None, Some(_)) => ctx.report(&ckp, None, "a client key needs `clientCert` too"),
        (None, None) => {}
    }
    let snp = format!("{tp}.serverName");
    let server_name = ctx.name(&t.server_name, &snp).and_then(|n| {
        match rustls_pki_types::ServerName::try_from(n.as_str()) {
            Ok(_) => Some(n),
            Err(_) => {
                ctx.report(
                    &snp,
                    leaf_value(&t.server_name),
                    "not a DNS name or IP address",
                );
                None
            }
        }
    });
    let ip = format!("{tp}.insecureSkipVerify");
    let insecure_skip_verify = ctx.boolean(&t.insecure_skip_verify, &ip, false);
    let warning = insecure_skip_verify.then(|| {
        ctx.warning(
            &ip,
            leaf_value(&t.insecure_skip_verify),
            "farm servers' TLS certificates are NOT verified: anyone on the path can impersonate them",
        )
    });
    FarmTls {
        ca_file,
        client_cert,
        client_key,
        server_name,
        insecure_skip_verify,
        warning,
    }
}

/// Warnings a valid configuration still deserves (`roost check` prints them, `serve`
/// logs them); they never make a configuration invalid.
pub fn warnings(c: &Config) -> Vec<String> {
    c.pools
        .values()
        .filter_map(|p| match &p.backend {
            Backend::Farm(f) => f.tls.warning.clone(),
            Backend::Garden(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        assert_eq!(
            parse_listen("127.0.0.1:8080"),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            parse_listen("0.0.0.0:80"),
            Some("0.0.0.0:80".parse().unwrap())
        );
        assert_eq!(parse_listen("[::]:443"), Some("[::]:443".parse().unwrap()));
        assert_eq!(parse_listen(":8080"), Some("0.0.0.0:8080".parse().unwrap()));
        assert_eq!(
            parse_listen("localhost:1"),
            Some("127.0.0.1:1".parse().unwrap())
        );
        assert_eq!(parse_listen("127.0.0.1"), None);
        assert_eq!(parse_listen("8080"), None);
        assert_eq!(parse_listen("1.2.3.4:99999"), None);
    }

    #[test]
    fn server_address_forms() {
        assert_eq!(
            parse_server_address("10.0.0.1:81"),
            Ok(("10.0.0.1".into(), 81, false))
        );
        assert_eq!(
            parse_server_address("http://app:8080"),
            Ok(("app".into(), 8080, false))
        );
        assert_eq!(
            parse_server_address("https://app.example.com"),
            Ok(("app.example.com".into(), 443, true))
        );
        assert_eq!(
            parse_server_address("[::1]:9000"),
            Ok(("::1".into(), 9000, false))
        );
        assert!(parse_server_address("app").is_err());
        assert!(parse_server_address("ftp://app:21").is_err());
        assert!(parse_server_address("http://app:80/path").is_err());
        assert!(parse_server_address("app:0").is_err());
    }

    #[test]
    fn times_and_status_ranges() {
        assert_eq!(parse_time_of_day("03:00"), Some(3 * 3600));
        assert_eq!(parse_time_of_day("23:59"), Some(23 * 3600 + 59 * 60));
        assert_eq!(parse_time_of_day("24:00"), None);
        assert_eq!(parse_time_of_day("3pm"), None);
        assert_eq!(
            parse_status_range(&Value::from("200-399")),
            Some((200, 399))
        );
        assert_eq!(parse_status_range(&Value::from(204)), Some((204, 204)));
        assert_eq!(parse_status_range(&Value::from("399-200")), None);
        assert_eq!(parse_status_range(&Value::from("abc")), None);
    }

    #[test]
    fn iis_timespans() {
        assert_eq!(parse_timespan("00:02:00"), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_timespan("1.05:00:00"),
            Some(Duration::from_secs(29 * 3600))
        );
        assert_eq!(parse_timespan("00:20"), None);
        assert_eq!(parse_timespan("10x"), None);
        assert_eq!(parse_timespan("00:61:00"), None);
    }

    #[test]
    fn host_names() {
        assert_eq!(
            check_host_name("WWW.Example.com"),
            Ok("www.example.com".into())
        );
        assert_eq!(check_host_name("*.example.com"), Ok("*.example.com".into()));
        assert!(check_host_name("a.*.com").is_err());
        assert!(check_host_name("example.com:80").is_err());
    }

    #[test]
    fn hash_keys() {
        assert_eq!(
            parse_hash_key(&Value::from("clientAddress")),
            Ok(HashKey::ClientAddress)
        );
        assert_eq!(
            parse_hash_key(&serde_json::json!({"header": "X-User"})),
            Ok(HashKey::Header("X-User".into()))
        );
        assert!(parse_hash_key(&serde_json::json!({"body": "x"})).is_err());
        assert!(parse_hash_key(&Value::from("ip")).is_err());
    }
}
