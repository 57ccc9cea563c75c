//! `ROOST_` environment overrides, merged into the marked YAML tree before the raw
//! configuration is read from it, the way figment merged its environment provider over
//! the YAML one: a map merges key by key, anything else replaces what the file had.
//!
//! Naming follows figment's `Env::prefixed("ROOST_").split("__")`
//! (`ROOST_POOLS__DEFAULT__QUEUELENGTH=5`, `ROOST_ADMIN__LISTEN=...`), but the variables
//! are taken as an explicit list so tests (which run in parallel) never touch the process
//! environment. Segments match the camelCase keys of the [schema](super::schema)
//! case-insensitively, and user-chosen names (pools) match the names in the file. Only
//! variables whose first segment is a top-level section (`sites`, `pools`, `limits`,
//! `admin`, `log`) are overrides: others such as `ROOST_LISTEN` belong to the worker
//! handshake and are left alone. Values are read with figment's value syntax (`5` is a
//! number, `"5"` text, `[a, b]` a list, `{a = 1}` a map).

use super::error::Problem;
use super::schema::{schema, Shape};
use super::tree::{self, Entry, Marked, Node, NO_POS};
use figment::value::{Dict, Value};

const PREFIX: &str = "ROOST_";

/// Environment overrides, and which key paths they set.
pub struct Overrides {
    pub dict: Dict,
    /// (key path, variable name)
    pub paths: Vec<(String, String)>,
}

/// The overrides among `env`; a variable that names no key is a problem.
pub fn map_env<I, K, V>(env: I, root: Option<&Marked>, problems: &mut Vec<Problem>) -> Overrides
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
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
        let Some(segs) = config_segments(&var) else {
            continue;
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
            Err((path, message)) => problems.push(Problem {
                path,
                value: Some(format!("{value:?}")),
                message,
                line_col: None,
                file: format!("environment {var}"),
            }),
        }
    }
    out
}

/// `ROOST_POOLS__A__QUEUELENGTH` → `["POOLS", "A", "QUEUELENGTH"]`, if it is an override.
fn config_segments(var: &str) -> Option<Vec<&str>> {
    let rest = var
        .get(..PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(PREFIX))
        .map(|_| &var[PREFIX.len()..])?;
    let segs: Vec<&str> = rest.split("__").collect();
    let Shape::Map(top) = schema() else {
        unreachable!("the schema root is a map")
    };
    top.iter()
        .any(|(n, _)| n.eq_ignore_ascii_case(segs[0]))
        .then_some(segs)
}

/// Map `["POOLS", "DEFAULT", "QUEUELENGTH"]` to `["pools", "default", "queueLength"]`.
pub fn resolve_segments(
    segs: &[&str],
    root: Option<&Marked>,
) -> Result<Vec<String>, (String, String)> {
    let mut shape = schema();
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
        let (key, sub) = match shape {
            Shape::Map(fields) => field(fields, seg, &here)?,
            Shape::Dict(sub) => (name(node, seg, keys.last()), &**sub),
            Shape::List(_) => return Err((
                here,
                "a list cannot be overridden item by item from the environment; set it in the file"
                    .into(),
            )),
            // Inside a leaf (e.g. hashKey's {header: X}) keys are the validator's business.
            Shape::Leaf => (seg.to_ascii_lowercase(), shape),
        };
        shape = sub;
        node = tree::child(node, &key);
        keys.push(key);
    }
    Ok(keys)
}

/// The camelCase field `seg` names, or an unknown-key problem with a suggestion.
fn field(
    fields: &'static [(&'static str, Shape)],
    seg: &str,
    here: &str,
) -> Result<(String, &'static Shape), (String, String)> {
    if let Some((n, sub)) = fields.iter().find(|(n, _)| n.eq_ignore_ascii_case(seg)) {
        return Ok((n.to_string(), sub));
    }
    let path = tree::join(here, &seg.to_ascii_lowercase());
    let msg = match tree::suggest(seg, fields.iter().map(|(n, _)| *n)) {
        Some(s) => format!("unknown key (did you mean `{s}`?)"),
        None => "unknown key".to_string(),
    };
    Err((path, msg))
}

/// A user-chosen name as the file spells it. A new name is taken in lowercase (pool
/// names), except process environment variables, whose case matters.
fn name(node: Option<&Marked>, seg: &str, parent: Option<&String>) -> String {
    let existing = tree::keys(node)
        .into_iter()
        .find(|k| k.eq_ignore_ascii_case(seg))
        .map(str::to_string);
    existing.unwrap_or_else(|| {
        if parent.is_some_and(|k| k == "env") {
            seg.to_string()
        } else {
            seg.to_ascii_lowercase()
        }
    })
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

/// Merge the overrides into the document: maps key by key, anything else replaced.
pub fn merge(root: &mut Marked, dict: Dict) {
    for (key, v) in dict {
        merge_entry(root, key, v);
    }
}

fn merge_entry(target: &mut Marked, key: String, v: Value) {
    let Node::Map(entries) = &mut target.node else {
        return;
    };
    match entries.iter_mut().find(|e| e.key == key) {
        Some(e) => match (&mut e.value.node, v) {
            (Node::Map(_), Value::Dict(_, d)) => merge(&mut e.value, d),
            (_, v) => e.value = from_figment(v),
        },
        None => entries.push(Entry {
            key,
            key_pos: NO_POS,
            value: from_figment(v),
        }),
    }
}

/// A figment value as a tree node (placed nowhere in the file).
fn from_figment(v: Value) -> Marked {
    let node = match v {
        Value::Dict(_, d) => Node::Map(
            d.into_iter()
                .map(|(key, v)| Entry {
                    key,
                    key_pos: NO_POS,
                    value: from_figment(v),
                })
                .collect(),
        ),
        Value::Array(_, items) => Node::Seq(items.into_iter().map(from_figment).collect()),
        // Scalars as figment's serde impl gives them, which is how they reached the raw
        // types before (a number stays a number, text stays text).
        other => Node::Scalar(serde_json::to_value(&other).unwrap_or_default()),
    };
    Marked { node, pos: NO_POS }
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
