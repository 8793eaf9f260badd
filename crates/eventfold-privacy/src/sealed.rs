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
//! {"$encrypted": "<base64: ciphertext, tag (16 bytes)>", "subject": "customer-7f3a", "cipher": "aes-256-gcm-siv"}
//! ```
//!
//! sealed with AES-256-GCM-SIV under the subject's data key, its plaintext being the
//! value's JSON text, its nonce the last 12 bytes of the event id, and its associated
//! data the event id and the pointer, so a sealed value copied to another event or
//! another field does not open. A sealed value without `cipher` was sealed before
//! GCM-SIV: XChaCha20-Poly1305, its base64 holding a 24-byte nonce in front; it still
//! opens. After the subject is forgotten, the value reads as `{"$redacted": true}`.

use std::borrow::Cow;
use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use eventfold_core::{Error, Result};
use memchr::memmem;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::crypto::{DataKey, VALUE_NONCE_BYTES};
use crate::json_walk::Cursor;

pub use eventfold_core::{PERSONAL_KEY, REDACTED_KEY};

/// The key of a sealed value holding its base64 text.
pub const ENCRYPTED_KEY: &str = "$encrypted";
/// The key of a sealed value naming its cipher (absent: sealed before GCM-SIV, with
/// XChaCha20-Poly1305).
pub const CIPHER_KEY: &str = "cipher";
/// What [`CIPHER_KEY`] holds for the values sealed now.
pub const CIPHER_AES_256_GCM_SIV: &str = "aes-256-gcm-siv";
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
    // Every event read through the layer passes here: the searcher is built once.
    static FINDER: LazyLock<memmem::Finder<'static>> =
        LazyLock::new(|| memmem::Finder::new(b"\"$personal\""));
    FINDER.find(metadata).is_some()
}

/// The `$personal` marking of `metadata`, checked; `None` when it has none.
pub fn personal_of(metadata: &[u8]) -> Result<Option<Personal>> {
    if !may_be_personal(metadata) {
        return Ok(None);
    }
    // Every event read or appended with personal values passes here: a walk that
    // reads a plainly written marking and skips the rest. What it does not read
    // plainly is read the slow way, with serde_json, which names what is wrong.
    match personal_plainly(metadata) {
        Some(personal) => Ok(Some(personal)),
        None => personal_of_checked(metadata),
    }
}

/// The marking of `metadata` when it is written plainly: one `$personal` object in a
/// metadata object, with one `subject` and at most one `fields`, strings without
/// escapes, and a subject and pointers that pass their checks. `None` for anything
/// else, which [`personal_of`] then reads with serde_json (a marking written any other
/// way reads the same; what is wrong with one is named there).
fn personal_plainly(metadata: &[u8]) -> Option<Personal> {
    // One walk: the marking is read where it stands, the other keys are skipped.
    let mut marking = None;
    let mut cursor = Cursor::new(metadata);
    cursor.members(|key, cursor| {
        if key != PERSONAL_KEY.as_bytes() {
            return cursor.skip_value().map(drop);
        }
        // A repeated marking: serde_json's reading refuses it (and names it).
        if marking.is_some() {
            return None;
        }
        marking = Some(marking_plainly(cursor)?);
        Some(())
    })?;
    if !cursor.at_end() {
        return None;
    }
    marking
}

/// The `$personal` object at `cursor`, written plainly (see [`personal_plainly`]).
fn marking_plainly(cursor: &mut Cursor<'_>) -> Option<Personal> {
    let (mut subject, mut fields) = (None, None);
    cursor.members(|key, cursor| {
        match key {
            b"subject" if subject.is_none() => subject = Some(plain_str(cursor)?),
            b"fields" if fields.is_none() => {
                let mut pointers = Vec::new();
                cursor.elements(|_, cursor| {
                    let pointer = plain_str(cursor)?;
                    is_pointer(pointer).then(|| pointers.push(pointer.to_string()))
                })?;
                fields = Some(pointers);
            }
            b"subject" | b"fields" => return None,
            _ => {
                cursor.skip_value()?;
            }
        }
        Some(())
    })?;
    let subject = subject?;
    check_subject(subject).ok()?;
    Some(Personal {
        subject: subject.to_string(),
        fields: fields.unwrap_or_else(|| vec![String::new()]),
    })
}

