//! Compact JWS, strictly: the only code that turns token bytes into JSON.
//!
//! Before any signature check: a size cap (8 KiB), exactly three segments, canonical
//! unpadded base64url (RFC 7515 §2: padding, `+`/`/` and non-zero trailing bits are
//! refused, where PyJWT accepts them), a JSON object header with no duplicate keys, the
//! configured `alg` only (never `none`, no HS/RS confusion), no `crit`, and a `kid` that
//! names a known key when keys have ids. Then the signature; only then the payload, also
//! a duplicate-free JSON object (RFC 7519 §4: "MUST reject or use the last" — we reject).
//!
//! Encoding writes exactly what PyJWT writes: sorted header keys, compact separators, the
//! payload in insertion order, so tokens are byte-identical to simplejwt's for the same
//! claims.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use std::fmt;

/// Longest token accepted; anything longer is refused before it is parsed.
pub const MAX_TOKEN_BYTES: usize = 8192;

/// Why a token was refused (the caller maps every case to simplejwt's "Token is invalid").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    TooLong,
    Malformed(&'static str),
    Algorithm,
    Crit,
    UnknownKid,
    Signature,
}

/// A verification key and the `kid` it answers to.
pub struct VerifyKey {
    pub kid: Option<String>,
    pub key: DecodingKey,
    /// For HS*: the MAC already keyed, cloned per token instead of re-keyed (the inner and
    /// outer key blocks are hashed once, at startup).
    pub hmac: Option<Prekeyed>,
}

impl VerifyKey {
    /// An HMAC secret for `alg` (HS256, HS384 or HS512), without a `kid`.
    pub fn secret(secret: &[u8], alg: Algorithm) -> VerifyKey {
        VerifyKey {
            kid: None,
            key: DecodingKey::from_secret(secret),
            hmac: Prekeyed::new(secret, alg),
        }
    }

    /// A public key.
    pub fn public(kid: Option<String>, key: DecodingKey) -> VerifyKey {
        VerifyKey {
            kid,
            key,
            hmac: None,
        }
    }
}

/// A keyed HMAC state for one of the HS algorithms.
#[derive(Clone)]
pub enum Prekeyed {
    S256(hmac::Hmac<sha2::Sha256>),
    S384(hmac::Hmac<sha2::Sha384>),
    S512(hmac::Hmac<sha2::Sha512>),
}

impl Prekeyed {
    fn new(secret: &[u8], alg: Algorithm) -> Option<Prekeyed> {
        use hmac::Mac;
        match alg {
            Algorithm::HS256 => hmac::Hmac::new_from_slice(secret).ok().map(Prekeyed::S256),
            Algorithm::HS384 => hmac::Hmac::new_from_slice(secret).ok().map(Prekeyed::S384),
            Algorithm::HS512 => hmac::Hmac::new_from_slice(secret).ok().map(Prekeyed::S512),
            _ => None,
        }
    }

    /// Whether `signature` (base64url, strictly: as jsonwebtoken decodes it) is the MAC of
    /// `message`; compared in constant time.
    fn verify(&self, signature: &str, message: &[u8]) -> bool {
        use hmac::Mac;
        // The largest HS signature is 64 bytes; room for the decoder's length estimate.
        let mut buf = [0u8; 128];
        let Ok(n) = URL_SAFE_NO_PAD.decode_slice(signature, &mut buf) else {
            return false;
        };
        let sig = &buf[..n];
        match self {
            Prekeyed::S256(m) => m.clone().chain_update(message).verify_slice(sig).is_ok(),
            Prekeyed::S384(m) => m.clone().chain_update(message).verify_slice(sig).is_ok(),
            Prekeyed::S512(m) => m.clone().chain_update(message).verify_slice(sig).is_ok(),
        }
    }
}

/// Signs `payload` (already JSON) with `alg`: PyJWT's header and byte layout.
pub fn encode(
    payload: &str,
    alg: Algorithm,
    kid: Option<&str>,
    key: &EncodingKey,
) -> Result<String, jsonwebtoken::errors::Error> {
    let alg_name = alg_name(alg);
    // PyJWT sorts header keys: alg, kid, typ.
    let header = match kid {
        Some(k) => format!(
            "{{\"alg\":\"{alg_name}\",\"kid\":{},\"typ\":\"JWT\"}}",
            Value::String(k.to_string())
        ),
        None => format!("{{\"alg\":\"{alg_name}\",\"typ\":\"JWT\"}}"),
    };
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let sig = jsonwebtoken::crypto::sign(token.as_bytes(), key, alg)?;
    token.push('.');
    token.push_str(&sig);
    Ok(token)
}

