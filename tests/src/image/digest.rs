//! SHA-256 content digests, the way image manifests and configs name blobs.

use std::fmt;

use sha2::{Digest as _, Sha256};

/// A `sha256:<64 hex>` content digest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        let hash = Sha256::digest(bytes);
        let hex = hash.iter().map(|b| format!("{b:02x}")).collect();
        Digest { hex }
    }

    /// Parses `sha256:<64 lowercase hex>`; anything else (another algorithm, a short or upper-case
    /// hex) is `None`, since only the canonical form can be compared as a string.
    pub fn parse(s: &str) -> Option<Digest> {
        let hex = s.strip_prefix("sha256:")?;
        let canonical = hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        canonical.then(|| Digest {
            hex: hex.to_string(),
        })
    }

    /// The 64 hex digits, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex digits: how Docker and `crictl images` abbreviate an image ID.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_input_is_the_well_known_one() {
        let d = Digest::of(b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.short(), "e3b0c44298fc");
    }

    #[test]
    fn parse_accepts_only_the_canonical_form() {
        let d = Digest::of(b"x");
        assert_eq!(Digest::parse(&d.to_string()), Some(d.clone()));
        assert_eq!(Digest::parse(d.hex()), None);
        assert_eq!(Digest::parse(&format!("sha512:{}", d.hex())), None);
        assert_eq!(Digest::parse(&d.to_string().to_uppercase()), None);
        assert_eq!(Digest::parse("sha256:abc"), None);
    }
}
