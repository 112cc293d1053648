//! RFC 8785 JSON Canonicalization Scheme (JCS) for [`serde_json::Value`].
//!
//! The canonical form of a JSON value is the one byte string every party
//! derives from it, so that hashes and signatures over JSON agree:
//!
//! * no whitespace;
//! * object members sorted by their names compared as UTF-16 code units
//!   (not as UTF-8 bytes, not by locale), recursively; array order kept;
//! * strings in UTF-8 with only the escapes ECMAScript's `JSON.stringify`
//!   uses: `\"`, `\\`, `\b`, `\t`, `\n`, `\f`, `\r`, and `\u00xx` (lower-case
//!   hex) for the other control characters below U+0020; nothing else
//!   escaped (not `/`, not U+007F, not non-ASCII);
//! * numbers as ECMAScript serializes an IEEE 754 double
//!   (`Number.prototype.toString`): the shortest digits that read back to
//!   the same double, in plain notation from 1e-6 up to (not including)
//!   1e21 and as `d.ddde±x` outside it; `-0` as `0`.
//!
//! JCS sees every number as a double. A [`serde_json::Value`] can hold `u64`
//! and `i64` integers that no double holds exactly; rather than round them
//! silently, [`to_jcs`] refuses integers whose magnitude exceeds 2^53
//! ([`MAX_EXACT_INTEGER`]). Integers within it are written as integers
//! (what ECMAScript writes for such a double). Note that `serde_json` itself
//! reads an integer literal too large for `u64`/`i64` (beyond ±1.8e19) as an
//! `f64`, rounded before this module sees it; values built from Rust
//! integers do not have that problem.
//!
//! Parsing is the caller's, but this crate turns on serde_json's
//! `float_roundtrip` feature (for the whole build, as cargo unifies
//! features): without it serde_json reads some decimal literals one ulp away
//! from the nearest double, and the canonical form of parsed JSON would then
//! differ from other implementations'.

use serde_json::{Number, Value};

/// The largest integer magnitude accepted: 2^53. Every integer up to it is
/// exactly a double; 2^53 + 1 is not.
pub const MAX_EXACT_INTEGER: u64 = 1 << 53;

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JcsError {
    /// An integer beyond ±2^53: as a double it would be rounded.
    #[error("integer {0} is beyond ±2^53 and would not survive as an IEEE 754 double")]
    IntegerOutOfRange(String),
    /// NaN or an infinity (JSON has no such numbers; RFC 8785 §3.2.2.2).
    #[error("number {0} is not finite")]
    NonFinite(String),
}

/// The RFC 8785 canonical serialization of `value`, as UTF-8 bytes.
pub fn to_jcs(value: &Value) -> Result<Vec<u8>, JcsError> {
    let mut out = String::new();
    write_value(&mut out, value)?;
    Ok(out.into_bytes())
}

/// [`to_jcs`] as a `String` (the canonical form is always UTF-8).
pub fn to_jcs_string(value: &Value) -> Result<String, JcsError> {
    let mut out = String::new();
    write_value(&mut out, value)?;
    Ok(out)
}

/// Appends the RFC 8785 serialization of `value` to `out` (for a caller
/// that writes the members around it itself).
pub fn write_value(out: &mut String, value: &Value) -> Result<(), JcsError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n)?,
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| utf16_order(a.0, b.0));
            out.push('{');
            for (i, (name, member)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, name);
                out.push(':');
                write_value(out, member)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_number(out: &mut String, n: &Number) -> Result<(), JcsError> {
    if let Some(u) = n.as_u64() {
        if u > MAX_EXACT_INTEGER {
            return Err(JcsError::IntegerOutOfRange(u.to_string()));
        }
        out.push_str(&u.to_string());
    } else if let Some(i) = n.as_i64() {
        if i.unsigned_abs() > MAX_EXACT_INTEGER {
            return Err(JcsError::IntegerOutOfRange(i.to_string()));
        }
        out.push_str(&i.to_string());
    } else {
        // Without serde_json's `arbitrary_precision` every other number is
        // an f64; with it, `as_f64` parses the text (possibly to infinity).
        let f = n
            .as_f64()
            .ok_or_else(|| JcsError::NonFinite(n.to_string()))?;
        out.push_str(&es_number(f)?);
    }
    Ok(())
}