pub fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        // jsonwebtoken's enum is non-exhaustive; `keys::load` accepts only the ones above.
        _ => "unsupported",
    }
}

/// Verifies `token`; returns its payload bytes (checked to be base64url, not yet JSON).
pub fn decode(token: &str, alg: Algorithm, keys: &[VerifyKey]) -> Result<Vec<u8>, Refused> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Refused::TooLong);
    }
    verify_raw(token, alg, keys)
}

/// Verifies a JWS whose payload need not be JSON (RFC 7520 §4.4), returning the payload.
pub fn verify_raw(token: &str, alg: Algorithm, keys: &[VerifyKey]) -> Result<Vec<u8>, Refused> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refused::Malformed("not three segments"));
    };
    let header = Header::parse(&b64(h)?)?;
    if header.alg.as_deref() != Some(alg_name(alg)) {
        return Err(Refused::Algorithm);
    }
    if header.crit {
        return Err(Refused::Crit);
    }
    let key = pick_key(header.kid.as_deref(), header.kid_is_string, keys)?;
    // jsonwebtoken decodes the signature with the strict URL_SAFE_NO_PAD engine.
    if s.is_empty() {
        return Err(Refused::Malformed("no signature"));
    }
    let message = &token.as_bytes()[..h.len() + 1 + p.len()];
    let valid = match &key.hmac {
        Some(mac) => mac.verify(s, message),
        None => matches!(
            jsonwebtoken::crypto::verify(s, message, &key.key, alg),
            Ok(true)
        ),
    };
    if valid {
        b64(p)
    } else {
        Err(Refused::Signature)
    }
}

/// The header parameters we act on; the others are parsed (for duplicates) and dropped.
#[derive(Default)]
struct Header {
    alg: Option<String>,
    kid: Option<String>,
    kid_is_string: bool,
    crit: bool,
}

impl Header {
    fn parse(bytes: &[u8]) -> Result<Header, Refused> {
        let mut h = Header::default();
        object_entries(bytes, |k, v| {
            match k {
                "alg" => h.alg = v.as_str().map(String::from),
                "kid" => {
                    h.kid_is_string = v.is_string();
                    h.kid = v.as_str().map(String::from);
                }
                "crit" => h.crit = true,
                _ => {}
            }
            Ok(())
        })?;
        Ok(h)
    }
}

/// With keys that have ids, `kid` must name one of them (a token without `kid` gets the
/// first, the signing key; a `kid` that is not a string is refused). Keys without ids
/// ignore `kid`, as simplejwt does.
fn pick_key<'k>(
    kid: Option<&str>,
    kid_is_string: bool,
    keys: &'k [VerifyKey],
) -> Result<&'k VerifyKey, Refused> {
    let first = keys.first().ok_or(Refused::UnknownKid)?;
    if first.kid.is_none() {
        return Ok(first);
    }
    match kid {
        Some(kid) => keys
            .iter()
            .find(|k| k.kid.as_deref() == Some(kid))
            .ok_or(Refused::UnknownKid),
        None if kid_is_string => Err(Refused::UnknownKid),
        None => Ok(first),
    }
}

fn b64(s: &str) -> Result<Vec<u8>, Refused> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| Refused::Malformed("base64url"))
}

/// Walks a JSON object, refusing duplicate keys (at every depth) and anything that is not
/// an object, and hands each top-level entry to `f`. Keys are borrowed from the input when
/// they have no escapes, so the common claims cost no allocation.
pub fn object_entries<F>(bytes: &[u8], f: F) -> Result<(), Refused>
where
    F: FnMut(&str, Value) -> Result<(), Refused>,
{
    let mut f = f;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let seed = Entries {
        f: &mut f,
        failed: None,
    };
    let result = serde::de::DeserializeSeed::deserialize(seed, &mut de)
        .and_then(|failed| de.end().map(|()| failed));
    match result {
        Ok(None) => Ok(()),
        Ok(Some(refused)) => Err(refused),
        Err(_) => Err(Refused::Malformed("JSON")),
    }
}

struct Entries<'f, F> {
    f: &'f mut F,
    failed: Option<Refused>,
}

