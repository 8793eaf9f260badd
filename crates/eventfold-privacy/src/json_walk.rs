//! A forward walk over JSON text that reads object keys, plain strings and the spans of
//! values without decoding or building anything: the quick path of finding a personal
//! value by its pointer, reading an event's `$personal` marking and reading a sealed
//! value.
//!
//! Every event with a personal field passes these three on each read and each append;
//! driving serde_json's deserializer over the whole document cost more than opening
//! the value itself. serde_json has no borrowed, skip-only walk of its own, hence this.
//!
//! The walk is meant for JSON that is well formed, and it answers only what it reads
//! plainly: it gives up (`None`) at an escaped object key, an escaped string it was
//! asked to read, a structure it does not expect, and the end of the text. Its
//! callers then ask serde_json, whose answer is final. Where it does answer on text
//! that is not JSON (it does not check what it skips: the characters of a number, the
//! escapes of a skipped string), its callers do not depend on that: a read's text was
//! checked by the store when it was appended, and an append's text is checked by the
//! store after the layer (see `PrivacyLayer`).

use std::ops::Range;

use eventfold_core::json_plain_bytes;

/// A position in JSON text, moving forward.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    text: &'a [u8],
    at: usize,
}

/// What ends a number or a literal (`true`, `false`, `null`) that is skipped.
fn ends_scalar(byte: u8) -> bool {
    matches!(
        byte,
        b',' | b'}' | b']' | b':' | b'"' | b'{' | b'[' | b' ' | b'\t' | b'\n' | b'\r'
    )
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `text`.
    pub(crate) fn new(text: &'a [u8]) -> Cursor<'a> {
        Cursor { text, at: 0 }
    }

    /// A cursor at byte `at` of `text`.
    pub(crate) fn at(text: &'a [u8], at: usize) -> Cursor<'a> {
        Cursor { text, at }
    }

    /// The next byte that is not white space (the cursor moved to it).
    #[inline]
    pub(crate) fn peek(&mut self) -> Option<u8> {
        while let Some(&byte) = self.text.get(self.at) {
            if !matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
                return Some(byte);
            }
            self.at += 1;
        }
        None
    }

    /// Moves past `byte`, the next one after white space; `None` when another comes.
    #[inline]
    pub(crate) fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// Whether only white space is left.
    #[inline]
    pub(crate) fn at_end(&mut self) -> bool {
        self.peek().is_none()
    }

    /// The span of the string that starts here (quotes included) and whether it holds
    /// an escape; the cursor moves past it.
    #[inline]
    fn string(&mut self) -> Option<(Range<usize>, bool)> {
        let start = self.at;
        if self.text.get(start) != Some(&b'"') {
            return None;
        }
        let mut at = start + 1;
        let mut escaped = false;
        loop {
            // Most bytes are passed 8 at a time (a search for two bytes costs more to
            // set up than a short string takes to read).
            at += json_plain_bytes(self.text.get(at..)?);
            match *self.text.get(at)? {
                b'"' => {
                    self.at = at + 1;
                    return Some((start..at + 1, escaped));
                }
                // A backslash and the character it escapes (for `\u`, four hexadecimal
                // digits follow, none of them a quote or a backslash).
                b'\\' => {
                    escaped = true;
                    at += 2;
                }
                _ => at += 1,
            }
        }
    }

    /// The string that starts here, without its quotes, when it holds no escape (the
    /// cursor moves past it); `None` otherwise.
    #[inline]
    pub(crate) fn plain_string(&mut self) -> Option<&'a [u8]> {
        let span = self.plain_string_span()?;
        Some(&self.text[span])
    }

    /// Where [`Cursor::plain_string`]'s string lies, quotes left out (a range of
    /// whole characters: its ends are next to quotes).
    #[inline]
    pub(crate) fn plain_string_span(&mut self) -> Option<Range<usize>> {
        self.peek()?;
        let (span, escaped) = self.string()?;
        (!escaped).then(|| span.start + 1..span.end - 1)
    }

    /// The span of the value that starts here; the cursor moves past it.
    #[inline]
    pub(crate) fn skip_value(&mut self) -> Option<Range<usize>> {
        match self.peek()? {
            b'"' => self.string().map(|(span, _)| span),
            b'{' | b'[' => {
                let start = self.at;
                let mut depth = 0usize;
                loop {
                    match *self.text.get(self.at)? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.at += 1;
                                return Some(start..self.at);
                            }
                        }
                        _ => {}
                    }
                    self.at += 1;
                }
            }
            _ => {
                let first = self.at;
                while self.text.get(self.at).is_some_and(|&b| !ends_scalar(b)) {
                    self.at += 1;
                }
                (self.at > first).then_some(first..self.at)
            }
        }
    }

    /// Walks the members of the object that starts here, handing each key (unescaped
    /// keys only: an escaped one gives up) to `member` with the cursor at its value;
    /// `member` moves past the value. The cursor ends past the object.
    pub(crate) fn members(
        &mut self,
        mut member: impl FnMut(&[u8], &mut Cursor<'a>) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let key = self.plain_string()?;
            self.eat(b':')?;
            self.peek()?;
            member(key, self)?;
            if self.eat(b',').is_none() {
                return self.eat(b'}');
            }
        }
    }

    /// Walks the elements of the array that starts here, handing each one's index to
    /// `element` with the cursor at it; `element` moves past it. The cursor ends past
    /// the array.
    pub(crate) fn elements(
        &mut self,
        mut element: impl FnMut(usize, &mut Cursor<'a>) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'[')?;
        if self.eat(b']').is_some() {
            return Some(());
        }
        let mut index = 0;
        loop {
            self.peek()?;
            element(index, self)?;
            index += 1;
            if self.eat(b',').is_none() {
                return self.eat(b']');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_each_kind_of_value_to_its_end() {
        for (text, value) in [
            (r#" "a\"b\\" ,"#, r#""a\"b\\""#),
            (
                r#"{"a":[1,{"b":"}]"}],"c":"\u0022"} ]"#,
                r#"{"a":[1,{"b":"}]"}],"c":"\u0022"}"#,
            ),
            ("[[],{}] ,", "[[],{}]"),
            ("-1.5e+3,", "-1.5e+3"),
            ("true}", "true"),
            ("null", "null"),
        ] {
            let mut cursor = Cursor::new(text.as_bytes());
            let span = cursor.skip_value().unwrap();
            assert_eq!(&text[span], value, "{text}");
        }
        for text in [r#""open"#, "[1,2", r#"{"a":"}"#, "", " ", ","] {
            assert_eq!(Cursor::new(text.as_bytes()).skip_value(), None, "{text}");
        }
    }

    #[test]
    fn walks_members_and_elements_and_gives_up_at_an_escaped_key() {
        let text = br#" { "a" : [ 1 , "x" ] , "b":{} , "c":[] } "#;
        let mut seen = Vec::new();
        Cursor::new(text)
            .members(|key, cursor| {
                seen.push(String::from_utf8(key.to_vec()).unwrap());
                if key == b"a" {
                    cursor.elements(|index, cursor| {
                        seen.push(format!("{index}"));
                        cursor.skip_value().map(drop)
                    })
                } else {
                    cursor.skip_value().map(drop)
                }
            })
            .unwrap();
        assert_eq!(seen, ["a", "0", "1", "b", "c"]);
        let skip = |_: &[u8], cursor: &mut Cursor<'_>| cursor.skip_value().map(drop);
        assert_eq!(Cursor::new(br#"{"\u0061":1}"#).members(skip), None);
        assert_eq!(Cursor::new(br#"{"a" 1}"#).members(skip), None);
        assert_eq!(Cursor::new(br#"{"a":1"#).members(skip), None);
        assert_eq!(Cursor::new(br#"{"a":1,}"#).members(skip), None);
        assert_eq!(Cursor::new(br#"[1]"#).members(skip), None);
        assert_eq!(Cursor::new(br#"{}"#).members(skip), Some(()));
    }

    #[test]
    fn reads_plain_strings_only() {
        assert_eq!(Cursor::new(br#"  "abc""#).plain_string(), Some(&b"abc"[..]));
        assert_eq!(Cursor::new(br#""a\nb""#).plain_string(), None);
        assert_eq!(Cursor::new(br#"7"#).plain_string(), None);
    }
}
