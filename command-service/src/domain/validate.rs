//! Field validation shared by the aggregates. Messages follow Django REST
//! Framework's wording, so `{"field": ["message"]}` bodies read as clients of
//! a DRF API expect.

/// One invalid field of a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field, named as in the domain types (`"name"`, `"recipient.email"`).
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

pub const BLANK: &str = "This field may not be blank.";
pub const NUL: &str = "Null characters are not allowed.";
pub const INVALID_EMAIL: &str = "Enter a valid email address.";

/// Longest name of a credential, issuer or platform, in characters.
pub const MAX_NAME_CHARS: usize = 255;
/// Longest email address, in characters (RFC 5321 path limit).
pub const MAX_EMAIL_CHARS: usize = 254;

fn too_long(max: usize) -> String {
    format!("Ensure this field has no more than {max} characters.")
}

/// Rejects NUL characters (no store or index takes them in text).
pub fn no_nul(field: &'static str, value: &str) -> Result<(), FieldError> {
    if value.contains('\0') {
        Err(FieldError::new(field, NUL))
    } else {
        Ok(())
    }
}

/// Rejects NUL characters in every string and key of a JSON value.
pub fn json_no_nul(field: &'static str, value: &serde_json::Value) -> Result<(), FieldError> {
    use serde_json::Value;
    match value {
        Value::String(s) => no_nul(field, s),
        Value::Array(items) => items.iter().try_for_each(|v| json_no_nul(field, v)),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            no_nul(field, k)?;
            json_no_nul(field, v)
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

/// Checks the length in characters.
pub fn max_chars(field: &'static str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.chars().count() > max {
        Err(FieldError::new(field, too_long(max)))
    } else {
        Ok(())
    }
}

/// A required name: trimmed, not blank, at most `max` characters, no NUL.
/// Returns the trimmed value.
pub fn name(field: &'static str, value: &str, max: usize) -> Result<String, FieldError> {
    no_nul(field, value)?;
    let value = value.trim();
    if value.is_empty() {
        return Err(FieldError::new(field, BLANK));
    }
    max_chars(field, value, max)?;
    Ok(value.to_owned())
}

/// An optional short text: trimmed, `""` becomes `None`, no NUL.
pub fn optional_text(
    field: &'static str,
    value: Option<String>,
) -> Result<Option<String>, FieldError> {
    match value {
        None => Ok(None),
        Some(v) => {
            no_nul(field, &v)?;
            let v = v.trim();
            Ok((!v.is_empty()).then(|| v.to_owned()))
        }
    }
}

/// Whether `value` looks like an email address: exactly one `@` with a
/// non-empty part on each side, no whitespace or control characters, at
/// most [`MAX_EMAIL_CHARS`] characters.
pub fn is_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
        && value.chars().count() <= MAX_EMAIL_CHARS
}

/// An optional email: trimmed; `""` stays `""`; otherwise it must be valid.
pub fn optional_email(field: &'static str, value: &str) -> Result<String, FieldError> {
    no_nul(field, value)?;
    let value = value.trim();
    if value.is_empty() || is_email(value) {
        Ok(value.to_owned())
    } else {
        Err(FieldError::new(field, INVALID_EMAIL))
    }
}

/// A required email: trimmed, not blank, valid.
pub fn email(field: &'static str, value: &str) -> Result<String, FieldError> {
    let value = optional_email(field, value)?;
    if value.is_empty() {
        Err(FieldError::new(field, BLANK))
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for good in ["a@b", "jane.doe+x@example.com", "ü@exämple.org"] {
            assert!(is_email(good), "{good}");
        }
        for bad in [
            "", "a", "@b", "a@", "a@b@c", "a b@c", "a@b c", "a@b\t", "a\0@b",
        ] {
            assert!(!is_email(bad), "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(!is_email(&long));
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(name("name", "  Badge ", 255).unwrap(), "Badge");
        assert_eq!(name("name", "   ", 255).unwrap_err().message, BLANK);
        assert_eq!(name("name", "a\0", 255).unwrap_err().message, NUL);
        assert!(name("name", &"é".repeat(255), 255).is_ok());
        assert!(name("name", &"é".repeat(256), 255).is_err());
    }

    #[test]
    fn json_nul_is_found_anywhere() {
        let ok = serde_json::json!({"a": [1, "x", {"b": null}]});
        assert!(json_no_nul("metadata", &ok).is_ok());
        let in_value = serde_json::json!({"a": [1, "x\u{0}"]});
        assert!(json_no_nul("metadata", &in_value).is_err());
        let in_key = serde_json::json!({"a\u{0}": 1});
        assert!(json_no_nul("metadata", &in_key).is_err());
    }

    #[test]
    fn optional_texts_collapse_blank_to_none() {
        assert_eq!(optional_text("f", Some("  ".into())).unwrap(), None);
        assert_eq!(
            optional_text("f", Some(" x ".into())).unwrap(),
            Some("x".into())
        );
        assert!(optional_text("f", Some("\0".into())).is_err());
    }
}
