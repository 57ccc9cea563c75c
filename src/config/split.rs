//! A large document parsed on several threads. YAML parses at about 16 MB/s here, and a
//! configuration of 100,000 pools is 22 MB, so one core alone spends most of the
//! `roost check` budget (issue 12: under 2 s) in the parser.
//!
//! The text is cut at lines that start an entry of a top-level section (`  - name: ...`
//! under `sites:`, `  p1:` under `pools:`), each piece after the first is given its
//! section's header line back, and the pieces are parsed apart, then stitched: the
//! entries of a section cut in two are joined, and every position is moved back to its
//! line in the whole text.
//!
//! Why a cut cannot change what the text means: a cut line sits at exactly the
//! indentation of its section's entries, so no block node (a nested map or list, a block
//! scalar) can run across it; a flow collection, a quoted scalar or a multi-line plain
//! scalar that ran across it would leave the piece before it unfinished, which is a
//! syntax error. Anchors and aliases could reach across a cut, so a piece that uses
//! either is not trusted. Whenever a piece fails or cannot be trusted, the whole text
//! is parsed on one thread, which also gives the exact error. [`agrees`] checks the
//! claim (the `config` fuzz target and `tests` below run it).

use super::tree::{self, Marked, Node, Pos};

/// Below this the parse is quick enough on one thread.
const PARALLEL_ABOVE: usize = 1 << 20;

/// Parse YAML text into a marked tree, on several threads when it is large.
pub fn parse(text: &str) -> Result<Option<Marked>, (String, Pos)> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    if text.len() <= PARALLEL_ABOVE || threads < 2 {
        return tree::parse(text);
    }
    match parse_in_pieces(text, threads) {
        Some(root) => Ok(Some(root)),
        None => tree::parse(text),
    }
}

/// The test of the claim above: when the pieces parse, the whole parses to the same tree.
pub fn agrees(text: &str, pieces: usize) -> bool {
    match parse_in_pieces(text, pieces) {
        Some(split) => tree::parse(text) == Ok(Some(split)),
        None => true,
    }
}

/// A line where the text may be cut.
#[derive(Clone, Copy)]
struct Cut<'t> {
    /// Byte offset of the line's start.
    at: usize,
    /// Its 1-based line number.
    line: usize,
    /// The header line of the section it is in (`pools:`), and the section's key.
    header: &'t str,
    key: &'t str,
}

/// The tree from `pieces` pieces parsed apart, or `None` if it cannot be trusted.
fn parse_in_pieces(text: &str, pieces: usize) -> Option<Marked> {
    let cuts = choose(&cut_lines(text)?, text.len(), pieces);
    if cuts.is_empty() {
        return None;
    }
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c.at).collect();
    bounds.push(text.len());
    let (head, tails) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..cuts.len())
            .map(|i| {
                let (cut, end) = (&cuts[i], bounds[i + 1]);
                s.spawn(move || tail(text, cut, end))
            })
            .collect();
        let head = trusted(&text[..cuts[0].at]);
        let tails: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().ok().flatten())
            .collect();
        (head, tails)
    });
    let mut root = head?;
    for (cut, tail) in cuts.iter().zip(tails) {
        join(&mut root, tail?, cut.key)?;
    }
    Some(root)
}

/// The piece from `cut` to `end`, parsed with its section's header put back, its
/// positions moved to where they are in the whole text.
fn tail(text: &str, cut: &Cut<'_>, end: usize) -> Option<Marked> {
    let piece = format!("{}\n{}", cut.header, &text[cut.at..end]);
    let mut tree = trusted(&piece)?;
    // Piece line 1 is the header put back; piece line 2 is the cut line.
    shift(&mut tree, cut.line - 2);
    Some(tree)
}

/// A piece's tree, if it parsed, is a map, and reached for no anchor or alias.
fn trusted(piece: &str) -> Option<Marked> {
    match tree::parse_piece(piece) {
        Ok((Some(root), false)) if matches!(root.node, Node::Map(_)) => Some(root),
        _ => None,
    }
}

/// Append a later piece's entries to the tree so far: the first continues the last
/// section of the tree (same key, same kind), the others follow it.
fn join(root: &mut Marked, tail: Marked, key: &str) -> Option<()> {
    let (Node::Map(into), Node::Map(from)) = (&mut root.node, tail.node) else {
        return None;
    };
    let mut from = from.into_iter();
    let cont = from.next().filter(|e| e.key == key)?;
    let last = into.last_mut().filter(|e| e.key == key)?;
    match (&mut last.value.node, cont.value.node) {
        (Node::Seq(items), Node::Seq(more)) => items.extend(more),
        (Node::Map(entries), Node::Map(more)) => entries.extend(more),
        _ => return None,
    }
    into.extend(from);
    Some(())
}

