//! The YAML document as one position-marked tree: parsed once (yaml-rust2 events with
//! markers), scalars typed as they are read (see [`scalar`](super::scalar)), anchors
//! expanded at their aliases. The tree gives what serde alone cannot: the line:column of
//! every key path and the duplicate-key walk; [`de`](super::de) deserializes the raw
//! configuration straight from it, and [`schema`](super::schema) walks it for unknown keys.

use super::scalar;
use serde_json::Value;
use std::collections::hash_map;
use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// 1-based (line, column).
pub type Pos = (usize, usize);

/// Where a node that came from the environment (not the file) "is": nowhere.
pub const NO_POS: Pos = (0, 0);

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Map(Vec<Entry>),
    Seq(Vec<Marked>),
    /// Null, a boolean, a number or text, already typed.
    Scalar(Value),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Marked {
    pub node: Node,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Marked,
}

impl Marked {
    /// An empty map (the document of an empty file).
    pub fn empty_map(pos: Pos) -> Self {
        Marked {
            node: Node::Map(Vec::new()),
            pos,
        }
    }

    /// How many nodes this subtree holds (for the alias-expansion budget).
    fn size(&self) -> usize {
        match &self.node {
            Node::Map(es) => 1 + es.iter().map(|e| 1 + e.value.size()).sum::<usize>(),
            Node::Seq(items) => 1 + items.iter().map(Marked::size).sum::<usize>(),
            Node::Scalar(_) => 1,
        }
    }
}

fn pos(m: Marker) -> Pos {
    // yaml-rust2 columns are 0-based (despite its docs); editors count from 1.
    (m.line(), m.col() + 1)
}

/// Nodes that aliases may add in all (a "billion laughs" document is refused, as
/// serde_yaml refused it, instead of filling memory).
const ALIAS_BUDGET: usize = 4_000_000;

enum Frame {
    Map {
        entries: Vec<Entry>,
        key: Option<(String, Pos)>,
        pos: Pos,
        anchor: usize,
    },
    Seq {
        items: Vec<Marked>,
        pos: Pos,
        anchor: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Marked>,
    anchors: HashMap<usize, Marked>,
    alias_nodes: usize,
    documents: usize,
    error: Option<(String, Pos)>,
}

impl Builder {
    fn fail(&mut self, msg: String, at: Pos) {
        self.error.get_or_insert((msg, at));
    }

    /// Whether the next node completes a key (not a value) of the innermost map.
    fn wants_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

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
                        Node::Scalar(Value::String(s)) => s,
                        Node::Scalar(other) => other.to_string(),
                        _ => "?".to_string(),
                    };
                    *key = Some((text, v.pos));
                }
            },
        }
    }

    /// A node is done: remember it under its anchor, then place it.
    fn complete(&mut self, v: Marked, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, v.clone());
        }
        self.push_value(v);
    }

    fn scalar(
        &mut self,
        text: String,
        style: TScalarStyle,
        anchor: usize,
        tag: Option<Tag>,
        at: Pos,
    ) {
        if self.wants_key() && tag.is_none() {
            // Keys stay as written (`1`, `true`, `~` are names there).
            self.push_value(Marked {
                node: Node::Scalar(Value::String(text)),
                pos: at,
            });
            return;
        }
        let value = match (tag, style) {
            (None, TScalarStyle::Plain) => Ok(scalar::plain(&text)),
            (None, _) => Ok(Value::String(text)),
            (Some(t), _) => core_suffix(&t).and_then(|sfx| scalar::tagged(sfx, &text)),
        };
        match value {
            Ok(v) => self.complete(
                Marked {
                    node: Node::Scalar(v),
                    pos: at,
                },
                anchor,
            ),
            Err(msg) => self.fail(msg, at),
        }
    }

    fn alias(&mut self, id: usize, at: Pos) {
        let Some(found) = self.anchors.get(&id) else {
            return self.fail("unknown alias".into(), at);
        };
        self.alias_nodes += found.size();
        if self.alias_nodes > ALIAS_BUDGET {
            return self.fail(
                format!("aliases expand to more than {ALIAS_BUDGET} nodes"),
                at,
            );
        }
        let v = found.clone();
        self.push_value(v);
    }

    fn end(&mut self) {
        let (v, anchor) = match self.stack.pop() {
            Some(Frame::Map {
                entries,
                pos,
                anchor,
                ..
            }) => (
                Marked {
                    node: Node::Map(entries),
                    pos,
                },
                anchor,
            ),
            Some(Frame::Seq { items, pos, anchor }) => (
                Marked {
                    node: Node::Seq(items),
                    pos,
                },
                anchor,
            ),
            None => return,
        };
        self.complete(v, anchor);
    }

    fn start(&mut self, frame: Frame, tag: Option<Tag>, at: Pos) {
        if let Some(t) = tag {
            if let Err(msg) = core_suffix(&t) {
                self.fail(msg, at);
            }
        }
        self.stack.push(frame);
    }
}

