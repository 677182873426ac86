use std::fmt;

/// One problem in the spec: the file, the path of the offending node inside it, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("spec/{file}: {path}: {message}")]
pub struct SpecError {
    pub file: String,
    pub path: String,
    pub message: String,
}

/// All problems found in one pass, so a user fixes them in one round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecErrors(pub Vec<SpecError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the spec is invalid ({} problem(s)):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}
