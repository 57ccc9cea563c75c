//! Loading: YAML text (a file, or the embedded default) parsed once into a marked tree,
//! checked for unknown and repeated keys, `ROOST_` environment overrides merged in (see
//! `env.rs`; the public functions pass the process environment), the raw configuration
//! deserialized from the tree, then validated into a [`Config`].

use super::de::{self, NodeDe};
use super::env;
use super::error::{ConfigErrors, Problem};
use super::files;
use super::model::Config;
use super::raw::{Dict, List, RawConfig, RawPool, RawSite};
use super::schema::{schema, unknown_keys};
use super::split;
use super::threads;
use super::tree::{self, Marked, Node};
use super::validate::{self, Ctx};
use serde::Deserialize;
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
    let at = |message: String, line_col| Problem {
        path: String::new(),
        value: None,
        message,
        line_col,
        file: origin.to_string(),
    };
    let root = parse_document(yaml).map_err(|(msg, pos)| ConfigErrors {
        problems: vec![at(msg, Some(pos))],
    })?;
    let mut env_problems = Vec::new();
    let overrides = env::map_env(env, root.as_ref(), &mut env_problems);
    // An empty (or comment-only) document is an empty map, not "null".
    let mut root = root.unwrap_or_else(|| Marked::empty_map((1, 1)));
    let (mut problems, raw) = if overrides.dict.is_empty() {
        // Nothing to merge: the key checks read the very tree the raw types come from,
        // so they run beside the deserialization.
        std::thread::scope(|s| {
            let keys = s.spawn(|| key_problems(&root, origin));
            let raw = raw_config(&root);
            (threads::joined(keys), raw)
        })
    } else {
        let keys = key_problems(&root, origin);
        if !repeats_a_key(&keys) {
            env::merge(&mut root, overrides.dict);
        }
        let raw = raw_config(&root);
        (keys, raw)
    };
    if repeats_a_key(&problems) {
        // Which of two values for one key counts is a guess; report what the text alone
        // shows until it is fixed.
        problems.sort_by_key(|p| p.line_col);
        return Err(ConfigErrors { problems });
    }
    problems.append(&mut env_problems);
    // Every nested value is lenient (see raw.rs), so this fails only on a shape no
    // `Lenient` covers; say so rather than panic.
    let raw = raw.map_err(|e| {
        problems.push(at(format!("YAML: {e}"), None));
        ConfigErrors {
            problems: problems.clone(),
        }
    })?;
    let mut ctx = Ctx::new(Some(&root), origin, &overrides.paths, base_dir);
    let config = validate::validate(&raw, &mut ctx);
    problems.append(&mut ctx.problems);
    drop(ctx);
    if yaml.len() > threads::DROP_ASIDE_ABOVE {
        threads::drop_aside((root, raw));
    }
    if problems.is_empty() {
        return Ok(config);
    }
    // Document order reads best; environment problems (no position) go last.
    problems.sort_by_key(|p| (p.line_col.is_none(), p.line_col));
    Err(ConfigErrors { problems })
}

/// The marked tree of a document that is a map of sections (or empty).
fn parse_document(yaml: &str) -> Result<Option<Marked>, (String, tree::Pos)> {
    let root = split::parse(yaml).map_err(|(msg, pos)| (format!("YAML syntax: {msg}"), pos))?;
    match &root {
        Some(r) if !matches!(r.node, tree::Node::Map(_)) => Err((
            "the document must be a map of sections (sites, pools, limits, admin, log)".into(),
            r.pos,
        )),
        _ => Ok(root),
    }
}

/// Whether the key problems include a repeated key.
fn repeats_a_key(problems: &[Problem]) -> bool {
    problems
        .iter()
        .any(|p| p.message.starts_with("duplicate key"))
}

/// The raw configuration from the tree. Its two sections that grow with the site
/// (`sites`, `pools`) are deserialized on threads of their own, each exactly as the
/// derived `Deserialize` of [`RawConfig`] would read its field.
fn raw_config(root: &Marked) -> Result<RawConfig, de::Error> {
    let Node::Map(entries) = &root.node else {
        return RawConfig::deserialize(NodeDe(root));
    };
    let large = |k: &str| k == "sites" || k == "pools";
    let section = |k: &str| entries.iter().find(|e| e.key == k).map(|e| &e.value);
    let rest = Marked {
        node: Node::Map(entries.iter().filter(|e| !large(&e.key)).cloned().collect()),
        pos: root.pos,
    };
    std::thread::scope(|s| {
        let pools =
            s.spawn(|| section("pools").map(|v| Dict::<Box<RawPool>>::deserialize(NodeDe(v))));
        let sites = section("sites").map(|v| List::<RawSite>::deserialize(NodeDe(v)));
        let mut raw = RawConfig::deserialize(NodeDe(&rest))?;
        raw.sites = sites.transpose()?.flatten();
        raw.pools = threads::joined(pools).transpose()?.flatten();
        Ok(raw)
    })
}

/// Unknown keys (against the schema traced from the raw types) and repeated keys.
fn key_problems(root: &Marked, origin: &str) -> Vec<Problem> {
    let problem = |path, message, pos| Problem {
        path,
        value: None,
        message,
        line_col: Some(pos),
        file: origin.to_string(),
    };
    let mut problems: Vec<Problem> = unknown_keys(Some(root), schema())
        .into_iter()
        .map(|u| problem(u.path.clone(), u.message(), u.pos))
        .collect();
    for (path, pos, first_line) in tree::duplicate_keys(Some(root)) {
        problems.push(problem(
            path,
            format!("duplicate key (first set on line {first_line})"),
            pos,
        ));
    }
    problems
}
