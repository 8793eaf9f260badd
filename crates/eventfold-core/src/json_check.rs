//! Is this one JSON document that readers can parse? Every append asks it of every
//! event's data and metadata, so it sits on the hottest path of batch appends.
//!
//! The answer must be exactly serde_json's (readers parse with `serde_json::Value`), and
//! serde_json has no way to check a document faster than driving its deserializer,
//! which decodes every string and number on the way (about 7 instructions per byte).
//! The crates that check JSON faster (simd-json, sonic-rs) accept and refuse other
//! things at the edges (lone surrogate escapes, numbers out of range, nesting), so
//! their answer is not ours. Hence a scan of our own, written to be sure rather than
//! complete: it says yes only to documents serde_json certainly reads (plain grammar,
//! strings of valid UTF-8 without surrogate escapes, numbers far from the limits of
//! an `f64`, at most [`SCAN_DEPTH_MAX`] levels of nesting) and hands everything else to
//! serde_json itself, whose answer, and error message, is then final.

/// What a JSON document is at its top level, as far as the checks care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonKind {
    Object,
    Other,
}

/// Reads `bytes` as one JSON document the way `serde_json::from_slice::<Value>` does
/// (same recursion limit, same string and number checks) without building anything: a
/// `Value` parse of what passes cannot fail, and what fails it fails here with
/// serde_json's own error.
pub(crate) fn check_json(bytes: &[u8]) -> Result<JsonKind, serde_json::Error> {
    match scan(bytes) {
        Some(kind) => Ok(kind),
        None => check_with_serde_json(bytes),
    }
}

/// The exact check: serde_json's deserializer, visiting every value without keeping
/// it. (`IgnoredAny` is not enough: it skips over strings, numbers and nesting without
/// checking them.)
fn check_with_serde_json(bytes: &[u8]) -> Result<JsonKind, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let kind = serde::Deserializer::deserialize_any(&mut deserializer, JsonCheck)?;
    deserializer.end()?;
    Ok(kind)
}

/// A visitor that accepts any JSON value, descending into arrays and objects.
struct JsonCheck;

