//! The one error of compilation: a spec field that cannot work, named by its path.

/// A request that cannot run, with the spec field at fault (`spec.input`, `spec.expect`,
/// `spec.outputValidation.expectedOutput`, `spec.input[1].input`, ...). The controller turns it
/// into `phase: Failed` with condition reason `InvalidSpec`; it is never retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidSpec {
    /// Path of the offending field, as a user would write it in the McallTask.
    pub field: String,
    /// What is wrong and, where it helps, how to fix it.
    pub message: String,
}

impl InvalidSpec {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        InvalidSpec {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_field_then_message() {
        let err = InvalidSpec::new("spec.expect", "invalid regex");
        assert_eq!(err.to_string(), "spec.expect: invalid regex");
    }
}
