//! The V3 protocol's typed values (`S`tring, `N`umber, `O`bject, `T`rue, `F`alse, `L` null,
//! `U`ndefined) to and from the JSON text every `Message` carries.

use bytes::Bytes;

/// Appends the typed form of `json` (absent: `U`) as the reference's `typed()` writes it.
pub fn to_typed(json: Option<&[u8]>, out: &mut Vec<u8>) {
    let Some(json) = json else {
        out.push(b'U');
        return;
    };
    let trimmed = json.trim_ascii();
    match trimmed.first() {
        None => out.push(b'U'),
        Some(b'"') => match serde_json::from_slice::<String>(trimmed) {
            Ok(text) => {
                out.push(b'S');
                out.extend_from_slice(text.as_bytes());
            }
            Err(_) => out.push(b'U'),
        },
        Some(b'{' | b'[') => {
            out.push(b'O');
            out.extend_from_slice(trimmed);
        }
        Some(b'n') => out.push(b'L'),
        Some(b't') => out.push(b'T'),
        Some(b'f') => out.push(b'F'),
        Some(_) => match serde_json::from_slice::<f64>(trimmed) {
            Ok(n) => {
                out.push(b'N');
                out.extend_from_slice(js_number_string(n).as_bytes());
            }
            Err(_) => out.push(b'U'),
        },
    }
}

/// Why a typed value cannot be read.
#[derive(Debug, PartialEq, Eq)]
pub enum TypedError {
    UnknownType,
    BadJson,
}

/// The JSON text of a typed value; `None` for `U` (undefined: no data).
pub fn from_typed(value: &Bytes) -> Result<Option<Bytes>, TypedError> {
    if value.as_ref() == b"null" {
        return Ok(Some(Bytes::from_static(b"null")));
    }
    let Some((&kind, rest)) = value.split_first() else {
        return Err(TypedError::UnknownType);
    };
    Ok(Some(match kind {
        b'S' => {
            let text = std::str::from_utf8(rest).map_err(|_| TypedError::BadJson)?;
            Bytes::from(serde_json::to_vec(text).map_err(|_| TypedError::BadJson)?)
        }
        b'O' => {
            serde_json::from_slice::<serde::de::IgnoredAny>(rest)
                .map_err(|_| TypedError::BadJson)?;
            value.slice(1..)
        }
        b'N' => {
            let n = parse_float_prefix(rest);
            if n.is_finite() {
                Bytes::from(js_number_string(n))
            } else {
                // JSON.stringify(NaN) and of Infinity.
                Bytes::from_static(b"null")
            }
        }
        b'L' => Bytes::from_static(b"null"),
        b'T' => Bytes::from_static(b"true"),
        b'F' => Bytes::from_static(b"false"),
        b'U' => return Ok(None),
        _ => return Err(TypedError::UnknownType),
    }))
}

