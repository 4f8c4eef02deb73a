//! JSON as Python's `json` module writes it: besides standard JSON it writes the bare tokens
//! `NaN`, `Infinity` and `-Infinity` (diffusers' `DPMSolverMultistepScheduler` saves
//! `"lambda_min_clipped": -Infinity`). They are read as the values Python means: ±infinity as
//! the largest finite magnitudes (every comparison with them comes out the same), `NaN` as
//! `null` (the key's default).

use serde::de::DeserializeOwned;

const MAX: &str = "1.7976931348623157e308";

/// `text` with Python's non-standard number tokens (outside strings) made standard JSON.
pub fn standardise(text: &str) -> std::borrow::Cow<'_, str> {
    if !(text.contains("NaN") || text.contains("Infinity")) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 32);
    let mut rest = text;
    let mut in_string = false;
    while let Some(c) = rest.chars().next() {
        if in_string {
            match c {
                '\\' => {
                    // An escape and the character it escapes, whatever it is.
                    let mut it = rest.char_indices().skip(1);
                    let end = it.next().map_or(rest.len(), |(i, ch)| i + ch.len_utf8());
                    out.push_str(&rest[..end]);
                    rest = &rest[end..];
                    continue;
                }
                '"' => in_string = false,
                _ => {}
            }
        } else {
            let token = [("-Infinity", "-"), ("Infinity", ""), ("NaN", "")]
                .into_iter()
                .find(|(t, _)| rest.starts_with(t));
            if let Some((t, sign)) = token {
                if t == "NaN" {
                    out.push_str("null");
                } else {
                    out.push_str(sign);
                    out.push_str(MAX);
                }
                rest = &rest[t.len()..];
                continue;
            }
            if c == '"' {
                in_string = true;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    std::borrow::Cow::Owned(out)
}

/// Parses JSON written by Python.
pub fn from_str<T: DeserializeOwned>(text: &str) -> serde_json::Result<T> {
    serde_json::from_str(&standardise(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn pythons_non_finite_numbers_read_as_python_means_them() {
        let v: Value = from_str(
            r#"{"lambda_min_clipped": -Infinity, "a": Infinity, "b": NaN, "c": [1, -Infinity],
                "s": "NaN and \"Infinity\" stay text", "e": "\\", "after": -Infinity}"#,
        )
        .unwrap();
        assert_eq!(v["lambda_min_clipped"].as_f64(), Some(f64::MIN));
        assert_eq!(v["a"].as_f64(), Some(f64::MAX));
        assert!(v["b"].is_null());
        assert_eq!(v["c"][1].as_f64(), Some(f64::MIN));
        assert_eq!(v["s"], "NaN and \"Infinity\" stay text");
        assert_eq!(v["e"], "\\");
        assert_eq!(v["after"].as_f64(), Some(f64::MIN));
        // Standard JSON passes through untouched.
        assert!(matches!(
            standardise(r#"{"x": 1}"#),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