/// The string at `cursor` when it is written without escapes, checked as UTF-8 (the
/// walk passes other bytes as they are).
fn plain_str<'a>(cursor: &mut Cursor<'a>) -> Option<&'a str> {
    std::str::from_utf8(cursor.plain_string()?).ok()
}

/// Whether `field` is written as a JSON pointer: `""` (the whole data) or starting with
/// `/`.
fn is_pointer(field: &str) -> bool {
    field.is_empty() || field.starts_with('/')
}

/// [`personal_of`] the slow way: every part checked on its own, with an error naming
/// what is wrong.
fn personal_of_checked(metadata: &[u8]) -> Result<Option<Personal>> {
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
                Some(p) if is_pointer(p) => Ok(p.to_string()),
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
    /// The cipher that sealed it; `None` for values sealed before GCM-SIV.
    #[serde(borrow, default)]
    pub(crate) cipher: Option<Cow<'a, str>>,
}

impl SealedText<'_> {
    /// Why this value cannot be opened by any key, when its cipher is one this version
    /// does not know (sealed by a newer eventfold, or damaged).
    pub(crate) fn unknown_cipher(&self) -> Option<String> {
        match self.cipher.as_deref() {
            None | Some(CIPHER_AES_256_GCM_SIV) => None,
            Some(other) => Some(format!(
                "it was sealed with cipher '{other}', which this version of eventfold does not \
                 know (it opens {CIPHER_AES_256_GCM_SIV} and, without \"{CIPHER_KEY}\", \
                 XChaCha20-Poly1305)"
            )),
        }
    }
}

/// The parts of the sealed value `text` (the JSON text of one value), when it is one.
pub(crate) fn sealed_text(text: &[u8]) -> Option<SealedText<'_>> {
    // Most values are not objects: no parse (and no error built) for those.
    if text.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    sealed_text_plainly(text).or_else(|| serde_json::from_slice(text).ok())
}

/// [`sealed_text`] of a sealed value written plainly: an object with one each of
/// `$encrypted` and `subject` and at most one `cipher`, strings without escapes (as
/// this layer writes them). `None` for anything else, which serde_json then reads.
fn sealed_text_plainly(text: &[u8]) -> Option<SealedText<'_>> {
    // One check of the whole text, then its strings are slices of it.
    let text = std::str::from_utf8(text).ok()?;
    let (mut encrypted, mut subject, mut cipher) = (None, None, None);
    let mut cursor = Cursor::new(text.as_bytes());
    fn plain<'t>(text: &'t str, slot: &mut Option<&'t str>, cursor: &mut Cursor<'_>) -> Option<()> {
        let value = text.get(cursor.plain_string_span()?)?;
        slot.replace(value).is_none().then_some(())
    }
    cursor.members(|key, cursor| match key {
        b"$encrypted" => plain(text, &mut encrypted, cursor),
        b"subject" => plain(text, &mut subject, cursor),
        b"cipher" => plain(text, &mut cipher, cursor),
        _ => cursor.skip_value().map(drop),
    })?;
    if !cursor.at_end() {
        return None;
    }
    Some(SealedText {
        encrypted: Cow::Borrowed(encrypted?),
        subject: Cow::Borrowed(subject?),
        cipher: cipher.map(Cow::Borrowed),
    })
}

/// The JSON text of the redaction marker (`REDACTED_KEY` set to `true`).
pub(crate) const REDACTED_TEXT: &[u8] = br#"{"$redacted":true}"#;

/// Reusable buffers of one pass of sealing or opening (associated data, decoded bytes,
/// plaintext); the plaintext ones are wiped when dropped.
#[derive(Default)]
pub(crate) struct Scratch {
    aad: Vec<u8>,
    bytes: zeroize::Zeroizing<Vec<u8>>,
}

