//! JSON text read through one reader.
//!
//! `serde_json::from_str` and `from_slice` read through different reader types, and every type
//! read one way and the other is compiled twice, serde_json's parser with it (in the worker,
//! about 7 KB of wasm of its parsing functions alone). Request bodies must be read as bytes
//! (they need not be UTF-8), so text is read as bytes too: the parser then checks again that
//! the strings it reads are UTF-8, a few nanoseconds for the short texts read this way.

use crate::names::Named;
use serde::de::{DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// `serde_json::from_str`, through the byte reader and a [`Value`] (see [`crate::json_de`]).
pub fn from_str<T: DeserializeOwned>(text: &str) -> serde_json::Result<T> {
    from_slice(text.as_bytes())
}

/// `serde_json::from_slice`, through a [`Value`] (see [`crate::json_de`]).
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    from_value(parse(bytes)?)
}

/// The [`Value`] of a JSON text. (`from_str::<Value>` would read the parsed `Value` into a new
/// one.)
pub fn value(text: &str) -> serde_json::Result<Value> {
    parse(text.as_bytes())
}

/// `text` as a JSON string literal, quoted and escaped.
pub fn quote(text: &str) -> String {
    // Writing a string cannot fail: it has no map keys or floats to refuse.
    serde_json::to_string(text).unwrap_or_default()
}

/// The JSON text of `value`, exactly as its `Display` writes it (compact, members in the map's
/// order). Written here because `Value`'s own writer (its `Serialize`) is about 2.7 KB of wasm
/// that nothing else in the worker needs; strings and numbers are written by `serde_json`.
pub fn text(value: &Value) -> String {
    let mut out = String::new();
    write(value, &mut out);
    out
}

fn write(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => out.push_str(&quote(s)),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        Value::Object(members) => {
            out.push('{');
            for (i, (name, member)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&quote(name));
                out.push(':');
                write(member, out);
            }
            out.push('}');
        }
    }
}

/// The items of a JSON array text; `what` names the text in the error.
pub fn items(text: &str, what: &str) -> Result<Vec<Value>, String> {
    array(value(text).map_err(|e| e.to_string())?, what)
}

/// `serde_json::from_value`, without its float formatting (see [`crate::json_de`]).
pub fn from_value<T: DeserializeOwned>(value: Value) -> serde_json::Result<T> {
    crate::json_de::from_value(value).map_err(error)
}

// Not inlined: the two are the same for every type read, and inlined they were copied into
// each reader.

#[inline(never)]
fn parse(bytes: &[u8]) -> serde_json::Result<Value> {
    serde_json::from_slice(bytes)
}

#[inline(never)]
fn error(e: crate::json_de::Error) -> serde_json::Error {
    serde::de::Error::custom(e)
}

/// The members `names` of the JSON object `body`, read without building the rest of it (a body
/// can be megabytes; the members wanted are a few scalars at its top). A member named twice is
/// an error, as it was to serde's derive, so that a body cannot carry two different ids or
/// signatures; within a member's value too ([`Strict`]). `Ok(None)` when the body is JSON but
/// not an object; members absent or `null` are `None`. Other members are skipped as serde's
/// derive skips them (`IgnoredAny`).
///
/// Written out rather than derived because a derived reader, run by `serde_json`'s parser,
/// links core's float formatting into the bundle (see [`crate::json_de`]); this visitor takes
/// every kind of value, so nothing asks for a type.
pub fn members<const N: usize>(body: &[u8], names: [&str; N]) -> serde_json::Result<Option<[Option<Value>; N]>> {
    let mut parser = serde_json::Deserializer::from_slice(body);
    let found = serde::Deserializer::deserialize_any(&mut parser, Members { names })?;
    parser.end()?;
    Ok(found.map(|found| found.map(|v| v.filter(|v| !v.is_null()))))
}

struct Members<'n, const N: usize> {
    names: [&'n str; N],
}

fn duplicate<E: serde::de::Error>(name: &str) -> E {
    E::custom(format_args!("duplicate field `{name}`"))
}

impl<'de, const N: usize> Visitor<'de> for Members<'_, N> {
    type Value = Option<[Option<Value>; N]>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found: [Option<Value>; N] = std::array::from_fn(|_| None);
        while let Some(name) = map.next_key_seed(crate::json_path::Name)? {
            match self.names.iter().position(|n| *n == name) {
                Some(i) if found[i].is_some() => return Err(duplicate(self.names[i])),
                Some(i) => found[i] = Some(map.next_value_seed(Strict)?),
                None => _ = map.next_value::<IgnoredAny>()?,
            }
        }
        Ok(Some(found))
    }
}

/// A `Value` whose objects name no member twice (a `Value` keeps the last).
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Strict)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key_seed(crate::json_path::Name)? {
            if members.contains_key(name.as_ref()) {
                return Err(duplicate(&name));
            }
            members.insert(name.into_owned(), map.next_value_seed(Strict)?);
        }
        Ok(Value::Object(members))
    }
}

