//! Image references that change when the content changes.
//!
//! The tag is the start of the image ID (the config digest), so a rebuilt operator is a new
//! reference: a Deployment that names it rolls, `imagePullPolicy: IfNotPresent` can never run a
//! stale image that happens to share a tag, and an unchanged rebuild keeps its reference.

use std::fmt;

use super::digest::Digest;
use crate::{Error, Result};

/// `repository:tag`, e.g. `mcall.local/mcall-operator:3f2a9c1b7e44`; Helm takes the two halves
/// as `image.repository` and `image.tag`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageRef {
    pub repository: String,
    pub tag: String,
}

impl ImageRef {
    /// The reference of the image named `repository` whose config digest is `id`.
    ///
    /// The repository must start with a registry-like host (a first part with a `.` or `:`, or
    /// `localhost`): containerd and the kubelet would otherwise both read `mcall-operator` as
    /// `docker.io/library/mcall-operator`, and the image would be stored under a name no
    /// manifest in this project uses.
    pub fn for_image(repository: &str, id: &Digest) -> Result<ImageRef> {
        check_repository(repository)?;
        Ok(ImageRef {
            repository: repository.to_string(),
            tag: id.short().to_string(),
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repository, self.tag)
    }
}

fn check_repository(repository: &str) -> Result<()> {
    let fail = |reason: &str| {
        Err(Error::ImageRecipe {
            image: repository.to_string(),
            reason: format!("the name {reason}"),
        })
    };
    let Some((host, path)) = repository.split_once('/') else {
        return fail("has no registry host part (use e.g. mcall.local/NAME)");
    };
    if !(host.contains('.') || host.contains(':') || host == "localhost") {
        return fail("must start with a registry host such as mcall.local");
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c);
    if path.is_empty() || !path.chars().all(allowed) || path.split('/').any(str::is_empty) {
        return fail(
            "may only use lower-case letters, digits, `.`, `_`, `-` and `/` after the host",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_is_the_short_image_id() {
        let id = Digest::of(b"config");
        let r = ImageRef::for_image("mcall.local/mcall-operator", &id).unwrap();
        assert_eq!(
            r.to_string(),
            format!("mcall.local/mcall-operator:{}", id.short())
        );
    }

    #[test]
    fn names_that_would_land_elsewhere_are_refused() {
        let id = Digest::of(b"config");
        for bad in [
            "mcall-operator",
            "mcall/operator",
            "mcall.local/",
            "mcall.local/Op",
            "x.y//z",
        ] {
            assert!(
                matches!(
                    ImageRef::for_image(bad, &id),
                    Err(Error::ImageRecipe { .. })
                ),
                "{bad}"
            );
        }
        ImageRef::for_image("localhost:5000/a/b", &id).unwrap();
    }
}
