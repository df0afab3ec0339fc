//! Finding one top-level member of a JSON object without parsing the rest of it.
//!
//! Linear signs its timestamp inside the body (`webhookTimestamp`), so verifying a Linear
//! request means reading that one field of a body that may be megabytes long. Parsing it with
//! `serde_json`, even into a struct that ignores every other field, costs as much again as the
//! HMAC. This scanner follows only the structure (strings, nesting, the top-level separators),
//! jumping over string contents with `memchr`, and answers [`Member::Unsure`] whenever the
//! structure is anything but plain (not an object, a top-level name whose escapes spell the key,
//! the member twice, trailing bytes, an unterminated string): the caller then parses properly.
//! It does not
//! validate what it skips (numbers, literals, UTF-8), so on a malformed body it can find a
//! member `serde_json` would refuse to read.

/// What the scan found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Member<'a> {
    /// The member's value, as its raw text (without surrounding whitespace).
    Found(&'a [u8]),
    /// The body is an object without that member at its top level.
    Absent,
    /// The scan cannot say: parse the body.
    Unsure,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The index of the quote closing the string whose contents start at `from`.
fn string_end(body: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let at = from + memchr::memchr2(b'"', b'\\', body.get(from..)?)?;
        if body[at] == b'"' {
            return Some(at);
        }
        from = at + 2; // an escape: skip the escaped byte (`\"`, `\\`, or the `u` of `\uXXXX`)
    }
}

/// The top-level member `key` of the JSON object in `body` (see the module documentation).
pub fn top_level_member<'a>(body: &'a [u8], key: &str) -> Member<'a> {
    let starts_as_object = body.iter().find(|&&b| !is_space(b)) == Some(&b'{');
    let ends_as_object = body.iter().rev().find(|&&b| !is_space(b)) == Some(&b'}');
    if !starts_as_object || !ends_as_object {
        return Member::Unsure;
    }
    // Without a `\u` escape anywhere, no name can spell the key other than plainly, and the
    // key's occurrences can be found with a fast substring search; otherwise, one pass.
    let fast = if memchr::memmem::find(body, b"\\u").is_none() { by_occurrences(body, key.as_bytes()) } else { None };
    fast.or_else(|| scan(body, key.as_bytes())).unwrap_or(Member::Unsure)
}

/// Most occurrences of the key (at any depth) looked at before leaving it to the full scan.
const MAX_OCCURRENCES: usize = 4;

/// Finds the key by its occurrences as `"key"`: in a body without `\u` escapes, an unescaped
/// `"key"` followed by a colon is that member's name (in valid JSON, `":` only ends a name).
/// Whether it is at the top level is decided by following the structure from the start of the
/// body to it, or from it to the end, whichever is shorter.
fn by_occurrences<'a>(body: &'a [u8], key: &[u8]) -> Option<Member<'a>> {
    let mut quoted = Vec::with_capacity(key.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(key);
    quoted.push(b'"');
    let mut found = None;
    for (seen, at) in memchr::memmem::find_iter(body, &quoted).enumerate() {
        if seen == MAX_OCCURRENCES {
            return None;
        }
        let backslashes = body[..at].iter().rev().take_while(|&&b| b == b'\\').count();
        let after = at + quoted.len();
        let colon = after + body[after..].iter().position(|&b| !is_space(b))?;
        if backslashes % 2 == 1 || matches!(body[colon], b',' | b'}' | b']') {
            continue; // inside a longer string, or a value equal to the key
        }
        if body[colon] != b':' {
            return None;
        }
        let (value, holder_is_root) = if at < body.len() - colon {
            (member_value(body, colon + 1, true)?.0, depth_at(body, at)? == 1)
        } else {
            member_value(body, colon + 1, false)?
        };
        if holder_is_root {
            if found.is_some() || value.is_empty() {
                return None;
            }
            found = Some(value);
        }
    }
    Some(found.map_or(Member::Absent, Member::Found))
}

/// One step of a walk over a body's structure: the bytes that matter outside strings.
#[derive(Clone, Copy)]
enum Step {
    /// `{` or `[`.
    Open,
    /// `}` or `]`.
    Close(u8),
    Comma,
    /// A string, from its opening quote to its closing quote at `end`.
    Str {
        end: usize,
    },
    /// A string that never ends: the walk stops here.
    Broken,
}

/// The structure of `body` from an index: each [`Step`] with the index it is at. String
/// contents are jumped over with `memchr`; numbers, literals, colons and whitespace are skipped.
struct Walk<'a> {
    body: &'a [u8],
    i: usize,
}

impl Iterator for Walk<'_> {
    type Item = (usize, Step);

    fn next(&mut self) -> Option<(usize, Step)> {
        while self.i < self.body.len() {
            let at = self.i;
            self.i += 1;
            let step = match self.body[at] {
                b'"' => match string_end(self.body, at + 1) {
                    Some(end) => {
                        self.i = end + 1;
                        Step::Str { end }
                    }
                    None => {
                        self.i = self.body.len();
                        Step::Broken
                    }
                },
                b'{' | b'[' => Step::Open,
                close @ (b'}' | b']') => Step::Close(close),
                b',' => Step::Comma,
                _ => continue,
            };
            return Some((at, step));
        }
        None
    }
}

