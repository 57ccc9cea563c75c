//! A position-marked view of the YAML text (yaml-rust2 events with markers), used for
//! what serde cannot give: the line:column of every key path, and the walk that reports
//! unknown keys against [`SCHEMA`](super::raw::SCHEMA) with a "did you mean" suggestion.

use super::raw::Shape;
use std::collections::hash_map;
use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// 1-based (line, column).
pub type Pos = (usize, usize);

#[derive(Debug, Clone)]
pub enum Node {
    Map(Vec<Entry>),
    Seq(Vec<Marked>),
    Scalar(String),
    /// An alias or anything else we do not look inside.
    Other,
}

#[derive(Debug, Clone)]
pub struct Marked {
    pub node: Node,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Marked,
}

fn pos(m: Marker) -> Pos {
    // yaml-rust2 columns are 0-based (despite its docs); editors count from 1.
    (m.line(), m.col() + 1)
}

enum Frame {
    Map {
        entries: Vec<Entry>,
        key: Option<(String, Pos)>,
        pos: Pos,
    },
    Seq {
        items: Vec<Marked>,
        pos: Pos,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Marked>,
}

impl Builder {
    fn push_value(&mut self, v: Marked) {
        match self.stack.last_mut() {
            None => self.root = Some(v),
            Some(Frame::Seq { items, .. }) => items.push(v),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                Some((k, key_pos)) => entries.push(Entry {
                    key: k,
                    key_pos,
                    value: v,
                }),
                None => {
                    let text = match v.node {
                        Node::Scalar(s) => s,
                        _ => "?".to_string(),
                    };
                    *key = Some((text, v.pos));
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::MappingStart(..) => self.stack.push(Frame::Map {
                entries: Vec::new(),
                key: None,
                pos: pos(mark),
            }),
            Event::SequenceStart(..) => self.stack.push(Frame::Seq {
                items: Vec::new(),
                pos: pos(mark),
            }),
            Event::MappingEnd | Event::SequenceEnd => {
                let v = match self.stack.pop() {
                    Some(Frame::Map { entries, pos, .. }) => Marked {
                        node: Node::Map(entries),
                        pos,
                    },
                    Some(Frame::Seq { items, pos }) => Marked {
                        node: Node::Seq(items),
                        pos,
                    },
                    None => return,
                };
                self.push_value(v);
            }
            Event::Scalar(s, ..) => self.push_value(Marked {
                node: Node::Scalar(s),
                pos: pos(mark),
            }),
            Event::Alias(_) => self.push_value(Marked {
                node: Node::Other,
                pos: pos(mark),
            }),
            _ => {}
        }
    }
}

/// Parse YAML text into a marked tree. `Ok(None)` for an empty document.
pub fn parse(text: &str) -> Result<Option<Marked>, (String, Pos)> {
    let mut b = Builder::default();
    Parser::new_from_str(text)
        .load(&mut b, false)
        .map_err(|e| (e.info().to_string(), pos(*e.marker())))?;
    Ok(b.root)
}

/// Where each key path sits: the key's position (map entries) and where a problem with
/// the value is best shown (the value itself for scalars; the key for a map or list,
/// whose own position would be its first inner key).
#[derive(Debug, Default, Clone)]
pub struct Positions {
    map: HashMap<String, (Option<Pos>, Pos)>,
}

/// `parent.key`, or `key` at the root.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl Positions {
    pub fn build(root: Option<&Marked>) -> Self {
        let mut p = Positions::default();
        if let Some(r) = root {
            p.walk(r, String::new());
        }
        p
    }

    fn walk(&mut self, m: &Marked, path: String) {
        match &m.node {
            Node::Map(entries) => {
                for e in entries {
                    let child = join(&path, &e.key);
                    let shown = match e.value.node {
                        Node::Map(_) | Node::Seq(_) => e.key_pos,
                        _ => e.value.pos,
                    };
                    self.map.insert(child.clone(), (Some(e.key_pos), shown));
                    self.walk(&e.value, child);
                }
            }
            Node::Seq(items) => {
                for (i, it) in items.iter().enumerate() {
                    let child = format!("{path}[{i}]");
                    self.map.insert(child.clone(), (None, it.pos));
                    self.walk(it, child);
                }
            }
            _ => {}
        }
    }

