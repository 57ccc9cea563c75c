//! Loading: YAML text (a file, or the embedded default) plus `ROOST_` environment
//! overrides, merged with figment, then checked and turned into a [`Config`].
//!
//! Environment overrides follow figment's `Env::prefixed("ROOST_").split("__")` naming
//! (`ROOST_POOLS__DEFAULT__QUEUELENGTH=5`, `ROOST_ADMIN__LISTEN=...`), but the variables are
//! taken as an explicit list so tests (which run in parallel) never touch the process
//! environment; the public functions pass `std::env::vars()`. Segments match the camelCase
//! keys case-insensitively, and user-chosen names (pools) match the names in the file.
//! Only variables whose first segment is a top-level section (`sites`, `pools`, `limits`,
//! `admin`, `log`) are overrides: others such as `ROOST_LISTEN` belong to the worker
//! handshake and are left alone.

use super::error::{ConfigErrors, Problem};
use super::files;
use super::model::Config;
use super::raw::{RawConfig, Shape, SCHEMA};
use super::tree::{self, Marked};
use super::validate::{self, Ctx};
use figment::providers::{Format, Yaml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use std::path::{Path, PathBuf};

/// The default configuration compiled into the binary (`proxy.yaml` at the repo root).
pub const EMBEDDED_DEFAULT: &str = include_str!("../../proxy.yaml");
/// How problems in the embedded default name their "file".
pub const EMBEDDED_ORIGIN: &str = "<embedded default>";

/// Where a loaded configuration came from (for the startup log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Embedded,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Embedded => f.write_str("the embedded default configuration"),
        }
    }
}

const PREFIX: &str = "ROOST_";

fn process_env() -> Vec<(String, String)> {
    // vars() panics on non-UTF-8 variables; those can never be ours, so skip them.
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Load and validate a file, with `ROOST_` overrides from the process environment.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    load_file_with_env(path, process_env())
}

/// What `roost check` runs: the same as [`load_file`], every problem collected.
pub fn check_file(path: &Path) -> Result<Config, ConfigErrors> {
    load_file(path)
}

/// [`load_file`] with an explicit environment.
pub fn load_file_with_env<I, K, V>(path: &Path, env: I) -> Result<Config, ConfigErrors>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let origin = path.display().to_string();
    let text = files::read_bounded_string(path, files::CONFIG_CAP)
        .map_err(|e| ConfigErrors::single(&origin, e.to_string()))?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
    load_str_in(&text, &origin, &base, env)
}

/// Load YAML text; relative paths resolve against the current directory.
pub fn load_str(yaml: &str, origin: &str) -> Result<Config, ConfigErrors> {
    load_str_with_env(yaml, origin, process_env())
}

/// [`load_str`] with an explicit environment.
pub fn load_str_with_env<I, K, V>(yaml: &str, origin: &str, env: I) -> Result<Config, ConfigErrors>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let base = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    load_str_in(yaml, origin, &base, env)
}

/// The file if it exists, else the embedded default; `Source` says which.
pub fn load_default_or_file(path: &Path) -> Result<(Config, Source), ConfigErrors> {
    if path.exists() {
        load_file(path).map(|c| (c, Source::File(path.to_path_buf())))
    } else {
        load_str(EMBEDDED_DEFAULT, EMBEDDED_ORIGIN).map(|c| (c, Source::Embedded))
    }
}

