//! Where a value sits inside JSON text: the byte range of the value a JSON pointer
//! names, found by one walk over each level on the way, without building a tree of the
//! document (serde_json answers where the quick walk of `json_walk` gives up).
//!
//! Sealing and opening replace one value of an event's data; doing it on the text
//! (splicing the new value into the byte range of the old) keeps the rest of the
//! document as it was written and spares a parse into `serde_json::Value` and a
//! serialization back for every event read. serde_json has no pointer lookup on text,
//! only on a parsed `Value`, hence this.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::json_walk::Cursor;

/// A value found by its pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    /// Its byte range in the document.
    pub(crate) range: Range<usize>,
    /// Whether a key on the way to it, or its own, is repeated in its object: readers
    /// (serde_json's `Value`) see the last one, which is the one found, but the others
    /// are in the text too.
    pub(crate) repeated: bool,
}

/// The value at `pointer` (RFC 6901; `""` is the whole document) in `json`; `None` when
/// the document has no such value. An error when the walk finds that `json` is not
/// JSON (every level on the way is read to its end, but the values skipped are not all
/// checked: see [`find_plainly`]).
pub(crate) fn find(json: &[u8], pointer: &str) -> Result<Option<Found>, serde_json::Error> {
    match find_plainly(json, pointer) {
        Some(found) => Ok(found),
        None => find_with_serde_json(json, pointer),
    }
}

/// [`find`] by a walk that reads each level on the way to its end without decoding
/// anything ([`Cursor`]); `None` when the walk gives up (an escaped key, an unexpected
/// structure), and `find` then asks serde_json.
///
/// Text that is not JSON may get an answer here: `json` is either a stored event's data
/// (checked when it was appended) or the data of an append, which the store checks
/// after the layer seals its values (and the sealed value itself is checked before it
/// is sealed).
fn find_plainly(json: &[u8], pointer: &str) -> Option<Option<Found>> {
    if pointer.is_empty() {
        return None;
    }
    let mut cursor = Cursor::new(json);
    let mut span = None;
    let mut repeated = false;
    for token in pointer.split('/').skip(1) {
        let token = unescape(token);
        let mut found = None;
        match cursor.peek()? {
            b'{' => cursor.members(|key, cursor| {
                let value = cursor.skip_value()?;
                // A repeated key: the last one counts, as in serde_json's `Value`.
                if key == token.as_bytes() {
                    repeated |= found.is_some();
                    found = Some(value);
                }
                Some(())
            })?,
            b'[' => {
                let wanted = index_of(&token);
                cursor.elements(|index, cursor| {
                    let value = cursor.skip_value()?;
                    if Some(index) == wanted {
                        found = Some(value);
                    }
                    Some(())
                })?
            }
            // A scalar has no children.
            _ => {
                cursor.skip_value()?;
            }
        }
        // The first level is the whole document: nothing may follow it.
        if span.is_none() && !cursor.at_end() {
            return None;
        }
        let Some(value) = found else {
            return Some(None);
        };
        cursor = Cursor::at(json, value.start);
        span = Some(value);
    }
    Some(span.map(|range| Found { range, repeated }))
}

/// [`find`] by serde_json, level by level: every level on the way is read whole, and
/// text that is not JSON is an error.
fn find_with_serde_json(json: &[u8], pointer: &str) -> Result<Option<Found>, serde_json::Error> {
    let mut value: &[u8] = json;
    let mut repeated = false;
    if pointer.is_empty() {
        let whole: &RawValue = serde_json::from_slice(json)?;
        let range = range_in(json, whole.get().as_bytes());
        return Ok(Some(Found { range, repeated }));
    }
    for token in pointer.split('/').skip(1) {
        let token = unescape(token);
        let mut deserializer = serde_json::Deserializer::from_slice(value);
        let child = Child { token: &token }.deserialize(&mut deserializer)?;
        deserializer.end()?;
        match child {
            Some((child, again)) => {
                value = child.get().as_bytes();
                repeated |= again;
            }
            None => return Ok(None),
        }
    }
    let range = range_in(json, value);
    Ok(Some(Found { range, repeated }))
}