/// Move every position of a piece down by `lines`.
fn shift(m: &mut Marked, lines: usize) {
    m.pos.0 += lines;
    match &mut m.node {
        Node::Map(entries) => {
            for e in entries {
                e.key_pos.0 += lines;
                shift(&mut e.value, lines);
            }
        }
        Node::Seq(items) => items.iter_mut().for_each(|i| shift(i, lines)),
        Node::Scalar(_) => {}
    }
}

/// `pieces - 1` cuts spread evenly by bytes (fewer if there are few candidates).
fn choose<'t>(candidates: &[Cut<'t>], len: usize, pieces: usize) -> Vec<Cut<'t>> {
    let mut out: Vec<Cut<'t>> = Vec::new();
    for k in 1..pieces {
        let target = len * k / pieces;
        let i = candidates.partition_point(|c| c.at < target);
        if let Some(c) = candidates.get(i) {
            if out.last().is_none_or(|l| l.at < c.at) {
                out.push(*c);
            }
        }
    }
    out
}

/// What the scan is inside of: a section whose entries sit at `indent`.
struct Section<'t> {
    header: &'t str,
    key: &'t str,
    /// The entries' indentation and whether they are list items, once the first is seen.
    entries: Option<(usize, bool)>,
}

/// Every line the text may be cut at, or `None` if the document is not a plain block map
/// of sections (flow style at the top, document markers, directives, complex keys) or
/// holds a NUL or a bare CR.
fn cut_lines(text: &str) -> Option<Vec<Cut<'_>>> {
    if !plain_lines(text) {
        return None;
    }
    let mut cuts = Vec::new();
    let mut section: Option<Section<'_>> = None;
    let mut last_content = "";
    let mut at = 0;
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        let line = raw.trim_end_matches(['\n', '\r']);
        let start = at;
        at += raw.len();
        let body = line.trim_start_matches(' ');
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let indent = line.len() - body.len();
        let item = body == "-" || body.starts_with("- ");
        let after_clean_end = ends_cleanly(std::mem::replace(&mut last_content, line));
        if indent == 0
            && !(item
                && section
                    .as_ref()
                    .is_some_and(|s| s.entries == Some((0, true))))
        {
            section = top_level(line, item, &mut section)?;
            continue;
        }
        let Some(s) = section.as_mut() else { continue };
        match s.entries {
            // The first entry of a section is no place to cut: none of it precedes the cut.
            None => s.entries = Some((indent, item)),
            Some(e) if e == (indent, item) && (item || simple_key(body)) && after_clean_end => cuts
                .push(Cut {
                    at: start,
                    line: i + 1,
                    header: s.header,
                    key: s.key,
                }),
            Some(_) => {}
        }
    }
    Some(cuts)
}

/// Whether the text's lines are what this scan takes them for. The YAML scanner takes a
/// NUL for the end of the text, so a piece after it would read what the whole never does;
/// and it ends a line at a bare CR too, which this scan (lines end at LF) would not count,
/// shifting every later position. Both were found by the `config` fuzz target.
fn plain_lines(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == 0 || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n')))
}

/// A line at column 0: a section header (`pools:`), a key with its value on the line
/// (no entries to cut at), or the first item of a section of unindented list items. Any
/// other shape means "do not cut this document".
fn top_level<'t>(
    line: &'t str,
    item: bool,
    current: &mut Option<Section<'t>>,
) -> Option<Option<Section<'t>>> {
    if item {
        // `sites:` then `- name: ...` at column 0: the section's entries are unindented.
        let s = current.take()?;
        if s.entries.is_some() {
            return None;
        }
        return Some(Some(Section {
            entries: Some((0, true)),
            ..s
        }));
    }
    if line.starts_with("---") || line.starts_with("...") || !simple_key(line) {
        return None;
    }
    let (key, after) = line.split_once(':')?;
    let after = after.trim_start_matches([' ', '\t']);
    let header_only = after.is_empty() || after.starts_with('#');
    Some(header_only.then_some(Section {
        header: line,
        key,
        entries: None,
    }))
}

/// Whether a piece may end after this line. A node left empty at the end of a piece
/// (`bindings:`, `- `, a block scalar header, a lone tag) is placed by the parser at the
/// next token, which the piece does not have; and a comment may hide any of those. So
/// the line must visibly end in a value (found by the `config` fuzz target).
fn ends_cleanly(line: &str) -> bool {
    let t = line.trim_end();
    let last = t.rsplit(' ').next().unwrap_or("");
    let block_header = last.starts_with(['|', '>'])
        && last[1..]
            .bytes()
            .all(|b| matches!(b, b'-' | b'+' | b'0'..=b'9'));
    !t.contains('#')
        && !t.ends_with([':', '-', '?'])
        && !block_header
        && !last.starts_with(['!', '&'])
}

