//! The primitives every signature scheme is built from: HMAC over several byte slices (so the
//! signed content is never copied into one buffer), public-key checks (Ed25519, ECDSA P-256),
//! constant-time comparison, and strict timestamp handling.

use crate::error::Rejection;
use crate::secret::{Secret, SecretSet};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use std::cell::RefCell;
use std::fmt;
use subtle::ConstantTimeEq;

macro_rules! hmac_fn {
    ($name:ident, $hash:ty, $len:expr, $doc:literal) => {
        #[doc = $doc]
        pub fn $name(key: &[u8], parts: &[&[u8]]) -> [u8; $len] {
            // `new_from_slice` accepts keys of any length for HMAC; it cannot fail.
            let mut mac = Hmac::<$hash>::new_from_slice(key).expect("HMAC takes keys of any length");
            for part in parts {
                mac.update(part);
            }
            mac.finalize().into_bytes().into()
        }
    };
}

hmac_fn!(hmac_sha256, Sha256, 32, "HMAC-SHA256 of the concatenation of `parts`, keyed with `key`.");
hmac_fn!(hmac_sha1, Sha1, 20, "HMAC-SHA1 of the concatenation of `parts` (Twilio, Intercom, Vercel).");
hmac_fn!(hmac_sha512, Sha512, 64, "HMAC-SHA512 of the concatenation of `parts` (generic sources).");

/// The hash functions HMAC schemes are built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashFn {
    Sha1,
    Sha256,
    Sha512,
}

impl HashFn {
    /// The hash a `generic` source's `algorithm` names.
    pub fn parse(name: &str) -> Option<HashFn> {
        match name {
            "sha256" => Some(HashFn::Sha256),
            "sha1" => Some(HashFn::Sha1),
            "sha512" => Some(HashFn::Sha512),
            _ => None,
        }
    }

    /// The name Web Crypto knows it by.
    pub fn web_crypto_name(self) -> &'static str {
        match self {
            HashFn::Sha1 => "SHA-1",
            HashFn::Sha256 => "SHA-256",
            HashFn::Sha512 => "SHA-512",
        }
    }

    /// Whether this build computes this hash's HMAC itself: all of them natively; the worker
    /// ([`NATIVE_SHA512`] off) leaves SHA-512 to Web Crypto.
    pub fn native(self) -> bool {
        self != HashFn::Sha512 || NATIVE_SHA512
    }

    /// HMAC of the concatenation of `parts` under `key`, computed here, or `None` in a build
    /// without this hash ([`HashFn::native`]).
    pub fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Option<Vec<u8>> {
        match self {
            HashFn::Sha1 => Some(hmac_sha1(key, parts).to_vec()),
            HashFn::Sha256 => Some(hmac_sha256(key, parts).to_vec()),
            #[cfg(feature = "native-sha512")]
            HashFn::Sha512 => Some(hmac_sha512(key, parts).to_vec()),
            #[cfg(not(feature = "native-sha512"))]
            HashFn::Sha512 => None,
        }
    }
}

/// The public-key signature schemes providers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// Ed25519 (RFC 8032): Discord, Standard Webhooks `v1a`. Keys are the 32 bytes of the point;
    /// signatures 64 bytes.
    Ed25519,
    /// ECDSA over P-256 with SHA-256: SendGrid. Keys are DER `SubjectPublicKeyInfo`; signatures
    /// the 64 bytes of `r` and `s` ([`ecdsa_der_to_raw`] converts the DER form providers send).
    EcdsaP256,
}

/// Whether this build checks public-key signatures in Rust. The worker is built without
/// (`native-curves` off): Web Crypto checks them there, and a check it could not make is an
/// error, not a mismatch.
pub const NATIVE_CURVES: bool = cfg!(feature = "native-curves");

/// Whether this build computes HMAC-SHA512 in Rust. The worker is built without (`native-sha512`
/// off): Web Crypto computes it there for every body, and an HMAC it could not compute is an
/// error, not a mismatch, as for the curves.
pub const NATIVE_SHA512: bool = cfg!(feature = "native-sha512");

/// Where verification gets its HMACs and public-key checks from. Verifiers are synchronous core
/// code, but inside the wasm runtime Web Crypto (native code, asynchronous) is several times
/// faster than Rust's HMAC for large messages, and the only public-key code the worker has; so
/// the worker runs a verification twice: once with [`RecordMacs`], which only notes what was
/// asked for, then, once Web Crypto has computed it, with [`KnownMacs`].
pub trait Macs: fmt::Debug {
    /// The HMAC of the concatenation of `parts` under `key`, or `None` when it is not known (yet):
    /// an unknown MAC matches no signature.
    fn hmac(&self, hash: HashFn, key: &[u8], parts: &[&[u8]]) -> Option<Vec<u8>>;

