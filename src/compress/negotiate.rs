//! `Accept-Encoding` (RFC 9110 §12.5.3): which of the configured codings a client
//! takes, by its q-values, ties going to the server's order.

use crate::config::compression::Algorithm;
use http::header::{HeaderMap, ACCEPT_ENCODING};

/// The q-value (in thousandths) the client gives `a`: its own entry, else `*`'s, else 0.
fn weights(headers: &HeaderMap) -> Option<[u16; 3]> {
    let mut own: [Option<u16>; 3] = [None; 3];
    let mut star: Option<u16> = None;
    let mut any = false;
    for line in headers.get_all(ACCEPT_ENCODING) {
        let Ok(line) = line.to_str() else { continue };
        any = true;
        for item in line.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let Some(q) = qvalue(parts) else { continue };
            let slot = match coding.as_str() {
                "*" => &mut star,
                "zstd" => &mut own[Algorithm::Zstd.index()],
                "br" => &mut own[Algorithm::Br.index()],
                "gzip" | "x-gzip" => &mut own[Algorithm::Gzip.index()],
                _ => continue,
            };
            // A coding listed twice keeps its first weight.
            slot.get_or_insert(q);
        }
    }
    // No `Accept-Encoding` at all: the client did not ask (RFC 9110 allows any coding,
    // but every server sends identity then, and so does roost).
    any.then(|| own.map(|w| w.or(star).unwrap_or(0)))
}

/// The `q` parameter in thousandths (1000 without one); `None` when it is malformed,
/// which drops the entry rather than guessing.
fn qvalue<'a>(params: impl Iterator<Item = &'a str>) -> Option<u16> {
    for p in params {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        if !k.trim().eq_ignore_ascii_case("q") {
            continue;
        }
        let v: f64 = v.trim().parse().ok()?;
        if !(0.0..=1.0).contains(&v) {
            return None;
        }
        return Some((v * 1000.0).round() as u16);
    }
    Some(1000)
}

/// The coding to use for this request among `offered` (the server's preference order),
/// or `None` for identity.
pub fn choose(headers: &HeaderMap, offered: &[Algorithm]) -> Option<Algorithm> {
    let w = weights(headers)?;
    let mut best: Option<(Algorithm, u16)> = None;
    for &a in offered {
        let q = w[a.index()];
        if q > 0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((a, q));
        }
    }
    best.map(|(a, _)| a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Algorithm::*;

    fn pick(v: &str) -> Option<Algorithm> {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT_ENCODING, v.parse().unwrap());
        choose(&h, &[Zstd, Br, Gzip])
    }

    #[test]
    fn q_values_then_server_order() {
        assert_eq!(pick("gzip, deflate, br"), Some(Br));
        assert_eq!(pick("gzip, deflate, br, zstd"), Some(Zstd));
        assert_eq!(pick("br;q=0.5, gzip;q=0.8"), Some(Gzip));
        assert_eq!(pick("br;q=0.5, gzip;Q=0.8, zstd;q=0.81"), Some(Zstd));
        assert_eq!(pick("x-gzip"), Some(Gzip));
        assert_eq!(pick("*"), Some(Zstd));
        assert_eq!(pick("gzip;q=0, *"), Some(Zstd));
        assert_eq!(pick("zstd;q=0, br;q=0, *;q=0.1"), Some(Gzip));
    }

    #[test]
    fn identity_when_nothing_acceptable() {
        assert_eq!(pick("identity"), None);
        assert_eq!(pick("*;q=0"), None);
        assert_eq!(pick("identity;q=1, *;q=0"), None);
        assert_eq!(pick("deflate"), None);
        assert_eq!(pick(""), None);
        assert_eq!(pick("gzip;q=2"), None, "an invalid q drops the entry");
        assert_eq!(pick("gzip;q=abc, br"), Some(Br));
        assert_eq!(choose(&HeaderMap::new(), &[Gzip]), None);
        let mut h = HeaderMap::new();
        h.insert(ACCEPT_ENCODING, "br, gzip".parse().unwrap());
        assert_eq!(choose(&h, &[Gzip]), Some(Gzip), "only what is offered");
    }
}