/// `name:` or `name: value`, with a name of letters, digits, `_`, `-` and `.` (a quoted,
/// flow or explicit key is never cut at).
fn simple_key(body: &str) -> bool {
    let Some((key, after)) = body.split_once(':') else {
        return false;
    };
    !key.is_empty()
        && !key.starts_with('-')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && (after.is_empty() || after.starts_with([' ', '\t']))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
# a comment at the top
log: info
sites:
  - name: a
    hostNames: [a.example]
    applications: [{path: /, pool: p1}]
  # between entries
  - name: b
    bindings:
      - listen: \"127.0.0.1:1\"
  - name: c
pools:
  p1:
    queueLength: 3
  p2: {queueLength: 4}
  p3:
    description: |
      text that
      runs on
limits:
  maxConnections: 10
";

    #[test]
    fn every_way_of_cutting_agrees_with_the_whole() {
        let whole = tree::parse(DOC).unwrap().unwrap();
        for pieces in 2..12 {
            let split = parse_in_pieces(DOC, pieces).expect("this document can be cut");
            assert_eq!(split, whole, "{pieces} pieces");
        }
    }

    #[test]
    fn cuts_fall_only_on_entries_of_sections() {
        let lines: Vec<usize> = cut_lines(DOC).unwrap().iter().map(|c| c.line).collect();
        assert_eq!(lines, vec![8, 11, 15, 16]);
    }

    #[test]
    fn anything_that_could_reach_across_a_cut_is_parsed_whole() {
        let aliased = "pools:\n  p1: &x {queueLength: 3}\n  p2: *x\n";
        assert!(parse_in_pieces(aliased, 2).is_none());
        let flow = "pools:\n  p1: {queueLength: 3,\n  p2: 4}\n";
        assert!(parse_in_pieces(flow, 2).is_none());
        let quoted = "sites:\n  - name: \"a\n  - b\"\n";
        assert!(parse_in_pieces(quoted, 2).is_none());
        assert!(parse_in_pieces("{sites: [], pools: {}}\n", 2).is_none());
        assert!(parse_in_pieces("---\npools:\n  a: 1\n  b: 2\n", 2).is_none());
        for doc in [aliased, flow, quoted] {
            assert!(agrees(doc, 2), "{doc}");
        }
    }

    #[test]
    fn a_nul_ends_the_text_for_the_parser_so_such_a_text_is_never_cut() {
        // `fuzz/corpus/config/regress-nul-before-a-cut`: the whole parse stopped at the
        // NUL, the piece after the cut read on.
        let doc = "sites:\n- a\n- n\0\0 x\n- b\n- c\n";
        assert!(parse_in_pieces(doc, 2).is_none());
        for pieces in 2..5 {
            assert!(agrees(doc, pieces));
        }
    }

    #[test]
    fn a_bare_cr_ends_a_line_for_the_parser_so_such_a_text_is_never_cut() {
        // `fuzz/corpus/config/regress-bare-cr-lines`: CRs ended lines for the parser and
        // not for the cut scan, so the pieces' positions were shifted wrongly.
        let doc = "sites:\n  - name: s\u{fffd}\r\r\r\r\n \n  -";
        assert!(parse_in_pieces(doc, 2).is_none());
        let crlf = "sites:\r\n- name: a\r\n- name: b\r\n- name: c\r\n";
        assert!(
            parse_in_pieces(crlf, 2).is_some(),
            "CRLF files are still cut"
        );
        for doc in [doc, crlf, "sites:\n- a\r- b\n- c\n- d\n"] {
            for pieces in 2..5 {
                assert!(agrees(doc, pieces), "{doc:?}");
            }
        }
    }

    #[test]
    fn a_piece_never_ends_in_an_empty_value() {
        // `fuzz/corpus/config/regress-empty-item-before-a-cut`: the parser places an empty
        // value at the next token, which the piece before a cut does not have.
        for doc in [
            "sites:  \n- \n \n- nt-=*0,--",
            "sites:\n- a: 1\n  b:\n- c\n",
            "sites:\n- a: |\n- c\n",
            "sites:\n- a: x # note\n- c\n",
            "sites:\n- a: !!str\n- c\n",
        ] {
            assert!(parse_in_pieces(doc, 2).is_none(), "{doc}");
            assert!(agrees(doc, 2), "{doc}");
        }
    }

    #[test]
    fn unindented_list_items_are_cut_too() {
        let doc = "sites:\n- name: a\n- name: b\n- name: c\npools:\n  p: {}\n";
        let split = parse_in_pieces(doc, 3).unwrap();
        assert_eq!(split, tree::parse(doc).unwrap().unwrap());
    }

    #[test]
    fn mutated_documents_agree() {
        // Every single-line deletion and every line indented one more or one less: the
        // cut parse is either refused or equal to the whole.
        let lines: Vec<&str> = DOC.lines().collect();
        for i in 0..lines.len() {
            for variant in 0..3 {
                let mut v: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                match variant {
                    0 => drop(v.remove(i)),
                    1 => v[i] = format!(" {}", v[i]),
                    _ => v[i] = v[i].strip_prefix(' ').unwrap_or(&v[i]).to_string(),
                }
                let doc = v.join("\n") + "\n";
                for pieces in 2..6 {
                    assert!(agrees(&doc, pieces), "{pieces} pieces of:\n{doc}");
                }
            }
        }
    }
}