    /// Whether `signature` is `key`'s signature of the concatenation of `parts`, or `None` when
    /// that is not known (yet): an unknown answer verifies nothing.
    fn check(&self, algorithm: KeyAlgorithm, key: &[u8], signature: &[u8], parts: &[&[u8]]) -> Option<bool>;

    /// Told which of the MACs it answered verified the request, and over what (see
    /// [`Sealing`]); nothing by default.
    fn matched(&self, _mac: &[u8], _parts: &[&[u8]]) {}
}

/// What identifies a verified request's signature in its seal (`ingest::seal_of`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealBy {
    /// The MAC that verified it: a keyed digest of everything it signs, body included, with no
    /// second pass over the body. The request carries one signature, so no one without a key
    /// can make another match.
    Mac,
    /// What was signed, whichever configured key signed it: for a short signed message that
    /// one request may carry signatures of by two configured keys (Mailgun's `signature` and
    /// `parent-signature`), either of which could be made to match.
    Message,
}

/// HMACs from another source, noting what verified the request: where its seal comes from
/// (`ingest`: a signature verifies one event id, and no other).
#[derive(Debug)]
pub struct Sealing<'m> {
    inner: &'m dyn Macs,
    by: Option<SealBy>,
    matched: RefCell<Option<Vec<u8>>>,
}

impl<'m> Sealing<'m> {
    /// Passes `inner`'s HMACs through; with `by`, keeps what identifies the signature that
    /// verified the request.
    pub fn new(inner: &'m dyn Macs, by: Option<SealBy>) -> Self {
        Sealing { inner, by, matched: RefCell::default() }
    }

    /// What identifies the signature that verified the request, if one did (the last, if
    /// several were asked).
    pub fn into_matched(self) -> Option<Vec<u8>> {
        self.matched.into_inner()
    }
}

impl Macs for Sealing<'_> {
    fn hmac(&self, hash: HashFn, key: &[u8], parts: &[&[u8]]) -> Option<Vec<u8>> {
        self.inner.hmac(hash, key, parts)
    }

    fn check(&self, algorithm: KeyAlgorithm, key: &[u8], signature: &[u8], parts: &[&[u8]]) -> Option<bool> {
        self.inner.check(algorithm, key, signature, parts)
    }

    fn matched(&self, mac: &[u8], parts: &[&[u8]]) {
        let identity = match self.by {
            None => return,
            Some(SealBy::Mac) => mac.to_vec(),
            Some(SealBy::Message) => {
                use sha2::Digest;
                // The parts run together, as the MAC covers them: the same bytes cut elsewhere
                // are the same signed message.
                let mut hash = Sha256::new();
                for part in parts {
                    hash.update(part);
                }
                hash.finalize().to_vec()
            }
        };
        *self.matched.borrow_mut() = Some(identity);
    }
}

/// HMACs computed here, in Rust: natively, and in the worker for small messages; public-key
/// checks too where the build has them ([`NATIVE_CURVES`]).
#[derive(Debug)]
pub struct NativeMacs;

impl Macs for NativeMacs {
    fn hmac(&self, hash: HashFn, key: &[u8], parts: &[&[u8]]) -> Option<Vec<u8>> {
        hash.hmac(key, parts)
    }

    fn check(&self, algorithm: KeyAlgorithm, key: &[u8], signature: &[u8], parts: &[&[u8]]) -> Option<bool> {
        check_here(algorithm, key, signature, parts)
    }
}

/// A public-key check made in Rust, or `None` in a build without the curves.
///
/// Ed25519 is checked as Web Crypto (BoringSSL) checks it, so that the worker and native code
/// agree: `s` must be canonical, and the equation is checked without the cofactor; unlike
/// `verify_strict`, small-order keys and `R` are not refused (a configured key is the provider's
/// own, and neither lets anyone without its private half sign).
#[cfg(feature = "native-curves")]
pub fn check_here(algorithm: KeyAlgorithm, key: &[u8], signature: &[u8], parts: &[&[u8]]) -> Option<bool> {
    let message = parts.concat();
    Some(match algorithm {
        KeyAlgorithm::Ed25519 => {
            use ed25519_dalek::Verifier;
            let (Ok(key), Ok(signature)) = (<[u8; 32]>::try_from(key), ed25519_dalek::Signature::from_slice(signature))
            else {
                return Some(false);
            };
            ed25519_dalek::VerifyingKey::from_bytes(&key).is_ok_and(|key| key.verify(&message, &signature).is_ok())
        }
        KeyAlgorithm::EcdsaP256 => {
            use p256::ecdsa::signature::Verifier;
            let Some(point) = key.strip_prefix(P256_SPKI_PREFIX.as_slice()) else {
                return Some(false);
            };
            let (Ok(key), Ok(signature)) =
                (p256::ecdsa::VerifyingKey::from_sec1_bytes(point), p256::ecdsa::Signature::from_slice(signature))
            else {
                return Some(false);
            };
            key.verify(&message, &signature).is_ok()
        }
    })
}

