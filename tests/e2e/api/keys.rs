//! Asymmetric keys: RS256, ES256 and EdDSA with PEM keys, the JWKS that publishes them,
//! rotation to a new key by `kid`, and what must fail (an unknown kid, HS/RS confusion).

use super::*;
use std::str::FromStr;

/// A server signing with `alg` and the fixture `key`, also verifying with the fixtures in
/// `extra`.
fn asym(alg: &str, key: &str, extra: &[&str]) -> Api {
    let fixtures = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let mut env = vec![
        ("CORRAL_AUTH_ALGORITHM".to_string(), alg.to_string()),
        (
            "CORRAL_AUTH_SIGNING_KEY_FILE".into(),
            format!("{fixtures}/{key}"),
        ),
    ];
    if !extra.is_empty() {
        env.push((
            "CORRAL_AUTH_VERIFYING_KEY_FILES".into(),
            extra
                .iter()
                .map(|f| format!("{fixtures}/{f}"))
                .collect::<Vec<_>>()
                .join(","),
        ));
    }
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Api::start(TestDb::sqlite(), &[], &env_ref)
}

fn header_of(token: &str) -> Value {
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap()
}

/// RS256, ES256 and EdDSA tokens carry the key's kid; the JWKS publishes the public key
/// under that kid, with no private parts, and it verifies the token as a third party
/// would; the server accepts the token.
#[test]
fn asymmetric_tokens_verify_with_the_published_jwks() {
    for (alg, key) in [
        ("RS256", "rsa_a.pem"),
        ("ES256", "ec_p256.pem"),
        ("EdDSA", "ed25519.pem"),
    ] {
        let a = asym(alg, key, &[]);
        let (access, _) = a.login();
        let h = header_of(&access);
        assert_eq!(h["alg"], alg);
        let jwks = http(&a.c.addr, "GET", "/.well-known/jwks.json", &[], b"").json();
        let k = &jwks["keys"][0];
        assert_eq!(k["kid"], h["kid"], "{jwks}");
        assert!(k.get("d").is_none(), "no private parts in the JWKS");
        // The published key verifies the token, as a third party would do it.
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(k.clone()).unwrap();
        let dk = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::from_str(alg).unwrap());
        v.validate_aud = false;
        assert!(
            jsonwebtoken::decode::<Value>(&access, &dk, &v).is_ok(),
            "{alg}"
        );
        expect(
            &a.hello(&format!("Bearer {access}")),
            200,
            json!({"message": "Hello, World!"}),
            None,
        );
    }
}

/// Rotation: after the switch from key A to key B (A kept for verifying), the JWKS
/// publishes both, tokens signed with A keep working, and new tokens carry B's kid.
#[test]
fn a_rotated_out_key_still_verifies_by_kid() {
    let old = asym("RS256", "rsa_a.pem", &[]);
    let (old_access, _) = old.login();
    drop(old);
    let a = asym("RS256", "rsa_b.pem", &["rsa_a.pub.pem"]);
    let jwks = http(&a.c.addr, "GET", "/.well-known/jwks.json", &[], b"").json();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    expect(
        &a.hello(&format!("Bearer {old_access}")),
        200,
        json!({"message": "Hello, World!"}),
        None,
    );
    let (new_access, _) = a.login();
    assert_ne!(header_of(&new_access)["kid"], header_of(&old_access)["kid"]);
}

/// A token whose kid names no configured key is refused.
#[test]
fn an_unknown_kid_is_refused() {
    let a = asym("RS256", "rsa_b.pem", &["rsa_a.pub.pem"]);
    let (new_access, _) = a.login();
    let mut h = header_of(&new_access);
    h["kid"] = json!("not-a-key-we-know");
    let rest: Vec<&str> = new_access.splitn(2, '.').collect();
    let unknown = format!("{}.{}", URL_SAFE_NO_PAD.encode(h.to_string()), rest[1]);
    expect(
        &a.hello(&format!("Bearer {unknown}")),
        401,
        invalid_for_hello("Token is invalid"),
        REALM,
    );
}

/// Key confusion: a token "signed" with HS256 using the RSA public key as the secret is
/// refused.
#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    let a = asym("RS256", "rsa_b.pem", &["rsa_a.pub.pem"]);
    let (new_access, _) = a.login();
    let public = std::fs::read(format!(
        "{}/tests/fixtures/rsa_b.pub.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let payload = String::from_utf8(
        URL_SAFE_NO_PAD
            .decode(new_access.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let confused = sign_raw(r#"{"alg":"HS256","typ":"JWT"}"#, &payload, &public);
    expect(
        &a.hello(&format!("Bearer {confused}")),
        401,
        invalid_for_hello("Token is invalid"),
        REALM,
    );
}