/// ECMAScript's `Number::toString(x)` (ECMA-262 §6.1.6.1.20) for a finite
/// double, which is what RFC 8785 §3.2.2.3 prescribes.
///
/// ECMAScript asks for the fewest significant digits `k` that read back to
/// `x`, and among the `k`-digit strings that do, the one closest to `x`,
/// the even one on a tie. Rust's `{:e}` gives the fewest digits and the
/// closest string, but breaks an exact tie upwards: the double
/// 1424953923781206.25 comes out as `…206.3` where ECMAScript writes
/// `…206.2`. So the digits are those of `{:.prec$e}` with `k` significant
/// digits (the exact value correctly rounded, ties to even) when that reads
/// back to `x`, and the shortest form's otherwise.
pub fn es_number(x: f64) -> Result<String, JcsError> {
    if !x.is_finite() {
        return Err(JcsError::NonFinite(x.to_string()));
    }
    if x == 0.0 {
        // Both +0 and -0.
        return Ok("0".to_string());
    }
    let a = x.abs();
    let shortest = format!("{a:e}");
    let k = split_sci(&shortest).0.len();
    let nearest = format!("{a:.prec$e}", prec = k - 1);
    let sci = if nearest.parse::<f64>() == Ok(a) {
        nearest
    } else {
        shortest
    };
    let (digits, exponent) = split_sci(&sci);
    // x = 0.d1d2…dk × 10^n, with k as small as possible.
    let digits = digits.trim_end_matches('0');
    let k = digits.len() as i32;
    let n = exponent + 1;

    let mut s = String::with_capacity(k as usize + 8);
    if x < 0.0 {
        s.push('-');
    }
    if k <= n && n <= 21 {
        // An integer: the digits, then n - k zeros.
        s.push_str(digits);
        s.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        // A decimal point inside the digits.
        s.push_str(&digits[..n as usize]);
        s.push('.');
        s.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        // 0.000ddd
        s.push_str("0.");
        s.extend(std::iter::repeat_n('0', (-n) as usize));
        s.push_str(digits);
    } else {
        // Exponential: d[.ddd]e±(n-1)
        s.push_str(&digits[..1]);
        if k > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        s.push('e');
        s.push(if n - 1 < 0 { '-' } else { '+' });
        s.push_str(&(n - 1).abs().to_string());
    }
    Ok(s)
}

/// Splits Rust's `d.ddde-x` into its significant digits and its exponent.
fn split_sci(sci: &str) -> (String, i32) {
    let (mantissa, exponent) = sci
        .split_once('e')
        .expect("LowerExp of a finite f64 has an exponent");
    let digits = mantissa.chars().filter(|c| *c != '.').collect();
    let exponent = exponent.parse().expect("LowerExp exponent is an integer");
    (digits, exponent)
}

/// The order of two member names by their UTF-16 code units (RFC 8785
/// §3.2.3). UTF-8's byte order is the same unless a character from U+E000
/// to U+FFFF meets one beyond U+FFFF (whose UTF-8 starts with a byte of
/// 0xEE or more in either case): names without such bytes compare as
/// bytes.
fn utf16_order(a: &str, b: &str) -> std::cmp::Ordering {
    let plain = |s: &str| s.bytes().all(|b| b < 0xEE);
    if plain(a) && plain(b) {
        a.as_bytes().cmp(b.as_bytes())
    } else {
        a.encode_utf16().cmp(b.encode_utf16())
    }
}

/// Appends `s` as a JSON string: `"` and `\\` escaped, the control
/// characters as their short escapes or `\\u00xx`, every other character
/// as it is. Runs that need no escape are copied whole (the characters to
/// escape are ASCII, never part of another character's UTF-8).
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            b'\t' => "\\t",
            b'\n' => "\\n",
            0x0c => "\\f",
            b'\r' => "\\r",
            b if b < 0x20 => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escaped.is_empty() {
            out.push_str(&format!("\\u{:04x}", b));
        } else {
            out.push_str(escaped);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_of_es_number() {
        for (x, want) in [
            (1.0, "1"),
            (-1.0, "-1"),
            (0.5, "0.5"),
            (100.0, "100"),
            (123.456, "123.456"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1.5e21, "1.5e+21"),
            (1e-6, "0.000001"),
            (1.5e-6, "0.0000015"),
            (1e-7, "1e-7"),
            (-1.25e-7, "-1.25e-7"),
            (0.1, "0.1"),
            (-0.0, "0"),
        ] {
            assert_eq!(es_number(x).unwrap(), want, "{x:e}");
        }
        assert!(es_number(f64::NAN).is_err());
        assert!(es_number(f64::INFINITY).is_err());
        assert!(es_number(f64::NEG_INFINITY).is_err());
    }
}