/// A public-key check made in Rust, or `None` in a build without the curves.
#[cfg(not(feature = "native-curves"))]
pub fn check_here(_: KeyAlgorithm, _: &[u8], _: &[u8], _: &[&[u8]]) -> Option<bool> {
    None
}

/// The DER `SubjectPublicKeyInfo` of a P-256 key up to its point: the `id-ecPublicKey` and
/// `prime256v1` object identifiers, then a bit string of 66 bytes holding `04`, x and y (the
/// uncompressed form, which SendGrid publishes and `openssl pkey -pubout` writes).
pub const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The 64 bytes of `r` and `s` (each big-endian, 32 bytes) of an ECDSA P-256 signature in DER
/// (`SEQUENCE { INTEGER r, INTEGER s }`), the form SendGrid sends; Web Crypto takes the raw
/// form. Strict DER: minimal lengths and integers, nothing after; `None` for anything else.
/// Whether `r` and `s` are in range is the check's business.
pub fn ecdsa_der_to_raw(der: &[u8]) -> Option<[u8; 64]> {
    // SEQUENCE, its length in one byte (at most 70 here, so the short form is the only DER).
    let [0x30, length, rest @ ..] = der else { return None };
    if usize::from(*length) != rest.len() {
        return None;
    }
    let mut raw = [0u8; 64];
    let rest = der_integer(rest, &mut raw[..32])?;
    let rest = der_integer(rest, &mut raw[32..])?;
    rest.is_empty().then_some(raw)
}

/// Reads one DER INTEGER, non-negative and of at most 32 bytes of value, into `out`
/// (right-aligned); returns what follows it.
fn der_integer<'a>(der: &'a [u8], out: &mut [u8]) -> Option<&'a [u8]> {
    let [0x02, length, rest @ ..] = der else { return None };
    let length = usize::from(*length);
    if length == 0 || length > rest.len() {
        return None;
    }
    let (value, rest) = rest.split_at(length);
    // Negative, or a leading zero that is not needed to keep the value positive: not DER.
    if value[0] & 0x80 != 0 || (value.len() > 1 && value[0] == 0 && value[1] & 0x80 == 0) {
        return None;
    }
    let value = if value.len() > 1 && value[0] == 0 { &value[1..] } else { value };
    if value.len() > out.len() {
        return None;
    }
    let start = out.len() - value.len();
    out[start..].copy_from_slice(value);
    Some(rest)
}

/// A piece of a message to MAC: the request's body (by far the largest, and never copied), or a
/// few other bytes (a timestamp, a separator, an id).
#[derive(Clone, PartialEq, Eq)]
pub enum Part {
    Body,
    Bytes(Vec<u8>),
}

/// One HMAC a verification needs: the concatenation of its parts under its key.
#[derive(Clone, PartialEq, Eq)]
pub struct MacRequest {
    pub hash: HashFn,
    pub key: Vec<u8>,
    pub parts: Vec<Part>,
}

/// One public-key check a verification needs: whether `signature` is `key`'s signature of the
/// concatenation of `parts`.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyCheck {
    pub algorithm: KeyAlgorithm,
    pub key: Vec<u8>,
    pub signature: Vec<u8>,
    pub parts: Vec<Part>,
}

impl fmt::Debug for KeyCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyCheck({:?}, {} parts)", self.algorithm, self.parts.len())
    }
}

impl KeyCheck {
    /// The message's pieces, with the body's bytes in place of [`Part::Body`].
    pub fn pieces<'a>(&'a self, body: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        pieces(&self.parts, body)
    }

    /// Made here, in Rust; `None` in a build without the curves.
    pub fn check_here(&self, body: &[u8]) -> Option<bool> {
        check_here(self.algorithm, &self.key, &self.signature, &self.pieces(body).collect::<Vec<_>>())
    }

    fn is(&self, algorithm: KeyAlgorithm, key: &[u8], signature: &[u8], parts: &[&[u8]], body: &[u8]) -> bool {
        self.algorithm == algorithm
            && self.key == key
            && self.signature == signature
            && same_parts(&self.parts, parts, body)
    }
}

/// What a verification asked for, noted by [`RecordMacs`], to be computed elsewhere.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needed {
    pub macs: Vec<MacRequest>,
    pub checks: Vec<KeyCheck>,
}

impl Needed {
    pub fn is_empty(&self) -> bool {
        self.macs.is_empty() && self.checks.is_empty()
    }