/// The whole pipeline with everything explicit: YAML text, its name for messages, the
/// directory relative paths resolve against, and the environment.
pub fn load_str_in<I, K, V>(
    yaml: &str,
    origin: &str,
    base_dir: &Path,
    env: I,
) -> Result<Config, ConfigErrors>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let root = match tree::parse(yaml) {
        Ok(r) => r,
        Err((msg, pos)) => {
            return Err(ConfigErrors {
                problems: vec![Problem {
                    path: String::new(),
                    value: None,
                    message: format!("YAML syntax: {msg}"),
                    line_col: Some(pos),
                    file: origin.to_string(),
                }],
            })
        }
    };
    if let Some(r) = root
        .as_ref()
        .filter(|r| !matches!(r.node, tree::Node::Map(_)))
    {
        return Err(ConfigErrors {
            problems: vec![Problem {
                path: String::new(),
                value: None,
                message:
                    "the document must be a map of sections (sites, pools, limits, admin, log)"
                        .into(),
                line_col: Some(r.pos),
                file: origin.to_string(),
            }],
        });
    }
    let mut problems = Vec::new();
    for u in tree::unknown_keys(root.as_ref(), &SCHEMA) {
        problems.push(Problem {
            message: u.message(),
            path: u.path,
            value: None,
            line_col: Some(u.pos),
            file: origin.to_string(),
        });
    }
    let duplicates = tree::duplicate_keys(root.as_ref());
    for (path, pos, first_line) in &duplicates {
        problems.push(Problem {
            path: path.clone(),
            value: None,
            message: format!("duplicate key (first set on line {first_line})"),
            line_col: Some(*pos),
            file: origin.to_string(),
        });
    }
    if !duplicates.is_empty() {
        // The YAML deserializer rejects the whole document over a repeated key, so the
        // values cannot be checked until it is fixed; report what the text alone shows.
        problems.sort_by_key(|p| p.line_col);
        return Err(ConfigErrors { problems });
    }
    let overrides = map_env(env, root.as_ref(), &mut problems);

    // An empty (or comment-only) document is an empty map, not "null".
    let yaml_text = if root.is_some() { yaml } else { "{}" };
    let figment = Figment::from(Yaml::string(yaml_text)).merge(EnvList(overrides.dict));
    let raw: RawConfig = match figment.extract() {
        Ok(r) => r,
        Err(e) => {
            // Every nested value is lenient (see raw.rs), so only the YAML text can fail
            // here: the YAML deserializer is stricter than the marker parser in a few
            // corners (e.g. `{listen: :80}` in flow style). Its message has the position.
            problems.push(Problem {
                path: String::new(),
                value: None,
                message: format!("YAML: {e}"),
                line_col: None,
                file: origin.to_string(),
            });
            return Err(ConfigErrors { problems });
        }
    };
    let mut ctx = Ctx::new(root.as_ref(), origin, &overrides.paths, base_dir);
    let config = validate::validate(&raw, &mut ctx);
    problems.append(&mut ctx.problems);
    if problems.is_empty() {
        Ok(config)
    } else {
        // Document order reads best; environment problems (no position) go last.
        problems.sort_by_key(|p| (p.line_col.is_none(), p.line_col));
        Err(ConfigErrors { problems })
    }
}

/// Environment overrides as figment data, and which key paths they set.
struct Overrides {
    dict: Dict,
    /// (key path, variable name)
    paths: Vec<(String, String)>,
}

/// A figment provider over an explicit list of variables, already mapped to key paths.
struct EnvList(Dict);

impl Provider for EnvList {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable(s)")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.0.clone()))
    }
}

fn map_env<I, K, V>(env: I, root: Option<&Marked>, problems: &mut Vec<Problem>) -> Overrides
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let Shape::Map(top) = &SCHEMA else {
        unreachable!("the schema root is a map")
    };
    let mut out = Overrides {
        dict: Dict::new(),
        paths: Vec::new(),
    };
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string()))
        .collect();
    // Stable order so a variable set twice (impossible in a real environment, possible in
    // a test list) resolves predictably: the later one wins.
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (var, value) in vars {
        let Some(rest) = var
            .get(..PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(PREFIX))
            .map(|_| &var[PREFIX.len()..])
        else {
            continue;
        };
        let segs: Vec<&str> = rest.split("__").collect();
        if !top.iter().any(|(n, _)| n.eq_ignore_ascii_case(segs[0])) {
            continue;
        }
        let problem = |path: String, message: String| Problem {
            path,
            value: Some(format!("{value:?}")),
            message,
            line_col: None,
            file: format!("environment {var}"),
        };
        match resolve_segments(&segs, root) {
            Ok(keys) => {
                let path = keys
                    .iter()
                    .fold(String::new(), |acc, k| tree::join(&acc, k));
                let v: Value = value.parse().unwrap_or_else(|never| match never {});
                insert(&mut out.dict, &keys, v);
                out.paths.push((path, var.clone()));
            }
            Err((path, msg)) => problems.push(problem(path, msg)),
        }
    }
    out
}

