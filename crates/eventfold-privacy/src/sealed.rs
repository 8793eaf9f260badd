//! Personal values in events: how an event marks them (`$personal` in its metadata),
//! how a sealed value looks in the stored JSON, and how it is sealed and opened.
//!
//! An event marks its personal values in its metadata:
//!
//! ```json
//! {"$personal": {"subject": "customer-7f3a", "fields": ["/email", "/address/street"]}}
//! ```
//!
//! Each field is a JSON pointer into the event's data; without `fields` the whole data
//! is personal. A pointer the data does not have is skipped. Stored, each such value is
//! replaced by a sealed value:
//!
//! ```json
//! {"$encrypted": "<base64: nonce (24 bytes), ciphertext, tag (16 bytes)>", "subject": "customer-7f3a"}
//! ```
//!
//! sealed with XChaCha20-Poly1305 under the subject's data key, its plaintext being the
//! value's JSON text and its associated data the event id and the pointer, so a sealed
//! value copied to another event or another field does not open. After the subject is
//! forgotten, the value reads as `{"$redacted": true}`.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use eventfold_core::{Error, Result};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::crypto::DataKey;

pub use eventfold_core::{PERSONAL_KEY, REDACTED_KEY};

/// The key of a sealed value holding its base64 text.
pub const ENCRYPTED_KEY: &str = "$encrypted";
/// Longest subject id accepted, in bytes.
pub const SUBJECT_BYTES_MAX: usize = 256;

/// What an event's `$personal` metadata says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Personal {
    /// The subject (the person) the values belong to.
    pub subject: String,
    /// JSON pointers of the personal values in the data (`[""]`: the whole data).
    pub fields: Vec<String>,
}

/// Whether `metadata` might mark personal values (a byte search, no parse: the cheap
/// test every event read passes, and the one a reader of stored events can use to
/// tell events that may hold personal data).
pub fn may_be_personal(metadata: &[u8]) -> bool {
    memchr::memmem::find(metadata, b"\"$personal\"").is_some()
}

/// The `$personal` marking of `metadata`, checked; `None` when it has none.
pub fn personal_of(metadata: &[u8]) -> Result<Option<Personal>> {
    if !may_be_personal(metadata) {
        return Ok(None);
    }
    /// The metadata, with only the marking read (the other keys are skipped, not
    /// parsed into values).
    #[derive(Deserialize)]
    struct Metadata<'a> {
        #[serde(rename = "$personal", borrow, default)]
        personal: Option<&'a RawValue>,
    }
    let metadata: Metadata<'_> = serde_json::from_slice(metadata)
        .map_err(|e| invalid(format!("metadata is not a JSON object: {e}")))?;
    let Some(marking) = metadata.personal else {
        return Ok(None);
    };
    let marking: Value = serde_json::from_str(marking.get())
        .map_err(|e| invalid(format!("{PERSONAL_KEY} is not JSON: {e}")))?;
    parse_personal(&marking).map(Some)
}

/// `{"subject": "...", "fields": [...]}` as a [`Personal`], checked.
pub fn parse_personal(marking: &Value) -> Result<Personal> {
    let subject = marking
        .get("subject")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            invalid(format!(
                "{PERSONAL_KEY} must be an object with a \"subject\" string"
            ))
        })?;
    check_subject(subject)?;
    let fields = match marking.get("fields") {
        None | Some(Value::Null) => vec![String::new()],
        Some(Value::Array(fields)) => fields
            .iter()
            .map(|f| match f.as_str() {
                Some(p) if p.is_empty() || p.starts_with('/') => Ok(p.to_string()),
                _ => Err(invalid(format!(
                    "{PERSONAL_KEY}.fields must be JSON pointers (\"\" or starting with \"/\"), \
                     not {f}"
                ))),
            })
            .collect::<Result<_>>()?,
        Some(other) => {
            return Err(invalid(format!(
                "{PERSONAL_KEY}.fields must be an array of JSON pointers, not {other}"
            )));
        }
    };
    Ok(Personal {
        subject: subject.to_string(),
        fields,
    })
}

/// Checks a subject id: not empty, at most [`SUBJECT_BYTES_MAX`] bytes, no control
/// characters.
pub fn check_subject(subject: &str) -> Result<()> {
    let reason = if subject.is_empty() {
        "is empty"
    } else if subject.len() > SUBJECT_BYTES_MAX {
        "is longer than 256 bytes"
    } else if subject.chars().any(char::is_control) {
        "contains a control character"
    } else {
        return Ok(());
    };
    Err(invalid(format!("the subject id {reason}")))
}