    /// How many of these this build cannot compute itself (public-key checks without the
    /// curves, HMAC-SHA512 without `native-sha512`): left unanswered by Web Crypto, they might
    /// have verified the request.
    pub fn not_computable_here(&self) -> usize {
        let checks = if NATIVE_CURVES { 0 } else { self.checks.len() };
        checks + self.macs.iter().filter(|mac| !mac.hash.native()).count()
    }

    /// Everything computed here, in Rust, as Web Crypto would: for tests and benchmarks (a
    /// check a build without the curves cannot make answers `false`; an HMAC it cannot compute
    /// is left out).
    pub fn answer_here(self, body: &[u8]) -> Answers {
        Answers {
            macs: self
                .macs
                .into_iter()
                .filter_map(|request| {
                    let mac = request.compute(body)?;
                    Some((request, mac))
                })
                .collect(),
            checks: self
                .checks
                .into_iter()
                .map(|check| {
                    let valid = check.check_here(body).unwrap_or(false);
                    (check, valid)
                })
                .collect(),
        }
    }
}

/// What was computed elsewhere for a [`Needed`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answers {
    pub macs: Vec<(MacRequest, Vec<u8>)>,
    pub checks: Vec<(KeyCheck, bool)>,
}

/// The pieces of a message made of `parts`, with the body's bytes in place of [`Part::Body`].
pub fn pieces<'a>(parts: &'a [Part], body: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    parts.iter().map(move |part| match part {
        Part::Body => body,
        Part::Bytes(bytes) => bytes.as_slice(),
    })
}

/// Whether `recorded` are `parts`, `body` being the request's body, recognised by address (it is
/// borrowed, unchanged, by both passes), so it is never compared byte by byte; everything else is.
fn same_parts(recorded: &[Part], parts: &[&[u8]], body: &[u8]) -> bool {
    recorded.len() == parts.len()
        && recorded.iter().zip(parts).all(|(recorded, part)| match recorded {
            Part::Body => is_body(part, body),
            Part::Bytes(bytes) => !is_body(part, body) && bytes.as_slice() == *part,
        })
}

/// `parts` to note, the body named rather than copied.
fn record_parts(parts: &[&[u8]], body: &[u8]) -> Vec<Part> {
    parts.iter().map(|part| if is_body(part, body) { Part::Body } else { Part::Bytes(part.to_vec()) }).collect()
}

impl fmt::Debug for MacRequest {
    // The key is a secret: never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacRequest({:?}, {} parts)", self.hash, self.parts.len())
    }
}

/// Whether `part` is the body itself (the same bytes in memory, not merely equal ones).
fn is_body(part: &[u8], body: &[u8]) -> bool {
    !body.is_empty() && std::ptr::eq(part, body)
}

impl MacRequest {
    /// The message's pieces, with the body's bytes in place of [`Part::Body`].
    pub fn pieces<'a>(&'a self, body: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        pieces(&self.parts, body)
    }

    /// Computed here, in Rust, or `None` in a build without its hash ([`HashFn::native`]).
    pub fn compute(&self, body: &[u8]) -> Option<Vec<u8>> {
        self.hash.hmac(&self.key, &self.pieces(body).collect::<Vec<_>>())
    }

    /// Whether this is the HMAC of `parts` with `hash` under `key`, `body` being the request's
    /// body. The body is recognised by address (it is borrowed, unchanged, by both passes), so
    /// it is never compared byte by byte; everything else is.
    fn is(&self, hash: HashFn, key: &[u8], parts: &[&[u8]], body: &[u8]) -> bool {
        self.hash == hash && self.key == key && same_parts(&self.parts, parts, body)
    }
}

/// Answers no HMAC and no check, and notes every one asked for. A verification run with it
/// always fails (nothing matches): it is run only to learn what the real one will need. Its
/// result must be thrown away.
#[derive(Debug)]
pub struct RecordMacs<'b> {
    body: &'b [u8],
    needed: RefCell<Needed>,
}

impl<'b> RecordMacs<'b> {
    /// For the verification of a request with this body.
    pub fn new(body: &'b [u8]) -> Self {
        RecordMacs { body, needed: RefCell::default() }
    }

    pub fn into_needed(self) -> Needed {
        self.needed.into_inner()
    }
}