impl<'de> serde::de::DeserializeSeed<'de> for JsonCheck {
    type Value = JsonKind;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<JsonKind, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for JsonCheck {
    type Value = JsonKind;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<JsonKind, E> {
        Ok(JsonKind::Other)
    }

    fn visit_i64<E>(self, _: i64) -> Result<JsonKind, E> {
        Ok(JsonKind::Other)
    }

    fn visit_u64<E>(self, _: u64) -> Result<JsonKind, E> {
        Ok(JsonKind::Other)
    }

    fn visit_f64<E>(self, _: f64) -> Result<JsonKind, E> {
        Ok(JsonKind::Other)
    }

    fn visit_str<E>(self, _: &str) -> Result<JsonKind, E> {
        Ok(JsonKind::Other)
    }

    fn visit_unit<E>(self) -> Result<JsonKind, E> {
        Ok(JsonKind::Other)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<JsonKind, A::Error> {
        while seq.next_element_seed(JsonCheck)?.is_some() {}
        Ok(JsonKind::Other)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<JsonKind, A::Error> {
        while map.next_key_seed(JsonCheck)?.is_some() {
            map.next_value_seed(JsonCheck)?;
        }
        Ok(JsonKind::Object)
    }
}

/// The deepest nesting the scan follows; deeper documents go to serde_json (whose
/// limit is 127 levels).
const SCAN_DEPTH_MAX: usize = 64;

/// The sure scan: `Some` only for a document serde_json certainly reads, `None` for
/// anything else (not JSON, or JSON near one of serde_json's limits).
fn scan(bytes: &[u8]) -> Option<JsonKind> {
    let mut at = skip_space(bytes, 0);
    let kind = match *bytes.get(at)? {
        b'{' => JsonKind::Object,
        _ => JsonKind::Other,
    };
    // Which of the containers around `at` are objects (the others are arrays).
    let mut in_object = [false; SCAN_DEPTH_MAX];
    let mut depth = 0;
    // `at` is at the first byte of a value.
    'value: loop {
        match *bytes.get(at)? {
            open @ (b'{' | b'[') => {
                if depth == SCAN_DEPTH_MAX {
                    return None;
                }
                let object = open == b'{';
                at = skip_space(bytes, at + 1);
                let close = if object { b'}' } else { b']' };
                if *bytes.get(at)? == close {
                    at += 1;
                } else {
                    in_object[depth] = object;
                    depth += 1;
                    if object {
                        at = key(bytes, at)?;
                    }
                    continue 'value;
                }
            }
            b'"' => at = string(bytes, at)?,
            b't' => at = literal(bytes, at, b"true")?,
            b'f' => at = literal(bytes, at, b"false")?,
            b'n' => at = literal(bytes, at, b"null")?,
            b'-' | b'0'..=b'9' => at = number(bytes, at)?,
            _ => return None,
        }
        // After a value: the next one in its container, or the container's end.
        loop {
            at = skip_space(bytes, at);
            if depth == 0 {
                return (at == bytes.len()).then_some(kind);
            }
            let object = in_object[depth - 1];
            match *bytes.get(at)? {
                b',' => {
                    at = skip_space(bytes, at + 1);
                    if object {
                        at = key(bytes, at)?;
                    }
                    continue 'value;
                }
                b'}' if object => {}
                b']' if !object => {}
                _ => return None,
            }
            at += 1;
            depth -= 1;
        }
    }
}

/// Past JSON's whitespace from `at`.
fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(at) {
        at += 1;
    }
    at
}

/// An object's key at `at`, its colon and the whitespace around it: where its value
/// starts.
fn key(bytes: &[u8], at: usize) -> Option<usize> {
    if *bytes.get(at)? != b'"' {
        return None;
    }
    let at = skip_space(bytes, string(bytes, at)?);
    if *bytes.get(at)? != b':' {
        return None;
    }
    Some(skip_space(bytes, at + 1))
}

/// `word` (the bytes `at..`) at `at`: past it.
fn literal(bytes: &[u8], at: usize, word: &[u8]) -> Option<usize> {
    (bytes.get(at..at + word.len())? == word).then_some(at + word.len())
}

/// A string whose opening quote is at `at`: past its closing quote. Its bytes must be
/// UTF-8 and its escapes JSON's, none of them a surrogate (a pair is valid, but
/// serde_json judges those).
fn string(bytes: &[u8], at: usize) -> Option<usize> {
    let start = at + 1;
    let mut i = start;
    let mut ascii = true;
    loop {
        i += plain_bytes(bytes.get(i..)?);
        match *bytes.get(i)? {
            b'"' => break,
            b'\\' => i = escape(bytes, i)?,
            0..=0x1f => return None,
            0x80.. => {
                ascii = false;
                i += 1;
            }
            _ => i += 1,
        }
    }
    if !ascii {
        std::str::from_utf8(&bytes[start..i]).ok()?;
    }
    Some(i + 1)
}

/// How many bytes at the start of `text` certainly need no look in a JSON string
/// (printable ASCII but the quote and the backslash), read 8 at a time: most of a
/// string's bytes. Scanners that look for a string's end call this before each byte
/// they look at themselves (the byte it stops at may be plain too: a non-ASCII byte,
/// or one a borrow flagged).
#[inline]
pub fn plain_bytes(text: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const QUOTES: u64 = ONES * b'"' as u64;
    const BACKSLASHES: u64 = ONES * b'\\' as u64;
    let mut plain = 0;
    for chunk in text.chunks_exact(8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let word = u64::from_le_bytes(word);
        // The high bit of a byte of `flagged` is set where the byte of `word` is below
        // 0x20, a quote, a backslash (a zero after the xor) or not ASCII. The first
        // one flagged is exact; a borrow from it may flag later bytes too.
        let control = word.wrapping_sub(ONES * 0x20) & !word;
        let quote = (word ^ QUOTES).wrapping_sub(ONES) & !(word ^ QUOTES);
        let backslash = (word ^ BACKSLASHES).wrapping_sub(ONES) & !(word ^ BACKSLASHES);
        let flagged = (control | quote | backslash | word) & HIGH;
        if flagged != 0 {
            // Little-endian: the lowest set bit is in the first byte flagged.
            return plain + (flagged.trailing_zeros() / 8) as usize;
        }
        plain += 8;
    }
    plain
}

/// An escape whose backslash is at `at`: past it.
fn escape(bytes: &[u8], at: usize) -> Option<usize> {
    match *bytes.get(at + 1)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(at + 2),
        b'u' => {
            let hex = bytes.get(at + 2..at + 6)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            // Surrogates (D800-DFFF) start with d or D and then 8-f.
            let surrogate = hex[0].eq_ignore_ascii_case(&b'd')
                && matches!(hex[1].to_ascii_lowercase(), b'8'..=b'9' | b'a'..=b'f');
            (!surrogate).then_some(at + 6)
        }
        _ => None,
    }
}

