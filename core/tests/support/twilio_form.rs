//! What Twilio signs of a form body, computed the plain way (`form_urlencoded`, owned strings,
//! a sort): the oracle that edgehook's own decoding (`providers::twilio::signed_params`, written
//! for speed) and the hostile corpus are checked against.

/// The decoded parameters, sorted by name then value, repeated pairs once, each name followed by
/// its value; `None` for a body Twilio would not send (raw spaces or bytes, escapes that do not
/// decode to UTF-8).
pub fn twilio_signed(body: &[u8]) -> Option<Vec<u8>> {
    let strict = body.iter().all(|b| b.is_ascii_graphic())
        && body
            .split(|&b| b == b'&')
            .flat_map(|pair| pair.split(|&b| b == b'='))
            .all(|part| percent_encoding::percent_decode(part).decode_utf8().is_ok());
    if !strict {
        return None;
    }
    let mut params: Vec<(String, String)> =
        form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    params.sort();
    params.dedup();
    Some(params.into_iter().flat_map(|(k, v)| [k.into_bytes(), v.into_bytes()]).flatten().collect())
}
