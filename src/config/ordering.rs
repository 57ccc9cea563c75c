//! `pools.<name>.ordering`: requests with the same key run one at a time, in arrival
//! order, on the member the key hashes to (issue 17, "ordered per key, for stateful
//! services"). Self-contained as `cache.rs` is: the raw type, the model type and the
//! validation live here; `raw.rs`, `model.rs` and `validate/pools.rs` only name them.

use super::raw::{Leaf, Scalar};
use super::validate::Ctx;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawOrdering {
    pub key: Leaf,
}

/// A pool's ordering settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Ordering {
    /// Where a request's ordering key comes from.
    pub key: OrderingKey,
}

/// The part of a request that names its key. A request without it is not ordered.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderingKey {
    /// `header:NAME`: the first value of the header (an empty value is no key).
    Header(http::HeaderName),
    /// `cookie:NAME`: the cookie's value.
    Cookie(String),
    /// `clientAddress`: the client's IP address (IPv4-mapped IPv6 as IPv4).
    ClientAddress,
}

const HINT: &str = "expected header:NAME, cookie:NAME or clientAddress";

/// Validate `ordering` at `path`; `None` (after a report) when the key is unusable.
pub(super) fn validate(o: &RawOrdering, path: &str, ctx: &mut Ctx<'_>) -> Option<Ordering> {
    let kp = format!("{path}.key");
    let Some(Scalar(v)) = o.key.as_ref().filter(|s| !s.0.is_null()) else {
        ctx.report(&kp, None, format!("ordering needs a key ({HINT})"));
        return None;
    };
    let Value::String(s) = v else {
        ctx.report(&kp, Some(v), HINT);
        return None;
    };
    match parse_key(s.trim()) {
        Ok(key) => Some(Ordering { key }),
        Err(why) => {
            ctx.report(&kp, Some(v), why);
            None
        }
    }
}

/// `header:X-Session`, `cookie:SID` or `clientAddress`.
fn parse_key(s: &str) -> Result<OrderingKey, String> {
    if s.eq_ignore_ascii_case("clientAddress") {
        return Ok(OrderingKey::ClientAddress);
    }
    let Some((kind, name)) = s.split_once(':') else {
        return Err(HINT.to_string());
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("{kind}: needs a name ({HINT})"));
    }
    match kind.trim().to_ascii_lowercase().as_str() {
        "header" => http::HeaderName::from_bytes(name.as_bytes())
            .map(OrderingKey::Header)
            .map_err(|_| format!("`{name}` is not a valid header name")),
        "cookie" if name.bytes().all(is_cookie_name_byte) => {
            Ok(OrderingKey::Cookie(name.to_string()))
        }
        "cookie" => Err(format!("`{name}` is not a valid cookie name")),
        _ => Err(format!("unknown key source `{kind}` ({HINT})")),
    }
}

/// RFC 6265 cookie-name: an RFC 9110 token.
fn is_cookie_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_forms() {
        assert_eq!(
            parse_key("header:X-Session"),
            Ok(OrderingKey::Header(http::HeaderName::from_static(
                "x-session"
            )))
        );
        assert_eq!(
            parse_key("cookie:SID"),
            Ok(OrderingKey::Cookie("SID".into()))
        );
        assert_eq!(parse_key("clientaddress"), Ok(OrderingKey::ClientAddress));
        assert!(parse_key("header:").unwrap_err().contains("needs a name"));
        assert!(parse_key("header:a b").unwrap_err().contains("header name"));
        assert!(parse_key("cookie:a;b").unwrap_err().contains("cookie name"));
        assert!(parse_key("query:x")
            .unwrap_err()
            .contains("unknown key source"));
        assert!(parse_key("X-Session").unwrap_err().contains("header:NAME"));
    }
}