impl<'de, F: FnMut(&str, Value) -> Result<(), Refused>> serde::de::DeserializeSeed<'de>
    for Entries<'_, F>
{
    type Value = Option<Refused>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Refused>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, F: FnMut(&str, Value) -> Result<(), Refused>> Visitor<'de> for Entries<'_, F> {
    type Value = Option<Refused>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Option<Refused>, A::Error> {
        let mut seen: Vec<Key<'de>> = Vec::with_capacity(8);
        while let Some(key) = map.next_key::<Key<'de>>()? {
            if seen.iter().any(|k| k.as_str() == key.as_str()) {
                return Err(de::Error::custom("duplicate key"));
            }
            let Strict(value) = map.next_value()?;
            if self.failed.is_none() {
                if let Err(r) = (self.f)(key.as_str(), value) {
                    self.failed = Some(r);
                }
            }
            seen.push(key);
        }
        Ok(self.failed)
    }
}

/// An object key, borrowed from the input when possible.
enum Key<'a> {
    Borrowed(&'a str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v))
            }
        }
        d.deserialize_str(V)
    }
}

/// A JSON value that refuses duplicate object keys at any depth.
pub struct Strict(pub Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON without duplicate keys")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
        Ok(Strict(
            serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
        ))
    }
    fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(Value::String(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }
    fn visit_none<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut v = vec![];
        while let Some(Strict(x)) = seq.next_element()? {
            v.push(x);
        }
        Ok(Strict(Value::Array(v)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut m = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if m.contains_key(&k) {
                return Err(de::Error::custom(format!("duplicate key {k:?}")));
            }
            let Strict(v) = map.next_value()?;
            m.insert(k, v);
        }
        Ok(Strict(Value::Object(m)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs(secret: &[u8]) -> Vec<VerifyKey> {
        vec![VerifyKey::secret(secret, Algorithm::HS256)]
    }

    /// The pre-keyed MAC and jsonwebtoken agree on every HS algorithm, for good,
    /// tampered, truncated, padded and non-canonical signatures.
    #[test]
    fn prekeyed_hmac_agrees_with_jsonwebtoken() {
        let secret = b"a-secret-that-is-long-enough-for-every-test-0123456789";
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let tok = encode(r#"{"a":1}"#, alg, None, &EncodingKey::from_secret(secret)).unwrap();
            let (msg, sig) = tok.rsplit_once('.').unwrap();
            let mut last = sig.to_string();
            let c = last.pop().unwrap();
            let flipped = format!("{last}{}", if c == 'A' { 'B' } else { 'A' });
            let candidates = [
                sig.to_string(),
                flipped,
                sig[..sig.len() - 2].to_string(),
                format!("{sig}="),
                sig.replace('-', "+").replace('_', "/"),
                String::new(),
                "A".repeat(400),
            ];
            let key = VerifyKey::secret(secret, alg);
            let mac = key.hmac.as_ref().expect("an HS key is pre-keyed");
            for cand in candidates {
                let theirs = matches!(
                    jsonwebtoken::crypto::verify(&cand, msg.as_bytes(), &key.key, alg),
                    Ok(true)
                );
                assert_eq!(mac.verify(&cand, msg.as_bytes()), theirs, "{alg:?} {cand}");
                assert_eq!(theirs, cand == sig, "{alg:?} {cand}");
            }
        }
    }

    #[test]
    fn rfc7515_a1_signature_verifies_and_rfc7519_unsecured_is_refused() {
        let key = URL_SAFE_NO_PAD.decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow").unwrap();
        let tok = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let p: Value =
            serde_json::from_slice(&decode(tok, Algorithm::HS256, &hs(&key)).unwrap()).unwrap();
        assert_eq!(p["exp"], 1300819380);
        let unsecured = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.";
        assert_eq!(
            decode(unsecured, Algorithm::HS256, &hs(&key)),
            Err(Refused::Algorithm)
        );
    }

    #[test]
    fn rfc7520_4_4_hs256_with_kid_verifies() {
        let key = URL_SAFE_NO_PAD
            .decode("hJtXIZ2uSN5kbQfbtTNWbpdmhkV8FJG-Onbc6mxCcYg")
            .unwrap();
        let input = "eyJhbGciOiJIUzI1NiIsImtpZCI6IjAxOGMwYWU1LTRkOWItNDcxYi1iZmQ2LWVlZjMxNGJjNzAzNyJ9.SXTigJlzIGEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IHlvdXIgZG9vci4gWW91IHN0ZXAgb250byB0aGUgcm9hZCwgYW5kIGlmIHlvdSBkb24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcmUgeW91IG1pZ2h0IGJlIHN3ZXB0IG9mZiB0by4";
        let tok = format!("{input}.s0h6KThzkfBBBkLspW1h84VsJZFTsPPqMDA7g1Md7p0");
        let ring = vec![VerifyKey {
            kid: Some("018c0ae5-4d9b-471b-bfd6-eef314bc7037".into()),
            ..VerifyKey::secret(&key, Algorithm::HS256)
        }];
        let payload = verify_raw(&tok, Algorithm::HS256, &ring).unwrap();
        assert!(String::from_utf8(payload)
            .unwrap()
            .starts_with("It\u{2019}s a dangerous business, Frodo"));
        let tampered = format!("{input}.s0h6KThzkfBBBkLspW1h84VsJZFTsPPqMDA7g1Md7p1");
        assert!(verify_raw(&tampered, Algorithm::HS256, &ring).is_err());
    }

    #[test]
    fn encodes_exactly_like_pyjwt() {
        // The golden ACCESS vector of reference/jwt.md §3.6, minted by PyJWT 2.6.0.
        let golden = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0b2tlbl90eXBlIjoiYWNjZXNzIiwiZXhwIjo0MTAyNDQ0ODAwLCJpYXQiOjE3MDAwMDAwMDAsImp0aSI6IjAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmIiwidXNlcl9pZCI6IjEifQ.DThNthX1Zi55SsJICe3BNX-5gXJPungdWD8ALf3wRrQ";
        let payload = r#"{"token_type":"access","exp":4102444800,"iat":1700000000,"jti":"0123456789abcdef0123456789abcdef","user_id":"1"}"#;
        let key = EncodingKey::from_secret(b"simplejwt-golden-vector-secret-key-0123456789");
        assert_eq!(
            encode(payload, Algorithm::HS256, None, &key).unwrap(),
            golden
        );
    }

    #[test]
    fn refuses_duplicates_padding_and_crit() {
        let key = EncodingKey::from_secret(b"k");
        let ring = hs(b"k");
        // Payloads are parsed by the caller through `object_entries`.
        assert_eq!(
            object_entries(br#"{"a":1,"a":2}"#, |_, _| Ok(())),
            Err(Refused::Malformed("JSON"))
        );
        assert_eq!(
            object_entries(br#"{"a":{"b":1,"b":2}}"#, |_, _| Ok(())),
            Err(Refused::Malformed("JSON"))
        );
        assert_eq!(
            object_entries(br#"[1]"#, |_, _| Ok(())),
            Err(Refused::Malformed("JSON"))
        );
        assert_eq!(
            object_entries(br#"{"a\u0062":1,"ab":2}"#, |_, _| Ok(())),
            Err(Refused::Malformed("JSON")),
            "escaped duplicate"
        );
        let dup_header = format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","alg":"HS256"}"#),
            URL_SAFE_NO_PAD.encode("{}")
        );
        assert_eq!(
            decode(&dup_header, Algorithm::HS256, &ring),
            Err(Refused::Malformed("JSON"))
        );
        let ok = encode(r#"{"a":1}"#, Algorithm::HS256, None, &key).unwrap();
        assert!(decode(&ok, Algorithm::HS256, &ring).is_ok());
        let mut parts: Vec<String> = ok.split('.').map(String::from).collect();
        parts[1].push('=');
        assert!(decode(&parts.join("."), Algorithm::HS256, &ring).is_err());
        assert_eq!(
            decode(&"a".repeat(9000), Algorithm::HS256, &ring),
            Err(Refused::TooLong)
        );
        let crit_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","crit":["x"],"x":1}"#);
        let body = URL_SAFE_NO_PAD.encode("{}");
        let sig = jsonwebtoken::crypto::sign(
            format!("{crit_header}.{body}").as_bytes(),
            &key,
            Algorithm::HS256,
        )
        .unwrap();
        assert_eq!(
            decode(
                &format!("{crit_header}.{body}.{sig}"),
                Algorithm::HS256,
                &ring
            ),
            Err(Refused::Crit)
        );
        assert_eq!(
            decode(&ok, Algorithm::HS384, &ring),
            Err(Refused::Algorithm)
        );
    }
}