/// The nonce of the values of event `event_id`: the last 12 bytes of its id (for the
/// store's UUID v7 ids, random and counter bits). GCM-SIV stays safe when one repeats,
/// and the associated data holds the whole id.
fn nonce_of(event_id: Uuid) -> [u8; VALUE_NONCE_BYTES] {
    let mut nonce = [0u8; VALUE_NONCE_BYTES];
    nonce.copy_from_slice(&event_id.as_bytes()[16 - VALUE_NONCE_BYTES..]);
    nonce
}

/// The JSON text of `value` (the JSON text of the value at `pointer` of event
/// `event_id`) sealed for `subject`:
/// `{"$encrypted":"...","subject":"...","cipher":"aes-256-gcm-siv"}`.
pub(crate) fn seal(
    key: &DataKey,
    subject: &str,
    event_id: Uuid,
    pointer: &str,
    value: &[u8],
    scratch: &mut Scratch,
) -> Result<String> {
    let aad = aad(&mut scratch.aad, event_id, pointer);
    scratch.bytes.clear();
    key.seal_into(&nonce_of(event_id), value, aad, &mut scratch.bytes)?;
    let mut text = String::with_capacity(80 + scratch.bytes.len() * 4 / 3 + subject.len());
    text.push_str("{\"");
    text.push_str(ENCRYPTED_KEY);
    text.push_str("\":\"");
    BASE64.encode_string(&scratch.bytes, &mut text);
    text.push_str("\",\"subject\":");
    // A subject has no control characters (`check_subject`): only a quote or a
    // backslash needs escaping, and most subjects have neither.
    if subject.contains(['"', '\\']) {
        text.push_str(
            &serde_json::to_string(subject).map_err(|e| invalid(format!("a subject: {e}")))?,
        );
    } else {
        text.push('"');
        text.push_str(subject);
        text.push('"');
    }
    text.push_str(",\"");
    text.push_str(CIPHER_KEY);
    text.push_str("\":\"");
    text.push_str(CIPHER_AES_256_GCM_SIV);
    text.push_str("\"}");
    Ok(text)
}

/// The JSON text `sealed` (a sealed value at `pointer` of event `event_id`) sealed, in
/// `scratch`; `None` when it does not open with `key` or what opens is not JSON text.
pub(crate) fn open<'s>(
    key: &DataKey,
    event_id: Uuid,
    pointer: &str,
    sealed: &SealedText<'_>,
    scratch: &'s mut Scratch,
) -> Option<&'s str> {
    scratch.bytes.clear();
    BASE64
        .decode_vec(sealed.encrypted.as_ref(), &mut scratch.bytes)
        .ok()?;
    let aad = aad(&mut scratch.aad, event_id, pointer);
    let opened = match sealed.cipher.as_deref() {
        Some(CIPHER_AES_256_GCM_SIV) => {
            key.open_in_place(&nonce_of(event_id), &mut scratch.bytes, aad)
        }
        None => key.open_legacy_in_place(&mut scratch.bytes, aad),
        Some(_) => false,
    };
    if !opened {
        return None;
    }
    // Sealed from JSON text, and authenticated; checked all the same, since it goes
    // into the event's data as it is.
    json_text(&scratch.bytes).ok()
}

/// `bytes` as the text of one JSON value, checked; the error says what is wrong. UTF-8
/// is checked first: serde_json does not look at the bytes of a string it skips.
pub(crate) fn json_text(bytes: &[u8]) -> std::result::Result<&str, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| e.to_string())?;
    Ok(text)
}

