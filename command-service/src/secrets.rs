//! API key secrets: 256 random bits, shown once, stored as a SHA-256 hash.

use rand::RngCore;

/// A freshly generated secret. It has no `Debug` or `Display`, so it cannot
/// end up in a log by accident; [`NewSecret::expose`] is the one way out.
pub struct NewSecret(String);

/// Characters of the secret shown in lists (not enough to use it).
const PREFIX_CHARS: usize = 12;

impl NewSecret {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        NewSecret(format!("ibl_{}", hex::encode(bytes)))
    }

    pub fn prefix(&self) -> String {
        self.0[..PREFIX_CHARS].to_owned()
    }

    pub fn hash(&self) -> String {
        ibl_edge::extract::hash_secret(&self.0)
    }

    /// The secret itself: to show once to its owner, never to log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_and_hashed() {
        let a = NewSecret::generate();
        let b = NewSecret::generate();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 4 + 64);
        assert!(a.expose().starts_with(&a.prefix()));
        assert_eq!(a.hash().len(), 64);
        assert_ne!(a.hash(), a.expose());
    }
}
