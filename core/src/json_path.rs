//! Reading a few scalars out of a JSON body by JSON pointer, without building it.
//!
//! Event ids, types and ordering fields sit at fixed places in a provider's JSON body. Parsing
//! the body into a `serde_json::Value` to look them up allocates every string and map of it,
//! then frees them: for a realistic 64 KB event that is most of the time ingest spends on the
//! body. [`scalars`] walks the body with the same parser, through the same `deserialize_any`
//! calls a `Value` makes (so the same bodies are refused: bad syntax, bad UTF-8, lone
//! surrogates, numbers out of range, nesting past the parser's limit), but keeps only the
//! values the pointers name. A name that appears twice counts its last occurrence, as a `Value`
//! does. Property tests hold it to `Value::pointer` on generated bodies and pointers.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// The strings (and numbers, as `serde_json` prints them) at `pointers` into `body`: what
/// `serde_json::from_slice::<Value>(body)?.pointer(p)` would give for each, without building
/// the `Value`. `None` when the body is not JSON; a pointer that names nothing, or an object,
/// array, boolean or null, gives `None` in its place.
pub fn scalars<const N: usize>(body: &[u8], pointers: [&str; N]) -> Option<[Option<String>; N]> {
    let paths = pointers.map(tokens);
    let wanted: Vec<Wanted<'_>> =
        paths.iter().enumerate().filter_map(|(slot, path)| Some(Wanted { slot, path: path.as_deref()? })).collect();
    let mut found: [Option<String>; N] = std::array::from_fn(|_| None);
    let mut parser = serde_json::Deserializer::from_slice(body);
    Seek { wanted, found: &mut found }.deserialize(&mut parser).ok()?;
    parser.end().ok()?;
    Some(found)
}

/// The string (or number, as text) at one `pointer` into `body`, as [`scalars`] finds it;
/// `None` also when the body is not JSON.
pub fn scalar(body: &[u8], pointer: &str) -> Option<String> {
    scalars(body, [pointer]).and_then(|[found]| found)
}

/// A pointer's reference tokens, unescaped as `Value::pointer` does; `None` when it is not a
/// pointer (neither empty nor starting with `/`), which names nothing.
fn tokens(pointer: &str) -> Option<Vec<String>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    pointer.strip_prefix('/')?;
    Some(pointer.split('/').skip(1).map(|t| t.replace("~1", "/").replace("~0", "~")).collect())
}

/// An array index as `Value::pointer` reads one: digits, without a sign or leading zeros.
fn index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() != 1) {
        return None;
    }
    token.parse().ok()
}

/// One pointer still being followed: where its answer goes, and the tokens left.
#[derive(Clone, Copy)]
struct Wanted<'p> {
    slot: usize,
    path: &'p [String],
}

/// Visits one value on the way of some pointers, or of none: a value no pointer goes into is
/// still parsed as a `Value` would be (not `IgnoredAny`, which `serde_json` skips without
/// checking UTF-8, surrogates or nesting depth, and so accepts bodies a `Value` refuses), and
/// nothing of it is kept. With no pointers, nothing is allocated either.
struct Seek<'p, 'f> {
    wanted: Vec<Wanted<'p>>,
    found: &'f mut [Option<String>],
}

impl Seek<'_, '_> {
    /// The pointers whose next token `matches`, one level further in.
    fn deeper<'p>(wanted: &[Wanted<'p>], matches: impl Fn(&str) -> bool) -> Vec<Wanted<'p>> {
        wanted
            .iter()
            .filter_map(|w| {
                let (first, rest) = w.path.split_first()?;
                matches(first).then_some(Wanted { slot: w.slot, path: rest })
            })
            .collect()
    }

    /// A scalar reached: the answer of every pointer that ends here.
    fn scalar(self, text: impl Fn() -> String) {
        for w in self.wanted.iter().filter(|w| w.path.is_empty()) {
            self.found[w.slot] = Some(text());
        }
    }
}

impl<'de> DeserializeSeed<'de> for Seek<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        // This value replaces whatever an earlier member of the same name gave.
        for w in &self.wanted {
            self.found[w.slot] = None;
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seek<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, n: u64) -> Result<(), E> {
        self.scalar(|| serde_json::Number::from(n).to_string());
        Ok(())
    }

    fn visit_i64<E>(self, n: i64) -> Result<(), E> {
        self.scalar(|| serde_json::Number::from(n).to_string());
        Ok(())
    }

    fn visit_f64<E>(self, n: f64) -> Result<(), E> {
        // As a `Value` keeps it: JSON has no non-finite numbers, so this is always `Some`.
        self.scalar(|| serde_json::Number::from_f64(n).map(|n| n.to_string()).unwrap_or_default());
        Ok(())
    }

    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        self.scalar(|| s.to_owned());
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(name) = map.next_key_seed(Name)? {
            let wanted = Seek::deeper(&self.wanted, |token| token == name);
            map.next_value_seed(Seek { wanted, found: &mut *self.found })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut at = 0;
        loop {
            let wanted = Seek::deeper(&self.wanted, |token| index(token) == Some(at));
            if seq.next_element_seed(Seek { wanted, found: &mut *self.found })?.is_none() {
                return Ok(());
            }
            at += 1;
        }
    }
}