/// A JSON object's members read by hand, as serde's derive reads a struct: a member absent or
/// `null` is `None`, one of the wrong type an error, members nobody asks for are ignored.
///
/// The Durable Objects' operations are read this way from a [`Value`] (whose parser the bundle
/// has anyway) rather than through derived deserialisers: serde gives every struct, and every
/// optional field's type, code of its own (BENCHMARKS, section 4). The first error is kept
/// and the readers go on with empty values, so that a struct is built in one straight line and
/// checked once at the end ([`Fields::done`]): propagating each field's error instead gave
/// every field an exit that drops the fields before it, which cost more wasm than serde's.
pub struct Fields {
    map: Map<String, Value>,
    error: Option<String>,
}

/// An error as serde's derive words it, so that logs read as before.
pub fn missing(name: &str) -> String {
    format!("missing field `{name}`")
}

/// An unknown name, as serde's derive words it.
pub fn unknown_variant(name: &str) -> String {
    format!("unknown variant `{name}`")
}

fn wrong(name: &str, expected: &str) -> String {
    format!("invalid type for `{name}`: expected {expected}")
}

// The readers are not inlined: each is called from dozens of places in one function, where
// inlined copies cost kilobytes of wasm and save nothing that matters.
impl Fields {
    /// The members of `value`, which must be an object (`what` names it in the error).
    #[inline(never)]
    pub fn of(value: Value, what: &str) -> Fields {
        match value {
            Value::Object(map) => Fields { map, error: None },
            _ => Fields { map: Map::new(), error: Some(wrong(what, "an object")) },
        }
    }

    /// Keeps the first error.
    #[inline(never)]
    pub fn fail(&mut self, error: String) {
        self.error.get_or_insert(error);
    }

    /// The value of `result`, or `None` with its error kept.
    pub fn check<T>(&mut self, result: Result<T, String>) -> Option<T> {
        result.map_err(|e| self.fail(e)).ok()
    }

    /// `value`, unless a field could not be read.
    pub fn done<T>(self, value: T) -> Result<T, String> {
        match self.error {
            None => Ok(value),
            Some(error) => Err(error),
        }
    }

    /// The member `name`, unless absent or `null`.
    #[inline(never)]
    pub fn take(&mut self, name: &str) -> Option<Value> {
        // Taken out of its place rather than removed: a map's removal code is kilobytes of wasm.
        self.map.get_mut(name).map(Value::take).filter(|v| !v.is_null())
    }

    /// The member `name`, which must be there (`null` when it is not, the error kept).
    #[inline(never)]
    pub fn need(&mut self, name: &str) -> Value {
        let value = self.take(name);
        if value.is_none() {
            self.fail(missing(name));
        }
        value.unwrap_or_default()
    }

    #[inline(never)]
    pub fn string(&mut self, name: &str) -> Option<String> {
        let value = self.take(name)?;
        self.check(string(value, name))
    }

    #[inline(never)]
    pub fn need_string(&mut self, name: &str) -> String {
        let value = self.need(name);
        self.check(string(value, name)).unwrap_or_default()
    }

    /// The member `name` read by `read`, unless absent or `null`; of the wrong type, `None` with
    /// the error kept.
    fn optional<T>(&mut self, name: &str, read: fn(&Value) -> Option<T>, expected: &str) -> Option<T> {
        let value = self.take(name)?;
        self.check(read(&value).ok_or_else(|| wrong(name, expected)))
    }

    /// The member `name` read by `read`, which must be there: absent or of the wrong type, the
    /// type's default with the error kept.
    fn required<T: Default>(&mut self, name: &str, read: fn(&Value) -> Option<T>, expected: &str) -> T {
        let value = self.need(name);
        self.check(read(&value).ok_or_else(|| wrong(name, expected))).unwrap_or_default()
    }

    #[inline(never)]
    pub fn need_bool(&mut self, name: &str) -> bool {
        self.required(name, Value::as_bool, "a boolean")
    }

    #[inline(never)]
    pub fn u64(&mut self, name: &str) -> Option<u64> {
        self.optional(name, Value::as_u64, "an unsigned integer")
    }

    #[inline(never)]
    pub fn need_u64(&mut self, name: &str) -> u64 {
        self.required(name, Value::as_u64, "an unsigned integer")
    }

    #[inline(never)]
    pub fn need_u32(&mut self, name: &str) -> u32 {
        self.required(name, |v| v.as_u64().and_then(|n| u32::try_from(n).ok()), "a u32")
    }

    #[inline(never)]
    pub fn f64(&mut self, name: &str) -> Option<f64> {
        self.optional(name, Value::as_f64, "a number")
    }