impl Macs for RecordMacs<'_> {
    fn hmac(&self, hash: HashFn, key: &[u8], parts: &[&[u8]]) -> Option<Vec<u8>> {
        let requests = &mut self.needed.borrow_mut().macs;
        if !requests.iter().any(|r| r.is(hash, key, parts, self.body)) {
            requests.push(MacRequest { hash, key: key.to_vec(), parts: record_parts(parts, self.body) });
        }
        None
    }

    fn check(&self, algorithm: KeyAlgorithm, key: &[u8], signature: &[u8], parts: &[&[u8]]) -> Option<bool> {
        let checks = &mut self.needed.borrow_mut().checks;
        if !checks.iter().any(|c| c.is(algorithm, key, signature, parts, self.body)) {
            let parts = record_parts(parts, self.body);
            checks.push(KeyCheck { algorithm, key: key.to_vec(), signature: signature.to_vec(), parts });
        }
        None
    }
}

/// HMACs and checks computed elsewhere (by Web Crypto) for what [`RecordMacs`] noted. A request
/// is answered only when its algorithm, key and parts (and signature, for a check) are those of
/// a computed one; anything else is computed here, so a verification run with it gives exactly
/// the answer of [`NativeMacs`], whatever was computed (in a build without the curves, a check
/// not computed elsewhere verifies nothing).
#[derive(Debug)]
pub struct KnownMacs<'b> {
    body: &'b [u8],
    computed: Answers,
}

impl<'b> KnownMacs<'b> {
    /// For the verification of a request with this body (the same bytes the requests were
    /// recorded with).
    pub fn new(body: &'b [u8], computed: Answers) -> Self {
        KnownMacs { body, computed }
    }
}

impl Macs for KnownMacs<'_> {
    fn hmac(&self, hash: HashFn, key: &[u8], parts: &[&[u8]]) -> Option<Vec<u8>> {
        match self.computed.macs.iter().find(|(request, _)| request.is(hash, key, parts, self.body)) {
            Some((_, mac)) => Some(mac.clone()),
            None => hash.hmac(key, parts),
        }
    }

    fn check(&self, algorithm: KeyAlgorithm, key: &[u8], signature: &[u8], parts: &[&[u8]]) -> Option<bool> {
        match self.computed.checks.iter().find(|(check, _)| check.is(algorithm, key, signature, parts, self.body)) {
            Some((_, valid)) => Some(*valid),
            None => check_here(algorithm, key, signature, parts),
        }
    }
}

/// The first HMAC key of `secrets` whose MAC of `parts` (from `macs`) equals one of
/// `candidates`, each compared in constant time after a length check. Every key is tried:
/// rotation.
pub fn first_hmac_match<'s>(
    secrets: &'s SecretSet,
    macs: &dyn Macs,
    hash: HashFn,
    candidates: &[impl AsRef<[u8]>],
    parts: &[&[u8]],
) -> Option<&'s Secret> {
    secrets.iter().find(|secret| {
        let Some(expected) = secret.hmac_key().and_then(|key| macs.hmac(hash, key, parts)) else {
            return false;
        };
        let found = candidates.iter().any(|c| matches(&expected, c.as_ref()));
        if found {
            macs.matched(&expected, parts);
        }
        found
    })
}

/// The first public key of `secrets` for `algorithm` of which one of `signatures` (at most a
/// few: each is a full check) is a signature of `parts`, as `macs` answers. Every key is tried:
/// rotation.
pub fn first_key_match<'s>(
    secrets: &'s SecretSet,
    macs: &dyn Macs,
    algorithm: KeyAlgorithm,
    signatures: &[impl AsRef<[u8]>],
    parts: &[&[u8]],
) -> Option<&'s Secret> {
    secrets.iter().find(|secret| {
        secret.public_key(algorithm).is_some_and(|key| {
            signatures.iter().any(|signature| macs.check(algorithm, key, signature.as_ref(), parts) == Some(true))
        })
    })
}

/// SHA-256 of `bytes` in lower-case hex: the event id of providers that send none.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    to_hex(&Sha256::digest(bytes))
}

/// Compares a computed MAC with a candidate taken from a request, in time that does not depend
/// on where they differ. A length mismatch is rejected first: lengths are public (the scheme
/// fixes them), contents are not.
pub fn matches(expected: &[u8], candidate: &[u8]) -> bool {
    expected.len() == candidate.len() && bool::from(expected.ct_eq(candidate))
}

/// Compares a presented bearer token with the configured one without revealing, through timing,
/// how much of it matched or how long it is: both are hashed first, then compared in constant
/// time. An empty configured token matches nothing.
pub fn token_matches(presented: &str, configured: &str) -> bool {
    token_matches_bytes(presented.as_bytes(), configured.as_bytes())
}

/// [`token_matches`] on bytes.
pub fn token_matches_bytes(presented: &[u8], configured: &[u8]) -> bool {
    use sha2::Digest;
    !configured.is_empty() && bool::from(Sha256::digest(presented).ct_eq(&Sha256::digest(configured)))
}