fn walk(body: &[u8], from: usize) -> Walk<'_> {
    Walk { body, i: from }
}

/// The nesting depth at `at` (the start of a string), following the structure from the start.
fn depth_at(body: &[u8], at: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, step) in walk(body, 0) {
        if i >= at {
            return (i == at).then_some(depth);
        }
        match step {
            Step::Open => depth += 1,
            Step::Close(_) => depth = depth.checked_sub(1)?,
            Step::Broken => return None,
            Step::Comma | Step::Str { .. } => {}
        }
    }
    None
}

/// From just after a member's colon: the member's value, and whether the object holding the
/// member is the last thing in the body (so, in valid JSON, the top-level object); with
/// `value_only`, stops after the value (and says `false`).
fn member_value(body: &[u8], from: usize, value_only: bool) -> Option<(&[u8], bool)> {
    let mut depth = 1usize; // the object holding the member
    let mut value_end = None;
    for (i, step) in walk(body, from) {
        match step {
            Step::Open => depth += 1,
            Step::Close(_) | Step::Comma if depth == 1 && value_end.is_none() => {
                if value_only {
                    return Some((trim(&body[from..i]), false));
                }
                value_end = Some(i);
                if matches!(step, Step::Close(_)) {
                    let last = body[i + 1..].iter().all(|&b| is_space(b));
                    return Some((trim(&body[from..i]), last));
                }
            }
            Step::Close(_) => {
                depth -= 1;
                if depth == 0 {
                    let last = body[i + 1..].iter().all(|&b| is_space(b));
                    return Some((trim(&body[from..value_end?]), last));
                }
            }
            Step::Broken => return None,
            Step::Comma | Step::Str { .. } => {}
        }
    }
    None
}

