//! `pools.<name>.ordering` checked into [`Ordering`]: where a request's ordering key
//! comes from.

use super::ctx::{Ctx, KeyPath, Sub};
use crate::config::leaf::Scalar;
use crate::config::ordering::{Ordering, OrderingKey};
use crate::config::raw::RawOrdering;
use serde_json::Value;

const HINT: &str = "expected header:NAME, cookie:NAME or clientAddress";

/// Validate `ordering` at `path`; `None` (after a report) when the key is unusable.
pub(super) fn validate(o: &RawOrdering, path: &dyn KeyPath, ctx: &mut Ctx<'_>) -> Option<Ordering> {
    let kp = Sub(&path, "key");
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
