//! Secrets that must never be printed.
//!
//! [`ApiKey`] holds a provider credential. Its `Debug` and `Display` print `ApiKey(****)`, it is not
//! `Serialize`, and the only way to read it is [`ApiKey::expose`], which a plugin calls at the one place it builds
//! an `Authorization` (or equivalent) header. Options structs that hold an `ApiKey` can then derive `Debug` safely.

use std::fmt;

/// A provider API key or token, redacted in every printed form.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key. Surrounding whitespace (a trailing newline from a file or an env var) is trimmed.
    pub fn new(key: impl Into<String>) -> Self {
        let key = key.into();
        let trimmed = key.trim();
        if trimmed.len() == key.len() {
            Self(key)
        } else {
            Self(trimmed.to_owned())
        }
    }

    /// Reads the key from an environment variable; `None` when it is unset or blank.
    pub fn from_env(var: &str) -> Option<Self> {
        std::env::var(var)
            .ok()
            .map(Self::new)
            .filter(|k| !k.is_empty())
    }

    /// The key itself, for building the request header. Never log or format the result.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the key is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(****)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl From<String> for ApiKey {
    fn from(key: String) -> Self {
        Self::new(key)
    }
}

impl From<&str> for ApiKey {
    fn from(key: &str) -> Self {
        Self::new(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_redacted_in_every_printed_form() {
        let k = ApiKey::new("sk-very-secret\n");
        assert_eq!(format!("{k:?}"), "ApiKey(****)");
        assert_eq!(format!("{k}"), "****");
        assert_eq!(
            format!("{:#?}", Some(k.clone())),
            "Some(\n    ApiKey(****),\n)"
        );
        assert_eq!(k.expose(), "sk-very-secret");
    }
}
