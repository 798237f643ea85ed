/// Which key a robot's JSON uses for the event name.
///
/// Decided per connection by the first *valid* frame; until then the server assumes
/// [`Dialect::Underscore`], which is what the deployed C# robot speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Dialect {
    /// `"_event"`: the final original service and the C# robot. Notifications carry the
    /// package as a JSON-encoded string.
    #[default]
    Underscore,
    /// `"event"`: the README era. Notifications carry the package as an object.
    Plain,
}

impl Dialect {
    /// The JSON key holding the event name in this dialect.
    pub fn key(self) -> &'static str {
        match self {
            Dialect::Underscore => "_event",
            Dialect::Plain => "event",
        }
    }

    /// Same as [`Dialect::key`]; the key is also the dialect's name in logs and docs.
    pub fn as_str(self) -> &'static str {
        self.key()
    }
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(Dialect::Underscore.key(), "_event");
        assert_eq!(Dialect::Plain.key(), "event");
        assert_eq!(Dialect::Plain.as_str(), "event");
        assert_eq!(Dialect::default(), Dialect::Underscore);
        assert_eq!(Dialect::Underscore.to_string(), "_event");
    }
}
