//! What a plain (unquoted, untagged) YAML scalar means: YAML 1.2's core schema as
//! serde_yaml 0.9 reads it, which is what roost read before it parsed YAML once.
//!
//! `~`, `null`, `Null`, `NULL` and nothing are null; `true`/`True`/`TRUE` (and `false`)
//! are booleans (`yes`, `on` are words); `10`, `+10`, `0x10`, `0o10`, `0b10`, `-10` are
//! integers, but `010` is the text "010"; `1.5`, `1e3` are numbers, `.inf` and `.nan`
//! are no value (JSON has none for them); everything else is text. Quoted scalars are
//! always text. `tests/config.rs` (`yaml_scalar_typing_is_pinned`) pins each form.

use serde_json::Value;
use std::num::ParseIntError;

/// The value of a plain scalar.
pub fn plain(v: &str) -> Value {
    if v.is_empty() || null(v) {
        return Value::Null;
    }
    if let Some(b) = boolean(v) {
        return Value::Bool(b);
    }
    if let Some(n) = int(v) {
        return n;
    }
    if !digits_but_not_number(v) {
        if let Some(f) = float(v) {
            // Not finite (`.inf`, `.nan`): JSON has no such number, so no value.
            return Value::from(f);
        }
    }
    Value::String(v.to_string())
}

pub fn null(v: &str) -> bool {
    matches!(v, "null" | "Null" | "NULL" | "~")
}

pub fn boolean(v: &str) -> Option<bool> {
    match v {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// An integer that fits `u64` or `i64`. Larger ones stay text, so the key that holds
/// one is reported ("not a whole number") rather than the whole document.
pub fn int(v: &str) -> Option<Value> {
    if let Some(n) = unsigned(v, u64::from_str_radix) {
        return Some(Value::from(n));
    }
    if let Some(n) = negative(v, i64::from_str_radix) {
        return Some(Value::from(n));
    }
    let wide =
        unsigned(v, u128::from_str_radix).is_some() || negative(v, i128::from_str_radix).is_some();
    wide.then(|| Value::String(v.to_string()))
}

fn unsigned<T>(v: &str, radix: fn(&str, u32) -> Result<T, ParseIntError>) -> Option<T> {
    let unsigned = v.strip_prefix('+').unwrap_or(v);
    for (prefix, base) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = unsigned.strip_prefix(prefix) {
            if rest.starts_with(['+', '-']) {
                return None;
            }
            if let Ok(n) = radix(rest, base) {
                return Some(n);
            }
        }
    }
    if unsigned.starts_with(['+', '-']) || digits_but_not_number(v) {
        return None;
    }
    radix(unsigned, 10).ok()
}

fn negative<T>(v: &str, radix: fn(&str, u32) -> Result<T, ParseIntError>) -> Option<T> {
    for (prefix, base) in [("-0x", 16), ("-0o", 8), ("-0b", 2)] {
        if let Some(rest) = v.strip_prefix(prefix) {
            if let Ok(n) = radix(&format!("-{rest}"), base) {
                return Some(n);
            }
        }
    }
    if digits_but_not_number(v) {
        return None;
    }
    radix(v, 10).ok()
}

pub fn float(v: &str) -> Option<f64> {
    let unsigned = match v.strip_prefix('+') {
        Some(u) if u.starts_with(['+', '-']) => return None,
        Some(u) => u,
        None => v,
    };
    match (unsigned, v) {
        (".inf" | ".Inf" | ".INF", _) => return Some(f64::INFINITY),
        (_, "-.inf" | "-.Inf" | "-.INF") => return Some(f64::NEG_INFINITY),
        (_, ".nan" | ".NaN" | ".NAN") => return Some(f64::NAN),
        _ => {}
    }
    unsigned.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// Leading zeros before digits make text in YAML 1.2 (`010`, `-007`).
fn digits_but_not_number(v: &str) -> bool {
    let v = v.strip_prefix(['-', '+']).unwrap_or(v);
    v.len() > 1 && v.starts_with('0') && v[1..].bytes().all(|b| b.is_ascii_digit())
}

/// A scalar with a core-schema tag (`!!str 10`, `!!int "10"`): the tag decides.
pub fn tagged(suffix: &str, v: &str) -> Result<Value, String> {
    let bad = |what: &str| format!("`!!{suffix} {v}` is not {what}");
    match suffix {
        "bool" => boolean(v).map(Value::Bool).ok_or_else(|| bad("a boolean")),
        "int" => int(v).ok_or_else(|| bad("an integer")),
        "float" => float(v).map(Value::from).ok_or_else(|| bad("a float")),
        "null" => null(v).then_some(Value::Null).ok_or_else(|| bad("null")),
        // `!!str`, and tags serde_yaml read as text (`!!binary`, `!!timestamp`).
        _ => Ok(Value::String(v.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn core_schema_forms() {
        for (text, want) in [
            ("", Value::Null),
            ("~", Value::Null),
            ("yes", json!("yes")),
            ("True", json!(true)),
            ("0x10", json!(16)),
            ("-0x10", json!(-16)),
            ("+10", json!(10)),
            ("010", json!("010")),
            ("1.5", json!(1.5)),
            ("1e3", json!(1000.0)),
            (".inf", Value::Null),
            ("1_000", json!("1_000")),
            ("99999999999999999999", json!("99999999999999999999")),
        ] {
            assert_eq!(plain(text), want, "{text:?}");
        }
        assert_eq!(tagged("str", "10").unwrap(), json!("10"));
        assert_eq!(tagged("int", "10").unwrap(), json!(10));
        assert!(tagged("bool", "yes").is_err());
    }
}