    /// The value's position at `path`, else the nearest ancestor's (a missing key is best
    /// pointed at the map that should hold it).
    pub fn value_pos(&self, path: &str) -> Option<Pos> {
        let mut p = path;
        loop {
            if let Some((_, v)) = self.map.get(p) {
                return Some(*v);
            }
            p = parent(p)?;
        }
    }

    /// The key's position at `path` (for unknown keys), else its value's.
    pub fn key_pos(&self, path: &str) -> Option<Pos> {
        match self.map.get(path) {
            Some((Some(k), _)) => Some(*k),
            _ => self.value_pos(path),
        }
    }
}

/// `a.b[2]` → `a.b`, `a.b` → `a`, `a` → none.
pub fn parent(path: &str) -> Option<&str> {
    let cut = path.rfind(['.', '['])?;
    Some(&path[..cut])
}

/// The closest of `candidates` to `word`, if close enough to be a plausible typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let w = word.to_ascii_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = strsim::damerau_levenshtein(&w, &c.to_ascii_lowercase());
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    let (d, c) = best?;
    // One edit per three characters (at least one) separates typos from different words.
    let budget = (w.chars().count().max(c.chars().count()) / 3).max(1);
    (d <= budget).then_some(c)
}

/// An unknown key found by [`unknown_keys`]: its path and the suggested spelling.
#[derive(Debug, Clone, PartialEq)]
pub struct Unknown {
    pub path: String,
    pub pos: Pos,
    pub suggestion: Option<&'static str>,
    /// When the key is valid one level down: the section it belongs in.
    pub belongs_under: Option<&'static str>,
}

impl Unknown {
    /// `unknown key (did you mean `x`?)` and friends.
    pub fn message(&self) -> String {
        match (self.suggestion, self.belongs_under) {
            (Some(s), _) => format!("unknown key (did you mean `{s}`?)"),
            (None, Some(section)) => format!("unknown key here (it belongs under `{section}`)"),
            (None, None) => "unknown key".to_string(),
        }
    }
}

/// A section among `fields` whose own keys include `key` (e.g. `maxProcesses` is a key of
/// `processModel`), for keys written one level too high.
fn section_holding(key: &str, fields: &'static [(&'static str, Shape)]) -> Option<&'static str> {
    fields.iter().find_map(|(name, sub)| match sub {
        Shape::Map(inner) => inner.iter().any(|(k, _)| *k == key).then_some(*name),
        _ => None,
    })
}

/// Every key in the document that the schema does not know, in document order.
pub fn unknown_keys(root: Option<&Marked>, schema: &'static Shape) -> Vec<Unknown> {
    let mut out = Vec::new();
    if let Some(r) = root {
        walk_unknown(r, schema, "", &mut out);
    }
    out
}

fn walk_unknown(m: &Marked, shape: &'static Shape, path: &str, out: &mut Vec<Unknown>) {
    match (&m.node, shape) {
        (Node::Map(entries), Shape::Map(fields)) => {
            for e in entries {
                let child = join(path, &e.key);
                match fields.iter().find(|(name, _)| *name == e.key) {
                    Some((_, sub)) => walk_unknown(&e.value, sub, &child, out),
                    None => out.push(Unknown {
                        path: child,
                        pos: e.key_pos,
                        suggestion: suggest(&e.key, fields.iter().map(|(n, _)| *n)),
                        belongs_under: section_holding(&e.key, fields),
                    }),
                }
            }
        }
        (Node::Map(entries), Shape::Dict(sub)) => {
            for e in entries {
                walk_unknown(&e.value, sub, &join(path, &e.key), out);
            }
        }
        (Node::Seq(items), Shape::List(sub)) => {
            for (i, it) in items.iter().enumerate() {
                walk_unknown(it, sub, &format!("{path}[{i}]"), out);
            }
        }
        // Wrong shapes (a list where a map belongs, ...) are reported by the validator.
        _ => {}
    }
}

