//! Personal data in domain events: which values of an event belong to a person
//! ([`PersonalData`], returned by [`DomainEvent::personal`](crate::DomainEvent::personal)),
//! and a value that reads as redacted once that person is forgotten ([`Personal`]).
//!
//! The framework only marks the values (`$personal` in the event's metadata); the
//! store's privacy layer (eventfold-privacy, on by default in `eventfold serve` and the
//! CLI) seals them before they reach the log and opens them on every read. After
//! `forget SUBJECT`, each such value reads as `{"$redacted": true}`, and the projection
//! runner calls [`Projection::forget`](crate::projection::Projection::forget) so a read
//! model drops its copies.

use serde::de::{DeserializeOwned, Deserializer};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

pub use eventfold_core::{PERSONAL_KEY, REDACTED_KEY};

/// Which values of one event belong to a person: the subject (an id of the person that
/// is not personal data itself, such as an account id) and the JSON pointers of those
/// values in the event's data (none: the whole data).
///
/// ```
/// use eventfold::PersonalData;
/// let marking = PersonalData::new("customer-7f3a").field("/email").field("/address");
/// assert_eq!(
///     marking.to_metadata(),
///     serde_json::json!({"subject": "customer-7f3a", "fields": ["/email", "/address"]})
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalData {
    /// The subject the values belong to.
    pub subject: String,
    /// JSON pointers of the personal values in the data; empty: the whole data.
    pub fields: Vec<String>,
}

impl PersonalData {
    /// The whole data of the event belongs to `subject` (add [`field`](Self::field)s
    /// to narrow it).
    pub fn new(subject: impl Into<String>) -> PersonalData {
        PersonalData {
            subject: subject.into(),
            fields: Vec::new(),
        }
    }

    /// The value at the JSON `pointer` (such as `/email`) is personal.
    pub fn field(mut self, pointer: impl Into<String>) -> PersonalData {
        self.fields.push(pointer.into());
        self
    }

    /// The `$personal` metadata value.
    pub fn to_metadata(&self) -> serde_json::Value {
        let mut marking = serde_json::Map::new();
        marking.insert("subject".into(), self.subject.clone().into());
        if !self.fields.is_empty() {
            marking.insert("fields".into(), self.fields.clone().into());
        }
        serde_json::Value::Object(marking)
    }
}

/// A personal value as events read it: the value while its subject is remembered,
/// [`Personal::Redacted`] once the subject is forgotten (the stored value then reads as
/// `{"$redacted": true}`). Use it for every field an event marks as personal, so that
/// an aggregate, a projection or a rebuild keeps decoding the event after `forget`.
///
/// ```
/// use eventfold::Personal;
/// let known: Personal<String> = serde_json::from_str(r#""ann@example.com""#).unwrap();
/// assert_eq!(known.known().map(String::as_str), Some("ann@example.com"));
/// let forgotten: Personal<String> = serde_json::from_str(r#"{"$redacted": true}"#).unwrap();
/// assert!(forgotten.is_redacted());
/// assert_eq!(serde_json::to_string(&known).unwrap(), r#""ann@example.com""#);
/// assert_eq!(serde_json::to_string(&forgotten).unwrap(), r#"{"$redacted":true}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Personal<T> {
    /// The value.
    Known(T),
    /// The subject was forgotten: the value is gone for good.
    Redacted,
}

impl<T> Personal<T> {
    /// The value, unless it was redacted.
    pub fn known(&self) -> Option<&T> {
        match self {
            Personal::Known(value) => Some(value),
            Personal::Redacted => None,
        }
    }

    /// The value, unless it was redacted.
    pub fn into_known(self) -> Option<T> {
        match self {
            Personal::Known(value) => Some(value),
            Personal::Redacted => None,
        }
    }

    /// Whether the value was redacted.
    pub fn is_redacted(&self) -> bool {
        matches!(self, Personal::Redacted)
    }
}

impl<T> From<T> for Personal<T> {
    fn from(value: T) -> Self {
        Personal::Known(value)
    }
}

impl<T: Serialize> Serialize for Personal<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Personal::Known(value) => value.serialize(serializer),
            Personal::Redacted => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry(REDACTED_KEY, &true)?;
                map.end()
            }
        }
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Personal<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Through a JSON value: the marker is told apart by its shape, and a value that
        // is not the marker keeps the error message of `T` itself.
        let value = serde_json::Value::deserialize(deserializer)?;
        if is_redaction(&value) {
            return Ok(Personal::Redacted);
        }
        T::deserialize(value)
            .map(Personal::Known)
            .map_err(serde::de::Error::custom)
    }
}

/// Whether `value` is the redaction marker `{"$redacted": true}`.
fn is_redaction(value: &serde_json::Value) -> bool {
    value
        .as_object()
        .is_some_and(|map| map.len() == 1 && map.get(REDACTED_KEY) == Some(&true.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Deserialize)]
    struct Contact {
        email: Personal<String>,
        plan: String,
    }

    #[test]
    fn a_redacted_field_decodes_and_a_wrong_one_names_its_problem() {
        let contact: Contact =
            serde_json::from_str(r#"{"email": {"$redacted": true}, "plan": "pro"}"#).unwrap();
        assert_eq!(contact.email, Personal::Redacted);
        let wrong = serde_json::from_str::<Contact>(r#"{"email": 7, "plan": "pro"}"#)
            .unwrap_err()
            .to_string();
        assert!(wrong.contains("expected a string"), "{wrong}");
        // An object that merely has the key besides others is a value, not the marker.
        let other = serde_json::from_str::<Personal<serde_json::Value>>(
            r#"{"$redacted": true, "why": "x"}"#,
        )
        .unwrap();
        assert!(!other.is_redacted());
    }
}
