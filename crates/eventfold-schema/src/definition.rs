//! What one registered version of an event type says: the body of
//! `PUT /schemas/{type}/{version}` and the data of a `$schema-registered` event.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// One version of one event type, as a node of the conversion graph.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EventVersion {
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Its schema version, from 1.
    pub version: u32,
}

impl EventVersion {
    /// `event_type` at `version`.
    pub fn new(event_type: impl Into<String>, version: u32) -> Self {
        EventVersion {
            event_type: event_type.into(),
            version,
        }
    }
}

impl std::fmt::Display for EventVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} v{}", self.event_type, self.version)
    }
}

/// The registration of one version of an event type.
///
/// Converters are jq programs over the event's data. An upcast emits one value per
/// resulting event: `empty` drops the event, `(a, b)` splits it. An emitted object
/// with a `"$type"` key (and optionally `"$version"`, default 1) becomes an event of
/// that type, which is how a split can produce events of new types.
///
/// ```
/// use eventfold_schema::VersionDefinition;
/// let v2: VersionDefinition = serde_json::from_value(serde_json::json!({
///     "schema": {"type": "object", "required": ["itemId"]},
///     "upcast": "{itemId: .id, reason: \"unknown\"}",
///     "downcast": "{id: .itemId}"
/// })).unwrap();
/// assert!(v2.upcast.is_some());
///
/// // Only a JSON object is a definition (serde would take an array field by field).
/// assert!(serde_json::from_str::<VersionDefinition>("[]").is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct VersionDefinition {
    /// A JSON Schema the data of this version must match; appends are validated
    /// against it. Hybrid schemas are the advice: require what the event cannot make
    /// sense without, leave the rest optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// jq program converting the data of the previous version into this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upcast: Option<String>,
    /// jq program converting the data of this version into the previous one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downcast: Option<String>,
    /// The version this one follows when it is not `version - 1` of the same type:
    /// a rename names the old type here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<EventVersion>,
    /// Direct upcasts from older versions of the same type (skip-ahead converters),
    /// by the version they start from.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub skip_upcasts: BTreeMap<u32, String>,
    /// Declares that `downcast(upcast(e)) == e` for every event of the previous
    /// version; checked on stored samples at registration.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lossless: bool,
    /// Personal values of every event of this version: appends of an event without
    /// `$personal` metadata get it from here (the subject read from the data), so the
    /// privacy layer seals them. See [`PersonalDeclaration`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal: Option<PersonalDeclaration>,
}

/// `"personal": {"subject": "/pointer/to/subject/id", "fields": ["/pointer", ...]}` of
/// a version: where its events hold their subject's id, and which values are personal
/// (no `fields`: the whole data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonalDeclaration {
    /// JSON pointer to the subject id (a string) in the data.
    pub subject: String,
    /// JSON pointers of the personal values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
}

impl PersonalDeclaration {
    /// The `$personal` metadata value for an event of this version with `data`; an
    /// error when the data has no string subject id at the declared pointer.
    pub fn marking(&self, data: &Value) -> Result<Value, String> {
        let subject = data
            .pointer(&self.subject)
            .and_then(Value::as_str)
            .ok_or_else(|| {
                format!(
                    "the schema declares personal data whose subject id is the string at \
                     '{}', and the event's data has none there",
                    self.subject
                )
            })?;
        let mut marking = serde_json::Map::new();
        marking.insert("subject".into(), Value::String(subject.to_string()));
        if let Some(fields) = &self.fields {
            marking.insert(
                "fields".into(),
                Value::Array(fields.iter().cloned().map(Value::String).collect()),
            );
        }
        Ok(Value::Object(marking))
    }
}

impl Serialize for VersionDefinition {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        VersionDefinition::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for VersionDefinition {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = serde_json::Map::<String, Value>::deserialize(deserializer)?;
        VersionDefinition::deserialize(Value::Object(object)).map_err(serde::de::Error::custom)
    }
}

impl VersionDefinition {
    /// A version with only a JSON Schema.
    pub fn with_schema(schema: Value) -> Self {
        VersionDefinition {
            schema: Some(schema),
            ..Self::default()
        }
    }

    /// The version this one converts from, for `event_type` at `version`.
    pub fn previous_of(&self, event_type: &str, version: u32) -> Option<EventVersion> {
        self.previous
            .clone()
            .or_else(|| (version > 1).then(|| EventVersion::new(event_type, version - 1)))
    }
}

/// The data of a `$schema-registered` event in the `$schemas` stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// The event type registered.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The version registered.
    pub version: u32,
    /// What was registered.
    pub definition: VersionDefinition,
}

/// The event type of registry entries in `$schemas`.
pub const REGISTRATION_EVENT_TYPE: &str = "$schema-registered";
/// The system stream holding the registry's history.
pub const SCHEMAS_STREAM: &str = "$schemas";