    #[inline(never)]
    pub fn need_f64(&mut self, name: &str) -> f64 {
        self.required(name, Value::as_f64, "a number")
    }

    #[inline(never)]
    pub fn i64(&mut self, name: &str) -> Option<i64> {
        self.optional(name, Value::as_i64, "an integer")
    }

    #[inline(never)]
    pub fn need_i64(&mut self, name: &str) -> i64 {
        self.required(name, Value::as_i64, "an integer")
    }

    /// An array of strings.
    #[inline(never)]
    pub fn strings(&mut self, name: &str) -> Option<Vec<String>> {
        let value = self.take(name)?;
        self.check(array(value, name).and_then(|items| items.into_iter().map(|s| string(s, name)).collect()))
    }

    /// An array of strings, which must be there.
    #[inline(never)]
    pub fn need_strings(&mut self, name: &str) -> Vec<String> {
        let strings = self.strings(name);
        if strings.is_none() {
            self.fail(missing(name));
        }
        strings.unwrap_or_default()
    }

    /// An enum without data, by name (see [`crate::names`]); `None` with the error kept.
    pub fn need_named<T: Named>(&mut self, name: &str) -> Option<T> {
        let text = self.need_string(name);
        let named = T::from_name(&text);
        if named.is_none() {
            self.fail(unknown_variant(&text));
        }
        named
    }

    /// A nested object, which must be there. Should it not be an object, the error is the
    /// nested reader's, for its `done` to report.
    #[inline(never)]
    pub fn need_object(&mut self, name: &str) -> Fields {
        Fields::of(self.need(name), name)
    }
}

/// An enum's variant as serde writes it: the name alone for a variant without fields
/// (`"oldest"`), else an object of one member (`{"begin": {"key": ...}}`). The name, and the
/// variant's fields (none for the name alone, or for `null`).
pub fn variant(value: Value) -> Result<(String, Fields), String> {
    let (name, data) = match value {
        Value::String(name) => (name, Value::Null),
        Value::Object(map) if map.len() == 1 => map.into_iter().next().unwrap_or_default(),
        _ => return Err("expected a name, or an object of one member".into()),
    };
    let data = if data.is_null() { Value::Object(Map::new()) } else { data };
    let fields = Fields::of(data, &name);
    Ok((name, fields))
}

/// A string value (`name` for the error).
pub fn string(value: Value, name: &str) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s),
        _ => Err(wrong(name, "a string")),
    }
}

/// An array value (`name` for the error).
pub fn array(value: Value, name: &str) -> Result<Vec<Value>, String> {
    match value {
        Value::Array(items) => Ok(items),
        _ => Err(wrong(name, "an array")),
    }
}

/// A two-element array, as serde writes a pair.
pub fn pair(value: Value, name: &str) -> Result<(Value, Value), String> {
    let mut items = array(value, name)?.into_iter();
    match (items.next(), items.next(), items.next()) {
        (Some(a), Some(b), None) => Ok((a, b)),
        _ => Err(wrong(name, "a pair")),
    }
}

#[cfg(test)]
mod tests {
    use super::{pair, Fields};
    use proptest::prelude::*;
    use serde_json::{json, Value};

