//! `corral user …`: create, passwd, deactivate (and its effect on live tokens), list, and
//! import-django with Django's own password hashes.

use super::*;

/// `user create` refuses an existing name (exit 1), an empty password (input refused,
/// exit 2), and asking for a password without a terminal (it points to
/// `--password-stdin`).
#[test]
fn user_create_refuses_a_duplicate_an_empty_password_and_no_tty() {
    let a = Api::start(TestDb::sqlite(), &[], &[]);
    let dup = a.cli(
        &["user", "create", "alice", "--password-stdin"],
        Some("whatever-1234"),
    );
    assert_eq!(dup.code, Some(1));
    assert!(
        dup.stderr.contains("user \"alice\" already exists"),
        "{}",
        dup.stderr
    );
    let empty = a.cli(&["user", "create", "carol", "--password-stdin"], Some("\n"));
    assert_eq!(empty.code, Some(2));
    let no_tty = a.cli(&["user", "create", "carol"], None);
    assert_eq!(no_tty.code, Some(1));
    assert!(
        no_tty.stderr.contains("--password-stdin"),
        "{}",
        no_tty.stderr
    );
}

/// `user passwd` replaces the password at once (the old one stops working); for an
/// unknown user it fails.
#[test]
fn user_passwd_replaces_the_password() {
    let a = Api::start(TestDb::sqlite(), &[], &[]);
    assert_eq!(
        a.cli(
            &["user", "passwd", "alice", "--password-stdin"],
            Some("new-pass-123")
        )
        .code,
        Some(0)
    );
    assert_eq!(
        a.post(
            "/api/token/",
            json!({"username": "alice", "password": "wonderland-42"})
        )
        .status,
        401
    );
    assert_eq!(
        a.post(
            "/api/token/",
            json!({"username": "alice", "password": "new-pass-123"})
        )
        .status,
        200
    );
    assert_eq!(
        a.cli(
            &["user", "passwd", "nobody", "--password-stdin"],
            Some("a-good-password-9")
        )
        .code,
        Some(1)
    );
}

/// `user deactivate` takes effect at once, even for a user the worker has cached: the
/// user's access token and refresh token stop working.
#[test]
fn user_deactivate_takes_effect_at_once() {
    let a = Api::start(TestDb::sqlite(), &[], &[]);
    let (access, refresh) = a.login();
    // Twice, so the worker's user cache holds alice as active: the deactivation below
    // must empty it (inotify) for the next request to see it.
    for _ in 0..2 {
        assert_eq!(a.hello(&format!("Bearer {access}")).status, 200);
    }
    let d = a.cli(&["user", "deactivate", "alice"], None);
    assert_eq!(d.code, Some(0), "{d:?}");
    expect(
        &a.hello(&format!("Bearer {access}")),
        401,
        json!({"detail": "User is inactive", "code": "user_inactive"}),
        REALM,
    );
    expect(
        &a.post("/api/token/refresh/", json!({"refresh": refresh})),
        401,
        json!({"detail": "No active account found for the given token."}),
        REALM,
    );
}

/// `user list --json` lists every user in id order with its fields and state, and never
/// prints a password hash.
#[test]
fn user_list_shows_every_field_but_the_hash() {
    let a = Api::start(TestDb::sqlite(), &[], &[]);
    a.cli(&["user", "deactivate", "alice"], None);
    let list: Value =
        serde_json::from_str(&a.cli(&["user", "list", "--json"], None).stdout).unwrap();
    assert_eq!(list[0]["username"], "alice");
    assert_eq!(list[0]["is_active"], false);
    assert_eq!(list[1]["username"], "bob");
    for k in [
        "id",
        "is_staff",
        "is_superuser",
        "email",
        "date_joined",
        "last_login",
        "hasher",
    ] {
        assert!(list[0].get(k).is_some(), "{k}");
    }
    assert!(
        !a.cli(&["user", "list", "--json"], None)
            .stdout
            .contains("argon2$"),
        "hashes are never printed"
    );
}

/// Django users, with PBKDF2 hashes from Django's own test suite ('lètmein'), import with
/// their ids, log in with their password (and only with it), and are re-hashed to
/// argon2id on login.
#[test]
fn django_users_import_and_log_in_with_their_pbkdf2_hashes() {
    let a = Api::start(TestDb::sqlite(), &[], &[]);
    let dump = json!([
        {"model": "auth.user", "pk": 41, "fields": {"password": "pbkdf2_sha256$260000$seasalt$YlZ2Vggtqdc61YjArZuoApoBh9JNGYoDRBUGu6tcJQo=", "last_login": null, "is_superuser": false, "username": "django_u", "first_name": "", "last_name": "", "email": "", "is_staff": false, "is_active": true, "date_joined": "2024-01-01T00:00:00Z", "groups": [], "user_permissions": []}},
        {"model": "auth.user", "pk": 42, "fields": {"password": "pbkdf2_sha256$1000000$seasalt$r1uLUxoxpP2Ued/qxvmje7UH9PUJBkRrvf9gGPL7Cps=", "last_login": "2025-05-05T10:00:00Z", "is_superuser": true, "username": "django_v", "first_name": "V", "last_name": "", "email": "v@example.com", "is_staff": true, "is_active": true, "date_joined": "2024-01-02T00:00:00Z", "groups": [], "user_permissions": []}}
    ]);
    let out = a.cli(&["user", "import-django", "-"], Some(&dump.to_string()));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("Imported 2 users"));
    for name in ["django_u", "django_v"] {
        let r = a.post(
            "/api/token/",
            json!({"username": name, "password": "lètmein"}),
        );
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        assert_eq!(
            a.post(
                "/api/token/",
                json!({"username": name, "password": "letmein"})
            )
            .status,
            401
        );
    }
    let users: Value =
        serde_json::from_str(&a.cli(&["user", "list", "--json"], None).stdout).unwrap();
    let u = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "django_v")
        .unwrap();
    assert_eq!(u["id"], 42, "ids are kept");
    assert_eq!(u["hasher"], "argon2", "re-hashed to argon2id on login");
}