/// JavaScript's `parseFloat`: the longest decimal prefix after leading white space; NaN if none.
pub fn parse_float_prefix(text: &[u8]) -> f64 {
    let text = std::str::from_utf8(text).unwrap_or("");
    let text = text.trim_start();
    let bytes = text.as_bytes();
    let mut end = 0;
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        end = 1;
    }
    if text[end..].starts_with("Infinity") {
        return if bytes.first() == Some(&b'-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
    }
    let digits = |from: usize| {
        bytes
            .get(from..)
            .map_or(0, |b| b.iter().take_while(|c| c.is_ascii_digit()).count())
    };
    let int = digits(end);
    end += int;
    let mut fraction = 0;
    if bytes.get(end) == Some(&b'.') {
        fraction = digits(end + 1);
        if int > 0 || fraction > 0 {
            end += 1 + fraction;
        }
    }
    if int == 0 && fraction == 0 {
        return f64::NAN;
    }
    if matches!(bytes.get(end), Some(b'e' | b'E')) {
        let mut at = end + 1;
        if matches!(bytes.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        let exp = digits(at);
        if exp > 0 {
            end = at + exp;
        }
    }
    text[..end].parse().unwrap_or(f64::NAN)
}

/// ECMAScript's Number::toString for a finite double (shortest digits that round-trip).
pub fn js_number_string(n: f64) -> String {
    if n.is_nan() {
        return "NaN".into();
    }
    if n.is_infinite() {
        return if n > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if n == 0.0 {
        return "0".into();
    }
    let sign = if n < 0.0 { "-" } else { "" };
    // Rust's shortest round-trip digits: "d.ddde±x".
    let exp_form = format!("{:e}", n.abs());
    let (mantissa, exponent) = exp_form.split_once('e').unwrap_or((&exp_form, "0"));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i64;
    let n_exp = exponent.parse::<i64>().unwrap_or(0) + 1;
    let body = if k <= n_exp && n_exp <= 21 {
        format!("{digits}{}", "0".repeat((n_exp - k) as usize))
    } else if 0 < n_exp && n_exp <= 21 {
        let (head, tail) = digits.split_at(n_exp as usize);
        format!("{head}.{tail}")
    } else if -6 < n_exp && n_exp <= 0 {
        format!("0.{}{digits}", "0".repeat((-n_exp) as usize))
    } else {
        let e = n_exp - 1;
        let e_sign = if e < 0 { "-" } else { "+" };
        let (first, rest) = digits.split_at(1);
        if rest.is_empty() {
            format!("{first}e{e_sign}{}", e.abs())
        } else {
            format!("{first}.{rest}e{e_sign}{}", e.abs())
        }
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(json: &str) -> String {
        let mut out = Vec::new();
        to_typed(Some(json.as_bytes()), &mut out);
        String::from_utf8(out).expect("utf8")
    }

    fn json(typed: &str) -> Result<Option<String>, TypedError> {
        from_typed(&Bytes::copy_from_slice(typed.as_bytes()))
            .map(|o| o.map(|b| String::from_utf8(b.to_vec()).expect("utf8")))
    }

    #[test]
    fn json_becomes_typed_as_the_reference_writes_it() {
        assert_eq!(typed("\"a\\nb\""), "Sa\nb");
        assert_eq!(typed("{\"a\":1}"), "O{\"a\":1}");
        assert_eq!(typed("[1]"), "O[1]");
        assert_eq!(typed("null"), "L");
        assert_eq!(typed("true"), "T");
        assert_eq!(typed("false"), "F");
        assert_eq!(typed("3"), "N3");
        assert_eq!(typed("1.50"), "N1.5");
        assert_eq!(typed("1e21"), "N1e+21");
        assert_eq!(typed("1e-7"), "N1e-7");
        assert_eq!(typed("-0.000001"), "N-0.000001");
        assert_eq!(typed("123456789012345678901"), "N123456789012345680000");
        let mut out = Vec::new();
        to_typed(None, &mut out);
        assert_eq!(out, b"U");
    }

    #[test]
    fn typed_becomes_json_as_the_reference_reads_it() {
        assert_eq!(
            json("Shello \"you\"").unwrap().as_deref(),
            Some("\"hello \\\"you\\\"\"")
        );
        assert_eq!(json("O{\"a\":1}").unwrap().as_deref(), Some("{\"a\":1}"));
        assert_eq!(json("N5").unwrap().as_deref(), Some("5"));
        assert_eq!(json("N 2.5e1xyz").unwrap().as_deref(), Some("25"));
        assert_eq!(json("Nabc").unwrap().as_deref(), Some("null"));
        assert_eq!(json("N-Infinity").unwrap().as_deref(), Some("null"));
        assert_eq!(json("T").unwrap().as_deref(), Some("true"));
        assert_eq!(json("F").unwrap().as_deref(), Some("false"));
        assert_eq!(json("L").unwrap().as_deref(), Some("null"));
        assert_eq!(json("null").unwrap().as_deref(), Some("null"));
        assert_eq!(json("U").unwrap(), None);
        assert_eq!(json("Q1"), Err(TypedError::UnknownType));
        assert_eq!(json(""), Err(TypedError::UnknownType));
        assert_eq!(json("O{nope"), Err(TypedError::BadJson));
    }

    #[test]
    fn numbers_print_as_javascript_prints_them() {
        for (n, text) in [
            (0.1, "0.1"),
            (100.0, "100"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (1.5e-7, "1.5e-7"),
            (0.000001, "0.000001"),
            (-42.25, "-42.25"),
            (f64::MAX, "1.7976931348623157e+308"),
        ] {
            assert_eq!(js_number_string(n), text);
        }
    }
}
