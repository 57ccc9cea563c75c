//! Replays every input in `fuzz/corpus/<target>/` through the same invariant checks the
//! fuzz targets run (`roost::fuzzing`), so the minimised corpora, crash reproducers
//! included, are tested by plain `cargo test` with no fuzzer installed. See TESTING.md.

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", dir.display());
    files
}

/// Run `check` on every file of `target`'s corpus; a failure names the file.
fn replay(target: &str, check: impl Fn(&[u8])) {
    for (path, data) in corpus(target) {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&data)));
        if run.is_err() {
            panic!("{target}: {} fails its invariants", path.display());
        }
    }
}

#[test]
fn request_head_corpus() {
    replay("request_head", roost::fuzzing::request_head);
}

#[test]
fn chunked_corpus() {
    replay("chunked", roost::fuzzing::chunked);
}

#[test]
fn response_head_corpus() {
    replay("response_head", roost::fuzzing::response_head);
}

#[test]
fn config_corpus() {
    replay("config", roost::fuzzing::config);
}

#[test]
fn router_corpus() {
    replay("router", roost::fuzzing::router);
}

#[test]
fn front_e2e_corpus() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    replay("front_e2e", |data| roost::fuzzing::front_e2e(&rt, data));
}

/// Found by the chunked target's split invariant: a chunk-size line over 4 KiB (a long
/// extension) was refused when its end arrived in a later read but accepted when it came
/// in one read, so the outcome depended on TCP segmentation. Now refused either way.
#[test]
fn regress_long_chunk_size_line_is_refused_however_it_arrives() {
    let wire = format!("1;{}\r\na\r\n0\r\n\r\n", "e".repeat(5000));
    let mut whole = bytes::BytesMut::from(wire.as_bytes());
    assert!(roost::h1::Chunked::Size.step(&mut whole).is_err());
    roost::fuzzing::chunked(wire.as_bytes());
}

/// Found by `front_e2e` (session 3): `GET /#a` reached the member as `GET /`, since `Uri`
/// drops a fragment, while a parser that keeps the target saw `/#a`. A request target has
/// no fragment (RFC 9112 §3.2): now 400, and the input replays in the corpus as
/// `regress-fragment-in-target`.
#[test]
fn regress_fragment_in_the_request_target_is_400() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    roost::fuzzing::front_e2e(
        &rt,
        b"GET /#a HTTP/1.1\r\nhost: x\r\n\r\nGET /b HTTP/1.1\r\nhost: x\r\n\r\n",
    );
    let mut buf = bytes::BytesMut::from(&b"GET /#a HTTP/1.1\r\nhost: x\r\n\r\n"[..]);
    let parsed = roost::h1::request::parse(&mut buf, 16 * 1024, &mut Default::default());
    assert!(parsed.is_err(), "a fragment in the target must be refused");
}

/// Found by `config` (session 4) within seconds of the split-parse invariant: the YAML
/// scanner takes a NUL for the end of the text, so the whole parse stopped there while a
/// piece cut after it read on. A text with a NUL is never cut now; the input replays in
/// the corpus as `regress-nul-before-a-cut`.
#[test]
fn regress_nul_before_a_cut_is_parsed_whole() {
    let text = "sites:\n- a\n- n\0\0 x\n- b\n- c\n";
    for pieces in 2..5 {
        assert!(roost::config::split::agrees(text, pieces));
    }
    roost::fuzzing::config(text.as_bytes());
}

/// Found by `config` (session 5): bare CRs end lines for the YAML parser but not for the
/// cut scan, so a piece's positions were shifted by the wrong number of lines. A text with
/// a bare CR is parsed whole. The input replays as `regress-bare-cr-lines`.
#[test]
fn regress_bare_cr_lines_are_parsed_whole() {
    let text = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fuzz/corpus/config/regress-bare-cr-lines"
    ))
    .unwrap();
    let lossy = String::from_utf8_lossy(&text);
    for pieces in 2..5 {
        assert!(roost::config::split::agrees(&lossy, pieces));
    }
    roost::fuzzing::config(&text);
}

/// Found by `chunked` (session 4): a size line of bare CRs that ended in a CR was taken as
/// "wait for the LF" when it came in one read, but refused when cut, so the outcome
/// depended on TCP segmentation. Any CR before the last byte is bare: refused either way.
/// The input replays as `regress-bare-cr-then-cr`.
#[test]
fn regress_bare_cr_before_a_final_cr_is_refused_however_it_arrives() {
    let mut whole = bytes::BytesMut::from(&b"\r\r\r\r\tz\r"[..]);
    assert!(roost::h1::Chunked::Size.step(&mut whole).is_err());
    roost::fuzzing::chunked(b"\r\r\r\r\t\r\r\rz\r%\r");
}

/// Found by `config` (session 4): a piece that ended in an empty list item (`- `) put the
/// empty value at the end of the piece, while the whole text put it at the next token, on
/// the cut line. A piece now ends only after a line that visibly ends in a value; the
/// input replays as `regress-empty-item-before-a-cut`.
#[test]
fn regress_empty_item_before_a_cut_agrees() {
    let text = "sites:  \n- \n \n- nt-=*0,--";
    assert!(roost::config::split::agrees(text, 2));
    roost::fuzzing::config(text.as_bytes());
}