/// A number starting at `at`: past it. Only numbers far from an `f64`'s limits pass
/// (an integer part of at most 300 digits, an exponent of at most two digits on one of
/// at most 200), so none can be out of range whatever the reader's rounding.
fn number(bytes: &[u8], at: usize) -> Option<usize> {
    let digits = |mut i: usize| {
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let start = if bytes[at] == b'-' { at + 1 } else { at };
    let mut i = match *bytes.get(start)? {
        b'0' => start + 1,
        b'1'..=b'9' => digits(start + 1),
        _ => return None,
    };
    let integer_digits = i - start;
    if integer_digits > 300 {
        return None;
    }
    if bytes.get(i) == Some(&b'.') {
        let fraction = i + 1;
        i = digits(fraction);
        if i == fraction {
            return None;
        }
    }
    if let Some(b'e' | b'E') = bytes.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = bytes.get(i) {
            i += 1;
        }
        let exponent = i;
        i = digits(exponent);
        if i == exponent || i - exponent > 2 || integer_digits > 200 {
            return None;
        }
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What a `Value` parse makes of `bytes`, as a kind.
    fn parsed(bytes: &[u8]) -> Option<JsonKind> {
        let value = serde_json::from_slice::<serde_json::Value>(bytes).ok()?;
        Some(match value {
            serde_json::Value::Object(_) => JsonKind::Object,
            _ => JsonKind::Other,
        })
    }

    /// Inputs at serde_json's edges (`IgnoredAny`, the check before the exact one,
    /// accepted several that a `Value` parse refuses), and their neighbours.
    fn edge_documents() -> Vec<Vec<u8>> {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let objects = |depth: usize| format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
        vec![
            br#"{"text":"\ud800"}"#.to_vec(),
            br#"{"text":"\udc00 trailing"}"#.to_vec(),
            br#"{"text":"\ud83d\ude00"}"#.to_vec(),
            br#"{"text":"\uD83D\uDE00"}"#.to_vec(),
            br#"{"\ud800":1}"#.to_vec(),
            br#"{"text":"\u+123"}"#.to_vec(),
            br#"{"text":"\u00e9\u0000"}"#.to_vec(),
            br#"[1e400]"#.to_vec(),
            br#"[-1e400]"#.to_vec(),
            br#"[1e99, 1E-99, 1e+9, -0.5e2]"#.to_vec(),
            br#"[1.7976931348623157e308, 1.7976931348623159e308]"#.to_vec(),
            br#"[1e308, -0.0, 18446744073709551615, -9223372036854775808]"#.to_vec(),
            format!("[{}]", "9".repeat(300)).into_bytes(),
            format!("[{}]", "9".repeat(310)).into_bytes(),
            format!("[{}e99]", "9".repeat(200)).into_bytes(),
            format!("[0.{}1]", "0".repeat(400)).into_bytes(),
            b"[01, 1., .5, -, 1e, 1e+, +1]".to_vec(),
            b"[1.]".to_vec(),
            b"[-]".to_vec(),
            b"[01]".to_vec(),
            nested(64).into_bytes(),
            nested(65).into_bytes(),
            nested(127).into_bytes(),
            nested(128).into_bytes(),
            nested(129).into_bytes(),
            objects(128).into_bytes(),
            objects(129).into_bytes(),
            b"{\"text\":\"\xff\"}".to_vec(),
            "{\"text\":\"caf\u{e9} \u{1f600}\"}".as_bytes().to_vec(),
            b"{\"text\":\"\xc3\"}".to_vec(),
            b"{\"text\":\"tab\tinside\"}".to_vec(),
            br#"{"a":1} {"b":2}"#.to_vec(),
            br#"{"a":1,}"#.to_vec(),
            br#"[1,]"#.to_vec(),
            br#"{"a" 1}"#.to_vec(),
            br#"{1:2}"#.to_vec(),
            br#"{"a":1,"a":2}"#.to_vec(),
            b" null ".to_vec(),
            b"nul".to_vec(),
            b"truefalse".to_vec(),
            b"".to_vec(),
            b"   ".to_vec(),
            b"\xef\xbb\xbf{}".to_vec(),
            b"{}\x00".to_vec(),
            br#"{"a":[{},[],{"b":[true,false,null]}],"c":"d"}"#.to_vec(),
        ]
    }

    #[test]
    fn the_check_accepts_exactly_what_a_value_parse_reads_back() {
        for document in edge_documents() {
            let expected = parsed(&document);
            let checked = check_json(&document);
            assert_eq!(
                checked.as_ref().ok().copied(),
                expected,
                "{}: check {checked:?}",
                String::from_utf8_lossy(&document)
            );
            if let Some(kind) = scan(&document) {
                assert_eq!(
                    Some(kind),
                    expected,
                    "{}",
                    String::from_utf8_lossy(&document)
                );
            }
        }
    }

    #[test]
    fn nesting_is_limited_to_127_levels_as_serde_json_reads_it() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(check_json(nested(127).as_bytes()).is_ok());
        assert!(check_json(nested(128).as_bytes()).is_err());
    }

    #[test]
    fn everyday_documents_take_the_scan_not_serde_json() {
        let filler = "x".repeat(186);
        for document in [
            format!(r#"{{"payload":"{filler}"}}"#),
            "{}".to_string(),
            r#"{"$correlationId":"6f1c","$personal":{"subject":"s-1","fields":["/email"]}}"#
                .to_string(),
            r#"{"order":"o-17","lines":[{"sku":"A-1","qty":2,"price":9.95}],"paid":false,"note":null}"#
                .to_string(),
            "{\"name\":\"Zo\u{eb} M\u{fc}ller \\\"the second\\\"\",\"at\":1.5e3}".to_string(),
        ] {
            assert!(scan(document.as_bytes()).is_some(), "{document}");
        }
    }

    #[test]
    fn plain_bytes_stop_exactly_at_the_first_byte_to_look_at() {
        // 37 bytes: four whole words, then a tail of 5 left to the byte loop.
        for special in [b'"', b'\\', 0x00, 0x1f, 0x80, 0xff] {
            for place in 0..37 {
                let mut text = vec![b'a'; 37];
                text[place] = special;
                // A second one later in the same word must not move the answer.
                if let Some(later) = text.get_mut(place + 2) {
                    *later = 0x01;
                }
                assert_eq!(plain_bytes(&text), place.min(32), "{special:#x} at {place}");
            }
        }
        let printable = [b' ', b'!', b'#', b'[', b']', b'~', 0x7f, b'0'];
        assert_eq!(plain_bytes(&printable.repeat(5)), 40);
    }

    #[test]
    fn the_fuzz_corpus_is_judged_as_serde_json_judges_it() {
        let corpus =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/json_check");
        let mut count = 0;
        for file in std::fs::read_dir(&corpus).unwrap() {
            let document = std::fs::read(file.unwrap().path()).unwrap();
            assert_eq!(
                check_json(&document).ok(),
                parsed(&document),
                "{}",
                String::from_utf8_lossy(&document)
            );
            count += 1;
        }
        assert!(count >= 5, "{} holds {count} inputs", corpus.display());
    }

    /// JSON-like text from the bytes that matter to the grammar, UTF-8 and the limits.
    fn json_like() -> impl Strategy<Value = Vec<u8>> {
        let pieces = prop::sample::select(vec![
            &b"{"[..],
            b"}",
            b"[",
            b"]",
            b"\"",
            b":",
            b",",
            b" ",
            b"\\",
            b"u",
            b"d8",
            b"00",
            b"dc",
            b"e",
            b"E",
            b"-",
            b"+",
            b".",
            b"0",
            b"1",
            b"9",
            b"true",
            b"false",
            b"null",
            b"a",
            b"\xc3\xa9",
            b"\xc3",
            b"\xa9",
            b"\x01",
            b"\t",
            b"n",
            b"/",
            b"999999",
        ]);
        prop::collection::vec(pieces, 0..40).prop_map(|pieces| pieces.concat())
    }

    /// Any JSON value, as serde_json writes it.
    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            (-1e50..1e50f64).prop_map(serde_json::Value::from),
            any::<String>().prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::from),
                prop::collection::btree_map(any::<String>(), inner, 0..8)
                    .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4_000))]

        #[test]
        fn the_scan_says_yes_only_where_serde_json_reads_the_same(text in json_like()) {
            if let Some(kind) = scan(&text) {
                prop_assert_eq!(Some(kind), parsed(&text), "{}", String::from_utf8_lossy(&text));
            }
            prop_assert_eq!(check_json(&text).ok(), parsed(&text));
        }

        #[test]
        fn written_json_and_its_one_byte_changes_are_judged_as_serde_json_judges_them(
            value in json_value(),
            cut in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let written = serde_json::to_vec(&value).unwrap();
            prop_assert_eq!(scan(&written), parsed(&written));
            let mut changed = written.clone();
            let place = cut.index(changed.len());
            changed[place] = byte;
            if let Some(kind) = scan(&changed) {
                prop_assert_eq!(Some(kind), parsed(&changed), "{}", String::from_utf8_lossy(&changed));
            }
            prop_assert_eq!(check_json(&changed).ok(), parsed(&changed));
        }
    }
}
