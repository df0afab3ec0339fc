//! Enums without data that travel as their names (`"dead_lettered"`), read and written through
//! the names they already have (`as_str`). Serde's derive gives each such enum a visitor of its
//! own for every format, about 1.5 KB of the worker's wasm apiece; here every enum shares one
//! reader per format, which reads a string and looks it up.

use serde::de::{Deserialize, Deserializer, Error};

/// An enum read and written by name.
pub trait Named: Copy + 'static {
    /// Every variant.
    const VARIANTS: &'static [Self];

    /// The variant's name, as serde's `rename_all = "snake_case"` would spell it.
    fn name(self) -> &'static str;

    /// The variant of this name.
    fn from_name(name: &str) -> Option<Self> {
        Self::VARIANTS.iter().copied().find(|v| v.name() == name)
    }
}

/// Reads a [`Named`] enum from its name; the error says `unknown variant`, as serde's does.
pub fn deserialize<'de, D: Deserializer<'de>, T: Named>(d: D) -> Result<T, D::Error> {
    let name = String::deserialize(d)?;
    T::from_name(&name).ok_or_else(|| D::Error::custom(format_args!("unknown variant `{name}`")))
}

/// Implements [`Named`], `Serialize` and `Deserialize` for an enum from its `as_str` and the
/// list of its variants.
macro_rules! by_name {
    ($t:ident: $($variant:ident),+ $(,)?) => {
        impl $crate::names::Named for $t {
            const VARIANTS: &'static [Self] = &[$($t::$variant),+];

            fn name(self) -> &'static str {
                self.as_str()
            }
        }

        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::names::deserialize(d)
            }
        }
    };
}
pub(crate) use by_name;

#[cfg(test)]
mod tests {
    use super::Named;
    use crate::{capture, flags, gate, health, idempotency, metrics};

    /// What serde's `rename_all = "snake_case"` makes of a variant's name: the names on the
    /// wire (Durable Object storage, RPC, the admin API) stay what they were with the derive.
    fn snake_case(variant: &str) -> String {
        let mut out = String::new();
        for (i, c) in variant.chars().enumerate() {
            if c.is_uppercase() && i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        }
        out
    }

    fn check<T: Named + std::fmt::Debug + PartialEq + serde::Serialize + serde::de::DeserializeOwned>(count: usize) {
        assert_eq!(T::VARIANTS.len(), count, "every variant of {}", std::any::type_name::<T>());
        for &v in T::VARIANTS {
            assert_eq!(v.name(), snake_case(&format!("{v:?}")));
            let json = serde_json::to_string(&v).unwrap();
            assert_eq!(json, format!("\"{}\"", v.name()));
            assert_eq!(serde_json::from_str::<T>(&json).unwrap(), v);
            // Escaped, as JSON may escape it, and from a `Value`.
            let escaped = format!("\"\\u{:04x}{}\"", v.name().as_bytes()[0], &v.name()[1..]);
            assert_eq!(serde_json::from_str::<T>(&escaped).unwrap(), v, "{escaped}");
            assert_eq!(serde_json::from_value::<T>(serde_json::Value::from(v.name())).unwrap(), v);
        }
        let err = serde_json::from_str::<T>(r#""no_such_name""#).unwrap_err().to_string();
        assert!(err.contains("unknown variant `no_such_name`"), "{err}");
        assert!(serde_json::from_str::<T>("1").is_err());
    }

    #[test]
    fn names_are_serdes_snake_case_both_ways() {
        check::<metrics::Outcome>(11);
        check::<idempotency::State>(8);
        check::<capture::EventStatus>(8);
        check::<gate::Answer>(3);
        check::<flags::Mode>(3);
        check::<health::Status>(2);
    }
}
