//! Typed values read out of a parsed [`Value`], with an error type of edgehook's own.
//!
//! Why not `serde_json::from_slice::<T>` or `serde_json::from_value::<T>`: their error type
//! words an unexpected value through serde's own wording, whose floating-point case formats
//! the number with core's `f64` formatting. `serde_json` handles that case itself first, but
//! the compiler cannot see it, so every typed read linked core's float formatting and its
//! tables: about 10 KB of the gzipped bundle (BENCHMARKS, section 4), for an error message.
//! Here the text is parsed into a [`Value`] (which never asks for a type, so never words an
//! unexpected one), and the typed value is read from it through [`Doc`], whose error words
//! every unexpected value itself and formats floats as `serde_json` prints them.
//!
//! The reading is serde's own: `Doc` hands the visitor what the JSON holds, and serde's
//! `SeqDeserializer`, `MapDeserializer` and `MapAccessDeserializer` walk arrays, objects and
//! enums. What a type accepts is what it accepted from `serde_json` (unit tests compare the two),
//! but for two things nothing edgehook reads is written with:
//! - an object naming a member twice keeps the last, as a `Value` does, where a derived reader
//!   refused a field named twice. What a body must not say twice (ids, types, signatures) is
//!   read by [`crate::json::members`], which still refuses;
//! - a struct variant must be an object: `serde_json` also took the array of its fields in
//!   order (as it does for a struct, and as this reader does). serde writes variants as
//!   objects, and accepting both here cost every struct variant a second reader (1.3 KB of the
//!   gzipped bundle).

use serde::de::value::{MapAccessDeserializer, MapDeserializer, SeqDeserializer};
use serde::de::{self, DeserializeOwned, Deserializer, Expected, IntoDeserializer, Unexpected, Visitor};
use serde_json::{Number, Value};
use std::fmt;

/// `T` read from `value`; the error worded as `serde_json` words it, without its position.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, Error> {
    T::deserialize(Doc(value))
}

/// Why a value could not be read as the type asked for.
#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    #[cold]
    fn custom<T: fmt::Display>(msg: T) -> Error {
        Error(msg.to_string())
    }

    // These two are the point of this module: serde's defaults word `unexpected` with its own
    // `Display`, which formats floats with core's `f64` formatting.
    #[cold]
    fn invalid_type(unexpected: Unexpected<'_>, expected: &dyn Expected) -> Error {
        Error(format!("invalid type: {}, expected {expected}", Said(unexpected)))
    }

    #[cold]
    fn invalid_value(unexpected: Unexpected<'_>, expected: &dyn Expected) -> Error {
        Error(format!("invalid value: {}, expected {expected}", Said(unexpected)))
    }
}

/// An unexpected value, worded as `serde_json` words it ("integer `7`", "string \"x\"").
struct Said<'a>(Unexpected<'a>);

impl fmt::Display for Said<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Unexpected::Bool(b) => write!(f, "boolean `{b}`"),
            Unexpected::Unsigned(n) => write!(f, "integer `{n}`"),
            Unexpected::Signed(n) => write!(f, "integer `{n}`"),
            // As JSON prints it, by serde_json's own float formatting (already in the bundle).
            Unexpected::Float(n) => match Number::from_f64(n) {
                Some(n) => write!(f, "floating point `{n}`"),
                None => f.write_str("floating point"),
            },
            Unexpected::Char(c) => write!(f, "character `{c}`"),
            Unexpected::Str(s) => write!(f, "string {s:?}"),
            Unexpected::Unit => f.write_str("null"),
            Unexpected::Seq => f.write_str("sequence"),
            Unexpected::Map => f.write_str("map"),
            Unexpected::Other(other) => f.write_str(other),
            // The rest (bytes, options, newtypes, variants) never come out of a JSON value.
            _ => f.write_str("a value"),
        }
    }
}

/// A parsed JSON value, read by a visitor.
struct Doc(Value);

impl<'de> IntoDeserializer<'de, Error> for Doc {
    type Deserializer = Doc;