/// A key written twice in one map: (path, position of the repeat, line of the first).
pub fn duplicate_keys(root: Option<&Marked>) -> Vec<(String, Pos, usize)> {
    fn walk(m: &Marked, path: &str, out: &mut Vec<(String, Pos, usize)>) {
        match &m.node {
            Node::Map(entries) => {
                // A hash set per map, not a scan of the earlier keys: `pools` may hold
                // 100,000 entries, and a scan per entry made that quadratic.
                let mut first_line: HashMap<&str, usize> = HashMap::with_capacity(entries.len());
                for e in entries {
                    let child = join(path, &e.key);
                    match first_line.entry(e.key.as_str()) {
                        hash_map::Entry::Occupied(first) => {
                            out.push((child.clone(), e.key_pos, *first.get()))
                        }
                        hash_map::Entry::Vacant(v) => {
                            v.insert(e.key_pos.0);
                        }
                    }
                    walk(&e.value, &child, out);
                }
            }
            Node::Seq(items) => {
                for (i, it) in items.iter().enumerate() {
                    walk(it, &format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Some(r) = root {
        walk(r, "", &mut out);
    }
    out
}

/// Find the child map entry `key` of a node, if it is a map.
pub fn child<'a>(m: Option<&'a Marked>, key: &str) -> Option<&'a Marked> {
    match &m?.node {
        Node::Map(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.value),
        _ => None,
    }
}

/// Keys of a map node (for matching env segments against user-chosen names).
pub fn keys(m: Option<&Marked>) -> Vec<&str> {
    match m.map(|m| &m.node) {
        Some(Node::Map(entries)) => entries.iter().map(|e| e.key.as_str()).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::SCHEMA;

    const DOC: &str = "\
sites:
  - name: a
    bindings:
      - listen: 127.0.0.1:80
pools:
  default:
    queueLenght: 5
    farm:
      servers: [{address: x:1}]
";

    #[test]
    fn positions_are_one_based_line_and_column() {
        let root = parse(DOC).unwrap();
        let p = Positions::build(root.as_ref());
        assert_eq!(p.key_pos("sites[0].name"), Some((2, 5)));
        assert_eq!(p.value_pos("sites[0].name"), Some((2, 11)));
        assert_eq!(p.value_pos("sites[0].bindings[0].listen"), Some((4, 17)));
        assert_eq!(p.key_pos("pools.default.queueLenght"), Some((7, 5)));
        // A missing key points at the nearest ancestor that exists.
        assert_eq!(
            p.value_pos("pools.default.farm.loadBalancing"),
            p.value_pos("pools.default.farm")
        );
    }

    #[test]
    fn unknown_keys_found_with_suggestions() {
        let root = parse(DOC).unwrap();
        let u = unknown_keys(root.as_ref(), &SCHEMA);
        assert_eq!(
            u,
            vec![Unknown {
                path: "pools.default.queueLenght".into(),
                pos: (7, 5),
                suggestion: Some("queueLength"),
                belongs_under: None,
            }]
        );
    }

    #[test]
    fn suggestion_only_when_close() {
        assert_eq!(
            suggest("queueLenght", ["queueLength", "queueTimeout"]),
            Some("queueLength")
        );
        assert_eq!(suggest("timeout", ["timeouts", "farm"]), Some("timeouts"));
        assert_eq!(suggest("banana", ["queueLength", "farm"]), None);
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse("a: [1, 2\nb: c\n").unwrap_err();
        assert!(err.1 .0 >= 1);
    }

    #[test]
    fn duplicate_keys_found() {
        let root = parse("a: 1\nb:\n  c: 1\n  c: 2\na: 3\n").unwrap();
        assert_eq!(
            duplicate_keys(root.as_ref()),
            vec![("b.c".to_string(), (4, 3), 3), ("a".to_string(), (5, 1), 1)]
        );
    }

    /// The duplicate-key walk must stay linear in the size of one map (`pools` may hold
    /// 100,000 names). No absolute time: 4x the keys may cost at most 10x the time (best
    /// of three each), where a per-key scan of the earlier keys costs 16x.
    #[test]
    fn duplicate_keys_scale_linearly_with_map_size() {
        let best = |n: usize| {
            let doc: String = (0..n).map(|i| format!("p{i}: 1\n")).collect();
            let root = parse(&doc).unwrap();
            (0..3)
                .map(|_| {
                    let t = std::time::Instant::now();
                    assert!(duplicate_keys(root.as_ref()).is_empty());
                    t.elapsed()
                })
                .min()
                .unwrap()
        };
        let (small, large) = (best(10_000), best(40_000));
        assert!(
            large < small * 10,
            "10,000 keys: {small:?}, 40,000 keys: {large:?}"
        );
    }

    #[test]
    fn parent_paths() {
        assert_eq!(parent("a.b[2]"), Some("a.b"));
        assert_eq!(parent("a.b"), Some("a"));
        assert_eq!(parent("a"), None);
    }
}