/// Parses a Unix timestamp in seconds: ASCII digits only (no sign, no spaces, no `+`), at most
/// 12 of them (year 33658), so that a hostile value can never overflow the arithmetic.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    parse_digits(text, 12)
}

/// Parses a Unix timestamp in milliseconds, as strictly: digits only, at most 15 of them.
pub fn parse_timestamp_ms(text: &str) -> Option<i64> {
    parse_digits(text, 15)
}

fn parse_digits(text: &str, max_digits: usize) -> Option<i64> {
    if text.is_empty() || text.len() > max_digits || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Accepts a signed timestamp within `tolerance_secs` of `now`, in either direction: an old one is
/// a replay, and a future one is a replay prepared in advance (or a clock far off).
pub fn check_tolerance(timestamp: i64, now: i64, tolerance_secs: u64) -> Result<(), Rejection> {
    if timestamp.abs_diff(now) > tolerance_secs {
        return Err(Rejection::TimestampOutOfTolerance);
    }
    Ok(())
}

/// Lower-case hex of a MAC, for schemes that send hex.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

/// Decodes hex of exactly `N` bytes (either case); anything else is `None`.
pub fn from_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let bytes = text.as_bytes();
    if bytes.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = hex_byte(pair[0], pair[1])?;
    }
    Some(out)
}

/// The byte two hex digits (either case) spell, or `None` when either is not a hex digit.
pub fn hex_byte(high: u8, low: u8) -> Option<u8> {
    let (high, low) = (HEX[usize::from(high)], HEX[usize::from(low)]);
    ((high | low) <= 0xf).then_some(high << 4 | low)
}