    fn into_deserializer(self) -> Doc {
        self
    }
}

/// An object's members, each value a [`Doc`].
fn docs(map: serde_json::Map<String, Value>) -> impl Iterator<Item = (String, Doc)> {
    map.into_iter().map(|(name, value)| (name, Doc(value)))
}

/// Number types are read as `deserialize_u64` reads them: the visitor gets what the number is.
macro_rules! numbers {
    ($($method:ident)*) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.deserialize_u64(visitor)
        })*
    };
}

impl<'de> Deserializer<'de> for Doc {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Number(n) => number(n, visitor),
            Value::String(s) => visitor.visit_string(s),
            Value::Array(items) => seq(items, visitor),
            Value::Object(map) => members(map, visitor),
        }
    }

    // The methods below ask for one kind of value, as typed code does: each visitor's code is
    // compiled once per method it is read through, and reading everything through
    // `deserialize_any` compiled every kind's branch for each of them.

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Bool(b) => visitor.visit_bool(b),
            other => Err(unexpected(&other, &visitor)),
        }
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Number(n) => number(n, visitor),
            other => Err(unexpected(&other, &visitor)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::String(s) => visitor.visit_string(s),
            other => Err(unexpected(&other, &visitor)),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Array(items) => seq(items, visitor),
            other => Err(unexpected(&other, &visitor)),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(map) => members(map, visitor),
            other => Err(unexpected(&other, &visitor)),
        }
    }

    /// An object, or an array of the fields in order, as `serde_json` reads a struct.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(map) => members(map, visitor),
            Value::Array(items) => seq(items, visitor),
            other => Err(unexpected(&other, &visitor)),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            other => Err(unexpected(&other, &visitor)),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    /// Externally tagged, as serde writes enums: a unit variant is its name, any other variant
    /// an object of one member, its name.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::String(name) => visitor.visit_enum(name.into_deserializer()),
            Value::Object(map) if map.len() == 1 => {
                visitor.visit_enum(MapAccessDeserializer::new(MapDeserializer::new(docs(map))))
            }
            other => Err(unexpected(&other, &visitor)),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_string(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_string(visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    numbers! { deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128 deserialize_u8
    deserialize_u16 deserialize_u32 deserialize_u128 deserialize_f32 deserialize_f64 }

    serde::forward_to_deserialize_any! { char bytes byte_buf unit_struct }
}

/// An array's items, read by `visitor`; all of them must be read.
fn seq<'de, V: Visitor<'de>>(items: Vec<Value>, visitor: V) -> Result<V::Value, Error> {
    let mut seq = SeqDeserializer::new(items.into_iter().map(Doc));
    let value = visitor.visit_seq(&mut seq)?;
    seq.end()?;
    Ok(value)
}

/// An object's members, read by `visitor`; all of them must be read.
fn members<'de, V: Visitor<'de>>(map: serde_json::Map<String, Value>, visitor: V) -> Result<V::Value, Error> {
    let mut map = MapDeserializer::new(docs(map));
    let value = visitor.visit_map(&mut map)?;
    map.end()?;
    Ok(value)
}

/// A value of the wrong kind for `expected`, worded as [`Said`] words it. Not generic, so
/// compiled once.
#[cold]
#[inline(never)]
fn unexpected(value: &Value, expected: &dyn Expected) -> Error {
    let said = match value {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(n), _) => Unexpected::Unsigned(n),
            (None, Some(n)) => Unexpected::Signed(n),
            _ => Unexpected::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
    };
    de::Error::invalid_type(said, expected)
}

/// A number as `serde_json` hands it over: unsigned if it can be, then signed, then a float.
fn number<'de, V: Visitor<'de>>(n: Number, visitor: V) -> Result<V::Value, Error> {
    if let Some(n) = n.as_u64() {
        visitor.visit_u64(n)
    } else if let Some(n) = n.as_i64() {
        visitor.visit_i64(n)
    } else {
        visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN))
    }
}