fn invalid(reason: String) -> Error {
    Error::InvalidEvent { reason }
}

/// The associated data of a value: what it is bound to (event id and pointer), built
/// in `buffer`.
fn aad<'b>(buffer: &'b mut Vec<u8>, event_id: Uuid, pointer: &str) -> &'b [u8] {
    buffer.clear();
    buffer.extend_from_slice(b"eventfold personal v1\0");
    buffer.extend_from_slice(event_id.as_bytes());
    buffer.extend_from_slice(pointer.as_bytes());
    buffer
}

/// A sealed value as it stands in an event's JSON text.
#[derive(Debug, Deserialize)]
pub(crate) struct SealedText<'a> {
    /// The base64 text of nonce, ciphertext and tag.
    #[serde(rename = "$encrypted", borrow)]
    pub(crate) encrypted: Cow<'a, str>,
    /// The subject whose key sealed it.
    #[serde(borrow)]
    pub(crate) subject: Cow<'a, str>,
}

/// The parts of the sealed value `text` (the JSON text of one value), when it is one.
pub(crate) fn sealed_text(text: &str) -> Option<SealedText<'_>> {
    // Most values are not objects: no parse (and no error built) for those.
    if !text.trim_start().starts_with('{') {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// The JSON text of the redaction marker (`REDACTED_KEY` set to `true`).
pub(crate) const REDACTED_TEXT: &str = r#"{"$redacted":true}"#;

/// Reusable buffers of one pass of sealing or opening (associated data, decoded bytes,
/// plaintext); the plaintext ones are wiped when dropped.
#[derive(Default)]
pub(crate) struct Scratch {
    aad: Vec<u8>,
    bytes: zeroize::Zeroizing<Vec<u8>>,
}

/// The JSON text of `value` (the JSON text of the value at `pointer` of event
/// `event_id`) sealed for `subject`: `{"$encrypted":"...","subject":"..."}`.
pub(crate) fn seal(
    key: &DataKey,
    subject: &str,
    event_id: Uuid,
    pointer: &str,
    value: &str,
    scratch: &mut Scratch,
) -> Result<String> {
    let aad = aad(&mut scratch.aad, event_id, pointer);
    let sealed = key.seal(value.as_bytes(), aad)?;
    let subject = serde_json::to_string(subject).map_err(|e| invalid(format!("a subject: {e}")))?;
    let mut text = String::with_capacity(40 + sealed.len() * 4 / 3 + subject.len());
    text.push_str("{\"");
    text.push_str(ENCRYPTED_KEY);
    text.push_str("\":\"");
    BASE64.encode_string(&sealed, &mut text);
    text.push_str("\",\"subject\":");
    text.push_str(&subject);
    text.push('}');
    Ok(text)
}

/// The JSON text `encrypted` (a sealed value's base64, at `pointer` of event
/// `event_id`) sealed, in `scratch`; `None` when it does not open with `key` or what
/// opens is not JSON text.
pub(crate) fn open<'s>(
    key: &DataKey,
    event_id: Uuid,
    pointer: &str,
    encrypted: &str,
    scratch: &'s mut Scratch,
) -> Option<&'s str> {
    scratch.bytes.clear();
    BASE64.decode_vec(encrypted, &mut scratch.bytes).ok()?;
    let aad = aad(&mut scratch.aad, event_id, pointer);
    if !key.open_in_place(&mut scratch.bytes, aad) {
        return None;
    }
    let text = std::str::from_utf8(&scratch.bytes).ok()?;
    // Sealed from JSON text, and authenticated; checked all the same, since it goes
    // into the event's data as it is.
    serde_json::from_str::<serde::de::IgnoredAny>(text).ok()?;
    Some(text)
}

/// `text` with the byte range `range` replaced by `by`.
pub(crate) fn splice(text: &str, range: std::ops::Range<usize>, by: &str) -> String {
    let mut spliced = String::with_capacity(text.len() - range.len() + by.len());
    spliced.push_str(&text[..range.start]);
    spliced.push_str(by);
    spliced.push_str(&text[range.end..]);
    spliced
}