/// `text` with the byte range `range` replaced by `by`.
pub(crate) fn splice(text: &[u8], range: std::ops::Range<usize>, by: &[u8]) -> Vec<u8> {
    let mut spliced = Vec::with_capacity(text.len() - range.len() + by.len());
    spliced.extend_from_slice(&text[..range.start]);
    spliced.extend_from_slice(by);
    spliced.extend_from_slice(&text[range.end..]);
    spliced
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_id() -> Uuid {
        Uuid::parse_str("0193a5c2-7e1b-7c3d-9f00-5a6b7c8d9e0f").unwrap()
    }

    #[test]
    fn a_value_sealed_before_gcm_siv_still_opens() {
        // Written by eventfold before values were sealed with AES-256-GCM-SIV
        // (XChaCha20-Poly1305, synthetic nonce in front), with this data key.
        let key = DataKey::from_bytes(&[7u8; 32]);
        let stored = r#"{"$encrypted":"VNgJysd/nZaLKCSqd2wTiW/h2Oim3F/4by1cUEcsuQgyp2QsACWDwZfGi5XARTZg0zu4WSmoM5MR","subject":"customer-7f3a"}"#;
        let sealed = sealed_text(stored.as_bytes()).unwrap();
        assert!(sealed.cipher.is_none() && sealed.unknown_cipher().is_none());
        let mut scratch = Scratch::default();
        assert_eq!(
            open(&key, event_id(), "/email", &sealed, &mut scratch),
            Some(r#""ann@example.com""#)
        );
        assert_eq!(open(&key, event_id(), "/name", &sealed, &mut scratch), None);
    }

    #[test]
    fn a_value_sealed_with_gcm_siv_by_earlier_code_opens_and_seals_the_same() {
        // Sealed with this data key when GCM-SIV ran on the `aes` crate's 0.9.4 release
        // (now held at 0.9.2): whichever release and instructions compute it, what is
        // stored must open, and a re-send must seal to the stored bytes.
        let key = DataKey::from_bytes(&[7u8; 32]);
        let stored = r#"{"$encrypted":"viK/x32ZqZ8zyz668ktonu+el34LT6IjDR/pg+KO8QGM","subject":"customer-7f3a","cipher":"aes-256-gcm-siv"}"#;
        let value = r#""ann@example.com""#;
        let mut scratch = Scratch::default();
        let sealed = sealed_text(stored.as_bytes()).unwrap();
        assert_eq!(
            open(&key, event_id(), "/email", &sealed, &mut scratch),
            Some(value)
        );
        assert_eq!(seal_email(&key, value, &mut scratch), stored);
    }

    /// `value` sealed as the email of [`event_id`] for subject `customer-7f3a`.
    fn seal_email(key: &DataKey, value: &str, scratch: &mut Scratch) -> String {
        seal(
            key,
            "customer-7f3a",
            event_id(),
            "/email",
            value.as_bytes(),
            scratch,
        )
        .unwrap()
    }

    #[test]
    fn a_value_seals_with_gcm_siv_bound_to_its_event_and_field() {
        let key = DataKey::from_bytes(&[7u8; 32]);
        let mut scratch = Scratch::default();
        let value = r#""ann@example.com""#;
        let mut sealed_for_email = || seal_email(&key, value, &mut scratch);
        let text = sealed_for_email();
        assert!(!text.contains("ann@example.com"));
        assert_eq!(
            text,
            sealed_for_email(),
            "a re-send seals to the same bytes"
        );
        let sealed = sealed_text(text.as_bytes()).unwrap();
        assert_eq!(sealed.cipher.as_deref(), Some(CIPHER_AES_256_GCM_SIV));
        assert_eq!(sealed.subject, "customer-7f3a");
        assert_eq!(
            open(&key, event_id(), "/email", &sealed, &mut scratch),
            Some(value)
        );
        assert_eq!(open(&key, event_id(), "/name", &sealed, &mut scratch), None);
        assert_eq!(
            open(&key, Uuid::now_v7(), "/email", &sealed, &mut scratch),
            None
        );
        let other = DataKey::from_bytes(&[8u8; 32]);
        assert_eq!(
            open(&other, event_id(), "/email", &sealed, &mut scratch),
            None
        );
    }

    #[test]
    fn the_quick_reading_of_a_marking_agrees_with_the_checked_one() {
        let cases = [
            r#"{"$personal":{"subject":"s-1","fields":["/email","/a~1b"]}}"#,
            r#"{"other":[1,{"x":2}],"$personal":{"subject":"s\u0031"}}"#,
            r#"{"$personal":{"subject":"s-1","fields":null,"note":"kept out"}}"#,
            r#"{"$personal":null}"#,
            r#"{"$personal":{"subject":"s-1","fields":["email"]}}"#,
            r#"{"$personal":{"subject":"","fields":["/email"]}}"#,
            r#"{"$personal":{"subject":7}}"#,
            r#"{"$personal":{"fields":["/email"]}}"#,
            r#"{"$personal":{"subject":"s","fields":"/email"}}"#,
            r#"{"$personal":{"subject":"s","subject":"t"}}"#,
            r#"{"$personal":{"subject":"a\u0007b"}}"#,
            r#"["$personal"]"#,
            r#"{"$personal":{"subject":"s"}"#,
            r#"{"note":"\"$personal\" in a string"}"#,
            r#"{"$personal":{"subject":"s"},"$personal":{"subject":"t"}}"#,
            r#" { "$personal" : { "fields" : [ "/a" , "/b/0" ] , "subject" : "s" } , "x" : [ ] } "#,
            r#"{"$personal":{"subject":"s\"q","fields":["/a\u0062"]}}"#,
            r#"{"$personal":{"subject":"s","fields":[]}}"#,
            r#"{"$personal":{"subject":"s","fields":[7]}}"#,
            r#"{"$personal":{"subject":"s"}} trailing"#,
            r#"{"$personal":{"subject":"Zoë"}}"#,
        ];
        for metadata in cases {
            let quick = personal_of(metadata.as_bytes()).map_err(|e| e.to_string());
            let checked = personal_of_checked(metadata.as_bytes()).map_err(|e| e.to_string());
            assert_eq!(quick, checked, "{metadata}");
        }
        assert_eq!(
            personal_of(cases[0].as_bytes()).unwrap().unwrap(),
            Personal {
                subject: "s-1".into(),
                fields: vec!["/email".into(), "/a~1b".into()],
            }
        );
        assert_eq!(
            personal_of(cases[1].as_bytes()).unwrap().unwrap().fields,
            vec![String::new()]
        );
        assert!(personal_of(cases[4].as_bytes()).is_err());
    }

    #[test]
    fn the_quick_reading_of_a_sealed_value_agrees_with_serde_json() {
        let cases = [
            r#"{"$encrypted":"AAAA","subject":"s","cipher":"aes-256-gcm-siv"}"#,
            r#" { "cipher" : "x" , "subject" : "s" , "$encrypted" : "AAAA" } "#,
            r#"{"$encrypted":"AAAA","subject":"s","note":[1,{"a":"}"}]}"#,
            r#"{"$encrypted":"AAAA","subject":"s"}"#,
            r#"{"$encrypted":"AAAA","subject":"s","subject":"t"}"#,
            r#"{"$encrypted":"AA\u0041A","subject":"s"}"#,
            r#"{"$encrypted":"AAAA","subject":"s","cipher":null}"#,
            r#"{"$encrypted":7,"subject":"s"}"#,
            r#"{"$encrypted":"AAAA"}"#,
            r#"{"subject":"s"}"#,
            r#"{"$encrypted":"AAAA","subject":"s"} x"#,
            r#"{"$encrypted":"AAAA","subject":"Zoë"}"#,
            r#"{"$redacted":true}"#,
            r#""a string""#,
        ];
        let parts = |sealed: Option<SealedText<'_>>| {
            sealed.map(|s| {
                (
                    s.encrypted.into_owned(),
                    s.subject.into_owned(),
                    s.cipher.map(Cow::into_owned),
                )
            })
        };
        for text in cases {
            let by_serde = serde_json::from_str::<SealedText<'_>>(text).ok();
            assert_eq!(
                parts(sealed_text(text.as_bytes())),
                parts(by_serde),
                "{text}"
            );
        }
        assert!(sealed_text_plainly(cases[0].as_bytes()).is_some());
        assert!(
            sealed_text_plainly(cases[5].as_bytes()).is_none(),
            "escaped: serde reads it"
        );
    }

    #[test]
    fn a_value_of_an_unknown_cipher_is_named_not_opened() {
        let key = DataKey::from_bytes(&[7u8; 32]);
        let stored = r#"{"$encrypted":"AAAA","subject":"s","cipher":"rot13"}"#;
        let sealed = sealed_text(stored.as_bytes()).unwrap();
        assert!(sealed.unknown_cipher().unwrap().contains("'rot13'"));
        let mut scratch = Scratch::default();
        assert_eq!(
            open(&key, event_id(), "/email", &sealed, &mut scratch),
            None
        );
    }
}