#[cfg(test)]
mod tests {
    use crate::envelope::BodyRef;
    use proptest::prelude::*;
    use serde::de::DeserializeOwned;
    use serde::Deserialize;
    use serde_json::Value;
    use std::fmt::Debug;

    #[derive(Debug, PartialEq, Deserialize)]
    struct Sample {
        name: String,
        count: Option<u32>,
        #[serde(default)]
        list: Vec<(String, i64)>,
        #[serde(rename = "type", default)]
        kind: Option<Kind>,
        ratio: Option<f64>,
        flag: Option<bool>,
        inner: Option<Box<Sample>>,
    }

    /// [`Sample`] without its enum, whose refusals `serde_json` words differently (below).
    #[derive(Debug, PartialEq, Deserialize)]
    struct Plain {
        name: String,
        count: Option<u32>,
        #[serde(default)]
        list: Vec<(String, i64)>,
        ratio: Option<f64>,
        flag: Option<bool>,
        inner: Option<Box<Plain>>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    enum Kind {
        Unit,
        Newtype(u8),
        Tuple(u8, String),
        Struct { at: i64 },
    }

    /// What `serde_json` says of `text` as a `T`, its position left out.
    fn theirs<T: DeserializeOwned>(text: &str) -> Result<T, String> {
        serde_json::from_str(text).map_err(|e| {
            let message = e.to_string();
            message.split(" at line ").next().unwrap_or_default().to_owned()
        })
    }

    fn ours<T: DeserializeOwned>(text: &str) -> Result<T, String> {
        crate::json::from_str(text).map_err(|e| e.to_string())
    }

    /// The same value, or the same refusal (the wording is compared where `same_words` says).
    fn same<T: DeserializeOwned + PartialEq + Debug>(text: &str, same_words: bool) {
        match (ours::<T>(text), theirs::<T>(text)) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
            // A tuple given too many items: `serde_json` stops at the first one too many.
            (Err(a), Err(b)) if same_words && b == "trailing characters" => {
                assert!(a.starts_with("invalid length"), "{text}: {a}")
            }
            (Err(a), Err(b)) if same_words => assert_eq!(a, b, "{text}"),
            (Err(_), Err(_)) => {}
            (a, b) => panic!("{text}: ours {a:?}, serde_json's {b:?}"),
        }
    }

