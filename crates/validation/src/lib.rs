#![doc = include_str!("../README.md")]

use std::fmt;

/// Whether a field was absent or present but unacceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldErrorKind {
    /// The field is absent, `null`, or an empty string, and it is required.
    Missing,
    /// The field is present but has the wrong type, size or content.
    Invalid,
}

impl FieldErrorKind {
    /// A stable lower-case word: `"missing"` or `"invalid"`.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldErrorKind::Missing => "missing",
            FieldErrorKind::Invalid => "invalid",
        }
    }
}

impl fmt::Display for FieldErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted location as the client wrote it, e.g. `"Package.path"`, `"Schedule"`; `""` is
    /// the whole document.
    pub field: String,
    pub kind: FieldErrorKind,
    /// One human sentence saying why.
    pub message: String,
}

impl FieldError {
    /// A required field is absent or empty.
    pub fn missing(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Missing,
            message: message.into(),
        }
    }

    /// A field is present but its value is not acceptable.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Invalid,
            message: message.into(),
        }
    }

    pub fn is_missing(&self) -> bool {
        self.kind == FieldErrorKind::Missing
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = if self.field.is_empty() {
            "document"
        } else {
            &self.field
        };
        write!(f, "{field} ({}): {}", self.kind, self.message)
    }
}

impl std::error::Error for FieldError {}

/// Every field that failed validation in one request, in the order found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn new() -> FieldErrors {
        FieldErrors(Vec::new())
    }

    pub fn push(&mut self, error: FieldError) {
        self.0.push(error);
    }

    /// True when at least one required field is missing.
    pub fn any_missing(&self) -> bool {
        self.0.iter().any(FieldError::is_missing)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, FieldError> {
        self.0.iter()
    }

    pub fn as_slice(&self) -> &[FieldError] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }
}

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FieldErrors {}

impl From<FieldError> for FieldErrors {
    fn from(error: FieldError) -> FieldErrors {
        FieldErrors(vec![error])
    }
}

impl From<Vec<FieldError>> for FieldErrors {
    fn from(errors: Vec<FieldError>) -> FieldErrors {
        FieldErrors(errors)
    }
}

impl FromIterator<FieldError> for FieldErrors {
    fn from_iter<I: IntoIterator<Item = FieldError>>(iter: I) -> FieldErrors {
        FieldErrors(iter.into_iter().collect())
    }
}

impl Extend<FieldError> for FieldErrors {
    fn extend<I: IntoIterator<Item = FieldError>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

impl<'a> IntoIterator for &'a FieldErrors {
    type Item = &'a FieldError;
    type IntoIter = std::slice::Iter<'a, FieldError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for FieldErrors {
    type Item = FieldError;
    type IntoIter = std::vec::IntoIter<FieldError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_field_or_the_document() {
        assert_eq!(
            FieldError::missing("Package.path", "This field is required.").to_string(),
            "Package.path (missing): This field is required."
        );
        assert_eq!(
            FieldError::invalid("", "Must be a JSON object.").to_string(),
            "document (invalid): Must be a JSON object."
        );
    }

    #[test]
    fn a_collection_keeps_its_order_and_tells_missing_apart() {
        let mut errors: FieldErrors = FieldError::invalid("Schedule.date", "no").into();
        assert!(!errors.any_missing());
        errors.extend([FieldError::missing("Robot", "required")]);
        assert!(errors.any_missing());
        assert_eq!(errors.len(), 2);
        assert_eq!(
            errors.to_string(),
            "Schedule.date (invalid): no; Robot (missing): required"
        );
        let fields: Vec<String> = errors.into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["Schedule.date", "Robot"]);
        assert!(FieldErrors::new().is_empty());
    }
}