/// Map `["POOLS", "DEFAULT", "QUEUELENGTH"]` to `["pools", "default", "queueLength"]`.
fn resolve_segments(segs: &[&str], root: Option<&Marked>) -> Result<Vec<String>, (String, String)> {
    let mut shape = &SCHEMA;
    let mut node = root;
    let mut keys: Vec<String> = Vec::new();
    for seg in segs {
        let here = keys
            .iter()
            .fold(String::new(), |acc, k| tree::join(&acc, k));
        if seg.is_empty() {
            return Err((
                here,
                "empty key segment (use `__` only between keys)".into(),
            ));
        }
        let key = match shape {
            Shape::Map(fields) => match fields.iter().find(|(n, _)| n.eq_ignore_ascii_case(seg)) {
                Some((n, sub)) => {
                    shape = sub;
                    n.to_string()
                }
                None => {
                    let path = tree::join(&here, &seg.to_ascii_lowercase());
                    let msg = match tree::suggest(seg, fields.iter().map(|(n, _)| *n)) {
                        Some(s) => format!("unknown key (did you mean `{s}`?)"),
                        None => "unknown key".to_string(),
                    };
                    return Err((path, msg));
                }
            },
            Shape::Dict(sub) => {
                shape = sub;
                // Use the name as the file spells it. A new name is taken in lowercase
                // (pool names), except process environment variables, whose case matters.
                let existing = tree::keys(node)
                    .into_iter()
                    .find(|k| k.eq_ignore_ascii_case(seg))
                    .map(str::to_string);
                existing.unwrap_or_else(|| {
                    if keys.last().is_some_and(|k| k == "env") {
                        seg.to_string()
                    } else {
                        seg.to_ascii_lowercase()
                    }
                })
            }
            Shape::List(_) => return Err((
                here,
                "a list cannot be overridden item by item from the environment; set it in the file"
                    .into(),
            )),
            // Inside a leaf (e.g. hashKey's {header: X}) keys are the validator's business.
            Shape::Leaf => seg.to_ascii_lowercase(),
        };
        node = tree::child(node, &key);
        keys.push(key);
    }
    Ok(keys)
}

fn insert(dict: &mut Dict, keys: &[String], v: Value) {
    let Some((first, rest)) = keys.split_first() else {
        return;
    };
    if rest.is_empty() {
        dict.insert(first.clone(), v);
        return;
    }
    let entry = dict
        .entry(first.clone())
        .or_insert_with(|| Value::from(Dict::new()));
    if entry.as_dict().is_none() {
        *entry = Value::from(Dict::new());
    }
    if let Value::Dict(_, d) = entry {
        insert(d, rest, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_map_to_camel_case_and_existing_names() {
        let root = tree::parse("pools:\n  MyPool:\n    queueLength: 1\n").unwrap();
        assert_eq!(
            resolve_segments(&["POOLS", "MYPOOL", "QUEUELENGTH"], root.as_ref()).unwrap(),
            vec!["pools", "MyPool", "queueLength"]
        );
        assert_eq!(
            resolve_segments(
                &["POOLS", "NEW", "PROCESSMODEL", "MAXPROCESSES"],
                root.as_ref()
            )
            .unwrap(),
            vec!["pools", "new", "processModel", "maxProcesses"]
        );
        let err = resolve_segments(&["POOLS", "MYPOOL", "QUEUELENGHT"], root.as_ref()).unwrap_err();
        assert_eq!(err.0, "pools.MyPool.queuelenght");
        assert!(err.1.contains("queueLength"), "{}", err.1);
        assert!(resolve_segments(&["SITES", "0", "NAME"], root.as_ref()).is_err());
        assert_eq!(
            resolve_segments(
                &["POOLS", "MYPOOL", "PROCESSMODEL", "ENV", "RUST_LOG"],
                root.as_ref()
            )
            .unwrap(),
            vec!["pools", "MyPool", "processModel", "env", "RUST_LOG"]
        );
    }

    #[test]
    fn handshake_variables_are_not_overrides() {
        let mut problems = Vec::new();
        let o = map_env(
            [
                ("ROOST_LISTEN", "unix:/x"),
                ("ROOST_POOL", "a"),
                ("PATH", "/bin"),
            ],
            None,
            &mut problems,
        );
        assert!(problems.is_empty());
        assert!(o.dict.is_empty());
    }
}