    #[test]
    fn reads_what_serde_json_reads() {
        let accepted = [
            r#"{"name":"a"}"#,
            r#"{"name":"a","count":7,"list":[["x",-1],["y",9007199254740993]],"ratio":2,"flag":true}"#,
            r#"{"name":"a","count":null,"type":"Unit","unknown":{"deep":[1,2]}}"#,
            r#"{"name":"a","type":{"Newtype":255}}"#,
            r#"{"name":"a","type":{"Tuple":[1,"x"]}}"#,
            r#"{"name":"a","type":{"Struct":{"at":-5}}}"#,
            r#"{"name":"a","type":{"Unit":null}}"#,
            r#"{"name":"a","ratio":1.5e300,"inner":{"name":"b","inner":null}}"#,
            r#"["a",1,[],null,null,null,null]"#,
        ];
        for text in accepted {
            assert!(ours::<Sample>(text).is_ok(), "{text}: {:?}", ours::<Sample>(text));
            same::<Sample>(text, true);
        }
        // Refused, in serde_json's words.
        let refused = [
            (r#"{"count":1}"#, "missing field `name`"),
            (r#"{"name":"a","count":1.5}"#, "invalid type: floating point `1.5`, expected u32"),
            (r#"{"name":"a","count":-1}"#, "invalid value: integer `-1`, expected u32"),
            (r#"{"name":"a","count":4294967296}"#, "invalid value: integer `4294967296`, expected u32"),
            (r#"{"name":"a","count":"1"}"#, "invalid type: string \"1\", expected u32"),
            (r#"{"name":7}"#, "invalid type: integer `7`, expected a string"),
            (r#"{"name":"a","flag":[]}"#, "invalid type: sequence, expected a boolean"),
            (r#"{"name":"a","list":{}}"#, "invalid type: map, expected a sequence"),
            (r#"{"name":"a","list":[["x"]]}"#, "invalid length 1, expected a tuple of size 2"),
            (
                r#"{"name":"a","type":"Other"}"#,
                "unknown variant `Other`, expected one of `Unit`, `Newtype`, `Tuple`, `Struct`",
            ),
            (r#"{"name":"a","type":{"Newtype":256}}"#, "invalid value: integer `256`, expected u8"),
            (r#"true"#, "invalid type: boolean `true`, expected struct Sample"),
            (r#"null"#, "invalid type: null, expected struct Sample"),
        ];
        for (text, words) in refused {
            assert_eq!(ours::<Sample>(text).unwrap_err(), words, "{text}");
            same::<Sample>(text, true);
        }
        // Refused by both, in other words: not JSON, or not an enum's form ("expected value",
        // says serde_json of `3` as an enum; "invalid type: integer `3`, expected enum Kind" here).
        for text in [
            r#"{"name":"a","type":{"Unit":1}}"#,
            r#"{"name":"a","type":{"Unit":null,"Newtype":1}}"#,
            r#"{"name":"a","type":3}"#,
            "{",
        ] {
            assert!(ours::<Sample>(text).is_err(), "{text}");
            same::<Sample>(text, false);
        }
    }

    /// The internally tagged body references, and plain values of every kind.
    #[test]
    fn reads_tagged_enums_and_plain_values() {
        for text in [
            r#"{"kind":"inline"}"#,
            r#"{"kind":"stored","key":"k","len":3}"#,
            r#"{"kind":"segment","key":"k","offset":1,"len":2}"#,
            r#"{"kind":"segment","key":"k"}"#,
            r#"{"kind":"elsewhere"}"#,
            r#"{"key":"k"}"#,
        ] {
            same::<BodyRef>(text, true);
        }
        same::<Vec<Option<u64>>>("[1,null,3]", true);
        same::<(u32, String, bool)>(r#"[1,"x",false]"#, true);
        same::<(u32, String)>(r#"[1,"x",false]"#, false);
        same::<i64>("-9223372036854775808", true);
        same::<u64>("18446744073709551615", true);
        same::<f64>("1", true);
        same::<String>(r#""\u00e9""#, true);
        same::<Option<String>>("null", true);
        same::<Value>(r#"{"a":[1,2.5,"x",null,true,{"b":{}}]}"#, true);
        same::<std::collections::BTreeMap<String, u8>>(r#"{"a":1,"b":2}"#, true);
        same::<std::collections::BTreeMap<String, u8>>("[1]", true);
        // The one difference in what is accepted: a struct variant as the array of its fields.
        let array_variant = r#"{"Struct":[-5]}"#;
        assert_eq!(theirs::<Kind>(array_variant), Ok(Kind::Struct { at: -5 }));
        assert_eq!(
            ours::<Kind>(array_variant).unwrap_err(),
            "invalid type: sequence, expected struct variant Kind::Struct"
        );
    }

    /// Any JSON value: the same answer as `serde_json`'s for every type the tests read.
    fn any_value() -> impl Strategy<Value = Value> {
        let names = prop::sample::select(vec![
            "name", "count", "list", "type", "ratio", "flag", "inner", "Unit", "Newtype", "Tuple", "Struct", "at", "x",
        ]);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-300i64..300).prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            prop::num::f64::NORMAL.prop_map(Value::from),
            names.clone().prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(names.clone().prop_map(str::to_owned), inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn reads_any_value_as_serde_json_does(value in any_value()) {
            let text = value.to_string();
            // Struct variants as arrays are the one difference (see the module's comment).
            if !text.contains(r#""Struct":["#) {
                same::<Sample>(&text, false);
                same::<Kind>(&text, false);
            }
            same::<Plain>(&text, true);
            same::<Vec<(String, i64)>>(&text, true);
            same::<Option<Vec<u8>>>(&text, true);
        }
    }
}