fn scan<'a>(body: &'a [u8], key: &[u8]) -> Option<Member<'a>> {
    let start = body.iter().position(|&b| !is_space(b))?;
    if body[start] != b'{' {
        return None;
    }
    let mut depth = 0usize;
    // At depth 1: whether the next string is a member's name, and where the wanted member's
    // value starts once its name and colon are behind.
    let mut expecting_key = false;
    let mut value_start: Option<usize> = None;
    let mut found: Option<&[u8]> = None;
    let mut wanted_key_seen = false;
    for (i, step) in walk(body, start) {
        match step {
            Step::Str { end } if depth == 1 && expecting_key => {
                expecting_key = false;
                let name = &body[i + 1..end];
                // An escaped name might spell the key: decoding it is for a parser.
                if name.contains(&b'\\')
                    && crate::json::from_slice::<String>(&body[i..=end]).map_or(true, |n| n.as_bytes() == key)
                {
                    return None;
                }
                if name == key {
                    if wanted_key_seen {
                        return None; // twice: a parser would refuse or pick one; let it decide
                    }
                    wanted_key_seen = true;
                    let colon = end + 1 + body.get(end + 1..)?.iter().position(|&b| !is_space(b))?;
                    if body[colon] != b':' {
                        return None;
                    }
                    value_start = Some(colon + 1);
                }
            }
            Step::Open => {
                depth += 1;
                expecting_key = depth == 1;
            }
            Step::Close(close) => {
                if depth == 1 {
                    if close != b'}' {
                        return None;
                    }
                    if let Some(start) = value_start.take() {
                        found = Some(trim(&body[start..i]));
                    }
                }
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    // The object is closed: nothing but whitespace may follow.
                    if !body[i + 1..].iter().all(|&b| is_space(b)) {
                        return None;
                    }
                    return match found {
                        Some(value) if !value.is_empty() => Some(Member::Found(value)),
                        Some(_) => None,
                        None => Some(Member::Absent),
                    };
                }
            }
            Step::Comma if depth == 1 => {
                if let Some(start) = value_start.take() {
                    found = Some(trim(&body[start..i]));
                }
                expecting_key = true;
            }
            Step::Broken => return None,
            Step::Comma | Step::Str { .. } => {}
        }
    }
    None // never closed
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| !is_space(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|&b| !is_space(b)).map_or(start, |e| e + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn member(body: &str) -> Member<'_> {
        top_level_member(body.as_bytes(), "webhookTimestamp")
    }

    #[test]
    fn finds_the_top_level_member_only() {
        let found = |v: &'static str| Member::Found(v.as_bytes());
        assert_eq!(member(r#"{"a":1,"webhookTimestamp":1676056940508,"b":"x"}"#), found("1676056940508"));
        assert_eq!(member(" {\n \"webhookTimestamp\" : 12 \n} \n"), found("12"));
        assert_eq!(member(r#"{"data":{"webhookTimestamp":1},"webhookTimestamp":2}"#), found("2"));
        assert_eq!(
            member(r#"{"s":"\"webhookTimestamp\":1","t":["webhookTimestamp",{"webhookTimestamp":3}]}"#),
            Member::Absent
        );
        assert_eq!(member(r#"{"webhookTimestamp":{"x":[1,2]}}"#), found(r#"{"x":[1,2]}"#));
        assert_eq!(member(r#"{"a":"webhookTimestamp","b":1}"#), Member::Absent, "a value is not a name");
        assert_eq!(member("{}"), Member::Absent);
    }

    #[test]
    fn anything_unusual_is_left_to_a_parser() {
        for body in [
            "",
            "[]",
            r#"[{"webhookTimestamp":1}]"#,
            r#"{"webhookTimestamp":1,"webhookTimestamp":2}"#,
            r#"{"webhook\u0054imestamp":1}"#,
            r#"{"webhookTimestamp":1} x"#,
            r#"{"webhookTimestamp":1"#,
            r#"{"webhookTimestamp":"1}"#,
            r#"{"webhookTimestamp":}"#,
            r#"{"webhookTimestamp" 1}"#,
        ] {
            assert_eq!(member(body), Member::Unsure, "{body}");
        }
        // Malformed, without the key: nothing to find either way.
        for body in [r#"{"a":[1}"#, r#"{"a":1}}"#, r#"{"a":1,,}"#] {
            assert!(matches!(member(body), Member::Absent | Member::Unsure), "{body}");
        }
    }

    #[test]
    fn the_key_is_found_near_either_end_and_nested_copies_are_not_it() {
        let items = r#"{"n":1,"s":"a\"b"}"#.repeat(50);
        for body in [
            format!(r#"{{"webhookTimestamp":5,"data":[{items}],"x":{{"webhookTimestamp":6}}}}"#),
            format!(r#"{{"data":[{items}],"x":{{"webhookTimestamp":6}},"webhookTimestamp":5}}"#),
            format!(r#"{{"x":{{"webhookTimestamp":6}},"data":[{items}],"webhookTimestamp":5,"id":"z"}}"#),
        ] {
            assert_eq!(member(&body), Member::Found(b"5"), "{body}");
            // With a `\u` escape somewhere, the one-pass scan answers, the same.
            let escaped = body.replacen(r#""n":1"#, r#""n":"\u00e9""#, 1);
            assert_eq!(member(&escaped), Member::Found(b"5"), "{escaped}");
        }
        let nested_only = format!(r#"{{"data":[{items}],"x":{{"webhookTimestamp":6}}}}"#);
        assert_eq!(member(&nested_only), Member::Absent);
    }

    /// What a full parse reads: the member of a top-level object, when the body is valid JSON.
    fn parsed(body: &[u8]) -> Option<serde_json::Value> {
        match serde_json::from_slice::<serde_json::Value>(body).ok()? {
            serde_json::Value::Object(map) => {
                Some(map.get("webhookTimestamp").cloned().unwrap_or(serde_json::Value::Null))
            }
            _ => None,
        }
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "[a-zA-Z\"\\\\{}\\[\\],: \u{e9}]{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::from),
                proptest::collection::vec(
                    (prop_oneof![Just("webhookTimestamp".to_owned()), "[a-z\"]{0,6}"], inner),
                    0..5
                )
                .prop_map(|members| serde_json::Value::Object(members.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// On valid JSON (as Linear sends), the scan agrees with a full parse whenever it is sure.
        #[test]
        fn agrees_with_a_parser_on_valid_json(
            members in proptest::collection::vec((prop_oneof![Just("webhookTimestamp".to_owned()), "[a-z\"]{0,6}"], json_value()), 0..6),
            pretty in any::<bool>(),
        ) {
            let object = serde_json::Value::Object(members.into_iter().collect());
            let text = if pretty { serde_json::to_string_pretty(&object).unwrap() } else { object.to_string() };
            let expected = parsed(text.as_bytes()).unwrap();
            match top_level_member(text.as_bytes(), "webhookTimestamp") {
                Member::Found(raw) => prop_assert_eq!(serde_json::from_slice::<serde_json::Value>(raw).unwrap(), expected),
                Member::Absent => prop_assert_eq!(expected, serde_json::Value::Null),
                Member::Unsure => prop_assert!(false, "unsure about valid JSON: {}", text),
            }
        }

        /// On any bytes, what the scan finds is what a parser finds, whenever the parser reads
        /// the body at all.
        #[test]
        fn never_contradicts_a_parser(body in proptest::collection::vec(prop_oneof![
            Just(b'{'), Just(b'}'), Just(b'['), Just(b']'), Just(b'"'), Just(b'\\'), Just(b':'), Just(b','),
            Just(b' '), Just(b'1'), Just(b'a'), Just(b'u'),
        ], 0..40), with_key in any::<bool>()) {
            let mut body = body;
            if with_key {
                let at = body.len() / 2;
                body.splice(at..at, br#""webhookTimestamp":"#.iter().copied());
            }
            if let Some(expected) = parsed(&body) {
                match top_level_member(&body, "webhookTimestamp") {
                    Member::Found(raw) => prop_assert_eq!(serde_json::from_slice::<serde_json::Value>(raw).ok(), Some(expected)),
                    Member::Absent => prop_assert_eq!(expected, serde_json::Value::Null),
                    Member::Unsure => {}
                }
            }
        }
    }
}