/// An object member's name, borrowed from the body unless it has escapes.
pub(crate) struct Name;

impl<'de> DeserializeSeed<'de> for Name {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Name {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// The answer `scalars` must give: parse into a `Value`, then look up.
    fn by_value<const N: usize>(body: &[u8], pointers: [&str; N]) -> Option<[Option<String>; N]> {
        let value: Value = serde_json::from_slice(body).ok()?;
        Some(pointers.map(|p| match value.pointer(p)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }))
    }

    #[test]
    fn finds_what_value_pointer_finds() {
        let body = br#"{"id":"evt_1","data":{"object":{"id":"in_1","n":[1,-2,3.5e2,{"x/y":"s","m~n":7}]}},"created":1700000000}"#;
        let pointers = [
            "/id",
            "/data/object/id",
            "/created",
            "/data/object/n/1",
            "/data/object/n/2",
            "/data/object/n/3/x~1y",
            "/data/object/n/3/m~0n",
            "/data",
            "/missing",
            "/data/object/n/01",
            "",
        ];
        let found = scalars(body, pointers).unwrap();
        assert_eq!(found, by_value(body, pointers).unwrap());
        assert_eq!(
            found[..7].iter().map(|f| f.as_deref().unwrap()).collect::<Vec<_>>(),
            ["evt_1", "in_1", "1700000000", "-2", "350.0", "s", "7"]
        );
        assert_eq!(found[7..], [None, None, None, None]);
    }

    #[test]
    fn the_last_of_a_repeated_name_counts() {
        assert_eq!(scalars(br#"{"a":"1","a":"2"}"#, ["/a"]), Some([Some("2".into())]));
        assert_eq!(scalars(br#"{"a":{"b":"1"},"a":{"c":"2"}}"#, ["/a/b"]), Some([None]));
        assert_eq!(scalars(br#"{"a":{"b":"1"},"a":5}"#, ["/a/b"]), Some([None]));
    }

    #[test]
    fn refuses_what_a_value_refuses() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let bad: [&[u8]; 7] = [
            b"",
            b"{\"a\":1} x",
            b"{\"a\":\"\xff\"}",
            br#"{"a":"\ud800"}"#,
            br#"{"a":1e400}"#,
            br#"{"a":[1,}"#,
            deep.as_bytes(),
        ];
        for body in bad {
            assert_eq!(by_value(body, ["/a"]), None, "{body:?} is refused by a Value");
            assert_eq!(scalars(body, ["/a"]), None, "{:?}", String::from_utf8_lossy(body));
        }
        // Even where no pointer looks.
        assert_eq!(scalars(b"{\"a\":1,\"b\":\"\xff\"}", ["/a"]), None);
    }

    /// JSON text built from pieces that matter here: nesting, repeated and escaped names, the
    /// characters pointers escape, numbers of every kind, and bytes that make it invalid.
    fn json_text() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("1".to_owned()),
            Just("-0".to_owned()),
            Just("2.50".to_owned()),
            Just("1e3".to_owned()),
            Just("18446744073709551616".to_owned()),
            Just("true".to_owned()),
            Just("null".to_owned()),
            Just(r#""s""#.to_owned()),
            Just(r#""a\u00e9\n""#.to_owned()),
            Just(r#""\ud83d\ude00""#.to_owned()),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            let name = prop::sample::select(vec![
                r#""a""#,
                r#""b""#,
                r#""\u0061""#,
                r#""x/y""#,
                r#""m~n""#,
                r#""0""#,
                r#""""#,
            ]);
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec((name, inner), 0..4).prop_map(|v| {
                    format!("{{{}}}", v.into_iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join(","))
                }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]

        #[test]
        fn agrees_with_value_pointer(
            text in json_text(),
            damage in prop::option::of((any::<prop::sample::Index>(), prop::sample::select(vec![&b"}"[..], b"\"", b"\xff", b"\xc3", b"\\", b",", b" "]))),
            pointers in prop::collection::vec(prop::sample::select(vec!["", "/a", "/b", "/a/a", "/a/b", "/0", "/a/0", "/0/a", "/x~1y", "/m~0n", "/a/x~1y", "/", "//a", "/00", "/a/1", "a"]), 3),
        ) {
            let mut body = text.into_bytes();
            if let Some((at, piece)) = damage {
                let at = at.index(body.len() + 1);
                body.splice(at..at, piece.iter().copied());
            }
            let pointers = [pointers[0], pointers[1], pointers[2]];
            prop_assert_eq!(scalars(&body, pointers), by_value(&body, pointers), "{}", String::from_utf8_lossy(&body));
        }
    }
}