/// The range `part` (a slice of `whole`) covers in `whole`.
fn range_in(whole: &[u8], part: &[u8]) -> Range<usize> {
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
    type Value = Option<(&'de RawValue, bool)>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Child<'_> {
    /// The child, and whether its key is repeated.
    type Value = Option<(&'de RawValue, bool)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // A repeated key: the last one counts, as in serde_json's `Value`.
        let mut found = None;
        let mut repeated = false;
        while let Some(matches) = map.next_key_seed(KeyIs(self.token))? {
            if matches {
                repeated |= found.is_some();
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found.map(|found| (found, repeated)))
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
        Ok(found.map(|found| (found, false)))
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
    use proptest::prelude::*;

    use super::*;

    fn at<'a>(json: &'a str, pointer: &str) -> Option<&'a str> {
        find(json.as_bytes(), pointer)
            .unwrap()
            .map(|found| &json[found.range])
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

    /// JSON text of a random document, with keys that repeat, nest and need escaping in
    /// a pointer, and random white space between tokens.
    fn document() -> impl Strategy<Value = String> {
        let space = prop::sample::select(vec!["", " ", "\n  ", "\t"]);
        let leaf = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            any::<i32>().prop_map(|n| n.to_string()),
            Just("-1.5e+3".to_string()),
            "[a-z\"\\/{}\\[\\]]{0,6}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        ];
        let key = prop::sample::select(vec!["a", "b", "c d", "e/f", "g~h", "0", "1"]);
        leaf.prop_recursive(4, 40, 5, move |inner| {
            prop_oneof![
                prop::collection::vec((inner.clone(), space.clone()), 0..5).prop_map(|items| {
                    let items: Vec<String> = items
                        .into_iter()
                        .map(|(v, s)| format!("{s}{v}{s}"))
                        .collect();
                    format!("[{}]", items.join(","))
                }),
                prop::collection::vec((key.clone(), inner, space.clone()), 0..5).prop_map(
                    |members| {
                        let members: Vec<String> = members
                            .into_iter()
                            .map(|(k, v, s)| format!("{s}{}{s}:{s}{v}", serde_json::json!(k)))
                            .collect();
                        format!("{{{}}}", members.join(","))
                    }
                ),
            ]
        })
    }

    proptest! {
        #[test]
        fn the_quick_walk_finds_what_serde_json_finds(
            json in document(),
            pointer in prop::collection::vec(
                prop::sample::select(vec!["a", "b", "c d", "e~1f", "g~0h", "0", "1", "01", "x"]),
                1..4,
            ),
        ) {
            let pointer: String = pointer.iter().map(|t| format!("/{t}")).collect();
            let quick = find_plainly(json.as_bytes(), &pointer);
            prop_assert!(quick.is_some(), "the walk gave up on {json}");
            prop_assert_eq!(
                quick.unwrap(),
                find_with_serde_json(json.as_bytes(), &pointer).unwrap()
            );
        }
    }

    #[test]
    fn a_repeated_key_on_the_way_is_told() {
        let json = br#"{"a":{"b":1,"c":0},"x":[],"a":{"b":2},"x":{}}"#;
        let found = |pointer| {
            let by_walk = find_plainly(json, pointer).unwrap().unwrap();
            assert_eq!(
                Some(by_walk.clone()),
                find_with_serde_json(json, pointer).unwrap()
            );
            (
                std::str::from_utf8(&json[by_walk.range]).unwrap(),
                by_walk.repeated,
            )
        };
        assert_eq!(found("/a/b"), ("2", true));
        assert_eq!(found("/a"), (r#"{"b":2}"#, true));
        assert_eq!(
            find(json, "/a/c").unwrap(),
            None,
            "the last \"a\" has no \"c\""
        );
        let once = br#"{"a":{"b":1},"x":1,"x":2}"#;
        assert!(!find(once, "/a/b").unwrap().unwrap().repeated);
    }

    #[test]
    fn text_that_is_not_json_is_an_error() {
        for json in [r#"{"a": }"#, r#"{"a": 1} x"#, "", r#"{"a": [1,"#] {
            assert!(find(json.as_bytes(), "/a").is_err(), "{json}");
        }
    }
}
