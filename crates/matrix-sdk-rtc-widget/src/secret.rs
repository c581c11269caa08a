//! The per-run secret of the host page: in the page's URL and required by its WebSocket.

use std::fmt;

/// A random token, compared in constant time, never shown by `Debug`.
#[derive(Clone)]
pub(crate) struct Secret(String);

impl Secret {
    /// 32 bytes from the system's CSPRNG, as hex.
    pub(crate) fn random() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        Ok(Self(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `given` is the secret; the time taken does not depend on where they differ.
    pub(crate) fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_secret_itself_matches() {
        let secret = Secret::random().unwrap();
        assert_eq!(secret.expose().len(), 64);
        assert!(secret.matches(secret.expose()));
        assert!(!secret.matches(""));
        assert!(!secret.matches(&secret.expose()[..63]));
        let mut other = secret.expose().to_owned();
        other.replace_range(63.., if other.ends_with('0') { "1" } else { "0" });
        assert!(!secret.matches(&other));
        assert_ne!(Secret::random().unwrap().expose(), secret.expose());
        assert!(!format!("{secret:?}").contains(secret.expose()));
    }
}
