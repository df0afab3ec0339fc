//! JSON text read through one reader.
//!
//! `serde_json::from_str` and `from_slice` read through different reader types, and every type
//! read one way and the other is compiled twice, serde_json's parser with it (in the worker,
//! about 7 KB of wasm of its parsing functions alone). Request bodies must be read as bytes
//! (they need not be UTF-8), so text is read as bytes too: the parser then checks again that
//! the strings it reads are UTF-8, a few nanoseconds for the short texts read this way.

use serde::de::DeserializeOwned;

/// `serde_json::from_str`, through the byte reader.
pub fn from_str<T: DeserializeOwned>(text: &str) -> serde_json::Result<T> {
    serde_json::from_slice(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

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