    /// Any JSON value, with any strings (escapes, control characters, any Unicode) and numbers.
    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            prop::num::f64::NORMAL.prop_map(Value::from),
            any::<String>().prop_map(Value::from),
            "[\"\\\\/\n\t\u{0}-\u{1f}\u{7f}a\u{e9}\u{2028}]{0,6}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(any::<String>(), inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn text_is_what_display_writes(value in any_value()) {
            prop_assert_eq!(super::text(&value), value.to_string());
        }
    }

    #[test]
    fn text_writes_every_kind() {
        let value = json!({"b": [true, false, null], "a": {"n": -1, "f": 0.5, "big": u64::MAX}, "s": "q\"\\\n\u{1}é"});
        assert_eq!(
            super::text(&value),
            r#"{"a":{"big":18446744073709551615,"f":0.5,"n":-1},"b":[true,false,null],"s":"q\"\\\n\u0001é"}"#
        );
        assert_eq!(super::text(&json!([])), "[]");
        assert_eq!(super::text(&json!({})), "{}");
    }

    #[test]
    fn fields_read_as_serde_reads_a_struct() {
        let object = json!({"s": "x", "n": 7, "big": 5_000_000_000u64, "big2": 5_000_000_000u64, "neg": -3, "half": 0.5, "n2": 7,
                            "b": true, "null": null, "list": ["a", "b"], "obj": {"k": 1}});
        let mut f = Fields::of(object, "test");
        assert_eq!(f.string("s").as_deref(), Some("x"));
        assert_eq!(f.need_u32("n"), 7);
        assert_eq!(f.need_u64("big2"), 5_000_000_000);
        assert_eq!(f.need_i64("neg"), -3);
        assert_eq!(f.need_f64("half"), 0.5);
        assert_eq!(f.f64("n2"), Some(7.0), "an integer is a number");
        assert!(f.need_bool("b"));
        assert_eq!(f.string("null"), None, "null reads as absent");
        assert_eq!(f.string("absent"), None);
        assert_eq!(f.u64("absent"), None);
        assert_eq!(f.strings("list"), Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(f.need_object("obj").u64("k"), Some(1));
        assert_eq!(f.done(()), Ok(()), "everything read was there, of its type");

        // The first error is kept, and the rest still read.
        let wrong = json!({"big": 5_000_000_000u64, "bad": "7", "mixed": ["a", 1], "float": 1.5, "s": "x", "t": 2});
        type Read = fn(&mut Fields);
        let cases: [(Read, &str); 5] = [
            (|f| _ = f.need_u32("big"), "invalid type for `big`: expected a u32"),
            (|f| _ = f.need_u64("bad"), "invalid type for `bad`: expected an unsigned integer"),
            (|f| _ = f.strings("mixed"), "invalid type for `mixed`: expected a string"),
            (|f| _ = f.need_i64("float"), "invalid type for `float`: expected an integer"),
            (|f| _ = f.need_string("absent"), "missing field `absent`"),
        ];
        for (read, error) in cases {
            let mut f = Fields::of(wrong.clone(), "test");
            read(&mut f);
            assert_eq!(f.string("s").as_deref(), Some("x"), "{error}: reading goes on");
            assert_eq!(f.done(()), Err(error.to_owned()));
        }
        // A nested object that is not one: its own reader reports it.
        let nested = Fields::of(wrong, "test").need_object("t");
        assert_eq!(nested.done(()), Err("invalid type for `t`: expected an object".to_owned()));
        let mut twice = Fields::of(json!({}), "test");
        twice.need_string("first");
        twice.need_string("second");
        assert_eq!(twice.done(()).unwrap_err(), "missing field `first`");
        assert!(Fields::of(json!([1]), "test").done(()).is_err());
        assert!(pair(json!(["a", "b"]), "p").is_ok());
        assert!(pair(json!(["a"]), "p").is_err() && pair(json!(["a", "b", "c"]), "p").is_err());
    }

    /// Members are read from the top of an object; named twice, they are refused, there and
    /// inside their values, while members nobody reads may repeat (and are not even built).
    #[test]
    fn members_are_read_once_each() {
        let read = |body: &str| super::members(body.as_bytes(), ["id", "type"]).map_err(|e| e.to_string());
        assert_eq!(read(r#"{"id":"a","data":{"id":"x"},"type":null}"#), Ok(Some([Some(json!("a")), None])));
        assert_eq!(
            read(r#"{"type":{"k":[1,{"z":true}]},"id":7}"#),
            Ok(Some([Some(json!(7)), Some(json!({"k": [1, {"z": true}]}))]))
        );
        assert_eq!(read(r#"{"other":1,"other":2}"#), Ok(Some([None, None])));
        for not_an_object in ["[]", r#"["a","b"]"#, "7", "null", r#""id""#] {
            assert_eq!(read(not_an_object), Ok(None), "{not_an_object}");
        }
        for (body, why) in [
            (r#"{"id":"a","id":"b"}"#, "duplicate field `id`"),
            (r#"{"id":null,"id":"b"}"#, "duplicate field `id`"),
            (r#"{"type":{"k":1,"k":2}}"#, "duplicate field `k`"),
            (r#"{"type":[{"k":1,"k":2}]}"#, "duplicate field `k`"),
        ] {
            assert!(read(body).unwrap_err().starts_with(why), "{body}: {:?}", read(body));
        }
        for bad in ["", "{", r#"{"id":"a"} x"#, r#"{"id":"\ud800"}"#] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_and_items_are_parsed_once() {
        assert_eq!(super::value(r#"{"a":[1]}"#).unwrap(), json!({"a": [1]}));
        assert_eq!(super::items(r#"[1,{"b":null}]"#, "ops"), Ok(vec![json!(1), json!({"b": null})]));
        assert_eq!(super::items("{}", "ops"), Err("invalid type for `ops`: expected an array".to_owned()));
        assert!(super::items("[1,", "ops").is_err() && super::value("").is_err());
    }

    #[test]
    fn reads_as_from_str_does() {
        for text in [r#"{"a":[1,2.5,"\u00e9\n",null,true]}"#, r#""\ud83d\udce6""#, "  7 ", "{\"x\":\"é\"}"] {
            assert_eq!(super::from_str::<Value>(text).unwrap(), serde_json::from_str::<Value>(text).unwrap());
        }
        for bad in ["", "{", r#""\ud800""#, "[1,]"] {
            assert!(super::from_str::<Value>(bad).is_err(), "{bad}");
        }
    }
}
