//! Django's rules for usernames and passwords, with Django's messages, for the `user`
//! commands: `UnicodeUsernameValidator` and the 150-character limit of `auth.User`, and
//! the default password validators of a new Django project that need no data file
//! (`UserAttributeSimilarityValidator`, `MinimumLengthValidator`,
//! `NumericPasswordValidator`).

/// The reasons a username is refused (empty when it is fine).
pub(super) fn username(name: &str) -> Vec<String> {
    let mut why = vec![];
    if name.is_empty() {
        why.push("This field cannot be blank.".to_string());
        return why;
    }
    let chars = name.chars().count();
    if chars > 150 {
        why.push(format!(
            "Ensure this value has at most 150 characters (it has {chars})."
        ));
    }
    // Django: r"^[\w.@+-]+\Z", where \w is a Unicode word character.
    if !name
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '@' | '+' | '-'))
    {
        why.push(
            "Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters."
                .to_string(),
        );
    }
    why
}

/// Django's `MinimumLengthValidator` default.
const MIN_LENGTH: usize = 8;
/// Django's `UserAttributeSimilarityValidator` default.
const MAX_SIMILARITY: f64 = 0.7;

/// The reasons a password is refused for `username` (empty when it is fine).
pub(super) fn password(password: &str, username: &str) -> Vec<String> {
    let mut why = vec![];
    if too_similar(password, username) {
        why.push("The password is too similar to the username.".to_string());
    }
    if password.chars().count() < MIN_LENGTH {
        why.push(format!(
            "This password is too short. It must contain at least {MIN_LENGTH} characters."
        ));
    }
    if !password.is_empty() && password.chars().all(|c| c.is_numeric()) {
        why.push("This password is entirely numeric.".to_string());
    }
    why
}

/// `UserAttributeSimilarityValidator` on the username: the password against the name and
/// each of its parts split on non-word characters, by difflib's `quick_ratio`, skipping
/// parts too short for a long password to be like them (Django 4.2+).
fn too_similar(password: &str, username: &str) -> bool {
    let password = password.to_lowercase();
    let value = username.to_lowercase();
    let mut parts: Vec<&str> = value
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .collect();
    parts.push(&value);
    parts.into_iter().any(|part| {
        !part.is_empty()
            && !exceeds_maximum_length_ratio(&password, part)
            && quick_ratio(&password, part) >= MAX_SIMILARITY
    })
}

fn exceeds_maximum_length_ratio(password: &str, value: &str) -> bool {
    let (p, v) = (password.chars().count(), value.chars().count());
    p >= 10 * v && (v as f64) < MAX_SIMILARITY / 2.0 * p as f64
}

/// difflib's `SequenceMatcher.quick_ratio`: 2 × (characters in common, as multisets) /
/// (total length).
fn quick_ratio(a: &str, b: &str) -> f64 {
    let mut counts = std::collections::HashMap::new();
    for c in b.chars() {
        *counts.entry(c).or_insert(0i64) += 1;
    }
    let mut matches = 0;
    for c in a.chars() {
        if let Some(n) = counts.get_mut(&c).filter(|n| **n > 0) {
            *n -= 1;
            matches += 1;
        }
    }
    let total = a.chars().count() + b.chars().count();
    if total == 0 {
        return 1.0;
    }
    2.0 * matches as f64 / total as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_djangos_rules() {
        assert!(username("alice").is_empty());
        assert!(username("élodie.b+x@corp-1_2").is_empty());
        assert_eq!(username(""), ["This field cannot be blank."]);
        assert!(username("with space")[0].starts_with("Enter a valid username."));
        assert_eq!(
            username(&"a".repeat(151)),
            ["Ensure this value has at most 150 characters (it has 151)."]
        );
        assert!(username(&"a".repeat(150)).is_empty());
    }

    #[test]
    fn passwords_follow_djangos_default_validators() {
        assert!(password("wonderland-42", "alice").is_empty());
        assert_eq!(
            password("x", "alice"),
            ["This password is too short. It must contain at least 8 characters."]
        );
        assert_eq!(
            password("12345678901", "alice"),
            ["This password is entirely numeric."]
        );
        assert_eq!(
            password("alice-24", "alice"),
            ["The password is too similar to the username."]
        );
        assert!(
            password("alice-2024", "alice").is_empty(),
            "10/15 < 0.7, as in Django"
        );
        assert!(password("Alice", "alice")
            .contains(&"The password is too similar to the username.".to_string()));
        // Django's own: a long password is not "like" a short username part.
        assert!(password("correct horse battery staple", "al").is_empty());
        assert!((quick_ratio("abcd", "bcde") - 0.75).abs() < 1e-9);
    }
}