/// Usernames follow Django's `UnicodeUsernameValidator` and its 150 characters, and
/// passwords Django's default validators (8 characters, not only digits, not like the
/// username): each refusal says why, exits 2 and creates nothing.
#[test]
fn user_create_applies_djangos_username_and_password_rules() {
    let a = Api::start(TestDb::sqlite(), &[], &[]);
    let long = "u".repeat(151);
    for (name, pw, says) in [
        ("", "good-password-1", "This field cannot be blank."),
        ("with space", "good-password-1", "Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters."),
        (long.as_str(), "good-password-1", "Ensure this value has at most 150 characters (it has 151)."),
        ("dave", "x", "This password is too short. It must contain at least 8 characters."),
        ("dave", "1234567890", "This password is entirely numeric."),
        ("margaret", "Margaret-1", "The password is too similar to the username."),
    ] {
        let out = a.cli(&["user", "create", name, "--password-stdin"], Some(pw));
        assert_eq!(out.code, Some(2), "{name:?} {pw:?}: {out:?}");
        assert!(out.stderr.contains(says), "{name:?} {pw:?}: {out:?}");
        assert!(out.stderr.contains("nothing was changed"), "{out:?}");
    }
    assert_eq!(
        a.db.scalar("SELECT COUNT(*) FROM corral_user"),
        2,
        "nothing was created"
    );
    let out = a.cli(
        &["user", "create", "élodie.b+1@x", "--password-stdin"],
        Some("good-password-1"),
    );
    assert_eq!(
        out.code,
        Some(0),
        "Django's Unicode usernames are fine: {out:?}"
    );
    let out = a.cli(
        &["user", "passwd", "alice", "--password-stdin"],
        Some("short"),
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert_eq!(
        a.post(
            "/api/token/",
            json!({"username": "alice", "password": "wonderland-42"})
        )
        .status,
        200,
        "the old password still works"
    );
}

/// `user activate` lets a deactivated user log in again; `user delete` removes a user and
/// its tokens stop working; both fail (exit 1) for an unknown name.
#[test]
fn user_activate_and_delete() {
    let a = Api::start(TestDb::sqlite(), &[], &[]);
    let bob = || {
        a.post(
            "/api/token/",
            json!({"username": "bob", "password": "x-pass-bob"}),
        )
    };
    assert_eq!(bob().status, 401);
    let out = a.cli(&["user", "activate", "bob"], None);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(bob().status, 200);
    let (access, _) = a.login();
    let out = a.cli(&["user", "delete", "alice"], None);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(a.hello(&format!("Bearer {access}")).status, 401);
    assert_eq!(
        a.db.scalar("SELECT COUNT(*) FROM corral_user WHERE username = 'alice'"),
        0
    );
    for cmd in ["activate", "delete"] {
        assert_eq!(a.cli(&["user", cmd, "nobody"], None).code, Some(1), "{cmd}");
    }
}

/// `import-django` names every user it skips, and warns about a hash that demands more
/// PBKDF2 iterations than `auth.max_pbkdf2_iterations` allows.
#[test]
fn import_django_names_skipped_users_and_costly_hashes() {
    let a = Api::start(TestDb::sqlite(), &[], &[]);
    let row = |pk: i64, name: &str, hash: &str| {
        json!({"model": "auth.user", "pk": pk, "fields": {
            "password": hash, "last_login": null, "is_superuser": false, "username": name,
            "first_name": "", "last_name": "", "email": "", "is_staff": false,
            "is_active": true, "date_joined": "2024-05-01T12:00:00Z"}})
    };
    let dump = json!([
        row(1, "alice", "pbkdf2_sha256$600000$salt$abc="),
        row(50, "ernest", "pbkdf2_sha256$5000000$salt$abc="),
        row(51, "fay", "!unusable-password"),
    ]);
    let file = a.dir.join("dump.json");
    std::fs::write(&file, dump.to_string()).unwrap();
    let out = a.cli(&["user", "import-django", file.to_str().unwrap()], None);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("Skipped \"alice\" (id 1)"), "{out:?}");
    assert!(
        out.stdout
            .contains("\"ernest\" (id 50) has a PBKDF2 hash of 5000000 iterations"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("Imported 2 users (1 skipped)"),
        "{out:?}"
    );
    let list = a.cli(&["user", "list"], None);
    let fay = list.stdout.lines().find(|l| l.contains("fay")).unwrap();
    assert!(fay.contains("unusable"), "{fay}");
}

/// `user list` writes times in one ISO 8601 form on SQLite and on PostgreSQL.
#[test]
fn user_list_dates_are_iso_8601_on_both_databases() {
    for db in TestDb::each("user_list_dates_are_iso_8601_on_both_databases") {
        let a = Api::start(db, &[], &[]);
        let out = a.cli(&["user", "list", "--json"], None);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let joined = v[0]["date_joined"].as_str().unwrap();
        // 2026-12-01T22:13:10.123Z
        assert_eq!(joined.len(), 24, "{joined}");
        assert!(
            joined.as_bytes()[10] == b'T' && joined.ends_with('Z') && joined.as_bytes()[19] == b'.',
            "{joined}"
        );
    }
}