/// The suffix of a core-schema tag (`!!int` → `int`); other tags are refused, as
/// serde_yaml refused them (it read a local tag as an enum variant, which no key is).
fn core_suffix(t: &Tag) -> Result<&str, String> {
    const CORE: &str = "tag:yaml.org,2002:";
    if t.handle == CORE {
        return Ok(&t.suffix);
    }
    match t.suffix.strip_prefix(CORE) {
        Some(s) if t.handle.is_empty() => Ok(s),
        _ => Err(format!("unsupported tag `{}{}`", t.handle, t.suffix)),
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let at = pos(mark);
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    self.fail("more than one document (a configuration is one)".into(), at);
                }
            }
            Event::MappingStart(anchor, tag) => {
                let frame = Frame::Map {
                    entries: Vec::new(),
                    key: None,
                    pos: at,
                    anchor,
                };
                self.start(frame, tag, at)
            }
            Event::SequenceStart(anchor, tag) => {
                let frame = Frame::Seq {
                    items: Vec::new(),
                    pos: at,
                    anchor,
                };
                self.start(frame, tag, at)
            }
            Event::MappingEnd | Event::SequenceEnd => self.end(),
            Event::Scalar(s, style, anchor, tag) => self.scalar(s, style, anchor, tag, at),
            Event::Alias(id) => self.alias(id, at),
            _ => {}
        }
    }
}

/// Parse YAML text into a marked tree. `Ok(None)` for an empty document.
pub fn parse(text: &str) -> Result<Option<Marked>, (String, Pos)> {
    parse_piece(text).map(|(root, _)| root)
}

/// [`parse`], also saying whether the text used anchors or aliases: a piece of a
/// document that does cannot stand alone (see [`split`](super::split)).
pub(super) fn parse_piece(text: &str) -> Result<(Option<Marked>, bool), (String, Pos)> {
    let mut b = Builder::default();
    Parser::new_from_str(text)
        .load(&mut b, true)
        .map_err(|e| (e.info().to_string(), pos(*e.marker())))?;
    match b.error {
        Some(e) => Err(e),
        None => Ok((b.root, !b.anchors.is_empty() || b.alias_nodes > 0)),
    }
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
                // Entries the environment added have no place in the file.
                for e in entries
                    .iter()
                    .filter(|e| e.key_pos != NO_POS && e.value.pos != NO_POS)
                {
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

/// A key written twice in one map: (path, position of the repeat, line of the first).
pub fn duplicate_keys(root: Option<&Marked>) -> Vec<(String, Pos, usize)> {
    const SCAN_AT_MOST: usize = 8;
    fn walk<'a>(m: &'a Marked, path: &mut Vec<Step<'a>>, out: &mut Vec<(String, Pos, usize)>) {
        match &m.node {
            Node::Map(entries) => {
                // A hash set per large map, not a scan of the earlier keys: `pools` may
                // hold 100,000 entries, and a scan per entry made that quadratic. A map of
                // a few keys (nearly all of them) is scanned: cheaper than hashing.
                let mut first_line: HashMap<&str, usize> = HashMap::new();
                for (i, e) in entries.iter().enumerate() {
                    path.push(Step::Key(&e.key));
                    let first = if entries.len() <= SCAN_AT_MOST {
                        entries[..i]
                            .iter()
                            .find(|f| f.key == e.key)
                            .map(|f| f.key_pos.0)
                    } else {
                        match first_line.entry(e.key.as_str()) {
                            hash_map::Entry::Occupied(first) => Some(*first.get()),
                            hash_map::Entry::Vacant(v) => {
                                v.insert(e.key_pos.0);
                                None
                            }
                        }
                    };
                    if let Some(first) = first {
                        out.push((spell(path), e.key_pos, first));
                    }
                    walk(&e.value, path, out);
                    path.pop();
                }
            }
            Node::Seq(items) => {
                for (i, it) in items.iter().enumerate() {
                    path.push(Step::Index(i));
                    walk(it, path, out);
                    path.pop();
                }
            }
            Node::Scalar(_) => {}
        }
    }
    let mut out = Vec::new();
    if let Some(r) = root {
        walk(r, &mut Vec::new(), &mut out);
    }
    out
}

/// One step of a key path, kept as borrowed pieces: a path is spelled out only for a
/// key that is reported, not for each of the million keys a large file holds.
#[derive(Clone, Copy)]
pub enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// `pools.a.farm.servers[0]` from its steps.
pub fn spell(steps: &[Step<'_>]) -> String {
    steps.iter().fold(String::new(), |acc, s| match s {
        Step::Key(k) => join(&acc, k),
        Step::Index(i) => format!("{acc}[{i}]"),
    })
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
pub(super) mod tests {
    use super::*;

    /// A document with one unknown key (also used by the schema tests).
    pub(in crate::config) const DOC: &str = "\
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
