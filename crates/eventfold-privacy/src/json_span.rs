//! Where a value sits inside JSON text: the byte range of the value a JSON pointer
//! names, found by one pass of serde_json over each level on the way, without building
//! a tree of the document.
//!
//! Sealing and opening replace one value of an event's data; doing it on the text
//! (splicing the new value into the byte range of the old) keeps the rest of the
//! document as it was written and spares a parse into `serde_json::Value` and a
//! serialization back for every event read. serde_json has no pointer lookup on text,
//! only on a parsed `Value`, hence this small seed over its deserializer.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// The byte range of the value at `pointer` (RFC 6901; `""` is the whole document) in
/// `json`; `None` when the document has no such value. An error when `json` is not
/// JSON (as far as the walk reads it: every level on the way is read whole).
pub(crate) fn find(json: &str, pointer: &str) -> Result<Option<Range<usize>>, serde_json::Error> {
    let mut value: &str = json;
    if pointer.is_empty() {
        let whole: &RawValue = serde_json::from_str(json)?;
        return Ok(Some(range_in(json, whole.get())));
    }
    for token in pointer.split('/').skip(1) {
        let token = unescape(token);
        let mut deserializer = serde_json::Deserializer::from_str(value);
        let child = Child { token: &token }.deserialize(&mut deserializer)?;
        deserializer.end()?;
        match child {
            Some(child) => value = child.get(),
            None => return Ok(None),
        }
    }
    Ok(Some(range_in(json, value)))
}

/// The range `part` (a slice of `whole`) covers in `whole`.
fn range_in(whole: &str, part: &str) -> Range<usize> {
    // Both are slices of one string: their addresses differ by the offset.
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    start..start + part.len()
}

/// A reference token with `~1` and `~0` decoded (RFC 6901, in that order).
fn unescape(token: &str) -> Cow<'_, str> {
    if token.contains('~') {
        Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
    } else {
        Cow::Borrowed(token)
    }
}

/// An array index as a reference token writes it: digits, no leading zero (but "0").
fn index_of(token: &str) -> Option<usize> {
    let digits = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    if !digits || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

/// Reads one value and hands out its child named `token`, unparsed.
struct Child<'t> {
    token: &'t str,
}

impl<'de> DeserializeSeed<'de> for Child<'_> {
    type Value = Option<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Child<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // A repeated key: the last one counts, as in serde_json's `Value`.
        let mut found = None;
        while let Some(matches) = map.next_key_seed(KeyIs(self.token))? {
            if matches {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let wanted = index_of(self.token);
        let mut found = None;
        let mut index = 0;
        loop {
            if Some(index) == wanted {
                match seq.next_element::<&'de RawValue>()? {
                    Some(element) => found = Some(element),
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            index += 1;
        }
        Ok(found)
    }

    // A scalar has no children.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Reads an object key and tells whether it is the one wanted (escaped or not).
struct KeyIs<'t>(&'t str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at<'a>(json: &'a str, pointer: &str) -> Option<&'a str> {
        find(json, pointer).unwrap().map(|range| &json[range])
    }

    #[test]
    fn finds_what_a_parsed_value_finds_by_the_same_pointer() {
        let json = r#" {"a": {"b": [10, {"c d": "x"}, [true]]}, "e/f": 1, "g~h": null,
                       "\u0069": "escaped key", "01": 2, "a": {"b": [20]}} "#;
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        for pointer in [
            "",
            "/a",
            "/a/b",
            "/a/b/0",
            "/a/b/1",
            "/e~1f",
            "/g~0h",
            "/i",
            "/01",
            "/a/b/00",
            "/a/b/+0",
            "/a/b/1/c d",
            "/a/b/2/0",
            "/a/x",
            "/a/b/9",
            "/e~1f/x",
            "/zz",
        ] {
            let found = at(json, pointer)
                .map(|text| serde_json::from_str::<serde_json::Value>(text).unwrap());
            assert_eq!(
                found.as_ref(),
                value.pointer(pointer),
                "pointer {pointer:?}"
            );
        }
        assert_eq!(
            at(json, "/a/b/0"),
            Some("20"),
            "the last of a repeated key counts"
        );
    }

    #[test]
    fn text_that_is_not_json_is_an_error() {
        for json in [r#"{"a": }"#, r#"{"a": 1} x"#, "", r#"{"a": [1,"#] {
            assert!(find(json, "/a").is_err(), "{json}");
        }
    }
}
