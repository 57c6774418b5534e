//! What never reaches a log: secrets in request targets, `Referer` and `User-Agent`.
//!
//! The rule, for the access log and for the master's report of a hung worker's request:
//! - the value of a query parameter whose name says it holds a credential (`token`,
//!   `access`, `refresh`, `password`, `secret`, `key`, `code`, `auth`, `session`,
//!   `signature` and the like; see [`sensitive`]) becomes `[redacted]`;
//! - anything shaped like a JWT (`eyJ…` followed by two `.`-separated base64url parts)
//!   becomes `[jwt]`, wherever it stands;
//! - `Authorization`, `Cookie` and request bodies are never logged at all.

use std::borrow::Cow;

/// Whether a query parameter's name says it carries a credential.
fn sensitive(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    const EXACT: &[&str] = &[
        "access", "refresh", "code", "pwd", "pass", "sig", "jwt", "otp",
    ];
    const PARTS: &[&str] = &[
        "token",
        "password",
        "passwd",
        "secret",
        "key",
        "auth",
        "session",
        "signature",
        "credential",
    ];
    EXACT.contains(&n.as_str()) || PARTS.iter().any(|p| n.contains(p))
}

/// A request target (`/path?query`) or URL with its sensitive query values and any JWT
/// replaced.
pub(crate) fn target(t: &str) -> Cow<'_, str> {
    let t = jwt(t);
    let Some((head, query)) = t.split_once('?') else {
        return t;
    };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    if !query
        .split('&')
        .any(|p| sensitive(p.split_once('=').map_or(p, |(k, _)| k)))
    {
        return t;
    }
    let mut out = String::with_capacity(t.len());
    out.push_str(head);
    out.push('?');
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((k, _)) if sensitive(k) => {
                out.push_str(k);
                out.push_str("=[redacted]");
            }
            _ => out.push_str(pair),
        }
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    Cow::Owned(out)
}

/// Any JWT-shaped run (`eyJ` + base64url, `.`, base64url, `.`, base64url) becomes `[jwt]`.
pub(crate) fn jwt(s: &str) -> Cow<'_, str> {
    if !s.contains("eyJ") {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let is_b64 = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
    let mut out = String::with_capacity(s.len());
    let (mut i, mut copied) = (0, 0);
    while let Some(at) = s[i..].find("eyJ").map(|p| p + i) {
        // Three base64url segments separated by two dots; the last may be empty
        // (an unsigned token).
        let mut j = at;
        let mut dots = 0;
        while j < b.len() && (is_b64(b[j]) || (b[j] == b'.' && dots < 2)) {
            dots += usize::from(b[j] == b'.');
            j += 1;
        }
        if dots == 2 {
            out.push_str(&s[copied..at]);
            out.push_str("[jwt]");
            copied = j;
        }
        i = j.max(at + 3);
    }
    if copied == 0 {
        return Cow::Borrowed(s);
    }
    out.push_str(&s[copied..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_query_values_and_jwts_are_replaced() {
        assert_eq!(target("/hello/"), "/hello/");
        assert_eq!(target("/a?page=2&sort=x"), "/a?page=2&sort=x");
        assert_eq!(
            target("/api/token/?secret=hunter2&page=1&access_token=abc#frag"),
            "/api/token/?secret=[redacted]&page=1&access_token=[redacted]#frag"
        );
        assert_eq!(
            target("/x?Password=p&API_KEY=k&code=c"),
            "/x?Password=[redacted]&API_KEY=[redacted]&code=[redacted]"
        );
        let t = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";
        assert_eq!(jwt(&format!("curl/8 {t} tail")), "curl/8 [jwt] tail");
        assert_eq!(target(&format!("/p/{t}?q=1")), "/p/[jwt]?q=1");
        assert_eq!(jwt("eyJ-not-a-token"), "eyJ-not-a-token");
        assert_eq!(jwt("a eyJx.y b eyJa.b.c"), "a eyJx.y b [jwt]");
    }
}