/// Each byte's value as a hex digit, or 0xff: one load per digit, where form decoding meets
/// thousands of escapes (`twilio`).
const HEX: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 16 {
        table[b"0123456789abcdef"[i] as usize] = i as u8;
        table[b"0123456789ABCDEF"[i] as usize] = i as u8;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(to_hex(&mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn recorded_requests_name_the_body_and_copy_the_rest_once_each() {
        let body = b"the body".to_vec();
        let equal_copy = body.clone();
        let record = RecordMacs::new(&body);
        assert_eq!(record.hmac(HashFn::Sha256, b"k", &[b"t=1.", &body]), None);
        assert_eq!(record.hmac(HashFn::Sha256, b"k", &[b"t=1.", &body]), None);
        assert_eq!(record.hmac(HashFn::Sha256, b"k", &[b"t=1.", &equal_copy]), None);
        assert_eq!(record.hmac(HashFn::Sha1, b"k", &[&body]), None);
        let requests = record.into_needed().macs;
        assert_eq!(requests.len(), 3, "the same request is noted once");
        assert!(requests[0].parts == [Part::Bytes(b"t=1.".to_vec()), Part::Body]);
        assert!(
            requests[1].parts == [Part::Bytes(b"t=1.".to_vec()), Part::Bytes(body.clone())],
            "equal is not the body"
        );
        assert_eq!(requests[0].pieces(&body).collect::<Vec<_>>(), [&b"t=1."[..], &body[..]]);
        assert_eq!(requests[0].compute(&body), Some(hmac_sha256(b"k", &[b"t=1.", &body]).to_vec()));
        assert_eq!(format!("{:?}", requests[0]), "MacRequest(Sha256, 2 parts)", "the key is not printed");
    }

    #[test]
    fn known_macs_answer_only_the_exact_request() {
        let body = b"the body".to_vec();
        let other = b"the body".to_vec();
        let request = MacRequest {
            hash: HashFn::Sha256,
            key: b"k".to_vec(),
            parts: vec![Part::Bytes(b"t.".to_vec()), Part::Body],
        };
        let known = KnownMacs::new(&body, Answers { macs: vec![(request, vec![7; 32])], checks: vec![] });
        assert_eq!(known.hmac(HashFn::Sha256, b"k", &[b"t.", &body]), Some(vec![7; 32]));
        // Anything else is computed here: another part, key, hash, or equal bytes elsewhere.
        for (hash, key, parts) in [
            (HashFn::Sha256, &b"k"[..], &[&b"u."[..], &body[..]][..]),
            (HashFn::Sha256, b"K", &[b"t.", &body]),
            (HashFn::Sha1, b"k", &[b"t.", &body]),
            (HashFn::Sha256, b"k", &[b"t.", &other]),
            (HashFn::Sha256, b"k", &[b"t.", &body[..4]]),
            (HashFn::Sha256, b"k", &[b"t.", &body, b""]),
        ] {
            assert_eq!(known.hmac(hash, key, parts), hash.hmac(key, parts), "{hash:?} {parts:?}");
        }
    }

    #[test]
    fn key_checks_are_noted_once_and_answered_only_for_the_exact_check() {
        let body = b"the body".to_vec();
        let other = b"the body".to_vec();
        let record = RecordMacs::new(&body);
        let ed = KeyAlgorithm::Ed25519;
        assert_eq!(record.check(ed, b"key", b"sig", &[b"t", &body]), None);
        assert_eq!(record.check(ed, b"key", b"sig", &[b"t", &body]), None);
        assert_eq!(record.check(ed, b"key", b"SIG", &[b"t", &body]), None);
        assert_eq!(record.check(ed, b"key", b"sig", &[b"t", &other]), None);
        let needed = record.into_needed();
        assert!(needed.macs.is_empty());
        assert_eq!(needed.checks.len(), 3, "the same check is noted once");
        assert!(needed.checks[0].parts == [Part::Bytes(b"t".to_vec()), Part::Body]);
        assert!(needed.checks[2].parts == [Part::Bytes(b"t".to_vec()), Part::Bytes(other.clone())]);
        assert_eq!(format!("{:?}", needed.checks[0]), "KeyCheck(Ed25519, 2 parts)");

        // Web Crypto's answer (true, whatever Rust would say) is used for exactly that check.
        let answered = Answers { macs: vec![], checks: vec![(needed.checks[0].clone(), true)] };
        let known = KnownMacs::new(&body, answered);
        assert_eq!(known.check(ed, b"key", b"sig", &[b"t", &body]), Some(true));
        for (algorithm, key, signature, parts) in [
            (KeyAlgorithm::EcdsaP256, &b"key"[..], &b"sig"[..], &[&b"t"[..], &body[..]][..]),
            (ed, b"KEY", b"sig", &[b"t", &body]),
            (ed, b"key", b"SIG", &[b"t", &body]),
            (ed, b"key", b"sig", &[b"u", &body]),
            (ed, b"key", b"sig", &[b"t", &other]),
            (ed, b"key", b"sig", &[b"t", &body, b""]),
        ] {
            // Anything else is checked here: no key of this test is valid, so never `true`.
            let expected = NATIVE_CURVES.then_some(false);
            assert_eq!(known.check(algorithm, key, signature, parts), expected, "{algorithm:?} {parts:?}");
        }
    }

    #[test]
    fn ecdsa_signatures_are_read_from_strict_der() {
        let der = |r: &[u8], s: &[u8]| {
            let mut out = vec![0x30, (r.len() + s.len() + 4) as u8, 0x02, r.len() as u8];
            out.extend_from_slice(r);
            out.extend_from_slice(&[0x02, s.len() as u8]);
            out.extend_from_slice(s);
            out
        };
        let mut expected = [0u8; 64];
        expected[31] = 1;
        expected[32..].copy_from_slice(&[0xff; 32]);
        let mut s = vec![0x00];
        s.extend_from_slice(&[0xff; 32]);
        assert_eq!(ecdsa_der_to_raw(&der(&[1], &s)), Some(expected));
        for (bad, why) in [
            (der(&[0x00, 0x01], &s), "a needless leading zero"),
            (der(&[0x80], &s), "negative"),
            (der(&[], &s), "an empty integer"),
            (der(&[1], &[0xff; 32]), "negative s"),
            (der(&[1; 33], &s), "33 bytes of value"),
            ([der(&[1], &s), vec![0]].concat(), "a byte after"),
            (der(&[1], &s)[..39].to_vec(), "cut short"),
            ([&[0x30, 0x81, 0x26][..], &der(&[1], &s)[2..]].concat(), "a long-form length"),
            (vec![0x31, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01], "not a sequence"),
        ] {
            assert_eq!(ecdsa_der_to_raw(&bad), None, "{why}");
        }
    }

    /// Where Rust's curves and Web Crypto's could part ways, the native check takes Web Crypto's
    /// side (the worker is held to the same cases in `public_keys_are_checked_by_web_crypto`):
    /// an Ed25519 `s` not reduced (s + L) is refused; an ECDSA signature with `n - s` in place
    /// of `s` is as valid.
    #[cfg(feature = "native-curves")]
    #[test]
    fn native_checks_answer_as_web_crypto_does() {
        use ed25519_dalek::Signer;
        let message: &[&[u8]] = &[b"1700000000", b"{\"id\":1}"];
        let signing = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let key = signing.verifying_key().to_bytes();
        let signature = signing.sign(&message.concat()).to_bytes();
        assert_eq!(check_here(KeyAlgorithm::Ed25519, &key, &signature, message), Some(true));
        // L, little-endian.
        let order: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut unreduced = signature;
        let mut carry = 0u16;
        for (byte, l) in unreduced[32..].iter_mut().zip(order) {
            let sum = u16::from(*byte) + u16::from(l) + carry;
            (*byte, carry) = (sum as u8, sum >> 8);
        }
        assert_eq!(check_here(KeyAlgorithm::Ed25519, &key, &unreduced, message), Some(false), "s + L");

        use p256::pkcs8::EncodePublicKey;
        let signing = p256::ecdsa::SigningKey::from_slice(&[9; 32]).unwrap();
        let key = signing.verifying_key().to_public_key_der().unwrap().as_bytes().to_vec();
        let signature: p256::ecdsa::Signature = signing.sign(&message.concat());
        let flipped = p256::ecdsa::Signature::from_scalars(signature.r(), -*signature.s()).unwrap();
        for signature in [signature, flipped] {
            let raw = signature.to_bytes();
            assert_eq!(check_here(KeyAlgorithm::EcdsaP256, &key, &raw, message), Some(true), "{raw:02x?}");
        }
    }

    #[cfg(feature = "native-curves")]
    proptest::proptest! {
        /// What p256 reads from DER, this reads alike; what only this reads has an `r` or `s` out
        /// of range (zero, or the order or more), which the check refuses.
        #[test]
        fn ecdsa_der_reads_as_p256_does(
            seed in proptest::array::uniform32(1u8..),
            message in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            flips in proptest::collection::vec((0usize..80, proptest::num::u8::ANY), 0..3),
            cut in proptest::option::of(0usize..80),
        ) {
            use p256::ecdsa::signature::Signer;
            let Ok(signing) = p256::ecdsa::SigningKey::from_slice(&seed) else { return Ok(()) };
            let signature: p256::ecdsa::Signature = signing.sign(&message);
            let der = signature.to_der().as_bytes().to_vec();
            proptest::prop_assert_eq!(ecdsa_der_to_raw(&der).map(|raw| raw.to_vec()), Some(signature.to_bytes().to_vec()));
            let mut mangled = der.clone();
            for (at, byte) in flips {
                if let Some(b) = mangled.get_mut(at) {
                    *b = byte;
                }
            }
            if let Some(cut) = cut {
                mangled.truncate(cut.max(1));
            }
            let theirs = p256::ecdsa::Signature::from_der(&mangled);
            match (ecdsa_der_to_raw(&mangled), theirs) {
                (Some(ours), Ok(theirs)) => proptest::prop_assert_eq!(ours.to_vec(), theirs.to_bytes().to_vec()),
                (None, Ok(_)) => proptest::prop_assert!(false, "p256 reads {:?}", mangled),
                (Some(ours), Err(_)) => proptest::prop_assert!(p256::ecdsa::Signature::from_slice(&ours).is_err(), "{:?}", mangled),
                (None, Err(_)) => {}
            }
        }
    }

    #[test]
    fn comparison_rejects_other_lengths_and_contents() {
        assert!(matches(b"abc", b"abc"));
        assert!(!matches(b"abc", b"abd"));
        assert!(!matches(b"abc", b"ab"));
        assert!(!matches(b"abc", b""));
    }

    #[test]
    fn bearer_tokens() {
        assert!(token_matches("s3cret", "s3cret"));
        assert!(!token_matches("s3cre", "s3cret"));
        assert!(!token_matches("s3cret ", "s3cret"));
        assert!(!token_matches("", ""));
    }

    #[test]
    fn timestamps_are_digits_only() {
        assert_eq!(parse_timestamp("1614265330"), Some(1614265330));
        for bad in ["", " 1", "1 ", "+1", "-1", "1e9", "0x10", "1234567890123", "１"] {
            assert_eq!(parse_timestamp(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn millisecond_timestamps() {
        assert_eq!(parse_timestamp_ms("1693657560000"), Some(1_693_657_560_000));
        assert_eq!(parse_timestamp("1693657560000"), None);
        assert_eq!(parse_timestamp_ms("1234567890123456"), None);
        assert_eq!(parse_timestamp_ms("-1"), None);
    }

    #[test]
    fn tolerance_is_symmetric_and_inclusive() {
        assert!(check_tolerance(1000, 1300, 300).is_ok());
        assert!(check_tolerance(1600, 1300, 300).is_ok());
        assert_eq!(check_tolerance(999, 1300, 300), Err(Rejection::TimestampOutOfTolerance));
        assert_eq!(check_tolerance(1601, 1300, 300), Err(Rejection::TimestampOutOfTolerance));
    }

    #[test]
    fn hex_round_trips_and_rejects_junk() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(from_hex::<4>(&to_hex(&bytes)), Some(bytes));
        assert_eq!(from_hex::<4>("0001ABFF"), Some(bytes));
        assert_eq!(from_hex::<4>("0001abf"), None);
        assert_eq!(from_hex::<4>("0001abfg"), None);
        assert_eq!(from_hex::<4>("+001abff"), None);
    }
}
