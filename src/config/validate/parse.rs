//! Parsers for the value forms the sections share: listen and server addresses, IIS
//! timespans, times of day, status ranges, host names, fractions, hash keys, PEM pairs,
//! byte sizes.

use crate::config::leaf::Leaf;
use crate::config::model::HashKey;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

pub(super) fn leaf_value(l: &Leaf) -> Option<&Value> {
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
pub(super) fn check_host_name(s: &str) -> Result<String, &'static str> {
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
pub(super) fn check_cert_files(cert: &Path, key: &Path) -> Vec<(&'static str, String)> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut out = Vec::new();
    let chain = match crate::config::files::read_bounded(cert, crate::config::files::PEM_CAP) {
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
    let key_der = match crate::config::files::read_bounded(key, crate::config::files::PEM_CAP) {
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

pub(super) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `0.8`, `"0.8"` or `"80%"` as a fraction.
pub(super) fn parse_fraction(v: &Value) -> Option<f64> {
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

pub(super) fn parse_hash_key(v: &Value) -> Result<HashKey, &'static str> {
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

pub(super) const MIB: u64 = 1024 * 1024;

/// A byte size: a whole number, or a number with `KiB`/`MiB`/`GiB` (or `KB`/`MB`/`GB`).
pub fn parse_bytes(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let n: u64 = num.parse().ok()?;
            let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
                "" | "b" => 1,
                "kib" | "k" => 1024,
                "mib" | "m" => MIB,
                "gib" | "g" => 1024 * MIB,
                "kb" => 1000,
                "mb" => 1_000_000,
                "gb" => 1_000_000_000,
                _ => return None,
            };
            n.checked_mul(mult)
        }
        _ => None,
    }
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

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes(&Value::from(10)), Some(10));
        assert_eq!(parse_bytes(&Value::from("64MiB")), Some(64 * MIB));
        assert_eq!(parse_bytes(&Value::from("256 KiB")), Some(256 * 1024));
        assert_eq!(parse_bytes(&Value::from("1GB")), Some(1_000_000_000));
        assert_eq!(parse_bytes(&Value::from("lots")), None);
        assert_eq!(parse_bytes(&Value::from("12 parsecs")), None);
    }
}
