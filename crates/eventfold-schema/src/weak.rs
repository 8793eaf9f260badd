//! Weak-schema mapping of event data to Rust types, and the pass-through wrapper.
//!
//! Decoding follows the weak-schema rules: an unknown field is ignored, an absent
//! field takes its declared default (`#[serde(default)]`) or fails with an error
//! naming the field and its path. [`PassThrough`] keeps the fields a consumer does not
//! know, so that an enricher re-emitting an event does not lose what newer producers
//! added.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::{Result, SchemaError};

/// Decodes event data into `T` with the weak-schema rules; the error names the field.
///
/// ```
/// #[derive(serde::Deserialize, Debug, PartialEq)]
/// struct Deactivated { #[serde(rename = "itemId")] item_id: String, #[serde(default)] reason: String }
///
/// let d: Deactivated = eventfold_schema::decode("Deactivated", 2, br#"{"itemId":"a","extra":1}"#).unwrap();
/// assert_eq!(d, Deactivated { item_id: "a".into(), reason: String::new() });
/// let err = eventfold_schema::decode::<Deactivated>("Deactivated", 2, br#"{"reason":"x"}"#).unwrap_err();
/// assert!(err.to_string().contains("itemId"), "{err}");
/// ```
pub fn decode<T: DeserializeOwned>(event_type: &str, version: u32, data: &[u8]) -> Result<T> {
    decode_slice(event_type, version, data)
}

pub(crate) fn decode_slice<T: DeserializeOwned>(
    event_type: &str,
    version: u32,
    data: &[u8],
) -> Result<T> {
    // The fast path decodes directly; only a failure is decoded again, tracking the
    // path, to name the field in the error.
    serde_json::from_slice(data).map_err(|_| {
        let mut deserializer = serde_json::Deserializer::from_slice(data);
        match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
            Err(e) => decode_error(event_type, version, e),
            Ok(_) => SchemaError::Decode {
                event_type: event_type.to_string(),
                version,
                reason: "decodes only on a second attempt".into(),
            },
        }
    })
}

pub(crate) fn decode_value<T: DeserializeOwned>(
    event_type: &str,
    version: u32,
    data: Value,
) -> Result<T> {
    match serde_json::from_value::<T>(data) {
        Ok(value) => Ok(value),
        Err(error) => Err(SchemaError::Decode {
            event_type: event_type.to_string(),
            version,
            reason: error.to_string(),
        }),
    }
}

fn decode_error(
    event_type: &str,
    version: u32,
    error: serde_path_to_error::Error<serde_json::Error>,
) -> SchemaError {
    let path = error.path().to_string();
    let reason = if path == "." {
        error.inner().to_string()
    } else {
        format!("at {path}: {}", error.inner())
    };
    SchemaError::Decode {
        event_type: event_type.to_string(),
        version,
        reason,
    }
}

/// A decoded value together with the fields its type does not know, written back
/// on serialization: an enricher that reads a `PassThrough<T>`, changes `value`, and
/// writes it again keeps every field a newer producer added.
///
/// ```
/// use eventfold_schema::PassThrough;
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Order { total: u32 }
///
/// let mut order: PassThrough<Order> =
///     serde_json::from_str(r#"{"total": 5, "coupon": "SPRING"}"#).unwrap();
/// order.value.total += 1;
/// let written = serde_json::to_value(&order).unwrap();
/// assert_eq!(written, serde_json::json!({"total": 6, "coupon": "SPRING"}));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PassThrough<T> {
    /// The part the consumer understands.
    pub value: T,
    /// The fields it does not, kept as they came.
    pub unknown: Map<String, Value>,
}

impl<T> PassThrough<T> {
    /// Wraps `value` with no unknown fields.
    pub fn new(value: T) -> Self {
        PassThrough {
            value,
            unknown: Map::new(),
        }
    }
}

impl<'de, T: Serialize + DeserializeOwned> Deserialize<'de> for PassThrough<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut fields = Map::<String, Value>::deserialize(deserializer)?;
        let value: T =
            serde_json::from_value(Value::Object(fields.clone())).map_err(D::Error::custom)?;
        // The fields T knows are the ones it writes back; the others are kept aside.
        if let Value::Object(known) = serde_json::to_value(&value).map_err(D::Error::custom)? {
            fields.retain(|key, _| !known.contains_key(key));
        }
        Ok(PassThrough {
            value,
            unknown: fields,
        })
    }
}

impl<T: Serialize> Serialize for PassThrough<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let mut fields = match serde_json::to_value(&self.value).map_err(S::Error::custom)? {
            Value::Object(fields) => fields,
            _ => {
                return Err(S::Error::custom(
                    "PassThrough needs a type written as a JSON object",
                ));
            }
        };
        for (key, value) in &self.unknown {
            // What the consumer set wins over what it did not understand.
            fields.entry(key.clone()).or_insert_with(|| value.clone());
        }
        fields.serialize(serializer)
    }
}
